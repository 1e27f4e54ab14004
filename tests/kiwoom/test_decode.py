"""Property tests of the decoder: the fast column path agrees with the strict reference, and
``decode(encode(rows)) == rows``."""

from __future__ import annotations

import math
import random

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.kiwoom import frames as P
from recorder.kiwoom.decode import PLANS, Decoder, strict_values
from recorder.kiwoom.fields import Kind

RECV = 1_784_510_878_000_000_000  # 2026-07-20 10:27:58 KST
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

digits = st.integers(min_value=0, max_value=10**12).map(str)
sign = st.sampled_from(["", "+", "-", " "])


def valid_value(kind: Kind) -> st.SearchStrategy[str]:
    if kind is Kind.FLOAT:
        return st.builds(lambda s, a, b: f"{s}{a}.{b:02d}", sign, st.integers(0, 10**6), st.integers(0, 99))
    if kind is Kind.TEXT:
        return st.text(alphabet="0123456789ABCKRXNT", min_size=1, max_size=8)
    if kind is Kind.TIME:
        return st.builds(
            lambda h, m, s: f"{h:02d}{m:02d}{s:02d}",
            st.integers(0, 23),
            st.integers(0, 59),
            st.integers(0, 59),
        )
    return st.builds(lambda s, d: s + d, sign, digits)


_ODD_TEXT = '0123456789+-. ,_eE[]{}"atrunl１٣\t'

# Values the fast path must not misread: near-misses of the number grammar.
ODD_SAMPLES = [
    "",
    "+-5",
    "+ 5",
    "- 5",
    "5+",
    "1,000",
    "1.",
    ".5",
    "0005",
    "true",
    "null",
    "[5]",
    "-0",
    "+0",
    " 0",
    "1e5",
    "NaN",
    "Infinity",
    "18446744073709551615",
    "9223372036854775808",
]
odd_value = st.one_of(st.text(alphabet=_ODD_TEXT, max_size=8), st.sampled_from(ODD_SAMPLES))

# Cheap stand-ins for the strategies above, drawn from a hypothesis-seeded Random: a 0D entry
# has about 160 fields, and drawing every one through hypothesis made each example cost ~1 s.
_SIGNS = ["", "+", "-", " "]
_TEXT = "0123456789ABCKRXNT"


def _cheap_valid(kind: Kind, rnd: random.Random) -> str:
    if kind is Kind.FLOAT:
        return f"{rnd.choice(_SIGNS)}{rnd.choice([0, 1, rnd.randrange(10**6)])}.{rnd.randrange(100):02d}"
    if kind is Kind.TEXT:
        return "".join(rnd.choices(_TEXT, k=rnd.randint(1, 8)))
    if kind is Kind.TIME:
        return f"{rnd.randrange(24):02d}{rnd.randrange(60):02d}{rnd.randrange(60):02d}"
    return rnd.choice(_SIGNS) + str(rnd.choice([0, 1, rnd.randrange(10**12 + 1)]))


def _cheap_odd(rnd: random.Random) -> str:
    if rnd.randrange(2):
        return "".join(rnd.choices(_ODD_TEXT, k=rnd.randrange(9)))
    return rnd.choice(ODD_SAMPLES)


@st.composite
def entries(draw: st.DrawFn, odd: bool = False) -> dict:
    """One REAL entry of a random type with every field decided: absent, empty, odd (with
    ``odd``) or valid. Up to eight fields take their values from hypothesis' own strategies
    (which seek edge cases and shrink); the others from a Random that hypothesis seeds."""
    code = draw(st.sampled_from(["0B", "0D"]))
    plan = PLANS[code]
    fields = plan.rt.fields
    rnd = draw(st.randoms(use_true_random=False))
    chosen = draw(st.sets(st.integers(0, len(fields) - 1), max_size=8))
    values: dict[str, str] = {}
    for i, f in enumerate(fields):
        if i in chosen:
            if not f.required and draw(st.integers(0, 9)) == 0:
                continue
            if odd and f.kind is not Kind.TIME and draw(st.integers(0, 6)) == 0:
                values[f.fid] = draw(odd_value)
            elif not f.required and draw(st.integers(0, 15)) == 0:
                values[f.fid] = ""
            else:
                values[f.fid] = draw(valid_value(f.kind))
            continue
        if not f.required and rnd.randrange(10) == 0:
            continue  # absent (live 0D carries ~139 of 163 FIDs)
        if odd and f.kind is not Kind.TIME and rnd.randrange(7) == 0:
            values[f.fid] = _cheap_odd(rnd)
        elif not f.required and rnd.randrange(16) == 0:
            values[f.fid] = ""
        else:
            values[f.fid] = _cheap_valid(f.kind, rnd)
    keys = list(values)
    rnd.shuffle(keys)
    item = draw(st.sampled_from(["005930", "000660_NX", "373220_AL", "0001A0"]))
    return {"values": {k: values[k] for k in keys}, "type": code, "name": plan.rt.name, "item": item}


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):  # the sign of zero must agree too
        return (a == b and math.copysign(1, a) == math.copysign(1, b)) or (math.isnan(a) and math.isnan(b))
    return a == b and type(a) is type(b)


@SETTINGS
@given(st.lists(entries(odd=True), min_size=1, max_size=8), st.integers(1, 4))
def test_batch_decoder_agrees_with_the_strict_reference(batch: list[dict], per_frame: int) -> None:
    """Every entry decodes exactly as the field-by-field rules say, however it is batched."""
    dec = Decoder()
    frames = [batch[i : i + per_frame] for i in range(0, len(batch), per_frame)]
    for fno, data in enumerate(frames):
        dec.add(orjson.dumps({"data": data, "trnm": "REAL"}), RECV, fno)
    res = dec.finish()
    got = {}
    for table, cols in res.tables.items():
        for row in cols.rows():
            got[row[2]] = (table, row)
    rejected = {r[1]: r[2] for r in res.rejects}
    for fno, data in enumerate(frames):
        for pos, entry in enumerate(data):
            seq = (fno << 16) + pos
            expected, problems = strict_values(PLANS[entry["type"]], entry["values"])
            if expected is None:
                assert seq in rejected and seq not in got
                continue
            table, row = got[seq]
            assert all(_same(a, b) for a, b in zip(row[5:], expected, strict=True)), (entry, row, expected)
            assert (seq in rejected) == bool(problems)
            if problems:
                assert rejected[seq].startswith("partial: ")


@SETTINGS
@given(st.lists(entries(), min_size=1, max_size=8))
def test_decode_encode_round_trip(batch: list[dict]) -> None:
    raw = orjson.dumps({"data": batch, "trnm": "REAL"})
    rows, rejects = P.decode_rows(raw, RECV, 3)
    assert rejects == []
    again, rejects2 = P.decode_rows(P.encode_frame(rows), RECV, 3)
    assert rejects2 == []
    assert again == rows
