//! The `refill` application shell: configuration, tracing, and the subcommands. This is the composition
//! root: the only place that reads configuration files, the environment and the clock for the libraries,
//! and that wires the store, jobs, notifier and web together.

pub mod cli;
pub mod cmd;
pub mod config;
pub mod context;
pub mod file_error;
pub mod policy_file;
pub mod scenario;
