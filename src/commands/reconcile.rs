//! `evlake reconcile`: merge the side output into bronze.

use std::path::Path;

use anyhow::Result;

use super::{CommitArgs, print_json, processing_time_or_now, status};
use crate::lake::Lake;
use crate::reconcile;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake reconcile            # merge every pending late event, in one commit
  evlake reconcile --json     # summary as JSON on stdout
  evlake reconcile --dry-run  # what it would merge, per date; change nothing

Safe to run twice: with nothing pending it is a reported no-op.")]
pub struct Args {
    /// Report what would be merged, per date; change nothing
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub commit: CommitArgs,
}

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    let lake = Lake::new(lake_dir);
    lake.require()?;
    let pt = processing_time_or_now(args.commit.processing_time);
    let r = reconcile::reconcile(&lake, pt, args.dry_run)?;
    let (verb, action) = if args.dry_run {
        ("Would", "merge ")
    } else {
        ("Merged", "")
    };
    for p in &r.partitions {
        status(
            verb,
            format!(
                "{action}event_date={} {:>9} late events",
                p.event_date, p.events
            ),
        );
    }
    if args.dry_run {
        status(
            "Dry run",
            format!(
                "nothing changed: {} late event(s) pending (lake at version {})",
                r.events, r.version
            ),
        );
    } else if r.status == "committed" {
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
    if args.commit.json {
        print_json(&r)?;
    }
    Ok(())
}
