"""Every execution of one item, kept compactly: what the venue's ka10079 tick chart serves.

Pure: no I/O. The synthetic market appends each trade it makes, whether or not any client
subscribed to it or the 0B entry was ever sent, so a recorder that missed trades can find
them again in the chart (protocol notes §5.3). A trade costs 24 bytes: three parallel
``array('q')`` columns rather than an object per trade, so a day of a busy venue stays small
(a million trades is about 24 MB).

The columns hold exactly what the 0B entry said: the exchange second (epoch seconds; FID 20
is that second in KST), the unsigned price (FID 10 without its sign) and the quantity
(``|FID 15|``). The chart rows are formatted from them in :mod:`recorder.sim.rest`.
"""

from __future__ import annotations

from array import array


class TradeTape:
    """The executions of one item (``005930`` or ``005930_NX``), oldest first.

    Args:
        item: the item as sent in REAL entries, suffix included.
        prev_close: the previous close the item's prices are signed against (§4.3).
        volume_before: the cumulative volume (FID 13) before the first trade on the tape:
            the market starts part-way into a session, so the tape holds only the trades
            made since; ``volume_before + sum(qty up to trade i)`` is trade i's FID 13.
    """

    __slots__ = ("_prices", "_qtys", "_secs", "_volume", "item", "prev_close", "volume_before")

    def __init__(self, item: str, prev_close: int, volume_before: int) -> None:
        self.item = item
        self.prev_close = prev_close
        self.volume_before = volume_before
        self._secs = array("q")
        self._prices = array("q")
        self._qtys = array("q")
        self._volume = volume_before

    def __len__(self) -> int:
        return len(self._secs)

    def __repr__(self) -> str:
        return f"TradeTape({self.item!r}, {len(self)} trades)"

    @property
    def volume(self) -> int:
        """The cumulative volume after the newest trade (FID 13 of the last 0B entry)."""
        return self._volume

    def append(self, sec: int, price: int, qty: int) -> None:
        """Add a trade made at epoch second ``sec`` for ``qty`` shares at ``price`` (unsigned)."""
        self._secs.append(sec)
        self._prices.append(price)
        self._qtys.append(qty)
        self._volume += qty

    def trade(self, i: int) -> tuple[int, int, int]:
        """Trade ``i`` (0 = the oldest) as ``(epoch second, price, qty)``."""
        return self._secs[i], self._prices[i], self._qtys[i]
