"""Live capture throughput with relay clients attached, as a ratio to none, in the same run.

The blast of ``bench_live.py`` (N recorded entries over S symbols, served by the embedded venue
as fast as the reader takes them) is received by ``recorder capture`` three times:

- ``none``: no relay clients (``--relay-port`` on, nobody connected: the cost of the hook);
- ``10 bots``: 10 relay clients, each registered for its own tenth of the symbols (each entry
  goes to one client, frames are cut per entry);
- ``10 full``: 10 relay clients, each registered for every symbol (each frame goes to all ten,
  byte-identical).

The clients are plain websockets code in one separate process (LOGIN, REG, PING echo, count
entries). The blast starts once they are registered, and the capture's receive rate is timed
from the venue's side as in ``bench_live.py``. Every client must receive every entry meant
for it; a shortfall is printed. The machine has two cores shared by the venue, the capture
and the clients, so the clients' own reading costs the capture too.

Usage: python benchmarks/bench_relay.py [--entries N] [--symbols S] [--repeat R] [--clients C]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from bench_live import APPKEY, DAY, SECRET, _Blast, _items, _parquet_rows, _Served
from store_builder import build_store

CLIENTS = r"""
import asyncio, sys, httpx, orjson, websockets
rest, ws_url, n, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
items = sys.argv[5].split(",")
async def token():
    async with httpx.AsyncClient() as c:
        while True:
            try:
                r = await c.post(rest + "/oauth2/token", json={"grant_type": "client_credentials",
                                 "appkey": sys.argv[6], "secretkey": sys.argv[7]})
                return r.json()["token"]
            except httpx.TransportError:
                await asyncio.sleep(0.1)
async def client(k, tok, ready):
    mine = items if mode == "full" else items[k::n]
    async with websockets.connect(ws_url, max_size=None, ping_interval=None, max_queue=None) as ws:
        await ws.send(orjson.dumps({"trnm": "LOGIN", "token": tok}).decode())
        orjson.loads(await ws.recv())
        for i in range(0, len(mine), 100):
            await ws.send(orjson.dumps({"trnm": "REG", "grp_no": "1", "refresh": "1",
                "data": [{"item": mine[i:i + 100], "type": ["0B", "0D"]}]}).decode())
            while orjson.loads(await ws.recv()).get("trnm") != "REG":
                pass
        ready.append(k)
        if len(ready) == n:
            print("ready", flush=True)
        got = 0
        try:
            async for frame in ws:
                if '"PING"' in frame and '"REAL"' not in frame:
                    await ws.send(frame)
                else:
                    got += frame.count('"item"')
        except websockets.ConnectionClosed:
            pass
        return got
async def main():
    tok = await token()
    ready = []
    got = await asyncio.gather(*(client(k, tok, ready) for k in range(n)))
    print("got", sum(got), flush=True)
asyncio.run(main())
"""


class _Gated(_Blast):
    """The blast, held back until the relay clients are registered."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.open = False

    def on_subscribed(self, subscriptions: frozenset[tuple[str, str]], now_ns: int) -> None:
        pass  # the start is the gate's opening

    def step(self, now_ns: int) -> list[dict[str, Any]]:
        return super().step(now_ns) if self.open else []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_capture(
    blast: _Gated, items: list[str], store: Path, clients: int, mode: str
) -> tuple[float, int, int, list[float]]:
    """One capture of the blast with ``clients`` relay clients; returns the receive seconds,
    the rows in Parquet and the entries the clients received."""
    blast.pos, blast.started_ns, blast.open = 0, None, False
    served = _Served(blast)
    venue = served.venue
    port, metrics_port = _free_port(), _free_port()
    env = {**os.environ, "KIWOOM_APPKEY": APPKEY, "KIWOOM_SECRETKEY": SECRET}
    prof = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] if os.environ.get("BENCH_PROFILE") else []
    cmd = [sys.executable, *prof, "-m", "recorder.cli.main", "--log-level", "WARNING", "capture"]
    cmd += ["--ws-url", venue.ws_url, "--rest-url", venue.rest_url, "--symbols", ",".join(items)]
    cmd += ["--data-dir", str(store), "--writer-id", "bench", "--trading-date", DAY]
    cmd += ["--duration", "30m", "--force", "--no-compact", "--relay-port", str(port)]
    cmd += ["--metrics-port", str(metrics_port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    bots = None
    try:
        served.wait(lambda: any(c.subscriptions >= blast.pairs for c in venue.connections.values()))
        if clients:
            rest, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/api/dostk/websocket"
            argv = [sys.executable, "-c", CLIENTS, rest, ws_url, str(clients), mode, ",".join(items)]
            bots = subprocess.Popen([*argv, APPKEY, SECRET], stdout=subprocess.PIPE, text=True)
            assert bots.stdout is not None
            line = bots.stdout.readline()
            if line.strip() != "ready":
                sys.exit(f"relay clients failed: {line!r}")

        def start() -> None:
            blast.started_ns, blast.open = venue.clock(), True

        served.get(start)
        served.wait(lambda: blast.exhausted and venue.backlog() == 0)
        served.call(venue.ping_barrier(600))
        t_read = served.get(venue.clock)
        cpu = [_cpu_s(p) for p in (proc, bots)]
        cuts = _metric(metrics_port, "recorder_relay_clients_cut_total")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=600)
        got = 0
        if bots is not None:
            out, _ = bots.communicate(timeout=600)
            got = int(out.split()[-1])
    finally:
        for p in (proc, bots):
            if p is not None and p.poll() is None:
                p.kill()
        served.close()
    if proc.returncode != 0:
        sys.exit(f"capture failed ({proc.returncode}): {stderr[-2000:]}")
    assert blast.started_ns is not None
    return (t_read - blast.started_ns) / 1e9, _parquet_rows(store), got, [*cpu, cuts]


def _metric(port: int, name: str) -> float:
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def _cpu_s(proc: subprocess.Popen[str] | None) -> float:
    """CPU seconds (user + system) a process has used so far."""
    if proc is None:
        return 0.0
    t = psutil.Process(proc.pid).cpu_times()
    return float(t.user + t.system)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--modes", default="bots,full", help="bots, full or both")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    try:
        root = tmp / "recorded"
        build_store(root, DAY, args.entries, args.symbols, venues=("KRX",))
        items = _items(root)
        blast = _Gated(root)
        total = blast.total
        print(f"recorded {total:,} entries over {len(items)} items; capture with the relay on")
        n = args.clients
        runs = [("none", 0, "bots", 0), (f"{n} bots", n, "bots", total), (f"{n} full", n, "full", n * total)]
        runs = [r for r in runs if r[0] == "none" or r[2] in args.modes.split(",")]
        best: dict[str, float] = {}
        for r in range(args.repeat):
            for label, clients, mode, want in runs:
                store = tmp / f"capture-{r}-{clients}-{mode}"
                secs, rows, got, (cap_cpu, bots_cpu, cuts) = run_capture(blast, items, store, clients, mode)
                rate = total / secs
                best[label] = max(best.get(label, 0.0), rate)
                short = (
                    f", clients short by {want - got:,} ({cuts:.0f} cut as too slow)" if got != want else ""
                )
                print(
                    f"run {r + 1} {label:8s}: capture receive {rate:,.0f} entries/s, "
                    f"lost {total - rows}, clients got {got:,}{short} "
                    f"(CPU s: capture {cap_cpu:.1f}, clients {bots_cpu:.1f}, wall {secs:.1f})"
                )
                shutil.rmtree(store, ignore_errors=True)
                time.sleep(0.5)  # let the previous run's processes leave the cores
        base = best["none"]
        print(f"\n{'best of runs':24s} {'entries/s':>10s} {'vs none':>8s}")
        for label, *_ in runs:
            print(f"{'capture, ' + label:24s} {best[label]:10,.0f} {best[label] / base:7.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
