-- purchases: typed `purchase` events from `events`.
--
-- amount is Decimal(18,2) parsed from the JSON token text (19.99, "19.99",
-- 1E+3) by parse_amount, never through a float. A value with no exact
-- Decimal(18,2) (e.g. "abc", 1.999) is NULL, and every present-but-unusable
-- field counts in _warnings (dropped on write).
WITH raw AS (
    SELECT
        event_id, user_id, session_id, event_timestamp, processing_time, event_date,
        json_get_str(properties, 'order_id') AS order_id,
        json_get_json(properties, 'order_id') AS order_id_json,
        btrim(json_get_json(properties, 'amount'), '"') AS amount_text,
        json_get_str(properties, 'currency') AS currency,
        json_get_json(properties, 'currency') AS currency_json,
        json_get_str(properties, 'product_id') AS product_id,
        json_get_json(properties, 'product_id') AS product_id_json
    FROM events
    WHERE event_type = 'purchase'
),

typed AS (
    SELECT
        *,
        parse_amount(amount_text) AS amount
    FROM raw
),

final AS (
    SELECT
        event_id,
        user_id,
        session_id,
        event_timestamp,
        processing_time,
        order_id,
        amount,
        currency,
        product_id,
        event_date,
        CAST(amount_text IS NOT NULL AND amount_text <> 'null' AND amount IS NULL AS INT)
            + CAST(order_id_json IS NOT NULL AND order_id_json <> 'null' AND order_id IS NULL AS INT)
            + CAST(currency_json IS NOT NULL AND currency_json <> 'null' AND currency IS NULL AS INT)
            + CAST(product_id_json IS NOT NULL AND product_id_json <> 'null' AND product_id IS NULL AS INT)
            AS _warnings
    FROM typed
)

SELECT * FROM final
