//! `evlake query`: SQL over logical table names, never paths.

use crate::common::*;

#[test]
fn query_reads_bronze_by_its_logical_name() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    for b in expected()["batches"].as_array().unwrap() {
        ingest_sample_batch(&lake, b);
    }
    let o = run(
        &lake,
        &[
            "query",
            "SELECT CAST(event_date AS VARCHAR) AS d, count(*) AS n FROM bronze_events GROUP BY 1 ORDER BY 1",
            "--format",
            "csv",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let got: std::collections::BTreeMap<String, u64> = text
        .lines()
        .skip(1)
        .map(|l| {
            let (d, n) = l.split_once(',').unwrap();
            (d.to_string(), n.parse().unwrap())
        })
        .collect();
    assert_eq!(got, expected_counts(&expected()["partitions"]));

    let o = run(
        &lake,
        &[
            "query",
            "SELECT arrow_typeof(event_date) AS t FROM bronze_events LIMIT 1",
            "--format",
            "json",
        ],
    );
    assert_eq!(
        String::from_utf8(o.stdout).unwrap().trim(),
        r#"{"t":"Date32"}"#
    );

    for bad in [
        "SELEC 1",
        "SELECT nope FROM bronze_events",
        "SELECT * FROM no_such_table",
    ] {
        let o = run(&lake, &["query", bad]);
        assert_eq!(exit_code(&o), 2, "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains("bad query"), "{}", stderr(&o));
    }
}
