//! Sort buffered bronze rows and write them as Parquet files into staging,
//! one file per `event_date` per flush.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::TimestampMicrosecondType;
use datafusion::parquet::arrow::ArrowWriter;
use rayon::prelude::*;

use super::chunk::Rows;
use crate::bronze::{self, col};
use crate::lateness::{LatenessHistogram, LatenessRecorder, StoredHistogram};
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
    /// Where [`crate::lake::publish`] moves it from and to.
    pub fn publish_move(&self, lake: &crate::lake::Lake) -> (PathBuf, PathBuf) {
        (self.staged.clone(), lake.path(&self.rel_path))
    }

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
            lateness: Some(StoredHistogram::new(&self.lateness)),
            late_lateness: (self.late_rows > 0).then(|| StoredHistogram::new(&self.late_lateness)),
            blake3: None,
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

    /// Every row of bronze file `path` (of either bronze table), to be
    /// written into `bronze_events` of date `day` (`reconcile`, `compact`).
    /// Its rows carry their own lineage.
    pub fn push_bronze_file(&mut self, path: &Path, day: i32) -> Result<()> {
        self.push_bronze_rows(path, day, false, (col::BATCH_ID, &Default::default()))
            .map(|_| ())
    }

    /// The rows of bronze file `path` but those whose string column
    /// `column` (`batch_id`, `user_id`) has a value in `drop`, to be
    /// written into the side output when `side`, else into
    /// `bronze_events`, of date `day` (`retract`, `erase`). Returns the
    /// rows left out.
    pub fn push_bronze_rows(
        &mut self,
        path: &Path,
        day: i32,
        side: bool,
        (column, drop): (usize, &std::collections::HashSet<String>),
    ) -> Result<u64> {
        // (Compaction, reconcile and retract read file after file.)
        crate::interrupt::check()?;
        let mut dropped = 0;
        for batch in bronze::read_file(path)? {
            let mut batch = RecordBatch::try_new(bronze::schema(), batch.columns().to_vec())
                .with_context(|| format!("`{}` does not have the bronze schema", path.display()))?;
            if !drop.is_empty() {
                let ids = batch.column(column).as_string::<i32>();
                let keep: BooleanArray = ids
                    .iter()
                    .map(|id| Some(!id.is_some_and(|id| drop.contains(id))))
                    .collect();
                let before = batch.num_rows();
                batch = datafusion::arrow::compute::filter_record_batch(&batch, &keep)?;
                dropped += (before - batch.num_rows()) as u64;
            }
            let n = batch.num_rows();
            if n == 0 {
                continue;
            }
            self.push(Rows {
                batch,
                lineage: None,
                dates: vec![day; n],
                side: vec![side; n],
            });
        }
        Ok(dropped)
    }
}

/// Names staged files: unique within the run, from a counter the parallel
/// writers share (so in no fixed order). [`FileNamer::number`] then gives
/// the published files their names, `part-<run>-<n>.parquet`, which are
/// deterministic.
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

    /// Name the run's files `part-<run>-<n>.parquet`, numbered in the
    /// order given: flushes in the order they were filled, each flush's
    /// files by (table, date), which is how the flushes return them. So a
    /// run of the same inputs with the same `--processing-time` publishes
    /// the same paths (and bytes), whichever file a writer finished first.
    pub fn number(&self, staged: &mut [StagedFile]) {
        for (n, f) in staged.iter_mut().enumerate() {
            let dir = f.rel_path.rsplit_once('/').map_or("", |(d, _)| d);
            f.rel_path = format!("{dir}/part-{}-{n:05}.parquet", self.run_id);
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
pub fn flush(buffer: Buffer, namer: &FileNamer) -> Result<Vec<StagedFile>> {
    let parts = buffer.parts;
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    // Sort (batch, row) pairs across the buffered batches and gather each
    // output file straight from them: one copy of the data, no concat.
    struct Cols<'a> {
        user: &'a datafusion::arrow::array::StringArray,
        event_id: &'a datafusion::arrow::array::StringArray,
        ts: &'a [i64],
        dates: &'a [i32],
        side: &'a [bool],
    }
    let cols: Vec<Cols> = parts
        .iter()
        .map(|p| Cols {
            user: p.batch.column(col::USER_ID).as_string::<i32>(),
            event_id: p.batch.column(col::EVENT_ID).as_string::<i32>(),
            ts: p
                .batch
                .column(col::EVENT_TIMESTAMP)
                .as_primitive::<TimestampMicrosecondType>()
                .values(),
            dates: &p.dates,
            side: &p.side,
        })
        .collect();
    // Rows go to one file per (side, date): bucket them by file first (a
    // counting pass), then sort each bucket by compact keys on its own.
    // A date's rows fit in cache where the whole buffer's do not (~1.5%
    // less CPU for a 1M-event ingest than one sort of every row).
    let buckets = Buckets::of(&cols.iter().map(|c| (c.side, c.dates)).collect::<Vec<_>>());
    // The first 8 bytes of user_id big-endian and its length class packed
    // in one integer, so most comparisons touch no string; the full
    // user_id (when both are longer than 8 bytes and share the prefix) and
    // the event_id break the rest.
    #[derive(Clone, Copy, Default)]
    struct Key {
        /// user prefix (64 bits) | min(user length, 9) (4).
        head: u128,
        ts: i64,
        batch: u32,
        row: u32,
    }
    const LONG: u128 = 9;
    let head = |user: &str| {
        let mut b = [0u8; 8];
        let n = user.len().min(8);
        b[..n].copy_from_slice(&user.as_bytes()[..n]);
        // A user of 8 bytes or fewer is ordered by its zero-padded prefix
        // then its length (a shorter one with the same padded prefix is a
        // prefix of the longer, so sorts first, as the strings do).
        (u128::from(u64::from_be_bytes(b)) << 4) | (user.len() as u128).min(LONG)
    };
    let mut keys = vec![Key::default(); buckets.rows()];
    let mut next = buckets.starts.clone();
    for (b, c) in cols.iter().enumerate() {
        for r in 0..c.ts.len() {
            let at = &mut next[buckets.index(c.side[r], c.dates[r])];
            keys[*at] = Key {
                head: head(c.user.value(r)),
                ts: c.ts[r],
                batch: b as u32,
                row: r as u32,
            };
            *at += 1;
        }
    }
    // Sort by the integers alone (a cheap, inlined comparison), then put
    // the few runs they leave tied in full order: rows of two long users
    // sharing a prefix (by user_id, then time), and rows of one user at the
    // same microsecond (by event_id, then arrival).
    let full = |a: &Key, b: &Key| {
        let (ca, cb) = (&cols[a.batch as usize], &cols[b.batch as usize]);
        let (ra, rb) = (a.row as usize, b.row as usize);
        let user = if a.head & 0xF == LONG {
            ca.user.value(ra).cmp(cb.user.value(rb))
        } else {
            std::cmp::Ordering::Equal
        };
        user.then(a.ts.cmp(&b.ts))
            .then_with(|| ca.event_id.value(ra).cmp(cb.event_id.value(rb)))
            // Copies of one event (re-sends) in the order they arrived.
            .then((a.batch, a.row).cmp(&(b.batch, b.row)))
    };
    let sort_bucket = |keys: &mut [Key]| {
        // A bucket with most of the rows (one busy date) is sorted on
        // every core, as are large runs of tied keys (many long user ids
        // sharing their first 8 bytes, like `customer-…`).
        if keys.len() >= PAR_SORT_ROWS {
            keys.par_sort_unstable_by_key(|k| (k.head, k.ts));
        } else {
            keys.sort_unstable_by_key(|k| (k.head, k.ts));
        }
        let mut start = 0;
        while start < keys.len() {
            let head = keys[start].head;
            let long = head & 0xF == LONG;
            let mut end = start + 1;
            while end < keys.len()
                && keys[end].head == head
                && (long || keys[end].ts == keys[start].ts)
            {
                end += 1;
            }
            match end - start {
                0..=1 => {}
                2..=4096 => keys[start..end].sort_unstable_by(full),
                _ => keys[start..end].par_sort_unstable_by(full),
            }
            start = end;
        }
    };
    let mut slices: Vec<&mut [Key]> = Vec::new();
    let mut rest = keys.as_mut_slice();
    for w in buckets.starts.windows(2) {
        let (bucket, tail) = rest.split_at_mut(w[1] - w[0]);
        slices.push(bucket);
        rest = tail;
    }
    slices.par_iter_mut().for_each(|b| sort_bucket(b));
    let order: Vec<(usize, usize)> = keys
        .iter()
        .map(|k| (k.batch as usize, k.row as usize))
        .collect();
    drop(keys);
    let groups: Vec<(FileKey, &[(usize, usize)])> = buckets
        .files()
        .map(|(key, range)| (key, &order[range]))
        .collect();
    let batches: Vec<&RecordBatch> = parts.iter().map(|p| &p.batch).collect();
    let lineage: Vec<Option<&super::chunk::Lineage>> =
        parts.iter().map(|p| p.lineage.as_ref()).collect();
    groups
        .par_iter()
        .map(|&((side_output, event_date), rows)| {
            let batch = gather(&batches, &lineage, rows)?;
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

/// (side output, event_date): which file of a flush a row goes to.
type FileKey = (bool, i32);

/// Above this many rows, a bucket's sort is split across the cores.
const PAR_SORT_ROWS: usize = 1 << 16;

/// The buffer's rows counted by output file, (side output, date), in file
/// order: side output last, dates ascending.
struct Buckets {
    /// The lowest date, and the dates present in order (dense: a bucket
    /// per day between the lowest and the highest; sparse: a bucket per
    /// date present, when they span too many days for a slot each).
    lo: i32,
    dates: Option<Vec<i32>>,
    /// Buckets per side.
    width: usize,
    /// Each bucket's first row in bucket order, then the row count.
    starts: Vec<usize>,
}

/// Dates spread over more days than this get a bucket per date present.
const DENSE_DAYS: i64 = 1 << 16;

impl Buckets {
    fn of(parts: &[(&[bool], &[i32])]) -> Buckets {
        let (lo, hi) = parts
            .iter()
            .flat_map(|(_, d)| d.iter())
            .fold((i32::MAX, i32::MIN), |(l, h), &d| (l.min(d), h.max(d)));
        let span = i64::from(hi) - i64::from(lo) + 1;
        let (lo, dates, width) = if span <= 0 {
            (0, None, 1)
        } else if span <= DENSE_DAYS {
            (lo, None, span as usize)
        } else {
            let mut dates: Vec<i32> = parts.iter().flat_map(|(_, d)| d.iter().copied()).collect();
            dates.sort_unstable();
            dates.dedup();
            let width = dates.len();
            (lo, Some(dates), width)
        };
        let mut b = Buckets {
            lo,
            dates,
            width,
            starts: Vec::new(),
        };
        let mut counts = vec![0usize; 2 * width + 1];
        for (side, dates) in parts {
            for (s, d) in side.iter().zip(dates.iter()) {
                counts[b.index(*s, *d) + 1] += 1;
            }
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        b.starts = counts;
        b
    }

    fn index(&self, side: bool, date: i32) -> usize {
        let day = match &self.dates {
            None => (date - self.lo) as usize,
            Some(dates) => dates.binary_search(&date).expect("a date counted"),
        };
        usize::from(side) * self.width + day
    }

    fn rows(&self) -> usize {
        *self.starts.last().expect("one bucket at least")
    }

    /// Each non-empty bucket's (side output, date) and its rows' range.
    fn files(&self) -> impl Iterator<Item = (FileKey, std::ops::Range<usize>)> + '_ {
        (0..self.starts.len() - 1)
            .filter(|&i| self.starts[i + 1] > self.starts[i])
            .map(|i| {
                let (side, day) = (i >= self.width, i % self.width);
                let date = match &self.dates {
                    None => self.lo + day as i32,
                    Some(dates) => dates[day],
                };
                ((side, date), self.starts[i]..self.starts[i + 1])
            })
    }
}

/// The rows `rows` names ((batch, row) pairs) of `batches` (parsed
/// chunks, whose inputs' lineage is `lineage`), in that order, as bronze
/// rows: arrow's interleave per column, except for the columns below.
/// - `is_late`: interleave would copy booleans one row at a time through
///   its generic fallback.
/// - Lineage (`batch_id`, `source_file`): each row's chunk's value (the
///   parsed chunks hold none, see [`super::chunk::rows_schema`]).
/// - The other strings: [`gather_strings`], which prefetches.
fn gather(
    batches: &[&RecordBatch],
    lineage: &[Option<&super::chunk::Lineage>],
    rows: &[(usize, usize)],
) -> Result<RecordBatch> {
    let schema = bronze::schema();
    let columns = (0..schema.fields().len())
        .map(|c| -> Result<ArrayRef> {
            if c == col::IS_LATE {
                let late: Vec<&BooleanArray> =
                    batches.iter().map(|b| b.column(c).as_boolean()).collect();
                return Ok(std::sync::Arc::new(BooleanArray::from_iter(
                    rows.iter().map(|&(b, r)| Some(late[b].value(r))),
                )));
            }
            if (c == col::BATCH_ID || c == col::SOURCE_FILE) && lineage.iter().any(Option::is_some)
            {
                let values: Vec<Option<&str>> = lineage
                    .iter()
                    .map(|l| {
                        l.map(|l| {
                            if c == col::BATCH_ID {
                                l.batch_id.as_str()
                            } else {
                                l.source_file.as_str()
                            }
                        })
                    })
                    .collect();
                let arrays: Vec<&StringArray> = batches
                    .iter()
                    .map(|b| b.column(c).as_string::<i32>())
                    .collect();
                return Ok(std::sync::Arc::new(lineage_of(&values, &arrays, rows)?));
            }
            if let Some(strings) = batches
                .iter()
                .map(|b| b.column(c).as_string_opt::<i32>())
                .collect::<Option<Vec<&StringArray>>>()
            {
                return Ok(std::sync::Arc::new(gather_strings(&strings, rows)?));
            }
            let arrays: Vec<&dyn datafusion::arrow::array::Array> =
                batches.iter().map(|b| b.column(c).as_ref()).collect();
            Ok(interleave(&arrays, rows)?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// A lineage column of `rows`: `values[b]` for a row `(b, _)` of a parsed
/// chunk, the row's own value in `arrays[b]` otherwise.
fn lineage_of(
    values: &[Option<&str>],
    arrays: &[&StringArray],
    rows: &[(usize, usize)],
) -> Result<StringArray> {
    let longest = values.iter().flatten().map(|v| v.len()).max().unwrap_or(0);
    let mut bytes: Vec<u8> = Vec::with_capacity(rows.len() * longest);
    let mut offsets: Vec<i32> = Vec::with_capacity(rows.len() + 1);
    offsets.push(0);
    for &(b, r) in rows {
        let value = values[b].unwrap_or_else(|| arrays[b].value(r));
        bytes.extend_from_slice(value.as_bytes());
        offsets.push(
            i32::try_from(bytes.len()).context("more than 2 GiB of lineage in one bronze file")?,
        );
    }
    Ok(StringArray::new(
        datafusion::arrow::buffer::OffsetBuffer::new(offsets.into()),
        bytes.into(),
        None,
    ))
}

/// How many rows ahead [`gather_strings`] prefetches a row's value (and,
/// twice as far ahead, its offset): the rows come in sorted order from
/// anywhere in a buffer of ~128 MiB, so nearly every read misses the cache.
const PREFETCH_ROWS: usize = 8;

/// The strings `rows` names of `arrays`, in that order. Each row's offsets
/// and bytes are prefetched a few rows ahead, so the cache misses overlap
/// instead of stalling one after another (arrow's interleave reads them in
/// turn).
fn gather_strings(arrays: &[&StringArray], rows: &[(usize, usize)]) -> Result<StringArray> {
    use datafusion::arrow::array::Array;
    use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
    let nullable = arrays.iter().any(|a| a.null_count() > 0);
    // Sized from the arrays' average row: a guess, the vector grows if short.
    let (bytes, n) = arrays.iter().fold((0usize, 0usize), |(b, n), a| {
        (b + a.value_data().len(), n + a.len())
    });
    let mut values: Vec<u8> = Vec::with_capacity(bytes / n.max(1) * rows.len() * 9 / 8 + 64);
    let mut offsets: Vec<i32> = Vec::with_capacity(rows.len() + 1);
    offsets.push(0);
    let mut valid = nullable.then(|| Vec::with_capacity(rows.len()));
    let prefetch = |p: *const u8| {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint: it never faults, whatever the address.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(p.cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = p;
    };
    for (i, &(b, row)) in rows.iter().enumerate() {
        if let Some(&(fb, fr)) = rows.get(i + 2 * PREFETCH_ROWS) {
            prefetch(arrays[fb].value_offsets()[fr..].as_ptr().cast());
        }
        if let Some(&(vb, vr)) = rows.get(i + PREFETCH_ROWS) {
            let a = arrays[vb];
            let start = a.value_offsets()[vr] as usize;
            prefetch(a.value_data()[start..].as_ptr());
        }
        let a = arrays[b];
        if let Some(valid) = &mut valid {
            let v = a.is_valid(row);
            valid.push(v);
            if v {
                values.extend_from_slice(a.value(row).as_bytes());
            }
        } else {
            values.extend_from_slice(a.value(row).as_bytes());
        }
        offsets.push(
            i32::try_from(values.len())
                .context("more than 2 GiB of one string column in one bronze file")?,
        );
    }
    let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
    let nulls = valid.map(NullBuffer::from);
    // SAFETY: the offsets are monotonic by construction and every value
    // was copied whole from a valid UTF-8 string.
    Ok(unsafe { StringArray::new_unchecked(offsets, values.into(), nulls) })
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

/// Write one sorted batch as a zstd Parquet file and start flushing it to
/// disk (see [`crate::lake::presync_file`]). Returns its size.
pub fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<u64> {
    let file =
        File::create(path).with_context(|| format!("failed to create `{}`", path.display()))?;
    let sink = file
        .try_clone()
        .with_context(|| format!("failed to write `{}`", path.display()))?;
    encode_parquet(sink, batch).with_context(|| format!("failed to write `{}`", path.display()))?;
    let len = file.metadata()?.len();
    // Flushed in the background: an fsync here blocked this rayon worker
    // (and its core's share of the flush) for the disk's latency.
    // `lake::publish` waits for it and fsyncs every file again before any
    // is renamed into the lake.
    crate::lake::presync_file(file);
    Ok(len)
}

/// `batch` as a bronze Parquet file into `sink`: what `ArrowWriter` writes
/// (the same bytes), but each row group's columns are encoded and
/// compressed as tasks of their own. A flush writes a file per date at
/// once, so big runs keep the cores busy anyway; an hourly batch is one
/// busy date and a few late rows, where one core wrote the big file alone.
fn encode_parquet(sink: File, batch: &RecordBatch) -> Result<()> {
    use datafusion::parquet::arrow::arrow_writer::compute_leaves;
    let schema = batch.schema();
    let (mut out, columns) =
        ArrowWriter::try_new(sink, schema.clone(), Some(bronze::writer_properties()))?
            .into_serialized_writer()?;
    let starts = (0..batch.num_rows()).step_by(bronze::ROW_GROUP_ROWS);
    for (group, start) in starts.enumerate() {
        let part = batch.slice(
            start,
            (batch.num_rows() - start).min(bronze::ROW_GROUP_ROWS),
        );
        let mut leaves = Vec::new();
        for (field, array) in schema.fields().iter().zip(part.columns()) {
            leaves.extend(compute_leaves(field, array)?);
        }
        let writers = columns.create_column_writers(group)?;
        anyhow::ensure!(writers.len() == leaves.len(), "a writer per leaf column");
        let chunks = writers
            .into_par_iter()
            .zip(leaves.par_iter())
            .map(|(mut w, leaf)| {
                w.write(leaf)?;
                w.close()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut row_group = out.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
    }
    out.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Array;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    /// Parse `lines` as one chunk and flush them: the staged files (in a
    /// temporary directory that lives as long as the returned guard).
    fn flushed<S: AsRef<str>>(lines: &[S]) -> (Vec<StagedFile>, tempfile::TempDir) {
        let text: Vec<&str> = lines.iter().map(AsRef::as_ref).collect();
        let parsed = crate::ingest::chunk::parse_text(&text.join("\n"), 1_710_600_000_000_000);
        assert_eq!(parsed.events, lines.len() as u64);
        let mut buf = Buffer::default();
        buf.push(parsed.rows.unwrap());
        let dir = tempfile::tempdir().unwrap();
        let namer = FileNamer::new("r".into(), dir.path().to_path_buf());
        let mut files = flush(buf, &namer).unwrap();
        files.sort_by_key(|f| f.event_date);
        (files, dir)
    }

    /// The rows of a staged file.
    fn read(file: &StagedFile) -> RecordBatch {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&file.staged).unwrap())
            .unwrap()
            .build()
            .unwrap();
        reader.map(|b| b.unwrap()).next().unwrap()
    }

    /// (user_id, event_timestamp, event_id) of every row, in file order.
    fn user_time_id(batch: &RecordBatch) -> Vec<(String, i64, String)> {
        let strings = |c: usize| -> Vec<String> {
            batch
                .column(c)
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap().to_string())
                .collect()
        };
        let (user, id) = (strings(col::USER_ID), strings(col::EVENT_ID));
        let ts = batch
            .column(col::EVENT_TIMESTAMP)
            .as_primitive::<TimestampMicrosecondType>()
            .values();
        (0..batch.num_rows())
            .map(|i| (user[i].clone(), ts[i], id[i].clone()))
            .collect()
    }

    /// Encoding each column as a task writes the bytes `ArrowWriter`
    /// writes, over more than one row group.
    #[test]
    fn parallel_columns_write_what_arrow_writer_writes() {
        let lines: Vec<String> = (0..50)
            .map(|i| {
                format!(
                    r#"{{"event_id":"e{i}","event_type":"t{}","event_timestamp":"2024-03-15T10:{:02}:00Z","user_id":"u{}","page_url":{},"properties":{{"n":{i}}}}}"#,
                    i % 3,
                    i % 60,
                    i % 7,
                    if i % 4 == 0 { "null".to_string() } else { format!("\"/p{i}\"") }
                )
            })
            .collect();
        let (files, _dir) = flushed(&lines);
        let one = read(&files[0]);
        // Past one row group: the rows again and again.
        let n = bronze::ROW_GROUP_ROWS + 1_000;
        let rows: Vec<(usize, usize)> = (0..n).map(|i| (0, i % one.num_rows())).collect();
        let columns = one
            .columns()
            .iter()
            .map(|c| interleave(&[c.as_ref()], &rows).unwrap())
            .collect();
        let batch = RecordBatch::try_new(one.schema(), columns).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (ours, theirs) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        encode_parquet(File::create(&ours).unwrap(), &batch).unwrap();
        let mut w = ArrowWriter::try_new(
            File::create(&theirs).unwrap(),
            batch.schema(),
            Some(bronze::writer_properties()),
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let (a, b) = (
            std::fs::read(&ours).unwrap(),
            std::fs::read(&theirs).unwrap(),
        );
        assert!(a == b, "{} vs {} bytes", a.len(), b.len());
        let meta = ParquetRecordBatchReaderBuilder::try_new(File::open(&ours).unwrap())
            .unwrap()
            .metadata()
            .clone();
        assert_eq!(meta.num_row_groups(), 2);
    }

    /// Users that tie on the sort key's 8-byte prefix (shorter and longer
    /// ones, long ones differing after it, a NUL byte that zero padding
    /// must not confuse) still come out ordered as (user_id, time,
    /// event_id) strings order them.
    #[test]
    fn flush_orders_users_that_share_the_key_prefix_as_strings() {
        let users = [
            "abcdefgh",
            "abcdefghz",
            "abcdefgha",
            "abc",
            "abcd",
            "ab\\u0000",
            "ab",
            "abcdefgh\\u0000",
            "b",
            "abcdefghij",
            "a",
        ];
        let mut lines = Vec::new();
        for (i, u) in users.iter().enumerate() {
            for (j, minute) in [7, 3, 5].iter().enumerate() {
                lines.push(format!(
                    r#"{{"event_id":"e{}-{j}","event_type":"t","timestamp":"2024-03-15T10:{minute:02}:00Z","user_id":"{u}"}}"#,
                    (i * 7) % 11
                ));
            }
            // A tie on time: the event_id decides.
            lines.push(format!(
                r#"{{"event_id":"d{i}","event_type":"t","timestamp":"2024-03-15T10:05:00Z","user_id":"{u}"}}"#
            ));
        }
        let (files, _dir) = flushed(&lines);
        assert_eq!(files.len(), 1);
        let batch = read(&files[0]);
        let got = user_time_id(&batch);
        let mut want = got.clone();
        want.sort();
        assert_eq!(got, want);
        assert!(got.iter().any(|(u, _, _)| u == "ab\0"));
    }

    /// Thousands of rows of long users sharing their first 8 bytes form
    /// one tied run, sorted on every core: still in string order.
    #[test]
    fn flush_orders_a_large_run_of_users_sharing_a_prefix() {
        let lines: Vec<String> = (0..5400)
            .map(|i| {
                format!(
                    r#"{{"event_id":"e{i}","event_type":"t","timestamp":"2024-03-15T10:{:02}:{:02}Z","user_id":"customer-{}"}}"#,
                    (i * 7) % 60,
                    i % 3,
                    (i * 13) % 61
                )
            })
            .collect();
        let (files, _dir) = flushed(&lines);
        assert_eq!(files.len(), 1);
        let got = user_time_id(&read(&files[0]));
        let mut want = got.clone();
        want.sort();
        assert_eq!(got, want);
    }

    /// The prefetching gather equals arrow's interleave, nulls included;
    /// lineage repeats each chunk's value.
    #[test]
    fn gather_strings_matches_interleave() {
        let arrays = [
            StringArray::from(vec![
                Some("a"),
                None,
                Some(""),
                Some("a longer value, past 16 bytes"),
            ]),
            StringArray::from(vec![None, Some("é"), Some("xyz")]),
            StringArray::from(vec![Some("solo")]),
        ];
        let refs: Vec<&StringArray> = arrays.iter().collect();
        let rows: Vec<(usize, usize)> = (0..40)
            .map(|i| (i % 3, (i * 7) % arrays[i % 3].len()))
            .collect();
        let got = gather_strings(&refs, &rows).unwrap();
        let dyns: Vec<&dyn Array> = arrays.iter().map(|a| a as &dyn Array).collect();
        let want = interleave(&dyns, &rows).unwrap();
        assert_eq!(&got as &dyn Array, want.as_ref());
        assert!(got.null_count() > 0);

        // Two parsed chunks and a batch of bronze rows with their own.
        let own = StringArray::from(vec!["x", "y"]);
        let got = lineage_of(
            &[Some("b1"), Some("batch-2"), None],
            &[&own, &own, &own],
            &[(1, 1), (0, 0), (2, 1), (1, 0), (2, 0)],
        )
        .unwrap();
        let values: Vec<&str> = got.iter().map(Option::unwrap).collect();
        assert_eq!(values, ["batch-2", "b1", "y", "batch-2", "x"]);
    }

    #[test]
    fn flush_sorts_and_splits_by_event_date() {
        let lines = [
            r#"{"event_id":"b","event_type":"t","timestamp":"2024-03-15T10:00:00Z","user_id":"u2"}"#,
            r#"{"event_id":"a","event_type":"t","timestamp":"2024-03-15T10:00:00Z","user_id":"u2"}"#,
            r#"{"event_id":"c","event_type":"t","timestamp":"2024-03-14T23:59:59Z","user_id":"u1"}"#,
            r#"{"event_id":"d","event_type":"t","timestamp":"2024-03-15T09:00:00Z","user_id":"u1"}"#,
        ];
        let (files, _dir) = flushed(&lines);
        assert_eq!(files.len(), 2);
        assert!(files[0].rel_path.contains("event_date=2024-03-14/"));
        assert_eq!(files[1].rows, 3);
        let batch = read(&files[1]);
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
        // Bronze's schema, lineage on every row.
        assert_eq!(batch.schema(), bronze::schema());
        for (c, want) in [(col::BATCH_ID, "b1"), (col::SOURCE_FILE, "f.jsonl")] {
            let values = batch.column(c).as_string::<i32>();
            assert!(values.iter().all(|v| v == Some(want)), "{values:?}");
        }
    }

    /// Dates centuries apart (a bucket per date present, not per day
    /// between) come out one file each, in date order, and copies of one
    /// event (same user, time and id) in the order they arrived.
    #[test]
    fn flush_splits_far_apart_dates_and_keeps_copies_in_arrival_order() {
        let line = |id: &str, ts: &str, page: &str| {
            format!(
                r#"{{"event_id":"{id}","event_type":"t","timestamp":"{ts}","user_id":"u","page_url":"{page}"}}"#
            )
        };
        let mut lines = vec![
            line("x", "2190-06-01T00:00:00Z", "late"),
            line("y", "1900-01-01T00:00:00Z", "old"),
        ];
        // The copies interleaved with other users' rows that date, so the
        // sort moves them.
        for n in 0..300 {
            lines.push(format!(
                r#"{{"event_id":"o{n}","event_type":"t","timestamp":"2024-03-15T{:02}:00:00Z","user_id":"{}"}}"#,
                n % 24,
                ["a", "z", "m", "uu"][n % 4]
            ));
            lines.push(line("e", "2024-03-15T10:00:00Z", &format!("copy {n:03}")));
        }
        let text = lines.join("\n");
        let parsed = crate::ingest::chunk::parse_text(&text, 1_710_600_000_000_000);
        let mut buf = Buffer::default();
        buf.push(parsed.rows.unwrap());
        let dir = tempfile::tempdir().unwrap();
        let namer = FileNamer::new("r".into(), dir.path().to_path_buf());
        let files = flush(buf, &namer).unwrap();
        let dates: Vec<String> = files
            .iter()
            .map(|f| time::format_date32(f.event_date))
            .collect();
        assert_eq!(dates, ["1900-01-01", "2024-03-15", "2190-06-01"]);
        let batch = read(&files[1]);
        let pages: Vec<&str> = batch
            .column(col::PAGE_URL)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        assert_eq!(pages.len(), 300);
        let mut arrived = pages.clone();
        arrived.sort();
        assert_eq!(pages, arrived);
    }
}
