-- searches: typed `search` events from `events`: query_text, result_count.
-- A present value of the wrong type is NULL and counts in _warnings.
WITH raw AS (
    SELECT
        event_id, user_id, session_id, event_timestamp, processing_time, event_date,
        json_get_str(properties, 'query_text') AS query_text,
        json_get_json(properties, 'query_text') AS query_text_json,
        json_get_int(properties, 'result_count') AS result_count,
        json_get_json(properties, 'result_count') AS result_count_json
    FROM events
    WHERE event_type = 'search'
),

final AS (
    SELECT
        event_id, user_id, session_id, event_timestamp, processing_time,
        query_text,
        result_count,
        event_date,
        CAST(query_text_json IS NOT NULL AND query_text_json <> 'null' AND query_text IS NULL AS INT)
            + CAST(result_count_json IS NOT NULL AND result_count_json <> 'null' AND result_count IS NULL AS INT)
            AS _warnings
    FROM raw
)

SELECT * FROM final
