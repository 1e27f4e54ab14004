-- imbalance: Time-weighted order-book imbalance per time bucket, at the top and over 10 levels, from orderbook.
-- params: start date, end date, symbol varchar = NULL, venue varchar = NULL, interval interval = '1 minute'
--
-- Parameters as in bars: start/end KST dates (inclusive), symbol and venue (NULL = all),
-- interval the bucket width.
--
-- Imbalance is (bid - ask) / (bid + ask) of resting quantity: +1 all bids, -1 all asks.
-- Time weighting is the one of spread.sql: each snapshot weighs the seconds until the next
-- snapshot of the same symbol and venue, capped at the end of its own bucket; the day's last
-- snapshot stands until its bucket ends. One-sided or empty books (ask_px_1 = 0 or
-- bid_px_1 = 0) are left out, as in spread, but still end the previous snapshot's interval.
--
-- One row per (bucket, symbol, venue) with at least one two-sided snapshot. Columns:
--   bucket         start of the bucket (TIMESTAMPTZ, aligned in KST).
--   symbol, venue
--   imbalance_1    time-weighted (bid_qty_1 - ask_qty_1) / (bid_qty_1 + ask_qty_1).
--   imbalance_10   time-weighted (total_bid_qty - total_ask_qty) / (total_bid_qty + total_ask_qty):
--                  FIDs 125 and 121, the totals over the 10 levels Kiwoom sends; when a total
--                  is missing, the sum of the 10 level quantities stands in for it.
--   bid_qty_10, ask_qty_10   time-weighted totals over 10 levels (shares).
--   snapshots      two-sided snapshots in the bucket (zero-weight ones included).
--   seconds        total weight (seconds covered by a two-sided book).
--   A snapshot whose denominator is 0 has no imbalance: it is left out of that mean
--   (numerator and weights alike). The means are NULL when no weight remains.
WITH books AS (
    SELECT
        ts,
        symbol,
        venue,
        ask_px_1,
        bid_px_1,
        ask_qty_1,
        bid_qty_1,
        coalesce(total_bid_qty, bid_qty_1 + bid_qty_2 + bid_qty_3 + bid_qty_4 + bid_qty_5
            + bid_qty_6 + bid_qty_7 + bid_qty_8 + bid_qty_9 + bid_qty_10) AS bid_10,
        coalesce(total_ask_qty, ask_qty_1 + ask_qty_2 + ask_qty_3 + ask_qty_4 + ask_qty_5
            + ask_qty_6 + ask_qty_7 + ask_qty_8 + ask_qty_9 + ask_qty_10) AS ask_10,
        time_bucket($interval::INTERVAL, ts, 'Asia/Seoul') AS bucket,
        lead(ts) OVER (PARTITION BY date, symbol, venue ORDER BY ts, seq) AS next_ts
    FROM orderbook
    WHERE date BETWEEN $start::DATE AND $end::DATE
        AND ($symbol::VARCHAR IS NULL OR symbol = $symbol::VARCHAR)
        AND ($venue::VARCHAR IS NULL OR venue = $venue::VARCHAR)
),
weighted AS (
    SELECT
        *,
        (bid_qty_1 - ask_qty_1) / nullif(bid_qty_1 + ask_qty_1, 0) AS imb_1,
        (bid_10 - ask_10) / nullif(bid_10 + ask_10, 0) AS imb_10,
        book_seconds(ts, next_ts, bucket, $interval::INTERVAL) AS w  -- see queries.connect
    FROM books
    WHERE ask_px_1 > 0 AND bid_px_1 > 0
)
SELECT
    bucket,
    symbol,
    venue,
    sum(w * imb_1) / nullif(sum(w) FILTER (WHERE imb_1 IS NOT NULL), 0) AS imbalance_1,
    sum(w * imb_10) / nullif(sum(w) FILTER (WHERE imb_10 IS NOT NULL), 0) AS imbalance_10,
    sum(w * bid_10) / nullif(sum(w) FILTER (WHERE bid_10 IS NOT NULL), 0) AS bid_qty_10,
    sum(w * ask_10) / nullif(sum(w) FILTER (WHERE ask_10 IS NOT NULL), 0) AS ask_qty_10,
    count(*) AS snapshots,
    sum(w) AS seconds
FROM weighted
GROUP BY ALL
ORDER BY bucket, symbol, venue
