//! `evlake check`: every committed file on disk, as the log recorded it.

use std::path::Path;

use anyhow::{Context, Result};

use super::{print_json, status};
use crate::check::{self, CheckReport};
use crate::lake::Lake;
use crate::log::LakeState;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake check                  # every committed file exists, with its size and rows
  evlake check --deep           # and read every byte: hashes compared, pages decoded
  evlake check --json | jq '.problems'
  evlake check --repair         # and rebuild every derived file that is not whole

Compares each file the commit log references with the log's record: that
it exists, its size, and its rows (a Parquet footer's count); with --deep,
its bytes' hash (recorded at commit; an older file's pages are decoded
instead), so damage that still decodes is found. Each problem names its
repair: derived tables are
rebuilt (`evlake silver --full`, `evlake gold --dates D`, `evlake
snapshot`; the id index by --repair itself); bronze and the quarantine
come back only from a backup. Also
lists orphans, files no commit references (a killed run's; the next
writer removes them). Read-only, takes no lock, unless --repair: it then
runs those commands (refusing if bronze is damaged) and checks again.
Exits 1 if any file is not as the log says (after --repair: still), else 0.")]
pub struct Args {
    /// Also read all the data: compare each file's bytes with the hash its
    /// commit recorded (decode the pages of a file without one)
    #[arg(long)]
    pub deep: bool,

    /// Run the repair of every derived file not as the log says (silver,
    /// gold, snapshots), then check again; refused if bronze is damaged
    #[arg(long)]
    pub repair: bool,

    /// Print the report as one JSON object on stdout
    #[arg(long)]
    pub json: bool,
}

/// How many times a check starts over when a commit landed meanwhile.
const ATTEMPTS: usize = 5;

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    let lake = Lake::new(lake_dir);
    lake.require()?;
    let mut report = checked(&lake, args.deep)?;
    if args.repair && !report.problems.is_empty() {
        print_report(&report);
        let commands = check::repair_commands(&report.problems).map_err(anyhow::Error::msg)?;
        for c in &commands {
            status("Repairing", format!("evlake {}", c.join(" ")));
            run_command(lake_dir, c)
                .with_context(|| format!("repairing: `evlake {}` failed", c.join(" ")))?;
        }
        let mut repaired: Vec<String> = commands.iter().map(|c| c.join(" ")).collect();
        // The id index has no command of its own: rebuilt here, from
        // bronze (known whole: repair_commands refuses otherwise).
        if report.problems.iter().any(|p| p.table == crate::ids::TABLE) {
            status("Repairing", "the id index, from bronze");
            let version = crate::ids::rebuild(&lake, super::processing_time_or_now(None))
                .context("repairing: rebuilding the id index failed")?;
            status(
                "Committed",
                format!("version {version}: the id index rebuilt from bronze"),
            );
            repaired.push("rebuild the id index from bronze".into());
        }
        if !repaired.is_empty() {
            report = checked(&lake, args.deep)?;
            report.repaired = repaired;
        }
    }
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

/// The lake checked; started over if a commit landed meanwhile (a writer
/// deletes the files its commit replaced: a check of the state before
/// that commit finds them gone).
fn checked(lake: &Lake, deep: bool) -> Result<CheckReport> {
    // A spinner on a terminal: a deep check of a big lake reads all of it.
    let _busy = crate::report::busy("check");
    let mut attempt = 1;
    loop {
        let state = LakeState::load(lake)?;
        let report = check::check(lake, &state, deep)?;
        if report.problems.is_empty()
            || attempt == ATTEMPTS
            || crate::log::latest_version(lake)? == state.version
        {
            return Ok(report);
        }
        attempt += 1;
    }
}

/// Run `evlake ARGS` on the lake in this process, as the repair hints
/// name it (same global `--quiet`).
fn run_command(lake_dir: &Path, args: &[String]) -> Result<()> {
    let mut line: Vec<std::ffi::OsString> = vec!["evlake".into(), "--lake".into()];
    line.push(lake_dir.as_os_str().to_owned());
    if crate::report::quiet() {
        line.push("-q".into());
    }
    line.extend(args.iter().map(Into::into));
    crate::cli::run(crate::cli::parse_from(line)?)
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
        if r.deep { ", every byte read" } else { "" }
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
