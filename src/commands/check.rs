//! `evlake check`: every committed file on disk, as the log recorded it.

use std::path::Path;

use anyhow::Result;

use super::{print_json, status};
use crate::check::{self, CheckReport};
use crate::lake::Lake;
use crate::log::LakeState;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake check                  # every committed file exists, with its size and rows
  evlake check --deep           # and decode every Parquet page
  evlake check --json | jq '.problems'

Compares each file the commit log references with the log's record: that
it exists, its size, and its rows (a Parquet footer's count, with --deep
every page decoded). Each problem names its repair: derived tables are
rebuilt (`evlake silver --dates D`, `evlake gold --dates D`, `evlake
snapshot`); bronze and the quarantine come back only from a backup. Also
lists orphans, files no commit references (a killed run's; the next
writer removes them). Read-only, takes no lock. Exits 1 if any file is not as
the log says, else 0.")]
pub struct Args {
    /// Also decode every page of every Parquet file (reads all the data)
    #[arg(long)]
    pub deep: bool,

    /// Print the report as one JSON object on stdout
    #[arg(long)]
    pub json: bool,
}

/// How many times a check starts over when a commit landed meanwhile.
const ATTEMPTS: usize = 5;

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    let lake = Lake::new(lake_dir);
    lake.require()?;
    // A spinner on a terminal: a deep check of a big lake reads all of it.
    let busy = crate::report::busy("check");
    let mut attempt = 1;
    let report = loop {
        let state = LakeState::load(&lake)?;
        let report = check::check(&lake, &state, args.deep)?;
        // A writer deletes the files its commit replaced: a check of the
        // state before that commit finds them gone. Check the new state.
        if report.problems.is_empty()
            || attempt == ATTEMPTS
            || crate::log::latest_version(&lake)? == state.version
        {
            break report;
        }
        attempt += 1;
    };
    drop(busy);
    print_report(&report);
    if args.json {
        print_json(&report)?;
    }
    if report.problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} of {} committed file(s) are not as the log says (see above)",
            report.problems.len(),
            report.files
        )
    }
}

fn print_report(r: &CheckReport) {
    for p in &r.problems {
        status("Problem", format!("{}: {}", p.path, p.detail));
        status("Repair", &p.repair);
    }
    super::status_first("Orphan", &r.orphans, "orphans", |p| {
        format!(
            "{p}: no commit references it (a killed or failed run's, or a writer's at work \
             that has not committed yet); evlake's readers skip \
             it, a reader globbing the directories (DuckDB, Spark) sees it until the next \
             writer removes it"
        )
    });
    let checked = format!(
        "{} file(s), {} row(s), {} at version {}{}",
        r.files,
        r.rows,
        super::status::format_bytes(r.bytes),
        r.version,
        if r.deep { ", every page decoded" } else { "" }
    );
    if r.problems.is_empty() {
        status("Checked", checked);
    } else {
        status(
            "Checked",
            format!("{checked}: {} problem(s)", r.problems.len()),
        );
    }
}
