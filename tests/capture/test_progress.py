"""Progress: rates over the time that passed, plain log lines off a terminal, and a last
line whose counts are the summary's."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from recorder.capture.progress import CaptureStats, Figures, progress_line, read_figures, report
from recorder.capture.runner import CaptureRequest, RunResult, run_capture
from recorder.sim.venue import VenueConfig
from soak.harness import hermetic_env
from tests.helpers import CREDS, FAST_SESSION

S = 1_000_000_000


def test_a_line_has_counts_rates_and_the_decoder_lag() -> None:
    s = CaptureStats(frames=1234, rejects=2, gaps=1, symbols_live=5, reconnects=3)
    s.rows = {"trades": 150, "orderbook": 400, "pending": 30}
    s.last_recv_ns, s.last_decoded_ns = 10 * S, int(8.5 * S)
    prev = Figures(at_ns=10 * S, trades=50, orderbook=100)
    line = progress_line(read_figures(s, 12 * S), prev)
    assert "trades 150 (50/s)" in line and "orderbook 400 (150/s)" in line and "pending 30" in line
    assert "symbols 5" in line and "gaps 1" in line and "rejects 2" in line and "lag 1.5s" in line


def test_the_first_line_has_the_rate_since_the_start_not_zero() -> None:
    s = CaptureStats(started_ns=100 * S)
    s.rows = {"trades": 300, "orderbook": 0}
    line = progress_line(read_figures(s, 103 * S), Figures(at_ns=s.started_ns))
    assert "trades 300 (100/s)" in line


def test_rates_are_over_the_clock_time_between_lines_and_done_gives_the_last(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Lines come every 0.01 s of the loop's time, but the capture's clock says seconds
    passed between them: the rate is per second of that clock. ``done`` ends the report
    right after one last line."""
    stats = CaptureStats(started_ns=0)
    done = asyncio.Event()
    # Each reading of the clock is one line: the counts at that moment, then the time.
    script = iter([(40, 2 * S), (100, 4 * S), (110, 5 * S)])

    def clock() -> int:
        trades, at = next(script)
        stats.rows = {"trades": trades, "orderbook": 0}
        if trades == 110:
            done.set()
        return at

    with caplog.at_level(logging.INFO, logger="recorder.capture.progress"):
        asyncio.run(asyncio.wait_for(report(stats, done, tty=False, clock_ns=clock, every_s=0.01), 10))
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split("  ")[0] for line in lines] == [
        "trades 40 (20/s)",
        "trades 100 (30/s)",
        "trades 110 (10/s)",
    ]
    assert "\x1b[" not in caplog.text  # no terminal control codes in logs


def _count(pattern: str, text: str) -> int:
    m = re.search(pattern, text)
    assert m is not None, (pattern, text)
    return int(m.group(1).replace(",", ""))


def test_the_last_progress_line_has_the_counts_of_the_summary(
    tmp_path: Path, venue_thread: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    vt = venue_thread(VenueConfig(n_symbols=2, tick_interval=0.02, trade_rate=20.0, seed=9))
    for name, value in hermetic_env(KIWOOM_APPKEY=CREDS.appkey, KIWOOM_SECRETKEY=CREDS.secretkey).items():
        monkeypatch.setenv(name, value)
    for name in ("KIWOOM_REST_URL", "KIWOOM_WS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    req = CaptureRequest(
        data_dir=tmp_path / "store",
        symbols=vt.venue.feed.items,
        ws_url=vt.venue.ws_url,
        rest_url=vt.venue.rest_url,
        writer="p",
        tuning=FAST_SESSION,
    )

    async def main() -> RunResult:
        stop = asyncio.Event()
        task = asyncio.create_task(run_capture(req, stop=stop, progress_every_s=0.05))
        await asyncio.to_thread(vt.wait_entries, 100)
        await asyncio.to_thread(vt.barrier)  # the capture has read what was sent so far
        stop.set()
        return await task

    with caplog.at_level(logging.INFO, logger="recorder.capture.progress"):
        result = asyncio.run(asyncio.wait_for(main(), 60))
    lines = [r.getMessage() for r in caplog.records if r.name == "recorder.capture.progress"]
    last, summary = lines[-1], result.summary()
    assert _count(r"trades ([\d,]+) rows", summary) > 0
    for name in ("trades", "orderbook"):
        assert _count(rf"{name} ([\d,]+) \(", last) == _count(rf"{name} ([\d,]+) rows", summary)
    assert _count(r"frames ([\d,]+)", last) == _count(r"captured ([\d,]+) frames", summary)
    assert _count(r"gaps (\d+)", last) == _count(r"(\d+) gaps", summary)
    assert _count(r"rejects (\d+)", last) == _count(r"(\d+) rejects", summary)
