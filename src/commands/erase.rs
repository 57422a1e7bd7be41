//! `evlake erase`: take every row of some users out of the lake.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{CommitArgs, print_json, processing_time_or_now, status};
use crate::erase;
use crate::error::Failure;
use crate::lake::Lake;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake erase --user u42 --dry-run                 # what it would take out
  evlake erase --user u42 --user u77 --json         # summary as JSON on stdout
  evlake erase --users-from requests.txt && evlake run   # a day's requests, then rebuild

A user's events leave bronze_events and bronze_late (by user_id), the
quarantined lines that name them leave quarantine, and snapshots at or
after the earliest changed event are removed. On the dates whose silver is
up to date their silver rows (events, sessions, typed tables) go in the same
commit; the other dates become dirty. The next `evlake run` (or `silver` and
`gold`) rebuilds what is dirty, daily metrics included. The log records
counts, never the ids. Safe to run twice: a user with no rows left is
reported `not_found`.")]
pub struct Args {
    /// A user id as in bronze's user_id (repeatable)
    #[arg(long = "user", value_name = "ID")]
    pub users: Vec<String>,

    /// A file of user ids, one per line (`-`: stdin); blank lines and
    /// lines starting with `#` are skipped
    #[arg(long, value_name = "FILE")]
    pub users_from: Option<PathBuf>,

    /// Report what would be taken out; change nothing
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub commit: CommitArgs,
}

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    let lake = Lake::new(lake_dir);
    lake.require()?;
    if args.users.is_empty() && args.users_from.is_none() {
        return Err(
            Failure::Usage("no user to erase: give --user ID or --users-from FILE".into()).into(),
        );
    }
    let mut users: BTreeSet<String> = args.users.into_iter().collect();
    if let Some(path) = &args.users_from {
        // A day's requests file may hold none (blank, or comments only):
        // that erases nothing, exit 0, so the nightly `erase ... && run`
        // line goes on.
        users.extend(read_ids(path)?);
    }
    let opts = erase::Options {
        users,
        processing_time: processing_time_or_now(args.commit.processing_time),
        dry_run: args.dry_run,
    };
    let r = erase::erase(&lake, &opts)?;
    print_report(&r);
    if args.commit.json {
        print_json(&r)?;
    }
    Ok(())
}

/// The ids in file `path` (`-`: stdin), one per line: see [`parse_ids`].
fn read_ids(path: &Path) -> Result<Vec<String>> {
    let mut text = String::new();
    let name = if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::Usage(format!("--users-from -: stdin: {e}")))?;
        "stdin".to_string()
    } else {
        text = std::fs::read_to_string(path)
            .map_err(|e| Failure::Usage(format!("--users-from `{}`: {e}", path.display())))?;
        format!("`{}`", path.display())
    };
    parse_ids(&text, &name)
}

/// One id per line (a `\r\n` ending too), blank lines and `#` comments
/// skipped. A UTF-8 byte-order mark at the start (a list saved from Excel
/// or Notepad) is not part of the first id, which then matched no user. An id is matched exactly, as ingest keeps it, so a line with
/// white space around its id is a usage error rather than trimmed: bronze
/// holds `" u1"` and `"u1"` apart, and erasing the other one (or, exact,
/// finding no row and erasing nothing) must not pass unnoticed.
fn parse_ids(text: &str, name: &str) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (n, line) in text.lines().enumerate() {
        let id = line.trim();
        if id.is_empty() || id.starts_with('#') {
            continue;
        }
        if id != line {
            return Err(Failure::Usage(format!(
                "--users-from {name} line {}: the id {line:?} has white space around it; \
                 user ids are matched exactly (the lake keeps {line:?} and {id:?} apart): \
                 take the spaces out, or give an id that has them with --user",
                n + 1
            ))
            .into());
        }
        ids.push(id.to_string());
    }
    Ok(ids)
}

fn print_report(r: &erase::EraseReport) {
    super::print_orphans(&r.orphans_removed);
    let (verb, would) = if r.status == "dry_run" {
        ("Dry run", "would take out ")
    } else {
        ("Erased", "")
    };
    let found: Vec<_> = r.users.iter().filter(|u| u.status == "erased").collect();
    super::status_first(verb, &found, "users", |u| {
        format!(
            "{would}{}: {} event(s) in bronze, {} waiting in the side output, {} quarantined line(s)",
            u.user_id, u.bronze_rows, u.late_rows, u.quarantined
        )
    });
    let missing: Vec<_> = r.users.iter().filter(|u| u.status != "erased").collect();
    super::each_or_all(
        "Not found",
        &missing,
        5,
        |u| {
            format!(
                "{}: no row in the lake (never there, or erased before)",
                u.user_id
            )
        },
        |all| {
            format!(
                "{} users with no row in the lake (never there, or erased before; --json's `users` names them)",
                all.len()
            )
        },
    );
    let patched = |d: &str| r.silver_dates.iter().any(|s| s == d);
    super::status_first("Dirty", &r.dates, "dates", |d| {
        format!(
            "event_date={}: {} event(s) taken out ({})",
            d.event_date,
            d.rows,
            if patched(&d.event_date) {
                "their silver rows too; the next gold recomputes it"
            } else {
                "the next silver and gold rebuild it"
            }
        )
    });
    let (removes, would) = if r.status == "dry_run" {
        ("Dry run", "would remove ")
    } else {
        ("Removed", "")
    };
    super::status_first(removes, &r.snapshots_removed, "snapshots_removed", |s| {
        format!(
            "{would}snapshot {} as of {} (`run` writes again those its policy keeps)",
            s.model, s.as_of
        )
    });
    match r.status {
        "committed" => status(
            "Committed",
            format!(
                "version {}: {} files removed, {} rewritten without the users' rows; run `evlake run` to rebuild {}",
                r.version,
                r.files_removed,
                r.files_added,
                if r.silver_dates.len() == r.dates.len() {
                    "gold"
                } else {
                    "silver and gold"
                }
            ),
        ),
        "dry_run" => status(
            "Dry run",
            format!(
                "nothing changed ({} files would be removed, {} of them written again without the users' rows)",
                r.files_removed, r.files_added
            ),
        ),
        _ if r.users.is_empty() => status(
            "Unchanged",
            format!(
                "no user id to erase (the --users-from file holds none; lake at version {})",
                r.version
            ),
        ),
        _ => status(
            "Unchanged",
            format!("nothing to erase (lake at version {})", r.version),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lines_taken_exactly() {
        let ids = parse_ids("# requests\r\nu1\r\n\n  \n  # indented note\nü 2\n", "f").unwrap();
        assert_eq!(ids, ["u1", "ü 2"]);
        let ids = parse_ids("\u{feff}u1\r\nu2\r\n", "f").unwrap();
        assert_eq!(ids, ["u1", "u2"]);
        for (text, line) in [("u1\n u2\n", 2), ("u1 \n", 1), ("\tu1\n", 1)] {
            let e = parse_ids(text, "`f`").unwrap_err();
            assert_eq!(crate::error::exit_code(&e), crate::error::EXIT_USAGE);
            assert!(
                e.to_string()
                    .starts_with(&format!("--users-from `f` line {line}: the id ")),
                "{e}"
            );
        }
    }
}
