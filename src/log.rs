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
use crate::lateness::LatenessHistogram;

/// The on-disk format version of commit files.
pub const FORMAT: u32 = 1;

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
}

impl Commit {
    /// An empty commit for the version after `state`.
    pub fn next(state: &LakeState, operation: &str, processing_time: i64) -> Commit {
        Commit {
            format: FORMAT,
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
    pub lines: u64,
    pub events: u64,
    pub empty_lines: u64,
    pub quarantined: u64,
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
    pub lateness: Option<LatenessHistogram>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_lateness: Option<LatenessHistogram>,
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
        }
    }
}

fn commit_file_name(version: u64) -> String {
    format!("{version:020}.json")
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
        Ok(()) => lake::fsync_dir(&dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "commit {} already exists in `{}`: another writer committed concurrently",
            commit.version,
            dir.display()
        ),
        Err(e) => Err(e).with_context(|| format!("failed to write `{}`", final_path.display())),
    }
}

/// Read every commit in version order.
pub fn read_commits(lake: &Lake) -> Result<Vec<Commit>> {
    let dir = lake.log_dir();
    let mut versions = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("failed to list `{}`", dir.display())),
    };
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".json")
            && !name.starts_with('.')
            && let Ok(v) = stem.parse::<u64>()
        {
            versions.push(v);
        }
    }
    versions.sort_unstable();
    let mut commits = Vec::with_capacity(versions.len());
    for (i, v) in versions.iter().enumerate() {
        if *v != i as u64 + 1 {
            bail!(
                "commit log `{}` is missing version {} (found {v})",
                dir.display(),
                i + 1
            );
        }
        let path = dir.join(commit_file_name(*v));
        let text =
            fs::read(&path).with_context(|| format!("failed to read `{}`", path.display()))?;
        let commit: Commit = serde_json::from_slice(&text)
            .with_context(|| format!("`{}`: not a valid commit", path.display()))?;
        if commit.version != *v {
            bail!("`{}`: says version {}", path.display(), commit.version);
        }
        commits.push(commit);
    }
    Ok(commits)
}

/// Where a committed input batch was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord {
    pub version: u64,
    pub batch_id: String,
    pub source: String,
}

/// A partition of a table as the log describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionState {
    /// The last commit that added or removed files of this partition.
    pub version: u64,
    /// Live files, keyed by lake-relative path.
    pub files: BTreeMap<String, FileAction>,
}

impl PartitionState {
    pub fn rows(&self) -> u64 {
        self.files.values().map(|f| f.rows).sum()
    }
}

/// The replay of the commit log.
#[derive(Debug, Clone, Default)]
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
}

impl LakeState {
    pub fn load(lake: &Lake) -> Result<LakeState> {
        Ok(Self::replay(&read_commits(lake)?))
    }

    pub fn replay(commits: &[Commit]) -> LakeState {
        let mut st = LakeState::default();
        for c in commits {
            st.apply(c);
        }
        st
    }

    fn apply(&mut self, c: &Commit) {
        self.version = c.version;
        self.commits += 1;
        for b in &c.builds {
            self.builds
                .entry(b.table.clone())
                .or_default()
                .insert(b.partition.clone(), (c.version, b.clone()));
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
                p.version = c.version;
            }
        }
        let bronze_min = c
            .add
            .iter()
            .filter(|a| a.table == crate::bronze::TABLE)
            .filter_map(|a| a.min_event_time.as_deref())
            .filter_map(|t| crate::time::parse_instant(t).ok())
            .min();
        if let Some(t) = bronze_min {
            self.bronze_min_event_times.push((c.version, t));
        }
        for a in &c.add {
            let p = self
                .tables
                .entry(a.table.clone())
                .or_default()
                .entry(a.partition.clone())
                .or_default();
            p.version = c.version;
            p.files.insert(a.path.clone(), a.clone());
        }
        for b in &c.inputs {
            self.batches.insert(
                b.hash.clone(),
                BatchRecord {
                    version: c.version,
                    batch_id: b.batch_id.clone(),
                    source: b.source.clone(),
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
pub fn clean_orphans(lake: &Lake, state: &LakeState, table_dirs: &[&str]) -> Result<Vec<String>> {
    let staging = lake.staging_dir();
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("failed to clean `{}`", staging.display()))?;
    }
    let mut live: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for t in state.tables.values() {
        for p in t.values() {
            live.extend(p.files.keys().map(String::as_str));
        }
    }
    let mut removed = Vec::new();
    for dir in table_dirs {
        for rel in lake::list_files(lake.root(), &lake.path(dir))? {
            if !live.contains(rel.as_str()) {
                let p = lake.path(&rel);
                fs::remove_file(&p)
                    .with_context(|| format!("failed to remove orphan `{}`", p.display()))?;
                removed.push(rel);
            }
        }
    }
    Ok(removed)
}
