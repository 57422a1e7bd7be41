-- carts: what is in each cart, per (user_id, product_id), from
-- add_to_cart (+quantity) and remove_from_cart (-quantity) in silver
-- `events` (quantity defaults to 1). The raw aggregate keeps zero and
-- negative quantities, so snapshot + delta always combine; `present` shows
-- items with a positive quantity. See balances.sql for the file's shape.
--
-- A quantity is used when it is an integer from 1 to 2147483647; anything
-- else (missing, 1.5, "two", -2, 0, 9223372036854775807) counts as 1. The
-- event's type says which way it goes, as a ledger event's does: an
-- add_to_cart of -2 taken as sent would remove two. The bound keeps the
-- Int64 sums from wrapping: it would take 2^32 events of one item to
-- overflow, where two absurd ones would do it otherwise (and the item
-- would vanish from the cart unreported). `problems` lists them (all but
-- a missing one).

-- name: delta
SELECT
    user_id,
    json_get_str(properties, 'product_id') AS product_id,
    SUM(
        CASE WHEN event_type = 'remove_from_cart' THEN -1 ELSE 1 END
        * CASE WHEN json_get_int(properties, 'quantity') BETWEEN 1 AND 2147483647
            THEN json_get_int(properties, 'quantity') ELSE 1 END
    ) AS quantity,
    MAX(event_timestamp) AS updated_at
FROM events
WHERE event_type IN ('add_to_cart', 'remove_from_cart')
  AND json_get_str(properties, 'product_id') IS NOT NULL
GROUP BY user_id, json_get_str(properties, 'product_id');

-- name: combine
SELECT user_id, product_id, SUM(quantity) AS quantity, MAX(updated_at) AS updated_at
FROM partials
GROUP BY user_id, product_id;

-- name: present
SELECT user_id, product_id, quantity, updated_at
FROM state
WHERE quantity > 0 AND ($1 IS NULL OR user_id = $1)
ORDER BY user_id, product_id;

-- name: history
SELECT
    event_timestamp,
    processing_time,
    event_id,
    event_type,
    json_get_str(properties, 'product_id') AS product_id,
    CASE WHEN event_type = 'remove_from_cart' THEN -1 ELSE 1 END
        * CASE WHEN json_get_int(properties, 'quantity') BETWEEN 1 AND 2147483647
            THEN json_get_int(properties, 'quantity') ELSE 1 END AS change,
    SUM(
        CASE WHEN event_type = 'remove_from_cart' THEN -1 ELSE 1 END
        * CASE WHEN json_get_int(properties, 'quantity') BETWEEN 1 AND 2147483647
            THEN json_get_int(properties, 'quantity') ELSE 1 END
    ) OVER (
        PARTITION BY json_get_str(properties, 'product_id')
        ORDER BY event_timestamp, event_id ROWS UNBOUNDED PRECEDING
    ) AS quantity
FROM events
WHERE user_id = $1 AND event_type IN ('add_to_cart', 'remove_from_cart')
ORDER BY event_timestamp, event_id;

-- name: problems
-- Cart events the state cannot use as sent: without a product (in no
-- cart), or with a quantity that is not an integer from 1 to 2147483647
-- (counted as 1, as a missing one is). Reported in every answer, not
-- passed over.
SELECT
    CASE
        WHEN json_get_str(properties, 'product_id') IS NULL THEN 'cart event without a product'
        ELSE 'cart event with an unusable quantity'
    END AS problem,
    event_id,
    CASE
        WHEN json_get_str(properties, 'product_id') IS NULL
            THEN concat(
                event_type, ' with product_id ',
                COALESCE(json_get_json(properties, 'product_id'), 'missing'),
                ': in no cart'
            )
        WHEN json_get_int(properties, 'quantity') IS NULL
            THEN concat(
                event_type, ' with quantity ', json_get_json(properties, 'quantity'),
                ', not an integer: counts as 1'
            )
        WHEN json_get_int(properties, 'quantity') < 1
            THEN concat(
                event_type, ' with quantity ', json_get_json(properties, 'quantity'),
                ', not positive (the event''s type says which way it goes): counts as 1'
            )
        ELSE concat(
            event_type, ' with quantity ', json_get_json(properties, 'quantity'),
            ', past 2147483647: counts as 1'
        )
    END AS detail
FROM events
WHERE event_type IN ('add_to_cart', 'remove_from_cart')
  AND (
      json_get_str(properties, 'product_id') IS NULL
      OR (
          json_get_json(properties, 'quantity') <> 'null'
          AND json_get_int(properties, 'quantity') IS NULL
      )
      OR json_get_int(properties, 'quantity') NOT BETWEEN 1 AND 2147483647
  )
  AND ($1 IS NULL OR user_id = $1)
ORDER BY event_id;
