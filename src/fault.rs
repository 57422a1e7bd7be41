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

/// Every step name that `EVLAKE_FAULT` accepts.
pub const STEPS: &[&str] = &["staged", "renamed", "before-commit", "after-commit"];

/// Abort the process if `EVLAKE_FAULT` names `step`.
pub fn point(step: &str) {
    debug_assert!(STEPS.contains(&step), "unknown fault step {step}");
    if std::env::var("EVLAKE_FAULT").is_ok_and(|v| v == step) {
        eprintln!("evlake: EVLAKE_FAULT={step}: aborting");
        std::process::abort();
    }
}
