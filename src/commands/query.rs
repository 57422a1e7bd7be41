//! `evlake query`: ad-hoc SQL over the logical tables.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::json::writer::{JsonArray, LineDelimited};
use datafusion::execution::context::SQLOptions;
use futures::StreamExt;

use super::Format;
use crate::engine;
use crate::error::Failure;
use crate::lake::Lake;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake query \"SELECT event_date, count(*) AS events FROM bronze_events GROUP BY 1 ORDER BY 1\"
  evlake query \"SELECT * FROM bronze_events WHERE is_late\" --format csv > late.csv
  evlake query \"SELECT * FROM daily_metrics\" --format parquet > daily.parquet
  evlake query \"SHOW TABLES\"
  evlake query -f reports/weekly.sql --format csv   # SQL kept in a file

Tables (bronze_events, bronze_late and quarantine always; the others once built;
`evlake tables` lists them with columns):
  bronze_events, bronze_late, quarantine,
  events, sessions, purchases, searches, signups, cart_adds, ledger,
  daily_metrics, daily_revenue_by_currency.
A bad query or an unknown table exits 2 and changes nothing.")]
pub struct Args {
    /// The SQL query; `-` reads it from stdin
    #[arg(required_unless_present = "file")]
    pub sql: Option<String>,

    /// Read the SQL query from this file (comments and a final `;` are
    /// fine; `-` is stdin), e.g. -f reports/daily.sql
    #[arg(short = 'f', long, value_name = "FILE", conflicts_with = "sql")]
    pub file: Option<std::path::PathBuf>,

    /// Output format, e.g. --format csv
    #[arg(long, value_enum, ignore_case = true, default_value = "table")]
    pub format: Format,

    #[command(flatten)]
    pub engine: super::EngineArgs,
}

/// The query's text: the argument, stdin (`-`) or `--file`.
fn sql_text(args: &Args) -> Result<String> {
    use std::io::{IsTerminal, Read};
    let usage = |msg: String| anyhow::Error::from(crate::error::Failure::Usage(msg));
    let stdin = || -> Result<String> {
        if std::io::stdin().is_terminal() {
            super::status("Reading", "the query from the terminal; end it with Ctrl-D");
        }
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| usage(format!("cannot read the query from stdin: {e}")))?;
        Ok(crate::lake::without_bom(s))
    };
    let sql = match (&args.sql, &args.file) {
        (_, Some(path)) if path.as_os_str() == "-" => stdin()?,
        (_, Some(path)) => std::fs::read_to_string(path)
            .map(crate::lake::without_bom)
            .map_err(|e| {
                // UTF-16, as PowerShell's `>` and Notepad may save a file.
                let utf16 = e.kind() == std::io::ErrorKind::InvalidData
                    && std::fs::read(path).is_ok_and(|b| {
                        b.starts_with(&[0xFF, 0xFE]) || b.starts_with(&[0xFE, 0xFF])
                    });
                let why = if utf16 {
                    "it is UTF-16 text; save it as UTF-8".to_string()
                } else {
                    e.to_string()
                };
                usage(format!(
                    "cannot read the SQL file `{}`: {why}",
                    path.display()
                ))
            })?,
        (Some(s), None) if s == "-" => stdin()?,
        (Some(s), None) => s.clone(),
        (None, None) => unreachable!("clap requires SQL or --file"),
    };
    if sql.trim().is_empty() {
        return Err(usage("no SQL given: the query is empty".into()));
    }
    Ok(sql)
}

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    args.format.check_output()?;
    let sql = sql_text(&args)?;
    let lake = Lake::new(lake_dir);
    lake.require()?;
    let cfg = crate::config::Config::load(&lake)?;
    let engine_opts = args.engine.options(&cfg)?;
    // Only to tell whether the tables read are up to date: settings that
    // do not parse fail the commands that use them, not a query.
    let configured = super::status::configured(&cfg).ok();
    let rt = crate::engine::runtime()?;
    let mut out = Streamed::new(args.format);
    let mut behind = Vec::new();
    crate::committed::read_retrying(&lake, |state| {
        behind = rt
            .block_on(stream(&lake, state, &engine_opts, &sql, &mut out))
            .map_err(|e| out.final_if_started(e))?
            .zip(configured.as_ref())
            .map(|(tables, configured)| self::behind(state, configured, &tables))
            .unwrap_or_default();
        Ok(())
    })?;
    out.finish()?;
    for (verb, line) in behind {
        super::status(verb, line);
    }
    Ok(())
}

/// What a query over `tables` read that is not up to date (what `evlake
/// run` would recompute), as status lines: a `Warning` per table with
/// dirty partitions, then those partitions as `status` lists them; and
/// for a gold table, the dates on which silver itself is behind (gold is
/// not dirty there until silver is rebuilt, but its rows predate the
/// latest ingest or settings all the same).
fn behind(
    state: &crate::log::LakeState,
    configured: &crate::pipeline::Configured,
    tables: &std::collections::HashSet<String>,
) -> Vec<(&'static str, String)> {
    let derived = super::tables::known_tables()
        .into_iter()
        .any(|(t, layer, _)| matches!(layer, "silver" | "gold") && tables.contains(t));
    if !derived {
        return Vec::new();
    }
    let mut dirty = crate::pipeline::all_dirty(state, configured);
    // Silver's dates that are behind, which gold's tables are behind on
    // too: from the same list (`run` recomputes those dates).
    let silver: Vec<String> = dirty
        .iter()
        .filter(|d| d.table == crate::silver::EVENTS_TABLE)
        .map(|d| d.partition.clone())
        .collect();
    dirty.retain(|d| tables.contains(&d.table));
    let mut named: Vec<&str> = Vec::new();
    for d in &dirty {
        if !named.contains(&d.table.as_str()) {
            named.push(&d.table);
        }
    }
    let mut out = Vec::new();
    for t in &named {
        let n = dirty.iter().filter(|d| d.table == *t).count();
        out.push((
            "Warning",
            format!(
                "`{t}` is not up to date on {n} partition(s) (below): the rows read there \
                 are as last built; `evlake run` brings them up to date"
            ),
        ));
    }
    out.extend(super::dirty_lines(&dirty).into_iter().map(|l| ("Dirty", l)));
    if let (Some(first), Some(last)) = (silver.first(), silver.last()) {
        let dates = if silver.len() == 1 {
            first.clone()
        } else {
            format!("{first}..{last}")
        };
        for (t, _) in crate::gold::all_tables() {
            if tables.contains(t) && !named.contains(&t) {
                out.push((
                    "Warning",
                    format!(
                        "`{t}` is built from silver, which is not up to date on {} date(s) \
                         ({dates}): its rows there predate the latest ingest or settings; `evlake run` \
                         brings them up to date",
                        silver.len()
                    ),
                ));
            }
        }
    }
    out
}

/// Plan `sql` over the lake as of `state` and write its rows to `out` as
/// they come: CSV and JSON never hold the whole result (a `SELECT *` of
/// a big table is written in bounded memory). The tables it read, when
/// it names them.
async fn stream(
    lake: &Lake,
    state: &crate::log::LakeState,
    engine_opts: &engine::EngineOptions,
    sql: &str,
    out: &mut Streamed,
) -> Result<Option<std::collections::HashSet<String>>> {
    let engine = engine::Engine::new(engine_opts)?;
    engine.read_committed(lake, state)?;
    if writes(&engine.bare()?, sql) {
        return Err(Failure::Usage(READ_ONLY.to_string()).into());
    }
    let only = referenced_tables(&engine.bare()?, sql);
    let ctx = engine.context_of(lake, only.as_ref()).await?;
    engine
        .register_empty_tables(&ctx, lake, only.as_ref())
        .await?;
    // Read-only: INSERT INTO a lake table or COPY ... TO would write files
    // no commit records, into table directories that outside readers glob
    // (and the next writer deletes them). CREATE, DROP and SET would change
    // only this one statement's session, so `DROP TABLE events` would exit
    // 0 having done nothing.
    let read_only = SQLOptions::new()
        .with_allow_dml(false)
        .with_allow_ddl(false)
        .with_allow_statements(false);
    let failed = |e| failed(e, sql);
    let df = engine::planned(&ctx, sql, read_only)
        .await
        .map_err(failed)?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    // Before any row is written: else a CSV's header, or a Parquet
    // file's first bytes, then an error.
    format_holds(&schema, out.format)?;
    out.schema = Some(schema);
    // Tests hold a query here while a writer replaces its files.
    crate::fault::pause("query-planned");
    let mut rows = df.execute_stream().await.map_err(failed)?;
    while let Some(batch) = rows.next().await {
        out.write(&batch.map_err(failed)?)?;
    }
    Ok(only)
}

/// What `query` says of SQL that would write.
const READ_ONLY: &str = "evlake query is read-only: INSERT, UPDATE, DELETE, MERGE, TRUNCATE and \
                         COPY are not allowed (the lake changes only through ingest, silver, \
                         gold and snapshot commits; `--format parquet > rows.parquet` writes a \
                         query's rows to a file)";

/// Is `sql` a statement that writes (INSERT, UPDATE, DELETE, MERGE,
/// TRUNCATE, COPY)? Said before planning: `INSERT INTO events VALUES
/// (1)` failed on its row's length first, and never heard it was one.
fn writes(ctx: &datafusion::prelude::SessionContext, sql: &str) -> bool {
    use datafusion::sql::parser::Statement;
    use datafusion::sql::sqlparser::ast;
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    match state.sql_to_statement(sql, &dialect) {
        Ok(Statement::CopyTo(_)) => true,
        Ok(Statement::Statement(s)) => matches!(
            *s,
            ast::Statement::Insert(_)
                | ast::Statement::Update { .. }
                | ast::Statement::Delete(_)
                | ast::Statement::Merge { .. }
                | ast::Statement::Truncate { .. }
                | ast::Statement::Copy { .. }
        ),
        _ => false,
    }
}

/// The tables a `SELECT` names (CTEs aside), to register only those;
/// `None` (register every table) for any other statement (`SHOW TABLES`,
/// `EXPLAIN`, ...), one that reads `information_schema`, or SQL that does
/// not parse (planning then reports the error as usual).
fn referenced_tables(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
) -> Option<std::collections::HashSet<String>> {
    use datafusion::sql::parser::Statement;
    use datafusion::sql::sqlparser::ast;
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let statement = state.sql_to_statement(sql, &dialect).ok()?;
    if !matches!(&statement, Statement::Statement(s) if matches!(**s, ast::Statement::Query(_))) {
        return None;
    }
    let mut out = std::collections::HashSet::new();
    for r in state.resolve_table_references(&statement).ok()? {
        if r.schema()
            .is_some_and(|s| s.eq_ignore_ascii_case("information_schema"))
        {
            return None;
        }
        out.insert(r.table().to_string());
    }
    Some(out)
}

/// A query's error, planning or running: a bad query (DataFusion's
/// message, with why an evlake table is not there yet), one that fails on
/// the rows it reads (a cast that does not hold) or a write refused is a
/// usage error (exit 2); anything else a failure.
fn failed(e: datafusion::error::DataFusionError, sql: &str) -> anyhow::Error {
    let text = e.to_string();
    let hint = sql_hint(&text, sql);
    if text.contains("DML not supported") {
        Failure::Usage(format!("{READ_ONLY} ({e})")).into()
    } else if text.contains("DDL not supported") || text.contains("Statement not supported") {
        Failure::Usage(format!(
            "evlake query runs one query, read-only: CREATE, DROP and SET would change \
             nothing (each query has a session of its own; the lake changes only through \
             ingest, silver, gold and snapshot commits, and your own tables are SQL files in \
             LAKE/typed/ and LAKE/daily/) ({e})"
        ))
        .into()
    } else if text.contains("only supports a single SQL statement") {
        Failure::Usage(format!(
            "evlake query runs one SQL statement: give each its own `evlake query` ({e})"
        ))
        .into()
    } else if text.contains("No SQL statements were provided") {
        Failure::Usage("no SQL given: the query holds only comments or `;`".into()).into()
    } else if engine::is_usage_error(&e) {
        // A CTE's name is no table of the lake's to explain.
        let missing = match hint.is_empty() {
            true => not_built_hint(&e),
            false => String::new(),
        };
        Failure::Usage(format!(
            "bad query: {}{missing}{hint}",
            engine::planning_error(&e),
        ))
        .into()
    } else if !hint.is_empty() {
        // The hint says it is the SQL's, not a bug to report.
        let text = match text.split_once("\nThis issue was likely caused by a bug in DataFusion") {
            Some((said, _)) => said,
            None => &text,
        };
        let text = text.trim_start_matches("Internal error: ");
        Failure::Usage(format!("query failed: {text}{hint}")).into()
    } else {
        engine::user_sql_error(e, "query failed")
    }
}

/// How to read a member of `properties` (JSON text), said after an error
/// that shows it was read another way.
const JSON_MEMBERS: &str = engine::json_members!();

/// What a query's error (`text`) most likely means, for slips people
/// bring from other SQL dialects: a string in double quotes (which name
/// a column in SQL), or a member of the JSON text `properties` read as a
/// struct's field (`properties.amount`). (Another engine's functions,
/// `json_extract` among them, are [`engine::planning_error`]'s.)
fn sql_hint(text: &str, sql: &str) -> String {
    let missing = text
        .split_once("No field named ")
        .map(|(_, rest)| rest.lines().next().unwrap_or("").trim_end_matches('.'))
        .map(|name| {
            name.strip_prefix('"')
                .and_then(|n| n.strip_suffix('"'))
                .unwrap_or(name)
        });
    if let Some(name) = missing
        && sql.contains(&format!("\"{name}\""))
    {
        return format!(
            " (in SQL, double quotes name a column: a string takes single quotes, '{name}')"
        );
    }
    if text.contains("Cannot access field") && text.contains("type Utf8") {
        return format!(" ({JSON_MEMBERS})");
    }
    let unknown = text
        .split_once("table '")
        .and_then(|(_, rest)| rest.split_once("' not found"))
        .map(|(full, _)| full.rsplit_once('.').map_or(full, |(_, name)| name));
    if let Some(name) = unknown
        && let Some(recursive) = cte_named(sql, name)
    {
        return if recursive {
            format!(
                " (`{name}` is a CTE of this query: a CTE names only those before it, and \
                 itself, under WITH RECURSIVE, only in the last part of its body, one SELECT \
                 after `UNION [ALL]`, as PostgreSQL's do)"
            )
        } else {
            format!(
                " (`{name}` is a CTE of this query: a CTE names only those before it, and \
                 itself only under `WITH RECURSIVE {name} AS (start UNION ALL step)`)"
            )
        };
    }
    if text.contains("Unexpected empty work table") {
        return " (a recursive CTE named in a subquery of its own step, which PostgreSQL \
                refuses too: name it only in the step's FROM, and aggregate in the query that \
                reads the CTE)"
            .into();
    }
    String::new()
}

/// Whether `sql` has a CTE named `name`, and if so whether its WITH is
/// RECURSIVE.
fn cte_named(sql: &str, name: &str) -> Option<bool> {
    use datafusion::sql::sqlparser::ast::{Query, Visit, Visitor};
    use std::ops::ControlFlow;
    struct Find<'a>(&'a str);
    impl Visitor for Find<'_> {
        type Break = bool;
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<bool> {
            match &query.with {
                Some(with)
                    if with
                        .cte_tables
                        .iter()
                        .any(|cte| cte.alias.name.value.eq_ignore_ascii_case(self.0)) =>
                {
                    ControlFlow::Break(with.recursive)
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    let statements = datafusion::sql::parser::DFParser::parse_sql(sql).ok()?;
    statements.iter().find_map(|statement| match statement {
        datafusion::sql::parser::Statement::Statement(s) => s.visit(&mut Find(name)).break_value(),
        _ => None,
    })
}

/// For an unknown table that is one of evlake's: why it is not there. A
/// name qualified with a schema (`silver.ledger`) is not one of its names
/// (evlake's tables are named bare, in the default schema); a derived
/// table named bare is not built yet.
fn not_built_hint(e: &datafusion::error::DataFusionError) -> String {
    let text = e.to_string();
    let Some(full) = text
        .split_once("table '")
        .and_then(|(_, rest)| rest.split_once("' not found"))
        .map(|(full, _)| full)
    else {
        return String::new();
    };
    let (qualifier, name) = full.rsplit_once('.').unwrap_or(("", full));
    let known = super::tables::known_tables();
    let Some((_, layer, _)) = known.iter().find(|(table, _, _)| *table == name) else {
        return unknown_table_hint(name, known.iter().map(|(table, _, _)| *table));
    };
    if !matches!(qualifier, "" | "datafusion.public" | "public") {
        format!(
            " (evlake's tables are named without a schema or layer: `FROM {name}`, not \
             `FROM {full_as_written}`; `evlake tables` lists them)",
            full_as_written = full.strip_prefix("datafusion.").unwrap_or(full)
        )
    } else if matches!(*layer, "silver" | "gold") {
        format!(
            " (`{name}` has no rows in this lake yet: `evlake run` builds {layer} from bronze; \
             `evlake tables` lists the tables there are)"
        )
    } else {
        String::new()
    }
}

/// For a name that is none of the lake's tables: the closest one, when
/// it is a slip (a letter or two, a plural, a case), else every name.
fn unknown_table_hint<'a>(name: &str, tables: impl Iterator<Item = &'a str>) -> String {
    let tables: Vec<&str> = tables.collect();
    match crate::report::nearest(name, tables.iter().copied()) {
        Some(t) => format!(" (did you mean `{t}`? `evlake tables` lists the lake's tables)"),
        None => format!(
            " (the lake's tables: {}; `evlake tables` lists their columns)",
            tables.join(", ")
        ),
    }
}

/// At most this many rows are shown by `--format table` (the columns'
/// widths need every row before the first line is written, so the rows
/// are held); the rest are counted, and stderr says so.
pub const TABLE_ROWS: usize = 10_000;

/// `query`'s rows on their way to stdout.
struct Streamed {
    format: Format,
    /// CSV or JSON: the writer, from the first row on.
    writer: Option<Writer>,
    /// Table: the rows kept to lay out, and how many there were in all.
    kept: Vec<RecordBatch>,
    kept_rows: usize,
    total: usize,
    /// The result's columns, once planned: a CSV of no rows still has its
    /// header.
    schema: Option<datafusion::arrow::datatypes::SchemaRef>,
    /// JSON: the NaN and infinite values written as null.
    nonfinite: crate::jsonout::NonFinite,
}

enum Writer {
    Csv(Box<crate::csvout::Writer<std::io::BufWriter<std::io::Stdout>>>),
    Json(
        datafusion::arrow::json::writer::Writer<std::io::BufWriter<std::io::Stdout>, LineDelimited>,
    ),
    Parquet(Box<ParquetOut>),
}

/// A Parquet writer of rows on stdout (zstd, as the lake's files): row
/// groups go out as they fill, so a large result streams. A column of a
/// type that DuckDB, pyarrow or Spark would not read as what it is is
/// written as the nearest type they do (see [`engine::reader_type`]).
struct ParquetOut {
    /// The columns as written.
    schema: datafusion::arrow::datatypes::SchemaRef,
    /// Whether some differ from the rows'.
    cast: bool,
    /// Made with the first rows written (or at the close, for none), so
    /// rows that cannot be written leave stdout empty.
    writer: Option<datafusion::parquet::arrow::ArrowWriter<std::io::BufWriter<std::io::Stdout>>>,
}

impl ParquetOut {
    fn new(rows: &datafusion::arrow::datatypes::Schema) -> ParquetOut {
        use datafusion::arrow::datatypes::Schema;
        let fields: Vec<_> = rows
            .fields()
            .iter()
            .map(|f| {
                f.as_ref()
                    .clone()
                    .with_data_type(engine::reader_type(f.data_type()))
            })
            .collect();
        let cast = (fields.iter().zip(rows.fields())).any(|(w, f)| w.data_type() != f.data_type());
        ParquetOut {
            schema: Arc::new(Schema::new_with_metadata(fields, rows.metadata().clone())),
            cast,
            writer: None,
        }
    }

    fn writer(
        &mut self,
    ) -> Result<&mut datafusion::parquet::arrow::ArrowWriter<std::io::BufWriter<std::io::Stdout>>>
    {
        use datafusion::parquet::basic::{Compression, ZstdLevel};
        use datafusion::parquet::file::properties::WriterProperties;
        if self.writer.is_none() {
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .build();
            let out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
            self.writer = Some(datafusion::parquet::arrow::ArrowWriter::try_new(
                out,
                self.schema.clone(),
                Some(props),
            )?);
        }
        Ok(self.writer.as_mut().expect("made above"))
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if !self.cast {
            return Ok(self.writer()?.write(batch)?);
        }
        // Not `safe`: a time of seconds past what microseconds hold
        // (292,000 years) is an error, not a NULL.
        let exact = datafusion::arrow::compute::CastOptions {
            safe: false,
            ..Default::default()
        };
        let columns = (batch.columns().iter().zip(self.schema.fields()))
            .map(|(c, f)| {
                datafusion::arrow::compute::cast_with_options(c, f.data_type(), &exact).map_err(
                    |e| {
                        // Only a time of seconds can fail: the other
                        // casts widen or divide.
                        Failure::Usage(format!(
                            "column `{}` holds a time ({}) past the years Parquet's \
                             microseconds hold (about 292,000 either way of 1970; Parquet \
                             has no unit of seconds): a unit mixed up, such as milliseconds \
                             read as seconds? ({e})",
                            f.name(),
                            c.data_type()
                        ))
                        .into()
                    },
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        Ok(self.writer()?.write(&batch)?)
    }

    /// The footer, then stdout flushed.
    fn close(mut self) -> Result<()> {
        self.writer()?;
        let writer = self.writer.take().expect("made above");
        writer.into_inner()?.flush()?;
        Ok(())
    }
}

/// Refuse a time or date of `batch` that text cannot show: one outside
/// the years chrono knows (about 262,000 years either way), as
/// `to_timestamp_seconds(2180000000000000)` gives. JSON and a table wrote
/// `"ERROR: Cast error: ..."` in its place, exit 0, and CSV failed as a
/// machine's error would (exit 1). Parquet keeps such a value as it is
/// (but for a time of seconds, see [`ParquetOut`]).
fn unwritable_time(batch: &RecordBatch) -> Result<()> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::compute::{max, min};
    use datafusion::arrow::datatypes::{
        ArrowPrimitiveType, DataType, Date32Type, Date64Type, TimeUnit, TimestampMicrosecondType,
        TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
    };
    use datafusion::arrow::temporal_conversions as t;
    /// The column's least or greatest value, if it is a time or date
    /// chrono does not hold.
    fn outside<T: ArrowPrimitiveType>(column: &dyn Array) -> Option<i64>
    where
        T::Native: Into<i64>,
    {
        let values = column.as_primitive::<T>();
        [min(values), max(values)]
            .into_iter()
            .flatten()
            .map(Into::into)
            .find(|v| t::as_datetime::<T>(*v).is_none())
    }
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let column = column.as_ref();
        let outside = match column.data_type() {
            DataType::Timestamp(TimeUnit::Second, _) => outside::<TimestampSecondType>(column),
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                outside::<TimestampMillisecondType>(column)
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                outside::<TimestampMicrosecondType>(column)
            }
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                outside::<TimestampNanosecondType>(column)
            }
            DataType::Date32 => outside::<Date32Type>(column),
            DataType::Date64 => outside::<Date64Type>(column),
            _ => None,
        };
        if let Some(v) = outside {
            return Err(Failure::Usage(format!(
                "column `{}` holds a {} ({v}, in {}) outside the years a date can be written \
                 in (about 262,000 years either way of 1970): a unit mixed up, such as \
                 milliseconds read as seconds?",
                field.name(),
                if matches!(column.data_type(), DataType::Timestamp(..)) {
                    "time"
                } else {
                    "date"
                },
                column.data_type()
            ))
            .into());
        }
    }
    Ok(())
}

impl Streamed {
    fn new(format: Format) -> Streamed {
        Streamed {
            format,
            writer: None,
            kept: Vec::new(),
            kept_rows: 0,
            total: 0,
            schema: None,
            nonfinite: Default::default(),
        }
    }

    /// Once rows are on stdout, a read cannot start over (they would be
    /// written twice): its error is final.
    fn final_if_started(&self, e: anyhow::Error) -> anyhow::Error {
        if self.writer.is_some() {
            crate::committed::Final(e).into()
        } else {
            e
        }
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        if !matches!(self.format, Format::Parquet) {
            unwritable_time(batch)?;
        }
        self.total += n;
        if matches!(self.format, Format::Table) {
            let room = TABLE_ROWS - self.kept_rows;
            if room > 0 {
                let b = batch.slice(0, n.min(room));
                self.kept_rows += b.num_rows();
                self.kept.push(b);
            }
            return Ok(());
        }
        if self.writer.is_none() {
            let out = || std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
            self.writer = Some(match self.format {
                Format::Csv => Writer::Csv(Box::new(crate::csvout::Writer::new(out()))),
                Format::Parquet => Writer::Parquet(Box::new(ParquetOut::new(&batch.schema()))),
                _ => Writer::Json(crate::jsonout::writer(out())),
            });
        }
        match self.writer.as_mut().expect("set above") {
            Writer::Csv(w) => w.write(batch)?,
            Writer::Json(w) => {
                self.nonfinite.count(batch);
                w.write(batch)?
            }
            Writer::Parquet(w) => w.write(batch)?,
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        let nonfinite = self.nonfinite.lines();
        match self.writer {
            Some(Writer::Csv(w)) => w.into_inner().flush()?,
            Some(Writer::Json(mut w)) => {
                w.finish()?;
                w.into_inner().flush()?;
            }
            Some(Writer::Parquet(w)) => w.close()?,
            None if matches!(self.format, Format::Table) => {
                print(&self.kept, Format::Table)?;
                if self.total > self.kept_rows {
                    crate::report::eline(format_args!(
                        "(showing the first {} of {} rows; --format csv or json writes them all)",
                        self.kept_rows, self.total
                    ));
                }
            }
            // No rows: a CSV header alone, or a Parquet file of no rows
            // (a reader then knows the columns; pandas fails on an empty
            // file), else nothing.
            None => {
                if let Some(schema) = self
                    .schema
                    .filter(|_| matches!(self.format, Format::Csv | Format::Parquet))
                {
                    print(&[RecordBatch::new_empty(schema)], self.format)?;
                }
            }
        }
        for line in nonfinite {
            super::status("Warning", line);
        }
        Ok(())
    }
}

/// Write rows to `out` as a JSON array of objects: Arrow's JSON writer
/// (with [`crate::jsonout`]'s encoders) over slices of them on rayon's
/// threads, one after another (a state can have tens of thousands of
/// rows, and encoding them had been ~10% of answering one).
pub fn write_json_rows(out: &mut impl Write, batches: &[RecordBatch]) -> Result<()> {
    use rayon::prelude::*;
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let per_slice = total
        .div_ceil(rayon::current_num_threads().max(1) * 2)
        .max(4096);
    let slices: Vec<RecordBatch> = batches
        .iter()
        .flat_map(|b| {
            (0..b.num_rows())
                .step_by(per_slice)
                .map(|at| b.slice(at, per_slice.min(b.num_rows() - at)))
        })
        .collect();
    // Each is `[row,row,...]`, or nothing for no rows.
    let parts = slices
        .par_iter()
        .map(|b| {
            let mut buf = Vec::new();
            let mut w = crate::jsonout::writer::<_, JsonArray>(&mut buf);
            w.write(b)?;
            w.finish()?;
            Ok(buf)
        })
        .collect::<Result<Vec<Vec<u8>>>>()?;
    out.write_all(b"[")?;
    let rows = parts
        .iter()
        .filter_map(|p| p.strip_prefix(b"[")?.strip_suffix(b"]"));
    for (i, part) in rows.enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        out.write_all(part)?;
    }
    out.write_all(b"]")?;
    let mut nonfinite = crate::jsonout::NonFinite::default();
    batches.iter().for_each(|b| nonfinite.count(b));
    for line in nonfinite.lines() {
        super::status("Warning", line);
    }
    Ok(())
}

/// A usage error when a column of `schema` is of a type `format` cannot
/// hold, naming the column and what does: for CSV, a struct, list or map
/// (Arrow's CSV writer fails on it after the header is out); for
/// Parquet, an interval of months, days and nanoseconds (what `INTERVAL
/// '1 day'` gives) anywhere in a column (the writer fails on its first
/// row); for all but the table, a JSON member read with `->`, a union of
/// types anywhere in a column (Arrow's JSON writer refuses it, the
/// Parquet writer panics).
fn format_holds(schema: &datafusion::arrow::datatypes::Schema, format: Format) -> Result<()> {
    let flag = match format {
        Format::Table => return Ok(()),
        Format::Csv => "--format csv",
        Format::Json => "--format json",
        Format::Parquet => "--format parquet",
    };
    holds(schema, format, flag)
}

/// Whether a `--json` summary can carry rows of `schema` (`state
/// --json`), checked before it writes a byte: arrow's JSON writer failed
/// on a union midway, after the summary's first members were out.
pub fn json_summary_holds(schema: &datafusion::arrow::datatypes::Schema) -> Result<()> {
    holds(schema, Format::Json, "--json")
}

/// [`format_holds`], for the option `flag` that asked for `format`.
fn holds(schema: &datafusion::arrow::datatypes::Schema, format: Format, flag: &str) -> Result<()> {
    use datafusion::arrow::datatypes::DataType;
    let first = |is: fn(&DataType) -> bool| engine::first_column_with(schema, is);
    let usage = |m: String| -> Result<()> { Err(Failure::Usage(m).into()) };
    if let Some(f) = first(engine::is_union) {
        return usage(format!(
            "{flag} cannot hold column `{}` (a JSON member as `->` gives it, a union \
             of types): read it as text with `->>` (`(properties->>'key')`) or \
             json_as_text(properties, 'key'), or show it with --format table",
            f.name()
        ));
    }
    let cannot = match format {
        Format::Csv => first(|t| t.is_nested()).map(|f| {
            (
                f,
                format!(
                    "use --format json or parquet, which keep it as it is (or, for a list, \
                     array_to_string({}, ',') in the SQL)",
                    f.name()
                ),
            )
        }),
        Format::Parquet => first(engine::is_month_day_nano).map(|f| {
            (
                f,
                format!(
                    "the Parquet writer takes no interval of months, days and \
                         nanoseconds; use --format json or csv, or write it as text in the \
                         SQL, CAST({} AS VARCHAR)",
                    f.name()
                ),
            )
        }),
        // A JSON object's keys are text: arrow's JSON writer fails on a map
        // whose keys are not (`map([1], [2])`).
        Format::Json => first(|t| {
            matches!(t, DataType::Map(entries, _) if matches!(
                entries.data_type(),
                DataType::Struct(kv) if kv.first().is_some_and(|k| !matches!(
                    k.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ))
            ))
        })
        .map(|f| {
            (
                f,
                "a JSON object's keys are text and this map's are not; use --format parquet, \
                 which keeps it as it is, or --format table"
                    .to_string(),
            )
        }),
        Format::Table => None,
    };
    match cannot {
        Some((f, instead)) => usage(format!(
            "{flag} cannot hold column `{}` ({}): {instead}",
            f.name(),
            f.data_type()
        )),
        None => Ok(()),
    }
}

/// Print rows on stdout in `format`.
pub fn print(batches: &[RecordBatch], format: Format) -> Result<()> {
    if let Some(b) = batches.first() {
        format_holds(&b.schema(), format)?;
    }
    if batches.iter().all(|b| b.num_rows() == 0) {
        // Data only on stdout: a CSV's header (its columns), or nothing;
        // say so to a person on stderr.
        match format {
            Format::Table => {
                if !crate::report::quiet() {
                    crate::report::eline(format_args!("(no rows)"));
                }
                return Ok(());
            }
            // The header, or a file of no rows, below.
            Format::Csv | Format::Parquet if !batches.is_empty() => {}
            _ => return Ok(()),
        }
    }
    if format == Format::Parquet {
        let mut w = ParquetOut::new(&batches[0].schema());
        for b in batches {
            w.write(b)?;
        }
        return w.close();
    }
    let mut out = std::io::stdout().lock();
    match format {
        Format::Table => {
            let room = crate::table::terminal_width();
            if crate::table::write_within(&mut out, batches, room)? > 0 {
                out.flush()?;
                crate::report::eline(format_args!(
                    "(values cut to fit the terminal's {} columns, each ending in …; --format csv \
                     or json writes them whole)",
                    room.unwrap_or_default()
                ));
            }
        }
        Format::Csv => {
            let mut w = crate::csvout::Writer::new(&mut out);
            if let Some(b) = batches.first() {
                w.header(&b.schema())?;
            }
            for b in batches {
                w.write(b)?;
            }
        }
        Format::Json => {
            let mut w = crate::jsonout::writer::<_, LineDelimited>(&mut out);
            let mut nonfinite = crate::jsonout::NonFinite::default();
            for b in batches {
                nonfinite.count(b);
                w.write(b)?;
            }
            w.finish()?;
            for line in nonfinite.lines() {
                super::status("Warning", line);
            }
        }
        Format::Parquet => unreachable!("written above"),
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn an_unknown_table_gets_the_closest_name_or_the_list() {
        let tables = [
            "events",
            "sessions",
            "ledger",
            "daily_metrics",
            "bronze_events",
        ];
        let hint = |name: &str| unknown_table_hint(name, tables.iter().copied());
        for (slip, meant) in [
            ("event", "events"),
            ("Sessions", "sessions"),
            ("sesions", "sessions"),
            ("ledgers", "ledger"),
            ("dailymetrics", "daily_metrics"),
            ("daily_metric", "daily_metrics"),
        ] {
            assert!(
                hint(slip).starts_with(&format!(" (did you mean `{meant}`?")),
                "{slip}"
            );
        }
        for other in ["x", "users", "orders", "metrics"] {
            assert_eq!(
                hint(other),
                " (the lake's tables: events, sessions, ledger, daily_metrics, bronze_events; \
                 `evlake tables` lists their columns)",
                "{other}"
            );
        }
    }

    fn batch(from: i64, rows: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let n: Vec<i64> = (from..from + rows as i64).collect();
        // Nulls (written as `null`) and text that needs escaping.
        let s: Vec<Option<String>> = n
            .iter()
            .map(|i| (i % 3 != 0).then(|| format!("x\"{i}]\n")))
            .collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(n)),
                Arc::new(StringArray::from(s)),
            ],
        )
        .unwrap()
    }

    fn one_writer(batches: &[RecordBatch]) -> String {
        let mut buf = Vec::new();
        let mut w = crate::jsonout::arrow_writer::<_, JsonArray>(&mut buf);
        for b in batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
        String::from_utf8(buf).unwrap()
    }

    fn rows_as_json_text(batches: &[RecordBatch]) -> Result<String> {
        let mut out = Vec::new();
        write_json_rows(&mut out, batches)?;
        Ok(String::from_utf8(out)?)
    }

    #[test]
    fn json_rows_in_slices_are_what_one_writer_writes() {
        // Batches of more rows than a slice, none, and fewer.
        let batches = [batch(0, 10_000), batch(10_000, 0), batch(10_000, 5)];
        let text = rows_as_json_text(&batches).unwrap();
        assert_eq!(text, one_writer(&batches));
        let rows: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(rows.len(), 10_005);
        assert_eq!(rows[10_004]["n"], 10_004);
        // Every row names every column, a NULL too.
        assert_eq!(
            rows[3].as_object().unwrap().get("s"),
            Some(&serde_json::Value::Null)
        );
        assert!(rows.iter().all(|r| r.as_object().unwrap().len() == 2));
        assert_eq!(rows_as_json_text(&[]).unwrap(), "[]");
        assert_eq!(rows_as_json_text(&[batch(0, 0)]).unwrap(), "[]");
        assert_eq!(
            rows_as_json_text(&[batch(7, 1)]).unwrap(),
            one_writer(&[batch(7, 1)])
        );
    }
}
