-- balances: the balance of every account (DESIGN.md §6), from silver
-- `ledger`: deposits (+amount), withdrawals (-amount) and compensating
-- corrections (amount_delta, which names the event it corrects). The
-- wrong original stays visible in `history`; the sum is the right value.
--
-- A state model is four queries, each after a `-- name:` line:
--   delta    the raw, combinable aggregate of the events it reads (here
--            `ledger`), restricted by evlake to the window being replayed;
--   combine  merges `partials` (a snapshot's rows plus delta rows, same
--            columns) into one row per key;
--   present  what `evlake state` prints, from `state`; $1 is --key (or NULL);
--   history  the audit trail of one key ($1), over every event it reads.
-- Optionally `problems`: rows (problem, event_id, detail) worth reporting
-- about the events it checks, named as is (`ledger`), consulting every
-- event up to the as-of time, named with `_all` (`ledger_all`); $1 is
-- --key (or NULL), to report only that entity's problems. An answer
-- from a snapshot checks the events after it, and re-checks the snapshot's
-- own problem events against those, for the problems each had at the
-- snapshot's time: a problem must be about an event of the checked table
-- (`event_id`), and only an event the snapshot did not see may clear it.

-- name: delta
SELECT
    account_id,
    SUM(amount) AS balance,
    COUNT(*) AS entries,
    SUM(CASE WHEN event_type = 'correction' THEN 1 ELSE 0 END) AS corrections,
    MAX(event_timestamp) AS last_event_time
FROM ledger
WHERE account_id IS NOT NULL
GROUP BY account_id;

-- name: combine
SELECT
    account_id,
    SUM(balance) AS balance,
    SUM(entries) AS entries,
    SUM(corrections) AS corrections,
    MAX(last_event_time) AS last_event_time
FROM partials
GROUP BY account_id;

-- name: present
SELECT
    account_id,
    CAST(COALESCE(balance, 0) AS DECIMAL(18, 2)) AS balance,
    entries,
    corrections,
    last_event_time
FROM state
WHERE $1 IS NULL OR account_id = $1
ORDER BY account_id;

-- name: history
SELECT
    l.event_timestamp,
    l.processing_time,
    l.event_id,
    l.event_type,
    l.amount,
    l.corrects_event_id,
    c.event_timestamp AS corrected_event_time,
    c.amount AS corrected_amount,
    CAST(SUM(l.amount) OVER (
        ORDER BY l.event_timestamp, l.event_id ROWS UNBOUNDED PRECEDING
    ) AS DECIMAL(18, 2)) AS balance
FROM ledger l
-- The events this account's corrections name, found by those ids alone: a
-- join on `l.corrects_event_id` itself passes every one of its values,
-- NULLs included, to the scan of `c` as a filter, and with a NULL in it
-- the scan can skip no file (DataFusion 55), so it read the whole ledger.
LEFT JOIN (
    SELECT event_id, event_timestamp, amount
    FROM ledger
    WHERE event_id IN (
        SELECT corrects_event_id FROM ledger
        WHERE account_id = $1 AND corrects_event_id IS NOT NULL
    )
) c ON c.event_id = l.corrects_event_id
WHERE l.account_id = $1
ORDER BY l.event_timestamp, l.event_id;

-- name: problems
SELECT
    'correction of an unknown event' AS problem,
    l.event_id,
    concat('corrects_event_id ', COALESCE(l.corrects_event_id, 'missing')) AS detail
FROM ledger l
WHERE l.event_type = 'correction'
  -- With --key ($1), only that account's corrections.
  AND ($1 IS NULL OR l.account_id = $1)
  -- A correction without a target looks for '' (no event has an empty
  -- id: ingest quarantines it), not NULL: the ids looked up go to the
  -- scan of `ledger_all` as a filter, and one NULL among them stops it
  -- from skipping anything (see history above).
  AND NOT EXISTS (
      SELECT 1 FROM ledger_all c WHERE c.event_id = COALESCE(l.corrects_event_id, '')
  )
UNION ALL
-- Events the balance cannot use: reported, not passed over without a
-- word (silver warns about a value it could not type once, when it builds
-- it; this is in every answer). Parquet's null counts let the scan skip
-- every row group without such an event.
SELECT
    CASE
        WHEN account_id IS NULL THEN 'ledger event without an account'
        ELSE 'ledger event without an amount'
    END AS problem,
    event_id,
    CASE
        WHEN account_id IS NULL
            THEN concat(event_type, ' with no account_id: in no balance')
        ELSE concat(
            event_type,
            CASE
                WHEN event_type = 'correction' THEN ' amount_delta missing or not a decimal'
                ELSE ' amount missing, not a decimal or negative'
            END,
            ': counts as 0'
        )
    END AS detail
FROM ledger
WHERE (account_id IS NULL OR amount IS NULL)
  AND ($1 IS NULL OR account_id = $1)
ORDER BY event_id;
