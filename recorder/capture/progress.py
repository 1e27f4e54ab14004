"""Progress of a long capture: a live line on a terminal, plain periodic log lines otherwise.

The progress lines and the final summary are printed from the same reading of the
counters (:func:`read_figures`), so they agree: the last progress line, printed once the
capture has finished, has the summary's counts. Rates are rows per second over the time
that really passed since the previous line (the first line: since the capture started).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recorder.store.objstore import S3Store

log = logging.getLogger("recorder.capture.progress")


@dataclass
class KeyState:
    """One app key's session, as progress lines and the summary show it.

    Attributes:
        label: ``key 2/3 (3f9c01d2aa41)``: position in the keys file and a digest, never the key.
        items: how many codes this key carries.
        state: ``connecting``, ``subscribed``, ``reconnecting``, ``kicked``, ``failed`` or ``stopped``.
        detail: why, for the states that need one.
        ever_subscribed: the key was logged in and subscribed at least once.
    """

    label: str
    items: int
    state: str = "connecting"
    detail: str = ""
    reconnects: int = 0
    ever_subscribed: bool = False

    def describe(self) -> str:
        why = f": {self.detail}" if self.detail and self.state != "subscribed" else ""
        return f"{self.label} {self.state}{why} ({self.items} codes, {self.reconnects} reconnects)"


@dataclass
class CaptureStats:
    """Live counters of a capture, updated by the reader and the decoder, read by the display.

    ``frames`` and ``last_recv_ns`` by the event loop as frames are journaled; ``rows``,
    ``rejects``, ``gaps``, ``gaps_by_kind``, ``files``, ``last_decoded_ns`` and
    ``decoded_fno`` (the last journal record decoded) by the decoder as it goes, and
    ``last_stored_ns`` (the receive time of the newest frame in Parquet) at each checkpoint.
    A decoder process sends its counters after each batch (:mod:`recorder.capture.decoder`).
    """

    started_ns: int = 0
    frames: int = 0
    rows: dict[str, int] = field(default_factory=lambda: {"trades": 0, "orderbook": 0})
    rejects: int = 0
    gaps: int = 0
    gaps_by_kind: dict[str, int] = field(default_factory=dict)  # replaced whole, like ``rows``
    recovered_frames: int = 0
    symbols_live: int = 0
    last_recv_ns: int = 0
    last_decoded_ns: int = 0
    decoded_fno: int = -1
    last_stored_ns: int = 0
    files: int = 0
    pings: int = 0
    reconnects: int = 0
    subscribed: bool = False  # a session was logged in and subscribed at least once
    keys: list[KeyState] = field(default_factory=list)  # one per app key, in keys-file order


@dataclass(frozen=True)
class Figures:
    """One reading of :class:`CaptureStats`, at ``at_ns``: what a progress line or the
    summary prints. ``lag_s``: how far decoding trails the journal, in receive time."""

    at_ns: int
    frames: int = 0
    trades: int = 0
    orderbook: int = 0
    pending: int = 0
    rejects: int = 0
    gaps: int = 0
    files: int = 0
    symbols: int = 0
    reconnects: int = 0
    lag_s: float = 0.0
    keys: tuple[str, ...] = ()  # each key's state, when there are several


def read_figures(stats: CaptureStats, now_ns: int) -> Figures:
    """The figures of ``stats`` now."""
    rows = dict(stats.rows)  # the decoder replaces the dict whole; read it once
    behind = stats.last_recv_ns - stats.last_decoded_ns if stats.last_decoded_ns else 0
    return Figures(
        at_ns=now_ns,
        frames=stats.frames,
        trades=rows.get("trades", 0),
        orderbook=rows.get("orderbook", 0),
        pending=rows.get("pending", 0),
        rejects=stats.rejects,
        gaps=stats.gaps,
        files=stats.files,
        symbols=stats.symbols_live,
        reconnects=stats.reconnects,
        lag_s=max(behind, 0) / 1e9,
        keys=tuple(k.describe() for k in stats.keys) if len(stats.keys) > 1 else (),
    )


def progress_line(cur: Figures, prev: Figures) -> str:
    """A status line: counts as of ``cur``, rates over the time since ``prev``."""
    dt_s = (cur.at_ns - prev.at_ns) / 1e9

    def rate(now: int, before: int) -> float:
        return (now - before) / dt_s if dt_s > 0 else 0.0

    return (
        f"trades {cur.trades:,} ({rate(cur.trades, prev.trades):,.0f}/s)  "
        f"orderbook {cur.orderbook:,} ({rate(cur.orderbook, prev.orderbook):,.0f}/s)  "
        f"pending {cur.pending:,}  symbols {cur.symbols}  frames {cur.frames:,}  gaps {cur.gaps}  "
        f"rejects {cur.rejects}  reconnects {cur.reconnects}  lag {cur.lag_s:.1f}s"
        + "".join(f"\n  {k}" for k in cur.keys)
    )


def summary_line(f: Figures, data_dir: Path | S3Store) -> str:
    """The one line a finished capture prints."""
    return (
        f"captured {f.frames:,} frames → trades {f.trades:,} rows, orderbook {f.orderbook:,} rows, "
        f"{f.rejects} rejects, {f.gaps} gaps, {f.files} part files in {data_dir}"
        + "".join(f"\n  {k}" for k in f.keys)
    )


async def report(
    stats: CaptureStats,
    done: asyncio.Event,
    *,
    tty: bool | None = None,
    clock_ns: Callable[[], int] = time.time_ns,
    every_s: float | None = None,
) -> None:
    """Show progress until ``done`` is set, then one last line with the final counts.

    Set ``done`` once the capture has finished (flushed), not when it is asked to stop:
    the last line then has the counts of the summary. On a TTY: rich's live line, every
    second; otherwise a log line every 30 s.
    """
    tty = sys.stderr.isatty() if tty is None else tty
    every = every_s or (1.0 if tty else 30.0)
    prev = Figures(at_ns=stats.started_ns)
    live = _live() if tty else None
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await done.wait()
            cur = read_figures(stats, clock_ns())
            line = progress_line(cur, prev)
            if live is not None:
                live.update(line)
            else:
                log.info("%s", line)
            prev = cur
            if done.is_set():
                return
    finally:
        if live is not None:
            live.stop()


def _live() -> Any:
    from rich.console import Console
    from rich.live import Live

    live = Live("starting…", console=Console(stderr=True), refresh_per_second=4, transient=False)
    live.start()
    return live
