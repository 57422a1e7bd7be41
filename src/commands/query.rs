//! `evlake query`: ad-hoc SQL over the logical tables.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use datafusion::arrow::array::RecordBatch;
use datafusion::execution::context::SQLOptions;

use super::Format;
use crate::engine;
use crate::error::Failure;
use crate::lake::Lake;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake query \"SELECT event_date, count(*) AS events FROM bronze_events GROUP BY 1 ORDER BY 1\"
  evlake query \"SELECT * FROM bronze_events WHERE is_late\" --format csv > late.csv
  evlake query \"SHOW TABLES\"

Tables (those that have rows; `evlake tables` lists them with columns):
  bronze_events, bronze_late, quarantine,
  events, sessions, purchases, searches, signups, cart_adds, ledger,
  daily_metrics, daily_revenue_by_currency.
A bad query or an unknown table exits 2 and changes nothing.")]
pub struct Args {
    /// The SQL query
    pub sql: String,

    /// Output format, e.g. --format csv
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    let lake = Lake::new(lake_dir);
    lake.require()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let batches = crate::committed::read_retrying(&lake, || {
        let state = crate::log::LakeState::load(&lake)?;
        rt.block_on(collect(&lake, &state, &args.sql))
    })?;
    print(&batches, args.format)
}

/// Plan and run `sql` over the lake as of `state`.
async fn collect(
    lake: &Lake,
    state: &crate::log::LakeState,
    sql: &str,
) -> Result<Vec<RecordBatch>> {
    let ctx = engine::context(lake, state).await?;
    // Read-only: INSERT INTO a lake table or COPY ... TO would write files
    // no commit records, into table directories that outside readers glob
    // (and the next writer deletes them).
    let read_only = SQLOptions::new().with_allow_dml(false);
    let df = match ctx.sql_with_options(sql, read_only).await {
        Ok(df) => df,
        Err(e) if e.to_string().contains("DML not supported") => {
            return Err(Failure::Usage(format!(
                "evlake query is read-only: INSERT and COPY are not allowed (the lake \
                 changes only through ingest, silver, gold and snapshot commits) ({e})"
            ))
            .into());
        }
        Err(e) if engine::is_usage_error(&e) => {
            return Err(Failure::Usage(format!("bad query: {e}")).into());
        }
        Err(e) => return Err(anyhow::Error::new(e).context("query failed")),
    };
    // Tests hold a query here while a writer replaces its files.
    crate::fault::pause("query-planned");
    df.collect().await.map_err(|e| {
        if engine::is_usage_error(&e) {
            Failure::Usage(format!("bad query: {e}")).into()
        } else {
            anyhow::Error::new(e).context("query failed")
        }
    })
}

/// Rows as the text of a JSON array of objects.
pub fn rows_as_json_text(batches: &[RecordBatch]) -> Result<String> {
    let mut buf = Vec::new();
    {
        let mut w = datafusion::arrow::json::ArrayWriter::new(&mut buf);
        for b in batches {
            w.write(b)?;
        }
        w.finish()?;
    }
    if buf.is_empty() {
        return Ok("[]".to_string());
    }
    Ok(String::from_utf8(buf)?)
}

/// Print rows on stdout in `format`.
pub fn print(batches: &[RecordBatch], format: Format) -> Result<()> {
    if batches.iter().all(|b| b.num_rows() == 0) {
        // Data only on stdout: nothing; say so to a person on stderr.
        if matches!(format, Format::Table) {
            crate::report::eline(format_args!("(no rows)"));
        }
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match format {
        Format::Table => {
            let text = datafusion::arrow::util::pretty::pretty_format_batches(batches)?;
            writeln!(out, "{text}")?;
        }
        Format::Csv => {
            let mut w = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for b in batches {
                w.write(b)?;
            }
        }
        Format::Json => {
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
    }
    out.flush()?;
    Ok(())
}
