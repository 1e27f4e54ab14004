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
        starts = pa.concat_arrays(
            [pa.array([0], pa.int64()), pc.add(pc.indices_nonzero(pc.invert(same)), 1).cast(pa.int64())]
        )
        ends = pa.concat_arrays([pc.subtract(starts[1:], 1), pa.array([n - 1], pa.int64())])
        # Each stream's first and last rows, a column at a time (Python visits each stream once).
        keys = list(zip(sym.take(starts).to_pylist(), venue.take(starts).to_pylist(), strict=True))
        first = zip(keys, *(c.take(starts).to_pylist() for c in (cum, vol, ts, seq)), strict=True)
        gaps: list[Gap] = []
        last = self._last
        for key, c, v, t_ns, q in first:  # against the last trade seen of the stream
            prev = last.get(key)
            if prev is not None and c != prev[0] + v:
                gaps.append(self._gap(key, prev, c, v, t_ns, q))
        inner = pc.add(pc.indices_nonzero(pc.fill_null(broken, False)), 1)
        if len(inner):  # breaks within the batch (rare)
            here = zip(*(c.take(inner).to_pylist() for c in (sym, venue, cum, vol, ts, seq)), strict=True)
            before = zip(*(c.take(pc.subtract(inner, 1)).to_pylist() for c in (cum, ts)), strict=True)
            for (s_, v_, c, v, t_ns, q), prev in zip(here, before, strict=True):
                gaps.append(self._gap((s_, v_), prev, c, v, t_ns, q))
        last.update(
            zip(keys, zip(cum.take(ends).to_pylist(), ts.take(ends).to_pylist(), strict=True), strict=True)
        )
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
