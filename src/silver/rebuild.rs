//! `evlake silver`: recompute the dirty silver partitions, extended by
//! session reach, and commit them in one commit (DESIGN.md §3, §5).
//!
//! 1. The dirty dates (bronze changed since the build, or never built) plus
//!    any `--dates` restated are the *recomputed dates*. If they are every
//!    date, or the SQL/settings changed, it is a full rebuild.
//! 2. [`reach`] finds the touched users (events on a recomputed date) and
//!    the neighbouring dates their sessions reach into.
//! 3. events.sql runs over bronze of the recomputed dates (every user) plus
//!    the touched users' built silver events on the neighbouring dates
//!    (already deduplicated, since those dates' bronze did not change);
//!    sessions.sql runs over the result.
//! 4. A neighbouring date is rewritten only where its rows changed: the
//!    touched users' `(event_id, session_id)` pairs or session rows differ
//!    from the built ones. The rewrite keeps every other user's rows.
//! 5. The typed tables are rebuilt from the new events of every rewritten
//!    date, and everything lands in one commit with its build records.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::datasource::MemTable;
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
use datafusion::prelude::{DataFrame, SessionContext, cast, col};

use super::reach::{self, Day, Stats, UserDay};
use super::{
    EVENTS_DIR, EVENTS_TABLE, SESSIONS_DIR, SESSIONS_TABLE, Settings, SilverPartition,
    SilverReport, TYPED, dirty_partitions, events, fingerprint, sessions,
};
use crate::bronze;
use crate::dirty;
use crate::engine::{self, Engine, EngineOptions};
use crate::fault;
use crate::ingest::table_dirs;
use crate::lake::{self, Lake};
use crate::log::{self, Commit, FileAction, LakeState};
use crate::time::{format_date32, parse_date32};

/// What `evlake silver` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub settings: Settings,
    /// Rebuild every partition.
    pub full: bool,
    /// Restate this inclusive date range even if it is not dirty.
    pub dates: Option<(Day, Day)>,
    pub engine: EngineOptions,
    pub processing_time: i64,
}

/// The users table the reach queries and merges filter on.
const USERS: &str = "_silver_touched_users";

/// Recompute what is dirty (or everything with `full`) and commit it.
pub fn rebuild(lake: &Lake, opts: &Options) -> Result<SilverReport> {
    let started = Instant::now();
    let _lock = lake.lock()?;
    let state = LakeState::load(lake)?;
    log::clean_orphans(lake, &state, &table_dirs())?;
    let dirty = dirty_partitions(&state, &opts.settings);
    let bronze_days: BTreeSet<Day> = state
        .partitions(bronze::TABLE)
        .map(|(d, _)| parse_date32(d).map_err(anyhow::Error::msg))
        .collect::<Result<_>>()?;
    let mut recompute: BTreeSet<Day> = dirty
        .iter()
        .map(|d| parse_date32(&d.partition).map_err(anyhow::Error::msg))
        .collect::<Result<_>>()?;
    let restated: BTreeSet<Day> = match opts.dates {
        Some((a, b)) => bronze_days.range(a..=b).copied().collect(),
        None => BTreeSet::new(),
    };
    recompute.extend(&restated);
    let full = opts.full || (!bronze_days.is_empty() && recompute == bronze_days);
    let mut report = SilverReport {
        command: "silver",
        status: "noop",
        mode: if full { "full" } else { "incremental" },
        lake: lake.root().display().to_string(),
        version: state.version,
        dirty,
        restated: restated.iter().map(|d| format_date32(*d)).collect(),
        loaded_dates: Vec::new(),
        touched_users: None,
        spill_peak_bytes: 0,
        recomputed: BTreeMap::new(),
        partitions: Vec::new(),
        warnings: BTreeMap::new(),
        elapsed_ms: 0,
    };
    if bronze_days.is_empty() || (!full && recompute.is_empty()) {
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    if full {
        recompute = bronze_days.clone();
    }

    let staging = lake
        .staging_dir()
        .join(format!("silver-{}", std::process::id()));
    fs::create_dir_all(&staging)
        .with_context(|| format!("failed to create `{}`", staging.display()))?;
    let mut engine_opts = opts.engine.clone();
    engine_opts.spill_dir.get_or_insert(staging.join("spill"));
    let dirs = Staged::new(&staging);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let built = rt.block_on(async {
        let engine = Engine::new(&engine_opts)?;
        let spill = engine.spill_monitor();
        let ctx = engine.context(lake).await?;
        let work = engine.bare()?;
        let (loaded, users) = if full {
            (recompute.clone(), None)
        } else {
            let mut stats = LakeStats {
                ctx: &ctx,
                registered: false,
            };
            let r = reach::reach(
                &recompute,
                &bronze_days,
                opts.settings.session_gap_us,
                &mut stats,
            )
            .await?;
            if !stats.registered {
                register_users(&ctx, &r.users)?;
            }
            (r.loaded, Some(r.users))
        };
        let neighbours: BTreeSet<Day> = loaded.difference(&recompute).copied().collect();
        let built = compute(
            &ctx,
            &work,
            &opts.settings,
            full,
            &recompute,
            &neighbours,
            &dirs,
        )
        .await?;
        anyhow::Ok((loaded, users.map(|u| u.len() as u64), built, spill.finish()))
    })?;
    let (loaded, touched, built, spilled) = built;
    report.spill_peak_bytes = spilled;
    report.loaded_dates = loaded.iter().map(|d| format_date32(*d)).collect();
    report.touched_users = touched;
    report.warnings = built.warnings.clone();
    fault::point("staged");

    // Which partitions of which table this commit replaces.
    let days =
        |s: &BTreeSet<Day>| -> BTreeSet<String> { s.iter().map(|d| format_date32(*d)).collect() };
    let mut event_days = days(&recompute);
    event_days.extend(days(&built.changed_events));
    let mut session_days = days(&recompute);
    session_days.extend(days(&built.changed_sessions));
    let mut outputs: Vec<(&str, &str, PathBuf, &str, BTreeSet<String>)> = vec![
        (
            EVENTS_TABLE,
            EVENTS_DIR,
            dirs.events.clone(),
            "event_date",
            event_days.clone(),
        ),
        (
            SESSIONS_TABLE,
            SESSIONS_DIR,
            dirs.sessions.clone(),
            "session_date",
            session_days,
        ),
    ];
    for (table, dir, _) in TYPED {
        outputs.push((
            table,
            dir,
            staging.join(table),
            "event_date",
            event_days.clone(),
        ));
    }
    if full {
        // A full rebuild replaces every partition, even ones with no date
        // in bronze any more.
        for (table, _, _, _, parts) in &mut outputs {
            parts.extend(state.partitions(table).map(|(p, _)| p.clone()));
        }
    }

    let run_id = {
        let mut h = blake3::Hasher::new();
        h.update(format!("silver {} {}", state.version, std::process::id()).as_bytes());
        h.finalize().to_hex()[..16].to_string()
    };
    let fp = fingerprint(&opts.settings);
    let mut commit = Commit::next(&state, "silver", opts.processing_time);
    commit.settings.insert(
        "session_gap_us".into(),
        opts.settings.session_gap_us.to_string(),
    );
    if !opts.settings.exclude_types.is_empty() {
        commit.settings.insert(
            "session_exclude_types".into(),
            opts.settings.exclude_types.join(","),
        );
    }
    commit.settings.insert("mode".into(), report.mode.into());
    let mut n = 0;
    for (table, dir, staged, column, parts) in outputs {
        let mut new_rows: BTreeMap<String, u64> = BTreeMap::new();
        for rel in lake::list_files(&staged, &staged)? {
            let Some((part_dir, _)) = rel.split_once('/') else {
                continue;
            };
            let partition = part_dir
                .strip_prefix(&format!("{column}="))
                .context("unexpected staged layout")?
                .to_string();
            if !parts.contains(&partition) {
                bail!(
                    "internal error: silver staged {table} rows for {partition}, \
                     outside the partitions it replaces"
                );
            }
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
            *new_rows.entry(partition).or_default() += rows;
        }
        let old = state.tables.get(table);
        for p in &parts {
            let old_files = old.and_then(|t| t.get(p)).map(|p| &p.files);
            if let Some(files) = old_files {
                commit.remove.extend(files.values().cloned());
            }
            let rows = new_rows.get(p).copied().unwrap_or(0);
            if rows > 0 || old_files.is_some_and(|f| !f.is_empty()) {
                report
                    .recomputed
                    .entry(table.to_string())
                    .or_default()
                    .push(p.clone());
                report.partitions.push(SilverPartition {
                    table: table.to_string(),
                    partition: p.clone(),
                    rows,
                });
            }
            // Every rewritten (or recomputed) date records the bronze
            // version it read, including dates where it has no rows (a
            // day with no purchases is built, not missing).
            if state
                .tables
                .get(bronze::TABLE)
                .is_some_and(|t| t.contains_key(p))
            {
                let input = dirty::input_key(bronze::TABLE, p);
                commit
                    .builds
                    .push(dirty::build_record(&state, table, p, &[input], &fp));
            }
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

/// Staging directories of one run.
struct Staged {
    /// events.sql output for the touched users over the loaded dates.
    touched_events: PathBuf,
    /// sessions.sql output over `touched_events`.
    touched_sessions: PathBuf,
    /// The final `events` partitions.
    events: PathBuf,
    /// The final `sessions` partitions.
    sessions: PathBuf,
    root: PathBuf,
}

impl Staged {
    fn new(root: &Path) -> Staged {
        Staged {
            touched_events: root.join("touched-events"),
            touched_sessions: root.join("touched-sessions"),
            events: root.join("events"),
            sessions: root.join("sessions"),
            root: root.to_path_buf(),
        }
    }
}

/// What [`compute`] staged.
struct Built {
    /// Neighbouring dates whose events (session ids) changed.
    changed_events: BTreeSet<Day>,
    /// Neighbouring dates whose sessions changed.
    changed_sessions: BTreeSet<Day>,
    warnings: BTreeMap<String, u64>,
}

/// Run the SQL and stage every rewritten partition (see the module docs).
async fn compute(
    ctx: &SessionContext,
    work: &SessionContext,
    settings: &Settings,
    full: bool,
    recompute: &BTreeSet<Day>,
    neighbours: &BTreeSet<Day>,
    dirs: &Staged,
) -> Result<Built> {
    // The input of events.sql, registered in `work` under the name the SQL
    // reads.
    let mut input = ctx.table(bronze::TABLE).await?;
    if !full {
        input = input.filter(in_days("event_date", recompute))?;
    }
    if !neighbours.is_empty() {
        let types: Vec<(String, DataType)> = input
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        let built = ctx
            .sql(&format!(
                "SELECT * FROM {EVENTS_TABLE} WHERE event_date IN ({}) \
                 AND user_id IN (SELECT user_id FROM {USERS})",
                date_list(neighbours)
            ))
            .await?
            .select(
                types
                    .iter()
                    .map(|(name, t)| cast(col(name.as_str()), t.clone()).alias(name))
                    .collect::<Vec<_>>(),
            )?;
        input = input.union(built)?;
    }
    work.register_table(bronze::TABLE, input.into_view())?;
    write(
        events(work, settings).await?,
        &dirs.touched_events,
        "event_date",
        "silver events",
    )
    .await?;
    engine::register_partitioned(
        work,
        EVENTS_TABLE,
        &dirs.touched_events,
        "event_date",
        None,
        Vec::new(),
    )
    .await?;
    write(
        sessions(work).await?,
        &dirs.touched_sessions,
        "session_date",
        "silver sessions",
    )
    .await?;

    // Neighbouring dates: rewrite only where the touched users' rows changed.
    let mut changed_events = BTreeSet::new();
    let mut changed_sessions = BTreeSet::new();
    if !neighbours.is_empty() {
        let new_events = "_silver_new_events";
        let new_sessions = "_silver_new_sessions";
        for (name, dir, column) in [
            (new_events, &dirs.touched_events, "event_date"),
            (new_sessions, &dirs.touched_sessions, "session_date"),
        ] {
            engine::register_partitioned(ctx, name, dir, column, None, Vec::new()).await?;
        }
        let within = |table: &str, column: &str, cols: &str, touched_only: bool| -> String {
            if !ctx.table_exist(table).unwrap_or(false) {
                return String::new();
            }
            let users = if touched_only {
                format!(" AND user_id IN (SELECT user_id FROM {USERS})")
            } else {
                String::new()
            };
            format!(
                "SELECT {cols} FROM {table} WHERE {column} IN ({}){users}",
                date_list(neighbours)
            )
        };
        let event_cols = "event_date, event_id, session_id";
        changed_events = changed_dates(
            ctx,
            &within(new_events, "event_date", event_cols, false),
            &within(EVENTS_TABLE, "event_date", event_cols, true),
            "event_date",
        )
        .await?;
        changed_sessions = changed_dates(
            ctx,
            &within(new_sessions, "session_date", "*", false),
            &within(SESSIONS_TABLE, "session_date", "*", true),
            "session_date",
        )
        .await?;
        // The rewrite of a changed neighbour: the touched users' new rows
        // plus every other user's built rows.
        for (changed, new, old, column, out) in [
            (
                &changed_events,
                new_events,
                EVENTS_TABLE,
                "event_date",
                &dirs.events,
            ),
            (
                &changed_sessions,
                new_sessions,
                SESSIONS_TABLE,
                "session_date",
                &dirs.sessions,
            ),
        ] {
            if changed.is_empty() {
                continue;
            }
            let mut parts = Vec::new();
            for table in [new, old] {
                if ctx.table_exist(table)? {
                    let others = if table == old {
                        format!(" AND user_id NOT IN (SELECT user_id FROM {USERS})")
                    } else {
                        String::new()
                    };
                    parts.push(format!(
                        "SELECT * FROM {table} WHERE {column} IN ({}){others}",
                        date_list(changed)
                    ));
                }
            }
            let df = ctx.sql(&parts.join(" UNION ALL ")).await?;
            write(df, out, column, "merged silver rows").await?;
        }
    }
    // Recomputed dates take the touched rows as they are: every user with
    // rows there is a touched user.
    for (from, to, column) in [
        (&dirs.touched_events, &dirs.events, "event_date"),
        (&dirs.touched_sessions, &dirs.sessions, "session_date"),
    ] {
        for day in recompute {
            let name = format!("{column}={}", format_date32(*day));
            let src = from.join(&name);
            if src.is_dir() {
                fs::create_dir_all(to)?;
                fs::rename(&src, to.join(&name))
                    .with_context(|| format!("failed to stage `{}`", src.display()))?;
            }
        }
    }

    // Typed tables from the final events of every rewritten date.
    work.deregister_table(EVENTS_TABLE)?;
    engine::register_partitioned(
        work,
        EVENTS_TABLE,
        &dirs.events,
        "event_date",
        None,
        Vec::new(),
    )
    .await?;
    let mut warnings = BTreeMap::new();
    if work.table_exist(EVENTS_TABLE)? {
        for (table, _, sql) in TYPED {
            let df = work
                .sql(sql)
                .await
                .with_context(|| format!("sql/silver/typed/{table}.sql does not plan"))?
                .cache()
                .await
                .with_context(|| format!("running sql/silver/typed/{table}.sql"))?;
            let counted = df
                .clone()
                .aggregate(
                    vec![],
                    vec![datafusion::functions_aggregate::expr_fn::sum(cast(
                        col("_warnings"),
                        DataType::Int64,
                    ))],
                )?
                .collect()
                .await?;
            let n = counted
                .first()
                .filter(|b| b.num_rows() > 0 && !b.column(0).is_null(0))
                .map_or(0, |b| b.column(0).as_primitive::<Int64Type>().value(0));
            warnings.insert(table.to_string(), n.max(0) as u64);
            write(
                df.drop_columns(&["_warnings"])?,
                &dirs.root.join(table),
                "event_date",
                &format!("silver {table}"),
            )
            .await?;
        }
    }
    Ok(Built {
        changed_events,
        changed_sessions,
        warnings,
    })
}

/// Write `df` Hive-partitioned by `column` under `dir`.
async fn write(df: DataFrame, dir: &Path, column: &str, what: &str) -> Result<()> {
    df.write_parquet(
        &format!("{}/", dir.display()),
        DataFrameWriteOptions::new().with_partition_by(vec![column.into()]),
        None,
    )
    .await
    .with_context(|| format!("writing {what}"))?;
    Ok(())
}

/// Dates (of `column`) where the two queries' rows differ. An empty query
/// stands for a table that does not exist yet (no rows).
async fn changed_dates(
    ctx: &SessionContext,
    new: &str,
    old: &str,
    column: &str,
) -> Result<BTreeSet<Day>> {
    let diffs: Vec<String> = match (new.is_empty(), old.is_empty()) {
        (true, true) => return Ok(BTreeSet::new()),
        (false, true) => vec![new.to_string()],
        (true, false) => vec![old.to_string()],
        (false, false) => vec![format!("{new} EXCEPT {old}"), format!("{old} EXCEPT {new}")],
    };
    let mut out = BTreeSet::new();
    for q in diffs {
        let batches = ctx
            .sql(&format!(
                "SELECT DISTINCT arrow_cast({column}, 'Int32') AS d FROM ({q}) diff"
            ))
            .await?
            .collect()
            .await?;
        for b in &batches {
            let d = b.column(0).as_primitive::<Int32Type>();
            out.extend(d.iter().flatten());
        }
    }
    Ok(out)
}

/// Per-user, per-date event time ranges from the lake, for [`reach`].
struct LakeStats<'a> {
    ctx: &'a SessionContext,
    /// Whether the touched users table is registered yet.
    registered: bool,
}

impl Stats for LakeStats<'_> {
    async fn dirty(&mut self, days: &BTreeSet<Day>) -> Result<Vec<UserDay>> {
        user_days(
            self.ctx,
            &format!(
                "SELECT user_id, event_date, min(event_timestamp) AS lo, max(event_timestamp) AS hi \
                 FROM {} WHERE event_date IN ({}) GROUP BY user_id, event_date",
                bronze::TABLE,
                date_list(days)
            ),
        )
        .await
    }

    async fn neighbours(
        &mut self,
        days: &BTreeSet<Day>,
        users: &HashSet<String>,
    ) -> Result<Vec<UserDay>> {
        if !self.registered {
            register_users(self.ctx, users)?;
            self.registered = true;
        }
        if !self.ctx.table_exist(EVENTS_TABLE)? {
            return Ok(Vec::new());
        }
        user_days(
            self.ctx,
            &format!(
                "SELECT user_id, event_date, min(event_timestamp) AS lo, max(event_timestamp) AS hi \
                 FROM {EVENTS_TABLE} WHERE event_date IN ({}) \
                 AND user_id IN (SELECT user_id FROM {USERS}) GROUP BY user_id, event_date",
                date_list(days)
            ),
        )
        .await
    }
}

async fn user_days(ctx: &SessionContext, sql: &str) -> Result<Vec<UserDay>> {
    let batches = ctx
        .sql(&format!(
            "SELECT arrow_cast(user_id, 'Utf8') AS u, arrow_cast(event_date, 'Int32') AS d, \
             arrow_cast(lo, 'Int64') AS lo, arrow_cast(hi, 'Int64') AS hi FROM ({sql}) s"
        ))
        .await?
        .collect()
        .await?;
    let mut out = Vec::new();
    for b in &batches {
        let u = b.column(0).as_string::<i32>();
        let d = b.column(1).as_primitive::<Int32Type>();
        let lo = b.column(2).as_primitive::<Int64Type>();
        let hi = b.column(3).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            out.push(UserDay {
                user: u.value(i).to_string(),
                day: d.value(i),
                first: lo.value(i),
                last: hi.value(i),
            });
        }
    }
    Ok(out)
}

fn register_users(ctx: &SessionContext, users: &HashSet<String>) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "user_id",
        DataType::Utf8,
        false,
    )]));
    let mut sorted: Vec<&str> = users.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from_iter_values(sorted))],
    )?;
    let _ = ctx.deregister_table(USERS)?;
    ctx.register_table(
        USERS,
        Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
    )?;
    Ok(())
}

/// `DATE '…', DATE '…'` for an `IN` list (dates are formatted here, never
/// taken from user text).
fn date_list(days: &BTreeSet<Day>) -> String {
    days.iter()
        .map(|d| format!("DATE '{}'", format_date32(*d)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn in_days(column: &str, days: &BTreeSet<Day>) -> datafusion::prelude::Expr {
    use datafusion::common::ScalarValue;
    col(column).in_list(
        days.iter()
            .map(|d| datafusion::prelude::lit(ScalarValue::Date32(Some(*d))))
            .collect(),
        false,
    )
}

fn parquet_rows(path: &Path) -> Result<u64> {
    let f = fs::File::open(path).with_context(|| format!("failed to open `{}`", path.display()))?;
    let r = SerializedFileReader::new(f)
        .with_context(|| format!("`{}`: not a readable Parquet file", path.display()))?;
    Ok(r.metadata().file_metadata().num_rows() as u64)
}
