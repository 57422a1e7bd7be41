//! `evlake generate`: deterministic synthetic arrival batches + truth file.

use std::path::PathBuf;

use anyhow::Result;

use super::status;
use crate::error::Failure;
use crate::generate::{self, GenerateOptions};
use crate::time::{self, MICROS_PER_DAY, MICROS_PER_SECOND};

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

/// The first day after the last one an RFC 3339 timestamp can write
/// (10000-01-01T00:00:00Z), in microseconds.
const YEAR_10000: i64 = 253_402_300_800 * MICROS_PER_SECOND;

/// Days past the last event day that the batches reach: each batch
/// arrives the day after its events, and the future-timestamp bad lines
/// are 30 days after their batch's processing time.
const DAYS_REACHED_AFTER: i64 = 32;

/// Refuse a `--start`/`--days` whose events ingest could not take as
/// generated, so that `truth.json` would not be the truth: before
/// `--min-event-time`'s default every event is quarantined, and past year
/// 9999 the timestamps are not RFC 3339.
fn check_range(start: i64, days: u32) -> Result<()> {
    let start_text = time::format_date32(time::date32_of_micros(start));
    if start < crate::ingest::DEFAULT_MIN_EVENT_TIME {
        return Err(Failure::Usage(format!(
            "--start {start_text} is before 2000-01-01, ingest's default --min-event-time: \
             every generated event would be quarantined as timestamp_too_old"
        ))
        .into());
    }
    let reach =
        start as i128 + (days as i128 + DAYS_REACHED_AFTER as i128) * MICROS_PER_DAY as i128;
    if reach > YEAR_10000 as i128 {
        let most = (YEAR_10000 - start) / MICROS_PER_DAY - DAYS_REACHED_AFTER;
        let fix = if most >= 1 {
            format!("at most --days {most} from this start")
        } else {
            "an earlier --start".to_string()
        };
        return Err(Failure::Usage(format!(
            "--start {start_text} with --days {days} reaches past 9999-12-31, the last day an \
             RFC 3339 timestamp can write (batches arrive up to {DAYS_REACHED_AFTER} days after \
             the last event day): {fix}"
        ))
        .into());
    }
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    check_range(args.start, args.days)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_ingest_could_not_take_is_refused() {
        let day = |s| parse_date(s).unwrap();
        let usage = |start, days| match check_range(start, days) {
            Err(e) => match e.downcast_ref::<Failure>() {
                Some(Failure::Usage(m)) => m.clone(),
                other => panic!("{other:?}"),
            },
            Ok(()) => panic!("accepted {start} + {days} days"),
        };
        check_range(day("2000-01-01"), 30).unwrap();
        assert!(usage(day("1999-12-31"), 1).contains("timestamp_too_old"));
        // The last start whose batches (a day later, and bad lines 30
        // days after that) are all within year 9999.
        let most = day("9999-12-31") - day("2024-03-01");
        let most = (most / MICROS_PER_DAY + 1 - DAYS_REACHED_AFTER) as u32;
        check_range(day("2024-03-01"), most).unwrap();
        let m = usage(day("2024-03-01"), most + 1);
        assert!(m.contains(&format!("at most --days {most} from")), "{m}");
        assert!(usage(day("2024-03-01"), u32::MAX).contains("past 9999-12-31"));
        assert!(usage(day("9999-12-31"), 1).contains("an earlier --start"));
    }
}
