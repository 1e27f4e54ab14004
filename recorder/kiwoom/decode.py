"""The REAL-frame decoder: many frames in, typed columns out (pure; no I/O).

This is the reference decoder. Live capture decodes with it; ingest and rebuild decode large
batches with :mod:`recorder.kiwoom.decode_arrow`, which hands it every frame it does not
decode itself and otherwise gives the same rows, so the batch size never changes a table.
It works on *batches*: :meth:`Decoder.add` checks each frame's envelope and each entry's
item and time and files the entry's raw value strings with the other entries of the same
shape; :meth:`Decoder.finish` then parses each shape group's numbers with a single
``orjson.loads`` of a JSON array and slices the result into columns. That keeps the
per-field work in C. When a group fails the strict character checks, its entries are
decoded one by one by the field-by-field path (:func:`strict_values`), which is the
reference semantics: the fast path either agrees with it exactly or steps aside (a property
test checks).

The decoded form is defined by strict JSON (RFC 8259) as orjson reads it: a frame orjson
refuses (``NaN``, a number past the double range, nesting deeper than 1024, bad UTF-8), even
in a field the recorder never reads, goes whole to ``rejects`` with orjson's message; of a
key given twice, the last one counts.

Value rules (protocol notes §4.3): every value is a string; ``""`` and a missing FID
are null; prices lose their direction sign (it is against the previous close, not a
negative price); quantities with a real sign keep it; a leading space or ``+`` is allowed.
An entry whose *required* FIDs do not parse goes whole to ``rejects``; an entry with an
unparseable optional FID is stored with that field null and also noted in ``rejects``
(reason ``partial: ...``), so nothing is hidden.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from recorder.kiwoom.fields import (
    LIVE_SOURCE,
    REAL_TYPES,
    SOURCE,
    TABLE_TYPES,
    Field,
    Kind,
    RealType,
    columns,
)
from recorder.kiwoom.items import split_item
from recorder.kiwoom.time import kst_date, parse_time

# Entries of a frame are numbered into ``seq`` = frame number * 2**16 + position.
SEQ_SHIFT = 16
MAX_ENTRIES = 1 << SEQ_SHIFT

REJECT_COLUMNS = ("recv_ts", "seq", "reason", "raw")
_I64_MAX = (1 << 63) - 1
_I64_MIN = -(1 << 63)
_PLUS_ZERO = (0.0).__add__
_NUMERIC_CHARS = b"0123456789+-, ."
# The strict grammar: spaces (not other whitespace) around, ASCII digits only.
_INT_RE = re.compile(r" *[+-]?[0-9]+ *")
_FLOAT_RE = re.compile(r" *[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+) *")


def _brief(value: Any, n: int) -> str:
    """``str(value)[:n]`` for a reason; a value nested too deep to print is named by its type.

    A frame orjson accepts may nest 1024 levels, deeper than ``str`` can recurse.
    """
    try:
        return str(value)[:n]
    except RecursionError:
        return f"<{type(value).__name__} nested too deep to print>"


def _side(value: Any) -> str | None:
    sign = value.lstrip()[:1] if isinstance(value, str) else ""
    return "buy" if sign == "+" else "sell" if sign == "-" else None


# --------------------------------------------------------------------------- plans


class _Plan:
    """A real-time type's fields grouped by kind, in the stored column order."""

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
        order = [*by_kind[Kind.PRICE], *sv, *by_kind[Kind.INT], *by_kind[Kind.FLOAT], *by_kind[Kind.TEXT]]
        self.ordered: tuple[Field, ...] = tuple(order)
        self.columns = columns(rt)
        self.value_columns = tuple(c for c in self.columns[5:] if c != SOURCE)
        self.cache: dict[tuple[tuple[str, ...], tuple[str, ...]], _Shape] = {}


PLANS = {code: _Plan(rt) for code, rt in REAL_TYPES.items()}


def tuple_getter(positions: list[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """An itemgetter that always returns a tuple (itemgetter of one index returns a scalar)."""
    if not positions:
        return lambda _seq: ()
    if len(positions) == 1:
        p = positions[0]
        return lambda seq: (seq[p],)
    return operator.itemgetter(*positions)


class _Shape:
    """The fast-path plan for one key layout of ``values`` (live 0D carries ~139 of 163 FIDs).

    Kiwoom sends the same FIDs in the same order frame after frame, so shapes are cached by
    the tuple of keys and values are fetched by position, not by key.
    """

    def __init__(self, plan: _Plan, keys: tuple[str, ...], skip: tuple[str, ...]) -> None:
        have = set(keys) - set(skip)
        pos = {k: i for i, k in enumerate(keys)}
        self.plan = plan
        self.complete = all(f.fid in have for f in plan.rt.fields if f.required)
        prices = [f for f in plan.prices if f in have]
        self.side_volume = plan.side_volume if plan.side_volume in have else None
        ints = [f for f in plan.ints if f in have]
        floats = [f for f in plan.floats if f in have]
        texts = [f for f in plan.texts if f in have]
        int_like = prices + ([self.side_volume] if self.side_volume else []) + ints
        self.n_prices, self.n_int, self.n_float, self.n_text = (
            len(prices),
            len(int_like),
            len(floats),
            len(texts),
        )
        self.get_int = tuple_getter([pos[f] for f in int_like])
        self.get_float = tuple_getter([pos[f] for f in floats])
        self.get_text = tuple_getter([pos[f] for f in texts])
        self.side_pos = pos.get(self.side_volume) if self.side_volume else None
        # Output column → index into the fast path's column list; absent → None.
        flat = [*prices, *([self.side_volume, "side"] if self.side_volume else []), *ints, *floats, *texts]
        index = {fid: i for i, fid in enumerate(flat)}
        self.sources: list[int | None] = []
        for f in plan.ordered:
            self.sources.append(index.get(f.fid))
            if f.kind is Kind.SIDE_VOLUME:
                self.sources.append(index.get("side"))


_SHAPE_CACHE_MAX = 256


def _shape(plan: _Plan, keys: tuple[str, ...], skip: tuple[str, ...] = ()) -> _Shape:
    key = (keys, skip)
    shape = plan.cache.get(key)
    if shape is None:
        shape = _Shape(plan, keys, skip)
        if len(plan.cache) < _SHAPE_CACHE_MAX:
            plan.cache[key] = shape
    return shape


# --------------------------------------------------------------------------- results


@dataclass(slots=True)
class TableColumns:
    """Decoded rows of one table, column-wise.

    Attributes:
        columns: column name → list of values, every list of length ``n``, in the order of
            :func:`recorder.kiwoom.fields.columns`, plus a ``date`` column (KST trading date
            ``YYYY-MM-DD``) used for partitioning.
    """

    table: str
    columns: dict[str, list[Any]]

    @property
    def n(self) -> int:
        return len(self.columns["seq"])

    def rows(self) -> list[tuple[Any, ...]]:
        """Rows in the layout of :func:`recorder.kiwoom.fields.columns` (without ``date``)."""
        names = PLANS[TABLE_TYPES[self.table].code].columns
        return list(zip(*(self.columns[c] for c in names), strict=True))


@dataclass(slots=True)
class Decoded:
    """What a batch of frames decoded into.

    Attributes:
        tables: ``"trades"`` / ``"orderbook"`` → their columns (absent when no rows).
        rejects: ``(recv_ts, seq, reason, raw)`` for every frame or entry that did not
            decode, kept whole (a frame's exact text; an entry's JSON text).
    """

    tables: dict[str, TableColumns] = field(default_factory=dict)
    rejects: list[tuple[int, int, str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- decoder


class _Group:
    """Entries of one shape waiting for :meth:`Decoder.finish`."""

    __slots__ = ("entries", "floats", "ints", "meta", "shape", "sides", "texts")

    def __init__(self, shape: _Shape) -> None:
        self.shape = shape
        self.meta: list[tuple[int, int, int, str, str, str]] = []  # ts, recv, seq, sym, venue, date
        self.ints: list[str] = []
        self.floats: list[str] = []
        self.texts: list[Any] = []
        self.sides: list[Any] = []
        # (frame, position) of each entry, to re-parse for the strict path. Holding the
        # parsed dicts instead would make the cyclic GC rescan them on every collection.
        self.entries: list[tuple[str | bytes, int]] = []


class Decoder:
    """Accumulates REAL frames, then decodes them column-wise.

    Use: ``d = Decoder(); d.add(raw, recv_ts_ns, fno) ...; result = d.finish()``. The
    decoder can be reused after ``finish``. ``trading_day`` (days since the epoch, see
    :func:`trading_day`) pins the date of ``ts`` when replaying a recorded day; otherwise it
    comes from each frame's receive time.
    """

    def __init__(self, *, trading_day: int | None = None) -> None:
        self.trading_day = trading_day
        self._groups: dict[int, _Group] = {}
        self._rejects: list[tuple[int, int, str, str]] = []

    def add(self, raw: str | bytes, recv_ts_ns: int, fno: int) -> None:
        """File one frame's entries for decoding; frame-level problems become rejects now."""
        seq0 = fno << SEQ_SHIFT
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self._rejects.append((recv_ts_ns, seq0, f"invalid JSON: {exc}", raw_text(raw)))
            return
        data = frame.get("data") if isinstance(frame, dict) else None
        if not isinstance(data, list) or frame.get("trnm") != "REAL":
            self._rejects.append((recv_ts_ns, seq0, "not a REAL frame with a data list", raw_text(raw)))
            return
        if len(data) >= MAX_ENTRIES:
            reason = f"{len(data)} entries in one frame (limit {MAX_ENTRIES - 1})"
            self._rejects.append((recv_ts_ns, seq0, reason, raw_text(raw)))
            return
        for pos, entry in enumerate(data):
            problem = self._add_entry(entry, recv_ts_ns, seq0 + pos, raw, pos)
            if problem:
                self._rejects.append((recv_ts_ns, seq0 + pos, problem, entry_text(entry, raw)))

    def _add_entry(self, entry: Any, recv_ts_ns: int, seq: int, raw: str | bytes, pos: int) -> str:
        if not isinstance(entry, dict):
            return f"entry is {type(entry).__name__}, not an object"
        kind = entry.get("type")
        plan = PLANS.get(kind) if isinstance(kind, str) else None  # a list or dict is unhashable
        if plan is None:
            return f"unsupported real-time type {_brief(entry.get('type'), 20)!r}"
        split = split_item(entry.get("item"))
        if split is None:
            return f"item {_brief(entry.get('item'), 40)!r} is not a stock code with a known suffix"
        values = entry.get("values")
        if isinstance(values, list) and len(values) == 1:
            values = values[0]  # §4.1: a one-element list has been seen by one client.
        if not isinstance(values, dict):
            return f"values is {type(values).__name__}, not an object"
        ts = parse_time(values.get(plan.time_fid), recv_ts_ns, self.trading_day)
        if ts is None:
            return f"time FID {plan.time_fid} unparseable: {_brief(values.get(plan.time_fid), 20)!r}"
        vals = list(values.values())
        keys = tuple(values)
        shape = _shape(plan, keys)
        ints = shape.get_int(vals)
        floats = shape.get_float(vals)
        if "" in ints or "" in floats:  # §4.3: "" is null; such entries get their own shape
            skip = tuple(k for k, v in values.items() if v == "")
            shape = _shape(plan, keys, skip)
            ints, floats = shape.get_int(vals), shape.get_float(vals)
        group = self._groups.get(id(shape))
        if group is None:
            group = self._groups[id(shape)] = _Group(shape)
        group.meta.append((ts, recv_ts_ns, seq, split[0], split[1], kst_date(ts)))
        group.ints.extend(ints)
        group.floats.extend(floats)
        group.texts.extend(shape.get_text(vals))
        if shape.side_pos is not None:
            group.sides.append(vals[shape.side_pos])
        group.entries.append((raw, pos))
        return ""

    def finish(self) -> Decoded:
        """Decode everything added since the last ``finish``."""
        out = Decoded(rejects=self._rejects)
        parts: dict[str, list[_Chunk]] = {}
        for group in self._groups.values():
            cols = _fast_columns(group) if group.shape.complete else None
            if cols is not None:
                chunk = _Chunk(group.meta, cols, group.shape.sources)
            else:
                chunk = _slow_columns(group, out.rejects)
            if chunk.meta:
                parts.setdefault(group.shape.plan.rt.table, []).append(chunk)
        for table, chunks in parts.items():
            out.tables[table] = _assemble(table, chunks)
        self._groups = {}
        self._rejects = []
        return out


@dataclass(slots=True)
class _Chunk:
    meta: list[tuple[Any, ...]]
    cols: list[list[Any]]
    sources: list[int | None]  # stored column → index into cols, None = all null


def _fast_columns(group: _Group) -> list[list[Any]] | None:
    """All entries of one shape at once; None when any value needs the strict path."""
    sh = group.shape
    k = len(group.meta)
    try:
        s_int = ",".join(group.ints)
        s_flt = ",".join(group.floats)
        "".join(group.texts)  # TypeError unless every text value is a str
    except TypeError:
        return None
    ints = _parse_numbers(s_int, k * sh.n_int, integers=True)
    floats = _parse_numbers(s_flt, k * sh.n_float, integers=False)
    if ints is None or floats is None:
        return None
    cols: list[list[Any]] = []
    n_p, n_i = sh.n_prices, sh.n_int
    for j in range(n_p):
        cols.append(list(map(abs, ints[j::n_i])))
    if sh.side_volume is not None:
        cols.append(list(map(abs, ints[n_p::n_i])))
        n_p += 1
    for j in range(n_p, n_i):
        cols.append(ints[j::n_i])
    side_col = list(map(_side, group.sides)) if sh.side_volume is not None else None
    n_f = sh.n_float
    # float.__add__ makes floats of the integers orjson returns and turns -0.0 into 0.0.
    float_cols = [list(map(_PLUS_ZERO, floats[j::n_f])) for j in range(n_f)]
    n_t = sh.n_text
    text_cols = [[t or None for t in group.texts[j::n_t]] for j in range(n_t)]
    if side_col is not None:
        cols.insert(sh.n_prices + 1, side_col)
    return cols + float_cols + text_cols


def _parse_numbers(joined: str, expected: int, *, integers: bool) -> list[Any] | None:
    """Comma-joined numeric strings → numbers, or None unless every one is plainly valid.

    Accepts a subset of the strict grammar: only ``0-9 + - , . space``; a ``+`` only as a
    value's first character; no ``.`` in integers; exactly ``expected`` numbers.
    """
    if expected == 0:
        return []
    text = "," + joined
    if (
        not text.isascii()
        or text.encode().translate(None, _NUMERIC_CHARS)
        or "+-" in text
        or "+ " in text
        or (integers and "." in text)
    ):
        return None
    try:
        nums = orjson.loads("[" + text.replace(",+", ",")[1:] + "]")
    except orjson.JSONDecodeError:
        return None
    # Out-of-range integers (orjson turns those beyond 64 bits into floats) go strict,
    # where they are reported instead of being clamped or crashing the Parquet writer.
    # -2**63 itself goes strict too: its absolute value (prices) does not fit in int64.
    if len(nums) != expected or (integers and (max(nums) > _I64_MAX or min(nums) <= _I64_MIN)):
        return None
    return nums  # type: ignore[no-any-return]


def _slow_columns(group: _Group, rejects: list[tuple[int, int, str, str]]) -> _Chunk:
    """Entries one by one through the strict path; failures become rejects."""
    plan = group.shape.plan
    meta: list[tuple[Any, ...]] = []
    rows: list[list[Any]] = []
    for m, (raw, pos) in zip(group.meta, group.entries, strict=True):
        entry = orjson.loads(raw)["data"][pos]
        values = entry["values"]
        if isinstance(values, list):
            values = values[0]
        parsed, problems = strict_values(plan, values)
        if parsed is None:
            rejects.append((m[1], m[2], "; ".join(problems), entry_text(entry, raw)))
            continue
        meta.append(m)
        rows.append(parsed)
        if problems:
            reason = "partial: " + "; ".join(problems) + " (row stored with these fields null)"
            rejects.append((m[1], m[2], reason, entry_text(entry, raw)))
    n = len(plan.value_columns)
    cols = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(n)]
    return _Chunk(meta, cols, list(range(n)))


def _assemble(table: str, chunks: list[_Chunk]) -> TableColumns:
    """Concatenate the shape groups of one table; columns a shape lacks are null."""
    plan = PLANS[TABLE_TYPES[table].code]
    out: dict[str, list[Any]] = {name: [] for name in (*plan.columns, "date")}
    base = ("ts", "recv_ts", "seq", "symbol", "venue", "date")
    for chunk in chunks:
        for i, name in enumerate(base):
            out[name].extend([m[i] for m in chunk.meta])
        k = len(chunk.meta)
        for name, src in zip(plan.value_columns, chunk.sources, strict=True):
            out[name].extend(chunk.cols[src] if src is not None else [None] * k)
        if SOURCE in out:
            out[SOURCE].extend([LIVE_SOURCE] * k)
    return TableColumns(table, out)


def strict_value(f: Field, value: Any) -> tuple[Any, str]:
    """One value by the reference rules → (parsed, problem). ``""``/missing is null."""
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
        # + 0.0 turns "-0" into 0.0: the fast path reads "-0" as the integer 0, and a rate
        # of minus zero means nothing more than zero.
        x = float(value) + 0.0
        return (x, "") if math.isfinite(x) else (None, f"FID {f.fid} ({f.column}) is not finite")
    n = int(value)
    unsigned = f.kind in (Kind.PRICE, Kind.SIDE_VOLUME)
    if not (-_I64_MAX if unsigned else _I64_MIN) <= n <= _I64_MAX:
        return None, f"FID {f.fid} ({f.column}) out of int64 range"
    return (abs(n) if unsigned else n), ""


def strict_values(plan: _Plan, values: dict[str, Any]) -> tuple[list[Any] | None, list[str]]:
    """Field-by-field parse → (values in column order or None if a required one failed, problems)."""
    out: list[Any] = []
    problems: list[str] = []
    fatal = False
    for f in plan.ordered:
        raw = values.get(f.fid)
        parsed, problem = strict_value(f, raw)
        if problem:
            problems.append(problem)
        if parsed is None and f.required:
            fatal = True
            if not problem:
                problems.append(f"required FID {f.fid} ({f.column}) missing or empty")
        out.append(parsed)
        if f.kind is Kind.SIDE_VOLUME:
            out.append(_side(raw) if parsed is not None else None)
    if SOURCE in plan.columns:
        out.append(LIVE_SOURCE)
    return (None if fatal else out), problems


def raw_text(raw: str | bytes) -> str:
    """A frame as text for the ``raw`` column; bytes that are not UTF-8 are escaped."""
    if isinstance(raw, str):
        return raw
    return raw.decode("utf-8", errors="backslashreplace")


def entry_text(entry: Any, frame: str | bytes) -> str:
    """An entry's JSON text, written again from the parsed ``frame`` (the journal keeps the bytes).

    orjson writes at most 254 levels of nesting while it reads 1024: an entry nested deeper
    than it writes is given as the text of its whole frame instead, which holds it unmodified.
    """
    try:
        return orjson.dumps(entry).decode()
    except orjson.JSONEncodeError:
        return raw_text(frame)
