-- profiles: the latest value of every attribute of every user, from
-- profile_updated and address_changed events in silver `events`: each
-- top-level key of `properties` is an attribute (an address change sets
-- street and city). Latest means the largest (event_timestamp, event_id),
-- so ties break the same way everywhere. See balances.sql for the shape.
-- `json_members` (evlake's) gives each member's key and JSON text, reading
-- the object once: with `json_object_keys` then `json_get_json`, every
-- attribute's row would copy and parse the whole object again.

-- name: delta
WITH members AS (
    SELECT
        user_id,
        event_timestamp,
        event_id,
        unnest(json_members(properties)) AS member
    FROM events
    WHERE event_type IN ('profile_updated', 'address_changed')
),
attrs AS (
    SELECT user_id, event_timestamp, event_id, member['key'] AS attribute, member['value'] AS value_json
    FROM members
)
SELECT
    user_id,
    attribute,
    LAST_VALUE(value_json ORDER BY event_timestamp, event_id) AS value_json,
    MAX(event_timestamp) AS updated_at,
    LAST_VALUE(event_id ORDER BY event_timestamp, event_id) AS updated_by
FROM attrs
GROUP BY user_id, attribute;

-- name: combine
SELECT
    user_id,
    attribute,
    LAST_VALUE(value_json ORDER BY updated_at, updated_by) AS value_json,
    MAX(updated_at) AS updated_at,
    LAST_VALUE(updated_by ORDER BY updated_at, updated_by) AS updated_by
FROM partials
GROUP BY user_id, attribute;

-- name: present
SELECT
    user_id,
    attribute,
    CASE WHEN left(value_json, 1) = '"' THEN json_get_str(value_json) ELSE value_json END AS value,
    updated_at
FROM state
WHERE $1 IS NULL OR user_id = $1
ORDER BY user_id, attribute;

-- name: history
WITH members AS (
    SELECT
        event_timestamp,
        processing_time,
        event_id,
        event_type,
        unnest(json_members(properties)) AS member
    FROM events
    WHERE user_id = $1 AND event_type IN ('profile_updated', 'address_changed')
),
attrs AS (
    SELECT event_timestamp, processing_time, event_id, event_type,
           member['key'] AS attribute, member['value'] AS value_json
    FROM members
)
SELECT
    event_timestamp,
    processing_time,
    event_id,
    event_type,
    attribute,
    CASE WHEN left(value_json, 1) = '"' THEN json_get_str(value_json) ELSE value_json END AS value
FROM attrs
ORDER BY event_timestamp, event_id, attribute;
