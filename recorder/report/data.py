"""One trading date of a store, aggregated for the report.

Every number comes from one DuckDB query through :meth:`recorder.Store.sql`, grouped by
minute (or symbol, reason, kind) in SQL, so a day of thousands of symbols and millions of
rows reaches Python as a few thousand values.

Minutes are KST minutes of the day (0 = 00:00, 540 = 09:00). KST is UTC+9 all year (Korea
keeps no daylight saving time), so the minute is plain arithmetic on the epoch.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
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
    healed_gap_seconds: float  # of which every missing trade was backfilled (books stay missing)
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
    """Aggregate ``date`` of ``store``: one scan of its trades and order books, one query
    each for its gaps and rejects.

    Raises:
        ConfigError: nothing at all (no row in any table) is recorded on ``date``.
        queries.QueryError, StoreError: the store could not be read.
    """
    p = {"d": date.isoformat(), "n": HEATMAP_SYMBOLS, "bars": TOP_BARS}
    parts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in _q(store, _DAY, p):
        parts[r.pop("part")].append(r)
    gaps = _q(store, _GAPS, p)
    rejects = _q(store, _REJECTS, p)
    counts = {r["a"]: int(r["x"]) for r in parts["rows"]}
    rows = {
        "trades": counts.get("0B", 0),
        "orderbook": counts.get("0D", 0),
        "gaps": len(gaps),
        "rejects": sum(int(r["n"]) for r in rejects),
    }
    if not any(rows.values()):
        raise ConfigError(f"nothing recorded on {date} in {store.data_dir}")
    # The span row always exists (an aggregate without GROUP BY); its values are NULL on a
    # day with gaps or rejects only.
    span: dict[str, Any] = parts["span"][0]
    last = int(span["y"]) if span["y"] is not None else None
    headline = Headline(
        rows=rows,
        symbols=int(span["x"] or 0),
        gaps=sum(1 for g in gaps if g["kind"] != "continuity"),
        gap_seconds=sum(_gap_seconds(g, last) for g in gaps if g["kind"] != "continuity"),
        healed_gap_seconds=sum(
            _gap_seconds(g, last) for g in gaps if g["kind"] != "continuity" and g["outcome"] == "healed"
        ),
        rejects=rows["rejects"],
        continuity_breaks=sum(1 for g in gaps if g["kind"] == "continuity"),
        first_minute=span["m"],
        last_minute=int(span["z"]) if span["z"] is not None else None,
    )
    ranked = [r["a"] for r in sorted(parts["ranked"], key=lambda r: r["m"])]
    data = ReportData(
        date=date,
        headline=headline,
        coverage=[{"symbol": r["a"], "m": r["m"], "n": int(r["x"])} for r in parts["coverage"]],
        coverage_ranked=ranked,
        active=[{"m": r["m"], "symbols": int(r["x"])} for r in parts["active"]],
        gaps=[_gap_minutes(g, last) for g in gaps],
        entries=[{"type": r["a"], "venue": r["b"], "m": r["m"], "n": int(r["x"])} for r in parts["entries"]],
        latency=[
            {"venue": r["b"], "m": r["m"], "p50": r["x"], "p90": r["y"], "p99": r["z"]}
            for r in parts["latency"]
        ],
        rejects=rejects[:TOP_BARS],
        top_value=[{"symbol": r["a"], "venue": r["b"], "value": r["x"]} for r in parts["top_value"]],
    )
    if headline.symbols > len(ranked):
        data.notes.append(
            f"The coverage heatmap shows the {len(ranked)} most active of {headline.symbols} symbols; "
            "the line above it counts every symbol."
        )
    return data


# --------------------------------------------------------------------------- queries

# Every part file of the day is read once: ``raw`` holds the few columns the page needs and
# ``g`` the counts per (symbol, venue, type, minute); each part of the page is a small
# aggregate of one of them, returned together as one long table
# (part, a, b, m, x, y, z), sorted by part, a, b, m.
_M = _MINUTE.format(col="ts")
_LAT = "epoch_us(recv_ts) / 1000.0 - epoch_us(ts) / 1000.0"
_DAY = f"""
WITH raw AS MATERIALIZED (
    SELECT symbol, venue, '0B' AS type, {_M} AS m, {_LAT} AS ms, epoch_ms(ts) AS t,
           CAST(price AS DOUBLE) * volume AS value
    FROM trades WHERE date = $d
    UNION ALL
    SELECT symbol, venue, '0D', {_M}, {_LAT}, epoch_ms(ts), NULL FROM orderbook WHERE date = $d
),
g AS MATERIALIZED (
    SELECT symbol, venue, type, m, count(*) AS n, sum(value) AS value FROM raw GROUP BY ALL
),
sym AS MATERIALIZED (
    SELECT symbol, sum(n) AS n, row_number() OVER (ORDER BY sum(n) DESC, symbol) AS rank
    FROM g GROUP BY symbol
),
val AS (
    SELECT symbol, venue, sum(value) AS value FROM g WHERE type = '0B' GROUP BY ALL
),
top_val AS (
    SELECT symbol FROM val GROUP BY symbol ORDER BY sum(value) DESC, symbol LIMIT $bars
)
SELECT 'rows' AS part, type AS a, NULL AS b, NULL AS m, sum(n)::DOUBLE AS x, NULL AS y, NULL AS z
    FROM g GROUP BY type
UNION ALL SELECT 'span', NULL, NULL, min(m), count(DISTINCT symbol), max(t), max(m) FROM raw
UNION ALL SELECT 'ranked', symbol, NULL, rank::INTEGER, n, NULL, NULL FROM sym WHERE rank <= $n
UNION ALL SELECT 'coverage', symbol, NULL, m, sum(n), NULL, NULL
    FROM g WHERE symbol IN (SELECT symbol FROM sym WHERE rank <= $n) GROUP BY symbol, m
UNION ALL SELECT 'active', NULL, NULL, m, count(DISTINCT symbol), NULL, NULL FROM g GROUP BY m
UNION ALL SELECT 'entries', type, venue, m, sum(n), NULL, NULL FROM g GROUP BY type, venue, m
UNION ALL SELECT 'latency', NULL, venue, m,
    quantile_cont(ms, 0.5), quantile_cont(ms, 0.9), quantile_cont(ms, 0.99) FROM raw GROUP BY venue, m
UNION ALL SELECT 'top_value', symbol, venue, NULL, value, NULL, NULL
    FROM val WHERE symbol IN (SELECT symbol FROM top_val)
ORDER BY part, a, b, m
"""

_GAPS = """
    SELECT kind, epoch_ms(start_ts) AS start_ms, epoch_ms(end_ts) AS end_ms, len(symbols) AS symbols,
        outcome
    FROM gaps WHERE date = $d ORDER BY start_ts
"""

_REJECTS = """
    SELECT reason, count(*) AS n FROM rejects WHERE date = $d GROUP BY reason ORDER BY n DESC, reason
"""


def _q(store: Store, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    used = {k: v for k, v in params.items() if f"${k}" in sql}
    return store.sql(sql, used).to_pylist()  # type: ignore[no-any-return]


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
