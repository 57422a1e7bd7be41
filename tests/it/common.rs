//! Helpers: run the binary, read the lake back as an outside reader would.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_evlake")
}

/// The checkout the tests run in: `cargo test` sets CARGO_MANIFEST_DIR
/// when it runs them. Not the compile-time value: clones share one target
/// dir, and a test binary built in another clone (since deleted) is fresh
/// for this one when its sources are the same.
pub fn repo() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

pub fn sample(name: &str) -> String {
    repo().join("sample_data").join(name).display().to_string()
}

pub fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(repo().join("tests/sample_expected.json")).unwrap())
        .unwrap()
}

/// `evlake --lake LAKE args...` with a clean environment for evlake's own variables.
pub fn cmd(lake: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("--lake").arg(lake).args(args);
    c.env_remove("EVLAKE_FAULT")
        .env_remove("EVLAKE_FAIL")
        .env_remove("EVLAKE_PANIC")
        .env_remove("EVLAKE_PAUSE")
        .env_remove("EVLAKE_LAKE")
        .env_remove("EVLAKE_LOCK_WAIT")
        .env_remove("EVLAKE_BUFFER_MB")
        .env_remove("EVLAKE_KEYS_IN_MEMORY")
        .env_remove("EVLAKE_HELD_KB")
        .env_remove("EVLAKE_CHECKPOINT_EVERY");
    c.stdin(Stdio::null());
    c
}

/// `evlake --lake LAKE args...` with `data` on its stdin.
pub fn run_with_stdin(lake: &Path, args: &[&str], data: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd(lake, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("evlake runs");
    child.stdin.take().unwrap().write_all(data).unwrap();
    child.wait_with_output().unwrap()
}

pub fn run(lake: &Path, args: &[&str]) -> Output {
    cmd(lake, args).output().expect("evlake runs")
}

/// A `--format json` output: one JSON object per line.
pub fn json_lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Run, and require exit `code` and `text` on stderr.
pub fn run_says(lake: &Path, args: &[&str], code: i32, text: &str) -> Output {
    let o = run(lake, args);
    assert_eq!(exit_code(&o), code, "evlake {args:?}: {}", stderr(&o));
    assert!(
        stderr(&o).contains(text),
        "evlake {args:?} does not say {text:?}: {}",
        stderr(&o)
    );
    o
}

/// `status --json`'s dirty partitions: (table, partition, the first
/// reason's kind), in the order listed.
pub fn dirty_partitions(lake: &Path) -> Vec<(String, String, String)> {
    ok(lake, &["status", "--json"])["dirty"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["table"].as_str().unwrap().to_string(),
                d["partition"].as_str().unwrap().to_string(),
                d["reasons"][0]["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Run and require exit 0, returning the `--json` summary if one was printed.
/// Its stderr must be status lines only (a right-aligned verb, a space,
/// then text), so no stray debugging output reaches a cron mail.
pub fn ok(lake: &Path, args: &[&str]) -> Value {
    let o = run(lake, args);
    assert!(o.status.success(), "evlake {args:?} failed: {}", stderr(&o));
    for line in stderr(&o).lines() {
        assert!(
            is_status_line(line),
            "evlake {args:?}: not a status line on stderr: {line:?}"
        );
    }
    if args.contains(&"--json") {
        serde_json::from_slice(&o.stdout).expect("--json prints one JSON object")
    } else {
        Value::Null
    }
}

/// `{verb:>12} {text}`: a capitalised verb (a word or two), right-aligned
/// in 12 columns (or a word of 12 or more, unpadded), then a space; or an
/// indented continuation line.
pub fn is_status_line(line: &str) -> bool {
    let verb_ok = |v: &str| {
        v.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && v.chars().all(|c| c.is_ascii_alphabetic() || c == ' ')
    };
    let indent = line.len() - line.trim_start().len();
    if indent > 0 && line.is_char_boundary(12) && line.len() > 13 && line.as_bytes()[12] == b' ' {
        let verb = line[..12].trim_start();
        if !verb.is_empty() && verb_ok(verb) {
            return true;
        }
    }
    let word = line.split(' ').next().unwrap_or("");
    (indent == 0 && word.len() >= 12 && verb_ok(word)) || indent > 12
}

#[test]
fn status_lines_are_told_from_stray_output() {
    for ok in [
        "   Committed version 3: 2 events",
        "     Dry run would commit 166 events",
        "    Snapshot from 2024-04-29",
        "                 2024-03-15  12 rows",
    ] {
        assert!(is_status_line(ok), "{ok:?}");
    }
    for stray in [
        "TMP read new files 2.2ms (2000 ids)",
        "TMP shared 43ms",
        "[src/silver/rebuild.rs:10] x = 3",
        "warning: something",
        "  lowercase verb here",
    ] {
        assert!(!is_status_line(stray), "{stray:?}");
    }
}

pub fn exit_code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Ingest one sample batch with its documented processing time.
pub fn ingest_sample_batch(lake: &Path, batch: &Value) -> Value {
    let file = sample(batch["file"].as_str().unwrap());
    let pt = batch["processing_time"].as_str().unwrap();
    ok(lake, &["ingest", &file, "--processing-time", pt, "--json"])
}

/// One bronze row as an outside reader sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub event_date: String,
    pub event_id: String,
    pub source_file: String,
    pub source_line: i64,
}

/// Ingest every batch of the sample, in order (`ingest` alone).
pub fn ingest_sample_batches(lake: &Path) {
    for b in expected()["batches"].as_array().unwrap() {
        ingest_sample_batch(lake, b);
    }
}

/// `evlake run` over each sample batch in order, at its processing time.
pub fn run_sample_batches(lake: &Path) {
    for b in expected()["batches"].as_array().unwrap() {
        ok(
            lake,
            &[
                "run",
                &sample(b["file"].as_str().unwrap()),
                "--processing-time",
                b["processing_time"].as_str().unwrap(),
            ],
        );
    }
}

/// Every bronze row in every Parquet file on disk (not just committed
/// ones), like `read_parquet('bronze/events/**/*.parquet')`.
pub fn bronze_rows(lake: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    for file in parquet_files(&lake.join("bronze/events")) {
        let date = file
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("event_date=")
            .to_string();
        for batch in read_parquet(&file) {
            let ids = batch.column_by_name("event_id").unwrap().as_string::<i32>();
            let files = batch
                .column_by_name("source_file")
                .unwrap()
                .as_string::<i32>();
            let lines = batch
                .column_by_name("source_line")
                .unwrap()
                .as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                rows.push(Row {
                    event_date: date.clone(),
                    event_id: ids.value(i).to_string(),
                    source_file: files.value(i).to_string(),
                    source_line: lines.value(i),
                });
            }
        }
    }
    rows.sort();
    rows
}

pub fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

pub fn counts_by_date(rows: &[Row]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r.event_date.clone()).or_default() += 1;
    }
    m
}

pub fn expected_counts(partitions: &Value) -> BTreeMap<String, u64> {
    partitions
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["events"].as_u64().unwrap()))
        .collect()
}

/// Number of commit files in the log.
pub fn commits(lake: &Path) -> usize {
    std::fs::read_dir(lake.join("_evlake/log"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".json")
                    && !e
                        .as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".checkpoint.json")
            })
            .count()
        })
        .unwrap_or(0)
}

/// Lake-relative paths of every file the log references under lake
/// directory `dir` (e.g. `silver`).
pub fn committed_files_under(lake: &Path, dir: &str) -> Vec<String> {
    let state = evlake::log::LakeState::load(&evlake::lake::Lake::new(lake)).unwrap();
    let mut v: Vec<String> = state
        .tables
        .values()
        .flat_map(|parts| parts.values())
        .flat_map(|p| p.files.keys().cloned())
        .filter(|f| f.starts_with(&format!("{dir}/")))
        .collect();
    v.sort();
    v
}

/// Lake-relative paths of the Parquet files on disk under lake directory
/// `dir`.
pub fn files_on_disk_under(lake: &Path, dir: &str) -> Vec<String> {
    let mut v: Vec<String> = parquet_files(&lake.join(dir))
        .iter()
        .map(|p| {
            p.strip_prefix(lake)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    v.sort();
    v
}

/// Lake-relative paths of the live bronze, side-output and id index
/// files according to the log.
pub fn committed_files(lake: &Path) -> Vec<String> {
    let state = evlake::log::LakeState::load(&evlake::lake::Lake::new(lake)).unwrap();
    let mut v: Vec<String> = [
        evlake::bronze::TABLE,
        evlake::bronze::LATE_TABLE,
        evlake::ids::TABLE,
    ]
    .iter()
    .flat_map(|t| state.partitions(t))
    .flat_map(|(_, p)| p.files.keys().cloned())
    .collect();
    v.sort();
    v
}

/// Lake-relative paths of the bronze, side-output and id index files on
/// disk.
pub fn files_on_disk(lake: &Path) -> Vec<String> {
    let mut v = files_on_disk_under(lake, "bronze");
    if let Ok(dir) = std::fs::read_dir(lake.join(evlake::ids::DIR)) {
        v.extend(dir.map(|e| {
            format!(
                "{}/{}",
                evlake::ids::DIR,
                e.unwrap().file_name().to_string_lossy()
            )
        }));
    }
    v.sort();
    v
}

/// Every file in every table directory that the log does not reference
/// (orphans), lake-relative.
pub fn uncommitted_files(lake: &Path) -> Vec<String> {
    let l = evlake::lake::Lake::new(lake);
    let state = evlake::log::LakeState::load(&l).unwrap();
    let live: std::collections::HashSet<&String> = state.live_files().collect();
    evlake::ingest::table_dirs()
        .iter()
        .flat_map(|d| evlake::lake::list_files(lake, &lake.join(d)).unwrap())
        .filter(|f| !live.contains(f))
        .collect()
}

/// Generate synthetic batches into `dir` and return the truth file.
pub fn generate(dir: &Path, args: &[&str]) -> Value {
    let o = Command::new(bin())
        .args(["generate", "--out"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&std::fs::read(dir.join("truth.json")).unwrap()).unwrap()
}

/// A small generated history with late events and bad lines (3,000
/// events over 5 days, 30 users, seed 11) in `dir`: its truth file.
pub fn generate_messy(dir: &Path) -> Value {
    generate(
        dir,
        &[
            "--events",
            "3000",
            "--days",
            "5",
            "--seed",
            "11",
            "--late-rate",
            "0.6",
            "--users",
            "30",
            "--bad-rate",
            "0.03",
        ],
    )
}

/// The paths of the batches `generate` wrote into `dir`, in arrival order
/// (as its truth file lists them).
pub fn generated_batches(dir: &Path, truth: &Value) -> Vec<String> {
    truth["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            dir.join("batches")
                .join(b["file"].as_str().unwrap())
                .display()
                .to_string()
        })
        .collect()
}

/// Each batch `generate` wrote into `dir` with its processing time, in
/// arrival order: what a lake fed one `run` per batch is given.
pub fn generated_runs(dir: &Path, truth: &Value) -> Vec<(String, String)> {
    truth["batches"]
        .as_array()
        .unwrap()
        .iter()
        .zip(generated_batches(dir, truth))
        .map(|(b, path)| (path, b["processing_time"].as_str().unwrap().to_string()))
        .collect()
}

/// The arguments of the `run` that feeds a lake one generated batch (see
/// [`generated_runs`]), bad records quarantined without failing the run.
pub fn batch_run_args<'a>(path: &'a str, pt: &'a str) -> [&'a str; 6] {
    [
        "run",
        path,
        "--processing-time",
        pt,
        "--max-bad-fraction",
        "1",
    ]
}

/// Every row of every silver table as text (`partition|col=value|...`),
/// sorted per table: what "row for row equal" compares.
pub fn silver_dump(lake: &Path) -> BTreeMap<String, Vec<String>> {
    let tables: Vec<(&str, &str)> = evlake::silver::all_tables()
        .into_iter()
        .zip(evlake::silver::all_dirs())
        .collect();
    dump(lake, &tables)
}

/// [`silver_dump`] for the gold tables.
pub fn gold_dump(lake: &Path) -> BTreeMap<String, Vec<String>> {
    dump(lake, evlake::gold::TABLES)
}

fn dump(lake: &Path, tables: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
    use datafusion::arrow::util::display::array_value_to_string;
    let mut out = BTreeMap::new();
    for (table, dir) in tables {
        let root = lake.join(dir);
        let mut rows = Vec::new();
        for f in parquet_files(&root) {
            let part = f
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            for b in read_parquet(&f) {
                for i in 0..b.num_rows() {
                    let mut r = part.clone();
                    for (field, c) in b.schema().fields().iter().zip(b.columns()) {
                        r.push('|');
                        r.push_str(field.name());
                        r.push('=');
                        r.push_str(&array_value_to_string(c, i).unwrap());
                    }
                    rows.push(r);
                }
            }
        }
        rows.sort();
        out.insert(table.to_string(), rows);
    }
    out
}

/// Two dumps ([`silver_dump`], [`gold_dump`]) are equal, table by
/// table; a failure shows the first rows only one of them has.
pub fn assert_dumps_equal(
    a: &BTreeMap<String, Vec<String>>,
    b: &BTreeMap<String, Vec<String>>,
    what: &str,
) {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{what}"
    );
    for (table, rows) in a {
        let other = &b[table];
        assert!(
            rows == other,
            "{what}: {table} differs\n  only in the first: {:?}\n  only in the second: {:?}",
            rows.iter()
                .filter(|r| !other.contains(r))
                .take(5)
                .collect::<Vec<_>>(),
            other
                .iter()
                .filter(|r| !rows.contains(r))
                .take(5)
                .collect::<Vec<_>>()
        );
    }
}

/// Copy a lake directory (to rebuild a copy with `--full` and compare).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Write `lines` to `dir/name` and ingest it with processing time `pt`.
pub fn ingest_lines(lake: &Path, dir: &Path, name: &str, lines: &[String], pt: &str) {
    let f = dir.join(name);
    std::fs::write(&f, lines.concat()).unwrap();
    ok(
        lake,
        &["ingest", f.to_str().unwrap(), "--processing-time", pt],
    );
}

/// Start `evlake args...` held at fault-pause `step` (`EVLAKE_PAUSE`), and
/// wait until it is there. Returns the child (stdout and stderr piped) and
/// the path to create to let it go on.
pub fn spawn_paused(
    lake: &Path,
    args: &[&str],
    step: &str,
    dir: &Path,
) -> (std::process::Child, PathBuf) {
    // (`OPERATION:STEP` steps: the file's name must not hold the colon.)
    let go = dir.join(format!("go-{}", step.replace(':', "-")));
    let child = cmd(lake, args)
        .env("EVLAKE_PAUSE", format!("{step}:{}", go.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let waiting = go.with_extension("waiting");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !waiting.exists() {
        assert!(
            std::time::Instant::now() < until,
            "evlake {args:?} never paused at `{step}`"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    (child, go)
}

/// `evlake --lake LAKE args...` on a pseudo-terminal (Python's `pty`, as a
/// fresh machine has Python 3), with `typed` typed on it and then Ctrl-D
/// (if any); what it drew. Asserts that it succeeded.
pub fn on_a_terminal(lake: &Path, args: &[&str], typed: &[u8]) -> String {
    on_a_terminal_with(lake, args, typed, &[])
}

/// [`on_a_terminal`], with environment variables `env` set.
pub fn on_a_terminal_with(
    lake: &Path,
    args: &[&str],
    typed: &[u8],
    env: &[(&str, &str)],
) -> String {
    use std::io::Write;
    let mut child = on_a_pty(
        lake,
        args,
        "typed = sys.stdin.buffer.read()
if typed:
    os.write(m, typed + b'\\n\\x04')
sys.stdout.buffer.write(rest())
sys.exit(p.wait())",
    )
    .env_remove("EVLAKE_FAULT")
    .env_remove("EVLAKE_TRACE")
    .envs(env.iter().copied())
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("python3 runs");
    child.stdin.take().unwrap().write_all(typed).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `evlake --lake LAKE ARGS` on a pseudo-terminal (stdin, stdout and
/// stderr), driven by Python `script`, which has `m` (the terminal's
/// master side), `p` (the evlake process) and `rest()` (everything evlake
/// writes from now until it closes the terminal).
pub fn on_a_pty(lake: &Path, args: &[&str], script: &str) -> Command {
    const PRELUDE: &str = "import os, pty, signal, subprocess, sys, time
m, s = pty.openpty()
p = subprocess.Popen(sys.argv[1:], stdin=s, stdout=s, stderr=s)
os.close(s)
def rest():
    out = b''
    while True:
        try:
            chunk = os.read(m, 65536)
        except OSError:
            return out
        if not chunk:
            return out
        out += chunk
";
    let python = std::env::var("EVLAKE_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut c = Command::new(python);
    c.args(["-c", &format!("{PRELUDE}{script}"), bin(), "--lake"])
        .arg(lake)
        .args(args)
        .env_remove("EVLAKE_LAKE");
    c
}

/// A new lake (`evlake init`) holding file `rel` (e.g. `typed/NAME.sql`,
/// `daily/NAME.sql`) with `text`.
pub fn init_with_file(lake: &Path, rel: &str, text: &str) {
    ok(lake, &["init"]);
    let path = lake.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}
