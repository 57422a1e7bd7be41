-- cart_adds: typed `add_to_cart` events from `events`: product_id, quantity.
-- A present value of the wrong type is NULL and counts in _warnings.
WITH raw AS (
    SELECT
        event_id, user_id, session_id, event_timestamp, processing_time, event_date,
        json_get_str(properties, 'product_id') AS product_id,
        json_get_json(properties, 'product_id') AS product_id_json,
        json_get_int(properties, 'quantity') AS quantity,
        json_get_json(properties, 'quantity') AS quantity_json
    FROM events
    WHERE event_type = 'add_to_cart'
),

final AS (
    SELECT
        event_id, user_id, session_id, event_timestamp, processing_time,
        product_id,
        quantity,
        event_date,
        CAST(product_id_json IS NOT NULL AND product_id_json <> 'null' AND product_id IS NULL AS INT)
            + CAST(quantity_json IS NOT NULL AND quantity_json <> 'null' AND quantity IS NULL AS INT)
            AS _warnings
    FROM raw
)

SELECT * FROM final
