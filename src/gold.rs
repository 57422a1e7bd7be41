//! Gold: `daily_metrics` and `daily_revenue_by_currency`, recomputed for
//! exactly the dirty dates (DESIGN.md §3).
//!
//! A gold date reads that date's silver `events`, `sessions` (by
//! `session_date`), `purchases` and `signups` partitions. Silver records a
//! new version for every partition whose rows changed, including the
//! neighbouring dates a late event's session reaches, so a date is dirty
//! exactly when its numbers can have changed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use datafusion::common::ScalarValue;
use datafusion::prelude::{DataFrame, SessionContext};
use serde::Serialize;

use crate::derive::{self, Output};
use crate::dirty;
use crate::engine::{Engine, EngineOptions};
use crate::ingest::table_dirs;
use crate::lake::Lake;
use crate::log::{self, Commit, LakeState};
use crate::silver;
use crate::time::format_date32;

pub const METRICS_TABLE: &str = "daily_metrics";
pub const METRICS_DIR: &str = "gold/daily_metrics";
pub const REVENUE_TABLE: &str = "daily_revenue_by_currency";
pub const REVENUE_DIR: &str = "gold/daily_revenue_by_currency";

/// `sql/gold/daily_metrics.sql`.
pub const METRICS_SQL: &str = include_str!("../sql/gold/daily_metrics.sql");
/// `sql/gold/daily_revenue_by_currency.sql`.
pub const REVENUE_SQL: &str = include_str!("../sql/gold/daily_revenue_by_currency.sql");

/// The default reporting currency.
pub const DEFAULT_CURRENCY: &str = "USD";

/// Every gold table: (logical name, directory).
pub const TABLES: &[(&str, &str)] = &[(METRICS_TABLE, METRICS_DIR), (REVENUE_TABLE, REVENUE_DIR)];

/// Every gold table, the lake's own daily tables (`LAKE/daily/`) after
/// the built-in ones: (logical name, directory).
pub fn all_tables() -> Vec<(&'static str, &'static str)> {
    let mut v = TABLES.to_vec();
    v.extend(crate::daily::own().iter().map(|d| (d.name, d.dir)));
    v
}

/// The silver partitions (`table/partition`) a gold date reads.
pub fn inputs(date: &str) -> Vec<String> {
    [
        silver::EVENTS_TABLE,
        silver::SESSIONS_TABLE,
        "purchases",
        "signups",
    ]
    .iter()
    .map(|t| dirty::input_key(t, date))
    .collect()
}

/// Every date gold should have, with its inputs: each date with silver
/// events or sessions, and each date gold was built for whose silver has
/// since emptied (`evlake retract` took its events): recomputed, it has
/// no rows, so its old ones go.
pub fn wanted(state: &LakeState) -> BTreeMap<String, Vec<String>> {
    let built = state.builds.get(METRICS_TABLE);
    state
        .partitions(silver::EVENTS_TABLE)
        .chain(state.partitions(silver::SESSIONS_TABLE))
        .filter(|(d, p)| !p.files.is_empty() || built.is_some_and(|b| b.contains_key(*d)))
        .map(|(d, _)| (d.clone(), inputs(d)))
        .collect()
}

/// The fingerprint of gold's SQL and the reporting currency.
pub fn fingerprint(currency: &str) -> String {
    dirty::fingerprint(&[METRICS_SQL, REVENUE_SQL, &currency.to_ascii_uppercase()])
}

/// The settings a gold commit records (`status` compares them with a
/// later run's to say what changed).
pub fn commit_settings(currency: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("currency".to_string(), currency.to_ascii_uppercase())])
}

/// The dirty gold dates and why.
pub fn dirty_partitions(state: &LakeState, currency: &str) -> Vec<dirty::DirtyPartition> {
    dirty::dirty_partitions(state, METRICS_TABLE, &fingerprint(currency), &wanted(state))
}

/// What `evlake gold` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The reporting currency (ISO code).
    pub currency: String,
    pub full: bool,
    /// Restate this inclusive date range even if it is not dirty.
    pub dates: Option<(i32, i32)>,
    pub engine: EngineOptions,
    pub processing_time: i64,
    /// Report what would be recomputed ([`GoldReport::plan`]), without
    /// the lock, and write nothing.
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GoldReport {
    pub command: &'static str,
    /// `committed`, `noop`, or `dry_run`.
    pub status: &'static str,
    /// `incremental` or `full`.
    pub mode: &'static str,
    pub lake: String,
    pub version: u64,
    pub currency: String,
    /// Dirty gold dates before the run, and why.
    pub dirty: Vec<dirty::DirtyPartition>,
    /// Dates restated with `--dates`.
    pub restated: Vec<String>,
    /// Silver dates that are dirty (not rebuilt since bronze changed): gold
    /// read silver as it is; run `evlake silver` first (`evlake run` does).
    pub silver_dirty: Vec<String>,
    /// Per table, the partitions rewritten.
    pub recomputed: BTreeMap<String, Vec<String>>,
    pub partitions: Vec<derive::Written>,
    /// The lake's own daily tables that were not built, each with why: a
    /// bad file fails only its own table (its dates stay dirty); the rest
    /// of gold is built and committed, and the command then exits 2.
    pub failed: Vec<FailedTable>,
    /// With `--dry-run`: what the run would recompute (nothing is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<GoldPlan>,
    pub elapsed_ms: u64,
}

/// What `evlake gold --dry-run` finds a run would do: the same fields as
/// `evlake run --dry-run`'s plan has for gold.
#[derive(Debug, Clone, Serialize)]
pub struct GoldPlan {
    /// The dates daily_metrics and daily_revenue_by_currency would be
    /// recomputed for (the latter keeps only dates with purchases).
    pub gold_dates: Vec<String>,
    /// Per daily table of the lake's own, the dates it would recompute.
    pub daily_tables: BTreeMap<String, Vec<String>>,
    /// Daily tables whose file was removed: their partitions would go.
    pub dropped_daily_tables: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedTable {
    pub table: String,
    pub error: String,
    /// The dates left unbuilt (and dirty) when only some were: a day whose
    /// revenue does not fit the table's Decimal(18,2). Empty: all of them
    /// (a bad SQL file).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dates: Vec<String>,
}

impl GoldReport {
    /// The error a run with failed tables ends with: a usage error (exit
    /// 2) when a table's SQL file is at fault, else (only days whose
    /// revenue overflowed) a runtime error (exit 1).
    pub fn failure(&self) -> Option<anyhow::Error> {
        if self.failed.is_empty() {
            return None;
        }
        let each: Vec<&str> = self.failed.iter().map(|f| f.error.as_str()).collect();
        let done = if self.status == "committed" {
            "the rest of gold is built"
        } else {
            "the rest of gold was up to date"
        };
        Some(if self.failed.iter().any(|f| f.dates.is_empty()) {
            crate::error::Failure::Usage(format!(
                "{} ({done}; the table's dates stay dirty until its file is fixed)",
                each.join("; ")
            ))
            .into()
        } else {
            anyhow::anyhow!(
                "{} ({done}; those dates stay dirty, their gold rows as they were, until the \
                 purchases are fixed: `evlake retract BATCH` takes back a batch ingested by \
                 mistake, `evlake query \"SELECT batch_id, source_file, source_line FROM \
                 bronze_events WHERE event_id = '...'\"` finds one)",
                each.join("; ")
            )
        })
    }
}

/// `report`, of a dry run, given its plan: `dates` for the lake's gold
/// tables, each own daily table's, the `dropped` ones. A daily table
/// whose SQL the run would refuse (planned over empty tables, as `run
/// --dry-run` does) is in `failed` too, as its file already is when it
/// does not read.
fn planned(
    report: &mut GoldReport,
    dates: &BTreeSet<i32>,
    own_days: &BTreeMap<String, BTreeSet<i32>>,
    dropped: &[(String, String)],
) -> Result<()> {
    let days = |d: &BTreeSet<i32>| d.iter().map(|d| format_date32(*d)).collect::<Vec<_>>();
    report.status = "dry_run";
    if !own_days.is_empty() {
        for r in crate::pipeline::refused_tables()? {
            if r.step == "gold"
                && own_days.contains_key(&r.table)
                && !report.failed.iter().any(|f| f.table == r.table)
            {
                report.failed.push(FailedTable {
                    table: r.table,
                    error: r.error,
                    dates: Vec::new(),
                });
            }
        }
    }
    report.plan = Some(GoldPlan {
        gold_dates: days(dates),
        daily_tables: own_days.iter().map(|(t, d)| (t.clone(), days(d))).collect(),
        dropped_daily_tables: dropped.iter().map(|(t, _)| t.clone()).collect(),
    });
    Ok(())
}

/// Recompute the dirty gold dates (or all with `full`) in one commit.
pub fn rebuild(lake: &Lake, opts: &Options) -> Result<GoldReport> {
    let _busy = crate::fault::operation("gold");
    let started = Instant::now();
    // A dry run reads the committed log, as a query does: no lock.
    let _lock = if opts.dry_run {
        None
    } else {
        Some(lake.lock()?)
    };
    let state = LakeState::load(lake)?;
    if !opts.dry_run {
        log::clean_orphans(lake, &state, &table_dirs())?;
    }
    let currency = opts.currency.to_ascii_uppercase();
    let dirty = dirty_partitions(&state, &currency);
    let wanted = wanted(&state);
    let existing = derive::dates_of(wanted.keys())?;
    let plan = derive::DatePlan::new(&dirty, &existing, opts.dates, opts.full)?;
    let (full, dates) = (plan.full, plan.dates.clone());
    // The lake's own daily tables: each its dirty dates (and any restated),
    // or with --full every date.
    let mut own = Vec::new();
    let mut own_dirty = Vec::new();
    let mut failed = Vec::new();
    // Every own table's dates, built or failing (a dry run's plan).
    let mut own_days = BTreeMap::new();
    for d in crate::daily::own() {
        let dirty = d.dirty(&state);
        let days: BTreeSet<i32> = if opts.full {
            existing.clone()
        } else {
            let mut days = derive::dates_of(dirty.iter().map(|p| &p.partition))?;
            days.extend(plan.restated.iter().copied());
            days
        };
        own_dirty.extend(dirty);
        if days.is_empty() {
            continue;
        }
        own_days.insert(d.name.to_string(), days.clone());
        match d.reads() {
            Ok(_) => own.push((d, days)),
            Err(e) => failed.push(FailedTable {
                table: d.name.to_string(),
                error: crate::error::describe(&e),
                dates: Vec::new(),
            }),
        }
    }
    let dropped = crate::daily::dropped(&state);
    let silver_dirty = crate::pipeline::silver_dirty_dates(&state);
    let mut report = GoldReport {
        command: "gold",
        status: "noop",
        mode: plan.mode(),
        lake: lake.root().display().to_string(),
        version: state.version,
        currency: currency.clone(),
        dirty,
        restated: plan.restated.iter().map(|d| format_date32(*d)).collect(),
        silver_dirty,
        recomputed: BTreeMap::new(),
        partitions: Vec::new(),
        failed,
        plan: None,
        elapsed_ms: 0,
    };
    report.dirty.extend(own_dirty);
    if opts.dry_run {
        planned(&mut report, &dates, &own_days, &dropped)?;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    if dates.is_empty() && own.is_empty() && dropped.is_empty() {
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }

    let (staging, engine_opts) = derive::staging_with_spill(lake, "gold", &opts.engine)?;
    let (failed, overflows) = crate::interrupt::block_on(async {
        let engine = Engine::new(&engine_opts)?;
        engine.read_committed(lake, &state)?;
        // Only the tables gold reads (each registration reads a footer).
        let mut only: std::collections::HashSet<String> =
            [silver::EVENTS_TABLE, silver::SESSIONS_TABLE]
                .into_iter()
                .chain(TYPED_INPUTS)
                .map(String::from)
                .collect();
        for (d, _) in &own {
            only.extend(d.reads()?.iter().map(|t| t.to_string()));
        }
        let ctx = engine.context_of(lake, Some(&only)).await?;
        // One query per date: two at a time keep both cores busy through
        // each one's planning and writing. A table whose SQL is at fault
        // (a usage error naming its file) is left out; any other error
        // fails the run.
        let mut failed = Vec::new();
        for (d, days) in &own {
            use futures::stream::{self, StreamExt, TryStreamExt};
            let out = staging.join(d.name);
            let done = stream::iter(days.iter().map(|day| d.compute(&ctx, *day, &out)))
                .buffer_unordered(2)
                .try_collect::<Vec<()>>()
                .await;
            match done {
                Ok(_) => {}
                Err(e) if crate::error::exit_code(&e) == crate::error::EXIT_USAGE => {
                    failed.push(FailedTable {
                        table: d.name.to_string(),
                        error: crate::error::describe(&e),
                        dates: Vec::new(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        if dates.is_empty() {
            return anyhow::Ok((failed, Vec::new()));
        }
        let work = engine.bare()?;
        register_inputs(&ctx, &work, full, &dates).await?;
        let written = write_builtin(&work, &staging, &currency, &BUILTIN).await;
        let overflows = match written {
            Ok(()) => Vec::new(),
            Err(e) if crate::error::is_decimal_overflow(&e) => {
                // A day's revenue past Decimal(18,2): every other date is
                // built, those are left out (and dirty). Normal runs never
                // pay for the check.
                let overflows = revenue_overflows(&work).await?;
                if overflows.is_empty() {
                    return Err(e);
                }
                // Into a directory of their own: the failed write's
                // files stay where they were, with the rest of staging.
                let ok: BTreeSet<i32> = dates
                    .difference(&overflowed_dates(&overflows))
                    .copied()
                    .collect();
                if !ok.is_empty() {
                    let work = engine.bare()?;
                    register_inputs(&ctx, &work, false, &ok).await?;
                    write_builtin(&work, &staging.join(RETRY_DIR), &currency, &BUILTIN).await?;
                }
                overflows
            }
            Err(e) => return Err(e),
        };
        anyhow::Ok((failed, overflows))
    })?;
    crate::fault::point("staged")?;
    own.retain(|(d, _)| !failed.iter().any(|f| f.table == d.name));
    report.failed.extend(failed);
    // Dates left out keep their rows: the built-in tables replace every
    // other partition they would have (with `--full`, those of dates
    // silver no longer has too), from their own staging directory.
    let bad = overflowed_dates(&overflows);
    report.failed.extend(overflow_failures(&overflows));
    let dates: BTreeSet<i32> = dates.difference(&bad).copied().collect();
    let builtin_staging = if bad.is_empty() {
        staging.to_path_buf()
    } else {
        staging.join(RETRY_DIR)
    };
    if dates.is_empty() && own.is_empty() && dropped.is_empty() {
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }

    let parts: BTreeSet<String> = dates.iter().map(|d| format_date32(*d)).collect();
    let mut outputs: Vec<Output> = TABLES
        .iter()
        .filter(|_| !dates.is_empty())
        .map(|(table, dir)| {
            Output::replacing(
                &state,
                table,
                dir,
                builtin_staging.join(table),
                "event_date",
                &parts,
                full,
            )
        })
        .map(|mut out| {
            let left_out =
                |p: &String| crate::time::parse_date32(p).is_ok_and(|d| bad.contains(&d));
            out.partitions.retain(|p| !left_out(p));
            out
        })
        .collect();
    for (d, days) in &own {
        let parts: BTreeSet<String> = days.iter().map(|d| format_date32(*d)).collect();
        outputs.push(Output::replacing(
            &state,
            d.name,
            d.dir,
            staging.join(d.name),
            "event_date",
            &parts,
            opts.full,
        ));
    }
    // A daily table whose file was removed: every partition goes.
    let mut all_outputs = outputs.clone();
    all_outputs.extend(derive::dropped_outputs(&state, &dropped, &staging));
    let fp = fingerprint(&currency);
    let mut commit = Commit::next(&state, "gold", opts.processing_time);
    commit.settings = commit_settings(&currency);
    commit.settings.insert("mode".into(), report.mode.into());
    derive::record_dropped(&mut commit, &dropped);
    let written = derive::replace_partitions(
        lake,
        &state,
        &mut commit,
        &all_outputs,
        &derive::run_id("gold", &state),
    )?;
    for out in &outputs {
        let daily = crate::daily::own().iter().find(|d| d.name == out.table);
        let fp = daily.map_or_else(|| fp.clone(), |d| d.fingerprint());
        for p in out.partitions.iter().filter(|p| wanted.contains_key(*p)) {
            let inputs = daily.map_or_else(|| inputs(p), |d| d.inputs(p));
            commit
                .builds
                .push(dirty::build_record(&state, &out.table, p, &inputs, &fp));
        }
    }
    derive::finish_commit(lake, &commit)?;
    derive::remove_dropped_dirs(lake, &dropped);
    report.recomputed = derive::by_table(&written);
    report.partitions = written;
    report.status = "committed";
    report.version = commit.version;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Write the built-in tables (`daily_metrics` in `currency`, and
/// `daily_revenue_by_currency`) from `work`'s inputs into `staging`.
async fn write_builtin(
    work: &SessionContext,
    staging: &Path,
    currency: &str,
    tables: &[(&str, &str)],
) -> Result<()> {
    let param = vec![ScalarValue::Utf8(Some(currency.to_string()))];
    for &(table, sql) in tables {
        let mut df = work
            .sql(sql)
            .await
            .with_context(|| format!("sql/gold/{table}.sql does not plan"))?;
        if table == METRICS_TABLE {
            df = df.with_param_values(param.clone())?;
        }
        derive::write_partitioned(
            df,
            &staging.join(table),
            "event_date",
            table,
            derive::Index::None,
        )
        .await?;
    }
    Ok(())
}

/// Where the built-in tables are written again, in the run's staging
/// directory, when some dates' revenue overflowed.
const RETRY_DIR: &str = "without-overflowed-dates";

/// The built-in tables and their SQL.
const BUILTIN: [(&str, &str); 2] = [(METRICS_TABLE, METRICS_SQL), (REVENUE_TABLE, REVENUE_SQL)];

/// The dates left out for `overflows`, by both built-in tables: gold's
/// dirtiness is `daily_metrics`' (see [`dirty_partitions`]), so a date
/// built there but not in `daily_revenue_by_currency` would never be
/// retried.
fn overflowed_dates(overflows: &[Overflow]) -> BTreeSet<i32> {
    overflows.iter().map(|o| o.date).collect()
}

/// The largest amount a Decimal(18,2) column holds.
const DECIMAL_18_2_MAX: &str = "9999999999999999.99";

/// A date whose purchases in one currency sum past Decimal(18,2).
#[derive(Debug)]
struct Overflow {
    date: i32,
    /// Upper-cased and trimmed, as `daily_revenue_by_currency` groups it.
    currency: Option<String>,
    total: String,
    /// The largest purchases: (event_id, amount), at most three.
    largest: Vec<(String, String)>,
}

/// The (date, currency) groups of `work`'s purchases whose sum does not
/// fit Decimal(18,2), summed in Decimal(38,2), with their largest
/// purchases.
async fn revenue_overflows(work: &SessionContext) -> Result<Vec<Overflow>> {
    let rows = text_rows(
        work.sql(&format!(
            "SELECT event_date, upper(btrim(currency)) AS currency, \
             CAST(SUM(CAST(amount AS DECIMAL(38, 2))) AS VARCHAR) AS total \
             FROM purchases GROUP BY event_date, upper(btrim(currency)) \
             HAVING abs(SUM(CAST(amount AS DECIMAL(38, 2)))) > {DECIMAL_18_2_MAX} \
             ORDER BY event_date, currency"
        ))
        .await?,
    )
    .await?;
    let mut out = Vec::new();
    for row in rows {
        let [Some(date), currency, Some(total)] =
            <[Option<String>; 3]>::try_from(row).map_err(|_| anyhow::anyhow!("three columns"))?
        else {
            continue;
        };
        let date = crate::time::parse_date32(&date).map_err(anyhow::Error::msg)?;
        let largest = text_rows(
            work.sql(
                "SELECT event_id, CAST(amount AS VARCHAR) AS amount_text FROM purchases \
                 WHERE event_date = $1 AND (upper(btrim(currency)) IS NOT DISTINCT FROM $2) \
                   AND amount IS NOT NULL \
                 ORDER BY abs(amount) DESC, event_id LIMIT 3",
            )
            .await?
            .with_param_values(vec![
                ScalarValue::Date32(Some(date)),
                ScalarValue::Utf8(currency.clone()),
            ])?,
        )
        .await?
        .into_iter()
        .map(|r| {
            let mut r = r.into_iter().map(Option::unwrap_or_default);
            (r.next().unwrap_or_default(), r.next().unwrap_or_default())
        })
        .collect();
        out.push(Overflow {
            date,
            currency,
            total,
            largest,
        });
    }
    Ok(out)
}

/// Every cell of `df` as text (NULL as `None`), row by row.
async fn text_rows(df: DataFrame) -> Result<Vec<Vec<Option<String>>>> {
    use datafusion::arrow::util::display::array_value_to_string;
    let mut rows = Vec::new();
    for batch in df.collect().await? {
        for i in 0..batch.num_rows() {
            let row = batch
                .columns()
                .iter()
                .map(|c| {
                    (!c.is_null(i))
                        .then(|| array_value_to_string(c, i))
                        .transpose()
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            rows.push(row);
        }
    }
    Ok(rows)
}

/// What `failed` says of dates left out for their revenue: one entry for
/// `daily_revenue_by_currency`, and one for `daily_metrics` (whose row of
/// each such date is not rebuilt either).
fn overflow_failures(overflows: &[Overflow]) -> Vec<FailedTable> {
    if overflows.is_empty() {
        return Vec::new();
    }
    let dates: Vec<String> = overflowed_dates(overflows)
        .into_iter()
        .map(format_date32)
        .collect();
    let each: Vec<String> = overflows
        .iter()
        .map(|o| {
            let largest: Vec<String> = o
                .largest
                .iter()
                .map(|(id, amount)| format!("{id} ({amount})"))
                .collect();
            format!(
                "{}: purchases in {} sum to {}, past the {DECIMAL_18_2_MAX} a revenue \
                 column (Decimal(18,2)) holds; the largest: {}",
                format_date32(o.date),
                o.currency.as_deref().unwrap_or("no currency"),
                o.total,
                largest.join(", ")
            )
        })
        .collect();
    vec![
        FailedTable {
            table: REVENUE_TABLE.to_string(),
            error: format!("`{REVENUE_TABLE}` not built for {}", each.join("; ")),
            dates: dates.clone(),
        },
        FailedTable {
            table: METRICS_TABLE.to_string(),
            error: format!(
                "`{METRICS_TABLE}` not built for {} either (gold's tables build a date together)",
                dates.join(", ")
            ),
            dates,
        },
    ]
}

/// An empty relation with gold table `t`'s columns (its SQL over empty
/// silver tables), for `query` of a built table that has no rows (no
/// purchases yet: no `daily_revenue_by_currency` row).
pub async fn empty_table(ctx: &SessionContext, t: &str) -> Result<DataFrame> {
    let scratch = crate::engine::scratch(ctx);
    for input in [silver::EVENTS_TABLE, silver::SESSIONS_TABLE]
        .into_iter()
        .chain(TYPED_INPUTS)
    {
        let empty = silver::empty_table(&scratch, input).await?;
        let _ = scratch.deregister_table(input)?;
        scratch.register_table(input, empty.into_view())?;
    }
    let sql = match t {
        METRICS_TABLE => METRICS_SQL,
        REVENUE_TABLE => REVENUE_SQL,
        _ => return crate::daily::empty_table(ctx, t).await,
    };
    let mut df = scratch.sql(sql).await?;
    if t == METRICS_TABLE {
        df = df.with_param_values(vec![ScalarValue::Utf8(Some(DEFAULT_CURRENCY.into()))])?;
    }
    Ok(df.limit(0, Some(0))?)
}

/// The typed silver tables gold reads.
const TYPED_INPUTS: [&str; 2] = ["purchases", "signups"];

/// Register gold's inputs in `work`, restricted to `dates`. A silver table
/// with no rows anywhere (no signups yet) is registered empty, with the
/// schema its SQL produces.
async fn register_inputs(
    ctx: &SessionContext,
    work: &SessionContext,
    full: bool,
    dates: &BTreeSet<i32>,
) -> Result<()> {
    let restrict = |df: DataFrame, column: &str| -> Result<DataFrame> {
        Ok(if full {
            df
        } else {
            df.filter(derive::in_days(column, dates))?
        })
    };
    // (Silver with no events at all: every one was retracted. The dates
    // gold had are recomputed empty, so their rows go.)
    let events = if ctx.table_exist(silver::EVENTS_TABLE)? {
        restrict(ctx.table(silver::EVENTS_TABLE).await?, "event_date")?
    } else {
        silver::empty_table(work, silver::EVENTS_TABLE).await?
    };
    work.register_table(silver::EVENTS_TABLE, events.into_view())?;
    let sessions = if ctx.table_exist(silver::SESSIONS_TABLE)? {
        restrict(ctx.table(silver::SESSIONS_TABLE).await?, "session_date")?
    } else {
        silver::sessions(work).await?.limit(0, Some(0))?
    };
    work.register_table(silver::SESSIONS_TABLE, sessions.into_view())?;
    for (table, _, sql) in silver::typed() {
        if !TYPED_INPUTS.contains(table) {
            continue;
        }
        let df = if ctx.table_exist(*table)? {
            restrict(ctx.table(*table).await?, "event_date")?
        } else {
            work.sql(sql)
                .await?
                .drop_columns(&["_warnings"])?
                .limit(0, Some(0))?
        };
        work.register_table(*table, df.into_view())?;
    }
    Ok(())
}
