//! The commit log: the lake's metadata as an event log (DESIGN.md §2).
//!
//! Every command that changes the lake ends by writing exactly one commit,
//! `_evlake/log/<version>.json`. The current state of every table is the
//! replay of these commits ([`LakeState::load`]); no other metadata exists,
//! so there is nothing a crash can leave half-updated.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::lake::{self, Lake};
use crate::lateness::StoredHistogram;

/// The on-disk format version of commit files: the newest this evlake
/// reads. Commits are written in [`BASE_FORMAT`] but for a `retract` or an
/// `erase`, whose removal of rows an evlake from before them would misread
/// (it would take a retracted input for consumed, keep the id index and
/// snapshots they invalidate): [`ROW_REMOVAL_FORMAT`] makes such an evlake
/// refuse the lake instead.
pub const FORMAT: u32 = ROW_REMOVAL_FORMAT;

/// The format of every commit but a `retract`'s or an `erase`'s.
pub const BASE_FORMAT: u32 = 1;

/// The format of a `retract` or `erase` commit (see [`FORMAT`]).
pub const ROW_REMOVAL_FORMAT: u32 = 2;

/// Every this many versions, a commit is followed by a checkpoint: the
/// replayed state at that version, `_evlake/log/<version>.checkpoint.json`.
/// Loading then reads the newest checkpoint and only the commits after it,
/// so opening a lake does not slow down as its history grows. Checkpoints
/// only save time: the commits stay the record, and a missing, stale or
/// unreadable checkpoint is ignored (the log is replayed instead).
pub const CHECKPOINT_EVERY: u64 = 50;

/// [`CHECKPOINT_EVERY`], or `EVLAKE_CHECKPOINT_EVERY` (at least 2) so a
/// test can reach a log's checkpoints, and its pruning, in a few runs.
fn checkpoint_every() -> u64 {
    static EVERY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *EVERY.get_or_init(|| {
        std::env::var("EVLAKE_CHECKPOINT_EVERY")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|v| *v >= 2)
            .unwrap_or(CHECKPOINT_EVERY)
    })
}

/// A checkpoint is also written sooner, once the commits after the newest
/// one add up to more bytes than it (and at least this many): a few full
/// rebuilds, each listing every file it replaced, would otherwise make
/// every command read more log than the whole state.
pub const CHECKPOINT_TAIL_BYTES: u64 = 256 * 1024;

/// The on-disk format version of checkpoint files: 1, or 2 for the state
/// of a lake with a retracted batch (which an evlake from before `retract`
/// must not read; it ignores a checkpoint of another format, replays the
/// log and refuses the `retract` commit).
const CHECKPOINT_FORMAT: u32 = 1;
const CHECKPOINT_FORMAT_RETRACTED: u32 = 2;

/// One commit: what a command added to and removed from the lake.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Commit {
    pub format: u32,
    /// 1, 2, 3, ... with no gaps.
    pub version: u64,
    /// The command that wrote it: `ingest`, `reconcile`, `silver`, ...
    pub operation: String,
    /// The run's processing time (RFC 3339, UTC).
    pub processing_time: String,
    pub evlake_version: String,
    /// Input batches consumed by this commit (their hashes make re-runs no-ops).
    #[serde(default)]
    pub inputs: Vec<InputBatch>,
    #[serde(default)]
    pub add: Vec<FileAction>,
    #[serde(default)]
    pub remove: Vec<FileAction>,
    /// Largest event time committed so far (RFC 3339), after this commit.
    #[serde(default)]
    pub max_event_time: Option<String>,
    /// The watermark after this commit (RFC 3339); never moves back.
    #[serde(default)]
    pub watermark: Option<String>,
    /// Settings that shaped this commit (late policy, delays, ...), for audit.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Derived partitions this commit (re)built, and from what.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub builds: Vec<Build>,
    /// `ingest` only: for every `bronze_events` partition it added rows
    /// to, how many of them repeat an `event_id` already on that date
    /// (committed before, or earlier in the run). A partition a commit
    /// added rows to but does not list was not counted (commits written
    /// before this field, `reconcile`). Silver skips looking for rows that
    /// share an id with the new ones where every count is 0.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resends: BTreeMap<String, u64>,
    /// `ingest`: per `bronze_events` partition, the id conflicts it
    /// added (new versions of an `event_id` already on the date, which
    /// silver leaves out); partitions with none are not listed.
    /// `retract`: the dates whose rows it changed, each with its id
    /// conflicts counted again after it (0 included), which replace the
    /// count so far.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub id_conflicts: BTreeMap<String, u64>,
    /// `ingest`: per `bronze_events` partition, the `event_id`s it
    /// added there that are on another date too (silver keeps both).
    /// `retract`: the new counts of the dates it recounted (see
    /// `crate::retract`), which replace the count so far.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ids_on_other_dates: BTreeMap<String, u64>,
    /// This commit's bronze and side-output rows are in the id index
    /// (`crate::ids`): it adds their index file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ids_indexed: bool,
    /// After this commit the id index covers every bronze and side-output
    /// row (it was rebuilt from them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ids_rebuilt: bool,
    /// Derived tables this commit dropped (a lake's own typed or daily
    /// table whose SQL file was removed): it removes every file of theirs,
    /// and the state forgets their builds, so the same SQL added back is
    /// built again rather than taken for built.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<String>,
    /// `retract` only: the input batches whose rows it removed. They stay
    /// consumed (a re-run of the same ingest skips them, a grown file
    /// resumes after them) unless ingest is told to take them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retracted: Vec<RetractedBatch>,
    /// `erase` only: what it took out. The user ids are not kept (the log
    /// is not to hold what was erased).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased: Option<Erasure>,
}

/// What an `erase` commit took out of the lake.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Erasure {
    /// Users who had rows.
    pub users: u64,
    /// Rows removed from `bronze_events`, `bronze_late` and `quarantine`.
    pub bronze_rows: u64,
    pub late_rows: u64,
    pub quarantined: u64,
    /// Snapshots removed (they held state at or after an erased event).
    pub snapshots: u64,
}

/// An input batch a `retract` commit removed the rows of.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RetractedBatch {
    /// The input's hash (its key in [`LakeState::batches`]).
    pub hash: String,
    pub batch_id: String,
    pub source: String,
    /// The commit that ingested it.
    pub ingested_in: u64,
    /// Rows removed from `bronze_events`, `bronze_late` and `quarantine`.
    pub bronze_rows: u64,
    pub late_rows: u64,
    pub quarantined: u64,
}

impl Commit {
    /// An empty commit for the version after `state`.
    pub fn next(state: &LakeState, operation: &str, processing_time: i64) -> Commit {
        Commit {
            format: BASE_FORMAT,
            version: state.version + 1,
            operation: operation.to_string(),
            processing_time: crate::time::format_micros(processing_time),
            evlake_version: env!("CARGO_PKG_VERSION").to_string(),
            inputs: Vec::new(),
            add: Vec::new(),
            remove: Vec::new(),
            max_event_time: state.max_event_time.map(crate::time::format_micros),
            watermark: state.watermark.map(crate::time::format_micros),
            settings: BTreeMap::new(),
            builds: Vec::new(),
            resends: BTreeMap::new(),
            id_conflicts: BTreeMap::new(),
            ids_on_other_dates: BTreeMap::new(),
            ids_indexed: false,
            ids_rebuilt: false,
            dropped: Vec::new(),
            retracted: Vec::new(),
            erased: None,
        }
    }
}

/// What a derived partition was built from (DESIGN.md §3).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Build {
    /// The derived table, e.g. `sessions`.
    pub table: String,
    pub partition: String,
    /// Input partition (`table/partition`) → its version when read.
    pub inputs: BTreeMap<String, u64>,
    /// Hash of the SQL text and settings that produced it.
    pub fingerprint: String,
}

/// An input file (or stdin) consumed by a commit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputBatch {
    /// Short id stored in bronze's `batch_id` column.
    pub batch_id: String,
    /// `blake3:<hex>` of the raw input bytes (before decompression).
    pub hash: String,
    /// The path as given on the command line, or `<stdin>`.
    pub source: String,
    pub bytes: u64,
    /// Lines read (from `resumed`'s line on, when set).
    pub lines: u64,
    pub events: u64,
    pub empty_lines: u64,
    pub quarantined: u64,
    /// The input is an ingested file that grew: only what follows the
    /// content already committed was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed: Option<Resumed>,
    /// For a plain file of 512 bytes or more: the content hash of its first
    /// 512 bytes, by which a file that begins with this batch's content is
    /// found under another name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// Whether its text (decompressed) ends with a newline: a compressed
    /// log that grows by appended members is read on from the first new
    /// member only then, since that member begins a line (none in commits
    /// written before this was kept: such a file is read whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_line: Option<bool>,
}

/// Where the read of a grown file began (see [`InputBatch::resumed`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Resumed {
    /// The hash of the committed batch whose content the file begins
    /// with.
    pub after: String,
    /// The byte and the line (counted from 1) the read began at: the
    /// start of the first line not committed whole.
    pub byte: u64,
    pub line: u64,
    /// `byte` counts the decompressed text of a compressed file: one whose
    /// text began with a plain batch's content (a log compressed by
    /// rotation after it was ingested).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decompressed: bool,
    /// The committed batch's source, when not the file's own name: a log
    /// renamed (`app.jsonl` → `app.jsonl.1`) or compressed by rotation
    /// after it was ingested.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

/// A file added to or removed from a table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileAction {
    /// Logical table name (`bronze_events`, `quarantine`, ...).
    pub table: String,
    /// Partition value (`2024-03-15`), empty for unpartitioned files.
    pub partition: String,
    /// Path relative to the lake root, `/`-separated.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_event_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_event_time: Option<String>,
    /// Rows whose partition was already closed when they arrived.
    #[serde(default)]
    pub late_rows: u64,
    /// Lateness (processing time − event time) of all rows, and of late rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lateness: Option<StoredHistogram>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_lateness: Option<StoredHistogram>,
    /// The file's bytes as committed: the first 16 hex digits of their
    /// BLAKE3, which [`write_commit`] reads the file for (None: a file
    /// committed by an evlake from before, or one it could not read).
    /// `check --deep` compares it, so damage that still decodes (a
    /// flipped bit inside a value) is found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
}

impl FileAction {
    /// A file with no event-time range or lateness (quarantine, derived tables).
    pub fn plain(table: &str, partition: &str, path: String, rows: u64, bytes: u64) -> FileAction {
        FileAction {
            table: table.to_string(),
            partition: partition.to_string(),
            path,
            rows,
            bytes,
            min_event_time: None,
            max_event_time: None,
            late_rows: 0,
            lateness: None,
            late_lateness: None,
            blake3: None,
        }
    }
}

/// The first 16 hex digits of the BLAKE3 of the file at `path`.
pub fn file_blake3(path: &std::path::Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(fs::File::open(path)?)?;
    Ok(hasher.finalize().to_hex()[..16].to_string())
}

fn commit_file_name(version: u64) -> String {
    format!("{version:020}.json")
}

fn checkpoint_file_name(version: u64) -> String {
    format!("{version:020}.checkpoint.json")
}

/// A checkpoint file: the state after one version of the log.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    format: u32,
    evlake_version: String,
    state: LakeState,
}

/// Write `state` as the checkpoint of its version (temp file, fsync,
/// rename: readers see a whole checkpoint or none).
pub fn write_checkpoint(lake: &Lake, state: &LakeState) -> Result<()> {
    let dir = lake.log_dir();
    let path = dir.join(checkpoint_file_name(state.version));
    let tmp = dir.join(format!(
        ".{}.checkpoint.tmp-{}",
        state.version,
        std::process::id()
    ));
    let retracted = state.batches.values().any(|b| b.retracted.is_some());
    let body = serde_json::to_vec(&Checkpoint {
        format: if retracted {
            CHECKPOINT_FORMAT_RETRACTED
        } else {
            CHECKPOINT_FORMAT
        },
        evlake_version: env!("CARGO_PKG_VERSION").to_string(),
        state: state.clone(),
    })?;
    {
        let mut f = fs::File::create(&tmp)
            .with_context(|| format!("failed to create `{}`", tmp.display()))?;
        f.write_all(&body)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("failed to write `{}`", tmp.display()))?;
    }
    fs::rename(&tmp, &path).with_context(|| format!("failed to write `{}`", path.display()))?;
    lake::fsync_dir(&dir)
}

/// Whether `version` (just committed) is followed by a checkpoint: every
/// [`CHECKPOINT_EVERY`] versions, or when the commits after the newest
/// checkpoint outweigh it (see [`CHECKPOINT_TAIL_BYTES`]).
fn checkpoint_due(lake: &Lake, version: u64) -> Result<bool> {
    if version.is_multiple_of(checkpoint_every()) {
        return Ok(true);
    }
    let dir = lake.log_dir();
    let (versions, checkpoints) = log_versions(lake)?;
    let newest = checkpoints.iter().copied().filter(|v| *v <= version).max();
    let size = |name: String| fs::metadata(dir.join(name)).map(|m| m.len()).unwrap_or(0);
    let base = newest.map_or(0, |v| size(checkpoint_file_name(v)));
    let tail: u64 = versions
        .iter()
        .filter(|v| newest.is_none_or(|c| **v > c) && **v <= version)
        .map(|v| size(commit_file_name(*v)))
        .sum();
    Ok(tail > base.max(CHECKPOINT_TAIL_BYTES))
}

/// After committing `version`: write its checkpoint if one is due. A
/// failure only costs later loads time, so it is a warning.
fn checkpoint_if_due(lake: &Lake, commit: &Commit) {
    let version = commit.version;
    match checkpoint_due(lake, version) {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            crate::commands::status(
                "Warning",
                format_args!("no checkpoint at version {version}: {e:#}"),
            );
            return;
        }
    }
    let written = LakeState::load(lake).and_then(|st| {
        if st.version != version {
            bail!("the log moved on to version {}", st.version);
        }
        write_checkpoint(lake, &st)?;
        remove_old_checkpoints(lake)
    });
    if let Err(e) = written {
        crate::commands::status(
            "Warning",
            format_args!("no checkpoint at version {version}: {e:#}"),
        );
        return;
    }
    let config = crate::config::Config::load(lake);
    let setting = config
        .as_ref()
        .ok()
        .and_then(|c| c.log.retention.clone())
        .unwrap_or_default();
    let retention = config.and_then(|c| c.log.retention_micros());
    // Measured back from this commit's processing time, the only clock
    // the lake's data goes by (so a pinned backfill prunes as it would
    // have run).
    let now = processing_micros(&commit.processing_time);
    let pruned = retention.and_then(|r| match r {
        Some(r) => Ok(Some(prune_commits(lake, now?.saturating_sub(r))?)),
        None => Ok(None),
    });
    match pruned {
        Ok(Some(n)) if n > 0 => crate::commands::status(
            "Pruned",
            format_args!(
                "{n} old commit(s) from the log; it keeps versions {} to {version} \
                 ([log] retention = {setting:?})",
                first_version(lake).unwrap_or(0),
            ),
        ),
        Ok(_) => {}
        Err(e) => crate::commands::status(
            "Warning",
            format_args!("old commits not removed ([log] retention): {e:#}"),
        ),
    }
}

/// A commit's `processing_time`, in microseconds.
fn processing_micros(text: &str) -> Result<i64> {
    crate::time::parse_instant(text).map_err(|e| anyhow::anyhow!("processing_time: {e}"))
}

/// With `[log] retention`: delete the oldest commits whose processing time
/// is before `before`, as long as the older of the two kept checkpoints
/// (readable) covers them, so either checkpoint still loads with the
/// commits after it. Oldest first, so a crash midway leaves the log
/// consecutive. Returns how many were deleted.
fn prune_commits(lake: &Lake, before: i64) -> Result<usize> {
    let (versions, checkpoints) = log_versions(lake)?;
    let [.., anchor, _] = checkpoints[..] else {
        return Ok(0);
    };
    if read_checkpoint(lake, anchor).is_none() {
        bail!("checkpoint {anchor} is not readable");
    }
    let dir = lake.log_dir();
    let mut pruned = 0;
    for v in versions.into_iter().take_while(|v| *v <= anchor) {
        let path = dir.join(commit_file_name(v));
        let text =
            fs::read(&path).with_context(|| format!("failed to read `{}`", path.display()))?;
        #[derive(Deserialize)]
        struct Head {
            processing_time: String,
        }
        let head: Head = serde_json::from_slice(&text)
            .with_context(|| format!("`{}`: not a valid commit", path.display()))?;
        let at = processing_micros(&head.processing_time)
            .with_context(|| format!("`{}`", path.display()))?;
        if at >= before {
            break;
        }
        fs::remove_file(&path).with_context(|| format!("failed to remove `{}`", path.display()))?;
        pruned += 1;
    }
    if pruned > 0 {
        lake::fsync_dir(&dir)?;
    }
    Ok(pruned)
}

/// How many checkpoints a lake keeps: the newest, and one before it (for
/// a reader that listed the log just before the newest was written, and
/// in case the newest is damaged).
pub const CHECKPOINTS_KEPT: usize = 2;

/// Delete every checkpoint but the newest [`CHECKPOINTS_KEPT`]. Each holds
/// the whole state (every file of every table), and they only save time:
/// a lake fed hourly for a year writes hundreds, megabytes each.
fn remove_old_checkpoints(lake: &Lake) -> Result<()> {
    let (_, checkpoints) = log_versions(lake)?;
    let dir = lake.log_dir();
    let old = checkpoints.len().saturating_sub(CHECKPOINTS_KEPT);
    for v in &checkpoints[..old] {
        let path = dir.join(checkpoint_file_name(*v));
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("failed to remove `{}`", path.display()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The checkpoint of `version`, if it is there and readable.
fn read_checkpoint(lake: &Lake, version: u64) -> Option<LakeState> {
    let text = fs::read(lake.log_dir().join(checkpoint_file_name(version))).ok()?;
    let cp: Checkpoint = serde_json::from_slice(&text).ok()?;
    let known = [CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_RETRACTED].contains(&cp.format);
    (known && cp.state.version == version).then_some(cp.state)
}

/// Write `commit` as the next version of the log. Fails if that version
/// already exists (the file is created with create-new semantics: written
/// to a temp file, fsynced, then hard-linked to its final name, which fails
/// rather than replaces).
pub fn write_commit(lake: &Lake, commit: &Commit) -> Result<()> {
    let dir = lake.log_dir();
    lake::create_dir_durable(&dir)?;
    let final_path = dir.join(commit_file_name(commit.version));
    let tmp = dir.join(format!(".{}.tmp-{}", commit.version, std::process::id()));
    // Each added file's hash, from its bytes on disk (written and synced
    // by now, so read from the page cache): what `check --deep` compares.
    let stamped;
    let commit = if commit.add.iter().any(|a| a.blake3.is_none()) {
        use rayon::prelude::*;
        let mut c = commit.clone();
        c.add
            .par_iter_mut()
            .filter(|a| a.blake3.is_none())
            // One that cannot be read is committed without: `check` finds
            // what is wrong with it by its size and rows.
            .for_each(|a| a.blake3 = file_blake3(&lake.path(&a.path)).ok());
        stamped = c;
        &stamped
    } else {
        commit
    };
    let mut body = serde_json::to_vec(commit)?;
    body.push(b'\n');
    {
        let mut f = fs::File::create(&tmp)
            .with_context(|| format!("failed to create `{}`", tmp.display()))?;
        f.write_all(&body)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("failed to write `{}`", tmp.display()))?;
    }
    let linked = fs::hard_link(&tmp, &final_path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            lake::fsync_dir(&dir)?;
            checkpoint_if_due(lake, commit);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "commit {} already exists in `{}`: another writer committed concurrently",
            commit.version,
            dir.display()
        ),
        Err(e) => Err(e).with_context(|| format!("failed to write `{}`", final_path.display())),
    }
}

/// The newest committed version (0 for an empty log), from the log
/// directory's listing alone.
pub fn latest_version(lake: &Lake) -> Result<u64> {
    Ok(log_versions(lake)?.0.last().copied().unwrap_or(0))
}

/// Whether the log still has commit `version` (and so, the log being
/// consecutive, every commit after it): `[log] retention` deletes the
/// oldest. One `stat`, where [`first_version`] lists the log.
pub fn has_commit(lake: &Lake, version: u64) -> bool {
    lake.log_dir().join(commit_file_name(version)).exists()
}

/// The first commit version the log still has: 1, or later once `[log]
/// retention` removed the oldest (1 for an empty log).
pub fn first_version(lake: &Lake) -> Result<u64> {
    Ok(log_versions(lake)?.0.first().copied().unwrap_or(1))
}

/// The log's commit versions (checked to be consecutive: 1..=n, or k..=n
/// once `[log] retention` removed the oldest) and its checkpoint versions,
/// each in ascending order.
fn log_versions(lake: &Lake) -> Result<(Vec<u64>, Vec<u64>)> {
    // A listing taken while a writer deletes old commits ([log] retention,
    // oldest first) may show a later one gone and an earlier one not: a
    // gap that is not in the log. List again until two listings agree.
    let mut previous = None;
    for _ in 0..100 {
        let listed = list_log(lake)?;
        let (versions, _) = &listed;
        let first = versions.first().copied().unwrap_or(1);
        let gap = versions
            .iter()
            .enumerate()
            .find(|(i, v)| **v != first + *i as u64)
            .map(|(i, v)| (first + i as u64, *v));
        match gap {
            None => return Ok(listed),
            Some((missing, found)) if previous.as_ref() == Some(&listed) => bail!(
                "commit log `{}` is missing version {missing} (found {found})",
                lake.log_dir().display()
            ),
            Some(_) => previous = Some(listed),
        }
    }
    bail!(
        "commit log `{}` kept changing while it was listed",
        lake.log_dir().display()
    )
}

/// One listing of the log directory: its commit and checkpoint versions,
/// each in ascending order.
fn list_log(lake: &Lake) -> Result<(Vec<u64>, Vec<u64>)> {
    let dir = lake.log_dir();
    let (mut versions, mut checkpoints) = (Vec::new(), Vec::new());
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((versions, checkpoints)),
        Err(e) => return Err(e).with_context(|| format!("failed to list `{}`", dir.display())),
    };
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        if let Some(stem) = name.strip_suffix(".checkpoint.json") {
            if let Ok(v) = stem.parse::<u64>() {
                checkpoints.push(v);
            }
        } else if let Some(stem) = name.strip_suffix(".json")
            && let Ok(v) = stem.parse::<u64>()
        {
            versions.push(v);
        }
    }
    versions.sort_unstable();
    checkpoints.sort_unstable();
    Ok((versions, checkpoints))
}

/// Commit `version` of the log.
pub fn read_commit(lake: &Lake, version: u64) -> Result<Commit> {
    let path = lake.log_dir().join(commit_file_name(version));
    let text = fs::read(&path).with_context(|| format!("failed to read `{}`", path.display()))?;
    // A newer evlake's commit is refused, not read as this one's: its
    // meaning may differ in ways unknown fields would hide (readers would
    // answer wrongly, writers would commit on top of it). Its format is
    // read alone only if it does not parse as a commit of this version.
    #[derive(Deserialize)]
    struct Head {
        format: u32,
    }
    let parsed = serde_json::from_slice::<Commit>(&text);
    let format = match &parsed {
        Ok(c) => Some(c.format),
        Err(_) => serde_json::from_slice::<Head>(&text).ok().map(|h| h.format),
    };
    if let Some(format) = format
        && format > FORMAT
    {
        bail!(
            "`{}` is in log format {format}, written by a newer evlake; this evlake ({}) \
             reads format {FORMAT} and older: upgrade evlake to use this lake",
            path.display(),
            env!("CARGO_PKG_VERSION")
        );
    }
    let commit = parsed.with_context(|| format!("`{}`: not a valid commit", path.display()))?;
    if commit.version != version {
        bail!("`{}`: says version {}", path.display(), commit.version);
    }
    Ok(commit)
}

/// Keep a copy of each state this thread loads, so the next load of the
/// same lake starts from it and reads only the commits after it, instead
/// of the checkpoint. For `run`, whose every step (ingest, silver, gold,
/// snapshots) loads the log: on an aged lake a checkpoint is megabytes
/// (a year of daily runs: 5.5 MB, ~25 ms to parse), a copy ~6 ms. A
/// command that loads once would only pay for the copy.
pub fn keep_loaded_states() {
    kept::enable();
}

/// States kept in memory between the loads of one thread (see
/// [`keep_loaded_states`]).
mod kept {
    use std::cell::{Cell, RefCell};
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;

    use super::{LakeState, commit_file_name};
    use crate::lake::Lake;

    /// The state a load returned last, the lake it is of, and which file
    /// its newest commit was.
    struct Kept {
        root: PathBuf,
        commit: FileId,
        state: LakeState,
    }

    // Per thread: `run` loads from its main thread, and tests on other
    // threads keep to their own lakes.
    thread_local! {
        static ON: Cell<bool> = const { Cell::new(false) };
        static KEPT: RefCell<Option<Kept>> = const { RefCell::new(None) };
    }

    pub fn enable() {
        ON.set(true);
    }

    /// Device, inode, size and modification time.
    type FileId = (u64, u64, u64, i64, i64);

    fn commit_id(lake: &Lake, version: u64) -> Option<FileId> {
        let m = std::fs::metadata(lake.log_dir().join(commit_file_name(version))).ok()?;
        Some((m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
    }

    /// Keep a copy of `state` (if enabled, and it has a commit).
    pub fn keep(lake: &Lake, state: &LakeState) {
        if !ON.get() || state.version == 0 {
            return;
        }
        let Some(commit) = commit_id(lake, state.version) else {
            return;
        };
        let kept = Kept {
            root: lake.root().to_path_buf(),
            commit,
            state: state.clone(),
        };
        KEPT.set(Some(kept));
    }

    /// The kept state of `lake`, if the log listed (`first..=newest`)
    /// still holds its newest commit, as the same file, and every commit
    /// after it: then it and those commits are the state at `newest`.
    pub fn take(lake: &Lake, first: u64, newest: u64) -> Option<LakeState> {
        let k = KEPT.take()?;
        let v = k.state.version;
        let usable = k.root == lake.root()
            && first <= v
            && v <= newest
            && commit_id(lake, v) == Some(k.commit);
        usable.then_some(k.state)
    }
}

/// The log changed while it was being read: list it again.
#[derive(Debug)]
struct LogMoved;

impl std::fmt::Display for LogMoved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the commit log changed while it was read")
    }
}

impl std::error::Error for LogMoved {}

/// Read every commit the log still has, in version order (those `[log]
/// retention` deletes meanwhile are left out).
pub fn read_commits(lake: &Lake) -> Result<Vec<Commit>> {
    let (versions, _) = log_versions(lake)?;
    let mut out = Vec::with_capacity(versions.len());
    for v in versions {
        match read_commit(lake, v) {
            Ok(c) => out.push(c),
            Err(_) if out.is_empty() && v < first_version(lake)? => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Where a committed input batch was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    pub version: u64,
    pub batch_id: String,
    pub source: String,
    /// The input's size, and its lines from its first (a resumed read
    /// counts the lines before it too): where a read of the same file,
    /// grown since, resumes. 0 in checkpoints written before these were
    /// kept (such a file is then read whole again).
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub lines: u64,
    /// The hash of its first bytes (see [`InputBatch::head`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// See [`InputBatch::ends_line`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_line: Option<bool>,
    /// The `retract` commit that removed its rows, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retracted: Option<u64>,
    /// Its commit's processing time (µs), and the events and quarantined
    /// lines it read; none in checkpoints written before these were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<u64>,
}

/// A partition of a table as the log describes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The last commit that added or removed files of this partition.
    pub version: u64,
    /// The last commit that removed files of this partition (0: none).
    /// Checkpoints written before this field existed read 0, which holds
    /// for `bronze_events` (no command removes its files; silver reads
    /// this only for bronze) but not for derived tables' older removals.
    #[serde(default)]
    pub last_removal: u64,
    /// Live files, keyed by lake-relative path.
    pub files: Files,
}

/// A partition's live files, keyed by lake-relative path: a map whose
/// entries are boxed. Most partitions hold one file or a few, and a B-tree
/// leaf has room for eleven entries, so with `FileAction`s inline each
/// partition's map took ~3 KB (a ten-year lake's 31k partitions: ~100 MB
/// of every command's memory, and the time to allocate and free it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Files(BTreeMap<String, Box<FileAction>>);

impl Files {
    pub fn insert(&mut self, path: String, file: FileAction) {
        self.0.insert(path, Box::new(file));
    }
    pub fn remove(&mut self, path: &str) -> Option<FileAction> {
        self.0.remove(path).map(|f| *f)
    }
    pub fn get(&self, path: &str) -> Option<&FileAction> {
        self.0.get(path).map(|f| &**f)
    }
    pub fn contains_key(&self, path: &str) -> bool {
        self.0.contains_key(path)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&String, &FileAction)> {
        self.0.iter().map(|(path, f)| (path, &**f))
    }
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }
    pub fn values(&self) -> impl Iterator<Item = &FileAction> {
        self.0.values().map(|f| &**f)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartitionState {
    pub fn rows(&self) -> u64 {
        self.files.values().map(|f| f.rows).sum()
    }
}

/// The replay of the commit log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LakeState {
    /// The newest commit version, 0 for an empty lake.
    pub version: u64,
    /// table → partition → state.
    pub tables: BTreeMap<String, BTreeMap<String, PartitionState>>,
    /// Input hash → the commit that consumed it.
    pub batches: HashMap<String, BatchRecord>,
    /// Largest committed event time, microseconds.
    pub max_event_time: Option<i64>,
    /// The committed watermark, microseconds.
    pub watermark: Option<i64>,
    /// Derived table → partition → (commit, build record) of its last build.
    pub builds: BTreeMap<String, BTreeMap<String, (u64, Build)>>,
    /// Number of commits.
    pub commits: u64,
    /// Per commit that added bronze rows: (version, its smallest event
    /// time). A state snapshot is invalid once a later commit adds an event
    /// at or before its as-of time.
    pub bronze_min_event_times: Vec<(u64, i64)>,
    /// `bronze_events` partition → its id conflicts, summed over commits.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub id_conflicts: BTreeMap<String, u64>,
    /// `bronze_events` partition → its `event_id`s also on another date.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ids_on_other_dates: BTreeMap<String, u64>,
    /// The id index (`crate::ids`) holds every bronze and side-output row.
    /// False for a lake that had rows before evlake kept the index (and
    /// for an empty one): the next ingest rebuilds it from bronze.
    #[serde(default)]
    pub id_index_covers: bool,
    /// The latest processing time of an ingest that added rows, and its
    /// commit (a later ingest pinned before it is warned about). A
    /// checkpoint from before this field reads none until the next ingest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_ingest: Option<(u64, i64)>,
    /// Users whose rows `erase` commits took out, summed over them, and
    /// the last such commit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub erased_users: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_erase: Option<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl LakeState {
    /// Every file the log references (lake-relative paths).
    pub fn live_files(&self) -> impl Iterator<Item = &String> {
        self.tables
            .values()
            .flat_map(|parts| parts.values())
            .flat_map(|p| p.files.keys())
    }

    /// The state at the newest version: the newest usable checkpoint plus
    /// the commits after it (or every commit). With
    /// [`keep_loaded_states`], the state this thread loaded last plus the
    /// commits after it, if it is of this lake and its newest commit is
    /// still in the log.
    pub fn load(lake: &Lake) -> Result<LakeState> {
        // A writer may write a checkpoint, remove an older one and prune
        // the commits before it between this listing and the reads: then
        // list again.
        let mut tries = 0;
        loop {
            tries += 1;
            match Self::load_listed(lake) {
                Err(e) if tries < 5 && e.downcast_ref::<LogMoved>().is_some() => continue,
                other => return other,
            }
        }
    }

    fn load_listed(lake: &Lake) -> Result<LakeState> {
        let (versions, checkpoints) = log_versions(lake)?;
        let newest = versions.last().copied().unwrap_or(0);
        let first = versions.first().copied().unwrap_or(1);
        let cached = kept::take(lake, first, newest);
        let from_cache = cached.is_some();
        let mut st = match cached {
            Some(st) => st,
            None => checkpoints
                .iter()
                .rev()
                .filter(|v| **v <= newest)
                .find_map(|v| read_checkpoint(lake, *v))
                .unwrap_or_default(),
        };
        // An error from a log that changed since it was listed is
        // `LogMoved` (list it again), not the error itself.
        let unless_moved = |e: anyhow::Error| match log_versions(lake) {
            Ok(now) if now != (versions.clone(), checkpoints.clone()) => LogMoved.into(),
            _ => e,
        };
        if st.version + 1 < first {
            // The commits before `first` were removed ([log] retention):
            // only a checkpoint from after them can stand for them.
            return Err(unless_moved(anyhow::anyhow!(
                "commit log `{}` starts at version {first} (older commits were removed by \
                 [log] retention) and has no readable checkpoint at or after version {}",
                lake.log_dir().display(),
                first - 1
            )));
        }
        for v in st.version + 1..=newest {
            match read_commit(lake, v) {
                Ok(c) => st.apply(c),
                Err(e) if !has_commit(lake, v) => return Err(unless_moved(e)),
                Err(e) => return Err(e),
            }
        }
        if from_cache {
            crate::fault::trace_note("log: from the state kept in memory");
        }
        kept::keep(lake, &st);
        Ok(st)
    }

    pub fn replay(commits: &[Commit]) -> LakeState {
        let mut st = LakeState::default();
        for c in commits {
            st.apply(c.clone());
        }
        st
    }

    /// Apply commit `c`, taking its parts (a load applies every commit
    /// after the checkpoint, and copying each file entry had been a third
    /// of loading the 5M bench lake's log).
    fn apply(&mut self, c: Commit) {
        self.version = c.version;
        self.commits += 1;
        // A compaction rewrites rows as they are: no partition gets a new
        // version or a removal, and no event is new (see `crate::compact`).
        let same_rows = c.operation == crate::compact::OPERATION;
        for b in c.builds {
            self.builds
                .entry(b.table.clone())
                .or_default()
                .insert(b.partition.clone(), (c.version, b));
        }
        for r in &c.remove {
            if let Some(p) = self
                .tables
                .get_mut(&r.table)
                .and_then(|t| t.get_mut(&r.partition))
            {
                p.files.remove(&r.path);
                // Removing rows changes the partition too (a recompute can
                // leave one empty), so what reads it becomes dirty.
                if !same_rows {
                    p.version = c.version;
                    p.last_removal = c.version;
                }
            }
        }
        // A retraction or an erasure takes events away: a snapshot at or
        // after the earliest of them is as invalid as if one had been
        // added there.
        let retract = crate::removal::removes_rows(&c.operation);
        let bronze_min = c
            .add
            .iter()
            .chain(c.remove.iter().filter(|_| retract))
            .filter(|a| a.table == crate::bronze::TABLE)
            .filter_map(|a| a.min_event_time.as_deref())
            .filter_map(|t| crate::time::parse_instant(t).ok())
            .min();
        if let Some(t) = bronze_min.filter(|_| !same_rows) {
            self.bronze_min_event_times.push((c.version, t));
        }
        let adds_rows = c
            .add
            .iter()
            .any(|a| a.table == crate::bronze::TABLE || a.table == crate::bronze::LATE_TABLE);
        for a in c.add {
            let p = self
                .tables
                .entry(a.table.clone())
                .or_default()
                .entry(a.partition.clone())
                .or_default();
            if !same_rows {
                p.version = c.version;
            }
            p.files.insert(a.path.clone(), a);
        }
        for t in &c.dropped {
            self.builds.remove(t);
            self.tables.remove(t);
        }
        for (date, n) in c.id_conflicts {
            if retract {
                // (Counted again from the rows left: the new count.)
                if n == 0 {
                    self.id_conflicts.remove(&date);
                } else {
                    self.id_conflicts.insert(date, n);
                }
            } else {
                *self.id_conflicts.entry(date).or_default() += n;
            }
        }
        for (date, n) in c.ids_on_other_dates {
            if retract {
                // (Counted again: the new count, as for conflicts.)
                if n == 0 {
                    self.ids_on_other_dates.remove(&date);
                } else {
                    self.ids_on_other_dates.insert(date, n);
                }
            } else {
                *self.ids_on_other_dates.entry(date).or_default() += n;
            }
        }
        if c.ids_rebuilt {
            self.id_index_covers = true;
        } else if (c.operation == "ingest" && adds_rows && !c.ids_indexed)
            || (retract
                && c.remove.iter().any(|f| {
                    f.table == crate::bronze::TABLE || f.table == crate::bronze::LATE_TABLE
                }))
        {
            // (`reconcile` moves rows the index already holds; the index
            // still holds a retracted or erased row's: the next ingest
            // rebuilds it. One that took out only quarantined lines
            // leaves it as it was.)
            self.id_index_covers = false;
        }
        if let Some(e) = &c.erased {
            self.erased_users += e.users;
            self.last_erase = Some(c.version);
        }
        for r in &c.retracted {
            if let Some(b) = self.batches.get_mut(&r.hash) {
                b.retracted = Some(c.version);
            }
        }
        if c.operation == "ingest" && adds_rows {
            let t = crate::time::parse_instant(&c.processing_time).ok();
            if let Some(t) = t.filter(|t| self.latest_ingest.is_none_or(|(_, l)| *t >= l)) {
                self.latest_ingest = Some((c.version, t));
            }
        }
        let processing_time = crate::time::parse_instant(&c.processing_time).ok();
        for b in c.inputs {
            let before = b.resumed.as_ref().map_or(0, |r| r.line - 1);
            self.batches.insert(
                b.hash,
                BatchRecord {
                    version: c.version,
                    batch_id: b.batch_id,
                    source: b.source,
                    bytes: b.bytes,
                    lines: before + b.lines,
                    head: b.head,
                    ends_line: b.ends_line,
                    retracted: None,
                    processing_time,
                    events: Some(b.events),
                    quarantined: Some(b.quarantined),
                },
            );
        }
        if let Some(t) = c
            .max_event_time
            .as_deref()
            .and_then(|s| crate::time::parse_instant(s).ok())
        {
            self.max_event_time = Some(self.max_event_time.map_or(t, |m| m.max(t)));
        }
        if let Some(w) = c
            .watermark
            .as_deref()
            .and_then(|s| crate::time::parse_instant(s).ok())
        {
            self.watermark = Some(self.watermark.map_or(w, |m| m.max(w)));
        }
    }

    /// Partitions of a table (empty when the table has no files yet).
    pub fn partitions(&self, table: &str) -> impl Iterator<Item = (&String, &PartitionState)> {
        self.tables.get(table).into_iter().flat_map(|t| t.iter())
    }

    /// Is this lake-relative path a live file of any table?
    pub fn references(&self, rel: &str) -> bool {
        self.tables
            .values()
            .flat_map(|t| t.values())
            .any(|p| p.files.contains_key(rel))
    }
}

/// Delete what a crashed writer left behind: everything in staging, and
/// files inside table directories that no commit references. Returns the
/// lake-relative paths removed. Call only while holding the write lock.
///
/// Listing every table directory is skipped when the last writer finished
/// cleanly ([`Lake::known_clean`]) and left nothing in staging: on a lake
/// fed hourly for a year it is tens of thousands of files, ~40 ms of every
/// writer (`run` has three or four). Every 50th version lists them anyway,
/// so a file put there by hand (or left by an older evlake, which does not
/// keep the mark) goes within 50 commits.
pub fn clean_orphans(lake: &Lake, state: &LakeState, table_dirs: &[&str]) -> Result<Vec<String>> {
    let staging = lake.staging_dir();
    let killed = fs::read_dir(&staging).is_ok_and(|mut d| d.next().is_some());
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("failed to clean `{}`", staging.display()))?;
    }
    let mut removed = Vec::new();
    if lake.known_clean() && !killed && !state.version.is_multiple_of(CHECKPOINT_EVERY) {
        return Ok(removed);
    }
    for rel in orphans(lake, state, table_dirs)? {
        let p = lake.path(&rel);
        fs::remove_file(&p)
            .with_context(|| format!("failed to remove orphan `{}`", p.display()))?;
        removed.push(rel);
    }
    lake.mark_clean();
    Ok(removed)
}

/// What a writer that failed between publishing files and finishing its
/// commit left behind, removed by that writer while it still holds the
/// lock (see [`lake::WriteLock`]): the files of the lake's table
/// directories that no commit references, by the log as it is on disk (a
/// commit written before the failure keeps its files). Best effort: what
/// stays, the next writer removes.
pub fn clean_after_failed_write(lake: &Lake) {
    if let Ok(state) = LakeState::load(lake) {
        let _ = clean_orphans(lake, &state, &crate::ingest::table_dirs());
    }
}

/// The files under `table_dirs` that no commit up to `state` references
/// (relative to the lake), by listing every one of those directories.
pub fn orphans(lake: &Lake, state: &LakeState, table_dirs: &[&str]) -> Result<Vec<String>> {
    let live: std::collections::HashSet<&str> = state.live_files().map(String::as_str).collect();
    let mut out = Vec::new();
    for dir in table_dirs {
        for rel in lake::list_files(lake.root(), &lake.path(dir))? {
            if !live.contains(rel.as_str()) {
                out.push(rel);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(state: &LakeState, i: u64) -> Commit {
        // An hour apart, for `[log] retention`.
        let mut c = Commit::next(
            state,
            "ingest",
            1_700_000_000_000_000 + i as i64 * 3_600_000_000,
        );
        let partition = format!("2024-03-{:02}", 1 + i % 3);
        c.add.push(FileAction::plain(
            crate::bronze::TABLE,
            &partition,
            format!("bronze/events/event_date={partition}/part-{i}.parquet"),
            i,
            10 * i,
        ));
        if i.is_multiple_of(4) {
            // Replace an earlier file, as a recompute does.
            let old = &state.tables[crate::bronze::TABLE];
            let (p, ps) = old.iter().next().unwrap();
            let f = ps.files.values().next().unwrap().clone();
            assert_eq!(&f.partition, p);
            c.remove.push(f);
        }
        c.inputs.push(InputBatch {
            batch_id: format!("b{i}"),
            hash: format!("blake3:{i}"),
            source: format!("in-{i}.jsonl"),
            bytes: i,
            lines: i,
            events: i,
            empty_lines: 0,
            quarantined: 0,
            resumed: None,
            head: None,
            ends_line: None,
        });
        c
    }

    /// Commit `n` versions through `write_commit` (which checkpoints).
    fn grow(lake: &Lake, n: u64) {
        for _ in 0..n {
            let st = LakeState::load(lake).unwrap();
            write_commit(lake, &commit(&st, st.version + 1)).unwrap();
        }
    }

    #[test]
    fn a_removal_is_recorded_on_its_partition() {
        let mut st = LakeState::default();
        let mut commits = Vec::new();
        for i in 1..=5 {
            let c = commit(&st, i);
            st.apply(c.clone());
            commits.push(c);
        }
        // Commit 4 removed one file: only its partition records it.
        let removed = &commits[3].remove[0].partition;
        for (p, ps) in &st.tables[crate::bronze::TABLE] {
            let want = if p == removed { 4 } else { 0 };
            assert_eq!(ps.last_removal, want, "{p}");
        }
        assert_eq!(LakeState::replay(&commits), st);
    }

    #[test]
    fn loading_from_a_checkpoint_equals_replaying_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        grow(&lake, CHECKPOINT_EVERY * 2 + 7);
        let (_, checkpoints) = log_versions(&lake).unwrap();
        assert_eq!(checkpoints, vec![CHECKPOINT_EVERY, CHECKPOINT_EVERY * 2]);
        let replayed = LakeState::replay(&read_commits(&lake).unwrap());
        assert_eq!(replayed.version, CHECKPOINT_EVERY * 2 + 7);
        assert_eq!(LakeState::load(&lake).unwrap(), replayed);
        // The checkpoint holds the state at its version, not later.
        let at = read_checkpoint(&lake, CHECKPOINT_EVERY).unwrap();
        let commits = read_commits(&lake).unwrap();
        assert_eq!(at, LakeState::replay(&commits[..CHECKPOINT_EVERY as usize]));
        // Only the newest two are kept; every commit stays.
        grow(&lake, CHECKPOINT_EVERY * 2);
        let (versions, checkpoints) = log_versions(&lake).unwrap();
        assert_eq!(
            checkpoints,
            vec![CHECKPOINT_EVERY * 3, CHECKPOINT_EVERY * 4]
        );
        assert_eq!(versions.len() as u64, CHECKPOINT_EVERY * 4 + 7);
        assert_eq!(
            LakeState::load(&lake).unwrap(),
            LakeState::replay(&read_commits(&lake).unwrap())
        );
    }

    #[test]
    fn a_partitions_files_keep_their_checkpoint_form() {
        // Checkpoints written before the files were boxed read the same,
        // and new ones are what older readers expect: a JSON object keyed
        // by path.
        let text = r#"{"version":3,"last_removal":2,"files":{"silver/events/event_date=2024-03-15/a.parquet":{"table":"events","partition":"2024-03-15","path":"silver/events/event_date=2024-03-15/a.parquet","rows":7,"bytes":99,"late_rows":0}}}"#;
        let p: PartitionState = serde_json::from_str(text).unwrap();
        let path = "silver/events/event_date=2024-03-15/a.parquet";
        assert_eq!((p.version, p.last_removal, p.rows()), (3, 2, 7));
        assert_eq!(
            p.files.get(path),
            Some(&FileAction::plain(
                "events",
                "2024-03-15",
                path.into(),
                7,
                99
            ))
        );
        assert_eq!(serde_json::to_string(&p).unwrap(), text);
    }

    #[test]
    fn heavy_commits_bring_the_next_checkpoint_forward() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        // Small commits: only the periodic checkpoint.
        grow(&lake, 10);
        assert_eq!(log_versions(&lake).unwrap().1, Vec::<u64>::new());
        // Commits that each list many files (as a full rebuild does): a
        // checkpoint once they outweigh the floor, then once they outweigh
        // that checkpoint.
        let heavy = |lake: &Lake| {
            let st = LakeState::load(lake).unwrap();
            let mut c = commit(&st, st.version + 1);
            for f in 0..2000 {
                c.add.push(FileAction::plain(
                    "events",
                    "2024-03-01",
                    format!(
                        "silver/events/event_date=2024-03-01/part-{}-{f:05}.parquet",
                        c.version
                    ),
                    1,
                    1,
                ));
            }
            write_commit(lake, &c).unwrap();
            let size = fs::metadata(lake.log_dir().join(commit_file_name(c.version)))
                .unwrap()
                .len();
            (c.version, size)
        };
        let mut tail = 0;
        let first = loop {
            let (v, size) = heavy(&lake);
            tail += size;
            let (_, checkpoints) = log_versions(&lake).unwrap();
            if tail > CHECKPOINT_TAIL_BYTES {
                assert_eq!(checkpoints, vec![v], "tail {tail}");
                break v;
            }
            assert!(
                checkpoints.is_empty(),
                "early checkpoint at {v} (tail {tail})"
            );
        };
        assert!(first < CHECKPOINT_EVERY);
        let base = fs::metadata(lake.log_dir().join(checkpoint_file_name(first)))
            .unwrap()
            .len();
        let mut tail = 0;
        loop {
            let (v, size) = heavy(&lake);
            tail += size;
            let (_, checkpoints) = log_versions(&lake).unwrap();
            if tail > base {
                assert_eq!(checkpoints, vec![first, v]);
                break;
            }
            assert_eq!(checkpoints, vec![first], "early checkpoint at {v}");
        }
        let replayed = LakeState::replay(&read_commits(&lake).unwrap());
        assert_eq!(LakeState::load(&lake).unwrap(), replayed);
    }

    /// Kept states (`run`'s steps): a load starts from the last one only
    /// when it is of the same lake and its newest commit is still the same
    /// file, and then equals the replay. (Turns keeping on for this test's
    /// thread.)
    #[test]
    fn a_kept_state_is_used_only_for_its_own_log() {
        keep_loaded_states();
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let (a, b) = (Lake::new(dirs[0].path()), Lake::new(dirs[1].path()));
        let replay = |lake: &Lake| LakeState::replay(&read_commits(lake).unwrap());
        grow(&a, 5);
        assert_eq!(LakeState::load(&a).unwrap(), replay(&a));
        // Commits written since (by this process or another) are applied.
        grow(&a, 3);
        let kept = LakeState::load(&a).unwrap();
        assert_eq!(kept, replay(&a));
        // Used: with the commits before it gone and no checkpoint, only
        // the kept state can stand for them.
        for v in 1..kept.version {
            fs::remove_file(a.log_dir().join(commit_file_name(v))).unwrap();
        }
        grow(&a, 2);
        let mut want = kept.clone();
        for c in read_commits(&a).unwrap() {
            if c.version > kept.version {
                want.apply(c);
            }
        }
        assert_eq!(LakeState::load(&a).unwrap(), want);
        // A lake replaced at the same path, with other commits of the same
        // versions, is loaded from its own log.
        let a_state = LakeState::load(&a).unwrap();
        fs::remove_dir_all(a.root()).unwrap();
        let mut st = LakeState::default();
        for i in 1..=a_state.version + 1 {
            let mut c = commit(&st, i);
            c.add[0].path = format!("bronze/events/other-{i}.parquet");
            c.add[0].rows += 1000;
            write_commit(&a, &c).unwrap();
            st.apply(c);
        }
        let loaded = LakeState::load(&a).unwrap();
        assert_eq!(loaded, st);
        assert_ne!(loaded.tables, a_state.tables);
        // Another lake's state is not used.
        grow(&b, 12);
        assert_eq!(LakeState::load(&b).unwrap(), replay(&b));
        // Nor a state whose newest commit is gone (pruned): the log is
        // then loaded as it is, here without the checkpoint it needs.
        let mut st = LakeState::load(&a).unwrap();
        let kept = st.version;
        for _ in 0..2 {
            let c = commit(&st, st.version + 1);
            write_commit(&a, &c).unwrap();
            st.apply(c);
        }
        for v in 1..=kept {
            fs::remove_file(a.log_dir().join(commit_file_name(v))).unwrap();
        }
        let err = LakeState::load(&a).unwrap_err();
        assert!(
            format!("{err:#}").contains("no readable checkpoint"),
            "{err:#}"
        );
    }

    /// A commit records each added file's BLAKE3, from the file on disk,
    /// keeps one it was given, and commits a file it cannot read without.
    #[test]
    fn a_commit_records_each_added_files_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let lake = Lake::new(tmp.path().join("lake"));
        fs::create_dir_all(lake.path("bronze")).unwrap();
        fs::write(lake.path("bronze/a.parquet"), b"abc").unwrap();
        let mut c = Commit::next(&LakeState::default(), "ingest", 0);
        let table = crate::bronze::TABLE;
        c.add.push(FileAction::plain(
            table,
            "",
            "bronze/a.parquet".into(),
            1,
            3,
        ));
        c.add.push(FileAction::plain(
            table,
            "",
            "bronze/gone.parquet".into(),
            1,
            3,
        ));
        let mut given = FileAction::plain(table, "", "bronze/b.parquet".into(), 1, 3);
        given.blake3 = Some("0123456789abcdef".into());
        c.add.push(given);
        write_commit(&lake, &c).unwrap();
        let read = read_commit(&lake, 1).unwrap();
        let hashes: Vec<Option<&str>> = read.add.iter().map(|a| a.blake3.as_deref()).collect();
        // BLAKE3("abc"), as published.
        assert_eq!(
            hashes,
            [Some("6437b3ac38465133"), None, Some("0123456789abcdef")]
        );
        assert_eq!(
            file_blake3(&lake.path("bronze/a.parquet")).unwrap(),
            "6437b3ac38465133"
        );
        // A commit from before the hash reads as one without.
        let old = r#"{"table":"t","partition":"","path":"p","rows":1,"bytes":1}"#;
        assert_eq!(
            serde_json::from_str::<FileAction>(old).unwrap().blake3,
            None
        );
    }

    /// A `retract` commit marks its batches retracted, takes its removed
    /// bronze rows' earliest event time for snapshot invalidation, stops
    /// the id index covering bronze, and replaces (not adds to) the
    /// counts of the dates it recounted. It is written in the newer
    /// format, and so is the checkpoint of a state with a retracted
    /// batch, which this evlake reads back.
    #[test]
    fn a_retract_commit_marks_its_batch_and_replaces_the_recounted_dates() {
        let mut ingest = Commit::next(&LakeState::default(), "ingest", 0);
        ingest.inputs.push(InputBatch {
            batch_id: "b1".into(),
            hash: "blake3:b1".into(),
            source: "in.jsonl".into(),
            bytes: 10,
            lines: 2,
            events: 2,
            empty_lines: 0,
            quarantined: 0,
            resumed: None,
            head: None,
            ends_line: None,
        });
        let mut f = FileAction::plain(crate::bronze::TABLE, "2024-03-15", "a".into(), 2, 1);
        f.min_event_time = Some("2024-03-15T10:00:00Z".into());
        ingest.add.push(f.clone());
        ingest.ids_indexed = true;
        ingest.ids_rebuilt = true;
        ingest.id_conflicts.insert("2024-03-15".into(), 1);
        ingest.ids_on_other_dates.insert("2024-03-15".into(), 1);
        let st = LakeState::replay(&[ingest.clone()]);
        assert!(st.id_index_covers);
        let mut r = Commit::next(&st, crate::retract::OPERATION, 0);
        r.format = ROW_REMOVAL_FORMAT;
        r.remove.push(f);
        r.retracted.push(RetractedBatch {
            hash: "blake3:b1".into(),
            batch_id: "b1".into(),
            source: "in.jsonl".into(),
            ingested_in: 1,
            bronze_rows: 2,
            late_rows: 0,
            quarantined: 0,
        });
        r.id_conflicts.insert("2024-03-15".into(), 0);
        r.ids_on_other_dates.insert("2024-03-15".into(), 0);
        let after = LakeState::replay(&[ingest, r.clone()]);
        assert_eq!(after.batches["blake3:b1"].retracted, Some(2));
        assert!(!after.id_index_covers);
        assert!(after.id_conflicts.is_empty() && after.ids_on_other_dates.is_empty());
        let p = &after.tables[crate::bronze::TABLE]["2024-03-15"];
        assert!(p.files.is_empty());
        assert_eq!((p.version, p.last_removal), (2, 2));
        let t = crate::time::parse_instant("2024-03-15T10:00:00Z").unwrap();
        assert_eq!(after.bronze_min_event_times, vec![(1, t), (2, t)]);

        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        fs::create_dir_all(lake.log_dir()).unwrap();
        write_commit(&lake, &r).unwrap();
        let text = fs::read_to_string(lake.log_dir().join(commit_file_name(2))).unwrap();
        assert!(text.contains("\"format\":2"), "{text}");
        assert_eq!(read_commit(&lake, 2).unwrap(), r);
        write_checkpoint(&lake, &after).unwrap();
        let text = fs::read(lake.log_dir().join(checkpoint_file_name(2))).unwrap();
        let cp: Checkpoint = serde_json::from_slice(&text).unwrap();
        assert_eq!(cp.format, CHECKPOINT_FORMAT_RETRACTED);
        assert_eq!(read_checkpoint(&lake, 2), Some(after));
    }

    /// An `erase` commit counts its users in the state, with no id; one
    /// that took out bronze rows marks the id index stale and the
    /// snapshots after its files' earliest event invalid, one that took
    /// out quarantined lines only does neither.
    #[test]
    fn an_erase_commit_counts_its_users_and_stales_the_index_only_for_bronze_rows() {
        let mut ingest = Commit::next(&LakeState::default(), "ingest", 0);
        let mut f = FileAction::plain(crate::bronze::TABLE, "2024-03-15", "a".into(), 2, 1);
        f.min_event_time = Some("2024-03-15T10:00:00Z".into());
        let q = FileAction::plain(crate::ingest::QUARANTINE_TABLE, "", "q".into(), 3, 1);
        ingest.add = vec![f.clone(), q.clone()];
        ingest.ids_indexed = true;
        ingest.ids_rebuilt = true;
        let st = LakeState::replay(&[ingest.clone()]);
        let erase = |st: &LakeState, remove: FileAction| {
            let mut e = Commit::next(st, crate::erase::OPERATION, 0);
            e.format = ROW_REMOVAL_FORMAT;
            e.remove.push(remove);
            e.erased = Some(Erasure {
                users: 2,
                ..Erasure::default()
            });
            e
        };
        let e1 = erase(&st, q);
        let once = LakeState::replay(&[ingest.clone(), e1.clone()]);
        assert!(once.id_index_covers, "only quarantined lines went");
        assert_eq!(once.bronze_min_event_times.len(), 1);
        assert_eq!((once.erased_users, once.last_erase), (2, Some(2)));
        let e2 = erase(&once, f);
        let twice = LakeState::replay(&[ingest, e1, e2]);
        assert!(!twice.id_index_covers);
        assert_eq!(twice.bronze_min_event_times.len(), 2);
        assert_eq!((twice.erased_users, twice.last_erase), (4, Some(3)));
    }

    #[test]
    fn unusable_checkpoints_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        grow(&lake, CHECKPOINT_EVERY + 3);
        let replayed = LakeState::replay(&read_commits(&lake).unwrap());
        let path = lake.log_dir().join(checkpoint_file_name(CHECKPOINT_EVERY));
        // Torn or foreign: replay from the start.
        fs::write(&path, b"{\"format\": 1, \"state\": ").unwrap();
        assert_eq!(LakeState::load(&lake).unwrap(), replayed);
        // A checkpoint claiming a version it is not named for.
        let commits = read_commits(&lake).unwrap();
        fs::write(
            &path,
            serde_json::to_vec(&Checkpoint {
                format: CHECKPOINT_FORMAT,
                evlake_version: String::new(),
                state: LakeState::replay(&commits[..7]),
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(LakeState::load(&lake).unwrap(), replayed);
        // A checkpoint beyond the log (commits removed by hand) is not used.
        let ahead = LakeState {
            version: CHECKPOINT_EVERY + 10,
            ..replayed.clone()
        };
        write_checkpoint(&lake, &ahead).unwrap();
        fs::remove_file(&path).unwrap();
        assert_eq!(LakeState::load(&lake).unwrap(), replayed);
    }

    #[test]
    fn retention_removes_the_old_commits_a_checkpoint_covers() {
        let (kept, pruned) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (kept, pruned) = (Lake::new(kept.path()), Lake::new(pruned.path()));
        // Commits an hour apart: at checkpoint 100, commits before hour
        // 30 are old; the older checkpoint (50) bounds what goes. At 150,
        // 30..79 go too, though the older checkpoint is 100.
        fs::write(
            pruned.path(crate::config::FILE),
            "[log]\nretention = \"70h\"\n",
        )
        .unwrap();
        for lake in [&kept, &pruned] {
            grow(lake, CHECKPOINT_EVERY * 2);
        }
        assert_eq!(first_version(&pruned).unwrap(), 30);
        assert_eq!(first_version(&kept).unwrap(), 1);
        assert_eq!(
            LakeState::load(&pruned).unwrap(),
            LakeState::load(&kept).unwrap()
        );
        for lake in [&kept, &pruned] {
            grow(lake, CHECKPOINT_EVERY + 5);
        }
        let (versions, checkpoints) = log_versions(&pruned).unwrap();
        assert_eq!(
            checkpoints,
            vec![CHECKPOINT_EVERY * 2, CHECKPOINT_EVERY * 3]
        );
        assert_eq!(versions.first(), Some(&80));
        assert_eq!(versions.last(), Some(&(CHECKPOINT_EVERY * 3 + 5)));
        let whole = LakeState::replay(&read_commits(&kept).unwrap());
        assert_eq!(LakeState::load(&pruned).unwrap(), whole);
        // The newest checkpoint damaged: the older one and the commits
        // after it still stand for the state.
        let newest = pruned
            .log_dir()
            .join(checkpoint_file_name(CHECKPOINT_EVERY * 3));
        fs::write(&newest, b"{").unwrap();
        assert_eq!(LakeState::load(&pruned).unwrap(), whole);
        // Both damaged: no state, and the error says why.
        let older = pruned
            .log_dir()
            .join(checkpoint_file_name(CHECKPOINT_EVERY * 2));
        fs::write(&older, b"{").unwrap();
        let err = format!("{:#}", LakeState::load(&pruned).unwrap_err());
        assert!(
            err.contains("starts at version 80") && err.contains("no readable checkpoint"),
            "{err}"
        );
        // Nothing is pruned past a checkpoint it cannot read.
        assert!(prune_commits(&pruned, i64::MAX).is_err());
        assert_eq!(first_version(&pruned).unwrap(), 80);
    }

    #[test]
    fn readers_load_every_state_while_a_writer_checkpoints_and_prunes() {
        // The state after each version, from a log that keeps every commit.
        let reference = tempfile::tempdir().unwrap();
        let reference = Lake::new(reference.path());
        let n = CHECKPOINT_EVERY * 5 + 3;
        grow(&reference, n);
        let commits = read_commits(&reference).unwrap();
        let mut states = vec![LakeState::default()];
        for c in &commits {
            let mut st = states.last().unwrap().clone();
            st.apply(c.clone());
            states.push(st);
        }
        // The same commits written with retention 0 (every commit a
        // checkpoint covers goes), while two readers load over and over:
        // each load is some version's state, whole.
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        fs::write(lake.path(crate::config::FILE), "[log]\nretention = \"0\"\n").unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut seen = std::collections::BTreeSet::new();
                        while !done.load(std::sync::atomic::Ordering::Relaxed) {
                            let st = LakeState::load(&lake).unwrap_or_else(|e| panic!("{e:#}"));
                            assert!(st == states[st.version as usize], "version {}", st.version);
                            seen.insert(st.version);
                        }
                        seen.len()
                    })
                })
                .collect();
            for c in &commits {
                write_commit(&lake, c).unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            for r in readers {
                assert!(r.join().unwrap() > 1);
            }
        });
        assert_eq!(first_version(&lake).unwrap(), CHECKPOINT_EVERY * 4 + 1);
        assert_eq!(LakeState::load(&lake).unwrap(), states[n as usize]);
    }

    #[test]
    fn a_gap_in_the_log_is_an_error_even_after_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        grow(&lake, CHECKPOINT_EVERY + 2);
        fs::remove_file(lake.log_dir().join(commit_file_name(3))).unwrap();
        let err = LakeState::load(&lake).unwrap_err();
        assert!(format!("{err:#}").contains("missing version 3"), "{err:#}");
    }
}
