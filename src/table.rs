//! `--format table`: rows as aligned text, the same bytes as Arrow's
//! `pretty_format_batches` (comfy-table), written straight to the output.
//!
//! Arrow's printer lays every cell out in memory as a comfy-table cell
//! before it writes a byte: 20,000 rows of a state answer took ~200 ms
//! that way, twice the time of the answer itself. Here each cell is
//! formatted twice instead, once to measure its column and once to write
//! it, and nothing is kept. A cell of several lines (which comfy-table
//! splits into rows of text) is rare enough to go to Arrow's printer.
//!
//! On a terminal ([`terminal_width`]) a table wider than it has its widest
//! columns cut to fit, as DuckDB's shell does, each cut value ending in
//! `…`, when that makes it fit: `SELECT event_id, properties FROM events`
//! is otherwise one wrapped line after another. Piped or redirected,
//! every value is whole.
//!
//! A duration (a time difference, `ts2 - ts1`) is written in days,
//! hours, minutes and seconds, as an interval is, where Arrow writes
//! ISO 8601's `PT438000S` (CSV and JSON keep that, for programs).

use std::fmt::Write as _;
use std::io::Write;

use anyhow::Result;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, DurationFormat, FormatOptions};
use unicode_width::UnicodeWidthStr;

/// No column is cut narrower than this to fit a terminal.
const NARROWEST: usize = 12;

/// The width to fit a table in when stdout is a terminal: `$COLUMNS` if
/// set (as a script may set it), else the terminal's; None when stdout is
/// no terminal (or its width is not known).
pub fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .or_else(|| terminal_size::terminal_size().map(|(w, _)| usize::from(w.0)))
        .filter(|&w| w > 0)
}

/// The widest a column may be for a table of columns `widths` wide to fit
/// in `room` (each column takes 3 more: its rule and padding), never under
/// [`NARROWEST`]; None when it fits whole, or would not fit even so (it
/// then wraps as it is: values cut with nothing gained).
fn cap(widths: &[usize], room: usize) -> Option<usize> {
    let total = |cap: usize| 1 + widths.iter().map(|w| (*w).min(cap) + 3).sum::<usize>();
    let widest = widths.iter().copied().max().unwrap_or(0);
    if total(widest) <= room || widest <= NARROWEST || total(NARROWEST) > room {
        return None;
    }
    // The largest cap that fits, found by halving.
    let (mut lo, mut hi) = (NARROWEST, widest);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if total(mid) <= room {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// `text`, cut to `width` columns with `…` as its last when it is wider.
fn cut(text: &str, width: usize) -> std::borrow::Cow<'_, str> {
    use unicode_width::UnicodeWidthChar;
    if text.width() <= width {
        return text.into();
    }
    let mut kept = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width.saturating_sub(1) {
            break;
        }
        kept.push(c);
        used += w;
    }
    kept.push('…');
    kept.into()
}

/// Write `batches` as a table, then a newline (nothing if there are no
/// batches), every value whole.
pub fn write(out: &mut impl Write, batches: &[RecordBatch]) -> Result<()> {
    write_within(out, batches, None).map(drop)
}

/// [`write`], the columns cut to fit in `room` columns of text when it is
/// some and the table is wider (a table with a cell of several lines is
/// never cut). Returns how many values (names too) were cut.
pub fn write_within(
    out: &mut impl Write,
    batches: &[RecordBatch],
    room: Option<usize>,
) -> Result<usize> {
    let Some(first) = batches.first() else {
        return Ok(0);
    };
    let schema = first.schema();
    let options = FormatOptions::default()
        .with_display_error(true)
        .with_duration_format(DurationFormat::Pretty);
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    // comfy-table gives an empty column one character.
    let mut widths: Vec<usize> = names.iter().map(|n| n.width().max(1)).collect();
    let mut multiline = names.iter().any(|n| n.contains('\n'));
    let mut cell = String::new();
    for b in batches {
        for (f, width) in formatters(b, names.len(), &options)?
            .iter()
            .zip(widths.iter_mut())
        {
            for row in 0..b.num_rows() {
                cell.clear();
                write!(cell, "{}", f.value(row))?;
                multiline |= cell.contains('\n');
                *width = (*width).max(cell.width());
            }
        }
    }
    if multiline {
        let text =
            datafusion::arrow::util::pretty::pretty_format_batches_with_options(batches, &options)?;
        writeln!(out, "{text}")?;
        return Ok(0);
    }
    if let Some(cap) = room.and_then(|room| cap(&widths, room)) {
        widths.iter_mut().for_each(|w| *w = (*w).min(cap));
    }
    let mut cuts = 0;
    // Stdout is line-buffered: a write per line was a syscall per row.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let mut rule = String::from("+");
    for w in &widths {
        rule.extend(std::iter::repeat_n('-', w + 2));
        rule.push('+');
    }
    rule.push('\n');
    let mut line = String::new();
    let mut push_cell = |line: &mut String, text: &str, width: usize| {
        let text = cut(text, width);
        cuts += usize::from(matches!(text, std::borrow::Cow::Owned(_)));
        line.push_str("| ");
        line.push_str(&text);
        line.extend(std::iter::repeat_n(' ', width - text.width() + 1));
    };
    out.write_all(rule.as_bytes())?;
    for (name, w) in names.iter().zip(&widths) {
        push_cell(&mut line, name, *w);
    }
    line.push_str("|\n");
    out.write_all(line.as_bytes())?;
    out.write_all(rule.as_bytes())?;
    for b in batches {
        let formatters = formatters(b, names.len(), &options)?;
        for row in 0..b.num_rows() {
            line.clear();
            for (f, w) in formatters.iter().zip(&widths) {
                cell.clear();
                write!(cell, "{}", f.value(row))?;
                push_cell(&mut line, &cell, *w);
            }
            line.push_str("|\n");
            out.write_all(line.as_bytes())?;
        }
    }
    out.write_all(rule.as_bytes())?;
    out.flush()?;
    Ok(cuts)
}

fn formatters<'a>(
    b: &'a RecordBatch,
    columns: usize,
    options: &FormatOptions<'a>,
) -> Result<Vec<ArrayFormatter<'a>>> {
    anyhow::ensure!(
        b.num_columns() == columns,
        "a batch of {} columns in a table of {columns}",
        b.num_columns()
    );
    Ok(b.columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), options))
        .collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int64Array, StringArray,
        TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn arrows(batches: &[RecordBatch]) -> String {
        let options = FormatOptions::default().with_duration_format(DurationFormat::Pretty);
        let text =
            datafusion::arrow::util::pretty::pretty_format_batches_with_options(batches, &options)
                .unwrap();
        format!("{text}\n")
    }

    fn ours(batches: &[RecordBatch]) -> String {
        let mut out = Vec::new();
        write(&mut out, batches).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn batch(names: &[&str], columns: Vec<ArrayRef>) -> RecordBatch {
        let fields: Vec<Field> = names
            .iter()
            .zip(&columns)
            .map(|(n, c)| Field::new(*n, c.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    #[test]
    fn the_same_bytes_as_arrows_printer() {
        let names = ["account_id", "b", "ünïcödé 名前", "", "t", "f", "ok"];
        let one = batch(
            &names,
            vec![
                Arc::new(StringArray::from(vec![
                    Some("acct-1"),
                    None,
                    Some(""),
                    Some("a much longer value than the header"),
                ])),
                Arc::new(
                    Decimal128Array::from(vec![Some(1234), Some(-5), None, Some(0)])
                        .with_precision_and_scale(18, 2)
                        .unwrap(),
                ),
                Arc::new(StringArray::from(vec![
                    Some("東京"),
                    Some("e\u{301}"),
                    Some("tab\there"),
                    Some("🙂"),
                ])),
                Arc::new(Int64Array::from(vec![
                    Some(i64::MIN),
                    None,
                    Some(7),
                    Some(0),
                ])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        Some(0),
                        Some(1_700_000_000_123_456),
                        None,
                        Some(-1),
                    ])
                    .with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from(vec![
                    Some(1.5),
                    Some(f64::NAN),
                    None,
                    Some(-0.0),
                ])),
                Arc::new(BooleanArray::from(vec![
                    Some(true),
                    Some(false),
                    None,
                    Some(true),
                ])),
            ],
        );
        // A second batch whose cells are narrower (the widths span batches).
        let two = one.slice(0, 2);
        for batches in [vec![one.clone()], vec![two.clone(), one.clone()], vec![two]] {
            assert_eq!(ours(&batches), arrows(&batches));
        }
        // Columns whose every cell is empty.
        let empty = batch(
            &["x", ""],
            vec![
                Arc::new(StringArray::from(vec![Some(""), None])),
                Arc::new(StringArray::from(vec![None::<&str>, None])),
            ],
        );
        assert_eq!(ours(std::slice::from_ref(&empty)), arrows(&[empty]));
        assert_eq!(ours(&[]), "");
    }

    /// A time difference reads as days, hours, minutes and seconds, as
    /// an interval does, not as ISO 8601's `PT438000S`.
    #[test]
    fn a_duration_is_written_in_days_and_hours() {
        use datafusion::arrow::array::DurationMicrosecondArray;
        let d = batch(
            &["d"],
            vec![Arc::new(DurationMicrosecondArray::from(vec![
                Some(438_000_000_000),
                Some(-1_500_000),
                None,
            ]))],
        );
        assert_eq!(
            ours(std::slice::from_ref(&d)),
            "+--------------------------------------+
| d                                    |
+--------------------------------------+
| 5 days 1 hours 40 mins 0.000000 secs |
| 0 days 0 hours 0 mins -1.500000 secs |
|                                      |
+--------------------------------------+
"
        );
        assert_eq!(ours(std::slice::from_ref(&d)), arrows(&[d]));
    }

    #[test]
    fn a_table_wider_than_the_room_has_its_widest_columns_cut() {
        let long = "https://shop.example.com/products/a-very-long-path?with=query";
        let b = batch(
            &["event_id", "page_url", "n"],
            vec![
                Arc::new(StringArray::from(vec![Some("evt-00001"), Some("evt-2")])),
                Arc::new(StringArray::from(vec![Some(long), Some("/")])),
                Arc::new(Int64Array::from(vec![Some(1), Some(22)])),
            ],
        );
        let within = |room| {
            let mut out = Vec::new();
            let cuts = write_within(&mut out, std::slice::from_ref(&b), room).unwrap();
            (String::from_utf8(out).unwrap(), cuts)
        };
        // Whole when there is room, or none is given (not a terminal).
        assert_eq!(within(None), (ours(std::slice::from_ref(&b)), 0));
        assert_eq!(within(Some(200)), (ours(std::slice::from_ref(&b)), 0));
        // Cut to 40 columns: the URL alone is cut, to what fits.
        let (text, cuts) = within(Some(40));
        assert_eq!(cuts, 1, "{text}");
        assert!(text.lines().all(|l| l.chars().count() == 40), "{text}");
        assert!(text.contains("| https://shop.examp… |"), "{text}");
        assert!(text.contains("| evt-00001 |"), "{text}");
        // No column under 12: the narrowest, which fits 33 columns.
        let (text, cuts) = within(Some(33));
        assert!(text.contains("| https://sho… |"), "{text}");
        assert_eq!(cuts, 1);
        // A room too narrow even so: whole, as it would wrap either way.
        assert_eq!(within(Some(32)), (ours(std::slice::from_ref(&b)), 0));
        // A wide character is not split: the cut counts columns.
        assert_eq!(cut("東京東京東京", 6), "東京…");
        assert_eq!(cut("東京", 4), "東京");
    }

    #[test]
    fn cells_of_several_lines_as_arrow_lays_them_out() {
        let b = batch(
            &["a", "b"],
            vec![
                Arc::new(StringArray::from(vec![Some("one\ntwo lines"), Some("x")])),
                Arc::new(Int64Array::from(vec![Some(1), Some(22)])),
            ],
        );
        assert_eq!(ours(std::slice::from_ref(&b)), arrows(&[b]));
    }
}
