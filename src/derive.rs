//! What the commands that write derived tables (silver, gold) share:
//! writing query results to staging, replacing whole partitions in one
//! commit, and finishing that commit (DESIGN.md §2, §3).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
use datafusion::prelude::DataFrame;
use serde::Serialize;

use crate::fault;
use crate::lake::{self, Lake};
use crate::log::{self, Commit, FileAction, LakeState};
use crate::time::format_date32;

/// One derived table's part of a commit.
#[derive(Debug, Clone)]
pub struct Output {
    /// Logical name.
    pub table: String,
    /// Lake-relative directory.
    pub dir: String,
    /// Where this run staged its files (`column=value/…parquet`).
    pub staged: PathBuf,
    /// The partition column (`event_date`, `session_date`).
    pub column: &'static str,
    /// The partitions this commit replaces: their old files are removed and
    /// the staged ones (if any) take their place.
    pub partitions: BTreeSet<String>,
    /// The partitions this commit adds rows to: their files stay, and the
    /// staged ones join them.
    pub appended: BTreeSet<String>,
}

/// A partition a commit rewrote.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Written {
    pub table: String,
    pub partition: String,
    /// Rows after the rewrite (0: the partition is now empty).
    pub rows: u64,
}

/// Move every output's staged files into the lake and record them, and
/// the files they replace, in `commit`. Returns the partitions whose files
/// changed (a replaced partition with no files before or after is not
/// listed). Staged files for a partition not in `partitions` are a bug.
pub fn replace_partitions(
    lake: &Lake,
    state: &LakeState,
    commit: &mut Commit,
    outputs: &[Output],
    run_id: &str,
) -> Result<Vec<Written>> {
    let mut written = Vec::new();
    let mut moves = Vec::new();
    let mut n = 0;
    for out in outputs {
        let first = written.len();
        let mut new_rows: BTreeMap<String, u64> = BTreeMap::new();
        for rel in lake::list_files(&out.staged, &out.staged)? {
            let Some((part_dir, _)) = rel.split_once('/') else {
                continue;
            };
            let partition = part_dir
                .strip_prefix(&format!("{}=", out.column))
                .context("unexpected staged layout")?
                .to_string();
            if !out.partitions.contains(&partition) && !out.appended.contains(&partition) {
                bail!(
                    "internal error: staged {} rows for {partition}, outside the partitions \
                     this commit replaces or appends to",
                    out.table
                );
            }
            let from = out.staged.join(&rel);
            let rows = parquet_rows(&from)?;
            let bytes = fs::metadata(&from)?.len();
            let rel_final = format!("{}/{part_dir}/part-{run_id}-{n:05}.parquet", out.dir);
            n += 1;
            moves.push((from, lake.path(&rel_final)));
            commit.add.push(FileAction::plain(
                &out.table, &partition, rel_final, rows, bytes,
            ));
            *new_rows.entry(partition).or_default() += rows;
        }
        let old = state.tables.get(&out.table);
        for p in &out.partitions {
            let old_files = old.and_then(|t| t.get(p)).map(|p| &p.files);
            if let Some(files) = old_files {
                commit.remove.extend(files.values().cloned());
            }
            let rows = new_rows.get(p).copied().unwrap_or(0);
            if rows > 0 || old_files.is_some_and(|f| !f.is_empty()) {
                written.push(Written {
                    table: out.table.clone(),
                    partition: p.clone(),
                    rows,
                });
            }
        }
        for p in &out.appended {
            let Some(&rows) = new_rows.get(p) else {
                continue;
            };
            let before = old.and_then(|t| t.get(p)).map_or(0, |p| p.rows());
            written.push(Written {
                table: out.table.clone(),
                partition: p.clone(),
                rows: before + rows,
            });
        }
        written[first..].sort_by(|a, b| a.partition.cmp(&b.partition));
    }
    // The Parquet writers do not fsync: publish does.
    lake::publish(lake, &moves)?;
    Ok(written)
}

/// Write the commit, then delete the files it removed (the staging
/// directory goes when its [`lake::Staging`] guard drops). A crash before
/// the commit leaves orphans the next writer removes; after it, files the
/// log no longer references.
pub fn finish_commit(lake: &Lake, commit: &Commit) -> Result<()> {
    fault::point("before-commit")?;
    if !commit.remove.is_empty() {
        // (A commit that only removes published nothing.)
        lake.mark_changing()?;
    }
    log::write_commit(lake, commit)?;
    fault::point("after-commit")?;
    // The commit no longer references them. One already gone (deleted by
    // hand, say) is fine.
    lake::par_io(&commit.remove, |f| {
        let p = lake.path(&f.path);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("failed to remove `{}`", p.display()))
            }
            _ => Ok(()),
        }
    })?;
    // A partition whose files all went (a snapshot removed, a table
    // dropped, a date emptied by a merge) leaves no empty directory:
    // `remove_dir` removes only an empty one.
    let dirs: BTreeSet<_> = commit
        .remove
        .iter()
        .filter_map(|f| lake.path(&f.path).parent().map(Path::to_path_buf))
        .collect();
    for dir in dirs {
        let _ = fs::remove_dir(dir);
    }
    lake.mark_clean();
    Ok(())
}

/// Per table, the partitions written (for `--json`'s `recomputed`).
pub fn by_table(written: &[Written]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for w in written {
        m.entry(w.table.clone())
            .or_default()
            .push(w.partition.clone());
    }
    m
}

/// A short id for this run's file names.
pub fn run_id(operation: &str, state: &LakeState) -> String {
    let mut h = blake3::Hasher::new();
    h.update(format!("{operation} {} {}", state.version, std::process::id()).as_bytes());
    h.finalize().to_hex()[..16].to_string()
}

/// This run's staging directory and engine options spilling into it.
pub fn staging_with_spill(
    lake: &Lake,
    operation: &str,
    engine: &crate::engine::EngineOptions,
) -> Result<(lake::Staging, crate::engine::EngineOptions)> {
    let staging = lake::Staging::create(lake, operation)?;
    let mut engine = engine.clone();
    engine.spill_dir.get_or_insert(staging.join("spill"));
    Ok((staging, engine))
}

/// How a derived table's files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Index {
    /// The session's Parquet options.
    None,
    /// Plus a Bloom filter on `event_id`, so a lookup of a few event ids
    /// (an `IN` list, or a join's build side that DataFusion pushes down as
    /// one) skips the files that do not hold them.
    EventIds,
}

/// Bloom filter size of a typed table's date partition (more rows raise
/// its false-positive rate, never its answers).
const PARTITION_EVENT_IDS: u64 = 16_384;

/// `df`'s session Parquet options with a Bloom filter on `event_id`, sized
/// for `ndv` ids per row group.
pub fn event_id_bloom(df: &DataFrame, ndv: u64) -> datafusion::config::TableParquetOptions {
    let mut opts = session_options(df);
    opts.column_specific_options.insert(
        "event_id".into(),
        datafusion::config::ParquetColumnOptions {
            bloom_filter_enabled: Some(true),
            bloom_filter_fpp: Some(0.01),
            bloom_filter_ndv: Some(ndv),
            ..Default::default()
        },
    );
    opts
}

/// `df`'s session Parquet options (see [`crate::engine`]).
pub fn session_options(df: &DataFrame) -> datafusion::config::TableParquetOptions {
    datafusion::config::TableParquetOptions {
        global: df
            .task_ctx()
            .session_config()
            .options()
            .execution
            .parquet
            .clone(),
        ..Default::default()
    }
}

/// Columns of the derived tables whose values repeat across a partition's
/// rows (lineage, event types, pages, processing times): written with a
/// dictionary, while the session turns it off for the near-unique rest. A
/// plain page of `source_file` holds the same path on every row; an
/// incremental run that reads whole built rows (a late event's users)
/// decompressed these columns' ~45% of the uncompressed bytes.
const DICTIONARY_COLUMNS: [&str; 8] = [
    "event_type",
    "page_url",
    "source_system",
    "processing_time",
    "batch_id",
    "source_file",
    "landing_page",
    "exit_page",
];

/// Write `df` Hive-partitioned by `column` (a date) under `dir`
/// ([`crate::partitioned`]).
pub async fn write_partitioned(
    df: DataFrame,
    dir: &Path,
    column: &str,
    what: &str,
    index: Index,
) -> Result<()> {
    if std::env::var_os("EVLAKE_EXPLAIN").is_some() {
        let plan = df.clone().create_physical_plan().await?;
        eprintln!(
            "{what}:\n{}",
            datafusion::physical_plan::displayable(plan.as_ref()).indent(true)
        );
    }
    let mut options = match index {
        Index::EventIds => event_id_bloom(&df, PARTITION_EVENT_IDS),
        Index::None => session_options(&df),
    };
    for c in DICTIONARY_COLUMNS {
        options
            .column_specific_options
            .entry(c.into())
            .or_default()
            .dictionary_enabled = Some(true);
    }
    crate::partitioned::write_by_date(df, dir, column, options)
        .await
        .with_context(|| format!("writing {what}"))?;
    lake::presync(dir);
    Ok(())
}

/// `DATE '…', DATE '…'` for an SQL `IN` list (dates are formatted here,
/// never taken from user text).
pub fn date_list(days: &BTreeSet<i32>) -> String {
    days.iter()
        .map(|d| format!("DATE '{}'", format_date32(*d)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `column IN (days…)` as an expression.
pub fn in_days(column: &str, days: &BTreeSet<i32>) -> datafusion::prelude::Expr {
    use datafusion::common::ScalarValue;
    datafusion::prelude::col(column).in_list(
        days.iter()
            .map(|d| datafusion::prelude::lit(ScalarValue::Date32(Some(*d))))
            .collect(),
        false,
    )
}

/// Which dates a derived step recomputes.
#[derive(Debug, Clone)]
pub struct DatePlan {
    /// The dates to recompute (every existing date when `full`).
    pub dates: BTreeSet<i32>,
    /// The existing dates `--dates A..B` named.
    pub restated: BTreeSet<i32>,
    /// Everything is recomputed: asked for, or every date is dirty (silver
    /// still recomputes only the touched users of dates that only grew).
    pub full: bool,
}

impl DatePlan {
    /// From the dirty partitions (date-named), the dates that exist, the
    /// `--dates` range and `--full`.
    pub fn new(
        dirty: &[crate::dirty::DirtyPartition],
        existing: &BTreeSet<i32>,
        range: Option<(i32, i32)>,
        full: bool,
    ) -> Result<DatePlan> {
        let restated: BTreeSet<i32> = match range {
            Some((a, b)) => existing.range(a..=b).copied().collect(),
            None => BTreeSet::new(),
        };
        let mut dates: BTreeSet<i32> = dirty
            .iter()
            .map(|d| crate::time::parse_date32(&d.partition).map_err(anyhow::Error::msg))
            .collect::<Result<_>>()?;
        dates.extend(&restated);
        let full = full || (!existing.is_empty() && &dates == existing);
        if full {
            dates = existing.clone();
        }
        Ok(DatePlan {
            dates,
            restated,
            full,
        })
    }

    pub fn mode(&self) -> &'static str {
        if self.full { "full" } else { "incremental" }
    }
}

impl Output {
    /// `table`'s output replacing `parts`, and with `full` every partition
    /// it has now (even ones whose date no longer has input).
    pub fn replacing(
        state: &LakeState,
        table: &str,
        dir: &str,
        staged: PathBuf,
        column: &'static str,
        parts: &BTreeSet<String>,
        full: bool,
    ) -> Output {
        let mut partitions = parts.clone();
        if full {
            partitions.extend(state.partitions(table).map(|(p, _)| p.clone()));
        }
        Output {
            table: table.to_string(),
            dir: dir.to_string(),
            staged,
            column,
            partitions,
            appended: BTreeSet::new(),
        }
    }

    /// The same output, also appending to `parts` (see [`Output::appended`]).
    pub fn appending(mut self, parts: &BTreeSet<String>) -> Output {
        self.appended = parts.clone();
        self
    }
}

/// Tables in the log with files under `layer/` (`silver`, `gold`) that
/// are not in `current`: a lake's own table whose SQL file was removed.
/// (table, directory)
pub fn undefined_tables(state: &LakeState, layer: &str, current: &[&str]) -> Vec<(String, String)> {
    let prefix = format!("{layer}/");
    state
        .tables
        .iter()
        .filter(|(t, _)| !current.contains(&t.as_str()))
        .filter(|(_, parts)| {
            parts
                .values()
                .flat_map(|p| p.files.values())
                .any(|f| f.path.starts_with(&prefix))
        })
        .map(|(t, _)| (t.clone(), format!("{prefix}{t}")))
        .collect()
}

/// The outputs that empty every partition of the `dropped` tables (see
/// [`undefined_tables`]): nothing is staged for them, and no build is
/// recorded.
pub fn dropped_outputs(
    state: &LakeState,
    dropped: &[(String, String)],
    staging: &Path,
) -> Vec<Output> {
    dropped
        .iter()
        .map(|(table, dir)| {
            Output::replacing(
                state,
                table,
                dir,
                staging.join("dropped").join(table),
                "event_date",
                &BTreeSet::new(),
                true,
            )
        })
        .collect()
}

/// Name the `dropped` tables in `commit`, so the state forgets their
/// builds with their files.
pub fn record_dropped(commit: &mut crate::log::Commit, dropped: &[(String, String)]) {
    commit.dropped = dropped.iter().map(|(t, _)| t.clone()).collect();
}

/// Remove the directories of the `dropped` tables once their partitions
/// went with a commit (`remove_dir` removes only an empty one).
pub fn remove_dropped_dirs(lake: &Lake, dropped: &[(String, String)]) {
    for (_, dir) in dropped {
        let _ = fs::remove_dir(lake.path(dir));
    }
}

/// Dates parsed from partition names.
pub fn dates_of<'a>(names: impl Iterator<Item = &'a String>) -> Result<BTreeSet<i32>> {
    names
        .map(|d| crate::time::parse_date32(d).map_err(anyhow::Error::msg))
        .collect()
}

/// Rows of every Parquet file under `dir`, from their footers (0 when
/// there is no such directory).
pub fn rows_under(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for f in crate::lake::list_files(dir, dir)? {
        if f.ends_with(".parquet") {
            n += parquet_rows(&dir.join(f))?;
        }
    }
    Ok(n)
}

fn parquet_rows(path: &Path) -> Result<u64> {
    let f = fs::File::open(path).with_context(|| format!("failed to open `{}`", path.display()))?;
    let r = SerializedFileReader::new(f)
        .with_context(|| format!("`{}`: not a readable Parquet file", path.display()))?;
    Ok(r.metadata().file_metadata().num_rows() as u64)
}
