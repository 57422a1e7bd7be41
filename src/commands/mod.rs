//! One module per subcommand: an `Args` struct and a `run` that wires flags
//! to library functions and prints results.

pub mod check;
pub mod compact;
pub mod erase;
pub mod generate;
pub mod gold;
pub mod history;
pub mod ingest;
pub mod init;
pub mod lateness;
pub mod query;
pub mod reconcile;
pub mod retract;
pub mod run;
pub mod silver;
pub mod snapshot;
pub mod state;
pub mod status;
pub mod tables;

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

/// How rows (of `query`, `state`, `history`) are written on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned text for people
    Table,
    /// CSV with a header row
    Csv,
    /// JSON Lines: one object per row
    Json,
    /// A Parquet file (zstd), the columns' Arrow types kept: redirect
    /// stdout to a file
    Parquet,
}

impl Format {
    /// Parquet is binary: refused (exit 2) when stdout is a terminal,
    /// before any work.
    pub fn check_output(self) -> Result<()> {
        use std::io::IsTerminal;
        if self == Format::Parquet && std::io::stdout().is_terminal() {
            return Err(crate::error::Failure::Usage(
                "--format parquet writes a binary file on stdout: redirect it, e.g. > out.parquet"
                    .into(),
            )
            .into());
        }
        Ok(())
    }
}

/// How a report (`lateness`, `tables`) is printed on stdout.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReportFormat {
    /// Aligned text for people
    Table,
    /// CSV with a header row
    Csv,
    /// JSON Lines: one object per row
    Json,
}

/// A `Removed` line for each orphan a writer removed before its run
/// (files an interrupted run left).
pub fn print_orphans(orphans: &[String]) {
    for o in orphans {
        status(
            "Removed",
            format!("orphan `{o}` left by an interrupted run"),
        );
    }
}

/// Print one JSON object on stdout (the `--json` summary).
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    out.write_all(json_text(value)?.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Rows as JSON Lines on stdout, one compact object per line (the
/// `--format json` of every command: `query`'s, `state`'s and
/// `history`'s rows are written the same way), at a terminal too, so
/// `| jq`, pandas' `lines=True` and DuckDB's `read_json` take any of them.
pub fn print_json_lines<T: Serialize>(rows: &[T]) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for row in rows {
        serde_json::to_writer(&mut out, row)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// `value` as JSON for stdout: indented for a person at a terminal, else
/// on one line, so summaries appended by cron (`--json >> runs.jsonl`)
/// are JSON Lines that `jq`, pandas and DuckDB read line by line.
pub fn json_text<T: Serialize>(value: &T) -> Result<String> {
    use std::io::IsTerminal;
    Ok(if std::io::stdout().is_terminal() {
        serde_json::to_string_pretty(value)?
    } else {
        serde_json::to_string(value)?
    })
}

/// The status verbs `--quiet` still prints: what needs a person's
/// attention (`Reading`: stdin is a terminal waiting for what is typed),
/// and the answer of a `--dry-run` (which is its output).
const ATTENTION: &[&str] = &[
    "Reading",
    "Warning",
    "Problem",
    "Repair",
    "Quarantined",
    "Rejected",
    "Ignored",
    "Empty",
    "Dry run",
    "Would",
];

/// A cargo-style status line on stderr: a right-aligned verb, then text.
/// Under `--quiet`, only the verbs in [`ATTENTION`].
pub fn status(verb: &str, text: impl std::fmt::Display) {
    if shown(verb) {
        crate::report::eline(format_args!("{verb:>12} {}", one_line(text)));
    }
}

/// A line under a `verb` line, continuing it (no verb of its own): shown
/// when that line is, so `--quiet` keeps the detail of what needs
/// attention (the bad lines under `Quarantined`).
pub fn status_under(verb: &str, text: impl std::fmt::Display) {
    if shown(verb) {
        crate::report::eline(format_args!("{:>12} {}", "", one_line(text)));
    }
}

/// `text` with its control characters but tab written as escapes (`\n`,
/// `\u{1b}`): a status line is one line of a log, whatever an input's
/// file name holds (a newline split it, and an escape sequence reached
/// the terminal).
fn one_line(text: impl std::fmt::Display) -> String {
    crate::report::escape_controls(&text.to_string(), &['\t'])
}

fn shown(verb: &str) -> bool {
    !crate::report::quiet() || ATTENTION.contains(&verb)
}

/// A status line for each of the first few `items`, then one saying how
/// many more there are, all of which `--json` lists under `json_field`.
pub fn status_first<T>(verb: &str, items: &[T], json_field: &str, line: impl Fn(&T) -> String) {
    const SHOWN: usize = 5;
    for item in items.iter().take(SHOWN) {
        status(verb, line(item));
    }
    if items.len() > SHOWN {
        status(
            verb,
            format!(
                "... {} more (all of them in --json's `{json_field}`)",
                items.len() - SHOWN
            ),
        );
    }
}

/// A `verb` line per item when there are at most `each` of them, else one
/// line for them all (`--json` lists each): so a run over thousands of
/// inputs or dates prints a line, not thousands.
pub fn each_or_all<T>(
    verb: &str,
    items: &[T],
    each: usize,
    one: impl Fn(&T) -> String,
    all: impl FnOnce(&[T]) -> String,
) {
    if items.len() <= each {
        for item in items {
            status(verb, one(item));
        }
    } else {
        status(verb, all(items));
    }
}

/// How many rows a report's table for people lists without `--all`: the
/// newest (a year-old lake has 366 dates, and its totals would scroll out
/// of sight above them). CSV and JSON always have every row.
pub const LISTED_ROWS: usize = 30;

/// `rows` (oldest first) as a table lists them: the older ones it leaves
/// out unless `all`, and the newest [`LISTED_ROWS`] it lists.
pub fn newest_rows<T>(rows: &[T], all: bool) -> (&[T], &[T]) {
    let hidden = if all {
        0
    } else {
        rows.len().saturating_sub(LISTED_ROWS)
    };
    rows.split_at(hidden)
}

/// The line that stands for the rows a table left out: how many, and the
/// keys of the first and last.
pub fn older_rows_line(n: usize, what: &str, first: &str, last: &str, command: &str) -> String {
    format!(
        "{:<12} {n} older {what}, {first}..{last}: `evlake {command} --all` lists them",
        "..."
    )
}

/// Dirty partitions as lines for people, `table partition: reasons`; a run
/// of consecutive dates of one table with the same reasons (every date
/// never built, or a changed setting) is one line, `table A..B (N dates):
/// reasons`, so a year-long lake does not print 365 alike lines.
pub fn dirty_lines(dirty: &[crate::dirty::DirtyPartition]) -> Vec<String> {
    let reasons = |d: &crate::dirty::DirtyPartition| {
        let r: Vec<String> = d.reasons.iter().map(|x| x.to_string()).collect();
        r.join("; ")
    };
    let day = |d: &crate::dirty::DirtyPartition| crate::time::parse_date32(&d.partition).ok();
    let mut lines = Vec::new();
    let mut i = 0;
    while i < dirty.len() {
        let (first, why) = (&dirty[i], reasons(&dirty[i]));
        let mut j = i + 1;
        while j < dirty.len()
            && dirty[j].table == first.table
            && matches!((day(&dirty[j - 1]), day(&dirty[j])), (Some(a), Some(b)) if b == a + 1)
            && reasons(&dirty[j]) == why
        {
            j += 1;
        }
        lines.push(if j - i > 1 {
            let last = &dirty[j - 1].partition;
            format!(
                "{} {}..{last} ({} dates): {why}",
                first.table,
                first.partition,
                j - i
            )
        } else {
            format!("{} {}: {why}", first.table, first.partition)
        });
        i = j;
    }
    lines
}

/// Partitions written, as lines for people: one per partition, or for a
/// table with more than [`WROTE_EACH`] of them one line with their count,
/// first and last partition and rows (a first run over 60 days wrote
/// ~480 lines); `--json` lists each.
pub fn wrote_lines(written: &[crate::derive::Written]) -> Vec<String> {
    let mut tables: Vec<(&str, Vec<&crate::derive::Written>)> = Vec::new();
    for w in written {
        match tables.iter_mut().find(|(t, _)| *t == w.table) {
            Some((_, ws)) => ws.push(w),
            None => tables.push((&w.table, vec![w])),
        }
    }
    let mut lines = Vec::new();
    for (table, mut ws) in tables {
        if ws.len() <= WROTE_EACH {
            lines.extend(
                ws.iter()
                    .map(|w| format!("{table} {} {:>9} rows", w.partition, w.rows)),
            );
            continue;
        }
        ws.sort_by(|a, b| a.partition.cmp(&b.partition));
        let rows: u64 = ws.iter().map(|w| w.rows).sum();
        lines.push(format!(
            "{table} {} partitions from {} to {} {rows:>9} rows",
            ws.len(),
            ws[0].partition,
            ws[ws.len() - 1].partition
        ));
    }
    lines
}

/// Up to this many partitions of a table get a `Wrote` line each.
pub const WROTE_EACH: usize = 4;

/// `--processing-time` and `--json`, shared by commands that commit.
#[derive(Debug, Clone, clap::Args)]
pub struct CommitArgs {
    /// Pin the run's processing time (RFC 3339), e.g. 2024-03-20T03:00:00Z
    /// [default: now]
    #[arg(long, value_name = "T", value_parser = parse_instant_arg)]
    pub processing_time: Option<i64>,

    /// Print the summary as one JSON object on stdout
    #[arg(long)]
    pub json: bool,
}

/// `--memory-limit`, shared by commands that run large queries.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EngineArgs {
    /// Memory DataFusion may use before sorts, joins and aggregates spill to
    /// disk (a writing command's staging directory in the lake; for query,
    /// state and history the OS temp directory), e.g. 512M, 4G; `none` for
    /// no limit
    /// [default: 2G, or engine.memory_limit in evlake.toml]
    #[arg(long, value_name = "BYTES", value_parser = parse_memory_arg)]
    pub memory_limit: Option<MemoryLimit>,
}

/// A byte limit, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimit(pub Option<usize>);

impl EngineArgs {
    /// The flag, else `engine.memory_limit` from evlake.toml, else 2G.
    pub fn options(&self, cfg: &crate::config::Config) -> Result<crate::engine::EngineOptions> {
        let limit = crate::config::resolve(
            self.memory_limit,
            cfg.engine.memory_limit.as_deref(),
            "engine.memory_limit",
            parse_memory_arg,
            MemoryLimit(Some(crate::engine::DEFAULT_MEMORY_LIMIT)),
        )?;
        Ok(crate::engine::EngineOptions {
            memory_limit: limit.0,
            spill_dir: None,
        })
    }
}

/// Parse a memory limit (`512M`, `4G`, `1073741824`, `none`) for clap: a
/// [`parse_size_arg`] but that a number without a unit under a mebibyte
/// (`512`, most often meant as megabytes) is refused, naming the unit.
pub fn parse_memory_arg(s: &str) -> Result<MemoryLimit, String> {
    match parse_size_arg(s)? {
        MemoryLimit(Some(n)) if n < 1 << 20 && s.trim().bytes().all(|b| b.is_ascii_digit()) => {
            Err(format!(
                "`{s}` is {n} bytes, too little to run in: write the unit, e.g. {n}M (bytes \
                 need 1048576 or more)"
            ))
        }
        limit => Ok(limit),
    }
}

/// Parse a byte size (`512M`, `4K`, `1073741824` bytes, `none`) for clap.
pub fn parse_size_arg(s: &str) -> Result<MemoryLimit, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("none") {
        return Ok(MemoryLimit(None));
    }
    let upper = t.to_ascii_uppercase();
    let body = upper.strip_suffix('B').unwrap_or(&upper);
    let (num, unit) = match body.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => body.split_at(i),
        None => (body, ""),
    };
    let shift = match unit.trim_end_matches('I') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("`{s}` is not a size (e.g. 512M, 4G, none)")),
    };
    match num.parse::<usize>() {
        Ok(n) if n > 0 => n
            .checked_mul(1usize << shift)
            .map(|n| MemoryLimit(Some(n)))
            .ok_or_else(|| format!("`{s}` is too large")),
        _ => Err(format!("`{s}` is not a size (e.g. 512M, 4G, none)")),
    }
}

/// The run's processing time: the pinned value, else the wall clock (read
/// here, once, never deeper in the library).
pub fn processing_time_or_now(pinned: Option<i64>) -> i64 {
    let now = chrono::Utc::now().timestamp_micros();
    // A pin ahead of the clock is taken (a test may want one), but it is
    // most often a typo (`2204` for `2024`), and the commit keeps it: every
    // later run stamped now is then earlier than it.
    if let Some(p) = pinned
        && p > now + crate::time::MICROS_PER_DAY
    {
        status(
            "Warning",
            format!(
                "--processing-time {} is {} ahead of this machine's clock: the commit \
                 keeps it, and every later run stamped with the clock's time comes before it",
                crate::time::format_micros(p),
                crate::time::format_duration_micros(p - now)
            ),
        );
    }
    pinned.unwrap_or(now)
}

/// Parse an RFC 3339 instant for clap, or `now` (the clock's, as when the
/// flag is left out).
pub fn parse_instant_arg(s: &str) -> Result<i64, String> {
    if s.trim().eq_ignore_ascii_case("now") {
        return Ok(chrono::Utc::now().timestamp_micros());
    }
    crate::time::parse_instant(s)
}

/// Parse a duration (`30m`, `1d`) for clap.
pub fn parse_duration_arg(s: &str) -> Result<i64, String> {
    crate::time::parse_duration_micros(s)
}

/// `A..B` or a single date, both `YYYY-MM-DD`, as Date32 days.
pub fn parse_date_range(s: &str) -> Result<(i32, i32), String> {
    let (a, b) = s.split_once("..").unwrap_or((s, s));
    let a = crate::time::parse_date32(a.trim())?;
    let b = crate::time::parse_date32(b.trim())?;
    if a > b {
        return Err(format!("`{s}`: the range ends before it starts"));
    }
    Ok((a, b))
}

/// Warn when `--dates A..B` named no date the table has (a wrong year, a
/// typo): nothing was restated, which would otherwise go unnoticed.
pub fn warn_if_nothing_restated(dates: Option<(i32, i32)>, restated: &[String]) {
    warn_if_no_date(dates, restated, "restated");
}

/// Warn when `--dates A..B` named none of `found`, the dates it would have
/// `done` something to.
pub fn warn_if_no_date(dates: Option<(i32, i32)>, found: &[String], done: &str) {
    if let Some((a, b)) = dates
        && found.is_empty()
    {
        let (a, b) = (crate::time::format_date32(a), crate::time::format_date32(b));
        let range = if a == b { a } else { format!("{a}..{b}") };
        status(
            "Warning",
            format!(
                "--dates {range} names no date this lake has events on: nothing was {done} (`evlake status` lists the dates)"
            ),
        );
    }
}

/// Parse a fraction in `[0, 1]` for clap.
pub fn parse_fraction_arg(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "`{s}` is not a fraction between 0 and 1 (e.g. 0.05)"
        )),
    }
}

/// A dry run's `Would` lines for the typed tables of the lake's own it
/// would rebuild, each failing instead where `fails` gives its file, and
/// those it would drop.
pub(crate) fn would_typed(
    typed: &std::collections::BTreeMap<String, Vec<String>>,
    dropped: &[String],
    fails: impl Fn(&str) -> Option<String>,
) {
    for (table, dates) in typed {
        let line = match fails(table) {
            Some(source) => format!("fail on typed table {table} ({source}): see below"),
            None => format!(
                "rebuild typed table {table} from the built events for {}",
                date_span(dates)
            ),
        };
        status("Would", line);
    }
    for table in dropped {
        status(
            "Would",
            format!("drop typed table {table} (its file in typed/ is gone)"),
        );
    }
}

/// A dry run's `Would` lines for the daily tables of the lake's own it
/// would recompute, each left out instead where `left_out` says what
/// (its file, in brackets, or nothing), and those it would drop.
pub(crate) fn would_daily(
    daily: &std::collections::BTreeMap<String, Vec<String>>,
    dropped: &[String],
    left_out: impl Fn(&str) -> Option<String>,
) {
    for (table, dates) in daily.iter().filter(|(_, d)| !d.is_empty()) {
        let line = match left_out(table) {
            Some(source) => {
                format!("leave out daily table {table}{source}, building the rest: see below")
            }
            None => format!("recompute daily table {table} for {}", date_span(dates)),
        };
        status("Would", line);
    }
    for table in dropped {
        status(
            "Would",
            format!("drop daily table {table} (its file in daily/ is gone)"),
        );
    }
}

/// Dates as `N dates, FIRST..LAST` (one date as itself).
pub(crate) fn date_span(dates: &[String]) -> String {
    match dates {
        [one] => one.clone(),
        [first, .., last] => format!("{} dates, {first}..{last}", dates.len()),
        [] => "no date".to_string(),
    }
}

/// Dates listed, or `none`.
pub(crate) fn date_list(dates: &[String]) -> String {
    if dates.is_empty() {
        "none".to_string()
    } else {
        dates.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        let p = |s| parse_memory_arg(s).map(|m| m.0);
        assert_eq!(p("512M"), Ok(Some(512 << 20)));
        assert_eq!(p("4G"), Ok(Some(4 << 30)));
        assert_eq!(p("2gib"), Ok(Some(2 << 30)));
        assert_eq!(p("1073741824"), Ok(Some(1 << 30)));
        assert_eq!(parse_size_arg("512").map(|m| m.0), Ok(Some(512)));
        assert_eq!(p("1K"), Ok(Some(1024)));
        assert_eq!(
            p("512"),
            Err(
                "`512` is 512 bytes, too little to run in: write the unit, e.g. 512M (bytes \
                 need 1048576 or more)"
                    .into()
            )
        );
        assert_eq!(p("none"), Ok(None));
        for bad in ["", "0", "-1G", "1.5G", "12Q", "G"] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wrote_lines_sum_up_a_table_with_many_partitions() {
        use crate::derive::Written;
        let w = |table: &str, partition: &str, rows| Written {
            table: table.into(),
            partition: partition.into(),
            rows,
        };
        let mut written = vec![
            w("events", "2024-03-05", 10),
            w("sessions", "2024-03-05", 2),
        ];
        for (day, rows) in [(1, 5), (3, 0), (2, 7), (4, 1)] {
            written.push(w("ledger", &format!("2024-03-0{day}"), rows));
        }
        written.push(w("ledger", "2024-03-09", 2));
        assert_eq!(
            wrote_lines(&written),
            [
                "events 2024-03-05        10 rows",
                "sessions 2024-03-05         2 rows",
                "ledger 5 partitions from 2024-03-01 to 2024-03-09        15 rows",
            ]
        );
    }

    #[test]
    fn dirty_lines_join_consecutive_dates_with_the_same_reasons() {
        use crate::dirty::{DirtyPartition, DirtyReason};
        let d = |table: &str, partition: &str, reason: DirtyReason| DirtyPartition {
            table: table.into(),
            partition: partition.into(),
            reasons: vec![reason],
        };
        let never = || DirtyReason::NeverBuilt;
        let changed = |p: &str| DirtyReason::InputChanged {
            input: format!("bronze_events/{p}"),
            built_from: 2,
            changed_in: 4,
        };
        let dirty = [
            d("events", "2024-02-28", never()),
            d("events", "2024-02-29", never()),
            d("events", "2024-03-01", never()),
            // a gap in the dates
            d("events", "2024-03-03", never()),
            // another reason
            d("events", "2024-03-04", changed("2024-03-04")),
            d("events", "2024-03-05", changed("2024-03-05")),
            // another table
            d("sessions", "2024-03-06", never()),
            d("daily_metrics", "2024-03-07", never()),
            d("daily_metrics", "2024-03-08", never()),
        ];
        assert_eq!(
            dirty_lines(&dirty),
            [
                "events 2024-02-28..2024-03-01 (3 dates): never built",
                "events 2024-03-03: never built",
                "events 2024-03-04: bronze_events/2024-03-04 changed in commit 4 (built from 2)",
                "events 2024-03-05: bronze_events/2024-03-05 changed in commit 4 (built from 2)",
                "sessions 2024-03-06: never built",
                "daily_metrics 2024-03-07..2024-03-08 (2 dates): never built",
            ]
        );
    }
}
