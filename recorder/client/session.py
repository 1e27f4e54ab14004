"""One Kiwoom WebSocket session's life: connect, LOGIN, REG, keep alive, reconnect.

A :class:`Session` keeps one socket logged in and subscribed until told to stop. It never
decodes market data and never writes files: every frame read from the socket goes to
``on_frame`` (the capture journals it and decodes REAL frames later), and everything the
capture must turn into ``gaps`` rows or log lines goes to ``on_event`` as a
:class:`SessionEvent`.

The decisions that do not need a socket are pure and live in :mod:`recorder.client.retry`:
:class:`ReconnectDelays` picks the wait before each reconnect (a jitter under 0.1 s after a
healthy connection, a growing backoff after consecutive failures, a long wait after a kick)
and :func:`is_retryable` tells whether a failure is worth a reconnect.
Errors from ``websockets`` and ``OSError`` are translated into :mod:`recorder.errors` where
the socket is used; nothing websockets-specific leaves :meth:`Session.run`.

Events with ``end_ns=None`` are notices (``connected``, ``subscribed``, ``system``,
``login_failed``, ``reg_rejected``, and ``kicked`` at the moment of the kick). Events with
``end_ns`` set are closed gaps (``disconnect`` or ``kicked``): no data flowed between
``start_ns`` and ``end_ns`` for ``symbols`` (``()`` = every item of the session).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import websockets.asyncio.client
from websockets.exceptions import WebSocketException

from recorder.client.retry import ReconnectDelays, is_retryable, translated
from recorder.errors import AuthError, ConfigError, TransportError
from recorder.kiwoom import frames as protocol
from recorder.kiwoom.frames import FrameKind, Message
from recorder.kiwoom.limits import (
    MAX_CODES_PER_KEY,
    REG_RATE_LIMITED,
    SYSTEM_HEARTBEAT,
    SYSTEM_KICKED,
    check_codes,
)

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 16 * 1024 * 1024  # REAL frames batch many entries (§4.1); be generous
CLOSE_TIMEOUT_S = 1.0  # closing handshake bound, so that stop returns promptly

T = TypeVar("T")


@dataclass(frozen=True)
class SessionEvent:
    """Something the capture turns into a ``gaps`` row or a log line.

    Attributes:
        kind: ``"disconnect" | "login_failed" | "reg_rejected" | "kicked" | "system" |
            "connected" | "subscribed"``.
        start_ns: when it started (epoch ns, from the session's clock).
        end_ns: when the gap closed; ``None`` for notices and open-ended conditions.
        detail: human text; never contains the token or the app key.
        symbols: affected items; ``()`` means every item of the session.
    """

    kind: str
    start_ns: int
    end_ns: int | None
    detail: str
    symbols: tuple[str, ...] = ()


@dataclass
class SessionStats:
    """Counters for monitoring; updated in place by the session."""

    connects: int = 0  # sockets opened
    logins: int = 0  # LOGIN replies with return_code 0
    pings_received: int = 0
    pings_echoed: int = 0
    regs_sent: int = 0  # REG messages, resends included
    regs_refused: int = 0  # REG acknowledgements with a non-zero return_code
    frames: int = 0  # frames read from the socket, of any kind
    reconnects: int = 0  # connection attempts after the first
    last_frame_ns: int | None = None
    last_error: str = ""  # why the last connection (or attempt) ended


class _HideLogin(logging.Filter):
    """Withhold websockets' debug line for the LOGIN frame: it carries the token (§3.1)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if '"token"' in record.getMessage():
            record.msg, record.args = "> TEXT [LOGIN frame withheld: it carries the token]", ()
        return True


_WS_LOG = logging.getLogger(__name__ + ".websockets")
_WS_LOG.addFilter(_HideLogin())


class StaleConnection(TransportError):
    """No frame arrived for longer than the staleness limit; the connection is replaced."""


class _Stopped(Exception):
    """``stop`` was set while waiting. Never leaves :meth:`Session.run`."""


async def _unless_stopped(aw: Awaitable[T], stop: asyncio.Event) -> T:
    """Await ``aw`` unless ``stop`` is set first: then cancel it and raise :class:`_Stopped`.

    The cancelled work runs its cleanup (closing the socket) before this returns.
    """
    work = asyncio.ensure_future(aw)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((work, stopper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        work.cancel()  # no-op when it finished
        await asyncio.gather(work, stopper, return_exceptions=True)
    if work.cancelled():
        raise _Stopped
    return work.result()


async def _first_failure(*tasks: asyncio.Task[Any]) -> None:
    """Wait for every task; on the first failure cancel the rest and raise it."""
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _distinct(values: Sequence[str], what: str) -> tuple[str, ...]:
    if isinstance(values, str | bytes):
        raise ConfigError(f"{what} must be a sequence of strings, not one string {values!r}")
    out = tuple(dict.fromkeys(values))
    if not out:
        raise ConfigError(f"no {what} to register")
    return out


# --------------------------------------------------------------------------- the session


@dataclass(frozen=True)
class SessionTuning:
    """The timing knobs of a :class:`Session`; the defaults suit Kiwoom's production servers.

    Attributes:
        reg_batch: items per REG message.
        reg_per_s: REG messages per second at most (§3.4: Kiwoom refuses more than ~5/s).
        login_timeout_s: how long to wait for the LOGIN reply, and for each REG ack.
        reconnect_jitter_s: after a healthy connection (logged in and subscribed) closes or
            drops, reconnect after a random wait in ``[0, reconnect_jitter_s)``: Kiwoom cuts
            sessions routinely, and each cut should cost a fraction of a second of data.
        backoff_base_s, backoff_cap_s: the backoff between consecutive failed attempts
            (attempts that never got subscribed; see :func:`~recorder.client.retry.backoff`),
            reset by a healthy connection.
        kicked_backoff_s: the wait before reconnecting after SYSTEM R10001 (§3.3).
        reg_retry_s, max_reg_retries: pause and resends for a REG refused with 105110.
        stale_after_s: replace a connection that delivers no frame at all (not even a PING)
            for this long; the hole becomes a ``stale`` gap starting at the last frame.

    Raises:
        ConfigError: a count or rate that is not positive, or a negative wait.
    """

    reg_batch: int = 100
    reg_per_s: float = 4.0
    login_timeout_s: float = 10.0
    reconnect_jitter_s: float = 0.1
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    kicked_backoff_s: float = 60.0
    reg_retry_s: float = 1.5
    max_reg_retries: int = 5
    # §3.2: PINGs come every few tens of seconds (H-WS treats 5 min of silence as dead),
    # so two minutes without any frame means the link is gone even if no symbol traded.
    stale_after_s: float = 120.0

    def __post_init__(self) -> None:
        if min(self.reg_batch, self.reg_per_s, self.login_timeout_s, self.stale_after_s) <= 0:
            raise ConfigError("reg_batch, reg_per_s, login_timeout_s and stale_after_s must be > 0")
        waits = (
            self.reconnect_jitter_s,
            self.backoff_base_s,
            self.backoff_cap_s,
            self.kicked_backoff_s,
            self.reg_retry_s,
        )
        if min(*waits, self.max_reg_retries) < 0:
            raise ConfigError("session waits and max_reg_retries must be >= 0")


@dataclass(eq=False)
class _Link:
    """What one connection knows; thrown away when it closes."""

    ws: Any = None
    pending: collections.deque[asyncio.Future[Message]] = field(default_factory=collections.deque)
    kicked_ns: int | None = None
    kick_detail: str = ""
    subscribed: bool = False


@dataclass
class _Gap:
    """An open gap: data stopped at ``start_ns`` and has not resumed."""

    kind: str
    start_ns: int
    detail: str
    attempts: int = 0


class Session:
    """Keeps one Kiwoom WebSocket session logged in and subscribed to ``items`` × ``types``.

    Args:
        ws_url: the WebSocket endpoint (§1).
        token: returns a valid access token; called once per connection (it caches and
            refreshes on its own). May raise AuthError (ends :meth:`run`) or TransportError.
        items: item codes exactly as Kiwoom spells them (``005930``, ``005930_NX``);
            duplicates are registered once. At most ``max_codes`` distinct codes.
        types: real-time type codes (``0B``, ``0D``); every item is registered for each.
        on_frame: ``(recv_ts_ns, raw)`` for every frame read, right after the read and before
            any handling. Whatever it raises ends :meth:`run` (unless retryable).
        on_event: receives every :class:`SessionEvent`.
        session_id: a label for log lines.
        clock_ns, sleep, rng, connect: time, waiting, jitter and the WebSocket client.
        max_codes: distinct codes allowed (Kiwoom: 200 per app key, §3.4).
        tuning: batch sizes, pacing, timeouts and backoffs (:class:`SessionTuning`).

    Raises:
        ConfigError: too many codes, or no items or types.
    """

    def __init__(
        self,
        ws_url: str,
        token: Callable[[], Awaitable[str]],
        items: Sequence[str],
        types: Sequence[str],
        *,
        on_frame: Callable[[int, str | bytes], None],
        on_event: Callable[[SessionEvent], None],
        session_id: int = 0,
        clock_ns: Callable[[], int] = time.time_ns,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        connect: Callable[..., Any] = websockets.asyncio.client.connect,
        max_codes: int = MAX_CODES_PER_KEY,
        tuning: SessionTuning = SessionTuning(),
    ) -> None:
        self._items = _distinct(items, "items")
        self._types = _distinct(types, "types")
        check_codes(len(self._items), per_key=max_codes)
        self._url, self._token, self._id = ws_url, token, session_id
        self._on_frame, self._on_event = on_frame, on_event
        self._clock, self._sleep, self._connect = clock_ns, sleep, connect
        self._rng = rng if rng is not None else random.Random()
        t = tuning
        self._batches = [self._items[i : i + t.reg_batch] for i in range(0, len(self._items), t.reg_batch)]
        self._reg_interval_s = 1.0 / t.reg_per_s  # §3.4: Kiwoom refuses more than ~5 REG/s
        self._login_timeout_s = t.login_timeout_s
        self._tuning = t
        self._kicked_backoff_s = t.kicked_backoff_s
        self._reg_retry_s, self._max_reg_retries = t.reg_retry_s, t.max_reg_retries
        self._stale_after_s = t.stale_after_s
        self._gap: _Gap | None = None
        self._max_codes = max_codes
        self._link: _Link | None = None  # the connection now open, if any
        self.stats = SessionStats()

    @property
    def items(self) -> tuple[str, ...]:
        """Every item this session registers, those added by :meth:`add_items` included."""
        return self._items

    async def add_items(self, items: Sequence[str]) -> bool:
        """Register more items now and on every later connection (§3.4: ``refresh "1"``
        keeps what is registered, and the same types and group are used).

        On a connection still registering, or while reconnecting, the new items go out with
        the other REGs; on a subscribed one they are sent at once, 105110 resends included.

        Returns:
            False when Kiwoom refused the REG for good (a ``reg_rejected`` event names the
            items, which stay in the list for the next connection's REG).

        Raises:
            ConfigError: the session would carry more than ``max_codes`` codes.
            TransportError: no acknowledgement in time (the connection is then replaced).
        """
        new = [i for i in dict.fromkeys(items) if i not in self._items]
        if not new:
            return True
        check_codes(len(self._items) + len(new), per_key=self._max_codes)
        self._items += tuple(new)
        size = self._tuning.reg_batch
        batches = [tuple(new[i : i + size]) for i in range(0, len(new), size)]
        link = self._link
        self._batches.extend(batches)  # a registrar still running sends them too
        if link is None or not link.subscribed:
            return True
        results = [await self._register_batch(link, batch) for batch in batches]
        return all(results)

    # ----------------------------------------------------------------------- reconnect loop

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected, logged in and subscribed until ``stop`` is set.

        Every close or drop is followed by a wait (:class:`ReconnectDelays`: a jitter under
        ``reconnect_jitter_s`` if the connection was healthy, the backoff after consecutive
        failures, ``kicked_backoff_s`` after a kick), a token (the provider's cached one
        while it is valid), LOGIN and every REG again (§3.3: registrations do not survive a
        reconnect). Setting ``stop`` closes the socket with code 1000 and returns within
        about a second, whatever the session was doing. A gap still open then is emitted,
        ending now.

        Raises:
            AuthError: Kiwoom refused the LOGIN, or the token provider refused. Not retried.
            ConfigError: the URL is not a WebSocket URL.
            Exception: anything non-retryable from ``token``, ``on_frame`` or ``on_event``
                (e.g. a JournalError) goes through unchanged.
        """
        delays = ReconnectDelays(
            base_s=self._tuning.backoff_base_s,
            cap_s=self._tuning.backoff_cap_s,
            jitter_s=self._tuning.reconnect_jitter_s,
            kicked_s=self._tuning.kicked_backoff_s,
            rng=self._rng,
        )
        how = "stopped before the session was back"
        try:
            while not stop.is_set():
                link = _Link()
                try:
                    await _unless_stopped(self._connection(link), stop)
                except _Stopped:
                    return
                except Exception as exc:
                    if not is_retryable(exc):
                        how = f"gave up ({type(exc).__name__}) before the session was back"
                        raise
                    delay = self._after_loss(link, exc, delays)
                try:
                    await _unless_stopped(self._sleep(delay), stop)
                except _Stopped:
                    return
                self.stats.reconnects += 1
        finally:
            self._close_gap(how)

    def _after_loss(self, link: _Link, exc: Exception, delays: ReconnectDelays) -> float:
        """Open a gap if data was flowing; pick the wait before the next connection."""
        reason = str(exc)
        self.stats.last_error = reason
        if self._gap is not None:
            self._gap.attempts += 1
        elif link.subscribed and link.kicked_ns is not None:
            self._gap = _Gap("kicked", link.kicked_ns, f"{link.kick_detail}; then {reason}")
        elif link.subscribed and isinstance(exc, StaleConnection):
            # The data stopped when the last frame arrived, not when we noticed.
            self._gap = _Gap("stale", self.stats.last_frame_ns or self._clock(), reason)
        elif link.subscribed:
            self._gap = _Gap("disconnect", self._clock(), reason)
        # §3.3: after a kick, wait long: the other session holds the app key.
        delay = delays.after(healthy=link.subscribed, kicked=link.kicked_ns is not None)
        failed = f" (failed attempt {delays.failures} in a row)" if delays.failures else ""
        log.warning("session %s: %s%s; reconnecting in %.3f s", self._id, reason, failed, delay)
        return delay

    def _close_gap(self, how: str) -> None:
        gap, self._gap = self._gap, None
        if gap is not None:
            tries = f"{gap.attempts + 1} reconnect attempt(s)"
            self._emit(gap.kind, f"{gap.detail}; {how} after {tries}", gap.start_ns, self._clock())

    def _emit(
        self,
        kind: str,
        detail: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        symbols: Sequence[str] = (),
    ) -> None:
        start = self._clock() if start_ns is None else start_ns
        self._on_event(SessionEvent(kind, start, end_ns, detail, tuple(symbols)))

    # ----------------------------------------------------------------------- one connection

    async def _connection(self, link: _Link) -> NoReturn:
        """Connect, log in, register and read until the connection ends (always by raising)."""
        token = await self._token()
        with translated(f"connect to {self._url}"):
            link.ws = await self._connect(
                self._url,
                ping_interval=None,  # §1: the official client relies on the app-level PING only
                max_size=MAX_FRAME_BYTES,
                compression=None,
                close_timeout=CLOSE_TIMEOUT_S,
                logger=_WS_LOG,
            )
        self.stats.connects += 1
        self._link = link
        try:
            await self._login(link, token)
            reader = asyncio.create_task(self._read_forever(link), name=f"session{self._id}-read")
            registrar = asyncio.create_task(self._register(link), name=f"session{self._id}-reg")
            await _first_failure(reader, registrar)
            raise TransportError("connection ended")  # pragma: no cover - the reader never returns
        except Exception:
            await self._close(link)
            await self._drain(link)
            raise
        finally:
            self._link = None
            await self._close(link)

    async def _close(self, link: _Link) -> None:
        """Close with code 1000; idempotent; bounded by close_timeout. Errors here would hide
        the reason the connection ended, which is what the caller needs."""
        with contextlib.suppress(OSError, WebSocketException):
            await link.ws.close(1000)

    async def _drain(self, link: _Link) -> None:
        """Hand on the frames that reached the socket before it closed but were never read.

        A connection can end while frames wait unread: a PING echo or a REG fails because
        the server's close frame arrived right behind the PING, with a SYSTEM frame between
        them. Those frames were sent to us, so they are journaled like any other; a SYSTEM
        among them is handled (a kick still gets its long wait). Once the socket is closed,
        ``recv`` returns what is buffered and then raises, so this does not wait for more.
        """
        with contextlib.suppress(TimeoutError, OSError, WebSocketException):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                while True:
                    raw = await link.ws.recv()
                    self._take(raw)
                    msg = protocol.classify(raw)
                    if msg.kind is FrameKind.SYSTEM:
                        self._on_system(link, msg)

    def _take(self, raw: str | bytes) -> None:
        """Stamp a frame just read and hand it to on_frame, before anything else."""
        recv_ts = self._clock()
        self.stats.frames += 1
        self.stats.last_frame_ns = recv_ts
        self._on_frame(recv_ts, raw)

    async def _recv(self, link: _Link) -> Message:
        """Read one frame, stamp it, hand it to on_frame, then handle it.

        A connection that delivers nothing at all, not even a PING, for ``stale_after_s`` is
        presumed dead (a half-open TCP connection never reports a close) and replaced.
        """
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that races with the result, and then stop() would never end this loop.
            async with asyncio.timeout(self._stale_after_s):
                with translated("receive"):
                    raw = await link.ws.recv()
        except TimeoutError as exc:
            raise StaleConnection(
                f"no frame, not even a PING, for {self._stale_after_s:g} s: connection presumed dead"
            ) from exc
        self._take(raw)  # stamped at the read, before anything else
        return await self._handle(link, raw)

    async def _send(self, link: _Link, data: str | bytes) -> None:
        with translated("send"):
            await link.ws.send(data)

    async def _handle(self, link: _Link, raw: str | bytes) -> Message:
        msg = protocol.classify(raw)
        kind = msg.kind
        if kind is FrameKind.REAL:  # the bulk: the capture decodes it from the journal
            return msg
        if kind is FrameKind.PING:
            self.stats.pings_received += 1
            await self._send(link, protocol.build_ping_echo(raw))  # §3.2: byte for byte
            self.stats.pings_echoed += 1
        elif kind is FrameKind.REG or kind is FrameKind.REMOVE:
            self._deliver_ack(link, msg)
        elif kind is FrameKind.SYSTEM:
            self._on_system(link, msg)  # §3.2: never echo SYSTEM
        return msg  # INVALID/OTHER: nothing; the capture records them from the journal

    async def _read_forever(self, link: _Link) -> NoReturn:
        while True:
            msg = await self._recv(link)
            if msg.kind is FrameKind.LOGIN:
                log.warning("session %s: unexpected LOGIN frame after login", self._id)

    def _on_system(self, link: _Link, msg: Message) -> None:
        code = str(msg.return_code)
        detail = f"SYSTEM {code}: {msg.return_msg}"
        if code == SYSTEM_KICKED:
            log.warning(
                "session %s KICKED (%s): another program logged in with the same app key. "
                "Kiwoom allows one session per key (§3.3); stop the other program or give it "
                "its own app key. Reconnecting in %g s.",
                self._id,
                detail,
                self._kicked_backoff_s,
            )
            link.kicked_ns, link.kick_detail = self._clock(), detail
            self._emit("kicked", detail, link.kicked_ns)
            return
        if code == SYSTEM_HEARTBEAT:
            log.warning("session %s: server says PING echoes were missed (§3.2): %s", self._id, detail)
        else:
            log.warning("session %s: %s", self._id, detail)
        self._emit("system", detail)

    # ----------------------------------------------------------------------- LOGIN

    async def _login(self, link: _Link, token: str) -> None:
        """§3.1: send LOGIN, then wait for its reply, echoing PINGs and skipping SYSTEM frames.

        Raises:
            AuthError: the reply has a non-zero return_code.
            TransportError: no reply in time, or the connection closed before one.
        """
        await self._send(link, protocol.build_login(token))  # never logged: it holds the token
        try:
            async with asyncio.timeout(self._login_timeout_s):
                while (reply := await self._recv(link)).kind is not FrameKind.LOGIN:
                    pass
        except TimeoutError as exc:
            raise TransportError(f"no LOGIN reply within {self._login_timeout_s:g} s") from exc
        if reply.return_code != 0:
            text = f"Kiwoom refused LOGIN (return_code {reply.return_code}): {reply.return_msg}"
            text = text.replace(token, "<token>") if token else text
            self._emit("login_failed", text)
            log.error("session %s: %s", self._id, text)
            raise AuthError(text)
        self.stats.logins += 1
        log.info("session %s: logged in to %s", self._id, self._url)
        self._emit("connected", f"logged in to {self._url}")

    # ----------------------------------------------------------------------- REG

    async def _register(self, link: _Link) -> None:
        """§3.4: REG every item × type in batches, paced; acks are matched by order."""
        refused: list[str] = []
        for i, batch in enumerate(self._batches):
            if i:
                await self._sleep(self._reg_interval_s)
            if not await self._register_batch(link, batch):
                refused.extend(batch)
        if len(refused) == len(self._items):
            return  # nothing flows: the gap, if any, stays open
        link.subscribed = True
        done = [item for item in self._items if item not in set(refused)]
        detail = f"{len(done)} of {len(self._items)} items registered for {','.join(self._types)}"
        log.info("session %s: %s", self._id, detail)
        self._emit("subscribed", detail, symbols=done if refused else ())
        self._close_gap("resubscribed")

    async def _register_batch(self, link: _Link, batch: Sequence[str]) -> bool:
        """Send one REG until it is acknowledged; False when Kiwoom refuses it for good."""
        frame = protocol.build_reg(batch, self._types, grp_no="1", refresh="1")
        for attempt in itertools.count(1):
            reply = await self._request(link, frame)
            if reply.return_code == 0:
                return True
            self.stats.regs_refused += 1
            if reply.return_code != REG_RATE_LIMITED or attempt > self._max_reg_retries:
                self._reg_rejected(batch, reply, attempt)
                return False
            log.warning(
                "session %s: REG refused with %s (more than ~5 REG/s, §3.4); resending in %g s",
                self._id,
                REG_RATE_LIMITED,
                self._reg_retry_s,
            )
            await self._sleep(max(self._reg_retry_s, self._reg_interval_s))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request(self, link: _Link, frame: str) -> Message:
        """Send a REG and wait for the next REG/REMOVE acknowledgement (§3.4: by order)."""
        ack: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        link.pending.append(ack)
        await self._send(link, frame)
        self.stats.regs_sent += 1
        try:
            async with asyncio.timeout(self._login_timeout_s):
                return await ack
        except TimeoutError as exc:
            raise TransportError(f"no REG acknowledgement within {self._login_timeout_s:g} s") from exc

    def _deliver_ack(self, link: _Link, msg: Message) -> None:
        if not link.pending:
            log.warning(
                "session %s: %s reply with nothing outstanding: %s %s",
                self._id,
                msg.kind.value,
                msg.return_code,
                msg.return_msg,
            )
            return
        ack = link.pending.popleft()
        if not ack.done():
            ack.set_result(msg)

    def _reg_rejected(self, batch: Sequence[str], reply: Message, attempts: int) -> None:
        detail = (
            f"REG of {len(batch)} items ({batch[0]}..{batch[-1]}) refused after {attempts} "
            f"attempt(s): return_code {reply.return_code}: {reply.return_msg}"
        )
        log.error("session %s: %s; these items are NOT recorded", self._id, detail)
        self._emit("reg_rejected", detail, symbols=batch)
