//! `evlake gold`: daily_metrics and daily_revenue_by_currency.

use std::path::Path;

use anyhow::Result;

use super::{CommitArgs, EngineArgs, parse_date_range, print_json, processing_time_or_now, status};
use crate::config::Config;
use crate::gold;
use crate::lake::Lake;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake gold                                  # recompute the dirty dates
  evlake gold --json                           # ... and list them
  evlake gold --dates 2024-03-01..2024-03-07   # restate a range
  evlake gold --full --currency EUR            # rebuild all in another reporting currency
  evlake gold --dry-run                        # the dates it would recompute; change nothing

A date is dirty when its silver events, sessions, purchases or signups
changed since gold read them. `evlake run` runs ingest, silver and gold.")]
pub struct Args {
    /// Rebuild every date even if none is dirty
    #[arg(long)]
    pub full: bool,

    /// Also restate these dates (inclusive), e.g. 2024-03-01..2024-03-07
    #[arg(long, value_name = "A..B", value_parser = parse_date_range)]
    pub dates: Option<(i32, i32)>,

    /// Report which dates would be recomputed; change nothing
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub gold: GoldArgs,

    #[command(flatten)]
    pub engine: EngineArgs,

    #[command(flatten)]
    pub commit: CommitArgs,
}

/// Gold's settings, shared with `evlake run`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GoldArgs {
    /// Reporting currency of daily_metrics.revenue, e.g. EUR [default: USD,
    /// or gold.currency in evlake.toml]
    #[arg(long, value_name = "CODE", value_parser = parse_currency)]
    pub currency: Option<String>,
}

impl GoldArgs {
    pub fn currency(&self, cfg: &Config) -> Result<String> {
        crate::config::resolve(
            self.currency.clone(),
            cfg.gold.currency.as_deref(),
            "gold.currency",
            parse_currency,
            gold::DEFAULT_CURRENCY.to_string(),
        )
    }
}

fn parse_currency(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.len() == 3 && t.chars().all(|c| c.is_ascii_alphabetic()) {
        Ok(t.to_ascii_uppercase())
    } else {
        Err(format!(
            "`{s}` is not a currency code (three letters, e.g. USD)"
        ))
    }
}

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    let lake = Lake::new(lake_dir);
    lake.require()?;
    let cfg = Config::load(&lake)?;
    let opts = gold::Options {
        currency: args.gold.currency(&cfg)?,
        full: args.full,
        dates: args.dates,
        engine: args.engine.options(&cfg)?,
        processing_time: processing_time_or_now(args.commit.processing_time),
        dry_run: args.dry_run,
    };
    let r = gold::rebuild(&lake, &opts)?;
    print_report(&r);
    super::warn_if_nothing_restated(args.dates, &r.restated);
    if args.commit.json {
        print_json(&r)?;
    }
    r.failure().map_or(Ok(()), Err)
}

/// The human summary on stderr (also used by `evlake run`).
pub fn print_report(r: &gold::GoldReport) {
    if !r.silver_dirty.is_empty() {
        status(
            "Warning",
            format!(
                "silver is dirty for {} date(s) ({}); gold {} silver as it is, run `evlake silver` first",
                r.silver_dirty.len(),
                r.silver_dirty.join(", "),
                if r.plan.is_some() {
                    "would read"
                } else {
                    "read"
                }
            ),
        );
    }
    for line in super::dirty_lines(&r.dirty) {
        status("Dirty", line);
    }
    for line in super::wrote_lines(&r.partitions) {
        status("Wrote", line);
    }
    if let Some(p) = &r.plan {
        status(
            "Would",
            format!("recompute gold for {}", super::date_list(&p.gold_dates)),
        );
        super::would_daily(&p.daily_tables, &p.dropped_daily_tables, |t| {
            r.failed.iter().any(|f| f.table == t).then(String::new)
        });
        status("Dry run", "nothing changed");
        return;
    }
    if r.status == "committed" {
        status(
            "Committed",
            format!(
                "version {}: gold {} rebuild, {} partition(s) rewritten",
                r.version,
                r.mode,
                r.partitions.len()
            ),
        );
    } else if r.failed.is_empty() {
        status(
            "Unchanged",
            format!("gold is up to date (lake at version {})", r.version),
        );
    } else {
        let failed: Vec<String> = r.failed.iter().map(|f| format!("`{}`", f.table)).collect();
        status(
            "Unchanged",
            format!(
                "gold but for {} is up to date (lake at version {})",
                failed.join(", "),
                r.version
            ),
        );
    }
}
