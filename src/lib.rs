//! evlake: a batch data-lake transformation tool for event streams.
//!
//! The library owns all behaviour; `main.rs` only parses arguments, calls
//! [`cli::run`] and turns errors into exit codes (see [`error::exit_code`]).

pub mod batches;
pub mod bronze;
pub mod check;
pub mod cli;
pub mod commands;
pub mod committed;
pub mod compact;
pub mod config;
pub mod csvout;
pub mod daily;
pub mod derive;
pub mod dirty;
pub mod engine;
pub mod erase;
pub mod error;
pub mod fault;
pub mod generate;
pub mod gold;
pub mod ids;
pub mod ingest;
pub mod interrupt;
pub mod jsonout;
pub mod kept_filters;
pub mod lake;
pub mod late;
pub mod lateness;
pub mod log;
pub mod null_rows;
pub mod partitioned;
pub mod patch;
pub mod pipeline;
pub mod reconcile;
pub mod removal;
pub mod report;
pub mod retract;
pub mod silver;
pub mod state;
pub mod table;
pub mod time;
pub mod udf;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub mod zstd_pool;
