//! `evlake retract`: an input ingested by mistake taken back.

use std::path::Path;

use serde_json::Value;

use crate::common::*;
use crate::silver::query_csv;

/// Every row of a table as CSV, sorted.
fn rows_of(lake: &Path, table: &str) -> Vec<String> {
    let mut v = query_csv(lake, &format!("SELECT * FROM {table}"));
    v.sort();
    v
}

/// What `status --json` says of the bronze dates that have events: date,
/// events, late, side output, id conflicts, ids on other dates.
pub fn bronze_counts(lake: &Path) -> Vec<(String, u64, u64, u64, u64, u64)> {
    let st = ok(lake, &["status", "--json"]);
    st["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["events"].as_u64().unwrap() + p["side_output_events"].as_u64().unwrap() > 0)
        .map(|p| {
            let n = |k: &str| p[k].as_u64().unwrap();
            (
                p["event_date"].as_str().unwrap().to_string(),
                n("events"),
                n("late_events"),
                n("side_output_events"),
                n("id_conflicts"),
                n("ids_on_other_dates"),
            )
        })
        .collect()
}

fn balances(lake: &Path, as_of: &str) -> Value {
    ok(lake, &["state", "balances", "--as-of", as_of, "--json"])["rows"].clone()
}

/// Retracting the last batch (some of its rows merged into compacted
/// files, some waiting in the side output, some quarantined) leaves a
/// lake whose every table, count and answer equals a lake that never
/// ingested it, and invalidates the snapshot it changed. A crash at any
/// step, then a re-run, loses and doubles nothing; a re-run is a no-op;
/// the same ingest skips the input after, and `--reingest-retracted`
/// takes it in again.
#[test]
fn a_retracted_batch_leaves_the_lake_as_if_it_never_came() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let truth = generate_messy(&gen_dir);
    let runs = generated_runs(&gen_dir, &truth);
    let ((last, last_pt), rest) = runs.split_last().unwrap();
    let (with, without) = (tmp.path().join("with"), tmp.path().join("without"));
    for lake in [&with, &without] {
        for (path, pt) in rest {
            ok(lake, &batch_run_args(path, pt));
        }
    }
    // The last batch: its late rows wait in the side output.
    let mut args = batch_run_args(last, last_pt).to_vec();
    args.extend(["--late-policy", "side-output", "--json"]);
    let r = ok(&with, &args);
    let batch_id = r["ingest"]["inputs"][0]["batch_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ingested = r["ingest"]["version"].as_u64().unwrap();
    for lake in [&with, &without] {
        ok(lake, &["compact", "--min-files", "2"]);
    }
    ok(&with, &["snapshot", "balances", "--as-of", "2024-03-05"]);
    let st = ok(&with, &["status", "--json"]);
    assert!(st["side_output_events"].as_u64().unwrap() > 0, "{st}");
    assert!(st["quarantined"].as_u64().unwrap() > 0, "{st}");
    let batch_rows = |lake: &Path, table: &str| {
        query_csv(
            lake,
            &format!("SELECT count(*) FROM {table} WHERE batch_id = '{batch_id}'"),
        )[0]
        .parse::<u64>()
        .unwrap()
    };
    let (events, late, bad) = (
        batch_rows(&with, "bronze_events"),
        batch_rows(&with, "bronze_late"),
        batch_rows(&with, "quarantine"),
    );
    assert!(events > 0 && late > 0 && bad > 0, "{events} {late} {bad}");
    // Some of its rows now share files with earlier batches' rows.
    let merged = query_csv(
        &with,
        &format!(
            "SELECT count(DISTINCT batch_id) FROM bronze_events WHERE event_date IN \
             (SELECT event_date FROM bronze_events WHERE batch_id = '{batch_id}')"
        ),
    );
    assert!(merged[0].parse::<u64>().unwrap() > 1, "{merged:?}");

    let before = rows_of(&with, "bronze_events");
    let plan = ok(&with, &["retract", &batch_id, "--dry-run", "--json"]);
    assert_eq!(plan["status"], "dry_run", "{plan}");
    assert_eq!(
        rows_of(&with, "bronze_events"),
        before,
        "a dry run changes nothing"
    );
    let b = &plan["batches"][0];
    assert_eq!(b["bronze_rows"], events, "{plan}");
    assert_eq!(b["late_rows"], late, "{plan}");
    assert_eq!(b["quarantined"], bad, "{plan}");
    assert_eq!(b["ingested_in"], ingested, "{plan}");

    // Crashes at every step, then a re-run.
    let want = rows_of(&without, "bronze_events");
    for step in evlake::fault::STEPS {
        let copy = tmp.path().join(format!("crash-{step}"));
        copy_dir(&with, &copy);
        let o = cmd(&copy, &["retract", &batch_id])
            .env("EVLAKE_FAULT", format!("retract:{step}"))
            .output()
            .unwrap();
        assert!(!o.status.success(), "{step}: the fault hook must abort");
        let now = rows_of(&copy, "bronze_events");
        assert!(now == before || now == want, "{step}: all or nothing");
        ok(&copy, &["retract", &batch_id]);
        assert_eq!(rows_of(&copy, "bronze_events"), want, "{step}");
        assert_eq!(files_on_disk(&copy), committed_files(&copy), "{step}");
    }

    // The same file by another path, or a copy of its bytes elsewhere
    // (ingested from another directory): the same batch.
    let last_path = Path::new(last);
    let other_path = last_path
        .parent()
        .unwrap()
        .join("..")
        .join(last_path.parent().unwrap().file_name().unwrap())
        .join(last_path.file_name().unwrap());
    let copy = tmp.path().join("copy-of-the-input.jsonl");
    std::fs::copy(last_path, &copy).unwrap();
    for other in [&other_path, &copy] {
        let p = ok(
            &with,
            &["retract", other.to_str().unwrap(), "--dry-run", "--json"],
        );
        let ids: Vec<&str> = p["batches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["batch_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [batch_id.as_str()], "{other:?}: {p}");
    }
    std::fs::write(&copy, "another file\n").unwrap();
    run_says(
        &with,
        &["retract", copy.to_str().unwrap(), "--dry-run"],
        2,
        "no committed input batch",
    );

    // By its input's name, as it was ingested.
    let r = ok(&with, &["retract", last, "--json"]);
    assert_eq!(r["status"], "committed", "{r}");
    assert_eq!(r["batches"][0]["batch_id"], batch_id.as_str(), "{r}");
    assert!(!r["dates"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(files_on_disk(&with), committed_files(&with));
    for table in ["bronze_events", "bronze_late", "quarantine"] {
        assert_eq!(batch_rows(&with, table), 0, "{table}");
        assert_eq!(rows_of(&with, table), rows_of(&without, table), "{table}");
    }
    let st = ok(&with, &["status", "--json"]);
    assert_eq!(st["snapshots"][0]["valid"], false, "{st}");
    let why = st["snapshots"][0]["invalid_because"].as_str().unwrap();
    assert!(why.contains("retracted"), "{why}");
    assert_eq!(st["retracted_batches"], 1, "{st}");
    assert_eq!(st["last_retract"], r["version"], "{st}");
    assert!(!st["dirty"].as_array().unwrap().is_empty(), "{st}");
    assert_eq!(bronze_counts(&with), bronze_counts(&without));
    // Safe to run twice.
    let again = ok(&with, &["retract", &batch_id, "--json"]);
    assert_eq!(again["status"], "noop", "{again}");
    assert_eq!(again["batches"][0]["status"], "already_retracted");
    assert_eq!(again["batches"][0]["retracted_in"], r["version"]);
    // The `batches` table says so, beside the batches kept.
    let listed = query_csv(
        &with,
        "SELECT batch_id, ingested_in, retracted_in, events > 0 FROM batches ORDER BY ingested_in",
    );
    assert_eq!(listed.len(), runs.len(), "{listed:?}");
    assert_eq!(
        listed.last().unwrap(),
        &format!("{batch_id},{ingested},{},true", r["version"])
    );
    assert!(
        listed[..listed.len() - 1].iter().all(|l| l.contains(",,")),
        "{listed:?}"
    );

    // Silver and gold rebuild what it touched, and equal the lake that
    // never had it.
    ok(&with, &["run"]);
    assert_dumps_equal(&silver_dump(&with), &silver_dump(&without), "silver");
    assert_dumps_equal(&gold_dump(&with), &gold_dump(&without), "gold");
    assert_eq!(
        balances(&with, "2024-03-05T12:00:00Z"),
        balances(&without, "2024-03-05T12:00:00Z")
    );

    // The same ingest skips it (a cron re-run does not bring it back)...
    let o = run_says(&with, &["ingest", last, "--json"], 0, "retracted in commit");
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["status"], "noop", "{r}");
    assert_eq!(r["inputs"][0]["status"], "retracted", "{r}");
    assert_eq!(batch_rows(&with, "bronze_events"), 0);
    // ... unless asked to take it in again.
    let r = ok(
        &with,
        &[
            "ingest",
            last,
            "--reingest-retracted",
            "--late-policy",
            "side-output",
            "--max-bad-fraction",
            "1",
            "--processing-time",
            last_pt,
            "--json",
        ],
    );
    assert_eq!(r["status"], "committed", "{r}");
    assert_eq!(
        r["inputs"][0]["hash_cached"], false,
        "read as a new input: {r}"
    );
    assert_eq!(ok(&with, &["status", "--json"])["retracted_batches"], 0);
    // Every file the log names is on disk: the id index the ingest
    // rebuilt is not named like one it replaced (it was named after the
    // inputs alone, the same as when they came first, and deleted as
    // replaced right after its commit).
    let c = ok(&with, &["check", "--json"]);
    assert_eq!(c["problems"], serde_json::json!([]), "{c}");
    // (The watermark did not move back: more of them are late now.)
    assert_eq!(
        batch_rows(&with, "bronze_events") + batch_rows(&with, "bronze_late"),
        events + late
    );
    assert_eq!(batch_rows(&with, "quarantine"), bad);
}

/// A batch id that is not in the lake is a usage error naming it; a
/// batch whose file another batch shares is rewritten, not removed, and
/// the other batch's rows stay exactly as they were.
#[test]
fn retract_names_an_unknown_batch_and_keeps_other_batches_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let dir = tmp.path();
    let a = dir.join("a.jsonl");
    let b = dir.join("b.jsonl");
    std::fs::write(
        &a,
        [
            crate::silver::ev("a1", "page_view", "2024-03-15T10:00:00Z", "u1"),
            crate::silver::ev("a2", "page_view", "2024-03-15T10:05:00Z", "u1"),
            "not json\n".to_string(),
        ]
        .concat(),
    )
    .unwrap();
    std::fs::write(
        &b,
        [
            crate::silver::ev("b1", "page_view", "2024-03-15T11:00:00Z", "u2"),
            "{\"broken\n".to_string(),
        ]
        .concat(),
    )
    .unwrap();
    // One run, one file per date holding both batches, one quarantine
    // file holding both batches' bad lines.
    let r = ok(
        &lake,
        &[
            "ingest",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--max-bad-fraction",
            "1",
            "--processing-time",
            "2024-03-15T12:00:00Z",
            "--json",
        ],
    );
    let id_a = r["inputs"][0]["batch_id"].as_str().unwrap().to_string();
    run_says(
        &lake,
        &["retract", "0123456789abcdef"],
        2,
        "`0123456789abcdef`",
    );
    // Every stdin input has the same source: by batch id only.
    let line = crate::silver::ev("s1", "page_view", "2024-03-15T09:00:00Z", "u3");
    let o = run_with_stdin(
        &lake,
        &["ingest", "-", "--processing-time", "2024-03-15T12:00:00Z"],
        line.as_bytes(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    run_says(&lake, &["retract", "<stdin>"], 2, "by their batch_id");
    let before = query_csv(
        &lake,
        "SELECT * FROM bronze_events WHERE event_id IN ('b1', 's1') ORDER BY event_id",
    );
    let r = ok(&lake, &["retract", &id_a, "--json"]);
    assert_eq!(r["batches"][0]["bronze_rows"], 2, "{r}");
    assert_eq!(r["batches"][0]["quarantined"], 1, "{r}");
    assert_eq!(
        r["files_added"], 2,
        "a bronze file and a quarantine file: {r}"
    );
    assert_eq!(r["files_removed"], 2, "{r}");
    assert_eq!(
        query_csv(&lake, "SELECT * FROM bronze_events ORDER BY event_id"),
        before,
        "b's row, lineage and all"
    );
    let q = query_csv(&lake, "SELECT source_file, line FROM quarantine");
    assert_eq!(q, [format!("{},2", b.display())]);
}

/// Retracting an event that joined two sessions across midnight splits
/// them again, on both dates, also for a user left with no event on the
/// date; and retracting a batch from the middle of a lake's history
/// leaves silver and gold equal to a full rebuild.
#[test]
fn a_retracted_bridge_splits_sessions_and_silver_equals_a_full_rebuild() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let ev = crate::silver::ev;
    let pt = "2024-03-16T02:00:00Z";
    ingest_lines(
        &lake,
        tmp.path(),
        "a.jsonl",
        &[
            ev("u-1", "page_view", "2024-03-14T23:50:00Z", "u"),
            ev("u-3", "page_view", "2024-03-15T00:35:00Z", "u"),
            ev("w-1", "page_view", "2024-03-14T23:55:00Z", "w"),
        ],
        pt,
    );
    let bridge = tmp.path().join("b.jsonl");
    std::fs::write(
        &bridge,
        [
            ev("u-2", "page_view", "2024-03-15T00:10:00Z", "u"),
            ev("w-2", "page_view", "2024-03-15T00:05:00Z", "w"),
        ]
        .concat(),
    )
    .unwrap();
    ok(
        &lake,
        &["run", bridge.to_str().unwrap(), "--processing-time", pt],
    );
    let sessions = |lake: &Path| {
        query_csv(
            lake,
            "SELECT user_id, session_start, session_end, event_count FROM sessions ORDER BY 1, 2",
        )
    };
    assert_eq!(
        sessions(&lake),
        [
            "u,2024-03-14T23:50:00Z,2024-03-15T00:35:00Z,3",
            "w,2024-03-14T23:55:00Z,2024-03-15T00:05:00Z,2",
        ]
    );
    ok(&lake, &["retract", bridge.to_str().unwrap()]);
    let r = ok(&lake, &["run", "--json"]);
    assert_eq!(r["silver"]["mode"], "incremental", "{r}");
    assert_eq!(
        sessions(&lake),
        [
            "u,2024-03-14T23:50:00Z,2024-03-14T23:50:00Z,1",
            "u,2024-03-15T00:35:00Z,2024-03-15T00:35:00Z,1",
            "w,2024-03-14T23:55:00Z,2024-03-14T23:55:00Z,1",
        ]
    );
    crate::silver::assert_equals_full(&lake, &tmp.path().join("full"), "bridge");

    // A batch from the middle of a generated history.
    let gen_dir = tmp.path().join("gen");
    let truth = generate(
        &gen_dir,
        &[
            "--events",
            "3000",
            "--days",
            "5",
            "--seed",
            "12",
            "--late-rate",
            "0.6",
            "--users",
            "25",
        ],
    );
    let lake = tmp.path().join("history");
    let runs = generated_runs(&gen_dir, &truth);
    for (path, pt) in &runs {
        ok(&lake, &batch_run_args(path, pt));
    }
    let middle = &runs[runs.len() / 2].0;
    let r = ok(&lake, &["retract", middle, "--json"]);
    assert!(r["batches"][0]["bronze_rows"].as_u64().unwrap() > 0, "{r}");
    let v = ok(&lake, &["run", "--json"]);
    assert_eq!(v["silver"]["mode"], "incremental", "{v}");
    crate::silver::assert_equals_full(&lake, &tmp.path().join("full2"), "middle batch");
}

/// Retracting every input a lake has leaves every table empty after the
/// next run (silver and gold recompute their dates with no rows), and
/// nothing dirty.
#[test]
fn retracting_every_input_empties_every_table() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let input = sample("2024-03-15.jsonl");
    ok(
        &lake,
        &[
            "run",
            &input,
            "--processing-time",
            "2024-03-16T00:00:00Z",
            "--max-bad-fraction",
            "1",
        ],
    );
    ok(&lake, &["retract", &input]);
    let r = ok(&lake, &["run", "--json"]);
    assert_eq!(r["status"], "committed", "{r}");
    let o = run(&lake, &["tables", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let tables = json_lines(&o);
    assert!(tables.len() >= 8, "{tables:?}");
    for t in &tables {
        // (`batches`, from the log, still lists the input: retracted.)
        let rows = if t["name"] == "batches" { 1 } else { 0 };
        assert_eq!(t["rows"], rows, "{t}");
    }
    assert_eq!(
        query_csv(&lake, "SELECT retracted_in IS NOT NULL FROM batches"),
        ["true"]
    );
    // Built, with no rows: counted 0, not "not built yet".
    for t in ["events", "sessions", "purchases", "daily_metrics"] {
        assert_eq!(
            query_csv(&lake, &format!("SELECT count(*) FROM {t}")),
            ["0"],
            "{t}"
        );
    }
    let st = ok(&lake, &["status", "--json"]);
    assert_eq!(st["dirty"], Value::Array(vec![]), "{st}");
    assert_eq!(ok(&lake, &["run", "--json"])["status"], "noop");
    // Events arriving again on an emptied date (silver has no built rows
    // at all now, so none there to add to: it is rebuilt whole), with
    // one on a new date, equal to a full rebuild. The re-sent event makes
    // silver look for built rows sharing its id.
    let ev = crate::silver::ev;
    let again = ev("r1", "page_view", "2024-03-15T10:00:00Z", "u1");
    ingest_lines(
        &lake,
        tmp.path(),
        "again.jsonl",
        &[
            again.clone(),
            again,
            ev("o1", "page_view", "2024-03-25T10:00:00Z", "u9"),
        ],
        "2024-03-26T01:00:00Z",
    );
    let r = ok(&lake, &["run", "--json"]);
    assert_eq!(r["silver"]["mode"], "incremental", "{r}");
    crate::silver::assert_equals_full(&lake, &tmp.path().join("full"), "refilled");
}

/// A log retracted while its writer goes on appending: the next ingest
/// reads only the lines after the retracted ones (they stay consumed),
/// and `--reingest-retracted` reads the grown file whole once every
/// batch of it is retracted.
#[test]
fn a_retracted_log_that_grows_keeps_its_retracted_lines_out() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let log = tmp.path().join("app.jsonl");
    let ev = |i: usize| {
        crate::silver::ev(
            &format!("e{i}"),
            "page_view",
            &format!("2024-03-15T10:{i:02}:00Z"),
            "u1",
        )
    };
    // Longer than the 512 bytes a grown file is recognised by.
    let first: String = (0..6).map(ev).collect();
    std::fs::write(&log, &first).unwrap();
    let path = log.to_str().unwrap();
    let pt = ["--processing-time", "2024-03-15T12:00:00Z"];
    ok(&lake, &[&["ingest", path][..], &pt].concat());
    ok(&lake, &["retract", path]);
    let count = |lake: &Path| query_csv(lake, "SELECT count(*) FROM bronze_events")[0].clone();
    assert_eq!(count(&lake), "0");
    std::fs::write(&log, format!("{first}{}", ev(6))).unwrap();
    let r = ok(&lake, &[&["ingest", path, "--json"][..], &pt].concat());
    assert_eq!(r["events"], 1, "only the new line: {r}");
    assert_eq!(r["inputs"][0]["resumed"]["line"], 7, "{r}");
    assert_eq!(count(&lake), "1");
    // On purpose, whole, once every batch of it is retracted (a read
    // resumes after the last batch that is not).
    let r = ok(&lake, &["retract", path, "--json"]);
    assert_eq!(r["batches"][0]["status"], "already_retracted", "{r}");
    assert_eq!(r["batches"][1]["bronze_rows"], 1, "{r}");
    std::fs::write(&log, format!("{first}{}{}", ev(6), ev(7))).unwrap();
    let r = ok(
        &lake,
        &[&["ingest", path, "--reingest-retracted", "--json"][..], &pt].concat(),
    );
    assert!(r["inputs"][0]["resumed"].is_null(), "{r}");
    assert_eq!(r["events"], 8, "{r}");
}

/// `retract DIR` takes back every batch of every input file under DIR
/// (as `ingest DIR` lists them, so also under its subdirectories), and no
/// other; a file under it never ingested is reported, and a directory
/// none of whose files was ingested is a usage error.
#[test]
fn a_directory_retracts_every_batch_of_the_files_under_it() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let ev = crate::silver::ev;
    let incoming = tmp.path().join("incoming");
    std::fs::create_dir_all(incoming.join("sub")).unwrap();
    let write =
        |path: &Path, lines: &[String]| std::fs::write(path, lines.join("\n") + "\n").unwrap();
    write(
        &incoming.join("a.jsonl"),
        &[ev("a1", "page_view", "2024-03-15T10:00:00Z", "u1")],
    );
    write(
        &incoming.join("sub/b.jsonl"),
        &[ev("b1", "page_view", "2024-03-16T10:00:00Z", "u2")],
    );
    let kept = tmp.path().join("kept.jsonl");
    write(
        &kept,
        &[ev("k1", "page_view", "2024-03-15T11:00:00Z", "u3")],
    );
    let incoming = incoming.to_str().unwrap();
    ok(&lake, &["ingest", incoming, kept.to_str().unwrap()]);
    let new = Path::new(incoming).join("new.jsonl");
    write(&new, &[ev("n1", "page_view", "2024-03-15T12:00:00Z", "u4")]);
    let o = run(&lake, &["retract", incoming, "--json"]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["status"], "committed", "{r}");
    let sources: Vec<&str> = r["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources.len(), 2, "{r}");
    assert!(sources.iter().all(|s| s.starts_with(incoming)), "{r}");
    assert_eq!(r["not_ingested"][0], new.to_str().unwrap(), "{r}");
    assert!(
        stderr(&o).contains("new.jsonl: never ingested"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        query_csv(&lake, "SELECT event_id FROM bronze_events"),
        ["k1"]
    );
    // Again: a no-op, each batch already retracted.
    let again = ok(&lake, &["retract", incoming, "--json"]);
    assert_eq!(again["status"], "noop", "{again}");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    run_says(
        &lake,
        &["retract", empty.to_str().unwrap()],
        2,
        "no committed input batch from a file under",
    );
}

/// An input named on the command line whose file name is not UTF-8 (a
/// Latin-1 `café.jsonl` from an old system) is ingested, as a directory
/// walk ingests it, and retracted by the same name or by its directory:
/// clap used to refuse both with "invalid UTF-8 was detected".
#[test]
fn input_named_with_a_non_utf8_file_name_is_ingested_and_retracted() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let dir = tmp.path().join(std::ffi::OsStr::from_bytes(b"d\xe9"));
    std::fs::create_dir(&dir).unwrap();
    let input = dir.join(std::ffi::OsStr::from_bytes(b"caf\xe9.jsonl"));
    std::fs::write(
        &input,
        crate::silver::ev("e1", "page_view", "2024-03-15T10:00:00Z", "u"),
    )
    .unwrap();
    let with = |args: &[&str], path: &Path| {
        let o = cmd(&lake, args).arg(path).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        o
    };
    with(&["ingest"], &input);
    assert_eq!(bronze_counts(&lake).len(), 1);
    let again = with(&["ingest"], &input);
    assert!(
        stderr(&again).contains("already ingested"),
        "{}",
        stderr(&again)
    );
    with(&["retract"], &input);
    assert!(bronze_counts(&lake).is_empty());
    with(&["ingest", "--reingest-retracted"], &input);
    assert_eq!(bronze_counts(&lake).len(), 1);
    let o = with(&["retract"], &dir);
    assert!(stderr(&o).contains("caf\u{fffd}.jsonl"), "{}", stderr(&o));
    assert!(bronze_counts(&lake).is_empty());
}
