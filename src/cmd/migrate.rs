//! `refill migrate`: apply the pending database migrations of the configured backend and list them.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::context::{Context, redact_url};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only list the migrations and whether each is applied; change nothing.
    #[arg(long)]
    pub status: bool,
}

pub async fn run(args: Args, context: &Context) -> anyhow::Result<ExitCode> {
    let config = context.config()?;
    let settings = context.store_settings(&config)?;
    let shown_url = redact_url(&settings.url);
    let store = crate::context::connect(&settings).await?;
    let before = store.migration_status().await.context("could not read the migration table")?;
    if args.status {
        for migration in &before {
            let state = if migration.applied { "applied" } else { "pending" };
            println!("{:04} {:<24} {state}", migration.version, migration.description);
        }
        store.close().await;
        return Ok(ExitCode::SUCCESS);
    }
    store.migrate().await.with_context(|| format!("could not migrate the database {shown_url}"))?;
    let pending: Vec<_> = before.iter().filter(|m| !m.applied).collect();
    if pending.is_empty() {
        println!("{shown_url}: up to date ({} migrations)", before.len());
    } else {
        for migration in pending {
            println!("applied {:04} {}", migration.version, migration.description);
        }
        println!("{shown_url}: up to date ({} migrations)", before.len());
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
