//! `evlake tables`: every logical table with its columns and partitions.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::{ReportFormat, print_json_lines};
use crate::lake::Lake;
use crate::{bronze, engine, gold, ingest, silver};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  evlake tables
  evlake tables --format json | jq -r .name

Every table `evlake query` can read, by logical name, with its columns
(from the files), partitions and rows (from the commit log).")]
pub struct Args {
    /// Output format (csv prints one row per column, json one object per table)
    #[arg(long, value_enum, ignore_case = true, default_value = "table")]
    pub format: ReportFormat,
}

#[derive(Debug, Serialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

#[derive(Debug, Serialize)]
pub struct TableInfo {
    pub name: String,
    /// bronze, silver, gold, quarantine or log (`batches`).
    pub layer: &'static str,
    /// Lake-relative directory.
    pub directory: String,
    pub partitions: usize,
    pub files: usize,
    pub rows: u64,
    /// Empty until a silver or gold table has files (bronze's, the side
    /// output's and the quarantine's columns are fixed).
    pub columns: Vec<Column>,
}

/// Every logical table: (name, layer, directory).
pub fn known_tables() -> Vec<(&'static str, &'static str, &'static str)> {
    let mut v = vec![
        (bronze::TABLE, "bronze", bronze::DIR),
        (bronze::LATE_TABLE, "bronze", bronze::LATE_DIR),
        (
            ingest::QUARANTINE_TABLE,
            "quarantine",
            ingest::QUARANTINE_DIR,
        ),
    ];
    for (t, d) in silver::all_tables().into_iter().zip(silver::all_dirs()) {
        v.push((t, "silver", d));
    }
    for (t, d) in gold::all_tables() {
        v.push((t, "gold", d));
    }
    // (Made from the commit log: no files of its own.)
    v.push((crate::batches::TABLE, "log", "_evlake/log"));
    v
}

pub fn run(lake_dir: &Path, args: Args) -> Result<()> {
    let lake = Lake::new(lake_dir);
    lake.require()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let tables = crate::committed::read_retrying(&lake, |state| {
        let ctx = rt.block_on(engine::context(&lake, state))?;
        let mut tables = Vec::new();
        for (name, layer, dir) in known_tables() {
            let parts: Vec<_> = state
                .partitions(name)
                .filter(|(_, p)| !p.files.is_empty())
                .collect();
            let columns = match rt.block_on(ctx.table(name)) {
                Ok(df) => df
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| Column {
                        name: f.name().clone(),
                        data_type: f.data_type().to_string(),
                        nullable: f.is_nullable(),
                    })
                    .collect(),
                Err(_) => Vec::new(),
            };
            let log = layer == "log";
            tables.push(TableInfo {
                name: name.to_string(),
                layer,
                directory: dir.to_string(),
                partitions: if layer == "quarantine" || log {
                    0
                } else {
                    parts.len()
                },
                files: parts.iter().map(|(_, p)| p.files.len()).sum(),
                rows: if log {
                    state.batches.len() as u64
                } else {
                    parts.iter().map(|(_, p)| p.rows()).sum()
                },
                columns,
            });
        }
        anyhow::Ok(tables)
    })?;
    let mut out = std::io::stdout().lock();
    match args.format {
        ReportFormat::Json => {
            drop(out);
            return print_json_lines(&tables);
        }
        ReportFormat::Csv => {
            writeln!(out, "table,layer,partitions,rows,column,type,nullable")?;
            for t in &tables {
                for c in &t.columns {
                    use crate::csvout::field;
                    writeln!(
                        out,
                        "{},{},{},{},{},{},{}",
                        field(&t.name),
                        t.layer,
                        t.partitions,
                        t.rows,
                        field(&c.name),
                        field(&c.data_type.to_string()),
                        c.nullable
                    )?;
                }
            }
        }
        ReportFormat::Table => {
            for t in &tables {
                writeln!(
                    out,
                    "{} ({}, {}): {} partition(s), {} file(s), {} row(s)",
                    t.name, t.layer, t.directory, t.partitions, t.files, t.rows
                )?;
                if t.columns.is_empty() {
                    writeln!(out, "    (no files yet)")?;
                }
                for c in &t.columns {
                    writeln!(
                        out,
                        "    {:<24} {}{}",
                        c.name,
                        c.data_type,
                        if c.nullable { "" } else { " NOT NULL" }
                    )?;
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}
