//! Fault injection for crash tests.
//!
//! When `EVLAKE_FAULT` names a step, the process aborts (like a `kill -9`)
//! the moment it reaches that step. Tests use this to prove that a crash at
//! any point leaves the lake readable and that a re-run ends with exactly
//! one copy of every event. The steps, in the order a writer reaches them:
//!
//! - `staged`: after the first data file was written to `_evlake/staging/`
//! - `renamed`: after the first data file was renamed into its table
//! - `before-commit`: after every rename, before the commit file is written
//! - `after-commit`: after the commit file, before staging is cleaned up
//!
//! `OPERATION:STEP` (e.g. `gold:renamed`) aborts only in that operation
//! (`ingest`, `reconcile`, `silver`, `gold`, `snapshot`, `compact`; `silver-typed`
//! for silver's typed-table refresh, which commits first), so a test can
//! crash the third step of `evlake run`.
//!
//! `EVLAKE_FAIL` takes the same values, but the step returns an error
//! instead (as a full disk or a failed query would): the process unwinds
//! and exits 1, so tests can check what a failed run cleans up.
//!
//! `EVLAKE_PANIC` takes them too, and the step panics there, as a bug in
//! evlake or DataFusion would: `main` says so and exits 1.

use std::sync::Mutex;

/// Every step name that `EVLAKE_FAULT` accepts.
pub const STEPS: &[&str] = &["staged", "renamed", "before-commit", "after-commit"];

static OPERATION: Mutex<&str> = Mutex::new("");

/// Name the operation now running (for `OPERATION:STEP` faults, and its
/// spinner on a terminal while the returned guard lives; ingest draws its
/// own progress bar).
pub fn operation(op: &'static str) -> crate::report::Busy {
    *OPERATION.lock().unwrap_or_else(|e| e.into_inner()) = op;
    if op == "ingest" {
        crate::report::Busy::none()
    } else {
        crate::report::busy(op)
    }
}

/// Within an operation, name a part of it for `OPERATION:STEP` faults
/// until the guard drops (silver's typed-table refresh, `silver-typed`,
/// commits before the rest of silver).
pub fn part(op: &'static str) -> PartGuard {
    let mut current = OPERATION.lock().unwrap_or_else(|e| e.into_inner());
    let outer = std::mem::replace(&mut *current, op);
    PartGuard(outer)
}

/// Restores the operation's name (see [`part`]).
pub struct PartGuard(&'static str);

impl Drop for PartGuard {
    fn drop(&mut self) {
        *OPERATION.lock().unwrap_or_else(|e| e.into_inner()) = self.0;
    }
}

/// Abort the process if `EVLAKE_FAULT` names `step`; fail if
/// `EVLAKE_FAIL` does, or if a signal came (before the commit).
pub fn point(step: &str) -> anyhow::Result<()> {
    debug_assert!(STEPS.contains(&step), "unknown fault step {step}");
    pause(&format!(
        "{}:{step}",
        *OPERATION.lock().unwrap_or_else(|e| e.into_inner())
    ));
    if step != "after-commit" {
        // A signal stops a writer here too, before its commit (after it,
        // the step finishes and the next one stops).
        crate::interrupt::check()?;
    }
    let hit = |var: &str| {
        std::env::var(var).ok().filter(|v| match v.split_once(':') {
            Some((op, s)) => {
                s == step && *OPERATION.lock().unwrap_or_else(|e| e.into_inner()) == op
            }
            None => v == step,
        })
    };
    if let Some(v) = hit("EVLAKE_FAULT") {
        crate::report::eline(format_args!("evlake: EVLAKE_FAULT={v}: aborting"));
        std::process::abort();
    }
    if let Some(v) = hit("EVLAKE_FAIL") {
        anyhow::bail!("EVLAKE_FAIL={v}: injected failure");
    }
    if let Some(v) = hit("EVLAKE_PANIC") {
        panic!("EVLAKE_PANIC={v}: injected panic");
    }
    Ok(())
}

/// Wait at `step` while a test changes the world: with
/// `EVLAKE_PAUSE=STEP:PATH`, create `PATH.waiting`, then wait until `PATH`
/// exists (at most a minute, then abort). Steps: `listed` (ingest, after
/// a directory walk listed its inputs, before hashing them), `hashing`
/// (ingest, as it hashes a file, its size taken: tests shrink it), `hashed`
/// (ingest, after hashing its inputs, before reading them: tests change
/// an input between the two), `query-planned`, and `OPERATION:STEP` for each of [`point`]'s
/// (tests send a signal there).
pub fn pause(step: &str) {
    let Ok(v) = std::env::var("EVLAKE_PAUSE") else {
        return;
    };
    let Some((s, path)) = v.rsplit_once(':') else {
        return;
    };
    if s != step {
        return;
    }
    let go = std::path::Path::new(path);
    let waiting = format!("{path}.waiting");
    if std::fs::write(&waiting, b"").is_err() {
        std::process::abort();
    }
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !go.exists() {
        if std::time::Instant::now() > until {
            crate::report::eline(format_args!("evlake: EVLAKE_PAUSE={v}: gave up waiting"));
            std::process::abort();
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// With `EVLAKE_TRACE` set: say which way a run went (stderr; tests
/// check it).
pub fn trace_note(note: &str) {
    if tracing() {
        crate::report::eline(format_args!("{:>12} {note}", "Trace"));
    }
}

/// Is `EVLAKE_TRACE` set (read once)?
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("EVLAKE_TRACE").is_some())
}

/// With `EVLAKE_TRACE` set, print how long a run took to reach `phase`
/// (stderr), to see where time goes without a profiler.
pub fn trace(started: std::time::Instant, phase: &str) {
    crate::report::phase(*OPERATION.lock().unwrap_or_else(|e| e.into_inner()), phase);
    if tracing() {
        crate::report::eline(format_args!(
            "{:>12} {phase} at {:.3}s",
            "Trace",
            started.elapsed().as_secs_f64()
        ));
    }
}
