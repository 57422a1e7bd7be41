//! `evlake erase`: a user's rows taken out of the lake (right to erasure).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::common::*;
use crate::retract::bronze_counts;
use crate::silver::query_csv;

const USER: &str = "u20";

/// Whether generated line `line` is `user`'s, by the rule `erase` uses:
/// a JSON object's `user_id` or `actor_id`; a line that is not one, the
/// id as a JSON string anywhere in it.
fn line_of(line: &str, user: &str) -> bool {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(o)) if o.contains_key("user_id") || o.contains_key("actor_id") => {
            ["user_id", "actor_id"]
                .iter()
                .filter_map(|k| o.get(*k))
                .any(|id| id.as_str().map_or_else(|| id.to_string(), str::to_string) == user)
        }
        _ => line.contains(&format!("\"{user}\"")),
    }
}

/// Rows of `table`, sorted, without the lineage columns (the inputs of
/// the lake they are compared with differ: other file paths and hashes).
fn rows_without_lineage(lake: &Path, table: &str) -> Vec<String> {
    let mut v = query_csv(
        lake,
        &format!("SELECT * EXCLUDE (batch_id, source_file) FROM {table}"),
    );
    v.sort();
    v
}

/// A dump ([`silver_dump`], [`gold_dump`]) without the lineage columns.
fn strip(dump: BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<String>> {
    dump.into_iter()
        .map(|(t, rows)| {
            let mut rows: Vec<String> = rows
                .iter()
                .map(|r| {
                    r.split('|')
                        .filter(|f| !f.starts_with("batch_id=") && !f.starts_with("source_file="))
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect();
            rows.sort();
            (t, rows)
        })
        .collect()
}

/// Erasing a user (some of their rows merged into compacted files, some
/// waiting in the side output, some quarantined) leaves a lake whose every
/// table, count and answer equals a lake fed the same inputs without the
/// user's lines, removes the snapshots built from their events and keeps
/// the one before, and leaves no row naming them in any table. A crash at
/// any step, then a re-run, loses and doubles nothing; a re-run is a
/// reported no-op; the log keeps counts, not the id.
#[test]
fn an_erased_user_leaves_the_lake_as_if_never_there() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let truth = generate_messy(&gen_dir);
    // The same inputs without the user's lines (blank lines in their
    // place, which ingest skips, so every other line keeps its number).
    let runs = generated_runs(&gen_dir, &truth);
    let clean_dir = tmp.path().join("clean");
    std::fs::create_dir_all(&clean_dir).unwrap();
    let mut theirs = 0;
    let clean_runs: Vec<(String, String)> = runs
        .iter()
        .map(|(path, pt)| {
            // (Some lines are not UTF-8: bytes, kept as they are.)
            let bytes = std::fs::read(path).unwrap();
            let kept: Vec<&[u8]> = bytes
                .split(|b| *b == b'\n')
                .map(|l| {
                    if line_of(&String::from_utf8_lossy(l), USER) {
                        theirs += 1;
                        &[][..]
                    } else {
                        l
                    }
                })
                .collect();
            let to = clean_dir.join(Path::new(path).file_name().unwrap());
            std::fs::write(&to, kept.join(&b'\n')).unwrap();
            (to.display().to_string(), pt.clone())
        })
        .collect();
    assert!(theirs > 50, "{theirs}");
    let (with, without) = (tmp.path().join("with"), tmp.path().join("without"));
    for (lake, runs) in [(&with, &runs), (&without, &clean_runs)] {
        let ((last, last_pt), rest) = runs.split_last().unwrap();
        for (path, pt) in rest {
            ok(lake, &batch_run_args(path, pt));
        }
        // The last batch: its late rows wait in the side output.
        let mut args = batch_run_args(last, last_pt).to_vec();
        args.extend(["--late-policy", "side-output"]);
        ok(lake, &args);
        ok(lake, &["compact", "--min-files", "2"]);
    }
    ok(&with, &["snapshot", "balances", "--as-of", "2024-02-28"]);
    ok(&with, &["snapshot", "balances", "--as-of", "2024-03-05"]);
    let user_rows = |lake: &Path, table: &str| {
        query_csv(
            lake,
            &format!("SELECT count(*) FROM {table} WHERE user_id = '{USER}'"),
        )[0]
        .parse::<u64>()
        .unwrap()
    };
    let quarantined = |lake: &Path| {
        query_csv(lake, "SELECT raw FROM quarantine")
            .iter()
            .filter(|raw| raw.contains(&format!("\"\"{USER}\"\"")))
            .count() as u64
    };
    let (events, late, bad) = (
        user_rows(&with, "bronze_events"),
        user_rows(&with, "bronze_late"),
        quarantined(&with),
    );
    assert!(events > 0 && late > 0 && bad > 0, "{events} {late} {bad}");
    // Their rows share files with other users'.
    let shared = query_csv(
        &with,
        &format!(
            "SELECT count(DISTINCT user_id) FROM bronze_events WHERE event_date IN \
             (SELECT event_date FROM bronze_events WHERE user_id = '{USER}')"
        ),
    );
    assert!(shared[0].parse::<u64>().unwrap() > 1, "{shared:?}");

    let before = rows_of(&with, "bronze_events");
    let plan = ok(&with, &["erase", "--user", USER, "--dry-run", "--json"]);
    assert_eq!(plan["status"], "dry_run", "{plan}");
    assert_eq!(
        rows_of(&with, "bronze_events"),
        before,
        "a dry run changes nothing"
    );
    let u = &plan["users"][0];
    assert_eq!(u["user_id"], USER, "{plan}");
    assert_eq!(u["bronze_rows"], events, "{plan}");
    assert_eq!(u["late_rows"], late, "{plan}");
    assert_eq!(u["quarantined"], bad, "{plan}");
    let removed: Vec<&str> = plan["snapshots_removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["as_of"].as_str().unwrap())
        .collect();
    assert_eq!(removed, ["2024-03-05T23:59:59.999999Z"], "{plan}");

    // Crashes at every step, then a re-run.
    let mut want = query_csv(
        &with,
        &format!("SELECT * FROM bronze_events WHERE user_id <> '{USER}'"),
    );
    want.sort();
    for step in evlake::fault::STEPS {
        let copy = tmp.path().join(format!("crash-{step}"));
        copy_dir(&with, &copy);
        let o = cmd(&copy, &["erase", "--user", USER])
            .env("EVLAKE_FAULT", format!("erase:{step}"))
            .output()
            .unwrap();
        assert!(!o.status.success(), "{step}: the fault hook must abort");
        let now = rows_of(&copy, "bronze_events");
        assert!(now == before || now == want, "{step}: all or nothing");
        ok(&copy, &["erase", "--user", USER]);
        assert_eq!(rows_of(&copy, "bronze_events"), want, "{step}");
        assert_eq!(files_on_disk(&copy), committed_files(&copy), "{step}");
        assert!(uncommitted_files(&copy).is_empty(), "{step}");
    }

    // A line with spaces around its id is refused, naming the line: ids
    // match exactly, and trimmed it could erase another user.
    let ids = tmp.path().join("requests.txt");
    std::fs::write(&ids, format!("{USER}\n {USER}\n")).unwrap();
    let versions = commits(&with);
    run_says(
        &with,
        &["erase", "--users-from", ids.to_str().unwrap()],
        2,
        &format!("requests.txt` line 2: the id \" {USER}\" has white space around it"),
    );
    assert_eq!(commits(&with), versions);
    // Ids from a file too; one with no rows is reported, not an error.
    std::fs::write(&ids, format!("# today's requests\n{USER}\n\nnobody\n")).unwrap();
    let r = ok(
        &with,
        &["erase", "--users-from", ids.to_str().unwrap(), "--json"],
    );
    assert_eq!(r["status"], "committed", "{r}");
    // The dry run said what the commit did: the same silver dates, files
    // removed and files written again.
    for key in ["dates", "silver_dates", "files_removed", "files_added"] {
        assert_eq!(plan[key], r[key], "{key}: {plan} {r}");
    }
    // Silver's rows of theirs went in the same commit, on the dates not
    // dirty already whose rows share no event_id with theirs.
    let patched = r["silver_dates"].as_array().unwrap();
    assert!(!patched.is_empty(), "{r}");
    let dates: Vec<String> = patched
        .iter()
        .map(|d| format!("DATE '{}'", d.as_str().unwrap()))
        .collect();
    let left = query_csv(
        &with,
        &format!(
            "SELECT count(*) FROM events WHERE user_id = '{USER}' AND event_date IN ({})",
            dates.join(", ")
        ),
    );
    assert_eq!(left, ["0"], "{r}");
    let statuses: Vec<(&str, &str)> = r["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["user_id"].as_str().unwrap(),
                u["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(statuses, [("nobody", "not_found"), (USER, "erased")], "{r}");
    assert_eq!(rows_of(&with, "bronze_events"), want);
    assert!(uncommitted_files(&with).is_empty());
    for table in ["bronze_events", "bronze_late"] {
        assert_eq!(user_rows(&with, table), 0, "{table}");
    }
    assert_eq!(quarantined(&with), 0);
    for table in ["bronze_events", "bronze_late", "quarantine"] {
        assert_eq!(
            rows_without_lineage(&with, table),
            rows_without_lineage(&without, table),
            "{table}"
        );
    }
    assert_eq!(bronze_counts(&with), bronze_counts(&without));
    let st = ok(&with, &["status", "--json"]);
    let snapshots: Vec<&str> = st["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["as_of"].as_str().unwrap())
        .collect();
    assert_eq!(snapshots, ["2024-02-28T23:59:59.999999Z"], "{st}");
    assert_eq!(st["erased_users"], 1, "{st}");
    assert_eq!(st["last_erase"], r["version"], "{st}");
    assert!(!st["dirty"].as_array().unwrap().is_empty(), "{st}");
    // The log keeps what was done, not whom it was done to.
    let commit = std::fs::read_to_string(with.join(format!(
        "_evlake/log/{:020}.json",
        r["version"].as_u64().unwrap()
    )))
    .unwrap();
    let c: Value = serde_json::from_str(&commit).unwrap();
    assert_eq!(c["operation"], "erase", "{c}");
    assert_eq!(c["erased"]["users"], 1, "{c}");
    assert_eq!(c["erased"]["bronze_rows"], events, "{c}");
    assert!(!commit.contains(&format!("\"{USER}\"")), "{commit}");
    // Safe to run twice.
    let again = ok(&with, &["erase", "--user", USER, "--json"]);
    assert_eq!(again["status"], "noop", "{again}");
    assert_eq!(again["users"][0]["status"], "not_found", "{again}");
    // The summary names the requests that found nothing.
    let o = cmd(&with, &["erase", "--user", USER]).output().unwrap();
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("   Not found {USER}: no row in the lake")),
        "{err}"
    );

    // Silver and gold rebuild what it touched, and equal the lake that
    // never had the user; no derived row names them.
    ok(&with, &["run"]);
    ok(&without, &["run"]);
    assert_dumps_equal(
        &strip(silver_dump(&with)),
        &strip(silver_dump(&without)),
        "silver",
    );
    assert_dumps_equal(
        &strip(gold_dump(&with)),
        &strip(gold_dump(&without)),
        "gold",
    );
    for table in [
        "events",
        "sessions",
        "purchases",
        "searches",
        "signups",
        "cart_adds",
        "ledger",
    ] {
        assert_eq!(user_rows(&with, table), 0, "{table}");
    }
    for t in ["2024-03-02T12:00:00Z", "2024-03-05"] {
        assert_eq!(
            ok(&with, &["state", "balances", "--as-of", t, "--json"])["rows"],
            ok(&without, &["state", "balances", "--as-of", t, "--json"])["rows"],
            "{t}"
        );
    }
}

/// Every row of a table as CSV, sorted.
fn rows_of(lake: &Path, table: &str) -> Vec<String> {
    let mut v = query_csv(lake, &format!("SELECT * FROM {table}"));
    v.sort();
    v
}

/// A file another user's rows share is rewritten, and their rows stay
/// exactly as they were, lineage included; a quarantined line is the
/// user's by its raw event's user_id, a number too. Without a user, or
/// with an empty one, erase is a usage error.
#[test]
fn erase_keeps_other_users_rows_as_they_were() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let ev = crate::silver::ev;
    let input = tmp.path().join("a.jsonl");
    std::fs::write(
        &input,
        [
            ev("a1", "page_view", "2024-03-15T10:00:00Z", "u1"),
            ev("a2", "purchase", "2024-03-15T10:05:00Z", "u1"),
            ev("b1", "page_view", "2024-03-15T11:00:00Z", "u2"),
            "{\"event_id\":\"c1\",\"user_id\":\"u1\",\"event_timestamp\":\"bad\"}\n".to_string(),
            "{\"event_id\":\"c2\",\"user_id\":12345,\"event_type\":\"x\"}\n".to_string(),
            "{\"event_id\":\"c3\",\"user_id\":\"u2\",\"broken\n".to_string(),
        ]
        .concat(),
    )
    .unwrap();
    ok(
        &lake,
        &[
            "run",
            input.to_str().unwrap(),
            "--max-bad-fraction",
            "1",
            "--processing-time",
            "2024-03-15T12:00:00Z",
        ],
    );
    run_says(&lake, &["erase"], 2, "no user to erase");
    // A day's requests file with none in it erases nothing, exit 0, so
    // the nightly `erase --users-from FILE && evlake run` goes on.
    let requests = tmp.path().join("requests.txt");
    std::fs::write(&requests, "# no requests today\n\n").unwrap();
    let before_versions = commits(&lake);
    let r = ok(
        &lake,
        &[
            "erase",
            "--users-from",
            requests.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(r["status"], "noop", "{r}");
    assert_eq!(r["users"], Value::Array(vec![]), "{r}");
    assert_eq!(commits(&lake), before_versions);
    run_says(&lake, &["erase", "--user", ""], 2, "empty user id");
    let before = query_csv(&lake, "SELECT * FROM bronze_events WHERE user_id = 'u2'");
    let r = ok(
        &lake,
        &["erase", "--user", "u1", "--user", "12345", "--json"],
    );
    let counts: Vec<(String, u64, u64)> = r["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["user_id"].as_str().unwrap().to_string(),
                u["bronze_rows"].as_u64().unwrap(),
                u["quarantined"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [("12345".to_string(), 0, 1), ("u1".to_string(), 2, 1)],
        "{r}"
    );
    // Silver's rows of u1 went in the same commit: the date's events and
    // sessions files rewritten, its purchases file (u1's alone) removed.
    assert_eq!(r["silver_dates"], serde_json::json!(["2024-03-15"]), "{r}");
    assert_eq!(
        r["files_added"], 4,
        "bronze, quarantine, events and sessions files: {r}"
    );
    assert_eq!(
        query_csv(&lake, "SELECT user_id, event_count FROM sessions"),
        ["u2,1"]
    );
    assert_eq!(query_csv(&lake, "SELECT count(*) FROM purchases"), ["0"]);
    assert_eq!(
        query_csv(&lake, "SELECT * FROM bronze_events"),
        before,
        "u2's row, lineage and all"
    );
    assert_eq!(
        query_csv(&lake, "SELECT line FROM quarantine"),
        ["6"],
        "the broken line names u2"
    );
    // The next run recomputes gold alone.
    let r = ok(&lake, &["run", "--json"]);
    assert_eq!(r["silver"]["recomputed"], serde_json::json!({}), "{r}");
    assert_eq!(
        query_csv(&lake, "SELECT events, users, purchases FROM daily_metrics"),
        ["1,1,0"]
    );
    crate::silver::assert_equals_full(&lake, &tmp.path().join("full"), "patched");

    // An event_id u3 and u4 both sent (u3's copy came first, so silver
    // keeps it): with u3 erased, u4's copy takes its place, which only a
    // rebuild of the date gives. That date is left to the next run.
    let conflict = tmp.path().join("b.jsonl");
    std::fs::write(
        &conflict,
        [
            ev("d1", "page_view", "2024-03-16T10:00:00Z", "u3"),
            ev("d2", "page_view", "2024-03-16T10:10:00Z", "u3"),
        ]
        .concat(),
    )
    .unwrap();
    let copy = tmp.path().join("c.jsonl");
    std::fs::write(&copy, ev("d1", "search", "2024-03-16T10:00:00Z", "u4")).unwrap();
    for (f, pt) in [
        (&conflict, "2024-03-16T12:00:00Z"),
        (&copy, "2024-03-16T13:00:00Z"),
    ] {
        ok(
            &lake,
            &["run", f.to_str().unwrap(), "--processing-time", pt],
        );
    }
    assert_eq!(
        query_csv(&lake, "SELECT user_id FROM events WHERE event_id = 'd1'"),
        ["u3"]
    );
    let r = ok(&lake, &["erase", "--user", "u3", "--json"]);
    assert_eq!(r["silver_dates"], serde_json::json!([]), "{r}");
    let r = ok(&lake, &["run", "--json"]);
    assert_eq!(
        r["silver"]["recomputed"]["events"],
        serde_json::json!(["2024-03-16"]),
        "{r}"
    );
    assert_eq!(
        query_csv(
            &lake,
            "SELECT user_id, event_type FROM events WHERE event_id = 'd1'"
        ),
        ["u4,search"]
    );
    crate::silver::assert_equals_full(&lake, &tmp.path().join("full2"), "rebuilt");

    // The other way round: erasing the user whose copy silver left out
    // changes nothing for the other one, and the date is patched.
    let first = tmp.path().join("d.jsonl");
    std::fs::write(&first, ev("f1", "page_view", "2024-03-17T10:00:00Z", "u6")).unwrap();
    let later = tmp.path().join("e.jsonl");
    std::fs::write(
        &later,
        [
            ev("f1", "search", "2024-03-17T10:00:00Z", "u7"),
            ev("f2", "page_view", "2024-03-17T11:00:00Z", "u7"),
        ]
        .concat(),
    )
    .unwrap();
    for (f, pt) in [
        (&first, "2024-03-17T12:00:00Z"),
        (&later, "2024-03-17T13:00:00Z"),
    ] {
        ok(
            &lake,
            &["run", f.to_str().unwrap(), "--processing-time", pt],
        );
    }
    let r = ok(&lake, &["erase", "--user", "u7", "--json"]);
    assert_eq!(r["silver_dates"], serde_json::json!(["2024-03-17"]), "{r}");
    assert_eq!(
        query_csv(
            &lake,
            "SELECT user_id, event_id FROM events WHERE event_date = DATE '2024-03-17'"
        ),
        ["u6,f1"]
    );
    ok(&lake, &["run"]);
    crate::silver::assert_equals_full(&lake, &tmp.path().join("full3"), "left-out copy");

    // A lake's own typed table without a user_id column: its rows are one
    // per event, so the user's are told by the ids of their events silver
    // kept, and go in the same commit too.
    // (Another user's page view on u2's date, so the file keeps a row.)
    let other = tmp.path().join("g.jsonl");
    std::fs::write(&other, ev("g1", "page_view", "2024-03-15T12:00:00Z", "u8")).unwrap();
    ok(
        &lake,
        &[
            "run",
            other.to_str().unwrap(),
            "--processing-time",
            "2024-03-18T12:00:00Z",
        ],
    );
    let typed = lake.join("typed");
    std::fs::create_dir_all(&typed).unwrap();
    std::fs::write(
        typed.join("page_urls.sql"),
        "SELECT event_id, session_id, event_date, page_url, 0 AS _warnings\n\
         FROM events WHERE event_type = 'page_view'\n",
    )
    .unwrap();
    ok(&lake, &["run"]);
    // One file holds u2's row and u8's: it is rewritten, not removed.
    let files = |lake: &Path| {
        std::fs::read_dir(lake.join("silver/page_urls/event_date=2024-03-15"))
            .unwrap()
            .count()
    };
    assert_eq!(files(&lake), 1);
    let urls = |lake: &Path| query_csv(lake, "SELECT event_id FROM page_urls ORDER BY 1");
    assert_eq!(urls(&lake), ["b1", "f1", "g1"]);
    let r = ok(&lake, &["erase", "--user", "u2", "--json"]);
    assert_eq!(r["silver_dates"], serde_json::json!(["2024-03-15"]), "{r}");
    assert_eq!(urls(&lake), ["f1", "g1"]);
    assert_eq!(files(&lake), 1);
    let r = ok(&lake, &["run", "--json"]);
    assert_eq!(r["silver"]["recomputed"], serde_json::json!({}), "{r}");
    assert_eq!(urls(&lake), ["f1", "g1"]);
    crate::silver::assert_equals_full(&lake, &tmp.path().join("full4"), "own typed table");
}
