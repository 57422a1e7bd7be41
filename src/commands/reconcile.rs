//! `evlake reconcile`: merge the side output into bronze.

use std::path::Path;

use anyhow::Result;

use super::{parse_instant_arg, print_json, status};
use crate::lake::Lake;
use crate::reconcile;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake reconcile            # merge every pending late event, in one commit
  evlake reconcile --json     # summary as JSON on stdout

Safe to run twice: with nothing pending it is a reported no-op.")]
pub struct Args {
    /// Pin the run's processing time (RFC 3339), e.g. 2024-03-20T02:00:00Z
    /// [default: now]
    #[arg(long, value_name = "T", value_parser = parse_instant_arg)]
    pub processing_time: Option<i64>,

    /// Print the summary as one JSON object on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    let lake = Lake::new(lake_dir);
    let pt = args
        .processing_time
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros());
    let r = reconcile::reconcile(&lake, pt)?;
    for p in &r.partitions {
        status(
            "Merged",
            format!("event_date={} {:>9} late events", p.event_date, p.events),
        );
    }
    if r.status == "committed" {
        status(
            "Committed",
            format!(
                "version {}: {} late events merged into bronze",
                r.version, r.events
            ),
        );
    } else {
        status(
            "Unchanged",
            format!(
                "no side-output events pending (lake at version {})",
                r.version
            ),
        );
    }
    if args.json {
        print_json(&r)?;
    }
    Ok(())
}
