-- DuckDB's side of the pipeline benchmark, last step: daily metrics from
-- the sessionized events and sessions written by duckdb_silver.sql, like
-- evlake's sql/gold/daily_metrics.sql (purchase amounts read from the JSON
-- properties). DuckDB's bronze has no watermark, so late_events counts a
-- column it does not have: 0. Parameter: {out_dir}.
SET preserve_insertion_order = false;
COPY (
    WITH events AS (
        SELECT * FROM read_parquet('{out_dir}/events/*/*.parquet', hive_partitioning = true)
    ),
    sessions AS (
        SELECT * FROM read_parquet('{out_dir}/sessions/*/*.parquet', hive_partitioning = true)
    ),
    ev AS (
        SELECT event_date, count(*) AS events, count(DISTINCT user_id) AS users,
            0 AS late_events,
            quantile_cont(epoch_us(processing_time) - epoch_us(event_timestamp), 0.99) AS lateness_p99_us
        FROM events GROUP BY event_date
    ),
    se AS (
        SELECT session_date AS event_date, count(*) AS sessions,
            count(*) FILTER (WHERE is_bounce) AS bounce_sessions,
            count(*) FILTER (WHERE converted) AS converted_sessions,
            sum(duration_us) AS duration_us
        FROM sessions GROUP BY session_date
    ),
    pu AS (
        SELECT event_date, count(*) AS purchases,
            sum(TRY_CAST(json_extract_string(properties, '$.amount') AS DECIMAL(18, 2)))
                FILTER (WHERE upper(json_extract_string(properties, '$.currency')) = 'USD') AS revenue
        FROM events WHERE event_type = 'purchase' GROUP BY event_date
    ),
    su AS (
        SELECT event_date, count(*) AS signups FROM events WHERE event_type = 'signup' GROUP BY event_date
    )
    SELECT
        ev.event_date, ev.events, ev.users,
        coalesce(se.sessions, 0) AS sessions,
        coalesce(se.bounce_sessions, 0) AS bounce_sessions,
        -- Half-up on the exact value, in integers (as the README defines
        -- it): round() on a double turns an exact tie such as 1044 / 3200
        -- = 0.32625 into 0.3262.
        CAST(((2 * se.duration_us + se.sessions * 1000) // (2 * se.sessions * 1000)) * 0.001
             AS DECIMAL(18, 3)) AS avg_session_duration_s,
        coalesce(se.converted_sessions, 0) AS converted_sessions,
        CAST(((2 * se.converted_sessions * 10000 + se.sessions) // (2 * se.sessions)) * 0.0001
             AS DECIMAL(7, 4)) AS conversion_rate,
        coalesce(pu.purchases, 0) AS purchases,
        CAST(coalesce(pu.revenue, 0) AS DECIMAL(18, 2)) AS revenue,
        coalesce(su.signups, 0) AS signups,
        ev.late_events,
        CAST(ev.lateness_p99_us / 1e6 AS DECIMAL(18, 3)) AS lateness_p99_s
    FROM ev
    LEFT JOIN se USING (event_date)
    LEFT JOIN pu USING (event_date)
    LEFT JOIN su USING (event_date)
) TO '{out_dir}/daily_metrics' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (event_date), OVERWRITE_OR_IGNORE);
