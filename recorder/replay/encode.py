"""REAL entries and frames as text, a column batch at a time: the bulk twin of ``encode_entry``.

:func:`recorder.kiwoom.frames.encode_entry` turns one stored row into a REAL entry and
:func:`~recorder.kiwoom.frames.encode_frame` serialises entries with orjson: the reference,
and what a recorder decoding the output inverts. Replaying a day that way costs a Python
tuple, a dict and a string per field of every row (an order book entry has ~160). Here
DuckDB writes the same text for whole batches in one statement (:func:`entry_sql`), on
Parquet files directly or on Arrow tables, and Arrow string kernels cut the entries into
frames (:func:`ndjson_lines`), so Python touches batches, not entries.

The text is the reference's, byte for byte (a property test holds them equal), following
its rules (protocol notes §4.1, §4.3):

- entry ``{"values":{…},"type":…,"name":…,"item":…}``; ``values`` holds the time FID first,
  then the fields in the decoder's order (prices, FID 15, integers, rates, text), nulls left out;
- the time is the row's ``ts`` as KST ``HHMMSS``;
- trade prices carry ``+``/``-`` against the previous close ``price - change`` (none when equal
  or unknown), order book prices none; FID 15 is ``+``/``-`` from ``side`` then ``volume``;
- integers as Python's ``str``, rates as Python's shortest ``repr``, text as stored.

Rows whose text the SQL cannot promise to match go through the reference encoder instead
(their ``text`` comes back NULL and :func:`fill_reference` writes it): a rate that Python
writes with an exponent, NaN or infinite; text that JSON must escape; a venue without a suffix
(the reference raises on it, and so does the fallback).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from recorder.kiwoom.decode import MAX_ENTRIES, PLANS, SEQ_SHIFT
from recorder.kiwoom.fields import TABLE_TYPES, Kind
from recorder.kiwoom.frames import encode_entry
from recorder.kiwoom.items import VENUE_SUFFIX
from recorder.kiwoom.time import DAY_NS, KST_OFFSET_NS

__all__ = [
    "SUFFIX_VENUE",
    "entry_prefix",
    "entry_sql",
    "fill_reference",
    "frame_bounds",
    "ndjson_lines",
    "text_bytes",
]

SUFFIX_VENUE = {s: v for v, s in VENUE_SUFFIX.items()}

_OFF_US = KST_OFFSET_NS // 1000
_DAY_US = DAY_NS // 1000
# Python's repr writes a float with an exponent below 1e-4 and from 1e16 on; the reference
# then spells it out with Decimal. DuckDB agrees with repr everywhere between.
_PLAIN_FLOAT = "({c} IS NULL OR ({c} = 0 OR abs({c}) >= 1e-4) AND abs({c}) < 1e16)"
# JSON escapes these (orjson: control characters, quote, backslash); plain text needs none.
_ESCAPED = r"'[\x00-\x1f\"\\]'"
_FRAME_HEAD, _FRAME_TAIL = '{"data":[', '],"trnm":"REAL"}\n'  # §4.1: trnm last, as seen live


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _col(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _value_sql(kind: Kind, c: str, signed: bool) -> list[str]:
    """SQL for the text of one field as ``concat`` arguments (NULL ones are skipped)."""
    if kind is Kind.PRICE and signed:  # §4.3: the direction against the previous close
        return [f"CASE WHEN {c} > _pc THEN '+' WHEN {c} < _pc THEN '-' END", f"CAST({c} AS VARCHAR)"]
    if kind is Kind.SIDE_VOLUME:  # always written, "None" included, as the reference does
        side = "CASE side WHEN 'buy' THEN '+' WHEN 'sell' THEN '-' END"
        return [side, "coalesce(CAST(volume AS VARCHAR), 'None')"]
    if kind is Kind.TEXT:
        return [c]
    return [f"CAST({c} AS VARCHAR)"]


def _values_sql(table: str) -> tuple[list[str], list[str]]:
    """``concat`` arguments writing a row's ``values`` object, and what must hold for them to
    write what the reference does.

    ``concat`` skips NULL arguments: each field is its key (given only when the value is not
    null) then its value; the key closes the previous value's quote, so no field needs a
    string of its own.
    """
    plan = PLANS[TABLE_TYPES[table].code]
    signed = table == "trades"
    hhmmss = "lpad(CAST(_s // 3600 * 10000 + _s % 3600 // 60 * 100 + _s % 60 AS VARCHAR), 6, '0')"
    parts = [_lit("{" + orjson.dumps(plan.time_fid).decode() + ':"'), hhmmss]
    exact = ["ts IS NOT NULL", "sfx IS NOT NULL"]
    texts = []
    for f in plan.ordered:
        c = _col(f.column)
        key = _lit('",' + orjson.dumps(f.fid).decode() + ':"')
        parts.append(key if f.kind is Kind.SIDE_VOLUME else f"CASE WHEN {c} IS NOT NULL THEN {key} END")
        parts.extend(_value_sql(f.kind, c, signed))
        if f.kind is Kind.FLOAT:
            exact.append(_PLAIN_FLOAT.format(c=c))
        elif f.kind is Kind.TEXT:
            texts.append(c)
    parts.append(_lit('"}'))
    if texts:
        exact.append(f"NOT regexp_matches(concat({', '.join(texts)}), {_ESCAPED})")
    return parts, exact


def entry_sql(
    table: str, source: str, *, whole: bool, prev_close: bool = False, keep: str | None = None
) -> str:
    """A SELECT that encodes every row of ``source`` (a relation with ``table``'s stored columns).

    ``source`` must also have ``_fi`` (the file's number) and ``_fr`` (the row's position in
    it). With ``whole``, the statement takes ``$prefixes``, :func:`entry_prefix` of every file
    by ``_fi``.

    The result has ``ts``, ``recv`` (epoch µs), ``seq``, ``fi``, ``fr``, ``sfx`` (the item's
    venue suffix), ``text`` (with ``whole`` the entry, else its ``values`` object, as JSON;
    NULL: encode with :func:`fill_reference`), then ``pc`` (``price - change`` of trades) with
    ``prev_close``, and ``keep`` (the SQL condition ``keep``) when it is given.
    """
    parts, exact = _values_sql(table)
    if whole:
        parts = [
            _lit('{"values":'),
            *parts,
            "list_extract($prefixes, CAST(_fi AS BIGINT) + 1)",
            "sfx",
            _lit('"}'),
        ]
    secs = f"(((epoch_us(ts) + {_OFF_US}) % {_DAY_US} + {_DAY_US}) % {_DAY_US}) // 1000000"
    suffix = " ".join(f"WHEN {_lit(v)} THEN {_lit(s)}" for v, s in VENUE_SUFFIX.items())
    inner = [f"CASE venue {suffix} END AS sfx", f"{secs} AS _s"]
    if table == "trades":
        inner.append("CAST(price AS HUGEINT) - change AS _pc")
    text = f"CASE WHEN {' AND '.join(f'({e})' for e in exact)} THEN concat({', '.join(parts)}) END"
    out = ["epoch_us(ts) AS ts", "epoch_us(recv_ts) AS recv", "seq"]
    out += ["CAST(_fi AS BIGINT) AS fi", "CAST(_fr AS BIGINT) AS fr", "sfx", f"{text} AS text"]
    if prev_close:  # NULL for order books: every table of a statement has the same columns
        out.append(f"{'TRY_CAST(_pc AS BIGINT)' if table == 'trades' else 'CAST(NULL AS BIGINT)'} AS pc")
    if keep is not None:
        out.append(f"({keep}) AS keep")
    return f"SELECT {', '.join(out)} FROM (SELECT *, {', '.join(inner)} FROM {source})"


def entry_prefix(table: str, symbol: str) -> str:
    """An entry's text between its ``values`` object and its item's venue suffix."""
    rt = TABLE_TYPES[table]
    tail = orjson.dumps({"type": rt.code, "name": rt.name, "item": symbol}).decode()
    return "," + tail[1:-2]  # ',"type":…,"item":"005930': the suffix and '"}' follow


# --------------------------------------------------------------------------- fallback


def fill_reference(
    t: pa.Table,
    rows_of: Callable[[int, list[int]], tuple[str, list[tuple[Any, ...]]]],
    *,
    whole: bool,
) -> pa.Table:
    """Write ``text`` (and ``sfx``) of the rows the SQL left NULL with the reference encoder.

    Args:
        t: encoded rows (columns of :func:`entry_sql`, ``whole`` as there).
        rows_of: ``(fi, positions) → (table, rows)``: the stored rows at those positions of
            that file, in the layout :func:`encode_entry` takes.

    Raises:
        Whatever the reference raises on such a row (a venue without a suffix: KeyError).
    """
    if t.column("text").null_count == 0:
        return t
    text = t.column("text").combine_chunks()
    missing = pc.is_null(text)
    where = pc.indices_nonzero(missing)
    fis = pc.take(t.column("fi"), where).to_pylist()
    frs = pc.take(t.column("fr"), where).to_pylist()
    wanted: dict[int, list[int]] = {}
    for fi, fr in zip(fis, frs, strict=True):
        wanted.setdefault(fi, []).append(fr)
    entries = {}
    for fi, positions in wanted.items():
        table, rows = rows_of(fi, positions)
        for fr, row in zip(positions, rows, strict=True):
            entries[fi, fr] = encode_entry(table, row)
    done = [entries[k] for k in zip(fis, frs, strict=True)]
    texts = pa.array([orjson.dumps(e if whole else e["values"]).decode() for e in done], pa.string())
    sfx = pa.array([e["item"][6:] for e in done], pa.string())
    t = t.set_column(t.schema.get_field_index("text"), "text", pc.replace_with_mask(text, missing, texts))
    i = t.schema.get_field_index("sfx")
    return t.set_column(i, "sfx", pc.replace_with_mask(t.column(i).combine_chunks(), missing, sfx))


# --------------------------------------------------------------------------- frames


def frame_bounds(recv: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """Where frames start, then the end: rows received together (consecutive, same ``recv``
    and journal frame ``seq >> 16``) share one of at most ``MAX_ENTRIES - 1`` entries, as
    :func:`recorder.replay.feed.iter_frames` groups them."""
    n = len(recv)
    if n == 0:
        return np.zeros(1, np.int64)
    frame = seq >> SEQ_SHIFT
    change = np.flatnonzero((recv[1:] != recv[:-1]) | (frame[1:] != frame[:-1])) + 1
    bounds = np.concatenate(([0], change, [n])).astype(np.int64)
    if np.diff(bounds).max() >= MAX_ENTRIES:  # cut a huge frame like the reference does
        cut = [np.arange(a, b, MAX_ENTRIES - 1) for a, b in itertools.pairwise(bounds.tolist())]
        bounds = np.concatenate([*cut, [n]]).astype(np.int64)
    return bounds


def ndjson_lines(entries: pa.Array, first: np.ndarray, last: np.ndarray) -> pa.Array:
    """Entries (JSON text) → the same entries with their frames' punctuation around them:
    back to back (:func:`text_bytes`) they are REAL frames, one a line. ``first`` and
    ``last`` flag the entries that begin and end a frame."""
    head = pc.if_else(pa.array(first), _FRAME_HEAD, ",")
    tail = pc.if_else(pa.array(last), _FRAME_TAIL, "")
    return pc.binary_join_element_wise(head, entries, tail, "")


def text_bytes(texts: pa.Array) -> memoryview:
    """The characters of a string array, all of them back to back, without a copy."""
    data = texts.buffers()[2]
    if data is None or not len(texts):
        return memoryview(b"")
    index = text_offsets(texts)
    return memoryview(data)[int(index[0]) : int(index[-1])]


def text_offsets(texts: pa.Array) -> np.ndarray:
    """Where each string of ``texts`` starts in its data buffer, then where the last ends."""
    offsets = texts.buffers()[1]
    dtype = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    return np.frombuffer(offsets, dtype, len(texts) + 1, texts.offset * np.dtype(dtype).itemsize)
