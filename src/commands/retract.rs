//! `evlake retract`: take back every row of input batches ingested by
//! mistake.

use std::path::Path;

use anyhow::Result;

use super::{CommitArgs, print_json, processing_time_or_now, status};
use crate::lake::Lake;
use crate::retract;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake retract 3f2a9c0d1e4b5a67                  # one batch, by its batch_id
  evlake retract incoming/2024-03-15.jsonl         # every batch of an input, as it was ingested
  evlake retract incoming/2024-03-15/              # every batch of every input file under it
  evlake retract 3f2a9c0d1e4b5a67 --dry-run        # what it would take out
  evlake retract 3f2a9c0d1e4b5a67 --json           # summary as JSON on stdout
  evlake query \"SELECT * FROM batches ORDER BY ingested_in DESC LIMIT 20\"   # the latest inputs

The batches' events leave bronze_events and bronze_late, their bad lines
leave quarantine, and the dates they were on become dirty: the next
`evlake silver` and `evlake gold` (or `evlake run`) rebuild them. Snapshots
at or after the earliest retracted event become invalid. The input stays
consumed, so a re-run of the same ingest skips it; `evlake ingest
--reingest-retracted FILE` takes it in again. Safe to run twice: a batch
already retracted is a reported no-op.")]
pub struct Args {
    /// Batch ids (the `batches` table lists them, as does bronze's
    /// batch_id column) or inputs as they were ingested (every batch of
    /// each; also by another path to the same file, or a file of the same
    /// bytes), or directories of them (every input file under each)
    #[arg(required = true, value_name = "BATCH")]
    pub batches: Vec<std::ffi::OsString>,

    /// Report what would be taken out; change nothing
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub commit: CommitArgs,
}

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    let lake = Lake::new(lake_dir);
    lake.require()?;
    let opts = retract::Options {
        batches: args.batches,
        processing_time: processing_time_or_now(args.commit.processing_time),
        dry_run: args.dry_run,
    };
    let r = retract::retract(&lake, &opts)?;
    print_report(&r);
    if args.commit.json {
        print_json(&r)?;
    }
    Ok(())
}

fn print_report(r: &retract::RetractReport) {
    super::print_orphans(&r.orphans_removed);
    super::status_first("Warning", &r.not_ingested, "not_ingested", |f| {
        format!(
            "{f}: never ingested (no committed batch came from it), so nothing of it to take back"
        )
    });
    let (verb, would) = if r.status == "dry_run" {
        ("Dry run", "would take out ")
    } else {
        ("Retracted", "")
    };
    for b in &r.batches {
        if b.status == "already_retracted" {
            status(
                "Unchanged",
                format!(
                    "{} ({}): already retracted in commit {}",
                    b.batch_id,
                    b.source,
                    b.retracted_in.unwrap_or_default()
                ),
            );
        } else {
            status(
                verb,
                format!(
                    "{would}{} ({}, ingested in commit {}): {} event(s) in bronze, {} waiting in the side output, {} quarantined line(s)",
                    b.batch_id, b.source, b.ingested_in, b.bronze_rows, b.late_rows, b.quarantined
                ),
            );
        }
    }
    super::status_first("Dirty", &r.dates, "dates", |d| {
        format!(
            "event_date={}: {} event(s) taken out (the next silver and gold rebuild it)",
            d.event_date, d.rows
        )
    });
    match r.status {
        "committed" => status(
            "Committed",
            format!(
                "version {}: {} files removed, {} rewritten without the batches' rows",
                r.version, r.files_removed, r.files_added
            ),
        ),
        "dry_run" => status(
            "Dry run",
            format!("nothing changed ({} files would change)", r.files_removed),
        ),
        _ => status(
            "Unchanged",
            format!("nothing to retract (lake at version {})", r.version),
        ),
    }
}
