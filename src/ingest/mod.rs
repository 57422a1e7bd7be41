//! `ingest`: NDJSON inputs → the bronze table, as one atomic commit.
//!
//! The pipeline streams: a reader thread decompresses and cuts each input
//! into line-aligned chunks (a bounded channel keeps only a few in flight),
//! rayon parses chunks on every core into Arrow arrays, and a bounded
//! buffer is flushed as sorted, zstd Parquet files into staging. Only after
//! every input was read and the bad-line fraction checked are the files
//! renamed into `bronze/events/` and the commit written (DESIGN.md §2).

pub mod chunk;
pub mod hashcache;
pub mod input;
pub mod keys;
pub mod parse;
pub mod scan;
pub mod write;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use base64::Engine;
use rayon::prelude::*;
use serde::Serialize;

use crate::bronze;
use crate::error::Failure;
use crate::fault;
use crate::ids;
use crate::lake::{self, Lake};
use crate::late::{self, LatePolicy, LateRules};
use crate::lateness::{LatenessHistogram, LatenessSummary};
use crate::log::{self, Commit, FileAction, InputBatch, LakeState};
use crate::time::{self, NaiveTimestamps};
use chunk::{Lineage, ParsedChunk, Quarantined};
use input::Input;
use parse::ParseOptions;
use write::{Buffer, FileNamer, StagedFile};

/// Directory of quarantined lines, relative to the lake root.
pub const QUARANTINE_DIR: &str = "quarantine";
/// Logical name of the quarantine "table" in the commit log.
pub const QUARANTINE_TABLE: &str = "quarantine";

/// Directories whose files must all be referenced by the log.
pub fn table_dirs() -> Vec<&'static str> {
    let mut v = vec![
        bronze::DIR,
        bronze::LATE_DIR,
        QUARANTINE_DIR,
        crate::ids::DIR,
    ];
    v.extend(crate::silver::all_dirs());
    v.extend(crate::gold::all_tables().into_iter().map(|(_, d)| d));
    v.push(crate::state::STATE_DIR);
    v
}

/// Default memory for buffered rows before a flush to Parquet.
pub const DEFAULT_BUFFER_BYTES: usize = 128 << 20;

/// The row buffer's size: `EVLAKE_BUFFER_MB`, else [`DEFAULT_BUFFER_BYTES`].
pub fn buffer_bytes() -> usize {
    std::env::var("EVLAKE_BUFFER_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(DEFAULT_BUFFER_BYTES, |mb| mb.max(1) << 20)
}

/// How many event keys stay in memory before they spill to staging: as
/// many as fit in a row buffer of `buffer_bytes` (5.6M by default), unless
/// `EVLAKE_KEYS_IN_MEMORY` says (tests force spilling with a few).
pub fn keys_in_memory(buffer_bytes: usize) -> usize {
    std::env::var("EVLAKE_KEYS_IN_MEMORY")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(buffer_bytes / keys::KEY_BYTES)
}

/// `--max-line-bytes` by default: far above any real event, far below
/// what a whole JSON array read as one line could take.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 << 20;

/// `--min-event-time`'s default, 2000-01-01T00:00:00Z: no clickstream or
/// ledger event is older, and every epoch-seconds value of this century
/// read as milliseconds is (it lands in January 1970).
pub const DEFAULT_MIN_EVENT_TIME: i64 = 946_684_800 * time::MICROS_PER_SECOND;

/// Parse a `--min-event-time`: RFC 3339, a date (its midnight, UTC), or
/// `none` (no limit).
pub fn parse_min_event_time(s: &str) -> Result<i64, String> {
    if s.trim() == "none" {
        return Ok(i64::MIN);
    }
    time::parse_instant_or_date(s, false)
}

/// A `--min-event-time` as [`parse_min_event_time`] reads it.
pub fn format_min_event_time(us: i64) -> String {
    if us == i64::MIN {
        "none".to_string()
    } else {
        time::format_micros(us)
    }
}

#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// As given: a file name need not be UTF-8.
    pub inputs: Vec<std::ffi::OsString>,
    /// Which files a directory among them is walked for (`--include`).
    pub names: input::Names,
    /// The run's processing time, UTC microseconds.
    pub processing_time: i64,
    pub max_bad_fraction: f64,
    pub naive_timestamps: NaiveTimestamps,
    /// Events later than processing time + this are quarantined.
    pub max_future: i64,
    /// Events earlier than this instant are quarantined (`i64::MIN`: none).
    pub min_event_time: i64,
    /// A longer line fails the run, committing nothing (exit 4).
    pub max_line_bytes: usize,
    /// Buffered row memory that triggers a flush.
    pub buffer_bytes: usize,
    /// Event keys (for counting re-sends) held in memory before they are
    /// spilled to staging in sorted runs ([`keys::Spool`]).
    pub keys_in_memory: usize,
    pub late_policy: LatePolicy,
    /// The watermark trails the largest committed event time by this much.
    pub watermark_delay: i64,
    /// For `LatePolicy::Grace`.
    pub allowed_lateness: i64,
    pub progress: bool,
    /// Parse and stage everything, report, then commit nothing (and leave
    /// orphans of crashed runs for the next real writer).
    pub dry_run: bool,
    /// Ingest inputs whose content `evlake retract` took back, again.
    pub reingest_retracted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new commit was written.
    Committed,
    /// Nothing new to ingest (every input was already committed).
    Noop,
    /// The bad-line fraction was exceeded; nothing was committed.
    Rejected,
    /// `--dry-run`: this is what would have been committed.
    DryRun,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputStatus {
    Ingested,
    /// Read, but not committed: the run's bad lines were over
    /// `--max-bad-fraction`, so nothing of it was.
    Rejected,
    /// Same content already committed.
    AlreadyIngested,
    /// Same content given twice in this run.
    DuplicateInRun,
    /// Same content as a batch `evlake retract` took back: skipped unless
    /// `--reingest-retracted`.
    Retracted,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputReport {
    pub source: String,
    pub status: InputStatus,
    pub hash: String,
    pub batch_id: String,
    /// For `already_ingested` and `retracted`: the commit that has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed_in: Option<u64>,
    /// For `already_ingested`, `retracted` and `duplicate_in_run`: the
    /// input of the same bytes, as that commit (or this run) named it,
    /// when its name is another (a file delivered again under a new name,
    /// or two empty ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_as: Option<String>,
    /// For `retracted`: the commit that retracted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retracted_in: Option<u64>,
    /// The hash came from the lake's input-hash cache: the file's path,
    /// inode, size and times had not changed, so it was not read.
    pub hash_cached: bool,
    pub bytes: u64,
    /// A file that grew since it was ingested: where the read began (the
    /// counts below are of what was read from there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<crate::log::Resumed>,
    /// See [`input::Hashed::head`] (kept in the log, not printed).
    #[serde(skip)]
    pub head: Option<String>,
    /// Read: whether its text ends with a newline (kept in the log, not
    /// printed; see [`crate::log::InputBatch::ends_line`]).
    #[serde(skip)]
    pub ends_line: Option<bool>,
    pub lines: u64,
    pub events: u64,
    pub empty_lines: u64,
    pub quarantined: u64,
}

/// Whether the lake's SQL reads events of type `event_type` by name: a
/// typed table's (a lake's own, or one replacing a built-in), an own
/// daily table's or a state model's in `LAKE/models/` names it as a
/// string literal (`'Purchase'`). Such a type, near a known one, is no
/// mistake of the producer's to warn of.
fn read_by_lake_sql(lake: &Lake, event_type: &str) -> bool {
    let literal = format!("'{}'", event_type.replace('\'', "''"));
    let typed = crate::silver::typed().iter().map(|(_, _, sql)| *sql);
    let daily = crate::daily::own().iter().map(|d| d.sql);
    let models = crate::lake::sql_files(&lake.path(crate::state::MODELS_DIR))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(_, path)| crate::lake::read_sql_file(&path).ok());
    typed.chain(daily).any(|sql| sql.contains(&literal))
        || models.into_iter().any(|sql| sql.contains(&literal))
}

/// See [`IngestReport::near_known_types`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NearType {
    pub event_type: String,
    /// The type the built-in SQL reads.
    pub known: &'static str,
    pub events: u64,
}

impl NearType {
    /// Count `events` of `event_type` (like `known`) in `types`.
    pub fn count(types: &mut Vec<NearType>, event_type: &str, known: &'static str, events: u64) {
        match types.iter_mut().find(|t| t.event_type == event_type) {
            Some(t) => t.events += events,
            None => types.push(NearType {
                event_type: event_type.to_string(),
                known,
                events,
            }),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    pub event_date: String,
    /// Events written to bronze (late ones included).
    pub events: u64,
    /// Events whose partition was already closed by the watermark.
    pub late: u64,
    /// Late events parked in the side output (`bronze_late`).
    pub side_output: u64,
    /// Events whose `event_id` was already in this partition (in bronze, or
    /// earlier in this run): kept as received, resolved downstream.
    pub resends: u64,
    /// Of `resends`, the new versions of an event: an `event_id` already on
    /// the date with other content (see [`Copies::conflicts`]). Silver
    /// keeps the first copy of each id, so these are left out of it.
    pub id_conflicts: u64,
    /// `event_id`s new on this date that are on another date too (see
    /// [`Copies::other_dates`]): silver keeps a copy on each date.
    pub ids_on_other_dates: u64,
    pub files: u64,
}

/// The run summary (printed for humans on stderr, as JSON with `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub command: &'static str,
    pub status: Outcome,
    pub lake: String,
    /// The commit written (or, for a no-op, the lake's current version).
    pub version: u64,
    pub processing_time: String,
    pub inputs: Vec<InputReport>,
    /// Entries in the input directories not read, and why (see
    /// [`input::Resolved::ignored`]); `--json` lists their paths.
    #[serde(rename = "ignored_files", serialize_with = "ignored_paths")]
    pub ignored: Vec<input::Ignored>,
    pub lines: u64,
    pub events: u64,
    pub empty_lines: u64,
    pub quarantined: u64,
    /// Re-sends among `events` (see [`PartitionReport::resends`]).
    pub resends: u64,
    /// Re-sends with other content (see [`PartitionReport::id_conflicts`]).
    pub id_conflicts: u64,
    /// See [`PartitionReport::ids_on_other_dates`].
    pub ids_on_other_dates: u64,
    /// Event types that differ from a type the built-in SQL reads only in
    /// case or separators (`Purchase`): silver reads types exactly, so
    /// their events are in no typed table (see
    /// [`parse::near_known_type`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub near_known_types: Vec<NearType>,
    /// Events whose partition was closed before this run (in bronze or side output).
    pub late_events: u64,
    /// Late events written to the side output instead of bronze.
    pub side_output_events: u64,
    pub late_policy: String,
    pub quarantined_by_reason: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_file: Option<String>,
    /// The first 5 quarantined lines, and the first line of each other
    /// reason, as `file:line: reason: detail`.
    pub quarantine_examples: Vec<String>,
    /// Of `quarantined`, a plain file's last line with no newline that is
    /// not whole JSON, as `file:line`: a writer appending to the file may
    /// have been in the middle of it. The next run reads it again from its
    /// start once the file grows, so it is not counted in `bad_fraction`.
    pub unfinished_lines: Vec<String>,
    /// Quarantined lines (less `unfinished_lines`) over those lines plus
    /// the events.
    pub bad_fraction: f64,
    pub max_bad_fraction: f64,
    pub partitions: Vec<PartitionReport>,
    pub files_written: u64,
    pub orphans_removed: Vec<String>,
    pub lateness_ms: Option<LatenessSummary>,
    pub max_event_time: Option<String>,
    /// The earliest event time the run adds to bronze: a snapshot as of
    /// that time or later no longer holds every event before it (`run
    /// --dry-run` lists those it would rebuild).
    pub min_event_time: Option<String>,
    pub watermark_before: Option<String>,
    pub watermark: Option<String>,
    /// The earlier ingest with the latest processing time, when that is
    /// after this run's (a pinned `--processing-time` going back): `--known-at` and
    /// which re-sent copy silver keeps follow processing time, not the
    /// order of arrival.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub later_ingest: Option<LaterIngest>,
    pub elapsed_ms: u64,
}

impl IngestReport {
    /// The bad lines `bad_fraction` counts (quarantined, less the
    /// unfinished ones), and all it considers (those plus the events).
    fn counted_lines(&self) -> (u64, u64) {
        let bad = self.quarantined - self.unfinished_lines.len() as u64;
        (bad, self.events + bad)
    }

    /// The error of a run rejected for its bad lines (exit 4).
    pub fn rejection(&self) -> crate::error::Failure {
        let (bad, considered) = self.counted_lines();
        crate::error::Failure::Rejected {
            bad,
            considered,
            max_fraction: self.max_bad_fraction,
        }
    }
}

/// See [`IngestReport::later_ingest`].
#[derive(Debug, Clone, Serialize)]
pub struct LaterIngest {
    pub version: u64,
    pub processing_time: String,
}

/// The schema of a quarantine line, for the `quarantine` query table.
pub fn quarantine_schema() -> datafusion::arrow::datatypes::SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    std::sync::Arc::new(Schema::new(vec![
        Field::new("source_file", DataType::Utf8, true),
        Field::new("line", DataType::Int64, true),
        Field::new("reason", DataType::Utf8, true),
        Field::new("detail", DataType::Utf8, true),
        Field::new("raw", DataType::Utf8, true),
        Field::new("raw_base64", DataType::Utf8, true),
        // Which input and run the line came in: NULL in the lines of
        // lakes written before these were kept.
        Field::new("batch_id", DataType::Utf8, true),
        Field::new(
            "processing_time",
            DataType::Timestamp(
                datafusion::arrow::datatypes::TimeUnit::Microsecond,
                Some("UTC".into()),
            ),
            true,
        ),
    ]))
}

#[derive(Serialize)]
struct QuarantineRecord<'a> {
    source_file: &'a str,
    line: u64,
    /// The input's, as in bronze's `batch_id` column.
    batch_id: &'a str,
    /// The run's, as in bronze's `processing_time` column.
    processing_time: &'a str,
    reason: &'static str,
    detail: &'a str,
    raw: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_base64: Option<String>,
}

struct QuarantineWriter {
    path: PathBuf,
    /// The run's processing time, RFC 3339.
    processing_time: String,
    out: Option<BufWriter<File>>,
    by_reason: BTreeMap<String, u64>,
    total: u64,
    /// The first few bad lines, and the first of each other reason, as
    /// `file:line: reason: detail`, for the summary.
    examples: Vec<String>,
}

/// How many quarantined lines the run summary shows.
const QUARANTINE_EXAMPLES: usize = 5;

/// How many quarantined lines a parsed part holds at most (see
/// [`chunk::parse_part`]): ~2.5 MB of them.
const QUARANTINED_PER_PART: usize = 16 * 1024;

impl QuarantineWriter {
    fn write(&mut self, q: &Quarantined, lineage: &Lineage) -> Result<()> {
        let source_file = lineage.source_file.as_str();
        if self.out.is_none() {
            let f = File::create(&self.path)
                .with_context(|| format!("failed to create `{}`", self.path.display()))?;
            self.out = Some(BufWriter::new(f));
        }
        let (raw, raw_base64) = match std::str::from_utf8(&q.raw) {
            Ok(s) => (std::borrow::Cow::Borrowed(s), None),
            Err(_) => (
                String::from_utf8_lossy(&q.raw),
                Some(base64::engine::general_purpose::STANDARD.encode(&q.raw)),
            ),
        };
        let rec = QuarantineRecord {
            source_file,
            line: q.line,
            batch_id: &lineage.batch_id,
            processing_time: &self.processing_time,
            reason: q.rejection.reason.as_str(),
            detail: &q.rejection.detail,
            raw: &raw,
            raw_base64,
        };
        let out = self.out.as_mut().expect("opened above");
        serde_json::to_writer(&mut *out, &rec)?;
        out.write_all(b"\n")?;
        let reason = q.rejection.reason.as_str();
        // The first lines, and the first of every other reason, so the
        // summary shows each kind of problem the input has.
        let first_of_reason = !self.by_reason.contains_key(reason);
        *self.by_reason.entry(reason.to_string()).or_default() += 1;
        self.total += 1;
        if self.examples.len() < QUARANTINE_EXAMPLES || first_of_reason {
            self.examples.push(format!(
                "{source_file}:{}: {}: {}",
                q.line, q.rejection.reason, q.rejection.detail
            ));
        }
        Ok(())
    }

    /// Flush and fsync; returns the size if anything was written.
    fn finish(&mut self) -> Result<Option<u64>> {
        match self.out.take() {
            None => Ok(None),
            Some(w) => {
                let f = w.into_inner().map_err(|e| e.into_error())?;
                f.sync_all()?;
                Ok(Some(f.metadata()?.len()))
            }
        }
    }
}

struct Planned {
    input: Input,
    hashed: Hashed,
    status: InputStatus,
    committed_in: Option<u64>,
    /// See [`InputReport::same_as`].
    same_as: Option<String>,
    /// A file that grew since it was ingested: where its read resumes.
    resume: Option<input::ResumeAt>,
    /// See [`input::Hashed::head`].
    head: Option<String>,
}

/// One input's hash, and how it was found.
#[derive(Clone)]
struct Hashed {
    hash: String,
    bytes: u64,
    /// Size and mtime when hashed, checked again once the input is read.
    stamp: input::Stamp,
    /// A file's canonical path and stamp, for the input-hash cache.
    cache_key: Option<(PathBuf, hashcache::FileStamp)>,
    /// Its hash came from that cache (the file was not read).
    cached: bool,
    /// See [`input::Hashed::head`].
    head: Option<String>,
    /// See [`input::Hashed::prefix`].
    prefix: Option<(u64, String)>,
    /// See [`input::Hashed::plain`] (false for a spooled stream).
    plain: bool,
    /// A walked input that cannot be read (not hashed), and why (see
    /// [`input::unread_file`]).
    unread: Option<String>,
}

impl Hashed {
    /// An input's hash and size known without reading it here (a spooled
    /// stream's, taken as it was copied; a cached one's), or none needed.
    fn not_read(hash: String, bytes: u64, stamp: input::Stamp) -> Hashed {
        Hashed {
            hash,
            bytes,
            stamp,
            cache_key: None,
            cached: false,
            head: None,
            prefix: None,
            plain: false,
            unread: None,
        }
    }
}

/// Once every input of `plan` is in the log (committed now, or before):
/// record their stamps in the lake's input-hash cache. A failure to write
/// it is only said, under `EVLAKE_TRACE`: the next run hashes again.
fn remember_hashes(
    lake: &Lake,
    mut cache: hashcache::HashCache,
    plan: &[Planned],
    clock: std::time::SystemTime,
) {
    for p in plan {
        if let Some((canonical, stamp)) = &p.hashed.cache_key {
            cache.record(canonical.clone(), *stamp, &p.hashed.hash, clock);
        }
    }
    if let Err(e) = cache.save(lake) {
        crate::fault::trace_note(&format!("input-hash cache not written: {e:#}"));
    }
}

/// Hand the heap's free pages back to the system on a background thread.
///
/// Once every buffer is written, ~300 MB of parsed rows (1M events) sit
/// free in glibc's arenas; the kernel would unmap them when the process
/// exits, on the exiting thread, after the commit: 25 ms of a 0.9 s
/// ingest spent single-threaded. `malloc_trim` returns them now, while
/// this thread renames and commits: the exit then took 7.5 ms.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    std::thread::spawn(|| {
        unsafe extern "C" {
            /// glibc: release free heap memory to the system (thread-safe).
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim takes no pointers and locks each arena
        // itself; it only returns free pages, whoever else allocates.
        unsafe {
            malloc_trim(0);
        }
    });
}

fn batch_id_of(hash: &str) -> String {
    hash.trim_start_matches("blake3:")
        .chars()
        .take(16)
        .collect()
}

/// `ignored_files` in `--json`: the paths.
fn ignored_paths<S: serde::Serializer>(v: &[input::Ignored], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|i| &i.path))
}

/// Run an ingest. Returns the report for committed, no-op and rejected
/// runs; the caller turns `Rejected` into exit code 4.
pub fn ingest(lake: &Lake, opts: &IngestOptions) -> Result<IngestReport> {
    // A walked input that fails part-way (a gzip still being copied into
    // the inbox) is passed over, as one in a format evlake does not read
    // is, and the run done again without it: one such file does not stop
    // every cron run over the directory until it is whole or removed.
    let mut passed_over = Vec::new();
    // (The run's time counts every attempt.)
    let started = Instant::now();
    loop {
        match ingest_without(lake, opts, &passed_over, started) {
            Err(e) => match e.downcast::<input::PassOver>() {
                Ok(input::PassOver(p)) if !passed_over.contains(&p) => passed_over.push(p),
                Ok(p) => return Err(p.into()),
                Err(e) => return Err(e),
            },
            done => return done,
        }
    }
}

/// [`ingest`], the walked inputs `passed_over` left out (and reported),
/// begun at `started`.
fn ingest_without(
    lake: &Lake,
    opts: &IngestOptions,
    passed_over: &[input::Ignored],
    started: Instant,
) -> Result<IngestReport> {
    let input::Resolved {
        mut inputs,
        mut ignored,
    } = input::resolve(&opts.inputs, &opts.names)?;
    inputs.retain(|i| !(i.walked && passed_over.iter().any(|p| p.path == i.display)));
    ignored.extend(passed_over.iter().cloned());
    crate::fault::pause("listed");
    input::refuse_own_files(lake, &inputs)?;
    let _busy = crate::fault::operation("ingest");

    let _lock = lake.lock()?;
    // Shared with the thread that counts re-sends (no copy of the state).
    let state = Arc::new(LakeState::load(lake)?);
    let orphans_removed = if opts.dry_run {
        Vec::new()
    } else {
        log::clean_orphans(lake, &state, &table_dirs())?
    };
    let staging = crate::lake::Staging::create(lake, "ingest")?;

    // Hash every input first: already-committed content is skipped before
    // any of it is parsed. Stdin, and any other input that is not a
    // regular file (a pipe such as `<(zcat x.gz)`, a FIFO), can be read
    // only once: it is spooled, hashed as it is copied, and read from the
    // copy (hashing it and then reading it again found it empty).
    let mut spooled: HashMap<usize, (String, u64)> = HashMap::new();
    for (i, inp) in inputs.iter_mut().enumerate() {
        let spool = staging.join(format!("stream-{i}.ndjson"));
        let hashed = match &inp.path {
            None => input::spool_stdin(&spool)?,
            Some(p) if input::is_stream(p) => input::spool_stream(p, &spool)?,
            Some(_) => continue,
        };
        spooled.insert(i, hashed);
        inp.path = Some(spool);
    }
    // Where a file that grew since it was ingested resumes: after the
    // last committed batch of its path (as given), or of any batch whose
    // first 512 bytes it begins with (a log renamed by rotation).
    let mut last_of: HashMap<&str, (&String, &log::BatchRecord)> = HashMap::new();
    let mut by_head: HashMap<&str, Vec<(&String, &log::BatchRecord)>> = HashMap::new();
    // A retracted batch's content stays consumed like any other's (a log
    // retracted and growing still is not read again from its start), but
    // for `--reingest-retracted`, which reads such a file whole.
    for (h, b) in state
        .batches
        .iter()
        .filter(|(_, b)| b.retracted.is_none() || !opts.reingest_retracted)
    {
        let last = last_of.entry(b.source.as_str()).or_insert((h, b));
        if b.version > last.1.version {
            *last = (h, b);
        }
        if let Some(head) = &b.head {
            by_head.entry(head.as_str()).or_default().push((h, b));
        }
    }
    // A file whose stamp matches the one the lake's input-hash cache has
    // for it, with a hash the log has, is skipped unread.
    let cache = hashcache::HashCache::load(lake);
    let clock = std::time::SystemTime::now();
    let hashes: Vec<Hashed> = inputs
        .par_iter()
        .enumerate()
        .map(|(i, inp)| {
            let path = inp
                .path
                .as_ref()
                .expect("every input has a path once spooled");
            if let Some((h, n)) = spooled.get(&i) {
                return Ok(Hashed::not_read(h.clone(), *n, input::Stamp::of(path)?));
            }
            let cache_key = std::fs::metadata(path)
                .ok()
                .and_then(|md| Some((path.canonicalize().ok()?, hashcache::FileStamp::of(&md))));
            if let Some((canonical, fs)) = &cache_key
                && let Some(hash) = cache.get(canonical, fs)
                && state
                    .batches
                    .get(hash)
                    // (One to ingest again is read as any new input.)
                    .is_some_and(|r| r.retracted.is_none() || !opts.reingest_retracted)
            {
                let known = Hashed::not_read(hash.to_string(), fs.size(), input::Stamp::of(path)?);
                return Ok(Hashed {
                    cache_key,
                    cached: true,
                    ..known
                });
            }
            // (Opened for its first bytes only when it is to be read.)
            if let Some(unread) = inp.walked.then(|| input::unread_file(path)).flatten() {
                return Ok(Hashed {
                    unread: Some(unread),
                    // (None for one that vanished.)
                    ..Hashed::not_read(String::new(), 0, input::Stamp::of(path).unwrap_or_default())
                });
            }
            // The hash of the content its path's last batch had, taken on
            // the way: a file that grew is not read twice to find it.
            let last = last_of.get(inp.display.as_str()).map(|(_, b)| b.bytes);
            let h = input::hash_file(path, last)
                .map_err(|e| input::pass_over_changed(&inp.display, inp.walked, e))?;
            Ok(Hashed {
                hash: h.hash,
                bytes: h.bytes,
                stamp: h.stamp,
                head: h.head,
                prefix: h.prefix,
                plain: h.plain,
                cache_key,
                cached: false,
                unread: None,
            })
        })
        .collect::<Result<_>>()?;
    crate::fault::pause("hashed");
    let mut plan = Vec::with_capacity(inputs.len());
    // Hash → the first input of this run with it.
    let mut seen: HashMap<String, String> = HashMap::new();
    for (i, (inp, hashed)) in inputs.into_iter().zip(hashes).enumerate() {
        if let Some(unread) = hashed.unread {
            ignored.push(input::Ignored::unread(&inp, unread));
            continue;
        }
        let hash = &hashed.hash;
        let known = state.batches.get(hash);
        let again = known.is_some_and(|r| r.retracted.is_some() && opts.reingest_retracted);
        let other = |name: &String| Some(name.clone()).filter(|n| *n != inp.display);
        let (status, committed_in, same_as) = if let Some(rec) = known.filter(|_| !again) {
            let status = if rec.retracted.is_some() {
                InputStatus::Retracted
            } else {
                InputStatus::AlreadyIngested
            };
            (status, Some(rec.version), other(&rec.source))
        } else if let Some(first) = seen.get(hash) {
            (InputStatus::DuplicateInRun, None, other(first))
        } else {
            seen.insert(hash.clone(), inp.display.clone());
            (InputStatus::Ingested, None, None)
        };
        // A file that begins with the content of a committed batch grew
        // since: only what follows is read.
        let (resume, head) = match (&inp.path, status) {
            // (A stream spooled is read whole; a compressed file grows by
            // whole members, see `resume_point`.)
            (Some(path), InputStatus::Ingested) if !spooled.contains_key(&i) => {
                let head = hashed.head.clone();
                let mut candidates: Vec<(&String, &log::BatchRecord)> = head
                    .as_deref()
                    .and_then(|h| by_head.get(h))
                    .cloned()
                    .unwrap_or_default();
                candidates.extend(last_of.get(inp.display.as_str()).copied());
                // The largest first: a log read hourly has a batch per
                // hour that all begin alike.
                candidates.sort_by_key(|(h, b)| (std::cmp::Reverse(b.bytes), h.as_str()));
                candidates.dedup_by_key(|(h, _)| h.as_str());
                let mut resume = None;
                for (h, b) in candidates
                    .into_iter()
                    .filter(|(_, b)| b.bytes < hashed.bytes)
                    .take(3)
                {
                    let known = hashed
                        .prefix
                        .as_ref()
                        .filter(|(n, _)| *n == b.bytes)
                        .map(|(_, p)| p == h);
                    let batch = (b.bytes, b.lines, b.ends_line);
                    resume = input::resume_point(path, h, batch, hashed.bytes, known)
                        .with_context(|| format!("`{}`", inp.display))?;
                    if resume.is_some() {
                        break;
                    }
                }
                // A compressed file whose text begins with a plain batch's
                // content: a log compressed by rotation since it was read.
                if resume.is_none()
                    && !hashed.plain
                    && !by_head.is_empty()
                    && let Some(text) = input::text_head(path, hashed.stamp.len)
                {
                    let mut candidates = by_head.get(text.as_str()).cloned().unwrap_or_default();
                    candidates.sort_by_key(|(h, b)| (std::cmp::Reverse(b.bytes), h.as_str()));
                    for (h, b) in candidates.into_iter().take(3) {
                        resume =
                            input::text_resume_point(path, h, (b.bytes, b.lines), hashed.stamp.len)
                                .with_context(|| format!("`{}`", inp.display))?;
                        if resume.is_some() {
                            break;
                        }
                    }
                }
                (resume, head)
            }
            _ => (None, None),
        };
        plan.push(Planned {
            input: inp,
            hashed,
            status,
            committed_in,
            same_as,
            resume,
            head,
        });
    }
    ignored.sort();

    let mut reports: Vec<InputReport> = plan
        .iter()
        .map(|p| InputReport {
            source: p.input.display.clone(),
            status: p.status,
            hash: p.hashed.hash.clone(),
            batch_id: batch_id_of(&p.hashed.hash),
            committed_in: p.committed_in,
            same_as: p.same_as.clone(),
            retracted_in: state
                .batches
                .get(&p.hashed.hash)
                .and_then(|r| r.retracted)
                .filter(|_| p.status == InputStatus::Retracted),
            hash_cached: p.hashed.cached,
            bytes: p.hashed.bytes,
            head: p.head.clone(),
            resumed: p.resume.as_ref().map(|r| crate::log::Resumed {
                after: r.after.clone(),
                byte: r.byte,
                line: r.line,
                decompressed: r.decompressed,
                source: state
                    .batches
                    .get(&r.after)
                    .map(|b| &b.source)
                    .filter(|s| **s != p.input.display)
                    .cloned()
                    .unwrap_or_default(),
            }),
            ends_line: None,
            lines: 0,
            events: 0,
            empty_lines: 0,
            quarantined: 0,
        })
        .collect();
    trace(started, "hashed inputs");
    // Inputs a writer may be appending to (plain regular files): a last
    // line without a newline may be unfinished.
    // (A spooled stream's `plain` is false; and `plan` holds no input
    // passed over as unread, so its indices are not the inputs'.)
    let appendable: Vec<bool> = plan.iter().map(|p| p.hashed.plain).collect();
    let todo: Vec<usize> = (0..plan.len())
        .filter(|&i| plan[i].status == InputStatus::Ingested)
        .collect();

    let mut report = IngestReport {
        command: "ingest",
        status: Outcome::Noop,
        lake: lake.root().display().to_string(),
        version: state.version,
        processing_time: time::format_micros(opts.processing_time),
        inputs: Vec::new(),
        lines: 0,
        events: 0,
        empty_lines: 0,
        quarantined: 0,
        resends: 0,
        id_conflicts: 0,
        ids_on_other_dates: 0,
        near_known_types: Vec::new(),
        late_events: 0,
        side_output_events: 0,
        late_policy: opts.late_policy.to_string(),
        quarantined_by_reason: BTreeMap::new(),
        quarantine_file: None,
        quarantine_examples: Vec::new(),
        unfinished_lines: Vec::new(),
        bad_fraction: 0.0,
        max_bad_fraction: opts.max_bad_fraction,
        partitions: Vec::new(),
        files_written: 0,
        orphans_removed,
        ignored,
        lateness_ms: None,
        max_event_time: state.max_event_time.map(time::format_micros),
        min_event_time: None,
        watermark_before: state.watermark.map(time::format_micros),
        watermark: state.watermark.map(time::format_micros),
        later_ingest: None,
        elapsed_ms: 0,
    };
    if todo.is_empty() {
        if !opts.dry_run {
            remember_hashes(lake, cache, &plan, clock);
        }
        report.inputs = reports;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    report.later_ingest = later_ingest(&state, opts.processing_time);

    // Named after the inputs and the commit it will be: an input taken
    // back and in again (`--reingest-retracted`) names its files anew, so
    // its id index never takes the name of one it replaces (which the
    // commit's clean-up would then delete), and no file is written over.
    let run_id = {
        let mut h = blake3::Hasher::new();
        h.update(format!("{}\n", state.version + 1).as_bytes());
        for &i in &todo {
            h.update(plan[i].hashed.hash.as_bytes());
            h.update(b"\n");
        }
        h.finalize().to_hex()[..16].to_string()
    };
    let namer = Arc::new(FileNamer::new(run_id.clone(), staging.to_path_buf()));
    let mut quarantine = QuarantineWriter {
        path: staging.join("quarantine.jsonl"),
        processing_time: time::format_micros(opts.processing_time),
        out: None,
        by_reason: BTreeMap::new(),
        total: 0,
        examples: Vec::new(),
    };
    let lineages: Vec<Lineage> = plan
        .iter()
        .map(|p| Lineage {
            batch_id: batch_id_of(&p.hashed.hash),
            source_file: p.input.display.clone(),
        })
        .collect();
    let rules = LateRules {
        watermark_before: state.watermark,
        policy: opts.late_policy,
        allowed_lateness: opts.allowed_lateness,
    };
    let parse_opts = ParseOptions {
        naive_timestamps: opts.naive_timestamps,
        max_event_timestamp: opts.processing_time.saturating_add(opts.max_future),
        min_event_timestamp: opts.min_event_time,
        max_line_bytes: opts.max_line_bytes,
    };

    // (A compressed file read on in its text is read whole.)
    let skipped = |p: &Planned| {
        p.resume
            .as_ref()
            .filter(|r| !r.decompressed)
            .map_or(0, |r| r.byte)
    };
    let total_bytes: u64 = todo
        .iter()
        .map(|&i| plan[i].hashed.bytes - skipped(&plan[i]))
        .sum();
    // Lines before where each input's read begins.
    let lines_before: Vec<u64> = plan
        .iter()
        .map(|p| p.resume.as_ref().map_or(0, |r| r.line - 1))
        .collect();
    let bytes_read = Arc::new(AtomicU64::new(0));
    let progress = opts.progress.then(|| progress_bar(total_bytes));

    let mut buffer = Buffer::default();
    let mut staged: Vec<StagedFile> = Vec::new();
    let mut run_max: Option<i64> = None;
    // `(event_id hash, event_date, content hash)` of every event of the
    // run. Reserved for the events the input can hold (lines of ~150 bytes
    // or more; pages never written are never mapped), so the list is not
    // copied as it grows.
    let mut keys = keys::Spool::new(
        &staging,
        opts.keys_in_memory,
        (total_bytes / 150).min(4 << 20) as usize,
    );
    let group = rayon::current_num_threads().max(1) * 2;

    // Three stages run at once: a reader thread cuts chunks, rayon parses
    // them on every core as they come (`par_bridge`), and this thread
    // merges results in input order and hands full buffers to a flush
    // thread. Bounded channels keep only a few chunks in flight.
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::sync_channel::<input::Chunk>(group);
    let reader_inputs: Vec<(
        usize,
        PathBuf,
        String,
        Hashed,
        Option<input::ResumeAt>,
        bool,
    )> = todo
        .iter()
        .map(|&i| {
            let p = &plan[i].input;
            (
                i,
                p.path.clone().expect("every input has a path once spooled"),
                p.display.clone(),
                plan[i].hashed.clone(),
                plan[i].resume.clone(),
                p.walked,
            )
        })
        .collect();
    let counter = bytes_read.clone();
    let reader_cancel = cancel.clone();
    let sizes = (
        input::chunk_bytes(total_bytes, rayon::current_num_threads()),
        opts.max_line_bytes,
    );
    // Returns, per input read, whether its text ends with a newline.
    let reader = std::thread::spawn(move || -> Result<Vec<(usize, bool)>> {
        let mut seq = 0;
        let mut ends = Vec::new();
        for (idx, path, display, hashed, at, walked) in reader_inputs {
            // What was hashed, no more: a writer may be appending.
            let len = hashed.stamp.len;
            // Known from the hash pass (a spooled stream's copy never grows).
            // (A compressed file read on from a member may grow by more.)
            let plain = at.as_ref().is_some_and(|r| !r.decompressed) || hashed.plain;
            let r = match &at {
                Some(r) if r.decompressed => input::open_decoded(&path, 0, len, counter.clone())
                    .and_then(|t| input::skip_text(t, r.byte, &display)),
                Some(r) if hashed.plain => {
                    input::open_plain_at(&path, r.byte, len, counter.clone())
                }
                at => input::open_decoded(
                    &path,
                    at.as_ref().map_or(0, |r| r.byte),
                    len,
                    counter.clone(),
                ),
            }
            .map_err(|e| input::open_error(&display, walked, e))?;
            let ends_line = input::split_chunks(r, idx, &display, sizes, at.is_none(), |mut c| {
                c.seq = seq;
                seq += 1;
                !reader_cancel.load(Ordering::Relaxed) && tx.send(c).is_ok()
            })
            .map_err(|e| match e.downcast_ref::<input::Unreadable>() {
                Some(u) if walked => u.pass_over(&e).into(),
                _ => e,
            })?;
            ends.push((idx, ends_line));
            // The batch is named (and later skipped) by the hash of what
            // was hashed: what was read must be that too.
            hashed
                .stamp
                .check_read(&path, &display, plain, &hashed.hash)
                .map_err(|e| input::pass_over_changed(&display, walked, e))?;
        }
        Ok(ends)
    });
    let (res_tx, res_rx) = std::sync::mpsc::sync_channel::<ParsedChunk>(group);
    // The chunk the consumer below takes next: a chunk parsed in parts
    // (many bad lines) sends them only in its turn, so parsers running
    // ahead hold one part each, not whole chunks of quarantined lines.
    let turn = Arc::new(AtomicU64::new(0));
    let parser = {
        let lineages = Arc::new(lineages.clone());
        let cancel = cancel.clone();
        let turn = turn.clone();
        let processing_time = opts.processing_time;
        // Parsing gets its own pool: its workers block on the bounded result
        // channel, and flushes (which use the global pool) must never wait
        // behind them.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads())
            .thread_name(|i| format!("evlake-parse-{i}"))
            .build()?;
        std::thread::spawn(move || {
            pool.install(|| {
                rx.into_iter()
                    .par_bridge()
                    .for_each_with(res_tx, |res_tx, c| {
                        let mut from = 0;
                        for part in 0.. {
                            if cancel.load(Ordering::Relaxed) {
                                break;
                            }
                            let (mut pc, rest) = chunk::parse_part(
                                &c,
                                from,
                                QUARANTINED_PER_PART,
                                &lineages[c.input],
                                &parse_opts,
                                &rules,
                                processing_time,
                            );
                            (pc.part, pc.last) = (part, rest.is_none());
                            if part == 0 && !pc.last {
                                while turn.load(Ordering::Acquire) < c.seq
                                    && !cancel.load(Ordering::Relaxed)
                                {
                                    std::thread::sleep(std::time::Duration::from_millis(1));
                                }
                            }
                            if res_tx.send(pc).is_err() {
                                cancel.store(true, Ordering::Relaxed);
                                break;
                            }
                            match rest {
                                Some(next) => from = next,
                                None => break,
                            }
                        }
                    })
            })
        })
    };

    let mut flushing: Option<std::thread::JoinHandle<Result<Vec<StagedFile>>>> = None;
    let mut waiting: BTreeMap<(u64, u32), ParsedChunk> = BTreeMap::new();
    let mut next = (0u64, 0u32);
    let pipeline: Result<()> = (|| {
        for pc in res_rx.iter() {
            crate::interrupt::check()?;
            waiting.insert((pc.seq, pc.part), pc);
            while let Some(mut pc) = waiting.remove(&next) {
                next = if pc.last {
                    turn.store(pc.seq + 1, Ordering::Release);
                    (pc.seq + 1, 0)
                } else {
                    (pc.seq, pc.part + 1)
                };
                let r = &mut reports[pc.input];
                pc.number_from(lines_before[pc.input] + r.lines);
                if let Some(t) = pc.too_long {
                    return Err(Failure::LineTooLong {
                        source: lineages[pc.input].source_file.clone(),
                        line: t.line,
                        bytes: t.bytes,
                        partial: false,
                        max: opts.max_line_bytes as u64,
                        array: t.array,
                    }
                    .into());
                }
                r.lines += pc.lines;
                r.events += pc.events;
                r.empty_lines += pc.empty_lines;
                r.quarantined += pc.quarantined.len() as u64;
                for q in &pc.quarantined {
                    quarantine.write(q, &lineages[q.input])?;
                    if q.unterminated && appendable[q.input] {
                        report
                            .unfinished_lines
                            .push(format!("{}:{}", lineages[q.input].source_file, q.line));
                    }
                }
                report.late_events += pc.late_events;
                report.side_output_events += pc.side_output_events;
                for t in pc.near_types {
                    NearType::count(
                        &mut report.near_known_types,
                        &t.event_type,
                        t.known,
                        t.events,
                    );
                }
                if let Some(m) = pc.max_event_time {
                    run_max = Some(run_max.map_or(m, |x| x.max(m)));
                }
                if let Some(rows) = pc.rows {
                    keys.extend(
                        rows.dates
                            .iter()
                            .zip(pc.ids)
                            .map(|(date, (id, content))| (id, *date, content)),
                    )?;
                    buffer.push(rows);
                }
                if buffer.bytes >= opts.buffer_bytes {
                    // Write this buffer in the background while parsing goes
                    // on; at most one flush is in flight, so memory stays at
                    // about two buffers.
                    if let Some(prev) = flushing.take() {
                        staged.extend(join_flush(prev)?);
                        fault::point("staged")?;
                    }
                    let full = std::mem::take(&mut buffer);
                    let namer = namer.clone();
                    flushing = Some(std::thread::spawn(move || write::flush(full, &namer)));
                }
            }
            if let Some(pb) = &progress {
                pb.set_position(bytes_read.load(Ordering::Relaxed));
            }
        }
        Ok(())
    })();
    if pipeline.is_err() {
        cancel.store(true, Ordering::Relaxed);
    }
    drop(res_rx);
    parser.join().expect("parser thread panicked");
    trace(started, "parsed every chunk");
    // Re-sends and id conflicts are counted, and the run's id index file
    // written, while the last buffer is written: that flush leaves a core
    // idle as it runs out of dates to write in parallel.
    let index_staged = staging.join(format!("{run_id}.ids"));
    let counting = {
        let (lake, state, path) = (lake.clone(), Arc::clone(&state), index_staged.clone());
        let keys_in_memory = opts.keys_in_memory;
        JoinOnDrop(Some(std::thread::spawn(move || {
            count_copies(&lake, &state, keys.finish()?, &path, keys_in_memory)
        })))
    };
    let read_result = reader.join().expect("reader thread panicked");
    // The last buffer is written while the flush in flight finishes (both
    // on the rayon pool), not after it: as each flush runs out of dates to
    // write in parallel, the other keeps the cores busy. Both buffers are
    // in memory either way.
    let last = (pipeline.is_ok() && read_result.is_ok())
        .then(|| write::flush(std::mem::take(&mut buffer), &namer));
    let flushed = flushing.map(join_flush);
    pipeline?;
    let ends = match read_result {
        Ok(ends) => ends,
        // Every chunk the reader sent before the long line was consumed, so
        // the input's line count so far numbers it.
        Err(e) => {
            return Err(match e.downcast::<input::LineTooLongRead>() {
                Ok(long) => Failure::LineTooLong {
                    source: lineages[long.input].source_file.clone(),
                    line: reports[long.input].lines + 1,
                    bytes: long.bytes,
                    partial: true,
                    max: opts.max_line_bytes as u64,
                    array: long.array,
                }
                .into(),
                Err(e) => e,
            });
        }
    };
    for (i, ends_line) in ends {
        reports[i].ends_line = Some(ends_line);
    }
    if let Some(f) = flushed {
        staged.extend(f?);
    }
    if let Some(f) = last {
        staged.extend(f?);
    }
    namer.number(&mut staged);
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    if !staged.is_empty() {
        fault::point("staged")?;
    }
    let quarantine_bytes = quarantine.finish()?;

    for r in &reports {
        report.lines += r.lines;
        report.events += r.events;
        report.empty_lines += r.empty_lines;
    }
    report.quarantined = quarantine.total;
    report.quarantined_by_reason = quarantine.by_reason.clone();
    report.quarantine_examples = std::mem::take(&mut quarantine.examples);
    let (bad, considered) = report.counted_lines();
    report.bad_fraction = if considered == 0 {
        0.0
    } else {
        bad as f64 / considered as f64
    };
    let mut lateness = LatenessHistogram::default();
    for f in &staged {
        lateness.merge(&f.lateness);
    }
    report.lateness_ms = lateness.summary();
    trace(started, "flushed");
    release_free_memory();
    let (copies, index) = counting.join()?;
    report.resends = copies.values().map(|c| c.resends).sum();
    report.id_conflicts = copies.values().map(|c| c.conflicts).sum();
    report.ids_on_other_dates = copies.values().map(|c| c.other_dates).sum();
    report.partitions = partition_reports(&staged, &copies);
    report.files_written = staged.len() as u64;
    report.inputs = reports;
    report
        .near_known_types
        .retain(|t| !read_by_lake_sql(lake, &t.event_type));
    if report.bad_fraction > opts.max_bad_fraction {
        report.status = Outcome::Rejected;
        for input in &mut report.inputs {
            if input.status == InputStatus::Ingested {
                input.status = InputStatus::Rejected;
            }
        }
        report.partitions.clear();
        report.files_written = 0;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    // What the commit will record (a dry run reports it too).
    let max_event_time = match (state.max_event_time, run_max) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    report.max_event_time = max_event_time.map(time::format_micros);
    report.min_event_time = staged
        .iter()
        .filter(|f| f.table == crate::bronze::TABLE)
        .map(|f| f.min_event_time)
        .min()
        .map(time::format_micros);
    report.watermark =
        late::advance_watermark(state.watermark, max_event_time, opts.watermark_delay)
            .map(time::format_micros);
    if opts.dry_run {
        // The staging guard removes everything staged.
        report.status = Outcome::DryRun;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }

    // Publish: rename data files into their partitions, then commit.
    let mut moves: Vec<(PathBuf, PathBuf)> = staged.iter().map(|f| f.publish_move(lake)).collect();
    let mut adds: Vec<FileAction> = staged.iter().map(StagedFile::to_action).collect();
    let rel = format!("{QUARANTINE_DIR}/{run_id}.jsonl");
    if quarantine_bytes.is_some() {
        moves.push((quarantine.path.clone(), lake.path(&rel)));
    }
    // The run's id index file (with any files it merges).
    let index_rel = format!("{}/{run_id}.ids", ids::DIR);
    moves.push((index_staged, lake.path(&index_rel)));
    lake::publish(lake, &moves)?;
    adds.push(FileAction::plain(
        ids::TABLE,
        "",
        index_rel,
        index.entries,
        index.bytes,
    ));
    if let Some(bytes) = quarantine_bytes {
        adds.push(FileAction::plain(
            QUARANTINE_TABLE,
            "",
            rel.clone(),
            quarantine.total,
            bytes,
        ));
        report.quarantine_file = Some(lake.path(&rel).display().to_string());
    }
    trace(started, "counted re-sends, renamed");

    let mut commit = Commit::next(&state, "ingest", opts.processing_time);
    commit.inputs = report
        .inputs
        .iter()
        .filter(|r| r.status == InputStatus::Ingested)
        .map(|r| InputBatch {
            batch_id: r.batch_id.clone(),
            hash: r.hash.clone(),
            source: r.source.clone(),
            bytes: r.bytes,
            lines: r.lines,
            events: r.events,
            empty_lines: r.empty_lines,
            quarantined: r.quarantined,
            resumed: r.resumed.clone(),
            head: r.head.clone(),
            ends_line: r.ends_line,
        })
        .collect();
    commit.add = adds;
    commit.resends = copies
        .iter()
        .map(|(date, c)| (time::format_date32(*date), c.resends))
        .collect();
    commit.id_conflicts = copies
        .iter()
        .filter(|(_, c)| c.conflicts > 0)
        .map(|(date, c)| (time::format_date32(*date), c.conflicts))
        .collect();
    commit.ids_on_other_dates = copies
        .iter()
        .filter(|(_, c)| c.other_dates > 0)
        .map(|(date, c)| (time::format_date32(*date), c.other_dates))
        .collect();
    commit.remove = index.merged.clone();
    commit.ids_indexed = true;
    commit.ids_rebuilt = index.rebuilt;
    commit.max_event_time = report.max_event_time.clone();
    commit.watermark = report.watermark.clone();
    commit.settings = BTreeMap::from([
        ("late_policy".to_string(), opts.late_policy.to_string()),
        (
            "watermark_delay".to_string(),
            time::format_duration_micros(opts.watermark_delay),
        ),
        (
            "allowed_lateness".to_string(),
            time::format_duration_micros(opts.allowed_lateness),
        ),
        (
            "max_future".to_string(),
            time::format_duration_micros(opts.max_future),
        ),
        (
            "min_event_time".to_string(),
            format_min_event_time(opts.min_event_time),
        ),
    ]);
    // Commits, then deletes the index files the new one replaced.
    crate::derive::finish_commit(lake, &commit)?;
    drop(staging);
    remember_hashes(lake, cache, &plan, clock);

    report.status = Outcome::Committed;
    report.version = commit.version;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// The ingest with the latest processing time, if that is after
/// `processing_time`.
fn later_ingest(state: &LakeState, processing_time: i64) -> Option<LaterIngest> {
    let (version, t) = state.latest_ingest?;
    (t > processing_time).then(|| LaterIngest {
        version,
        processing_time: time::format_micros(t),
    })
}

/// With `EVLAKE_TRACE=1`, print how long each ingest phase took (stderr).
fn trace(started: Instant, phase: &str) {
    crate::fault::trace(started, phase);
}

/// A thread joined when this is dropped, so an early return (an error)
/// does not leave it writing into a staging directory being removed.
struct JoinOnDrop<T>(Option<std::thread::JoinHandle<T>>);

impl<T> JoinOnDrop<T> {
    fn join(mut self) -> T {
        let h = self.0.take().expect("joined once");
        h.join().expect("worker thread panicked")
    }
}

impl<T> Drop for JoinOnDrop<T> {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

fn join_flush(h: std::thread::JoinHandle<Result<Vec<StagedFile>>>) -> Result<Vec<StagedFile>> {
    h.join().expect("flush thread panicked")
}

/// Of one partition's new events: how many repeat an `event_id`, and how
/// many of those bring a version of the event the partition did not have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Copies {
    /// Events whose `event_id` is already in the partition (committed
    /// bronze or side output, or earlier in the run).
    resends: u64,
    /// Distinct contents ([`bronze::Content`]) an `event_id` gained on the
    /// date: an id first seen with k versions counts k - 1, an id already
    /// committed counts every version it did not have. Silver keeps one
    /// copy per id and date, so each of these is a version it leaves out.
    conflicts: u64,
    /// `event_id`s new on the date that are on another date too (in the
    /// lake, or on an earlier date in this run): silver keeps a copy on
    /// each date, so each is counted twice or more downstream.
    other_dates: u64,
}

/// The id index file the run wrote to staging ([`crate::ids`]).
struct IndexPlan {
    /// Its entries: the run's `(id hash, date)` pairs, plus those of the
    /// committed files in `merged` (or, when `rebuilt`, of all bronze).
    entries: u64,
    bytes: u64,
    /// Committed index files the new file replaces.
    merged: Vec<FileAction>,
    /// The index did not cover the lake's bronze (a lake written before
    /// the index existed, or a new one): `entries` hold all of it.
    rebuilt: bool,
}

/// Per partition, the re-sends and id conflicts among the run's events
/// (`keys`: `(event_id hash, event_date, content hash)` each), from the
/// keys in order and, for each id, the lake's entries of it in the id
/// index (no bronze is read). Meanwhile, writes the index file the commit
/// adds to `index_path` (fsynced). Streams the keys (from disk, when they
/// were spilled) and the index (memory-mapped): memory does not grow with
/// the run or the lake.
fn count_copies(
    lake: &Lake,
    state: &LakeState,
    keys: keys::Sorted,
    index_path: &std::path::Path,
    keys_in_memory: usize,
) -> Result<(BTreeMap<i32, Copies>, IndexPlan)> {
    if keys.spilled() > 0 {
        fault::trace_note(&format!(
            "event keys spilled to staging in {} sorted run(s)",
            keys.spilled()
        ));
    }
    let committed_files = ids::committed(state);
    // The lake's index files; one that cannot be read (deleted or damaged
    // by hand, or written by an older evlake) gets the index rebuilt from
    // bronze, as for a lake without one.
    let opened = if !state.id_index_covers {
        None
    } else {
        match ids::open_all(lake, &committed_files) {
            Ok(opened) => Some(opened),
            Err(e) => {
                crate::commands::status(
                    "Warning",
                    format_args!("{e:#}; rebuilding the id index from bronze"),
                );
                None
            }
        }
    };
    let rebuilt = opened.is_none();
    let opened = opened.unwrap_or_default();
    let merged: Vec<FileAction> = if rebuilt {
        committed_files.iter().map(|f| (*f).clone()).collect()
    } else if committed_files.is_empty() {
        Vec::new()
    } else {
        ids::to_merge(&committed_files, keys.distinct().count() as u64)
            .into_iter()
            .cloned()
            .collect()
    };
    keys.error()?;
    // Rebuilding: bronze's entries, spilled beside the run's keys.
    let base = if rebuilt {
        let dir = index_path
            .parent()
            .context("the index file has a directory")?
            .join("rebuilt-index");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create `{}`", dir.display()))?;
        let mut spool = keys::Spool::new(&dir, keys_in_memory, 0);
        ids::from_bronze(lake, state, &mut spool)?;
        let base = spool.finish()?;
        if base.spilled() > 0 {
            fault::trace_note(&format!(
                "bronze's index entries spilled to staging in {} sorted run(s)",
                base.spilled()
            ));
        }
        Some(base)
    } else {
        None
    };
    // The new file: the run's entries, merged with the files it replaces
    // (or all of bronze's), streamed to disk while the copies are counted.
    let merged_paths: HashSet<&str> = merged.iter().map(|f| f.path.as_str()).collect();
    let to_merge: Vec<&ids::IndexFile> = committed_files
        .iter()
        .zip(&opened)
        .filter(|(f, _)| merged_paths.contains(f.path.as_str()))
        .map(|(_, o)| o)
        .collect();
    let (copies, written) = std::thread::scope(|scope| {
        // The counting pass hands the run's distinct keys on in batches:
        // the keys are read (and, spilled, merged) once for both.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<keys::Key>>(4);
        let (base, to_merge) = (&base, &to_merge);
        let writer = scope.spawn(move || {
            let mut sources: Vec<Box<dyn Iterator<Item = ids::Entry> + Send + '_>> =
                vec![Box::new(rx.into_iter().flatten())];
            sources.extend(base.iter().map(|b| Box::new(b.distinct()) as Box<_>));
            sources.extend(to_merge.iter().map(|f| Box::new(f.entries()) as Box<_>));
            ids::write_sorted(index_path, ids::union(sources))
        });
        let probe = ids::Probe::new(
            &opened,
            base.as_ref().map(|b| Box::new(b.distinct()) as Box<_>),
        );
        let copies = count_sorted(&keys, probe, tx);
        (copies, writer.join().expect("index writer panicked"))
    });
    // A run that could not be read back ended its readers early.
    keys.error()?;
    if let Some(b) = &base {
        b.error()?;
    }
    let (entries, bytes) = written?;
    Ok((
        copies,
        IndexPlan {
            entries,
            bytes,
            merged,
            rebuilt,
        },
    ))
}

/// [`count_copies`] over `keys`, with `lake` giving the entries the lake
/// already has of each id; sends the distinct keys on to `distinct`, in
/// order and in batches.
fn count_sorted(
    keys: &keys::Sorted,
    mut lake: ids::Probe,
    distinct: std::sync::mpsc::SyncSender<Vec<keys::Key>>,
) -> BTreeMap<i32, Copies> {
    let Some((lo, hi)) = keys.dates() else {
        return BTreeMap::new();
    };
    const BATCH: usize = 16 * 1024;
    let mut batch = Vec::with_capacity(BATCH);
    let mut per_date: Vec<Option<Copies>> = vec![None; (hi - lo + 1) as usize];
    // One id's keys at a time (sorted by date, then content).
    let mut count = |group: &[keys::Key]| {
        let id = group[0].0;
        // Its `(date, content)` entries in the lake, and its first date in
        // the run.
        let had = lake.entries_of(id);
        let first_date = group[0].1;
        for copies in group.chunk_by(|a, b| a.1 == b.1) {
            let date = copies[0].1;
            let on_date = {
                let at = had.partition_point(|(d, _)| *d < date);
                &had[at..had.partition_point(|(d, _)| *d <= date)]
            };
            let was_here = !on_date.is_empty();
            let c = per_date[(date - lo) as usize].get_or_insert_default();
            c.resends += (copies.len() - usize::from(!was_here)) as u64;
            // Sorted by content within the date: count the distinct ones.
            let versions = copies.chunk_by(|a, b| a.2 == b.2).map(|v| v[0].2);
            c.conflicts += if was_here {
                versions
                    .filter(|v| on_date.binary_search(&(date, *v)).is_err())
                    .count() as u64
            } else {
                versions.count() as u64 - 1
            };
            if !was_here {
                let elsewhere = date != first_date || had.iter().any(|(d, _)| *d != date);
                c.other_dates += u64::from(elsewhere);
            }
        }
    };
    let mut group: Vec<keys::Key> = Vec::new();
    for key in keys.iter() {
        if group.first().is_some_and(|g| g.0 != key.0) {
            count(&group);
            group.clear();
        }
        if group.last() != Some(&key) {
            batch.push(key);
            if batch.len() == BATCH {
                // (A writer that failed stopped listening; it reports why.)
                let _ = distinct.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
            }
        }
        group.push(key);
    }
    if !group.is_empty() {
        count(&group);
    }
    let _ = distinct.send(batch);
    per_date
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| c.map(|c| (lo + i as i32, c)))
        .collect()
}

fn partition_reports(
    staged: &[StagedFile],
    copies: &BTreeMap<i32, Copies>,
) -> Vec<PartitionReport> {
    let mut by_date: BTreeMap<i32, PartitionReport> = BTreeMap::new();
    for f in staged {
        let p = by_date
            .entry(f.event_date)
            .or_insert_with(|| PartitionReport {
                event_date: time::format_date32(f.event_date),
                events: 0,
                late: 0,
                side_output: 0,
                resends: copies.get(&f.event_date).map_or(0, |c| c.resends),
                id_conflicts: copies.get(&f.event_date).map_or(0, |c| c.conflicts),
                ids_on_other_dates: copies.get(&f.event_date).map_or(0, |c| c.other_dates),
                files: 0,
            });
        if f.table == bronze::LATE_TABLE {
            p.side_output += f.rows;
        } else {
            p.events += f.rows;
            p.files += 1;
        }
        p.late += f.late_rows;
    }
    by_date.into_values().collect()
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "   Ingesting [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb
}
