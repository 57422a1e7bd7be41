//! The bronze table: its Arrow schema and how its Parquet files are written.
//!
//! Bronze is the append-only record of every accepted event (only
//! `evlake retract` takes rows out: an input's, ingested by mistake),
//! partitioned Hive-style by `event_date` (the UTC date of the *event*
//! time). The partition column lives in the directory name, not inside
//! the files.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use anyhow::{Context, Result};
use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::metadata::SortingColumn;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;

/// Logical name of the bronze table.
pub const TABLE: &str = "bronze_events";
/// Directory of the bronze table, relative to the lake root.
pub const DIR: &str = "bronze/events";
/// Logical name of the side output: late events waiting for `reconcile`.
pub const LATE_TABLE: &str = "bronze_late";
/// Directory of the side output, relative to the lake root.
pub const LATE_DIR: &str = "bronze/late";
/// The Hive partition column.
pub const PARTITION_COLUMN: &str = "event_date";

/// Column positions in [`schema`], for builders and sorting.
pub mod col {
    pub const EVENT_ID: usize = 0;
    pub const EVENT_TYPE: usize = 1;
    pub const USER_ID: usize = 2;
    pub const EVENT_TIMESTAMP: usize = 3;
    pub const CLIENT_SESSION_ID: usize = 4;
    pub const PAGE_URL: usize = 5;
    pub const SOURCE_SYSTEM: usize = 6;
    pub const PROPERTIES: usize = 7;
    pub const EXTRA: usize = 8;
    pub const PROCESSING_TIME: usize = 9;
    pub const BATCH_ID: usize = 10;
    pub const IS_LATE: usize = 11;
    pub const SOURCE_FILE: usize = 12;
    pub const SOURCE_LINE: usize = 13;
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("event_timestamp", utc_micros(), false),
        Field::new("client_session_id", DataType::Utf8, true),
        Field::new("page_url", DataType::Utf8, true),
        Field::new("source_system", DataType::Utf8, true),
        Field::new("properties", DataType::Utf8, true),
        Field::new("extra", DataType::Utf8, true),
        Field::new("processing_time", utc_micros(), false),
        Field::new("batch_id", DataType::Utf8, false),
        Field::new("is_late", DataType::Boolean, false),
        Field::new("source_file", DataType::Utf8, false),
        Field::new("source_line", DataType::Int64, false),
    ]))
});

/// The schema of a bronze Parquet file (without the `event_date` partition
/// column, which is in the path).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Rows per row group: small enough that a scan for one user skips most
/// row groups of a file sorted by user.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Parquet settings for bronze files: zstd, statistics per page, and the
/// declared sort order `(user_id, event_timestamp, event_id)`.
pub fn writer_properties() -> WriterProperties {
    let sort = |column_idx: usize| SortingColumn {
        column_idx: column_idx as i32,
        descending: false,
        nulls_first: false,
    };
    // Dictionary encoding pays off for repetitive columns (types, pages,
    // lineage) and only costs time on near-unique ones. user_id and the
    // client's session id repeat only in runs (the file is sorted by user),
    // which zstd compresses as well without a dictionary (the 1M bench's
    // bronze is ~3% smaller without, and the writer hashes no values).
    let mut builder = WriterProperties::builder();
    for unique in [
        "event_id",
        "event_timestamp",
        "properties",
        "extra",
        "source_line",
        "user_id",
        "client_session_id",
    ] {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(unique), false);
    }
    // Min/max that can prune nothing are not computed (two comparisons per
    // value): JSON text, random ids, and columns every row group holds all
    // values of (a file is sorted by user, then time). user_id and
    // event_timestamp keep page statistics (silver finds a user's rows by
    // them), lineage keeps them for `WHERE batch_id = …` questions.
    for no_pruning in [
        "properties",
        "extra",
        "event_id",
        "event_type",
        "client_session_id",
        "page_url",
        "source_system",
    ] {
        builder = builder
            .set_column_statistics_enabled(ColumnPath::from(no_pruning), EnabledStatistics::None);
    }
    builder
        // Level 1: on sorted bronze it compresses as well as level 3
        // (32.5 MB either way for the 1M-event bench) with ~40% less
        // compression CPU (ingest ~7% faster).
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("zstd level 1 is valid"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(vec![
            sort(col::USER_ID),
            sort(col::EVENT_TIMESTAMP),
            sort(col::EVENT_ID),
        ]))
        .set_created_by(format!("evlake {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The 64-bit hash of an `event_id`: XXH3-64 (seed 0) of its UTF-8
/// bytes, a published function, since the lake's id index
/// ([`crate::ids`]) stores it. Equal ids always hash equal (a re-send is
/// never missed); two ids sharing a hash would be taken for one.
pub fn event_id_hash(event_id: &str) -> u64 {
    twox_hash::XxHash3_64::oneshot(event_id.as_bytes())
}

/// What makes two copies of an event the same event: every bronze column
/// except the id itself, when and how it arrived (`processing_time`,
/// `batch_id`, `is_late`) and its lineage. `properties` and `extra` are
/// compared as received (text), so a re-send whose `properties` differ
/// only in key order or spacing is another version.
pub struct Content<'a> {
    pub event_type: &'a str,
    pub user_id: &'a str,
    pub event_timestamp: i64,
    pub client_session_id: Option<&'a str>,
    pub page_url: Option<&'a str>,
    pub source_system: Option<&'a str>,
    pub properties: Option<&'a str>,
    pub extra: Option<&'a str>,
}

impl Content<'_> {
    /// A 64-bit hash of the content: XXH3-64 (seed 0) of its fields in
    /// order, each string as a presence byte (1, or 0 for null), its length
    /// (u64 LE) and its bytes, the time as i64 LE. A published, fixed
    /// function, since the id index stores it ([`crate::ids`]): equal
    /// content always hashes equal, and a collision could only hide a
    /// conflict, never invent one.
    pub fn hash(&self) -> u64 {
        thread_local! {
            static BYTES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BYTES.with_borrow_mut(|b| {
            b.clear();
            let mut text = |v: Option<&str>| match v {
                None => b.push(0),
                Some(v) => {
                    b.push(1);
                    b.extend_from_slice(&(v.len() as u64).to_le_bytes());
                    b.extend_from_slice(v.as_bytes());
                }
            };
            text(Some(self.event_type));
            text(Some(self.user_id));
            for v in [self.client_session_id, self.page_url, self.source_system] {
                text(v);
            }
            text(self.properties);
            text(self.extra);
            b.extend_from_slice(&self.event_timestamp.to_le_bytes());
            twox_hash::XxHash3_64::oneshot(b)
        })
    }
}

/// `(event_id hash, content hash)` of every row of a bronze file (reading
/// the content columns whole).
pub fn read_content_hashes(path: &Path) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for batch in batches(path, Some(0..=col::EXTRA))? {
        let batch = batch?;
        let s = |i: usize| batch.column(i).as_string::<i32>();
        let (id, ty, user) = (s(col::EVENT_ID), s(col::EVENT_TYPE), s(col::USER_ID));
        let ts = batch
            .column(col::EVENT_TIMESTAMP)
            .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
        let (cs, url, src) = (
            s(col::CLIENT_SESSION_ID),
            s(col::PAGE_URL),
            s(col::SOURCE_SYSTEM),
        );
        let (props, extra) = (s(col::PROPERTIES), s(col::EXTRA));
        for i in 0..batch.num_rows() {
            let content = Content {
                event_type: ty.value(i),
                user_id: user.value(i),
                event_timestamp: ts.value(i),
                client_session_id: opt(cs, i),
                page_url: opt(url, i),
                source_system: opt(src, i),
                properties: opt(props, i),
                extra: opt(extra, i),
            };
            out.push((event_id_hash(id.value(i)), content.hash()));
        }
    }
    Ok(out)
}

/// The [`event_id_hash`] of every row of a bronze file (reading only
/// `event_id`).
pub fn read_event_id_hashes(path: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for batch in batches(path, Some(col::EVENT_ID..=col::EVENT_ID))? {
        let batch = batch?;
        out.extend(
            batch
                .column(0)
                .as_string::<i32>()
                .iter()
                .flatten()
                .map(event_id_hash),
        );
    }
    Ok(out)
}

/// The value at row `i`, `None` when null.
fn opt(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

/// How many rows of Parquet file `path` (of any table) have each value of
/// `values` in top-level string column `name` (`batch_id`, `user_id`);
/// values with no row are left out. A row group whose statistics of the
/// column rule every value out is not read; the others' column alone is.
pub fn count_rows_by(
    path: &Path,
    name: &str,
    values: &std::collections::HashSet<String>,
) -> Result<std::collections::BTreeMap<String, u64>> {
    let mut counts = std::collections::BTreeMap::new();
    for batch in rows_by(path, name, Some(values), None)? {
        let batch = batch?;
        for v in batch.column(0).as_string::<i32>().iter().flatten() {
            if let Some(v) = values.get(v) {
                *counts.entry(v.clone()).or_default() += 1;
            }
        }
    }
    Ok(counts)
}

/// The [`event_id_hash`]es of the rows of bronze (or side-output) file
/// `path` whose string column `name` has a value in `values`.
pub fn event_ids_by(
    path: &Path,
    name: &str,
    values: &std::collections::HashSet<String>,
) -> Result<std::collections::HashSet<u64>> {
    Ok(split_ids(rows_by(path, name, Some(values), Some("event_id"))?, values)?.0)
}

/// The [`event_id_hash`]es of the rows of bronze (or side-output) file
/// `path` whose string column `name` has no value in `values` (every row
/// group read, the two columns).
pub fn event_ids_except(
    path: &Path,
    name: &str,
    values: &std::collections::HashSet<String>,
) -> Result<std::collections::HashSet<u64>> {
    Ok(split_ids(rows_by(path, name, None, Some("event_id"))?, values)?.1)
}

/// The ids of `batches` (`name`, `event_id`), split by whether `name` has
/// a value in `values`: `(theirs, the others')`.
fn split_ids(
    batches: impl Iterator<Item = Result<datafusion::arrow::array::RecordBatch>>,
    values: &std::collections::HashSet<String>,
) -> Result<(
    std::collections::HashSet<u64>,
    std::collections::HashSet<u64>,
)> {
    let (mut theirs, mut others) = Default::default();
    for batch in batches {
        let batch = batch?;
        let (by, ids) = (
            batch.column(0).as_string::<i32>(),
            batch.column(1).as_string::<i32>(),
        );
        for i in 0..batch.num_rows() {
            if !ids.is_valid(i) {
                continue;
            }
            let side: &mut std::collections::HashSet<u64> =
                if by.is_valid(i) && values.contains(by.value(i)) {
                    &mut theirs
                } else {
                    &mut others
                };
            side.insert(event_id_hash(ids.value(i)));
        }
    }
    Ok((theirs, others))
}

/// How many rows of Parquet file `path` (a silver table's) are the
/// users': those whose `user_id` is in `users`, or, in a file without that
/// column (a lake's own typed table, one row per event), those whose
/// `event_id`'s [`event_id_hash`] is in `ids`. Returns the count and
/// whether it went by `event_id`. The file is opened once.
pub fn count_user_rows(
    path: &Path,
    users: &std::collections::HashSet<String>,
    ids: &std::collections::HashSet<u64>,
) -> Result<(u64, bool)> {
    let builder = open(path)?;
    let by_id = builder.schema().index_of("user_id").is_err();
    let (name, prune) = if by_id {
        ("event_id", None)
    } else {
        ("user_id", Some(users))
    };
    let mut n = 0;
    for batch in rows_in(builder, path, name, prune, None)? {
        let batch = batch?;
        let values = batch.column(0).as_string::<i32>().iter().flatten();
        n += if by_id {
            values.filter(|id| ids.contains(&event_id_hash(id))).count()
        } else {
            values.filter(|u| users.contains(*u)).count()
        } as u64;
    }
    Ok((n, by_id))
}

/// A reader of Parquet file `path` (of any table).
pub fn open(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).with_context(|| format!("failed to open `{}`", path.display()))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("`{}`: not a readable Parquet file", path.display()))
}

/// Column `name` (then column `with`, if given) of the row groups of
/// `path` whose statistics of `name` do not rule every value of `prune`
/// out (every row group without `prune`).
fn rows_by(
    path: &Path,
    name: &str,
    prune: Option<&std::collections::HashSet<String>>,
    with: Option<&str>,
) -> Result<impl Iterator<Item = Result<datafusion::arrow::array::RecordBatch>>> {
    rows_in(open(path)?, path, name, prune, with)
}

/// [`rows_by`] of a file already opened (`builder`, of `path`).
fn rows_in(
    builder: ParquetRecordBatchReaderBuilder<File>,
    path: &Path,
    name: &str,
    prune: Option<&std::collections::HashSet<String>>,
    with: Option<&str>,
) -> Result<impl Iterator<Item = Result<datafusion::arrow::array::RecordBatch>>> {
    let meta = builder.metadata().clone();
    let leaf = |name: &str| {
        builder
            .parquet_schema()
            .columns()
            .iter()
            .position(|c| c.path().string() == name)
            .with_context(|| format!("`{}` has no {name} column", path.display()))
    };
    let by = leaf(name)?;
    let mut leaves = vec![by];
    if let Some(w) = with {
        leaves.push(leaf(w)?);
    }
    let groups: Vec<usize> = (0..meta.num_row_groups())
        .filter(|g| {
            let Some(values) = prune else {
                return true;
            };
            let Some(stats) = meta.row_group(*g).column(by).statistics() else {
                return true;
            };
            match (stats.min_bytes_opt(), stats.max_bytes_opt()) {
                (Some(min), Some(max)) => values
                    .iter()
                    .any(|v| min <= v.as_bytes() && v.as_bytes() <= max),
                _ => true,
            }
        })
        .collect();
    let mask = ProjectionMask::leaves(builder.parquet_schema(), leaves.clone());
    // (A projection keeps the file's column order: `name` first as asked.)
    let swap = leaves.len() == 2 && leaves[1] < leaves[0];
    let display = path.display().to_string();
    Ok(builder
        .with_row_groups(groups)
        .with_projection(mask)
        .build()?
        .map(move |b| {
            let b = b.with_context(|| format!("failed to read `{display}`"))?;
            Ok(if swap { b.project(&[1, 0])? } else { b })
        }))
}

/// Every row of a bronze (or side-output) file.
pub fn read_file(path: &Path) -> Result<Vec<datafusion::arrow::array::RecordBatch>> {
    batches(path, None)?.collect()
}

/// The record batches of a bronze (or side-output) file: every column, or
/// the top-level columns `columns` (positions in [`schema`]).
fn batches(
    path: &Path,
    columns: Option<std::ops::RangeInclusive<usize>>,
) -> Result<impl Iterator<Item = Result<datafusion::arrow::array::RecordBatch>>> {
    let mut builder = open(path)?;
    if let Some(columns) = columns {
        let mask = ProjectionMask::roots(builder.parquet_schema(), columns);
        builder = builder.with_projection(mask);
    }
    let shown = path.display().to_string();
    Ok(builder
        .build()?
        .map(move |b| b.with_context(|| format!("failed to read `{shown}`"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id index stores content hashes: the function must not change
    /// (a changed one would take every stored event for another version).
    #[test]
    fn the_content_hash_is_a_fixed_function() {
        let c = Content {
            event_type: "purchase",
            user_id: "u42",
            event_timestamp: 1_710_513_000_123_000,
            client_session_id: None,
            page_url: Some("https://shop.example.com/checkout"),
            source_system: Some("ios"),
            properties: Some(r#"{"amount":19.99}"#),
            extra: None,
        };
        let mut bytes = Vec::new();
        for v in [
            Some("purchase"),
            Some("u42"),
            None,
            Some("https://shop.example.com/checkout"),
            Some("ios"),
            Some(r#"{"amount":19.99}"#),
            None,
        ] {
            match v {
                None => bytes.push(0),
                Some(v) => {
                    bytes.push(1);
                    bytes.extend_from_slice(&(v.len() as u64).to_le_bytes());
                    bytes.extend_from_slice(v.as_bytes());
                }
            }
        }
        bytes.extend_from_slice(&1_710_513_000_123_000i64.to_le_bytes());
        assert_eq!(c.hash(), twox_hash::XxHash3_64::oneshot(&bytes));
        assert_eq!(c.hash(), 0x54bd_0406_f96f_a914, "{:#x}", c.hash());
        // Null and empty differ.
        let empty = Content {
            client_session_id: Some(""),
            ..c
        };
        assert_ne!(empty.hash(), c.hash());
    }
}
