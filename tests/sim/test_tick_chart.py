"""The venue's ka10079 tick chart (protocol notes §5.3): a real venue on 127.0.0.1:0, real
httpx and websockets clients, the venue's clock in the test's hands.

The market trades only when the test moves the clock; after each move the test waits for
the venue to step its feed at the new time (``stats.feed_steps``), never with sleeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from recorder.errors import ConfigError
from recorder.kiwoom.frames import FrameKind, build_login, build_reg, build_remove, classify
from recorder.kiwoom.time import NS, format_kst_stamp
from recorder.sim.market import SyntheticMarket
from recorder.sim.tape import TradeTape
from recorder.sim.venue import Venue, VenueConfig
from tests.helpers import T0, Clock, async_test

ITEM = "005930"
KEYS = (("key-one", "secret-one"), ("key-two", "secret-two"))
CHART = "/api/dostk/chart"
RATE_MSG = (
    "허용된 요청 개수를 초과하였습니다[1700:허용된 API 요청 개수를 초과하였습니다. 유량=5, API ID=ka10079]"
)

Trade = tuple[str, int, int]  # (cntr_tm, unsigned price, quantity)


def config(clock: Clock, **kw: Any) -> VenueConfig:
    base: dict[str, Any] = {
        "symbols": ["005930", "000660"],
        "keys": KEYS,
        "trade_rate": 20.0,
        "tick_interval": 0.001,
        "chart_page_rows": 7,
        "clock": clock,
    }
    return VenueConfig(**{**base, **kw})


async def advance(venue: Venue, clock: Clock, seconds: float) -> None:
    """Move the clock, then wait until the venue has stepped its market at the new time."""
    clock.now += int(seconds * NS)
    steps = venue.stats.feed_steps
    await venue.wait_for(lambda: venue.stats.feed_steps > steps)


def tape(venue: Venue, item: str = ITEM) -> TradeTape:
    assert isinstance(venue.feed, SyntheticMarket)
    found = venue.feed.tick_tape(item)
    assert found is not None
    return found


def tape_trades(t: TradeTape, end: int | None = None) -> list[Trade]:
    """Trades ``[0, end)`` of the tape, newest first, as the chart should show them."""
    end = len(t) if end is None else end
    return [(format_kst_stamp(s * NS), p, q) for s, p, q in (t.trade(i) for i in range(end - 1, -1, -1))]


async def token_of(venue: Venue, key: int = 0) -> str:
    appkey, secretkey = KEYS[key]
    body = {"grant_type": "client_credentials", "appkey": appkey, "secretkey": secretkey}
    async with httpx.AsyncClient(base_url=venue.rest_url) as http:
        r = await http.post("/oauth2/token", json=body)
    return str(r.json()["token"])


async def chart(
    http: httpx.AsyncClient,
    token: str | None,
    body: dict[str, Any] | None = None,
    *,
    next_key: str | None = None,
    api_id: str = "ka10079",
) -> httpx.Response:
    headers = {"api-id": api_id, "Content-Type": "application/json;charset=UTF-8"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if next_key is not None:
        headers |= {"cont-yn": "Y", "next-key": next_key}
    body = {"stk_cd": ITEM, "tic_scope": "1", "upd_stkpc_tp": "1"} if body is None else body
    return await http.post(CHART, content=orjson.dumps(body), headers=headers)


def trades_of(resp: httpx.Response) -> list[Trade]:
    return [
        (r["cntr_tm"], abs(int(r["cur_prc"])), int(r["trde_qty"])) for r in resp.json()["stk_tic_chart_qry"]
    ]


async def walk(
    http: httpx.AsyncClient, token: str, item: str = ITEM
) -> tuple[list[Trade], list[httpx.Response]]:
    """Every page of the chart, following cont-yn/next-key; (rows newest first, responses)."""
    body = {"stk_cd": item, "tic_scope": "1", "upd_stkpc_tp": "1"}
    pages = [await chart(http, token, body)]
    while pages[-1].headers["cont-yn"] == "Y":
        pages.append(await chart(http, token, body, next_key=pages[-1].headers["next-key"]))
    return [t for p in pages for t in trades_of(p)], pages


@asynccontextmanager
async def session(venue: Venue, token: str) -> AsyncIterator[ClientConnection]:
    async with connect(venue.ws_url, ping_interval=None) as ws:
        await ws.send(build_login(token))
        while True:
            raw = await ws.recv()
            if classify(raw).kind is FrameKind.PING:
                await ws.send(raw)
                continue
            assert classify(raw).return_code == 0, raw
            break
        yield ws


async def ask(ws: ClientConnection, frame: str) -> None:
    """Send a REG/REMOVE and read up to its (successful) reply."""
    await ws.send(frame)
    while True:
        raw = await ws.recv()
        if classify(raw).kind not in (FrameKind.REAL, FrameKind.PING):
            assert orjson.loads(raw)["return_code"] == 0, raw
            return


def sent_trades(venue: Venue, item: str = ITEM) -> list[dict[str, str]]:
    """FIDs of every 0B entry the venue sent for ``item``, in wire order."""
    return [s.entry["values"] for s in venue.sent if s.entry["type"] == "0B" and s.entry["item"] == item]


def as_trade(values: dict[str, str], day: str) -> Trade:
    """A sent 0B entry as the chart must show it: second, unsigned FID 10, |FID 15|."""
    return (day + values["20"], abs(int(values["10"])), abs(int(values["15"])))


def run_at(rows: list[Trade], run: list[Trade]) -> int:
    """The one index where ``run`` appears contiguously in ``rows``."""
    found = [k for k in range(len(rows) - len(run) + 1) if rows[k : k + len(run)] == run]
    assert len(found) == 1, found
    return found[0]


@async_test
async def test_chart_holds_every_trade_sent_or_not() -> None:
    """Trades before, between and after two subscriptions are all in the chart, and the sent
    0B entries sit in it exactly, with the cum_volume (FID 13) jump across the unsubscribed
    stretch equal to the quantities the chart shows there (what a backfill relies on)."""
    clock = Clock()
    async with Venue(config(clock, rest_rate_limit=1000)) as venue:
        t = tape(venue)
        token = await token_of(venue)
        async with session(venue, token) as ws:
            for _ in range(4):  # nobody subscribed yet
                await advance(venue, clock, 0.3)
            runs = []
            for _ in range(2):
                await ask(ws, build_reg([ITEM], ["0B"]))
                want = len(sent_trades(venue)) - len(t)
                for _ in range(6):
                    await advance(venue, clock, 0.3)
                # every trade made while subscribed reaches the socket
                await venue.wait_for(lambda want=want: len(sent_trades(venue)) == want + len(t))
                runs.append(len(sent_trades(venue)))
                await ask(ws, build_remove([ITEM], ["0B"]))
                for _ in range(4):  # the gap: trades nobody is sent
                    await advance(venue, clock, 0.3)
        async with httpx.AsyncClient(base_url=venue.rest_url) as http:
            newest_first, pages = await walk(http, token)

    rows = newest_first[::-1]
    day = format_kst_stamp(T0)[:8]
    sent = sent_trades(venue)
    n1 = runs[0]
    assert len(sent) == runs[1] > n1 > 0
    run1, run2 = [as_trade(v, day) for v in sent[:n1]], [as_trade(v, day) for v in sent[n1:]]
    k1, k2 = run_at(rows, run1), run_at(rows, run2)
    assert k1 > 0, "trades made before anyone subscribed are in the chart"
    assert k2 + len(run2) < len(rows), "and those made after the last REMOVE"
    assert len(rows) == len(t)
    gap = rows[k1 + len(run1) : k2]
    assert gap, "trades made while unsubscribed are in the chart"
    before, after = sent[n1 - 1], sent[n1]
    assert int(after["13"]) - abs(int(after["15"])) - int(before["13"]) == sum(q for _, _, q in gap)
    assert int(sent[0]["13"]) - abs(int(sent[0]["15"])) == t.volume_before + sum(q for _, _, q in rows[:k1])
    assert len(pages) == -(-len(rows) // 7) and all(len(trades_of(p)) <= 7 for p in pages)


@async_test
async def test_chart_rows_are_signed_like_kiwoom() -> None:
    clock = Clock()
    async with Venue(config(clock, chart_page_rows=900)) as venue:
        for _ in range(5):
            await advance(venue, clock, 0.5)
        token = await token_of(venue)
        async with httpx.AsyncClient(base_url=venue.rest_url) as http:
            resp = await chart(http, token)
            info = await http.post(
                "/api/dostk/stkinfo",
                json={"mrkt_tp": "0"},
                headers={"api-id": "ka10099", "authorization": f"Bearer {token}"},
            )
    prev = {r["code"]: int(r["lastPrice"]) for r in info.json()["list"]}[ITEM]
    body = resp.json()
    assert resp.status_code == 200 and body["return_code"] == 0 and body["stk_cd"] == ITEM
    assert resp.headers["cont-yn"] == "N" and resp.headers["api-id"] == "ka10079"
    rows = body["stk_tic_chart_qry"]
    assert len(rows) == len(tape(venue)) > 10
    assert [r["cntr_tm"] for r in rows] == sorted((r["cntr_tm"] for r in rows), reverse=True)
    for r in rows:
        price = abs(int(r["cur_prc"]))
        assert r["cur_prc"] == (str(price) if price == prev else f"{'+' if price > prev else '-'}{price}")
        assert r["open_pric"] == r["high_pric"] == r["low_pric"] == r["cur_prc"]
        assert int(r["pred_pre"]) == price - prev
        assert r["pred_pre_sig"] == {1: "2", 0: "3", -1: "5"}[(price > prev) - (price < prev)]
        assert r["cntr_tm"].startswith("20260720") and int(r["trde_qty"]) > 0


@async_test
async def test_paging_is_stable_while_the_market_trades() -> None:
    clock = Clock()
    async with Venue(config(clock, chart_page_rows=5, rest_rate_limit=1000)) as venue:
        t = tape(venue)
        while len(t) < 30:
            await advance(venue, clock, 0.5)
        token = await token_of(venue)
        async with httpx.AsyncClient(base_url=venue.rest_url) as http:
            expected = tape_trades(t)
            pages = [await chart(http, token)]
            while pages[-1].headers["cont-yn"] == "Y":
                grown = len(t)
                while len(t) == grown:  # new trades land on top between pages
                    await advance(venue, clock, 0.5)
                pages.append(await chart(http, token, next_key=pages[-1].headers["next-key"]))
            assert [t for p in pages for t in trades_of(p)] == expected
            assert [len(trades_of(p)) for p in pages[:-1]] == [5] * (len(pages) - 1)
            assert pages[-1].headers["cont-yn"] == "N" and pages[-1].headers["next-key"] == ""
            assert len(t) > len(expected)
            fresh, fresh_pages = await walk(http, token)  # a new walk starts from the newest trade
            assert fresh == tape_trades(t) and fresh[-len(expected) :] == expected
    assert venue.stats.chart_pages == len(pages) + len(fresh_pages) and venue.stats.chart_throttled == 0


@async_test
async def test_rate_limit_per_app_key_and_api_id() -> None:
    clock = Clock()
    async with Venue(config(clock)) as venue, httpx.AsyncClient(base_url=venue.rest_url) as http:
        one, two = await token_of(venue, 0), await token_of(venue, 1)
        for _ in range(5):
            assert (await chart(http, one)).status_code == 200
        refused = await chart(http, one)
        assert refused.status_code == 429
        assert refused.json() == {"return_code": 5, "return_msg": RATE_MSG}
        assert (await chart(http, two)).status_code == 200, "another key has its own limit"
        stkinfo = await http.post(
            "/api/dostk/stkinfo",
            json={"mrkt_tp": "0"},
            headers={"api-id": "ka10099", "authorization": f"Bearer {one}"},
        )
        assert stkinfo.json()["return_code"] == 0, "another api-id has its own limit"
        again = await token_of(venue, 0)  # a second token of the same key shares its limit
        assert (await chart(http, again)).status_code == 429
        clock.now += NS  # the venue-clock second has passed
        assert (await chart(http, one)).status_code == 200
    stats = venue.stats
    assert (stats.chart_requests, stats.chart_throttled, stats.chart_pages) == (9, 2, 7)


@async_test
async def test_mock_mode_allows_one_chart_request_a_second() -> None:
    clock = Clock()
    async with (
        Venue(config(clock, mock_mode=True)) as venue,
        httpx.AsyncClient(base_url=venue.rest_url) as http,
    ):
        token = await token_of(venue)
        assert (await chart(http, token)).status_code == 200
        refused = await chart(http, token)
        assert refused.status_code == 429 and "유량=1, API ID=ka10079" in refused.json()["return_msg"]


@pytest.mark.parametrize(
    ("body", "code", "detail"),
    [
        ({"stk_cd": ITEM, "tic_scope": "3", "upd_stkpc_tp": "1"}, 2, "[1517:"),
        ({"stk_cd": ITEM, "upd_stkpc_tp": "1"}, 2, "[1517:"),
        ({"stk_cd": "999999", "tic_scope": "1", "upd_stkpc_tp": "1"}, 2, "[1902:"),
        ({"stk_cd": "005930_AL", "tic_scope": "1", "upd_stkpc_tp": "1"}, 2, "[1902:"),
        ({"tic_scope": "1", "upd_stkpc_tp": "1"}, 2, "[1511:"),
    ],
)
def test_bad_requests_are_business_errors(body: dict[str, Any], code: int, detail: str) -> None:
    @async_test
    async def scenario() -> None:
        async with Venue(config(Clock())) as venue, httpx.AsyncClient(base_url=venue.rest_url) as http:
            resp = await chart(http, await token_of(venue), body)
        assert resp.status_code == 200 and "stk_tic_chart_qry" not in resp.json()
        assert resp.json()["return_code"] == code and detail in resp.json()["return_msg"]

    scenario()


@async_test
async def test_auth_next_key_and_api_id_refusals() -> None:
    async with Venue(config(Clock())) as venue, httpx.AsyncClient(base_url=venue.rest_url) as http:
        token = await token_of(venue)
        answers = {
            "bad token": await chart(http, "not-a-token"),
            "no header": await chart(http, None),
            "bad next-key": await chart(http, token, next_key="abc"),
            "next-key past the end": await chart(http, token, next_key="1000000"),
            "other api-id": await chart(http, token, api_id="ka10080"),
            "not json": await http.post(
                CHART, content=b"{", headers={"api-id": "ka10079", "authorization": f"Bearer {token}"}
            ),
        }
    got = {
        name: (r.status_code, r.json()["return_code"], r.json()["return_msg"]) for name, r in answers.items()
    }
    assert got["bad token"] == (200, 3, "인증에 실패했습니다[8005:Token이 유효하지 않습니다]")
    assert got["no header"][:2] == (200, 2) and "[1513:" in got["no header"][2]
    assert "[1511:next-key" in got["bad next-key"][2] and "[1511:next-key" in got["next-key past the end"][2]
    assert "[1504:" in got["other api-id"][2] and "[1511:" in got["not json"][2]
    assert venue.stats.chart_requests == 6 and venue.stats.chart_pages == 0


class _BooksOnly:
    """A feed without ``tick_tape`` (like a recorded one): ka10079 is not served."""

    def step(self, now_ns: int) -> list[dict[str, Any]]:
        return []

    def symbols_info(self) -> list[dict[str, Any]]:
        return []


@async_test
async def test_a_feed_without_a_tape_refuses_the_chart() -> None:
    venue = Venue(config(Clock()), feed=_BooksOnly())
    async with venue, httpx.AsyncClient(base_url=venue.rest_url) as http:
        resp = await chart(http, await token_of(venue))
    assert resp.json()["return_code"] == 2 and "[1504:" in resp.json()["return_msg"]


def test_page_rows_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="chart_page_rows"):
        VenueConfig(chart_page_rows=0)


def test_tape_is_kept_per_item_whether_sent_or_not() -> None:
    market = SyntheticMarket(["005930", "000660"], seed=5, venues=("KRX", "NXT"), trade_rate=30.0)
    made: dict[str, list[tuple[int, int, int]]] = {}
    for i in range(40):
        now = T0 + i * NS // 10
        for e in market.step(now):
            if e["type"] == "0B":
                v = e["values"]
                made.setdefault(e["item"], []).append((now // NS, abs(int(v["10"])), abs(int(v["15"]))))
    assert set(made) == set(market.items) and market.tick_tape("005930_AL") is None
    for item, trades in made.items():
        t = market.tick_tape(item)
        assert t is not None and [t.trade(i) for i in range(len(t))] == trades
        assert t.volume == t.volume_before + sum(q for _, _, q in trades)
