//! `evlake init`: write a commented default `evlake.toml` into the lake.

use std::path::Path;

use anyhow::Result;

use super::status;
use crate::config;
use crate::lake::Lake;

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:
  evlake --lake /data/lake init     # then edit /data/lake/evlake.toml

An existing evlake.toml is never overwritten. init writes no commit, so it
takes no --processing-time.")]
pub struct Args {
    /// Print the summary as one JSON object on stdout
    #[arg(long)]
    pub json: bool,
}

/// `--json`'s summary.
#[derive(serde::Serialize)]
struct InitReport {
    command: &'static str,
    /// `created`, or `kept` (the file was there).
    status: &'static str,
    path: String,
}

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    let lake = Lake::new(lake_dir);
    let path = lake.path(config::FILE);
    let created = config::init(&lake)?;
    if created {
        status("Created", path.display());
    } else {
        status("Kept", format!("{} (already exists)", path.display()));
    }
    if args.json {
        super::print_json(&InitReport {
            command: "init",
            status: if created { "created" } else { "kept" },
            path: path.display().to_string(),
        })?;
    }
    Ok(())
}
