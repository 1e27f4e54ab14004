"""One WebSocket session of the local venue: LOGIN, PING, REG/REMOVE and REAL (protocol notes §3).

Each :class:`Connection` runs three tasks: a reader (LOGIN, then client frames), a writer
that sends queued frames in order (so a SYSTEM frame always goes out before the close it
announces, and every sent frame is recorded once, in wire order) and, after LOGIN, a
pinger. Faults injected by tests go through the same queue, except :meth:`abort`.

Design choices where the protocol is unknown (§9), all documented here:

- Anything other than LOGIN as the first frame gets R10004 and a close (§3.1.5 unknown).
- Close code 1000 for every close the server starts except the duplicate-login kick,
  which is 1000 "Bye" as measured (§3.3).
- ``refresh: "0"`` replaces the registrations of the *whole connection*, and REMOVE
  removes pairs from the whole connection; ``grp_no`` is accepted and not used (§9.10).
- ``005930`` and ``005930_NX`` count as two codes towards ``max_codes`` (§9.13).
- REG and REMOVE share the per-second budget; refused requests do not use it up.
- In mock mode ``_NX``/``_AL`` items are acknowledged and silently ignored (§1, §9.30).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from aiohttp import WSMsgType, web

from recorder.kiwoom.limits import REG_RATE_LIMITED, REG_TOO_MANY_CODES
from recorder.kiwoom.time import NS
from recorder.sim.market import real_frames

if TYPE_CHECKING:
    from recorder.sim.venue import VenueConfig, VenueStats

log = logging.getLogger(__name__)

PING = orjson.dumps({"trnm": "PING"}).decode()
LOGIN_OK = orjson.dumps({"trnm": "LOGIN", "return_code": 0, "return_msg": "", "sor_yn": "Y"}).decode()
LOGIN_FAILED_MSG = (
    "토큰 인증에 실패했습니다. 접속을 종료합니다 [CODE=8005, MESSAGE=Token이 유효하지 않습니다]"
)
LOGIN_FAILED = orjson.dumps({"trnm": "LOGIN", "return_code": 805004, "return_msg": LOGIN_FAILED_MSG}).decode()
R10001 = "동일한 App key로 접속이 되었습니다. 기존 세션은 종료가 됩니다"
R10002 = "사용자 프로그램으로부터 Heartbeat(연결유지) 메시지가 오지않아서 접속을 종료합니다"
R10004 = "접속허용요청(토큰)이 들어오지 않았습니다"
TOO_FAST = (REG_RATE_LIMITED, "허용 요청 건수 초과")
TOO_MANY_CODES = (REG_TOO_MANY_CODES, "등록 가능한 종목 수를 초과하였습니다")  # [GUESS] text unknown, §9.12
BAD_REG = (1, "요청 형식이 올바르지 않습니다")  # [GUESS] the spec's generic error 1

Refusal = tuple[int, str]  # a REG/REMOVE reply's (return_code, return_msg)


def system_frame(code: str, message: str) -> str:
    """A SYSTEM frame in the shape NET/CLI report (§3.3)."""
    return orjson.dumps({"trnm": "SYSTEM", "code": code, "message": message}).decode()


class Hub(Protocol):
    """What a connection needs from the venue that owns it."""

    config: VenueConfig
    clock: Callable[[], int]

    @property
    def stats(self) -> VenueStats: ...

    def appkey_of(self, token: Any) -> str | None: ...
    def on_login(self, conn: Connection) -> None: ...
    def take_reg_refusal(self) -> tuple[int, str] | None: ...
    async def admit(
        self, conn: Connection, trnm: str, proposed: frozenset[tuple[str, str]]
    ) -> Refusal | None:
        """Last say on a REG/REMOVE that passed the connection's own checks (None accepts it)."""
        ...

    def record(self, conn: Connection, index: int, data: str | bytes, entries: Sequence[Any]) -> None: ...
    def on_subscribed(self, conn: Connection) -> None: ...
    async def notify(self) -> None: ...


_CLOSE = object()


class Connection:
    """The server side of one WebSocket session.

    Attributes:
        id: venue-wide connection number, from 1.
        logged_in: LOGIN succeeded and the session has not been closed since.
        subscriptions: the ``(item, type)`` pairs REAL entries are sent for.
        close_code: the close code the server sent, if it started the close.
        echoes: PING echoes received (solicited ones), for :meth:`Venue.ping_barrier`.
    """

    def __init__(self, hub: Hub, ws: web.WebSocketResponse, request: web.Request, conn_id: int) -> None:
        self.id = conn_id
        self.appkey: str | None = None  # never logged (invariant 5)
        self.logged_in = False
        self.closing = False
        self.close_code: int | None = None
        self.subscriptions: frozenset[tuple[str, str]] = frozenset()
        self._hub = hub
        self._cfg = hub.config
        self._ws = ws
        self._transport = request.transport
        # (frame, entries) or (_CLOSE, (code, reason)), written in order by _write_loop.
        self._out: asyncio.Queue[tuple[Any, Any]] = asyncio.Queue()
        self._close_queued = False
        self._aborted = False
        self._reader: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        # PINGs sent and not echoed yet: a count, because a barrier PING
        # (Venue.ping_barrier) may overlap the periodic one; echoes come back in order.
        self._ping_outstanding = 0
        self.echoes = 0
        self._misses = 0
        self._reg_times: deque[int] = deque()

    def __repr__(self) -> str:
        return f"<Connection {self.id} logged_in={self.logged_in} items={len(self.subscriptions)}>"

    # ------------------------------------------------------------------ outgoing

    @property
    def queued(self) -> int:
        """Frames waiting to be written (what ``send_queue_max`` bounds); feeds use it for backpressure."""
        return self._out.qsize()

    @property
    def pings_pending(self) -> int:
        """PINGs sent (or queued) and not echoed yet."""
        return self._ping_outstanding

    def send(self, data: str | bytes, entries: Sequence[Any] = ()) -> None:
        """Queue one frame; dropped silently once the connection is closing."""
        if self.closing:
            return
        if self._out.qsize() >= self._cfg.send_queue_max:
            self.cut_slow()
            return
        self._out.put_nowait((data, entries))

    @property
    def transport(self) -> Any:
        """The TCP transport (None once gone): a relay writes batches of frames to it directly."""
        return self._transport

    def cut_slow(self) -> None:
        """The client fell ``send_queue_max`` frames behind: abort it, or (``slow_client_system``)
        queue that SYSTEM frame and a close behind what it has not read yet, aborting it if the
        close has not gone through within ``close_timeout``."""
        if self.closing:
            return
        self._hub.stats.slow_cuts += 1
        system = self._cfg.slow_client_system
        log.warning(
            "connection %d: client too slow (%d frames queued); %s",
            self.id,
            self._out.qsize(),
            "aborting" if system is None else f"cutting it with SYSTEM {system[0]}",
        )
        if system is None:
            self.abort()
            return
        self._out.put_nowait((system_frame(*system), ()))
        self.close()
        asyncio.get_running_loop().call_later(self._cfg.close_timeout, self.abort)

    def send_system(self, code: str, message: str) -> None:
        self.send(system_frame(code, message))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Queue a clean close after the frames already queued; nothing is sent after it."""
        if self.closing:
            return
        self._out.put_nowait((_CLOSE, (code, reason)))
        self._close_queued = True
        self.closing = True

    def kick(self) -> None:
        """§3.3: R10001 to the older session, then close 1000 "Bye"."""
        self.send_system("R10001", R10001)
        self.close(1000, "Bye")

    def abort(self) -> None:
        """Drop the TCP connection at once: no close frame (an abrupt network failure)."""
        self.closing = True
        self._aborted = True
        if self._transport is not None:
            self._transport.abort()

    def offer(self, entries: Sequence[dict[str, Any]], rng: random.Random) -> None:
        """Send the subscribed ones among ``entries`` as REAL frames of 1..batch_max entries.

        §4.1: one frame may mix types and symbols; ``trnm`` comes last as seen live.
        """
        if not self.logged_in or self.closing or not self.subscriptions:
            return
        subs = self.subscriptions
        mine = [e for e in entries if (e["item"], e["type"]) in subs]
        for frame, batch in real_frames(mine, rng, self._cfg.batch_max):
            self.send(frame.decode(), batch)

    async def _write_loop(self) -> None:
        index = 0
        while True:
            data, extra = await self._out.get()
            if data is _CLOSE:
                await self._close_now(*extra)
                return
            try:
                if isinstance(data, bytes):
                    await self._ws.send_bytes(data)
                else:
                    await self._ws.send_str(data)
            except ConnectionError:
                log.debug("connection %d: send failed, peer gone", self.id)
                return
            self._hub.record(self, index, data, extra)
            index += 1
            await self._hub.notify()

    async def _close_now(self, code: int, reason: str) -> None:
        """Send the close frame and wait for the client's (RFC 6455 closing handshake).

        The reader is stopped first: aiohttp drops the TCP connection without waiting for
        the peer's close frame when another task is blocked in ``receive()``.
        """
        self.close_code = code
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            await asyncio.wait({self._reader})
        try:
            await self._ws.close(code=code, message=reason.encode())
        except (TimeoutError, ConnectionError) as exc:  # the peer is gone or stuck: not our bug
            log.debug("connection %d: close failed: %r", self.id, exc)

    # ------------------------------------------------------------------ session

    async def run(self) -> None:
        """Serve the session until either side closes it; returns when the socket is done."""
        writer = asyncio.create_task(self._write_loop(), name=f"venue-writer-{self.id}")
        self._reader = asyncio.create_task(self._session(), name=f"venue-reader-{self.id}")
        try:
            await asyncio.wait({self._reader})  # ends on LOGIN failure, a close or an abort
            if self._close_queued and not self._aborted:  # the writer sends SYSTEM, then closes
                await asyncio.wait_for(asyncio.shield(writer), self._cfg.close_timeout)
        except TimeoutError:
            log.warning("connection %d: close did not finish; aborting", self.id)
            self.abort()
        finally:
            self.logged_in = False
            self.closing = True
            tasks = [t for t in (self._reader, self._pinger, writer) if t is not None]
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        # A bug in the session must not vanish with its task: hand it to the venue.
        for result in results:
            if isinstance(result, Exception):
                raise result

    async def _session(self) -> None:
        if await self._login():
            self._pinger = asyncio.create_task(self._ping_loop(), name=f"venue-ping-{self.id}")
            await self._read_loop()

    async def _login(self) -> bool:
        """§3.1: LOGIN must come first, within ``login_timeout``; True when it succeeded."""
        try:
            msg = await self._ws.receive(timeout=self._cfg.login_timeout)
        except TimeoutError:
            log.info("connection %d: no LOGIN within %.1fs", self.id, self._cfg.login_timeout)
            self._hub.stats.login_timeouts += 1
            self.send_system("R10004", R10004)
            self.close()
            return False
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return False
        body = _parse(msg.data)
        appkey = None
        if body is not None and body.get("trnm") == "LOGIN":
            appkey = self._hub.appkey_of(body.get("token"))
        if appkey is None:
            log.info("connection %d: LOGIN refused", self.id)
            self._hub.stats.login_failures += 1
            # §3.1.3: production may send R10004 before the 805004 reply; the mock does not.
            if self._cfg.send_r10004_on_bad_login:
                self.send_system("R10004", R10004)
            self.send(LOGIN_FAILED)
            self.close()
            await self._hub.notify()
            return False
        self.appkey = appkey
        self._hub.on_login(self)  # §3.3: kicks an older session on the same app key
        if self._cfg.ping_before_login:  # §3.1.4: a PING may precede the LOGIN reply
            self._send_ping()
        self.send(LOGIN_OK)
        self.logged_in = True
        self._hub.stats.logins += 1
        log.info("connection %d: logged in", self.id)
        await self._hub.notify()
        return True

    def send_ping(self) -> None:
        """Queue a PING now (besides the periodic ones); its echo increments :attr:`echoes`."""
        self._send_ping()

    def _send_ping(self) -> None:
        self._ping_outstanding += 1
        self._hub.stats.pings_sent += 1
        self.send(PING)

    async def _ping_loop(self) -> None:
        """§3.2: a PING every interval; ``heartbeat_miss_limit`` un-echoed in a row → R10002."""
        while not self.closing:
            await asyncio.sleep(self._cfg.ping_interval)
            if self._ping_outstanding:
                self._misses += 1
                self._hub.stats.pings_missed += 1
                if self._misses >= self._cfg.heartbeat_miss_limit:
                    log.info("connection %d: %d PINGs not echoed; closing", self.id, self._misses)
                    self._hub.stats.heartbeat_closes += 1
                    self.send_system("R10002", R10002)
                    self.close()
                    await self._hub.notify()
                    return
            else:
                self._misses = 0
            self._send_ping()

    async def _read_loop(self) -> None:
        async for msg in self._ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            if self.closing:
                continue
            await self._on_frame(msg.data)

    async def _on_frame(self, data: str | bytes) -> None:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        body = _parse(text)
        trnm = body.get("trnm") if body is not None else ("PING" if text == "PING" else None)
        if trnm == "PING":
            self._on_ping_echo(text)
        elif trnm == "SYSTEM":
            # §3.2 (V71): echoing a SYSTEM frame gets the session closed at once.
            log.info("connection %d: client echoed a SYSTEM frame; closing", self.id)
            self._hub.stats.system_echo_closes += 1
            self.close()
        elif trnm in ("REG", "REMOVE") and body is not None:
            code, msg = await self._on_reg(trnm, body)
            self.send(orjson.dumps({"trnm": trnm, "return_code": code, "return_msg": msg}).decode())
            if code == 0 and trnm == "REG":  # after the reply is queued: a feed starting now sends behind it
                self._hub.on_subscribed(self)
        else:
            log.debug("connection %d: ignoring a %r frame", self.id, trnm)
        await self._hub.notify()

    def _on_ping_echo(self, text: str) -> None:
        """§3.2: the echo must be the PING byte for byte; near misses are counted apart."""
        if not self._ping_outstanding:
            self._hub.stats.pings_unsolicited += 1
            return
        self._ping_outstanding -= 1
        self.echoes += 1
        self._hub.stats.pings_echoed += 1
        if text != PING:
            self._hub.stats.pings_echoed_not_verbatim += 1

    async def _on_reg(self, trnm: str, body: dict[str, Any]) -> tuple[int, str]:
        """Apply a REG or REMOVE (§3.4); returns the reply's (return_code, return_msg)."""
        stats = self._hub.stats
        refusal = self._hub.take_reg_refusal() if trnm == "REG" else None
        if refusal is None:
            refusal = self._check_rate()
        pairs = _pairs(body.get("data"))
        if refusal is None and pairs is None:
            refusal = BAD_REG
        if refusal is None and pairs is not None:
            proposed, refusal = self._propose(trnm, body.get("refresh"), pairs)
            if refusal is None:
                refusal = await self._hub.admit(self, trnm, proposed)
            if refusal is None:
                self.subscriptions = proposed
        if refusal is not None:
            stats.refused_regs += 1
            log.info("connection %d: %s refused with %d", self.id, trnm, refusal[0])
            return refusal
        self._reg_times.append(self._hub.clock())
        if trnm == "REG":
            stats.regs += 1
        else:
            stats.removes += 1
        return 0, ""

    def _check_rate(self) -> tuple[int, str] | None:
        """§3.4: about 5 REG per second per connection, else 105110."""
        now = self._hub.clock()
        while self._reg_times and self._reg_times[0] <= now - NS:
            self._reg_times.popleft()
        return TOO_FAST if len(self._reg_times) >= self._cfg.max_reg_per_sec else None

    def _propose(
        self, trnm: str, refresh: Any, pairs: list[tuple[str, str]]
    ) -> tuple[frozenset[tuple[str, str]], Refusal | None]:
        """The subscriptions after a REG or REMOVE, or why it is refused (not applied yet)."""
        if trnm == "REMOVE":
            return self.subscriptions.difference(pairs), None
        if self._cfg.mock_mode:  # §1: the mock serves KRX only
            pairs = [(item, t) for item, t in pairs if "_" not in item]
        # §3.4: refresh "0" drops what was registered before (scope: the whole connection).
        base: frozenset[tuple[str, str]] = frozenset() if refresh == "0" else self.subscriptions
        new = base.union(pairs)
        codes = {item for item, _ in new if item}  # account-wide types use item "" (§3.4)
        if len(codes) > self._cfg.max_codes:
            return new, TOO_MANY_CODES
        return new, None


def _parse(data: str | bytes) -> dict[str, Any] | None:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _pairs(data: Any) -> list[tuple[str, str]] | None:
    """§3.4: every item of an entry with every type of it (a cross product); None if malformed."""
    if not isinstance(data, list):
        return None
    out: list[tuple[str, str]] = []
    for entry in data:
        if not isinstance(entry, dict):
            return None
        items, types = _strings(entry.get("item")), _strings(entry.get("type"))
        if items is None or types is None:
            return None
        out.extend((item, t) for item in items for t in types)
    return out
