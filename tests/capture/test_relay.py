"""The live relay over loopback: a capture from the embedded venue shares its session with
local Kiwoom clients.

The third-party client is the ``kiwoom-client`` package from PyPI, unmodified: its token
client and its WebSocket client take a base URL, so they are pointed at the relay. The other
clients are plain ``websockets`` code speaking Kiwoom's protocol (LOGIN, PING echo, REG),
none of the recorder's classes. What clients receive is checked against the journal (frames,
byte for byte) and against the rows in Parquet (entries, by item, type and values).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets
from kiwoom_client.auth import AsyncKiwoomAuth
from kiwoom_client.websocket import KiwoomWebSocket

from recorder.capture.live import Capture
from recorder.capture.relay import SLOW_CLIENT, Relay, RelayConfig, _Routes, load_relay_secret, split_real
from recorder.client.credentials import Credentials
from recorder.errors import ConfigError
from recorder.kiwoom.items import split_item
from recorder.kiwoom.time import NS
from recorder.sim.market import SyntheticMarket
from recorder.sim.market import real_frames as sim_real_frames
from recorder.sim.venue import Venue, VenueConfig
from soak.harness import capture_command, hermetic_env
from tests.helpers import CREDS, FAST_SESSION, T0, capture_config, decoded_rows, journaled_frames, stored_rows


def async_tmp_test(fn: Callable[[Path], Awaitable[None]]) -> Callable[[Path], None]:
    """Run an async test body given pytest's ``tmp_path`` on a fresh event loop, bounded to 45 s."""

    @functools.wraps(fn)
    def wrapper(tmp_path: Path) -> None:
        asyncio.run(asyncio.wait_for(fn(tmp_path), 45))

    return wrapper


KEY2 = Credentials("test-appkey-2-654321", "test-secret-2-fedcba")
TABLES = {"0B": "trades", "0D": "orderbook"}


def venue_config(**kw: Any) -> VenueConfig:
    base: dict[str, Any] = {
        "n_symbols": 3,
        "venues": ("KRX",),
        "tick_interval": 0.01,
        "trade_rate": 20.0,
        "book_rate": 20.0,
        "ping_interval": 30.0,
        "seed": 14,
    }
    return VenueConfig(**{**base, **kw})


@contextlib.asynccontextmanager
async def relayed(
    tmp: Path,
    venue_cfg: VenueConfig,
    *,
    keys: Sequence[Credentials] = (CREDS,),
    symbols: Sequence[str] | None = None,
    relay_cfg: RelayConfig | None = None,
    **options: Any,
) -> AsyncIterator[tuple[Venue, Relay, Capture]]:
    """A capture of ``venue_cfg``'s venue with the relay on 127.0.0.1:0; the capture and the
    relay stop (relay clients closed behind everything journaled) when the block ends."""
    async with Venue(venue_cfg) as venue:
        relay = Relay(relay_cfg or RelayConfig(close_timeout=2.0), keys)
        await relay.start()
        cfg = capture_config(venue, tmp, "t1", symbols)
        cap = Capture(dataclasses.replace(cfg, keys=list(keys), **options), relay=relay)
        task = asyncio.create_task(cap.run())
        try:
            up = lambda: cap.planned.is_set() and all(k.ever_subscribed for k in cap.stats.keys if k.items)  # noqa: E731
            await venue.wait_for(up)
            yield venue, relay, cap
            await venue.ping_barrier()  # the capture has read (and journaled) everything sent so far
        finally:
            cap.stop.set()
            await asyncio.wait_for(task, 20)
            await relay.stop()


async def token(relay: Relay, appkey: str, secretkey: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        body = {"grant_type": "client_credentials", "appkey": appkey, "secretkey": secretkey}
        r = await http.post(relay.rest_url + "/oauth2/token", json=body)
        return r.json()  # type: ignore[no-any-return]


class PlainClient:
    """A Kiwoom client in plain ``websockets``: LOGIN, REG, echo PINGs, keep every frame."""

    def __init__(self, relay: Relay, tok: str, *, stalled: bool = False) -> None:
        self.relay, self.token, self.stalled = relay, tok, stalled
        self.frames: list[str] = []
        self.replies: list[dict[str, Any]] = []
        self.system: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        sock = None
        if self.stalled:  # a tiny receive buffer: the relay's writes block after a few frames
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", self.relay.port))
        self.ws = await websockets.connect(
            self.relay.ws_url, sock=sock, ping_interval=None, max_queue=1 if self.stalled else 1024
        )
        await self.ws.send(orjson.dumps({"trnm": "LOGIN", "token": self.token}).decode())
        reply = orjson.loads(await self.ws.recv())
        assert reply["trnm"] == "LOGIN" and reply["return_code"] == 0, reply

    async def reg(self, items: Sequence[str], types: Sequence[str] = ("0B", "0D")) -> dict[str, Any]:
        """Send a REG and return its reply (read by the reader task, or here before it runs)."""
        n = len(self.replies)
        body = {
            "trnm": "REG",
            "grp_no": "1",
            "refresh": "1",
            "data": [{"item": list(items), "type": list(types)}],
        }
        await self.ws.send(orjson.dumps(body).decode())
        if self.task is None:
            self.task = asyncio.create_task(self._read())
        await self.until(lambda: len(self.replies) > n)
        return self.replies[n]

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                msg = orjson.loads(raw)
                if msg.get("trnm") == "PING":
                    await self.ws.send(raw)
                elif msg.get("trnm") == "REAL":
                    self.frames.append(raw)
                elif msg.get("trnm") == "SYSTEM":
                    self.system.append(msg)
                else:
                    self.replies.append(msg)
                self.changed.set()
                if self.stalled and self.replies:
                    await asyncio.Event().wait()  # never reads again
        self.changed.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            self.changed.clear()
            await self.changed.wait()

    async def closed(self) -> None:
        """Until the relay has closed the connection and every frame before it was read."""
        assert self.task is not None
        await self.task


def real_frames(tmp: Path) -> list[str]:
    out = []
    for _, _, raw in journaled_frames(tmp, "t1"):
        text = raw.decode() if isinstance(raw, bytes) else raw
        if '"trnm":"REAL"' in text:
            out.append(text)
    return out


def assert_run_of(got: list[str], journal: list[str]) -> None:
    """``got`` is a run of ``journal`` that reaches its end: every frame journaled from the
    client's first one on, none missing, none added."""
    assert got, "the client received nothing"
    start = journal.index(got[0])
    assert got == journal[start:], f"{len(got)} frames received, {len(journal) - start} journaled since"


def rows_of(entries: list[dict[str, Any]], table: str) -> list[tuple[Any, ...]]:
    """Entries decoded as the capture decodes them, in :func:`stored_rows`' layout, seq dropped."""
    now = time.time_ns()  # the trading date, as the capture dated the same entries
    frames = [(n, now, orjson.dumps({"data": [e], "trnm": "REAL"})) for n, e in enumerate(entries)]
    return [(*r[:2], *r[3:]) for r in decoded_rows(frames, table)]


def stored_of(tmp: Path, table: str, items: Sequence[str]) -> list[tuple[Any, ...]]:
    wanted = set()
    for item in items:
        parts = split_item(item)
        assert parts is not None
        wanted.add((parts[0], parts[1]))
    return [(r[0], r[1], *r[3:]) for r in stored_rows(tmp, table) if (r[0], r[1]) in wanted]


# --------------------------------------------------------------------------- (a) an SDK


@async_tmp_test
async def test_a_third_party_sdk_receives_exactly_what_is_stored_for_its_items(tmp_path: Path) -> None:
    entries = Entries()
    got = entries.got
    async with relayed(tmp_path, venue_config()) as (venue, relay, cap):
        items = list(cap.cfg.symbols)
        # kiwoom-client, unmodified: its token client and WebSocket client at the relay's URLs.
        auth = AsyncKiwoomAuth(CREDS.appkey, CREDS.secretkey, relay.rest_url)
        sdk = KiwoomWebSocket(await auth.get_valid_token(), ws_url=relay.ws_url, reconnect_delay=60.0)
        await sdk.connect()
        sdk.on("0B", entries)
        sdk.on("0D", entries)
        await sdk.subscribe(["0B", "0D"], items[0])
        await sdk.subscribe("0B", items[1])
        listener = asyncio.create_task(sdk.listen())
        # Beside it, a plain client of everything: whole frames, byte for byte.
        everything = PlainClient(relay, (await token(relay, CREDS.appkey, CREDS.secretkey))["token"])
        await everything.connect()
        assert (await everything.reg(items))["return_code"] == 0
        await entries.until(40)
        await everything.until(lambda: len(everything.frames) >= 20)
    await everything.closed()
    assert_run_of(everything.frames, real_frames(tmp_path))
    assert relay.stats.frames_cut > 0  # the SDK's share of mixed frames was cut per entry

    # Every entry of the SDK's items from its first one on, in order, with the stored values.
    wanted = {(items[0], "0B"), (items[0], "0D"), (items[1], "0B")}
    journal = [e for f in real_frames(tmp_path) for e in orjson.loads(f)["data"]]
    mine = [e for e in journal if (e["item"], e["type"]) in wanted]
    start = mine.index(got[0])
    await entries.until(len(mine) - start)  # the rest was queued before the relay closed
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)
    await sdk.disconnect()
    await auth.aclose()
    assert got == mine[start:]
    for type_, table in TABLES.items():
        sdk_items = [i for i, t in wanted if t == type_]
        received = Counter(rows_of([e for e in got if e["type"] == type_], table))
        before = Counter(rows_of([e for e in mine[:start] if e["type"] == type_], table))
        # The store holds exactly the SDK's rows plus those from before it subscribed.
        assert received and Counter(stored_of(tmp_path, table, sdk_items)) == received + before
    # The SDK's PING echoes and REGs never reached the upstream venue: one session, one REG set.
    assert venue.stats.logins == 1 and venue.stats.connections == 1


class Entries:
    """What the SDK's callbacks hand over, with a wait for a count."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.want = 0
        self.reached = asyncio.Event()

    def __call__(self, entry: dict[str, Any]) -> None:
        self.got.append(entry)
        if len(self.got) >= self.want:
            self.reached.set()

    async def until(self, n: int, timeout: float = 15.0) -> None:
        self.want = n
        if len(self.got) < n:
            self.reached.clear()
            await asyncio.wait_for(self.reached.wait(), timeout)


# --------------------------------------------------------------------------- (b) + (d) 20 clients


@async_tmp_test
async def test_twenty_clients_one_stalled_it_is_cut_the_others_get_everything(tmp_path: Path) -> None:
    venue_cfg = venue_config(
        n_symbols=4,
        trade_rate=100.0,
        book_rate=100.0,
        keys=((CREDS.appkey, CREDS.secretkey), (KEY2.appkey, KEY2.secretkey)),
        max_codes=2,
    )
    # A small kernel buffer toward clients: the stalled one blocks the relay's writes at once.
    relay_cfg = RelayConfig(queue_bytes=256 << 10, close_timeout=1.0, socket_sndbuf=8192)
    run = relayed(tmp_path, venue_cfg, keys=(CREDS, KEY2), relay_cfg=relay_cfg, max_codes=2)
    async with run as (venue, relay, cap):
        items = list(cap.cfg.symbols)
        assert [k.items for k in cap.stats.keys] == [2, 2]  # the universe spread over both keys
        tokens = [(await token(relay, k.appkey, k.secretkey))["token"] for k in (CREDS, KEY2)]
        clients = [PlainClient(relay, tokens[n % 2], stalled=n == 7) for n in range(20)]
        for c in clients:
            await c.connect()
            assert (await c.reg(items))["return_code"] == 0
        stalled = clients[7]
        await relay.wait_for(lambda: relay.stats.slow_cuts == 1, 20)
        live = [c for c in clients if c is not stalled]
        for c in live:
            await c.until(lambda c=c: len(c.frames) >= 30)
        await relay.wait_for(lambda: len(relay.connections) == 19, 10)
        assert venue.stats.connections == 2 and venue.stats.kicks == 0
    journal = real_frames(tmp_path)
    for c in live:
        await c.closed()
        assert_run_of(c.frames, journal)
        assert not c.system
    # (d) the upstream venue saw one session per key throughout, whatever the clients did.
    assert venue.stats.logins == 2 and venue.stats.connections == 2 and venue.stats.kicks == 0
    assert relay.stats.slow_cuts == 1 and relay.stats.logins == 20
    assert SLOW_CLIENT[0] == "R10090"


# --------------------------------------------------------------------------- (c) codes outside


@async_tmp_test
async def test_a_reg_outside_the_recording_is_added_upstream_and_refused_past_the_limit(
    tmp_path: Path,
) -> None:
    vcfg = venue_config(n_symbols=3)
    feed_items = SyntheticMarket.universe(vcfg.n_symbols, vcfg.seed)  # the venue's codes (KRX only)
    recorded, outside = feed_items[:2], feed_items[2]
    store = tmp_path
    tuning = dataclasses.replace(FAST_SESSION, reg_batch=100)  # 197 codes in 2 REGs (5 REG/s upstream)
    async with relayed(store, vcfg, symbols=recorded, tuning=tuning) as (venue, relay, cap):
        tok = (await token(relay, CREDS.appkey, CREDS.secretkey))["token"]
        client = PlainClient(relay, tok)
        await client.connect()
        assert (await client.reg([outside], ["0B"]))["return_code"] == 0
        assert relay.stats.codes_added == 1 and cap.stats.keys[0].items == 3
        await client.until(lambda: len(client.frames) >= 10)
        upstream = next(iter(venue.connections.values()))
        assert (outside, "0B") in upstream.subscriptions and (outside, "0D") in upstream.subscriptions
        # 198 more codes would make 201 on the one key: Kiwoom's own refusal, nothing sent upstream.
        fake = [f"9{n:05d}" for n in range(198)]
        reply = await client.reg(fake, ["0B"])
        assert reply["return_code"] == 105115, reply
        assert relay.stats.refused_full == 1 and len({i for i, _ in upstream.subscriptions}) == 3
        # 197 fit: added upstream on the same key, up to its 200 codes.
        assert (await client.reg(fake[:197], ["0B"]))["return_code"] == 0
        assert len({i for i, _ in upstream.subscriptions}) == 200
    await client.closed()
    got = [e for f in client.frames for e in orjson.loads(f)["data"]]
    assert got and {(e["item"], e["type"]) for e in got} == {(outside, "0B")}
    stored = Counter(stored_of(store, "trades", [outside]))
    assert stored == Counter(rows_of(got, "trades"))  # recorded since it was added, all relayed
    assert venue.stats.logins == 1 and venue.stats.refused_regs == 0


# --------------------------------------------------------------------------- auth


@async_tmp_test
async def test_tokens_for_the_recorders_keys_or_the_relay_secret_only(tmp_path: Path) -> None:
    relay_cfg = RelayConfig(secret="a-relay-secret-0123", close_timeout=1.0)
    async with relayed(tmp_path, venue_config(), relay_cfg=relay_cfg) as (venue, relay, _):
        ok = await token(relay, CREDS.appkey, CREDS.secretkey)
        by_secret = await token(relay, "my-bot", "a-relay-secret-0123")
        wrong = await token(relay, CREDS.appkey, "not-the-secret")
        assert ok["return_code"] == 0 and by_secret["return_code"] == 0
        assert wrong["return_code"] == 3 and "token" not in wrong
        # The relay's tokens are its own: the upstream venue never issued them.
        assert ok["token"] not in venue.tokens.issued() and by_secret["token"] not in venue.tokens.issued()
        client = PlainClient(relay, by_secret["token"])
        await client.connect()
        async with websockets.connect(relay.ws_url, ping_interval=None) as ws:
            await ws.send(orjson.dumps({"trnm": "LOGIN", "token": venue.tokens.issued()[0]}).decode())
            replies = [orjson.loads(m) async for m in ws]
        assert [r["trnm"] for r in replies][-1] == "LOGIN" and replies[-1]["return_code"] == 805004


def test_the_secret_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "relay-secret"
    path.write_text("s3cret-value-here\n")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600") as err:
        load_relay_secret(path)
    assert "s3cret" not in str(err.value)
    path.chmod(0o600)
    assert load_relay_secret(path) == "s3cret-value-here"


# --------------------------------------------------------------------------- the CLI


def test_a_busy_relay_port_is_one_line_before_any_login(tmp_path: Path, venue_thread: Any) -> None:
    vt = venue_thread(venue_config(appkey=CREDS.appkey, secretkey=CREDS.secretkey))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cmd = [sys.executable, "-m", "recorder.cli.main", "capture", "--ws-url", vt.venue.ws_url]
        cmd += ["--rest-url", vt.venue.rest_url, "--symbols", "005930", "--force", "--duration", "30s"]
        cmd += ["--data-dir", str(tmp_path), "--relay-port", str(port)]
        r = subprocess.run(
            cmd,
            env=hermetic_env(KIWOOM_APPKEY=CREDS.appkey, KIWOOM_SECRETKEY=CREDS.secretkey),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: --relay-port: cannot listen on 127.0.0.1:{port}: address already in use"]
    assert "Traceback" not in r.stderr
    assert vt.run(lambda: vt.venue.stats.rest_requests) == 0  # not even a token was asked for


class Lines:
    """A subprocess's stderr, read line by line on a thread (a chatty run never blocks)."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        while (line := self.queue.get(timeout=timeout)) is not None:
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r}: {self.seen}")

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        while (line := self.queue.get(timeout=timeout)) is not None:
            self.seen.append(line)
        return rc, "\n".join(self.seen)


def test_the_cli_relays_to_an_sdk_and_counts_its_clients(tmp_path: Path, venue_thread: Any) -> None:
    vt = venue_thread(venue_config(appkey=CREDS.appkey, secretkey=CREDS.secretkey))
    secret = tmp_path / "relay-secret"
    secret.write_text("relay-secret-for-bots-42\n")
    secret.chmod(0o600)
    cmd = capture_command(vt.venue, tmp_path / "store", "cli", "--relay-port", "0", "--metrics-port", "0")
    cmd += ["--relay-secret", str(secret)]
    run = Lines(cmd, hermetic_env(KIWOOM_APPKEY=CREDS.appkey, KIWOOM_SECRETKEY=CREDS.secretkey))
    try:
        metrics_url = run.wait_for("metrics on ").split(" on ", 1)[1].split(",", 1)[0]
        words = run.wait_for("relay listening: ").split()
        rest_url, ws_url = words[words.index("REST") + 1], words[words.index("WebSocket") + 1]
        item = vt.venue.feed.items[0]

        async def sdk() -> tuple[list[dict[str, Any]], str]:
            entries = Entries()
            async with AsyncKiwoomAuth("my-bot", "relay-secret-for-bots-42", rest_url) as auth:
                ws = KiwoomWebSocket(await auth.get_valid_token(), ws_url=ws_url)
                await ws.connect()
                ws.on("0D", entries)
                await ws.subscribe("0D", item)
                listener = asyncio.create_task(ws.listen())
                await entries.until(5, 30)
                scraped = httpx.get(metrics_url).text
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
                await ws.disconnect()
            return entries.got, scraped

        got, scraped = asyncio.run(sdk())
    finally:
        rc, stderr = run.finish()
    assert rc == 0, stderr
    assert {(e["item"], e["type"]) for e in got} == {(item, "0D")}
    assert "recorder_relay_clients 1.0" in scraped and "recorder_relay_clients_cut_total 0.0" in scraped
    assert "relay-secret-for-bots-42" not in stderr and CREDS.secretkey not in stderr


# --------------------------------------------------------------------------- cutting frames


def test_split_real_finds_every_entry_as_a_parse_does() -> None:
    market = SyntheticMarket(SyntheticMarket.universe(6, 3), seed=3, venues=("KRX", "NXT"))
    rng = random.Random(3)
    frames = [f for step in range(1, 60) for f, _ in sim_real_frames(market.step(T0 + step * NS), rng, 4)]
    assert len(frames) > 50
    for frame in frames:
        spans = split_real(frame)
        data = orjson.loads(frame)["data"]
        assert spans is not None
        assert [orjson.loads(frame[a:b]) for a, b, _, _ in spans] == data
        assert [(item, t) for _, _, item, t in spans] == [(e["item"], e["type"]) for e in data]
    entry = {"values": {"10": '+1"item":"x'}, "type": "0B", "name": "n", "item": "005930"}
    tricky = orjson.dumps({"data": [entry, entry], "trnm": "REAL"})
    assert split_real(tricky) is None  # a quoted "item" inside a value: never misread, parsed instead
    # Other shapes are parsed by the caller: trnm first, another key order, an entry without item.
    assert split_real(orjson.dumps({"trnm": "REAL", "data": [entry]})) is None
    assert (
        split_real(orjson.dumps({"data": [{"item": "005930", "type": "0B", "values": {}}], "trnm": "REAL"}))
        is None
    )
    no_item = {"values": {}, "type": "0B", "name": "n"}
    assert split_real(orjson.dumps({"data": [no_item, entry], "trnm": "REAL"})) is None


def test_routes_cut_both_shapes_and_pass_whole_frames_untouched() -> None:
    class Client:
        def __init__(self, pairs: set[tuple[str, str]]) -> None:
            self.subscriptions = frozenset(pairs)

    a = {"values": {"10": "+100"}, "type": "0B", "name": "주식체결", "item": "005930"}
    b = {"values": {"41": "100"}, "type": "0D", "name": "주식호가잔량", "item": "000660"}
    recorded = frozenset({("005930", "0B"), ("000660", "0D")})
    every, only_a, only_b = Client(set(recorded)), Client({("005930", "0B")}), Client({("000660", "0D")})
    routes = _Routes([every, only_a, only_b], recorded)  # type: ignore[list-item]
    kiwoom = orjson.dumps({"data": [a, b], "trnm": "REAL"}).decode()
    trnm_first = orjson.dumps({"trnm": "REAL", "data": [b, a]}).decode()
    out: dict[Any, list[bytes]] = {}
    for raw in (kiwoom, trnm_first, '{"trnm":"PING"}'):
        routes.route(raw, out)

    def text(frame: bytes) -> str:
        assert frame[0] == 0x81  # one unmasked text message (RFC 6455 §5.2)
        if frame[1] < 126:
            return frame[2:].decode()
        assert frame[1] == 126 and int.from_bytes(frame[2:4], "big") == len(frame) - 4
        return frame[4:].decode()

    assert [text(f) for f in out[every]] == [kiwoom, trnm_first]  # as they came, PING not
    assert [orjson.loads(text(f))["data"] for f in out[only_a]] == [[a], [a]]
    assert [orjson.loads(text(f))["data"] for f in out[only_b]] == [[b], [b]]
    assert text(out[only_a][0]) == '{"data":[' + orjson.dumps(a).decode() + '],"trnm":"REAL"}'
