//! The first and last event time of given users in a date's built `events`
//! files, read straight from the files for [`super::reach`].
//!
//! The reach asks, step by step, for the time ranges of a few thousand
//! (user, date) pairs, then of a few dozen. As DataFusion queries (a join
//! with the pairs, then an aggregate) each step cost ~10–70 ms of planning,
//! hashing and decoding at 5M events, however few pairs it asked for. Here
//! only `user_id` and `event_timestamp` are decoded, and only on the pages
//! whose statistics may hold one of the users (built files are sorted by
//! user, see [`crate::patch::pages_holding`]); a file without a page index
//! is read whole.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::PathBuf;

use anyhow::{Context, Result};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelectionPolicy,
};
use datafusion::parquet::file::metadata::PageIndexPolicy;

use crate::patch;

/// Rows per batch read.
const BATCH_ROWS: usize = 8192;

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
    let mut at = 0;
    for path in files {
        let file =
            File::open(path).with_context(|| format!("failed to open `{}`", path.display()))?;
        let meta = ArrowReaderMetadata::load(
            &file,
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
        )
        .with_context(|| format!("failed to read the footer of `{}`", path.display()))?;
        let schema = meta.schema().clone();
        let (u, t) = (
            schema.index_of("user_id")?,
            schema.index_of("event_timestamp")?,
        );
        let descr = meta.metadata().file_metadata().schema_descr_ptr();
        let rows = meta.metadata().file_metadata().num_rows() as usize;
        // Page statistics are per leaf: a flat file's leaves are its fields.
        let spans = (descr.num_columns() == schema.fields().len())
            .then(|| patch::pages_holding(&meta, u, users))
            .flatten();
        if spans.as_ref().is_some_and(Vec::is_empty) {
            continue;
        }
        let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
            .with_projection(ProjectionMask::roots(&descr, [u, t]))
            .with_batch_size(BATCH_ROWS);
        if let Some(spans) = &spans {
            // Whole pages are skipped through the offset index, undecoded.
            builder = builder
                .with_row_selection(patch::selection(spans, rows))
                .with_row_selection_policy(RowSelectionPolicy::Selectors);
        }
        for batch in builder.build()? {
            let batch = batch?;
            let column = |name: &str, to: &DataType| {
                let c = batch
                    .column_by_name(name)
                    .context("projected column missing")?;
                anyhow::Ok(cast(c, to)?)
            };
            let ids = column("user_id", &DataType::Utf8)?;
            let ids = ids.as_string::<i32>();
            let times = column("event_timestamp", &DataType::Int64)?;
            let times = times.as_primitive::<Int64Type>();
            // Rows come sorted by user, as do `wanted`: walk both at once,
            // comparing each row's user with the last one's only. A batch's
            // first user, and a row out of order, look theirs up.
            let mut last: Option<&str> = None;
            let mut hit = false;
            for i in 0..batch.num_rows() {
                if ids.is_null(i) || times.is_null(i) {
                    continue;
                }
                let user = ids.value(i);
                if last != Some(user) {
                    match last {
                        Some(l) if l < user => {
                            while wanted.get(at).is_some_and(|w| *w < user) {
                                at += 1;
                            }
                        }
                        _ => at = wanted.partition_point(|w| *w < user),
                    }
                    hit = wanted.get(at) == Some(&user);
                    last = Some(user);
                }
                if !hit {
                    continue;
                }
                let t = times.value(i);
                match out.get_mut(user) {
                    Some(r) => *r = (r.0.min(t), r.1.max(t)),
                    None => {
                        out.insert(user.to_string(), (t, t));
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
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
            let users: BTreeSet<String> = wanted.iter().map(|s| s.to_string()).collect();
            let got = of_users(&files, &users).unwrap();
            assert_eq!(got, expected(&[&a, &b], &users), "{wanted:?}");
        }
        // A file without page statistics is read whole, with the same answer.
        write(&pa, &a, 8, false);
        let users: BTreeSet<String> = ["u03", "u20"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            of_users(&files, &users).unwrap(),
            expected(&[&a, &b], &users)
        );
    }

    #[test]
    fn only_the_pages_that_may_hold_a_user_are_selected() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<(String, i64)> = (0..64).map(|i| (format!("u{:02}", i / 4), i)).collect();
        let path = dir.path().join("a.parquet");
        write(&path, &rows, 8, true);
        let meta = ArrowReaderMetadata::load(
            &File::open(&path).unwrap(),
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
        )
        .unwrap();
        // u05 is rows 20..24, on the third page (16..24); u09 rows 36..40,
        // on the fifth (32..40; the second row group starts at 32).
        let users: BTreeSet<String> = ["u05", "u09"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            patch::pages_holding(&meta, 1, &users),
            Some(vec![16..24, 32..40])
        );
        let users: BTreeSet<String> = ["u20"].iter().map(|s| s.to_string()).collect();
        assert_eq!(patch::pages_holding(&meta, 1, &users), Some(vec![]));
        assert!(of_users(&[path], &users).unwrap().is_empty());
    }
}
