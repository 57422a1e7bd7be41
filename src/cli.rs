//! The command line: global flags, the subcommand list and the dispatch.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::commands;

const ABOUT: &str = "Batch data-lake transformations for event streams.

evlake ingests raw NDJSON events into an append-only, event_date-partitioned
Parquet lake (bronze), quarantining bad lines with a reason, places late
events by a watermark, builds sessionized silver tables and daily gold
metrics, recomputing only what late data changed, and answers state as of
any time from snapshots. It is safe to re-run from cron: inputs already
committed are skipped, a crash leaves no partial data, and one writer at a
time holds the lake lock.";

const AFTER_HELP: &str = "Examples:
  evlake ingest events/2024-03-15.jsonl.gz
  zcat batch.ndjson.gz | evlake --lake /data/lake ingest - --json
  evlake ingest late.jsonl --late-policy side-output && evlake reconcile
  evlake run incoming/ --json                      # ingest, silver, gold: the cron line
  evlake -q run incoming/                          # the same, silent unless something is wrong
  evlake query 'SELECT * FROM daily_metrics ORDER BY event_date'
  evlake state balances --as-of 2024-03-15 --key acct-u2
  evlake history acct-u2
  evlake status --json
  evlake lateness --by batch
  evlake retract 3f2a9c0d1e4b5a67                  # take back a batch ingested by mistake
  evlake erase --user u42 && evlake run            # a right-to-erasure request
  evlake check --deep                              # every committed file whole, as the log says
  evlake generate --events 100000 --out /tmp/gen

Exit codes:
  0  success (including runs that quarantined lines within --max-bad-fraction)
  1  runtime or I/O error (and `check` finding a file not as the log says,
     or an internal error, a panic)
  2  usage error (bad flag or value, bad evlake.toml, bad SQL query, unknown
     model, unparseable time)
  3  the lake is locked by another writer (--lock-wait DUR waits for it)
  4  data rejected: the bad-line fraction was exceeded, nothing was committed
`evlake run` exits with the failed step's code and names the step.";

#[derive(Debug, Parser)]
#[command(name = "evlake", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    /// Lake directory [default: $EVLAKE_LAKE, then ./lake]
    #[arg(
        long,
        global = true,
        env = "EVLAKE_LAKE",
        default_value = "lake",
        value_name = "DIR",
        hide_default_value = true,
        hide_env = true
    )]
    pub lake: PathBuf,

    /// If another writer holds the lake's lock, wait up to this long for
    /// it (e.g. 10m) before exiting 3; for cron runs that may overlap
    /// [default: 0, exit 3 at once, or $EVLAKE_LOCK_WAIT]
    #[arg(
        long,
        global = true,
        env = "EVLAKE_LOCK_WAIT",
        value_name = "DUR",
        value_parser = crate::time::parse_duration_micros,
        hide_env = true
    )]
    pub lock_wait: Option<i64>,

    /// Print on stderr only what needs attention (warnings, state
    /// problems, quarantined or ignored input, errors), no progress or
    /// success lines: a cron run that went well prints nothing
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented default evlake.toml into the lake
    Init(commands::init::Args),
    /// Ingest NDJSON files, directories or stdin (`-`) into bronze
    Ingest(commands::ingest::Args),
    /// Merge late events waiting in the side output (bronze_late) into bronze
    Reconcile(commands::reconcile::Args),
    /// Rewrite bronze dates' many small files (hourly runs) as one each
    Compact(commands::compact::Args),
    /// Take back every row of input batches ingested by mistake
    Retract(commands::retract::Args),
    /// Take every row of some users out of the lake (right to erasure)
    Erase(commands::erase::Args),
    /// Build sessionized events, sessions and typed tables (silver) from bronze
    Silver(commands::silver::Args),
    /// Build daily_metrics and daily_revenue_by_currency (gold) from silver
    Gold(commands::gold::Args),
    /// Ingest, then silver, then gold for what became dirty (for cron)
    Run(commands::run::Args),
    /// A state model (balances, carts, profiles, ...) as of any time
    State(commands::state::Args),
    /// Store a model's state at a time, so later questions replay less
    Snapshot(commands::snapshot::Args),
    /// Every event that affected one entity, with the running state
    History(commands::history::Args),
    /// Show the watermark, partitions and dirty derived partitions
    Status(commands::status::Args),
    /// Show the lateness distribution per partition or per batch
    Lateness(commands::lateness::Args),
    /// Run ad-hoc SQL over the logical tables (bronze_events, events, daily_metrics, ...)
    Query(commands::query::Args),
    /// List the logical tables with their columns, partitions and rows
    Tables(commands::tables::Args),
    /// Check that every committed file is on disk, with the size and rows the log says
    Check(commands::check::Args),
    /// Write deterministic synthetic arrival batches and a truth file
    Generate(commands::generate::Args),
}

/// The command line: [`Cli`], with the global flags that do nothing for a
/// command left out of its `--help` (still accepted there, as anywhere):
/// `--lake` and `--lock-wait` for `generate`, which reads no lake, and
/// `--lock-wait` for the commands that only read, which take no lock.
pub fn command() -> clap::Command {
    command_without_env(&[])
}

/// [`command`], with the arguments `ids` not read from their environment
/// variables (see [`parse_from_env`]).
fn command_without_env(ids: &[&str]) -> clap::Command {
    use clap::CommandFactory;
    let mut cli = Cli::command();
    for id in ids {
        cli = cli.mut_arg(*id, |a| a.env(None));
    }
    // A subcommand that has an argument of a global's id is not given
    // the global (clap), so a hidden copy of it stands in.
    let hidden = |id: &str| {
        cli.get_arguments()
            .find(|a| a.get_id() == id)
            .expect("a global flag")
            .clone()
            .hide(true)
    };
    let (lake, lock_wait) = (hidden("lake"), hidden("lock_wait"));
    let mut cli = cli.mut_subcommand("generate", |c| c.arg(lake));
    for reader in [
        "generate", "init", "state", "history", "status", "lateness", "query", "tables",
    ] {
        cli = cli.mut_subcommand(reader, |c| c.arg(lock_wait.clone()));
    }
    cli
}

/// Parse the process's command line (see [`command`]); exits on an error
/// or for `--help` / `--version`, as clap does.
pub fn parse() -> Cli {
    parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// Parse `args` (the program's name first), as [`parse`] does.
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    parse_from_env(args, |var| std::env::var_os(var))
}

/// The environment variables that stand in for a global flag: the
/// flag's id and the variable.
const FLAG_VARS: [(&str, &str); 2] = [("lake", "EVLAKE_LAKE"), ("lock_wait", "EVLAKE_LOCK_WAIT")];

/// What is wrong with `value`, the variable standing in for flag `id`, if
/// anything: clap would report it as the flag's (`invalid value '' for
/// '--lake <DIR>'`), which the command line does not hold.
fn env_problem(id: &str, value: &std::ffi::OsStr) -> Option<String> {
    let wanted = if id == "lake" {
        "the lake directory"
    } else {
        "a duration such as 10m"
    };
    if value.is_empty() {
        return Some(format!("is set but empty: unset it, or set it to {wanted}"));
    }
    if id == "lock_wait" {
        return match value.to_str() {
            None => Some(format!("is not UTF-8: set it to {wanted}")),
            Some(v) => crate::time::parse_duration_micros(v).err(),
        };
    }
    None
}

/// Clap's error for an argument that begins with `-` and is no flag, with
/// what to do when it is a value with white space in it (no flag has any):
/// most often SQL that begins with a comment, `-- why ...`, which clap
/// reads as a flag, with no tip.
fn dash_value(e: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) if e.kind() == ErrorKind::UnknownArgument => arg,
        _ => return e,
    };
    if !arg.starts_with('-') || !arg.contains(char::is_whitespace) {
        return e;
    }
    let first = arg.lines().next().unwrap_or_default();
    clap::Error::raw(
        ErrorKind::UnknownArgument,
        format!(
            "`{first}` begins with `-`, so it reads as a flag; to give it as a value (SQL that \
             begins with a comment), put `--` before it: `evlake query -- '{first} ...'`, or \
             read the SQL from a file with -f FILE\n"
        ),
    )
}

/// Clap's error for `--json` given to a command whose output format is
/// `--format` (query, tables, history, lateness: the writing commands and
/// `status` take `--json`), with the flag that does it.
fn json_flag(e: clap::Error, args: &[std::ffi::OsString]) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument
        || !matches!(e.get(ContextKind::InvalidArg), Some(ContextValue::String(a)) if a == "--json")
    {
        return e;
    }
    let cli = command();
    let formatted = args.iter().skip(1).find_map(|a| {
        let c = cli.find_subcommand(a.to_str()?)?;
        c.get_arguments()
            .any(|f| f.get_long() == Some("format"))
            .then(|| c.get_name().to_string())
    });
    match formatted {
        Some(name) => clap::Error::raw(
            ErrorKind::UnknownArgument,
            format!(
                "unexpected argument '--json' found: `evlake {name}` writes JSON with `--format \
                 json` (JSON Lines, one object per row)\n"
            ),
        ),
        None => e,
    }
}

/// [`parse_from`], reading the variables that stand in for flags with
/// `env`. A variable that is set but empty or not a value of its flag is
/// an error naming the variable, unless the flag is on the command line,
/// which is taken before it.
pub fn parse_from_env<I, T>(
    args: I,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::FromArgMatches;
    use clap::parser::ValueSource;
    let bad: Vec<(&str, &str, String)> = FLAG_VARS
        .iter()
        .filter_map(|&(id, var)| Some((id, var, env_problem(id, &env(var)?)?)))
        .collect();
    let ids: Vec<&str> = bad.iter().map(|(id, _, _)| *id).collect();
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let matches = command_without_env(&ids)
        .try_get_matches_from(&args)
        .map_err(|e| json_flag(dash_value(e), &args))?;
    for (id, var, problem) in &bad {
        let given = |m: &clap::ArgMatches| m.value_source(id) == Some(ValueSource::CommandLine);
        let on_line = given(&matches) || matches.subcommand().is_some_and(|(_, m)| given(m));
        if !on_line {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("environment variable {var} {problem}\n"),
            ));
        }
    }
    Cli::from_arg_matches(&matches)
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    crate::report::set_quiet(cli.quiet);
    if let Some(us) = cli.lock_wait {
        crate::lake::set_lock_wait(std::time::Duration::from_micros(us.max(0) as u64));
    }
    if !matches!(cli.command, Command::Generate(_)) {
        // A file given as the lake (`--lake events.jsonl`, the input in
        // the wrong place) would otherwise fail on reading a path under it.
        // (Named as it was given: the variable's value, or the flag.)
        let from_env = std::env::var_os("EVLAKE_LAKE").is_some_and(|v| v == cli.lake);
        let given = if from_env { "$EVLAKE_LAKE" } else { "--lake" };
        // An object store's URL (`s3://bucket/lake`) would otherwise be a
        // relative path: a lake under `./s3:/bucket/lake`, reported as
        // committed "to s3://bucket/lake".
        if let Some(scheme) = crate::lake::url_scheme(&cli.lake) {
            let url = cli.lake.display();
            let sync = match scheme.to_ascii_lowercase().as_str() {
                "s3" => format!(", e.g. `aws s3 sync LAKE {url}`"),
                "gs" => format!(", e.g. `gcloud storage rsync -r LAKE {url}`"),
                _ => String::new(),
            };
            return Err(crate::error::Failure::Usage(format!(
                "{given} `{url}` is a URL ({scheme}://), and a lake is a local directory: evlake \
                 reads and writes no object store. Give a local path, and copy the lake there \
                 after the run{sync}; for a local directory of that name, write `./{url}`"
            ))
            .into());
        }
        if cli.lake.exists() && !cli.lake.is_dir() {
            return Err(crate::error::Failure::Usage(format!(
                "{given} `{}` is a file, not a lake directory (inputs go after the command: \
                 `evlake --lake DIR ingest FILE`)",
                cli.lake.display()
            ))
            .into());
        }
        // DataFusion's file store takes only UTF-8 paths: a lake under
        // another name took its ingest, then failed at silver with ``
        // is not a valid path`.
        let full = std::fs::canonicalize(&cli.lake).or_else(|_| std::path::absolute(&cli.lake));
        if let Ok(full) = full
            && full.to_str().is_none()
        {
            return Err(crate::error::Failure::Usage(format!(
                "the lake's path `{}` is not UTF-8 text, and DataFusion, which reads the lake's \
                 tables, takes only UTF-8 paths: give a lake directory whose path is",
                full.display()
            ))
            .into());
        }
        // The lake's own typed tables (`LAKE/typed/*.sql`), for every
        // command that reads or builds silver.
        let lake = crate::lake::Lake::new(&cli.lake);
        crate::silver::load_typed(&lake)?;
        // And its own daily tables (`LAKE/daily/*.sql`), for every command
        // that reads or builds gold.
        crate::daily::load(&lake)?;
    }
    match cli.command {
        Command::Init(args) => commands::init::run(&cli.lake, args),
        Command::Ingest(args) => commands::ingest::run(&cli.lake, args),
        Command::Reconcile(args) => commands::reconcile::run(&cli.lake, args),
        Command::Compact(args) => commands::compact::run(&cli.lake, args),
        Command::Retract(args) => commands::retract::run(&cli.lake, args),
        Command::Erase(args) => commands::erase::run(&cli.lake, args),
        Command::Silver(args) => commands::silver::run(&cli.lake, args),
        Command::Gold(args) => commands::gold::run(&cli.lake, args),
        Command::Run(args) => commands::run::run(&cli.lake, args),
        Command::State(args) => commands::state::run(&cli.lake, args),
        Command::Snapshot(args) => commands::snapshot::run(&cli.lake, args),
        Command::History(args) => commands::history::run(&cli.lake, args),
        Command::Status(args) => commands::status::run(&cli.lake, args),
        Command::Lateness(args) => commands::lateness::run(&cli.lake, args),
        Command::Query(args) => commands::query::run(&cli.lake, args),
        Command::Tables(args) => commands::tables::run(&cli.lake, args),
        Command::Check(args) => commands::check::run(&cli.lake, args),
        Command::Generate(args) => commands::generate::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn help(sub: &str) -> String {
        let mut cli = command();
        cli.build();
        cli.find_subcommand_mut(sub)
            .expect("a subcommand")
            .render_long_help()
            .to_string()
    }

    #[test]
    fn help_shows_a_global_flag_only_where_it_does_something() {
        for (sub, lake, lock_wait) in [
            ("generate", false, false),
            ("query", true, false),
            ("state", true, false),
            ("status", true, false),
            ("run", true, true),
            ("ingest", true, true),
            ("snapshot", true, true),
            ("check", true, true),
        ] {
            let h = help(sub);
            assert_eq!(h.contains("--lake <DIR>"), lake, "{sub}: {h}");
            assert_eq!(h.contains("--lock-wait <DUR>"), lock_wait, "{sub}: {h}");
        }
    }

    #[test]
    fn a_hidden_global_flag_is_still_taken_before_or_after_the_command() {
        let cli = parse_from([
            "evlake",
            "generate",
            "--out",
            "g",
            "--lake",
            "x",
            "--lock-wait",
            "5s",
        ])
        .unwrap();
        assert_eq!(
            (cli.lake, cli.lock_wait),
            (PathBuf::from("x"), Some(5_000_000))
        );
        // SQL that begins with a comment reads as a flag; the error says
        // how to give it.
        let e = parse_from(["evlake", "query", "-- why\nSELECT 1"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
        assert_eq!(
            e.to_string(),
            "error: `-- why` begins with `-`, so it reads as a flag; to give it as a value (SQL \
             that begins with a comment), put `--` before it: `evlake query -- '-- why ...'`, or \
             read the SQL from a file with -f FILE\n"
        );
        let cli = parse_from(["evlake", "query", "--", "-- why\nSELECT 1"]).unwrap();
        assert!(matches!(cli.command, Command::Query(_)));
        // A mistyped flag is clap's error, as before.
        let e = parse_from(["evlake", "query", "--formt", "csv", "SELECT 1"]).unwrap_err();
        assert!(
            e.to_string().contains("unexpected argument '--formt'"),
            "{e}"
        );
        // `--json` where the output is `--format json` says so; where no
        // command takes it, it is clap's error.
        for (args, name) in [
            (&["evlake", "query", "SELECT 1", "--json"][..], "query"),
            (&["evlake", "--lake", "x", "tables", "--json"][..], "tables"),
            (&["evlake", "history", "--json", "acct-1"][..], "history"),
            (
                &["evlake", "lateness", "--by", "batch", "--json"][..],
                "lateness",
            ),
        ] {
            let e = parse_from(args).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
            assert_eq!(
                e.to_string(),
                format!(
                    "error: unexpected argument '--json' found: `evlake {name}` writes JSON with \
                     `--format json` (JSON Lines, one object per row)\n"
                )
            );
        }
        let e = parse_from(["evlake", "generate", "--out", "g", "--json"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("unexpected argument '--json' found\n"),
            "{e}"
        );
        assert!(parse_from(["evlake", "status", "--json"]).is_ok());
        let cli = parse_from(["evlake", "--lock-wait", "1m", "query", "select 1"]).unwrap();
        assert_eq!(cli.lock_wait, Some(60_000_000));
        let cli = parse_from(["evlake", "query", "--lake", "y", "select 1"]).unwrap();
        assert_eq!(cli.lake, PathBuf::from("y"));
        assert!(parse_from(["evlake", "query", "--lock-wait", "soon", "select 1"]).is_err());
    }

    #[test]
    fn a_variable_standing_in_for_a_flag_is_named_when_it_is_unusable() {
        let with = |vars: &'static [(&'static str, &'static str)], args: &[&str]| {
            let mut line = vec!["evlake"];
            line.extend_from_slice(args);
            parse_from_env(line, |var| {
                vars.iter()
                    .find(|(k, _)| *k == var)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            })
        };
        let says = |r: Result<Cli, clap::Error>| match r {
            Err(e) => {
                assert_eq!(e.exit_code(), 2);
                e.to_string()
            }
            Ok(cli) => panic!("accepted: {cli:?}"),
        };
        let m = says(with(&[("EVLAKE_LAKE", "")], &["status"]));
        assert!(
            m.contains("environment variable EVLAKE_LAKE is set but empty"),
            "{m}"
        );
        let m = says(with(&[("EVLAKE_LOCK_WAIT", "soon")], &["run"]));
        assert!(
            m.contains("environment variable EVLAKE_LOCK_WAIT `soon` is not a duration"),
            "{m}"
        );
        let m = says(with(
            &[("EVLAKE_LOCK_WAIT", "")],
            &["generate", "--out", "g"],
        ));
        assert!(m.contains("EVLAKE_LOCK_WAIT is set but empty"), "{m}");
        // The flag on the command line is taken before the variable, so
        // the variable's value does not matter.
        let cli = with(
            &[("EVLAKE_LAKE", ""), ("EVLAKE_LOCK_WAIT", "x")],
            &["status", "--lake", "l", "--lock-wait", "1s"],
        )
        .unwrap();
        assert_eq!(
            (cli.lake, cli.lock_wait),
            (PathBuf::from("l"), Some(1_000_000))
        );
        let cli = with(&[("EVLAKE_LAKE", "")], &["--lake", "m", "status"]).unwrap();
        assert_eq!(cli.lake, PathBuf::from("m"));
        let cli = with(
            &[("EVLAKE_LAKE", "")],
            &["generate", "--out", "g", "--lake", "n"],
        )
        .unwrap();
        assert_eq!(cli.lake, PathBuf::from("n"));
    }
}
