//! Session-id patches: a date whose built rows changed only in their
//! `session_id` (a late event starts a session earlier, or joins two) gets
//! its built files copied with that one column rewritten
//! ([`crate::patch`]), in every silver table that carries it, instead of
//! a rewrite of the whole partition through DataFusion. The new rows of a
//! grown date are appended beside them as one more file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Int32Type};
use datafusion::prelude::SessionContext;

use super::reach::Day;
use super::{EVENTS_TABLE, typed};
use crate::lake::Lake;
use crate::log::LakeState;
use crate::patch::{self, Planned};
use crate::time::format_date32;

/// Per date, the changed events.
pub type Ids = BTreeMap<Day, Changes>;

/// One date's changed events: each one's new session id, and their users
/// (the files are sorted by user: [`patch::plan`] reads only the pages
/// that may hold them).
#[derive(Debug, Default)]
pub struct Changes {
    pub sessions: HashMap<String, String>,
    pub users: BTreeSet<String>,
}

impl Changes {
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Plan the patch of one of the date's files.
    fn plan(&self, file: &Path) -> Result<Planned> {
        let near = patch::Near {
            column: "user_id",
            values: &self.users,
        };
        patch::plan(file, "event_id", "session_id", &self.sessions, Some(near))
    }
}

/// The rows of query `sql` (`event_date, event_id, session_id, user_id`),
/// per date.
pub async fn ids_of(ctx: &SessionContext, sql: &str) -> Result<Ids> {
    let batches = ctx
        .sql(&format!(
            "SELECT arrow_cast(event_date, 'Int32') AS d, \
             arrow_cast(event_id, 'Utf8') AS id, arrow_cast(session_id, 'Utf8') AS s, \
             arrow_cast(user_id, 'Utf8') AS u \
             FROM ({sql}) q"
        ))
        .await?
        .collect()
        .await?;
    let mut out = Ids::new();
    for b in &batches {
        let (d, id, s, u) = (
            b.column(0).as_primitive::<Int32Type>(),
            b.column(1).as_string::<i32>(),
            b.column(2).as_string::<i32>(),
            b.column(3).as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            if d.is_valid(i) && id.is_valid(i) && s.is_valid(i) && u.is_valid(i) {
                let day = out.entry(d.value(i)).or_default();
                day.sessions
                    .insert(id.value(i).to_string(), s.value(i).to_string());
                day.users.insert(u.value(i).to_string());
            }
        }
    }
    Ok(out)
}

/// Rows of query `sql` (with an `event_date` column) per date.
pub async fn counts_of(ctx: &SessionContext, sql: &str) -> Result<BTreeMap<Day, usize>> {
    let batches = ctx
        .sql(&format!(
            "SELECT arrow_cast(event_date, 'Int32') AS d, count(*) AS n FROM ({sql}) q GROUP BY 1"
        ))
        .await?
        .collect()
        .await?;
    let mut out = BTreeMap::new();
    for b in &batches {
        let d = b.column(0).as_primitive::<Int32Type>();
        let n = datafusion::arrow::compute::cast(b.column(1), &DataType::Int64)?;
        let n = n.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            out.insert(d.value(i), n.value(i) as usize);
        }
    }
    Ok(out)
}

/// The built files of `table`'s partition for `day`.
pub fn built_files(lake: &Lake, state: &LakeState, table: &str, day: Day) -> Vec<PathBuf> {
    state
        .tables
        .get(table)
        .and_then(|t| t.get(&format_date32(day)))
        .map(|p| p.files.values().map(|f| lake.path(&f.path)).collect())
        .unwrap_or_default()
}

/// The events files of each date in `ids`, read and planned. A date whose
/// built files do not hold each changed event exactly once is left out
/// (and rewritten instead): the patch must account for every change.
/// Event ids are unique within a date of `events`, so counting the rows
/// whose id is in `ids` says it. A row counts only where its user is one
/// of the date's changed users: the typed tables' rows of the same events
/// (the same users) are then found where their plan looks, too.
pub async fn plan(lake: &Lake, state: &LakeState, ids: Ids) -> Result<Plans> {
    let mut tasks = tokio::task::JoinSet::new();
    for (day, ids) in ids {
        let files = built_files(lake, state, EVENTS_TABLE, day);
        tasks.spawn_blocking(move || -> Result<_> {
            let planned = files
                .iter()
                .map(|f| ids.plan(f))
                .collect::<Result<Vec<Planned>>>()?;
            let found: usize = planned.iter().map(|p| p.matched).sum();
            Ok((day, Arc::new(ids), planned, found))
        });
    }
    let mut plans = Plans::default();
    while let Some(done) = tasks.join_next().await {
        let (day, ids, planned, found) = done.context("a patch plan panicked")??;
        if found == ids.len() {
            plans.events.insert(day, planned);
            plans.ids.insert(day, ids);
        } else {
            crate::fault::trace_note(&format!(
                "{} not patched: {found} of its {} changed events found in its files",
                format_date32(day),
                ids.len()
            ));
        }
    }
    Ok(plans)
}

/// The patches of an incremental run (see [`plan`]).
#[derive(Default)]
pub struct Plans {
    ids: BTreeMap<Day, Arc<Changes>>,
    events: BTreeMap<Day, Vec<Planned>>,
}

impl Plans {
    pub fn days(&self) -> BTreeSet<Day> {
        self.ids.keys().copied().collect()
    }

    /// Write every patched file, of events and of each typed table, under
    /// `root/patched/TABLE/event_date=…/`. Returns the files rewritten
    /// (the others are links to the built ones).
    pub async fn write(self, lake: &Lake, state: &LakeState, root: &Path) -> Result<usize> {
        let out_dir = |table: &str, day: Day| {
            root.join("patched")
                .join(table)
                .join(format!("event_date={}", format_date32(day)))
        };
        let mut tasks = tokio::task::JoinSet::new();
        for (day, planned) in self.events {
            let dir = out_dir(EVENTS_TABLE, day);
            tasks.spawn_blocking(move || write_planned(planned, &dir));
        }
        for (day, ids) in &self.ids {
            for (table, _, _) in typed() {
                let files = built_files(lake, state, table, *day);
                if files.is_empty() {
                    continue;
                }
                let (ids, dir) = (ids.clone(), out_dir(table, *day));
                tasks.spawn_blocking(move || {
                    let planned = files
                        .iter()
                        .map(|f| ids.plan(f))
                        .collect::<Result<Vec<Planned>>>()?;
                    write_planned(planned, &dir)
                });
            }
        }
        let mut rewritten = 0;
        while let Some(done) = tasks.join_next().await {
            rewritten += done.context("a patch panicked")??;
        }
        Ok(rewritten)
    }
}

fn write_planned(planned: Vec<Planned>, dir: &Path) -> Result<usize> {
    fs::create_dir_all(dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    let mut rewritten = 0;
    for (i, p) in planned.into_iter().enumerate() {
        let dst = dir.join(format!("patched-{i:05}.parquet"));
        let written = p.write(&dst)?;
        if written {
            // Flushed in the background while the run goes on, so the
            // commit's fsync of every published file finds it clean
            // (DataFusion's outputs get the same from `lake::presync`): 5M
            // late batch, the commit 68-77 -> 34 ms, the run ~3% faster.
            // Not here: a patched events file is a whole date's (~8 MB at
            // 5M), and waiting for its flush held the patch step ~0.1 s.
            let file = fs::File::open(&dst)
                .with_context(|| format!("failed to open `{}`", dst.display()))?;
            crate::lake::presync_file(file);
        }
        rewritten += usize::from(written);
    }
    Ok(rewritten)
}

/// Move the files written by [`Plans::write`] into each table's staged
/// partitions (`staged(table)/event_date=…/`), beside any new rows staged
/// there.
pub fn stage(root: &Path, staged: impl Fn(&str) -> PathBuf) -> Result<()> {
    let patched = root.join("patched");
    if !patched.is_dir() {
        return Ok(());
    }
    for table in fs::read_dir(&patched)? {
        let table = table?;
        let name = table.file_name().to_string_lossy().into_owned();
        for part in fs::read_dir(table.path())? {
            let part = part?;
            let to = staged(&name).join(part.file_name());
            fs::create_dir_all(&to)?;
            for file in fs::read_dir(part.path())? {
                let file = file?;
                let dest = to.join(file.file_name());
                fs::rename(file.path(), &dest)
                    .with_context(|| format!("failed to stage `{}`", dest.display()))?;
            }
        }
    }
    Ok(())
}
