-- session_keys: which bronze rows silver keeps, and their session
-- (DESIGN.md §5). events.sql joins whole rows to it.
--
-- Input:  bronze_events (the partitions being recomputed, plus the context
--         around them that sessions can reach).
-- Param:  $1 = the session gap in microseconds (Int64): a new session starts
--         when the gap to the user's previous event is strictly greater.
--         $2 = event types left out of sessionization, each wrapped in
--         chr(31) (e.g. chr(31) || 'heartbeat' || chr(31)); empty for none.
--         Their rows are kept with a NULL session_id.
-- Output: one row per kept bronze row, named by (event_date, batch_id,
--         source_line), with its session_id. Re-sends are dropped: one row
--         per (event_date, event_id).
--
-- session_id = hex(sha256(user_id || 0x1f || first event_id of the session)).
-- It depends only on the session's first event, so recomputing gives
-- unchanged sessions the same id; DuckDB can recompute it with
-- sha256(user_id || chr(31) || event_id). It must never change.
--
-- Everything here is narrow (the row's name, user, time and id), so the
-- sorts and windows never move whole rows.
WITH repeated AS (
    -- The (event_date, event_id) keys bronze holds more than once: a hash
    -- aggregate over one narrow column. Ranking every row instead (a window
    -- partitioned by the near-unique key) cost seconds per million rows.
    SELECT event_date, event_id
    FROM bronze_events
    GROUP BY event_date, event_id
    HAVING count(*) > 1
),

copies AS (
    -- Exact re-sends: every copy but the first by (processing_time,
    -- batch_id, source_line), among the repeated keys only: in that order
    -- within each key, a row whose previous row has the same key is a
    -- copy. (event_date, batch_id, source_line) names one bronze row.
    -- The window partitions by a bucket of keys, not by key: DataFusion
    -- sets up window state per partition, which for a lake where many
    -- events arrive twice cost more than the rows (src/udf.rs).
    SELECT event_date, batch_id, source_line
    FROM (
        SELECT
            b.event_date, b.batch_id, b.source_line,
            LAG(b.event_id) OVER w = b.event_id
                AND LAG(b.event_date) OVER w = b.event_date AS is_copy
        -- The few repeated keys are the hash table; bronze streams past
        -- it (built the other way round, it held every bronze key).
        FROM repeated r
        RIGHT SEMI JOIN bronze_events b
            ON b.event_date = r.event_date AND b.event_id = r.event_id
        WINDOW w AS (
            PARTITION BY hash_bucket(b.event_id, 64)
            ORDER BY b.event_date, b.event_id, b.processing_time, b.batch_id, b.source_line
        )
    ) ranked
    WHERE is_copy
),

kept AS (
    -- The rows that stay, narrow: only what sessionization needs and the
    -- row's name. The windows below sort and scan these, never whole rows.
    SELECT
        b.event_date, b.batch_id, b.source_line,
        b.user_id, b.event_timestamp, b.event_id,
        strpos($2, concat(chr(31), b.event_type, chr(31))) > 0 AS excluded,
        -- Windows partition by a bucket of users, not by user: DataFusion
        -- sets up window state per partition, which for an incremental
        -- run's few rows each of thousands of users cost more than the
        -- rows (src/udf.rs).
        hash_bucket(b.user_id, 64) AS user_bucket
    FROM copies c
    RIGHT ANTI JOIN bronze_events b
        ON b.event_date = c.event_date
        AND b.batch_id = c.batch_id
        AND b.source_line = c.source_line
),

gaps AS (
    -- LAG → CASE: does this event start a new session? Each bucket's
    -- rows in user order: a row starts a session when the previous row is
    -- another user's (or of the other `excluded` kind), or when the time
    -- since it exceeds the gap.
    SELECT
        *,
        CASE
            WHEN LAG(user_id) OVER w IS DISTINCT FROM user_id THEN 1
            WHEN LAG(excluded) OVER w IS DISTINCT FROM excluded THEN 1
            WHEN arrow_cast(event_timestamp, 'Int64')
                 - arrow_cast(LAG(event_timestamp) OVER w, 'Int64') > $1 THEN 1
            ELSE 0
        END AS starts_session
    FROM kept
    WINDOW w AS (PARTITION BY user_bucket ORDER BY user_id, excluded, event_timestamp, event_id)
),

numbered AS (
    -- Running SUM of the flags numbers the sessions.
    SELECT
        *,
        SUM(starts_session) OVER s AS session_seq
    FROM gaps
    WINDOW s AS (
        PARTITION BY user_bucket
        ORDER BY user_id, excluded, event_timestamp, event_id
        ROWS UNBOUNDED PRECEDING
    )
),

identified AS (
    -- Each session's id, from its first event: session_id(session_seq,
    -- user_id, event_id) hashes the row where session_seq changes (once
    -- per session, not per event) and carries that id along the session
    -- (src/udf.rs). Same window order, so no re-sort. It equals
    -- FIRST_VALUE(<the id>) OVER (PARTITION BY user_id, excluded,
    -- session_seq ORDER BY event_timestamp, event_id), without a second
    -- sort or DataFusion's per-row sliding aggregate.
    SELECT
        *,
        session_id(session_seq, user_id, event_id) OVER s AS first_event_session_id
    FROM numbered
    WINDOW s AS (
        PARTITION BY user_bucket
        ORDER BY user_id, excluded, event_timestamp, event_id
        ROWS UNBOUNDED PRECEDING
    )
),

sessionized AS (
    SELECT
        event_date, batch_id, source_line,
        CASE WHEN NOT excluded THEN first_event_session_id END AS session_id
    FROM identified
)

SELECT * FROM sessionized
