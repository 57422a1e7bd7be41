//! `batches`: every input batch the log records, as a table `evlake query`
//! reads (what came in when, from where, with how many events and bad
//! lines, and which were retracted), like Delta Lake's `DESCRIBE HISTORY`
//! for inputs. It is made from the log's state, no file is read.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::TimestampMicrosecondArray;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::log::LakeState;

/// Its logical name.
pub const TABLE: &str = "batches";

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("batch_id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("hash", DataType::Utf8, false),
        // The ingest commit, and its processing time.
        Field::new("ingested_in", DataType::Int64, false),
        Field::new("processing_time", ts, true),
        // The input's size, and its lines from its first (a file read from
        // where it had grown counts the lines before too).
        Field::new("bytes", DataType::Int64, false),
        Field::new("lines", DataType::Int64, false),
        // What this batch read: events and quarantined lines.
        Field::new("events", DataType::Int64, true),
        Field::new("quarantined", DataType::Int64, true),
        // The `retract` commit that took its rows back, if one did.
        Field::new("retracted_in", DataType::Int64, true),
    ]))
});

/// The table's schema.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Every batch of `state`, by commit then batch id.
pub fn record_batch(state: &LakeState) -> RecordBatch {
    let mut rows: Vec<(&String, &crate::log::BatchRecord)> = state.batches.iter().collect();
    rows.sort_by(|a, b| (a.1.version, &a.1.batch_id).cmp(&(b.1.version, &b.1.batch_id)));
    let i64_of = |v: u64| v as i64;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(_, b)| b.batch_id.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(_, b)| b.source.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(h, _)| h.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|(_, b)| i64_of(b.version)),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter(rows.iter().map(|(_, b)| b.processing_time))
                .with_timezone("UTC"),
        ),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|(_, b)| i64_of(b.bytes)),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|(_, b)| i64_of(b.lines)),
        )),
        Arc::new(Int64Array::from_iter(
            rows.iter().map(|(_, b)| b.events.map(i64_of)),
        )),
        Arc::new(Int64Array::from_iter(
            rows.iter().map(|(_, b)| b.quarantined.map(i64_of)),
        )),
        Arc::new(Int64Array::from_iter(
            rows.iter().map(|(_, b)| b.retracted.map(i64_of)),
        )),
    ];
    RecordBatch::try_new(schema(), columns).expect("the columns match the schema")
}
