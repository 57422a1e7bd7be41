-- daily_revenue_by_currency: purchases and revenue per event_date and
-- currency, every currency (the reporting one too), never added together.
--
-- Input:  purchases (silver), restricted by the caller to the dates being
--         recomputed.
-- Output: event_date, currency (upper-cased and trimmed; NULL when the
--         purchase had none), purchases, revenue (Decimal(18,2), purchases
--         whose amount is missing, null or could not be typed add nothing),
--         untyped_amounts (their count).
WITH final AS (
    SELECT
        event_date,
        upper(btrim(currency)) AS currency,
        COUNT(*) AS purchases,
        CAST(COALESCE(SUM(amount), 0) AS DECIMAL(18, 2)) AS revenue,
        COUNT(*) - COUNT(amount) AS untyped_amounts
    FROM purchases
    GROUP BY event_date, upper(btrim(currency))
)

SELECT * FROM final
