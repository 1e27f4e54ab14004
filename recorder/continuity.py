"""Cumulative-volume continuity: the only way to see a missed trade, since Kiwoom sends no
sequence numbers.

FID 13 (``cum_volume``) of a stream (one symbol on one venue) must grow by exactly FID 15
(``volume``) with every trade (ARCHITECTURE.md invariant 2). When it does not, trades were
missed (or the feed restarted its count), and a ``continuity`` row goes to ``gaps`` with the
size of the hole. The expectation is reset whenever a connection (re)starts, because
trades made while disconnected are already covered by that disconnect's gap row.
"""

from __future__ import annotations

from typing import Any

from recorder.fields import VENUE_SUFFIX
from recorder.sink import Gap


class ContinuityChecker:
    """Remembers the last cumulative volume per (symbol, venue) across batches."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], tuple[int, int]] = {}  # → (cum_volume, ts)
        self.breaks = 0

    def state(self) -> list[list[Any]]:
        """The expectations, JSON-ready (for a checkpoint)."""
        return [[sym, venue, cum, ts] for (sym, venue), (cum, ts) in self._last.items()]

    def restore(self, state: list[list[Any]]) -> None:
        self._last = {(sym, venue): (int(cum), int(ts)) for sym, venue, cum, ts in state}

    def reset(self) -> None:
        """Forget every expectation (a new connection, a restart, a new trading day)."""
        self._last.clear()

    def check(self, cols: dict[str, list[Any]]) -> list[Gap]:
        """Check decoded trade columns (any order; checked in ``seq`` order); return the breaks."""
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
