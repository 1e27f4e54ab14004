"""Live capture throughput against a client that only reads the socket, in the same run.

A store of N recorded entries (S symbols, KRX) is served by the embedded venue as fast as
each client reads (``replay --serve`` at speed max, with socket backpressure). Two clients
take the same blast in turn:

- ``recv()`` only: a Python websockets client that logs in, registers, echoes PINGs and
  counts entries (a substring count per frame; no JSON parsing, nothing written);
- ``recorder capture``: the real CLI in a subprocess, journaling and decoding into Parquet.

Both are timed from the venue's side, from the first entry it hands out to the last one
(the receive rate: with backpressure the venue cannot run ahead of the reader by more than
the socket buffers), and the capture also until its process has exited after writing every
row (end to end). The rows in Parquet are counted: anything short of N is loss.

Usage: python benchmarks/bench_live.py [--entries N] [--symbols S] [--repeat R]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
from store_builder import build_store

from recorder.replay.feed import RecordedFeed
from recorder.sim.market import real_frames
from recorder.sim.venue import Venue, VenueConfig

DAY = "2026-07-20"
APPKEY, SECRET = "bench-appkey-00000001", "bench-secret-00000001"

RECV_ONLY = r"""
import asyncio, sys, time, httpx, orjson, websockets
rest, ws_url, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
items = sys.argv[4].split(",")
async def main():
    async with httpx.AsyncClient() as c:
        r = await c.post(rest + "/oauth2/token", json={"grant_type": "client_credentials",
                         "appkey": sys.argv[5], "secretkey": sys.argv[6]})
        token = r.json()["token"]
    async with websockets.connect(ws_url, max_size=None, ping_interval=None) as ws:
        await ws.send(orjson.dumps({"trnm": "LOGIN", "token": token}).decode())
        while True:
            m = orjson.loads(await ws.recv())
            if m.get("trnm") == "PING": await ws.send(orjson.dumps(m).decode())
            elif m.get("trnm") == "LOGIN": break
        for i in range(0, len(items), 100):
            await ws.send(orjson.dumps({"trnm": "REG", "grp_no": "1", "refresh": "1",
                "data": [{"item": items[i:i + 100], "type": ["0B", "0D"]}]}).decode())
        n = 0
        while n < total:
            frame = await ws.recv()
            if '"PING"' in frame and '"REAL"' not in frame:
                await ws.send(frame)
                continue
            n += frame.count('"item"')
        print(n, time.time_ns())
asyncio.run(main())
"""


def _items(root: Path) -> list[str]:
    with RecordedFeed(root, DAY, prefetch=False) as feed:
        return feed.items


class _Blast:
    """A venue feed that writes pre-encoded recorded frames as fast as the sockets take them.

    The entries are read and cut into REAL frames (1-4 entries each, as Kiwoom batches them)
    before the clock starts, and handed to each subscribed connection's send queue directly,
    so the venue's own encoding is not what is measured.
    """

    def __init__(self, root: Path) -> None:
        with RecordedFeed(root, DAY, prefetch=False, max_step=1 << 30) as feed:
            feed.on_subscribed(feed.inventory.pairs, 0)
            entries: list[dict[str, Any]] = []
            while batch := feed.step(1):
                entries.extend(batch)
            self.pairs = feed.inventory.pairs
        self.total = len(entries)
        self.frames = [f.decode() for f, _ in real_frames(entries, random.Random(7))]
        self.pos = 0
        self.started_ns: int | None = None
        self.venue: Venue | None = None

    @property
    def exhausted(self) -> bool:
        return self.pos >= len(self.frames)

    def attach(self, venue: Venue) -> None:
        self.venue = venue

    def on_subscribed(self, subscriptions: frozenset[tuple[str, str]], now_ns: int) -> None:
        if self.started_ns is None and self.pairs <= subscriptions:
            self.started_ns = now_ns

    def symbols_info(self) -> list[dict[str, Any]]:
        return []

    def step(self, now_ns: int) -> list[dict[str, Any]]:
        if self.started_ns is None or self.venue is None or self.exhausted:
            return []
        conns = [c for c in self.venue.connections.values() if c.logged_in and c.subscriptions]
        room = self.venue.config.send_queue_max // 2 - max((c.queued for c in conns), default=0)
        chunk = self.frames[self.pos : self.pos + max(0, room)]
        for conn in conns:
            for frame in chunk:
                conn.send(frame)
        self.pos += len(chunk)
        return []


class _Served:
    """The venue with the blast feed, on an event loop of its own in this process."""

    def __init__(self, feed: _Blast) -> None:
        self.feed = feed
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bench-venue", daemon=True)
        self.thread.start()
        cfg = VenueConfig(port=0, record_sent=False, appkey=APPKEY, secretkey=SECRET, tick_interval=0.002)
        self.venue = Venue(cfg, feed=feed)
        self.call(self.venue.start())

    def call(self, coro: Any, timeout: float = 600) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def wait(self, predicate: Callable[[], bool]) -> None:
        self.call(self.venue.wait_for(predicate, 600))

    def get(self, fn: Callable[[], Any]) -> Any:
        async def inline() -> Any:
            return fn()

        return self.call(inline())

    def close(self) -> None:
        self.call(self.venue.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def run_client(
    blast: _Blast, cmd: list[str], env: dict[str, str], stop: bool, done_file: Path | None = None
) -> tuple[float, float, float]:
    """Serve the recording to one client process.

    Returns the receive seconds (first entry handed out → every entry read by the client),
    the end-to-end seconds (first entry → ``done_file`` last written: for a capture its journal
    CHECKPOINT, written once every row is durable in Parquet; without it, the exit) and the
    seconds to the process's exit (with ``stop``, it is sent SIGINT once everything is out;
    a capture then also seals and compresses its journal before it exits).
    """
    blast.pos, blast.started_ns = 0, None
    served = _Served(blast)
    feed, venue = served.feed, served.venue
    argv = [a.replace("{REST}", venue.rest_url).replace("{WS}", venue.ws_url) for a in cmd]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        served.wait(lambda: feed.started_ns is not None)
        served.wait(lambda: feed.exhausted and venue.backlog() == 0)
        if stop:
            # Clients read in order: once the PING is echoed, every entry before it was read
            # (and, by the recorder, journaled).
            served.call(venue.ping_barrier(600))
            t_read = served.get(venue.clock)
            proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=600)
        t_exit = time.time_ns()
        if not stop:
            t_read = int(stdout.split()[1])  # the client's clock at its last entry
        t_start = served.get(lambda: feed.started_ns)
    finally:
        if proc.poll() is None:
            proc.kill()
        served.close()
    if proc.returncode != 0:
        sys.exit(f"client failed ({proc.returncode}): {stderr[-2000:]}")
    t_done = done_file.stat().st_mtime_ns if done_file is not None else t_exit
    return (t_read - t_start) / 1e9, (t_done - t_start) / 1e9, (t_exit - t_start) / 1e9


def _parquet_rows(store: Path) -> int:
    con = duckdb.connect()
    return sum(
        con.execute(f"SELECT count(*) FROM read_parquet('{store}/{t}/**/*.parquet')").fetchone()[0]
        for t in ("trades", "orderbook")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    try:
        root = tmp / "recorded"
        total = build_store(root, DAY, args.entries, args.symbols, venues=("KRX",))
        items = _items(root)
        blast = _Blast(root)
        total = blast.total
        print(
            f"recorded {total:,} entries over {len(items)} items; serving them as fast as each client reads"
        )
        env = {**os.environ, "KIWOOM_APPKEY": APPKEY, "KIWOOM_SECRETKEY": SECRET}
        recv_only = [sys.executable, "-c", RECV_ONLY, "{REST}", "{WS}", str(total), ",".join(items)]
        recv_only += [APPKEY, SECRET]
        best: dict[str, tuple[float, float]] = {}
        for r in range(args.repeat):
            recv_s, _, _ = run_client(blast, recv_only, env, stop=False)
            store = tmp / f"capture-{r}"
            capture = [sys.executable, "-m", "recorder.cli.main", "--log-level", "WARNING", "capture"]
            capture += ["--ws-url", "{WS}", "--rest-url", "{REST}", "--symbols", ",".join(items)]
            capture += ["--data-dir", str(store), "--writer-id", "bench", "--trading-date", DAY]
            # End to end is "until every row is in Parquet": the compaction a nightly run does
            # afterwards is not part of it.
            capture += ["--duration", "30m", "--force", "--no-compact"]
            checkpoint = store / "_journal" / "bench" / "CHECKPOINT"
            cap_recv_s, cap_e2e_s, cap_exit_s = run_client(
                blast, capture, env, stop=True, done_file=checkpoint
            )
            lost = total - _parquet_rows(store)
            print(
                f"run {r + 1}: recv() only {total / recv_s:,.0f}/s; "
                f"capture receive {total / cap_recv_s:,.0f}/s, "
                f"end to end {total / cap_e2e_s:,.0f}/s "
                f"(to exit, journal sealed: {total / cap_exit_s:,.0f}/s), "
                f"lost {lost}"
            )
            for name, rate in (
                ("recv", total / recv_s),
                ("cap", total / cap_recv_s),
                ("e2e", total / cap_e2e_s),
                ("exit", total / cap_exit_s),
            ):
                best[name] = max(best.get(name, (0.0, 0.0)), (rate, 0.0))
            shutil.rmtree(store, ignore_errors=True)
        base = best["recv"][0]
        print(f"\n{'best of runs':24s} {'entries/s':>10s} {'vs recv() only':>15s}")
        for name, label in (
            ("recv", "recv() only"),
            ("cap", "capture, receive"),
            ("e2e", "capture, end to end"),
            ("exit", "capture, to its exit"),
        ):
            print(f"{label:24s} {best[name][0]:10,.0f} {best[name][0] / base:14.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
