"""Tests for recorder.sim.venue: a real server on 127.0.0.1:0, real httpx and websockets clients.

No sleeps and no patching: tests wait on the venue's condition (``venue.wait_for``) or on
frames arriving, always under a timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK

from recorder.kiwoom.frames import FrameKind, build_login, build_reg, build_remove, classify
from recorder.sim.venue import Venue, VenueConfig, serve
from tests.helpers import Clock, async_test

SYMBOLS = ["005930", "000660", "373220"]
CREDS = {"grant_type": "client_credentials", "appkey": "app-key", "secretkey": "secret-key"}


def config(**kw: Any) -> VenueConfig:
    base: dict[str, Any] = {"symbols": SYMBOLS, "appkey": "app-key", "secretkey": "secret-key"}
    return VenueConfig(**{**base, **kw})


async def issue_token(venue: Venue, **body: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=venue.rest_url) as http:
        r = await http.post("/oauth2/token", json={**CREDS, **body})
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


async def token_of(venue: Venue) -> str:
    return str((await issue_token(venue))["token"])


async def recv(ws: ClientConnection, timeout: float = 5.0) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), timeout)


async def recv_json(ws: ClientConnection) -> dict[str, Any]:
    return orjson.loads(await recv(ws))  # type: ignore[no-any-return]


async def closed_by_server(ws: ClientConnection) -> ConnectionClosed:
    """Read until the server closes; fail on anything but PING/REAL frames meanwhile."""
    try:
        while True:
            kind = classify(await recv(ws)).kind
            assert kind in (FrameKind.PING, FrameKind.REAL), kind
    except ConnectionClosed as exc:
        return exc


@asynccontextmanager
async def session(venue: Venue, token: str) -> AsyncIterator[ClientConnection]:
    """A logged-in client (PINGs before the LOGIN reply are echoed, §3.1.4)."""
    async with connect(venue.ws_url, ping_interval=None) as ws:
        await ws.send(build_login(token))
        while True:
            raw = await recv(ws)
            msg = classify(raw)
            if msg.kind is FrameKind.PING:
                await ws.send(raw)
                continue
            assert msg.kind is FrameKind.LOGIN and msg.return_code == 0, raw
            break
        yield ws


async def request(ws: ClientConnection, frame: str) -> dict[str, Any]:
    """Send a REG/REMOVE and return its reply, skipping REAL and PING frames."""
    await ws.send(frame)
    while True:
        raw = await recv(ws)
        if classify(raw).kind not in (FrameKind.REAL, FrameKind.PING):
            return orjson.loads(raw)  # type: ignore[no-any-return]


async def real_entries(ws: ClientConnection, n: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Read REAL frames until ``n`` entries arrived; returns (entries, raw frames)."""
    entries: list[dict[str, Any]] = []
    frames: list[str] = []
    while len(entries) < n:
        raw = await recv(ws)
        if classify(raw).kind is FrameKind.REAL:
            frames.append(str(raw))
            entries.extend(orjson.loads(raw)["data"])
    return entries, frames


# --------------------------------------------------------------------------- REST


@async_test
async def test_token_issue_and_errors() -> None:
    async with Venue(config(clock=Clock())) as venue:
        ok = await issue_token(venue)
        assert ok["return_code"] == 0 and ok["token_type"] == "bearer" and ok["token"]
        assert ok["expires_dt"] == "20260721102756"  # issued + 24 h, KST (§2.1)
        bad = await issue_token(venue, secretkey="wrong")
        assert bad["return_code"] != 0 and "[8002:" in bad["return_msg"] and "token" not in bad
        assert "[8012:" in (await issue_token(venue, grant_type="password"))["return_msg"]
        async with httpx.AsyncClient(base_url=venue.rest_url) as http:
            r = await http.post("/oauth2/token", json={"appkey": "a", "secretkey": "b"})
            assert "[8011:" in r.json()["return_msg"]
        assert venue.stats.tokens_issued == 1


@async_test
async def test_token_expiry_revoke_and_reissue() -> None:
    clock = Clock()
    cfg = config(clock=clock, token_lifetime_s=60, revoke_previous_token=True)
    async with Venue(cfg) as venue, httpx.AsyncClient(base_url=venue.rest_url) as http:
        first, second = await token_of(venue), await token_of(venue)
        assert venue.appkey_of(first) is None  # re-issue revoked it (§2.1, H-PLAN)
        assert venue.appkey_of(second) == "app-key"
        r = await http.post("/oauth2/revoke", json={**CREDS, "token": second})
        assert r.json() == {"return_code": 0, "return_msg": "정상적으로 처리되었습니다"}
        assert venue.appkey_of(second) is None
        r = await http.post("/oauth2/revoke", json={**CREDS, "token": second})
        assert r.json()["return_code"] != 0
        third = await token_of(venue)
        clock.now += 61 * 10**9
        assert venue.appkey_of(third) is None  # expired


async def ka10099(
    http: httpx.AsyncClient, token: str, mrkt_tp: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    h = {"api-id": "ka10099", "authorization": f"Bearer {token}", **(headers or {})}
    return await http.post("/api/dostk/stkinfo", json={"mrkt_tp": mrkt_tp}, headers=h)


@async_test
async def test_ka10099_single_page() -> None:
    async with Venue(config(symbols=(), n_symbols=40)) as venue:
        token = await token_of(venue)
        async with httpx.AsyncClient(base_url=venue.rest_url) as http:
            kospi, kosdaq = await ka10099(http, token, "0"), await ka10099(http, token, "10")
            etf = await ka10099(http, token, "8")
        for r, code in ((kospi, "0"), (kosdaq, "10")):
            assert r.status_code == 200 and r.headers["cont-yn"] == "N"
            body = r.json()
            assert body["return_code"] == 0 and body["list"]
            assert {row["marketCode"] for row in body["list"]} == {code}
        rows = kospi.json()["list"] + kosdaq.json()["list"]
        assert sorted(rows, key=lambda r: r["code"]) == sorted(
            venue.feed.symbols_info(), key=lambda r: r["code"]
        )
        assert etf.json()["list"] == []


@async_test
async def test_ka10099_forced_paging() -> None:
    async with Venue(config(symbols=(), n_symbols=40, ka10099_page_size=4, rest_rate_limit=100)) as venue:
        token = await token_of(venue)
        pages: list[list[dict[str, Any]]] = []
        headers: dict[str, str] = {}
        async with httpx.AsyncClient(base_url=venue.rest_url) as http:
            while True:
                r = await ka10099(http, token, "0", headers)
                body = r.json()
                assert body["return_code"] == 0 and r.headers["api-id"] == "ka10099"
                pages.append(body["list"])
                if r.headers["cont-yn"] != "Y":
                    break
                headers = {"cont-yn": "Y", "next-key": r.headers["next-key"]}
        expected = [r for r in venue.feed.symbols_info() if r["marketCode"] == "0"]
        assert len(pages) == -(-len(expected) // 4) > 1
        assert all(len(p) == 4 for p in pages[:-1])
        assert [row for p in pages for row in p] == expected


@async_test
async def test_rest_auth_errors() -> None:
    async with Venue(config()) as venue, httpx.AsyncClient(base_url=venue.rest_url) as http:
        r = await http.post("/api/dostk/stkinfo", json={"mrkt_tp": "0"}, headers={"api-id": "ka10099"})
        assert r.status_code == 200 and "[1513:" in r.json()["return_msg"]
        r = await ka10099(http, "not-a-token", "0")
        assert r.json() == {
            "return_code": 3,
            "return_msg": "인증에 실패했습니다[8005:Token이 유효하지 않습니다]",
        }
        token = await token_of(venue)
        r = await ka10099(http, token, "0", {"api-id": "ka99999"})
        assert r.json()["return_code"] != 0


@async_test
async def test_rest_rate_limit() -> None:
    clock = Clock()
    async with Venue(config(clock=clock)) as venue, httpx.AsyncClient(base_url=venue.rest_url) as http:
        token = await token_of(venue)
        codes = [(await ka10099(http, token, "0")).status_code for _ in range(6)]
        assert codes == [200] * 5 + [429]
        r = await ka10099(http, token, "0")
        assert r.json()["return_code"] == 5 and "[1700:" in r.json()["return_msg"]
        clock.now += 10**9  # the window moves on
        assert (await ka10099(http, token, "0")).status_code == 200
        assert venue.stats.rest_throttled == 2


@async_test
async def test_mock_mode_rest_is_one_per_second() -> None:
    async with Venue(config(clock=Clock(), mock_mode=True)) as venue:
        token = await token_of(venue)
        async with httpx.AsyncClient(base_url=venue.rest_url) as http:
            codes = [(await ka10099(http, token, "0")).status_code for _ in range(2)]
        assert codes == [200, 429]


# --------------------------------------------------------------------------- LOGIN


@async_test
async def test_login_ok_and_ping_before_login() -> None:
    async with Venue(config(ping_before_login=True)) as venue:
        async with connect(venue.ws_url, ping_interval=None) as ws:
            await ws.send(build_login(await token_of(venue)))
            ping = await recv(ws)
            assert ping == '{"trnm":"PING"}'
            await ws.send(ping)
            assert await recv_json(ws) == {"trnm": "LOGIN", "return_code": 0, "return_msg": "", "sor_yn": "Y"}
            await venue.wait_for(lambda: venue.stats.pings_echoed == 1)
        assert venue.stats.logins == 1 and venue.stats.login_failures == 0


@pytest.mark.parametrize("production", [True, False])
def test_login_bad_token(production: bool) -> None:
    async def body() -> None:
        async with Venue(config(send_r10004_on_bad_login=production)) as venue:
            async with connect(venue.ws_url, ping_interval=None) as ws:
                await ws.send(build_login("garbage"))
                if production:  # §3.1.3: R10004 first on production, not on mock
                    assert (await recv_json(ws))["code"] == "R10004"
                reply = await recv_json(ws)
                assert reply["trnm"] == "LOGIN" and reply["return_code"] == 805004
                assert "CODE=8005" in reply["return_msg"]
                closed = await closed_by_server(ws)
                assert isinstance(closed, ConnectionClosedOK)
            assert venue.stats.login_failures == 1 and venue.stats.logins == 0

    asyncio.run(asyncio.wait_for(body(), 15))


@async_test
async def test_login_timeout_sends_r10004() -> None:
    async with Venue(config(login_timeout=0.1)) as venue:
        async with connect(venue.ws_url, ping_interval=None) as ws:
            msg = await recv_json(ws)
            assert msg == {
                "trnm": "SYSTEM",
                "code": "R10004",
                "message": "접속허용요청(토큰)이 들어오지 않았습니다",
            }
            await closed_by_server(ws)
        assert venue.stats.login_timeouts == 1


# --------------------------------------------------------------------------- PING


@async_test
async def test_ping_echo_keeps_connection() -> None:
    # PINGs every 0.05 s, but a miss limit the 15 s bound of the test can never reach (at most
    # 300 ticks): a loaded machine that delays an echo past a few intervals does not close the
    # session. The close after missed echoes is test_unechoed_pings_close_with_r10002's.
    cfg = config(ping_interval=0.05, heartbeat_miss_limit=1000)
    async with Venue(cfg) as venue, session(venue, await token_of(venue)) as ws:

        async def echo() -> None:
            async for raw in ws:
                if classify(raw).kind is FrameKind.PING:
                    await ws.send(raw)

        echoer = asyncio.create_task(echo())
        await venue.wait_for(lambda: venue.stats.pings_echoed >= 8, timeout=14)
        assert venue.stats.heartbeat_closes == 0 and venue.stats.pings_echoed_not_verbatim == 0
        assert venue.stats.pings_unsolicited == 0
        assert [c.logged_in for c in venue.connections.values()] == [True]
        echoer.cancel()
        await asyncio.gather(echoer, return_exceptions=True)


@async_test
async def test_unechoed_pings_close_with_r10002() -> None:
    async with Venue(config(ping_interval=0.05, heartbeat_miss_limit=5)) as venue:
        async with session(venue, await token_of(venue)) as ws:
            frames = [await recv_json(ws) for _ in range(6)]
            assert frames[:5] == [{"trnm": "PING"}] * 5
            assert frames[5]["trnm"] == "SYSTEM" and frames[5]["code"] == "R10002"
            await closed_by_server(ws)
        assert venue.stats.pings_missed == 5 and venue.stats.heartbeat_closes == 1


@async_test
async def test_echoing_system_frame_closes() -> None:
    async with Venue(config()) as venue:
        async with session(venue, await token_of(venue)) as ws:
            await venue.send_raw_all('{"trnm":"SYSTEM","code":"R10009","message":"x"}')
            system = await recv(ws)
            await ws.send(system)  # §3.2: never do this
            await closed_by_server(ws)
        assert venue.stats.system_echo_closes == 1


# --------------------------------------------------------------------------- REG / REAL


@async_test
async def test_reg_cross_product_and_only_registered_items_flow() -> None:
    cfg = config(trade_rate=50.0, book_rate=20.0, batch_max=4)
    async with Venue(cfg) as venue, session(venue, await token_of(venue)) as ws:
        reg = orjson.dumps(
            {
                "trnm": "REG",
                "grp_no": "1",
                "refresh": "1",
                "data": [
                    {"item": ["005930", "000660_NX"], "type": ["0B", "0D"]},
                    {"item": ["373220"], "type": ["0B"]},
                ],
            }
        ).decode()
        assert await request(ws, reg) == {"trnm": "REG", "return_code": 0, "return_msg": ""}
        expected = {
            ("005930", "0B"),
            ("005930", "0D"),
            ("000660_NX", "0B"),
            ("000660_NX", "0D"),
            ("373220", "0B"),
        }
        entries, frames = await real_entries(ws, 150)
        assert {(e["item"], e["type"]) for e in entries} == expected
        sizes = [len(orjson.loads(f)["data"]) for f in frames]
        assert max(sizes) <= 4 and max(sizes) > 1
        assert all(f.endswith('"trnm":"REAL"}') for f in frames)  # trnm last, §4.1
        # Ground truth: the venue recorded exactly what the client read, in order.
        (cid,) = venue.connections
        await venue.wait_sent(len(entries), cid)
        assert venue.sent_entries(cid)[: len(entries)] == entries
        sent_real = [f.data for f in venue.frames if f.conn_id == cid and f.n_entries]
        assert sent_real[: len(frames)] == frames


@async_test
async def test_remove_and_refresh_zero() -> None:
    cfg = config(trade_rate=50.0, book_rate=20.0)
    async with Venue(cfg) as venue, session(venue, await token_of(venue)) as ws:
        assert (await request(ws, build_reg(SYMBOLS, ["0B", "0D"])))["return_code"] == 0
        reply = await request(ws, build_remove(["005930", "000660"], ["0B", "0D"]))
        assert reply == {"trnm": "REMOVE", "return_code": 0, "return_msg": ""}
        entries, _ = await real_entries(ws, 20)
        assert {e["item"] for e in entries} == {"373220"}
        # §3.4: refresh "0" replaces everything registered on the connection.
        assert (await request(ws, build_reg(["000660"], ["0D"], grp_no="2", refresh="0")))["return_code"] == 0
        entries, _ = await real_entries(ws, 10)
        assert {(e["item"], e["type"]) for e in entries} == {("000660", "0D")}
        assert venue.stats.regs == 2 and venue.stats.removes == 1


@async_test
async def test_reg_over_200_codes_is_refused() -> None:
    codes = [f"{i:06d}" for i in range(100000, 100200)]
    async with Venue(config()) as venue, session(venue, await token_of(venue)) as ws:
        assert (await request(ws, build_reg(codes[:150], ["0B"])))["return_code"] == 0
        assert (await request(ws, build_reg(codes[150:], ["0B", "0D"])))["return_code"] == 0
        assert (await request(ws, build_reg(codes, ["0D"])))["return_code"] == 0  # types are free
        assert (await request(ws, build_reg(["005930"], ["0B"])))["return_code"] == 105115
        (conn,) = venue.connections.values()
        assert len({item for item, _ in conn.subscriptions}) == 200
        assert venue.stats.refused_regs == 1


@async_test
async def test_reg_too_fast_is_refused() -> None:
    clock = Clock()
    async with Venue(config(clock=clock)) as venue, session(venue, await token_of(venue)) as ws:
        replies = [await request(ws, build_reg(["005930"], ["0B"])) for _ in range(6)]
        assert [r["return_code"] for r in replies] == [0] * 5 + [105110]
        assert replies[5]["return_msg"] == "허용 요청 건수 초과"
        clock.now += 10**9
        assert (await request(ws, build_reg(["005930"], ["0B"])))["return_code"] == 0


@async_test
async def test_refuse_next_reg_and_malformed_reg() -> None:
    async with Venue(config()) as venue, session(venue, await token_of(venue)) as ws:
        venue.refuse_next_reg(105118, "그룹 한도 초과")
        reply = await request(ws, build_reg(["005930"], ["0B"]))
        assert (reply["return_code"], reply["return_msg"]) == (105118, "그룹 한도 초과")
        assert (await request(ws, build_reg(["005930"], ["0B"])))["return_code"] == 0
        bad = await request(ws, '{"trnm":"REG","grp_no":"1","refresh":"1","data":[{"item":5}]}')
        assert bad["return_code"] != 0


@async_test
async def test_mock_mode_ignores_nx_items() -> None:
    cfg = config(mock_mode=True, trade_rate=50.0)
    async with Venue(cfg) as venue, session(venue, await token_of(venue)) as ws:
        reg = build_reg(["005930", "005930_NX", "000660_AL"], ["0B"])
        assert (await request(ws, reg))["return_code"] == 0
        entries, _ = await real_entries(ws, 10)
        assert {e["item"] for e in entries} == {"005930"}


# --------------------------------------------------------------------------- faults


@async_test
async def test_second_login_kicks_the_older_session() -> None:
    async with Venue(config()) as venue:
        token = await token_of(venue)
        async with session(venue, token) as old, session(venue, await token_of(venue)) as new:
            msg = await recv_json(old)
            assert msg == {
                "trnm": "SYSTEM",
                "code": "R10001",
                "message": "동일한 App key로 접속이 되었습니다. 기존 세션은 종료가 됩니다",
            }
            closed = await closed_by_server(old)
            assert closed.rcvd is not None
            assert (closed.rcvd.code, closed.rcvd.reason) == (1000, "Bye")
            assert (await request(new, build_reg(["005930"], ["0B"])))["return_code"] == 0
            assert [c.logged_in for c in venue.connections.values()] == [True]
        assert venue.stats.kicks == 1 and venue.stats.logins == 2


@async_test
async def test_drop_all_aborts_without_close_frame() -> None:
    async with Venue(config()) as venue, session(venue, await token_of(venue)) as ws:
        await venue.drop_all()
        closed = await closed_by_server(ws)
        assert isinstance(closed, ConnectionClosedError) and closed.rcvd is None
        assert not venue.connections


@async_test
async def test_close_all_and_kick_all() -> None:
    async with Venue(config(duplicate_login_kick=False)) as venue:
        token = await token_of(venue)
        async with session(venue, token) as a, session(venue, token) as b:
            ids = sorted(venue.connections)
            await venue.close_all(4000, "maintenance", conn_id=ids[0])
            closed = await closed_by_server(a)
            assert closed.rcvd is not None
            assert (closed.rcvd.code, closed.rcvd.reason) == (4000, "maintenance")
            await venue.kick_all()
            assert (await recv_json(b))["code"] == "R10001"
            closed = await closed_by_server(b)
            assert closed.rcvd is not None and closed.rcvd.reason == "Bye"
        assert not venue.connections and venue.stats.closed == 2


@async_test
async def test_send_raw_all_injects_frames_in_order() -> None:
    async with Venue(config()) as venue, session(venue, await token_of(venue)) as ws:
        await venue.send_raw_all("{not json")
        await venue.send_raw_all(b"\x00\xffbinary")
        await venue.send_raw_all('{"data":[{"type":"0Z"}],"trnm":"REAL"}')
        assert await recv(ws) == "{not json"
        assert await recv(ws) == b"\x00\xffbinary"
        assert await recv(ws) == '{"data":[{"type":"0Z"}],"trnm":"REAL"}'
        await venue.wait_for(lambda: len(venue.frames) == 4)  # LOGIN reply + 3 raw
        assert [f.data for f in venue.frames][1:] == [
            "{not json",
            b"\x00\xffbinary",
            '{"data":[{"type":"0Z"}],"trnm":"REAL"}',
        ]


class OneShotFeed:
    """A minimal feed: one hand-written entry on the first step (the seam for recorded data)."""

    def __init__(self) -> None:
        self.entry = {
            "values": {"20": "102756", "10": "-251000", "15": "+8", "13": "10055036"},
            "type": "0B",
            "name": "주식체결",
            "item": "005930",
        }
        self.done = False

    def step(self, now_ns: int) -> list[dict[str, Any]]:
        if self.done:
            return []
        self.done = True
        return [self.entry]

    def symbols_info(self) -> list[dict[str, Any]]:
        return [{"code": "005930", "marketCode": "0"}]


@async_test
async def test_custom_feed() -> None:
    feed = OneShotFeed()
    async with Venue(config(), feed=feed) as venue:
        async with session(venue, await token_of(venue)) as ws:
            await request(ws, build_reg(["005930"], ["0B"]))
            feed.done = False
            entries, _ = await real_entries(ws, 1)
            assert entries == [feed.entry]
        async with httpx.AsyncClient(base_url=venue.rest_url) as http:
            r = await ka10099(http, await token_of(venue), "0")
        assert r.json()["list"] == feed.symbols_info()


@async_test
async def test_serve_runs_until_cancelled() -> None:
    listening = asyncio.Event()
    urls: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "listening" in record.getMessage():
                urls.extend(str(a) for a in record.args or ())
                listening.set()

    logger = logging.getLogger("recorder.sim.venue")
    handler, old_level = Handler(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        task = asyncio.create_task(serve(config(appkey=None, secretkey=None)))
        await asyncio.wait_for(listening.wait(), 5)
        rest_url, ws_url = urls
        assert ws_url.startswith("ws://127.0.0.1:") and ws_url.endswith("/api/dostk/websocket")
        async with httpx.AsyncClient(base_url=rest_url) as http:
            r = await http.post("/oauth2/token", json={**CREDS, "appkey": "any", "secretkey": "x"})
        assert r.json()["return_code"] == 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


class BrokenFeed(OneShotFeed):
    def step(self, now_ns: int) -> list[dict[str, Any]]:
        raise ValueError("recording is corrupt")


@async_test
async def test_feed_failure_is_not_swallowed() -> None:
    with pytest.raises(ValueError, match="corrupt"):
        await serve(config(), feed=BrokenFeed())
    with pytest.raises(ValueError, match="corrupt"):
        async with Venue(config(), feed=BrokenFeed()) as venue:
            await venue.serve_forever()


@async_test
async def test_secrets_never_reach_the_logs() -> None:
    records: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("recorder")
    handler, old_level = Handler(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        async with Venue(config()) as venue:
            await issue_token(venue, secretkey="wrong")
            token = await token_of(venue)
            async with session(venue, token) as ws:
                await request(ws, build_reg(["005930"], ["0B"]))
            async with connect(venue.ws_url, ping_interval=None) as ws:
                await ws.send(build_login(token + "x"))
                assert (await recv_json(ws))["code"] == "R10004"
                assert (await recv_json(ws))["return_code"] == 805004
                await closed_by_server(ws)
            assert "app-key" not in repr(venue.config)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert any("LOGIN refused" in r for r in records)
    text = "\n".join(records)
    for secret in ("app-key", "secret-key", "wrong", token):
        assert secret not in text


# --------------------------------------------------------------------------- several app keys


KEYS = (("key-one", "secret-one"), ("key-two", "secret-two"), ("key-three", "secret-three"))


@async_test
async def test_several_app_keys_each_with_its_own_session_and_200_codes() -> None:
    codes = [f"{i:06d}" for i in range(100000, 100201)]
    async with Venue(config(keys=KEYS, appkey=None, secretkey=None)) as venue:
        tokens = [str((await issue_token(venue, appkey=k, secretkey=s))["token"]) for k, s in KEYS]
        bad = await issue_token(venue, appkey="key-one", secretkey="secret-two")
        assert bad["return_code"] == 3 and "8002" in bad["return_msg"]
        async with session(venue, tokens[0]) as one, session(venue, tokens[1]) as two:
            # Different keys: no kick; each connection has its own 200 codes.
            assert (await request(one, build_reg(codes[:200], ["0B"])))["return_code"] == 0
            assert (await request(two, build_reg(codes[1:], ["0B"])))["return_code"] == 0
            assert (await request(one, build_reg(codes[200:], ["0B"])))["return_code"] == 105115
            assert venue.stats.kicks == 0 and len(venue.connections) == 2
            # The same key again kicks only its own older session.
            async with session(venue, tokens[0]):
                while (msg := await recv_json(one)).get("trnm") != "SYSTEM":
                    pass
                assert msg["code"] == "R10001"
                closed = await closed_by_server(one)
                assert closed.rcvd is not None and closed.rcvd.code == 1000
                assert (await request(two, build_reg([codes[1]], ["0D"])))["return_code"] == 0
        assert venue.stats.kicks == 1
