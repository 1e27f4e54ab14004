"""Live capture: sessions → journal → (decoder process) → Parquet, with recovery and shutdown.

The event loop thread reads the socket and appends every frame to the journal before
anything else looks at it (docs/architecture.md, invariant 1). The decoder, in a child
process of its own (:mod:`recorder.capture.decoder`), follows the journal, decodes and
writes part files, and advances the checkpoint after each flush. Memory therefore stays
bounded however slow the Parquet side is: frames wait on disk, not in a queue.

On start, a ``restart`` gap covers the time the recorder was down, whether the previous run
stopped cleanly or died, and the sessions connect at once: frames journaled by an earlier run
but not yet in Parquet (a crash, ``kill -9``) are the decoder's to store first, exactly once.
This process never loads Arrow; it reads sockets and writes the journal. Shutdown (duration reached,
``--until``, SIGINT/SIGTERM) closes the sessions, lets the decoder reach the last journaled
frame, flushes every buffer and checkpoints.

Several app keys run one session each (Kiwoom allows one session and 200 codes per key,
protocol notes §3.4): the universe is spread over them by :func:`recorder.capture.assign.assign_keys`,
every session journals into the same journal, and a key that is refused, kicked or cut does
not stop the others. Its gaps name its own items, and the run ends loudly (a non-zero exit)
when some key never got subscribed, after the others have recorded and flushed.

A run in which no session ever got logged in and subscribed (a wrong URL, a closed port, a
refused token) recorded nothing: its whole time becomes a ``disconnect`` gap, and
:meth:`Capture.run` raises :class:`~recorder.errors.NothingCapturedError` (or the
:class:`~recorder.errors.AuthError` that caused it) instead of reporting success.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from recorder.capture.assign import assign_keys, key_id, shard_items
from recorder.capture.decoder import DecoderProcess, DecoderSpec, DecoderThread, wait_for_orphan
from recorder.capture.progress import CaptureStats, KeyState
from recorder.client.rest import Credentials, KiwoomRest
from recorder.client.session import Session, SessionEvent, SessionTuning
from recorder.errors import (
    AuthError,
    ConfigError,
    JournalError,
    NothingCapturedError,
    RecorderError,
    StoreError,
)
from recorder.kiwoom.limits import MAX_CODES_PER_KEY, check_codes
from recorder.store.journal import EVENT, TRADING_DAY, JournalWriter, Record, read_records
from recorder.store.layout import INTENT_DIR, INTENT_GLOB, journal_root

if TYPE_CHECKING:
    from recorder.capture.relay import Relay
    from recorder.store.sink import PartWriter

log = logging.getLogger(__name__)

T = TypeVar("T")

STOPPED = "stopped"  # the event a clean shutdown journals last


@dataclass
class CaptureConfig:
    """What to capture and where. Mirrors the options of ``recorder capture``."""

    data_dir: Path
    ws_url: str
    rest_url: str
    keys: Sequence[Credentials]  # one session per app key
    symbols: Sequence[str] = ()
    universe: str | None = None  # kospi | kosdaq | all (ka10099)
    nxt: bool = False  # also register <code>_NX for universe symbols with nxtEnable == "Y" (§4.2)
    trading_date: str | None = None  # pin ts dates (replaying a recorded day); None = the receive date
    types: Sequence[str] = ("0B", "0D")
    shard: tuple[int, int] = (1, 1)  # (I, N): record only the I-th of N slices of the universe
    duration_s: float | None = None
    writer: str = "local"
    flush_age_s: float = 300.0
    # Rows buffered for Parquet, all tables together; past it the largest table is written
    # early. Bounds the capture's memory whatever the universe and the flush age.
    buffer_bytes: int = 96 << 20
    max_codes: int = MAX_CODES_PER_KEY
    tuning: SessionTuning = field(default_factory=SessionTuning)
    # Writes one part file atomically; None is the store's own writer. Recovery always
    # uses the store's writer: this seam is for the live path (e.g. a slow consumer). A
    # writer of the caller's runs in this process, so it puts the decoder on a thread.
    part_writer: PartWriter | None = None
    # Where the decoder runs: "process" (a child process, so it never competes with the
    # socket reader for the interpreter) or "thread" (this process; see capture/decoder.py).
    decoder: Literal["process", "thread"] = "process"
    # Compress journal segments once sealed (rolled and in Parquet), on a thread of their own;
    # the last one too after a clean shutdown.
    compress_journal: bool = True


@dataclass
class CaptureResult:
    stats: CaptureStats
    files: int
    journal_last_fno: int


def _seal_journal(root: Path) -> None:
    """After a clean end: compress every segment that is all in Parquet, the last one too."""
    from recorder.store.retention import compress_sealed

    try:
        compress_sealed(root, include_last=True)
    except (JournalError, OSError) as exc:
        log.warning("journal: compressing the last segments failed (kept as they are): %s", exc)


def _last_record(root: Path, last_fno: int) -> Record | None:
    if last_fno < 0:
        return None
    last = None
    for rec in read_records(root, last_fno):
        last = rec
    return last


class Capture:
    """One capture run. Use :func:`run_capture`, or drive ``await Capture(cfg).run(stop)``."""

    def __init__(
        self,
        cfg: CaptureConfig,
        *,
        stop: asyncio.Event | None = None,
        transport: Any = None,
        clock_ns: Callable[[], int] = time.time_ns,
        relay: Relay | None = None,
    ) -> None:
        self.cfg = cfg
        self.transport = transport
        self.clock_ns = clock_ns
        self.stats = CaptureStats(started_ns=clock_ns())
        self.root = journal_root(cfg.data_dir, cfg.writer)
        self.journal = JournalWriter(self.root)
        self.fatal: BaseException | None = None
        self.stop = stop if stop is not None else asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sessions: list[Session] = []
        if not cfg.keys:
            raise ConfigError("no app key to capture with")
        self.stats.keys = [
            KeyState(f"key {n}/{len(cfg.keys)} ({key_id(c.appkey)})", 0) for n, c in enumerate(cfg.keys, 1)
        ]
        self._key_failures: list[tuple[int, BaseException]] = []
        self._open_gaps: list[tuple[int, dict[str, Any]]] = []
        self._key_sessions: dict[int, tuple[Session, list[str]]] = {}
        self._waiting_for = "the start"  # what the run was doing before a session existed
        self.relay, self.planned = relay, asyncio.Event()  # the live relay; set once keys have codes
        if relay is not None:
            relay.attach(self)

    # -------------------------------------------------------------- journal side (event loop)

    def _on_frame(self, session_id: int) -> Callable[[int, str | bytes], None]:
        publish = self.relay.publish if self.relay is not None else None  # frames after the journal
        wake = self.decoder.wake  # a decoder thread waits for it; a decoder process polls

        def on_frame(recv_ts_ns: int, raw: str | bytes) -> None:
            if self.fatal is not None:
                raise self.fatal
            try:
                self.journal.append_frame(recv_ts_ns, raw, session_id)
                self.journal.flush()
            except RecorderError as exc:
                self._fail(exc)
                raise
            self.stats.frames += 1
            self.stats.last_recv_ns = recv_ts_ns
            if wake is not None:
                wake.set()
            if publish is not None:
                publish(recv_ts_ns, raw)  # never waits, never parses

        return on_frame

    def _on_event(self, session_id: int, items: Sequence[str] = ()) -> Callable[[SessionEvent], None]:
        """Journal the session's events; with several keys, a gap that names no items is a
        gap of this key's items only (not of the whole universe)."""
        key = self.stats.keys[session_id]

        def on_event(ev: SessionEvent) -> None:
            event = dataclasses.asdict(ev)
            event["symbols"] = list(ev.symbols or items)
            try:
                self.journal.append_event(self.clock_ns(), event, session_id)
                self.journal.flush()
            except RecorderError as exc:
                self._fail(exc)
                raise
            if ev.kind in ("disconnect", "kicked", "stale"):
                self.stats.reconnects += 1
                key.reconnects += 1
                key.state, key.detail = ("kicked" if ev.kind == "kicked" else "reconnecting"), ev.detail
            elif ev.kind == "subscribed":
                self.stats.subscribed = True
                key.state, key.detail, key.ever_subscribed = "subscribed", "", True
            if self.decoder.wake is not None:
                self.decoder.wake.set()

        return on_event

    def _fail(self, exc: BaseException) -> None:
        """Called from either thread: remember the first fatal error and stop the capture."""
        if self.fatal is None:
            self.fatal = exc
            log.error("capture stopping: %s", exc)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.stop.set)

    # -------------------------------------------------------------- lifecycle

    async def run(self) -> CaptureResult:
        """Recover, capture until ``self.stop`` is set (or the duration ends), then flush.

        Raises:
            NothingCapturedError: no session was ever logged in and subscribed; the whole
                run is on record as a ``disconnect`` gap.
            AuthError: the credentials or the token were refused (also a gap, as above,
                when nothing was subscribed before).
            JournalError, StoreError: the journal or a part file could not be written.
            ConfigError: e.g. the universe is empty or too large.
        """
        self._loop = asyncio.get_running_loop()
        self.journal.open()
        cause: RecorderError | None = None
        try:
            await asyncio.to_thread(self._recover)
            self.stats.decoded_fno = self._tail_start - 1
            self.decoder = self._decoder()
            self.decoder.start()
            try:
                await self._capture(self.cfg)
            except RecorderError as exc:
                cause = exc  # raised below, once the run is on record
            finally:
                await self._shutdown(cause)
        finally:
            self.journal.close()
        if self.fatal is not None:
            raise self.fatal
        if self.cfg.compress_journal:
            await asyncio.to_thread(_seal_journal, self.root)
        if not self.stats.subscribed and not isinstance(cause, ConfigError | JournalError | StoreError):
            raise self._nothing_captured(cause)
        if cause is not None:
            raise cause
        self._raise_for_idle_keys()
        return CaptureResult(self.stats, self.stats.files, self.journal.last_fno)

    def _raise_for_idle_keys(self) -> None:
        """Several keys, some of which never recorded: the others' data is in the store, and
        the run still ends loudly (exit 3 for refused keys, 4 for keys never subscribed)."""
        refused = [self.stats.keys[n] for n, _ in self._key_failures]
        idle = [k for k in self.stats.keys if not k.ever_subscribed and k.items and k not in refused]
        if not refused and not idle:
            return
        recorded = sum(k.ever_subscribed for k in self.stats.keys)
        parts = [f"{k.label} refused: {k.detail}" for k in refused]
        parts += [f"{k.label} never subscribed ({k.items} codes; a gap covers the run)" for k in idle]
        text = f"{len(parts)} of {len(self.stats.keys)} keys recorded nothing ({'; '.join(parts)}); "
        text += f"the other {recorded} recorded into {self.cfg.data_dir}"
        raise AuthError(text) if refused else NothingCapturedError(text)

    def _why_nothing(self, cause: RecorderError | None) -> str:
        """Why no session got subscribed: the gap's detail and the error's message."""
        if cause is not None:
            return f"never logged in and subscribed: {cause}"
        if not self.sessions:
            return f"never logged in and subscribed: stopped while waiting for {self._waiting_for}"
        s = self.sessions[0].stats
        if s.logins:
            return f"logged in {s.logins} time(s) but no REG was accepted (see the reg_rejected gaps)"
        return (
            f"never logged in and subscribed at {self.cfg.ws_url}: {s.reconnects + 1} connection "
            f"attempt(s), the last ended with: {s.last_error or 'stopped while connecting'}"
        )

    def _nothing_captured(self, cause: RecorderError | None) -> RecorderError:
        seconds = (self.clock_ns() - self.stats.started_ns) / 1e9
        text = (
            f"nothing captured in {seconds:.1f} s: {self._why_nothing(cause)}. The run is on record "
            f"as a disconnect gap in {self.cfg.data_dir}"
        )
        err = AuthError(text) if isinstance(cause, AuthError) else NothingCapturedError(text)
        err.__cause__ = cause
        return err

    def _decoder(self) -> DecoderThread | DecoderProcess:
        c = self.cfg  # snappy: half the time of zstd per file; compaction merges into zstd
        spec = DecoderSpec(
            self.root,
            self._tail_start,
            c.data_dir,
            c.writer,
            max_age_s=c.flush_age_s,
            max_bytes=c.buffer_bytes,
            compression="snappy",
            compress_journal=c.compress_journal,
            log_level=logging.getLogger().getEffectiveLevel(),
        )
        if c.decoder == "thread" or c.part_writer is not None:
            return DecoderThread(spec, self.stats, self._fail, c.part_writer)
        return DecoderProcess(spec, self.stats, self._fail)

    def _recover(self) -> None:
        """Make the store safe to write and journal the restart; the frames a crash left
        undecoded are the decoder's to store first (:func:`~recorder.capture.decoder.recover`),
        so the sessions connect without waiting for them."""
        wait_for_orphan(self.root)  # the decoder of a run killed just now may still be writing
        # A compaction interrupted by a crash may have left a merged file next to its
        # inputs: finish it before writing anything (we hold this writer's journal lock).
        if any((self.cfg.data_dir / INTENT_DIR).glob(INTENT_GLOB)):
            from recorder.store.compact import finish_compactions

            finish_compactions(self.cfg.data_dir)
        last = self.journal.last_fno
        if self.journal.torn_tail is not None:
            log.warning("journal had a torn last record (a crash mid-write): %s", self.journal.torn_tail)
        self._tail_start = last + 1  # the decoder recovers up to here, then follows from here
        prev = _last_record(self.root, last)
        if prev is not None:
            self._journal_restart(prev)
        # Journaled, so recovery and rebuild date the frames the same way; None unpins.
        self.journal.append_event(self.clock_ns(), {"kind": TRADING_DAY, "date": self.cfg.trading_date})
        self.journal.flush()

    def _journal_restart(self, prev: Record) -> None:
        """A ``restart`` gap from the previous run's last record (its clean-stop event, or
        the last thing it journaled before it died) to now: nothing was recorded between."""
        clean = prev.kind == EVENT and prev.event().get("kind") == STOPPED
        now = self.clock_ns()
        gap = {
            "kind": "restart",
            "start_ns": prev.recv_ts_ns,
            "end_ns": now,
            "detail": "the recorder was stopped; restarted"
            if clean
            else "the recorder was not running (crash or kill); restarted",
            "symbols": [],
        }
        self.journal.append_event(now, gap)
        self.journal.flush()

    async def _capture(self, cfg: CaptureConfig) -> None:
        # The duration counts from here: a REST server that never answers cannot stretch it.
        timer = asyncio.create_task(self._timer(cfg.duration_s))
        try:
            async with contextlib.AsyncExitStack() as stack:
                rests = [
                    await stack.enter_async_context(KiwoomRest(cfg.rest_url, cred, transport=self.transport))
                    for cred in cfg.keys
                ]
                plan = await _unless_stopped(self._prepare(rests[0]), self.stop)
                if plan is None:
                    return
                runs = []
                for n, (rest, items) in enumerate(zip(rests, plan, strict=True)):
                    if not items:
                        self.stats.keys[n].state, self.stats.keys[n].detail = "idle", "no codes assigned"
                        continue
                    session = Session(
                        cfg.ws_url,
                        rest.token,
                        items,
                        cfg.types,
                        on_frame=self._on_frame(n),
                        on_event=self._on_event(n, items if len(cfg.keys) > 1 else ()),
                        session_id=n,
                        max_codes=cfg.max_codes,
                        tuning=cfg.tuning,
                    )
                    self.sessions.append(session)
                    self._key_sessions[n] = (session, items)
                    runs.append(self._run_key(n, session, items))
                self.planned.set()
                await asyncio.gather(*runs)
        finally:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer

    async def _run_key(self, n: int, session: Session, items: Sequence[str]) -> None:
        """One key's session until the stop. An auth failure ends this key only: its items
        get a ``login_failed`` gap and the other keys go on (the run still ends non-zero)."""
        key = self.stats.keys[n]
        try:
            await session.run(self.stop)
        except AuthError as exc:
            if len(self.cfg.keys) == 1:
                raise
            key.state, key.detail = "failed", str(exc)
            log.error("%s: %s; the other keys go on", key.label, exc)
            now = self.clock_ns()
            gap = {
                "kind": "login_failed",
                "start_ns": now,
                "end_ns": None,
                "detail": f"{key.label}: {exc}",
                "symbols": list(items),
            }
            self._key_failures.append((n, exc))
            self._journal_gap_until_stop(n, gap)
            await self.stop.wait()
        else:
            if key.state != "failed":
                key.state = "stopped"

    def key_codes(self) -> list[tuple[int, Session, list[str]]]:
        """Each key with a running session, the session and its codes (the list the key's gaps
        name): the relay adds codes to both (:meth:`Session.add_items`)."""
        failed = dict(self._key_failures)
        return [(n, session, items) for n, (session, items) in self._key_sessions.items() if n not in failed]

    def _journal_gap_until_stop(self, n: int, gap: dict[str, Any]) -> None:
        """Remember a gap that stays open until the run stops (journaled at shutdown)."""
        self._open_gaps.append((n, gap))

    async def _prepare(self, rest: KiwoomRest) -> list[list[str]]:
        """A token (fail fast on bad credentials, before any socket), the items, and each
        key's share of them."""
        self._waiting_for = f"an access token from {self.cfg.rest_url}"
        await rest.token()
        self._waiting_for = f"the symbol list from {self.cfg.rest_url}"
        items = await self._items(rest)
        self.stats.symbols_live = len(items)
        ids = [key_id(c.appkey) for c in self.cfg.keys]
        shares = assign_keys(items, ids, self.cfg.max_codes)
        plan = [shares[i] for i in ids]
        for state, share in zip(self.stats.keys, plan, strict=True):
            state.items = len(share)
        return plan

    async def _items(self, rest: KiwoomRest) -> list[str]:
        items = list(dict.fromkeys(self.cfg.symbols))
        if self.cfg.universe:
            infos = await rest.list_symbols(self.cfg.universe)
            for info in infos:
                extra = [info.code, f"{info.code}_NX"] if self.cfg.nxt and info.nxt_enable else [info.code]
                items += [i for i in extra if i not in items]
        shard, count = self.cfg.shard
        if count > 1:
            items = shard_items(items, shard, count)
        if not items:
            raise ConfigError("no symbols to capture: give --symbols or --universe")
        check_codes(len(items), keys=len(self.cfg.keys), per_key=self.cfg.max_codes)
        return items

    async def _timer(self, duration_s: float | None) -> None:
        if duration_s is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration_s):
                await self.stop.wait()
        self.stop.set()

    async def _shutdown(self, cause: RecorderError | None) -> None:
        self.stop.set()
        if self.fatal is None or not isinstance(self.fatal, StoreError):
            with contextlib.suppress(RecorderError):
                if not self.stats.subscribed:
                    self._journal_nothing_captured(cause)
                else:
                    self._journal_idle_keys()
                self.journal.append_event(self.clock_ns(), {"kind": STOPPED, "detail": "clean shutdown"})
                self.journal.flush()
        self.decoder.drain()
        await asyncio.to_thread(self.decoder.join)

    def _journal_idle_keys(self) -> None:
        """Close the gaps of keys that failed, and give keys that never subscribed one gap over
        the run, each naming that key's items (the other keys recorded)."""
        now = self.clock_ns()
        for _, gap in self._open_gaps:
            self.journal.append_event(now, {**gap, "end_ns": now})
        failed = {n for n, _ in self._key_failures}
        for n, (session, items) in self._key_sessions.items():
            key = self.stats.keys[n]
            if key.ever_subscribed or n in failed:
                continue
            detail = f"{key.label} never logged in and subscribed: {session.stats.last_error or 'no reply'}"
            gap = {"kind": "disconnect", "start_ns": self.stats.started_ns, "end_ns": now, "detail": detail}
            self.journal.append_event(now, {**gap, "symbols": list(items)})

    def _journal_nothing_captured(self, cause: RecorderError | None) -> None:
        """The whole run as one gap: nothing was subscribed, so nothing was recorded."""
        now = self.clock_ns()
        gap = {
            "kind": "disconnect",
            "start_ns": self.stats.started_ns,
            "end_ns": now,
            "detail": self._why_nothing(cause),
            "symbols": [],
        }
        self.journal.append_event(now, gap)


async def _unless_stopped(aw: Awaitable[T], stop: asyncio.Event) -> T | None:
    """``await aw``, or None when ``stop`` is set first (``aw`` is then cancelled)."""
    work = asyncio.ensure_future(aw)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((work, stopper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        work.cancel()  # no-op when it finished
        stopper.cancel()
        await asyncio.gather(work, stopper, return_exceptions=True)
    return None if work.cancelled() else work.result()


def install_signal_handlers(stop: asyncio.Event) -> list[int]:
    """SIGINT/SIGTERM set ``stop``: the capture flushes everything and exits 0.

    Returns a list that the signals received are appended to (a stop by signal asks for a
    quick exit: the runner then leaves the end-of-run compaction for later)."""
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(sig: int) -> None:
        received.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig)
    return received
