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
//!    from the built ones. The rewrite keeps every other user's rows. A
//!    date whose bronze only grew, where no built row of a recomputed user
//!    changes, gets its new rows as one more file instead (see
//!    `APPEND_MAX_FILES`). Where the changed built rows differ only in
//!    their session id (the common case: a late event moved a session's
//!    start), the date's files are patched instead, that one column
//!    rewritten in every table ([`patches`]), plus the new rows' file.
//! 5. The typed tables are rebuilt from the new events of every rewritten
//!    date, and everything lands in one commit with its build records.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use datafusion::arrow::array::{Array, AsArray, Date32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema};
use datafusion::common::DFSchema;
use datafusion::datasource::MemTable;
use datafusion::prelude::{DataFrame, Expr, ParquetReadOptions, SessionContext, cast, col, lit};

use super::patches;
use super::ranges;
use super::reach::{self, Day, Stats, UserDay};
use super::{
    AbsentType, EVENTS_DIR, EVENTS_TABLE, SESSIONS_DIR, SESSIONS_TABLE, Settings, SilverReport,
    dirty_partitions, sessions, typed,
};
use crate::bronze;
use crate::derive::{self, Output};
use crate::dirty;
use crate::engine::{self, Engine, EngineOptions};
use crate::fault;
use crate::ingest::table_dirs;
use crate::lake::Lake;
use crate::log::{self, Commit, LakeState};
use crate::silver;
use crate::time::format_date32;

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
    /// Report what would be recomputed ([`silver::SilverReport::plan`]),
    /// without the lock, and write nothing.
    pub dry_run: bool,
}

/// The built silver events of the (user, date) pairs outside the
/// recomputed dates that the touched users' sessions reach (the neighbour
/// rows loaded and replaced; `Pairs::reached`).
const BUILT_REACHED: &str = "_silver_built_reached";
/// Every (user, date) whose built rows the new ones replace: those reached,
/// and on dates whose bronze only grew the touched ones (the users of the
/// new rows, and of rows sharing an event_id with them; `Pairs::touched`).
const MERGED: &str = "_silver_merged";
/// (event_date, event_id) of the new rows on those dates.
const NEW_IDS: &str = "_silver_new_ids";
/// The touched users' recomputed events, on every loaded date.
const NEW_EVENTS: &str = "_silver_new_events";
/// The touched users' recomputed sessions.
const NEW_SESSIONS: &str = "_silver_new_sessions";
/// (event_date, event_id, session_id, batch_id, source_line) of the built
/// events of every MERGED pair on the grown dates that may be appended to
/// (the users whose rows there are recomputed).
const BUILT_KEPT: &str = "_silver_built_kept";
/// The touched users' typed rows of the appended dates, one table at a time.
const NEW_TYPED: &str = "_silver_new_typed";
/// The rows of BUILT_KEPT that the recompute changes (or drops).
const CHANGED: &str = "_silver_changed";
/// The rows of BUILT_KEPT that stay as they are.
const UNCHANGED: &str = "_silver_unchanged";
/// The rows of BUILT_KEPT that stay where `append_rows` runs: UNCHANGED,
/// and on a patched date every row (the changed ones get a new session id
/// in place).
const STAYING: &str = "_silver_staying";

/// Where an incremental run appends instead of rewriting.
#[derive(Debug, Default)]
struct Appends {
    /// Grown dates where no built row of a user recomputed there changes.
    events: BTreeSet<Day>,
    /// Per typed table, the grown dates where none of its built rows
    /// belongs to a changed event (a superset of `events`).
    typed: BTreeMap<&'static str, BTreeSet<Day>>,
    /// Grown dates (not in `events`) where every changed built row is the
    /// same bronze row with a new session id: their files are patched
    /// (see [`patches`]) and the new rows appended.
    patched: patches::Ids,
}

/// The built rows' columns that show a row unchanged by a recompute: its
/// session, and which bronze copy of the event was kept.
const KEPT_COLUMNS: [&str; 5] = [
    "event_date",
    "event_id",
    "session_id",
    "batch_id",
    "source_line",
];

/// A grown date where every built row of the users recomputed there stays
/// as it was (the new rows neither change an old row's session id nor
/// which copy of a re-sent event is kept, as when a late event starts its
/// own session or joins one without becoming its first event) gets its new
/// events, and their typed rows, as one more file in each partition
/// instead of a rewrite of the partition. Up to this many files per partition: the
/// next change to a partition with more rewrites it whole (compacting it).
const APPEND_MAX_FILES: usize = 8;

/// The types of `excluded` that no bronze event has, each with the
/// bronze type nearest to it in spelling (within two edits), if any.
async fn absent_types(ctx: &SessionContext, excluded: &[String]) -> Result<Vec<AbsentType>> {
    if excluded.is_empty() || !ctx.table_exist(bronze::TABLE)? {
        return Ok(Vec::new());
    }
    let types = ctx
        .table(bronze::TABLE)
        .await?
        .select(vec![cast(col("event_type"), DataType::Utf8).alias("t")])?
        .distinct()?
        .collect()
        .await?;
    let present: BTreeSet<String> = types
        .iter()
        .flat_map(|b| {
            let a = b.column(0).as_string::<i32>();
            (0..a.len())
                .filter(|i| a.is_valid(*i))
                .map(|i| a.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut absent: Vec<AbsentType> = excluded
        .iter()
        .filter(|t| !present.contains(*t))
        .map(|t| AbsentType {
            event_type: t.clone(),
            nearest: present
                .iter()
                .map(|p| (strsim::levenshtein(t, p), p))
                .filter(|(d, _)| *d <= 2)
                .min()
                .map(|(_, p)| p.clone()),
        })
        .collect();
    absent.sort_by(|a, b| a.event_type.cmp(&b.event_type));
    absent.dedup_by(|a, b| a.event_type == b.event_type);
    Ok(absent)
}

/// `evlake silver --dry-run`'s report: the dates `plan` (of `dirty`)
/// would recompute, and the typed tables of the lake's own that would be
/// rebuilt from the built events, or dropped, as `run --dry-run` plans
/// them. A typed table whose SQL the run would refuse fails it (exit 2),
/// as it would fail the run, when there is work.
fn dry_run(
    lake: &Lake,
    state: &LakeState,
    dirty: Vec<dirty::DirtyPartition>,
    plan: &derive::DatePlan,
    full: bool,
    opts: &Options,
    started: Instant,
) -> Result<SilverReport> {
    let fps = silver::Fingerprints::new(&opts.settings);
    let mut typed_tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in silver::typed_dirty(state, &fps) {
        typed_tables.entry(p.table).or_default().push(p.partition);
    }
    let silver_dates: Vec<String> = plan.dates.iter().map(|d| format_date32(*d)).collect();
    if !silver_dates.is_empty() || !typed_tables.is_empty() {
        let refused: Vec<String> = crate::pipeline::refused_tables()?
            .into_iter()
            .filter(|r| r.step == "silver")
            .map(|r| r.error)
            .collect();
        if !refused.is_empty() {
            return Err(
                anyhow::Error::from(crate::error::Failure::Usage(refused.join("; ")))
                    .context("silver would fail"),
            );
        }
    }
    let mut report = new_report(lake, state, dirty, plan, full);
    report.status = "dry_run";
    report.plan = Some(silver::SilverPlan {
        silver_dates,
        typed_tables,
        dropped_tables: dropped_tables(state).into_iter().map(|(t, _)| t).collect(),
    });
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// A report of nothing done yet, for a run of `plan` (of `dirty`) on
/// `state`.
fn new_report(
    lake: &Lake,
    state: &LakeState,
    dirty: Vec<dirty::DirtyPartition>,
    plan: &derive::DatePlan,
    full: bool,
) -> SilverReport {
    SilverReport {
        command: "silver",
        status: "noop",
        mode: if full { "full" } else { "incremental" },
        lake: lake.root().display().to_string(),
        version: state.version,
        dirty,
        restated: plan.restated.iter().map(|d| format_date32(*d)).collect(),
        loaded_dates: Vec::new(),
        touched_users: None,
        reached_user_dates: None,
        spill_peak_bytes: 0,
        recomputed: BTreeMap::new(),
        partitions: Vec::new(),
        warnings: BTreeMap::new(),
        warning_events: BTreeMap::new(),
        typed_refresh: None,
        exclude_types_absent: Vec::new(),
        plan: None,
        elapsed_ms: 0,
    }
}

/// Recompute what is dirty (or everything with `full`) and commit it.
pub fn rebuild(lake: &Lake, opts: &Options) -> Result<SilverReport> {
    let _busy = crate::fault::operation("silver");
    let started = Instant::now();
    // A dry run reads the committed log, as a query does: no lock.
    let _lock = if opts.dry_run {
        None
    } else {
        Some(lake.lock()?)
    };
    let mut state = LakeState::load(lake)?;
    fault::trace(started, "log read");
    if !opts.dry_run {
        log::clean_orphans(lake, &state, &table_dirs())?;
    }
    fault::trace(started, "orphans cleaned");
    let dirty = dirty_partitions(&state, &opts.settings);
    fault::trace(started, "dirtiness derived");
    let bronze_days = derive::dates_of(state.partitions(bronze::TABLE).map(|(d, _)| d))?;
    let plan = derive::DatePlan::new(&dirty, &bronze_days, opts.dates, opts.full)?;
    // Dates whose bronze only grew since their build (no file removed, same
    // SQL and settings): there, only the users of the new rows can change.
    let appended = if opts.full {
        BTreeMap::new()
    } else {
        appended_files(lake, &state, &dirty, &plan.restated)?
    };
    // Every date dirty is a full rebuild, unless some of them only grew: on
    // a young lake fed hourly every run touches every date, and recomputing
    // the touched users there took half the time of rebuilding them all.
    let full = plan.full && (opts.full || appended.is_empty());
    if opts.dry_run {
        return dry_run(lake, &state, dirty, &plan, full, opts, started);
    }
    let recompute = plan.dates.clone();
    // Dates recomputed for every user.
    let whole: BTreeSet<Day> = recompute
        .iter()
        .filter(|d| !appended.contains_key(d))
        .copied()
        .collect();
    // Typed tables of the lake's own whose SQL changed, first, in their
    // own commit (a full rebuild builds them with the rest). The dates
    // and files found above stay as they were: that commit changes no
    // bronze and no `events`.
    let refreshed = if full {
        None
    } else {
        super::refresh::refresh(lake, &state, opts, &whole, started)?
    };
    if refreshed.is_some() {
        state = LakeState::load(lake)?;
    }
    let mut report = new_report(lake, &state, dirty, &plan, full);
    if let Some(r) = refreshed {
        report.status = "committed";
        report.version = r.version;
        report.typed_refresh = Some(silver::TypedRefresh {
            version: r.version,
            tables: r.tables,
            dropped_tables: r.dropped,
            partitions: r.written.len(),
        });
        report.dirty.extend(r.dirty);
        report.warnings = r.warnings.counts;
        report.warning_events = r.warnings.events;
        report.recomputed = derive::by_table(&r.written);
        report.partitions = r.written;
    }
    if recompute.is_empty() {
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }

    let grown: BTreeSet<Day> = appended.keys().copied().collect();
    fault::trace(started, "grown dates found");

    let (staging, engine_opts) = derive::staging_with_spill(lake, "silver", &opts.engine)?;
    let dirs = Staged::new(&staging);

    let built = crate::interrupt::block_on(async {
        let engine = Engine::new(&engine_opts)?;
        engine.read_committed(lake, &state)?;
        let spill = engine.spill_monitor();
        fault::trace(started, "staged and planned");
        let ctx = engine.context(lake).await?;
        let work = engine.bare()?;
        let typed_work = engine.bare()?;
        fault::trace(started, "tables registered");
        // A full rebuild is when excluded types take effect (a new list
        // makes every date dirty): one no event has is most often a typo,
        // which would cost that rebuild and leave nothing out.
        let absent = if full {
            absent_types(&ctx, &opts.settings.exclude_types).await?
        } else {
            Vec::new()
        };
        let mut touched_rows = None;
        let (loaded, touched, pairs) = if full {
            (recompute.clone(), None, Pairs::default())
        } else {
            let (touched, new_rows) = touched_pairs(&ctx, lake, &appended).await?;
            // The touched users' rows are input whatever the reach finds:
            // read them while it looks (it reads two columns of a few
            // pages per step, and waits between steps).
            let read_touched = async {
                if touched.is_empty() {
                    return anyhow::Ok(None);
                }
                let rows = grown_rows(&ctx, lake, &state, &appended, &touched).await?;
                Ok(Some(rows.cache().await?))
            };
            let mut stats = LakeStats::new(&ctx, lake, &state, &touched, new_rows);
            let (r, rows) = tokio::join!(
                reach::reach(
                    &whole,
                    &touched,
                    &bronze_days,
                    opts.settings.session_gap_us,
                    &mut stats,
                ),
                read_touched
            );
            let r = r?;
            touched_rows = rows?;
            let mut merged = r.extended.clone();
            merged.extend(touched.iter().cloned());
            register_pairs(&ctx, MERGED, &merged)?;
            fault::trace(started, "reach found");
            let pairs = Pairs {
                touched,
                reached: r.extended,
            };
            let n = pairs.reached.len();
            (r.loaded, Some((r.touched_users, n)), pairs)
        };
        let neighbours: BTreeSet<Day> = loaded.difference(&whole).copied().collect();
        // Grown dates whose partitions may take one more file.
        let append_candidates: BTreeSet<Day> = grown
            .iter()
            .filter(|d| {
                let p = format_date32(**d);
                silver::all_tables().iter().all(|t| {
                    state
                        .tables
                        .get(*t)
                        .and_then(|t| t.get(&p))
                        .map_or(0, |p| p.files.len())
                        < APPEND_MAX_FILES
                })
            })
            .copied()
            .collect();
        let built = compute(
            &ctx,
            (&work, &typed_work),
            &opts.settings,
            full,
            Scope {
                recompute: &whole,
                neighbours: &neighbours,
                grown: &grown,
                append_candidates: &append_candidates,
                pairs: &pairs,
                touched_rows,
                rows: state
                    .partitions(bronze::TABLE)
                    .filter(|(d, _)| crate::time::parse_date32(d).is_ok_and(|d| whole.contains(&d)))
                    .map(|(_, p)| p.rows())
                    .sum(),
                lake,
                state: &state,
            },
            &dirs,
            started,
        )
        .await?;
        anyhow::Ok((loaded, touched, built, spill.finish(), absent))
    })?;
    let (loaded, touched, built, spilled, absent) = built;
    report.spill_peak_bytes = spilled;
    report.exclude_types_absent = absent;
    report.loaded_dates = loaded.iter().map(|d| format_date32(*d)).collect();
    report.touched_users = touched.map(|t| t.0 as u64);
    report.reached_user_dates = touched.map(|t| t.1 as u64);
    for (table, n) in &built.warnings.counts {
        *report.warnings.entry(table.clone()).or_default() += n;
    }
    for (table, events) in &built.warnings.events {
        let first = report.warning_events.entry(table.clone()).or_default();
        first.extend(events.iter().cloned());
        first.truncate(UNTYPED_EXAMPLES);
    }
    fault::point("staged")?;

    // Which partitions of which table this commit replaces.
    let days =
        |s: &BTreeSet<Day>| -> BTreeSet<String> { s.iter().map(|d| format_date32(*d)).collect() };
    let mut event_days = days(&whole);
    event_days.extend(days(&built.changed_events));
    let mut session_days = days(&whole);
    session_days.extend(days(&built.changed_sessions));
    let output = |table: &str, dir: &str, staged: PathBuf, column, parts: &BTreeSet<String>| {
        Output::replacing(&state, table, dir, staged, column, parts, full)
    };
    let appended_days = days(&built.appended.events);
    let mut outputs = vec![
        output(
            EVENTS_TABLE,
            EVENTS_DIR,
            dirs.events.clone(),
            "event_date",
            &event_days,
        )
        .appending(&appended_days),
        output(
            SESSIONS_TABLE,
            SESSIONS_DIR,
            dirs.sessions.clone(),
            "session_date",
            &session_days,
        ),
    ];
    for (table, dir, _) in typed() {
        // A typed table may be appended to where events are rewritten.
        let appended = built
            .appended
            .typed
            .get(table)
            .map(days)
            .unwrap_or_default();
        let replaced: BTreeSet<String> = event_days.difference(&appended).cloned().collect();
        outputs.push(
            output(table, dir, staging.join(table), "event_date", &replaced).appending(&appended),
        );
    }

    // A typed table the lake no longer defines (its file removed from
    // `LAKE/typed/`): every partition of it goes, with no build recorded.
    let dropped = dropped_tables(&state);
    let mut all_outputs = outputs.clone();
    all_outputs.extend(derive::dropped_outputs(&state, &dropped, &staging));

    let fps = silver::Fingerprints::new(&opts.settings);
    let mut commit = Commit::next(&state, "silver", opts.processing_time);
    commit.settings = silver::commit_settings(&opts.settings);
    commit.settings.insert("mode".into(), report.mode.into());
    derive::record_dropped(&mut commit, &dropped);
    let written = derive::replace_partitions(
        lake,
        &state,
        &mut commit,
        &all_outputs,
        &derive::run_id("silver", &state),
    )?;
    // Every rewritten (or recomputed) date records the bronze version it
    // read, including dates where a table has no rows (a day with no
    // purchases is built, not missing).
    let bronze_parts = state.tables.get(bronze::TABLE);
    for out in &outputs {
        let fp = fps.of(&out.table);
        for p in out
            .partitions
            .iter()
            .chain(&out.appended)
            .filter(|p| bronze_parts.is_some_and(|t| t.contains_key(*p)))
        {
            let input = dirty::input_key(bronze::TABLE, p);
            commit
                .builds
                .push(dirty::build_record(&state, &out.table, p, &[input], &fp));
        }
    }
    derive::finish_commit(lake, &commit)?;
    derive::remove_dropped_dirs(lake, &dropped);
    fault::trace(started, "committed");
    report.partitions.extend(written);
    report.recomputed = derive::by_table(&report.partitions);
    report.status = "committed";
    report.version = commit.version;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Silver tables in the log that are not silver tables now: a lake's own
/// typed table whose SQL file was removed. (table, directory)
pub fn dropped_tables(state: &LakeState) -> Vec<(String, String)> {
    derive::undefined_tables(state, "silver", &silver::all_tables())
}

/// Staging directories of one run.
struct Staged {
    /// session_keys.sql output over the loaded dates.
    keys: PathBuf,
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
            keys: root.join("session-keys"),
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
    /// Grown dates whose events or typed tables get one more file.
    appended: Appends,
    /// Neighbouring dates whose sessions changed.
    changed_sessions: BTreeSet<Day>,
    warnings: silver::TypedWarnings,
}

/// Run the SQL and stage every rewritten partition (see the module docs).
async fn compute(
    ctx: &SessionContext,
    // events and sessions SQL; the typed tables (each registers its own
    // `events`).
    (work, typed_work): (&SessionContext, &SessionContext),
    settings: &Settings,
    full: bool,
    Scope {
        recompute,
        neighbours,
        grown,
        append_candidates,
        pairs,
        touched_rows,
        rows,
        lake,
        state,
    }: Scope<'_>,
    dirs: &Staged,
    started: Instant,
) -> Result<Built> {
    let trace = |phase: &str| crate::fault::trace(started, phase);
    // The input of events.sql, registered in `work` under the name the SQL
    // reads.
    let mut input = ctx.table(bronze::TABLE).await?;
    // The input is the touched users' rows alone, read during the reach.
    let input_cached = !full && !grown.is_empty() && recompute.is_empty() && touched_rows.is_some();
    if !full {
        let whole_days = input
            .clone()
            .filter(derive::in_days("event_date", recompute))?;
        // On grown dates, every row of the touched users (see
        // `grown_rows`; none without grown dates).
        input = match touched_rows {
            Some(touched) if recompute.is_empty() => touched,
            Some(touched) => whole_days.union(touched)?,
            None => whole_days,
        };
    }
    // An input with neighbours is a few dates' worth, held in memory:
    // events.sql reads it three times (repeated keys, kept rows, whole
    // rows), and the neighbours' comparison below reads the built rows'
    // session ids again. Its parts (bronze rows, the built rows of the
    // dates the sessions reach, and the key columns of the built rows of
    // every user recomputed on the dates that may be appended to) are
    // read at the same time.
    let bronze_schema = input.schema().clone();
    let read_input = async {
        anyhow::Ok(if neighbours.is_empty() || input_cached {
            input
        } else {
            input.cache().await?
        })
    };
    // Only the dates the sessions reach: a grown date's built rows of its
    // touched users are replaced by their bronze rows, above.
    let read_built = async {
        if pairs.reached.is_empty() {
            return anyhow::Ok(None);
        }
        // A few users' rows of each reached date.
        let built = built_rows(ctx, lake, state, &pairs.reached, None).await?;
        Ok(Some(built))
    };
    // Every user recomputed on those dates: the touched ones, and those
    // whose sessions reach there from another date.
    let read_kept = async {
        let on: BTreeSet<(String, Day)> = pairs
            .touched
            .iter()
            .chain(&pairs.reached)
            .filter(|(_, d)| append_candidates.contains(d))
            .cloned()
            .collect();
        if on.is_empty() || !ctx.table_exist(EVENTS_TABLE)? {
            return anyhow::Ok(None);
        }
        let kept = built_rows(ctx, lake, state, &on, Some(&KEPT_COLUMNS)).await?;
        Ok(Some(kept))
    };
    let (read, built, kept) = tokio::join!(read_input, read_built, read_kept);
    let mut input = read?;
    if let Some(built) = built? {
        let _ = ctx.deregister_table(BUILT_REACHED)?;
        ctx.register_table(BUILT_REACHED, built.clone().into_view())?;
        input = input.union(as_bronze(built, &bronze_schema)?)?;
    }
    let _ = ctx.deregister_table(BUILT_KEPT)?;
    if let Some(kept) = kept? {
        ctx.register_table(BUILT_KEPT, kept.into_view())?;
    }
    if !neighbours.is_empty() {
        trace("input loaded");
    }
    // An input with neighbours is already in memory (a few dates' worth):
    // so are its keys, rather than staged; so are the keys of an input
    // whose rows fit the keys' memory budget (at most one key per row),
    // which saves writing and reading them back (~0.25 s of a 1M-event
    // rebuild).
    let in_memory = !neighbours.is_empty()
        || usize::try_from(rows).is_ok_and(|n| n <= row_budget(work, KEY_ROW_BYTES));
    write_events(work, input, settings, dirs, in_memory, started).await?;
    trace("silver events written");
    register_events(work, &dirs.touched_events).await?;
    if !work.table_exist(EVENTS_TABLE)? {
        // No row on any recomputed date (`retract` took every one): no
        // sessions either, and the dates' old rows go.
        work.register_table(
            EVENTS_TABLE,
            silver::empty_provider(work, EVENTS_TABLE).await?,
        )?;
    }
    let sessions_written = async {
        let r = derive::write_partitioned(
            sessions(work).await?,
            &dirs.touched_sessions,
            "session_date",
            "silver sessions",
            derive::Index::None,
        )
        .await;
        trace("sessions written");
        r
    };
    // The touched events are final on the recomputed dates, and on a
    // neighbouring date they are the touched users' final rows: the typed
    // tables read them while sessions are written and the neighbours
    // compared (each phase leaves a core idle part of the time). Without
    // neighbours that is every row; with them, only per-row typed queries
    // split by user (otherwise `None`: they run after the merge, below).
    let typed_touched = async {
        let r = if neighbours.is_empty() {
            all_typed_tables(typed_work, &dirs.root, &dirs.touched_events)
                .await
                .map(Some)
        } else {
            let loaded: BTreeSet<Day> = recompute.union(neighbours).copied().collect();
            typed_tables(typed_work, &dirs.root, &dirs.touched_events, Some(&loaded)).await
        };
        trace("typed tables of the touched rows written");
        r
    };
    // Neighbouring dates: rewrite only where the touched users' rows changed.
    let compare = async {
        sessions_written.await?;
        if neighbours.is_empty() {
            return anyhow::Ok((
                BTreeSet::new(),
                BTreeSet::new(),
                Appends::default(),
                patches::Ids::new(),
            ));
        }
        for (name, dir, column) in [
            (NEW_EVENTS, &dirs.touched_events, "event_date"),
            (NEW_SESSIONS, &dirs.touched_sessions, "session_date"),
        ] {
            engine::register_partitioned(ctx, name, dir, column, None, Vec::new()).await?;
        }
        // The grown dates where the built rows of every user recomputed
        // there all stay: none is missing from, or changed in, the new
        // rows (and per typed table, the dates where none of its rows
        // belongs to a changed event).
        let kept = async {
            let mut kept = Appends::default();
            let candidates: BTreeSet<Day> =
                grown.intersection(append_candidates).copied().collect();
            if candidates.is_empty() || !ctx.table_exist(BUILT_KEPT)? {
                return anyhow::Ok(kept);
            }
            let cols = KEPT_COLUMNS.join(", ");
            // Few rows: those of the sessions whose start moved, and of
            // re-sent events whose kept copy changed.
            let changed = ctx
                .sql(&format!(
                    "SELECT {cols} FROM {BUILT_KEPT} EXCEPT \
                     SELECT {cols} FROM {NEW_EVENTS} WHERE event_date IN ({})",
                    derive::date_list(&candidates)
                ))
                .await?
                .cache()
                .await?;
            let unchanged = ctx.table(BUILT_KEPT).await?.except(changed.clone())?;
            for (name, df) in [(CHANGED, changed), (UNCHANGED, unchanged)] {
                let _ = ctx.deregister_table(name)?;
                ctx.register_table(name, df.into_view())?;
            }
            // Where every changed row is still kept (the same bronze row),
            // with a new session id, the date is patched; where some row
            // is not (a re-sent event's kept copy changed), rewritten.
            let list = derive::date_list(&candidates);
            let key = "event_date, event_id, batch_id, source_line";
            let moved_rows = format!(
                "SELECT {key} FROM {CHANGED} EXCEPT \
                 SELECT {key} FROM {NEW_EVENTS} WHERE event_date IN ({list})"
            );
            let new_ids = format!(
                "SELECT n.event_date, n.event_id, n.session_id, n.user_id \
                 FROM {NEW_EVENTS} n JOIN {CHANGED} c \
                 ON n.event_date = c.event_date AND n.event_id = c.event_id \
                 WHERE n.event_date IN ({list})"
            );
            let (moved, ids) = tokio::join!(
                changed_dates(ctx, "", &moved_rows, "event_date"),
                patches::ids_of(ctx, &new_ids)
            );
            let (moved, ids) = (moved?, ids?);
            for d in &moved {
                fault::trace_note(&format!(
                    "{} not patched: a changed row is not the same bronze row",
                    format_date32(*d)
                ));
            }
            // The common case of a small late batch: no changed row, so
            // append everywhere.
            kept.events = candidates
                .iter()
                .filter(|d| !moved.contains(d) && !ids.contains_key(d))
                .copied()
                .collect();
            kept.patched = ids
                .into_iter()
                .filter(|(d, _)| !moved.contains(d))
                .collect();
            // On a rewritten date, a typed table none of whose rows belongs
            // to a changed event is still appended to.
            let rewritten = &moved;
            let typed = futures::future::try_join_all(typed().iter().map(|(table, _, _)| {
                let q = format!(
                    "SELECT t.event_date FROM {table} t JOIN {CHANGED} c \
                     ON t.event_date = c.event_date AND t.event_id = c.event_id \
                     WHERE t.event_date IN ({})",
                    derive::date_list(rewritten)
                );
                let exists = ctx.table_exist(*table);
                let appended = &kept.events;
                async move {
                    let mut days = appended.clone();
                    if !rewritten.is_empty() && exists? {
                        let hit = changed_dates(ctx, "", &q, "event_date").await?;
                        days.extend(rewritten.difference(&hit));
                    } else {
                        days.extend(rewritten);
                    }
                    anyhow::Ok((*table, days))
                }
            }));
            kept.typed = typed.await?.into_iter().collect();
            Ok(kept)
        };
        // Grown dates are rewritten (or appended to) anyway: compare only
        // the others.
        let compared: BTreeSet<Day> = neighbours.difference(grown).copied().collect();
        if compared.is_empty() {
            let kept = kept.await?;
            trace("neighbours compared");
            return Ok((BTreeSet::new(), BTreeSet::new(), kept, patches::Ids::new()));
        }
        let within = |table: &str, column: &str, cols: &str, reached_only: bool| -> String {
            if !ctx.table_exist(table).unwrap_or(false) {
                return String::new();
            }
            let reached = if reached_only {
                format!(
                    " AND EXISTS (SELECT 1 FROM {MERGED} r \
                     WHERE r.user_id = t.user_id AND r.event_date = t.{column})"
                )
            } else {
                String::new()
            };
            format!(
                "SELECT {cols} FROM {table} t WHERE {column} IN ({}){reached}",
                derive::date_list(&compared)
            )
        };
        // With the user, for the patches (see `patches::Changes`).
        let event_cols = "event_date, event_id, session_id, user_id";
        let (new_e, old_e, new_s, old_s) = (
            within(NEW_EVENTS, "event_date", event_cols, false),
            // The built rows of the reached users (every MERGED pair on
            // a compared date: those dates did not grow, so none is
            // touched), as loaded above.
            within(BUILT_REACHED, "event_date", event_cols, false),
            within(NEW_SESSIONS, "session_date", "*", false),
            within(SESSIONS_TABLE, "session_date", "*", true),
        );
        let (events, sessions, kept) = tokio::join!(
            changed_events(ctx, &new_e, &old_e),
            changed_dates(ctx, &new_s, &old_s, "session_date"),
            kept
        );
        trace("neighbours compared");
        let (events, ids) = events?;
        Ok((events, sessions?, kept?, ids))
    };
    let (typed_touched, compared) = tokio::join!(typed_touched, compare);
    let (mut changed_events, mut changed_sessions, mut kept, neighbour_ids) = compared?;
    let typed_touched = typed_touched?;
    // Appending and patching need the touched users' typed rows apart from
    // the rest's (per-row typed queries).
    let plans = if typed_touched.is_some() {
        let mut ids = std::mem::take(&mut kept.patched);
        ids.extend(neighbour_ids);
        let plans = patches::plan(lake, state, ids).await?;
        trace("patches planned");
        plans
    } else {
        kept = Appends::default();
        patches::Plans::default()
    };
    // Patched dates are replaced (by the patched files and any new rows),
    // not appended to.
    let patched = plans.days();
    for days in kept.typed.values_mut() {
        days.retain(|d| !patched.contains(d));
    }
    let patched_grown: BTreeSet<Day> = patched.intersection(grown).copied().collect();
    let appended = &kept.events;
    // A grown date is rewritten (or appended to) whatever its rows: its
    // build must record the bronze it has now read.
    changed_events.extend(grown.difference(appended));
    changed_sessions.extend(grown);
    // The dates whose typed rows this run writes.
    let typed_days: BTreeSet<Day> = recompute
        .union(&changed_events)
        .chain(appended)
        .copied()
        .collect();
    // The dates rewritten whole (through DataFusion).
    let rewritten: BTreeSet<Day> = changed_events.difference(&patched).copied().collect();
    let mut typed_warnings = None;
    if let Some(w) = typed_touched {
        // A neighbour whose rows did not change keeps its built typed rows;
        // a patched one its patched files (and a grown one its new rows,
        // staged by `append_rows`).
        for day in neighbours
            .difference(&rewritten)
            .filter(|d| !appended.contains(d) && !patched_grown.contains(d))
        {
            for (table, _, _) in typed() {
                let part = dirs
                    .root
                    .join(table)
                    .join(format!("event_date={}", format_date32(*day)));
                if part.exists() {
                    fs::remove_dir_all(&part)
                        .with_context(|| format!("failed to remove `{}`", part.display()))?;
                }
            }
        }
        typed_warnings = Some(w.within(&typed_days));
    }
    if !neighbours.is_empty() {
        // The rewrite of a changed neighbour: the touched users' new rows
        // plus every other user's built rows. The typed tables split the
        // same way when each is a per-row function of `events`: the typed
        // rows of the touched users' new events plus every other user's
        // built typed rows, rather than re-extracting whole dates.
        let merges = async {
            let (e, s) = tokio::join!(
                merge_rewrite(
                    ctx,
                    &rewritten,
                    Some(NEW_EVENTS),
                    EVENTS_TABLE,
                    "event_date",
                    &dirs.events
                ),
                merge_rewrite(
                    ctx,
                    &changed_sessions,
                    Some(NEW_SESSIONS),
                    SESSIONS_TABLE,
                    "session_date",
                    &dirs.sessions
                ),
            );
            trace("neighbours merged");
            e.and(s)
        };
        let copies = async {
            if typed_warnings.is_none() {
                return anyhow::Ok(());
            }
            // Every other user's built typed rows, all tables at once.
            let mut copies = tokio::task::JoinSet::new();
            for (table, _, _) in typed() {
                // Not where the table is appended to.
                let days: BTreeSet<Day> = match kept.typed.get(table) {
                    Some(a) => rewritten.difference(a).copied().collect(),
                    None => rewritten.clone(),
                };
                if days.is_empty() {
                    continue;
                }
                let (ctx, out) = (ctx.clone(), dirs.root.join(table));
                copies.spawn(async move {
                    merge_rewrite(&ctx, &days, None, table, "event_date", &out).await
                });
            }
            while let Some(done) = copies.join_next().await {
                done.context("a typed-table copy panicked")??;
            }
            trace("built typed rows of the other users copied");
            Ok(())
        };
        let appends = async {
            if kept.typed.values().all(BTreeSet::is_empty) && patched_grown.is_empty() {
                return anyhow::Ok(());
            }
            let r = append_rows(ctx, &kept, &patched_grown, dirs).await;
            trace("new rows of the appended dates staged");
            r
        };
        let patch = async {
            if patched.is_empty() {
                return anyhow::Ok(());
            }
            let n = plans.write(lake, state, &dirs.root).await?;
            fault::trace_note(&format!(
                "{n} file(s) patched with new session ids on {} date(s)",
                patched.len()
            ));
            trace("patched files written");
            Ok(())
        };
        let (m, c, a, p) = tokio::join!(merges, copies, appends, patch);
        m.and(c).and(a).and(p)?;
        patches::stage(&dirs.root, |table| {
            if table == EVENTS_TABLE {
                dirs.events.clone()
            } else {
                dirs.root.join(table)
            }
        })?;
    }
    move_recomputed(dirs, recompute)?;
    trace("neighbours compared and merged");
    // Typed tables from the final events of every rewritten date.
    let warnings = match typed_warnings {
        Some(w) => w,
        None => {
            let w = all_typed_tables(typed_work, &dirs.root, &dirs.events)
                .await?
                .within(&typed_days);
            trace("typed tables written");
            w
        }
    };
    Ok(Built {
        appended: kept,
        changed_events,
        changed_sessions,
        warnings,
    })
}

/// What [`compute`] loads and recomputes.
struct Scope<'a> {
    /// The dates recomputed for every user.
    recompute: &'a BTreeSet<Day>,
    /// The other dates loaded (some users' rows, merged with the built
    /// rows of the rest).
    neighbours: &'a BTreeSet<Day>,
    /// Among those, the dates whose bronze grew (always rewritten or
    /// appended to).
    grown: &'a BTreeSet<Day>,
    /// Among those, the dates whose partitions may take one more file
    /// (see [`APPEND_MAX_FILES`]).
    append_candidates: &'a BTreeSet<Day>,
    pairs: &'a Pairs,
    /// The bronze rows of `pairs.touched`, read already (in memory).
    touched_rows: Option<DataFrame>,
    /// Bronze rows of the recomputed dates (from the log).
    rows: u64,
    /// Where the built files are (for patches).
    lake: &'a Lake,
    state: &'a LakeState,
}

/// The (user, date) pairs of an incremental run.
#[derive(Debug, Default)]
struct Pairs {
    /// On grown dates: the users of the new rows.
    touched: BTreeSet<(String, Day)>,
    /// Outside the recomputed dates: where the touched users' sessions
    /// reach.
    reached: BTreeSet<(String, Day)>,
}

/// Every row of the (user, date) `pairs` in the built silver events (or
/// `columns` of them), read straight from each date's files, only the
/// pages that may hold the users ([`ranges::rows_of_users`]), one task per
/// date, and held in memory. A join with the pairs through DataFusion
/// decoded whole dates' `user_id` columns and hashed every row.
async fn built_rows(
    ctx: &SessionContext,
    lake: &Lake,
    state: &LakeState,
    pairs: &BTreeSet<(String, Day)>,
    columns: Option<&[&str]>,
) -> Result<DataFrame> {
    let table = ctx.table(EVENTS_TABLE).await?.schema().as_arrow().clone();
    let schema = Arc::new(match columns {
        Some(columns) => table.project(
            &columns
                .iter()
                .map(|c| table.index_of(c))
                .collect::<Result<Vec<usize>, _>>()?,
        )?,
        None => table,
    });
    let read = {
        let schema = schema.clone();
        move |files: &[PathBuf], users: &BTreeSet<String>, day| {
            ranges::rows_of_users(files, users, &schema, day)
        }
    };
    // As many partitions as a query runs at once, so later scans share the
    // cores.
    let width = ctx.copied_config().target_partitions().max(1);
    let mut parts = vec![Vec::new(); width];
    let batches = per_date(lake, state, pairs, read).await?;
    for (n, batch) in batches.into_iter().flatten().enumerate() {
        parts[n % width].push(batch);
    }
    Ok(ctx.read_table(Arc::new(MemTable::try_new(schema, parts)?))?)
}

/// Every row of the `touched` users on the grown dates: their built silver
/// events (on a grown date, the rows deduplication kept of the bronze the
/// date was built from) and every row of the bronze files added since
/// (each is a touched user's). Only those files of the date's bronze are
/// read: an hourly cron run adds a file to each date it touches, and a
/// date read whole was ~100 files after two weeks. It is also the right
/// input: a copy deduplication dropped stays dropped (the kept copy is the
/// first of all of them), where the user's bronze rows would bring back a
/// dropped copy of another user's event as the only copy in the input.
async fn grown_rows(
    ctx: &SessionContext,
    lake: &Lake,
    state: &LakeState,
    appended: &BTreeMap<Day, Appended>,
    touched: &BTreeSet<(String, Day)>,
) -> Result<DataFrame> {
    let bronze = ctx.table(bronze::TABLE).await?.schema().clone();
    let mut rows = if ctx.table_exist(EVENTS_TABLE)? {
        as_bronze(built_rows(ctx, lake, state, touched, None).await?, &bronze)?
    } else {
        ctx.table(bronze::TABLE).await?.limit(0, Some(0))?
    };
    for (day, a) in appended {
        let paths = a
            .files
            .iter()
            .map(|f| engine::file_url(&lake.path(f), false))
            .collect::<Result<Vec<String>>>()?;
        // Bronze's declared columns, as the table reads every file.
        let file_schema = bronze::schema();
        let new = ctx
            .read_parquet(paths, ParquetReadOptions::default().schema(&file_schema))
            .await?
            .with_column(
                "event_date",
                lit(datafusion::scalar::ScalarValue::Date32(Some(*day))),
            )?;
        rows = rows.union(as_bronze(new, &bronze)?)?;
    }
    Ok(rows)
}

/// `df`'s columns of bronze (`like`: e.g. built silver events without
/// their session id), in its order and types.
fn as_bronze(df: DataFrame, like: &DFSchema) -> Result<DataFrame> {
    Ok(df.select(
        like.fields()
            .iter()
            .map(|f| cast(col(f.name().as_str()), f.data_type().clone()).alias(f.name()))
            .collect::<Vec<_>>(),
    )?)
}

/// Register the silver events under `dir` as `events` in `ctx`.
async fn register_events(ctx: &SessionContext, dir: &Path) -> Result<()> {
    engine::register_partitioned(ctx, EVENTS_TABLE, dir, "event_date", None, Vec::new()).await
}

/// Write, for the `changed` dates, the rows of `new` (the touched users'
/// recomputed rows, if any) plus the rows of lake table `old` of every
/// user not in MERGED, into `out`. A typed table of the lake's own need
/// not have `user_id`: its rows' users are then those of their events
/// (one built `events` row per event id and date).
async fn merge_rewrite(
    ctx: &SessionContext,
    changed: &BTreeSet<Day>,
    new: Option<&str>,
    old: &str,
    column: &str,
    out: &Path,
) -> Result<()> {
    if changed.is_empty() {
        return Ok(());
    }
    let mut parts = Vec::new();
    for table in new.into_iter().chain([old]) {
        if ctx.table_exist(table)? {
            let others = if table != old {
                String::new()
            } else if ctx
                .table(table)
                .await?
                .schema()
                .has_column_with_unqualified_name("user_id")
            {
                format!(
                    " AND NOT EXISTS (SELECT 1 FROM {MERGED} r \
                     WHERE r.user_id = t.user_id AND r.event_date = t.{column})"
                )
            } else {
                format!(
                    " AND NOT EXISTS (SELECT 1 FROM {EVENTS_TABLE} e JOIN {MERGED} r \
                     ON r.user_id = e.user_id AND r.event_date = e.event_date \
                     WHERE e.event_id = t.event_id AND e.event_date = t.{column})"
                )
            };
            parts.push(format!(
                "SELECT * FROM {table} t WHERE {column} IN ({}){others}",
                derive::date_list(changed)
            ));
        }
    }
    if parts.is_empty() {
        return Ok(());
    }
    let df = ctx.sql(&parts.join(" UNION ALL ")).await?;
    derive::write_partitioned(df, out, column, "merged silver rows", index_of(old)).await
}

/// Where `kept` says, and on the `patched` grown dates: stage the touched
/// users' events and typed rows that are new there (not among STAYING),
/// each partition's one more file. The typed rows staged for those dates
/// (every row of the touched users) are set aside first.
async fn append_rows(
    ctx: &SessionContext,
    kept: &Appends,
    patched: &BTreeSet<Day>,
    dirs: &Staged,
) -> Result<()> {
    let mut staying = format!("SELECT event_date, event_id FROM {UNCHANGED}");
    if !patched.is_empty() {
        staying.push_str(&format!(
            " UNION ALL SELECT event_date, event_id FROM {CHANGED} WHERE event_date IN ({})",
            derive::date_list(patched)
        ));
    }
    let _ = ctx.deregister_table(STAYING)?;
    ctx.register_table(STAYING, ctx.sql(&staying).await?.into_view())?;
    let new_only = |table: &str, days: &BTreeSet<Day>| {
        format!(
            "SELECT * FROM {table} t WHERE t.event_date IN ({}) AND NOT EXISTS \
             (SELECT 1 FROM {STAYING} k \
              WHERE k.event_date = t.event_date AND k.event_id = t.event_id)",
            derive::date_list(days)
        )
    };
    let mut writes = tokio::task::JoinSet::new();
    let events_days: BTreeSet<Day> = kept.events.union(patched).copied().collect();
    if !events_days.is_empty() {
        let events = ctx.sql(&new_only(NEW_EVENTS, &events_days)).await?;
        let out = dirs.events.clone();
        writes.spawn(async move {
            derive::write_partitioned(
                events,
                &out,
                "event_date",
                "appended silver events",
                derive::Index::None,
            )
            .await
        });
    }
    for (table, _, _) in typed() {
        let days: BTreeSet<Day> = kept
            .typed
            .get(table)
            .into_iter()
            .flatten()
            .chain(patched)
            .copied()
            .collect();
        let staged = dirs.root.join(table);
        let aside = dirs.root.join("touched-typed").join(table);
        let mut moved = false;
        for day in &days {
            let name = format!("event_date={}", format_date32(*day));
            let from = staged.join(&name);
            if from.is_dir() {
                fs::create_dir_all(&aside)?;
                fs::rename(&from, aside.join(&name))
                    .with_context(|| format!("failed to set aside `{}`", from.display()))?;
                moved = true;
            }
        }
        if !moved {
            continue;
        }
        let name = format!("{NEW_TYPED}_{table}");
        engine::register_partitioned(ctx, &name, &aside, "event_date", None, Vec::new()).await?;
        let rows = ctx.sql(&new_only(&name, &days)).await?;
        writes.spawn(async move {
            derive::write_partitioned(
                rows,
                &staged,
                "event_date",
                "appended typed rows",
                index_of(table),
            )
            .await
        });
    }
    while let Some(done) = writes.join_next().await {
        done.context("an append panicked")??;
    }
    Ok(())
}

/// How silver table `table`'s files are written: typed tables carry a
/// Bloom filter on event_id, for lookups by event id (a correction's
/// target in `balances`' problems, `history`'s join, ad-hoc queries).
fn index_of(table: &str) -> derive::Index {
    if typed().iter().any(|(t, _, _)| *t == table) {
        derive::Index::EventIds
    } else {
        derive::Index::None
    }
}

/// Every typed query's optimized plan over the registered `events`. A
/// lake's own typed table must be one row per event (projections and
/// filters of `events`): a late batch patches new session ids into its
/// rows by event id, and merges a date's rows by user.
pub(super) async fn typed_plans(
    work: &SessionContext,
) -> Result<Vec<datafusion::logical_expr::LogicalPlan>> {
    let mut plans = Vec::new();
    for (table, _, sql) in typed() {
        plans.push(
            checked_typed(work, table, sql)
                .await
                .map_err(|e| own_typed_failure(table, e))?,
        );
    }
    Ok(plans)
}

/// Typed table `table`'s optimized plan over the registered `events`,
/// with the shape every typed table has: its [`silver::TYPED_COLUMNS`]
/// and, for a lake's own, one row per event. What fails here fails a
/// silver run before it reads a row: a usage error naming the file.
async fn checked_typed(
    work: &SessionContext,
    table: &str,
    sql: &str,
) -> Result<datafusion::logical_expr::LogicalPlan> {
    let df = plan_typed(work, table, sql).await?;
    require_typed_columns(table, &df)?;
    if silver::is_own_typed(table)
        && let Some(f) = crate::engine::time_dependent_function(df.logical_plan())
    {
        return Err(crate::error::Failure::in_file(
            silver::typed_source(table),
            crate::engine::time_dependent_problem(&f),
        ));
    }
    if silver::is_own_typed(table)
        && let Ok(w) = df.schema().field_with_unqualified_name("_warnings")
        && !w.data_type().is_integer()
    {
        return Err(crate::error::Failure::in_file(
            silver::typed_source(table),
            format!(
                "returns `_warnings` as {}: it is the row's count of values that could not \
                 be typed, an integer (`0 AS _warnings` when there are none)",
                w.data_type()
            ),
        ));
    }
    let plan = df.into_optimized_plan()?;
    if silver::is_own_typed(table) {
        if !per_row(&plan)? {
            return Err(crate::error::Failure::in_file(
                silver::typed_source(table),
                "is not one row per event: a typed table selects and filters rows of \
                 `events` (no aggregate, window, join, sort or limit)",
            ));
        }
        // Its rows are found, patched and placed by these: each must be
        // the event's own.
        let changed: Vec<&str> = ["event_id", "session_id", "event_date"]
            .into_iter()
            .filter(|c| !passes_through(&plan, c))
            .collect();
        if !changed.is_empty() {
            return Err(crate::error::Failure::in_file(
                silver::typed_source(table),
                format!(
                    "returns {} other than the event's own: select {} from `events` as \
                     {} (a row is found by its event's id, gets its session's id and lies \
                     in its event's date partition)",
                    changed
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if changed.len() == 1 { "it" } else { "them" },
                    if changed.len() == 1 {
                        "it is"
                    } else {
                        "they are"
                    }
                ),
            ));
        }
    }
    Ok(plan)
}

/// Is output column `name` of `plan` (projections, filters and aliases
/// over table scans, as [`per_row`] allows) the scanned column of that
/// name, unchanged?
fn passes_through(plan: &datafusion::logical_expr::LogicalPlan, name: &str) -> bool {
    use datafusion::logical_expr::LogicalPlan;
    match plan {
        LogicalPlan::Projection(p) => {
            let Some(i) = p.schema.fields().iter().position(|f| f.name() == name) else {
                return false;
            };
            let string = |t: &DataType| {
                matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            };
            let same_type = |to: &DataType| {
                p.input
                    .schema()
                    .field_with_unqualified_name(name)
                    .is_ok_and(|f| f.data_type() == to || string(f.data_type()) && string(to))
            };
            // (A cast to the type it has, `CAST(event_date AS DATE)` or
            // `CAST(event_id AS VARCHAR)`, changes no value.)
            let expr = match p.expr[i].clone().unalias_nested().data {
                Expr::Cast(c) if same_type(c.field.data_type()) => *c.expr,
                Expr::TryCast(c) if same_type(c.field.data_type()) => *c.expr,
                e => e,
            };
            matches!(expr, Expr::Column(ref c) if c.name == name) && passes_through(&p.input, name)
        }
        LogicalPlan::Filter(f) => passes_through(&f.input, name),
        LogicalPlan::SubqueryAlias(a) => passes_through(&a.input, name),
        LogicalPlan::Union(u) => u.inputs.iter().all(|i| passes_through(i, name)),
        LogicalPlan::TableScan(t) => t.projected_schema.fields().iter().any(|f| f.name() == name),
        _ => false,
    }
}

/// The lake's own typed tables whose SQL a silver run would refuse before
/// reading a row ([`checked_typed`]), each with the error it would fail
/// with: planned over an empty `events`, so a dry run and `status` can
/// say so. (SQL that fails on the rows it reads is found only by a run.)
pub async fn own_typed_problems(ctx: &SessionContext) -> Result<Vec<(String, anyhow::Error)>> {
    let work = engine::scratch(ctx);
    work.register_table(
        EVENTS_TABLE,
        silver::empty_provider(ctx, EVENTS_TABLE).await?,
    )?;
    let mut out = Vec::new();
    for (table, _, sql) in typed() {
        if !silver::is_own_typed(table) {
            continue;
        }
        match checked_typed(&work, table, sql).await {
            Ok(_) => {}
            Err(e) if crate::error::exit_code(&e) == crate::error::EXIT_USAGE => {
                out.push((table.to_string(), e));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// A typed table's SQL (planned as `df`) returns every column of
/// [`silver::TYPED_COLUMNS`], or a usage error naming its file.
fn require_typed_columns(table: &str, df: &DataFrame) -> Result<()> {
    let missing: Vec<&str> = silver::TYPED_COLUMNS
        .iter()
        .copied()
        .filter(|c| !df.schema().has_column_with_unqualified_name(c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(crate::error::Failure::in_file(
        silver::typed_source(table),
        format!(
            "returns no {} column (a typed table's SQL returns {} with its own)",
            missing.join(", "),
            silver::TYPED_COLUMNS.join(", ")
        ),
    ))
}

/// Does `plan` map each input row to at most one output row, on its own?
fn per_row(plan: &datafusion::logical_expr::LogicalPlan) -> Result<bool> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::LogicalPlan;
    let mut yes = true;
    plan.apply(|node| {
        yes &= matches!(
            node,
            LogicalPlan::Projection(_)
                | LogicalPlan::Filter(_)
                | LogicalPlan::TableScan(_)
                | LogicalPlan::SubqueryAlias(_)
                | LogicalPlan::Union(_)
        );
        Ok(if yes {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    })?;
    Ok(yes)
}

/// Rows of session keys per chunk of the whole-row join, per byte of the
/// memory limit: a key row (its name and a 64-character session id) and
/// its hash-table entry take ~150 bytes, and the join's table cannot
/// spill, so a chunk's table gets a quarter of the limit.
const KEY_ROW_BYTES: usize = 150 * 4;

/// events.sql in two steps: session_keys.sql (narrow rows: the sorts and
/// windows spill under the memory limit), then the whole-row join a chunk
/// of dates at a time, so its hash table of keys stays within the memory
/// limit however big the rebuild. The keys are staged as Parquet, unless
/// `in_memory` (the input already is, a few dates' worth).
async fn write_events(
    work: &SessionContext,
    input: DataFrame,
    settings: &Settings,
    dirs: &Staged,
    in_memory: bool,
    started: Instant,
) -> Result<()> {
    work.register_table(bronze::TABLE, input.clone().into_view())?;
    let keys = silver::session_keys(work, settings).await?;
    let (keys, chunks) = if in_memory {
        (keys.cache().await?, vec![None])
    } else {
        derive::write_partitioned(
            keys,
            &dirs.keys,
            "event_date",
            "silver session keys",
            derive::Index::None,
        )
        .await?;
        let staged = "_silver_session_keys";
        engine::register_partitioned(work, staged, &dirs.keys, "event_date", None, Vec::new())
            .await?;
        if !work.table_exist(staged)? {
            return Ok(()); // no rows
        }
        let keys = work.table(staged).await?;
        let chunks = date_chunks(&keys, &dirs.keys, row_budget(work, KEY_ROW_BYTES)).await?;
        (keys, chunks)
    };
    crate::fault::trace(started, "session keys computed");
    for chunk in &chunks {
        for (table, df) in [
            (bronze::TABLE, input.clone()),
            (silver::SESSION_KEYS_TABLE, keys.clone()),
        ] {
            let _ = work.deregister_table(table)?;
            work.register_table(table, in_chunk(df, chunk)?.into_view())?;
        }
        derive::write_partitioned(
            silver::joined_events(work).await?,
            &dirs.touched_events,
            "event_date",
            "silver events",
            derive::Index::None,
        )
        .await?;
    }
    Ok(())
}

/// The dates of `df` in consecutive groups whose rows fit `budget`; one
/// group, `None` (nothing to filter), when every row under `dir` (the
/// files `df` reads, from their footers) fits, so no rows are counted.
async fn date_chunks(
    df: &DataFrame,
    dir: &Path,
    budget: usize,
) -> Result<Vec<Option<BTreeSet<Day>>>> {
    if derive::rows_under(dir)? <= budget as u64 {
        return Ok(vec![None]);
    }
    let per_date = df
        .clone()
        .aggregate(
            vec![col("event_date")],
            vec![datafusion::functions_aggregate::expr_fn::count(
                datafusion::prelude::lit(1),
            )],
        )?
        .sort(vec![col("event_date").sort(true, false)])?
        .collect()
        .await?;
    Ok(chunk_dates(&date_counts(&per_date), budget)
        .into_iter()
        .map(Some)
        .collect())
}

/// `df` restricted to a chunk of [`date_chunks`].
fn in_chunk(df: DataFrame, chunk: &Option<BTreeSet<Day>>) -> Result<DataFrame> {
    Ok(match chunk {
        None => df,
        Some(days) => df.filter(derive::in_days("event_date", days))?,
    })
}

/// `(date, count)` rows as pairs.
fn date_counts(batches: &[RecordBatch]) -> Vec<(Day, usize)> {
    let mut counts = Vec::new();
    for b in batches {
        let dates = b
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Date32Type>();
        let n = b.column(1).as_primitive::<Int64Type>();
        counts.extend((0..b.num_rows()).map(|i| (dates.value(i), n.value(i) as usize)));
    }
    counts
}

/// Consecutive dates grouped so each group's rows stay within `budget`
/// (a date bigger than the budget is a group of its own).
pub(super) fn chunk_dates(counts: &[(Day, usize)], budget: usize) -> Vec<BTreeSet<Day>> {
    let mut chunks: Vec<BTreeSet<Day>> = Vec::new();
    let mut rows = 0;
    for &(day, n) in counts {
        match chunks.last_mut() {
            Some(last) if rows + n <= budget => {
                last.insert(day);
                rows += n;
            }
            _ => {
                chunks.push(BTreeSet::from([day]));
                rows = n;
            }
        }
    }
    chunks
}

/// Recomputed dates take the touched rows as they are (every user with
/// rows there is a touched user): move them into the final directories.
fn move_recomputed(dirs: &Staged, recompute: &BTreeSet<Day>) -> Result<()> {
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
    Ok(())
}

/// Build every typed table from the events under `events_dir` into
/// `root/<table>`, all at once (one's single-threaded phases, planning and
/// writing, overlap another's scan). Returns each table's warning count.
/// With `touched_of`, only those dates are read (the touched users' rows,
/// whose typed rows join every other user's built ones), and only if every
/// typed query is per-row: otherwise nothing is written and `None` says so.
///
/// Each typed query reads a few event types, but a scan of `events`
/// decompresses every page of the columns it reads, whatever its filter:
/// so the rows any of them reads are scanned once, held in memory a chunk
/// of dates at a time (within a quarter of the memory limit), and the
/// queries run over that.
async fn typed_tables(
    work: &SessionContext,
    root: &Path,
    events_dir: &Path,
    touched_of: Option<&BTreeSet<Day>>,
) -> Result<Option<Warnings>> {
    let _ = work.deregister_table(EVENTS_TABLE)?;
    engine::push_filters_into_scans(work);
    register_events(work, events_dir).await?;
    let mut warnings = Warnings::default();
    if !work.table_exist(EVENTS_TABLE)? {
        return Ok(touched_of.is_none().then_some(warnings));
    }
    if let Some(dates) = touched_of {
        let only = work
            .table(EVENTS_TABLE)
            .await?
            .filter(derive::in_days("event_date", dates))?;
        let _ = work.deregister_table(EVENTS_TABLE)?;
        work.register_table(EVENTS_TABLE, only.into_view())?;
    }
    let stored = work.table(EVENTS_TABLE).await?;
    let input = typed_input(work).await?;
    if touched_of.is_some() && !input.per_row {
        return Ok(None);
    }
    let Some((filter, columns)) = input.read else {
        // Some typed query reads every event: each scans on its own.
        return Ok(Some(typed_tables_over_events(work, root).await?));
    };
    let wanted = stored.filter(filter)?;
    let chunks = date_chunks(&wanted, events_dir, row_budget(work, TYPED_ROW_BYTES)).await?;
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    for chunk in &chunks {
        let rows = in_chunk(wanted.clone(), chunk)?
            .select_columns(&names)?
            .cache()
            .await?;
        let _ = work.deregister_table(EVENTS_TABLE)?;
        work.register_table(EVENTS_TABLE, rows.into_view())?;
        for (table, per_day) in typed_tables_over_events(work, root).await?.0 {
            warnings.add(&table, per_day);
        }
    }
    Ok(Some(warnings))
}

/// [`typed_tables`] of every row under `events_dir`.
async fn all_typed_tables(
    work: &SessionContext,
    root: &Path,
    events_dir: &Path,
) -> Result<Warnings> {
    typed_tables(work, root, events_dir, None)
        .await?
        .context("typed tables over every row always run")
}

/// Per row a typed query reads (ids, a 64-character session id, the
/// properties JSON, times), with room: the in-memory rows of a chunk take
/// at most a quarter of the memory limit.
pub(super) const TYPED_ROW_BYTES: usize = 400 * 4;

/// Rows of `row_bytes` each that fit the session's memory limit.
pub(super) fn row_budget(work: &SessionContext, row_bytes: usize) -> usize {
    match work.runtime_env().memory_pool.memory_limit() {
        datafusion::execution::memory_pool::MemoryLimit::Finite(n) => (n / row_bytes).max(1),
        _ => usize::MAX,
    }
}

/// What the typed queries read from `events`, from their plans.
struct TypedInput {
    /// The OR of each query's filters on `events`, and the union of the
    /// columns they read; `None` when some query reads it unfiltered.
    read: Option<(Expr, BTreeSet<String>)>,
    /// Every query is a per-row function of `events` (only projections,
    /// filters and unions over it: no aggregate, window, join, sort or
    /// limit), so a date's typed rows split by user like its events.
    per_row: bool,
}

async fn typed_input(work: &SessionContext) -> Result<TypedInput> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::LogicalPlan;
    let mut any: Option<Expr> = None;
    let mut columns = BTreeSet::new();
    let mut unfiltered = false;
    let mut all_per_row = true;
    for plan in typed_plans(work).await? {
        all_per_row &= per_row(&plan)?;
        let mut scans = Vec::new();
        plan.apply(|node| {
            if let LogicalPlan::TableScan(scan) = node
                && scan.table_name.table() == EVENTS_TABLE
            {
                scans.push(scan.clone());
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        for scan in scans {
            let Some(all) = scan.filters.iter().cloned().reduce(Expr::and) else {
                unfiltered = true;
                continue;
            };
            any = Some(match any {
                Some(a) => a.or(all),
                None => all,
            });
            columns.extend(
                scan.projected_schema
                    .fields()
                    .iter()
                    .map(|f| f.name().clone()),
            );
        }
    }
    Ok(TypedInput {
        read: any.filter(|_| !unfiltered).map(|f| (f, columns)),
        per_row: all_per_row,
    })
}

/// Run every typed query over the registered `events` at once.
async fn typed_tables_over_events(work: &SessionContext, root: &Path) -> Result<Warnings> {
    typed_queries_over_events(work, root, typed()).await
}

/// Run the queries of `tables` over the registered `events` at once.
pub(super) async fn typed_queries_over_events(
    work: &SessionContext,
    root: &Path,
    tables: &[silver::Typed],
) -> Result<Warnings> {
    let mut warnings = Warnings::default();
    let mut tasks = tokio::task::JoinSet::new();
    for &(table, _, sql) in tables {
        let (work, out) = (work.clone(), root.join(table));
        tasks.spawn(async move { (table, typed_table(&work, table, sql, &out).await) });
    }
    while let Some(done) = tasks.join_next().await {
        let (table, n) = done.context("a typed-table task panicked")?;
        warnings.add(table, n.map_err(|e| own_typed_failure(table, e))?);
    }
    Ok(warnings)
}

/// Per typed table, per date, the values that could not be typed, and
/// the first events (by id) that had one.
#[derive(Debug, Default)]
pub(super) struct Warnings(BTreeMap<String, Untyped>);

/// How many events with an untyped value a run names per table (and
/// keeps per date, to choose them from the dates it writes).
const UNTYPED_EXAMPLES: usize = 3;

impl Warnings {
    /// Another run's warnings added to these.
    pub(super) fn extend(&mut self, other: Warnings) {
        for (table, per_day) in other.0 {
            self.add(&table, per_day);
        }
    }

    pub(super) fn add(&mut self, table: &str, untyped: Untyped) {
        let days = self.0.entry(table.to_string()).or_default();
        for (day, (n, ids)) in untyped {
            let (count, first) = days.entry(day).or_default();
            *count += n;
            first.extend(ids);
            while first.len() > UNTYPED_EXAMPLES {
                first.pop_last();
            }
        }
    }

    /// Each table's count over `days` (every table run is listed, at 0
    /// when none of its values there failed), and its first events there.
    pub(super) fn within(&self, days: &BTreeSet<Day>) -> silver::TypedWarnings {
        let mut w = silver::TypedWarnings::default();
        for (table, per_day) in &self.0 {
            let wanted = || per_day.iter().filter(|(d, _)| days.contains(d));
            w.counts
                .insert(table.clone(), wanted().map(|(_, (n, _))| n).sum());
            let events: Vec<silver::EventRef> = wanted()
                .flat_map(|(d, (_, ids))| {
                    ids.iter().map(|id| silver::EventRef {
                        event_date: format_date32(*d),
                        event_id: id.clone(),
                    })
                })
                .take(UNTYPED_EXAMPLES)
                .collect();
            if !events.is_empty() {
                w.events.insert(table.clone(), events);
            }
        }
        w
    }
}

/// A typed table's untyped values per date: their count, and the first
/// few events (by id) with one.
type Untyped = BTreeMap<Day, (u64, BTreeSet<String>)>;

/// A usage error of one of the lake's own typed tables, marked as such so
/// that the error's hint says silver waits for it; other errors as they are.
fn own_typed_failure(table: &str, e: anyhow::Error) -> anyhow::Error {
    if silver::is_own_typed(table) && crate::error::exit_code(&e) == crate::error::EXIT_USAGE {
        crate::error::Failure::OwnTyped(crate::error::describe(&e)).into()
    } else {
        e
    }
}

/// Typed table `table`'s SQL over the registered `events`, its columns
/// of [`engine::reader_type`]s; a plan error, or a column Parquet cannot
/// store, names its file (a usage error: the lake's own SQL may be
/// wrong).
async fn plan_typed(work: &SessionContext, table: &str, sql: &str) -> Result<DataFrame> {
    let df = engine::planned(work, sql, Default::default())
        .await
        .map_err(|e| {
            let source = silver::typed_source(table);
            if engine::is_usage_error(&e) {
                crate::error::Failure::in_file(
                    source,
                    format!("does not plan: {}", engine::planning_error(&e)),
                )
            } else {
                anyhow::Error::new(e).context(format!("{source} does not plan"))
            }
        })?;
    engine::as_stored(df, |why| {
        crate::error::Failure::in_file(silver::typed_source(table), why)
    })
}

/// Run one typed table's SQL over `events`, write it under `out`, and
/// return its count of values that could not be typed (see [`Untyped`]).
async fn typed_table(work: &SessionContext, table: &str, sql: &str, out: &Path) -> Result<Untyped> {
    let df = plan_typed(work, table, sql).await?;
    require_typed_columns(table, &df)?;
    // An error its expressions raise on the rows is the file's, like one
    // in planning (exit 2).
    let df = df.cache().await.map_err(|e| {
        engine::user_sql_error(e, format!("running {}", silver::typed_source(table)))
    })?;
    let counted = df
        .clone()
        .aggregate(
            vec![col("event_date")],
            vec![datafusion::functions_aggregate::expr_fn::sum(cast(
                col("_warnings"),
                DataType::Int64,
            ))],
        )?
        .collect()
        .await?;
    let mut per_day = Untyped::new();
    for b in &counted {
        let days = b
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Date32Type>();
        let n = b.column(1).as_primitive::<Int64Type>();
        for i in (0..b.num_rows()).filter(|&i| !days.is_null(i) && !n.is_null(i)) {
            per_day.entry(days.value(i)).or_default().0 += n.value(i).max(0) as u64;
        }
    }
    // Name each date's first events with an untyped value, so a warning
    // can point at them (the rows are in memory: only runs that have one
    // pay).
    if per_day.values().any(|(n, _)| *n > 0) {
        use datafusion::logical_expr::ExprFunctionExt;
        let nth = datafusion::functions_window::expr_fn::row_number()
            .partition_by(vec![col("event_date")])
            .order_by(vec![col("event_id").sort(true, false)])
            .build()?
            .alias("_nth");
        let first = df
            .clone()
            .filter(col("_warnings").gt(lit(0)))?
            .select(vec![
                col("event_date"),
                cast(col("event_id"), DataType::Utf8).alias("event_id"),
            ])?
            .window(vec![nth])?
            .filter(col("_nth").lt_eq(lit(UNTYPED_EXAMPLES as u64)))?
            .collect()
            .await?;
        for b in &first {
            let days = b
                .column(0)
                .as_primitive::<datafusion::arrow::datatypes::Date32Type>();
            let ids = b.column(1).as_string::<i32>();
            for i in (0..b.num_rows()).filter(|&i| !days.is_null(i) && !ids.is_null(i)) {
                let day = per_day.entry(days.value(i)).or_default();
                day.1.insert(ids.value(i).to_string());
            }
        }
    }
    derive::write_partitioned(
        df.drop_columns(&["_warnings"])?,
        out,
        "event_date",
        &format!("silver {table}"),
        index_of(table),
    )
    .await?;
    Ok(per_day)
}

/// The neighbouring dates where the touched users' events changed
/// (queries `new` and `old` select `event_date, event_id, session_id`), and
/// those where each changed row is the same event with a new session id,
/// with their new ids (to patch, see [`patches`]).
async fn changed_events(
    ctx: &SessionContext,
    new: &str,
    old: &str,
) -> Result<(BTreeSet<Day>, patches::Ids)> {
    if new.is_empty() || old.is_empty() {
        let dates = changed_dates(ctx, new, old, "event_date").await?;
        return Ok((dates, patches::Ids::new()));
    }
    let (added, removed) = (format!("{new} EXCEPT {old}"), format!("{old} EXCEPT {new}"));
    let (ids, gone) = tokio::join!(
        patches::ids_of(ctx, &added),
        patches::counts_of(ctx, &removed)
    );
    let (ids, gone) = (ids?, gone?);
    let changed = ids.keys().chain(gone.keys()).copied().collect();
    // Every event that lost its old id has a new one, and no other appears.
    let ids = ids
        .into_iter()
        .filter(|(d, ids)| gone.get(d) == Some(&ids.len()))
        .collect();
    Ok((changed, ids))
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
    /// Where the built events are (see [`neighbour_days`]).
    lake: &'a Lake,
    state: &'a LakeState,
    /// On the grown dates: the touched pairs, and the time range of their
    /// new bronze rows. A touched user's range there is that of their
    /// built rows widened by their new rows: every row a recompute can
    /// keep is one or the other (a new row may displace a built copy of a
    /// re-sent event, never let an older losing copy back in), so the
    /// range is never narrower than the recomputed rows', and a wider one
    /// only loads more. That spares reading the grown dates' bronze.
    touched: &'a BTreeSet<(String, Day)>,
    new_rows: Ranges,
}

impl<'a> LakeStats<'a> {
    /// `touched` are the (user, date) pairs of the grown dates.
    fn new(
        ctx: &'a SessionContext,
        lake: &'a Lake,
        state: &'a LakeState,
        touched: &'a BTreeSet<(String, Day)>,
        new_rows: Ranges,
    ) -> Self {
        LakeStats {
            ctx,
            lake,
            state,
            touched,
            new_rows,
        }
    }
}

/// The bronze files a grown date gained since its silver build.
#[derive(Debug)]
struct Appended {
    files: Vec<String>,
    /// Every commit that added them counted their re-sends, and found
    /// none: no new row shares an `event_id` with another row of the date.
    no_resends: bool,
}

/// The dirty dates whose bronze only grew since their silver build, with
/// the bronze files added since: dirty for one reason only (bronze
/// changed; not the SQL or settings, not restated), no bronze file of the
/// date removed since, every added file still live.
fn appended_files(
    lake: &Lake,
    state: &LakeState,
    dirty: &[dirty::DirtyPartition],
    restated: &BTreeSet<Day>,
) -> Result<BTreeMap<Day, Appended>> {
    // The commits since a build must all be there to name the files it
    // gained: a date built before the oldest commit `[log] retention`
    // kept is recomputed whole instead.
    let mut since: BTreeMap<String, u64> = BTreeMap::new();
    for p in dirty {
        let [
            dirty::DirtyReason::InputChanged {
                input, built_from, ..
            },
        ] = p.reasons.as_slice()
        else {
            continue;
        };
        let day = crate::time::parse_date32(&p.partition).map_err(anyhow::Error::msg)?;
        if *input != dirty::input_key(bronze::TABLE, &p.partition) || restated.contains(&day) {
            continue;
        }
        if log::has_commit(lake, *built_from + 1) {
            since.insert(p.partition.clone(), *built_from);
        }
    }
    let Some(oldest) = since.values().min().copied() else {
        return Ok(BTreeMap::new());
    };
    // Only the commits that added bronze rows since: the state lists them
    // (as it does for snapshot invalidation), so the (large) derived
    // commits in between are not read.
    let mut added: BTreeMap<String, Appended> = BTreeMap::new();
    for &(v, _) in state
        .bronze_min_event_times
        .iter()
        .filter(|(v, _)| *v > oldest)
    {
        let c = log::read_commit(lake, v)?;
        for f in c
            .add
            .iter()
            .filter(|f| f.table == bronze::TABLE && since.get(&f.partition).is_some_and(|b| v > *b))
        {
            let a = added
                .entry(f.partition.clone())
                .or_insert_with(|| Appended {
                    files: Vec::new(),
                    no_resends: true,
                });
            a.files.push(f.path.clone());
            a.no_resends &= c.resends.get(&f.partition) == Some(&0);
        }
    }
    let mut out = BTreeMap::new();
    for (partition, appended) in added {
        let files = &appended.files;
        // Only grew: every added file still live, none removed since the
        // build.
        // (A date whose built events are gone, all retracted, has no
        // built rows to add to: it is rebuilt whole.)
        let built_rows = state
            .tables
            .get(EVENTS_TABLE)
            .and_then(|t| t.get(&partition))
            .is_some_and(|p| !p.files.is_empty());
        let grew = built_rows
            && state
                .tables
                .get(bronze::TABLE)
                .and_then(|t| t.get(&partition))
                .is_some_and(|p| {
                    p.last_removal <= since[&partition]
                        && files.iter().all(|f| p.files.contains_key(f))
                });
        if grew {
            let day = crate::time::parse_date32(&partition).map_err(anyhow::Error::msg)?;
            out.insert(day, appended);
        }
    }
    Ok(out)
}

/// On grown dates, the (user, date) pairs whose rows can change: the users
/// of the new files' rows, and the users of built rows that share an
/// event_id with a new row that date (deduplication may now keep the new
/// copy; not looked for where ingest counted no re-sends).
async fn touched_pairs(
    ctx: &SessionContext,
    lake: &Lake,
    appended: &BTreeMap<Day, Appended>,
) -> Result<(BTreeSet<(String, Day)>, Ranges)> {
    use datafusion::parquet::arrow::ProjectionMask;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut pairs = BTreeSet::new();
    let mut ranges = Ranges::new();
    let mut ids: BTreeSet<(String, Day)> = BTreeSet::new();
    for (day, appended) in appended {
        for rel in &appended.files {
            let path = lake.path(rel);
            let file = fs::File::open(&path)
                .with_context(|| format!("failed to open `{}`", path.display()))?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                .with_context(|| format!("`{}`: not a readable Parquet file", path.display()))?;
            // The event ids only where a new row may repeat one.
            let want_ids = !appended.no_resends;
            let schema = builder.schema().clone();
            let mut columns = vec![
                schema.index_of("user_id")?,
                schema.index_of("event_timestamp")?,
            ];
            if want_ids {
                columns.push(schema.index_of("event_id")?);
            }
            let mask = ProjectionMask::roots(builder.parquet_schema(), columns);
            for batch in builder.with_projection(mask).build()? {
                let batch = batch?;
                let text = |name: &str| -> Result<StringArray> {
                    let c = batch.column_by_name(name).context("projected column")?;
                    Ok(datafusion::arrow::compute::cast(c, &DataType::Utf8)?
                        .as_string::<i32>()
                        .clone())
                };
                let users = text("user_id")?;
                let times = datafusion::arrow::compute::cast(
                    batch
                        .column_by_name("event_timestamp")
                        .context("projected column")?,
                    &DataType::Int64,
                )?;
                let times = times.as_primitive::<Int64Type>();
                for i in 0..batch.num_rows() {
                    let pair = (users.value(i).to_string(), *day);
                    let t = times.value(i);
                    ranges
                        .entry(pair.clone())
                        .and_modify(|r| *r = (r.0.min(t), r.1.max(t)))
                        .or_insert((t, t));
                    pairs.insert(pair);
                }
                if want_ids {
                    let events = text("event_id")?;
                    for i in 0..batch.num_rows() {
                        ids.insert((events.value(i).to_string(), *day));
                    }
                }
            }
        }
    }
    if ids.is_empty() {
        return Ok((pairs, ranges));
    }
    register_keyed_dates(ctx, NEW_IDS, "event_id", &ids)?;
    let days: BTreeSet<Day> = ids.iter().map(|(_, d)| *d).collect();
    // The built events hold the one copy of each id that deduplication
    // kept, whose user may lose it to a new copy; the users of the copies
    // it dropped keep theirs dropped (see `grown_rows`).
    let shared = ctx
        .sql(&format!(
            "SELECT DISTINCT arrow_cast(b.user_id, 'Utf8') AS u, arrow_cast(b.event_date, 'Int32') AS d \
             FROM {EVENTS_TABLE} b JOIN {NEW_IDS} n ON b.event_date = n.event_date AND b.event_id = n.event_id \
             WHERE b.event_date IN ({})",
            derive::date_list(&days)
        ))
        .await?
        .collect()
        .await?;
    for b in &shared {
        let (u, d) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_primitive::<Int32Type>(),
        );
        for i in 0..b.num_rows() {
            pairs.insert((u.value(i).to_string(), d.value(i)));
        }
    }
    Ok((pairs, ranges))
}

/// First and last event time per (user, date).
type Ranges = HashMap<(String, Day), (i64, i64)>;

impl Stats for LakeStats<'_> {
    async fn dirty(&mut self, days: &BTreeSet<Day>) -> Result<Vec<UserDay>> {
        let t0 = Instant::now();
        // Every user's range on the dates recomputed whole, from bronze;
        // on grown dates, the touched users' (see `new_rows`).
        let grown: BTreeSet<Day> = self.touched.iter().map(|(_, d)| *d).collect();
        let whole: BTreeSet<Day> = days.difference(&grown).copied().collect();
        let whole_days = async {
            if whole.is_empty() {
                return Ok(Vec::new());
            }
            let sql = format!(
                "SELECT user_id, event_date, min(event_timestamp) AS lo, max(event_timestamp) AS hi \
                 FROM {} WHERE event_date IN ({}) GROUP BY user_id, event_date",
                bronze::TABLE,
                derive::date_list(&whole)
            );
            user_days(self.ctx, &sql).await
        };
        let touched: BTreeSet<(String, Day)> = self
            .touched
            .iter()
            .filter(|(_, d)| days.contains(d))
            .cloned()
            .collect();
        let (dirty, built) =
            tokio::join!(whole_days, neighbour_days(self.lake, self.state, &touched));
        let built: HashMap<(String, Day), (i64, i64)> = built?
            .into_iter()
            .map(|r| ((r.user, r.day), (r.first, r.last)))
            .collect();
        let mut out = dirty?;
        // A date whose bronze lost rows since it was built (`retract`):
        // a session that crossed its midnight may no longer, so each
        // user's range there also spans their built rows (the rows before
        // the loss), and the reach follows every session that crossed
        // before. A wider range only loads more.
        let shrunk: Vec<Day> = whole
            .iter()
            .copied()
            .filter(|d| shrunk_since_built(self.state, *d))
            .collect();
        if !shrunk.is_empty() {
            let mut merged: HashMap<(String, Day), (i64, i64)> = out
                .drain(..)
                .map(|r| ((r.user, r.day), (r.first, r.last)))
                .collect();
            for day in shrunk {
                let files = patches::built_files(self.lake, self.state, EVENTS_TABLE, day);
                let built = tokio::task::spawn_blocking(move || ranges::of_all_users(&files))
                    .await
                    .context("a read of built rows panicked")??;
                for (user, (a, b)) in built {
                    merged
                        .entry((user, day))
                        .and_modify(|r| *r = (r.0.min(a), r.1.max(b)))
                        .or_insert((a, b));
                }
            }
            out = merged
                .into_iter()
                .map(|((user, day), (first, last))| UserDay {
                    user,
                    day,
                    first,
                    last,
                })
                .collect();
        }
        for pair in &touched {
            let built = built.get(pair).copied();
            let range = match (built, self.new_rows.get(pair).copied()) {
                (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
                (a, b) => a.or(b),
            };
            if let Some((first, last)) = range {
                out.push(UserDay {
                    user: pair.0.clone(),
                    day: pair.1,
                    first,
                    last,
                });
            }
        }
        fault::trace_note(&format!(
            "reach: {} dirty ranges in {:.3}s",
            out.len(),
            t0.elapsed().as_secs_f64()
        ));
        Ok(out)
    }

    async fn neighbours(&mut self, pairs: &BTreeSet<(String, Day)>) -> Result<Vec<UserDay>> {
        let t0 = Instant::now();
        let out = neighbour_days(self.lake, self.state, pairs).await?;
        fault::trace_note(&format!(
            "reach: {} candidates in {:.3}s",
            pairs.len(),
            t0.elapsed().as_secs_f64()
        ));
        Ok(out)
    }
}

/// Whether bronze `day` lost rows (a `retract` rewrote or removed its
/// files) after its silver events were last built.
fn shrunk_since_built(state: &LakeState, day: Day) -> bool {
    let date = crate::time::format_date32(day);
    let removed = state
        .tables
        .get(bronze::TABLE)
        .and_then(|t| t.get(&date))
        .map_or(0, |p| p.last_removal);
    let built = state
        .builds
        .get(EVENTS_TABLE)
        .and_then(|b| b.get(&date))
        .map(|(v, _)| *v);
    built.is_some_and(|v| removed > v)
}

/// The ranges of (user, date) `pairs` in the built silver events, read
/// from each date's files ([`ranges::of_users`]); pairs where the user has
/// no events are left out.
async fn neighbour_days(
    lake: &Lake,
    state: &LakeState,
    pairs: &BTreeSet<(String, Day)>,
) -> Result<Vec<UserDay>> {
    let read = |files: &[PathBuf], users: &BTreeSet<String>, day| -> Result<Vec<UserDay>> {
        Ok(ranges::of_users(files, users)?
            .into_iter()
            .map(|(user, (first, last))| UserDay {
                user,
                day,
                first,
                last,
            })
            .collect())
    };
    Ok(per_date(lake, state, pairs, read)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// `read` of each date of `pairs`: its built events files and the users
/// asked about there, a blocking task per date, all at once.
async fn per_date<T, F>(
    lake: &Lake,
    state: &LakeState,
    pairs: &BTreeSet<(String, Day)>,
    read: F,
) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(&[PathBuf], &BTreeSet<String>, Day) -> Result<T> + Send + Sync + 'static,
{
    let mut by_day: BTreeMap<Day, BTreeSet<String>> = BTreeMap::new();
    for (user, day) in pairs {
        by_day.entry(*day).or_default().insert(user.clone());
    }
    let read = Arc::new(read);
    let mut tasks = tokio::task::JoinSet::new();
    for (day, users) in by_day {
        let files = patches::built_files(lake, state, EVENTS_TABLE, day);
        let read = read.clone();
        tasks.spawn_blocking(move || read(&files, &users, day));
    }
    let mut out = Vec::new();
    while let Some(done) = tasks.join_next().await {
        out.push(done.context("a read of built rows panicked")??);
    }
    Ok(out)
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

/// Register (user_id, event_date) pairs as `name` (replacing it).
fn register_pairs(ctx: &SessionContext, name: &str, pairs: &BTreeSet<(String, Day)>) -> Result<()> {
    register_keyed_dates(ctx, name, "user_id", pairs)
}

/// Register `pairs` as table `name` with columns (`key`, `event_date`).
fn register_keyed_dates(
    ctx: &SessionContext,
    name: &str,
    key: &str,
    pairs: &BTreeSet<(String, Day)>,
) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new(key, DataType::Utf8, false),
        Field::new("event_date", DataType::Date32, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                pairs.iter().map(|(u, _)| u.as_str()),
            )),
            Arc::new(Date32Array::from_iter_values(pairs.iter().map(|(_, d)| *d))),
        ],
    )?;
    let _ = ctx.deregister_table(name)?;
    ctx.register_table(
        name,
        Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks and tasks merge into each table's first events per date
    /// (by id), and a run names only those on the dates it wrote.
    #[test]
    fn untyped_events_keep_the_first_of_every_date() {
        let day = |n: u64, ids: &[&str]| (n, ids.iter().map(|s| s.to_string()).collect());
        let mut w = Warnings::default();
        w.add(
            "purchases",
            BTreeMap::from([(20, day(3, &["z", "y", "x"])), (21, day(1, &["c"]))]),
        );
        w.add(
            "purchases",
            BTreeMap::from([(19, day(2, &["b", "a"])), (20, day(1, &["w"]))]),
        );
        w.add("searches", BTreeMap::new());
        let ids = |w: &silver::TypedWarnings| -> Vec<String> {
            w.events["purchases"]
                .iter()
                .map(|e| format!("{} {}", e.event_date, e.event_id))
                .collect()
        };
        let all = w.within(&BTreeSet::from([19, 20, 21]));
        assert_eq!(all.counts["purchases"], 7);
        assert_eq!(all.counts["searches"], 0);
        assert_eq!(ids(&all), ["1970-01-20 a", "1970-01-20 b", "1970-01-21 w"]);
        assert!(!all.events.contains_key("searches"));
        // Day 20 kept its first three of four (w, x, y), day 21 its one.
        let later = w.within(&BTreeSet::from([20, 21]));
        assert_eq!(later.counts["purchases"], 5);
        assert_eq!(
            ids(&later),
            ["1970-01-21 w", "1970-01-21 x", "1970-01-21 y"]
        );
        let last = w.within(&BTreeSet::from([21]));
        assert_eq!(ids(&last), ["1970-01-22 c"]);
    }

    /// The shipped typed queries are per-row (their dates merge by user);
    /// an aggregate, a window or a join over `events` is not.
    #[tokio::test]
    async fn typed_queries_are_per_row_and_aggregates_are_not() {
        let ctx = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        let mut fields: Vec<_> = bronze::schema().fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new("event_date", DataType::Date32, false)));
        let empty = MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]]).unwrap();
        ctx.register_table(bronze::TABLE, Arc::new(empty)).unwrap();
        // A stored table with silver events' columns, as typed_tables reads.
        let events = silver::events(&ctx, &silver::Settings::default())
            .await
            .unwrap();
        let schema = Arc::new(events.schema().as_arrow().clone());
        let stored = MemTable::try_new(schema, vec![vec![]]).unwrap();
        ctx.register_table(EVENTS_TABLE, Arc::new(stored)).unwrap();
        assert!(typed_input(&ctx).await.unwrap().per_row);
        for (sql, want) in [
            (
                "SELECT event_id, upper(user_id) AS u FROM events WHERE event_type = 'x'",
                true,
            ),
            (
                "SELECT user_id, count(*) FROM events GROUP BY user_id",
                false,
            ),
            (
                "SELECT event_id, row_number() OVER (ORDER BY event_id) FROM events",
                false,
            ),
            (
                "SELECT a.event_id FROM events a JOIN events b ON a.event_id = b.event_id",
                false,
            ),
            ("SELECT DISTINCT user_id FROM events", false),
            (
                "SELECT event_id FROM events ORDER BY event_id LIMIT 3",
                false,
            ),
        ] {
            let plan = ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap();
            assert_eq!(per_row(&plan).unwrap(), want, "{sql}");
        }
    }

    #[test]
    fn dates_are_chunked_within_the_budget_in_order() {
        let counts = [(1, 40), (2, 50), (3, 30), (4, 200), (5, 10)];
        let set = |d: &[Day]| d.iter().copied().collect::<BTreeSet<Day>>();
        assert_eq!(
            chunk_dates(&counts, 100),
            vec![set(&[1, 2]), set(&[3]), set(&[4]), set(&[5])]
        );
        assert_eq!(
            chunk_dates(&counts, usize::MAX),
            vec![set(&[1, 2, 3, 4, 5])]
        );
        assert!(chunk_dates(&[], 100).is_empty());
    }
}
