//! `evlake silver`: sessionized events and sessions from bronze.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::*;

pub fn query_csv(lake: &Path, sql: &str) -> Vec<String> {
    let o = run(lake, &["query", sql, "--format", "csv"]);
    assert!(o.status.success(), "{sql}: {}", stderr(&o));
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

pub fn silver(lake: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "silver",
        "--json",
        "--processing-time",
        "2024-03-20T03:00:00Z",
    ];
    args.extend_from_slice(extra);
    ok(lake, &args)
}

fn events_and_sessions(lake: &Path) -> Vec<String> {
    query_csv(
        lake,
        "SELECT event_id, CAST(event_date AS VARCHAR), session_id FROM events ORDER BY 1, 2",
    )
}

#[test]
fn silver_dedups_and_sessionizes_the_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let exp = expected();
    for b in exp["batches"].as_array().unwrap() {
        ingest_sample_batch(&lake, b);
    }
    let s = silver(&lake, &[]);
    assert_eq!(s["status"], "committed");
    // Events per date = distinct event ids (re-sends removed).
    let got: BTreeMap<String, u64> = query_csv(
        &lake,
        "SELECT CAST(event_date AS VARCHAR), count(*) FROM events GROUP BY 1 ORDER BY 1",
    )
    .iter()
    .map(|l| {
        let (d, n) = l.split_once(',').unwrap();
        (d.to_string(), n.parse().unwrap())
    })
    .collect();
    let want: BTreeMap<String, u64> = exp["partitions"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(d, p)| (d.clone(), p["distinct_event_ids"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, want);
    // u1's session from 23:50 on the 14th to 00:48 on the 15th is one
    // session of the 14th.
    assert_eq!(
        query_csv(
            &lake,
            "SELECT CAST(session_date AS VARCHAR), event_count, duration_us FROM sessions \
             WHERE user_id = 'u1' ORDER BY session_start LIMIT 1"
        ),
        ["2024-03-14,5,3480000000"]
    );
    // u4's purchase at 14:30 and page view at 15:10 are bridged by the
    // late 14:50 event from the third batch: one converted session.
    assert_eq!(
        query_csv(
            &lake,
            "SELECT event_count, converted, landing_page FROM sessions \
             WHERE user_id = 'u4' AND session_start = TIMESTAMP '2024-03-15T14:30:00Z'"
        ),
        ["3,true,https://shop.example.com/checkout"]
    );
    // Nothing changed: a second run is a no-op and status is clean.
    assert_eq!(silver(&lake, &[])["status"], "noop");
    assert_eq!(
        ok(&lake, &["status", "--json"])["dirty"],
        Value::Array(vec![])
    );
}

#[test]
fn late_batches_make_silver_dirty_and_the_rebuild_equals_a_fresh_one() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = expected()["batches"].as_array().unwrap().clone();
    let grown = tmp.path().join("grown");
    ingest_sample_batch(&grown, &batches[0]);
    ingest_sample_batch(&grown, &batches[1]);
    silver(&grown, &[]);
    let before = query_csv(
        &grown,
        "SELECT event_count FROM sessions WHERE user_id = 'u4' \
         AND session_start = TIMESTAMP '2024-03-15T14:30:00Z'",
    );
    assert_eq!(
        before,
        ["1"],
        "before the bridge arrives the purchase is alone"
    );
    ingest_sample_batch(&grown, &batches[2]);
    let dirty: Vec<(String, String)> = dirty_partitions(&grown)
        .into_iter()
        .map(|(table, partition, _)| (table, partition))
        .filter(|(t, _)| t == "events")
        .collect();
    assert_eq!(
        dirty,
        [
            ("events".to_string(), "2024-03-15".to_string()),
            ("events".into(), "2024-03-16".into()),
            ("events".into(), "2024-03-19".into()),
            ("events".into(), "2024-03-20".into()),
        ]
    );
    let s = silver(&grown, &[]);
    assert_eq!(s["status"], "committed");
    assert_eq!(s["dirty"].as_array().unwrap().len(), 4);

    let fresh = tmp.path().join("fresh");
    for b in &batches {
        ingest_sample_batch(&fresh, b);
    }
    silver(&fresh, &["--full"]);
    assert_eq!(events_and_sessions(&grown), events_and_sessions(&fresh));
    assert_eq!(
        query_csv(&grown, "SELECT * FROM sessions ORDER BY session_id"),
        query_csv(&fresh, "SELECT * FROM sessions ORDER BY session_id")
    );
}

#[test]
fn a_new_session_gap_makes_silver_dirty() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ingest_sample_batches(&lake);
    silver(&lake, &[]);
    let n30 = query_csv(&lake, "SELECT count(*) FROM sessions");
    assert_eq!(silver(&lake, &[])["status"], "noop");
    let s = silver(&lake, &["--session-gap", "3h"]);
    assert_eq!(s["status"], "committed");
    assert_eq!(s["dirty"][0]["reasons"][0]["kind"], "fingerprint_changed");
    let n3h = query_csv(&lake, "SELECT count(*) FROM sessions");
    assert!(n3h[0].parse::<u64>().unwrap() < n30[0].parse::<u64>().unwrap());
}

#[test]
fn a_crash_at_every_step_of_silver_then_a_rerun_is_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    ingest_sample_batches(&reference);
    silver(&reference, &[]);
    let want = events_and_sessions(&reference);
    for step in evlake::fault::STEPS {
        let lake = tmp.path().join(format!("lake-{step}"));
        ingest_sample_batches(&lake);
        let o = cmd(&lake, &["silver"])
            .env("EVLAKE_FAULT", step)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{step}");
        // Re-run (a no-op after a crash past the commit).
        silver(&lake, &[]);
        assert_eq!(events_and_sessions(&lake), want, "{step}");
        assert_silver_files_are_the_logs(&lake, step);
    }
}

/// An incremental run loads a neighbouring date for a touched user whose
/// session crosses into it, extracts its typed rows along with the rest,
/// and keeps the built ones when the date's rows did not change: its bad
/// values are not counted again, and its typed rows are still there.
#[test]
fn an_unchanged_neighbour_keeps_its_typed_rows_and_is_not_counted_again() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let line = |id: &str, ts: &str, t: &str, props: &str| {
        format!(
            "{{\"event_id\":\"{id}\",\"event_type\":\"{t}\",\"event_timestamp\":\"{ts}\",\"user_id\":\"w\",\"properties\":{props}}}\n"
        )
    };
    let first = tmp.path().join("first.jsonl");
    std::fs::write(
        &first,
        // A bad amount at 23:50 on the 10th, in a session that runs into
        // the 11th.
        line(
            "w1",
            "2024-03-10T23:50:00Z",
            "purchase",
            r#"{"order_id":"o1","amount":"abc","currency":"USD"}"#,
        ) + &line("w2", "2024-03-11T00:10:00Z", "page_view", "{}")
            + &line("w3", "2024-03-12T09:00:00Z", "page_view", "{}"),
    )
    .unwrap();
    ok(
        &lake,
        &[
            "ingest",
            first.to_str().unwrap(),
            "--processing-time",
            "2024-03-12T10:00:00Z",
        ],
    );
    let s = silver(&lake, &[]);
    assert_eq!(s["warnings"]["purchases"], 1);
    // The warning names the event, so its raw value can be found.
    assert_eq!(
        s["warning_events"]["purchases"],
        serde_json::json!([{"event_date": "2024-03-10", "event_id": "w1"}]),
        "{s}"
    );
    // A late event on the 11th, hours after that session.
    let late = tmp.path().join("late.jsonl");
    std::fs::write(&late, line("w4", "2024-03-11T12:00:00Z", "page_view", "{}")).unwrap();
    ok(
        &lake,
        &[
            "ingest",
            late.to_str().unwrap(),
            "--processing-time",
            "2024-03-12T11:00:00Z",
        ],
    );
    let s = silver(&lake, &[]);
    assert_eq!(s["status"], "committed", "{s}");
    // The 10th was loaded (w's session crosses into the 11th) ...
    assert!(
        s["loaded_dates"]
            .as_array()
            .unwrap()
            .contains(&Value::from("2024-03-10")),
        "{s}"
    );
    // ... and not rewritten: only the 11th was.
    for table in ["events", "purchases"] {
        let dates: Vec<&str> = s["recomputed"][table]
            .as_array()
            .map(|a| a.iter().map(|d| d.as_str().unwrap()).collect())
            .unwrap_or_default();
        assert!(!dates.contains(&"2024-03-10"), "{table}: {s}");
    }
    assert_eq!(s["warnings"]["purchases"], 0, "{s}");
    assert!(s["warning_events"].as_object().unwrap().is_empty(), "{s}");
    assert_eq!(
        query_csv(&lake, "SELECT order_id, amount FROM purchases"),
        ["o1,"]
    );
    assert_eq!(query_csv(&lake, "SELECT count(*) FROM events"), ["4"]);
}

#[test]
fn typed_tables_keep_exact_decimals_and_count_bad_values() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ingest_sample_batches(&lake);
    // Wrong types and an amount with a third decimal place.
    let bad = tmp.path().join("bad.jsonl");
    let line = |id: &str, t: &str, props: &str| {
        format!(
            "{{\"event_id\":\"{id}\",\"event_type\":\"{t}\",\"event_timestamp\":\"2024-03-19T12:00:00Z\",\"user_id\":\"u9\",\"properties\":{props}}}\n"
        )
    };
    std::fs::write(
        &bad,
        line(
            "x1",
            "purchase",
            r#"{"order_id":"o11","amount":"abc","currency":"EUR","product_id":"p1"}"#,
        ) + &line(
            "x2",
            "purchase",
            r#"{"order_id":"o12","amount":1.999,"currency":"EUR","product_id":"p1"}"#,
        ) + &line(
            "x3",
            "search",
            r#"{"query_text":"lamp","result_count":"many"}"#,
        ) + &line(
            "x4",
            "purchase",
            r#"{"order_id":"o13","amount":123456789012345.67,"currency":"EUR","product_id":"p2"}"#,
        ) + &line(
            // Exponent forms (Java's BigDecimal writes 1000 as 1E+3) and
            // trailing zeros are exact; whitespace around a quoted amount
            // is not part of it, as in a CAST to DECIMAL.
            "x5",
            "purchase",
            r#"{"order_id":"o14","amount":1E+3,"currency":"EUR","product_id":"p2"}"#,
        ) + &line(
            "x6",
            "purchase",
            r#"{"order_id":"o15","amount":" 19.990 ","currency":"EUR","product_id":"p2"}"#,
        ) + &line("x7", "deposit", r#"{"account_id":"acct-x","amount":2.5e1}"#),
    )
    .unwrap();
    ok(
        &lake,
        &[
            "ingest",
            bad.to_str().unwrap(),
            "--processing-time",
            "2024-03-20T03:00:00Z",
        ],
    );
    let out = run(&lake, &["silver", "--json"]);
    assert_eq!(exit_code(&out), 0, "{}", stderr(&out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["warnings"]["purchases"], 2, "{s}");
    assert_eq!(s["warnings"]["searches"], 1, "{s}");
    assert_eq!(s["warnings"]["ledger"], 0, "{s}");
    // Each warning names the events with an untyped value (by date and id).
    let ids = |table: &str| -> Vec<String> {
        s["warning_events"][table]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["event_date"].as_str().unwrap(),
                    e["event_id"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(ids("purchases"), ["2024-03-19 x1", "2024-03-19 x2"], "{s}");
    assert_eq!(ids("searches"), ["2024-03-19 x3"], "{s}");
    assert!(ids("ledger").is_empty(), "{s}");
    let err = stderr(&out);
    assert!(
        err.contains("2 value(s) in purchases could not be typed or are out of range, and are NULL, in event(s) x1 (2024-03-19), x2 (2024-03-19)"),
        "{err}"
    );

    assert_eq!(
        query_csv(
            &lake,
            "SELECT order_id, CAST(amount AS VARCHAR), arrow_typeof(amount) FROM purchases ORDER BY order_id"
        ),
        [
            "o10,5.00,\"Decimal128(18, 2)\"",
            "o11,,\"Decimal128(18, 2)\"",
            "o12,,\"Decimal128(18, 2)\"",
            "o13,123456789012345.67,\"Decimal128(18, 2)\"",
            "o14,1000.00,\"Decimal128(18, 2)\"",
            "o15,19.99,\"Decimal128(18, 2)\"",
            "o9,19.99,\"Decimal128(18, 2)\"",
        ]
    );
    assert_eq!(
        query_csv(
            &lake,
            "SELECT CAST(amount AS VARCHAR) FROM ledger WHERE event_id = 'x7'"
        ),
        ["25.00"]
    );
    assert_eq!(
        query_csv(
            &lake,
            "SELECT query_text, result_count FROM searches WHERE event_id = 'x3'"
        ),
        ["lamp,"]
    );
    // Ledger: deposits +, withdrawals -, the correction's delta as is.
    assert_eq!(
        query_csv(
            &lake,
            "SELECT account_id, CAST(sum(amount) AS VARCHAR), count(*), count(corrects_event_id) \
             FROM ledger GROUP BY 1 ORDER BY 1"
        ),
        [
            "acct-u2,180.01,3,1",
            "acct-u3,924.60,2,0",
            "acct-x,25.00,1,0"
        ]
    );
    // Every typed table carries the silver session_id.
    for t in ["purchases", "searches", "signups", "cart_adds", "ledger"] {
        let n = query_csv(
            &lake,
            &format!(
                "SELECT count(*) FROM {t} t JOIN events e ON t.event_id = e.event_id \
                 AND t.event_date = e.event_date AND t.session_id = e.session_id"
            ),
        );
        let all = query_csv(&lake, &format!("SELECT count(*) FROM {t}"));
        assert_eq!(n, all, "{t}");
        assert_ne!(all, ["0"], "{t} is empty");
    }
}

pub fn ev(id: &str, ty: &str, ts: &str, user: &str) -> String {
    format!(
        "{{\"event_id\":\"{id}\",\"event_type\":\"{ty}\",\"event_timestamp\":\"{ts}\",\"user_id\":\"{user}\",\"page_url\":\"/{id}\",\"properties\":{{\"order_id\":\"o-{id}\",\"amount\":\"1.00\",\"currency\":\"USD\",\"product_id\":\"p\"}}}}\n"
    )
}

pub fn list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// Incremental silver (and gold, if built) equals `silver --full` (and
/// `gold --full`) on a copy of the lake.
pub fn assert_equals_full(lake: &Path, scratch: &Path, what: &str) {
    let _ = std::fs::remove_dir_all(scratch);
    copy_dir(lake, scratch);
    let f = silver(scratch, &["--full"]);
    assert_eq!(f["mode"], "full");
    let mut a = silver_dump(lake);
    let mut b = silver_dump(scratch);
    if lake.join("gold").exists() {
        let g = ok(scratch, &["gold", "--full", "--json"]);
        assert_eq!(g["mode"], "full");
        a.extend(gold_dump(lake));
        b.extend(gold_dump(scratch));
    }
    assert_dumps_equal(&a, &b, &format!("{what}: incremental vs --full"));
}

#[test]
fn a_late_merge_rewrites_exactly_the_partitions_whose_rows_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    // u: 23:40 on the 14th, then 00:25 and 00:40 (a purchase) on the 15th:
    // 45 minutes apart, two sessions. w's session crosses 16th → 17th.
    // v has one event on the 14th and one on the 16th.
    ingest_lines(
        &lake,
        tmp.path(),
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
    let s = silver(&lake, &[]);
    assert_eq!(s["mode"], "full", "nothing built yet: {s}");
    let sid = |e: &str| {
        query_csv(
            &lake,
            &format!("SELECT session_id FROM events WHERE event_id = '{e}'"),
        )
    };
    let (s1, s2) = (sid("e1"), sid("e3"));
    assert_ne!(s1, s2);

    // A late event at 23:59 on the 14th bridges u's two sessions: the 14th
    // is dirty, and the 15th's rows change (its session ids, and its
    // session moves to the 14th), so both are rewritten; the 16th is not.
    ingest_lines(
        &lake,
        tmp.path(),
        "b2.jsonl",
        &[ev("e2", "page_view", "2024-03-14T23:59:00Z", "u")],
        "2024-03-19T02:00:00Z",
    );
    let s = silver(&lake, &[]);
    assert_eq!(s["mode"], "incremental", "{s}");
    // Only u has a new row on the 14th: v's rows there are as built, so v
    // is not recomputed (the 14th's rewrite keeps v's built rows).
    assert_eq!(s["touched_users"], 1, "only u's rows on the 14th grew: {s}");
    assert_eq!(list(&s["loaded_dates"]), ["2024-03-14", "2024-03-15"]);
    let rec = &s["recomputed"];
    assert_eq!(list(&rec["events"]), ["2024-03-14", "2024-03-15"], "{s}");
    assert_eq!(list(&rec["sessions"]), ["2024-03-14", "2024-03-15"], "{s}");
    assert_eq!(list(&rec["purchases"]), ["2024-03-15"], "{s}");
    assert_eq!(rec.as_object().unwrap().len(), 3, "{s}");
    // The 15th's sessions partition is now empty (its only session moved).
    assert!(
        s["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["table"] == "sessions" && p["partition"] == "2024-03-15" && p["rows"] == 0),
        "{s}"
    );
    assert_eq!(sid("e3"), s1, "e3 joined the session of e1");
    assert_eq!(sid("e4"), s1);
    assert_eq!(
        query_csv(
            &lake,
            "SELECT session_id FROM purchases WHERE event_id = 'e4'"
        ),
        s1
    );
    assert_equals_full(&lake, &tmp.path().join("full-1"), "after the bridge");

    // Late events for v and w on the 16th: only they are touched (u has
    // no row there). w's session reaches the 17th, which is loaded but
    // unchanged (the session still starts at w1, so w2 keeps its id): not
    // rewritten.
    ingest_lines(
        &lake,
        tmp.path(),
        "b3.jsonl",
        &[
            ev("v3", "page_view", "2024-03-16T09:10:00Z", "v"),
            ev("w0", "page_view", "2024-03-16T23:55:00Z", "w"),
        ],
        "2024-03-20T02:00:00Z",
    );
    let s = silver(&lake, &[]);
    assert_eq!(s["touched_users"], 2, "{s}");
    assert_eq!(list(&s["loaded_dates"]), ["2024-03-16", "2024-03-17"]);
    assert_eq!(list(&s["recomputed"]["events"]), ["2024-03-16"], "{s}");
    assert_eq!(list(&s["recomputed"]["sessions"]), ["2024-03-16"], "{s}");
    assert_eq!(s["recomputed"].as_object().unwrap().len(), 2, "{s}");
    assert_equals_full(&lake, &tmp.path().join("full-2"), "after v3");

    // --dates restates a range that is not dirty; a no-op run otherwise.
    assert_eq!(silver(&lake, &[])["status"], "noop");
    let s = silver(&lake, &["--dates", "2024-03-15..2024-03-16"]);
    assert_eq!(list(&s["restated"]), ["2024-03-15", "2024-03-16"]);
    assert_eq!(
        list(&s["recomputed"]["events"]),
        ["2024-03-15", "2024-03-16"]
    );
    assert_equals_full(&lake, &tmp.path().join("full-3"), "after --dates");
    // A range with no date of the lake (a wrong year): a warning, exit 0.
    for step in ["silver", "gold"] {
        let o = run_says(
            &lake,
            &["-q", step, "--dates", "2023-03-15..2023-03-16"],
            0,
            "Warning --dates 2023-03-15..2023-03-16 names no date this lake has events on: \
             nothing was restated",
        );
        assert!(o.stdout.is_empty());
    }
    let o = run(&lake, &["silver", "--dates", "2024-03-15"]);
    assert!(
        !stderr(&o).contains("nothing was restated"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn property_incremental_silver_and_gold_equal_full_after_every_late_batch() {
    // Few users and many late events: sessions cross midnight, late events
    // extend and merge sessions across days. Batches arrive in a shuffled
    // order, so whole days arrive late.
    let tmp = tempfile::tempdir().unwrap();
    for seed in [11u64, 12, 13] {
        let gen_dir = tmp.path().join(format!("gen-{seed}"));
        generate(
            &gen_dir,
            &[
                "--events",
                "1500",
                "--seed",
                &seed.to_string(),
                "--days",
                "5",
                "--users",
                "12",
                "--late-rate",
                "0.6",
                "--bad-rate",
                "0",
            ],
        );
        let mut files: Vec<PathBuf> = std::fs::read_dir(gen_dir.join("batches"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        // A seeded Fisher-Yates shuffle.
        let mut x = seed;
        for i in (1..files.len()).rev() {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            files.swap(i, (x >> 33) as usize % (i + 1));
        }
        let lake = tmp.path().join(format!("lake-{seed}"));
        let mut incremental_runs = 0;
        for (i, f) in files.iter().enumerate() {
            let pt = format!("2024-04-{:02}T02:00:00Z", i + 1);
            // Ingest, silver and gold in one `evlake run`.
            let r = ok(
                &lake,
                &[
                    "run",
                    f.to_str().unwrap(),
                    "--processing-time",
                    &pt,
                    "--json",
                ],
            );
            let s = &r["silver"];
            assert_eq!(r["gold"]["status"], "committed", "{r}");
            if s["mode"] == "incremental" {
                incremental_runs += 1;
            }
            assert_equals_full(
                &lake,
                &tmp.path().join("scratch"),
                &format!("seed {seed}, after {}", f.display()),
            );
        }
        assert!(incremental_runs >= 3, "seed {seed}: {incremental_runs}");
    }
}

#[test]
fn excluded_event_types_take_no_part_in_sessions() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    // A heartbeat at 10:20 bridges 10:00 and 10:45 (gaps of 20 and 25 min);
    // without it the gap is 45 min.
    ingest_lines(
        &lake,
        tmp.path(),
        "b.jsonl",
        &[
            ev("a", "page_view", "2024-03-15T10:00:00Z", "u"),
            ev("h", "heartbeat", "2024-03-15T10:20:00Z", "u"),
            ev("b", "page_view", "2024-03-15T10:45:00Z", "u"),
        ],
        "2024-03-16T02:00:00Z",
    );
    silver(&lake, &[]);
    assert_eq!(query_csv(&lake, "SELECT count(*) FROM sessions"), ["1"]);
    let s = silver(
        &lake,
        &["--session-exclude-types", "heartbeat,app_background"],
    );
    assert_eq!(s["dirty"][0]["reasons"][0]["kind"], "fingerprint_changed");
    // No event is an app_background: said, as a typo would be.
    assert_eq!(
        s["exclude_types_absent"],
        serde_json::json!([{"event_type": "app_background"}]),
        "{s}"
    );
    assert_eq!(
        query_csv(
            &lake,
            "SELECT event_id, session_id IS NULL FROM events ORDER BY event_id"
        ),
        ["a,false", "b,false", "h,true"]
    );
    assert_eq!(
        query_csv(
            &lake,
            "SELECT event_count FROM sessions ORDER BY session_start"
        ),
        ["1", "1"]
    );
    // The same setting from evlake.toml: nothing to do; and a flag-less run
    // against a config without it would rebuild (the fingerprint differs).
    std::fs::write(
        lake.join("evlake.toml"),
        "[silver]\nsession_exclude_types = [\"app_background\", \"heartbeat\"]\n",
    )
    .unwrap();
    assert_eq!(silver(&lake, &[])["status"], "noop");
    std::fs::write(lake.join("evlake.toml"), "[silver]\nsession_gap = \"1h\"\n").unwrap();
    let s = silver(&lake, &[]);
    assert_eq!(s["mode"], "full");
    assert_eq!(query_csv(&lake, "SELECT count(*) FROM sessions"), ["1"]);
    assert!(s.get("exclude_types_absent").is_none(), "{s}");
    // A misspelt type rebuilds every date and leaves nothing out: the
    // warning names it and the type it most likely meant.
    run_says(
        &lake,
        &["silver", "--session-exclude-types", "page_veiw"],
        0,
        "session exclude type `page_veiw` (--session-exclude-types or \
         silver.session_exclude_types): no event has it, so it left nothing out of \
         sessions (did you mean `page_view`?)",
    );
}

#[test]
fn bad_silver_flags_exit_2_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ingest_sample_batch(&lake, &expected()["batches"][0]);
    let before = commits(&lake);
    for args in [
        &["silver", "--dates", "2024-03-20..2024-03-01"][..],
        &["silver", "--dates", "March"],
        &["silver", "--session-gap", "2d"],
        &["silver", "--session-gap", "0s"],
        &["silver", "--memory-limit", "lots"],
    ] {
        let o = run(&lake, args);
        assert_eq!(exit_code(&o), 2, "{args:?}: {}", stderr(&o));
    }
    std::fs::write(lake.join("evlake.toml"), "[engine]\nmemory_limit = \"x\"\n").unwrap();
    let o = run(&lake, &["silver"]);
    assert_eq!(exit_code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("engine.memory_limit"), "{}", stderr(&o));
    assert_eq!(commits(&lake), before);
}

#[test]
fn a_small_memory_limit_still_rebuilds_by_spilling() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    generate(
        &gen_dir,
        &["--events", "40000", "--days", "3", "--bad-rate", "0"],
    );
    let lake = tmp.path().join("lake");
    ok(
        &lake,
        &["ingest", gen_dir.join("batches").to_str().unwrap()],
    );
    silver(&lake, &[]);
    let want = silver_dump(&lake);
    assert_eq!(silver(&lake, &["--full"])["spill_peak_bytes"], 0);
    // The sessionization sort holds only narrow columns (a few MB here):
    // under 16 MiB it spills to disk (from ~20 MiB up it does not need
    // to), and the result is the same. (Far below that a run fails with
    // DataFusion's "resources exhausted", naming the consumers.)
    let s = silver(&lake, &["--full", "--memory-limit", "16M"]);
    assert_eq!(s["status"], "committed");
    assert!(s["spill_peak_bytes"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(silver_dump(&lake), want);
}

#[test]
fn a_grown_date_recomputes_the_users_whose_copy_deduplication_now_drops() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    // x's event "dup" on the 14th, processed at 02:00 on the 18th; y and z
    // are bystanders with events that day.
    ingest_lines(
        &lake,
        tmp.path(),
        "b1.jsonl",
        &[
            ev("dup", "page_view", "2024-03-14T10:00:00Z", "x"),
            ev("x2", "page_view", "2024-03-14T10:10:00Z", "x"),
            ev("y1", "page_view", "2024-03-14T11:00:00Z", "y"),
            ev("z1", "page_view", "2024-03-14T12:00:00Z", "z"),
            ev("z2", "page_view", "2024-03-15T12:00:00Z", "z"),
        ],
        "2024-03-18T02:00:00Z",
    );
    silver(&lake, &[]);
    // A batch pinned to an EARLIER processing time brings another "dup" on
    // the 14th, for y: deduplication now keeps y's copy and drops x's, so x
    // changes although x has no new row.
    ingest_lines(
        &lake,
        tmp.path(),
        "b2.jsonl",
        &[ev("dup", "purchase", "2024-03-14T11:05:00Z", "y")],
        "2024-03-17T02:00:00Z",
    );
    let s = silver(&lake, &[]);
    assert_eq!(s["mode"], "incremental", "{s}");
    assert_eq!(
        s["touched_users"], 2,
        "y (new row) and x (same event_id): {s}"
    );
    let owner = query_csv(&lake, "SELECT user_id FROM events WHERE event_id = 'dup'");
    assert_eq!(owner, ["y"]);
    assert_equals_full(&lake, &tmp.path().join("full"), "after the re-send");
    // z was not recomputed but its rows are all there.
    assert_eq!(
        query_csv(&lake, "SELECT count(*) FROM events WHERE user_id = 'z'"),
        ["2"]
    );
}

#[test]
fn a_batch_that_grows_every_date_recomputes_only_its_users() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let mut first = Vec::new();
    for u in 0..20 {
        first.push(ev(
            &format!("a{u}"),
            "page_view",
            "2024-03-14T10:00:00Z",
            &format!("u{u}"),
        ));
        first.push(ev(
            &format!("b{u}"),
            "page_view",
            "2024-03-15T10:00:00Z",
            &format!("u{u}"),
        ));
    }
    ingest_lines(
        &lake,
        tmp.path(),
        "b1.jsonl",
        &first,
        "2024-03-15T13:00:00Z",
    );
    silver(&lake, &[]);
    // New rows of two users on both dates: every date is dirty, but only
    // by growing, so only those users are recomputed.
    ingest_lines(
        &lake,
        tmp.path(),
        "b2.jsonl",
        &[
            ev("c1", "page_view", "2024-03-14T09:55:00Z", "u1"),
            ev("c2", "purchase", "2024-03-15T10:20:00Z", "u2"),
        ],
        "2024-03-15T14:00:00Z",
    );
    let s = silver(&lake, &[]);
    assert_eq!(s["mode"], "incremental", "{s}");
    assert_eq!(s["touched_users"], 2, "{s}");
    assert_equals_full(&lake, &tmp.path().join("full"), "after growing every date");
    // A changed setting still rebuilds everything.
    let s = silver(&lake, &["--session-gap", "10m"]);
    assert_eq!(s["mode"], "full", "{s}");
}

#[test]
fn a_dropped_copy_stays_dropped_when_its_user_gets_new_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    // "k" is v's event on the 14th; w has a row on the 13th and the 15th
    // so that the 14th alone is dirty later.
    ingest_lines(
        &lake,
        tmp.path(),
        "b1.jsonl",
        &[
            ev("k", "page_view", "2024-03-14T10:00:00Z", "v"),
            ev("u1", "page_view", "2024-03-14T11:00:00Z", "u"),
            ev("w1", "page_view", "2024-03-13T11:00:00Z", "w"),
            ev("w2", "page_view", "2024-03-15T11:00:00Z", "w"),
        ],
        "2024-03-15T13:00:00Z",
    );
    // "k" again, later, with another user (an id conflict): silver keeps
    // v's first copy and drops u's.
    ingest_lines(
        &lake,
        tmp.path(),
        "b2.jsonl",
        &[ev("k", "page_view", "2024-03-14T10:05:00Z", "u")],
        "2024-03-15T14:00:00Z",
    );
    silver(&lake, &[]);
    // Then u gets a new event on the 14th that would start a session at
    // 10:05 with the dropped copy, at 10:30 without it.
    ingest_lines(
        &lake,
        tmp.path(),
        "b3.jsonl",
        &[ev("u2", "page_view", "2024-03-14T10:30:00Z", "u")],
        "2024-03-15T15:00:00Z",
    );
    let s = silver(&lake, &[]);
    assert_eq!(s["mode"], "incremental", "{s}");
    assert_eq!(s["touched_users"], 1, "u: {s}");
    assert_eq!(
        query_csv(&lake, "SELECT user_id FROM events WHERE event_id = 'k'"),
        ["v"],
        "u's dropped copy of k came back"
    );
    assert_eq!(
        query_csv(
            &lake,
            "SELECT session_start FROM sessions WHERE user_id = 'u'"
        ),
        ["2024-03-14T10:30:00Z"]
    );
    assert_equals_full(&lake, &tmp.path().join("full"), "after u's new row");
}

/// Parquet files in a silver table's date partition.
fn files_in(lake: &Path, table: &str, date: &str) -> usize {
    parquet_files(&lake.join(format!("silver/{table}/event_date={date}"))).len()
}

/// A late event that changes no built row (it starts its own session)
/// adds one file to its date's partitions instead of rewriting them; one
/// that changes built rows' session id only patches that column of the
/// date's files (in every table) and adds one file of new rows; and a
/// partition with too many files is rewritten whole (compacted). Each time
/// the result equals a --full rebuild.
#[test]
fn a_late_event_that_changes_no_built_row_is_appended_then_compacted() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let scratch = tmp.path().join("full");
    ingest_lines(
        &lake,
        tmp.path(),
        "b0.jsonl",
        &[
            ev("a0", "search", "2024-03-14T09:00:00Z", "a"),
            ev("a1", "page_view", "2024-03-14T10:00:00Z", "a"),
            ev("b1", "purchase", "2024-03-14T12:00:00Z", "b"),
            ev("c1", "page_view", "2024-03-15T09:00:00Z", "c"),
        ],
        "2024-03-16T02:00:00Z",
    );
    silver(&lake, &[]);
    assert_eq!(files_in(&lake, "events", "2024-03-14"), 1);

    // a's new session in the evening: a1 keeps its session.
    ingest_lines(
        &lake,
        tmp.path(),
        "b1.jsonl",
        &[
            ev("a2", "page_view", "2024-03-14T18:00:00Z", "a"),
            ev("a3", "purchase", "2024-03-14T18:05:00Z", "a"),
        ],
        "2024-03-17T02:00:00Z",
    );
    let s = silver(&lake, &[]);
    assert_eq!(list(&s["recomputed"]["events"]), ["2024-03-14"], "{s}");
    assert_eq!(list(&s["recomputed"]["purchases"]), ["2024-03-14"], "{s}");
    assert_eq!(files_in(&lake, "events", "2024-03-14"), 2, "appended: {s}");
    assert_eq!(
        query_csv(
            &lake,
            "SELECT count(*) FROM events WHERE event_date = DATE '2024-03-14'"
        ),
        ["5"]
    );
    assert_equals_full(&lake, &scratch, "after an appended late event");

    // 10 minutes before b1: b1's session now starts at the late event, so
    // its id changes: the date's files are patched (b1's new session id in
    // events and purchases; searches hold no row of b's and keep theirs),
    // and the new rows are one more file of each.
    assert_eq!(files_in(&lake, "searches", "2024-03-14"), 1);
    ingest_lines(
        &lake,
        tmp.path(),
        "b2.jsonl",
        &[
            ev("b0", "page_view", "2024-03-14T11:50:00Z", "b"),
            ev("a9", "search", "2024-03-14T20:00:00Z", "a"),
        ],
        "2024-03-18T02:00:00Z",
    );
    let s = silver(&lake, &[]);
    assert_eq!(list(&s["recomputed"]["events"]), ["2024-03-14"], "{s}");
    assert_eq!(list(&s["recomputed"]["searches"]), ["2024-03-14"], "{s}");
    assert_eq!(files_in(&lake, "events", "2024-03-14"), 3, "patched: {s}");
    assert_eq!(
        files_in(&lake, "purchases", "2024-03-14"),
        2,
        "patched: {s}"
    );
    assert_eq!(
        files_in(&lake, "searches", "2024-03-14"),
        2,
        "appended: {s}"
    );
    assert_eq!(
        query_csv(
            &lake,
            "SELECT count(DISTINCT e.session_id), min(e.session_id) = min(p.session_id) \
             FROM events e, purchases p \
             WHERE e.event_id IN ('b0', 'b1') AND p.event_id = 'b1'"
        ),
        ["1,true"],
        "b1 joined b0's session, in events and purchases"
    );
    assert_eq!(
        query_csv(&lake, "SELECT event_id FROM searches ORDER BY event_id"),
        ["a0", "a9"]
    );
    assert_equals_full(
        &lake,
        &scratch,
        "after a late event that moves a session start",
    );

    // One late event an hour after another: appended each time, until the
    // partition holds the most files allowed; the next change rewrites it.
    let mut counts = Vec::new();
    for i in 0..9 {
        ingest_lines(
            &lake,
            tmp.path(),
            &format!("c{i}.jsonl"),
            &[ev(
                &format!("n{i}"),
                "page_view",
                &format!("2024-03-14T{:02}:30:00Z", 13 + i),
                "n",
            )],
            &format!("2024-03-19T{i:02}:00:00Z"),
        );
        silver(&lake, &[]);
        counts.push(files_in(&lake, "events", "2024-03-14"));
    }
    assert_eq!(counts, [4, 5, 6, 7, 8, 1, 2, 3, 4], "files after each run");
    assert_equals_full(&lake, &scratch, "after appends and a compaction");
}

/// A late event that starts a session earlier changes the session id of
/// that session's built rows, here on the next day too (the session
/// crosses midnight): both dates' files are patched (that column
/// rewritten, the rest copied), the grown date gets one file of new rows,
/// and the result equals a --full rebuild.
#[test]
fn a_session_whose_start_moves_is_patched_on_both_dates() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    lake_before_a_patch(&lake, tmp.path());
    silver_patching_both_dates(&lake);
    // The 15th did not grow: its one file is patched in place.
    assert_eq!(files_in(&lake, "events", "2024-03-15"), 1);
    assert_eq!(files_in(&lake, "purchases", "2024-03-15"), 1);
    assert_eq!(files_in(&lake, "events", "2024-03-14"), 2);
    assert_eq!(
        query_csv(
            &lake,
            "SELECT count(DISTINCT session_id) FROM \
             (SELECT session_id FROM events WHERE user_id = 'u' \
              UNION ALL SELECT session_id FROM purchases WHERE user_id = 'u')"
        ),
        ["1"],
        "u0, u1 and u2 are one session, in events and purchases"
    );
    assert_eq!(
        query_csv(&lake, "SELECT event_id FROM purchases ORDER BY event_id"),
        ["u2", "v1"]
    );
    assert_equals_full(&lake, &tmp.path().join("full"), "after a patched session");
}

/// A typed table of the lake's own with nested columns (a struct, a list)
/// is patched like the others when a late event moves a session's start:
/// the patch refused its files ("only flat schemas can be patched"), so
/// every such late batch failed the run (exit 1).
#[test]
fn a_typed_table_with_nested_columns_is_patched_too() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    std::fs::create_dir_all(lake.join("typed")).unwrap();
    std::fs::write(
        lake.join("typed/tagged.sql"),
        "SELECT event_id, named_struct('kind', event_type, 'n', 1) AS point, \
         string_to_array(event_type, '_') AS parts, user_id, session_id, event_date, \
         0 AS _warnings FROM events",
    )
    .unwrap();
    lake_before_a_patch(&lake, tmp.path());
    silver_patching_both_dates(&lake);
    let rows = |lake: &Path| {
        let o = run(
            lake,
            &[
                "query",
                "SELECT * FROM tagged ORDER BY event_id",
                "--format",
                "json",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let patched = rows(&lake);
    assert_equals_full(
        &lake,
        &tmp.path().join("full"),
        "after a patched nested table",
    );
    assert_eq!(patched, rows(&tmp.path().join("full")));
    assert!(
        patched.contains(r#""point":{"kind":"page_view","n":1},"parts":["page","view"]"#),
        "{patched}"
    );
    assert_eq!(
        query_csv(
            &lake,
            "SELECT count(DISTINCT session_id) FROM tagged WHERE user_id = 'u'"
        ),
        ["1"]
    );
}

/// Run silver on a lake from [`lake_before_a_patch`]: it patches the
/// built files of both dates.
fn silver_patching_both_dates(lake: &Path) {
    let o = cmd(lake, &["silver", "--json"])
        .env("EVLAKE_TRACE", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("file(s) patched with new session ids on 2 date(s)"),
        "{}",
        stderr(&o)
    );
}

/// A lake whose silver is built, then a late event that moves the start
/// of a session crossing midnight (ingested, silver not yet run).
pub fn lake_before_a_patch(lake: &Path, dir: &Path) {
    ingest_lines(
        lake,
        dir,
        "b0.jsonl",
        &[
            ev("u1", "page_view", "2024-03-14T23:50:00Z", "u"),
            ev("u2", "purchase", "2024-03-15T00:10:00Z", "u"),
            ev("v1", "purchase", "2024-03-15T12:00:00Z", "v"),
            ev("w1", "page_view", "2024-03-14T08:00:00Z", "w"),
        ],
        "2024-03-16T02:00:00Z",
    );
    silver(lake, &[]);
    ingest_lines(
        lake,
        dir,
        "late.jsonl",
        &[ev("u0", "page_view", "2024-03-14T23:30:00Z", "u")],
        "2024-03-17T02:00:00Z",
    );
}

/// A patching run that crashes at any step leaves the lake readable, and
/// its patched files (some of them hard links to the built ones) are
/// orphans the next run removes: the re-run commits, equals --full, and
/// every silver file on disk is committed.
#[test]
fn a_crash_at_every_step_of_a_patching_silver_run_then_a_rerun_is_correct() {
    let tmp = tempfile::tempdir().unwrap();
    for step in evlake::fault::STEPS {
        let lake = tmp.path().join(format!("lake-{step}"));
        lake_before_a_patch(&lake, tmp.path());
        let o = cmd(&lake, &["silver"])
            .env("EVLAKE_FAULT", format!("silver:{step}"))
            .output()
            .unwrap();
        assert!(!o.status.success(), "{step}");
        // Readable, and `query` sees the committed rows only: not the
        // files renamed into place before the commit, nor the replaced
        // ones after it, which are on disk until the next writer.
        let committed = if *step == "after-commit" { "5" } else { "4" };
        assert_eq!(
            query_csv(&lake, "SELECT count(*) FROM events"),
            [committed],
            "{step}"
        );
        if *step != "staged" {
            assert_ne!(
                files_on_disk_under(&lake, "silver"),
                committed_files_under(&lake, "silver"),
                "{step}: the crash left orphans"
            );
        }
        let s = silver(&lake, &[]);
        let done = if *step == "after-commit" {
            "noop"
        } else {
            "committed"
        };
        assert_eq!(s["status"], done, "{step}: {s}");
        assert_eq!(
            query_csv(
                &lake,
                "SELECT count(DISTINCT session_id) FROM events WHERE user_id = 'u'"
            ),
            ["1"],
            "{step}"
        );
        assert_equals_full(&lake, &tmp.path().join("full"), step);
        assert_eq!(
            files_on_disk_under(&lake, "silver"),
            committed_files_under(&lake, "silver"),
            "{step}"
        );
    }
}

/// Appending to a grown date adds only the rows new there: a user whose
/// session reaches into it from another grown date (recomputed there
/// without a new row of their own) keeps their rows once.
#[test]
fn a_session_reaching_into_another_grown_date_is_not_appended_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ingest_lines(
        &lake,
        tmp.path(),
        "b0.jsonl",
        &[
            ev("u1", "page_view", "2024-03-14T23:50:00Z", "u"),
            ev("u2", "purchase", "2024-03-15T00:10:00Z", "u"),
            ev("x1", "page_view", "2024-03-15T08:00:00Z", "x"),
            ev("y1", "page_view", "2024-03-16T08:00:00Z", "y"),
            ev("y2", "page_view", "2024-03-17T08:00:00Z", "y"),
        ],
        "2024-03-18T02:00:00Z",
    );
    silver(&lake, &[]);
    // u's new evening event on the 14th (its own session) touches u there;
    // u's session crossing midnight reaches the 15th, which grew by x's row.
    ingest_lines(
        &lake,
        tmp.path(),
        "b1.jsonl",
        &[
            ev("u0", "page_view", "2024-03-14T20:00:00Z", "u"),
            ev("x2", "purchase", "2024-03-15T18:00:00Z", "x"),
        ],
        "2024-03-19T02:00:00Z",
    );
    let s = silver(&lake, &[]);
    assert_eq!(
        list(&s["loaded_dates"]),
        ["2024-03-14", "2024-03-15"],
        "{s}"
    );
    assert_eq!(files_in(&lake, "events", "2024-03-15"), 2, "appended: {s}");
    assert_eq!(
        query_csv(
            &lake,
            "SELECT event_id FROM events WHERE event_date = DATE '2024-03-15' ORDER BY event_id"
        ),
        ["u2", "x1", "x2"]
    );
    assert_eq!(
        query_csv(&lake, "SELECT event_id FROM purchases ORDER BY event_id"),
        ["u2", "x2"]
    );
    assert_equals_full(
        &lake,
        &tmp.path().join("full"),
        "after appends on two grown dates",
    );
}

/// An incremental run that appends, crashed at every step, then run again:
/// the lake equals a --full rebuild and holds no file the log does not.
#[test]
fn a_crash_at_every_step_of_an_appending_run_then_a_rerun_is_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    ingest_lines(
        &base,
        tmp.path(),
        "b0.jsonl",
        &[
            ev("a1", "page_view", "2024-03-14T10:00:00Z", "a"),
            ev("b1", "purchase", "2024-03-14T12:00:00Z", "b"),
            ev("c1", "page_view", "2024-03-15T09:00:00Z", "c"),
            ev("c2", "page_view", "2024-03-16T09:00:00Z", "c"),
        ],
        "2024-03-17T02:00:00Z",
    );
    silver(&base, &[]);
    // a's new evening session: appended to the 14th.
    ingest_lines(
        &base,
        tmp.path(),
        "b1.jsonl",
        &[ev("a2", "purchase", "2024-03-14T18:00:00Z", "a")],
        "2024-03-18T02:00:00Z",
    );
    for step in evlake::fault::STEPS {
        let lake = tmp.path().join(format!("lake-{step}"));
        copy_dir(&base, &lake);
        let o = cmd(&lake, &["silver"])
            .env("EVLAKE_FAULT", step)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{step}");
        silver(&lake, &[]);
        assert_eq!(files_in(&lake, "events", "2024-03-14"), 2, "{step}");
        assert_equals_full(&lake, &tmp.path().join(format!("full-{step}")), step);
        assert_silver_files_are_the_logs(&lake, step);
    }
}

/// The silver files on disk are exactly those the log names.
fn assert_silver_files_are_the_logs(lake: &Path, what: &str) {
    let state = evlake::log::LakeState::load(&evlake::lake::Lake::new(lake)).unwrap();
    let mut committed: Vec<String> = evlake::silver::all_tables()
        .iter()
        .flat_map(|t| state.partitions(t))
        .flat_map(|(_, p)| p.files.keys().cloned())
        .collect();
    committed.sort();
    let mut on_disk: Vec<String> = parquet_files(&lake.join("silver"))
        .iter()
        .map(|p| p.strip_prefix(lake).unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, committed, "{what}");
}

/// A new lake with a typed table of its own, `page_views`: returns its SQL.
fn with_page_views(lake: &Path) -> &'static str {
    let sql = "SELECT event_id, user_id, session_id, event_timestamp, event_date, page_url, 0 AS _warnings\n\
               FROM events WHERE event_type = 'page_view'\n";
    init_with_file(lake, "typed/page_views.sql", sql);
    sql
}

/// A lake's own typed table with no rows yet (built empty on every date,
/// so with no file) keeps its build records when its file goes. Events
/// rebuilt while it is away leave those records behind: with the same
/// file back, it is rebuilt where the events changed, not taken for built.
#[test]
fn an_own_typed_table_added_back_catches_up_with_the_events_built_without_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (lake, typed) = (tmp.path().join("lake"), tmp.path().join("lake/typed"));
    let sql = with_page_views(&lake);
    let batch = |name: &str, lines: String, pt: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, lines).unwrap();
        ok(
            &lake,
            &["run", path.to_str().unwrap(), "--processing-time", pt],
        );
    };
    // A day of searches only: page_views is built there, with no rows.
    batch(
        "a.jsonl",
        ev("s1", "search", "2024-03-15T10:00:00Z", "u1"),
        "2024-03-15T12:00:00Z",
    );
    assert_eq!(query_csv(&lake, "SELECT count(*) FROM page_views"), ["0"]);
    // While its file is away, page views arrive on that day.
    std::fs::remove_file(typed.join("page_views.sql")).unwrap();
    batch(
        "b.jsonl",
        ev("v1", "page_view", "2024-03-15T10:05:00Z", "u1")
            + &ev("v2", "page_view", "2024-03-15T11:00:00Z", "u2"),
        "2024-03-15T13:00:00Z",
    );
    // Back: the date is dirty, because the events changed since its build.
    std::fs::write(typed.join("page_views.sql"), sql).unwrap();
    assert_eq!(
        dirty_partitions(&lake),
        [(
            "page_views".to_string(),
            "2024-03-15".to_string(),
            "input_changed".to_string()
        )]
    );
    let r = ok(&lake, &["run", "--json"]);
    assert_eq!(
        list(&r["silver"]["typed_refresh"]["tables"]["page_views"]),
        ["2024-03-15"],
        "{r}"
    );
    let views = |lake: &Path| {
        query_csv(
            lake,
            "SELECT event_id, session_id, page_url FROM page_views ORDER BY 1",
        )
    };
    let got = views(&lake);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].starts_with("v1,") && got[1].starts_with("v2,"),
        "{got:?}"
    );
    assert!(dirty_partitions(&lake).is_empty());
    ok(&lake, &["silver", "--full"]);
    assert_eq!(views(&lake), got);
}

/// Every input retracted, silver's `events` is built with no rows and no
/// file. A lake's own typed table edited then is rebuilt from it, empty,
/// rather than failing the run on "No table named 'events'" (found by
/// `tools/soak.py plan`, seed 89).
#[test]
fn an_own_typed_table_edited_after_every_event_was_retracted_is_rebuilt_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let (lake, typed) = (tmp.path().join("lake"), tmp.path().join("lake/typed"));
    let sql = with_page_views(&lake);
    let input = tmp.path().join("a.jsonl");
    std::fs::write(
        &input,
        ev("v1", "page_view", "2024-03-15T10:00:00Z", "u1")
            + &ev("v2", "page_view", "2024-03-16T10:00:00Z", "u2"),
    )
    .unwrap();
    let input = input.to_str().unwrap();
    ok(&lake, &["run", input]);
    assert_eq!(query_csv(&lake, "SELECT count(*) FROM page_views"), ["2"]);
    ok(&lake, &["retract", input]);
    ok(&lake, &["run"]);
    assert_eq!(query_csv(&lake, "SELECT count(*) FROM events"), ["0"]);
    std::fs::write(
        typed.join("page_views.sql"),
        sql.replace("page_url,", "upper(page_url) AS page_url,"),
    )
    .unwrap();
    let r = ok(&lake, &["run", "--json"]);
    assert_eq!(
        list(&r["silver"]["typed_refresh"]["tables"]["page_views"]),
        ["2024-03-15", "2024-03-16"],
        "{r}"
    );
    assert_eq!(query_csv(&lake, "SELECT count(*) FROM page_views"), ["0"]);
    assert!(dirty_partitions(&lake).is_empty());
    // A built-in typed table over no events reads as empty too, with its
    // columns.
    assert_eq!(
        query_csv(&lake, "SELECT count(*), sum(amount) FROM purchases"),
        ["0,"]
    );
}

/// A lake's own typed table need not have `user_id`. A date rewritten by
/// an incremental run (a re-sent event whose kept copy changes: here its
/// second copy has the earlier processing time) keeps every other user's
/// typed rows, found through their events, rather than failing the run on
/// "No field named t.user_id" (found by `tools/soak.py incremental`, seed
/// 3186).
#[test]
fn an_own_typed_table_without_user_id_keeps_the_other_users_rows_of_a_rewritten_date() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    init_with_file(
        &lake,
        "typed/page_views.sql",
        "SELECT event_id, session_id, processing_time, event_date, page_url, 0 AS _warnings\n\
         FROM events WHERE event_type = 'page_view'\n",
    );
    let batch = |name: &str, lines: String, pt: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, lines).unwrap();
        ok(
            &lake,
            &["-q", "run", path.to_str().unwrap(), "--processing-time", pt],
        );
    };
    batch(
        "a.jsonl",
        ev("a1", "page_view", "2024-03-15T10:00:00Z", "u")
            + &ev("a2", "page_view", "2024-03-15T10:05:00Z", "v"),
        "2024-03-20T00:00:00Z",
    );
    batch(
        "b.jsonl",
        ev("a1", "page_view", "2024-03-15T10:00:00Z", "u")
            + &ev("b1", "page_view", "2024-03-15T11:00:00Z", "w"),
        "2024-03-18T00:00:00Z",
    );
    assert_eq!(
        query_csv(
            &lake,
            "SELECT event_id, processing_time FROM page_views ORDER BY event_id"
        ),
        [
            "a1,2024-03-18T00:00:00Z",
            "a2,2024-03-20T00:00:00Z",
            "b1,2024-03-18T00:00:00Z"
        ]
    );
    assert_eq!(
        query_csv(
            &lake,
            "SELECT count(*) FROM page_views p JOIN events e \
             ON p.event_id = e.event_id AND p.session_id = e.session_id \
             AND p.processing_time = e.processing_time"
        ),
        ["3"]
    );
    assert_equals_full(&lake, &tmp.path().join("full"), "after the rewrite");
}

/// `LAKE/typed/NAME.sql` adds a typed table (built for every date,
/// queryable, listed by `tables`), or replaces a built-in one of that name
/// (a producer whose purchases say `price`); removing the file drops its
/// table. A bad name, another table's name, missing columns or SQL that
/// does not plan are usage errors naming the file.
#[test]
fn a_lake_adds_replaces_and_drops_its_own_typed_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    std::fs::write(
        inbox.join("a.jsonl"),
        ev("v1", "page_view", "2024-03-15T10:00:00Z", "u1")
            + &ev("v2", "page_view", "2024-03-16T10:00:00Z", "u2")
            + &ev("s1", "search", "2024-03-16T10:05:00Z", "u2")
            + "{\"event_id\":\"p1\",\"event_type\":\"purchase\",\"event_timestamp\":\"2024-03-16T10:10:00Z\",\"user_id\":\"u2\",\"properties\":{\"order_id\":\"o9\",\"price\":\"12.50\",\"currency\":\"USD\"}}\n",
    )
    .unwrap();
    let args = [
        "run",
        inbox.to_str().unwrap(),
        "--processing-time",
        "2024-03-17T00:00:00Z",
    ];
    ok(&lake, &args);
    assert_eq!(
        query_csv(&lake, "SELECT order_id, amount FROM purchases"),
        ["o9,"]
    );

    let typed = lake.join("typed");
    std::fs::create_dir(&typed).unwrap();
    std::fs::write(
        typed.join("page_views.sql"),
        "SELECT event_id, user_id, session_id, event_timestamp, event_date, page_url, 0 AS _warnings\n\
         FROM events WHERE event_type = 'page_view'\n",
    )
    .unwrap();
    // The price, as purchases' amount.
    let purchases = std::fs::read_to_string(repo().join("sql/silver/typed/purchases.sql"))
        .unwrap()
        .replace(
            "json_get_json(properties, 'amount')",
            "json_get_json(properties, 'price')",
        );
    std::fs::write(typed.join("purchases.sql"), purchases).unwrap();
    // Only these two tables are dirty, and a dry run says so.
    let st = ok(&lake, &["status", "--json"]);
    let dirty: Vec<String> = st["dirty"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["table"].as_str().unwrap(),
                d["partition"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        dirty,
        [
            "purchases 2024-03-15",
            "purchases 2024-03-16",
            "page_views 2024-03-15",
            "page_views 2024-03-16"
        ],
        "{st}"
    );
    let plan = ok(&lake, &["run", "--dry-run", "--json"]);
    assert_eq!(list(&plan["plan"]["silver_dates"]), Vec::<String>::new());
    assert_eq!(
        list(&plan["plan"]["typed_tables"]["page_views"]),
        ["2024-03-15", "2024-03-16"]
    );
    // Gold reads purchases: at least its date with rows is recomputed.
    assert_eq!(list(&plan["plan"]["gold_dates"]), ["2024-03-16"], "{plan}");
    let events_files = committed_files_under(&lake, "silver/events");
    let r = ok(&lake, &["run", "--json"]);
    assert_eq!(
        list(&r["silver"]["recomputed"]["page_views"]),
        ["2024-03-15", "2024-03-16"],
        "{r}"
    );
    // Rebuilt from the built events, alone: no session recomputed, no
    // other table rewritten; gold only where it reads purchases.
    let refresh = &r["silver"]["typed_refresh"];
    assert_eq!(
        list(&refresh["tables"]["page_views"]),
        ["2024-03-15", "2024-03-16"],
        "{r}"
    );
    assert_eq!(
        list(&refresh["tables"]["purchases"]),
        ["2024-03-15", "2024-03-16"],
        "{r}"
    );
    let recomputed: Vec<&String> = r["silver"]["recomputed"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(recomputed, ["page_views", "purchases"], "{r}");
    assert_eq!(committed_files_under(&lake, "silver/events"), events_files);
    assert_eq!(
        list(&r["gold"]["recomputed"]["daily_metrics"]),
        ["2024-03-16"],
        "{r}"
    );
    assert_eq!(
        query_csv(
            &lake,
            "SELECT event_id, page_url, CAST(event_date AS VARCHAR) FROM page_views ORDER BY 1"
        ),
        ["v1,/v1,2024-03-15", "v2,/v2,2024-03-16"]
    );
    assert_eq!(
        query_csv(&lake, "SELECT order_id, amount FROM purchases"),
        ["o9,12.50"]
    );
    let tables = String::from_utf8(run(&lake, &["tables"]).stdout).unwrap();
    assert!(
        tables.contains("page_views (silver, silver/page_views): 2 partition(s)"),
        "{tables}"
    );
    // Nothing more to do.
    assert_eq!(ok(&lake, &["run", "--json"])["silver"]["status"], "noop");
    // `status` lists them, and which one replaces a built-in table.
    let st = ok(&lake, &["status", "--json"]);
    let own: Vec<(String, bool)> = st["own_typed_tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert!(
                t["source"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("typed/{}.sql", t["table"].as_str().unwrap()))
            );
            (
                t["table"].as_str().unwrap().to_string(),
                t["replaces_builtin"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        own,
        [
            ("page_views".to_string(), false),
            ("purchases".to_string(), true)
        ]
    );
    let text = String::from_utf8(run(&lake, &["status"]).stdout).unwrap();
    assert!(
        text.contains("purchases.sql (replacing the built-in one)"),
        "{text}"
    );

    // The same as a lake built whole with these files.
    let whole = tmp.path().join("whole");
    ok(&whole, &["init"]);
    std::fs::create_dir(whole.join("typed")).unwrap();
    for f in ["page_views.sql", "purchases.sql"] {
        std::fs::copy(typed.join(f), whole.join("typed").join(f)).unwrap();
    }
    ok(&whole, &args);
    for sql in [
        "SELECT * FROM page_views ORDER BY event_id",
        "SELECT * FROM purchases ORDER BY event_id",
        "SELECT * FROM daily_metrics ORDER BY event_date",
        "SELECT * FROM daily_revenue_by_currency ORDER BY event_date, currency",
    ] {
        assert_eq!(query_csv(&lake, sql), query_csv(&whole, sql), "{sql}");
    }

    // Edited: rebuilt again, alone.
    std::fs::write(
        typed.join("page_views.sql"),
        "SELECT event_id, user_id, session_id, event_timestamp, event_date, upper(page_url) AS page_url, 0 AS _warnings\n\
         FROM events WHERE event_type = 'page_view'\n",
    )
    .unwrap();
    let r = ok(&lake, &["run", "--json"]);
    let recomputed: Vec<&String> = r["silver"]["recomputed"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(recomputed, ["page_views"], "{r}");
    assert_eq!(r["gold"]["status"], "noop", "{r}");
    assert_eq!(
        query_csv(&lake, "SELECT page_url FROM page_views ORDER BY 1"),
        ["/V1", "/V2"]
    );

    // Renamed, the same SQL: another table (built), the old one dropped.
    std::fs::rename(typed.join("page_views.sql"), typed.join("views.sql")).unwrap();
    let r = ok(&lake, &["run", "--json"]);
    let refresh = &r["silver"]["typed_refresh"];
    assert_eq!(list(&refresh["dropped_tables"]), ["page_views"], "{r}");
    assert_eq!(
        list(&refresh["tables"]["views"]),
        ["2024-03-15", "2024-03-16"],
        "{r}"
    );
    run_says(
        &lake,
        &["query", "SELECT * FROM page_views"],
        2,
        "page_views",
    );
    assert_eq!(query_csv(&lake, "SELECT count(*) FROM views"), ["2"]);
    // Dropped with its file.
    let views = |lake: &Path| query_csv(lake, "SELECT * FROM views ORDER BY event_id");
    let before = views(&lake);
    let sql = std::fs::read_to_string(typed.join("views.sql")).unwrap();
    std::fs::remove_file(typed.join("views.sql")).unwrap();
    ok(&lake, &["run"]);
    run_says(&lake, &["query", "SELECT * FROM views"], 2, "views");
    // The same file back: built again on every date, not taken for built
    // by the records of before the drop.
    std::fs::write(typed.join("views.sql"), &sql).unwrap();
    ok(&lake, &["run"]);
    assert_eq!(views(&lake), before);
    std::fs::remove_file(typed.join("views.sql")).unwrap();
    ok(&lake, &["run"]);
    run_says(&lake, &["query", "SELECT * FROM views"], 2, "views");
    run_says(
        &lake,
        &["query", "SELECT * FROM page_views"],
        2,
        "page_views",
    );
    assert!(
        committed_files(&lake)
            .iter()
            .all(|f| !f.starts_with("silver/page_views")),
        "{:?}",
        committed_files(&lake)
    );
    assert!(!lake.join("silver/page_views").exists());
    assert_eq!(
        query_csv(&lake, "SELECT order_id, amount FROM purchases"),
        ["o9,12.50"]
    );

    // Bad files.
    let bad = |name: &str, sql: &str, args: &[&str], says: &str| {
        let path = typed.join(name);
        std::fs::write(&path, sql).unwrap();
        run_says(&lake, args, 2, says);
        run_says(&lake, args, 2, name);
        std::fs::remove_file(&path).unwrap();
    };
    bad(
        "page-views.sql",
        "SELECT 1",
        &["status"],
        "a typed table's name is lowercase letters, digits and _",
    );
    // Upper case: SQL would read `Purchases` as the built-in `purchases`
    // (every query of the lake failed on the clash).
    bad(
        "Purchases.sql",
        "SELECT 1",
        &["query", "SELECT 1"],
        "a typed table's name is lowercase letters, digits and _ (SQL reads an unquoted name in lowercase)",
    );
    bad(
        "events.sql",
        "SELECT 1",
        &["query", "SELECT 1"],
        "`events` is another table's name",
    );
    // `.sql` in another case was passed over without a word.
    bad(
        "video_plays.SQL",
        "SELECT 1",
        &["status"],
        "video_plays.SQL`: evlake reads files named `*.sql`, in lowercase: rename it `video_plays.sql`",
    );
    // A name no query could write unquoted (`FROM 2024_plays` does not
    // parse, nor `FROM table`).
    for name in ["2024_plays", "table"] {
        bad(
            &format!("{name}.sql"),
            "SELECT 1",
            &["query", "SELECT 1"],
            &format!("`{name}` cannot name a table: `SELECT * FROM {name}` does not parse"),
        );
    }
    // Not UTF-8 (saved as Latin-1): a bad file, exit 2, not an I/O error.
    let latin1 = typed.join("latin1.sql");
    std::fs::write(&latin1, b"SELECT 'caf\xe9' AS x FROM events").unwrap();
    run_says(&lake, &["status"], 2, "latin1.sql`: not UTF-8 text");
    std::fs::remove_file(&latin1).unwrap();
    // Saved as UTF-16 (PowerShell's `>`): said so.
    let wide = typed.join("wide.sql");
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend("SELECT 1 AS x".encode_utf16().flat_map(u16::to_le_bytes));
    std::fs::write(&wide, utf16).unwrap();
    run_says(
        &lake,
        &["status"],
        2,
        "wide.sql`: not UTF-8 text: it is UTF-16; save it as UTF-8",
    );
    std::fs::remove_file(&wide).unwrap();
    bad(
        "thin.sql",
        "SELECT event_id, event_date FROM events",
        &["run"],
        "returns no session_id, _warnings column",
    );
    bad(
        "broken.sql",
        "SELECT no_such_column FROM events",
        &["silver", "--full"],
        "does not plan",
    );
    // Another engine's function says what does its job here.
    bad(
        "ported.sql",
        "SELECT event_id, session_id, event_date, strftime(event_timestamp, '%H') AS h, \
         0 AS _warnings FROM events",
        &["silver", "--full"],
        "does not plan: Error during planning: Invalid function 'strftime' (`strftime` is \
         DuckDB's and SQLite's function; in DataFusion: `to_char(ts, '%Y-%m-%d')`",
    );
    // And a time format of another engine's, which would give every row
    // the same text.
    bad(
        "ported.sql",
        "SELECT event_id, session_id, event_date, to_char(event_timestamp, 'HH24') AS h, \
         0 AS _warnings FROM events",
        &["silver", "--full"],
        "does not plan: Error during planning: the time format 'HH24' has no `%` code",
    );
    // What fails before a row is read, a dry run predicts (exit 2, nothing
    // changed) and `status` says; SQL that fails on rows only a run finds.
    let before = commits(&lake);
    for (name, sql, says) in [
        (
            "thin.sql",
            "SELECT event_id, event_date FROM events",
            Some("returns no session_id, _warnings column"),
        ),
        (
            "broken.sql",
            "SELECT no_such_column FROM events",
            Some("does not plan: Schema error: No field named no_such_column"),
        ),
        (
            "per_user.sql",
            "SELECT min(event_id) AS event_id, NULL AS session_id, event_date, 0 AS _warnings\n\
             FROM events GROUP BY user_id, event_date",
            Some("is not one row per event"),
        ),
        (
            "stamped.sql",
            "SELECT event_id, session_id, event_date, current_date() AS seen, 0 AS _warnings\n\
             FROM events",
            Some("uses current_date(), whose value is not fixed by the rows"),
        ),
        (
            "cast.sql",
            "SELECT event_id, session_id, event_date, CAST(event_id AS INT) AS n, 0 AS _warnings\n\
             FROM events",
            None,
        ),
        // A row is found by its event's id, patched with its session's id
        // and written to its event's date: each must be the event's own (a
        // shifted date failed as an internal error, a date as text
        // panicked, a text count failed on a bare cast error).
        (
            "shifted.sql",
            "SELECT event_id, session_id, event_date + INTERVAL '1 day' AS event_date, \
             0 AS _warnings FROM events",
            Some(
                "returns `event_date` other than the event's own: select it from `events` as it is",
            ),
        ),
        (
            "as_text.sql",
            "SELECT event_id, session_id, CAST(event_date AS VARCHAR) AS event_date, \
             0 AS _warnings FROM events",
            Some("returns `event_date` other than the event's own"),
        ),
        (
            "rekeyed.sql",
            "SELECT upper(event_id) AS event_id, user_id AS session_id, event_date, \
             0 AS _warnings FROM events",
            Some("returns `event_id`, `session_id` other than the event's own: select them"),
        ),
        (
            "counted.sql",
            "SELECT event_id, session_id, event_date, 'none' AS _warnings FROM events",
            Some(
                "returns `_warnings` as Utf8: it is the row's count of values that could not be typed",
            ),
        ),
        (
            "recast.sql",
            "SELECT CAST(event_id AS VARCHAR) AS event_id, session_id, \
             CAST(event_date AS DATE) AS event_date, 0 AS _warnings FROM events e WHERE e.event_id > ''",
            None,
        ),
        // Columns no Parquet file can store: the writer panicked on the
        // first (exit 1, a backtrace) and failed on the second as on a
        // machine's error (exit 1).
        (
            "member.sql",
            "SELECT event_id, session_id, event_date, properties->'amount' AS amount, \
             0 AS _warnings FROM events",
            Some(
                "returns column `amount`, a union of types (a JSON member read with `->`), \
                 which Parquet cannot store: read it as text with `->>`",
            ),
        ),
        (
            "span.sql",
            "SELECT event_id, session_id, event_date, [INTERVAL '1 day'] AS spans, \
             0 AS _warnings FROM events",
            Some(
                "returns column `spans` (List(Interval(MonthDayNano))), an interval of months, \
                 days and nanoseconds, which Parquet cannot store",
            ),
        ),
        // Columns Spark refuses the whole table for.
        (
            "clock.sql",
            "SELECT event_id, session_id, event_date, CAST(event_timestamp AS TIME) AS at, \
             0 AS _warnings FROM events",
            Some(
                "returns column `at` (Time64(ns)), a time of day, which Spark has no type for \
                 and refuses the whole table for: write it as text, CAST(at AS VARCHAR)",
            ),
        ),
        (
            "wide.sql",
            "SELECT event_id, session_id, event_date, CAST(1 AS DECIMAL(40, 2)) AS d, \
             0 AS _warnings FROM events",
            Some(
                "returns column `d` (Decimal256(40, 2)), a decimal of more than 38 digits, which \
                 Spark and Polars refuse the whole table for",
            ),
        ),
    ] {
        let path = typed.join(name);
        std::fs::write(&path, sql).unwrap();
        let o = run(&lake, &["run", "--dry-run"]);
        let status = String::from_utf8(run(&lake, &["status"]).stdout).unwrap();
        let line = status
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_default()
            .to_string();
        // `silver --dry-run` predicts the same.
        let alone = run(&lake, &["silver", "--dry-run"]);
        match says {
            Some(says) => {
                assert_eq!(exit_code(&alone), 2, "{name}: {}", stderr(&alone));
                assert!(
                    stderr(&alone).contains(&format!("silver would fail: {}", path.display()))
                        && stderr(&alone).contains(says),
                    "{name}: {}",
                    stderr(&alone)
                );
            }
            None => assert_eq!(exit_code(&alone), 0, "{name}: {}", stderr(&alone)),
        }
        match says {
            Some(says) => {
                assert_eq!(exit_code(&o), 2, "{name}: {}", stderr(&o));
                assert!(
                    stderr(&o).contains(&format!("step `silver` would fail: {}", path.display()))
                        && stderr(&o).contains(says)
                        && stderr(&o).contains(&format!(
                            "Would fail on typed table {}",
                            &name[..name.len() - 4]
                        )),
                    "{name}: {}",
                    stderr(&o)
                );
                // The problem alone: the line names the file once.
                assert!(
                    line.contains(&format!(": {says}"))
                        && line.matches(name).count() == 1
                        && line.ends_with("`evlake silver` fails on it until it is fixed"),
                    "{name}: {status}"
                );
            }
            None => {
                assert_eq!(exit_code(&o), 0, "{name}: {}", stderr(&o));
                assert!(!line.contains("fails on it"), "{name}: {status}");
            }
        }
        std::fs::remove_file(&path).unwrap();
    }
    assert_eq!(commits(&lake), before);
    bad(
        "cast.sql",
        "SELECT event_id, session_id, event_date, CAST(event_id AS INT) AS n, 0 AS _warnings\n\
         FROM events",
        &["silver", "--full"],
        "(TRY_CAST gives NULL for a value that does not convert)",
    );
    // A row's value that fails it, found by a run only: the hint says what
    // waits and how to unblock it.
    bad(
        "cast.sql",
        "SELECT event_id, session_id, event_date, CAST(event_id AS INT) AS n, 0 AS _warnings\n\
         FROM events",
        &["run"],
        "\nhint: silver (and the gold and snapshots after it) waits for this typed table of \
         the lake's own: fix its file, or move it out of LAKE/typed/ for now",
    );
    bad(
        "per_user.sql",
        "SELECT min(event_id) AS event_id, NULL AS session_id, event_date, 0 AS _warnings\n\
         FROM events GROUP BY user_id, event_date",
        &["run"],
        "is not one row per event",
    );
    ok(&lake, &["run"]);
    // Casts that change no value are the event's own columns still.
    std::fs::write(
        typed.join("recast.sql"),
        "SELECT CAST(event_id AS VARCHAR) AS event_id, session_id, \
         CAST(event_date AS DATE) AS event_date, 0 AS _warnings FROM events",
    )
    .unwrap();
    ok(&lake, &["run"]);
    assert_eq!(
        query_csv(&lake, "SELECT count(*) FROM recast"),
        query_csv(&lake, "SELECT count(*) FROM events")
    );
}

/// A run over many small dates and one big one: the small dates' rows are
/// held until the end and the big date gets its writer mid-stream (past
/// 256 KiB of rows), yet every date of every table is one file with all
/// of its rows, and the lake checks whole.
#[test]
fn small_dates_and_a_big_one_each_get_one_file_with_every_row() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let mut lines = Vec::new();
    let pad = "x".repeat(300);
    for i in 0..3000 {
        lines.push(format!(
            "{{\"event_id\":\"big{i}\",\"user_id\":\"u{}\",\"event_type\":\"page_view\",\
             \"event_timestamp\":\"2024-03-01T{:02}:{:02}:00Z\",\"properties\":{{\"pad\":\"{pad}\"}}}}\n",
            i % 7,
            i / 60 % 24,
            i % 60
        ));
        if i % 75 == 0 {
            let day = i / 75 + 1; // 40 small dates in January and February
            let date = format!("2024-{:02}-{:02}", 1 + (day - 1) / 31, (day - 1) % 31 + 1);
            lines.push(format!(
                "{{\"event_id\":\"small{day}\",\"user_id\":\"u{day}\",\"event_type\":\"purchase\",\
                 \"event_timestamp\":\"{date}T12:00:00Z\",\"properties\":{{\"order_id\":\"o{day}\",\
                 \"amount\":\"9.50\",\"currency\":\"USD\"}}}}\n"
            ));
        }
    }
    ingest_lines(
        &lake,
        tmp.path(),
        "mixed.jsonl",
        &lines,
        "2024-03-02T00:00:00Z",
    );
    ok(&lake, &["run", "--processing-time", "2024-03-02T00:00:00Z"]);
    let per_date = query_csv(
        &lake,
        "SELECT CAST(event_date AS VARCHAR), count(*) FROM events GROUP BY 1 ORDER BY 1",
    );
    assert_eq!(per_date.len(), 41);
    assert_eq!(per_date.last().unwrap(), "2024-03-01,3000");
    assert!(
        per_date[..40].iter().all(|l| l.ends_with(",1")),
        "{per_date:?}"
    );
    assert_eq!(query_csv(&lake, "SELECT count(*) FROM purchases"), ["40"]);
    for (table, column) in [("events", "event_date"), ("sessions", "session_date")] {
        let root = lake.join("silver").join(table);
        let dirs: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(dirs.len(), 41, "{table}");
        for d in dirs {
            assert!(d.file_name().unwrap().to_str().unwrap().starts_with(column));
            assert_eq!(parquet_files(&d).len(), 1, "{}", d.display());
        }
    }
    for day in 1..=40 {
        let date = format!("2024-{:02}-{:02}", 1 + (day - 1) / 31, (day - 1) % 31 + 1);
        assert_eq!(files_in(&lake, "purchases", &date), 1, "{date}");
    }
    ok(&lake, &["check", "--deep", "--json"]);
}

/// Rows held for dates without a writer of their own go to a spill file
/// past `EVLAKE_HELD_KB` (0: after every input batch). Every silver and
/// gold table of the sample lake is the same as without spilling.
#[test]
fn held_rows_that_spill_give_the_same_lake() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    let spilled = tmp.path().join("spilled");
    run_sample_batches(&plain);
    let mut trace = String::new();
    for b in expected()["batches"].as_array().unwrap() {
        let file = sample(b["file"].as_str().unwrap());
        let pt = b["processing_time"].as_str().unwrap();
        let o = cmd(&spilled, &["run", &file, "--processing-time", pt])
            .env("EVLAKE_HELD_KB", "0")
            .env("EVLAKE_TRACE", "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        trace.push_str(&stderr(&o));
    }
    assert!(
        trace.contains("partitioned write spilled"),
        "nothing spilled:\n{trace}"
    );
    assert_dumps_equal(&silver_dump(&plain), &silver_dump(&spilled), "silver");
    assert_dumps_equal(&gold_dump(&plain), &gold_dump(&spilled), "gold");
    ok(&spilled, &["check", "--deep"]);
    assert!(
        !spilled.join("_evlake").join("staging").exists()
            || std::fs::read_dir(spilled.join("_evlake").join("staging"))
                .unwrap()
                .next()
                .is_none(),
        "a spill file was left in staging"
    );
}

#[test]
fn a_lake_under_a_path_with_glob_characters_reads_its_files() {
    // DataFusion takes `?`, `*` and `[` in a plain path as a glob: a lake
    // under such a path committed silver and gold with no rows at all.
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("a?b[c]*d %2F #e").join("lake");
    let good = tmp.path().join("plain").join("lake");
    let b1 = [
        ev("e1", "page_view", "2024-03-14T10:00:00Z", "u"),
        ev("e2", "purchase", "2024-03-14T10:05:00Z", "u"),
        ev("e3", "page_view", "2024-03-15T09:00:00Z", "v"),
    ];
    // Only grows 2024-03-15: silver's incremental path, which reads the
    // new bronze files by name.
    let b2 = [ev("e4", "page_view", "2024-03-15T09:10:00Z", "w")];
    for l in [&lake, &good] {
        ingest_lines(l, tmp.path(), "b1.jsonl", &b1, "2024-03-16T02:00:00Z");
        ok(l, &["run", "--processing-time", "2024-03-16T02:00:00Z"]);
        std::fs::write(tmp.path().join("bad.jsonl"), "{not json\n").unwrap();
        ok(
            l,
            &[
                "ingest",
                tmp.path().join("bad.jsonl").to_str().unwrap(),
                "--max-bad-fraction",
                "1",
            ],
        );
        ingest_lines(l, tmp.path(), "b2.jsonl", &b2, "2024-03-16T03:00:00Z");
    }
    let r = ok(
        &lake,
        &["run", "--json", "--processing-time", "2024-03-16T03:00:00Z"],
    );
    assert_eq!(r["silver"]["mode"], "incremental", "{r}");
    ok(&good, &["run", "--processing-time", "2024-03-16T03:00:00Z"]);
    let sql = "SELECT (SELECT count(*) FROM events) AS e, (SELECT count(*) FROM sessions) AS s, \
               (SELECT count(*) FROM purchases) AS p, (SELECT sum(events) FROM daily_metrics) AS d, \
               (SELECT count(*) FROM quarantine) AS q, (SELECT count(*) FROM bronze_events) AS b";
    assert_eq!(query_csv(&lake, sql), ["4,3,1,4,1,4"]);
    assert_eq!(silver_dump(&lake), silver_dump(&good));
    assert_equals_full(&lake, &tmp.path().join("s?[x]").join("lake"), "glob path");
    // A snapshot is written there, and an answer read from it.
    std::fs::create_dir_all(lake.join("models")).unwrap();
    std::fs::write(
        lake.join("models/sessions_per_user.sql"),
        "-- name: delta\nSELECT user_id, COUNT(*) AS n FROM events GROUP BY user_id;\n\
         -- name: combine\nSELECT user_id, SUM(n) AS n FROM partials GROUP BY user_id;\n\
         -- name: present\nSELECT user_id, n FROM state ORDER BY user_id;\n",
    )
    .unwrap();
    ok(
        &lake,
        &["snapshot", "sessions_per_user", "--as-of", "2024-03-14"],
    );
    let answer = |extra: &[&str]| {
        let mut args = vec![
            "state",
            "sessions_per_user",
            "--as-of",
            "2024-03-15",
            "--json",
        ];
        args.extend_from_slice(extra);
        ok(&lake, &args)
    };
    let from = answer(&[]);
    assert_eq!(
        from["snapshot"]["as_of"], "2024-03-14T23:59:59.999999Z",
        "{from}"
    );
    let replayed = answer(&["--no-snapshot"]);
    assert_eq!(from["rows"], replayed["rows"]);
    assert_eq!(from["rows"].as_array().map(Vec::len), Some(3), "{from}");
}

/// A typed table of the lake's own with no rows has the columns a built
/// one has: its SQL planned as a build plans it (`AT TIME ZONE` gave a
/// time labelled with the zone, where a build gives the zone's clock
/// time) and its times in the stored unit (a build stores microseconds
/// for `to_timestamp`'s nanoseconds).
#[test]
fn an_own_typed_table_with_no_rows_has_a_built_one_s_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ok(&lake, &["init"]);
    std::fs::create_dir_all(lake.join("typed")).unwrap();
    for (name, kind) in [("views", "page_view"), ("nothing", "no_such_type")] {
        std::fs::write(
            lake.join("typed").join(format!("{name}.sql")),
            format!(
                "SELECT event_id, user_id, session_id, event_date, \
                 to_timestamp(event_timestamp) AS at_ns, \
                 event_timestamp AT TIME ZONE 'Europe/Berlin' AS local_time, 0 AS _warnings \
                 FROM events WHERE event_type = '{kind}'"
            ),
        )
        .unwrap();
    }
    run_sample_batches(&lake);
    assert_ne!(query_csv(&lake, "SELECT count(*) FROM views"), ["0"]);
    assert_eq!(query_csv(&lake, "SELECT count(*) FROM nothing"), ["0"]);
    let types = |table: &str| {
        query_csv(
            &lake,
            &format!(
                "SELECT column_name, data_type FROM information_schema.columns \
                 WHERE table_name = '{table}' AND column_name IN ('at_ns', 'local_time') \
                 ORDER BY 1"
            ),
        )
    };
    assert_eq!(
        types("views"),
        [
            "at_ns,\"Timestamp(µs, \"\"UTC\"\")\"",
            "local_time,Timestamp(µs)"
        ]
    );
    assert_eq!(types("nothing"), types("views"));
}
