//! `evlake silver`: sessionized `events`, `sessions` and the typed tables.

use std::path::Path;

use anyhow::Result;

use super::{CommitArgs, EngineArgs, parse_date_range, print_json, processing_time_or_now, status};
use crate::config::{self, Config};
use crate::lake::Lake;
use crate::silver::{self, Settings};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake silver                                  # recompute what is dirty
  evlake silver --json                           # ... and list the partitions rewritten
  evlake silver --dates 2024-03-01..2024-03-07   # restate a range
  evlake silver --full --memory-limit 512M       # rebuild all, spilling beyond 512 MiB
  evlake silver --session-gap 45m                # a new gap changes the fingerprint: all dirty
  evlake silver --session-exclude-types heartbeat,app_background
  evlake silver --dry-run                        # the dates it would recompute; change nothing

Writes events, sessions and the typed tables (purchases, searches, signups,
cart_adds, ledger). Only the dirty dates are recomputed, plus the
neighbouring dates their users' sessions reach into; a neighbouring date is
rewritten only where its rows changed. Every rewritten partition is
replaced in one commit.")]
pub struct Args {
    /// Rebuild every partition even if none is dirty
    #[arg(long)]
    pub full: bool,

    /// Also restate these dates (inclusive), e.g. 2024-03-01..2024-03-07 or
    /// a single date 2024-03-05
    #[arg(long, value_name = "A..B", value_parser = parse_date_range)]
    pub dates: Option<(i32, i32)>,

    /// Report which dates would be recomputed; change nothing
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub sessions: SessionArgs,

    #[command(flatten)]
    pub engine: EngineArgs,

    #[command(flatten)]
    pub commit: CommitArgs,
}

/// Sessionization settings, shared with `evlake run`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SessionArgs {
    /// A new session starts when the gap to the previous event is strictly
    /// greater than this, e.g. 45m (at most 1d) [default: 30m, or
    /// silver.session_gap in evlake.toml]
    #[arg(long, value_name = "DUR", value_parser = parse_session_gap)]
    pub session_gap: Option<i64>,

    /// Event types left out of sessionization (comma-separated); their
    /// events stay in `events` with a NULL session_id [default: none, or
    /// silver.session_exclude_types in evlake.toml]
    #[arg(long, value_name = "TYPES", value_delimiter = ',')]
    pub session_exclude_types: Option<Vec<String>>,
}

impl SessionArgs {
    /// Flags, else evlake.toml, else the defaults.
    pub fn settings(&self, cfg: &Config) -> Result<Settings> {
        let exclude = self
            .session_exclude_types
            .clone()
            .or(cfg.silver.session_exclude_types.clone())
            .unwrap_or_default();
        Ok(Settings {
            session_gap_us: config::resolve(
                self.session_gap,
                cfg.silver.session_gap.as_deref(),
                "silver.session_gap",
                parse_session_gap,
                silver::DEFAULT_SESSION_GAP_US,
            )?,
            exclude_types: exclude
                .iter()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
        })
    }
}

fn parse_session_gap(s: &str) -> Result<i64, String> {
    let gap = crate::time::parse_duration_micros(s)?;
    if gap <= 0 || gap > silver::MAX_SESSION_GAP_US {
        return Err(format!(
            "`{s}`: the session gap must be more than 0 and at most 1d"
        ));
    }
    Ok(gap)
}

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    let lake = Lake::new(lake_dir);
    lake.require()?;
    let cfg = Config::load(&lake)?;
    let opts = silver::Options {
        settings: args.sessions.settings(&cfg)?,
        full: args.full,
        dates: args.dates,
        engine: args.engine.options(&cfg)?,
        processing_time: processing_time_or_now(args.commit.processing_time),
        dry_run: args.dry_run,
    };
    let r = silver::rebuild(&lake, &opts)?;
    print_report(&r);
    super::warn_if_nothing_restated(args.dates, &r.restated);
    if args.commit.json {
        print_json(&r)?;
    }
    Ok(())
}

/// The human summary on stderr (also used by `evlake run`).
pub fn print_report(r: &silver::SilverReport) {
    for line in super::dirty_lines(&r.dirty) {
        status("Dirty", line);
    }
    if !r.restated.is_empty() {
        status("Restating", r.restated.join(", "));
    }
    if let Some(p) = &r.plan {
        let reach = if p.silver_dates.is_empty() {
            ""
        } else {
            " (session reach can add neighbouring dates)"
        };
        status(
            "Would",
            format!(
                "recompute silver for {}{reach}",
                super::date_list(&p.silver_dates)
            ),
        );
        // (A typed table that would fail has failed the dry run.)
        super::would_typed(&p.typed_tables, &p.dropped_tables, |_| None);
        status("Dry run", "nothing changed");
        return;
    }
    // The typed tables rebuilt on their own have a commit of their own;
    // the rest of the run may have committed after it.
    let refresh = r.typed_refresh.as_ref();
    let main_committed = r.status == "committed" && refresh.is_none_or(|t| t.version != r.version);
    if main_committed && r.mode == "incremental" {
        status(
            "Loaded",
            format!(
                "{} date(s) for {} touched user(s): {}",
                r.loaded_dates.len(),
                r.touched_users.unwrap_or(0),
                r.loaded_dates.join(", ")
            ),
        );
    }
    for line in super::wrote_lines(&r.partitions) {
        status("Wrote", line);
    }
    for (table, n) in &r.warnings {
        if *n > 0 {
            status("Warning", untyped_warning(table, *n, &r.warning_events));
        }
    }
    for t in &r.exclude_types_absent {
        let nearest = t
            .nearest
            .as_ref()
            .map(|n| format!(" (did you mean `{n}`?)"))
            .unwrap_or_default();
        status(
            "Warning",
            format!(
                "session exclude type `{}` (--session-exclude-types or \
                 silver.session_exclude_types): no event has it, so it left nothing \
                 out of sessions{nearest}",
                t.event_type
            ),
        );
    }
    if let Some(t) = refresh {
        let mut what = Vec::new();
        if !t.tables.is_empty() {
            let tables: Vec<String> = t
                .tables
                .iter()
                .map(|(table, dates)| format!("{table} ({} date(s))", dates.len()))
                .collect();
            what.push(format!(
                "typed table(s) {} rebuilt from the built events",
                tables.join(", ")
            ));
        }
        if !t.dropped_tables.is_empty() {
            what.push(format!(
                "typed table(s) {} dropped (file removed)",
                t.dropped_tables.join(", ")
            ));
        }
        status(
            "Committed",
            format!(
                "version {}: {}, {} partition(s) rewritten",
                t.version,
                what.join("; "),
                t.partitions
            ),
        );
    }
    if main_committed {
        status(
            "Committed",
            format!(
                "version {}: silver {} rebuild, {} partition(s) rewritten",
                r.version,
                r.mode,
                r.partitions.len() - refresh.map_or(0, |t| t.partitions)
            ),
        );
    } else if refresh.is_none() {
        status(
            "Unchanged",
            format!("silver is up to date (lake at version {})", r.version),
        );
    }
}

/// The warning for `n` values of `table` that could not be typed (or broke
/// a rule of the table, such as a deposit's negative amount), naming
/// the first events that had one (their raw `properties` are in `events`).
fn untyped_warning(
    table: &str,
    n: u64,
    events: &std::collections::BTreeMap<String, Vec<crate::silver::EventRef>>,
) -> String {
    let mut line =
        format!("{n} value(s) in {table} could not be typed or are out of range, and are NULL");
    if let Some(events) = events.get(table).filter(|e| !e.is_empty()) {
        let list = events
            .iter()
            .map(|e| format!("{} ({})", e.event_id, e.event_date))
            .collect::<Vec<_>>()
            .join(", ");
        let which = if n as usize > events.len() {
            "first in event(s)"
        } else {
            "in event(s)"
        };
        line.push_str(&format!(", {which} {list}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::silver::EventRef;

    #[test]
    fn an_untyped_warning_names_its_events_and_says_when_there_are_more() {
        let ev = |id: &str| EventRef {
            event_date: "2024-03-15".into(),
            event_id: id.into(),
        };
        let events =
            std::collections::BTreeMap::from([("purchases".to_string(), vec![ev("a1"), ev("a2")])]);
        assert_eq!(
            untyped_warning("purchases", 2, &events),
            "2 value(s) in purchases could not be typed or are out of range, and are NULL, in event(s) a1 (2024-03-15), a2 (2024-03-15)"
        );
        assert_eq!(
            untyped_warning("purchases", 7, &events),
            "7 value(s) in purchases could not be typed or are out of range, and are NULL, first in event(s) a1 (2024-03-15), a2 (2024-03-15)"
        );
        assert_eq!(
            untyped_warning("searches", 1, &events),
            "1 value(s) in searches could not be typed or are out of range, and are NULL"
        );
    }
}
