use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = evlake::cli::Cli::parse();
    let result = evlake::cli::run(cli);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("EVLAKE_TRACE").is_some() {
        evlake::report::eline(format_args!(
            "{:>12} zstd contexts: {} created, {} reused",
            "Trace",
            evlake::zstd_pool::created(),
            evlake::zstd_pool::reused()
        ));
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if evlake::error::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            evlake::report::eline(format_args!("error: {}", evlake::error::describe(&err)));
            if let Some(hint) = evlake::error::hint(&err) {
                evlake::report::eline(format_args!("hint: {hint}"));
            }
            ExitCode::from(evlake::error::exit_code(&err))
        }
    }
}
