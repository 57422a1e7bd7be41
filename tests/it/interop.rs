//! Outside readers (DuckDB, pyarrow) read the lake with no help.
//!
//! `make test` creates a Python venv with both and sets EVLAKE_PYTHON, so
//! this test runs everywhere `make test` runs. It fails (never skips) when
//! the readers are missing.

use std::process::Command;

use crate::common::*;

#[test]
fn duckdb_and_pyarrow_read_bronze_as_is() {
    let python = std::env::var("EVLAKE_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import duckdb, pyarrow"])
        .output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "`{python}` cannot import duckdb and pyarrow; run the tests with `make test`, which installs them"
    );
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let exp = expected();
    for batch in exp["batches"].as_array().unwrap() {
        ingest_sample_batch(&lake, batch);
    }
    let counts = tmp.path().join("counts.json");
    std::fs::write(
        &counts,
        serde_json::to_vec(&expected_counts(&exp["partitions"])).unwrap(),
    )
    .unwrap();
    let o = Command::new(&python)
        .arg(repo().join("tests/interop.py"))
        .arg(&lake)
        .arg(&counts)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "interop failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
