"""Arrow-native decoding of REAL frames: the ingest hot path, with no Python work per entry.

:func:`decode_frames` parses a batch of frames with ``pyarrow.json.read_json`` (C++, all
cores) and does everything after the parse with Arrow compute kernels. It only decodes the
frames that are *clean*, where the reference decoder (:class:`recorder.kiwoom.decode.Decoder`)
would produce rows and no rejects; every other frame is handed back in
:attr:`ArrowDecoded.fallback` for the reference decoder, which owns rejects and partial
rejects. For the frames it decodes, the tables are identical to what ``Decoder`` plus
``Sink._add_market`` build (a property test checks).

Ingest takes a shorter road for files: :func:`parse_block` parses a block of whole NDJSON
lines as it lies in the memory-mapped file, when every line in it is plainly one object,
and :func:`decode_block` decodes it; no line is ever copied out. Blocks that are not
plain (blank or indented lines, CRLF, invalid UTF-8, a field outside the schema) go line by
line through :func:`decode_frames`. A test holds ingest to the reference decoder line for line.

A frame is clean when it is one JSON object (``{`` ... ``}`` once outer whitespace is
stripped) of valid UTF-8 that orjson accepts, ``trnm`` is ``"REAL"``, ``data`` is a list of
fewer than 65536 entries, and every entry is a 0B/0D object with a stock item, a 6-digit
HHMMSS time and valid values for all of its type's FIDs: required ones present and non-empty,
numbers in the strict grammar of :mod:`recorder.kiwoom.decode`, in int64 range, floats finite.

One decoded form: Arrow's JSON parser accepts some text that orjson, and so the reference,
refuses (``NaN``, numbers past the double range, very deep nesting; see
:mod:`recorder.kiwoom.strict_json`). A batch is first parsed with every field of a REAL frame
in the schema, typed as strings, and any other field refused: a frame that parses so holds
none of those. Only a batch that does not parse so (a frame with an unread FID or key, or
broken JSON) is parsed leniently, after its frames that might hold them have been checked
with orjson; those orjson refuses go to the fallback, to be rejected whole by the reference.
So whatever the batch size, the same frames give the same rows and rejects. Some decodable
frames go to the fallback needlessly: integers of 19 digits or more, non-string values under
another type's FIDs, duplicate keys (which Arrow refuses).
"""

from __future__ import annotations

import array
import functools
import operator
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from recorder.kiwoom import strict_json
from recorder.kiwoom.decode import MAX_ENTRIES, SEQ_SHIFT
from recorder.kiwoom.fields import LIVE_SOURCE, REAL_TYPES, SOURCE, Field, Kind, RealType, columns
from recorder.kiwoom.items import ITEM_PATTERN, SUFFIX_VENUE
from recorder.kiwoom.schema import SCHEMAS, TIMESTAMP
from recorder.kiwoom.time import DAY_NS, KST_OFFSET_NS, NS, kst_date

_ITEM_RE = f"^{ITEM_PATTERN}$"
_HHMMSS_RE = "^([01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]$"
_TIMESTAMP_NS = pa.timestamp("ns", tz=TIMESTAMP.tz)
_MAX_BLOCK = 16 << 20
_MIN_BLOCK = 1 << 20
# Digits (after leading zeros) from which an int64 may overflow; such values go to the fallback.
_LONG_DIGITS = 19


@dataclass
class ArrowDecoded:
    """What :func:`decode_frames` made of a batch.

    Attributes:
        tables: ``"trades"`` / ``"orderbook"`` → rows of the clean frames, with exactly the
            fields of ``SCHEMAS[table]`` in order plus a trailing ``date`` string column (KST
            date of ``ts``): the layout ``Sink.add_tables`` buffers. Absent when no rows.
            Rows are in no particular order.
        fallback: ascending indices into ``frames`` of the frames not decoded here; decode
            them with :class:`recorder.kiwoom.decode.Decoder`.
    """

    tables: dict[str, pa.Table] = field(default_factory=dict)
    fallback: list[int] = field(default_factory=list)


# Real-time type → (its FIDs, stored layout: SCHEMAS[table] + date).
_PLANS = {
    code: (rt, SCHEMAS[rt.table].append(pa.field("date", pa.string()))) for code, rt in REAL_TYPES.items()
}
_ALL_FIDS = tuple(dict.fromkeys(f.fid for rt in REAL_TYPES.values() for f in rt.fields))
_VALUES = pa.struct([(fid, pa.string()) for fid in _ALL_FIDS])
_ENTRY = pa.struct([("values", _VALUES), ("type", pa.string()), ("item", pa.string())])
_PARSE_SCHEMA = pa.schema([("data", pa.list_(_ENTRY)), ("trnm", pa.string())])
_PARSE_OPTIONS = pj.ParseOptions(explicit_schema=_PARSE_SCHEMA, unexpected_field_behavior="ignore")
# Every field of a REAL frame (protocol notes §4.1), so any other field is refused: what parses
# so is strings and nulls in a fixed shape, where Arrow's parser and orjson agree exactly.
_STRICT_ENTRY = pa.struct([*_ENTRY, ("name", pa.string())])
_STRICT_SCHEMA = pa.schema([("data", pa.list_(_STRICT_ENTRY)), ("trnm", pa.string())])
_STRICT_OPTIONS = pj.ParseOptions(explicit_schema=_STRICT_SCHEMA, unexpected_field_behavior="error")
_JSON_SPACE = b" \t\r\n"
_first_byte = operator.itemgetter(slice(0, 1))
_last_byte = operator.itemgetter(slice(-1, None))


# --------------------------------------------------------------------------- parsing

_Pieces = list[tuple[list[int], pa.Table]]  # (indices of frames, their rows as parsed)


def _read(buf: pa.Buffer | bytes, *, threads: bool = True, strict: bool = False) -> pa.Table:
    """Parse NDJSON; ``threads=False`` parses it as one block on the calling thread.

    ``strict`` refuses any field outside the schema of a REAL frame (see :func:`_parse_strict`);
    otherwise fields outside the schema are skipped, whatever they hold.
    """
    if not threads:
        # Cheaper in CPU than Arrow's threaded reader (about 15%, measured): for callers
        # that parse several buffers at once on their own threads.
        options = pj.ReadOptions(use_threads=False, block_size=len(buf) + 1)
    else:
        # One block per core keeps both cores busy on batches of a few MB; very large
        # blocks are slower (measured), hence the cap.
        block = min(_MAX_BLOCK, max(_MIN_BLOCK, len(buf) // (os.cpu_count() or 1) + 1))
        options = pj.ReadOptions(use_threads=True, block_size=block)
    parse = _STRICT_OPTIONS if strict else _PARSE_OPTIONS
    return pj.read_json(pa.BufferReader(buf), read_options=options, parse_options=parse)


def _parse_strict(buf: bytes, idx: list[int]) -> _Pieces | None:
    """The whole batch parsed strictly, or None when it does not parse so, one row per frame.

    Strictly: every field in the schema, typed as strings, and any other field refused. Arrow
    then meets no ``NaN``, number or nesting that orjson would refuse (they would have to be
    values, and a value must be a string), so the batch needs no screening. A batch that holds
    a frame with another field fails at that frame, so the try costs little when it fails.
    """
    if not idx:
        return []
    try:
        t = _read(buf, strict=True)
    except pa.ArrowException:
        return None
    return [(idx, t)] if t.num_rows == len(idx) else None


def _screen(frames: Sequence[bytes], idx: list[int], buf: bytes, bad: list[int]) -> tuple[list[int], bytes]:
    """Move the frames of ``idx`` that orjson refuses to ``bad``; return the rest and their NDJSON.

    Only frames that :func:`recorder.kiwoom.strict_json.suspects` marks are parsed with orjson.
    """
    if not idx:
        return idx, buf
    ends = np.cumsum(np.fromiter((len(frames[i]) + 1 for i in idx), np.int64, len(idx)))
    starts = np.concatenate([[0], ends[:-1]])
    refused = [idx[k] for k in strict_json.suspects(buf, starts) if strict_json.refused(frames[idx[k]])]
    if not refused:
        return idx, buf
    bad.extend(refused)
    drop = set(refused)
    idx = [i for i in idx if i not in drop]
    return idx, _join(frames, idx)


def _parse(
    frames: Sequence[bytes], idx: list[int], out: _Pieces, bad: list[int], buf: bytes | None = None
) -> None:
    """Parse ``frames[idx]`` (joined: ``buf``) as NDJSON; on failure bisect, so only bad frames are lost.

    Every frame starts with ``{`` and ends with ``}`` (see :func:`_candidates`), so a frame
    yields at least one row or a parse error, and a row count equal to the frame count
    means one row per frame, in order (a frame cannot run on into the next one: that would
    need a ``{`` where a ``,`` or ``}`` is due).
    """
    if not idx:
        return
    try:
        t = _read(_join(frames, idx) if buf is None else buf)
        if t.num_rows == len(idx):
            out.append((idx, t))
            return
    except pa.ArrowException:
        pass
    if len(idx) == 1:
        bad.append(idx[0])
        return
    mid = len(idx) // 2
    _parse(frames, idx[:mid], out, bad)
    _parse(frames, idx[mid:], out, bad)


def _join(frames: Sequence[bytes], idx: list[int]) -> bytes:
    return b"\n".join(frames) if len(idx) == len(frames) else b"\n".join([frames[i] for i in idx])


def _candidates(frames: Sequence[bytes], bad: list[int]) -> tuple[list[int], Sequence[bytes], bytes]:
    """The frames worth parsing, as (indices, frames with outer whitespace stripped, NDJSON).

    Worth parsing: ``{`` ... ``}`` once JSON whitespace around is stripped (orjson ignores
    it too), and valid UTF-8. The others are added to ``bad``.
    """
    n = len(frames)
    firsts = b"".join(map(_first_byte, frames))
    if len(firsts) == n and firsts.count(b"{") == n and b"".join(map(_last_byte, frames)).count(b"}") == n:
        idx = list(range(n))
    else:  # rare: walk the frames
        frames = [f.strip(_JSON_SPACE) for f in frames]
        idx = [i for i, f in enumerate(frames) if f[:1] == b"{" and f[-1:] == b"}"]
        bad.extend(sorted(set(range(n)) - set(idx)))
    buf = _join(frames, idx)
    if not _is_utf8(buf):
        utf8 = []
        for i in idx:
            try:
                frames[i].decode("utf-8")
                utf8.append(i)
            except UnicodeDecodeError:
                bad.append(i)
        idx = utf8
        buf = _join(frames, idx)
    return idx, frames, buf


def _is_utf8(buf: pa.Buffer | bytes) -> bool:
    """Arrow's JSON parser does not check UTF-8 in strings it skips (nor in those it keeps);
    orjson does. Arrow's validation is fast (SIMD), Python's decode is not."""
    data = pa.py_buffer(buf) if not isinstance(buf, pa.Buffer) else buf
    offsets = pa.py_buffer(memoryview(array.array("q", (0, len(data)))).cast("B"))
    data = pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, data])
    try:
        data.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


# --------------------------------------------------------------------------- values


class _Constants(NamedTuple):
    """Arrow scalars and arrays the kernels take, built on first use: building any makes
    pyarrow import pandas when it is installed (a tenth of a second), which ingest would
    rather do while its first blocks are being parsed than at import."""

    zero: pa.Scalar
    one: pa.Scalar
    float_zero: pa.Scalar  # adding it turns -0.0 into 0.0 (IEEE 754)
    null_string: pa.Scalar
    suffixes: pa.Array
    venues: pa.Array
    signs: pa.Array
    sides: pa.Array


@functools.cache
def _k() -> _Constants:
    return _Constants(
        zero=pa.scalar(0, pa.int32()),
        one=pa.scalar(1, pa.int32()),
        float_zero=pa.scalar(0.0),
        null_string=pa.scalar(None, pa.string()),
        suffixes=pa.array(list(SUFFIX_VENUE)),
        venues=pa.array(list(SUFFIX_VENUE.values())),
        signs=pa.array(["+", "-"]),
        sides=pa.array(["buy", "sell"]),
    )


# Bytes after which a cast may accept what the grammar does not (hex, exponents, inf, nan).
_NOT_FAST = {kind: (b"x", b"X") for kind in Kind} | {
    Kind.FLOAT: (b"x", b"X", b"e", b"E", b"i", b"I", b"n", b"N")
}


def _mask(arr: pa.Array, valid: pa.Array) -> pa.Array:
    """``arr`` with nulls where ``valid`` (a boolean array without nulls) is false."""
    if arr.offset or valid.offset:
        return pc.if_else(valid, arr, pa.scalar(None, arr.type))
    return pa.Array.from_buffers(arr.type, len(arr), [valid.buffers()[1], *arr.buffers()[1:]])


def _false_if_null(a: pa.Array) -> pa.Array:
    # and_kleene(null, false) is false; much faster than fill_null on booleans.
    return pc.and_kleene(a, pc.is_valid(a)) if a.null_count else a


def _data(col: pa.Array) -> bytes:
    """The bytes of a string array's values (for memchr-speed character checks)."""
    data = col.buffers()[2]
    if data is None or not len(col):
        return b""
    offsets = memoryview(col.buffers()[1]).cast("i")  # int32, native order like Arrow's
    start, end = offsets[col.offset], offsets[col.offset + len(col)]
    return data.slice(start, end - start).to_pybytes()


def _nonempty(col: pa.Array) -> pa.Array:
    return _false_if_null(pc.greater(pc.binary_length(col), _k().zero))


def _fast_numbers(col: pa.Array, kind: Kind) -> pa.Array | None:
    """The column parsed with a cast when a cast is exact for it, else None.

    Arrow's casts accept more than the strict grammar, but over a known alphabet exactly
    this (tests check): int64 ``-?[0-9]+`` (plus ``0x...`` hex), float64
    ``[+-]?([0-9]+\\.?[0-9]*|\\.[0-9]+)`` (plus exponents, ``inf``, ``nan``). So after
    trimming spaces, with no ``x``/``X`` (nor ``e``, ``i``, ``n``) left anywhere in the
    bytes, a successful cast means every value is in the grammar. Integers get their
    ``+`` turned into ``-`` in the bytes (so ``+-5`` and ``5+`` still fail) and the sign
    restored. Columns with anything odd go to :func:`_numbers`.
    """
    data = _data(col)
    work = col
    if b" " in data:
        work = pc.ascii_trim(col, " ")
        data = _data(work)
    if any(c in data for c in _NOT_FAST[kind]):
        return None
    to = pa.float64() if kind is Kind.FLOAT else pa.int64()
    plus = kind is not Kind.FLOAT and b"+" in data
    source = _replace_plus(work) if plus else work
    try:
        try:
            values = pc.cast(source, to)
        except pa.ArrowInvalid:  # "" is null (but "+" or " " is not "")
            values = pc.cast(_mask(source, _nonempty(col)), to)
        if kind is Kind.FLOAT:
            return values if pc.all(pc.is_finite(values)).as_py() in (True, None) else None
        if kind is not Kind.INT:
            return pc.abs_checked(values) if plus or b"-" in data else values
        return pc.if_else(pc.starts_with(work, "+"), pc.negate_checked(values), values) if plus else values
    except pa.ArrowInvalid:  # garbage or int64 overflow: the careful path decides
        return None


def _replace_plus(col: pa.Array) -> pa.Array:
    """``col`` with every ``+`` byte replaced by ``-`` (same offsets, so no kernel needed)."""
    validity, offsets, data = col.buffers()
    swapped = pa.py_buffer(data.to_pybytes().replace(b"+", b"-"))
    return pa.Array.from_buffers(col.type, len(col), [validity, offsets, swapped], offset=col.offset)


def _numbers(col: pa.Array, to: pa.DataType, *, signed: bool) -> tuple[pa.Array, pa.Array | None]:
    """Strict-grammar numbers (see :func:`recorder.kiwoom.decode.strict_value`) with a few kernels.

    With ``core`` = the value without surrounding spaces and ``body`` = ``core`` without
    leading signs, a value is in `` *[+-]?[0-9]+ *`` exactly when ``body`` is all ASCII
    digits and ``core`` is at most one character longer; for floats the same holds with
    one ``.`` allowed in ``body``. Arrow's casts accept more (``0x1``, ``1e5``, ``inf``),
    so only values that passed are cast: ``body`` (the absolute value) or, for signed
    kinds, ``core`` less a leading ``+``.

    Returns:
        The values (null where absent, "" or bad) and the positions of bad values (None if
        there are none): not in the grammar, out of int64 range or not finite.
    """
    core = pc.ascii_trim(col, " ") if b" " in _data(col) else col
    floating = pa.types.is_floating(to)
    if signed or floating:
        source = pc.ascii_ltrim(core, "+")
        body = pc.ascii_ltrim(source, "-")
    else:
        source = body = pc.ascii_ltrim(core, "+-")
    digits = pc.replace_substring(body, ".", "", max_replacements=1) if floating else body
    one_sign = pc.less_equal(pc.subtract(pc.binary_length(core), pc.binary_length(body)), _k().one)
    ok = _false_if_null(pc.and_(pc.ascii_is_decimal(digits), one_sign))
    try:
        values = pc.cast(_mask(source, ok), to)
    except pa.ArrowInvalid:  # int64 overflow: drop every value that might overflow
        long = pc.greater_equal(pc.binary_length(pc.ascii_ltrim(body, "0")), _LONG_DIGITS)
        ok = pc.and_not(ok, _false_if_null(long))
        values = pc.cast(_mask(source, ok), to)
    if floating:  # float("1" * 400) is inf: the fallback decides those
        ok = pc.and_(ok, _false_if_null(pc.is_finite(values)))
        values = _mask(values, ok)
    if ok.true_count == len(col) - col.null_count:
        return values, None
    return values, pc.indices_nonzero(pc.and_not(_nonempty(col), ok))


def _floor_div(a: pa.Array, b: int) -> pa.Array:
    q = pc.divide(a, b)  # truncates toward zero
    low = pc.and_(pc.less(a, 0), pc.not_equal(pc.multiply(q, b), a))
    return pc.subtract(q, pc.cast(low, pa.int64()))


def _timestamps(ns: pa.Array) -> pa.Array:
    """Epoch ns → the stored type, by the same cast as :func:`recorder.kiwoom.schema.timestamps`."""
    return pc.cast(ns, _TIMESTAMP_NS).cast(TIMESTAMP, safe=False)


_WORKERS = os.cpu_count() or 1


def _new_pool() -> None:
    """Threads start on first use; Arrow kernels release the GIL, so columns parse in parallel."""
    global _POOL
    _POOL = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="arrow-decode")


_POOL: ThreadPoolExecutor
_new_pool()
os.register_at_fork(after_in_child=_new_pool)  # a forked child inherits the pool, not its threads


# --------------------------------------------------------------------------- decoding


def decode_frames(
    frames: Sequence[bytes],
    recv_ts_ns: Sequence[int],
    fnos: Sequence[int],
    *,
    trading_day: int | None = None,
) -> ArrowDecoded:
    """Decode the clean frames of a batch with Arrow kernels; report the others.

    Args:
        frames: REAL frames as received (bytes, one JSON object each).
        recv_ts_ns: receive time of each frame (epoch ns).
        fnos: journal frame number of each frame; ``seq`` = ``fno << 16 | position``.
        trading_day: days since the epoch of the KST trading date, or None to take the date
            from each frame's receive time (see :func:`recorder.kiwoom.decode.parse_time`).

    Returns:
        Tables of the clean frames' rows, equal as a set of rows to what
        :class:`recorder.kiwoom.decode.Decoder` + ``Sink._add_market`` build for those frames, and
        the indices of every other frame (``fallback``).

    Raises:
        ValueError: if the three sequences differ in length.
    """
    if not len(frames) == len(recv_ts_ns) == len(fnos):
        raise ValueError("frames, recv_ts_ns and fnos must have the same length")
    bad: list[int] = []
    idx, stripped, buf = _candidates(frames, bad)
    pieces = _parse_strict(buf, idx)
    if pieces is None:
        pieces = []
        idx, buf = _screen(stripped, idx, buf, bad)
        _parse(stripped, idx, pieces, bad, buf)
    del buf
    if not pieces:
        return ArrowDecoded(fallback=sorted(bad))
    idx = [i for piece_idx, _ in pieces for i in piece_idx] if len(pieces) > 1 else pieces[0][0]
    parsed = pa.concat_tables([t for _, t in pieces]).combine_chunks()
    fno = pa.array(fnos, pa.int64())
    recv = pa.array(recv_ts_ns, pa.int64())
    if len(idx) < len(frames):
        taken = pa.array(idx, pa.int64())
        fno, recv = fno.take(taken), recv.take(taken)
    tables, frame_bad = _decode(parsed, fno, recv, trading_day)
    bad.extend(idx[i] for i in frame_bad)
    return ArrowDecoded(tables, sorted(bad))


def parse_block(buf: pa.Buffer | bytes, *, threads: bool = True) -> tuple[pa.Table | None, int]:
    """Parse a block of NDJSON in one go when every line is plainly one frame.

    Returns (the parsed rows, or None when the block is not plain; its number of lines,
    that is of ``\\n``).

    Plain: every line (``\\n``-terminated, the last one too) starts with ``{`` and ends
    with ``}``, with nothing around them and no blank lines, the block is valid UTF-8, it
    yields one row per line, and orjson would accept every line: either the block parses
    strictly (see :func:`_parse_strict`) or it parses leniently and orjson accepts each line
    that :func:`recorder.kiwoom.strict_json.suspects` marks. Then row ``i`` is line ``i``,
    as :func:`_parse` argues for frames, and :func:`decode_block` decodes it without the
    lines ever being split out of the block. Any other block (rare in real files) is decoded
    line by line with :func:`decode_frames`, which sorts out which lines are bad.

    Holds the GIL only briefly (NumPy and Arrow do the work), so ingest parses the next
    blocks on other threads while the current one is decoded; it passes ``threads=False``
    (see :func:`_read`).
    """
    a = np.frombuffer(buf, np.uint8)
    ends = np.flatnonzero(a == _NL)
    lines = len(ends)
    plain = (
        lines > 0
        and ends[-1] == len(a) - 1
        and a[0] == _OPEN
        and bool((a[ends - 1] == _CLOSE).all())
        and bool((a[ends[:-1] + 1] == _OPEN).all())
    )
    if not plain or not _is_utf8(buf):
        return None, lines
    for strict in (True, False):
        try:
            t = _read(buf, threads=threads, strict=strict)
        except pa.ArrowException:
            continue
        if t.num_rows == lines and (strict or not _refuses_a_line(buf, ends)):
            return t, lines
    return None, lines


def _refuses_a_line(buf: pa.Buffer | bytes, ends: np.ndarray) -> bool:
    """Whether orjson refuses a line of ``buf`` (lines end at ``ends``) that Arrow accepted."""
    starts = np.concatenate([[0], ends[:-1] + 1])
    view = memoryview(buf)
    return any(strict_json.refused(view[starts[k] : ends[k]]) for k in strict_json.suspects(buf, starts))


_NL, _OPEN, _CLOSE = ord("\n"), ord("{"), ord("}")


def decode_block(
    parsed: pa.Table,
    first_fno: int,
    recv_ts_ns: int,
    *,
    trading_day: int | None = None,
    parallel: bool = True,
) -> ArrowDecoded:
    """:func:`decode_frames` for a block that :func:`parse_block` parsed.

    Line ``i`` of the block is frame number ``first_fno + i`` and every line was received
    at ``recv_ts_ns``. ``fallback`` holds line indices within the block. ``parallel=False``
    decodes on the calling thread only: for callers that keep every core busy already
    (ingest's parser threads), where a pool only adds overhead (measured).
    """
    out = ArrowDecoded()
    parts: dict[str, list[pa.Table]] = {}
    start = 0
    recv = pa.scalar(recv_ts_ns, pa.int64())
    for batch in parsed.to_batches():  # one per parsed block: no copy into one chunk
        n = batch.num_rows
        fno = pa.arange(first_fno + start, first_fno + start + n)
        batch_table = pa.Table.from_batches([batch])
        tables, bad = _decode(batch_table, fno, pa.repeat(recv, n), trading_day, parallel=parallel)
        for name, t in tables.items():
            parts.setdefault(name, []).append(t)
        out.fallback.extend(start + i for i in bad)
        start += n
    out.tables = {name: ts[0] if len(ts) == 1 else pa.concat_tables(ts) for name, ts in parts.items()}
    return out


def _decode(
    parsed: pa.Table, fno: pa.Array, recv: pa.Array, day: int | None, *, parallel: bool = True
) -> tuple[dict[str, pa.Table], list[int]]:
    """Rows of the clean frames of ``parsed`` (one row per frame) and the others' positions."""
    data = parsed.column("data").chunk(0)
    frame_ok = _false_if_null(
        pc.and_(
            pc.equal(parsed.column("trnm").chunk(0), "REAL"), pc.less(pc.list_value_length(data), MAX_ENTRIES)
        )
    )
    parent = pc.list_parent_indices(data)
    entries = pc.list_flatten(data)
    values = entries.field("values")
    etype, item = entries.field("type"), entries.field("item")
    is_type = {code: _false_if_null(pc.equal(etype, code)) for code in _PLANS}
    hhmmss = pc.if_else(is_type["0B"], values.field("20"), values.field("21"))
    ok = functools.reduce(
        pc.and_,
        [
            entries.is_valid(),
            values.is_valid(),
            pc.or_(is_type["0B"], is_type["0D"]),
            _false_if_null(pc.match_substring_regex(item, _ITEM_RE)),
            pc.array_take(frame_ok, parent),
            _false_if_null(pc.match_substring_regex(hhmmss, _HHMMSS_RE)),  # 14 digits: fallback
        ],
    )
    recv_e = pc.array_take(recv, parent)
    ts = _ts(pc.cast(_mask(hhmmss, ok), pa.int64()), recv, recv_e, parent, day)
    kday = _floor_div(pc.add(ts, KST_OFFSET_NS), DAY_NS)
    days = pc.unique(pc.drop_null(kday))
    names = pa.array([kst_date(d * DAY_NS) for d in days.to_pylist()], pa.string())
    # seq = fno << 16 | position of the entry in its frame's data list.
    offsets = data.offsets
    position = pc.subtract(pa.arange(offsets[0].as_py(), offsets[-1].as_py()), pc.array_take(offsets, parent))
    base = {
        "ts": _timestamps(ts),
        "recv_ts": _timestamps(recv_e),
        "seq": pc.add(pc.shift_left(pc.array_take(fno, parent), SEQ_SHIFT), position),
        "symbol": pc.utf8_slice_codeunits(item, 0, 6),
        "venue": pc.array_take(
            _k().venues, pc.index_in(pc.utf8_slice_codeunits(item, 6), value_set=_k().suffixes)
        ),
        "date": pc.array_take(names, pc.index_in(kday, value_set=days)),
    }
    rows = {code: pc.indices_nonzero(pc.and_(ok, is_type[code])) for code in _PLANS}
    bad_entries = [pc.indices_nonzero(pc.invert(ok))]
    columns = {
        code: _columns(rt, values, rows[code], bad_entries, parallel=parallel)
        for code, (rt, _) in _PLANS.items()
    }
    # A frame is decoded here only if all of its entries are clean.
    frame_bad = pc.unique(pc.array_take(parent, pa.concat_arrays(bad_entries)))
    frame_good = pc.and_(frame_ok, pc.invert(pc.is_in(pa.arange(0, len(data)), value_set=frame_bad)))
    tables: dict[str, pa.Table] = {}
    for code, (rt, schema) in _PLANS.items():
        if not len(rows[code]):
            continue
        cols = {**{k: v.take(rows[code]) for k, v in base.items()}, **columns[code]}
        t = pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)
        keep = pc.array_take(frame_good, pc.array_take(parent, rows[code]))
        if keep.false_count:
            t = t.filter(keep)
        if len(t):
            tables[rt.table] = t
    return tables, pc.indices_nonzero(pc.invert(frame_good)).to_pylist()


def _ts(hhmmss: pa.Array, recv: pa.Array, recv_e: pa.Array, parent: pa.Array, day: int | None) -> pa.Array:
    """Exchange time HHMMSS (int) → epoch ns, vectorised :func:`recorder.kiwoom.decode.parse_time`."""
    hours, minutes = pc.divide(hhmmss, 10_000), pc.divide(hhmmss, 100)
    secs = pc.add(
        pc.add(pc.multiply(hours, 3600), pc.multiply(pc.subtract(minutes, pc.multiply(hours, 100)), 60)),
        pc.subtract(hhmmss, pc.multiply(minutes, 100)),
    )
    secs_ns = pc.subtract(pc.multiply(secs, NS), KST_OFFSET_NS)
    if day is not None:
        return pc.add(secs_ns, day * DAY_NS)
    # The KST date of the receive time, moved by a day when that is more than 12 h away.
    midnight = pc.multiply(_floor_div(pc.add(recv, KST_OFFSET_NS), DAY_NS), DAY_NS)
    ts = pc.add(pc.array_take(midnight, parent), secs_ns)
    ahead = pc.cast(pc.greater(pc.subtract(ts, recv_e), DAY_NS // 2), pa.int64())
    behind = pc.cast(pc.greater(pc.subtract(recv_e, ts), DAY_NS // 2), pa.int64())
    return pc.add(ts, pc.multiply(pc.subtract(behind, ahead), DAY_NS))


def _column(col: pa.Array, kind: Kind) -> tuple[pa.Array, pa.Array | None]:
    """One FID's values for the rows of its type → (stored values, positions of bad values)."""
    if kind is Kind.TEXT:
        return pc.if_else(pc.equal(col, ""), _k().null_string, col), None
    if kind is Kind.FLOAT:
        fast = _fast_numbers(col, kind)
        values, bad = (fast, None) if fast is not None else _numbers(col, pa.float64(), signed=False)
        # Like the reference, a rate of "-0" or "-0.00" is stored as 0.0, not -0.0.
        return pc.add(values, _k().float_zero), bad
    fast = _fast_numbers(col, kind)
    if fast is not None:
        return fast, None
    return _numbers(col, pa.int64(), signed=kind is Kind.INT)


def _columns(
    rt: RealType,
    values: pa.StructArray,
    rows: pa.Array,
    bad_entries: list[pa.Array],
    *,
    parallel: bool = True,
) -> dict[str, pa.Array]:
    """The value columns of one type for ``rows`` (entry indices); notes entries with bad values."""
    fields = [f for f in rt.fields if f.kind is not Kind.TIME]

    def job(chunk: list[Field]) -> list[tuple[pa.Array, pa.Array | None]]:
        return [_column(values.field(f.fid).take(rows), f.kind) for f in chunk]

    # A few chunks per worker keep the pool's per-task cost small and the load even.
    k = 4 * _WORKERS if parallel else 1
    chunks = [fields[i::k] for i in range(k)]
    done = _POOL.map(job, chunks) if parallel else map(job, chunks)
    results = {
        f.column: r for chunk, rs in zip(chunks, done, strict=True) for f, r in zip(chunk, rs, strict=True)
    }
    out: dict[str, pa.Array] = {}
    for f in fields:
        out[f.column], bad = results[f.column]
        if bad is not None:
            bad_entries.append(rows.take(bad))
        if f.required:
            bad_entries.append(rows.take(pc.indices_nonzero(out[f.column].is_null())))
    if "volume" in out:  # FID 15 of 0B: its sign is the side
        signs = pc.utf8_slice_codeunits(pc.ascii_ltrim(values.field("15").take(rows), " "), 0, 1)
        out["side"] = pc.array_take(_k().sides, pc.index_in(signs, value_set=_k().signs))
    if SOURCE in columns(rt):
        out[SOURCE] = pa.repeat(LIVE_SOURCE, len(rows)).cast(pa.string())
    return out
