-- daily_metrics: one row per event_date, the numbers the business reads.
--
-- Input:  events, sessions, purchases, signups (silver), restricted by the
--         caller to the dates being recomputed (each date's row depends
--         only on that date's silver partitions).
-- Param:  $1 = the lake's reporting currency (e.g. 'USD'); purchases in
--         other currencies are not added in (see daily_revenue_by_currency).
-- Output: see the README's "Gold" section for every column's definition.
--         Averages and rates are computed from exact integer sums and
--         rounded half-up, so an incremental rebuild equals a full one.
WITH ev AS (
    SELECT
        event_date,
        COUNT(*) AS events,
        COUNT(DISTINCT user_id) AS users,
        SUM(CASE WHEN is_late THEN 1 ELSE 0 END) AS late_events,
        -- The 99th percentile by linear interpolation (PostgreSQL's
        -- percentile_cont, DuckDB's quantile_cont), exactly, in µs with
        -- two decimals: evlake's own aggregate (DataFusion's percentile_cont
        -- cuts the interpolation weight to 6 digits, 0.85 to 0.849999).
        percentile_cont_exact(
            arrow_cast(processing_time, 'Int64') - arrow_cast(event_timestamp, 'Int64'), 99
        ) AS lateness_p99_us
    FROM events
    GROUP BY event_date
),

se AS (
    -- Sessions count on the date they started (session_date).
    SELECT
        session_date AS event_date,
        COUNT(*) AS sessions,
        SUM(CASE WHEN is_bounce THEN 1 ELSE 0 END) AS bounce_sessions,
        SUM(CASE WHEN converted THEN 1 ELSE 0 END) AS converted_sessions,
        SUM(duration_us) AS duration_us
    FROM sessions
    GROUP BY session_date
),

pu AS (
    SELECT
        event_date,
        COUNT(*) AS purchases,
        SUM(CASE WHEN upper(btrim(currency)) = upper(btrim($1)) THEN amount END) AS revenue
    FROM purchases
    GROUP BY event_date
),

su AS (
    SELECT event_date, COUNT(*) AS signups
    FROM signups
    GROUP BY event_date
),

final AS (
    SELECT
        ev.event_date,
        ev.events,
        ev.users,
        COALESCE(se.sessions, 0) AS sessions,
        COALESCE(se.bounce_sessions, 0) AS bounce_sessions,
        -- Mean duration in ms, rounded half-up in integers, as seconds.
        CASE WHEN se.sessions > 0 THEN
            CAST(
                CAST((2 * se.duration_us + se.sessions * 1000) / (2 * se.sessions * 1000) AS DECIMAL(18, 0))
                / 1000 AS DECIMAL(18, 3))
        END AS avg_session_duration_s,
        COALESCE(se.converted_sessions, 0) AS converted_sessions,
        -- converted_sessions / sessions, rounded half-up to 4 places.
        CASE WHEN se.sessions > 0 THEN
            CAST(
                CAST((2 * se.converted_sessions * 10000 + se.sessions) / (2 * se.sessions) AS DECIMAL(18, 0))
                / 10000 AS DECIMAL(7, 4))
        END AS conversion_rate,
        COALESCE(pu.purchases, 0) AS purchases,
        CAST(COALESCE(pu.revenue, 0) AS DECIMAL(18, 2)) AS revenue,
        COALESCE(su.signups, 0) AS signups,
        ev.late_events,
        -- In ms, rounded half away from zero in integers, as seconds.
        CAST(
            CAST(
                CASE WHEN ev.lateness_p99_us >= 0
                    THEN (CAST(ev.lateness_p99_us * 100 AS BIGINT) + 50000) / 100000
                    ELSE -((50000 - CAST(ev.lateness_p99_us * 100 AS BIGINT)) / 100000)
                END AS DECIMAL(18, 0))
            / 1000 AS DECIMAL(18, 3)) AS lateness_p99_s
    FROM ev
    LEFT JOIN se ON se.event_date = ev.event_date
    LEFT JOIN pu ON pu.event_date = ev.event_date
    LEFT JOIN su ON su.event_date = ev.event_date
)

SELECT * FROM final
