//! The pipeline as a whole: which steps have work to do (for `status`,
//! `gold` and `run`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::dirty::{self, DirtyPartition};
use crate::gold;
use crate::log::LakeState;
use crate::silver;

/// The fingerprint the last build of `table` used: what the tables hold
/// now, whatever settings the next run gets (snapshots are valid against
/// it; `state`, `gold` and `snapshot` ask whether silver lacks new events
/// with it).
pub fn last_fingerprint(state: &LakeState, table: &str) -> String {
    state
        .builds
        .get(table)
        .and_then(|b| b.values().max_by_key(|(v, _)| *v))
        .map(|(_, b)| b.fingerprint.clone())
        .unwrap_or_default()
}

/// What silver `tables` hold now, as one fingerprint (a snapshot built
/// from them records it): the last `events` build's, plus that of each of
/// `tables` last built with another (a typed table of the lake's own),
/// with its name. With none such, it is the `events` build's alone, as
/// before typed tables had fingerprints of their own.
pub fn built_fingerprint(state: &LakeState, tables: &[&str]) -> String {
    let core = last_fingerprint(state, silver::EVENTS_TABLE);
    let mut out = core.clone();
    for t in tables {
        let fp = last_fingerprint(state, t);
        if !fp.is_empty() && fp != core {
            out.push_str(&format!("\u{1f}{t}={fp}"));
        }
    }
    out
}

/// Dirty silver dates against the settings silver was last built with:
/// the dates whose bronze changed since their build.
pub fn silver_dirty(state: &LakeState) -> Vec<DirtyPartition> {
    let fp = last_fingerprint(state, silver::EVENTS_TABLE);
    dirty::dirty_partitions(state, silver::EVENTS_TABLE, &fp, &silver::wanted(state))
}

/// The dates of [`silver_dirty`].
pub fn silver_dirty_dates(state: &LakeState) -> Vec<String> {
    silver_dirty(state)
        .into_iter()
        .map(|d| d.partition)
        .collect()
}

/// The settings a run without flags uses: the lake's `evlake.toml`, else
/// the defaults.
#[derive(Debug, Clone)]
pub struct Configured {
    pub silver: silver::Settings,
    pub currency: String,
}

/// Every dirty derived partition, silver first (for `status`): what
/// `evlake run` without flags would recompute, so a changed setting in
/// `evlake.toml` (or SQL changed by an upgrade) shows too. Before a
/// table's first build nothing of it is listed: it is not built, not dirty.
pub fn all_dirty(state: &LakeState, configured: &Configured) -> Vec<DirtyPartition> {
    let mut v = Vec::new();
    if state.builds.contains_key(silver::EVENTS_TABLE) {
        v.extend(silver::dirty_partitions(state, &configured.silver));
        let fps = silver::Fingerprints::new(&configured.silver);
        v.extend(silver::typed_dirty(state, &fps));
    }
    if state.builds.contains_key(gold::METRICS_TABLE) {
        v.extend(gold::dirty_partitions(state, &configured.currency));
        for d in crate::daily::own() {
            v.extend(d.dirty(state));
        }
    }
    v
}

/// What `evlake run` does: ingest (when given inputs), then silver, then
/// gold, each its own commit.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub ingest: Option<crate::ingest::IngestOptions>,
    pub silver: silver::Options,
    pub gold: gold::Options,
    /// Report what would be ingested and recomputed; change nothing.
    pub dry_run: bool,
    /// After the rest, compact bronze dates with this many small files
    /// (`[ingest] compact_min_files`; `None`: never).
    pub compact_min_files: Option<usize>,
    /// Models to snapshot at the end of each day the watermark closes.
    pub snapshot_models: Vec<String>,
    /// Keep only this many snapshots of each model, the newest (`None`:
    /// all); older ones are removed rather than rebuilt.
    pub snapshot_keep: Option<usize>,
}

/// What a dry run would do after ingesting.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// Silver dates that would be recomputed: dirty now, or receiving new
    /// bronze rows. Session reach can add neighbouring dates.
    pub silver_dates: Vec<String>,
    /// Per typed table of the lake's own whose SQL changed (or that is
    /// new), the dates it would be rebuilt for from the built `events`.
    pub typed_tables: BTreeMap<String, Vec<String>>,
    /// Typed tables whose file was removed: their partitions would go.
    pub dropped_tables: Vec<String>,
    /// Gold dates that would be recomputed (at least these).
    pub gold_dates: Vec<String>,
    /// Per daily table of the lake's own, the dates it would recompute
    /// (at least these: dirty now, or whose silver the run recomputes).
    pub daily_tables: BTreeMap<String, Vec<String>>,
    /// Daily tables whose file was removed: their partitions would go.
    pub dropped_daily_tables: Vec<String>,
    /// Snapshots `[state] snapshot_keep` would remove.
    pub snapshots_removed: Vec<crate::state::RemovedSnapshot>,
    /// With `[ingest] compact_min_files`: the bronze dates the run would
    /// compact at its end.
    pub compact_dates: Vec<String>,
    /// Snapshots the run would write: invalid ones rebuilt (invalid now,
    /// or made so by the run's events or SQL), and the daily policy's.
    pub snapshots: Vec<PlannedSnapshot>,
    /// Tables of the lake's own whose SQL the run would refuse: the dry
    /// run then fails at the first step that would (exit 2).
    pub refused: Vec<Refused>,
}

/// A table of the lake's own whose SQL a run would refuse before reading
/// a row (see [`refused_tables`]).
#[derive(Debug, Clone, Serialize)]
pub struct Refused {
    pub table: String,
    /// Its file.
    pub source: String,
    /// The step that would fail on it: `silver` (a typed table: the whole
    /// step fails) or `gold` (a daily table: gold builds the rest).
    pub step: &'static str,
    pub error: String,
    /// What is wrong with its file, without naming table and file (as
    /// `status` shows it on the table's line).
    #[serde(skip)]
    pub problem: String,
}

/// The lake's own typed and daily tables whose SQL a run would refuse
/// before reading a row (it does not parse or plan, reads a table it may
/// not, lacks a column it must return, or, typed, is not one row per
/// event), each with the error the run would give. They are planned over
/// empty silver tables: no file of the lake is read. SQL that fails only
/// on some row's value is found by a run alone.
pub fn refused_tables() -> anyhow::Result<Vec<Refused>> {
    let daily = crate::daily::own();
    let typed: BTreeMap<String, String> = silver::own_typed()
        .into_iter()
        .map(|t| (t.table, t.source))
        .collect();
    if typed.is_empty() && daily.is_empty() {
        return Ok(Vec::new());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let engine = crate::engine::Engine::new(&crate::engine::EngineOptions::default())?;
        let ctx = engine.bare()?;
        let mut out = Vec::new();
        for (table, e) in silver::rebuild::own_typed_problems(&ctx).await? {
            out.push(Refused {
                source: typed.get(&table).cloned().unwrap_or_default(),
                table,
                step: "silver",
                error: crate::error::describe(&e),
                problem: crate::error::file_problem(&e),
            });
        }
        for d in daily {
            if let Some(e) = d.problem(&ctx).await? {
                out.push(Refused {
                    table: d.name.to_string(),
                    source: d.source.clone(),
                    step: "gold",
                    error: crate::error::describe(&e),
                    problem: crate::error::file_problem(&e),
                });
            }
        }
        Ok(out)
    })
}

/// A snapshot a run would write, and why.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedSnapshot {
    pub model: String,
    pub as_of: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub command: &'static str,
    /// `committed` (some step committed), `noop`, `dry_run` or `failed`
    /// (a dry run stays `dry_run`, with `failed_step` and `error` for the
    /// step it predicts would fail).
    pub status: &'static str,
    pub lake: String,
    pub processing_time: String,
    /// The step that failed (`ingest`, `silver`, `gold`), and why.
    pub failed_step: Option<&'static str>,
    pub error: Option<String>,
    /// What to do about the error, as the `hint:` line on stderr says.
    pub hint: Option<&'static str>,
    pub ingest: Option<crate::ingest::IngestReport>,
    pub silver: Option<silver::SilverReport>,
    pub gold: Option<gold::GoldReport>,
    /// Snapshots written: invalid ones rebuilt, and the daily policy's.
    pub snapshots: Vec<crate::state::SnapshotReport>,
    /// Snapshots removed: each model's beyond `[state] snapshot_keep`.
    pub snapshots_removed: Vec<crate::state::RemovedSnapshot>,
    /// Models in `LAKE/models/` whose file does not load, or whose SQL
    /// failed when the run rebuilt one of their snapshots: their snapshots
    /// are not kept up to date (a warning; the run still succeeds unless
    /// the snapshot policy names one).
    pub broken_models: Vec<crate::state::BrokenModel>,
    /// With `[ingest] compact_min_files`: the compaction after the rest.
    pub compact: Option<crate::compact::CompactReport>,
    /// With `--dry-run`: what would be recomputed.
    pub plan: Option<Plan>,
    pub elapsed_ms: u64,
}

/// The steps of a run, in their order (see [`run`]).
pub const STEPS: [&str; 5] = ["ingest", "silver", "gold", "snapshot", "compact"];

/// Run the pipeline. The report is complete up to the failed step, if any;
/// the error (with its exit code) names the step. Each step commits on its
/// own, so a failure leaves the lake consistent and the next run, which
/// derives what is dirty, finishes the work.
///
/// `on_step` is called as each step finishes (`ingest`, `silver`, `gold`,
/// `snapshot`, `compact`; not for the dry run's plan), with the report so
/// far, so a log shows each step when it is done: one a later step is
/// killed in is not lost.
pub fn run(
    lake: &crate::lake::Lake,
    opts: &RunOptions,
    on_step: &mut dyn FnMut(&'static str, &RunReport),
) -> (RunReport, anyhow::Result<()>) {
    let started = std::time::Instant::now();
    let mut report = RunReport {
        command: "run",
        status: "noop",
        lake: lake.root().display().to_string(),
        processing_time: crate::time::format_micros(opts.silver.processing_time),
        failed_step: None,
        error: None,
        hint: None,
        ingest: None,
        silver: None,
        gold: None,
        snapshots: Vec::new(),
        snapshots_removed: Vec::new(),
        broken_models: Vec::new(),
        compact: None,
        plan: None,
        elapsed_ms: 0,
    };
    let result = steps(lake, opts, &mut report, on_step);
    // A dry run that found SQL a run would refuse keeps its status: its
    // `failed_step` and `error` say where the run would fail.
    let predicted = opts.dry_run && report.plan.is_some();
    if let Err(e) = &result {
        if !predicted {
            report.status = "failed";
        }
        report.error = Some(crate::error::describe(e));
        report.hint = crate::error::hint(e);
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    let result = result.map_err(|e| {
        let step = report.failed_step.unwrap_or("run");
        if predicted {
            e.context(format!("step `{step}` would fail"))
        } else {
            e.context(format!("step `{step}` failed"))
        }
    });
    (report, result)
}

fn steps(
    lake: &crate::lake::Lake,
    opts: &RunOptions,
    report: &mut RunReport,
    on_step: &mut dyn FnMut(&'static str, &RunReport),
) -> anyhow::Result<()> {
    use crate::ingest::{self, Outcome};
    if let Some(io) = &opts.ingest {
        report.failed_step = Some("ingest");
        let mut io = io.clone();
        io.dry_run = opts.dry_run;
        let r = ingest::ingest(lake, &io)?;
        let (status, rejection) = (r.status, r.rejection());
        report.ingest = Some(r);
        on_step("ingest", report);
        match status {
            Outcome::Rejected => {
                return Err(rejection.into());
            }
            Outcome::Committed => report.status = "committed",
            Outcome::Noop | Outcome::DryRun => {}
        }
    }
    if opts.dry_run {
        report.failed_step = None;
        report.status = "dry_run";
        let plan = plan(lake, opts, report.ingest.as_ref())?;
        // A typed table refused fails all of silver, if silver has work
        // (it plans every typed query first); a daily table with dates to
        // build, gold after building the rest.
        let silver_works = !plan.silver_dates.is_empty() || !plan.typed_tables.is_empty();
        let tried = |r: &Refused| match r.step {
            "silver" => silver_works,
            _ => plan
                .daily_tables
                .get(&r.table)
                .is_some_and(|d| !d.is_empty()),
        };
        let refused = ["silver", "gold"].into_iter().find_map(|step| {
            let these: Vec<&str> = plan
                .refused
                .iter()
                .filter(|r| r.step == step && tried(r))
                .map(|r| r.error.as_str())
                .collect();
            (!these.is_empty()).then(|| (step, these.join("; ")))
        });
        report.plan = Some(plan);
        if let Some((step, errors)) = refused {
            report.failed_step = Some(step);
            return Err(crate::error::Failure::Usage(errors).into());
        }
        return Ok(());
    }
    report.failed_step = Some("silver");
    let s = silver::rebuild(lake, &opts.silver)?;
    if s.status == "committed" {
        report.status = "committed";
    }
    report.silver = Some(s);
    on_step("silver", report);
    report.failed_step = Some("gold");
    let g = gold::rebuild(lake, &opts.gold)?;
    if g.status == "committed" {
        report.status = "committed";
    }
    // A daily table of the lake's own that failed leaves the rest of gold
    // built; the steps after it do not read gold, so they run, and the
    // run then fails at step gold.
    let gold_failed = g.failure();
    report.gold = Some(g);
    on_step("gold", report);
    report.failed_step = Some("snapshot");
    report.snapshots = snapshots(
        lake,
        opts,
        &mut report.broken_models,
        &mut report.snapshots_removed,
    )?;
    if !report.snapshots.is_empty() || !report.snapshots_removed.is_empty() {
        report.status = "committed";
    }
    on_step("snapshot", report);
    if let Some(min_files) = opts.compact_min_files {
        report.failed_step = Some("compact");
        let c = crate::compact::compact(
            lake,
            &crate::compact::Options {
                min_files,
                dates: None,
                processing_time: opts.silver.processing_time,
                dry_run: false,
            },
        )?;
        if c.status == "committed" {
            report.status = "committed";
        }
        report.compact = Some(c);
        on_step("compact", report);
    }
    if let Some(e) = gold_failed {
        report.failed_step = Some("gold");
        return Err(e);
    }
    report.failed_step = None;
    Ok(())
}

/// Rebuild every invalid snapshot, and write the daily policy's snapshot
/// (end of the last day the watermark closed) of each configured model;
/// with `snapshot_keep`, first remove each model's snapshots older than
/// the newest that many (counting the policy's), which are then not
/// rebuilt.
fn snapshots(
    lake: &crate::lake::Lake,
    opts: &RunOptions,
    report_broken: &mut Vec<crate::state::BrokenModel>,
    report_removed: &mut Vec<crate::state::RemovedSnapshot>,
) -> anyhow::Result<Vec<crate::state::SnapshotReport>> {
    use crate::state;
    let mut all = state::models(lake)?;
    for m in &opts.snapshot_models {
        if !all.ok.contains_key(m) {
            return Err(all.not_loaded(m, lake));
        }
    }
    // A broken model the policy does not name keeps its (stale)
    // snapshots, reported; every other model's are kept up to date.
    report_broken.extend(all.broken_list());
    let models = all.ok;
    let st = LakeState::load(lake)?;
    let existing = state::snapshots(lake, &st, &models);
    let mut todo: Vec<(String, i64)> = existing
        .iter()
        .filter(|s| !s.valid)
        .map(|s| (s.model.clone(), s.as_of_us))
        .collect();
    if let Some(as_of) = state::last_closed_day_end(&st) {
        for m in &opts.snapshot_models {
            let have = existing
                .iter()
                .any(|s| &s.model == m && s.as_of_us == as_of && s.valid);
            if !have && !todo.contains(&(m.clone(), as_of)) {
                todo.push((m.clone(), as_of));
            }
        }
    }
    if let Some(keep) = opts.snapshot_keep {
        let have = existing.into_iter().map(|s| (s.model, s.as_of_us));
        for (m, old) in beyond_keep(have.chain(todo.iter().cloned()), keep) {
            todo.retain(|(model, as_of)| *model != m || !old.contains(as_of));
            let removed = state::remove_snapshots(lake, &m, &old, opts.silver.processing_time)?;
            report_removed.extend(removed);
        }
    }
    todo.sort();
    let mut out = Vec::new();
    let mut failed: BTreeSet<String> = BTreeSet::new();
    for (m, as_of) in todo {
        if failed.contains(&m) {
            continue;
        }
        let taken = state::snapshot(
            lake,
            &models[&m],
            as_of,
            opts.silver.processing_time,
            &opts.silver.engine,
        );
        match taken {
            Ok(r) => out.push(r),
            // A model whose SQL the lake's own file got wrong (it loads,
            // but a query does not plan or fails on the rows) is broken
            // like one that does not load: unless the policy names it, it
            // stops only its own snapshots, reported, not every later run.
            Err(e)
                if crate::error::exit_code(&e) == crate::error::EXIT_USAGE
                    && !opts.snapshot_models.contains(&m) =>
            {
                report_broken.push(state::BrokenModel {
                    model: m.clone(),
                    error: crate::error::describe(&e),
                });
                failed.insert(m);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Per model, its snapshot times (of `times`: those it has and those the
/// run takes) beyond the newest `keep`: what `snapshot_keep` removes.
fn beyond_keep(
    times: impl IntoIterator<Item = (String, i64)>,
    keep: usize,
) -> BTreeMap<String, BTreeSet<i64>> {
    let mut by_model: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for (m, t) in times {
        by_model.entry(m).or_default().insert(t);
    }
    by_model
        .into_iter()
        .filter_map(|(m, times)| {
            let old: BTreeSet<i64> = times.iter().rev().skip(keep).copied().collect();
            (!old.is_empty()).then_some((m, old))
        })
        .collect()
}

/// What `snapshot_keep` would remove after a run that leaves the watermark
/// at `watermark`: every model's snapshots, plus the policy's new one,
/// beyond the newest `keep` (exact: it does not depend on which snapshots
/// the run's events invalidate).
fn removals_planned(
    opts: &RunOptions,
    existing: &[crate::state::Snapshot],
    watermark: Option<i64>,
) -> Vec<crate::state::RemovedSnapshot> {
    use crate::state;
    let Some(keep) = opts.snapshot_keep else {
        return Vec::new();
    };
    let have = existing.iter().map(|s| (s.model.clone(), s.as_of_us));
    let policy = state::closed_day_end(watermark)
        .into_iter()
        .flat_map(|t| opts.snapshot_models.iter().map(move |m| (m.clone(), t)));
    beyond_keep(have.chain(policy), keep)
        .into_iter()
        .flat_map(|(model, old)| {
            old.into_iter().map(move |t| state::RemovedSnapshot {
                model: model.clone(),
                as_of: crate::time::format_micros(t),
            })
        })
        .collect()
}

/// What a run would change that decides which snapshots it writes.
struct Changes {
    /// The watermark after its ingest.
    watermark: Option<i64>,
    /// The earliest event time its ingest adds.
    min_event_time: Option<i64>,
    /// Silver's SQL or settings differ from the build's (every snapshot is
    /// then rebuilt).
    silver_changes: bool,
    /// Typed tables it rebuilds or drops alone.
    typed: BTreeSet<String>,
}

/// The snapshots a run would write (see [`snapshots`]) of the `models`
/// that load, given their `existing` snapshots, without those
/// `snapshot_keep` removes.
fn snapshots_planned(
    opts: &RunOptions,
    models: &BTreeMap<String, crate::state::Model>,
    existing: &[crate::state::Snapshot],
    changes: Changes,
    removed: &[crate::state::RemovedSnapshot],
) -> Vec<PlannedSnapshot> {
    use crate::state;
    let is_removed =
        |model: &str, as_of: &str| removed.iter().any(|r| r.model == model && r.as_of == as_of);
    let mut out: Vec<PlannedSnapshot> = Vec::new();
    for s in existing {
        let why = if let Some(why) = &s.invalid_because {
            why.clone()
        } else if changes.silver_changes {
            "silver's SQL or settings change".to_string()
        } else if changes.min_event_time.is_some_and(|t| t <= s.as_of_us) {
            "the run adds an event at or before it".to_string()
        } else if let Some(t) = changes
            .typed
            .iter()
            .find(|t| models[&s.model].snapshot_reads_table(t))
        {
            format!("typed table {t}, which the model reads, is rebuilt")
        } else {
            continue;
        };
        if !is_removed(&s.model, &s.as_of) {
            out.push(PlannedSnapshot {
                model: s.model.clone(),
                as_of: s.as_of.clone(),
                why,
            });
        }
    }
    if let Some(as_of) = state::closed_day_end(changes.watermark) {
        let as_of_text = crate::time::format_micros(as_of);
        for m in &opts.snapshot_models {
            let have = existing
                .iter()
                .any(|s| &s.model == m && s.as_of_us == as_of);
            if !have && !is_removed(m, &as_of_text) {
                out.push(PlannedSnapshot {
                    model: m.clone(),
                    as_of: as_of_text.clone(),
                    why: "the daily snapshot policy (state.snapshot_models)".to_string(),
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.model, &a.as_of).cmp(&(&b.model, &b.as_of)));
    out
}

/// The dates a run would recompute, without running it.
fn plan(
    lake: &crate::lake::Lake,
    opts: &RunOptions,
    ingest: Option<&crate::ingest::IngestReport>,
) -> anyhow::Result<Plan> {
    use std::collections::BTreeSet;
    let state = LakeState::load(lake)?;
    let mut silver_dates: BTreeSet<String> =
        silver::dirty_partitions(&state, &opts.silver.settings)
            .into_iter()
            .map(|d| d.partition)
            .collect();
    if let Some(r) = ingest {
        silver_dates.extend(
            r.partitions
                .iter()
                .filter(|p| p.events > 0)
                .map(|p| p.event_date.clone()),
        );
    }
    // Gold recomputes a date where a silver partition it reads changes: not
    // one with no events before or after (no bronze rows once the ingest
    // is in, no silver events or sessions files), which silver rebuilds
    // without changing a file.
    let has_files = |table: &str, date: &str| {
        state
            .tables
            .get(table)
            .and_then(|t| t.get(date))
            .is_some_and(|p| !p.files.is_empty())
    };
    // The dates the ingest adds bronze rows to (not only side output).
    let ingested: BTreeSet<&str> = ingest
        .map(|r| {
            r.partitions
                .iter()
                .filter(|p| p.events > p.side_output)
                .map(|p| p.event_date.as_str())
                .collect()
        })
        .unwrap_or_default();
    let for_gold: Vec<&String> = silver_dates
        .iter()
        .filter(|d| {
            ingested.contains(d.as_str())
                || [
                    crate::bronze::TABLE,
                    silver::EVENTS_TABLE,
                    silver::SESSIONS_TABLE,
                ]
                .iter()
                .any(|t| has_files(t, d))
        })
        .collect();
    let mut gold_dates: BTreeSet<String> = gold::dirty_partitions(&state, &opts.gold.currency)
        .into_iter()
        .map(|d| d.partition)
        .collect();
    gold_dates.extend(for_gold.iter().map(|d| d.to_string()));
    let mut typed_tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let fps = silver::Fingerprints::new(&opts.silver.settings);
    for p in silver::typed_dirty(&state, &fps) {
        // Gold recomputes the dates of a table it reads: at least those
        // where its files are rewritten (a date where it has none may stay
        // without).
        if has_files(&p.table, &p.partition)
            && gold::inputs(&p.partition).contains(&crate::dirty::input_key(&p.table, &p.partition))
        {
            gold_dates.insert(p.partition.clone());
        }
        typed_tables.entry(p.table).or_default().push(p.partition);
    }
    let dropped_tables: Vec<String> = silver::dropped_tables(&state)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    // The watermark the ingest would set (a dry run reports it), else the
    // lake's.
    let watermark = match ingest.and_then(|r| r.watermark.as_deref()) {
        Some(w) => Some(crate::time::parse_instant(w).map_err(anyhow::Error::msg)?),
        None => state.watermark,
    };
    let mut daily_tables = BTreeMap::new();
    for d in crate::daily::own() {
        let mut dates: BTreeSet<String> =
            d.dirty(&state).into_iter().map(|p| p.partition).collect();
        dates.extend(for_gold.iter().map(|d| d.to_string()));
        daily_tables.insert(d.name.to_string(), dates.into_iter().collect());
    }
    let dropped_daily_tables = crate::daily::dropped(&state)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let compact_dates = match opts.compact_min_files {
        None => Vec::new(),
        Some(n) => {
            // The ingest's files (each counted small: a run's are).
            let more: BTreeMap<String, usize> =
                ingested.iter().map(|d| (d.to_string(), 1)).collect();
            crate::compact::compactable_with(&state, n, &more)
        }
    };
    let models = crate::state::models(lake)?.ok;
    let existing = crate::state::snapshots(lake, &state, &models);
    let snapshots_removed = removals_planned(opts, &existing, watermark);
    let silver_changes = state.builds.contains_key(silver::EVENTS_TABLE)
        && last_fingerprint(&state, silver::EVENTS_TABLE)
            != silver::fingerprint(&opts.silver.settings);
    let min_event_time = ingest
        .and_then(|r| r.min_event_time.as_deref())
        .map(|t| crate::time::parse_instant(t).map_err(anyhow::Error::msg))
        .transpose()?;
    let snapshots = snapshots_planned(
        opts,
        &models,
        &existing,
        Changes {
            watermark,
            min_event_time,
            silver_changes,
            typed: typed_tables
                .keys()
                .chain(&dropped_tables)
                .cloned()
                .collect(),
        },
        &snapshots_removed,
    );
    Ok(Plan {
        silver_dates: silver_dates.into_iter().collect(),
        typed_tables,
        dropped_tables,
        gold_dates: gold_dates.into_iter().collect(),
        daily_tables,
        dropped_daily_tables,
        snapshots_removed,
        compact_dates,
        snapshots,
        refused: refused_tables()?,
    })
}
