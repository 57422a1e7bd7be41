//! `evlake compact`: rewrite bronze partitions' many small files as one.

use std::path::Path;

use anyhow::Result;

use super::{CommitArgs, parse_date_range, print_json, processing_time_or_now, status};
use crate::compact;
use crate::lake::Lake;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake compact                      # every bronze date with 8 or more small files
  evlake compact --min-files 24       # only dates with a day of hourly files
  evlake compact --dry-run            # what it would rewrite
  evlake compact --json               # summary as JSON on stdout

A small file has fewer than 262,144 rows (an hourly run's). The rows stay
exactly the same, so nothing derived becomes dirty and no snapshot becomes
invalid. A date whose bronze grew since `evlake silver` read it is left for
after silver (`evlake run` runs silver first). Safe to run twice: with
nothing to compact it is a reported no-op.")]
pub struct Args {
    /// Compact a date with at least this many small files
    #[arg(long, value_name = "N", default_value_t = compact::DEFAULT_MIN_FILES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(2..))]
    pub min_files: usize,

    /// Only these dates (inclusive), e.g. 2024-03-01..2024-03-07 or one date
    #[arg(long, value_name = "A..B", value_parser = parse_date_range)]
    pub dates: Option<(i32, i32)>,

    /// Report what would be rewritten; change nothing
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub commit: CommitArgs,
}

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    let lake = Lake::new(lake_dir);
    lake.require()?;
    let opts = compact::Options {
        min_files: args.min_files,
        dates: args.dates,
        processing_time: processing_time_or_now(args.commit.processing_time),
        dry_run: args.dry_run,
    };
    let r = compact::compact(&lake, &opts)?;
    print_report(&r);
    super::warn_if_no_date(opts.dates, &r.dates_named, "compacted");
    if args.commit.json {
        print_json(&r)?;
    }
    Ok(())
}

/// The human summary on stderr (also used by `evlake run`).
pub fn print_report(r: &compact::CompactReport) {
    let (verb, action) = if r.status == "dry_run" {
        ("Would", "compact ")
    } else {
        ("Compacted", "")
    };
    super::status_first(verb, &r.partitions, "partitions", |p| {
        format!(
            "{action}event_date={} {} files → {} ({} rows rewritten)",
            p.event_date, p.files_before, p.files_after, p.rows
        )
    });
    if !r.skipped_dirty.is_empty() {
        status(
            "Skipped",
            format!(
                "{} (bronze grew since silver read it: compacted after the next `evlake silver`)",
                r.skipped_dirty.join(", ")
            ),
        );
    }
    match r.status {
        "committed" => status(
            "Committed",
            format!(
                "version {}: {} bronze files rewritten as {}",
                r.version, r.files_removed, r.files_added
            ),
        ),
        "dry_run" => status("Dry run", "nothing changed"),
        _ => status(
            "Unchanged",
            format!(
                "no bronze date has {} or more small files (lake at version {})",
                r.min_files, r.version
            ),
        ),
    }
}
