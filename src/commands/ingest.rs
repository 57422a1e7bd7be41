//! `evlake ingest`: wire flags to [`crate::ingest::ingest`] and report.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Result;
use clap::ValueEnum;

use super::{parse_duration_arg, parse_fraction_arg, parse_instant_arg, print_json, status};
use crate::error::Failure;
use crate::ingest::{self, IngestOptions, IngestReport, InputStatus, Outcome};
use crate::lake::Lake;
use crate::time::{self, NaiveTimestamps};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NaiveArg {
    /// Quarantine timestamps without an offset (timestamp_without_offset)
    Reject,
    /// Read timestamps without an offset as UTC
    Utc,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake ingest sample_data/                      # every *.jsonl/*.ndjson/*.json[.gz|.zst] below it
  evlake ingest day1.jsonl.gz day2.jsonl --json   # summary as JSON on stdout
  zcat big.ndjson.gz | evlake ingest - --processing-time 2024-03-16T02:00:00Z

Re-ingesting content that is already committed is a reported no-op.")]
pub struct Args {
    /// NDJSON files, directories (searched recursively) or `-` for stdin
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,

    /// Pin the run's processing time (RFC 3339), e.g. 2024-03-16T02:00:00Z
    /// [default: now]
    #[arg(long, value_name = "T", value_parser = parse_instant_arg)]
    pub processing_time: Option<i64>,

    /// Fail with exit 4, committing nothing, when more than this fraction of
    /// non-empty lines is quarantined, e.g. 0.01
    #[arg(long, value_name = "F", default_value = "0.05", value_parser = parse_fraction_arg)]
    pub max_bad_fraction: f64,

    /// Quarantine events more than this far after the processing time
    /// (future_timestamp), e.g. 6h
    #[arg(long, value_name = "DUR", default_value = "1d", value_parser = parse_duration_arg)]
    pub max_future: i64,

    /// What to do with timestamps that have no UTC offset, e.g. `utc`
    #[arg(long, value_enum, value_name = "MODE", default_value = "reject")]
    pub naive_timestamps: NaiveArg,

    /// Print the run summary as one JSON object on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    let lake = Lake::new(lake_dir);
    let processing_time = args
        .processing_time
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros());
    let buffer_bytes = std::env::var("EVLAKE_BUFFER_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(ingest::DEFAULT_BUFFER_BYTES, |mb| mb.max(1) << 20);
    let opts = IngestOptions {
        inputs: args.inputs,
        processing_time,
        max_bad_fraction: args.max_bad_fraction,
        naive_timestamps: match args.naive_timestamps {
            NaiveArg::Reject => NaiveTimestamps::Reject,
            NaiveArg::Utc => NaiveTimestamps::Utc,
        },
        max_future: args.max_future,
        buffer_bytes,
        progress: std::io::stderr().is_terminal(),
    };
    let report = ingest::ingest(&lake, &opts)?;
    print_human(&report);
    if args.json {
        print_json(&report)?;
    }
    if report.status == Outcome::Rejected {
        return Err(Failure::Rejected {
            bad: report.quarantined,
            considered: report.events + report.quarantined,
            max_fraction: report.max_bad_fraction,
        }
        .into());
    }
    Ok(())
}

fn print_human(r: &IngestReport) {
    for o in &r.orphans_removed {
        status(
            "Removed",
            format!("orphan `{o}` left by an interrupted run"),
        );
    }
    for i in &r.inputs {
        match i.status {
            InputStatus::Ingested => status(
                "Read",
                format!(
                    "{}: {} lines, {} events, {} quarantined, {} empty",
                    i.source, i.lines, i.events, i.quarantined, i.empty_lines
                ),
            ),
            InputStatus::AlreadyIngested => status(
                "Skipped",
                format!(
                    "{}: already ingested in commit {}",
                    i.source,
                    i.committed_in.unwrap_or_default()
                ),
            ),
            InputStatus::DuplicateInRun => {
                status("Skipped", format!("{}: same content given twice", i.source))
            }
        }
    }
    for p in &r.partitions {
        status(
            "Partition",
            format!(
                "event_date={} {:>9} events in {} file(s)",
                p.event_date, p.events, p.files
            ),
        );
    }
    if r.quarantined > 0 {
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
