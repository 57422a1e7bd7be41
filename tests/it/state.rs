//! Event sourcing: `state`, `snapshot`, `history`.

use std::path::Path;

use serde_json::Value;

use crate::common::*;

fn ledger(id: &str, ty: &str, ts: &str, account: &str, amount: &str) -> String {
    let field = if ty == "correction" {
        "amount_delta"
    } else {
        "amount"
    };
    format!(
        "{{\"event_id\":\"{id}\",\"event_type\":\"{ty}\",\"event_timestamp\":\"{ts}\",\"user_id\":\"owner-{account}\",\"properties\":{{\"account_id\":\"{account}\",\"{field}\":{amount},\"currency\":\"EUR\"}}}}\n"
    )
}

/// An event line of any type with `props` (JSON text) as its properties.
fn event(id: &str, ty: &str, ts: &str, user: &str, props: &str) -> String {
    format!(
        "{{\"event_id\":\"{id}\",\"event_type\":\"{ty}\",\"event_timestamp\":\"{ts}\",\"user_id\":\"{user}\",\"properties\":{props}}}\n"
    )
}

fn correction(id: &str, ts: &str, account: &str, corrects: &str, delta: &str) -> String {
    format!(
        "{{\"event_id\":\"{id}\",\"event_type\":\"correction\",\"event_timestamp\":\"{ts}\",\"user_id\":\"owner-{account}\",\"properties\":{{\"account_id\":\"{account}\",\"corrects_event_id\":\"{corrects}\",\"amount_delta\":{delta}}}}}\n"
    )
}

fn run_lines(lake: &Path, name: &str, lines: &[String], pt: &str) -> Value {
    let f = lake.parent().unwrap().join(name);
    std::fs::write(&f, lines.concat()).unwrap();
    ok(
        lake,
        &[
            "run",
            f.to_str().unwrap(),
            "--processing-time",
            pt,
            "--json",
        ],
    )
}

/// `state MODEL --as-of T [extra] --json`.
fn state(lake: &Path, model: &str, as_of: &str, extra: &[&str]) -> Value {
    let mut args = vec!["state", model, "--as-of", as_of, "--json"];
    args.extend_from_slice(extra);
    ok(lake, &args)
}

/// account → balance text, from a `state balances --json` answer.
fn balances(v: &Value) -> Vec<(String, String)> {
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["account_id"].as_str().unwrap().to_string(),
                format!("{:.2}", r["balance"].as_f64().unwrap()),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn ledger_balances_as_of_before_between_and_after_with_a_correction() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    run_lines(
        &lake,
        "b1.jsonl",
        &[
            ledger("d1", "deposit", "2024-03-10T09:00:00Z", "A", "100.00"),
            ledger("w1", "withdrawal", "2024-03-11T09:00:00Z", "A", "\"30.50\""),
            // A wrong amount: 500.00 should have been 50.00.
            ledger("d2", "deposit", "2024-03-12T09:00:00Z", "A", "500.00"),
            ledger("d3", "deposit", "2024-03-12T10:00:00Z", "B", "7.25"),
        ],
        "2024-03-13T02:00:00Z",
    );
    run_lines(
        &lake,
        "b2.jsonl",
        &[correction(
            "c1",
            "2024-03-13T09:00:00Z",
            "A",
            "d2",
            "-450.00",
        )],
        "2024-03-14T02:00:00Z",
    );
    let at = |t: &str| balances(&state(&lake, "balances", t, &[]));
    assert_eq!(at("2024-03-09"), pairs(&[]));
    assert_eq!(at("2024-03-10"), pairs(&[("A", "100.00")]));
    assert_eq!(
        at("2024-03-11T09:00:00Z"),
        pairs(&[("A", "69.50")]),
        "<= T counts"
    );
    assert_eq!(at("2024-03-11T08:59:59.999999Z"), pairs(&[("A", "100.00")]));
    assert_eq!(at("2024-03-12"), pairs(&[("A", "569.50"), ("B", "7.25")]));
    assert_eq!(at("2024-03-13"), pairs(&[("A", "119.50"), ("B", "7.25")]));
    let one = state(&lake, "balances", "2024-03-13", &["--key", "B"]);
    assert_eq!(balances(&one), pairs(&[("B", "7.25")]));
    // B before its first deposit: no row, and stderr says so.
    let o = run_says(
        &lake,
        &[
            "state",
            "balances",
            "--as-of",
            "2024-03-11",
            "--key",
            "B",
            "--format",
            "csv",
        ],
        0,
        "no row of model `balances` has the key `B` as of 2024-03-11T23:59:59.999999Z",
    );
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "account_id,balance,entries,corrections,last_event_time\n",
        "no rows: the CSV header alone"
    );
    let o = run(
        &lake,
        &["state", "balances", "--as-of", "2024-03-13", "--key", "B"],
    );
    assert!(!stderr(&o).contains("no row"), "{}", stderr(&o));

    // The audit trail keeps the wrong deposit and shows what corrects it.
    let o = run(&lake, &["history", "A", "--format", "csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows[2].contains(",d2,deposit,500.00,"), "{}", rows[2]);
    assert!(rows[2].ends_with(",569.50"), "{}", rows[2]);
    assert!(
        rows[3].contains(",c1,correction,-450.00,d2,2024-03-12T09:00:00Z,500.00,119.50"),
        "{}",
        rows[3]
    );
    assert!(
        rows[3].contains("2024-03-14T02:00:00Z"),
        "processing time shown: {}",
        rows[3]
    );
    // As JSON lines, every row names every column: a deposit corrects no
    // event, `null`, not a missing key.
    let o = run(&lake, &["history", "A", "--format", "json"]);
    let rows = json_lines(&o);
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter().all(|r| r.as_object().unwrap().len() == 9),
        "{rows:?}"
    );
    assert_eq!(rows[2]["corrects_event_id"], Value::Null, "{}", rows[2]);
    assert_eq!(rows[2].get("corrected_amount"), Some(&Value::Null));
    // A key with no events (a typo, most often): no rows on stdout (the
    // CSV header alone), exit 0, and stderr says no event has it.
    let o = run(&lake, &["history", "Z", "--format", "csv"]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "event_timestamp,processing_time,event_id,event_type,amount,corrects_event_id,\
         corrected_event_time,corrected_amount,balance\n"
    );
    assert!(
        stderr(&o).contains("no event of model `balances` has the key `Z`"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("other models"), "{}", stderr(&o));

    // A late deposit for the 11th changes the past answer, but not what we
    // believed before it arrived.
    run_lines(
        &lake,
        "b3.jsonl",
        &[ledger("d0", "deposit", "2024-03-11T12:00:00Z", "A", "1.00")],
        "2024-03-20T02:00:00Z",
    );
    assert_eq!(at("2024-03-11"), pairs(&[("A", "70.50")]));
    let believed = state(
        &lake,
        "balances",
        "2024-03-11",
        &["--known-at", "2024-03-19"],
    );
    assert_eq!(balances(&believed), pairs(&[("A", "69.50")]));
    assert_eq!(believed["known_at"], "2024-03-19T23:59:59.999999Z");
    assert!(believed["rows"].as_array().is_some_and(|r| !r.is_empty()));
    // Known at a time before the first ingest: nothing was known, which
    // is the answer (exit 0), but stderr says when the lake began.
    let o = run_says(
        &lake,
        &[
            "state",
            "balances",
            "--as-of",
            "now",
            "--known-at",
            "2023-03-19",
            "--json",
        ],
        0,
        "no event had been processed by --known-at 2023-03-19T23:59:59.999999Z: \
         the lake's first ingest was at 2024-03-13T02:00:00Z (commit 1)",
    );
    let none: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(none["rows"], serde_json::json!([]), "{none}");
    let o = run(
        &lake,
        &[
            "state",
            "balances",
            "--as-of",
            "2024-03-11",
            "--known-at",
            "2024-03-19",
        ],
    );
    assert!(!stderr(&o).contains("no event had been"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("no event is at"), "{}", stderr(&o));
    // The same for an --as-of before the lake's first event (a year
    // mistyped, or a processing time meant for --known-at).
    run_says(
        &lake,
        &["state", "balances", "--as-of", "2023-03-19"],
        0,
        "no event is at or before --as-of 2023-03-19T23:59:59.999999Z: the lake's \
         events begin on 2024-03-10; --known-at is the processing time",
    );
    // And a correction of an event that does not exist is reported.
    run_lines(
        &lake,
        "b4.jsonl",
        &[correction(
            "c2",
            "2024-03-15T09:00:00Z",
            "B",
            "no-such-event",
            "1.00",
        )],
        "2024-03-21T02:00:00Z",
    );
    let v = state(&lake, "balances", "2024-03-16", &[]);
    assert_eq!(v["problems"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["problems"][0]["event_id"], "c2");
    assert_eq!(balances(&v), pairs(&[("A", "120.50"), ("B", "8.25")]));
}

#[test]
fn answers_read_before_silver_caught_up_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    run_lines(
        &lake,
        "b1.jsonl",
        &[ledger(
            "d1",
            "deposit",
            "2024-03-10T09:00:00Z",
            "A",
            "100.00",
        )],
        "2024-03-11T02:00:00Z",
    );
    // A deposit in bronze only (ingest, no silver yet).
    let f = tmp.path().join("b2.jsonl");
    std::fs::write(
        &f,
        ledger("d2", "deposit", "2024-03-11T09:00:00Z", "A", "5.00"),
    )
    .unwrap();
    ok(&lake, &["ingest", f.to_str().unwrap(), "--json"]);
    let behind = "silver is dirty for 1 date(s)";
    let o = run(&lake, &["state", "balances", "--as-of", "2024-03-12"]);
    assert!(stderr(&o).contains(behind), "{}", stderr(&o));
    let v = state(&lake, "balances", "2024-03-12", &[]);
    assert_eq!(v["silver_dirty"], serde_json::json!(["2024-03-11"]));
    assert_eq!(balances(&v), pairs(&[("A", "100.00")]));
    let o = run(&lake, &["history", "A"]);
    assert!(stderr(&o).contains(behind), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("d1")
            && !String::from_utf8_lossy(&o.stdout).contains("d2")
    );
    // Once silver has caught up, the answers hold the deposit and say
    // nothing more.
    ok(&lake, &["run", "--json"]);
    let v = state(&lake, "balances", "2024-03-12", &[]);
    assert_eq!(v["silver_dirty"], serde_json::json!([]));
    assert_eq!(balances(&v), pairs(&[("A", "105.00")]));
    let o = run(&lake, &["history", "A"]);
    assert!(!stderr(&o).contains("dirty"), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("d2"));
}

/// An answer's problems as `EVENT_ID PROBLEM: DETAIL`, in order.
fn problems_listed(v: &Value) -> Vec<String> {
    v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let f = |k: &str| p[k].as_str().unwrap();
            format!("{} {}: {}", f("event_id"), f("problem"), f("detail"))
        })
        .collect()
}

/// The event ids of an answer's `problems`.
fn problem_ids(v: &Value) -> Vec<&str> {
    v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["event_id"].as_str().unwrap())
        .collect()
}

#[test]
fn problems_from_a_snapshot_are_its_own_rechecked_plus_the_new_events() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    run_lines(
        &lake,
        "b1.jsonl",
        &[
            ledger("d1", "deposit", "2024-03-10T09:00:00Z", "A", "100.00"),
            // Corrects an event that does not exist at the snapshot's time:
            // `d9` happens later (and is already in the lake).
            correction("c1", "2024-03-10T10:00:00Z", "A", "d9", "-1.00"),
            // Corrects an event that never exists.
            correction("c2", "2024-03-10T11:00:00Z", "A", "nope", "-2.00"),
            ledger("d9", "deposit", "2024-03-11T12:00:00Z", "A", "9.00"),
            // After the snapshot: one correction of an event before it,
            // one of an unknown event.
            correction("c3", "2024-03-11T13:00:00Z", "A", "d1", "-3.00"),
            correction("c4", "2024-03-11T14:00:00Z", "A", "gone", "-4.00"),
            // ...and one that names no event at all.
            ledger("c5", "correction", "2024-03-11T15:00:00Z", "A", "-5.00"),
        ],
        "2024-03-12T02:00:00Z",
    );
    let o = run(
        &lake,
        &["snapshot", "balances", "--as-of", "2024-03-10", "--json"],
    );
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["problems"], 2, "{s}");
    assert_eq!(s["status"], "committed", "{s}");
    assert!(
        stderr(&o).contains("2 problem(s) at that time, kept with it"),
        "{}",
        stderr(&o)
    );
    assert!(
        !stderr(&o).contains("after the watermark"),
        "{}",
        stderr(&o)
    );
    // Taken again (same time, still valid): a no-op that says so.
    let again = ok(
        &lake,
        &["snapshot", "balances", "--as-of", "2024-03-10", "--json"],
    );
    assert_eq!(again["status"], "noop", "{again}");
    assert_eq!(again["version"], s["version"], "{again}");
    assert_eq!(again["rows"], s["rows"], "{again}");
    assert_eq!(again["problems"], Value::Null, "{again}");
    let o = run(&lake, &["snapshot", "balances", "--as-of", "2024-03-10"]);
    assert!(
        stderr(&o).contains("is already there and valid (commit"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        ok(&lake, &["status", "--json"])["version"],
        s["version"],
        "nothing committed"
    );
    let same_as_a_replay = || {
        for as_of in ["2024-03-11T00:30:00Z", "2024-03-11T12:30:00Z", "2024-03-11"] {
            let a = state(&lake, "balances", as_of, &[]);
            let b = state(&lake, "balances", as_of, &["--no-snapshot"]);
            assert_eq!(a["snapshot"]["as_of"], "2024-03-10T23:59:59.999999Z", "{a}");
            assert_eq!(a["problems"], b["problems"], "as of {as_of}");
            assert_eq!(a["rows"], b["rows"], "as of {as_of}");
        }
    };
    same_as_a_replay();
    // A snapshot written before its problem events kept the problems they
    // had (no `_evlake_problems` column) is re-checked as it was then: all
    // of them reported, the same answers here.
    let kept = parquet_files(&lake.join("state/.problems/balances/ledger"));
    assert_eq!(kept.len(), 1);
    for f in kept {
        let batches: Vec<datafusion::arrow::array::RecordBatch> = read_parquet(&f)
            .into_iter()
            .map(|b| {
                let i = b.schema().index_of("_evlake_problems").unwrap();
                let mut b = b;
                b.remove_column(i);
                b
            })
            .collect();
        let out = std::fs::File::create(&f).unwrap();
        let mut w =
            datafusion::parquet::arrow::ArrowWriter::try_new(out, batches[0].schema(), None)
                .unwrap();
        for b in &batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
        // As that older evlake logged it: with its size (readers refuse a
        // committed file of another size than the log's).
        let rel = f.strip_prefix(&lake).unwrap().to_str().unwrap();
        let bytes = std::fs::metadata(&f).unwrap().len();
        let mut logged = 0;
        for e in std::fs::read_dir(lake.join("_evlake/log")).unwrap() {
            let path = e.unwrap().path();
            let mut c: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            for add in c["add"].as_array_mut().into_iter().flatten() {
                if add["path"] == rel {
                    add["bytes"] = bytes.into();
                    logged += 1;
                }
            }
            std::fs::write(&path, serde_json::to_vec(&c).unwrap()).unwrap();
        }
        assert_eq!(logged, 1, "{rel}");
    }
    same_as_a_replay();
    // Before d9: c1 and c2 are problems; once d9 happened, only c2; the
    // new events add c4 and c5 (c3's event is before the snapshot).
    let at = |t: &str| state(&lake, "balances", t, &[]);
    assert_eq!(problem_ids(&at("2024-03-11T00:30:00Z")), ["c1", "c2"]);
    assert_eq!(problem_ids(&at("2024-03-11T12:30:00Z")), ["c2"]);
    let end = at("2024-03-11");
    assert_eq!(problem_ids(&end), ["c2", "c4", "c5"]);
    assert_eq!(
        end["problems"][2]["detail"], "corrects_event_id missing",
        "{end}"
    );
    // --key reports that account's problems only, from the snapshot (its
    // kept problem events and the new ones) as from a full replay.
    for extra in [&[][..], &["--no-snapshot"]] {
        let key = |k: &str| {
            let mut args = vec!["--key", k];
            args.extend_from_slice(extra);
            state(&lake, "balances", "2024-03-11", &args)
        };
        assert_eq!(problem_ids(&key("A")), ["c2", "c4", "c5"], "{extra:?}");
        assert_eq!(problem_ids(&key("B")), Vec::<&str>::new(), "{extra:?}");
    }
    // The snapshot keeps its problem events beside it, and the ids of
    // every ledger event up to its time, which the new events' check
    // reads instead of every ledger file.
    assert!(lake.join("state/.problems/balances/ledger").is_dir());
    assert!(lake.join("state/.keys/balances/ledger").is_dir());
    assert_eq!(trace_of(&lake, "balances", "2024-03-11"), KEYS_USED);
    // Typed tables carry a Bloom filter on event_id (the new events'
    // check looks their targets up in every ledger file).
    let dir = lake.join("silver/ledger/event_date=2024-03-10");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let reader = datafusion::parquet::file::serialized_reader::SerializedFileReader::new(
        std::fs::File::open(&file).unwrap(),
    )
    .unwrap();
    use datafusion::parquet::file::reader::FileReader;
    let rg = reader.metadata().row_group(0);
    let bloom: Vec<&str> = rg
        .columns()
        .iter()
        .filter(|c| c.bloom_filter_offset().is_some())
        .map(|c| c.column_path().string())
        .map(|p| if p == "event_id" { "event_id" } else { "other" })
        .collect();
    assert_eq!(bloom, ["event_id"], "{}", file.display());
    // A snapshot after the watermark is written, with a warning: the next
    // batch will likely make it invalid.
    run_says(
        &lake,
        &["snapshot", "balances", "--as-of", "2024-03-12"],
        0,
        "2024-03-12T23:59:59.999999Z is after the watermark",
    );
}

/// `balances` reports the ledger events it cannot use (no account, no
/// amount, a negative deposit or withdrawal: its sign is the event type's
/// to say, so summed as sent a withdrawal of -30 would add 30), in every
/// answer, from a snapshot as from a full replay. A
/// snapshot's problem event is re-checked only for the problems it had: c1
/// (no amount_delta, its target d1 before the snapshot and not kept with
/// it) is no "correction of an unknown event" from the snapshot either.
#[test]
fn unusable_ledger_events_are_problems_from_a_snapshot_as_from_a_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let raw = |id: &str, ty: &str, ts: &str, props: &str| event(id, ty, ts, "u", props);
    let r = run_lines(
        &lake,
        "b1.jsonl",
        &[
            ledger("d1", "deposit", "2024-03-10T09:00:00Z", "A", "100.00"),
            raw(
                "n1",
                "deposit",
                "2024-03-10T10:00:00Z",
                r#"{"amount":"5.00"}"#,
            ),
            raw(
                "c1",
                "correction",
                "2024-03-10T11:00:00Z",
                r#"{"account_id":"A","corrects_event_id":"d1"}"#,
            ),
            ledger("w1", "withdrawal", "2024-03-10T12:00:00Z", "A", "-30.00"),
            ledger("d2", "deposit", "2024-03-11T09:00:00Z", "A", "\"abc\""),
            raw(
                "c2",
                "correction",
                "2024-03-11T10:00:00Z",
                r#"{"account_id":"A","corrects_event_id":"nope"}"#,
            ),
            ledger("d3", "deposit", "2024-03-11T11:00:00Z", "B", "-1.50"),
        ],
        "2024-03-12T02:00:00Z",
    );
    // Silver said so once: "abc" and the two negative amounts are NULL.
    assert_eq!(r["silver"]["warnings"]["ledger"], 3, "{r}");
    let ids: Vec<&str> = r["silver"]["warning_events"]["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["w1", "d2", "d3"], "{r}");
    let s = ok(
        &lake,
        &["snapshot", "balances", "--as-of", "2024-03-10", "--json"],
    );
    assert_eq!(s["problems"], 3, "{s}");
    let all = [
        "c1 ledger event without an amount: correction amount_delta missing or not a decimal: counts as 0",
        "c2 correction of an unknown event: corrects_event_id nope",
        "c2 ledger event without an amount: correction amount_delta missing or not a decimal: counts as 0",
        "d2 ledger event without an amount: deposit amount missing, not a decimal or negative: counts as 0",
        "d3 ledger event without an amount: deposit amount missing, not a decimal or negative: counts as 0",
        "n1 ledger event without an account: deposit with no account_id: in no balance",
        "w1 ledger event without an amount: withdrawal amount missing, not a decimal or negative: counts as 0",
    ];
    let of_a: Vec<&str> = all
        .iter()
        .copied()
        .filter(|p| !p.starts_with("d3") && !p.starts_with("n1"))
        .collect();
    for extra in [&[][..], &["--no-snapshot"]] {
        let a = state(&lake, "balances", "2024-03-11", extra);
        assert_eq!(problems_listed(&a), all, "{extra:?}: {a}");
        assert_eq!(
            balances(&a),
            pairs(&[("A", "100.00"), ("B", "0.00")]),
            "{extra:?}"
        );
        let mut args = vec!["--key", "A"];
        args.extend_from_slice(extra);
        let a = state(&lake, "balances", "2024-03-11", &args);
        assert_eq!(problems_listed(&a), of_a, "{extra:?}: {a}");
    }
    let a = state(&lake, "balances", "2024-03-11", &[]);
    assert_eq!(a["snapshot"]["as_of"], "2024-03-10T23:59:59.999999Z", "{a}");
    // Each is a `Problem` line on stderr (the first five; then how many
    // more).
    let o = run_says(
        &lake,
        &["state", "balances", "--as-of", "2024-03-11"],
        0,
        "Problem ledger event without an amount: d3 (deposit amount missing, not a decimal or negative: counts as 0)",
    );
    assert!(
        stderr(&o).contains("Problem ... 2 more (all of them in --json's `problems`)"),
        "{}",
        stderr(&o)
    );
}

/// `carts` reports the cart events it cannot use as sent: without a
/// product (in no cart) or with a quantity that is not an integer (counted
/// as 1), from a snapshot as from a full replay, and with `--key` only
/// that user's.
#[test]
fn unusable_cart_events_are_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    run_lines(
        &lake,
        "b1.jsonl",
        &[
            event(
                "a1",
                "add_to_cart",
                "2024-03-10T10:00:00Z",
                "u1",
                r#"{"product_id":"p1","quantity":2}"#,
            ),
            event(
                "a2",
                "add_to_cart",
                "2024-03-10T10:01:00Z",
                "u1",
                r#"{"quantity":2}"#,
            ),
            event(
                "a3",
                "add_to_cart",
                "2024-03-10T10:02:00Z",
                "u1",
                r#"{"product_id":"p2","quantity":"3"}"#,
            ),
            event(
                "a4",
                "remove_from_cart",
                "2024-03-11T10:03:00Z",
                "u1",
                r#"{"product_id":"p1","quantity":null}"#,
            ),
            event(
                "a5",
                "add_to_cart",
                "2024-03-11T10:04:00Z",
                "u2",
                r#"{"product_id":42}"#,
            ),
            event(
                "a6",
                "add_to_cart",
                "2024-03-11T10:05:00Z",
                "u2",
                r#"{"product_id":"p9","quantity":1.5}"#,
            ),
            // Past what a cart could hold: summed as sent, two of these
            // would wrap Int64 to -2 and the item would silently vanish.
            event(
                "a7",
                "add_to_cart",
                "2024-03-11T10:06:00Z",
                "u3",
                r#"{"product_id":"p5","quantity":9223372036854775807}"#,
            ),
            event(
                "a8",
                "add_to_cart",
                "2024-03-11T10:07:00Z",
                "u3",
                r#"{"product_id":"p5","quantity":"9223372036854775807"}"#,
            ),
            event(
                "a9",
                "remove_from_cart",
                "2024-03-11T10:08:00Z",
                "u3",
                r#"{"product_id":"p5","quantity":-2147483648}"#,
            ),
            // The type says which way it goes: an add of -3 taken as
            // sent would remove three.
            event(
                "b1",
                "add_to_cart",
                "2024-03-11T10:09:00Z",
                "u4",
                r#"{"product_id":"p7","quantity":-3}"#,
            ),
            event(
                "b2",
                "remove_from_cart",
                "2024-03-11T10:10:00Z",
                "u4",
                r#"{"product_id":"p7","quantity":0}"#,
            ),
            event(
                "b3",
                "add_to_cart",
                "2024-03-11T10:11:00Z",
                "u4",
                r#"{"product_id":"p7","quantity":2}"#,
            ),
        ],
        "2024-03-12T02:00:00Z",
    );
    ok(&lake, &["snapshot", "carts", "--as-of", "2024-03-10"]);
    let all = [
        "a2 cart event without a product: add_to_cart with product_id missing: in no cart",
        "a5 cart event without a product: add_to_cart with product_id 42: in no cart",
        "a6 cart event with an unusable quantity: add_to_cart with quantity 1.5, not an integer: counts as 1",
        "a7 cart event with an unusable quantity: add_to_cart with quantity 9223372036854775807, \
         past 2147483647: counts as 1",
        "a8 cart event with an unusable quantity: add_to_cart with quantity \"9223372036854775807\", \
         past 2147483647: counts as 1",
        "a9 cart event with an unusable quantity: remove_from_cart with quantity -2147483648, \
         not positive (the event's type says which way it goes): counts as 1",
        "b1 cart event with an unusable quantity: add_to_cart with quantity -3, \
         not positive (the event's type says which way it goes): counts as 1",
        "b2 cart event with an unusable quantity: remove_from_cart with quantity 0, \
         not positive (the event's type says which way it goes): counts as 1",
    ];
    for extra in [&[][..], &["--no-snapshot"]] {
        let a = state(&lake, "carts", "2024-03-11", extra);
        assert_eq!(problems_listed(&a), all, "{extra:?}: {a}");
        assert_eq!(a["snapshot"].is_null(), !extra.is_empty(), "{a}");
        // p1: 2 added, 1 removed (a JSON null quantity is a missing one);
        // p2: an integer in a string is read as one.
        let rows: Vec<String> = a["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| format!("{} {} {}", r["user_id"], r["product_id"], r["quantity"]))
            .collect();
        assert_eq!(
            rows,
            [
                r#""u1" "p1" 1"#,
                r#""u1" "p2" 3"#,
                r#""u2" "p9" 1"#,
                r#""u3" "p5" 1"#,
                r#""u4" "p7" 2"#
            ],
            "{extra:?}"
        );
        let mut args = vec!["--key", "u2"];
        args.extend_from_slice(extra);
        assert_eq!(
            problems_listed(&state(&lake, "carts", "2024-03-11", &args)),
            all[1..3],
            "{extra:?}"
        );
    }
    // The audit trail counts them the same way.
    let o = run(
        &lake,
        &["history", "u3", "--model", "carts", "--format", "csv"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let changes: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.rsplitn(3, ',').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(changes, ["1 1", "2 1", "1 -1"]);
}

const KEYS_USED: &str = "problems checked over the snapshot's keys";
const ROWS_USED: &str =
    "the problems query reads more than event_id: checked over every event's rows";

/// How an answer from a snapshot checked its problems (`EVLAKE_TRACE`).
fn trace_of(lake: &Path, model: &str, as_of: &str) -> String {
    let o = cmd(lake, &["state", model, "--as-of", as_of])
        .env("EVLAKE_TRACE", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let notes: Vec<&str> = stderr(&o)
        .lines()
        .map(str::trim_start)
        .filter_map(|l| l.strip_prefix("Trace "))
        .filter(|l| l.starts_with("problems") || l.starts_with("the problems"))
        .map(|l| {
            if l == KEYS_USED {
                KEYS_USED
            } else if l == ROWS_USED {
                ROWS_USED
            } else {
                "?"
            }
        })
        .collect();
    notes.join(" / ")
}

/// Many corrections after a snapshot, of events in many of its keys' row
/// groups: the lookup passes them all to the keys' scan as one IN list,
/// pruned by each group's min/max, and finds exactly the unknown ones.
#[test]
fn many_corrections_after_a_snapshot_are_looked_up_in_its_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    // 3,000 deposits: three row groups of keys and a bit.
    let deposits: Vec<String> = (0..3000)
        .map(|i| {
            let ts = format!("2024-03-10T{:02}:{:02}:00Z", i / 60 % 24, i % 60);
            ledger(&format!("d{i:04}"), "deposit", &ts, "A", "1.00")
        })
        .collect();
    run_lines(&lake, "b1.jsonl", &deposits, "2024-03-11T01:00:00Z");
    ok(&lake, &["snapshot", "balances", "--as-of", "2024-03-10"]);
    // 300 corrections the next day: 290 of deposits spread over every
    // group, 10 of events that do not exist.
    let corrections: Vec<String> = (0..300)
        .map(|i| {
            let target = if i < 290 {
                format!("d{:04}", i * 10 + 3)
            } else {
                format!("nope-{i}")
            };
            let ts = format!("2024-03-11T{:02}:{:02}:00Z", i / 60, i % 60);
            correction(&format!("c{i:03}"), &ts, "A", &target, "-0.50")
        })
        .collect();
    run_lines(&lake, "b2.jsonl", &corrections, "2024-03-12T01:00:00Z");
    assert_eq!(trace_of(&lake, "balances", "2024-03-11"), KEYS_USED);
    let v = state(&lake, "balances", "2024-03-11", &[]);
    assert!(v["snapshot"].is_object(), "{v}");
    assert_eq!(v["events_replayed"], 300);
    let unknown: Vec<String> = (290..300).map(|i| format!("c{i:03}")).collect();
    assert_eq!(problem_ids(&v), unknown);
    assert_eq!(balances(&v), pairs(&[("A", "2850.00")]));
    let full = state(&lake, "balances", "2024-03-11", &["--no-snapshot"]);
    assert_eq!(full["problems"], v["problems"]);
    assert_eq!(full["rows"], v["rows"]);
}

/// A model whose problems read more of every event than its id (here the
/// account too) is checked over the events' rows, and its answer from a
/// snapshot still equals a full replay.
#[test]
fn problems_that_read_more_than_event_ids_skip_the_snapshot_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    run_lines(
        &lake,
        "b1.jsonl",
        &[
            ledger("d1", "deposit", "2024-03-10T09:00:00Z", "A", "100.00"),
            ledger("d2", "deposit", "2024-03-10T09:30:00Z", "B", "50.00"),
            // After the snapshot: a correction of an event on its own
            // account, one of an event on another account, one of an
            // unknown event.
            correction("c1", "2024-03-11T10:00:00Z", "A", "d1", "-1.00"),
            correction("c2", "2024-03-11T11:00:00Z", "A", "d2", "-2.00"),
            correction("c3", "2024-03-11T12:00:00Z", "B", "gone", "-3.00"),
            // A purchase before the snapshot, and a correction naming it.
            "{\"event_id\":\"p1\",\"event_type\":\"purchase\",\"event_timestamp\":\"2024-03-10T08:00:00Z\",\"user_id\":\"owner-B\",\"properties\":{\"order_id\":\"o1\",\"amount\":\"5.00\",\"currency\":\"EUR\"}}\n".to_string(),
            correction("c4", "2024-03-11T13:00:00Z", "B", "p1", "-4.00"),
        ],
        "2024-03-12T02:00:00Z",
    );
    let balances = std::fs::read_to_string(repo().join("sql/state/balances.sql")).unwrap();
    let (head, _) = balances.split_once("-- name: problems").unwrap();
    std::fs::create_dir_all(lake.join("models")).unwrap();
    std::fs::write(
        lake.join("models/account_checked.sql"),
        format!(
            "{head}-- name: problems\n\
             SELECT 'correction of an unknown event of its account' AS problem, l.event_id, \
             l.corrects_event_id AS detail FROM ledger l WHERE l.event_type = 'correction' \
             AND NOT EXISTS (SELECT 1 FROM ledger_all c WHERE c.event_id = l.corrects_event_id \
             AND c.account_id = l.account_id) ORDER BY l.event_id;\n"
        ),
    )
    .unwrap();
    // Two consulted tables: each snapshot keeps the ids of both.
    std::fs::write(
        lake.join("models/two_tables.sql"),
        format!(
            "{head}-- name: problems\n\
             SELECT 'correction of no ledger or purchase event' AS problem, l.event_id, \
             l.corrects_event_id AS detail FROM ledger l WHERE l.event_type = 'correction' \
             AND NOT EXISTS (SELECT 1 FROM ledger_all c WHERE c.event_id = l.corrects_event_id) \
             AND NOT EXISTS (SELECT 1 FROM purchases_all p WHERE p.event_id = l.corrects_event_id) \
             ORDER BY l.event_id;\n"
        ),
    )
    .unwrap();
    for model in ["balances", "account_checked", "two_tables"] {
        ok(&lake, &["snapshot", model, "--as-of", "2024-03-10"]);
        let a = state(&lake, model, "2024-03-11", &[]);
        let b = state(&lake, model, "2024-03-11", &["--no-snapshot"]);
        assert_eq!(a["snapshot"]["as_of"], "2024-03-10T23:59:59.999999Z", "{a}");
        assert_eq!(a["problems"], b["problems"], "{model}");
        assert_eq!(a["rows"], b["rows"], "{model}");
    }
    assert_eq!(
        problem_ids(&state(&lake, "balances", "2024-03-11", &[])),
        ["c3", "c4"]
    );
    assert_eq!(
        problem_ids(&state(&lake, "account_checked", "2024-03-11", &[])),
        ["c2", "c3", "c4"]
    );
    assert_eq!(
        problem_ids(&state(&lake, "two_tables", "2024-03-11", &[])),
        ["c3"]
    );
    assert_eq!(trace_of(&lake, "balances", "2024-03-11"), KEYS_USED);
    assert_eq!(trace_of(&lake, "account_checked", "2024-03-11"), ROWS_USED);
    assert_eq!(trace_of(&lake, "two_tables", "2024-03-11"), KEYS_USED);
}

/// Why `status` calls the lake's first snapshot invalid (it must be).
fn first_snapshot_invalid_because(lake: &Path) -> String {
    let st = ok(lake, &["status", "--json"]);
    assert_eq!(st["snapshots"][0]["valid"], false, "{st}");
    st["snapshots"][0]["invalid_because"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn an_invalidated_snapshot_is_never_used_and_run_rebuilds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    run_lines(
        &lake,
        "b1.jsonl",
        &[
            ledger("d1", "deposit", "2024-03-10T09:00:00Z", "A", "100.00"),
            ledger("d2", "deposit", "2024-03-11T09:00:00Z", "A", "10.00"),
            ledger("d3", "deposit", "2024-03-12T09:00:00Z", "A", "1.00"),
        ],
        "2024-03-13T02:00:00Z",
    );
    let s = ok(
        &lake,
        &["snapshot", "balances", "--as-of", "2024-03-11", "--json"],
    );
    assert_eq!(s["rows"], 1);
    // No problems: the snapshot still keeps a (row-less) file saying so.
    assert_eq!(s["problems"], 0);
    let kept = lake.join("state/.problems/balances/ledger/as_of=20240311T235959.999999Z");
    assert_eq!(
        std::fs::read_dir(&kept).unwrap().count(),
        1,
        "{}",
        kept.display()
    );
    let v = state(&lake, "balances", "2024-03-12", &[]);
    assert_eq!(v["snapshot"]["as_of"], "2024-03-11T23:59:59.999999Z", "{v}");
    assert_eq!(v["events_replayed"], 1, "only the event after the snapshot");
    assert_eq!(balances(&v), pairs(&[("A", "111.00")]));
    // A snapshot after the as-of time is not used; before it, it is.
    let v = state(&lake, "balances", "2024-03-10", &[]);
    assert_eq!(v["snapshot"], Value::Null);
    assert_eq!(v["events_replayed"], 1);

    // A late event at or before the snapshot's time invalidates it.
    run_lines(
        &lake,
        "b2.jsonl",
        &[ledger("d0", "deposit", "2024-03-11T23:00:00Z", "A", "0.50")],
        "2024-03-14T02:00:00Z",
    );
    let st = ok(&lake, &["status", "--json"]);
    // `run` rebuilt it right away (after gold), so it is valid again...
    assert_eq!(st["snapshots"][0]["valid"], true, "{st}");
    let v = state(&lake, "balances", "2024-03-12", &[]);
    assert_eq!(v["snapshot"]["as_of"], "2024-03-11T23:59:59.999999Z");
    assert_eq!(balances(&v), pairs(&[("A", "111.50")]));
    // ...whereas an ingest alone leaves it invalid: never used.
    let f = tmp.path().join("b3.jsonl");
    std::fs::write(
        &f,
        ledger("dx", "deposit", "2024-03-10T23:00:00Z", "A", "0.25"),
    )
    .unwrap();
    ok(
        &lake,
        &[
            "ingest",
            f.to_str().unwrap(),
            "--processing-time",
            "2024-03-15T02:00:00Z",
        ],
    );
    ok(
        &lake,
        &["silver", "--processing-time", "2024-03-15T02:00:00Z"],
    );
    assert!(first_snapshot_invalid_because(&lake).contains("2024-03-10T23:00:00Z"));
    let v = state(&lake, "balances", "2024-03-12", &[]);
    assert_eq!(v["snapshot"], Value::Null, "{v}");
    assert_eq!(v["events_replayed"], 5);
    assert_eq!(balances(&v), pairs(&[("A", "111.75")]));
    let r = ok(&lake, &["run", "--json"]);
    assert_eq!(r["snapshots"].as_array().unwrap().len(), 1, "{r}");
    let v = state(&lake, "balances", "2024-03-12", &[]);
    assert_eq!(v["snapshot"]["as_of"], "2024-03-11T23:59:59.999999Z");
    assert_eq!(balances(&v), pairs(&[("A", "111.75")]));

    // The lake's own `balances` replaces the built-in one. Editing what
    // it prints keeps the snapshot; editing what a snapshot holds does not.
    let builtin = include_str!("../../sql/state/balances.sql");
    let own = |from: &str, to: &str| {
        assert!(builtin.contains(from), "{from}");
        std::fs::create_dir_all(lake.join("models")).unwrap();
        std::fs::write(
            lake.join("models/balances.sql"),
            builtin.replacen(from, to, 1),
        )
        .unwrap();
    };
    own("ORDER BY account_id;", "ORDER BY account_id DESC;");
    let v = state(&lake, "balances", "2024-03-12", &[]);
    assert_eq!(v["snapshot"]["as_of"], "2024-03-11T23:59:59.999999Z", "{v}");
    own("COUNT(*) AS entries", "COUNT(event_id) AS entries");
    assert!(first_snapshot_invalid_because(&lake).contains("delta, combine or problems query"));
    let v = state(&lake, "balances", "2024-03-12", &[]);
    assert_eq!(v["snapshot"], Value::Null, "{v}");
    assert_eq!(balances(&v), pairs(&[("A", "111.75")]));
    std::fs::remove_file(lake.join("models/balances.sql")).unwrap();
    assert_eq!(
        ok(&lake, &["status", "--json"])["snapshots"][0]["valid"],
        true
    );

    // A typed table of the lake's own that the model does not read keeps
    // its snapshot; one it reads (its own `ledger`), rebuilt, does not.
    std::fs::create_dir_all(lake.join("typed")).unwrap();
    std::fs::write(
        lake.join("typed/page_views.sql"),
        "SELECT event_id, session_id, event_date, 0 AS _warnings FROM events \
         WHERE event_type = 'page_view'",
    )
    .unwrap();
    let r = ok(&lake, &["run", "--json"]);
    assert_eq!(
        r["silver"]["typed_refresh"]["tables"]["page_views"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "{r}"
    );
    assert_eq!(r["snapshots"].as_array().unwrap().len(), 0, "{r}");
    let ledger_sql = include_str!("../../sql/silver/typed/ledger.sql");
    std::fs::write(
        lake.join("typed/ledger.sql"),
        format!("{ledger_sql}\n-- ours\n"),
    )
    .unwrap();
    let r = ok(&lake, &["silver", "--json"]);
    assert_eq!(
        r["typed_refresh"]["tables"]["ledger"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "{r}"
    );
    assert!(
        first_snapshot_invalid_because(&lake).contains("silver tables it reads"),
        "{}",
        first_snapshot_invalid_because(&lake)
    );
    let v = state(&lake, "balances", "2024-03-12", &[]);
    assert_eq!(v["snapshot"], Value::Null, "{v}");
    let r = ok(&lake, &["run", "--json"]);
    assert_eq!(r["snapshots"].as_array().unwrap().len(), 1, "{r}");
    let v = state(&lake, "balances", "2024-03-12", &[]);
    assert_eq!(v["snapshot"]["as_of"], "2024-03-11T23:59:59.999999Z", "{v}");
    assert_eq!(balances(&v), pairs(&[("A", "111.75")]));
}

#[test]
fn profiles_and_carts_on_the_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    run_sample_batches(&lake);
    let city = |as_of: &str, extra: &[&str]| -> String {
        let v = state(
            &lake,
            "profiles",
            as_of,
            &[&["--key", "u5"], extra].concat(),
        );
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["attribute"] == "city")
            .unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // u5 moved from Portland to Seattle at 18:00 on the 15th; the change
    // arrived with the batch processed on the 20th.
    assert_eq!(city("2024-03-15T17:59:59Z", &[]), "Portland");
    assert_eq!(city("2024-03-15", &[]), "Seattle");
    assert_eq!(
        city("2024-03-15", &["--known-at", "2024-03-19"]),
        "Portland"
    );
    // u5's cart: 2 x p3 added, 1 removed.
    let v = state(&lake, "carts", "2024-03-15T12:00:00Z", &["--key", "u5"]);
    let p3 = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["product_id"] == "p3")
        .unwrap()
        .clone();
    assert_eq!(p3["quantity"], 1);
    let o = run(
        &lake,
        &["history", "u5", "--model", "profiles", "--format", "csv"],
    );
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("Portland") && text.contains("Seattle"),
        "{text}"
    );
    // Without --model, history asks balances, whose keys are accounts:
    // an empty answer that names the models that have the key.
    let o = run_says(
        &lake,
        &["history", "u5"],
        0,
        "no event of model `balances` has the key `u5`; other models have it:",
    );
    assert!(o.stdout.is_empty());
    assert!(stderr(&o).contains("--model profiles"), "{}", stderr(&o));
}

/// A profile update with 20,000 attributes (~500 KB of properties) is
/// answered, each attribute once. Splitting it into attributes once
/// copied the whole object into each attribute's row: 10 GB of text for
/// this event, past Arrow's 2 GB offsets ("Offset overflow error"), so
/// `state profiles` failed for every user, and `history` for its user.
#[test]
fn a_profile_update_with_many_attributes_is_answered() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let n = 20_000;
    let attrs: Vec<String> = (0..n)
        .map(|i| format!("\"attribute_{i:05}\":\"value {i} of the bulk import\""))
        .collect();
    let props = format!("{{{}}}", attrs.join(","));
    let lines = [
        event(
            "bulk",
            "profile_updated",
            "2024-03-10T10:00:00Z",
            "u1",
            &props,
        ),
        event(
            "move",
            "address_changed",
            "2024-03-10T11:00:00Z",
            "u1",
            r#"{"street":"1 Main St","attribute_00007":{"nested":[1,"two"]}}"#,
        ),
        event(
            "other",
            "profile_updated",
            "2024-03-10T12:00:00Z",
            "u2",
            r#"{"city":"Oslo"}"#,
        ),
    ];
    run_lines(&lake, "bulk.jsonl", &lines, "2024-03-11T00:00:00Z");
    let v = state(&lake, "profiles", "now", &[]);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), n + 2, "{}", rows.len());
    let value = |user: &str, attribute: &str| -> String {
        let row = rows
            .iter()
            .find(|r| r["user_id"] == user && r["attribute"] == attribute)
            .unwrap_or_else(|| panic!("no {user} {attribute}"));
        row["value"].as_str().unwrap().to_string()
    };
    assert_eq!(
        value("u1", "attribute_19999"),
        "value 19999 of the bulk import"
    );
    assert_eq!(value("u1", "attribute_00007"), r#"{"nested":[1,"two"]}"#);
    assert_eq!(value("u1", "street"), "1 Main St");
    assert_eq!(value("u2", "city"), "Oslo");
    let o = run(
        &lake,
        &["history", "u1", "--model", "profiles", "--format", "csv"],
    );
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let text = String::from_utf8(o.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1 + n + 2, "{}", stderr(&o));
    assert!(
        text.contains(",bulk,profile_updated,attribute_12345,value 12345 of the bulk import\n")
    );
}

/// An account whose deposits sum past Decimal(18,2) cannot be answered:
/// the error says so and that `--key` answers the others, which it does.
#[test]
fn a_balance_past_its_decimal_is_named_and_other_keys_are_answered() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let mut lines: Vec<String> = (0..2)
        .map(|i| {
            ledger(
                &format!("big{i}"),
                "deposit",
                "2024-03-10T10:00:00Z",
                "A",
                "9999999999999999.99",
            )
        })
        .collect();
    lines.push(ledger(
        "small",
        "deposit",
        "2024-03-10T11:00:00Z",
        "B",
        "\"12.50\"",
    ));
    run_lines(&lake, "big.jsonl", &lines, "2024-03-11T00:00:00Z");
    run_says(
        &lake,
        &["state", "balances", "--as-of", "now"],
        1,
        "an entity's amounts sum past what its decimal column holds, 9999999999999999.99 for \
         a Decimal(18,2) balance: `--key` answers every other entity",
    );
    let v = state(&lake, "balances", "now", &["--key", "B"]);
    assert_eq!(balances(&v), pairs(&[("B", "12.50")]));
}

/// A model's `delta` and `combine` counting each user's events, for the
/// tests' models that differ only in their other queries.
const COUNTS: &str = "-- name: delta\nSELECT user_id, COUNT(*) AS n FROM events GROUP BY user_id;\n\
     -- name: combine\nSELECT user_id, SUM(n) AS n FROM partials GROUP BY user_id;\n";

#[test]
fn bad_models_and_times_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ingest_sample_batch(&lake, &expected()["batches"][0]);
    for args in [
        &["state", "nope", "--as-of", "2024-03-15"][..],
        &["state", "balances", "--as-of", "yesterday"],
        &["state", "balances", "--as-of", "2024-02-30"],
        &["snapshot", "nope", "--as-of", "2024-03-15"],
        &["history", "A", "--model", "nope"],
    ] {
        let o = run(&lake, args);
        assert_eq!(exit_code(&o), 2, "{args:?}: {}", stderr(&o));
    }
    let o = run(&lake, &["state", "nope", "--as-of", "2024-03-15"]);
    assert!(
        stderr(&o).contains("balances, carts, profiles"),
        "{}",
        stderr(&o)
    );
    // A model dropped into LAKE/models/ works like a built-in one (this
    // one saved by a Windows editor, a byte-order mark first, which hid
    // its first `-- name:` line).
    std::fs::create_dir_all(lake.join("models")).unwrap();
    std::fs::write(
        lake.join("models/page_views.sql"),
        "\u{feff}-- name: delta\nSELECT user_id, COUNT(*) AS views FROM events WHERE event_type = 'page_view' GROUP BY user_id;\n\
         -- name: combine\nSELECT user_id, SUM(views) AS views FROM partials GROUP BY user_id;\n\
         -- name: present\nSELECT s.user_id, s.views, s.views > 0 AS signups, COALESCE(p.n, 0) AS bought FROM state s \
         LEFT JOIN (SELECT user_id, COUNT(*) AS n FROM purchases GROUP BY user_id) p ON p.user_id = s.user_id \
         WHERE $1 IS NULL OR s.user_id = $1 ORDER BY s.user_id;\n\
         -- name: history\nSELECT event_timestamp, order_id, amount FROM purchases WHERE user_id = $1 ORDER BY event_timestamp;\n",
    )
    .unwrap();
    ok(
        &lake,
        &["silver", "--processing-time", "2024-03-16T03:00:00Z"],
    );
    let v = state(&lake, "page_views", "2024-03-15", &["--key", "u1"]);
    let o = run(
        &lake,
        &[
            "query",
            "SELECT count(*) FROM events WHERE user_id = 'u1' AND event_type = 'page_view' \
             AND event_timestamp <= TIMESTAMP '2024-03-15T23:59:59.999999Z'",
            "--format",
            "csv",
        ],
    );
    let n: u64 = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(n > 0);
    assert_eq!(v["rows"][0]["views"], n, "{v}");
    // `present` reads `purchases` over every event up to --as-of, from a
    // snapshot too: u4 bought at 14:30, before the snapshot at 15:00.
    ok(
        &lake,
        &["snapshot", "page_views", "--as-of", "2024-03-15T15:00:00Z"],
    );
    let bought = |extra: &[&str]| {
        let mut args = vec!["--key", "u4"];
        args.extend_from_slice(extra);
        let v = state(&lake, "page_views", "2024-03-15", &args);
        (v["snapshot"].is_object(), v["rows"][0]["bought"].clone())
    };
    assert_eq!(bought(&[]), (true, 1.into()));
    assert_eq!(bought(&["--no-snapshot"]), (false, 1.into()));
    let before = state(
        &lake,
        "page_views",
        "2024-03-15T14:00:00Z",
        &["--key", "u4"],
    );
    assert_eq!(before["rows"][0]["bought"], 0, "{before}");
    // What it replays is what its delta reads (`events`): not the
    // `purchases` its history reads, nor `signups`, a column of present.
    let count = |sql: &str| -> u64 {
        let o = run(&lake, &["query", sql, "--format", "csv"]);
        let out = String::from_utf8(o.stdout).unwrap();
        out.lines().nth(1).unwrap().parse().unwrap()
    };
    let up_to = "event_timestamp <= TIMESTAMP '2024-03-15T23:59:59.999999Z'";
    let events = count(&format!("SELECT count(*) FROM events WHERE {up_to}"));
    assert!(count(&format!("SELECT count(*) FROM purchases WHERE {up_to}")) > 0);
    assert!(count(&format!("SELECT count(*) FROM signups WHERE {up_to}")) > 0);
    assert_eq!(v["events_replayed"], events, "{v}");
    // Its history reads `purchases`, up to --as-of (u4 bought once).
    let purchases = count(&format!(
        "SELECT count(*) FROM purchases WHERE user_id = 'u4' AND {up_to}"
    ));
    assert!(purchases > 0);
    let o = run(
        &lake,
        &[
            "history",
            "u4",
            "--model",
            "page_views",
            "--as-of",
            "2024-03-15",
            "--format",
            "csv",
        ],
    );
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let lines = String::from_utf8(o.stdout).unwrap().lines().count() as u64;
    assert_eq!(lines, purchases + 1, "a header and a line per purchase");
    // `sessions` is not an input a state model can have: a session has no
    // single event time (events after its start extend it).
    std::fs::write(
        lake.join("models/session_count.sql"),
        "-- name: delta\nSELECT user_id, COUNT(*) AS n FROM sessions GROUP BY user_id;\n\
         -- name: combine\nSELECT user_id, SUM(n) AS n FROM partials GROUP BY user_id;\n\
         -- name: present\nSELECT * FROM state;\n",
    )
    .unwrap();
    run_says(
        &lake,
        &["state", "session_count", "--as-of", "2024-03-15"],
        2,
        "reads `sessions`, which a state model cannot",
    );
    std::fs::remove_file(lake.join("models/session_count.sql")).unwrap();
    // A syntax error names the file and where in it (sqlparser counts
    // from the query's first character; the file's line and column are
    // what the user edits).
    let typo = lake.join("models/typo.sql");
    std::fs::write(
        &typo,
        "-- name: delta\nSELECT user_id, COUNT(*) AS n\nFROM events GROUP BY user_id;\n\
         -- name: combine\n\n  SELECT user_id SUM(n) AS n FROM partials GROUP BY user_id;\n\
         -- name: present\nSELECT * FROM state;\n",
    )
    .unwrap();
    let typo = typo.display();
    for args in [
        &["state", "typo", "--as-of", "2024-03-15"][..],
        &["snapshot", "typo", "--as-of", "2024-03-15"],
    ] {
        let o = run_says(
            &lake,
            args,
            2,
            &format!("model `typo`: combine ({typo}:6): "),
        );
        let at = format!(", at {typo}:6:21");
        assert!(stderr(&o).contains(&at), "{args:?}: {}", stderr(&o));
    }
    std::fs::remove_file(lake.join("models/typo.sql")).unwrap();
    // An error while a model's queries run (here a division by zero, and
    // a cast that fails on a row) names the model and its file: exit 2,
    // as the model's SQL is at fault (as when it does not plan).
    let div = lake.join("models/div.sql");
    std::fs::write(
        &div,
        format!(
            "{COUNTS}-- name: present\nSELECT user_id, n / (n - n) AS bad FROM state;\n\
             -- name: history\nSELECT * FROM events WHERE user_id = $1 AND CAST(user_id AS INT) > 0;\n"
        ),
    )
    .unwrap();
    let div = div.display();
    for (args, running) in [
        (
            &["state", "div", "--as-of", "2024-03-15"][..],
            "running its delta, combine and present: ",
        ),
        (
            &["history", "u1", "--model", "div"],
            "running its history: ",
        ),
    ] {
        run_says(&lake, args, 2, &format!("model `div` ({div}): {running}"));
    }
    let text = std::fs::read_to_string(lake.join("models/div.sql")).unwrap();
    std::fs::write(
        lake.join("models/div.sql"),
        text.replace("COUNT(*) AS n FROM events", "COUNT(*) / 0 AS n FROM events"),
    )
    .unwrap();
    run_says(
        &lake,
        &["snapshot", "div", "--as-of", "2024-03-15"],
        2,
        &format!("model `div` ({div}): writing the snapshot: "),
    );
    std::fs::remove_file(lake.join("models/div.sql")).unwrap();
    // A snapshot stores combine's rows, and answers from it combine them
    // with delta's again: a combine that drops a column of delta's, or
    // returns one in a type it does not accept, is refused before any
    // snapshot is written, not at the first answer that uses one.
    let lossy = lake.join("models/lossy.sql");
    let lossy_sql = "-- name: delta\nSELECT user_id, COUNT(*) AS n, MAX(event_id) AS last FROM events GROUP BY user_id;\n\
         -- name: combine\nSELECT user_id, SUM(n) AS n FROM partials GROUP BY user_id;\n\
         -- name: present\nSELECT user_id, n FROM state;\n";
    std::fs::write(&lossy, lossy_sql).unwrap();
    let lossy = lossy.display();
    for args in [
        &["state", "lossy", "--as-of", "2024-03-15", "--no-snapshot"][..],
        &["snapshot", "lossy", "--as-of", "2024-03-15"],
    ] {
        run_says(
            &lake,
            args,
            2,
            &format!("model `lossy`: combine ({lossy}:4): returns no column `last` of delta's"),
        );
    }
    std::fs::write(
        lake.join("models/lossy.sql"),
        lossy_sql
            .replace(", MAX(event_id) AS last", "")
            .replace("SUM(n) AS n", "CAST(SUM(n) AS VARCHAR) AS n"),
    )
    .unwrap();
    ok(&lake, &["state", "lossy", "--as-of", "2024-03-15"]);
    run_says(
        &lake,
        &["snapshot", "lossy", "--as-of", "2024-03-15"],
        2,
        &format!("model `lossy`: combine ({lossy}:4): cannot combine its own rows with delta's"),
    );
    let s = ok(&lake, &["status", "--json"]);
    assert!(
        !s.to_string().contains("lossy"),
        "no snapshot of it was written: {s}"
    );
    std::fs::remove_file(lake.join("models/lossy.sql")).unwrap();
    // A combine that merges no rows, over a delta that aggregates: from a
    // snapshot, a key would have a row from it and one from delta (the
    // answer had both, a full replay one). Over a delta of one row per
    // event, the same combine is right, and is taken.
    let passing = lake.join("models/passing.sql");
    let passing_sql = "-- name: delta\nSELECT user_id, COUNT(*) AS n FROM events GROUP BY user_id;\n\
         -- name: combine\nSELECT p.user_id, p.n FROM partials p WHERE p.n > 0;\n\
         -- name: present\nSELECT user_id, n FROM state;\n";
    std::fs::write(&passing, passing_sql).unwrap();
    for args in [
        &["state", "passing", "--as-of", "2024-03-15", "--no-snapshot"][..],
        &["snapshot", "passing", "--as-of", "2024-03-15"],
    ] {
        run_says(
            &lake,
            args,
            2,
            &format!(
                "model `passing`: combine ({}:4): merges no rows of `partials`",
                passing.display()
            ),
        );
    }
    std::fs::write(
        &passing,
        passing_sql.replace(
            "SELECT user_id, COUNT(*) AS n FROM events GROUP BY user_id",
            "SELECT user_id, 1 AS n FROM events",
        ),
    )
    .unwrap();
    ok(&lake, &["state", "passing", "--as-of", "2024-03-15"]);
    std::fs::remove_file(&passing).unwrap();
    // An aggregate whose results over a snapshot's events and the events
    // after it do not merge (AVG, COUNT(DISTINCT), MEDIAN, COUNT in
    // combine) answered from a snapshot with a different number than a
    // full replay, exit 0: refused on every path, naming it.
    let partial = lake.join("models/partial.sql");
    let refused = [
        (
            "AVG(source_line) AS n",
            "MAX(n) AS n",
            "delta (PATH:2): `AVG` does not combine",
            "keep SUM(x) and COUNT(x) in delta",
        ),
        (
            "COUNT(DISTINCT session_id) AS n",
            "SUM(n) AS n",
            "delta (PATH:2): `COUNT(DISTINCT ...)` does not combine",
            "keep the distinct values as rows",
        ),
        (
            "MEDIAN(source_line) AS n",
            "MAX(n) AS n",
            "delta (PATH:2): `MEDIAN` does not combine",
            "compute MEDIAN in present",
        ),
        (
            "COUNT(*) AS n",
            "COUNT(n) AS n",
            "combine (PATH:4): `COUNT` does not combine",
            "SUM delta's count instead",
        ),
        (
            "COUNT(*) AS n",
            "SUM(n) AS n, AVG(n) AS mean",
            "combine (PATH:4): `AVG` does not combine",
            "divide in present",
        ),
        (
            "FIRST_VALUE(event_id) AS n",
            "MAX(n) AS n",
            "delta (PATH:2): `FIRST_VALUE` without ORDER BY takes any row's value",
            "FIRST_VALUE(v ORDER BY event_timestamp, event_id)",
        ),
    ];
    for (delta, combine, says, instead) in refused {
        std::fs::write(
            &partial,
            format!(
                "-- name: delta\nSELECT user_id, {delta} FROM events GROUP BY user_id;\n\
                 -- name: combine\nSELECT user_id, {combine} FROM partials GROUP BY user_id;\n\
                 -- name: present\nSELECT * FROM state;\n"
            ),
        )
        .unwrap();
        let says = format!(
            "model `partial`: {}",
            says.replace("PATH", &partial.display().to_string())
        );
        for args in [
            &["state", "partial", "--as-of", "2024-03-15", "--no-snapshot"][..],
            &["snapshot", "partial", "--as-of", "2024-03-15"],
        ] {
            let err = stderr(&run_says(&lake, args, 2, &says));
            assert!(err.contains(instead), "{err}");
        }
    }
    // The same mean from sums and counts, divided in present, is taken,
    // and a snapshot's answer is a full replay's.
    std::fs::write(
        &partial,
        "-- name: delta\nSELECT user_id, SUM(source_line) AS total, COUNT(source_line) AS n, \
         MAX(DISTINCT event_id) AS last FROM events GROUP BY user_id;\n\
         -- name: combine\nSELECT user_id, SUM(total) AS total, SUM(n) AS n, MAX(last) AS last \
         FROM partials GROUP BY user_id;\n\
         -- name: present\nSELECT user_id, CAST(total AS DOUBLE) / n AS mean, last FROM state \
         ORDER BY user_id;\n",
    )
    .unwrap();
    ok(
        &lake,
        &["snapshot", "partial", "--as-of", "2024-03-15T12:00:00Z"],
    );
    let from_snapshot = ok(
        &lake,
        &["state", "partial", "--as-of", "2024-03-16", "--json"],
    );
    assert!(from_snapshot["snapshot"].is_object(), "{from_snapshot}");
    let replayed = ok(
        &lake,
        &[
            "state",
            "partial",
            "--as-of",
            "2024-03-16",
            "--json",
            "--no-snapshot",
        ],
    );
    assert!(replayed["snapshot"].is_null(), "{replayed}");
    assert_eq!(from_snapshot["rows"], replayed["rows"]);
    std::fs::remove_file(&partial).unwrap();
    // A snapshot keeps what delta and combine computed when it was
    // written: a value not fixed by the rows (now(), random()) would make
    // answers from it disagree with a full replay. `present` may use one.
    let stamped = lake.join("models/stamped.sql");
    let stamped_sql = "-- name: delta\nSELECT user_id, COUNT(*) AS n, MAX(now()) AS seen FROM events GROUP BY user_id;\n\
         -- name: combine\nSELECT user_id, SUM(n) AS n, MAX(seen) AS seen FROM partials GROUP BY user_id;\n\
         -- name: present\nSELECT user_id, n, now() AS asked FROM state;\n";
    std::fs::write(&stamped, stamped_sql).unwrap();
    let stamped = stamped.display();
    for args in [
        &["state", "stamped", "--as-of", "2024-03-15", "--no-snapshot"][..],
        &["snapshot", "stamped", "--as-of", "2024-03-15"],
    ] {
        run_says(
            &lake,
            args,
            2,
            &format!(
                "model `stamped`: delta ({stamped}:2): uses now(), whose value is not fixed by \
                 the rows (it changes with when it is computed): a snapshot keeps"
            ),
        );
    }
    std::fs::write(
        lake.join("models/stamped.sql"),
        stamped_sql
            .replace(", MAX(now()) AS seen", "")
            .replace(", MAX(seen) AS seen", ""),
    )
    .unwrap();
    ok(&lake, &["state", "stamped", "--as-of", "2024-03-15"]);
    // So does the problems query: a snapshot keeps the events it found.
    let fixed = std::fs::read_to_string(lake.join("models/stamped.sql")).unwrap();
    std::fs::write(
        lake.join("models/stamped.sql"),
        format!(
            "{fixed}-- name: problems\nSELECT 'recent' AS problem, event_id, '' AS detail \
             FROM events WHERE event_timestamp > now() - INTERVAL '1 day';\n"
        ),
    )
    .unwrap();
    run_says(
        &lake,
        &["state", "stamped", "--as-of", "2024-03-15"],
        2,
        &format!(
            "model `stamped`: problems ({stamped}:8): uses now(), whose value is not fixed by \
             the rows"
        ),
    );
    // Its rows are read by position: a query with too few columns
    // panicked (index out of bounds), on the answer and the snapshot.
    std::fs::write(
        lake.join("models/stamped.sql"),
        format!("{fixed}-- name: problems\nSELECT 'odd' AS problem FROM events;\n"),
    )
    .unwrap();
    for args in [
        &["state", "stamped", "--as-of", "2024-03-15"][..],
        &["snapshot", "stamped", "--as-of", "2024-03-15"],
    ] {
        run_says(
            &lake,
            args,
            2,
            &format!(
                "model `stamped`: problems ({stamped}:8): returns 1 column(s): a problems \
                 query returns three, `(problem, event_id, detail)`"
            ),
        );
    }
    std::fs::remove_file(lake.join("models/stamped.sql")).unwrap();
    // A key its query has no `$1` for would be passed over (every
    // entity printed for `--key u1`): exit 2 naming the query.
    let keyless = lake.join("models/keyless.sql");
    std::fs::write(
        &keyless,
        format!(
            "{COUNTS}-- name: present\nSELECT user_id, n FROM state ORDER BY user_id;\n\
             -- name: history\nSELECT event_id FROM events ORDER BY event_id;\n"
        ),
    )
    .unwrap();
    let keyless = keyless.display();
    ok(&lake, &["state", "keyless", "--as-of", "2024-03-15"]);
    run_says(
        &lake,
        &["state", "keyless", "--as-of", "2024-03-15", "--key", "u1"],
        2,
        &format!("model `keyless`: present ({keyless}:6): the query has no `$1`"),
    );
    run_says(
        &lake,
        &["history", "u1", "--model", "keyless"],
        2,
        &format!("model `keyless`: history ({keyless}:8): the query has no `$1`"),
    );
    std::fs::remove_file(lake.join("models/keyless.sql")).unwrap();
    // A typed table of the lake's own need not carry an event time, but a
    // model replays events by theirs: reading one without is exit 2
    // naming the model and the column (it was a bare schema error, exit 1).
    std::fs::create_dir_all(lake.join("typed")).unwrap();
    std::fs::write(
        lake.join("typed/untimed.sql"),
        "SELECT event_id, user_id, session_id, event_date, 0 AS _warnings FROM events",
    )
    .unwrap();
    ok(
        &lake,
        &["silver", "--processing-time", "2024-03-16T03:00:00Z"],
    );
    let untimed = lake.join("models/untimed_count.sql");
    std::fs::write(
        &untimed,
        "-- name: delta\nSELECT user_id, COUNT(*) AS n FROM untimed GROUP BY user_id;\n\
         -- name: combine\nSELECT user_id, SUM(n) AS n FROM partials GROUP BY user_id;\n\
         -- name: present\nSELECT user_id, n FROM state;\n",
    )
    .unwrap();
    run_says(
        &lake,
        &["state", "untimed_count", "--as-of", "2024-03-15"],
        2,
        &format!(
            "model `untimed_count` ({}): reads `untimed`, which has no `event_timestamp` column",
            untimed.display()
        ),
    );
    std::fs::remove_file(&untimed).unwrap();
    std::fs::remove_file(lake.join("typed/untimed.sql")).unwrap();
    ok(
        &lake,
        &["silver", "--processing-time", "2024-03-16T03:00:00Z"],
    );
    std::fs::write(
        lake.join("models/broken.sql"),
        "-- name: delta\nSELECT 1;\n",
    )
    .unwrap();
    let o = run(&lake, &["state", "broken", "--as-of", "2024-03-15"]);
    assert_eq!(exit_code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("combine"), "{}", stderr(&o));
    // A broken file stops only what needs its model: other answers,
    // `status` and `run` go on, and report it.
    let v = state(&lake, "page_views", "2024-03-15", &["--key", "u4"]);
    assert_eq!(v["rows"][0]["bought"], 1, "{v}");
    ok(&lake, &["history", "acct-u2"]);
    let s = ok(&lake, &["status", "--json"]);
    assert_eq!(s["broken_models"][0]["model"], "broken", "{s}");
    assert!(
        s["broken_models"][0]["error"]
            .as_str()
            .unwrap()
            .contains("combine"),
        "{s}"
    );
    run_says(&lake, &["run", "--json"], 0, "model `broken` is broken");
    // So is a model that loads but whose SQL fails when the run rebuilds
    // one of its snapshots (edited, it made them invalid): the run goes
    // on, and says so, rather than fail at every run from then on.
    let views = lake.join("models/page_views.sql");
    let good = std::fs::read_to_string(&views).unwrap();
    std::fs::write(
        &views,
        good.replace("COUNT(*) AS views", "COUNT(*) / 0 AS views"),
    )
    .unwrap();
    let o = run_says(
        &lake,
        &["run", "--json"],
        0,
        "model `page_views` is broken, so its snapshots are not kept up to date: model \
         `page_views`",
    );
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let broken: Vec<&str> = r["broken_models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["model"].as_str().unwrap())
        .collect();
    assert_eq!(broken, ["broken", "page_views"], "{r}");
    std::fs::write(&views, good).unwrap();
    // ...unless the snapshot policy names it.
    std::fs::write(
        lake.join("evlake.toml"),
        "[state]\nsnapshot_models = [\"broken\"]\n",
    )
    .unwrap();
    run_says(&lake, &["run"], 2, "step `snapshot` failed");
    // A name no model has is a settings error, before anything is
    // ingested.
    std::fs::write(
        lake.join("evlake.toml"),
        "[state]\nsnapshot_models = [\"balance\"]\n",
    )
    .unwrap();
    let before = commits(&lake);
    let late = lake.parent().unwrap().join("more.jsonl");
    std::fs::write(
        &late,
        ledger("d9", "deposit", "2024-03-15T10:00:00Z", "A", "1.00"),
    )
    .unwrap();
    run_says(
        &lake,
        &["run", late.to_str().unwrap()],
        2,
        "evlake.toml: state.snapshot_models: unknown model `balance` (did you mean \
         `balances`? models: balances,",
    );
    assert_eq!(commits(&lake), before, "nothing committed");
}

/// `[state] snapshot_keep = N`: `run` keeps each model's N newest
/// snapshots (the policy's new one among them) and removes the older
/// ones, files and all; an invalid one beyond N is removed, not rebuilt.
#[test]
fn snapshot_keep_removes_the_oldest_snapshots_and_never_rebuilds_them() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    std::fs::write(
        lake.join("evlake.toml"),
        "[state]\nsnapshot_models = [\"balances\"]\nsnapshot_keep = 2\n",
    )
    .unwrap();
    let end = |day: u32| format!("2024-03-{day:02}T23:59:59.999999Z");
    let as_ofs = |v: &Value, key: &str| -> Vec<String> {
        let list = v[key].as_array().unwrap();
        list.iter()
            .map(|s| s["as_of"].as_str().unwrap().to_string())
            .collect()
    };
    let kept = |lake: &Path| as_ofs(&ok(lake, &["status", "--json"]), "snapshots");
    // Each snapshot has 3 files: its rows, its problems' rows, its keys.
    let on_disk = |lake: &Path| files_on_disk_under(lake, "state");
    let committed = |lake: &Path| committed_files_under(lake, "state");
    // A deposit of 10 a day; each run closes the day before.
    let mut removed = Vec::new();
    for day in 10..=14u32 {
        let r = run_lines(
            &lake,
            &format!("d{day}.jsonl"),
            &[ledger(
                &format!("d{day}"),
                "deposit",
                &format!("2024-03-{day}T09:00:00Z"),
                "A",
                "10.00",
            )],
            &format!("2024-03-{}T02:00:00Z", day + 1),
        );
        removed.extend(as_ofs(&r, "snapshots_removed"));
    }
    assert_eq!(kept(&lake), [end(12), end(13)]);
    assert_eq!(removed, [end(9), end(10), end(11)]);
    assert_eq!(on_disk(&lake), committed(&lake));
    assert_eq!(committed(&lake).len(), 2 * 3, "{:?}", committed(&lake));
    // The answers: from the newest kept snapshot, or a replay before it.
    let v = state(&lake, "balances", "2024-03-11", &[]);
    assert!(v["snapshot"].is_null(), "{v}");
    assert_eq!(balances(&v), pairs(&[("A", "20.00")]));
    let v = state(&lake, "balances", "2024-03-14", &[]);
    assert_eq!(v["snapshot"]["as_of"], end(13), "{v}");
    assert_eq!(balances(&v), pairs(&[("A", "50.00")]));

    // A late deposit for the 10th invalidates both; the next run removes
    // the 12th (the policy's 14th is newer) and rebuilds only the 13th.
    let r = run_lines(
        &lake,
        "late.jsonl",
        &[
            ledger("late", "deposit", "2024-03-10T10:00:00Z", "A", "1.00"),
            ledger("d15", "deposit", "2024-03-15T09:00:00Z", "A", "10.00"),
        ],
        "2024-03-16T02:00:00Z",
    );
    assert_eq!(as_ofs(&r, "snapshots_removed"), [end(12)]);
    assert_eq!(as_ofs(&r, "snapshots"), [end(13), end(14)]);
    assert_eq!(kept(&lake), [end(13), end(14)]);
    let v = state(&lake, "balances", "2024-03-14", &[]);
    assert_eq!(v["snapshot"]["as_of"], end(14), "{v}");
    assert_eq!(balances(&v), pairs(&[("A", "51.00")]));
    assert_eq!(on_disk(&lake), committed(&lake));

    // A run killed right after the removal's commit leaves its files; the
    // next run (any writer) deletes them, and the answers hold.
    std::fs::write(
        lake.join("evlake.toml"),
        "[state]\nsnapshot_models = [\"balances\"]\nsnapshot_keep = 1\n",
    )
    .unwrap();
    // A dry run says what the run would remove, and removes nothing.
    let plan = ok(&lake, &["run", "--dry-run", "--json"])["plan"].clone();
    assert_eq!(as_ofs(&plan, "snapshots_removed"), [end(13)]);
    assert_eq!(kept(&lake), [end(13), end(14)]);
    let o = cmd(&lake, &["run"])
        .env("EVLAKE_FAULT", "snapshot-remove:after-commit")
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", stderr(&o));
    assert_eq!(kept(&lake), [end(14)]);
    assert_ne!(on_disk(&lake), committed(&lake));
    ok(&lake, &["run"]);
    assert_eq!(kept(&lake), [end(14)]);
    assert_eq!(on_disk(&lake), committed(&lake));
    let v = state(&lake, "balances", "2024-03-13", &[]);
    assert_eq!(balances(&v), pairs(&[("A", "41.00")]));

    // 0 would keep none: a usage error naming the key.
    std::fs::write(lake.join("evlake.toml"), "[state]\nsnapshot_keep = 0\n").unwrap();
    run_says(&lake, &["run"], 2, "state.snapshot_keep");
}

#[test]
fn property_a_snapshot_answer_equals_a_full_replay() {
    let tmp = tempfile::tempdir().unwrap();
    for seed in [21u64, 22] {
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
                "15",
                "--late-rate",
                "0.6",
                "--bad-rate",
                "0",
            ],
        );
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(gen_dir.join("batches"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let mut x = seed;
        let mut next = move |n: usize| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as usize % n
        };
        for i in (1..files.len()).rev() {
            files.swap(i, next(i + 1));
        }
        let lake = tmp.path().join(format!("lake-{seed}"));
        let days = [
            "2024-03-01",
            "2024-03-02",
            "2024-03-03",
            "2024-03-04",
            "2024-03-05",
        ];
        let mut used = 0;
        for (i, f) in files.iter().enumerate() {
            let pt = format!("2024-04-{:02}T02:00:00Z", i + 1);
            // With each batch, ledger events `balances` reports as
            // problems: no account, no amount (a correction of a deposit
            // that may be before or after it, or unknown yet), cart adds
            // without a product or with a quantity in words; a negative
            // withdrawal, and a deposit such corrections name.
            let kinds = [
                ("a", "deposit", r#"{"amount":"1.00"}"#.to_string()),
                (
                    "b",
                    "correction",
                    format!(
                        r#"{{"account_id":"acct-odd","corrects_event_id":"odd-{}-d"}}"#,
                        next(i + 2)
                    ),
                ),
                (
                    "c",
                    "withdrawal",
                    r#"{"account_id":"acct-odd","amount":"-2.00"}"#.into(),
                ),
                (
                    "d",
                    "deposit",
                    r#"{"account_id":"acct-odd","amount":"3.00"}"#.into(),
                ),
                ("e", "add_to_cart", r#"{"quantity":"2"}"#.into()),
                (
                    "f",
                    "add_to_cart",
                    r#"{"product_id":"p-odd","quantity":"two"}"#.into(),
                ),
            ];
            let odd: Vec<String> = kinds
                .iter()
                .map(|(k, ty, props)| {
                    let ts = format!("{}T{:02}:{:02}:00Z", days[next(5)], next(24), next(60));
                    event(&format!("odd-{i}-{k}"), ty, &ts, "u-odd", props)
                })
                .collect();
            let odd_file = tmp.path().join(format!("odd-{seed}-{i}.jsonl"));
            std::fs::write(&odd_file, odd.concat()).unwrap();
            ok(
                &lake,
                &[
                    "run",
                    f.to_str().unwrap(),
                    odd_file.to_str().unwrap(),
                    "--processing-time",
                    &pt,
                ],
            );
            // Snapshots at a random time, then questions at random times,
            // mostly after it. Earlier snapshots that this batch made
            // invalid were rebuilt by `run`, or are skipped.
            let _ = i;
            let d = next(5);
            let snap = format!("{}T{:02}:{:02}:00Z", days[d], next(24), next(60));
            for model in ["balances", "carts", "profiles"] {
                ok(&lake, &["snapshot", model, "--as-of", &snap]);
            }
            for _ in 0..3 {
                let model = ["balances", "carts", "profiles"][next(3)];
                let day = if next(3) == 0 {
                    next(5)
                } else {
                    d + next(5 - d)
                };
                let as_of = format!("{}T{:02}:{:02}:00Z", days[day], next(24), next(60));
                let a = state(&lake, model, &as_of, &[]);
                let b = state(&lake, model, &as_of, &["--no-snapshot"]);
                assert_eq!(b["snapshot"], Value::Null);
                if a["snapshot"] != Value::Null {
                    used += 1;
                }
                assert_eq!(
                    a["rows"], b["rows"],
                    "seed {seed}, {model} as of {as_of}, snapshot {}",
                    a["snapshot"]
                );
                assert_eq!(
                    a["problems"], b["problems"],
                    "seed {seed}, {model} as of {as_of}, snapshot {}",
                    a["snapshot"]
                );
            }
        }
        assert!(used >= 6, "seed {seed}: snapshots used {used} times");
    }
}

/// `state` and `history` read the committed files only: a silver run that
/// crashed after renaming its files into place (no commit) changes no
/// answer, and the next run's does.
#[test]
fn a_crashed_silver_run_changes_no_state_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    run_lines(
        &lake,
        "b1.jsonl",
        &[
            ledger("d1", "deposit", "2024-03-14T10:00:00Z", "a1", "100.00"),
            ledger("w1", "withdrawal", "2024-03-14T12:00:00Z", "a1", "30.00"),
        ],
        "2024-03-15T02:00:00Z",
    );
    let before = balances(&state(&lake, "balances", "2024-03-14", &[]));
    assert_eq!(before, pairs(&[("a1", "70.00")]));
    ingest_lines(
        &lake,
        tmp.path(),
        "late.jsonl",
        &[ledger(
            "d0",
            "deposit",
            "2024-03-14T09:00:00Z",
            "a1",
            "5.00",
        )],
        "2024-03-16T02:00:00Z",
    );
    for step in ["renamed", "before-commit"] {
        let o = cmd(&lake, &["silver"])
            .env("EVLAKE_FAULT", format!("silver:{step}"))
            .output()
            .unwrap();
        assert!(!o.status.success(), "{step}");
        assert_ne!(
            files_on_disk_under(&lake, "silver"),
            committed_files_under(&lake, "silver"),
            "{step}: the crash left files outside the log"
        );
        assert_eq!(
            balances(&state(&lake, "balances", "2024-03-14", &["--no-snapshot"])),
            before,
            "{step}"
        );
        let h = run(
            &lake,
            &["history", "a1", "--as-of", "2024-03-14", "--format", "csv"],
        );
        assert!(h.status.success(), "{}", stderr(&h));
        let h = String::from_utf8(h.stdout).unwrap();
        assert_eq!(h.lines().count(), 3, "{step}: a header and two events\n{h}");
    }
    ok(&lake, &["silver"]);
    assert_eq!(
        balances(&state(&lake, "balances", "2024-03-14", &[])),
        pairs(&[("a1", "75.00")])
    );
}

/// `run --dry-run` lists the snapshots the run then writes: those its
/// events invalidate, the daily policy's, and those of a model that reads
/// a typed table the run rebuilds; not those it leaves valid.
#[test]
fn a_dry_run_lists_the_snapshots_the_run_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ok(&lake, &["init"]);
    let toml = std::fs::read_to_string(lake.join("evlake.toml")).unwrap();
    std::fs::write(
        lake.join("evlake.toml"),
        toml.replace("# snapshot_models = ", "snapshot_models = [\"balances\"] #"),
    )
    .unwrap();
    let pt = |day: u32| format!("2024-06-{day:02}T00:00:00Z");
    ok(
        &lake,
        &[
            "run",
            &sample("2024-03-15.jsonl"),
            "--processing-time",
            &pt(1),
        ],
    );
    ok(&lake, &["snapshot", "carts", "--as-of", "2024-03-16"]);
    ok(&lake, &["snapshot", "profiles", "--as-of", "2024-03-10"]);
    // (model, as_of) of a list of snapshots, sorted.
    let times = |v: &Value| -> Vec<(String, String)> {
        let mut w: Vec<(String, String)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["model"].as_str().unwrap().into(),
                    s["as_of"].as_str().unwrap().into(),
                )
            })
            .collect();
        w.sort();
        w
    };
    let planned = |v: &Value| times(&v["plan"]["snapshots"]);
    let written = |v: &Value| times(&v["snapshots"]);
    let second = [
        "run",
        &sample("2024-03-16.jsonl.gz"),
        &sample("2024-03-19.jsonl"),
        "--processing-time",
        &pt(2),
    ];
    let mut dry = second.to_vec();
    dry.extend(["--dry-run", "--json"]);
    let plan = ok(&lake, &dry);
    let end = |d: &str| (d.to_string(), format!("2024-03-{d}T23:59:59.999999Z"));
    let expect: Vec<(String, String)> = [("balances", "15"), ("balances", "19"), ("carts", "16")]
        .iter()
        .map(|(m, d)| (m.to_string(), end(d).1))
        .collect();
    assert_eq!(planned(&plan), expect, "{plan}");
    let mut real = second.to_vec();
    real.push("--json");
    assert_eq!(written(&ok(&lake, &real)), expect);

    // The lake's own `ledger`: balances' snapshots are rebuilt, carts'
    // and profiles' are not.
    std::fs::create_dir_all(lake.join("typed")).unwrap();
    let ledger = std::fs::read_to_string(repo().join("sql/silver/typed/ledger.sql")).unwrap();
    std::fs::write(lake.join("typed/ledger.sql"), ledger + "\n-- ours\n").unwrap();
    let plan = ok(&lake, &["run", "--dry-run", "--json"]);
    let expect: Vec<(String, String)> = [("balances", "15"), ("balances", "19")]
        .iter()
        .map(|(m, d)| (m.to_string(), end(d).1))
        .collect();
    assert_eq!(planned(&plan), expect, "{plan}");
    assert!(
        plan["plan"]["snapshots"][0]["why"]
            .as_str()
            .unwrap()
            .contains("typed table ledger"),
        "{plan}"
    );
    assert_eq!(written(&ok(&lake, &["run", "--json"])), expect);
}

#[test]
fn as_of_now_is_the_clocks_time() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    run_sample_batches(&lake);
    let before = chrono::Utc::now();
    let now = ok(&lake, &["state", "balances", "--as-of", "now", "--json"]);
    let after = chrono::Utc::now();
    let as_of = chrono::DateTime::parse_from_rfc3339(now["as_of"].as_str().unwrap()).unwrap();
    assert!(before <= as_of && as_of <= after, "{now}");
    // Every sample event is before now: the answer of a far future.
    let later = ok(
        &lake,
        &["state", "balances", "--as-of", "2099-12-31", "--json"],
    );
    assert_eq!(now["rows"], later["rows"]);
    assert!(!now["rows"].as_array().unwrap().is_empty());
    let trail = |extra: &[&str]| {
        let mut args = vec!["history", "acct-u2", "--format", "csv"];
        args.extend_from_slice(extra);
        let o = run(&lake, &args);
        assert!(o.status.success(), "{}", stderr(&o));
        o.stdout
    };
    assert_eq!(trail(&["--as-of", "now", "--known-at", "NOW"]), trail(&[]));
}

/// A model of the lake's own whose partials hold times in nanoseconds or
/// seconds (`CAST(x AS TIMESTAMP)`, `to_timestamp_seconds`) stores its
/// snapshots in microseconds, the lake's unit, which every reader takes
/// (Spark refuses a file with a column of Parquet's nanoseconds; DuckDB
/// read seconds as bare integers), and answers from a snapshot and from
/// a full replay agree.
#[test]
fn an_own_model_s_snapshot_stores_its_times_in_microseconds() {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    run_sample_batches(&lake);
    std::fs::create_dir_all(lake.join("models")).unwrap();
    std::fs::write(
        lake.join("models/last_seen.sql"),
        "-- name: delta\nSELECT user_id, max(CAST(event_timestamp AS TIMESTAMP)) AS last_ns, \
         max(to_timestamp_seconds(event_timestamp)) AS last_s FROM events GROUP BY user_id;\n\
         -- name: combine\nSELECT user_id, max(last_ns) AS last_ns, max(last_s) AS last_s \
         FROM partials GROUP BY user_id;\n\
         -- name: present\nSELECT * FROM state WHERE $1 IS NULL OR user_id = $1 ORDER BY user_id;\n",
    )
    .unwrap();
    ok(
        &lake,
        &["snapshot", "last_seen", "--as-of", "2024-03-15T15:00:00Z"],
    );
    let snapshot = std::fs::read_dir(lake.join("state/last_seen"))
        .unwrap()
        .flat_map(|e| std::fs::read_dir(e.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .expect("a snapshot file");
    let file = std::fs::File::open(&snapshot).unwrap();
    let types: Vec<String> = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .schema()
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect();
    assert_eq!(
        types,
        [
            "user_id Utf8",
            "last_ns Timestamp(µs)",
            "last_s Timestamp(µs, \"UTC\")"
        ]
    );
    let from_snapshot = state(&lake, "last_seen", "2024-03-16", &[]);
    let replayed = state(&lake, "last_seen", "2024-03-16", &["--no-snapshot"]);
    assert!(from_snapshot["snapshot"].is_object(), "{from_snapshot}");
    assert!(!from_snapshot["rows"].as_array().unwrap().is_empty());
    assert_eq!(from_snapshot["rows"], replayed["rows"]);
}

#[test]
fn an_own_model_with_a_json_union_column_answers_but_is_refused_a_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    run_sample_batches(&lake);
    std::fs::create_dir_all(lake.join("models")).unwrap();
    std::fs::write(
        lake.join("models/pages.sql"),
        "-- name: delta\nSELECT user_id, first_value(properties->'page' ORDER BY event_timestamp, \
         event_id) AS page, count(*) AS n FROM events GROUP BY user_id;\n\
         -- name: combine\nSELECT user_id, first_value(page ORDER BY n) AS page, sum(n) AS n \
         FROM partials GROUP BY user_id;\n\
         -- name: present\nSELECT * FROM state WHERE $1 IS NULL OR user_id = $1 ORDER BY user_id;\n",
    )
    .unwrap();
    let before = commits(&lake);
    // The Parquet writer panicked on the union (exit 1, a backtrace).
    run_says(
        &lake,
        &["snapshot", "pages", "--as-of", "2024-03-15T15:00:00Z"],
        2,
        "model `pages`: combine (",
    );
    let o = run_says(
        &lake,
        &["snapshot", "pages", "--as-of", "2024-03-15T15:00:00Z"],
        2,
        "returns column `page`, a union of types",
    );
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert_eq!(commits(&lake), before);
    assert!(!lake.join("state/pages").exists());
    // Answers replay every event; --json, whose rows arrow's JSON writer
    // failed on after the summary's first members were out, says so first.
    let table = run(&lake, &["state", "pages", "--as-of", "2024-03-16"]);
    assert_eq!(exit_code(&table), 0, "{}", stderr(&table));
    assert!(!table.stdout.is_empty());
    let o = run_says(
        &lake,
        &["state", "pages", "--as-of", "2024-03-16", "--json"],
        2,
        "--json cannot hold column `page`",
    );
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}
