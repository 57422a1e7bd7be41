//! `retract`: take back every row an input batch added, as one commit.
//!
//! For an input ingested by mistake (test data fed to production, a
//! half-written export, the wrong day's file): its events leave
//! `bronze_events` and the side output (`bronze_late`), its bad lines
//! leave `quarantine`, and what was derived from them becomes dirty, as
//! for a late event, so the next `silver` and `gold` (or `run`) rebuild
//! the dates it touched. Rows are found by their `batch_id` column
//! (wherever `reconcile` or `compact` has moved them since). A file
//! holding only the batch's rows is removed; one holding others' too is
//! rewritten without them (the others' rows stay exactly as they were,
//! lineage included). A crash at any step leaves the old files or the new
//! ones, never both committed.
//!
//! The commit also marks the batch retracted in the log
//! ([`crate::log::BatchRecord::retracted`]):
//! - a re-run of the same ingest (cron over the same directory) skips the
//!   input rather than bring it back, and a file that grew since is read
//!   from where the retracted batch ended, as for any batch (a log
//!   retracted while its writer goes on appending keeps its retracted
//!   lines out); `ingest --reingest-retracted` takes it in again on
//!   purpose, a grown file whole;
//! - a snapshot at or after the earliest retracted event becomes invalid,
//!   as it does when an event arrives there;
//! - the id index still holds the retracted ids, so it no longer covers
//!   bronze exactly: the next ingest rebuilds it.
//!
//! The watermark and the largest event time stay where they were (they
//! never move back). Retracting rewrites history: `--known-at` answers
//! from before the retraction no longer see its events either.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};
use std::time::Instant;

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::Serialize;

use crate::bronze;
use crate::error::Failure;
use crate::fault;
use crate::ingest::{QUARANTINE_DIR, QUARANTINE_TABLE, table_dirs, write};
use crate::lake::{self, Lake};
use crate::log::{self, BatchRecord, Commit, FileAction, LakeState, RetractedBatch};
use crate::time;

/// The log's operation name of a retraction commit.
pub const OPERATION: &str = "retract";

/// What `evlake retract` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Batch ids (bronze's `batch_id`) or input sources as ingested.
    pub batches: Vec<String>,
    pub processing_time: i64,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    pub batch_id: String,
    /// The input's content hash.
    pub hash: String,
    pub source: String,
    /// The commit that ingested it.
    pub ingested_in: u64,
    /// `retracted` (by this run, or would be with `--dry-run`) or
    /// `already_retracted`.
    pub status: &'static str,
    /// For `already_retracted`: the commit that did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retracted_in: Option<u64>,
    /// Rows taken out of `bronze_events`, `bronze_late` and `quarantine`.
    pub bronze_rows: u64,
    pub late_rows: u64,
    pub quarantined: u64,
}

impl BatchReport {
    /// Batch `b` (input hash `hash`) with `status`, no rows counted yet.
    fn of(hash: &str, b: &BatchRecord, status: &'static str) -> BatchReport {
        BatchReport {
            batch_id: b.batch_id.clone(),
            hash: hash.to_string(),
            source: b.source.clone(),
            ingested_in: b.version,
            status,
            retracted_in: b.retracted,
            bronze_rows: 0,
            late_rows: 0,
            quarantined: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DateReport {
    pub event_date: String,
    /// Rows taken out of `bronze_events` of the date.
    pub rows: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RetractReport {
    pub command: &'static str,
    /// `committed`, `noop` (every batch already retracted) or `dry_run`.
    pub status: &'static str,
    pub lake: String,
    pub version: u64,
    pub batches: Vec<BatchReport>,
    /// The `bronze_events` dates whose rows changed, with the rows each
    /// lost: derived tables rebuild them.
    pub dates: Vec<DateReport>,
    pub files_removed: usize,
    pub files_added: usize,
    pub orphans_removed: Vec<String>,
    pub elapsed_ms: u64,
}

/// One file holding rows of the batches being retracted.
struct Hit<'a> {
    file: &'a FileAction,
    /// `bronze_events`, `bronze_late` or `quarantine`.
    table: &'a str,
    /// Its rows of the batches.
    rows: u64,
}

/// Retract the batches `opts.batches` names, in one commit.
pub fn retract(lake: &Lake, opts: &Options) -> Result<RetractReport> {
    let _busy = fault::operation(OPERATION);
    let started = Instant::now();
    let _lock = lake.lock()?;
    let state = LakeState::load(lake)?;
    let orphans_removed = if opts.dry_run {
        Vec::new()
    } else {
        log::clean_orphans(lake, &state, &table_dirs())?
    };
    let chosen = resolve(&state, &opts.batches)?;
    let mut report = RetractReport {
        command: OPERATION,
        status: "noop",
        lake: lake.root().display().to_string(),
        version: state.version,
        batches: Vec::new(),
        dates: Vec::new(),
        files_removed: 0,
        files_added: 0,
        orphans_removed,
        elapsed_ms: 0,
    };
    let todo: Vec<(&String, &BatchRecord)> = chosen
        .iter()
        .copied()
        .filter(|(_, b)| b.retracted.is_none())
        .collect();
    for (hash, b) in chosen.iter().filter(|(_, b)| b.retracted.is_some()) {
        report
            .batches
            .push(BatchReport::of(hash, b, "already_retracted"));
    }
    if todo.is_empty() {
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    let ids: HashSet<String> = todo.iter().map(|(_, b)| b.batch_id.clone()).collect();

    // Every bronze and side-output file with rows of the batches (most are
    // ruled out by their row groups' batch_id statistics), and the
    // quarantine files with their lines.
    let data: Vec<(&str, &FileAction)> = [bronze::TABLE, bronze::LATE_TABLE]
        .into_iter()
        .flat_map(|t| {
            state
                .partitions(t)
                .flat_map(move |(_, p)| p.files.values().map(move |f| (t, f)))
        })
        .collect();
    let mut hits: Vec<Hit> = data
        .par_iter()
        .map(|(table, f)| {
            let rows = bronze::count_batch_rows(&lake.path(&f.path), &ids)?;
            Ok(Hit {
                file: f,
                table,
                rows,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let quarantine_files = quarantine_candidates(lake, &state, &todo);
    for f in quarantine_files {
        let rows = quarantine_lines(lake, f, &todo)?;
        hits.push(Hit {
            file: f,
            table: QUARANTINE_TABLE,
            rows,
        });
    }
    hits.retain(|h| h.rows > 0);

    // What each batch and date loses: counted per batch from a second,
    // per-id pass only where several batches are retracted at once.
    let mut by_date: BTreeMap<String, u64> = BTreeMap::new();
    for h in hits.iter().filter(|h| h.table == bronze::TABLE) {
        *by_date.entry(h.file.partition.clone()).or_default() += h.rows;
    }
    for (hash, b) in &todo {
        let one: HashSet<String> = std::iter::once(b.batch_id.clone()).collect();
        let single = todo.len() == 1;
        let count = |table: &str| -> Result<u64> {
            hits.iter()
                .filter(|h| h.table == table)
                .map(|h| {
                    if single {
                        Ok(h.rows)
                    } else if table == QUARANTINE_TABLE {
                        quarantine_lines(lake, h.file, &[(*hash, *b)])
                    } else {
                        bronze::count_batch_rows(&lake.path(&h.file.path), &one)
                    }
                })
                .sum()
        };
        report.batches.push(BatchReport {
            bronze_rows: count(bronze::TABLE)?,
            late_rows: count(bronze::LATE_TABLE)?,
            quarantined: count(QUARANTINE_TABLE)?,
            ..BatchReport::of(hash, b, "retracted")
        });
    }
    report
        .batches
        .sort_by_key(|b| (b.ingested_in, b.batch_id.clone()));
    report.dates = by_date
        .into_iter()
        .map(|(event_date, rows)| DateReport { event_date, rows })
        .collect();
    if opts.dry_run {
        report.status = "dry_run";
        report.files_removed = hits.len();
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }

    // Rewrite each file that keeps other rows; remove the rest.
    let staging = lake::Staging::create(lake, OPERATION)?;
    let run_id = crate::derive::run_id(OPERATION, &state);
    let namer = write::FileNamer::new(run_id.clone(), staging.to_path_buf());
    let mut staged = Vec::new();
    let mut adds: Vec<FileAction> = Vec::new();
    let mut moves = Vec::new();
    for (n, h) in hits.iter().enumerate() {
        if h.rows >= h.file.rows {
            continue;
        }
        if h.table == QUARANTINE_TABLE {
            let rel = format!("{QUARANTINE_DIR}/{run_id}-{n:05}.jsonl");
            let to = staging.join(format!("quarantine-{n:05}.jsonl"));
            let (kept, bytes) = rewrite_quarantine(lake, h.file, &todo, &to)?;
            moves.push((to, lake.path(&rel)));
            adds.push(FileAction::plain(QUARANTINE_TABLE, "", rel, kept, bytes));
            continue;
        }
        let day = time::parse_date32(&h.file.partition).map_err(anyhow::Error::msg)?;
        let mut buffer = write::Buffer::default();
        let side = h.table == bronze::LATE_TABLE;
        let dropped = buffer.push_bronze_rows(&lake.path(&h.file.path), day, side, &ids)?;
        anyhow::ensure!(
            dropped == h.rows,
            "`{}` changed while being read ({} rows of the batch, then {dropped})",
            h.file.path,
            h.rows
        );
        staged.extend(write::flush(buffer, &namer)?);
    }
    namer.number(&mut staged);
    let after = files_after(lake, &state, &hits, &staged);
    let id_conflicts = recount_conflicts(&hits, &after)?;
    let ids_on_other_dates = recount_other_dates(&state, &after)?;
    fault::point("staged")?;
    moves.extend(staged.iter().map(|f| f.publish_move(lake)));
    lake::publish(lake, &moves)?;
    adds.extend(staged.iter().map(write::StagedFile::to_action));
    let mut commit = Commit::next(&state, OPERATION, opts.processing_time);
    commit.format = log::RETRACT_FORMAT;
    commit.id_conflicts = id_conflicts;
    commit.ids_on_other_dates = ids_on_other_dates;
    commit.add = adds;
    commit.remove = hits.iter().map(|h| h.file.clone()).collect();
    commit.retracted = report
        .batches
        .iter()
        .filter(|b| b.status == "retracted")
        .map(|b| RetractedBatch {
            hash: b.hash.clone(),
            batch_id: b.batch_id.clone(),
            source: b.source.clone(),
            ingested_in: b.ingested_in,
            bronze_rows: b.bronze_rows,
            late_rows: b.late_rows,
            quarantined: b.quarantined,
        })
        .collect();
    // Every row is accounted for: what the rewritten files keep plus what
    // the batches lose is what the removed files held.
    let rows = |v: &[FileAction]| v.iter().map(|f| f.rows).sum::<u64>();
    let lost: u64 = hits.iter().map(|h| h.rows).sum();
    anyhow::ensure!(
        rows(&commit.add) + lost == rows(&commit.remove),
        "internal error: retraction kept {} rows and took {lost} of {}",
        rows(&commit.add),
        rows(&commit.remove)
    );
    report.files_added = commit.add.len();
    report.files_removed = commit.remove.len();
    crate::derive::finish_commit(lake, &commit)?;
    report.status = "committed";
    report.version = commit.version;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// The id conflicts of every date whose bronze or side-output rows the
/// retraction changes, counted again from its rows after it (the rewritten
/// files from staging): per `event_id`, its distinct contents less one,
/// which is what ingest's counts add up to. A `retract` commit's counts
/// replace the state's for the dates it lists (0 included).
fn recount_conflicts(hits: &[Hit], files: &DateFiles) -> Result<BTreeMap<String, u64>> {
    let dates: std::collections::BTreeSet<&String> = hits
        .iter()
        .filter(|h| h.table != QUARANTINE_TABLE)
        .map(|h| &h.file.partition)
        .collect();
    dates
        .into_par_iter()
        .map(|date| {
            let mut keys = Vec::new();
            for p in files.get(date).map_or(&[][..], |v| v) {
                keys.extend(bronze::read_content_hashes(p)?);
            }
            keys.sort_unstable();
            keys.dedup();
            let versions = keys.len() as u64;
            keys.dedup_by_key(|(id, _)| *id);
            Ok((date.clone(), versions - keys.len() as u64))
        })
        .collect()
}

/// Files by date (see [`files_after`]).
type DateFiles = BTreeMap<String, Vec<std::path::PathBuf>>;

/// Every bronze and side-output file the lake has after the retraction,
/// by date: the live ones it does not remove, and the rewritten ones (from
/// staging).
fn files_after(
    lake: &Lake,
    state: &LakeState,
    hits: &[Hit],
    staged: &[write::StagedFile],
) -> DateFiles {
    let removed: HashSet<&str> = hits.iter().map(|h| h.file.path.as_str()).collect();
    let mut out = DateFiles::new();
    for t in [bronze::TABLE, bronze::LATE_TABLE] {
        for (date, p) in state.partitions(t) {
            for f in p.files.keys().filter(|f| !removed.contains(f.as_str())) {
                out.entry(date.clone()).or_default().push(lake.path(f));
            }
        }
    }
    for f in staged {
        out.entry(time::format_date32(f.event_date))
            .or_default()
            .push(f.staged.clone());
    }
    out
}

/// The count of `event_id`s on each date that are on another date too,
/// where the retraction can have made it smaller (every date with a
/// count: one it did not change can have counted an id that only a
/// retracted row put on another date). Ingest counts an id on the dates it
/// arrived on after its first, which the rows do not record, so each
/// count becomes the smaller of what it was and the ids of the date on
/// another date now (exact when the retracted rows were all that put an
/// id on two dates). Only the `event_id` column is read; memory holds the
/// ids of those dates.
fn recount_other_dates(state: &LakeState, files: &DateFiles) -> Result<BTreeMap<String, u64>> {
    let dates: Vec<&String> = state
        .ids_on_other_dates
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(d, _)| d)
        .collect();
    if dates.is_empty() {
        return Ok(BTreeMap::new());
    }
    let ids_of = |paths: &[std::path::PathBuf]| -> Result<HashSet<u64>> {
        let mut ids = HashSet::new();
        for p in paths {
            ids.extend(bronze::read_event_id_hashes(p)?);
        }
        Ok(ids)
    };
    // The ids of each date counted, then which of them another date has.
    let mut watched: BTreeMap<&String, HashSet<u64>> = BTreeMap::new();
    for d in &dates {
        watched.insert(d, ids_of(files.get(*d).map_or(&[][..], |v| v))?);
    }
    let mut elsewhere: BTreeMap<&String, HashSet<u64>> = BTreeMap::new();
    for (date, paths) in files {
        let ids = ids_of(paths)?;
        for (d, w) in &watched {
            if *d != date {
                elsewhere
                    .entry(d)
                    .or_default()
                    .extend(ids.iter().filter(|id| w.contains(id)));
            }
        }
    }
    Ok(dates
        .into_iter()
        .map(|d| {
            let now = elsewhere.get(d).map_or(0, |e| e.len() as u64);
            (d.clone(), now.min(state.ids_on_other_dates[d]))
        })
        .collect())
}

/// The committed batches the arguments name: each is a batch id (bronze's
/// `batch_id`, 16 hex digits) or an input's source as it was ingested
/// (every batch of it). One that names none is a usage error.
fn resolve<'a>(
    state: &'a LakeState,
    args: &[String],
) -> Result<Vec<(&'a String, &'a BatchRecord)>> {
    let mut out: Vec<(&String, &BatchRecord)> = Vec::new();
    for arg in args {
        // Every input read from stdin has the same source: those are told
        // apart by batch id alone.
        if arg == crate::ingest::input::STDIN || arg == "-" {
            return Err(Failure::Usage(format!(
                "`{arg}`: inputs read from stdin are retracted by their batch_id (`ingest --json` \
                 prints it; `evlake query \"SELECT * FROM batches WHERE source = '<stdin>'\"` \
                 lists them)"
            ))
            .into());
        }
        let mut found: Vec<(&String, &BatchRecord)> = state
            .batches
            .iter()
            .filter(|(_, b)| b.batch_id == *arg || b.source == *arg)
            .collect();
        if found.is_empty() {
            return Err(Failure::Usage(format!(
                "no committed input batch `{arg}`: give a batch_id (16 hex digits, as in \
                 bronze's batch_id column and `ingest --json`) or an input as it was ingested; \
                 `evlake query \"SELECT * FROM batches\"` lists them"
            ))
            .into());
        }
        found.sort_by_key(|(_, b)| (b.version, b.batch_id.clone()));
        for f in found {
            if !out.iter().any(|(h, _)| *h == f.0) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

/// The live quarantine files that can hold the batches' lines: those their
/// ingest commits added (every live one when such a commit is no longer
/// in the log).
fn quarantine_candidates<'a>(
    lake: &Lake,
    state: &'a LakeState,
    todo: &[(&String, &BatchRecord)],
) -> Vec<&'a FileAction> {
    let live: BTreeMap<&String, &FileAction> = state
        .partitions(QUARANTINE_TABLE)
        .flat_map(|(_, p)| p.files.iter())
        .collect();
    let mut paths: Vec<String> = Vec::new();
    for (_, b) in todo {
        match log::read_commit(lake, b.version) {
            Ok(c) => paths.extend(
                c.add
                    .into_iter()
                    .filter(|a| a.table == QUARANTINE_TABLE)
                    .map(|a| a.path),
            ),
            Err(_) => return live.into_values().collect(),
        }
    }
    paths.sort();
    paths.dedup();
    paths.iter().filter_map(|p| live.get(p).copied()).collect()
}

/// Whether a quarantine line is one of the batches': by its `batch_id`,
/// or, in a line written before lines carried one, by its source.
fn quarantine_line_of(line: &str, todo: &[(&String, &BatchRecord)]) -> bool {
    #[derive(serde::Deserialize)]
    struct Line {
        #[serde(default)]
        batch_id: Option<String>,
        #[serde(default)]
        source_file: Option<String>,
    }
    let Ok(l) = serde_json::from_str::<Line>(line) else {
        return false;
    };
    todo.iter().any(|(_, b)| match &l.batch_id {
        Some(id) => *id == b.batch_id,
        None => l.source_file.as_deref() == Some(b.source.as_str()),
    })
}

/// How many lines of quarantine file `f` are the batches'.
fn quarantine_lines(lake: &Lake, f: &FileAction, todo: &[(&String, &BatchRecord)]) -> Result<u64> {
    let path = lake.path(&f.path);
    let file = std::fs::File::open(&path)
        .with_context(|| format!("failed to open `{}`", path.display()))?;
    let mut theirs = 0;
    for line in std::io::BufReader::new(file).lines() {
        let line = line.with_context(|| format!("failed to read `{}`", path.display()))?;
        theirs += u64::from(quarantine_line_of(&line, todo));
    }
    Ok(theirs)
}

/// Write quarantine file `f` without the batches' lines to `to` (fsynced);
/// returns the lines kept and the bytes written.
fn rewrite_quarantine(
    lake: &Lake,
    f: &FileAction,
    todo: &[(&String, &BatchRecord)],
    to: &std::path::Path,
) -> Result<(u64, u64)> {
    let path = lake.path(&f.path);
    let file = std::fs::File::open(&path)
        .with_context(|| format!("failed to open `{}`", path.display()))?;
    let out = std::fs::File::create(to)
        .with_context(|| format!("failed to create `{}`", to.display()))?;
    let mut out = std::io::BufWriter::new(out);
    let (mut kept, mut bytes) = (0, 0);
    for line in std::io::BufReader::new(file).lines() {
        let line = line.with_context(|| format!("failed to read `{}`", path.display()))?;
        if quarantine_line_of(&line, todo) {
            continue;
        }
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        kept += 1;
        bytes += line.len() as u64 + 1;
    }
    let out = out.into_inner().map_err(|e| e.into_error())?;
    out.sync_all()?;
    Ok((kept, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(batch_id: &str, source: &str) -> BatchRecord {
        BatchRecord {
            version: 1,
            batch_id: batch_id.into(),
            source: source.into(),
            bytes: 0,
            lines: 0,
            head: None,
            retracted: None,
            processing_time: None,
            events: None,
            quarantined: None,
        }
    }

    /// A quarantine line is the batch's by its batch_id; one written
    /// before lines carried a batch_id, by its source file.
    #[test]
    fn quarantine_lines_are_matched_by_batch_id_or_else_by_source() {
        let hash = "blake3:x".to_string();
        let b = record("b1", "in.jsonl");
        let todo = [(&hash, &b)];
        let line = |batch: Option<&str>, source: &str| {
            let mut v = serde_json::json!({"source_file": source, "line": 3, "raw": "x"});
            if let Some(id) = batch {
                v["batch_id"] = id.into();
            }
            v.to_string()
        };
        assert!(quarantine_line_of(&line(Some("b1"), "other.jsonl"), &todo));
        assert!(!quarantine_line_of(&line(Some("b2"), "in.jsonl"), &todo));
        assert!(quarantine_line_of(&line(None, "in.jsonl"), &todo));
        assert!(!quarantine_line_of(&line(None, "other.jsonl"), &todo));
        assert!(!quarantine_line_of("not json", &todo));
    }
}
