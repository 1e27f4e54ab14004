"""Progress of a long capture: a live line on a terminal, plain periodic log lines otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("recorder.capture.progress")


def summary(stats: Any, now_ns: int, prev: dict[str, int] | None, dt_s: float) -> tuple[str, dict[str, int]]:
    """One status line from :class:`recorder.capture.live.CaptureStats`, with rows/s since ``prev``."""
    rows = {k: v for k, v in stats.rows.items() if k in ("trades", "orderbook")}
    rates = {k: (v - (prev or {}).get(k, v)) / dt_s if dt_s > 0 else 0.0 for k, v in rows.items()}
    lag = (now_ns - stats.last_decoded_ns) / 1e9 if stats.last_decoded_ns else 0.0
    line = (
        f"trades {rows.get('trades', 0):,} ({rates.get('trades', 0):,.0f}/s)  "
        f"orderbook {rows.get('orderbook', 0):,} ({rates.get('orderbook', 0):,.0f}/s)  "
        f"pending {stats.rows.get('pending', 0):,}  symbols {stats.symbols_live}  "
        f"frames {stats.frames:,}  gaps {stats.gaps}  rejects {stats.rejects}  "
        f"reconnects {stats.reconnects}  lag {lag:.1f}s"
    )
    return line, rows


async def report(
    stats: Any,
    stop: asyncio.Event,
    *,
    tty: bool | None = None,
    clock_ns: Callable[[], int] = time.time_ns,
    every_s: float | None = None,
) -> None:
    """Show progress until ``stop`` is set: rich's live line on a TTY, a log line otherwise."""
    tty = sys.stderr.isatty() if tty is None else tty
    every = every_s or (1.0 if tty else 30.0)
    prev: dict[str, int] | None = None
    live = _live() if tty else None
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await stop.wait()
            line, prev = summary(stats, clock_ns(), prev, every)
            if live is not None:
                live.update(line)
            else:
                log.info("%s", line)
    finally:
        if live is not None:
            live.stop()


def _live() -> Any:
    from rich.console import Console
    from rich.live import Live

    live = Live("starting…", console=Console(stderr=True), refresh_per_second=4, transient=False)
    live.start()
    return live
