-- coverage: Per symbol and KST day: rows recorded, first and last times, gaps and cumulative-volume breaks.
-- params: start date, end date, symbol varchar = NULL, venue varchar = NULL
--
-- start, end   KST trading dates, both inclusive (they prune date= folders).
-- symbol       6-character code, or an item (005930_NX: that code on NXT), or NULL for every
--              symbol.
-- venue        KRX, NXT or SOR, or NULL for every venue.
--
-- One row per (date, symbol) that has trades, order books, or a gaps row naming it.
-- Columns:
--   date, symbol
--   trades, orderbook   rows in each table (every venue, or the one asked for).
--   first_ts, last_ts   earliest and latest exchange time over both tables (NULL if none).
--   gaps          gaps rows that apply to the symbol that day. A row whose `symbols` list is
--                 empty (or NULL) applies to every symbol; otherwise to the items it lists,
--                 matched on their 6-character code ("005930_NX" applies to 005930). A
--                 row listing both 005930 and 005930_NX counts once. With a venue, only
--                 the items of that venue count (item_venue, defined by queries.connect). Every kind counts
--                 (disconnect, reg_rejected, continuity, restart, ...).
--   gap_seconds   sum of end_ts - start_ts over those rows; a row without end_ts (still
--                 open when written) counts in gaps but adds no seconds.
--   healed_gap_seconds, unhealed_gap_seconds  gap_seconds split by the gap's backfill
--                 outcome: 'healed' (every trade missing in it was fetched from the tick
--                 chart, `recorder backfill`) or not (never backfilled, partial, unhealable).
--                 Healing concerns trades only: order books have no REST history, so the
--                 order book stays missing for the whole of gap_seconds.
--   cum_volume_breaks  trades whose cum_volume is not the previous trade's cum_volume plus
--                 their own volume, per (date, symbol, venue) in (ts, seq) order (the continuity
--                 invariant: each break means trades were missed). Not counted:
--                 the first trade of each (date, symbol, venue), and the first trade after
--                 a gap that covers it (a gaps row of any kind but 'continuity' that applies
--                 to the symbol and overlaps the time from the previous trade to this one;
--                 the count legitimately jumps over a disconnect). 'continuity' rows are
--                 the recorder's own record of such breaks, so they excuse nothing.
WITH trade_rows AS (
    SELECT
        date,
        symbol,
        venue,
        ts,
        volume,
        cum_volume,
        lag(cum_volume) OVER w AS prev_cum,
        lag(ts) OVER w AS prev_ts
    FROM trades
    WHERE date BETWEEN $start::DATE AND $end::DATE
        AND ($symbol::VARCHAR IS NULL OR symbol = $symbol::VARCHAR)
        AND ($venue::VARCHAR IS NULL OR venue = $venue::VARCHAR)
    WINDOW w AS (PARTITION BY date, symbol, venue ORDER BY ts, seq)
),
book_rows AS (
    SELECT date, symbol, count(*) AS orderbook, min(ts) AS first_ts, max(ts) AS last_ts
    FROM orderbook
    WHERE date BETWEEN $start::DATE AND $end::DATE
        AND ($symbol::VARCHAR IS NULL OR symbol = $symbol::VARCHAR)
        AND ($venue::VARCHAR IS NULL OR venue = $venue::VARCHAR)
    GROUP BY ALL
),
gap_items AS (
    -- each gaps row once per distinct 6-character code it names; symbol NULL = all symbols
    SELECT
        date,
        start_ts,
        end_ts,
        kind,
        outcome,
        unnest(
            CASE
                WHEN len(coalesce(symbols, [])) = 0 THEN [NULL::VARCHAR]
                ELSE list_distinct(list_transform(
                    list_filter(symbols, lambda s: $venue::VARCHAR IS NULL OR item_venue(s) = $venue::VARCHAR),
                    lambda s: left(s, 6)
                ))
            END
        ) AS symbol
    FROM gaps
    WHERE date BETWEEN $start::DATE AND $end::DATE
),
gap_rows AS (
    SELECT * FROM gap_items
    WHERE symbol IS NULL OR $symbol::VARCHAR IS NULL OR symbol = $symbol::VARCHAR
),
trade_stats AS (
    SELECT date, symbol, count(*) AS trades, min(ts) AS first_ts, max(ts) AS last_ts
    FROM trade_rows
    GROUP BY ALL
),
breaks AS (
    SELECT t.date, t.symbol, count(*) AS cum_volume_breaks
    FROM trade_rows AS t
    WHERE t.prev_cum IS NOT NULL
        AND t.cum_volume <> t.prev_cum + t.volume
        AND NOT EXISTS (
            SELECT 1
            FROM gap_rows AS g
            WHERE g.date = t.date
                AND (g.symbol IS NULL OR g.symbol = t.symbol)
                AND g.kind <> 'continuity'
                AND g.start_ts <= t.ts
                AND (g.end_ts IS NULL OR g.end_ts >= t.prev_ts)
        )
    GROUP BY ALL
),
days AS (
    SELECT date, symbol FROM trade_stats
    UNION
    SELECT date, symbol FROM book_rows
    UNION
    SELECT date, symbol FROM gap_rows WHERE symbol IS NOT NULL
),
gap_stats AS (
    SELECT
        d.date,
        d.symbol,
        count(*) AS gaps,
        sum(epoch_us(g.end_ts) - epoch_us(g.start_ts)) / 1e6 AS gap_seconds,
        sum(CASE WHEN g.outcome = 'healed' THEN epoch_us(g.end_ts) - epoch_us(g.start_ts) ELSE 0 END)
            / 1e6 AS healed_gap_seconds
    FROM days AS d
    JOIN gap_rows AS g ON g.date = d.date AND (g.symbol IS NULL OR g.symbol = d.symbol)
    GROUP BY ALL
)
SELECT
    d.date,
    d.symbol,
    coalesce(t.trades, 0) AS trades,
    coalesce(o.orderbook, 0) AS orderbook,
    least(t.first_ts, o.first_ts) AS first_ts,        -- least/greatest skip NULLs
    greatest(t.last_ts, o.last_ts) AS last_ts,
    coalesce(s.gaps, 0) AS gaps,
    coalesce(s.gap_seconds, 0.0) AS gap_seconds,
    coalesce(s.healed_gap_seconds, 0.0) AS healed_gap_seconds,
    coalesce(s.gap_seconds, 0.0) - coalesce(s.healed_gap_seconds, 0.0) AS unhealed_gap_seconds,
    coalesce(b.cum_volume_breaks, 0) AS cum_volume_breaks
FROM days AS d
LEFT JOIN trade_stats AS t ON t.date = d.date AND t.symbol = d.symbol
LEFT JOIN book_rows AS o ON o.date = d.date AND o.symbol = d.symbol
LEFT JOIN gap_stats AS s ON s.date = d.date AND s.symbol = d.symbol
LEFT JOIN breaks AS b ON b.date = d.date AND b.symbol = d.symbol
ORDER BY d.date, d.symbol
