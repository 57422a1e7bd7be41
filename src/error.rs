//! Errors that map to the documented exit codes (DESIGN.md §8).
//!
//! Everything else is an `anyhow::Error` and exits 1.

use std::fmt;

/// Exit code for runtime and I/O errors.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code for usage errors: bad flags, bad SQL, unknown model.
pub const EXIT_USAGE: u8 = 2;
/// Exit code when another writer holds the lake lock.
pub const EXIT_LOCKED: u8 = 3;
/// Exit code when the bad-line fraction was exceeded and nothing was committed.
pub const EXIT_REJECTED: u8 = 4;

/// A failure with a specific exit code. Wrap it in `anyhow::Error`; `main`
/// finds it anywhere in the context chain.
#[derive(Debug)]
pub enum Failure {
    /// A usage error discovered after argument parsing (exit 2).
    Usage(String),
    /// Another process holds `_evlake/lock` (exit 3), still after waiting
    /// `waited_us` (`--lock-wait`; 0: no wait).
    Locked {
        lock_path: String,
        pid: Option<u32>,
        waited_us: i64,
    },
    /// Too many bad lines; the run committed nothing (exit 4).
    Rejected {
        bad: u64,
        considered: u64,
        max_fraction: f64,
    },
    /// SQL of the lake's own typed table (`LAKE/typed/`) that failed while
    /// silver ran it (exit 2, like [`Failure::Usage`]): the message names
    /// the file, and [`hint`] says that silver waits for it.
    OwnTyped(String),
    /// A usage error (exit 2) in the SQL file of a table: `subject` names
    /// the table and its file, `problem` says what is wrong with it, so
    /// that `status`, which names them already, can show the problem alone.
    InFile { subject: String, problem: String },
    /// A line longer than `--max-line-bytes`; the run committed nothing
    /// (exit 4). `bytes` is its length, or with `partial` how much of it
    /// was read before giving up; `array` when it starts with `[`.
    LineTooLong {
        source: String,
        line: u64,
        bytes: u64,
        partial: bool,
        max: u64,
        array: bool,
    },
    /// A signal (SIGINT, SIGTERM, SIGHUP) stopped a writer at a safe point
    /// (exit 128 + the signal's number, see [`crate::interrupt`]).
    Interrupted(i32),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(msg) | Failure::OwnTyped(msg) => write!(f, "{msg}"),
            Failure::Interrupted(sig) => {
                write!(f, "interrupted by {}", crate::interrupt::name(*sig))
            }
            Failure::InFile { subject, problem } => write!(f, "{subject} {problem}"),
            Failure::Locked {
                lock_path,
                pid,
                waited_us,
            } => {
                let holder = pid.map_or("another process".to_string(), |p| format!("pid {p}"));
                if *waited_us > 0 {
                    let waited = crate::time::format_duration_micros(*waited_us);
                    write!(
                        f,
                        "lake is still locked by {holder} after waiting {waited} ({lock_path})"
                    )
                } else {
                    write!(
                        f,
                        "lake is locked by {holder} ({lock_path}); --lock-wait DUR waits for it"
                    )
                }
            }
            Failure::Rejected {
                bad,
                considered,
                max_fraction,
            } => write!(
                f,
                "data rejected: {bad} of {considered} lines are bad ({:.2}%), above --max-bad-fraction {max_fraction}; nothing was committed",
                if *considered == 0 {
                    0.0
                } else {
                    *bad as f64 * 100.0 / *considered as f64
                }
            ),
            Failure::LineTooLong {
                source,
                line,
                bytes,
                partial,
                max,
                array,
            } => {
                write!(
                    f,
                    "data rejected: {source}:{line}: the line is longer than --max-line-bytes \
                     ({}{bytes} bytes, limit {max}); nothing was committed",
                    if *partial { "at least " } else { "" }
                )?;
                if *array {
                    write!(
                        f,
                        ". It starts with `[`: a JSON array? evlake reads NDJSON, one object \
                         per line (e.g. `jq -c '.[]' FILE > FILE.jsonl`)"
                    )?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Failure {}

impl Failure {
    /// A [`Failure::InFile`] as an error.
    pub fn in_file(subject: impl Into<String>, problem: impl Into<String>) -> anyhow::Error {
        Failure::InFile {
            subject: subject.into(),
            problem: problem.into(),
        }
        .into()
    }
}

/// What is wrong with a table's SQL file, without the table and file
/// ([`Failure::InFile`]'s `problem`), or else the whole error.
pub fn file_problem(err: &anyhow::Error) -> String {
    err.chain()
        .find_map(|c| match c.downcast_ref::<Failure>() {
            Some(Failure::InFile { problem, .. }) => Some(problem.clone()),
            _ => None,
        })
        .unwrap_or_else(|| describe(err))
}

/// The process exit code for an error chain.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return match failure {
                Failure::Usage(_) | Failure::OwnTyped(_) | Failure::InFile { .. } => EXIT_USAGE,
                Failure::Locked { .. } => EXIT_LOCKED,
                Failure::Rejected { .. } | Failure::LineTooLong { .. } => EXIT_REJECTED,
                Failure::Interrupted(sig) => (128 + sig).clamp(0, 255) as u8,
            };
        }
    }
    EXIT_RUNTIME
}

/// True when the error is a closed stdout (e.g. `evlake ... | head`), which
/// is not a failure for a command-line tool.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    use datafusion::arrow::error::ArrowError;
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || match cause.downcast_ref::<ArrowError>() {
                // Arrow's writers keep only the text of an I/O error.
                Some(ArrowError::IoError(_, io)) => io.kind() == std::io::ErrorKind::BrokenPipe,
                Some(ArrowError::CsvError(text)) | Some(ArrowError::JsonError(text)) => {
                    text.contains("Broken pipe")
                }
                _ => false,
            }
    })
}

/// What to do about an error: a typed table of the lake's own that failed
/// ([`Failure::OwnTyped`], known by its type); or, never for a usage error
/// (whose text may quote the user's SQL), an interrupted step, a committed
/// file gone from disk or not as the log says (which object_store's errors
/// carry only as text), a memory limit too small, a full disk (or quota),
/// or a Parquet file whose pages do not decode.
pub fn hint(err: &anyhow::Error) -> Option<&'static str> {
    if err
        .chain()
        .any(|c| matches!(c.downcast_ref::<Failure>(), Some(Failure::OwnTyped(_))))
    {
        return Some(
            "silver (and the gold and snapshots after it) waits for this typed table of the \
             lake's own: fix its file, or move it out of LAKE/typed/ for now; the lake keeps \
             its last commit",
        );
    }
    if exit_code(err) == EXIT_USAGE {
        return None;
    }
    if err
        .chain()
        .any(|c| matches!(c.downcast_ref::<Failure>(), Some(Failure::Interrupted(_))))
    {
        return Some(
            "the interrupted step's files were removed and the lake is as of its last commit; \
             re-run the same command to finish the work",
        );
    }
    for (marker, hint) in [
        (
            crate::committed::NOT_ON_DISK,
            "a file the commit log names is not on disk: `evlake check` lists every such \
             file and how to write it again",
        ),
        (
            crate::committed::NOT_AS_LOGGED,
            "a file the commit log names is not as the log says: `evlake check` lists every \
             such file and how to restore it or write it again",
        ),
    ] {
        if err.chain().any(|cause| cause.to_string().contains(marker)) {
            return Some(hint);
        }
    }
    if err.chain().any(|cause| {
        cause
            .downcast_ref::<datafusion::error::DataFusionError>()
            .is_some_and(|e| {
                matches!(
                    e.find_root(),
                    datafusion::error::DataFusionError::ResourcesExhausted(_)
                )
            })
            || cause.to_string().starts_with("Resources exhausted")
    }) {
        return Some(
            "this needed more memory than the memory limit lets DataFusion use \
             (--memory-limit, or engine.memory_limit in evlake.toml; default 2G): raise it and \
             re-run the same command (a writer's failed step leaves the lake as of its last \
             commit)",
        );
    }
    if full_disk(err) {
        return Some(
            "the disk is full: the failed step's files were removed and the lake is as of its \
             last commit; free space, then re-run the same command (it finishes the work)",
        );
    }
    // Parquet's own decoding errors (an I/O error it passes on is not one)
    // say not which file: a committed one's pages damaged in place.
    // DataFusion's scans pass them on inside Arrow's error, as text. A
    // compression codec's error comes as an external one too: zstd's
    // "Data corruption detected", snappy's "corrupt input".
    let undecodable = err.chain().any(|cause| {
        use datafusion::arrow::error::ArrowError;
        use datafusion::error::DataFusionError;
        use datafusion::parquet::errors::ParquetError;
        let corrupt = |text: &str| text.to_ascii_lowercase().contains("corrupt");
        let parquet = |p: &ParquetError| match p {
            ParquetError::External(e) => corrupt(&e.to_string()),
            // What the Parquet library has not implemented (writing some
            // type) is no damage.
            ParquetError::NYI(_) => false,
            _ => true,
        };
        let arrow = |a: &ArrowError| {
            matches!(a, ArrowError::ParquetError(text)
                if !text.starts_with("External") || corrupt(text))
        };
        cause.downcast_ref::<ParquetError>().is_some_and(parquet)
            || cause.downcast_ref::<ArrowError>().is_some_and(arrow)
            || cause
                .downcast_ref::<DataFusionError>()
                .is_some_and(|e| match e.find_root() {
                    DataFusionError::ParquetError(p) => parquet(p),
                    DataFusionError::ArrowError(a, _) => arrow(a),
                    _ => false,
                })
    });
    undecodable.then_some(
        "a Parquet file could not be decoded: `evlake check --deep` reads every committed file \
         and lists any damaged one, with how to restore it or write it again",
    )
}

/// Whether `err`'s cause is a full disk (or quota).
fn full_disk(err: &anyhow::Error) -> bool {
    use std::io::ErrorKind::{QuotaExceeded, StorageFull};
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| matches!(io.kind(), StorageFull | QuotaExceeded))
            || ["No space left on device", "Disk quota exceeded"]
                .iter()
                .any(|t| cause.to_string().contains(t))
    })
}

/// An error and its causes on one line, `a: b: c`, leaving out a cause
/// whose text the line already holds: DataFusion's and Parquet's errors
/// repeat their source in their own message, and `{:#}` then said "No
/// space left on device" five times.
pub fn describe(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(text.as_str()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Arrow's error for a value past a decimal column's precision (a sum
/// that no longer fits Decimal(18,2)).
pub fn is_decimal_overflow(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.to_string().contains("too large to store in a Decimal128"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_that_does_not_decode_in_a_scan_gets_the_check_hint() {
        use datafusion::arrow::error::ArrowError;
        use datafusion::error::DataFusionError;
        // What silver's scan of a bronze file damaged in place returned:
        // Parquet's error as Arrow's text, inside DataFusion's.
        let scan = |text: &str| {
            anyhow::Error::new(DataFusionError::ArrowError(
                Box::new(ArrowError::ParquetError(text.into())),
                None,
            ))
            .context("step `silver` failed")
        };
        let damaged =
            scan("Parquet argument error: Parquet error: Unexpected list/set element type 15");
        assert!(
            hint(&damaged).is_some_and(|h| h.contains("`evlake check --deep`")),
            "{damaged:#}"
        );
        // Nor is a compression codec's, which comes as an external error.
        for text in [
            "External: Data corruption detected",
            "External: snappy: corrupt input (expected valid offset but got offset 0)",
        ] {
            assert!(
                hint(&scan(text)).is_some_and(|h| h.contains("`evlake check --deep`")),
                "{text}"
            );
        }
        // An I/O error the reader passed on is not the file's pages.
        assert_eq!(hint(&scan("External: connection reset")), None);
        // Nor is a type the Parquet writer has not implemented.
        let nyi = anyhow::Error::new(datafusion::parquet::errors::ParquetError::NYI(
            "Attempting to write an Arrow interval type MonthDayNano to parquet".into(),
        ));
        assert_eq!(hint(&nyi), None);
    }

    #[test]
    fn describe_leaves_out_causes_already_said() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let inner =
            anyhow::Error::new(io).context("Unable to copy data to file: No space left on device");
        let err = inner
            .context(
                "Parquet error: External: Unable to copy data to file: No space left on device",
            )
            .context("writing silver events");
        assert_eq!(
            describe(&err),
            "writing silver events: Parquet error: External: Unable to copy data to file: \
             No space left on device"
        );
        assert!(hint(&err).is_some_and(|h| h.contains("disk is full")));
        let plain = anyhow::anyhow!("disk").context("step `gold` failed");
        assert_eq!(describe(&plain), "step `gold` failed: disk");
        assert_eq!(hint(&plain), None);
        let text = anyhow::anyhow!(
            "Generic LocalFileSystem error: Unable to copy data to file: No space left on device (os error 28)"
        );
        assert!(hint(&text).is_some());
        let sql = anyhow::Error::new(Failure::Usage(
            "SQL: column 'No space left on device' not found".into(),
        ));
        assert_eq!(hint(&sql), None);
        let own = anyhow::Error::new(Failure::OwnTyped("running lake/typed/t.sql: x".into()))
            .context("step `silver` failed");
        assert_eq!(exit_code(&own), EXIT_USAGE);
        assert!(hint(&own).is_some_and(|h| h.contains("move it out of LAKE/typed/")));
        use datafusion::error::DataFusionError as E;
        let memory = anyhow::Error::new(E::Context(
            "running".into(),
            Box::new(E::ResourcesExhausted("Failed to allocate 8 KB".into())),
        ))
        .context("step `silver` failed");
        assert!(hint(&memory).is_some_and(|h| h.contains("raise it")));
        let plain_df = anyhow::Error::new(E::Execution("x".into()));
        assert_eq!(hint(&plain_df), None);
        use datafusion::parquet::errors::ParquetError as P;
        let pages = anyhow::Error::new(E::ParquetError(Box::new(P::EOF("Unexpected EOF".into()))))
            .context("query failed");
        assert!(hint(&pages).is_some_and(|h| h.contains("`evlake check --deep`")));
        let io = anyhow::Error::new(E::ParquetError(Box::new(P::External(Box::new(
            std::io::Error::other("permission denied"),
        )))));
        assert_eq!(hint(&io), None);
    }

    #[test]
    fn a_file_problem_is_told_without_its_subject() {
        let e = Failure::in_file("lake/typed/t.sql", "does not plan: no field x")
            .context("step `silver` failed");
        assert_eq!(exit_code(&e), EXIT_USAGE);
        assert_eq!(
            describe(&e),
            "step `silver` failed: lake/typed/t.sql does not plan: no field x"
        );
        assert_eq!(file_problem(&e), "does not plan: no field x");
        let other = anyhow::anyhow!("disk").context("step `gold` failed");
        assert_eq!(file_problem(&other), "step `gold` failed: disk");
    }
}
