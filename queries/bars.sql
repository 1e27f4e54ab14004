-- bars: OHLCV bars per time bucket for each symbol and venue, from trades.
-- params: start date, end date, symbol varchar = NULL, venue varchar = NULL, interval interval = '1 minute'
--
-- start, end   KST trading dates, both inclusive (they prune date= folders).
-- symbol       6-character code, or NULL for every symbol (prunes symbol= folders).
-- venue        KRX, NXT or SOR, or NULL for every venue.
-- interval     bucket width, any DuckDB interval: '1 minute', '5 minutes', '1 hour', '1 day'.
--
-- One row per (bucket, symbol, venue) that has at least one trade; buckets without trades
-- are absent (no forward fill). Columns:
--   bucket   start of the bucket (TIMESTAMPTZ). Buckets are aligned in KST
--            (time_bucket(..., 'Asia/Seoul')): minute bars start on whole minutes, '1 day'
--            bars at midnight KST.
--   symbol, venue
--   open     price of the first trade in the bucket, ordered by (ts, seq). ts has one-second
--            resolution, so seq (journal frame << 16 | entry position) breaks ties in the
--            order the trades arrived.
--   high, low  highest and lowest trade price.
--   close    price of the last trade by (ts, seq).
--   volume   shares traded (sum of volume).
--   value    KRW traded, sum(price * volume); exact (not Kiwoom's cum_value, which is in
--            million KRW and includes auctions).
--   vwap     value / volume (DOUBLE).
--   trades   number of trades.
SELECT
    time_bucket($interval::INTERVAL, ts, 'Asia/Seoul') AS bucket,
    symbol,
    venue,
    arg_min(price, (ts, seq)) AS open,
    max(price) AS high,
    min(price) AS low,
    arg_max(price, (ts, seq)) AS close,
    -- sums of BIGINT are HUGEINT in DuckDB (decimal128 in Arrow); a day's KRW value of one
    -- stream is far below 2^63, so BIGINT is exact and friendlier to every reader.
    CAST(sum(volume) AS BIGINT) AS volume,
    CAST(sum(price * volume) AS BIGINT) AS value,
    CAST(sum(price * volume) AS DOUBLE) / nullif(sum(volume), 0) AS vwap,
    count(*) AS trades
FROM trades
WHERE date BETWEEN $start::DATE AND $end::DATE
    AND ($symbol::VARCHAR IS NULL OR symbol = $symbol::VARCHAR)
    AND ($venue::VARCHAR IS NULL OR venue = $venue::VARCHAR)
GROUP BY ALL
ORDER BY bucket, symbol, venue
