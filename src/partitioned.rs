//! Writing a query's rows as Hive-partitioned Parquet, one directory per
//! date, with memory that grows with the rows rather than the dates.
//!
//! DataFusion's partitioned write opens a Parquet writer for every
//! partition it meets and keeps each open until the input ends. A writer
//! costs ~200 KB however few rows it holds (the Parquet crate gives each
//! column a zstd compressor, a decompressor it never uses and, for
//! dictionary columns, an interner), so a rebuild of years of dates held
//! one per date and table at once: ten years of 20 events a day (73k
//! events, 3,650 dates) peaked at 2.5 GB in silver and 1 GB in gold.
//!
//! Here a date's rows are first buffered as Arrow batches; a date gets a
//! writer of its own (fed as DataFusion's are, on a task of its own) only
//! once it has buffered [`OPEN_AT_BYTES`], when the writer's cost is small
//! beside its rows. When the input ends, the dates still buffered are
//! written a few at a time, each file opened, written and closed in one
//! go. Every date still gets one file, its rows in the order they came.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::datatypes::{Date32Type, SchemaRef};
use datafusion::config::TableParquetOptions;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_writer::ArrowWriterOptions;
use datafusion::parquet::file::properties::WriterPropertiesBuilder;
use datafusion::prelude::DataFrame;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::time::format_date32;

/// A date's buffered rows (Arrow bytes) at which it gets a writer of its
/// own: about what an open writer costs, so neither the buffers nor the
/// writers outgrow the rows by much.
pub const OPEN_AT_BYTES: usize = 256 << 10;

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
    mut options: TableParquetOptions,
) -> Result<()> {
    let schema = df.schema().as_arrow();
    let key = schema.index_of(column)?;
    if schema.field(key).data_type() != &datafusion::arrow::datatypes::DataType::Date32 {
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
    // dates still buffered at the end.
    let tasks = task_ctx.session_config().target_partitions().max(1);
    let buffered_bytes = MemoryConsumer::new("evlake buffered partitions").register(&pool);
    let mut stream = df.execute_stream().await?;
    let mut dates: HashMap<i32, Date> = HashMap::new();
    let mut open = JoinSet::new();
    let mut buffered = 0usize;
    'read: while let Some(batch) = stream.next().await.transpose()? {
        let days = batch.column(key).as_primitive::<Date32Type>();
        if days.null_count() > 0 {
            bail!("internal error: a row without its {column} to partition by");
        }
        let rows = batch.project(&keep)?;
        for (day, rows) in split(&rows, days.values())? {
            let date = dates
                .entry(day)
                .or_insert_with(|| Date::Buffered(Vec::new(), 0));
            match date {
                Date::Buffered(batches, bytes) => {
                    let size = rows.get_array_memory_size();
                    batches.push(rows);
                    *bytes += size;
                    buffered += size;
                    if *bytes >= OPEN_AT_BYTES {
                        buffered -= *bytes;
                        let batches = std::mem::take(batches);
                        *date = Date::Open(files.spawn_writer(day, batches, &pool, &mut open)?);
                    }
                    buffered_bytes.resize(buffered);
                }
                Date::Open(tx) => {
                    if tx.send(rows).await.is_err() {
                        // Its writer failed: its error is below.
                        break 'read;
                    }
                }
            }
        }
    }
    // The dates still buffered, a file each, `tasks` at a time (dealt
    // round-robin, so each task gets a similar share). An open date's
    // channel drops here, and its writer closes its file.
    let mut shares: Vec<Vec<(i32, Vec<RecordBatch>)>> = (0..tasks).map(|_| Vec::new()).collect();
    let buffered_dates = dates.into_iter().filter_map(|(day, date)| match date {
        Date::Buffered(batches, _) => Some((day, batches)),
        Date::Open(_) => None,
    });
    for (i, date) in buffered_dates.enumerate() {
        shares[i % tasks].push(date);
    }
    for share in shares.into_iter().filter(|s| !s.is_empty()) {
        let files = files.clone();
        open.spawn(async move {
            for (day, batches) in share {
                let mut writer = files.create(day)?;
                for b in &batches {
                    writer.write(b)?;
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
    drop(buffered_bytes);
    failed.map_or(Ok(()), Err)
}

/// A date of the write: its rows so far, or the channel to its writer.
enum Date {
    Buffered(Vec<RecordBatch>, usize),
    Open(mpsc::Sender<RecordBatch>),
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

/// `rows` split by the date of each row, in order of first appearance,
/// each part keeping the rows' order.
fn split(rows: &RecordBatch, days: &[i32]) -> Result<Vec<(i32, RecordBatch)>> {
    let Some(&first) = days.first() else {
        return Ok(Vec::new());
    };
    if days.iter().all(|&d| d == first) {
        return Ok(vec![(first, rows.clone())]);
    }
    let mut order: Vec<i32> = Vec::new();
    let mut indices: HashMap<i32, Vec<u32>> = HashMap::new();
    for (i, &d) in days.iter().enumerate() {
        indices
            .entry(d)
            .or_insert_with(|| {
                order.push(d);
                Vec::new()
            })
            .push(i as u32);
    }
    order
        .into_iter()
        .map(|d| {
            let take = UInt32Array::from(indices.remove(&d).unwrap_or_default());
            Ok((
                d,
                datafusion::arrow::compute::take_record_batch(rows, &take)?,
            ))
        })
        .collect()
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
                let reader =
                    datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
                        File::open(f).unwrap(),
                        1024,
                    )
                    .unwrap();
                for b in reader {
                    let b = b.unwrap();
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
        // One partition: the rows reach the write in the order given.
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
        let df = ctx.read_batches(batches).unwrap();
        write_by_date(df, dir, "event_date", TableParquetOptions::default())
            .await
            .unwrap();
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
