//! Writing a query's rows as Hive-partitioned Parquet, one directory per
//! date, with memory bounded however many dates and rows there are.
//!
//! DataFusion's partitioned write opens a Parquet writer for every
//! partition it meets and keeps each open until the input ends. A writer
//! costs ~200 KB however few rows it holds (the Parquet crate gives each
//! column a zstd compressor, a decompressor it never uses and, for
//! dictionary columns, an interner) plus its row group's encoded rows, so
//! a rebuild of years of dates held one per date and table at once: ten
//! years of 20 events a day (73k events, 3,650 dates) peaked at 2.5 GB in
//! silver, ten years of 800 a day (3M events) at 2.9 GB.
//!
//! Here a date gets a writer of its own (fed as DataFusion's are, on a
//! task of its own) once it has [`OPEN_AT_BYTES`] of rows, when the
//! writer's cost is small beside its rows, and only while fewer than
//! [`MAX_OPEN`] are open (DuckDB's partitioned writes keep 100). The rows of
//! the other dates are held: the input batches themselves, with each
//! date's row numbers in them. Beyond [`HELD_BYTES`] (or what the memory
//! pool grants) the held rows go to a spill file, a chunk per date, in the
//! run's spill directory. When the input ends, each of those dates is
//! written in one go: its spilled chunks, then its rows still held. Every
//! date still gets one file per write, its rows in the order they came.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, interleave_record_batch, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::config::TableParquetOptions;
use datafusion::execution::SpillFile;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_writer::ArrowWriterOptions;
use datafusion::parquet::file::properties::WriterPropertiesBuilder;
use datafusion::prelude::DataFrame;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::time::format_date32;

/// A date's rows (Arrow bytes) at which it gets a writer of its own: about
/// what an open writer costs, so neither the held rows nor the writers
/// outgrow the rows by much.
pub const OPEN_AT_BYTES: usize = 256 << 10;

/// At most this many dates of one write have a writer open at once; the
/// others' rows are held, then spilled, and written when the input ends.
pub const MAX_OPEN: usize = 100;

/// Input rows held for the dates without a writer (at most; less if the
/// memory pool grants less) before they go to the spill file.
pub const HELD_BYTES: usize = 64 << 20;

/// Batches waiting for an open date's writer (DataFusion's default too).
const CHANNEL_BATCHES: usize = 2;

/// Distinguishes the files of the writes in this process (every write goes
/// to a staging directory of this run).
static WRITES: AtomicU64 = AtomicU64::new(0);

/// Write `df`'s rows under `dir` as `column=YYYY-MM-DD/*.parquet`, without
/// the `column` (a Date32 column, never NULL) in the files, with the
/// Parquet `options`.
pub async fn write_by_date(
    df: DataFrame,
    dir: &Path,
    column: &str,
    options: TableParquetOptions,
) -> Result<()> {
    write_with_limits(df, dir, column, options, Limits::from_env()).await
}

/// [`OPEN_AT_BYTES`], [`MAX_OPEN`] and [`HELD_BYTES`] (smaller in tests).
#[derive(Clone, Copy)]
struct Limits {
    open_at: usize,
    max_open: usize,
    held: usize,
}

impl Limits {
    /// The defaults, with `EVLAKE_HELD_KB` for [`HELD_BYTES`] if set (tests
    /// spill every batch with 0).
    fn from_env() -> Limits {
        let held = std::env::var("EVLAKE_HELD_KB")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(HELD_BYTES, |kb| kb << 10);
        Limits {
            held,
            ..Limits::default()
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            open_at: OPEN_AT_BYTES,
            max_open: MAX_OPEN,
            held: HELD_BYTES,
        }
    }
}

async fn write_with_limits(
    df: DataFrame,
    dir: &Path,
    column: &str,
    mut options: TableParquetOptions,
    limits: Limits,
) -> Result<()> {
    let schema = df.schema().as_arrow();
    let key = schema.index_of(column)?;
    if schema.field(key).data_type() != &DataType::Date32 {
        bail!("internal error: {column} to partition by is not a date");
    }
    let keep: Vec<usize> = (0..schema.fields().len()).filter(|&i| i != key).collect();
    let file_schema = Arc::new(schema.project(&keep)?);
    let skip_arrow_metadata = options.global.skip_arrow_metadata;
    if !skip_arrow_metadata {
        options.arrow_schema(&file_schema);
    }
    let files = Files {
        dir: dir.to_path_buf(),
        column: column.to_string(),
        write: WRITES.fetch_add(1, Ordering::Relaxed),
        schema: file_schema,
        options: ArrowWriterOptions::new()
            .with_properties(WriterPropertiesBuilder::try_from(&options)?.build())
            .with_skip_arrow_metadata(skip_arrow_metadata),
    };
    let task_ctx = df.task_ctx();
    let pool = Arc::clone(task_ctx.memory_pool());
    // The session's parallelism (one per core): how many tasks write the
    // dates left for the end.
    let tasks = task_ctx.session_config().target_partitions().max(1);
    let mut w = Write {
        held: Held {
            reservation: MemoryConsumer::new("evlake held partitions")
                .with_can_spill(true)
                .register(&pool),
            batches: Vec::new(),
            bytes: 0,
        },
        files,
        pool,
        runtime: task_ctx.runtime_env(),
        limits,
        dates: HashMap::new(),
        open: JoinSet::new(),
        opened: 0,
        spill: None,
    };
    let mut stream = df.execute_stream().await?;
    while let Some(batch) = stream.next().await.transpose()? {
        let days = batch.column(key).as_primitive::<Date32Type>();
        if days.null_count() > 0 {
            bail!("internal error: a row without its {column} to partition by");
        }
        if !w.add(batch.project(&keep)?, days.values()).await? {
            // A writer failed: its error is below.
            break;
        }
    }
    w.finish(tasks).await
}

/// A date of the write.
enum Date {
    /// The channel to its writer.
    Open(mpsc::Sender<RecordBatch>),
    /// Written when the input ends: its `spilled` chunks (batch numbers in
    /// the spill file), then its `held` rows (batch and row numbers in
    /// [`Held::batches`]); `bytes` is the size of all its rows so far.
    Later {
        spilled: Vec<usize>,
        held: Vec<(usize, usize)>,
        bytes: usize,
    },
}

/// A date written when the input ends: the day, its spilled chunks, its
/// held rows (see [`Date::Later`]).
type Left = (i32, Vec<usize>, Vec<(usize, usize)>);

/// Input batches kept for the rows of dates without a writer.
struct Held {
    batches: Vec<RecordBatch>,
    bytes: usize,
    reservation: MemoryReservation,
}

/// One write's state while its input comes.
struct Write {
    files: Files,
    pool: Arc<dyn MemoryPool>,
    runtime: Arc<RuntimeEnv>,
    limits: Limits,
    dates: HashMap<i32, Date>,
    /// The writer tasks.
    open: JoinSet<Result<()>>,
    /// Writers opened before the input ended.
    opened: usize,
    held: Held,
    spill: Option<Spill>,
}

impl Write {
    /// Take one input batch (`days`: each row's date). False if a date's
    /// writer has failed.
    async fn add(&mut self, rows: RecordBatch, days: &[i32]) -> Result<bool> {
        let batch_no = self.held.batches.len();
        let rows_bytes = sliced_size(&rows);
        let row_bytes = rows_bytes / rows.num_rows().max(1);
        let mut keep = false;
        for (day, indices) in split(days) {
            let date = self.dates.entry(day).or_insert_with(|| Date::Later {
                spilled: Vec::new(),
                held: Vec::new(),
                bytes: 0,
            });
            match date {
                Date::Open(tx) => {
                    if tx.send(part(&rows, indices)?).await.is_err() {
                        return Ok(false);
                    }
                }
                Date::Later {
                    spilled,
                    held,
                    bytes,
                } => {
                    *bytes += indices.len() * row_bytes;
                    // A date that spilled stays to the end: its spilled
                    // chunks come before the rows a writer would get.
                    if spilled.is_empty()
                        && *bytes >= self.limits.open_at
                        && self.opened < self.limits.max_open
                    {
                        let mut batches = Vec::new();
                        if !held.is_empty() {
                            batches.push(interleave_record_batch(&refs(&self.held.batches), held)?);
                        }
                        batches.push(part(&rows, indices)?);
                        self.opened += 1;
                        *date = Date::Open(self.files.spawn_writer(
                            day,
                            batches,
                            &self.pool,
                            &mut self.open,
                        )?);
                    } else {
                        held.extend(indices.iter().map(|&i| (batch_no, i as usize)));
                        keep = true;
                    }
                }
            }
        }
        if keep {
            self.held.bytes += rows_bytes;
            self.held.batches.push(rows);
            if self.held.bytes > self.limits.held
                || self.held.reservation.try_resize(self.held.bytes).is_err()
            {
                self.spill_held()?;
            }
        }
        Ok(true)
    }

    /// Move every held row to the spill file, a chunk per date.
    fn spill_held(&mut self) -> Result<()> {
        let spill = match &mut self.spill {
            Some(s) => s,
            None => self
                .spill
                .insert(Spill::create(&self.runtime, &self.files.schema)?),
        };
        let batches = refs(&self.held.batches);
        for date in self.dates.values_mut() {
            if let Date::Later { spilled, held, .. } = date
                && !held.is_empty()
            {
                spilled.push(spill.write(&interleave_record_batch(&batches, held)?)?);
                *held = Vec::new();
            }
        }
        self.held.batches.clear();
        self.held.bytes = 0;
        self.held.reservation.resize(0);
        Ok(())
    }

    /// Close the open dates' writers, write the other dates, a file each,
    /// `tasks` at a time (dealt round-robin, so each task gets a similar
    /// share), and wait for every file.
    async fn finish(self, tasks: usize) -> Result<()> {
        let Write {
            files,
            dates,
            mut open,
            held,
            spill,
            ..
        } = self;
        if let Some(s) = &spill {
            crate::fault::trace_note(&format!(
                "partitioned write spilled {} chunk(s) of held rows",
                s.batches
            ));
        }
        let spill = spill.map(Spill::finish).transpose()?;
        let held_batches = Arc::new(held.batches);
        let mut shares: Vec<Vec<Left>> = (0..tasks).map(|_| Vec::new()).collect();
        // An open date's channel drops here, and its writer closes its file.
        let later = dates.into_iter().filter_map(|(day, date)| match date {
            Date::Later { spilled, held, .. } => Some((day, spilled, held)),
            Date::Open(_) => None,
        });
        for (i, date) in later.enumerate() {
            shares[i % tasks].push(date);
        }
        for share in shares.into_iter().filter(|s| !s.is_empty()) {
            let files = files.clone();
            let spill = spill.clone();
            let held_batches = Arc::clone(&held_batches);
            open.spawn(async move {
                let mut chunks = spill.as_ref().map(Spilled::reader).transpose()?;
                for (day, spilled, held) in share {
                    let mut writer = files.create(day)?;
                    for chunk in spilled {
                        let reader = chunks
                            .as_mut()
                            .context("internal error: a spilled chunk without its spill file")?;
                        writer.write(&reader.read(chunk)?)?;
                    }
                    if !held.is_empty() {
                        writer.write(&interleave_record_batch(&refs(&held_batches), &held)?)?;
                    }
                    writer.close()?;
                }
                anyhow::Ok(())
            });
        }
        let mut failed = None;
        while let Some(done) = open.join_next().await {
            if let Err(e) = done.context("a Parquet writer panicked").and_then(|r| r) {
                failed.get_or_insert(e);
            }
        }
        drop(held.reservation);
        failed.map_or(Ok(()), Err)
    }
}

/// The bytes of `batch`'s rows: of a slice (as an operator's output
/// batches often are), not of the whole buffers it shares.
fn sliced_size(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

fn refs(batches: &[RecordBatch]) -> Vec<&RecordBatch> {
    batches.iter().collect()
}

/// `rows`' rows at `indices` (all of them without a copy).
fn part(rows: &RecordBatch, indices: Vec<u32>) -> Result<RecordBatch> {
    if indices.len() == rows.num_rows() {
        return Ok(rows.clone());
    }
    Ok(take_record_batch(rows, &UInt32Array::from(indices))?)
}

/// Held rows moved out of memory: an Arrow IPC file in the run's spill
/// directory (DataFusion's disk manager, which counts its size and
/// deletes it when the last handle drops), a batch per date and spill.
/// Arrow IPC files keep one dictionary per column, so dictionary columns
/// are spilled as their values and cast back when read.
struct Spill {
    file: Arc<dyn SpillFile>,
    writer: FileWriter<BufWriter<Box<dyn datafusion::execution::SpillWriter>>>,
    schema: SchemaRef,
    plain: SchemaRef,
    batches: usize,
}

impl Spill {
    fn create(runtime: &Arc<RuntimeEnv>, schema: &SchemaRef) -> Result<Spill> {
        let file = runtime
            .disk_manager
            .create_tmp_file("evlake partitioned write")?;
        let plain = Arc::new(Schema::new_with_metadata(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_data_type(plain_type(f.data_type())))
                .collect::<Vec<Field>>(),
            schema.metadata().clone(),
        ));
        let writer = FileWriter::try_new(BufWriter::new(file.open_writer()?), &plain)?;
        Ok(Spill {
            file,
            writer,
            schema: Arc::clone(schema),
            plain,
            batches: 0,
        })
    }

    /// Append `batch`; its number in the file.
    fn write(&mut self, batch: &RecordBatch) -> Result<usize> {
        self.writer
            .write(&cast_to(batch, &self.plain)?)
            .context("writing the partitioned write's spill file")?;
        self.batches += 1;
        Ok(self.batches - 1)
    }

    fn finish(mut self) -> Result<Spilled> {
        self.writer
            .finish()
            .context("writing the partitioned write's spill file")?;
        Ok(Spilled {
            file: self.file,
            schema: self.schema,
        })
    }
}

/// A finished spill file and the schema its batches are read back as.
#[derive(Clone)]
struct Spilled {
    file: Arc<dyn SpillFile>,
    schema: SchemaRef,
}

impl Spilled {
    fn reader(&self) -> Result<Chunks> {
        let path = self
            .file
            .path()
            .context("internal error: the spill file is not a local file")?;
        let f = File::open(path)
            .with_context(|| format!("failed to open the spill file `{}`", path.display()))?;
        Ok(Chunks {
            reader: FileReader::try_new(BufReader::new(f), None)?,
            schema: Arc::clone(&self.schema),
        })
    }
}

/// Random access to a finished spill file's batches.
struct Chunks {
    reader: FileReader<BufReader<File>>,
    schema: SchemaRef,
}

impl Chunks {
    fn read(&mut self, chunk: usize) -> Result<RecordBatch> {
        self.reader.set_index(chunk)?;
        let batch = self
            .reader
            .next()
            .context("internal error: a spilled chunk is missing")??;
        cast_to(&batch, &self.schema)
    }
}

/// `t` without dictionaries: their value types, also inside nested types.
fn plain_type(t: &DataType) -> DataType {
    let field =
        |f: &Arc<Field>| Arc::new(f.as_ref().clone().with_data_type(plain_type(f.data_type())));
    match t {
        DataType::Dictionary(_, values) => plain_type(values),
        DataType::List(f) => DataType::List(field(f)),
        DataType::LargeList(f) => DataType::LargeList(field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(field(f), *n),
        DataType::Map(f, sorted) => DataType::Map(field(f), *sorted),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(field).collect()),
        other => other.clone(),
    }
}

/// `batch` with its columns cast to `schema`'s types (none if they match).
fn cast_to(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema().fields() == schema.fields() {
        return Ok(RecordBatch::try_new(
            Arc::clone(schema),
            batch.columns().to_vec(),
        )?);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| Ok(cast(c, f.data_type())?))
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// Where and how the files of one write go.
#[derive(Clone)]
struct Files {
    dir: PathBuf,
    column: String,
    write: u64,
    schema: SchemaRef,
    options: ArrowWriterOptions,
}

impl Files {
    /// A new file in `day`'s directory (one file per date and write).
    fn create(&self, day: i32) -> Result<ArrowWriter<File>> {
        let part = self
            .dir
            .join(format!("{}={}", self.column, format_date32(day)));
        fs::create_dir_all(&part)
            .with_context(|| format!("failed to create `{}`", part.display()))?;
        let path = part.join(format!("part-{:05}.parquet", self.write));
        let file = File::create_new(&path)
            .with_context(|| format!("failed to create `{}`", path.display()))?;
        Ok(ArrowWriter::try_new_with_options(
            file,
            Arc::clone(&self.schema),
            self.options.clone(),
        )?)
    }

    /// A task writing `day`'s file: `batches`, then what the returned
    /// channel brings, closing the file when the channel closes.
    fn spawn_writer(
        &self,
        day: i32,
        batches: Vec<RecordBatch>,
        pool: &Arc<dyn MemoryPool>,
        tasks: &mut JoinSet<Result<()>>,
    ) -> Result<mpsc::Sender<RecordBatch>> {
        let mut writer = self.create(day)?;
        let reservation: MemoryReservation =
            MemoryConsumer::new(format!("evlake writer {}", format_date32(day))).register(pool);
        let (tx, mut rx) = mpsc::channel::<RecordBatch>(CHANNEL_BATCHES);
        tasks.spawn(async move {
            for b in &batches {
                writer.write(b)?;
            }
            drop(batches);
            reservation.try_resize(writer.memory_size())?;
            while let Some(b) = rx.recv().await {
                writer.write(&b)?;
                reservation.try_resize(writer.memory_size())?;
            }
            writer.close()?;
            anyhow::Ok(())
        });
        Ok(tx)
    }
}

/// Each date's row numbers in `days`, in order of first appearance.
fn split(days: &[i32]) -> Vec<(i32, Vec<u32>)> {
    let Some(&first) = days.first() else {
        return Vec::new();
    };
    if days.iter().all(|&d| d == first) {
        return vec![(first, (0..days.len() as u32).collect())];
    }
    let mut order: Vec<(i32, Vec<u32>)> = Vec::new();
    let mut at: HashMap<i32, usize> = HashMap::new();
    for (i, &d) in days.iter().enumerate() {
        let n = *at.entry(d).or_insert_with(|| {
            order.push((d, Vec::new()));
            order.len() - 1
        });
        order[n].1.push(i as u32);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Date32Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::{SessionConfig, SessionContext};

    fn batch(days: &[i32], values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int64, false),
            Field::new("event_date", DataType::Date32, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(values.to_vec())),
                Arc::new(Date32Array::from(days.to_vec())),
            ],
        )
        .unwrap()
    }

    fn batches_in(file: &Path) -> Vec<RecordBatch> {
        datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
            File::open(file).unwrap(),
            1024,
        )
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
    }

    /// Per date directory: its files, and the `v` values in file order.
    fn read(dir: &Path) -> Vec<(String, usize, Vec<i64>)> {
        let mut out = Vec::new();
        let mut parts: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        parts.sort();
        for part in parts {
            let files: Vec<_> = fs::read_dir(&part)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            let mut values = Vec::new();
            for f in &files {
                for b in batches_in(f) {
                    assert_eq!(b.num_columns(), 1, "the date is in the path, not the file");
                    values.extend(
                        b.column(0)
                            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                            .values(),
                    );
                }
            }
            let name = part.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, files.len(), values));
        }
        out
    }

    async fn write(batches: Vec<RecordBatch>, dir: &Path) {
        write_limited(batches, dir, Limits::default()).await;
    }

    async fn write_limited(batches: Vec<RecordBatch>, dir: &Path, limits: Limits) {
        // One partition: the rows reach the write in the order given.
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
        let df = ctx.read_batches(batches).unwrap();
        write_with_limits(
            df,
            dir,
            "event_date",
            TableParquetOptions::default(),
            limits,
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn dates_past_the_open_writers_spill_and_keep_every_row_in_order() {
        // 40 batches over 6 dates in a scrambled order, each row's value
        // its position in the input.
        let mut batches = Vec::new();
        let mut expected: Vec<Vec<i64>> = vec![Vec::new(); 6];
        let mut v = 0i64;
        for b in 0..40usize {
            let days: Vec<i32> = (0..(b % 7 + 1))
                .map(|i| ((b * 5 + i * 3) % 6) as i32)
                .collect();
            let values: Vec<i64> = days
                .iter()
                .map(|_| {
                    v += 1;
                    v
                })
                .collect();
            for (d, x) in days.iter().zip(&values) {
                expected[*d as usize].push(*x);
            }
            batches.push(batch(&days, &values));
        }
        let expected: Vec<(String, usize, Vec<i64>)> = expected
            .into_iter()
            .enumerate()
            .map(|(d, vals)| (format!("event_date={}", format_date32(d as i32)), 1, vals))
            .collect();
        for limits in [
            // Everything held to the end.
            Limits::default(),
            // One writer (the first date), every other row spilled at once.
            Limits {
                open_at: 1,
                max_open: 1,
                held: 1,
            },
            // Two writers; held rows spill every few batches, and some are
            // still held at the end.
            Limits {
                open_at: 1,
                max_open: 2,
                held: 3000,
            },
            // No writer until the end: every date from spilled chunks.
            Limits {
                open_at: 1,
                max_open: 0,
                held: 1,
            },
            // Dates big enough to open once they have spilled: they stay
            // to the end.
            Limits {
                open_at: 200,
                max_open: 6,
                held: 1,
            },
            // Dates open once big enough, some after their rows were held.
            Limits {
                open_at: 200,
                max_open: 3,
                held: 1 << 20,
            },
        ] {
            let tmp = tempfile::tempdir().unwrap();
            write_limited(batches.clone(), tmp.path(), limits).await;
            assert!(
                read(tmp.path()) == expected,
                "a date lost rows or their order with max_open {}, held {}",
                limits.max_open,
                limits.held
            );
        }
    }

    #[tokio::test]
    async fn a_dictionary_column_spills_as_its_values_and_comes_back_a_dictionary() {
        use datafusion::arrow::array::{DictionaryArray, StringArray};
        use datafusion::arrow::datatypes::Int32Type;
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", dict.clone(), true),
            Field::new("event_date", DataType::Date32, false),
        ]));
        // Each batch has a dictionary of its own.
        let batches: Vec<RecordBatch> = [vec!["a", "b", "a"], vec!["c", "a", "c"]]
            .into_iter()
            .map(|vals| {
                let s: DictionaryArray<Int32Type> = vals.into_iter().collect();
                RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![Arc::new(s), Arc::new(Date32Array::from(vec![0, 1, 0]))],
                )
                .unwrap()
            })
            .collect();
        let tmp = tempfile::tempdir().unwrap();
        let limits = Limits {
            open_at: usize::MAX,
            max_open: 0,
            held: 1,
        };
        write_limited(batches, tmp.path(), limits).await;
        let mut got = Vec::new();
        for date in ["1970-01-01", "1970-01-02"] {
            let dir = tmp.path().join(format!("event_date={date}"));
            let file = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
            for b in batches_in(&file) {
                assert_eq!(b.schema().field(0).data_type(), &dict);
                let s = cast(b.column(0), &DataType::Utf8).unwrap();
                let s = s.as_any().downcast_ref::<StringArray>().unwrap();
                got.push((
                    date,
                    s.iter().map(|v| v.unwrap().to_string()).collect::<Vec<_>>(),
                ));
            }
        }
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            got,
            [
                ("1970-01-01", strings(&["a", "a", "c", "c"])),
                ("1970-01-02", strings(&["b", "a"])),
            ]
        );
    }

    #[tokio::test]
    async fn every_date_gets_one_file_with_its_rows_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            vec![
                batch(&[0, 1, 0, 2], &[1, 2, 3, 4]),
                batch(&[2, 2], &[5, 6]),
                batch(&[1, 0], &[7, 8]),
            ],
            tmp.path(),
        )
        .await;
        assert_eq!(
            read(tmp.path()),
            [
                ("event_date=1970-01-01".to_string(), 1, vec![1, 3, 8]),
                ("event_date=1970-01-02".to_string(), 1, vec![2, 7]),
                ("event_date=1970-01-03".to_string(), 1, vec![4, 5, 6]),
            ]
        );
    }

    #[tokio::test]
    async fn a_big_date_is_written_as_it_comes_into_the_same_one_file() {
        // Date 1 passes OPEN_AT_BYTES after a few batches, so its writer
        // opens mid-stream; date 0 stays buffered to the end.
        let tmp = tempfile::tempdir().unwrap();
        let rows = OPEN_AT_BYTES / 8 / 4;
        let mut batches = Vec::new();
        let mut expected: Vec<i64> = Vec::new();
        for b in 0..10i64 {
            let values: Vec<i64> = (0..rows as i64).map(|i| b * 1_000_000 + i).collect();
            expected.extend(&values);
            batches.push(batch(&vec![1; rows], &values));
            batches.push(batch(&[0], &[b]));
        }
        write(batches, tmp.path()).await;
        let got = read(tmp.path());
        assert_eq!(
            got[0],
            ("event_date=1970-01-01".to_string(), 1, (0..10).collect())
        );
        assert_eq!(got[1].1, 1);
        assert!(
            got[1].2 == expected,
            "date 1's rows are not all there in order"
        );
    }

    #[tokio::test]
    async fn no_rows_write_no_files() {
        let tmp = tempfile::tempdir().unwrap();
        write(vec![batch(&[], &[])], tmp.path()).await;
        assert!(read(tmp.path()).is_empty());
    }
}
