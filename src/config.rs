//! `LAKE/evlake.toml`: optional per-lake defaults, so cron lines stay short.
//! Command-line flags override it; built-in defaults fill the rest.

use std::path::Path;

use anyhow::Result;
use serde::Deserialize;

use crate::error::Failure;
use crate::lake::Lake;

/// The file name at the lake root.
pub const FILE: &str = "evlake.toml";

/// What `evlake init` writes: every setting, commented out at its default.
pub const DEFAULT_TOML: &str = r#"# evlake settings for this lake. Command-line flags override these values;
# a commented-out line shows the built-in default.

[ingest]
# What to do with an event whose partition the watermark already closed:
#   "reopen"      write it into its historical partition (marks it dirty)
#   "side-output" park it in bronze/late until `evlake reconcile`
#   "grace"       side output only if later than allowed_lateness past its day
# late_policy = "reopen"

# The watermark trails the largest committed event time by this much.
# A partition (UTC day) closes once the watermark passes its end.
# watermark_delay = "1h"

# For late_policy = "grace": how long after the end of its day (by the
# watermark) an event may still reopen its partition.
# allowed_lateness = "24h"

# Events more than this after the processing time are quarantined
# (future_timestamp): a bad device clock must not close every partition.
# max_future = "1d"

# Events before this instant are quarantined (timestamp_too_old): epoch
# seconds sent where milliseconds are expected land in January 1970.
# RFC 3339, a date (its midnight, UTC) or "none".
# min_event_time = "2000-01-01"

# Fail (exit 4, nothing committed) when more than this share of non-empty
# lines is quarantined.
# max_bad_fraction = 0.05

# Timestamps without a UTC offset: "reject" (quarantine) or "utc".
# naive_timestamps = "reject"

# Fail (exit 4, nothing committed) on a line longer than this: a guard
# against a JSON array or a binary file given as NDJSON, which would
# otherwise be read into memory whole. "none" for no limit.
# max_line_bytes = "64M"

# Which files a directory given as an input is walked for: unset, those
# named *.jsonl, *.ndjson or *.json (optionally .gz or .zst) and rotated
# logs' copies of them; else those whose name matches one of these globs,
# e.g. ["*"] for Kinesis Firehose's objects, which have no extension.
# include = []

# After each `evlake run`, compact every bronze date with at least this
# many small files (an hourly run's) into one file (`evlake compact`);
# unset, `run` never compacts. E.g. 24 for a day of hourly runs.
# compact_min_files = 24

[silver]
# A new session starts when the gap to the user's previous event is
# strictly greater than this (at most 1d). Changing it rebuilds silver.
# session_gap = "30m"

# Event types left out of sessionization: kept in `events` with a NULL
# session_id, not counted in sessions. Changing it rebuilds silver.
# session_exclude_types = []

# Typed tables of your own are SQL files, not settings: typed/NAME.sql in
# this directory adds silver table NAME (or replaces the built-in one of
# that name); see the README, "Your own typed tables". Likewise state
# models: models/NAME.sql.

[gold]
# The reporting currency: daily_metrics.revenue sums purchases in it only;
# daily_revenue_by_currency has every currency. Changing it rebuilds gold.
# currency = "USD"

# Daily tables of your own are SQL files too: daily/NAME.sql in this
# directory adds gold table NAME, computed one date at a time from that
# date's silver tables; see the README, "Your own daily tables".

[state]
# Models whose state `evlake run` snapshots at the end of every day the
# watermark closes (and it rebuilds invalid ones), e.g. ["balances"].
# snapshot_models = []
# snapshot_keep: how many snapshots of each model `evlake run` keeps, the
# newest; it removes the older ones (rather than rebuild them when late
# data invalidates them). Unset (the default): every snapshot is kept.
# E.g. to keep a week of daily ones: snapshot_keep = 7

[log]
# Commits (_evlake/log/*.json) whose processing time is more than this
# before the newest commit's are deleted once a checkpoint covers them (the
# older of the two kept), e.g. "30d": an hourly lake writes ~26,000 a year.
# The lake's data and state stay whole; what goes is the record of those
# runs (`lateness --by batch` and the settings they ran with). Unset (the
# default): every commit is kept. "none" likewise.
# retention = "30d"

[engine]
# Memory DataFusion may use before sorts, joins and aggregates spill to
# disk (e.g. "512M", "4G", "none").
# memory_limit = "2G"
"#;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub silver: SilverConfig,
    #[serde(default)]
    pub gold: GoldConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default)]
    pub log: LogConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub retention: Option<String>,
}

impl LogConfig {
    /// `retention` in microseconds; `None` when unset or "none" (keep
    /// every commit). A bad value is a usage error naming the key.
    pub fn retention_micros(&self) -> Result<Option<i64>> {
        match self.retention.as_deref().map(str::trim) {
            None | Some("none") => Ok(None),
            Some(text) => crate::time::parse_duration_micros(text)
                .map(Some)
                .map_err(|e| Failure::Usage(format!("{FILE}: log.retention: {e}")).into()),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    pub snapshot_models: Option<Vec<String>>,
    pub snapshot_keep: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldConfig {
    pub currency: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilverConfig {
    pub session_gap: Option<String>,
    pub session_exclude_types: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    pub memory_limit: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    pub late_policy: Option<String>,
    pub watermark_delay: Option<String>,
    pub allowed_lateness: Option<String>,
    pub max_future: Option<String>,
    pub min_event_time: Option<String>,
    pub max_bad_fraction: Option<f64>,
    pub naive_timestamps: Option<String>,
    pub max_line_bytes: Option<String>,
    pub include: Option<Vec<String>>,
    pub compact_min_files: Option<i64>,
}

impl Config {
    /// Read `LAKE/evlake.toml`; a missing file is the empty config. A bad
    /// file is a usage error (exit 2) naming the file and the problem.
    pub fn load(lake: &Lake) -> Result<Config> {
        let path = lake.path(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => parse(&path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            // Not UTF-8 (TOML is): a bad file, like one that does not parse.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                Err(Failure::Usage(format!("`{}`: not a TOML file: {e}", path.display())).into())
            }
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("failed to read `{}`", path.display())))
            }
        }
    }
}

fn parse(path: &Path, text: &str) -> Result<Config> {
    let cfg: Config = toml::from_str(text).map_err(|err| {
        let e = err.to_string();
        let misplaced = e
            .split_once("unknown field `")
            .and_then(|(_, rest)| rest.split_once('`'))
            .and_then(|(key, _)| section_of(key))
            .map(|(key, section)| {
                format!("\n`{key}` is a setting of [{section}]: put it under a `[{section}]` line")
            });
        let example = || {
            let start = err.span()?.start;
            let line = text[..start].rsplit('\n').next()?;
            let key = line.split_once('=')?.0.trim();
            let value = example_value(key)?;
            Some(format!(
                "\n`{key}` takes a value like `{value}` (`evlake init` writes an evlake.toml \
                 that shows each setting at its default)"
            ))
        };
        let hint = misplaced
            .or_else(|| e.contains("invalid type").then(example).flatten())
            .unwrap_or_default();
        Failure::Usage(format!("`{}`: {}{hint}", path.display(), e.trim_end()))
    })?;
    // Checked by every command, not first met by the writer whose commit
    // brings a checkpoint.
    cfg.log.retention_micros()?;
    Ok(cfg)
}

/// The value [`DEFAULT_TOML`] shows setting `key` with (`"24h"`, `0.05`,
/// `[]`), if it shows one.
fn example_value(key: &str) -> Option<&'static str> {
    let setting = format!("{key} = ");
    DEFAULT_TOML
        .lines()
        .filter(|l| l.starts_with('#'))
        .find_map(|l| {
            let (before, value) = l.split_once(&setting)?;
            let whole = before.ends_with([' ', '#']);
            whole.then_some(value.trim())
        })
}

/// The sections of `evlake.toml`.
const SECTIONS: [&str; 6] = ["ingest", "silver", "gold", "state", "engine", "log"];

/// The section whose setting `key` is (found by the settings' own types,
/// so it cannot go out of date), for a key written outside it.
fn section_of(key: &str) -> Option<(&str, &'static str)> {
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    // Any value: a setting of the section fails on its type, if at all,
    // not as an unknown field.
    SECTIONS.into_iter().map(|s| (key, s)).find(|(key, s)| {
        toml::from_str::<Config>(&format!("[{s}]\n{key} = 0\n"))
            .err()
            .is_none_or(|e| !e.to_string().contains("unknown field"))
    })
}

/// Resolve one setting: the flag if given, else the config value (parsed
/// with `parse`, errors naming the file and key), else `default`.
pub fn resolve<T>(
    flag: Option<T>,
    config_value: Option<&str>,
    key: &str,
    parse: impl Fn(&str) -> Result<T, String>,
    default: T,
) -> Result<T> {
    if let Some(v) = flag {
        return Ok(v);
    }
    match config_value {
        Some(text) => parse(text).map_err(|e| Failure::Usage(format!("{FILE}: {key}: {e}")).into()),
        None => Ok(default),
    }
}

/// Write the commented default `evlake.toml` unless one exists. Returns
/// whether it wrote the file.
pub fn init(lake: &Lake) -> Result<bool> {
    let path = lake.path(FILE);
    if path.exists() {
        return Ok(false);
    }
    crate::lake::write_atomic(&path, DEFAULT_TOML.as_bytes())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_parses_to_all_defaults() {
        let c = parse(Path::new("evlake.toml"), DEFAULT_TOML).unwrap();
        assert!(c.ingest.late_policy.is_none());
        let uncommented: String = DEFAULT_TOML
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|r| {
                        r.split_once(" = ").is_some_and(|(k, _)| {
                            k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        })
                    })
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = parse(Path::new("evlake.toml"), &uncommented).unwrap();
        assert_eq!(c.ingest.late_policy.as_deref(), Some("reopen"));
        assert_eq!(c.ingest.watermark_delay.as_deref(), Some("1h"));
        assert_eq!(c.ingest.max_bad_fraction, Some(0.05));
        assert_eq!(c.silver.session_gap.as_deref(), Some("30m"));
        assert_eq!(c.silver.session_exclude_types, Some(vec![]));
        assert_eq!(c.engine.memory_limit.as_deref(), Some("2G"));
        assert_eq!(c.gold.currency.as_deref(), Some("USD"));
        assert_eq!(c.state.snapshot_models, Some(vec![]));
        assert_eq!(c.state.snapshot_keep, None);
        assert_eq!(c.log.retention_micros().unwrap(), Some(30 * 86_400_000_000));
        let c = parse(Path::new("evlake.toml"), DEFAULT_TOML).unwrap();
        assert_eq!(c.log.retention_micros().unwrap(), None);
    }

    #[test]
    fn log_retention_is_a_duration_or_none() {
        let at = |v: &str| {
            parse(
                Path::new("evlake.toml"),
                &format!("[log]\nretention = \"{v}\"\n"),
            )
        };
        assert_eq!(at("none").unwrap().log.retention_micros().unwrap(), None);
        assert_eq!(
            at("2d").unwrap().log.retention_micros().unwrap(),
            Some(2 * 86_400_000_000)
        );
        let e = at("a month").unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        assert!(e.to_string().contains("evlake.toml: log.retention"), "{e}");
    }

    /// A value of the wrong type says what the setting takes, as the
    /// file `evlake init` writes shows it; every setting shows one.
    #[test]
    fn a_value_of_the_wrong_type_says_what_it_takes() {
        for (text, takes) in [
            (
                "[ingest]\nallowed_lateness = 3600\n",
                "`allowed_lateness` takes a value like `\"24h\"`",
            ),
            (
                "[ingest]\nnaive_timestamps = true\n",
                "`naive_timestamps` takes a value like `\"reject\"`",
            ),
            (
                "[ingest]\n max_bad_fraction= \"5%\"\n",
                "`max_bad_fraction` takes a value like `0.05`",
            ),
            (
                "[state]\nsnapshot_keep = \"7\"\n",
                "`snapshot_keep` takes a value like `7`",
            ),
            (
                "[silver]\nsession_exclude_types = \"page_view\"\n",
                "`session_exclude_types` takes a value like `[]`",
            ),
        ] {
            let e = parse(Path::new("x/evlake.toml"), text).unwrap_err();
            assert_eq!(crate::error::exit_code(&e), 2);
            assert!(
                e.to_string().ends_with(&format!(
                    "\n{takes} (`evlake init` writes an evlake.toml that shows each setting at \
                     its default)"
                )),
                "{e}"
            );
        }
        let keys = [
            "late_policy",
            "watermark_delay",
            "allowed_lateness",
            "max_future",
            "min_event_time",
            "max_bad_fraction",
            "naive_timestamps",
            "max_line_bytes",
            "include",
            "compact_min_files",
            "session_gap",
            "session_exclude_types",
            "currency",
            "snapshot_models",
            "snapshot_keep",
            "retention",
            "memory_limit",
        ];
        for key in keys {
            assert!(example_value(key).is_some(), "{key}");
            assert!(section_of(key).is_some(), "{key}");
        }
        assert_eq!(example_value("gap"), None);
    }

    #[test]
    fn unknown_keys_are_usage_errors() {
        let e = parse(
            Path::new("x/evlake.toml"),
            "[ingest]\nlate_polcy = \"grace\"\n",
        )
        .unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        assert!(e.to_string().contains("late_polcy"), "{e}");
        // A setting outside its section says where it goes, wherever it
        // was written.
        for text in ["currency = \"EUR\"\n", "[ingest]\ncurrency = 5\n"] {
            let e = parse(Path::new("x/evlake.toml"), text).unwrap_err();
            assert_eq!(crate::error::exit_code(&e), 2);
            assert!(
                e.to_string()
                    .ends_with("\n`currency` is a setting of [gold]: put it under a `[gold]` line"),
                "{e}"
            );
        }
        for (key, section) in [
            ("late_policy", "ingest"),
            ("max_bad_fraction", "ingest"),
            ("session_gap", "silver"),
            ("snapshot_models", "state"),
            ("memory_limit", "engine"),
            ("retention", "log"),
        ] {
            assert_eq!(section_of(key), Some((key, section)));
        }
        // SECTIONS are Config's.
        let e = toml::from_str::<Config>("[nope]\n")
            .unwrap_err()
            .to_string();
        let listed = SECTIONS.map(|s| format!("`{s}`")).join(", ");
        assert!(e.contains(&format!("expected one of {listed}\n")), "{e}");
        assert_eq!(section_of("late_polcy"), None);
        assert_eq!(section_of("x = 1\n[ingest]\nlate_policy"), None);
        // A file that is not UTF-8 is a bad file too, not an I/O error.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"\xff\xfe[ingest]\n").unwrap();
        let e = Config::load(&Lake::new(dir.path())).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2, "{e}");
        assert!(
            e.to_string().contains("evlake.toml`: not a TOML file"),
            "{e}"
        );
    }

    #[test]
    fn flags_override_config_which_overrides_defaults() {
        let p = |s: &str| crate::time::parse_duration_micros(s);
        assert_eq!(resolve(Some(5), Some("1h"), "k", p, 7).unwrap(), 5);
        assert_eq!(resolve(None, Some("1s"), "k", p, 7).unwrap(), 1_000_000);
        assert_eq!(resolve(None, None, "k", p, 7).unwrap(), 7);
        let e = resolve(None, Some("soon"), "ingest.watermark_delay", p, 7).unwrap_err();
        assert!(
            e.to_string()
                .contains("evlake.toml: ingest.watermark_delay"),
            "{e}"
        );
    }
}
