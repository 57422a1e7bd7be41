//! `reconcile`: merge every pending side-output event (`bronze_late`) into
//! bronze, as one commit.
//!
//! The late rows are re-sorted and written as new bronze files (bronze stays
//! append-only), the commit adds them and removes the side-output files, and
//! only after the commit are those files deleted. Running it again finds
//! nothing pending: a no-op. A crash at any step leaves either the old state
//! (and orphans the next writer removes) or the new one.

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::bronze;
use crate::fault;
use crate::ingest::{table_dirs, write};
use crate::lake::{self, Lake};
use crate::log::{self, Commit, FileAction, LakeState};
use crate::time;

#[derive(Debug, Clone, Serialize)]
pub struct ReconciledPartition {
    pub event_date: String,
    pub events: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReconcileReport {
    pub command: &'static str,
    /// `committed`, `noop` or `dry_run` (`--dry-run`, even with nothing
    /// pending).
    pub status: &'static str,
    pub lake: String,
    pub version: u64,
    pub events: u64,
    pub partitions: Vec<ReconciledPartition>,
    pub orphans_removed: Vec<String>,
    pub elapsed_ms: u64,
}

/// Merge the side output into bronze; with `dry_run`, only report what
/// would be merged (from the log: no file is read, written or removed).
pub fn reconcile(lake: &Lake, processing_time: i64, dry_run: bool) -> Result<ReconcileReport> {
    let _busy = crate::fault::operation("reconcile");
    let started = Instant::now();
    let _lock = lake.lock()?;
    let state = LakeState::load(lake)?;
    let orphans_removed = if dry_run {
        Vec::new()
    } else {
        log::clean_orphans(lake, &state, &table_dirs())?
    };
    let pending: Vec<&FileAction> = state
        .partitions(bronze::LATE_TABLE)
        .flat_map(|(_, p)| p.files.values())
        .collect();
    let mut report = ReconcileReport {
        command: "reconcile",
        status: "noop",
        lake: lake.root().display().to_string(),
        version: state.version,
        events: 0,
        partitions: Vec::new(),
        orphans_removed,
        elapsed_ms: 0,
    };
    if pending.is_empty() || dry_run {
        if dry_run {
            report.status = "dry_run";
            let mut by_date = std::collections::BTreeMap::<&str, u64>::new();
            for f in &pending {
                *by_date.entry(f.partition.as_str()).or_default() += f.rows;
            }
            report.events = by_date.values().sum();
            report.partitions = by_date
                .into_iter()
                .map(|(d, events)| ReconciledPartition {
                    event_date: d.to_string(),
                    events,
                })
                .collect();
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }

    let staging = crate::lake::Staging::create(lake, "reconcile")?;
    let run_id = {
        let mut h = blake3::Hasher::new();
        h.update(b"reconcile\n");
        for f in &pending {
            h.update(f.path.as_bytes());
            h.update(b"\n");
        }
        h.finalize().to_hex()[..16].to_string()
    };
    let namer = write::FileNamer::new(run_id, staging.to_path_buf());
    let mut buffer = write::Buffer::default();
    for f in &pending {
        let day = time::parse_date32(&f.partition)
            .map_err(|e| anyhow::anyhow!("bad partition `{}` in the log: {e}", f.partition))?;
        buffer.push_bronze_file(&lake.path(&f.path), day)?;
    }
    let mut staged = write::flush(buffer, &namer)?;
    namer.number(&mut staged);
    fault::point("staged")?;
    let moves: Vec<_> = staged.iter().map(|f| f.publish_move(lake)).collect();
    lake::publish(lake, &moves)?;
    let mut adds = Vec::with_capacity(staged.len());
    for f in &staged {
        adds.push(f.to_action());
        report.events += f.rows;
        report.partitions.push(ReconciledPartition {
            event_date: time::format_date32(f.event_date),
            events: f.rows,
        });
    }
    let mut commit = Commit::next(&state, "reconcile", processing_time);
    commit.add = adds;
    // The side-output files, deleted once the commit no longer references
    // them (a crash before leaves orphans that the next writer removes).
    commit.remove = pending.iter().map(|f| (*f).clone()).collect();
    crate::derive::finish_commit(lake, &commit)?;
    report
        .partitions
        .sort_by(|a, b| a.event_date.cmp(&b.event_date));
    report.status = "committed";
    report.version = commit.version;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}
