-- purchases: typed `purchase` events from `events`.
--
-- amount is Decimal(18,2) parsed from the JSON token text (19.99 or
-- "19.99"), never through a float. A value that is not a decimal with at
-- most 16 integer and 2 fraction digits (e.g. "abc", 1.999) is NULL, and
-- every present-but-unusable field counts in _warnings (dropped on write).
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
        CASE
            WHEN regexp_like(amount_text, '^-?[0-9]{1,16}(\.[0-9]{1,2})?$')
            THEN CAST(amount_text AS DECIMAL(18, 2))
        END AS amount
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
