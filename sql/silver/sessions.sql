-- sessions: one row per session of `events` (sql/silver/events.sql).
--
-- Input:  events (sessionized, deduplicated).
-- Output: session_id, user_id, session_date (UTC date of the first event,
--         so a session crossing midnight belongs to the day it started),
--         session_start, session_end, duration_us (exact integer µs),
--         event_count, is_bounce (exactly one event), landing_page and
--         exit_page (first and last non-null page_url), converted (has a
--         purchase).
WITH final AS (
    SELECT
        session_id,
        user_id,
        CAST(MIN(event_timestamp) AS DATE) AS session_date,
        MIN(event_timestamp) AS session_start,
        MAX(event_timestamp) AS session_end,
        arrow_cast(MAX(event_timestamp), 'Int64')
            - arrow_cast(MIN(event_timestamp), 'Int64') AS duration_us,
        COUNT(*) AS event_count,
        COUNT(*) = 1 AS is_bounce,
        -- The page_url of the first (last) event by (event_timestamp,
        -- event_id) that has one: FIRST_VALUE(page_url ORDER BY
        -- event_timestamp, event_id) FILTER (WHERE page_url IS NOT NULL),
        -- computed the way MIN is (evlake's src/udf.rs).
        first_non_null_by(page_url, event_timestamp, event_id) AS landing_page,
        last_non_null_by(page_url, event_timestamp, event_id) AS exit_page,
        BOOL_OR(event_type = 'purchase') AS converted
    FROM events
    -- Events of types left out of sessionization have no session.
    WHERE session_id IS NOT NULL
    GROUP BY session_id, user_id
)

SELECT * FROM final
