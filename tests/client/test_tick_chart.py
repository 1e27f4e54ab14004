"""KiwoomRest.tick_chart (ka10079, protocol notes §5.3) against the real venue on 127.0.0.1:0.

The venue and the client share one fake clock. The client's sleep (pacing and backoff)
moves it and then waits until the venue has stepped its market at the new time, so the
market trades while the client walks back, and rate windows are venue-clock seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from recorder.client.credentials import Credentials
from recorder.client.rest import ChartRow, KiwoomRest
from recorder.errors import AuthError, KiwoomError, RateLimitError
from recorder.kiwoom.time import NS, parse_kst_stamp
from recorder.sim.market import SyntheticMarket
from recorder.sim.tape import TradeTape
from recorder.sim.venue import Venue, VenueConfig
from tests.helpers import T0, async_test

ITEM = "005930"
KEYS = (("PSkeyONExxxxxxxxxxxxxxxxxxxxxxxxxxx0001", "SECRETonexxxxxxxxxxxxxxxxxxxxxxxxxxx0001"),
        ("PSkeyTWOxxxxxxxxxxxxxxxxxxxxxxxxxxx0002", "SECRETtwoxxxxxxxxxxxxxxxxxxxxxxxxxxx0002"))  # fmt: skip
PAGE = 7

Trade = tuple[int, int, int]  # (epoch ns of the second, price, qty)


class SharedTime:
    """The one clock of the venue and the client. ``sleep`` moves it (unless ``frozen``) and
    returns once the venue has stepped its market at the new time."""

    def __init__(self, *, frozen: bool = False) -> None:
        self.now = T0
        self.frozen = frozen
        self.sleeps: list[float] = []
        self.venue: Venue | None = None

    def clock(self) -> int:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if not self.frozen:
            await self.advance(seconds)

    async def advance(self, seconds: float) -> None:
        assert self.venue is not None
        venue, steps = self.venue, self.venue.stats.feed_steps
        self.now += round(seconds * NS)
        await venue.wait_for(lambda: venue.stats.feed_steps > steps)


async def open_venue(time: SharedTime, **kw: Any) -> Venue:
    cfg: dict[str, Any] = {
        "symbols": ["005930", "000660"],
        "keys": KEYS,
        "trade_rate": 20.0,
        "tick_interval": 0.001,
        "chart_page_rows": PAGE,
        "clock": time.clock,
    }
    venue = Venue(VenueConfig(**(cfg | kw)))
    await venue.start()
    time.venue = venue
    while len(tape(venue)) < 40:  # a market some way into its day
        await time.advance(0.5)
    return venue


def client(venue: Venue, time: SharedTime, key: int = 0, **kw: Any) -> KiwoomRest:
    return KiwoomRest(
        venue.rest_url,
        Credentials(*KEYS[key]),
        clock=time.clock,
        sleep=time.sleep,
        rng=random.Random(11),
        **kw,
    )


def tape(venue: Venue, item: str = ITEM) -> TradeTape:
    assert isinstance(venue.feed, SyntheticMarket)
    found = venue.feed.tick_tape(item)
    assert found is not None
    return found


def newest_first(t: TradeTape, end: int) -> list[Trade]:
    return [(s * NS, p, q) for s, p, q in (t.trade(i) for i in range(end - 1, -1, -1))]


async def walk(rest: KiwoomRest, item: str = ITEM) -> list[list[Trade]]:
    return [[(r.ts_ns, r.price, r.qty) for r in page] async for page in rest.tick_chart(item)]


@pytest.mark.parametrize("item", ["005930", "005930_NX"])
def test_walk_is_every_trade_newest_first_at_five_requests_a_second(item: str) -> None:
    @async_test
    async def scenario() -> None:
        time = SharedTime()
        venue = await open_venue(time)
        try:
            n = len(tape(venue, item))
            async with client(venue, time) as rest:
                pages = await walk(rest, item)
            counters = rest.counters
        finally:
            await venue.stop()
        assert [t for p in pages for t in p] == newest_first(tape(venue, item), n)
        assert len(tape(venue, item)) > n, "the market traded while the client walked back"
        assert [len(p) for p in pages] == [PAGE] * (n // PAGE) + ([n % PAGE] if n % PAGE else [])
        assert (counters.pages, counters.requests, counters.rate_limited) == (len(pages), len(pages) + 1, 0)
        assert venue.stats.chart_requests == len(pages) and venue.stats.chart_throttled == 0
        # Paced at 5 a second: one 0.2 s wait before every page but the first.
        assert time.sleeps == [0.2] * (len(pages) - 1)

    scenario()


@async_test
async def test_the_walk_is_lazy_and_the_caller_stops_it() -> None:
    time = SharedTime()
    venue = await open_venue(time)
    try:
        async with client(venue, time) as rest:
            got: list[list[ChartRow]] = []
            async with contextlib.aclosing(rest.tick_chart(ITEM)) as pages:
                async for page in pages:
                    got.append(page)
                    if len(got) == 2:
                        break
    finally:
        await venue.stop()
    assert venue.stats.chart_requests == 2 and rest.counters.pages == 2
    assert [r.ts_ns for r in got[0] + got[1]] == sorted((r.ts_ns for r in got[0] + got[1]), reverse=True)


@async_test
async def test_rate_limit_answers_are_backed_off_and_the_walk_completes() -> None:
    time = SharedTime()
    venue = await open_venue(time)
    try:
        n = len(tape(venue))
        async with client(venue, time, rate_per_s=50.0) as rest:  # faster than the venue allows
            pages = await walk(rest)
    finally:
        await venue.stop()
    counters = rest.counters
    assert [t for p in pages for t in p] == newest_first(tape(venue), n)
    assert counters.rate_limited == venue.stats.chart_throttled > 0
    assert counters.requests == len(pages) + counters.rate_limited + 1  # + the token
    assert counters.pages == len(pages) == venue.stats.chart_pages
    assert any(s >= 0.25 for s in time.sleeps), "backoff waits, not just pacing"


@async_test
async def test_persistent_rate_limit_is_a_clear_error() -> None:
    time = SharedTime()
    venue = await open_venue(time)
    time.frozen = True  # the venue-clock second never ends
    try:
        async with client(venue, time, rate_per_s=50.0, max_retries=2) as rest:
            pages: list[list[ChartRow]] = []
            with pytest.raises(RateLimitError) as info:
                async for page in rest.tick_chart(ITEM):
                    pages.append(page)
    finally:
        await venue.stop()
    assert len(pages) == 5 and rest.counters.rate_limited == 3 == venue.stats.chart_throttled
    assert info.value.code == 5 and "ka10079" in str(info.value) and "1700" in str(info.value)
    assert "still refused after 2 retries" in str(info.value)


@async_test
async def test_two_keys_walk_in_parallel_each_within_its_own_limit() -> None:
    time = SharedTime()
    venue = await open_venue(time)
    try:
        n = len(tape(venue))
        async with client(venue, time, 0) as one, client(venue, time, 1) as two:
            a, b = await asyncio.gather(walk(one), walk(two))
    finally:
        await venue.stop()
    assert [t for p in a for t in p] == [t for p in b for t in p] == newest_first(tape(venue), n)
    assert venue.stats.chart_throttled == 0 and venue.stats.chart_requests == len(a) + len(b)


@async_test
async def test_refused_credentials_stop_before_any_chart_request() -> None:
    time = SharedTime()
    venue = await open_venue(time)
    try:
        rest = KiwoomRest(
            venue.rest_url, Credentials(KEYS[0][0], "wrong-secret"), clock=time.clock, sleep=time.sleep
        )
        async with rest:
            with pytest.raises(AuthError) as info:
                await walk(rest)
    finally:
        await venue.stop()
    assert venue.stats.chart_requests == 0
    assert KEYS[0][0] not in str(info.value) and "wrong-secret" not in str(info.value)


@async_test
async def test_a_token_replaced_mid_walk_is_reissued_once() -> None:
    time = SharedTime()
    venue = await open_venue(time, revoke_previous_token=True)
    try:
        n = len(tape(venue))
        async with client(venue, time) as rest, contextlib.aclosing(rest.tick_chart(ITEM)) as walk_:
            got = [await anext(walk_)]
            async with httpx.AsyncClient(base_url=venue.rest_url) as http:  # another process, same key
                body = {"grant_type": "client_credentials", "appkey": KEYS[0][0], "secretkey": KEYS[0][1]}
                assert (await http.post("/oauth2/token", json=body)).json()["return_code"] == 0
            got += [page async for page in walk_]
    finally:
        await venue.stop()
    assert [(r.ts_ns, r.price, r.qty) for p in got for r in p] == newest_first(tape(venue), n)
    assert venue.stats.tokens_issued == 3


@async_test
async def test_unknown_code_is_a_kiwoom_error() -> None:
    time = SharedTime()
    venue = await open_venue(time)
    try:
        async with client(venue, time) as rest:
            with pytest.raises(KiwoomError) as info:
                await walk(rest, "999999")
    finally:
        await venue.stop()
    assert info.value.code == 2 and "1902" in info.value.msg


# --------------------------------------------------------------------------- rows, without a venue


def _row(cntr_tm: str, cur_prc: str = "-251000", qty: str = "35") -> dict[str, str]:
    return {"cur_prc": cur_prc, "trde_qty": qty, "cntr_tm": cntr_tm, "pred_pre": "-4000", "pred_pre_sig": "5"}


def test_chart_row_parses_kiwoom_values() -> None:
    row = ChartRow.from_row(_row("20260720102756", "+257500", "1200"))
    assert (row.ts_ns, row.price, row.qty) == (T0, 257500, 1200)
    assert row.raw["pred_pre"] == "-4000"
    assert ChartRow.from_row(_row("20260720102756", " 255000")).price == 255000
    for bad in (_row("2026072010275"), _row("20260720102756", ""), _row("20260720102756", qty="x"), ["x"]):
        with pytest.raises(KiwoomError, match="unreadable tick-chart row"):
            ChartRow.from_row(bad)


def _scripted(pages: list[tuple[Any, str]]) -> Callable[[httpx.Request], httpx.Response]:
    """A Kiwoom that answers ka10079 with ``pages`` in turn: (rows, cont-yn)."""
    answers = iter(pages)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            body = {"return_code": 0, "token": "T" * 40, "expires_dt": "20990101000000"}
            return httpx.Response(200, content=orjson.dumps(body))
        rows, cont = next(answers)
        headers = {"cont-yn": cont, "next-key": "k" if cont == "Y" else ""}
        return httpx.Response(
            200, content=orjson.dumps({"return_code": 0, "stk_tic_chart_qry": rows}), headers=headers
        )

    return handle


async def _walk_scripted(pages: list[tuple[Any, str]]) -> list[list[ChartRow]]:
    transport = httpx.MockTransport(_scripted(pages))
    async with KiwoomRest(
        "https://kiwoom.test", Credentials("a", "b"), transport=transport, rate_per_s=1000
    ) as rest:
        return [page async for page in rest.tick_chart(ITEM)]


def test_empty_pages_are_followed_and_rows_out_of_order_refused() -> None:
    newer, older = _row("20260720102757"), _row("20260720102756")
    got = asyncio.run(_walk_scripted([([], "Y"), ([newer, older], "Y"), ([older], "N")]))
    assert [len(p) for p in got] == [0, 2, 1]
    with pytest.raises(KiwoomError, match="not newest first"):
        asyncio.run(_walk_scripted([([older], "Y"), ([newer], "N")]))
    with pytest.raises(KiwoomError, match="not an array"):
        asyncio.run(_walk_scripted([({"rows": 1}, "N")]))
    assert parse_kst_stamp(newer["cntr_tm"]) == T0 + NS


class Latency(httpx.AsyncBaseTransport):
    """The network between client and venue: request ``i`` reaches the venue ``delays[i]``
    seconds of the shared clock after the client sent it (0 once the list runs out)."""

    def __init__(self, time: SharedTime, delays: list[float]) -> None:
        self.time, self.delays = time, delays
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.delays and (delay := self.delays.pop(0)):
            await self.time.advance(delay)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@async_test
async def test_a_slow_request_does_not_make_a_later_one_break_the_servers_window() -> None:
    """The venue counts requests when they arrive. The token and the first page are slow on
    the way (150 ms), the next pages instant: paced by send times alone, the sixth page would
    reach the venue 0.85 s after the first and be refused."""
    time = SharedTime()
    venue = await open_venue(time)
    try:
        assert len(tape(venue)) > 5 * PAGE  # at least six pages
        net = Latency(time, [0.15, 0.15])
        async with client(venue, time, transport=net) as rest:
            pages = await walk(rest)
    finally:
        await venue.stop()
    walked = [t for p in pages for t in p]  # the market traded on while the first page travelled
    assert walked == newest_first(tape(venue), len(walked))
    assert venue.stats.chart_throttled == 0 and venue.stats.chart_requests == len(pages) >= 6
