//! Rows as JSON: Arrow's writer, with faster encoders for the two types a
//! state or a query prints most that it formats slowly.
//!
//! Every row names every column, a NULL as `null` (Arrow's writer leaves
//! such keys out by default): a reader that infers columns from the keys,
//! such as Spark's or pandas', would otherwise lose a column that is NULL
//! in every row, and the lines would not match the CSV's header.
//!
//! Arrow writes a decimal through `to_string` plus string surgery and a
//! UTC timestamp through chrono's time-zone machinery, each via the
//! `Display` plumbing: on a 20,000-account `state balances --json` answer
//! those two columns were most of the ~11 ms spent encoding the rows. The
//! encoders here write the same text (unit tests compare them with
//! Arrow's over edge values) and hand anything unusual back to Arrow.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, DecimalType, FieldRef, TimeUnit, TimestampMicrosecondType,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::writer::{
    Encoder, EncoderFactory, EncoderOptions, JsonFormat, NullableEncoder, Writer, WriterBuilder,
};

/// Arrow's JSON writer of format `F` over `w`, with [`Fast`]'s encoders
/// and NULLs written (see the module's comment).
pub fn writer<W: std::io::Write, F: JsonFormat>(w: W) -> Writer<W, F> {
    options()
        .with_encoder_factory(Arc::new(Fast))
        .build::<W, F>(w)
}

/// The writer's options but its encoders.
fn options() -> WriterBuilder {
    WriterBuilder::new().with_explicit_nulls(true)
}

/// Arrow's own JSON writer, with [`writer`]'s options: what tests compare
/// [`writer`]'s text with.
#[cfg(test)]
pub(crate) fn arrow_writer<W: std::io::Write, F: JsonFormat>(w: W) -> Writer<W, F> {
    options().build::<W, F>(w)
}

/// Encoders for `Decimal128` (scale ≥ 0) and microsecond timestamps in
/// UTC; every other type gets Arrow's.
#[derive(Debug)]
pub struct Fast;

impl EncoderFactory for Fast {
    fn make_default_encoder<'a>(
        &self,
        _field: &'a FieldRef,
        array: &'a dyn Array,
        options: &'a EncoderOptions,
    ) -> Result<Option<NullableEncoder<'a>>, ArrowError> {
        let nulls = array.nulls().cloned();
        Ok(match array.data_type() {
            DataType::Decimal128(precision, scale) if *scale >= 0 => Some(NullableEncoder::new(
                Box::new(Decimal {
                    values: array.as_primitive::<Decimal128Type>().values(),
                    precision: *precision,
                    scale: *scale,
                }),
                nulls,
            )),
            DataType::Timestamp(TimeUnit::Microsecond, Some(tz))
                if is_utc(tz) && options.timestamp_tz_format().is_none() =>
            {
                Some(NullableEncoder::new(
                    Box::new(UtcMicros {
                        values: array.as_primitive::<TimestampMicrosecondType>().values(),
                        tz,
                    }),
                    nulls,
                ))
            }
            _ => None,
        })
    }
}

/// NaN and infinite floats, which JSON has no numbers for: Arrow's
/// writer writes them `null`, the same as a SQL NULL, so a reader of the
/// rows cannot tell `0.0/0.0` from a missing value. Counted per column of
/// the rows written (top-level columns: a float inside a list or struct
/// is not looked into), for a line on stderr that says so.
#[derive(Debug, Default)]
pub struct NonFinite(Vec<(String, usize)>);

impl NonFinite {
    /// Count the NaN and infinite values in `batch`'s float columns.
    pub fn count(&mut self, batch: &datafusion::arrow::array::RecordBatch) {
        use datafusion::arrow::datatypes::Float64Type;
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            if !field.data_type().is_floating() {
                continue;
            }
            // Float16 and Float32 widen exactly, NaN and infinities too.
            let n = datafusion::arrow::compute::cast(column, &DataType::Float64)
                .map(|wide| {
                    wide.as_primitive::<Float64Type>()
                        .iter()
                        .flatten()
                        .filter(|v| !v.is_finite())
                        .count()
                })
                .unwrap_or(0);
            if n == 0 {
                continue;
            }
            match self.0.iter_mut().find(|(name, _)| name == field.name()) {
                Some((_, total)) => *total += n,
                None => self.0.push((field.name().clone(), n)),
            }
        }
    }

    /// One line per column that held any, for a `Warning`.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(name, n)| {
                format!(
                    "column `{name}`: {n} NaN or infinite value(s) are written as null, as JSON \
                     has no such numbers (--format csv or parquet keeps them)"
                )
            })
            .collect()
    }
}

/// Time zones Arrow writes as `Z`.
fn is_utc(tz: &str) -> bool {
    matches!(tz, "UTC" | "+00:00")
}

/// The decimal digits of `v` (no sign) into the end of `buf`; their start.
fn digits(mut v: u128, buf: &mut [u8; 40]) -> usize {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return at;
        }
    }
}

struct Decimal<'a> {
    values: &'a [i128],
    precision: u8,
    scale: i8,
}

impl Encoder for Decimal<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let v = self.values[idx];
        let mut buf = [0u8; 40];
        let start = digits(v.unsigned_abs(), &mut buf);
        let d = &buf[start..];
        let scale = self.scale as usize;
        if d.len() > self.precision as usize {
            // Out of its precision: Arrow's own (truncating) text.
            out.extend_from_slice(
                Decimal128Type::format_decimal(v, self.precision, self.scale).as_bytes(),
            );
            return;
        }
        if v < 0 {
            out.push(b'-');
        }
        if scale == 0 {
            out.extend_from_slice(d);
        } else if d.len() > scale {
            let (whole, frac) = d.split_at(d.len() - scale);
            out.extend_from_slice(whole);
            out.push(b'.');
            out.extend_from_slice(frac);
        } else {
            out.extend_from_slice(b"0.");
            out.resize(out.len() + scale - d.len(), b'0');
            out.extend_from_slice(d);
        }
    }
}

struct UtcMicros<'a> {
    values: &'a [i64],
    tz: &'a str,
}

/// Two digits of `n` (< 100).
fn two(out: &mut Vec<u8>, n: u32) {
    out.push(b'0' + (n / 10) as u8);
    out.push(b'0' + (n % 10) as u8);
}

impl Encoder for UtcMicros<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        use chrono::{Datelike, Timelike};
        let us = self.values[idx];
        let Some(t) = chrono::DateTime::from_timestamp_micros(us) else {
            // Out of chrono's range: Arrow writes an error text; so do we,
            // through Arrow (see `fallback`).
            return fallback(us, self.tz, out);
        };
        let (date, time) = (t.date_naive(), t.time());
        if !(0..=9999).contains(&date.year()) {
            return fallback(us, self.tz, out);
        }
        out.push(b'"');
        let y = date.year() as u32;
        two(out, y / 100);
        two(out, y % 100);
        out.push(b'-');
        two(out, date.month());
        out.push(b'-');
        two(out, date.day());
        out.push(b'T');
        two(out, time.hour());
        out.push(b':');
        two(out, time.minute());
        out.push(b':');
        two(out, time.second());
        // chrono's SecondsFormat::AutoSi: as many digits (3 or 6) as the
        // fraction needs, none for whole seconds.
        let frac = us.rem_euclid(1_000_000) as u32;
        if frac != 0 {
            out.push(b'.');
            let (n, width) = if frac.is_multiple_of(1000) {
                (frac / 1000, 3)
            } else {
                (frac, 6)
            };
            let mut buf = [0u8; 40];
            let start = digits(n as u128, &mut buf);
            out.resize(out.len() + width - (buf.len() - start), b'0');
            out.extend_from_slice(&buf[start..]);
        }
        out.extend_from_slice(b"Z\"");
    }
}

/// What Arrow writes for the timestamp `us` in zone `tz`.
fn fallback(us: i64, tz: &str, out: &mut Vec<u8>) {
    let array =
        datafusion::arrow::array::TimestampMicrosecondArray::from(vec![us]).with_timezone(tz);
    let mut buf = Vec::new();
    let field = Arc::new(datafusion::arrow::datatypes::Field::new(
        "t",
        array.data_type().clone(),
        false,
    ));
    let options = EncoderOptions::default();
    match datafusion::arrow::json::writer::make_encoder(&field, &array, &options) {
        Ok(mut e) => {
            e.encode(0, &mut buf);
            out.extend_from_slice(&buf);
        }
        Err(_) => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, Decimal128Array, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::json::writer::JsonArray;
    use datafusion::arrow::record_batch::RecordBatch;

    fn both(column: ArrayRef) -> (String, String) {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "c",
            column.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(schema, vec![column]).unwrap();
        let mut fast = Vec::new();
        let mut w = writer::<_, JsonArray>(&mut fast);
        w.write(&batch).unwrap();
        w.finish().unwrap();
        let mut arrow = Vec::new();
        let mut w = arrow_writer::<_, JsonArray>(&mut arrow);
        w.write(&batch).unwrap();
        w.finish().unwrap();
        (
            String::from_utf8(fast).unwrap(),
            String::from_utf8(arrow).unwrap(),
        )
    }

    #[test]
    fn nan_and_infinities_are_counted_per_column_and_nulls_are_not() {
        use datafusion::arrow::array::{Float32Array, Float64Array, Int64Array};
        let schema = Arc::new(Schema::new(vec![
            Field::new("d", DataType::Float64, true),
            Field::new("f", DataType::Float32, true),
            Field::new("h", DataType::Float16, true),
            Field::new("i", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Float64Array::from(vec![
                    Some(f64::NAN),
                    None,
                    Some(1.5),
                    Some(f64::NEG_INFINITY),
                ])),
                Arc::new(Float32Array::from(vec![
                    Some(f32::INFINITY),
                    None,
                    None,
                    None,
                ])),
                datafusion::arrow::compute::cast(
                    &Float32Array::from(vec![Some(f32::NAN), Some(1.0), None, None]),
                    &DataType::Float16,
                )
                .unwrap(),
                Arc::new(Int64Array::from(vec![Some(0), None, Some(1), Some(2)])),
            ],
        )
        .unwrap();
        let mut n = NonFinite::default();
        assert!(n.lines().is_empty());
        n.count(&batch);
        n.count(&batch.slice(0, 1));
        let lines = n.lines();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].starts_with("column `d`: 3 NaN or infinite"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("column `f`: 2 NaN or infinite"),
            "{lines:?}"
        );
        assert!(
            lines[2].starts_with("column `h`: 2 NaN or infinite"),
            "{lines:?}"
        );
        // What the count is about: Arrow writes each of them `null`.
        let (fast, _) = both(batch.column(0).clone());
        assert_eq!(fast, r#"[{"c":null},{"c":null},{"c":1.5},{"c":null}]"#);
    }

    #[test]
    fn decimals_are_written_as_arrow_writes_them() {
        let values = [
            Some(0),
            Some(5),
            Some(-5),
            Some(123),
            Some(-123),
            Some(35768),
            Some(-35768),
            Some(100),
            None,
            Some(999_999_999_999_999_999),
            Some(-999_999_999_999_999_999),
            Some(i128::MAX),
            Some(i128::MIN),
        ];
        for (precision, scale) in [(18, 2), (18, 0), (38, 10), (10, 5), (38, 38), (3, 1)] {
            let column = Decimal128Array::from(values.to_vec())
                .with_precision_and_scale(precision, scale)
                .unwrap();
            let (fast, arrow) = both(Arc::new(column));
            assert_eq!(fast, arrow, "Decimal128({precision}, {scale})");
        }
    }

    #[test]
    fn utc_timestamps_are_written_as_arrow_writes_them() {
        let values = vec![
            Some(0),
            Some(1_714_348_489_000_000),
            Some(1_714_348_489_123_000),
            Some(1_714_348_489_123_456),
            Some(1_714_348_489_000_001),
            Some(1_714_348_489_100_000),
            Some(-1),
            Some(-1_000_000),
            Some(-62_135_596_800_000_000), // 0001-01-01
            Some(-62_167_219_200_000_001), // before year 0
            Some(253_402_300_799_999_999), // 9999-12-31T23:59:59.999999
            Some(253_402_300_800_000_000), // year 10000
            Some(i64::MAX),
            Some(i64::MIN),
            None,
        ];
        for tz in ["UTC", "+00:00"] {
            let column = TimestampMicrosecondArray::from(values.clone()).with_timezone(tz);
            let (fast, arrow) = both(Arc::new(column));
            assert_eq!(fast, arrow, "{tz}");
        }
        // Another zone is Arrow's to write.
        let column = TimestampMicrosecondArray::from(values).with_timezone("+02:00");
        let (fast, arrow) = both(Arc::new(column));
        assert_eq!(fast, arrow);
    }
}
