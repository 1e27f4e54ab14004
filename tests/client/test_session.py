"""Session against a real WebSocket server on 127.0.0.1, scripted per test.

Nothing of ours is patched: time, sleep and randomness go in through the constructor. The
fake ``sleep`` returns at once (or blocks until cancelled) and records what was asked, so
backoff and pacing are checked from the recorded delays. Synchronisation uses asyncio
events only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
import pytest
import websockets.asyncio.client
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidURI

from recorder.client.credentials import Credentials
from recorder.client.rest import KiwoomRest
from recorder.client.retry import ReconnectDelays, backoff, is_retryable
from recorder.client.session import Session, SessionEvent, SessionTuning
from recorder.errors import AuthError, ConfigError, JournalError, KiwoomError, TransportError
from recorder.kiwoom.frames import FrameKind, classify
from recorder.sim.venue import Venue, VenueConfig

OK_LOGIN = '{"trnm":"LOGIN","return_code":0,"return_msg":"","sor_yn":"Y"}'
BAD_LOGIN_MSG = "토큰 인증에 실패했습니다. 접속을 종료합니다 [CODE=8005, MESSAGE=Token이 유효하지 않습니다]"
R10001 = (
    '{"trnm":"SYSTEM","code":"R10001",'
    '"message":"동일한 App key로 접속이 되었습니다. 기존 세션은 종료가 됩니다"}'
)
R10004 = '{"trnm":"SYSTEM","code":"R10004","message":"접속허용요청(토큰)이 들어오지 않았습니다"}'
PING = '{"trnm":"PING"}'
WAIT_S = 5.0  # upper bound on any wait in a test; a hang fails instead of blocking

SERVER_LOG = logging.getLogger("tests.fake_kiwoom")
SERVER_LOG.setLevel(logging.WARNING)  # its debug lines would show the LOGIN frame


def ack(code: int = 0, msg: str = "") -> str:
    return orjson.dumps({"trnm": "REG", "return_code": code, "return_msg": msg}).decode()


def codes(n: int, suffix: str = "") -> list[str]:
    return [f"{100000 + i:06d}{suffix}" for i in range(n)]


# --------------------------------------------------------------------------- fakes


class Conn:
    """One accepted connection, with the frames seen each way."""

    def __init__(self, ws: ServerConnection, index: int) -> None:
        self.ws, self.index = ws, index
        self.received: list[str | bytes] = []
        self.sent: list[str] = []

    async def recv(self) -> str | bytes:
        raw = await self.ws.recv()
        self.received.append(raw)
        return raw

    async def send(self, raw: str) -> None:
        self.sent.append(raw)
        await self.ws.send(raw)

    async def login(self, reply: str = OK_LOGIN) -> dict[str, Any]:
        frame = orjson.loads(await self.recv())
        assert frame["trnm"] == "LOGIN"
        await self.send(reply)
        return frame  # type: ignore[no-any-return]

    async def ack_regs(self, n: int, replies: Iterator[str] | None = None) -> None:
        """Acknowledge the next n REG frames (others are only recorded)."""
        while n:
            if orjson.loads(await self.recv()).get("trnm") == "REG":
                await self.send(next(replies) if replies else ack())
                n -= 1

    async def drain(self) -> None:
        """Read until the client closes."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self.recv()

    def regs(self) -> list[dict[str, Any]]:
        frames = [orjson.loads(r) for r in self.received if r not in ("PING",)]
        return [f for f in frames if f.get("trnm") == "REG"]


Script = Callable[[Conn], Awaitable[None]]


def staying(done: asyncio.Event) -> Script:
    """A healthy connection: LOGIN, one REG acknowledged, ``done`` set, then read until closed."""

    async def stay(c: Conn) -> None:
        await c.login()
        await c.ack_regs(1)
        done.set()
        await c.drain()

    return stay


class FakeKiwoom:
    """A WebSocket server whose n-th connection runs ``scripts[n]`` (the last one repeats)."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts = scripts
        self.conns: list[Conn] = []
        self.url = ""

    async def __aenter__(self) -> FakeKiwoom:
        self._server = await serve(self._handle, "127.0.0.1", 0, ping_interval=None, logger=SERVER_LOG)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/api/dostk/websocket"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        conn = Conn(ws, len(self.conns))
        self.conns.append(conn)
        script = self.scripts[min(conn.index, len(self.scripts) - 1)]
        with contextlib.suppress(ConnectionClosed):
            await script(conn)


class FakeSleep:
    """Records every requested delay; returns at once, or blocks until cancelled."""

    def __init__(self, block: bool = False, log: list[Any] | None = None) -> None:
        self.delays: list[float] = []
        self.block = block
        self.log = log
        self.entered = asyncio.Event()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.log is not None:
            self.log.append(("sleep", delay))
        self.entered.set()
        if self.block:
            await asyncio.Event().wait()
        await asyncio.sleep(0)


class Clock:
    """Wall-clock nanoseconds, strictly increasing from call to call."""

    def __init__(self) -> None:
        self.last = 0

    def __call__(self) -> int:
        self.last = max(self.last + 1, time.time_ns())
        return self.last


class Harness:
    """Collects a session's frames and events; builds sessions with fast fakes."""

    def __init__(self, sleep: FakeSleep | None = None) -> None:
        self.frames: list[tuple[int, str | bytes]] = []
        self.events: list[SessionEvent] = []
        self.changed = asyncio.Event()
        self.sleep = sleep or FakeSleep()
        self.tokens = 0
        self.stop = asyncio.Event()

    def on_frame(self, ts: int, raw: str | bytes) -> None:
        self.frames.append((ts, raw))

    def on_event(self, event: SessionEvent) -> None:
        self.events.append(event)
        self.changed.set()

    async def token(self) -> str:
        self.tokens += 1
        return f"tok-{self.tokens}"

    def session(self, url: str, items: list[str], **kw: Any) -> Session:
        args: dict[str, Any] = {
            "token": self.token,
            "types": ["0B", "0D"],
            "on_frame": self.on_frame,
            "on_event": self.on_event,
            "clock_ns": Clock(),
            "sleep": self.sleep,
            "rng": random.Random(7),
        }
        return Session(url, items=items, **(args | kw))

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    async def wait_event(self, kind: str, count: int = 1) -> None:
        while self.kinds().count(kind) < count:
            self.changed.clear()
            await self.changed.wait()


def run(coro: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(WAIT_S):
            return await coro

    return asyncio.run(bounded())


async def stop_and_join(h: Harness, task: asyncio.Task[None]) -> None:
    """Set stop and wait for run() to return. A run() that does not return promptly fails
    the test through the WAIT_S bound of :func:`run`; nothing here measures time."""
    h.stop.set()
    await task


# --------------------------------------------------------------------------- 1. happy path


def test_happy_path_login_reg_ping_echo_and_frames() -> None:
    items = codes(100) + codes(100, "_NX")  # 005930 and 005930_NX are two codes (§9 #13)
    echoes: list[str | bytes] = []
    done = asyncio.Event()

    async def script(c: Conn) -> None:
        await c.login()
        await c.ack_regs(2)
        await c.send('{"data":[],"trnm":"REAL"}')
        await c.send("not json")
        for ping in ('{"trnm":"PING","x":1}', "PING"):
            await c.send(ping)
            echoes.append(await c.recv())
        done.set()
        await c.drain()

    calls: list[dict[str, Any]] = []

    def connect(*args: Any, **kw: Any) -> Any:
        calls.append(kw)
        return websockets.asyncio.client.connect(*args, **kw)

    async def main() -> None:
        h = Harness()
        async with FakeKiwoom(script) as srv:
            s = h.session(srv.url, items, connect=connect)
            task = asyncio.create_task(s.run(h.stop))
            await done.wait()
            await stop_and_join(h, task)
        # §1: no RFC 6455 pings (the official client turns them off); big REAL frames fit.
        assert calls[0]["ping_interval"] is None and calls[0]["max_size"] >= 16 * 2**20
        conn = srv.conns[0]
        assert orjson.loads(conn.received[0]) == {"trnm": "LOGIN", "token": "tok-1"}
        assert "Bearer" not in conn.received[0]
        regs = conn.regs()
        assert [len(r["data"][0]["item"]) for r in regs] == [100, 100]
        assert all(r["grp_no"] == "1" and r["refresh"] == "1" for r in regs)
        assert all(r["data"][0]["type"] == ["0B", "0D"] for r in regs)
        assert [i for r in regs for i in r["data"][0]["item"]] == items
        assert echoes == ['{"trnm":"PING","x":1}', "PING"]  # byte for byte, text frames
        assert len(conn.received) == 5  # LOGIN, 2 REG, 2 echoes: nothing for REAL/garbage
        assert [raw for _, raw in h.frames] == conn.sent
        stamps = [ts for ts, _ in h.frames]
        assert stamps == sorted(set(stamps))
        assert conn.ws.close_code == 1000
        assert h.kinds() == ["connected", "subscribed"]
        st_ = s.stats
        assert (st_.connects, st_.logins, st_.regs_sent, st_.regs_refused) == (1, 1, 2, 0)
        assert (st_.pings_received, st_.pings_echoed, st_.frames) == (2, 2, 7)
        assert st_.last_frame_ns == stamps[-1]

    run(main())


# --------------------------------------------------------------------------- 2. PING first


def test_ping_before_login_reply_is_echoed() -> None:
    done = asyncio.Event()
    echoed: list[str | bytes] = []

    async def script(c: Conn) -> None:
        await c.recv()  # LOGIN
        await c.send(PING)
        echoed.append(await c.recv())
        await c.send(OK_LOGIN)
        await c.ack_regs(1)
        done.set()
        await c.drain()

    async def main() -> None:
        h = Harness()
        async with FakeKiwoom(script) as srv:
            task = asyncio.create_task(h.session(srv.url, codes(3)).run(h.stop))
            await done.wait()
            await h.wait_event("subscribed")
            await stop_and_join(h, task)
        assert echoed == [PING]
        assert h.kinds() == ["connected", "subscribed"]

    run(main())


# --------------------------------------------------------------------------- 3. LOGIN refused


def test_login_refused_raises_auth_error_without_retry() -> None:
    refused = orjson.dumps({"trnm": "LOGIN", "return_code": 805004, "return_msg": BAD_LOGIN_MSG}).decode()
    after_system: list[str | bytes] = []

    async def script(c: Conn) -> None:
        await c.recv()
        await c.send(R10004)  # production sends this before the reply (§3.1)
        await c.send(PING)
        after_system.append(await c.recv())  # the PING echo; a SYSTEM echo would come first
        await c.send(refused)
        await c.ws.close()

    async def main() -> None:
        h = Harness()
        async with FakeKiwoom(script) as srv:
            with pytest.raises(AuthError) as err:
                await h.session(srv.url, codes(3)).run(h.stop)
        assert "805004" in str(err.value) and BAD_LOGIN_MSG in str(err.value)
        assert len(srv.conns) == 1 and h.tokens == 1 and h.sleep.delays == []
        assert after_system == [PING]
        assert h.kinds() == ["system", "login_failed"]
        assert BAD_LOGIN_MSG in h.events[1].detail

    run(main())


# --------------------------------------------------------------------------- 4. reconnects


def test_reconnects_after_clean_close_and_tcp_abort() -> None:
    items = codes(5)
    done = asyncio.Event()

    async def close_clean(c: Conn) -> None:
        await c.login()
        await c.ack_regs(1)
        await c.ws.close(1000, "maintenance")

    async def abort(c: Conn) -> None:
        await c.login()
        await c.ack_regs(1)
        c.ws.transport.abort()

    stay = staying(done)

    async def main() -> None:
        h = Harness()
        async with FakeKiwoom(close_clean, abort, stay) as srv:
            s = h.session(srv.url, items, tuning=SessionTuning(backoff_cap_s=60.0), rng=random.Random(8))
            task = asyncio.create_task(s.run(h.stop))
            await done.wait()
            await h.wait_event("disconnect", 2)
            await stop_and_join(h, task)
        assert [orjson.loads(c.received[0])["token"] for c in srv.conns] == ["tok-1", "tok-2", "tok-3"]
        for c in srv.conns:
            assert [r["data"][0]["item"] for r in c.regs()] == [items]
        gaps = [e for e in h.events if e.kind == "disconnect"]
        assert all(e.end_ns is not None and e.start_ns < e.end_ns for e in gaps)
        assert "1000" in gaps[0].detail and "maintenance" in gaps[0].detail
        assert "without a close frame" in gaps[1].detail
        assert gaps[0].symbols == ()
        # Each connection was healthy, so each wait is only the reconnect jitter, drawn
        # from the session's rng: under 0.1 s, and not the same twice.
        rng = random.Random(8)
        assert h.sleep.delays == [rng.uniform(0.0, 0.1), rng.uniform(0.0, 0.1)]
        assert all(0.0 <= d < 0.1 for d in h.sleep.delays) and len(set(h.sleep.delays)) == 2
        assert s.stats.reconnects == 2 and s.stats.logins == 3

    run(main())


def test_backoff_only_for_consecutive_failures_and_reset_by_a_healthy_connection() -> None:
    done = asyncio.Event()

    async def healthy_then_close(c: Conn) -> None:
        await c.login()
        await c.ack_regs(1)
        await c.ws.close(1000, "Bye")

    async def fail(c: Conn) -> None:
        await c.recv()  # LOGIN, never answered: the attempt never gets subscribed
        await c.ws.close(1000)

    scripts = (healthy_then_close, fail, fail, fail, healthy_then_close, fail, staying(done))

    async def main() -> Session:
        h = Harness()
        async with FakeKiwoom(*scripts) as srv:
            tuning = SessionTuning(reconnect_jitter_s=0.1, backoff_base_s=1.0, backoff_cap_s=60.0)
            s = h.session(srv.url, codes(2), tuning=tuning, rng=random.Random(3))
            task = asyncio.create_task(s.run(h.stop))
            await done.wait()
            await h.wait_event("disconnect", 2)
            await stop_and_join(h, task)
        # The same draws from the same seed: a jitter after each healthy close, then the
        # backoff for each consecutive failure, started over after the healthy connection.
        rng = random.Random(3)
        first = rng.uniform(0.0, 0.1)
        fails = backoff(1.0, 60.0, rng)
        three = [next(fails) for _ in range(3)]
        second = rng.uniform(0.0, 0.1)
        again = next(backoff(1.0, 60.0, rng))
        assert h.sleep.delays == [first, *three, second, again]
        assert first < 0.1 and second < 0.1
        assert 1.0 <= three[0] <= 3.0 and 1.0 <= again <= 3.0  # reset: a first step again
        assert three[2] > 3.0  # ...where a third failure in a row waits longer
        gaps = [e for e in h.events if e.kind == "disconnect"]
        assert "4 reconnect attempt(s)" in gaps[0].detail and "2 reconnect attempt(s)" in gaps[1].detail
        return s

    s = run(main())
    assert s.stats.reconnects == 6 and s.stats.logins == 3


class VenueHarness(Harness):
    """A :class:`Harness` that keeps one timeline of the session's events and requested
    sleeps, and counts REAL frames since the last ``subscribed``."""

    def __init__(self) -> None:
        self.timeline: list[Any] = []
        super().__init__(FakeSleep(log=self.timeline))
        self.reals_since_subscribed = 0

    def on_frame(self, ts: int, raw: str | bytes) -> None:
        super().on_frame(ts, raw)
        if classify(raw).kind is FrameKind.REAL:
            self.reals_since_subscribed += 1
            self.changed.set()

    def on_event(self, event: SessionEvent) -> None:
        self.timeline.append(event.kind)
        if event.kind == "subscribed":
            self.reals_since_subscribed = 0
        super().on_event(event)

    async def wait_data(self, subscriptions: int) -> None:
        """Until the ``subscriptions``-th subscription has delivered a REAL frame."""
        while self.kinds().count("subscribed") < subscriptions or not self.reals_since_subscribed:
            self.changed.clear()
            await self.changed.wait()


def test_fast_reconnect_against_the_venue_reuses_the_token_and_waits_long_only_after_a_kick() -> None:
    """Close, drop, kick: each is followed by LOGIN and REG again and data flows; the waits
    asked for are a jitter under 0.1 s after the close and the drop, kicked_backoff_s after
    the kick (the injected sleep returns at once: nothing here depends on speed)."""
    symbols = ["005930", "000660", "373220"]
    cfg = VenueConfig(symbols=symbols, venues=("KRX",), tick_interval=0.01, trade_rate=20.0, seed=4)
    h = VenueHarness()

    async def main() -> tuple[Venue, Session]:
        creds = Credentials("venue-appkey-0001", "venue-secret-0001")
        async with Venue(cfg) as venue, KiwoomRest(venue.rest_url, creds) as rest:
            tuning = SessionTuning(reg_batch=2, reg_per_s=4.0, kicked_backoff_s=60.0)
            s = h.session(venue.ws_url, symbols, token=rest.token, tuning=tuning, rng=random.Random(5))
            task = asyncio.create_task(s.run(h.stop))
            await h.wait_data(1)
            await venue.close_all(1000, "Bye")
            await h.wait_data(2)
            await venue.drop_all()
            await h.wait_data(3)
            await venue.kick_all()
            await h.wait_data(4)
            await stop_and_join(h, task)
        return venue, s

    venue, s = asyncio.run(asyncio.wait_for(main(), 60))
    rng = random.Random(5)
    jitters = [rng.uniform(0.0, 0.1), rng.uniform(0.0, 0.1)]
    # The first REG goes out as soon as LOGIN is answered; only the second batch is paced.
    subscribe = ["connected", ("sleep", 0.25), "subscribed"]
    assert h.timeline == [
        *subscribe,
        ("sleep", jitters[0]),  # after the server's close
        *subscribe,
        "disconnect",
        ("sleep", jitters[1]),  # after the drop
        *subscribe,
        "disconnect",
        "kicked",
        ("sleep", 60.0),  # after the kick
        *subscribe,
        "kicked",
    ]
    assert all(j < 0.1 for j in jitters)
    st_ = venue.stats
    assert (st_.connections, st_.logins, st_.regs, st_.kicks) == (4, 4, 8, 1)
    assert st_.tokens_issued == 1  # one token, reused by every LOGIN until it expires
    assert s.stats.reconnects == 3 and s.stats.logins == 4


# --------------------------------------------------------------------------- 5. kicked


def test_kicked_by_r10001_waits_long_and_never_echoes_system() -> None:
    after_system: list[str | bytes] = []
    done = asyncio.Event()

    async def kick(c: Conn) -> None:
        await c.login()
        await c.ack_regs(1)
        await c.send(R10001)
        await c.send(PING)
        after_system.append(await c.recv())
        await c.ws.close(1000, "Bye")

    stay = staying(done)

    async def main() -> None:
        h = Harness()
        async with FakeKiwoom(kick, stay) as srv:
            s = h.session(srv.url, codes(2), tuning=SessionTuning(kicked_backoff_s=60.0))
            task = asyncio.create_task(s.run(h.stop))
            await done.wait()
            await h.wait_event("kicked", 2)
            await stop_and_join(h, task)
        assert after_system == [PING]
        assert h.sleep.delays == [60.0]
        notice, gap = (e for e in h.events if e.kind == "kicked")
        assert notice.end_ns is None and "R10001" in notice.detail
        assert gap.start_ns == notice.start_ns and gap.end_ns is not None
        assert gap.start_ns < gap.end_ns
        assert "disconnect" not in h.kinds()

    run(main())


# --------------------------------------------------------------------------- 6. REG refusals


def test_reg_rate_limited_is_resent_and_rejected_batch_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    items = codes(6)
    replies = iter([ack(105110, "허용 요청 건수 초과"), ack(), ack(105115, "too many"), ack()])
    done = asyncio.Event()

    async def script(c: Conn) -> None:
        await c.login()
        await c.ack_regs(4, replies)
        done.set()
        await c.drain()

    async def main() -> Session:
        h = Harness()
        async with FakeKiwoom(script) as srv:
            s = h.session(srv.url, items, tuning=SessionTuning(reg_batch=2, reg_per_s=4.0, reg_retry_s=1.5))
            task = asyncio.create_task(s.run(h.stop))
            await done.wait()
            await h.wait_event("subscribed")
            await stop_and_join(h, task)
        sent = [r["data"][0]["item"] for r in srv.conns[0].regs()]
        assert sent == [items[0:2], items[0:2], items[2:4], items[4:6]]
        assert h.sleep.delays == [1.5, 0.25, 0.25]
        rejected = [e for e in h.events if e.kind == "reg_rejected"]
        assert len(rejected) == 1 and rejected[0].symbols == tuple(items[2:4])
        assert "105115" in rejected[0].detail
        assert h.events[-1].kind == "subscribed"
        assert h.events[-1].symbols == (*items[0:2], *items[4:6])
        return s

    s = run(main())
    assert (s.stats.regs_sent, s.stats.regs_refused) == (4, 2)
    assert any(r.levelno == logging.ERROR and "105115" in r.getMessage() for r in caplog.records)


def test_reg_rate_limit_gives_up_after_max_retries() -> None:
    done = asyncio.Event()

    async def script(c: Conn) -> None:
        await c.login()
        await c.ack_regs(3, iter([ack(105110)] * 3))
        done.set()
        await c.drain()

    async def main() -> None:
        h = Harness()
        async with FakeKiwoom(script) as srv:
            s = h.session(srv.url, codes(2), tuning=SessionTuning(max_reg_retries=2, reg_retry_s=1.5))
            task = asyncio.create_task(s.run(h.stop))
            await done.wait()
            await h.wait_event("reg_rejected")
            await stop_and_join(h, task)
        assert h.sleep.delays == [1.5, 1.5]
        assert h.kinds() == ["connected", "reg_rejected"]  # nothing registered: no "subscribed"

    run(main())


# --------------------------------------------------------------------------- 7. code limit


def _session(items: list[str], **kw: Any) -> Session:
    async def token() -> str:
        return "t"

    return Session(
        "ws://127.0.0.1:9", token, items, ["0B"], on_frame=lambda *_: None, on_event=lambda _: None, **kw
    )


def test_more_than_200_codes_is_refused_with_advice() -> None:
    with pytest.raises(ConfigError) as err:
        _session(codes(250))
    text = str(err.value)
    assert "250 codes" in text and "200" in text and "2 keys are needed" in text and "app key" in text
    _session(codes(100) + codes(100, "_NX") + codes(5))  # duplicates count once
    with pytest.raises(ConfigError):
        _session(codes(100) + codes(101, "_NX"))
    with pytest.raises(ConfigError, match="150"):
        _session(codes(151), max_codes=150)
    with pytest.raises(ConfigError, match="sequence"):
        _session("005930")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        _session([])


@pytest.mark.parametrize(
    "bad",
    [
        {"reg_batch": 0},
        {"reg_per_s": 0.0},
        {"login_timeout_s": -1.0},
        {"stale_after_s": 0.0},
        {"backoff_base_s": -0.1},
        {"reconnect_jitter_s": -0.01},
        {"kicked_backoff_s": -1.0},
        {"max_reg_retries": -1},
    ],
)
def test_nonsensical_tuning_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SessionTuning(**bad)


# --------------------------------------------------------------------------- 8. REG pacing


@pytest.mark.parametrize("per_s", [4.0, 2.0])
def test_reg_pacing_stays_under_the_rate(per_s: float) -> None:
    timeline: list[Any] = []
    done = asyncio.Event()

    async def script(c: Conn) -> None:
        await c.login()
        for _ in range(5):
            while orjson.loads(await c.recv())["trnm"] != "REG":
                pass
            timeline.append("reg")
            await c.send(ack())
        done.set()
        await c.drain()

    async def main() -> None:
        h = Harness(FakeSleep(log=timeline))
        async with FakeKiwoom(script) as srv:
            task = asyncio.create_task(
                h.session(srv.url, codes(10), tuning=SessionTuning(reg_batch=2, reg_per_s=per_s)).run(h.stop)
            )
            await done.wait()
            await stop_and_join(h, task)

    run(main())
    # Virtual time of each REG = sum of the sleeps requested before it.
    t, sends = 0.0, []
    for entry in timeline:
        if entry == "reg":
            sends.append(t)
        else:
            t += entry[1]
    assert len(sends) == 5
    n = int(per_s)
    assert all(sends[i + n] - sends[i] >= 1.0 - 1e-9 for i in range(len(sends) - n))


def test_frames_received_before_a_close_are_all_handed_on_even_when_an_echo_fails() -> None:
    """The server sends PING, SYSTEM R10002 and its close frame in one write: the client reads
    the PING, and its echo fails because the close has already arrived. The SYSTEM frame, read
    off the socket but not yet by the session, must still reach on_frame (the journal)."""
    done = asyncio.Event()
    r10002 = '{"trnm":"SYSTEM","code":"R10002","message":"heartbeat"}'

    async def ping_system_close(c: Conn) -> None:
        await c.login()
        await c.ack_regs(1)
        # Sans-I/O: queue the three frames, then write them to the socket in one go.
        c.ws.protocol.send_text(PING.encode())
        c.ws.protocol.send_text(r10002.encode())
        c.ws.protocol.send_close(1000)
        c.ws.send_data()
        await c.ws.wait_closed()

    async def main() -> None:
        h = Harness()
        async with FakeKiwoom(ping_system_close, staying(done)) as srv:
            task = asyncio.create_task(h.session(srv.url, codes(2)).run(h.stop))
            await done.wait()
            await h.wait_event("disconnect")
            await stop_and_join(h, task)
        first = [raw for _, raw in h.frames][:4]
        assert first == [OK_LOGIN, ack(), PING, r10002]
        assert "system" in h.kinds()  # the SYSTEM frame was handled too

    run(main())


# --------------------------------------------------------------------------- 9. stop


def test_stop_during_live_connection_closes_1000_promptly() -> None:
    async def script(c: Conn) -> None:
        await c.login()
        await c.ack_regs(1)
        await c.drain()

    async def main() -> None:
        h = Harness()
        async with FakeKiwoom(script) as srv:
            task = asyncio.create_task(h.session(srv.url, codes(2)).run(h.stop))
            await h.wait_event("subscribed")
            await stop_and_join(h, task)  # the pending read is cancelled
            await srv.conns[0].ws.wait_closed()
            assert srv.conns[0].ws.close_code == 1000
        assert h.kinds() == ["connected", "subscribed"]  # no gap: nothing was lost

    run(main())


def test_stop_while_waiting_for_login_reply() -> None:
    got_login = asyncio.Event()

    async def silent(c: Conn) -> None:
        await c.recv()
        got_login.set()
        await c.drain()

    async def main() -> None:
        h = Harness()
        async with FakeKiwoom(silent) as srv:
            task = asyncio.create_task(h.session(srv.url, codes(2)).run(h.stop))
            await got_login.wait()
            await stop_and_join(h, task)  # long before the 10 s LOGIN timeout
            await srv.conns[0].ws.wait_closed()
            assert srv.conns[0].ws.close_code == 1000

    run(main())


def test_stop_during_backoff_emits_the_open_gap() -> None:
    async def close(c: Conn) -> None:
        await c.login()
        await c.ack_regs(1)
        await c.ws.close(1000)

    async def main() -> None:
        h = Harness(FakeSleep(block=True))
        async with FakeKiwoom(close) as srv:
            task = asyncio.create_task(h.session(srv.url, codes(2)).run(h.stop))
            await h.sleep.entered.wait()
            await stop_and_join(h, task)  # the blocked sleep is cancelled
            assert len(srv.conns) == 1
        gap = h.events[-1]
        assert gap.kind == "disconnect" and gap.end_ns is not None and gap.start_ns < gap.end_ns
        assert "stopped" in gap.detail and "1000" in gap.detail

    run(main())


def test_login_timeout_and_early_close_are_retried() -> None:
    done = asyncio.Event()

    async def silent(c: Conn) -> None:
        await c.recv()
        await c.drain()

    async def close_before_reply(c: Conn) -> None:
        await c.recv()
        await c.ws.close(1000)  # seen during rapid reconnects (§3.1 item 4): not an auth failure

    stay = staying(done)

    async def main() -> None:
        h = Harness()
        async with FakeKiwoom(silent, close_before_reply, stay) as srv:
            s = h.session(srv.url, codes(2), tuning=SessionTuning(login_timeout_s=1.0, backoff_cap_s=1.2))
            task = asyncio.create_task(s.run(h.stop))
            await done.wait()
            await h.wait_event("subscribed")
            await stop_and_join(h, task)
        assert len(srv.conns) == 3 and len(h.sleep.delays) == 2
        assert all(1.0 <= d <= 1.2 for d in h.sleep.delays)  # capped
        assert "disconnect" not in h.kinds()  # never subscribed before: no gap

    run(main())


def test_unreachable_server_is_retried_and_bad_url_is_config_error() -> None:
    async def main() -> None:
        h = Harness(FakeSleep(block=True))
        task = asyncio.create_task(h.session("ws://127.0.0.1:1/x", codes(1)).run(h.stop))
        await h.sleep.entered.wait()  # connection refused → backoff, not an exception
        await stop_and_join(h, task)  # the blocked sleep is cancelled
        with pytest.raises(ConfigError):
            await Harness().session("http://127.0.0.1:1/x", codes(1)).run(asyncio.Event())

    run(main())


def test_on_frame_failure_stops_the_session() -> None:
    async def script(c: Conn) -> None:
        await c.login()
        await c.drain()

    def failing(ts: int, raw: str | bytes) -> None:
        raise JournalError("disk full")

    async def main() -> None:
        h = Harness()
        async with FakeKiwoom(script) as srv:
            s = h.session(srv.url, codes(1), on_frame=failing)  # the journal write fails
            with pytest.raises(JournalError):
                await s.run(h.stop)
            assert len(srv.conns) == 1

    run(main())


# --------------------------------------------------------------------------- 10. token


def test_token_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    secret = "SECRET-tok-9f8e7d6c5b4a"
    refused = orjson.dumps({"trnm": "LOGIN", "return_code": 805004, "return_msg": "bad"}).decode()

    async def token() -> str:
        return secret

    async def first(c: Conn) -> None:
        await c.login()
        await c.ack_regs(1)
        await c.send(PING)
        await c.recv()
        await c.ws.close(1011, "oops")

    async def second(c: Conn) -> None:
        await c.login(refused)

    async def main() -> None:
        h = Harness()
        async with FakeKiwoom(first, second) as srv:
            with pytest.raises(AuthError) as err:
                await h.session(srv.url, codes(2), token=token).run(h.stop)
        assert secret in srv.conns[0].received[0]  # it was sent...
        assert secret not in str(err.value)
        assert all(secret not in e.detail for e in h.events)

    caplog.set_level(logging.DEBUG)
    run(main())
    assert any("LOGIN frame withheld" in r.getMessage() for r in caplog.records)
    assert secret not in caplog.text  # ...and never logged


# --------------------------------------------------------------------------- 11. pure helpers


@given(
    base=st.floats(0, 100),
    cap=st.floats(0, 1000),
    seed=st.integers(0, 2**32),
    n=st.integers(1, 60),
)
def test_backoff_properties(base: float, cap: float, seed: int, n: int) -> None:
    delays = list(itertools.islice(backoff(base, cap, random.Random(seed)), n))
    assert all(min(base, cap) <= d <= cap for d in delays)
    assert delays == list(itertools.islice(backoff(base, cap, random.Random(seed)), n))


def test_backoff_grows_to_the_cap_with_jitter() -> None:
    delays = list(itertools.islice(backoff(1.0, 60.0, random.Random(1)), 40))
    assert delays[0] < 3.0 and max(delays) > 30.0 and len(set(delays)) > 30
    with pytest.raises(ValueError):
        next(backoff(-1.0, 1.0, random.Random(1)))


@given(
    seed=st.integers(0, 2**32),
    outcomes=st.lists(st.tuples(st.booleans(), st.booleans()), max_size=40),
)
def test_reconnect_delays_properties(seed: int, outcomes: list[tuple[bool, bool]]) -> None:
    delays = ReconnectDelays(base_s=1.0, cap_s=30.0, jitter_s=0.1, kicked_s=60.0, rng=random.Random(seed))
    failures = 0
    for healthy, kicked in outcomes:
        failures = 0 if healthy else failures + 1
        delay = delays.after(healthy=healthy, kicked=kicked)
        assert delays.failures == failures
        if kicked:
            assert delay == 60.0
        elif healthy:
            assert 0.0 <= delay < 0.1
        elif failures == 1:
            assert 1.0 <= delay <= 3.0  # the first step of a fresh backoff
        else:
            assert 1.0 <= delay <= 30.0
    with pytest.raises(ValueError):
        ReconnectDelays(base_s=1.0, cap_s=1.0, jitter_s=-0.1, kicked_s=1.0, rng=random.Random(1))


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        (TransportError("x"), True),
        (KiwoomError(1, "x"), True),
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (ConnectionClosed(None, None), True),
        (AuthError("x"), False),
        (ConfigError("x"), False),
        (InvalidURI("http://x", "not ws"), False),
        (JournalError("x"), False),
        (ValueError("bug"), False),
    ],
)
def test_is_retryable(exc: BaseException, retry: bool) -> None:
    assert is_retryable(exc) is retry


# --------------------------------------------------------------------------- staleness


def test_silent_connection_is_replaced_with_a_stale_gap_but_pings_keep_it_alive() -> None:
    items = codes(3)
    done = asyncio.Event()

    async def pings_only(c: Conn) -> None:
        """No data at all, but PINGs more often than the staleness limit: healthy."""
        await c.login()
        await c.ack_regs(1)
        for _ in range(6):
            await c.send('{"trnm":"PING"}')
            await c.recv()  # the echo arrives before the next PING: no timer involved
        # Then silence, like a half-open connection, until the client gives up on it.
        await c.ws.wait_closed()

    stay = staying(done)

    async def main() -> None:
        h = Harness()
        async with FakeKiwoom(pings_only, stay) as srv:
            s = h.session(srv.url, items, tuning=SessionTuning(stale_after_s=1.0))
            task = asyncio.create_task(s.run(h.stop))
            await done.wait()
            await h.wait_event("stale")
            await stop_and_join(h, task)
        (gap,) = [e for e in h.events if e.kind == "stale"]
        assert "not even a PING" in gap.detail and gap.end_ns is not None
        last_ping = [ts for ts, raw in h.frames if raw == '{"trnm":"PING"}'][-1]
        assert gap.start_ns == last_ping  # the hole starts at the last frame, not when noticed
        assert s.stats.pings_echoed == 6 and "disconnect" not in h.kinds()

    run(main())
