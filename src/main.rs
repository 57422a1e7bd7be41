use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = evlake::cli::Cli::parse();
    match evlake::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if evlake::error::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            evlake::report::eline(format_args!("error: {err:#}"));
            ExitCode::from(evlake::error::exit_code(&err))
        }
    }
}
