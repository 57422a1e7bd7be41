-- signups: typed `signup` events from `events`: plan, referrer.
-- A present value of the wrong type is NULL and counts in _warnings.
WITH raw AS (
    SELECT
        event_id, user_id, session_id, event_timestamp, processing_time, event_date,
        json_get_str(properties, 'plan') AS plan,
        json_get_json(properties, 'plan') AS plan_json,
        json_get_str(properties, 'referrer') AS referrer,
        json_get_json(properties, 'referrer') AS referrer_json
    FROM events
    WHERE event_type = 'signup'
),

final AS (
    SELECT
        event_id, user_id, session_id, event_timestamp, processing_time,
        plan,
        referrer,
        event_date,
        CAST(plan_json IS NOT NULL AND plan_json <> 'null' AND plan IS NULL AS INT)
            + CAST(referrer_json IS NOT NULL AND referrer_json <> 'null' AND referrer IS NULL AS INT)
            AS _warnings
    FROM raw
)

SELECT * FROM final
