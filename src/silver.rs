//! Silver SQL: deduplication and LAG-based sessionization (DESIGN.md §5).
//!
//! The SQL lives in `sql/silver/` (one file per output table, CTEs ending in
//! `final`) and refers only to logical table names. The session gap is a
//! bound parameter, never pasted into the SQL text.
//!
//! This module runs the SQL over whatever `bronze_events` the context
//! holds; `evlake silver` (recompute of dirty partitions, commits) builds on
//! it next.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
use datafusion::prelude::{DataFrame, SessionContext};
use serde::Serialize;

use crate::bronze;
use crate::dirty;
use crate::engine;
use crate::fault;
use crate::ingest::table_dirs;
use crate::lake::{self, Lake};
use crate::log::{self, Commit, FileAction, LakeState};

/// Logical name and directory of the sessionized events table.
pub const EVENTS_TABLE: &str = "events";
pub const EVENTS_DIR: &str = "silver/events";
/// Logical name and directory of the sessions table.
pub const SESSIONS_TABLE: &str = "sessions";
pub const SESSIONS_DIR: &str = "silver/sessions";

/// `sql/silver/events.sql`: deduplicated events with `session_id`.
pub const EVENTS_SQL: &str = include_str!("../sql/silver/events.sql");
/// `sql/silver/sessions.sql`: one row per session of `events`.
pub const SESSIONS_SQL: &str = include_str!("../sql/silver/sessions.sql");

/// Typed per-event-type tables: (logical name, directory, SQL). Adding one
/// is one SQL file in `sql/silver/typed/` and one line here. Each SQL reads
/// `events` and returns its columns plus `_warnings` (present values that
/// could not be typed), which is counted and dropped before writing.
pub const TYPED: &[(&str, &str, &str)] = &[
    (
        "purchases",
        "silver/purchases",
        include_str!("../sql/silver/typed/purchases.sql"),
    ),
    (
        "searches",
        "silver/searches",
        include_str!("../sql/silver/typed/searches.sql"),
    ),
    (
        "signups",
        "silver/signups",
        include_str!("../sql/silver/typed/signups.sql"),
    ),
    (
        "cart_adds",
        "silver/cart_adds",
        include_str!("../sql/silver/typed/cart_adds.sql"),
    ),
    (
        "ledger",
        "silver/ledger",
        include_str!("../sql/silver/typed/ledger.sql"),
    ),
];

/// Default `--session-gap`: 30 minutes.
pub const DEFAULT_SESSION_GAP_US: i64 = 30 * 60 * 1_000_000;

/// Deduplicated, sessionized events from the context's `bronze_events`.
pub async fn events(ctx: &SessionContext, session_gap_us: i64) -> Result<DataFrame> {
    let df = ctx
        .sql(EVENTS_SQL)
        .await
        .context("sql/silver/events.sql does not plan")?;
    df.with_param_values(vec![ScalarValue::Int64(Some(session_gap_us))])
        .context("binding the session gap to sql/silver/events.sql")
}

/// Sessions from the context's `events` table.
pub async fn sessions(ctx: &SessionContext) -> Result<DataFrame> {
    ctx.sql(SESSIONS_SQL)
        .await
        .context("sql/silver/sessions.sql does not plan")
}

/// The fingerprint of the SQL and settings that build silver: a change to
/// either SQL file or to the gap makes every silver partition dirty.
pub fn fingerprint(session_gap_us: i64) -> String {
    let gap = session_gap_us.to_string();
    let mut parts = vec![EVENTS_SQL, SESSIONS_SQL, gap.as_str()];
    parts.extend(TYPED.iter().map(|(_, _, sql)| *sql));
    crate::dirty::fingerprint(&parts)
}

#[derive(Debug, Clone, Serialize)]
pub struct SilverPartition {
    pub table: String,
    pub partition: String,
    pub rows: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SilverReport {
    pub command: &'static str,
    /// `committed` or `noop` (nothing dirty).
    pub status: &'static str,
    pub lake: String,
    pub version: u64,
    /// Dirty silver partitions found before the run, and why.
    pub dirty: Vec<dirty::DirtyPartition>,
    /// Partitions written.
    pub partitions: Vec<SilverPartition>,
    /// Per typed table: present values that could not be typed (now NULL).
    pub warnings: BTreeMap<String, u64>,
    pub elapsed_ms: u64,
}

/// Which silver partitions are dirty: each `events` partition reads the
/// bronze partition of the same date; the recompute extends from there.
pub fn dirty_partitions(state: &LakeState, session_gap_us: i64) -> Vec<dirty::DirtyPartition> {
    let wanted: BTreeMap<String, Vec<String>> = state
        .partitions(bronze::TABLE)
        .map(|(d, _)| (d.clone(), vec![dirty::input_key(bronze::TABLE, d)]))
        .collect();
    dirty::dirty_partitions(state, EVENTS_TABLE, &fingerprint(session_gap_us), &wanted)
}

/// Rebuild silver (`events`, `sessions`) as one commit when any partition is
/// dirty (or always with `full`). This first version recomputes every
/// partition; recomputing only the dirty ones (extended by session reach)
/// is the next step, and must give the same rows.
pub fn rebuild(
    lake: &Lake,
    processing_time: i64,
    session_gap_us: i64,
    full: bool,
) -> Result<SilverReport> {
    let started = Instant::now();
    let _lock = lake.lock()?;
    let state = LakeState::load(lake)?;
    log::clean_orphans(lake, &state, &table_dirs())?;
    let dirty = dirty_partitions(&state, session_gap_us);
    let mut report = SilverReport {
        command: "silver",
        status: "noop",
        lake: lake.root().display().to_string(),
        version: state.version,
        dirty,
        partitions: Vec::new(),
        warnings: BTreeMap::new(),
        elapsed_ms: 0,
    };
    let has_bronze = state.partitions(bronze::TABLE).next().is_some();
    if !has_bronze || (!full && report.dirty.is_empty()) {
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    let staging = lake
        .staging_dir()
        .join(format!("silver-{}", std::process::id()));
    let staged_events = staging.join("events");
    let staged_sessions = staging.join("sessions");
    fs::create_dir_all(&staging)
        .with_context(|| format!("failed to create `{}`", staging.display()))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let warnings = rt.block_on(async {
        let ctx = engine::context(lake).await?;
        events(&ctx, session_gap_us)
            .await?
            .write_parquet(
                &format!("{}/", staged_events.display()),
                DataFrameWriteOptions::new().with_partition_by(vec!["event_date".into()]),
                None,
            )
            .await
            .context("writing silver events")?;
        // `sessions` and the typed tables read the events just computed,
        // not the previous build.
        ctx.deregister_table(EVENTS_TABLE)?;
        engine::register_partitioned(
            &ctx,
            EVENTS_TABLE,
            &staged_events,
            "event_date",
            None,
            Vec::new(),
        )
        .await?;
        sessions(&ctx)
            .await?
            .write_parquet(
                &format!("{}/", staged_sessions.display()),
                DataFrameWriteOptions::new().with_partition_by(vec!["session_date".into()]),
                None,
            )
            .await
            .context("writing silver sessions")?;
        let mut warnings = BTreeMap::new();
        for (table, _, sql) in TYPED {
            let df = ctx
                .sql(sql)
                .await
                .with_context(|| format!("sql/silver/typed/{table}.sql does not plan"))?;
            let counted = df
                .clone()
                .aggregate(
                    vec![],
                    vec![datafusion::functions_aggregate::expr_fn::sum(
                        datafusion::prelude::col("_warnings"),
                    )],
                )?
                .collect()
                .await?;
            let n = match counted.first() {
                Some(b) if b.num_rows() > 0 => {
                    let c = datafusion::arrow::compute::cast(b.column(0), &DataType::Int64)?;
                    c.as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                        .value(0)
                }
                _ => 0,
            };
            warnings.insert(table.to_string(), n.max(0) as u64);
            df.drop_columns(&["_warnings"])?
                .write_parquet(
                    &format!("{}/", staging.join(table).display()),
                    DataFrameWriteOptions::new().with_partition_by(vec!["event_date".into()]),
                    None,
                )
                .await
                .with_context(|| format!("writing silver {table}"))?;
        }
        anyhow::Ok(warnings)
    })?;
    report.warnings = warnings;
    fault::point("staged");

    let run_id = {
        let mut h = blake3::Hasher::new();
        h.update(format!("silver {} {}", state.version, session_gap_us).as_bytes());
        h.finalize().to_hex()[..16].to_string()
    };
    let fp = fingerprint(session_gap_us);
    let mut commit = Commit::next(&state, "silver", processing_time);
    let mut n = 0;
    let mut outputs = vec![
        (
            EVENTS_TABLE,
            EVENTS_DIR,
            staged_events.clone(),
            "event_date",
        ),
        (
            SESSIONS_TABLE,
            SESSIONS_DIR,
            staged_sessions.clone(),
            "session_date",
        ),
    ];
    for (table, dir, _) in TYPED {
        outputs.push((table, dir, staging.join(table), "event_date"));
    }
    for (table, dir, staged, column) in outputs {
        let staged = &staged;
        for rel in lake::list_files(staged, staged)? {
            let Some((part_dir, _)) = rel.split_once('/') else {
                continue;
            };
            let partition = part_dir
                .strip_prefix(&format!("{column}="))
                .context("unexpected staged layout")?
                .to_string();
            let from = staged.join(&rel);
            let rows = parquet_rows(&from)?;
            let bytes = fs::metadata(&from)?.len();
            let rel_final = format!("{dir}/{part_dir}/part-{run_id}-{n:05}.parquet");
            n += 1;
            lake::rename_into_place(&from, &lake.path(&rel_final))?;
            if n == 1 {
                fault::point("renamed");
            }
            commit
                .add
                .push(FileAction::plain(table, &partition, rel_final, rows, bytes));
            report.partitions.push(SilverPartition {
                table: table.to_string(),
                partition: partition.clone(),
                rows,
            });
        }
    }
    // A full rebuild replaces every existing silver file.
    for table in all_tables() {
        for (_, p) in state.partitions(table) {
            commit.remove.extend(p.files.values().cloned());
        }
    }
    // Every silver table records, for every bronze date, the bronze
    // version it read, including dates where it has no rows (a day with no
    // purchases is built, not missing).
    let dates: Vec<String> = state
        .partitions(bronze::TABLE)
        .map(|(d, _)| d.clone())
        .collect();
    for table in all_tables() {
        for date in &dates {
            let input = dirty::input_key(bronze::TABLE, date);
            commit
                .builds
                .push(dirty::build_record(&state, table, date, &[input], &fp));
        }
    }
    fault::point("before-commit");
    log::write_commit(lake, &commit)?;
    fault::point("after-commit");
    for f in &commit.remove {
        let p = lake.path(&f.path);
        fs::remove_file(&p).with_context(|| format!("failed to remove `{}`", p.display()))?;
    }
    let _ = fs::remove_dir_all(&staging);
    report.status = "committed";
    report.version = commit.version;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Every silver table's logical name.
pub fn all_tables() -> Vec<&'static str> {
    let mut v = vec![EVENTS_TABLE, SESSIONS_TABLE];
    v.extend(TYPED.iter().map(|(t, _, _)| *t));
    v
}

/// Every silver table's directory.
pub fn all_dirs() -> Vec<&'static str> {
    let mut v = vec![EVENTS_DIR, SESSIONS_DIR];
    v.extend(TYPED.iter().map(|(_, d, _)| *d));
    v
}

fn parquet_rows(path: &Path) -> Result<u64> {
    let f = fs::File::open(path).with_context(|| format!("failed to open `{}`", path.display()))?;
    let r = SerializedFileReader::new(f)
        .with_context(|| format!("`{}`: not a readable Parquet file", path.display()))?;
    Ok(r.metadata().file_metadata().num_rows() as u64)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use datafusion::arrow::array::{
        ArrayRef, AsArray, BooleanArray, Date32Array, Int64Array, RecordBatch, StringArray,
        TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::datasource::MemTable;

    use super::*;
    use crate::time::{date32_of_micros, parse_instant};

    /// (event_id, user_id, event time, processing time, batch, line, type, page)
    type Row = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        i64,
        &'static str,
        Option<&'static str>,
    );

    fn bronze(rows: &[Row]) -> RecordBatch {
        let ts = |i: usize| -> Vec<i64> {
            rows.iter()
                .map(|r| parse_instant(if i == 2 { r.2 } else { r.3 }).unwrap())
                .collect()
        };
        let s = |f: fn(&Row) -> &'static str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
        };
        let n = rows.len();
        let nulls = || -> ArrayRef { Arc::new(StringArray::from(vec![None::<&str>; n])) };
        let event_ts = ts(2);
        let mut fields: Vec<Field> = crate::bronze::schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("event_date", DataType::Date32, false));
        let cols: Vec<ArrayRef> = vec![
            s(|r| r.0),
            s(|r| r.6),
            s(|r| r.1),
            Arc::new(TimestampMicrosecondArray::from(event_ts.clone()).with_timezone("UTC")),
            nulls(),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.7).collect::<Vec<_>>(),
            )),
            nulls(),
            nulls(),
            nulls(),
            Arc::new(TimestampMicrosecondArray::from(ts(3)).with_timezone("UTC")),
            s(|r| r.4),
            Arc::new(BooleanArray::from(vec![false; n])),
            s(|_| "test"),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.5).collect::<Vec<_>>(),
            )),
            Arc::new(Date32Array::from(
                event_ts
                    .iter()
                    .map(|t| date32_of_micros(*t))
                    .collect::<Vec<_>>(),
            )),
        ];
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
    }

    async fn ctx_with(rows: &[Row]) -> SessionContext {
        let ctx = SessionContext::new();
        let batch = bronze(rows);
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
        ctx.register_table("bronze_events", Arc::new(table))
            .unwrap();
        ctx
    }

    /// event_id → (session_id, kept processing batch) after silver.
    async fn sessionize(rows: &[Row], gap: i64) -> BTreeMap<String, (String, String)> {
        let ctx = ctx_with(rows).await;
        let batches = events(&ctx, gap).await.unwrap().collect().await.unwrap();
        let mut out = BTreeMap::new();
        for b in &batches {
            let ids = b.column_by_name("event_id").unwrap().as_string::<i32>();
            let sids = b.column_by_name("session_id").unwrap().as_string::<i32>();
            let batch_ids = b.column_by_name("batch_id").unwrap().as_string::<i32>();
            for i in 0..b.num_rows() {
                let prev = out.insert(
                    ids.value(i).to_string(),
                    (sids.value(i).to_string(), batch_ids.value(i).to_string()),
                );
                assert!(prev.is_none(), "event {} twice", ids.value(i));
            }
        }
        out
    }

    fn groups(s: &BTreeMap<String, (String, String)>) -> Vec<Vec<String>> {
        let mut by: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (e, (sid, _)) in s {
            by.entry(sid).or_default().push(e.clone());
        }
        let mut v: Vec<Vec<String>> = by.into_values().collect();
        v.sort();
        v
    }

    const PT: &str = "2024-03-16T02:00:00Z";
    const GAP: i64 = DEFAULT_SESSION_GAP_US;

    fn pv(id: &'static str, user: &'static str, ts: &'static str) -> Row {
        (id, user, ts, PT, "b1", 1, "page_view", Some("/p"))
    }

    #[tokio::test]
    async fn a_gap_of_exactly_the_session_gap_stays_in_the_session() {
        let s = sessionize(
            &[
                pv("a", "u", "2024-03-15T10:00:00Z"),
                pv("b", "u", "2024-03-15T10:30:00Z"), // exactly 30m: same
                pv("c", "u", "2024-03-15T11:00:00.000001Z"), // 30m + 1µs: new
            ],
            GAP,
        )
        .await;
        assert_eq!(groups(&s), [vec!["a", "b"], vec!["c"]]);
        // session_id = hex(sha256(user_id || 0x1f || first event_id)),
        // checked against Python's hashlib.sha256(b"u\x1fa").
        assert_eq!(
            s["a"].0,
            "11be3efe0187aa4f29ca54f093f009ce5d0568f6a7383302b3c8ede3abae15dd"
        );
        assert_eq!(
            s["c"].0,
            "887af1b5d24ff788c514c5ddd913ba1b688ec82466dd3fbee403811a70f5a245"
        );
    }

    #[tokio::test]
    async fn ties_on_the_timestamp_break_by_event_id() {
        // Same instant: the session's first event is the smaller event_id,
        // whatever order the rows arrive in.
        let rows = [
            pv("e2", "u", "2024-03-15T10:00:00Z"),
            pv("e1", "u", "2024-03-15T10:00:00Z"),
        ];
        let s = sessionize(&rows, GAP).await;
        assert_eq!(groups(&s), [vec!["e1", "e2"]]);
        let mut rev = rows;
        rev.reverse();
        assert_eq!(sessionize(&rev, GAP).await, s);
        let want = "ec9952f148e9d470e6a25c8886dda06352549c3921146c81b344cbdfc0e2a448"; // hashlib.sha256(b"u\x1fe1")
        assert_eq!(s["e2"].0, want);
    }

    #[tokio::test]
    async fn a_session_crossing_midnight_is_one_session_dated_by_its_start() {
        let rows = [
            pv("a", "u", "2024-03-14T23:50:00Z"),
            pv("b", "u", "2024-03-15T00:10:00Z"),
            pv("c", "u", "2024-03-15T00:35:00Z"),
        ];
        let s = sessionize(&rows, GAP).await;
        assert_eq!(groups(&s), [vec!["a", "b", "c"]]);
        let ctx = ctx_with(&rows).await;
        let ev = events(&ctx, GAP).await.unwrap();
        ctx.register_table("events", ev.into_view()).unwrap();
        let b = sessions(&ctx).await.unwrap().collect().await.unwrap();
        assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        let date = b[0].column_by_name("session_date").unwrap();
        assert_eq!(
            datafusion::arrow::util::display::array_value_to_string(date, 0).unwrap(),
            "2024-03-14"
        );
        let dur = b[0]
            .column_by_name("duration_us")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(dur.value(0), 45 * 60 * 1_000_000);
        let count = b[0]
            .column_by_name("event_count")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(count.value(0), 3);
    }

    #[tokio::test]
    async fn exact_resends_keep_the_first_copy() {
        let s = sessionize(
            &[
                (
                    "a",
                    "u",
                    "2024-03-15T10:00:00Z",
                    "2024-03-17T02:00:00Z",
                    "b2",
                    7,
                    "page_view",
                    None,
                ),
                (
                    "a",
                    "u",
                    "2024-03-15T10:00:00Z",
                    "2024-03-16T02:00:00Z",
                    "b1",
                    9,
                    "page_view",
                    None,
                ),
                (
                    "a",
                    "u",
                    "2024-03-15T10:00:00Z",
                    "2024-03-16T02:00:00Z",
                    "b1",
                    3,
                    "page_view",
                    None,
                ),
            ],
            GAP,
        )
        .await;
        assert_eq!(s.len(), 1);
        assert_eq!(s["a"].1, "b1");
    }

    #[tokio::test]
    async fn a_late_event_merges_two_sessions() {
        let before = [
            pv("a", "u", "2024-03-15T14:30:00Z"),
            pv("c", "u", "2024-03-15T15:10:00Z"), // 40 min later: a new session
            pv("x", "v", "2024-03-15T14:40:00Z"), // another user is untouched
        ];
        let s = sessionize(&before, GAP).await;
        assert_eq!(groups(&s).len(), 3);
        let mut after = before.to_vec();
        after.push(pv("b", "u", "2024-03-15T14:50:00Z")); // arrives late, bridges
        let t = sessionize(&after, GAP).await;
        assert_eq!(
            groups(&t),
            [
                vec!["a".to_string(), "b".into(), "c".into()],
                vec!["x".into()]
            ]
        );
        assert_eq!(t["a"].0, s["a"].0, "the surviving session keeps its id");
        assert_eq!(t["x"].0, s["x"].0);
    }

    #[tokio::test]
    async fn sessions_summarise_pages_bounces_and_conversions() {
        let rows = [
            (
                "a",
                "u",
                "2024-03-15T10:00:00Z",
                PT,
                "b1",
                1,
                "page_view",
                None,
            ),
            (
                "b",
                "u",
                "2024-03-15T10:05:00Z",
                PT,
                "b1",
                2,
                "page_view",
                Some("/landing"),
            ),
            (
                "c",
                "u",
                "2024-03-15T10:10:00Z",
                PT,
                "b1",
                3,
                "purchase",
                Some("/checkout"),
            ),
            (
                "d",
                "u",
                "2024-03-15T10:12:00Z",
                PT,
                "b1",
                4,
                "page_view",
                None,
            ),
            (
                "e",
                "w",
                "2024-03-15T10:00:00Z",
                PT,
                "b1",
                5,
                "page_view",
                Some("/only"),
            ),
        ];
        let ctx = ctx_with(&rows).await;
        ctx.register_table("events", events(&ctx, GAP).await.unwrap().into_view())
            .unwrap();
        let b = sessions(&ctx)
            .await
            .unwrap()
            .sort_by(vec![datafusion::prelude::col("user_id")])
            .unwrap()
            .collect()
            .await
            .unwrap();
        let b = datafusion::arrow::compute::concat_batches(&b[0].schema(), &b).unwrap();
        let s = |c: &str, i: usize| {
            datafusion::arrow::util::display::array_value_to_string(b.column_by_name(c).unwrap(), i)
                .unwrap()
        };
        assert_eq!(b.num_rows(), 2);
        assert_eq!(s("landing_page", 0), "/landing");
        assert_eq!(s("exit_page", 0), "/checkout");
        assert_eq!(s("is_bounce", 0), "false");
        assert_eq!(s("converted", 0), "true");
        assert_eq!(s("is_bounce", 1), "true");
        assert_eq!(s("converted", 1), "false");
        assert_eq!(s("duration_us", 1), "0");
    }

    #[test]
    fn the_gap_and_sql_are_in_the_fingerprint() {
        assert_ne!(fingerprint(GAP), fingerprint(GAP + 1));
        assert_eq!(fingerprint(GAP), fingerprint(GAP));
    }
}
