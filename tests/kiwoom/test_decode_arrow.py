"""The Arrow decoder agrees with the reference decoder on every frame it decodes, and hands
every frame the reference would reject (even partly) to the fallback."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.errors import StoreError
from recorder.kiwoom import decode_arrow as arrow_decode
from recorder.kiwoom.decode import PLANS, SEQ_SHIFT, Decoder
from recorder.kiwoom.decode_arrow import ArrowDecoded, decode_frames
from recorder.kiwoom.fields import Kind
from recorder.kiwoom.time import DAY_NS, KST_OFFSET_NS, NS, trading_day
from recorder.store.sink import Sink, read_table
from tests.kiwoom.test_decode import RECV, entries, odd_value

DATA = Path(__file__).parents[1] / "data" / "kiwoom-frames.jsonl"
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DAY = trading_day("2026-07-20")
MIDNIGHT = DAY * DAY_NS - KST_OFFSET_NS  # 2026-07-20 00:00:00 KST

# --------------------------------------------------------------------------- the reference


def reference_decode(
    frames: list[bytes], recv: list[int], fnos: list[int], day: int | None = None
) -> tuple[dict[str, pa.Table], list[tuple[int, int, str, str]]]:
    """Tables as ``Decoder`` + ``Sink._add_market`` build them, and the rejects."""
    dec = Decoder(trading_day=day)
    for raw, r, fno in zip(frames, recv, fnos, strict=True):
        dec.add(raw, r, fno)
    res = dec.finish()
    sink = Sink(Path("/nonexistent"), "ref", max_rows=1 << 40, max_bytes=1 << 60)  # never flushes
    for table, cols in res.tables.items():
        sink._add_market(table, cols)
    return {table: pa.concat_tables(buf.chunks) for table, buf in sink._buffers.items()}, res.rejects


def reference(
    frames: list[bytes], recv: list[int], fnos: list[int], day: int | None = None
) -> tuple[dict[str, pa.Table], set[int]]:
    """The reference tables, and the frames with rejects."""
    tables, rejects = reference_decode(frames, recv, fnos, day)
    return tables, {seq >> SEQ_SHIFT for _, seq, _, _ in rejects}


def rows(t: pa.Table) -> list[dict[str, Any]]:
    return t.sort_by("seq").to_pylist()


def same(a: Any, b: Any) -> bool:
    """Equal, of the same type, and for floats with the same sign of zero."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b and type(a) is type(b)


def assert_equivalent(
    frames: list[bytes], recv: list[int], fnos: list[int], day: int | None = None
) -> ArrowDecoded:
    """The whole contract of decode_frames on one batch; returns its result."""
    got = decode_frames(frames, recv, fnos, trading_day=day)
    assert got.fallback == sorted(set(got.fallback)) and all(0 <= i < len(frames) for i in got.fallback)
    _, rejected = reference(frames, recv, fnos, day)
    fallback_fnos = {fnos[i] for i in got.fallback}
    assert rejected <= fallback_fnos, "a frame with rejects was decoded by Arrow"
    keep = [i for i in range(len(frames)) if i not in set(got.fallback)]
    expected, rejected_kept = reference(
        [frames[i] for i in keep], [recv[i] for i in keep], [fnos[i] for i in keep], day
    )
    assert not rejected_kept
    assert set(got.tables) == set(expected)
    for table, t in got.tables.items():
        assert t.schema.equals(expected[table].schema, check_metadata=True)
        assert len(t) > 0
        a, b = rows(t), rows(expected[table])
        assert len(a) == len(b)
        for ra, rb in zip(a, b, strict=True):
            bad = [k for k in rb if not same(ra[k], rb[k])]
            assert not bad, (table, bad, {k: (ra[k], rb[k]) for k in bad})
    return got


# --------------------------------------------------------------------------- strategies

# Values next to the grammar's edges, which Arrow's casts would accept or misread.
extra_odd = st.sampled_from(
    [
        "0x1", "0X1F", "-0x1", "inf", "-inf", "nan", "NaN", "Infinity", "1e5", "1E5", "+-5", "-+5",
        "++5", "--5", " +5", "+ 5", "5 5", "+", "-", " ", "5-", "5+", "１", "٣", "1_000", "\t5",
        "5\t", "\n5", "-0", "+0", " 0", "0 ", ".5", "5.", "-.5", "+.5", ".", "1.2.3", "007",
        "9223372036854775807", "-9223372036854775808", "9223372036854775808", "0009223372036854775807",
        "99999999999999999999", "1" * 400, "1" * 400 + ".5", "-" + "9" * 30,
    ]
)  # fmt: skip
bad_item = st.sampled_from(["5930", "005930_XX", "005930_nx", "00593a", "005930_", "005930_NXT", "", None, 5])
bad_time = st.sampled_from(
    ["20260720102756", "246000", "1027", "102760", "106000", "", "10275６", 102756, None]
)


@st.composite
def odd_entry(draw: st.DrawFn) -> Any:
    """A valid entry with one thing wrong (or merely unusual)."""
    e = draw(entries())
    plan = PLANS[e["type"]]
    what = draw(st.integers(0, 9))
    values = e["values"]
    if what == 0:
        values[draw(st.sampled_from([f.fid for f in plan.rt.fields if f.kind is not Kind.TIME]))] = draw(
            st.one_of(extra_odd, odd_value)
        )
    elif what == 1:
        values[plan.time_fid] = draw(bad_time)
    elif what == 2:
        e["type"] = draw(st.sampled_from(["0w", "0b", "0BX", "", None, 5]))
    elif what == 3:
        e["item"] = draw(bad_item)
    elif what == 4:
        e["values"] = draw(st.sampled_from([[values], values and 5, None, [], "x"]))
    elif what == 5:
        required = [f.fid for f in plan.rt.fields if f.required]
        fid = draw(st.sampled_from(required))
        if draw(st.booleans()):
            values.pop(fid, None)
        else:
            values[fid] = ""
    elif what == 6:
        values[draw(st.sampled_from(list(values)))] = draw(st.sampled_from([5, None, 1.5, [], {}]))
    elif what == 7:  # another type's FIDs are ignored by the reference, whatever they hold
        other = PLANS["0D" if e["type"] == "0B" else "0B"]
        values[draw(st.sampled_from([f.fid for f in other.rt.fields if f.fid != "13"]))] = "garbage"
    elif what == 8:
        return draw(st.sampled_from([None, 5, "entry", [e]]))
    else:
        values["9999"] = draw(st.sampled_from(["x", 5, None, [1, {"a": 2}]]))
    return e


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


VALID = dumps({"data": [], "trnm": "REAL"})
garbage = st.sampled_from(
    [
        b"not json", b"", b"   ", b"null", b"[1]", b"5", b'"REAL"', b"{", b"}", b"{}", VALID + b"x",
        VALID + VALID, VALID + b" " + VALID, VALID + b"\n" + VALID, b'{"data":{},"trnm":"REAL"}',
        b'{"data":[],"trnm":"PING"}', b'{"data":[]}', b'{"data":null,"trnm":"REAL"}', b'{"trnm":"REAL"}',
        b'{"data":[],"trnm":"REAL","trnm":"REAL"}', b'{"data":[],"trnm":5}', b' {"data":[],"trnm":"REAL"}',
        b'\xef\xbb\xbf{"data":[],"trnm":"REAL"}', b'{"data":[],"trnm":"REAL","name":"\xff"}',
        b'{"data":[],"trnm":"REAL","name":"\\ud800"}', b'{"data":\n[],"trnm":"REAL"}',
        b'{"data":\r[],"trnm":"REAL"}', b'{"data":[],"trnm":"REAL"},"x":{}', b'{"x":{}',
        b'{"data":[1],"trnm":"REAL"}', b'\n{"data":[],"trnm":"REAL"}\n', b'{"data":[],"trnm":"REAL"} \n\n'
    ]
)  # fmt: skip


@st.composite
def spliced(draw: st.DrawFn) -> bytes:
    """Byte-level damage to a valid frame: duplicate keys, bad UTF-8, escapes."""
    e = draw(entries())
    raw = dumps({"data": [e], "trnm": "REAL"})
    fid = draw(st.sampled_from(list(e["values"])))
    key = b'"' + fid.encode() + b'":'
    how = draw(st.integers(0, 3))
    if how == 0:  # duplicate key: orjson keeps the last, Arrow refuses
        return raw.replace(key, key + b'"1",' + key, 1)
    if how == 1:
        return raw.replace(key + b'"', key + b'"\xff', 1)
    if how == 2:
        return raw.replace(key + b'"', key + b'"\\u0031', 1)  # an escaped digit is a digit
    return raw.replace(b'"item":"', b'"item":"\\u0030', 1)


@st.composite
def frame(draw: st.DrawFn) -> tuple[bytes, bool]:
    """(raw frame, whether the reference decodes it without any reject by construction)."""
    kind = draw(st.integers(0, 9))
    if kind < 4:
        raw = dumps({"data": draw(st.lists(entries(), max_size=3)), "trnm": "REAL"})
        space = st.sampled_from([b"", b"", b" ", b"\n", b"\r\n\t"])  # JSON whitespace around is fine
        return draw(space) + raw + draw(space), True
    if kind < 8:
        data = draw(st.lists(st.one_of(entries(odd=True), odd_entry()), min_size=1, max_size=3))
        return dumps({"data": data, "trnm": "REAL"}), False
    return draw(st.one_of(garbage, spliced())), False


recv_base = st.sampled_from(
    [RECV, MIDNIGHT, MIDNIGHT - 1, MIDNIGHT + 11 * 3600 * NS, MIDNIGHT - 13 * 3600 * NS]
)


@st.composite
def batch(draw: st.DrawFn) -> tuple[list[bytes], list[bool], list[int], list[int]]:
    made = draw(st.lists(frame(), min_size=1, max_size=8))
    recv = [draw(recv_base) + draw(st.integers(-5 * NS, 5 * NS)) for _ in made]
    first = draw(st.integers(0, 1 << 40))
    steps = [draw(st.integers(1, 3)) for _ in made]  # frame numbers rise, sometimes skipping
    fnos = [first + sum(steps[:i]) for i in range(len(made))]
    return [m[0] for m in made], [m[1] for m in made], recv, fnos


# --------------------------------------------------------------------------- properties


@SETTINGS
@given(batch(), st.sampled_from([None, DAY, DAY - 400]))
def test_arrow_decoder_agrees_with_the_reference(b: tuple, day: int | None) -> None:
    frames, valid, recv, fnos = b
    got = assert_equivalent(frames, recv, fnos, day)
    needless = [i for i in got.fallback if valid[i]]
    assert not needless, [frames[i] for i in needless]


@settings(max_examples=30, deadline=None)
@given(st.lists(entries(), min_size=1, max_size=24), st.integers(1, 5), st.integers(0, 86_399))
def test_clean_frames_never_fall_back(data: list[dict], per_frame: int, second: int) -> None:
    frames = [
        dumps({"data": data[i : i + per_frame], "trnm": "REAL"}) for i in range(0, len(data), per_frame)
    ]
    recv = [MIDNIGHT + second * NS] * len(frames)
    got = assert_equivalent(frames, recv, list(range(len(frames))))
    assert got.fallback == []
    assert sum(len(t) for t in got.tables.values()) == len(data)


# Arrow's casts accept more than the grammar; the fast path relies on exactly how much.
cast_text = st.text(alphabet="0123456789+-. xXeEiInNaf_\t,١", max_size=8)


@settings(max_examples=400, deadline=None)
@given(cast_text)
def test_arrow_casts_accept_what_the_fast_path_assumes(s: str) -> None:
    def accepts(to: pa.DataType) -> bool:
        try:
            pc.cast(pa.array([s]), to)
        except pa.ArrowInvalid:
            return False
        return True

    if not re.search("[xX]", s):
        in_range = bool(re.fullmatch(r"-?[0-9]+", s)) and -(1 << 63) <= int(s) < 1 << 63
        assert accepts(pa.int64()) == in_range
    if not re.search("[xXeEiInN]", s):
        assert accepts(pa.float64()) == bool(re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)", s))


# --------------------------------------------------------------------------- examples


def fixture_frames() -> dict[str, bytes]:
    with open(DATA, encoding="utf-8") as f:
        return {d["section"]: dumps(d["frame"]) for d in map(json.loads, f)}


def test_captured_frames() -> None:
    sections = fixture_frames()
    names = ["7.3", "7.4", "7.5", "7.6"]
    frames = [sections[s] for s in names]
    got = assert_equivalent(frames, [RECV] * 4, [10, 11, 12, 13])
    assert got.fallback == [2]  # 7.5 holds a 0w entry
    assert {t: len(v) for t, v in got.tables.items()} == {"trades": 2, "orderbook": 2}
    trade = got.tables["trades"].sort_by("seq").to_pylist()[0]
    assert trade["seq"] == 10 << SEQ_SHIFT and trade["price"] == 251000 and trade["side"] == "buy"
    assert str(trade["ts"]) == "2026-07-20 10:27:56+09:00" and trade["date"] == "2026-07-20"
    nx = [r for r in got.tables["orderbook"].to_pylist() if r["venue"] == "NXT"]
    assert nx and nx[0]["symbol"] == "005930" and nx[0]["seq"] == 13 << SEQ_SHIFT


def test_bisection_isolates_the_invalid_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    good = [fixture_frames()[s] for s in ("7.3", "7.4", "7.6")]
    frames = [good[i % 3] for i in range(50)]
    bad_at = sorted(rng.sample(range(53), 3))
    for i in bad_at:
        frames.insert(i, b'{"data":[{"values":{"20":"102756"}')
    calls = []
    read = arrow_decode._read
    monkeypatch.setattr(arrow_decode, "_read", lambda buf, **kw: calls.append(1) or read(buf, **kw))
    got = assert_equivalent(frames, [RECV] * 53, list(range(53)))
    assert got.fallback == bad_at
    # The strict try, then O(bad · log n) lenient parses.
    assert len(calls) <= 2 + 2 * 3 * math.ceil(math.log2(53))
    entries_ = sum(len(orjson.loads(f)["data"]) for f in frames if f in good)
    assert sum(len(t) for t in got.tables.values()) == entries_


def test_time_from_the_receive_time_wraps_at_midnight() -> None:
    def one(time_: str, recv: int, day: int | None = None) -> tuple[str, str]:
        e = {"type": "0B", "item": "005930", "values": {"20": time_, "10": "100", "15": "-1", "13": "5"}}
        got = assert_equivalent([dumps({"data": [e], "trnm": "REAL"})], [recv], [1], day)
        row = got.tables["trades"].to_pylist()[0]
        return str(row["ts"]), row["date"]

    assert one("235959", MIDNIGHT + 1 * NS) == ("2026-07-19 23:59:59+09:00", "2026-07-19")
    assert one("000001", MIDNIGHT - 1 * NS) == ("2026-07-20 00:00:01+09:00", "2026-07-20")
    assert one("120000", MIDNIGHT + 1) == ("2026-07-20 12:00:00+09:00", "2026-07-20")
    assert one("235959", MIDNIGHT + 1, DAY) == ("2026-07-20 23:59:59+09:00", "2026-07-20")
    assert one("000000", RECV, DAY - 1) == ("2026-07-19 00:00:00+09:00", "2026-07-19")


def test_frame_limits_and_edges() -> None:
    entry = {"type": "0B", "item": "005930", "values": {"20": "090000", "10": "1", "15": "1", "13": "1"}}
    huge = dumps({"data": [entry] * (1 << SEQ_SHIFT), "trnm": "REAL"})
    got = assert_equivalent([huge, VALID], [RECV] * 2, [1, 2])
    assert got.fallback == [0] and got.tables == {}
    assert decode_frames([], [], []) == ArrowDecoded()
    with pytest.raises(ValueError):
        decode_frames([VALID], [], [])


def test_sink_takes_the_tables_as_built(tmp_path: Path) -> None:
    sections = fixture_frames()
    frames = [sections[s] for s in ("7.3", "7.4", "7.6")]
    got = decode_frames(frames, [RECV] * 3, [1, 2, 3])
    arrow_sink, ref_sink = Sink(tmp_path / "a", "w"), Sink(tmp_path / "r", "w")
    arrow_sink.add_tables(got.tables)
    dec = Decoder()
    for fno, raw in enumerate(frames, 1):
        dec.add(raw, RECV, fno)
    ref_sink.add(dec.finish())
    arrow_sink.close()
    ref_sink.close()
    for table in ("trades", "orderbook"):
        assert read_table(tmp_path / "a", table).equals(read_table(tmp_path / "r", table))
    with pytest.raises(StoreError):
        arrow_sink.add_tables({"trades": got.tables["orderbook"]})


def test_text_orjson_refuses_is_refused_whole_in_every_batch() -> None:
    """JSON Arrow's parser accepts but orjson refuses, even in fields the recorder never reads:
    the frame goes to the fallback, where the reference rejects it whole, alone or in a batch."""
    entry = b'{"type":"0B","item":"005930","values":{"20":"090000","10":"1","15":"1","13":"1"}}'
    clean = b'{"data":[' + entry + b'],"trnm":"REAL"}'
    for junk in (b"NaN", b"-Infinity", b"1" * 400, b"1.8e308", b"[" * 1100 + b"]" * 1100):
        raw = b'{"data":[' + entry + b'],"trnm":"REAL","x":' + junk + b"}"
        _, rejected = reference([raw], [RECV], [7])
        assert rejected == {7}
        assert decode_frames([raw], [RECV], [7]).fallback == [0]
        got = assert_equivalent([clean, raw, clean], [RECV] * 3, [6, 7, 8])
        assert got.fallback == [1] and len(got.tables["trades"]) == 2
