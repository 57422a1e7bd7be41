//! `evlake silver`: sessionized `events` and `sessions` from bronze.

use std::path::Path;

use anyhow::Result;

use super::{CommitArgs, parse_duration_arg, print_json, processing_time_or_now, status};
use crate::lake::Lake;
use crate::silver;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake silver                      # rebuild when any silver partition is dirty
  evlake silver --full --json        # rebuild everything, summary on stdout
  evlake silver --session-gap 45m    # a new gap changes the fingerprint: all dirty

Writes events, sessions and the typed tables (purchases, searches, signups,
cart_adds, ledger). This version recomputes every partition when anything is
dirty; recomputing only the dirty partitions comes next.")]
pub struct Args {
    /// Rebuild every partition even if none is dirty
    #[arg(long)]
    pub full: bool,

    /// A new session starts when the gap to the previous event is strictly
    /// greater than this, e.g. 45m
    #[arg(long, value_name = "DUR", default_value = "30m", value_parser = parse_duration_arg)]
    pub session_gap: i64,

    #[command(flatten)]
    pub commit: CommitArgs,
}

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    let lake = Lake::new(lake_dir);
    let pt = processing_time_or_now(args.commit.processing_time);
    let r = silver::rebuild(&lake, pt, args.session_gap, args.full)?;
    for d in &r.dirty {
        let reasons: Vec<String> = d.reasons.iter().map(|x| x.to_string()).collect();
        status(
            "Dirty",
            format!("{} {}: {}", d.table, d.partition, reasons.join("; ")),
        );
    }
    for p in &r.partitions {
        status(
            "Wrote",
            format!("{} {} {:>9} rows", p.table, p.partition, p.rows),
        );
    }
    for (table, n) in &r.warnings {
        if *n > 0 {
            status(
                "Warning",
                format!("{n} value(s) in {table} could not be typed and are NULL"),
            );
        }
    }
    if r.status == "committed" {
        status(
            "Committed",
            format!("version {}: silver rebuilt", r.version),
        );
    } else {
        status(
            "Unchanged",
            format!("silver is up to date (lake at version {})", r.version),
        );
    }
    if args.commit.json {
        print_json(&r)?;
    }
    Ok(())
}
