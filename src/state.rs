//! Event sourcing: state as of any time, from combinable SQL aggregates and
//! snapshots that late data invalidates (DESIGN.md §6).
//!
//! A model (`sql/state/*.sql`, or `LAKE/models/*.sql`) is named queries:
//! `delta` aggregates the events of a window, `combine` merges partial
//! aggregates (`partials`), `present` prints `state`, `history` is one
//! key's audit trail and `problems` lists what is worth reporting. The
//! state at T is `combine(snapshot at S ∪ delta of the events in (S, T])`,
//! or `combine(delta of every event <= T)` without a snapshot.
//!
//! A snapshot (`LAKE/state/MODEL/as_of=…/`) stores the raw combined
//! aggregate at its as-of time. It is valid only while no later commit
//! added a bronze event with `event_timestamp <= as_of` (every bronze file
//! records its smallest event time) and the model's `delta`, `combine`
//! and `problems` queries and silver's SQL and settings are the ones it
//! was built with. An invalid snapshot is never used.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{DataFrame, JoinType, SessionContext, cast, col};
use serde::Serialize;

use crate::derive::{self, Output};
use crate::engine::{self, Engine, EngineOptions};
use crate::error::Failure;
use crate::lake::Lake;
use crate::log::{self, Commit, LakeState};
use crate::time::{MICROS_PER_DAY, date32_of_micros, format_micros};
use crate::{dirty, silver};

/// The models that ship with evlake: (name, SQL).
pub const BUILTIN: &[(&str, &str)] = &[
    ("balances", include_str!("../sql/state/balances.sql")),
    ("carts", include_str!("../sql/state/carts.sql")),
    ("profiles", include_str!("../sql/state/profiles.sql")),
];

/// Where a lake's own models live: `LAKE/models/NAME.sql`.
pub const MODELS_DIR: &str = "models";
/// Where snapshots live: `LAKE/state/MODEL/as_of=…/`.
pub const STATE_DIR: &str = "state";

/// One state model.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    /// `built-in` or the file it was read from.
    pub source: String,
    pub delta: String,
    pub combine: String,
    pub present: String,
    pub history: Option<String>,
    pub problems: Option<String>,
    /// Where each query's text starts in the file: (line, column), from 1.
    starts: BTreeMap<String, (usize, usize)>,
}

impl Model {
    /// Split a model file into its `-- name: X` queries.
    pub fn parse(name: &str, source: &str, text: &str) -> Result<Model> {
        let mut parts: BTreeMap<String, String> = BTreeMap::new();
        let mut starts = BTreeMap::new();
        let mut current: Option<String> = None;
        let mut named_at: BTreeMap<String, usize> = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            if let Some(n) = name_line(line) {
                let n = n.to_string();
                // A second `-- name: delta` replaced the first without a
                // word (a pasted draft left in the file, say).
                if let Some(first) = named_at.insert(n.clone(), i + 1) {
                    return Err(Failure::Usage(format!(
                        "model `{name}` ({source}): `-- name: {n}` on line {} and again on \
                         line {}: a model has one query of each name",
                        first,
                        i + 1
                    ))
                    .into());
                }
                current = Some(n.clone());
                parts.insert(n, String::new());
            } else if let Some(c) = &current {
                let body = parts.get_mut(c).expect("inserted");
                if body.trim().is_empty() && !line.trim().is_empty() {
                    let indent = line.len() - line.trim_start().len();
                    starts.insert(c.clone(), (i + 1, indent + 1));
                }
                body.push_str(line);
                body.push('\n');
            }
        }
        // A name no query has, over SQL: a typo (`-- name: problem`) whose
        // query would never run. (Over comments alone, a title line.)
        for (n, body) in &parts {
            let sql = body
                .lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"));
            if !PARTS.contains(&n.as_str()) && sql {
                return Err(Failure::Usage(format!(
                    "model `{name}` ({source}): `-- name: {n}` on line {} names no query a \
                     model has ({})",
                    named_at[n],
                    PARTS.join(", ")
                ))
                .into());
            }
        }
        let mut take = |part: &str| {
            parts
                .remove(part)
                .map(|q| q.trim().trim_end_matches(';').trim().to_string())
        };
        let need = |q: Option<String>, part: &str| -> Result<String> {
            q.filter(|q| !q.is_empty()).ok_or_else(|| {
                Failure::Usage(format!(
                    "model `{name}` ({source}) has no `-- name: {part}` query (each of a \
                     model's queries follows a line `-- name: NAME`: delta, combine and \
                     present, and optionally history and problems; sql/state/balances.sql \
                     shows one)"
                ))
                .into()
            })
        };
        let model = Model {
            name: name.to_string(),
            source: source.to_string(),
            delta: need(take("delta"), "delta")?,
            combine: need(take("combine"), "combine")?,
            present: need(take("present"), "present")?,
            history: take("history").filter(|q| !q.is_empty()),
            problems: take("problems").filter(|q| !q.is_empty()),
            starts,
        };
        // A session's row changes with events after its start (they extend
        // it), so it has no event time a window or a snapshot could cut it
        // at: an answer "as of T" would hold what came after T.
        let queries = [
            Some(&model.delta),
            Some(&model.present),
            model.history.as_ref(),
            model.problems.as_ref(),
        ];
        if let Some(t) = [
            silver::SESSIONS_TABLE.to_string(),
            format!("{}_all", silver::SESSIONS_TABLE),
        ]
        .into_iter()
        .find(|t| {
            queries
                .iter()
                .flatten()
                .any(|q| parsed_tables(q).is_some_and(|read| read.contains(t)))
        }) {
            return Err(Failure::Usage(format!(
                "model `{name}` ({source}) reads `{t}`, which a state model cannot: a session \
                 changes with events after it started, so it has no event time to replay it \
                 by; read `events` (every event carries its session_id)"
            ))
            .into());
        }
        Ok(model)
    }

    /// The file a lake's own model was read from (`None` for a built-in).
    fn file(&self) -> Option<&str> {
        (self.source != "built-in").then_some(self.source.as_str())
    }

    /// The model, and its file: what an error while its queries run (a
    /// division by zero, a failed cast) is about.
    fn label(&self) -> String {
        match self.file() {
            Some(file) => format!("model `{}` ({file})", self.name),
            None => format!("model `{}`", self.name),
        }
    }

    /// `err`, raised while the model's queries were `doing` it: for a
    /// model of the lake's own, one its SQL raised on the rows is a usage
    /// error (exit 2, [`engine::user_sql_error`]); a built-in model's SQL
    /// is evlake's, so there it stays a failure.
    fn run_error(&self, doing: &str, err: impl Into<anyhow::Error>) -> anyhow::Error {
        running_error(self.file().is_some(), self.label() + ": " + doing, err)
    }

    /// What an error in query `part` is about: the model, the query, and
    /// `FILE:LINE` where the query starts.
    fn what(&self, part: &str) -> String {
        match (self.file(), self.starts.get(part)) {
            (Some(file), Some((line, _))) => {
                format!("model `{}`: {part} ({file}:{line})", self.name)
            }
            _ => format!("model `{}`: {part}", self.name),
        }
    }

    /// The text of query `part` (`delta`, `combine`, ...), as planned.
    fn query_text(&self, part: &str) -> Option<&str> {
        match part {
            "delta" => Some(&self.delta),
            "combine" => Some(&self.combine),
            "present" => Some(&self.present),
            "history" => self.history.as_deref(),
            "problems" => self.problems.as_deref(),
            _ => None,
        }
    }

    /// An error of DataFusion's about query `part`: a usage error (exit 2)
    /// if the query is at fault. A position in the query (sqlparser
    /// counts from the query's first character: `Line: 1, Column: 25`) is
    /// also given in the file, where the user edits it (`FILE:LINE:COLUMN`,
    /// as compilers write it, for editors to jump to).
    fn sql_error(&self, part: &str, e: datafusion::error::DataFusionError) -> anyhow::Error {
        let what = self.what(part);
        let message = e.to_string();
        let at = position(&message).or_else(|| end_if_eof(&message, self.query_text(part)?));
        let in_file = match (self.file(), self.starts.get(part), at) {
            (Some(file), Some(&(first, indent)), Some((line, column))) => {
                let column = if line == 1 {
                    column + indent - 1
                } else {
                    column
                };
                format!(", at {file}:{}:{column}", first + line - 1)
            }
            _ => String::new(),
        };
        if engine::is_usage_error(&e) {
            Failure::Usage(format!("{what}: {}{in_file}", engine::planning_error(&e))).into()
        } else {
            anyhow::Error::new(e).context(what)
        }
    }

    /// The fingerprint a snapshot is built with: the model's queries that
    /// decide what a snapshot holds (`delta` and `combine` its rows,
    /// `problems` the problem events it keeps) and silver's SQL; a change
    /// to any makes old snapshots invalid. `present`, `history` and
    /// comments are read afresh by every answer, so editing them keeps
    /// the snapshots.
    pub fn fingerprint(&self, silver_fingerprint: &str) -> String {
        dirty::fingerprint(&[
            "delta",
            &self.delta,
            "combine",
            &self.combine,
            "problems",
            self.problems.as_deref().unwrap_or(""),
            silver_fingerprint,
        ])
    }

    /// The log's table name for this model's snapshots.
    pub fn table(&self) -> String {
        snapshot_table(&self.name)
    }

    /// The log's table name for the rows of `input` (a silver table) that
    /// a snapshot's problems are about.
    fn problems_table(&self, input: &str) -> String {
        format!("{}.problems.{input}", self.table())
    }

    /// Where [`Model::problems_table`] lives: under `state/.problems/`, a
    /// name no model can have.
    fn problems_dir(&self, input: &str) -> String {
        format!("{STATE_DIR}/.problems/{}/{input}", self.name)
    }

    /// The log's table name for the event ids of `input` (a silver table
    /// the `problems` query consults as `{input}_all`) up to a snapshot's
    /// time.
    fn keys_table(&self, input: &str) -> String {
        format!("{}.keys.{input}", self.table())
    }

    /// Where [`Model::keys_table`] lives: under `state/.keys/`.
    fn keys_dir(&self, input: &str) -> String {
        format!("{STATE_DIR}/.keys/{}/{input}", self.name)
    }

    /// The silver tables the `problems` query checks (named as is: the
    /// events being checked) and consults (named with `_all`: every event
    /// up to the question's time).
    fn problem_tables(&self) -> (Vec<&'static str>, Vec<&'static str>) {
        let Some(sql) = &self.problems else {
            return (Vec::new(), Vec::new());
        };
        let read = tables_read(sql);
        let tables = silver::all_tables();
        let checked = tables
            .iter()
            .copied()
            .filter(|t| read.contains(*t))
            .collect();
        let context = tables
            .iter()
            .copied()
            .filter(|t| read.contains(&format!("{t}_all")))
            .collect();
        (checked, context)
    }

    /// The silver tables a state answer replays: those `delta` reads.
    /// Their rows in the window are the answer's `events_replayed`.
    fn replayed(&self) -> Vec<&'static str> {
        reads(&[&self.delta])
    }

    /// The silver tables a snapshot's rows and problems come from.
    fn snapshot_reads(&self) -> Vec<&'static str> {
        let (checked, context) = self.problem_tables();
        let mut v = self.replayed();
        v.extend(checked);
        v.extend(context);
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Whether a snapshot of this model reads silver table `table`.
    pub fn snapshot_reads_table(&self, table: &str) -> bool {
        self.snapshot_reads().contains(&table)
    }

    /// [`Model::fingerprint`] with what the lake's silver tables that a
    /// snapshot reads hold now.
    fn built_fingerprint(&self, state: &LakeState) -> String {
        self.fingerprint(&crate::pipeline::built_fingerprint(
            state,
            &self.snapshot_reads(),
        ))
    }

    /// The silver tables `present` reads besides `state` (e.g. to enrich
    /// its rows): every event up to the as-of time, as `history` sees
    /// them, whether the answer starts from a snapshot or not.
    fn present_reads(&self) -> Vec<&'static str> {
        reads(&[&self.present])
    }
}

/// The last `Line: N, Column: C` in a message (sqlparser's position of
/// an error, from 1).
fn position(message: &str) -> Option<(usize, usize)> {
    let at = message.rfind("Line: ")?;
    let (line, rest) = message[at + "Line: ".len()..].split_once(", Column: ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.parse().ok()?, column.parse().ok()?))
}

/// Where a parse error that ran out of input (`found: EOF`, which
/// sqlparser gives no position) is in `sql`: just after its last
/// character that is not blank, (line, column) from 1.
pub(crate) fn end_if_eof(message: &str, sql: &str) -> Option<(usize, usize)> {
    if !message.contains("found: EOF") {
        return None;
    }
    let body = sql.trim_end();
    let line = body.lines().count().max(1);
    let column = body.lines().last().map_or(0, |l| l.chars().count()) + 1;
    Some((line, column))
}

/// The silver tables any of `queries` reads.
fn reads(queries: &[&str]) -> Vec<&'static str> {
    let read: BTreeSet<String> = queries.iter().flat_map(|q| tables_read(q)).collect();
    silver::all_tables()
        .into_iter()
        .filter(|t| read.contains(*t))
        .collect()
}

/// The names of the tables `sql` reads, as DataFusion resolves them (not
/// a CTE, a column or an alias of the same name), lower case; `None` if
/// it does not parse.
pub(crate) fn parsed_tables(sql: &str) -> Option<BTreeSet<String>> {
    tables_or_error(sql).ok()
}

/// [`parsed_tables`], or why `sql` does not parse (the parser's message,
/// with its line and column).
pub(crate) fn tables_or_error(
    sql: &str,
) -> Result<BTreeSet<String>, datafusion::error::DataFusionError> {
    let statements = datafusion::sql::parser::DFParser::parse_sql(sql)?;
    let mut names = BTreeSet::new();
    for s in &statements {
        let (tables, _ctes) = datafusion::sql::resolve::resolve_table_references(s, true)?;
        names.extend(tables.iter().map(|t| t.table().to_string()));
    }
    Ok(names)
}

/// [`parsed_tables`], or if `sql` does not parse, every word it uses
/// outside `--` comments (running it then reports why it does not parse).
fn tables_read(sql: &str) -> BTreeSet<String> {
    parsed_tables(sql).unwrap_or_else(|| {
        sql.lines()
            .map(|l| l.split("--").next().unwrap_or(""))
            .flat_map(|l| l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
            .map(str::to_ascii_lowercase)
            .collect()
    })
}

/// The log's table name for model `name`'s snapshots.
fn snapshot_table(name: &str) -> String {
    format!("state_{name}")
}

/// The lake's models: those that load, and why each file in
/// `LAKE/models/` that does not load does not. A broken file stops only
/// what needs its model (`state`, `snapshot` or `history` of it, or a
/// snapshot policy naming it), never another model's answer.
pub struct Models {
    pub ok: BTreeMap<String, Model>,
    /// Model name → the error of its file (a broken file that would
    /// replace a built-in model replaces it: that model is broken too).
    pub broken: BTreeMap<String, anyhow::Error>,
}

/// A model whose file does not load, as `status` and `run` report it.
#[derive(Debug, Clone, Serialize)]
pub struct BrokenModel {
    pub model: String,
    pub error: String,
}

impl Models {
    /// Why model `name`, which is not among those that load, cannot be
    /// used: its file's error, or exit 2 naming the known models.
    pub fn not_loaded(&mut self, name: &str, lake: &Lake) -> anyhow::Error {
        if let Some(e) = self.broken.remove(name) {
            return e;
        }
        let known: Vec<&str> = self.ok.keys().map(String::as_str).collect();
        let meant = crate::report::nearest(name, known.iter().copied())
            .map(|m| format!("did you mean `{m}`? "))
            .unwrap_or_default();
        Failure::Usage(format!(
            "unknown model `{name}` ({meant}models: {}; add one as {}/{MODELS_DIR}/{name}.sql)",
            known.join(", "),
            lake.root().display()
        ))
        .into()
    }

    pub fn broken_list(&self) -> Vec<BrokenModel> {
        self.broken
            .iter()
            .map(|(model, e)| BrokenModel {
                model: model.clone(),
                error: format!("{e:#}"),
            })
            .collect()
    }
}

/// The queries a model has, each after a `-- name:` line.
const PARTS: [&str; 5] = ["delta", "combine", "present", "history", "problems"];

/// The name a model's line gives the query after it: `-- name: delta`,
/// in any case and spacing (`--Name:delta`).
fn name_line(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix("--")?.trim_start();
    let (word, rest) = rest.split_at_checked(4)?;
    let name = rest.trim_start().strip_prefix(':')?;
    word.eq_ignore_ascii_case("name").then(|| name.trim())
}

/// Every model: the built-in ones, then `LAKE/models/*.sql` (which may
/// replace a built-in of the same name).
pub fn models(lake: &Lake) -> Result<Models> {
    let mut ok = BTreeMap::new();
    for (name, text) in BUILTIN {
        ok.insert(name.to_string(), Model::parse(name, "built-in", text)?);
    }
    let mut broken = BTreeMap::new();
    for (name, path) in crate::lake::sql_files(&lake.path(MODELS_DIR))? {
        let load = || -> Result<Model> {
            if !crate::lake::is_sql_name(&name) {
                bail!(Failure::Usage(format!(
                    "`{}`: a model name is {}",
                    path.display(),
                    crate::lake::SQL_NAME_RULE
                )));
            }
            let text = crate::lake::read_sql_file(&path)?;
            Model::parse(&name, &path.display().to_string(), &text)
        };
        match load() {
            Ok(m) => {
                ok.insert(name.to_string(), m);
            }
            Err(e) => {
                ok.remove(&name);
                broken.insert(name.to_string(), e);
            }
        }
    }
    Ok(Models { ok, broken })
}

/// One model by name: its file's error if it does not load, exit 2
/// naming the known ones if there is none.
pub fn model(lake: &Lake, name: &str) -> Result<Model> {
    // Only this one is parsed (the built-ins' SQL took ~1.5 ms of every
    // `state` answer), unless it is not there: the error names the rest.
    if crate::lake::is_sql_name(name) {
        let path = lake.path(MODELS_DIR).join(format!("{name}.sql"));
        match std::fs::read_to_string(&path).map(crate::lake::without_bom) {
            Ok(text) => return Model::parse(name, &path.display().to_string(), &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name) {
                    return Model::parse(name, "built-in", text);
                }
            }
            Err(e) => return Err(crate::lake::read_sql_error(&path, e)),
        }
    }
    let mut all = models(lake)?;
    match all.ok.remove(name) {
        Some(m) => Ok(m),
        None => Err(all.not_loaded(name, lake)),
    }
}

/// Parse `--as-of` / `--known-at`: RFC 3339, or a date meaning the end of
/// that day (UTC), i.e. its last microsecond, or `now` (the clock's).
pub fn parse_time(s: &str) -> Result<i64, String> {
    if s.trim().eq_ignore_ascii_case("now") {
        return Ok(chrono::Utc::now().timestamp_micros());
    }
    crate::time::parse_instant_or_date(s, true)
}

/// A snapshot as the log describes it.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub model: String,
    /// RFC 3339.
    pub as_of: String,
    #[serde(skip)]
    pub as_of_us: i64,
    /// Its partition in the log (the directory form, see [`as_of_dir`]).
    #[serde(skip)]
    pub key: String,
    /// The commit that wrote it.
    pub version: u64,
    pub rows: u64,
    pub valid: bool,
    /// Why it is invalid.
    pub invalid_because: Option<String>,
}

impl Snapshot {
    /// Whether every file of the snapshot (its rows, its problem events
    /// and keys) is on disk. The log says what a snapshot holds, but a
    /// file deleted or lost under it would fail every answer that starts
    /// from it: a snapshot is a cache, so such a one is passed over (and
    /// `snapshot` writes it again).
    pub fn on_disk(&self, lake: &Lake, state: &LakeState) -> bool {
        let table = snapshot_table(&self.model);
        let nested = format!("{table}.");
        state
            .tables
            .iter()
            .filter(|(t, _)| **t == table || t.starts_with(&nested))
            .filter_map(|(_, parts)| parts.get(&self.key))
            .flat_map(|p| p.files.keys())
            .all(|f| lake.path(f).is_file())
    }
}

/// Why a snapshot whose files are gone is invalid (see [`Snapshot::on_disk`]).
const FILES_MISSING: &str =
    "its files are not on disk (deleted or lost; `evlake check` lists them)";

/// Every snapshot of `models` in the log, with its validity: one whose
/// files are not all on disk is invalid too, so `status` says so, `state`
/// passes over it and `run` writes it again.
pub fn snapshots(
    lake: &Lake,
    state: &LakeState,
    models: &BTreeMap<String, Model>,
) -> Vec<Snapshot> {
    let mut out = Vec::new();
    for m in models.values() {
        let table = m.table();
        let fp = m.built_fingerprint(state);
        for (key, p) in state.partitions(&table) {
            if p.files.is_empty() {
                continue;
            }
            let Some(as_of_us) = parse_as_of_dir(key) else {
                continue;
            };
            let built = state
                .builds
                .get(&table)
                .and_then(|b| b.get(key))
                .map(|(_, b)| b.fingerprint.clone());
            let late = state
                .bronze_min_event_times
                .iter()
                .find(|(v, t)| *v > p.version && *t <= as_of_us);
            let invalid_because = if built.as_deref() != Some(fp.as_str()) {
                Some(
                    "the model's delta, combine or problems query, or the SQL/settings of the silver tables it reads, changed"
                        .to_string(),
                )
            } else {
                late.map(|(v, t)| {
                    format!(
                        "commit {v} added, retracted or erased an event at {} (at or before the snapshot)",
                        format_micros(*t)
                    )
                })
            };
            let mut s = Snapshot {
                model: m.name.clone(),
                as_of: format_micros(as_of_us),
                as_of_us,
                key: key.clone(),
                version: p.version,
                rows: p.rows(),
                valid: invalid_because.is_none(),
                invalid_because,
            };
            if s.valid && !s.on_disk(lake, state) {
                s.valid = false;
                s.invalid_because = Some(FILES_MISSING.to_string());
            }
            out.push(s);
        }
    }
    out
}

/// A question: the state of a model at `as_of`, as known at `known_at`.
#[derive(Debug, Clone)]
pub struct Query {
    pub as_of: i64,
    /// Only events processed by then (the bitemporal view); `None`: all.
    pub known_at: Option<i64>,
    /// `--key`: one entity.
    pub key: Option<String>,
    /// Start from the newest valid snapshot at or before `as_of`.
    pub use_snapshots: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct UsedSnapshot {
    pub as_of: String,
    pub version: u64,
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub problem: String,
    pub event_id: String,
    pub detail: String,
}

/// What `evlake state` answers, besides the rows.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub model: String,
    pub as_of: String,
    pub known_at: Option<String>,
    /// The snapshot the answer started from, if any.
    pub snapshot: Option<UsedSnapshot>,
    /// Events read after the snapshot (or from the start), up to as_of.
    pub events_replayed: u64,
    pub problems: Vec<Problem>,
    /// Silver dates not rebuilt since bronze changed: the answer does not
    /// include their newest events yet (`evlake run` first).
    pub silver_dirty: Vec<String>,
    pub elapsed_ms: u64,
}

/// The window of events a query reads: `(after, up_to]` by event time,
/// processed by `known_at`.
#[derive(Debug, Clone, Copy)]
struct Window {
    after: Option<i64>,
    up_to: i64,
    known_at: Option<i64>,
}

impl Window {
    fn filter(&self, date_column: &str) -> String {
        let ts = |us: i64| format!("arrow_cast({us}, 'Timestamp(Microsecond, Some(\"UTC\"))')");
        let mut f = vec![
            format!(
                "{date_column} <= DATE '{}'",
                crate::time::format_date32(date32_of_micros(self.up_to))
            ),
            format!("event_timestamp <= {}", ts(self.up_to)),
        ];
        if let Some(a) = self.after {
            f.push(format!(
                "{date_column} >= DATE '{}'",
                crate::time::format_date32(date32_of_micros(a))
            ));
            f.push(format!("event_timestamp > {}", ts(a)));
        }
        if let Some(p) = self.known_at {
            f.push(format!("processing_time <= {}", ts(p)));
        }
        f.join(" AND ")
    }
}

/// Register `tables` as views of the lake's silver tables restricted to
/// `window`, each under `prefix` + its name.
async fn register_window(
    ctx: &SessionContext,
    (model, lake): (&Model, &Lake),
    tables: &[&'static str],
    window: Window,
    prefix: &str,
) -> Result<()> {
    for t in tables {
        let raw = format!("_raw_{t}");
        if !ctx.table_exist(raw.as_str())? {
            let dir = silver::all_tables()
                .into_iter()
                .zip(silver::all_dirs())
                .find(|(n, _)| n == t)
                .map(|(_, d)| d)
                .expect("a silver table");
            engine::register_partitioned(
                ctx,
                &raw,
                &lake.path(dir),
                "event_date",
                None,
                Vec::new(),
            )
            .await?;
        }
        let name = format!("{prefix}{t}");
        let _ = ctx.deregister_table(name.as_str())?;
        if ctx.table_exist(raw.as_str())? {
            // A typed table of the lake's own need not have an event time,
            // but a model replays events by theirs.
            let schema = ctx.table(raw.as_str()).await?.schema().clone();
            let mut needs = vec!["event_timestamp"];
            if window.known_at.is_some() {
                needs.push("processing_time");
            }
            if let Some(c) = needs
                .iter()
                .find(|c| schema.field_with_unqualified_name(c).is_err())
            {
                return Err(Failure::Usage(format!(
                    "{}: reads `{t}`, which has no `{c}` column: a state model replays \
                     events by their time{} (add `{c}` to the table's SQL, or read `events`)",
                    model.label(),
                    if *c == "processing_time" {
                        " and, with --known-at, by when they were processed"
                    } else {
                        ""
                    }
                ))
                .into());
            }
            let df = ctx
                .sql(&format!(
                    "SELECT * FROM {raw} WHERE {}",
                    window.filter("event_date")
                ))
                .await?;
            ctx.register_table(name.as_str(), df.into_view())?;
        } else {
            // No rows yet: the same columns, empty, from silver's SQL.
            let df = silver::empty_table(ctx, t).await?;
            ctx.register_table(name.as_str(), df.into_view())?;
        }
    }
    Ok(())
}

/// Run `model`'s query `part` (`sql`) with `$1` = the key (or NULL).
async fn with_key(
    ctx: &SessionContext,
    (model, part, sql): (&Model, &str, &str),
    key: Option<&str>,
) -> Result<DataFrame> {
    let df = crate::engine::planned(ctx, sql, Default::default())
        .await
        .map_err(|e| model.sql_error(part, e))?;
    let takes_param = sql.contains("$1");
    // A key the query has no `$1` for would be passed over: `state M
    // --key u1` printing every entity, `history u1` every event. (A
    // `problems` query without one reports every entity's, which is
    // only more than asked.)
    if key.is_some() && !takes_param && part != "problems" {
        let (given, passed_over) = if part == "history" {
            ("history's KEY", "every entity's events")
        } else {
            ("--key", "every entity")
        };
        let without = if part == "present" {
            " (`$1` is NULL without --key)"
        } else {
            ""
        };
        return Err(Failure::Usage(format!(
            "{}: the query has no `$1`, so {given} would be passed over and the answer hold \
             {passed_over}: filter on it, e.g. `WHERE user_id = $1`{without}",
            model.what(part),
        ))
        .into());
    }
    Ok(if takes_param {
        df.with_param_values(vec![ScalarValue::Utf8(key.map(str::to_string))])?
    } else {
        df
    })
}

/// Count the rows of `tables` (registered with `prefix`).
async fn count_rows(ctx: &SessionContext, tables: &[&str], prefix: &str) -> Result<u64> {
    let mut n = 0;
    for t in tables {
        let b = ctx
            .sql(&format!("SELECT count(*) FROM {prefix}{t}"))
            .await?
            .collect()
            .await?;
        n += b
            .first()
            .map_or(0, |b| b.column(0).as_primitive::<Int64Type>().value(0)) as u64;
    }
    Ok(n)
}

/// The raw combined aggregate at `window.up_to`, starting from `snapshot`
/// (already registered as `_snapshot`) if given. Registers the window
/// as the model's input tables (see [`count_rows`]), and `partials`.
async fn combined(
    ctx: &SessionContext,
    lake: &Lake,
    model: &Model,
    window: Window,
    from_snapshot: bool,
    to_store: bool,
) -> Result<DataFrame> {
    register_window(ctx, (model, lake), &model.replayed(), window, "").await?;
    let delta = crate::engine::planned(ctx, &model.delta, Default::default())
        .await
        .map_err(|e| model.sql_error("delta", e))?;
    fixed_by_rows(model, "delta", &delta)?;
    combines(model, "delta", &delta)?;
    let delta_aggregates = aggregates(delta.logical_plan());
    // Partials, and so snapshots, in types every reader of the lake takes
    // (see engine::reader_type): a model's own `CAST(x AS TIMESTAMP)`
    // stored nanoseconds, and Spark refuses a file with such a column.
    let delta = crate::engine::with_reader_types(delta)?;
    let names: Vec<String> = delta
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let partials = if from_snapshot {
        let snap = ctx.table("_snapshot").await?;
        // Same columns by name and order: the snapshot is a delta/combine
        // output of the same model (one an older evlake wrote from a
        // combine that drops some is refused as such).
        keeps_delta_columns(model, &names, snap.schema())?;
        let snap = snap.select_columns(&names.iter().map(String::as_str).collect::<Vec<_>>())?;
        snap.union(delta)?
    } else {
        delta
    };
    let _ = ctx.deregister_table("partials")?;
    ctx.register_table("partials", partials.clone().into_view())?;
    let state = crate::engine::planned(ctx, &model.combine, Default::default())
        .await
        .map_err(|e| model.sql_error("combine", e))?;
    fixed_by_rows(model, "combine", &state)?;
    combines(model, "combine", &state)?;
    keeps_delta_columns(model, &names, state.schema())?;
    merges_rows(model, delta_aggregates, &state)?;
    let state = crate::engine::with_reader_types(state)?;
    if to_store {
        // A snapshot is a Parquet file: a column none can hold made the
        // writer panic (a union) or fail as on a machine's error.
        if let Some(why) = crate::engine::unwritable_column(state.schema().as_arrow()) {
            return Err(Failure::Usage(format!(
                "{} {why}; a snapshot stores combine's rows in Parquet, so this model can \
                 have none as it is (its answers replay every event instead)",
                model.what("combine")
            ))
            .into());
        }
        // Plan combine over its own rows and delta's, as every answer
        // from the snapshot will: a column whose type combine changes
        // into one it does not accept (`CAST(SUM(n) AS VARCHAR)`) would
        // make a snapshot that no answer can use.
        let planned: Result<(), datafusion::error::DataFusionError> = async {
            let own = state
                .clone()
                .select_columns(&names.iter().map(String::as_str).collect::<Vec<_>>())?;
            let both = own.union(ctx.sql(&model.delta).await?)?;
            ctx.deregister_table("partials")?;
            ctx.register_table("partials", both.into_view())?;
            ctx.sql(&model.combine).await.map(drop)
        }
        .await;
        ctx.deregister_table("partials")?;
        ctx.register_table("partials", partials.into_view())?;
        if let Err(e) = planned {
            return Err(Failure::Usage(format!(
                "{}: cannot combine its own rows with delta's, as every answer from a snapshot \
                 does (a snapshot stores combine's rows; combine must return delta's columns \
                 in types it accepts): {e}",
                model.what("combine")
            ))
            .into());
        }
    }
    Ok(state)
}

/// A snapshot stores what `delta` and `combine` computed at its time (and
/// the events `problems` found), and an answer from it adds what they
/// compute at the answer's: a function
/// whose value is not fixed by the rows (`now()`, `random()`) would make
/// the two disagree with a full replay, so the model is refused (exit 2).
/// `present` runs at the answer's time on both paths: it may use them.
fn fixed_by_rows(model: &Model, part: &str, planned: &DataFrame) -> Result<()> {
    match crate::engine::time_dependent_function(planned.logical_plan()) {
        None => Ok(()),
        Some(f) => Err(Failure::Usage(format!(
            "{}: {}: a snapshot keeps the value it had when written, so answers from one \
             would disagree with a full replay (`present`, run at every answer, may use it)",
            model.what(part),
            crate::engine::not_fixed_by_rows(&f)
        ))
        .into()),
    }
}

/// The aggregate functions whose results over two sets of events merge
/// into their result over both: `delta` may use them over the events
/// it reads, and `combine` all but `count`, which would count the
/// partial rows (a snapshot's and delta's) rather than merge them.
const DELTA_AGGREGATES: &[&str] = &[
    "sum",
    "count",
    "min",
    "max",
    "first_value",
    "last_value",
    "bool_and",
    "bool_or",
    "bit_and",
    "bit_or",
    "bit_xor",
    "array_agg",
    "string_agg",
    "grouping",
];

/// Those that give the same result over values seen twice: with
/// DISTINCT, the only ones whose results still merge (a value on both
/// sides of a snapshot is one value, but is counted or summed on each).
const DISTINCT_AGGREGATES: &[&str] = &[
    "min",
    "max",
    "bool_and",
    "bool_or",
    "bit_and",
    "bit_or",
    "array_agg",
];

/// A snapshot stores `combine`'s result at its time, and an answer from
/// it merges that with `delta` over the events after it: an aggregate in
/// `delta` or `combine` (`part`) whose results do not merge so
/// (`AVG`, `COUNT(DISTINCT ...)`, `MEDIAN`, `COUNT` in combine) would
/// answer differently from a snapshot than from a full replay, with
/// nothing said, so the model is refused (exit 2) on every path, naming
/// the function and what to write instead.
fn combines(model: &Model, part: &str, planned: &DataFrame) -> Result<()> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    let allowed =
        |name: &str| DELTA_AGGREGATES.contains(&name) && !(part == "combine" && name == "count");
    let mut found: Option<(String, String)> = None;
    let _ = planned.logical_plan().apply_with_subqueries(|node| {
        // combine's input is delta's (and the snapshot's) rows.
        if let LogicalPlan::SubqueryAlias(a) = node
            && part == "combine"
            && a.alias.table() == "partials"
        {
            return Ok(TreeNodeRecursion::Jump);
        }
        node.apply_expressions(|e| {
            e.apply(|e| {
                let Expr::AggregateFunction(f) = e else {
                    return Ok(TreeNodeRecursion::Continue);
                };
                let name = f.func.name().to_lowercase();
                let p = &f.params;
                let why = if !allowed(&name) {
                    Some(does_not_combine(&name, part))
                } else if p.distinct && !DISTINCT_AGGREGATES.contains(&name.as_str()) {
                    Some((
                        format!(
                            "`{}(DISTINCT ...)` does not combine: a value both in a snapshot's \
                             events and in those after it is one value, but is counted on each \
                             side",
                            name.to_uppercase()
                        ),
                        DISTINCT_VALUES.to_string(),
                    ))
                } else if matches!(name.as_str(), "first_value" | "last_value")
                    && p.order_by.is_empty()
                {
                    Some((
                        format!(
                            "`{}` without ORDER BY takes any row's value",
                            name.to_uppercase()
                        ),
                        format!(
                            "order it by time, e.g. `{}(v ORDER BY event_timestamp, event_id)`",
                            name.to_uppercase()
                        ),
                    ))
                } else {
                    None
                };
                match why {
                    Some(why) => {
                        found = Some(why);
                        Ok(TreeNodeRecursion::Stop)
                    }
                    None => Ok(TreeNodeRecursion::Continue),
                }
            })
        })
    });
    match found {
        None => Ok(()),
        Some((why, instead)) => Err(Failure::Usage(format!(
            "{}: {why}, so answers from a snapshot could differ from a full replay ({instead})",
            model.what(part)
        ))
        .into()),
    }
}

/// What to write instead of an aggregate of distinct values.
const DISTINCT_VALUES: &str = "keep the distinct values as rows, `GROUP BY` key and value in \
                               delta and combine, and count them in present";

/// Why aggregate `name` cannot be used in `part`, and what to write
/// instead.
fn does_not_combine(name: &str, part: &str) -> (String, String) {
    let upper = name.to_uppercase();
    let instead = match name {
        "count" => "SUM delta's count instead, e.g. `SUM(n) AS n`".to_string(),
        "avg" | "mean" => "keep SUM(x) and COUNT(x) in delta, SUM each in combine, and divide \
                           in present"
            .to_string(),
        "approx_distinct" => DISTINCT_VALUES.to_string(),
        "stddev" | "stddev_pop" | "stddev_samp" | "var" | "var_pop" | "var_samp" | "var_sample"
        | "var_population" => "keep COUNT(x), SUM(x) and SUM(x * x) in delta, SUM each in \
                               combine, and compute it in present"
            .to_string(),
        _ => format!(
            "keep what it needs in delta and combine with sums, counts, MIN/MAX, \
             FIRST_VALUE/LAST_VALUE ordered by time or BOOL_AND/BOOL_OR (ARRAY_AGG keeps the \
             values themselves), and compute {upper} in present"
        ),
    };
    let why = if part == "combine" {
        format!(
            "`{upper}` does not combine: over a snapshot's rows and delta's, it is not its value \
             over the events they came from"
        )
    } else {
        format!(
            "`{upper}` does not combine: its value over a snapshot's events and its value over \
             the events after it do not merge into its value over all of them"
        )
    };
    (why, instead)
}

/// Whether `plan` returns a row per group (an aggregate or DISTINCT at
/// its top, under projections, filters, sorts and limits).
fn aggregates(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(_) => true,
        LogicalPlan::Projection(p) => aggregates(&p.input),
        LogicalPlan::Filter(f) => aggregates(&f.input),
        LogicalPlan::Sort(s) => aggregates(&s.input),
        LogicalPlan::Limit(l) => aggregates(&l.input),
        LogicalPlan::SubqueryAlias(a) => aggregates(&a.input),
        _ => false,
    }
}

/// A `delta` that aggregates returns a row per key of the events it
/// reads, so a key with events both before and after a snapshot has a row
/// in each: a `combine` that merges no rows (no aggregate, DISTINCT,
/// window or join anywhere in it, e.g. `SELECT user_id, n FROM partials`)
/// would answer from the snapshot with both rows where a full replay has
/// one, so the model is refused (exit 2) on every path, not only when the
/// answers differ.
fn merges_rows(model: &Model, delta_aggregates: bool, combine: &DataFrame) -> Result<()> {
    // Down to `partials`, whose plan (delta's, inlined) is not combine's.
    fn merges(plan: &LogicalPlan) -> bool {
        match plan {
            LogicalPlan::SubqueryAlias(a) if a.alias.table() == "partials" => false,
            LogicalPlan::Aggregate(_)
            | LogicalPlan::Distinct(_)
            | LogicalPlan::Window(_)
            | LogicalPlan::Join(_) => true,
            _ => plan.inputs().into_iter().any(merges),
        }
    }
    if !delta_aggregates || merges(combine.logical_plan()) {
        return Ok(());
    }
    Err(Failure::Usage(format!(
        "{}: merges no rows of `partials` (it has no GROUP BY, aggregate, DISTINCT or window), \
         but delta aggregates: a key with events before and after a snapshot would have a row \
         from each in answers from it, and one in a full replay; combine them into one row \
         per key, e.g. `SELECT user_id, SUM(n) AS n FROM partials GROUP BY user_id`",
        model.what("combine"),
    ))
    .into())
}

/// A snapshot stores combine's rows, and answers from it combine them
/// with delta's again: a column of delta's (`names`) that combine drops
/// (is not in `returned`) would make every snapshot of the model one that
/// no answer can use, so the model is refused (exit 2).
fn keeps_delta_columns(model: &Model, names: &[String], returned: &DFSchema) -> Result<()> {
    let dropped: Vec<String> = names
        .iter()
        .filter(|n| returned.field_with_unqualified_name(n).is_err())
        .map(|n| format!("`{n}`"))
        .collect();
    if dropped.is_empty() {
        return Ok(());
    }
    Err(Failure::Usage(format!(
        "{}: returns no column {} of delta's: a snapshot stores combine's rows and answers \
         combine them with delta's again, so combine must return every column delta returns",
        model.what("combine"),
        dropped.join(", ")
    ))
    .into())
}

/// Answer `q` for `model`: the rows `present` prints and the answer's facts.
pub fn query(
    lake: &Lake,
    state: &LakeState,
    model: &Model,
    q: &Query,
    engine_opts: &EngineOptions,
) -> Result<(Answer, Vec<RecordBatch>)> {
    let started = Instant::now();
    let trace = |phase: &str| crate::fault::trace(started, phase);
    let all = BTreeMap::from([(model.name.clone(), model.clone())]);
    // A snapshot holds what the lake knew when it was written, so it can
    // answer a --known-at question only if nothing it read came later;
    // simplest and always right: bitemporal questions replay.
    let snapshot = if q.use_snapshots && q.known_at.is_none() {
        // Those valid but for their files are named as passed over.
        let mut usable: Vec<Snapshot> = snapshots(lake, state, &all)
            .into_iter()
            .filter(|s| s.as_of_us <= q.as_of)
            .filter(|s| s.valid || s.invalid_because.as_deref() == Some(FILES_MISSING))
            .collect();
        usable.sort_by_key(|s| s.as_of_us);
        let mut newest = None;
        while let Some(s) = usable.pop() {
            if s.valid {
                newest = Some(s);
                break;
            }
            crate::commands::status(
                "Warning",
                format!(
                    "the snapshot of `{}` at {} is in the log but its files are not on disk; \
                     passed over (`evlake check` lists them, `evlake snapshot {} --as-of {}` \
                     writes it again)",
                    model.name, s.as_of, model.name, s.as_of
                ),
            );
        }
        newest
    } else {
        None
    };
    let rt = crate::engine::runtime()?;
    let (batches, replayed, problems) = rt.block_on(async {
        let engine = Engine::new(engine_opts)?;
        engine.read_committed(lake, state)?;
        let ctx = engine.lookups()?;
        if let Some(s) = &snapshot {
            register_snapshot(&ctx, lake, state, model, &s.key).await?;
        }
        let window = Window {
            after: snapshot.as_ref().map(|s| s.as_of_us),
            up_to: q.as_of,
            known_at: q.known_at,
        };
        trace("snapshot registered");
        let combined = combined(&ctx, lake, model, window, snapshot.is_some(), false).await?;
        trace("window registered");
        // `present` reads the silver tables it names over every event up
        // to as_of (in `ctx` they are the window after the snapshot): in a
        // session of its own, if it names any.
        let present_tables = model.present_reads();
        let present_ctx = if present_tables.is_empty() {
            ctx.clone()
        } else {
            let every = Window {
                after: None,
                up_to: q.as_of,
                known_at: q.known_at,
            };
            let present_ctx = engine.lookups()?;
            register_window(&present_ctx, (model, lake), &present_tables, every, "").await?;
            present_ctx
        };
        present_ctx.register_table("state", combined.into_view())?;
        let present = with_key(
            &present_ctx,
            (model, "present", &model.present),
            q.key.as_deref(),
        )
        .await?;
        // The problems read events the answer may not: check them while
        // the answer is computed.
        let checks = problem_checks(&ctx, lake, state, model, q, snapshot.as_ref()).await?;
        trace("problem checks planned");
        // The events replayed are counted meanwhile too.
        // Each on a worker of its own: planning one is ~5 ms on one core.
        let inputs = model.replayed();
        let (own, running) = (
            model.file().is_some(),
            format!("{}: running its delta, combine and present", model.label()),
        );
        let rows = tokio::spawn(async move {
            let rows = collect_with_schema(present)
                .await
                .map_err(|e| running_error(own, running, e));
            crate::fault::trace(started, "state computed");
            rows
        });
        let problems = tokio::spawn({
            let (engine, model, key) = (engine.clone(), model.clone(), q.key.clone());
            async move {
                let problems = run_checks(&engine, &model, key.as_deref(), checks).await;
                crate::fault::trace(started, "problem checks done");
                problems
            }
        });
        let replayed = tokio::spawn({
            let ctx = ctx.clone();
            async move {
                let n = count_rows(&ctx, &inputs, "").await;
                crate::fault::trace(started, "replayed events counted");
                n
            }
        });
        let (rows, problems, replayed) = tokio::join!(rows, problems, replayed);
        let (rows, problems, replayed) = (rows??, problems??, replayed??);
        anyhow::Ok((rows, replayed, problems))
    })?;
    rt.shutdown_background();
    trace("runtime shut down");
    let answer = Answer {
        model: model.name.clone(),
        as_of: format_micros(q.as_of),
        known_at: q.known_at.map(format_micros),
        snapshot: snapshot.map(|s| UsedSnapshot {
            as_of: s.as_of,
            version: s.version,
            rows: s.rows,
        }),
        events_replayed: replayed,
        problems,
        silver_dirty: crate::pipeline::silver_dirty_dates(state),
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    Ok((answer, batches))
}

/// One run of a model's `problems` query: the frame each table name it
/// reads stands for.
type Tables = Vec<(String, DataFrame)>;

/// A check, and the tables to run it with instead if it does not plan
/// with them (see [`problem_checks`]: a snapshot's keys stand for every
/// event when the query reads only their ids).
struct Check {
    tables: Tables,
    fallback: Option<Tables>,
    /// Report only these `(event_id, problem)` pairs, if given: the
    /// problems a snapshot's problem events had at its time (see
    /// [`problem_checks`]).
    only: Option<DataFrame>,
}

impl From<Tables> for Check {
    fn from(tables: Tables) -> Self {
        Check {
            tables,
            fallback: None,
            only: None,
        }
    }
}

/// The column of a snapshot's problem events that lists, as a JSON array,
/// the problems each had at the snapshot's time.
const REPORTED: &str = "_evlake_problems";

/// The problem checks that answer `q` (registered in `ctx`, whose silver
/// tables are the window replayed after `snapshot`).
///
/// Without a snapshot (or one written before snapshots kept their problem
/// events), one check: the events up to as_of against themselves. From a
/// snapshot that kept them, two, so no check reads every event's rows:
/// the window's events against every event, and the snapshot's problem
/// events against the window's (an event it reported can only be cleared
/// by an event it did not see, and a valid snapshot saw every event up to
/// its time). That second check reports only the problems each of those
/// events had at the snapshot's time: consulting only the window and
/// the problem events, a problem that looks for an event (a correction's
/// target) would find one the snapshot saw missing, about an event the
/// snapshot kept for another problem (no amount).
///
/// In the first, every event of a consulted table (`{t}_all`) is the
/// snapshot's keys (the ids of every event up to its time, sorted, in one
/// file of small row groups) plus the window's ids, when the
/// query reads only `event_id` of it: otherwise it does not plan with that
/// one column, and runs over the events' rows (which opens a file per
/// date).
async fn problem_checks(
    ctx: &SessionContext,
    lake: &Lake,
    state: &LakeState,
    model: &Model,
    q: &Query,
    snapshot: Option<&Snapshot>,
) -> Result<Vec<Check>> {
    if model.problems.is_none() {
        return Ok(Vec::new());
    }
    let (checked, context) = model.problem_tables();
    let every = Window {
        after: None,
        up_to: q.as_of,
        known_at: q.known_at,
    };
    let mut tables: Vec<&'static str> = checked.clone();
    tables.extend(context.iter().filter(|t| !checked.contains(t)));
    register_window(ctx, (model, lake), &tables, every, "_all_").await?;
    let all = |t: &str| ctx.table(format!("_all_{t}"));
    let (stored, only) = match snapshot {
        Some(s) if !checked.is_empty() => {
            match stored_problem_events(ctx, lake, state, model, &s.key, &checked).await? {
                Some((stored, only)) => (Some(stored), only),
                None => (None, None),
            }
        }
        _ => (None, None),
    };
    let (Some(snapshot), Some(stored)) = (snapshot, stored) else {
        let mut check = Tables::new();
        for t in &checked {
            check.push((t.to_string(), all(t).await?));
        }
        for t in &context {
            check.push((format!("{t}_all"), all(t).await?));
        }
        return Ok(vec![check.into()]);
    };
    let after = Window {
        after: Some(snapshot.as_of_us),
        up_to: q.as_of,
        known_at: q.known_at,
    };
    register_window(ctx, (model, lake), &tables, after, "_after_").await?;
    let (mut window_check, mut stored_check) = (Tables::new(), Tables::new());
    for t in &checked {
        let window = ctx.table(format!("_after_{t}")).await?;
        window_check.push((t.to_string(), window.clone()));
        stored_check.push((t.to_string(), stored[*t].clone()));
    }
    let mut by_keys = Some(window_check.clone());
    for t in &context {
        let window = ctx.table(format!("_after_{t}")).await?;
        window_check.push((format!("{t}_all"), all(t).await?));
        by_keys = match (
            by_keys,
            snapshot_keys(ctx, lake, state, model, &snapshot.key, t).await?,
        ) {
            (Some(mut tables), Some(keys)) => {
                let ids = window.clone().select_columns(&["event_id"])?;
                let id_type = ids.schema().field(0).data_type().clone();
                let keys = keys.select(vec![cast(col("event_id"), id_type).alias("event_id")])?;
                tables.push((format!("{t}_all"), keys.union(ids)?));
                Some(tables)
            }
            _ => None,
        };
        let seen = match stored.get(*t) {
            Some(rows) => window.union(rows.clone())?,
            None => window,
        };
        stored_check.push((format!("{t}_all"), seen));
    }
    let window_check = match by_keys {
        Some(tables) if !context.is_empty() => Check {
            tables,
            fallback: Some(window_check),
            only: None,
        },
        _ => window_check.into(),
    };
    let stored_check = Check {
        only,
        ..stored_check.into()
    };
    Ok(vec![window_check, stored_check])
}

/// A snapshot's keys of silver table `t` (see [`problem_checks`]), or
/// `None` if it has none (written before snapshots kept them).
async fn snapshot_keys(
    ctx: &SessionContext,
    lake: &Lake,
    state: &LakeState,
    model: &Model,
    key: &str,
    t: &str,
) -> Result<Option<DataFrame>> {
    let Some(file) = state
        .tables
        .get(&model.keys_table(t))
        .and_then(|p| p.get(key))
        .and_then(|p| p.files.keys().next())
    else {
        return Ok(None);
    };
    // Served from memory: a lookup reads hundreds of small ranges (the
    // row groups whose min/max may hold a key looked up), which
    // from a local file cost a blocking task each. Mapped, not read, so
    // only those ranges are paged in, at any file size (reading the whole
    // file had been ~9% of a snapshot answer's CPU on the 5M bench lake).
    use datafusion::object_store::{ObjectStoreExt, PutPayload, memory::InMemory, path::Path};
    let path = lake.path(file);
    let name = format!("_keys_{t}");
    let file = std::fs::File::open(&path)
        .with_context(|| format!("failed to open `{}`", path.display()))?;
    // SAFETY: evlake writes every lake file once, under a new name (temp
    // file, then rename), and never modifies or truncates one in place, so
    // the mapped bytes cannot change under the map.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("failed to map `{}`", path.display()))?;
    let store = InMemory::new();
    store
        .put(
            &Path::from(format!("{t}/part.parquet")),
            PutPayload::from(bytes::Bytes::from_owner(map)),
        )
        .await?;
    // A store per table: registering a URL again replaces its store.
    let root = format!("memory://evlake-keys-{}/", t.replace('_', "-"));
    let url = datafusion::execution::object_store::ObjectStoreUrl::parse(&root)?;
    ctx.runtime_env()
        .register_object_store(url.as_ref(), Arc::new(store));
    // The ids a lookup's join passes as an IN list (up to 4096, see
    // `Engine::sorted_lookups`) are checked against each row group's
    // min/max, which in a sorted file leaves about one group per id (the
    // default checks a list of at most 20, and then reads every group).
    // Keys files of older snapshots have Bloom filters too: left unread,
    // they passed most groups once a lookup had more than ~20 ids.
    register_url_with(ctx, &name, &format!("{root}{t}/"), |o| {
        o.max_in_list_size = 4096;
        o.bloom_filter_on_read = false;
    })
    .await?;
    Ok(Some(ctx.table(name.as_str()).await?))
}

/// A snapshot's problem events, one frame per checked table with the
/// columns of its window (`None` if the snapshot did not keep them), and
/// the `(event_id, problems)` they had at its time (`None` from snapshots
/// written before those were kept: every problem is then reported).
async fn stored_problem_events(
    ctx: &SessionContext,
    lake: &Lake,
    state: &LakeState,
    model: &Model,
    key: &str,
    checked: &[&'static str],
) -> Result<Option<(BTreeMap<&'static str, DataFrame>, Option<DataFrame>)>> {
    let mut out = BTreeMap::new();
    // Each table's pairs; `None` for a table whose file has none.
    let mut reported: Vec<Option<DataFrame>> = Vec::new();
    for t in checked {
        let Some(p) = state
            .tables
            .get(&model.problems_table(t))
            .and_then(|p| p.get(key))
        else {
            return Ok(None);
        };
        let Some(file) = p.files.keys().next() else {
            return Ok(None);
        };
        let name = format!("_stored_{t}");
        register_files(ctx, &name, lake, file).await?;
        // The window's columns, in its order (the file was written from it).
        let window = ctx.table(*t).await?;
        let columns: Vec<&str> = window
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let stored = ctx.table(name.as_str()).await?;
        reported.push(
            match stored.schema().has_column_with_unqualified_name(REPORTED) {
                true => Some(stored.clone().select(vec![
                    cast(col("event_id"), DataType::Utf8).alias("event_id"),
                    col(REPORTED),
                ])?),
                false => None,
            },
        );
        out.insert(*t, stored.select_columns(&columns)?);
    }
    // Every table's, or (a snapshot from before they were kept) none.
    let reported = match reported.into_iter().collect::<Option<Vec<_>>>() {
        Some(frames) => {
            frames
                .into_iter()
                .try_fold(None, |all: Option<DataFrame>, f| match all {
                    Some(all) => all.union(f).map(Some),
                    None => Ok(Some(f)),
                })?
        }
        None => None,
    };
    Ok(Some((out, reported)))
}

/// Run the model's `problems` query once per check, concurrently (each in
/// its own session, its tables named as the query expects); the rows
/// sorted and deduplicated.
async fn run_checks(
    engine: &Engine,
    model: &Model,
    key: Option<&str>,
    checks: Vec<Check>,
) -> Result<Vec<Problem>> {
    let Some(sql) = &model.problems else {
        return Ok(Vec::new());
    };
    let plan = |tables: Tables, by_keys: bool| async move {
        let ctx = if by_keys {
            engine.sorted_lookups()?
        } else {
            engine.lookups()?
        };
        for (name, df) in tables {
            ctx.register_table(name.as_str(), df.into_view())?;
        }
        let df = with_key(&ctx, (model, "problems", sql), key).await?;
        // Its rows are read by position (a missing column panicked).
        let n = df.schema().fields().len();
        if n != 3 {
            return Err(Failure::Usage(format!(
                "{}: returns {n} column(s): a problems query returns three, \
                 `(problem, event_id, detail)`, e.g. `SELECT 'no amount' AS problem, \
                 event_id, '' AS detail FROM ...`",
                model.what("problems")
            ))
            .into());
        }
        // A snapshot keeps the problems found when it was written.
        fixed_by_rows(model, "problems", &df)?;
        anyhow::Ok(df)
    };
    let run = |check: Check| async move {
        let by_keys = check.fallback.is_some();
        let df = match (plan(check.tables, by_keys).await, check.fallback) {
            (Ok(df), Some(_)) => {
                crate::fault::trace_note("problems checked over the snapshot's keys");
                df
            }
            (Ok(df), None) => df,
            (Err(_), Some(fallback)) => {
                crate::fault::trace_note(
                    "the problems query reads more than event_id: checked over every event's rows",
                );
                plan(fallback, false).await?
            }
            (Err(e), None) => return Err(e),
        };
        let only = async {
            match check.only {
                Some(df) => reported_pairs(&df.collect().await?).map(Some),
                None => Ok(None),
            }
        };
        let (rows, only) = tokio::join!(df.collect(), only);
        let mut found =
            to_problems(&rows.map_err(|e| model.run_error("running its problems", e))?)?;
        if let Some(only) = only? {
            found.retain(|p| only.contains(&(p.event_id.clone(), p.problem.clone())));
        }
        anyhow::Ok(found)
    };
    let found = futures::future::try_join_all(checks.into_iter().map(run)).await?;
    let mut out: Vec<Problem> = found.into_iter().flatten().collect();
    out.sort_by(|a, b| {
        (&a.event_id, &a.problem, &a.detail).cmp(&(&b.event_id, &b.problem, &b.detail))
    });
    out.dedup();
    Ok(out)
}

/// One row per event `problems` are about: its id (`_reported_id`) and
/// the names of its problems ([`REPORTED`]).
fn reported_batch(problems: &[Problem]) -> Result<RecordBatch> {
    let mut by_event: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for p in problems {
        by_event.entry(&p.event_id).or_default().insert(&p.problem);
    }
    let ids: datafusion::arrow::array::StringArray = by_event.keys().map(Some).collect();
    let names: datafusion::arrow::array::StringArray = by_event
        .values()
        .map(|names| serde_json::to_string(names).map(Some))
        .collect::<Result<_, _>>()?;
    Ok(RecordBatch::try_from_iter([
        ("_reported_id", Arc::new(ids) as _),
        (REPORTED, Arc::new(names) as _),
    ])?)
}

/// The `(event_id, problem)` pairs of a snapshot's problem events (see
/// [`REPORTED`]).
fn reported_pairs(batches: &[RecordBatch]) -> Result<std::collections::HashSet<(String, String)>> {
    let mut out = std::collections::HashSet::new();
    for b in batches {
        let (ids, problems) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            let names: Vec<String> = serde_json::from_str(problems.value(i))
                .with_context(|| format!("a snapshot's `{REPORTED}`: {}", problems.value(i)))?;
            out.extend(names.into_iter().map(|p| (ids.value(i).to_string(), p)));
        }
    }
    Ok(out)
}

/// `problems` rows: (problem, event_id, detail), any types cast to text.
fn to_problems(batches: &[RecordBatch]) -> Result<Vec<Problem>> {
    let mut out = Vec::new();
    for b in batches {
        let col = |i: usize| {
            datafusion::arrow::compute::cast(
                b.column(i),
                &datafusion::arrow::datatypes::DataType::Utf8,
            )
        };
        let (p, e, d) = (col(0)?, col(1)?, col(2)?);
        let (p, e, d) = (
            p.as_string::<i32>(),
            e.as_string::<i32>(),
            d.as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            out.push(Problem {
                problem: p.value(i).to_string(),
                event_id: e.value(i).to_string(),
                detail: if d.is_null(i) {
                    String::new()
                } else {
                    d.value(i).to_string()
                },
            });
        }
    }
    Ok(out)
}

/// Register a snapshot's files as `_snapshot`.
async fn register_snapshot(
    ctx: &SessionContext,
    lake: &Lake,
    state: &LakeState,
    model: &Model,
    as_of: &str,
) -> Result<()> {
    let p = state
        .tables
        .get(&model.table())
        .and_then(|t| t.get(as_of))
        .context("snapshot vanished")?;
    let file = p.files.keys().next().context("empty snapshot")?;
    register_files(ctx, "_snapshot", lake, file).await
}

/// Register the Parquet files in the directory of `file` (lake-relative)
/// as `name`.
async fn register_files(ctx: &SessionContext, name: &str, lake: &Lake, file: &str) -> Result<()> {
    let dir = lake.path(file);
    let dir = dir.parent().context("a lake file has no directory")?;
    let url = crate::engine::file_url(&std::fs::canonicalize(dir)?, true)?;
    register_url(ctx, name, &url).await
}

/// Register the Parquet files under `url` (a directory, local or in a
/// registered object store) as `name`, with the session's options.
async fn register_url(ctx: &SessionContext, name: &str, url: &str) -> Result<()> {
    register_url_with(ctx, name, url, |_| {}).await
}

/// [`register_url`], with `tune` applied to the session's Parquet options.
async fn register_url_with(
    ctx: &SessionContext,
    name: &str,
    url: &str,
    tune: impl FnOnce(&mut datafusion::config::ParquetOptions),
) -> Result<()> {
    let mut parquet = ctx.state().table_options().parquet.clone();
    tune(&mut parquet.global);
    let options = datafusion::datasource::listing::ListingOptions::new(Arc::new(
        datafusion::datasource::file_format::parquet::ParquetFormat::default()
            .with_options(parquet),
    ))
    .with_file_extension(".parquet");
    ctx.register_listing_table(name, url, options, None, None)
        .await?;
    Ok(())
}

/// Write `df` as one Parquet file in `dir` (created), with the session's
/// options; DataFusion writes the file even with no rows (it then says
/// there were none).
async fn write_file(df: DataFrame, dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    df.write_parquet(
        &crate::engine::file_url(&dir.join("part.parquet"), false)?,
        datafusion::dataframe::DataFrameWriteOptions::new().with_single_file_output(true),
        None,
    )
    .await?;
    Ok(())
}

/// Rows per row group of a snapshot's keys: a lookup decodes only the
/// groups whose min/max range holds an id it looks up.
const KEY_GROUP_ROWS: usize = 1024;

/// Write the `event_id`s of `df`, sorted, as one Parquet file in `dir`
/// (created) of [`KEY_GROUP_ROWS`]-row groups.
async fn write_keys(df: DataFrame, dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut options = derive::session_options(&df);
    options.global.max_row_group_size = KEY_GROUP_ROWS;
    df.select_columns(&["event_id"])?
        .sort(vec![col("event_id").sort(true, false)])?
        .write_parquet(
            &crate::engine::file_url(&dir.join("part.parquet"), false)?,
            datafusion::dataframe::DataFrameWriteOptions::new().with_single_file_output(true),
            Some(options),
        )
        .await?;
    Ok(())
}

/// `20240315T235959.999999Z`: a directory-safe RFC 3339 instant, the
/// snapshot's partition (`as_of=…`) and its key in the log.
fn as_of_dir(us: i64) -> String {
    format_micros(us).replace([':', '-'], "")
}

/// The instant of an [`as_of_dir`] key.
pub(crate) fn parse_as_of_dir(key: &str) -> Option<i64> {
    let (date, time) = key.split_once('T')?;
    if date.len() != 8 || time.len() < 7 || !key.is_ascii() {
        return None;
    }
    let text = format!(
        "{}-{}-{}T{}:{}:{}",
        &date[..4],
        &date[4..6],
        &date[6..],
        &time[..2],
        &time[2..4],
        &time[4..]
    );
    crate::time::parse_instant(&text).ok()
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotReport {
    pub command: &'static str,
    pub status: &'static str,
    pub model: String,
    pub as_of: String,
    /// The older snapshot it started from, if any.
    pub from_snapshot: Option<UsedSnapshot>,
    pub events_replayed: u64,
    pub rows: u64,
    /// What the model's `problems` query reports at `as_of` (the snapshot
    /// keeps these events, see [`problem_checks`]); `None` when a valid
    /// snapshot at that time existed and nothing was computed (`noop`).
    pub problems: Option<usize>,
    pub version: u64,
    pub elapsed_ms: u64,
}

/// Write the raw aggregate of `model` at `as_of` as a snapshot (one commit).
pub fn snapshot(
    lake: &Lake,
    model: &Model,
    as_of: i64,
    processing_time: i64,
    engine_opts: &EngineOptions,
) -> Result<SnapshotReport> {
    let started = Instant::now();
    let _busy = crate::fault::operation("snapshot");
    let _lock = lake.lock()?;
    let state = LakeState::load(lake)?;
    log::clean_orphans(lake, &state, &crate::ingest::table_dirs())?;
    let dirty = crate::pipeline::silver_dirty_dates(&state);
    if !dirty.is_empty() {
        bail!(
            "silver is not up to date for {} date(s) ({}): a snapshot must include every \
             event; run `evlake run` (or `evlake silver`) first",
            dirty.len(),
            dirty.join(", ")
        );
    }
    if !state.builds.contains_key(silver::EVENTS_TABLE) {
        bail!("silver has not been built: run `evlake run` (or `evlake silver`) first");
    }
    let all = BTreeMap::from([(model.name.clone(), model.clone())]);
    // One whose files are gone is invalid: written again, and not one to
    // start from (see [`Snapshot::on_disk`]).
    let existing = snapshots(lake, &state, &all);
    // Taking the same snapshot again changes nothing: it would hold the
    // same rows (it is valid, so no event at or before its time came
    // since, and neither SQL changed).
    if let Some(s) = existing.iter().find(|s| s.valid && s.as_of_us == as_of) {
        return Ok(SnapshotReport {
            command: "snapshot",
            status: "noop",
            model: model.name.clone(),
            as_of: s.as_of.clone(),
            from_snapshot: None,
            events_replayed: 0,
            rows: s.rows,
            problems: None,
            version: s.version,
            elapsed_ms: started.elapsed().as_millis() as u64,
        });
    }
    let from = existing
        .into_iter()
        .filter(|s| s.valid && s.as_of_us < as_of)
        .max_by_key(|s| s.as_of_us);
    let (staging, engine_opts) = derive::staging_with_spill(lake, "snapshot", engine_opts)?;
    let as_of_text = format_micros(as_of);
    let part_dir = format!("as_of={}", as_of_dir(as_of));
    let staged = staging.join(model.table());
    let (checked, context) = model.problem_tables();
    let staged_problems = |t: &str| staging.join(format!("problems-{t}"));
    let staged_keys = |t: &str| staging.join(format!("keys-{t}"));
    let (replayed, problems) = crate::interrupt::block_on(async {
        let engine = Engine::new(&engine_opts)?;
        engine.read_committed(lake, &state)?;
        let ctx = engine.bare()?;
        if let Some(s) = &from {
            register_snapshot(&ctx, lake, &state, model, &s.key).await?;
        }
        let window = Window {
            after: from.as_ref().map(|s| s.as_of_us),
            up_to: as_of,
            known_at: None,
        };
        let df = combined(&ctx, lake, model, window, from.is_some(), true).await?;
        let replayed = count_rows(&ctx, &model.replayed(), "").await?;
        write_file(df, &staged.join(&part_dir))
            .await
            .map_err(|e| model.run_error("writing the snapshot", e))?;
        // Every problem at as_of, checked in full, and the rows of the
        // events they are about: answers from this snapshot re-check only
        // those against the events after it.
        let every = Query {
            as_of,
            known_at: None,
            key: None,
            use_snapshots: false,
        };
        let checks = problem_checks(&ctx, lake, &state, model, &every, None).await?;
        let problems = run_checks(&engine, model, None, checks).await?;
        let ids: Vec<&str> = problems.iter().map(|p| p.event_id.as_str()).collect();
        // Each event's rows, with the problems it had (the answers
        // re-check it for those alone).
        let reported = ctx.read_batch(reported_batch(&problems)?)?;
        for t in &checked {
            let all = ctx.table(format!("_all_{t}")).await?;
            let id_type = all
                .schema()
                .field_with_unqualified_name("event_id")?
                .data_type()
                .clone();
            let reported = reported.clone().select(vec![
                cast(col("_reported_id"), id_type).alias("_reported_id"),
                col(REPORTED),
            ])?;
            let rows = all
                .filter(col("event_id").in_list(
                    ids.iter().map(|id| datafusion::prelude::lit(*id)).collect(),
                    false,
                ))?
                .join(
                    reported,
                    JoinType::Inner,
                    &["event_id"],
                    &["_reported_id"],
                    None,
                )?
                .drop_columns(&["_reported_id"])?;
            write_file(rows, &staged_problems(t).join(&part_dir))
                .await
                .with_context(|| format!("writing the snapshot's problem events ({t})"))?;
        }
        // The ids of every event the problems consult, for answers from
        // this snapshot (see `problem_checks`).
        for t in &context {
            write_keys(
                ctx.table(format!("_all_{t}")).await?,
                &staged_keys(t).join(&part_dir),
            )
            .await
            .with_context(|| format!("writing the snapshot's event ids ({t})"))?;
        }
        anyhow::Ok((replayed, Some(problems.len())))
    })?;
    crate::fault::point("staged")?;
    let table = model.table();
    let mut outputs = vec![Output {
        table: table.clone(),
        dir: format!("{STATE_DIR}/{}", model.name),
        staged,
        column: "as_of",
        partitions: BTreeSet::from([as_of_dir(as_of)]),
        appended: BTreeSet::new(),
    }];
    let kept = checked
        .iter()
        .map(|t| {
            (
                model.problems_table(t),
                model.problems_dir(t),
                staged_problems(t),
            )
        })
        .chain(
            context
                .iter()
                .map(|t| (model.keys_table(t), model.keys_dir(t), staged_keys(t))),
        );
    for (table, dir, staged) in kept {
        outputs.push(Output {
            table,
            dir,
            staged,
            column: "as_of",
            partitions: BTreeSet::from([as_of_dir(as_of)]),
            appended: BTreeSet::new(),
        });
    }
    let mut commit = Commit::next(&state, "snapshot", processing_time);
    commit.settings.insert("model".into(), model.name.clone());
    commit.settings.insert("as_of".into(), as_of_text.clone());
    let written = derive::replace_partitions(
        lake,
        &state,
        &mut commit,
        &outputs,
        &derive::run_id("snapshot", &state),
    )?;
    commit.builds.push(log::Build {
        table: table.clone(),
        partition: as_of_dir(as_of),
        inputs: BTreeMap::new(),
        fingerprint: model.built_fingerprint(&state),
    });
    derive::finish_commit(lake, &commit)?;
    let rows = written
        .iter()
        .find(|w| w.table == table)
        .map_or(0, |w| w.rows);
    Ok(SnapshotReport {
        command: "snapshot",
        status: "committed",
        model: model.name.clone(),
        as_of: as_of_text,
        from_snapshot: from.map(|s| UsedSnapshot {
            as_of: s.as_of,
            version: s.version,
            rows: s.rows,
        }),
        events_replayed: replayed,
        rows,
        problems,
        version: commit.version,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// A snapshot `run` removed (beyond `[state] snapshot_keep`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RemovedSnapshot {
    pub model: String,
    pub as_of: String,
}

/// Remove the snapshots of model `model` at `as_ofs` in one commit: every
/// file of each (its state rows, and the rows and keys its problems keep).
/// Readers then start from another snapshot or replay; one that was
/// reading them reads the lake again (see `committed::read_retrying`).
/// Returns those that were there.
pub fn remove_snapshots(
    lake: &Lake,
    model: &str,
    as_ofs: &BTreeSet<i64>,
    processing_time: i64,
) -> Result<Vec<RemovedSnapshot>> {
    let _busy = crate::fault::operation("snapshot-remove");
    let _lock = lake.lock()?;
    let state = LakeState::load(lake)?;
    let mut commit = Commit::next(&state, "snapshot-remove", processing_time);
    commit.settings.insert("model".into(), model.to_string());
    let (files, removed) = snapshot_files(&state, |m, as_of| m == model && as_ofs.contains(&as_of));
    commit.remove = files;
    if commit.remove.is_empty() {
        return Ok(removed);
    }
    // (It removes their emptied partition directories too.)
    derive::finish_commit(lake, &commit)?;
    Ok(removed)
}

/// Every file of the snapshots (of any model, loaded or not) that `pick`
/// (model, as-of µs) chooses: its state rows, and the rows and keys its
/// problems keep; and the snapshots that had rows.
pub fn snapshot_files(
    state: &LakeState,
    pick: impl Fn(&str, i64) -> bool,
) -> (Vec<log::FileAction>, Vec<RemovedSnapshot>) {
    let (mut files, mut removed) = (Vec::new(), Vec::new());
    for (name, partitions) in &state.tables {
        // A snapshot's problems' and keys' tables are named
        // `{table}.problems.*` and `{table}.keys.*` (a model name has no
        // dot).
        let Some(rest) = name.strip_prefix(&snapshot_table("")) else {
            continue;
        };
        let (model, main) = match rest.split_once('.') {
            Some((m, _)) => (m, false),
            None => (rest, true),
        };
        for (key, p) in partitions {
            let Some(as_of) = parse_as_of_dir(key).filter(|t| pick(model, *t)) else {
                continue;
            };
            if main && !p.files.is_empty() {
                removed.push(RemovedSnapshot {
                    model: model.to_string(),
                    as_of: format_micros(as_of),
                });
            }
            files.extend(p.files.values().cloned());
        }
    }
    (files, removed)
}

/// The audit trail of one entity: the model's `history` query over every
/// event up to `as_of` (known at `known_at`).
pub fn history(
    lake: &Lake,
    state: &LakeState,
    model: &Model,
    key: &str,
    as_of: i64,
    known_at: Option<i64>,
    engine_opts: &EngineOptions,
) -> Result<Vec<RecordBatch>> {
    let Some(sql) = &model.history else {
        bail!(Failure::Usage(format!(
            "model `{}` has no `-- name: history` query",
            model.name
        )));
    };
    let rt = crate::engine::runtime()?;
    rt.block_on(async {
        let engine = Engine::new(engine_opts)?;
        engine.read_committed(lake, state)?;
        let ctx = engine.bare()?;
        // One entity's events out of every date's: its key filter is
        // evaluated while decoding, so the other columns (`properties`
        // too) are decoded only for its rows (~30% of `history` on the 5M
        // bench lake, for each shipped model).
        engine::push_filters_into_scans(&ctx);
        let window = Window {
            after: None,
            up_to: as_of,
            known_at,
        };
        register_window(&ctx, (model, lake), &reads(&[sql]), window, "").await?;
        let trail = with_key(&ctx, (model, "history", sql), Some(key)).await?;
        collect_with_schema(trail)
            .await
            .map_err(|e| model.run_error("running its history", e))
    })
}

/// `err` about `what` a model's queries were doing: for a model of the
/// lake's own (`own`), see [`engine::user_sql_error`].
fn running_error(own: bool, what: String, err: impl Into<anyhow::Error>) -> anyhow::Error {
    let err = err.into();
    let what = if crate::error::is_decimal_overflow(&err) {
        format!(
            "{what} (an entity's amounts sum past what its decimal column holds, \
             9999999999999999.99 for a Decimal(18,2) balance: `--key` answers every other \
             entity, and `evlake history KEY` lists an entity's events)"
        )
    } else {
        what
    };
    if own {
        engine::user_sql_error(err, what)
    } else {
        err.context(what)
    }
}

/// `df`'s rows; none as one empty batch, which keeps the columns (a CSV
/// of no rows still has its header).
async fn collect_with_schema(df: DataFrame) -> Result<Vec<RecordBatch>> {
    let schema = Arc::new(df.schema().as_arrow().clone());
    let rows = df.collect().await?;
    Ok(if rows.is_empty() {
        vec![RecordBatch::new_empty(schema)]
    } else {
        rows
    })
}

/// The as-of time of a daily snapshot policy: the end of the last day the
/// watermark has closed.
pub fn last_closed_day_end(state: &LakeState) -> Option<i64> {
    closed_day_end(state.watermark)
}

/// The end of the last day a watermark at `watermark` closed.
pub fn closed_day_end(watermark: Option<i64>) -> Option<i64> {
    let day = watermark?.div_euclid(MICROS_PER_DAY);
    Some(day * MICROS_PER_DAY - 1)
}

/// Used by `status`: every snapshot of every model (those of a model whose
/// file does not load, invalid), and the models that do not load.
pub fn all_snapshots(lake: &Lake, state: &LakeState) -> Result<(Vec<Snapshot>, Vec<BrokenModel>)> {
    let models = models(lake)?;
    let mut out = snapshots(lake, state, &models.ok);
    for name in models.broken.keys() {
        for (key, p) in state.partitions(&snapshot_table(name)) {
            let Some(as_of_us) = parse_as_of_dir(key).filter(|_| !p.files.is_empty()) else {
                continue;
            };
            out.push(Snapshot {
                model: name.clone(),
                as_of: format_micros(as_of_us),
                as_of_us,
                key: key.clone(),
                version: p.version,
                rows: p.rows(),
                valid: false,
                invalid_because: Some("its model's file does not load".to_string()),
            });
        }
    }
    Ok((out, models.broken_list()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_named_twice_is_refused_naming_both_lines() {
        let text = "-- name: delta\nSELECT 1 AS n;\n-- name: combine\nSELECT n FROM partials;\n\
                    -- name: present\nSELECT n FROM state;\n-- name: delta\nSELECT 2 AS n;\n";
        let e = Model::parse("twice", "models/twice.sql", text).unwrap_err();
        assert!(
            e.to_string()
                .contains("`-- name: delta` on line 1 and again on line 7"),
            "{e}"
        );
        assert_eq!(crate::error::exit_code(&e), crate::error::EXIT_USAGE);
    }

    /// A name line is read in any case and spacing; a name no query has
    /// is refused (its query would never run), and a missing query says
    /// how queries are named.
    #[test]
    fn name_lines_are_read_loosely_and_checked() {
        let text = "-- Name: Visits per user\n-- by day\n\n\
                    --Name:delta\nSELECT 1 AS n;\n--  NAME : combine\nSELECT n FROM partials;\n\
                    -- name: present\nSELECT n FROM state;\n-- names: are not lines\n";
        let m = Model::parse("loose", "models/loose.sql", text).unwrap();
        assert_eq!(
            (m.delta.as_str(), m.combine.as_str()),
            ("SELECT 1 AS n", "SELECT n FROM partials")
        );
        let e = Model::parse(
            "typo",
            "models/typo.sql",
            &format!("{text}-- name: problem\nSELECT 1;\n"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "model `typo` (models/typo.sql): `-- name: problem` on line 11 names no query a model \
             has (delta, combine, present, history, problems)"
        );
        let e = Model::parse("bare", "models/bare.sql", "-- delta\nSELECT 1 AS n;\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "model `bare` (models/bare.sql) has no `-- name: delta` query (each of a model's \
             queries follows a line `-- name: NAME`: delta, combine and present, and optionally \
             history and problems; sql/state/balances.sql shows one)"
        );
        assert_eq!(name_line("  -- name:   history "), Some("history"));
        assert_eq!(
            name_line("-- A state model is four queries, each after a `-- name:` line:"),
            None
        );
        assert_eq!(name_line("SELECT 1 -- name: delta"), None);
    }

    #[test]
    fn only_the_queries_a_snapshot_is_built_from_decide_its_fingerprint() {
        let text = include_str!("../sql/state/balances.sql");
        let fp = |t: &str| {
            Model::parse("balances", "test", t)
                .unwrap()
                .fingerprint("silver")
        };
        let edit = |from: &str, to: &str| {
            assert!(text.contains(from), "{from}");
            fp(&text.replacen(from, to, 1))
        };
        let base = fp(text);
        // Comments, `present` and `history` are read by every answer.
        assert_eq!(fp(&format!("-- a note\n{text}")), base);
        assert_eq!(
            edit("ORDER BY account_id;", "ORDER BY account_id DESC;"),
            base
        );
        assert_eq!(
            edit("WHERE l.account_id = $1", "WHERE $1 = l.account_id"),
            base
        );
        // What a snapshot holds changes with these.
        assert_ne!(
            edit("SUM(amount) AS balance", "SUM(-amount) AS balance"),
            base
        );
        assert_ne!(
            edit("SUM(balance) AS balance", "MAX(balance) AS balance"),
            base
        );
        assert_ne!(edit("'correction of an unknown event'", "'x'"), base);
        assert_ne!(
            Model::parse("balances", "test", text)
                .unwrap()
                .fingerprint("other silver"),
            base
        );
    }

    #[test]
    fn a_query_error_is_placed_in_the_model_file() {
        let text = "-- counts\n-- name: delta\nSELECT user_id, COUNT(*) AS n\n\
                    FROM events GROUP BY user_id;\n-- name: combine\n\n  \
                    SELECT user_id SUM(n) AS n FROM partials GROUP BY user_id;\n\
                    -- name: present\nSELECT *\nFROM state WHERE x = (;\n";
        let m = Model::parse("counts", "models/counts.sql", text).unwrap();
        assert_eq!(m.starts["delta"], (3, 1));
        assert_eq!(m.starts["combine"], (7, 3));
        assert_eq!(m.starts["present"], (9, 1));
        let err = |part: &str, sql: &str| {
            let ctx = SessionContext::new();
            let e = futures::executor::block_on(ctx.sql(sql)).unwrap_err();
            let e = m.sql_error(part, e);
            assert!(
                matches!(e.downcast_ref::<Failure>(), Some(Failure::Usage(_))),
                "{e:#}"
            );
            e.to_string()
        };
        // sqlparser counts from the query's own first character: the
        // first line's column moves by the indent, later lines' do not.
        let e = err("combine", &m.combine);
        assert!(
            e.starts_with("model `counts`: combine (models/counts.sql:7): "),
            "{e}"
        );
        assert!(e.contains("Line: 1, Column: 19"), "{e}");
        assert!(e.ends_with(", at models/counts.sql:7:21"), "{e}");
        let e = err("present", "SELECT *\nFROM state WHERE x = (SELECT;");
        assert!(e.ends_with(", at models/counts.sql:10:29"), "{e}");
        // A built-in model has no file to point into.
        let b = Model::parse("counts", "built-in", text).unwrap();
        let ctx = SessionContext::new();
        let e = futures::executor::block_on(ctx.sql(&b.combine)).unwrap_err();
        let e = b.sql_error("combine", e).to_string();
        assert!(e.starts_with("model `counts`: combine: "), "{e}");
        assert!(!e.contains(", at "), "{e}");
        assert_eq!(position("x at Line: 12, Column: 7\")"), Some((12, 7)));
        assert_eq!(position("no position"), None);
        // Running out of input has no position of sqlparser's: the end
        // of the query stands for it.
        let e = err("present", &m.present);
        assert!(e.contains("found: EOF"), "{e}");
        assert!(e.ends_with(", at models/counts.sql:10:23"), "{e}");
        let cut = Model::parse(
            "cut",
            "models/cut.sql",
            "-- name: delta\n  SELECT a FROM events GROUP BY\n\n-- name: combine\nSELECT 1\n\
             -- name: present\nSELECT 1\n",
        )
        .unwrap();
        let ctx = SessionContext::new();
        let e = futures::executor::block_on(ctx.sql(&cut.delta)).unwrap_err();
        let e = cut.sql_error("delta", e).to_string();
        assert!(e.ends_with(", at models/cut.sql:2:32"), "{e}");
        assert_eq!(end_if_eof("found: EOF", "a\n  bc  \n\n"), Some((2, 5)));
        assert_eq!(end_if_eof("found: x", "a"), None);
    }

    #[test]
    fn the_tables_a_query_reads_are_its_relations_not_its_words() {
        let read = |sql: &str| tables_read(sql).into_iter().collect::<Vec<_>>();
        // Aliases, columns and CTEs of a table's name are not reads of it;
        // a subquery's table is.
        assert_eq!(
            read(
                "WITH sessions AS (SELECT user_id FROM Events) \
                 SELECT s.user_id, COUNT(*) AS purchases, l.signups FROM sessions s \
                 JOIN (SELECT user_id, 1 AS signups FROM ledger_all) l USING (user_id) \
                 WHERE $1 IS NULL GROUP BY 1, 3 -- FROM carts"
            ),
            ["events", "ledger_all"]
        );
        // A query that does not parse: its words (running it says why).
        assert_eq!(
            read("SELEC x FROM ledger"),
            ["from", "ledger", "selec", "x"]
        );
        let model = |delta: &str, present: &str, history: &str| {
            Model::parse(
                "m",
                "test",
                &format!(
                    "-- name: delta\n{delta}\n-- name: combine\nSELECT * FROM partials\n\
                     -- name: present\n{present}\n-- name: history\n{history}\n"
                ),
            )
        };
        let m = model(
            "SELECT user_id, COUNT(*) AS searches FROM events GROUP BY 1",
            "SELECT s.*, p.n FROM state s LEFT JOIN (SELECT user_id, COUNT(*) AS n FROM purchases GROUP BY 1) p USING (user_id)",
            "SELECT * FROM ledger WHERE account_id = $1",
        )
        .unwrap();
        assert_eq!(m.replayed(), ["events"]);
        assert_eq!(m.present_reads(), ["purchases"]);
        for (delta, history) in [
            (
                "SELECT user_id, COUNT(*) AS n FROM sessions GROUP BY 1",
                "SELECT 1",
            ),
            (
                "SELECT 1 AS sessions",
                "SELECT * FROM sessions WHERE user_id = $1",
            ),
        ] {
            let e = model(delta, "SELECT * FROM state", history).unwrap_err();
            assert!(e.to_string().contains("reads `sessions`"), "{e}");
        }
        model("SELECT 1 AS sessions", "SELECT * FROM state", "SELECT 1").unwrap();
        // A query that does not parse is reported when it runs, with
        // DataFusion's message, not as a read of `sessions`.
        model("SELEC 1 FROM sessions", "SELECT * FROM state", "SELECT 1").unwrap();
    }

    #[test]
    fn snapshot_keys_round_trip() {
        for t in [
            "2024-03-15T23:59:59.999999Z",
            "2024-03-15T00:00:00Z",
            "1969-12-31T12:00:00.5Z",
        ] {
            let us = crate::time::parse_instant(t).unwrap();
            assert_eq!(parse_as_of_dir(&as_of_dir(us)), Some(us), "{t}");
        }
        assert_eq!(
            as_of_dir(parse_time("2024-03-15").unwrap()),
            "20240315T235959.999999Z"
        );
        assert_eq!(parse_as_of_dir("garbage"), None);
    }
}
