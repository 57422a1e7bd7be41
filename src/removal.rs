//! Taking rows out of bronze, as one commit: what `retract` (an input's
//! rows, by `batch_id`) and `erase` (a user's rows, by `user_id`) share.
//!
//! The rows are found by one bronze column's values, wherever `reconcile`
//! or `compact` moved them: in `bronze_events`, in the side output
//! (`bronze_late`), and their lines in `quarantine`. A file holding only
//! chosen rows is removed; one holding others' too is rewritten without
//! them (the others' rows stay exactly as they were, lineage included).
//! The files are staged, then published, then committed: a crash at any
//! step leaves the old files or the new ones, never both committed. The
//! commit is refused unless the rows kept plus the rows taken out are the
//! rows the replaced files held.
//!
//! Such a commit ([`removes_rows`]) makes its dates dirty (their
//! partitions lost rows), invalidates the snapshots at or after the
//! earliest event of the files it replaced, marks the id index stale, and
//! carries the id-conflict counts of the dates it changed, counted again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::Serialize;

use crate::bronze::{self, col};
use crate::fault;
use crate::ingest::{QUARANTINE_DIR, QUARANTINE_TABLE, write};
use crate::lake::{self, Lake};
use crate::log::{BatchRecord, Commit, FileAction, LakeState};
use crate::time;

/// A row removal's start: the lake's write lock, its state, and the
/// orphans removed (none in a dry run, which changes nothing).
pub fn begin(lake: &Lake, dry_run: bool) -> Result<(lake::WriteLock, LakeState, Vec<String>)> {
    let lock = lake.lock()?;
    let state = LakeState::load(lake)?;
    let orphans = if dry_run {
        Vec::new()
    } else {
        crate::log::clean_orphans(lake, &state, &crate::ingest::table_dirs())?
    };
    Ok((lock, state, orphans))
}

/// Whether commits of `operation` take rows out of bronze (see the
/// module's doc): `retract` and `erase`.
pub fn removes_rows(operation: &str) -> bool {
    operation == crate::retract::OPERATION || operation == crate::erase::OPERATION
}

/// Which rows to take out: those whose bronze column `column` has one of
/// `values`, and the quarantine lines that are theirs.
pub struct Selection {
    column: usize,
    values: HashSet<String>,
    quarantine: QuarantineMatch,
}

/// How a quarantine line is told to be chosen.
enum QuarantineMatch {
    /// By its `batch_id`, or, in a line written before lines carried one,
    /// by its source: each source's first batch (the ids are the
    /// selection's values).
    Batches(HashMap<String, String>),
    /// By the user its raw line names (see [`Selection::users`]): the ids
    /// in order, and a matcher of their JSON string forms (pattern `i` is
    /// id `i`'s), so a line is matched in one pass however many ids.
    Users(Vec<String>, aho_corasick::AhoCorasick),
}

impl Selection {
    /// The rows of input batches `batches` (by `batch_id`).
    pub fn batches(batches: &[(&String, &BatchRecord)]) -> Selection {
        let mut sources = HashMap::new();
        for (_, b) in batches {
            sources
                .entry(b.source.clone())
                .or_insert_with(|| b.batch_id.clone());
        }
        Selection {
            column: col::BATCH_ID,
            values: batches.iter().map(|(_, b)| b.batch_id.clone()).collect(),
            quarantine: QuarantineMatch::Batches(sources),
        }
    }

    /// The rows of users `ids` (by `user_id`). A quarantine line is a
    /// user's when its raw line is a JSON object whose `user_id` or
    /// `actor_id` (which ingest reads as one) is the id, as a string or a
    /// number; a raw line that is not such an object (broken JSON, bytes
    /// that are not UTF-8) is the user's when it holds the id as a JSON
    /// string (`"u42"`) anywhere.
    pub fn users(ids: &BTreeSet<String>) -> Result<Selection> {
        let tokens = ids
            .iter()
            .map(|id| serde_json::Value::from(id.as_str()).to_string());
        let matcher = aho_corasick::AhoCorasick::new(tokens)
            .context("too many user ids to search quarantined lines for")?;
        Ok(Selection {
            column: col::USER_ID,
            values: ids.iter().cloned().collect(),
            quarantine: QuarantineMatch::Users(ids.iter().cloned().collect(), matcher),
        })
    }

    /// The bronze column the rows are chosen by.
    pub fn name(&self) -> String {
        bronze::schema().field(self.column).name().clone()
    }

    /// Its values chosen.
    pub fn values(&self) -> &HashSet<String> {
        &self.values
    }

    /// The chosen value quarantine line `line` is of, if any.
    fn quarantine_value(&self, line: &str) -> Option<&str> {
        #[derive(serde::Deserialize)]
        struct Line {
            #[serde(default)]
            batch_id: Option<String>,
            #[serde(default)]
            source_file: Option<String>,
            #[serde(default)]
            raw: Option<String>,
            #[serde(default)]
            raw_base64: Option<String>,
        }
        let l = serde_json::from_str::<Line>(line).ok()?;
        match &self.quarantine {
            QuarantineMatch::Batches(sources) => match (&l.batch_id, &l.source_file) {
                (Some(b), _) => self.values.get(b).map(String::as_str),
                (None, Some(source)) => sources.get(source).map(String::as_str),
                (None, None) => None,
            },
            QuarantineMatch::Users(ids, tokens) => {
                let raw: Vec<u8> = match (l.raw, l.raw_base64) {
                    (Some(raw), _) => raw.into_bytes(),
                    (None, Some(b64)) => {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .unwrap_or_default()
                    }
                    (None, None) => return None,
                };
                let named: Option<Vec<String>> = serde_json::from_slice::<serde_json::Value>(&raw)
                    .ok()
                    .and_then(|v| {
                        let o = v.as_object()?;
                        let ids: Vec<String> = ["user_id", "actor_id"]
                            .iter()
                            .filter_map(|k| o.get(*k))
                            .map(|id| match id {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            })
                            .collect();
                        (!ids.is_empty()).then_some(ids)
                    });
                // (The first id in order, where a line names two.)
                match named {
                    Some(named) => named
                        .iter()
                        .filter_map(|n| self.values.get(n))
                        .min()
                        .map(String::as_str),
                    None => tokens
                        .find_overlapping_iter(&raw)
                        .map(|m| m.pattern().as_usize())
                        .min()
                        .map(|i| ids[i].as_str()),
                }
            }
        }
    }
}

/// One file holding chosen rows.
pub struct Hit<'a> {
    pub file: &'a FileAction,
    /// `bronze_events`, `bronze_late` or `quarantine`.
    pub table: &'a str,
    /// Its chosen rows, by value.
    pub by_value: BTreeMap<String, u64>,
    /// Their sum.
    pub rows: u64,
}

impl Hit<'_> {
    fn new<'a>(file: &'a FileAction, table: &'a str, by_value: BTreeMap<String, u64>) -> Hit<'a> {
        let rows = by_value.values().sum();
        Hit {
            file,
            table,
            by_value,
            rows,
        }
    }
}

/// The rows of `value` in `table` that `hits` hold.
pub fn rows_of(hits: &[Hit], table: &str, value: &str) -> u64 {
    hits.iter()
        .filter(|h| h.table == table)
        .filter_map(|h| h.by_value.get(value))
        .sum()
}

/// A `bronze_events` date that loses rows, with how many.
#[derive(Debug, Clone, Serialize)]
pub struct DateReport {
    pub event_date: String,
    /// Rows taken out of `bronze_events` of the date.
    pub rows: u64,
}

/// The `bronze_events` dates `hits` take rows out of.
pub fn dates(hits: &[Hit]) -> Vec<DateReport> {
    let mut by_date: BTreeMap<String, u64> = BTreeMap::new();
    for h in hits.iter().filter(|h| h.table == bronze::TABLE) {
        *by_date.entry(h.file.partition.clone()).or_default() += h.rows;
    }
    by_date
        .into_iter()
        .map(|(event_date, rows)| DateReport { event_date, rows })
        .collect()
}

/// Every live bronze and side-output file with chosen rows (most are
/// ruled out by their row groups' statistics of the column), and those of
/// quarantine files `quarantine` with chosen lines.
pub fn find<'a>(
    lake: &Lake,
    state: &'a LakeState,
    sel: &Selection,
    quarantine: Vec<&'a FileAction>,
) -> Result<Vec<Hit<'a>>> {
    let data: Vec<(&str, &FileAction)> = [bronze::TABLE, bronze::LATE_TABLE]
        .into_iter()
        .flat_map(|t| {
            state
                .partitions(t)
                .flat_map(move |(_, p)| p.files.values().map(move |f| (t, f)))
        })
        .collect();
    let mut hits: Vec<Hit> = data
        .par_iter()
        .map(|(table, f)| {
            let counts = bronze::count_rows_by(&lake.path(&f.path), &sel.name(), &sel.values)?;
            Ok(Hit::new(f, table, counts))
        })
        .collect::<Result<Vec<_>>>()?;
    let lines: Vec<Hit> = quarantine
        .par_iter()
        .map(|f| {
            Ok(Hit::new(
                f,
                QUARANTINE_TABLE,
                quarantine_lines(lake, f, sel)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    hits.extend(lines);
    hits.retain(|h| h.rows > 0);
    Ok(hits)
}

/// Stage the files `hits` become without the chosen rows, publish them,
/// and fill in `commit`: the files it adds and removes, and the id
/// conflicts and ids on other dates counted again. Refuses when the rows
/// kept plus the rows taken out are not the rows the removed files held.
/// `op` names the staging directory and the run.
pub fn rewrite(
    lake: &Lake,
    state: &LakeState,
    sel: &Selection,
    hits: &[Hit],
    op: &str,
    commit: &mut Commit,
) -> Result<()> {
    let staging = lake::Staging::create(lake, op)?;
    let run_id = crate::derive::run_id(op, state);
    let namer = write::FileNamer::new(run_id.clone(), staging.to_path_buf());
    // Each file on its own (two or more at once: reading one decodes on
    // a single core), results in the hits' order.
    let rewritten: Vec<Rewritten> = hits
        .par_iter()
        .enumerate()
        .filter(|(_, h)| h.rows < h.file.rows)
        .map(|(n, h)| {
            if h.table == QUARANTINE_TABLE {
                let rel = format!("{QUARANTINE_DIR}/{run_id}-{n:05}.jsonl");
                let to = staging.join(format!("quarantine-{n:05}.jsonl"));
                let (kept, bytes) = rewrite_quarantine(lake, h.file, sel, &to)?;
                let action = FileAction::plain(QUARANTINE_TABLE, "", rel, kept, bytes);
                return Ok(Rewritten::Quarantine(action, to));
            }
            let day = time::parse_date32(&h.file.partition).map_err(anyhow::Error::msg)?;
            let mut buffer = write::Buffer::default();
            let side = h.table == bronze::LATE_TABLE;
            let path = lake.path(&h.file.path);
            let dropped = buffer.push_bronze_rows(&path, day, side, (sel.column, &sel.values))?;
            anyhow::ensure!(
                dropped == h.rows,
                "`{}` changed while being read ({} rows to take out, then {dropped})",
                h.file.path,
                h.rows
            );
            Ok(Rewritten::Bronze(write::flush(buffer, &namer)?))
        })
        .collect::<Result<_>>()?;
    let mut staged = Vec::new();
    let mut adds: Vec<FileAction> = Vec::new();
    let mut moves = Vec::new();
    for r in rewritten {
        match r {
            Rewritten::Quarantine(action, to) => {
                moves.push((to, lake.path(&action.path)));
                adds.push(action);
            }
            Rewritten::Bronze(files) => staged.extend(files),
        }
    }
    namer.number(&mut staged);
    let after = files_after(lake, state, hits, &staged);
    commit.id_conflicts = recount_conflicts(hits, &after)?;
    commit.ids_on_other_dates = recount_other_dates(state, &after)?;
    fault::point("staged")?;
    moves.extend(staged.iter().map(|f| f.publish_move(lake)));
    lake::publish(lake, &moves)?;
    adds.extend(staged.iter().map(write::StagedFile::to_action));
    commit.format = crate::log::ROW_REMOVAL_FORMAT;
    commit.add = adds;
    commit.remove = hits.iter().map(|h| h.file.clone()).collect();
    // Every row is accounted for: what the rewritten files keep plus what
    // is taken out is what the removed files held.
    let rows = |v: &[FileAction]| v.iter().map(|f| f.rows).sum::<u64>();
    let lost: u64 = hits.iter().map(|h| h.rows).sum();
    anyhow::ensure!(
        rows(&commit.add) + lost == rows(&commit.remove),
        "internal error: {op} kept {} rows and took {lost} of {}",
        rows(&commit.add),
        rows(&commit.remove)
    );
    Ok(())
}

/// A file [`rewrite`] wrote without the chosen rows: a quarantine file
/// (its action, and where it is staged) or a bronze one.
enum Rewritten {
    Quarantine(FileAction, PathBuf),
    Bronze(Vec<write::StagedFile>),
}

/// Write Parquet file `src` to `dst` without the rows whose top-level
/// string column `name` has a value `drop` is true of (zstd level 1, no
/// dictionary, as silver writes; the schema, its metadata and the declared sort order
/// kept; fsynced). Returns the rows kept and the bytes written.
pub fn filter_file(
    src: &Path,
    name: &str,
    drop: impl Fn(&str) -> bool,
    dst: &Path,
) -> Result<(u64, u64)> {
    use datafusion::arrow::array::{AsArray, BooleanArray};
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::basic::{Compression, ZstdLevel};
    use datafusion::parquet::file::properties::WriterProperties;
    crate::interrupt::check()?;
    let builder = bronze::open(src)?;
    let schema = builder.schema().clone();
    let column = schema
        .index_of(name)
        .with_context(|| format!("`{}` has no {name} column", src.display()))?;
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .set_dictionary_enabled(false);
    if let Some(sorting) = builder
        .metadata()
        .row_groups()
        .first()
        .and_then(|rg| rg.sorting_columns())
    {
        props = props.set_sorting_columns(Some(sorting.clone()));
    }
    let out = std::fs::File::create(dst)
        .with_context(|| format!("failed to create `{}`", dst.display()))?;
    let mut writer = ArrowWriter::try_new(out, schema, Some(props.build()))?;
    let mut kept = 0;
    for batch in builder.build()? {
        let batch = batch.with_context(|| format!("failed to read `{}`", src.display()))?;
        let keep: BooleanArray = batch
            .column(column)
            .as_string::<i32>()
            .iter()
            .map(|v| Some(!v.is_some_and(&drop)))
            .collect();
        let batch = datafusion::arrow::compute::filter_record_batch(&batch, &keep)?;
        kept += batch.num_rows() as u64;
        if batch.num_rows() > 0 {
            writer.write(&batch)?;
        }
    }
    let out = writer.into_inner()?;
    out.sync_all()
        .with_context(|| format!("failed to write `{}`", dst.display()))?;
    let bytes = out.metadata()?.len();
    Ok((kept, bytes))
}

/// The earliest event time (µs) of the `bronze_events` files `hits`
/// replace: a snapshot at or after it becomes invalid (see
/// [`crate::log::LakeState`]'s `bronze_min_event_times`).
pub fn earliest_event(hits: &[Hit]) -> Option<i64> {
    hits.iter()
        .filter(|h| h.table == bronze::TABLE)
        .filter_map(|h| h.file.min_event_time.as_deref())
        .filter_map(|t| time::parse_instant(t).ok())
        .min()
}

/// The id conflicts of every date whose bronze or side-output rows the
/// removal changes, counted again from its rows after it (the rewritten
/// files from staging): per `event_id`, its distinct contents less one,
/// which is what ingest's counts add up to. Such a commit's counts replace
/// the state's for the dates it lists (0 included).
fn recount_conflicts(hits: &[Hit], files: &DateFiles) -> Result<BTreeMap<String, u64>> {
    let dates: BTreeSet<&String> = hits
        .iter()
        .filter(|h| h.table != QUARANTINE_TABLE)
        .map(|h| &h.file.partition)
        .collect();
    dates
        .into_par_iter()
        .map(|date| {
            let mut keys = Vec::new();
            for p in files.get(date).map_or(&[][..], |v| v) {
                keys.extend(bronze::read_content_hashes(p)?);
            }
            keys.sort_unstable();
            keys.dedup();
            let versions = keys.len() as u64;
            keys.dedup_by_key(|(id, _)| *id);
            Ok((date.clone(), versions - keys.len() as u64))
        })
        .collect()
}

/// Files by date (see [`files_after`]).
type DateFiles = BTreeMap<String, Vec<PathBuf>>;

/// Every bronze and side-output file the lake has after the removal, by
/// date: the live ones it does not remove, and the rewritten ones (from
/// staging).
fn files_after(
    lake: &Lake,
    state: &LakeState,
    hits: &[Hit],
    staged: &[write::StagedFile],
) -> DateFiles {
    let removed: HashSet<&str> = hits.iter().map(|h| h.file.path.as_str()).collect();
    let mut out = DateFiles::new();
    for t in [bronze::TABLE, bronze::LATE_TABLE] {
        for (date, p) in state.partitions(t) {
            for f in p.files.keys().filter(|f| !removed.contains(f.as_str())) {
                out.entry(date.clone()).or_default().push(lake.path(f));
            }
        }
    }
    for f in staged {
        out.entry(time::format_date32(f.event_date))
            .or_default()
            .push(f.staged.clone());
    }
    out
}

/// The count of `event_id`s on each date that are on another date too,
/// where the removal can have made it smaller (every date with a count:
/// one it did not change can have counted an id that only a removed row
/// put on another date). Ingest counts an id on the dates it arrived on
/// after its first, which the rows do not record, so each count becomes
/// the smaller of what it was and the ids of the date on another date now
/// (exact when the removed rows were all that put an id on two dates).
/// Only the `event_id` column is read; memory holds the ids of those
/// dates.
fn recount_other_dates(state: &LakeState, files: &DateFiles) -> Result<BTreeMap<String, u64>> {
    let dates: Vec<&String> = state
        .ids_on_other_dates
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(d, _)| d)
        .collect();
    if dates.is_empty() {
        return Ok(BTreeMap::new());
    }
    let ids_of = |paths: &[PathBuf]| -> Result<HashSet<u64>> {
        let mut ids = HashSet::new();
        for p in paths {
            ids.extend(bronze::read_event_id_hashes(p)?);
        }
        Ok(ids)
    };
    // The ids of each date counted, then which of them another date has.
    let mut watched: BTreeMap<&String, HashSet<u64>> = BTreeMap::new();
    for d in &dates {
        watched.insert(d, ids_of(files.get(*d).map_or(&[][..], |v| v))?);
    }
    let mut elsewhere: BTreeMap<&String, HashSet<u64>> = BTreeMap::new();
    for (date, paths) in files {
        let ids = ids_of(paths)?;
        for (d, w) in &watched {
            if *d != date {
                elsewhere
                    .entry(d)
                    .or_default()
                    .extend(ids.iter().filter(|id| w.contains(id)));
            }
        }
    }
    Ok(dates
        .into_iter()
        .map(|d| {
            let now = elsewhere.get(d).map_or(0, |e| e.len() as u64);
            (d.clone(), now.min(state.ids_on_other_dates[d]))
        })
        .collect())
}

/// The chosen lines of quarantine file `f`, by value.
fn quarantine_lines(lake: &Lake, f: &FileAction, sel: &Selection) -> Result<BTreeMap<String, u64>> {
    let path = lake.path(&f.path);
    let file = std::fs::File::open(&path)
        .with_context(|| format!("failed to open `{}`", path.display()))?;
    let mut counts = BTreeMap::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.with_context(|| format!("failed to read `{}`", path.display()))?;
        if let Some(v) = sel.quarantine_value(&line) {
            *counts.entry(v.to_string()).or_default() += 1;
        }
    }
    Ok(counts)
}

/// Write quarantine file `f` without its chosen lines to `to` (fsynced);
/// returns the lines kept and the bytes written.
fn rewrite_quarantine(
    lake: &Lake,
    f: &FileAction,
    sel: &Selection,
    to: &Path,
) -> Result<(u64, u64)> {
    let path = lake.path(&f.path);
    let file = std::fs::File::open(&path)
        .with_context(|| format!("failed to open `{}`", path.display()))?;
    let out = std::fs::File::create(to)
        .with_context(|| format!("failed to create `{}`", to.display()))?;
    let mut out = std::io::BufWriter::new(out);
    let (mut kept, mut bytes) = (0, 0);
    for line in std::io::BufReader::new(file).lines() {
        let line = line.with_context(|| format!("failed to read `{}`", path.display()))?;
        if sel.quarantine_value(&line).is_some() {
            continue;
        }
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        kept += 1;
        bytes += line.len() as u64 + 1;
    }
    let out = out.into_inner().map_err(|e| e.into_error())?;
    out.sync_all()?;
    Ok((kept, bytes))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A batch record of version 1 (tests of other modules build theirs
    /// from it).
    pub(crate) fn record(batch_id: &str, source: &str) -> BatchRecord {
        BatchRecord {
            version: 1,
            batch_id: batch_id.into(),
            source: source.into(),
            bytes: 0,
            lines: 0,
            head: None,
            ends_line: None,
            retracted: None,
            processing_time: None,
            events: None,
            quarantined: None,
        }
    }

    /// A quarantine line is the batch's by its batch_id; one written
    /// before lines carried a batch_id, by its source file.
    #[test]
    fn quarantine_lines_are_matched_by_batch_id_or_else_by_source() {
        let hash = "blake3:x".to_string();
        let b = record("b1", "in.jsonl");
        let sel = Selection::batches(&[(&hash, &b)]);
        let line = |batch: Option<&str>, source: &str| {
            let mut v = serde_json::json!({"source_file": source, "line": 3, "raw": "x"});
            if let Some(id) = batch {
                v["batch_id"] = id.into();
            }
            v.to_string()
        };
        let is = |l: &str| sel.quarantine_value(l).is_some();
        assert_eq!(
            sel.quarantine_value(&line(Some("b1"), "other.jsonl")),
            Some("b1")
        );
        assert!(!is(&line(Some("b2"), "in.jsonl")));
        assert!(is(&line(None, "in.jsonl")));
        assert!(!is(&line(None, "other.jsonl")));
        assert!(!is("not json"));
        // Two batches of one source (a log that grew): an old line is the
        // first's.
        let (h2, h3) = ("blake3:y".to_string(), "blake3:z".to_string());
        let (b2, b3) = (record("b2", "log.jsonl"), record("b3", "log.jsonl"));
        let sel = Selection::batches(&[(&hash, &b), (&h2, &b2), (&h3, &b3)]);
        assert_eq!(sel.quarantine_value(&line(None, "log.jsonl")), Some("b2"));
        assert_eq!(
            sel.quarantine_value(&line(Some("b3"), "log.jsonl")),
            Some("b3")
        );
    }

    /// A quarantine line is a user's by the user_id (or actor_id) of its
    /// raw event, as a string or a number; a raw line that is not an
    /// object with one, by the id as a JSON string anywhere in it (its
    /// bytes decoded from base64 when they are not UTF-8).
    #[test]
    fn quarantine_lines_are_matched_by_the_user_their_raw_line_names() {
        let ids: BTreeSet<String> = ["u1".to_string(), "12345".to_string()].into();
        let sel = Selection::users(&ids).unwrap();
        let line = |raw: &str| serde_json::json!({"line": 1, "raw": raw}).to_string();
        let of = |raw: &str| sel.quarantine_value(&line(raw)).map(str::to_string);
        assert_eq!(
            of(r#"{"user_id":"u1","event_timestamp":"bad"}"#),
            Some("u1".into())
        );
        assert_eq!(of(r#"{"actor_id":"u1"}"#), Some("u1".into()));
        assert_eq!(of(r#"{"user_id":"u9","actor_id":"u1"}"#), Some("u1".into()));
        assert_eq!(of(r#"{"user_id":12345}"#), Some("12345".into()));
        // Another user's event that mentions u1 is that user's.
        assert_eq!(of(r#"{"user_id":"u2","properties":{"ref":"u1"}}"#), None);
        assert_eq!(of(r#"{"user_id":"u10"}"#), None);
        // Not an object with a user: the id as a JSON string anywhere.
        assert_eq!(of(r#"{"user_id":"u1","broken"#), Some("u1".into()));
        assert_eq!(of(r#"{"event_id":"e","user":"u1"}"#), Some("u1".into()));
        assert_eq!(of(r#"{"user_id":"u10","broken"#), None);
        assert_eq!(of("u1 not json"), None);
        // A line naming two of the ids is the first's (in order), also
        // where their JSON strings overlap.
        assert_eq!(
            of(r#"{"user_id":"u1","actor_id":12345}"#),
            Some("12345".into())
        );
        assert_eq!(of(r#"x"u1"12345"x"#), Some("12345".into()));
        assert_eq!(of(r#"x"u1"12346"x"#), Some("u1".into()));
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"{\"user_id\":\"u1\",\xff}");
        let l = serde_json::json!({"line": 1, "raw_base64": b64}).to_string();
        assert_eq!(sel.quarantine_value(&l), Some("u1"));
        assert_eq!(sel.quarantine_value("not json"), None);
    }
}
