"""The store: Hive-partitioned Parquet tables and the raw-frame journal they derive from.

One module per concern: ``layout`` (every path, glob, partition and part-file name),
``fs`` (atomic writes, fsync, locks), ``journal`` (raw frames, the source of truth),
``pipeline`` and ``continuity`` (frames → rows, shared by capture, ingest and rebuild),
``sink`` (rows → part files), ``ingest`` (NDJSON files), ``rebuild`` (from the journal),
``inventory`` (what the store holds), ``compact`` (merging small files) and ``verify``.

Must not know about sockets; nothing here imports :mod:`recorder.capture`.
"""
