//! CSV as RFC 4180 has it and DuckDB, PostgreSQL and Spark write it: a
//! field holding a comma, a quote, CR or LF is quoted (its quotes
//! doubled), a NULL is an empty field, and an empty string is `""`, so a
//! reader tells the two apart. (Arrow's CSV writer writes both as an
//! empty field.) Values are formatted as Arrow's writer formats them.

use std::borrow::Cow;
use std::io::Write;

use anyhow::Result;
use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// Text `s` as one CSV field: quoted if it must be, `""` if empty.
pub fn field(s: &str) -> Cow<'_, str> {
    if s.is_empty() {
        Cow::Borrowed("\"\"")
    } else if s.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

/// Rows to `out` as CSV, the column names first.
pub struct Writer<W: Write> {
    out: W,
    header_written: bool,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Writer<W> {
        Writer {
            out,
            header_written: false,
        }
    }

    /// The header, once, even for a result of no rows.
    pub fn header(&mut self, schema: &datafusion::arrow::datatypes::Schema) -> Result<()> {
        if !self.header_written {
            let names: Vec<Cow<'_, str>> =
                schema.fields().iter().map(|f| field(f.name())).collect();
            writeln!(self.out, "{}", names.join(","))?;
            self.header_written = true;
        }
        Ok(())
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        use datafusion::arrow::datatypes::DataType;
        self.header(&batch.schema())?;
        let options = FormatOptions::default();
        // (array, its formatter, whether its text may need quotes: only
        // text can hold a comma, a quote or a line break, or be empty)
        let columns = batch
            .columns()
            .iter()
            .map(|a| {
                let text = matches!(
                    a.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                );
                Ok((
                    a.logical_nulls(),
                    ArrayFormatter::try_new(a.as_ref(), &options)?,
                    text,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut line = String::new();
        for row in 0..batch.num_rows() {
            line.clear();
            for (i, (nulls, format, text)) in columns.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                if nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                    continue;
                }
                let start = line.len();
                format.value(row).write(&mut line)?;
                if *text {
                    let cell = &line.as_bytes()[start..];
                    if cell.is_empty()
                        || cell
                            .iter()
                            .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
                    {
                        let quoted = field(&line[start..]).into_owned();
                        line.truncate(start);
                        line.push_str(&quoted);
                    }
                }
            }
            line.push('\n');
            self.out.write_all(line.as_bytes())?;
        }
        Ok(())
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn a_null_and_an_empty_string_read_back_apart() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s, t", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![
                    Some(""),
                    None,
                    Some("a,b"),
                    Some("say \"hi\""),
                    Some("two\nlines"),
                    Some("plain"),
                ])),
                Arc::new(Int64Array::from(vec![
                    Some(1),
                    Some(2),
                    None,
                    Some(-4),
                    Some(5),
                    Some(6),
                ])),
            ],
        )
        .unwrap();
        let mut w = Writer::new(Vec::new());
        w.write(&batch).unwrap();
        w.write(&batch.slice(0, 0)).unwrap();
        let text = String::from_utf8(w.into_inner()).unwrap();
        assert_eq!(
            text,
            "\"s, t\",n\n\"\",1\n,2\n\"a,b\",\n\"say \"\"hi\"\"\",-4\n\"two\nlines\",5\nplain,6\n"
        );
        // No rows: the header alone.
        let mut w = Writer::new(Vec::new());
        w.header(&schema).unwrap();
        w.header(&schema).unwrap();
        assert_eq!(String::from_utf8(w.into_inner()).unwrap(), "\"s, t\",n\n");
    }
}
