"""Cumulative-volume continuity: the only way to see a missed trade, since Kiwoom sends no
sequence numbers.

FID 13 (``cum_volume``) of a stream (one symbol on one venue) must grow by exactly FID 15
(``volume``) with every trade (docs/architecture.md, invariant 2). When it does not, trades were
missed (or the feed restarted its count), and a ``continuity`` row goes to ``gaps`` with the
size of the hole. The expectation is reset whenever a connection (re)starts, because
trades made while disconnected are already covered by that disconnect's gap row.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from recorder.kiwoom.items import VENUE_SUFFIX
from recorder.store.sink import Gap


class ContinuityChecker:
    """Remembers the last cumulative volume per (symbol, venue) across batches."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], tuple[int, int]] = {}  # → (cum_volume, ts)
        self.breaks = 0

    def state(self) -> list[list[Any]]:
        """The expectations, JSON-ready (for a checkpoint)."""
        return [[sym, venue, cum, ts] for (sym, venue), (cum, ts) in sorted(self._last.items())]

    def restore(self, state: list[list[Any]]) -> None:
        self._last = {(sym, venue): (int(cum), int(ts)) for sym, venue, cum, ts in state}

    def reset(self) -> None:
        """Forget every expectation (a new connection, a restart, a new trading day)."""
        self._last.clear()

    def check(self, trades: pa.Table) -> list[Gap]:
        """Check a batch of trades; return the breaks, in ``seq`` order.

        ``trades`` has the columns ``seq``, ``symbol``, ``venue``, ``cum_volume``, ``volume``
        and ``ts`` (epoch ns), rows in any order; each stream is checked in ``seq`` order.
        Arrow kernels do the comparisons (the GIL stays free for other threads); Python
        only visits the first and last row of each stream, and the breaks.
        """
        n = trades.num_rows
        if not n:
            return []
        t = trades.sort_by([("symbol", "ascending"), ("venue", "ascending"), ("seq", "ascending")])
        sym, venue, cum, vol, ts, seq = (
            t.column(name).combine_chunks()
            for name in ("symbol", "venue", "cum_volume", "volume", "ts", "seq")
        )
        same = pc.and_(pc.equal(sym[1:], sym[:-1]), pc.equal(venue[1:], venue[:-1]))
        try:
            broken = pc.and_(same, pc.not_equal(cum[1:], pc.add_checked(cum[:-1], vol[1:])))
        except pa.ArrowInvalid:  # int64 overflow of cum + vol: Python's integers decide
            return self._check_rows(t)
        starts = [0, *(i + 1 for i in pc.indices_nonzero(pc.invert(same)).to_pylist())]
        ends = [s - 1 for s in starts[1:]] + [n - 1]
        inner = [i + 1 for i in pc.indices_nonzero(pc.fill_null(broken, False)).to_pylist()]
        rows = sorted({*starts, *ends, *inner, *(i - 1 for i in inner)})
        at = dict(
            zip(
                rows,
                zip(*(c.take(rows).to_pylist() for c in (sym, venue, cum, vol, ts, seq)), strict=True),
                strict=True,
            )
        )
        gaps: list[Gap] = []
        last = self._last
        for s in starts:  # first trade of a stream in this batch: against the last one seen
            key = at[s][:2]
            prev = last.get(key)
            if prev is not None and at[s][2] != prev[0] + at[s][3]:
                gaps.append(self._gap(key, prev, *at[s][2:]))
        for i in inner:
            before = at[i - 1]
            gaps.append(self._gap(at[i][:2], (before[2], before[4]), *at[i][2:]))
        for e in ends:
            last[at[e][:2]] = (at[e][2], at[e][4])
        gaps.sort(key=lambda g: g.seq)
        self.breaks += len(gaps)
        return gaps

    def _check_rows(self, t: pa.Table) -> list[Gap]:
        """:meth:`check` one row at a time, with Python's unbounded integers."""
        cols = {
            name: t.column(name).to_pylist()
            for name in ("seq", "symbol", "venue", "cum_volume", "volume", "ts")
        }
        seq, sym, venue = cols["seq"], cols["symbol"], cols["venue"]
        cum, vol, ts = cols["cum_volume"], cols["volume"], cols["ts"]
        gaps: list[Gap] = []
        last = self._last
        for i in sorted(range(len(seq)), key=seq.__getitem__):
            key = (sym[i], venue[i])
            prev = last.get(key)
            if prev is not None and cum[i] != prev[0] + vol[i]:
                gaps.append(self._gap(key, prev, cum[i], vol[i], ts[i], seq[i]))
            last[key] = (cum[i], ts[i])
        self.breaks += len(gaps)
        return gaps

    @staticmethod
    def _gap(key: tuple[str, str], prev: tuple[int, int], cum: int, vol: int, ts: int, seq: int) -> Gap:
        hole = cum - prev[0] - vol
        what = f"{hole} shares of trades missing" if hole > 0 else f"the count went back by {-hole} shares"
        detail = f"cum_volume {cum} is not the previous {prev[0]} + this trade's {vol}: {what}"
        return Gap(prev[1], ts, "continuity", detail, (key[0] + VENUE_SUFFIX[key[1]],), seq)
