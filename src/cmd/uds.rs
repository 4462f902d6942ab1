//! `refill uds` (being built; see the issue that owns it).

use std::process::ExitCode;

use crate::context::Context;

#[derive(Debug, clap::Subcommand)]
pub enum Command {}

pub async fn run(command: Command, _context: &Context) -> anyhow::Result<ExitCode> {
    match command {}
}
