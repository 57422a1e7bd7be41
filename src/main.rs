use std::process::ExitCode;

fn main() -> ExitCode {
    // On a thread whose stack holds the recursion of planning deep SQL
    // (engine::planning_stack); on this one if there is none, or if the
    // system refuses it.
    let Some(size) = evlake::engine::planning_stack() else {
        return evlake_main();
    };
    match std::thread::Builder::new()
        .name("main".into())
        .stack_size(size)
        .spawn(evlake_main)
    {
        Ok(thread) => thread.join().unwrap_or(ExitCode::from(1)),
        Err(_) => evlake_main(),
    }
}

fn evlake_main() -> ExitCode {
    let cli = evlake::cli::parse();
    // A panic (a bug in evlake or in DataFusion) is exit 1 with a line
    // saying what it means, not Rust's 101; its message and place are
    // above, from the panic hook. Like a crash, it leaves the lake as its
    // last commit did.
    let result =
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| evlake::cli::run(cli))) {
            Ok(result) => result,
            Err(_) => {
                evlake::report::eline(format_args!(
                    "error: evlake stopped on an internal error (the panic above), a bug to \
                 report: the lake is as its last commit left it, and running the command \
                 again is safe"
                ));
                return ExitCode::from(1);
            }
        };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("EVLAKE_TRACE").is_some() {
        evlake::report::eline(format_args!(
            "{:>12} zstd contexts: {} created, {} reused",
            "Trace",
            evlake::zstd_pool::created(),
            evlake::zstd_pool::reused()
        ));
    }
    // A signal that came after the last safe point: the work is done, but
    // the caller asked to stop (a `&&` chain must not go on).
    if let (Ok(()), Some(sig)) = (&result, evlake::interrupt::received()) {
        evlake::report::eline(format_args!(
            "evlake: {} came after the last step committed: nothing is left unfinished",
            evlake::interrupt::name(sig)
        ));
        return ExitCode::from((128 + sig).clamp(0, 255) as u8);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if evlake::error::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            evlake::report::eline(format_args!(
                "error: {}",
                evlake::report::error_text(evlake::error::describe(&err))
            ));
            if let Some(hint) = evlake::error::hint(&err) {
                evlake::report::eline(format_args!("hint: {}", evlake::report::error_text(hint)));
            }
            ExitCode::from(evlake::error::exit_code(&err))
        }
    }
}
