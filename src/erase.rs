//! `erase`: take every row of some users out of the lake, as one commit
//! (a right-to-erasure request).
//!
//! Their events leave `bronze_events` and the side output (`bronze_late`),
//! found by `user_id` wherever `reconcile` or `compact` moved them, and
//! the quarantined lines that name them leave `quarantine` (see
//! [`Selection::users`]). Files are rewritten without their rows as for
//! `retract` ([`crate::removal`]), so the other rows stay exactly as they
//! were and a crash at any step leaves the old files or the new ones.
//! On the dates where that is what a rebuild would give, their silver
//! rows leave in the same commit too ([`patch_silver`]); the other dates
//! become dirty, so the next `silver` (or `run`) rebuilds them, and gold
//! recomputes every date whose silver changed. The snapshots at or after
//! the earliest event of a file it rewrites are removed in the same
//! commit: they hold state built from the users' events (and would be
//! invalid anyway); `run` writes again those its policy keeps.
//!
//! The log records how many users and rows, never the ids. What is not
//! in the lake is out of reach: the input files, and events that name a
//! user in another field (a referrer in `properties`). The inputs stay
//! consumed, so a cron re-run does not bring the rows back; an input
//! retracted and ingested again on purpose (`--reingest-retracted`), or
//! another file holding their lines, would.

use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::bronze;
use crate::dirty;
use crate::error::Failure;
use crate::fault;
use crate::ingest::QUARANTINE_TABLE;
use crate::lake::{self, Lake};
use crate::log::{Build, Commit, Erasure, FileAction, LakeState};
use crate::removal::{self, DateReport, Hit, Selection};
use crate::state::RemovedSnapshot;

/// The log's operation name of an erasure commit.
pub const OPERATION: &str = "erase";

/// What `evlake erase` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The users' ids, as in bronze's `user_id`.
    pub users: BTreeSet<String>,
    pub processing_time: i64,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserReport {
    pub user_id: String,
    /// `erased` (by this run, or would be with `--dry-run`) or `not_found`
    /// (no row of theirs in the lake: never there, or erased before).
    pub status: &'static str,
    /// Rows taken out of `bronze_events`, `bronze_late` and `quarantine`.
    pub bronze_rows: u64,
    pub late_rows: u64,
    pub quarantined: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EraseReport {
    pub command: &'static str,
    /// `committed`, `noop` (no user had a row) or `dry_run`.
    pub status: &'static str,
    pub lake: String,
    pub version: u64,
    pub users: Vec<UserReport>,
    /// The `bronze_events` dates whose rows changed, with the rows each
    /// lost: derived tables rebuild them.
    pub dates: Vec<DateReport>,
    /// The snapshots removed (or that would be).
    pub snapshots_removed: Vec<RemovedSnapshot>,
    /// The dates whose silver rows of the users the commit took out too,
    /// carrying silver's builds forward (see [`patch_silver`]); the other
    /// dates of `dates` are dirty, for the next run to rebuild.
    pub silver_dates: Vec<String>,
    pub files_removed: usize,
    pub files_added: usize,
    pub orphans_removed: Vec<String>,
    pub elapsed_ms: u64,
}

/// Erase the rows of users `opts.users`, in one commit.
///
/// No user at all is a no-op (a day's `--users-from` file with no request
/// in it); the command refuses being given neither flag.
pub fn erase(lake: &Lake, opts: &Options) -> Result<EraseReport> {
    if opts.users.contains("") {
        return Err(
            Failure::Usage("an empty user id: every event has a non-empty user_id".into()).into(),
        );
    }
    let _busy = fault::operation(OPERATION);
    let started = Instant::now();
    let (_lock, state, orphans_removed) = removal::begin(lake, opts.dry_run)?;
    let sel = Selection::users(&opts.users)?;
    let quarantine = state
        .partitions(QUARANTINE_TABLE)
        .flat_map(|(_, p)| p.files.values())
        .collect();
    let hits = removal::find(lake, &state, &sel, quarantine)?;
    fault::trace(started, "rows found");
    let users: Vec<UserReport> = opts
        .users
        .iter()
        .map(|u| {
            let rows = |table| removal::rows_of(&hits, table, u);
            let (bronze_rows, late_rows, quarantined) = (
                rows(bronze::TABLE),
                rows(bronze::LATE_TABLE),
                rows(QUARANTINE_TABLE),
            );
            UserReport {
                user_id: u.clone(),
                status: if bronze_rows + late_rows + quarantined > 0 {
                    "erased"
                } else {
                    "not_found"
                },
                bronze_rows,
                late_rows,
                quarantined,
            }
        })
        .collect();
    let (snapshot_files, snapshots_removed) = match removal::earliest_event(&hits) {
        Some(from) => crate::state::snapshot_files(&state, |_, as_of| as_of >= from),
        None => Default::default(),
    };
    let mut report = EraseReport {
        command: OPERATION,
        status: "noop",
        lake: lake.root().display().to_string(),
        version: state.version,
        users,
        dates: removal::dates(&hits),
        snapshots_removed,
        silver_dates: Vec::new(),
        files_removed: 0,
        files_added: 0,
        orphans_removed,
        elapsed_ms: 0,
    };
    if hits.is_empty() {
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    let plans = plan_silver(lake, &state, &sel, &hits)?;
    fault::trace(started, "silver planned");
    report.silver_dates = plans.iter().map(|p| p.date.clone()).collect();
    if opts.dry_run {
        // What the commit would list: every file with their rows removed,
        // and each one that keeps other rows added again without them.
        let silver = plans.iter().flat_map(|p| &p.theirs);
        report.status = "dry_run";
        report.files_removed = hits.len() + snapshot_files.len() + silver.clone().count();
        report.files_added = hits.iter().filter(|h| h.rows < h.file.rows).count()
            + silver.filter(|t| t.rows < t.file.rows).count();
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }

    let mut commit = Commit::next(&state, OPERATION, opts.processing_time);
    removal::rewrite(lake, &state, &sel, &hits, OPERATION, &mut commit)?;
    fault::trace(started, "bronze rewritten");
    let silver = patch_silver(lake, &state, &sel, plans, commit.version)?;
    fault::trace(started, "silver patched");
    let sum = |f: fn(&UserReport) -> u64| report.users.iter().map(f).sum();
    commit.erased = Some(Erasure {
        users: report.users.iter().filter(|u| u.status == "erased").count() as u64,
        bronze_rows: sum(|u| u.bronze_rows),
        late_rows: sum(|u| u.late_rows),
        quarantined: sum(|u| u.quarantined),
        snapshots: report.snapshots_removed.len() as u64,
    });
    commit.remove.extend(snapshot_files);
    commit.add.extend(silver.add);
    commit.remove.extend(silver.remove);
    commit.builds = silver.builds;
    report.files_added = commit.add.len();
    report.files_removed = commit.remove.len();
    crate::derive::finish_commit(lake, &commit)?;
    fault::trace(started, "committed");
    report.status = "committed";
    report.version = commit.version;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// What [`patch_silver`] puts in the commit.
#[derive(Default)]
struct SilverPatch {
    add: Vec<FileAction>,
    remove: Vec<FileAction>,
    builds: Vec<Build>,
}

/// A date whose silver [`patch_silver`] takes the users' rows out of: the
/// builds to carry forward, the ids of the users' events silver kept,
/// and the silver files holding their rows.
struct DatePlan<'a> {
    date: String,
    builds: Vec<Build>,
    kept: HashSet<u64>,
    theirs: Vec<Theirs<'a>>,
}

/// A silver file holding rows of the users: how many, and whether they
/// are told by event id (a table without `user_id`) rather than user.
struct Theirs<'a> {
    file: &'a FileAction,
    rows: u64,
    by_id: bool,
}

/// The dates of `hits` whose silver the users' rows can be taken out of
/// in the erase's commit, because that is what a rebuild would do; the
/// others are left dirty, to be rebuilt by the next run as after a
/// `retract`. Sessions are each one user's, so only the users' own rows
/// change, unless another row of the date shares an `event_id` with one
/// of theirs (silver keeps the first copy of an id: the other copy would
/// take its place). A date is patched when:
/// - every silver table's build of it read the bronze it has now (it is
///   not dirty already);
/// - no bronze or side-output row of another user on it shares an
///   `event_id` with a row taken out that silver kept (rather than left
///   out as a later copy).
///
/// A silver table's rows of the users are told by `user_id`, or, in a
/// lake's own typed table without that column, by the ids of their events
/// silver kept (a typed table has one row per event). Reads the lake
/// only, so `--dry-run` reports the same dates.
fn plan_silver<'a>(
    lake: &Lake,
    state: &'a LakeState,
    sel: &Selection,
    hits: &[Hit],
) -> Result<Vec<DatePlan<'a>>> {
    use rayon::prelude::*;
    let dates: BTreeSet<&str> = hits
        .iter()
        .filter(|h| h.table == bronze::TABLE)
        .map(|h| h.file.partition.as_str())
        .collect();
    let plans: Vec<Option<DatePlan>> = dates
        .into_par_iter()
        .map(|date| plan_date(lake, state, sel, date))
        .collect::<Result<_>>()?;
    Ok(plans.into_iter().flatten().collect())
}

/// [`plan_silver`] of one date; `None` where the date is left to the next
/// run.
fn plan_date<'a>(
    lake: &Lake,
    state: &'a LakeState,
    sel: &Selection,
    date: &str,
) -> Result<Option<DatePlan<'a>>> {
    let tables = crate::silver::all_tables();
    let input = dirty::input_key(bronze::TABLE, date);
    let files_of = |table: &str| {
        state
            .tables
            .get(table)
            .and_then(|t| t.get(date))
            .into_iter()
            .flat_map(|p| p.files.values())
    };
    let now = state
        .tables
        .get(bronze::TABLE)
        .and_then(|t| t.get(date))
        .map(|p| p.version);
    let built: Vec<Build> = tables
        .iter()
        .filter_map(|t| state.builds.get(*t).and_then(|b| b.get(date)))
        .map(|(_, b)| b.clone())
        .collect();
    let events_built = state
        .builds
        .get(crate::silver::EVENTS_TABLE)
        .is_some_and(|b| b.contains_key(date));
    let current = built
        .iter()
        .all(|b| b.inputs.len() == 1 && b.inputs.get(&input).copied() == now);
    if !events_built || !current {
        return Ok(None);
    }
    // The ids of the users' events silver kept on the date (one row each).
    let mut kept = HashSet::new();
    for f in files_of(crate::silver::EVENTS_TABLE) {
        kept.extend(bronze::event_ids_by(
            &lake.path(&f.path),
            "user_id",
            sel.values(),
        )?);
    }
    // Where a row left (another user's, in bronze or the side output)
    // shares one of those ids, its copy takes the erased one's place,
    // which only a rebuild of the date gives. (Where silver kept the
    // other user's copy, the erased copy was one it left out, and nothing
    // changes for the other user.)
    for f in files_of(bronze::TABLE).chain(files_of(bronze::LATE_TABLE)) {
        let left = bronze::event_ids_except(&lake.path(&f.path), &sel.name(), sel.values())?;
        if kept.iter().any(|id| left.contains(id)) {
            return Ok(None);
        }
    }
    let mut theirs = Vec::new();
    for f in tables.iter().flat_map(|t| files_of(t)) {
        // (A lake's own typed table may have no user_id: its rows are one
        // per event of `events`, so the users' are those of their ids.)
        let (n, by_id) = bronze::count_user_rows(&lake.path(&f.path), sel.values(), &kept)?;
        if n > 0 {
            theirs.push(Theirs {
                file: f,
                rows: n,
                by_id,
            });
        }
    }
    Ok(Some(DatePlan {
        date: date.to_string(),
        builds: built,
        kept,
        theirs,
    }))
}

/// Take the users' rows out of the silver files `plans` name, and carry
/// silver's builds of those dates forward to the new bronze (so the next
/// run does not rebuild them; gold, whose inputs change, recomputes
/// them). The new files are published here; the caller commits them.
fn patch_silver(
    lake: &Lake,
    state: &LakeState,
    sel: &Selection,
    plans: Vec<DatePlan>,
    version: u64,
) -> Result<SilverPatch> {
    use rayon::prelude::*;
    let staging = lake::Staging::create(lake, "erase-silver")?;
    let names = Names {
        run_id: crate::derive::run_id(OPERATION, state),
        staging: staging.to_path_buf(),
        next: std::sync::atomic::AtomicUsize::new(0),
    };
    let written: Vec<Vec<(FileAction, std::path::PathBuf)>> = plans
        .par_iter()
        .map(|p| write_date(lake, sel, p, &names))
        .collect::<Result<_>>()?;
    let mut out = SilverPatch::default();
    let mut moves = Vec::new();
    for (p, added) in plans.into_iter().zip(written) {
        let input = dirty::input_key(bronze::TABLE, &p.date);
        out.builds.extend(p.builds.into_iter().map(|mut b| {
            b.inputs.insert(input.clone(), version);
            b
        }));
        out.remove
            .extend(p.theirs.into_iter().map(|t| t.file.clone()));
        for (action, from) in added {
            moves.push((from, lake.path(&action.path)));
            out.add.push(action);
        }
    }
    lake::publish(lake, &moves)?;
    Ok(out)
}

/// Names for the silver files [`patch_silver`] writes, unique within the
/// run.
struct Names {
    run_id: String,
    staging: std::path::PathBuf,
    next: std::sync::atomic::AtomicUsize,
}

/// Write the files of one date's plan that keep other users' rows,
/// without the users' (staged): each one's action, with where it is
/// staged.
fn write_date(
    lake: &Lake,
    sel: &Selection,
    plan: &DatePlan,
    names: &Names,
) -> Result<Vec<(FileAction, std::path::PathBuf)>> {
    let mut out = Vec::new();
    for t in plan.theirs.iter().filter(|t| t.rows < t.file.rows) {
        let (f, n) = (t.file, t.rows);
        let i = names
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let to = names.staging.join(format!("silver-{i:05}.parquet"));
        let src = lake.path(&f.path);
        let (kept, bytes) = if t.by_id {
            let theirs = |id: &str| plan.kept.contains(&bronze::event_id_hash(id));
            removal::filter_file(&src, "event_id", theirs, &to)?
        } else {
            removal::filter_file(&src, "user_id", |u| sel.values().contains(u), &to)?
        };
        anyhow::ensure!(
            kept + n == f.rows,
            "`{}` changed while being read ({} rows, {kept} kept, {n} taken out)",
            f.path,
            f.rows
        );
        let dir = f.path.rsplit_once('/').map_or("", |(d, _)| d);
        let rel = format!("{dir}/part-{}-{i:05}.parquet", names.run_id);
        out.push((
            FileAction::plain(&f.table, &f.partition, rel, kept, bytes),
            to,
        ));
    }
    Ok(out)
}
