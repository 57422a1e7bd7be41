//! `erase`: take every row of some users out of the lake, as one commit
//! (a right-to-erasure request).
//!
//! Their events leave `bronze_events` and the side output (`bronze_late`),
//! found by `user_id` wherever `reconcile` or `compact` moved them, and
//! the quarantined lines that name them leave `quarantine` (see
//! [`Selection::users`]). Files are rewritten without their rows as for
//! `retract` ([`crate::removal`]), so the other rows stay exactly as they
//! were and a crash at any step leaves the old files or the new ones.
//! Their dates become dirty, so the next `silver` and `gold` (or `run`)
//! rebuild them and the derived rows leave too. The snapshots at or after
//! the earliest event of a file it rewrites are removed in the same
//! commit: they hold state built from the users' events (and would be
//! invalid anyway); `run` writes again those its policy keeps.
//!
//! The log records how many users and rows, never the ids. What is not
//! in the lake is out of reach: the input files, and events that name a
//! user in another field (a referrer in `properties`). The inputs stay
//! consumed, so a cron re-run does not bring the rows back; an input
//! ingested again on purpose (`--reingest-retracted`) would.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::bronze;
use crate::error::Failure;
use crate::fault;
use crate::ingest::{QUARANTINE_TABLE, table_dirs};
use crate::lake::Lake;
use crate::log::{self, Commit, Erasure, LakeState};
use crate::removal::{self, DateReport, Selection};
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
    pub files_removed: usize,
    pub files_added: usize,
    pub orphans_removed: Vec<String>,
    pub elapsed_ms: u64,
}

/// Erase the rows of users `opts.users`, in one commit.
pub fn erase(lake: &Lake, opts: &Options) -> Result<EraseReport> {
    if opts.users.is_empty() {
        return Err(
            Failure::Usage("no user to erase: give --user ID or --users-from FILE".into()).into(),
        );
    }
    if opts.users.contains("") {
        return Err(
            Failure::Usage("an empty user id: every event has a non-empty user_id".into()).into(),
        );
    }
    let _busy = fault::operation(OPERATION);
    let started = Instant::now();
    let _lock = lake.lock()?;
    let state = LakeState::load(lake)?;
    let orphans_removed = if opts.dry_run {
        Vec::new()
    } else {
        log::clean_orphans(lake, &state, &table_dirs())?
    };
    let sel = Selection::users(&opts.users);
    let quarantine = state
        .partitions(QUARANTINE_TABLE)
        .flat_map(|(_, p)| p.files.values())
        .collect();
    let hits = removal::find(lake, &state, &sel, quarantine)?;
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
        files_removed: 0,
        files_added: 0,
        orphans_removed,
        elapsed_ms: 0,
    };
    if hits.is_empty() {
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    if opts.dry_run {
        report.status = "dry_run";
        report.files_removed = hits.len() + snapshot_files.len();
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }

    let mut commit = Commit::next(&state, OPERATION, opts.processing_time);
    removal::rewrite(lake, &state, &sel, &hits, OPERATION, &mut commit)?;
    let sum = |f: fn(&UserReport) -> u64| report.users.iter().map(f).sum();
    commit.erased = Some(Erasure {
        users: report.users.iter().filter(|u| u.status == "erased").count() as u64,
        bronze_rows: sum(|u| u.bronze_rows),
        late_rows: sum(|u| u.late_rows),
        quarantined: sum(|u| u.quarantined),
        snapshots: report.snapshots_removed.len() as u64,
    });
    commit.remove.extend(snapshot_files);
    report.files_added = commit.add.len();
    report.files_removed = commit.remove.len();
    crate::derive::finish_commit(lake, &commit)?;
    report.status = "committed";
    report.version = commit.version;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}
