//! `evlake snapshot`: store a model's state at a time, to start from later.

use std::path::Path;

use anyhow::Result;

use super::{CommitArgs, EngineArgs, print_json, processing_time_or_now, status};
use crate::config::Config;
use crate::lake::Lake;
use crate::state;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake snapshot balances --as-of 2024-03-15      # end of that day, UTC
  evlake snapshot carts --as-of 2024-03-16T00:00:00Z --json

Stores the model's raw, unfiltered aggregate at that instant in
LAKE/state/MODEL/as_of=…/. `evlake state --as-of T` starts from the newest
valid snapshot at or before T. A snapshot becomes invalid (and is never
used, and `status` says why) when a later commit adds an event at or before
its time, or the model's or silver's SQL changes; `evlake run` rebuilds
invalid snapshots, and keeps daily ones with [state] snapshot_models in
evlake.toml; with [state] snapshot_keep = N it keeps only each model's N
newest (this one too). Silver must be up to date first.")]
pub struct Args {
    /// The model, e.g. balances
    pub model: String,

    /// The instant: RFC 3339, a date meaning the end of that day (UTC),
    /// or now
    #[arg(long, value_name = "T", value_parser = state::parse_time)]
    pub as_of: i64,

    #[command(flatten)]
    pub engine: EngineArgs,

    #[command(flatten)]
    pub commit: CommitArgs,
}

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    let lake = Lake::new(lake_dir);
    lake.require()?;
    let cfg = Config::load(&lake)?;
    let model = state::model(&lake, &args.model)?;
    // Beyond the watermark, events at or before the snapshot's time still
    // arrive in every batch: each one makes it invalid, and `run` then
    // rebuilds it (a full replay) every time.
    if let Some(w) = crate::log::LakeState::load(&lake)?
        .watermark
        .filter(|w| args.as_of > *w)
    {
        status(
            "Warning",
            format!(
                "{} is after the watermark ({}): any batch with an event before it makes \
                 this snapshot invalid, and `evlake run` then rebuilds it; a snapshot at or \
                 before the watermark stays valid longer",
                crate::time::format_micros(args.as_of),
                crate::time::format_micros(w)
            ),
        );
    }
    let r = state::snapshot(
        &lake,
        &model,
        args.as_of,
        processing_time_or_now(args.commit.processing_time),
        &args.engine.options(&cfg)?,
    )?;
    print_report(&r);
    if args.commit.json {
        print_json(&r)?;
    }
    Ok(())
}

/// The human summary on stderr (also used by `evlake run`).
pub fn print_report(r: &state::SnapshotReport) {
    if r.status == "noop" {
        status(
            "Unchanged",
            format!(
                "{} snapshot at {} is already there and valid (commit {}, {} rows)",
                r.model, r.as_of, r.version, r.rows
            ),
        );
        return;
    }
    let from = match &r.from_snapshot {
        Some(s) => format!("from the snapshot at {} plus ", s.as_of),
        None => String::new(),
    };
    let problems = match r.problems.unwrap_or(0) {
        0 => String::new(),
        n => format!("; {n} problem(s) at that time, kept with it"),
    };
    status(
        "Committed",
        format!(
            "version {}: {} snapshot at {} ({} rows, {from}{} event(s) replayed{problems})",
            r.version, r.model, r.as_of, r.rows, r.events_replayed
        ),
    );
}
