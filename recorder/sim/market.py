"""A deterministic synthetic market that speaks Kiwoom REAL entries (0B trades, 0D books).

Pure: no I/O, no asyncio, no clock of its own. The caller passes the time to :meth:`step`
and gets back entries shaped exactly like the ``data`` items of a live REAL frame
(protocol notes §4.1): ``{"values": {...}, "type", "name", "item"}``, every value a
string. Given the same seed, symbols and sequence of ``now_ns`` values, the output is
identical, so tests can compare what a recorder stored against what was produced.

Model, per *stream* (one symbol on one venue, e.g. ``005930`` on KRX or ``005930_NX``):

- a 10-level book on the KRX tick grid (:func:`tick_size`), one tick wide; trades take
  quantity from the best level and the price moves a tick when that level is used up;
- trades arrive as a Poisson process at ``trade_rate`` per stream per second; each one
  adds exactly ``|FID 15|`` to the cumulative volume (FID 13) of its stream, the invariant
  recorders check (docs/architecture.md, invariant 2);
- books are full snapshots sent at most ``book_rate`` times per second per stream (§4.5:
  0D is throttled to about 3.6/s per symbol);
- every trade is also kept on the stream's :class:`~recorder.sim.tape.TradeTape` (second,
  unsigned price, quantity), sent or not: the venue's ka10079 tick chart (§5.3) reads it.

The tick grid and the symbol catalogue (names, previous closes, ka10099 rows) live in
:mod:`recorder.sim.symbols`.

Not modelled: the session schedule of §4.6 (the market trades around the clock), auctions
(23/24 and 291-295 stay zero as in continuous trading), price limits being hit, ``_AL``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from recorder.kiwoom.fields import ORDERBOOK, TRADES, Kind
from recorder.kiwoom.items import item_of
from recorder.kiwoom.time import NS, hhmmss_kst
from recorder.sim.symbols import (
    SymbolInfo,
    round_to_tick,
    symbol_info,
    tick_down,
    tick_size,
    tick_up,
    universe,
)
from recorder.sim.tape import TradeTape

__all__ = [
    "SymbolInfo",
    "SyntheticMarket",
    "TradeTape",
    "pct",
    "round_to_tick",
    "sign_code",
    "signed",
    "signed_price",
    "symbol_info",
    "tick_down",
    "tick_size",
    "tick_up",
]

LEVELS = 10
MAX_GAP_NS = NS  # a clock jump longer than this is not caught up (no bursts of trades)
BAND = 0.2  # the best prices stay within ±20 % of the previous close (limits are ±30 %)

#: The venues the synthetic market trades (SOR is a routing view, not a venue of its own).
VENUES = ("KRX", "NXT")


def _clock_time(secs: int) -> str:
    return f"{secs // 3600:02d}{secs // 60 % 60:02d}{secs % 60:02d}"


def signed_price(price: int, prev_close: int) -> str:
    """§4.3: a price signed by its direction against the previous close, unsigned when equal."""
    if price == 0 or price == prev_close:
        return str(price)
    return f"+{price}" if price > prev_close else f"-{price}"


def signed(n: int) -> str:
    """A quantity with a real sign: ``+N``, ``-N`` or ``0``."""
    return f"+{n}" if n > 0 else str(n)


def pct(x: float) -> str:
    """A signed rate with 2 decimals (``+0.49``, ``-96.64``); zero is ``0.00`` (§4.3)."""
    text = f"{x:+.2f}"
    return "0.00" if text in ("+0.00", "-0.00") else text


def real_frames(
    entries: Sequence[dict[str, Any]], rng: random.Random, most: int = 4
) -> Iterator[tuple[bytes, Sequence[dict[str, Any]]]]:
    """``entries`` cut in order into REAL frames of 1..``most`` entries, as Kiwoom batches them.

    Yields (the frame as sent, its entries). §4.1: one frame may mix types and symbols;
    ``trnm`` comes last, as seen live. Draws one ``rng.randint(1, most)`` per frame.
    """
    i = 0
    while i < len(entries):
        batch = entries[i : i + rng.randint(1, most)]
        i += len(batch)
        yield orjson.dumps({"data": batch, "trnm": "REAL"}), batch


@dataclass(slots=True)
class _Stream:
    """One item's state: a symbol on one venue (``005930`` or ``005930_NX``)."""

    item: str
    venue: str
    info: SymbolInfo
    ask: int
    bid: int
    ask_qty: list[int]
    bid_qty: list[int]
    qty_mu: float  # log of a typical trade size
    open: int
    high: int
    low: int
    price: int
    open_time: str
    high_time: str
    low_time: str
    cum_vol: int
    cum_value: int  # KRW, exact; FID 14 is this in million KRW
    sell_vol: int
    buy_vol: int
    sell_cnt: int
    buy_cnt: int
    prev_vol: int  # the previous day's volume, for FIDs 26/29/30
    prev_value: int
    tape: TradeTape
    ask_chg: list[int] = field(default_factory=lambda: [0] * LEVELS)
    bid_chg: list[int] = field(default_factory=lambda: [0] * LEVELS)
    next_book_ns: int = 0

    @property
    def upper(self) -> int:
        return int(self.info.prev_close * (1 + BAND))

    @property
    def lower(self) -> int:
        return int(self.info.prev_close * (1 - BAND))


class SyntheticMarket:
    """A seeded generator of realistic 0B and 0D entries for a set of symbols.

    Args:
        symbols: 6-character codes without a venue suffix.
        seed: seeds every random choice; same seed and same ``step`` times → same output.
        venues: ``"KRX"`` (plain items) and/or ``"NXT"`` (``_NX`` items, only for symbols
            whose ka10099 ``nxtEnable`` is ``"Y"``, §4.2).
        trade_rate: mean trades per second per stream (one symbol on one venue).
        book_rate: the most 0D snapshots per second per stream (§4.5: about 3.6).

    Raises:
        ValueError: an unknown venue, a suffixed or empty code, or a non-positive rate.
    """

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        seed: int = 0,
        venues: Sequence[str] = ("KRX",),
        trade_rate: float = 2.0,
        book_rate: float = 3.6,
    ) -> None:
        bad = [v for v in venues if v not in VENUES]
        if bad:
            raise ValueError(f"unknown venue(s) {bad}; use KRX and/or NXT")
        if book_rate <= 0 or trade_rate < 0:
            raise ValueError("book_rate must be > 0 and trade_rate >= 0")
        for code in symbols:
            if not code or "_" in code:
                raise ValueError(f"symbol {code!r} must be a plain code without a venue suffix")
        self.seed = seed
        self.trade_rate = trade_rate
        self.book_period_ns = math.ceil(NS / book_rate)
        self._rng = random.Random(seed)
        self._info = {code: symbol_info(code, seed) for code in dict.fromkeys(symbols)}
        self._streams = [
            self._new_stream(info, venue)
            for info in self._info.values()
            for venue in venues
            if venue == "KRX" or info.nxt_enable
        ]
        self._tapes = {st.item: st.tape for st in self._streams}
        self._last_ns: int | None = None

    @classmethod
    def universe(cls, n: int, seed: int = 0) -> list[str]:
        """``n`` distinct plausible codes: well-known ones first, then seeded 6-digit codes."""
        return universe(n, seed)

    @property
    def items(self) -> list[str]:
        """Every item this market produces entries for, e.g. ``["005930", "005930_NX"]``."""
        return [s.item for s in self._streams]

    def symbols_info(self) -> list[dict[str, str]]:
        """ka10099 rows (§5.2) for every symbol, in the order the symbols were given."""
        return [info.ka10099_row() for info in self._info.values()]

    def tick_tape(self, item: str) -> TradeTape | None:
        """Every trade of ``item`` since the market started (None for an item it does not trade)."""
        return self._tapes.get(item)

    def step(self, now_ns: int) -> list[dict[str, Any]]:
        """Advance the market to ``now_ns`` (epoch ns) and return the entries produced.

        Trades are drawn for the time since the previous call (at most one second is
        caught up); a book snapshot is emitted for every stream whose throttle allows it,
        so the first call returns one 0D entry per stream. Entries of one stream are in
        the order they happened. Time fields carry ``now_ns`` in KST; every trade is also
        appended to its stream's tape at the same second (``now_ns // NS``).
        """
        elapsed = 0 if self._last_ns is None else min(max(now_ns - self._last_ns, 0), MAX_GAP_NS)
        self._last_ns = now_ns
        lam = self.trade_rate * elapsed / NS
        hhmmss, sec = hhmmss_kst(now_ns), now_ns // NS
        out: list[dict[str, Any]] = []
        for st in self._streams:
            for _ in range(self._poisson(lam)):
                out.append(self._trade(st, hhmmss, sec))
            if now_ns >= st.next_book_ns:
                self._churn_book(st)
                out.append(self._book_entry(st, hhmmss))
                st.next_book_ns = now_ns + self.book_period_ns
        return out

    # ------------------------------------------------------------------ state

    def _new_stream(self, info: SymbolInfo, venue: str) -> _Stream:
        """A stream already some way into the session: open, high, low and volumes set."""
        rng, prev = self._rng, info.prev_close
        ask = round_to_tick(int(prev * (1 + rng.uniform(-0.03, 0.03))))
        bid = tick_down(ask)
        open_ = round_to_tick(int(prev * (1 + rng.uniform(-0.02, 0.02))))
        high = max(open_, ask)
        low = min(open_, bid)
        for _ in range(rng.randint(0, 8)):
            high = tick_up(high)
            low = tick_down(low)
        scale = 1.0 if venue == "KRX" else 0.2  # NXT trades a fraction of KRX volume
        qty_mu = math.log(max(1.0, 3e6 / prev))
        traded = max(100, int(scale * rng.uniform(0.001, 0.01) * info.list_count))
        auction = traded // 20  # opening-auction volume: in 13 but not in 1030/1031 (§4.4)
        buy = int((traded - auction) * rng.uniform(0.4, 0.6))
        sell = traded - auction - buy
        vwap = rng.randint(low, high)
        prev_vol = int(traded * rng.uniform(1.5, 4.0))
        avg = math.exp(qty_mu + 0.5)
        base = f"{'09' if venue == 'KRX' else '08'}00"
        return _Stream(
            item=item_of(info.code, venue),
            venue=venue,
            info=info,
            ask=ask,
            bid=bid,
            ask_qty=[self._level_qty(qty_mu) for _ in range(LEVELS)],
            bid_qty=[self._level_qty(qty_mu) for _ in range(LEVELS)],
            qty_mu=qty_mu,
            open=open_,
            high=high,
            low=low,
            price=ask,
            open_time=f"{base}{rng.randint(0, 59):02d}",
            high_time=_clock_time(rng.randint(9 * 3600, 10 * 3600)),
            low_time=_clock_time(rng.randint(9 * 3600, 10 * 3600)),
            cum_vol=traded,
            cum_value=traded * vwap,
            sell_vol=sell,
            buy_vol=buy,
            sell_cnt=max(1, int(sell / avg)),
            buy_cnt=max(1, int(buy / avg)),
            prev_vol=prev_vol,
            prev_value=prev_vol * prev,
            tape=TradeTape(item_of(info.code, venue), prev, traded),
        )

    def _level_qty(self, qty_mu: float) -> int:
        return max(1, int(self._rng.lognormvariate(qty_mu + 2.0, 0.8)))

    def _poisson(self, lam: float) -> int:
        """A Poisson draw by Knuth's method (fine for the small means used here)."""
        if lam <= 0:
            return 0
        limit, k, p = math.exp(-lam), 0, self._rng.random()
        while p > limit:
            k += 1
            p *= self._rng.random()
        return k

    def _shift(self, st: _Stream, up: bool) -> None:
        """The best level on one side is used up: move the one-tick-wide book a tick."""
        if up and tick_up(st.ask) <= st.upper:
            st.bid, st.ask = st.ask, tick_up(st.ask)
            new_bid, new_ask = self._level_qty(st.qty_mu), self._level_qty(st.qty_mu)
            st.ask_qty = [*st.ask_qty[1:], new_ask]
            st.ask_chg = [*st.ask_chg[1:], new_ask]
            st.bid_qty = [new_bid, *st.bid_qty[:-1]]
            st.bid_chg = [new_bid, *st.bid_chg[:-1]]
        elif not up and tick_down(st.bid) >= st.lower:
            st.ask, st.bid = st.bid, tick_down(st.bid)
            new_bid, new_ask = self._level_qty(st.qty_mu), self._level_qty(st.qty_mu)
            st.bid_qty = [*st.bid_qty[1:], new_bid]
            st.bid_chg = [*st.bid_chg[1:], new_bid]
            st.ask_qty = [new_ask, *st.ask_qty[:-1]]
            st.ask_chg = [new_ask, *st.ask_chg[:-1]]
        else:  # at the band: fresh orders arrive at the same price instead
            qty, chg = (st.ask_qty, st.ask_chg) if up else (st.bid_qty, st.bid_chg)
            fresh = self._level_qty(st.qty_mu)
            qty[0] += fresh
            chg[0] += fresh

    def _churn_book(self, st: _Stream) -> None:
        """A few orders added or cancelled somewhere in the book since the last snapshot."""
        rng = self._rng
        for _ in range(rng.randint(1, 4)):
            qty, chg = (st.ask_qty, st.ask_chg) if rng.random() < 0.5 else (st.bid_qty, st.bid_chg)
            lvl = min(LEVELS - 1, int(rng.expovariate(0.4)))
            delta = max(1 - qty[lvl], int(rng.gauss(0, qty[lvl] * 0.2)))
            qty[lvl] += delta
            chg[lvl] += delta

    # ------------------------------------------------------------------ 0B

    def _trade(self, st: _Stream, hhmmss: str, sec: int) -> dict[str, Any]:
        """One print at the best price at epoch second ``sec``; updates the stream, puts the
        trade on its tape and returns its 0B entry."""
        rng = self._rng
        drift = (st.ask + st.bid) / 2 / st.info.prev_close - 1
        buy = rng.random() < min(0.7, max(0.3, 0.5 - 2 * drift))  # mild mean reversion
        qty_levels, chg = (st.ask_qty, st.ask_chg) if buy else (st.bid_qty, st.bid_chg)
        price = st.ask if buy else st.bid
        qty = min(qty_levels[0], max(1, int(rng.lognormvariate(st.qty_mu, 1.0))))
        qty_levels[0] -= qty
        chg[0] -= qty
        if qty_levels[0] == 0:
            self._shift(st, up=buy)
        st.price = price
        st.tape.append(sec, price, qty)
        st.cum_vol += qty
        st.cum_value += qty * price
        if buy:
            st.buy_vol += qty
            st.buy_cnt += 1
        else:
            st.sell_vol += qty
            st.sell_cnt += 1
        if price > st.high:
            st.high, st.high_time = price, hhmmss
        if price < st.low:
            st.low, st.low_time = price, hhmmss
        return _entry(TRADES.code, TRADES.name, st.item, self._trade_values(st, hhmmss, qty, buy))

    def _trade_values(self, st: _Stream, hhmmss: str, qty: int, buy: bool) -> dict[str, str]:
        """FIDs of §4.4 in the spec's order (the order of the H-GOLD capture)."""
        prev, price = st.info.prev_close, st.price
        change = price - prev
        vol_diff = st.cum_vol - st.prev_vol
        strength = st.buy_vol / st.sell_vol * 100 if st.sell_vol else 0.0
        buy_ratio = st.buy_vol / max(1, st.buy_vol + st.sell_vol) * 100
        side = "+" if buy else "-"
        ratio_851 = "" if self._rng.random() < 0.1 else str(st.cum_vol * 30000 // st.prev_vol)
        return {
            "20": hhmmss,
            "10": signed_price(price, prev),
            "11": signed(change),
            "12": pct(change / prev * 100),
            "27": signed_price(st.ask, prev),
            "28": signed_price(st.bid, prev),
            "15": f"{side}{qty}",
            "13": str(st.cum_vol),
            "14": str(st.cum_value // 1_000_000),
            "16": signed_price(st.open, prev),
            "17": signed_price(st.high, prev),
            "18": signed_price(st.low, prev),
            "25": sign_code(price, prev),
            "26": signed(vol_diff),
            "29": signed(st.cum_value - st.prev_value),
            # §4.4: 30 is the volume ratio carrying the sign of 26 (H-GOLD: -43.85 with 26 < 0).
            "30": ("-" if vol_diff < 0 else "+") + f"{st.cum_vol / st.prev_vol * 100:.2f}",
            "31": f"{st.cum_vol / st.info.list_count * 100:.2f}",
            "32": str(round(price * 0.002305)),
            "228": f"{strength:.2f}",
            "311": str(price * st.info.list_count // 100_000_000),
            "290": "2",
            "691": "0",
            "567": "000000",
            "568": "000000",
            "851": ratio_851,
            "1890": st.open_time,
            "1891": st.high_time,
            "1892": st.low_time,
            "1030": str(st.sell_vol),
            "1031": str(st.buy_vol),
            # §4.3: 1032 is signed around 50 % (H-GOLD "+50.15", "-48.56").
            "1032": ("+" if buy_ratio >= 50 else "-") + f"{buy_ratio:.2f}",
            "1071": str(st.sell_cnt),
            "1072": str(st.buy_cnt),
            "1313": f"{side}{qty * price // 1000}",
            "1315": " 0" if buy else f"-{qty}",  # §4.3: leading space on zero (H-GOLD)
            "1316": f"+{qty}" if buy else " 0",
            "1314": f"{side}{qty}",
            "1497": str(price * 2 // 5),
            "1498": str(price * 8 // 25),
            "620": str(st.cum_value // st.cum_vol),
            "732": str(round(price * 0.005018)),
            "852": str(round(price * 0.004013)),
            "9081": st.venue,
        }

    # ------------------------------------------------------------------ 0D

    def _book_entry(self, st: _Stream, hhmmss: str) -> dict[str, Any]:
        """A full 0D snapshot (§4.5, all 163 FIDs, order as in §7.4); resets the deltas."""
        prev = st.info.prev_close
        asks, bids = [st.ask], [st.bid]
        for _ in range(LEVELS - 1):
            asks.append(tick_up(asks[-1]))
            bids.append(tick_down(bids[-1]))
        values: dict[str, str] = {"21": hhmmss}
        for i in range(LEVELS):
            values[str(41 + i)] = signed_price(asks[i], prev)
            values[str(61 + i)] = str(st.ask_qty[i])
            values[str(81 + i)] = signed(st.ask_chg[i])
            values[str(51 + i)] = signed_price(bids[i], prev)
            values[str(71 + i)] = str(st.bid_qty[i])
            values[str(91 + i)] = signed(st.bid_chg[i])
        total_ask, total_bid = sum(st.ask_qty), sum(st.bid_qty)
        values.update(
            {
                "121": str(total_ask),
                "122": signed(sum(st.ask_chg)),  # §4.5: Σ81..90 == 122
                "125": str(total_bid),
                "126": signed(sum(st.bid_chg)),  # §4.5: Σ91..100 == 126
                "23": "0",
                "24": "0",  # expected price/qty: zero in continuous trading [GUESS §9.20]
                "128": signed(total_bid - total_ask),
                "129": f"{total_bid / total_ask * 100:.2f}",
                "138": signed(total_ask - total_bid),
                "139": f"{total_ask / total_bid * 100:.2f}",
                "200": "0",
                "201": "0.00",
                "238": "3",
                "291": "0",
                "292": "0",
                "293": "3",
                "294": "0",
                "295": "0.00",
            }
        )
        for i in range(LEVELS):
            values[str(621 + i)] = "0"
            values[str(631 + i)] = "0"
        values.update({"13": str(st.cum_vol), "299": "0.00", "215": "", "216": ""})
        values.update(_SPLIT_ZEROS)
        st.ask_chg = [0] * LEVELS
        st.bid_chg = [0] * LEVELS
        return _entry(ORDERBOOK.code, ORDERBOOK.name, st.item, values)


# 6044-6115, the KRX/NXT split fields: all zero as measured after hours and in K-SPEC (§4.5).
_SPLIT_ZEROS = {
    f.fid: "0.00" if f.kind is Kind.FLOAT else "0" for f in ORDERBOOK.fields if int(f.fid) >= 6044
}


def sign_code(price: int, prev_close: int) -> str:
    """FID 25 (§4.3) and ka10079's ``pred_pre_sig`` (§5.3): 1 upper limit, 2 up, 3 unchanged,
    4 lower limit, 5 down."""
    if price == prev_close:
        return "3"
    if price > prev_close:
        return "1" if price >= round_to_tick(int(prev_close * 1.3)) else "2"
    return "4" if price <= round_to_tick(math.ceil(prev_close * 0.7)) else "5"


def _entry(type_code: str, name: str, item: str, values: dict[str, str]) -> dict[str, Any]:
    """An entry with the live key order: values, type, name, item (§4.1)."""
    return {"values": values, "type": type_code, "name": name, "item": item}
