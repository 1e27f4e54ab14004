"""Healing trade gaps from the REST tick chart (ka10079, protocol notes §5.3), with proof.

A *hole* is a pair of consecutive recorded trades of one item, ``before`` and ``after``
(ordered by ``cum_volume``, which only grows), whose cumulative volumes leave shares unaccounted
for::

    missing = after.cum_volume - before.cum_volume - after.volume  > 0

Every gap of the recorder (a disconnect, a kick, a restart, a stale link, a continuity break)
that cost trades shows up as such a hole in the trades it did record.

The chart has no sequence numbers and no cumulative volume, and times to the second, so it is
*aligned* with the recorded trades rather than matched row by row: with the chart in time order
and ``P[k]`` the sum of its quantities up to row ``k``, a recorded trade ``R`` sits at row ``k``
exactly when ``C[k]`` has R's (second, price, quantity) and ``P[k] + offset == R.cum_volume``
for the item's one ``offset`` (the volume before the chart's first row). Each recorded trade
that matches some chart row votes for an offset; the winner must be clear. A hole is then
*healed* when both of its trades sit in the chart at their cumulative volumes: the rows strictly
between them are the missing trades, and their quantities add up to ``missing`` by
construction, which is the proof. Otherwise the hole is *unhealable* and nothing is written
for it: no guessed row ever enters the store.

Healed rows go into ``trades`` with ``source = 'rest'``, ``cum_volume`` rebuilt from the trade
before the hole, ``recv_ts`` the time of the backfill, and null where the chart has nothing
(side, best bid/ask, open/high/low, …). Their ``seq`` places them after the trade before the
hole and before any later frame: that trade's frame number, entry index 32,768 upwards (a
frame never carries that many entries). What each hole came to is a row of the ``backfill``
table (see ``recorder.kiwoom.schema.BACKFILL_SCHEMA``); the ``gaps`` view shows per gap whether it was healed,
partly healed (with the shares still missing) or not healable. Order books have no REST
history: their gaps stay gaps.

Running it again adds nothing: a healed hole is no longer a hole, and an outcome already
stored is not stored twice. A lock (``_backfill/LOCK``) keeps two backfills of one store
apart; captures may run meanwhile (their part files and writer ids are their own).
"""

from __future__ import annotations

import bisect
import collections
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from recorder.kiwoom.decode import SEQ_SHIFT
from recorder.kiwoom.fields import REST_SOURCE, SOURCE
from recorder.kiwoom.items import SUFFIX_VENUE, item_of
from recorder.kiwoom.schema import SCHEMAS, TIMESTAMP, partitioning, timestamps
from recorder.kiwoom.time import NS

#: Entry indices of backfilled rows start here (live frames never reach it).
FILL_INDEX = 1 << (SEQ_SHIFT - 1)
#: Where the backfill keeps its lock.
BACKFILL_DIR = "_backfill"

HEALED, UNHEALABLE = "healed", "unhealable"
#: Gap kinds that are holes in the connection (continuity breaks are found from the trades).
_TRADE_COLUMNS = ["ts", "recv_ts", "seq", "symbol", "venue", "price", "volume", "cum_volume"]


class ChartRow(Protocol):
    """One tick-chart row as the REST client types it (an execution at ``tic_scope`` 1)."""

    @property
    def ts_ns(self) -> int: ...  # the execution's second (KST) as epoch ns

    @property
    def price(self) -> int: ...  # unsigned KRW

    @property
    def qty(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Trade:
    """A recorded trade, as much of it as alignment needs (times in epoch ns)."""

    ts_ns: int
    recv_ns: int
    seq: int
    price: int
    qty: int
    cum: int

    def key(self) -> tuple[int, int, int]:
        return self.ts_ns // NS, self.price, self.qty


@dataclass(frozen=True, slots=True)
class GapRef:
    """The ``gaps`` row a hole falls in (its identity: start, kind, seq)."""

    start_ns: int
    kind: str
    seq: int


@dataclass(frozen=True, slots=True)
class Hole:
    """Trades of ``item`` missing between two recorded ones."""

    item: str
    before: Trade
    after: Trade
    missing: int
    gap: GapRef | None

    @property
    def symbol(self) -> str:
        return self.item[:6]

    @property
    def venue(self) -> str:
        return SUFFIX_VENUE[self.item[6:]]


@dataclass(slots=True)
class Fill:
    """What became of one hole: the chart rows that fill it (healed), or why none do."""

    hole: Hole
    rows: list[ChartRow] = field(default_factory=list)
    outcome: str = UNHEALABLE
    detail: str = ""

    @property
    def filled(self) -> int:
        return sum(r.qty for r in self.rows)


@dataclass(slots=True)
class ItemTrades:
    """One item's recorded trades of the day, in cumulative-volume order."""

    item: str
    trades: list[Trade]


# --------------------------------------------------------------------------- finding holes


def recorded_trades(data_dir: Path, date: str, items: Iterable[str] = ()) -> dict[str, ItemTrades]:
    """Every recorded trade of ``date`` per item (``005930``, ``005930_NX``), by cum_volume.

    Rows of every writer and source count: a hole healed by an earlier backfill is no hole.
    """
    wanted = set(items)
    root = data_dir / "trades"
    if not root.is_dir():
        return {}
    dataset = ds.dataset(
        root, format="parquet", partitioning=partitioning("trades"), ignore_prefixes=[".", "_"]
    )
    flt = ds.field("date") == date
    symbols = sorted({i[:6] for i in wanted})
    if symbols:
        flt = flt & ds.field("symbol").isin(symbols)
    t = dataset.to_table(columns=_TRADE_COLUMNS, filter=flt)
    out: dict[str, ItemTrades] = {}
    if not len(t):
        return out
    t = t.sort_by(
        [("symbol", "ascending"), ("venue", "ascending"), ("cum_volume", "ascending"), ("seq", "ascending")]
    )
    cols = {c: t[c] for c in _TRADE_COLUMNS}
    ts = pc.cast(cols["ts"], pa.int64()).to_pylist()  # microseconds
    recv = pc.cast(cols["recv_ts"], pa.int64()).to_pylist()
    for i, (sym, venue, seq, price, qty, cum) in enumerate(
        zip(
            *(cols[c].to_pylist() for c in ("symbol", "venue", "seq", "price", "volume", "cum_volume")),
            strict=True,
        )
    ):
        item = item_of(sym, venue)
        if wanted and item not in wanted and sym not in wanted:
            continue
        trades = out.setdefault(item, ItemTrades(item, [])).trades
        trades.append(Trade(ts[i] * 1000, recv[i] * 1000, seq, price, qty, cum))
    return out


def recorded_gaps(data_dir: Path, date: str) -> list[dict[str, Any]]:
    """The ``gaps`` rows of ``date`` as dicts, times as epoch ns."""
    root = data_dir / "gaps"
    if not root.is_dir():
        return []
    dataset = ds.dataset(
        root, format="parquet", partitioning=partitioning("gaps"), ignore_prefixes=[".", "_"]
    )
    t = dataset.to_table(
        columns=["start_ts", "end_ts", "kind", "symbols", "seq"], filter=ds.field("date") == date
    )
    for name in ("start_ts", "end_ts"):
        ns = pc.multiply(pc.cast(t[name], pa.int64()), 1000)
        t = t.set_column(t.schema.get_field_index(name), name, ns)
    return t.to_pylist()


def find_holes(recorded: dict[str, ItemTrades], gaps: Sequence[dict[str, Any]]) -> dict[str, list[Hole]]:
    """The holes of each item, each with the gap row it falls in (or None).

    ``gaps`` are rows of the ``gaps`` table (``start_ts``/``end_ts`` as epoch ns, ``kind``,
    ``symbols``, ``seq``). A hole falls in a gap whose receive-time span overlaps the span
    between its two trades' receive times and that concerns the item (no ``symbols`` means
    every item).
    """
    out: dict[str, list[Hole]] = {}
    for item, it in recorded.items():
        for a, b in zip(it.trades, it.trades[1:], strict=False):
            missing = b.cum - a.cum - b.qty
            if missing > 0:
                out.setdefault(item, []).append(Hole(item, a, b, missing, _gap_of(item, a, b, gaps)))
    return out


def _gap_of(item: str, a: Trade, b: Trade, gaps: Sequence[dict[str, Any]]) -> GapRef | None:
    best: dict[str, Any] | None = None
    for g in gaps:
        symbols = g.get("symbols") or ()
        if symbols and item not in symbols and item[:6] not in symbols:
            continue
        end = g.get("end_ts")
        overlaps = g["start_ts"] <= b.recv_ns and (end is None or end >= a.recv_ns)
        if overlaps and (best is None or g["start_ts"] < best["start_ts"]):
            best = g
    return None if best is None else GapRef(best["start_ts"], best["kind"], best["seq"])


# --------------------------------------------------------------------------- alignment


def align(it: ItemTrades, holes: Sequence[Hole], chart: Sequence[ChartRow]) -> list[Fill]:
    """Fill ``holes`` of one item from ``chart`` (its rows in time order, oldest first, reaching
    back at least to the earliest hole's trade before).

    Returns one :class:`Fill` per hole, in the holes' order.
    """
    if not holes:
        return []
    if not chart:
        return [Fill(h, detail="the tick chart has no rows for this item and day") for h in holes]
    if chart[0].ts_ns > min(h.before.ts_ns for h in holes):
        return [Fill(h, detail="the tick chart does not reach back to the gap") for h in holes]
    prefix = list(_running(r.qty for r in chart))
    offset, why = _offset(it.trades, chart, prefix)
    if offset is None:
        return [Fill(h, detail=why) for h in holes]
    fills = []
    for h in holes:
        ka = _locate(h.before, chart, prefix, offset)
        kb = _locate(h.after, chart, prefix, offset)
        if ka is None or kb is None or kb <= ka:
            which = "before" if ka is None else "after"
            fills.append(Fill(h, detail=f"the recorded trade {which} the gap is not in the tick chart"))
            continue
        rows = list(chart[ka + 1 : kb])
        assert sum(r.qty for r in rows) == h.missing  # by construction of the offset
        fills.append(Fill(h, rows, HEALED, f"{len(rows)} trades, {h.missing:,} shares"))
    return fills


def _running(values: Iterable[int]) -> Iterable[int]:
    total = 0
    for v in values:
        total += v
        yield total


def _offset(trades: list[Trade], chart: Sequence[ChartRow], prefix: list[int]) -> tuple[int | None, str]:
    """The cumulative volume before the chart's first row, by vote of the recorded trades."""
    at: dict[tuple[int, int, int], list[int]] = collections.defaultdict(list)
    for k, r in enumerate(chart):
        at[_key(r)].append(k)
    first, last = chart[0].ts_ns // NS, chart[-1].ts_ns // NS
    votes: collections.Counter[int] = collections.Counter()
    for t in trades:
        if first <= t.ts_ns // NS <= last:
            for k in at.get(t.key(), ()):
                votes[t.cum - prefix[k]] += 1
    if not votes:
        return None, "no recorded trade matches the tick chart (time, price, quantity)"
    (best, n), *rest = votes.most_common(2)
    if rest and rest[0][1] == n:
        return None, "the recorded trades match the tick chart in more than one way"
    return best, ""


def _locate(t: Trade, chart: Sequence[ChartRow], prefix: list[int], offset: int) -> int | None:
    """The chart row of recorded trade ``t`` (its cumulative volume and its fields agree)."""
    k = bisect.bisect_left(prefix, t.cum - offset)
    if k < len(prefix) and prefix[k] == t.cum - offset and _key(chart[k]) == t.key():
        return k
    return None


def _key(r: ChartRow) -> tuple[int, int, int]:
    return r.ts_ns // NS, r.price, r.qty


# --------------------------------------------------------------------------- tables


def fill_table(fills: Sequence[Fill], date: str, recv_ns: int) -> pa.Table:
    """The healed rows of ``fills`` in the trades layout (schema + ``date``)."""
    schema = SCHEMAS["trades"]
    cols: dict[str, list[Any]] = {
        name: [] for name in ("ts", "seq", "symbol", "venue", "price", "volume", "cum_volume")
    }
    for f in fills:
        if f.outcome != HEALED:
            continue
        h = f.hole
        fno, cum = h.before.seq >> SEQ_SHIFT, h.before.cum
        for i, r in enumerate(f.rows):
            cum += r.qty
            hi, lo = divmod(i, FILL_INDEX)
            cols["ts"].append(r.ts_ns)
            cols["seq"].append(((fno + hi) << SEQ_SHIFT) | (FILL_INDEX + lo))
            cols["symbol"].append(h.symbol)
            cols["venue"].append(h.venue)
            cols["price"].append(r.price)
            cols["volume"].append(r.qty)
            cols["cum_volume"].append(cum)
    n = len(cols["seq"])
    arrays = []
    for f in schema:
        if f.name == "ts":
            arrays.append(timestamps(cols["ts"]))
        elif f.name == "recv_ts":
            arrays.append(timestamps([recv_ns] * n))
        elif f.name == SOURCE:
            arrays.append(pa.array([REST_SOURCE] * n, pa.string()))
        elif f.name in cols:
            arrays.append(pa.array(cols[f.name], f.type))
        else:
            arrays.append(pa.nulls(n, f.type))
    arrays.append(pa.array([date] * n, pa.string()))
    return pa.Table.from_arrays(arrays, schema=schema.append(pa.field("date", pa.string())))


def outcome_table(fills: Sequence[Fill], date: str, now_ns: int) -> pa.Table:
    """One ``backfill`` row per hole (schema + ``date``)."""
    rows = [
        {
            "start_ts": f.hole.before.ts_ns,
            "end_ts": f.hole.after.ts_ns,
            "symbol": f.hole.symbol,
            "venue": f.hole.venue,
            "gap_start_ts": f.hole.gap.start_ns if f.hole.gap else None,
            "gap_kind": f.hole.gap.kind if f.hole.gap else None,
            "gap_seq": f.hole.gap.seq if f.hole.gap else None,
            "missing": f.hole.missing,
            "filled": f.filled if f.outcome == HEALED else 0,
            "trades": len(f.rows) if f.outcome == HEALED else 0,
            "outcome": f.outcome,
            "detail": f.detail,
            "checked_ts": now_ns,
            "seq": f.hole.after.seq,
        }
        for f in fills
    ]
    schema = SCHEMAS["backfill"]
    cols: dict[str, list[Any]] = {name: [r[name] for r in rows] for name in schema.names}
    arrays = [
        timestamps(cols[f.name]) if f.type == TIMESTAMP else pa.array(cols[f.name], f.type) for f in schema
    ]
    arrays.append(pa.array([date] * len(rows), pa.string()))
    return pa.Table.from_arrays(arrays, schema=SCHEMAS["backfill"].append(pa.field("date", pa.string())))


def stored_outcomes(data_dir: Path, date: str) -> set[tuple[int, str, str, str, int]]:
    """Outcomes already stored for ``date``: (start ns, symbol, venue, outcome, filled)."""
    root = data_dir / "backfill"
    if not root.is_dir():
        return set()
    dataset = ds.dataset(
        root, format="parquet", partitioning=partitioning("backfill"), ignore_prefixes=[".", "_"]
    )
    t = dataset.to_table(
        columns=["start_ts", "symbol", "venue", "outcome", "filled"], filter=ds.field("date") == date
    )
    starts = [v * 1000 for v in pc.cast(t["start_ts"], pa.int64()).to_pylist()]
    return set(
        zip(starts, *(t[c].to_pylist() for c in ("symbol", "venue", "outcome", "filled")), strict=True)
    )


def outcome_key(f: Fill) -> tuple[int, str, str, str, int]:
    return (
        f.hole.before.ts_ns // 1000 * 1000,
        f.hole.symbol,
        f.hole.venue,
        f.outcome,
        f.filled if f.outcome == HEALED else 0,
    )


def kst_midnight_ns(date: str) -> int:
    """Epoch ns of 00:00 KST on ``date``."""
    day = dt.date.fromisoformat(date)
    return (
        int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone(dt.timedelta(hours=9))).timestamp())
        * NS
    )
