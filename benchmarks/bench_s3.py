"""The store on S3: seconds and S3 requests for ingest, compact and a ``bars`` query, and what a
day costs in objects and bytes. Not part of ``make bench`` (it needs ``moto[server]``, the dev extra).

A real S3-compatible server runs on loopback (moto's ThreadedMotoServer); its access log counts
the requests by method (LIST is a GET with ``list-type``). Loopback hides S3's latency (tens of
ms a request on AWS): request counts, not seconds, are what carries over.

At each width (default 200 symbols, one app key; 2,000 with ``--symbols 200 2000``):

- ``recorder ingest --data-dir s3://…`` of a generated day (the CLI in a subprocess);
- the same frames as a capture writes them: ``--flushes`` flushes per partition, uploaded,
  then ``recorder compact --data-dir s3://…``;
- ``recorder query --named bars`` for one symbol and for all, over S3 and over a local copy;
- objects and bytes per table after compaction, and a year of 250 trading days extrapolated.

Usage: python benchmarks/bench_s3.py [--entries N] [--symbols N ...] [--flushes N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_ingest import generate

DATE = "2026-07-20"
DAYS_A_YEAR = 250
_REQ = re.compile(r"(GET|PUT|POST|HEAD|DELETE) (\S+)")


class Requests(logging.Handler):
    """Counts the S3 server's requests: by method, LIST apart from GET."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.mutex = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if m := _REQ.search(record.getMessage()):
            method, path = m.groups()
            if method == "GET" and "list-type" in path:
                method = "LIST"
            elif method == "POST" and "uploads" in path:
                method = "POST(multipart)"
            with self.mutex:
                self.counts[method] += 1

    def take(self) -> Counter[str]:
        with self.mutex:
            out, self.counts = self.counts, Counter()
        return out


def show(counts: Counter[str]) -> str:
    total = sum(counts.values())
    return f"{total:,} requests (" + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) + ")"


def recorder(*args: str, env: dict[str, str]) -> tuple[float, str]:
    exe = Path(sys.executable).with_name("recorder")
    started = time.perf_counter()
    out = subprocess.run(
        [str(exe), "--log-level", "WARNING", *args], check=True, env=env, capture_output=True, text=True
    )
    return time.perf_counter() - started, out.stdout


def staged_day(frames: Path, local: Path, flushes: int) -> int:
    """The frames decoded as a capture writes them: ``flushes`` flushes, one file per partition
    each, writer ``w1``, frame numbers continuous. Returns the part files written."""
    from recorder.kiwoom.time import trading_day
    from recorder.store.pipeline import Pipeline
    from recorder.store.sink import Sink

    lines = frames.read_bytes().splitlines()
    sink = Sink(local, "w1", rejects_date=DATE)
    pipe = Pipeline(sink, trading_day=trading_day(dt.date.fromisoformat(DATE)))
    size = -(-len(lines) // flushes)
    recv = time.time_ns()
    for k in range(flushes):
        chunk = lines[k * size : (k + 1) * size]
        pipe.feed_real_frames(
            chunk, [recv] * len(chunk), list(range(k * size + 1, k * size + 1 + len(chunk)))
        )
        pipe.drain()
        sink.flush_all()
    sink.close()
    return sink.files_written


def width(
    work: Path, entries: int, symbols: int, flushes: int, counter: Requests, env: dict[str, str]
) -> None:
    import pyarrow.fs as pafs

    from recorder.store import objstore

    work.mkdir(parents=True)
    frames = work / f"frames-{symbols}.ndjson"
    lines, trades, books = generate(frames, entries, symbols)
    n = trades + books
    print(f"\n{symbols} symbols: {n:,} entries ({trades:,} 0B, {books:,} 0D) in {lines:,} frames, KRX+NXT")
    fs = pafs.S3FileSystem(**objstore.s3_options(env), allow_bucket_creation=True)

    # ingest: one file per partition, uploaded when complete
    fs.create_dir(f"ingest-{symbols}")
    url = f"s3://ingest-{symbols}/day"
    counter.take()
    t, _ = recorder(
        "ingest",
        str(frames),
        "--data-dir",
        url,
        "--date",
        DATE,
        "--journal-dir",
        str(work / "state"),
        env=env,
    )
    req = counter.take()
    local_t, _ = recorder(
        "ingest", str(frames), "--data-dir", str(work / "local-ingest"), "--date", DATE, env=env
    )
    print(f"  ingest to S3        {t:6.2f} s  {n / t:>9,.0f} entries/s  (local folder: {local_t:.2f} s)")
    print(f"    {show(req)}")

    # a capture's day: several flushes per partition, uploaded, then compacted on S3
    bucket = f"capture-{symbols}"
    fs.create_dir(bucket)
    store = objstore.S3Store(bucket, "day")
    local = work / f"staged-{symbols}"
    files = staged_day(frames, local, flushes)
    shutil.copytree(local, work / f"local-{symbols}")
    counter.take()
    started = time.perf_counter()
    objstore.publish(store, local, check_existing=False)
    t_up = time.perf_counter() - started
    req = counter.take()
    print(f"  upload {files:,} part files ({flushes} flushes) {t_up:6.2f} s  {show(req)}")
    t, out = recorder("compact", "--data-dir", store.url, "--journal-dir", str(work / "state"), env=env)
    req = counter.take()
    t_local, _ = recorder("compact", "--data-dir", str(work / f"local-{symbols}"), env=env)
    print(f"  compact on S3       {t:6.2f} s  (local folder: {t_local:.2f} s)  {show(req)}")
    print(f"    {out.strip()}")

    # bars: one symbol (partition pruning) and every symbol, over S3 and over the local copy
    sym = sorted(
        p.name.split("=")[1] for p in (work / f"local-{symbols}" / "trades" / f"date={DATE}").iterdir()
    )[0]
    for what, extra in ((f"one symbol ({sym})", ["--param", f"symbol={sym}"]), ("every symbol", [])):
        args = [
            "query",
            "--named",
            "bars",
            "--param",
            f"start={DATE}",
            "--param",
            f"end={DATE}",
            *extra,
            "--format",
            "csv",
            "--out",
            str(work / "bars.csv"),
        ]
        counter.take()
        t, _ = recorder(*args, "--data-dir", store.url, env=env)
        req = counter.take()
        t_local, _ = recorder(*args, "--data-dir", str(work / f"local-{symbols}"), env=env)
        print(f"  bars, {what:<20} {t:6.2f} s  (local folder: {t_local:.2f} s)  {show(req)}")

    # what a day costs after compaction
    objs = objstore.list_objects(store)
    per_table: Counter[str] = Counter(o.rel.split("/")[0] for o in objs)
    size: Counter[str] = Counter()
    for o in objs:
        size[o.rel.split("/")[0]] += o.size
    total = sum(size.values())
    print(
        f"  a day after compaction: {len(objs):,} objects, {total / 1e6:,.1f} MB "
        f"({total / n:.1f} bytes/entry): "
        + ", ".join(f"{t} {per_table[t]:,} ({size[t] / 1e6:,.1f} MB)" for t in sorted(per_table))
    )
    print(
        f"  a year ({DAYS_A_YEAR} days of this volume): {len(objs) * DAYS_A_YEAR:,} objects, "
        f"{total * DAYS_A_YEAR / 1e9:,.1f} GB"
    )
    frames.unlink()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=150_000)
    ap.add_argument("--symbols", type=int, nargs="+", default=[200])
    ap.add_argument("--flushes", type=int, default=6, help="flushes per partition before compaction")
    args = ap.parse_args()

    from moto.server import ThreadedMotoServer

    counter = Requests()
    wlog = logging.getLogger("werkzeug")
    wlog.addHandler(counter)
    wlog.setLevel(logging.INFO)
    wlog.propagate = False
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
    }
    os.environ.update(env)
    print(f"S3: moto server on {host}:{port} (loopback), {os.cpu_count()} CPUs")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp:
            for symbols in args.symbols:
                width(Path(tmp) / str(symbols), args.entries, symbols, args.flushes, counter, env)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
