//! Ctrl-C, `kill` and a closed terminal (SIGINT, SIGTERM, SIGHUP) while a
//! command writes the lake.
//!
//! The first [`crate::lake::Lake::lock`] of a process installs the
//! handler; until then (and in commands that only read) a signal ends the
//! process at once, as it always did: there is nothing to clean up. From
//! then on, the first signal only sets a flag. The writer stops at its next
//! [`check`] (each chunk of input it parses, each bronze file it rewrites,
//! each step before its commit) or wherever the DataFusion work it runs in
//! [`block_on`] waits (and so does a step that takes the lock, or waits
//! for it, after the signal): that fails with [`Failure::Interrupted`], and
//! the failure unwinds like a full disk does, so the step's staged and
//! published files are
//! removed before the lock is let go and the lake is as of its last
//! commit. A second signal ends the process at once, like `kill -9`, which
//! leaves those files to the next writer (still safe). The exit code is
//! the shell's for a death by that signal: 130 for SIGINT, 143 for SIGTERM,
//! 129 for SIGHUP. A signal the process started with ignored (`nohup`'s
//! SIGHUP) stays ignored.

use std::sync::Once;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::error::Failure;

/// The first signal received, 0 before one.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

static INSTALL: Once = Once::new();

/// The signals a writer stops for.
const SIGNALS: [i32; 3] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
];

/// Handle the signals from now on (once per process; see the module).
pub fn install() {
    if cfg!(test) {
        // Unit tests take locks too: Ctrl-C must still end `cargo test`.
        return;
    }
    INSTALL.call_once(|| {
        // The thread registers the handlers, and install waits until it
        // has: if either fails, the default stays (a signal ends the
        // process, as a kill would).
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("evlake-signals".into())
            .spawn(move || {
                // A signal the parent set to be ignored stays ignored:
                // `nohup` (SIGHUP), a script's `evlake run &` (SIGINT).
                let taken = SIGNALS.into_iter().filter(|&s| !ignored(s));
                let Ok(mut signals) = signal_hook::iterator::Signals::new(taken) else {
                    return;
                };
                let _ = ready_tx.send(());
                for sig in signals.forever() {
                    let name = name(sig);
                    if SIGNAL
                        .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        WAKE.notify_waiters();
                        crate::report::eline(format_args!(
                            "evlake: {name}: stopping at the next safe point, with the lake as \
                             of its last commit ({name} again stops at once)"
                        ));
                    } else {
                        crate::report::eline(format_args!(
                            "evlake: {name} again: stopping at once (the next writer removes \
                             what this one left)"
                        ));
                        signal_hook::low_level::exit(128 + sig);
                    }
                }
            });
        if spawned.is_ok() {
            let _ = ready_rx.recv();
        }
    });
}

/// Run a writer's DataFusion work (it stages files, it does not commit)
/// on a runtime of its own. Once a signal comes, the work stops at the
/// await it is at, however long a sort or join would still take, and this
/// fails with [`Failure::Interrupted`]; the caller's staging guard removes
/// what it wrote.
pub fn block_on<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let rt = crate::engine::runtime()?;
    rt.block_on(async {
        tokio::select! {
            r = work => r,
            sig = signalled() => Err(Failure::Interrupted(sig).into()),
        }
    })
}

/// Woken when a signal comes.
static WAKE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// The signal, once one comes.
async fn signalled() -> i32 {
    loop {
        let notified = WAKE.notified();
        tokio::pin!(notified);
        // Waiting from here on, so a signal between the load and the await
        // still wakes it.
        notified.as_mut().enable();
        if let Some(sig) = received() {
            return sig;
        }
        notified.await;
    }
}

/// Is `sig` ignored (`SIG_IGN`, as inherited from the parent)?
fn ignored(sig: i32) -> bool {
    // SAFETY: sigaction with no new action only reads the current one into
    // `old`, a plain C struct for which all zeros is a valid value.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Fail with [`Failure::Interrupted`] once a signal came.
pub fn check() -> anyhow::Result<()> {
    match received() {
        None => Ok(()),
        Some(sig) => Err(Failure::Interrupted(sig).into()),
    }
}

/// The signal that came, if one did.
pub fn received() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// `SIGINT`, `SIGTERM`, `SIGHUP` (or the number).
pub fn name(sig: i32) -> String {
    signal_hook::low_level::signal_name(sig).map_or_else(|| format!("signal {sig}"), str::to_string)
}
