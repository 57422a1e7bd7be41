-- ledger: typed `deposit`, `withdrawal` and `correction` events from `events`.
--
-- amount is a signed Decimal(18,2) from the JSON token text (parse_amount,
-- exact, never through a float):
-- a deposit's positive properties.amount is stored as +amount, a
-- withdrawal's as -amount, and a correction's properties.amount_delta as is,
-- on its own account_id (corrects_event_id names the corrected event).
-- Unusable values are NULL and count in _warnings: one that is not an
-- exact decimal, and a deposit's or withdrawal's negative amount (its
-- type says which way the money goes: a withdrawal of -5 is no deposit of
-- 5, and summed as sent it would move the balance the wrong way).
WITH raw AS (
    SELECT
        event_id, user_id, session_id, event_timestamp, processing_time, event_date, event_type,
        json_get_str(properties, 'account_id') AS account_id,
        json_get_json(properties, 'account_id') AS account_id_json,
        json_get_str(properties, 'corrects_event_id') AS corrects_event_id,
        btrim(
            CASE WHEN event_type = 'correction'
                 THEN json_get_json(properties, 'amount_delta')
                 ELSE json_get_json(properties, 'amount') END,
            '"'
        ) AS amount_text
    FROM events
    WHERE event_type IN ('deposit', 'withdrawal', 'correction')
),

typed AS (
    SELECT
        *,
        parse_amount(amount_text) AS parsed_amount
    FROM raw
),

checked AS (
    SELECT
        *,
        CASE
            WHEN event_type <> 'correction' AND parsed_amount < 0 THEN NULL
            ELSE parsed_amount
        END AS unsigned_amount
    FROM typed
),

final AS (
    SELECT
        event_id,
        user_id,
        session_id,
        event_timestamp,
        processing_time,
        event_type,
        account_id,
        corrects_event_id,
        CASE
            WHEN event_type = 'withdrawal' THEN -unsigned_amount
            ELSE unsigned_amount
        END AS amount,
        event_date,
        CAST(amount_text IS NOT NULL AND amount_text <> 'null' AND unsigned_amount IS NULL AS INT)
            + CAST(account_id_json IS NOT NULL AND account_id_json <> 'null' AND account_id IS NULL AS INT)
            AS _warnings
    FROM checked
)

SELECT * FROM final
