-- vwap: Volume-weighted average price per symbol, venue and KST trading day, from trades.
-- params: start date, end date, symbol varchar = NULL, venue varchar = NULL
--
-- start, end   KST trading dates, both inclusive (they prune date= folders).
-- symbol       6-character code, or NULL for every symbol (prunes symbol= folders).
-- venue        KRX, NXT or SOR, or NULL for every venue.
--
-- One row per (date, symbol, venue) with trades. Columns:
--   date       KST trading date.
--   symbol, venue
--   vwap       value / volume (DOUBLE), KRW per share, over the recorded trades only.
--   volume     shares traded (sum of volume).
--   value      KRW traded, sum(price * volume), exact.
--   trades     number of trades.
--   first_ts, last_ts  exchange times of the first and last recorded trade.
SELECT
    date,
    symbol,
    venue,
    CAST(sum(price * volume) AS DOUBLE) / nullif(sum(volume), 0) AS vwap,
    CAST(sum(volume) AS BIGINT) AS volume,       -- BIGINT, not DuckDB's HUGEINT sum: exact here
    CAST(sum(price * volume) AS BIGINT) AS value,
    count(*) AS trades,
    min(ts) AS first_ts,
    max(ts) AS last_ts
FROM trades
WHERE date BETWEEN $start::DATE AND $end::DATE
    AND ($symbol::VARCHAR IS NULL OR symbol = $symbol::VARCHAR)
    AND ($venue::VARCHAR IS NULL OR venue = $venue::VARCHAR)
GROUP BY ALL
ORDER BY date, symbol, venue
