//! `evlake run`: ingest, then silver, then gold, for cron.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use super::gold::GoldArgs;
use super::ingest::IngestSettings;
use super::silver::SessionArgs;
use super::{EngineArgs, print_json, status};
use crate::config::Config;
use crate::error::Failure;
use crate::lake::Lake;
use crate::pipeline::{self, RunOptions};
use crate::{gold, silver};

#[derive(Debug, Default, clap::Args)]
#[command(after_help = "Examples:
  evlake run incoming/                          # ingest new files, then recompute what they dirtied
  evlake run incoming/ --json >> runs.jsonl     # one machine-readable summary per run
  evlake run incoming/ --dry-run                # what would be ingested and recomputed
  evlake run                                    # no inputs: finish pending silver/gold work

Each step (ingest, silver, gold) is its own commit. Re-running the same
inputs is a fast no-op. If a step fails, evlake exits non-zero naming the
step (exit codes as for the step's own command); the lake stays consistent
and the next run finishes the work, since dirtiness is derived from the log.
Settings not given as flags come from LAKE/evlake.toml.")]
pub struct Args {
    /// NDJSON files, directories (searched recursively) or `-` for stdin;
    /// none to only bring silver and gold up to date
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<std::ffi::OsString>,

    /// Report what would be ingested and which dates recomputed; change nothing
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub ingest: IngestSettings,

    #[command(flatten)]
    pub sessions: SessionArgs,

    #[command(flatten)]
    pub gold: GoldArgs,

    #[command(flatten)]
    pub engine: EngineArgs,

    /// Print the run summary as one JSON object on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    let lake = Lake::new(lake_dir);
    // Each step loads the log: the later ones from the state the one
    // before left, plus its commit.
    crate::log::keep_loaded_states();
    let _no_trace = args.dry_run.then(|| lake.no_trace());
    if args.inputs.is_empty() {
        lake.require()?;
    }
    let cfg = Config::load(&lake)?;
    let opts = options(&lake, &cfg, &args)?;
    // Each step's lines go to stderr as it finishes (a cron log shows
    // what committed even if a later step is killed); what a failed step
    // had done, after.
    let keep = opts.snapshot_keep.unwrap_or_default();
    let mut printed = Vec::new();
    let (report, result) = pipeline::run(&lake, &opts, &mut |step, report| {
        print_step(step, report, keep);
        printed.push(step);
    });
    for step in pipeline::STEPS {
        if !printed.contains(&step) {
            print_step(step, &report, keep);
        }
    }
    if let Some(p) = &report.plan {
        status(
            "Would",
            format!("recompute silver for {}", super::date_list(&p.silver_dates)),
        );
        let refused = |table: &str| p.refused.iter().find(|r| r.table == table);
        super::would_typed(&p.typed_tables, &p.dropped_tables, |t| {
            refused(t).map(|r| r.source.clone())
        });
        status(
            "Would",
            format!(
                "recompute gold for {} (session reach can add neighbouring dates)",
                super::date_list(&p.gold_dates)
            ),
        );
        super::would_daily(&p.daily_tables, &p.dropped_daily_tables, |t| {
            refused(t).map(|r| format!(" ({})", r.source))
        });
        if !p.compact_dates.is_empty() {
            status(
                "Would",
                format!(
                    "compact bronze for {} (ingest.compact_min_files)",
                    super::date_span(&p.compact_dates)
                ),
            );
        }
        print_removed("Would", "remove ", &p.snapshots_removed, keep);
        for s in &p.snapshots {
            status(
                "Would",
                format!(
                    "write the {} snapshot as of {}: {}",
                    s.model, s.as_of, s.why
                ),
            );
        }
        status("Dry run", "nothing changed");
    }
    if args.json {
        print_json(&report)?;
    }
    if result.is_ok() && report.status != "dry_run" {
        status(
            "Finished",
            format!(
                "run {} in {:.2}s",
                if report.status == "committed" {
                    "committed"
                } else {
                    "had nothing to do"
                },
                report.elapsed_ms as f64 / 1000.0
            ),
        );
    }
    result
}

/// Without INPUT, `run` ingests nothing: say so of any ingest flag given,
/// which would otherwise do nothing without a word (`--processing-time`
/// stamps the silver and gold commits too).
fn warn_ingest_flags_unused(i: &super::ingest::IngestSettings) {
    let given: Vec<&str> = [
        ("--late-policy", i.late_policy.is_some()),
        ("--watermark-delay", i.watermark_delay.is_some()),
        ("--allowed-lateness", i.allowed_lateness.is_some()),
        ("--max-future", i.max_future.is_some()),
        ("--min-event-time", i.min_event_time.is_some()),
        ("--max-bad-fraction", i.max_bad_fraction.is_some()),
        ("--naive-timestamps", i.naive_timestamps.is_some()),
        ("--max-line-bytes", i.max_line_bytes.is_some()),
        ("--include", !i.include.is_empty()),
    ]
    .into_iter()
    .filter_map(|(flag, set)| set.then_some(flag))
    .collect();
    if !given.is_empty() {
        status(
            "Warning",
            format!(
                "{} given without INPUT: this run ingests nothing, so {} nothing \
                 (ingest flags apply to the inputs of `evlake run INPUT...`)",
                given.join(", "),
                if given.len() == 1 {
                    "it does"
                } else {
                    "they do"
                },
            ),
        );
    }
}

/// The run's options: the flags, else `evlake.toml`, else the defaults.
/// Every setting is checked here, before anything is read or written: a
/// bad value is exit 2 naming the flag or the file and key.
fn options(lake: &Lake, cfg: &Config, args: &Args) -> Result<RunOptions> {
    // One processing time for every step: the ingest's, or the same
    // pinned or taken from the clock without it.
    let ingest = if args.inputs.is_empty() {
        warn_ingest_flags_unused(&args.ingest);
        // Nothing is ingested, but a bad ingest setting in evlake.toml is
        // said now, not first when an input comes (the flags, unused, are
        // left out: they would say a pinned time twice).
        super::ingest::IngestSettings::default().resolve(cfg, Vec::new())?;
        None
    } else {
        Some(args.ingest.resolve(cfg, args.inputs.clone())?)
    };
    let processing_time = match &ingest {
        Some(i) => i.processing_time,
        None => super::processing_time_or_now(args.ingest.processing_time),
    };
    let engine = args.engine.options(cfg)?;
    let opts = RunOptions {
        ingest,
        silver: silver::Options {
            settings: args.sessions.settings(cfg)?,
            full: false,
            dates: None,
            engine: engine.clone(),
            processing_time,
            dry_run: false,
        },
        gold: gold::Options {
            currency: args.gold.currency(cfg)?,
            full: false,
            dates: None,
            engine,
            processing_time,
            dry_run: false,
        },
        dry_run: args.dry_run,
        compact_min_files: match cfg.ingest.compact_min_files {
            None => None,
            Some(n) if n >= 2 => Some(n as usize),
            Some(n) => {
                return Err(Failure::Usage(format!(
                    "{}: ingest.compact_min_files: {n} (at least 2; leave it out for no \
                     compaction)",
                    crate::config::FILE
                ))
                .into());
            }
        },
        snapshot_models: cfg.state.snapshot_models.clone().unwrap_or_default(),
        snapshot_keep: match cfg.state.snapshot_keep {
            None => None,
            Some(n) if n >= 1 => Some(n as usize),
            Some(n) => {
                return Err(Failure::Usage(format!(
                    "{}: state.snapshot_keep: {n} keeps no snapshot (at least 1; leave it \
                     out to keep every one)",
                    crate::config::FILE
                ))
                .into());
            }
        },
    };
    // A model the policy names that does not exist is a settings error:
    // say so before the run commits anything (a model whose file does not
    // load fails at its step, as `status` reports it).
    if !opts.snapshot_models.is_empty() {
        let mut models = crate::state::models(lake)?;
        for m in &opts.snapshot_models {
            if !models.ok.contains_key(m) && !models.broken.contains_key(m) {
                let e = models.not_loaded(m, lake);
                return Err(Failure::Usage(format!(
                    "{}: state.snapshot_models: {e}",
                    crate::config::FILE
                ))
                .into());
            }
        }
    }
    Ok(opts)
}

/// Check every setting in `evlake.toml` that a run would use, as the run
/// checks it (exit 2 naming the key), including those only a run with
/// inputs reads: `status` calls this, so a bad value shows there rather
/// than first in the next cron run.
pub fn check_settings(lake: &Lake, cfg: &Config) -> Result<()> {
    let args = Args {
        inputs: vec!["-".into()],
        ..Args::default()
    };
    options(lake, cfg, &args).map(drop)
}

/// The lines of `step` (one of [`pipeline::STEPS`]) from `report`.
fn print_step(step: &str, report: &pipeline::RunReport, keep: usize) {
    match step {
        "ingest" => {
            if let Some(r) = &report.ingest {
                super::ingest::print_human(r);
            }
        }
        "silver" => {
            if let Some(r) = &report.silver {
                super::silver::print_report(r);
            }
        }
        "gold" => {
            if let Some(r) = &report.gold {
                super::gold::print_report(r);
            }
        }
        "snapshot" => {
            // Removed before the rebuilds, so said first.
            print_removed("Removed", "", &report.snapshots_removed, keep);
            for r in &report.snapshots {
                super::snapshot::print_report(r);
            }
            for b in &report.broken_models {
                status(
                    "Warning",
                    format!(
                        "model `{}` is broken, so its snapshots are not kept up to date: {}",
                        b.model, b.error
                    ),
                );
            }
        }
        "compact" => {
            if let Some(r) = &report.compact {
                super::compact::print_report(r);
            }
        }
        other => unreachable!("no step {other}"),
    }
}

/// One line per model for snapshots removed (or, `Would` `remove `, that
/// a run would remove) beyond `[state] snapshot_keep`.
fn print_removed(verb: &str, action: &str, removed: &[crate::state::RemovedSnapshot], keep: usize) {
    let mut by_model: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in removed {
        by_model.entry(&r.model).or_default().push(&r.as_of);
    }
    for (model, times) in by_model {
        let (first, last) = (times.iter().min(), times.iter().max());
        let which = match (first, last) {
            (Some(a), Some(b)) if a != b => {
                format!("{} {model} snapshots, as of {a} to {b}", times.len())
            }
            _ => format!("{model} snapshot as of {}", first.unwrap_or(&"")),
        };
        status(
            verb,
            format!("{action}{which}: older than the newest {keep} (state.snapshot_keep)"),
        );
    }
}
