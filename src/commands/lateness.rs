//! `evlake lateness`: the lateness distribution, per partition or per batch.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use clap::ValueEnum;

use super::ReportFormat;
use crate::lake::Lake;
use crate::lateness::LatenessHistogram;
use crate::log::{self, LakeState};
use crate::report::{self, LatenessRow};
use crate::time::format_duration_micros;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum By {
    /// One row per event_date (live bronze + side output)
    Partition,
    /// One row per ingest commit
    Batch,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake lateness                      # histogram + one row per partition (the newest 30)
  evlake lateness --by batch --all     # one row per ingest commit, every one
  evlake lateness --by batch --format csv > lateness.csv

Lateness is processing_time - event_timestamp. 'on time' counts events whose
partition was still open (by the watermark) when they arrived; late events
are bucketed by lateness. Reads only the commit log.")]
pub struct Args {
    /// Group by partition or by ingest batch, e.g. --by batch
    #[arg(long, value_enum, default_value = "partition")]
    pub by: By,

    /// Output format, e.g. --format csv
    #[arg(long, value_enum, ignore_case = true, default_value = "table")]
    pub format: ReportFormat,

    /// List every row in the table format, not only the newest 30 (csv and
    /// json always have every one)
    #[arg(long)]
    pub all: bool,
}

fn d(ms: u64) -> String {
    format_duration_micros(ms as i64 * 1000)
}

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    let lake = Lake::new(lake_dir);
    lake.require()?;
    let rows = match args.by {
        By::Partition => report::lateness_by_partition(&LakeState::load(&lake)?),
        By::Batch => {
            let commits = log::read_commits(&lake)?;
            let first = commits.first().map_or(1, |c| c.version);
            if first > 1 {
                super::status(
                    "Note",
                    format!(
                        "commits 1 to {} were removed by [log] retention: their batches are not listed",
                        first - 1
                    ),
                );
            }
            report::lateness_by_batch(&commits)
        }
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        ReportFormat::Json => super::print_json_lines(&rows)?,
        ReportFormat::Csv => {
            writeln!(
                out,
                "key,sources,events,late,side_output,p50_ms,p90_ms,p99_ms,max_ms,on_time,late_under_1h,late_1h_to_24h,late_over_24h"
            )?;
            for r in &rows {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    crate::csvout::field(&r.key),
                    crate::csvout::field(&r.sources),
                    r.events,
                    r.late,
                    r.side_output,
                    r.p50_ms,
                    r.p90_ms,
                    r.p99_ms,
                    r.max_ms,
                    r.on_time,
                    r.late_under_1h,
                    r.late_1h_to_24h,
                    r.late_over_24h
                )?;
            }
        }
        ReportFormat::Table => print_table(&mut out, &rows, args.by, args.all)?,
    }
    Ok(())
}

fn print_table(out: &mut impl Write, rows: &[LatenessRow], by: By, every_row: bool) -> Result<()> {
    let mut all = LatenessHistogram::default();
    for r in rows {
        all.merge(&r.histogram);
    }
    let total = |f: fn(&LatenessRow) -> u64| rows.iter().map(f).sum::<u64>();
    let buckets = [
        ("on time", total(|r| r.on_time)),
        ("late < 1h", total(|r| r.late_under_1h)),
        ("late 1-24h", total(|r| r.late_1h_to_24h)),
        ("late > 24h", total(|r| r.late_over_24h)),
    ];
    writeln!(
        out,
        "lateness (processing_time - event_timestamp) of {} events\n  (late: arrived after \
         its date's partition closed; on time: before that, however long after the event)",
        all.count
    )?;
    let widest = buckets.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    for (name, n) in buckets {
        let bar = (n * 40).div_ceil(widest) as usize;
        let pct = if all.count == 0 {
            0.0
        } else {
            n as f64 * 100.0 / all.count as f64
        };
        writeln!(
            out,
            "  {name:<11} {:<40} {n:>9} {pct:5.1}%",
            "#".repeat(bar)
        )?;
    }
    if let Some(s) = all.summary() {
        writeln!(
            out,
            "  p50 {}  p90 {}  p99 {}  max {}",
            d(s.p50_ms),
            d(s.p90_ms),
            d(s.p99_ms),
            d(s.max_ms)
        )?;
    }
    writeln!(out)?;
    let key = match by {
        By::Partition => "event_date",
        By::Batch => "commit",
    };
    // A batch's input files; a partition has none (its events came from
    // any batch), so its table has no such column.
    let sources = |s: &str| match by {
        By::Partition => String::new(),
        By::Batch => format!("  {s}"),
    };
    writeln!(
        out,
        "{key:<12} {:>9} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}{}",
        "events",
        "late",
        "side",
        "p50",
        "p90",
        "p99",
        "max",
        sources("sources")
    )?;
    // The histogram above is of every row; the table lists the newest.
    let (older, listed) = super::newest_rows(rows, every_row);
    if let (Some(first), Some(last)) = (older.first(), older.last()) {
        let (what, command) = match by {
            By::Partition => ("date(s)", "lateness"),
            By::Batch => ("commit(s)", "lateness --by batch"),
        };
        let line = super::older_rows_line(older.len(), what, &first.key, &last.key, command);
        writeln!(out, "{line}")?;
    }
    for r in listed {
        writeln!(
            out,
            "{:<12} {:>9} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}{}",
            r.key,
            r.events,
            r.late,
            r.side_output,
            d(r.p50_ms),
            d(r.p90_ms),
            d(r.p99_ms),
            d(r.max_ms),
            sources(&r.sources)
        )?;
    }
    Ok(())
}
