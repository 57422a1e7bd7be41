//! Parse a chunk of lines into bronze columns, in parallel-friendly units:
//! each chunk is parsed on its own thread into its own Arrow arrays.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::Int64Type;

use super::input::Chunk;
use super::parse::{self, Event, ParseOptions, Rejection};
use crate::bronze;
use crate::late::{LateRules, Placement};
use crate::time;

/// A line that went to quarantine.
#[derive(Debug, Clone)]
pub struct Quarantined {
    pub input: usize,
    pub line: u64,
    pub rejection: Rejection,
    /// The line verbatim, without its line terminator.
    pub raw: Vec<u8>,
    /// It is the input's last line, has no newline, and is not whole JSON
    /// (or UTF-8): for a file a writer appends to, one it may still be
    /// writing. (A whole object that lacks only its newline is not: the
    /// next run does not read it again.)
    pub unterminated: bool,
}

/// Bronze rows from one chunk, with their partition (`event_date`).
#[derive(Debug)]
pub struct Rows {
    /// Bronze rows; parsed ones in [`rows_schema`], with `lineage`.
    pub batch: RecordBatch,
    /// Parsed rows: their input, the value of the lineage columns of every
    /// row. `None`: the batch's own lineage columns hold them.
    pub lineage: Option<Lineage>,
    /// `Date32` partition value of each row.
    pub dates: Vec<i32>,
    /// Rows that go to the side output (`bronze_late`) instead of bronze.
    pub side: Vec<bool>,
}

/// Everything learned from one chunk, or from one part of it (see
/// [`parse_part`]).
#[derive(Debug)]
pub struct ParsedChunk {
    pub seq: u64,
    /// Which part of the chunk this is (0, 1, ...), and whether it is the
    /// chunk's last.
    pub part: u32,
    pub last: bool,
    pub input: usize,
    pub rows: Option<Rows>,
    pub quarantined: Vec<Quarantined>,
    pub lines: u64,
    pub empty_lines: u64,
    pub events: u64,
    pub max_event_time: Option<i64>,
    /// `(hash of event_id, hash of its content)` of every event, in the
    /// order of [`Rows::dates`], to count re-sends and id conflicts.
    pub ids: Vec<(u64, u64)>,
    pub late_events: u64,
    pub side_output_events: u64,
    /// The first line longer than `max_line_bytes`, where parsing stopped
    /// (the run fails).
    pub too_long: Option<TooLong>,
    /// Events whose type is a known one but for case or separators (see
    /// [`parse::near_known_type`]).
    pub near_types: Vec<super::NearType>,
}

/// A line over `--max-line-bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong {
    pub line: u64,
    pub bytes: u64,
    /// It starts with `[` (a JSON array, not NDJSON?).
    pub array: bool,
}

impl ParsedChunk {
    /// Turn the chunk's line numbers (from 1) into the input's, given how
    /// many lines its earlier chunks held.
    pub fn number_from(&mut self, earlier_lines: u64) {
        if earlier_lines == 0 {
            return;
        }
        for q in &mut self.quarantined {
            q.line += earlier_lines;
        }
        if let Some(t) = &mut self.too_long {
            t.line += earlier_lines;
        }
        if let Some(rows) = &mut self.rows {
            let batch = &rows.batch;
            let i = batch
                .schema()
                .index_of("source_line")
                .expect("bronze rows have source_line");
            let local = batch.column(i).as_primitive::<Int64Type>();
            let shifted: Int64Array = local.unary(|l| l + earlier_lines as i64);
            let mut columns = batch.columns().to_vec();
            columns[i] = Arc::new(shifted);
            rows.batch =
                RecordBatch::try_new(batch.schema(), columns).expect("same schema, same lengths");
        }
    }
}

/// Per-input constants stamped on every row.
#[derive(Debug, Clone)]
pub struct Lineage {
    pub batch_id: String,
    pub source_file: String,
}

/// The schema of [`Rows::batch`]: bronze's, but the lineage columns
/// (`batch_id`, `source_file`) are nullable and all null there. Their one
/// value per chunk is [`Rows::lineage`], which the flush writes on every
/// row (a copy on every parsed row cost ~60 bytes a row in fresh pages).
pub fn rows_schema() -> datafusion::arrow::datatypes::SchemaRef {
    static SCHEMA: std::sync::LazyLock<datafusion::arrow::datatypes::SchemaRef> =
        std::sync::LazyLock::new(|| {
            use crate::bronze::col;
            let bronze = bronze::schema();
            let fields: Vec<_> = bronze
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    if i == col::BATCH_ID || i == col::SOURCE_FILE {
                        Arc::new(f.as_ref().clone().with_nullable(true))
                    } else {
                        f.clone()
                    }
                })
                .collect();
            Arc::new(datafusion::arrow::datatypes::Schema::new(fields))
        });
    SCHEMA.clone()
}

struct Builders {
    event_id: StringBuilder,
    event_type: StringBuilder,
    user_id: StringBuilder,
    event_timestamp: Vec<i64>,
    client_session_id: StringBuilder,
    page_url: StringBuilder,
    source_system: StringBuilder,
    properties: StringBuilder,
    extra: StringBuilder,
    source_line: Vec<i64>,
    dates: Vec<i32>,
    is_late: Vec<bool>,
    side: Vec<bool>,
}

impl Builders {
    fn new(rows: usize, bytes: usize) -> Self {
        let s = |per_row: usize| StringBuilder::with_capacity(rows, rows * per_row);
        Builders {
            event_id: s(36),
            event_type: s(12),
            user_id: s(12),
            event_timestamp: Vec::with_capacity(rows),
            client_session_id: s(16),
            page_url: s(40),
            source_system: s(8),
            properties: StringBuilder::with_capacity(rows, bytes / 3),
            extra: s(0),
            source_line: Vec::with_capacity(rows),
            dates: Vec::with_capacity(rows),
            is_late: Vec::with_capacity(rows),
            side: Vec::with_capacity(rows),
        }
    }

    fn push(&mut self, e: &Event, line: u64, date: i32, place: Placement) {
        self.event_id.append_value(&e.event_id);
        self.event_type.append_value(&e.event_type);
        self.user_id.append_value(&e.user_id);
        self.event_timestamp.push(e.event_timestamp);
        self.client_session_id
            .append_option(e.client_session_id.as_deref());
        self.page_url.append_option(e.page_url.as_deref());
        self.source_system.append_option(e.source_system.as_deref());
        self.properties.append_option(e.properties);
        self.extra.append_option(e.extra.as_deref());
        self.source_line.push(line as i64);
        self.dates.push(date);
        self.is_late.push(place.is_late);
        self.side.push(place.side_output);
    }

    fn finish(mut self, processing_time: i64, lineage: &Lineage) -> Rows {
        let n = self.event_timestamp.len();
        let ts = |v: Vec<i64>| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
        };
        let lineage_placeholder = || -> ArrayRef { Arc::new(StringArray::new_null(n)) };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.user_id.finish()),
            ts(self.event_timestamp),
            Arc::new(self.client_session_id.finish()),
            Arc::new(self.page_url.finish()),
            Arc::new(self.source_system.finish()),
            Arc::new(self.properties.finish()),
            Arc::new(self.extra.finish()),
            ts(vec![processing_time; n]),
            lineage_placeholder(),
            Arc::new(BooleanArray::from(self.is_late)),
            lineage_placeholder(),
            Arc::new(Int64Array::from(self.source_line)),
        ];
        let batch =
            RecordBatch::try_new(rows_schema(), columns).expect("builders match the rows schema");
        Rows {
            batch,
            lineage: Some(lineage.clone()),
            dates: self.dates,
            side: self.side,
        }
    }
}

/// Parse the lines of `chunk` from byte `from` (a line's start), stopping
/// after the line that makes `max_quarantined` quarantined ones: a
/// quarantined line is held as a struct of its own (~150 bytes with its
/// reason), so 4 MiB of three-byte bad lines (`{}`) were ~200 MB, and the
/// chunks in flight held gigabytes. Returns the part, its lines numbered
/// from 1, and where the next part starts if the chunk goes on.
pub fn parse_part(
    chunk: &Chunk,
    from: usize,
    max_quarantined: usize,
    lineage: &Lineage,
    opts: &ParseOptions,
    rules: &LateRules,
    processing_time: i64,
) -> (ParsedChunk, Option<usize>) {
    let data = &chunk.data;
    let est_rows = (data.len() - from) / 256 + 16;
    let mut b = Builders::new(est_rows, data.len() - from);
    let mut out = ParsedChunk {
        seq: chunk.seq,
        part: 0,
        last: false,
        input: chunk.input,
        rows: None,
        quarantined: Vec::new(),
        lines: 0,
        empty_lines: 0,
        events: 0,
        max_event_time: None,
        ids: Vec::with_capacity(est_rows),
        late_events: 0,
        side_output_events: 0,
        too_long: None,
        near_types: Vec::new(),
    };
    let mut start = from;
    // Numbered from 1 within the part; the in-order consumer adds the
    // lines of the input's earlier chunks and parts
    // ([`ParsedChunk::number_from`]).
    let mut line_no = 1u64;
    while start < data.len() {
        if out.quarantined.len() >= max_quarantined {
            break;
        }
        let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
        let mut line = &data[start..end];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        out.lines += 1;
        if line.len() > opts.max_line_bytes {
            out.too_long = Some(TooLong {
                line: line_no,
                bytes: line.len() as u64,
                array: line.trim_ascii_start().starts_with(b"["),
            });
            break;
        }
        match parse::parse_line(line, opts) {
            Ok(Some(e)) => {
                let date = time::date32_of_micros(e.event_timestamp);
                let place = rules.place(date);
                b.push(&e, line_no, date, place);
                out.late_events += u64::from(place.is_late);
                out.side_output_events += u64::from(place.side_output);
                out.ids
                    .push((bronze::event_id_hash(&e.event_id), e.content().hash()));
                out.events += 1;
                if let Some(known) = parse::near_known_type(&e.event_type) {
                    super::NearType::count(&mut out.near_types, &e.event_type, known, 1);
                }
                out.max_event_time = Some(
                    out.max_event_time
                        .map_or(e.event_timestamp, |m| m.max(e.event_timestamp)),
                );
            }
            Ok(None) => out.empty_lines += 1,
            Err(rejection) => out.quarantined.push(Quarantined {
                input: chunk.input,
                line: line_no,
                // Only an input's last chunk can end without a newline.
                unterminated: end == data.len()
                    && data.last() != Some(&b'\n')
                    && !rejection.whole
                    && matches!(
                        rejection.reason,
                        parse::Reason::InvalidJson | parse::Reason::InvalidUtf8
                    ),
                rejection,
                raw: line.to_vec(),
            }),
        }
        start = end + 1;
        line_no += 1;
    }
    if out.events > 0 {
        out.rows = Some(b.finish(processing_time, lineage));
    }
    let rest = (start < data.len() && out.too_long.is_none()).then_some(start);
    (out, rest)
}

/// Parse `text` as one chunk of input 0 (`f.jsonl`, batch `b1`), taking
/// every timestamp with an offset and any lateness: for tests.
#[cfg(test)]
pub(crate) fn parse_text(text: &str, processing_time: i64) -> ParsedChunk {
    parse_bytes(text.as_bytes(), processing_time)
}

/// [`parse_text`] of bytes that need not be UTF-8.
#[cfg(test)]
pub(crate) fn parse_bytes(text: &[u8], processing_time: i64) -> ParsedChunk {
    let mut parts = parse_in_parts(text, usize::MAX, usize::MAX, processing_time);
    assert_eq!(parts.len(), 1);
    let (mut parsed, _) = parts.pop().expect("one part");
    parsed.last = true;
    parsed
}

/// [`parse_bytes`] in parts of at most `max_quarantined` quarantined
/// lines, each with where the next starts, with lines over
/// `max_line_bytes` too long.
#[cfg(test)]
fn parse_in_parts(
    text: &[u8],
    max_quarantined: usize,
    max_line_bytes: usize,
    processing_time: i64,
) -> Vec<(ParsedChunk, Option<usize>)> {
    let chunk = Chunk {
        seq: 0,
        input: 0,
        data: text.to_vec(),
    };
    let lineage = Lineage {
        batch_id: "b1".into(),
        source_file: "f.jsonl".into(),
    };
    let opts = ParseOptions {
        naive_timestamps: crate::time::NaiveTimestamps::Reject,
        max_event_timestamp: i64::MAX,
        min_event_timestamp: i64::MIN,
        max_line_bytes,
    };
    let rules = LateRules {
        watermark_before: None,
        policy: crate::late::LatePolicy::Reopen,
        allowed_lateness: 0,
    };
    let mut parts = Vec::new();
    let mut from = Some(0);
    while let Some(at) = from {
        let (part, rest) = parse_part(
            &chunk,
            at,
            max_quarantined,
            &lineage,
            &opts,
            &rules,
            processing_time,
        );
        from = rest;
        parts.push((part, rest));
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk of many bad lines is parsed in parts: each stops after its
    /// `max_quarantined`-th bad line, numbers its lines from 1, and the
    /// next starts on the following line; a line over the limit ends the
    /// chunk there (the run fails on it).
    #[test]
    fn a_chunk_of_many_bad_lines_is_parsed_in_parts() {
        let ok = |id: &str| {
            format!(
                r#"{{"event_id":"{id}","event_type":"t","event_timestamp":"2024-03-15T10:00:00Z","user_id":"u"}}"#
            )
        };
        let text = [&ok("e1"), "{}", "x", "", &ok("e2"), "{", "1", &ok("e3")].join("\n");
        type Part = (u64, u64, Vec<u64>, Vec<i64>, bool);
        let summary = |max: usize| -> Vec<Part> {
            parse_in_parts(text.as_bytes(), max, 100, 0)
                .into_iter()
                .map(|(p, rest)| {
                    let rows = p.rows.as_ref().map_or(vec![], |r| {
                        let i = r.batch.schema().index_of("source_line").unwrap();
                        r.batch
                            .column(i)
                            .as_primitive::<Int64Type>()
                            .values()
                            .to_vec()
                    });
                    let bad = p.quarantined.iter().map(|q| q.line).collect();
                    (p.lines, p.empty_lines, bad, rows, rest.is_none())
                })
                .collect()
        };
        assert_eq!(
            summary(usize::MAX),
            [(8, 1, vec![2, 3, 6, 7], vec![1, 5, 8], true)]
        );
        assert_eq!(
            summary(2),
            [
                (3, 0, vec![2, 3], vec![1], false),
                (4, 1, vec![3, 4], vec![2], false),
                (1, 0, vec![], vec![1], true),
            ]
        );
        assert_eq!(
            summary(1),
            [
                (2, 0, vec![2], vec![1], false),
                (1, 0, vec![1], vec![], false),
                (3, 1, vec![3], vec![2], false),
                (1, 0, vec![1], vec![], false),
                (1, 0, vec![], vec![1], true),
            ]
        );
        // The text ends in a bad line: the part that takes it is the last.
        let parts = parse_in_parts(b"{}\n{}", 1, 100, 0);
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].1, parts[1].1), (Some(3), None));
        // A line over the limit (100 bytes here) ends the chunk.
        let long = format!("{{}}\n{{}}\n{}\n{{}}", "y".repeat(200));
        let parts = parse_in_parts(long.as_bytes(), 1, 100, 0);
        assert_eq!(parts.len(), 3, "{parts:?}");
        assert_eq!(parts[2].0.too_long.map(|t| t.line), Some(1));
        assert!(parts[2].1.is_none());
    }

    #[test]
    fn a_later_chunk_numbers_its_rows_and_rejections_after_the_earlier_ones() {
        let ok = |id: &str| {
            format!(
                r#"{{"event_id":"{id}","event_type":"page_view","event_timestamp":"2024-03-15T10:00:00Z","user_id":"u1","properties":{{}}}}"#
            )
        };
        let text = [ok("e1"), "{not json".to_string(), String::new(), ok("e2")].join("\n");
        let mut parsed = parse_text(&text, 0);
        assert_eq!((parsed.lines, parsed.events, parsed.empty_lines), (4, 2, 1));
        let lines = |p: &ParsedChunk| -> (Vec<i64>, Vec<u64>) {
            let rows = p.rows.as_ref().unwrap();
            let i = rows.batch.schema().index_of("source_line").unwrap();
            let col = rows.batch.column(i).as_primitive::<Int64Type>();
            (
                col.values().to_vec(),
                p.quarantined.iter().map(|q| q.line).collect(),
            )
        };
        assert_eq!(lines(&parsed), (vec![1, 4], vec![2]));
        // The input's earlier chunks held 1,000 lines.
        parsed.number_from(1000);
        assert_eq!(lines(&parsed), (vec![1001, 1004], vec![1002]));
    }

    /// Only a last line without a newline that is not whole JSON is
    /// unterminated (one a writer may still be writing); with its newline,
    /// or with CR LF, not, nor a whole object that is no event.
    #[test]
    fn a_bad_last_line_without_a_newline_is_unterminated() {
        let unterminated = |text: &str| -> Vec<bool> {
            parse_bytes(text.as_bytes(), 0)
                .quarantined
                .iter()
                .map(|q| q.unterminated)
                .collect()
        };
        assert_eq!(unterminated("{bad\n{half"), [false, true]);
        assert_eq!(unterminated("{bad\n{bad\n"), [false, false]);
        assert_eq!(unterminated("{bad\r\n{half\r"), [false, true]);
        assert_eq!(unterminated("{bad\r\n"), [false]);
        assert_eq!(unterminated("{bad\n{\"event_id\":\"x\"}"), [false, false]);
        // Whole objects with no newline between them (a Firehose file), or
        // one with more after it: no writer was cut off there.
        let two = "{\"event_id\":\"a\"}{\"event_id\":\"b\"}";
        assert_eq!(unterminated(&format!("{{bad\n{two}")), [false, false]);
        assert_eq!(unterminated("{bad\n{\"a\":1}}"), [false, false]);
        // Cut inside a number, a literal, a string: unfinished.
        for half in ["{\"a\":1.", "{\"a\":tr", "{\"a\":\"x\\", "{\"a\":{\"b\":1}"] {
            assert_eq!(
                unterminated(&format!("{{bad\n{half}")),
                [false, true],
                "{half}"
            );
        }
        // Whole JSON, rejected for nesting too deep.
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(unterminated(&format!("{{bad\n{deep}")), [false, false]);
        // Cut inside a character.
        let cut = parse_bytes(b"{\"a\":1}\n{\"b\":\"\xc3", 0);
        assert!(cut.quarantined[1].unterminated, "{:?}", cut.quarantined);
    }
}
