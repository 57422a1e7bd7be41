//! `evlake generate`: deterministic synthetic arrival batches + truth file.

use std::path::PathBuf;

use anyhow::Result;

use super::status;
use crate::generate::{self, GenerateOptions};
use crate::time::{self, MICROS_PER_DAY};

fn parse_date(s: &str) -> Result<i64, String> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| {
            d.and_hms_opt(0, 0, 0)
                .expect("midnight exists")
                .and_utc()
                .timestamp_micros()
        })
        .map_err(|_| format!("`{s}` is not a date like 2024-03-01"))
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake generate --events 1000000 --out /tmp/gen          # ~330 MB in 30 daily batches
  evlake generate --events 5000 --seed 7 --days 5 --out t/

Writes DIR/batches/batch-0001.jsonl ... (one per arrival day, to be ingested
with the processing_time listed for it) and DIR/truth.json with the expected
counts, computed by the generator itself.")]
pub struct Args {
    /// Output directory (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Number of event lines to write (re-sends included), e.g. 1000000
    #[arg(long, default_value = "100000")]
    pub events: u64,

    /// Random seed; the same seed gives byte-identical output
    #[arg(long, default_value = "42")]
    pub seed: u64,

    /// Number of event days (and arrival batches)
    #[arg(long, default_value = "30", value_parser = clap::value_parser!(u32).range(1..))]
    pub days: u32,

    /// Number of distinct users
    #[arg(long, default_value = "20000", value_parser = clap::value_parser!(u64).range(1..))]
    pub users: u64,

    /// First event day (UTC), e.g. 2024-03-01
    #[arg(long, default_value = "2024-03-01", value_parser = parse_date)]
    pub start: i64,

    /// Share of malformed lines per event (0 for clean data), e.g. 0.01
    #[arg(long, default_value = "0.01", value_parser = super::parse_fraction_arg)]
    pub bad_rate: f64,

    /// Share of mobile sessions that arrive late, e.g. 0.3
    #[arg(long, default_value = "0.3", value_parser = super::parse_fraction_arg)]
    pub late_rate: f64,
}

pub fn run(args: Args) -> Result<()> {
    let opts = GenerateOptions {
        events: args.events,
        seed: args.seed,
        days: args.days,
        users: args.users,
        start: args.start,
        bad_rate: args.bad_rate,
        late_rate: args.late_rate,
    };
    let truth = generate::generate(&args.out, &opts)?;
    let last = args.start + (args.days.max(1) as i64 - 1) * MICROS_PER_DAY;
    status(
        "Generated",
        format!(
            "{} lines ({} events, {} bad, {} re-sends, {} late) for {}..{} in {}",
            truth.totals.lines,
            truth.totals.events,
            truth.totals.quarantined.values().sum::<u64>(),
            truth.totals.resends,
            truth.totals.late_events,
            time::format_date32(time::date32_of_micros(args.start)),
            time::format_date32(time::date32_of_micros(last)),
            args.out.display()
        ),
    );
    Ok(())
}
