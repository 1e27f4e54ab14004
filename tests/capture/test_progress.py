"""Progress: one plain log line per period off a terminal, with rates and the figures that matter."""

from __future__ import annotations

import asyncio
import logging

import pytest

from recorder.capture.live import CaptureStats
from recorder.capture.progress import report, summary


def test_summary_line_has_rates_and_counters() -> None:
    s = CaptureStats(frames=1234, rejects=2, gaps=1, symbols_live=5, reconnects=3)
    s.rows = {"trades": 150, "orderbook": 400, "pending": 30}
    s.last_decoded_ns = 9_000_000_000
    line, prev = summary(s, 10_500_000_000, {"trades": 50, "orderbook": 100}, 2.0)
    assert "trades 150 (50/s)" in line and "orderbook 400 (150/s)" in line
    assert "symbols 5" in line and "gaps 1" in line and "rejects 2" in line and "lag 1.5s" in line
    assert prev == {"trades": 150, "orderbook": 400}


def test_off_a_terminal_it_logs_plain_lines(caplog: pytest.LogCaptureFixture) -> None:
    stats = CaptureStats()
    stats.rows = {"trades": 7, "orderbook": 0, "pending": 0}

    class Seen(logging.Handler):
        """Sets an event when the first progress line is logged."""

        def __init__(self, event: asyncio.Event) -> None:
            super().__init__()
            self.event = event

        def emit(self, record: logging.LogRecord) -> None:
            self.event.set()

    async def main() -> None:
        stop, seen = asyncio.Event(), asyncio.Event()
        handler = Seen(seen)
        logging.getLogger("recorder.capture.progress").addHandler(handler)
        try:
            task = asyncio.create_task(report(stats, stop, tty=False, every_s=0.01))
            await seen.wait()
            stop.set()
            await task
        finally:
            logging.getLogger("recorder.capture.progress").removeHandler(handler)

    with caplog.at_level(logging.INFO, logger="recorder.capture.progress"):
        asyncio.run(asyncio.wait_for(main(), 10))
    assert "\x1b[" not in caplog.text  # no terminal control codes in logs
