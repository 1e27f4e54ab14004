"""How compacted part files are encoded: per-column encodings and the zstd level, chosen from
measurements (``benchmarks/bench_storage.py``; docs/deployment.md, "Disk sizing").

Compaction rewrites a partition's rows once, off the capture's path, so it can afford a
slower writer than the live sink (:func:`recorder.store.sink.write_part`, tuned for speed).
Measured per column on the synthetic 200-symbol stretch (zstd level 9 behind each encoding):

- times (``ts``, ``recv_ts``, any timestamp) and ``seq`` grow monotonically within a
  partition sorted by (time, seq): DELTA_BINARY_PACKED stores them in 0.2x-0.5x of plain
  (``seq`` 0.7x-0.9x);
- strings (venue, side, session, exchange, the HHMMSS times) keep dictionary encoding;
- every other integer and float column stays plain: dictionary encoding made the order book
  larger (+20% over the file: ~100 mostly null or high-cardinality columns), delta encoding
  made prices and cumulative values larger (+10%..+60%) once zstd had run, and
  BYTE_STREAM_SPLIT on floats made ``change_pct`` 4x larger. (Byte-stream-split helped some
  integer quantities by 5%-25%, but readers older than Parquet 2.11 cannot read it on
  integers, so it is not used.)
- zstd level 9 instead of the default 1: 0.91x the bytes for about 1.5x the write time;
  levels 15 and 19 gain 3% more for 4x and 9x the time.

Statistics stay where queries prune on them, as in live part files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from recorder.errors import StoreError
from recorder.store.fs import atomic_write

#: zstd level of compacted part files.
COMPACT_ZSTD_LEVEL = 9
#: Columns that grow within a sorted partition besides its timestamps.
_DELTA = frozenset({"seq"})
#: Columns whose statistics part files keep: those queries prune on.
STAT_COLUMNS = frozenset({"ts", "recv_ts", "seq", "start_ts", "venue", "price"})


def compact_write_options(schema: pa.Schema) -> dict[str, Any]:
    """Keyword arguments of :func:`pyarrow.parquet.write_table` for a compacted part file."""
    strings = [f.name for f in schema if pa.types.is_string(f.type)]
    delta = {
        f.name: "DELTA_BINARY_PACKED" for f in schema if f.name in _DELTA or pa.types.is_timestamp(f.type)
    }
    return {
        "compression": "zstd",
        "compression_level": COMPACT_ZSTD_LEVEL,
        "use_dictionary": strings,
        "column_encoding": delta,
        "write_statistics": [n for n in STAT_COLUMNS if n in schema.names],
    }


def write_compacted(t: pa.Table, final: Path, *, replace: bool = False) -> None:
    """Write ``t`` to ``final`` with :func:`compact_write_options`, atomically and durably
    (:func:`recorder.store.fs.atomic_write`; ``replace``: over an existing file, which readers
    see whole before and after).

    Raises:
        StoreError: on any filesystem or Arrow error, or if ``final`` already exists and
            ``replace`` is False.
    """
    try:
        with atomic_write(final, replace=replace) as f:
            pq.write_table(t, f, **compact_write_options(t.schema))
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"cannot write {final}: {exc}") from exc


def is_compacted(path: Path) -> bool:
    """Whether a local part file is already in the compacted form (zstd; live part files of a
    capture are snappy). An unreadable file is not: compaction tries it and reports it."""
    try:
        meta = pq.read_metadata(path)
    except (OSError, pa.ArrowException):
        return False
    return meta.num_row_groups == 0 or meta.row_group(0).column(0).compression == "ZSTD"
