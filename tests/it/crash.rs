//! Crash safety: a run killed at any step, then re-run, leaves exactly one
//! copy of every event; a second writer is refused at once.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

fn ingest_all(
    lake: &Path,
    gen_dir: &Path,
    truth: &Value,
    fault: Option<&str>,
) -> std::process::Output {
    // All batches in one run, so the run writes many files.
    let mut c = cmd(
        lake,
        &[
            "ingest",
            gen_dir.join("batches").to_str().unwrap(),
            "--processing-time",
            "2024-03-07T01:00:00Z",
        ],
    );
    c.env("EVLAKE_BUFFER_MB", "1");
    if let Some(step) = fault {
        c.env("EVLAKE_FAULT", step);
    }
    let _ = truth;
    c.output().unwrap()
}

fn assert_exactly_once(lake: &Path, truth: &Value) {
    let rows = bronze_rows(lake);
    assert_eq!(counts_by_date(&rows), expected_counts(&truth["partitions"]));
    let mut keys: Vec<_> = rows
        .iter()
        .map(|r| (&r.source_file, r.source_line))
        .collect();
    keys.sort();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "a source line landed twice");
    assert_eq!(
        files_on_disk(lake),
        committed_files(lake),
        "orphans left on disk"
    );
    assert!(
        !lake.join("_evlake/staging").exists()
            || std::fs::read_dir(lake.join("_evlake/staging"))
                .unwrap()
                .count()
                == 0
    );
}

#[test]
fn a_crash_at_every_step_then_a_rerun_leaves_one_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let truth = generate(
        &gen_dir,
        &["--events", "30000", "--days", "6", "--seed", "11"],
    );
    for step in evlake::fault::STEPS {
        let lake = tmp.path().join(format!("lake-{step}"));
        let o = ingest_all(&lake, &gen_dir, &truth, Some(step));
        assert!(!o.status.success(), "{step}: the fault hook must abort");
        assert!(stderr(&o).contains(&format!("EVLAKE_FAULT={step}")));
        let committed = commits(&lake);
        assert_eq!(committed, usize::from(*step == "after-commit"), "{step}");
        let o = ingest_all(&lake, &gen_dir, &truth, None);
        assert!(o.status.success(), "{step}: rerun failed: {}", stderr(&o));
        assert_exactly_once(&lake, &truth);
        assert_eq!(commits(&lake), 1, "{step}");
    }
}

/// The `run` of the sample's first two batches (its arguments), and a lake
/// under `dir` that ran it unbroken.
fn two_batch_run(dir: &Path) -> (Vec<String>, std::path::PathBuf) {
    let args: Vec<String> = ["run", "--processing-time", "2024-03-17T02:00:00Z"]
        .into_iter()
        .map(String::from)
        .chain([sample("2024-03-15.jsonl"), sample("2024-03-16.jsonl.gz")])
        .collect();
    let reference = dir.join("reference");
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(run(&reference, &a).status.success());
    (args, reference)
}

/// Is the lake's staging directory empty (or not there)?
fn staging_empty(lake: &Path) -> bool {
    std::fs::read_dir(lake.join("_evlake/staging")).map_or(true, |mut d| d.next().is_none())
}

/// After a step that stopped (failed, interrupted): nothing staged, no file
/// the log does not name, the lake marked clean; then `run_args` again
/// ends with the silver and gold of `reference`.
fn assert_left_clean_then_rerun_equals(
    lake: &Path,
    run_args: &[&str],
    reference: &Path,
    case: &str,
) {
    assert!(staging_empty(lake), "{case}: staging left behind");
    assert_eq!(uncommitted_files(lake), Vec::<String>::new(), "{case}");
    assert_eq!(files_on_disk(lake), committed_files(lake), "{case}");
    assert!(lake.join("_evlake/clean").exists(), "{case}");
    let o = run(lake, run_args);
    assert!(o.status.success(), "{case}: re-run: {}", stderr(&o));
    assert_eq!(uncommitted_files(lake), Vec::<String>::new(), "{case}");
    assert_eq!(gold_dump(lake), gold_dump(reference), "{case}");
    assert_eq!(silver_dump(lake), silver_dump(reference), "{case}");
}

/// A step that fails (as on a full disk) rather than being killed: exit 1
/// naming the step, its staged files, and those it had already moved into
/// the table directories, gone at once (not left for the next writer,
/// holding the disk), the lake as of its last commit; a re-run finishes
/// the work.
#[test]
fn a_failed_step_removes_its_staged_files_and_a_rerun_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let (run_args, reference) = two_batch_run(tmp.path());
    let run_args: Vec<&str> = run_args.iter().map(String::as_str).collect();
    for (op, step, commits_before) in [
        ("ingest", "staged", 0),
        ("silver", "staged", 1),
        ("ingest", "before-commit", 0),
        ("silver", "renamed", 1),
        ("silver", "before-commit", 1),
        ("gold", "staged", 2),
        ("gold", "before-commit", 2),
    ] {
        let lake = tmp.path().join(format!("lake-{op}-{step}"));
        let o = cmd(&lake, &run_args)
            .env("EVLAKE_FAIL", format!("{op}:{step}"))
            .output()
            .unwrap();
        assert_eq!(exit_code(&o), 1, "{op}:{step}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("injected failure"), "{op}:{step}: {err}");
        if op != "ingest" {
            assert!(err.contains(&format!("step `{op}` failed")), "{err}");
        }
        assert_eq!(commits(&lake), commits_before, "{op}:{step}");
        // A failure after publishing (renamed, before-commit) removed the
        // published files itself.
        assert_left_clean_then_rerun_equals(&lake, &run_args, &reference, &format!("{op}:{step}"));
    }
    // A snapshot too.
    let lake = tmp.path().join("lake-snapshot");
    assert!(run(&lake, &run_args).status.success());
    let snap = ["snapshot", "balances", "--as-of", "2024-03-16"];
    let o = cmd(&lake, &snap)
        .env("EVLAKE_FAIL", "snapshot:staged")
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 1, "{}", stderr(&o));
    assert!(staging_empty(&lake), "snapshot: staging left behind");
    assert!(run(&lake, &snap).status.success());
}

/// A step that panics (a bug in evlake or DataFusion) exits 1, not
/// Rust's 101, saying it was an internal error, with the panic's message
/// above; like a crash, the lake is readable as of its last commit, and a
/// re-run finishes the work with one copy of everything.
#[test]
fn a_panic_is_exit_1_and_a_rerun_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let (run_args, reference) = two_batch_run(tmp.path());
    let run_args: Vec<&str> = run_args.iter().map(String::as_str).collect();
    for (op, step, commits_before) in [
        ("ingest", "staged", 0),
        ("silver", "renamed", 1),
        ("gold", "before-commit", 2),
    ] {
        let case = format!("{op}:{step}");
        let lake = tmp.path().join(format!("lake-panic-{op}-{step}"));
        let o = cmd(&lake, &run_args)
            .env("EVLAKE_PANIC", &case)
            .output()
            .unwrap();
        assert_eq!(exit_code(&o), 1, "{case}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(&format!("EVLAKE_PANIC={case}: injected panic"))
                && err.contains(
                    "error: evlake stopped on an internal error (the panic above), a bug to \
                     report: the lake is as its last commit left it, and running the command \
                     again is safe"
                ),
            "{case}: {err}"
        );
        assert_eq!(commits(&lake), commits_before, "{case}");
        let o = run(&lake, &["check"]);
        assert!(o.status.success(), "{case}: check: {}", stderr(&o));
        let o = run(&lake, &run_args);
        assert!(o.status.success(), "{case}: re-run: {}", stderr(&o));
        assert_eq!(files_on_disk(&lake), committed_files(&lake), "{case}");
        assert_eq!(gold_dump(&lake), gold_dump(&reference), "{case}");
        assert_eq!(silver_dump(&lake), silver_dump(&reference), "{case}");
    }
}

/// Parquet files a run staged so far (`_evlake/staging/RUN/*.parquet`).
fn staged_parquet_files(staging: &Path) -> usize {
    std::fs::read_dir(staging)
        .map(|d| {
            d.flat_map(|e| std::fs::read_dir(e.unwrap().path()).into_iter().flatten())
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "parquet")
                })
                .count()
        })
        .unwrap_or(0)
}

/// Send `sig` (`INT`, `TERM`, `HUP`) to process `pid`.
fn signal(pid: u32, sig: &str) {
    let o = std::process::Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .output()
        .unwrap();
    assert!(o.status.success(), "kill -s {sig} {pid}: {}", stderr(&o));
}

/// Read `pipe` line by line up to the first line holding `needle`;
/// what was read.
fn read_until(pipe: &mut impl std::io::BufRead, needle: &str) -> String {
    let mut text = String::new();
    while !text.contains(needle) {
        assert!(
            pipe.read_line(&mut text).unwrap() > 0,
            "never said {needle:?}: {text}"
        );
    }
    text
}

#[test]
fn a_signal_stops_a_writer_at_a_safe_point_and_a_rerun_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let (run_args, reference) = two_batch_run(tmp.path());
    let run_args: Vec<&str> = run_args.iter().map(String::as_str).collect();
    // Each case: where the run is when the signal comes, the exit code,
    // and the commits it leaves (ingest, silver, gold: one each).
    for (op, step, sig, code, commits_after) in [
        ("ingest", "staged", "INT", 130, 0),
        ("ingest", "before-commit", "TERM", 143, 0),
        ("silver", "renamed", "HUP", 129, 1),
        // Silver commits; gold, the next step, does not start.
        ("silver", "after-commit", "INT", 130, 2),
        ("gold", "staged", "TERM", 143, 2),
        ("gold", "before-commit", "INT", 130, 2),
        // After the last commit: the run is done, and says so.
        ("gold", "after-commit", "TERM", 143, 3),
    ] {
        let case = format!("{op}:{step} SIG{sig}");
        let lake = tmp.path().join(format!("lake-{op}-{step}"));
        let (mut child, go) = spawn_paused(&lake, &run_args, &format!("{op}:{step}"), tmp.path());
        signal(child.id(), sig);
        // Only once evlake says it has the signal may the run go on (the
        // signal reaches its handler thread when the kernel gets to it).
        let mut pipe = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut err = read_until(
            &mut pipe,
            &format!("SIG{sig}: stopping at the next safe point"),
        );
        std::fs::write(&go, b"").unwrap();
        std::io::Read::read_to_string(&mut pipe, &mut err).unwrap();
        let o = child.wait_with_output().unwrap();
        std::fs::remove_file(&go).unwrap();
        assert_eq!(exit_code(&o), code, "{case}: {err}");
        if commits_after < 3 {
            assert!(
                err.contains(&format!("interrupted by SIG{sig}")),
                "{case}: {err}"
            );
            assert!(
                err.contains("hint: the interrupted step's files were removed"),
                "{case}: {err}"
            );
        } else {
            assert!(
                err.contains("came after the last step committed: nothing is left unfinished"),
                "{case}: {err}"
            );
        }
        assert_eq!(commits(&lake), commits_after, "{case}");
        assert_left_clean_then_rerun_equals(&lake, &run_args, &reference, &case);
    }
}

#[test]
fn a_run_logs_each_step_as_it_commits_so_a_kill_in_a_later_one_loses_no_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (run_args, _) = two_batch_run(tmp.path());
    let run_args: Vec<&str> = run_args.iter().map(String::as_str).collect();
    let lake = tmp.path().join("lake");
    // Held in gold, after ingest and silver committed.
    let (mut child, _go) = spawn_paused(&lake, &run_args, "gold:staged", tmp.path());
    let pipe = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(pipe)) {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen
        .iter()
        .any(|l: &String| l.contains("Wrote") && l.contains("sessions"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("while gold runs, stderr has only: {seen:#?}"),
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(commits(&lake), 2);
    let text = seen.join("\n");
    for want in [
        "Partition event_date=2024-03-15",
        "Partition event_date=2024-03-16",
        "Wrote",
    ] {
        assert!(text.contains(want), "no {want:?} in: {text}");
    }
}

#[test]
fn a_signal_stops_a_large_ingest_partway_and_one_waiting_for_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let truth = generate(
        &gen_dir,
        &["--events", "150000", "--days", "4", "--seed", "3"],
    );
    let batches = gen_dir.join("batches");
    let args = [
        "ingest",
        batches.to_str().unwrap(),
        "--processing-time",
        "2024-03-05T01:00:00Z",
    ];
    let lake = tmp.path().join("lake");
    // Reading: SIGINT once the first buffer is staged.
    let mut c = cmd(&lake, &args);
    c.env("EVLAKE_BUFFER_MB", "2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    let staging = lake.join("_evlake/staging");
    let deadline = Instant::now() + Duration::from_secs(120);
    while staged_parquet_files(&staging) == 0 {
        assert!(Instant::now() < deadline, "never saw staged data");
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(child.id(), "INT");
    let o = child.wait_with_output().unwrap();
    assert_eq!(exit_code(&o), 130, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("interrupted by SIGINT"),
        "{}",
        stderr(&o)
    );
    assert_eq!(commits(&lake), 0);
    assert!(staging_empty(&lake), "staging left behind");
    assert_eq!(uncommitted_files(&lake), Vec::<String>::new());
    let o = run(&lake, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_exactly_once(&lake, &truth);

    // Waiting for another writer's lock: SIGTERM ends the wait.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(other.join("_evlake")).unwrap();
    let lock = std::fs::File::create(other.join("_evlake/lock")).unwrap();
    lock.try_lock().unwrap();
    let mut child = cmd(&other, &args)
        .args(["--lock-wait", "10m"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    read_until(&mut err, "for the lake's lock");
    signal(child.id(), "TERM");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(143), "{rest}");
    assert!(rest.contains("interrupted by SIGTERM"), "{rest}");
    assert_eq!(commits(&other), 0);
}

#[test]
fn a_signal_started_ignored_stays_ignored() {
    // As under `nohup` (SIGHUP) or a script's `evlake run &` (SIGINT).
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let go = tmp.path().join("go");
    let mut child = std::process::Command::new("sh")
        .args(["-c", "trap '' HUP INT; exec \"$0\" \"$@\"", bin()])
        .arg("--lake")
        .arg(&lake)
        .args(["run", &sample("2024-03-15.jsonl")])
        .env("EVLAKE_PAUSE", format!("silver:staged:{}", go.display()))
        .env_remove("EVLAKE_LAKE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while !go.with_extension("waiting").exists() {
        assert!(Instant::now() < until, "never paused");
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(child.id(), "HUP");
    signal(child.id(), "INT");
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(&go, b"").unwrap();
    let err = read_until(
        &mut std::io::BufReader::new(child.stderr.take().unwrap()),
        "Finished",
    );
    assert_eq!(child.wait().unwrap().code(), Some(0), "{err}");
    assert!(!err.contains("stopping"), "{err}");
    assert_eq!(commits(&lake), 3);
}

#[test]
fn one_ctrl_c_stops_an_ingest_reading_what_is_typed() {
    // A read from the terminal blocks until something is typed: the signal
    // must not wait for it.
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let o = on_a_pty(
        &lake,
        &["ingest", "-", "--processing-time", "2024-03-11T00:00:00Z"],
        "os.write(m, b'{\"event_id\":\"t1\",\"event_type\":\"x\",\"event_timestamp\":\"2024-03-10T10:00:00Z\",\"user_id\":\"u\"}\\n')
out = b''
while b'Ctrl-C to stop' not in out:
    out += os.read(m, 65536)
time.sleep(0.3)
p.send_signal(signal.SIGINT)
try:
    code = p.wait(timeout=60)
except subprocess.TimeoutExpired:
    p.kill()
    code = 'still reading 60 s after SIGINT'
out += rest()
sys.stdout.buffer.write(out)
print(f'exit: {code}')",
    )
    .output()
    .expect("python3 runs");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("exit: 130"), "{out}");
    assert!(out.contains("interrupted by SIGINT"), "{out}");
    assert_eq!(commits(&lake), 0, "{out}");
    assert!(staging_empty(&lake), "staging left behind: {out}");
}

#[test]
fn a_writer_lists_the_table_directories_for_orphans_only_after_an_unclean_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let ingest = |n: u32| {
        let line = crate::silver::ev(&format!("e{n}"), "page_view", "2024-03-15T10:00:00Z", "u1");
        let name = format!("b{n}.jsonl");
        ingest_lines(&lake, tmp.path(), &name, &[line], "2024-03-15T12:00:00Z");
    };
    ingest(1);
    assert!(lake.join("_evlake/clean").exists());
    // A stray file in a table directory, with the lake marked clean: the
    // next writer does not list the directories, so it stays (evlake's
    // readers never see it: they follow the log).
    let stray = "bronze/events/event_date=2024-03-15/stray.parquet";
    let first = committed_files(&lake)
        .into_iter()
        .find(|f| f.starts_with("bronze/"))
        .unwrap();
    std::fs::copy(lake.join(&first), lake.join(stray)).unwrap();
    ingest(2);
    assert_eq!(uncommitted_files(&lake), [stray]);
    // Without the mark (a writer that failed after publishing, or an older
    // evlake), the next writer lists them and removes it.
    std::fs::remove_file(lake.join("_evlake/clean")).unwrap();
    ingest(3);
    assert_eq!(uncommitted_files(&lake), Vec::<String>::new());
    assert!(lake.join("_evlake/clean").exists());
    // And every 50th version lists them whatever the mark says.
    std::fs::copy(lake.join(&first), lake.join(stray)).unwrap();
    let mut n = 4;
    while commits(&lake) < 50 {
        assert_eq!(
            uncommitted_files(&lake),
            [stray],
            "version {}",
            commits(&lake)
        );
        ingest(n);
        n += 1;
    }
    ingest(n);
    assert_eq!(uncommitted_files(&lake), Vec::<String>::new());
}

/// `status` shows what is in staging, and whose it is: a killed run's
/// leftovers (until the next writer removes them), or a running writer's
/// files in flight.
#[test]
fn status_shows_staging_left_by_a_killed_run_and_a_running_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let first = sample("2024-03-15.jsonl");
    assert!(run(&lake, &["run", &first]).status.success());
    let staging = |lake: &Path| -> Vec<Value> {
        let s = ok(lake, &["status", "--json"]);
        s["staging"].as_array().unwrap().clone()
    };
    assert_eq!(staging(&lake), Vec::<Value>::new());
    let second = sample("2024-03-16.jsonl.gz");
    let o = cmd(&lake, &["run", &second])
        .env("EVLAKE_FAULT", "silver:staged")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let left = staging(&lake);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0]["name"].as_str().unwrap().starts_with("silver-"));
    assert!(left[0]["bytes"].as_u64().unwrap() > 0, "{left:?}");
    assert_eq!(left[0]["running"], false);
    let text = String::from_utf8(run(&lake, &["status"]).stdout).unwrap();
    assert!(
        text.contains("left by a run that was killed; the next writer removes it"),
        "{text}"
    );
    // A writer at work: an ingest held after hashing its input.
    let third = sample("2024-03-19.jsonl");
    let (child, go) = spawn_paused(&lake, &["ingest", &third], "hashed", tmp.path());
    let now = staging(&lake);
    let ingest = now
        .iter()
        .find(|d| d["name"].as_str().unwrap().starts_with("ingest-"))
        .unwrap_or_else(|| panic!("no ingest staging in {now:?}"));
    assert_eq!(ingest["running"], true);
    std::fs::write(&go, "").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // The ingest, a writer, removed the killed run's leftovers too.
    assert_eq!(staging(&lake), Vec::<Value>::new());
}

/// Files a killed run renamed into the table directories but never
/// committed are invisible to evlake's readers, not to a glob: `status`
/// names them until the next writer removes them.
#[test]
fn status_names_uncommitted_files_a_killed_run_left_in_the_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    assert!(
        run(&lake, &["run", &sample("2024-03-15.jsonl")])
            .status
            .success()
    );
    let orphans = |lake: &Path| -> Vec<String> {
        let s = ok(lake, &["status", "--json"]);
        s["orphans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(orphans(&lake), Vec::<String>::new());
    let o = cmd(&lake, &["run", &sample("2024-03-16.jsonl.gz")])
        .env("EVLAKE_FAULT", "silver:renamed")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let left = orphans(&lake);
    assert!(!left.is_empty());
    assert_eq!(left, uncommitted_files(&lake));
    assert!(left.iter().all(|f| f.starts_with("silver/")), "{left:?}");
    let text = String::from_utf8(run(&lake, &["status"]).stdout).unwrap();
    assert!(
        text.contains(&format!(
            "orphans    {} file(s) in the table directories, e.g. {}",
            left.len(),
            left[0]
        )) && text.contains("a killed or failed run left them"),
        "{text}"
    );
    // The next writer removes them.
    assert!(run(&lake, &["run"]).status.success());
    assert_eq!(orphans(&lake), Vec::<String>::new());
    assert_eq!(uncommitted_files(&lake), Vec::<String>::new());
}

#[test]
fn kill_9_partway_through_a_large_input_then_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("gen");
    let truth = generate(
        &gen_dir,
        &["--events", "150000", "--days", "4", "--seed", "3"],
    );
    let lake = tmp.path().join("lake");
    let mut c = cmd(
        &lake,
        &[
            "ingest",
            gen_dir.join("batches").to_str().unwrap(),
            "--processing-time",
            "2024-03-05T01:00:00Z",
        ],
    );
    c.env("EVLAKE_BUFFER_MB", "2");
    let mut child = c.spawn().unwrap();
    // Wait until the run has written data into staging, then SIGKILL it.
    let staging = lake.join("_evlake/staging");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut killed_midway = false;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("ingest finished ({status}) before it could be killed; make the input bigger");
        }
        if staged_parquet_files(&staging) > 0 {
            child.kill().unwrap();
            killed_midway = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait().unwrap();
    assert!(killed_midway, "never saw staged data");
    assert_eq!(commits(&lake), 0);
    let o = cmd(
        &lake,
        &[
            "ingest",
            gen_dir.join("batches").to_str().unwrap(),
            "--processing-time",
            "2024-03-05T01:00:00Z",
        ],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_exactly_once(&lake, &truth);
}

#[test]
fn a_second_writer_exits_3_at_once_or_after_its_lock_wait() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    std::fs::create_dir_all(lake.join("_evlake")).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(lake.join("_evlake/lock"))
        .unwrap();
    lock.try_lock().unwrap();
    std::fs::write(lake.join("_evlake/lock"), std::process::id().to_string()).unwrap();
    let started = Instant::now();
    let o = run(&lake, &["ingest", &sample("2024-03-19.jsonl")]);
    assert_eq!(exit_code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "lake is locked by pid {} ({}); --lock-wait DUR waits for it",
            std::process::id(),
            lake.join("_evlake/lock").display()
        )),
        "{}",
        stderr(&o)
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "must not wait for the lock"
    );
    assert_eq!(commits(&lake), 0);

    // With --lock-wait it waits that long, saying so, then exits 3...
    let started = Instant::now();
    let o = run(
        &lake,
        &["--lock-wait", "1s", "ingest", &sample("2024-03-19.jsonl")],
    );
    assert_eq!(exit_code(&o), 3, "{}", stderr(&o));
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        stderr(&o).contains(&format!(
            "Waiting for the lake's lock, held by pid {} (up to 1s)",
            std::process::id()
        )),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains(&format!(
            "lake is still locked by pid {} after waiting 1s",
            std::process::id()
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(commits(&lake), 0);
    // ...or goes on as soon as the other writer is done.
    let child = cmd(&lake, &["ingest", &sample("2024-03-19.jsonl")])
        .env("EVLAKE_LOCK_WAIT", "60s")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(lock);
    let o = child.wait_with_output().unwrap();
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Waiting for the lake's lock"),
        "{}",
        stderr(&o)
    );
    assert_eq!(commits(&lake), 1);
}

/// A commit in a newer log format (a newer evlake wrote it) is refused by
/// readers and writers alike, with a message that says to upgrade: read as
/// this version's, fields it does not know would be ignored silently.
#[test]
fn a_lake_written_by_a_newer_evlake_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    ok(&lake, &["ingest", &sample("2024-03-15.jsonl")]);
    let commit = lake.join("_evlake/log/00000000000000000001.json");
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&commit).unwrap()).unwrap();
    c["format"] = 99.into();
    std::fs::write(&commit, serde_json::to_vec(&c).unwrap()).unwrap();
    for args in [
        vec!["status"],
        vec!["query", "SELECT count(*) FROM bronze_events"],
        vec!["ingest", &sample("2024-03-19.jsonl")],
    ] {
        let o = run(&lake, &args);
        assert_eq!(exit_code(&o), 1, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("log format 99, written by a newer evlake")
                && stderr(&o).contains("upgrade evlake"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    assert_eq!(commits(&lake), 1, "nothing committed on top of it");
}

/// A typed table of the lake's own is rebuilt in a commit of its own
/// before the rest of silver. A crash at any step of either commit (a new
/// typed file and a late batch in one run) leaves the lake readable, and
/// the re-run ends as a lake built whole with that file.
#[test]
fn a_crash_in_a_typed_refresh_or_after_it_then_a_rerun_equals_a_whole_build() {
    let tmp = tempfile::tempdir().unwrap();
    let first = sample("2024-03-15.jsonl");
    let late = sample("2024-03-16.jsonl.gz");
    let base = tmp.path().join("base");
    ok(
        &base,
        &["run", &first, "--processing-time", "2024-03-17T02:00:00Z"],
    );
    let page_views = "SELECT event_id, user_id, session_id, page_url, event_date, 0 AS _warnings \
                      FROM events WHERE event_type = 'page_view'";
    let with_typed = |lake: &Path| {
        std::fs::create_dir_all(lake.join("typed")).unwrap();
        std::fs::write(lake.join("typed/page_views.sql"), page_views).unwrap();
    };
    let second = ["run", &late, "--processing-time", "2024-03-18T02:00:00Z"];
    let whole = tmp.path().join("whole");
    ok(&whole, &["init"]);
    with_typed(&whole);
    ok(
        &whole,
        &["run", &first, "--processing-time", "2024-03-17T02:00:00Z"],
    );
    ok(&whole, &second);
    let sql = [
        "SELECT * FROM page_views ORDER BY event_id",
        "SELECT * FROM events ORDER BY event_id",
        "SELECT * FROM sessions ORDER BY session_id",
        "SELECT * FROM daily_metrics ORDER BY event_date",
    ];
    for op in ["silver-typed", "silver"] {
        for step in evlake::fault::STEPS {
            let lake = tmp.path().join(format!("lake-{op}-{step}"));
            copy_dir(&base, &lake);
            with_typed(&lake);
            let o = cmd(&lake, &second)
                .env("EVLAKE_FAULT", format!("{op}:{step}"))
                .output()
                .unwrap();
            assert!(
                !o.status.success(),
                "{op}:{step}: the fault hook must abort"
            );
            assert!(
                stderr(&o).contains("EVLAKE_FAULT="),
                "{op}:{step}: {}",
                stderr(&o)
            );
            // Readable as it is: each commit whole or absent.
            let st = ok(&lake, &["status", "--json"]);
            let typed_commit = op == "silver" || *step == "after-commit";
            let dirty_views = st["dirty"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["table"] == "page_views")
                .count();
            assert_eq!(dirty_views == 0, typed_commit, "{op}:{step}: {st}");
            run_says(&lake, &["query", "SELECT count(*) FROM events"], 0, "");
            let o = run(&lake, &second);
            assert!(o.status.success(), "{op}:{step}: re-run: {}", stderr(&o));
            assert_eq!(files_on_disk(&lake), committed_files(&lake), "{op}:{step}");
            for q in sql {
                // (Sorted whole: an event_id may be on two dates.)
                let sorted = |lake: &Path| {
                    let mut v = crate::silver::query_csv(lake, q);
                    v.sort();
                    v
                };
                let (got, want) = (sorted(&lake), sorted(&whole));
                let only = |a: &[String], b: &[String]| -> Vec<String> {
                    a.iter()
                        .filter(|r| !b.contains(r))
                        .take(3)
                        .cloned()
                        .collect()
                };
                assert!(
                    got == want,
                    "{op}:{step}: {q}: only here {:?}, only in the whole lake {:?}",
                    only(&got, &want),
                    only(&want, &got)
                );
            }
        }
    }
}

/// Every file a commit adds has its bytes' BLAKE3 in the log, and `check
/// --deep` compares it: one flipped bit anywhere in a file is found, as
/// `changed` where the file still decodes (a value read as another, which
/// decoding alone let pass) or `unreadable` where it does not, and a
/// footer damaged so that the Parquet reader panics is that file's
/// problem, not a crash of `check`.
#[test]
fn check_deep_finds_every_flipped_bit_by_the_hash_the_commit_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    run_sample_batches(&lake);
    let state = evlake::log::LakeState::load(&evlake::lake::Lake::new(&lake)).unwrap();
    let mut hashed = 0;
    for f in state
        .tables
        .values()
        .flat_map(|parts| parts.values())
        .flat_map(|p| p.files.values())
    {
        let on_disk = evlake::log::file_blake3(&lake.join(&f.path)).unwrap();
        assert_eq!(f.blake3.as_deref(), Some(on_disk.as_str()), "{}", f.path);
        hashed += 1;
    }
    assert!(hashed > 20, "{hashed}");
    let file = committed_files_under(&lake, "silver/events/event_date=2024-03-15")[0].clone();
    let path = lake.join(&file);
    let kept = std::fs::read(&path).unwrap();
    let n = kept.len();
    // Spread over the data, then every third byte of the footer's end.
    let offsets: Vec<usize> = (1..16)
        .map(|i| i * (n - 200) / 16)
        .chain((n - 120..n - 8).step_by(3))
        .collect();
    let mut kinds = std::collections::BTreeMap::new();
    for (i, at) in offsets.iter().enumerate() {
        let mut damaged = kept.clone();
        damaged[*at] ^= 1 << (i % 8);
        std::fs::write(&path, &damaged).unwrap();
        let o = run(&lake, &["check", "--deep", "--json"]);
        assert_eq!(exit_code(&o), 1, "bit {i} at {at}: {}", stderr(&o));
        let report: Value = serde_json::from_slice(&o.stdout).unwrap();
        let problems = report["problems"].as_array().unwrap();
        assert_eq!(problems.len(), 1, "bit {i} at {at}: {report}");
        assert_eq!(problems[0]["path"], file.as_str());
        let kind = problems[0]["problem"].as_str().unwrap().to_string();
        assert!(
            ["changed", "unreadable", "rows"].contains(&kind.as_str()),
            "bit {i} at {at}: {kind}"
        );
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
        *kinds.entry(kind).or_insert(0) += 1;
    }
    std::fs::write(&path, &kept).unwrap();
    assert!(kinds.get("changed").is_some_and(|n| *n > 0), "{kinds:?}");
    let healthy = ok(&lake, &["check", "--deep", "--json"]);
    assert_eq!(healthy["status"], "ok", "{healthy}");
}

/// `check` compares every committed file with the log: a file deleted,
/// cut short or with its pages damaged is found (the damage to pages only
/// with `--deep`), each with the command that repairs it; the repairs
/// work; an answer passes over a snapshot whose file is gone.
#[test]
fn check_finds_files_not_as_the_log_says_and_each_repair_works() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    for (file, pt) in [
        ("2024-03-15.jsonl", "2024-03-16T02:00:00Z"),
        ("2024-03-16.jsonl.gz", "2024-03-17T02:00:00Z"),
    ] {
        ok(&lake, &["run", &sample(file), "--processing-time", pt]);
    }
    ok(&lake, &["snapshot", "balances", "--as-of", "2024-03-15"]);
    let answer = |lake: &Path| {
        ok(
            lake,
            &["state", "balances", "--as-of", "2024-03-16", "--json"],
        )
    };
    let before = answer(&lake);
    assert_eq!(before["snapshot"]["as_of"], "2024-03-15T23:59:59.999999Z");
    let every_file = |lake: &Path| -> usize {
        let state = evlake::log::LakeState::load(&evlake::lake::Lake::new(lake)).unwrap();
        state.live_files().count()
    };
    let healthy = ok(&lake, &["check", "--deep", "--json"]);
    assert_eq!(healthy["status"], "ok", "{healthy}");
    assert_eq!(healthy["files"], every_file(&lake));
    assert_eq!(healthy["problems"], serde_json::json!([]));
    assert_eq!(healthy["orphans"], serde_json::json!([]));

    // The damage: a silver file and the snapshot's file deleted, a bronze
    // file cut short, a gold file's pages overwritten (its footer whole),
    // and a file no commit references.
    let first = |dir: &str| committed_files_under(&lake, dir)[0].clone();
    let silver = first("silver/events/event_date=2024-03-15");
    let snapshot = first("state/balances");
    let bronze = first("bronze/events/event_date=2024-03-16");
    let gold = first("gold/daily_metrics/event_date=2024-03-15");
    std::fs::remove_file(lake.join(&silver)).unwrap();
    std::fs::remove_file(lake.join(&snapshot)).unwrap();
    let backup = std::fs::read(lake.join(&bronze)).unwrap();
    std::fs::write(lake.join(&bronze), &backup[..backup.len() - 10]).unwrap();
    let mut pages = std::fs::read(lake.join(&gold)).unwrap();
    let n = pages.len();
    let footer = u32::from_le_bytes(pages[n - 8..n - 4].try_into().unwrap()) as usize;
    for b in &mut pages[4..n - 8 - footer] {
        *b ^= 0xA5;
    }
    std::fs::write(lake.join(&gold), &pages).unwrap();
    let orphan = "silver/events/event_date=2024-03-15/part-stray.parquet";
    std::fs::write(lake.join(orphan), b"PAR1").unwrap();

    let check = |deep: bool| -> (Value, String) {
        let mut args = vec!["check", "--json"];
        if deep {
            args.push("--deep");
        }
        let o = run(&lake, &args);
        let err = stderr(&o);
        let report: Value = serde_json::from_slice(&o.stdout).unwrap();
        let code = if report["problems"].as_array().unwrap().is_empty() {
            0
        } else {
            1
        };
        assert_eq!(exit_code(&o), code, "{err}");
        (report, err)
    };
    let found = |report: &Value| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["path"].as_str().unwrap().into(),
                    p["problem"].as_str().unwrap().into(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let mut expected = vec![
        (bronze.clone(), "size".to_string()),
        (silver.clone(), "missing".to_string()),
        (snapshot.clone(), "missing".to_string()),
    ];
    expected.sort();
    let (report, err) = check(false);
    assert_eq!(found(&report), expected, "{err}");
    assert_eq!(report["status"], "problems");
    assert_eq!(report["orphans"], serde_json::json!([orphan]));
    let repair = |path: &str| -> String {
        let p = report["problems"].as_array().unwrap().iter();
        let mut p = p.filter(|p| p["path"] == path);
        p.next().unwrap()["repair"].as_str().unwrap().to_string()
    };
    assert!(repair(&silver).contains("`evlake silver --full`"));
    assert!(
        repair(&snapshot)
            .contains("`evlake snapshot balances --as-of 2024-03-15T23:59:59.999999Z`")
    );
    assert!(repair(&bronze).contains("backup"));
    assert!(
        err.contains(&format!("{bronze}: ")) && err.contains("Repair"),
        "{err}"
    );
    assert!(
        err.contains("3 of ") && err.contains("not as the log says"),
        "{err}"
    );
    // A reader of the table meets the missing file, and is told of check.
    run_says(
        &lake,
        &["query", "SELECT count(*) FROM events"],
        1,
        "hint: a file the commit log names is not on disk: `evlake check` lists",
    );
    // One of bronze meets the file cut short: named, not Parquet's bare
    // "Corrupt footer", and told of check too.
    let o = run_says(
        &lake,
        &["query", "SELECT count(*) FROM bronze_events"],
        1,
        &format!(
            "`{bronze}`: committed to the lake, but not the file the log names: {} bytes on \
             disk, {} in the log (cut short or replaced)",
            backup.len() - 10,
            backup.len()
        ),
    );
    assert!(
        stderr(&o).contains("hint: a file the commit log names is not as the log says"),
        "{}",
        stderr(&o)
    );
    // A file of the right size whose pages do not decode: Parquet's error
    // names no file, the hint says what finds it.
    run_says(
        &lake,
        &["query", "SELECT * FROM daily_metrics"],
        1,
        "hint: a Parquet file could not be decoded: `evlake check --deep` reads",
    );
    // Decoding every page finds the gold file too.
    let (deep, _) = check(true);
    expected.push((gold.clone(), "unreadable".to_string()));
    expected.sort();
    assert_eq!(found(&deep), expected);

    // The answer passes over the snapshot it cannot read: a full replay,
    // the same rows.
    let o = run(
        &lake,
        &["state", "balances", "--as-of", "2024-03-16", "--json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("its files are not on disk; passed over"),
        "{}",
        stderr(&o)
    );
    let replayed: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(replayed["snapshot"], Value::Null);
    assert_eq!(replayed["rows"], before["rows"]);
    // `status` calls it invalid, and why (it read only the log before),
    // and a dry run would write it again.
    let sn = &ok(&lake, &["status", "--json"])["snapshots"][0];
    assert_eq!(sn["valid"], false, "{sn}");
    let why = sn["invalid_because"].as_str().unwrap();
    assert!(why.contains("files are not on disk"), "{why}");
    let o = run(&lake, &["run", "--dry-run"]);
    assert!(
        stderr(&o).contains("Would write the balances snapshot as of 2024-03-15T23:59:59.999999Z: its files are not on disk"),
        "{}",
        stderr(&o)
    );

    // Bronze comes back from its backup (silver is rebuilt from it), then
    // each named repair works.
    std::fs::write(lake.join(&bronze), &backup).unwrap();
    let (report, _) = check(true);
    assert!(!found(&report).iter().any(|(p, _)| *p == bronze));
    ok(&lake, &["silver", "--full"]);
    ok(&lake, &["gold", "--dates", "2024-03-15"]);
    let s = ok(
        &lake,
        &["snapshot", "balances", "--as-of", "2024-03-15", "--json"],
    );
    assert_eq!(s["status"], "committed", "{s}");
    let (report, _) = check(true);
    assert_eq!(report["status"], "ok", "{report}");
    let after = answer(&lake);
    assert_eq!(after["snapshot"]["as_of"], before["snapshot"]["as_of"]);
    assert_eq!(after["rows"], before["rows"]);

    // The id index is derived from bronze too: the next ingest rebuilds it.
    let index = first("_evlake/ids");
    std::fs::remove_file(lake.join(&index)).unwrap();
    let (report, _) = check(false);
    assert_eq!(found(&report), vec![(index.clone(), "missing".to_string())]);
    assert!(
        report["problems"][0]["repair"]
            .as_str()
            .unwrap()
            .contains("next `evlake ingest`")
    );
    ok(
        &lake,
        &[
            "run",
            &sample("2024-03-19.jsonl"),
            "--processing-time",
            "2024-03-20T02:00:00Z",
        ],
    );
    let (report, _) = check(true);
    assert_eq!(report["status"], "ok", "{report}");
    // One whose header's count is damaged (more entries than memory
    // holds) is named, not an overflow.
    let index = first("_evlake/ids");
    let kept_index = std::fs::read(lake.join(&index)).unwrap();
    let mut damaged = kept_index.clone();
    damaged[8..16].copy_from_slice(&[0xff; 8]);
    std::fs::write(lake.join(&index), &damaged).unwrap();
    let (report, err) = check(false);
    assert_eq!(
        found(&report),
        vec![(index.clone(), "unreadable".to_string())],
        "{err}"
    );
    assert!(
        err.contains("its header counts 18446744073709551615 entries"),
        "{err}"
    );
    std::fs::write(lake.join(&index), &kept_index).unwrap();
    // `--repair` runs those repairs itself, and refuses over damaged bronze.
    let gold_dump_before = gold_dump(&lake);
    let silver = first("silver/sessions/session_date=2024-03-16");
    // The newest gold file: every command registering `daily_metrics`
    // reads its schema from its newest file, which must then be another.
    let gold = committed_files_under(&lake, "gold/daily_metrics")
        .pop()
        .unwrap();
    assert!(gold.contains("event_date=2024-03-20"), "{gold}");
    let snapshot = first("state/balances");
    for f in [&silver, &gold, &snapshot] {
        std::fs::remove_file(lake.join(f)).unwrap();
    }
    let bronze = first("bronze/events/event_date=2024-03-19");
    let kept = std::fs::read(lake.join(&bronze)).unwrap();
    std::fs::remove_file(lake.join(&bronze)).unwrap();
    std::fs::remove_file(lake.join(first("_evlake/ids"))).unwrap();
    let version = commits(&lake);
    let o = run(&lake, &["check", "--repair"]);
    assert_eq!(exit_code(&o), 1);
    assert!(
        stderr(&o).contains("restore them from a backup first (nothing was repaired)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(commits(&lake), version);
    std::fs::write(lake.join(&bronze), &kept).unwrap();
    let o = run(&lake, &["check", "--repair", "--json"]);
    assert_eq!(exit_code(&o), 0, "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(
        report["repaired"],
        serde_json::json!([
            "silver --full",
            "gold",
            "snapshot balances --as-of 2024-03-15T23:59:59.999999Z",
            "rebuild the id index from bronze"
        ])
    );
    assert!(stderr(&o).contains("Repairing evlake silver --full"));
    assert!(stderr(&o).contains("Repairing the id index, from bronze"));
    assert_eq!(gold_dump(&lake), gold_dump_before);
    assert_eq!(answer(&lake)["rows"], before["rows"]);

    // The rebuilt index holds every event: an event of the lake sent again
    // with other content is an id conflict.
    let conflict = tmp.path().join("conflict.jsonl");
    std::fs::write(
        &conflict,
        r#"{"event_id":"evt-00443","event_type":"page_view","event_timestamp":"2024-03-15T14:50:00.000Z","user_id":"u4","properties":{"changed":true}}"#,
    )
    .unwrap();
    let rebuilt = |lake: &Path| {
        let s = ok(
            lake,
            &[
                "run",
                conflict.to_str().unwrap(),
                "--processing-time",
                "2024-03-21T02:00:00Z",
                "--json",
                "--dry-run",
            ],
        );
        assert_eq!(s["ingest"]["id_conflicts"], 1, "{s}");
    };
    rebuilt(&lake);
    // A rebuild killed at any step leaves the lake readable with the index
    // still missing (or, after its commit, rebuilt); the next one finishes.
    for step in evlake::fault::STEPS {
        let index = first("_evlake/ids");
        std::fs::remove_file(lake.join(&index)).unwrap();
        let version = commits(&lake);
        let o = cmd(&lake, &["check", "--repair"])
            .env("EVLAKE_FAULT", format!("reindex:{step}"))
            .output()
            .unwrap();
        assert!(!o.status.success(), "{step}: {}", stderr(&o));
        assert!(stderr(&o).contains(&format!("EVLAKE_FAULT=reindex:{step}")));
        let committed = commits(&lake) - version;
        assert_eq!(committed, usize::from(*step == "after-commit"), "{step}");
        let (report, _) = check(false);
        assert_eq!(
            report["status"] == "ok",
            *step == "after-commit",
            "{step}: {report}"
        );
        let o = run(&lake, &["check", "--repair", "--json"]);
        assert_eq!(exit_code(&o), 0, "{step}: {}", stderr(&o));
        assert!(uncommitted_files(&lake).is_empty(), "{step}");
        rebuilt(&lake);
    }
}
