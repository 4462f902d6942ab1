//! One module per subcommand. Each has `Args` (or a `Command` enum) and an async `run`.

pub mod audit;
pub mod backup;
pub mod check_config;
pub mod demo;
pub mod explain;
pub mod export;
pub mod import;
pub mod jobs;
pub mod migrate;
pub mod mme;
pub mod policy;
pub mod serve;
pub mod taper;
pub mod uds;
pub mod user;
pub mod worker;
