"""``/metrics`` and ``/healthz`` scraped over real HTTP during a real two-key capture of the
embedded venue, and the ``--metrics-port`` / ``--log-format`` options of the real CLI."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

import queries
from recorder.capture.live import Capture
from recorder.capture.metrics import MetricsServer, health
from recorder.capture.progress import CaptureStats, KeyState
from recorder.client.credentials import Credentials
from recorder.client.session import SessionTuning
from recorder.sim.venue import Venue, VenueConfig
from soak.harness import capture_command, hermetic_env
from tests.helpers import capture_config, capture_until, stored_rows

KEYS = [Credentials(f"metrics-appkey-{n:04d}", f"metrics-secret-{n:04d}") for n in range(2)]
CODES = [f"{200000 + 11 * n:06d}" for n in range(12)]
# A kicked key waits a minute before reconnecting: long enough to be seen unhealthy.
TUNING = SessionTuning(reg_batch=4, reg_per_s=50.0, backoff_base_s=0.01, kicked_backoff_s=60.0)
RECORDER = [sys.executable, "-m", "recorder.cli.main"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    """Every sample of a Prometheus text page, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Poll an HTTP-observable condition until it holds (the session's thread of events
    reaches the capture asynchronously); fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


def test_metrics_and_health_during_a_two_key_capture(tmp_path: Path) -> None:
    async def go() -> tuple[list[tuple[int, dict]], Samples, Samples, Samples, str, Capture]:
        pairs = tuple((k.appkey, k.secretkey) for k in KEYS)
        cfg_v = VenueConfig(symbols=CODES, venues=("KRX",), keys=pairs, trade_rate=2.0, book_rate=1.0)
        async with Venue(cfg_v) as venue:
            cfg = dataclasses.replace(
                capture_config(venue, tmp_path, "metrics", CODES), keys=KEYS, tuning=TUNING
            )
            server = MetricsServer(0, tmp_path)
            await server.start()
            capture = Capture(cfg)
            server.attach(capture)
            seen: list[tuple[int, dict]] = []
            async with httpx.AsyncClient(base_url=server.url) as http:

                async def healthz() -> tuple[int, dict]:
                    r = await http.get("/healthz")
                    seen.append((r.status_code, r.json()))
                    return seen[-1]

                async def metrics() -> Samples:
                    r = await http.get("/metrics")
                    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
                    assert all(k.appkey not in r.text and k.secretkey not in r.text for k in KEYS)
                    return _samples(r.text)

                await healthz()  # before any session: unhealthy
                task = asyncio.create_task(capture.run())
                try:
                    n_types = len(cfg.types)
                    await venue.wait_for(
                        lambda: (
                            len(venue.connections) == 2
                            and sum(len(c.subscriptions) for c in venue.connections.values())
                            == len(CODES) * n_types
                        ),
                        30,
                    )
                    # Some trades on each key's connection, then each client has read them all.
                    await venue.wait_for(
                        lambda: all(
                            any(e.get("type") == "0B" for e in venue.sent_entries(cid))
                            for cid in venue.connections
                        ),
                        30,
                    )
                    await venue.ping_barrier(30)
                    await _until(lambda: _status_is(healthz, 200))
                    up = await metrics()
                    # Cut one key: it waits a minute before reconnecting, so it stays down.
                    conn_id, conn = next(iter(venue.connections.items()))
                    kicked = next(k for k in capture.stats.keys if conn.appkey == _appkey_of(k, capture))
                    await venue.kick_all(conn_id)
                    await _until(lambda: _status_is(healthz, 503))
                    down = await metrics()
                    await venue.ping_barrier(30)
                finally:
                    capture.stop.set()
                    await asyncio.wait_for(task, 60)
                after = await metrics()
                await healthz()
            await server.stop()
            return seen, up, down, after, kicked.label, capture

    seen, up, down, after, kicked, capture = asyncio.run(go())
    labels = [k.label for k in capture.stats.keys]
    assert len(labels) == 2 and all(lb.startswith(("key 1/2 (", "key 2/2 (")) for lb in labels)

    # /healthz: 503 before any session, 200 once both keys were subscribed, 503 after the kick
    # (the kicked key's state in the body), 503 once stopped.
    assert seen[0][0] == 503 and seen[0][1]["status"] == "unhealthy"
    ok = next(body for status, body in seen if status == 200)
    assert sorted((k["key"], k["state"]) for k in ok["keys"]) == sorted((lb, "subscribed") for lb in labels)
    cut = next(body for status, body in seen[seen.index((200, ok)) :] if status == 503)
    assert {k["key"]: k["state"] for k in cut["keys"]}[kicked] == "kicked"
    assert seen[-1][0] == 503 and {k["state"] for k in seen[-1][1]["keys"]} == {"stopped"}

    # recorder_sessions_up: per key, labelled without the app key.
    assert {lb: up[("recorder_sessions_up", (("key", lb),))] for lb in labels} == dict.fromkeys(labels, 1.0)
    assert down[("recorder_sessions_up", (("key", kicked),))] == 0.0
    other = next(lb for lb in labels if lb != kicked)
    assert down[("recorder_sessions_up", (("key", other),))] == 1.0
    assert down[("recorder_reconnects_total", ())] >= 1

    # After the stop, the counters are the store's.
    for table in ("trades", "orderbook"):
        assert after[("recorder_entries_total", (("type", table),))] == len(stored_rows(tmp_path, table))
    assert after[("recorder_entries_total", (("type", "trades"),))] > 0
    assert (
        after[("recorder_rejects_total", ())]
        == queries.sql(tmp_path, "SELECT count(*) AS n FROM rejects").to_pylist()[0]["n"]
    )
    by_kind = {
        r["kind"]: r["n"]
        for r in queries.sql(tmp_path, "SELECT kind, count(*) AS n FROM gaps GROUP BY kind").to_pylist()
    }
    got = {dict(labels_)["kind"]: v for (name, labels_), v in after.items() if name == "recorder_gaps_total"}
    assert got == by_kind and "kicked" in got
    assert after[("recorder_frames_total", ())] == capture.stats.frames > 0
    # Everything journaled is decoded and in Parquet.
    assert after[("recorder_journal_lag_records", ())] == 0
    assert after[("recorder_parquet_lag_seconds", ())] == 0
    assert up[("recorder_journal_lag_records", ())] >= 0
    assert after[("recorder_disk_free_bytes", ())] > 0
    assert ("recorder_last_frame_age_seconds", ()) in after


async def _status_is(healthz: Callable[[], Awaitable[tuple[int, dict]]], status: int) -> bool:
    return (await healthz())[0] == status


def _appkey_of(key: KeyState, capture: Capture) -> str:
    return capture.cfg.keys[capture.stats.keys.index(key)].appkey


def test_health_needs_every_session_subscribed() -> None:
    assert health(None)[0] is False
    stats = CaptureStats(keys=[KeyState("key 1/2 (a)", 3), KeyState("key 2/2 (b)", 0, state="idle")])
    assert health(stats)[0] is False  # connecting
    stats.keys[0].state = "subscribed"
    assert health(stats)[0] is True  # a key with no codes runs no session
    stats.keys[1].state = "failed"
    ok, body = health(stats)
    assert ok is False and [k["state"] for k in body["keys"]] == ["subscribed", "failed"]


def test_busy_metrics_port_exits_2_before_any_network_call(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        # A REST URL nobody listens on: a network call would fail differently (exit 4).
        run = subprocess.run(
            [
                *RECORDER,
                "capture",
                "--data-dir",
                str(tmp_path / "data"),
                "--symbols",
                "005930",
                "--ws-url",
                "ws://127.0.0.1:9/ws",
                "--rest-url",
                "http://127.0.0.1:9",
                "--force",
                "--metrics-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={
                "PATH": "/usr/bin:/bin",
                "KIWOOM_APPKEY": "cli-appkey-0000",
                "KIWOOM_SECRETKEY": "cli-secret",
            },
        )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --metrics-port") and str(port) in lines[0]
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.parquet"))


def test_log_format_json_lines_parse(tmp_path: Path, venue_thread: Any) -> None:
    vt = venue_thread(VenueConfig(n_symbols=2, tick_interval=0.02, trade_rate=10.0, seed=5))
    cmd = capture_command(vt.venue, tmp_path, "json", "--log-format", "json", "--metrics-port", "0")
    run = capture_until(
        vt, cmd, hermetic_env(KIWOOM_APPKEY="json-appkey-0001", KIWOOM_SECRETKEY="sim-secretkey"), logins=1
    )
    assert run.returncode == 0, run.stderr
    lines = run.stderr.strip().splitlines()
    records = [json.loads(line) for line in lines]
    assert records and all(set(r) >= {"ts", "level", "logger", "message"} for r in records)
    assert any(r["logger"] == "recorder.capture.metrics" and "/metrics" in r["message"] for r in records)
    assert "sim-secretkey" not in run.stderr
