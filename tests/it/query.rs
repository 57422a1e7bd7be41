//! `evlake query`: SQL over logical table names, never paths.

use std::process::Command;

use crate::common::*;
use crate::silver::query_csv;

#[test]
fn query_reads_bronze_by_its_logical_name() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ingest_sample_batches(&lake);
    let o = run(
        &lake,
        &[
            "query",
            "SELECT CAST(event_date AS VARCHAR) AS d, count(*) AS n FROM bronze_events GROUP BY 1 ORDER BY 1",
            "--format",
            "csv",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let got: std::collections::BTreeMap<String, u64> = text
        .lines()
        .skip(1)
        .map(|l| {
            let (d, n) = l.split_once(',').unwrap();
            (d.to_string(), n.parse().unwrap())
        })
        .collect();
    assert_eq!(got, expected_counts(&expected()["partitions"]));
    // A correlated NOT IN keeps SQL's rows (a NULL among the subquery's
    // rows, or on the left, passes none), as its NOT EXISTS does.
    let not_in = query_csv(
        &lake,
        "SELECT count(*) FROM bronze_events e WHERE e.page_url NOT IN (SELECT b.page_url FROM \
         bronze_events b WHERE b.user_id <> e.user_id AND b.event_date = e.event_date)",
    );
    let not_exists = query_csv(
        &lake,
        "SELECT count(*) FROM bronze_events e WHERE NOT EXISTS (SELECT 1 FROM bronze_events b \
         WHERE b.user_id <> e.user_id AND b.event_date = e.event_date AND (b.page_url = \
         e.page_url OR b.page_url IS NULL OR e.page_url IS NULL))",
    );
    assert_eq!(not_in, not_exists);
    // A count of a user's purchases is 0 for a user with none (DataFusion
    // 55 lost such users, joining by the correlation), as NOT EXISTS says.
    let no_purchase = query_csv(
        &lake,
        "SELECT count(*) FROM (SELECT DISTINCT user_id FROM bronze_events) u WHERE 0 IN \
         (SELECT count(*) FROM bronze_events b WHERE b.user_id = u.user_id AND b.event_type = \
         'purchase')",
    );
    let none = query_csv(
        &lake,
        "SELECT count(*) FROM (SELECT DISTINCT user_id FROM bronze_events) u WHERE NOT EXISTS \
         (SELECT 1 FROM bronze_events b WHERE b.user_id = u.user_id AND b.event_type = \
         'purchase')",
    );
    assert_eq!(no_purchase, none);
    assert_ne!(none, ["0"]);
    // The top row of each outer row's rows, by a subquery with ORDER BY
    // and LIMIT 1 (which DataFusion 55 plans and cannot run), is the row
    // a window numbers first.
    let top = query_csv(
        &lake,
        "SELECT CAST(d.event_date AS VARCHAR) AS d, (SELECT b.event_id FROM bronze_events b \
         WHERE b.event_date = d.event_date ORDER BY b.event_timestamp DESC, b.event_id DESC \
         LIMIT 1) AS last_event FROM (SELECT DISTINCT event_date FROM bronze_events) d ORDER BY 1",
    );
    let numbered = query_csv(
        &lake,
        "SELECT CAST(event_date AS VARCHAR) AS d, event_id AS last_event FROM (SELECT \
         event_date, event_id, row_number() OVER (PARTITION BY event_date ORDER BY \
         event_timestamp DESC, event_id DESC) AS r FROM bronze_events) WHERE r = 1 ORDER BY 1",
    );
    assert_eq!(top, numbered);
    assert_eq!(top.len(), expected_counts(&expected()["partitions"]).len());
    // A FULL JOIN's USING key is SQL's, from either side: DataFusion 55
    // gave the left's, empty for the row only the right side has.
    assert_eq!(
        query_csv(
            &lake,
            "SELECT CAST(event_date AS VARCHAR) AS d, x.note FROM (SELECT DISTINCT event_date \
             FROM bronze_events) e FULL JOIN (SELECT DATE '2000-01-01' AS event_date, 'outside' \
             AS note) x USING (event_date) WHERE x.note IS NOT NULL"
        ),
        ["2000-01-01,outside"]
    );

    let o = run(
        &lake,
        &[
            "query",
            "SELECT arrow_typeof(event_date) AS t FROM bronze_events LIMIT 1",
            "--format",
            "json",
        ],
    );
    assert_eq!(
        String::from_utf8(o.stdout).unwrap().trim(),
        r#"{"t":"Date32"}"#
    );

    for bad in [
        "SELEC 1",
        "SELECT nope FROM bronze_events",
        "SELECT * FROM no_such_table",
    ] {
        let o = run(&lake, &["query", bad]);
        assert_eq!(exit_code(&o), 2, "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains("bad query"), "{}", stderr(&o));
    }
    // SQL that fails on the rows it reads is the query's fault too: exit
    // 2 (1 is for the machine's errors), with DataFusion's message once.
    for (bad, says) in [
        (
            "SELECT CAST(event_id AS INT) FROM bronze_events",
            "query failed: Arrow error: Cast error: Cannot cast string",
        ),
        (
            "SELECT CAST(event_id AS INT) FROM bronze_events",
            "(TRY_CAST gives NULL for a value that does not convert)",
        ),
        (
            "SELECT 1 / 0",
            "query failed: Arrow error: Divide by zero error (an integer or decimal `/` or \
             `%` by 0; `x / NULLIF(d, 0)` gives NULL instead)\n",
        ),
        (
            "SELECT source_line * 4611686018427387904 AS big FROM bronze_events",
            "query failed: Arrow error: Arithmetic overflow: Overflow happened on: ",
        ),
        (
            "SELECT sum(source_line) + 9223372036854775807 FROM bronze_events",
            "(an integer's `+`, `-` or `*` beyond its type's range, about ±2.1e9 for an INT and \
             ±9.2e18 for a BIGINT, or a DECIMAL's beyond 38 digits: compute it wider, `CAST(x \
             AS BIGINT) * y`, `CAST(x AS DECIMAL(38, 0)) * y`, or as a DOUBLE, `CAST(x AS \
             DOUBLE) * y`)\n",
        ),
        (
            "SELECT count(*) FROM bronze_events WHERE event_date > '2024-03-15 12:00'",
            "Cannot cast string '2024-03-15 12:00' to value of Date32 type (a DATE is written \
             'YYYY-MM-DD', '2024-03-15', with no time of day: compare a time with a \
             timestamp, event_timestamp; TRY_CAST gives NULL",
        ),
        (
            "SELECT CAST(concat(CAST(event_date AS VARCHAR), ' 10:00') AS TIMESTAMP) FROM \
             bronze_events",
            "error parsing time (text of a time without seconds, '2024-03-15 10:00', is read \
             with `to_timestamp(x, '%Y-%m-%d %H:%M')`; TRY_CAST gives NULL",
        ),
    ] {
        let o = run(&lake, &["query", bad]);
        assert_eq!(exit_code(&o), 2, "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{bad}: {}", stderr(&o));
        assert_eq!(
            stderr(&o).matches("Arrow error").count(),
            1,
            "{}",
            stderr(&o)
        );
    }
    // An integer `+`, `-` or `*` beyond BIGINT failed above where DataFusion
    // wraps round; computed wider as the hint says, it is the whole number.
    // Within range, the column keeps its name and type.
    assert_eq!(
        query_csv(
            &lake,
            "SELECT CAST(max(source_line) AS DECIMAL(38, 0)) * 4611686018427387904 = \
             CAST(max(source_line) AS DECIMAL(38, 0)) * CAST(4611686018427387904 AS \
             DECIMAL(38, 0)) AS same FROM bronze_events"
        ),
        ["true"]
    );
    let o = run(
        &lake,
        &[
            "query",
            "SELECT source_line + 1, arrow_typeof(source_line * 2) AS t FROM bronze_events \
             ORDER BY source_line + 1 LIMIT 1",
            "--format",
            "json",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        r#"{"bronze_events.source_line + Int64(1)":2,"t":"Int64"}"#,
        "{}",
        stderr(&o)
    );
    // The string functions SQL users reach for plan, in both their call
    // and their SQL-standard forms (`SUBSTRING(.. FROM .. FOR ..)`,
    // `POSITION(.. IN ..)`), with regular expressions and rounding.
    assert_eq!(
        query_csv(
            &lake,
            "SELECT substr('evt-00068', 5), SUBSTRING('evt-00068' FROM 5 FOR 2), \
             POSITION('-' IN 'evt-00068'), left('evt-00068', 3), lpad('7', 3, '0'), \
             regexp_replace('evt-00068', '[0-9]+', 'N'), round(2.345, 2), \
             character_length('café')"
        ),
        ["00068,00,4,evt,007,evt-N,2.35,4"]
    );
    // A part of a date DataFusion does not take says what does its job,
    // or which parts it takes.
    for (bad, says) in [
        (
            "SELECT extract(century FROM event_date) FROM bronze_events",
            "Date part 'CENTURY' not supported (the century: `(date_part('year', d) - 1) / 100 \
             + 1`",
        ),
        (
            "SELECT count(*) FROM bronze_events WHERE event_id LIKE 'a!%' ESCAPE '!'",
            "LIKE does not support escape_char other than the backslash (\\) (write the \
             pattern with `\\` as its escape, the default: `x LIKE '%100\\%'` for a text \
             that ends in `100%`)",
        ),
        (
            "SELECT extract(julian FROM event_date) FROM bronze_events",
            "Date part 'JULIAN' not supported (DataFusion's parts: 'year', 'quarter',",
        ),
        // A NOT IN whose NULLs DataFusion 55 would get wrong, silently,
        // inside another expression.
        (
            "SELECT count(*) FROM bronze_events e WHERE (e.page_url NOT IN (SELECT b.page_url \
             FROM bronze_events b)) IS NULL",
            "`e.page_url NOT IN (subquery)` inside another expression (`IS NULL`, `=`, ...): \
             DataFusion 55 gets its NULLs wrong",
        ),
    ] {
        run_says(&lake, &["query", bad], 2, says);
    }
    assert_eq!(
        query_csv(
            &lake,
            "SELECT 'a 100%' LIKE '%100\\%', 'a 1000' LIKE '%100\\%'"
        ),
        ["true,false"]
    );
    assert_eq!(
        query_csv(
            &lake,
            "SELECT (date_part('year', DATE '2000-06-01') - 1) / 100 + 1, \
             (date_part('year', DATE '2001-01-01') - 1) / 100 + 1, \
             (date_part('year', DATE '2024-01-01') - 1) / 1000 + 1, \
             date_part('year', DATE '2024-01-01') / 10"
        ),
        ["20,21,3,202"]
    );
    // A pattern that is no regular expression is the query's fault too,
    // whether the optimizer meets it (a constant) or a row does.
    for bad in [
        "SELECT regexp_like(event_id, '[') FROM bronze_events",
        "SELECT event_id ~ '(' FROM bronze_events",
        "SELECT regexp_replace(event_id, '(', 'x') FROM bronze_events",
        "SELECT regexp_count(event_id, '(') FROM bronze_events",
    ] {
        let o = run_says(
            &lake,
            &["query", bad],
            2,
            "(the pattern is a regular expression: write `\\(`, `\\[` or `\\.` to match \
             `(`, `[` or `.` as text)",
        );
        assert!(
            !stderr(&o).contains("Optimizer rule"),
            "{bad}: {}",
            stderr(&o)
        );
    }
    // A time beyond the years a date can be written in (seconds read
    // from milliseconds) is exit 2 in every text format, with nothing on
    // stdout: JSON and a table wrote "ERROR: ..." as its value, exit 0.
    for format in ["csv", "json", "table"] {
        let o = run_says(
            &lake,
            &[
                "query",
                "SELECT to_timestamp_seconds(2180000000000000) AS t",
                "--format",
                format,
            ],
            2,
            "column `t` holds a time (2180000000000000, in Timestamp(s, \"UTC\")) outside the years a \
             date can be written in",
        );
        assert!(o.stdout.is_empty(), "{format}");
    }
    // Parquet keeps a time of milliseconds as it is; one of seconds it
    // writes in microseconds, which hold ~292,000 years.
    let o = run(
        &lake,
        &[
            "query",
            "SELECT to_timestamp_millis(9000000000000000000) AS t",
            "--format",
            "parquet",
        ],
    );
    assert!(o.status.success() && !o.stdout.is_empty());
    let o = run_says(
        &lake,
        &[
            "query",
            "SELECT to_timestamp_seconds(2180000000000000) AS t",
            "--format",
            "parquet",
        ],
        2,
        "column `t` holds a time (Timestamp(s, \"UTC\")) past the years Parquet's microseconds \
         hold",
    );
    assert!(o.stdout.is_empty());
    // A time without seconds, or with a one-digit hour, is read as
    // PostgreSQL and DuckDB read it (arrow's parser refused it).
    assert_eq!(
        query_csv(
            &lake,
            "SELECT count(*) FILTER (WHERE event_timestamp >= '2024-03-15 10:00') = \
             count(*) FILTER (WHERE event_timestamp >= TIMESTAMP '2024-03-15 10:00:00') \
             AND count(*) FILTER (WHERE event_timestamp < '2024-03-15 9:30') > 0 \
             AND count(*) FILTER (WHERE event_timestamp >= '2024-03-15 10:00') > 0 \
             FROM bronze_events"
        ),
        ["true"]
    );
    // An aggregate whose answer the order does not change, with an
    // ORDER BY in its call, under GROUP BY, answers as without it, under
    // the name written (DataFusion 55's grouped avg, count, median,
    // stddev and var panicked on an assertion, exit 1; min and max failed
    // on a column count).
    assert_eq!(
        query_csv(
            &lake,
            "SELECT count(*) > 1, count(*) FILTER (WHERE (a IS DISTINCT FROM a2) OR c <> c2 OR \
             (v IS DISTINCT FROM v2) OR m <> m2 OR l <> l2 OR t <> t2) FROM (SELECT \
             event_type, avg(source_line ORDER BY event_id) AS a, avg(source_line) AS a2, \
             count(event_id ORDER BY source_line DESC) AS c, count(event_id) AS c2, \
             var(source_line ORDER BY event_id) AS v, var(source_line) AS v2, \
             median(source_line ORDER BY event_id) AS m, median(source_line) AS m2, \
             min(event_id ORDER BY source_line) AS l, min(event_id) AS l2, sum(source_line \
             ORDER BY event_id DESC) AS t, sum(source_line) AS t2 FROM bronze_events GROUP BY \
             event_type)"
        ),
        ["true,0"]
    );
    let o = run(
        &lake,
        &[
            "query",
            "SELECT event_type, avg(source_line ORDER BY event_id) FROM bronze_events GROUP BY \
             event_type",
            "--format",
            "csv",
        ],
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with(
            "event_type,avg(bronze_events.source_line) ORDER BY [bronze_events.event_id ASC \
             NULLS LAST]\n"
        ),
        "{}",
        stderr(&o)
    );
    // A CAST beside `*` is named as written (DataFusion 55 named it as
    // its operand, a name twice, and failed).
    let o = run(
        &lake,
        &[
            "query",
            "SELECT *, CAST(event_date AS VARCHAR) FROM bronze_events LIMIT 1",
            "--format",
            "csv",
        ],
    );
    let header = String::from_utf8_lossy(&o.stdout);
    assert!(
        header
            .lines()
            .next()
            .is_some_and(|h| h.ends_with(",event_date,CAST(event_date AS VARCHAR)")),
        "{header}{}",
        stderr(&o)
    );
    // A grouped call DataFusion refuses only as it runs is the query's
    // fault, exit 2 (it was exit 1, "query failed").
    run_says(
        &lake,
        &[
            "query",
            "SELECT event_type, nth_value(event_id, source_line) FROM bronze_events GROUP BY              event_type",
        ],
        2,
        "bad query: This feature is not implemented: nth_value not supported for n: ",
    );
    // `IS DISTINCT FROM` before AND or OR reads as SQL reads it, not as
    // DataFusion's parser did, taking all that follows into its right
    // side (`source_line IS DISTINCT FROM (3 AND event_type = ...)`, an
    // error about types).
    assert_eq!(
        query_csv(
            &lake,
            "SELECT count(*) > 0, count(*) = (SELECT count(*) FROM bronze_events WHERE \
             (source_line IS DISTINCT FROM 3) AND event_type = 'purchase') FROM bronze_events \
             WHERE source_line IS DISTINCT FROM 3 AND event_type = 'purchase'"
        ),
        ["true,true"]
    );
    // Slips from other SQL dialects say what they are (exit 2): a string
    // in double quotes, another engine's JSON function, a member of the
    // JSON text `properties` read as a field. A misspelt column does not
    // get the quotes' hint.
    for (bad, says) in [
        (
            r#"SELECT count(*) FROM bronze_events WHERE event_type = "purchase""#,
            "No field named purchase.",
        ),
        (
            r#"SELECT count(*) FROM bronze_events WHERE event_type = "purchase""#,
            "(in SQL, double quotes name a column: a string takes single quotes, 'purchase')",
        ),
        (
            r#"SELECT count(*) FROM bronze_events WHERE event_date = "2024-03-15""#,
            "a string takes single quotes, '2024-03-15')",
        ),
        (
            "SELECT json_extract(properties, '$.amount') FROM bronze_events",
            "`json_as_text(properties, 'amount')` (its value as text, of any type; or \
             `properties->>'amount'`)",
        ),
        (
            "SELECT JSON_VALUE(properties, '$.amount') FROM bronze_events",
            "they take keys, not a JSONPath such as '$.amount')",
        ),
        (
            "SELECT count_if(event_type = 'purchase') FROM bronze_events",
            "Invalid function 'count_if' (`count_if` is another engine's function; in \
             DataFusion: `count(*) FILTER (WHERE condition)`)",
        ),
        (
            "SELECT date_format(event_timestamp, 'yyyy-MM-dd') FROM bronze_events",
            "the time format 'yyyy-MM-dd' has no `%` code, so it gives every row that same \
             text: DataFusion's time formats (`to_char`, `date_format`) are strftime's",
        ),
        (
            "SELECT count(*) FROM bronze_events TABLESAMPLE (10 PERCENT)",
            "a table sample (TABLESAMPLE, SAMPLE), which DataFusion would pass over, reading \
             every row; for a sample, filter: `WHERE random() < 0.1`",
        ),
        (
            "SELECT count(*) FROM bronze_events WHERE event_date = 20240315",
            "a DATE compared with the integer 20240315, which DataFusion reads as 20240315 days \
             after 1970-01-01, in the year 57386, so it matches no date you meant: write DATE \
             '2024-03-15' (or '2024-03-15')",
        ),
        (
            "SELECT properties.amount FROM bronze_events",
            "(`properties` and `extra` are JSON text: read a member with",
        ),
        (
            "SELECT properties['amount'] FROM bronze_events",
            "(`properties` and `extra` are JSON text: read a member with",
        ),
    ] {
        let o = run(&lake, &["query", bad]);
        assert_eq!(exit_code(&o), 2, "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{bad}: {}", stderr(&o));
    }
    let o = run(&lake, &["query", "SELECT evnt_type FROM bronze_events"]);
    assert_eq!(exit_code(&o), 2, "{}", stderr(&o));
    assert!(!stderr(&o).contains("quotes"), "{}", stderr(&o));
    // What the hint says reads the member.
    assert_eq!(
        query_csv(
            &lake,
            "SELECT json_as_text(properties, 'amount'), properties->>'amount', \
             json_as_text('{\"a\":{\"b\":1}}', 'a', 'b') FROM bronze_events \
             WHERE event_type = 'purchase' ORDER BY event_id LIMIT 1"
        ),
        ["19.99,19.99,1"]
    );
    // A slip in a table's name gets the closest name; anything else, the
    // list of the lake's tables.
    let o = run(&lake, &["query", "SELECT count(*) FROM bronze_event"]);
    assert!(
        stderr(&o).contains("(did you mean `bronze_events`? `evlake tables` lists"),
        "{}",
        stderr(&o)
    );
    let o = run(&lake, &["query", "SELECT * FROM no_such_table"]);
    assert!(
        stderr(&o).contains("(the lake's tables: bronze_events, bronze_late, quarantine, events, "),
        "{}",
        stderr(&o)
    );

    // Tables with fixed columns and no rows yet are empty, not unknown;
    // a derived table not built yet says what builds it.
    assert_eq!(
        crate::silver::query_csv(
            &lake,
            "SELECT count(*) FROM bronze_late UNION ALL SELECT count(*) FROM quarantine \
             WHERE reason = 'no such reason'"
        ),
        ["0", "0"]
    );
    let o = run(&lake, &["query", "SELECT count(*) FROM sessions"]);
    assert_eq!(exit_code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("`sessions` has no rows in this lake yet: `evlake run` builds silver"),
        "{}",
        stderr(&o)
    );
    // A layer is not a schema: the hint names the table as it is, and
    // does not claim a built table is missing.
    let o = run(&lake, &["query", "SELECT count(*) FROM silver.sessions"]);
    assert_eq!(exit_code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("`FROM sessions`, not `FROM silver.sessions`"),
        "{}",
        stderr(&o)
    );
    assert!(
        !stderr(&o).contains("no rows in this lake yet"),
        "{}",
        stderr(&o)
    );

    // A ROLLUP over a column a filter fixes to one value sorts its total
    // rows, NULL there, as SQL does (DataFusion 55 took the column to be
    // that value in every row, and left the rows unsorted).
    let rows = crate::silver::query_csv(
        &lake,
        "SELECT event_type, user_id, count(*) FROM bronze_events WHERE event_type = 'purchase' \
         GROUP BY ROLLUP (event_type, user_id) ORDER BY event_type NULLS LAST, user_id NULLS \
         FIRST",
    );
    let total: u64 = rows
        .iter()
        .filter(|r| r.starts_with("purchase,") && !r.starts_with("purchase,,"))
        .map(|r| r.rsplit(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(total > 0, "{rows:?}");
    let mut sorted = rows.clone();
    sorted[1..rows.len() - 1].sort();
    assert_eq!(rows, sorted, "{rows:?}");
    assert_eq!(rows[0], format!("purchase,,{total}"), "{rows:?}");
    assert_eq!(rows[rows.len() - 1], format!(",,{total}"), "{rows:?}");

    // So does a LEFT JOIN whose right side has such a column: its
    // unmatched rows, NULL there, first.
    let tagged = crate::silver::query_csv(
        &lake,
        "SELECT b.user_id, t.tag FROM (SELECT DISTINCT user_id FROM bronze_events) b LEFT JOIN \
         (SELECT DISTINCT user_id, 'buyer' AS tag FROM bronze_events WHERE event_type = \
         'purchase') t ON t.user_id = b.user_id ORDER BY t.tag NULLS FIRST, b.user_id",
    );
    let buyers = tagged.iter().filter(|r| r.ends_with(",buyer")).count();
    assert!(buyers > 0 && buyers < tagged.len(), "{tagged:?}");
    let mut sorted = tagged.clone();
    sorted.sort_by_key(|r| (r.ends_with(",buyer"), r.clone()));
    assert_eq!(tagged, sorted);

    // `AT TIME ZONE` of a lake time is that zone's clock time, as in
    // PostgreSQL and DuckDB: date_bin's days are New York's (DataFusion
    // 55 cut them at UTC's midnight), a CAST keeps Tokyo's clock (it gave
    // UTC's), and Berlin's clock time read back in Berlin is the instant
    // again, compared as one (DataFusion 55 compared it an hour off).
    let rows = crate::silver::query_csv(
        &lake,
        "SELECT count(*), count(*) FILTER (WHERE date_bin(INTERVAL '1 day', event_timestamp AT \
         TIME ZONE 'America/New_York') = date_trunc('day', event_timestamp AT TIME ZONE \
         'America/New_York')), count(*) FILTER (WHERE CAST(event_timestamp AT TIME ZONE \
         'Asia/Tokyo' AS TIMESTAMP) = CAST(event_timestamp AS TIMESTAMP) + INTERVAL '9 hours'), \
         count(*) FILTER (WHERE (event_timestamp AT TIME ZONE 'Europe/Berlin') AT TIME ZONE \
         'Europe/Berlin' >= TIMESTAMP '2024-03-15 00:00:00'), count(*) FILTER (WHERE \
         event_timestamp >= '2024-03-15T00:00:00Z') FROM bronze_events",
    );
    let counts: Vec<u64> = rows[0].split(',').map(|c| c.parse().unwrap()).collect();
    assert!(
        counts[0] > 0 && counts[4] > 0 && counts[4] < counts[0],
        "{rows:?}"
    );
    assert_eq!(counts[1..4], [counts[0], counts[0], counts[4]], "{rows:?}");

    // A CAST that drops digits stays where it is in a comparison: the
    // sample's 19.99 EUR purchase is 19 as an integer (DataFusion 55
    // moved the cast to the other side and asked for amounts of 19.00).
    assert_eq!(
        crate::silver::query_csv(
            &lake,
            "WITH p AS (SELECT parse_amount(properties->>'amount') AS amount FROM \
             bronze_events WHERE event_type = 'purchase') SELECT count(*) FILTER (WHERE \
             CAST(amount AS BIGINT) = 19), count(*) FILTER (WHERE CAST(amount AS DECIMAL(18,1)) \
             IN (20.0, 5.0)) FROM p"
        ),
        ["1,2"]
    );

    // A filter on a literal column of a UNION of totals keeps only its
    // branch (DataFusion 55 moved `'all' = 'buyers'` below the count,
    // which then counted no rows and still gave `all,0`).
    assert_eq!(
        crate::silver::query_csv(
            &lake,
            "WITH seg AS (SELECT 'all' AS segment, count(*) AS n FROM bronze_events UNION ALL \
             SELECT 'buyers', count(DISTINCT user_id) FROM bronze_events WHERE event_type = \
             'purchase') SELECT segment FROM seg WHERE segment = 'buyers'"
        ),
        ["buyers"]
    );

    // A CTE whose column list names a body of one name twice runs (a
    // recursive one's `SELECT 1, 1` too); a CTE named where it cannot be
    // says so, not that the lake has no such table (exit 2).
    assert_eq!(
        crate::silver::query_csv(
            &lake,
            "WITH RECURSIVE r(n, k) AS (SELECT 1, 1 UNION ALL SELECT n + 1, k * 2 FROM r WHERE \
             n < 4), u(a, b) AS (SELECT user_id, user_id FROM bronze_events LIMIT 1) SELECT \
             sum(k), (SELECT count(*) FROM u WHERE a = b) FROM r"
        ),
        ["15,1"]
    );
    for (sql, said) in [
        (
            "WITH r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT n FROM r",
            "(`r` is a CTE of this query: a CTE names only those before it, and itself only \
             under `WITH RECURSIVE r AS (start UNION ALL step)`)",
        ),
        (
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3 UNION \
             ALL SELECT n + 10 FROM r WHERE n < 2) SELECT n FROM r",
            "itself, under WITH RECURSIVE, only in the last part of its body, one SELECT after \
             `UNION [ALL]`, as PostgreSQL's do)",
        ),
        (
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT (SELECT max(n) FROM r) + 1 FROM \
             r WHERE n < 3) SELECT n FROM r",
            "(a recursive CTE named in a subquery of its own step, which PostgreSQL refuses \
             too: name it only in the step's FROM",
        ),
    ] {
        let o = run(&lake, &["query", sql]);
        assert_eq!(exit_code(&o), 2, "{sql}: {}", stderr(&o));
        assert!(stderr(&o).contains(said), "{sql}: {}", stderr(&o));
        assert!(
            !stderr(&o).contains("the lake's tables") && !stderr(&o).contains("a bug in"),
            "{sql}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn query_formats_every_table_and_tables_lists_them() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    run_sample_batches(&lake);
    let before = commits(&lake);
    let sql = "SELECT CAST(event_date AS VARCHAR) AS d, events FROM daily_metrics \
               WHERE event_date <= DATE '2024-03-15' ORDER BY 1";
    let out = |format: &str| {
        let o = run(&lake, &["query", sql, "--format", format]);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let n15 = expected()["daily_metrics"]["2024-03-15"]["events"].clone();
    assert_eq!(
        out("csv"),
        format!("d,events\n2024-03-14,1\n2024-03-15,{n15}\n")
    );
    assert_eq!(
        out("json"),
        format!(
            "{{\"d\":\"2024-03-14\",\"events\":1}}\n{{\"d\":\"2024-03-15\",\"events\":{n15}}}\n"
        )
    );
    // A NULL is `null` in JSON, never a missing key (a reader inferring
    // the columns from the keys would lose one NULL in every row), and an
    // empty cell in CSV.
    let nulls = "SELECT CAST(event_date AS VARCHAR) AS d, NULLIF(events, events) AS none \
                 FROM daily_metrics WHERE event_date = DATE '2024-03-14'";
    let o = run(&lake, &["query", nulls, "--format", "json"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "{\"d\":\"2024-03-14\",\"none\":null}\n",
        "{}",
        stderr(&o)
    );
    let o = run(&lake, &["query", nulls, "--format", "csv"]);
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "d,none\n2024-03-14,\n"
    );
    // An empty string is `""`, a NULL an empty field, as DuckDB, Spark and
    // PostgreSQL write them (Arrow's writer wrote both as an empty field);
    // a field with a comma, quote or line break is quoted.
    let o = run(
        &lake,
        &[
            "query",
            "SELECT '' AS \"empty, text\", CAST(NULL AS VARCHAR) AS none, 'a,\"b\"' AS q, 2 AS n",
            "--format",
            "csv",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "\"empty, text\",none,q,n\n\"\",,\"a,\"\"b\"\"\",2\n",
        "{}",
        stderr(&o)
    );
    // JSON has no NaN or infinity: Arrow writes them `null`, like a NULL,
    // so stderr says which column held them and how many (CSV keeps them).
    let ratios = "SELECT CAST(event_date AS VARCHAR) AS d, CAST(events - events AS DOUBLE) \
                  / CAST(events - events AS DOUBLE) AS r FROM daily_metrics \
                  WHERE event_date <= DATE '2024-03-15' ORDER BY 1";
    let o = run(&lake, &["query", ratios, "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("{\"d\":\"2024-03-14\",\"r\":null}"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        stderr(&o).contains("column `r`: 2 NaN or infinite value(s) are written as null"),
        "{}",
        stderr(&o)
    );
    let o = run(&lake, &["query", ratios, "--format", "csv"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "d,r\n2024-03-14,NaN\n2024-03-15,NaN\n"
    );
    assert!(!stderr(&o).contains("NaN"), "{}", stderr(&o));
    let table = out("table");
    assert!(table.contains("| d          | events |"), "{table}");
    assert!(table.contains("| 2024-03-15 | "), "{table}");
    // Data only on stdout: nothing else is printed there.
    assert_eq!(table.lines().count(), 6, "{table}");
    // No rows: CSV keeps its header (readers learn the columns; pandas
    // fails on an empty file), JSON lines are none, the table says so on
    // stderr.
    let none = "SELECT event_date, events FROM daily_metrics WHERE events < 0";
    let o = run(&lake, &["query", none, "--format", "csv"]);
    assert_eq!(String::from_utf8(o.stdout).unwrap(), "event_date,events\n");
    let o = run(&lake, &["query", none, "--format", "json"]);
    assert!(o.status.success() && o.stdout.is_empty(), "{}", stderr(&o));
    let o = run(&lake, &["query", none]);
    assert!(
        o.stdout.is_empty() && stderr(&o).contains("(no rows)"),
        "{}",
        stderr(&o)
    );

    // Every logical table is queryable by name.
    for t in [
        "bronze_events",
        "quarantine",
        "events",
        "sessions",
        "purchases",
        "searches",
        "signups",
        "cart_adds",
        "ledger",
        "daily_metrics",
        "daily_revenue_by_currency",
    ] {
        let o = run(
            &lake,
            &[
                "query",
                &format!("SELECT count(*) FROM {t}"),
                "--format",
                "csv",
            ],
        );
        assert!(o.status.success(), "{t}: {}", stderr(&o));
        let n: u64 = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(n > 0, "{t} is empty");
    }
    let q = run(
        &lake,
        &[
            "query",
            "SELECT reason, line FROM quarantine WHERE reason = 'invalid_utf8'",
            "--format",
            "csv",
        ],
    );
    assert_eq!(String::from_utf8(q.stdout).unwrap().lines().count(), 2);

    // Errors: the DataFusion message and exit 2, nothing changed.
    for bad in [
        "SELECT * FROM daily_metric",
        "SELECT revenue + FROM daily_metrics",
    ] {
        let o = run(&lake, &["query", bad]);
        assert_eq!(exit_code(&o), 2, "{bad}");
        assert!(o.stdout.is_empty());
    }
    let o = run(&lake, &["query", "SELECT * FROM daily_metric"]);
    assert!(stderr(&o).contains("daily_metric"), "{}", stderr(&o));

    // Its CSV doubles the quotes inside a quoted field: a timestamp's type
    // `Timestamp(µs, "UTC")` read back as `Timestamp(µs, UTC")"` before.
    let o = run(&lake, &["tables", "--format", "csv"]);
    let csv = String::from_utf8(o.stdout).unwrap();
    assert!(
        csv.contains("bronze_events,bronze,")
            && csv.contains(",event_timestamp,\"Timestamp(µs, \"\"UTC\"\")\",false\n"),
        "{csv}"
    );
    // `evlake tables` lists every table with columns and partitions.
    let o = run(&lake, &["tables", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let tables = json_lines(&o);
    let names: Vec<&str> = tables.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"daily_metrics")
            && names.contains(&"quarantine")
            && names.contains(&"ledger"),
        "{names:?}"
    );
    let dm = tables
        .iter()
        .find(|t| t["name"] == "daily_metrics")
        .unwrap();
    assert_eq!(
        dm["partitions"],
        expected()["daily_metrics"].as_object().unwrap().len()
    );
    let cols: Vec<&str> = dm["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for c in [
        "event_date",
        "events",
        "users",
        "sessions",
        "revenue",
        "late_events",
    ] {
        assert!(cols.contains(&c), "{cols:?}");
    }
    assert_eq!(commits(&lake), before, "reads never commit");
}

#[test]
fn a_mistyped_lake_is_an_error_not_an_empty_lake() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-lake");
    for args in [
        &["status"][..],
        &["silver"],
        &["gold"],
        &["run"],
        &["query", "SELECT 1"],
        &["tables"],
        &["lateness"],
        &["reconcile"],
        &["state", "balances", "--as-of", "2024-03-15"],
        &["history", "acct-1"],
    ] {
        let o = run(&missing, args);
        assert_eq!(exit_code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("no lake at"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    assert!(!missing.exists(), "nothing was created");
    // A file given as the lake (the input in the wrong place) says so, for
    // the commands that would create a lake too, and is left as it was.
    let file = tmp.path().join("events.jsonl");
    std::fs::write(&file, "{}\n").unwrap();
    for args in [&["status"][..], &["init"], &["ingest", "x.jsonl"], &["run"]] {
        run_says(
            &file,
            args,
            2,
            &format!(
                "--lake `{}` is a file, not a lake directory (inputs go after the command",
                file.display()
            ),
        );
    }
    // Given by $EVLAKE_LAKE, the error names the variable.
    let o = std::process::Command::new(bin())
        .arg("status")
        .env("EVLAKE_LAKE", &file)
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("$EVLAKE_LAKE `{}` is a file", file.display())),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"{}\n");
    // An object store's URL as the lake was a relative path: `ingest`
    // made `./s3:/bucket/lake` and said it committed "to s3://bucket/lake".
    for args in [&["ingest", "x.jsonl"][..], &["init"], &["status"]] {
        let o = cmd(std::path::Path::new("s3://bucket/lake"), args)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert_eq!(exit_code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(
                "--lake `s3://bucket/lake` is a URL (s3://), and a lake is a local directory: \
                 evlake reads and writes no object store. Give a local path, and copy the lake \
                 there after the run, e.g. `aws s3 sync LAKE s3://bucket/lake`; for a local \
                 directory of that name, write `./s3://bucket/lake`"
            ),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    assert!(!tmp.path().join("s3:").exists(), "nothing was created");
    // Written as a local path, such a name is one.
    let o = cmd(std::path::Path::new("./s3://bucket/lake"), &["init"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    assert!(tmp.path().join("s3:/bucket/lake/evlake.toml").is_file());
    // And an input under such a local name is read, though it looks like
    // a URL.
    std::fs::write(
        tmp.path().join("s3:/bucket/in.jsonl"),
        crate::silver::ev("e1", "page_view", "2024-03-15T10:00:00Z", "u"),
    )
    .unwrap();
    let o = cmd(
        std::path::Path::new("./s3://bucket/lake"),
        &["ingest", "s3://bucket/in.jsonl"],
    )
    .current_dir(tmp.path())
    .output()
    .unwrap();
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("1 events"), "{}", stderr(&o));
    // A lake path that is not UTF-8: DataFusion cannot read its tables, so
    // it is refused before ingest commits what silver then could not read.
    {
        use std::os::unix::ffi::OsStrExt;
        let bytes = tmp.path().join("nu").as_os_str().as_bytes().to_vec();
        let dir = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(
            &[bytes, b"\xff/lake".to_vec()].concat(),
        ));
        let input = tmp.path().join("one.jsonl");
        std::fs::write(
            &input,
            crate::silver::ev("e1", "page_view", "2024-03-15T10:00:00Z", "u"),
        )
        .unwrap();
        run_says(
            &dir,
            &["run", input.to_str().unwrap()],
            2,
            "is not UTF-8 text, and DataFusion, which reads the lake's tables, takes only UTF-8 paths",
        );
        assert!(!dir.exists(), "nothing was created");
    }
    // `init` and `ingest` create one; then the others work on it.
    ok(&missing, &["init"]);
    assert!(run(&missing, &["status"]).status.success());
}

/// `query` is read-only: INSERT INTO a lake table or COPY ... TO used to
/// write files no commit records (INSERT into the table's own directory,
/// where outside readers glob them). Both exit 2 and write nothing, as do
/// CREATE, DROP and SET.
#[test]
fn query_refuses_insert_and_copy_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ingest_sample_batch(&lake, &expected()["batches"][0]);
    let before = files_on_disk(&lake);
    let target = tmp.path().join("copy.parquet");
    for sql in [
        "INSERT INTO bronze_events SELECT * FROM bronze_events".to_string(),
        format!("COPY (SELECT 1 AS x) TO '{}'", target.display()),
        // Said as a write before DataFusion finds the row too short.
        "INSERT INTO bronze_events VALUES (1)".to_string(),
        "DELETE FROM bronze_events".to_string(),
        "UPDATE bronze_events SET user_id = 'x'".to_string(),
        "TRUNCATE bronze_events".to_string(),
    ] {
        let o = run(&lake, &["query", &sql]);
        assert_eq!(exit_code(&o), 2, "{sql}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with(
                "error: evlake query is read-only: INSERT, UPDATE, DELETE, MERGE, TRUNCATE and \
                 COPY are not allowed"
            ),
            "{sql}: {}",
            stderr(&o)
        );
    }
    assert_eq!(
        files_on_disk(&lake),
        before,
        "no file written into the lake"
    );
    assert!(!target.exists());
    // CREATE, DROP and SET would change only the query's own session:
    // `DROP TABLE bronze_events` exiting 0 would look as if it had
    // dropped it.
    for sql in [
        "DROP TABLE bronze_events",
        "CREATE TABLE t AS SELECT 1 AS x",
        "CREATE VIEW v AS SELECT 1 AS x",
        "SET datafusion.execution.batch_size = 10",
    ] {
        run_says(
            &lake,
            &["query", sql],
            2,
            "evlake query runs one query, read-only: CREATE, DROP and SET would change nothing",
        );
    }
    // Two statements: one per command, said plainly (a trailing `;` is
    // fine).
    run_says(
        &lake,
        &["query", "SELECT 1; SELECT 2"],
        2,
        "evlake query runs one SQL statement: give each its own `evlake query`",
    );
    // A query file of comments alone (one whose query was commented out)
    // is as empty as an empty one.
    // A format named in capitals is the format.
    let o = run(&lake, &["query", "SELECT 1 AS a", "--format", "JSON"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "{\"a\":1}\n",
        "{}",
        stderr(&o)
    );
    for sql in ["/* SELECT 2 */\n-- SELECT 1", " ; ;"] {
        run_says(
            &lake,
            &["query", sql],
            2,
            "error: no SQL given: the query holds only comments or `;`\n",
        );
    }
    assert_eq!(files_on_disk(&lake), before);
    // Reading, SHOW, DESCRIBE and EXPLAIN still work.
    for sql in [
        "SELECT count(*) FROM bronze_events;",
        "SHOW TABLES",
        "SHOW ALL",
        "DESCRIBE bronze_events",
        "EXPLAIN SELECT 1",
    ] {
        let o = run(&lake, &["query", sql]);
        assert_eq!(exit_code(&o), 0, "{sql}: {}", stderr(&o));
    }
}

/// A result CSV cannot hold (a list or struct column), or Parquet (an
/// interval), is refused before anything is written, naming the column,
/// with or without rows: not a header on stdout, then Arrow's CSV error.
#[test]
fn a_column_the_format_cannot_hold_is_refused_before_any_output() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ingest_sample_batch(&lake, &expected()["batches"][0]);
    for filter in ["", " WHERE false"] {
        let sql = format!("SELECT event_id, make_array(1, 2) AS pair FROM bronze_events{filter}");
        let o = run_says(
            &lake,
            &["query", &sql, "--format", "csv"],
            2,
            "--format csv cannot hold column `pair` (List(Int64)): use --format json or parquet",
        );
        assert!(
            o.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    let o = run(
        &lake,
        &[
            "query",
            "SELECT make_array(1, 2) AS pair",
            "--format",
            "json",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "{\"pair\":[1,2]}\n");
    // A JSON member as `->` gives it (a union) says to read it as text,
    // in every format but the table (JSON's writer failed, exit 1, and
    // Parquet's panicked, exit 101).
    for format in ["csv", "json", "parquet"] {
        let o = run_says(
            &lake,
            &[
                "query",
                "SELECT properties->'product_id' AS p FROM bronze_events",
                "--format",
                format,
            ],
            2,
            &format!(
                "--format {format} cannot hold column `p` (a JSON member as `->` gives it, a \
                 union of types): read it as text with `->>`"
            ),
        );
        assert!(o.stdout.is_empty(), "{format}: {} bytes", o.stdout.len());
    }
    run_says(
        &lake,
        &[
            "query",
            "SELECT make_array(properties->'product_id') AS ps FROM bronze_events",
            "--format",
            "json",
        ],
        2,
        "--format json cannot hold column `ps` (a JSON member as `->` gives it",
    );
    // JSON holds a map whose keys are text, and not one whose keys are
    // numbers (arrow's writer failed, exit 1), alone or in a list.
    let o = run(
        &lake,
        &["query", "SELECT map(['a'], [1]) AS m", "--format", "json"],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "{\"m\":{\"a\":1}}\n");
    for (column, t) in [
        ("map([1], [2]) AS m", "`m` (Map("),
        ("make_array(map([1], [2])) AS ms", "`ms` (List(Map("),
    ] {
        let o = run(
            &lake,
            &[
                "query",
                &format!("SELECT event_id, {column} FROM bronze_events"),
                "--format",
                "json",
            ],
        );
        assert_eq!(exit_code(&o), 2, "{}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("--format json cannot hold column {t}"))
                && stderr(&o).contains(
                    "a JSON object's keys are text and this map's are not; use --format \
                     parquet, which keeps it as it is, or --format table"
                ),
            "{}",
            stderr(&o)
        );
        assert!(o.stdout.is_empty(), "{} bytes", o.stdout.len());
    }
    // Nor can Parquet hold an interval of months, days and nanoseconds,
    // alone or in a list: refused before its first bytes (a 4-byte file
    // and a hint about damaged files, before).
    for (column, t) in [
        ("INTERVAL '1 day' AS gap", "`gap` (Interval(MonthDayNano))"),
        (
            "make_array(INTERVAL '2 hours') AS gaps",
            "`gaps` (List(Interval(MonthDayNano)))",
        ),
    ] {
        let o = run_says(
            &lake,
            &[
                "query",
                &format!("SELECT event_id, {column} FROM bronze_events"),
                "--format",
                "parquet",
            ],
            2,
            &format!(
                "--format parquet cannot hold column {t}: the Parquet writer takes no interval"
            ),
        );
        assert!(o.stdout.is_empty(), "{} bytes", o.stdout.len());
    }
    // A time difference (a duration) it holds.
    let o = run(
        &lake,
        &[
            "query",
            "SELECT max(event_timestamp) - min(event_timestamp) AS span FROM bronze_events",
            "--format",
            "parquet",
        ],
    );
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    assert_eq!(&o.stdout[..4], b"PAR1");
}

/// `query` takes the memory limit as the other commands do: the flag,
/// else `engine.memory_limit` in evlake.toml, else 2G.
#[test]
fn query_takes_the_memory_limit_from_the_flag_or_evlake_toml() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ingest_sample_batch(&lake, &expected()["batches"][0]);
    let sort = "SELECT * FROM bronze_events ORDER BY properties";
    let rows = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).lines().count();
    let o = run(&lake, &["query", sort, "--format", "csv"]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        rows(&o),
        1 + expected()["batches"][0]["events"].as_u64().unwrap() as usize
    );
    // A pool too small for the sort's first batch: DataFusion's message,
    // and a hint of what to do about it.
    let o = run_says(
        &lake,
        &["query", sort, "--format", "csv", "--memory-limit", "1K"],
        1,
        "Resources exhausted",
    );
    assert!(
        stderr(&o).contains("\nhint: this needed more memory than the memory limit"),
        "{}",
        stderr(&o)
    );
    std::fs::write(
        lake.join("evlake.toml"),
        "[engine]\nmemory_limit = \"1K\"\n",
    )
    .unwrap();
    run_says(
        &lake,
        &["query", sort, "--format", "csv"],
        1,
        "Resources exhausted",
    );
    // The flag wins over the file.
    let o = run(
        &lake,
        &["query", sort, "--format", "csv", "--memory-limit", "64M"],
    );
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    std::fs::write(
        lake.join("evlake.toml"),
        "[engine]\nmemory_limit = \"lots\"\n",
    )
    .unwrap();
    run_says(&lake, &["query", "SELECT 1"], 2, "engine.memory_limit");
}

/// Readers take no lock, and a writer deletes the files its commit
/// replaced right after committing. A query planned before a `silver
/// --full` commit, run after it, finds its files gone: it reads the lake
/// again as the new commit has it and answers (it had answered 0 rows,
/// having listed none of the files it expected). A committed file missing
/// with no commit since is an error naming it, not an answer from the
/// rest of the table.
#[test]
fn a_query_whose_files_a_commit_replaced_reads_the_new_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ingest_sample_batches(&lake);
    crate::silver::silver(&lake, &[]);
    let sql = "SELECT count(*) AS n, count(DISTINCT session_id) AS s FROM events";
    let want = crate::silver::query_csv(&lake, sql);
    let before = committed_files_under(&lake, "silver/events");
    assert!(!before.is_empty());

    let (child, go) = spawn_paused(
        &lake,
        &["query", sql, "--format", "csv"],
        "query-planned",
        tmp.path(),
    );
    crate::silver::silver(&lake, &["--full"]);
    let after = committed_files_under(&lake, "silver/events");
    assert!(
        before
            .iter()
            .all(|f| !after.contains(f) && !lake.join(f).exists()),
        "the rebuild replaced and deleted every file the query planned on"
    );
    std::fs::write(&go, b"").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("Retrying"), "{}", stderr(&o));
    let got: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect();
    assert_eq!(got, want);

    let gone = &after[after.len() / 2];
    std::fs::remove_file(lake.join(gone)).unwrap();
    let o = run(&lake, &["query", sql, "--format", "csv"]);
    assert_eq!(exit_code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(gone.as_str()) && stderr(&o).contains("not on disk"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
}

/// `--format csv` and `json` write every row as it comes (a big result in
/// bounded memory); `table` lays out at most 10,000 rows and says on
/// stderr how many there were. A reader that stops early (`| head`) ends
/// the command quietly, exit 0.
#[test]
fn query_streams_every_row_and_the_table_shows_the_first_10000() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ok(&lake, &["ingest", &sample("2024-03-15.jsonl")]);
    let sql = "SELECT value AS n FROM generate_series(1, 10005)";
    let csv = run(&lake, &["query", sql, "--format", "csv"]);
    assert!(csv.status.success(), "{}", stderr(&csv));
    let lines: Vec<String> = String::from_utf8(csv.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 10_006, "a header and every row");
    assert_eq!((lines[0].as_str(), lines[10_005].as_str()), ("n", "10005"));
    let json = run(&lake, &["query", sql, "--format", "json"]);
    assert_eq!(
        String::from_utf8(json.stdout).unwrap().lines().count(),
        10_005
    );

    let table = run(&lake, &["query", sql]);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = String::from_utf8(table.stdout.clone()).unwrap();
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.contains(" n "))
        .collect();
    assert_eq!(rows.len(), 10_000);
    assert!(
        stderr(&table).contains("showing the first 10000 of 10005 rows"),
        "{}",
        stderr(&table)
    );

    for format in ["csv", "json", "table"] {
        let mut child = cmd(
            &lake,
            &[
                "query",
                "SELECT * FROM generate_series(1, 3000000)",
                "--format",
                format,
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty(), "{format}");
        let o = child.wait_with_output().unwrap();
        assert_eq!(exit_code(&o), 0, "{format}: {}", stderr(&o));
        assert!(!stderr(&o).contains("error"), "{format}: {}", stderr(&o));
    }
}

/// A `SELECT` registers only the tables it names (each registration lists
/// the table's files and reads a footer): a damaged file of another table
/// does not fail it. `SHOW TABLES` and `information_schema` still see
/// every table, and a query of the damaged table still fails.
#[test]
fn a_select_opens_only_the_tables_it_names() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ok(&lake, &["run", &sample("2024-03-15.jsonl")]);
    let q = |sql: &str| run(&lake, &["query", sql, "--format", "csv"]);
    let count = String::from_utf8(q("SELECT count(*) AS n FROM events").stdout).unwrap();
    // information_schema (and SHOW TABLES) see every table.
    let o = q("SELECT table_name FROM information_schema.tables \
               WHERE table_schema = 'public' ORDER BY 1");
    let listed = String::from_utf8(o.stdout).unwrap();
    for t in [
        "bronze_events",
        "daily_metrics",
        "events",
        "ledger",
        "quarantine",
    ] {
        assert!(listed.lines().any(|l| l == t), "{t}: {listed}");
    }
    let shown = String::from_utf8(q("SHOW TABLES").stdout).unwrap();
    assert!(shown.contains("daily_metrics"), "{shown}");
    // Every daily_metrics file cut to its first bytes: no footer.
    let dir = lake.join("gold/daily_metrics");
    for d in std::fs::read_dir(&dir).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let f = f.unwrap().path();
            std::fs::write(&f, b"PAR1").unwrap();
        }
    }
    let o = q("WITH e AS (SELECT * FROM events) SELECT count(*) AS n FROM e");
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    assert_eq!(String::from_utf8(o.stdout).unwrap(), count);
    let o = q("SELECT count(*) FROM sessions JOIN EVENTS USING (session_id)");
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let o = q("SELECT * FROM daily_metrics");
    assert_ne!(exit_code(&o), 0, "a damaged table still fails");
}

/// Once silver and gold are built, a table of theirs that no event fed
/// (no signups, no purchases, so no revenue row) is an empty table with
/// its columns, the partition column last as when it has files: a count
/// is 0 and a CSV is its header, not "not found" (exit 2). Before silver
/// is built, the query still says what builds it.
#[test]
fn a_built_table_with_no_rows_is_empty_not_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let views = tmp.path().join("views.jsonl");
    std::fs::write(
        &views,
        crate::silver::ev("v1", "page_view", "2024-03-15T10:00:00Z", "u1"),
    )
    .unwrap();
    ok(&lake, &["ingest", views.to_str().unwrap()]);
    run_says(
        &lake,
        &["query", "SELECT count(*) FROM signups"],
        2,
        "`evlake run` builds silver",
    );
    ok(&lake, &["run"]);
    for t in [
        "signups",
        "purchases",
        "searches",
        "cart_adds",
        "ledger",
        "daily_revenue_by_currency",
    ] {
        assert_eq!(
            crate::silver::query_csv(&lake, &format!("SELECT count(*) FROM {t}")),
            ["0"],
            "{t}"
        );
        // Beside the tables that have rows: making the empty one (from the
        // silver and gold SQL over empty inputs) leaves those as they are.
        assert_eq!(
            crate::silver::query_csv(
                &lake,
                &format!(
                    "SELECT (SELECT count(*) FROM bronze_events) b, (SELECT count(*) FROM events) e, \
                     (SELECT count(*) FROM sessions) s, (SELECT count(*) FROM {t}) t"
                )
            ),
            ["1,1,1,0"],
            "{t}"
        );
    }
    let header = |lake: &std::path::Path, t: &str| -> String {
        let o = run(
            lake,
            &["query", &format!("SELECT * FROM {t}"), "--format", "csv"],
        );
        assert!(o.status.success(), "{t}: {}", stderr(&o));
        String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string()
    };
    // The same columns, in the same order, as the sample lake's tables
    // (which have rows).
    let full = tmp.path().join("full");
    ok(
        &full,
        &[
            "run",
            &sample("2024-03-15.jsonl"),
            &sample("2024-03-16.jsonl.gz"),
        ],
    );
    for t in ["signups", "purchases", "daily_revenue_by_currency"] {
        assert!(
            !crate::silver::query_csv(&full, &format!("SELECT * FROM {t}")).is_empty(),
            "{t}"
        );
        assert_eq!(header(&lake, t), header(&full, t), "{t}");
    }
    let tables = String::from_utf8(run(&lake, &["tables"]).stdout).unwrap();
    assert!(
        tables.contains(
            "signups (silver, silver/signups): 0 partition(s), 0 file(s), 0 row(s)\n    event_id"
        ),
        "{tables}"
    );
}

/// A query over derived tables that are not up to date says so on stderr,
/// with the partitions (`-q`: the warning alone); stdout is the rows as
/// built. Gold is behind wherever silver is, though gold's own records
/// call it clean until silver is rebuilt. After `run`: nothing to say.
#[test]
fn a_query_over_tables_behind_the_lake_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let batches = expected()["batches"].as_array().unwrap().clone();
    ok(
        &lake,
        &[
            "run",
            &sample(batches[0]["file"].as_str().unwrap()),
            "--processing-time",
            batches[0]["processing_time"].as_str().unwrap(),
        ],
    );
    let quiet = |sql: &str, extra: &[&str]| {
        let mut args = vec!["query", sql, "--format", "csv"];
        args.extend_from_slice(extra);
        let o = run(&lake, &args);
        assert!(o.status.success(), "{}", stderr(&o));
        let err = stderr(&o);
        (String::from_utf8(o.stdout).unwrap(), err)
    };
    let (_, err) = quiet("SELECT count(*) FROM daily_metrics", &[]);
    assert!(!err.contains("Warning"), "{err}");
    let before = quiet("SELECT count(*) FROM events", &[]).0;
    ingest_sample_batch(&lake, &batches[1]);
    let (out, err) = quiet("SELECT count(*) FROM events", &[]);
    assert_eq!(out, before);
    assert!(
        err.contains("Warning `events` is not up to date on ")
            && err.contains("`evlake run` brings them up to date")
            && err.contains("Dirty events 2024-03-1"),
        "{err}"
    );
    let (_, err) = quiet("SELECT count(*) FROM events", &["-q"]);
    assert!(
        err.contains("Warning `events` is not up to date") && !err.contains("Dirty"),
        "{err}"
    );
    let (_, err) = quiet("SELECT * FROM daily_metrics", &[]);
    assert!(
        err.contains("Warning `daily_metrics` is built from silver, which is not up to date on "),
        "{err}"
    );
    // Bronze is never behind; nor is a query that reads no table.
    for sql in ["SELECT count(*) FROM bronze_events", "SELECT 1"] {
        let (_, err) = quiet(sql, &[]);
        assert!(!err.contains("Warning"), "{sql}: {err}");
    }
    ok(&lake, &["run"]);
    let (_, err) = quiet(
        "SELECT * FROM daily_metrics JOIN events USING (event_date)",
        &[],
    );
    assert!(!err.contains("Warning"), "{err}");
}

/// The rows of a Parquet file on stdout, and its columns' types.
fn parquet_rows(stdout: &[u8]) -> (Vec<datafusion::arrow::array::RecordBatch>, Vec<String>) {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(stdout))
        .expect("stdout is a Parquet file");
    let types = builder
        .schema()
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect();
    let batches = builder.build().unwrap().map(|b| b.unwrap()).collect();
    (batches, types)
}

#[test]
fn query_state_and_history_write_parquet_with_the_columns_types() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    run_sample_batches(&lake);
    let parquet = |args: &[&str]| {
        let o = run(&lake, args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        parquet_rows(&o.stdout)
    };
    let rows = |batches: &[datafusion::arrow::array::RecordBatch]| -> usize {
        batches.iter().map(|b| b.num_rows()).sum()
    };
    // Every row, with Arrow's types kept (dates, decimals, UTC timestamps).
    let sql = "SELECT event_date, events, revenue FROM daily_metrics ORDER BY 1";
    let (batches, types) = parquet(&["query", sql, "--format", "parquet"]);
    assert_eq!(rows(&batches), query_csv(&lake, sql).len());
    assert_eq!(
        types,
        [
            "event_date Date32",
            "events Int64",
            "revenue Decimal128(18, 2)"
        ]
    );
    // No rows: a file of no rows that still has the columns.
    let (batches, types) = parquet(&[
        "query",
        "SELECT event_id, event_timestamp FROM events WHERE false",
        "--format",
        "parquet",
    ]);
    assert_eq!(rows(&batches), 0);
    assert_eq!(
        types,
        ["event_id Utf8", "event_timestamp Timestamp(µs, \"UTC\")"]
    );
    // state and history too.
    let (batches, types) = parquet(&[
        "state",
        "balances",
        "--as-of",
        "2024-03-16",
        "--format",
        "parquet",
    ]);
    let csv = run(
        &lake,
        &[
            "state",
            "balances",
            "--as-of",
            "2024-03-16",
            "--format",
            "csv",
        ],
    );
    assert_eq!(
        rows(&batches),
        String::from_utf8(csv.stdout).unwrap().lines().count() - 1
    );
    assert!(
        types.contains(&"balance Decimal128(18, 2)".to_string()),
        "{types:?}"
    );
    let (batches, _) = parquet(&["history", "acct-u2", "--format", "parquet"]);
    assert!(rows(&batches) > 0);
    // A binary file is not written to a terminal: exit 2, before any work.
    let o = Command::new("python3")
        .args([
            "-c",
            "import os, pty, subprocess, sys\n\
             m, s = pty.openpty()\n\
             p = subprocess.run(sys.argv[1:], stdout=s, stderr=subprocess.PIPE)\n\
             sys.stderr.buffer.write(p.stderr)\n\
             sys.exit(p.returncode)",
            bin(),
            "--lake",
            lake.to_str().unwrap(),
            "query",
            "SELECT 1",
            "--format",
            "parquet",
        ])
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("redirect it"), "{}", stderr(&o));
    // Reports have no Parquet form.
    let o = run(&lake, &["tables", "--format", "parquet"]);
    assert_eq!(exit_code(&o), 2);
}

#[test]
fn query_reads_its_sql_from_a_file_or_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ok(&lake, &["run", &sample("2024-03-15.jsonl")]);
    let inline = run(
        &lake,
        &[
            "query",
            "SELECT count(*) AS n FROM events",
            "--format",
            "csv",
        ],
    );
    assert!(inline.status.success(), "{}", stderr(&inline));
    // SQL as kept in a file: a comment first (which as an argument would
    // read as a flag) and a final `;`.
    let sql = "-- events so far\nSELECT count(*) AS n\nFROM events; -- all dates\n";
    let file = tmp.path().join("report.sql");
    std::fs::write(&file, sql).unwrap();
    for o in [
        run(
            &lake,
            &["query", "-f", file.to_str().unwrap(), "--format", "csv"],
        ),
        run_with_stdin(&lake, &["query", "-", "--format", "csv"], sql.as_bytes()),
        run_with_stdin(
            &lake,
            &["query", "-f", "-", "--format", "csv"],
            sql.as_bytes(),
        ),
    ] {
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(o.stdout, inline.stdout);
    }
    // Saved as UTF-16 (PowerShell's `>`): said so, not "stream did not
    // contain valid UTF-8".
    let wide = tmp.path().join("wide.sql");
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(sql.encode_utf16().flat_map(u16::to_le_bytes));
    std::fs::write(&wide, utf16).unwrap();
    run_says(
        &lake,
        &["query", "-f", wide.to_str().unwrap()],
        2,
        &format!(
            "cannot read the SQL file `{}`: it is UTF-16 text; save it as UTF-8",
            wide.display()
        ),
    );
    // Saved by a Windows editor, with a byte-order mark first: the parser
    // took it for the first token ("found: \u{feff}"), exit 2.
    let bom = format!("\u{feff}{sql}");
    std::fs::write(&file, &bom).unwrap();
    for o in [
        run(
            &lake,
            &["query", "-f", file.to_str().unwrap(), "--format", "csv"],
        ),
        run_with_stdin(&lake, &["query", "-", "--format", "csv"], bom.as_bytes()),
    ] {
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(o.stdout, inline.stdout);
    }
    // A file that is not there, or no SQL at all: exit 2, saying which.
    let o = run(&lake, &["query", "--file", "/no/such/report.sql"]);
    assert_eq!(exit_code(&o), 2);
    assert!(stderr(&o).contains("/no/such/report.sql"), "{}", stderr(&o));
    let o = run_with_stdin(&lake, &["query", "-"], b"  \n");
    assert_eq!(exit_code(&o), 2);
    assert!(stderr(&o).contains("no SQL given"), "{}", stderr(&o));
    let o = run(&lake, &["query", "SELECT 1", "-f", file.to_str().unwrap()]);
    assert_eq!(exit_code(&o), 2);
}

/// On a terminal, a table wider than it has its widest values cut to fit,
/// each ending in `…`, and stderr says so; piped, every value is whole.
#[test]
fn a_wide_table_is_cut_to_the_terminal_and_whole_when_piped() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ingest_sample_batch(&lake, &expected()["batches"][0]);
    let sql = "SELECT event_id, 'https://shop.example.com/products/a-very-long-path' AS url, \
               event_type FROM bronze_events ORDER BY event_id LIMIT 3";
    let drawn = on_a_terminal_with(&lake, &["query", sql], b"", &[("COLUMNS", "60")]);
    let table: Vec<&str> = drawn
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| l.starts_with('+') || l.starts_with('|'))
        .collect();
    assert_eq!(table.len(), 7, "{drawn}");
    assert!(table.iter().all(|l| l.chars().count() <= 60), "{drawn}");
    assert!(
        table[3].contains("| https://shop.example.com/produ… |"),
        "{drawn}"
    );
    assert!(
        drawn.contains(
            "(values cut to fit the terminal's 60 columns, each ending in …; --format csv or \
             json writes them whole)"
        ),
        "{drawn}"
    );
    let piped = String::from_utf8(run(&lake, &["query", sql]).stdout).unwrap();
    assert!(!piped.contains('…'), "{piped}");
    assert!(
        piped.contains("| https://shop.example.com/products/a-very-long-path |"),
        "{piped}"
    );
}

/// A generated `WHERE user_id = 'u0' OR user_id = 'u1' OR ...` (a BI
/// tool's filter, a script's) is planned by recursion, a frame or more per
/// term: 500 terms overflowed the 8 MiB stack of a process's main thread
/// (SIGABRT, exit 134).
#[test]
fn a_long_generated_or_chain_is_answered_not_a_stack_overflow() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ingest_sample_batches(&lake);
    let ids: Vec<String> = (0..800).map(|i| format!("'u{i}'")).collect();
    let ors = ids
        .iter()
        .map(|id| format!("user_id = {id}"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let chained = query_csv(
        &lake,
        &format!("SELECT count(*) FROM bronze_events WHERE {ors}"),
    );
    let listed = query_csv(
        &lake,
        &format!(
            "SELECT count(*) FROM bronze_events WHERE user_id IN ({})",
            ids.join(", ")
        ),
    );
    assert_eq!(chained, listed);
    assert_ne!(chained, ["0"]);
}

/// Under a limit on the address space (`ulimit -v`) evlake keeps the
/// default stacks: with its big ones, the first runtime worker could take
/// what was left, and tokio then waited for ever for the others (a query
/// hung at 1.3 GB).
#[test]
fn a_query_under_an_address_space_limit_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ingest_sample_batches(&lake);
    let expected = query_csv(&lake, "SELECT count(*) FROM bronze_events");
    for limit_kb in ["1300000", "1600000"] {
        let o = Command::new("timeout")
            .args([
                "120",
                "sh",
                "-c",
                "ulimit -v \"$0\" && exec \"$@\"",
                limit_kb,
                bin(),
            ])
            .args(["--lake", lake.to_str().unwrap(), "query"])
            .args(["SELECT count(*) FROM bronze_events", "--format", "csv"])
            .output()
            .unwrap();
        assert_eq!(exit_code(&o), 0, "ulimit -v {limit_kb}: {}", stderr(&o));
        let got: Vec<String> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .skip(1)
            .map(str::to_string)
            .collect();
        assert_eq!(got, expected, "ulimit -v {limit_kb}");
    }
}
