"""The Kiwoom protocol, pure: FID tables, frames, the REAL-entry codec, time rules and limits.

Owns everything that is true of Kiwoom's wire format. Must not do I/O: nothing here imports
asyncio, websockets, httpx or duckdb, or touches files or sockets (a test enforces it).
"""
