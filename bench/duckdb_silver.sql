-- DuckDB's side of the silver benchmark: the same bronze Parquet →
-- deduplicated, sessionized events (LAG → CASE → running SUM, session id =
-- sha256(user_id || chr(31) || first event_id)) and one row per session,
-- each written as zstd Parquet partitioned by date, like evlake's
-- sql/silver/events.sql and sessions.sql. Parameters substituted by
-- bench/silver_bench.py and pipeline_bench.py: {bronze_glob}, {out_dir}, {gap_us},
-- {dedup_order} (evlake's bronze: processing_time, batch_id, source_line).
SET preserve_insertion_order = false;
CREATE VIEW bronze AS
    SELECT * FROM read_parquet('{bronze_glob}', hive_partitioning = true);
COPY (
    WITH ranked AS (
        SELECT *, ROW_NUMBER() OVER (
            PARTITION BY event_date, event_id
            ORDER BY {dedup_order}) AS copy_rank
        FROM bronze
    ),
    deduped AS (SELECT * EXCLUDE (copy_rank) FROM ranked WHERE copy_rank = 1),
    gaps AS (
        SELECT *,
            CASE
                WHEN LAG(event_timestamp) OVER w IS NULL THEN 1
                WHEN epoch_us(event_timestamp) - epoch_us(LAG(event_timestamp) OVER w) > {gap_us} THEN 1
                ELSE 0
            END AS starts_session
        FROM deduped
        WINDOW w AS (PARTITION BY user_id ORDER BY event_timestamp, event_id)
    ),
    numbered AS (
        SELECT *, SUM(starts_session) OVER (
            PARTITION BY user_id ORDER BY event_timestamp, event_id
            ROWS UNBOUNDED PRECEDING) AS session_seq
        FROM gaps
    ),
    firsts AS (
        SELECT *, FIRST_VALUE(event_id) OVER (
            PARTITION BY user_id, session_seq ORDER BY event_timestamp, event_id
            ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS first_event_id
        FROM numbered
    )
    SELECT * EXCLUDE (starts_session, session_seq, first_event_id),
        sha256(user_id || chr(31) || first_event_id) AS session_id
    FROM firsts
) TO '{out_dir}/events' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (event_date), OVERWRITE_OR_IGNORE);
COPY (
    SELECT
        session_id,
        user_id,
        CAST(min(event_timestamp) AT TIME ZONE 'UTC' AS DATE) AS session_date,
        min(event_timestamp) AS session_start,
        max(event_timestamp) AS session_end,
        epoch_us(max(event_timestamp)) - epoch_us(min(event_timestamp)) AS duration_us,
        count(*) AS event_count,
        count(*) = 1 AS is_bounce,
        arg_min(page_url, (event_timestamp, event_id)) FILTER (WHERE page_url IS NOT NULL) AS landing_page,
        arg_max(page_url, (event_timestamp, event_id)) FILTER (WHERE page_url IS NOT NULL) AS exit_page,
        bool_or(event_type = 'purchase') AS converted
    FROM read_parquet('{out_dir}/events/*/*.parquet', hive_partitioning = true)
    GROUP BY session_id, user_id
) TO '{out_dir}/sessions' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (session_date), OVERWRITE_OR_IGNORE);
