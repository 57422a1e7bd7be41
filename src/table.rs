//! `--format table`: rows as aligned text, the same bytes as Arrow's
//! `pretty_format_batches` (comfy-table), written straight to the output.
//!
//! Arrow's printer lays every cell out in memory as a comfy-table cell
//! before it writes a byte: 20,000 rows of a state answer took ~200 ms
//! that way, twice the time of the answer itself. Here each cell is
//! formatted twice instead, once to measure its column and once to write
//! it, and nothing is kept. A cell of several lines (which comfy-table
//! splits into rows of text) is rare enough to go to Arrow's printer.

use std::fmt::Write as _;
use std::io::Write;

use anyhow::Result;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use unicode_width::UnicodeWidthStr;

/// Write `batches` as a table, then a newline (nothing if there are no
/// batches).
pub fn write(out: &mut impl Write, batches: &[RecordBatch]) -> Result<()> {
    let Some(first) = batches.first() else {
        return Ok(());
    };
    let schema = first.schema();
    let options = FormatOptions::default().with_display_error(true);
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
        let text = datafusion::arrow::util::pretty::pretty_format_batches(batches)?;
        writeln!(out, "{text}")?;
        return Ok(());
    }
    // Stdout is line-buffered: a write per line was a syscall per row.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let mut rule = String::from("+");
    for w in &widths {
        rule.extend(std::iter::repeat_n('-', w + 2));
        rule.push('+');
    }
    rule.push('\n');
    let mut line = String::new();
    let push_cell = |line: &mut String, text: &str, width: usize| {
        line.push_str("| ");
        line.push_str(text);
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
    Ok(())
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
        let text = datafusion::arrow::util::pretty::pretty_format_batches(batches).unwrap();
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
