//! A few users' rows of a date's built silver files, read straight from
//! the files: their first and last event time for [`super::reach`], and
//! their whole rows (or some columns) as the recompute's input.
//!
//! The reach asks, step by step, for the time ranges of a few thousand
//! (user, date) pairs, then of a few dozen; the recompute then loads the
//! rows of the pairs it found. As DataFusion queries (a join with the
//! pairs, and an aggregate) each step cost ~10–70 ms of planning, hashing
//! and decoding at 5M events, however few pairs it asked for. Here only
//! the pages whose `user_id` statistics may hold one of the users are read
//! (built files are sorted by user, see [`crate::patch::pages_holding`]; a
//! file without a page index is read whole), and a row's other columns
//! are decoded only where its user is one of them.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder, RowFilter,
    RowSelectionPolicy,
};

use crate::patch;

/// Rows per batch read.
const BATCH_ROWS: usize = 8192;

/// The positions of `columns` in `schema`, that of file `path`.
fn roots_of(schema: &SchemaRef, columns: &[&str], path: &Path) -> Result<Vec<usize>> {
    columns
        .iter()
        .map(|c| {
            schema
                .index_of(c)
                .with_context(|| format!("`{}` has no column `{c}`", path.display()))
        })
        .collect()
}

/// A reader of `columns` (which include `user_id`) of the built file
/// `path`, over only the pages whose `user_id` statistics may hold one of
/// `users` (every page where the file has no page index); `None` where no
/// page may.
///
/// With `only_users`, the rows of other users are dropped as they are read:
/// `user_id` is decoded first, and the other columns only at the rows it
/// keeps (a page of 1,024 rows may hold one wanted row).
fn reader(
    path: &Path,
    users: &BTreeSet<String>,
    columns: &[&str],
    only_users: bool,
) -> Result<Option<ParquetRecordBatchReader>> {
    let (file, meta) = patch::open_indexed(path)?;
    let schema = meta.schema().clone();
    let roots = roots_of(&schema, columns, path)?;
    let descr = meta.metadata().file_metadata().schema_descr_ptr();
    let rows = meta.metadata().file_metadata().num_rows() as usize;
    // Page statistics are per leaf: a flat file's leaves are its fields.
    let spans = (descr.num_columns() == schema.fields().len())
        .then(|| patch::pages_holding(&meta, schema.index_of("user_id").ok()?, users))
        .flatten();
    if spans.as_ref().is_some_and(Vec::is_empty) {
        return Ok(None);
    }
    let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
        .with_projection(ProjectionMask::roots(&descr, roots))
        .with_batch_size(BATCH_ROWS);
    if only_users {
        let wanted: Vec<String> = users.iter().cloned().collect();
        let user = ProjectionMask::roots(&descr, [schema.index_of("user_id")?]);
        let keep = ArrowPredicateFn::new(user, move |batch: RecordBatch| {
            of_wanted(&batch, &wanted)
                .map(|(mask, _)| mask)
                .map_err(|e| ArrowError::ExternalError(e.into()))
        });
        builder = builder.with_row_filter(RowFilter::new(vec![Box::new(keep)]));
    }
    if let Some(spans) = &spans {
        // Whole pages are skipped through the offset index, undecoded.
        builder = builder
            .with_row_selection(patch::selection(spans, rows))
            .with_row_selection_policy(RowSelectionPolicy::Selectors);
    }
    Ok(Some(builder.build()?))
}

/// Which rows of `batch` (read by [`reader`]) are of one of `wanted` (the
/// users, sorted), and its user ids.
fn of_wanted<S: AsRef<str>>(
    batch: &RecordBatch,
    wanted: &[S],
) -> Result<(BooleanArray, StringArray)> {
    let ids = cast(
        batch
            .column_by_name("user_id")
            .context("projected column missing")?,
        &DataType::Utf8,
    )?;
    let ids = ids.as_string::<i32>().clone();
    // Rows come sorted by user, as do `wanted`: walk both at once,
    // comparing each row's user with the last one's only. The batch's
    // first user, and a row out of order, look theirs up.
    let mut at = 0;
    let mut last: Option<&str> = None;
    let mut hit = false;
    let mask = (0..ids.len())
        .map(|i| {
            if ids.is_null(i) {
                return false;
            }
            let user = ids.value(i);
            if last != Some(user) {
                match last {
                    Some(l) if l < user => {
                        while wanted.get(at).is_some_and(|w| w.as_ref() < user) {
                            at += 1;
                        }
                    }
                    _ => at = wanted.partition_point(|w| w.as_ref() < user),
                }
                hit = wanted.get(at).is_some_and(|w| w.as_ref() == user);
                last = Some(user);
            }
            hit
        })
        .collect();
    Ok((mask, ids))
}

/// Each of `users`' first and last `event_timestamp` (µs) in `files`, the
/// built events files of one date. Users without rows there are left out.
pub fn of_users(
    files: &[PathBuf],
    users: &BTreeSet<String>,
) -> Result<HashMap<String, (i64, i64)>> {
    let mut out: HashMap<String, (i64, i64)> = HashMap::new();
    if users.is_empty() {
        return Ok(out);
    }
    let wanted: Vec<&str> = users.iter().map(String::as_str).collect();
    for path in files {
        let Some(reader) = reader(path, users, &["user_id", "event_timestamp"], false)? else {
            continue;
        };
        for batch in reader {
            let batch = batch?;
            let (mask, ids) = of_wanted(&batch, &wanted)?;
            widen(&mut out, &batch, &ids, |i| mask.value(i))?;
        }
    }
    Ok(out)
}

/// Widen each user's range in `out` by the `event_timestamp`s of the rows
/// of `batch` that `keep` takes (`users`: its `user_id`s as text).
fn widen(
    out: &mut HashMap<String, (i64, i64)>,
    batch: &RecordBatch,
    users: &StringArray,
    keep: impl Fn(usize) -> bool,
) -> Result<()> {
    let times = cast(
        batch
            .column_by_name("event_timestamp")
            .context("projected column missing")?,
        &DataType::Int64,
    )?;
    let times = times.as_primitive::<Int64Type>();
    for i in 0..batch.num_rows() {
        if !keep(i) || times.is_null(i) || users.is_null(i) {
            continue;
        }
        let (user, t) = (users.value(i), times.value(i));
        match out.get_mut(user) {
            Some(r) => *r = (r.0.min(t), r.1.max(t)),
            None => {
                out.insert(user.to_string(), (t, t));
            }
        }
    }
    Ok(())
}

/// Every user's first and last `event_timestamp` (µs) in `files`, the
/// built events files of one date (read whole: both columns of every
/// row).
pub fn of_all_users(files: &[PathBuf]) -> Result<HashMap<String, (i64, i64)>> {
    let mut out: HashMap<String, (i64, i64)> = HashMap::new();
    for path in files {
        let file = std::fs::File::open(path)
            .with_context(|| format!("failed to open `{}`", path.display()))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .with_context(|| format!("`{}`: not a readable Parquet file", path.display()))?;
        let roots = roots_of(builder.schema(), &["user_id", "event_timestamp"], path)?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        for batch in builder
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()?
        {
            let batch = batch?;
            let users = cast(
                batch
                    .column_by_name("user_id")
                    .context("projected column missing")?,
                &DataType::Utf8,
            )?;
            widen(&mut out, &batch, users.as_string::<i32>(), |_| true)?;
        }
    }
    Ok(out)
}

/// Every row of `users` in `files`, the built files of date `day` of a
/// silver table, as `schema`: its columns by name (cast to its types where
/// a file's differ), and its `event_date` column (the partition's, in no
/// file) `day`. Only the pages that may hold one of the users are read.
pub fn rows_of_users(
    files: &[PathBuf],
    users: &BTreeSet<String>,
    schema: &SchemaRef,
    day: i32,
) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    if users.is_empty() {
        return Ok(out);
    }
    let mut columns: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|n| *n != "event_date")
        .collect();
    if !columns.contains(&"user_id") {
        columns.push("user_id");
    }
    for path in files {
        let Some(reader) = reader(path, users, &columns, true)? else {
            continue;
        };
        for batch in reader {
            let batch = batch?;
            let n = batch.num_rows();
            let arrays = schema
                .fields()
                .iter()
                .map(|f| -> Result<ArrayRef> {
                    if f.name() == "event_date" {
                        return Ok(Arc::new(Date32Array::from(vec![day; n])));
                    }
                    let c = batch
                        .column_by_name(f.name())
                        .context("projected column missing")?;
                    Ok(if c.data_type() == f.data_type() {
                        c.clone()
                    } else {
                        cast(c, f.data_type())?
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            out.push(
                RecordBatch::try_new(schema.clone(), arrays).with_context(|| {
                    format!("rows of `{}` do not fit the table", path.display())
                })?,
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::sync::Arc;

    use datafusion::arrow::array::{RecordBatch, StringArray, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};

    use super::*;

    /// Rows (user, µs) sorted by user, written with `page_rows` rows per
    /// page and page statistics (or none).
    fn write(path: &std::path::Path, rows: &[(String, i64)], page_rows: usize, stats: bool) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("user_id", DataType::Utf8, false),
            Field::new(
                "event_timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    (0..rows.len()).map(|i| format!("e{i}")),
                )),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0))),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1))
                        .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let props = WriterProperties::builder()
            .set_data_page_row_count_limit(page_rows)
            .set_write_batch_size(page_rows)
            .set_max_row_group_row_count(Some(rows.len().div_ceil(2).max(1)))
            .set_statistics_enabled(if stats {
                EnabledStatistics::Page
            } else {
                EnabledStatistics::None
            })
            .build();
        let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// The ranges computed from every row, for comparison.
    fn expected(
        rows: &[&[(String, i64)]],
        users: &BTreeSet<String>,
    ) -> HashMap<String, (i64, i64)> {
        let mut out: HashMap<String, (i64, i64)> = HashMap::new();
        for (u, t) in rows.iter().flat_map(|r| r.iter()) {
            if users.contains(u) {
                let e = out.entry(u.clone()).or_insert((*t, *t));
                *e = (e.0.min(*t), e.1.max(*t));
            }
        }
        out
    }

    #[test]
    fn the_users_ranges_are_those_of_every_row() {
        let dir = tempfile::tempdir().unwrap();
        // Two files of one date (a built file and an appended one), 40
        // users with 1-7 rows each, pages of 8 rows: a user's rows span
        // pages and row groups.
        let mut a = Vec::new();
        let mut b = Vec::new();
        for u in 0..40 {
            for k in 0..(u % 7 + 1) {
                a.push((format!("u{u:02}"), 1_000 * u + 37 * k - 5 * (k % 3)));
            }
            if u % 5 == 0 {
                b.push((format!("u{u:02}"), 7 + 1_000 * u));
            }
        }
        a.sort();
        b.sort();
        let (pa, pb) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        write(&pa, &a, 8, true);
        write(&pb, &b, 8, true);
        let files = vec![pa.clone(), pb.clone()];
        for wanted in [
            vec!["u00"],
            vec!["u03", "u17", "u39"],
            vec!["u05", "u10", "nobody", "u99"],
            (0..40)
                .map(|u| format!("u{u:02}"))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect(),
        ] {
            let users = set(&wanted);
            let got = of_users(&files, &users).unwrap();
            assert_eq!(got, expected(&[&a, &b], &users), "{wanted:?}");
        }
        // A file without page statistics is read whole, with the same answer.
        write(&pa, &a, 8, false);
        let users = set(&["u03", "u20"]);
        assert_eq!(
            of_users(&files, &users).unwrap(),
            expected(&[&a, &b], &users)
        );
    }

    #[test]
    fn the_users_rows_are_read_whole_with_their_date() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<(String, i64)> = (0..200).map(|i| (format!("u{:03}", i / 3), i)).collect();
        let path = dir.path().join("a.parquet");
        write(&path, &rows, 16, true);
        let users = set(&["u000", "u033", "u034", "u066", "nobody"]);
        // The table's columns in its own order, with the partition's date,
        // and one read as another type than the file's.
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_date", DataType::Date32, false),
            Field::new("user_id", DataType::Utf8, false),
            Field::new("event_id", DataType::LargeUtf8, false),
        ]));
        let got = rows_of_users(std::slice::from_ref(&path), &users, &schema, 19_800).unwrap();
        let mut seen = Vec::new();
        for b in &got {
            assert_eq!(b.schema(), schema);
            let (d, u, e) = (
                b.column(0)
                    .as_primitive::<datafusion::arrow::datatypes::Date32Type>(),
                b.column(1).as_string::<i32>(),
                b.column(2).as_string::<i64>(),
            );
            for i in 0..b.num_rows() {
                assert_eq!(d.value(i), 19_800);
                seen.push((u.value(i).to_string(), e.value(i).to_string()));
            }
        }
        let want: Vec<(String, String)> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| users.contains(&r.0))
            .map(|(i, r)| (r.0.clone(), format!("e{i}")))
            .collect();
        assert_eq!(seen, want);
        // A table without user_id still reads it to pick the rows.
        let ids = Arc::new(Schema::new(vec![Field::new(
            "event_id",
            DataType::Utf8,
            false,
        )]));
        let got = rows_of_users(&[path], &users, &ids, 19_800).unwrap();
        assert_eq!(
            got.iter().map(RecordBatch::num_rows).sum::<usize>(),
            want.len()
        );
    }

    #[test]
    fn only_the_pages_that_may_hold_a_user_are_selected() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<(String, i64)> = (0..64).map(|i| (format!("u{:02}", i / 4), i)).collect();
        let path = dir.path().join("a.parquet");
        write(&path, &rows, 8, true);
        let (_, meta) = patch::open_indexed(&path).unwrap();
        // u05 is rows 20..24, on the third page (16..24); u09 rows 36..40,
        // on the fifth (32..40; the second row group starts at 32).
        let users = set(&["u05", "u09"]);
        assert_eq!(
            patch::pages_holding(&meta, 1, &users),
            Some(vec![16..24, 32..40])
        );
        let users = set(&["u20"]);
        assert_eq!(patch::pages_holding(&meta, 1, &users), Some(vec![]));
        assert!(of_users(&[path], &users).unwrap().is_empty());
    }
}
