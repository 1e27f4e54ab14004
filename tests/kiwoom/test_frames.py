"""Protocol core: builders, classifier, decoder values on real captures, malformed input."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
import pytest

from recorder.kiwoom import frames as P
from recorder.kiwoom.fields import ORDERBOOK, TRADES, columns
from recorder.kiwoom.time import KST, kst_date, parse_time, trading_day

DATA = Path(__file__).parents[1] / "data"
FIXTURES = {
    f["section"]: f for f in map(orjson.loads, (DATA / "kiwoom-frames.jsonl").read_text().splitlines())
}
# 2026-07-20 10:27:58 KST, just after the H-GOLD captures.
RECV = int(dt.datetime(2026, 7, 20, 10, 27, 58, tzinfo=KST).timestamp()) * 1_000_000_000


def kst(h: int, m: int, s: int, day: int = 20) -> int:
    return int(dt.datetime(2026, 7, day, h, m, s, tzinfo=KST).timestamp()) * 1_000_000_000


def rows_of(frame: object, recv: int = RECV, fno: int = 7) -> tuple[list[dict], list[tuple]]:
    raw = frame if isinstance(frame, (str, bytes)) else orjson.dumps(frame)
    rows, rejects = P.decode_rows(raw, recv, fno)
    return [dict(zip(P.row_columns(t), r, strict=True)) | {"_table": t} for t, r in rows], rejects


# ----------------------------------------------------------------------------- fields


def test_every_spec_fid_has_a_typed_column() -> None:
    assert len(TRADES.fields) == 43  # §4.4
    assert len(ORDERBOOK.fields) == 163  # §4.5: "complete with all 163 spec FIDs"
    for name in (
        "ts",
        "recv_ts",
        "seq",
        "symbol",
        "venue",
        "price",
        "volume",
        "side",
        "cum_volume",
        "cum_value",
        "open",
        "high",
        "low",
        "best_ask",
        "best_bid",
        "change",
        "change_pct",
        "strength",
        "session",
        "exchange",
    ):
        assert name in columns(TRADES)
    book = columns(ORDERBOOK)
    for side in ("ask", "bid"):
        for i in range(1, 11):
            assert f"{side}_px_{i}" in book and f"{side}_qty_{i}" in book
    for name in ("total_ask_qty", "total_bid_qty", "expected_px", "expected_qty", "cum_volume"):
        assert name in book


def test_fixture_0d_carries_exactly_the_spec_fids() -> None:
    values = FIXTURES["7.4"]["frame"]["data"][0]["values"]
    assert set(values) == {f.fid for f in ORDERBOOK.fields}


# ----------------------------------------------------------------------------- builders


def test_login_carries_the_bare_token() -> None:
    assert orjson.loads(P.build_login("tok-123")) == {"trnm": "LOGIN", "token": "tok-123"}


def test_reg_and_remove_frames() -> None:
    reg = orjson.loads(P.build_reg(["005930", "000660_NX"], ["0B", "0D"]))
    assert reg == {
        "trnm": "REG",
        "grp_no": "1",
        "refresh": "1",
        "data": [{"item": ["005930", "000660_NX"], "type": ["0B", "0D"]}],
    }
    rem = orjson.loads(P.build_remove(["005930"], ["0B"], grp_no="2"))
    assert rem == {"trnm": "REMOVE", "grp_no": "2", "data": [{"item": ["005930"], "type": ["0B"]}]}


def test_ping_echo_is_the_same_frame() -> None:
    odd = '{"trnm":"PING", "x": [1]}'
    assert P.build_ping_echo(odd) is odd
    assert P.build_ping_echo(b"PING") == b"PING"


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ('{"trnm":"PING"}', P.FrameKind.PING),
        ("PING", P.FrameKind.PING),
        ('{"trnm":"LOGIN","return_code":0,"return_msg":"","sor_yn":"Y"}', P.FrameKind.LOGIN),
        ('{"trnm":"REG","return_code":105110,"return_msg":"허용 요청 건수 초과"}', P.FrameKind.REG),
        ('{"trnm":"SYSTEM","code":"R10001","message":"..."}', P.FrameKind.SYSTEM),
        ('{"data":[],"trnm":"REAL"}', P.FrameKind.REAL),
        ('{"trnm" : "REAL", "data": []}', P.FrameKind.REAL),
        ('{"trnm":"CNSRLST"}', P.FrameKind.OTHER),
        ("not json", P.FrameKind.INVALID),
        ("[1,2]", P.FrameKind.INVALID),
        ('{"no":"trnm"}', P.FrameKind.INVALID),
    ],
)
def test_classify(raw: str, kind: P.FrameKind) -> None:
    assert P.classify(raw).kind is kind
    assert P.classify(raw.encode()).kind is kind


def test_return_codes_of_replies_and_system_frames() -> None:
    assert P.classify('{"trnm":"LOGIN","return_code":805004,"return_msg":"x"}').return_code == 805004
    assert P.classify('{"trnm":"SYSTEM","code":"R10001","message":"m"}').return_code == "R10001"
    assert P.classify('{"trnm":"SYSTEM","return_code":"0","return_msg":"m"}').return_code == 0
    assert P.classify('{"trnm":"SYSTEM","code":"R10002","message":"bye"}').return_msg == "bye"


# ----------------------------------------------------------------------------- decoding real captures


def test_real_0b_capture_decodes_to_exact_values() -> None:
    rows, rejects = rows_of(FIXTURES["7.3"]["frame"])
    assert rejects == []
    (r,) = rows
    assert r["_table"] == "trades" and r["symbol"] == "005930" and r["venue"] == "KRX"
    assert r["ts"] == kst(10, 27, 56) and r["recv_ts"] == RECV and r["seq"] == 7 << 16
    # §7.3 "How to read it": 251,000 KRW, 4,000 below the previous close; buy-initiated 8 shares.
    assert (r["price"], r["change"], r["change_pct"], r["change_sign"]) == (251000, -4000, -1.57, 5)
    assert (r["open"], r["high"], r["low"]) == (241000, 257500, 240000)
    assert (r["best_ask"], r["best_bid"]) == (251000, 250500)
    assert (r["volume"], r["side"], r["cum_volume"], r["cum_value"]) == (8, "buy", 10055036, 2518271)
    assert (r["tick_value"], r["tick_sell_volume"], r["tick_buy_volume"], r["tick_net_volume"]) == (
        2008,
        0,
        8,
        8,
    )
    assert (r["strength"], r["buy_ratio"], r["market_cap"], r["avg_price"]) == (
        120.42,
        54.63,
        14674159,
        250449.0,
    )
    assert (r["session"], r["exchange"], r["high_time"], r["upper_limit_time"]) == (
        "2",
        "KRX",
        "051740",
        "000000",
    )
    assert (r["volume_change"], r["value_change"]) == (-16946442, -4421098270082)


def test_mixed_frame_keeps_unknown_types_as_rejects() -> None:
    frame = FIXTURES["7.5"]["frame"]
    rows, rejects = rows_of(frame)
    assert [(r["symbol"], r["price"], r["side"]) for r in rows] == [
        ("000660", 1851000, "buy"),
        ("373220", 331000, "buy"),
    ]
    assert rows[1]["high"] == 333500  # "-333500": below the previous close, still a positive price
    (rej,) = rejects
    assert "unsupported real-time type '0w'" in rej[2]
    assert orjson.loads(rej[3]) == frame["data"][1]  # the entry kept whole
    assert rej[1] == (7 << 16) + 1


def test_nxt_entries_take_the_venue_from_the_suffix() -> None:
    rows, rejects = rows_of(FIXTURES["7.6"]["frame"], recv=kst(17, 15, 13))
    assert rejects == []
    book, trade = rows
    assert book["venue"] == trade["venue"] == "NXT" and book["symbol"] == "005930"
    assert book["ts"] == kst(17, 15, 12)
    assert [book[f"ask_px_{i}"] for i in range(1, 5)] == [252500, 253000, 253500, 0]
    assert book["ask_qty_change_1"] == -30 and book["bid_qty_change_2"] == 200
    assert book["market_phase"] is None and book["investor_ticker"] is None  # "" is null
    assert trade["side"] == "sell" and trade["volume"] == 30 and trade["tick_sell_volume"] == -30
    assert trade["prev_same_time_volume_ratio"] is None and trade["exchange"] == "NXT"


# ----------------------------------------------------------------------------- bad input


def _entry(**changes: object) -> dict:
    entry = orjson.loads(orjson.dumps(FIXTURES["7.3"]["frame"]["data"][0]))
    entry["values"].update({k: v for k, v in changes.items() if v is not None})
    for k, v in changes.items():
        if v is None:
            entry["values"].pop(k)
    return entry


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "invalid JSON"),
        (b'{"trnm":"REAL","data":{}}', "not a REAL frame"),
        (b'{"trnm":"REG","data":[]}', "not a REAL frame"),
        (b"[]", "not a REAL frame"),
    ],
)
def test_bad_frames_are_rejected_whole(raw: bytes, reason: str) -> None:
    rows, rejects = rows_of(raw)
    assert rows == []
    assert len(rejects) == 1 and reason in rejects[0][2] and rejects[0][3] == raw.decode()


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("just a string", "not an object"),
        (_entry() | {"item": "12345"}, "not a stock code"),
        (_entry() | {"item": "005930_XX"}, "not a stock code"),
        (_entry() | {"values": "nope"}, "values is str"),
        (_entry(**{"10": None}), "required FID 10 (price) missing"),
        (_entry(**{"13": ""}), "required FID 13 (cum_volume) missing"),
        (_entry(**{"15": "8 shares"}), "FID 15 (volume) unparseable"),
        (_entry(**{"10": "1_000"}), "FID 10 (price) unparseable"),
        (_entry(**{"10": "１２３"}), "FID 10 (price) unparseable"),
        (_entry(**{"10": "99999999999999999999"}), "out of int64 range"),
        (_entry(**{"20": "256000"}), "time FID 20 unparseable"),
        (_entry(**{"20": None}), "time FID 20 unparseable"),
        (_entry(**{"10": 251000}), "is int, not a string"),
    ],
)
def test_undecodable_entries_go_whole_to_rejects(entry: object, reason: str) -> None:
    frame = {"data": [entry, FIXTURES["7.3"]["frame"]["data"][0]], "trnm": "REAL"}
    rows, rejects = rows_of(frame)
    assert len(rows) == 1 and rows[0]["seq"] == (7 << 16) + 1  # the good neighbour survives
    (rej,) = rejects
    assert reason in rej[2], rej[2]
    assert orjson.loads(rej[3]) == entry


def test_unparseable_optional_field_keeps_the_row_and_notes_it() -> None:
    rows, rejects = rows_of({"data": [_entry(**{"228": "n/a", "30": "1e5"})], "trnm": "REAL"})
    (r,) = rows
    assert r["strength"] is None and r["volume_change_pct"] is None and r["price"] == 251000
    (rej,) = rejects
    assert rej[2].startswith("partial: ") and "FID 228 (strength)" in rej[2] and "FID 30" in rej[2]


def test_value_spellings() -> None:
    spellings = {
        "15": " 8",
        "11": "-0",
        "1315": "+0",
        "12": " 1.5",
        "14": "0",
        "27": "+251000",
        "28": " 250500",
    }
    (r,), rejects = rows_of({"data": [_entry(**spellings)], "trnm": "REAL"})
    assert rejects == []
    assert (r["volume"], r["side"], r["change"], r["tick_sell_volume"], r["change_pct"]) == (
        8,
        None,
        0,
        0,
        1.5,
    )
    assert (r["cum_value"], r["best_ask"], r["best_bid"]) == (0, 251000, 250500)


def test_values_as_a_one_element_list_are_accepted() -> None:
    e = _entry()
    e["values"] = [e["values"]]
    rows, rejects = rows_of({"data": [e], "trnm": "REAL"})
    assert rejects == [] and rows[0]["price"] == 251000


def test_binary_frames_that_are_not_utf8_keep_their_bytes_visible() -> None:
    rows, rejects = rows_of(b"\xff\xfe{")
    assert rows == [] and "\\xff\\xfe" in rejects[0][3]


# ----------------------------------------------------------------------------- time


def test_time_uses_the_kst_date_of_the_receive_time() -> None:
    assert parse_time("090000", kst(9, 0, 1)) == kst(9, 0, 0)
    assert kst_date(kst(0, 30, 0)) == "2026-07-20"
    # A tick stamped before midnight but received after it belongs to the day before.
    assert parse_time("235959", kst(0, 0, 1, day=21)) == kst(23, 59, 59, day=20)
    assert parse_time("000001", kst(23, 59, 59, day=20)) == kst(0, 0, 1, day=21)
    assert parse_time("102756", 0, trading_day("2026-07-20")) == kst(10, 27, 56)
    assert (
        parse_time("20260716153000", RECV)
        == int(dt.datetime(2026, 7, 16, 15, 30, tzinfo=KST).timestamp()) * 10**9
    )
    for bad in ("", "1027", "246000", "106000", "10275a", 102756, "１０２７５６"):
        assert parse_time(bad, RECV) is None


# ----------------------------------------------------------------------------- encode


def test_encode_restores_kiwoom_spellings() -> None:
    rows, _ = P.decode_rows(orjson.dumps(FIXTURES["7.3"]["frame"]), RECV, 1)
    entry = P.encode_entry(*rows[0])
    v = entry["values"]
    assert (
        entry["item"] == "005930"
        and entry["type"] == "0B"
        and list(entry) == ["values", "type", "name", "item"]
    )
    assert (v["20"], v["10"], v["17"], v["15"], v["11"]) == ("102756", "-251000", "+257500", "+8", "-4000")
    frame = orjson.loads(P.encode_frame(rows))
    assert list(frame) == ["data", "trnm"]  # trnm last, as live (§4.1)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"10": "-9223372036854775808"}, "FID 10 (price) out of int64 range"),  # abs() would not fit
        ({"10": "-43109310289925652480"}, "FID 10 (price) out of int64 range"),
        ({"15": "+9223372036854775808"}, "FID 15 (volume) out of int64 range"),
    ],
)
def test_out_of_range_integers_are_rejected_not_clamped(changes: dict, reason: str) -> None:
    rows, rejects = rows_of({"data": [_entry(**changes)], "trnm": "REAL"})
    assert rows == [] and reason in rejects[0][2]


def test_signed_fields_take_the_whole_int64_range_and_rates_have_no_negative_zero() -> None:
    (r,), rejects = rows_of(
        {"data": [_entry(**{"26": "-9223372036854775808", "12": "-0.00"})], "trnm": "REAL"}
    )
    assert rejects == [] and r["volume_change"] == -(2**63)
    assert str(r["change_pct"]) == "0.0"
    (r,), _ = rows_of({"data": [_entry(**{"31": "1" * 400})], "trnm": "REAL"})
    assert r["turnover"] is None  # inf is not a rate: null, and noted in rejects


@pytest.mark.parametrize("kind", [["0B"], {"t": "0B"}, 11, None])
def test_a_type_that_is_not_a_string_is_a_reject_not_a_crash(kind: object) -> None:
    rows, rejects = rows_of({"data": [_entry() | {"type": kind}], "trnm": "REAL"})
    assert rows == [] and "unsupported real-time type" in rejects[0][2]
