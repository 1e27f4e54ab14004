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
registered; otherwise it appends to a deque, and a callback the event loop runs after the
reader's turn fans the queued frames out. A client registered for everything the capture
records gets each REAL frame as it came, unparsed; for the others each frame is parsed once
(orjson), whatever their number, and cut per client. Each client gets one socket write per
callback, its frames framed together (:func:`ws_frame`). The bytes a client has not taken
are bounded (``queue_bytes``): past it, the client gets a SYSTEM frame (:data:`SLOW_CLIENT`),
then a close, and is counted (``stats.slow_cuts``, ``recorder_relay_clients_cut_total``).
The recorder never waits for a client.

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
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from aiohttp import web

from recorder.client.credentials import Credentials, refuse_readable_by_others
from recorder.errors import ConfigError, RecorderError
from recorder.kiwoom.frames import FrameKind, classify
from recorder.kiwoom.limits import MAX_CODES_PER_KEY, WS_PATH
from recorder.sim.rest import BAD_CREDENTIALS, NO_KEYS, RestApi, TokenStore
from recorder.sim.venue import VenueConfig, VenueStats, _bind_reason
from recorder.sim.ws import TOO_MANY_CODES, Connection, Refusal

if TYPE_CHECKING:
    from recorder.capture.live import CaptureConfig
    from recorder.capture.progress import CaptureStats
    from recorder.client.session import Session

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
    cfg: CaptureConfig  # its types and max_codes
    stats: CaptureStats  # each key's count of codes

    def key_codes(self) -> list[tuple[int, Session, list[str]]]:
        """Each key with a running session, the session and its codes (a list the relay extends)."""
        ...


@dataclass
class RelayConfig:
    """The relay's address and behaviour. Mirrors ``--relay-port``, ``--relay-host`` and
    ``--relay-secret``.

    Attributes:
        host, port: where to listen; port 0 picks a free port.
        secret: with any app key, this secret key also gets a token (``--relay-secret``).
        queue_bytes: bytes written to a client and not yet taken by its socket before it is
            cut (16 MiB: about 10,000 frames of a busy market).
        queue_max: control frames (replies, PINGs) queued for one client before it is cut.
        batch_s: frames are handed on at most this long after they were journaled, together:
            one socket write per client per batch instead of one per frame.
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
    queue_bytes: int = 16 << 20
    batch_s: float = 0.001
    queue_max: int = 10_000
    ping_interval: float = 10.0
    heartbeat_miss_limit: int = 5
    login_timeout: float = 10.0
    close_timeout: float = 5.0
    socket_sndbuf: int | None = None
    token_lifetime_s: float = 86400.0
    clock: Callable[[], int] = time.time_ns

    def __repr__(self) -> str:  # never show the secret
        return f"RelayConfig(host={self.host!r}, port={self.port}, queue_bytes={self.queue_bytes})"


@dataclass
class RelayStats(VenueStats):
    """The venue's session counters (logins, frames and entries sent, ``slow_cuts``, ...)
    plus the relay's own.

    Attributes:
        frames_in: journaled frames handed to the relay while a client was registered.
        batches: the times they were handed on (``batch_s``).
        frames_cut: frames sent as a client's share of a frame (not byte-identical).
        codes_added: codes added upstream for clients.
        refused_full: REGs refused with 105115 because no key had room.
    """

    frames_in: int = 0
    batches: int = 0
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
        refuse_readable_by_others(path, "the relay secret")
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
        self._routes: _Routes | None = None
        self._recorded: tuple[int, frozenset[tuple[str, str]]] = (-1, frozenset())
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
        # No permessage-deflate: frames go out as Kiwoom sent them, some written directly.
        ws = web.WebSocketResponse(autoping=True, timeout=self.config.close_timeout, compress=False)
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
            self._loop.call_later(self.settings.batch_s, self._drain)

    def _drain(self) -> None:
        """Fan the queued frames out: each client's share of all of them in one write."""
        self._scheduled = False
        pending, self._pending = self._pending, collections.deque()
        routes = self._current_routes()
        if routes is None:
            self._active = False
            return
        self.stats.frames_in += len(pending)
        self.stats.batches += 1
        out: dict[Connection, list[bytes]] = {}
        for raw in pending:
            self.stats.frames_cut += routes.route(raw, out)
        self._write(out)

    def _current_routes(self) -> _Routes | None:
        """Who gets what, rebuilt only when a client's subscriptions or the recording changed."""
        clients = [c for c in self.connections.values() if c.logged_in and not c.closing and c.subscriptions]
        if not clients:
            return None
        recorded = self._recorded_pairs()
        routes = self._routes
        if routes is None or not routes.fits(clients, recorded):
            routes = self._routes = _Routes(clients, recorded)
        return routes

    def _recorded_pairs(self) -> frozenset[tuple[str, str]]:
        up = self._upstream
        if up is None:
            return frozenset()
        keys = up.key_codes()
        size = sum(len(codes) for _, _, codes in keys)
        if self._recorded[0] != size:
            pairs = frozenset((code, t) for _, _, codes in keys for code in codes for t in up.cfg.types)
            self._recorded = (size, pairs)
        return self._recorded[1]

    def _write(self, out: dict[Connection, list[bytes]]) -> None:
        """One write per client; a client whose unsent bytes passed ``queue_bytes`` is cut."""
        limit = self.settings.queue_bytes
        for conn, frames in out.items():
            transport = conn.transport
            if conn.closing or transport is None or transport.is_closing():
                continue
            if transport.get_write_buffer_size() > limit:
                log.warning("relay client %d: more than %d bytes unsent; cutting it", conn.id, limit)
                conn.cut_slow()
                continue
            transport.write(b"".join(frames))
            self.stats.frames_sent += len(frames)

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
        covered = {code for _, _, codes in keys for code in codes}
        extra = sorted({item for item, _ in proposed if item} - covered)
        if not extra:
            return None
        placed = _place(extra, [(n, codes) for n, _, codes in keys], up.cfg.max_codes)
        if placed is None:
            self.stats.refused_full += 1
            log.info("relay client %d: %d new codes refused: no key has room (105115)", conn.id, len(extra))
            return TOO_MANY_CODES
        log.info("relay client %d: adding %d codes upstream: %s", conn.id, len(extra), ",".join(extra))
        self.stats.codes_added += len(extra)
        self.stats.added.extend(extra)
        try:
            sessions = {n: (session, codes) for n, session, codes in keys}
            done = await asyncio.gather(*(_add(up, n, *sessions[n], c) for n, c in placed.items()))
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


class _Routes:
    """Which client gets which entries, for one set of subscriptions.

    Clients registered for every pair the capture records get every REAL frame as it came,
    without parsing it (upstream sends only registered pairs); the others are looked up per
    entry, by ``(item, type)``.
    """

    def __init__(self, clients: list[Connection], recorded: frozenset[tuple[str, str]]) -> None:
        self.signature = [(c, c.subscriptions) for c in clients]
        self.recorded = recorded
        self.everything = [c for c in clients if recorded and c.subscriptions >= recorded]
        self.by_pair: dict[Any, list[Connection]] = {}
        for conn in clients:
            if conn not in self.everything:
                for pair in conn.subscriptions:
                    self.by_pair.setdefault(pair, []).append(conn)

    def fits(self, clients: list[Connection], recorded: frozenset[tuple[str, str]]) -> bool:
        if recorded is not self.recorded or len(clients) != len(self.signature):
            return False
        return all(c is d and c.subscriptions is s for c, (d, s) in zip(clients, self.signature, strict=True))

    def route(self, raw: str | bytes, out: dict[Connection, list[bytes]]) -> int:
        """Append each client's share of ``raw`` to ``out`` as wire frames; returns how many
        were cut (not the frame as it came)."""
        binary = isinstance(raw, bytes)
        payload = raw if isinstance(raw, bytes) else raw.encode()
        # Kiwoom's REAL frames end with trnm (§4.1); anything else is classified properly.
        if not payload.endswith(_REAL_TAIL) and classify(raw).kind is not FrameKind.REAL:
            return 0  # PING, REG/LOGIN replies, SYSTEM: the relay's own business
        whole = ws_frame(payload, binary=binary) if self.everything or not self.by_pair else b""
        for conn in self.everything:
            out.setdefault(conn, []).append(whole)
        if not self.by_pair:
            return 0
        spans = split_real(payload)
        if spans is None:
            return self._route_parsed(raw, whole or ws_frame(payload, binary=binary), out)
        shares: dict[Connection, list[tuple[int, int]]] = {}
        for start, end, item, type_ in spans:
            for conn in self.by_pair.get((item, type_), ()):
                shares.setdefault(conn, []).append((start, end))
        cut = 0
        for conn, share in shares.items():
            if len(share) == len(spans):
                whole = whole or ws_frame(payload, binary=binary)
                out.setdefault(conn, []).append(whole)  # wholly the client's: byte-identical
                continue
            # The client's entries, each byte for byte as Kiwoom sent it, in Kiwoom's envelope.
            body = _REAL_HEAD + b",".join(payload[a:b] for a, b in share) + _REAL_TAIL
            out.setdefault(conn, []).append(ws_frame(body, binary=binary))
            cut += 1
        return cut

    def _route_parsed(self, raw: str | bytes, whole: bytes, out: dict[Connection, list[bytes]]) -> int:
        """:meth:`route` for a frame not in Kiwoom's usual shape: parsed, shares re-encoded."""
        data = _real_entries(raw)
        if not data:
            return 0
        shares: dict[Connection, list[Any]] = {}
        for entry in data:
            if isinstance(entry, dict):
                for conn in self.by_pair.get((entry.get("item"), entry.get("type")), ()):
                    shares.setdefault(conn, []).append(entry)
        cut = 0
        for conn, share in shares.items():
            if len(share) == len(data):
                out.setdefault(conn, []).append(whole)
                continue
            payload = orjson.dumps({"data": share, "trnm": "REAL"})  # §4.1: trnm last, as Kiwoom
            out.setdefault(conn, []).append(ws_frame(payload, binary=isinstance(raw, bytes)))
            cut += 1
        return cut


_REAL_HEAD = b'{"data":['
_REAL_TAIL = b'],"trnm":"REAL"}'
# Needles ending in a letter that JSON numbers and quotes never give: bytes.find skips fast.
_ITEM, _TYPE, _VALUES, _OPEN = b'"item', b'"type', b'{"values', b'":"'


def split_real(frame: bytes) -> list[tuple[int, int, str, str]] | None:
    """Each entry of a REAL frame in the shape Kiwoom sends (§4.1: ``{"data":[{"values":{…},
    "type":…,"name":…,"item":…},…],"trnm":"REAL"}``, compact) as ``(start, end, item, type)``
    byte offsets, found with ``bytes.find`` instead of a parse (several times faster: no
    object for each of a 0D entry's hundred values); None for any other shape (parse it).

    ``"item":"`` and ``"type":"`` cannot occur inside a value (a quote in a JSON string is
    escaped), ``item`` must close its entry and ``values`` open it, so every span is exactly
    one entry's text.
    """
    if not frame.startswith(_REAL_HEAD) or not frame.endswith(_REAL_TAIL):
        return None
    pos, stop = len(_REAL_HEAD), len(frame) - len(_REAL_TAIL)
    spans = []
    while frame.startswith(_VALUES, pos):
        i = frame.find(_ITEM, pos, stop)
        t = frame.rfind(_TYPE, pos, i) if i >= 0 else -1
        if t < 0 or not frame.startswith(_OPEN, i + 5) or not frame.startswith(_OPEN, t + 5):
            return None
        j = frame.find(b'"', i + 8, stop)
        u = frame.find(b'"', t + 8, i)
        if j < 0 or u < 0 or frame[j + 1] != 0x7D or b"\\" in frame[i:j]:  # 0x7D: "}"
            return None
        if frame.find(_VALUES, t, i) >= 0:
            return None  # an entry without an item: parse instead
        end = j + 2
        spans.append((pos, end, frame[i + 8 : j].decode(), frame[t + 8 : u].decode()))
        if end == stop:
            return spans
        if frame[end] != 0x2C:  # ","
            return None
        pos = end + 1
    return None


def ws_frame(payload: bytes, *, binary: bool = False) -> bytes:
    """One unmasked, unfragmented WebSocket message from the server (RFC 6455 §5.2).

    Written by hand because neither aiohttp nor websockets can queue many messages for one
    socket in a single write: the relay sends each client a drain's worth of frames at once,
    one system call instead of one per frame.
    """
    first = 0x82 if binary else 0x81  # FIN + opcode (text 1, binary 2)
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


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


async def _add(up: Upstream, key: int, session: Session, codes: list[str], new: Sequence[str]) -> bool:
    """Record ``new`` on ``key`` from now on, like its planned codes: REG'd with the capture's
    types, re-registered after a reconnect, named in the key's gaps (``codes`` is that list).
    False when Kiwoom refused the REG (a ``reg_rejected`` gap names the codes)."""
    fresh = [c for c in dict.fromkeys(new) if c not in codes]
    codes.extend(fresh)  # at once: a second client's REG sees these codes covered
    up.stats.keys[key].items += len(fresh)
    return await session.add_items(fresh)


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
