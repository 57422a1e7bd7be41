//! Typed tables refreshed on their own (DESIGN.md §5).
//!
//! A lake's own typed table (`LAKE/typed/NAME.sql`) has a fingerprint of
//! its own ([`silver::Fingerprints::of`]). Adding, editing or renaming one
//! file makes only that table's partitions dirty, and they are rebuilt
//! here from the built `events` of each date: no bronze is read, no
//! session recomputed, no other table rewritten, and gold recomputes only
//! the dates of a table it reads (its build records that table's
//! partitions' versions). A file removed drops its table's partitions.
//!
//! This runs before the rest of a silver run, in a commit of its own, so
//! that run's incremental steps (which copy a date's other users' built
//! typed rows, or append to them) build on rows of the current SQL. Dates
//! that run recomputes for every user are left to it, and nothing runs
//! when it rebuilds everything. A crash between the two commits leaves
//! each whole: the next run finds what is still dirty.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Instant;

use anyhow::Result;
use datafusion::prelude::SessionContext;

use super::reach::Day;
use super::rebuild::{
    Options, TYPED_ROW_BYTES, Warnings, chunk_dates, dropped_tables, row_budget, typed_plans,
    typed_queries_over_events,
};
use super::{EVENTS_TABLE, Fingerprints, typed, typed_dirty};
use crate::derive::{self, Output, Written};
use crate::engine::{self, Engine};
use crate::lake::Lake;
use crate::log::{Build, Commit, LakeState};
use crate::silver;
use crate::time::{format_date32, parse_date32};

/// What a refresh committed.
#[derive(Debug)]
pub(super) struct Refreshed {
    pub version: u64,
    /// Per typed table, the dates rebuilt.
    pub tables: BTreeMap<String, Vec<String>>,
    /// The partitions whose files changed.
    pub written: Vec<Written>,
    /// Tables whose file was removed: their partitions went.
    pub dropped: Vec<String>,
    pub warnings: silver::TypedWarnings,
    /// The dirty partitions it rebuilt, and why.
    pub dirty: Vec<crate::dirty::DirtyPartition>,
}

/// Rebuild the typed partitions [`typed_dirty`] finds, except on the
/// `skip` dates, and drop the tables no file defines any more, in one
/// commit. `None` when there was nothing to do.
pub(super) fn refresh(
    lake: &Lake,
    state: &LakeState,
    opts: &Options,
    skip: &BTreeSet<Day>,
    started: Instant,
) -> Result<Option<Refreshed>> {
    let fps = Fingerprints::new(&opts.settings);
    // (name, directory, SQL) → its dates to rebuild.
    let mut stale: BTreeMap<silver::Typed, BTreeSet<Day>> = BTreeMap::new();
    let mut dirty = Vec::new();
    for p in typed_dirty(state, &fps) {
        let day = parse_date32(&p.partition).map_err(anyhow::Error::msg)?;
        if skip.contains(&day) {
            continue;
        }
        let table = *typed()
            .iter()
            .find(|(t, _, _)| *t == p.table)
            .expect("typed_dirty lists typed tables");
        stale.entry(table).or_default().insert(day);
        dirty.push(p);
    }
    let dropped = dropped_tables(state);
    if stale.is_empty() && dropped.is_empty() {
        return Ok(None);
    }
    let _part = crate::fault::part("silver-typed");

    let (staging, engine_opts) = derive::staging_with_spill(lake, "silver-typed", &opts.engine)?;
    let rows_of: BTreeMap<Day, usize> = state
        .partitions(EVENTS_TABLE)
        .filter_map(|(d, p)| Some((parse_date32(d).ok()?, p.rows() as usize)))
        .collect();
    let warnings = crate::interrupt::block_on(async {
        let engine = Engine::new(&engine_opts)?;
        engine.read_committed(lake, state)?;
        let only = HashSet::from([EVENTS_TABLE.to_string()]);
        let ctx = engine.context_of(lake, Some(&only)).await?;
        // Built `events` with no rows left (every input retracted or
        // erased) has no file to register it from: it is empty.
        engine
            .register_empty_tables(&ctx, lake, Some(&only))
            .await?;
        let work = engine.bare()?;
        engine::push_filters_into_scans(&work);
        let budget = row_budget(&work, TYPED_ROW_BYTES);
        let mut warnings = Warnings::default();
        let mut checked = false;
        // Tables stale on the same dates (the usual case: every date of a
        // new or edited table) share each chunk's scan of `events`.
        let mut groups: BTreeMap<&BTreeSet<Day>, Vec<silver::Typed>> = BTreeMap::new();
        for (table, days) in &stale {
            groups.entry(days).or_default().push(*table);
        }
        for (days, tables) in groups {
            let counts: Vec<(Day, usize)> = days
                .iter()
                .map(|d| (*d, rows_of.get(d).copied().unwrap_or(0)))
                .collect();
            for chunk in chunk_dates(&counts, budget) {
                register_events_of(&ctx, &work, &chunk).await?;
                if !checked {
                    // Every typed query plans, and the lake's own are one
                    // row per event, as a full rebuild checks.
                    typed_plans(&work).await?;
                    checked = true;
                }
                warnings.extend(
                    typed_queries_over_events(&work, &staging.join("typed"), &tables).await?,
                );
            }
        }
        anyhow::Ok(warnings)
    })?;
    crate::fault::point("staged")?;

    let mut outputs = Vec::new();
    for ((table, dir, _), days) in &stale {
        let parts: BTreeSet<String> = days.iter().map(|d| format_date32(*d)).collect();
        outputs.push(Output::replacing(
            state,
            table,
            dir,
            staging.join("typed").join(table),
            "event_date",
            &parts,
            false,
        ));
    }
    outputs.extend(derive::dropped_outputs(state, &dropped, &staging));
    let mut commit = Commit::next(state, "silver", opts.processing_time);
    commit.settings = silver::commit_settings(&opts.settings);
    commit.settings.insert("mode".into(), "typed".into());
    derive::record_dropped(&mut commit, &dropped);
    let written = derive::replace_partitions(
        lake,
        state,
        &mut commit,
        &outputs,
        &derive::run_id("silver-typed", state),
    )?;
    // Each rebuilt partition read the date's built events: it records the
    // bronze version those were built from, and its own fingerprint.
    let events = state.builds.get(EVENTS_TABLE);
    for ((table, _, _), days) in &stale {
        for d in days {
            let partition = format_date32(*d);
            let inputs = events
                .and_then(|b| b.get(&partition))
                .map(|(_, b)| b.inputs.clone())
                .unwrap_or_default();
            commit.builds.push(Build {
                table: table.to_string(),
                partition,
                inputs,
                fingerprint: fps.of(table),
            });
        }
    }
    derive::finish_commit(lake, &commit)?;
    derive::remove_dropped_dirs(lake, &dropped);
    crate::fault::trace(started, "typed tables refreshed");
    let all_days: BTreeSet<Day> = stale.values().flatten().copied().collect();
    Ok(Some(Refreshed {
        version: commit.version,
        tables: stale
            .iter()
            .map(|((t, _, _), days)| {
                (
                    t.to_string(),
                    days.iter().map(|d| format_date32(*d)).collect(),
                )
            })
            .collect(),
        written,
        dropped: dropped.into_iter().map(|(t, _)| t).collect(),
        warnings: warnings.within(&all_days),
        dirty,
    }))
}

/// Register in `work`, as `events`, the lake's built events of `days`.
async fn register_events_of(
    ctx: &SessionContext,
    work: &SessionContext,
    days: &BTreeSet<Day>,
) -> Result<()> {
    let rows = ctx
        .table(EVENTS_TABLE)
        .await?
        .filter(derive::in_days("event_date", days))?;
    let _ = work.deregister_table(EVENTS_TABLE)?;
    work.register_table(EVENTS_TABLE, rows.into_view())?;
    Ok(())
}
