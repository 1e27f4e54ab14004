"""``recorder capture`` as one library call: resolve credentials, endpoints and the universe,
consult the trading calendar (a closed day records nothing; ``--until close`` ends after the
last session), start the embedded venue for ``--sim``, run :class:`recorder.capture.live.Capture`
with signal handling and progress, and report."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import os
import pickle
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from recorder.capture.assign import shard_items
from recorder.capture.diskcheck import (
    BYTES_PER_CODE_S,
    FALLBACK_S,
    DiskWatch,
    FreeBytes,
    check_disk,
    default_floor,
    disk_free,
    estimate,
)
from recorder.capture.live import Capture, CaptureConfig, CaptureResult, install_signal_handlers
from recorder.capture.metrics import MetricsServer
from recorder.capture.progress import read_figures, report, summary_line
from recorder.capture.universe import read_items_file
from recorder.client.credentials import Credentials, load_credentials, load_keys_file
from recorder.client.endpoints import Endpoints, resolve_endpoints
from recorder.client.session import SessionTuning
from recorder.errors import ConfigError, StoreError
from recorder.kiwoom.calendar import Closed, TradingDay, kst_today, trading_day
from recorder.kiwoom.items import split_item
from recorder.kiwoom.limits import MAX_CODES_PER_KEY, check_codes
from recorder.kiwoom.time import kst_date
from recorder.store.layout import JOURNAL_DIR, default_writer_id
from recorder.store.objstore import S3Store, Uploader, local_dir_for, open_store, publish
from recorder.store.retention import prune

if TYPE_CHECKING:
    from recorder.capture.backfill import BackfillResult
    from recorder.capture.relay import Relay
    from recorder.store.compact import CompactResult
    from recorder.store.sink import PartWriter

log = logging.getLogger(__name__)

MARKETS = ("kospi", "kosdaq", "all")
SIM_CREDENTIALS = Credentials("sim-appkey-0000", "sim-secretkey-0000")
#: How long ``--until close`` records after the last session's end: late frames, the
#: after-hours closing prints.
CLOSE_GRACE_S = 300.0


@dataclass
class CaptureRequest:
    """The options of ``recorder capture``, unparsed beyond their types.

    ``tuning`` and ``part_writer`` have no command-line option: they are for programs that
    drive the capture from Python (the soak runs give it short backoffs and a slow writer).
    Nor have ``clock`` (epoch ns; tests pass a fixed instant) and ``calendar`` (the
    sessions of a KST day; tests may pass other hours or late opens).

    The calendar day is ``trading_date`` when given (a replay of that day), else today in
    KST by ``clock``. On a closed day nothing is recorded unless ``force`` (or ``sim``: the
    embedded venue trades any day). ``until_close`` ends the capture ``grace_s`` after the
    last session of the venues recorded (KRX, and NXT when an item or ``nxt`` records it).
    """

    data_dir: Path | S3Store  # a folder, or s3://bucket/prefix (staged in journal_dir, uploaded)
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
    until_close: bool = False
    grace_s: float = CLOSE_GRACE_S
    force: bool = False
    clock: Callable[[], int] = time.time_ns
    calendar: Callable[[dt.date], TradingDay | Closed] = trading_day
    metrics_port: int | None = None  # serve /metrics and /healthz here (0: any free port)
    metrics_host: str = "127.0.0.1"
    backfill: bool = False  # heal the recorded days' trade gaps from ka10079 afterwards
    compact: bool = True  # merge this writer's part files of the recorded days when it ends
    journal_keep_days: int | None = None  # then prune this writer's journal older than that
    journal_archive: S3Store | None = None  # uploading each segment there before it is pruned
    # With an s3:// data_dir: the local journal and staged part files (default: objstore's
    # default_local_dir), and how often complete part files are uploaded while recording.
    journal_dir: Path | None = None
    upload_every_s: float = 5.0
    relay_port: int | None = None  # share the session with local Kiwoom clients (0: any free port)
    relay_host: str = "127.0.0.1"
    relay_secret_file: Path | None = None  # mode 0600: any app key with this secret gets a token
    relay_queue_bytes: int = 16 << 20  # bytes a relay client has not taken before it is cut
    # Disk safety (recorder.capture.diskcheck): refuse | warn | off before the start; the bytes a
    # code takes per second of session; the free bytes under which a running capture warns
    # (None: an hour of the universe, at least 1 GiB); how free space is read (tests fake it).
    disk_check: str = "refuse"
    disk_rate: float = BYTES_PER_CODE_S
    disk_floor: int | None = None
    disk_free: FreeBytes = disk_free
    disk_every_s: float = 30.0


@dataclass
class RunResult:
    """What a capture did; ``capture`` is None when the market was ``closed``."""

    capture: CaptureResult | None
    data_dir: Path | S3Store
    closed: Closed | None = None
    backfills: list[BackfillResult] = field(default_factory=list)
    compacted: CompactResult | None = None
    journal_error: str | None = None  # segments kept because their archive failed

    def summary(self) -> str:
        """The final line; its counts are those of the last progress line."""
        if self.closed is not None:
            day = self.closed
            return f"market closed on {day.date}: {day.reason}; nothing recorded (--force records anyway)"
        assert self.capture is not None
        lines = [summary_line(read_figures(self.capture.stats, time.time_ns()), self.data_dir)]
        if self.compacted is not None and (self.compacted.groups or self.compacted.recoded):
            c = self.compacted
            did = [f"compacted {c.files_before:,} part files into {c.files_after:,}"] if c.groups else []
            did += [f"re-encoded {c.recoded:,} single part files"] if c.recoded else []
            lines.append(f"{', '.join(did)} ({c.bytes_before / 1e6:,.1f} MB → {c.bytes_after / 1e6:,.1f} MB)")
        return "\n".join(lines + [b.summary() for b in self.backfills])


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
    plan = plan_capture(req)
    if plan.closed is not None:
        log.info("market closed on %s (%s): nothing to record", plan.closed.date, plan.closed.reason)
        return RunResult(None, req.data_dir, closed=plan.closed)
    duration_s = plan.duration_s
    started_ns = req.clock()
    remote = req.data_dir if isinstance(req.data_dir, S3Store) else None
    local = local_dir_for(req.data_dir, req.journal_dir)
    assert local is not None
    codes = _codes(req, symbols, market, len(keys) if keys else 1)
    need = estimate(
        codes,
        plan.duration_s or _session_seconds(req, symbols, market),
        store=local,
        journal=local / JOURNAL_DIR,
        bytes_per_code_s=req.disk_rate,
        free=req.disk_free,
    )
    check_disk(need, req.disk_check)  # before any network call: the day's need against free space
    if remote is not None:
        # Interrupted compactions are finished, and what a crash left staged goes up, first.
        await asyncio.to_thread(open_store, remote, req.journal_dir)
        local.mkdir(parents=True, exist_ok=True, mode=0o700)
        log.info("recording into %s; journal and staged part files in %s", remote, local)
    async with contextlib.AsyncExitStack() as stack:
        metrics = await _start_metrics(stack, req, local)  # a port in use fails here, before any network call
        if req.sim:
            endpoints, creds = await _start_sim(stack, req)
        else:
            endpoints = resolve_endpoints(req.env_name, req.rest_url, req.ws_url)
            creds = keys[0] if keys else load_credentials(dotenv_path=Path(".env"))
        cfg = CaptureConfig(
            data_dir=local,
            ws_url=endpoints.ws_url,
            rest_url=endpoints.rest_url,
            keys=keys or [creds],
            shard=req.shard,
            symbols=symbols,
            universe=market,
            nxt=_nxt(req),
            trading_date=req.trading_date,
            types=req.types,
            duration_s=duration_s,
            writer=req.writer or default_writer_id(),
            flush_age_s=req.flush_age_s,
            tuning=req.tuning,
            part_writer=req.part_writer,
        )
        relay = await _start_relay(stack, req, cfg.keys)  # a port in use fails here, before any login
        cap = Capture(cfg, stop=stop, relay=relay)
        if metrics is not None:
            metrics.attach(cap)
        signalled = install_signal_handlers(cap.stop)
        finished = asyncio.Event()
        reporter = (
            asyncio.create_task(report(cap.stats, finished, every_s=progress_every_s)) if progress else None
        )
        if req.disk_check != "off":
            floor = req.disk_floor if req.disk_floor is not None else default_floor(codes, req.disk_rate)
            watch = DiskWatch(list(need.need), floor, req.disk_free)
            await stack.enter_async_context(_watching(watch, req.disk_every_s))
        uploader = Uploader(remote, local, req.upload_every_s) if remote is not None else None
        if uploader is not None:
            uploader.start()
        failed = True
        try:
            result = await cap.run()
            failed = False
        finally:
            cap.stop.set()
            if relay is not None:
                await relay.stop()  # its clients are told now, not after compaction
            finished.set()
            if reporter is not None:
                await reporter
            if uploader is not None:
                await asyncio.to_thread(uploader.stop)
                # The capture has flushed and checkpointed everything, even when it failed (a
                # capture that never subscribed still wrote its gap row).
                try:
                    await asyncio.to_thread(publish, uploader.store, local, check_existing=False, tidy=True)
                except StoreError as exc:
                    if not failed:
                        raise
                    log.error("%s; the part files wait in %s for the next start", exc, local)
        run = RunResult(result, req.data_dir)
        days = {req.trading_date} if req.trading_date else {kst_date(started_ns), kst_date(req.clock())}
        later = [what for what, asked in (("compaction", req.compact), ("backfill", req.backfill)) if asked]
        if signalled and later:
            # A signal asks for a quick exit (a service manager kills what lingers): a market
            # day's compaction or backfill takes minutes, and nothing is lost by doing it later.
            log.warning(
                "stopped by a signal: %s skipped; `recorder compact` and `recorder backfill` do it "
                "later (the next capture's end compacts the days it records)",
                " and ".join(later),
            )
        elif req.compact:
            # The journal lock is released: compaction takes it, so no capture of this writer
            # can start meanwhile. Crash-safe as `recorder compact` is (intents, replayed later).
            from recorder.store.compact import compact

            run.compacted = await asyncio.to_thread(
                compact, req.data_dir, dates=sorted(days), writers=[cfg.writer], recode=True
            )
        if req.journal_keep_days is not None:
            from recorder.store.archive import archiver
            from recorder.store.retention import PruneError

            archive = archiver(req.journal_archive) if req.journal_archive is not None else None
            try:
                removed = await asyncio.to_thread(
                    prune, local, req.journal_keep_days, writers=[cfg.writer], archive=archive
                )
            except PruneError as exc:
                removed, run.journal_error = exc.removed, str(exc)
            log.info("journal: pruned %d segments older than %d days", len(removed), req.journal_keep_days)
        if req.backfill and not signalled:
            # Imported here: the tick-chart side (pyarrow.dataset, pandas) is ~40 MB of a
            # long capture's resident memory that only the end of a --backfill run uses.
            from recorder.capture.backfill import run_backfill

            for day in sorted(days):
                run.backfills.append(await run_backfill(req.data_dir, day, endpoints.rest_url, cfg.keys))
    return run


def _codes(req: CaptureRequest, symbols: Sequence[str], market: str | None, keys: int) -> int:
    """Codes the capture records: the items of this shard, or for a market universe (listed
    only later) the most the keys may record; the embedded venue's symbols for a bare --sim."""
    if market is None:
        return len(shard_items(symbols, *req.shard))
    if req.sim and not req.symbols and not req.universe:
        return req.sim_symbols * (2 if _nxt(req) else 1)
    return keys * MAX_CODES_PER_KEY


def _session_seconds(req: CaptureRequest, symbols: Sequence[str], market: str | None) -> float:
    """Seconds of the day's sessions still ahead for the recorded venues (see diskcheck)."""
    day = _calendar_day(req)
    if isinstance(day, Closed):
        return FALLBACK_S
    venues = recorded_venues(symbols, market, _nxt(req))
    now = dt.datetime.fromtimestamp(req.clock() / 1e9, dt.UTC)
    starts = [s.start for v in venues for s in day.venues.get(v, ())]
    start = max(now, min(starts)) if starts else now
    left = (day.close(tuple(venues)) - start).total_seconds() + req.grace_s
    return left if left > 0 else FALLBACK_S


@contextlib.asynccontextmanager
async def _watching(watch: DiskWatch, every_s: float) -> AsyncIterator[None]:
    """Check ``watch`` every ``every_s`` seconds while the block runs."""

    async def loop() -> None:
        while True:
            await asyncio.to_thread(watch.check)
            await asyncio.sleep(every_s)  # a polling period, not a synchronisation

    task = asyncio.create_task(loop(), name="disk-watch")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _start_metrics(
    stack: contextlib.AsyncExitStack, req: CaptureRequest, local: Path
) -> MetricsServer | None:
    if req.metrics_port is None:
        return None
    server = MetricsServer(req.metrics_port, local, host=req.metrics_host)
    await server.start()
    stack.push_async_callback(server.stop)
    return server


async def _start_relay(
    stack: contextlib.AsyncExitStack, req: CaptureRequest, keys: Sequence[Credentials]
) -> Relay | None:
    if req.relay_port is None:
        if req.relay_secret_file is not None:
            raise ConfigError("--relay-secret needs --relay-port")
        return None
    from recorder.capture.relay import Relay, RelayConfig, load_relay_secret

    secret = load_relay_secret(req.relay_secret_file) if req.relay_secret_file is not None else None
    config = RelayConfig(req.relay_host, req.relay_port, secret=secret, queue_bytes=req.relay_queue_bytes)
    relay = Relay(config, keys)
    await relay.start()
    stack.push_async_callback(relay.stop)
    return relay


def _nxt(req: CaptureRequest) -> bool:
    return req.sim if req.nxt is None else req.nxt


@dataclass(frozen=True)
class CapturePlan:
    """What the calendar makes of a request: ``closed`` (record nothing), or how long to run."""

    closed: Closed | None
    duration_s: float | None


def plan_capture(req: CaptureRequest) -> CapturePlan:
    """Consult ``req.calendar`` for the request's day at ``req.clock()``; no I/O.

    Raises:
        ConfigError: ``until_close`` on a closed day, or after the close.
    """
    day = _calendar_day(req)
    if isinstance(day, Closed) and not (req.force or req.sim):
        return CapturePlan(day, None)
    if not req.until_close:
        return CapturePlan(None, req.duration_s)
    symbols, market = _universe(req)
    return CapturePlan(None, _seconds_to_close(day, recorded_venues(symbols, market, _nxt(req)), req))


@functools.lru_cache(maxsize=16)
def isolated_trading_day(date: dt.date) -> TradingDay | Closed:
    """:func:`~recorder.kiwoom.calendar.trading_day` worked out in a short-lived interpreter.

    The calendar needs exchange_calendars and pandas: about 50 MB that a capture would keep
    resident all day for one lookup at its start. The answer (or the ConfigError of a year
    outside the calendar) comes back pickled; a lookup that cannot run at all is done here.
    Answers are kept: building the year's calendar costs a CPU-second or two, once.
    """
    code = (
        "import datetime, pickle, sys\n"
        "from recorder.errors import ConfigError\n"
        "from recorder.kiwoom.calendar import trading_day\n"
        "try:\n"
        "    out = trading_day(datetime.date.fromisoformat(sys.argv[1]))\n"
        "except ConfigError as exc:\n"
        "    out = exc\n"
        "sys.stdout.buffer.write(pickle.dumps(out))\n"
    )
    try:
        r = subprocess.run([sys.executable, "-c", code, date.isoformat()], capture_output=True, timeout=120)
        out = pickle.loads(r.stdout) if r.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, pickle.UnpicklingError, EOFError):
        out = None
    if out is None:
        log.debug("calendar lookup in a subprocess failed; looking up in this process")
        return trading_day(date)
    if isinstance(out, ConfigError):
        raise out
    assert isinstance(out, TradingDay | Closed)
    return out


def _calendar_day(req: CaptureRequest) -> TradingDay | Closed:
    date = dt.date.fromisoformat(req.trading_date) if req.trading_date else kst_today(req.clock())
    return req.calendar(date)


def recorded_venues(symbols: Sequence[str], market: str | None, nxt: bool) -> tuple[str, ...]:
    """The venues whose sessions a capture spans: KRX for plain codes and a market universe,
    NXT for ``_NX`` items or ``nxt``, both for SOR (``_AL``) items."""
    venues = {"KRX"} if market is not None else set()
    for item in symbols:
        parts = split_item(item)
        venue = parts[1] if parts else "KRX"
        venues |= {"KRX", "NXT"} if venue == "SOR" else {venue}
    if nxt:
        venues.add("NXT")
    return tuple(v for v in ("KRX", "NXT") if v in venues) or ("KRX",)


def close_time(
    day: TradingDay | Closed, venues: Sequence[str], grace_s: float = CLOSE_GRACE_S
) -> dt.datetime:
    """When ``--until close`` ends: the last session of ``venues`` on ``day`` plus the grace.

    Raises:
        ConfigError: ``day`` is closed.
    """
    if isinstance(day, Closed):
        raise ConfigError(f"--until close: the market is closed on {day.date} ({day.reason})")
    return day.close(tuple(venues)) + dt.timedelta(seconds=grace_s)


def _seconds_to_close(day: TradingDay | Closed, venues: Sequence[str], req: CaptureRequest) -> float:
    end = close_time(day, venues, req.grace_s)
    left = (end - dt.datetime.fromtimestamp(req.clock() / 1e9, dt.UTC)).total_seconds()
    if left <= 0:
        sessions = f"the {'/'.join(venues)} sessions of {end:%Y-%m-%d}"
        raise ConfigError(f"--until close: {sessions} ended at {end:%H:%M} KST (with the grace)")
    log.info("recording the %s sessions until %s KST", "/".join(venues), f"{end:%H:%M}")
    return left


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
