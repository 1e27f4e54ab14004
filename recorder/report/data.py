"""One trading date of a store, aggregated for the report.

Every number comes from one DuckDB query through :meth:`recorder.Store.sql`, grouped by
minute (or symbol, reason, kind) in SQL, so a day of thousands of symbols and millions of
rows reaches Python as a few thousand values.

Minutes are KST minutes of the day (0 = 00:00, 540 = 09:00). KST is UTC+9 all year (Korea
keeps no daylight saving time), so the minute is plain arithmetic on the epoch.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from recorder import Store
from recorder.errors import ConfigError

#: KST minute of the day of a timestamp column (UTC+9, no daylight saving time).
_MINUTE = "CAST((epoch_ms({col}) // 60000 + 540) % 1440 AS INTEGER)"
#: The two recorded tables and their Kiwoom real-time types.
ENTRY_TABLES = {"trades": "0B", "orderbook": "0D"}
#: The heatmap shows at most this many symbols (the most active ones).
HEATMAP_SYMBOLS = 60
#: The bar charts show at most this many bars.
TOP_BARS = 20


@dataclass(slots=True)
class Headline:
    """The numbers at the top of the page."""

    rows: dict[str, int]  # table → rows on the date
    symbols: int  # distinct codes in trades or orderbook
    gaps: int  # gap rows other than continuity breaks
    gap_seconds: float  # their total length (open-ended gaps count to the last row of the day)
    rejects: int
    continuity_breaks: int
    first_minute: int | None
    last_minute: int | None


@dataclass(slots=True)
class ReportData:
    """Everything one page shows, as small Python lists (one dict per result row)."""

    date: dt.date
    headline: Headline
    coverage: list[dict[str, Any]]  # symbol, m, n: rows per minute of the heatmap's symbols
    coverage_ranked: list[str]  # heatmap symbols, most active first
    active: list[dict[str, Any]]  # m, symbols: distinct symbols with a row in the minute (all symbols)
    gaps: list[dict[str, Any]]  # kind, start_m, end_m (fractional minutes), symbols
    entries: list[dict[str, Any]]  # type, venue, m, n
    latency: list[dict[str, Any]]  # venue, m, p50, p90, p99 (ms)
    rejects: list[dict[str, Any]]  # reason, n
    top_value: list[dict[str, Any]]  # symbol, venue, value (KRW)
    notes: list[str] = field(default_factory=list)


def load(store: Store, date: dt.date) -> ReportData:
    """Aggregate ``date`` of ``store``.

    Raises:
        ConfigError: nothing at all (no row in any table) is recorded on ``date``.
        queries.QueryError, StoreError: the store could not be read.
    """
    p = {"d": date.isoformat()}
    rows = _rows_per_table(store, p)
    if not any(rows.values()):
        raise ConfigError(f"nothing recorded on {date} in {store.data_dir}")
    span = _one(store, _SPAN, p)
    gaps = _q(store, _GAPS, p)
    last = span["last_ms"]
    headline = Headline(
        rows=rows,
        symbols=int(_one(store, _SYMBOLS, p)["n"]),
        gaps=sum(1 for g in gaps if g["kind"] != "continuity"),
        gap_seconds=sum(_gap_seconds(g, last) for g in gaps if g["kind"] != "continuity"),
        rejects=rows["rejects"],
        continuity_breaks=sum(1 for g in gaps if g["kind"] == "continuity"),
        first_minute=span["first_m"],
        last_minute=span["last_m"],
    )
    ranked = [r["symbol"] for r in _q(store, _RANKED, {**p, "n": HEATMAP_SYMBOLS})]
    data = ReportData(
        date=date,
        headline=headline,
        coverage=_q(store, _COVERAGE, {**p, "n": HEATMAP_SYMBOLS}),
        coverage_ranked=ranked,
        active=_q(store, _ACTIVE, p),
        gaps=[_gap_minutes(g, last) for g in gaps],
        entries=_q(store, _ENTRIES, p),
        latency=_q(store, _LATENCY, p),
        rejects=_q(store, _REJECTS, {**p, "n": TOP_BARS}),
        top_value=_q(store, _TOP_VALUE, {**p, "n": TOP_BARS}),
    )
    if headline.symbols > len(ranked):
        data.notes.append(
            f"The coverage heatmap shows the {len(ranked)} most active of {headline.symbols} symbols; "
            "the line above it counts every symbol."
        )
    return data


# --------------------------------------------------------------------------- queries

_ALL_ROWS = """
    SELECT symbol, venue, ts FROM trades WHERE date = $d
    UNION ALL SELECT symbol, venue, ts FROM orderbook WHERE date = $d
"""

_SPAN = f"""
    SELECT min({_MINUTE.format(col="ts")}) AS first_m, max({_MINUTE.format(col="ts")}) AS last_m,
           max(epoch_ms(ts)) AS last_ms
    FROM ({_ALL_ROWS})
"""

_SYMBOLS = f"SELECT count(DISTINCT symbol) AS n FROM ({_ALL_ROWS})"

_RANKED = f"SELECT symbol, count(*) AS n FROM ({_ALL_ROWS}) GROUP BY symbol ORDER BY n DESC, symbol LIMIT $n"

_COVERAGE = f"""
    WITH r AS ({_ALL_ROWS}),
         top AS (SELECT symbol FROM r GROUP BY symbol ORDER BY count(*) DESC, symbol LIMIT $n)
    SELECT symbol, {_MINUTE.format(col="ts")} AS m, count(*) AS n
    FROM r WHERE symbol IN (SELECT symbol FROM top) GROUP BY ALL ORDER BY ALL
"""

_ACTIVE = f"""
    SELECT {_MINUTE.format(col="ts")} AS m, count(DISTINCT symbol) AS symbols
    FROM ({_ALL_ROWS}) GROUP BY m ORDER BY m
"""

_GAPS = """
    SELECT kind, epoch_ms(start_ts) AS start_ms, epoch_ms(end_ts) AS end_ms, len(symbols) AS symbols
    FROM gaps WHERE date = $d ORDER BY start_ts
"""

_ENTRIES = (
    " UNION ALL ".join(
        f"""SELECT '{code}' AS type, venue, {_MINUTE.format(col="ts")} AS m, count(*) AS n
        FROM {table} WHERE date = $d GROUP BY ALL"""
        for table, code in ENTRY_TABLES.items()
    )
    + " ORDER BY type, venue, m"
)

_LATENCY = f"""
    WITH l AS (
        SELECT venue, ts, epoch_us(recv_ts) / 1000.0 - epoch_us(ts) / 1000.0 AS ms FROM trades WHERE date = $d
        UNION ALL
        SELECT venue, ts, epoch_us(recv_ts) / 1000.0 - epoch_us(ts) / 1000.0 FROM orderbook WHERE date = $d
    )
    SELECT venue, {_MINUTE.format(col="ts")} AS m,
           quantile_cont(ms, 0.5) AS p50, quantile_cont(ms, 0.9) AS p90, quantile_cont(ms, 0.99) AS p99
    FROM l GROUP BY ALL ORDER BY venue, m
"""

_REJECTS = """
    SELECT reason, count(*) AS n FROM rejects WHERE date = $d GROUP BY reason ORDER BY n DESC, reason LIMIT $n
"""

_TOP_VALUE = """
    WITH v AS (SELECT symbol, venue, sum(CAST(price AS HUGEINT) * volume) AS value
               FROM trades WHERE date = $d GROUP BY ALL),
         top AS (SELECT symbol FROM v GROUP BY symbol ORDER BY sum(value) DESC, symbol LIMIT $n)
    SELECT symbol, venue, CAST(value AS DOUBLE) AS value FROM v WHERE symbol IN (SELECT symbol FROM top)
    ORDER BY symbol, venue
"""


def _rows_per_table(store: Store, p: dict[str, Any]) -> dict[str, int]:
    tables = ("trades", "orderbook", "gaps", "rejects")
    sql = " UNION ALL ".join(f"SELECT '{t}' AS t, count(*) AS n FROM {t} WHERE date = $d" for t in tables)
    return {r["t"]: int(r["n"]) for r in _q(store, sql, p)}


def _q(store: Store, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    used = {k: v for k, v in params.items() if f"${k}" in sql}
    return store.sql(sql, used).to_pylist()  # type: ignore[no-any-return]


def _one(store: Store, sql: str, params: dict[str, Any]) -> dict[str, Any]:
    return _q(store, sql, params)[0]


def _gap_seconds(gap: dict[str, Any], last_ms: int | None) -> float:
    end = gap["end_ms"] if gap["end_ms"] is not None else max(last_ms or 0, gap["start_ms"])
    return max(0.0, (end - gap["start_ms"]) / 1000)


def _gap_minutes(gap: dict[str, Any], last_ms: int | None) -> dict[str, Any]:
    """A gap as fractional KST minutes of the day; an open one (no end) runs to the last row."""
    start = _minute_of_day(gap["start_ms"])
    length = _gap_seconds(gap, last_ms) / 60
    return {
        "kind": gap["kind"],
        "start_m": start,
        "end_m": start + length,
        "open": gap["end_ms"] is None,
        "symbols": gap["symbols"] or 0,
    }


def _minute_of_day(epoch_ms: int) -> float:
    return ((epoch_ms / 60000) + 540) % 1440
