"""The store: its layout, the journal, the frames → tables pipeline, the Parquet sink, ingest,
rebuild, inventory, compaction and verification.

Must not know about sockets; capture, ingest and rebuild all share the pipeline here.
"""
