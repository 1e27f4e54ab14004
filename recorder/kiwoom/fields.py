"""FID tables for the real-time types the recorder stores: 0B (trades) and 0D (order book).

Every FID of the spec (protocol notes §4.4 for 0B, §4.5 for 0D) maps to one named,
typed column. The decoder (:mod:`recorder.kiwoom.frames`), the encoder and the Arrow schemas
(:mod:`recorder.kiwoom.schema`) all derive from these tables, so a column is added in one place.

Kinds (§4.3):

- ``PRICE``: a KRW price whose sign is *direction against the previous close*, not a
  negative price. Stored as the absolute value.
- ``INT``: an integer whose sign is real (differences, net quantities). Kept as sent.
- ``FLOAT``: a rate or ratio such as ``+0.49``. Kept with its sign.
- ``TEXT``: a code or time-of-day kept exactly as sent (``"000000"``, ``"022506"``, ``"KRX"``).
- ``TIME``: the entry's HHMMSS exchange time; becomes the ``ts`` column.
- ``SIDE_VOLUME``: FID 15 of 0B: the absolute value is ``volume``, the sign gives ``side``.

This module does no I/O and imports nothing outside the standard library.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    PRICE = "price"
    INT = "int"
    FLOAT = "float"
    TEXT = "text"
    TIME = "time"
    SIDE_VOLUME = "side_volume"


@dataclass(frozen=True, slots=True)
class Field:
    """One FID of a real-time type.

    Attributes:
        fid: the FID as it appears in ``values`` (a string such as ``"10"``).
        column: the column name in the stored table.
        kind: how the value is parsed; see the module docstring.
        required: an entry without a parseable value here is rejected whole.
        doc: the Kiwoom name and unit, for schema metadata and the docs.
    """

    fid: str
    column: str
    kind: Kind
    required: bool = False
    doc: str = ""


@dataclass(frozen=True, slots=True)
class RealType:
    """A real-time type the recorder decodes into a table."""

    code: str
    name: str
    table: str
    fields: tuple[Field, ...]

    @property
    def time_field(self) -> Field:
        return next(f for f in self.fields if f.kind is Kind.TIME)


# Columns every market-data table starts with, in this order. ``date`` and ``symbol``
# are also the Hive partition keys; ``symbol`` is not stored inside the files.
BASE_COLUMNS = ("ts", "recv_ts", "seq", "symbol", "venue")

P, INT, F, T = Kind.PRICE, Kind.INT, Kind.FLOAT, Kind.TEXT

# §4.4, in the spec's order.
_TRADE_FIELDS: tuple[Field, ...] = (
    Field("20", "ts", Kind.TIME, True, "체결시간 HHMMSS KST"),
    Field("10", "price", P, True, "현재가 KRW"),
    Field("15", "volume", Kind.SIDE_VOLUME, True, "거래량 shares; + buy-initiated, - sell-initiated"),
    Field("13", "cum_volume", INT, True, "누적거래량 shares"),
    Field("14", "cum_value", INT, False, "누적거래대금 million KRW"),
    Field("11", "change", INT, False, "전일대비 KRW, signed"),
    Field("12", "change_pct", F, False, "등락율 %, signed"),
    Field("27", "best_ask", P, False, "(최우선)매도호가 KRW"),
    Field("28", "best_bid", P, False, "(최우선)매수호가 KRW"),
    Field("16", "open", P, False, "시가 KRW"),
    Field("17", "high", P, False, "고가 KRW"),
    Field("18", "low", P, False, "저가 KRW"),
    Field("25", "change_sign", INT, False, "전일대비기호 1 상한 2 상승 3 보합 4 하한 5 하락"),
    Field("26", "volume_change", INT, False, "전일거래량대비 shares, signed"),
    Field("29", "value_change", INT, False, "거래대금증감 KRW, signed"),
    Field("30", "volume_change_pct", F, False, "전일거래량대비(비율) %, signed"),
    Field("31", "turnover", F, False, "거래회전율 %"),
    Field("32", "trade_cost", INT, False, "거래비용 (unit unknown)"),
    Field("228", "strength", F, False, "체결강도 %"),
    Field("311", "market_cap", INT, False, "시가총액 100 million KRW"),
    Field("290", "session", T, False, "장구분 1 장전 시간외 2 장중 3 장후 시간외"),
    Field("691", "ko_access", F, False, "K.O 접근도"),
    Field("567", "upper_limit_time", T, False, "상한가발생시간 HHMMSS"),
    Field("568", "lower_limit_time", T, False, "하한가발생시간 HHMMSS"),
    Field("851", "prev_same_time_volume_ratio", F, False, "전일 동시간 거래량 비율"),
    Field("1890", "open_time", T, False, "시가시간 HHMMSS"),
    Field("1891", "high_time", T, False, "고가시간 (odd values seen; kept as sent)"),
    Field("1892", "low_time", T, False, "저가시간 HHMMSS"),
    Field("1030", "sell_volume", INT, False, "매도체결량 shares, cumulative"),
    Field("1031", "buy_volume", INT, False, "매수체결량 shares, cumulative"),
    Field("1032", "buy_ratio", F, False, "매수비율 %, signed"),
    Field("1071", "sell_count", INT, False, "매도체결건수"),
    Field("1072", "buy_count", INT, False, "매수체결건수"),
    Field("1313", "tick_value", INT, False, "순간거래대금 thousand KRW, signed like 15"),
    Field("1315", "tick_sell_volume", INT, False, "매도체결량_단건 shares"),
    Field("1316", "tick_buy_volume", INT, False, "매수체결량_단건 shares"),
    Field("1314", "tick_net_volume", INT, False, "순매수체결량 shares, signed"),
    Field("1497", "cfd_margin", INT, False, "CFD증거금 KRW"),
    Field("1498", "maintenance_margin", INT, False, "유지증거금 KRW"),
    Field("620", "avg_price", F, False, "당일거래평균가 KRW"),
    Field("732", "cfd_cost", INT, False, "CFD거래비용 (unit unknown)"),
    Field("852", "short_cost", INT, False, "대주거래비용 (unit unknown)"),
    Field("9081", "exchange", T, False, "거래소구분 as sent (KRX, NXT, 1, 2, ...)"),
)


def _levels(first: int, column: str, kind: Kind, doc: str, required_first: bool = False) -> list[Field]:
    return [
        Field(str(first + i), f"{column}_{i + 1}", kind, required_first and i == 0, f"{doc}{i + 1}")
        for i in range(10)
    ]


# §4.5. 41 is the best ask, 51 the best bid.
_ORDERBOOK_FIELDS: tuple[Field, ...] = (
    Field("21", "ts", Kind.TIME, True, "호가시간 HHMMSS KST"),
    *_levels(41, "ask_px", P, "매도호가", True),
    *_levels(61, "ask_qty", INT, "매도호가수량", True),
    *_levels(51, "bid_px", P, "매수호가", True),
    *_levels(71, "bid_qty", INT, "매수호가수량", True),
    *_levels(81, "ask_qty_change", INT, "매도호가직전대비"),
    *_levels(91, "bid_qty_change", INT, "매수호가직전대비"),
    Field("121", "total_ask_qty", INT, False, "매도호가총잔량"),
    Field("122", "total_ask_qty_change", INT, False, "매도호가총잔량직전대비"),
    Field("125", "total_bid_qty", INT, False, "매수호가총잔량"),
    Field("126", "total_bid_qty_change", INT, False, "매수호가총잔량직전대비"),
    Field("23", "expected_px", P, False, "예상체결가 KRW"),
    Field("24", "expected_qty", INT, False, "예상체결수량"),
    Field("128", "net_bid_qty", INT, False, "순매수잔량"),
    Field("129", "bid_ratio", F, False, "매수비율 %"),
    Field("138", "net_ask_qty", INT, False, "순매도잔량"),
    Field("139", "ask_ratio", F, False, "매도비율 %"),
    Field("200", "expected_change", INT, False, "예상체결가전일종가대비 KRW"),
    Field("201", "expected_change_pct", F, False, "예상체결가전일종가대비등락율 %"),
    Field("238", "expected_change_sign", INT, False, "예상체결가전일종가대비기호"),
    Field("291", "auction_px", P, False, "예상체결가 (auction only) KRW"),
    Field("292", "auction_qty", INT, False, "예상체결량"),
    Field("293", "auction_change_sign", INT, False, "예상체결가전일대비기호"),
    Field("294", "auction_change", INT, False, "예상체결가전일대비 KRW"),
    Field("295", "auction_change_pct", F, False, "예상체결가전일대비등락율 %"),
    *_levels(621, "lp_ask_qty", INT, "LP매도호가수량"),
    *_levels(631, "lp_bid_qty", INT, "LP매수호가수량"),
    Field("13", "cum_volume", INT, False, "누적거래량"),
    Field("299", "expected_volume_pct", F, False, "전일거래량대비예상체결율 %"),
    Field("215", "market_phase", T, False, "장운영구분"),
    Field("216", "investor_ticker", T, False, "투자자별ticker"),
    *_levels(6044, "krx_ask_qty", INT, "KRX 매도호가잔량"),
    *_levels(6054, "krx_bid_qty", INT, "KRX 매수호가잔량"),
    Field("6064", "krx_total_ask_qty", INT, False, "KRX 매도호가총잔량"),
    Field("6065", "krx_total_bid_qty", INT, False, "KRX 매수호가총잔량"),
    *_levels(6066, "nxt_ask_qty", INT, "NXT 매도호가잔량"),
    *_levels(6076, "nxt_bid_qty", INT, "NXT 매수호가잔량"),
    Field("6086", "nxt_total_ask_qty", INT, False, "NXT 매도호가총잔량"),
    Field("6087", "nxt_total_bid_qty", INT, False, "NXT 매수호가총잔량"),
    Field("6100", "krx_mid_ask_total_change", INT, False, "KRX 중간가 매도총잔량증감"),
    Field("6101", "krx_mid_ask_total", INT, False, "KRX 중간가 매도총잔량"),
    Field("6102", "krx_mid_px", F, False, "KRX 중간가"),
    Field("6103", "krx_mid_bid_total", INT, False, "KRX 중간가 매수총잔량"),
    Field("6104", "krx_mid_bid_total_change", INT, False, "KRX 중간가 매수총잔량증감"),
    Field("6105", "nxt_mid_ask_total_change", INT, False, "NXT 중간가 매도총잔량증감"),
    Field("6106", "nxt_mid_ask_total", INT, False, "NXT 중간가 매도총잔량"),
    Field("6107", "nxt_mid_px", F, False, "NXT 중간가"),
    Field("6108", "nxt_mid_bid_total", INT, False, "NXT 중간가 매수총잔량"),
    Field("6109", "nxt_mid_bid_total_change", INT, False, "NXT 중간가 매수총잔량증감"),
    Field("6110", "krx_mid_change", F, False, "KRX 중간가 대비"),
    Field("6111", "krx_mid_change_sign", INT, False, "KRX 중간가 대비기호"),
    Field("6112", "krx_mid_change_pct", F, False, "KRX 중간가 등락율 %"),
    Field("6113", "nxt_mid_change", F, False, "NXT 중간가 대비"),
    Field("6114", "nxt_mid_change_sign", INT, False, "NXT 중간가 대비기호"),
    Field("6115", "nxt_mid_change_pct", F, False, "NXT 중간가 등락율 %"),
)

TRADES = RealType("0B", "주식체결", "trades", _TRADE_FIELDS)
ORDERBOOK = RealType("0D", "주식호가잔량", "orderbook", _ORDERBOOK_FIELDS)

REAL_TYPES: dict[str, RealType] = {TRADES.code: TRADES, ORDERBOOK.code: ORDERBOOK}
TABLE_TYPES: dict[str, RealType] = {rt.table: rt for rt in REAL_TYPES.values()}

#: The stored tables: one per real-time type, then the recorder's own event tables.
MARKET_TABLES: tuple[str, ...] = tuple(TABLE_TYPES)
EVENT_TABLES: tuple[str, ...] = ("gaps", "rejects", "backfill")
TABLES: tuple[str, ...] = MARKET_TABLES + EVENT_TABLES


#: Where a trade row came from: ``'ws'`` (the WebSocket stream, every decoded row) or
#: ``'rest'`` (healed from the REST tick chart by a backfill). The last column of ``trades``.
SOURCE = "source"
LIVE_SOURCE, REST_SOURCE = "ws", "rest"


def columns(rt: RealType) -> tuple[str, ...]:
    """The row layout the decoder produces for ``rt``, which is also the stored column order.

    Base columns first, then the FIDs grouped by kind (prices, volume and side, integers,
    rates, text), each group in the spec's order. FID 15 of 0B yields ``volume`` and ``side``;
    trades end with :data:`SOURCE`.
    """
    cols: list[str] = list(BASE_COLUMNS)
    for kind in (Kind.PRICE, Kind.SIDE_VOLUME, Kind.INT, Kind.FLOAT, Kind.TEXT):
        for f in rt.fields:
            if f.kind is kind:
                cols.append(f.column)
                if kind is Kind.SIDE_VOLUME:
                    cols.append("side")
    if rt.table == "trades":
        cols.append(SOURCE)
    return tuple(cols)


def _check_tables() -> None:
    for rt in REAL_TYPES.values():
        fids = [f.fid for f in rt.fields]
        cols = columns(rt)
        assert len(set(fids)) == len(fids), f"duplicate FID in {rt.code}"
        assert len(set(cols)) == len(cols), f"duplicate column in {rt.code}"


_check_tables()
