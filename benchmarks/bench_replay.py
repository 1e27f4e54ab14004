"""Replay encoding throughput against DuckDB's generic JSON writer, in the same run.

At 40, 200 (one app key) and 2,000 (the market) symbols, builds a store of synthetic trades
and order books through the capture's pipeline (so the part files are what a capture writes:
several per partition, sorted by ts) unless ``--data-dir``/``--date`` name an existing one,
then times over the same rows:

- DuckDB JSON: ``COPY (SELECT * FROM <table> WHERE date = … ORDER BY ts) TO … (FORMAT json)``
  for trades and order books, over the recorder's own DuckDB views (``queries.connect``);
- NDJSON: ``write_ndjson`` to /dev/null (``recorder replay --format ndjson``);
- serve: ``RecordedFeed`` stepped at full speed, each step's entries cut into REAL frames of
  1-4 entries and serialised as the venue does for a client that registered everything
  (``recorder replay --serve`` without the sockets);
- NDJSON, streamed: ``write_ndjson`` forced onto the bounded-memory path (catalog, then
  grouped reads) that selections larger than ``recorder.replay.scan.WHOLE_ROWS`` take.

Prints entries/s (best of ``--repeat``, runs interleaved) and the ratio to DuckDB's writer.
Usage: python benchmarks/bench_replay.py [--entries N] [--symbols N ...] [--repeat N]
                                         [--data-dir DIR --date YYYY-MM-DD]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
from store_builder import build_store

import queries
import recorder.replay.scan as scan
from recorder.replay.feed import RecordedFeed, write_ndjson
from recorder.replay.read import partitions, select

TABLES = ("trades", "orderbook")


def duckdb_json(root: Path, day: str, out: Path) -> int:
    """The baseline: DuckDB writes the same rows as generic JSON, each table ordered by ts."""
    con = queries.connect(root)
    n = 0
    try:
        for table in TABLES:
            target = str(out / f"{table}.json").replace("'", "''")
            row = con.execute(
                f"COPY (SELECT * FROM {table} WHERE date = DATE '{day}' ORDER BY ts) "
                f"TO '{target}' (FORMAT json)"
            ).fetchone()
            n += row[0] if row else 0  # COPY answers the rows it wrote
    finally:
        con.close()
    return n


def ndjson(root: Path, day: str) -> int:
    with open(os.devnull, "wb") as out:
        return write_ndjson(out, select(root, day)).entries


def ndjson_streamed(root: Path, day: str) -> int:
    whole, scan.WHOLE_ROWS = scan.WHOLE_ROWS, 0
    try:
        return ndjson(root, day)
    finally:
        scan.WHOLE_ROWS = whole


def serve(root: Path, day: str) -> int:
    """What --serve encodes: the feed's entries, then frames as the venue writes them."""
    rng = random.Random(1)
    with RecordedFeed(root, day, prefetch=False, max_step=1 << 30) as feed:
        feed.on_subscribed(feed.inventory.pairs, 0)
        while entries := feed.step(1):
            i = 0
            while i < len(entries):  # recorder.sim.market.real_frames, as Connection.offer does
                batch = entries[i : i + rng.randint(1, 4)]
                i += len(batch)
                orjson.dumps({"data": batch, "trnm": "REAL"})
        return feed.entries


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    started = time.perf_counter()
    n = fn()
    return n, time.perf_counter() - started


def bench(root: Path, day: str, repeat: int, tmp: Path) -> None:
    sel = select(root, day)
    parts = partitions(sel)
    files = sum(len(p.files) for p in parts)
    with scan.Scan(sel) as s:
        path = "streamed" if s.streamed else "one pass"
    runs: dict[str, Callable[[], int]] = {
        "DuckDB COPY ... (FORMAT json)": lambda: duckdb_json(root, day, tmp),
        "replay --format ndjson": lambda: ndjson(root, day),
        "replay --serve encoding": lambda: serve(root, day),
        "ndjson, streamed path": lambda: ndjson_streamed(root, day),
    }
    best: dict[str, tuple[int, float]] = {}
    for _ in range(repeat):  # interleaved, so that a busy moment hits every contender
        for name, fn in runs.items():
            n, t = timed(fn)
            if name not in best or t < best[name][1]:
                best[name] = (n, t)
    base_n, base_t = best["DuckDB COPY ... (FORMAT json)"]
    print(f"  {files:,} part files in {len(parts):,} partitions; this selection reads in {path}")
    print(f"  {'':32s} {'entries':>9s} {'seconds':>8s} {'entries/s':>10s} {'vs DuckDB':>9s}")
    for name, (n, t) in best.items():
        assert n == base_n, f"{name}: {n} entries, DuckDB wrote {base_n} rows"
        print(f"  {name:32s} {n:9,d} {t:8.2f} {n / t:10,.0f} {base_t / t:8.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=150_000, help="Entries per store (default 150,000).")
    ap.add_argument("--symbols", type=int, nargs="+", default=[40, 200, 2000])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--data-dir", type=Path, help="An existing store (default: build one per width).")
    ap.add_argument("--date", default="2026-07-20")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    try:
        if args.data_dir is not None:
            print(f"store {args.data_dir}, {args.date}")
            bench(args.data_dir, args.date, args.repeat, tmp)
        for width in [] if args.data_dir is not None else args.symbols:
            root = tmp / f"store-{width}"
            started = time.perf_counter()
            n = build_store(root, args.date, args.entries, width)
            took = time.perf_counter() - started
            print(f"\n{width} symbols (KRX+NXT): {n:,} entries, store built in {took:.0f}s")
            bench(root, args.date, args.repeat, tmp)
            shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\npyarrow {pa.__version__}, duckdb {duckdb.__version__}, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
