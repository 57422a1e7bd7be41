-- DuckDB's side of evlake's typed tables (sql/silver/typed/*.sql), run after
-- duckdb_silver.sql over its events output, so the silver benchmark can
-- also compare equal work: evlake's `silver --full` writes these five
-- tables besides events and sessions. Same columns and rules: amounts as
-- DECIMAL(18,2) from the JSON token text (never through a float), NULL when
-- the text is not such a decimal. (evlake also counts the values it could
-- not type; this side does not.) Parameter: {out_dir}.
CREATE VIEW events AS
    SELECT * FROM read_parquet('{out_dir}/events/*/*.parquet', hive_partitioning = true);
CREATE MACRO dec2(t) AS
    CASE WHEN regexp_full_match(t, '-?[0-9]{1,16}(\.[0-9]{1,2})?') THEN CAST(t AS DECIMAL(18, 2)) END;
COPY (
    SELECT event_id, user_id, session_id, event_timestamp, processing_time,
        properties->>'$.order_id' AS order_id,
        dec2(properties->>'$.amount') AS amount,
        properties->>'$.currency' AS currency,
        properties->>'$.product_id' AS product_id,
        event_date
    FROM events WHERE event_type = 'purchase'
) TO '{out_dir}/purchases' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (event_date), OVERWRITE_OR_IGNORE);
COPY (
    SELECT event_id, user_id, session_id, event_timestamp, processing_time,
        properties->>'$.query_text' AS query_text,
        TRY_CAST(properties->>'$.result_count' AS BIGINT) AS result_count,
        event_date
    FROM events WHERE event_type = 'search'
) TO '{out_dir}/searches' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (event_date), OVERWRITE_OR_IGNORE);
COPY (
    SELECT event_id, user_id, session_id, event_timestamp, processing_time,
        properties->>'$.plan' AS plan,
        properties->>'$.referrer' AS referrer,
        event_date
    FROM events WHERE event_type = 'signup'
) TO '{out_dir}/signups' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (event_date), OVERWRITE_OR_IGNORE);
COPY (
    SELECT event_id, user_id, session_id, event_timestamp, processing_time,
        properties->>'$.product_id' AS product_id,
        TRY_CAST(properties->>'$.quantity' AS BIGINT) AS quantity,
        event_date
    FROM events WHERE event_type = 'add_to_cart'
) TO '{out_dir}/cart_adds' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (event_date), OVERWRITE_OR_IGNORE);
COPY (
    SELECT event_id, user_id, session_id, event_timestamp, processing_time, event_type,
        properties->>'$.account_id' AS account_id,
        properties->>'$.corrects_event_id' AS corrects_event_id,
        CASE event_type
            WHEN 'withdrawal' THEN -dec2(properties->>'$.amount')
            WHEN 'deposit' THEN dec2(properties->>'$.amount')
            ELSE dec2(properties->>'$.amount_delta')
        END AS amount,
        event_date
    FROM events WHERE event_type IN ('deposit', 'withdrawal', 'correction')
) TO '{out_dir}/ledger' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (event_date), OVERWRITE_OR_IGNORE);
