//! Rewrite one column of a Parquet file, copying every other column chunk
//! byte for byte.
//!
//! A late event that starts a session earlier changes the `session_id` of
//! that session's built rows, and nothing else about them. Re-encoding a
//! whole date's files for that cost a decode and an encode of every column;
//! here only the patched column is decoded, and only its pages that hold a
//! changed value are encoded again (see [`splice`]). Its other pages, and
//! the other column chunks (with their statistics, page indexes and Bloom
//! filters), are spliced into the new file as they are. Row order, row
//! groups, pages and the Arrow schema stay the same, so readers see the
//! same file with new values in one column.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Array, ArrayBuilder, AsArray, StringArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use datafusion::parquet::arrow::arrow_writer::{ArrowRowGroupWriterFactory, compute_leaves};
use datafusion::parquet::basic::Type as PhysicalType;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::bloom_filter::Sbbf;
use datafusion::parquet::column::writer::{ColumnCloseResult, ColumnWriter, get_column_writer};
use datafusion::parquet::data_type::ByteArray;
use datafusion::parquet::file::metadata::PageIndexPolicy;
use datafusion::parquet::file::metadata::{
    ColumnChunkMetaData, ColumnIndexBuilder, OffsetIndexBuilder,
};
use datafusion::parquet::file::page_index::offset_index::OffsetIndexMetaData;
use datafusion::parquet::file::properties::EnabledStatistics;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::file::statistics::Statistics;
use datafusion::parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use datafusion::parquet::schema::types::ColumnDescPtr;

/// Rows per batch read by [`plan`].
const PLAN_BATCH_ROWS: usize = 8192;

/// One file read for a patch: its rows' new values, if any row changes.
pub struct Planned {
    src: PathBuf,
    /// Rows whose key is in the patch (changed or not).
    pub matched: usize,
    /// The column's index, and its new values for the whole file; `None`
    /// when no value changes (the file is linked, not rewritten).
    change: Option<Change>,
    meta: ArrowReaderMetadata,
}

/// The new values of the patched column.
struct Change {
    column: usize,
    /// Every row's value, as text.
    text: StringArray,
    /// The rows (in file order) whose value changed, ascending.
    rows: Vec<usize>,
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
    // Every row's key is looked up: with hashbrown's default hasher
    // (foldhash) rather than std's SipHash.
    let new: datafusion::common::HashMap<&str, &str> =
        new.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut matched = 0;
    let mut changed_rows = Vec::new();
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
                    if old != Some(*v) {
                        changed_rows.push(values.len());
                    }
                    values.append_value(v);
                }
                None => values.append_option(old),
            }
        }
    }
    let text = values.finish();
    let change = if changed_rows.is_empty() {
        None
    } else {
        Some(Change {
            column: c,
            text,
            rows: changed_rows,
        })
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
        let Some(change) = self.change else {
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
        let c = change.column;
        let page_props = Arc::new(page_properties()?);
        let mut start = 0;
        for (g, rg) in row_groups.iter().enumerate() {
            let n = rg.num_rows() as usize;
            let mut out = writer.next_row_group()?;
            for (i, chunk) in rg.columns().iter().enumerate() {
                if i == c {
                    // The rows of this row group that changed.
                    let from = change.rows.partition_point(|r| *r < start);
                    let to = change.rows.partition_point(|r| *r < start + n);
                    let rows: Vec<usize> =
                        change.rows[from..to].iter().map(|r| r - start).collect();
                    let spliced = splice(
                        &src,
                        chunk,
                        offset_index.and_then(|x| x.get(g)?.get(i)),
                        column_index.and_then(|x| x.get(g)?.get(i)).is_some(),
                        &change.text.slice(start, n),
                        &rows,
                        &page_props,
                    )
                    .with_context(|| format!("`{}`: patching its pages", self.src.display()))?;
                    match spliced {
                        Some((bytes, close)) => out.append_column(&bytes, close)?,
                        None => {
                            // The whole chunk, in the type the schema declares.
                            let values =
                                cast(&change.text.slice(start, n), schema.field(i).data_type())?;
                            let mut w = factory.create_column_writers(g)?.swap_remove(i);
                            for leaf in compute_leaves(schema.field(i), &values)? {
                                w.write(&leaf)?;
                            }
                            w.close()?.append_to_row_group(&mut out)?;
                        }
                    }
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

/// How a re-encoded page is written: as silver writes (engine.rs), zstd
/// level 1 without a dictionary, and as one page whatever its rows.
fn page_properties() -> Result<WriterProperties> {
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_data_page_size_limit(usize::MAX)
        .set_data_page_row_count_limit(usize::MAX)
        .set_write_batch_size(usize::MAX)
        .build())
}

/// The patched column chunk `chunk` (of a string column), built from its
/// pages in `src`: a page holding none of the `changed` rows is copied as
/// it is, and the others are encoded anew from `values` (the chunk's new
/// values, every row). On the 5M-event bench a late batch changes the
/// session id of 7–119 rows of a date's ~165k, so nearly every page is a
/// copy, where encoding and compressing the whole column took ~8% of the
/// late-batch run's CPU. The chunk's statistics and page index are
/// computed from the new values.
///
/// `None` where the chunk's layout is not this simple one (a dictionary
/// page, a Bloom filter, no offset index, nested or non-string values, a
/// page header that does not read): it is then encoded whole.
fn splice(
    src: &File,
    chunk: &ColumnChunkMetaData,
    offsets: Option<&OffsetIndexMetaData>,
    indexed: bool,
    values: &StringArray,
    changed: &[usize],
    page_props: &Arc<WriterProperties>,
) -> Result<Option<(bytes::Bytes, ColumnCloseResult)>> {
    use std::os::unix::fs::FileExt;
    let descr = chunk.column_descr_ptr();
    let simple = chunk.dictionary_page_offset().is_none()
        && chunk.bloom_filter_offset().is_none()
        && descr.physical_type() == PhysicalType::BYTE_ARRAY
        && descr.max_rep_level() == 0
        && descr.max_def_level() <= 1;
    let Some(offsets) = offsets.filter(|_| simple) else {
        return Ok(None);
    };
    let pages = offsets.page_locations();
    let rows = values.len();
    if pages.is_empty() || pages[0].first_row_index != 0 || chunk.num_values() as usize != rows {
        return Ok(None);
    }
    let mut buf: Vec<u8> = Vec::with_capacity(chunk.compressed_size() as usize);
    let mut uncompressed: i64 = 0;
    let mut locations = OffsetIndexBuilder::new();
    let mut index = ColumnIndexBuilder::new(PhysicalType::BYTE_ARRAY);
    let (mut low, mut high, mut nulls): (Option<&str>, Option<&str>, u64) = (None, None, 0);
    for (p, page) in pages.iter().enumerate() {
        let a = page.first_row_index as usize;
        let b = pages
            .get(p + 1)
            .map_or(rows, |n| n.first_row_index as usize);
        if a > b || b > rows {
            return Ok(None);
        }
        let at = buf.len();
        let slice = values.slice(a, b - a);
        let first_changed = changed.partition_point(|r| *r < a);
        if changed.get(first_changed).is_some_and(|r| *r < b) {
            let (bytes, size) = encode_page(&descr, page_props, &slice)?;
            buf.extend_from_slice(&bytes);
            uncompressed += size;
        } else {
            let len = usize::try_from(page.compressed_page_size)?;
            buf.resize(at + len, 0);
            src.read_exact_at(&mut buf[at..], u64::try_from(page.offset)?)?;
            let Some(size) = page_size(&buf[at..]) else {
                return Ok(None);
            };
            uncompressed += size;
        }
        locations.append_offset_and_size(at as i64, i32::try_from(buf.len() - at)?);
        locations.append_row_count((b - a) as i64);
        // The page's statistics, and the chunk's.
        let (mut min, mut max) = (None::<&str>, None::<&str>);
        for v in (a..b)
            .filter(|i| values.is_valid(*i))
            .map(|i| values.value(i))
        {
            min = Some(min.map_or(v, |m| m.min(v)));
            max = Some(max.map_or(v, |m| m.max(v)));
        }
        let page_nulls = slice.null_count();
        nulls += page_nulls as u64;
        match (min, max) {
            (Some(lo), Some(hi)) => {
                index.append(
                    false,
                    lo.as_bytes().to_vec(),
                    hi.as_bytes().to_vec(),
                    page_nulls as i64,
                );
                low = Some(low.map_or(lo, |l| l.min(lo)));
                high = Some(high.map_or(hi, |h| h.max(hi)));
            }
            _ => index.append(true, Vec::new(), Vec::new(), page_nulls as i64),
        }
    }
    let bytes_written = buf.len() as u64;
    let text = |s: Option<&str>| s.map(|s| ByteArray::from(s.as_bytes().to_vec()));
    let mut metadata = chunk
        .clone()
        .into_builder()
        .set_data_page_offset(0)
        .set_dictionary_page_offset(None)
        .set_index_page_offset(None)
        .set_total_compressed_size(bytes_written as i64)
        .set_total_uncompressed_size(uncompressed)
        .set_unencoded_byte_array_data_bytes(None)
        .set_definition_level_histogram(None)
        .set_repetition_level_histogram(None);
    metadata = match chunk.statistics() {
        Some(_) => metadata.set_statistics(Statistics::byte_array(
            text(low),
            text(high),
            None,
            Some(nulls),
            false,
        )),
        None => metadata.clear_statistics(),
    };
    let close = ColumnCloseResult {
        bytes_written,
        rows_written: rows as u64,
        metadata: metadata.build()?,
        bloom_filter: None,
        column_index: if indexed { Some(index.build()?) } else { None },
        offset_index: Some(locations.build()),
    };
    Ok(Some((bytes::Bytes::from(buf), close)))
}

/// One data page of `values` (a whole page's rows), encoded and
/// compressed: its bytes (header and data) and its uncompressed size.
fn encode_page(
    descr: &ColumnDescPtr,
    props: &Arc<WriterProperties>,
    values: &StringArray,
) -> Result<(Vec<u8>, i64)> {
    let mut sink = TrackedWrite::new(Vec::new());
    let close = {
        let pages = SerializedPageWriter::new(&mut sink);
        let mut writer = get_column_writer(descr.clone(), props.clone(), Box::new(pages));
        let ColumnWriter::ByteArrayColumnWriter(w) = &mut writer else {
            bail!("a string column's writer is not a byte array writer");
        };
        let present: Vec<ByteArray> = values
            .iter()
            .flatten()
            .map(|v| ByteArray::from(v.as_bytes().to_vec()))
            .collect();
        let levels: Vec<i16> = (0..values.len())
            .map(|i| i16::from(values.is_valid(i)))
            .collect();
        let defs = (descr.max_def_level() > 0).then_some(levels.as_slice());
        w.write_batch(&present, defs, None)?;
        writer.close()?
    };
    let bytes = sink.into_inner()?;
    if close.metadata.compressed_size() as usize != bytes.len() {
        bail!("a re-encoded page is not one page");
    }
    Ok((bytes, close.metadata.uncompressed_size()))
}

/// A page's uncompressed size with its header, from the header's first
/// three fields (Thrift compact: type, uncompressed size, compressed
/// size, each an i32 field one id after the previous); `None` if `raw`
/// (the page's header and data) does not start that way.
fn page_size(raw: &[u8]) -> Option<i64> {
    let mut at = 0;
    let mut field = || -> Option<i64> {
        if *raw.get(at)? != 0x15 {
            return None;
        }
        at += 1;
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let b = *raw.get(at)?;
            at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 35 {
                return None;
            }
        }
        Some(((v >> 1) as i64) ^ -((v & 1) as i64))
    };
    let (_kind, uncompressed, compressed) = (field()?, field()?, field()?);
    let header = (raw.len() as i64).checked_sub(compressed)?;
    (header >= at as i64 && uncompressed >= 0).then_some(header + uncompressed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::compute::concat_batches;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::parquet::arrow::ArrowWriter;

    /// `e00000` … `e09999`.
    fn event_ids() -> StringArray {
        StringArray::from_iter_values((0..10_000).map(|i| format!("e{i:05}")))
    }

    /// Write `batch` to `path` as one Parquet file.
    fn write_file(path: &Path, batch: &RecordBatch, props: WriterProperties) {
        let mut w =
            ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
        w.write(batch).unwrap();
        w.close().unwrap();
    }

    fn sample(path: &Path) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
            Field::new("session_id", DataType::Utf8View, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(event_ids()),
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
        write_file(path, &batch, props);
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
    fn pages_without_a_changed_row_are_copied_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("session_id", DataType::Utf8, true),
        ]));
        let before = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(event_ids()),
                Arc::new(StringArray::from_iter(
                    (0..10_000).map(|i| (i % 11 != 0).then(|| format!("s{:04}", i / 10))),
                )),
            ],
        )
        .unwrap();
        // As silver writes: small pages, page statistics, a Bloom filter on
        // event_id only, zstd.
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(3_000))
            .set_data_page_row_count_limit(500)
            .set_write_batch_size(500)
            .set_dictionary_enabled(false)
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_column_bloom_filter_enabled("event_id".into(), true)
            .build();
        write_file(&src, &before, props);
        // Row 2 (page 0 of row group 0), row 3,300 (page 0 of row group 1:
        // a new minimum), 9,999 (the last page: a new maximum) and row 22,
        // whose value was null.
        let new: HashMap<String, String> = [
            ("e00002", "t1"),
            ("e03300", "a0"),
            ("e09999", "z9"),
            ("e00022", "t2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let planned = plan(&src, "event_id", "session_id", &new).unwrap();
        assert!(planned.write(&dst).unwrap());

        let after = read(&dst);
        assert_eq!(after.column(0), before.column(0));
        let (s, old) = (
            after.column(1).as_string::<i32>(),
            before.column(1).as_string::<i32>(),
        );
        for i in 0..s.len() {
            let want = match i {
                2 => Some("t1"),
                3_300 => Some("a0"),
                9_999 => Some("z9"),
                22 => Some("t2"),
                _ => old.is_valid(i).then(|| old.value(i)),
            };
            assert_eq!(s.is_valid(i).then(|| s.value(i)), want, "row {i}");
        }
        let meta = |p: &Path| {
            ArrowReaderMetadata::load(
                &File::open(p).unwrap(),
                ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required),
            )
            .unwrap()
        };
        let (a, b) = (meta(&src), meta(&dst));
        // The same pages; those without a changed row are the same bytes.
        let sizes = |m: &ArrowReaderMetadata, g: usize| -> Vec<(i32, i64)> {
            m.metadata().offset_index().unwrap()[g][1]
                .page_locations
                .iter()
                .map(|p| (p.compressed_page_size, p.first_row_index))
                .collect()
        };
        let (f_src, f_dst) = (File::open(&src).unwrap(), File::open(&dst).unwrap());
        let bytes = |f: &File, m: &ArrowReaderMetadata, g: usize, p: usize| {
            use std::os::unix::fs::FileExt;
            let loc = &m.metadata().offset_index().unwrap()[g][1].page_locations[p];
            let mut buf = vec![0; loc.compressed_page_size as usize];
            f.read_exact_at(&mut buf, loc.offset as u64).unwrap();
            buf
        };
        for g in 0..4 {
            let (sa, sb) = (sizes(&a, g), sizes(&b, g));
            assert_eq!(sa.len(), sb.len(), "row group {g}");
            assert!(sa.len() >= 6 || g == 3);
            for p in 0..sa.len() {
                assert_eq!(sa[p].1, sb[p].1);
                let touched = matches!((g, p), (0, 0) | (1, 0) | (3, 1));
                if !touched {
                    assert_eq!(bytes(&f_src, &a, g, p), bytes(&f_dst, &b, g, p), "{g}/{p}");
                }
            }
        }
        // Statistics and page index follow the new values.
        let chunk = |g: usize| b.metadata().row_group(g).column(1).clone();
        let stats = chunk(1).statistics().unwrap().clone();
        assert_eq!(stats.min_bytes_opt().unwrap(), b"a0");
        assert_eq!(stats.max_bytes_opt().unwrap(), b"s0599");
        assert_eq!(
            chunk(3).statistics().unwrap().max_bytes_opt().unwrap(),
            b"z9"
        );
        assert_eq!(
            chunk(0).statistics().unwrap().null_count_opt(),
            a.metadata()
                .row_group(0)
                .column(1)
                .statistics()
                .unwrap()
                .null_count_opt()
                .map(|n| n - 1)
        );
        let index = &b.metadata().column_index().unwrap()[1][1];
        use datafusion::parquet::file::page_index::column_index::ColumnIndexMetaData;
        let ColumnIndexMetaData::BYTE_ARRAY(index) = index else {
            panic!("a string column's index: {index:?}");
        };
        assert_eq!(index.min_value(0).unwrap(), b"a0".as_slice());
        assert_eq!(index.max_value(0).unwrap(), b"s0349".as_slice());
        // A reader that skips to a later page through the offset index
        // finds the right rows.
        let selection = datafusion::parquet::arrow::arrow_reader::RowSelection::from(vec![
            datafusion::parquet::arrow::arrow_reader::RowSelector::skip(9_990),
            datafusion::parquet::arrow::arrow_reader::RowSelector::select(10),
        ]);
        let rows: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::new_with_metadata(
            File::open(&dst).unwrap(),
            b.clone(),
        )
        .with_row_selection(selection)
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
        let last = rows.last().unwrap();
        let col = last.column(1).as_string::<i32>();
        assert_eq!(col.value(col.len() - 1), "z9");
        assert_eq!(
            last.column(0).as_string::<i32>().value(col.len() - 1),
            "e09999"
        );
    }

    #[test]
    fn page_sizes_are_read_from_the_page_header() {
        // type 0 (data page), uncompressed 100, compressed 3, then the rest
        // of a 9-byte header and 3 bytes of data.
        let mut raw = vec![0x15, 0x00, 0x15, 0xc8, 0x01, 0x15, 0x06, 0x2c, 0x00];
        raw.extend([1, 2, 3]);
        assert_eq!(page_size(&raw), Some(9 + 100));
        assert_eq!(page_size(&raw[1..]), None);
        assert_eq!(page_size(&[0x15, 0x00, 0x15]), None);
        // A compressed size larger than the page.
        assert_eq!(page_size(&[0x15, 0x00, 0x15, 0x02, 0x15, 0x7e]), None);
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
