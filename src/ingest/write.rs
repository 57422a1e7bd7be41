//! Sort buffered bronze rows and write them as Parquet files into staging,
//! one file per `event_date` per flush.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use datafusion::arrow::array::{AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::TimestampMicrosecondType;
use datafusion::parquet::arrow::ArrowWriter;
use rayon::prelude::*;

use super::chunk::Rows;
use crate::bronze::{self, col};
use crate::lateness::{LatenessHistogram, LatenessRecorder};
use crate::time;

/// A finished file in staging, and where it goes.
#[derive(Debug, Clone)]
pub struct StagedFile {
    /// `bronze_events` or `bronze_late`.
    pub table: &'static str,
    pub event_date: i32,
    pub staged: PathBuf,
    /// Final lake-relative path.
    pub rel_path: String,
    pub rows: u64,
    pub bytes: u64,
    pub min_event_time: i64,
    pub max_event_time: i64,
    /// Rows with `is_late` set.
    pub late_rows: u64,
    /// `processing_time - event_timestamp` of every row, and of late rows.
    pub lateness: LatenessHistogram,
    pub late_lateness: LatenessHistogram,
}

impl StagedFile {
    /// The commit log entry for this file.
    pub fn to_action(&self) -> crate::log::FileAction {
        crate::log::FileAction {
            table: self.table.to_string(),
            partition: time::format_date32(self.event_date),
            path: self.rel_path.clone(),
            rows: self.rows,
            bytes: self.bytes,
            min_event_time: Some(time::format_micros(self.min_event_time)),
            max_event_time: Some(time::format_micros(self.max_event_time)),
            late_rows: self.late_rows,
            lateness: Some(self.lateness.clone()),
            late_lateness: (self.late_rows > 0).then(|| self.late_lateness.clone()),
        }
    }
}

/// Rows waiting to be written.
#[derive(Debug, Default)]
pub struct Buffer {
    parts: Vec<Rows>,
    pub rows: usize,
    pub bytes: usize,
}

impl Buffer {
    pub fn push(&mut self, rows: Rows) {
        self.rows += rows.batch.num_rows();
        self.bytes += rows.batch.get_array_memory_size();
        self.parts.push(rows);
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    fn take(&mut self) -> Vec<Rows> {
        self.rows = 0;
        self.bytes = 0;
        std::mem::take(&mut self.parts)
    }
}

/// Names files `part-<run>-<n>.parquet`: deterministic for a given set of
/// input batches, unique within the run.
#[derive(Debug)]
pub struct FileNamer {
    pub run_id: String,
    pub staging: PathBuf,
    next: AtomicU64,
}

impl FileNamer {
    pub fn new(run_id: String, staging: PathBuf) -> Self {
        FileNamer {
            run_id,
            staging,
            next: AtomicU64::new(0),
        }
    }

    fn next(&self, side_output: bool, event_date: i32) -> (PathBuf, String) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("part-{}-{n:05}.parquet", self.run_id);
        let rel = format!(
            "{}/{}={}/{name}",
            if side_output {
                bronze::LATE_DIR
            } else {
                bronze::DIR
            },
            bronze::PARTITION_COLUMN,
            time::format_date32(event_date)
        );
        (self.staging.join(&name), rel)
    }
}

/// Sort everything in `buffer` by `(table, event_date, user_id,
/// event_timestamp, event_id)` and write one staged Parquet file per table
/// and date.
pub fn flush(buffer: &mut Buffer, namer: &FileNamer) -> Result<Vec<StagedFile>> {
    let parts = buffer.take();
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let n: usize = parts.iter().map(|p| p.dates.len()).sum();
    let mut dates = Vec::with_capacity(n);
    let mut side = Vec::with_capacity(n);
    let mut batches = Vec::with_capacity(parts.len());
    for p in parts {
        dates.extend_from_slice(&p.dates);
        side.extend_from_slice(&p.side);
        batches.push(p.batch);
    }
    let all = concat_batches(&bronze::schema(), &batches)?;
    drop(batches);

    let user = all.column(col::USER_ID).as_string::<i32>();
    let event_id = all.column(col::EVENT_ID).as_string::<i32>();
    let ts = all
        .column(col::EVENT_TIMESTAMP)
        .as_primitive::<TimestampMicrosecondType>()
        .values();
    let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
    order.par_sort_unstable_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        side[a]
            .cmp(&side[b])
            .then_with(|| dates[a].cmp(&dates[b]))
            .then_with(|| user.value(a).cmp(user.value(b)))
            .then_with(|| ts[a].cmp(&ts[b]))
            .then_with(|| event_id.value(a).cmp(event_id.value(b)))
    });

    let mut groups: Vec<&[u32]> = Vec::new();
    let mut start = 0;
    let key = |i: usize| (side[order[i] as usize], dates[order[i] as usize]);
    for i in 1..=order.len() {
        if i == order.len() || key(i) != key(start) {
            groups.push(&order[start..i]);
            start = i;
        }
    }
    groups
        .par_iter()
        .map(|rows| {
            let event_date = dates[rows[0] as usize];
            let side_output = side[rows[0] as usize];
            let indices = UInt32Array::from(rows.to_vec());
            let batch = take_record_batch(&all, &indices)?;
            let (staged, rel_path) = namer.next(side_output, event_date);
            let bytes = write_parquet(&staged, &batch)?;
            let mut f = describe(&batch, staged, rel_path, bytes);
            f.table = if side_output {
                bronze::LATE_TABLE
            } else {
                bronze::TABLE
            };
            f.event_date = event_date;
            Ok(f)
        })
        .collect()
}

/// Row count, time range and lateness of a bronze batch about to be committed.
pub fn describe(batch: &RecordBatch, staged: PathBuf, rel_path: String, bytes: u64) -> StagedFile {
    let tsa = batch
        .column(col::EVENT_TIMESTAMP)
        .as_primitive::<TimestampMicrosecondType>();
    let pt = batch
        .column(col::PROCESSING_TIME)
        .as_primitive::<TimestampMicrosecondType>()
        .values();
    let late = batch.column(col::IS_LATE).as_boolean();
    let mut all = LatenessRecorder::default();
    let mut late_only = LatenessRecorder::default();
    for (i, ts) in tsa.values().iter().enumerate() {
        let l = pt[i] - ts;
        all.record_micros(l);
        if late.value(i) {
            late_only.record_micros(l);
        }
    }
    let lateness = all.finish();
    let late_lateness = late_only.finish();
    StagedFile {
        table: bronze::TABLE,
        event_date: 0,
        staged,
        rel_path,
        rows: batch.num_rows() as u64,
        bytes,
        min_event_time: datafusion::arrow::compute::min(tsa).unwrap_or_default(),
        max_event_time: datafusion::arrow::compute::max(tsa).unwrap_or_default(),
        late_rows: late_lateness.count,
        lateness,
        late_lateness,
    }
}

/// Write one sorted batch as a zstd Parquet file and fsync it. Returns its size.
pub fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<u64> {
    let file =
        File::create(path).with_context(|| format!("failed to create `{}`", path.display()))?;
    let sink = file.try_clone()?;
    let mut writer = ArrowWriter::try_new(sink, batch.schema(), Some(bronze::writer_properties()))
        .with_context(|| format!("failed to start Parquet file `{}`", path.display()))?;
    writer
        .write(batch)
        .and_then(|_| writer.close().map(|_| ()))
        .with_context(|| format!("failed to write `{}`", path.display()))?;
    file.sync_all()
        .with_context(|| format!("failed to fsync `{}`", path.display()))?;
    Ok(file.metadata()?.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::chunk::{Lineage, parse_chunk};
    use crate::ingest::input::Chunk;
    use crate::ingest::parse::ParseOptions;
    use crate::time::NaiveTimestamps;
    use datafusion::arrow::array::Array;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn flush_sorts_and_splits_by_event_date() {
        let lines = [
            r#"{"event_id":"b","event_type":"t","timestamp":"2024-03-15T10:00:00Z","user_id":"u2"}"#,
            r#"{"event_id":"a","event_type":"t","timestamp":"2024-03-15T10:00:00Z","user_id":"u2"}"#,
            r#"{"event_id":"c","event_type":"t","timestamp":"2024-03-14T23:59:59Z","user_id":"u1"}"#,
            r#"{"event_id":"d","event_type":"t","timestamp":"2024-03-15T09:00:00Z","user_id":"u1"}"#,
        ];
        let chunk = Chunk {
            input: 0,
            first_line: 1,
            data: lines.join("\n").into_bytes(),
        };
        let lineage = Lineage {
            batch_id: "b1".into(),
            source_file: "f.jsonl".into(),
        };
        let opts = ParseOptions {
            naive_timestamps: NaiveTimestamps::Reject,
            max_event_timestamp: i64::MAX,
        };
        let rules = crate::late::LateRules {
            watermark_before: None,
            policy: crate::late::LatePolicy::Reopen,
            allowed_lateness: 0,
        };
        let parsed = parse_chunk(&chunk, &lineage, &opts, &rules, 1_710_600_000_000_000);
        assert_eq!(parsed.events, 4);
        let mut buf = Buffer::default();
        buf.push(parsed.rows.unwrap());
        let dir = tempfile::tempdir().unwrap();
        let namer = FileNamer::new("r".into(), dir.path().to_path_buf());
        let mut files = flush(&mut buf, &namer).unwrap();
        files.sort_by_key(|f| f.event_date);
        assert_eq!(files.len(), 2);
        assert!(files[0].rel_path.contains("event_date=2024-03-14/"));
        assert_eq!(files[1].rows, 3);
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(File::open(&files[1].staged).unwrap())
                .unwrap()
                .build()
                .unwrap();
        let batch = reader.map(|b| b.unwrap()).next().unwrap();
        let ids: Vec<&str> = batch
            .column(col::EVENT_ID)
            .as_string::<i32>()
            .iter()
            .map(|v| v.unwrap())
            .collect();
        assert_eq!(ids, ["d", "a", "b"]);
        let lines: Vec<i64> = batch
            .column(col::SOURCE_LINE)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .values()
            .to_vec();
        assert_eq!(lines, [4, 2, 1]);
        assert_eq!(batch.column(col::PAGE_URL).null_count(), 3);
    }
}
