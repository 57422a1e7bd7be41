//! `evlake status`: watermark, partitions and dirtiness, from metadata only.

use std::io::Write;
use std::path::Path;

use anyhow::Result;

use super::print_json;
use crate::lake::Lake;
use crate::log::LakeState;
use crate::report;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake status
  evlake status --all                     # every date, not only the newest 30
  evlake status --json | jq '.dirty'      # for schedulers

Reads only the commit log (and evlake.toml), never data files. The dirty
partitions are what `evlake run` without flags would recompute: against
the settings in evlake.toml, so a changed setting shows there.")]
pub struct Args {
    /// Print the status as one JSON object on stdout
    #[arg(long)]
    pub json: bool,
    /// List every date's partition, not only the newest 30 (`--json` always
    /// has every one)
    #[arg(long)]
    pub all: bool,
}

/// From this many commits on, a log that keeps every one says how to
/// bound it (~7 months of hourly `run`s).
const LONG_LOG: u64 = 15_000;

/// The `commits` line: how many, which versions the log still has once
/// `[log] retention` removed older ones, and for a long log kept whole,
/// the setting that bounds it.
fn commits_line(commits: u64, first: u64, version: u64, retention: bool) -> String {
    if first > 1 {
        format!(
            "commits    {commits} (the log keeps versions {first} to {version}; \
             [log] retention removed the older)"
        )
    } else if commits >= LONG_LOG && !retention {
        format!(
            "commits    {commits} (every one kept in _evlake/log; \
             [log] retention in evlake.toml deletes old ones)"
        )
    } else {
        format!("commits    {commits}")
    }
}

/// The settings `evlake run` without flags would use (`cfg`, from
/// `evlake.toml`, else the defaults): dirtiness is reported against them.
pub fn configured(cfg: &crate::config::Config) -> Result<crate::pipeline::Configured> {
    let silver = super::silver::SessionArgs {
        session_gap: None,
        session_exclude_types: None,
    }
    .settings(cfg)?;
    let currency = super::gold::GoldArgs { currency: None }.currency(cfg)?;
    Ok(crate::pipeline::Configured { silver, currency })
}

/// What differs between the settings silver and gold were last built
/// with (as their commits record them) and `configured`, for the layers
/// whose fingerprint differs (see [`report::Status::settings_changed`]).
fn settings_changed(
    lake: &Lake,
    state: &LakeState,
    configured: &crate::pipeline::Configured,
) -> Vec<String> {
    use crate::{gold, pipeline, silver};
    let layers = [
        (
            "silver",
            silver::EVENTS_TABLE,
            silver::fingerprint(&configured.silver),
            silver::commit_settings(&configured.silver),
        ),
        (
            "gold",
            gold::METRICS_TABLE,
            gold::fingerprint(&configured.currency),
            gold::commit_settings(&configured.currency),
        ),
    ];
    let mut out = Vec::new();
    for (layer, table, fingerprint, now) in layers {
        let Some(version) = state
            .builds
            .get(table)
            .and_then(|b| b.values().map(|(v, _)| *v).max())
        else {
            continue;
        };
        if pipeline::last_fingerprint(state, table) == fingerprint {
            continue;
        }
        let Ok(commit) = crate::log::read_commit(lake, version) else {
            out.push(format!(
                "{layer}: its SQL or settings differ from this run's"
            ));
            continue;
        };
        let built = &commit.settings;
        let keys: std::collections::BTreeSet<&String> = now
            .keys()
            .chain(built.keys().filter(|k| *k != "mode"))
            .collect();
        let before = out.len();
        for key in keys {
            let (then, now) = (built.get(key), now.get(key));
            if then != now {
                let (name, then, now) = (setting_name(key), shown(key, then), shown(key, now));
                out.push(format!(
                    "{layer}.{name}: {then} when built (commit {version}), {now} now"
                ));
            }
        }
        if out.len() == before {
            out.push(format!(
                "{layer}: same settings, but its SQL differs from this evlake's (another \
                 evlake version built it)"
            ));
        }
    }
    out
}

/// A recorded setting's name as `evlake.toml` spells it (`session_gap_us`
/// is `session_gap`).
fn setting_name(key: &str) -> &str {
    key.strip_suffix("_us").unwrap_or(key)
}

/// A recorded setting's value as a person writes it: µs as a duration,
/// an absent one as `none`.
fn shown(key: &str, value: Option<&String>) -> String {
    match value {
        None => "none".to_string(),
        Some(v) if key.ends_with("_us") => v
            .parse::<i64>()
            .map_or(v.clone(), crate::time::format_duration_micros),
        Some(v) => v.clone(),
    }
}

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    let lake = Lake::new(lake_dir);
    lake.require()?;
    let cfg = crate::config::Config::load(&lake)?;
    let configured = configured(&cfg)?;
    super::run::check_settings(&lake, &cfg)?;
    let state = LakeState::load(&lake)?;
    let (snapshots, broken_models) = crate::state::all_snapshots(&lake, &state)?;
    let mut s = report::status(
        &lake.root().display().to_string(),
        &state,
        &configured,
        snapshots,
    );
    s.first_commit = crate::log::first_version(&lake)?;
    s.settings_changed = settings_changed(&lake, &state, &configured);
    s.staging = lake.staging_dirs();
    if !lake.known_clean() {
        s.orphans = crate::log::orphans(&lake, &state, &crate::ingest::table_dirs())?;
    }
    s.broken_models = broken_models;
    s.own_typed_tables = crate::silver::own_typed();
    s.own_daily_tables = crate::daily::listed();
    // Planned over empty tables: what the next run would refuse.
    for r in crate::pipeline::refused_tables()? {
        // The line names the table and its file already; one line each
        // (DataFusion lists the valid fields on a line of their own).
        let problem = Some(r.problem.replace('\n', " "));
        if r.step == "silver" {
            if let Some(t) = s.own_typed_tables.iter_mut().find(|t| t.table == r.table) {
                t.problem = problem;
            }
        } else if let Some(t) = s.own_daily_tables.iter_mut().find(|t| t.table == r.table) {
            t.problem = problem;
        }
    }
    if args.json {
        return print_json(&s);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "lake       {}", s.lake)?;
    let retention = cfg.log.retention.is_some();
    writeln!(
        out,
        "{}",
        commits_line(s.commits, s.first_commit, s.version, retention)
    )?;
    writeln!(
        out,
        "watermark  {}",
        s.watermark.as_deref().unwrap_or("unset (empty lake)")
    )?;
    writeln!(
        out,
        "max event  {}",
        s.max_event_time.as_deref().unwrap_or("-")
    )?;
    if let Some(l) = &s.last_ingest {
        writeln!(
            out,
            "last batch {} (processing time of commit {}, the latest ingest that added events)",
            l.processing_time, l.version
        )?;
    }
    writeln!(
        out,
        "events     {} in bronze ({} late), {} waiting in the side output{}",
        s.events,
        s.late_events,
        s.side_output_events,
        if s.side_output_events > 0 {
            " (not in silver or gold until `evlake reconcile` merges them into bronze)"
        } else {
            ""
        }
    )?;
    if s.quarantined > 0 {
        writeln!(
            out,
            "quarantine {} bad line(s) from {} run(s), in table `quarantine` (by reason: evlake \
             query \"SELECT reason, count(*) FROM quarantine GROUP BY 1\")",
            s.quarantined, s.quarantine_files
        )?;
    }
    if let Some(v) = s.last_retract {
        writeln!(
            out,
            "retracted  {} input batch(es) taken back by `evlake retract`, the latest in commit {v} \
             (`evlake lateness --by batch` marks them)",
            s.retracted_batches
        )?;
    }
    if let Some(v) = s.last_erase {
        writeln!(
            out,
            "erased     the rows of {} user(s) taken out by `evlake erase`, the latest in commit {v}",
            s.erased_users
        )?;
    }
    // The table's dates: the older ones it leaves out, the newest it lists.
    let (older, listed) = super::newest_rows(&s.partitions, args.all);
    // A few dates are named on the line; more are in the table's columns.
    let per_date = |n: fn(&crate::report::PartitionStatus) -> u64, column: &str| -> String {
        let dates: Vec<String> = s
            .partitions
            .iter()
            .filter(|p| n(p) > 0)
            .map(|p| format!("{}: {}", p.event_date, n(p)))
            .collect();
        if dates.len() <= 3 {
            dates.join(", ")
        } else if !older.is_empty() {
            format!(
                "on {} dates: the `{column}` column of `evlake status --all`",
                dates.len()
            )
        } else {
            format!("on {} dates: the `{column}` column below", dates.len())
        }
    };
    if s.id_conflicts > 0 {
        writeln!(
            out,
            "conflicts  {} re-sent event(s) with other content than the first copy of their \
             event_id on the date, left out of silver ({})",
            s.id_conflicts,
            per_date(|p| p.id_conflicts, "conflicts")
        )?;
    }
    if s.ids_on_other_dates > 0 {
        writeln!(
            out,
            "conflicts  {} event_id(s) on more than one date, kept on each by silver ({})",
            s.ids_on_other_dates,
            per_date(|p| p.ids_on_other_dates, "other_dates")
        )?;
    }
    if !s.partitions.is_empty() {
        // The conflict columns only when some date has conflicts.
        let conflicts = s.id_conflicts > 0;
        let other_dates = s.ids_on_other_dates > 0;
        let extra = |a: &dyn std::fmt::Display, b: &dyn std::fmt::Display| {
            let mut x = String::new();
            if conflicts {
                x += &format!(" {a:>9}");
            }
            if other_dates {
                x += &format!(" {b:>11}");
            }
            x
        };
        writeln!(out)?;
        writeln!(
            out,
            "{:<12} {:>7} {:>10} {:>8} {:>12} {:>6}{}",
            "event_date",
            "version",
            "events",
            "late",
            "side_output",
            "files",
            extra(&"conflicts", &"other_dates")
        )?;
        if let (Some(first), Some(last)) = (older.first(), older.last()) {
            let line = super::older_rows_line(
                older.len(),
                "date(s)",
                &first.event_date,
                &last.event_date,
                "status",
            );
            writeln!(out, "{line}")?;
        }
        for p in listed {
            writeln!(
                out,
                "{:<12} {:>7} {:>10} {:>8} {:>12} {:>6}{}",
                p.event_date,
                p.version,
                p.events,
                p.late_events,
                p.side_output_events,
                p.files,
                extra(&p.id_conflicts, &p.ids_on_other_dates)
            )?;
        }
    }
    writeln!(out)?;
    if !s.not_built.is_empty() {
        writeln!(
            out,
            "not built  {} (`evlake run` builds them from bronze)",
            s.not_built.join(", ")
        )?;
    }
    if s.dirty.is_empty() {
        writeln!(out, "dirty      none (no derived partition is out of date)")?;
    } else {
        writeln!(out, "dirty derived partitions:")?;
        for line in super::dirty_lines(&s.dirty) {
            writeln!(out, "  {line}")?;
        }
        for c in &s.settings_changed {
            writeln!(out, "  because {c}")?;
        }
    }
    for d in &s.staging {
        writeln!(
            out,
            "staging    {} in _evlake/staging/{}: {}",
            format_bytes(d.bytes),
            d.name,
            match d.running {
                Some(true) => "a writer at work (its process is running)",
                Some(false) => "left by a run that was killed; the next writer removes it",
                None => "a writer at work, or left by a killed one (the next writer removes it)",
            }
        )?;
    }
    if let Some(first) = s.orphans.first() {
        let whose = if s.staging.iter().any(|d| d.running == Some(true)) {
            "a writer at work has not committed yet (or a killed one left)"
        } else {
            "a killed or failed run left"
        };
        writeln!(
            out,
            "orphans    {} file(s) in the table directories, e.g. {first}, that no commit references: {whose} them; \
             evlake's readers skip them, but a reader globbing the directories (DuckDB, Spark, pyarrow) sees them \
             until the next writer removes them",
            s.orphans.len()
        )?;
    }
    if let Some(first) = s.compactable.first() {
        writeln!(
            out,
            "compact    {} bronze date(s) (e.g. {first}) have {} or more small files: \
             `evlake compact` (or `compact_min_files` in evlake.toml) merges them",
            s.compactable.len(),
            crate::compact::DEFAULT_MIN_FILES
        )?;
    }
    for t in &s.own_daily_tables {
        let reads = if t.reads.is_empty() {
            String::new()
        } else {
            format!(" (reads {})", t.reads.join(", "))
        };
        let problem = t
            .problem
            .as_ref()
            .map(|p| {
                format!(": {p}; `evlake gold` fails on it (building the rest) until it is fixed")
            })
            .unwrap_or_default();
        writeln!(
            out,
            "daily      `{}` from {}{reads}{problem}",
            t.table, t.source
        )?;
    }
    for t in &s.own_typed_tables {
        let problem = t
            .problem
            .as_ref()
            .map(|p| format!(": {p}; `evlake silver` fails on it until it is fixed"))
            .unwrap_or_default();
        writeln!(
            out,
            "typed      `{}` from {}{}{problem}",
            t.table,
            t.source,
            if t.replaces_builtin {
                " (replacing the built-in one)"
            } else {
                ""
            }
        )?;
    }
    for b in &s.broken_models {
        writeln!(out, "model      `{}` does not load: {}", b.model, b.error)?;
    }
    if !s.snapshots.is_empty() {
        writeln!(out, "snapshots:")?;
        for line in snapshot_lines(&s.snapshots) {
            writeln!(out, "  {line}")?;
        }
    }
    Ok(())
}

/// The snapshots as lines: one each, except that a model's run of more
/// than [`SNAPSHOTS_EACH`] valid ones in a row (a daily policy's) shares
/// one line (`--json` lists each).
fn snapshot_lines(snapshots: &[crate::state::Snapshot]) -> Vec<String> {
    let one = |sn: &crate::state::Snapshot| {
        format!(
            "{} as of {} (commit {}, {} rows): {}",
            sn.model,
            sn.as_of,
            sn.version,
            sn.rows,
            match &sn.invalid_because {
                None => "valid".to_string(),
                Some(why) => format!("INVALID, never used: {why}"),
            }
        )
    };
    let mut lines = Vec::new();
    for run in snapshots.chunk_by(|a, b| a.model == b.model && a.valid && b.valid) {
        if run.len() > SNAPSHOTS_EACH {
            let (first, last) = (&run[0], &run[run.len() - 1]);
            lines.push(format!(
                "{} as of {} to {}: {} snapshots, valid (the newest: commit {}, {} rows)",
                first.model,
                first.as_of,
                last.as_of,
                run.len(),
                last.version,
                last.rows
            ));
        } else {
            lines.extend(run.iter().map(one));
        }
    }
    lines
}

/// Up to this many valid snapshots in a row get a line each.
const SNAPSHOTS_EACH: usize = 3;

/// A byte count as a person reads it: `512 B`, `1.9 MiB`, `3.2 GiB`.
pub(crate) fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_log_kept_whole_names_the_setting_that_bounds_it() {
        use super::{LONG_LOG, commits_line};
        assert_eq!(commits_line(12, 1, 12, false), "commits    12");
        assert!(
            commits_line(LONG_LOG, 1, LONG_LOG, false).contains("[log] retention in evlake.toml")
        );
        assert_eq!(
            commits_line(LONG_LOG, 1, LONG_LOG, true),
            format!("commits    {LONG_LOG}")
        );
        assert!(commits_line(LONG_LOG, 9, LONG_LOG, true).contains("keeps versions 9 to"));
    }

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(super::format_bytes(0), "0 B");
        assert_eq!(super::format_bytes(1023), "1023 B");
        assert_eq!(super::format_bytes(1536), "1.5 KiB");
        assert_eq!(super::format_bytes(1_992_294), "1.9 MiB");
        assert_eq!(super::format_bytes(5 << 30), "5.0 GiB");
    }

    #[test]
    fn a_run_of_valid_snapshots_shares_a_line() {
        let sn = |model: &str, day: u32, invalid: bool| crate::state::Snapshot {
            model: model.into(),
            as_of: format!("2024-03-{day:02}T23:59:59.999999Z"),
            as_of_us: 0,
            key: String::new(),
            version: u64::from(day),
            rows: 10,
            valid: !invalid,
            invalid_because: invalid.then(|| "commit 9 added an event".to_string()),
        };
        let mut all: Vec<_> = (1..=5).map(|d| sn("balances", d, false)).collect();
        all.push(sn("balances", 6, true));
        all.push(sn("balances", 7, false));
        all.extend((1..=2).map(|d| sn("carts", d, false)));
        assert_eq!(
            super::snapshot_lines(&all),
            [
                "balances as of 2024-03-01T23:59:59.999999Z to 2024-03-05T23:59:59.999999Z: \
                 5 snapshots, valid (the newest: commit 5, 10 rows)",
                "balances as of 2024-03-06T23:59:59.999999Z (commit 6, 10 rows): \
                 INVALID, never used: commit 9 added an event",
                "balances as of 2024-03-07T23:59:59.999999Z (commit 7, 10 rows): valid",
                "carts as of 2024-03-01T23:59:59.999999Z (commit 1, 10 rows): valid",
                "carts as of 2024-03-02T23:59:59.999999Z (commit 2, 10 rows): valid",
            ]
        );
    }
}
