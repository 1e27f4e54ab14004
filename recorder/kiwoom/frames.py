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

Row layout: a tuple in the order of :func:`recorder.kiwoom.fields.columns` for the entry's type.
``ts`` and ``recv_ts`` are integer nanoseconds since the Unix epoch (UTC); the trading
date (KST) comes from the receive time, or from ``trading_date`` when the caller knows it
(replay of a recorded day).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from recorder.kiwoom.decode import PLANS, Decoded, Decoder, tuple_getter
from recorder.kiwoom.fields import TABLE_TYPES, Kind, columns
from recorder.kiwoom.items import VENUE_SUFFIX
from recorder.kiwoom.time import DAY_NS, KST_OFFSET_NS, NS

# --------------------------------------------------------------------------- frames out


def build_login(token: str) -> str:
    """The LOGIN frame: the bare token, no "Bearer " prefix (§2.3, §3.1)."""
    return orjson.dumps({"trnm": "LOGIN", "token": token}).decode()


def build_reg(items: Sequence[str], types: Sequence[str], *, grp_no: str = "1", refresh: str = "1") -> str:
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


def decode_frame(raw: str | bytes, recv_ts_ns: int, fno: int, *, trading_day: int | None = None) -> Decoded:
    """Decode one REAL frame; nothing is dropped.

    Args:
        raw: the frame exactly as received.
        recv_ts_ns: when it was read from the socket (epoch ns).
        fno: the frame's journal number; row ``seq`` is ``fno * 2**16 + position``.
        trading_day: days since the epoch of the KST trading date when known (replay of a
            recorded day, see :func:`recorder.kiwoom.decode.trading_day`); otherwise it comes from
            ``recv_ts_ns``.

    Returns:
        The decoded columns per table and the rejects (see :class:`recorder.kiwoom.decode.Decoded`).
        Bulk work should use :class:`recorder.kiwoom.decode.Decoder` over many frames instead.
    """
    dec = Decoder(trading_day=trading_day)
    dec.add(raw, recv_ts_ns, fno)
    return dec.finish()


def decode_rows(
    raw: str | bytes, recv_ts_ns: int, fno: int, *, trading_day: int | None = None
) -> tuple[list[tuple[str, tuple[Any, ...]]], list[tuple[int, int, str, str]]]:
    """Like :func:`decode_frame`, as ``(table, row)`` pairs in entry order, and the rejects."""
    res = decode_frame(raw, recv_ts_ns, fno, trading_day=trading_day)
    rows = [(t, row) for t, cols in res.tables.items() for row in cols.rows()]
    rows.sort(key=lambda tr: tr[1][2])  # by seq: the entries' order in the frame
    return rows, res.rejects


def row_columns(table: str) -> tuple[str, ...]:
    """Column names of a decoded row of ``table`` (``trades`` or ``orderbook``)."""
    return columns(TABLE_TYPES[table])


# --------------------------------------------------------------------------- encode


def _format_float(x: float) -> str:
    """The shortest text that parses back to ``x``, without an exponent (values never have one)."""
    text = repr(x)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text


class _Encoder:
    """A table's fields grouped by kind, with row positions, so that encoding a row is a few
    C-level ``map``/``zip`` calls per kind instead of a Python step per field."""

    def __init__(self, table: str) -> None:
        rt = TABLE_TYPES[table]
        plan = PLANS[rt.code]
        self.code, self.name, self.time_fid = rt.code, rt.name, plan.time_fid
        cols = plan.columns
        groups: dict[Kind, list[tuple[int, str]]] = {k: [] for k in Kind}
        for f in plan.ordered:
            groups[f.kind].append((cols.index(f.column), f.fid))
        self.prices, self.ints, self.floats, self.texts = (
            _Group([i for i, _ in groups[k]], [fid for _, fid in groups[k]])
            for k in (Kind.PRICE, Kind.INT, Kind.FLOAT, Kind.TEXT)
        )
        sv = groups[Kind.SIDE_VOLUME]
        self.side_volume = (sv[0][0], sv[0][0] + 1, sv[0][1]) if sv else None  # volume, side, fid
        self.trade_cols = (cols.index("price"), cols.index("change")) if table == "trades" else None

    def prev_close(self, row: Sequence[Any]) -> int | None:
        if self.trade_cols is None:
            return None
        price, change = row[self.trade_cols[0]], row[self.trade_cols[1]]
        return price - change if price is not None and change is not None else None

    def values(self, row: Sequence[Any], prev_close: int | None) -> dict[str, str]:
        secs = (row[0] + KST_OFFSET_NS) % DAY_NS // NS
        h, rem = divmod(secs, 3600)
        values = {self.time_fid: f"{h:02d}{rem // 60:02d}{rem % 60:02d}"}
        pc = prev_close if prev_close is not None else self.prev_close(row)
        fids, prices = self.prices.present(row)
        if pc is None:
            values.update(zip(fids, map(str, prices), strict=True))
        else:  # §4.3: prices carry their direction against the previous close, none when equal
            signed = [("+" if v > pc else "-" if v < pc else "") + str(v) for v in prices]
            values.update(zip(fids, signed, strict=True))
        if self.side_volume is not None:
            vol_i, side_i, fid = self.side_volume
            side = row[side_i]
            values[fid] = ("+" if side == "buy" else "-" if side == "sell" else "") + str(row[vol_i])
        fids, ints = self.ints.present(row)
        values.update(zip(fids, map(str, ints), strict=True))
        fids, floats = self.floats.present(row)
        values.update(zip(fids, map(_format_float, floats), strict=True))
        fids, texts = self.texts.present(row)
        values.update(zip(fids, texts, strict=True))
        return values


class _Group:
    """Row positions and FIDs of one kind of field."""

    def __init__(self, positions: list[int], fids: list[str]) -> None:
        self.get = tuple_getter(positions)
        self.fids = tuple(fids)

    def present(self, row: Sequence[Any]) -> tuple[Sequence[str], Sequence[Any]]:
        """(fids, values) of the non-null values; the common no-null case costs no Python loop."""
        vals = self.get(row)
        if None not in vals:
            return self.fids, vals
        pairs = [(f, v) for f, v in zip(self.fids, vals, strict=True) if v is not None]
        return [f for f, _ in pairs], [v for _, v in pairs]


_ENCODERS = {table: _Encoder(table) for table in TABLE_TYPES}


def encode_entry(table: str, row: Sequence[Any], *, prev_close: int | None = None) -> dict[str, Any]:
    """One row → a REAL entry ``{"values", "type", "name", "item"}`` (live key order, §4.1).

    Prices get their direction sign against ``prev_close``; for trades it defaults to
    ``price - change``. Null fields are left out.
    """
    enc = _ENCODERS[table]
    values = enc.values(row, prev_close)
    return {"values": values, "type": enc.code, "name": enc.name, "item": row[3] + VENUE_SUFFIX[row[4]]}


def encode_frame(rows: Iterable[tuple[str, Sequence[Any]]]) -> str:
    """``(table, row)`` pairs → one REAL frame, ``trnm`` last as seen live (§4.1)."""
    data = [encode_entry(table, row) for table, row in rows]
    return orjson.dumps({"data": data, "trnm": "REAL"}).decode()
