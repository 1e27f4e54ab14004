"""A Kiwoom-compatible venue on loopback: REST and WebSocket on one aiohttp port.

Made for tests, demos (``recorder sim``) and replay (``recorder replay --serve``); it is
never part of a production capture. It follows protocol notes §8.2 ("Suggested
fake-server behaviour"): tokens (§2), LOGIN/PING/REG/REMOVE/SYSTEM (§3), REAL frames
(§4), ka10099 (§5.2) and the ka10079 tick chart (§5.3). REST lives in
:mod:`recorder.sim.rest`, one WebSocket session in :mod:`recorder.sim.ws`.

Market data comes from a *feed*: any object with ``step(now_ns) -> list[entry]`` and
``symbols_info() -> list[dict]`` (:class:`Feed`). The default is a
:class:`~recorder.sim.market.SyntheticMarket`; a recorded-data feed plugs in the same way.
Every ``tick_interval`` the venue steps the feed (whether or not anyone is connected, so
cumulative fields stay consistent across reconnects) and offers the entries to every
logged-in connection, which sends those it subscribed to.

A feed may also implement optional hooks (:class:`FeedHooks`). The recorded feed of
:mod:`recorder.replay.feed` implements two: ``attach(venue)``, called once at construction,
lets it read :meth:`Venue.backlog` for backpressure, and ``on_subscribed(subscriptions,
now_ns)``, called after every accepted REG, lets it start its clock once a client has
registered. The synthetic market implements the third, ``tick_tape(item)``: every trade it
made for an item, which ka10079 serves (a feed without it answers ka10079 with an error).

Ground truth for tests: with ``record_sent`` on, every frame written to a socket is kept
in :attr:`Venue.frames` and every REAL entry in :attr:`Venue.sent`, in wire order. Tests
wait for conditions with :meth:`Venue.wait_for` (an :class:`asyncio.Condition` notified
on every state change), never with sleeps.

Example::

    async with Venue(VenueConfig(symbols=["005930"])) as venue:
        ...  # point a client at venue.rest_url / venue.ws_url
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from recorder.errors import ConfigError, RecorderError
from recorder.kiwoom.limits import MAX_CODES_PER_KEY, REG_PER_SECOND, REST_PER_SECOND, WS_PATH
from recorder.sim.market import SyntheticMarket
from recorder.sim.rest import RestApi, TokenStore
from recorder.sim.tape import TradeTape
from recorder.sim.ws import Connection

log = logging.getLogger(__name__)


class Feed(Protocol):
    """A source of REAL entries: the synthetic market or recorded data."""

    def step(self, now_ns: int) -> list[dict[str, Any]]:
        """Entries (``{"values", "type", "name", "item"}``, §4.1) produced up to ``now_ns``."""
        ...

    def symbols_info(self) -> list[dict[str, Any]]:
        """ka10099 rows (§5.2) for the symbols the feed knows."""
        ...


class FeedHooks(Protocol):
    """Optional feed methods the venue calls when present (looked up with ``getattr``)."""

    def attach(self, venue: Venue) -> None:
        """Called once by :class:`Venue` ``__init__`` with the venue that steps this feed."""
        ...

    def on_subscribed(self, subscriptions: frozenset[tuple[str, str]], now_ns: int) -> None:
        """Called after a REG is accepted, with that connection's ``(item, type)`` pairs."""
        ...

    def tick_tape(self, item: str) -> TradeTape | None:
        """Every trade made for ``item`` (None: an item the feed does not trade), for ka10079."""
        ...


@dataclass
class VenueConfig:
    """Everything about the venue's behaviour; every §9 unknown is a field here.

    Attributes:
        host, port: where to listen; port 0 picks a free port.
        appkey, secretkey: the only credentials au10001 accepts; None accepts any.
        keys: several (appkey, secretkey) pairs au10001 accepts (instead of ``appkey`` and
            ``secretkey``); each key has its own tokens, its one session and its 200 codes.
        ping_interval: seconds between PINGs (§3.2: unknown live; 10-30 s suggested).
        ping_before_login: send one PING before the LOGIN reply (§3.1.4).
        heartbeat_miss_limit: consecutive un-echoed PINGs before R10002 and close (§3.2).
        login_timeout: seconds to wait for LOGIN before R10004 and close (§3.1.3).
        send_r10004_on_bad_login: production sends R10004 before the 805004 reply (§3.1).
        max_codes: distinct codes per connection before 105115 (§3.4).
        max_reg_per_sec: REG/REMOVE per second per connection before 105110 (§3.4).
        mock_mode: emulate mockapi: KRX only (``_NX``/``_AL`` ignored), REST 1 req/s (§1).
        token_lifetime_s: token lifetime (§2.1: about 24 h).
        revoke_previous_token: a new token invalidates the app key's older ones (§2.1).
        rest_rate_limit: REST calls per second per (token or app key, api-id) → 429 (§5.1).
        ka10099_page_size: None returns one page; an int forces cont-yn/next-key paging.
        chart_page_rows: most rows in one ka10079 page (§5.3: 900 measured); tests use
            small pages to exercise cont-yn/next-key.
        batch_max: most entries in one REAL frame; each frame holds 1..batch_max (§4.1).
        tick_interval: seconds between feed steps.
        symbols: codes for the default synthetic feed; empty → ``n_symbols`` generated ones.
        n_symbols: size of the generated universe when ``symbols`` is empty.
        venues: venues of the default feed ("KRX", "NXT"); mock mode forces KRX only.
        seed: seeds the default feed and the venue's batching.
        trade_rate, book_rate: the default feed's trades and 0D snapshots per second per item.
        duplicate_login_kick: a second LOGIN on an app key kicks the older session (§3.3).
        record_sent: keep every sent frame and entry in memory (tests); turn off for long runs.
        send_queue_max: frames queued for one slow client before it is dropped.
        slow_client_system: the SYSTEM frame's (code, message) for a client dropped that way,
            sent after what it had not read and followed by a close; None aborts its TCP
            connection at once.
        close_timeout: seconds a clean close may take before the socket is aborted.
        clock: epoch-ns clock for token expiry, rate windows and the feed's time.
    """

    host: str = "127.0.0.1"
    port: int = 0
    appkey: str | None = None
    secretkey: str | None = None
    keys: tuple[tuple[str, str], ...] = ()
    ping_interval: float = 10.0
    ping_before_login: bool = False
    heartbeat_miss_limit: int = 5
    login_timeout: float = 10.0
    send_r10004_on_bad_login: bool = True
    max_codes: int = MAX_CODES_PER_KEY
    max_reg_per_sec: int = int(REG_PER_SECOND)
    mock_mode: bool = False
    token_lifetime_s: float = 86400.0
    revoke_previous_token: bool = False
    rest_rate_limit: int = int(REST_PER_SECOND)
    ka10099_page_size: int | None = None
    chart_page_rows: int = 900
    batch_max: int = 4
    tick_interval: float = 0.05
    symbols: Sequence[str] = ()
    n_symbols: int = 20
    venues: Sequence[str] = ("KRX", "NXT")
    seed: int = 0
    trade_rate: float = 2.0
    book_rate: float = 3.6
    duplicate_login_kick: bool = True
    record_sent: bool = True
    send_queue_max: int = 10_000
    slow_client_system: tuple[str, str] | None = None
    close_timeout: float = 5.0
    clock: Callable[[], int] = time.time_ns

    def __post_init__(self) -> None:
        if self.chart_page_rows < 1:
            raise ConfigError(f"chart_page_rows must be at least 1, got {self.chart_page_rows}")

    def __repr__(self) -> str:  # never show credentials: secrets stay out of logs and messages
        return f"VenueConfig(host={self.host!r}, port={self.port}, symbols={len(self.symbols)})"


@dataclass
class VenueStats:
    """Counters since start; tests read them, the CLI may print them.

    ``rest_requests`` and ``rest_throttled`` count every REST route, ``chart_*`` ka10079
    alone (requests received, pages answered, HTTP 429s); ``feed_steps`` counts the times
    the feed was stepped; ``slow_cuts`` the clients dropped for ``send_queue_max``.
    """

    connections: int = 0
    logins: int = 0
    login_failures: int = 0
    login_timeouts: int = 0
    kicks: int = 0
    pings_sent: int = 0
    pings_echoed: int = 0
    pings_echoed_not_verbatim: int = 0
    pings_unsolicited: int = 0
    pings_missed: int = 0
    heartbeat_closes: int = 0
    system_echo_closes: int = 0
    regs: int = 0
    removes: int = 0
    refused_regs: int = 0
    frames_sent: int = 0
    entries_sent: int = 0
    closed: int = 0
    rest_requests: int = 0
    rest_throttled: int = 0
    tokens_issued: int = 0
    chart_requests: int = 0
    chart_pages: int = 0
    chart_throttled: int = 0
    feed_steps: int = 0
    slow_cuts: int = 0


@dataclass(frozen=True, slots=True)
class SentFrame:
    """One frame as written to a socket. ``index`` counts every frame of that connection."""

    conn_id: int
    index: int
    ts_ns: int
    data: str | bytes
    n_entries: int


@dataclass(frozen=True, slots=True)
class SentEntry:
    """One REAL entry as sent: frame ``frame_index`` of ``conn_id``, at ``position`` in it."""

    conn_id: int
    frame_index: int
    position: int
    entry: dict[str, Any]


@dataclass
class _Refusal:
    code: int
    msg: str
    remaining: int


class Venue:
    """The venue: start it, point clients at :attr:`rest_url`/:attr:`ws_url`, stop it.

    Args:
        config: behaviour; see :class:`VenueConfig`.
        feed: the market data source; default a SyntheticMarket over ``config.symbols``.

    Attributes:
        port, rest_url, ws_url: set by :meth:`start`.
        stats: counters (:class:`VenueStats`).
        frames, sent: every frame / REAL entry sent (when ``config.record_sent``).
        connections: the open sessions by id.
    """

    def __init__(self, config: VenueConfig, *, feed: Feed | None = None) -> None:
        self.config = config
        self.clock = config.clock
        if feed is None:
            symbols = list(config.symbols) or SyntheticMarket.universe(config.n_symbols, config.seed)
            venues = ("KRX",) if config.mock_mode else tuple(config.venues)
            feed = SyntheticMarket(
                symbols,
                seed=config.seed,
                venues=venues,
                trade_rate=config.trade_rate,
                book_rate=config.book_rate,
            )
        self.feed: Feed = feed
        attach = getattr(feed, "attach", None)  # FeedHooks, optional
        if attach is not None:
            attach(self)
        self.stats = VenueStats()
        self.tokens = TokenStore(self.clock, config.token_lifetime_s, config.revoke_previous_token)
        self.frames: list[SentFrame] = []
        self.sent: list[SentEntry] = []
        self.connections: dict[int, Connection] = {}
        self.port = 0
        self.rest_url = ""
        self.ws_url = ""
        self._by_appkey: dict[str, Connection] = {}
        self._next_id = 1
        self._rng = random.Random(f"venue:{config.seed}")
        self._refusal: _Refusal | None = None
        self._failures: list[BaseException] = []  # feed or session errors, raised by stop()
        self._cond = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind, start serving and start stepping the feed; sets the URLs.

        Raises:
            ConfigError: the address cannot be bound (port in use, no such host or
                address, port out of range); nothing is left running.
        """
        app = web.Application()
        app.add_routes(RestApi(self.config, self.tokens, self.feed, self.stats, self.clock).routes())
        app.add_routes([web.get(WS_PATH, self._ws_handler)])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        try:
            await site.start()
        except (OSError, OverflowError) as exc:  # OverflowError: a port outside 0-65535
            await self._runner.cleanup()
            self._runner = None
            where = f"{self.config.host}:{self.config.port}"
            raise ConfigError(f"cannot listen on {where}: {_bind_reason(exc)}") from exc
        self.port = site.port
        self.rest_url = f"http://{self.config.host}:{self.port}"
        self.ws_url = f"ws://{self.config.host}:{self.port}{WS_PATH}"
        self._ticker = asyncio.create_task(self._tick_loop(), name="venue-ticker")
        self._ticker.add_done_callback(_log_failure)

    async def stop(self) -> None:
        """Close every session (1001), stop the feed and release the port.

        Raises:
            Exception: the first error of the feed or of a session while the venue ran
                (each was also logged when it happened).
        """
        if self._ticker is not None:
            self._ticker.cancel()
            (result,) = await asyncio.gather(self._ticker, return_exceptions=True)
            if isinstance(result, Exception):
                self._failures.insert(0, result)
            self._ticker = None
        conns = list(self.connections.values())
        for conn in conns:
            conn.close(1001, "")
        await self._wait_gone(conns)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._failures:
            raise self._failures[0]

    async def serve_forever(self) -> None:
        """Wait until cancelled; raises at once if the feed fails (nothing is swallowed)."""
        if self._ticker is None:
            raise RuntimeError("Venue.serve_forever() before start()")
        await asyncio.shield(self._ticker)

    async def __aenter__(self) -> Venue:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            await self.stop()
        except Exception:
            if exc_type is None:  # else the error already propagating wins (this one was logged)
                raise

    async def _tick_loop(self) -> None:
        while True:
            entries = self.feed.step(self.clock())
            self.stats.feed_steps += 1
            if entries:
                for conn in list(self.connections.values()):
                    conn.offer(entries, self._rng)
            await self.notify()  # tests wait for what the market made, sent or not
            await asyncio.sleep(self.config.tick_interval)

    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        # The official client turns RFC 6455 pings off (§1); answering them is harmless.
        ws = web.WebSocketResponse(autoping=True, timeout=self.config.close_timeout)
        await ws.prepare(request)
        conn = Connection(self, ws, request, self._next_id)
        self._next_id += 1
        self.connections[conn.id] = conn
        self.stats.connections += 1
        log.info("connection %d: opened", conn.id)
        await self.notify()
        try:
            await conn.run()
        except Exception as exc:
            log.exception("connection %d: session failed", conn.id)
            self._failures.append(exc)
        finally:
            del self.connections[conn.id]
            if conn.appkey is not None and self._by_appkey.get(conn.appkey) is conn:
                del self._by_appkey[conn.appkey]
            self.stats.closed += 1
            log.info("connection %d: closed (code %s)", conn.id, conn.close_code)
            await self.notify()
        return ws

    # ------------------------------------------------------------------ hub (used by Connection)

    def appkey_of(self, token: Any) -> str | None:
        return self.tokens.appkey_of(token)

    def on_login(self, conn: Connection) -> None:
        """§3.3: one session per app key; the older one gets R10001 and close 1000 "Bye"."""
        assert conn.appkey is not None
        old = self._by_appkey.get(conn.appkey)
        if old is not None and old is not conn and self.config.duplicate_login_kick:
            log.info("connection %d: same app key logged in on %d; kicking", old.id, conn.id)
            self.stats.kicks += 1
            old.kick()
        self._by_appkey[conn.appkey] = conn

    def take_reg_refusal(self) -> tuple[int, str] | None:
        ref = self._refusal
        if ref is None:
            return None
        ref.remaining -= 1
        if ref.remaining <= 0:
            self._refusal = None
        return ref.code, ref.msg

    async def admit(
        self, conn: Connection, trnm: str, proposed: frozenset[tuple[str, str]]
    ) -> tuple[int, str] | None:
        """Every REG/REMOVE that passed the connection's own checks is accepted."""
        return None

    def record(self, conn: Connection, index: int, data: str | bytes, entries: Sequence[Any]) -> None:
        self.stats.frames_sent += 1
        self.stats.entries_sent += len(entries)
        if not self.config.record_sent:
            return
        self.frames.append(SentFrame(conn.id, index, self.clock(), data, len(entries)))
        self.sent.extend(SentEntry(conn.id, index, pos, e) for pos, e in enumerate(entries))

    def on_subscribed(self, conn: Connection) -> None:
        """A REG of ``conn`` was accepted: tell the feed (FeedHooks.on_subscribed), if it asks."""
        hook = getattr(self.feed, "on_subscribed", None)
        if hook is not None:
            hook(conn.subscriptions, self.clock())

    def backlog(self) -> int:
        """The most frames queued on any logged-in connection (``send_queue_max`` bounds each).

        A feed that can produce faster than clients read (a replay at full speed) keeps
        this well below ``send_queue_max``; past it the venue drops the slow client.
        """
        return max((c.queued for c in self.connections.values() if c.logged_in), default=0)

    async def notify(self) -> None:
        """Wake every :meth:`wait_for`; called after each change of state."""
        async with self._cond:
            self._cond.notify_all()

    # ------------------------------------------------------------------ waiting (tests)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Return once ``predicate()`` is true; raise TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout), self._cond:
            await self._cond.wait_for(predicate)

    async def wait_logins(self, n: int, timeout: float = 10.0) -> None:
        """Until ``n`` LOGINs have succeeded since start."""
        await self.wait_for(lambda: self.stats.logins >= n, timeout)

    async def wait_sent(self, n: int, conn_id: int | None = None, timeout: float = 10.0) -> None:
        """Until ``n`` REAL entries have been sent (on ``conn_id``, or on any connection)."""
        if conn_id is None:
            await self.wait_for(lambda: self.stats.entries_sent >= n, timeout)
        else:
            await self.wait_for(lambda: len(self.sent_entries(conn_id)) >= n, timeout)

    async def wait_closed(self, conn_id: int, timeout: float = 10.0) -> None:
        """Until connection ``conn_id`` has been torn down on the server side."""
        await self.wait_for(lambda: conn_id not in self.connections, timeout)

    async def ping_barrier(self, timeout: float = 10.0) -> None:
        """PING every logged-in connection and return once each has echoed it.

        Clients read frames in order, so when this returns every client has read every
        frame queued before the call (a test's proof that a recorder received everything).
        Connections that close meanwhile are not waited for.
        """
        targets: dict[int, tuple[Connection, int]] = {}
        for conn in self.connections.values():
            if conn.logged_in and not conn.closing:
                targets[conn.id] = (conn, conn.echoes + conn.pings_pending + 1)
                conn.send_ping()
        await self.wait_for(
            lambda: all(
                cid not in self.connections or conn.closing or conn.echoes >= want
                for cid, (conn, want) in targets.items()
            ),
            timeout,
        )

    def sent_entries(self, conn_id: int) -> list[dict[str, Any]]:
        """The REAL entries sent on ``conn_id``, in wire order (needs ``record_sent``)."""
        return [s.entry for s in self.sent if s.conn_id == conn_id]

    # ------------------------------------------------------------------ faults (tests)

    def _targets(self, conn_id: int | None) -> list[Connection]:
        if conn_id is None:
            return list(self.connections.values())
        conn = self.connections.get(conn_id)
        return [conn] if conn is not None else []

    async def _wait_gone(self, conns: Iterable[Connection]) -> None:
        ids = [c.id for c in conns]
        try:
            await self.wait_for(
                lambda: not any(i in self.connections for i in ids), self.config.close_timeout + 1.0
            )
        except TimeoutError:
            log.warning("connections %s did not close; aborting them", ids)
            for conn in self._targets(None):
                if conn.id in ids:
                    conn.abort()

    async def close_all(self, code: int = 1000, reason: str = "", conn_id: int | None = None) -> None:
        """Clean close (close frame with ``code``/``reason``); returns once the sessions are gone."""
        conns = self._targets(conn_id)
        for conn in conns:
            conn.close(code, reason)
        await self._wait_gone(conns)

    async def drop_all(self, conn_id: int | None = None) -> None:
        """Abort the TCP connections: no close frame, as when a network path dies."""
        conns = self._targets(conn_id)
        for conn in conns:
            conn.abort()
        await self._wait_gone(conns)

    async def kick_all(self, conn_id: int | None = None) -> None:
        """R10001 then close 1000 "Bye", as when another session logs in with the key (§3.3)."""
        conns = self._targets(conn_id)
        for conn in conns:
            self.stats.kicks += 1
            conn.kick()
        await self._wait_gone(conns)

    # Added for the soak runs (soak/scenarios.py, drops): the server-side heartbeat-miss
    # close on demand, without waiting for ``heartbeat_miss_limit`` un-echoed PINGs.
    async def heartbeat_close_all(self, conn_id: int | None = None) -> None:
        """SYSTEM R10002 then close 1000, as when the server saw no PING echoes (§3.2).

        The same frames as the close in ``Connection._ping_loop``; not counted in
        ``stats.heartbeat_closes``, which counts only real misses.
        """
        from recorder.sim.ws import R10002

        conns = self._targets(conn_id)
        for conn in conns:
            conn.send_system("R10002", R10002)
            conn.close()
        await self.notify()
        await self._wait_gone(conns)

    async def send_raw_all(self, data: str | bytes, conn_id: int | None = None) -> None:
        """Queue an arbitrary frame (text, or binary for bytes) after what is already queued."""
        for conn in self._targets(conn_id):
            conn.send(data)

    def refuse_next_reg(self, code: int, msg: str = "", count: int = 1) -> None:
        """The next ``count`` REG requests (any connection) get ``code``/``msg`` instead of 0."""
        self._refusal = _Refusal(code, msg, count)


def _log_failure(task: asyncio.Task[None]) -> None:
    if task.cancelled() or (exc := task.exception()) is None:
        return
    if isinstance(exc, RecorderError):  # a message meant for people (e.g. a damaged file)
        log.error("venue feed failed; no more market data: %s", exc)
    else:
        log.error("venue feed failed; no more market data", exc_info=exc)


def _bind_reason(exc: BaseException) -> str:
    """Why a bind failed, in a few words (``address already in use``)."""
    errno = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and not isinstance(exc, socket.gaierror) and errno:
        return os.strerror(errno).lower()
    return getattr(exc, "strerror", None) or str(exc)


async def serve(
    config: VenueConfig,
    *,
    feed: Feed | None = None,
    on_listening: Callable[[Venue], None] | None = None,
) -> None:
    """Run a venue until cancelled, logging where it listens (never the credentials).

    Nothing can read :attr:`Venue.sent` here, so the venue runs with ``record_sent`` off
    (a long run would otherwise keep every frame in memory).

    Args:
        config, feed: as for :class:`Venue`.
        on_listening: called once the venue listens, with the venue: its
            :attr:`Venue.rest_url` and :attr:`Venue.ws_url` carry the bound port (the one
            picked for port 0).

    Raises:
        ConfigError: the address cannot be bound (see :meth:`Venue.start`).
        Exception: whatever the feed raised; the venue stops then.
    """
    config = dataclasses.replace(config, record_sent=False)
    async with Venue(config, feed=feed) as venue:
        log.info("venue listening: REST %s  WebSocket %s", venue.rest_url, venue.ws_url)
        if on_listening is not None:
            on_listening(venue)
        await venue.serve_forever()


def run_forever(
    config: VenueConfig,
    *,
    feed: Feed | None = None,
    on_listening: Callable[[Venue], None] | None = None,
) -> None:
    """Blocking :func:`serve` for a CLI; returns on SIGINT (Ctrl-C) or SIGTERM.

    Both signals are handled on the event loop, so the venue also stops cleanly when it was
    started from a script's background job (a non-interactive shell starts those with SIGINT
    ignored, and Python's own Ctrl-C handling then never fires) or by a service manager.
    """

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await serve(config, feed=feed, on_listening=on_listening)

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C before the handlers were in place
        asyncio.run(main())
    log.info("venue stopped")
