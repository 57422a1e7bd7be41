//! The one place a DataFusion `SessionContext` is built (DESIGN.md §7).
//!
//! Every table is registered under its logical name (`bronze_events`,
//! `bronze_late`, ...), so SQL never sees a path. Tables are Hive-partitioned
//! listings of the lake's directories with `event_date` typed as `Date32`
//! and bronze's sort order declared. After `Engine::read_committed`, a
//! table directory lists as the log's files under it (`CommittedStore`),
//! so no reader sees a crashed run's orphans (outside readers, globbing
//! the directories, can until the next writer removes them).

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, Result};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::SortExpr;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext, col};

use crate::bronze;
use crate::lake::Lake;

/// Default `--memory-limit`: DataFusion's operators spill to disk beyond it.
pub const DEFAULT_MEMORY_LIMIT: usize = 2 << 30;

/// Memory and spilling for one run.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Bytes DataFusion's operators may hold before sorts and aggregates
    /// spill (`None`: unbounded).
    pub memory_limit: Option<usize>,
    /// Where spill files go (default: the OS temp directory).
    pub spill_dir: Option<PathBuf>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            memory_limit: Some(DEFAULT_MEMORY_LIMIT),
            spill_dir: None,
        }
    }
}

/// The runtime (memory pool with spilling, disk manager) and session
/// settings for one run; every context of the run shares its memory pool.
#[derive(Clone)]
pub struct Engine {
    runtime: Arc<RuntimeEnv>,
    opts: EngineOptions,
    /// Set by [`Engine::read_committed`]; every context made after it
    /// carries it (a session config extension), so registering a table
    /// needs no listing of its directories.
    committed: Arc<std::sync::Mutex<Option<Arc<CommittedFiles>>>>,
    /// The `batches` table of the state [`Engine::read_committed`] read,
    /// and the derived tables it has builds of.
    batches: Arc<std::sync::Mutex<Option<datafusion::arrow::array::RecordBatch>>>,
    built: Arc<std::sync::Mutex<Option<std::collections::HashSet<String>>>>,
}

/// The files the log references under the lake's table directories, with
/// the version of the commit that last changed each one's partition.
#[derive(Debug)]
pub struct CommittedFiles {
    /// The lake's root, as `Lake::path` joins table directories to it.
    root: PathBuf,
    /// Lake-relative, `/`-separated paths.
    files: crate::committed::LiveFiles,
}

impl CommittedFiles {
    fn new(lake: &Lake, files: crate::committed::LiveFiles) -> CommittedFiles {
        CommittedFiles {
            root: lake.root().to_path_buf(),
            files,
        }
    }

    /// The committed files under `dir` (relative to it), when `dir` is one
    /// of the lake's table directories, whose files the log must
    /// reference; `None` for any other directory (a run's staging).
    fn under(&self, dir: &Path) -> Option<Vec<(String, u64)>> {
        let rel = dir.strip_prefix(&self.root).ok()?;
        let rel = rel
            .components()
            .map(|c| c.as_os_str().to_str())
            .collect::<Option<Vec<_>>>()?
            .join("/");
        if !crate::ingest::table_dirs().contains(&rel.as_str()) {
            return None;
        }
        let prefix = format!("{rel}/");
        Some(
            self.files
                .range(prefix.clone()..)
                .take_while(|(f, _)| f.starts_with(&prefix))
                .map(|(f, live)| (f[prefix.len()..].to_string(), live.version))
                .collect(),
        )
    }
}

/// Rows per record batch in evlake's DataFusion sessions: 16k, not
/// DataFusion's 8k, since silver's sorts, windows and joins pay per batch
/// (silver --full at 5M: ~15% less CPU, peak RSS no higher; 32k was no
/// better; incremental runs unchanged).
pub const BATCH_ROWS: usize = 16 * 1024;

/// Rows per Parquet data page in the files DataFusion writes (see
/// `Engine::session`).
pub const PAGE_ROWS: usize = 1024;

/// Under a `--memory-limit` below this, sessions keep 8k-row batches (a
/// 16 MiB pool cannot hold a hash aggregate's 16k-row batch next to the
/// other operators').
pub const SMALL_POOL: usize = 256 << 20;

impl Engine {
    pub fn new(opts: &EngineOptions) -> Result<Engine> {
        let mut b = RuntimeEnvBuilder::new();
        if let Some(limit) = opts.memory_limit {
            // Fair shares between spilling operators; the tracking wrapper
            // names the largest consumers when a query still runs out.
            b = b.with_memory_pool(Arc::new(TrackConsumersPool::new(
                FairSpillPool::new(limit),
                NonZeroUsize::new(5).expect("non-zero"),
            )));
        }
        if let Some(dir) = &opts.spill_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("failed to create spill directory `{}`", dir.display()))?;
            b = b.with_temp_file_path(dir);
        }
        Ok(Engine {
            runtime: b.build_arc()?,
            opts: opts.clone(),
            committed: Default::default(),
            batches: Default::default(),
            built: Default::default(),
        })
    }

    /// Watch the spill directory's size until the returned monitor stops;
    /// its peak says whether (and how much) the run spilled.
    pub fn spill_monitor(&self) -> SpillMonitor {
        let disk = self.runtime.disk_manager.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(disk.used_disk_space(), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        });
        SpillMonitor {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// A session with evlake's settings and SQL functions but no tables.
    pub fn bare(&self) -> Result<SessionContext> {
        self.session(|_| {})
    }

    /// A session for questions that read a few rows out of many small
    /// files (`evlake state`: a key lookup across every date's ledger
    /// file). It reads no page index (its files have a page or two per
    /// column chunk, and the lookups' dynamic filters are IN lists the
    /// page index cannot use) and reads 64 KiB, not 512, at each file's end
    /// for its footer (a silver file's footer is a few KiB; the default
    /// read most of every ~0.5 MB ledger file just to open it).
    pub fn lookups(&self) -> Result<SessionContext> {
        self.session(lookup_options)
    }

    /// A [`Engine::lookups`] session whose joins pass up to 4096 keys (not
    /// 150) to their probe side's scan as an IN list, for lookups in a
    /// sorted file of ids (a snapshot's keys, see `state`): its row groups'
    /// min/max then keep only the groups that may hold a key, where a hash
    /// lookup would read them all (the 20M-event bench lake: a day's 276
    /// corrections read 233 of 1,978 groups, not every one). Not for
    /// unsorted files: there the list prunes nothing and costs a Bloom
    /// filter probe per key per row group.
    pub fn sorted_lookups(&self) -> Result<SessionContext> {
        self.session(|o| {
            lookup_options(o);
            o.optimizer.hash_join_inlist_pushdown_max_distinct_values = 4096;
            o.optimizer.hash_join_inlist_pushdown_max_size = 1 << 20;
        })
    }

    /// Rows per batch: [`BATCH_ROWS`], or DataFusion's 8k under a memory
    /// limit below [`SMALL_POOL`], where every operator's share of the
    /// pool must still hold a few batches.
    fn batch_rows(&self) -> usize {
        match self.opts.memory_limit {
            Some(limit) if limit < SMALL_POOL => 8 * 1024,
            _ => BATCH_ROWS,
        }
    }

    fn session(
        &self,
        tune: impl FnOnce(&mut datafusion::config::ConfigOptions),
    ) -> Result<SessionContext> {
        let mut config = SessionConfig::new()
            .with_target_partitions(cores())
            .with_information_schema(true)
            .with_batch_size(self.batch_rows());
        let options = config.options_mut();
        // Strings read back as Utf8, as bronze declares them, so every file
        // a derived table writes carries the same schema (Utf8View from one
        // reader mixed with Utf8 from another would not merge).
        options.execution.parquet.schema_force_view_types = false;
        // Derived tables are dominated by near-unique strings (event and
        // session ids, properties): dictionary pages cost write time and
        // then fall back anyway (silver --full ~13% faster, files no larger).
        options.execution.parquet.dictionary_enabled = Some(false);
        // zstd level 1, not DataFusion's 3: on silver's tables the files
        // are ~2% bigger and compression takes ~40% less CPU (silver
        // --full ~15% faster).
        options.execution.parquet.compression = Some("zstd(1)".into());
        // One task per file, not one per column of each file: every write
        // here is many files at once (a file per partition, tables written
        // concurrently), which already keeps the cores busy, and the
        // per-column tasks and channels only added overhead (1M-event
        // silver --full 4.6 -> 4.1 s, 8.1 -> 7.1 s of CPU; an incremental
        // run ~13% less CPU; peak RSS lower). src/partitioned.rs, which
        // writes the date-partitioned tables, writes a file per task too.
        options.execution.parquet.allow_single_file_parallelism = false;
        // Data pages of 1,024 rows, not 20,000: a lookup of a few users'
        // rows (an incremental rebuild reads the built rows of the users
        // whose sessions a late event reaches) decompresses only the pages
        // holding them, and the writer holds a smaller page of each column
        // of each open file. 5M-event late batch: the built rows' read
        // 97 -> 41 MB, the run ~5% faster; 1M silver --full: peak RSS
        // ~790 -> ~615 MiB. The cost: silver files ~3% bigger, a 5M
        // silver --full ~2.5% slower.
        options.execution.parquet.data_page_row_count_limit = PAGE_ROWS;
        // DataFusion 55 planned a correlated count subquery (`(SELECT
        // count(*) FROM u WHERE u.k = t.k)`) as non-NULL and ran it as
        // NULL-able, and under a UNION or an INTERSECT, which aggregate,
        // that difference alone stopped the query with an internal error
        // ("Physical input schema should be the same as the one converted
        // from logical input schema"). Its own switch for planner faults
        // of this kind: the aggregate is planned on the rows as they run.
        options.execution.skip_physical_aggregate_schema_check = true;
        // The session's time zone is UTC, the lake's, as PostgreSQL's
        // `SET TIME ZONE 'UTC'`: `CAST(x AS TIMESTAMPTZ)` and
        // `to_timestamp(...)` are UTC instants, as every lake time is.
        // DataFusion 55 has no session zone by default, and gave both a
        // time with no zone: `TIMESTAMPTZ` lost the zone it names, and
        // `to_timestamp(epoch) AT TIME ZONE 'America/New_York'` read the
        // epoch's UTC time as a New York clock time, not the time a New
        // York clock showed then.
        options.execution.time_zone = Some("UTC".to_string());

        if let Some(limit) = self.opts.memory_limit {
            // Each sort reserves this much up front for its merge phase
            // (10 MiB by default); under a small limit, several sorts at
            // once must still fit.
            let reserve = (limit / 32).clamp(256 << 10, 10 << 20);
            options.execution.sort_spill_reservation_bytes = reserve;
            options.execution.sort_in_place_threshold_bytes = reserve;
        }
        tune(options);
        if let Some(files) = self
            .committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            config = config.with_extension(files);
        }
        // Rows SQL fills with NULLs ordered as SQL orders them, and no
        // order pushed down through a LIMIT with an OFFSET (see
        // crate::null_rows), ahead of every rule that reads orderings.
        let mut physical =
            datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new().rules;
        physical.insert(0, Arc::new(crate::null_rows::Rule));
        // A filter naming no column kept above an aggregate that gives a
        // row from no rows (see crate::kept_filters).
        let logical = datafusion::optimizer::Optimizer::new()
            .rules
            .into_iter()
            .map(|rule| match rule.name() {
                "push_down_filter" => Arc::new(crate::kept_filters::Rule { inner: rule }) as _,
                _ => rule,
            })
            .collect();
        let mut state = datafusion::execution::session_state::SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(self.runtime.clone())
            .with_default_features()
            .with_optimizer_rules(logical)
            .with_physical_optimizer_rules(physical);
        // EXTRACT is planned as evlake's date_part (see udf::date_part),
        // ahead of DataFusion's planner, which would call its own; an
        // aggregate's CASTs are named with their types (udf::SqlPlanner).
        state
            .expr_planners()
            .get_or_insert_with(Vec::new)
            .insert(0, Arc::new(crate::udf::SqlPlanner));
        let mut ctx = SessionContext::new_with_state(state.build());
        datafusion_functions_json::register_all(&mut ctx)?;
        crate::udf::register_all(&ctx);
        // These two rules move expressions they are told are cheap (struct
        // field access, and datafusion-functions-json's functions, which
        // say so) below filters, into the scan. A JSON lookup parses the
        // document, so a typed table's `json_get_*(properties, …)` then ran
        // on every event rather than on its event type's (13x the rows for
        // purchases; that query alone ~3x faster without them).
        for rule in ["extract_leaf_expressions", "push_down_leaf_projections"] {
            let removed = ctx.remove_optimizer_rule(rule);
            debug_assert!(removed, "no optimizer rule `{rule}`");
        }
        Ok(ctx)
    }

    /// Make every context of this engine list, under the lake's table
    /// directories, only the files `state` references, not the ones a
    /// crashed run left, and read them through memory maps (see
    /// `crate::committed`). Readers need the first (they take no lock);
    /// writers, which removed such files already, use it for the second:
    /// a writer's reads through the plain file system each open the file
    /// and copy the range into a new zeroed buffer (an hourly `run`: 0.490
    /// -> 0.470 s; the 1M late batch 0.781 -> 0.747 s). Contexts made
    /// after this also register the lake's tables from the files `state`
    /// lists rather than by walking their directories (which took ~10 ms
    /// of each `silver` and `gold` on the 1M bench lake, before anything
    /// else could start).
    pub fn read_committed(&self, lake: &Lake, state: &crate::log::LakeState) -> Result<()> {
        let files = crate::committed::live_files(state);
        let store = crate::committed::CommittedStore::of_files(lake, files.clone())?;
        self.runtime.register_object_store(
            datafusion::execution::object_store::ObjectStoreUrl::local_filesystem().as_ref(),
            Arc::new(store),
        );
        *self.committed.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Arc::new(CommittedFiles::new(lake, files)));
        *self.batches.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(crate::batches::record_batch(state));
        *self.built.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(state.builds.keys().cloned().collect());
        Ok(())
    }

    /// A session over `lake` with every existing table registered.
    pub async fn context(&self, lake: &Lake) -> Result<SessionContext> {
        self.context_of(lake, None).await
    }

    /// A session over `lake` with the tables named in `only` registered
    /// (every existing table with `None`): registering one lists its files
    /// and reads a footer for its schema, which a query that names one
    /// table need not pay for all of them.
    pub async fn context_of(
        &self,
        lake: &Lake,
        only: Option<&std::collections::HashSet<String>>,
    ) -> Result<SessionContext> {
        let ctx = self.bare()?;
        let wanted = |t: &str| only.is_none_or(|o| o.contains(t));
        for (table, dir) in [
            (bronze::TABLE, bronze::DIR),
            (bronze::LATE_TABLE, bronze::LATE_DIR),
        ]
        .into_iter()
        .filter(|(t, _)| wanted(t))
        {
            register_bronze_like(&ctx, lake, table, dir).await?;
        }
        for (table, dir, column) in [
            (
                crate::silver::EVENTS_TABLE,
                crate::silver::EVENTS_DIR,
                "event_date",
            ),
            (
                crate::silver::SESSIONS_TABLE,
                crate::silver::SESSIONS_DIR,
                "session_date",
            ),
        ]
        .into_iter()
        .filter(|(t, _, _)| wanted(t))
        {
            register_derived(&ctx, lake, table, dir, column).await?;
        }
        for (table, dir, _) in crate::silver::typed().iter().filter(|(t, _, _)| wanted(t)) {
            register_derived(&ctx, lake, table, dir, "event_date").await?;
        }
        for (table, dir) in crate::gold::all_tables()
            .into_iter()
            .filter(|(t, _)| wanted(t))
        {
            register_derived(&ctx, lake, table, dir, "event_date").await?;
        }
        if wanted(crate::ingest::QUARANTINE_TABLE) {
            register_quarantine(&ctx, lake).await?;
        }
        let batches = self
            .batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(b) = batches.filter(|_| wanted(crate::batches::TABLE)) {
            let table = datafusion::datasource::MemTable::try_new(b.schema(), vec![vec![b]])?;
            ctx.register_table(crate::batches::TABLE, Arc::new(table))?;
        }
        Ok(ctx)
    }
}

impl Engine {
    /// Register, in `ctx`, each silver table (`only` those, if given) that
    /// has no rows although silver is built (no signups yet; a typed table
    /// of the lake's own no event feeds), and each such gold table, as an
    /// empty table with its columns: a query of it then counts 0, where
    /// "not found" would say the table is not built yet.
    pub async fn register_empty_tables(
        &self,
        ctx: &SessionContext,
        lake: &Lake,
        only: Option<&std::collections::HashSet<String>>,
    ) -> Result<()> {
        let wanted = |t: &str| only.is_none_or(|o| o.contains(t));
        // Built: the log has builds of the layer (its files may all be
        // gone, every event retracted), else it has files.
        let built = |table: &str, dir: &str| -> Result<bool> {
            if let Some(b) = self
                .built
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
            {
                return Ok(b.contains(table));
            }
            let dir = lake.path(dir);
            let committed = self
                .committed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .and_then(|c| c.under(&dir).map(|f| !f.is_empty()));
            Ok(match committed {
                Some(any) => any,
                None => !crate::lake::list_files(&dir, &dir)?.is_empty(),
            })
        };
        // The partition column last, as in a table read from its files; a
        // table with no rows, not the query that made none (a typed
        // table's SQL over it must plan as over a table: one row per row).
        let register = |t: &str, empty: DataFrame, column: &str| -> Result<()> {
            let schema = empty.schema().as_arrow();
            let mut fields: Vec<_> = schema
                .fields()
                .iter()
                .filter(|f| f.name() != column)
                .cloned()
                .collect();
            fields.push(Arc::new(schema.field_with_name(column)?.clone()));
            let schema = Arc::new(Schema::new(fields));
            let table = datafusion::datasource::MemTable::try_new(schema, vec![vec![]])?;
            ctx.register_table(t, Arc::new(table))?;
            Ok(())
        };
        if built(crate::silver::EVENTS_TABLE, crate::silver::EVENTS_DIR)? {
            for t in crate::silver::all_tables() {
                if wanted(t) && !ctx.table_exist(t)? {
                    let column = if t == crate::silver::SESSIONS_TABLE {
                        "session_date"
                    } else {
                        "event_date"
                    };
                    register(t, crate::silver::empty_table(ctx, t).await?, column)?;
                }
            }
        }
        if built(crate::gold::METRICS_TABLE, crate::gold::METRICS_DIR)? {
            for (t, _) in crate::gold::all_tables() {
                if wanted(t) && !ctx.table_exist(t)? {
                    register(t, crate::gold::empty_table(ctx, t).await?, "event_date")?;
                }
            }
        }
        Ok(())
    }
}

/// The type a column of type `t` is written to Parquet as, by `query
/// --format parquet` and in the lake's typed and daily tables of its own
/// SQL, inside lists, structs and maps too, so that DuckDB, pyarrow,
/// Polars and Spark all read it as what it is: `t` itself, but
/// - a time of seconds (`from_unixtime`, `to_timestamp_seconds`) in
///   microseconds, the lake's unit, a time of day of seconds likewise,
///   and a date of milliseconds (`Date64`) as a date: Parquet's times
///   have no unit of seconds, and arrow's writer stored them as bare
///   integers, which DuckDB and pyarrow read as numbers;
/// - a time of nanoseconds (what `CAST(x AS TIMESTAMP)`, `to_timestamp`
///   and `now()` give) in microseconds too, dropping any digit below the
///   microsecond as ingest does: Spark refuses a whole file with one
///   column of Parquet's nanoseconds;
/// - a 16-bit float as a 32-bit one, which Spark reads.
///
/// A duration stays a duration: Parquet has no such type, and the file's
/// Arrow schema gives it back to pyarrow and Polars.
pub fn reader_type(t: &DataType) -> DataType {
    use datafusion::arrow::datatypes::{DataType::*, FieldRef, TimeUnit};
    let field = |f: &FieldRef| {
        Arc::new(
            f.as_ref()
                .clone()
                .with_data_type(reader_type(f.data_type())),
        )
    };
    match t {
        Timestamp(TimeUnit::Second | TimeUnit::Nanosecond, zone) => {
            Timestamp(TimeUnit::Microsecond, zone.clone())
        }
        Float16 => Float32,
        Time32(TimeUnit::Second) => Time64(TimeUnit::Microsecond),
        Date64 => Date32,
        List(f) => List(field(f)),
        LargeList(f) => LargeList(field(f)),
        FixedSizeList(f, n) => FixedSizeList(field(f), *n),
        Struct(fields) => Struct(fields.iter().map(field).collect()),
        Map(f, sorted) => Map(field(f), *sorted),
        Dictionary(key, value) => Dictionary(key.clone(), Box::new(reader_type(value))),
        other => other.clone(),
    }
}

/// The first column of `schema` whose type, or a type inside it (in a
/// list, struct, map, dictionary or run-end encoding), is one `is` picks.
pub fn first_column_with(schema: &Schema, is: fn(&DataType) -> bool) -> Option<&Field> {
    fn within(t: &DataType, is: fn(&DataType) -> bool) -> bool {
        is(t)
            || match t {
                DataType::List(f)
                | DataType::LargeList(f)
                | DataType::FixedSizeList(f, _)
                | DataType::ListView(f)
                | DataType::LargeListView(f)
                | DataType::Map(f, _) => within(f.data_type(), is),
                DataType::Struct(fields) => fields.iter().any(|f| within(f.data_type(), is)),
                DataType::Dictionary(_, v) => within(v, is),
                DataType::RunEndEncoded(_, v) => within(v.data_type(), is),
                _ => false,
            }
    }
    schema
        .fields()
        .iter()
        .find(|f| within(f.data_type(), is))
        .map(|f| f.as_ref())
}

/// A union of types: what a JSON member read with `->` is. Arrow's
/// Parquet writer panics on one, and its JSON writer refuses one.
pub fn is_union(t: &DataType) -> bool {
    matches!(t, DataType::Union(..))
}

/// An interval of months, days and nanoseconds (`INTERVAL '1 day'`, and
/// arithmetic on one), which arrow's Parquet writer does not take.
pub fn is_month_day_nano(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano)
    )
}

/// What a table of the lake's own SQL returns that no Parquet file can
/// store, or that a reader of the lake cannot read, as the problem of
/// its file, found before a run writes a row: the writer panicked on a
/// union (exit 1 with a backtrace) and failed on an interval as on a
/// machine's error (see [`unwritable_column`]); Spark refuses a whole
/// table for a decimal of more than 38 digits (so does Polars; DuckDB
/// reads a float) or a time of day, which it has no type for.
pub fn unstorable_column(schema: &Schema) -> Option<String> {
    if let Some(why) = unwritable_column(schema) {
        return Some(why);
    }
    if let Some(f) = first_column_with(schema, |t| matches!(t, DataType::Decimal256(..))) {
        return Some(format!(
            "returns column `{}` ({}), a decimal of more than 38 digits, which Spark and \
             Polars refuse the whole table for (DuckDB reads it as a float): cast it to \
             DECIMAL(38, s) at most",
            f.name(),
            f.data_type()
        ));
    }
    first_column_with(schema, |t| {
        matches!(t, DataType::Time32(_) | DataType::Time64(_))
    })
    .map(|f| {
        format!(
            "returns column `{}` ({}), a time of day, which Spark has no type for and \
                 refuses the whole table for: write it as text, CAST({} AS VARCHAR)",
            f.name(),
            f.data_type(),
            f.name()
        )
    })
}

/// A column no Parquet file can hold at all: arrow's writer panics on a
/// union and fails on an interval of months, days and nanoseconds. What
/// only evlake reads back (a state model's snapshot) is refused for
/// these alone.
pub fn unwritable_column(schema: &Schema) -> Option<String> {
    if let Some(f) = first_column_with(schema, is_union) {
        return Some(format!(
            "returns column `{}`, a union of types (a JSON member read with `->`), which \
             Parquet cannot store: read it as text with `->>` (`properties->>'key'`) or typed \
             with json_get_str, json_get_int or json_get_float",
            f.name()
        ));
    }
    if let Some(f) = first_column_with(schema, is_month_day_nano) {
        return Some(format!(
            "returns column `{}` ({}), an interval of months, days and nanoseconds, which \
             Parquet cannot store: write it as text, CAST({} AS VARCHAR), or subtract two \
             times, which gives a duration",
            f.name(),
            f.data_type(),
            f.name()
        ));
    }
    None
}

/// `df` as a table of the lake's own SQL stores it: its columns cast to
/// their [`reader_type`]s, or `problem` of one no reader could take (see
/// [`unstorable_column`]).
pub fn as_stored(
    df: DataFrame,
    problem: impl FnOnce(String) -> anyhow::Error,
) -> Result<DataFrame> {
    let df = with_reader_types(df)?;
    match unstorable_column(df.schema().as_arrow()) {
        Some(why) => Err(problem(why)),
        None => Ok(df),
    }
}

/// In the fingerprint of each typed and daily table of the lake's own
/// SQL, whose columns are cast to [`reader_type`]s: a table built before
/// they were is rebuilt once, as after an edit of its file (its files'
/// columns could be of other types than the new ones', which do not
/// merge into one table).
pub const READER_TYPES: &str = "reader-types-1";

/// `df` with each column cast to its [`reader_type`] (`df` itself when
/// every column already is), for a table of the lake's own SQL.
pub fn with_reader_types(df: DataFrame) -> Result<DataFrame> {
    let schema = df.schema().clone();
    if schema
        .fields()
        .iter()
        .all(|f| reader_type(f.data_type()) == *f.data_type())
    {
        return Ok(df);
    }
    let columns = schema
        .iter()
        .map(|(qualifier, f)| {
            let column = datafusion::logical_expr::Expr::Column((qualifier, f).into());
            let to = reader_type(f.data_type());
            if to == *f.data_type() {
                column
            } else {
                datafusion::logical_expr::cast(column, to).alias(f.name())
            }
        })
        .collect::<Vec<_>>();
    Ok(df.select(columns)?)
}

/// The stack of the thread evlake runs on (see main.rs), which plans
/// SQL: DataFusion plans, optimizes and drops an expression by recursion,
/// a frame or more per level, and a generated `WHERE id = 'u0' OR id =
/// 'u1' OR ...` of 500 terms overflowed the 8 MiB a main thread has
/// (SIGABRT, exit 134, in the debug build `make demo` uses). Only what is
/// used is backed by memory. `None` where [`big_stacks`] says no.
pub fn planning_stack() -> Option<usize> {
    big_stacks().then_some(1 << 30)
}

/// The stack of each thread of a runtime that runs SQL, which evaluates
/// such an expression by recursion too (tokio's default of 2 MiB
/// overflowed at 1,500 terms alternating two columns).
const WORKER_STACK: usize = 64 << 20;

/// Whether the big stacks above are wise: not under a limit on the
/// address space (`ulimit -v`) or with strict overcommit, where a thread's
/// stack counts in full. There a runtime whose first worker took the
/// memory left could not start the others, and tokio then waited for
/// them for ever (a query hung at `ulimit -v 1300000`); the defaults are
/// what evlake ran on before.
fn big_stacks() -> bool {
    static BIG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *BIG.get_or_init(|| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given.
        let unlimited = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } == 0
            && limit.rlim_cur == libc::RLIM_INFINITY;
        let strict = std::fs::read_to_string("/proc/sys/vm/overcommit_memory")
            .is_ok_and(|mode| mode.trim() == "2");
        unlimited && !strict
    })
}

/// A multi-threaded runtime for DataFusion's work, its threads with
/// [`WORKER_STACK`]s where [`big_stacks`] allows them.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if big_stacks() {
        builder.thread_stack_size(WORKER_STACK);
    }
    builder.build()
}

/// A session with `ctx`'s settings, SQL functions and runtime but a
/// catalog of its own, for relations built on the side (an empty table's
/// columns, a daily table's one date): its tables do not replace `ctx`'s.
/// (`SessionContext::new_with_state(ctx.state())` shares `ctx`'s catalog:
/// registering an empty `events` there emptied the caller's.)
pub fn scratch(ctx: &SessionContext) -> SessionContext {
    use datafusion::catalog::MemoryCatalogProviderList;
    use datafusion::execution::session_state::SessionStateBuilder;
    let state = ctx.state();
    let config = state
        .config()
        .clone()
        .with_create_default_catalog_and_schema(true);
    let state = SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .with_catalog_list(Arc::new(MemoryCatalogProviderList::new()))
        .build();
    SessionContext::new_with_state(state)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// See [`Engine::spill_monitor`].
pub struct SpillMonitor {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SpillMonitor {
    /// Stop watching; the most bytes seen on disk at once.
    pub fn finish(mut self) -> u64 {
        self.halt();
        self.peak.load(Ordering::Relaxed)
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SpillMonitor {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A session over `lake` with every existing table and default settings,
/// reading the files `state` references (a reader's: see
/// [`Engine::read_committed`]), and the built tables with no rows empty.
pub async fn context(lake: &Lake, state: &crate::log::LakeState) -> Result<SessionContext> {
    let engine = Engine::new(&EngineOptions::default())?;
    engine.read_committed(lake, state)?;
    let ctx = engine.context(lake).await?;
    engine.register_empty_tables(&ctx, lake, None).await?;
    Ok(ctx)
}

/// `quarantine`: the quarantined lines (`LAKE/quarantine/*.jsonl`), as
/// NDJSON with a fixed schema.
async fn register_quarantine(ctx: &SessionContext, lake: &Lake) -> Result<()> {
    let dir = lake.path(crate::ingest::QUARANTINE_DIR);
    if crate::lake::list_files(&dir, &dir)?.is_empty() {
        return register_empty(
            ctx,
            crate::ingest::QUARANTINE_TABLE,
            crate::ingest::quarantine_schema(),
        );
    }
    let path = std::fs::canonicalize(&dir)
        .with_context(|| format!("failed to resolve `{}`", dir.display()))?;
    let options = ListingOptions::new(Arc::new(
        datafusion::datasource::file_format::json::JsonFormat::default(),
    ))
    .with_file_extension(".jsonl");
    ctx.register_listing_table(
        crate::ingest::QUARANTINE_TABLE,
        &file_url(&path, true)?,
        options,
        Some(crate::ingest::quarantine_schema()),
        None,
    )
    .await
    .context("failed to register table `quarantine`")?;
    Ok(())
}

/// A derived table partitioned by a date column, schema read from its files.
async fn register_derived(
    ctx: &SessionContext,
    lake: &Lake,
    table: &str,
    dir: &str,
    column: &str,
) -> Result<()> {
    register_partitioned(ctx, table, &lake.path(dir), column, None, Vec::new()).await
}

async fn register_bronze_like(
    ctx: &SessionContext,
    lake: &Lake,
    table: &str,
    dir: &str,
) -> Result<()> {
    let sort = vec![
        col("user_id").sort(true, false),
        col("event_timestamp").sort(true, false),
        col("event_id").sort(true, false),
    ];
    register_partitioned(
        ctx,
        table,
        &lake.path(dir),
        bronze::PARTITION_COLUMN,
        Some(bronze::schema()),
        sort,
    )
    .await
}

/// Evaluate filters while decoding Parquet in tables registered from now
/// on, so a selective `WHERE event_type = 'purchase'` decodes `properties`
/// only for the rows it keeps. (Not for everything: it slows the full scans
/// that sessionization does.)
pub fn push_filters_into_scans(ctx: &SessionContext) {
    let state = ctx.state_ref();
    let mut state = state.write();
    evaluate_filters_while_decoding(&mut state.table_options_mut().parquet.global);
}

fn evaluate_filters_while_decoding(parquet: &mut datafusion::config::ParquetOptions) {
    parquet.pushdown_filters = true;
    parquet.reorder_filters = true;
}

/// Register the Parquet files under `dir` as `table`, Hive-partitioned by
/// the `Date32` column `column`. Without a `schema` it is read from the
/// files, so a directory without files is not registered. `sort` declares
/// the order each file is written in.
pub async fn register_partitioned(
    ctx: &SessionContext,
    table: &str,
    dir: &Path,
    column: &str,
    schema: Option<SchemaRef>,
    sort: Vec<SortExpr>,
) -> Result<()> {
    // The session's Parquet options (strings as Utf8, see `bare`).
    let parquet = ctx.state().table_options().parquet.clone();
    register_with(ctx, table, dir, column, schema, sort, parquet).await
}

async fn register_with(
    ctx: &SessionContext,
    table: &str,
    dir: &Path,
    column: &str,
    schema: Option<SchemaRef>,
    sort: Vec<SortExpr>,
    parquet: datafusion::config::TableParquetOptions,
) -> Result<()> {
    // A lake table's files as the log lists them (see
    // `Engine::read_committed`), any other directory's as it holds them.
    let committed = ctx
        .state()
        .config()
        .get_extension::<CommittedFiles>()
        .and_then(|c| c.under(dir));
    let (exists, newest) = match committed {
        Some(files) => {
            // The newest committed file that is on disk (one stat): a
            // committed file gone from disk is passed over, so the schema
            // comes from another and only a read of its rows fails (else
            // every command registering the table failed on it, the
            // repairs `evlake check` names too).
            let parquet = files.iter().filter(|(f, _)| f.ends_with(".parquet"));
            let newest = parquet
                .clone()
                .max_by_key(|(f, version)| (*version, f.as_str()))
                .map(|(f, _)| dir.join(f));
            let newest = match newest {
                Some(p) if !p.exists() => {
                    let mut rest: Vec<&(String, u64)> = parquet.collect();
                    rest.sort_unstable_by_key(|(f, version)| {
                        std::cmp::Reverse((*version, f.as_str()))
                    });
                    rest.into_iter()
                        .map(|(f, _)| dir.join(f))
                        .find(|p| p.exists())
                }
                newest => newest,
            };
            (!files.is_empty(), newest)
        }
        None => {
            let files = crate::lake::list_files(dir, dir)?;
            (
                !files.is_empty() || dir.is_dir(),
                newest_written(dir, &files)?,
            )
        }
    };
    if !exists {
        // A table with fixed columns exists without rows (a lake without
        // late events has an empty `bronze_late`); a derived one does not.
        return match schema {
            Some(schema) => {
                let mut fields: Vec<Field> =
                    schema.fields().iter().map(|f| f.as_ref().clone()).collect();
                fields.push(Field::new(column, DataType::Date32, false));
                register_empty(ctx, table, Arc::new(Schema::new(fields)))
            }
            None => Ok(()),
        };
    }
    // Without a declared schema (derived tables), read it from one file:
    // every file of a derived table is written by the same SQL (a change
    // to it rebuilds them all), and DataFusion's inference would read the
    // footer of every file on every command.
    let schema = match (schema, newest) {
        (Some(s), _) => s,
        (None, Some(newest)) => file_schema(&newest, column)?,
        (None, None) => return Ok(()), // no Parquet file: no rows, no table
    };
    let path = std::fs::canonicalize(dir)
        .with_context(|| format!("failed to resolve `{}`", dir.display()))?;
    let url = file_url(&path, true)?;
    let format = ParquetFormat::default().with_options(parquet);
    let mut options = ListingOptions::new(Arc::new(format))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![(column.to_string(), DataType::Date32)]);
    if !sort.is_empty() {
        options = options.with_file_sort_order(vec![sort]);
    }
    ctx.register_listing_table(table, &url, options, Some(schema), None)
        .await
        .with_context(|| format!("failed to register table `{table}` at `{url}`"))?;
    Ok(())
}

/// `path` as the `file://` URL DataFusion is to read: given a plain path,
/// DataFusion takes `?`, `*` and `[` in it as a glob, so a lake under
/// `/data/lake[prod]/` or `/tmp/a?/` read no file at all. `dir` gives the
/// URL the trailing `/` of a directory (a listing, not one file).
pub fn file_url(path: &Path, dir: bool) -> Result<String> {
    let path = std::path::absolute(path)
        .with_context(|| format!("failed to resolve `{}`", path.display()))?;
    let url = if dir {
        url::Url::from_directory_path(&path)
    } else {
        url::Url::from_file_path(&path)
    };
    // The URL as DataFusion would make it: parsed again, so `..` and `.`
    // segments are resolved.
    url.ok()
        .and_then(|u| url::Url::parse(u.as_str()).ok())
        .map(String::from)
        .with_context(|| format!("`{}` cannot be made a file URL", path.display()))
}

/// Register `table` with `schema` and no rows.
fn register_empty(ctx: &SessionContext, table: &str, schema: SchemaRef) -> Result<()> {
    let empty = datafusion::datasource::MemTable::try_new(schema, vec![vec![]])?;
    ctx.register_table(table, Arc::new(empty))
        .with_context(|| format!("failed to register table `{table}`"))?;
    Ok(())
}

/// The newest (last modified) Parquet file among `files` (relative to
/// `dir`); `None` without Parquet files.
fn newest_written(dir: &Path, files: &[String]) -> Result<Option<PathBuf>> {
    let mut newest = None;
    for f in files.iter().filter(|f| f.ends_with(".parquet")) {
        let path = dir.join(f);
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .with_context(|| format!("failed to stat `{}`", path.display()))?;
        if newest.as_ref().is_none_or(|(t, _)| modified > *t) {
            newest = Some((modified, path));
        }
    }
    Ok(newest.map(|(_, path)| path))
}

/// The Arrow schema of the Parquet file at `path`, without the partition
/// `column`.
fn file_schema(path: &Path, column: &str) -> Result<SchemaRef> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("failed to open `{}`", path.display()))?;
    let schema =
        datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .with_context(|| format!("`{}`: not a readable Parquet file", path.display()))?
            .schema()
            .clone();
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .filter(|f| f.name() != column)
        .cloned()
        .collect();
    Ok(Arc::new(datafusion::arrow::datatypes::Schema::new(fields)))
}

/// The first function in `plan` (subqueries too) whose value is not fixed
/// by its arguments: `now()`, `current_date()`, `random()`, `uuid()`, ...
/// (any not [`Volatility::Immutable`]). A derived table computed with one
/// depends on when it was computed, not only on its rows, so dates
/// recomputed in different runs would disagree with a full rebuild.
/// Look before the optimizer, which folds `now()` into a constant.
///
/// [`Volatility::Immutable`]: datafusion::logical_expr::Volatility::Immutable
pub fn time_dependent_function(
    plan: &datafusion::logical_expr::LogicalPlan,
) -> Option<(String, datafusion::logical_expr::Volatility)> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Expr, Volatility};
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && f.func.signature().volatility != Volatility::Immutable
                {
                    found = Some((f.func.name().to_string(), f.func.signature().volatility));
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    found
}

/// What is wrong with using [`time_dependent_function`] `f`, and what
/// to do instead, for a table derived date by date.
pub fn time_dependent_problem(f: &(String, datafusion::logical_expr::Volatility)) -> String {
    let instead = match f.1 {
        datafusion::logical_expr::Volatility::Volatile => {
            "derive it from the row, e.g. from its event_id, or compute it in a query"
        }
        _ => {
            "use the rows' own times, event_timestamp or processing_time; a value relative to \
             today belongs in a query"
        }
    };
    format!(
        "{}: dates recomputed in different runs would disagree, so recomputing only the \
         dirty dates could not equal a full rebuild ({instead})",
        not_fixed_by_rows(f)
    )
}

/// `uses f(), whose value is not fixed by the rows (...)`.
pub fn not_fixed_by_rows(
    (f, volatility): &(String, datafusion::logical_expr::Volatility),
) -> String {
    let changes = match volatility {
        datafusion::logical_expr::Volatility::Volatile => "on every call",
        _ => "with when it is computed",
    };
    format!("uses {f}(), whose value is not fixed by the rows (it changes {changes})")
}

/// Is this DataFusion error the user's fault (bad SQL, unknown table or
/// column) rather than a runtime failure?
pub fn is_usage_error(err: &datafusion::error::DataFusionError) -> bool {
    use datafusion::error::DataFusionError as E;
    match err {
        E::SQL(..) | E::Plan(..) | E::SchemaError(..) | E::NotImplemented(..) => true,
        // Several errors at once (two ambiguous columns): said by the
        // first, as DataFusion shows them.
        E::Collection(errors) => errors.first().is_some_and(is_usage_error),
        E::Context(_, inner) => is_usage_error(inner),
        E::Diagnostic(_, inner) => is_usage_error(inner),
        // Raised in a partition's task as it runs, and shared with the
        // others (a grouped `nth_value(x, y)` whose n is not a literal).
        E::Shared(inner) => is_usage_error(inner),
        _ => false,
    }
}

/// [`checked`], with the clauses of `sql` checked as [`planned`] checks
/// them, for `df` planned from `sql` by `SessionContext::sql` (tests).
#[cfg(test)]
pub fn checked_plan(sql: &str, df: DataFrame) -> datafusion::error::Result<DataFrame> {
    passed_over_clause(sql)?;
    checked(df)
}

/// `df`, planned from SQL a user wrote, unless it plans to an
/// answer other than the one asked for, which is a planning error here:
/// - a table sample (`TABLESAMPLE (10 PERCENT)`, ClickHouse's `SAMPLE
///   0.1`), a partition selection (MySQL's `PARTITION (p1)`), MySQL's
///   `GROUP BY a WITH ROLLUP`, ClickHouse's `PREWHERE`, Oracle's
///   `CONNECT BY` or Snowflake's `* ILIKE 'x%'`, which DataFusion parses
///   and then passes over (reading every row, or every column, or giving
///   no subtotals);
/// - `INTERSECT ALL` and `EXCEPT ALL`, which DataFusion 55 answers with
///   no regard to the number of copies, and a JSON member operator
///   (`->>`) with more than a key on its right, which its parser takes
///   into the key (both in `passed_over`);
/// - a DATE compared with a YYYYMMDD integer (`integer_date`), a
///   constant `NOT IN` a subquery of NULLs (`constant_in_subquery`),
///   `NOT IN` a subquery inside another expression, or correlated with
///   an aggregate or LIMIT, where NULLs count (`in_subquery_nulls`),
///   `SIMILAR TO` (`similar_to`), a `RANGE` frame over a date or time
///   with a bare number (`range_in_months`), a duration or interval
///   compared across months, days and the rest
///   (`duration_against_days`), a time zone that is none
///   (`unknown_zone`), a window function in WHERE, HAVING or ON,
///   which DataFusion plans and fails to run (`window_in_filter`), and
///   a `RANGE` offset over a time of day, duration, struct or bytes
///   (`range_over_unrangeable`);
/// - a time formatted with a literal format that has no `%` code
///   (`date_format(ts, 'yyyy-MM')`, as Spark and Java write one, or
///   PostgreSQL's `to_char(ts, 'YYYY-MM-DD')`): DataFusion's formats are
///   strftime's, so such a format is the same text on every row.
///
/// It is planned with an `IN` or `EXISTS` over a correlated subquery
/// that aggregates into one row as the one-value subquery it is
/// (`with_scalar_aggregate_subqueries`), with a `NOT IN` a subquery that DataFusion 55 would
/// answer without SQL's NULLs as the `NOT EXISTS` that keeps SQL's rows
/// (`with_null_aware_not_in`), with a window's `RANGE` frame without an offset over a
/// key DataFusion cannot range over as `GROUPS` (`with_peer_frames`) and
/// without the ORDER BY inside an order-free aggregate's call
/// (`without_needless_order`), each the same answer DataFusion 55 fails
/// to give, under the name written.
fn checked(df: DataFrame) -> datafusion::error::Result<DataFrame> {
    let df = with_scalar_aggregate_subqueries(df)?;
    let df = with_null_aware_not_in(df)?;
    if let Some(problem) = integer_date(df.logical_plan())
        .or_else(|| constant_in_subquery(df.logical_plan()))
        .or_else(|| in_subquery_nulls(df.logical_plan()))
        .or_else(|| similar_to(df.logical_plan()))
        .or_else(|| range_in_months(df.logical_plan()))
        .or_else(|| range_over_unrangeable(df.logical_plan()))
        .or_else(|| duration_against_days(df.logical_plan()))
        .or_else(|| date_plus_hours(df.logical_plan()))
        .or_else(|| caret_xor(df.logical_plan()))
        .or_else(|| window_in_filter(df.logical_plan()))
        .or_else(|| window_value_arguments(df.logical_plan()))
        .or_else(|| unorderable_in_aggregate(df.logical_plan()))
        .or_else(|| distinct_order(df.logical_plan()))
        .or_else(|| distinct_passed_over(df.logical_plan()))
        .or_else(|| union_misuse(df.logical_plan()))
        .or_else(|| unknown_zone(df.logical_plan()))
    {
        return Err(datafusion::error::DataFusionError::Plan(problem));
    }
    checked_formats(df)
        .and_then(with_full_times)
        .and_then(with_checked_arithmetic)
        .and_then(with_kept_casts)
        .and_then(with_zone_bounds)
        .and_then(with_peer_frames)
        .and_then(without_needless_order)
        .and_then(with_distinct_on_keys_once)
}

/// `df` with each DISTINCT ON's list and ORDER BY read by
/// [`crate::udf::without_repeated_keys`] (DataFusion 55 panicked on
/// `SELECT DISTINCT ON (user_id) ... ORDER BY user_id, event_id DESC,
/// event_id`, and failed on `DISTINCT ON (user_id, user_id)`); an
/// aggregate's own ORDER BY is read so as it is planned
/// ([`crate::udf::SqlPlanner`]).
fn with_distinct_on_keys_once(df: DataFrame) -> datafusion::error::Result<DataFrame> {
    use datafusion::common::tree_node::Transformed;
    use datafusion::logical_expr::{Distinct, LogicalPlan};
    let (state, plan) = df.into_parts();
    let plan = plan
        .transform_up_with_subqueries(|node| match node {
            LogicalPlan::Distinct(Distinct::On(mut on)) => {
                let listed = crate::udf::without_repeated_keys(&mut on.on_expr, |e| e);
                let changed = on
                    .sort_expr
                    .as_mut()
                    .is_some_and(|keys| crate::udf::without_repeated_keys(keys, |k| &k.expr));
                let node = LogicalPlan::Distinct(Distinct::On(on));
                Ok(Transformed::new_transformed(node, listed || changed))
            }
            node => Ok(Transformed::no(node)),
        })?
        .data;
    Ok(DataFrame::new(state, plan))
}

/// `time`, a timestamp literal written as PostgreSQL, DuckDB and Spark
/// read it but arrow's parser does not, in the full form arrow reads:
/// the seconds added to a time of hours and minutes (`'2024-03-15
/// 10:00'`), and the hour, month or day given two digits (`'2024-3-5
/// 9:05:00'`), anything after the time (a fraction, `Z`, `+02:00`)
/// kept. `None` for a literal arrow reads as it is, or one that this
/// does not make readable.
fn full_time(time: &str) -> Option<String> {
    use datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
    if string_to_timestamp_nanos(time).is_ok() {
        return None;
    }
    let digits = |s: &str, n: std::ops::RangeInclusive<usize>| {
        (n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())).then(|| format!("{s:0>2}"))
    };
    let sep = time.find([' ', 'T'])?;
    let (date, rest) = (&time[..sep], &time[sep + 1..]);
    let mut parts = date.split('-');
    let year = parts
        .next()
        .filter(|y| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()))?;
    let month = digits(parts.next()?, 1..=2)?;
    let day = digits(parts.next()?, 1..=2)?;
    if parts.next().is_some() {
        return None;
    }
    let (hour, rest) = rest.split_once(':')?;
    let hour = digits(hour, 1..=2)?;
    let minute = digits(rest.get(..2)?, 2..=2)?;
    let rest = &rest[2..];
    let seconds = if rest.starts_with(':') { "" } else { ":00" };
    let full = format!(
        "{year}-{month}-{day}{}{hour}:{minute}{seconds}{rest}",
        &time[sep..sep + 1]
    );
    string_to_timestamp_nanos(&full).is_ok().then_some(full)
}

/// `df` with each string literal that is read as a timestamp (cast to
/// one, compared with one, or given to `to_timestamp`) in the form
/// [`full_time`] gives it, where it needs one: a time without seconds,
/// `WHERE event_timestamp >= '2024-03-15 10:00'`, which PostgreSQL,
/// DuckDB and Spark read, failed in arrow's parser. Each expression keeps
/// its name, so the columns are named as the user wrote them.
fn with_full_times(df: DataFrame) -> datafusion::error::Result<DataFrame> {
    use datafusion::common::ScalarValue;
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::logical_expr::{Cast, Expr, TryCast};
    let full = |e: &Expr| -> Option<Expr> {
        let Expr::Literal(value, metadata) = e else {
            return None;
        };
        let value = match value {
            ScalarValue::Utf8(Some(s)) => ScalarValue::Utf8(Some(full_time(s)?)),
            ScalarValue::Utf8View(Some(s)) => ScalarValue::Utf8View(Some(full_time(s)?)),
            ScalarValue::LargeUtf8(Some(s)) => ScalarValue::LargeUtf8(Some(full_time(s)?)),
            _ => return None,
        };
        Some(Expr::Literal(value, metadata.clone()))
    };
    let is_time = |t: &DataType| matches!(t, DataType::Timestamp(..));
    rewritten(df, Walk::Up, |e, typed| match e {
        Expr::Cast(Cast { expr, field }) if is_time(field.data_type()) => full(expr).map(|l| {
            Expr::Cast(Cast {
                expr: Box::new(l),
                field: Arc::clone(field),
            })
        }),
        Expr::TryCast(TryCast { expr, field }) if is_time(field.data_type()) => {
            full(expr).map(|l| {
                Expr::TryCast(TryCast {
                    expr: Box::new(l),
                    field: Arc::clone(field),
                })
            })
        }
        Expr::ScalarFunction(f)
            if f.func.name().starts_with("to_timestamp") && f.args.len() == 1 =>
        {
            full(&f.args[0]).map(|l| {
                Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
                    Arc::clone(&f.func),
                    vec![l],
                ))
            })
        }
        // `'2024-03-15 09:00' AT TIME ZONE 'Europe/Berlin'`.
        Expr::ScalarFunction(f) if f.func.name() == "timezone" && f.args.len() == 2 => {
            full(&f.args[1]).map(|l| {
                Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
                    Arc::clone(&f.func),
                    vec![f.args[0].clone(), l],
                ))
            })
        }
        _ => {
            let pairs = compared(e);
            let literals: Vec<_> = pairs
                .iter()
                .filter(|(other, _)| typed(other).is_some_and(|t| is_time(&t)))
                .filter_map(|(_, l)| full(l).map(|f| ((*l).clone(), f)))
                .collect();
            (!literals.is_empty()).then(|| {
                e.clone()
                    .transform(|x| {
                        Ok(match literals.iter().find(|(l, _)| *l == x) {
                            Some((_, f)) => Transformed::yes(f.clone()),
                            None => Transformed::no(x),
                        })
                    })
                    .map(|t| t.data)
                    .unwrap_or(e.clone())
            })
        }
    })
}

/// `df` with each WHERE comparison of a zone's clock time of a lake
/// time with a literal (`event_timestamp AT TIME ZONE 'America/New_York' >=
/// TIMESTAMP '2024-03-03'`, evlake's `timezone(zone, time)`) kept, and
/// the lake time itself bounded too, two days wider than the literal
/// (`event_timestamp >= TIMESTAMP '2024-03-01'`), which no zone's offset
/// reaches: the answer is the same, and DataFusion skips files and row
/// groups by their statistics, as it did when `AT TIME ZONE` was its cast
/// (a one-day filter over a 6-date lake read 4 files, and then all 8).
fn with_zone_bounds(df: DataFrame) -> datafusion::error::Result<DataFrame> {
    use datafusion::common::tree_node::Transformed;
    use datafusion::logical_expr::utils::{conjunction, split_conjunction};
    use datafusion::logical_expr::{
        Between, BinaryExpr, Cast, Expr, ExprSchemable, Filter, LogicalPlan, Operator, lit,
    };
    // `time` (a column of a zoned time) at least (`op`) or at most
    // `bound`, read as a time with no zone, two days earlier (`by`,
    // minus) or later.
    let bounded = |time: &Expr, op: Operator, bound: &Expr, by: Operator| {
        let naive = DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Nanosecond, None);
        let moved = Expr::BinaryExpr(BinaryExpr::new(
            Box::new(Expr::Cast(Cast::new(Box::new(bound.clone()), naive))),
            by,
            Box::new(lit(datafusion::common::ScalarValue::new_interval_dt(2, 0))),
        ));
        Expr::BinaryExpr(BinaryExpr::new(Box::new(time.clone()), op, Box::new(moved)))
    };
    let (state, plan) = df.into_parts();
    let plan = plan
        .transform_up_with_subqueries(|node| {
            let LogicalPlan::Filter(filter) = &node else {
                return Ok(Transformed::no(node));
            };
            let schema = filter.input.schema();
            // The lake time of a clock time in a literal zone.
            fn clock_of<'a>(
                e: &'a Expr,
                schema: &datafusion::common::DFSchema,
            ) -> Option<&'a Expr> {
                match e {
                    Expr::ScalarFunction(f) if f.name() == "timezone" => match &f.args[..] {
                        [Expr::Literal(..), time @ Expr::Column(_)]
                            if matches!(
                                time.get_type(schema),
                                Ok(DataType::Timestamp(_, Some(_)))
                            ) =>
                        {
                            Some(time)
                        }
                        _ => None,
                    },
                    _ => None,
                }
            }
            let clock_of = |e| clock_of(e, schema);
            // Is `e` a literal (a time, a date, or text a time is read
            // from), cast or not?
            let literal = |e: &Expr| {
                let mut inner = e;
                while let Expr::Cast(c) = inner {
                    inner = &c.expr;
                }
                matches!(inner, Expr::Literal(..))
            };
            let mut bounds = vec![];
            for condition in split_conjunction(&filter.predicate) {
                match condition {
                    Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                        let (time, op, bound) = match (clock_of(left), clock_of(right)) {
                            (Some(time), None) if literal(right) => (time, *op, &**right),
                            (None, Some(time)) if literal(left) => match op.swap() {
                                Some(op) => (time, op, &**left),
                                None => continue,
                            },
                            _ => continue,
                        };
                        if matches!(op, Operator::Gt | Operator::GtEq | Operator::Eq) {
                            bounds.push(bounded(time, Operator::GtEq, bound, Operator::Minus));
                        }
                        if matches!(op, Operator::Lt | Operator::LtEq | Operator::Eq) {
                            bounds.push(bounded(time, Operator::LtEq, bound, Operator::Plus));
                        }
                    }
                    Expr::Between(Between {
                        expr,
                        negated: false,
                        low,
                        high,
                    }) if literal(low) && literal(high) => {
                        if let Some(time) = clock_of(expr) {
                            bounds.push(bounded(time, Operator::GtEq, low, Operator::Minus));
                            bounds.push(bounded(time, Operator::LtEq, high, Operator::Plus));
                        }
                    }
                    _ => {}
                }
            }
            if bounds.is_empty() {
                return Ok(Transformed::no(node));
            }
            let predicate = conjunction(std::iter::once(filter.predicate.clone()).chain(bounds))
                .expect("a predicate");
            Ok(Transformed::yes(LogicalPlan::Filter(Filter::try_new(
                predicate,
                Arc::clone(&filter.input),
            )?)))
        })?
        .data;
    Ok(DataFrame::new(state, plan))
}

/// Does a CAST from `from` to `to` change some values, or fail on
/// them, among the types DataFusion 55's simplifier moves a cast across
/// a comparison for (integers, decimals, times)? It moves `CAST(x AS t)
/// <op> literal` to `x <op> CAST(literal AS type of x)`, which is right
/// only for a cast that keeps every value: `CAST(amount AS BIGINT) = 19`
/// became `amount = 19.00` (DECIMAL(18,2) to an integer drops the
/// fraction), `CAST(n AS DECIMAL(10,1)) = 1.2` of 1.234 became `n =
/// 1.200`, `TRY_CAST(n AS TINYINT) < 5` of -1000 (NULL) became `n < 5`,
/// and a time with no zone cast to a zone (which moves it) was compared
/// an hour off. It guards only narrowed time units and dates.
fn changes_values(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    // The decimal digits an integer type holds in full, and how many
    // its largest value has; `None` for a type that is not an integer.
    let digits = |t: &DataType| match t {
        Int8 | UInt8 => Some((2, 3)),
        Int16 | UInt16 => Some((4, 5)),
        Int32 | UInt32 => Some((9, 10)),
        Int64 => Some((18, 19)),
        UInt64 => Some((19, 20)),
        _ => None,
    };
    let decimal = |t: &DataType| match t {
        Decimal32(p, s) | Decimal64(p, s) | Decimal128(p, s) | Decimal256(p, s) => {
            Some((i16::from(*p), i16::from(*s)))
        }
        _ => None,
    };
    let range = |t: &DataType| -> Option<(i128, i128)> {
        Some(match t {
            Int8 => (i8::MIN.into(), i8::MAX.into()),
            Int16 => (i16::MIN.into(), i16::MAX.into()),
            Int32 => (i32::MIN.into(), i32::MAX.into()),
            Int64 => (i64::MIN.into(), i64::MAX.into()),
            UInt8 => (0, u8::MAX.into()),
            UInt16 => (0, u16::MAX.into()),
            UInt32 => (0, u32::MAX.into()),
            UInt64 => (0, u64::MAX.into()),
            _ => return None,
        })
    };
    match (from, to) {
        (Timestamp(_, None), Timestamp(_, Some(zone))) => {
            !matches!(zone.as_ref(), "UTC" | "+00:00" | "Z")
        }
        _ => match (decimal(from), decimal(to), range(from), range(to)) {
            (Some((p1, s1)), Some((p2, s2)), _, _) => s2 < s1 || p2 - s2 < p1 - s1,
            (Some((p, s)), None, _, Some((low, _))) => {
                s > 0 || low == 0 || digits(to).is_some_and(|(whole, _)| p - s > whole)
            }
            (None, Some((p, s)), Some(_), _) => digits(from).is_some_and(|(_, most)| p - s < most),
            (None, None, Some((a, b)), Some((c, d))) => a < c || b > d,
            _ => false,
        },
    }
}

/// `df` with each CAST that [`changes_values`] put in
/// [`crate::udf::kept_cast`], as it is, so DataFusion does not move it
/// across a comparison. Each expression keeps its name.
fn with_kept_casts(df: DataFrame) -> datafusion::error::Result<DataFrame> {
    use datafusion::logical_expr::{Cast, Expr, TryCast};
    rewritten(df, Walk::Up, |e, typed| match e {
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field })
            if changes_values(&typed(expr)?, field.data_type()) =>
        {
            Some(crate::udf::kept_cast().call(vec![e.clone()]))
        }
        _ => None,
    })
}

/// `df` with each `+`, `-` and `*` of two integers computed by
/// [`crate::udf::checked_arithmetic`], which fails on overflow where
/// DataFusion's operators wrap: `9223372036854775807 + 1` was
/// -9223372036854775808, a wrong number with no warning. PostgreSQL and
/// DuckDB fail too. So is each one whose type is a decimal of the
/// widest precision, 38 digits (or 76), which DataFusion gives where the
/// exact type is wider and whose value may then have more digits than
/// that, shown as another number. Each expression keeps its name.
fn with_checked_arithmetic(df: DataFrame) -> datafusion::error::Result<DataFrame> {
    use datafusion::arrow::datatypes::{DECIMAL128_MAX_PRECISION, DECIMAL256_MAX_PRECISION};
    use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
    rewritten(df, Walk::Down, |e, typed| match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(op, Operator::Plus | Operator::Minus | Operator::Multiply)
                && (typed(left).is_some_and(|t| t.is_integer())
                    && typed(right).is_some_and(|t| t.is_integer())
                    || matches!(
                        typed(e),
                        Some(
                            DataType::Decimal128(DECIMAL128_MAX_PRECISION, _)
                                | DataType::Decimal256(DECIMAL256_MAX_PRECISION, _)
                        )
                    )) =>
        {
            Some(
                crate::udf::checked_arithmetic(*op).call(vec![(**left).clone(), (**right).clone()]),
            )
        }
        _ => None,
    })
}

/// The order [`rewritten`] visits an expression's parts in.
#[derive(Clone, Copy)]
enum Walk {
    /// Children first: `change` sees them replaced.
    Up,
    /// The expression first: `change` types what the user wrote, not what
    /// it has already replaced. For a replacement that keeps the type and
    /// calls a function of its own: typing a call types each argument with
    /// its name, so typing a chain of them bottom up took time of the
    /// chain's length cubed (`SELECT 1 + 1 + ...`, 200 terms: 20 s in the
    /// debug build).
    Down,
}

/// `df` with each expression `change` gives a replacement for replaced,
/// in every node and subquery, in the order `walk` says; `change` is given
/// a function that types an expression in the node's schemas (`None`
/// where it does not type). Each of a node's expressions keeps its name,
/// so columns are named as the user wrote them.
fn rewritten(
    df: DataFrame,
    walk: Walk,
    change: impl Fn(
        &datafusion::logical_expr::Expr,
        &dyn Fn(&datafusion::logical_expr::Expr) -> Option<DataType>,
    ) -> Option<datafusion::logical_expr::Expr>,
) -> datafusion::error::Result<DataFrame> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::logical_expr::expr_rewriter::NamePreserver;
    use datafusion::logical_expr::{Expr, ExprSchemable};
    let (state, plan) = df.into_parts();
    let plan = plan
        .transform_up_with_subqueries(|node| {
            let schemas: Vec<_> = node
                .inputs()
                .iter()
                .map(|input| Arc::clone(input.schema()))
                .chain([Arc::clone(node.schema())])
                .collect();
            let typed = |e: &Expr| schemas.iter().find_map(|schema| e.get_type(schema).ok());
            let names = NamePreserver::new(&node);
            node.map_expressions(|e| {
                let name = names.save(&e);
                let one = |e: Expr| {
                    Ok(match change(&e, &typed) {
                        Some(e) => Transformed::yes(e),
                        None => Transformed::no(e),
                    })
                };
                let e = match walk {
                    Walk::Down => e.transform_down(one)?,
                    Walk::Up => e.transform_up(one)?,
                };
                Ok(e.update_data(|e| name.restore(e)))
            })
        })?
        .data;
    Ok(DataFrame::new(state, plan))
}

/// The pairs of expressions `e` compares itself, each way round: the two
/// sides of `=`, `<` and the like, a `BETWEEN`'s value with each bound, an
/// `IN` list's value with each item.
fn compared(
    e: &datafusion::logical_expr::Expr,
) -> Vec<(
    &datafusion::logical_expr::Expr,
    &datafusion::logical_expr::Expr,
)> {
    use datafusion::logical_expr::{Expr, Operator};
    match e {
        Expr::BinaryExpr(b)
            if matches!(
                b.op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
                    | Operator::IsDistinctFrom
                    | Operator::IsNotDistinctFrom
            ) =>
        {
            vec![(&b.left, &b.right), (&b.right, &b.left)]
        }
        Expr::Between(b) => vec![(&b.expr, &b.low), (&b.expr, &b.high)],
        Expr::InList(l) => l.list.iter().map(|v| (&*l.expr, v)).collect(),
        _ => Vec::new(),
    }
}

/// A filter that compares a DATE with an integer that reads as YYYYMMDD
/// (`WHERE event_date = 20240315`, as tables partitioned by an integer
/// `dt` are queried): DataFusion reads the integer as days since
/// 1970-01-01, a date some 55,000 years on, so the filter matches
/// nothing, with no error. What is wrong, and the literal to write.
fn integer_date(plan: &datafusion::logical_expr::LogicalPlan) -> Option<String> {
    use datafusion::common::ScalarValue;
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
    let yyyymmdd = |e: &Expr| -> Option<(i64, chrono::NaiveDate)> {
        let n = match e {
            Expr::Literal(ScalarValue::Int64(Some(n)), _) => *n,
            Expr::Literal(ScalarValue::Int32(Some(n)), _) => i64::from(*n),
            _ => return None,
        };
        let (y, m, d) = (n / 10_000, (n / 100) % 100, n % 100);
        let date = chrono::NaiveDate::from_ymd_opt(
            i32::try_from(y)
                .ok()
                .filter(|y| (1900..=2999).contains(y))?,
            u32::try_from(m).ok()?,
            u32::try_from(d).ok()?,
        )?;
        Some((n, date))
    };
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        let LogicalPlan::Filter(filter) = node else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let schema = filter.input.schema();
        filter.predicate.apply(|e| {
            for (dated, literal) in compared(e) {
                if let Some((n, date)) = yyyymmdd(literal)
                    && matches!(
                        dated.get_type(schema),
                        Ok(DataType::Date32 | DataType::Date64)
                    )
                {
                    let read_as = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
                        .and_then(|epoch| epoch.checked_add_days(chrono::Days::new(n as u64)))
                        .map_or_else(String::new, |d| {
                            format!(", in the year {}", chrono::Datelike::year(&d))
                        });
                    found = Some(format!(
                        "a DATE compared with the integer {n}, which DataFusion reads as \
                         {n} days after 1970-01-01{read_as}, so it matches no date you meant: \
                         write DATE '{date}' (or '{date}')"
                    ));
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })
    });
    found
}

/// A filter with `IN (subquery)` whose left side is a constant
/// (`WHERE 'zz' NOT IN (SELECT page_url FROM events)`) over a column that
/// may hold NULLs, other than as a plain `AND`ed condition: DataFusion 55
/// turns it into a search for the constant among the subquery's rows and
/// drops SQL's NULL rule (a NULL among them makes `NOT IN` unknown, so no
/// row passes), so the query counts every row where PostgreSQL and DuckDB
/// count none, with no error. (With a column on the left it keeps the
/// rule.) What is wrong, and what to write.
fn constant_in_subquery(plan: &datafusion::logical_expr::LogicalPlan) -> Option<String> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::utils::split_conjunction;
    use datafusion::logical_expr::{Expr, LogicalPlan};
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        let LogicalPlan::Filter(filter) = node else {
            return Ok(TreeNodeRecursion::Continue);
        };
        for condition in split_conjunction(&filter.predicate) {
            // `x IN (subquery)` as a condition of its own keeps a row
            // only where the value is found: NULLs change nothing.
            if matches!(condition, Expr::InSubquery(s) if !s.negated) {
                continue;
            }
            let _ = condition.apply(|e| {
                if let Expr::InSubquery(s) = e
                    && s.expr.column_refs().is_empty()
                    && s.subquery
                        .subquery
                        .schema()
                        .fields()
                        .first()
                        .is_some_and(|f| f.is_nullable())
                {
                    let constant = match &*s.expr {
                        Expr::Literal(v, _) => format!(" (`{v}`)"),
                        _ => String::new(),
                    };
                    found = Some(format!(
                        "`IN (subquery)` with a constant on the left{constant}, negated or \
                         inside another expression: DataFusion 55 answers it as if the \
                         subquery's NULLs were not there (in SQL, a NULL among them makes \
                         `NOT IN` unknown, so no row passes), so its rows are not what \
                         PostgreSQL or DuckDB return; write what you mean: \
                         `NOT EXISTS (SELECT 1 FROM ... WHERE col = <constant>)` to ignore \
                         the NULLs, or a `count(*) FILTER (WHERE col IS NULL)` test for them"
                    ));
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            });
            if found.is_some() {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// `df` with each `IN` or `EXISTS` whose subquery refers to the outer
/// query and aggregates its rows into one (no GROUP BY) asked as what it
/// is: such a subquery gives one row even for no rows (a count of 0, a
/// NULL max), so `x IN (...)` is `x = (...)`, `x NOT IN (...)` is `x <>
/// (...)`, and `EXISTS (...)` is true; with a HAVING `h`, the row is
/// there where `h` holds, so `EXISTS` is `coalesce((SELECT h ...),
/// false)` and `IN` that and `x = (the value without HAVING)`.
/// DataFusion 55 joins the subquery by the correlation, where an outer
/// row with no rows gets none (SQL's "count bug"): `0 IN (SELECT count(*)
/// ...)` kept no row for which the count is 0, `EXISTS (SELECT max(...)
/// ...)` only the rows that had some, and `EXISTS (... HAVING count(*) <
/// 3)` no row with none. Its one-value subquery of an aggregate with no
/// HAVING handles that case right.
fn with_scalar_aggregate_subqueries(df: DataFrame) -> datafusion::error::Result<DataFrame> {
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{Expr, LogicalPlan, Projection, Subquery};
    /// `plan`'s one-row aggregate, as (its SELECT list's plan without a
    /// HAVING, and the HAVING's condition as a one-value plan), if `plan`
    /// aggregates all its rows into one.
    fn one_row(plan: &LogicalPlan) -> Option<(Arc<LogicalPlan>, Option<Arc<LogicalPlan>>)> {
        let one =
            |p: &LogicalPlan| matches!(p, LogicalPlan::Aggregate(a) if a.group_expr.is_empty());
        match plan {
            LogicalPlan::Projection(p) if one(&p.input) => Some((Arc::new(plan.clone()), None)),
            LogicalPlan::Projection(p) => match &*p.input {
                LogicalPlan::Filter(f) if one(&f.input) => {
                    let value = Projection::try_new(p.expr.clone(), Arc::clone(&f.input)).ok()?;
                    let holds = Projection::try_new(
                        vec![f.predicate.clone().alias("holds")],
                        Arc::clone(&f.input),
                    )
                    .ok()?;
                    Some((
                        Arc::new(LogicalPlan::Projection(value)),
                        Some(Arc::new(LogicalPlan::Projection(holds))),
                    ))
                }
                _ => None,
            },
            _ => None,
        }
    }
    let scalar = |s: &Subquery, plan: Arc<LogicalPlan>| {
        Expr::ScalarSubquery(Subquery {
            subquery: plan,
            outer_ref_columns: s.outer_ref_columns.clone(),
            spans: s.spans.clone(),
        })
    };
    // Whether the HAVING holds for the outer row (true with none).
    let holds = |s: &Subquery, having: Option<Arc<LogicalPlan>>| match having {
        None => Expr::Literal(ScalarValue::Boolean(Some(true)), None),
        Some(plan) => datafusion::functions::core::expr_fn::coalesce(vec![
            scalar(s, plan),
            Expr::Literal(ScalarValue::Boolean(Some(false)), None),
        ]),
    };
    // Correlated, and only by `=`: DataFusion 55 runs a one-value
    // subquery correlated otherwise not at all.
    let correlated = |s: &Subquery| {
        use datafusion::common::tree_node::TreeNode;
        use datafusion::logical_expr::utils::split_conjunction;
        use datafusion::logical_expr::{BinaryExpr, Operator};
        let outer = |e: &Expr| {
            e.exists(|e| Ok(matches!(e, Expr::OuterReferenceColumn(..))))
                .unwrap_or(true)
        };
        let other = s.subquery.exists(|node| {
            Ok(node.expressions().iter().any(|e| {
                split_conjunction(e).into_iter().any(|c| {
                    outer(c)
                        && !matches!(c, Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right })
                            if outer(left) != outer(right))
                })
            }))
        });
        !s.outer_ref_columns.is_empty() && !other.unwrap_or(true)
    };
    rewritten(df, Walk::Up, |e, _| match e {
        Expr::InSubquery(s) if correlated(&s.subquery) => {
            let (value, having) = one_row(&s.subquery.subquery)?;
            let value = scalar(&s.subquery, value);
            let x = s.expr.as_ref().clone();
            Some(match (s.negated, having) {
                (false, None) => x.eq(value),
                (true, None) => x.not_eq(value),
                (false, having) => holds(&s.subquery, having).and(x.eq(value)),
                (true, having) => {
                    Expr::Not(Box::new(holds(&s.subquery, having))).or(x.not_eq(value))
                }
            })
        }
        Expr::Exists(x) if correlated(&x.subquery) => {
            let (_, having) = one_row(&x.subquery.subquery)?;
            let holds = holds(&x.subquery, having);
            Some(match x.negated {
                true => Expr::Not(Box::new(holds)),
                false => holds,
            })
        }
        _ => None,
    })
}

/// May either side of `x IN (subquery)` be NULL (`schema`, the one `x`
/// is of)? Where neither may, DataFusion 55's answer is SQL's.
fn in_subquery_nullable(
    s: &datafusion::logical_expr::expr::InSubquery,
    schema: &datafusion::common::DFSchema,
) -> bool {
    use datafusion::logical_expr::ExprSchemable;
    s.expr.nullable(schema).unwrap_or(true)
        || s.subquery
            .subquery
            .schema()
            .fields()
            .first()
            .is_none_or(|f| f.is_nullable())
}

/// `df` with each `x NOT IN (subquery)` of a filter that DataFusion 55
/// would answer without SQL's NULLs (see [`in_subquery_nulls`]) asked as
/// the `NOT EXISTS` that keeps what it keeps: `NOT EXISTS (SELECT 1 FROM
/// (subquery) WHERE y = x OR y IS NULL OR x IS NULL)`, where `y` is the
/// subquery's column. That is exact where a filter only keeps its TRUE
/// rows and the NOT IN is reached through AND, OR and NOT alone: there
/// its NULL and FALSE keep the same rows. `NOT (x IN (subquery))` is
/// the same, as an `EXISTS`. A NOT IN as a condition of its own whose
/// subquery does not refer to the outer query is left to DataFusion's
/// null-aware anti join, which is right; one inside another expression
/// (`IS NULL`, `=`), and a correlated one whose subquery is more than
/// tables, joins, filters and DISTINCT, are left to the refusal.
fn with_null_aware_not_in(df: DataFrame) -> datafusion::error::Result<DataFrame> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::common::{Column, DFSchema};
    use datafusion::logical_expr::expr::{Exists, InSubquery};
    use datafusion::logical_expr::{
        BinaryExpr, Expr, Filter, LogicalPlan, LogicalPlanBuilder, Operator, Subquery,
    };
    /// The `EXISTS` (negated or not) whose TRUE is `s`'s NOT IN's (or,
    /// for `x IN`, whose FALSE is).
    fn null_aware(s: &InSubquery, schema: &DFSchema) -> datafusion::error::Result<Option<Expr>> {
        let mut outer = vec![];
        let mut found_subquery = false;
        let x = (*s.expr)
            .clone()
            .transform_up(|e| match e {
                Expr::Column(c) => {
                    let (_, field) = schema.qualified_field_from_column(&c)?;
                    let reference = Expr::OuterReferenceColumn(Arc::clone(field), c);
                    outer.push(reference.clone());
                    Ok(Transformed::yes(reference))
                }
                Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) => {
                    found_subquery = true;
                    Ok(Transformed::no(e))
                }
                e => Ok(Transformed::no(e)),
            })?
            .data;
        let plan = Arc::clone(&s.subquery.subquery);
        // A correlated subquery with an aggregate or a LIMIT is one its
        // EXISTS would get wrong: DataFusion 55 joins it by the
        // correlation, so the aggregate of no rows (one row, a NULL max)
        // and the LIMIT of each outer row's rows are lost.
        // Nor is one with a node DataFusion 55 does not take a
        // correlation through (a UNION, a sort): its EXISTS fails to plan.
        let per_row = !s.subquery.outer_ref_columns.is_empty()
            && plan.exists(|node| {
                Ok(!matches!(
                    node,
                    LogicalPlan::Projection(_)
                        | LogicalPlan::Filter(_)
                        | LogicalPlan::TableScan(_)
                        | LogicalPlan::SubqueryAlias(_)
                        | LogicalPlan::Join(_)
                        | LogicalPlan::Values(_)
                        | LogicalPlan::EmptyRelation(_)
                        | LogicalPlan::Distinct(_)
                ))
            })?;
        if found_subquery || per_row || plan.schema().fields().len() != 1 {
            return Ok(None);
        }
        let y = Expr::Column(Column::from(plan.schema().qualified_field(0)));
        let found = y.clone().eq(x.clone()).or(y.is_null()).or(x.is_null());
        let plan = LogicalPlanBuilder::from(plan).filter(found)?.build()?;
        let mut outer_ref_columns = s.subquery.outer_ref_columns.clone();
        for reference in outer {
            if !outer_ref_columns.contains(&reference) {
                outer_ref_columns.push(reference);
            }
        }
        Ok(Some(Expr::Exists(Exists {
            subquery: Subquery {
                subquery: Arc::new(plan),
                outer_ref_columns,
                spans: s.subquery.spans.clone(),
            },
            negated: s.negated,
        })))
    }
    /// `e`, a filter's condition or a part of it reached through AND, OR
    /// and NOT (`negated` by an odd number of NOTs; `alone` while only
    /// through AND, and a NOT right above it), with its NOT IN subqueries asked as [`null_aware`].
    fn rewrite(
        e: Expr,
        negated: bool,
        alone: bool,
        schema: &DFSchema,
    ) -> datafusion::error::Result<Expr> {
        Ok(match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right })
                if matches!(op, Operator::And | Operator::Or) =>
            {
                let alone = alone && op == Operator::And;
                Expr::BinaryExpr(BinaryExpr {
                    left: Box::new(rewrite(*left, negated, alone, schema)?),
                    op,
                    right: Box::new(rewrite(*right, negated, alone, schema)?),
                })
            }
            // `NOT (x IN (subquery))` alone is DataFusion's NOT IN.
            Expr::Not(inner) => {
                let alone = alone && matches!(*inner, Expr::InSubquery(_));
                Expr::Not(Box::new(rewrite(*inner, !negated, alone, schema)?))
            }
            Expr::InSubquery(s) => {
                let nullable = in_subquery_nullable(&s, schema);
                // Correlated, DataFusion 55 may also fail to plan it
                // ("null_aware anti join only supports single column join
                // key"), NULLs or none.
                let correlated = !s.subquery.outer_ref_columns.is_empty();
                let right = alone && !correlated;
                if s.negated != negated && (nullable || correlated) && !right {
                    match null_aware(&s, schema)? {
                        Some(exists) => exists,
                        None => Expr::InSubquery(s),
                    }
                } else {
                    Expr::InSubquery(s)
                }
            }
            e => e,
        })
    }
    let (state, plan) = df.into_parts();
    let plan = plan
        .transform_up_with_subqueries(|node| {
            let LogicalPlan::Filter(filter) = node else {
                return Ok(Transformed::no(node));
            };
            let has_in = filter
                .predicate
                .exists(|e| Ok(matches!(e, Expr::InSubquery(_))))?;
            if !has_in {
                return Ok(Transformed::no(LogicalPlan::Filter(filter)));
            }
            let schema = Arc::clone(filter.input.schema());
            let predicate = rewrite(filter.predicate, false, true, &schema)?;
            Ok(Transformed::yes(LogicalPlan::Filter(Filter::try_new(
                predicate,
                filter.input,
            )?)))
        })?
        .data;
    Ok(DataFrame::new(state, plan))
}

/// `x NOT IN (subquery)` where DataFusion 55 gets SQL's NULLs wrong,
/// with no error, and [`with_null_aware_not_in`] did not ask it as its
/// `NOT EXISTS`: in SQL it is unknown, and the row does not pass, when
/// `x` is NULL (and the subquery has rows) or a NULL is among the
/// subquery's rows. DataFusion 55 has that right only for a condition of
/// its own whose subquery does not refer to the outer query (a null-aware
/// anti join). A correlated one passed rows it must not (or failed to
/// plan, "null_aware anti join only supports single column join key"),
/// and one under OR or NOT, or a positive `IN (subquery)` inside `IS
/// NULL` or a comparison, is answered as if the NULLs were not there
/// (its mark join has no NULL). What is left here: one inside another
/// expression, and a correlated one whose subquery groups (one that
/// aggregates into one row is [`with_scalar_aggregate_subqueries`]'s),
/// takes a LIMIT, or has a UNION or an ORDER BY. Where neither side can be NULL,
/// the answer is right and this passes it.
fn in_subquery_nulls(plan: &datafusion::logical_expr::LogicalPlan) -> Option<String> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::expr::InSubquery;
    use datafusion::logical_expr::utils::split_conjunction;
    use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};
    // The first IN subquery below `e` that is NOT IN where NULLs count
    // (under AND, OR and NOT), or inside anything else, with where it is.
    fn misread<'a>(
        e: &'a Expr,
        negated: bool,
        nullable: &dyn Fn(&InSubquery) -> bool,
    ) -> Option<(&'a InSubquery, &'static str)> {
        match e {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::And | Operator::Or,
                right,
            }) => misread(left, negated, nullable).or_else(|| misread(right, negated, nullable)),
            Expr::Not(inner) => misread(inner, !negated, nullable),
            Expr::InSubquery(s) => {
                (s.negated != negated && nullable(s)).then_some((s, "under OR or NOT"))
            }
            _ => {
                let mut found = None;
                let _ = e.apply(|e| {
                    if let Expr::InSubquery(s) = e
                        && nullable(s)
                    {
                        found = Some((s, "inside another expression (`IS NULL`, `=`, ...)"));
                        return Ok(TreeNodeRecursion::Stop);
                    }
                    Ok(TreeNodeRecursion::Continue)
                });
                found
            }
        }
    }
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        let LogicalPlan::Filter(filter) = node else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let schema = filter.input.schema();
        let nullable = |s: &InSubquery| in_subquery_nullable(s, schema);
        for condition in split_conjunction(&filter.predicate) {
            let (mut e, mut negated) = (condition, false);
            while let Expr::Not(inner) = e {
                (e, negated) = (inner, !negated);
            }
            let problem = match e {
                Expr::InSubquery(s) => (s.negated != negated
                    && !s.subquery.outer_ref_columns.is_empty()
                    && nullable(s))
                .then_some((s, "with a subquery that refers to the outer query")),
                _ => misread(e, negated, &nullable),
            };
            let Some((s, position)) = problem else {
                continue;
            };
            let (x, op) = (s.expr.to_string(), if s.negated { "NOT IN" } else { "IN" });
            let y = match s.subquery.subquery.schema().qualified_field(0) {
                (_, field) if field.name().contains('(') => "<its value>".to_string(),
                (Some(table), field) => format!("{table}.{}", field.name()),
                (None, field) => field.name().clone(),
            };
            found = Some(format!(
                "`{x} {op} (subquery)` {position}: DataFusion 55 gets its NULLs wrong with no \
                 error (in SQL `NOT IN` is unknown, so the row does not pass, when `{x}` is NULL \
                 or a NULL is among the subquery's rows; DataFusion 55 answers as if the \
                 NULLs were not there); \
                 write what SQL's NOT IN keeps as `NOT EXISTS (SELECT 1 FROM ... WHERE <the \
                 subquery's conditions> AND ({y} = {x} OR {y} IS NULL OR {x} IS NULL))`, or \
                 without `OR {y} IS NULL OR {x} IS NULL` to pass over the NULLs; a positive \
                 `{x} IN (subquery)` is right as a condition of its own"
            ));
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// `x SIMILAR TO 'pattern'`: DataFusion 55 matches the pattern as a
/// regular expression found anywhere in the text, not as SQL's (and
/// PostgreSQL's, DuckDB's) pattern of the whole text with `%` and `_` as
/// wildcards: `'u15' SIMILAR TO 'u[0-9]'` was true, `'u1' SIMILAR TO
/// 'u%'` false, with no error. What is wrong, and the `regexp_like` that
/// does what SQL's does (for a pattern written as a literal).
fn similar_to(plan: &datafusion::logical_expr::LogicalPlan) -> Option<String> {
    use datafusion::common::ScalarValue;
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                let Expr::SimilarTo(like) = e else {
                    return Ok(TreeNodeRecursion::Continue);
                };
                let x = match &*like.expr {
                    Expr::Column(c) => c.name.clone(),
                    _ => "x".to_string(),
                };
                let instead = match &*like.pattern {
                    Expr::Literal(
                        ScalarValue::Utf8(Some(p))
                        | ScalarValue::Utf8View(Some(p))
                        | ScalarValue::LargeUtf8(Some(p)),
                        _,
                    ) => format!(
                        "`{}regexp_like({x}, '{}')`",
                        if like.negated { "NOT " } else { "" },
                        similar_to_regex(p, like.escape_char.unwrap_or('\\')).replace('\'', "''")
                    ),
                    _ => format!(
                        "`regexp_like({x}, '^(?:...)$')`, the pattern anchored, with `.*` for \
                         `%` and `.` for `_`"
                    ),
                };
                found = Some(format!(
                    "`SIMILAR TO`, which DataFusion 55 matches as a regular expression found \
                     anywhere in the text, without `%` and `_` as wildcards (so `'u15' SIMILAR \
                     TO 'u[0-9]'` is true and `'u1' SIMILAR TO 'u%'` false, where SQL matches \
                     the whole text); write {instead}"
                ));
                Ok(TreeNodeRecursion::Stop)
            })
        })
    });
    found
}

/// A window's `RANGE` frame over a DATE or TIMESTAMP with a bare number
/// as its offset (`ORDER BY event_date RANGE BETWEEN 6 PRECEDING AND
/// CURRENT ROW`, a 7-day rolling window as DuckDB reads it): DataFusion 55
/// casts the number to an interval of that many months, so the window
/// spans half a year, with no error. (PostgreSQL refuses such a frame.)
/// What is wrong, and the interval to write.
fn range_in_months(plan: &datafusion::logical_expr::LogicalPlan) -> Option<String> {
    use datafusion::common::ScalarValue;
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{
        Expr, ExprSchemable, LogicalPlan, WindowFrameBound, WindowFrameUnits,
    };
    let bare = |bound: &WindowFrameBound| -> Option<String> {
        let (WindowFrameBound::Preceding(v) | WindowFrameBound::Following(v)) = bound else {
            return None;
        };
        if v.is_null() {
            return None;
        }
        match v {
            ScalarValue::Utf8(Some(t))
            | ScalarValue::Utf8View(Some(t))
            | ScalarValue::LargeUtf8(Some(t)) => t
                .trim()
                .parse::<f64>()
                .is_ok()
                .then(|| t.trim().to_string()),
            v if v.data_type().is_numeric() => Some(v.to_string()),
            _ => None,
        }
    };
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        let LogicalPlan::Window(window) = node else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let schema = window.input.schema();
        node.apply_expressions(|e| {
            e.apply(|e| {
                let Expr::WindowFunction(f) = e else {
                    return Ok(TreeNodeRecursion::Continue);
                };
                let frame = &f.params.window_frame;
                let Some(key) = f.params.order_by.first() else {
                    return Ok(TreeNodeRecursion::Continue);
                };
                if frame.units != WindowFrameUnits::Range {
                    return Ok(TreeNodeRecursion::Continue);
                }
                let (unit, reads) = match key.expr.get_type(schema) {
                    Ok(DataType::Date32 | DataType::Date64) => {
                        ("days", " (DuckDB reads days; PostgreSQL refuses it)")
                    }
                    Ok(DataType::Timestamp(..)) => ("seconds", " (PostgreSQL refuses it)"),
                    _ => return Ok(TreeNodeRecursion::Continue),
                };
                for bound in [&frame.start_bound, &frame.end_bound] {
                    let Some(n) = bare(bound) else { continue };
                    let way = if matches!(bound, WindowFrameBound::Preceding(_)) {
                        "PRECEDING"
                    } else {
                        "FOLLOWING"
                    };
                    let key = match &key.expr {
                        Expr::Column(c) => format!("`{}`", c.name),
                        _ => "a date or time".to_string(),
                    };
                    found = Some(format!(
                        "a window frame `RANGE` over {key} with a bare number as its offset \
                         (`{n} {way}`), which DataFusion 55 reads as {n} months{reads}, \
                         with no error; write the unit: `INTERVAL '{n} {unit}' {way}`"
                    ));
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    found
}

/// Can DataFusion 55 run a `RANGE` frame over an ORDER BY of type `t`?
/// Its type coercion's own test: numbers, text, booleans, lists, dates
/// and timestamps (and a dictionary of one); a struct, map, bytes, time
/// of day or duration it refuses as an internal error.
fn rangeable(t: &DataType) -> bool {
    match t {
        DataType::Dictionary(_, value) => rangeable(value),
        t => {
            t.is_numeric()
                || t.is_null()
                || matches!(
                    t,
                    DataType::Utf8
                        | DataType::LargeUtf8
                        | DataType::Utf8View
                        | DataType::Boolean
                        | DataType::List(_)
                        | DataType::LargeList(_)
                        | DataType::FixedSizeList(..)
                        | DataType::Date32
                        | DataType::Date64
                        | DataType::Timestamp(..)
                )
        }
    }
}

/// Is `frame` a `RANGE` frame with no offset, `UNBOUNDED` or `CURRENT
/// ROW` at both ends (the default with an ORDER BY)? It is the same rows
/// as `GROUPS` with the same ends: up to or from the current row's peers.
fn range_without_offset(frame: &datafusion::logical_expr::WindowFrame) -> bool {
    use datafusion::logical_expr::{WindowFrameBound, WindowFrameUnits};
    let plain = |b: &WindowFrameBound| b.is_unbounded() || *b == WindowFrameBound::CurrentRow;
    frame.units == WindowFrameUnits::Range && plain(&frame.start_bound) && plain(&frame.end_bound)
}

/// Aggregates whose answer does not depend on the order of their rows
/// and whose grouped accumulators in DataFusion 55 take one column, so
/// an ORDER BY in the call (`avg(x ORDER BY y)`, which DuckDB and
/// PostgreSQL run) failed under GROUP BY: avg, count, median, stddev,
/// var and the bit_ ones panicked on an assertion, min and max said
/// "number of columns(2) must match number of fields(3)".
const ORDER_FREE: &[&str] = &[
    "avg",
    "count",
    "median",
    "stddev",
    "stddev_pop",
    "var",
    "var_pop",
    "bit_and",
    "bit_or",
    "bit_xor",
    "min",
    "max",
];

/// `df` with the ORDER BY inside each call of an [`ORDER_FREE`]
/// aggregate left out, which changes no answer; its name is kept.
fn without_needless_order(df: DataFrame) -> datafusion::error::Result<DataFrame> {
    use datafusion::logical_expr::Expr;
    rewritten(df, Walk::Up, |e, _| match e {
        Expr::AggregateFunction(f)
            if !f.params.order_by.is_empty() && ORDER_FREE.contains(&f.func.name()) =>
        {
            let mut f = f.clone();
            f.params.order_by.clear();
            Some(Expr::AggregateFunction(f))
        }
        _ => None,
    })
}

/// `df` with each window's `RANGE` frame without an offset over an ORDER
/// BY DataFusion 55 cannot range over (a struct, time of day, duration,
/// bytes), the default frame of `count(*) OVER (ORDER BY CAST(ts AS
/// TIME))`, as the `GROUPS` frame with the same ends, which is the same
/// rows and needs no arithmetic on the key. DataFusion refuses it as an
/// internal error, though it sorts by such a key.
fn with_peer_frames(df: DataFrame) -> datafusion::error::Result<DataFrame> {
    use datafusion::logical_expr::{Expr, WindowFrame, WindowFrameUnits};
    rewritten(df, Walk::Up, |e, typed| match e {
        Expr::WindowFunction(f)
            if range_without_offset(&f.params.window_frame)
                && f.params
                    .order_by
                    .first()
                    .and_then(|key| typed(&key.expr))
                    .is_some_and(|t| !rangeable(&t)) =>
        {
            let mut f = f.clone();
            let frame = &f.params.window_frame;
            f.params.window_frame = WindowFrame::new_bounds(
                WindowFrameUnits::Groups,
                frame.start_bound.clone(),
                frame.end_bound.clone(),
            );
            Some(Expr::WindowFunction(f))
        }
        _ => None,
    })
}

/// A window's `RANGE` frame with an offset over an ORDER BY DataFusion
/// 55 cannot range over, which its type coercion refuses as an internal
/// error, asking for a bug report.
fn range_over_unrangeable(plan: &datafusion::logical_expr::LogicalPlan) -> Option<String> {
    use datafusion::logical_expr::{Expr, ExprSchemable, WindowFrameUnits};
    first_expr_problem(plan, |e, input| {
        let Expr::WindowFunction(f) = e else {
            return None;
        };
        let frame = &f.params.window_frame;
        if frame.units != WindowFrameUnits::Range || range_without_offset(frame) {
            return None;
        }
        let t = f.params.order_by.first()?.expr.get_type(input).ok()?;
        if rangeable(&t) {
            return None;
        }
        let instead = match t {
            DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Duration(_)
            | DataType::Interval(_) => {
                "order by its seconds, `ORDER BY date_part('epoch', t)`, with the offset in \
                 seconds (`3600 PRECEDING`), or use ROWS or GROUPS"
            }
            _ => "order by a number, text, date or timestamp, or use ROWS or GROUPS",
        };
        Some(format!(
            "a window frame `{frame}` over an ORDER BY of type {t}: DataFusion 55 takes a \
             RANGE offset only over a number, text, date or timestamp; {instead}"
        ))
    })
}

/// An interval's months, days and nanoseconds, for a literal (or a
/// literal cast to an interval, `CAST('1 day' AS INTERVAL)`).
fn interval_parts(e: &datafusion::logical_expr::Expr) -> Option<(i64, i64, i64)> {
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Expr;
    if let Expr::Cast(c) = e
        && let (Expr::Literal(v, _), DataType::Interval(_)) = (&*c.expr, c.field.data_type())
    {
        let v = v.cast_to(c.field.data_type()).ok()?;
        return interval_parts(&Expr::Literal(v, None));
    }
    match e {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) => {
            Some((i64::from(v.months), i64::from(v.days), v.nanoseconds))
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
            Some((0, i64::from(v.days), i64::from(v.milliseconds) * 1_000_000))
        }
        Expr::Literal(ScalarValue::IntervalYearMonth(Some(m)), _) => Some((i64::from(*m), 0, 0)),
        _ => None,
    }
}

/// Which of months, days and the rest a duration or interval expression
/// may hold; None when that cannot be told.
fn interval_fields(
    e: &datafusion::logical_expr::Expr,
    schema: &datafusion::common::DFSchema,
) -> Option<[bool; 3]> {
    use datafusion::logical_expr::{Expr, ExprSchemable, Operator};
    if matches!(e.get_type(schema), Ok(DataType::Duration(_))) {
        return Some([false, false, true]);
    }
    if let Some((m, d, n)) = interval_parts(e) {
        return Some([m != 0, d != 0, n != 0]);
    }
    match e {
        Expr::Alias(a) => interval_fields(&a.expr, schema),
        Expr::Cast(c) => interval_fields(&c.expr, schema),
        Expr::TryCast(c) => interval_fields(&c.expr, schema),
        Expr::BinaryExpr(b) if matches!(b.op, Operator::Plus | Operator::Minus) => {
            let (l, r) = (
                interval_fields(&b.left, schema)?,
                interval_fields(&b.right, schema)?,
            );
            Some([l[0] || r[0], l[1] || r[1], l[2] || r[2]])
        }
        _ => None,
    }
}

/// The first problem `check` finds in an expression or sub-expression of
/// `plan` or of its subqueries, each checked with the columns its node may
/// name: its inputs' (a join's condition names both sides).
fn first_expr_problem(
    plan: &datafusion::logical_expr::LogicalPlan,
    mut check: impl FnMut(
        &datafusion::logical_expr::Expr,
        &datafusion::common::DFSchema,
    ) -> Option<String>,
) -> Option<String> {
    use datafusion::common::DFSchema;
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        let mut schema = DFSchema::empty();
        for input in node.inputs() {
            schema.merge(input.schema());
        }
        node.apply_expressions(|e| {
            e.apply(|e| {
                found = check(e, &schema);
                Ok(if found.is_some() {
                    TreeNodeRecursion::Stop
                } else {
                    TreeNodeRecursion::Continue
                })
            })
        })
    });
    found
}

/// A JSON member read with `->` (a union of types: json_get's) used
/// where DataFusion 55 gets it wrong. A union has no NULLs of its own (a
/// missing member is its `null` member), and most of DataFusion passes
/// over that:
/// - two compared (`=`, `<`, `IN`, and so a join on them, `IN` or
///   `EXISTS` with a subquery): two missing members were equal, so a join
///   matched every event lacking it with every other (SQL's NULL = NULL
///   matches nothing); INTERSECT and EXCEPT of them failed as they ran;
/// - `IGNORE NULLS` (first_value, last_value, nth_value, lag, lead) did
///   not pass over a missing member;
/// - other functions and operators converted it each their own way:
///   `concat` dropped a number, `||`, `nvl` and `string_agg` gave NULL,
///   `nullif` gave NULL on every row, `IS TRUE` was false for `true`.
///
/// What is right stays allowed: showing, CAST, `IS NULL`, a comparison
/// with a value of another type (a cast of the member), `BETWEEN` and
/// `IN` a list of values, CASE's results, coalesce, greatest, least,
/// the json_ functions (not json_length or json_object_keys, which gave
/// NULL of an object) and `->` again, grouping, ordering, DISTINCT,
/// count, approx_distinct, array_agg, lag, lead and the window value
/// functions (min and max are [`unorderable_in_aggregate`]'s).
fn union_misuse(plan: &datafusion::logical_expr::LogicalPlan) -> Option<String> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::expr::{NullTreatment, WindowFunctionDefinition};
    use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
    const READ: &str = "read the member as text, `properties->>'k'`, or typed, \
                        `json_get_int(properties, 'k')` (json_get_float, json_get_str, \
                        json_get_bool)";
    let compared = |what: String| {
        format!(
            "{what} two JSON members read with `->` (unions of types), which DataFusion 55 \
             compares wrongly: a member missing on both sides is equal (SQL's NULL = NULL \
             matches nothing), so a join on them matched every event lacking it with every \
             other, and INTERSECT and EXCEPT of them failed as they ran; compare them as text, \
             `(a.properties->>'k') = (b.properties->>'k')`, or typed, \
             `json_get_int(a.properties, 'k') = json_get_int(b.properties, 'k')`"
        )
    };
    let misused = |what: String| {
        format!(
            "{what} of a JSON member read with `->` (a union of types), which DataFusion 55 \
             converts each its own way (`concat` dropped a number; `||`, `nvl` and \
             `string_agg` gave NULL): {READ}. A member read with `->` can be shown, cast, \
             tested with IS NULL, compared with a value, grouped, ordered, counted, and read \
             further with `->` and the json_ functions"
        )
    };
    // `e.properties->'k'` as written, not DataFusion's `json_get(...) AS ...`.
    fn written(e: &Expr) -> String {
        match e.clone().unalias_nested().data {
            Expr::ScalarFunction(f) if f.func.name() == "json_get" => {
                let mut text = match f.args.first() {
                    Some(Expr::Column(c)) | Some(Expr::OuterReferenceColumn(_, c)) => c.flat_name(),
                    Some(other) => written(other),
                    None => return e.to_string(),
                };
                for key in &f.args[1..] {
                    match key {
                        Expr::Literal(
                            datafusion::common::ScalarValue::Utf8(Some(k))
                            | datafusion::common::ScalarValue::Utf8View(Some(k))
                            | datafusion::common::ScalarValue::LargeUtf8(Some(k)),
                            _,
                        ) => text += &format!("->'{k}'"),
                        other => text += &format!("->{other}"),
                    }
                }
                text
            }
            Expr::Column(c) => c.flat_name(),
            other => other.to_string(),
        }
    }
    let union_in = |e: &Expr, schema: &datafusion::common::DFSchema| {
        e.get_type(schema).is_ok_and(|t| is_union(&t))
    };
    let mut found = None;
    // Keys a join plans with (USING, NATURAL, INTERSECT, EXCEPT).
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Join(j) = node
            && let Some((l, r)) =
                j.on.iter()
                    .find(|(l, r)| union_in(l, j.left.schema()) || union_in(r, j.right.schema()))
        {
            found = Some(compared(format!(
                "a join (or INTERSECT, EXCEPT) on `{}` = `{}` matches",
                written(l),
                written(r)
            )));
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if found.is_some() {
        return found;
    }
    // Aggregates and window functions that take a member as it is.
    const KEEPS: &[&str] = &[
        "count",
        "approx_distinct",
        "array_agg",
        "first_value",
        "last_value",
        "nth_value",
        "lag",
        "lead",
        "min",
        "max",
    ];
    first_expr_problem(plan, |e, input| {
        let union = |x: &Expr| union_in(x, input);
        let ignoring = |name: &str, args: &[Expr], nulls: &Option<NullTreatment>| {
            if !args.iter().any(union) {
                None
            } else if *nulls == Some(NullTreatment::IgnoreNulls) {
                Some(format!(
                    "`{name}(...) IGNORE NULLS` of a JSON member read with `->` (a union of \
                     types) does not pass over a missing member in DataFusion 55 (it gave NULL \
                     where an earlier row had a value): {READ}"
                ))
            } else if KEEPS.contains(&name) {
                None
            } else {
                Some(misused(format!("`{name}`")))
            }
        };
        match e {
            Expr::Alias(_)
            | Expr::Column(_)
            | Expr::Cast(_)
            | Expr::TryCast(_)
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::Case(_)
            | Expr::GroupingSet(_) => None,
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let comparison = matches!(
                    op,
                    Operator::Eq
                        | Operator::NotEq
                        | Operator::Lt
                        | Operator::LtEq
                        | Operator::Gt
                        | Operator::GtEq
                        | Operator::IsDistinctFrom
                        | Operator::IsNotDistinctFrom
                );
                match (union(left), union(right)) {
                    (true, true) if comparison => Some(compared(format!(
                        "`{} {op} {}` compares",
                        written(left),
                        written(right)
                    ))),
                    (false, false) => None,
                    _ if comparison => None,
                    _ => Some(misused(format!("`{op}`"))),
                }
            }
            Expr::Between(b) => (union(&b.expr) && (union(&b.low) || union(&b.high)))
                .then(|| compared(format!("`{} BETWEEN ...` compares", written(&b.expr)))),
            Expr::InList(l) => (union(&l.expr) && l.list.iter().any(union))
                .then(|| compared(format!("`{} IN (...)` compares", written(&l.expr)))),
            Expr::InSubquery(s) => (union(&s.expr)
                && s.subquery
                    .subquery
                    .schema()
                    .fields()
                    .first()
                    .is_some_and(|f| is_union(f.data_type())))
            .then(|| compared(format!("`{} IN (subquery)` compares", written(&s.expr)))),
            Expr::ScalarFunction(f) => {
                let name = f.func.name();
                // json_length and json_object_keys of a member that is
                // an object gave NULL (of the same JSON as text: its size
                // and keys).
                let takes_it = match name {
                    "json_length" | "json_object_keys" | "json_members" => false,
                    "coalesce" | "greatest" | "least" | "make_array" | "named_struct"
                    | "struct" | "arrow_typeof" | "arrow_cast" => true,
                    _ => name.starts_with("json_"),
                };
                (f.args.iter().any(union) && !takes_it).then(|| misused(format!("`{name}`")))
            }
            Expr::AggregateFunction(f) => {
                ignoring(f.func.name(), &f.params.args, &f.params.null_treatment)
            }
            Expr::WindowFunction(w) => {
                let name = match &w.fun {
                    WindowFunctionDefinition::AggregateUDF(f) => f.name(),
                    WindowFunctionDefinition::WindowUDF(f) => f.name(),
                };
                ignoring(name, &w.params.args, &w.params.null_treatment)
            }
            other => {
                let mut direct = false;
                let _ = other.apply_children(|c| {
                    direct = union(c);
                    Ok(if direct {
                        TreeNodeRecursion::Stop
                    } else {
                        TreeNodeRecursion::Continue
                    })
                });
                let what = match other {
                    Expr::Not(_) => "NOT",
                    Expr::Negative(_) => "-",
                    Expr::Like(l) if l.case_insensitive => "ILIKE",
                    Expr::Like(_) => "LIKE",
                    Expr::SimilarTo(_) => "SIMILAR TO",
                    Expr::IsTrue(_) => "IS TRUE",
                    Expr::IsFalse(_) => "IS FALSE",
                    Expr::IsUnknown(_) => "IS UNKNOWN",
                    Expr::IsNotTrue(_) => "IS NOT TRUE",
                    Expr::IsNotFalse(_) => "IS NOT FALSE",
                    Expr::IsNotUnknown(_) => "IS NOT UNKNOWN",
                    other => other.variant_name(),
                };
                direct.then(|| misused(format!("`{what}`")))
            }
        }
    })
}

/// Can DataFusion 55's `min` and `max` order values of type `t`? Not a
/// map, a list of lists, structs or maps, or a struct holding a list or a
/// map: it plans them and then fails as it runs with an internal error
/// ("Min/Max accumulator not implemented", "Uncomparable values"). Nor a
/// union (a JSON member read with `->`).
fn min_max_orders(t: &DataType) -> bool {
    match t {
        DataType::Map(..) | DataType::Union(..) => false,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::ListView(f)
        | DataType::LargeListView(f) => !f.data_type().is_nested(),
        DataType::Struct(fields) => fields.iter().all(|f| {
            let t = f.data_type();
            (!t.is_nested() || matches!(t, DataType::Struct(_))) && min_max_orders(t)
        }),
        _ => true,
    }
}

/// `min` or `max` of a value [`min_max_orders`] says DataFusion 55
/// cannot order, grouped, over a window or alone, or an aggregate whose
/// own ORDER BY is of such a value (`last_value(x ORDER BY m)`, which
/// failed so, and `array_agg(x ORDER BY l)`, which panicked).
fn unorderable_in_aggregate(plan: &datafusion::logical_expr::LogicalPlan) -> Option<String> {
    use datafusion::logical_expr::{Expr, ExprSchemable, expr::WindowFunctionDefinition};
    first_expr_problem(plan, |e, input| {
        let (name, args) = match e {
            Expr::AggregateFunction(f) => (f.func.name(), &f.params.args),
            Expr::WindowFunction(w) => match &w.fun {
                WindowFunctionDefinition::AggregateUDF(f) => (f.name(), &w.params.args),
                _ => return None,
            },
            _ => return None,
        };
        if matches!(name, "min" | "max")
            && let Some(arg) = args.first()
            && let Ok(t) = arg.get_type(input)
            && !min_max_orders(&t)
        {
            return Some(if is_union(&t) {
                format!(
                    "`{name}` of a JSON member read with `->`, a union of types, which \
                     DataFusion 55 does not order: take it of the member as text, \
                     `{name}(properties->>'k')`, or as a number, \
                     `{name}(json_get_float(properties, 'k'))`"
                )
            } else if let DataType::Map(..) = t {
                format!(
                    "`{name}` of a map, which DataFusion 55 does not order: take it of a \
                     key's value, `{name}(m['k'])`"
                )
            } else {
                format!(
                    "`{name}` of {t}, which DataFusion 55 does not order (a list of lists, \
                     structs or maps, or a struct holding a list or a map): take it of a part \
                     that is a number, text or a list of them, `{name}(a[1])`, \
                     `{name}(s['f'])`"
                )
            });
        }
        // An aggregate's own ORDER BY (`array_agg(x ORDER BY k)`) compares
        // its keys the same way.
        let Expr::AggregateFunction(f) = e else {
            return None;
        };
        let t = f
            .params
            .order_by
            .iter()
            .filter_map(|key| key.expr.get_type(input).ok())
            // (A union key orders there, as in a query's ORDER BY.)
            .find(|t| !is_union(t) && !min_max_orders(t))?;
        Some(format!(
            "`{name}(... ORDER BY k)` with `k` of {t}, which DataFusion 55 does not order \
             inside an aggregate (a map, a list of lists, structs or maps, or a struct holding \
             a list or a map): order by a part that is a number, text or a list of them, \
             `ORDER BY k[1]`, `ORDER BY k['f']`"
        ))
    })
}

/// `array_agg` or `string_agg` with DISTINCT and an ORDER BY other than
/// its argument, which DataFusion 55 plans and then fails as it runs
/// ("ORDER BY expressions must appear in argument list"), as PostgreSQL
/// and DuckDB refuse it: the order of distinct values is theirs. So did
/// `string_agg(DISTINCT n, ',' ORDER BY n)` of a number, which DuckDB
/// answers in the number's order: DataFusion casts `n` to text for
/// string_agg and not its ORDER BY.
fn distinct_order(plan: &datafusion::logical_expr::LogicalPlan) -> Option<String> {
    use datafusion::logical_expr::{Expr, ExprSchemable};
    first_expr_problem(plan, |e, input| {
        let Expr::AggregateFunction(f) = e else {
            return None;
        };
        let name = f.func.name();
        let (arg, order) = (f.params.args.first()?, &f.params.order_by);
        if !f.params.distinct || order.is_empty() || !matches!(name, "array_agg" | "string_agg") {
            return None;
        }
        let [key] = &order[..] else {
            return Some(format!(
                "`{name}(DISTINCT {arg} ORDER BY ...)` with {} ORDER BY keys: with DISTINCT, an \
                 aggregate's ORDER BY is its argument alone, as in PostgreSQL and DuckDB: \
                 `{name}(DISTINCT x ORDER BY x)`",
                order.len()
            ));
        };
        if key.expr != *arg {
            return Some(format!(
                "`{name}(DISTINCT {arg} ORDER BY {})`: with DISTINCT, an aggregate's ORDER BY \
                 is its argument as written, as in PostgreSQL and DuckDB: `{name}(DISTINCT x \
                 ORDER BY x)`; to order by another key, take the distinct rows in a subquery \
                 first: `SELECT {name}(x ORDER BY k) FROM (SELECT DISTINCT x, k FROM t)`",
                key.expr
            ));
        }
        match arg.get_type(input).ok()? {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => None,
            t if name == "string_agg" => Some(format!(
                "`string_agg(DISTINCT {arg}, ... ORDER BY {arg})` of {t}: DataFusion 55 casts \
                 string_agg's value to text and not its ORDER BY, and then finds them apart; \
                 `array_to_string(array_agg(DISTINCT n ORDER BY n), ',')` gives the values in \
                 their own order (1,2,12; '' rather than NULL when there are none), and \
                 `string_agg(DISTINCT CAST(n AS VARCHAR), ',' ORDER BY CAST(n AS VARCHAR))` in \
                 the order of their text (1,12,2)"
            )),
            _ => None,
        }
    })
}

/// An aggregate with DISTINCT whose DataFusion 55 implementation passes
/// over it and takes every row, with no error: the statistics of two
/// columns (`corr`, `covar_samp`, `covar_pop`, the `regr_` functions),
/// `approx_percentile_cont` and `nth_value`. `regr_count(DISTINCT y, x)`
/// of six rows with two repeats was 6 where PostgreSQL and DuckDB give 4,
/// and `corr(DISTINCT x, y)` was the correlation of every row. (Of one
/// column alone, DataFusion takes the distinct values first whatever the
/// aggregate, so `stddev(DISTINCT x)` is right; beside another DISTINCT
/// it is refused.)
fn distinct_passed_over(plan: &datafusion::logical_expr::LogicalPlan) -> Option<String> {
    use datafusion::logical_expr::{Expr, expr::WindowFunctionDefinition};
    first_expr_problem(plan, |e, _| {
        let (name, distinct) = match e {
            Expr::AggregateFunction(f) => (f.func.name(), f.params.distinct),
            Expr::WindowFunction(w) => match &w.fun {
                WindowFunctionDefinition::AggregateUDF(f) => (f.name(), w.params.distinct),
                _ => return None,
            },
            _ => return None,
        };
        if !distinct {
            return None;
        }
        let instead = match name {
            "corr" | "covar_samp" | "covar_pop" => format!(
                "take the distinct rows in a subquery first: `SELECT {name}(x, y) FROM (SELECT \
                 DISTINCT x, y FROM t)`"
            ),
            regr if regr.starts_with("regr_") => format!(
                "take the distinct rows in a subquery first: `SELECT {regr}(y, x) FROM (SELECT \
                 DISTINCT y, x FROM t)`"
            ),
            "approx_percentile_cont" => "take the distinct values in a subquery first: `SELECT \
                 approx_percentile_cont(x, 0.5) FROM (SELECT DISTINCT x FROM t)`, or write \
                 `percentile_cont(DISTINCT 0.5) WITHIN GROUP (ORDER BY x)`, which reads DISTINCT"
                .to_string(),
            "nth_value" => "the nth of the distinct values in order is `array_agg(DISTINCT x \
                 ORDER BY x)[n]`"
                .to_string(),
            _ => return None,
        };
        Some(format!(
            "`{name}(DISTINCT ...)`: DataFusion 55 passes over DISTINCT in `{name}` and takes \
             every row, with no error; {instead}"
        ))
    })
}

/// A window function `first_value`, `last_value` or `nth_value` called
/// with other than its arguments: DataFusion 55's signature takes none,
/// one or two for each, and then panics on none (`first_value() OVER
/// ()`), passes over a second (Spark's skip-NULLs flag,
/// `first_value(x, true)`, is not read), or fails as it runs.
fn window_value_arguments(plan: &datafusion::logical_expr::LogicalPlan) -> Option<String> {
    use datafusion::logical_expr::{Expr, expr::WindowFunctionDefinition};
    first_expr_problem(plan, |e, _| {
        let Expr::WindowFunction(w) = e else {
            return None;
        };
        let WindowFunctionDefinition::WindowUDF(f) = &w.fun else {
            return None;
        };
        let given = w.params.args.len();
        match f.name() {
            name @ ("first_value" | "last_value") if given != 1 => Some(format!(
                "`{name}` over a window takes one argument, the value: `{name}(x) OVER (...)`, \
                 given {given}; to skip NULLs (Spark's `{name}(x, true)`), `{name}(x) IGNORE \
                 NULLS OVER (...)`"
            )),
            "nth_value" if given != 2 => Some(format!(
                "`nth_value` over a window takes two arguments, the value and which row of the \
                 frame, a literal from 1: `nth_value(x, 2) OVER (...)`, given {given}"
            )),
            _ => None,
        }
    })
}

/// A window function in WHERE, HAVING or a join's ON, which SQL computes
/// before any window (PostgreSQL: "window functions are not allowed in
/// WHERE"): DataFusion 55 plans it and fails as it runs, with the
/// function's debug dump. What to write: QUALIFY, or an outer query.
fn window_in_filter(plan: &datafusion::logical_expr::LogicalPlan) -> Option<String> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Expr, LogicalPlan};
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        let condition = match node {
            LogicalPlan::Filter(f) => Some(&f.predicate),
            LogicalPlan::Join(j) => j.filter.as_ref(),
            _ => None,
        };
        if let Some(condition) = condition {
            let _ = condition.apply(|e| {
                if let Expr::WindowFunction(w) = e {
                    found = Some(w.fun.name().to_string());
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(if found.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found.map(|name| {
        format!(
            "a window function, `{name}(...) OVER (...)`, in WHERE, HAVING or a join's ON, \
             which SQL computes before any window: filter on it with QUALIFY, `SELECT * FROM \
             events QUALIFY source_line > avg(source_line) OVER ()`, or in an outer query, `SELECT \
             * FROM (SELECT *, avg(source_line) OVER () AS a FROM events) WHERE source_line > a`"
        )
    })
}

/// `x ^ y`, which DataFusion 55 reads as bitwise XOR (MySQL's meaning),
/// so `event_count ^ 2` is `event_count` with its second bit flipped, with
/// no error, where PostgreSQL and DuckDB raise to a power. What to write
/// for either.
fn caret_xor(plan: &datafusion::logical_expr::LogicalPlan) -> Option<String> {
    use datafusion::logical_expr::{Expr, Operator};
    first_expr_problem(plan, |e, _| {
        matches!(e, Expr::BinaryExpr(b) if b.op == Operator::BitwiseXor).then(|| {
            "`^`, which DataFusion 55 reads as bitwise XOR (`2 ^ 10` is 8), with no error, where \
             PostgreSQL and DuckDB raise to a power (1024): write `power(x, y)`, or for XOR \
             `(x | y) - (x & y)`"
                .to_string()
        })
    })
}

/// A DATE plus or minus an interval with hours or smaller units
/// (`event_date + INTERVAL '12 hours'`): DataFusion 55 keeps a date and
/// drops them, so `event_timestamp < event_date + INTERVAL '12 hours'`
/// keeps no row, with no error. (PostgreSQL and DuckDB give a timestamp
/// there.) What is wrong, and the cast that gives the timestamp.
fn date_plus_hours(plan: &datafusion::logical_expr::LogicalPlan) -> Option<String> {
    use datafusion::logical_expr::{Expr, ExprSchemable, Operator};
    first_expr_problem(plan, |e, schema| {
        let Expr::BinaryExpr(b) = e else {
            return None;
        };
        let is = |e: &Expr, f: fn(&DataType) -> bool| e.get_type(schema).is_ok_and(|t| f(&t));
        let date = |t: &DataType| matches!(t, DataType::Date32 | DataType::Date64);
        let interval = |t: &DataType| matches!(t, DataType::Interval(_));
        let (day, span) = match b.op {
            Operator::Plus | Operator::Minus if is(&b.left, date) && is(&b.right, interval) => {
                (&b.left, &b.right)
            }
            Operator::Plus if is(&b.left, interval) && is(&b.right, date) => (&b.right, &b.left),
            _ => return None,
        };
        // (An interval of months and days alone moves a date to
        // a date, as everywhere, and so does one of whole days in
        // hours, `INTERVAL '24 hours'`.)
        const DAY: i64 = 86_400_000_000_000;
        if interval_parts(span).is_some_and(|(_, _, rest)| rest % DAY == 0)
            || interval_fields(span, schema).is_some_and(|[_, _, rest]| !rest)
        {
            return None;
        }
        let name = match day.as_ref() {
            Expr::Column(c) => c.name.clone(),
            _ => "d".to_string(),
        };
        Some(format!(
            "a DATE plus or minus an interval with hours or smaller units: DataFusion 55 \
                     keeps a date and drops them, so `DATE '2024-03-15' + INTERVAL '36 hours'` \
                     is 2024-03-16 and `DATE '2024-03-15' - INTERVAL '1 hour'` 2024-03-15, with \
                     no error (PostgreSQL and DuckDB give a timestamp); cast the date first: \
                     `CAST({name} AS TIMESTAMP) {} INTERVAL ...`",
            if b.op == Operator::Minus { "-" } else { "+" }
        ))
    })
}

/// A time difference (`processing_time - event_timestamp`, a duration)
/// compared with an interval that counts days or months (`> INTERVAL '1
/// day'`): DataFusion 55 turns the duration into an interval of
/// nanoseconds alone and compares intervals field by field, months, then
/// days, then nanoseconds, so a gap of years is "less" than one day, with
/// no error. (PostgreSQL and DuckDB count a day as 24 hours and a month as
/// 30 days there.) What is wrong, and the interval that means the same.
fn duration_against_days(plan: &datafusion::logical_expr::LogicalPlan) -> Option<String> {
    use datafusion::common::DFSchema;
    use datafusion::common::tree_node::TreeNode;
    use datafusion::logical_expr::{Expr, ExprSchemable};
    let timed = |e: &Expr, schema: &DFSchema| {
        matches!(
            e.get_type(schema),
            Ok(DataType::Duration(_) | DataType::Interval(_))
        )
    };
    first_expr_problem(plan, |e, schema| {
        for (one, other) in compared(e) {
            if !timed(one, schema) || !timed(other, schema) {
                continue;
            }
            // Compared field by field, values of one field alone
            // compare as numbers do.
            let mixed = match (interval_fields(one, schema), interval_fields(other, schema)) {
                (Some(a), Some(b)) => (0..3).filter(|&i| a[i] || b[i]).count() > 1,
                // A duration is compared with an interval it cannot
                // tell the fields of.
                (None, Some(b)) => {
                    b[0] || b[1] || matches!(other.get_type(schema), Ok(DataType::Duration(_)))
                }
                _ => false,
            };
            if !mixed {
                continue;
            }
            let instead = match [other, one]
                .into_iter()
                .find_map(|e| interval_parts(e).filter(|(m, d, _)| *m != 0 || *d != 0))
            {
                Some((months, days, nanos)) => {
                    const HOUR: i128 = 3_600_000_000_000;
                    let total = (i128::from(months) * 30 + i128::from(days)) * 24 * HOUR
                        + i128::from(nanos);
                    let (hours, rest) = (total / HOUR, total % HOUR);
                    let rest = match rest {
                        0 => String::new(),
                        n if n % 1_000_000_000 == 0 => {
                            format!(" {} seconds", n / 1_000_000_000)
                        }
                        n => format!(" {} microseconds", n / 1_000),
                    };
                    format!("`INTERVAL '{hours} hours{rest}'`")
                }
                None => "intervals in hours or smaller units (`INTERVAL '24 hours'` for a \
                             day)"
                    .to_string(),
            };
            // A time difference on either side, alone or in a sum.
            let duration = [one, other].iter().any(|e| {
                e.exists(|e| Ok(matches!(e.get_type(schema), Ok(DataType::Duration(_)))))
                    .unwrap_or(false)
            });
            return Some(if duration {
                format!(
                    "a time difference (a duration, such as `processing_time - \
                             event_timestamp`) compared with an interval that counts days or \
                             months: DataFusion 55 compares them field by field, months, then \
                             days, then the rest, and a duration has only the rest, so a gap \
                             of years is less than `INTERVAL '1 day'`, with no error; write \
                             {instead} (PostgreSQL and DuckDB count a day as 24 hours and a \
                             month as 30 days there), or compare the times: `event_timestamp < \
                             processing_time - INTERVAL '1 day'`"
                )
            } else {
                format!(
                    "intervals compared across units (months, days, hours or less): \
                             DataFusion 55 compares them field by field, months, then days, \
                             then the rest, so `INTERVAL '1 day' > INTERVAL '25 hours'` is \
                             true, with no error; write {instead} (PostgreSQL and DuckDB count \
                             a day as 24 hours and a month as 30 days there)"
                )
            });
        }
        None
    })
}

/// A time zone that is no zone (`AT TIME ZONE 'utc'`, `'PST'`): DataFusion
/// 55 plans the cast and fails only when a row's time is written out (exit
/// 1, a bare "Parser error"), or in a filter with a hint about casts.
/// What is wrong, and the name that is meant when there is one: zone
/// names are IANA's, written as they are, or an offset.
fn unknown_zone(plan: &datafusion::logical_expr::LogicalPlan) -> Option<String> {
    use datafusion::arrow::array::timezone::Tz;
    use datafusion::logical_expr::Expr;
    // The IANA name for what was likely meant.
    fn meant(tz: &str) -> Option<String> {
        let abbreviation = match tz.to_ascii_uppercase().as_str() {
            "Z" | "UTC" | "GMT" | "ZULU" => "UTC",
            "PST" | "PDT" | "PT" => "America/Los_Angeles",
            "MDT" | "MT" => "America/Denver",
            "CDT" | "CT" => "America/Chicago",
            "EDT" | "ET" => "America/New_York",
            "BST" => "Europe/London",
            "CEST" => "Europe/Berlin",
            "IST" => "Asia/Kolkata",
            "JST" => "Asia/Tokyo",
            "AEST" | "AEDT" => "Australia/Sydney",
            _ => "",
        };
        if !abbreviation.is_empty() {
            return Some(abbreviation.to_string());
        }
        // `GMT+2` and the like: POSIX's sign is the other way round.
        let upper = tz.to_ascii_uppercase();
        if let Some(rest) = upper
            .strip_prefix("GMT")
            .or_else(|| upper.strip_prefix("UTC"))
            && let Some(sign) = rest.chars().next().filter(|c| *c == '+' || *c == '-')
            && let Ok(h) = rest[1..].parse::<u8>()
            && h <= 14
        {
            return Some(format!("{sign}{h:02}:00"));
        }
        // The right name in other letter case: `europe/berlin`.
        let cased = tz
            .split('/')
            .map(|part| {
                part.split('_')
                    .map(|w| {
                        let mut c = w.chars();
                        c.next().map_or_else(String::new, |f| {
                            f.to_uppercase()
                                .chain(c.flat_map(char::to_lowercase))
                                .collect()
                        })
                    })
                    .collect::<Vec<_>>()
                    .join("_")
            })
            .collect::<Vec<_>>()
            .join("/");
        (cased != tz && cased.parse::<Tz>().is_ok()).then_some(cased)
    }
    first_expr_problem(plan, |e, _| {
        let tz: &str = match e {
            Expr::Cast(c) => match c.field.data_type() {
                DataType::Timestamp(_, Some(tz)) => tz,
                _ => return None,
            },
            Expr::TryCast(c) => match c.field.data_type() {
                DataType::Timestamp(_, Some(tz)) => tz,
                _ => return None,
            },
            // `AT TIME ZONE`, planned as evlake's `timezone(zone, time)`.
            Expr::ScalarFunction(f) if f.name() == "timezone" => match f.args.first() {
                Some(Expr::Literal(zone, _)) => zone.try_as_str().flatten()?,
                _ => return None,
            },
            _ => return None,
        };
        tz.parse::<Tz>().is_err().then(|| {
            let instead = meant(tz)
                .map(|m| format!("; for this one, '{m}'"))
                .unwrap_or_default();
            format!("{}{instead}", crate::udf::no_zone(tz))
        })
    })
}

/// SQL's `SIMILAR TO` pattern `p` as a regular expression of the whole
/// text, as PostgreSQL translates it: `%` is `.*`, `_` is `.`, `.`, `^`
/// and `$` are themselves, `escape` makes the next character literal,
/// and a bracket expression is kept as it is.
fn similar_to_regex(p: &str, escape: char) -> String {
    let mut out = String::from("^(?:");
    let mut chars = p.chars();
    let mut in_brackets = false;
    while let Some(c) = chars.next() {
        if in_brackets {
            out.push(c);
            in_brackets = c != ']';
            continue;
        }
        match c {
            c if c == escape => match chars.next() {
                Some(next) => out.push_str(&regex_literal(next)),
                None => out.push_str(&regex_literal(c)),
            },
            '%' => out.push_str(".*"),
            '_' => out.push('.'),
            '.' | '^' | '$' | '\\' => out.push_str(&regex_literal(c)),
            '[' => {
                out.push('[');
                in_brackets = true;
            }
            c => out.push(c),
        }
    }
    out.push_str(")$");
    out
}

/// Character `c` as a regular expression that matches it alone.
fn regex_literal(c: char) -> String {
    if c.is_ascii_punctuation() {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

/// The leftmost operand of an expression of operators.
fn leftmost(e: &datafusion::sql::sqlparser::ast::Expr) -> &datafusion::sql::sqlparser::ast::Expr {
    use datafusion::sql::sqlparser::ast::Expr;
    match e {
        Expr::BinaryOp { left, .. } => leftmost(left),
        Expr::IsNull(x)
        | Expr::IsNotNull(x)
        | Expr::IsTrue(x)
        | Expr::IsNotTrue(x)
        | Expr::IsFalse(x)
        | Expr::IsNotFalse(x)
        | Expr::IsUnknown(x)
        | Expr::IsNotUnknown(x)
        | Expr::IsDistinctFrom(x, _)
        | Expr::IsNotDistinctFrom(x, _)
        | Expr::Like { expr: x, .. }
        | Expr::ILike { expr: x, .. }
        | Expr::SimilarTo { expr: x, .. }
        | Expr::InList { expr: x, .. }
        | Expr::Between { expr: x, .. } => leftmost(x),
        e => e,
    }
}

/// SQL's reading of `IS [NOT] DISTINCT FROM` where DataFusion's parser
/// misreads it. sqlparser 0.62 parses its right side as a whole
/// expression, so `a IS DISTINCT FROM b OR c` was `a IS DISTINCT FROM (b
/// OR c)` (over booleans a wrong answer, with no error), and `ON a.k IS
/// NOT DISTINCT FROM b.k AND a.d = b.d` failed on a type. SQL (and
/// PostgreSQL and DuckDB) binds it as tightly as `IS NULL`: more than
/// NOT, AND and OR, and left to right among the IS tests. Each boolean
/// expression (of AND, OR, NOT and the IS tests) that holds such a
/// misreading is taken apart into its operands and operators, in the
/// order written, and put together again with SQL's precedence.
/// `visitor` run over `statement`, or over the statement an EXPLAIN
/// explains.
fn visit_sql<V: datafusion::sql::sqlparser::ast::VisitorMut>(
    statement: &mut datafusion::sql::parser::Statement,
    visitor: &mut V,
) -> std::ops::ControlFlow<V::Break> {
    use datafusion::sql::parser::Statement;
    use datafusion::sql::sqlparser::ast::VisitMut;
    match statement {
        Statement::Statement(s) => s.visit(visitor),
        Statement::Explain(e) => visit_sql(&mut e.statement, visitor),
        _ => std::ops::ControlFlow::Continue(()),
    }
}

mod distinct_from {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, UnaryOperator, VisitorMut};
    use std::ops::ControlFlow;

    /// One operand or operator of a boolean expression, in the order
    /// written.
    enum Token {
        Operand(Box<Expr>),
        Not,
        And,
        Or,
        /// `IS DISTINCT FROM` (false) or `IS NOT DISTINCT FROM` (true).
        Distinct(bool),
        /// `IS NULL`, `IS TRUE` and the like.
        Test(fn(Box<Expr>) -> Expr),
    }

    /// Is `e` an operator of the boolean layer (AND, OR, NOT, the IS
    /// tests)?
    fn boolean(e: &Expr) -> bool {
        matches!(
            e,
            Expr::BinaryOp {
                op: BinaryOperator::And | BinaryOperator::Or,
                ..
            } | Expr::UnaryOp {
                op: UnaryOperator::Not,
                ..
            } | Expr::IsNull(_)
                | Expr::IsNotNull(_)
                | Expr::IsTrue(_)
                | Expr::IsNotTrue(_)
                | Expr::IsFalse(_)
                | Expr::IsNotFalse(_)
                | Expr::IsUnknown(_)
                | Expr::IsNotUnknown(_)
                | Expr::IsDistinctFrom(..)
                | Expr::IsNotDistinctFrom(..)
        )
    }

    /// Does SQL bind `IS DISTINCT FROM` more tightly than `e`'s
    /// outermost operator (AND, OR, or another IS, read left to right)?
    fn looser_than_is(e: &Expr) -> bool {
        boolean(e)
            && !matches!(
                e,
                Expr::UnaryOp {
                    op: UnaryOperator::Not,
                    ..
                }
            )
    }

    /// The first misread `IS [NOT] DISTINCT FROM` in the boolean
    /// expression `e`.
    fn misread(e: &Expr) -> Option<&Expr> {
        match e {
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
                if looser_than_is(b) {
                    Some(e)
                } else {
                    misread(a).or_else(|| misread(b))
                }
            }
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And | BinaryOperator::Or,
                right,
            } => misread(left).or_else(|| misread(right)),
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr: x,
            }
            | Expr::IsNull(x)
            | Expr::IsNotNull(x)
            | Expr::IsTrue(x)
            | Expr::IsNotTrue(x)
            | Expr::IsFalse(x)
            | Expr::IsNotFalse(x)
            | Expr::IsUnknown(x)
            | Expr::IsNotUnknown(x) => misread(x),
            _ => None,
        }
    }

    /// `e`'s operands and operators in the order written.
    fn tokens(e: Expr, out: &mut Vec<Token>) {
        let test = |x: Box<Expr>, t: fn(Box<Expr>) -> Expr, out: &mut Vec<Token>| {
            tokens(*x, out);
            out.push(Token::Test(t));
        };
        match e {
            Expr::BinaryOp { left, op, right }
                if matches!(op, BinaryOperator::And | BinaryOperator::Or) =>
            {
                tokens(*left, out);
                out.push(if op == BinaryOperator::And {
                    Token::And
                } else {
                    Token::Or
                });
                tokens(*right, out);
            }
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr,
            } => {
                out.push(Token::Not);
                tokens(*expr, out);
            }
            Expr::IsDistinctFrom(a, b) => {
                tokens(*a, out);
                out.push(Token::Distinct(false));
                tokens(*b, out);
            }
            Expr::IsNotDistinctFrom(a, b) => {
                tokens(*a, out);
                out.push(Token::Distinct(true));
                tokens(*b, out);
            }
            Expr::IsNull(x) => test(x, Expr::IsNull, out),
            Expr::IsNotNull(x) => test(x, Expr::IsNotNull, out),
            Expr::IsTrue(x) => test(x, Expr::IsTrue, out),
            Expr::IsNotTrue(x) => test(x, Expr::IsNotTrue, out),
            Expr::IsFalse(x) => test(x, Expr::IsFalse, out),
            Expr::IsNotFalse(x) => test(x, Expr::IsNotFalse, out),
            Expr::IsUnknown(x) => test(x, Expr::IsUnknown, out),
            Expr::IsNotUnknown(x) => test(x, Expr::IsNotUnknown, out),
            e => out.push(Token::Operand(Box::new(e))),
        }
    }

    /// The expression `tokens` write, from its next operand on, with
    /// operators that bind more tightly than `min` (SQL's precedence, as
    /// sqlparser numbers it: OR 5, AND 10, NOT 15, the IS tests 17).
    /// `None` for tokens that are not an expression.
    fn expression(
        tokens: &mut std::iter::Peekable<std::vec::IntoIter<Token>>,
        min: u8,
    ) -> Option<Expr> {
        let mut left = match tokens.next()? {
            Token::Operand(e) => *e,
            Token::Not => Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr: Box::new(expression(tokens, 15)?),
            },
            _ => return None,
        };
        loop {
            let binds = match tokens.peek() {
                Some(Token::Or) => 5,
                Some(Token::And) => 10,
                Some(Token::Distinct(_) | Token::Test(_)) => 17,
                _ => return Some(left),
            };
            if binds <= min {
                return Some(left);
            }
            left = match tokens.next()? {
                Token::Or | Token::And => {
                    let op = if binds == 5 {
                        BinaryOperator::Or
                    } else {
                        BinaryOperator::And
                    };
                    Expr::BinaryOp {
                        left: Box::new(left),
                        op,
                        right: Box::new(expression(tokens, binds)?),
                    }
                }
                Token::Distinct(not) => {
                    let right = Box::new(expression(tokens, binds)?);
                    if not {
                        Expr::IsNotDistinctFrom(Box::new(left), right)
                    } else {
                        Expr::IsDistinctFrom(Box::new(left), right)
                    }
                }
                Token::Test(test) => test(Box::new(left)),
                _ => return None,
            };
        }
    }

    /// `e`, a boolean expression, as SQL reads its operands and operators.
    fn as_sql_reads(e: &Expr) -> Option<Expr> {
        let mut written = Vec::new();
        tokens(e.clone(), &mut written);
        let mut written = written.into_iter().peekable();
        let e = expression(&mut written, 0)?;
        written.next().is_none().then_some(e)
    }

    /// Reads each misread `IS [NOT] DISTINCT FROM` as SQL does; breaks
    /// with what to write where the misreading took in more than its
    /// boolean expression (`x = NOT a IS DISTINCT FROM b AND c`).
    struct Reread;

    impl VisitorMut for Reread {
        type Break = String;
        fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<String> {
            let operand = match &*e {
                Expr::BinaryOp { op, right, .. }
                    if !matches!(op, BinaryOperator::And | BinaryOperator::Or) =>
                {
                    Some(&**right)
                }
                Expr::UnaryOp { op, expr } if *op != UnaryOperator::Not => Some(&**expr),
                _ => None,
            };
            if let Some(operand) = operand
                && boolean(operand)
                && let Some(Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b)) =
                    misread(operand)
            {
                let is = if matches!(misread(operand), Some(Expr::IsDistinctFrom(..))) {
                    "IS DISTINCT FROM"
                } else {
                    "IS NOT DISTINCT FROM"
                };
                return ControlFlow::Break(format!(
                    "`{e}` does not read as written: DataFusion's SQL parser takes all that \
                     follows `{is}` as its right side, `{a} {is} ({b})`; put the comparison \
                     in parentheses: `({a} {is} {})`",
                    super::leftmost(b)
                ));
            }
            if boolean(e)
                && misread(e).is_some()
                && let Some(read) = as_sql_reads(e)
            {
                *e = read;
            }
            ControlFlow::Continue(())
        }
    }

    /// `statement` with each misread `IS [NOT] DISTINCT FROM` read as SQL
    /// reads it; a planning error where that cannot be done.
    pub fn reread(
        statement: &mut datafusion::sql::parser::Statement,
    ) -> datafusion::error::Result<()> {
        match super::visit_sql(statement, &mut Reread) {
            ControlFlow::Break(problem) => Err(datafusion::error::DataFusionError::Plan(problem)),
            ControlFlow::Continue(()) => Ok(()),
        }
    }
}

/// An identifier as DataFusion names it: lowercase unless quoted.
fn normal(i: &datafusion::sql::sqlparser::ast::Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    }
}

/// The merged column of a `RIGHT JOIN` or `FULL JOIN` with `USING (k)`
/// or `NATURAL`: SQL's (PostgreSQL's, DuckDB's, Spark's) `k` is
/// `COALESCE(left.k, right.k)`, where DataFusion 55 takes one side's `k`
/// (the left's, mostly), NULL on each row only the other side has
/// (apache/datafusion#22881), so `SELECT k, count(*) ... GROUP BY k`
/// put those rows under NULL with no error. Each side's `k` is that
/// COALESCE above such a join where the query names `k` without its table
/// (or by `*`); where it names a side's own `k` (`a.k`, `a.*`) as well,
/// it is refused.
mod using_keys {
    use datafusion::common::tree_node::Transformed;
    use datafusion::common::{Column, plan_err};
    use datafusion::logical_expr::{Cast, Expr, JoinConstraint, JoinType, LogicalPlan, Projection};
    use datafusion::sql::sqlparser::ast::{self, SelectItem, Visit, Visitor};
    use std::collections::HashSet;
    use std::ops::ControlFlow;
    use std::sync::Arc;

    /// The columns a statement names: alone, with a table, or by `*`.
    #[derive(Default)]
    pub struct Written {
        alone: HashSet<String>,
        with_table: HashSet<(String, String)>,
        star: bool,
        table_stars: HashSet<String>,
    }

    use super::normal;

    impl Visitor for Written {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &ast::Expr) -> ControlFlow<()> {
            match e {
                ast::Expr::Identifier(i) => {
                    self.alone.insert(normal(i));
                }
                ast::Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                    let n = parts.len();
                    self.with_table
                        .insert((normal(&parts[n - 2]), normal(&parts[n - 1])));
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_select(&mut self, select: &ast::Select) -> ControlFlow<()> {
            for item in &select.projection {
                match item {
                    SelectItem::Wildcard(_) => self.star = true,
                    SelectItem::QualifiedWildcard(kind, _) => {
                        if let Some(table) = kind.to_string().rsplit('.').next() {
                            let table = table.trim_matches('"');
                            self.table_stars.insert(table.to_lowercase());
                        }
                    }
                    _ => {}
                }
            }
            ControlFlow::Continue(())
        }
    }

    pub fn written(statement: &datafusion::sql::parser::Statement) -> Written {
        let mut written = Written::default();
        if let datafusion::sql::parser::Statement::Statement(s) = statement {
            let _ = s.visit(&mut written);
        }
        written
    }

    /// `plan` with the merged key of each `RIGHT`/`FULL` `USING` join
    /// that the query names alone taken from both sides.
    pub fn merged(plan: LogicalPlan, written: &Written) -> datafusion::error::Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let LogicalPlan::Join(join) = &node else {
                return Ok(Transformed::no(node));
            };
            if join.join_constraint != JoinConstraint::Using
                || !matches!(join.join_type, JoinType::Right | JoinType::Full)
            {
                return Ok(Transformed::no(node));
            }
            // Each side's key with the other's: DataFusion 55 takes either
            // side's for the key named alone (the right's, for some NATURAL
            // joins), so both are the merged key above the join.
            let mut keys = vec![];
            for (left, right) in &join.on {
                let (Expr::Column(left), Expr::Column(right)) = (left, right) else {
                    continue;
                };
                let k = &left.name;
                if !(written.star || written.alone.contains(k)) {
                    continue;
                }
                let named = [left, right].into_iter().find_map(|side| {
                    let t = side.relation.as_ref()?.table().to_string();
                    (written.table_stars.contains(&t)
                        || written.with_table.contains(&(t.clone(), side.name.clone())))
                    .then_some(t)
                });
                if let Some(t) = named {
                    fn table(c: &Column) -> &str {
                        c.relation.as_ref().map_or("?", |r| r.table())
                    }
                    let (l, r) = (table(left), table(right));
                    let kind = match join.join_type {
                        JoinType::Full => "FULL",
                        _ => "RIGHT",
                    };
                    return plan_err!(
                        "`{k}` of a {kind} JOIN with `USING ({k})` or NATURAL, named both alone \
                         (or by `*`) and as `{t}.{k}` (or `{t}.*`): SQL's `{k}` is \
                         `COALESCE({l}.{k}, {r}.{k})` and `{t}.{k}` that side's own, NULL \
                         where only the other side has the row; DataFusion 55 gives one side's \
                         for both, so write the join with ON and name each: `{l} {kind} JOIN \
                         {r} ON {l}.{k} = {r}.{k}` and `COALESCE({l}.{k}, {r}.{k}) AS {k}`"
                    );
                }
                keys.push((left.clone(), right.clone()));
                keys.push((right.clone(), left.clone()));
            }
            if keys.is_empty() {
                return Ok(Transformed::no(node));
            }
            let schema = Arc::clone(node.schema());
            let mut exprs = vec![];
            for (qualifier, field) in schema.iter() {
                let column = Column::new(qualifier.cloned(), field.name());
                let Some((own, other)) = keys.iter().find(|(own, _)| *own == column) else {
                    exprs.push(Expr::Column(column));
                    continue;
                };
                let other_type = schema.qualified_field_from_column(other)?.1.data_type();
                let mut other = Expr::Column(other.clone());
                if other_type != field.data_type() {
                    other = Expr::Cast(Cast::new(Box::new(other), field.data_type().clone()));
                }
                exprs.push(
                    datafusion::functions::core::expr_fn::coalesce(vec![
                        Expr::Column(own.clone()),
                        other,
                    ])
                    .alias_qualified(qualifier.cloned(), field.name()),
                );
            }
            let projection = Projection::try_new_with_schema(exprs, Arc::new(node), schema)?;
            Ok(Transformed::yes(LogicalPlan::Projection(projection)))
        })
        .map(|t| t.data)
    }
}

/// A scalar subquery that takes the top row of the rows of the outer
/// row, `(SELECT e.page_url FROM events e WHERE e.user_id = s.user_id
/// ORDER BY e.event_timestamp DESC LIMIT 1)`: DataFusion 55 plans it and
/// cannot run it ("Physical plan does not support logical expression
/// ScalarSubquery"). It is the same value as the aggregate
/// `first_value(e.page_url ORDER BY e.event_timestamp DESC)` over those
/// rows (NULL when there are none, either of tied rows), which
/// DataFusion runs as a join; so such a subquery (one column that is no
/// aggregate, one table or join, WHERE, ORDER BY and LIMIT 1, naming a
/// table of the outer query) is asked that way, under the name its
/// column had.
mod top_one {
    use datafusion::sql::sqlparser::ast::{
        Expr, GroupByExpr, Ident, LimitClause, ObjectNamePart, OrderByKind, Query, SelectItem,
        SetExpr, TableFactor, Value, Visit, VisitMut, Visitor, VisitorMut,
    };
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    use std::collections::HashSet;
    use std::ops::ControlFlow;

    struct TopOne<'a> {
        aggregate: &'a dyn Fn(&str) -> bool,
    }

    /// The names its FROM gives the tables of a query's SELECT.
    fn tables(from: &[datafusion::sql::sqlparser::ast::TableWithJoins]) -> HashSet<String> {
        let mut names = HashSet::new();
        let mut add = |t: &TableFactor| match t {
            TableFactor::Table { name, alias, .. } => {
                let own = match alias {
                    Some(a) => Some(a.name.value.to_lowercase()),
                    None => name
                        .0
                        .last()
                        .and_then(ObjectNamePart::as_ident)
                        .map(|i| i.value.to_lowercase()),
                };
                names.extend(own);
            }
            TableFactor::Derived { alias: Some(a), .. } => {
                names.insert(a.name.value.to_lowercase());
            }
            _ => {}
        };
        for t in from {
            add(&t.relation);
            for j in &t.joins {
                add(&j.relation);
            }
        }
        names
    }

    /// Does `e` hold a function call that is an aggregate or a window,
    /// or a subquery?
    fn aggregates(e: &Expr, aggregate: &dyn Fn(&str) -> bool) -> bool {
        struct Find<'a>(&'a dyn Fn(&str) -> bool);
        impl Visitor for Find<'_> {
            type Break = ();
            fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
                match e {
                    Expr::Function(f)
                        if f.over.is_some() || (self.0)(&f.name.to_string().to_lowercase()) =>
                    {
                        ControlFlow::Break(())
                    }
                    Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                        ControlFlow::Break(())
                    }
                    _ => ControlFlow::Continue(()),
                }
            }
        }
        e.visit(&mut Find(aggregate)).is_break()
    }

    /// Does `e` name a column of a table other than `own`?
    fn outer(e: &Expr, own: &HashSet<String>) -> bool {
        struct Find<'a>(&'a HashSet<String>);
        impl Visitor for Find<'_> {
            type Break = ();
            fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
                if let Expr::CompoundIdentifier(parts) = e
                    && parts.len() >= 2
                    && !self
                        .0
                        .contains(&parts[parts.len() - 2].value.to_lowercase())
                {
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            }
        }
        e.visit(&mut Find(own)).is_break()
    }

    use super::normal;

    /// `query` as its first_value aggregate, if it is such a subquery,
    /// and the name its column had.
    fn rewritten(query: &mut Query, aggregate: &dyn Fn(&str) -> bool) -> Option<String> {
        let one = matches!(
            &query.limit_clause,
            Some(LimitClause::LimitOffset {
                limit: Some(Expr::Value(v)),
                offset: None,
                limit_by,
            }) if matches!(&v.value, Value::Number(n, _) if n == "1") && limit_by.is_empty()
        );
        let plain = one
            && query.with.is_none()
            && query.fetch.is_none()
            && query.locks.is_empty()
            && query.for_clause.is_none()
            && query.settings.is_none()
            && query.format_clause.is_none()
            && query.pipe_operators.is_empty();
        if !plain {
            return None;
        }
        let order: Vec<_> = match &query.order_by {
            None => vec![],
            Some(o) if o.interpolate.is_none() => match &o.kind {
                OrderByKind::Expressions(items) => items.clone(),
                OrderByKind::All(_) => return None,
            },
            Some(_) => return None,
        };
        let SetExpr::Select(select) = &mut *query.body else {
            return None;
        };
        let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(g, m) if g.is_empty() && m.is_empty());
        if grouped
            || select.distinct.is_some()
            || select.top.is_some()
            || select.into.is_some()
            || select.exclude.is_some()
            || select.select_modifiers.is_some()
            || !select.lateral_views.is_empty()
            || select.prewhere.is_some()
            || !select.connect_by.is_empty()
            || !select.cluster_by.is_empty()
            || !select.distribute_by.is_empty()
            || !select.sort_by.is_empty()
            || select.having.is_some()
            || !select.named_window.is_empty()
            || select.qualify.is_some()
            || select.from.is_empty()
            || select.projection.len() != 1
        {
            return None;
        }
        let (e, name) = match &select.projection[0] {
            SelectItem::UnnamedExpr(e) => {
                let name = match e {
                    Expr::Identifier(i) => normal(i),
                    Expr::CompoundIdentifier(parts) => normal(parts.last()?),
                    e => e.to_string(),
                };
                (e, name)
            }
            SelectItem::ExprWithAlias { expr, alias } => (expr, normal(alias)),
            _ => return None,
        };
        // An ORDER BY by position (1) or by the column's name is the
        // column's expression.
        if order.iter().any(|o| o.with_fill.is_some()) {
            return None;
        }
        let mut order = order;
        for o in &mut order {
            let column = match &o.expr {
                Expr::Value(v) => matches!(&v.value, Value::Number(n, _) if n == "1"),
                Expr::Identifier(i) => {
                    normal(i) == name
                        && matches!(&select.projection[0], SelectItem::ExprWithAlias { .. })
                }
                _ => false,
            };
            if column {
                o.expr = e.clone();
            } else if matches!(&o.expr, Expr::Value(_)) {
                return None;
            }
        }
        let own = tables(&select.from);
        let correlated = outer(e, &own)
            || select.selection.as_ref().is_some_and(|w| outer(w, &own))
            || order.iter().any(|o| outer(&o.expr, &own));
        if !correlated
            || aggregates(e, aggregate)
            || order.iter().any(|o| aggregates(&o.expr, aggregate))
        {
            return None;
        }
        let order = order
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let text = match order.is_empty() {
            true => format!("first_value({e})"),
            false => format!("first_value({e} ORDER BY {order})"),
        };
        let first = Parser::new(&GenericDialect {})
            .try_with_sql(&text)
            .and_then(|mut p| p.parse_expr())
            .ok()?;
        // Unnamed: DataFusion 55 fails to join a subquery whose column is
        // named as a column it is correlated by ("Schema contains
        // qualified field name p.user_id and unqualified field name
        // user_id"); the SELECT item holding it takes the name instead.
        select.projection = vec![SelectItem::UnnamedExpr(first)];
        query.order_by = None;
        query.limit_clause = None;
        Some(name)
    }

    impl VisitorMut for TopOne<'_> {
        type Break = ();
        /// A SELECT item that is such a subquery keeps its name, unless
        /// another item may have it (DataFusion 55 refuses one name
        /// twice): then it is DataFusion's name of the aggregate.
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            if let SetExpr::Select(select) = &mut *query.body {
                let names: Vec<Option<String>> = select
                    .projection
                    .iter()
                    .map(|item| match item {
                        SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(normal(i)),
                        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                            parts.last().map(normal)
                        }
                        SelectItem::ExprWithAlias { alias, .. } => Some(normal(alias)),
                        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                            Some("*".to_string())
                        }
                        _ => None,
                    })
                    .collect();
                for (n, item) in select.projection.iter_mut().enumerate() {
                    if let SelectItem::UnnamedExpr(Expr::Subquery(q)) = item
                        && let Some(name) = rewritten(q, self.aggregate)
                        && !names.iter().enumerate().any(|(m, other)| {
                            m != n
                                && other
                                    .as_deref()
                                    .is_some_and(|other| other == name || other == "*")
                        })
                    {
                        *item = SelectItem::ExprWithAlias {
                            expr: Expr::Subquery(q.clone()),
                            alias: Ident::with_quote('"', name),
                        };
                    }
                }
            }
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            if let Expr::Subquery(query) = e {
                rewritten(query, self.aggregate);
            }
            ControlFlow::Continue(())
        }
    }

    /// `statement` with each such subquery asked as its aggregate;
    /// `aggregate` says whether a function name is an aggregate's.
    pub fn as_first_value(
        statement: &mut datafusion::sql::parser::Statement,
        aggregate: &dyn Fn(&str) -> bool,
    ) {
        if let datafusion::sql::parser::Statement::Statement(s) = statement {
            let _ = s.visit(&mut TopOne { aggregate });
        }
    }
}

/// Each SELECT list's CAST that DataFusion 55 would name as its operand
/// beside the operand itself, another CAST of it or a `*` (`SELECT *,
/// CAST(event_date AS VARCHAR)`), which fails as one name twice
/// ("Projections require unique expression names"), named as written,
/// as DuckDB names it: `CAST(event_date AS VARCHAR)`; so is an item with
/// a CAST inside it whose DataFusion name another item has too (`abs(x),
/// abs(CAST(x AS DOUBLE))`). Other casts keep DataFusion's names.
/// `x AT TIME ZONE zone` written as `timezone(zone, x)`, evlake's
/// function ([`crate::udf::timezone`]), which computes it as PostgreSQL and
/// DuckDB do. It is rewritten before planning, so the plan is typed as
/// theirs is: DataFusion 55 typed an instant's `AT TIME ZONE` as an instant
/// with the zone, so `event_timestamp - (t AT TIME ZONE 'Europe/Berlin')`
/// failed to plan, and two such items in one SELECT had one name.
mod at_time_zone {
    use datafusion::sql::sqlparser::ast::{
        Expr, FunctionArg, FunctionArgExpr, FunctionArguments, VisitorMut,
    };
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    use std::ops::ControlFlow;

    struct Calls;

    impl VisitorMut for Calls {
        type Break = ();

        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            let Expr::AtTimeZone {
                timestamp,
                time_zone,
            } = e
            else {
                return ControlFlow::Continue(());
            };
            let call = Parser::new(&GenericDialect)
                .try_with_sql("timezone(NULL, NULL)")
                .and_then(|mut p| p.parse_expr());
            if let Ok(Expr::Function(mut f)) = call
                && let FunctionArguments::List(list) = &mut f.args
            {
                list.args = [&**time_zone, &**timestamp]
                    .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a.clone())))
                    .to_vec();
                *e = Expr::Function(f);
            }
            ControlFlow::Continue(())
        }
    }

    /// `statement` with each `AT TIME ZONE` written as a call.
    pub fn as_calls(statement: &mut datafusion::sql::parser::Statement) {
        let _ = super::visit_sql(statement, &mut Calls);
    }
}

mod named_casts {
    use datafusion::sql::sqlparser::ast::{
        Expr, Ident, Query, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, TableFactor,
        VisitorMut,
    };
    use std::ops::ControlFlow;

    /// `e` without the casts around it, and whether there were any.
    fn uncast(e: &Expr) -> (&Expr, bool) {
        match e {
            Expr::Cast { expr, .. } => (uncast(expr).0, true),
            Expr::Nested(inner) => uncast(inner),
            e => (e, false),
        }
    }

    /// Whether `e` holds a CAST anywhere (`abs(CAST(x AS DOUBLE))`).
    fn casts(e: &Expr) -> bool {
        datafusion::sql::sqlparser::ast::visit_expressions(e, |e| match e {
            Expr::Cast { .. } => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
        .is_break()
    }

    /// The name DataFusion gives a SELECT item, as far as a clash goes:
    /// a column by its own name, anything else by its text without its
    /// casts and parentheses, which DataFusion's names leave out
    /// (`abs(CAST(x AS DOUBLE))` is named as `abs(x)` is).
    fn key(e: &Expr) -> String {
        match e {
            Expr::Identifier(i) => i.value.to_lowercase(),
            Expr::CompoundIdentifier(parts) => parts
                .last()
                .map_or_else(String::new, |i| i.value.to_lowercase()),
            e => {
                let mut e = e.clone();
                let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(&mut e, |e| {
                    // Children first: a CAST's operand is already bare.
                    match e {
                        Expr::Cast { expr, .. } | Expr::Nested(expr) => *e = (**expr).clone(),
                        _ => {}
                    }
                    ControlFlow::<()>::Continue(())
                });
                e.to_string().to_lowercase()
            }
        }
    }

    /// Each SELECT item's [`key`], or its alias; `None` for a `*`.
    fn keys(items: &[SelectItem]) -> Vec<Option<String>> {
        items
            .iter()
            .map(|item| match item {
                SelectItem::UnnamedExpr(e) => Some(key(uncast(e).0)),
                SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.to_lowercase()),
                _ => None,
            })
            .collect()
    }

    fn name(items: &mut [SelectItem]) {
        // `*` holds every column of the FROM; `t.*` those of `t`.
        let star = items
            .iter()
            .any(|item| matches!(item, SelectItem::Wildcard(_)));
        let tables: Vec<String> = items
            .iter()
            .filter_map(|item| match item {
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(n),
                    _,
                ) => Some(n.to_string().to_lowercase()),
                _ => None,
            })
            .collect();
        let in_star = |operand: &Expr| match operand {
            Expr::Identifier(_) => star,
            Expr::CompoundIdentifier(parts) => {
                star || (parts.len() >= 2
                    && tables.contains(
                        &parts[..parts.len() - 1]
                            .iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join(".")
                            .to_lowercase(),
                    ))
            }
            _ => false,
        };
        let keys = keys(items);
        for (i, item) in items.iter_mut().enumerate() {
            let SelectItem::UnnamedExpr(e) = item else {
                continue;
            };
            let (operand, _) = uncast(e);
            if !casts(e) {
                continue;
            }
            let clash = keys
                .iter()
                .enumerate()
                .any(|(j, k)| j != i && k.is_some() && *k == keys[i]);
            if clash || in_star(operand) {
                let mut bare = &*e;
                while let Expr::Nested(inner) = bare {
                    bare = inner;
                }
                let written = bare.to_string();
                *item = SelectItem::ExprWithAlias {
                    expr: e.clone(),
                    alias: Ident::with_quote('"', written),
                };
            }
        }
    }

    fn selects(body: &mut SetExpr) {
        match body {
            SetExpr::Select(select) => name(&mut select.projection),
            SetExpr::SetOperation { left, right, .. } => {
                selects(left);
                selects(right);
            }
            _ => {}
        }
    }

    /// The SELECT items of `body`, a CTE's or a FROM subquery's whose
    /// columns a list names (`WITH c(a, b) AS (SELECT 1, 1)`, `(SELECT
    /// user_id, user_id FROM events) AS q(a, b)`), that DataFusion would
    /// name as another item, each named by its place instead: the list
    /// names them anyway, and DataFusion 55 refused one name twice
    /// before it came to the list (a recursive CTE's `SELECT 1, 1` too).
    /// The place, not the list's name, which the body's ORDER BY or
    /// HAVING would read as the item where SQL reads a column of the FROM.
    fn listed(body: &mut SetExpr, listed: usize) {
        match body {
            SetExpr::Select(select) => {
                let items = &mut select.projection;
                let keys = keys(items);
                // After a `*`, the places are the FROM's to know.
                let placed = keys.iter().take_while(|k| k.is_some()).count();
                for (i, item) in items.iter_mut().enumerate().take(placed.min(listed)) {
                    let SelectItem::UnnamedExpr(e) = item else {
                        continue;
                    };
                    if keys
                        .iter()
                        .enumerate()
                        .any(|(j, k)| j != i && *k == keys[i])
                    {
                        *item = SelectItem::ExprWithAlias {
                            expr: e.clone(),
                            alias: Ident::with_quote('"', format!("__listed_column_{}", i + 1)),
                        };
                    }
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                self::listed(left, listed);
                self::listed(right, listed);
            }
            SetExpr::Query(q) => self::listed(&mut q.body, listed),
            _ => {}
        }
    }

    struct Name;

    impl VisitorMut for Name {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            for cte in query.with.iter_mut().flat_map(|w| w.cte_tables.iter_mut()) {
                listed(&mut cte.query.body, cte.alias.columns.len());
            }
            selects(&mut query.body);
            ControlFlow::Continue(())
        }

        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Derived {
                subquery,
                alias: Some(alias),
                ..
            } = factor
            {
                listed(&mut subquery.body, alias.columns.len());
            }
            ControlFlow::Continue(())
        }
    }

    /// `statement` with such casts named as written.
    pub fn name_casts(statement: &mut datafusion::sql::parser::Statement) {
        let _ = super::visit_sql(statement, &mut Name);
    }
}

/// `sql`, SQL a user wrote (a query, a model, a table of the lake's own),
/// planned in `ctx` under `options` as `SessionContext::sql_with_options`
/// plans it, with each misread `IS [NOT] DISTINCT FROM` read as SQL reads
/// it ([`distinct_from`]) and each CAST whose name would clash named as
/// written ([`named_casts`]), its clauses checked ([`passed_over`]) and
/// its plan too ([`checked`]).
pub async fn planned(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
    options: datafusion::execution::context::SQLOptions,
) -> datafusion::error::Result<DataFrame> {
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let mut statement = state.sql_to_statement(sql, &dialect)?;
    passed_over(&statement)?;
    distinct_from::reread(&mut statement)?;
    named_casts::name_casts(&mut statement);
    at_time_zone::as_calls(&mut statement);
    let aggregates = state.aggregate_functions();
    top_one::as_first_value(&mut statement, &|name| aggregates.contains_key(name));
    let written = using_keys::written(&statement);
    let plan = state.statement_to_plan(statement).await?;
    options.verify_plan(&plan)?;
    let plan = using_keys::merged(plan, &written)?;
    checked(ctx.execute_logical_plan(plan).await?)
}
/// [`planned`]'s check of the clauses that DataFusion passes over.
fn passed_over(statement: &datafusion::sql::parser::Statement) -> datafusion::error::Result<()> {
    use datafusion::sql::parser::Statement;
    use datafusion::sql::sqlparser::ast::{
        BinaryOperator, Expr, GroupByExpr, Query, Select, SelectItem, SetExpr, SetOperator,
        SetQuantifier, TableFactor, Visit, Visitor,
    };
    use std::ops::ControlFlow;
    struct Find;
    /// A JSON member operator (`->>`, `->`) whose right side is more than
    /// a key: DataFusion's SQL parser binds `->>` less tightly than `=`,
    /// `||`, `LIKE` or `IS NULL`, so `properties->>'currency' = 'USD'` is
    /// `properties ->> ('currency' = 'USD')` (an error about a Boolean
    /// key), and `properties->>'currency' || '!'` the member `currency!`,
    /// NULL with no error. PostgreSQL and DuckDB read the member first.
    struct Misread;
    impl Visitor for Misread {
        type Break = String;
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<String> {
            let Expr::BinaryOp { left, op, right } = e else {
                return ControlFlow::Continue(());
            };
            // `'a' || 1 + 2`: DataFusion's SQL binds `||` as tightly as
            // `*`, so it is `('a' || 1) + 2`, and `1 + 2 || 'a'` is `1 + (2
            // || 'a')`: text in arithmetic, an error about coercing `Utf8 +
            // Int64`, where PostgreSQL and DuckDB do the arithmetic first
            // (`a3`, `3a`).
            let arithmetic = |op: &BinaryOperator| {
                matches!(
                    op,
                    BinaryOperator::Plus
                        | BinaryOperator::Minus
                        | BinaryOperator::Multiply
                        | BinaryOperator::Divide
                        | BinaryOperator::Modulo
                )
            };
            let concat = |e: &Expr| {
                matches!(
                    e,
                    Expr::BinaryOp {
                        op: BinaryOperator::StringConcat,
                        ..
                    }
                )
            };
            let instead = match (&**left, &**right) {
                (
                    Expr::BinaryOp {
                        left: text,
                        right: middle,
                        ..
                    },
                    _,
                ) if concat(left) && arithmetic(op) => {
                    Some(format!("{text} || ({middle} {op} {right})"))
                }
                (
                    _,
                    Expr::BinaryOp {
                        left: middle,
                        right: text,
                        ..
                    },
                ) if concat(right)
                    && matches!(op, BinaryOperator::Plus | BinaryOperator::Minus) =>
                {
                    Some(format!("({left} {op} {middle}) || {text}"))
                }
                _ => None,
            };
            if let Some(instead) = instead {
                let read = match concat(left) {
                    true => format!("({left}) {op} {right}"),
                    false => format!("{left} {op} ({right})"),
                };
                return ControlFlow::Break(format!(
                    "`{e}` reads as `{read}`: in DataFusion's SQL `||` binds as tightly as `*` and \
                     more tightly than `+` and `-`, where PostgreSQL and DuckDB do the \
                     arithmetic first; put it in parentheses: `{instead}`"
                ));
            }
            if !matches!(
                op,
                BinaryOperator::Arrow
                    | BinaryOperator::LongArrow
                    | BinaryOperator::HashArrow
                    | BinaryOperator::HashLongArrow
            ) {
                return ControlFlow::Continue(());
            }
            let key = match &**right {
                Expr::Value(_)
                | Expr::Identifier(_)
                | Expr::CompoundIdentifier(_)
                | Expr::Nested(_)
                | Expr::Function(_)
                | Expr::Cast { .. }
                | Expr::UnaryOp { .. } => return ControlFlow::Continue(()),
                // The key is the leftmost operand of what follows it.
                other => leftmost(other).to_string(),
            };
            ControlFlow::Break(format!(
                "`{e}` reads as `{left} {op} ({right})`: in DataFusion's SQL `{op}` binds less \
                 tightly than what follows it (`=`, `||`, `LIKE`, `IS NULL`), where PostgreSQL \
                 and DuckDB read the member first; put the member in parentheses: `({left}{op}{key}) \
                 ...`"
            ))
        }
    }
    /// `INTERSECT ALL` or `EXCEPT ALL` in `body`, outside its subqueries.
    fn multiset(body: &SetExpr) -> Option<&'static str> {
        let SetExpr::SetOperation {
            left,
            op,
            set_quantifier,
            right,
        } = body
        else {
            return None;
        };
        let all = matches!(
            set_quantifier,
            SetQuantifier::All | SetQuantifier::AllByName
        );
        match op {
            SetOperator::Intersect if all => Some("INTERSECT"),
            SetOperator::Except if all => Some("EXCEPT"),
            _ => multiset(left).or_else(|| multiset(right)),
        }
    }
    /// `FETCH FIRST n ROWS WITH TIES` or `FETCH FIRST n PERCENT ROWS`
    /// (or SQL Server's `TOP n WITH TIES`, `TOP n PERCENT`), which
    /// DataFusion 55 does not take and `LIMIT n` does not answer.
    fn ties_or_percent(with_ties: bool, percent: bool) -> ControlFlow<String> {
        match (with_ties, percent) {
            (true, _) => ControlFlow::Break(
                "`WITH TIES` (in `FETCH FIRST n ROWS WITH TIES` or `TOP n WITH TIES`): \
                 `LIMIT n` would cut the ties; the top rows with their ties are `QUALIFY \
                 rank() OVER (ORDER BY x DESC) <= n`"
                    .to_string(),
            ),
            (false, true) => ControlFlow::Break(
                "a `PERCENT` of the rows (in `FETCH FIRST n PERCENT ROWS` or `TOP n \
                 PERCENT`): the first 10% are `QUALIFY row_number() OVER (ORDER BY x) <= \
                 ceil(count(*) OVER () * 0.10)`"
                    .to_string(),
            ),
            (false, false) => ControlFlow::Continue(()),
        }
    }
    impl Visitor for Find {
        type Break = String;
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
            if let Some(fetch) = &query.fetch {
                ties_or_percent(fetch.with_ties, fetch.percent)?;
            }
            // ClickHouse's LIMIT BY: DataFusion 55 said "No field named
            // user_id" of a column the query selects.
            if let Some(datafusion::sql::sqlparser::ast::LimitClause::LimitOffset {
                limit_by, ..
            }) = &query.limit_clause
                && let Some(first) = limit_by.first()
            {
                return ControlFlow::Break(format!(
                    "`LIMIT n BY {first}` (ClickHouse's): the first n rows of each `{first}` are \
                     `QUALIFY row_number() OVER (PARTITION BY {first} ORDER BY x) <= n`"
                ));
            }
            match multiset(&query.body) {
                Some(op) => ControlFlow::Break(format!(
                    "`{op} ALL`, which DataFusion 55 answers as {}, with no error; for SQL's \
                     answer, number the repeats on each side and use `{op}` over the pairs: \
                     `SELECT a FROM (SELECT a, row_number() OVER (PARTITION BY a) AS n FROM x \
                     {op} SELECT a, row_number() OVER (PARTITION BY a) FROM y)`",
                    if op == "INTERSECT" {
                        "every left row that has a match on the right (SQL keeps a row as \
                         many times as the side with fewer copies has it)"
                    } else {
                        "the left rows that have no match on the right (SQL takes away one \
                         copy per copy on the right, so a row on the left 5 times and on the \
                         right twice is kept 3 times)"
                    }
                )),
                None => ControlFlow::Continue(()),
            }
        }
        fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<String> {
            if let Some(top) = &select.top {
                ties_or_percent(top.with_ties, top.percent)?;
            }
            let passed_over = |what: &str, instead: &str| {
                ControlFlow::Break(format!(
                    "{what}, which DataFusion would pass over, {instead}"
                ))
            };
            if select.prewhere.is_some() {
                return passed_over(
                    "ClickHouse's `PREWHERE`",
                    "filtering nothing; write `WHERE`",
                );
            }
            if !select.connect_by.is_empty() {
                return passed_over(
                    "a hierarchical query (`START WITH ... CONNECT BY`)",
                    "returning the rows unwalked; write a recursive CTE, `WITH RECURSIVE`",
                );
            }
            let ilike = select.projection.iter().any(|item| match item {
                SelectItem::Wildcard(o) | SelectItem::QualifiedWildcard(_, o) => {
                    o.opt_ilike.is_some()
                }
                _ => false,
            });
            if ilike {
                return passed_over(
                    "Snowflake's `* ILIKE '...'`",
                    "giving every column; name the columns, or leave some out with `* \
                     EXCLUDE (a, b)`",
                );
            }
            match &select.group_by {
                GroupByExpr::All(modifiers) | GroupByExpr::Expressions(_, modifiers)
                    if !modifiers.is_empty() =>
                {
                    ControlFlow::Break(
                        "`GROUP BY ... WITH ROLLUP` (or `WITH CUBE`, `WITH TOTALS`), which \
                         DataFusion would pass over, giving no subtotal rows; write `GROUP BY \
                         ROLLUP (a, b)` or `GROUP BY CUBE (a, b)`"
                            .to_string(),
                    )
                }
                _ => ControlFlow::Continue(()),
            }
        }
        fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<String> {
            let (sample, partitions) = match t {
                TableFactor::Table {
                    sample, partitions, ..
                } => (sample, partitions.as_slice()),
                TableFactor::Derived { sample, .. } => (sample, &[][..]),
                _ => return ControlFlow::Continue(()),
            };
            if sample.is_some() {
                return ControlFlow::Break(
                    "a table sample (TABLESAMPLE, SAMPLE), which DataFusion would pass over, \
                     reading every row; for a sample, filter: `WHERE random() < 0.1` (a new \
                     one each run)"
                        .to_string(),
                );
            }
            if !partitions.is_empty() {
                return ControlFlow::Break(
                    "a partition selection, `PARTITION (...)`, which DataFusion would pass \
                     over, reading every partition; filter on the partition column instead: \
                     `WHERE event_date = DATE '2024-03-15'`"
                        .to_string(),
                );
            }
            ControlFlow::Continue(())
        }
    }
    let Statement::Statement(s) = statement else {
        return Ok(());
    };
    if let ControlFlow::Break(problem) = s.visit(&mut Find) {
        return Err(datafusion::error::DataFusionError::NotImplemented(problem));
    }
    if let ControlFlow::Break(problem) = s.visit(&mut Misread) {
        return Err(datafusion::error::DataFusionError::Plan(problem));
    }
    Ok(())
}

/// [`passed_over`] for each statement of `sql` (what does not parse is
/// planning's to report).
#[cfg(test)]
fn passed_over_clause(sql: &str) -> datafusion::error::Result<()> {
    let Ok(statements) = datafusion::sql::parser::DFParser::parse_sql(sql) else {
        return Ok(());
    };
    statements.iter().try_for_each(passed_over)
}

/// [`checked`]'s check of time formats.
fn checked_formats(df: DataFrame) -> datafusion::error::Result<DataFrame> {
    use datafusion::common::ScalarValue;
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    let mut found = None;
    df.logical_plan().apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && matches!(f.func.name(), "to_char" | "date_format")
                    && let Some(Expr::Literal(
                        ScalarValue::Utf8(Some(format))
                        | ScalarValue::Utf8View(Some(format))
                        | ScalarValue::LargeUtf8(Some(format)),
                        _,
                    )) = f.args.get(1)
                    && !format.contains('%')
                {
                    found = Some(format!(
                        "the time format '{format}' has no `%` code, so it gives every row \
                         that same text: DataFusion's time formats (`to_char`, `date_format`) \
                         are strftime's, `%` codes (`'%Y-%m-%d'` for a date, `'%Y-%m-%d \
                         %H:%M:%S'` for a time, `'%Y-%m'` for a month), not letters such as \
                         `yyyy-MM-dd` or `YYYY-MM-DD`"
                    ));
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    match found {
        Some(problem) => Err(datafusion::error::DataFusionError::Plan(problem)),
        None => Ok(df),
    }
}

/// How to read a member of `properties` (JSON text), said after an error
/// that shows it was read another way (a literal, for `concat!`).
macro_rules! json_members {
    () => {
        "`properties` and `extra` are JSON text: read a member with \
         `json_as_text(properties, 'amount')` (its value as text, of any \
         type; or `properties->>'amount'`), `json_get_str` (a string's), \
         `json_get_json` (its JSON), `json_get_int`, `json_get_float` or \
         `json_get_bool`, and a nested one with more keys, \
         `json_as_text(properties, 'a', 'b')`"
    };
}
pub(crate) use json_members;

/// Functions of other engines that DataFusion names otherwise: their
/// names, whose they are, and what does the job here (each checked on
/// this DataFusion).
const FOREIGN_FUNCTIONS: &[(&[&str], &str, &str)] = &[
    (
        &[
            "json_extract",
            "json_extract_string",
            "json_extract_scalar",
            "json_extract_path",
            "json_extract_path_text",
            "jsonb_extract_path_text",
            "json_value",
            "json_query",
            "get_json_object",
        ],
        "another engine's JSON",
        concat!(
            json_members!(),
            "; they take keys, not a JSONPath such as '$.amount'"
        ),
    ),
    (
        &["strftime"],
        "DuckDB's and SQLite's",
        "`to_char(ts, '%Y-%m-%d')`, with the same `%` codes",
    ),
    (
        &["format_timestamp", "format_datetime"],
        "another engine's",
        "`to_char(ts, '%Y-%m-%d')`, the time first, with strftime's `%` codes (not \
         `yyyy-MM-dd`)",
    ),
    (
        &["dayname", "monthname"],
        "another engine's",
        "`to_char(ts, '%A')` for the day's name, `to_char(ts, '%B')` for the month's",
    ),
    (
        &["epoch_ms", "unix_millis"],
        "another engine's",
        "`CAST(date_part('epoch', ts) * 1000 AS BIGINT)` for a timestamp's epoch \
         milliseconds, `to_timestamp_millis(ms)` for the timestamp of epoch milliseconds",
    ),
    (
        &["epoch"],
        "DuckDB's",
        "`date_part('epoch', ts)`, epoch seconds with a fraction",
    ),
    (
        &["unix_timestamp", "unix_seconds"],
        "another engine's",
        "`to_unixtime(ts)`, whole epoch seconds",
    ),
    (
        &["date_diff", "datediff", "timestamp_diff", "timestampdiff"],
        "another engine's",
        "`CAST(t2 AS DATE) - CAST(t1 AS DATE)` for the days from one date to another, \
         `date_part('epoch', t2 - t1)` for the seconds between two times",
    ),
    (
        &[
            "date_add",
            "date_sub",
            "dateadd",
            "adddate",
            "subdate",
            "timestampadd",
        ],
        "another engine's",
        "`ts + INTERVAL '1 day'`, `ts - INTERVAL '1 day'`, and for a number of days in a \
         column `x`, `ts + CAST(concat(x, ' days') AS INTERVAL)`",
    ),
    (
        &[
            "year",
            "month",
            "day",
            "hour",
            "minute",
            "second",
            "quarter",
            "week",
            "dayofmonth",
            "dayofyear",
            "weekofyear",
            "isodow",
        ],
        "another engine's",
        "`date_part('year', ts)` (also 'month', 'day', 'hour', 'minute', 'second', \
         'quarter', 'week' (ISO), 'dow' with Sunday 0, 'isodow' with Monday 1, 'doy')",
    ),
    (
        &["dayofweek", "day_of_week", "dow"],
        "another engine's",
        "`date_part('dow', ts) + 1`, Sunday 1 to Saturday 7 as MySQL's and Spark's \
         (`date_part('dow', ts)` alone is Sunday 0, `date_part('isodow', ts)` Monday 1)",
    ),
    (
        &["weekday"],
        "MySQL's",
        "`date_part('isodow', ts) - 1`, Monday 0 to Sunday 6 as theirs",
    ),
    (
        &["time_bucket"],
        "DuckDB's and TimescaleDB's",
        "`date_bin(INTERVAL '15 minutes', ts)`",
    ),
    (
        &["list", "collect_list"],
        "another engine's",
        "`array_agg(x)`",
    ),
    (&["collect_set"], "Spark's", "`array_agg(DISTINCT x)`"),
    (
        &["group_concat", "listagg"],
        "another engine's",
        "`string_agg(x, ',')`",
    ),
    (
        &["count_if", "countif"],
        "another engine's",
        "`count(*) FILTER (WHERE condition)`",
    ),
    (
        &["approx_quantile", "percentile_approx", "approx_percentile"],
        "another engine's",
        "`approx_percentile_cont(x, 0.99)`",
    ),
    (
        &["percentile"],
        "Spark's",
        "`percentile_cont(0.99) WITHIN GROUP (ORDER BY x)`",
    ),
    (
        &["max_by", "arg_max", "argmax"],
        "another engine's",
        "`first_value(x ORDER BY y DESC NULLS LAST)`",
    ),
    (
        &["min_by", "arg_min", "argmin"],
        "another engine's",
        "`first_value(x ORDER BY y NULLS LAST)`",
    ),
    (
        &["regexp_matches", "rlike", "regexp"],
        "another engine's",
        "`regexp_like(s, 'pattern')` for whether it matches, `regexp_match(s, 'pattern')` \
         for the groups it matched",
    ),
    (
        &["len"],
        "DuckDB's",
        "`length(s)` (`array_length(arr)` for an array)",
    ),
    (
        &[
            "strptime",
            "str_to_date",
            "date_parse",
            "parse_datetime",
            "parse_timestamp",
        ],
        "another engine's",
        "`to_timestamp(s, '%Y-%m-%d')`",
    ),
    (
        &["regexp_extract", "regexp_substr"],
        "another engine's",
        "`(regexp_match(s, 'id=(\\d+)'))[1]`, the first group's match",
    ),
    (
        &["string_split", "str_split", "split"],
        "another engine's",
        "`string_to_array(s, ',')`, or `split_part(s, ',', 1)` for one piece",
    ),
    (
        &["regexp_split_to_array"],
        "PostgreSQL's",
        "`string_to_array(regexp_replace(s, '[0-9]+', ',', 'g'), ',')`: the pattern's \
         matches turned into one delimiter first",
    ),
    (
        &["variance"],
        "another engine's",
        "`var_samp(x)` (`var_pop(x)` for the population's)",
    ),
    (
        &["mode"],
        "another engine's",
        "no such aggregate: count each value in a subquery (GROUP BY x, with count(*) AS n) \
         and take the most frequent over it, first_value(x ORDER BY n DESC)",
    ),
    (&["arbitrary"], "Trino's", "`any_value(x)`"),
    (
        &["percentile_disc", "quantile_disc"],
        "another engine's",
        "no such aggregate (`percentile_cont(0.9) WITHIN GROUP (ORDER BY x)` interpolates \
         between the two nearest values); the smallest value with at least 90% of the rows \
         at or below it, as theirs gives: `(SELECT min(x) FROM (SELECT x, cume_dist() OVER \
         (ORDER BY x) AS c FROM t WHERE x IS NOT NULL) WHERE c >= 0.9)`",
    ),
    (
        &["typeof", "pg_typeof"],
        "another engine's",
        "`arrow_typeof(x)`, the Arrow type",
    ),
    (
        &["parse_url", "url_extract_host", "domain", "netloc"],
        "another engine's",
        "`split_part(s, '/', 3)` for an URL's host, `(regexp_match(s, \
         '[?&]utm_source=([^&#]*)'))[1]` for a parameter of its query (still %-escaped)",
    ),
    (
        &["url_decode", "url_encode"],
        "another engine's",
        "no such function: undo the escapes you expect, `replace(s, '%20', ' ')`",
    ),
    (
        &["json_array_length"],
        "another engine's",
        "`json_length(properties)` (an object's members too), `json_length(properties, \
         'items')` for a member's",
    ),
    (
        &["iif", "if", "iff"],
        "another engine's",
        "`CASE WHEN condition THEN x ELSE y END`",
    ),
    (
        &["base64", "to_base64"],
        "another engine's",
        "`encode(s, 'base64')` (with no `=` padding at the end)",
    ),
    (
        &["epoch_us"],
        "DuckDB's",
        "`arrow_cast(ts, 'Int64')`, the microseconds of the lake's timestamps",
    ),
    (
        &["make_interval", "to_hours", "to_minutes"],
        "another engine's",
        "`INTERVAL '3 days'`, and for a number in a column `x`, `CAST(concat(x, ' days') AS \
         INTERVAL)`",
    ),
    (
        &["make_timestamp"],
        "another engine's",
        "`CAST(make_date(2024, 3, 15) AS TIMESTAMP) + INTERVAL '10 hours 30 minutes'`",
    ),
    (
        &["getdate", "sysdate", "systimestamp"],
        "another engine's",
        "`now()`, the same for every row of a query",
    ),
    (
        &["product"],
        "another engine's",
        "`exp(sum(ln(x)))`, for positive values",
    ),
    (
        &["last_day"],
        "another engine's",
        "`CAST(date_trunc('month', d) + INTERVAL '1 month' - INTERVAL '1 day' AS DATE)`",
    ),
    (
        &["hash", "crc32", "sha1", "sha2"],
        "another engine's",
        "`md5(s)` or `sha256(s)`, a digest; evlake's `hash_bucket(s, 64)`, one of 64 buckets",
    ),
    (
        &["age"],
        "PostgreSQL's",
        "`t2 - t1`, the time from one timestamp to another",
    ),
    (
        &["locate", "charindex"],
        "another engine's",
        "`strpos(s, 'x')`, the text first and what to find second (the other way round from \
         theirs)",
    ),
    (
        &["format", "printf"],
        "another engine's",
        "`concat(s, ': ', x)` or `concat_ws(' ', s, x)` to join values as text, \
         `to_char(ts, '%Y-%m-%d')` to write a time",
    ),
    (&["sign"], "another engine's", "`signum(x)`"),
    (&["mod"], "another engine's", "`x % y`"),
    (
        &["div"],
        "another engine's",
        "`x / y`, which divides integers whole (7 / 2 is 3)",
    ),
    (&["gen_random_uuid"], "PostgreSQL's", "`uuid()`"),
    (&["sort_array"], "Spark's", "`array_sort(arr)`"),
    (
        &["size", "array_size"],
        "another engine's",
        "`cardinality(arr)`, the number of elements",
    ),
    (
        &["date"],
        "another engine's",
        "`CAST(ts AS DATE)`, the UTC date of a time",
    ),
    (
        &["datetime", "timestamp"],
        "another engine's",
        "`CAST(s AS TIMESTAMP)`",
    ),
    (&["curdate"], "MySQL's", "`current_date`"),
    (
        &["isnull"],
        "another engine's",
        "`x IS NULL`; SQL Server's, of two values, is `coalesce(x, y)`",
    ),
    (&["ucase"], "another engine's", "`upper(s)`"),
    (&["lcase"], "another engine's", "`lower(s)`"),
    (&["space"], "another engine's", "`repeat(' ', x)`"),
    (
        &["first", "last"],
        "DuckDB's",
        "`first_value(x ORDER BY ts)` and `last_value(x ORDER BY ts)`",
    ),
    (
        &["approx_count_distinct", "ndv", "uniq", "approx_count"],
        "another engine's",
        "`approx_distinct(x)`",
    ),
    (&["every"], "another engine's", "`bool_and(condition)`"),
    (
        &["explode", "posexplode"],
        "another engine's",
        "`unnest`, of the array, in the SELECT list (a row per element)",
    ),
    (
        &["parse_json", "json_parse", "from_json", "try_parse_json"],
        "another engine's",
        json_members!(),
    ),
    (
        &["zeroifnull", "nvl0"],
        "another engine's",
        "`coalesce(x, 0)`",
    ),
    (
        &["div0", "safe_divide", "div0null"],
        "another engine's",
        "`x / NULLIF(y, 0)` (NULL for a 0 divisor; `coalesce(x / NULLIF(y, 0), 0)` for 0)",
    ),
    (&["log1p"], "another engine's", "`ln(1 + x)`"),
    (&["truncate"], "another engine's", "`trunc(x)`"),
    (
        &["count_distinct"],
        "another engine's",
        "`count(DISTINCT x)`",
    ),
    (&["variance_samp"], "another engine's", "`var_samp(x)`"),
    (
        &["list_value", "list_pack"],
        "DuckDB's",
        "`make_array(x, y)`",
    ),
    (
        &["struct_pack"],
        "DuckDB's",
        "`named_struct('a', x, 'b', y)`, and a field is `st['a']`",
    ),
    (
        &["add_months"],
        "another engine's",
        "`d + INTERVAL '1 month'` (from the 31st, the next month's last day)",
    ),
    (&["nullifzero"], "Snowflake's", "`NULLIF(x, 0)`"),
    (&["mid"], "MySQL's", "`substr(s, 2, 3)`"),
    (
        &["convert_timezone", "from_utc_timestamp"],
        "another engine's",
        "`event_timestamp AT TIME ZONE 'America/New_York'`, the time in that zone",
    ),
    (
        &["date_from_parts", "datefromparts"],
        "another engine's",
        "`make_date(2024, 3, 15)`",
    ),
    (
        &["time_slice"],
        "Snowflake's",
        "`date_bin(INTERVAL '1 hour', ts)`, the start of the hour (or other width) a time is in",
    ),
    (
        &[
            "to_number",
            "try_to_number",
            "to_numeric",
            "to_decimal",
            "try_to_decimal",
            "to_double",
            "try_to_double",
        ],
        "another engine's",
        "`TRY_CAST(s AS DECIMAL(18, 2))` or `TRY_CAST(s AS DOUBLE)`, NULL for text that is no \
         number (`CAST` fails on it)",
    ),
    (
        &["isnumeric"],
        "another engine's",
        "`TRY_CAST(s AS DOUBLE) IS NOT NULL`",
    ),
    (
        &["to_varchar"],
        "another engine's",
        "`CAST(x AS VARCHAR)`, or `to_char(ts, '%Y-%m-%d')` to write a time",
    ),
    (&["try_convert"], "SQL Server's", "`TRY_CAST(s AS INT)`"),
    (&["char"], "another engine's", "`chr(x)`"),
    (
        &["unicode"],
        "another engine's",
        "`ascii(s)`, the code point of the first character",
    ),
    (&["replicate"], "SQL Server's", "`repeat(s, x)`"),
    (&["ceiling"], "another engine's", "`ceil(x)`"),
    (
        &["pmod"],
        "Spark's",
        "`((x % y) + y) % y`, a remainder that is never negative",
    ),
    (
        &["sequence"],
        "Spark's",
        "`range(x, y + 1)` or `generate_series(x, y)`, the array from x to y",
    ),
    (&["slice"], "another engine's", "`array_slice(arr, 1, 2)`"),
];

/// Errors of SQL that DataFusion does not take (what its message says),
/// and what does the job.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "ANY in LIKE expression",
        "`x LIKE ANY (...)`; in DataFusion, one LIKE per pattern, `s LIKE 'a%' OR s LIKE 'b%'`, \
         or one regular expression, `regexp_like(s, '^(a|b)')`",
    ),
    (
        "wildcard * with RENAME not supported",
        "in DataFusion: `SELECT * EXCLUDE (event_id), event_id AS id`",
    ),
    (
        "UNNEST with ordinality is not supported",
        "number the elements in the SELECT list: `SELECT unnest(arr) AS x, \
         unnest(generate_series(1, cardinality(arr))) AS n FROM t`",
    ),
    (
        "not implemented: LATERAL VIEWS",
        "Hive's `LATERAL VIEW explode(arr)`; in DataFusion, `unnest(arr)` in the SELECT list, \
         a row per element: `SELECT x, unnest(arr) AS v FROM t`",
    ),
    (
        "not implemented: CLUSTER BY",
        "Hive's; in DataFusion: `ORDER BY`",
    ),
    (
        "Unsupported Interval Expression with last_field",
        "an interval with a first and a last field, `INTERVAL '1:30' HOUR TO MINUTE`; in \
         DataFusion, name each unit: `INTERVAL '1 hour 30 minutes'`",
    ),
    (
        "not implemented: SORT BY",
        "Hive's; in DataFusion: `ORDER BY`",
    ),
    (
        "Cannot infer common type for bitwise operation Boolean BIT_XOR Boolean",
        "for two booleans, XOR is `a <> b`",
    ),
    (
        "Unnest should be rewritten to LogicalPlan::Unnest before type coercion",
        "`unnest` in WHERE or inside another function's call: unnest in a subquery's SELECT \
         list first, `SELECT count(v) FROM (SELECT unnest(arr) AS v FROM t)`, or test an \
         element with `array_has(arr, 1)`",
    ),
    (
        "subquery can only be used in",
        "a subquery in ORDER BY (or another clause DataFusion 55 does not run one in): compute \
         it in the SELECT list and order by its name, `SELECT x, (SELECT count(*) FROM t AS b \
         WHERE b.y = a.y) > 0 AS found FROM t AS a ORDER BY found`",
    ),
    (
        "Dot access not supported for non-string expr",
        "read a field of a struct with brackets, `st['a']`, or name its table first, \
         `t.st.a`; `struct(x, y)` names its fields c0, c1, ...",
    ),
    (
        "found: # at ",
        "`#` begins no comment in DataFusion's SQL: `--` does, to the end of the line, and \
         `/* ... */`",
    ),
];

/// What does an as-of join's job here.
const ASOF: &str = "a join on the key with `r.ts <= l.ts`, then the latest match of each left \
                    row: `QUALIFY row_number() OVER (PARTITION BY l.event_id ORDER BY r.ts DESC) \
                    = 1` (a `LEFT JOIN` keeps left rows with none)";

/// `err`'s text, a planning error from SQL a user wrote: for a function
/// another engine has (DuckDB's `epoch_ms`, Spark's `date_format`), what
/// does the job in DataFusion, in place of DataFusion's own guess, which
/// goes by spelling (`Did you mean 'power'?`); for a join it does not take (DuckDB's
/// `SEMI JOIN`, `ASOF JOIN`), what to write.
pub fn planning_error(err: &datafusion::error::DataFusionError) -> String {
    without_signature_errors(&hinted_planning_error(err))
}

/// `text` without the error DataFusion gives for each signature of a
/// function that matches none (`Function 'sum' failed to match any
/// signature, errors: ... requires Decimal, but received String ...`,
/// six times), which its list of candidate signatures, kept, says again.
fn without_signature_errors(text: &str) -> String {
    const FAILED: &str = " failed to match any signature, errors: ";
    const NONE: &str = ". No function matches the given name and argument types ";
    let Some(failed) = text.find(FAILED) else {
        return text.to_string();
    };
    let (Some(start), Some(none)) = (
        text[..failed].rfind("Function '"),
        text[failed..].find(NONE),
    ) else {
        return text.to_string();
    };
    format!("{}{}", &text[..start], &text[failed + none + 2..])
}

/// [`planning_error`], with DataFusion's error for each signature.
fn hinted_planning_error(err: &datafusion::error::DataFusionError) -> String {
    // DataFusion calls a call that matches no signature an internal
    // error, asking for a bug report: it is the SQL's.
    let text = err
        .to_string()
        .replace(
            "\nThis issue was likely caused by a bug in DataFusion's code. Please help us to \
             resolve this by filing a bug report in our issue tracker: \
             https://github.com/apache/datafusion/issues.",
            "",
        )
        .replace("Internal error: Function", "Function");
    // Oracle's DECODE(x, search, result, ..., default).
    if text.contains("Function 'decode' expects 2 arguments but received ") {
        return format!(
            "{text} (DataFusion's `decode` is `decode(s, 'base64')`, from text to bytes; \
             Oracle's value by value is `CASE x WHEN 'a' THEN 1 WHEN 'b' THEN 2 ELSE 0 END`)"
        );
    }
    // SQL Server's and Snowflake's `STRING_AGG(x, ',') WITHIN GROUP
    // (ORDER BY x)` (and `LISTAGG`'s).
    if text.contains("WITHIN GROUP is only supported for ordered-set aggregate functions") {
        return format!(
            "{text} (`string_agg` and `array_agg` take their order inside the call: \
             `string_agg(s, ',' ORDER BY s)`)"
        );
    }
    // A row of values against a subquery, `(a, b) IN (SELECT x, y ...)`.
    if text.contains("Too many columns! The subquery should only return one column") {
        return format!(
            "{text} (DataFusion 55 takes no `(a, b) IN (SELECT x, y ...)`: write `EXISTS \
             (SELECT 1 FROM ... WHERE x = a AND y = b)`; a list of rows, `(a, b) IN (('u1', \
             'purchase'), ...)`, runs)"
        );
    }
    // `stddev(DISTINCT x)` beside another DISTINCT or with FILTER, where
    // DataFusion 55 does not take the distinct values first (and names
    // stddev_samp STDDEV_POP); `approx_median` and the weighted
    // percentile alike.
    if text.contains("(DISTINCT) aggregations are not available") {
        return format!(
            "{text} (take the distinct values in a subquery first: `SELECT stddev(x) FROM \
             (SELECT DISTINCT x FROM t)`; `var_samp(DISTINCT x)`, `var_pop`, `median` and \
             `percentile_cont` read DISTINCT, so `sqrt(var_samp(DISTINCT x))` is the sample \
             standard deviation)"
        );
    }
    // SQL's `FETCH FIRST n ROWS ONLY` and SQL Server's `SELECT TOP n`.
    if text.contains("FETCH clause is not supported") || text.ends_with("not implemented: TOP") {
        return format!("{text} (in DataFusion: `LIMIT n` at the end of the query)");
    }
    if text.contains("Function 'date_trunc' expects 2 arguments but received 3") {
        return format!(
            "{text} (DataFusion's `date_trunc` takes no time zone: `date_trunc('day', ts AT \
             TIME ZONE 'Europe/Berlin')`)"
        );
    }
    let function = text
        .split_once("Invalid function '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map(|(f, _)| f);
    // MySQL's and Spark's count of distinct pairs.
    if text.contains("COUNT DISTINCT with multiple arguments") {
        return format!(
            "{text} (count distinct pairs as one value: `count(DISTINCT (a, b))`; it counts a \
             pair with a NULL too, where MySQL's and Spark's skip it: add `WHERE a IS NOT NULL \
             AND b IS NOT NULL` for theirs)"
        );
    }
    // DuckDB's (and Python's) integer division.
    if text.contains("Operator DIV is not yet supported") {
        return format!(
            "{text} (`//` is DuckDB's integer division: in DataFusion `/` of two integers \
             divides whole, `7 / 2` is 3; `floor(x / y)` for a fraction)"
        );
    }
    // An interval times or over a number, and a time plus a number
    // (PostgreSQL's and DuckDB's `3 * INTERVAL '1 day'`, Spark's and
    // MySQL's `ts + 3`).
    if text.contains("Cannot get result type for temporal operation")
        && text.contains("Invalid interval arithmetic operation")
    {
        return format!(
            "{text} (DataFusion 55 does not multiply or divide an interval: write the amount in \
             it, `INTERVAL '3 days'`, or for a number in a column `x`, `CAST(concat(x, ' days') AS \
             INTERVAL)`)"
        );
    }
    if let Some((_, operation)) = text.split_once("Cannot coerce arithmetic expression ")
        && operation.contains("Timestamp(")
        && ["Int", "Float", "Decimal"]
            .iter()
            .any(|number| operation.contains(number))
    {
        return format!(
            "{text} (a time plus or minus a number: say its unit, `ts + INTERVAL '3 days'`, or \
             for a number in a column `x`, `ts + CAST(concat(x, ' days') AS INTERVAL)`; a DATE plus \
             an integer adds days)"
        );
    }
    // A column of both sides of a join, named without its table: with
    // `JOIN ... USING (x)` too, where SQL takes `x` alone.
    if let Some((_, rest)) = text.split_once("Ambiguous reference to unqualified field ") {
        let column = rest.split_whitespace().next().unwrap_or(rest);
        return format!(
            "{text} (more than one table of the query has a column `{column}`: name the one \
             meant, `events.{column}` or the table's alias, `e.{column}`; DataFusion 55 asks \
             for it after `JOIN ... USING ({column})` too, where after a RIGHT or FULL JOIN \
             SQL's `{column}` is `COALESCE(a.{column}, b.{column})`)"
        );
    }
    // A column and a CAST of it both in GROUP BY: DataFusion 55 names a
    // CAST as its value, so the two group keys are one name twice, and an
    // alias does not part them.
    if text.contains("Optimizer rule 'eliminate_group_by_constant' failed")
        && text.contains("Projections require unique expression names")
    {
        return format!(
            "{text} (a column and a CAST of it in GROUP BY are one name twice in DataFusion 55, \
             aliased or not: group by the column alone, `GROUP BY x`, and cast it in the \
             SELECT list, `SELECT x, CAST(x AS VARCHAR) AS v`)"
        );
    }
    // Two SELECT items of one name: SQL keeps both, DataFusion 55 refuses.
    if text.contains("Projections require unique expression names") {
        return format!(
            "{text} (a query's columns need names of their own in DataFusion 55: name one \
             with AS, `SELECT x, x AS x2`)"
        );
    }
    // A subquery inside a subquery that names a column of the query two
    // levels out: DataFusion 55 looks for it in the middle query's
    // rewritten join, `__correlated_sq_1`.
    if text.contains("Did you mean '__correlated_sq_") {
        return format!(
            "{text} (a subquery inside another subquery that names a column of the query two \
             levels out does not run in DataFusion 55: name the middle subquery's column it \
             equals instead, `EXISTS (SELECT 1 FROM b WHERE b.k = a.k AND EXISTS (SELECT 1 FROM \
             c WHERE c.k = b.k))`, or join)"
        );
    }
    // `GROUP BY ()`, SQL's one group of all rows, which DataFusion 55's
    // planner does not take (inside GROUPING SETS it does).
    if text.contains("Empty tuple not supported yet") {
        return format!(
            "{text} (`GROUP BY ()` is one group of all the rows: leave GROUP BY out, `SELECT \
             count(*) FROM events`; inside GROUPING SETS, `()` runs as it is)"
        );
    }
    // A correlated subquery of one value that is no aggregate:
    // DataFusion 55 refuses it, saying why and not what to write.
    if text.contains("Correlated scalar subquery must be aggregated") {
        return format!(
            "{text} (DataFusion 55 runs a subquery that refers to the outer query and gives one \
             value only as an aggregate: `(SELECT max(b.y) FROM ... WHERE b.k = a.k)` where \
             there is one row, or `first_value(b.y ORDER BY ...)` for the top row)"
        );
    }
    // A subquery that yields one value and refers to the outer query with
    // more than `=`: DataFusion plans it and cannot run it.
    if text.contains("Physical plan does not support logical expression ScalarSubquery")
        || text.contains("Optimizer rule 'scalar_subquery_to_join' failed")
    {
        return format!(
            "{text} (a subquery that gives one value and refers to the outer query's columns \
             other than with `=` (`s.user_id = e.user_id AND s.start <= e.ts`), or from a \
             subquery in its FROM, does not run in DataFusion 55: join instead and aggregate, `LEFT JOIN sessions s ON s.user_id = \
             e.user_id AND s.start <= e.ts ... GROUP BY`; `EXISTS` and `IN` subqueries run as \
             they are; one that takes a row by ORDER BY, LIMIT or OFFSET runs as an aggregate, \
             `(SELECT first_value(x ORDER BY ts DESC) FROM t WHERE t.k = o.k)` for the top row)"
        );
    }
    // A LATERAL subquery that uses an outer column other than in `=`, or
    // an `unnest` in FROM of an outer column (in a subquery too): planned,
    // and not run. The message carries the column's debug dump.
    if let Some((before, rest)) =
        text.split_once("Physical plan does not support logical expression OuterReferenceColumn(")
    {
        let column = rest.split_once("Column {").map_or(rest, |(_, c)| c);
        let quoted = |key: &str| {
            column
                .split_once(key)
                .and_then(|(_, r)| r.split_once('"'))
                .map(|(v, _)| v)
        };
        let name = match (quoted("table: \""), quoted("name: \"")) {
            (Some(table), Some(name)) => format!("`{table}.{name}`"),
            (None, Some(name)) => format!("`{name}`"),
            _ => "column".to_string(),
        };
        return format!(
            "{before}the outer query's {name} in a LATERAL subquery, other than in `=` (or \
             with ORDER BY and LIMIT), or in an `unnest` in FROM does not run in DataFusion 55: \
             join instead and aggregate, `LEFT JOIN sessions s ON s.user_id = e.user_id AND \
             s.event_count > e.n ... GROUP BY`; for each row's top rows, join the rows a window \
             numbers, `JOIN (SELECT *, row_number() OVER (PARTITION BY s.user_id ORDER BY \
             s.session_start DESC) AS r FROM sessions s) s ON s.user_id = e.user_id AND s.r <= \
             3`; and unnest an array in the SELECT list, `SELECT unnest(t.a) AS v FROM t`"
        );
    }
    // EXISTS or IN (subquery) outside WHERE, and an aggregate in a join's
    // ON: planned, and not run; the message dumps the expression.
    if let Some((before, rest)) =
        text.split_once("Physical plan does not support logical expression ")
    {
        let node: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect();
        let instead = match node.as_str() {
            "Exists" | "InSubquery" => {
                "EXISTS or IN (subquery) outside WHERE (in the SELECT list, a CASE or a join's \
                 ON) does not run in DataFusion 55: count instead, `(SELECT count(*) FROM \
                 purchases p WHERE p.user_id = e.user_id) > 0`, or LEFT JOIN the subquery's rows \
                 and test `p.user_id IS NOT NULL`"
            }
            "AggregateFunction" => {
                "an aggregate in a join's ON does not run: aggregate in a subquery, then join \
                 its rows, `JOIN (SELECT user_id, count(*) AS n FROM sessions GROUP BY user_id) \
                 s ON s.user_id = e.user_id AND s.n > 1`"
            }
            _ => "",
        };
        if !instead.is_empty() {
            return format!("{before}{instead}");
        }
    }
    // A FROM clause DataFusion parses and does not plan: its message
    // carries the parsed clause's debug dump, some 3,000 characters.
    if let Some((before, rest)) = text.split_once("Unsupported ast node ") {
        // An expression's message puts its place first.
        let rest = rest.strip_prefix("in sqltorel: ").unwrap_or(rest);
        let node: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect();
        let instead = match node.as_str() {
            "RLike" => {
                " (MySQL's and Spark's `REGEXP` and `RLIKE`; in DataFusion: `regexp_like(x, \
                 'pattern')`, or `x ~ 'pattern'`)"
            }
            "Pivot" => {
                " (`PIVOT`; in DataFusion, one aggregate per value: `SELECT user_id, count(*) \
                 FILTER (WHERE event_type = 'search') AS search, count(*) FILTER (WHERE \
                 event_type = 'purchase') AS purchase FROM events GROUP BY user_id`)"
            }
            "Unpivot" => {
                " (`UNPIVOT`; in DataFusion, one SELECT per column: `SELECT event_id, \
                 'page_url' AS name, page_url AS value FROM events UNION ALL SELECT event_id, \
                 'source_system', source_system FROM events`)"
            }
            "MatchRecognize" => {
                " (`MATCH_RECOGNIZE`; in DataFusion, window functions: `LAG`/`LEAD` to compare \
                 a row with its neighbours, and a running `SUM` of a flag to number the \
                 matches, as sessions are built)"
            }
            "JsonTable" | "OpenJsonTable" => {
                " (a JSON table function; in DataFusion, one `json_get_str(j, 'key')` (or \
                 `json_get_int`, ...) per column, and the items of an array with \
                 `unnest(json_get_array(j, 'key'))`)"
            }
            _ => "",
        };
        return format!("{before}Unsupported SQL: {node}{instead}");
    }
    // DuckDB's `ASOF JOIN ... ON`, which the parser takes for
    // Snowflake's, with `MATCH_CONDITION`.
    if text.contains("Expected: MATCH_CONDITION") {
        return format!("{text} (an `ASOF JOIN`; in DataFusion: {ASOF})");
    }
    // A join DataFusion's SQL does not take, which it says with the
    // parsed join's debug dump: its name, and what to write.
    if let Some((before, rest)) = text.split_once("Unsupported JOIN operator ") {
        let operator: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect();
        let instead = match operator.as_str() {
            "Semi" => "`LEFT SEMI JOIN`, or `WHERE EXISTS (SELECT 1 FROM ... WHERE ...)`",
            "Anti" => "`LEFT ANTI JOIN`, or `WHERE NOT EXISTS (SELECT 1 FROM ... WHERE ...)`",
            "AsOf" => ASOF,
            _ => {
                "`JOIN`, `LEFT`/`RIGHT`/`FULL [OUTER] JOIN`, `CROSS JOIN`, or `LEFT`/`RIGHT` \
                  `SEMI`/`ANTI JOIN`"
            }
        };
        return format!("{before}Unsupported JOIN operator {operator} (in DataFusion: {instead})");
    }
    // A type another engine names (BigQuery's INT64, Snowflake's
    // TIMESTAMP_NTZ, DuckDB's HUGEINT), and what DataFusion calls it.
    if let Some((_, name)) = text.split_once("Unsupported SQL type ") {
        let base = name
            .split(['(', ' '])
            .next()
            .unwrap_or(name)
            .to_ascii_uppercase();
        let instead = match base.as_str() {
            "INT64" | "LONG" => "`BIGINT`",
            "FLOAT64" => "`DOUBLE`",
            "BIGNUMERIC" | "HUGEINT" | "NUMBER" => {
                "`DECIMAL(38, 0)`, or `DECIMAL(p, s)` for a fraction"
            }
            "MONEY" => "`DECIMAL(18, 2)`",
            "BYTES" | "BLOB" => "`BYTEA`",
            "JSON" | "VARIANT" => {
                "`VARCHAR`: JSON is text here, read with `json_get_str(j, 'key')` and its kin"
            }
            "DATETIME" | "TIMESTAMP_NTZ" | "TIMESTAMP_LTZ" => "`TIMESTAMP`",
            "NVARCHAR" | "UUID" => "`VARCHAR`",
            "UBIGINT" => "`BIGINT UNSIGNED`",
            _ => {
                "`BIGINT`, `INT`, `SMALLINT`, `DOUBLE`, `REAL`, `DECIMAL(p, s)`, `VARCHAR`, \
                 `BOOLEAN`, `DATE`, `TIMESTAMP`, `INTERVAL` or `BYTEA`"
            }
        };
        return format!("{text} (in DataFusion: {instead})");
    }
    // A window frame's EXCLUDE (SQL:2011's, in PostgreSQL and DuckDB).
    if let Some((_, rest)) = text.split_once("Expected: ), found: ")
        && rest
            .get(..7)
            .is_some_and(|word| word.eq_ignore_ascii_case("exclude"))
    {
        return format!(
            "{text} (a window frame's EXCLUDE is not in DataFusion 55: for EXCLUDE CURRENT ROW, \
             take the row out of the window's value, `sum(x) OVER (...) - x`, `count(*) OVER \
             (...) - 1`)"
        );
    }
    // Text given to a function that takes only numbers (`sum` of a JSON
    // member read with `->>`).
    if let Some((_, rest)) =
        text.split_once("No function matches the given name and argument types '")
        && let Some((call, _)) = rest.split_once('\'')
        && call.contains("Utf8")
        && let Some((_, candidates)) = text.split_once("Candidate functions:")
        && !candidates.contains("Utf8")
        && !candidates.contains("String")
        && ["Int", "Float", "Decimal", "Numeric"]
            .iter()
            .any(|number| candidates.contains(number))
    {
        return format!(
            "{text}\n(text where the function takes a number: cast it, `CAST(x AS DOUBLE)`, or \
             `CAST(x AS DECIMAL(18, 2))` for money, TRY_CAST for NULL where it is not a number; \
             read a member of `properties` by its type: `json_get_float(properties, 'amount')`)"
        );
    }
    // Clauses and forms DataFusion's SQL does not take, and what does their
    // job.
    for (says, instead) in UNSUPPORTED {
        if text.contains(says) {
            return format!("{text} ({instead})");
        }
    }
    // DuckDB's table functions, given a path under the lake.
    if let Some((_, rest)) = text.split_once("table function '")
        && let Some((name, _)) = rest.split_once('\'')
        && name.starts_with("read_")
    {
        return format!(
            "{text} (`{name}` is DuckDB's: evlake query reads the lake's tables by name, \
             `FROM events`, and `evlake tables` lists them)"
        );
    }
    let Some((name, (_, whose, here))) = function.and_then(|f| {
        FOREIGN_FUNCTIONS
            .iter()
            .find(|(names, _, _)| names.contains(&f))
            .map(|found| (f, found))
    }) else {
        return text;
    };
    let guess = text.find("\nDid you mean").unwrap_or(text.len());
    format!(
        "{} (`{name}` is {whose} function; in DataFusion: {here})",
        text[..guess].trim_end_matches('.')
    )
}

/// An error a query's own expressions raise on the rows they read (a cast
/// that does not hold, a division by zero, a function given a value it
/// refuses), as opposed to the machine's (I/O, memory) or a file's: the
/// query's fault, like [`is_usage_error`]s.
pub fn is_data_error(err: &datafusion::error::DataFusionError) -> bool {
    use datafusion::error::DataFusionError as E;
    match err {
        E::ArrowError(e, _) => is_arrow_data_error(e),
        E::Execution(_) => true,
        E::Context(_, inner) | E::Diagnostic(_, inner) => is_data_error(inner),
        E::Shared(inner) => is_data_error(inner),
        E::Collection(errors) => errors.first().is_some_and(is_data_error),
        // A filter pushed into the Parquet reader raises its error there.
        E::ParquetError(e) => match &**e {
            datafusion::parquet::errors::ParquetError::External(inner) => {
                is_external_data_error(inner.as_ref())
            }
            _ => false,
        },
        E::External(inner) => is_external_data_error(inner.as_ref()),
        _ => false,
    }
}

/// An Arrow error about values (see [`is_data_error`]).
fn is_arrow_data_error(e: &datafusion::arrow::error::ArrowError) -> bool {
    use datafusion::arrow::error::ArrowError as A;
    matches!(
        e,
        A::CastError(_)
            | A::ParseError(_)
            | A::ComputeError(_)
            | A::DivideByZero
            | A::ArithmeticOverflow(_)
            | A::InvalidArgumentError(_)
            | A::JsonError(_)
    )
}

/// A boxed error that is an Arrow or DataFusion one about values.
fn is_external_data_error(e: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(a) = e.downcast_ref::<datafusion::arrow::error::ArrowError>() {
        is_arrow_data_error(a)
    } else if ["regex parse error", "Compiled regex exceeds size limit"]
        .iter()
        .any(|start| e.to_string().starts_with(start))
    {
        // A pattern that does not compile (`regexp_like(s, '[')`), as the
        // regex crate's errors and regex-syntax's (the optimizer's) say.
        true
    } else {
        e.downcast_ref::<datafusion::error::DataFusionError>()
            .is_some_and(is_data_error)
    }
}

/// `err`, from running SQL a user wrote (a query, a model or a table of
/// the lake's own), with `what` said of it: one its expressions raised on
/// the rows they read ([`is_data_error`], anywhere in the chain) is the
/// SQL's fault, a usage error (exit 2) as when it does not plan; anything
/// else (I/O, memory) stays a failure (exit 1).
pub fn user_sql_error(
    err: impl Into<anyhow::Error>,
    what: impl std::fmt::Display,
) -> anyhow::Error {
    let err = err.into();
    let data = err.chain().any(|c| {
        c.downcast_ref::<datafusion::error::DataFusionError>()
            .is_some_and(is_data_error)
    });
    if data {
        let text = without_optimizer_rule(&crate::error::describe(&err));
        let hint = data_error_hint(&text);
        crate::error::Failure::Usage(format!("{what}: {text}{hint}")).into()
    } else {
        err.context(what.to_string())
    }
}

/// `text` without DataFusion's "Optimizer rule 'simplify_expressions'
/// failed / caused by" lines: a constant the SQL casts (`CAST('12.5' AS
/// INT)`) fails while the optimizer folds it, and the rule is nothing the
/// user wrote.
fn without_optimizer_rule(text: &str) -> String {
    const CAUSED: &str = "\ncaused by\n";
    let mut out = text.to_string();
    while let Some(start) = out.find("Optimizer rule '")
        && let Some(end) = out[start..].find(CAUSED)
    {
        out.replace_range(start..start + end + CAUSED.len(), "");
    }
    out
}

/// What to do about a user's SQL failing on its rows (the message of an
/// [`is_data_error`]), said after it: for a CAST that meets a value it
/// cannot convert, TRY_CAST (and for text of a time that arrow cannot
/// read, perhaps one without seconds, `to_timestamp` with a format); for an integer or decimal `/` or `%` by 0
/// (a float's gives inf or NaN), NULLIF on the divisor, which gives the
/// NULL DuckDB's division gives.
pub fn data_error_hint(message: &str) -> &'static str {
    if message.contains("Parser error: Error parsing timestamp from ")
        && message.contains("': error parsing time")
    {
        " (text of a time without seconds, '2024-03-15 10:00', is read with \
         `to_timestamp(x, '%Y-%m-%d %H:%M')`; TRY_CAST gives NULL for a value that does not \
         convert)"
    } else if message.contains("Cast error: Cannot cast string '")
        && message.contains("' to value of Date32 type")
    {
        " (a DATE is written 'YYYY-MM-DD', '2024-03-15', with no time of day: compare a time \
         with a timestamp, event_timestamp; TRY_CAST gives NULL for a value that does not \
         convert)"
    } else if message.contains("Invalid input syntax for type interval: \"P") {
        " (an ISO 8601 duration, 'P1DT2H'; DataFusion reads an interval's units by name: \
         INTERVAL '1 day 2 hours'; TRY_CAST gives NULL for a value that does not convert)"
    } else if message.contains("Cast error: ") || message.contains("Parser error: ") {
        " (TRY_CAST gives NULL for a value that does not convert)"
    } else if message.contains("LIKE does not support escape_char other than the backslash") {
        " (write the pattern with `\\` as its escape, the default: `x LIKE '%100\\%'` for a \
         text that ends in `100%`)"
    } else if message.contains("Date part 'CENTURY' not supported") {
        " (the century: `(date_part('year', d) - 1) / 100 + 1`, whole as date_part's year is an \
         integer)"
    } else if message.contains("Date part 'MILLENNIUM' not supported") {
        " (the millennium: `(date_part('year', d) - 1) / 1000 + 1`)"
    } else if message.contains("Date part 'DECADE' not supported") {
        " (the decade: `date_part('year', d) / 10`)"
    } else if message.contains("Date part '") && message.contains("' not supported") {
        " (DataFusion's parts: 'year', 'quarter', 'month', 'week', 'day', 'hour', 'minute', \
         'second', 'millisecond', 'microsecond', 'nanosecond', 'dow', 'isodow', 'doy', 'epoch')"
    } else if message.contains("regex parse error")
        || message.contains("Regular expression did not compile")
    {
        " (the pattern is a regular expression: write `\\(`, `\\[` or `\\.` to match `(`, `[` \
         or `.` as text)"
    } else if message.contains("Overflow happened on: sum() of BIGINT values") {
        " (sum a DECIMAL(38, 0) cast, `sum(CAST(x AS DECIMAL(38, 0)))`, for a total of up to 38 \
         digits)"
    } else if message.contains("Arithmetic overflow: Overflow happened on: `")
        && message.contains("` of decimals: ")
    {
        " (a DECIMAL's `+`, `-` or `*` has 38 digits at most, and a product as many fraction \
         digits as its operands together: use fewer fraction digits, `CAST(x AS DECIMAL(38, \
         4))`, or compute it as a DOUBLE, `CAST(x AS DOUBLE) * y`)"
    } else if message.contains("Arithmetic overflow: Overflow happened on: ") {
        " (an integer's `+`, `-` or `*` beyond its type's range, about ±2.1e9 for an INT and \
         ±9.2e18 for a BIGINT, or a DECIMAL's beyond 38 digits: compute it wider, `CAST(x AS \
         BIGINT) * y`, `CAST(x AS DECIMAL(38, 0)) * y`, or as a DOUBLE, `CAST(x AS DOUBLE) * y`)"
    } else if message.contains("Divide by zero") {
        " (an integer or decimal `/` or `%` by 0; `x / NULLIF(d, 0)` gives NULL instead)"
    } else if message.contains("negative count not allowed: ") {
        " (substr's length, its third argument, is negative: `substr(s, p, greatest(n, 0))` \
         gives '' instead)"
    } else if message.contains("field position must not be zero") {
        " (split_part counts fields from 1, and from the last when negative: `split_part(s, \
         ',', 1)` is the first)"
    } else if message.contains("cannot take square root of a negative number") {
        " (`CASE WHEN x >= 0 THEN sqrt(x) END` gives NULL instead)"
    } else {
        ""
    }
}

/// [`Engine::lookups`]' settings.
fn lookup_options(o: &mut datafusion::config::ConfigOptions) {
    o.execution.parquet.enable_page_index = false;
    o.execution.parquet.metadata_size_hint = Some(64 << 10);
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::parquet::errors::ParquetError;

    /// Run `sql` as DataFusion alone plans it, and fail the test if it
    /// does not plan or run.
    async fn runs(ctx: &datafusion::prelude::SessionContext, sql: &str) {
        let batches = ctx.sql(sql).await;
        let batches = match batches {
            Ok(df) => df.collect().await,
            Err(e) => Err(e),
        };
        if let Err(e) = batches {
            panic!("{sql}: {e}");
        }
    }

    /// What [`checked`] says of `sql`, which it must refuse.
    async fn refused(ctx: &datafusion::prelude::SessionContext, sql: &str) -> String {
        match checked_plan(sql, ctx.sql(sql).await.unwrap()) {
            Ok(_) => panic!("{sql}: not refused"),
            Err(e) => e.to_string(),
        }
    }

    /// The rows of `sql`, which [`checked`] must pass and which must run.
    async fn checked_rows(
        ctx: &datafusion::prelude::SessionContext,
        sql: &str,
    ) -> Vec<datafusion::arrow::record_batch::RecordBatch> {
        let df =
            checked_plan(sql, ctx.sql(sql).await.unwrap()).unwrap_or_else(|e| panic!("{sql}: {e}"));
        df.collect().await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The rows `sql` gives as a table, planned as [`planned`] plans a
    /// user's SQL, or as DataFusion alone plans it.
    async fn table_of(
        ctx: &datafusion::prelude::SessionContext,
        sql: &str,
        ours: bool,
    ) -> datafusion::error::Result<String> {
        let df = match ours {
            true => planned(ctx, sql, Default::default()).await?,
            false => ctx.sql(sql).await?,
        };
        let batches = df.collect().await?;
        Ok(datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string())
    }

    /// The first row `sql` gives, planned as [`planned`] plans a user's
    /// SQL, its cells joined by ` | ` (a NULL is empty).
    async fn first_row(ctx: &datafusion::prelude::SessionContext, sql: &str) -> String {
        let table = table_of(ctx, sql, true)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let row = table.lines().nth(3).unwrap_or_default();
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        cells.join(" | ")
    }

    /// Write a one-column Parquet file of `values` named `column` at `path`.
    fn write_file(path: &Path, column: &str, values: Vec<i64>) {
        use datafusion::arrow::array::Int64Array;
        use datafusion::arrow::record_batch::RecordBatch;
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new(
            column,
            DataType::Int64,
            false,
        )]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))]).unwrap();
        let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(path).unwrap(),
            schema,
            None,
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    /// After `read_committed`, a lake table is registered from the files
    /// the log lists, with the schema of its newest committed file: an
    /// orphan a crashed run left (written later, other columns) neither
    /// shows nor decides the columns. Other directories (a run's staging)
    /// are still listed as they are.
    #[tokio::test]
    async fn lake_tables_are_registered_from_the_log() {
        use crate::log::{FileAction, LakeState, PartitionState};
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path());
        let events = lake.path(crate::silver::EVENTS_DIR);
        let mut state = LakeState::default();
        for (date, version, n) in [("2024-03-01", 1, 3), ("2024-03-02", 2, 2)] {
            let rel = format!(
                "{}/event_date={date}/part-0.parquet",
                crate::silver::EVENTS_DIR
            );
            write_file(&lake.path(&rel), "x", (0..n).collect());
            let bytes = std::fs::metadata(lake.path(&rel)).unwrap().len();
            let mut files = crate::log::Files::default();
            files.insert(
                rel.clone(),
                FileAction::plain(
                    crate::silver::EVENTS_TABLE,
                    date,
                    rel.clone(),
                    n as u64,
                    bytes,
                ),
            );
            state
                .tables
                .entry(crate::silver::EVENTS_TABLE.into())
                .or_default()
                .insert(
                    date.into(),
                    PartitionState {
                        version,
                        last_removal: 0,
                        files,
                    },
                );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_file(
            &events.join("event_date=2024-03-03/orphan.parquet"),
            "y",
            vec![7; 5],
        );
        let engine = Engine::new(&EngineOptions::default()).unwrap();
        engine.read_committed(&lake, &state).unwrap();
        let committed = engine.committed.lock().unwrap().clone().unwrap();
        assert_eq!(
            committed.under(&events).unwrap(),
            vec![
                ("event_date=2024-03-01/part-0.parquet".to_string(), 1),
                ("event_date=2024-03-02/part-0.parquet".to_string(), 2)
            ]
        );
        assert_eq!(committed.under(&lake.path("_evlake/staging/x")), None);
        let ctx = engine.context(&lake).await.unwrap();
        let table = ctx.table(crate::silver::EVENTS_TABLE).await.unwrap();
        let names: Vec<&str> = table
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["x", "event_date"]);
        assert_eq!(table.count().await.unwrap(), 5);
        // A directory outside the log: what it holds.
        let staged = lake.path("_evlake/staging/run-1/events");
        write_file(
            &staged.join("event_date=2024-03-05/a.parquet"),
            "z",
            vec![1],
        );
        register_partitioned(&ctx, "staged", &staged, "event_date", None, Vec::new())
            .await
            .unwrap();
        let staged = ctx.table("staged").await.unwrap();
        assert_eq!(staged.schema().field(0).name(), "z");
        assert_eq!(staged.count().await.unwrap(), 1);
    }

    #[test]
    fn data_errors_are_told_from_the_machines() {
        use datafusion::arrow::error::ArrowError as A;
        use datafusion::error::DataFusionError as E;
        let arrow = |e: A| E::ArrowError(Box::new(e), None);
        for data in [
            arrow(A::CastError("Cannot cast string 'x' to Int32".into())),
            arrow(A::DivideByZero),
            E::Execution("json: not an object".into()),
            E::Context(
                "running".into(),
                Box::new(arrow(A::ArithmeticOverflow("i32".into()))),
            ),
            E::Shared(Arc::new(arrow(A::ParseError("1.2.3".into())))),
            // A filter pushed into the Parquet reader.
            E::ParquetError(Box::new(ParquetError::External(Box::new(A::CastError(
                "Cannot cast string 'u1' to Int32".into(),
            ))))),
            E::External(Box::new(E::Execution("bad value".into()))),
        ] {
            assert!(is_data_error(&data), "{data}");
        }
        for machine in [
            E::ResourcesExhausted("memory".into()),
            E::IoError(std::io::Error::other("disk")),
            arrow(A::IoError("read".into(), std::io::Error::other("disk"))),
            arrow(A::MemoryError("oom".into())),
            E::Internal("bug".into()),
            E::Plan("no such column".into()),
            E::ParquetError(Box::new(ParquetError::General("corrupt page".into()))),
            E::ParquetError(Box::new(ParquetError::External(Box::new(
                std::io::Error::other("disk"),
            )))),
        ] {
            assert!(!is_data_error(&machine), "{machine}");
        }
    }

    #[test]
    fn a_users_sql_failing_on_its_rows_is_a_usage_error_said_once() {
        use datafusion::arrow::error::ArrowError as A;
        use datafusion::error::DataFusionError as E;
        let data = anyhow::Error::new(E::ArrowError(Box::new(A::DivideByZero), None))
            .context("running its present");
        let e = user_sql_error(data, "model `m` (m.sql)");
        assert_eq!(crate::error::exit_code(&e), crate::error::EXIT_USAGE);
        assert_eq!(
            e.to_string(),
            "model `m` (m.sql): running its present: Arrow error: Divide by zero error \
             (an integer or decimal `/` or `%` by 0; `x / NULLIF(d, 0)` gives NULL instead)"
        );
        let cast = E::ArrowError(
            Box::new(A::CastError(
                "Cannot cast string 'x' to value of Int32 type".into(),
            )),
            None,
        );
        assert_eq!(
            user_sql_error(cast, "running t.sql").to_string(),
            "running t.sql: Arrow error: Cast error: Cannot cast string 'x' to value of \
             Int32 type (TRY_CAST gives NULL for a value that does not convert)"
        );
        // A constant's cast fails as the optimizer folds it: the rule is
        // not said.
        let folded = E::Context(
            "Optimizer rule 'simplify_expressions' failed".into(),
            Box::new(E::ArrowError(
                Box::new(A::CastError(
                    "Cannot cast string '12.5' to value of Int32 type".into(),
                )),
                None,
            )),
        );
        assert_eq!(
            user_sql_error(folded, "query failed").to_string(),
            "query failed: Arrow error: Cast error: Cannot cast string '12.5' to value of Int32 \
             type (TRY_CAST gives NULL for a value that does not convert)"
        );
        let disk = E::IoError(std::io::Error::other("disk"));
        let e = user_sql_error(disk, "query failed");
        assert_eq!(crate::error::exit_code(&e), crate::error::EXIT_RUNTIME);
        assert_eq!(e.to_string(), "query failed");
    }

    /// A lookup session's tables read no page index and a short footer
    /// (what `register_partitioned` hands the Parquet reader), and keep
    /// every other setting of a plain session.
    #[test]
    fn lookup_sessions_skip_the_page_index_and_read_short_footers() {
        let engine = Engine::new(&EngineOptions::default()).unwrap();
        let (plain, lookups) = (engine.bare().unwrap(), engine.lookups().unwrap());
        let (p, l) = (plain.state(), lookups.state());
        let (p, l) = (
            &p.table_options().parquet.global,
            &l.table_options().parquet.global,
        );
        assert!(p.enable_page_index);
        assert!(!l.enable_page_index);
        assert_eq!(p.metadata_size_hint, Some(512 << 10));
        assert_eq!(l.metadata_size_hint, Some(64 << 10));
        assert!(!l.schema_force_view_types);
        assert_eq!(l.compression, p.compression);
        for s in [&plain, &lookups] {
            assert_eq!(s.copied_config().batch_size(), BATCH_ROWS);
        }
        let small = Engine::new(&EngineOptions {
            memory_limit: Some(16 << 20),
            ..EngineOptions::default()
        })
        .unwrap();
        assert_eq!(small.bare().unwrap().copied_config().batch_size(), 8192);
    }

    /// Files a session writes have data pages of at most [`PAGE_ROWS`]
    /// rows, so a lookup of a few rows decompresses a few pages.
    #[tokio::test]
    async fn written_files_have_small_pages() {
        use datafusion::dataframe::DataFrameWriteOptions;
        use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
        let dir = tempfile::tempdir().unwrap();
        let ctx = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        let rows = 5 * PAGE_ROWS + 7;
        ctx.sql(&format!(
            "SELECT value AS n, concat('user-', CAST(value % 97 AS VARCHAR)) AS u \
             FROM generate_series(1, {rows})"
        ))
        .await
        .unwrap()
        .write_parquet(
            &format!("{}/", dir.path().display()),
            DataFrameWriteOptions::new().with_single_file_output(false),
            None,
        )
        .await
        .unwrap();
        let file = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "parquet"))
            .expect("a file");
        let options = datafusion::parquet::file::serialized_reader::ReadOptionsBuilder::new()
            .with_page_index()
            .build();
        let reader =
            SerializedFileReader::new_with_options(std::fs::File::open(&file).unwrap(), options)
                .unwrap();
        let index = reader.metadata().offset_index().expect("an offset index");
        for (g, group) in index.iter().enumerate() {
            let n = reader.metadata().row_group(g).num_rows() as usize;
            for column in group {
                let pages = column.page_locations();
                assert!(
                    pages.len() >= n.div_ceil(PAGE_ROWS),
                    "{} pages",
                    pages.len()
                );
                for w in pages.windows(2) {
                    assert!((w[1].first_row_index - w[0].first_row_index) as usize <= PAGE_ROWS);
                }
            }
        }
    }

    /// A typed table's JSON lookups stay above its event-type filter: they
    /// parse only the rows of that type.
    #[tokio::test]
    async fn json_lookups_are_not_moved_below_filters() {
        let ctx = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_type", DataType::Utf8, false),
            Field::new("properties", DataType::Utf8, true),
        ]));
        let t = datafusion::datasource::MemTable::try_new(schema, vec![vec![]]).unwrap();
        ctx.register_table("events", Arc::new(t)).unwrap();
        let plan = ctx
            .sql(
                "SELECT json_get_str(properties, 'order_id') AS o FROM events \
                 WHERE event_type = 'purchase'",
            )
            .await
            .unwrap()
            .into_optimized_plan()
            .unwrap();
        let text = plan.display_indent().to_string();
        let (above, below) = text.split_once("Filter:").expect("a filter");
        assert!(above.contains("json_get_str"), "{text}");
        assert!(!below.contains("json_get_str"), "{text}");
    }

    /// Each of another engine's functions evlake explains is one DataFusion
    /// does not have (its guess by spelling is replaced), and each
    /// expression the explanation offers plans and runs here.
    #[tokio::test]
    async fn similar_to_patterns_become_the_regexes_sql_means() {
        let ctx = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        // SQL's (PostgreSQL's) answers, some from its manual.
        for (text, pattern, matches) in [
            ("abc", "abc", true),
            ("abc", "a", false),
            ("abc", "%(b|d)%", true),
            ("abc", "(b|c)%", false),
            ("u1", "u[0-9]", true),
            ("u15", "u[0-9]", false),
            ("u1", "u%", true),
            ("u1", "u_", true),
            ("ab", "a|b", false),
            ("a", "a|b", true),
            ("a.b", "a.b", true),
            ("axb", "a.b", false),
            ("50%", "50\\%", true),
            ("500", "50\\%", false),
            ("x$", "x$", true),
            ("^x", "^x", true),
            ("a\\b", "a\\\\b", true),
            ("a_", "[_a]%", true),
            ("-", "[a-c]", false),
            ("aaa", "a+", true),
            ("", "%", true),
        ] {
            let regex = similar_to_regex(pattern, '\\');
            let sql = format!(
                "SELECT regexp_like('{}', '{}') AS m",
                text.replace('\'', "''"),
                regex.replace('\'', "''")
            );
            let rows = ctx
                .sql(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let m = datafusion::arrow::array::AsArray::as_boolean(rows[0].column(0)).value(0);
            assert_eq!(m, matches, "{text:?} SIMILAR TO {pattern:?} as {regex:?}");
        }
    }

    /// The parts of a duration (`ts2 - ts1`), by `date_part` and by
    /// `EXTRACT`, are PostgreSQL's and DuckDB's: the seconds with their
    /// fraction for 'epoch', the fields for the others.
    #[tokio::test]
    async fn parts_of_a_duration_are_fields_and_epoch_keeps_the_fraction() {
        let ctx = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        ctx.sql(
            "CREATE VIEW d AS SELECT * FROM (VALUES \
             (1, TIMESTAMP '2024-03-20 11:40:05.876544' - TIMESTAMP '2024-03-15 10:00:00'), \
             (2, TIMESTAMP '2024-03-15 10:00:00' - TIMESTAMP '2024-03-20 11:40:05.876544'), \
             (3, TIMESTAMP '2024-03-15 10:00:00.25' - TIMESTAMP '2024-03-15 10:00:00'), \
             (4, NULL)) AS v(n, d)",
        )
        .await
        .unwrap();
        let table = |sql: &str| {
            let ctx = ctx.clone();
            let sql = sql.to_string();
            async move {
                let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
                datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                    .unwrap()
                    .to_string()
            }
        };
        let parts = "+----------------+----+----+-----+----+-------+----------+-------------+
| e              | dy | h  | m   | s  | ms    | us       | ns          |
+----------------+----+----+-----+----+-------+----------+-------------+
| 438005.876544  | 5  | 1  | 40  | 5  | 5876  | 5876544  | 5876544000  |
| -438005.876544 | -5 | -1 | -40 | -5 | -5876 | -5876544 | -5876544000 |
| 0.25           | 0  | 0  | 0   | 0  | 250   | 250000   | 250000000   |
|                |    |    |     |    |       |          |             |
+----------------+----+----+-----+----+-------+----------+-------------+";
        assert_eq!(
            table(
                "SELECT date_part('epoch', d) e, date_part('day', d) dy, date_part('hour', d) h, \
                 date_part('minutes', d) m, date_part('second', d) s, datepart('ms', d) ms, \
                 date_part('microsecond', d) us, date_part('nanosecond', d) ns FROM d ORDER BY n"
            )
            .await,
            parts
        );
        assert_eq!(
            table(
                "SELECT extract(epoch FROM d) e, extract(day FROM d) dy, extract(hour FROM d) h, \
                 extract(minute FROM d) m, extract(second FROM d) s, extract(millisecond FROM d) \
                 ms, extract(microsecond FROM d) us, extract(nanosecond FROM d) ns FROM d ORDER \
                 BY n"
            )
            .await,
            parts
        );
        // Days that do not fit the Int32 DataFusion types them as are
        // NULL, not wrapped.
        assert_eq!(
            table(
                "SELECT date_part('day', arrow_cast(9223372036854775807, 'Duration(Second)')) \
                 AS far, date_part('hour', arrow_cast(90000, 'Duration(Second)')) AS h"
            )
            .await,
            "+-----+---+
| far | h |
+-----+---+
|     | 1 |
+-----+---+"
        );
        // Other arguments are DataFusion's.
        assert_eq!(
            table(
                "SELECT date_part('epoch', TIMESTAMP '1970-01-01 00:00:01.5') e, \
                 extract(hour FROM TIMESTAMP '2024-03-15 10:07:05') h, date_part('second', \
                 INTERVAL '1 day 2 hours 3 minutes 4.5 seconds') s"
            )
            .await,
            "+-----+----+---+
| e   | h  | s |
+-----+----+---+
| 1.5 | 10 | 4 |
+-----+----+---+"
        );
        // DataFusion 55's own date_part drops the fraction and gives the
        // whole duration in hours (when this fails, evlake's can go).
        ctx.register_udf(
            datafusion::functions::datetime::date_part()
                .as_ref()
                .clone()
                .with_aliases(["datafusion_date_part"]),
        );
        assert_eq!(
            table(
                "SELECT datafusion_date_part('epoch', d) e, datafusion_date_part('hour', d) h \
                 FROM d WHERE n = 1"
            )
            .await,
            "+----------+-----+
| e        | h   |
+----------+-----+
| 438005.0 | 121 |
+----------+-----+"
        );
    }

    /// A time written without seconds, or with a one-digit hour, month
    /// or day, is read as PostgreSQL, DuckDB and Spark read it wherever a
    /// timestamp is meant (cast, compared, given to `to_timestamp`),
    /// with the column named as written; the same text compared with
    /// text stays as it is.
    #[tokio::test]
    async fn times_without_seconds_are_read_as_other_engines_read_them() {
        assert_eq!(
            full_time("2024-03-15 10:00").as_deref(),
            Some("2024-03-15 10:00:00")
        );
        assert_eq!(
            full_time("2024-3-5T9:05Z").as_deref(),
            Some("2024-03-05T09:05:00Z")
        );
        assert_eq!(
            full_time("2024-03-15 10:00+02:00").as_deref(),
            Some("2024-03-15 10:00:00+02:00")
        );
        assert_eq!(full_time("2024-03-15 10:00:00"), None);
        assert_eq!(full_time("2024-03-15 10:0"), None);
        assert_eq!(full_time("page 10:00"), None);
        let ctx = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        ctx.sql(
            "CREATE VIEW t AS SELECT * FROM (VALUES \
             (TIMESTAMP '2024-03-15 09:59:59', '2024-03-15 10:00'), \
             (TIMESTAMP '2024-03-15 10:00:00', 'a'), \
             (TIMESTAMP '2024-03-15 10:30:00', 'b')) AS v(ts, s)",
        )
        .await
        .unwrap();
        let answer = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                let df = checked_plan(sql, ctx.sql(sql).await.unwrap()).unwrap();
                let batches = df.collect().await.unwrap();
                datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                    .unwrap()
                    .to_string()
            }
        };
        for (sql, n) in [
            (
                "SELECT count(*) AS n FROM t WHERE ts >= '2024-03-15 10:00'",
                2,
            ),
            ("SELECT count(*) AS n FROM t WHERE '2024-3-15 9:59' > ts", 0),
            (
                "SELECT count(*) AS n FROM t WHERE ts BETWEEN '2024-03-15 10:00' AND \
                 '2024-03-15 10:30Z'",
                2,
            ),
            (
                "SELECT count(*) AS n FROM t WHERE ts IN ('2024-03-15 10:30', '2024-03-15 11:00:00')",
                1,
            ),
            (
                "SELECT count(*) AS n FROM t WHERE ts < TIMESTAMP '2024-03-15 10:00'",
                1,
            ),
            (
                "SELECT count(*) AS n FROM t WHERE ts < '2024-03-15 10:00'::timestamp",
                1,
            ),
            (
                "SELECT count(*) AS n FROM t WHERE ts < to_timestamp('2024-03-15 10:00')",
                1,
            ),
            (
                "SELECT count(*) AS n FROM t WHERE ts < (SELECT max(TIMESTAMP \
                 '2024-03-15 10:30') FROM t)",
                2,
            ),
            // Text compared with text is left alone.
            (
                "SELECT count(*) AS n FROM t WHERE s = '2024-03-15 10:00'",
                1,
            ),
        ] {
            assert_eq!(
                answer(sql).await,
                format!("+---+\n| n |\n+---+\n| {n} |\n+---+"),
                "{sql}"
            );
        }
        assert_eq!(
            answer("SELECT TRY_CAST('2024-03-15 10:00' AS TIMESTAMP)").await,
            "+--------------------------+
| Utf8(\"2024-03-15 10:00\") |
+--------------------------+
| 2024-03-15T10:00:00      |
+--------------------------+"
        );
    }

    /// A bare engine's context with a view `t` of one column, `ts`, of
    /// the UTC times `times` (`"2024-03-14 20:00:00"`), as the lake's are.
    async fn utc_times(times: &[&str]) -> datafusion::prelude::SessionContext {
        let ctx = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        let rows: Vec<String> = times.iter().map(|t| format!("(TIMESTAMP '{t}')")).collect();
        ctx.sql(&format!(
            "CREATE VIEW t AS SELECT arrow_cast(ts, 'Timestamp(Microsecond, Some(\"UTC\"))') AS \
             ts FROM (VALUES {}) AS v(ts)",
            rows.join(", ")
        ))
        .await
        .unwrap();
        ctx
    }

    /// The session's time zone is UTC: `TIMESTAMPTZ` and `to_timestamp`
    /// are UTC instants, so an epoch's time in New York is New York's
    /// clock then (DataFusion 55 gave both no zone: the CAST dropped the
    /// offset's meaning from the type, and the epoch's UTC clock time was
    /// read as a New York clock time, 03:50 UTC).
    #[tokio::test]
    async fn the_sessions_time_zone_is_utc() {
        let ctx = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        assert_eq!(
            table_of(
                &ctx,
                "SELECT arrow_typeof(CAST('2024-03-15 10:00:00+02:00' AS TIMESTAMPTZ)) AS a, \
                 CAST('2024-03-15 10:00:00+02:00' AS TIMESTAMPTZ) AS b, to_timestamp(1710460200) \
                 AT TIME ZONE 'America/New_York' AS c, arrow_typeof(to_timestamp_millis(0)) AS d",
                true
            )
            .await
            .unwrap(),
            "+----------------------+----------------------+---------------------+----------------------+
| a                    | b                    | c                   | d                    |
+----------------------+----------------------+---------------------+----------------------+
| Timestamp(ns, \"UTC\") | 2024-03-15T08:00:00Z | 2024-03-14T19:50:00 | Timestamp(ms, \"UTC\") |
+----------------------+----------------------+---------------------+----------------------+"
        );
    }

    /// A WHERE comparison of a zone's clock time of a time with a literal
    /// also bounds the time itself, two days wider, so files can be
    /// skipped by their statistics; the answer is the comparison's, even
    /// in the zones furthest from UTC (+14:00 and -11:00).
    #[tokio::test]
    async fn a_clock_time_filter_also_bounds_the_time_itself() {
        let ctx = utc_times(&[
            "2024-03-14 20:00:00",
            "2024-03-15 21:00:00",
            "2024-03-20 00:00:00",
        ])
        .await;
        for (sql, n) in [
            // 20:00 UTC on the 14th is 10:00 on the 15th in Kiritimati,
            // 21:00 UTC on the 15th is 10:00 there in Pago Pago.
            (
                "SELECT count(*) AS n FROM t WHERE ts AT TIME ZONE 'Pacific/Kiritimati' >= \
                 TIMESTAMP '2024-03-15 10:00:00'",
                3,
            ),
            (
                "SELECT count(*) AS n FROM t WHERE TIMESTAMP '2024-03-15 10:00:00' >= ts AT \
                 TIME ZONE 'Pacific/Pago_Pago'",
                2,
            ),
            (
                "SELECT count(*) AS n FROM t WHERE ts AT TIME ZONE 'Pacific/Pago_Pago' = \
                 '2024-03-15 10:00:00'",
                1,
            ),
            (
                "SELECT count(*) AS n FROM t WHERE ts AT TIME ZONE 'Pacific/Pago_Pago' < \
                 TIMESTAMP '2024-03-15 10:00:01'",
                2,
            ),
            (
                "SELECT count(*) AS n FROM t WHERE ts AT TIME ZONE 'Pacific/Kiritimati' > \
                 TIMESTAMP '2024-03-15 09:59:59'",
                3,
            ),
            (
                "SELECT count(*) AS n FROM t WHERE ts AT TIME ZONE 'Pacific/Kiritimati' \
                 BETWEEN '2024-03-15 10:00' AND DATE '2024-03-16'",
                1,
            ),
        ] {
            assert_eq!(
                table_of(&ctx, sql, true).await.unwrap(),
                format!("+---+\n| n |\n+---+\n| {n} |\n+---+"),
                "{sql}"
            );
            let plan = planned(&ctx, sql, Default::default())
                .await
                .unwrap()
                .into_optimized_plan()
                .unwrap();
            // The time itself against a UTC instant, beside the clock
            // time against the literal.
            let plan = plan.display_indent().to_string();
            let filter = plan.lines().find(|l| l.contains("Filter:")).unwrap();
            assert!(filter.contains(", Some(\"UTC\"))"), "{sql}: {plan}");
        }
    }

    /// A CAST that changes values stays where it is in a comparison:
    /// DataFusion 55 moved it to the literal's side, as though it kept
    /// every value, and answered each of these with the count of rows
    /// equal to the literal itself.
    #[tokio::test]
    async fn a_cast_that_changes_values_is_not_moved_across_a_comparison() {
        use DataType::*;
        use datafusion::arrow::datatypes::TimeUnit;
        let ctx = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        ctx.sql(
            "CREATE VIEW t AS SELECT CAST(a AS DECIMAL(18,2)) AS amount, CAST(n AS BIGINT) AS n, \
             CAST(d AS DECIMAL(10,3)) AS d FROM (VALUES (19.38, 1000, 1.234), (19.00, -1000, \
             1.26), (20.50, 3, 1.2)) AS v(a, n, d)",
        )
        .await
        .unwrap();
        for (sql, ours, datafusion) in [
            // 19.38 and 19.00 are 19 as integers; DataFusion asked for 19.00.
            (
                "SELECT count(*) FROM t WHERE CAST(amount AS BIGINT) = 19",
                2,
                1,
            ),
            (
                "SELECT count(*) FROM t WHERE CAST(amount AS INT) IN (19, 21)",
                2,
                1,
            ),
            // -1000 is no TINYINT: NULL, not less than 5.
            (
                "SELECT count(*) FROM t WHERE TRY_CAST(n AS TINYINT) < 5",
                1,
                2,
            ),
            (
                "SELECT count(*) FROM t WHERE TRY_CAST(n AS DECIMAL(3,0)) < 5",
                1,
                2,
            ),
            // 1.234 is 1.2 with one fraction digit, and 1.26 is 1.3.
            (
                "SELECT count(*) FROM t WHERE CAST(d AS DECIMAL(10,1)) = 1.2",
                2,
                1,
            ),
            (
                "SELECT count(*) FROM t WHERE CAST(d AS DECIMAL(10,1)) >= 1.3",
                1,
                0,
            ),
        ] {
            let count = |table: String| table.lines().nth(3).unwrap().replace(['|', ' '], "");
            assert_eq!(
                count(table_of(&ctx, sql, true).await.unwrap()),
                ours.to_string(),
                "{sql}"
            );
            assert_eq!(
                count(table_of(&ctx, sql, false).await.unwrap()),
                datafusion.to_string(),
                "DataFusion alone: {sql}"
            );
        }
        // Casts that keep every value are left to DataFusion, which may
        // move them.
        for (from, to, changes) in [
            (Decimal128(18, 2), Int64, true),
            (Decimal128(18, 0), Int64, false),
            (Decimal128(19, 0), Int64, true),
            (Decimal128(18, 0), UInt64, true),
            (Decimal128(18, 2), Decimal128(20, 4), false),
            (Decimal128(18, 2), Decimal128(18, 4), true),
            (Int64, Decimal128(19, 0), false),
            (Int64, Decimal128(20, 2), true),
            (Int32, Int64, false),
            (Int64, Int32, true),
            (UInt32, Int64, false),
            (Int32, UInt64, true),
            (
                Timestamp(TimeUnit::Microsecond, None),
                Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            (
                Timestamp(TimeUnit::Microsecond, None),
                Timestamp(TimeUnit::Microsecond, Some("Europe/Berlin".into())),
                true,
            ),
            (Utf8, Int64, false),
        ] {
            assert_eq!(changes_values(&from, &to), changes, "{from} to {to}");
        }
    }

    /// `AT TIME ZONE` (evlake's `timezone(zone, time)`) of a zoned time is
    /// the clock time in that zone, with no zone, as in PostgreSQL and
    /// DuckDB; of a time with no zone, the instant that the zone's clock
    /// showed it, in UTC.
    #[tokio::test]
    async fn a_zoned_time_at_a_time_zone_is_that_zones_clock() {
        let ctx = utc_times(&[
            "2024-03-14 23:50:00",
            "2024-03-15 00:02:00",
            "2024-11-03 06:30:00",
        ])
        .await;
        let answer = |sql: &'static str| {
            let ctx = ctx.clone();
            async move { table_of(&ctx, sql, true).await.map_err(|e| e.to_string()) }
        };
        // Two events of one New York evening are one New York day;
        // DataFusion 55 cut days at UTC's midnight, 8 p.m. there.
        assert_eq!(
            answer(
                "SELECT date_bin(INTERVAL '1 day', ts AT TIME ZONE 'America/New_York') AS d, \
                 count(*) AS n FROM t GROUP BY 1 ORDER BY 1"
            )
            .await
            .unwrap(),
            "+---------------------+---+
| d                   | n |
+---------------------+---+
| 2024-03-14T00:00:00 | 2 |
| 2024-11-03T00:00:00 | 1 |
+---------------------+---+"
        );
        // The clock's time, not UTC's, when cast to a time with no zone.
        assert_eq!(
            answer(
                "SELECT ts AT TIME ZONE 'Asia/Tokyo' AS tokyo, CAST(ts AT TIME ZONE \
                 'America/New_York' AS TIMESTAMP) AS new_york FROM t ORDER BY ts"
            )
            .await
            .unwrap(),
            "+---------------------+---------------------+
| tokyo               | new_york            |
+---------------------+---------------------+
| 2024-03-15T08:50:00 | 2024-03-14T19:50:00 |
| 2024-03-15T09:02:00 | 2024-03-14T20:02:00 |
| 2024-11-03T15:30:00 | 2024-11-03T01:30:00 |
+---------------------+---------------------+"
        );
        // Times that New York's clock skips (2:30 on March 10) or shows
        // twice (1:30 on November 3) are compared with its clock; they
        // failed in DataFusion 55's cast of them to New York's instants.
        assert_eq!(
            answer(
                "SELECT count(*) FILTER (WHERE ts AT TIME ZONE 'America/New_York' < \
                 TIMESTAMP '2024-03-10 02:30:00') AS skipped, count(*) FILTER (WHERE ts \
                 AT TIME ZONE 'America/New_York' >= TIMESTAMP '2024-11-03 01:30:00') AS twice \
                 FROM t"
            )
            .await
            .unwrap(),
            "+---------+-------+
| skipped | twice |
+---------+-------+
| 0       | 1     |
+---------+-------+"
        );
        // A time with no zone is read as the zone's clock time, and the
        // instant is kept in UTC; given another zone, it is shown on that
        // zone's clock. Compared with an instant, or with a time with no
        // zone (read as UTC's), it is that instant: 22:50 and 23:02 UTC
        // on March 14, and 5:30 UTC on November 3. DataFusion 55 moved its
        // cast to the other side of the comparison as though the cast
        // kept the value, and counted 3 and 2.
        assert_eq!(
            answer(
                "SELECT TIMESTAMP '2024-03-15 09:00' AT TIME ZONE 'Europe/Berlin' AS berlin, \
                 (TIMESTAMP '2024-03-15 09:00' AT TIME ZONE 'Europe/Berlin') AT TIME ZONE \
                 'Asia/Tokyo' AS tokyo, (SELECT count(*) FROM t WHERE CAST(ts AS TIMESTAMP) \
                 AT TIME ZONE 'Europe/Berlin' >= TIMESTAMP '2024-03-15 00:00:00') AS n, \
                 (SELECT count(*) FROM t WHERE CAST(ts AS TIMESTAMP) AT TIME ZONE \
                 'Europe/Berlin' >= arrow_cast(TIMESTAMP '2024-03-15 00:00:00', \
                 'Timestamp(Microsecond, Some(\"UTC\"))')) AS m"
            )
            .await
            .unwrap(),
            "+----------------------+---------------------+---+---+
| berlin               | tokyo               | n | m |
+----------------------+---------------------+---+---+
| 2024-03-15T08:00:00Z | 2024-03-15T17:00:00 | 1 | 1 |
+----------------------+---------------------+---+---+"
        );
        // Planned as `timezone(zone, time)`, typed as PostgreSQL types it:
        // an instant less a clock time plans, two items have two names,
        // and the zone may differ from row to row. DataFusion 55 failed
        // on the first two.
        assert_eq!(
            answer(
                "SELECT ts AT TIME ZONE 'UTC', ts AT TIME ZONE 'Asia/Tokyo', ts - (ts AT TIME \
                 ZONE 'America/New_York') AS behind, timezone(CASE WHEN ts < '2024-11-01' THEN \
                 'Asia/Kolkata' END, ts) AS kolkata FROM t ORDER BY ts"
            )
            .await
            .unwrap(),
            "+----------------------------+-----------------------------------+----------+---------------------+
| timezone(Utf8(\"UTC\"),t.ts) | timezone(Utf8(\"Asia/Tokyo\"),t.ts) | behind   | kolkata             |
+----------------------------+-----------------------------------+----------+---------------------+
| 2024-03-14T23:50:00        | 2024-03-15T08:50:00               | PT14400S | 2024-03-15T05:20:00 |
| 2024-03-15T00:02:00        | 2024-03-15T09:02:00               | PT14400S | 2024-03-15T05:32:00 |
| 2024-11-03T06:30:00        | 2024-11-03T15:30:00               | PT18000S |                     |
+----------------------------+-----------------------------------+----------+---------------------+"
        );
        assert_eq!(
            answer("SELECT timezone(CAST(ts AS VARCHAR), ts) FROM t").await,
            Err(
                "Execution error: no time zone is named '2024-03-14T23:50:00Z': a zone is an \
                 IANA name, written as it is ('UTC', 'Europe/Berlin', 'America/Los_Angeles'), \
                 or an offset ('+02:00')"
                    .to_string()
            )
        );
        // Clock times New York's clock shows twice, or skips, are read
        // as PostgreSQL and DuckDB read them: the later instant, and the
        // offset from before the change. DataFusion 55 failed on both.
        assert_eq!(
            answer(
                "SELECT TIMESTAMP '2024-11-03 01:30:00' AT TIME ZONE 'America/New_York' AS \
                 twice, TIMESTAMP '2024-03-10 02:30:00' AT TIME ZONE 'America/New_York' AS \
                 skipped, TIMESTAMP '2024-03-15 09:00:00.123456' AT TIME ZONE '+05:30' AS \
                 offset"
            )
            .await
            .unwrap(),
            "+----------------------+----------------------+-----------------------------+
| twice                | skipped              | offset                      |
+----------------------+----------------------+-----------------------------+
| 2024-11-03T06:30:00Z | 2024-03-10T07:30:00Z | 2024-03-15T03:30:00.123456Z |
+----------------------+----------------------+-----------------------------+"
        );
    }

    /// An aggregate or window function of a CAST is named with the CAST's
    /// type, so it and the same function of the column itself are two
    /// columns, aliased or not: DataFusion names `CAST(x AS DATE)` as `x`,
    /// and such a query failed on a duplicate name.
    #[tokio::test]
    async fn an_aggregate_of_a_cast_is_named_apart_from_one_of_the_column() {
        let ctx = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        ctx.sql(
            "CREATE VIEW t AS SELECT * FROM (VALUES (TIMESTAMP '2024-03-15 10:00:00', 1), \
             (TIMESTAMP '2024-03-16 09:00:00', 2)) AS v(ts, x)",
        )
        .await
        .unwrap();
        let answer = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                datafusion::arrow::util::pretty::pretty_format_batches(
                    &ctx.sql(sql).await.unwrap().collect().await.unwrap(),
                )
                .unwrap()
                .to_string()
            }
        };
        assert_eq!(
            answer("SELECT min(ts) AS first_seen, min(CAST(ts AS DATE)) AS first_day FROM t").await,
            "+---------------------+------------+
| first_seen          | first_day  |
+---------------------+------------+
| 2024-03-15T10:00:00 | 2024-03-15 |
+---------------------+------------+"
        );
        assert_eq!(
            answer(
                "SELECT sum(x), sum(x::double), sum(TRY_CAST(x AS DOUBLE) * 2) FROM t HAVING \
                 sum(x::double) > 1"
            )
            .await,
            "+----------+---------------------------+------------------------------------------+
| sum(t.x) | sum(CAST(t.x AS Float64)) | sum(TRY_CAST(t.x AS Float64) * Int64(2)) |
+----------+---------------------------+------------------------------------------+
| 3        | 3.0                       | 6.0                                      |
+----------+---------------------------+------------------------------------------+"
        );
        assert_eq!(
            answer(
                "SELECT x, lag(x) OVER (ORDER BY x) AS a, lag(CAST(x AS DOUBLE)) OVER (ORDER BY \
                 x) AS b FROM t"
            )
            .await,
            "+---+---+-----+
| x | a | b   |
+---+---+-----+
| 1 |   |     |
| 2 | 1 | 1.0 |
+---+---+-----+"
        );
        // A CAST of a CAST is named as written, once.
        let nested = ctx
            .sql("SELECT max(CAST(CAST(x AS INT) AS DOUBLE)) FROM t")
            .await
            .unwrap();
        assert_eq!(
            nested.schema().field(0).name(),
            "max(CAST(CAST(t.x AS Int32) AS Float64))"
        );
    }

    /// An integer `+`, `-` or `*` beyond its type's range fails, where
    /// DataFusion's operator wraps round, anywhere in a query; within the
    /// range it gives what the operator gives, with the same name, type
    /// and nullability, and other types' arithmetic is as it was.
    #[tokio::test]
    async fn integer_arithmetic_fails_on_overflow_instead_of_wrapping() {
        let ctx = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        ctx.sql(
            "CREATE VIEW t AS SELECT * FROM (VALUES (CAST(9223372036854775806 AS BIGINT), \
             CAST(100 AS TINYINT), CAST(2 AS INT), 1.5), (CAST(-9223372036854775807 AS BIGINT), \
             CAST(27 AS TINYINT), CAST(NULL AS INT), 2.5)) AS v(x, small, n, f)",
        )
        .await
        .unwrap();
        let planned = |sql: &'static str| {
            let ctx = ctx.clone();
            async move { checked_plan(sql, ctx.sql(sql).await.unwrap()).unwrap() }
        };
        // The overflow `sql` fails on, a data error, with its hint.
        let overflow = |sql: &'static str| async move {
            let e = planned(sql).await.collect().await.unwrap_err();
            assert!(is_data_error(&e), "{sql}: {e}");
            let said = format!("{e}{}", data_error_hint(&e.to_string()));
            assert!(
                said.contains("Arithmetic overflow: Overflow happened on: "),
                "{sql}: {said}"
            );
            said
        };
        for sql in [
            "SELECT x + 2 FROM t",
            "SELECT x - 2 FROM t WHERE n IS NULL",
            "SELECT x * n FROM t",
            "SELECT small + small FROM t",
            "SELECT count(*) FROM t WHERE x + 2 > 0",
            "SELECT sum(x) FROM t GROUP BY x * 3",
            "SELECT n FROM t WHERE n IN (SELECT CAST(x + 2 AS INT) FROM t)",
            "SELECT sum(n) OVER (ORDER BY x * 2) FROM t",
            "SELECT a.n FROM t AS a JOIN t AS b ON a.x + 2 = b.x",
        ] {
            overflow(sql).await;
        }
        // Within range: the answer, the column's name, type and nullability
        // are the operator's.
        let sql =
            "SELECT x + 1, x - n AS d, small * 1, n * 3, f * 2, small + 0.5 FROM t ORDER BY x";
        let checked = planned(sql).await;
        let plain = ctx.sql(sql).await.unwrap();
        assert_eq!(checked.schema(), plain.schema());
        let text = |batches: Vec<datafusion::arrow::record_batch::RecordBatch>| {
            datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string()
        };
        assert_eq!(
            text(checked.collect().await.unwrap()),
            text(plain.collect().await.unwrap())
        );
        assert_eq!(
            text(
                planned("SELECT x - 1 AS d, n * 3 AS m FROM t WHERE n IS NOT NULL")
                    .await
                    .collect()
                    .await
                    .unwrap()
            ),
            "+---------------------+---+\n| d                   | m |\n+---------------------+---+\n\
             | 9223372036854775805 | 6 |\n+---------------------+---+"
        );
        // A decimal `+`, `-` or `*` typed 38 digits whose value has more
        // fails too, saying to use fewer fraction digits (arrow checks
        // only that it fits 128 bits: DataFusion's showed another number).
        ctx.sql(
            "CREATE VIEW dt AS SELECT * FROM (VALUES (CAST('1000000000' AS DECIMAL(38, 10)), \
             CAST('99999999999999999999999999999999999999' AS DECIMAL(38, 0)), \
             CAST('99999999.99' AS DECIMAL(10, 2)))) AS v(p, big, m)",
        )
        .await
        .unwrap();
        for (sql, wrong) in [
            ("SELECT p * (p + 200000000) FROM dt", "120000000000000000.0"),
            (
                "SELECT big + 1 FROM dt",
                "10000000000000000000000000000000000000 ",
            ),
            (
                "SELECT -big - 1 FROM dt",
                "-10000000000000000000000000000000000000 ",
            ),
        ] {
            let said = overflow(sql).await;
            assert!(
                said.contains(" of decimals: ")
                    && said.contains("use fewer fraction digits, `CAST(x AS DECIMAL(38, 4))`"),
                "{sql}: {said}"
            );
            let plain = text(ctx.sql(sql).await.unwrap().collect().await.unwrap());
            assert!(plain.contains(wrong), "{sql}: {plain}");
        }
        let sql = "SELECT p * m, big - 1, p + 1, m * m, m + 1, m * 2 FROM dt";
        let checked = planned(sql).await;
        let plain = ctx.sql(sql).await.unwrap();
        assert_eq!(checked.schema(), plain.schema());
        assert_eq!(
            text(checked.collect().await.unwrap()),
            text(plain.collect().await.unwrap())
        );
    }

    /// A correlated count subquery under a UNION or an INTERSECT runs,
    /// with SQL's answer (DuckDB's, by hand), where DataFusion 55 alone
    /// stops on its own schema check.
    #[tokio::test]
    async fn a_count_subquery_under_a_union_runs() {
        let ours = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        let theirs = datafusion::prelude::SessionContext::new();
        let sql = "WITH t(k) AS (VALUES (1), (2)), u(k, v) AS (VALUES (1, 5), (1, NULL)) SELECT \
                   k, (SELECT count(u.v) FROM u WHERE u.k = t.k) AS c FROM t UNION SELECT k, 0 \
                   FROM t INTERSECT SELECT k, 0 FROM t ORDER BY k, c";
        let e = theirs.sql(sql).await.unwrap().collect().await.unwrap_err();
        assert!(
            e.to_string()
                .contains("Physical input schema should be the same"),
            "{e}"
        );
        assert_eq!(
            table_of(&ours, sql, true).await.unwrap(),
            "+---+---+\n| k | c |\n+---+---+\n| 1 | 0 |\n| 1 | 1 |\n| 2 | 0 |\n+---+---+"
        );
    }

    /// A subquery that takes the top row of the outer row's rows (`ORDER
    /// BY ... LIMIT 1`) runs, as its first_value aggregate, with the
    /// answer SQL gives (DuckDB's, by hand) and its column's name.
    #[tokio::test]
    async fn top_row_subqueries_run_as_first_value() {
        let ctx = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        for view in [
            "CREATE VIEW u AS SELECT * FROM (VALUES ('u1'), ('u2'), ('u3')) t(user_id)",
            "CREATE VIEW e AS SELECT user_id, page, CAST(ts AS BIGINT) AS ts FROM (VALUES \
             ('u1', '/a', 1), ('u1', '/b', 3), ('u1', '/c', NULL), ('u2', '/d', 2)) t(user_id, \
             page, ts)",
        ] {
            ctx.sql(view).await.unwrap();
        }
        let top = "SELECT u.user_id, (SELECT e.page FROM e WHERE e.user_id = u.user_id ORDER BY \
                   e.ts DESC LIMIT 1) AS last_page FROM u ORDER BY 1";
        // DataFusion 55 plans it and cannot run it (when this fails, the
        // rewrite can go).
        let e = ctx.sql(top).await.unwrap().collect().await.unwrap_err();
        assert!(
            e.to_string()
                .contains("Physical plan does not support logical expression ScalarSubquery"),
            "{e}"
        );
        for (sql, expected) in [
            // DESC puts NULLs first, as in SQL.
            (
                top,
                "+---------+-----------+
| user_id | last_page |
+---------+-----------+
| u1      | /c        |
| u2      | /d        |
| u3      |           |
+---------+-----------+",
            ),
            // Unnamed, by position, in WHERE; the column's name is kept.
            (
                "SELECT u.user_id, (SELECT e.page FROM e WHERE e.user_id = u.user_id ORDER BY \
                 e.ts NULLS LAST, 1 LIMIT 1) FROM u WHERE (SELECT e.ts FROM e WHERE e.user_id = \
                 u.user_id ORDER BY 1 LIMIT 1) < 3 ORDER BY 1",
                "+---------+------+
| user_id | page |
+---------+------+
| u1      | /a   |
| u2      | /d   |
+---------+------+",
            ),
            // The name another item has is left to DataFusion.
            (
                "SELECT u.user_id, (SELECT e.user_id FROM e WHERE e.user_id = u.user_id ORDER BY \
                 e.ts LIMIT 1) FROM u ORDER BY 1",
                "+---------+-------------------------------------------------------+
| user_id | first_value(e.user_id) ORDER BY [e.ts ASC NULLS LAST] |
+---------+-------------------------------------------------------+
| u1      | u1                                                    |
| u2      | u2                                                    |
| u3      |                                                       |
+---------+-------------------------------------------------------+",
            ),
        ] {
            let got = table_of(&ctx, sql, true).await;
            assert_eq!(got.as_deref().ok(), Some(expected), "{sql}: {got:?}");
        }
    }

    /// The merged key of a RIGHT or FULL JOIN with USING or NATURAL is
    /// SQL's `COALESCE(left.k, right.k)` wherever the query names it
    /// alone; each side's own `k` stays its own; naming both is refused.
    #[tokio::test]
    async fn right_and_full_using_joins_merge_their_key() {
        let ctx = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        for view in [
            "CREATE VIEW a AS SELECT CAST(c1 AS BIGINT) AS k, c2 AS v FROM (VALUES (1, 'a1'), \
             (2, 'a2'), (NULL, 'a0')) t(c1, c2)",
            "CREATE VIEW b AS SELECT CAST(c1 AS BIGINT) AS k, c2 AS w FROM (VALUES (1, 'b1'), \
             (4, 'b4'), (4, 'b44')) t(c1, c2)",
            "CREATE VIEW c AS SELECT CAST(c1 AS INT) AS k, c2 AS v FROM (VALUES (4, 'c4'), (6, \
             'c6')) t(c1, c2)",
        ] {
            ctx.sql(view).await.unwrap();
        }
        let answer = |sql: &'static str, ours: bool| table_of(&ctx, sql, ours);
        let grouped = "SELECT k, count(*) AS n FROM a FULL JOIN b USING (k) GROUP BY k ORDER BY k";
        // DataFusion 55's own answer puts b's two rows of 4 under NULL
        // (when this fails, `using_keys` can go).
        assert!(
            answer(grouped, false).await.unwrap().contains("|   | 3 |"),
            "{}",
            answer(grouped, false).await.unwrap()
        );
        for (sql, expected) in [
            (
                grouped,
                "+---+---+
| k | n |
+---+---+
| 1 | 1 |
| 2 | 1 |
| 4 | 2 |
|   | 1 |
+---+---+",
            ),
            (
                "SELECT * FROM a RIGHT JOIN b USING (k) ORDER BY w",
                "+---+----+-----+
| k | v  | w   |
+---+----+-----+
| 1 | a1 | b1  |
| 4 |    | b4  |
| 4 |    | b44 |
+---+----+-----+",
            ),
            // Each side's own key is its own; a key of another type is
            // merged in the left's type.
            (
                "SELECT a.k AS ak, b.k AS bk, w FROM a FULL JOIN b USING (k) WHERE b.k = 4 \
                 ORDER BY w",
                "+----+----+-----+
| ak | bk | w   |
+----+----+-----+
|    | 4  | b4  |
|    | 4  | b44 |
+----+----+-----+",
            ),
            (
                "SELECT * FROM c NATURAL FULL JOIN a ORDER BY k, v",
                "+---+----+
| k | v  |
+---+----+
| 1 | a1 |
| 2 | a2 |
| 4 | c4 |
| 6 | c6 |
|   | a0 |
+---+----+",
            ),
            (
                "SELECT k FROM c FULL JOIN b USING (k) WHERE w IS NULL",
                "+---+
| k |
+---+
| 6 |
+---+",
            ),
            // A LEFT JOIN's key is the left's, as SQL's is.
            (
                "SELECT k, w FROM a LEFT JOIN b USING (k) ORDER BY k",
                "+---+----+
| k | w  |
+---+----+
| 1 | b1 |
| 2 |    |
|   |    |
+---+----+",
            ),
        ] {
            assert_eq!(answer(sql, true).await.unwrap(), expected, "{sql}");
        }
        let e: datafusion::error::DataFusionError =
            answer("SELECT * FROM a FULL JOIN b USING (k) WHERE a.k > 0", true)
                .await
                .unwrap_err();
        let e = e.to_string();
        assert!(
            e.starts_with(
                "Error during planning: `k` of a FULL JOIN with `USING (k)` or NATURAL, named \
                 both alone (or by `*`) and as `a.k` (or `a.*`)"
            ) && e.ends_with(
                "write the join with ON and name each: `a FULL JOIN b ON a.k = b.k` and \
                 `COALESCE(a.k, b.k) AS k`"
            ),
            "{e}"
        );
    }

    /// `x NOT IN (subquery)` is SQL's, NULLs and all, where DataFusion 55
    /// answers it so, and refused where it does not, with the `NOT EXISTS`
    /// that is; expected counts are DuckDB's.
    #[tokio::test]
    async fn not_in_a_subquery_keeps_sqls_nulls_or_is_refused() {
        let ctx = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        for view in [
            "CREATE VIEW a AS SELECT CAST(c1 AS BIGINT) AS k, CAST(c2 AS BIGINT) AS v FROM \
             (VALUES (1, 2), (2, 2), (NULL, NULL), (3, NULL), (4, 7)) t(c1, c2)",
            "CREATE VIEW b AS SELECT CAST(c1 AS BIGINT) AS k, CAST(c2 AS BIGINT) AS w FROM \
             (VALUES (1, 1), (1, NULL), (2, 5), (3, 2), (4, 7), (NULL, 9)) t(c1, c2)",
        ] {
            ctx.sql(view).await.unwrap();
        }
        let count = |condition: &str, check: bool| {
            let (ctx, sql) = (
                ctx.clone(),
                format!("SELECT count(*) FROM a WHERE {condition}"),
            );
            async move {
                let df = ctx.sql(&sql).await?;
                let df = if check { checked_plan(&sql, df)? } else { df };
                let batches = df.collect().await?;
                datafusion::error::Result::Ok(
                    datafusion::arrow::array::AsArray::as_primitive::<
                        datafusion::arrow::datatypes::Int64Type,
                    >(batches[0].column(0))
                    .value(0),
                )
            }
        };
        // DataFusion 55's own wrong answers (when these fail, the
        // rewrites can go): SQL's are 1, 1, 1 and 4.
        for (condition, wrong) in [
            ("a.v NOT IN (SELECT b.w FROM b WHERE b.k <> a.k)", 0),
            ("a.v NOT IN (SELECT b.w FROM b) OR a.k = 1", 3),
            ("0 IN (SELECT count(*) FROM b WHERE b.k = a.k)", 0),
            (
                "EXISTS (SELECT 1 FROM b WHERE b.k = a.k HAVING count(*) < 2)",
                3,
            ),
        ] {
            assert_eq!(count(condition, false).await.unwrap(), wrong, "{condition}");
        }
        for (condition, sqls) in [
            ("a.v NOT IN (SELECT b.w FROM b)", 0),
            ("a.v NOT IN (SELECT b.w FROM b WHERE b.w > 100)", 5),
            ("NOT (a.v IN (SELECT b.w FROM b WHERE b.w > 100))", 5),
            ("a.v IN (SELECT b.w FROM b WHERE b.k = a.k) OR a.k = 1", 2),
            // What the refusals offer.
            (
                "NOT EXISTS (SELECT 1 FROM b WHERE b.k = a.k AND (b.w = a.v OR b.w IS NULL OR \
                 a.v IS NULL))",
                2,
            ),
            (
                "NOT EXISTS (SELECT 1 FROM b WHERE b.k <> a.k AND (b.w = a.v OR b.w IS NULL OR \
                 a.v IS NULL))",
                1,
            ),
        ] {
            assert_eq!(count(condition, true).await.unwrap(), sqls, "{condition}");
        }
        // Where DataFusion 55 would not, asked as the NOT EXISTS that
        // keeps SQL's rows: correlated, under OR and NOT, with an
        // aggregate, DISTINCT or LIMIT in the subquery, two of them.
        for (condition, sqls) in [
            ("a.v NOT IN (SELECT b.w FROM b WHERE b.k <> a.k)", 1),
            ("a.v NOT IN (SELECT b.w FROM b WHERE b.k = a.k)", 2),
            (
                "NOT (a.v IN (SELECT b.w FROM b WHERE b.k = a.k)) AND a.k > 0",
                1,
            ),
            ("a.v NOT IN (SELECT b.w FROM b) OR a.k = 1", 1),
            ("NOT (a.v IN (SELECT b.w FROM b) AND a.k = 1)", 3),
            (
                "a.k NOT IN (SELECT b.k FROM b WHERE b.w = a.v) OR a.v IS NULL",
                4,
            ),
            ("a.v + 1 NOT IN (SELECT b.w + 1 FROM b WHERE b.k = a.k)", 2),
            (
                "a.v NOT IN (SELECT DISTINCT b.w FROM b WHERE b.k = a.k AND b.w > 1)",
                3,
            ),
            // A correlated subquery that aggregates into one row gives
            // one for an outer row with no rows too (a count of 0, a NULL
            // max), as a one-value subquery: DataFusion 55 lost it.
            ("a.v NOT IN (SELECT max(b.w) FROM b WHERE b.k = a.k)", 2),
            ("0 IN (SELECT count(*) FROM b WHERE b.k = a.k)", 1),
            ("EXISTS (SELECT max(b.w) FROM b WHERE b.k = a.k)", 5),
            ("NOT EXISTS (SELECT count(*) FROM b WHERE b.k = a.k)", 0),
            (
                "a.k IN (SELECT count(*) FROM b WHERE b.k = a.k) OR a.v IS NULL",
                2,
            ),
            ("1 NOT IN (SELECT count(b.w) FROM b WHERE b.k = a.k)", 1),
            (
                "EXISTS (SELECT count(*) FROM b WHERE b.k = a.k HAVING count(*) > 0)",
                4,
            ),
            // With a HAVING, the row is there where it holds: for no rows,
            // on a count of 0.
            (
                "EXISTS (SELECT 1 FROM b WHERE b.k = a.k HAVING count(*) < 2)",
                4,
            ),
            (
                "NOT EXISTS (SELECT 1 FROM b WHERE b.k = a.k HAVING count(*) < 2)",
                1,
            ),
            (
                "0 IN (SELECT count(*) FROM b WHERE b.k = a.k HAVING count(*) < 2)",
                1,
            ),
            (
                "0 NOT IN (SELECT count(*) FROM b WHERE b.k = a.k HAVING count(*) > 1)",
                5,
            ),
            // Uncorrelated, any subquery: its NOT EXISTS joins by the
            // condition on top.
            (
                "a.v NOT IN (SELECT b.w FROM b WHERE b.k = 1 UNION ALL SELECT 7) OR a.k = 2",
                1,
            ),
            (
                "a.v NOT IN (SELECT b.w FROM b WHERE b.k = a.k) AND a.k NOT IN (SELECT b.k FROM \
                 b WHERE b.w = 7)",
                1,
            ),
            (
                "NOT (NOT (a.v NOT IN (SELECT b.w FROM b WHERE b.k = a.k)))",
                2,
            ),
            // Never NULL, and DataFusion 55 failed to plan it.
            (
                "coalesce(a.k, 0) NOT IN (SELECT c.w FROM (VALUES (1, 1), (4, 3)) c(k, w) WHERE \
                 c.k = a.k)",
                4,
            ),
            (
                "a.v NOT IN (SELECT b.w FROM b WHERE b.w > 4) OR a.v IS NULL",
                4,
            ),
            ("a.v NOT IN (SELECT max(b.w) FROM b) OR a.k = 1", 3),
        ] {
            let got = count(condition, true).await;
            assert_eq!(got.as_ref().ok(), Some(&sqls), "{condition}: {got:?}");
        }
        // Inside another expression, or correlated with an aggregate or
        // LIMIT (whose rows of each outer row a join would lose), a UNION
        // or an ORDER BY (which DataFusion 55 does not decorrelate), it is
        // refused with that NOT EXISTS.
        for (condition, says) in [
            (
                "(a.v NOT IN (SELECT b.w FROM b)) IS NULL",
                "`a.v NOT IN (subquery)` inside another expression (`IS NULL`, `=`, ...)",
            ),
            (
                "a.v NOT IN (SELECT b.w FROM b WHERE b.k = a.k LIMIT 1)",
                "`a.v NOT IN (subquery)` with a subquery that refers to the outer query",
            ),
            (
                "a.v NOT IN (SELECT b.w FROM b WHERE b.k = a.k UNION ALL SELECT b.k FROM b \
                 WHERE b.w = a.v)",
                "`a.v NOT IN (subquery)` with a subquery that refers to the outer query",
            ),
            (
                "a.v NOT IN (SELECT DISTINCT b.w FROM b WHERE b.k = a.k ORDER BY b.w)",
                "`a.v NOT IN (subquery)` with a subquery that refers to the outer query",
            ),
        ] {
            let e: datafusion::error::DataFusionError = count(condition, true).await.unwrap_err();
            let e = e.to_string();
            assert!(
                e.starts_with(&format!(
                    "Error during planning: {says}: DataFusion 55 gets"
                )) && e
                    .contains("`NOT EXISTS (SELECT 1 FROM ... WHERE <the subquery's conditions>"),
                "{condition}: {e}"
            );
        }
    }

    #[tokio::test]
    async fn distinct_values_in_an_aggregate_keep_the_order_written() {
        let ctx = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        ctx.sql(
            "CREATE VIEW t AS SELECT * FROM (VALUES ('b', 12), ('a', 2), ('c', 1), ('a', 2), \
             (NULL, NULL)) AS v(s, n)",
        )
        .await
        .unwrap();
        for (sql, expected) in [
            // DataFusion 55 reversed the second to share the first's
            // sorted input, and its DISTINCT accumulator then sorted the
            // reversed way: both came out c,b,a.
            (
                "SELECT string_agg(DISTINCT s, ',' ORDER BY s DESC) AS d, string_agg(DISTINCT s, \
                 ',' ORDER BY s) AS a FROM t",
                "c,b,a | a,b,c",
            ),
            (
                "SELECT array_to_string(array_agg(DISTINCT n ORDER BY n), ',') AS a, \
                 array_to_string(array_agg(DISTINCT n ORDER BY n DESC), ',') AS d FROM t",
                "1,2,12 | 12,2,1",
            ),
            // An input already in the opposite order: c,b,a.
            (
                "SELECT string_agg(DISTINCT s, ',' ORDER BY s) AS a, 'x' AS x FROM (SELECT s \
                 FROM t ORDER BY s DESC LIMIT 10)",
                "a,b,c | x",
            ),
            (
                "SELECT array_to_string(array_agg(DISTINCT n ORDER BY n DESC), ',') AS d, 'x' AS \
                 x FROM (SELECT n FROM t ORDER BY n LIMIT 10)",
                "12,2,1 | x",
            ),
            // A CAST on both sides (named as written elsewhere) is one
            // expression: this failed as it ran, "ORDER BY expressions
            // must appear in argument list".
            (
                "SELECT string_agg(DISTINCT CAST(n AS VARCHAR), ',' ORDER BY CAST(n AS VARCHAR)) \
                 AS a, string_agg(DISTINCT CAST(n AS VARCHAR), ',' ORDER BY CAST(n AS VARCHAR) \
                 DESC) AS d FROM t",
                "1,12,2 | 2,12,1",
            ),
            // DataFusion 55 refused these two side by side, "Conflicting
            // ordering requirements in aggregate functions is not
            // supported", though string_agg's accumulator sorts for itself.
            (
                "SELECT string_agg(DISTINCT s, ',' ORDER BY s) AS a, string_agg(s, ',' ORDER BY n \
                 DESC) AS b FROM t",
                "a,b,c | b,a,a,c",
            ),
            // A key given twice, over two partitions: DataFusion 55 failed
            // as it ran ("column types must match schema types").
            (
                "SELECT string_agg(s, ',' ORDER BY s DESC, s) AS d, first_value(n ORDER BY n, n) \
                 AS f FROM (SELECT * FROM t UNION ALL SELECT * FROM t)",
                "c,c,b,b,a,a,a,a | 1",
            ),
            // DataFusion 55 panicked (first_value's accumulator, which
            // DISTINCT ON becomes).
            (
                "SELECT DISTINCT ON (s) s, n FROM t ORDER BY s, n DESC, n",
                "a | 2",
            ),
            // Its ON list given twice, and so its ORDER BY's first keys.
            (
                "SELECT DISTINCT ON (s, s) s, n FROM t ORDER BY s, s, n DESC, s, n",
                "a | 2",
            ),
        ] {
            assert_eq!(first_row(&ctx, sql).await, expected, "{sql}");
        }
        for (sql, said) in [
            (
                "SELECT array_agg(DISTINCT s ORDER BY n) FROM t",
                "`array_agg(DISTINCT t.s ORDER BY t.n)`: with DISTINCT, an aggregate's ORDER BY is \
                 its argument as written",
            ),
            (
                "SELECT string_agg(DISTINCT s, ',' ORDER BY s, n) FROM t",
                "with 2 ORDER BY keys: with DISTINCT, an aggregate's ORDER BY is its argument \
                 alone",
            ),
            (
                "SELECT string_agg(DISTINCT n, ',' ORDER BY n) FROM t",
                "`string_agg(DISTINCT t.n, ... ORDER BY t.n)` of Int64: DataFusion 55 casts \
                 string_agg's value to text and not its ORDER BY",
            ),
        ] {
            let e = planned(&ctx, sql, Default::default())
                .await
                .map(|_| ())
                .expect_err(sql);
            assert!(e.to_string().contains(said), "{sql}: {e}");
        }
    }

    #[tokio::test]
    async fn a_sorted_page_of_a_windowed_query_keeps_its_offset() {
        let ctx = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        let rows: Vec<String> = (0..40)
            .map(|i| format!("({i}, {})", (i * 7) % 11))
            .collect();
        ctx.sql(&format!(
            "CREATE VIEW t AS SELECT * FROM (VALUES {}) AS v(id, n)",
            rows.join(", ")
        ))
        .await
        .unwrap();
        // DataFusion 55 kept `fetch` sorted rows, not `skip + fetch`, and
        // then skipped `skip` of them: no row, and 10 for `LIMIT 30`.
        for (limit, offset, expected) in [(3, 20, 3), (30, 20, 20), (5, 2, 5), (3, 39, 1)] {
            let sql = format!(
                "SELECT * FROM (SELECT id, count(*) OVER (ORDER BY n, id) AS r FROM t ORDER BY \
                 id LIMIT {limit} OFFSET {offset}) ORDER BY id"
            );
            let table = table_of(&ctx, &sql, true).await.unwrap();
            let ids: Vec<&str> = table
                .lines()
                .skip(3)
                .filter(|l| l.starts_with('|'))
                .filter_map(|l| l.split('|').nth(1).map(str::trim))
                .collect();
            let first = offset.to_string();
            assert_eq!(ids.len(), expected, "{sql}\n{table}");
            assert_eq!(ids.first(), Some(&first.as_str()), "{sql}\n{table}");
        }
        // With no ORDER BY under the limit, DataFusion 55 moved the sort
        // below it, keeping 3 rows there: none again. Which rows is any;
        // how many is not.
        for sql in [
            "SELECT * FROM (SELECT id FROM t LIMIT 3 OFFSET 20) ORDER BY id",
            "SELECT id, row_number() OVER (ORDER BY id) AS rn FROM (SELECT id FROM t LIMIT 3 \
             OFFSET 20)",
            "SELECT * FROM (SELECT n, count(*) AS c FROM t GROUP BY n LIMIT 3 OFFSET 5) ORDER BY n",
        ] {
            let table = table_of(&ctx, sql, true).await.unwrap();
            let rows = table.lines().filter(|l| l.starts_with('|')).count() - 1;
            assert_eq!(rows, 3, "{sql}\n{table}");
        }
    }

    #[tokio::test]
    async fn distinct_that_datafusion_passes_over_is_refused() {
        let ctx = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        ctx.sql(
            "CREATE VIEW t AS SELECT * FROM (VALUES (1, 10), (1, 10), (2, 20), (2, 21), (5, 50), \
             (5, 50)) AS v(x, y)",
        )
        .await
        .unwrap();
        // DataFusion 55 answered each as if DISTINCT were not there:
        // regr_count 6 where SQL gives 4.
        for f in [
            "corr(DISTINCT x, y)",
            "covar_samp(DISTINCT x, y)",
            "covar(DISTINCT x, y)",
            "covar_pop(DISTINCT x, y)",
            "regr_count(DISTINCT y, x)",
            "regr_slope(DISTINCT y, x)",
            "regr_avgx(DISTINCT y, x)",
            "regr_sxy(DISTINCT y, x)",
            "approx_percentile_cont(DISTINCT x, 0.5)",
            "approx_percentile_cont(DISTINCT 0.5) WITHIN GROUP (ORDER BY x)",
            "nth_value(DISTINCT x, 2 ORDER BY x)",
            "regr_count(DISTINCT y, x) OVER ()",
        ] {
            let sql = format!("SELECT {f} FROM t");
            let said = refused(&ctx, &sql).await;
            assert!(
                said.contains("(DISTINCT ...)`: DataFusion 55 passes over DISTINCT in `")
                    && said.contains("and takes every row"),
                "{sql}: {said}"
            );
        }
        // What the messages say to write instead, and DISTINCT where
        // DataFusion reads it.
        for (sql, expected) in [
            (
                "SELECT regr_count(y, x) AS c FROM (SELECT DISTINCT y, x FROM t)",
                "4",
            ),
            // (DataFusion 55 planned this as nth_value, 1.)
            (
                "SELECT array_agg(DISTINCT x ORDER BY x)[2] AS n FROM t",
                "2",
            ),
            // A list's [0] is NULL (nth_value's failed, an internal
            // error), and an index need not be a literal (refused).
            (
                "SELECT array_agg(x ORDER BY x)[0] IS NULL AS z FROM t",
                "true",
            ),
            (
                "SELECT array_agg(x ORDER BY x DESC)[CAST(2 AS INT)] AS n FROM t",
                "5",
            ),
            ("SELECT array_agg(x ORDER BY x DESC)[-1] AS n FROM t", "1"),
            (
                "SELECT percentile_cont(DISTINCT 0.5) WITHIN GROUP (ORDER BY x) AS p FROM t",
                "2.0",
            ),
            (
                "SELECT stddev_pop(DISTINCT x) AS s FROM t",
                "1.699673171197595",
            ),
            (
                "SELECT sqrt(var_samp(DISTINCT x)) AS s, count(DISTINCT y) AS n FROM t",
                "2.081665999466133 | 4",
            ),
        ] {
            assert_eq!(first_row(&ctx, sql).await, expected, "{sql}");
        }
        // Where DataFusion refuses DISTINCT itself, what reads it.
        let sql = "SELECT stddev(DISTINCT x), count(DISTINCT y) FROM t";
        let text = match ctx.sql(sql).await {
            Err(e) => planning_error(&e),
            Ok(df) => planning_error(&df.collect().await.unwrap_err()),
        };
        assert!(
            text.contains(
                "(DISTINCT) aggregations are not available (take the distinct values in a \
                 subquery first"
            ) && text.contains("so `sqrt(var_samp(DISTINCT x))` is the sample standard deviation"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_json_member_read_with_an_arrow_is_refused_where_datafusion_gets_it_wrong() {
        let ctx = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        ctx.sql(
            "CREATE VIEW t AS SELECT * FROM (VALUES ('e1', '{\"k\":1}'), ('e2', '{}'), \
             ('e3', '{}')) AS v(id, properties)",
        )
        .await
        .unwrap();
        // DataFusion 55 matched e2 and e3's missing members with each other
        // (and each with itself): 5 rows where SQL gives 1.
        for sql in [
            "SELECT a.id FROM t a JOIN t b ON (a.properties->'k') = (b.properties->'k')",
            "SELECT a.id FROM t a, t b WHERE (a.properties->'k') = (b.properties->'k')",
            "SELECT id FROM t WHERE (properties->'k') IN (SELECT properties->'k' FROM t)",
            "SELECT id FROM t a WHERE EXISTS (SELECT 1 FROM t b WHERE (b.properties->'k') = \
             (a.properties->'k'))",
            "SELECT properties->'k' AS m FROM t INTERSECT SELECT properties->'k' FROM t",
            "SELECT properties->'k' AS m FROM t EXCEPT SELECT properties->'k' FROM t",
            "SELECT id FROM t WHERE (properties->'k') < (properties->'j')",
            "SELECT id FROM t WHERE (properties->'k') IN (properties->'j', 1)",
        ] {
            let said = refused(&ctx, sql).await;
            assert!(
                said.contains(
                    "two JSON members read with `->` (unions of types), which \
                     DataFusion 55 compares wrongly"
                ) && said.replace(" -> ", "->").contains("properties->'k'"),
                "{sql}: {said}"
            );
        }
        // Functions and operators that converted a member each their own
        // way (on e1, `concat` gave 'x' and `||`, nvl, nullif and
        // string_agg NULL), and IGNORE NULLS, which kept a missing member.
        for (sql, what) in [
            ("SELECT concat(properties->'k', 'x') FROM t", "`concat` of"),
            ("SELECT (properties->'k') || 'x' FROM t", "`||` of"),
            ("SELECT nvl(properties->'k', 0) FROM t", "`nvl` of"),
            ("SELECT nullif(properties->'k', 2) FROM t", "`nullif` of"),
            (
                "SELECT string_agg(properties->'k', ',') FROM t",
                "`string_agg` of",
            ),
            ("SELECT (properties->'k') IS TRUE FROM t", "`IS TRUE` of"),
            (
                "SELECT json_length(properties->'a') FROM t",
                "`json_length` of",
            ),
            (
                "SELECT json_object_keys(properties->'a') FROM t",
                "`json_object_keys` of",
            ),
            (
                "SELECT first_value(properties->'k' ORDER BY id) IGNORE NULLS FROM t",
                "`first_value(...) IGNORE NULLS` of",
            ),
            (
                "SELECT lag(properties->'k') IGNORE NULLS OVER (ORDER BY id) FROM t",
                "`lag(...) IGNORE NULLS` of",
            ),
        ] {
            let said = refused(&ctx, sql).await;
            assert!(
                said.contains(&format!(
                    "{what} a JSON member read with `->` (a union of types)"
                )) && said.contains("`properties->>'k'`"),
                "{sql}: {said}"
            );
        }
        // What DataFusion does right with a member stays allowed.
        let sql = "SELECT id, properties->'k' AS m, CAST(properties->'k' AS VARCHAR) AS s, \
                   (properties->'k') IS NULL AS missing, (properties->'k') = 1 AS one, \
                   (properties->'k') BETWEEN 0 AND 2 AS near, (properties->'k') IN (1, 2) AS \
                   listed, CASE WHEN id = 'e1' THEN properties->'k' END AS c, \
                   coalesce(properties->'k', properties->'j') AS co, \
                   json_get_int(properties->'k') AS typed, arrow_cast(properties->'k', 'Utf8') \
                   AS text, count(*) OVER (PARTITION BY \
                   properties->'k') AS peers, lag(properties->'k') OVER (ORDER BY id) AS prev, \
                   first_value(properties->'k') OVER (ORDER BY id) AS first \
                   FROM t ORDER BY properties->'k', id";
        checked_rows(&ctx, sql).await;
        let sql = "SELECT properties->'k' AS m, count(*) AS n, count(DISTINCT properties->'k') \
                   AS d, array_agg(properties->'k' ORDER BY id) AS a FROM t GROUP BY \
                   properties->'k'";
        checked_rows(&ctx, sql).await;
        // As text or typed, or against anything but another member, the
        // missing members are NULLs that match nothing.
        for sql in [
            "SELECT a.id FROM t a JOIN t b ON (a.properties->>'k') = (b.properties->>'k')",
            "SELECT a.id FROM t a JOIN t b ON json_get_int(a.properties, 'k') = \
             json_get_int(b.properties, 'k')",
            "SELECT a.id FROM t a JOIN (SELECT 1 AS k UNION ALL SELECT NULL) b \
             ON (a.properties->'k') = b.k",
            "SELECT id FROM t WHERE (properties->'k') IN (SELECT json_get_int(properties, 'k') \
             FROM t)",
        ] {
            let rows = checked_rows(&ctx, sql).await;
            let ids = datafusion::arrow::util::pretty::pretty_format_batches(&rows)
                .unwrap()
                .to_string();
            assert_eq!(
                rows.iter().map(|b| b.num_rows()).sum::<usize>(),
                1,
                "{sql}: {ids}"
            );
            assert!(ids.contains("e1"), "{sql}: {ids}");
        }
    }

    #[tokio::test]
    async fn other_engines_sql_is_explained_or_refused() {
        let ctx = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        ctx.sql(
            "CREATE VIEW t AS SELECT TIMESTAMP '2024-03-15 10:00:00' AS ts, \
             TIMESTAMP '2024-03-14 09:00:00' AS t1, TIMESTAMP '2024-03-16 10:00:00' AS t2, \
             CAST(3 AS BIGINT) AS x, CAST(4 AS BIGINT) AS y, '2024-03-15' AS s, \
             CAST(1710513000000 AS BIGINT) AS ms, true AS condition, make_array(1, 2) AS arr, \
             DATE '2024-03-15' AS d, NULLIF('a', 'a') AS maybe, \
             '{\"amount\":1,\"a\":{\"b\":2}}' AS properties",
        )
        .await
        .unwrap();
        let mut offered = 0;
        for (names, _, here) in FOREIGN_FUNCTIONS {
            for name in *names {
                let e = ctx
                    .sql(&format!("SELECT {name}(x) FROM t"))
                    .await
                    .expect_err(name);
                let text = planning_error(&e);
                assert!(
                    text.starts_with(&format!(
                        "Error during planning: Invalid function '{name}' (`{name}` is "
                    )),
                    "{text}"
                );
                assert!(
                    text.ends_with(&format!("function; in DataFusion: {here})")),
                    "{text}"
                );
                assert!(!text.contains("Did you mean"), "{text}");
            }
            // The expressions (a call or an operator) between backticks.
            for expr in here.split('`').skip(1).step_by(2) {
                if !expr.contains('(') && !expr.contains(" - ") && !expr.contains(" + ") {
                    continue;
                }
                let rows = ctx
                    .sql(&format!("SELECT {expr} FROM t"))
                    .await
                    .unwrap_or_else(|e| panic!("{expr}: {e}"))
                    .collect()
                    .await
                    .unwrap_or_else(|e| panic!("{expr}: {e}"));
                assert_eq!(
                    rows.iter().map(|b| b.num_rows()).sum::<usize>(),
                    1,
                    "{expr}"
                );
                offered += 1;
            }
        }
        assert!(offered > 25, "{offered}");
        // What checked_plan refuses, wherever it is, and what it says (the
        // start of it); what it lets pass. A sample, a partition selection,
        // and the like, which DataFusion would pass over:
        let passed_over = |what: &str| {
            Some(format!(
                "This feature is not implemented: {what}, which DataFusion would pass over"
            ))
        };
        // A DATE compared with an integer that reads as YYYYMMDD:
        let integer_date = |n: i64, year: i64, date: &str| {
            Some(format!(
                "Error during planning: a DATE compared with the integer {n}, which DataFusion \
                 reads as {n} days after 1970-01-01, in the year {year}, so it matches no date \
                 you meant: write DATE '{date}' (or '{date}')"
            ))
        };
        let similar = |instead: &str| {
            Some(format!(
                "Error during planning: `SIMILAR TO`, which DataFusion 55 matches as a regular \
                 expression found anywhere in the text, without `%` and `_` as wildcards (so \
                 `'u15' SIMILAR TO 'u[0-9]'` is true and `'u1' SIMILAR TO 'u%'` false, where SQL \
                 matches the whole text); write `{instead}`"
            ))
        };
        // The rows DataFusion answers `sql` with, checks or none.
        let rows = |sql: String| {
            let ctx = ctx.clone();
            async move {
                let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
                batches.iter().map(|b| b.num_rows()).sum::<usize>()
            }
        };
        // A constant `IN (subquery)` DataFusion answers without NULLs (as
        // DataFusion 55 still does: when this fails, the check can go):
        assert_eq!(
            rows("SELECT x FROM t WHERE 'zz' NOT IN (SELECT maybe FROM t)".into()).await,
            1
        );
        let constant_in = |v: &str| {
            Some(format!(
                "Error during planning: `IN (subquery)` with a constant on the left (`{v}`), \
                 negated or inside another expression"
            ))
        };
        // A duration is never above a day in DataFusion 55 (when this
        // fails, the check can go): t2 - t1 is 2 days and an hour.
        assert_eq!(
            rows("SELECT x FROM t WHERE t2 - t1 > INTERVAL '1 day'".into()).await,
            0
        );
        let duration_days = |instead: &str| {
            Some(format!(
                "Error during planning: a time difference (a duration, such as \
                 `processing_time - event_timestamp`) compared with an interval that counts days \
                 or months: DataFusion 55 compares them field by field, months, then days, then \
                 the rest, and a duration has only the rest, so a gap of years is less than \
                 `INTERVAL '1 day'`, with no error; write {instead}"
            ))
        };
        // `^` is XOR in DataFusion 55 (when this fails, the check can go),
        // and the XOR the message offers is XOR: 3 ^ 4 is 7, 3 ^ 2 is 1.
        for (sql, n) in [
            ("SELECT x FROM t WHERE (x ^ 4) = 7 AND (x ^ 2) = 1", 1),
            (
                "SELECT x FROM t WHERE ((x | 4) - (x & 4)) = 7 AND ((x | 2) - (x & 2)) = 1",
                1,
            ),
            ("SELECT x FROM t WHERE power(x, 2) = 9", 1),
        ] {
            assert_eq!(rows(sql.into()).await, n, "{sql}");
        }
        // A DATE plus hours is a date, the hours dropped, in DataFusion 55
        // (when this fails, the check can go): ts is on d, at 10:00.
        assert_eq!(
            rows("SELECT x FROM t WHERE ts < d + INTERVAL '12 hours'".into()).await,
            0
        );
        let date_hours = |instead: &str| {
            Some(format!(
                "Error during planning: a DATE plus or minus an interval with hours or smaller \
                 units: DataFusion 55 keeps a date and drops them, so `DATE '2024-03-15' + \
                 INTERVAL '36 hours'` is 2024-03-16 and `DATE '2024-03-15' - INTERVAL '1 hour'` \
                 2024-03-15, with no error (PostgreSQL and DuckDB give a timestamp); cast the \
                 date first: {instead}"
            ))
        };
        let zone = |tz: &str, meant: &str| {
            Some(format!(
                "Error during planning: no time zone is named '{tz}': a zone is an IANA name, \
                 written as it is ('UTC', 'Europe/Berlin', 'America/Los_Angeles'), or an offset \
                 ('+02:00'){meant}"
            ))
        };
        let passed_over_as = |what: &str| Some(format!("This feature is not implemented: {what}"));
        // INTERSECT ALL keeps every matched left row, EXCEPT ALL drops
        // every matched one, in DataFusion 55 (when these fail, the check
        // can go):
        for (op, n) in [("INTERSECT", 2), ("EXCEPT", 0)] {
            let got = rows(format!(
                "SELECT x FROM (VALUES (1), (1)) AS a(x) {op} ALL SELECT x FROM (VALUES (1)) AS \
                 b(x)"
            ))
            .await;
            assert_eq!(got, n, "{op}");
        }
        // A RANGE offset with no unit over a date is months in DataFusion
        // 55 (when this fails, the check can go):
        let months = ctx
            .sql(
                "SELECT count(*) OVER (ORDER BY d RANGE 1 PRECEDING) AS n FROM (VALUES \
                 (DATE '2024-02-20'), (DATE '2024-03-15')) AS v(d) ORDER BY d DESC LIMIT 1",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(
            datafusion::arrow::util::pretty::pretty_format_batches(&months)
                .unwrap()
                .to_string()
                .lines()
                .nth(3),
            Some("| 2 |")
        );
        let range_months = |what: &str| {
            Some(format!(
                "Error during planning: a window frame `RANGE` over {what}"
            ))
        };
        // A time format with no `%` code:
        let format = |f: &str| {
            Some(format!(
                "Error during planning: the time format '{f}' has no `%` code"
            ))
        };
        for (sql, says) in [
            (
                "SELECT count(*) FROM t TABLESAMPLE (10 PERCENT)",
                passed_over("a table sample (TABLESAMPLE, SAMPLE)"),
            ),
            (
                "SELECT count(*) FROM t SAMPLE 0.1",
                passed_over("a table sample (TABLESAMPLE, SAMPLE)"),
            ),
            (
                "SELECT x FROM t WHERE x IN (SELECT x FROM (SELECT * FROM t) TABLESAMPLE \
                 BERNOULLI (5))",
                passed_over("a table sample (TABLESAMPLE, SAMPLE)"),
            ),
            (
                "SELECT count(*) FROM t PARTITION (p1)",
                passed_over("a partition selection, `PARTITION (...)`"),
            ),
            (
                "SELECT s, count(*) FROM t GROUP BY s WITH ROLLUP",
                passed_over("`GROUP BY ... WITH ROLLUP` (or `WITH CUBE`, `WITH TOTALS`)"),
            ),
            (
                "SELECT x FROM t WHERE x IN (SELECT x FROM t GROUP BY x WITH CUBE)",
                passed_over("`GROUP BY ... WITH ROLLUP` (or `WITH CUBE`, `WITH TOTALS`)"),
            ),
            ("SELECT s, count(*) FROM t GROUP BY ROLLUP (s)", None),
            (
                "SELECT count(*) FROM t PREWHERE x > 3",
                passed_over("ClickHouse's `PREWHERE`"),
            ),
            (
                "SELECT x FROM t START WITH x = 3 CONNECT BY PRIOR x = y",
                passed_over("a hierarchical query (`START WITH ... CONNECT BY`)"),
            ),
            (
                "SELECT * ILIKE '%s' FROM t",
                passed_over("Snowflake's `* ILIKE '...'`"),
            ),
            ("SELECT * EXCLUDE (s) FROM t", None),
            ("SELECT 'TABLESAMPLE' AS sample FROM t AS partition", None),
            (
                "SELECT x FROM t WHERE d = 20240315",
                integer_date(20240315, 57386, "2024-03-15"),
            ),
            (
                "SELECT x FROM t WHERE d BETWEEN 20240301 AND 20240331",
                integer_date(20240301, 57386, "2024-03-01"),
            ),
            (
                "SELECT x FROM t WHERE d IN (DATE '2024-03-14', 20240316)",
                integer_date(20240316, 57386, "2024-03-16"),
            ),
            (
                "SELECT x FROM t WHERE x IN (SELECT x FROM t WHERE 20240315 <= d)",
                integer_date(20240315, 57386, "2024-03-15"),
            ),
            (
                "SELECT d, count(*) FROM t GROUP BY d HAVING d > 20240315",
                integer_date(20240315, 57386, "2024-03-15"),
            ),
            ("SELECT x FROM t WHERE d = '2024-03-15'", None),
            (
                "SELECT x FROM t WHERE d = DATE '2024-03-15' AND x = 20240315",
                None,
            ),
            ("SELECT x FROM t WHERE d > 19000", None),
            (
                "SELECT date_format(ts, 'yyyy-MM') FROM t",
                format("yyyy-MM"),
            ),
            (
                "SELECT x FROM t WHERE s IN (SELECT to_char(t1, 'YYYY') FROM t)",
                format("YYYY"),
            ),
            ("SELECT to_char(ts, '%Y-%m') FROM t", None),
            ("SELECT to_char(ts, s) FROM t", None),
            // SIMILAR TO, which DataFusion matches as a regex, unanchored:
            (
                "SELECT x FROM t WHERE s SIMILAR TO '2024-%'",
                similar("regexp_like(s, '^(?:2024-.*)$')"),
            ),
            (
                "SELECT x FROM t WHERE s NOT SIMILAR TO '(a|b)_[0-9]%.x'",
                similar("NOT regexp_like(s, '^(?:(a|b).[0-9].*\\.x)$')"),
            ),
            (
                "SELECT x FROM t WHERE lower(s) SIMILAR TO s",
                similar("regexp_like(x, '^(?:...)$')"),
            ),
            ("SELECT x FROM t WHERE s LIKE '2024-%'", None),
            // INTERSECT ALL and EXCEPT ALL, which DataFusion answers
            // with no regard to the number of copies:
            (
                "SELECT s FROM t INTERSECT ALL SELECT s FROM t",
                passed_over_as("`INTERSECT ALL`, which DataFusion 55 answers as every left row"),
            ),
            (
                "SELECT x FROM t UNION SELECT y FROM t EXCEPT ALL SELECT x FROM t",
                passed_over_as("`EXCEPT ALL`, which DataFusion 55 answers as the left rows"),
            ),
            (
                "SELECT count(*) FROM ((SELECT s FROM t) EXCEPT ALL (SELECT s FROM t))",
                passed_over_as("`EXCEPT ALL`"),
            ),
            (
                "SELECT x FROM t WHERE x IN (SELECT x FROM t INTERSECT ALL SELECT y FROM t)",
                passed_over_as("`INTERSECT ALL`"),
            ),
            (
                "SELECT s FROM t INTERSECT SELECT s FROM t UNION ALL SELECT s FROM t EXCEPT \
                 SELECT s FROM t",
                None,
            ),
            // A duration compared with days or months:
            (
                "SELECT x FROM t WHERE t2 - t1 > INTERVAL '1 day'",
                duration_days("`INTERVAL '24 hours'`"),
            ),
            (
                "SELECT x FROM t WHERE t2 - t1 BETWEEN INTERVAL '1 hour' AND INTERVAL '1 month 2 \
                 days 3 seconds'",
                duration_days("`INTERVAL '768 hours 3 seconds'`"),
            ),
            (
                "SELECT CASE WHEN max(t2) - min(t1) >= INTERVAL '7' DAY THEN 1 END FROM t",
                duration_days("`INTERVAL '168 hours'`"),
            ),
            (
                "SELECT x FROM t WHERE t2 - t1 > CAST('1 day' AS INTERVAL)",
                duration_days("`INTERVAL '24 hours'`"),
            ),
            (
                "SELECT x FROM t WHERE t2 - t1 > CAST(concat(x, ' days') AS INTERVAL)",
                duration_days("intervals in hours or smaller units"),
            ),
            ("SELECT x FROM t WHERE t2 - t1 > INTERVAL '24 hours'", None),
            ("SELECT x FROM t WHERE t1 < t2 - INTERVAL '1 day'", None),
            (
                "SELECT x FROM t WHERE t2 - t1 IN (INTERVAL '2 days 1 hour')",
                duration_days("`INTERVAL '49 hours'`"),
            ),
            (
                "SELECT x FROM t WHERE (t2 - t1) + INTERVAL '1 hour' > INTERVAL '1 day'",
                duration_days("`INTERVAL '24 hours'`"),
            ),
            (
                "SELECT x FROM t WHERE INTERVAL '1 day' > INTERVAL '25 hours'",
                Some(
                    "Error during planning: intervals compared across units (months, days, \
                     hours or less): DataFusion 55 compares them field by field, months, then \
                     days, then the rest, so `INTERVAL '1 day' > INTERVAL '25 hours'` is true, \
                     with no error; write `INTERVAL '24 hours'`"
                        .to_string(),
                ),
            ),
            (
                "SELECT x FROM t WHERE (t2 - t1) + INTERVAL '1 hour' > INTERVAL '25 hours'",
                None,
            ),
            (
                "SELECT x FROM t WHERE INTERVAL '1 month' < INTERVAL '2 months'",
                None,
            ),
            ("SELECT x FROM t WHERE t2 - t1 > t2 - ts", None),
            // `^` for a power:
            (
                "SELECT x ^ 2 AS p FROM t",
                Some(
                    "Error during planning: `^`, which DataFusion 55 reads as bitwise XOR (`2 ^ \
                     10` is 8), with no error, where PostgreSQL and DuckDB raise to a power \
                     (1024): write `power(x, y)`, or for XOR `(x | y) - (x & y)`"
                        .to_string(),
                ),
            ),
            (
                "SELECT power(x, 2) AS p, x | y AS o, x & y AS a FROM t",
                None,
            ),
            // A DATE moved by hours or less:
            (
                "SELECT x FROM t WHERE ts < d + INTERVAL '12 hours'",
                date_hours("`CAST(d AS TIMESTAMP) + INTERVAL ...`"),
            ),
            (
                "SELECT INTERVAL '1 day 1 second' + d AS e FROM t",
                date_hours("`CAST(d AS TIMESTAMP) + INTERVAL ...`"),
            ),
            (
                "SELECT x FROM t WHERE d - CAST('1 month 30 minutes' AS INTERVAL) > DATE \
                 '2024-01-01'",
                date_hours("`CAST(d AS TIMESTAMP) - INTERVAL ...`"),
            ),
            (
                "SELECT DATE '2024-03-15' - (INTERVAL '1 day' + INTERVAL '1 hour') AS e",
                date_hours("`CAST(d AS TIMESTAMP) - INTERVAL ...`"),
            ),
            ("SELECT d + INTERVAL '1 month 2 days' AS e FROM t", None),
            ("SELECT d - INTERVAL '48 hours' AS e FROM t", None),
            (
                "SELECT x FROM t WHERE ts < CAST(d AS TIMESTAMP) + INTERVAL '12 hours'",
                None,
            ),
            // A JSON member operator with more than a key on its right:
            (
                "SELECT x FROM t WHERE properties->>'amount' = '1'",
                Some(
                    "Error during planning: `properties ->> 'amount' = '1'` reads as \
                     `properties ->> ('amount' = '1')`"
                        .to_string(),
                ),
            ),
            (
                "SELECT properties->>'a' || '!' AS a FROM t",
                Some(
                    "Error during planning: `properties ->> 'a' || '!'` reads as `properties ->> \
                     ('a' || '!')`"
                        .to_string(),
                ),
            ),
            ("SELECT x FROM t WHERE (properties->>'amount') = '1'", None),
            (
                "SELECT properties->'a'->>'b' AS b, properties->>'amount' AS a FROM t",
                None,
            ),
            // A time zone that is none:
            (
                "SELECT ts AT TIME ZONE 'utc' FROM t",
                zone("utc", "; for this one, 'UTC'"),
            ),
            (
                "SELECT x FROM t WHERE ts AT TIME ZONE 'PST' > TIMESTAMP '2024-03-15'",
                zone("PST", "; for this one, 'America/Los_Angeles'"),
            ),
            (
                "SELECT CAST(ts AT TIME ZONE 'GMT+2' AS DATE) FROM t",
                zone("GMT+2", "; for this one, '+02:00'"),
            ),
            (
                "SELECT ts AT TIME ZONE 'america/new_york' FROM t",
                zone("america/new_york", "; for this one, 'America/New_York'"),
            ),
            (
                "SELECT ts AT TIME ZONE 'Mars/Base' FROM t",
                zone("Mars/Base", ""),
            ),
            (
                "SELECT ts AT TIME ZONE 'Europe/Berlin' AS a, ts AT TIME ZONE '+05:30' AS b, ts \
                 AT TIME ZONE 'UTC' AS c FROM t",
                None,
            ),
            // A RANGE offset over a date or time with no unit, which
            // DataFusion reads as months:
            (
                "SELECT count(*) OVER (ORDER BY d RANGE BETWEEN 6 PRECEDING AND CURRENT ROW) \
                 FROM t",
                range_months(
                    "`d` with a bare number as its offset (`6 PRECEDING`), which \
                     DataFusion 55 reads as 6 months (DuckDB reads days; PostgreSQL refuses \
                     it), with no error; write the unit: `INTERVAL '6 days' PRECEDING`",
                ),
            ),
            (
                "SELECT x FROM t WHERE x IN (SELECT sum(x) OVER (PARTITION BY s ORDER BY ts \
                 RANGE BETWEEN CURRENT ROW AND '3600' FOLLOWING) FROM t)",
                range_months(
                    "`ts` with a bare number as its offset (`3600 FOLLOWING`), \
                     which DataFusion 55 reads as 3600 months (PostgreSQL refuses it), with no \
                     error; write the unit: `INTERVAL '3600 seconds' FOLLOWING`",
                ),
            ),
            (
                "SELECT count(*) OVER (ORDER BY CAST(ts AS DATE) RANGE 1.5 PRECEDING) FROM t",
                range_months(
                    "a date or time with a bare number as its offset (`1.5 \
                     PRECEDING`)",
                ),
            ),
            (
                "SELECT count(*) OVER (ORDER BY d RANGE BETWEEN INTERVAL '6 days' PRECEDING \
                 AND CURRENT ROW) FROM t",
                None,
            ),
            (
                "SELECT count(*) OVER (ORDER BY ts RANGE BETWEEN '1 hour' PRECEDING AND \
                 UNBOUNDED FOLLOWING) FROM t",
                None,
            ),
            (
                "SELECT count(*) OVER (ORDER BY x RANGE BETWEEN 6 PRECEDING AND CURRENT ROW), \
                 count(*) OVER (ORDER BY d ROWS 6 PRECEDING) FROM t",
                None,
            ),
            // A constant NOT IN a subquery of a column that may be NULL:
            (
                "SELECT x FROM t WHERE 'zz' NOT IN (SELECT maybe FROM t)",
                constant_in("zz"),
            ),
            (
                "SELECT x FROM t WHERE x > 0 AND NOT ('zz' IN (SELECT maybe FROM t))",
                constant_in("zz"),
            ),
            (
                "SELECT x FROM t WHERE ('zz' IN (SELECT maybe FROM t)) IS NULL",
                constant_in("zz"),
            ),
            (
                "SELECT x FROM t WHERE x IN (SELECT x FROM t WHERE 3 NOT IN (SELECT CAST(maybe \
                 AS BIGINT) FROM t))",
                constant_in("3"),
            ),
            // A column on the left, a column that is never NULL, or a
            // plain `IN`, are answered by SQL's rule.
            ("SELECT x FROM t WHERE s NOT IN (SELECT maybe FROM t)", None),
            ("SELECT x FROM t WHERE 'zz' NOT IN (SELECT s FROM t)", None),
            (
                "SELECT x FROM t WHERE 'zz' IN (SELECT maybe FROM t) AND x > 0",
                None,
            ),
        ] {
            let said = checked_plan(sql, ctx.sql(sql).await.unwrap())
                .err()
                .map(|e| e.to_string());
            match says {
                Some(start) => assert!(
                    said.as_deref().is_some_and(|e| e.starts_with(&start)),
                    "{sql}: {said:?}"
                ),
                None => assert_eq!(said, None, "{sql}"),
            }
        }
        // The error DataFusion gives running `sql` (one it plans).
        let run_error = |sql: &str| {
            let (ctx, sql) = (ctx.clone(), sql.to_string());
            async move { ctx.sql(&sql).await.unwrap().collect().await.unwrap_err() }
        };
        // The error DataFusion gives planning `sql`, or else running it.
        let any_error = |sql: &str| {
            let (ctx, sql) = (ctx.clone(), sql.to_string());
            async move {
                match ctx.sql(&sql).await {
                    Err(e) => e,
                    Ok(df) => df.collect().await.unwrap_err(),
                }
            }
        };
        // A count of distinct pairs says how to write it, and that runs.
        // (DataFusion refuses it when it plans the execution.)
        let e = run_error("SELECT count(DISTINCT s, x) FROM t").await;
        assert!(
            planning_error(&e).ends_with(
                "(count distinct pairs as one value: `count(DISTINCT (a, b))`; it counts a pair \
                 with a NULL too, where MySQL's and Spark's skip it: add `WHERE a IS NOT NULL \
                 AND b IS NOT NULL` for theirs)"
            ),
            "{}",
            planning_error(&e)
        );
        let pairs = ctx
            .sql("SELECT count(DISTINCT (s, x)) AS n FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(pairs[0].num_rows(), 1);
        // DuckDB's table functions point at the lake's tables.
        let e = ctx
            .sql("SELECT * FROM read_parquet('lake/silver/events/*/*.parquet')")
            .await
            .unwrap_err();
        assert_eq!(
            planning_error(&e),
            "Error during planning: table function 'read_parquet' not found (`read_parquet` is \
             DuckDB's: evlake query reads the lake's tables by name, `FROM events`, and \
             `evlake tables` lists them)"
        );
        // An interval times a number, and a time plus a number, say how
        // to write them, and that runs.
        for (sql, says) in [
            (
                "SELECT 3 * INTERVAL '1 day' AS i",
                "(DataFusion 55 does not multiply or divide an interval: write the amount in \
                 it, `INTERVAL '3 days'`, or for a number in a column `x`, `CAST(concat(x, ' \
                 days') AS INTERVAL)`)",
            ),
            (
                "SELECT INTERVAL '1 day' / x AS i FROM t",
                "(DataFusion 55 does not multiply or divide an interval",
            ),
            (
                "SELECT ts - x AS i FROM t",
                "(a time plus or minus a number: say its unit, `ts + INTERVAL '3 days'`, or for \
                 a number in a column `x`, `ts + CAST(concat(x, ' days') AS INTERVAL)`; a DATE \
                 plus an integer adds days)",
            ),
        ] {
            let e = ctx.sql(sql).await.unwrap_err();
            assert!(planning_error(&e).contains(says), "{}", planning_error(&e));
        }
        let later = ctx
            .sql(
                "SELECT ts + CAST(concat(x, ' days') AS INTERVAL) = TIMESTAMP '2024-03-18 \
                 10:00:00' AND d + x = DATE '2024-03-18' AS ok FROM t",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(
            datafusion::arrow::util::pretty::pretty_format_batches(&later)
                .unwrap()
                .to_string(),
            "+------+\n| ok   |\n+------+\n| true |\n+------+"
        );
        // A FROM clause DataFusion does not plan is named, with what to
        // write, without the parser's dump of it.
        for (sql, says) in [
            (
                "SELECT * FROM t PIVOT (count(*) FOR s IN ('a', 'b'))",
                "This feature is not implemented: Unsupported SQL: Pivot (`PIVOT`; in \
                 DataFusion, one aggregate per value: `SELECT user_id, count(*) FILTER",
            ),
            (
                "SELECT * FROM t UNPIVOT (v FOR k IN (x, y))",
                "This feature is not implemented: Unsupported SQL: Unpivot (`UNPIVOT`; in \
                 DataFusion, one SELECT per column",
            ),
            (
                "SELECT * FROM t MATCH_RECOGNIZE (ORDER BY ts MEASURES count(*) AS n PATTERN \
                 (a+) DEFINE a AS true)",
                "This feature is not implemented: Unsupported SQL: MatchRecognize \
                 (`MATCH_RECOGNIZE`; in DataFusion, window functions",
            ),
            (
                "SELECT * FROM JSON_TABLE('[1]', '$[*]' COLUMNS (v INT PATH '$'))",
                "This feature is not implemented: Unsupported SQL: JsonTable (a JSON table \
                 function; in DataFusion, one `json_get_str(j, 'key')`",
            ),
        ] {
            let text = match ctx.sql(sql).await {
                Err(e) => planning_error(&e),
                Ok(df) => planning_error(&df.collect().await.unwrap_err()),
            };
            assert!(text.starts_with(says) && text.len() < 400, "{text}");
        }
        // SQL's FETCH FIRST and SQL Server's TOP give LIMIT, and with
        // ties or a percent what gives those, which runs; Oracle's DECODE
        // gives CASE.
        for (sql, says, ok) in [
            (
                "SELECT x FROM t ORDER BY x FETCH FIRST 2 ROWS WITH TIES",
                "the top rows with their ties are `QUALIFY rank() OVER (ORDER BY x DESC) <= n`",
                "SELECT x FROM t QUALIFY rank() OVER (ORDER BY x DESC) <= 2",
            ),
            (
                "SELECT TOP 2 WITH TIES x FROM t ORDER BY x",
                "the top rows with their ties are `QUALIFY rank() OVER (ORDER BY x DESC) <= n`",
                "SELECT x FROM t QUALIFY rank() OVER (ORDER BY x DESC) <= 2",
            ),
            (
                "SELECT x FROM t ORDER BY x FETCH FIRST 10 PERCENT ROWS ONLY",
                "the first 10% are `QUALIFY row_number() OVER (ORDER BY x) <= ceil(count(*) \
                 OVER () * 0.10)`",
                "SELECT x FROM t QUALIFY row_number() OVER (ORDER BY x) <= ceil(count(*) OVER \
                 () * 0.10)",
            ),
            (
                "SELECT s, x FROM t ORDER BY x LIMIT 1 BY s",
                "the first n rows of each `s` are `QUALIFY row_number() OVER (PARTITION BY s \
                 ORDER BY x) <= n`",
                "SELECT s, x FROM t QUALIFY row_number() OVER (PARTITION BY s ORDER BY x) <= 1",
            ),
        ] {
            let said = planned(&ctx, sql, Default::default())
                .await
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(said.ends_with(says), "{sql}: {said}");
            runs(&ctx, ok).await;
        }
        for (sql, says) in [
            (
                "SELECT x FROM t FETCH FIRST 2 ROWS ONLY",
                "FETCH clause is not supported yet (in DataFusion: `LIMIT n` at the end of \
                 the query)",
            ),
            (
                "SELECT TOP 2 x FROM t",
                "TOP (in DataFusion: `LIMIT n` at the end of the query)",
            ),
            (
                "SELECT string_agg(s, ',') WITHIN GROUP (ORDER BY s) FROM t",
                "(`string_agg` and `array_agg` take their order inside the call: \
                 `string_agg(s, ',' ORDER BY s)`)",
            ),
            (
                "SELECT decode(s, 'a', 1, 0) FROM t",
                "(DataFusion's `decode` is `decode(s, 'base64')`, from text to bytes; Oracle's \
                 value by value is `CASE x WHEN 'a' THEN 1 WHEN 'b' THEN 2 ELSE 0 END`)",
            ),
            (
                "SELECT x FROM t WHERE (x, y) IN (SELECT x, y FROM t)",
                "write `EXISTS (SELECT 1 FROM ... WHERE x = a AND y = b)`; a list of rows, \
                 `(a, b) IN (('u1', 'purchase'), ...)`, runs)",
            ),
        ] {
            let e = ctx.sql(sql).await.unwrap_err();
            assert!(planning_error(&e).ends_with(says), "{}", planning_error(&e));
        }
        // DuckDB's `//` says what divides whole here.
        let e = ctx.sql("SELECT x // 2 AS h FROM t").await.unwrap_err();
        assert!(
            planning_error(&e).ends_with(
                "(`//` is DuckDB's integer division: in DataFusion `/` of two integers divides \
                 whole, `7 / 2` is 3; `floor(x / y)` for a fraction)"
            ),
            "{}",
            planning_error(&e)
        );
        // Two columns of both sides named alone are one error each, in a
        // collection: still the query's fault, with the first one's hint.
        let Err(e) = ctx.sql("SELECT x, s FROM t JOIN t AS u USING (ts)").await else {
            panic!("x and s are of both sides")
        };
        assert!(
            matches!(e, datafusion::error::DataFusionError::Collection(_)),
            "{e:?}"
        );
        assert!(is_usage_error(&e));
        assert!(
            planning_error(&e).contains("(more than one table of the query has a column `x`"),
            "{}",
            planning_error(&e)
        );
        // A column of both sides named alone, and a correlated subquery
        // DataFusion cannot run, say what to write.
        let Err(e) = ctx
            .sql("SELECT t.s FROM t JOIN t AS u USING (x) WHERE x > 0")
            .await
        else {
            panic!("x is of both sides")
        };
        assert!(
            planning_error(&e).ends_with(
                "(more than one table of the query has a column `x`: name the one meant, \
                 `events.x` or the table's alias, `e.x`; DataFusion 55 asks for it after `JOIN \
                 ... USING (x)` too, where after a RIGHT or FULL JOIN SQL's `x` is \
                 `COALESCE(a.x, b.x)`)"
            ),
            "{}",
            planning_error(&e)
        );
        // Over a table, DataFusion plans it and cannot run it; over VALUES
        // with named columns, its optimizer fails on a column name.
        for sql in [
            "SELECT x FROM t AS a WHERE a.x > (SELECT min(b.y) FROM t AS b WHERE b.s = a.s AND \
             b.ts < a.ts)",
            "WITH b AS (SELECT * FROM (VALUES (1, 2)) v(k, w)) SELECT x, (SELECT sum(b.w) FROM \
             b WHERE b.w > t.x) FROM t",
        ] {
            let e = planning_error(&any_error(sql).await);
            assert!(
                e.contains(
                    "(a subquery that gives one value and refers to the outer query's columns \
                     other than with `=`"
                ),
                "{sql}: {e}"
            );
        }
        // Clauses, operators and types of other engines' SQL say what does
        // their job, and that runs.
        for (sql, says, runs) in [
            (
                "SELECT x FROM t WHERE s LIKE ANY ('a%', 'b%')",
                "`s LIKE 'a%' OR s LIKE 'b%'`, or one regular expression, `regexp_like(s, \
                 '^(a|b)')`)",
                "SELECT x FROM t WHERE s LIKE 'a%' OR s LIKE 'b%' OR regexp_like(s, '^(a|b)')",
            ),
            (
                "SELECT * RENAME (x AS id) FROM t",
                "(in DataFusion: `SELECT * EXCLUDE (event_id), event_id AS id`)",
                "SELECT * EXCLUDE (x), x AS id FROM t",
            ),
            (
                "SELECT * FROM unnest(make_array(1, 2)) WITH ORDINALITY",
                "`SELECT unnest(arr) AS x, unnest(generate_series(1, cardinality(arr))) AS n FROM t`)",
                "SELECT unnest(arr) AS x, unnest(generate_series(1, cardinality(arr))) AS n FROM t",
            ),
            (
                "SELECT x, v FROM t LATERAL VIEW explode(arr) u AS v",
                "a row per element: `SELECT x, unnest(arr) AS v FROM t`)",
                "SELECT x, unnest(arr) AS v FROM t",
            ),
            (
                "SELECT x FROM t CLUSTER BY x",
                "(Hive's; in DataFusion: `ORDER BY`)",
                "SELECT x FROM t ORDER BY x",
            ),
            (
                "SELECT x FROM t SORT BY x",
                "(Hive's; in DataFusion: `ORDER BY`)",
                "SELECT x FROM t ORDER BY x",
            ),
            (
                "SELECT condition XOR condition FROM t",
                "(for two booleans, XOR is `a <> b`)",
                "SELECT condition <> condition FROM t",
            ),
            (
                "SELECT x FROM t WHERE unnest(arr) = 1",
                "or test an element with `array_has(arr, 1)`)",
                "SELECT x FROM t WHERE array_has(arr, 1)",
            ),
            (
                "SELECT count(unnest(arr)) FROM t",
                "`SELECT count(v) FROM (SELECT unnest(arr) AS v FROM t)`, or test an element \
                 with `array_has(arr, 1)`)",
                "SELECT count(v) FROM (SELECT unnest(arr) AS v FROM t)",
            ),
            (
                "SELECT x FROM t AS a ORDER BY EXISTS (SELECT 1 FROM t AS b WHERE b.y = a.y)",
                "`SELECT x, (SELECT count(*) FROM t AS b WHERE b.y = a.y) > 0 AS found FROM t AS \
                 a ORDER BY found`)",
                "SELECT x, (SELECT count(*) FROM t AS b WHERE b.y = a.y) > 0 AS found FROM t AS a \
                 ORDER BY found",
            ),
            (
                "SELECT x FROM t AS a ORDER BY (SELECT count(*) FROM t AS b WHERE b.y = a.y)",
                "`SELECT x, (SELECT count(*) FROM t AS b WHERE b.y = a.y) > 0 AS found FROM t AS \
                 a ORDER BY found`)",
                "SELECT x FROM t ORDER BY x",
            ),
            (
                "SELECT (st).a FROM (SELECT named_struct('a', x) AS st FROM t)",
                "(read a field of a struct with brackets, `st['a']`, or name its table first, \
                 `t.st.a`; `struct(x, y)` names its fields c0, c1, ...)",
                "SELECT st['a'] AS a, q.st.a AS b, struct(x, y)['c0'] AS c FROM (SELECT \
                 named_struct('a', x) AS st, x, y FROM t) AS q",
            ),
            (
                "SELECT x FROM t # why",
                "(`#` begins no comment in DataFusion's SQL: `--` does, to the end of the line, \
                 and `/* ... */`)",
                "SELECT x FROM t -- why",
            ),
            (
                "SELECT x FROM t WHERE s RLIKE '^2024'",
                "Unsupported SQL: RLike (MySQL's and Spark's `REGEXP` and `RLIKE`; in \
                 DataFusion: `regexp_like(x, 'pattern')`, or `x ~ 'pattern'`)",
                "SELECT x FROM t WHERE regexp_like(s, '^2024') AND s ~ '^2024'",
            ),
            (
                "SELECT CAST(x AS INT64) FROM t",
                "Unsupported SQL type INT64 (in DataFusion: `BIGINT`)",
                "SELECT CAST(x AS BIGINT) FROM t",
            ),
            (
                "SELECT CAST(x AS FLOAT64) FROM t",
                "(in DataFusion: `DOUBLE`)",
                "SELECT CAST(x AS DOUBLE) FROM t",
            ),
            (
                "SELECT CAST(x AS HUGEINT) FROM t",
                "(in DataFusion: `DECIMAL(38, 0)`, or `DECIMAL(p, s)` for a fraction)",
                "SELECT CAST(x AS DECIMAL(38, 0)) FROM t",
            ),
            (
                "SELECT TRY_CAST(s AS TIMESTAMP_NTZ) FROM t",
                "(in DataFusion: `TIMESTAMP`)",
                "SELECT TRY_CAST(s AS TIMESTAMP) FROM t",
            ),
            (
                "SELECT CAST(properties AS JSON) FROM t",
                "(in DataFusion: `VARCHAR`: JSON is text here, read with `json_get_str(j, \
                 'key')` and its kin)",
                "SELECT json_get_str(CAST(properties AS VARCHAR), 'a') FROM t",
            ),
            (
                "SELECT CAST(x AS UBIGINT) FROM t",
                "(in DataFusion: `BIGINT UNSIGNED`)",
                "SELECT CAST(x AS BIGINT UNSIGNED) FROM t",
            ),
            (
                "SELECT CAST(s AS BYTES) FROM t",
                "(in DataFusion: `BYTEA`)",
                "SELECT CAST(s AS BYTEA) FROM t",
            ),
            (
                "SELECT CAST(x AS SERIAL) FROM t",
                "(in DataFusion: `BIGINT`, `INT`, `SMALLINT`, `DOUBLE`, `REAL`, `DECIMAL(p, s)`, \
                 `VARCHAR`, `BOOLEAN`, `DATE`, `TIMESTAMP`, `INTERVAL` or `BYTEA`)",
                "SELECT CAST(x AS INT) FROM t",
            ),
        ] {
            let said = match ctx.sql(sql).await {
                Err(e) => planning_error(&e),
                Ok(df) => planning_error(&df.collect().await.unwrap_err()),
            };
            assert!(said.ends_with(says), "{sql}: {said}");
            assert!(said.len() < 500, "{said}");
            ctx.sql(runs)
                .await
                .unwrap_or_else(|e| panic!("{runs}: {e}"))
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{runs}: {e}"));
        }
        // EXISTS or IN (subquery) outside WHERE, and an aggregate in ON, are
        // named without their debug dump, with what runs instead.
        for (sql, says) in [
            (
                "SELECT x, CASE WHEN EXISTS (SELECT 1 FROM t AS b WHERE b.y = a.y) THEN 1 END \
                 FROM t AS a",
                "This feature is not implemented: EXISTS or IN (subquery) outside WHERE",
            ),
            (
                "SELECT x, x IN (SELECT y FROM t) AS found FROM t",
                "This feature is not implemented: EXISTS or IN (subquery) outside WHERE",
            ),
            (
                "SELECT count(*) FROM t AS a JOIN t AS b ON a.x = b.x AND count(*) > 1",
                "This feature is not implemented: an aggregate in a join's ON does not run",
            ),
        ] {
            let said = planning_error(&run_error(sql).await);
            assert!(said.starts_with(says) && said.len() < 400, "{sql}: {said}");
        }
        for sql in [
            "SELECT x, (SELECT count(*) FROM t AS b WHERE b.y = a.y) > 0 AS found FROM t AS a",
            "SELECT count(*) FROM t AS a JOIN (SELECT y, count(*) AS n FROM t GROUP BY y) s ON \
             s.y = a.y AND s.n > 0",
        ] {
            runs(&ctx, sql).await;
        }
        // A window function in WHERE, HAVING or ON is refused as it plans,
        // saying to filter with QUALIFY or in an outer query; both run.
        for sql in [
            "SELECT x FROM t WHERE x > avg(x) OVER ()",
            "SELECT count(*) FROM t HAVING row_number() OVER () = 1",
            "SELECT a.x FROM t AS a JOIN t AS b ON a.x = b.x AND row_number() OVER () = 1",
            "SELECT x FROM t WHERE x IN (SELECT y FROM t WHERE y > avg(y) OVER ())",
        ] {
            let said = refused(&ctx, sql).await;
            assert!(
                said.starts_with("Error during planning: a window function, `")
                    && said.contains("(...) OVER (...)`, in WHERE, HAVING or a join's ON, which SQL computes before any window: filter on it with QUALIFY"),
                "{sql}: {said}"
            );
        }
        for sql in [
            "SELECT * FROM t QUALIFY x > avg(x) OVER ()",
            "SELECT * FROM (SELECT *, avg(x) OVER () AS a FROM t) WHERE x > a",
        ] {
            checked_rows(&ctx, sql).await;
        }
        // Text given to a function that takes only numbers says to cast it
        // or read the JSON member by type, without DataFusion's error for
        // each signature (its candidates are kept); a function that takes
        // text somewhere does not say so.
        for sql in [
            "SELECT sum(s) FROM t",
            "SELECT avg(properties->>'amount') FROM t",
            "SELECT round(s) FROM t",
            "SELECT abs(s) FROM t",
        ] {
            let e = any_error(sql).await;
            let said = planning_error(&e);
            assert!(
                !said.contains("failed to match any signature")
                    && said.contains("No function matches the given name and argument types '")
                    && said.contains("\tCandidate functions:\n")
                    && said.ends_with(
                        "\n(text where the function takes a number: cast it, `CAST(x AS \
                         DOUBLE)`, or `CAST(x AS DECIMAL(18, 2))` for money, TRY_CAST for NULL \
                         where it is not a number; read a member of `properties` by its type: \
                         `json_get_float(properties, 'amount')`)"
                    ),
                "{sql}: {said}"
            );
        }
        let e = any_error("SELECT lpad(s, 'x') FROM t").await;
        let said = planning_error(&e);
        assert!(
            said.contains("No function matches") && !said.contains("takes a number"),
            "{said}"
        );
        // IS [NOT] DISTINCT FROM before AND, OR or IS reads as SQL reads it
        // (DataFusion's parser took all that follows into its right side),
        // in any clause and in subqueries; as the operand of another
        // operator it is refused, saying where the parentheses go.
        let rows = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                let batches = planned(&ctx, sql, Default::default())
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .collect()
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                let mut rows = Vec::new();
                for b in &batches {
                    for r in 0..b.num_rows() {
                        rows.push(
                            b.columns()
                                .iter()
                                .map(|c| {
                                    datafusion::arrow::util::display::array_value_to_string(c, r)
                                        .unwrap()
                                })
                                .collect::<Vec<_>>()
                                .join(","),
                        );
                    }
                }
                rows
            }
        };
        for (sql, expected) in [
            (
                "SELECT true IS DISTINCT FROM false OR true AS a, false IS NOT DISTINCT FROM \
                 false AND false AS b, false AND true IS DISTINCT FROM true OR true AS c, NOT \
                 true IS DISTINCT FROM false OR true AS d, true IS DISTINCT FROM false IS NULL \
                 AS e, (NOT false IS DISTINCT FROM true AND false) AS g",
                vec!["true,false,true,true,false,false"],
            ),
            (
                "SELECT count(*) FROM t AS a JOIN t AS b ON a.x IS NOT DISTINCT FROM b.x AND \
                 a.y = b.y WHERE a.condition IS DISTINCT FROM false OR a.x > 1",
                vec!["1"],
            ),
            (
                "SELECT x FROM t WHERE x IN (SELECT y - 1 FROM t WHERE condition IS DISTINCT \
                 FROM true OR y > 0)",
                vec!["3"],
            ),
            (
                "SELECT CASE WHEN condition IS DISTINCT FROM true OR x > 1 THEN 'yes' END AS c \
                 FROM t",
                vec!["yes"],
            ),
        ] {
            assert_eq!(rows(sql).await, expected, "{sql}");
        }
        let sql = "SELECT 1 = NOT condition IS DISTINCT FROM false AND true FROM t";
        assert_eq!(
            planned(&ctx, sql, Default::default())
                .await
                .map(|_| ())
                .unwrap_err()
                .to_string(),
            "Error during planning: `1 = NOT condition IS DISTINCT FROM false AND true` does \
             not read as written: DataFusion's SQL parser takes all that follows `IS DISTINCT \
             FROM` as its right side, `condition IS DISTINCT FROM (false AND true)`; put the \
             comparison in parentheses: `(condition IS DISTINCT FROM false)`"
        );
        // A CAST in the SELECT list beside its operand, another CAST of it
        // or `*` is named as written (DataFusion 55 named it as its operand:
        // one name twice); a CAST alone keeps DataFusion's name.
        for (sql, names) in [
            (
                "SELECT x, CAST(x AS VARCHAR) FROM t",
                vec!["x", "CAST(x AS VARCHAR)"],
            ),
            (
                "SELECT CAST(t.x AS VARCHAR), x::DOUBLE, TRY_CAST(s AS INT) FROM t",
                vec!["CAST(t.x AS VARCHAR)", "x::DOUBLE", "t.s"],
            ),
            (
                "SELECT x + 1 AS a, CAST(x + 1 AS VARCHAR), CAST(y AS VARCHAR) FROM t",
                vec!["a", "t.x + Int64(1)", "t.y"],
            ),
            (
                "SELECT v FROM (SELECT x, CAST(x AS VARCHAR) FROM t) AS q(u, v) UNION ALL \
                 SELECT CAST(y AS VARCHAR) FROM t",
                vec!["v"],
            ),
            // A CAST inside a function or an operation is named so too,
            // parentheses or not; one alone keeps DataFusion's name.
            (
                "SELECT abs(x), abs(CAST(x AS DOUBLE)), signum(0), (signum(CAST(0 AS BIGINT))), \
                 x + 1, (CAST(x AS INT)) + 1, abs(CAST(y AS INT)) FROM t",
                vec![
                    "abs(t.x)",
                    "abs(CAST(x AS DOUBLE))",
                    "signum(Int64(0))",
                    "signum(CAST(0 AS BIGINT))",
                    "t.x + Int64(1)",
                    "(CAST(x AS INT)) + 1",
                    "abs(t.y)",
                ],
            ),
            // A body of one name twice whose column list names it.
            (
                "WITH c(a, b) AS (SELECT x, x FROM t) SELECT * FROM c",
                vec!["a", "b"],
            ),
            (
                "SELECT * FROM (SELECT 1, 1 UNION ALL SELECT y, y FROM t) AS q(a, b)",
                vec!["a", "b"],
            ),
        ] {
            let df = planned(&ctx, sql, Default::default())
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let got: Vec<_> = df
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            assert_eq!(got, names, "{sql}");
            df.collect().await.unwrap();
        }
        for (sql, name) in [
            ("SELECT *, CAST(d AS VARCHAR) FROM t", "CAST(d AS VARCHAR)"),
            (
                "SELECT a.*, CAST(a.d AS VARCHAR) FROM t AS a",
                "CAST(a.d AS VARCHAR)",
            ),
            // Another table's column beside `a.*` keeps DataFusion's name.
            (
                "SELECT a.*, CAST(b.d AS VARCHAR) FROM t AS a JOIN t AS b ON a.x = b.x",
                "b.d",
            ),
        ] {
            let df = planned(&ctx, sql, Default::default()).await.unwrap();
            assert_eq!(df.schema().fields().last().unwrap().name(), name, "{sql}");
            df.collect().await.unwrap();
        }
        // min or max of a map is refused as it plans (DataFusion 55 failed
        // as it ran, an internal error); the forms offered run.
        for sql in [
            "SELECT max(map(['a'], [x])) FROM t",
            "SELECT s, min(map(['a'], [x])) FROM t GROUP BY s",
            "SELECT max(map(['a'], [x])) OVER (ORDER BY ts) FROM t",
            "SELECT max(make_array(make_array(x))) FROM t",
            "SELECT min(named_struct('a', make_array(x))) OVER () FROM t",
            "SELECT s, max(make_array(named_struct('a', x))) FROM t GROUP BY s",
            "SELECT last_value(x ORDER BY map(['a'], [x])) FROM t",
            "SELECT s, array_agg(x ORDER BY make_array(make_array(x))) FROM t GROUP BY s",
            "SELECT max(s->'a') FROM t",
            "SELECT x, min(s->'a') OVER (ORDER BY ts) FROM t",
        ] {
            let said = refused(&ctx, sql).await;
            assert!(
                said.starts_with("Error during planning: `")
                    && said.contains(", which DataFusion 55 does not order")
                    && (said.contains(": take it of ") || said.contains(": order by a part")),
                "{sql}: {said}"
            );
        }
        let sql = "SELECT max(map(['a'], [x])['a']) AS v, max(make_array(make_array(x))[1]) AS \
                   l, max(named_struct('a', make_array(x))['a']) AS f, max(named_struct('a', \
                   named_struct('b', x))) AS n, max(make_array(x)) AS a, array_agg(x ORDER BY \
                   make_array(make_array(x))[1]) AS o, last_value(x ORDER BY map(['a'], \
                   [x])['a']) AS p, max(s->>'a') AS j, array_agg(x ORDER BY s->'a') AS u FROM t";
        checked_rows(&ctx, sql).await;
        // An interval with a first and a last field, and an ISO 8601
        // duration, say how DataFusion writes an interval, which runs.
        let e = ctx
            .sql("SELECT ts + INTERVAL '1:30' HOUR TO MINUTE FROM t")
            .await
            .unwrap_err();
        assert!(
            planning_error(&e).ends_with(
                "(an interval with a first and a last field, `INTERVAL '1:30' HOUR TO \
                 MINUTE`; in DataFusion, name each unit: `INTERVAL '1 hour 30 minutes'`)"
            ),
            "{}",
            planning_error(&e)
        );
        let e = any_error("SELECT ts + INTERVAL 'P1DT2H' FROM t").await;
        assert!(
            data_error_hint(&e.to_string()).starts_with(" (an ISO 8601 duration, 'P1DT2H'"),
            "{e}"
        );
        // A string or math function's error on a value says what to
        // write instead, which runs.
        for (bad, hint, ok) in [
            (
                "SELECT substr('abc', 1, x - 9) FROM t",
                " (substr's length",
                "SELECT substr('abc', 1, greatest(x - 9, 0)) FROM t",
            ),
            (
                "SELECT split_part('a,b', ',', x - x) FROM t",
                " (split_part counts fields from 1",
                "SELECT split_part('a,b', ',', 1) FROM t",
            ),
            (
                "SELECT sqrt(x - 9) FROM t",
                " (`CASE WHEN x >= 0 THEN sqrt(x) END`",
                "SELECT CASE WHEN x - 9 >= 0 THEN sqrt(x - 9) END FROM t",
            ),
        ] {
            let e = any_error(bad).await;
            assert!(
                data_error_hint(&e.to_string()).starts_with(hint),
                "{bad}: {e}"
            );
            runs(&ctx, ok).await;
        }
        for ok in [
            "SELECT ts + INTERVAL '1 hour 30 minutes' FROM t",
            "SELECT ts + INTERVAL '1 day 2 hours' FROM t",
        ] {
            runs(&ctx, ok).await;
        }
        // A window frame's EXCLUDE says what to write instead, which runs.
        let e = ctx
            .sql(
                "SELECT sum(x) OVER (ORDER BY ts ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING \
                 Exclude Current Row) FROM t",
            )
            .await
            .unwrap_err();
        assert!(
            planning_error(&e).ends_with(
                "(a window frame's EXCLUDE is not in DataFusion 55: for EXCLUDE CURRENT ROW, \
                 take the row out of the window's value, `sum(x) OVER (...) - x`, `count(*) \
                 OVER (...) - 1`)"
            ),
            "{}",
            planning_error(&e)
        );
        runs(
            &ctx,
            "SELECT sum(x) OVER (ORDER BY ts ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING) - x, \
             count(*) OVER (ORDER BY ts) - 1 FROM t",
        )
        .await;
        // first_value, last_value and nth_value over a window with other
        // than their arguments are refused as they plan (DataFusion 55
        // panicked on `first_value() OVER ()` and passed over a second
        // argument, Spark's skip-NULLs flag); the forms offered run.
        for (sql, says) in [
            (
                "SELECT first_value() OVER () FROM t",
                "`first_value` over a window takes one argument, the value: `first_value(x) \
                 OVER (...)`, given 0; to skip NULLs (Spark's `first_value(x, true)`), \
                 `first_value(x) IGNORE NULLS OVER (...)`",
            ),
            (
                "SELECT x FROM t WHERE x IN (SELECT last_value(y, true) OVER (ORDER BY ts) FROM \
                 t)",
                "`last_value` over a window takes one argument, the value: `last_value(x) OVER \
                 (...)`, given 2; to skip NULLs (Spark's `last_value(x, true)`), `last_value(x) \
                 IGNORE NULLS OVER (...)`",
            ),
            (
                "SELECT nth_value(x) OVER () FROM t",
                "`nth_value` over a window takes two arguments, the value and which row of the \
                 frame, a literal from 1: `nth_value(x, 2) OVER (...)`, given 1",
            ),
        ] {
            let said = refused(&ctx, sql).await;
            assert_eq!(said, format!("Error during planning: {says}"), "{sql}");
        }
        let sql = "SELECT first_value(maybe) IGNORE NULLS OVER (ORDER BY ts) AS f, \
                   last_value(x) OVER () AS l, nth_value(x, 1) OVER () AS n FROM t";
        checked_rows(&ctx, sql).await;
        // A RANGE frame without an offset (the default with ORDER BY) over
        // a key DataFusion cannot range over is its peers' rows, as GROUPS,
        // and keeps its name; with an offset it is refused, saying what to
        // order by instead.
        for key in [
            "named_struct('a', k)",
            "arrow_cast(k, 'Duration(Second)')",
            "CAST(concat('10:00:0', k) AS TIME)",
            "arrow_cast(CAST(k AS VARCHAR), 'Binary')",
            "map(['a'], [k])",
        ] {
            let sql = format!(
                "SELECT k, count(*) OVER (ORDER BY {key}), count(*) OVER (ORDER BY {key} DESC \
                 RANGE BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS f FROM (VALUES (1), \
                 (1), (2)) AS v(k) ORDER BY k"
            );
            let df = checked_plan(&sql, ctx.sql(&sql).await.unwrap()).unwrap();
            let name = df.schema().field(1).name().clone();
            assert!(
                name.starts_with("count(*) ORDER BY [")
                    && name.ends_with("RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"),
                "{name}"
            );
            let rows = df.collect().await.unwrap();
            let table = datafusion::arrow::util::pretty::pretty_format_batches(&rows)
                .unwrap()
                .to_string();
            let counts: Vec<_> = table
                .lines()
                .skip(3)
                .filter(|l| l.starts_with("| "))
                .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>()[2..4].join(","))
                .collect();
            assert_eq!(counts, ["2,2", "2,2", "3,3"], "{key}: {table}");
        }
        for (key, instead) in [
            (
                "CAST(ts AS TIME)",
                "order by its seconds, `ORDER BY date_part('epoch', t)`, with the offset in \
                 seconds (`3600 PRECEDING`), or use ROWS or GROUPS",
            ),
            (
                "named_struct('a', x)",
                "order by a number, text, date or timestamp, or use ROWS or GROUPS",
            ),
        ] {
            let sql = format!(
                "SELECT count(*) OVER (ORDER BY {key} RANGE BETWEEN INTERVAL '1 hour' PRECEDING \
                 AND CURRENT ROW) FROM t"
            );
            let e = checked_plan(&sql, ctx.sql(&sql).await.unwrap())
                .map(|_| ())
                .unwrap_err();
            assert!(is_usage_error(&e));
            let said = e.to_string();
            assert!(
                said.starts_with(
                    "Error during planning: a window frame `RANGE BETWEEN 1 hour PRECEDING AND \
                     CURRENT ROW` over an ORDER BY of type "
                ) && said.ends_with(&format!(
                    ": DataFusion 55 takes a RANGE offset only over a number, text, date or \
                     timestamp; {instead}"
                )),
                "{said}"
            );
        }
        let sql = "SELECT count(*) OVER (ORDER BY date_part('epoch', CAST(ts AS TIME)) RANGE \
                   BETWEEN 3600 PRECEDING AND CURRENT ROW) FROM t";
        checked_rows(&ctx, sql).await;
        // A column and a CAST of it in GROUP BY say to group by the column
        // alone, and that runs.
        let said = planning_error(
            &run_error("SELECT x, CAST(x AS VARCHAR) AS v, count(*) FROM t GROUP BY x, v").await,
        );
        assert!(
            said.ends_with(
                "(a column and a CAST of it in GROUP BY are one name twice in DataFusion 55, \
                 aliased or not: group by the column alone, `GROUP BY x`, and cast it in the \
                 SELECT list, `SELECT x, CAST(x AS VARCHAR) AS v`)"
            ),
            "{said}"
        );
        runs(
            &ctx,
            "SELECT x, CAST(x AS VARCHAR) AS v, count(*) FROM t GROUP BY x",
        )
        .await;
        // Two SELECT items of one name say to name one, and that runs.
        for sql in ["SELECT x, x FROM t", "SELECT 1, 1 FROM t"] {
            let said = planning_error(&ctx.sql(sql).await.unwrap_err());
            assert!(
                said.ends_with("name one with AS, `SELECT x, x AS x2`)"),
                "{said}"
            );
        }
        runs(&ctx, "SELECT x, x AS x2, 1, 1 AS one FROM t").await;
        // An outer column in an `unnest` in FROM, or in a LATERAL subquery
        // other than in `=`, is named without its debug dump, and the
        // SELECT-list unnest it points to runs.
        for (sql, column) in [
            (
                "SELECT x, u.v FROM t, unnest(make_array(t.x, t.y)) AS u(v)",
                "`t.x`",
            ),
            (
                "SELECT a.x, q.n FROM t AS a CROSS JOIN LATERAL (SELECT count(*) AS n FROM t AS b \
                 WHERE b.y > a.y) AS q",
                "`a.y`",
            ),
            (
                "SELECT a.x, q.y FROM t AS a CROSS JOIN LATERAL (SELECT b.y FROM t AS b WHERE \
                 b.x = a.x ORDER BY b.ts DESC LIMIT 1) AS q",
                "`a.x`",
            ),
        ] {
            let said = planning_error(&run_error(sql).await);
            assert!(
                said.starts_with(&format!(
                    "This feature is not implemented: the outer query's {column} in a LATERAL \
                     subquery, other than in `=` (or with ORDER BY and LIMIT), or in an `unnest` \
                     in FROM does not run"
                )) && !said.contains("Field {"),
                "{said}"
            );
        }
        // `||` before `+` or `-` reads as DataFusion binds it, and the
        // parentheses it offers run.
        let e = planned(&ctx, "SELECT s || 1 + 2 FROM t", Default::default())
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Error during planning: `s || 1 + 2` reads as `(s || 1) + 2`: in DataFusion's SQL \
             `||` binds as tightly as `*` and more tightly than `+` and `-`, where PostgreSQL \
             and DuckDB do the arithmetic first; put it in parentheses: `s || (1 + 2)`"
        );
        for (sql, read, instead) in [
            ("SELECT 1 + 2 || s FROM t", "1 + (2 || s)", "(1 + 2) || s"),
            ("SELECT s || x * 2 FROM t", "(s || x) * 2", "s || (x * 2)"),
        ] {
            let e = planned(&ctx, sql, Default::default()).await.unwrap_err();
            assert!(
                e.to_string()
                    .contains(&format!("reads as `{read}`: in DataFusion's SQL `||`"))
                    && e.to_string()
                        .ends_with(&format!("put it in parentheses: `{instead}`")),
                "{sql}: {e}"
            );
        }
        assert_eq!(
            table_of(
                &ctx,
                "SELECT s || (1 + 2) AS a, (1 + 2) || s AS b, 2 * 3 || s AS c FROM t",
                true,
            )
            .await
            .unwrap(),
            "+-------------+-------------+-------------+
| a           | b           | c           |
+-------------+-------------+-------------+
| 2024-03-153 | 32024-03-15 | 62024-03-15 |
+-------------+-------------+-------------+"
        );
        // The window it offers for each row's top rows runs.
        runs(
            &ctx,
            "SELECT a.x, q.y FROM t AS a JOIN (SELECT *, row_number() OVER (PARTITION BY b.x \
             ORDER BY b.ts DESC) AS r FROM t AS b) q ON q.x = a.x AND q.r <= 1",
        )
        .await;
        let said = planning_error(
            &any_error(
                "SELECT x FROM t AS a WHERE EXISTS (SELECT 1 FROM t AS b WHERE b.x = a.x AND \
                 EXISTS (SELECT 1 FROM t AS c WHERE c.y = a.y))",
            )
            .await,
        );
        assert!(
            said.ends_with(
                "(a subquery inside another subquery that names a column of the query two \
                 levels out does not run in DataFusion 55: name the middle subquery's column it \
                 equals instead, `EXISTS (SELECT 1 FROM b WHERE b.k = a.k AND EXISTS (SELECT 1 \
                 FROM c WHERE c.k = b.k))`, or join)"
            ),
            "{said}"
        );
        let said = planning_error(&any_error("SELECT count(*) FROM t GROUP BY ()").await);
        assert!(
            said.ends_with("(`GROUP BY ()` is one group of all the rows: leave GROUP BY out, `SELECT count(*) FROM events`; inside GROUPING SETS, `()` runs as it is)"),
            "{said}"
        );
        // A correlated subquery of one value that is no aggregate says
        // which aggregate gives it.
        let said = planning_error(
            &any_error(
                "WITH b AS (SELECT * FROM (VALUES (1, 2), (3, 4)) v(k, w)) SELECT x, (SELECT b.w FROM b \
                 WHERE b.k = t.x AND b.w = 5) FROM t",
            )
            .await,
        );
        assert!(
            said.ends_with(
                "(DataFusion 55 runs a subquery that refers to the outer query and gives one \
                 value only as an aggregate: `(SELECT max(b.y) FROM ... WHERE b.k = a.k)` where \
                 there is one row, or `first_value(b.y ORDER BY ...)` for the top row)"
            ),
            "{said}"
        );
        runs(&ctx, "SELECT x, unnest(make_array(t.x, t.y)) AS v FROM t").await;
        // A call that matches no signature is the SQL's, not a DataFusion
        // bug to report; date_trunc with a zone says where the zone goes.
        let e = ctx
            .sql("SELECT date_trunc('day', ts, 'Europe/Berlin') FROM t")
            .await
            .unwrap_err();
        let said = planning_error(&e);
        assert!(!said.contains("bug"), "{said}");
        assert!(!said.contains("Internal error"), "{said}");
        assert!(
            said.ends_with(
                "(DataFusion's `date_trunc` takes no time zone: `date_trunc('day', ts AT TIME \
                 ZONE 'Europe/Berlin')`)"
            ),
            "{said}"
        );
        runs(
            &ctx,
            "SELECT date_trunc('day', ts AT TIME ZONE 'Europe/Berlin') FROM t",
        )
        .await;
        // A join DataFusion's SQL does not take says what to write.
        for (sql, says) in [
            (
                "SELECT count(*) FROM t a SEMI JOIN t b ON a.x = b.x",
                "This feature is not implemented: Unsupported JOIN operator Semi (in DataFusion: \
                 `LEFT SEMI JOIN`, or `WHERE EXISTS (SELECT 1 FROM ... WHERE ...)`)",
            ),
            (
                "SELECT count(*) FROM t a ANTI JOIN t b USING (x)",
                "This feature is not implemented: Unsupported JOIN operator Anti (in DataFusion: \
                 `LEFT ANTI JOIN`, or `WHERE NOT EXISTS (SELECT 1 FROM ... WHERE ...)`)",
            ),
        ] {
            let e = ctx.sql(sql).await.unwrap_err();
            assert_eq!(planning_error(&e), says, "{sql}");
        }
        let e = ctx
            .sql("SELECT count(*) FROM t a ASOF JOIN t b ON a.x = b.x AND a.ts >= b.ts")
            .await
            .unwrap_err();
        assert!(
            planning_error(&e).ends_with(&format!("(an `ASOF JOIN`; in DataFusion: {ASOF})")),
            "{}",
            planning_error(&e)
        );
        // What they offer runs.
        for sql in [
            "SELECT count(*) FROM t a LEFT SEMI JOIN t b ON a.x = b.x",
            "SELECT count(*) FROM t a LEFT ANTI JOIN t b USING (x)",
            "SELECT a.x FROM t a JOIN t b ON a.x = b.x AND b.t1 <= a.ts QUALIFY row_number() \
             OVER (PARTITION BY a.x ORDER BY b.t1 DESC) = 1",
        ] {
            runs(&ctx, sql).await;
        }
        // Another function DataFusion lacks keeps its guess.
        let e = ctx.sql("SELECT nosuchfn(x) FROM t").await.unwrap_err();
        assert_eq!(planning_error(&e), e.to_string());
    }
}
