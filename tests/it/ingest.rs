//! Ingest behaviour on the bundled sample data and on bad input.

use std::io::Write;

use serde_json::Value;

use crate::common::*;
use crate::silver::query_csv;

#[test]
fn sample_batches_land_in_their_event_date_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let exp = expected();
    for (i, batch) in exp["batches"].as_array().unwrap().iter().enumerate() {
        let s = ingest_sample_batch(&lake, batch);
        assert_eq!(s["status"], "committed");
        assert_eq!(s["version"], i as u64 + 1);
        assert_eq!(s["lines"], batch["lines"]);
        assert_eq!(s["events"], batch["events"]);
        assert_eq!(s["empty_lines"], batch["empty_lines"]);
        assert_eq!(s["quarantined_by_reason"], batch["quarantined"]);
        assert_eq!(s["resends"], batch["resends"], "{}", batch["file"]);
        // Id conflicts per date (only the dates that have some).
        for kind in ["id_conflicts", "ids_on_other_dates"] {
            let got: serde_json::Map<String, Value> = s["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p[kind].as_u64() != Some(0))
                .map(|p| {
                    (
                        p["event_date"].as_str().unwrap().to_string(),
                        p[kind].clone(),
                    )
                })
                .collect();
            assert_eq!(Value::Object(got), batch[kind], "{kind} {}", batch["file"]);
        }
        let parts: serde_json::Map<String, Value> = s["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["event_date"].as_str().unwrap().to_string(),
                    p["events"].clone(),
                )
            })
            .collect();
        assert_eq!(Value::Object(parts), batch["partitions"]);
        // The commit keeps each partition's re-send count (0 included),
        // which lets silver skip looking for rows sharing an id.
        let commit =
            evlake::log::read_commit(&evlake::lake::Lake::new(&lake), i as u64 + 1).unwrap();
        let counted: std::collections::BTreeMap<String, u64> = s["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["event_date"].as_str().unwrap().to_string(),
                    p["resends"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(commit.resends, counted, "{}", batch["file"]);
        assert_eq!(
            commit.resends.values().sum::<u64>(),
            batch["resends"].as_u64().unwrap()
        );
    }
    let rows = bronze_rows(&lake);
    assert_eq!(counts_by_date(&rows), expected_counts(&exp["partitions"]));
    assert_eq!(files_on_disk(&lake), committed_files(&lake));

    // Quarantine holds every bad line verbatim with file, line and reason.
    let mut reasons = std::collections::BTreeMap::<String, u64>::new();
    let mut utf8 = None;
    for entry in std::fs::read_dir(lake.join("quarantine")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            let q: Value = serde_json::from_str(line).unwrap();
            assert!(q["source_file"].as_str().unwrap().contains("sample_data"));
            assert!(q["line"].as_u64().unwrap() >= 1);
            assert!(!q["detail"].as_str().unwrap().is_empty());
            *reasons
                .entry(q["reason"].as_str().unwrap().to_string())
                .or_default() += 1;
            if q["reason"] == "invalid_utf8" {
                utf8 = Some(q);
            } else if q["reason"] == "invalid_timestamp" {
                let raw = q["raw"].as_str().unwrap();
                assert!(
                    raw.contains("yesterday") || raw.contains("2024-13-45T25:61:00Z"),
                    "{raw}"
                );
            }
        }
    }
    let mut want = std::collections::BTreeMap::<String, u64>::new();
    for b in exp["batches"].as_array().unwrap() {
        for (k, v) in b["quarantined"].as_object().unwrap() {
            *want.entry(k.clone()).or_default() += v.as_u64().unwrap();
        }
    }
    assert_eq!(reasons, want);
    // `status` counts them, and the files (one per batch that had any).
    let files = std::fs::read_dir(lake.join("quarantine")).unwrap().count();
    let lines: u64 = want.values().sum();
    let st = ok(&lake, &["status", "--json"]);
    assert_eq!(st["quarantined"], lines, "{st}");
    assert_eq!(st["quarantine_files"], files, "{st}");
    // ... and when data last arrived: the last batch's processing time.
    let batches = exp["batches"].as_array().unwrap();
    let last = batches.last().unwrap();
    assert_eq!(
        st["last_ingest"],
        serde_json::json!({"version": batches.len(), "processing_time": last["processing_time"]}),
        "{st}"
    );
    let text = String::from_utf8(run(&lake, &["status"]).stdout).unwrap();
    assert!(
        text.contains(&format!(
            "quarantine {lines} bad line(s) from {files} run(s), in table `quarantine`"
        )) && text.contains(&format!(
            "last batch {} (processing time of commit {}",
            last["processing_time"].as_str().unwrap(),
            batches.len()
        )),
        "{text}"
    );
    // Each says the input (bronze's `batch_id`) and the run
    // (`processing_time`) it came in.
    assert_eq!(
        query_csv(
            &lake,
            "SELECT count(*) FROM quarantine q JOIN (SELECT DISTINCT source_file, batch_id, \
             processing_time FROM bronze_events) b ON q.source_file = b.source_file \
             AND q.batch_id = b.batch_id AND q.processing_time = b.processing_time"
        ),
        [lines.to_string()]
    );
    let utf8 = utf8.expect("sample has a non-UTF-8 line");
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(utf8["raw_base64"].as_str().unwrap())
        .unwrap();
    assert!(
        bytes.windows(4).any(|w| w == b"caf\xe9"),
        "raw bytes kept exactly"
    );
}

#[test]
fn properties_keep_exact_token_text_and_lineage() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let batch = &expected()["batches"][0];
    ingest_sample_batch(&lake, batch);
    let mut found = false;
    for f in parquet_files(&lake.join("bronze/events")) {
        for b in read_parquet(&f) {
            use datafusion::arrow::array::AsArray;
            let props = b.column_by_name("properties").unwrap().as_string::<i32>();
            let pt = b.column_by_name("processing_time").unwrap();
            assert_eq!(
                pt.data_type().to_string(),
                r#"Timestamp(µs, "UTC")"#,
                "processing_time type"
            );
            for i in 0..b.num_rows() {
                if props.value(i).contains(r#""order_id":"o9""#) {
                    assert!(
                        props.value(i).contains(r#""amount":19.99"#),
                        "{}",
                        props.value(i)
                    );
                    found = true;
                }
            }
        }
    }
    assert!(found, "purchase o9 is in bronze");
}

#[test]
fn reingesting_the_same_input_is_a_reported_noop() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let batch = &expected()["batches"][1];
    ingest_sample_batch(&lake, batch);
    let before = bronze_rows(&lake);
    let again = ingest_sample_batch(&lake, batch);
    assert_eq!(again["status"], "noop");
    assert_eq!(again["version"], 1);
    assert_eq!(again["inputs"][0]["status"], "already_ingested");
    assert_eq!(again["inputs"][0]["committed_in"], 1);
    assert_eq!(again["inputs"][0].get("same_as"), None, "{again}");
    assert_eq!(bronze_rows(&lake), before);
    assert_eq!(commits(&lake), 1);
    // The same content under another name (a copy, or a file delivered
    // again under a new name) is also recognised, and the skip names the
    // input that brought those bytes in.
    let original = sample("2024-03-16.jsonl.gz");
    let copy = tmp.path().join("copy.jsonl.gz");
    std::fs::copy(&original, &copy).unwrap();
    let copy = copy.to_str().unwrap();
    let s = ok(&lake, &["ingest", copy, "--json"]);
    assert_eq!(s["status"], "noop");
    assert_eq!(s["inputs"][0]["same_as"], original.as_str(), "{s}");
    run_says(
        &lake,
        &["ingest", copy],
        0,
        &format!("Skipped {copy}: already ingested in commit 1, as {original} (the same bytes)"),
    );
    // As does one given twice in a run under two names.
    let (a, b) = (tmp.path().join("a.jsonl"), tmp.path().join("b.jsonl"));
    for f in [&a, &b] {
        std::fs::write(
            f,
            r#"{"event_id":"n1","event_type":"page_view","event_timestamp":"2024-03-16T10:00:00Z","user_id":"u1"}"#,
        )
        .unwrap();
    }
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let s = ok(&lake, &["ingest", a, b, "--json"]);
    assert_eq!(s["inputs"][1]["status"], "duplicate_in_run", "{s}");
    assert_eq!(s["inputs"][1]["same_as"], a, "{s}");
}

/// A file a writer appends to between runs is read from where the last
/// run stopped: its content already committed is not read again (before,
/// every run read it whole and bronze kept each earlier line again as a
/// re-send). A last line that run ended in the middle of is read again
/// from its start, and line numbers stay the file's. A file that does not
/// begin with that content is new content, read whole.
#[test]
fn a_file_that_grew_since_it_was_ingested_is_read_from_where_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let file = tmp.path().join("events.jsonl");
    let line = |id: &str, minute: u32| {
        format!(
            "{{\"event_id\":\"{id}\",\"event_type\":\"page_view\",\"event_timestamp\":\"2024-03-15T10:{minute:02}:00Z\",\"user_id\":\"u1\"}}\n"
        )
    };
    let append = |text: &str| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&file)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    let ingest = |extra: &[&str]| {
        let mut args = vec!["ingest", file.to_str().unwrap(), "--json"];
        args.extend_from_slice(extra);
        ok(&lake, &args)
    };
    // The writer is in the middle of line 3: that line is quarantined as
    // read, but, to be read again, does not count as a bad line (1 of 3
    // would be over the default --max-bad-fraction).
    let c = line("c", 3);
    append(&(line("a", 1) + &line("b", 2) + &c[..30]));
    let r = ingest(&[]);
    assert_eq!(
        (r["events"].as_u64(), r["quarantined"].as_u64()),
        (Some(2), Some(1)),
        "{r}"
    );
    assert_eq!(r["bad_fraction"], 0.0, "{r}");
    let unfinished = r["unfinished_lines"].as_array().unwrap();
    assert!(
        unfinished.len() == 1 && unfinished[0].as_str().unwrap().ends_with("events.jsonl:3"),
        "{r}"
    );
    // Piped in, the same bytes cannot be read again: the half line is a
    // bad line like any other.
    let piped = run_with_stdin(
        &tmp.path().join("other"),
        &["ingest", "-", "--json"],
        &std::fs::read(&file).unwrap(),
    );
    assert_eq!(exit_code(&piped), 4, "{}", stderr(&piped));
    // A run whose only quarantined line is such a half line went well:
    // it says so, and with --quiet says nothing.
    let said = run(
        &tmp.path().join("other2"),
        &["ingest", file.to_str().unwrap()],
    );
    assert!(
        stderr(&said).contains("events.jsonl:3: the file's last line has no newline")
            && !stderr(&said).contains("Quarantined")
            && !stderr(&said).contains("invalid_json"),
        "{}",
        stderr(&said)
    );
    let quiet = run(
        &tmp.path().join("other3"),
        &["-q", "ingest", file.to_str().unwrap()],
    );
    assert!(
        quiet.status.success() && stderr(&quiet).is_empty(),
        "{}",
        stderr(&quiet)
    );
    assert!(r["inputs"][0].get("resumed").is_none(), "{r}");
    let first_hash = r["inputs"][0]["hash"].clone();
    // It finishes line 3 and writes line 4: lines 3 and 4 are read.
    append(&(c[30..].to_string() + &line("d", 4)));
    let r = ingest(&[]);
    let input = &r["inputs"][0];
    assert_eq!(input["resumed"]["after"], first_hash, "{r}");
    assert_eq!(input["resumed"]["line"], 3, "{r}");
    assert_eq!(
        input["resumed"]["byte"].as_u64().unwrap() as usize,
        2 * line("a", 1).len(),
        "{r}"
    );
    assert_eq!(
        (
            input["lines"].as_u64(),
            r["events"].as_u64(),
            r["resends"].as_u64()
        ),
        (Some(2), Some(2), Some(0)),
        "{r}"
    );
    // The same file again is a no-op; grown again, only line 5 is read.
    assert_eq!(ingest(&[])["status"], "noop");
    append(&line("e", 5));
    let o = run(&lake, &["ingest", file.to_str().unwrap()]);
    assert!(
        stderr(&o).contains(
            "events.jsonl: 1 lines, 1 events, 0 quarantined, 0 empty (the file grew since it was \
             ingested: read from line 5, byte "
        ),
        "{}",
        stderr(&o)
    );
    // A whole line but for its newline is read once: the next run goes
    // on after it.
    let g = line("g", 7);
    append(g.trim_end());
    assert_eq!(ingest(&[])["events"], 1);
    append(&("\n".to_string() + &line("h", 8)));
    let r = ingest(&[]);
    assert_eq!(r["inputs"][0]["resumed"]["line"], 7, "{r}");
    assert_eq!(
        (r["events"].as_u64(), r["resends"].as_u64()),
        (Some(1), Some(0)),
        "{r}"
    );
    assert_eq!(
        crate::silver::query_csv(
            &lake,
            "SELECT event_id, source_line, count(*) OVER () FROM bronze_events ORDER BY event_id"
        ),
        [
            "a,1,7", "b,2,7", "c,3,7", "d,4,7", "e,5,7", "g,6,7", "h,7,7"
        ]
    );
    // The half line stays quarantined as it was read, under its line.
    assert_eq!(
        crate::silver::query_csv(&lake, "SELECT line, reason FROM quarantine"),
        ["3,invalid_json"]
    );
    // A file rewritten under the same name is new content: read whole
    // (its lines already in bronze are exact re-sends, as before).
    std::fs::write(
        &file,
        line("f", 6) + &line("a", 1) + &line("b", 2) + &c + &line("d", 4) + &line("e", 5),
    )
    .unwrap();
    let r = ingest(&[]);
    assert!(r["inputs"][0].get("resumed").is_none(), "{r}");
    assert_eq!(
        (r["events"].as_u64(), r["resends"].as_u64()),
        (Some(6), Some(5)),
        "{r}"
    );
}

/// A compressed log that a logger appends a gzip member (or zstd frame)
/// to per flush is read on from the first new member: read whole, as it
/// was, its old lines landed again as re-sends, with a warning asking
/// whether an ingested file was back under another name.
#[test]
fn a_compressed_log_appended_member_by_member_is_read_on() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let line = |id: &str, minute: u32| {
        crate::silver::ev(
            id,
            "page_view",
            &format!("2024-03-15T10:{minute:02}:00Z"),
            "u",
        )
    };
    let gzip = |text: &str| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let zstd = |text: &str| zstd::encode_all(text.as_bytes(), 3).unwrap();
    for (name, pack) in [
        ("app.jsonl.gz", &gzip as &dyn Fn(&str) -> Vec<u8>),
        ("app.jsonl.zst", &zstd),
    ] {
        let file = inbox.join(name);
        let first = pack(&(line(&format!("{name}-a"), 1) + &line(&format!("{name}-b"), 2)));
        std::fs::write(&file, &first).unwrap();
        let ingest = || ok(&lake, &["ingest", inbox.to_str().unwrap(), "--json"]);
        assert_eq!(ingest()["events"], 2);
        let append = |bytes: &[u8]| {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&file)
                .unwrap();
            f.write_all(bytes).unwrap();
        };
        append(&pack(&line(&format!("{name}-c"), 3)));
        let r = ingest();
        let input = r["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["status"] == "ingested")
            .unwrap();
        assert_eq!(input["resumed"]["line"], 3, "{r}");
        assert_eq!(input["resumed"]["byte"], first.len(), "{r}");
        assert_eq!(
            (r["events"].as_u64(), r["resends"].as_u64()),
            (Some(1), Some(0)),
            "{r}"
        );
        assert_eq!(ingest()["status"], "noop");
        assert_eq!(
            crate::silver::query_csv(
                &lake,
                &format!(
                    "SELECT event_id, source_line FROM bronze_events \
                     WHERE source_file LIKE '%{name}' ORDER BY event_id"
                )
            ),
            [
                format!("{name}-a,1"),
                format!("{name}-b,2"),
                format!("{name}-c,3")
            ]
        );
    }
    // A member that ends mid-line, the next one finishing the line: read
    // from the new member, the line's two halves would both be bad lines;
    // the file is read whole instead (its old lines are re-sends).
    let cut = inbox.join("cut.jsonl.gz");
    let (a, b, c) = (line("cut-a", 1), line("cut-b", 2), line("cut-c", 3));
    std::fs::write(&cut, gzip(&(a.clone() + &b[..10]))).unwrap();
    let r = ok(
        &lake,
        &[
            "ingest",
            cut.to_str().unwrap(),
            "--json",
            "--max-bad-fraction",
            "1",
        ],
    );
    assert_eq!(
        (r["events"].as_u64(), r["quarantined"].as_u64()),
        (Some(1), Some(1)),
        "{r}"
    );
    let mut f = std::fs::OpenOptions::new().append(true).open(&cut).unwrap();
    f.write_all(&gzip(&(b[10..].to_string() + &c))).unwrap();
    let r = ok(&lake, &["ingest", cut.to_str().unwrap(), "--json"]);
    assert!(r["inputs"][0].get("resumed").is_none(), "{r}");
    assert_eq!(
        (r["events"].as_u64(), r["resends"].as_u64()),
        (Some(3), Some(1)),
        "{r}"
    );
    // Rewritten (not begun with what was committed), it is read whole.
    let file = inbox.join("app.jsonl.gz");
    std::fs::write(&file, gzip(&(line("n", 9) + &line("app.jsonl.gz-a", 1)))).unwrap();
    let r = ok(&lake, &["ingest", file.to_str().unwrap(), "--json"]);
    assert!(r["inputs"][0].get("resumed").is_none(), "{r}");
    assert_eq!(
        (r["events"].as_u64(), r["resends"].as_u64()),
        (Some(2), Some(1)),
        "{r}"
    );
}

/// A log rotated after a run (renamed, a new one begun) is found by its
/// content under its new name: only the lines written since that run are
/// read from it, and the new log whole. So is one compressed by rotation,
/// by its text.
#[test]
fn a_rotated_log_is_read_on_from_where_its_last_run_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let lines = |ids: std::ops::Range<usize>| -> String {
        ids.map(|i| {
            format!(
                "{{\"event_id\":\"e{i}\",\"event_type\":\"page_view\",\"event_timestamp\":\"2024-03-15T10:{:02}:{:02}Z\",\"user_id\":\"u{}\"}}\n",
                i / 60 % 60,
                i % 60,
                i % 7
            )
        })
        .collect()
    };
    let log = inbox.join("events.jsonl");
    // More than 512 bytes, so it is found by its first bytes.
    std::fs::write(&log, lines(0..60)).unwrap();
    let dir = inbox.to_str().unwrap();
    let r = ok(&lake, &["ingest", dir, "--json"]);
    assert_eq!(r["events"], 60, "{r}");
    // The writer adds 10 lines, then the log is rotated and a new one
    // begun with 5.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(lines(60..70).as_bytes()).unwrap();
    }
    // As logrotate and Python's `RotatingFileHandler` name it.
    let rotated = inbox.join("events.jsonl.1");
    std::fs::rename(&log, &rotated).unwrap();
    std::fs::write(&log, lines(70..75)).unwrap();
    // Each input read: its name, where its read resumed (and whether in
    // its decompressed text, and after which file's batch when not its
    // own), and its events.
    type Read = (String, Option<u64>, Option<bool>, Option<String>, u64);
    let read = |r: &Value| -> Vec<Read> {
        r["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["source"].as_str().unwrap().to_string(),
                    i["resumed"]["line"].as_u64(),
                    i["resumed"]["decompressed"].as_bool(),
                    i["resumed"]["source"].as_str().map(str::to_string),
                    i["events"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let o = run(&lake, &["ingest", dir, "--json"]);
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let (old, new) = (rotated.display().to_string(), log.display().to_string());
    assert_eq!(
        read(&r),
        [
            (new.clone(), None, None, None, 5),
            (old.clone(), Some(61), None, Some(new.clone()), 10)
        ],
        "{r}"
    );
    // Said so, not "grew".
    assert!(
        stderr(&o).contains(&format!(
            "{old}: 10 lines, 10 events, 0 quarantined, 0 empty (it begins with `{new}` as \
             ingested, a log rotated since: read from line 61, byte "
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(r["resends"], 0, "{r}");
    assert_eq!(bronze_rows(&lake).len(), 75);

    // Rotated again, with compression: the rotated log is compressed on
    // its next rotation (logrotate's `delaycompress`), and the live one,
    // grown, at once (`compress`). Each is found by its text, and only
    // what it holds that no run read is read: the first holds nothing new.
    let gzip = |text: &[u8]| {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text).unwrap();
        e.finish().unwrap()
    };
    std::fs::write(&log, lines(70..80)).unwrap();
    let r = ok(&lake, &["ingest", dir, "--json"]);
    assert_eq!(r["events"], 5, "{r}");
    let older = inbox.join("events.jsonl.2.gz");
    std::fs::write(&older, gzip(&std::fs::read(&rotated).unwrap())).unwrap();
    std::fs::remove_file(&rotated).unwrap();
    let mut live = std::fs::read(&log).unwrap();
    live.extend(lines(80..85).as_bytes());
    let rotated = inbox.join("events.jsonl.1.gz");
    std::fs::write(&rotated, zstd::encode_all(&live[..], 3).unwrap()).unwrap();
    std::fs::write(&log, lines(85..88)).unwrap();
    let r = ok(&lake, &["ingest", dir, "--json"]);
    let (rotated, older) = (rotated.display().to_string(), older.display().to_string());
    assert_eq!(
        read(&r),
        [
            (new.clone(), None, None, None, 3),
            (rotated, Some(11), Some(true), Some(new), 5),
            (older, Some(71), Some(true), Some(old), 0),
        ],
        "{r}"
    );
    assert_eq!(r["resends"], 0, "{r}");
    assert_eq!(bronze_rows(&lake).len(), 88);
}

#[test]
fn a_directory_ingests_every_batch_in_one_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let s = ok(
        &lake,
        &[
            "ingest",
            &sample(""),
            "--processing-time",
            "2024-03-20T02:00:00Z",
            "--json",
        ],
    );
    assert_eq!(s["inputs"].as_array().unwrap().len(), 3);
    // The directory's other file is not read, and is said to be left.
    assert_eq!(
        s["ignored_files"],
        serde_json::json!([sample("curate.py")]),
        "{s}"
    );
    assert_eq!(commits(&lake), 1);
    assert_eq!(
        counts_by_date(&bronze_rows(&lake)),
        expected_counts(&expected()["partitions"])
    );
    // A second run over the directory skips all three.
    let s = ok(&lake, &["ingest", &sample(""), "--json"]);
    assert_eq!(s["status"], "noop");
    assert!(
        s["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "already_ingested")
    );
}

/// A directory's files that are not NDJSON inputs by name are left alone
/// and reported (at most five on stderr, all in --json); hidden files and
/// directories are not, and `_` names are reported, not walked into. A
/// directory with none to read is an up-to-date no-op, exit 0.
#[test]
fn files_a_directory_walk_leaves_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir_all(inbox.join("sub")).unwrap();
    let names = [
        "a.csv",
        "b.jsonl.bz2",
        "c.jsonl.part",
        "d.txt",
        "e.log",
        "sub/f.tsv",
    ];
    for n in names {
        std::fs::write(inbox.join(n), "{}\n").unwrap();
    }
    std::fs::write(inbox.join(".g.jsonl.tmp"), "{}\n").unwrap();
    // Events in a hidden staging directory, and in a Spark job's
    // `_temporary/`, are not read: those are files still being written.
    let event = crate::silver::ev("s1", "page_view", "2024-03-15T10:00:00Z", "u");
    for d in [".staging", "_temporary/0"] {
        std::fs::create_dir_all(inbox.join(d)).unwrap();
        std::fs::write(inbox.join(d).join("part-0.jsonl"), &event).unwrap();
    }
    std::fs::write(inbox.join("_SUCCESS"), "").unwrap();
    let dir = inbox.display().to_string();
    let s = ok(&lake, &["ingest", &dir, "--json"]);
    assert_eq!(s["status"], "noop", "{s}");
    let expected: Vec<String> = ["_SUCCESS", "_temporary"]
        .iter()
        .chain(&names)
        .map(|n| inbox.join(n).display().to_string())
        .collect();
    assert_eq!(s["ignored_files"], serde_json::json!(expected));
    // Given twice, the directory's files are passed over once.
    let s = ok(&lake, &["ingest", &dir, &format!("{dir}/"), "--json"]);
    assert_eq!(s["ignored_files"], serde_json::json!(expected));
    let o = run(&lake, &["ingest", &dir]);
    assert_eq!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("Ignored").count(), 6, "{err}");
    assert!(
        err.contains("... 3 more (all of them in --json's `ignored_files`)"),
        "{err}"
    );
    assert!(
        err.contains(
            "_temporary: a directory whose name begins with `_`, which Hadoop and Spark give \
             what is not data"
        ),
        "{err}"
    );
    assert!(
        !err.contains(".g.jsonl.tmp") && !err.contains(".staging"),
        "{err}"
    );
    // A CSV file's line says how to convert it; another's does not.
    let line = |name: &str| {
        err.lines()
            .find(|l| l.contains(&format!("inbox/{name}:")))
            .unwrap_or_else(|| panic!("{name}: {err}"))
            .to_string()
    };
    assert!(
        line("a.csv").ends_with(
            "(*.jsonl.1, *.jsonl-20240316); to read a CSV file, convert it to NDJSON first, \
             e.g. `duckdb -c \"COPY (FROM read_csv('FILE')) TO '/dev/stdout' (FORMAT json)\" \
             | evlake ingest -`"
        ),
        "{err}"
    );
    assert!(
        line("b.jsonl.bz2").ends_with("(*.jsonl.1, *.jsonl-20240316)"),
        "{err}"
    );
    // Named, a hidden file is read.
    let s = ok(
        &lake,
        &[
            "ingest",
            inbox.join(".staging/part-0.jsonl").to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(s["events"], 1, "{s}");
}

/// A file name with a newline or an escape in it is read, and its status
/// lines stay one line each, the characters written as escapes; bronze's
/// `source_file` keeps the name as it is.
#[cfg(unix)]
#[test]
fn a_file_name_with_control_characters_is_escaped_on_status_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let good = r#"{"event_id":"n1","event_type":"page_view","event_timestamp":"2024-03-15T10:00:00Z","user_id":"u1","properties":{}}"#;
    std::fs::write(inbox.join("a\nb.jsonl"), format!("{good}\nnot json\n")).unwrap();
    std::fs::write(inbox.join("c\u{1b}[31m.jsonl"), "x\n").unwrap();
    let o = run_says(
        &lake,
        &["ingest", inbox.to_str().unwrap(), "--max-bad-fraction", "1"],
        0,
        "a\\nb.jsonl: 2 lines, 1 events, 1 quarantined",
    );
    let err = stderr(&o);
    assert!(err.contains("a\\nb.jsonl:2: invalid_json"), "{err}");
    assert!(err.contains("c\\u{1b}[31m.jsonl:1: invalid_json"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err}");
    assert!(!err.lines().any(|l| l.starts_with("b.jsonl")), "{err}");
    let rows = query_csv(
        &lake,
        "SELECT count(*) FROM bronze_events WHERE source_file LIKE '%a\nb.jsonl'",
    );
    assert_eq!(rows, ["1"]);
    // An error line too: its lines are kept (an error may span several),
    // its other control characters escaped.
    let gone = inbox.join("gone\u{1b}[2J.jsonl");
    let o = run_says(
        &lake,
        &["ingest", gone.to_str().unwrap()],
        1,
        "gone\\u{1b}[2J.jsonl` cannot be read",
    );
    assert!(!stderr(&o).contains('\u{1b}'), "{}", stderr(&o));
}

/// Kinesis Firehose names its S3 objects without an extension: a walk of
/// such a prefix ingested nothing (each file `Ignored`, exit 0). The
/// `Ignored` line says so, `--include '*'` (or `ingest.include` in
/// evlake.toml) reads them, gzipped or not, a pattern with a `/` is a
/// usage error, and `retract DIR` finds what was ingested so.
#[test]
fn include_patterns_read_files_of_other_names() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let hour = tmp.path().join("fh/2024/03/15/14");
    std::fs::create_dir_all(&hour).unwrap();
    let plain = hour.join("clicks-1-2024-03-15-14-30-00-2b3c4d5e");
    std::fs::copy(sample("2024-03-15.jsonl"), &plain).unwrap();
    let gz = hour.join("clicks-1-2024-03-15-14-45-00-aaaa.gz");
    std::fs::copy(sample("2024-03-16.jsonl.gz"), &gz).unwrap();
    std::fs::write(hour.join("notes.txt"), "not events\n").unwrap();
    let fh = tmp.path().join("fh");
    let fh = fh.to_str().unwrap();

    let o = run_says(
        &lake,
        &["ingest", fh],
        0,
        "`--include GLOB` reads files named otherwise (`--include '*'` reads Kinesis \
         Firehose's objects, which have no extension)",
    );
    assert!(
        stderr(&o).contains("nothing new to ingest"),
        "{}",
        stderr(&o)
    );

    let bad = run_says(
        &lake,
        &["ingest", fh, "--include", "14/*"],
        2,
        "--include: `14/*` has a `/`, but a pattern matches a file's name, not its path",
    );
    assert!(stderr(&bad).contains("give `14` and the pattern `*`"));
    run_says(
        &lake,
        &["ingest", fh, "--include", "[x"],
        2,
        "--include: `[x` is not a glob",
    );

    // Only the names a pattern matches.
    let s = ok(&lake, &["ingest", fh, "--include", "*.gz", "--json"]);
    assert_eq!(s["events"], 241, "{s}");
    let ignored: Vec<String> = serde_json::from_value(s["ignored_files"].clone()).unwrap();
    assert_eq!(ignored.len(), 2, "{ignored:?}");
    let o = run_says(
        &lake,
        &["ingest", fh, "--include", "*.gz"],
        0,
        "notes.txt: its name matches no --include pattern (`*.gz`)",
    );
    assert!(
        stderr(&o).contains("nothing new to ingest"),
        "{}",
        stderr(&o)
    );

    // From evlake.toml, for every run.
    std::fs::write(
        lake.join("evlake.toml"),
        "[ingest]\ninclude = [\"clicks-*\"]\n",
    )
    .unwrap();
    let s = ok(&lake, &["ingest", fh, "--json"]);
    assert_eq!(s["events"], 202, "{s}");
    assert_eq!(
        query_csv(&lake, "SELECT count(*) FROM bronze_events"),
        ["443"]
    );
    // The flag wins over the file (a text file read as events: all bad).
    run_says(
        &lake,
        &["ingest", fh, "--include", "*.txt", "--dry-run"],
        4,
        "notes.txt: 1 lines, 0 events, 1 quarantined",
    );

    // `retract DIR` finds both files, whatever their names.
    let s = ok(&lake, &["retract", fh, "--dry-run", "--json"]);
    assert_eq!(s["batches"].as_array().map(Vec::len), Some(2), "{s}");
}

/// A directory walk reads a link to a file, and does not follow a link to
/// a directory (as find, cp -r and rsync do not): it says so, and naming
/// the link reads it.
#[cfg(unix)]
#[test]
fn a_directory_walk_reads_linked_files_and_names_linked_directories() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let inbox = tmp.path().join("inbox");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::copy(sample("2024-03-16.jsonl.gz"), elsewhere.join("b.jsonl.gz")).unwrap();
    symlink(sample("2024-03-15.jsonl"), inbox.join("a.jsonl")).unwrap();
    symlink(&elsewhere, inbox.join("more")).unwrap();
    // A link named like an input that leads to a directory, or nowhere (a
    // rotated-away file), holds no input: reported, and the run goes on.
    symlink(&elsewhere, inbox.join("dir.jsonl")).unwrap();
    let gone = tmp.path().join("rotated.jsonl");
    symlink(&gone, inbox.join("stale.jsonl")).unwrap();
    // A link to itself: a loop, not a file that is missing.
    symlink("loop.jsonl", inbox.join("loop.jsonl")).unwrap();
    // A named pipe: opening it would wait for a writer, for ever.
    let fifo = inbox.join("pipe.jsonl");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    {
        // Should the walk open it, a writer comes after a minute, so this
        // test fails (the pipe read as an empty input) rather than hangs.
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(60));
            let _ = std::fs::OpenOptions::new().write(true).open(fifo);
        });
    }
    let o = run(&lake, &["ingest", inbox.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["events"], expected()["batches"][0]["events"]);
    let link = inbox.join("more").display().to_string();
    let dir_link = inbox.join("dir.jsonl").display().to_string();
    let stale = inbox.join("stale.jsonl").display().to_string();
    let looped = inbox.join("loop.jsonl").display().to_string();
    let fifo = fifo.display().to_string();
    assert_eq!(
        s["ignored_files"],
        serde_json::json!([dir_link, looped, link, fifo, stale])
    );
    for line in [
        format!(
            "{fifo}: not a regular file (a named pipe, socket or device), not opened \
             (name it as an input to read it)"
        ),
        format!(
            "{link}: a symbolic link to a directory, not followed (name it as an input to read it)"
        ),
        format!(
            "{stale}: a symbolic link to `{}`, which does not exist",
            gone.display()
        ),
        format!(
            "{looped}: a symbolic link to `loop.jsonl`, which leads back to itself (a loop of \
             links)"
        ),
    ] {
        assert!(stderr(&o).contains(&line), "{}", stderr(&o));
    }
    let o = run(&lake, &["ingest", &stale]);
    assert_eq!(exit_code(&o), 1);
    assert!(
        stderr(&o).contains("is a symbolic link to"),
        "{}",
        stderr(&o)
    );
    let o = run(&lake, &["ingest", &looped]);
    assert_eq!(exit_code(&o), 1);
    assert!(
        stderr(&o).contains("it is a symbolic link to `loop.jsonl`, which leads back to itself"),
        "{}",
        stderr(&o)
    );
    let s = ok(&lake, &["ingest", &link, "--json"]);
    assert_eq!(s["events"], expected()["batches"][1]["events"]);
}

/// Up to 5 inputs get a `Read` (or `Skipped`) line each, and up to 8
/// partitions a `Partition` line; more share one line with their totals,
/// so an hourly run over a growing inbox does not print a line per file
/// it has already ingested. `--json` lists each.
#[test]
fn many_inputs_share_one_read_line_and_one_skipped_line() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let event = |i: usize| {
        format!(
            r#"{{"event_id":"e{i}","event_type":"page_view","user_id":"u{i}","event_timestamp":"2024-03-1{i}T10:00:00Z"}}"#
        ) + "\n"
    };
    for i in 0..10 {
        let body = if i == 3 {
            event(i) + "{broken\n\n"
        } else {
            event(i)
        };
        std::fs::write(inbox.join(format!("b{i}.jsonl")), body).unwrap();
    }
    let dir = inbox.display().to_string();
    let o = run(
        &lake,
        &["ingest", &dir, "--max-bad-fraction", "1", "--json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["inputs"].as_array().unwrap().len(), 10);
    assert_eq!(s["partitions"].as_array().unwrap().len(), 10);
    let (first, last) = (
        inbox.join("b0.jsonl").display().to_string(),
        inbox.join("b9.jsonl").display().to_string(),
    );
    let err = stderr(&o);
    assert_eq!(err.matches("Read").count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "Read 10 inputs ({first} … {last}): 12 lines, 10 events, 1 quarantined, 1 empty"
        )),
        "{err}"
    );
    // So do more than 8 partitions.
    assert_eq!(err.matches("Partition").count(), 1, "{err}");
    assert!(
        err.contains(
            "Partition 10 dates from 2024-03-10 to 2024-03-19        10 events in 10 file(s)"
        ),
        "{err}"
    );
    // Again, with one file named twice: all skipped, in one line.
    let o = run(&lake, &["ingest", &dir, &last]);
    let err = stderr(&o);
    assert_eq!(err.matches("Skipped").count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "Skipped 11 inputs ({first} … {last}): already ingested, in commit 1"
        )),
        "{err}"
    );
    // A few inputs keep a line each.
    let o = run(&lake, &["ingest", &first, &last]);
    let err = stderr(&o);
    assert!(
        err.contains(&format!("Skipped {first}: already ingested in commit 1"))
            && err.contains(&format!("Skipped {last}: already ingested in commit 1")),
        "{err}"
    );
}

/// A pinned `--processing-time` before an earlier ingest's is taken, with
/// a warning: `--known-at` and silver's choice among re-sent copies go by
/// processing time, not by the order batches arrived in.
#[test]
fn a_processing_time_before_an_earlier_ingests_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let ingest = |file: &str, pt: &str| {
        let o = run(
            &lake,
            &["ingest", &sample(file), "--processing-time", pt, "--json"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let s: Value = serde_json::from_slice(&o.stdout).unwrap();
        (s, stderr(&o))
    };
    let (s, err) = ingest("2024-03-15.jsonl", "2024-03-20T00:00:00Z");
    assert!(
        s.get("later_ingest").is_none() && !err.contains("--processing-time"),
        "{err}"
    );
    let (s, err) = ingest("2024-03-16.jsonl.gz", "2024-03-19T12:00:00Z");
    assert_eq!(
        s["later_ingest"],
        serde_json::json!({"version": 1, "processing_time": "2024-03-20T00:00:00Z"})
    );
    assert!(
        err.contains(
            "Warning --processing-time 2024-03-19T12:00:00Z is before that of an earlier \
             ingest (commit 1, 2024-03-20T00:00:00Z)"
        ),
        "{err}"
    );
    // Against the latest processing time (commit 1's), not the newest
    // commit's (2, at 12:00).
    let (s, _) = ingest("2024-03-19.jsonl", "2024-03-19T18:00:00Z");
    assert_eq!(s["later_ingest"]["version"], 1, "{s}");
    assert_eq!(commits(&lake), 3);
}

#[test]
fn stdin_input_is_hashed_like_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let data = std::fs::read(sample("2024-03-19.jsonl")).unwrap();
    let pipe = |data: &[u8]| {
        let args = [
            "ingest",
            "-",
            "--json",
            "--processing-time",
            "2024-03-20T02:00:00Z",
        ];
        let o = run_with_stdin(&lake, &args, data);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let s = pipe(&data);
    assert_eq!(s["status"], "committed");
    assert_eq!(s["inputs"][0]["source"], "<stdin>");
    let b = &expected()["batches"][2];
    assert_eq!(s["events"], b["events"]);
    assert!(
        bronze_rows(&lake)
            .iter()
            .all(|r| r.source_file == "<stdin>")
    );
    // The same bytes again, through stdin or as the file: no-op.
    assert_eq!(pipe(&data)["status"], "noop");
    let s = ok(&lake, &["ingest", &sample("2024-03-19.jsonl"), "--json"]);
    assert_eq!(s["status"], "noop");
    // Nothing on stdin (`zcat missing.gz | evlake ingest -`, the feeding
    // command failed): still exit 0, with a warning even under -q.
    let o = run_with_stdin(&lake, &["-q", "ingest", "-"], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Warning stdin was empty: nothing was read from it"),
        "{}",
        stderr(&o)
    );
    let o = run_with_stdin(&lake, &["-q", "ingest", "-"], &data);
    assert!(!stderr(&o).contains("stdin was empty"), "{}", stderr(&o));
}

/// The README's recipe: quarantined lines, selected by reason from the
/// `quarantine` table (`--format json`, one object per line), fixed by a
/// flag and piped back in, land in bronze once.
#[test]
fn quarantined_lines_replayed_through_stdin_land_once() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ok(&lake, &["ingest", &sample("2024-03-19.jsonl"), "--json"]);
    let o = run(
        &lake,
        &[
            "query",
            "SELECT raw FROM quarantine WHERE reason = 'timestamp_without_offset'",
            "--format",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let raw: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["raw"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        raw.len(),
        1,
        "the sample's batch has one such line: {raw:?}"
    );
    let replay = || {
        let lines: String = raw.iter().map(|l| format!("{l}\n")).collect();
        let args = ["ingest", "-", "--naive-timestamps", "utc", "--json"];
        let o = run_with_stdin(&lake, &args, lines.as_bytes());
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let s = replay();
    assert_eq!(
        (s["status"].as_str(), s["events"].as_u64()),
        (Some("committed"), Some(1))
    );
    let id: Value = serde_json::from_str(&raw[0]).unwrap();
    let id = id["event_id"].as_str().unwrap();
    assert_eq!(
        query_csv(
            &lake,
            &format!("SELECT source_file, source_line FROM bronze_events WHERE event_id = '{id}'")
        ),
        ["<stdin>,1"]
    );
    assert_eq!(replay()["status"], "noop");
}

#[test]
fn gzip_and_zstd_inputs_decompress_by_content() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let plain = std::fs::read(sample("2024-03-15.jsonl")).unwrap();
    let zst = tmp.path().join("b1.ndjson.zst");
    std::fs::write(&zst, zstd::encode_all(&plain[..], 3).unwrap()).unwrap();
    let s = ok(&lake, &["ingest", zst.to_str().unwrap(), "--json"]);
    assert_eq!(s["events"], expected()["batches"][0]["events"]);
    // The second batch has a few re-sends (4 of 241): no warning.
    let o = run(&lake, &["ingest", &sample("2024-03-16.jsonl.gz"), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["events"], expected()["batches"][1]["events"]);
    assert_eq!(s["resends"], 4);
    assert!(!stderr(&o).contains("exact copies"), "{}", stderr(&o));
    // ... but the first batch again, uncompressed, is not skipped (other
    // bytes): every event is a re-send, and a warning says what it may be.
    let n = expected()["batches"][0]["events"].as_u64().unwrap();
    let o = run_says(
        &lake,
        &["-q", "ingest", &sample("2024-03-15.jsonl")],
        0,
        &format!(
            "Warning {n} of the {n} event(s) are exact copies of events already on their date"
        ),
    );
    assert!(
        stderr(&o).contains("another name or compression"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn too_many_bad_lines_exit_4_and_commit_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let f = tmp.path().join("half-bad.jsonl");
    let mut body = String::new();
    for i in 0..10 {
        body.push_str(&format!(
            "{{\"event_id\":\"e{i}\",\"event_type\":\"t\",\"event_timestamp\":\"2024-03-15T10:00:00Z\",\"user_id\":\"u\"}}\n"
        ));
        body.push_str("{broken\n");
    }
    // A bad line of another reason after the first five bad lines.
    body.push_str("{\"event_id\":\"x\"}\n");
    std::fs::write(&f, body).unwrap();
    let o = run(&lake, &["ingest", f.to_str().unwrap(), "--json"]);
    assert_eq!(exit_code(&o), 4, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("11 of 21 lines are bad"),
        "{}",
        stderr(&o)
    );
    // The summary shows where the first bad lines are (file:line: reason),
    // and the first line of every other reason; the rest are not in a
    // quarantine file, as nothing was committed. --quiet shows them too.
    let quiet = run(&lake, &["-q", "ingest", f.to_str().unwrap()]);
    for o in [&o, &quiet] {
        let err = stderr(o);
        assert!(
            err.contains("half-bad.jsonl:2: invalid_json: invalid JSON")
                && err.contains("half-bad.jsonl:10: invalid_json")
                && !err.contains("half-bad.jsonl:12: invalid_json")
                && err.contains("half-bad.jsonl:21: missing_field")
                && err.contains("... 5 more, kept nowhere as nothing was committed"),
            "{err}"
        );
    }
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["status"], "rejected");
    // The input was read, not ingested: a script that takes each input's
    // status must not think it got in.
    assert_eq!(s["inputs"][0]["status"], "rejected", "{s}");
    assert_eq!(s["inputs"][0]["lines"], 21, "{s}");
    assert_eq!(commits(&lake), 0);
    assert!(bronze_rows(&lake).is_empty());
    assert!(
        !lake.join("quarantine").exists()
            || std::fs::read_dir(lake.join("quarantine")).unwrap().count() == 0
    );
    // A dry run under a looser limit says where the rest would go.
    let o = run(
        &lake,
        &[
            "ingest",
            f.to_str().unwrap(),
            "--max-bad-fraction",
            "0.6",
            "--dry-run",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("... 5 more, which the run would keep in the quarantine file"),
        "{}",
        stderr(&o)
    );
    // A looser limit accepts the same file.
    let o = run(
        &lake,
        &["ingest", f.to_str().unwrap(), "--max-bad-fraction", "0.6"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(bronze_rows(&lake).len(), 10);
    assert!(
        stderr(&o).contains("... 5 more in the quarantine file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn missing_paths_and_corrupt_gzip_are_errors_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let o = run(&lake, &["ingest", "/no/such/file.jsonl"]);
    assert_eq!(exit_code(&o), 1);
    assert!(stderr(&o).contains("/no/such/file.jsonl"), "{}", stderr(&o));

    let bad = tmp.path().join("corrupt.jsonl.gz");
    let mut bytes = vec![0x1f, 0x8b, 0x08, 0x00];
    bytes.extend_from_slice(&[0xAB; 200]);
    std::fs::write(&bad, bytes).unwrap();
    let good = sample("2024-03-15.jsonl");
    let o = run(&lake, &["ingest", &good, bad.to_str().unwrap()]);
    assert_eq!(exit_code(&o), 1);
    assert!(stderr(&o).contains("corrupt.jsonl.gz"), "{}", stderr(&o));
    assert_eq!(commits(&lake), 0, "nothing half-committed");
    assert!(bronze_rows(&lake).is_empty());

    // A gzip file cut short (still being copied, say): the error says how
    // far its text was read, and nothing is committed.
    let whole = std::fs::read(sample("2024-03-16.jsonl.gz")).unwrap();
    let cut = tmp.path().join("cut.jsonl.gz");
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let o = run(&lake, &["ingest", cut.to_str().unwrap()]);
    assert_eq!(exit_code(&o), 1);
    let err = stderr(&o);
    assert!(
        err.contains("`") && err.contains("cut.jsonl.gz`: unreadable after "),
        "{err}"
    );
    assert!(
        err.contains("bytes of its text, so nothing was committed"),
        "{err}"
    );
    assert_eq!(commits(&lake), 0);
    // Found by a directory walk (a cron run over an inbox the gzip is
    // still being copied into), it is passed over, the rest ingested, and
    // the next run reads it once it is whole: it used to stop every run.
    let inbox = tmp.path().join("copying");
    std::fs::create_dir(&inbox).unwrap();
    std::fs::copy(&good, inbox.join("2024-03-15.jsonl")).unwrap();
    std::fs::copy(&cut, inbox.join("2024-03-16.jsonl.gz")).unwrap();
    let o = run(&lake, &["ingest", inbox.to_str().unwrap(), "--json"]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("Ignored ")
            && err.contains("2024-03-16.jsonl.gz: unreadable after ")
            && err.contains("still being copied in, or a truncated or corrupt one"),
        "{err}"
    );
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["status"], "committed", "{s}");
    assert_eq!(s["inputs"].as_array().unwrap().len(), 1, "{s}");
    assert!(
        s["ignored_files"][0]
            .as_str()
            .unwrap()
            .ends_with("2024-03-16.jsonl.gz"),
        "{s}"
    );
    let first = s["events"].as_u64().unwrap();
    assert!(first > 0);
    assert_eq!(bronze_rows(&lake).len() as u64, first);
    std::fs::write(inbox.join("2024-03-16.jsonl.gz"), &whole).unwrap();
    let o = run(&lake, &["ingest", inbox.to_str().unwrap(), "--json"]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    assert!(!stderr(&o).contains("Ignored"), "{}", stderr(&o));
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    let statuses: Vec<&str> = s["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["already_ingested", "ingested"], "{s}");
    let second = s["events"].as_u64().unwrap();
    assert!(second > 0);
    assert_eq!(bronze_rows(&lake).len() as u64, first + second);
    std::fs::remove_dir_all(&lake).unwrap();
    std::fs::remove_dir_all(&inbox).unwrap();

    // A compression evlake does not decode, named or piped in, is said to
    // be one (read as text, its bytes were quarantined as invalid UTF-8).
    let mut bz2 = b"BZh91AY&SY".to_vec();
    bz2.extend_from_slice(&[0xAB; 200]);
    let named = tmp.path().join("events.jsonl.bz2");
    std::fs::write(&named, &bz2).unwrap();
    let o = run(&lake, &["ingest", &good, named.to_str().unwrap()]);
    assert_eq!(exit_code(&o), 1);
    let err = stderr(&o);
    assert!(
        err.contains("events.jsonl.bz2`: bzip2-compressed, which evlake does not read")
            && err.contains("`bzip2 -dc FILE | evlake ingest -`"),
        "{err}"
    );
    let xz = [&[0xfd, b'7', b'z', b'X', b'Z', 0x00][..], &[0x11; 100]].concat();
    let o = run_with_stdin(&lake, &["ingest", "-"], &xz);
    assert_eq!(exit_code(&o), 1);
    assert!(stderr(&o).contains("xz-compressed"), "{}", stderr(&o));
    // A tar archive, compressed or not: read as text, each file's first
    // line was glued to the header before it (quarantined) and the rest
    // committed, the fraction of bad lines being under the limit.
    let tarball = tmp.path().join("events.tar.gz");
    let good_path = std::path::Path::new(&good);
    assert!(
        std::process::Command::new("tar")
            .arg("-czf")
            .arg(&tarball)
            .arg("-C")
            .arg(good_path.parent().unwrap())
            .arg(good_path.file_name().unwrap())
            .status()
            .unwrap()
            .success()
    );
    let o = run(&lake, &["ingest", tarball.to_str().unwrap()]);
    assert_eq!(exit_code(&o), 1);
    assert!(
        stderr(&o).contains(
            "events.tar.gz`: a compressed tar archive, which evlake does not read (it reads \
             UTF-8 NDJSON, plain or gzip- or zstd-compressed): extract its NDJSON files first, \
             e.g. `tar -xOf FILE | evlake ingest -`"
        ),
        "{}",
        stderr(&o)
    );
    assert_eq!(commits(&lake), 0);

    // Found by a directory walk under an input's name, such a file is
    // passed over as a misnamed one is, saying what it is: one of them in
    // an inbox stopped every cron run until someone removed it.
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir_all(inbox.join("win")).unwrap();
    std::fs::write(inbox.join("misnamed.jsonl"), &bz2).unwrap();
    let utf16: Vec<u8> = "\u{feff}{\"event_id\":\"w1\"}\n"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    std::fs::write(inbox.join("win/export.json"), &utf16).unwrap();
    // JSON that is not NDJSON: an array, or pretty-printed (every line of
    // either was a bad line: the run was rejected, exit 4).
    let event = crate::silver::ev("j1", "page_view", "2024-03-15T10:00:00Z", "u");
    std::fs::write(inbox.join("array.json"), format!("[{}]\n", event.trim())).unwrap();
    std::fs::write(
        inbox.join("pretty.json"),
        "\u{feff}{\r\n  \"event_id\": \"p1\",\r\n  \"event_type\": \"page_view\"\r\n}\r\n",
    )
    .unwrap();
    // Objects with no newline between them, as Kinesis Firehose writes
    // records: read, the file was one line, taken for one a writer was
    // still writing, so the run said nothing was wrong and kept none.
    let firehose = format!(
        "{}{}",
        event.trim(),
        crate::silver::ev("j2", "page_view", "2024-03-15T10:01:00Z", "u").trim()
    );
    std::fs::write(inbox.join("firehose.json"), &firehose).unwrap();
    std::fs::copy(&good, inbox.join("good.jsonl")).unwrap();
    // So is a compressed tar archive under an input's name.
    let bundles = tmp.path().join("bundles");
    std::fs::create_dir(&bundles).unwrap();
    std::fs::copy(&tarball, bundles.join("bundle.jsonl.gz")).unwrap();
    let o = run(&lake, &["ingest", bundles.to_str().unwrap()]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "bundle.jsonl.gz: a compressed tar archive, which evlake does not read: extract its \
             NDJSON files first"
        ),
        "{}",
        stderr(&o)
    );
    assert_eq!(commits(&lake), 0);
    let o = run(&lake, &["-q", "ingest", inbox.to_str().unwrap(), "--json"]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "misnamed.jsonl: bzip2-compressed, which evlake does not read: decompress it first"
        ) && err.contains("export.json: UTF-16 text, which evlake does not read: convert it")
            && err.contains(
                "array.json: a JSON array, not NDJSON (one event object per line): `jq -c '.[]' \
                 FILE | evlake ingest -`"
            )
            && err.contains(
                "pretty.json: JSON written over many lines (pretty-printed), not NDJSON (one \
                 event object per line): `jq -c . FILE | evlake ingest -`"
            )
            && err.contains(
                "firehose.json: JSON objects one after another with no newline between them (as \
                 Kinesis Firehose writes records without a newline delimiter), not NDJSON"
            ),
        "{err}"
    );
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["status"], "committed", "{s}");
    assert_eq!(s["inputs"].as_array().unwrap().len(), 1, "{s}");
    let ignored = s["ignored_files"].as_array().unwrap();
    assert_eq!(ignored.len(), 5, "{s}");
    assert!(
        ignored[2].as_str().unwrap().ends_with("misnamed.jsonl"),
        "{s}"
    );
    assert_eq!(
        bronze_rows(&lake).len(),
        expected()["batches"][0]["events"].as_u64().unwrap() as usize
    );
    // Named, such a file is read: its lines are quarantined saying what
    // they are (as before).
    let o = run(
        &lake,
        &["ingest", inbox.join("array.json").to_str().unwrap()],
    );
    assert_eq!(exit_code(&o), 4, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("line is a JSON array"),
        "{}",
        stderr(&o)
    );
    // A file of run-on objects, named, is one bad line, not an unfinished
    // one: the run is rejected (it was exit 0 with no event kept).
    let o = run(
        &lake,
        &["ingest", inbox.join("firehose.json").to_str().unwrap()],
    );
    assert_eq!(exit_code(&o), 4, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("firehose.json:1: invalid_json")
            && err.contains("no newline between them (as Kinesis Firehose")
            && !err.contains("Unfinished"),
        "{err}"
    );
    // Objects apart by carriage returns alone (classic Mac OS line ends):
    // the walk says how to split them.
    let mac = tmp.path().join("mac");
    std::fs::create_dir(&mac).unwrap();
    std::fs::write(
        mac.join("mac.json"),
        format!("{}\r", event.trim()).repeat(2),
    )
    .unwrap();
    let o = run(&lake, &["ingest", mac.to_str().unwrap()]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "mac.json: JSON objects separated by carriage returns alone (classic Mac OS line \
             ends), not NDJSON (one event object per line): `tr '\\r' '\\n' < FILE | evlake \
             ingest -` writes each on its own line"
        ),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_errors_exit_2_and_name_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    for (args, flag) in [
        (
            vec!["ingest", "x.jsonl", "--processing-time", "yesterday"],
            "--processing-time",
        ),
        (
            vec!["ingest", "x.jsonl", "--max-bad-fraction", "2"],
            "--max-bad-fraction",
        ),
        (
            vec!["ingest", "x.jsonl", "--max-future", "soon"],
            "--max-future",
        ),
        (
            vec!["ingest", "x.jsonl", "--naive-timestamps", "local"],
            "--naive-timestamps",
        ),
        (
            vec!["ingest", "x.jsonl", "--min-event-time", "long ago"],
            "--min-event-time",
        ),
        (vec!["generate", "--out", "g", "--days", "0"], "--days"),
        (vec!["generate", "--out", "g", "--users", "0"], "--users"),
        (
            vec!["generate", "--out", "g", "--bad-rate", "2"],
            "--bad-rate",
        ),
    ] {
        let o = run(&lake, &args);
        assert_eq!(exit_code(&o), 2, "{args:?}");
        assert!(stderr(&o).contains(flag), "{}", stderr(&o));
    }
}

#[test]
fn naive_timestamps_can_be_accepted_as_utc() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let f = tmp.path().join("naive.jsonl");
    std::fs::write(
        &f,
        "{\"event_id\":\"e1\",\"event_type\":\"t\",\"event_timestamp\":\"2024-03-15T23:30:00\",\"user_id\":\"u\"}\n",
    )
    .unwrap();
    let o = run(
        &lake,
        &[
            "ingest",
            f.to_str().unwrap(),
            "--max-bad-fraction",
            "1",
            "--json",
        ],
    );
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["quarantined_by_reason"]["timestamp_without_offset"], 1);
    let lake2 = tmp.path().join("lake2");
    let s = ok(
        &lake2,
        &[
            "ingest",
            f.to_str().unwrap(),
            "--naive-timestamps",
            "utc",
            "--json",
        ],
    );
    assert_eq!(s["partitions"][0]["event_date"], "2024-03-15");
}

/// A line nested a million levels deep is valid JSON, and used to abort
/// the ingest (the parse thread's stack overflowed looking for repeated
/// keys). Past 128 levels it is quarantined whole, and the good lines
/// beside it land; one within the limit lands with every property read.
#[test]
fn a_line_nested_past_the_limit_is_quarantined_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("deep.jsonl");
    let line = |id: &str, n: usize| {
        format!(
            "{{\"event_id\":\"{id}\",\"event_type\":\"purchase\",\"event_timestamp\":\"2024-03-15T10:00:00Z\",\
             \"user_id\":\"u\",\"properties\":{{\"deep\":{}{},\"amount\":\"5.00\",\"currency\":\"USD\",\
             \"order_id\":\"o-{id}\"}}}}\n",
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    let deep = line("deep", 1_000_000);
    std::fs::write(&f, line("ok", 126) + &deep).unwrap();
    let f = f.to_str().unwrap();
    let lake = tmp.path().join("lake");
    let s = ok(&lake, &["run", f, "--max-bad-fraction", "1", "--json"]);
    assert_eq!(s["ingest"]["events"], 1, "{s}");
    assert_eq!(
        s["ingest"]["quarantined_by_reason"]["invalid_json"], 1,
        "{s}"
    );
    let q = query_csv(&lake, "SELECT line, detail, length(raw) FROM quarantine");
    assert_eq!(
        q,
        [format!(
            "2,\"invalid JSON: nested 1000002 levels deep, more than the 128 evlake reads \
             (silver's JSON functions would read none of its `properties`)\",{}",
            deep.len() - 1
        )]
    );
    assert_eq!(
        query_csv(&lake, "SELECT event_id, amount, currency FROM purchases"),
        ["ok,5.00,USD"]
    );
}

/// Chunks of many bad lines are parsed in parts, each sent in its
/// chunk's turn (memory: a quarantined line is a struct of its own, and
/// 4 MiB of `{}` lines were ~200 MB of them per chunk in flight). Every
/// line keeps its number across chunks and parts; a run that fails on a
/// long line beside parsers waiting their turn stops, and commits nothing.
#[test]
fn many_bad_lines_are_quarantined_in_order_with_their_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("mostly-bad.jsonl");
    let good = |i: usize| {
        format!(
            "{{\"event_id\":\"e{i}\",\"event_type\":\"t\",\"event_timestamp\":\"2024-03-15T10:00:00Z\",\"user_id\":\"u\"}}\n"
        )
    };
    // ~1 MB: four chunks of 256 KiB, each ~80,000 bad lines.
    let n = 330_000;
    let text: String = (0..n)
        .map(|i| {
            if i % 10_000 == 7 {
                good(i)
            } else {
                "{}\n".to_string()
            }
        })
        .collect();
    std::fs::write(&f, &text).unwrap();
    let f = f.to_str().unwrap();
    let lake = tmp.path().join("lake");
    let s = ok(&lake, &["ingest", f, "--max-bad-fraction", "1", "--json"]);
    assert_eq!(s["events"], 33, "{s}");
    assert_eq!(s["quarantined"], n - 33, "{s}");
    let q = query_csv(
        &lake,
        "SELECT count(*), count(DISTINCT line), min(line), max(line), \
         sum(CASE WHEN line % 10000 = 8 THEN 1 ELSE 0 END) FROM quarantine",
    );
    assert_eq!(q, [format!("{},{},1,{n},0", n - 33, n - 33)]);
    let rows = query_csv(
        &lake,
        "SELECT count(*) FROM bronze_events WHERE event_id = concat('e', source_line - 1)",
    );
    assert_eq!(rows, ["33"]);
    // A line over the limit near the end: the run fails naming it, with
    // every parser stopped (it would hang otherwise), and commits nothing.
    let long = tmp.path().join("long.jsonl");
    let cut = text.len() - 1000;
    let cut = cut - text[..cut].rfind('\n').map_or(0, |p| cut - p - 1);
    std::fs::write(
        &long,
        format!("{}{}\n{}", &text[..cut], "y".repeat(5000), &text[cut..]),
    )
    .unwrap();
    let lake2 = tmp.path().join("lake2");
    let o = run(
        &lake2,
        &[
            "ingest",
            long.to_str().unwrap(),
            "--max-line-bytes",
            "4K",
            "--max-bad-fraction",
            "1",
        ],
    );
    assert_eq!(exit_code(&o), 4, "{}", stderr(&o));
    let line = text[..cut].matches('\n').count() + 1;
    assert!(
        stderr(&o).contains(&format!(
            "long.jsonl:{line}: the line is longer than --max-line-bytes"
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(commits(&lake2), 0);
}

#[test]
fn epoch_seconds_are_quarantined_as_too_old_unless_the_minimum_allows() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("seconds.jsonl");
    let line = |id: &str, ts: &str| {
        format!(
            "{{\"event_id\":\"{id}\",\"event_type\":\"t\",\"event_timestamp\":{ts},\"user_id\":\"u\"}}\n"
        )
    };
    std::fs::write(
        &f,
        line("seconds", "1710513000") + &line("millis", "1710513000123"),
    )
    .unwrap();
    let f = f.to_str().unwrap();
    let lake = tmp.path().join("lake");
    let s = ok(&lake, &["ingest", f, "--max-bad-fraction", "1", "--json"]);
    assert_eq!(s["events"], 1, "{s}");
    assert_eq!(s["quarantined_by_reason"]["timestamp_too_old"], 1, "{s}");
    let q = query_csv(&lake, "SELECT reason, line, raw FROM quarantine");
    assert_eq!(q.len(), 1, "{q:?}");
    assert!(q[0].starts_with("timestamp_too_old,1,"), "{q:?}");
    // The minimum is a flag, or a key in evlake.toml; `none` lifts it.
    let lake2 = tmp.path().join("lake2");
    let s = ok(&lake2, &["ingest", f, "--min-event-time", "none", "--json"]);
    assert_eq!(s["events"], 2, "{s}");
    assert_eq!(
        query_csv(&lake2, "SELECT min(event_date) FROM bronze_events"),
        ["1970-01-20"]
    );
    let lake3 = tmp.path().join("lake3");
    std::fs::create_dir_all(&lake3).unwrap();
    std::fs::write(
        lake3.join("evlake.toml"),
        "[ingest]\nmin_event_time = \"1970-01-01\"\n",
    )
    .unwrap();
    assert_eq!(ok(&lake3, &["ingest", f, "--json"])["events"], 2);
    std::fs::write(
        lake3.join("evlake.toml"),
        "[ingest]\nmin_event_time = \"soon\"\n",
    )
    .unwrap();
    let o = run(&lake3, &["ingest", f]);
    assert_eq!(exit_code(&o), 2);
    assert!(
        stderr(&o).contains("ingest.min_event_time"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn lake_defaults_to_env_then_dot_lake() {
    let tmp = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(bin())
        .current_dir(tmp.path())
        .env_remove("EVLAKE_LAKE")
        .args(["ingest", &sample("2024-03-19.jsonl")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(tmp.path().join("lake/_evlake/log").is_dir());
    let o = std::process::Command::new(bin())
        .current_dir(tmp.path())
        .env("EVLAKE_LAKE", tmp.path().join("other"))
        .args(["ingest", &sample("2024-03-19.jsonl")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(tmp.path().join("other/_evlake/log").is_dir());
}

#[test]
fn generated_batches_match_the_generators_truth() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let truth = generate(
        &gen_dir,
        &["--events", "20000", "--days", "6", "--seed", "7"],
    );
    let lake = tmp.path().join("lake");
    let mut quarantined = std::collections::BTreeMap::<String, u64>::new();
    let (mut resends, mut id_conflicts) = (0, 0);
    for b in truth["batches"].as_array().unwrap() {
        let file = gen_dir.join("batches").join(b["file"].as_str().unwrap());
        let s = ok(
            &lake,
            &[
                "ingest",
                file.to_str().unwrap(),
                "--processing-time",
                b["processing_time"].as_str().unwrap(),
                "--json",
            ],
        );
        assert_eq!(s["events"], b["events"], "{}", b["file"]);
        assert_eq!(
            s["quarantined_by_reason"], b["quarantined"],
            "{}",
            b["file"]
        );
        assert_eq!(s["empty_lines"], b["empty_lines"]);
        resends += s["resends"].as_u64().unwrap();
        id_conflicts += s["id_conflicts"].as_u64().unwrap();
        for (k, v) in s["quarantined_by_reason"].as_object().unwrap() {
            *quarantined.entry(k.clone()).or_default() += v.as_u64().unwrap();
        }
    }
    assert_eq!(
        counts_by_date(&bronze_rows(&lake)),
        expected_counts(&truth["partitions"])
    );
    assert_eq!(resends, truth["totals"]["resends"].as_u64().unwrap());
    assert_eq!(
        id_conflicts,
        truth["totals"]["id_conflicts"].as_u64().unwrap()
    );
    // Every reason the contract names shows up in generated data.
    for reason in [
        "invalid_json",
        "not_an_object",
        "missing_field",
        "invalid_type",
        "invalid_timestamp",
        "timestamp_without_offset",
        "conflicting_fields",
        "invalid_utf8",
        "future_timestamp",
    ] {
        assert!(
            quarantined.get(reason).copied().unwrap_or(0) > 0,
            "{reason} never generated"
        );
    }
    assert!(truth["totals"]["resends"].as_u64().unwrap() > 0);
    assert!(truth["totals"]["id_conflicts"].as_u64().unwrap() > 0);
    assert!(truth["totals"]["session_bridges"].as_u64().unwrap() > 0);

    // status: conflicts on more dates than the line names go to a column,
    // which adds up to the generator's count.
    let text = String::from_utf8(run(&lake, &["status"]).stdout).unwrap();
    let header: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("event_date"))
        .unwrap()
        .split_whitespace()
        .collect();
    let col = header.iter().position(|h| *h == "conflicts").unwrap();
    let per_date: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("2024-"))
        .map(|l| l.split_whitespace().nth(col).unwrap().parse().unwrap())
        .collect();
    assert_eq!(per_date.iter().sum::<u64>(), id_conflicts, "{text}");
    let dates = per_date.iter().filter(|n| **n > 0).count();
    assert!(dates > 3, "{text}");
    assert!(
        text.contains(&format!(
            "left out of silver (on {dates} dates: the `conflicts` column below)"
        )),
        "{text}"
    );
}

#[test]
fn generator_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    generate(&a, &["--events", "3000", "--days", "3"]);
    generate(&b, &["--events", "3000", "--days", "3"]);
    for f in [
        "batches/batch-0001.jsonl",
        "batches/batch-0002.jsonl",
        "batches/batch-0003.jsonl",
        "truth.json",
    ] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn a_long_history_is_read_from_its_checkpoint_with_the_same_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let batch = |i: usize| {
        let f = tmp.path().join(format!("b{i}.jsonl"));
        std::fs::write(
            &f,
            format!(
                "{{\"event_id\":\"e{i}\",\"event_type\":\"page_view\",\
                 \"event_timestamp\":\"2024-03-{:02}T10:00:00Z\",\"user_id\":\"u{i}\"}}\n",
                1 + i % 5
            ),
        )
        .unwrap();
        f.to_string_lossy().into_owned()
    };
    // One commit per batch: 52 versions, a checkpoint at 50.
    for i in 0..52 {
        ok(
            &lake,
            &[
                "ingest",
                &batch(i),
                "--processing-time",
                "2024-03-10T00:00:00Z",
            ],
        );
    }
    assert_eq!(commits(&lake), 52);
    let checkpoint = lake.join("_evlake/log/00000000000000000050.checkpoint.json");
    assert!(checkpoint.is_file());
    // Loaded from the checkpoint: the batches it holds are known, so their
    // content is a no-op, and every partition's rows are counted.
    let again = ok(&lake, &["ingest", &batch(3), "--json"]);
    assert_eq!(again["status"], "noop", "{again}");
    let status = ok(&lake, &["status", "--json"]);
    let tables = run(&lake, &["tables"]).stdout;
    assert_eq!(
        counts_by_date(&bronze_rows(&lake)).values().sum::<u64>(),
        52
    );
    // Without it, the same answers from replaying every commit.
    std::fs::remove_file(&checkpoint).unwrap();
    assert_eq!(ok(&lake, &["status", "--json"]), status);
    assert_eq!(run(&lake, &["tables"]).stdout, tables);
    let again = ok(&lake, &["ingest", &batch(7), "--json"]);
    assert_eq!(again["status"], "noop", "{again}");
}

/// An input that shrinks or is rewritten between the hash (which names
/// the batch and later marks it ingested) and the end of its read fails
/// the run, naming the file, with nothing committed; the next run ingests
/// the file as it is. One a writer appends to meanwhile is read up to
/// what was hashed, and the next run reads on from there; a compressed
/// one that grows fails like a rewritten one. Found by a directory walk,
/// such a file is passed over, and the run commits the others.
#[test]
fn an_input_changed_while_it_is_ingested_fails_the_run_and_commits_nothing() {
    let line = |i: usize| {
        format!(
            "{{\"event_id\":\"e{i}\",\"event_type\":\"page_view\",\
             \"event_timestamp\":\"2024-03-15T10:{i:02}:00Z\",\"user_id\":\"u1\"}}\n"
        )
    };
    let lines = |n: std::ops::Range<usize>| n.map(line).collect::<String>();
    let append = |p: &std::path::Path| {
        let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
        f.write_all(b"{\"event_id\":\"late\",\"event_type\":\"x\",\"event_timestamp\":\"2024-03-15T11:00:00Z\",\"user_id\":\"u2\"}\n").unwrap();
    };
    for (what, name, grows) in [
        ("appended", "inbox.jsonl", true),
        ("truncated", "inbox.jsonl", false),
        ("appended to, compressed", "inbox.jsonl.gz", true),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let lake = tmp.path().join("lake");
        let input = tmp.path().join(name);
        if name.ends_with(".gz") {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(lines(0..40).as_bytes()).unwrap();
            std::fs::write(&input, gz.finish().unwrap()).unwrap();
        } else {
            std::fs::write(&input, lines(0..40)).unwrap();
        }
        let (child, go) = spawn_paused(
            &lake,
            &["ingest", input.to_str().unwrap(), "--json"],
            "hashed",
            tmp.path(),
        );
        if grows && name.ends_with(".gz") {
            // A second gzip member, as `cat more.gz >> inbox.jsonl.gz`.
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(line(40).as_bytes()).unwrap();
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&input)
                .unwrap();
            f.write_all(&gz.finish().unwrap()).unwrap();
        } else if grows {
            append(&input);
        } else {
            // To the end of a line, as a log rotation's copytruncate
            // leaves it (emptied) or a rewrite with fewer events.
            let text = std::fs::read_to_string(&input).unwrap();
            let cut = text.match_indices('\n').nth(19).unwrap().0 + 1;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&input)
                .unwrap();
            f.set_len(cut as u64).unwrap();
        }
        std::fs::write(&go, b"").unwrap();
        let o = child.wait_with_output().unwrap();
        if what == "appended" {
            // The 40 lines hashed are committed; the next run reads line 41.
            assert_eq!(exit_code(&o), 0, "{what}: {}", stderr(&o));
            let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(s["events"], 40, "{s}");
            let s = ok(&lake, &["ingest", input.to_str().unwrap(), "--json"]);
            assert_eq!(s["inputs"][0]["resumed"]["line"], 41, "{s}");
            assert_eq!(
                (s["events"].as_u64(), s["resends"].as_u64()),
                (Some(1), Some(0)),
                "{s}"
            );
            assert_eq!(bronze_rows(&lake).len(), 41);
            continue;
        }
        assert_eq!(exit_code(&o), 1, "{what}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(name) && err.contains("changed while it was being ingested"),
            "{what}: {err}"
        );
        assert_eq!(commits(&lake), 0, "{what}: nothing committed");
        assert!(bronze_rows(&lake).is_empty(), "{what}");
        // The next run ingests the file as it is now, all of it.
        let s = ok(
            &lake,
            &[
                "ingest",
                input.to_str().unwrap(),
                "--json",
                "--max-bad-fraction",
                "1",
            ],
        );
        let want = if name.ends_with(".gz") { 41 } else { 20 };
        assert_eq!(s["events"], want, "{what}: {s}");
        assert_eq!(bronze_rows(&lake).len(), want, "{what}");
    }

    // Found by a directory walk, such a file is passed over (as one
    // unreadable part-way is): the run commits the others, and the next
    // run reads it as it is then. So is one that shrinks as it is hashed
    // (there alone: which file a pause while hashing holds is not known).
    for step in ["hashed", "hashing"] {
        let tmp = tempfile::tempdir().unwrap();
        let lake = tmp.path().join("lake");
        let inbox = tmp.path().join("inbox");
        std::fs::create_dir(&inbox).unwrap();
        let log = inbox.join("app.jsonl");
        std::fs::write(&log, lines(0..40)).unwrap();
        let others = usize::from(step == "hashed");
        if others > 0 {
            std::fs::write(inbox.join("other.jsonl"), line(50)).unwrap();
        }
        let (child, go) = spawn_paused(
            &lake,
            &["ingest", inbox.to_str().unwrap(), "--json"],
            step,
            tmp.path(),
        );
        let text = std::fs::read_to_string(&log).unwrap();
        let cut = text.match_indices('\n').nth(19).unwrap().0 + 1;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(cut as u64)
            .unwrap();
        std::fs::write(&go, b"").unwrap();
        let o = child.wait_with_output().unwrap();
        assert_eq!(exit_code(&o), 0, "{step}: {}", stderr(&o));
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(s["events"], others, "{step}: {s}");
        assert_eq!(
            s["ignored_files"],
            serde_json::json!([log.display().to_string()]),
            "{s}"
        );
        let err = stderr(&o);
        assert!(
            err.contains("changed while the run read it") && err.contains("app.jsonl"),
            "{err}"
        );
        let s = ok(&lake, &["ingest", inbox.to_str().unwrap(), "--json"]);
        assert_eq!(s["events"], 20, "{step}: {s}");
        assert_eq!(bronze_rows(&lake).len(), 20 + others, "{step}");
    }
}

/// A line over --max-line-bytes fails the run with exit 4, naming the file
/// and line, and commits nothing: found by the parser when the line ends
/// within a read, and by the reader, which stops reading, when it does not
/// (one huge line, such as a JSON array, never fills memory).
#[test]
fn a_line_over_max_line_bytes_is_rejected_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let good = |id: &str| {
        format!(
            "{{\"event_id\":\"{id}\",\"event_type\":\"t\",\
             \"event_timestamp\":\"2024-03-15T10:00:00Z\",\"user_id\":\"u\"}}\n"
        )
    };
    let big = |n: usize| {
        format!(
            "{{\"event_id\":\"big\",\"event_type\":\"t\",\"event_timestamp\":\
             \"2024-03-15T10:00:00Z\",\"user_id\":\"u\",\"properties\":{{\"x\":\"{}\"}}}}\n",
            "y".repeat(n)
        )
    };
    // Within one read: the parser finds it, with its exact length.
    let short = tmp.path().join("short.jsonl");
    let text = [good("a"), good("b"), big(3_000), good("c")].concat();
    std::fs::write(&short, &text).unwrap();
    let o = run(
        &lake,
        &["ingest", short.to_str().unwrap(), "--max-line-bytes", "1K"],
    );
    assert_eq!(exit_code(&o), 4, "{}", stderr(&o));
    let len = big(3_000).len() - 1;
    assert!(
        stderr(&o).contains(&format!(
            "short.jsonl:3: the line is longer than --max-line-bytes ({len} bytes, limit 1024)"
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(commits(&lake), 0);
    // A JSON array of 12 MiB with no newline: the reader gives up.
    let array = tmp.path().join("array.json");
    let items: Vec<String> = (0..150_000)
        .map(|i| good(&format!("e{i}")).trim().to_string())
        .collect();
    let text = [good("a"), format!("[{}]", items.join(","))].concat();
    assert!(text.len() > 12 << 20);
    std::fs::write(&array, &text).unwrap();
    let o = run(
        &lake,
        &["ingest", array.to_str().unwrap(), "--max-line-bytes", "1M"],
    );
    assert_eq!(exit_code(&o), 4, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("array.json:2: the line is longer than --max-line-bytes (at least "),
        "{err}"
    );
    assert!(err.contains("a JSON array?"), "{err}");
    assert_eq!(commits(&lake), 0);
    assert!(bronze_rows(&lake).is_empty());
    // With a higher limit (or none) the long line is an ordinary event.
    let s = ok(
        &lake,
        &[
            "ingest",
            short.to_str().unwrap(),
            "--max-line-bytes",
            "none",
            "--json",
        ],
    );
    assert_eq!(s["events"], 4, "{s}");
}

/// Every file under these lake directories, by lake-relative path.
fn files_under(
    lake: &std::path::Path,
    dirs: &[&str],
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut dirs: Vec<_> = dirs.iter().map(|d| lake.join(d)).collect();
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let rel = p.strip_prefix(lake).unwrap().to_string_lossy().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Beyond `EVLAKE_KEYS_IN_MEMORY`, ingest's event keys (what re-sends and
/// id conflicts are counted from) go to staging in sorted runs, so its
/// memory does not grow with its input. The counts, the id index and
/// every file are the same as with every key in memory, for runs that
/// repeat ids within themselves and ids already in the lake.
#[test]
fn keys_spilled_to_disk_count_as_keys_held_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let truth = generate(
        &gen_dir,
        &["--events", "20000", "--days", "6", "--seed", "7"],
    );
    let batches = generated_batches(&gen_dir, &truth);
    let (first, rest) = batches.split_at(batches.len() / 2);
    let mut outcomes = Vec::new();
    for keys in [None, Some("700")] {
        let lake = tmp.path().join(keys.unwrap_or("memory"));
        let mut counts = Vec::new();
        for (inputs, at) in [
            (first, "2024-04-01T00:00:00Z"),
            (rest, "2024-04-02T00:00:00Z"),
        ] {
            let mut args = vec!["ingest", "--json", "--max-bad-fraction", "1"];
            args.extend(["--processing-time", at]);
            args.extend(inputs.iter().map(String::as_str));
            let mut c = cmd(&lake, &args);
            c.env("EVLAKE_TRACE", "1");
            if let Some(k) = keys {
                c.env("EVLAKE_KEYS_IN_MEMORY", k);
            }
            let o = c.output().unwrap();
            assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
            assert_eq!(
                stderr(&o).contains("sorted run(s)"),
                keys.is_some(),
                "{}",
                stderr(&o)
            );
            let s: Value = serde_json::from_slice(&o.stdout).unwrap();
            counts.push(
                [
                    "resends",
                    "id_conflicts",
                    "ids_on_other_dates",
                    "partitions",
                ]
                .map(|k| s[k].clone()),
            );
        }
        outcomes.push((
            counts,
            files_under(&lake, &["bronze", "_evlake/log", "_evlake/ids"]),
        ));
    }
    let (memory, spilled) = (&outcomes[0], &outcomes[1]);
    assert_eq!(memory.0, spilled.0);
    // Both runs repeat ids: the second, ids of the first.
    for run in &memory.0 {
        assert!(run[0].as_u64().unwrap() > 0, "{:?}", run[0]);
    }
    assert!(memory.0.iter().any(|run| run[1].as_u64().unwrap() > 0));
    assert_eq!(
        memory.1.keys().collect::<Vec<_>>(),
        spilled.1.keys().collect::<Vec<_>>()
    );
    for (f, bytes) in &memory.1 {
        assert!(spilled.1[f] == *bytes, "`{f}` differs");
    }
}

/// The same inputs ingested with the same --processing-time give the same
/// lake, byte for byte: file paths, file contents and the commit, even
/// over many flushes whose files are written in parallel.
#[test]
fn an_ingest_with_a_pinned_processing_time_is_byte_for_byte_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    generate(
        &gen_dir,
        &["--events", "20000", "--days", "20", "--seed", "3"],
    );
    let batches = gen_dir.join("batches");
    let lake_files = |lake: &std::path::Path| files_under(lake, &["bronze", "_evlake/log"]);
    let mut lakes = Vec::new();
    for name in ["a", "b", "c"] {
        let lake = tmp.path().join(name);
        let o = cmd(
            &lake,
            &[
                "ingest",
                batches.to_str().unwrap(),
                "--processing-time",
                "2024-04-01T00:00:00Z",
                "--max-bad-fraction",
                "1",
            ],
        )
        // Small buffers: many flushes, each of many dates.
        .env("EVLAKE_BUFFER_MB", "1")
        .output()
        .unwrap();
        assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
        lakes.push(lake_files(&lake));
    }
    // More files than dates: several flushes, each of several dates.
    let bronze: Vec<&String> = lakes[0]
        .keys()
        .filter(|f| f.starts_with("bronze/"))
        .collect();
    let dates: std::collections::BTreeSet<&str> = bronze
        .iter()
        .map(|f| f.rsplit_once('/').unwrap().0)
        .collect();
    assert!(
        bronze.len() > dates.len() && dates.len() > 10,
        "{} files, {} dates",
        bronze.len(),
        dates.len()
    );
    for other in &lakes[1..] {
        assert_eq!(
            lakes[0].keys().collect::<Vec<_>>(),
            other.keys().collect::<Vec<_>>(),
            "the same paths"
        );
        for (f, bytes) in &lakes[0] {
            assert!(other[f] == *bytes, "`{f}` differs");
        }
    }
}

/// An input that is not a regular file (a pipe, as the shell's
/// `<(zcat x.gz)` gives, or `/dev/stdin`) can be read only once: it is
/// spooled and hashed as it is copied, so all of it is ingested, and the
/// same content given later as a file is a no-op. (It used to be hashed,
/// then read again empty: 0 events committed under the content's hash,
/// and the real file then skipped as already ingested.)
#[cfg(unix)]
#[test]
fn a_piped_input_path_is_ingested_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let file = sample("2024-03-15.jsonl");
    let text = std::fs::read(&file).unwrap();
    let o = run_with_stdin(&lake, &["ingest", "/dev/stdin", "--json"], &text);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    let lines = text.iter().filter(|b| **b == b'\n').count();
    assert_eq!(s["lines"], lines, "{s}");
    assert!(s["events"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["inputs"][0]["source"], "/dev/stdin");
    let again = ok(&lake, &["ingest", &file, "--json"]);
    assert_eq!(again["inputs"][0]["status"], "already_ingested", "{again}");
    assert_eq!(
        bronze_rows(&lake).len() as u64,
        s["events"].as_u64().unwrap()
    );
}

/// A lake inside the directory being ingested (`evlake ingest .` with the
/// default `./lake`) is not input: its log and quarantine files are .json
/// and .jsonl, and the second run used to ingest them as (bad) events. A
/// lake given as the input directory is a usage error.
#[test]
fn a_lake_inside_the_input_directory_is_not_ingested() {
    let tmp = tempfile::tempdir().unwrap();
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    std::fs::copy(sample("2024-03-16.jsonl.gz"), inbox.join("b.jsonl.gz")).unwrap();
    let lake = inbox.join("lake");
    let first = ok(&lake, &["ingest", inbox.to_str().unwrap(), "--json"]);
    assert_eq!(first["status"], "committed", "{first}");
    assert!(
        first["quarantined"].as_u64().unwrap() > 0,
        "the sample has bad lines"
    );
    assert!(std::fs::read_dir(lake.join("quarantine")).unwrap().count() > 0);
    let again = ok(&lake, &["ingest", inbox.to_str().unwrap(), "--json"]);
    assert_eq!(again["status"], "noop", "{again}");
    assert_eq!(again["inputs"].as_array().unwrap().len(), 1, "{again}");
    let o = run(&lake, &["ingest", lake.to_str().unwrap()]);
    assert_eq!(exit_code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("is an evlake lake"), "{}", stderr(&o));
    // Nor is a file or directory of the lake's own named as input: the
    // quarantine's lines are records, not events (every one would be
    // quarantined again), and the log's are commits.
    let quarantine = std::fs::read_dir(lake.join("quarantine"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let version = first["version"].clone();
    for (input, says) in [
        (quarantine, "is in the lake's own `quarantine/` directory"),
        (
            lake.join("_evlake/log"),
            "is in the lake's own `_evlake/` directory",
        ),
        // The same, reached through another path.
        (
            inbox.join("lake/../lake/quarantine"),
            "to load quarantined lines once fixed, ingest their `raw` text",
        ),
    ] {
        let o = run(
            &lake,
            &["ingest", input.to_str().unwrap(), "--max-bad-fraction", "1"],
        );
        assert_eq!(exit_code(&o), 2, "{}", stderr(&o));
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
    }
    assert_eq!(ok(&lake, &["status", "--json"])["version"], version);
    // Inputs elsewhere under the lake's root are fine.
    std::fs::create_dir(lake.join("incoming")).unwrap();
    std::fs::copy(sample("2024-03-15.jsonl"), lake.join("incoming/a.jsonl")).unwrap();
    let s = ok(
        &lake,
        &["ingest", lake.join("incoming").to_str().unwrap(), "--json"],
    );
    assert_eq!(s["status"], "committed", "{s}");
}

/// Every bronze row's `batch_id` names its input's content (blake3 of its
/// raw bytes), over many flushes of small buffers, for inputs big and
/// small. Two inputs of one size but different content are both ingested;
/// content already committed, under another name, is a no-op.
#[test]
fn every_row_carries_its_inputs_content_hash() {
    use datafusion::arrow::array::AsArray;
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let gen_dir = tmp.path().join("gen");
    generate(
        &gen_dir,
        &["--events", "20000", "--days", "20", "--seed", "5"],
    );
    let batches = gen_dir.join("batches");
    let mut files: Vec<_> = std::fs::read_dir(&batches)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    // Bigger than the 1 MiB buffer's share of a flush.
    let big = tmp.path().join("big.jsonl");
    let joined: Vec<u8> = files[..4]
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect();
    assert!(joined.len() > 256 << 10, "{} bytes", joined.len());
    std::fs::write(&big, &joined).unwrap();
    // Two inputs of one size, different content.
    let twin = tmp.path().join("twin.jsonl");
    let mut twin_text = std::fs::read(&files[4]).unwrap();
    let at = twin_text.iter().position(|b| b.is_ascii_digit()).unwrap();
    twin_text[at] = if twin_text[at] == b'9' { b'8' } else { b'9' };
    std::fs::write(&twin, &twin_text).unwrap();

    let ingest = |inputs: &[&std::path::Path]| -> Value {
        let mut args = vec!["ingest", "--json", "--max-bad-fraction", "1"];
        args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
        let o = cmd(&lake, &args)
            .env("EVLAKE_BUFFER_MB", "1")
            .output()
            .unwrap();
        assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let blake3_of = |p: &std::path::Path| {
        format!(
            "blake3:{}",
            blake3::hash(&std::fs::read(p).unwrap()).to_hex()
        )
    };
    let mut first: Vec<&std::path::Path> = files[4..].iter().map(|p| p.as_path()).collect();
    first.push(&big);
    first.push(&twin);
    let s = ingest(&first);
    let reports = s["inputs"].as_array().unwrap();
    assert_eq!(reports.len(), first.len());
    let mut expected = std::collections::BTreeMap::new();
    for (r, path) in reports.iter().zip(&first) {
        assert_eq!(r["status"], "ingested", "{r}");
        let hash = blake3_of(path);
        assert_eq!(r["hash"], hash.as_str(), "{r}");
        assert_eq!(
            r["batch_id"],
            &hash["blake3:".len().."blake3:".len() + 16],
            "{r}"
        );
        expected.insert(
            r["source"].as_str().unwrap().to_string(),
            (
                r["batch_id"].as_str().unwrap().to_string(),
                r["events"].as_u64().unwrap(),
            ),
        );
    }
    let mut seen: std::collections::BTreeMap<String, (String, u64)> = Default::default();
    for file in parquet_files(&lake.join("bronze/events")) {
        for b in read_parquet(&file) {
            let ids = b.column_by_name("batch_id").unwrap().as_string::<i32>();
            let sources = b.column_by_name("source_file").unwrap().as_string::<i32>();
            for i in 0..b.num_rows() {
                let e = seen
                    .entry(sources.value(i).to_string())
                    .or_insert_with(|| (ids.value(i).to_string(), 0));
                assert_eq!(e.0, ids.value(i), "one batch id per input");
                e.1 += 1;
            }
        }
    }
    let late: u64 = s["side_output_events"].as_u64().unwrap_or(0);
    assert_eq!(late, 0, "no side output in this run");
    assert_eq!(seen, expected);

    // The first four batches again, their content already committed (in
    // `big`) but not as files of their size, and `twin`'s content under
    // another name: skipped without a second copy.
    let copy = tmp.path().join("copy.jsonl");
    std::fs::copy(&twin, &copy).unwrap();
    let mut second: Vec<&std::path::Path> = files[..4].iter().map(|p| p.as_path()).collect();
    second.push(&copy);
    let s = ingest(&second);
    let statuses: Vec<&str> = s["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "ingested",
            "ingested",
            "ingested",
            "ingested",
            "already_ingested"
        ],
        "{s}"
    );
}

#[test]
fn a_resend_with_other_content_is_counted_as_an_id_conflict() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let line = |id: &str, ty: &str, ts: &str, props: &str| {
        format!(
            r#"{{"event_id":"{id}","event_type":"{ty}","event_timestamp":"{ts}","user_id":"u1","properties":{props}}}"#
        ) + "\n"
    };
    let t1 = "2024-03-15T10:00:00Z";
    let ingest = |name: &str, lines: &[String], pt: &str| -> (Value, String) {
        let f = tmp.path().join(name);
        std::fs::write(&f, lines.concat()).unwrap();
        let o = run(
            &lake,
            &[
                "ingest",
                f.to_str().unwrap(),
                "--json",
                "--processing-time",
                pt,
            ],
        );
        assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
        (serde_json::from_slice(&o.stdout).unwrap(), stderr(&o))
    };
    let partition = |s: &Value, date: &str| -> (u64, u64, u64) {
        let p = s["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["event_date"] == date)
            .unwrap_or_else(|| panic!("no partition {date} in {s}"));
        (
            p["resends"].as_u64().unwrap(),
            p["id_conflicts"].as_u64().unwrap(),
            p["ids_on_other_dates"].as_u64().unwrap(),
        )
    };

    // e1 sent twice as is (a re-send, no conflict); e2 a second time with
    // other properties (a conflict).
    let (s, err) = ingest(
        "a.jsonl",
        &[
            line("e1", "page_view", t1, "{}"),
            line("e1", "page_view", t1, "{}"),
            line("e2", "purchase", t1, r#"{"amount":"5.00"}"#),
            line("e2", "purchase", t1, r#"{"amount":"6.00"}"#),
        ],
        "2024-03-15T11:00:00Z",
    );
    assert_eq!(partition(&s, "2024-03-15"), (2, 1, 0), "{s}");
    assert_eq!(
        (s["resends"].as_u64(), s["id_conflicts"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(err.contains("(2 re-sent, 1 with other content)"), "{err}");
    assert!(
        err.lines().any(|l| l
            .trim_start()
            .starts_with("Warning 1 event(s) repeat an event_id")),
        "{err}"
    );

    // Against committed bronze: an exact copy of e1 and a version of e2
    // already there are not conflicts; e1 at another time of the day and
    // a third version of e2 are. e1 on another date is kept there too by
    // silver: an id on two dates.
    let (s, err) = ingest(
        "b.jsonl",
        &[
            line("e1", "page_view", t1, "{}"),
            line("e2", "purchase", t1, r#"{"amount":"6.00"}"#),
            line("e1", "page_view", "2024-03-15T10:00:01Z", "{}"),
            line("e2", "purchase", t1, r#"{"amount": "5.00"}"#),
            line("e1", "page_view", "2024-03-16T10:00:00Z", "{}"),
        ],
        "2024-03-16T11:00:00Z",
    );
    assert_eq!(partition(&s, "2024-03-15"), (4, 2, 0), "{s}");
    assert_eq!(partition(&s, "2024-03-16"), (0, 0, 1), "{s}");
    assert!(err.contains("Warning 2 event(s)"), "{err}");
    assert!(err.contains("(1 id(s) also on another date)"), "{err}");
    assert!(
        err.contains("Warning 1 event_id(s) are on another date too"),
        "{err}"
    );
    // Within one run: e3 on two dates (and twice on the second) counts
    // once, on the later date; e4 on three dates counts twice.
    let (s, _) = ingest(
        "c.jsonl",
        &[
            line("e3", "page_view", "2024-03-17T10:00:00Z", "{}"),
            line("e3", "page_view", "2024-03-16T10:00:00Z", "{}"),
            line("e3", "page_view", "2024-03-17T10:00:00Z", "{}"),
            line("e4", "page_view", "2024-03-15T11:00:00Z", "{}"),
            line("e4", "page_view", "2024-03-16T11:00:00Z", "{}"),
            line("e4", "page_view", "2024-03-17T11:00:00Z", "{}"),
        ],
        "2024-03-17T12:00:00Z",
    );
    assert_eq!(partition(&s, "2024-03-15"), (0, 0, 0), "{s}");
    assert_eq!(partition(&s, "2024-03-16"), (0, 0, 1), "{s}");
    assert_eq!(partition(&s, "2024-03-17"), (1, 0, 2), "{s}");
    let c: Value = serde_json::from_slice(
        &std::fs::read(lake.join("_evlake/log/00000000000000000002.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(c["id_conflicts"], serde_json::json!({"2024-03-15": 2}));

    // status adds them up per date, from the log.
    let st = ok(&lake, &["status", "--json"]);
    assert_eq!(st["id_conflicts"], 3, "{st}");
    assert_eq!(st["ids_on_other_dates"], 4, "{st}");
    let per_date: Vec<(String, u64, u64)> = st["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["event_date"].as_str().unwrap().to_string(),
                p["id_conflicts"].as_u64().unwrap(),
                p["ids_on_other_dates"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        per_date,
        [
            ("2024-03-15".to_string(), 3, 0),
            ("2024-03-16".to_string(), 0, 2),
            ("2024-03-17".to_string(), 0, 2)
        ]
    );
    let text = String::from_utf8(run(&lake, &["status"]).stdout).unwrap();
    assert!(
        text.contains("conflicts  3 re-sent event(s)") && text.contains("(2024-03-15: 3)"),
        "{text}"
    );
    assert!(
        text.contains("conflicts  4 event_id(s) on more than one date")
            && text.contains("(2024-03-16: 2, 2024-03-17: 2)"),
        "{text}"
    );
    // ... and the table has both kinds per date, in two columns.
    let row = |date: &str| -> Vec<String> {
        let line = text.lines().find(|l| l.starts_with(date)).unwrap();
        line.split_whitespace().map(str::to_string).collect()
    };
    assert!(
        text.lines()
            .any(|l| l.starts_with("event_date") && l.ends_with("files conflicts other_dates")),
        "{text}"
    );
    assert_eq!(row("2024-03-15")[6..], ["3", "0"], "{text}");
    assert_eq!(row("2024-03-17")[6..], ["0", "2"], "{text}");
    // The README's query for ids on several dates: dates - 1 adds up.
    let on_dates = query_csv(
        &lake,
        "SELECT event_id, count(DISTINCT event_date) AS dates FROM bronze_events \
         GROUP BY event_id HAVING count(DISTINCT event_date) > 1 ORDER BY 1",
    );
    assert_eq!(on_dates, ["e1,2", "e3,2", "e4,3"]);

    // The README's query lists them: versions - 1 adds up to the count.
    let listed = query_csv(
        &lake,
        "SELECT event_date, event_id, count(*) AS copies, \
         count(DISTINCT struct(event_type, user_id, event_timestamp, client_session_id, \
         page_url, source_system, properties, extra)) AS versions \
         FROM bronze_events GROUP BY event_date, event_id HAVING versions > 1 ORDER BY 1, 2",
    );
    assert_eq!(listed, ["2024-03-15,e1,4,2", "2024-03-15,e2,4,3"]);

    // Silver keeps the first copy of each id on the date.
    ok(
        &lake,
        &["silver", "--processing-time", "2024-03-16T12:00:00Z"],
    );
    let kept = query_csv(
        &lake,
        "SELECT event_date, event_id, event_timestamp, properties FROM events ORDER BY 1, 2",
    );
    assert_eq!(
        kept[..3],
        [
            "2024-03-15,e1,2024-03-15T10:00:00Z,{}",
            r#"2024-03-15,e2,2024-03-15T10:00:00Z,"{""amount"":""5.00""}""#,
            "2024-03-15,e4,2024-03-15T11:00:00Z,{}",
        ]
    );
    assert_eq!(kept.iter().filter(|r| r.contains(",e1,")).count(), 2);
}

/// `(event_id hash, date)` of the entries of every committed id index
/// file (each entry also holds the row's content hash).
fn index_entries(lake: &std::path::Path) -> (usize, std::collections::BTreeSet<(u64, i32)>) {
    let state = evlake::log::LakeState::load(&evlake::lake::Lake::new(lake)).unwrap();
    let files: Vec<String> = state
        .partitions(evlake::ids::TABLE)
        .flat_map(|(_, p)| p.files.keys().cloned())
        .collect();
    let on_disk = std::fs::read_dir(lake.join("_evlake/ids")).unwrap().count();
    assert_eq!(on_disk, files.len(), "index files on disk vs committed");
    let mut all = std::collections::BTreeSet::new();
    for rel in &files {
        let b = std::fs::read(lake.join(rel)).unwrap();
        assert_eq!(&b[..8], b"EVLIDX2\n");
        let n = u64::from_le_bytes(b[8..16].try_into().unwrap()) as usize;
        assert_eq!(b.len(), 16 + 20 * n);
        let mut prev = None;
        for e in b[16..].chunks(20) {
            let entry = (
                u64::from_le_bytes(e[..8].try_into().unwrap()),
                i32::from_le_bytes(e[8..12].try_into().unwrap()),
                u64::from_le_bytes(e[12..].try_into().unwrap()),
            );
            assert!(prev < Some(entry), "{rel}: not sorted and distinct");
            prev = Some(entry);
            all.insert((entry.0, entry.1));
        }
    }
    (files.len(), all)
}

/// `ingest FILE --json` that must succeed and say it rebuilds the id
/// index (a warning, so not through `ok`): the summary and stderr. With
/// 4 keys in memory, so a rebuild of more entries spills them to disk.
fn index_rebuilding_ingest(
    lake: &std::path::Path,
    file: &std::path::Path,
    at: &str,
) -> (Value, String) {
    let f = file.to_str().unwrap();
    let o = cmd(lake, &["ingest", f, "--json", "--processing-time", at])
        .env("EVLAKE_KEYS_IN_MEMORY", "4")
        .env("EVLAKE_TRACE", "1")
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("rebuilding the id index from bronze"), "{err}");
    (serde_json::from_slice(&o.stdout).unwrap(), err)
}

/// A lake whose id index is in the older format (pairs without content
/// hashes) gets it rebuilt by its next ingest, which says so and counts
/// against bronze as the new index would.
#[test]
fn an_id_index_of_the_older_format_is_rebuilt_from_bronze() {
    use crate::silver::ev;
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let a = ev("a1", "page_view", "2024-03-15T10:00:00Z", "u1");
    let b = ev("b1", "page_view", "2024-03-15T11:00:00Z", "u2");
    ingest_lines(
        &lake,
        tmp.path(),
        "first.jsonl",
        &[a.clone(), b.clone()],
        "2024-03-16T00:00:00Z",
    );
    let (files, before) = index_entries(&lake);
    assert_eq!((files, before.len()), (1, 2));
    for f in std::fs::read_dir(lake.join("_evlake/ids")).unwrap() {
        let p = f.unwrap().path();
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[..8].copy_from_slice(b"EVLIDX1\n");
        std::fs::write(&p, bytes).unwrap();
    }
    // a1 again (a re-send), b1 with other content (a conflict).
    let f = tmp.path().join("second.jsonl");
    let b2 = ev("b1", "purchase", "2024-03-15T11:00:00Z", "u2");
    std::fs::write(&f, [a, b2].concat()).unwrap();
    let (s, err) = index_rebuilding_ingest(&lake, &f, "2024-03-16T01:00:00Z");
    assert!(err.contains("older evlake"), "{err}");
    assert_eq!(
        (s["resends"].as_u64(), s["id_conflicts"].as_u64()),
        (Some(2), Some(1)),
        "{s}"
    );
    // Rebuilt in the new format (`index_entries` checks it), same pairs.
    let (files, after) = index_entries(&lake);
    assert_eq!((files, after), (1, before));
}

#[test]
fn id_conflicts_over_many_ingests_match_the_inputs_and_the_index_stays_small() {
    use std::collections::{BTreeMap, BTreeSet};
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    // A deterministic mix: ids from a small pool, so they come again as
    // exact re-sends, with other content (type) and on other dates.
    let mut seed: u64 = 7;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let mut versions: BTreeMap<(i32, String), BTreeSet<String>> = BTreeMap::new();
    let mut batches = Vec::new();
    for b in 0..24 {
        let mut lines = Vec::new();
        for _ in 0..40 {
            let id = format!("id{}", next(300));
            let day = 10 + next(3) as i32;
            let ty = ["page_view", "search"][(next(10) == 0) as usize];
            lines.push(format!(
                r#"{{"event_id":"{id}","event_type":"{ty}","event_timestamp":"2024-03-{day}T08:00:00Z","user_id":"u1","properties":{{}}}}"#
            ) + "\n");
            versions
                .entry((day, id))
                .or_default()
                .insert(ty.to_string());
        }
        batches.push((format!("b{b:02}.jsonl"), lines));
    }
    let want_conflicts: usize = versions.values().map(|v| v.len() - 1).sum();
    let mut dates_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, id) in versions.keys() {
        *dates_of.entry(id.as_str()).or_default() += 1;
    }
    let want_other_dates: usize = dates_of.values().map(|n| n - 1).sum();
    assert!(want_conflicts > 10 && want_other_dates > 50);

    let ingest = |lake: &std::path::Path, name: &str, lines: &[String], i: usize| {
        let pt = format!("2024-03-20T{:02}:00:00Z", i % 24);
        ingest_lines(lake, tmp.path(), name, lines, &pt);
    };
    for (i, (name, lines)) in batches.iter().enumerate().take(23) {
        ingest(&lake, name, lines, i);
    }
    // Before the last batch: a copy of the lake as an evlake without the
    // index wrote it (no index files, no index marks in the log).
    let old = tmp.path().join("old");
    copy_dir(&lake, &old);
    std::fs::remove_dir_all(old.join("_evlake/ids")).unwrap();
    for e in std::fs::read_dir(old.join("_evlake/log")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.contains("checkpoint") {
            std::fs::remove_file(&p).unwrap();
            continue;
        }
        let mut c: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let o = c.as_object_mut().unwrap();
        o.remove("ids_indexed");
        o.remove("ids_rebuilt");
        o.remove("id_conflicts");
        o.remove("ids_on_other_dates");
        for k in ["add", "remove"] {
            if let Some(a) = o.get_mut(k).and_then(|a| a.as_array_mut()) {
                a.retain(|f| f["table"] != evlake::ids::TABLE);
            }
        }
        std::fs::write(&p, serde_json::to_vec(&c).unwrap()).unwrap();
    }
    let (name, lines) = &batches[23];
    ingest(&lake, name, lines, 23);
    let st = ok(&lake, &["status", "--json"]);
    assert_eq!(st["id_conflicts"], want_conflicts as u64, "{st}");
    assert_eq!(st["ids_on_other_dates"], want_other_dates as u64, "{st}");
    // The text names the dates (3 here; more would point at the column).
    let named = |key: &str| {
        let parts = st["partitions"].as_array().unwrap();
        let dates: Vec<String> = parts
            .iter()
            .filter(|p| p[key].as_u64().unwrap() > 0)
            .map(|p| format!("{}: {}", p["event_date"].as_str().unwrap(), p[key]))
            .collect();
        assert_eq!(dates.len(), 3);
        dates.join(", ")
    };
    let text = String::from_utf8(run(&lake, &["status"]).stdout).unwrap();
    assert!(
        text.contains(&format!("left out of silver ({})", named("id_conflicts")))
            && text.contains(&format!(
                "kept on each by silver ({})",
                named("ids_on_other_dates")
            )),
        "{text}"
    );

    // The index holds exactly bronze's (id, date) pairs, in few files.
    let (files, entries) = index_entries(&lake);
    let want: BTreeSet<(u64, i32)> = versions
        .keys()
        .map(|(day, id)| {
            let date = evlake::time::parse_date32(&format!("2024-03-{day}")).unwrap();
            (evlake::bronze::event_id_hash(id), date)
        })
        .collect();
    assert_eq!(entries, want);
    assert!(
        (2..=6).contains(&files),
        "{files} index files after 24 ingests"
    );

    // The lake without an index: its next ingest builds one from bronze,
    // and counts the last batch as the lake with the index did.
    let f = tmp.path().join(name);
    let o = ok(
        &old,
        &[
            "ingest",
            f.to_str().unwrap(),
            "--processing-time",
            "2024-03-20T23:00:00Z",
            "--json",
        ],
    );
    let (old_files, old_entries) = index_entries(&old);
    assert_eq!(old_files, 1);
    assert_eq!(old_entries, want);
    // Its counts for this batch equal the other lake's last commit's.
    let commit = |l: &std::path::Path| -> Value {
        let v = evlake::log::latest_version(&evlake::lake::Lake::new(l)).unwrap();
        serde_json::from_slice(&std::fs::read(l.join(format!("_evlake/log/{v:020}.json"))).unwrap())
            .unwrap()
    };
    let (a, b) = (commit(&lake), commit(&old));
    assert_eq!(a["id_conflicts"], b["id_conflicts"]);
    assert_eq!(a["ids_on_other_dates"], b["ids_on_other_dates"]);
    assert_eq!(a["resends"], b["resends"]);
    assert_eq!(b["ids_rebuilt"], true);
    let resends: u64 = a["resends"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(o["resends"], resends);

    // An index file deleted by hand: the next ingest says so, rebuilds the
    // index from bronze and counts as before (e1x is on the 10th already).
    let (_, before) = index_entries(&lake);
    let state = evlake::log::LakeState::load(&evlake::lake::Lake::new(&lake)).unwrap();
    let victim = state
        .partitions(evlake::ids::TABLE)
        .flat_map(|(_, p)| p.files.keys().cloned())
        .next()
        .unwrap();
    std::fs::remove_file(lake.join(&victim)).unwrap();
    let f = tmp.path().join("again.jsonl");
    let id = versions.keys().find(|(d, _)| *d == 10).unwrap().1.clone();
    std::fs::write(
        &f,
        format!(
            r#"{{"event_id":"{id}","event_type":"page_view","event_timestamp":"2024-03-13T08:00:00Z","user_id":"u1","properties":{{}}}}"#
        ) + "\n",
    )
    .unwrap();
    let (s, err) = index_rebuilding_ingest(&lake, &f, "2024-03-21T00:00:00Z");
    assert!(err.contains("index entries spilled"), "{err}");
    assert_eq!(s["ids_on_other_dates"], 1, "{s}");
    let (files, after) = index_entries(&lake);
    assert_eq!(files, 1);
    let mut want_after = before;
    want_after.insert((
        evlake::bronze::event_id_hash(&id),
        evlake::time::parse_date32("2024-03-13").unwrap(),
    ));
    assert_eq!(after, want_after);
}

/// A re-run over an inbox that keeps its files skips the ingested ones
/// without reading them (the lake's input-hash cache: path, inode, size,
/// modification and change times); a file rewritten in place, even to the
/// same size with its old modification time back, is read and ingested;
/// a file changed within 2 s of its hash is read again next time; a
/// damaged cache is ignored.
#[test]
fn a_rerun_skips_unchanged_ingested_files_unread_and_reads_rewritten_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let event = |id: &str| {
        format!(
            "{{\"event_id\":\"{id}\",\"event_type\":\"page_view\",\"user_id\":\"u1\",\"event_timestamp\":\"2024-03-15T10:00:00Z\"}}\n"
        )
    };
    let file = inbox.join("a.jsonl");
    std::fs::write(&file, event("e1")).unwrap();
    let ingest = || {
        let r = ok(
            &lake,
            &[
                "ingest",
                inbox.to_str().unwrap(),
                "--processing-time",
                "2024-03-16T00:00:00Z",
                "--json",
            ],
        );
        let i = &r["inputs"][0];
        (
            i["status"].as_str().unwrap().to_string(),
            i["hash_cached"].as_bool().unwrap(),
        )
    };
    assert_eq!(ingest(), ("ingested".into(), false));
    // Changed just now: not trusted by its times yet, so read again.
    assert_eq!(ingest(), ("already_ingested".into(), false));
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(ingest(), ("already_ingested".into(), false));
    // Recorded now: skipped unread.
    assert_eq!(ingest(), ("already_ingested".into(), true));
    assert_eq!(ingest(), ("already_ingested".into(), true));

    // Rewritten in place to the same size, its modification time put back.
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, event("e2")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), mtime);
    assert_eq!(ingest(), ("ingested".into(), false));
    assert_eq!(
        query_csv(&lake, "SELECT event_id FROM bronze_events ORDER BY 1"),
        ["e1", "e2"]
    );

    // A damaged cache is an empty one.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let cache = lake.join("_evlake/input-hashes.json");
    assert!(cache.exists());
    std::fs::write(&cache, b"{torn").unwrap();
    assert_eq!(ingest(), ("already_ingested".into(), false));
    assert_eq!(ingest(), ("already_ingested".into(), true));
}

/// `status` and `lateness` list the newest 30 dates and say how many older
/// ones they left out; `--all` lists every one, and `--json` (and
/// `lateness`'s CSV) always has them all.
#[test]
fn status_and_lateness_list_the_newest_dates_unless_all() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let input = tmp.path().join("days.jsonl");
    let day = |i: u32| {
        let d = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Days::new(i.into());
        d.format("%Y-%m-%d").to_string()
    };
    let line = |i: u32, event_type: &str| {
        format!(
            "{{\"event_id\":\"e{i}\",\"event_type\":\"{event_type}\",\
             \"event_timestamp\":\"{}T12:00:00Z\",\"user_id\":\"u1\"}}\n",
            day(i)
        )
    };
    // On the 4 oldest dates an id comes again with other content: an id
    // conflict on more dates than the `conflicts` line names.
    let lines: String = (0..40)
        .map(|i| line(i, "page_view"))
        .chain((0..4).map(|i| line(i, "click")))
        .collect();
    std::fs::write(&input, lines).unwrap();
    ok(
        &lake,
        &[
            "ingest",
            input.to_str().unwrap(),
            "--processing-time",
            "2024-02-10T00:00:00Z",
        ],
    );
    let listed = |args: &[&str]| -> Vec<String> {
        let o = run(&lake, args);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("2024-") || l.starts_with("..."))
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect()
    };
    let text = String::from_utf8(run(&lake, &["status"]).stdout).unwrap();
    assert!(
        text.contains("...          10 older date(s), 2024-01-01..2024-01-10: `evlake status --all` lists them"),
        "{text}"
    );
    let newest: Vec<String> = std::iter::once("...".to_string())
        .chain((10..40).map(day))
        .collect();
    assert_eq!(listed(&["status"]), newest);
    // The conflicts are on dates the table leaves out: the line says where
    // they are listed.
    assert!(
        text.contains("(on 4 dates: the `conflicts` column of `evlake status --all`)"),
        "{text}"
    );
    let all = String::from_utf8(run(&lake, &["status", "--all"]).stdout).unwrap();
    assert!(
        all.contains("(on 4 dates: the `conflicts` column below)"),
        "{all}"
    );
    assert_eq!(
        listed(&["status", "--all"]),
        (0..40).map(day).collect::<Vec<_>>()
    );
    let s = ok(&lake, &["status", "--json"]);
    assert_eq!(s["partitions"].as_array().unwrap().len(), 40);
    // `lateness` lists its rows the same way; its histogram counts all 44
    // events (bronze keeps both copies of a conflicting id).
    let text = String::from_utf8(run(&lake, &["lateness"]).stdout).unwrap();
    assert!(text.contains(" of 44 events"), "{text}");
    // What late means, on the first line: not how long after, but after
    // the date's partition closed.
    assert!(
        text.contains("late: arrived after its date's partition closed"),
        "{text}"
    );
    assert!(
        text.contains("...          10 older date(s), 2024-01-01..2024-01-10: `evlake lateness --all` lists them"),
        "{text}"
    );
    assert_eq!(listed(&["lateness"]), newest);
    assert_eq!(
        listed(&["lateness", "--all"]),
        (0..40).map(day).collect::<Vec<_>>()
    );
    let csv = String::from_utf8(run(&lake, &["lateness", "--format", "csv"]).stdout).unwrap();
    assert_eq!(csv.lines().count(), 41, "a header and every date: {csv}");
}

/// A `\uXXXX` surrogate outside a pair is JSON syntax but not text: silver's
/// JSON functions cannot decode a `properties` holding one, so its typed
/// columns would all be NULL without a word. Ingest quarantines such a line,
/// naming the escape and the member; a surrogate pair is a character.
#[test]
fn an_unpaired_surrogate_is_quarantined_not_typed_as_null() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let f = tmp.path().join("s.jsonl");
    let line = |id: &str, currency: &str| {
        format!(
            "{{\"event_id\":\"{id}\",\"event_type\":\"purchase\",\"event_timestamp\":\"2024-03-15T10:00:00Z\",\"user_id\":\"u1\",\"properties\":{{\"amount\":10,\"currency\":\"{currency}\"}}}}\n"
        )
    };
    let bad = line("p2", r"\ud800");
    let at = bad.find(r"\ud800").unwrap();
    let body = [line("p1", "USD"), bad, line("p3", r"\ud83d\ude00")].concat();
    std::fs::write(&f, body).unwrap();
    let o = run_says(
        &lake,
        &["run", f.to_str().unwrap(), "--max-bad-fraction", "0.5"],
        0,
        &format!(
            r"s.jsonl:2: invalid_json: unpaired surrogate escape `\ud800` in `properties` at offset {at}:"
        ),
    );
    assert!(!stderr(&o).contains("could not be typed"), "{}", stderr(&o));
    let o = run(
        &lake,
        &[
            "query",
            "SELECT event_id, currency FROM purchases ORDER BY event_id",
            "--format",
            "csv",
        ],
    );
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "event_id,currency\np1,USD\np3,\u{1F600}\n"
    );
    let o = run(
        &lake,
        &[
            "query",
            "SELECT line, reason FROM quarantine",
            "--format",
            "csv",
        ],
    );
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "line,reason\n2,invalid_json\n"
    );
}

/// `ingest -` with nothing piped in reads what is typed on the terminal:
/// it says so (and how to end), rather than seem to hang. A pipe gets no
/// such line. The terminal is a pseudo-terminal from Python's `pty`.
#[test]
fn stdin_on_a_terminal_says_it_is_reading_what_is_typed() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let line = r#"{"event_id":"t1","event_type":"x","event_timestamp":"2024-03-10T10:00:00Z","user_id":"u"}"#;
    // Under -q too: a terminal waiting for input needs a person.
    let text = on_a_terminal(
        &lake,
        &[
            "-q",
            "ingest",
            "-",
            "--processing-time",
            "2024-03-11T00:00:00Z",
        ],
        line.as_bytes(),
    );
    assert!(
        text.contains(
            "Reading events typed on the terminal (`-` is stdin): end with Ctrl-D, or Ctrl-C \
             to stop without committing"
        ),
        "{text}"
    );
    assert_eq!(bronze_rows(&lake).len(), 1, "{text}");
    let o = run_with_stdin(
        &tmp.path().join("piped"),
        &["ingest", "-", "--processing-time", "2024-03-11T00:00:00Z"],
        line.as_bytes(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("typed on the terminal"),
        "{}",
        stderr(&o)
    );
}

/// A key repeated inside `properties` (or any nested object) with another
/// value means two things: silver's JSON functions and DuckDB read the
/// first, Python's `json` the last. Ingest quarantines such a line, naming
/// the key's path and both values, as it does a top-level field given
/// twice; a repeat with the same value is kept.
#[test]
fn a_key_repeated_inside_properties_is_quarantined_naming_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let f = tmp.path().join("r.jsonl");
    let line = |id: &str, props: &str, more: &str| {
        format!(
            "{{\"event_id\":\"{id}\",\"event_type\":\"purchase\",\"event_timestamp\":\"2024-03-15T10:00:00Z\",\"user_id\":\"u1\",\"properties\":{props}{more}}}\n"
        )
    };
    // 40 keys before the repeat: past the scanner's flat array of 32.
    let wide: String = (1..=40).map(|i| format!("\"k{i}\":{i},")).collect();
    let body = [
        line("p1", r#"{"amount":"10.00","currency":"USD"}"#, ""),
        line(
            "p2",
            r#"{"amount":"1.00","currency":"USD","amount":"2.00"}"#,
            "",
        ),
        line(
            "p3",
            r#"{"amount":"5.00","amount":"5.00","currency":"USD"}"#,
            "",
        ),
        line(
            "p4",
            r#"{"amount":"3.00","items":[{"sku":"a"},{"sku":"b","sku":"c"}]}"#,
            "",
        ),
        line(
            "p5",
            r#"{"amount":"4.00"}"#,
            r#","campaign":"x","campaign":"y""#,
        ),
        line(
            "p6",
            &format!("{{{wide}\"amount\":\"6.00\",\"k3\":33}}"),
            "",
        ),
        line(
            "p7",
            &format!("{{{wide}\"amount\":\"7.00\",\"currency\":\"USD\"}}"),
            "",
        ),
    ]
    .concat();
    std::fs::write(&f, body).unwrap();
    let o = run_says(
        &lake,
        &["run", f.to_str().unwrap(), "--max-bad-fraction", "0.9"],
        0,
        r#"r.jsonl:2: conflicting_fields: `properties.amount` is given twice, as "1.00" and as "2.00""#,
    );
    for said in [
        r#"r.jsonl:4: conflicting_fields: `properties.items[1].sku` is given twice, as "b" and as "c""#,
        r#"r.jsonl:5: conflicting_fields: `campaign` is given twice, as "x" and as "y""#,
        r#"r.jsonl:6: conflicting_fields: `properties.k3` is given twice, as 3 and as 33"#,
    ] {
        assert!(stderr(&o).contains(said), "{said}\n{}", stderr(&o));
    }
    let csv = |sql: &str| {
        let o = run(&lake, &["query", sql, "--format", "csv"]);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(
        csv("SELECT event_id, amount FROM purchases ORDER BY event_id"),
        "event_id,amount\np1,10.00\np3,5.00\np7,7.00\n"
    );
    assert_eq!(
        csv("SELECT line, reason FROM quarantine ORDER BY line"),
        "line,reason\n2,conflicting_fields\n4,conflicting_fields\n5,conflicting_fields\n6,conflicting_fields\n"
    );
}

/// `ingest --dry-run` reads and checks its inputs and reports what it
/// would commit, and changes nothing: no lake left behind where there was
/// none, no commit, no quarantine, no hash remembered (the real ingest
/// after it reads the input); one that would be rejected exits 4.
#[test]
fn an_ingest_dry_run_reports_what_it_would_commit_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let input = sample("2024-03-19.jsonl");
    let plan = ok(&lake, &["ingest", &input, "--dry-run", "--json"]);
    assert_eq!(plan["status"], "dry_run", "{plan}");
    assert!(!lake.exists(), "a dry run leaves no lake behind");
    ok(&lake, &["ingest", &sample("2024-03-15.jsonl")]);
    let before = files_on_disk(&lake);
    let versions = commits(&lake);
    let plan = ok(&lake, &["ingest", &input, "--dry-run", "--json"]);
    assert_eq!(plan["status"], "dry_run", "{plan}");
    assert_eq!(files_on_disk(&lake), before);
    assert_eq!(commits(&lake), versions);
    run_says(
        &lake,
        &["ingest", &input, "--dry-run", "--max-bad-fraction", "0.001"],
        4,
        "data rejected",
    );
    assert_eq!(files_on_disk(&lake), before);
    // What the dry run said is what the ingest then commits.
    let real = ok(&lake, &["ingest", &input, "--json"]);
    assert_eq!(real["status"], "committed", "{real}");
    for field in [
        "events",
        "quarantined",
        "late_events",
        "watermark",
        "partitions",
    ] {
        assert_eq!(plan[field], real[field], "{field}: {plan} vs {real}");
    }
}

/// A file in an inbox that the user evlake runs as may not read (a
/// producer's file left mode 0600), or a subdirectory it may not list,
/// stopped every run with exit 1 and nothing committed, until someone
/// fixed it: a walk now passes it over with an `Ignored` line saying so,
/// and ingests the rest. Named as an
/// input, it is still an error. (Root reads any file: as root, the test
/// runs evlake as `nobody` through `setpriv`.)
#[test]
fn a_walked_file_evlake_may_not_read_is_passed_over() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    let root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
    // The binary where `nobody` can run it (a link, else a copy).
    let exe = dir.join("evlake");
    if std::fs::hard_link(bin(), &exe).is_err() {
        std::fs::copy(bin(), &exe).unwrap();
    }
    let evlake = |args: &[&str]| {
        let mut c = if root {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&exe);
            c
        } else {
            std::process::Command::new(&exe)
        };
        c.current_dir(dir)
            .env("HOME", dir)
            .env_remove("EVLAKE_LAKE")
            .args(["--lake", "lake"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    if root && evlake(&["--version"]).status.code() != Some(0) {
        eprintln!("skipped: running as root, and `setpriv` cannot run evlake as nobody");
        return;
    }
    let inbox = dir.join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    std::fs::set_permissions(&inbox, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (name, mode) in [("ok.jsonl", 0o644), ("secret.jsonl", 0o600)] {
        let f = inbox.join(name);
        std::fs::write(
            &f,
            crate::silver::ev(name, "page_view", "2024-03-15T10:00:00Z", "u"),
        )
        .unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // And a subdirectory it may not list: passed over too.
    let private = inbox.join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::write(
        private.join("p.jsonl"),
        crate::silver::ev("p", "page_view", "2024-03-15T10:00:00Z", "u"),
    )
    .unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    // (Mode 0600 and another owner: as the test's own user, no bits at all.)
    if !root {
        for f in [inbox.join("secret.jsonl"), private.clone()] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o000)).unwrap();
        }
    }
    let o = evlake(&["ingest", "inbox", "--json"]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "Ignored inbox/secret.jsonl: cannot be opened: permission denied (evlake runs as \
             a user who may not read it)"
        ),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains(
            "Ignored inbox/private: a directory that cannot be listed: permission denied"
        ),
        "{}",
        stderr(&o)
    );
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["status"], "committed", "{s}");
    assert_eq!(s["events"], 1, "{s}");
    assert_eq!(
        s["ignored_files"],
        serde_json::json!(["inbox/private", "inbox/secret.jsonl"])
    );
    let o = evlake(&["ingest", "inbox/secret.jsonl"]);
    assert_eq!(exit_code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("inbox/secret.jsonl`: Permission denied"),
        "{}",
        stderr(&o)
    );
    // A lake the user may read but not write (another user's): readers
    // work, and a writer's error says why it needs more.
    std::fs::set_permissions(
        dir.join("lake/_evlake/lock"),
        std::fs::Permissions::from_mode(0o444),
    )
    .unwrap();
    let o = evlake(&[
        "query",
        "SELECT count(*) FROM bronze_events",
        "--format",
        "csv",
    ]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    for args in [&["run"][..], &["ingest", "inbox", "--dry-run"]] {
        let o = evlake(args);
        assert_eq!(exit_code(&o), 1, "{}", stderr(&o));
        assert!(
            stderr(&o).contains(
                "(writers, and their dry runs, take the lake's lock, which the user this runs \
                 as may not write: run it as the lake's owner"
            ),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

/// `--processing-time now` is the clock's time, as `--as-of now` is; a
/// pin more than a day ahead of the clock (most often a typo, `2204`
/// for `2024`) is taken, with one Warning: the commit keeps it.
#[test]
fn processing_time_now_and_a_pin_ahead_of_the_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let f = tmp.path().join("b.jsonl");
    std::fs::write(
        &f,
        crate::silver::ev("e1", "page_view", "2024-03-15T10:00:00Z", "u"),
    )
    .unwrap();
    let before = chrono::Utc::now();
    let s = ok(
        &lake,
        &[
            "ingest",
            f.to_str().unwrap(),
            "--processing-time",
            "now",
            "--json",
        ],
    );
    let pt = chrono::DateTime::parse_from_rfc3339(s["processing_time"].as_str().unwrap()).unwrap();
    assert!(pt >= before && pt <= chrono::Utc::now(), "{s}");
    std::fs::write(
        &f,
        crate::silver::ev("e2", "page_view", "2024-03-15T11:00:00Z", "u"),
    )
    .unwrap();
    let o = run(
        &lake,
        &[
            "run",
            f.to_str().unwrap(),
            "--processing-time",
            "2204-03-16T02:00:00Z",
        ],
    );
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(
        err.matches("--processing-time 2204-03-16T02:00:00Z is ")
            .count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("ahead of this machine's clock: the commit keeps it"),
        "{err}"
    );
    // A pin in the past says nothing of the kind.
    let o = run(&lake, &["run", "--processing-time", "2024-03-16T02:00:00Z"]);
    assert!(!stderr(&o).contains("ahead of"), "{}", stderr(&o));
}

/// A flush writes a file per date and queues each for a background
/// fsync, which holds it open: the queue was unbounded, so a backfill of
/// a few thousand dates outran the disk and failed with a bare "Too many
/// open files" under a low limit of open files. The queue is bounded
/// now; 2,000 dates ingest under `ulimit -n 64`.
#[test]
fn a_backfill_of_thousands_of_dates_stays_within_the_open_files_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let f = tmp.path().join("backfill.jsonl");
    let start = chrono::NaiveDate::from_ymd_opt(2015, 1, 1).unwrap();
    let lines: String = (0..2000)
        .map(|i| {
            let day = start + chrono::Duration::days(i);
            crate::silver::ev(
                &format!("b{i}"),
                "page_view",
                &format!("{day}T10:00:00Z"),
                "u",
            )
        })
        .collect();
    std::fs::write(&f, lines).unwrap();
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" --lake \"$1\" ingest \"$2\" --processing-time 2026-01-01T00:00:00Z --json")
        .arg(bin())
        .arg(&lake)
        .arg(&f)
        .env_remove("EVLAKE_LAKE")
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["events"], 2000, "{s}");
    assert_eq!(
        query_csv(
            &lake,
            "SELECT count(DISTINCT event_date) FROM bronze_events"
        ),
        ["2000"]
    );
}

/// A file a directory walk listed that another consumer of the inbox
/// moves away before the run reads it (after the listing, or after the
/// hash pass) is passed over with an `Ignored` line, and the rest is
/// committed: the run used to fail on "No such file or directory".
#[test]
fn a_walked_file_moved_away_mid_run_is_passed_over() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let day = |d: &str| {
        let path = inbox.join(format!("2024-03-{d}.jsonl"));
        let ts = format!("2024-03-{d}T10:00:00Z");
        std::fs::write(
            &path,
            crate::silver::ev(&format!("e{d}"), "page_view", &ts, "u"),
        )
        .unwrap();
        path
    };
    let mut expected = 0;
    for (step, keep, gone) in [("listed", "15", "19"), ("hashed", "17", "18")] {
        let (keep, gone) = (day(keep), day(gone));
        let (child, go) = spawn_paused(
            &lake,
            &["ingest", inbox.to_str().unwrap(), "--json"],
            step,
            tmp.path(),
        );
        std::fs::remove_file(&gone).unwrap();
        std::fs::write(&go, b"").unwrap();
        let o = child.wait_with_output().unwrap();
        assert_eq!(exit_code(&o), 0, "{step}: {}", stderr(&o));
        let gone = gone.file_name().unwrap().to_str().unwrap();
        assert!(
            stderr(&o).contains(&format!(
                "{gone}: vanished after the run listed it (moved or deleted meanwhile)"
            )),
            "{step}: {}",
            stderr(&o)
        );
        let s: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(
            s["ignored_files"][0].as_str().unwrap().ends_with(gone),
            "{s}"
        );
        let read: Vec<&str> = s["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["status"] == "ingested")
            .map(|i| i["source"].as_str().unwrap())
            .collect();
        assert_eq!(read, [keep.to_str().unwrap()], "{step}: {s}");
        assert_eq!(s["events"], 1, "{s}");
        expected += 1;
        assert_eq!(bronze_rows(&lake).len(), expected);
        std::fs::remove_file(&go).unwrap();
    }
}

/// An event type that differs from one silver reads only in case or
/// separators is ingested as sent, and the run warns that no typed table
/// nor gold count reads it (it would otherwise vanish from the numbers
/// without a word).
#[test]
fn a_type_like_a_known_one_but_for_case_is_warned_of() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let file = tmp.path().join("e.jsonl");
    let ev = crate::silver::ev;
    let lines = [
        ev("a1", "purchase", "2024-03-15T10:00:00Z", "u1"),
        ev("a2", "Purchase", "2024-03-15T10:01:00Z", "u1"),
        ev("a3", "Purchase", "2024-03-15T10:02:00Z", "u2"),
        ev("a4", "addToCart", "2024-03-15T10:03:00Z", "u2"),
        ev("a5", "page_view", "2024-03-15T10:04:00Z", "u2"),
    ];
    std::fs::write(&file, lines.concat()).unwrap();
    let o = run(
        &lake,
        &[
            "run",
            file.to_str().unwrap(),
            "--processing-time",
            "2024-03-16T00:00:00Z",
        ],
    );
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "Warning 3 event(s) have a type that differs from one silver reads only in case or \
             separators: \"Purchase\" (2) for `purchase`, \"addToCart\" (1) for `add_to_cart`."
        ),
        "{}",
        stderr(&o)
    );
    // As sent: in bronze and events, in no typed table.
    assert_eq!(
        crate::silver::query_csv(
            &lake,
            "SELECT (SELECT count(*) FROM events) AS e, (SELECT count(*) FROM purchases) AS p, \
             (SELECT count(*) FROM cart_adds) AS c, (SELECT purchases FROM daily_metrics) AS d"
        ),
        ["5,1,0,1"]
    );
    let retry = tmp.path().join("f.jsonl");
    std::fs::write(&retry, ev("b1", "purchase ", "2024-03-15T11:00:00Z", "u3")).unwrap();
    let s = ok(&lake, &["ingest", retry.to_str().unwrap(), "--json"]);
    assert_eq!(
        s["near_known_types"],
        serde_json::json!([{"event_type": "purchase ", "known": "purchase", "events": 1}]),
        "{s}"
    );
    // Known types, and others, are not warned of.
    let fine = tmp.path().join("g.jsonl");
    std::fs::write(&fine, ev("c1", "video_play", "2024-03-15T12:00:00Z", "u3")).unwrap();
    let s = ok(&lake, &["ingest", fine.to_str().unwrap(), "--json"]);
    assert!(s.get("near_known_types").is_none(), "{s}");
    // A type the lake's own SQL names is read on purpose: no warning
    // of it (a typed table's, a state model's), the others still.
    std::fs::create_dir_all(lake.join("typed")).unwrap();
    std::fs::write(
        lake.join("typed/big_purchases.sql"),
        "SELECT event_id, session_id, event_date, 0 AS _warnings FROM events \
         WHERE event_type IN ('purchase', 'Purchase')",
    )
    .unwrap();
    std::fs::create_dir_all(lake.join("models")).unwrap();
    std::fs::write(
        lake.join("models/cart_sizes.sql"),
        "-- delta\nSELECT user_id, count(*) AS n FROM events WHERE event_type = 'addToCart' \
         GROUP BY user_id\n-- combine\nSELECT user_id, sum(n) AS n FROM delta GROUP BY user_id\n",
    )
    .unwrap();
    let again = tmp.path().join("h.jsonl");
    let lines = [
        ev("d1", "Purchase", "2024-03-15T13:00:00Z", "u4"),
        ev("d2", "addToCart", "2024-03-15T13:01:00Z", "u4"),
        ev("d3", "Signup", "2024-03-15T13:02:00Z", "u4"),
    ];
    std::fs::write(&again, lines.concat()).unwrap();
    let s = ok(&lake, &["ingest", again.to_str().unwrap(), "--json"]);
    assert_eq!(
        s["near_known_types"],
        serde_json::json!([{"event_type": "Signup", "known": "signup", "events": 1}]),
        "{s}"
    );
}
