//! `evlake ingest`: wire flags to [`crate::ingest::ingest`] and report.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::Path;

use anyhow::Result;
use clap::ValueEnum;

use super::{
    MemoryLimit, parse_duration_arg, parse_fraction_arg, parse_instant_arg, parse_size_arg,
    print_json, status, status_under,
};
use crate::config::{self, Config};
use crate::ingest::{self, IngestOptions, IngestReport, InputStatus, Outcome};
use crate::lake::Lake;
use crate::late::LatePolicy;
use crate::time::{self, NaiveTimestamps};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NaiveArg {
    /// Quarantine timestamps without an offset (timestamp_without_offset)
    Reject,
    /// Read timestamps without an offset as UTC
    Utc,
}

fn parse_naive(s: &str) -> Result<NaiveTimestamps, String> {
    match s {
        "reject" => Ok(NaiveTimestamps::Reject),
        "utc" => Ok(NaiveTimestamps::Utc),
        _ => Err(format!(
            "`{s}` is not a naive-timestamp mode; use reject or utc"
        )),
    }
}

fn parse_policy(s: &str) -> Result<LatePolicy, String> {
    s.parse()
}

/// Late-data and input settings shared by `ingest` and `run`. Each one
/// defaults to `LAKE/evlake.toml`, then to the built-in default.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct IngestSettings {
    /// Pin the run's processing time (RFC 3339), e.g. 2024-03-16T02:00:00Z
    /// [default: now]
    #[arg(long, value_name = "T", value_parser = parse_instant_arg)]
    pub processing_time: Option<i64>,

    /// Where late events go: reopen (their historical partition), side-output
    /// (bronze/late, until `evlake reconcile`) or grace (side output only past
    /// --allowed-lateness), e.g. --late-policy grace [default: reopen]
    #[arg(long, value_name = "POLICY", value_parser = parse_policy)]
    pub late_policy: Option<LatePolicy>,

    /// The watermark trails the largest committed event time by this much,
    /// e.g. 30m [default: 1h]
    #[arg(long, value_name = "DUR", value_parser = parse_duration_arg)]
    pub watermark_delay: Option<i64>,

    /// With --late-policy grace: how long past the end of its day (by the
    /// watermark) an event may still reopen its partition, e.g. 48h [default: 24h]
    #[arg(long, value_name = "DUR", value_parser = parse_duration_arg)]
    pub allowed_lateness: Option<i64>,

    /// Quarantine events more than this far after the processing time
    /// (future_timestamp), e.g. 6h [default: 1d]
    #[arg(long, value_name = "DUR", value_parser = parse_duration_arg)]
    pub max_future: Option<i64>,

    /// Quarantine events before this instant (timestamp_too_old): epoch
    /// seconds sent as milliseconds land in January 1970. RFC 3339, a date
    /// (its midnight, UTC) or none, e.g. 1990-01-01 [default: 2000-01-01]
    #[arg(long, value_name = "T", value_parser = ingest::parse_min_event_time)]
    pub min_event_time: Option<i64>,

    /// Fail with exit 4, committing nothing, when more than this fraction of
    /// non-empty lines is quarantined, e.g. 0.01 [default: 0.05]
    #[arg(long, value_name = "F", value_parser = parse_fraction_arg)]
    pub max_bad_fraction: Option<f64>,

    /// Timestamps without a UTC offset: reject (quarantine) or utc, e.g. utc
    /// [default: reject]
    #[arg(long, value_enum, value_name = "MODE")]
    pub naive_timestamps: Option<NaiveArg>,

    /// Fail with exit 4, committing nothing, on a line longer than this (a
    /// guard against a JSON array or a binary file given as NDJSON, which
    /// would be read into memory whole), e.g. 256M; `none` for no limit
    /// [default: 64M]
    #[arg(long, value_name = "BYTES", value_parser = parse_size_arg)]
    pub max_line_bytes: Option<MemoryLimit>,

    /// In a directory given as an input, read the files whose name matches
    /// this glob (repeatable), not the *.jsonl, *.ndjson and *.json ones,
    /// e.g. --include '*' for Kinesis Firehose's objects, which have no
    /// extension [default: ingest.include in evlake.toml, else those names]
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
}

impl IngestSettings {
    /// Combine flags, `evlake.toml` and built-in defaults into ingest options.
    pub fn resolve(&self, cfg: &Config, inputs: Vec<OsString>) -> Result<IngestOptions> {
        let cfg = &cfg.ingest;
        let processing_time = super::processing_time_or_now(self.processing_time);
        let buffer_bytes = ingest::buffer_bytes();
        let keys_in_memory = ingest::keys_in_memory(buffer_bytes);
        let naive = self.naive_timestamps.map(|n| match n {
            NaiveArg::Reject => NaiveTimestamps::Reject,
            NaiveArg::Utc => NaiveTimestamps::Utc,
        });
        let hour = 3600 * time::MICROS_PER_SECOND;
        let (patterns, from) = if self.include.is_empty() {
            (
                cfg.include.clone().unwrap_or_default(),
                "ingest.include in evlake.toml",
            )
        } else {
            (self.include.clone(), "--include")
        };
        let names = ingest::input::Names::new(&patterns)
            .map_err(|e| crate::error::Failure::Usage(format!("{from}: {e}")))?;
        let opts = IngestOptions {
            inputs,
            names,
            processing_time,
            max_bad_fraction: config::resolve(
                self.max_bad_fraction,
                cfg.max_bad_fraction.map(|f| f.to_string()).as_deref(),
                "ingest.max_bad_fraction",
                parse_fraction_arg,
                0.05,
            )?,
            naive_timestamps: config::resolve(
                naive,
                cfg.naive_timestamps.as_deref(),
                "ingest.naive_timestamps",
                parse_naive,
                NaiveTimestamps::Reject,
            )?,
            max_line_bytes: config::resolve(
                self.max_line_bytes,
                cfg.max_line_bytes.as_deref(),
                "ingest.max_line_bytes",
                parse_size_arg,
                MemoryLimit(Some(ingest::DEFAULT_MAX_LINE_BYTES)),
            )?
            .0
            .unwrap_or(usize::MAX),
            max_future: config::resolve(
                self.max_future,
                cfg.max_future.as_deref(),
                "ingest.max_future",
                parse_duration_arg,
                24 * hour,
            )?,
            min_event_time: config::resolve(
                self.min_event_time,
                cfg.min_event_time.as_deref(),
                "ingest.min_event_time",
                ingest::parse_min_event_time,
                ingest::DEFAULT_MIN_EVENT_TIME,
            )?,
            late_policy: config::resolve(
                self.late_policy,
                cfg.late_policy.as_deref(),
                "ingest.late_policy",
                parse_policy,
                LatePolicy::Reopen,
            )?,
            watermark_delay: config::resolve(
                self.watermark_delay,
                cfg.watermark_delay.as_deref(),
                "ingest.watermark_delay",
                parse_duration_arg,
                hour,
            )?,
            allowed_lateness: config::resolve(
                self.allowed_lateness,
                cfg.allowed_lateness.as_deref(),
                "ingest.allowed_lateness",
                parse_duration_arg,
                24 * hour,
            )?,
            buffer_bytes,
            keys_in_memory,
            progress: std::io::stderr().is_terminal() && !crate::report::quiet(),
            dry_run: false,
            reingest_retracted: false,
        };
        // A grace period set for another policy does nothing: most often
        // `--late-policy grace` was meant.
        if opts.late_policy != LatePolicy::Grace {
            let set = match (self.allowed_lateness, &cfg.allowed_lateness) {
                (Some(_), _) => Some("--allowed-lateness"),
                (None, Some(_)) => Some("ingest.allowed_lateness in evlake.toml"),
                (None, None) => None,
            };
            if let Some(set) = set {
                super::status(
                    "Warning",
                    format_args!(
                        "{set} has no effect with late policy {}: it is the grace period of \
                         --late-policy grace",
                        opts.late_policy
                    ),
                );
            }
        }
        Ok(opts)
    }
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake ingest sample_data/                      # every *.jsonl/*.ndjson/*.json[.gz|.zst] below it
  evlake ingest day1.jsonl.gz day2.jsonl --json   # summary as JSON on stdout
  zcat big.ndjson.gz | evlake ingest - --processing-time 2024-03-16T02:00:00Z
  evlake ingest late.jsonl --late-policy grace --allowed-lateness 48h
  evlake ingest export.jsonl --dry-run             # what it would commit or quarantine; no change

Settings not given as flags come from LAKE/evlake.toml (see `evlake init`).
Re-ingesting content that is already committed is a reported no-op.")]
pub struct Args {
    /// NDJSON files, directories (searched recursively) or `-` for stdin
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<OsString>,

    #[command(flatten)]
    pub settings: IngestSettings,

    /// Ingest inputs whose content `evlake retract` took back, again
    /// (they are skipped otherwise, so a re-run does not bring them back)
    #[arg(long)]
    pub reingest_retracted: bool,

    /// Read and check the inputs and report what the ingest would commit
    /// (events per partition, late events, quarantined lines, the
    /// watermark), changing nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Print the run summary as one JSON object on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    let lake = Lake::new(lake_dir);
    // A dry run into a lake that does not exist yet leaves no directory.
    let _no_trace = args.dry_run.then(|| lake.no_trace());
    let mut opts = args.settings.resolve(&Config::load(&lake)?, args.inputs)?;
    opts.reingest_retracted = args.reingest_retracted;
    opts.dry_run = args.dry_run;
    let report = ingest::ingest(&lake, &opts)?;
    print_human(&report);
    if args.json {
        print_json(&report)?;
    }
    if report.status == Outcome::Rejected {
        return Err(report.rejection().into());
    }
    Ok(())
}

fn partition_notes(p: &ingest::PartitionReport) -> String {
    let mut notes = Vec::new();
    if p.late > 0 {
        notes.push(format!("{} late", p.late));
    }
    if p.side_output > 0 {
        notes.push(format!("{} to the side output", p.side_output));
    }
    if p.resends > 0 {
        notes.push(format!("{} re-sent", p.resends));
    }
    if p.id_conflicts > 0 {
        notes.push(format!("{} with other content", p.id_conflicts));
    }
    if p.ids_on_other_dates > 0 {
        notes.push(format!(
            "{} id(s) also on another date",
            p.ids_on_other_dates
        ));
    }
    if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join(", "))
    }
}

/// Up to this many bronze partitions get a `Partition` line each; more
/// share one line with their sums (`--json` lists each).
const PARTITIONS_EACH: usize = 8;

/// Up to this many inputs of one kind (read, skipped) get a line each;
/// more share one line (an inbox of 3,000 files, re-run hourly, printed
/// 3,000 `Skipped` lines every hour). `--json` lists each.
const INPUTS_EACH: usize = 5;

/// The `Read` and `Skipped` lines of a run's inputs.
fn print_inputs(inputs: &[crate::ingest::InputReport]) {
    use super::each_or_all;
    use crate::ingest::InputReport;
    let of =
        |s: InputStatus| -> Vec<&InputReport> { inputs.iter().filter(|i| i.status == s).collect() };
    // The first and last by name (the inputs are in the order given).
    let span = |is: &[&InputReport]| {
        let first = is.iter().map(|i| &i.source).min();
        let last = is.iter().map(|i| &i.source).max();
        let name = |s: Option<&String>| s.cloned().unwrap_or_default();
        format!("{} inputs ({} … {})", is.len(), name(first), name(last))
    };
    let counts = |is: &[&InputReport]| {
        let sum = |f: fn(&InputReport) -> u64| is.iter().map(|i| f(i)).sum::<u64>();
        format!(
            "{} lines, {} events, {} quarantined, {} empty",
            sum(|i| i.lines),
            sum(|i| i.events),
            sum(|i| i.quarantined),
            sum(|i| i.empty_lines)
        )
    };
    // A rejected run's inputs were read too (the run's line says nothing
    // was committed).
    let read: Vec<&InputReport> = inputs
        .iter()
        .filter(|i| matches!(i.status, InputStatus::Ingested | InputStatus::Rejected))
        .collect();
    each_or_all(
        "Read",
        &read,
        INPUTS_EACH,
        |i| {
            let Some(r) = &i.resumed else {
                return format!("{}: {}", i.source, counts(&[i]));
            };
            // The log it begins with, when under another name.
            let was = if r.source.is_empty() {
                "a log".to_string()
            } else {
                format!("`{}`", r.source)
            };
            let why = match (r.decompressed, r.source.is_empty()) {
                (true, _) => {
                    format!("its text begins with {was} as ingested before it was compressed")
                }
                (false, false) => format!("it begins with {was} as ingested, a log rotated since"),
                (false, true) => "the file grew since it was ingested".to_string(),
            };
            let text = if r.decompressed { "text " } else { "" };
            format!(
                "{}: {} ({why}: read from line {}, {text}byte {}, on)",
                i.source,
                counts(&[i]),
                r.line,
                r.byte
            )
        },
        |is| {
            let grown = is.iter().filter(|i| i.resumed.is_some()).count();
            let note = if grown > 0 {
                format!(
                    " ({grown} begin with content already ingested, grown or rotated since: read \
                     from where it ended)"
                )
            } else {
                String::new()
            };
            format!("{}: {}{note}", span(is), counts(is))
        },
    );
    let known = of(InputStatus::AlreadyIngested);
    each_or_all(
        "Skipped",
        &known,
        INPUTS_EACH,
        |i| {
            let commit = i.committed_in.unwrap_or_default();
            format!(
                "{}: already ingested in commit {commit}{}",
                i.source,
                same_bytes(i)
            )
        },
        |is| {
            let commits: std::collections::BTreeSet<u64> =
                is.iter().filter_map(|i| i.committed_in).collect();
            let first = commits.first().copied().unwrap_or_default();
            let last = commits.last().copied().unwrap_or_default();
            let commits = if first == last {
                format!("commit {first}")
            } else {
                format!("commits {first} to {last}")
            };
            format!("{}: already ingested, in {commits}", span(is))
        },
    );
    let retracted = of(InputStatus::Retracted);
    each_or_all(
        "Skipped",
        &retracted,
        INPUTS_EACH,
        |i| {
            format!(
                "{}: retracted in commit {}{} (--reingest-retracted takes it in again)",
                i.source,
                i.retracted_in.unwrap_or_default(),
                same_bytes(i)
            )
        },
        |is| {
            format!(
                "{}: retracted (--reingest-retracted takes them in again)",
                span(is)
            )
        },
    );
    let twice = of(InputStatus::DuplicateInRun);
    each_or_all(
        "Skipped",
        &twice,
        INPUTS_EACH,
        |i| match &i.same_as {
            Some(first) => format!("{}: the same bytes as {first}, given before it", i.source),
            None => format!("{}: same content given twice", i.source),
        },
        |is| format!("{}: same content given twice", span(is)),
    );
}

/// `, as NAME (the same bytes)` for an input skipped for the bytes of
/// another name's.
fn same_bytes(i: &ingest::InputReport) -> String {
    i.same_as
        .as_ref()
        .map(|n| format!(", as {n} (the same bytes)"))
        .unwrap_or_default()
}

pub fn print_human(r: &IngestReport) {
    super::print_orphans(&r.orphans_removed);
    print_inputs(&r.inputs);
    super::status_first("Ignored", &r.ignored, "ignored_files", |i| {
        format!("{}: {}", i.path, i.why)
    });
    // `zcat missing.gz | evlake ingest -` reads nothing and succeeds: in a
    // cron log (with -q too) that is worth a line, not only `0 lines`.
    if r.inputs
        .iter()
        .any(|i| i.source == ingest::input::STDIN && i.bytes == 0)
    {
        status(
            "Warning",
            "stdin was empty: nothing was read from it (if a command feeds it, did that \
             command fail? `set -o pipefail` makes the shell's exit status say so)",
        );
    }
    super::each_or_all(
        "Partition",
        &r.partitions,
        PARTITIONS_EACH,
        |p| {
            format!(
                "event_date={} {:>9} events in {} file(s){}",
                p.event_date,
                p.events,
                p.files,
                partition_notes(p)
            )
        },
        |ps| {
            // Their sums (the partitions are in date order).
            let sum = |f: fn(&ingest::PartitionReport) -> u64| ps.iter().map(f).sum();
            let total = ingest::PartitionReport {
                event_date: String::new(),
                events: sum(|p| p.events),
                late: sum(|p| p.late),
                side_output: sum(|p| p.side_output),
                resends: sum(|p| p.resends),
                id_conflicts: sum(|p| p.id_conflicts),
                ids_on_other_dates: sum(|p| p.ids_on_other_dates),
                files: sum(|p| p.files),
            };
            let (first, last) = (&ps[0].event_date, &ps[ps.len() - 1].event_date);
            format!(
                "{} dates from {first} to {last} {:>9} events in {} file(s){}",
                ps.len(),
                total.events,
                total.files,
                partition_notes(&total)
            )
        },
    );
    if !r.near_known_types.is_empty() {
        let n: u64 = r.near_known_types.iter().map(|t| t.events).sum();
        let list = r
            .near_known_types
            .iter()
            .map(|t| format!("{:?} ({}) for `{}`", t.event_type, t.events, t.known))
            .collect::<Vec<_>>()
            .join(", ");
        status(
            "Warning",
            format!(
                "{n} event(s) have a type that differs from one silver reads only in case or \
                 separators: {list}. Types are read exactly, so these are in `events` but in no \
                 typed table, nor counted in daily_metrics: fix the producer (README: event \
                 types)"
            ),
        );
    }
    if r.id_conflicts > 0 {
        status(
            "Warning",
            format!(
                "{} event(s) repeat an event_id already on their date with other content \
                 (type, user, time, properties, ...); silver keeps the first copy of each \
                 id, so these versions stay in bronze only (README: id conflicts)",
                r.id_conflicts
            ),
        );
    }
    if let Some(l) = &r.later_ingest {
        status(
            "Warning",
            format!(
                "--processing-time {} is before that of an earlier ingest (commit {}, {}): \
                 --known-at answers, and which copy of a re-sent event silver keeps, follow \
                 processing time, not the order the batches arrived in",
                r.processing_time, l.version, l.processing_time
            ),
        );
    }
    // Most of the run already in bronze, byte for byte per event: likely an
    // ingested file that came back renamed or compressed again, which the
    // input hash (of its bytes) cannot tell.
    let exact_copies = r.resends - r.id_conflicts;
    if exact_copies > 0 && exact_copies * 2 > r.events {
        status(
            "Warning",
            format!(
                "{exact_copies} of the {} event(s) are exact copies of events already on \
                 their date: is an ingested file back under another name or compression? \
                 An input is skipped only when its bytes were committed before; bronze keeps \
                 the copies (counted in `resends`), silver one of each",
                r.events
            ),
        );
    }
    if r.ids_on_other_dates > 0 {
        status(
            "Warning",
            format!(
                "{} event_id(s) are on another date too (a re-send whose time moved it to \
                 another day, or an id reused); silver keeps a copy on each date, so daily \
                 counts and sums include both (README: id conflicts)",
                r.ids_on_other_dates
            ),
        );
    }
    // Lines a writer may still be at (read again once the file grows) are
    // said on their own below: a run whose only quarantined lines they
    // are went well, and prints nothing with --quiet.
    if r.quarantined > r.unfinished_lines.len() as u64 {
        let reasons: Vec<String> = r
            .quarantined_by_reason
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        status(
            "Quarantined",
            format!(
                "{} line(s) ({:.2}%): {}{}",
                r.quarantined,
                r.bad_fraction * 100.0,
                reasons.join(", "),
                r.quarantine_file
                    .as_deref()
                    .map(|f| format!(" → {f}"))
                    .unwrap_or_default()
            ),
        );
        for e in &r.quarantine_examples {
            status_under("Quarantined", e);
        }
        let more = r.quarantined - r.quarantine_examples.len() as u64;
        if more > 0 {
            status_under(
                "Quarantined",
                if r.quarantine_file.is_some() {
                    format!("... {more} more in the quarantine file")
                } else if r.status == Outcome::DryRun {
                    format!("... {more} more, which the run would keep in the quarantine file")
                } else {
                    // Rejected: no quarantine file was committed.
                    format!(
                        "... {more} more, kept nowhere as nothing was committed (a higher \
                         --max-bad-fraction commits the good lines and quarantines these)"
                    )
                },
            );
        }
    }
    for l in &r.unfinished_lines {
        status(
            "Unfinished",
            format!(
                "{l}: the file's last line has no newline and is not an event (a writer \
                 still at it?): kept in the quarantine as read, read again from its start \
                 once the file grows, not counted against --max-bad-fraction"
            ),
        );
    }
    if let Some(l) = &r.lateness_ms {
        let d = |ms: u64| time::format_duration_micros(ms as i64 * 1000);
        status(
            "Lateness",
            format!(
                "p50 {} p90 {} p99 {} max {}",
                d(l.p50_ms),
                d(l.p90_ms),
                d(l.p99_ms),
                d(l.max_ms)
            ),
        );
    }
    if let Some(w) = &r.watermark {
        status(
            "Watermark",
            format!(
                "{w} (was {}); {} late event(s), {} to the side output (policy {})",
                r.watermark_before.as_deref().unwrap_or("unset"),
                r.late_events,
                r.side_output_events,
                r.late_policy
            ),
        );
    }
    let secs = r.elapsed_ms as f64 / 1000.0;
    match r.status {
        Outcome::Committed => status(
            "Committed",
            format!(
                "version {}: {} events in {} file(s) to {} in {secs:.2}s",
                r.version, r.events, r.files_written, r.lake
            ),
        ),
        Outcome::Noop => status(
            "Unchanged",
            format!("nothing new to ingest (lake at version {})", r.version),
        ),
        Outcome::DryRun => status(
            "Dry run",
            format!(
                "would commit {} events in {} file(s); nothing changed",
                r.events, r.files_written
            ),
        ),
        Outcome::Rejected => status(
            "Rejected",
            format!(
                "{:.2}% of lines are bad (limit {}); nothing committed",
                r.bad_fraction * 100.0,
                r.max_bad_fraction
            ),
        ),
    }
}
