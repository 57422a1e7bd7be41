//! Daily tables of the lake's own: `LAKE/daily/NAME.sql` adds gold table
//! `NAME` (`LAKE/gold/NAME/event_date=…/`), a daily aggregate over silver
//! tables that gold keeps up to date like its own (DESIGN.md §3).
//!
//! Its SQL runs once per date, over that date's partitions of the silver
//! tables it names (`sessions` by `session_date`), so it cannot see
//! another date: a date's rows depend only on that date's silver rows, and
//! recomputing only the dirty dates gives what a full rebuild gives. A
//! date is dirty when a silver partition it reads changed, or the file
//! did (each table has its own fingerprint: editing one recomputes only
//! that table). Every row must carry the `event_date` it was computed for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Date32Type};
use datafusion::prelude::{DataFrame, SessionContext};
use serde::Serialize;

use crate::derive;
use crate::dirty;
use crate::error::Failure;
use crate::lake::Lake;
use crate::log::LakeState;
use crate::silver;
use crate::time::format_date32;

/// Where a lake keeps its own daily tables' SQL.
pub const DAILY_DIR: &str = "daily";

/// One of the lake's own daily tables.
#[derive(Debug)]
pub struct Daily {
    pub name: &'static str,
    /// Lake-relative directory of its partitions.
    pub dir: &'static str,
    pub sql: &'static str,
    /// The file it came from.
    pub source: String,
    /// The silver tables it reads, or why they are not known (its SQL
    /// does not parse, or names a table that is not silver's).
    pub reads: std::result::Result<Vec<&'static str>, String>,
}

static DAILY: OnceLock<Vec<Daily>> = OnceLock::new();

/// The lake's own daily tables (none until [`load`]).
pub fn own() -> &'static [Daily] {
    DAILY.get().map_or(&[], Vec::as_slice)
}

/// What `status` says of one.
#[derive(Debug, Clone, Serialize)]
pub struct OwnDaily {
    pub table: String,
    pub source: String,
    /// The silver tables it reads.
    pub reads: Vec<String>,
    /// Why the next gold run will fail on it (its SQL does not parse, or
    /// reads a table that is not silver's), if it will.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// [`own`], for `status`.
pub fn listed() -> Vec<OwnDaily> {
    own()
        .iter()
        .map(|d| OwnDaily {
            table: d.name.to_string(),
            source: d.source.clone(),
            reads: d
                .reads
                .as_ref()
                .map(|r| r.iter().map(|t| t.to_string()).collect())
                .unwrap_or_default(),
            problem: d.reads.as_ref().err().cloned(),
        })
        .collect()
}

/// Read `LAKE/daily/*.sql` once for this process, after the typed tables
/// (a daily table reads silver's, and may not take one's name). A name
/// that is not lowercase letters, digits and `_`, or that is another table's, is a
/// usage error naming the file; SQL that does not parse is reported by
/// the gold run that needs it.
pub fn load(lake: &Lake) -> Result<()> {
    if DAILY.get().is_some() {
        return Ok(());
    }
    let silver_tables = silver::all_tables();
    let mut out = Vec::new();
    for (name, path) in crate::lake::sql_files(&lake.path(DAILY_DIR))? {
        if let Some(problem) = crate::lake::table_name_problem(&name, &path, "a daily table") {
            return Err(Failure::Usage(problem).into());
        }
        let taken = silver::RESERVED.contains(&name.as_str())
            || silver_tables.contains(&name.as_str())
            || crate::gold::TABLES.iter().any(|(t, _)| *t == name);
        if taken {
            return Err(Failure::Usage(format!(
                "`{}`: `{name}` is another table's name",
                path.display()
            ))
            .into());
        }
        let sql = crate::lake::read_sql_file(&path)?;
        let reads = match crate::state::tables_or_error(&sql) {
            Err(e) => {
                // Running out of input has no position of the parser's.
                let e = e.to_string();
                let end = crate::state::end_if_eof(&e, &sql)
                    .map(|(l, c)| format!(" (where it ends: Line: {l}, Column: {c})"))
                    .unwrap_or_default();
                Err(format!("its SQL does not parse: {e}{end}"))
            }
            Ok(names) => {
                let other: Vec<&String> = names
                    .iter()
                    .filter(|n| !silver_tables.contains(&n.as_str()))
                    .collect();
                if let Some(t) = other.first() {
                    Err(format!(
                        "it reads `{t}`, which is not a silver table (a daily table reads \
                         silver's: {})",
                        silver_tables.join(", ")
                    ))
                } else if names.is_empty() {
                    Err("it reads no silver table".to_string())
                } else {
                    Ok(silver_tables
                        .iter()
                        .copied()
                        .filter(|t| names.contains(*t))
                        .collect())
                }
            }
        };
        let name: &'static str = Box::leak(name.into_boxed_str());
        out.push(Daily {
            name,
            dir: Box::leak(format!("gold/{name}").into_boxed_str()),
            sql: Box::leak(sql.into_boxed_str()),
            source: path.display().to_string(),
            reads,
        });
    }
    let _ = DAILY.set(out);
    Ok(())
}

impl Daily {
    /// Its SQL and name (another file name is another table).
    pub fn fingerprint(&self) -> String {
        dirty::fingerprint(&["daily", self.name, self.sql, crate::engine::READER_TYPES])
    }

    /// The silver tables it reads, or the usage error that names its file.
    pub fn reads(&self) -> Result<&[&'static str]> {
        self.reads
            .as_deref()
            .map_err(|why| self.usage(why.to_string()))
    }

    /// The silver partitions (`table/date`) its date `date` reads.
    pub fn inputs(&self, date: &str) -> Vec<String> {
        self.reads
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|t| dirty::input_key(t, date))
            .collect()
    }

    /// Its dirty dates: those gold has (see [`crate::gold::wanted`]) whose
    /// inputs changed since its build, never built, or built with other
    /// SQL.
    pub fn dirty(&self, state: &LakeState) -> Vec<dirty::DirtyPartition> {
        let wanted: BTreeMap<String, Vec<String>> = crate::gold::wanted(state)
            .into_keys()
            .map(|d| {
                let inputs = self.inputs(&d);
                (d, inputs)
            })
            .collect();
        dirty::dirty_partitions(state, self.name, &self.fingerprint(), &wanted)
    }

    /// A usage error about it: `what` is wrong with its file.
    fn usage(&self, what: String) -> anyhow::Error {
        Failure::in_file(
            format!("daily table `{}` ({}):", self.name, self.source),
            what,
        )
    }

    /// Its SQL planned over `work`'s silver tables, with an `event_date`
    /// DATE column, its columns of [`crate::engine::reader_type`]s and
    /// none Parquet cannot store; what fails here is the file's (a usage
    /// error).
    async fn plan(&self, work: &SessionContext) -> Result<DataFrame> {
        let df = crate::engine::planned(work, self.sql, Default::default())
            .await
            .map_err(|e| {
                if crate::engine::is_usage_error(&e) {
                    self.usage(format!(
                        "its SQL does not plan: {}",
                        crate::engine::planning_error(&e)
                    ))
                } else {
                    anyhow::Error::new(e).context(format!("planning {}", self.source))
                }
            })?;
        if let Some(f) = crate::engine::time_dependent_function(df.logical_plan()) {
            return Err(self.usage(format!(
                "its SQL {}",
                crate::engine::time_dependent_problem(&f)
            )));
        }
        match df.schema().field_with_unqualified_name("event_date") {
            Ok(f) if *f.data_type() == DataType::Date32 => {
                crate::engine::as_stored(df, |why| self.usage(why))
            }
            Ok(f) => Err(self.usage(format!("its event_date is {}, not a DATE", f.data_type()))),
            Err(_) => Err(self.usage("it returns no event_date column".to_string())),
        }
    }

    /// Why a gold run would leave it out before reading a row (its SQL
    /// does not parse or plan, reads a table that is not silver's, or
    /// returns no DATE `event_date`), planned over empty silver tables;
    /// `None` if nothing. (SQL that fails on the rows is found by a run.)
    pub async fn problem(&self, ctx: &SessionContext) -> Result<Option<anyhow::Error>> {
        let reads = match self.reads() {
            Ok(reads) => reads,
            Err(e) => return Ok(Some(e)),
        };
        let work = crate::engine::scratch(ctx);
        for t in reads {
            work.register_table(*t, silver::empty_provider(ctx, t).await?)?;
        }
        match self.plan(&work).await {
            Ok(_) => Ok(None),
            Err(e) if crate::error::exit_code(&e) == crate::error::EXIT_USAGE => Ok(Some(e)),
            Err(e) => Err(e),
        }
    }

    /// Run it for `date` over `ctx`'s silver tables (the lake's), and write
    /// its rows under `out`. Its SQL sees only that date's rows.
    pub async fn compute(&self, ctx: &SessionContext, date: i32, out: &Path) -> Result<()> {
        let work = crate::engine::scratch(ctx);
        let day = BTreeSet::from([date]);
        for t in self.reads()? {
            let column = if *t == silver::SESSIONS_TABLE {
                "session_date"
            } else {
                "event_date"
            };
            let rows = if ctx.table_exist(*t)? {
                ctx.table(*t).await?.filter(derive::in_days(column, &day))?
            } else {
                silver::empty_table(ctx, t).await?
            };
            let _ = work.deregister_table(*t)?;
            work.register_table(*t, rows.into_view())?;
        }
        let df = self.plan(&work).await?;
        let usage = |what: String| self.usage(what);
        // An error its expressions raise on the rows (a cast that does not
        // hold) is the file's, like one in planning: gold leaves this table
        // out and builds the rest.
        let batches = df.collect().await.map_err(|e| {
            if crate::engine::is_data_error(&e) {
                let e = e.to_string();
                usage(format!(
                    "its SQL failed on the rows of {}: {e}{}",
                    format_date32(date),
                    crate::engine::data_error_hint(&e)
                ))
            } else {
                anyhow::Error::new(e).context(format!(
                    "running {} for {}",
                    self.source,
                    format_date32(date)
                ))
            }
        })?;
        for b in &batches {
            let i = b.schema().index_of("event_date")?;
            let days = b.column(i).as_primitive::<Date32Type>();
            if let Some(k) = (0..days.len()).find(|&k| days.is_null(k) || days.value(k) != date) {
                let got = if days.is_null(k) {
                    "NULL".to_string()
                } else {
                    format_date32(days.value(k))
                };
                return Err(usage(format!(
                    "computing {} it returned a row of event_date {got}: each row is of the \
                     date its input is (select the input's event_date, or group by it)",
                    format_date32(date)
                )));
            }
        }
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(());
        }
        let rows = work.read_batches(batches)?;
        derive::write_partitioned(rows, out, "event_date", self.name, derive::Index::None).await
    }
}

/// An empty relation with daily table `name`'s columns (its SQL over
/// empty silver tables), for `query` of one built with no rows.
pub async fn empty_table(ctx: &SessionContext, name: &str) -> Result<DataFrame> {
    let d = own()
        .iter()
        .find(|d| d.name == name)
        .context("unknown daily table")?;
    let scratch = crate::engine::scratch(ctx);
    for t in d.reads()? {
        let empty = silver::empty_table(&scratch, t).await?;
        let _ = scratch.deregister_table(*t)?;
        scratch.register_table(*t, empty.into_view())?;
    }
    Ok(d.plan(&scratch).await?.limit(0, Some(0))?)
}

/// Gold tables in the log that no file defines any more (a daily file
/// removed): (table, directory).
pub fn dropped(state: &LakeState) -> Vec<(String, String)> {
    let current: Vec<&str> = crate::gold::all_tables()
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    derive::undefined_tables(state, "gold", &current)
}
