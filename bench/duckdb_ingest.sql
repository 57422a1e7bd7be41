-- DuckDB's side of the ingest benchmark: the same NDJSON batches → bronze rows
-- → one sorted, zstd Parquet file per event_date (Hive layout).
-- Parameters are substituted by bench/ingest_bench.py: {input_glob}, {out_dir}.
-- It maps the same aliases evlake accepts (timestamp_utc/timestamp, actor_id,
-- payload), parses RFC 3339 strings with offsets and epoch milliseconds, and
-- skips lines it cannot read (ignore_errors) — evlake quarantines them instead.
SET preserve_insertion_order = true;
COPY (
    WITH raw AS (
        SELECT *
        FROM read_json('{input_glob}',
            format = 'newline_delimited',
            ignore_errors = true,
            filename = true,
            columns = {
                event_id: 'VARCHAR', event_type: 'VARCHAR',
                event_timestamp: 'VARCHAR', timestamp_utc: 'VARCHAR', "timestamp": 'VARCHAR',
                user_id: 'VARCHAR', actor_id: 'VARCHAR', session_id: 'VARCHAR',
                page_url: 'VARCHAR', source_system: 'VARCHAR',
                properties: 'JSON', payload: 'JSON'
            })
    ),
    typed AS (
        SELECT
            event_id,
            event_type,
            coalesce(user_id, actor_id) AS user_id,
            coalesce(event_timestamp, timestamp_utc, "timestamp") AS ts_text,
            session_id AS client_session_id,
            page_url,
            source_system,
            coalesce(properties, payload)::VARCHAR AS properties,
            TIMESTAMPTZ '2024-03-31 01:00:00+00' AS processing_time,
            filename AS source_file
        FROM raw
    ),
    bronze AS (
        SELECT
            event_id, event_type, user_id,
            CASE WHEN regexp_full_match(ts_text, '-?[0-9]+')
                 THEN make_timestamptz(ts_text::BIGINT * 1000)
                 ELSE try_cast(ts_text AS TIMESTAMPTZ) END AS event_timestamp,
            client_session_id, page_url, source_system, properties,
            processing_time, source_file
        FROM typed
        WHERE event_id IS NOT NULL AND event_type IS NOT NULL AND user_id IS NOT NULL
    )
    SELECT *, CAST(event_timestamp AT TIME ZONE 'UTC' AS DATE) AS event_date
    FROM bronze
    WHERE event_timestamp IS NOT NULL
    ORDER BY user_id, event_timestamp, event_id
) TO '{out_dir}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (event_date), OVERWRITE_OR_IGNORE);
