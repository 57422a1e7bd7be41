//! Silver: deduplicated, sessionized `events`, `sessions` and the typed
//! per-event-type tables (DESIGN.md §5).
//!
//! The SQL lives in `sql/silver/` (one file per output table, CTEs ending in
//! `final`) and refers only to logical table names. The session gap and the
//! excluded event types are bound parameters, never pasted into the SQL.
//! [`reach`] decides which dates an incremental recompute loads and
//! [`rebuild`] runs it and commits.

pub mod patches;
pub mod ranges;
pub mod reach;
pub mod rebuild;
mod refresh;

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use datafusion::common::ScalarValue;
use datafusion::prelude::{DataFrame, SessionContext};
use serde::Serialize;

use crate::bronze;
use crate::dirty;
use crate::log::LakeState;

pub use rebuild::{Options, dropped_tables, rebuild};

/// Logical name and directory of the sessionized events table.
pub const EVENTS_TABLE: &str = "events";
pub const EVENTS_DIR: &str = "silver/events";
/// Logical name and directory of the sessions table.
pub const SESSIONS_TABLE: &str = "sessions";
pub const SESSIONS_DIR: &str = "silver/sessions";

/// `sql/silver/session_keys.sql`: the kept bronze rows' names and sessions.
pub const SESSION_KEYS_SQL: &str = include_str!("../../sql/silver/session_keys.sql");
/// What events.sql calls session_keys.sql's output.
pub const SESSION_KEYS_TABLE: &str = "session_keys";
/// `sql/silver/events.sql`: deduplicated events with `session_id`.
pub const EVENTS_SQL: &str = include_str!("../../sql/silver/events.sql");
/// `sql/silver/sessions.sql`: one row per session of `events`.
pub const SESSIONS_SQL: &str = include_str!("../../sql/silver/sessions.sql");

/// The built-in typed per-event-type tables: (logical name, directory,
/// SQL), from `sql/silver/typed/`. Each SQL reads `events` and returns its
/// columns plus `_warnings` (present values that could not be typed),
/// which is counted and dropped before writing. A lake adds its own, or
/// replaces one of these, with `LAKE/typed/NAME.sql` (see [`load_typed`]).
pub const BUILTIN_TYPED: &[(&str, &str, &str)] = &[
    (
        "purchases",
        "silver/purchases",
        include_str!("../../sql/silver/typed/purchases.sql"),
    ),
    (
        "searches",
        "silver/searches",
        include_str!("../../sql/silver/typed/searches.sql"),
    ),
    (
        "signups",
        "silver/signups",
        include_str!("../../sql/silver/typed/signups.sql"),
    ),
    (
        "cart_adds",
        "silver/cart_adds",
        include_str!("../../sql/silver/typed/cart_adds.sql"),
    ),
    (
        "ledger",
        "silver/ledger",
        include_str!("../../sql/silver/typed/ledger.sql"),
    ),
];

/// A lake's own typed tables: `LAKE/typed/NAME.sql`.
pub const TYPED_DIR: &str = "typed";

/// The columns every typed table's SQL must return (the session-id patch
/// of a late batch finds rows by `event_id`; `_warnings` is counted).
pub const TYPED_COLUMNS: &[&str] = &["event_id", "session_id", "event_date", "_warnings"];

/// One typed table: (logical name, directory, SQL).
pub type Typed = (&'static str, &'static str, &'static str);

static TYPED: std::sync::OnceLock<(Vec<Typed>, std::collections::HashMap<&'static str, String>)> =
    std::sync::OnceLock::new();

/// The typed tables of this process's lake: the built-ins, with the lake's
/// own files replacing or added to them (in name order after the
/// built-ins), once [`load_typed`] has read them; the built-ins before.
pub fn typed() -> &'static [Typed] {
    TYPED.get().map_or(BUILTIN_TYPED, |(t, _)| t.as_slice())
}

/// Where typed table `table`'s SQL comes from, for messages.
pub fn typed_source(table: &str) -> String {
    TYPED
        .get()
        .and_then(|(_, src)| src.get(table).cloned())
        .unwrap_or_else(|| format!("sql/silver/typed/{table}.sql"))
}

/// One of the lake's own typed tables, as `status` lists them.
#[derive(Debug, Clone, Serialize)]
pub struct OwnTyped {
    pub table: String,
    pub source: String,
    /// It replaces the built-in typed table of that name.
    pub replaces_builtin: bool,
    /// Why the next silver run will fail on it, if it will (its SQL does
    /// not plan, lacks a column, or is not one row per event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The lake's own typed tables (see [`load_typed`]), by name.
pub fn own_typed() -> Vec<OwnTyped> {
    let mut out: Vec<OwnTyped> = TYPED
        .get()
        .map(|(_, src)| {
            src.iter()
                .map(|(t, s)| OwnTyped {
                    table: t.to_string(),
                    source: s.clone(),
                    replaces_builtin: BUILTIN_TYPED.iter().any(|(b, _, _)| b == t),
                    problem: None,
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.table.cmp(&b.table));
    out
}

/// Is typed table `table`'s SQL the lake's own (`LAKE/typed/`)?
pub fn is_own_typed(table: &str) -> bool {
    TYPED.get().is_some_and(|(_, src)| src.contains_key(table))
}

/// Names a lake's own typed table may not take: the other tables'.
pub(crate) const RESERVED: &[&str] = &[
    EVENTS_TABLE,
    SESSIONS_TABLE,
    "bronze_events",
    "bronze_late",
    "quarantine",
    "daily_metrics",
    "daily_revenue_by_currency",
    "partials",
    "state",
];

/// Read `LAKE/typed/*.sql` once for this process (a command works on one
/// lake). A file name that is not lowercase letters, digits and `_`, or that names
/// another table, is a usage error naming the file. Their SQL is checked
/// when silver plans it.
pub fn load_typed(lake: &crate::lake::Lake) -> Result<()> {
    if TYPED.get().is_some() {
        return Ok(());
    }
    let own = crate::lake::sql_files(&lake.path(TYPED_DIR))?;
    for (name, path) in &own {
        if let Some(problem) = crate::lake::table_name_problem(name, path, "a typed table") {
            return Err(crate::error::Failure::Usage(problem).into());
        }
        if RESERVED.contains(&name.as_str()) {
            return Err(crate::error::Failure::Usage(format!(
                "`{}`: `{name}` is another table's name",
                path.display()
            ))
            .into());
        }
    }
    let mut tables: Vec<Typed> = BUILTIN_TYPED.to_vec();
    let mut sources = std::collections::HashMap::new();
    for (name, path) in own {
        let sql = crate::lake::read_sql_file(&path)?;
        let sql: &'static str = Box::leak(sql.into_boxed_str());
        let name: &'static str = Box::leak(name.into_boxed_str());
        sources.insert(name, path.display().to_string());
        match tables.iter_mut().find(|(t, _, _)| *t == name) {
            Some(builtin) => builtin.2 = sql,
            None => {
                let dir: &'static str = Box::leak(format!("silver/{name}").into_boxed_str());
                tables.push((name, dir, sql));
            }
        }
    }
    let _ = TYPED.set((tables, sources));
    Ok(())
}

/// An empty relation with silver table `t`'s columns (its SQL over empty
/// bronze), for models that read a table with no rows yet, and
/// for `query` of a built table that has none.
pub async fn empty_table(ctx: &SessionContext, t: &str) -> Result<DataFrame> {
    let scratch = crate::engine::scratch(ctx);
    let bronze_schema = bronze::schema();
    let mut fields: Vec<_> = bronze_schema.fields().iter().cloned().collect();
    fields.push(std::sync::Arc::new(
        datafusion::arrow::datatypes::Field::new(
            "event_date",
            datafusion::arrow::datatypes::DataType::Date32,
            false,
        ),
    ));
    let schema = std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
    let table = datafusion::datasource::MemTable::try_new(schema, vec![vec![]])?;
    let _ = scratch.deregister_table(bronze::TABLE);
    scratch.register_table(bronze::TABLE, std::sync::Arc::new(table))?;
    let events = events(&scratch, &Settings::default()).await?;
    if t == EVENTS_TABLE {
        return Ok(events);
    }
    let _ = scratch.deregister_table(EVENTS_TABLE);
    scratch.register_table(EVENTS_TABLE, events.into_view())?;
    if t == SESSIONS_TABLE {
        return sessions(&scratch).await;
    }
    let (_, _, sql) = typed()
        .iter()
        .find(|(n, _, _)| *n == t)
        .context("unknown silver table")?;
    // As a build plans it (see rebuild's plan_typed).
    let df = crate::engine::planned(&scratch, sql, Default::default()).await?;
    Ok(crate::engine::with_reader_types(df)?.drop_columns(&["_warnings"])?)
}

/// [`empty_table`] as a table of its own, with no plan behind it: SQL
/// planned over it plans as over the lake's table (over the relation
/// itself, a view, its windows and joins would be part of the plan).
pub async fn empty_provider(
    ctx: &SessionContext,
    t: &str,
) -> Result<std::sync::Arc<datafusion::datasource::MemTable>> {
    let df = empty_table(ctx, t).await?;
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    Ok(std::sync::Arc::new(
        datafusion::datasource::MemTable::try_new(schema, vec![vec![]])?,
    ))
}

/// Default `--session-gap`: 30 minutes.
pub const DEFAULT_SESSION_GAP_US: i64 = 30 * 60 * 1_000_000;
/// The largest `--session-gap`: one day (a session then only ever crosses
/// into the adjacent date, which the incremental reach relies on).
pub const MAX_SESSION_GAP_US: i64 = crate::time::MICROS_PER_DAY;

/// The settings that shape silver's rows (all in the fingerprint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// A new session starts when the gap is strictly greater than this (µs).
    pub session_gap_us: i64,
    /// Event types left out of sessionization (kept, `session_id` NULL).
    pub exclude_types: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::with_gap(DEFAULT_SESSION_GAP_US)
    }
}

impl Settings {
    pub fn with_gap(session_gap_us: i64) -> Settings {
        Settings {
            session_gap_us,
            exclude_types: Vec::new(),
        }
    }

    /// `$2` of events.sql: each excluded type wrapped in 0x1f.
    fn exclude_param(&self) -> String {
        let mut types: Vec<&str> = self.exclude_types.iter().map(String::as_str).collect();
        types.sort_unstable();
        types.dedup();
        types.iter().map(|t| format!("\u{1f}{t}\u{1f}")).collect()
    }
}

/// Deduplicated, sessionized events from the context's `bronze_events`
/// (session_keys.sql registered as a view, then events.sql).
pub async fn events(ctx: &SessionContext, settings: &Settings) -> Result<DataFrame> {
    let keys = session_keys(ctx, settings).await?;
    let _ = ctx.deregister_table(SESSION_KEYS_TABLE)?;
    ctx.register_table(SESSION_KEYS_TABLE, keys.into_view())?;
    joined_events(ctx).await
}

/// session_keys.sql over the context's `bronze_events`.
pub async fn session_keys(ctx: &SessionContext, settings: &Settings) -> Result<DataFrame> {
    let df = ctx
        .sql(SESSION_KEYS_SQL)
        .await
        .context("sql/silver/session_keys.sql does not plan")?;
    df.with_param_values(vec![
        ScalarValue::Int64(Some(settings.session_gap_us)),
        ScalarValue::Utf8(Some(settings.exclude_param())),
    ])
    .context("binding the session gap to sql/silver/session_keys.sql")
}

/// events.sql over the context's `bronze_events` and `session_keys`.
pub async fn joined_events(ctx: &SessionContext) -> Result<DataFrame> {
    ctx.sql(EVENTS_SQL)
        .await
        .context("sql/silver/events.sql does not plan")
}

/// Sessions from the context's `events` table.
pub async fn sessions(ctx: &SessionContext) -> Result<DataFrame> {
    ctx.sql(SESSIONS_SQL)
        .await
        .context("sql/silver/sessions.sql does not plan")
}

/// The settings a silver commit records (`status` compares them with a
/// later run's to say what changed).
pub fn commit_settings(settings: &Settings) -> BTreeMap<String, String> {
    let mut out = BTreeMap::from([(
        "session_gap_us".to_string(),
        settings.session_gap_us.to_string(),
    )]);
    if !settings.exclude_types.is_empty() {
        out.insert(
            "session_exclude_types".into(),
            settings.exclude_types.join(","),
        );
    }
    out
}

/// The fingerprint of the SQL and settings that build `events` and
/// `sessions`, with the built-in typed tables' SQL as this evlake ships it:
/// a change to any of it, the gap or the excluded types makes every silver
/// partition dirty. A lake's own typed SQL (`LAKE/typed/`) is not in it:
/// see [`Fingerprints::of`].
pub fn fingerprint(settings: &Settings) -> String {
    let gap = settings.session_gap_us.to_string();
    let excluded = settings.exclude_param();
    let mut parts = vec![SESSION_KEYS_SQL, EVENTS_SQL, SESSIONS_SQL, gap.as_str()];
    parts.extend(BUILTIN_TYPED.iter().map(|(_, _, sql)| *sql));
    // Only when set, so lakes built before the option keep their builds.
    if !excluded.is_empty() {
        parts.push(excluded.as_str());
    }
    crate::dirty::fingerprint(&parts)
}

/// Each silver table's fingerprint under some settings.
#[derive(Debug, Clone)]
pub struct Fingerprints {
    /// [`fingerprint`]: `events`, `sessions` and the built-in typed tables
    /// as shipped.
    pub core: String,
}

impl Fingerprints {
    pub fn new(settings: &Settings) -> Fingerprints {
        Fingerprints {
            core: fingerprint(settings),
        }
    }

    /// `table`'s fingerprint: silver's own, except for a typed table whose
    /// SQL is the lake's (an added table, or a built-in one replaced),
    /// which adds its name and SQL. Editing, adding or renaming one such
    /// file changes only that table's, so only that table is rebuilt (from
    /// the built `events`), not every silver table.
    pub fn of(&self, table: &str) -> String {
        match typed().iter().find(|(t, _, _)| *t == table) {
            Some((t, _, sql)) if is_own_typed(t) => {
                crate::dirty::fingerprint(&[&self.core, t, sql, crate::engine::READER_TYPES])
            }
            _ => self.core.clone(),
        }
    }
}

/// The typed tables' partitions whose build is not what their SQL gives
/// now, where `events` is built with `fps.core` (elsewhere silver
/// recomputes the date anyway): never built (a table added to
/// `LAKE/typed/`), built with another fingerprint (its file changed), or
/// from other bronze than the date's events (rebuilt while its file was
/// away).
pub fn typed_dirty(state: &LakeState, fps: &Fingerprints) -> Vec<dirty::DirtyPartition> {
    let Some(events) = state.builds.get(EVENTS_TABLE) else {
        return Vec::new();
    };
    let wanted = wanted(state);
    let built: Vec<(&String, &crate::log::Build)> = events
        .iter()
        .filter(|(d, (_, b))| b.fingerprint == fps.core && wanted.contains_key(*d))
        .map(|(d, (_, b))| (d, b))
        .collect();
    let mut out = Vec::new();
    for (table, _, _) in typed() {
        let fp = fps.of(table);
        let builds = state.builds.get(*table);
        for (d, from) in &built {
            // Built with its SQL from the bronze the date's events were
            // built from. (Events rebuilt while the table's file was away
            // leave it behind: a table whose partitions were all empty
            // keeps its builds when its file goes.)
            let reasons = match builds.and_then(|b| b.get(*d)) {
                None => vec![dirty::DirtyReason::NeverBuilt],
                Some((_, b)) => {
                    let inputs: Vec<String> = from.inputs.keys().cloned().collect();
                    dirty::reasons_for(b, &fp, &inputs, |k| from.inputs.get(k).copied())
                }
            };
            if reasons.is_empty() {
                continue;
            }
            out.push(dirty::DirtyPartition {
                table: table.to_string(),
                partition: (*d).clone(),
                reasons,
            });
        }
    }
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct SilverReport {
    pub command: &'static str,
    /// `committed`, `noop` (nothing dirty) or `dry_run`.
    pub status: &'static str,
    /// `incremental` or `full`.
    pub mode: &'static str,
    pub lake: String,
    pub version: u64,
    /// Dirty silver partitions found before the run, and why.
    pub dirty: Vec<dirty::DirtyPartition>,
    /// Dates restated with `--dates`.
    pub restated: Vec<String>,
    /// Dates whose events were loaded: the dirty and restated dates plus
    /// the neighbours that sessions reach into.
    pub loaded_dates: Vec<String>,
    /// Users with events on a recomputed date, whose sessions were
    /// recomputed (none listed in a full rebuild: every user is).
    pub touched_users: Option<u64>,
    /// (user, date) pairs outside the recomputed dates that touched users'
    /// sessions reach into; those rows were loaded and recomputed too.
    pub reached_user_dates: Option<u64>,
    /// Per table, the partitions rewritten (rows changed or restated).
    pub recomputed: BTreeMap<String, Vec<String>>,
    /// Every rewritten partition with its new row count (0: now empty).
    pub partitions: Vec<crate::derive::Written>,
    /// The most bytes spilled to disk at once (0: it fit in memory).
    pub spill_peak_bytes: u64,
    /// Per typed table: present values that could not be typed (now NULL).
    pub warnings: BTreeMap<String, u64>,
    /// Per typed table with such values: the first few events (by date and
    /// id) that have one.
    pub warning_events: BTreeMap<String, Vec<EventRef>>,
    /// The typed tables of the lake's own rebuilt on their own (their SQL
    /// changed, or they are new) or dropped (their file removed), in a
    /// commit before the rest; `None` when none was.
    pub typed_refresh: Option<TypedRefresh>,
    /// In a full rebuild: the excluded session types that no bronze event
    /// has (most often a typo), left out of nothing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude_types_absent: Vec<AbsentType>,
    /// With `--dry-run`: what the run would recompute (nothing is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<SilverPlan>,
    pub elapsed_ms: u64,
}

/// What `evlake silver --dry-run` finds a run would do: the same fields
/// as `evlake run --dry-run`'s plan has for silver.
#[derive(Debug, Clone, Serialize)]
pub struct SilverPlan {
    /// The dates every silver table would be recomputed for; session
    /// reach can add neighbouring dates.
    pub silver_dates: Vec<String>,
    /// Per typed table of the lake's own whose SQL changed (or that is
    /// new), the dates it would be rebuilt for from the built `events`.
    pub typed_tables: BTreeMap<String, Vec<String>>,
    /// Typed tables whose file was removed: their partitions would go.
    pub dropped_tables: Vec<String>,
}

/// An excluded session type that no event has.
#[derive(Debug, Clone, Serialize)]
pub struct AbsentType {
    pub event_type: String,
    /// The event type nearest to it in spelling, if one is close.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nearest: Option<String>,
}

/// A commit that rebuilt typed tables from the built `events` only.
#[derive(Debug, Clone, Serialize)]
pub struct TypedRefresh {
    pub version: u64,
    /// Per table, the dates rebuilt.
    pub tables: BTreeMap<String, Vec<String>>,
    /// Tables whose file was removed: every partition of theirs went.
    pub dropped_tables: Vec<String>,
    /// Partitions it rewrote (or emptied), of `partitions`.
    pub partitions: usize,
}

/// One event of silver `events`, by its date and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRef {
    pub event_date: String,
    pub event_id: String,
}

/// What a run found untyped in the typed tables it wrote.
#[derive(Debug, Clone, Default)]
pub struct TypedWarnings {
    /// Per table, the values that could not be typed (now NULL).
    pub counts: BTreeMap<String, u64>,
    /// Per table with any, the first few events that have one.
    pub events: BTreeMap<String, Vec<EventRef>>,
}

/// Which silver partitions are dirty: each `events` partition reads the
/// bronze partition of the same date; the recompute extends from there.
pub fn dirty_partitions(state: &LakeState, settings: &Settings) -> Vec<dirty::DirtyPartition> {
    dirty::dirty_partitions(state, EVENTS_TABLE, &fingerprint(settings), &wanted(state))
}

/// Every date silver should have (each bronze date), with its input.
pub fn wanted(state: &LakeState) -> BTreeMap<String, Vec<String>> {
    state
        .partitions(bronze::TABLE)
        .map(|(d, _)| (d.clone(), vec![dirty::input_key(bronze::TABLE, d)]))
        .collect()
}

/// Every silver table's logical name.
pub fn all_tables() -> Vec<&'static str> {
    let mut v = vec![EVENTS_TABLE, SESSIONS_TABLE];
    v.extend(typed().iter().map(|(t, _, _)| *t));
    v
}

/// Every silver table's directory.
pub fn all_dirs() -> Vec<&'static str> {
    let mut v = vec![EVENTS_DIR, SESSIONS_DIR];
    v.extend(typed().iter().map(|(_, d, _)| *d));
    v
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
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
        let named: BTreeSet<(&str, i64)> = rows.iter().map(|r| (r.4, r.5)).collect();
        assert_eq!(named.len(), rows.len(), "two rows on one line of a batch");
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
        crate::udf::register_all(&ctx);
        let batch = bronze(rows);
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
        ctx.register_table("bronze_events", Arc::new(table))
            .unwrap();
        ctx
    }

    /// event_id → (session_id, kept batch, kept line) after silver.
    async fn kept(rows: &[Row], gap: i64) -> BTreeMap<String, (String, String, i64)> {
        let ctx = ctx_with(rows).await;
        let batches = events(&ctx, &Settings::with_gap(gap))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        for b in &batches {
            let ids = b.column_by_name("event_id").unwrap().as_string::<i32>();
            let sids = b.column_by_name("session_id").unwrap().as_string::<i32>();
            let batch_ids = b.column_by_name("batch_id").unwrap().as_string::<i32>();
            let lines = b
                .column_by_name("source_line")
                .unwrap()
                .as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                let prev = out.insert(
                    ids.value(i).to_string(),
                    (
                        sids.value(i).to_string(),
                        batch_ids.value(i).to_string(),
                        lines.value(i),
                    ),
                );
                assert!(prev.is_none(), "event {} twice", ids.value(i));
            }
        }
        out
    }

    /// event_id → (session_id, kept processing batch) after silver.
    async fn sessionize(rows: &[Row], gap: i64) -> BTreeMap<String, (String, String)> {
        kept(rows, gap)
            .await
            .into_iter()
            .map(|(id, (sid, batch, _))| (id, (sid, batch)))
            .collect()
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

    /// A page view on its own line of batch b1 (a bronze row is named by
    /// its batch and line).
    fn pv(id: &'static str, user: &'static str, ts: &'static str) -> Row {
        static LINE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1000);
        let line = LINE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (id, user, ts, PT, "b1", line, "page_view", Some("/p"))
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
        let ev = events(&ctx, &Settings::with_gap(GAP)).await.unwrap();
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
    async fn of_many_resent_events_each_keeps_its_first_copy() {
        // Re-sends are found per bucket of keys (a LAG over keys in
        // order), so many keys share a window partition: each must keep
        // exactly its own first copy by (processing_time, batch, line).
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let mut rows: Vec<Row> = Vec::new();
        let mut want: BTreeMap<&str, (&str, &str, i64)> = BTreeMap::new();
        let mut x: u64 = 11;
        let mut line = 0;
        for k in 0..200 {
            let id = leak(format!("k{k}"));
            for _ in 0..(k % 3 + 1) {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                line += 1;
                let pt = leak(format!("2024-03-1{}T02:00:00Z", 6 + (x >> 60) % 3));
                let batch = leak(format!("b{}", (x >> 50) % 4));
                rows.push((
                    id,
                    "u",
                    "2024-03-15T10:00:00Z",
                    pt,
                    batch,
                    line,
                    "page_view",
                    None,
                ));
                let mine = (pt, batch, line);
                let best = want.entry(id).or_insert(mine);
                *best = (*best).min(mine);
            }
        }
        rows.reverse();
        let got = kept(&rows, GAP).await;
        assert_eq!(got.len(), 200);
        for (id, (_, batch, line)) in &want {
            let (_, got_batch, got_line) = &got[*id];
            assert_eq!(
                (got_batch.as_str(), *got_line),
                (*batch, *line),
                "the copy kept of {id}"
            );
        }
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
    async fn users_sharing_a_window_bucket_keep_their_own_sessions() {
        // The windows run per bucket of users (hash_bucket(user_id, 64)),
        // so a change of user must start a session even when the previous
        // row, another user's, is seconds away.
        let ctx = ctx_with(&[]).await;
        let b = ctx
            .sql("SELECT hash_bucket('u3', 64) = hash_bucket('u10', 64)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert!(
            b[0].column(0).as_boolean().value(0),
            "the test needs two users in one bucket"
        );
        let s = sessionize(
            &[
                pv("a", "u3", "2024-03-15T10:00:00Z"),
                pv("b", "u10", "2024-03-15T10:05:00Z"),
                pv("c", "u3", "2024-03-15T10:10:00Z"),
                pv("d", "u10", "2024-03-15T10:15:00Z"),
                pv("e", "u3", "2024-03-15T11:00:00Z"), // 50 min after c: new
            ],
            GAP,
        )
        .await;
        assert_eq!(
            groups(&s),
            [
                vec!["a".to_string(), "c".into()],
                vec!["b".into(), "d".into()],
                vec!["e".into()]
            ]
        );
        assert_eq!(s["d"].0, crate::udf::session_id_of("u10", "b"));
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
        ctx.register_table(
            "events",
            events(&ctx, &Settings::with_gap(GAP))
                .await
                .unwrap()
                .into_view(),
        )
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
        let s = Settings::with_gap(GAP);
        assert_ne!(fingerprint(&s), fingerprint(&Settings::with_gap(GAP + 1)));
        assert_eq!(fingerprint(&s), fingerprint(&Settings::with_gap(GAP)));
        let mut x = s.clone();
        x.exclude_types = vec!["heartbeat".into()];
        assert_ne!(fingerprint(&s), fingerprint(&x));
    }
}
