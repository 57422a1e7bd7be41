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

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Array, ArrayBuilder, AsArray, StringArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelectionPolicy, RowSelector,
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
use datafusion::parquet::file::page_index::column_index::ColumnIndexMetaData;
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
    /// The column's index, and its new values for the rows read; `None`
    /// when no value changes (the file is linked, not rewritten).
    change: Option<Change>,
    meta: ArrowReaderMetadata,
}

/// The new values of the patched column.
struct Change {
    /// Its leaf column in the file (its chunks, page indexes and writer).
    column: usize,
    /// Its field in the Arrow schema (a nested field before it has
    /// several leaves, so the two differ).
    field: usize,
    /// The rows read (every row, or the pages [`Near`] located), as
    /// ascending ranges of row numbers, and their values, concatenated.
    spans: Vec<Range<usize>>,
    text: StringArray,
    /// The rows (in file order) whose value changed, ascending.
    rows: Vec<usize>,
}

impl Change {
    /// The values of rows `a..b`, if they were read.
    fn values(&self, a: usize, b: usize) -> Option<StringArray> {
        let mut at = 0;
        for s in &self.spans {
            if s.start <= a && b <= s.end {
                return Some(self.text.slice(at + a - s.start, b - a));
            }
            at += s.len();
        }
        None
    }

    /// Every row's value: those not read are read from `src` now (for a
    /// chunk that turns out not to splice after all, encoded whole).
    fn whole(&self, src: &File, meta: &ArrowReaderMetadata) -> Result<StringArray> {
        let rows = meta.metadata().file_metadata().num_rows() as usize;
        if self.spans.len() == 1 && self.spans[0] == (0..rows) {
            return Ok(self.text.clone());
        }
        let descr = meta.metadata().file_metadata().schema_descr_ptr();
        let reader =
            ParquetRecordBatchReaderBuilder::new_with_metadata(src.try_clone()?, meta.clone())
                .with_projection(ProjectionMask::leaves(&descr, [self.column]))
                .with_batch_size(PLAN_BATCH_ROWS)
                .build()?;
        let mut out = StringBuilder::with_capacity(rows, 0);
        // (row number, index in `text`) of each row read, in order.
        let mut read = self
            .spans
            .iter()
            .flat_map(Clone::clone)
            .enumerate()
            .map(|(j, r)| (r, j))
            .peekable();
        for batch in reader {
            let old = cast(batch?.column(0), &DataType::Utf8)?;
            let old = old.as_string::<i32>();
            for i in 0..old.len() {
                let r = out.len();
                let v = match read.next_if(|(row, _)| *row == r) {
                    Some((_, j)) => self.text.is_valid(j).then(|| self.text.value(j)),
                    None => old.is_valid(i).then(|| old.value(i)),
                };
                out.append_option(v);
            }
        }
        if out.len() != rows {
            bail!("read {} of {rows} rows", out.len());
        }
        Ok(out.finish())
    }
}

/// Where [`plan`] looks for the rows to patch: every row whose key is in
/// the patch has one of `values` in string column `column` (e.g. the users
/// of the changed events, in files sorted by user). Only the pages whose
/// page index says they may hold one of them are read (with the patched
/// column's pages around them), where a 5M-event late batch's plan read
/// two whole columns of every file of each patched date to change a few
/// dozen rows. A row with a key of the patch but none of these values is
/// not seen, and not counted in `matched`.
pub struct Near<'a> {
    pub column: &'a str,
    pub values: &'a BTreeSet<String>,
}

/// Read `src`'s `key` and `column` columns and work out `column`'s new
/// values: `new[key]` where the row's key is in `new`, else as it is. A
/// file without either column has nothing to patch (it is linked). With
/// `near`, only the rows it locates are read (see [`Near`]).
pub fn plan(
    src: &Path,
    key: &str,
    column: &str,
    new: &HashMap<String, String>,
    near: Option<Near>,
) -> Result<Planned> {
    let (file, meta) = open_indexed(src)?;
    let schema = meta.schema().clone();
    let descr = meta.metadata().file_metadata().schema_descr_ptr();
    // Leaf columns of the top-level string fields read (the file may have
    // nested columns too, a struct or a list of a typed table's: each
    // has leaves of its own, which are copied as they are).
    let leaf =
        |name: &str| (0..descr.num_columns()).find(|&i| descr.column(i).path().parts() == [name]);
    let (Some(k), Some(c), Ok(field)) = (leaf(key), leaf(column), schema.index_of(column)) else {
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
    // With `near`: the column it names, and the rows it locates.
    let located = near.as_ref().and_then(|n| {
        let l = leaf(n.column)?;
        Some((n.column, n.values, near_rows(&meta, c, l, n.values)?))
    });
    let (near_column, spans) = match located {
        Some((l, values, spans)) => (Some((l, values)), spans),
        None => (None, std::iter::once(0..rows).collect()),
    };
    let selected: usize = spans.iter().map(Range::len).sum();
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
    let bytes = usize::try_from(bytes).unwrap_or(0) / rows.max(1) * selected;
    let mut values = StringBuilder::with_capacity(selected, bytes);
    let mut leaves = vec![k, c];
    leaves.extend(near_column.and_then(|(name, _)| leaf(name)));
    let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone())
        .with_projection(ProjectionMask::leaves(&descr, leaves))
        .with_batch_size(PLAN_BATCH_ROWS);
    if near_column.is_some() {
        // Whole pages are skipped through the offset index, undecoded.
        builder = builder
            .with_row_selection(selection(&spans, rows))
            .with_row_selection_policy(RowSelectionPolicy::Selectors);
    }
    let reader = builder.build()?;
    // Every row's key is looked up: with hashbrown's default hasher
    // (foldhash) rather than std's SipHash.
    let new: datafusion::common::HashMap<&str, &str> =
        new.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut matched = 0;
    let mut changed_rows = Vec::new();
    // The row numbers of the rows read, in order.
    let mut rows_read = spans.iter().flat_map(Clone::clone);
    for batch in reader {
        let batch = batch?;
        let as_utf8 = |name: &str| -> Result<StringArray> {
            let a = batch
                .column_by_name(name)
                .context("projected column missing")?;
            Ok(cast(a, &DataType::Utf8)?.as_string::<i32>().clone())
        };
        let (keys, old) = (as_utf8(key)?, as_utf8(column)?);
        let near_values = match near_column {
            Some((name, values)) => Some((as_utf8(name)?, values)),
            None => None,
        };
        for i in 0..keys.len() {
            let row = rows_read.next().context("more rows read than selected")?;
            let old = old.is_valid(i).then(|| old.value(i));
            let hit = keys.is_valid(i).then(|| new.get(keys.value(i))).flatten();
            // Located rows count only with one of the values looked for:
            // a key elsewhere would not have been seen.
            let hit = hit.filter(|_| {
                near_values
                    .as_ref()
                    .is_none_or(|(v, set)| v.is_valid(i) && set.contains(v.value(i)))
            });
            match hit {
                Some(v) => {
                    matched += 1;
                    if old != Some(*v) {
                        changed_rows.push(row);
                    }
                    values.append_value(v);
                }
                None => values.append_option(old),
            }
        }
    }
    let text = values.finish();
    if text.len() != selected {
        bail!(
            "`{}`: read {} of the {selected} rows planned",
            src.display(),
            text.len()
        );
    }
    let change = if changed_rows.is_empty() {
        None
    } else {
        Some(Change {
            column: c,
            field,
            spans,
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

/// A Parquet file opened with its footer and page index (if it has one).
pub fn open_indexed(path: &Path) -> Result<(File, ArrowReaderMetadata)> {
    let file = File::open(path).with_context(|| format!("failed to open `{}`", path.display()))?;
    let meta = ArrowReaderMetadata::load(
        &file,
        ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
    )
    .with_context(|| format!("failed to read the footer of `{}`", path.display()))?;
    Ok((file, meta))
}

/// `spans` (ascending row ranges) of a file of `rows` rows, as a selection.
pub fn selection(spans: &[Range<usize>], rows: usize) -> RowSelection {
    let mut out = Vec::new();
    let mut at = 0;
    for s in spans {
        if s.start > at {
            out.push(RowSelector::skip(s.start - at));
        }
        out.push(RowSelector::select(s.len()));
        at = s.end;
    }
    if rows > at {
        out.push(RowSelector::skip(rows - at));
    }
    RowSelection::from(out)
}

/// The rows [`plan`] reads to find every row whose string column `l` holds
/// one of `values`: each page of the patched column `c` that overlaps a
/// page of `l` whose statistics may hold one. `None` where the page index
/// cannot say, or where `c` does not splice page by page (the write then
/// needs every row's value).
fn near_rows(
    meta: &ArrowReaderMetadata,
    c: usize,
    l: usize,
    values: &BTreeSet<String>,
) -> Option<Vec<Range<usize>>> {
    let hits = pages_holding(meta, l, values)?;
    let md = meta.metadata();
    let (column_index, offset_index) = (md.column_index()?, md.offset_index()?);
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut start = 0;
    for (g, rg) in md.row_groups().iter().enumerate() {
        let n = rg.num_rows() as usize;
        let (ci, oi) = (column_index.get(g)?, offset_index.get(g)?);
        if !spliceable(rg.column(c), oi.get(c), ci.get(c), n) {
            return None;
        }
        for page in page_rows(oi.get(c)?, n)? {
            let page = start + page.start..start + page.end;
            // The first hit ending after the page starts (hits ascend).
            let next = hits.partition_point(|h| h.end <= page.start);
            if hits.get(next).is_some_and(|h| h.start < page.end) {
                merge_push(&mut out, page);
            }
        }
        start += n;
    }
    Some(out)
}

/// The rows (ascending ranges of the file's rows) of every page of string
/// column `l` whose statistics may hold one of `values`: where a file is
/// sorted by `l`, a few values' rows are found without decoding the other
/// pages. `None` where the page index cannot say (the caller then reads
/// every row).
pub fn pages_holding(
    meta: &ArrowReaderMetadata,
    l: usize,
    values: &BTreeSet<String>,
) -> Option<Vec<Range<usize>>> {
    let md = meta.metadata();
    let (column_index, offset_index) = (md.column_index()?, md.offset_index()?);
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut start = 0;
    for (g, rg) in md.row_groups().iter().enumerate() {
        let n = rg.num_rows() as usize;
        let ColumnIndexMetaData::BYTE_ARRAY(index) = column_index.get(g)?.get(l)? else {
            return None;
        };
        for (p, rows) in page_rows(offset_index.get(g)?.get(l)?, n)?
            .into_iter()
            .enumerate()
        {
            if !index.is_null_page(p) && may_hold(index.min_value(p), index.max_value(p), values) {
                merge_push(&mut out, start + rows.start..start + rows.end);
            }
        }
        start += n;
    }
    Some(out)
}

/// Append `rows` to ascending ranges `out`, joining it to the last one
/// where they touch.
fn merge_push(out: &mut Vec<Range<usize>>, rows: Range<usize>) {
    match out.last_mut() {
        Some(last) if last.end == rows.start => last.end = rows.end,
        _ => out.push(rows),
    }
}

/// The row ranges of a chunk's pages (of a row group of `rows` rows).
fn page_rows(offsets: &OffsetIndexMetaData, rows: usize) -> Option<Vec<Range<usize>>> {
    let pages = offsets.page_locations();
    if pages.first()?.first_row_index != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(pages.len());
    for (p, page) in pages.iter().enumerate() {
        let a = usize::try_from(page.first_row_index).ok()?;
        let b = match pages.get(p + 1) {
            Some(next) => usize::try_from(next.first_row_index).ok()?,
            None => rows,
        };
        if a > b || b > rows {
            return None;
        }
        out.push(a..b);
    }
    Some(out)
}

/// May a page whose statistics are `min`..`max` (bytes; a truncated
/// minimum is a prefix, so never above the true one, and a truncated
/// maximum is rounded up) hold one of `values`? Strings order as bytes.
fn may_hold(min: Option<&[u8]>, max: Option<&[u8]>, values: &BTreeSet<String>) -> bool {
    let (Some(min), Some(max)) = (min, max) else {
        return true;
    };
    let first = match std::str::from_utf8(min) {
        Ok(min) => values
            .range::<str, _>((std::ops::Bound::Included(min), std::ops::Bound::Unbounded))
            .next(),
        Err(_) => values.iter().find(|v| v.as_bytes() >= min),
    };
    first.is_some_and(|v| v.as_bytes() <= max)
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
        // Every row's new value, read if a chunk must be encoded whole.
        let mut whole: Option<StringArray> = None;
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
                        column_index.and_then(|x| x.get(g)?.get(i)),
                        |a, b| change.values(start + a, start + b),
                        n,
                        &rows,
                        &page_props,
                    )
                    .with_context(|| format!("`{}`: patching its pages", self.src.display()))?;
                    match spliced {
                        Some((bytes, close)) => out.append_column(&bytes, close)?,
                        None => {
                            // The whole chunk, in the type the schema declares.
                            if whole.is_none() {
                                whole =
                                    Some(change.whole(&src, &self.meta).with_context(|| {
                                        format!("`{}`: reading its column", self.src.display())
                                    })?);
                            }
                            let all = whole.as_ref().expect("just read");
                            let field = schema.field(change.field);
                            let values = cast(&all.slice(start, n), field.data_type())?;
                            let mut w = factory.create_column_writers(g)?.swap_remove(i);
                            for leaf in compute_leaves(field, &values)? {
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

/// A chunk's smallest (or largest) value so far, and whether it is exact.
type Extreme = Option<(Vec<u8>, bool)>;

/// A page's smallest and largest values, and whether both are exact.
type Bounds = (Vec<u8>, Vec<u8>, bool);

/// Page statistics at least this long may have been truncated by the
/// writer (parquet's default column index truncation).
const TRUNCATED_AT: usize = 64;

/// Is `chunk` a flat string column of plain pages (no dictionary, no
/// Bloom filter), which [`splice`] can copy and re-encode page by page?
fn plain_strings(chunk: &ColumnChunkMetaData) -> bool {
    let descr = chunk.column_descr();
    chunk.dictionary_page_offset().is_none()
        && chunk.bloom_filter_offset().is_none()
        && descr.physical_type() == PhysicalType::BYTE_ARRAY
        && descr.max_rep_level() == 0
        && descr.max_def_level() <= 1
}

/// Can chunk `chunk` (of a row group of `rows` rows) be patched by
/// [`splice`] from the values of its changed pages alone: a plain string
/// column with an offset index, and a column index to take the other
/// pages' statistics from?
fn spliceable(
    chunk: &ColumnChunkMetaData,
    offsets: Option<&OffsetIndexMetaData>,
    index: Option<&ColumnIndexMetaData>,
    rows: usize,
) -> bool {
    plain_strings(chunk)
        && chunk.num_values() as usize == rows
        && offsets.is_some_and(|o| page_rows(o, rows).is_some())
        && match index {
            Some(i @ ColumnIndexMetaData::BYTE_ARRAY(_)) => i
                .null_counts()
                .is_some_and(|n| Some(n.len()) == offsets.map(|o| o.page_locations().len())),
            _ => false,
        }
}

/// The patched column chunk `chunk` (of a string column, in a row group of
/// `rows` rows), built from its pages in `src`: a page holding none of the
/// `changed` rows is copied as it is, with its statistics from the column
/// index `index` (or from `values`), and the others are encoded anew from
/// `values` (the new values of a range of the row group's rows, if read).
/// On the 5M-event bench a late batch changes the session id of 7–119
/// rows of a date's ~165k, so nearly every page is a copy, where encoding
/// and compressing the whole column took ~8% of the late-batch run's CPU.
/// The chunk's statistics and page index are computed from the pages'.
///
/// `None` where the chunk's layout is not this simple one (a dictionary
/// page, a Bloom filter, no offset index, nested or non-string values, a
/// page header that does not read), or a value needed was not read: it is
/// then encoded whole.
#[allow(clippy::too_many_arguments)]
fn splice(
    src: &File,
    chunk: &ColumnChunkMetaData,
    offsets: Option<&OffsetIndexMetaData>,
    index: Option<&ColumnIndexMetaData>,
    values: impl Fn(usize, usize) -> Option<StringArray>,
    rows: usize,
    changed: &[usize],
    page_props: &Arc<WriterProperties>,
) -> Result<Option<(bytes::Bytes, ColumnCloseResult)>> {
    use std::os::unix::fs::FileExt;
    let descr = chunk.column_descr_ptr();
    let Some(offsets) = offsets.filter(|_| plain_strings(chunk)) else {
        return Ok(None);
    };
    let Some(ranges) = page_rows(offsets, rows).filter(|_| chunk.num_values() as usize == rows)
    else {
        return Ok(None);
    };
    let pages = offsets.page_locations();
    let old_index = match index {
        Some(ColumnIndexMetaData::BYTE_ARRAY(i)) => Some(i),
        _ => None,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(chunk.compressed_size() as usize);
    let mut uncompressed: i64 = 0;
    let mut locations = OffsetIndexBuilder::new();
    let mut new_index = ColumnIndexBuilder::new(PhysicalType::BYTE_ARRAY);
    // The chunk's bounds, and whether each is exact (not a page index's
    // possibly truncated value).
    let (mut low, mut high): (Extreme, Extreme) = (None, None);
    let mut nulls: u64 = 0;
    for (p, (page, range)) in pages.iter().zip(ranges).enumerate() {
        let (a, b) = (range.start, range.end);
        let at = buf.len();
        let first_changed = changed.partition_point(|r| *r < a);
        let rewrite = changed.get(first_changed).is_some_and(|r| *r < b);
        // The page's statistics: (min, max, exact) and its nulls.
        let (bounds, page_nulls) = if rewrite {
            let Some(slice) = values(a, b) else {
                return Ok(None);
            };
            let (bytes, size) = encode_page(&descr, page_props, &slice)?;
            buf.extend_from_slice(&bytes);
            uncompressed += size;
            value_bounds(&slice)
        } else {
            let len = usize::try_from(page.compressed_page_size)?;
            buf.resize(at + len, 0);
            src.read_exact_at(&mut buf[at..], u64::try_from(page.offset)?)?;
            let Some(size) = page_size(&buf[at..]) else {
                return Ok(None);
            };
            uncompressed += size;
            match old_index.and_then(|i| Some((i, i.null_count(p)?))) {
                Some((i, n)) => {
                    let bounds = match (i.is_null_page(p), i.min_value(p), i.max_value(p)) {
                        (false, Some(lo), Some(hi)) => Some((
                            lo.to_vec(),
                            hi.to_vec(),
                            lo.len() < TRUNCATED_AT && hi.len() < TRUNCATED_AT,
                        )),
                        _ => None,
                    };
                    (bounds, u64::try_from(n)?)
                }
                None => match values(a, b) {
                    Some(slice) => value_bounds(&slice),
                    None => return Ok(None),
                },
            }
        };
        locations.append_offset_and_size(at as i64, i32::try_from(buf.len() - at)?);
        locations.append_row_count((b - a) as i64);
        nulls += page_nulls;
        match bounds {
            Some((lo, hi, exact)) => {
                if low.as_ref().is_none_or(|(l, _)| lo < *l) {
                    low = Some((lo.clone(), exact));
                }
                if high.as_ref().is_none_or(|(h, _)| hi > *h) {
                    high = Some((hi.clone(), exact));
                }
                new_index.append(false, lo, hi, page_nulls as i64);
            }
            None => new_index.append(true, Vec::new(), Vec::new(), page_nulls as i64),
        }
    }
    let bytes_written = buf.len() as u64;
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
        Some(_) => {
            let (low_exact, high_exact) = (
                low.as_ref().is_none_or(|(_, e)| *e),
                high.as_ref().is_none_or(|(_, e)| *e),
            );
            let text = |b: Extreme| b.map(|(v, _)| ByteArray::from(v));
            let stats =
                match Statistics::byte_array(text(low), text(high), None, Some(nulls), false) {
                    Statistics::ByteArray(s) => Statistics::ByteArray(
                        s.with_min_is_exact(low_exact).with_max_is_exact(high_exact),
                    ),
                    other => other,
                };
            metadata.set_statistics(stats)
        }
        None => metadata.clear_statistics(),
    };
    let close = ColumnCloseResult {
        bytes_written,
        rows_written: rows as u64,
        metadata: metadata.build()?,
        bloom_filter: None,
        column_index: if index.is_some() {
            Some(new_index.build()?)
        } else {
            None
        },
        offset_index: Some(locations.build()),
    };
    Ok(Some((bytes::Bytes::from(buf), close)))
}

/// The (min, max, exact) of `values`' non-null values, and its nulls.
fn value_bounds(values: &StringArray) -> (Option<Bounds>, u64) {
    let (mut min, mut max) = (None::<&str>, None::<&str>);
    for v in values.iter().flatten() {
        min = Some(min.map_or(v, |m| m.min(v)));
        max = Some(max.map_or(v, |m| m.max(v)));
    }
    let bounds = min
        .zip(max)
        .map(|(lo, hi)| (lo.as_bytes().to_vec(), hi.as_bytes().to_vec(), true));
    (bounds, values.null_count() as u64)
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

    /// As silver writes: small pages (500 rows here), page statistics, no
    /// dictionary, zstd; row groups of `rows` rows.
    fn as_silver_writes(
        rows: usize,
    ) -> datafusion::parquet::file::properties::WriterPropertiesBuilder {
        WriterProperties::builder()
            .set_max_row_group_row_count(Some(rows))
            .set_data_page_row_count_limit(500)
            .set_write_batch_size(500)
            .set_dictionary_enabled(false)
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_statistics_enabled(EnabledStatistics::Page)
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
        let planned = plan(&src, "event_id", "session_id", &new, None).unwrap();
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
        // A Bloom filter on event_id only.
        let props = as_silver_writes(3_000)
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
        let planned = plan(&src, "event_id", "session_id", &new, None).unwrap();
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

    /// As silver writes `events`: rows sorted by user (`u000` … `u499`,
    /// 20 rows each), pages of 500 rows with a page index, zstd.
    fn by_user(path: &Path) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("user_id", DataType::Utf8, false),
            Field::new("session_id", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(event_ids()),
                Arc::new(StringArray::from_iter_values(
                    (0..10_000).map(|i| format!("u{:03}", i / 20)),
                )),
                Arc::new(StringArray::from_iter(
                    (0..10_000).map(|i| (i % 13 != 0).then(|| format!("s{:04}", i / 5))),
                )),
            ],
        )
        .unwrap();
        let props = as_silver_writes(4_000).build();
        write_file(path, &batch, props);
        batch
    }

    /// Patch `new` into `src` (to `dst`), looking only near `users` if
    /// given; the rows matched and the file written, read back.
    fn patched(
        src: &Path,
        dst: &Path,
        new: &[(&str, &str)],
        users: Option<&[&str]>,
    ) -> (usize, RecordBatch) {
        let new: HashMap<String, String> = new
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let users: Option<BTreeSet<String>> =
            users.map(|u| u.iter().map(|u| u.to_string()).collect());
        let near = users.as_ref().map(|values| Near {
            column: "user_id",
            values,
        });
        let planned = plan(src, "event_id", "session_id", &new, near).unwrap();
        let matched = planned.matched;
        assert!(planned.write(dst).unwrap());
        (matched, read(dst))
    }

    /// A typed table of the lake's own may have nested columns (a list,
    /// a struct), each of several leaves or levels, before and after the
    /// patched one: the patch finds its columns by leaf (it refused such a
    /// file, and a late batch failed the run on it), rewrites only the
    /// session ids and copies the rest, whether it reads every row or
    /// only the pages near the users.
    #[test]
    fn a_file_with_nested_columns_is_patched_in_its_leaf() {
        use datafusion::arrow::array::{ListBuilder, StringBuilder, StructArray};
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.parquet");
        let mut tags = ListBuilder::new(StringBuilder::new());
        for i in 0..10_000 {
            tags.values().append_value(format!("t{}", i % 3));
            tags.values().append_value("x");
            tags.append(i % 5 != 0);
        }
        let tags = tags.finish();
        let point = StructArray::from(vec![
            (
                Arc::new(Field::new("a", DataType::Int64, true)),
                Arc::new(Int64Array::from_iter_values(0..10_000)) as _,
            ),
            (
                Arc::new(Field::new("b", DataType::Utf8, true)),
                Arc::new(StringArray::from_iter_values(
                    (0..10_000).map(|i| format!("b{i}")),
                )) as _,
            ),
        ]);
        // The struct's two leaves put session_id's leaf (5) past its
        // field (4).
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("point", point.data_type().clone(), false),
            Field::new("tags", tags.data_type().clone(), true),
            Field::new("user_id", DataType::Utf8, false),
            Field::new("session_id", DataType::Utf8, true),
        ]));
        // by_user's ids, users and sessions, with the nested columns.
        let flat = by_user(&dir.path().join("flat.parquet"));
        let before = RecordBatch::try_new(
            schema,
            vec![
                flat.column(0).clone(),
                Arc::new(point),
                Arc::new(tags),
                flat.column(1).clone(),
                flat.column(2).clone(),
            ],
        )
        .unwrap();
        let new = [("e00005", "t1"), ("e04210", "z0"), ("e09997", "t3")];
        let check = |after: &RecordBatch| {
            assert_eq!(after.schema(), before.schema());
            for c in 0..4 {
                assert_eq!(after.column(c), before.column(c), "column {c}");
            }
            let s = after.column(4).as_string::<i32>();
            assert_eq!(s.value(5), "t1");
            assert_eq!(s.value(4_210), "z0");
            assert_eq!(s.value(9_997), "t3");
            assert_eq!(s.value(6), "s0001");
            assert!(s.is_null(13));
        };
        write_file(&src, &before, as_silver_writes(4_000).build());
        let (all_n, all) = patched(&src, &dir.path().join("all.parquet"), &new, None);
        let (near_n, near) = patched(
            &src,
            &dir.path().join("near.parquet"),
            &new,
            Some(&["u000", "u210", "u499"]),
        );
        assert_eq!((all_n, near_n), (3, 3));
        check(&near);
        assert_eq!(all, near);
        // Dictionary pages do not splice: each chunk is encoded whole, by
        // the writer of its leaf, from its field's type.
        let dict = dir.path().join("dict.parquet");
        let props = as_silver_writes(4_000).set_dictionary_enabled(true).build();
        write_file(&dict, &before, props);
        let (n, whole) = patched(&dict, &dir.path().join("whole.parquet"), &new, None);
        assert_eq!(n, 3);
        check(&whole);
    }

    #[test]
    fn located_rows_patch_as_a_full_read_does() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.parquet");
        by_user(&src);
        // Users u000 (row 5), u210 (row 4,210: the second row group, and a
        // new maximum of its page), u499 (the last row, whose value was
        // null: 9,997 = 13 * 769).
        let new = [("e00005", "t1"), ("e04210", "z0"), ("e09997", "t3")];
        let users = ["u000", "u210", "u499"];
        let (all_n, all) = patched(&src, &dir.path().join("all.parquet"), &new, None);
        let (near_n, near) = patched(&src, &dir.path().join("near.parquet"), &new, Some(&users));
        assert_eq!((all_n, near_n), (3, 3));
        assert_eq!(all, near);
        let s = near.column(2).as_string::<i32>();
        assert_eq!(s.value(5), "t1");
        assert_eq!(s.value(4_210), "z0");
        assert_eq!(s.value(9_997), "t3");
        assert_eq!(s.value(6), "s0001");
        assert!(s.is_null(13));
        // Statistics follow the new values, from the copied pages' index
        // and the rewritten pages' values.
        let meta = ArrowReaderMetadata::load(
            &File::open(dir.path().join("near.parquet")).unwrap(),
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required),
        )
        .unwrap();
        let stats = meta.metadata().row_group(1).column(2).statistics().unwrap();
        assert_eq!(stats.max_bytes_opt().unwrap(), b"z0");
        assert_eq!(stats.min_bytes_opt().unwrap(), b"s0800");
        assert!(stats.min_is_exact() && stats.max_is_exact());
        assert_eq!(
            meta.metadata()
                .row_group(2)
                .column(2)
                .statistics()
                .unwrap()
                .null_count_opt(),
            Some((8_000..10_000).filter(|i| i % 13 == 0).count() as u64 - 1)
        );
    }

    #[test]
    fn only_the_pages_of_the_users_looked_for_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.parquet");
        by_user(&src);
        let meta = ArrowReaderMetadata::load(
            &File::open(&src).unwrap(),
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required),
        )
        .unwrap();
        let users: BTreeSet<String> = ["u210".to_string(), "u211".to_string()].into();
        // u210 and u211 are rows 4,200..4,240: page 0 of row group 1.
        assert_eq!(
            near_rows(&meta, 2, 1, &users),
            Some(std::iter::once(4_000..4_500).collect())
        );
        let none: BTreeSet<String> = ["u9".to_string()].into();
        assert_eq!(near_rows(&meta, 2, 1, &none), Some(vec![]));
        // A key whose row is not one of the users' is not counted, and a
        // file where none is found is not rewritten.
        let new = HashMap::from([("e04210".to_string(), "z0".to_string())]);
        let near = Near {
            column: "user_id",
            values: &none,
        };
        let planned = plan(&src, "event_id", "session_id", &new, Some(near)).unwrap();
        assert_eq!(planned.matched, 0);
        assert!(!planned.write(&dir.path().join("b.parquet")).unwrap());
        let wrong: BTreeSet<String> = ["u000".to_string()].into();
        let near = Near {
            column: "user_id",
            values: &wrong,
        };
        let planned = plan(&src, "event_id", "session_id", &new, Some(near)).unwrap();
        assert_eq!(planned.matched, 0);
    }

    #[test]
    fn a_located_change_reads_every_other_value_when_it_must() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.parquet");
        let before = by_user(&src);
        let new = HashMap::from([("e04210".to_string(), "z0".to_string())]);
        let users: BTreeSet<String> = ["u210".to_string()].into();
        let near = Near {
            column: "user_id",
            values: &users,
        };
        let planned = plan(&src, "event_id", "session_id", &new, Some(near)).unwrap();
        let change = planned.change.as_ref().unwrap();
        assert_eq!(
            change.spans,
            std::iter::once(4_000..4_500).collect::<Vec<_>>()
        );
        assert!(change.values(4_000, 4_500).is_some());
        assert!(change.values(3_500, 4_000).is_none());
        let whole = change
            .whole(&File::open(&src).unwrap(), &planned.meta)
            .unwrap();
        let old = before.column(2).as_string::<i32>();
        assert_eq!(whole.len(), old.len());
        for i in 0..old.len() {
            let want = if i == 4_210 {
                Some("z0")
            } else {
                old.is_valid(i).then(|| old.value(i))
            };
            assert_eq!(whole.is_valid(i).then(|| whole.value(i)), want, "row {i}");
        }
    }

    #[test]
    fn pages_may_hold_the_values_between_their_bounds() {
        let set: BTreeSet<String> = ["b".to_string(), "m".to_string()].into();
        let holds = |lo: &[u8], hi: &[u8]| may_hold(Some(lo), Some(hi), &set);
        assert!(holds(b"a", b"c"));
        assert!(holds(b"m", b"m"));
        assert!(!holds(b"c", b"l"));
        assert!(!holds(b"n", b"z"));
        // No statistics: it may.
        assert!(may_hold(None, Some(b"a".as_slice()), &set));
        // Bounds that are not UTF-8 (a truncated value) compare as bytes.
        assert!(holds(&[b'l', 0xff], b"z"));
        assert!(!holds(&[b'm', 0xff], b"z"));
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
        let planned = plan(&src, "event_id", "session_id", &new, None).unwrap();
        assert_eq!(planned.matched, 1);
        assert!(!planned.write(&dst).unwrap());
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
    }
}
