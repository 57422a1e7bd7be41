-- events: bronze deduplicated and sessionized (DESIGN.md §5): the whole
-- rows session_keys.sql keeps, with their session_id.
--
-- Input:  bronze_events, and session_keys (session_keys.sql's output over
--         the same bronze rows; run on a subset of dates, both hold the
--         same dates).
-- Output: one row per (event_date, event_id), with the computed session_id.
WITH final AS (
    -- Whole rows join their session once, by the row's name.
    SELECT
        b.event_id,
        b.event_type,
        b.user_id,
        b.event_timestamp,
        b.client_session_id,
        b.page_url,
        b.source_system,
        b.properties,
        b.extra,
        b.processing_time,
        b.batch_id,
        b.is_late,
        b.source_file,
        b.source_line,
        s.session_id,
        b.event_date
    FROM session_keys s
    JOIN bronze_events b
        ON b.event_date = s.event_date
        AND b.batch_id = s.batch_id
        AND b.source_line = s.source_line
)

SELECT * FROM final
