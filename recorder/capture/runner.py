"""``recorder capture`` as one library call: resolve credentials, endpoints and the universe,
start the embedded venue for ``--sim``, run :class:`recorder.capture.live.Capture` with signal
handling and progress, and report."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from recorder.capture.assign import shard_items
from recorder.capture.live import Capture, CaptureConfig, CaptureResult, PartWriter, install_signal_handlers
from recorder.capture.progress import read_figures, report, summary_line
from recorder.capture.universe import read_items_file
from recorder.client.credentials import Credentials, load_credentials, load_keys_file
from recorder.client.endpoints import Endpoints, resolve_endpoints
from recorder.client.session import SessionTuning
from recorder.errors import ConfigError
from recorder.kiwoom.limits import check_codes
from recorder.store.layout import default_writer_id

log = logging.getLogger(__name__)

MARKETS = ("kospi", "kosdaq", "all")
SIM_CREDENTIALS = Credentials("sim-appkey-0000", "sim-secretkey-0000")


@dataclass
class CaptureRequest:
    """The options of ``recorder capture``, unparsed beyond their types.

    ``tuning`` and ``part_writer`` have no command-line option: they are for programs that
    drive the capture from Python (the soak runs give it short backoffs and a slow writer).
    """

    data_dir: Path
    symbols: Sequence[str] = ()
    universe: str | None = None
    nxt: bool | None = None  # None: on for --sim, off otherwise
    trading_date: str | None = None
    types: Sequence[str] = ("0B", "0D")
    env_name: str = "prod"
    ws_url: str | None = None
    rest_url: str | None = None
    duration_s: float | None = None
    sim: bool = False
    writer: str | None = None
    flush_age_s: float = 300.0
    sim_symbols: int = 5
    keys_file: Path | None = None  # [[key]] tables: one session per app key
    shard: tuple[int, int] = (1, 1)  # (I, N): this machine records the I-th of N slices
    tuning: SessionTuning = field(default_factory=SessionTuning)
    part_writer: PartWriter | None = None  # None: the store's own atomic writer


@dataclass
class RunResult:
    capture: CaptureResult
    data_dir: Path

    def summary(self) -> str:
        """The final line; its counts are those of the last progress line."""
        return summary_line(read_figures(self.capture.stats, time.time_ns()), self.data_dir)


def _universe(req: CaptureRequest) -> tuple[list[str], str | None]:
    symbols = list(req.symbols)
    if req.universe and req.universe.lower() not in MARKETS:
        symbols += [s for s in read_items_file(Path(req.universe)) if s not in symbols]
        return symbols, None
    market = req.universe.lower() if req.universe else None
    if req.sim and not symbols and market is None:
        market = "all"
    return symbols, market


async def run_capture(
    req: CaptureRequest,
    *,
    stop: asyncio.Event | None = None,
    progress: bool = True,
    progress_every_s: float | None = None,
) -> RunResult:
    """Run one capture to completion (duration, ``stop``, SIGINT or SIGTERM).

    With ``progress``, a live line on a terminal or a log line every ``progress_every_s``
    (default 30 s off a terminal), and a last one when the capture has finished.

    Raises:
        NothingCapturedError: no session was ever logged in and subscribed (see
            :meth:`recorder.capture.live.Capture.run`); AuthError, ConfigError,
            JournalError, StoreError as documented there.
    """
    symbols, market = _universe(req)
    if not symbols and market is None:
        raise ConfigError("nothing to capture: give --symbols, --universe, or --sim")
    keys = load_keys_file(req.keys_file) if req.keys_file is not None else None
    shard, count = req.shard
    # Before any network work (§3.4: 105115 otherwise); a market universe is checked once
    # ka10099 has listed it.
    check_codes(len(shard_items(symbols, shard, count)), keys=len(keys) if keys else 1)
    async with contextlib.AsyncExitStack() as stack:
        if req.sim:
            endpoints, creds = await _start_sim(stack, req)
        else:
            endpoints = resolve_endpoints(req.env_name, req.rest_url, req.ws_url)
            creds = keys[0] if keys else load_credentials(dotenv_path=Path(".env"))
        cfg = CaptureConfig(
            data_dir=req.data_dir,
            ws_url=endpoints.ws_url,
            rest_url=endpoints.rest_url,
            keys=keys or [creds],
            shard=req.shard,
            symbols=symbols,
            universe=market,
            nxt=req.sim if req.nxt is None else req.nxt,
            trading_date=req.trading_date,
            types=req.types,
            duration_s=req.duration_s,
            writer=req.writer or default_writer_id(),
            flush_age_s=req.flush_age_s,
            tuning=req.tuning,
            part_writer=req.part_writer,
        )
        cap = Capture(cfg, stop=stop)
        install_signal_handlers(cap.stop)
        finished = asyncio.Event()
        reporter = (
            asyncio.create_task(report(cap.stats, finished, every_s=progress_every_s)) if progress else None
        )
        try:
            result = await cap.run()
        finally:
            cap.stop.set()
            finished.set()
            if reporter is not None:
                await reporter
    return RunResult(result, req.data_dir)


async def _start_sim(stack: contextlib.AsyncExitStack, req: CaptureRequest) -> tuple[Endpoints, Credentials]:
    from recorder.sim.venue import Venue, VenueConfig

    # record_sent=False: the ground-truth log is for tests; a demo must not grow without bound.
    venue = Venue(VenueConfig(symbols=tuple(req.symbols), n_symbols=req.sim_symbols, record_sent=False))
    await venue.start()
    stack.push_async_callback(venue.stop)
    log.info("embedded venue on %s", venue.rest_url)
    creds = SIM_CREDENTIALS
    if os.environ.get("KIWOOM_APPKEY") and os.environ.get("KIWOOM_SECRETKEY"):
        creds = load_credentials()
    return Endpoints(venue.rest_url, venue.ws_url), creds
