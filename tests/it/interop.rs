//! Outside readers (DuckDB, pyarrow, Polars) read the lake with no help.
//!
//! `make test` creates a Python venv with all three and sets EVLAKE_PYTHON, so
//! this test runs everywhere `make test` runs. It fails (never skips) when
//! the readers are missing.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// Every silver and gold table: (name in `query`, directory).
const DERIVED: &[(&str, &str)] = &[
    ("events", "silver/events"),
    ("sessions", "silver/sessions"),
    ("purchases", "silver/purchases"),
    ("searches", "silver/searches"),
    ("signups", "silver/signups"),
    ("cart_adds", "silver/cart_adds"),
    ("ledger", "silver/ledger"),
    ("daily_metrics", "gold/daily_metrics"),
    (
        "daily_revenue_by_currency",
        "gold/daily_revenue_by_currency",
    ),
];

fn python() -> String {
    let python = std::env::var("EVLAKE_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import duckdb, pyarrow, polars"])
        .output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "`{python}` cannot import duckdb, pyarrow and polars; run the tests with `make test`, which installs them"
    );
    python
}

/// Run tests/interop.py on `lake`: bronze's counts per date against
/// `bronze` (if given), and each of `tables` that has rows (by `query`'s
/// count) read whole by each reader, its timestamp ranges and decimal sums
/// equal to `query`'s.
fn interop(lake: &Path, dir: &Path, bronze: Option<&Path>, tables: &[(&str, &str)]) {
    let mut counts = serde_json::Map::new();
    for (name, table_dir) in tables {
        let n = crate::silver::query_csv(lake, &format!("SELECT count(*) FROM {name}"));
        let n: u64 = n.first().map_or(0, |n| n.parse().unwrap());
        if n > 0 {
            counts.insert(table_dir.to_string(), n.into());
        }
    }
    let tables_json = dir.join("tables.json");
    std::fs::write(&tables_json, serde_json::to_vec(&counts).unwrap()).unwrap();
    let o = Command::new(python())
        .arg(repo().join("tests/interop.py"))
        .arg(lake)
        .arg(bronze.map_or("-".into(), |p| p.display().to_string()))
        .arg(&tables_json)
        .arg(bin())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "interop failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Bronze, and every silver and gold table built incrementally (a `run`
/// after each sample batch, the last one late: dates appended to and
/// rewritten), read by DuckDB, pyarrow and Polars with nothing but Hive
/// partitioning: the row counts evlake's `query` gives, every column
/// decoded, standard types. With a typed and a daily table of the lake's
/// own (with times of seconds and nanoseconds, stored as microseconds),
/// and bronze compacted.
#[test]
fn duckdb_pyarrow_and_polars_read_every_table_as_is() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let exp = expected();
    ok(&lake, &["init"]);
    for (dir, file, sql) in [
        (
            "typed",
            "page_views.sql",
            "SELECT event_id, user_id, session_id, event_timestamp, event_date, page_url, \
             to_timestamp_seconds(event_timestamp) AS viewed_s, \
             to_timestamp(event_timestamp) AS viewed_ns, \
             0 AS _warnings FROM events WHERE event_type = 'page_view'",
        ),
        (
            "daily",
            "active_users.sql",
            "SELECT event_date, count(DISTINCT user_id) AS users, max(event_timestamp) AS last, \
             CAST(min(event_timestamp) AS TIMESTAMPTZ) AS first_ns \
             FROM events GROUP BY event_date",
        ),
    ] {
        std::fs::create_dir_all(lake.join(dir)).unwrap();
        std::fs::write(lake.join(dir).join(file), sql).unwrap();
    }
    for batch in exp["batches"].as_array().unwrap() {
        ingest_sample_batch(&lake, batch);
        let pt = batch["processing_time"].as_str().unwrap();
        ok(&lake, &["run", "--processing-time", pt]);
    }
    let r = ok(&lake, &["compact", "--min-files", "2", "--json"]);
    assert_eq!(r["status"], "committed", "{r}");
    let counts = tmp.path().join("counts.json");
    std::fs::write(
        &counts,
        serde_json::to_vec(&expected_counts(&exp["partitions"])).unwrap(),
    )
    .unwrap();
    let mut tables = DERIVED.to_vec();
    tables.extend([
        ("page_views", "silver/page_views"),
        ("active_users", "gold/active_users"),
    ]);
    for (name, _) in &tables {
        let n = crate::silver::query_csv(&lake, &format!("SELECT count(*) FROM {name}"));
        assert_ne!(n, ["0"], "{name} has rows");
    }
    interop(&lake, tmp.path(), Some(&counts), &tables);
}

/// Files whose session-id column was patched (the other column chunks
/// spliced in byte for byte) read like any other.
#[test]
fn duckdb_pyarrow_and_polars_read_patched_files() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    crate::silver::lake_before_a_patch(&lake, tmp.path());
    let o = cmd(&lake, &["silver"])
        .env("EVLAKE_TRACE", "1")
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("file(s) patched with new session ids"),
        "{}",
        stderr(&o)
    );
    interop(&lake, tmp.path(), None, &DERIVED[..3]);
}

/// `query --format parquet` writes a time of seconds (`from_unixtime`,
/// `to_timestamp_seconds`), a time of day of seconds and a date of
/// milliseconds (`Date64`) as types Parquet annotates (microseconds, a
/// date), inside a struct and a list too, so DuckDB and pyarrow read
/// times and dates, not the bare integers arrow's writer gave them; a
/// time of nanoseconds and a 16-bit float as microseconds and a 32-bit
/// float, which Spark reads. A time of seconds past what microseconds
/// hold is exit 2 naming the column.
#[test]
fn duckdb_and_pyarrow_read_a_query_s_times_of_seconds_as_times() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ok(&lake, &["init"]);
    let sql = "SELECT from_unixtime(1700000000) AS fu, to_timestamp_seconds(1700000001) AS ts, \
               arrow_cast(CAST('10:11:12' AS TIME), 'Time32(Second)') AS t, \
               arrow_cast(DATE '2024-02-29', 'Date64') AS d, \
               named_struct('a', from_unixtime(2)) AS s, [to_timestamp_seconds(3)] AS l, \
               CAST('2024-01-01 10:00:00.123456789' AS TIMESTAMP) AS ns, \
               arrow_cast(1.5, 'Float16') AS h";
    let o = run(&lake, &["query", sql, "--format", "parquet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let file = tmp.path().join("out.parquet");
    std::fs::write(&file, &o.stdout).unwrap();
    let o = Command::new(python())
        .args([
            "-c",
            "import duckdb, pyarrow.parquet as pq, sys\n\
             con = duckdb.connect()\n\
             con.execute(\"SET TimeZone='UTC'\")\n\
             print(con.execute(\"SELECT CAST(fu AS VARCHAR), CAST(ts AS VARCHAR), \
             CAST(t AS VARCHAR), CAST(d AS VARCHAR), CAST(s.a AS VARCHAR), \
             CAST(l[1] AS VARCHAR), CAST(ns AS VARCHAR), h FROM read_parquet(?)\", \
             [sys.argv[1]]).fetchall())\n\
             print([str(f.type) for f in pq.read_table(sys.argv[1]).schema])",
        ])
        .arg(&file)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "[('2023-11-14 22:13:20', '2023-11-14 22:13:21+00', '10:11:12', '2024-02-29', \
             '1970-01-01 00:00:02', '1970-01-01 00:00:03+00', '2024-01-01 10:00:00.123456', \
             1.5)]",
            "['timestamp[us]', 'timestamp[us, tz=UTC]', 'time64[us]', 'date32[day]', \
             'struct<a: timestamp[us]>', 'list<item: timestamp[us, tz=UTC]>', 'timestamp[us]', \
             'float']",
        ]
    );
    let o = run(
        &lake,
        &[
            "query",
            "SELECT to_timestamp_seconds(10000000000000) AS far",
            "--format",
            "parquet",
        ],
    );
    assert_eq!(exit_code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("column `far`"), "{}", stderr(&o));
}
