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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::bronze;
use crate::error::Failure;
use crate::fault;
use crate::ingest::QUARANTINE_TABLE;
use crate::lake::Lake;
use crate::log::{self, BatchRecord, Commit, FileAction, LakeState, RetractedBatch};
use crate::removal::{self, DateReport, Selection};

/// The log's operation name of a retraction commit.
pub const OPERATION: &str = "retract";

/// What `evlake retract` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Batch ids (bronze's `batch_id`) or input sources as ingested.
    /// As given: a file name need not be UTF-8.
    pub batches: Vec<std::ffi::OsString>,
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
    /// Input files under a directory argument that no committed batch
    /// came from: nothing of theirs to take back.
    pub not_ingested: Vec<String>,
    pub elapsed_ms: u64,
}

/// Retract the batches `opts.batches` names, in one commit.
pub fn retract(lake: &Lake, opts: &Options) -> Result<RetractReport> {
    let _busy = fault::operation(OPERATION);
    let started = Instant::now();
    let (_lock, state, orphans_removed) = removal::begin(lake, opts.dry_run)?;
    let (chosen, not_ingested) = resolve(&state, &opts.batches)?;
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
        not_ingested,
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
    let sel = Selection::batches(&todo);
    let hits = removal::find(
        lake,
        &state,
        &sel,
        quarantine_candidates(lake, &state, &todo),
    )?;
    for (hash, b) in &todo {
        let rows = |table| removal::rows_of(&hits, table, &b.batch_id);
        report.batches.push(BatchReport {
            bronze_rows: rows(bronze::TABLE),
            late_rows: rows(bronze::LATE_TABLE),
            quarantined: rows(QUARANTINE_TABLE),
            ..BatchReport::of(hash, b, "retracted")
        });
    }
    report
        .batches
        .sort_by_key(|b| (b.ingested_in, b.batch_id.clone()));
    report.dates = removal::dates(&hits);
    if opts.dry_run {
        report.status = "dry_run";
        report.files_removed = hits.len();
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }

    // Rewrite each file that keeps other rows; remove the rest.
    let mut commit = Commit::next(&state, OPERATION, opts.processing_time);
    removal::rewrite(lake, &state, &sel, &hits, OPERATION, &mut commit)?;
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
    report.files_added = commit.add.len();
    report.files_removed = commit.remove.len();
    crate::derive::finish_commit(lake, &commit)?;
    report.status = "committed";
    report.version = commit.version;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// The batches found, in commit order, and the files under a directory
/// argument that none came from.
type Resolved<'a> = (Vec<(&'a String, &'a BatchRecord)>, Vec<String>);

/// The committed batches the arguments name: each is a batch id (bronze's
/// `batch_id`, 16 hex digits) or an input's source as it was ingested
/// (every batch of it), or a directory of inputs (every batch of each
/// file under it that was ingested; the files none matches are returned
/// too, to be reported). One that names none is a usage error.
fn resolve<'a>(state: &'a LakeState, args: &[std::ffi::OsString]) -> Result<Resolved<'a>> {
    // One pass over the log's batches, in commit order, whatever the
    // number of arguments: each name's batches come out in that order.
    let mut batches: Vec<(&String, &BatchRecord)> = state.batches.iter().collect();
    batches.sort_by(|(_, a), (_, b)| (a.version, &a.batch_id).cmp(&(b.version, &b.batch_id)));
    let mut named: HashMap<&str, Vec<(&String, &BatchRecord)>> = HashMap::new();
    for (hash, b) in batches {
        named
            .entry(b.batch_id.as_str())
            .or_default()
            .push((hash, b));
        if b.source != b.batch_id {
            named.entry(b.source.as_str()).or_default().push((hash, b));
        }
    }
    let mut out: Vec<(&String, &BatchRecord)> = Vec::new();
    let mut seen: HashSet<&String> = HashSet::new();
    let mut not_ingested = Vec::new();
    for given in args {
        // A name that is not UTF-8 is looked up as ingest shows it (U+FFFD
        // where it is not text), and found on disk as given.
        let path = Path::new(given);
        let arg = &path.display().to_string();
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
        let dir = !named.contains_key(arg.as_str()) && path.is_dir();
        let found = match named.get(arg.as_str()) {
            Some(found) => found.clone(),
            None if dir => {
                let (found, never) = under_dir(state, &named, given)?;
                not_ingested.extend(never);
                found
            }
            None => same_file(state, &named, path),
        };
        if found.is_empty() && dir {
            return Err(Failure::Usage(format!(
                "no committed input batch from a file under `{arg}`: none of its input files \
                 (*.jsonl, *.ndjson, *.json, or rotated copies of them, optionally .gz or \
                 .zst) was ingested, by that \
                 name, another path to the same file or the same bytes; `evlake query \
                 \"SELECT * FROM batches\"` lists the batches"
            ))
            .into());
        }
        if found.is_empty() {
            return Err(Failure::Usage(format!(
                "no committed input batch `{arg}`: give a batch_id (16 hex digits, as in \
                 bronze's batch_id column and `ingest --json`) or an input as it was ingested \
                 (by that name, another path to the same file, or a file of the same bytes); \
                 `evlake query \"SELECT * FROM batches\"` lists them"
            ))
            .into());
        }
        out.extend(found.into_iter().filter(|(h, _)| seen.insert(*h)));
    }
    Ok((out, not_ingested))
}

/// The batches of every input file under directory `dir`, found as
/// `ingest DIR` lists them (recursively, lakes skipped), each matched as
/// a file argument is (by the name ingest gave it, another path to it, or
/// its bytes); and the files none matches (never ingested).
fn under_dir<'a>(
    state: &'a LakeState,
    named: &HashMap<&str, Vec<(&'a String, &'a BatchRecord)>>,
    dir: &std::ffi::OsStr,
) -> Result<Resolved<'a>> {
    // Every name: a file ingested with `--include` is named otherwise.
    let files = crate::ingest::input::resolve(&[dir.into()], &crate::ingest::input::Names::any())?;
    let mut found = Vec::new();
    let mut never = Vec::new();
    for input in files.inputs {
        let of_file = match named.get(input.display.as_str()) {
            Some(batches) => batches.clone(),
            None => match &input.path {
                Some(path) => same_file(state, named, path),
                None => Vec::new(),
            },
        };
        // (Of files never ingested, those a default walk would read.)
        let name = input.path.as_deref().and_then(Path::file_name);
        let input_name =
            name.is_some_and(|n| crate::ingest::input::is_input_name(&n.to_string_lossy()));
        if of_file.is_empty() && input_name {
            never.push(input.display);
        }
        found.extend(of_file);
    }
    found.sort_by(|(_, a), (_, b)| (a.version, &a.batch_id).cmp(&(b.version, &b.batch_id)));
    found.dedup_by(|(a, _), (b, _)| a == b);
    Ok((found, never))
}

/// The batches of `arg` when it is not a name as ingested but a file on
/// disk: those of every source that is the same file (`./x`, `x` or its
/// absolute path, resolved from here as ingest resolved it), else the
/// batch whose content hash is the file's (ingested from elsewhere, or
/// under another name). None when `arg` is no file, or none matches.
fn same_file<'a>(
    state: &'a LakeState,
    named: &HashMap<&str, Vec<(&'a String, &'a BatchRecord)>>,
    path: &Path,
) -> Vec<(&'a String, &'a BatchRecord)> {
    let Ok(target) = std::fs::canonicalize(path) else {
        return Vec::new();
    };
    let mut found: Vec<(&String, &BatchRecord)> = named
        .iter()
        .filter(|(name, _)| std::fs::canonicalize(name).is_ok_and(|p| p == target))
        .flat_map(|(_, batches)| batches.iter().copied())
        .collect();
    if found.is_empty()
        && target.is_file()
        && let Ok(hashed) = crate::ingest::input::hash_file(&target, None)
        && let Some((hash, b)) = state.batches.get_key_value(&hashed.hash)
    {
        found.push((hash, b));
    }
    found.sort_by(|(_, a), (_, b)| (a.version, &a.batch_id).cmp(&(b.version, &b.batch_id)));
    found.dedup_by(|(a, _), (b, _)| a == b);
    found
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state(batches: &[(&str, u64, &str, &str)]) -> LakeState {
        let mut s = LakeState::default();
        for (hash, version, id, source) in batches {
            s.batches.insert(
                hash.to_string(),
                BatchRecord {
                    version: *version,
                    ..crate::removal::tests::record(id, source)
                },
            );
        }
        s
    }

    fn ids(s: &LakeState, args: &[&str]) -> Vec<String> {
        let args: Vec<std::ffi::OsString> = args.iter().map(|a| a.into()).collect();
        resolve(s, &args)
            .unwrap()
            .0
            .iter()
            .map(|(_, b)| b.batch_id.clone())
            .collect()
    }

    #[test]
    fn resolve_names_each_batch_once_a_source_in_commit_order() {
        let s = state(&[
            ("h3", 3, "cc", "a.jsonl"),
            ("h1", 1, "aa", "a.jsonl"),
            ("h2", 2, "bb", "b.jsonl"),
        ]);
        assert_eq!(ids(&s, &["a.jsonl"]), ["aa", "cc"]);
        // A batch named twice, by id and by its source, comes once.
        assert_eq!(ids(&s, &["cc", "a.jsonl", "cc", "bb"]), ["cc", "aa", "bb"]);
        let err = resolve(&s, &["a.jsonl".into(), "zz".into()]).unwrap_err();
        assert!(err.to_string().contains("`zz`"), "{err}");
        assert!(resolve(&s, &["-".into()]).is_err());
    }
}
