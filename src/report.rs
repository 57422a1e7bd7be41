//! Read-only reports built from the commit log alone (never from data
//! files): lake status with dirtiness, and the lateness distribution.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::bronze;
use crate::dirty::DirtyPartition;
use crate::lateness::LatenessHistogram;
use crate::log::{Commit, LakeState};
use crate::time;

#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub event_date: String,
    /// The last commit that added bronze files to this partition.
    pub version: u64,
    pub events: u64,
    pub late_events: u64,
    /// Late events waiting in the side output for `reconcile`.
    pub side_output_events: u64,
    /// New versions of an `event_id` already on this date (same id, other
    /// content), which silver leaves out: it keeps the first copy.
    pub id_conflicts: u64,
    /// `event_id`s of this date that are on an earlier-counted date too
    /// (silver keeps a copy on each date).
    pub ids_on_other_dates: u64,
    pub files: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub lake: String,
    pub version: u64,
    pub commits: u64,
    /// The oldest commit the log still has: 1, or later once `[log]
    /// retention` removed older ones. Filled in by `status`.
    pub first_commit: u64,
    pub watermark: Option<String>,
    pub max_event_time: Option<String>,
    /// The ingest that added events with the latest processing time: when
    /// data last arrived (none for an empty lake, or a log whose
    /// checkpoint predates this record, until the next ingest).
    pub last_ingest: Option<LastIngest>,
    pub events: u64,
    pub late_events: u64,
    pub side_output_events: u64,
    pub id_conflicts: u64,
    pub ids_on_other_dates: u64,
    /// Lines in the quarantine table, and its files (one per run that
    /// quarantined any).
    pub quarantined: u64,
    pub quarantine_files: u64,
    /// Input batches `evlake retract` took back (and not ingested again),
    /// and the newest commit that did.
    pub retracted_batches: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_retract: Option<u64>,
    /// Users whose rows `evlake erase` took out, and the newest commit
    /// that did.
    pub erased_users: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_erase: Option<u64>,
    pub partitions: Vec<PartitionStatus>,
    pub dirty: Vec<DirtyPartition>,
    /// What changed where dirty partitions say "SQL or settings changed":
    /// each setting whose value when the layer was last built differs from
    /// what `evlake run` would use now, e.g. `silver.session_gap: 30m when
    /// built, 10m now`, or that the layer's SQL differs (another evlake
    /// version built it). Filled in by `status`, which reads those commits.
    pub settings_changed: Vec<String>,
    /// Layers (`silver`, `gold`) never built though bronze has events:
    /// not dirty (nothing of them exists yet), but `evlake run` has work.
    pub not_built: Vec<&'static str>,
    /// State snapshots, with their validity (an invalid one is never used).
    pub snapshots: Vec<crate::state::Snapshot>,
    /// Models in `LAKE/models/` whose file does not load, and why. Filled
    /// in by `status`.
    pub broken_models: Vec<crate::state::BrokenModel>,
    /// Bronze dates with at least [`crate::compact::DEFAULT_MIN_FILES`]
    /// small files, which `evlake compact` would merge.
    pub compactable: Vec<String>,
    /// The lake's own typed tables (`LAKE/typed/NAME.sql`), each with its
    /// file and whether it replaces a built-in one. Filled in by `status`.
    pub own_typed_tables: Vec<crate::silver::OwnTyped>,
    /// The lake's own daily tables (`LAKE/daily/NAME.sql`), each with its
    /// file and the silver tables it reads.
    pub own_daily_tables: Vec<crate::daily::OwnDaily>,
    /// Run directories in `_evlake/staging/`: a writer's files in flight,
    /// or what a killed one left (the next writer removes it). Filled in
    /// by `status`.
    pub staging: Vec<crate::lake::StagingDir>,
    /// Files in the table directories that no commit references: a
    /// writer's not committed yet, or what a killed or failed one left
    /// (the next writer removes them). Looked for (by `status`) only when
    /// the last writer did not finish cleanly.
    pub orphans: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastIngest {
    pub version: u64,
    pub processing_time: String,
}

pub fn status(
    lake_path: &str,
    state: &LakeState,
    configured: &crate::pipeline::Configured,
    snapshots: Vec<crate::state::Snapshot>,
) -> Status {
    let mut parts: BTreeMap<String, PartitionStatus> = BTreeMap::new();
    let blank = |d: &str| PartitionStatus {
        event_date: d.to_string(),
        version: 0,
        events: 0,
        late_events: 0,
        side_output_events: 0,
        id_conflicts: state.id_conflicts.get(d).copied().unwrap_or(0),
        ids_on_other_dates: state.ids_on_other_dates.get(d).copied().unwrap_or(0),
        files: 0,
    };
    for (date, p) in state.partitions(bronze::TABLE) {
        let s = parts.entry(date.clone()).or_insert_with(|| blank(date));
        s.version = p.version;
        s.events = p.rows();
        s.late_events = p.files.values().map(|f| f.late_rows).sum();
        s.files = p.files.len() as u64;
    }
    for (date, p) in state.partitions(bronze::LATE_TABLE) {
        if p.files.is_empty() {
            continue;
        }
        let s = parts.entry(date.clone()).or_insert_with(|| blank(date));
        s.side_output_events = p.rows();
    }
    let partitions: Vec<PartitionStatus> = parts.into_values().collect();
    Status {
        lake: lake_path.to_string(),
        version: state.version,
        commits: state.commits,
        first_commit: 1,
        watermark: state.watermark.map(time::format_micros),
        max_event_time: state.max_event_time.map(time::format_micros),
        last_ingest: state.latest_ingest.map(|(version, t)| LastIngest {
            version,
            processing_time: time::format_micros(t),
        }),
        events: partitions.iter().map(|p| p.events).sum(),
        late_events: partitions.iter().map(|p| p.late_events).sum(),
        side_output_events: partitions.iter().map(|p| p.side_output_events).sum(),
        id_conflicts: partitions.iter().map(|p| p.id_conflicts).sum(),
        ids_on_other_dates: partitions.iter().map(|p| p.ids_on_other_dates).sum(),
        quarantined: state
            .partitions(crate::ingest::QUARANTINE_TABLE)
            .map(|(_, p)| p.rows())
            .sum(),
        quarantine_files: state
            .partitions(crate::ingest::QUARANTINE_TABLE)
            .map(|(_, p)| p.files.len() as u64)
            .sum(),
        retracted_batches: state
            .batches
            .values()
            .filter(|b| b.retracted.is_some())
            .count() as u64,
        last_retract: state.batches.values().filter_map(|b| b.retracted).max(),
        erased_users: state.erased_users,
        last_erase: state.last_erase,
        partitions,
        dirty: crate::pipeline::all_dirty(state, configured),
        settings_changed: Vec::new(),
        not_built: if state.partitions(bronze::TABLE).next().is_none() {
            Vec::new()
        } else {
            [
                ("silver", crate::silver::EVENTS_TABLE),
                ("gold", crate::gold::METRICS_TABLE),
            ]
            .into_iter()
            .filter(|(_, table)| !state.builds.contains_key(*table))
            .map(|(layer, _)| layer)
            .collect()
        },
        snapshots,
        broken_models: Vec::new(),
        compactable: crate::compact::compactable(state, crate::compact::DEFAULT_MIN_FILES),
        own_typed_tables: Vec::new(),
        own_daily_tables: Vec::new(),
        staging: Vec::new(),
        orphans: Vec::new(),
    }
}

/// Lateness of one partition or one batch (commit).
#[derive(Debug, Clone, Serialize)]
pub struct LatenessRow {
    /// `2024-03-15` (by partition) or the commit version (by batch).
    pub key: String,
    /// Input sources of the batch (empty by partition).
    pub sources: String,
    pub events: u64,
    pub late: u64,
    pub side_output: u64,
    pub p50_ms: u64,
    pub p90_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
    pub on_time: u64,
    pub late_under_1h: u64,
    pub late_1h_to_24h: u64,
    pub late_over_24h: u64,
    #[serde(skip)]
    pub histogram: LatenessHistogram,
}

const HOUR_MS: u64 = 3_600_000;

fn row(
    key: String,
    sources: String,
    all: LatenessHistogram,
    late: &LatenessHistogram,
    side: u64,
) -> LatenessRow {
    let s = all.summary();
    LatenessRow {
        key,
        sources,
        events: all.count,
        late: late.count,
        side_output: side,
        p50_ms: s.map_or(0, |s| s.p50_ms),
        p90_ms: s.map_or(0, |s| s.p90_ms),
        p99_ms: s.map_or(0, |s| s.p99_ms),
        max_ms: s.map_or(0, |s| s.max_ms),
        on_time: all.count - late.count,
        late_under_1h: late.count_between_ms(0, HOUR_MS),
        late_1h_to_24h: late.count_between_ms(HOUR_MS, 24 * HOUR_MS),
        late_over_24h: late.count_between_ms(24 * HOUR_MS, u64::MAX),
        histogram: all,
    }
}

/// Lateness per partition, from the live bronze and side-output files.
pub fn lateness_by_partition(state: &LakeState) -> Vec<LatenessRow> {
    let mut acc: BTreeMap<String, (LatenessHistogram, LatenessHistogram, u64)> = BTreeMap::new();
    for table in [bronze::TABLE, bronze::LATE_TABLE] {
        for (date, p) in state.partitions(table) {
            for f in p.files.values() {
                let e = acc.entry(date.clone()).or_default();
                if let Some(h) = &f.lateness {
                    e.0.merge(&h.get());
                }
                if let Some(h) = &f.late_lateness {
                    e.1.merge(&h.get());
                }
                if table == bronze::LATE_TABLE {
                    e.2 += f.rows;
                }
            }
        }
    }
    acc.into_iter()
        .map(|(k, (all, late, side))| row(k, String::new(), all, &late, side))
        .collect()
}

/// Lateness per ingest batch (commit), from what each ingest commit added.
pub fn lateness_by_batch(commits: &[Commit]) -> Vec<LatenessRow> {
    // An input `retract` took back is listed as it was ingested, marked.
    let retracted: std::collections::HashMap<&str, u64> = commits
        .iter()
        .flat_map(|c| {
            c.retracted
                .iter()
                .map(move |r| (r.hash.as_str(), c.version))
        })
        .collect();
    commits
        .iter()
        .filter(|c| c.operation == "ingest")
        .map(|c| {
            let mut all = LatenessHistogram::default();
            let mut late = LatenessHistogram::default();
            let mut side = 0;
            for f in &c.add {
                if let Some(h) = &f.lateness {
                    all.merge(&h.get());
                }
                if let Some(h) = &f.late_lateness {
                    late.merge(&h.get());
                }
                if f.table == bronze::LATE_TABLE {
                    side += f.rows;
                }
            }
            let sources: Vec<String> = c
                .inputs
                .iter()
                .map(|i| match retracted.get(i.hash.as_str()) {
                    // (Not when ingested again after it.)
                    Some(v) if *v > c.version => format!("{} (retracted in commit {v})", i.source),
                    _ => i.source.clone(),
                })
                .collect();
            row(c.version.to_string(), sources.join(" "), all, &late, side)
        })
        .collect()
}

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--quiet`: from now on, stderr carries only what needs a person's
/// attention (warnings, problems, quarantined and ignored input, errors),
/// so a cron job that went well prints nothing and sends no mail.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// Whether `--quiet` was given.
pub fn quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

/// The name of `names` that `name` most likely mistypes: the closest by
/// edit distance (case aside), at most 2 edits and a third of its length
/// away (at least 1), for a "did you mean" of an unknown table or model.
pub fn nearest<'a>(name: &str, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    names
        .into_iter()
        .map(|n| (strsim::levenshtein(&lower, n), n))
        .filter(|(d, n)| *d <= 2.min(n.len() / 3).max(1))
        .min()
        .map(|(_, n)| n)
}

/// `text` with its control characters, but those in `keep`, written as
/// escapes (`\n`, `\u{1b}`).
pub fn escape_controls(text: &str, keep: &[char]) -> String {
    let escaped = |c: char| c.is_control() && !keep.contains(&c);
    if !text.chars().any(escaped) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escaped(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// An error's text as printed: its lines kept (DataFusion's messages span
/// several, its list of memory consumers for one), every other control
/// character written as an escape, so a file name in it cannot send an
/// escape sequence to the terminal (`c\u{1b}[31m.jsonl`).
pub fn error_text(text: impl std::fmt::Display) -> String {
    escape_controls(&text.to_string(), &['\n', '\t'])
}

/// Write one line to stderr with a single write: `eprintln!` writes a line
/// in pieces (one per argument, one per padding character), so lines from
/// processes sharing a log (cron, `make -j`) could interleave mid-line.
/// Every line evlake prints on stderr goes through here (the multi-line
/// `EVLAKE_EXPLAIN` plans aside).
pub fn eline(line: std::fmt::Arguments) {
    use std::io::Write;
    let mut text = line.to_string();
    text.push('\n');
    let write = || {
        let _ = std::io::stderr().write_all(text.as_bytes());
    };
    // Under a spinner, the line goes above it.
    match SPINNER.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some(pb) => pb.suspend(write),
        None => write(),
    }
}

/// The spinner of the operation running now, if stderr is a terminal.
static SPINNER: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// While alive: on a terminal (and without `--quiet`), a spinner on stderr
/// naming the operation, its latest phase and the time so far, so a long
/// `silver` or `gold` is visibly at work; cleared when dropped, before
/// the command prints its summary. Nothing when stderr is not a terminal.
#[must_use]
pub struct Busy {
    spinning: bool,
}

impl Busy {
    /// No spinner (an operation that reports its progress otherwise).
    pub fn none() -> Busy {
        Busy { spinning: false }
    }
}

/// Start the spinner of operation `op` (see [`Busy`]).
pub fn busy(op: &str) -> Busy {
    use std::io::IsTerminal;
    if quiet() || !std::io::stderr().is_terminal() {
        return Busy::none();
    }
    let pb =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr())
            .with_style(
                indicatif::ProgressStyle::with_template("{prefix:>12} {msg} {spinner} {elapsed}")
                    .expect("valid template"),
            )
            .with_prefix("Running")
            .with_message(format!("{op}: started"));
    pb.tick();
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    if let Some(old) = SPINNER
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .replace(pb)
    {
        old.finish_and_clear();
    }
    Busy { spinning: true }
}

/// Name the phase the running operation reached on its spinner, if any.
pub fn phase(op: &str, phase: &str) {
    if let Some(pb) = SPINNER.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        pb.set_message(format!("{op}: {phase}"));
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if !self.spinning {
            return;
        }
        if let Some(pb) = SPINNER.lock().unwrap_or_else(|e| e.into_inner()).take() {
            pb.finish_and_clear();
        }
    }
}
