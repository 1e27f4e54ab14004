"""The live relay: the capture's one Kiwoom session, shared with local programs.

Kiwoom allows one WebSocket session per app key (protocol notes §3.3): a bot or a dashboard
that logs in with the recorder's key kicks the recorder. ``recorder capture --relay-port N``
makes the recorder the only owner of the session and every local program a client of it,
as a tickerplant publishes to its subscribers. Clients speak Kiwoom's protocol unchanged:

- ``POST /oauth2/token`` (au10001) with one of the recorder's app key/secret pairs, or any
  app key with the secret of ``--relay-secret FILE``. Tokens are the relay's own (random,
  issued here); the upstream token never leaves the recorder.
- The WebSocket at Kiwoom's path: LOGIN, PING echo, REG/REMOVE, answered by the relay
  itself with the embedded venue's session code (:class:`recorder.sim.ws.Connection`).
  Several clients may log in with the same app key: nobody is kicked.
- REAL frames: after the capture has journaled a frame (:meth:`Relay.publish`), each client
  gets the entries of the ``(item, type)`` pairs it registered: the frame byte-identical when
  every entry is the client's, else a new REAL frame of its entries alone, in order
  (``{"data":[...],"trnm":"REAL"}``, Kiwoom's shape). Other upstream frames (PING, replies,
  SYSTEM) are never forwarded.

Costs on the socket reader: :meth:`Relay.publish` returns at once while no client is
registered; otherwise it appends to a deque, and the frames are parsed (once, whatever the
number of clients) and fanned out by a callback the event loop runs after the reader's turn.
Each client has a bounded queue (``queue_max`` frames); a client that falls that far behind
gets a SYSTEM frame (:data:`SLOW_CLIENT`), then a close, and is counted
(``stats.slow_cuts``, ``recorder_relay_clients_cut_total``). The recorder never waits for a
client.

Codes the recording does not cover: a REG naming them adds them upstream on a key with
room (fewer than 200 codes), with the capture's types, and they are journaled and stored
like any other code (their gaps too) until the capture ends; a REMOVE does not drop them
upstream (another client may still want them, and a code's data does not stop halfway
through a day). When no key has room the client gets Kiwoom's own 105115 refusal. Types the
capture does not record are acknowledged and never delivered (as Kiwoom acknowledges codes
that do not exist, §3.4).
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiohttp import web

from recorder.client.credentials import Credentials
from recorder.errors import ConfigError, RecorderError
from recorder.kiwoom.limits import MAX_CODES_PER_KEY, WS_PATH
from recorder.sim.rest import BAD_CREDENTIALS, NO_KEYS, RestApi, TokenStore
from recorder.sim.venue import VenueConfig, VenueStats, _bind_reason
from recorder.sim.ws import TOO_MANY_CODES, Connection, Refusal

log = logging.getLogger(__name__)

#: What a client that fell ``queue_max`` frames behind receives before the close. Kiwoom's
#: own code for cutting a slow reader is not known (protocol notes §3.3 list R10001-R10004):
#: this one is the relay's.
SLOW_CLIENT = ("R10090", "수신 처리가 늦어 접속을 종료합니다 (relay: the client fell behind)")
#: The reply to a REG whose new codes Kiwoom refused upstream (105110 after every resend).
UPSTREAM_REFUSED = (1, "실시간 등록이 거부되었습니다 (relay: the upstream REG was refused)")


class Upstream(Protocol):
    """What the relay needs from the capture (:class:`recorder.capture.live.Capture`)."""

    planned: asyncio.Event  # set once every key's codes are known

    @property
    def types(self) -> Sequence[str]: ...
    @property
    def max_codes(self) -> int: ...
    def key_codes(self) -> list[tuple[int, Sequence[str]]]:
        """Each key with a running session, and the codes it records."""
        ...

    async def add_codes(self, key: int, codes: Sequence[str]) -> bool:
        """Record ``codes`` on ``key`` from now on; False when Kiwoom refused them."""
        ...


@dataclass
class RelayConfig:
    """The relay's address and behaviour. Mirrors ``--relay-port``, ``--relay-host`` and
    ``--relay-secret``.

    Attributes:
        host, port: where to listen; port 0 picks a free port.
        secret: with any app key, this secret key also gets a token (``--relay-secret``).
        queue_max: frames queued for one client before it is cut.
        ping_interval, heartbeat_miss_limit, login_timeout: the session rules (§3.1, §3.2).
        close_timeout: seconds a close may take before the client's socket is aborted.
        socket_sndbuf: the kernel send buffer of each client socket (bytes); None keeps the
            system's autotuning (up to ``tcp_wmem``, 4 MB on Linux, before ``queue_max`` counts).
        token_lifetime_s: lifetime of the tokens the relay issues.
        clock: epoch-ns clock for tokens and REG rates.
    """

    host: str = "127.0.0.1"
    port: int = 0
    secret: str | None = None
    queue_max: int = 10_000
    ping_interval: float = 10.0
    heartbeat_miss_limit: int = 5
    login_timeout: float = 10.0
    close_timeout: float = 5.0
    socket_sndbuf: int | None = None
    token_lifetime_s: float = 86400.0
    clock: Callable[[], int] = time.time_ns

    def __repr__(self) -> str:  # never show the secret
        return f"RelayConfig(host={self.host!r}, port={self.port}, queue_max={self.queue_max})"


@dataclass
class RelayStats(VenueStats):
    """The venue's session counters (logins, frames and entries sent, ``slow_cuts``, ...)
    plus the relay's own.

    Attributes:
        frames_in: journaled frames handed to the relay while a client was registered.
        frames_cut: frames sent as a client's share of a frame (not byte-identical).
        codes_added: codes added upstream for clients.
        refused_full: REGs refused with 105115 because no key had room.
    """

    frames_in: int = 0
    frames_cut: int = 0
    codes_added: int = 0
    refused_full: int = 0
    added: list[str] = field(default_factory=list)  # the codes added upstream, in order


def load_relay_secret(path: Path) -> str:
    """The secret of ``--relay-secret FILE``: its text, stripped.

    Raises:
        ConfigError: the file is missing, empty, or readable by group or others (like the
            other credential files). The message never shows the secret.
    """
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise ConfigError(
                f"{path} holds the relay secret but other users may read it "
                f"(mode {mode & 0o777:o}); run: chmod 600 {path}"
            )
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read relay secret file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"relay secret file {path} is not UTF-8 text") from None
    if not secret:
        raise ConfigError(f"relay secret file {path} is empty")
    return secret


class _NoFeed:
    """The relay serves tokens only; ka10099 and ka10079 stay Kiwoom's."""

    def step(self, now_ns: int) -> list[dict[str, Any]]:
        return []

    def symbols_info(self) -> list[dict[str, Any]]:
        return []


class _RelayRest(RestApi):
    """au10001/au10002 against the recorder's keys and the relay secret."""

    def __init__(self, config: VenueConfig, tokens: TokenStore, stats: VenueStats, accept: Any) -> None:
        super().__init__(config, tokens, _NoFeed(), stats, config.clock)
        self._accept: Callable[[str, str], bool] = accept

    def _check_keys(self, body: dict[str, Any]) -> tuple[int, str] | None:
        appkey, secretkey = body.get("appkey"), body.get("secretkey")
        if not isinstance(appkey, str) or not isinstance(secretkey, str) or not appkey or not secretkey:
            return NO_KEYS
        return None if self._accept(appkey, secretkey) else BAD_CREDENTIALS

    def routes(self) -> list[web.RouteDef]:
        return [r for r in super().routes() if r.path.startswith("/oauth2/")]


class Relay:
    """The relay server. ``await start()`` (binds, or ConfigError), :meth:`attach` the
    capture, :meth:`publish` every journaled frame, ``await stop()``.

    Args:
        config: address and behaviour (:class:`RelayConfig`).
        keys: the recorder's app keys: their pairs get tokens, and the relay accepts as many
            codes per client as the keys can record (``per_key`` each).

    Attributes:
        settings: the :class:`RelayConfig`.
        rest_url, ws_url: set by :meth:`start`.
        stats: counters (:class:`RelayStats`).
        connections: the clients connected now, by id.
    """

    def __init__(
        self, config: RelayConfig, keys: Sequence[Credentials], *, per_key: int = MAX_CODES_PER_KEY
    ) -> None:
        self.settings = config
        self.clock = config.clock
        self._keys = {(c.appkey, c.secretkey) for c in keys}
        # The session rules of every client connection (the venue's Hub contract: ``config``).
        self.config = VenueConfig(
            host=config.host,
            port=config.port,
            ping_interval=config.ping_interval,
            heartbeat_miss_limit=config.heartbeat_miss_limit,
            login_timeout=config.login_timeout,
            max_codes=max(1, len(keys)) * per_key,
            rest_rate_limit=1_000_000,  # local clients: nothing upstream to protect
            duplicate_login_kick=False,
            record_sent=False,
            send_queue_max=config.queue_max,
            slow_client_system=SLOW_CLIENT,
            close_timeout=config.close_timeout,
            token_lifetime_s=config.token_lifetime_s,
            clock=config.clock,
        )
        self.stats = RelayStats()
        self.tokens = TokenStore(self.clock, config.token_lifetime_s, revoke_previous=False)
        self.connections: dict[int, Connection] = {}
        self.port = 0
        self.rest_url = ""
        self.ws_url = ""
        self._upstream: Upstream | None = None
        self._next_id = 1
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: collections.deque[str | bytes] = collections.deque()
        self._scheduled = False
        self._active = False  # some logged-in client has registered something
        self._cond = asyncio.Condition()
        self._waiters = 0
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind and serve.

        Raises:
            ConfigError: the address cannot be bound (in use, no such address).
        """
        self._loop = asyncio.get_running_loop()
        app = web.Application()
        accept = self._accepts
        app.add_routes(_RelayRest(self.config, self.tokens, self.stats, accept).routes())
        app.add_routes([web.get(WS_PATH, self._ws_handler)])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except (OSError, OverflowError) as exc:
            await self._runner.cleanup()
            self._runner = None
            where = f"{self.settings.host}:{self.settings.port}"
            raise ConfigError(f"--relay-port: cannot listen on {where}: {_bind_reason(exc)}") from None
        self.port = site.port
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        self.rest_url = f"http://{host}:{self.port}"
        self.ws_url = f"ws://{host}:{self.port}{WS_PATH}"
        log.info("relay listening: REST %s  WebSocket %s", self.rest_url, self.ws_url)

    def attach(self, upstream: Upstream) -> None:
        """The capture whose frames are published and which adds codes for clients."""
        self._upstream = upstream

    async def stop(self) -> None:
        """Hand out what was journaled, close every client (1001, behind its queued frames),
        release the port. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._drain()
        conns = list(self.connections.values())
        for conn in conns:
            conn.close(1001, "")
        ids = [c.id for c in conns]
        try:
            await self.wait_for(
                lambda: not any(i in self.connections for i in ids), self.config.close_timeout + 1
            )
        except TimeoutError:
            for conn in list(self.connections.values()):
                conn.abort()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _accepts(self, appkey: str, secretkey: str) -> bool:
        if (appkey, secretkey) in self._keys:
            return True
        secret = self.settings.secret
        return secret is not None and hmac.compare_digest(secretkey.encode(), secret.encode())

    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        sock = request.transport.get_extra_info("socket") if request.transport is not None else None
        if sock is not None and self.settings.socket_sndbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.settings.socket_sndbuf)
        ws = web.WebSocketResponse(autoping=True, timeout=self.config.close_timeout)
        await ws.prepare(request)
        conn = Connection(self, ws, request, self._next_id)
        self._next_id += 1
        if self._stopped:
            conn.close(1001, "")
        self.connections[conn.id] = conn
        self.stats.connections += 1
        log.info("relay client %d: connected", conn.id)
        await self.notify()
        try:
            await conn.run()
        except Exception:
            log.exception("relay client %d: session failed", conn.id)
        finally:
            del self.connections[conn.id]
            self.stats.closed += 1
            log.info("relay client %d: closed (code %s)", conn.id, conn.close_code)
            await self.notify()
        return ws

    # ------------------------------------------------------------------ the feed

    def publish(self, recv_ts_ns: int, raw: str | bytes) -> None:
        """A frame was journaled: queue it for the clients (returns at once, never parses).

        Called by the socket reader for every frame; with no client registered it costs an
        attribute check.
        """
        if not self._active:
            return
        self._pending.append(raw)
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        """Fan the queued frames out: each parsed once, each client sent its share."""
        self._scheduled = False
        pending, self._pending = self._pending, collections.deque()
        clients = [c for c in self.connections.values() if c.logged_in and not c.closing and c.subscriptions]
        if not clients:
            self._active = False
            return
        self.stats.frames_in += len(pending)
        for raw in pending:
            data = _real_entries(raw)
            if data:
                self._fan_out(raw, data, clients)

    def _fan_out(self, raw: str | bytes, data: list[Any], clients: list[Connection]) -> None:
        keys = [(e.get("item"), e.get("type")) if isinstance(e, dict) else None for e in data]
        for conn in clients:
            subs = conn.subscriptions
            mine = [n for n, k in enumerate(keys) if k in subs]
            if not mine:
                continue
            if len(mine) == len(data):
                conn.send(raw, data)  # wholly the client's: byte-identical
                continue
            share = [data[n] for n in mine]
            frame = orjson.dumps({"data": share, "trnm": "REAL"})  # §4.1: trnm last, as Kiwoom
            self.stats.frames_cut += 1
            conn.send(frame if isinstance(raw, bytes) else frame.decode(), share)

    # ------------------------------------------------------------------ hub (used by Connection)

    def appkey_of(self, token: Any) -> str | None:
        return self.tokens.appkey_of(token)

    def on_login(self, conn: Connection) -> None:
        """Several clients may share an app key on the relay: nobody is kicked."""

    def take_reg_refusal(self) -> tuple[int, str] | None:
        return None

    def record(self, conn: Connection, index: int, data: str | bytes, entries: Sequence[Any]) -> None:
        self.stats.frames_sent += 1
        self.stats.entries_sent += len(entries)

    def on_subscribed(self, conn: Connection) -> None:
        self._active = True

    async def admit(
        self, conn: Connection, trnm: str, proposed: frozenset[tuple[str, str]]
    ) -> Refusal | None:
        """Codes no key records yet are added upstream where a key has room, else 105115."""
        up = self._upstream
        if trnm != "REG" or up is None:
            return None
        await up.planned.wait()
        keys = up.key_codes()
        covered = {code for _, codes in keys for code in codes}
        extra = sorted({item for item, _ in proposed if item} - covered)
        if not extra:
            return None
        placed = _place(extra, keys, up.max_codes)
        if placed is None:
            self.stats.refused_full += 1
            log.info("relay client %d: %d new codes refused: no key has room (105115)", conn.id, len(extra))
            return TOO_MANY_CODES
        log.info("relay client %d: adding %d codes upstream: %s", conn.id, len(extra), ",".join(extra))
        self.stats.codes_added += len(extra)
        self.stats.added.extend(extra)
        try:
            done = await asyncio.gather(*(up.add_codes(n, codes) for n, codes in placed.items()))
        except RecorderError as exc:
            log.warning("relay client %d: adding codes upstream failed: %s", conn.id, exc)
            return UPSTREAM_REFUSED
        return None if all(done) else UPSTREAM_REFUSED

    async def notify(self) -> None:
        """Wake :meth:`wait_for` callers; free when nobody waits (it runs for every frame sent)."""
        if self._waiters:
            async with self._cond:
                self._cond.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Return once ``predicate()`` holds (checked after each change); TimeoutError after ``timeout``."""
        self._waiters += 1
        try:
            async with asyncio.timeout(timeout), self._cond:
                await self._cond.wait_for(predicate)
        finally:
            self._waiters -= 1


def _real_entries(raw: str | bytes) -> list[Any] | None:
    """The ``data`` of a REAL frame; None for anything else (never forwarded)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or body.get("trnm") != "REAL":
        return None
    data = body.get("data")
    return data if isinstance(data, list) else None


def _place(
    codes: Sequence[str], keys: Sequence[tuple[int, Sequence[str]]], per_key: int
) -> dict[int, list[str]] | None:
    """Each new code on the key with the most room; None when they do not all fit."""
    room = {n: per_key - len(set(have)) for n, have in keys}
    if sum(max(r, 0) for r in room.values()) < len(codes):
        return None
    placed: dict[int, list[str]] = {}
    for code in codes:
        n = max(room, key=lambda k: (room[k], -k))
        room[n] -= 1
        placed.setdefault(n, []).append(code)
    return placed
