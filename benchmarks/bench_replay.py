"""Replay throughput against reading the same partitions with pyarrow alone, in the same run.

Builds a store of synthetic trades and order books (through the capture's pipeline, so the
part files are what a capture writes: several per partition, sorted by ts) unless
``--data-dir``/``--date`` name an existing one, then times over the same selection:

- pyarrow read: ``pyarrow.dataset(...).to_table()`` of the same part files (no ordering);
- pyarrow read + sort: the same, each table sorted by (ts, recv_ts, seq) in memory;
- ``iter_batches``: the streaming, time-merged Arrow batches;
- ``iter_rows``: time-merged Python tuples (ReplayRow);
- NDJSON: ``write_ndjson`` to /dev/null (REAL frames via protocol.encode_frame);
- feed: ``RecordedFeed.step`` at full speed (what ``--serve`` encodes per entry).

Prints entries/s for each (best of ``--repeat``) and the ratio to the pyarrow read.
Usage: python benchmarks/bench_replay.py [--rows N] [--symbols N] [--repeat N]
                                         [--data-dir DIR --date YYYY-MM-DD]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
from store_builder import build_store

from recorder.replay import iter_batches, iter_rows
from recorder.replay.feed import RecordedFeed, write_ndjson
from recorder.replay.read import KEYS, partitions, select


def best(fn: Callable[[], int], repeat: int) -> tuple[int, float]:
    times, n = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - started)
    return n, min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=250_000)
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data-dir", type=Path, help="An existing store (default: build one in a temp dir).")
    ap.add_argument("--date", default="2026-07-20")
    args = ap.parse_args()

    tmp = None
    if args.data_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench-replay-"))
        root = tmp / "store"
        started = time.perf_counter()
        n = build_store(root, args.date, args.rows, args.symbols)
        print(f"built {n:,} rows ({args.symbols} symbols, KRX+NXT) in {time.perf_counter() - started:.1f}s")
    else:
        root = args.data_dir
    sel = select(root, args.date)
    parts = partitions(sel)
    files = {t: [str(f) for p in parts if p.table == t for f in p.files] for t in sel.tables}
    print(f"{sum(len(f) for f in files.values())} part files in {len(parts)} partitions")

    def pyarrow_read(sort: bool = False) -> int:
        n = 0
        for fs in files.values():
            if fs:
                t = ds.dataset(fs, format="parquet").to_table()
                if sort:
                    t = t.sort_by(KEYS)
                n += t.num_rows
        return n

    def batches() -> int:
        return sum(b.num_rows for _, b in iter_batches(root, args.date))

    def rows() -> int:
        return sum(1 for _ in iter_rows(root, args.date))

    def ndjson() -> int:
        with open(os.devnull, "wb") as out:
            return write_ndjson(out, sel).entries

    def feed() -> int:
        with RecordedFeed(root, args.date, prefetch=False, max_step=1 << 30) as f:
            f.on_subscribed(f.inventory.pairs, 0)
            while f.step(1):
                pass
            return f.entries

    results = [
        ("pyarrow read (unordered)", best(pyarrow_read, args.repeat)),
        ("pyarrow read + sort", best(lambda: pyarrow_read(sort=True), args.repeat)),
        ("iter_batches", best(batches, args.repeat)),
        ("iter_rows", best(rows, args.repeat)),
        ("ndjson (write_ndjson)", best(ndjson, args.repeat)),
        ("feed.step (serve encode)", best(feed, max(1, args.repeat - 1))),
    ]
    base_n, base_t = results[0][1]
    print(f"\n{'':26s} {'entries':>9s} {'seconds':>8s} {'entries/s':>11s} {'vs pyarrow':>10s}")
    for name, (n, t) in results:
        assert n == base_n, f"{name} read {n} rows, pyarrow {base_n}"
        print(f"{name:26s} {n:9,d} {t:8.3f} {n / t:11,.0f} {t / base_t:9.1f}x")
    print(f"\npyarrow {pa.__version__}")
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
