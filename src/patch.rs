//! Rewrite one column of a Parquet file, copying every other column chunk
//! byte for byte.
//!
//! A late event that starts a session earlier changes the `session_id` of
//! that session's built rows, and nothing else about them. Re-encoding a
//! whole date's files for that cost a decode and an encode of every column;
//! here only the patched column is decoded and encoded again, and the other
//! column chunks (with their statistics, page indexes and Bloom filters)
//! are spliced into the new file as they are. Row order, row groups and the
//! Arrow schema stay the same, so readers see the same file with new
//! values in one column.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use datafusion::parquet::arrow::arrow_writer::{ArrowRowGroupWriterFactory, compute_leaves};
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::bloom_filter::Sbbf;
use datafusion::parquet::column::writer::ColumnCloseResult;
use datafusion::parquet::file::metadata::PageIndexPolicy;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::file::writer::SerializedFileWriter;

/// Rows per batch read by [`plan`].
const PLAN_BATCH_ROWS: usize = 8192;

/// One file read for a patch: its rows' new values, if any row changes.
pub struct Planned {
    src: PathBuf,
    /// Rows whose key is in the patch (changed or not).
    pub matched: usize,
    /// The column's index, and its new values for the whole file; `None`
    /// when no value changes (the file is linked, not rewritten).
    change: Option<(usize, ArrayRef)>,
    meta: ArrowReaderMetadata,
}

/// Read `src`'s `key` and `column` columns and work out `column`'s new
/// values: `new[key]` where the row's key is in `new`, else as it is. A
/// file without either column has nothing to patch (it is linked).
pub fn plan(src: &Path, key: &str, column: &str, new: &HashMap<String, String>) -> Result<Planned> {
    let file = File::open(src).with_context(|| format!("failed to open `{}`", src.display()))?;
    let meta = ArrowReaderMetadata::load(
        &file,
        ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
    )
    .with_context(|| format!("failed to read the footer of `{}`", src.display()))?;
    let schema = meta.schema().clone();
    let descr = meta.metadata().file_metadata().schema_descr_ptr();
    if descr.num_columns() != schema.fields().len() {
        bail!("`{}`: only flat schemas can be patched", src.display());
    }
    let (Ok(k), Ok(c)) = (schema.index_of(key), schema.index_of(column)) else {
        // Nothing to patch: the file is linked as it is.
        return Ok(Planned {
            src: src.to_path_buf(),
            matched: 0,
            change: None,
            meta,
        });
    };
    let md = meta.metadata();
    let rows = md.file_metadata().num_rows() as usize;
    // The new column is built once, at its final size (its encoded size
    // bounds its bytes), from batches of a few thousand rows: reading the
    // file in one batch and growing the result as it went faulted in
    // several fresh copies of each column (a third of a 5M late batch's
    // patch planning was the kernel's page faults).
    let bytes: i64 = md
        .row_groups()
        .iter()
        .map(|rg| rg.column(c).uncompressed_size())
        .sum();
    let mut values = StringBuilder::with_capacity(rows, usize::try_from(bytes).unwrap_or(0));
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone())
        .with_projection(ProjectionMask::leaves(&descr, [k, c]))
        .with_batch_size(PLAN_BATCH_ROWS)
        .build()?;
    let (mut matched, mut changed) = (0, false);
    for batch in reader {
        let batch = batch?;
        let as_utf8 = |name: &str| -> Result<StringArray> {
            let a = batch
                .column_by_name(name)
                .context("projected column missing")?;
            Ok(cast(a, &DataType::Utf8)?.as_string::<i32>().clone())
        };
        let (keys, old) = (as_utf8(key)?, as_utf8(column)?);
        for i in 0..keys.len() {
            let old = old.is_valid(i).then(|| old.value(i));
            match keys.is_valid(i).then(|| new.get(keys.value(i))).flatten() {
                Some(v) => {
                    matched += 1;
                    changed |= old != Some(v.as_str());
                    values.append_value(v);
                }
                None => values.append_option(old),
            }
        }
    }
    let values = values.finish();
    let change = if changed {
        Some((c, cast(&values, schema.field(c).data_type())?))
    } else {
        None
    };
    Ok(Planned {
        src: src.to_path_buf(),
        matched,
        change,
        meta,
    })
}

impl Planned {
    /// Write the patched file to `dst` (a hard link to the source when no
    /// value changed). Returns whether it was rewritten.
    pub fn write(self, dst: &Path) -> Result<bool> {
        let Some((c, values)) = self.change else {
            if std::fs::hard_link(&self.src, dst).is_err() {
                std::fs::copy(&self.src, dst).with_context(|| {
                    format!(
                        "failed to copy `{}` to `{}`",
                        self.src.display(),
                        dst.display()
                    )
                })?;
            }
            return Ok(false);
        };
        let src = File::open(&self.src)
            .with_context(|| format!("failed to open `{}`", self.src.display()))?;
        let md = self.meta.metadata();
        let file_md = md.file_metadata();
        let row_groups = md.row_groups();
        let mut props = WriterProperties::builder()
            // As silver writes (engine.rs): zstd level 1, no dictionary.
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
            .set_dictionary_enabled(false)
            .set_key_value_metadata(file_md.key_value_metadata().cloned());
        if let Some(by) = file_md.created_by() {
            props = props.set_created_by(by.to_string());
        }
        if let Some(sorting) = row_groups.first().and_then(|rg| rg.sorting_columns()) {
            props = props.set_sorting_columns(Some(sorting.clone()));
        }
        let out =
            File::create(dst).with_context(|| format!("failed to create `{}`", dst.display()))?;
        let mut writer = SerializedFileWriter::new(
            out,
            file_md.schema_descr().root_schema_ptr(),
            Arc::new(props.build()),
        )?;
        let schema = self.meta.schema().clone();
        let factory = ArrowRowGroupWriterFactory::new(&writer, schema.clone());
        let (column_index, offset_index) = (md.column_index(), md.offset_index());
        let mut start = 0;
        for (g, rg) in row_groups.iter().enumerate() {
            let n = rg.num_rows() as usize;
            let mut out = writer.next_row_group()?;
            for (i, chunk) in rg.columns().iter().enumerate() {
                if i == c {
                    let mut w = factory.create_column_writers(g)?.swap_remove(i);
                    for leaf in compute_leaves(schema.field(i), &values.slice(start, n))? {
                        w.write(&leaf)?;
                    }
                    w.close()?.append_to_row_group(&mut out)?;
                } else {
                    let close = ColumnCloseResult {
                        bytes_written: chunk.compressed_size() as u64,
                        rows_written: n as u64,
                        metadata: chunk.clone(),
                        bloom_filter: Sbbf::read_from_column_chunk(chunk, &src).ok().flatten(),
                        column_index: column_index.and_then(|x| x.get(g)?.get(i).cloned()),
                        offset_index: offset_index.and_then(|x| x.get(g)?.get(i).cloned()),
                    };
                    out.append_column(&src, close)?;
                }
            }
            out.close()?;
            start += n;
        }
        writer
            .close()
            .with_context(|| format!("failed to write `{}`", dst.display()))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::compute::concat_batches;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::EnabledStatistics;

    fn sample(path: &Path) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
            Field::new("session_id", DataType::Utf8View, true),
        ]));
        let ids: Vec<String> = (0..10_000).map(|i| format!("e{i:05}")).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(&ids)),
                Arc::new(Int64Array::from_iter(
                    (0..10_000).map(|i| (i % 7 != 0).then_some(i)),
                )),
                Arc::new(datafusion::arrow::array::StringViewArray::from_iter(
                    (0..10_000).map(|i| (i % 11 != 0).then(|| format!("s{}", i / 10))),
                )),
            ],
        )
        .unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(3_000))
            .set_data_page_row_count_limit(500)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_bloom_filter_enabled(true)
            .build();
        let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        batch
    }

    fn read(path: &Path) -> RecordBatch {
        let b = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        let schema = b.schema().clone();
        let batches: Vec<RecordBatch> = b.build().unwrap().map(|b| b.unwrap()).collect();
        concat_batches(&schema, &batches).unwrap()
    }

    #[test]
    fn one_column_changes_and_the_rest_is_copied() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        let before = sample(&src);
        // Rows in the first and the last row group, one whose value was null.
        let new: HashMap<String, String> = [("e00001", "x1"), ("e09999", "x2"), ("e00011", "x3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let planned = plan(&src, "event_id", "session_id", &new).unwrap();
        assert_eq!(planned.matched, 3);
        assert!(planned.write(&dst).unwrap());
        let after = read(&dst);
        assert_eq!(after.schema(), before.schema());
        assert_eq!(after.num_rows(), before.num_rows());
        assert_eq!(after.column(0), before.column(0));
        assert_eq!(after.column(1), before.column(1));
        let s = cast(after.column(2), &DataType::Utf8).unwrap();
        let s = s.as_string::<i32>();
        let old = cast(before.column(2), &DataType::Utf8).unwrap();
        let old = old.as_string::<i32>();
        for i in 0..s.len() {
            match i {
                1 => assert_eq!(s.value(i), "x1"),
                9_999 => assert_eq!(s.value(i), "x2"),
                11 => assert_eq!(s.value(i), "x3"),
                _ => assert_eq!(
                    s.is_valid(i).then(|| s.value(i)),
                    old.is_valid(i).then(|| old.value(i))
                ),
            }
        }
        // Same row groups; the copied columns keep their page indexes and
        // Bloom filters.
        let meta = |p: &Path| {
            ArrowReaderMetadata::load(
                &File::open(p).unwrap(),
                ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required),
            )
            .unwrap()
        };
        let (a, b) = (meta(&src), meta(&dst));
        let rows = |m: &ArrowReaderMetadata| -> Vec<i64> {
            m.metadata()
                .row_groups()
                .iter()
                .map(|g| g.num_rows())
                .collect()
        };
        assert_eq!(rows(&a), rows(&b));
        assert_eq!(rows(&b), vec![3_000, 3_000, 3_000, 1_000]);
        let pages = |m: &ArrowReaderMetadata| m.metadata().offset_index().unwrap()[0][0].clone();
        assert!(pages(&b).page_locations.len() > 1);
        assert_eq!(pages(&a), pages(&b));
        let f = File::open(&dst).unwrap();
        let chunk = b.metadata().row_group(3).column(0);
        let bloom = Sbbf::read_from_column_chunk(chunk, &f).unwrap().unwrap();
        assert!(bloom.check(&"e09999"));
    }

    #[test]
    fn an_unchanged_file_is_linked() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        sample(&src);
        // Matched, but the value is the same.
        let new = HashMap::from([("e00005".to_string(), "s0".to_string())]);
        let planned = plan(&src, "event_id", "session_id", &new).unwrap();
        assert_eq!(planned.matched, 1);
        assert!(!planned.write(&dst).unwrap());
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
    }
}
