"""Malformed input for the ``malformed`` scenario: a hypothesis grammar over Kiwoom's frame
format (protocol notes §4), where every generated frame carries the outcome the store
must show for it, worked out from the spec's rules (§4.3, ``recorder.kiwoom.fields``), not from
the decoder:

- a frame that is not a REAL frame with a ``data`` list (not JSON, not an object, no or an
  unknown ``trnm``, too deeply nested, invalid UTF-8 in a binary frame, ...) → exactly one
  ``rejects`` row and no market row;
- in a REAL frame, each entry on its own: a valid entry → one market row; an entry that is
  not an object, has an unknown type or item, ``values`` that are not an object, an
  unparseable time or a required FID that is missing, empty or unparseable → one
  ``rejects`` row; an entry whose only problems are optional FIDs → one market row (those
  fields null) *and* one ``rejects`` row (``partial: …``).

Every generated frame has at least one problem, so each must leave at least one
``rejects`` row. Control frames the session acts on (LOGIN, PING, REG, REMOVE, SYSTEM) are
never generated: those are protocol, not garbage.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from recorder.kiwoom.fields import ORDERBOOK, TRADES, Field, Kind, RealType
from recorder.kiwoom.frames import FrameKind, classify

CONTROL_TRNM = frozenset({"LOGIN", "PING", "REG", "REMOVE", "REAL", "SYSTEM"})
CONTROL_KINDS = frozenset(
    {FrameKind.LOGIN, FrameKind.PING, FrameKind.REG, FrameKind.REMOVE, FrameKind.SYSTEM}
)
# A small fixed set of valid items keeps the number of Parquet partitions small.
VALID_ITEMS = ("005930", "000660_NX", "0000A0", "Z99999_AL", "373220")
INT64 = (-(1 << 63), (1 << 63) - 1)


@dataclass(frozen=True)
class Injected:
    """One frame to send, with what it must leave in the store."""

    data: str | bytes
    rows: int  # market rows (trades + orderbook)
    rejects: int  # rejects rows
    label: str


# --------------------------------------------------------------------------- values

# Text frames are UTF-8 on the wire: no lone surrogates (those only exist in binary frames).
_CHARS = st.characters(exclude_categories=["Cs"])


def _text(max_size: int = 12, min_size: int = 0) -> st.SearchStrategy[str]:
    return st.text(_CHARS, min_size=min_size, max_size=max_size)


def _nested(max_depth: int = 60) -> st.SearchStrategy[Any]:
    """A JSON value nested ``depth`` levels deep (lists or objects)."""

    def build(depth: int, as_list: bool) -> Any:
        value: Any = 1
        for _ in range(depth):
            value = [value] if as_list else {"a": value}
        return value

    return st.builds(build, st.integers(1, max_depth), st.booleans())


_JSON_SCALAR = st.one_of(
    st.integers(*INT64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    _text(),
)
_JSON_NON_STRING = st.one_of(
    st.integers(*INT64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.lists(_JSON_SCALAR, max_size=3),
    st.dictionaries(_text(4), _JSON_SCALAR, max_size=3),
    _nested(),
)


def _fmt_int(pad: str, plus: bool, n: int, trail: str) -> str:
    return f"{pad}{'+' if plus and n >= 0 else ''}{n}{trail}"


_VALID_INT = st.builds(
    _fmt_int,
    st.sampled_from(["", " ", "  "]),
    st.booleans(),
    st.integers(-(10**15), 10**15),
    st.sampled_from(["", " "]),
)


def _fmt_float(sign: str, n: int, style: int) -> str:
    whole, frac = divmod(abs(n), 100)
    body = (f"{whole}.{frac:02d}", f"{whole}", f"{whole}.", f".{frac:02d}")[style]
    return (sign if sign != "-" or n else "") + body


_VALID_FLOAT = st.builds(
    _fmt_float, st.sampled_from(["", "+", "-"]), st.integers(0, 10**9), st.integers(0, 3)
)
_VALID_TIME = st.builds(
    lambda h, m, s: f"{h:02d}{m:02d}{s:02d}", st.integers(0, 23), st.integers(0, 59), st.integers(0, 59)
)


def _valid(f: Field) -> st.SearchStrategy[str]:
    if f.kind is Kind.TIME:
        return _VALID_TIME
    if f.kind is Kind.FLOAT:
        return _VALID_FLOAT
    if f.kind is Kind.TEXT:
        return _text(16)
    return _VALID_INT  # PRICE, INT, SIDE_VOLUME


# Strings no reading of §4.3 accepts as an integer: letters, a decimal point, bad signs,
# whitespace other than spaces, non-ASCII digits, thousands separators, out of int64.
_BAD_INT_TEXT = st.one_of(
    st.builds(lambda a, b: f"{a}x{b}", _text(4), _text(4)),
    st.sampled_from(
        [
            "1.5",
            "+-5",
            "--5",
            "5-",
            "+ 5",
            "\t5",
            "5\n",
            "１２３",
            "٣",
            " ",
            "  ",
            "1e5",
            "0x1F",
            "1,000",
            "-",
            "+",
        ]
    ),
    st.integers(1 << 63, 10**30).map(str),
)
_NEGATIVE_OVERFLOW = st.integers(-(10**30), -(1 << 63) - 1).map(str)  # below int64: see Knobs
_BAD_FLOAT_TEXT = st.one_of(
    st.builds(lambda a, b: f"{a}x{b}", _text(4), _text(4)),
    st.sampled_from(
        ["1.2.3", "+-1", "nan", "inf", "-Infinity", "1e5", "１.５", " ", ".", "1,5", "\t1.0", "+ 1"]
    ),
)
_BAD_TIME = st.one_of(
    st.sampled_from(
        [
            "",
            "240000",
            "236000",
            "235960",
            "12345",
            "1234567",
            "12:30:00",
            "ab1234",
            " 93000",
            "093000 ",
            "１２３４５６",
        ]
    ),
    st.builds(lambda a: f"{a}x", _text(6)),
    _JSON_NON_STRING,
    st.none(),
)


@dataclass(frozen=True)
class Knobs:
    """Classes of input that are known to break the recorder (see the soak report), so that
    a test can leave them out of the grammar while a strict-xfail test pins each one.

    Attributes:
        unhashable_types: entries whose ``type`` is a JSON array or object.
        negative_overflow: integer FIDs below the int64 range (``-9223372036854775809``).
    """

    unhashable_types: bool = True
    negative_overflow: bool = True


ALL = Knobs()


def _garbage(f: Field, knobs: Knobs) -> st.SearchStrategy[Any]:
    """A non-null value that field ``f`` cannot hold (null, "" and missing are not garbage
    for an optional field: they are null)."""
    if f.kind is Kind.TIME:
        return _BAD_TIME.filter(lambda v: v is not None and v != "")
    if f.kind is Kind.TEXT:
        return _JSON_NON_STRING
    if f.kind is Kind.FLOAT:
        return st.one_of(_BAD_FLOAT_TEXT, _JSON_NON_STRING)
    if knobs.negative_overflow:
        return st.one_of(_BAD_INT_TEXT, _NEGATIVE_OVERFLOW, _JSON_NON_STRING)
    return st.one_of(_BAD_INT_TEXT, _JSON_NON_STRING)


# --------------------------------------------------------------------------- entries

_TYPES: tuple[RealType, ...] = (TRADES, ORDERBOOK)
_BAD_ITEM = st.one_of(
    st.sampled_from(
        ["", "5930", "0059301", "005930_XX", "005930_nx", "abcdef", "005930 ", " 005930", "００５９３０"]
    ),
    _text(10).filter(lambda s: s not in VALID_ITEMS),
    _JSON_NON_STRING,
    st.none(),
)
_HASHABLE_BAD_TYPE = st.one_of(
    st.sampled_from(["", "0b", "0d", "0C", "0B ", " 0D", "00", "1B", "주식체결"]),
    _text(6).filter(lambda s: s not in ("0B", "0D")),
    st.integers(*INT64),
    st.booleans(),
    st.none(),
)
_UNHASHABLE_BAD_TYPE = st.one_of(
    st.lists(_JSON_SCALAR, max_size=2), st.dictionaries(_text(3), _JSON_SCALAR, max_size=2)
)

ENTRY_MODES = (
    "valid",
    "bad_required",
    "bad_time",
    "bad_optional",
    "bad_required_and_optional",
    "not_object",
    "bad_type",
    "bad_item",
    "bad_values",
)


@st.composite
def _values(draw: st.DrawFn, rt: RealType) -> dict[str, Any]:
    """A valid ``values`` object: every required FID, some optional ones (some ``""``)."""
    values: dict[str, Any] = {}
    optional = [f for f in rt.fields if not f.required]
    chosen = set(draw(st.lists(st.sampled_from(optional), unique=True, max_size=8)))
    for f in rt.fields:
        if f.required:
            values[f.fid] = draw(_valid(f))
        elif f in chosen:
            values[f.fid] = draw(st.one_of(_valid(f), st.just("")))
    if draw(st.booleans()):  # FIDs the spec does not list are ignored
        values[draw(st.sampled_from(["9999", "0", "x"]))] = draw(_text(6))
    return values


@st.composite
def entry(draw: st.DrawFn, mode: str, knobs: Knobs = ALL) -> tuple[Any, int, int]:
    """(entry, rows, rejects) for one entry of a REAL frame, broken as ``mode`` says."""
    rt = draw(st.sampled_from(_TYPES))
    values = draw(_values(rt))
    e: dict[str, Any] = {
        "values": values,
        "type": rt.code,
        "name": rt.name,
        "item": draw(st.sampled_from(VALID_ITEMS)),
    }
    if mode == "not_object":
        return draw(st.one_of(_JSON_SCALAR, st.lists(_JSON_SCALAR, max_size=3))), 0, 1
    if mode == "bad_type":
        bad = (
            st.one_of(_HASHABLE_BAD_TYPE, _UNHASHABLE_BAD_TYPE)
            if knobs.unhashable_types
            else _HASHABLE_BAD_TYPE
        )
        e["type"] = draw(bad)
        return e, 0, 1
    if mode == "bad_item":
        e["item"] = draw(_BAD_ITEM)
        return e, 0, 1
    if mode == "bad_values":
        e["values"] = draw(
            st.one_of(
                _JSON_SCALAR,
                st.lists(st.just(values), min_size=2, max_size=3),
                st.lists(_JSON_SCALAR, min_size=1, max_size=3),
                st.just([]),
            )
        )
        return e, 0, 1
    rows, rejects = 1, 0
    if mode in ("bad_required", "bad_required_and_optional"):
        f = draw(st.sampled_from([f for f in rt.fields if f.required and f.kind is not Kind.TIME]))
        how = draw(st.sampled_from(["garbage", "empty", "null", "missing"]))
        if how == "missing":
            del values[f.fid]
        else:
            values[f.fid] = {"garbage": draw(_garbage(f, knobs)), "empty": "", "null": None}[how]
        rows, rejects = 0, 1
    if mode == "bad_time":
        tf = rt.time_field
        if draw(st.booleans()):
            del values[tf.fid]
        else:
            values[tf.fid] = draw(_BAD_TIME)
        rows, rejects = 0, 1
    if mode in ("bad_optional", "bad_required_and_optional"):
        fields = draw(
            st.lists(
                st.sampled_from([f for f in rt.fields if not f.required]), min_size=1, max_size=3, unique=True
            )
        )
        for f in fields:
            values[f.fid] = draw(_garbage(f, knobs))
        rejects = 1  # rows stays 1 for bad_optional: stored with those fields null, and noted
    if draw(st.integers(0, 9)) == 0:
        e["values"] = [values]  # §4.1: a one-element list has been seen; it is the object
    return e, rows, rejects


# --------------------------------------------------------------------------- frames


def _real(data: Any, trnm_first: bool, extra: dict[str, Any]) -> str:
    body = {"trnm": "REAL", "data": data} if trnm_first else {"data": data, "trnm": "REAL"}
    body.update(extra)
    return orjson.dumps(body).decode()


@st.composite
def real_frame(draw: st.DrawFn, knobs: Knobs = ALL) -> Injected:
    """A REAL frame of 1..5 entries, at least one of them bad."""
    modes = draw(st.lists(st.sampled_from(ENTRY_MODES), min_size=1, max_size=5))
    if all(m == "valid" for m in modes):
        modes[draw(st.integers(0, len(modes) - 1))] = draw(st.sampled_from(ENTRY_MODES[1:]))
    parts = [draw(entry(m, knobs)) for m in modes]
    extra = draw(st.dictionaries(st.sampled_from(["name", "seq", "x"]), _JSON_SCALAR, max_size=1))
    text = _real([p[0] for p in parts], draw(st.booleans()), extra)
    return Injected(
        text, sum(p[1] for p in parts), sum(p[2] for p in parts), "real:" + "+".join(sorted(set(modes)))
    )


_NOT_A_DATA_LIST = st.one_of(_JSON_SCALAR, st.dictionaries(_text(4), _JSON_SCALAR, max_size=3))


@st.composite
def frame(draw: st.DrawFn, knobs: Knobs = ALL) -> Injected:
    """Any malformed frame (text or binary), with its expected outcome."""
    kind = draw(
        st.sampled_from(
            [
                "real",
                "real",
                "real",
                "real_bad_data",
                "not_json",
                "not_object",
                "no_trnm",
                "other_trnm",
                "deep",
            ]
        )
    )
    if kind == "real":
        out = draw(real_frame(knobs))
    elif kind == "real_bad_data":
        body: dict[str, Any] = {"trnm": "REAL"}
        if draw(st.booleans()):
            body["data"] = draw(_NOT_A_DATA_LIST)
        out = Injected(orjson.dumps(body).decode(), 0, 1, "real_bad_data")
    elif kind == "not_json":
        source = draw(real_frame(knobs)).data
        assert isinstance(source, str)
        cut = draw(st.integers(0, len(source) - 1))  # an object without its closing brace
        text = draw(st.sampled_from([source[:cut], "\x00" + source, source + "}}", "{" + source[1:-1]]))
        text = (
            text
            if draw(st.booleans())
            else draw(_text(40, min_size=1).map(lambda s: "{" + s.replace("}", "")))
        )
        out = Injected(text, 0, 1, "not_json")
    elif kind == "not_object":
        value = draw(st.one_of(_JSON_SCALAR, st.lists(_JSON_SCALAR, max_size=4)))
        out = Injected(orjson.dumps(value).decode(), 0, 1, "not_object")
    elif kind == "no_trnm":
        body = draw(st.dictionaries(_text(6).filter(lambda k: k != "trnm"), _JSON_SCALAR, max_size=4))
        if draw(st.booleans()):
            body["trnm"] = draw(_JSON_NON_STRING | st.none())
        out = Injected(orjson.dumps(body).decode(), 0, 1, "no_trnm")
    elif kind == "other_trnm":
        trnm = draw(
            st.one_of(st.sampled_from(["CNSRLST", "real", "REAL ", "Real", "PONG", "ECHO"]), _text(10))
        )
        body = {"trnm": trnm, "payload": draw(_JSON_SCALAR)}
        out = Injected(orjson.dumps(body).decode(), 0, 1, "other_trnm")
    else:  # deep nesting at the top: past orjson's depth limit it is not JSON; below, not a frame
        depth = draw(st.integers(2, 3000))
        text = "[" * depth + "]" * depth if draw(st.booleans()) else '{"a":' * depth + "1" + "}" * depth
        out = Injected(text, 0, 1, "deep")
    return draw(_maybe_binary(out))


_BAD_UTF8 = (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80\x80", b"\xc3")


@st.composite
def _maybe_binary(draw: st.DrawFn, out: Injected) -> Injected:
    how = draw(st.sampled_from(["text", "text", "binary", "bad_utf8"]))
    if how == "text":
        return out
    raw = out.data.encode() if isinstance(out.data, str) else out.data
    if how == "binary":  # the same frame as a binary WebSocket message: the same outcome
        return Injected(raw, out.rows, out.rejects, out.label + ":binary")
    at = draw(st.integers(0, len(raw)))
    bad = raw[:at] + draw(st.sampled_from(_BAD_UTF8)) + raw[at:]
    return Injected(bad, 0, 1, "bad_utf8")


def _huge(rng: random.Random) -> Injected:
    """Frames with a string of 0.2-2 MB: as an unknown frame, a valid text FID, or garbage."""
    n = rng.randint(200_000, 2_000_000)
    blob = ("가나다abc" * (n // 6 + 1))[:n]
    fields = {"20": "093000", "10": "+70000", "15": "-5", "13": "1000"}
    which = rng.randrange(3)
    if which == 0:
        return Injected(orjson.dumps({"trnm": "HUGE", "blob": blob}).decode(), 0, 1, "huge:other")
    if which == 1:  # a valid row with a huge text FID (290), next to an entry with a bad type
        good = {"values": {**fields, "290": blob}, "type": "0B", "name": "x", "item": "005930"}
        bad = {"values": fields, "type": "0Z", "name": "x", "item": "005930"}
        return Injected(_real([good, bad], False, {}), 1, 1, "huge:text_fid")
    bad_int = {"values": {**fields, "14": "9" * n + "x"}, "type": "0B", "name": "x", "item": "005930"}
    return Injected(_real([bad_int], False, {}), 1, 1, "huge:partial")


def generate(n: int, seed_: int, *, knobs: Knobs = ALL, huge: int = 2) -> list[Injected]:
    """``n`` malformed frames from the grammar (seeded: the same arguments give the same
    frames), plus ``huge`` frames carrying 0.2-2 MB strings, shuffled in."""
    out: list[Injected] = []
    attempt = 0
    while len(out) < n:
        _collect(frame(knobs), n - len(out), seed_ * 1000 + attempt, out.append)
        attempt += 1
    rng = random.Random(seed_)
    for _ in range(huge):
        out.insert(rng.randrange(len(out) + 1), _huge(rng))
    for inj in out:  # the grammar never makes control frames; make sure
        assert classify(inj.data).kind not in CONTROL_KINDS, inj
    return out


def _collect(
    strategy: st.SearchStrategy[Injected], n: int, seed_: int, sink: Callable[[Injected], None]
) -> None:
    @seed(seed_)
    @settings(
        max_examples=n,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(example: Injected) -> None:
        sink(example)

    collect()
