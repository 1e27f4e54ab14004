"""One decoded form: what Arrow's JSON parser accepts beyond orjson, the screen that finds it,
and decode_arrow plus the reference decoder on its fallback giving exactly what the reference
decoder gives alone, rows, rejects (reason and raw) and all, for frames of every kind."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.json as pj
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.kiwoom import strict_json
from recorder.kiwoom.decode import PLANS
from recorder.kiwoom.decode_arrow import decode_block, decode_frames, parse_block
from recorder.kiwoom.time import NS
from recorder.sim.market import SyntheticMarket
from tests.kiwoom.test_decode import RECV
from tests.kiwoom.test_decode_arrow import DAY, MIDNIGHT, frame, recv_base, reference_decode, same

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LITERALS = [b"NaN", b"-NaN", b"Inf", b"-Inf", b"Infinity", b"-Infinity"]
INFINITE = [b"1" * 310, b"2" * 309, b"1.8e308", b"-1.8e308", b"1" * 400 + b".5", b"1" * 330 + b"e-20"]
DEEP = [b"[" * 1100 + b"]" * 1100, b'{"a":' * 1100 + b"1" + b"}" * 1100]


def deep(k: int, obj: bool) -> bytes:
    return b'{"a":' * k + b"1" + b"}" * k if obj else b"[" * k + b"]" * k


# --------------------------------------------------------------------------- the parsers


@pytest.mark.parametrize("junk", LITERALS + INFINITE + DEEP)
def test_arrow_accepts_outside_the_schema_what_orjson_refuses(junk: bytes) -> None:
    """The list in recorder.kiwoom.strict_json, as pyarrow and orjson behave today; a string
    field of the schema and a strict parse refuse it all."""
    raw = b'{"trnm":"REAL","x":' + junk + b"}"
    schema = pa.schema([("trnm", pa.string())])

    def arrow(text: bytes, behaviour: str, schema: pa.Schema = schema) -> bool:
        options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior=behaviour)
        try:
            pj.read_json(pa.BufferReader(text), parse_options=options)
        except pa.ArrowInvalid:
            return False
        return True

    assert arrow(raw, "ignore")
    assert strict_json.refused(raw)
    assert not arrow(raw, "error")
    assert not arrow(raw, "ignore", schema.append(pa.field("x", pa.string())))


@pytest.mark.parametrize(
    "fine",
    [
        b"1" * 309,
        b"1.7e308",
        b"1e-400",
        b"0." + b"1" * 400,
        b"-0",
        b"1" * 30,
        b"nul" + b"l",
        b'"NaN"',
        deep(1023, False),
    ],
)
def test_what_orjson_takes_is_not_refused(fine: bytes) -> None:
    assert not strict_json.refused(b'{"x":' + fine + b"}")  # depth 1 + 1023 = 1024: the limit


# --------------------------------------------------------------------------- the screen


def starts_of(lines: list[bytes]) -> np.ndarray:
    return np.cumsum([0] + [len(line) + 1 for line in lines[:-1]])


def marked(lines: list[bytes]) -> list[int]:
    return strict_json.suspects(b"\n".join(lines) + b"\n", starts_of(lines))


CLEAN = orjson.dumps(
    {"data": [{"values": {"20": "090000", "10": "-7000"}, "type": "0B", "item": "005930_NX"}], "trnm": "REAL"}
)


@pytest.mark.parametrize("junk", [*LITERALS, b"1e5", b"1E-5", b"0.5e1", b"1" * 309, deep(1025, False)])
@pytest.mark.parametrize("at", [0, 1, 4])
def test_the_screen_marks_the_line_that_holds_it(junk: bytes, at: int) -> None:
    lines = [CLEAN] * 5
    lines[at] = b'{"x":' + junk + b"}"
    assert marked(lines) == [at]
    assert marked([b'{"x":' + junk + b"}"]) == [0]  # at the very start and end of a buffer


def test_the_screen_leaves_clean_lines_alone() -> None:
    lines = [
        CLEAN,
        b'{"x":"' + b"7" * 256 + b'"}',
        b'{"x":' + deep(1023, True) + b"}",
        b'{"x":"nan inf NAN 1 e"}',
    ]
    assert marked(lines) == []
    assert strict_json.suspects(b"", np.zeros(0, np.int64)) == []


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 80), st.integers(309, 400), st.integers(0, 3), st.booleans())
def test_every_run_of_309_digits_is_marked(offset: int, length: int, line: int, quoted: bool) -> None:
    """Runs are found by sampling every 32nd byte: wherever the run lies, it is found."""
    run = b"9" * length
    lines = [b'{"x":"' + b"a" * offset + b'"}'] * 4
    lines[line] = b'{"x":"' + b"a" * offset + b'","y":' + (b'"' + run + b'"' if quoted else run) + b"}"
    assert line in marked(lines)


# --------------------------------------------------------------------------- decoders agree

SENTINEL = "@@junk@@"
OTHER_JUNK = [
    b"-1e400", b"1" * 309, b"1.7e308", b"1e-400", b"-0", b"0.0", b"1E+2", b"123456789012345678901234567890",
    b"-9223372036854775809", b"18446744073709551616", b"true", b"null", b"[]", b"{}", b'"NaN"',
    b'"-Infinity"', b'"1e5"', b'"' + b"7" * 400 + b'"', b'"\\u004eaN"', b'"\xff"', b'"\xc0\x80"',
    b'[1,{"b":NaN}]', b'{"a":[1e999]}', b'"\\ud800"', b"nan",
]  # fmt: skip
junk = st.one_of(
    st.sampled_from(LITERALS + INFINITE + OTHER_JUNK),
    st.builds(deep, st.integers(1015, 1026), st.booleans()),
)


def market_entries(n: int, seed: int = 7) -> list[bytes]:
    """Entries as the synthetic market makes them (live FIDs and key order), as JSON."""
    market = SyntheticMarket(SyntheticMarket.universe(4, seed), seed=seed, venues=("KRX", "NXT"))
    now, out = MIDNIGHT + 9 * 3600 * NS, []
    while len(out) < n:
        now += NS
        out.extend(orjson.dumps(e) for e in market.step(now))
    return out


POOL = market_entries(80)
# Drawing entries field by field (tests.kiwoom.test_decode.entries) is slow; these examples
# vary what surrounds them, so market entries do (odd values are test_decode_arrow's part).
market_entry = st.sampled_from(POOL).map(orjson.loads)
market_entries_list = st.lists(market_entry, max_size=2)


WHERE = st.sampled_from(["frame", "entry", "unread FID", "read FID", "name", "item", "nested"])
READ_FID = {code: st.sampled_from([f.fid for f in plan.rt.fields]) for code, plan in PLANS.items()}
DUP_KEY = st.sampled_from([b"trnm", b"data", b"type", b"item", b"name", b"values", b"x", b"13", b"20", b"21"])
DUP_FIRST = st.sampled_from([b'"REAL"', b'"0B"', b'"005930"', b'"1"', b"{}", b"[]", b"5", b"null", b"NaN"])


@st.composite
def injected(draw: st.DrawFn) -> bytes:
    """A REAL frame with ``junk`` as the value of a read or unread field at some depth."""
    e = draw(market_entry)
    where = draw(WHERE)
    body: dict[str, Any] = {"data": [e], "trnm": "REAL"}
    if where == "frame":
        body["x"] = SENTINEL
    elif where == "entry":
        e["x"] = SENTINEL
    elif where == "unread FID":
        e["values"]["9999"] = SENTINEL
    elif where == "read FID":
        e["values"][draw(READ_FID[e["type"]])] = SENTINEL
    elif where == "nested":
        body["x"] = [1, {"y": SENTINEL}]
    else:
        e[where] = SENTINEL
    others = draw(market_entries_list)
    body["data"] = [*others, e] if draw(st.booleans()) else [e, *others]
    return orjson.dumps(body).replace(b'"' + SENTINEL.encode() + b'"', draw(junk))


@st.composite
def duplicated(draw: st.DrawFn) -> bytes:
    """A REAL frame with a key given twice (orjson keeps the last one, Arrow refuses the keys it reads)."""
    raw = orjson.dumps({"data": [draw(market_entry)], "trnm": "REAL", "x": "1"})
    token = b'"' + draw(DUP_KEY) + b'":'
    return raw.replace(token, token + draw(DUP_FIRST) + b"," + token, 1)


odd_frame = st.one_of(
    frame().map(lambda f: f[0]),
    injected(),
    duplicated(),
    st.lists(market_entry, min_size=1, max_size=4).map(lambda d: orjson.dumps({"data": d, "trnm": "REAL"})),
)


def assert_same_tables(got: dict[str, list[pa.Table]], expected: dict[str, pa.Table]) -> None:
    assert {t for t, parts in got.items() if sum(map(len, parts))} == set(expected)
    for table, t in expected.items():
        mine = pa.concat_tables(got[table]).sort_by("seq").to_pylist()
        theirs = t.sort_by("seq").to_pylist()
        assert len(mine) == len(theirs)
        for a, b in zip(mine, theirs, strict=True):
            assert all(same(a[k], b[k]) for k in b), (table, a, b)


def with_fallback(
    tables: dict[str, pa.Table],
    fallback: list[int],
    frames: list[bytes],
    recv: list[int],
    fnos: list[int],
    day: int | None,
) -> tuple[dict[str, list[pa.Table]], list]:
    """What the pipeline stores: Arrow's tables, and the reference's for the frames Arrow left."""
    more, rejects = reference_decode(
        [frames[i] for i in fallback], [recv[i] for i in fallback], [fnos[i] for i in fallback], day
    )
    got = {t: [v] for t, v in tables.items()}
    for t, v in more.items():
        got.setdefault(t, []).append(v)
    return got, rejects


@SETTINGS
@given(st.lists(odd_frame, min_size=1, max_size=8), st.data(), st.sampled_from([None, DAY]))
def test_arrow_and_its_fallback_give_what_the_reference_gives(
    frames: list[bytes], data: Any, day: int | None
) -> None:
    recv = [data.draw(recv_base) for _ in frames]
    fnos = list(range(7, 7 + len(frames)))
    got = decode_frames(frames, recv, fnos, trading_day=day)
    tables, rejects = with_fallback(got.tables, got.fallback, frames, recv, fnos, day)
    expected, expected_rejects = reference_decode(frames, recv, fnos, day)
    assert sorted(rejects) == sorted(expected_rejects)  # reason and raw included
    assert_same_tables(tables, expected)


@SETTINGS
@given(st.lists(odd_frame, min_size=1, max_size=8), st.sampled_from([None, DAY]))
def test_ingest_blocks_give_what_the_reference_gives(frames: list[bytes], day: int | None) -> None:
    frames = [f.strip(b" \t\r\n") for f in frames if b"\n" not in f and f.strip(b" \t\r\n")]
    if not frames:
        return
    fnos = list(range(1, len(frames) + 1))
    recv = [RECV] * len(frames)
    parsed, n = parse_block(b"\n".join(frames) + b"\n", threads=False)
    assert n == len(frames)
    if parsed is None:  # ingest then decodes the block line by line
        got = decode_frames(frames, recv, fnos, trading_day=day)
    else:
        got = decode_block(parsed, 1, RECV, trading_day=day, parallel=False)
    tables, rejects = with_fallback(got.tables, got.fallback, frames, recv, fnos, day)
    expected, expected_rejects = reference_decode(frames, recv, fnos, day)
    assert sorted(rejects) == sorted(expected_rejects)
    assert_same_tables(tables, expected)


def test_a_refused_frame_is_rejected_whole_with_orjsons_reason() -> None:
    e = {"values": {"20": "090000", "10": "+100", "15": "-3", "13": "9"}, "type": "0B", "item": "005930"}
    good = orjson.dumps({"data": [e], "trnm": "REAL"})
    bad = orjson.dumps({"data": [e | {"values": e["values"] | {"9999": SENTINEL}}], "trnm": "REAL"})
    bad = bad.replace(b'"' + SENTINEL.encode() + b'"', b"NaN")
    got = decode_frames([good, bad, good], [RECV] * 3, [1, 2, 3])
    assert got.fallback == [1] and len(got.tables["trades"]) == 2
    _, rejects = reference_decode([bad], [RECV], [2], None)
    assert rejects == [(RECV, 2 << 16, rejects[0][2], bad.decode())]
    assert rejects[0][2].startswith("invalid JSON: unexpected character")


def test_a_rejected_entry_nested_too_deep_to_write_keeps_its_frame_as_raw() -> None:
    """orjson reads 1024 levels but writes 254; str() recurses only so far."""
    for where in ("x", "type", "item"):
        e: dict[str, Any] = {
            "values": {"20": "090000", "10": "1", "15": "1", "13": "1"},
            "type": "0B",
            "item": "X",
        }
        e[where] = SENTINEL
        raw = orjson.dumps({"data": [e], "trnm": "REAL"}).replace(
            b'"' + SENTINEL.encode() + b'"', deep(1015, False)
        )
        _, rejects = reference_decode([raw], [RECV], [1], None)
        assert len(rejects) == 1 and rejects[0][3] == raw.decode()
        assert decode_frames([raw], [RECV], [1]).fallback == [0]
