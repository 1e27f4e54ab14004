"""The ``bars`` named query over a full synthetic day, on three layouts of the same trades.

Generates one KST trading day (09:00-15:30) of trades for N symbols (about T trades per
symbol, 80 % on KRX and 20 % on NXT, with consistent cum_volume), then stores it three ways:

- uncompacted: written through :class:`recorder.store.sink.Sink` in F flushes, as a capture with
  a flush age would, so each ``date=/symbol=`` partition holds F part files;
- compacted: the same rows, one part file per partition (what a compaction produces);
- single file: the same rows in one Parquet file (with ``date`` and ``symbol`` columns,
  DuckDB-sized row groups) read with ``read_parquet`` directly: the baseline.

and times, best of R runs each, end to end (open a connection, create the view, run the
query, fetch the Arrow result):

- ``bars`` at 1 minute for every symbol of the day;
- ``bars`` at 1 minute for one symbol (partition pruning against row-group statistics).

Prints the timings and their ratios against the single file.
Usage: python benchmarks/bench_queries.py [--symbols 200] [--trades 2000] [--flushes 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import queries
from recorder.kiwoom.decode import SEQ_SHIFT, Decoded, TableColumns
from recorder.kiwoom.schema import SCHEMAS
from recorder.kiwoom.time import KST, NS
from recorder.sim.market import SyntheticMarket
from recorder.store.sink import Sink, write_part

DAY = "2026-07-20"
OPEN_NS = int(dt.datetime(2026, 7, 20, 9, 0, tzinfo=KST).timestamp()) * NS
SESSION_S = 6 * 3600 + 30 * 60  # 09:00-15:30
ENTRIES_PER_FRAME = 4


def generate(n_symbols: int, trades_per_symbol: int, seed: int = 7) -> dict[str, list[Any]]:
    """Trade columns for the whole day (every column of the trades schema, plus ``date``).

    Rows are numbered into ``seq`` in time order across symbols, 4 entries per frame, as a
    capture would number them.
    """
    rng = random.Random(seed)
    rows: list[tuple[int, str, str, int, int, bool]] = []
    for code in SyntheticMarket.universe(n_symbols, seed):
        px = rng.choice([5_000, 20_000, 60_000, 150_000, 400_000])
        tick = 5 if px < 20_000 else 50 if px < 100_000 else 500
        n = max(1, int(rng.gauss(trades_per_symbol, trades_per_symbol * 0.1)))
        for t in sorted(rng.randrange(SESSION_S) for _ in range(n)):
            px = max(tick, px + tick * rng.choice((-1, 0, 0, 1)))
            venue = "KRX" if rng.random() < 0.8 else "NXT"
            rows.append(
                (OPEN_NS + t * NS, code, venue, px, int(rng.lognormvariate(3, 1)) + 1, rng.random() < 0.5)
            )
    rows.sort(key=lambda r: r[0])
    cols: dict[str, list[Any]] = {name: [] for name in SCHEMAS["trades"].names}
    cum: dict[tuple[str, str], int] = {}
    for i, (ts, code, venue, price, qty, buy) in enumerate(rows):
        key = (code, venue)
        cum[key] = cum.get(key, 10_000) + qty
        cols["ts"].append(ts)
        cols["recv_ts"].append(ts + 30_000_000)
        cols["seq"].append((i // ENTRIES_PER_FRAME) << SEQ_SHIFT | i % ENTRIES_PER_FRAME)
        cols["symbol"].append(code)
        cols["venue"].append(venue)
        cols["price"].append(price)
        cols["volume"].append(qty)
        cols["side"].append("buy" if buy else "sell")
        cols["cum_volume"].append(cum[key])
        cols["best_ask"].append(price if buy else price + 5)
        cols["best_bid"].append(price - 5 if buy else price)
        cols["session"].append("2")
        cols["exchange"].append(venue)
    n = len(rows)
    for name, values in cols.items():
        if not values:  # columns the benchmark does not model: null, as when a FID is absent
            cols[name] = [None] * n
    cols["date"] = [DAY] * n
    return cols


def write_uncompacted(root: Path, cols: dict[str, list[Any]], flushes: int) -> None:
    """Through the Sink, ``flushes`` time slices each flushed on its own (F files per partition)."""
    sink = Sink(root, "bench", max_rows=1 << 40, max_bytes=1 << 40)
    n = len(cols["seq"])
    bounds = [n * k // flushes for k in range(flushes + 1)]
    for a, b in itertools.pairwise(bounds):
        part = {name: values[a:b] for name, values in cols.items()}
        sink.add(Decoded(tables={"trades": TableColumns("trades", part)}))
        sink.flush_all()
    sink.close()


def write_compacted(src: Path, dst: Path) -> None:
    """Each partition of ``src`` as one part file in ``dst``, rows sorted by (ts, seq)."""
    for d in sorted(src.glob("trades/date=*/symbol=*")):
        t = pa.concat_tables(pq.read_table(f) for f in sorted(d.glob("*.parquet")))
        t = t.sort_by([("ts", "ascending"), ("seq", "ascending")])
        first, last = (pc.min(t["seq"]).as_py() >> SEQ_SHIFT, pc.max(t["seq"]).as_py() >> SEQ_SHIFT)
        rel = d.relative_to(src)
        write_part(t, dst / rel / f"part-compact-{first:012d}-{last:012d}.parquet")


def write_single(src: Path, path: Path) -> None:
    """All of ``src`` in one file, ``date`` and ``symbol`` as ordinary columns."""
    con = queries.connect(src)
    t = con.sql("SELECT * FROM trades ORDER BY symbol, ts, seq").to_arrow_table()
    con.close()
    # Row groups of DuckDB's own default size, so DuckDB can read them in parallel.
    pq.write_table(t, path, compression="zstd", row_group_size=122_880)


def best_of(repeat: int, fn: Callable[[], pa.Table]) -> tuple[float, int]:
    best, rows = float("inf"), -1
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = fn().num_rows
        best = min(best, time.perf_counter() - t0)
    return best, rows


def run_single(path: Path, params: dict[str, Any]) -> pa.Table:
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'Asia/Seoul'")
        p = path.as_posix().replace("'", "''")
        con.execute(f"CREATE VIEW trades AS SELECT * FROM read_parquet('{p}')")
        return queries.get("bars").execute(con, params)
    finally:
        con.close()


def size_mb(paths: list[Path]) -> float:
    return sum(p.stat().st_size for p in paths) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--trades", type=int, default=2000, help="trades per symbol (mean)")
    ap.add_argument("--flushes", type=int, default=8, help="part files per partition when uncompacted")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="build the stores here and keep them")
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-queries-"))
    work.mkdir(parents=True, exist_ok=True)
    unc, comp, single = work / "uncompacted", work / "compacted", work / "single.parquet"
    for p in (unc, comp):
        shutil.rmtree(p, ignore_errors=True)
    single.unlink(missing_ok=True)
    try:
        t0 = time.perf_counter()
        cols = generate(args.symbols, args.trades)
        write_uncompacted(unc, cols, args.flushes)
        write_compacted(unc, comp)
        write_single(unc, single)
        n_rows = len(cols["seq"])
        threads = duckdb.connect().execute("SELECT current_setting('threads')").fetchall()[0][0]
        print(
            f"{n_rows:,} trades, {args.symbols} symbols, {DAY} 09:00-15:30 KST "
            f"(built in {time.perf_counter() - t0:.1f}s, DuckDB {duckdb.__version__}, {threads} threads)"
        )
        some = cols["symbol"][len(cols["symbol"]) // 2]
        scenarios = {
            "bars 1 min, all symbols": {"start": DAY, "end": DAY},
            f"bars 1 min, one symbol ({some})": {"start": DAY, "end": DAY, "symbol": some},
        }
        layouts: dict[str, tuple[list[Path], Callable[[dict[str, Any]], pa.Table]]] = {
            "uncompacted": (sorted(unc.rglob("*.parquet")), lambda p: queries.run("bars", unc, **p)),
            "compacted": (sorted(comp.rglob("*.parquet")), lambda p: queries.run("bars", comp, **p)),
            "single file": ([single], lambda p: run_single(single, p)),
        }
        print(f"\n{'layout':<13} {'files':>6} {'MB':>7}")
        for name, (files, _) in layouts.items():
            print(f"{name:<13} {len(files):>6} {size_mb(files):>7.1f}")
        for title, params in scenarios.items():
            results = {
                name: best_of(args.repeat, lambda f=fn, p=params: f(p)) for name, (_, fn) in layouts.items()
            }
            base = results["single file"][0]
            rows = {r for _, r in results.values()}
            assert len(rows) == 1, f"layouts disagree on the row count: {results}"
            print(f"\n{title}: {rows.pop():,} bars, best of {args.repeat}")
            for name, (secs, _) in results.items():
                print(f"  {name:<13} {secs * 1000:>9.1f} ms   {secs / base:>5.2f}x single file")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
