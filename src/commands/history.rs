//! `evlake history`: every event that affected one entity.

use std::path::Path;

use anyhow::Result;

use super::{EngineArgs, Format};
use crate::config::Config;
use crate::lake::Lake;
use crate::state;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake history acct-u2                       # balances: every ledger event, running balance
  evlake history u5 --model profiles           # every attribute change of user u5
  evlake history u5 --model carts --format csv
  evlake history acct-u2 --known-at 2024-03-16T03:00:00Z

Rows are in event-time order, with the event time, the processing time and
the running state; a correction shows the event it corrects.")]
pub struct Args {
    /// The entity: an account_id for balances, a user_id for carts and profiles
    pub key: String,

    /// The model whose history to show
    #[arg(long, default_value = "balances")]
    pub model: String,

    /// Only events up to then (RFC 3339, a date or now) [default: all]
    #[arg(long, value_name = "T", value_parser = state::parse_time)]
    pub as_of: Option<i64>,

    /// Only events processed by then (RFC 3339, a date or now)
    #[arg(long, value_name = "P", value_parser = state::parse_time)]
    pub known_at: Option<i64>,

    /// Output format
    #[arg(long, value_enum, ignore_case = true, default_value = "table")]
    pub format: Format,

    #[command(flatten)]
    pub engine: EngineArgs,
}

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    args.format.check_output()?;
    let lake = Lake::new(lake_dir);
    lake.require()?;
    let cfg = Config::load(&lake)?;
    // Every model, read once: the one asked for, and the others for the
    // hint when its trail is empty.
    let mut models = state::models(&lake)?;
    let Some(model) = models.ok.remove(&args.model) else {
        return Err(models.not_loaded(&args.model, &lake));
    };
    let opts = args.engine.options(&cfg)?;
    let as_of = args.as_of.unwrap_or(i64::MAX / 2);
    let (rows, silver_dirty) = crate::committed::read_retrying(&lake, |st| {
        let rows = state::history(&lake, st, &model, &args.key, as_of, args.known_at, &opts)?;
        Ok((rows, crate::pipeline::silver_dirty_dates(st)))
    })?;
    // The trail is read from silver: events still only in bronze are not
    // in it, which `state` says too.
    super::state::warn_silver_dirty(&silver_dirty, "trail");
    if rows.iter().all(|b| b.num_rows() == 0) {
        // An empty trail is an answer (exit 0), but most often a mistyped
        // key: say so rather than print nothing.
        let until = match (args.as_of, args.known_at) {
            (None, None) => String::new(),
            (Some(_), None) => " up to --as-of".to_string(),
            (None, Some(_)) => " processed by --known-at".to_string(),
            (Some(_), Some(_)) => " up to --as-of, processed by --known-at".to_string(),
        };
        // Most often the key is another model's (`history u5` asks
        // balances, whose keys are accounts): name the models that have it.
        let others: Vec<String> = models
            .ok
            .values()
            .filter(|m| {
                let trail = crate::committed::read_retrying(&lake, |st| {
                    state::history(&lake, st, m, &args.key, as_of, args.known_at, &opts)
                });
                trail.is_ok_and(|rows| rows.iter().any(|b| b.num_rows() > 0))
            })
            .map(|m| format!("--model {}", m.name))
            .collect();
        let hint = if others.is_empty() {
            String::new()
        } else {
            format!("; other models have it: {}", others.join(", "))
        };
        super::status(
            "Empty",
            format!(
                "no event of model `{}` has the key `{}`{until}{hint}",
                model.name, args.key
            ),
        );
    }
    super::query::print(&rows, args.format)
}
