//! Late data: watermark, policies, side output, reconcile, dirtiness and
//! the metadata-only reports.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::common::*;
use crate::silver::list;

/// Ingest the three sample batches with `policy`; return the summaries.
fn ingest_samples(lake: &Path, policy: &str) -> Vec<Value> {
    expected()["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            ok(
                lake,
                &[
                    "ingest",
                    &sample(b["file"].as_str().unwrap()),
                    "--processing-time",
                    b["processing_time"].as_str().unwrap(),
                    "--late-policy",
                    policy,
                    "--json",
                ],
            )
        })
        .collect()
}

fn side_output(summary: &Value) -> BTreeMap<String, u64> {
    summary["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["side_output"].as_u64().unwrap() > 0)
        .map(|p| {
            (
                p["event_date"].as_str().unwrap().to_string(),
                p["side_output"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn late_rows(lake: &Path, dir: &str) -> BTreeMap<String, (u64, u64)> {
    // (rows, rows with is_late) per partition of a table directory.
    let mut m = BTreeMap::new();
    for f in parquet_files(&lake.join(dir)) {
        let date = f
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace("event_date=", "");
        for b in read_parquet(&f) {
            use datafusion::arrow::array::AsArray;
            let late = b.column_by_name("is_late").unwrap().as_boolean();
            let e = m.entry(date.clone()).or_insert((0, 0));
            e.0 += b.num_rows() as u64;
            e.1 += late.true_count() as u64;
        }
    }
    m
}

fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn seed_scenario_under_each_policy() {
    let exp = expected();
    let all = expected_counts(&exp["partitions"]);
    let tmp = tempfile::tempdir().unwrap();

    // The first batch's after-midnight traffic moves the watermark to
    // 2024-03-16T00:30Z, closing the 15th (and the 14th): the mobile events
    // of the 15th queued offline arrive a day later, late.
    let reopen = tmp.path().join("reopen");
    let s = ingest_samples(&reopen, "reopen");
    assert_eq!(s[0]["watermark"], "2024-03-16T00:30:00Z");
    assert_eq!(s[0]["late_events"], 0);
    assert_eq!(s[1]["watermark_before"], "2024-03-16T00:30:00Z");
    assert_eq!(s[1]["late_events"], 18);
    assert_eq!(s[2]["late_events"], 6);
    assert!(s.iter().all(|x| x["side_output_events"] == 0));
    assert_eq!(counts_by_date(&bronze_rows(&reopen)), all);
    let late = late_rows(&reopen, "bronze/events");
    assert_eq!(late["2024-03-14"], (2, 1));
    assert_eq!(late["2024-03-15"].1, 17 + 5);
    assert_eq!(late["2024-03-16"].1, 1);
    assert_eq!(late["2024-03-19"].1, 0);
    assert!(late_rows(&reopen, "bronze/late").is_empty());

    // side-output: every late event waits in bronze/late.
    let side = tmp.path().join("side");
    let s = ingest_samples(&side, "side-output");
    assert_eq!(
        side_output(&s[1]),
        map(&[("2024-03-14", 1), ("2024-03-15", 17)])
    );
    assert_eq!(
        side_output(&s[2]),
        map(&[("2024-03-15", 5), ("2024-03-16", 1)])
    );
    let parked = late_rows(&side, "bronze/late");
    assert_eq!(parked["2024-03-15"], (22, 22));
    let st = ok(&side, &["status", "--json"]);
    assert_eq!(st["side_output_events"], 24);
    // The text says what brings them in.
    let text = String::from_utf8(run(&side, &["status"]).stdout).unwrap();
    assert!(
        text.contains(
            "24 waiting in the side output (not in silver or gold until `evlake reconcile` \
             merges them into bronze)"
        ),
        "{text}"
    );
    assert_eq!(
        st["events"].as_u64().unwrap() + 24,
        all.values().sum::<u64>()
    );
    let dry = ok(&side, &["reconcile", "--dry-run", "--json"]);
    assert_eq!(dry["status"], "dry_run");
    assert_eq!(dry["events"], 24);
    assert_eq!(dry["version"], st["version"]);
    assert_eq!(
        late_rows(&side, "bronze/late"),
        parked,
        "a dry run moves nothing"
    );
    assert_eq!(ok(&side, &["status", "--json"])["version"], st["version"]);
    let r = ok(&side, &["reconcile", "--json"]);
    assert_eq!(r["status"], "committed");
    assert_eq!(r["events"], 24);
    assert_eq!(
        r["partitions"], dry["partitions"],
        "the dry run's dates and counts"
    );
    assert_eq!(counts_by_date(&bronze_rows(&side)), all);
    assert!(parquet_files(&side.join("bronze/late")).is_empty());
    let again = ok(&side, &["reconcile", "--json"]);
    assert_eq!(again["status"], "noop");
    let text = String::from_utf8(run(&side, &["status"]).stdout).unwrap();
    assert!(text.contains(" 0 waiting in the side output\n"), "{text}");
    assert_eq!(counts_by_date(&bronze_rows(&side)), all);
    assert_eq!(
        late_rows(&side, "bronze/events"),
        late,
        "same rows and is_late as reopen"
    );

    // grace 24h: the 14th is already past its grace in batch 2; the 15th
    // reopens in batch 2 but is past its grace in batch 3; the 16th reopens.
    let grace = tmp.path().join("grace");
    let s = ingest_samples(&grace, "grace");
    assert_eq!(side_output(&s[1]), map(&[("2024-03-14", 1)]));
    assert_eq!(side_output(&s[2]), map(&[("2024-03-15", 5)]));
    ok(&grace, &["reconcile"]);
    assert_eq!(counts_by_date(&bronze_rows(&grace)), all);
}

#[test]
fn the_watermark_only_moves_forward_and_the_boundary_is_inclusive() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let line = |id: &str, ts: &str| {
        format!(
            "{{\"event_id\":\"{id}\",\"event_type\":\"t\",\"event_timestamp\":\"{ts}\",\"user_id\":\"u\"}}\n"
        )
    };
    let f1 = tmp.path().join("a.jsonl");
    std::fs::write(&f1, line("a", "2024-03-16T01:00:00Z")).unwrap();
    let s = ok(&lake, &["ingest", f1.to_str().unwrap(), "--json"]);
    assert_eq!(s["watermark"], "2024-03-16T00:00:00Z");
    // Exactly at the boundary: the watermark equals the end of the 15th, so
    // the 15th is closed; the first instant of the 16th is not late.
    let f2 = tmp.path().join("b.jsonl");
    std::fs::write(
        &f2,
        line("b", "2024-03-15T23:59:59.999999Z") + &line("c", "2024-03-16T00:00:00Z"),
    )
    .unwrap();
    let s = ok(&lake, &["ingest", f2.to_str().unwrap(), "--json"]);
    let parts = s["partitions"].as_array().unwrap();
    assert_eq!(parts[0]["event_date"], "2024-03-15");
    assert_eq!(parts[0]["late"], 1);
    assert_eq!(parts[1]["late"], 0);
    assert_eq!(
        s["watermark"], "2024-03-16T00:00:00Z",
        "older events do not move it back"
    );
    // A bigger delay later cannot pull it back either.
    let f3 = tmp.path().join("c.jsonl");
    std::fs::write(&f3, line("d", "2024-03-16T02:00:00Z")).unwrap();
    let s = ok(
        &lake,
        &[
            "ingest",
            f3.to_str().unwrap(),
            "--watermark-delay",
            "1d",
            "--json",
        ],
    );
    assert_eq!(s["watermark"], "2024-03-16T00:00:00Z");
    assert_eq!(
        ok(&lake, &["status", "--json"])["watermark"],
        "2024-03-16T00:00:00Z"
    );
}

#[test]
fn any_arrival_order_and_policy_ends_with_the_same_events() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let truth = generate(
        &gen_dir,
        &["--events", "4000", "--days", "5", "--seed", "5"],
    );
    let files = generated_batches(&gen_dir, &truth);
    let last_pt = truth["batches"].as_array().unwrap().last().unwrap()["processing_time"]
        .as_str()
        .unwrap()
        .to_string();
    let key = |lake: &Path| {
        let mut v: Vec<(String, String, String, i64)> = bronze_rows(lake)
            .into_iter()
            .map(|r| (r.event_date, r.event_id, r.source_file, r.source_line))
            .collect();
        v.sort();
        v
    };
    let mut reference = None;
    // A small deterministic shuffle (xorshift) per case.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for case in 0..6 {
        let policy = ["reopen", "side-output", "grace"][case % 3];
        let mut order = files.clone();
        for i in (1..order.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        let lake = tmp.path().join(format!("lake-{case}"));
        for f in &order {
            ok(
                &lake,
                &[
                    "ingest",
                    f,
                    "--late-policy",
                    policy,
                    "--processing-time",
                    &last_pt,
                ],
            );
        }
        ok(&lake, &["reconcile"]);
        let got = key(&lake);
        assert_eq!(
            counts_by_date(&bronze_rows(&lake)),
            expected_counts(&truth["partitions"]),
            "case {case}: {policy} {order:?}"
        );
        match &reference {
            None => reference = Some(got),
            Some(r) => assert_eq!(&got, r, "case {case}: {policy} {order:?}"),
        }
    }
}

#[test]
fn the_dirty_set_is_exactly_what_changed_after_the_build() {
    use evlake::dirty;
    use evlake::lake::Lake;
    use evlake::log::{self, Commit, LakeState};

    let tmp = tempfile::tempdir().unwrap();
    let lake_dir = tmp.path().join("lake");
    let batches = expected()["batches"].as_array().unwrap().clone();
    ingest_sample_batch(&lake_dir, &batches[0]);
    ingest_sample_batch(&lake_dir, &batches[1]);

    // Every silver table (each reads bronze of the same date) recorded as
    // built from every bronze partition as it is now, with the settings a
    // run would use (`status` judges against those).
    let lake = Lake::new(&lake_dir);
    let state = LakeState::load(&lake).unwrap();
    let fp = evlake::silver::fingerprint(&evlake::silver::Settings::default());
    let mut c = Commit::next(&state, "test-build", 0);
    for (p, _) in state.partitions(evlake::bronze::TABLE) {
        for table in evlake::silver::all_tables() {
            c.builds.push(dirty::build_record(
                &state,
                table,
                p,
                &[dirty::input_key(evlake::bronze::TABLE, p)],
                &fp,
            ));
        }
    }
    log::write_commit(&lake, &c).unwrap();
    let st = ok(&lake_dir, &["status", "--json"]);
    assert_eq!(st["dirty"], Value::Array(vec![]), "a fresh build is clean");

    // Batch 3 touches the 15th and 16th (late) and the 19th and 20th (new).
    ingest_sample_batch(&lake_dir, &batches[2]);
    let st = ok(&lake_dir, &["status", "--json"]);
    let dirty: Vec<(String, String)> = dirty_partitions(&lake_dir)
        .into_iter()
        .map(|(_, partition, kind)| (partition, kind))
        .collect();
    assert_eq!(
        dirty,
        [
            ("2024-03-15".to_string(), "input_changed".to_string()),
            ("2024-03-16".to_string(), "input_changed".to_string()),
            ("2024-03-19".to_string(), "never_built".to_string()),
            ("2024-03-20".to_string(), "never_built".to_string()),
        ]
    );
    assert_eq!(st["dirty"][0]["reasons"][0]["changed_in"], 4);
    let text = String::from_utf8(run(&lake_dir, &["status"]).stdout).unwrap();
    assert!(
        text.contains(
            "events 2024-03-15: bronze_events/2024-03-15 changed in commit 4 (built from 2)"
        ),
        "{text}"
    );
}

#[test]
fn a_crash_during_reconcile_then_a_rerun_merges_once() {
    let tmp = tempfile::tempdir().unwrap();
    for step in evlake::fault::STEPS {
        let lake = tmp.path().join(format!("lake-{step}"));
        ingest_samples(&lake, "side-output");
        let o = cmd(&lake, &["reconcile"])
            .env("EVLAKE_FAULT", step)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{step}");
        ok(&lake, &["reconcile"]);
        assert_eq!(
            counts_by_date(&bronze_rows(&lake)),
            expected_counts(&expected()["partitions"]),
            "{step}"
        );
        assert!(
            parquet_files(&lake.join("bronze/late")).is_empty(),
            "{step}"
        );
        assert_eq!(files_on_disk(&lake), committed_files(&lake), "{step}");
    }
}

/// A lake named by a relative path, or the default `./lake`, that does
/// not exist yet: `init` created it, then failed to fsync its parent
/// (``), so the first `init` exited 1.
#[test]
fn init_and_ingest_create_a_lake_at_a_relative_path() {
    let tmp = tempfile::tempdir().unwrap();
    let in_tmp = |args: &[&str]| {
        std::process::Command::new(bin())
            .args(args)
            .current_dir(tmp.path())
            .env_remove("EVLAKE_LAKE")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let o = in_tmp(&["--lake", "rel", "init"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(tmp.path().join("rel/evlake.toml").is_file());
    // The default lake, ./lake, created by init, then by ingest alone.
    let o = in_tmp(&["init"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(tmp.path().join("lake/evlake.toml").is_file());
    let o = in_tmp(&["--lake", "fresh", "ingest", &sample("2024-03-15.jsonl")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(tmp.path().join("fresh/_evlake/log").is_dir());
}

#[test]
fn evlake_toml_sets_defaults_and_flags_override_it() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let o = run(&lake, &["init"]);
    assert!(o.status.success());
    let toml = std::fs::read_to_string(lake.join("evlake.toml")).unwrap();
    assert!(toml.contains("# late_policy = \"reopen\""));
    std::fs::write(
        lake.join("evlake.toml"),
        "[ingest]\nlate_policy = \"side-output\"\n",
    )
    .unwrap();
    assert!(stderr(&run(&lake, &["init"])).contains("already exists"));
    let s = ok(&lake, &["init", "--json"]);
    assert_eq!(
        (s["command"].as_str(), s["status"].as_str()),
        (Some("init"), Some("kept")),
        "{s}"
    );
    assert_eq!(
        std::fs::read_to_string(lake.join("evlake.toml")).unwrap(),
        "[ingest]\nlate_policy = \"side-output\"\n"
    );

    let s = ingest_samples(&lake, "reopen"); // the flag wins
    assert_eq!(s[1]["late_policy"], "reopen");
    let lake2 = tmp.path().join("lake2");
    std::fs::create_dir_all(&lake2).unwrap();
    std::fs::write(
        lake2.join("evlake.toml"),
        "[ingest]\nlate_policy = \"side-output\"\n",
    )
    .unwrap();
    let b = &expected()["batches"];
    ingest_sample_batch(&lake2, &b[0]);
    let s = ingest_sample_batch(&lake2, &b[1]);
    assert_eq!(s["late_policy"], "side-output");
    assert_eq!(s["side_output_events"], 18);

    std::fs::write(
        lake2.join("evlake.toml"),
        "[ingest]\nwatermark_delay = \"soon\"\n",
    )
    .unwrap();
    let o = run(&lake2, &["ingest", &sample("2024-03-19.jsonl")]);
    assert_eq!(exit_code(&o), 2);
    assert!(
        stderr(&o).contains("ingest.watermark_delay"),
        "{}",
        stderr(&o)
    );
    // `status` checks every setting a run would use, so a bad value shows
    // there, not first in the next cron run's ingest; so does a `run`
    // with no input.
    for (toml, key) in [
        (
            "[ingest]\nwatermark_delay = \"soon\"\n",
            "ingest.watermark_delay",
        ),
        (
            "[ingest]\nmax_bad_fraction = 1.5\n",
            "ingest.max_bad_fraction",
        ),
        (
            "[ingest]\ncompact_min_files = 1\n",
            "ingest.compact_min_files",
        ),
        ("[engine]\nmemory_limit = \"lots\"\n", "engine.memory_limit"),
        ("[state]\nsnapshot_keep = 0\n", "state.snapshot_keep"),
        (
            "[state]\nsnapshot_models = [\"balance\"]\n",
            "state.snapshot_models",
        ),
    ] {
        std::fs::write(lake2.join("evlake.toml"), toml).unwrap();
        for command in ["status", "run"] {
            let o = run(&lake2, &[command]);
            assert_eq!(exit_code(&o), 2, "{command} {toml}");
            assert!(stderr(&o).contains(key), "{toml}: {}", stderr(&o));
        }
    }
    std::fs::write(
        lake2.join("evlake.toml"),
        "[ingest]\ncompact_min_files = 2\n[state]\nsnapshot_models = [\"balances\"]\n",
    )
    .unwrap();
    assert!(run(&lake2, &["status"]).status.success());
    std::fs::write(
        lake2.join("evlake.toml"),
        "[ingest]\nlate_polcy = \"grace\"\n",
    )
    .unwrap();
    let o = run(&lake2, &["ingest", &sample("2024-03-19.jsonl")]);
    assert_eq!(exit_code(&o), 2);
    assert!(stderr(&o).contains("late_polcy"), "{}", stderr(&o));
}

/// `--allowed-lateness` is the grace period of `--late-policy grace`:
/// given with another policy it does nothing, and the run says so.
#[test]
fn a_grace_period_without_the_grace_policy_is_warned_of() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let b = &expected()["batches"];
    let warned = |o: &std::process::Output, what: &str| {
        stderr(o).contains(&format!(
            "Warning {what} has no effect with late policy reopen: it is the grace period of \
             --late-policy grace"
        ))
    };
    let file = sample(b[0]["file"].as_str().unwrap());
    let o = run(&lake, &["ingest", &file, "--allowed-lateness", "48h"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(warned(&o, "--allowed-lateness"), "{}", stderr(&o));
    let file = sample(b[1]["file"].as_str().unwrap());
    let o = run(
        &lake,
        &[
            "ingest",
            &file,
            "--allowed-lateness",
            "48h",
            "--late-policy",
            "grace",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("has no effect"), "{}", stderr(&o));
    std::fs::write(
        lake.join("evlake.toml"),
        "[ingest]\nallowed_lateness = \"2d\"\n",
    )
    .unwrap();
    let o = run(&lake, &["status"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        warned(&o, "ingest.allowed_lateness in evlake.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_late_flags_are_usage_errors_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    for (args, flag) in [
        (
            vec!["ingest", "x.jsonl", "--late-policy", "later"],
            "--late-policy",
        ),
        (
            vec!["ingest", "x.jsonl", "--watermark-delay", "1 hour"],
            "--watermark-delay",
        ),
        (
            vec!["ingest", "x.jsonl", "--allowed-lateness=-3h"],
            "--allowed-lateness",
        ),
    ] {
        let o = run(&lake, &args);
        assert_eq!(exit_code(&o), 2, "{args:?}");
        assert!(stderr(&o).contains(flag), "{}", stderr(&o));
    }
}

#[test]
fn lateness_report_reads_the_log_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ingest_samples(&lake, "side-output");
    let rows = json_lines(&run(&lake, &["lateness", "--format", "json"]));
    let total: u64 = rows.iter().map(|r| r["events"].as_u64().unwrap()).sum();
    assert_eq!(
        total,
        expected_counts(&expected()["partitions"])
            .values()
            .sum::<u64>()
    );
    let fifteenth = rows.iter().find(|r| r["key"] == "2024-03-15").unwrap();
    assert_eq!(fifteenth["late"], 22);
    assert_eq!(fifteenth["side_output"], 22);
    assert_eq!(
        fifteenth["on_time"].as_u64().unwrap() + 22,
        fifteenth["events"].as_u64().unwrap()
    );
    let by_batch = json_lines(&run(
        &lake,
        &["lateness", "--by", "batch", "--format", "json"],
    ));
    assert_eq!(by_batch.len(), 3);
    assert_eq!(by_batch[1]["late"], 18);
    assert_eq!(by_batch[2]["late_over_24h"], 6);
    let csv =
        String::from_utf8(run(&lake, &["lateness", "--by", "batch", "--format", "csv"]).stdout)
            .unwrap();
    assert_eq!(csv.lines().count(), 4);
    assert!(csv.starts_with("key,sources,events,late"));
    let table = String::from_utf8(run(&lake, &["lateness"]).stdout).unwrap();
    assert!(table.contains("on time"), "{table}");
    assert!(table.contains("late > 24h"), "{table}");
    // By partition there are no input files to show: no empty column.
    let header = table.lines().find(|l| l.starts_with("event_date")).unwrap();
    assert!(!header.contains("sources"), "{table}");
    // By batch, each commit's row names the files it ingested.
    let table = String::from_utf8(run(&lake, &["lateness", "--by", "batch"]).stdout).unwrap();
    let header = table.lines().find(|l| l.starts_with("commit")).unwrap();
    assert!(header.ends_with("sources"), "{table}");
    let commits: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(commits.len(), 3, "{table}");
    assert!(commits.iter().all(|l| l.contains(".jsonl")), "{table}");
}

#[test]
fn a_crash_while_writing_the_side_output_then_a_rerun_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = expected()["batches"].as_array().unwrap().clone();
    // After the first two batches the lake holds exactly these partitions.
    let want: BTreeMap<String, u64> = {
        let mut m = BTreeMap::new();
        for b in &batches[..2] {
            for (d, n) in b["partitions"].as_object().unwrap() {
                *m.entry(d.clone()).or_default() += n.as_u64().unwrap();
            }
        }
        m
    };
    for step in evlake::fault::STEPS {
        let lake = tmp.path().join(format!("lake-{step}"));
        ingest_sample_batch(&lake, &batches[0]);
        let second = [
            "ingest",
            &sample(batches[1]["file"].as_str().unwrap()),
            "--processing-time",
            batches[1]["processing_time"].as_str().unwrap(),
            "--late-policy",
            "side-output",
        ];
        let o = cmd(&lake, &second)
            .env("EVLAKE_FAULT", step)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{step}");
        ok(&lake, &second);
        let mut got = counts_by_date(&bronze_rows(&lake));
        let parked = late_rows(&lake, "bronze/late");
        assert_eq!(parked.values().map(|v| v.0).sum::<u64>(), 18, "{step}");
        for (d, (n, _)) in parked {
            *got.entry(d).or_default() += n;
        }
        assert_eq!(got, want, "{step}");
        assert_eq!(files_on_disk(&lake), committed_files(&lake), "{step}");
        let st = ok(&lake, &["status", "--json"]);
        assert_eq!(st["side_output_events"], 18, "{step}");
    }
}

/// Every bronze row as CSV, sorted (what compaction must keep exactly).
fn bronze_csv(lake: &Path) -> Vec<String> {
    let mut v = crate::silver::query_csv(lake, "SELECT * FROM bronze_events");
    v.sort();
    v
}

/// `evlake compact` rewrites a date's small files as one and changes no
/// row: nothing becomes dirty, no snapshot invalid, a re-run is a no-op,
/// and the next late batch still takes silver's incremental path and
/// equals a full rebuild. A date bronze grew on since silver read it
/// waits. A crash at any step, then a re-run, loses and doubles nothing.
#[test]
fn compaction_rewrites_small_files_and_changes_no_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let truth = generate(
        &gen_dir,
        &[
            "--events",
            "4000",
            "--days",
            "6",
            "--seed",
            "5",
            "--late-rate",
            "0.7",
            "--users",
            "40",
        ],
    );
    let lake = tmp.path().join("lake");
    for (path, pt) in generated_runs(&gen_dir, &truth) {
        ok(&lake, &batch_run_args(&path, &pt));
    }
    ok(&lake, &["snapshot", "balances", "--as-of", "2024-03-03"]);
    let files = |lake: &Path| committed_files_under(lake, "bronze/events").len();
    let (rows, silver, gold, n) = (
        bronze_csv(&lake),
        silver_dump(&lake),
        gold_dump(&lake),
        files(&lake),
    );
    let plan = ok(
        &lake,
        &["compact", "--min-files", "2", "--dry-run", "--json"],
    );
    assert_eq!(plan["status"], "dry_run");
    assert_eq!(files(&lake), n, "a dry run changes nothing");
    let planned = plan["partitions"].as_array().unwrap().len();
    assert!(planned >= 2, "{plan}");
    // `--dates` of a wrong year compacts nothing, and says so, as silver
    // and gold do; a date the lake has is no warning.
    let o = run(
        &lake,
        &[
            "compact",
            "--min-files",
            "2",
            "--dates",
            "2023-03-15",
            "--dry-run",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "Warning --dates 2023-03-15 names no date this lake has events on: nothing was \
             compacted"
        ),
        "{}",
        stderr(&o)
    );
    let date = plan["partitions"][0]["event_date"].as_str().unwrap();
    let o = run(
        &lake,
        &["compact", "--min-files", "2", "--dates", date, "--dry-run"],
    );
    assert!(!stderr(&o).contains("Warning"), "{}", stderr(&o));

    // Crashes at every step, then a re-run.
    for step in evlake::fault::STEPS {
        let copy = tmp.path().join(format!("crash-{step}"));
        copy_dir(&lake, &copy);
        let o = cmd(&copy, &["compact", "--min-files", "2"])
            .env("EVLAKE_FAULT", format!("compact:{step}"))
            .output()
            .unwrap();
        assert!(!o.status.success(), "{step}: the fault hook must abort");
        assert_eq!(bronze_csv(&copy), rows, "{step}: readable, every row once");
        ok(&copy, &["compact", "--min-files", "2"]);
        assert_eq!(bronze_csv(&copy), rows, "{step}");
        assert_eq!(files_on_disk(&copy), committed_files(&copy), "{step}");
    }

    let r = ok(&lake, &["compact", "--min-files", "2", "--json"]);
    assert_eq!(r["status"], "committed", "{r}");
    assert_eq!(r["partitions"].as_array().unwrap().len(), planned);
    assert!(files(&lake) < n, "{} files, {n} before", files(&lake));
    for p in r["partitions"].as_array().unwrap() {
        assert_eq!(p["files_after"], 1, "{r}");
    }
    assert_eq!(bronze_csv(&lake), rows);
    assert_eq!(files_on_disk(&lake), committed_files(&lake));
    let st = ok(&lake, &["status", "--json"]);
    assert_eq!(
        st["dirty"],
        Value::Array(vec![]),
        "nothing derived is dirty: {st}"
    );
    assert_eq!(st["snapshots"][0]["valid"], true, "{st}");
    assert_eq!(ok(&lake, &["run", "--json"])["status"], "noop");
    assert_eq!(
        ok(&lake, &["compact", "--min-files", "2", "--json"])["status"],
        "noop"
    );
    assert_eq!(silver_dump(&lake), silver);
    assert_eq!(gold_dump(&lake), gold);

    // A late event on a compacted date: silver's incremental path, equal
    // to a full rebuild.
    let late = tmp.path().join("late.jsonl");
    let date = r["partitions"][0]["event_date"].as_str().unwrap();
    std::fs::write(
        &late,
        crate::silver::ev("late-1", "page_view", &format!("{date}T12:00:00Z"), "u1"),
    )
    .unwrap();
    let v = ok(
        &lake,
        &[
            "run",
            late.to_str().unwrap(),
            "--processing-time",
            "2024-04-01T00:00:00Z",
            "--json",
        ],
    );
    assert_eq!(v["silver"]["mode"], "incremental", "{v}");
    let full = tmp.path().join("full");
    copy_dir(&lake, &full);
    ok(&full, &["silver", "--full"]);
    ok(&full, &["gold", "--full"]);
    assert_eq!(silver_dump(&lake), silver_dump(&full));
    assert_eq!(gold_dump(&lake), gold_dump(&full));

    // Bronze grown since silver read it: that date waits for silver.
    for (i, line) in ["late-2", "late-3"].iter().enumerate() {
        let f = tmp.path().join(format!("{line}.jsonl"));
        std::fs::write(
            &f,
            crate::silver::ev(line, "page_view", &format!("{date}T13:0{i}:00Z"), "u2"),
        )
        .unwrap();
        ok(
            &lake,
            &[
                "ingest",
                f.to_str().unwrap(),
                "--processing-time",
                "2024-04-02T00:00:00Z",
            ],
        );
    }
    let r = ok(&lake, &["compact", "--min-files", "2", "--json"]);
    assert_eq!(list(&r["skipped_dirty"]), [date], "{r}");
    ok(&lake, &["silver"]);
    let r = ok(&lake, &["compact", "--min-files", "2", "--json"]);
    assert_eq!(r["partitions"][0]["event_date"], date, "{r}");
}

/// With `[ingest] compact_min_files`, every `run` ends by compacting: an
/// hourly-fed lake keeps one bronze file per date, and its tables equal
/// those of a lake that never compacted.
#[test]
fn run_compacts_when_configured_and_the_tables_stay_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let truth = generate(
        &gen_dir,
        &[
            "--events",
            "3000",
            "--days",
            "5",
            "--seed",
            "9",
            "--late-rate",
            "0.7",
            "--users",
            "30",
        ],
    );
    let (plain, compacted) = (tmp.path().join("plain"), tmp.path().join("compacted"));
    ok(&compacted, &["init"]);
    let toml = std::fs::read_to_string(compacted.join("evlake.toml")).unwrap();
    std::fs::write(
        compacted.join("evlake.toml"),
        toml.replace("# compact_min_files = 24", "compact_min_files = 2"),
    )
    .unwrap();
    let mut compactions = 0;
    for (path, pt) in generated_runs(&gen_dir, &truth) {
        let mut args = batch_run_args(&path, &pt).to_vec();
        args.push("--json");
        assert!(ok(&plain, &args)["compact"].is_null());
        let mut dry = args.clone();
        dry.push("--dry-run");
        let planned = list(&ok(&compacted, &dry)["plan"]["compact_dates"]);
        let r = ok(&compacted, &args);
        let done: Vec<String> = r["compact"]["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["event_date"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            planned, done,
            "the dry run names the dates the run compacts"
        );
        if r["compact"]["status"] == "committed" {
            compactions += 1;
        }
    }
    assert!(compactions > 0);
    let st = ok(&compacted, &["status", "--json"]);
    for p in st["partitions"].as_array().unwrap() {
        assert_eq!(p["files"], 1, "{p}");
    }
    assert_eq!(bronze_csv(&compacted), bronze_csv(&plain));
    assert_eq!(silver_dump(&compacted), silver_dump(&plain));
    assert_eq!(gold_dump(&compacted), gold_dump(&plain));
}

/// `[log] retention`: commits older than it go once the older of the two
/// kept checkpoints covers them, and nothing a lake answers changes, not
/// even for a late event on a date built before the oldest commit kept
/// (silver cannot list the files that date gained, so it rebuilds it
/// whole).
#[test]
fn log_retention_removes_old_commits_and_no_answer_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let truth = generate(
        &gen_dir,
        &[
            "--events", "3000", "--days", "8", "--seed", "11", "--users", "60",
        ],
    );
    let (kept, pruned) = (tmp.path().join("kept"), tmp.path().join("pruned"));
    std::fs::create_dir_all(&pruned).unwrap();
    std::fs::write(pruned.join("evlake.toml"), "[log]\nretention = \"2d\"\n").unwrap();
    let run_in = |lake: &Path, args: &[&str]| {
        let o = cmd(lake, args)
            .env("EVLAKE_CHECKPOINT_EVERY", "4")
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        o
    };
    let mut said = Vec::new();
    for lake in [&kept, &pruned] {
        for (path, pt) in generated_runs(&gen_dir, &truth) {
            let o = run_in(lake, &batch_run_args(&path, &pt));
            said.push((lake == &pruned, stderr(&o)));
        }
    }
    // The runs that prune say so; the lake that keeps its log never does.
    let pruning: Vec<&String> = said
        .iter()
        .filter(|(_, e)| e.contains("Pruned"))
        .map(|(p, e)| {
            assert!(*p, "{e}");
            e
        })
        .collect();
    assert!(!pruning.is_empty());
    assert!(
        pruning
            .last()
            .unwrap()
            .contains("it keeps versions 16 to 24 ([log] retention = \"2d\")"),
        "{pruning:?}"
    );
    let first = |lake: &Path| {
        ok(lake, &["status", "--json"])["first_commit"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(first(&kept), 1);
    // 8 runs of 3 commits, a day apart, checkpoints every 4: at version
    // 24 the older checkpoint is 20, and commits from before the run two
    // days earlier (batch 6's, versions 16..) are old.
    assert_eq!(first(&pruned), 16);
    assert_eq!(commits(&pruned), commits(&kept) - 15);
    let status = String::from_utf8(run(&pruned, &["status"]).stdout).unwrap();
    assert!(
        status.contains("the log keeps versions 16 to 24"),
        "{status}"
    );

    let same = |what: &str| {
        assert_eq!(bronze_csv(&pruned), bronze_csv(&kept), "{what}: bronze");
        assert_eq!(silver_dump(&pruned), silver_dump(&kept), "{what}: silver");
        assert_eq!(gold_dump(&pruned), gold_dump(&kept), "{what}: gold");
        let state = |lake: &Path| {
            ok(
                lake,
                &["state", "balances", "--as-of", "2024-03-09", "--json"],
            )["rows"]
                .clone()
        };
        assert_eq!(state(&pruned), state(&kept), "{what}: state");
    };
    same("fed daily");

    // A late event on the first date, whose silver build (version 2) is
    // long gone from the log.
    let late = tmp.path().join("late");
    std::fs::create_dir_all(&late).unwrap();
    let line = r#"{"event_id":"late-1","event_type":"page_view","event_timestamp":"2024-03-01T12:00:00Z","user_id":"u1","properties":{}}"#;
    std::fs::write(late.join("late.jsonl"), format!("{line}\n")).unwrap();
    let late_path = late.join("late.jsonl").display().to_string();
    for lake in [&kept, &pruned] {
        run_in(
            lake,
            &[
                "run",
                &late_path,
                "--processing-time",
                "2024-03-10T05:00:00Z",
            ],
        );
    }
    same("after a late event on a date built before the oldest commit kept");

    // The batch report says what it cannot list.
    let by_batch = |lake: &Path| {
        let o = run_in(lake, &["lateness", "--by", "batch", "--format", "json"]);
        (json_lines(&o).len(), stderr(&o))
    };
    let ((all, quiet), (some, said)) = (by_batch(&kept), by_batch(&pruned));
    assert!(some < all, "{some} of {all} batches");
    assert!(!quiet.contains("retention"), "{quiet}");
    assert!(said.contains("were removed by [log] retention"), "{said}");

    // Without a readable checkpoint a pruned log cannot be read: an error
    // that says so, never an answer from the commits left.
    for entry in std::fs::read_dir(pruned.join("_evlake/log")).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".checkpoint.json") {
            std::fs::write(&path, b"{").unwrap();
        }
    }
    run_says(
        &pruned,
        &["status"],
        1,
        "older commits were removed by [log] retention",
    );

    // A bad value is a usage error for any command.
    std::fs::write(kept.join("evlake.toml"), "[log]\nretention = \"a month\"\n").unwrap();
    run_says(&kept, &["status"], 2, "log.retention");
}
