"""Tests for recorder.sim.market: pure, no I/O. The market is stepped with explicit times."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.kiwoom import fields
from recorder.kiwoom.frames import decode_frame
from recorder.kiwoom.time import hhmmss_kst
from recorder.sim.market import SyntheticMarket, pct, real_frames, signed_price, tick_down, tick_size, tick_up
from tests.helpers import T0

STEP = 50_000_000  # 50 ms, the venue's default tick


def run(market: SyntheticMarket, steps: int, start: int = T0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(steps):
        out.extend(market.step(start + i * STEP))
    return out


@pytest.fixture(scope="module")
def entries() -> list[dict[str, Any]]:
    """20 s of a 12-symbol market on KRX and NXT."""
    market = SyntheticMarket(SyntheticMarket.universe(12, 3), seed=3, venues=("KRX", "NXT"))
    return run(market, 400)


def test_tick_grid() -> None:
    assert [tick_size(p) for p in (1999, 2000, 4995, 5000, 19990, 20000, 49950, 50000)] == [
        1,
        5,
        5,
        10,
        10,
        50,
        50,
        100,
    ]
    assert [tick_size(p) for p in (199900, 200000, 499500, 500000)] == [100, 500, 500, 1000]
    assert tick_down(2000) == 1999 and tick_up(1999) == 2000
    assert tick_down(500000) == 499500 and tick_up(500000) == 501000


def test_formatting_helpers() -> None:
    assert hhmmss_kst(T0) == "102756"
    assert signed_price(251000, 255000) == "-251000"
    assert signed_price(257500, 255000) == "+257500"
    assert signed_price(255000, 255000) == "255000"
    assert pct(0.4899) == "+0.49" and pct(-96.64) == "-96.64" and pct(0.001) == "0.00"


def test_entries_have_live_shape_and_every_fid(entries: list[dict[str, Any]]) -> None:
    trades = fields.REAL_TYPES["0B"]
    book = fields.REAL_TYPES["0D"]
    assert {e["type"] for e in entries} == {"0B", "0D"}
    for e in entries:
        assert list(e) == ["values", "type", "name", "item"]  # §4.1 live key order
        rt = trades if e["type"] == "0B" else book
        assert e["name"] == rt.name
        assert set(e["values"]) == {f.fid for f in rt.fields}
        assert all(isinstance(v, str) for v in e["values"].values())
    assert len(book.fields) == 163


def test_every_entry_decodes_without_rejects(entries: list[dict[str, Any]]) -> None:
    frame = orjson.dumps({"data": entries, "trnm": "REAL"})
    res = decode_frame(frame, T0, 1)
    assert res.rejects == []
    assert sum(t.n for t in res.tables.values()) == len(entries)


def test_cum_volume_grows_by_exactly_the_trade_volume(entries: list[dict[str, Any]]) -> None:
    last: dict[str, int] = {}
    trades_seen: dict[str, int] = defaultdict(int)
    for e in entries:
        v = e["values"]
        if e["type"] == "0B":
            cum, vol = int(v["13"]), abs(int(v["15"]))
            assert vol > 0
            if e["item"] in last:
                assert cum == last[e["item"]] + vol, e["item"]
            last[e["item"]] = cum
            trades_seen[e["item"]] += 1
        elif e["item"] in last:  # a 0D carries the same stream's cumulative volume
            assert int(v["13"]) == last[e["item"]]
    assert len(trades_seen) > 12  # KRX and NXT streams both traded
    assert any(item.endswith("_NX") for item in trades_seen)


def test_venue_field_matches_item(entries: list[dict[str, Any]]) -> None:
    for e in entries:
        if e["type"] == "0B":
            assert e["values"]["9081"] == ("NXT" if e["item"].endswith("_NX") else "KRX")


def test_book_sums_and_ladder(entries: list[dict[str, Any]]) -> None:
    books = [e["values"] for e in entries if e["type"] == "0D"]
    assert books
    for v in books:
        asks = [abs(int(v[str(41 + i)])) for i in range(10)]
        bids = [abs(int(v[str(51 + i)])) for i in range(10)]
        assert asks == sorted(asks) and len(set(asks)) == 10
        assert bids == sorted(bids, reverse=True) and len(set(bids)) == 10
        assert bids[0] < asks[0]
        assert sum(int(v[str(f)]) for f in range(81, 91)) == int(v["122"])
        assert sum(int(v[str(f)]) for f in range(91, 101)) == int(v["126"])
        assert sum(int(v[str(f)]) for f in range(61, 71)) == int(v["121"])
        assert sum(int(v[str(f)]) for f in range(71, 81)) == int(v["125"])
        assert int(v["128"]) == int(v["125"]) - int(v["121"])
        assert v["215"] == "" and v["6102"] == "0.00" and v["6044"] == "0"


def test_signs_follow_previous_close() -> None:
    market = SyntheticMarket(["005930"], seed=1)
    prev = int(market.symbols_info()[0]["lastPrice"])
    for e in run(market, 400):
        v = e["values"]
        for fid in ("10", "27", "28", "16", "17", "18") if e["type"] == "0B" else ("41", "51"):
            price = abs(int(v[fid]))
            expected = "+" if price > prev else "-" if price < prev else ""
            assert v[fid] == expected + str(price), (fid, v[fid])
        if e["type"] == "0B":
            assert v["25"] == ("2" if abs(int(v["10"])) > prev else "5" if abs(int(v["10"])) < prev else "3")
            assert int(v["11"]) == abs(int(v["10"])) - prev


def test_trade_fields_are_consistent() -> None:
    market = SyntheticMarket(SyntheticMarket.universe(5, 0), seed=0, venues=("KRX", "NXT"))
    for e in run(market, 400):
        if e["type"] != "0B":
            continue
        v = e["values"]
        price, vol = abs(int(v["10"])), int(v["15"])
        assert abs(int(v["18"])) <= price <= abs(int(v["17"]))
        assert abs(int(v["18"])) <= int(v["620"]) <= abs(int(v["17"]))
        assert int(v["1314"]) == vol
        assert int(v["1313"]) == (abs(vol) * price // 1000) * (1 if vol > 0 else -1)
        assert (v["1315"], v["1316"]) == ((" 0", f"+{vol}") if vol > 0 else (str(vol), " 0"))
        assert int(v["1030"]) + int(v["1031"]) < int(v["13"])
        assert v["12"].count(".") == 1 and len(v["12"].split(".")[1]) == 2
        assert v["290"] == "2" and v["567"] == v["568"] == "000000"
        assert len(v["1890"]) == len(v["1891"]) == len(v["1892"]) == 6


def test_book_throttle_per_item() -> None:
    market = SyntheticMarket(["005930", "000660"], seed=0, venues=("KRX", "NXT"), book_rate=3.6)
    per_item: dict[str, list[int]] = defaultdict(list)
    for i in range(200):  # 10 s in 50 ms steps
        now = T0 + i * STEP
        for e in market.step(now):
            if e["type"] == "0D":
                per_item[e["item"]].append(now)
    assert set(per_item) == {"005930", "005930_NX", "000660", "000660_NX"}
    for times in per_item.values():
        assert all(b - a >= 1e9 / 3.6 for a, b in itertools.pairwise(times))
        assert len(times) <= 10 * 3.6 + 1


def test_trade_rate_is_roughly_honoured() -> None:
    market = SyntheticMarket(["005930"], seed=5, trade_rate=4.0)
    trades = [e for e in run(market, 1200) if e["type"] == "0B"]  # 60 s
    assert 180 <= len(trades) <= 300


def test_deterministic_for_a_seed() -> None:
    codes = SyntheticMarket.universe(5, 9)
    a = run(SyntheticMarket(codes, seed=9, venues=("KRX", "NXT")), 100)
    b = run(SyntheticMarket(codes, seed=9, venues=("KRX", "NXT")), 100)
    c = run(SyntheticMarket(codes, seed=10, venues=("KRX", "NXT")), 100)
    assert a == b
    assert a != c


def test_clock_jump_does_not_burst() -> None:
    market = SyntheticMarket(["005930"], seed=0, trade_rate=2.0)
    market.step(T0)
    burst = market.step(T0 + 3600 * 10**9)  # an hour later: at most a second is caught up
    assert sum(e["type"] == "0B" for e in burst) < 15


def test_universe_and_symbols_info() -> None:
    codes = SyntheticMarket.universe(300, 1)
    assert codes[:3] == ["005930", "000660", "373220"]
    assert len(set(codes)) == 300 and all(len(c) == 6 and c.isdigit() for c in codes)
    assert SyntheticMarket.universe(300, 1) == codes
    assert SyntheticMarket.universe(300, 2)[:24] == codes[:24]
    market = SyntheticMarket(codes, seed=1, venues=("KRX", "NXT"))
    rows = market.symbols_info()
    assert [r["code"] for r in rows] == codes
    assert {r["marketCode"] for r in rows} == {"0", "10"}
    for r in rows:
        assert len(r["listCount"]) == 16 and r["listCount"].isdigit()
        assert len(r["lastPrice"]) == 8 and int(r["lastPrice"]) % tick_size(int(r["lastPrice"])) == 0
        assert r["nxtEnable"] in ("Y", "N") and r["kind"] == "A" and r["orderWarning"] == "0"
        assert r["marketName"] == {"0": "거래소", "10": "코스닥"}[r["marketCode"]]
    nx = {r["code"] + "_NX" for r in rows if r["nxtEnable"] == "Y"}
    assert {i for i in market.items if i.endswith("_NX")} == nx


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        SyntheticMarket(["005930"], venues=("SOR",))
    with pytest.raises(ValueError):
        SyntheticMarket(["005930_NX"])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 6), rate=st.floats(0.5, 40.0))
def test_invariants_hold_for_any_seed(seed: int, n: int, rate: float) -> None:
    market = SyntheticMarket(
        SyntheticMarket.universe(n, seed), seed=seed, venues=("KRX", "NXT"), trade_rate=rate
    )
    last: dict[str, int] = {}
    for e in run(market, 60):
        v = e["values"]
        if e["type"] == "0B":
            if e["item"] in last:
                assert int(v["13"]) == last[e["item"]] + abs(int(v["15"]))
            last[e["item"]] = int(v["13"])
        else:
            assert sum(int(v[str(f)]) for f in range(81, 91)) == int(v["122"])
            assert sum(int(v[str(f)]) for f in range(91, 101)) == int(v["126"])
            asks = [abs(int(v[str(41 + i)])) for i in range(10)]
            assert all(a % tick_size(a) == 0 for a in asks)


@given(n=st.integers(0, 40), most=st.integers(1, 5), seed=st.integers(0, 1000))
def test_real_frames_cut_entries_in_order_into_frames_of_1_to_most(n: int, most: int, seed: int) -> None:
    entries = [{"type": "0B", "item": f"{i:06d}", "values": {}} for i in range(n)]
    frames = list(real_frames(entries, random.Random(seed), most))
    assert [e for _, batch in frames for e in batch] == entries
    for raw, batch in frames:
        assert 1 <= len(batch) <= most
        assert orjson.loads(raw) == {"data": list(batch), "trnm": "REAL"}
        assert raw.endswith(b'"trnm":"REAL"}')  # trnm last, as Kiwoom sends it
