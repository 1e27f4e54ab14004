"""Bytes per entry for a synthetic stretch of a trading day at 200 symbols (one app key), same run:

- the journal as written (raw frames with 32-byte headers) and after its segments are sealed
  and compressed as the capture does it (after each checkpoint, then the last one at the end;
  :mod:`recorder.store.retention`), next to Arrow's zstd stream (level 1) of the same bytes;
- Parquet as a live capture leaves it (a flush every ``--flushes``-th of the input, one part
  file per partition per flush) and after ``compact`` (one file per partition);
- for reference, the raw frames as NDJSON compressed with gzip -6 and with zstd (level 3).

CPU seconds of the journal compression and of the compaction are printed per raw MB.

Usage: python benchmarks/bench_storage.py [--entries N] [--symbols S] [--flushes F]
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
from bench_ingest import generate

from recorder.store.compact import compact
from recorder.store.journal import JournalWriter, list_segments, read_records, write_checkpoint
from recorder.store.layout import journal_root
from recorder.store.pipeline import Pipeline
from recorder.store.retention import compress_sealed
from recorder.store.sink import Sink


def du(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=300_000)
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--flushes", type=int, default=12, help="live flushes over the input (default 12)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="recorder-bench-") as tmp:
        work = Path(tmp)
        frames_path = work / "frames.ndjson"
        lines, trades, books = generate(frames_path, args.entries, args.symbols)
        n = trades + books
        raw = frames_path.read_bytes()
        frames = raw.splitlines()
        print(
            f"{n:,} entries ({trades:,} 0B, {books:,} 0D) in {lines:,} frames, {args.symbols} symbols, "
            f"NDJSON {len(raw) / n:,.0f} bytes/entry"
        )
        store = work / "store"
        root = journal_root(store, "bench")
        t0 = time.time_ns()
        with JournalWriter(root, segment_bytes=32 << 20) as w:
            for i, f in enumerate(frames):
                w.append_frame(t0 + i, f)
        journal_raw = du([p for _, p in list_segments(root)])

        # The capture's path: the journal's frames decoded into a sink flushed F times.
        sink = Sink(store, "bench", max_bytes=1 << 40, max_age_s=1e12)
        pipe = Pipeline(sink)
        step = -(-len(frames) // args.flushes)
        records = list(read_records(root))
        arrow_zst, arrow_cpu = _arrow_stream(root)
        zst_cpu = 0.0
        for a in range(0, len(records), step):
            pipe.feed_records(records[a : a + step])
            pipe.drain()
            sink.flush_all()
            write_checkpoint(root, records[min(a + step, len(records)) - 1].fno)
            zst_cpu += _cpu(lambda: compress_sealed(root))
        sink.close()
        parts = list(store.glob("*/date=*/**/*.parquet"))
        live = du(parts)
        zst_cpu += _cpu(lambda: compress_sealed(root, include_last=True))
        journal_zst = du([p for _, p in list_segments(root)])
        compact_cpu = _cpu(lambda: compact(store))
        compacted = du(list(store.glob("*/date=*/**/*.parquet")))
        gz = len(gzip.compress(raw, compresslevel=6))
        zs = len(pa.compress(raw, "zstd", asbytes=True))

        def row(name: str, size: int, note: str = "") -> None:
            print(f"  {name:<36} {size / n:>8.1f} bytes/entry  {size / 1e6:>9.1f} MB  {note}")

        row("journal, as written", journal_raw)
        row("journal, Arrow zstd stream (level 1)", arrow_zst, f"{arrow_zst / journal_raw:.3f}x of raw")
        row("journal, sealed and compressed", journal_zst, f"{journal_zst / journal_raw:.3f}x of raw")
        row(f"parquet, live ({args.flushes} flushes)", live, f"{len(parts):,} part files")
        row("parquet, compacted", compacted, f"{compacted / gz:.2f}x gzip-6 of the frames (target <= 0.4x)")
        row("NDJSON frames, gzip -6", gz)
        row("NDJSON frames, zstd", zs)
        print(
            f"  after a capture ends, the journal takes {journal_zst / compacted:.2f}x the day's Parquet "
            "(target <= 1.0x)"
        )
        mb = journal_raw / 1e6
        print(
            f"  CPU: journal compression {zst_cpu:.1f} s ({zst_cpu / mb:.3f} s per raw MB; Arrow's stream "
            f"{arrow_cpu:.1f} s, {arrow_cpu / mb:.3f} s/MB), compaction {compact_cpu:.1f} s "
            f"({compact_cpu / (live / 1e6):.3f} s per live Parquet MB)"
        )


def _cpu(fn: Callable[[], object]) -> float:
    """CPU seconds of the process (every thread) while ``fn`` runs."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def _arrow_stream(root: Path) -> tuple[int, float]:
    """Bytes and CPU seconds of the journal's segments through Arrow's zstd stream (level 1),
    how sealed segments were compressed before the ``zstandard`` writer."""
    size, cpu = 0, 0.0
    for _, path in list_segments(root):
        data = path.read_bytes()
        t0 = time.process_time()
        out = pa.BufferOutputStream()
        with pa.CompressedOutputStream(out, "zstd") as z:
            z.write(data)
        cpu += time.process_time() - t0
        size += out.getvalue().size
    return size, cpu


if __name__ == "__main__":
    main()
