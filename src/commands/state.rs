//! `evlake state`: a model's state as of any time.

use std::path::Path;

use std::io::Write;

use anyhow::{Context, Result};

use super::{EngineArgs, Format, status};
use crate::config::Config;
use crate::lake::Lake;
use crate::state::{self, Query};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake state balances --as-of 2024-03-15                 # end of that day, UTC
  evlake state balances --as-of 2024-03-15T12:00:00Z --key acct-u2
  evlake state balances --as-of 2024-03-15 --known-at 2024-03-16T03:00:00Z   # what we believed then
  evlake state profiles --as-of 2024-03-16 --format csv
  evlake state carts --as-of 2024-03-16 --json             # rows plus the snapshot used

Models: balances, carts, profiles, and LAKE/models/*.sql. Only events with
event_timestamp <= --as-of count; --known-at also drops events processed
after it. The answer starts from the newest valid snapshot at or before
--as-of (`evlake snapshot`) and replays only the events after it.
Events a model cannot use are reported as `Problem` lines on stderr
(--json: `problems`): balances' corrections of unknown events and ledger
events without an account or amount; carts' events without a product or
with a quantity that is not an integer within ±2147483647.")]
pub struct Args {
    /// The model, e.g. balances
    pub model: String,

    /// The instant: RFC 3339, a date meaning the end of that day (UTC),
    /// or now
    #[arg(long, value_name = "T", value_parser = state::parse_time)]
    pub as_of: i64,

    /// Only events processed by then (RFC 3339, a date or now): the answer the
    /// lake would have given at that processing time
    #[arg(long, value_name = "P", value_parser = state::parse_time)]
    pub known_at: Option<i64>,

    /// Only this entity (the model's key, e.g. an account_id)
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,

    /// Replay every event, ignoring snapshots
    #[arg(long)]
    pub no_snapshot: bool,

    /// Output format of the rows
    #[arg(long, value_enum, ignore_case = true, default_value = "table")]
    pub format: Format,

    /// Print one JSON object (rows, the snapshot used, events replayed,
    /// problems) on stdout instead
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub engine: EngineArgs,
}

/// The processing time and commit of the lake's first ingest that added
/// events (of those still in the lake).
fn first_ingest(st: &crate::log::LakeState) -> Option<(i64, u64)> {
    st.batches
        .values()
        .filter(|b| b.retracted.is_none() && b.events.is_none_or(|n| n > 0))
        .filter_map(|b| Some((b.processing_time?, b.version)))
        .min()
}

/// The first `event_date` with rows in bronze.
fn first_event_date(st: &crate::log::LakeState) -> Option<String> {
    st.partitions("bronze_events")
        .find(|(_, p)| p.rows() > 0)
        .map(|(date, _)| date.clone())
}

/// Say that `what` (read from silver) lacks the newest events of the
/// dates silver has not caught up with.
pub fn warn_silver_dirty(dates: &[String], what: &str) {
    if !dates.is_empty() {
        status(
            "Warning",
            format!(
                "silver is dirty for {} date(s); the {what} lacks their newest events (run `evlake run`)",
                dates.len()
            ),
        );
    }
}

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    if !args.json {
        args.format.check_output()?;
    }
    let lake = Lake::new(lake_dir);
    lake.require()?;
    let cfg = Config::load(&lake)?;
    let model = state::model(&lake, &args.model)?;
    let q = Query {
        as_of: args.as_of,
        known_at: args.known_at,
        key: args.key.clone(),
        use_snapshots: !args.no_snapshot,
    };
    let opts = args.engine.options(&cfg)?;
    let (answer, rows, first, first_date) = crate::committed::read_retrying(&lake, |st| {
        let (answer, rows) = state::query(&lake, st, &model, &q, &opts)?;
        // (Only a --known-at question needs it: the batches are many.)
        let first = args.known_at.and_then(|_| first_ingest(st));
        Ok((answer, rows, first, first_event_date(st)))
    })?;
    warn_silver_dirty(&answer.silver_dirty, "answer");
    // A --known-at before the lake's first ingest is an empty answer:
    // right, but most often a mistyped year or a date meant for --as-of.
    if let (Some(known_at), Some((first, version))) = (args.known_at, first)
        && known_at < first
    {
        status(
            "Note",
            format!(
                "no event had been processed by --known-at {}: the lake's first ingest \
                 was at {} (commit {version}); --as-of is the time of the events",
                crate::time::format_micros(known_at),
                crate::time::format_micros(first)
            ),
        );
    }
    // So is an --as-of before the lake's first event: most often a
    // mistyped year, or a processing time meant for --known-at.
    if let Some(date) = first_date
        && answer.events_replayed == 0
        && answer.snapshot.is_none()
        && crate::time::parse_date32(&date)
            .is_ok_and(|d| crate::time::date32_of_micros(args.as_of) < d)
    {
        status(
            "Note",
            format!(
                "no event is at or before --as-of {}: the lake's events begin on {date}{}",
                crate::time::format_micros(args.as_of),
                if args.known_at.is_none() {
                    "; --known-at is the processing time"
                } else {
                    ""
                }
            ),
        );
    }
    match &answer.snapshot {
        Some(s) => status(
            "Snapshot",
            format!(
                "from {} (commit {}), then {} event(s) replayed",
                s.as_of, s.version, answer.events_replayed
            ),
        ),
        None => status(
            "Replayed",
            format!("{} event(s), no snapshot", answer.events_replayed),
        ),
    }
    super::status_first("Problem", &answer.problems, "problems", |p| {
        format!("{}: {} ({})", p.problem, p.event_id, p.detail)
    });
    // A --key that matches nothing is most often a typo, or another
    // model's key: say so rather than print an empty table alone.
    if let Some(key) = &args.key
        && rows.iter().all(|b| b.num_rows() == 0)
    {
        status(
            "Empty",
            format!(
                "no row of model `{}` has the key `{key}` as of {}",
                model.name,
                crate::time::format_micros(args.as_of)
            ),
        );
    }
    if args.json
        && let Some(b) = rows.first()
    {
        super::query::json_summary_holds(&b.schema())?;
    }
    if args.json {
        // The rows go out as Arrow's JSON writer wrote them, spliced in as
        // the summary's last member: a state can have many rows, and
        // wrapping them in a RawValue would parse them all again.
        let summary = super::json_text(&answer)?;
        let members = summary
            .strip_suffix('}')
            .map(str::trim_end)
            .context("the summary is a JSON object")?;
        // Indented only at a terminal (see `json_text`).
        let pretty = summary.contains('\n');
        let mut out = std::io::stdout().lock();
        write!(out, "{members},")?;
        write!(
            out,
            "{}",
            if pretty {
                "\n  \"rows\": "
            } else {
                "\"rows\":"
            }
        )?;
        super::query::write_json_rows(&mut out, &rows)?;
        writeln!(out, "{}}}", if pretty { "\n" } else { "" })?;
        out.flush()?;
        return Ok(());
    }
    super::query::print(&rows, args.format)
}
