"""Kiwoom real-time protocol, free of I/O: frames in, rows out, and back.

This module never imports asyncio, websockets, httpx, pyarrow or duckdb (a test checks).
It owns:

- builders for the frames a client sends (LOGIN, REG, REMOVE; the PING echo is the
  received frame itself, §3.2);
- :func:`classify`, which tells the session what an incoming frame is without decoding
  market data;
- :func:`decode_frame`, which turns a REAL frame into typed rows for the ``trades`` and
  ``orderbook`` tables and keeps every entry it cannot decode as a ``rejects`` row;
- :func:`encode_frame`, the inverse: rows back into a REAL frame such that
  ``decode_frame(encode_frame(rows)) == rows``.

Row layout: a tuple in the order of :func:`recorder.fields.columns` for the entry's type.
``ts`` and ``recv_ts`` are integer nanoseconds since the Unix epoch (UTC); the trading
date (KST) comes from the receive time, or from ``trading_date`` when the caller knows it
(replay of a recorded day).
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import operator
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from recorder.fields import (
    REAL_TYPES,
    SUFFIX_VENUE,
    TABLE_TYPES,
    VENUE_SUFFIX,
    Field,
    Kind,
    RealType,
    columns,
)

NS = 1_000_000_000
DAY_NS = 86_400 * NS
KST_OFFSET_NS = 9 * 3600 * NS  # Korea has no daylight saving time.
KST = dt.timezone(dt.timedelta(hours=9), "KST")

# Entries per frame are numbered into ``seq`` = frame number * 2**16 + position.
SEQ_SHIFT = 16
MAX_ENTRIES = 1 << SEQ_SHIFT


# --------------------------------------------------------------------------- frames out


def build_login(token: str) -> str:
    """The LOGIN frame: the bare token, no "Bearer " prefix (§2.3, §3.1)."""
    return orjson.dumps({"trnm": "LOGIN", "token": token}).decode()


def build_reg(
    items: Sequence[str], types: Sequence[str], *, grp_no: str = "1", refresh: str = "1"
) -> str:
    """A REG frame registering every item for every type (a cross product, §3.4).

    ``refresh="1"`` keeps what was registered before; ``"0"`` replaces it.
    """
    body = {
        "trnm": "REG",
        "grp_no": grp_no,
        "refresh": refresh,
        "data": [{"item": list(items), "type": list(types)}],
    }
    return orjson.dumps(body).decode()


def build_remove(items: Sequence[str], types: Sequence[str], *, grp_no: str = "1") -> str:
    """A REMOVE frame; same shape as REG without ``refresh`` (§3.4)."""
    body = {"trnm": "REMOVE", "grp_no": grp_no, "data": [{"item": list(items), "type": list(types)}]}
    return orjson.dumps(body).decode()


def build_ping_echo(raw: str | bytes) -> str | bytes:
    """The answer to a PING: the very same frame, byte for byte (§3.2)."""
    return raw


# --------------------------------------------------------------------------- classify


class FrameKind(enum.Enum):
    LOGIN = "LOGIN"
    PING = "PING"
    REG = "REG"
    REMOVE = "REMOVE"
    REAL = "REAL"
    SYSTEM = "SYSTEM"
    OTHER = "OTHER"  # a known-shaped frame with another trnm (CNSR*, ...)
    INVALID = "INVALID"  # not JSON, not an object, or no trnm


@dataclass(frozen=True, slots=True)
class Message:
    """An incoming frame as the session sees it.

    Attributes:
        kind: what the frame is.
        body: the parsed object for control frames; ``None`` for REAL frames (they are
            decoded later, from the journal) and for INVALID ones.
        error: why an INVALID frame is invalid.
    """

    kind: FrameKind
    body: dict[str, Any] | None = None
    error: str = ""

    @property
    def return_code(self) -> int | str | None:
        """``return_code`` of a LOGIN/REG/REMOVE reply, or the ``code`` of a SYSTEM frame."""
        if self.body is None:
            return None
        code = self.body.get("return_code", self.body.get("code"))
        if isinstance(code, str) and code.lstrip("-").isdigit():
            return int(code)
        return code  # type: ignore[no-any-return]

    @property
    def return_msg(self) -> str:
        if self.body is None:
            return ""
        return str(self.body.get("return_msg", self.body.get("message", "")))


_REAL_MARKERS = (b'"trnm":"REAL"', '"trnm":"REAL"')
_KINDS = {k.value: k for k in FrameKind if k not in (FrameKind.OTHER, FrameKind.INVALID)}


def classify(raw: str | bytes) -> Message:
    """Tell what an incoming frame is.

    REAL frames, the bulk of the traffic, are recognised by their compact ``"trnm":"REAL"``
    marker without parsing; anything else is parsed. A false positive costs nothing: the
    decoder parses the frame later and rejects it if it is not REAL after all.
    The official client also accepts a bare ``PING`` string (§3.2).
    """
    marker = _REAL_MARKERS[0] if isinstance(raw, bytes) else _REAL_MARKERS[1]
    if marker in raw:  # type: ignore[operator]
        return Message(FrameKind.REAL)
    if raw in ("PING", b"PING"):
        return Message(FrameKind.PING)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Message(FrameKind.INVALID, error=f"invalid JSON: {exc}")
    if not isinstance(body, dict):
        return Message(FrameKind.INVALID, error=f"not a JSON object but {type(body).__name__}")
    trnm = body.get("trnm")
    if not isinstance(trnm, str):
        return Message(FrameKind.INVALID, body, error="no trnm")
    return Message(_KINDS.get(trnm, FrameKind.OTHER), body)


# --------------------------------------------------------------------------- decode


@dataclass(slots=True)
class Decoded:
    """What one frame decoded into.

    Attributes:
        rows: ``(table, date, symbol, row)`` for every entry that decoded; ``date`` is the
            KST trading date ``YYYY-MM-DD`` and ``row`` follows ``fields.columns``.
        rejects: ``(date, row)`` with ``row = (recv_ts, seq, reason, raw)``, for every frame
            or entry that did not decode, kept whole.
    """

    rows: list[tuple[str, str, str, tuple[Any, ...]]] = field(default_factory=list)
    rejects: list[tuple[str, tuple[int, int, str, str]]] = field(default_factory=list)


REJECT_COLUMNS = ("recv_ts", "seq", "reason", "raw")

_INT_RE = re.compile(r"\s*[+-]?\d+\s*")
_FLOAT_RE = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)\s*")
_CODE_RE = re.compile(r"[0-9A-Z]{6}")


class _Plan:
    """A real-time type's fields grouped by kind, in row order, for the fast decode path."""

    def __init__(self, rt: RealType) -> None:
        self.rt = rt
        by_kind = {k: [f for f in rt.fields if f.kind is k] for k in Kind}
        self.time_fid = rt.time_field.fid
        self.prices = tuple(f.fid for f in by_kind[Kind.PRICE])
        sv = by_kind[Kind.SIDE_VOLUME]
        self.side_volume = sv[0].fid if sv else None
        self.ints = tuple(f.fid for f in by_kind[Kind.INT])
        self.floats = tuple(f.fid for f in by_kind[Kind.FLOAT])
        self.texts = tuple(f.fid for f in by_kind[Kind.TEXT])
        # Row order (after the base columns): prices, volume+side, ints, floats, texts.
        ordered = [*by_kind[Kind.PRICE], *sv, *by_kind[Kind.INT], *by_kind[Kind.FLOAT], *by_kind[Kind.TEXT]]
        self.ordered: tuple[Field, ...] = tuple(ordered)
        self.columns = columns(rt)
        self.cache: dict[tuple[tuple[str, ...], tuple[str, ...]], _SubPlan] = {}


_PLANS = {code: _Plan(rt) for code, rt in REAL_TYPES.items()}


def row_columns(table: str) -> tuple[str, ...]:
    """Column names of a decoded row of ``table`` (``trades`` or ``orderbook``)."""
    return _PLANS[TABLE_TYPES[table].code].columns


def kst_date(ts_ns: int) -> str:
    """The KST calendar date of an epoch-nanosecond instant, as ``YYYY-MM-DD``."""
    return _day_str((ts_ns + KST_OFFSET_NS) // DAY_NS)


_DAY_CACHE: dict[int, str] = {}


def _day_str(kst_day: int) -> str:
    s = _DAY_CACHE.get(kst_day)
    if s is None:
        s = (dt.date(1970, 1, 1) + dt.timedelta(days=kst_day)).isoformat()
        _DAY_CACHE[kst_day] = s
    return s


def trading_day(date: str | dt.date) -> int:
    """Days since the epoch of a KST date (the form ``decode_frame(trading_day=)`` takes)."""
    d = dt.date.fromisoformat(date) if isinstance(date, str) else date
    return (d - dt.date(1970, 1, 1)).days


def _parse_time(value: Any, recv_ts_ns: int, day: int | None) -> int | None:
    """HHMMSS (or YYYYMMDDHHMMSS, §4.3) in KST → epoch ns, or None if it does not parse.

    With no trading day given, the day is the KST date of the receive time, moved by one
    day when that puts the exchange time more than 12 h away (a tick stamped 23:59:59 and
    received at 00:00:01).
    """
    if not isinstance(value, str) or not value.isdigit() or not value.isascii():
        return None
    if len(value) == 14:
        try:
            when = dt.datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=KST)
        except ValueError:
            return None
        return int(when.timestamp()) * NS
    if len(value) != 6:
        return None
    hh, mm, ss = int(value[:2]), int(value[2:4]), int(value[4:])
    if hh > 23 or mm > 59 or ss > 59:
        return None
    secs = (hh * 3600 + mm * 60 + ss) * NS - KST_OFFSET_NS
    if day is not None:
        return day * DAY_NS + secs
    ts = (recv_ts_ns + KST_OFFSET_NS) // DAY_NS * DAY_NS + secs
    if ts - recv_ts_ns > DAY_NS // 2:
        ts -= DAY_NS
    elif recv_ts_ns - ts > DAY_NS // 2:
        ts += DAY_NS
    return ts


def _split_item(item: Any) -> tuple[str, str] | None:
    """``"005930_NX"`` → ``("005930", "NXT")``; None for anything that is not a stock item."""
    if not isinstance(item, str):
        return None
    code, sep, suffix = item.partition("_")
    venue = SUFFIX_VENUE.get(sep + suffix)
    if venue is None or not _CODE_RE.fullmatch(code):
        return None
    return code, venue


def _side(value: str) -> str | None:
    sign = value.lstrip()[:1]
    return "buy" if sign == "+" else "sell" if sign == "-" else None


class _SubPlan:
    """The fast-path plan for one set of present FIDs (live 0D frames carry ~139 of 163).

    Kiwoom sends the same FIDs in the same order frame after frame, so sub-plans are cached
    by the tuple of keys: the cost of working out which fields are absent is paid once.
    """

    def __init__(self, plan: _Plan, present: Iterable[str]) -> None:
        have = set(present)
        self.complete_required = all(f.fid in have for f in plan.rt.fields if f.required)
        self.prices = tuple(f for f in plan.prices if f in have)
        self.side_volume = plan.side_volume if plan.side_volume in have else None
        self.ints = tuple(f for f in plan.ints if f in have)
        self.floats = tuple(f for f in plan.floats if f in have)
        self.texts = tuple(f for f in plan.texts if f in have)
        self.int_like = self.prices + ((self.side_volume,) if self.side_volume else ()) + self.ints
        self.n_prices = len(self.prices)
        self.n_int = len(self.int_like)
        self.n_numeric = self.n_int + len(self.floats)
        # Where each output column comes from in the flat list of present values; absent
        # columns point at a trailing None.
        flat: list[str] = list(self.prices)
        if self.side_volume:
            flat += [self.side_volume, "side"]
        flat += [*self.ints, *self.floats, *self.texts]
        wanted: list[str] = []
        for f in plan.ordered:
            wanted.append(f.fid)
            if f.kind is Kind.SIDE_VOLUME:
                wanted.append("side" if self.side_volume else "-")
        index = {fid: i for i, fid in enumerate(flat)}
        perm = [index.get(fid, len(flat)) for fid in wanted]
        self.picker = None if perm == list(range(len(perm))) else operator.itemgetter(*perm)


_SUBPLAN_CACHE_MAX = 256


def _subplan(plan: _Plan, values: dict[str, Any], skip: tuple[str, ...] = ()) -> _SubPlan:
    key = (tuple(values), skip)
    sp = plan.cache.get(key)
    if sp is None:
        sp = _SubPlan(plan, (k for k in values if k not in skip))
        if len(plan.cache) < _SUBPLAN_CACHE_MAX:
            plan.cache[key] = sp
    return sp


def _fast_values(plan: _Plan, values: dict[str, Any]) -> list[Any] | tuple[Any, ...] | None:
    """Parse every present FID in C-level maps; None if anything is odd (then go strict)."""
    sp = _subplan(plan, values)
    if not sp.complete_required:
        return None
    out = _fast_parse(sp, values)
    if out is None:
        # Empty strings are nulls (§4.3); parse again without them before going strict.
        empties = tuple(k for k, v in values.items() if v == "")
        if empties:
            out = _fast_parse(_subplan(plan, values, empties), values)
    return out


_NUMERIC_CHARS = b"0123456789+-, ."
_I64_MAX = (1 << 63) - 1


def _fast_parse(sp: _SubPlan, values: dict[str, Any]) -> list[Any] | tuple[Any, ...] | None:
    """Parse the present numeric FIDs with one ``orjson.loads`` of a JSON array.

    Joining the values with commas and parsing them as one array moves the per-field work
    into C. The checks around it make the fast path accept a subset of what the strict
    path accepts, with the same values: only ``0-9 + - , . space`` may occur, a ``+`` only
    as a value's first character, no ``.`` in integer fields, and exactly one number per
    value. Anything else returns None and the strict path decides.
    """
    get = values.__getitem__
    try:
        s_int = ",".join(map(get, sp.int_like))
        s_flt = ",".join(map(get, sp.floats))
        texts = list(map(get, sp.texts))
        "".join(texts)  # raises TypeError unless every text is a str
    except (KeyError, TypeError):
        return None
    joined = "," + s_int + "," + s_flt if s_flt else "," + s_int
    if (
        not joined.isascii()
        or joined.encode().translate(None, _NUMERIC_CHARS)
        or "." in s_int
        or "+-" in joined
        or "+ " in joined
    ):
        return None
    try:
        nums = orjson.loads("[" + joined.replace(",+", ",")[1:] + "]")
    except orjson.JSONDecodeError:
        return None
    if len(nums) != sp.n_numeric:
        return None
    n_int = sp.n_int
    try:
        if n_int and max(nums[:n_int]) > _I64_MAX:
            return None
        n_p = sp.n_prices
        out: list[Any] = list(map(abs, nums[:n_p]))
        if sp.side_volume is not None:
            out.append(abs(nums[n_p]))
            out.append(_side(get(sp.side_volume)))
            n_p += 1
        out.extend(nums[n_p:n_int])
        out.extend(map(float, nums[n_int:]))
    except TypeError:  # pragma: no cover - guarded by the character check
        return None
    out.extend([t if t != "" else None for t in texts])
    if sp.picker is not None:
        out.append(None)
        return sp.picker(out)  # type: ignore[no-any-return]
    return out


def _strict_value(f: Field, value: Any) -> tuple[Any, str]:
    """One value → (parsed, problem). ``""``/missing is null without a problem."""
    if value is None or value == "":
        return None, ""
    if not isinstance(value, str):
        return None, f"FID {f.fid} ({f.column}) is {type(value).__name__}, not a string"
    if f.kind is Kind.TEXT:
        return value, ""
    pattern = _FLOAT_RE if f.kind is Kind.FLOAT else _INT_RE
    if not value.isascii() or not pattern.fullmatch(value):
        return None, f"FID {f.fid} ({f.column}) unparseable: {value[:40]!r}"
    if f.kind is Kind.FLOAT:
        x = float(value)
        return (x, "") if math.isfinite(x) else (None, f"FID {f.fid} not finite")
    n = int(value)
    return (abs(n) if f.kind in (Kind.PRICE, Kind.SIDE_VOLUME) else n), ""


def _strict_values(plan: _Plan, values: dict[str, Any]) -> tuple[list[Any] | None, list[str]]:
    """Field-by-field parse. Returns (values or None if a required field failed, problems)."""
    out: list[Any] = []
    problems: list[str] = []
    fatal = False
    for f in plan.ordered:
        raw = values.get(f.fid)
        parsed, problem = _strict_value(f, raw)
        if problem:
            problems.append(problem)
        if parsed is None and f.required:
            fatal = True
            if not problem:
                problems.append(f"required FID {f.fid} ({f.column}) missing or empty")
        out.append(parsed)
        if f.kind is Kind.SIDE_VOLUME:
            out.append(_side(raw) if parsed is not None else None)
    return (None if fatal else out), problems


def decode_frame(
    raw: str | bytes,
    recv_ts_ns: int,
    fno: int,
    *,
    trading_day: int | None = None,
    out: Decoded | None = None,
) -> Decoded:
    """Decode one REAL frame into rows; nothing is dropped.

    Args:
        raw: the frame exactly as received.
        recv_ts_ns: when it was read from the socket (epoch ns).
        fno: the frame's journal number; row ``seq`` is ``fno * 2**16 + position``.
        trading_day: days since the epoch of the KST trading date, when known (replay);
            otherwise it comes from ``recv_ts_ns``.
        out: append to this result instead of a new one (saves allocations in bulk work).

    Returns:
        The decoded rows and rejects. A frame that is not a REAL frame at all is one reject;
        an entry that cannot be decoded is one reject holding the entry's JSON text; an
        entry that decoded but had an unparseable optional field is stored with that field
        null *and* noted in rejects with reason ``partial: ...``.
    """
    res = out if out is not None else Decoded()
    seq0 = fno << SEQ_SHIFT
    recv_date = kst_date(recv_ts_ns)

    def reject(reason: str, text: str, seq: int = seq0) -> None:
        res.rejects.append((recv_date, (recv_ts_ns, seq, reason, text)))

    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reject(f"invalid JSON: {exc}", _raw_text(raw))
        return res
    data = frame.get("data") if isinstance(frame, dict) else None
    if not isinstance(frame, dict) or frame.get("trnm") != "REAL" or not isinstance(data, list):
        reject("not a REAL frame with a data list", _raw_text(raw))
        return res
    if len(data) >= MAX_ENTRIES:
        reject(f"{len(data)} entries in one frame (limit {MAX_ENTRIES - 1})", _raw_text(raw))
        return res
    for pos, entry in enumerate(data):
        problem = _decode_entry(entry, recv_ts_ns, seq0 + pos, trading_day, res)
        if problem:
            reject(problem, _entry_text(entry), seq0 + pos)
    return res


def _decode_entry(
    entry: Any, recv_ts_ns: int, seq: int, day: int | None, res: Decoded
) -> str:
    """Decode one entry into ``res``; return a reject reason, or "" when it decoded."""
    if not isinstance(entry, dict):
        return f"entry is {type(entry).__name__}, not an object"
    plan = _PLANS.get(entry.get("type"))  # type: ignore[arg-type]
    if plan is None:
        return f"unsupported real-time type {str(entry.get('type'))[:20]!r}"
    split = _split_item(entry.get("item"))
    if split is None:
        return f"item {str(entry.get('item'))[:40]!r} is not a stock code with a known suffix"
    values = entry.get("values")
    if isinstance(values, list) and len(values) == 1:
        values = values[0]  # §4.1: some clients have seen a one-element list.
    if not isinstance(values, dict):
        return f"values is {type(values).__name__}, not an object"
    ts = _parse_time(values.get(plan.time_fid), recv_ts_ns, day)
    if ts is None:
        return f"time FID {plan.time_fid} unparseable: {str(values.get(plan.time_fid))[:20]!r}"
    parsed = _fast_values(plan, values)
    problems: list[str] = []
    if parsed is None:
        parsed, problems = _strict_values(plan, values)
        if parsed is None:
            return "; ".join(problems)
    symbol, venue = split
    row = (ts, recv_ts_ns, seq, symbol, venue, *parsed)
    res.rows.append((plan.rt.table, kst_date(ts), symbol, row))
    if problems:
        reason = "partial: " + "; ".join(problems) + " (row stored with these fields null)"
        res.rejects.append((kst_date(recv_ts_ns), (recv_ts_ns, seq, reason, _entry_text(entry))))
    return ""


def _raw_text(raw: str | bytes) -> str:
    """A frame as text for the ``raw`` column. Bytes that are not UTF-8 are hex-escaped."""
    if isinstance(raw, str):
        return raw
    return raw.decode("utf-8", errors="backslashreplace")


def _entry_text(entry: Any) -> str:
    try:
        return orjson.dumps(entry).decode()
    except (TypeError, orjson.JSONEncodeError):  # pragma: no cover - parsed JSON always dumps
        return repr(entry)


# --------------------------------------------------------------------------- encode


def _format_float(x: float) -> str:
    text = repr(x)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text


def _price_sign(value: int, reference: int | None) -> str:
    """§4.3: prices carry their direction against the previous close, none when equal."""
    if reference is None or value == reference:
        return ""
    return "+" if value > reference else "-"


def encode_entry(table: str, row: Sequence[Any], *, prev_close: int | None = None) -> dict[str, Any]:
    """One row → a REAL entry ``{"values", "type", "name", "item"}`` (live key order, §4.1).

    Prices get their direction sign against ``prev_close``; for trades it defaults to
    ``price - change``. Null fields are left out.
    """
    rt = TABLE_TYPES[table]
    plan = _PLANS[rt.code]
    ts, _recv, _seq, symbol, venue = row[:5]
    kst = (ts + KST_OFFSET_NS) % DAY_NS // NS
    values: dict[str, str] = {plan.time_fid: f"{kst // 3600:02d}{kst // 60 % 60:02d}{kst % 60:02d}"}
    if prev_close is None and table == "trades":
        cols = plan.columns
        price, change = row[cols.index("price")], row[cols.index("change")]
        prev_close = price - change if price is not None and change is not None else None
    i = 5
    for f in plan.ordered:
        v = row[i]
        i += 1
        if f.kind is Kind.SIDE_VOLUME:
            side = row[i]
            i += 1
            values[f.fid] = ("+" if side == "buy" else "-" if side == "sell" else "") + str(v)
        elif v is None:
            continue
        elif f.kind is Kind.PRICE:
            values[f.fid] = _price_sign(v, prev_close) + str(v)
        elif f.kind is Kind.FLOAT:
            values[f.fid] = _format_float(v)
        else:
            values[f.fid] = str(v)
    return {"values": values, "type": rt.code, "name": rt.name, "item": symbol + VENUE_SUFFIX[venue]}


def encode_frame(rows: Iterable[tuple[str, Sequence[Any]]]) -> str:
    """``(table, row)`` pairs → one REAL frame, ``trnm`` last as seen live (§4.1)."""
    data = [encode_entry(table, row) for table, row in rows]
    return orjson.dumps({"data": data, "trnm": "REAL"}).decode()
