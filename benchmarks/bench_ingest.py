"""Ingest throughput against two baselines measured in the same run.

Generates NDJSON of REAL frames from the synthetic market (mixed 0B and 0D, 1-4 entries per
frame, as Kiwoom batches them), then times, over the same file:

- parse-only: ``orjson.loads`` of every line (the ceiling for anything that reads JSON);
- ``recorder ingest`` (the real CLI in a subprocess: decode, validate, write Parquet);
- naive (``naive_recorder.py``): ``json.loads``, a dict per entry, a pandas DataFrame,
  ``to_parquet``; run like ingest, as a program timed end to end, and also in this process
  with its imports done beforehand (the figure earlier versions of this script printed).

Prints entries/s for each, the ratios, part files and Parquet bytes per entry.
At 40, 200 (one app key) and 2,000 (the market) symbols: the per-partition cost shows at width.
Usage: python benchmarks/bench_ingest.py [--entries N] [--symbols N ...] [--repeat N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from recorder.kiwoom.time import KST
from recorder.sim.market import SyntheticMarket, real_frames


def generate(path: Path, entries: int, symbols: int, seed: int = 7) -> tuple[int, int, int]:
    """Write frames until ``entries`` entries; returns (lines, trades, books)."""
    market = SyntheticMarket(
        SyntheticMarket.universe(symbols, seed),
        seed=seed,
        venues=("KRX", "NXT"),
        trade_rate=3.0,
        book_rate=3.6,
    )
    rng = random.Random(seed)
    now = int(dt.datetime(2026, 7, 20, 9, 0, tzinfo=KST).timestamp()) * 1_000_000_000
    n = lines = trades = 0
    with open(path, "wb") as f:
        while n < entries:
            now += 100_000_000
            for frame, data in real_frames(market.step(now), rng):
                f.write(frame + b"\n")
                lines += 1
                n += len(data)
                trades += sum(e["type"] == "0B" for e in data)
    return lines, trades, n - trades


def parse_only(path: Path) -> tuple[int, float]:
    started = time.perf_counter()
    n = 0
    with open(path, "rb") as f:
        for line in f:
            n += len(orjson.loads(line)["data"])
    return n, time.perf_counter() - started


def ingest_cli(path: Path, store: Path) -> float:
    """``recorder ingest`` into ``store``, a folder that must not exist yet.

    Stores are removed only when the benchmark ends: ext4 does not reuse the inodes of files
    deleted in the last minute or more, and scans past each of them for every file it
    creates. Ingesting 2,000 symbols (8,000 new files and folders) right after deleting the
    previous run's store took up to 9 s instead of 5, nearly all of it in that scan. A
    nightly ingest into a lasting store does not pay it.
    """
    assert not store.exists()
    exe = Path(sys.executable).with_name("recorder")
    started = time.perf_counter()
    subprocess.run(
        [
            str(exe),
            "--log-level",
            "WARNING",
            "ingest",
            str(path),
            "--data-dir",
            str(store),
            "--date",
            "2026-07-20",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def naive_process(path: Path, out: Path) -> float:
    """The naive recorder as a program, timed end to end like ``recorder ingest``."""
    script = Path(__file__).with_name("naive_recorder.py")
    started = time.perf_counter()
    subprocess.run([sys.executable, str(script), str(path), str(out)], check=True)
    return time.perf_counter() - started


def naive_in_process(path: Path, out: Path) -> float:
    """The naive recorder's work alone, in this process (best of several: imports done)."""
    import naive_recorder

    started = time.perf_counter()
    naive_recorder.record(str(path), str(out))
    return time.perf_counter() - started


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.parquet"))


TARGETS = {200: 0.5, 2000: 0.3}  # ingest / parse-only at that many symbols (issue targets)


def width(work: Path, entries: int, symbols: int, repeat: int, naive: bool) -> None:
    """Time parse-only and ingest (and, with ``naive``, the naive recorder) at one width."""
    frames = work / f"frames-{symbols}.ndjson"
    lines, trades, books = generate(frames, entries, symbols)
    n = trades + books
    size = frames.stat().st_size
    print(
        f"\n{symbols} symbols: {n:,} entries ({trades:,} 0B, {books:,} 0D) in {lines:,} frames "
        f"on KRX+NXT, {size / 1e6:.0f} MB NDJSON ({size / n:.0f} bytes/entry), {os.cpu_count()} CPUs"
    )
    os.sync()  # the file's writeback would otherwise land on whichever run comes first
    # Best of --repeat back-to-back runs of each path: its steady state. (On the 2-core
    # VM this was written on, a multi-threaded run that directly follows different work
    # costs the kernel about 0.3 s more in page faults; back to back, it does not.)
    # The two alternate, so that a machine whose speed drifts (a shared VM) drifts under both.
    stores = [work / f"store-{symbols}-{k}" for k in range(repeat)]
    times = [(parse_only(frames)[1], ingest_cli(frames, store)) for store in stores]
    t_parse, t_ingest = min(p for p, _ in times), min(i for _, i in times)
    rate = {"parse": n / t_parse, "ingest": n / t_ingest}
    target = TARGETS.get(symbols)
    goal = f" (target >= {target}x)" if target else ""
    files = sum(1 for _ in stores[0].rglob("*.parquet"))
    print(f"  parse-only (orjson.loads)   {rate['parse']:>10,.0f} entries/s")
    print(
        f"  recorder ingest (CLI)       {rate['ingest']:>10,.0f} entries/s   "
        f"= {rate['ingest'] / rate['parse']:.2f}x parse-only{goal}; {files:,} part files"
    )
    stored = du(stores[0])
    print(f"  parquet: {stored / n:.1f} bytes/entry ({stored / 1e6:.1f} MB)")
    if naive:
        t_naive = min(naive_process(frames, work / "naive.parquet") for _ in range(repeat))
        t_work = min(naive_in_process(frames, work / "naive.parquet") for _ in range(repeat))
        rate["naive"], rate["work"] = n / t_naive, n / t_work
        naive, work = rate["naive"], rate["work"]
        print(
            f"  naive (json+pandas)         {naive:>10,.0f} entries/s   a program, timed like ingest: "
            f"ingest is {rate['ingest'] / naive:.1f}x that (target >= 5x)"
        )
        print(
            f"    its work alone            {work:>10,.0f} entries/s   in this process, imports done: "
            f"ingest is {rate['ingest'] / work:.1f}x that"
        )
    frames.unlink()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=150_000)
    ap.add_argument("--symbols", type=int, nargs="+", default=[40, 200, 2000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="recorder-bench-") as tmp:
        for i, symbols in enumerate(args.symbols):
            width(Path(tmp), args.entries, symbols, args.repeat, naive=i == 0)


if __name__ == "__main__":
    main()
