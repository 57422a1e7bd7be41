//! `evlake init`: write a commented default `evlake.toml` into the lake.

use std::path::Path;

use anyhow::Result;

use super::status;
use crate::config;
use crate::lake::Lake;

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:
  evlake --lake /data/lake init     # then edit /data/lake/evlake.toml

An existing evlake.toml is never overwritten.")]
pub struct Args {}

pub fn run(lake_dir: &Path, _args: Args) -> Result<()> {
    let lake = Lake::new(lake_dir);
    let path = lake.path(config::FILE);
    if config::init(&lake)? {
        status("Created", path.display());
    } else {
        status("Kept", format!("{} (already exists)", path.display()));
    }
    Ok(())
}
