//! `evlake gold` and `evlake run`: daily metrics, exact recompute sets,
//! crashes, dry runs.

use std::path::Path;

use serde_json::Value;

use crate::common::*;
use crate::silver::{assert_equals_full, ev, list, query_csv};

const METRICS: &str = "SELECT CAST(event_date AS VARCHAR), events, users, sessions, \
    bounce_sessions, CAST(avg_session_duration_s AS VARCHAR), converted_sessions, \
    CAST(conversion_rate AS VARCHAR), purchases, CAST(revenue AS VARCHAR), signups, \
    late_events, CAST(lateness_p99_s AS VARCHAR) FROM daily_metrics ORDER BY 1";

/// `evlake run BATCH --processing-time PT --json` for one sample batch.
fn run_batch(lake: &Path, batch: &Value) -> Value {
    let path = sample(batch["file"].as_str().unwrap());
    ok(
        lake,
        &[
            "run",
            &path,
            "--processing-time",
            batch["processing_time"].as_str().unwrap(),
            "--json",
        ],
    )
}

/// The expected rows of METRICS, from tests/sample_expected.json (computed
/// by sample_data/curate.py from the lines it wrote, not by evlake).
fn expected_metrics() -> Vec<String> {
    let exp = expected();
    exp["daily_metrics"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(date, m)| {
            let f = |k: &str| match &m[k] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                v => v.to_string(),
            };
            [
                date.clone(),
                f("events"),
                f("users"),
                f("sessions"),
                f("bounce_sessions"),
                f("avg_session_duration_s"),
                f("converted_sessions"),
                f("conversion_rate"),
                f("purchases"),
                f("revenue"),
                f("signups"),
                f("late_events"),
                f("lateness_p99_s"),
            ]
            .join(",")
        })
        .collect()
}

/// A lake under a directory whose name a file URL must encode (a space,
/// `%`, non-ASCII) is written and read like any other: evlake's readers
/// list its tables from the log as object-store paths.
#[test]
fn a_lake_under_an_odd_path_gives_the_same_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("my lake %41 é").join("lake");
    for b in expected()["batches"].as_array().unwrap() {
        let r = run_batch(&lake, b);
        assert_eq!(r["status"], "committed", "{r}");
    }
    assert_eq!(query_csv(&lake, METRICS), expected_metrics());
    let answer = ok(
        &lake,
        &["state", "balances", "--as-of", "2024-03-20", "--json"],
    );
    assert!(!answer["rows"].as_array().unwrap().is_empty(), "{answer}");
}

#[test]
fn run_on_the_sample_gives_the_expected_daily_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let batches = expected()["batches"].as_array().unwrap().clone();
    for b in &batches {
        let r = run_batch(&lake, b);
        assert_eq!(r["status"], "committed", "{r}");
        assert_eq!(r["failed_step"], Value::Null);
    }
    assert_eq!(query_csv(&lake, METRICS), expected_metrics());
    // Every currency apart; revenue in USD only in daily_metrics.
    assert_eq!(
        query_csv(
            &lake,
            "SELECT CAST(event_date AS VARCHAR), currency, purchases, CAST(revenue AS VARCHAR) \
             FROM daily_revenue_by_currency ORDER BY 1, 2"
        ),
        ["2024-03-15,EUR,1,19.99", "2024-03-16,USD,1,5.00"]
    );
    // Re-running the same inputs is a no-op at every step.
    let r = run_batch(&lake, &batches[2]);
    assert_eq!(r["status"], "noop", "{r}");
    assert_eq!(r["ingest"]["status"], "noop");
    assert_eq!(r["silver"]["status"], "noop");
    assert_eq!(r["gold"]["status"], "noop");
    assert_eq!(
        ok(&lake, &["status", "--json"])["dirty"],
        Value::Array(vec![])
    );
    // Another reporting currency is a new fingerprint: gold rebuilds.
    let g = ok(&lake, &["gold", "--currency", "eur", "--json"]);
    assert_eq!(g["mode"], "full");
    assert_eq!(
        query_csv(
            &lake,
            "SELECT CAST(event_date AS VARCHAR), CAST(revenue AS VARCHAR) FROM daily_metrics \
             WHERE purchases > 0 ORDER BY 1"
        ),
        ["2024-03-15,19.99", "2024-03-16,0.00"]
    );
}

#[test]
fn a_late_bridge_recomputes_exactly_the_dates_whose_silver_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let run_lines = |name: &str, lines: &[String], pt: &str| -> Value {
        let f = tmp.path().join(name);
        std::fs::write(&f, lines.concat()).unwrap();
        ok(
            &lake,
            &[
                "run",
                f.to_str().unwrap(),
                "--processing-time",
                pt,
                "--json",
            ],
        )
    };
    run_lines(
        "b1.jsonl",
        &[
            ev("e1", "page_view", "2024-03-14T23:40:00Z", "u"),
            ev("e3", "page_view", "2024-03-15T00:25:00Z", "u"),
            ev("e4", "purchase", "2024-03-15T00:40:00Z", "u"),
            ev("v1", "page_view", "2024-03-14T12:00:00Z", "v"),
            ev("v2", "page_view", "2024-03-16T09:00:00Z", "v"),
            ev("w1", "page_view", "2024-03-16T23:50:00Z", "w"),
            ev("w2", "purchase", "2024-03-17T00:10:00Z", "w"),
        ],
        "2024-03-18T02:00:00Z",
    );
    let sessions_of = |date: &str| {
        query_csv(
            &lake,
            &format!("SELECT sessions FROM daily_metrics WHERE event_date = DATE '{date}'"),
        )
    };
    assert_eq!(sessions_of("2024-03-15"), ["1"]);
    // Bronze changes only on the 14th, but u's session from the 15th joins
    // the 14th's: both dates' numbers change, and nothing else.
    let r = run_lines(
        "b2.jsonl",
        &[ev("e2", "page_view", "2024-03-14T23:59:00Z", "u")],
        "2024-03-19T02:00:00Z",
    );
    assert_eq!(
        list(&r["gold"]["recomputed"]["daily_metrics"]),
        ["2024-03-14", "2024-03-15"],
        "{r}"
    );
    assert_eq!(
        list(&r["gold"]["recomputed"]["daily_revenue_by_currency"]),
        ["2024-03-15"],
        "{r}"
    );
    assert_eq!(sessions_of("2024-03-15"), ["0"]);
    assert_eq!(
        query_csv(
            &lake,
            "SELECT sessions, converted_sessions, events FROM daily_metrics \
             WHERE event_date = DATE '2024-03-14'"
        ),
        ["2,1,3"]
    );
    assert_equals_full(&lake, &tmp.path().join("full-1"), "after the bridge");
    // v's late event on the 16th: w's session reaches the 17th but does not
    // change, so only the 16th is recomputed.
    let r = run_lines(
        "b3.jsonl",
        &[ev("v3", "page_view", "2024-03-16T09:10:00Z", "v")],
        "2024-03-20T02:00:00Z",
    );
    assert_eq!(
        list(&r["gold"]["recomputed"]["daily_metrics"]),
        ["2024-03-16"],
        "{r}"
    );
    assert_equals_full(&lake, &tmp.path().join("full-2"), "after v3");
}

#[test]
fn a_crash_at_every_step_of_gold_then_a_rerun_is_correct() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = expected()["batches"].as_array().unwrap().clone();
    let reference = tmp.path().join("reference");
    for b in &batches {
        run_batch(&reference, b);
    }
    let want = gold_dump(&reference);
    for step in evlake::fault::STEPS {
        let lake = tmp.path().join(format!("lake-{step}"));
        run_batch(&lake, &batches[0]);
        run_batch(&lake, &batches[1]);
        // The third batch's run crashes inside its gold step.
        let b = &batches[2];
        let o = cmd(
            &lake,
            &[
                "run",
                &sample(b["file"].as_str().unwrap()),
                "--processing-time",
                b["processing_time"].as_str().unwrap(),
            ],
        )
        .env("EVLAKE_FAULT", format!("gold:{step}"))
        .output()
        .unwrap();
        assert!(!o.status.success(), "{step}");
        // The lake is readable and no partition is half-written: every
        // gold file on disk is committed or is an orphan the next writer
        // removes; queries see the committed state only.
        assert!(
            run(&lake, &["query", "SELECT count(*) FROM daily_metrics"])
                .status
                .success()
        );
        let r = run_batch(&lake, b);
        assert_ne!(r["status"], "failed", "{step}: {r}");
        assert_eq!(gold_dump(&lake), want, "{step}");
        let committed = committed_files_under(&lake, "gold");
        assert!(!committed.is_empty(), "{step}");
        assert_eq!(files_on_disk_under(&lake, "gold"), committed, "{step}");
    }
}

#[test]
fn a_failed_step_is_named_and_the_next_run_finishes_the_work() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let batches = expected()["batches"].as_array().unwrap().clone();
    run_batch(&lake, &batches[0]);
    let b = &batches[1];
    let o = cmd(
        &lake,
        &[
            "run",
            &sample(b["file"].as_str().unwrap()),
            "--processing-time",
            b["processing_time"].as_str().unwrap(),
            "--json",
        ],
    )
    .env("EVLAKE_FAULT", "silver:before-commit")
    .output()
    .unwrap();
    assert!(!o.status.success());
    // A crash cannot print a summary; a refused step can.
    std::fs::write(lake.join("evlake.toml"), "[gold]\ncurrency = \"dollars\"\n").unwrap();
    let o = run(&lake, &["run", "--json"]);
    assert_eq!(exit_code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("gold.currency"), "{}", stderr(&o));
    std::fs::remove_file(lake.join("evlake.toml")).unwrap();
    // Bronze has batch 2 (ingest committed before silver crashed); the next
    // run with no inputs finishes silver and gold.
    let st = ok(&lake, &["status", "--json"]);
    assert!(!st["dirty"].as_array().unwrap().is_empty(), "{st}");
    let r = ok(&lake, &["run", "--json"]);
    assert_eq!(r["silver"]["status"], "committed", "{r}");
    assert_eq!(r["gold"]["status"], "committed", "{r}");
    assert!(
        !stderr(&run(&lake, &["run"])).contains("Warning"),
        "no flag, no warning"
    );
    // Ingest flags without INPUT do nothing: said, not passed over.
    run_says(
        &lake,
        &[
            "run",
            "--max-bad-fraction",
            "0.5",
            "--watermark-delay",
            "2h",
        ],
        0,
        "--watermark-delay, --max-bad-fraction given without INPUT: this run ingests \
         nothing, so they do nothing",
    );
    run_says(
        &lake,
        &["run", "--include", "*"],
        0,
        "--include given without INPUT: this run ingests nothing, so it does nothing",
    );
    let st = ok(&lake, &["status", "--json"]);
    assert_eq!(st["dirty"], Value::Array(vec![]));
    assert_eq!(st["not_built"], Value::Array(vec![]));
    // A bad batch stops at ingest (exit 4) and names it in the summary.
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "not json\n{\"event_id\":1}\n").unwrap();
    let o = run(&lake, &["run", bad.to_str().unwrap(), "--json"]);
    assert_eq!(exit_code(&o), 4, "{}", stderr(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["status"], "failed");
    assert_eq!(r["failed_step"], "ingest");
    assert_eq!(r["hint"], Value::Null, "{r}");
    assert!(
        stderr(&o).contains("step `ingest` failed"),
        "{}",
        stderr(&o)
    );
    // A failure with a hint on stderr has it in the summary too, for a
    // scheduler that keeps only stdout.
    let b = &batches[2];
    let args = [
        "run",
        &sample(b["file"].as_str().unwrap()),
        "--memory-limit",
        "1K",
        "--json",
    ];
    let o = run_says(&lake, &args, 1, "hint: this needed more memory");
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["status"], "failed", "{r}");
    let hint = r["hint"].as_str().unwrap_or_default();
    assert!(stderr(&o).contains(&format!("hint: {hint}\n")), "{r}");
}

#[test]
fn a_quiet_run_prints_only_what_needs_attention() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let clean = tmp.path().join("clean.jsonl");
    std::fs::write(
        &clean,
        [
            ev("a", "page_view", "2024-03-15T10:00:00Z", "u"),
            ev("b", "purchase", "2024-03-15T10:05:00Z", "u"),
        ]
        .concat(),
    )
    .unwrap();
    let clean = clean.to_str().unwrap();
    let pt = ["--processing-time", "2024-03-16T02:00:00Z"];
    // Without --quiet, a run narrates each step on stderr.
    let loud = run(
        &tmp.path().join("loud"),
        &[&["run", clean][..], &pt].concat(),
    );
    assert!(loud.status.success());
    assert!(stderr(&loud).contains("Committed"), "{}", stderr(&loud));
    // With it, a run that went well prints nothing (cron sends no mail),
    // and --json still prints the summary on stdout.
    for args in [
        &["-q", "run", clean, "--json"][..],
        &["run", clean, "--quiet", "--json"],
    ] {
        let o = run(&lake, &[args, &pt].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?}");
        let r: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            r["status"],
            if args[0] == "-q" { "committed" } else { "noop" }
        );
    }
    assert_eq!(
        query_csv(&lake, "SELECT count(*) FROM daily_metrics"),
        ["1"]
    );
    // Quarantined lines need attention: a line saying how many, where,
    // then the first bad lines (and the first of each other reason) by
    // file and line; and so do id conflicts: this batch repeats an id with other content
    // (its id reused from the first batch, not ingested here, is no
    // conflict in this lake).
    let b = &expected()["batches"][1];
    assert_ne!(b["quarantined"], serde_json::json!({}));
    let o = run(
        &lake,
        &[
            "-q",
            "run",
            &sample(b["file"].as_str().unwrap()),
            "--processing-time",
            b["processing_time"].as_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<String> = stderr(&o).lines().map(String::from).collect();
    let reasons = b["quarantined"].as_object().unwrap();
    let bad: usize = reasons.values().map(|n| n.as_u64().unwrap() as usize).sum();
    // The lines under `Quarantined`: at most 5 and one of each other reason.
    let examples = lines.len() - 3;
    assert!(examples >= reasons.len() && examples <= 5 + reasons.len());
    assert!(
        lines[0]
            .trim_start()
            .starts_with("Warning 1 event(s) repeat an event_id")
            && lines[1].trim_start().starts_with("Quarantined ")
            && lines[2..2 + examples]
                .iter()
                .all(|l| l.starts_with("   ") && l.contains(".jsonl.gz:"))
            && lines[2 + examples].ends_with(&format!(
                "... {} more in the quarantine file",
                bad - examples
            )),
        "{lines:?}"
    );
    for reason in reasons.keys() {
        assert!(
            lines.iter().any(|l| l.contains(&format!(": {reason}: "))),
            "{reason}: {lines:?}"
        );
    }
    // So do errors.
    let o = run(&lake, &["-q", "run", "missing.jsonl"]);
    assert_eq!(exit_code(&o), 1);
    assert!(stderr(&o).contains("missing.jsonl"), "{}", stderr(&o));
}

/// `--json` is one line when stdout is not a terminal, so cron's
/// `run --json >> runs.jsonl` appends JSON Lines; a person at a terminal
/// gets it indented.
#[test]
fn json_summaries_are_one_line_unless_on_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let mut lines = Vec::new();
    for args in [
        &["run", &sample("2024-03-15.jsonl"), "--json"][..],
        &["run", &sample("2024-03-15.jsonl"), "--json"],
        &["status", "--json"],
        &["state", "balances", "--as-of", "2024-03-16", "--json"],
    ] {
        let o = run(&lake, args);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = String::from_utf8(o.stdout).unwrap();
        assert_eq!(text.lines().count(), 1, "{args:?}: {text}");
        lines.push(text);
    }
    let statuses: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(statuses[0]["status"], "committed");
    assert_eq!(statuses[1]["status"], "noop");
    assert_eq!(statuses[3]["rows"].as_array().unwrap().len(), 2);
    // At a terminal: indented, the state's rows spliced in as its last member.
    for args in [
        &["status", "--json"][..],
        &["state", "balances", "--as-of", "2024-03-16", "--json"],
    ] {
        let text = on_a_terminal(&lake, args, b"");
        let start = text.find('{').unwrap();
        let v: Value = serde_json::from_str(text[start..].trim()).unwrap();
        assert!(text.contains("\n  \""), "{args:?}: {text}");
        assert!(v.is_object());
    }
}

#[test]
fn progress_shows_on_a_terminal_only() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let b = &expected()["batches"][0];
    let (file, pt) = (
        sample(b["file"].as_str().unwrap()),
        b["processing_time"].as_str().unwrap(),
    );
    // On a terminal: ingest's progress bar, then a spinner naming the
    // step and its phase while silver and gold work.
    let drawn = on_a_terminal(&lake, &["ingest", &file, "--processing-time", pt], b"");
    assert!(drawn.contains("Ingesting ["), "{drawn}");
    let drawn = on_a_terminal(&lake, &["run", "--processing-time", pt], b"");
    for step in ["Running silver: ", "Running gold: "] {
        assert!(drawn.contains(step), "{step}: {drawn}");
    }
    assert!(drawn.contains("Committed"), "{drawn}");
    // --quiet draws nothing there either.
    let drawn = on_a_terminal(&lake, &["-q", "silver", "--full"], b"");
    assert_eq!(drawn, "");
    // Not on a terminal (cron, a pipe): status lines only.
    let o = run(&lake, &["silver", "--full"]);
    assert!(o.status.success());
    let err = stderr(&o);
    assert!(
        !err.contains("Running") && !err.contains('\r') && err.contains("Committed"),
        "{err}"
    );
}

/// A date left with no events (its only input retracted) is rebuilt
/// by silver when its settings change, but with no rows before or after
/// no partition gold reads changes there: `run --dry-run` does not plan
/// gold (nor a daily table of the lake's own) for it, as the run does not
/// recompute it (found by `tools/soak.py plan`, seed 227).
#[test]
fn a_dry_run_plans_no_gold_for_a_date_left_without_events() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    init_with_file(
        &lake,
        "daily/active_users.sql",
        "SELECT event_date, count(DISTINCT user_id) AS users FROM events GROUP BY event_date",
    );
    let (a, b) = (tmp.path().join("a.jsonl"), tmp.path().join("b.jsonl"));
    std::fs::write(&a, ev("a1", "page_view", "2024-03-15T10:00:00Z", "u")).unwrap();
    std::fs::write(&b, ev("b1", "page_view", "2024-03-16T10:00:00Z", "v")).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    ok(&lake, &["run", a, b]);
    ok(&lake, &["retract", b]);
    let r = ok(&lake, &["run", "--json"]);
    assert_eq!(
        list(&r["gold"]["recomputed"]["daily_metrics"]),
        ["2024-03-16"]
    );
    let gap = ["--session-gap", "10m"];
    let plan = ok(&lake, &["run", "--dry-run", "--json", gap[0], gap[1]])["plan"].clone();
    assert_eq!(list(&plan["silver_dates"]), ["2024-03-15", "2024-03-16"]);
    assert_eq!(list(&plan["gold_dates"]), ["2024-03-15"], "{plan}");
    assert_eq!(list(&plan["daily_tables"]["active_users"]), ["2024-03-15"]);
    let r = ok(&lake, &["run", "--json", gap[0], gap[1]]);
    assert_eq!(
        list(&r["gold"]["recomputed"]["daily_metrics"]),
        ["2024-03-15"]
    );
    assert_eq!(
        list(&r["gold"]["recomputed"]["active_users"]),
        ["2024-03-15"]
    );
}

#[test]
fn dry_run_reports_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let batches = expected()["batches"].as_array().unwrap().clone();
    run_batch(&lake, &batches[0]);
    run_batch(&lake, &batches[1]);
    let before = (commits(&lake), files_on_disk(&lake));
    let b = &batches[2];
    let r = ok(
        &lake,
        &[
            "run",
            &sample(b["file"].as_str().unwrap()),
            "--processing-time",
            b["processing_time"].as_str().unwrap(),
            "--dry-run",
            "--json",
        ],
    );
    assert_eq!(r["status"], "dry_run");
    assert_eq!(r["ingest"]["status"], "dry_run");
    assert_eq!(r["ingest"]["events"], b["events"]);
    let dates: Vec<String> = b["partitions"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(list(&r["plan"]["silver_dates"]), dates);
    assert_eq!(list(&r["plan"]["gold_dates"]), dates);
    assert_eq!((commits(&lake), files_on_disk(&lake)), before);
    // The watermark it reports is the one the run will set (it moves).
    let was = r["ingest"]["watermark_before"].clone();
    assert_ne!(r["ingest"]["watermark"], was);
    assert_eq!(ok(&lake, &["status", "--json"])["watermark"], was);
    // The real run then recomputes those dates.
    let real = run_batch(&lake, b);
    assert_eq!(list(&real["silver"]["recomputed"]["events"]), dates);
    for k in ["watermark", "watermark_before", "max_event_time"] {
        assert_eq!(real["ingest"][k], r["ingest"][k], "{k}");
    }
    // A dry run into a lake that does not exist leaves none behind.
    let new = tmp.path().join("new");
    let r = ok(
        &new,
        &[
            "run",
            &sample(b["file"].as_str().unwrap()),
            "--dry-run",
            "--json",
        ],
    );
    assert_eq!(r["ingest"]["events"], b["events"]);
    assert!(!new.exists());
    let inside = tmp.path().join("empty-dir");
    std::fs::create_dir(&inside).unwrap();
    ok(
        &inside,
        &["run", &sample(b["file"].as_str().unwrap()), "--dry-run"],
    );
    assert_eq!(std::fs::read_dir(&inside).unwrap().count(), 0);
}

/// `silver --dry-run` and `gold --dry-run` say which dates each would
/// recompute, change nothing, take no lock, and the real commands then
/// recompute those dates (silver at least those: session reach can add
/// neighbours; gold exactly those).
#[test]
fn silver_and_gold_dry_runs_plan_what_they_then_do() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let batches = expected()["batches"].as_array().unwrap().clone();
    run_batch(&lake, &batches[0]);
    run_batch(&lake, &batches[1]);
    let b = &batches[2];
    ok(
        &lake,
        &[
            "ingest",
            &sample(b["file"].as_str().unwrap()),
            "--processing-time",
            b["processing_time"].as_str().unwrap(),
        ],
    );
    let dates: Vec<String> = b["partitions"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let before = (commits(&lake), files_on_disk(&lake));
    // Another writer holds the lock: a dry run reads on.
    let held = std::fs::OpenOptions::new()
        .write(true)
        .open(lake.join("_evlake/lock"))
        .unwrap();
    held.try_lock().unwrap();
    let s = ok(&lake, &["silver", "--dry-run", "--json"]);
    assert_eq!(s["status"], "dry_run", "{s}");
    assert_eq!(list(&s["plan"]["silver_dates"]), dates, "{s}");
    let o = run(&lake, &["silver", "--dry-run"]);
    assert!(
        stderr(&o).contains(&format!(
            "Would recompute silver for {} (session reach can add neighbouring dates)",
            dates.join(", ")
        )) && stderr(&o).contains("Dry run nothing changed"),
        "{}",
        stderr(&o)
    );
    // Gold reads silver as it is: nothing of it is dirty before silver runs.
    let g = ok(&lake, &["gold", "--dry-run", "--json"]);
    assert_eq!(g["status"], "dry_run", "{g}");
    assert_eq!(list(&g["plan"]["gold_dates"]), Vec::<String>::new(), "{g}");
    assert_eq!(list(&g["silver_dirty"]), dates, "{g}");
    assert!(
        stderr(&run(&lake, &["gold", "--dry-run"]))
            .contains("gold would read silver as it is, run `evlake silver` first")
    );
    drop(held);
    assert_eq!((commits(&lake), files_on_disk(&lake)), before);
    let real = ok(&lake, &["silver", "--json"]);
    let rebuilt = list(&real["recomputed"]["events"]);
    assert!(dates.iter().all(|d| rebuilt.contains(d)), "{real}");
    assert_eq!(
        list(&ok(&lake, &["silver", "--dry-run", "--json"])["plan"]["silver_dates"]),
        Vec::<String>::new()
    );
    let g = ok(&lake, &["gold", "--dry-run", "--json"]);
    let planned = list(&g["plan"]["gold_dates"]);
    assert!(!planned.is_empty(), "{g}");
    let real = ok(&lake, &["gold", "--json"]);
    assert_eq!(
        list(&real["recomputed"]["daily_metrics"]),
        planned,
        "{real}"
    );
    // --full plans every date, --dates the range.
    let all = list(&ok(&lake, &["gold", "--dry-run", "--full", "--json"])["plan"]["gold_dates"]);
    assert_eq!(
        all,
        list(&ok(&lake, &["gold", "--full", "--json"])["recomputed"]["daily_metrics"])
    );
    let one = ok(
        &lake,
        &["silver", "--dry-run", "--dates", &dates[0], "--json"],
    );
    assert_eq!(
        list(&one["plan"]["silver_dates"]),
        [dates[0].clone()],
        "{one}"
    );
}

/// After an ingest alone, `status` says silver and gold are not built yet
/// (they are not "dirty": nothing of them exists), and `run` builds them.
#[test]
fn status_names_the_layers_not_built_yet() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ok(&lake, &["ingest", &sample("2024-03-15.jsonl")]);
    let st = ok(&lake, &["status", "--json"]);
    assert_eq!(
        st["not_built"],
        serde_json::json!(["silver", "gold"]),
        "{st}"
    );
    let o = run(&lake, &["status"]);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("not built  silver, gold (`evlake run` builds them from bronze)"),
        "{text}"
    );
    ok(&lake, &["silver"]);
    assert_eq!(
        ok(&lake, &["status", "--json"])["not_built"],
        serde_json::json!(["gold"])
    );
    ok(&lake, &["run"]);
    let st = ok(&lake, &["status", "--json"]);
    assert_eq!(st["not_built"], serde_json::json!([]), "{st}");
    assert!(
        !String::from_utf8(run(&lake, &["status"]).stdout)
            .unwrap()
            .contains("not built")
    );
}

/// `status` lists as dirty what `evlake run` without flags would
/// recompute: a setting changed in evlake.toml makes every date of the
/// layer it shapes dirty there, and the run that applies it clears them.
#[test]
fn status_shows_what_a_changed_evlake_toml_makes_dirty() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ok(&lake, &["run", &sample("2024-03-15.jsonl")]);
    let dirty = |lake: &std::path::Path| {
        let mut out = dirty_partitions(lake);
        out.sort();
        out
    };
    assert_eq!(dirty(&lake), vec![]);
    let dates: Vec<String> = ok(&lake, &["status", "--json"])["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["event_date"].as_str().unwrap().to_string())
        .collect();
    assert!(dates.len() >= 2, "{dates:?}");
    let changed = |table: &str| -> Vec<(String, String, String)> {
        dates
            .iter()
            .map(|d| {
                (
                    table.to_string(),
                    d.clone(),
                    "fingerprint_changed".to_string(),
                )
            })
            .collect()
    };
    // Each setting that differs is named, with its value when built.
    let because =
        |lake: &std::path::Path| ok(lake, &["status", "--json"])["settings_changed"].clone();
    assert_eq!(because(&lake), serde_json::json!([]));
    std::fs::write(
        lake.join("evlake.toml"),
        "[silver]\nsession_gap = \"10m\"\n",
    )
    .unwrap();
    assert_eq!(dirty(&lake), changed("events"));
    assert_eq!(
        because(&lake),
        serde_json::json!(["silver.session_gap: 30m0s when built (commit 2), 10m0s now"])
    );
    std::fs::write(lake.join("evlake.toml"), "[gold]\ncurrency = \"eur\"\n").unwrap();
    assert_eq!(dirty(&lake), changed("daily_metrics"));
    assert_eq!(
        because(&lake),
        serde_json::json!(["gold.currency: USD when built (commit 3), EUR now"])
    );
    let text = String::from_utf8(run(&lake, &["status"]).stdout).unwrap();
    assert!(text.contains("SQL or settings changed"), "{text}");
    // Consecutive dates with the same reason are one line.
    assert!(
        text.contains(&format!(
            "  daily_metrics {}..{} ({} dates): SQL or settings changed",
            dates[0],
            dates[dates.len() - 1],
            dates.len()
        )),
        "{text}"
    );
    assert!(
        text.contains("  because gold.currency: USD when built (commit 3), EUR now"),
        "{text}"
    );
    ok(&lake, &["run"]);
    assert_eq!(dirty(&lake), vec![]);
    assert_eq!(because(&lake), serde_json::json!([]));
    // A build by an evlake whose silver SQL differed (same settings): said
    // so, since no setting explains it.
    {
        use evlake::log::{self, Commit, LakeState};
        let l = evlake::lake::Lake::new(&lake);
        let state = LakeState::load(&l).unwrap();
        let mut c = Commit::next(&state, "silver", 0);
        c.settings
            .insert("session_gap_us".into(), "1800000000".into());
        for (p, _) in state.partitions(evlake::bronze::TABLE) {
            c.builds.push(evlake::dirty::build_record(
                &state,
                evlake::silver::EVENTS_TABLE,
                p,
                &[evlake::dirty::input_key(evlake::bronze::TABLE, p)],
                "an-older-sql",
            ));
        }
        log::write_commit(&l, &c).unwrap();
    }
    let why = because(&lake);
    assert_eq!(why.as_array().unwrap().len(), 1, "{why}");
    assert!(
        why[0]
            .as_str()
            .unwrap()
            .starts_with("silver: same settings, but its SQL differs"),
        "{why}"
    );
    // A bad value is a usage error naming the key, as for `run`.
    std::fs::write(
        lake.join("evlake.toml"),
        "[silver]\nsession_gap = \"forever\"\n",
    )
    .unwrap();
    let o = run(&lake, &["status"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("silver.session_gap"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `LAKE/daily/NAME.sql` adds gold table `NAME`: its SQL runs once per
/// date over that date's silver rows, only for the dirty dates, and the
/// result equals a full rebuild. Editing it recomputes only it; removing
/// it drops it; bad files are usage errors naming the file.
#[test]
fn a_lake_adds_edits_and_drops_its_own_daily_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let batches = expected()["batches"].as_array().unwrap().clone();
    run_batch(&lake, &batches[0]);
    let daily = lake.join("daily");
    std::fs::create_dir(&daily).unwrap();
    let users = "SELECT event_date, count(DISTINCT user_id) AS users, count(*) AS events\n\
                 FROM events GROUP BY event_date\n";
    std::fs::write(daily.join("active_users.sql"), users).unwrap();
    // Sessions are read by session_date.
    std::fs::write(
        daily.join("session_count.sql"),
        "SELECT session_date AS event_date, count(*) AS sessions FROM sessions GROUP BY 1",
    )
    .unwrap();
    let dirty = dirty_partitions(&lake);
    assert!(
        !dirty.is_empty()
            && dirty
                .iter()
                .all(|(t, _, _)| t == "active_users" || t == "session_count"),
        "{dirty:?}"
    );
    let st = ok(&lake, &["status", "--json"]);
    assert_eq!(st["own_daily_tables"][0]["reads"][0], "events", "{st}");
    let r = ok(&lake, &["run", "--json"]);
    let recomputed: Vec<&String> = r["gold"]["recomputed"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(recomputed, ["active_users", "session_count"], "{r}");
    // What it holds is the query's answer over every date at once.
    let direct = "SELECT CAST(event_date AS VARCHAR), count(DISTINCT user_id), count(*) \
                  FROM events GROUP BY 1 ORDER BY 1";
    let mine = "SELECT CAST(event_date AS VARCHAR), users, events FROM active_users ORDER BY 1";
    assert_eq!(query_csv(&lake, mine), query_csv(&lake, direct));
    let sessions_direct = "SELECT CAST(session_date AS VARCHAR), count(*) FROM sessions \
                           GROUP BY 1 ORDER BY 1";
    let sessions_mine =
        "SELECT CAST(event_date AS VARCHAR), sessions FROM session_count ORDER BY 1";
    assert_eq!(
        query_csv(&lake, sessions_mine),
        query_csv(&lake, sessions_direct)
    );

    // Late events: only the dates whose silver changed are recomputed,
    // and the answer equals a full rebuild.
    for b in &batches[1..] {
        let r = run_batch(&lake, b);
        let dates = |layer: &str, t: &str| {
            let v = &r[layer]["recomputed"][t];
            if v.is_null() { Vec::new() } else { list(v) }
        };
        // Each recomputes the dates where what it reads changed.
        assert_eq!(
            dates("gold", "active_users"),
            dates("silver", "events"),
            "{r}"
        );
        assert_eq!(
            dates("gold", "session_count"),
            dates("silver", "sessions"),
            "{r}"
        );
    }
    assert_eq!(query_csv(&lake, mine), query_csv(&lake, direct));
    assert_eq!(
        query_csv(&lake, sessions_mine),
        query_csv(&lake, sessions_direct)
    );
    let full = tmp.path().join("full");
    copy_dir(&lake, &full);
    ok(&full, &["gold", "--full"]);
    for q in [mine, sessions_mine] {
        assert_eq!(query_csv(&lake, q), query_csv(&full, q), "{q}");
    }
    let tables = String::from_utf8(run(&lake, &["tables"]).stdout).unwrap();
    assert!(
        tables.contains("active_users (gold, gold/active_users)"),
        "{tables}"
    );
    let text = String::from_utf8(run(&lake, &["status"]).stdout).unwrap();
    assert!(text.contains("daily      `active_users` from"), "{text}");

    // Edited: recomputed alone, every date.
    std::fs::write(
        daily.join("active_users.sql"),
        users.replace(
            "count(*) AS events",
            "count(*) AS events, max(event_timestamp) AS last",
        ),
    )
    .unwrap();
    let plan = ok(&lake, &["run", "--dry-run", "--json"]);
    assert!(
        !list(&plan["plan"]["daily_tables"]["active_users"]).is_empty(),
        "{plan}"
    );
    assert_eq!(
        list(&plan["plan"]["daily_tables"]["session_count"]),
        Vec::<String>::new()
    );
    let r = ok(&lake, &["run", "--json"]);
    let recomputed: Vec<&String> = r["gold"]["recomputed"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(recomputed, ["active_users"], "{r}");
    assert_eq!(
        query_csv(
            &lake,
            "SELECT count(*) FROM active_users WHERE last IS NOT NULL"
        ),
        query_csv(&lake, "SELECT count(DISTINCT event_date) FROM events")
    );
    assert_eq!(ok(&lake, &["run", "--json"])["status"], "noop");

    // Removed: dropped.
    let counts = |lake: &Path| query_csv(lake, "SELECT * FROM session_count ORDER BY event_date");
    let before = counts(&lake);
    let sql = std::fs::read_to_string(daily.join("session_count.sql")).unwrap();
    std::fs::remove_file(daily.join("session_count.sql")).unwrap();
    ok(&lake, &["run"]);
    run_says(
        &lake,
        &["query", "SELECT * FROM session_count"],
        2,
        "session_count",
    );
    // The same file back: computed again for every date, not taken for
    // built by the records of before the drop.
    std::fs::write(daily.join("session_count.sql"), &sql).unwrap();
    ok(&lake, &["run"]);
    assert_eq!(counts(&lake), before);
    std::fs::remove_file(daily.join("session_count.sql")).unwrap();
    let r = ok(&lake, &["run", "--json"]);
    assert_eq!(r["status"], "committed", "{r}");
    run_says(
        &lake,
        &["query", "SELECT * FROM session_count"],
        2,
        "session_count",
    );
    assert!(!lake.join("gold/session_count").exists());
    assert_eq!(files_on_disk(&lake), committed_files(&lake));

    // Bad files.
    let bad = |name: &str, sql: &str, args: &[&str], says: &str| {
        let path = daily.join(name);
        std::fs::write(&path, sql).unwrap();
        run_says(&lake, args, 2, says);
        run_says(&lake, args, 2, name);
        std::fs::remove_file(&path).unwrap();
    };
    bad(
        "per-day.sql",
        "SELECT 1",
        &["status"],
        "a daily table's name is lowercase letters, digits and _",
    );
    bad(
        "PerDay.sql",
        "SELECT 1",
        &["gold"],
        "a daily table's name is lowercase letters, digits and _",
    );
    bad(
        "7day.sql",
        "SELECT 1",
        &["query", "SELECT 1"],
        "`7day` cannot name a table: `SELECT * FROM 7day` does not parse",
    );
    bad(
        "daily_metrics.sql",
        "SELECT 1",
        &["query", "SELECT 1"],
        "`daily_metrics` is another table's name",
    );
    bad(
        "purchases.sql",
        "SELECT 1",
        &["status"],
        "`purchases` is another table's name",
    );
    bad(
        "raw.sql",
        "SELECT event_date, count(*) AS n FROM bronze_events GROUP BY 1",
        &["run"],
        "reads `bronze_events`, which is not a silver table",
    );
    bad(
        "no_date.sql",
        "SELECT count(*) AS n FROM events",
        &["run"],
        "returns no event_date column",
    );
    bad(
        "other_date.sql",
        "SELECT DATE '2020-01-01' AS event_date, count(*) AS n FROM events",
        &["run"],
        "returned a row of event_date 2020-01-01",
    );
    bad(
        "broken.sql",
        "SELECT no_such_column, event_date FROM events",
        &["gold"],
        "does not plan",
    );
    // A value that changes with when a date is computed: incremental
    // could not equal --full.
    bad(
        "member.sql",
        "SELECT event_date, properties->'amount' AS amount FROM events",
        &["gold"],
        "returns column `amount`, a union of types",
    );
    bad(
        "span.sql",
        "SELECT event_date, INTERVAL '1 day' AS span FROM events GROUP BY 1",
        &["run"],
        "returns column `span` (Interval(MonthDayNano)), an interval of months, days and \
         nanoseconds, which Parquet cannot store: write it as text, CAST(span AS VARCHAR)",
    );
    bad(
        "stamped.sql",
        "SELECT event_date, count(*) AS n, max(now()) AS at FROM events GROUP BY 1",
        &["gold"],
        "its SQL uses now(), whose value is not fixed by the rows",
    );
    bad(
        "sampled.sql",
        "SELECT event_date, count(*) AS n FROM events WHERE random() < 0.5 GROUP BY 1",
        &["run"],
        "uses random(), whose value is not fixed by the rows (it changes on every call)",
    );
    // The parser's message says where, in the file's lines.
    let garbled =
        "-- a note\nSELECT event_date, count(*) AS n\nFROM events GROUP BY event_date event_date";
    bad(
        "garbled.sql",
        garbled,
        &["run"],
        "does not parse: SQL error: ParserError(\"Expected: end of statement, found: event_date \
         at Line: 3, Column: 33\")",
    );
    // Running out of input has no position of the parser's: the end of
    // the file's SQL stands for it.
    bad(
        "cut.sql",
        "SELECT event_date, count(*) AS n\nFROM events GROUP BY\n\n",
        &["gold"],
        "found: EOF\") (where it ends: Line: 2, Column: 21)",
    );
    // `status` says so before a run fails on it.
    std::fs::write(daily.join("garbled.sql"), garbled).unwrap();
    let text = String::from_utf8(run(&lake, &["status"]).stdout).unwrap();
    assert!(
        text.contains("`garbled` from")
            && text.contains("its SQL does not parse: ")
            && text.contains("Line: 3, Column: 33\"); `evlake gold` fails"),
        "{text}"
    );
    std::fs::remove_file(daily.join("garbled.sql")).unwrap();
    assert_eq!(ok(&lake, &["run", "--json"])["status"], "noop");
}

/// A bad daily table of the lake's own fails alone: `run` still builds
/// `daily_metrics`, the other daily tables and the snapshots, then exits 2
/// at step gold naming the file; the table's dates stay dirty, and once
/// the file is fixed the next run builds them and exits 0.
#[test]
fn a_bad_daily_table_fails_alone_and_the_rest_of_gold_is_built() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let batches = expected()["batches"].as_array().unwrap().clone();
    run_batch(&lake, &batches[0]);
    std::fs::write(
        lake.join("evlake.toml"),
        "[state]\nsnapshot_models = [\"balances\"]\n",
    )
    .unwrap();
    let daily = lake.join("daily");
    std::fs::create_dir(&daily).unwrap();
    let good = "SELECT event_date, count(*) AS n FROM events GROUP BY event_date";
    std::fs::write(daily.join("good.sql"), good).unwrap();
    std::fs::write(
        daily.join("bad.sql"),
        "SELECT event_date, count(no_such_column) AS n FROM events GROUP BY event_date",
    )
    .unwrap();
    // SQL that plans, and fails on the rows it reads.
    std::fs::write(
        daily.join("cast.sql"),
        "SELECT event_date, sum(CAST(event_id AS INT)) AS n FROM events GROUP BY event_date",
    )
    .unwrap();
    for b in &batches[1..] {
        let path = sample(b["file"].as_str().unwrap());
        let args = [
            "run",
            path.as_str(),
            "--processing-time",
            b["processing_time"].as_str().unwrap(),
            "--json",
        ];
        let o = run_says(&lake, &args, 2, "step `gold` failed: daily table `bad` (");
        assert!(
            stderr(&o).contains("bad.sql): its SQL does not plan"),
            "{}",
            stderr(&o)
        );
        let r: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["failed_step"], "gold", "{r}");
        assert_eq!(r["gold"]["failed"][0]["table"], "bad", "{r}");
        assert_eq!(r["gold"]["failed"][1]["table"], "cast", "{r}");
        let cast = r["gold"]["failed"][1]["error"].as_str().unwrap();
        assert!(
            cast.contains("cast.sql): its SQL failed on the rows of 2024-")
                && cast.contains("Cast error")
                && cast.contains("TRY_CAST gives NULL"),
            "{cast}"
        );
        assert!(r["gold"]["recomputed"]["daily_metrics"].is_array(), "{r}");
        assert!(r["gold"]["recomputed"].get("bad").is_none(), "{r}");
        // The snapshot step ran after it.
        assert_eq!(r["snapshots"][0]["model"], "balances", "{r}");
    }
    assert_eq!(query_csv(&lake, METRICS), expected_metrics());
    assert_eq!(
        query_csv(
            &lake,
            "SELECT CAST(event_date AS VARCHAR), n FROM good ORDER BY 1"
        ),
        query_csv(
            &lake,
            "SELECT CAST(event_date AS VARCHAR), count(*) FROM events GROUP BY 1 ORDER BY 1"
        )
    );
    // Nothing else to do but the bad tables: `gold` says so, and fails.
    let o = run_says(&lake, &["gold"], 2, "the rest of gold was up to date");
    assert!(
        stderr(&o).contains("gold but for `bad`, `cast` is up to date"),
        "{}",
        stderr(&o)
    );
    let dirty = dirty_partitions(&lake);
    assert!(
        !dirty.is_empty() && dirty.iter().all(|(t, _, _)| t == "bad" || t == "cast"),
        "{dirty:?}"
    );
    // A dry run plans the lake's own SQL over empty tables: it predicts
    // the failure that needs no row (`bad`), exits 2 for it, and changes
    // nothing; `status` says it too. `cast` fails only on rows.
    let before = commits(&lake);
    let o = run_says(
        &lake,
        &["run", "--dry-run", "--json"],
        2,
        "step `gold` would fail: daily table `bad` (",
    );
    assert!(
        stderr(&o).contains("Would leave out daily table bad (")
            && !stderr(&o).contains("daily table `cast`"),
        "{}",
        stderr(&o)
    );
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (&r["status"], &r["failed_step"]),
        (&serde_json::json!("dry_run"), &serde_json::json!("gold")),
        "{r}"
    );
    assert_eq!(r["plan"]["refused"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["plan"]["refused"][0]["table"], "bad", "{r}");
    // So does `gold --dry-run`, which plans `cast` as the rest.
    let o = run_says(
        &lake,
        &["gold", "--dry-run", "--json"],
        2,
        "daily table `bad` (",
    );
    assert!(
        stderr(&o).contains("Would leave out daily table bad, building the rest")
            && stderr(&o).contains("Would recompute daily table cast for"),
        "{}",
        stderr(&o)
    );
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["status"], "dry_run", "{r}");
    assert_eq!(r["failed"][0]["table"], "bad", "{r}");
    assert!(r["plan"]["daily_tables"]["bad"].is_array(), "{r}");
    assert!(r["plan"]["daily_tables"]["cast"].is_array(), "{r}");
    assert_eq!(commits(&lake), before);
    let s = ok(&lake, &["status", "--json"]);
    let problems: Vec<(&str, bool)> = s["own_daily_tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["table"].as_str().unwrap(), t.get("problem").is_some()))
        .collect();
    assert_eq!(
        problems,
        [("bad", true), ("cast", false), ("good", false)],
        "{s}"
    );
    let o = run(&lake, &["status"]);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains(
            "bad.sql (reads events): its SQL does not plan: Schema error: No field named"
        ) && !text.contains("daily table `bad`"),
        "{text}"
    );
    std::fs::write(daily.join("bad.sql"), good).unwrap();
    std::fs::write(daily.join("cast.sql"), good).unwrap();
    let r = ok(&lake, &["run", "--json"]);
    assert_eq!(r["failed_step"], Value::Null, "{r}");
    let recomputed: Vec<&String> = r["gold"]["recomputed"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(recomputed, ["bad", "cast"], "{r}");
    assert_eq!(ok(&lake, &["run", "--json"])["status"], "noop");
}

/// Currency codes are compared and grouped upper-cased and trimmed: `usd`
/// and ` USD ` are USD, in `daily_metrics`' revenue and in
/// `daily_revenue_by_currency`; a purchase without one is its own row.
/// `untyped_amounts` counts every purchase that adds nothing.
#[test]
fn currencies_are_grouped_upper_cased_and_trimmed() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let purchase = |id: &str, props: &str| {
        format!(
            "{{\"event_id\":\"{id}\",\"event_type\":\"purchase\",\"event_timestamp\":\"2024-03-10T10:00:00Z\",\"user_id\":\"u1\",\"properties\":{props}}}\n"
        )
    };
    let f = tmp.path().join("p.jsonl");
    std::fs::write(
        &f,
        [
            purchase("g1", r#"{"amount":"10.00","currency":"usd"}"#),
            purchase("g2", r#"{"amount":"5.00","currency":" USD "}"#),
            purchase("g3", r#"{"amount":"7.00"}"#),
            purchase("g4", r#"{"amount":"2.00","currency":"EUR"}"#),
            // Amounts that add nothing: missing, null, not a decimal.
            purchase("g5", r#"{"currency":"USD"}"#),
            purchase("g6", r#"{"amount":null,"currency":"usd"}"#),
            purchase("g7", r#"{"amount":"abc","currency":"USD"}"#),
        ]
        .concat(),
    )
    .unwrap();
    ok(
        &lake,
        &[
            "run",
            f.to_str().unwrap(),
            "--processing-time",
            "2024-03-11T00:00:00Z",
        ],
    );
    assert_eq!(
        query_csv(
            &lake,
            "SELECT currency, purchases, CAST(revenue AS VARCHAR), untyped_amounts \
             FROM daily_revenue_by_currency ORDER BY 1 NULLS LAST"
        ),
        ["EUR,1,2.00,0", "USD,5,15.00,3", ",1,7.00,0"]
    );
    assert_eq!(
        query_csv(
            &lake,
            "SELECT purchases, CAST(revenue AS VARCHAR) FROM daily_metrics"
        ),
        ["7,15.00"]
    );
    // The reporting currency is trimmed and upper-cased the same way.
    ok(&lake, &["gold", "--currency", " eur"]);
    assert_eq!(
        query_csv(&lake, "SELECT CAST(revenue AS VARCHAR) FROM daily_metrics"),
        ["2.00"]
    );
}

/// A purchase line with `amount` (JSON text) in `currency`.
fn purchase(id: &str, ts: &str, amount: &str, currency: &str) -> String {
    format!(
        "{{\"event_id\":\"{id}\",\"event_type\":\"purchase\",\"event_timestamp\":\"{ts}\",\"user_id\":\"u-{id}\",\"properties\":{{\"order_id\":\"o-{id}\",\"amount\":{amount},\"currency\":\"{currency}\"}}}}\n"
    )
}

/// A day whose purchases in one currency sum past Decimal(18,2) (two
/// card numbers sent as amounts, say) leaves that date unbuilt: the
/// run exits 1 naming the date, the currency, the sum and the largest
/// purchases; every other date is built (with `--full` too), the date's
/// gold rows stay as they were, and it stays dirty until the purchases
/// are taken back. Before, one such day failed all of gold on every run
/// with Arrow's bare "too large to store in a Decimal128".
#[test]
fn a_day_whose_revenue_overflows_is_left_dirty_and_the_rest_is_built() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let write = |name: &str, lines: &[String]| -> String {
        let f = tmp.path().join(name);
        std::fs::write(&f, lines.concat()).unwrap();
        f.to_str().unwrap().to_string()
    };
    let first = write(
        "first.jsonl",
        &[
            purchase("a", "2024-03-10T10:00:00Z", "\"10.00\"", "JPY"),
            purchase("b", "2024-03-11T10:00:00Z", "\"20.00\"", "JPY"),
        ],
    );
    ok(
        &lake,
        &["run", &first, "--processing-time", "2024-03-12T00:00:00Z"],
    );
    let revenue = |lake: &Path| {
        query_csv(
            lake,
            "SELECT CAST(event_date AS VARCHAR), currency, purchases, CAST(revenue AS VARCHAR) \
             FROM daily_revenue_by_currency ORDER BY 1, 2",
        )
    };
    let before = ["2024-03-10,JPY,1,10.00", "2024-03-11,JPY,1,20.00"];
    assert_eq!(revenue(&lake), before);

    // Late huge purchases on the 10th, and a normal one on the 12th.
    let huge = write(
        "huge.jsonl",
        &[
            purchase("big1", "2024-03-10T11:00:00Z", "4111111111111111", "JPY"),
            purchase("big2", "2024-03-10T12:00:00Z", "9999999999999999.99", "JPY"),
            purchase("small", "2024-03-10T13:00:00Z", "1", "JPY"),
            purchase("c", "2024-03-12T10:00:00Z", "\"30.00\"", "JPY"),
        ],
    );
    let o = run_says(
        &lake,
        &["run", &huge, "--processing-time", "2024-03-13T00:00:00Z"],
        1,
        "`daily_revenue_by_currency` not built for 2024-03-10: purchases in JPY sum to \
         14111111111111121.99, past the 9999999999999999.99 a revenue column (Decimal(18,2)) \
         holds; the largest: big2 (9999999999999999.99), big1 (4111111111111111.00), a (10.00)",
    );
    assert!(stderr(&o).contains("step `gold` failed"), "{}", stderr(&o));
    let after = [before[0], before[1], "2024-03-12,JPY,1,30.00"];
    assert_eq!(revenue(&lake), after);
    assert_eq!(
        query_csv(
            &lake,
            "SELECT CAST(event_date AS VARCHAR), purchases FROM daily_metrics ORDER BY 1"
        ),
        ["2024-03-10,1", "2024-03-11,1", "2024-03-12,1"]
    );
    let dirty: Vec<String> = dirty_partitions(&lake)
        .into_iter()
        .map(|(t, p, _)| format!("{t} {p}"))
        .collect();
    assert_eq!(dirty, ["daily_metrics 2024-03-10"]);
    // The same with --full; --json lists the dates left out.
    let o = run(&lake, &["gold", "--full", "--json"]);
    assert_eq!(exit_code(&o), 1, "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["failed"][0]["dates"],
        serde_json::json!(["2024-03-10"]),
        "{v}"
    );
    assert_eq!(v["failed"][1]["table"], "daily_metrics", "{v}");
    assert_eq!(revenue(&lake), after);

    // Taken back, the date is built again.
    let batch = query_csv(
        &lake,
        "SELECT DISTINCT batch_id FROM bronze_events WHERE event_id = 'big1'",
    );
    ok(&lake, &["retract", &batch[0]]);
    ok(&lake, &["run"]);
    assert_eq!(revenue(&lake), before);
    assert!(dirty_partitions(&lake).is_empty());
    assert_equals_full(&lake, &tmp.path().join("full"), "after the retract");
}
