//! `check`: is every file the commit log references on disk, whole?
//!
//! The log is the lake's truth: a file it references that is gone (deleted
//! by hand, lost in a partial copy or restore), has another size than the
//! log recorded, or whose rows are not the log's count makes every reader
//! of its table fail or, worse, read other data. `check` compares each
//! committed file with its log record: that it exists, its size, and its
//! row count (a Parquet file's footer, an id-index file's header, a
//! quarantine file's lines); with `deep`, its bytes' BLAKE3 with the one
//! its commit recorded (a flipped bit that still decodes is `changed`),
//! or, for a file committed without one, every Parquet page decoded (a
//! flipped bit in the data fails its decompression). Each problem
//! names the command that repairs it, if one can: derived tables are
//! rebuilt from bronze; bronze and the quarantine are the lake's only
//! copy of what arrived, so their files come back only from a backup.
//!
//! It also lists files in table directories that no commit references
//! (a crashed writer's, which the next writer removes): evlake never
//! reads them, but DuckDB or Spark reading the directories would.
//!
//! Read-only, like `status`: it takes no lock and changes nothing.

use std::fs::File;
use std::io::Read;
use std::time::Instant;

use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;

use crate::lake::Lake;
use crate::log::{FileAction, LakeState};
use crate::{bronze, gold, ids, ingest, silver};

/// One committed file that is not as the log says.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub table: String,
    /// The partition's key (a date, a snapshot's instant; empty if none).
    pub partition: String,
    /// Lake-relative path.
    pub path: String,
    /// `missing`, `size`, `rows`, `unreadable` or `changed`.
    pub problem: &'static str,
    pub detail: String,
    /// The command that writes the file's data again, or what to do.
    pub repair: String,
}

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub command: &'static str,
    /// `ok` or `problems`.
    pub status: &'static str,
    pub lake: String,
    pub version: u64,
    pub deep: bool,
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
    pub problems: Vec<Problem>,
    /// Files in table directories that no commit references (as in
    /// `status`, which lists them only after an unclean finish).
    pub orphans: Vec<String>,
    /// With `--repair`: the commands run, in order (`evlake` and the
    /// global flags left out).
    pub repaired: Vec<String>,
    pub elapsed_ms: u64,
}

/// Check every file the log references (see the module doc).
pub fn check(lake: &Lake, state: &LakeState, deep: bool) -> Result<CheckReport> {
    let started = Instant::now();
    let files: Vec<(&str, &str, &FileAction)> = state
        .tables
        .iter()
        .flat_map(|(table, parts)| {
            parts.iter().flat_map(move |(partition, p)| {
                p.files
                    .values()
                    .map(move |f| (table.as_str(), partition.as_str(), f))
            })
        })
        .collect();
    // A damaged footer can make the Parquet reader panic (an assertion on
    // a column's offsets, an Arrow type in the schema it cannot map): that
    // file is unreadable, and the others are checked. The panic's own
    // message goes into the problem's detail, not on stderr.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut problems: Vec<Problem> = files
        .par_iter()
        .filter_map(|(table, partition, f)| {
            let (problem, detail) = unless_it_panics(|| check_file(lake, f, deep))?;
            Some(Problem {
                table: table.to_string(),
                partition: partition.to_string(),
                path: f.path.clone(),
                problem,
                detail,
                repair: repair(table, partition),
            })
        })
        .collect();
    std::panic::set_hook(hook);
    problems.sort();
    let orphans = crate::log::orphans(lake, state, &ingest::table_dirs())?;
    Ok(CheckReport {
        command: "check",
        status: if problems.is_empty() {
            "ok"
        } else {
            "problems"
        },
        lake: lake.root().display().to_string(),
        version: state.version,
        deep,
        files: files.len() as u64,
        rows: files.iter().map(|(_, _, f)| f.rows).sum(),
        bytes: files.iter().map(|(_, _, f)| f.bytes).sum(),
        problems,
        orphans,
        repaired: Vec::new(),
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// `check`'s answer for one file, or, if the reader panicked on it, that
/// it is unreadable, with the panic's message.
fn unless_it_panics(
    check: impl FnOnce() -> Option<(&'static str, String)>,
) -> Option<(&'static str, String)> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        Some((
            "unreadable",
            format!("unreadable: its reader failed on it ({why})"),
        ))
    })
}

/// What is wrong with committed file `f`, if anything.
fn check_file(lake: &Lake, f: &FileAction, deep: bool) -> Option<(&'static str, String)> {
    let path = lake.path(&f.path);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some((
                "missing",
                format!(
                    "not on disk (the log has {} row(s), {} bytes)",
                    f.rows, f.bytes
                ),
            ));
        }
        Err(e) => return Some(("unreadable", format!("unreadable: {e}"))),
    };
    if meta.len() != f.bytes {
        return Some((
            "size",
            format!(
                "{} bytes on disk, {} in the log (cut short or replaced)",
                meta.len(),
                f.bytes
            ),
        ));
    }
    // With its hash in the log, `deep` compares the bytes: the same
    // bytes decode as they did when committed, so only the footer's rows
    // are read; other bytes are decoded, to say whether they still do.
    let changed = match (deep, &f.blake3) {
        (true, Some(logged)) => match crate::log::file_blake3(&path) {
            Ok(h) if h == *logged => None,
            Ok(h) => Some(h),
            Err(e) => return Some(("unreadable", format!("unreadable: {e}"))),
        },
        _ => None,
    };
    let decode = deep && (f.blake3.is_none() || changed.is_some());
    let rows = match rows_of(&path, decode) {
        Ok(rows) => rows,
        Err(e) => return Some(("unreadable", format!("unreadable: {e:#}"))),
    };
    if let Some(h) = changed {
        return Some((
            "changed",
            format!(
                "its bytes are not those committed (BLAKE3 {h}… on disk, {}… in the log), \
                 though it reads: a flipped bit on the disk or in a copy, or a file written \
                 over in place; its values cannot be trusted",
                f.blake3.as_deref().unwrap_or_default()
            ),
        ));
    }
    (rows != f.rows).then(|| {
        (
            "rows",
            format!("{rows} row(s) in the file, {} in the log", f.rows),
        )
    })
}

/// The rows file `path` holds, by its kind: a Parquet footer's count (with
/// `deep`, the rows of every page decoded), an id-index header's count, a
/// quarantine file's lines.
fn rows_of(path: &std::path::Path, deep: bool) -> Result<u64> {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let name = path.to_string_lossy();
    let mut file = File::open(path)?;
    if name.ends_with(".parquet") {
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
        let footer = builder.metadata().file_metadata().num_rows() as u64;
        if !deep {
            return Ok(footer);
        }
        let mut rows = 0;
        for batch in builder.build()? {
            rows += batch?.num_rows() as u64;
        }
        Ok(rows)
    } else if name.ends_with(".ids") {
        let mut header = [0u8; 16];
        file.read_exact(&mut header)?;
        anyhow::ensure!(
            &header[..8] == ids::MAGIC,
            "not an id-index file of this evlake (first bytes {:?})",
            String::from_utf8_lossy(&header[..8])
        );
        let n = u64::from_le_bytes(header[8..].try_into().expect("8 bytes"));
        let size = file.metadata()?.len();
        // u128: a damaged header's count must not overflow.
        let needed = 16 + 20 * u128::from(n);
        anyhow::ensure!(
            u128::from(size) == needed,
            "its header counts {n} entries, which take {needed} bytes, not {size}"
        );
        Ok(n)
    } else {
        // Quarantine: one line per row, each ending in `\n`.
        let mut lines = 0;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        }
        Ok(lines)
    }
}

/// Whether `table` holds what arrived (only a backup brings its files back).
fn is_source(table: &str) -> bool {
    table == bronze::TABLE || table == bronze::LATE_TABLE || table == ingest::QUARANTINE_TABLE
}

/// The commands (arguments after `evlake`) that write the data of every
/// derived file in `problems` again, in the order they must run: silver
/// rebuilt whole if any of its files is damaged (restating only a date,
/// `--dates`, compares with its built rows, so it reads the damaged file),
/// then gold (every date the rebuild made dirty, or each damaged date),
/// then each snapshot. The id index needs none (`check --repair` rebuilds
/// it, see [`crate::ids::rebuild`]). An error, and no command, if bronze or
/// its side output is damaged: silver would be rebuilt from it.
pub fn repair_commands(problems: &[Problem]) -> Result<Vec<Vec<String>>, String> {
    use std::collections::BTreeSet;
    let bronze: Vec<&str> = problems
        .iter()
        .filter(|p| p.table == bronze::TABLE || p.table == bronze::LATE_TABLE)
        .map(|p| p.path.as_str())
        .collect();
    if let Some(first) = bronze.first() {
        return Err(format!(
            "{} bronze file(s) are not as the log says (e.g. {first}); silver is rebuilt from \
             bronze, so restore them from a backup first (nothing was repaired)",
            bronze.len()
        ));
    }
    let silver_tables = silver::all_tables();
    let gold_tables = gold::all_tables();
    let dates = |is: &dyn Fn(&str) -> bool| -> BTreeSet<&str> {
        problems
            .iter()
            .filter(|p| is(&p.table))
            .map(|p| p.partition.as_str())
            .collect()
    };
    let silver_dates = dates(&|t| silver_tables.contains(&t));
    let gold_dates = dates(&|t| gold_tables.iter().any(|(g, _)| *g == t));
    let mut out: Vec<Vec<String>> = Vec::new();
    if silver_dates.is_empty() {
        for d in &gold_dates {
            out.push(vec!["gold".into(), "--dates".into(), d.to_string()]);
        }
    } else {
        out.push(vec!["silver".into(), "--full".into()]);
        out.push(vec!["gold".into()]);
    }
    let snapshots: BTreeSet<(String, String)> = problems
        .iter()
        .filter_map(|p| snapshot_of(&p.table, &p.partition))
        .collect();
    for (model, as_of) in snapshots {
        out.push(vec!["snapshot".into(), model, "--as-of".into(), as_of]);
    }
    Ok(out)
}

/// The model and instant (RFC 3339) of a snapshot table's partition.
fn snapshot_of(table: &str, partition: &str) -> Option<(String, String)> {
    let model = table.strip_prefix("state_")?;
    let model = model.split('.').next().unwrap_or(model);
    let as_of = crate::state::parse_as_of_dir(partition)
        .map_or_else(|| partition.to_string(), crate::time::format_micros);
    Some((model.to_string(), as_of))
}

/// How the data of `table`'s partition `partition` is written again.
fn repair(table: &str, partition: &str) -> String {
    if is_source(table) {
        return "restore the file from a backup: it is the lake's only copy of these rows".into();
    }
    if table == ids::TABLE {
        return "`evlake check --repair` rebuilds the id index from bronze (so does the next \
                `evlake ingest` or `run`)"
            .into();
    }
    if let Some((model, as_of)) = snapshot_of(table, partition) {
        return format!(
            "`evlake snapshot {model} --as-of {as_of}` writes the snapshot again (answers replay meanwhile)"
        );
    }
    if silver::all_tables().contains(&table) {
        return "`evlake silver --full` rebuilds silver from bronze (then `evlake gold` brings \
                gold up to date; restating only its date would read this file)"
            .into();
    }
    if gold::all_tables().iter().any(|(t, _)| *t == table) {
        return format!("`evlake gold --dates {partition}` rebuilds it from silver");
    }
    format!("a table this evlake does not know (`{table}`): written by a newer version?")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(table: &str, partition: &str) -> Problem {
        Problem {
            table: table.into(),
            partition: partition.into(),
            path: format!("{table}/{partition}/part.parquet"),
            problem: "missing",
            detail: String::new(),
            repair: repair(table, partition),
        }
    }

    #[test]
    fn a_reader_that_panics_makes_its_file_unreadable() {
        let said = unless_it_panics(|| panic!("column start and length should not be negative"));
        let formatted = unless_it_panics(|| panic!("bit width of {} not supported", 3));
        assert_eq!(
            said,
            Some((
                "unreadable",
                "unreadable: its reader failed on it (column start and length should not be \
                 negative)"
                    .to_string()
            ))
        );
        assert_eq!(
            formatted.unwrap().1,
            "unreadable: its reader failed on it (bit width of 3 not supported)"
        );
        assert_eq!(unless_it_panics(|| None), None);
        assert_eq!(
            unless_it_panics(|| Some(("rows", "1 row".to_string()))),
            Some(("rows", "1 row".to_string()))
        );
    }

    #[test]
    fn repairs_run_silver_then_gold_then_snapshots_and_never_over_damaged_bronze() {
        let problems = [
            problem("state_balances.keys.ledger", "20240315T235959.999999Z"),
            problem("daily_metrics", "2024-03-16"),
            problem("daily_metrics", "2024-03-15"),
            problem("sessions", "2024-03-15"),
            problem("events", "2024-03-15"),
            problem("state_balances", "20240315T235959.999999Z"),
            problem(ids::TABLE, ""),
            problem(ingest::QUARANTINE_TABLE, ""),
        ];
        let lines = |problems: &[Problem]| -> Vec<String> {
            let commands = repair_commands(problems).unwrap();
            commands.iter().map(|c| c.join(" ")).collect()
        };
        assert_eq!(
            lines(&problems),
            [
                "silver --full",
                "gold",
                "snapshot balances --as-of 2024-03-15T23:59:59.999999Z",
            ]
        );
        // Without silver's: each gold date. Each command is the one its
        // problem's hint names.
        let commands = lines(&problems[1..3]);
        assert_eq!(
            commands,
            ["gold --dates 2024-03-15", "gold --dates 2024-03-16"]
        );
        for p in &problems[1..3] {
            assert!(
                commands
                    .iter()
                    .any(|c| p.repair.contains(&format!("`evlake {c}`")))
            );
        }
        for p in &problems[3..5] {
            assert!(p.repair.contains("`evlake silver --full`"), "{p:?}");
        }
        assert_eq!(lines(&problems[6..]), Vec::<String>::new());
        let mut with_bronze = problems.to_vec();
        with_bronze.push(problem(bronze::LATE_TABLE, "2024-03-14"));
        let e = repair_commands(&with_bronze).unwrap_err();
        assert!(
            e.contains("1 bronze file(s)") && e.contains("nothing was repaired"),
            "{e}"
        );
    }
}
