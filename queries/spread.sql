-- spread: Time-weighted quoted spread, mid price and top-of-book depth per time bucket, from orderbook.
-- params: start date, end date, symbol varchar = NULL, venue varchar = NULL, interval interval = '1 minute'
--
-- Parameters as in bars: start/end KST dates (inclusive), symbol and venue (NULL = all),
-- interval the bucket width.
--
-- Time weighting (the macro book_seconds, defined by queries.connect). A 0D row is a full
-- snapshot of the book, and the book it shows stands until the next snapshot of the same
-- symbol and venue. Each snapshot is weighted by the
-- seconds from its ts to the next snapshot's ts, capped at the end of the snapshot's own
-- bucket (a book standing across a bucket boundary counts only in its own bucket; the next
-- bucket starts measuring at its first snapshot). The last snapshot of a day, which has no
-- next one, stands until its bucket ends. ts has one-second resolution, so of several
-- snapshots within one second only the last (by seq) gets weight; the others get zero.
--
-- One-sided or empty books (ask_px_1 = 0 or bid_px_1 = 0: no quote on a side, as in
-- auctions or at a price limit) are left out, but they still end the previous snapshot's
-- interval: that book was no longer standing.
--
-- One row per (bucket, symbol, venue) with at least one two-sided snapshot. Columns:
--   bucket       start of the bucket (TIMESTAMPTZ, aligned in KST).
--   symbol, venue
--   spread       time-weighted mean of ask_px_1 - bid_px_1, KRW.
--   spread_bps   time-weighted mean of (ask_px_1 - bid_px_1) / mid, in basis points.
--   mid          time-weighted mean of (ask_px_1 + bid_px_1) / 2, KRW.
--   bid_depth    time-weighted mean of bid_qty_1 (shares at the best bid).
--   ask_depth    time-weighted mean of ask_qty_1 (shares at the best ask).
--   snapshots    two-sided snapshots in the bucket (zero-weight ones included).
--   seconds      total weight: seconds of the bucket covered by a two-sided book.
--   The means are NULL when seconds is 0.
WITH books AS (
    SELECT
        ts,
        symbol,
        venue,
        ask_px_1,
        bid_px_1,
        ask_qty_1,
        bid_qty_1,
        time_bucket($interval::INTERVAL, ts, 'Asia/Seoul') AS bucket,
        -- every snapshot, one-sided ones too, ends the interval of the one before it
        lead(ts) OVER (PARTITION BY date, symbol, venue ORDER BY ts, seq) AS next_ts
    FROM orderbook
    WHERE date BETWEEN $start::DATE AND $end::DATE
        AND ($symbol::VARCHAR IS NULL OR symbol = $symbol::VARCHAR)
        AND ($venue::VARCHAR IS NULL OR venue = $venue::VARCHAR)
),
weighted AS (
    SELECT
        *,
        (ask_px_1 + bid_px_1) / 2 AS mid,
        book_seconds(ts, next_ts, bucket, $interval::INTERVAL) AS w  -- see queries.connect
    FROM books
    WHERE ask_px_1 > 0 AND bid_px_1 > 0
)
SELECT
    bucket,
    symbol,
    venue,
    sum(w * (ask_px_1 - bid_px_1)) / nullif(sum(w), 0) AS spread,
    sum(w * (ask_px_1 - bid_px_1) / mid) * 1e4 / nullif(sum(w), 0) AS spread_bps,
    sum(w * mid) / nullif(sum(w), 0) AS mid,
    sum(w * bid_qty_1) / nullif(sum(w), 0) AS bid_depth,
    sum(w * ask_qty_1) / nullif(sum(w), 0) AS ask_depth,
    count(*) AS snapshots,
    sum(w) AS seconds
FROM weighted
GROUP BY ALL
ORDER BY bucket, symbol, venue
