//! The command line: one subcommand per module in `cmd/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cmd;
use crate::context::Context;

#[derive(Debug, Parser)]
#[command(name = "refill", version, about = "Refill Clinic: consistent refill protocol for long-term opioid therapy")]
pub struct Cli {
    /// Configuration folder (default: REFILL_CONFIG_DIR or ./config).
    #[arg(long, global = true, value_name = "DIR")]
    pub config: Option<PathBuf>,
    /// Database URL, overriding [database] url (sqlite:FILE or postgres://...).
    #[arg(long, global = true, value_name = "URL")]
    pub database: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Daily MME of the active opioid orders in a FHIR Bundle or MedicationRequest.
    Mme(cmd::mme::Args),
    /// Evaluate one scenario file and print the decision as JSON.
    Explain(cmd::explain::Args),
    /// Validate a policy file and print the effective policy and its version.
    #[command(subcommand)]
    Policy(cmd::policy::Command),
    /// Taper plans.
    #[command(subcommand)]
    Taper(cmd::taper::Command),
    /// Urine drug screening: draw dates, interpret results.
    #[command(subcommand)]
    Uds(cmd::uds::Command),
    /// Apply database migrations.
    Migrate(cmd::migrate::Args),
    /// Audit trail: checkpoint and verify the tamper-evident chain.
    #[command(subcommand)]
    Audit(cmd::audit::Command),
    /// Import FHIR R4 Bundles or CSV files.
    Import(cmd::import::Args),
    /// Export patients as a FHIR R4 Bundle that imports back unchanged (Part 2 only when asked).
    Export(cmd::export::Args),
    /// Create a synthetic clinic in a local SQLite file and serve it.
    Demo(cmd::demo::Args),
    /// Run jobs: daily pipeline, reminders, taper steps, digests, email delivery.
    Worker(cmd::worker::Args),
    /// Inspect and drive the job queue.
    #[command(subcommand)]
    Jobs(cmd::jobs::Command),
    /// Serve the web screens and the JSON API.
    Serve(cmd::serve::Args),
    /// Manage user accounts and wall-display sessions.
    #[command(subcommand)]
    User(cmd::user::Command),
    /// Validate the whole configuration (refuses unsafe production settings).
    CheckConfig(cmd::check_config::Args),
    /// Write a consistent copy of the SQLite database while it runs, and check it.
    Backup(cmd::backup::BackupArgs),
    /// Check a backup, then make it the configured SQLite database.
    Restore(cmd::backup::RestoreArgs),
    /// Print a shell completion script (for example `refill completions bash > /etc/bash_completion.d/refill`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// A date argument: `YYYY-MM-DD`, with the format in the error (clap's own says only "input contains
/// invalid characters").
pub fn parse_date(text: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| format!("expected a date as YYYY-MM-DD (for example 2026-12-07), found {text:?}"))
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let context = Context { config_dir: cli.config, database_url: cli.database };
    match cli.command {
        Command::Mme(args) => cmd::mme::run(args, &context).await,
        Command::Explain(args) => cmd::explain::run(args, &context).await,
        Command::Policy(command) => cmd::policy::run(command, &context).await,
        Command::Taper(command) => cmd::taper::run(command, &context).await,
        Command::Uds(command) => cmd::uds::run(command, &context).await,
        Command::Migrate(args) => cmd::migrate::run(args, &context).await,
        Command::Audit(command) => cmd::audit::run(command, &context).await,
        Command::Import(args) => cmd::import::run(args, &context).await,
        Command::Export(args) => cmd::export::run(args, &context).await,
        Command::Demo(args) => cmd::demo::run(args, &context).await,
        Command::Worker(args) => cmd::worker::run(args, &context).await,
        Command::Jobs(command) => cmd::jobs::run(command, &context).await,
        Command::Serve(args) => cmd::serve::run(args, &context).await,
        Command::User(command) => cmd::user::run(command, &context).await,
        Command::CheckConfig(args) => cmd::check_config::run(args, &context).await,
        Command::Backup(args) => cmd::backup::backup(args, &context).await,
        Command::Restore(args) => cmd::backup::restore(args, &context).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            // Into memory first: clap_complete panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "refill", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
                Err(error) => Err(error.into()),
            }
        }
    }
}
