"""Live capture: sessions → journal → the live decoder → Parquet, with recovery and progress.

Must not parse command-line options; the CLI hands it typed requests.
"""
