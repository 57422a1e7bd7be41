//! `compact`: rewrite a bronze partition's many small files as one.
//!
//! A lake fed hourly gains a small file per date and run (late events add
//! one to old dates too): ~110 files per date after two weeks, and every
//! reader of bronze (a full silver rebuild, a query, DuckDB or Spark over
//! the directories) pays per file. Compaction reads a partition's small
//! files and writes their rows as one file, sorted as ingest sorts them
//! (user, event time, event id), in one commit that adds it and removes
//! them, like Delta Lake's OPTIMIZE.
//!
//! The rows stay exactly the same (every column, lineage included), so a
//! `compact` commit changes no data: the log gives the partition no new
//! version (nothing derived from it becomes dirty), records no removal
//! (silver's append-only path for the next late batch still holds) and
//! no new event (no snapshot becomes invalid). Dates whose bronze grew
//! since silver read it are left alone until silver has: their new files
//! are how silver finds the new rows. A crash at any step leaves the old
//! files or the new one, never both committed.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::bronze;
use crate::dirty;
use crate::fault;
use crate::ingest::{table_dirs, write};
use crate::lake::{self, Lake};
use crate::log::{self, Commit, FileAction, LakeState};
use crate::time;

/// The log's operation name of a compaction commit.
pub const OPERATION: &str = "compact";

/// A partition is compacted once it has this many small files.
pub const DEFAULT_MIN_FILES: usize = 8;

/// Files with fewer rows are small (an hourly run's); bigger ones stay.
pub const SMALL_FILE_ROWS: u64 = 256 * 1024;

/// At most this many rows go into one new file (and are held in memory
/// at once): a partition with more small files than that gets several.
pub const MERGED_ROWS: u64 = 1 << 20;

/// What `evlake compact` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Compact a partition with at least this many small files.
    pub min_files: usize,
    /// Only these dates (inclusive), if given.
    pub dates: Option<(i32, i32)>,
    pub processing_time: i64,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompactedPartition {
    pub event_date: String,
    /// Its files before and after.
    pub files_before: usize,
    pub files_after: usize,
    /// Rows rewritten (those of the small files).
    pub rows: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompactReport {
    pub command: &'static str,
    /// `committed`, `noop` or `dry_run`.
    pub status: &'static str,
    pub lake: String,
    pub version: u64,
    pub min_files: usize,
    pub partitions: Vec<CompactedPartition>,
    /// Dates with enough small files whose bronze grew since silver read
    /// it: left for after `evlake silver`.
    pub skipped_dirty: Vec<String>,
    /// The bronze dates `--dates` named (all of them without it); not
    /// in `--json`, for the warning when it named none.
    #[serde(skip)]
    pub dates_named: Vec<String>,
    pub files_removed: usize,
    pub files_added: usize,
    pub elapsed_ms: u64,
}

/// Compact every bronze partition with at least `min_files` small files
/// (see [`SMALL_FILE_ROWS`]), in one commit.
pub fn compact(lake: &Lake, opts: &Options) -> Result<CompactReport> {
    let _busy = crate::fault::operation(OPERATION);
    let started = Instant::now();
    let _lock = lake.lock()?;
    let state = LakeState::load(lake)?;
    if !opts.dry_run {
        log::clean_orphans(lake, &state, &table_dirs())?;
    }
    let mut report = CompactReport {
        command: "compact",
        status: "noop",
        lake: lake.root().display().to_string(),
        version: state.version,
        min_files: opts.min_files,
        partitions: Vec::new(),
        skipped_dirty: Vec::new(),
        dates_named: state
            .partitions(bronze::TABLE)
            .map(|(d, _)| d)
            .filter(|d| in_dates(d, opts.dates))
            .cloned()
            .collect(),
        files_removed: 0,
        files_added: 0,
        elapsed_ms: 0,
    };
    let (todo, skipped) = candidates(&state, opts);
    report.skipped_dirty = skipped;
    // Each group of small files becomes one file.
    let plan: Vec<(&String, Vec<Vec<&FileAction>>)> = todo
        .iter()
        .map(|(date, small)| (date, groups(small)))
        .filter(|(_, groups)| !groups.is_empty())
        .collect();
    for (date, groups) in &plan {
        let before = state.tables[bronze::TABLE][*date].files.len();
        let merged: Vec<&&FileAction> = groups.iter().flatten().collect();
        report.partitions.push(CompactedPartition {
            event_date: (*date).clone(),
            files_before: before,
            files_after: before - merged.len() + groups.len(),
            rows: merged.iter().map(|f| f.rows).sum(),
        });
    }
    if plan.is_empty() || opts.dry_run {
        if opts.dry_run {
            report.status = "dry_run";
        }
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }

    let staging = lake::Staging::create(lake, OPERATION)?;
    let run_id = crate::derive::run_id(OPERATION, &state);
    let namer = write::FileNamer::new(run_id, staging.to_path_buf());
    let mut staged = Vec::new();
    let mut removed: Vec<FileAction> = Vec::new();
    for (date, groups) in &plan {
        let day = time::parse_date32(date).map_err(anyhow::Error::msg)?;
        for group in groups {
            let mut buffer = write::Buffer::default();
            for f in group {
                buffer.push_bronze_file(&lake.path(&f.path), day)?;
            }
            staged.extend(write::flush(buffer, &namer)?);
            removed.extend(group.iter().map(|f| (*f).clone()));
        }
    }
    namer.number(&mut staged);
    fault::point("staged")?;
    let moves: Vec<_> = staged.iter().map(|f| f.publish_move(lake)).collect();
    lake::publish(lake, &moves)?;
    let mut commit = Commit::next(&state, OPERATION, opts.processing_time);
    commit.add = staged.iter().map(write::StagedFile::to_action).collect();
    commit.remove = removed;
    report.files_added = commit.add.len();
    report.files_removed = commit.remove.len();
    // The same rows before and after, or the commit is not written.
    let rows = |v: &[FileAction]| v.iter().map(|f| f.rows).sum::<u64>();
    anyhow::ensure!(
        rows(&commit.add) == rows(&commit.remove),
        "internal error: compaction wrote {} rows for {}",
        rows(&commit.add),
        rows(&commit.remove)
    );
    crate::derive::finish_commit(lake, &commit)?;
    report.status = "committed";
    report.version = commit.version;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Whether `date` (a partition value) is in `dates` (all are without it).
fn in_dates(date: &str, dates: Option<(i32, i32)>) -> bool {
    match (time::parse_date32(date), dates) {
        (Ok(day), Some((a, b))) => (a..=b).contains(&day),
        (Ok(_), None) => true,
        (Err(_), _) => false,
    }
}

/// The partitions to compact, each with its small files (in path order),
/// and the dates left alone because silver has yet to read their new
/// files.
#[allow(clippy::type_complexity)]
fn candidates<'a>(
    state: &'a LakeState,
    opts: &Options,
) -> (Vec<(String, Vec<&'a FileAction>)>, Vec<String>) {
    let events_builds = state.builds.get(crate::silver::EVENTS_TABLE);
    let (mut todo, mut skipped) = (Vec::new(), Vec::new());
    for (date, p) in state.partitions(bronze::TABLE) {
        if !in_dates(date, opts.dates) {
            continue;
        }
        let small: Vec<&FileAction> = p
            .files
            .values()
            .filter(|f| f.rows < SMALL_FILE_ROWS)
            .collect();
        if small.len() < opts.min_files.max(2) {
            continue;
        }
        // Grown since silver read it: silver finds the new rows by their
        // files. (Never built: silver reads the whole date anyway.)
        let key = dirty::input_key(bronze::TABLE, date);
        let grown = events_builds
            .and_then(|b| b.get(date))
            .and_then(|(_, b)| b.inputs.get(&key))
            .is_some_and(|v| *v < p.version);
        if grown {
            skipped.push(date.clone());
            continue;
        }
        todo.push((date.clone(), small));
    }
    (todo, skipped)
}

/// The bronze dates with at least `min_files` small files (for `status`).
pub fn compactable(state: &LakeState, min_files: usize) -> Vec<String> {
    compactable_with(state, min_files, &BTreeMap::new())
}

/// [`compactable`] once each date has `more` small files besides (what a
/// run's ingest would add: `run --dry-run`).
pub fn compactable_with(
    state: &LakeState,
    min_files: usize,
    more: &BTreeMap<String, usize>,
) -> Vec<String> {
    let mut dates: BTreeMap<&String, usize> = more.iter().map(|(d, n)| (d, *n)).collect();
    for (d, p) in state.partitions(bronze::TABLE) {
        *dates.entry(d).or_default() += p
            .files
            .values()
            .filter(|f| f.rows < SMALL_FILE_ROWS)
            .count();
    }
    dates
        .into_iter()
        .filter(|(_, n)| *n >= min_files)
        .map(|(d, _)| d.clone())
        .collect()
}

/// Consecutive small files grouped up to [`MERGED_ROWS`] rows each
/// (a group of one is left as it is).
fn groups<'a>(small: &[&'a FileAction]) -> Vec<Vec<&'a FileAction>> {
    let mut out: Vec<Vec<&FileAction>> = Vec::new();
    let mut rows = 0;
    for f in small {
        match out.last_mut() {
            Some(g) if rows + f.rows <= MERGED_ROWS => {
                g.push(f);
                rows += f.rows;
            }
            _ => {
                out.push(vec![f]);
                rows = f.rows;
            }
        }
    }
    out.retain(|g| g.len() > 1);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(rows: u64) -> FileAction {
        FileAction::plain(bronze::TABLE, "2024-03-15", format!("f{rows}"), rows, 1)
    }

    #[test]
    fn small_files_are_grouped_up_to_the_merged_size_and_singletons_stay() {
        let f: Vec<FileAction> = [10, 20, MERGED_ROWS - 30, 5, MERGED_ROWS]
            .into_iter()
            .map(file)
            .collect();
        let refs: Vec<&FileAction> = f.iter().collect();
        let g: Vec<Vec<u64>> = groups(&refs)
            .into_iter()
            .map(|g| g.iter().map(|f| f.rows).collect())
            .collect();
        // 10 + 20 + (MERGED - 30) fit one file; 5 then MERGED do not fit
        // together, and each alone is left.
        assert_eq!(g, vec![vec![10, 20, MERGED_ROWS - 30]]);
    }

    #[test]
    fn status_lists_the_dates_with_enough_small_files() {
        let mut c = Commit::next(&LakeState::default(), "ingest", 0);
        for (date, n) in [("2024-03-14", 8), ("2024-03-15", 7)] {
            for i in 0..n {
                c.add.push(FileAction::plain(
                    bronze::TABLE,
                    date,
                    format!("{date}/{i}"),
                    10,
                    1,
                ));
            }
        }
        // A big file does not count.
        c.add.push(FileAction::plain(
            bronze::TABLE,
            "2024-03-15",
            "big".into(),
            SMALL_FILE_ROWS,
            1,
        ));
        let st = LakeState::replay(&[c]);
        assert_eq!(compactable(&st, 8), ["2024-03-14"]);
        assert_eq!(compactable(&st, 7), ["2024-03-14", "2024-03-15"]);
    }

    #[test]
    fn a_compaction_commit_changes_no_version_removal_or_event_time() {
        let mut ingest = Commit::next(&LakeState::default(), "ingest", 0);
        let mut a = file(3);
        a.path = "a".into();
        a.min_event_time = Some("2024-03-15T01:00:00Z".into());
        let mut b = a.clone();
        b.path = "b".into();
        ingest.add = vec![a.clone(), b.clone()];
        let st = LakeState::replay(&[ingest.clone()]);
        let mut c = Commit::next(&st, OPERATION, 0);
        let mut merged = file(6);
        merged.path = "m".into();
        merged.min_event_time = a.min_event_time.clone();
        c.add = vec![merged];
        c.remove = vec![a, b];
        let after = LakeState::replay(&[ingest, c]);
        let p = &after.tables[bronze::TABLE]["2024-03-15"];
        assert_eq!(p.version, 1, "no new version");
        assert_eq!(
            p.last_removal,
            st.tables[bronze::TABLE]["2024-03-15"].last_removal
        );
        assert_eq!(p.files.keys().collect::<Vec<_>>(), ["m"]);
        assert_eq!(after.bronze_min_event_times, st.bronze_min_event_times);
        assert_eq!(after.version, 2);
    }
}
