//! `refill explain SCENARIO [--policy FILE] [--check]`: evaluate one scenario file (the format of
//! tests/scenarios/README.md) and print the decision as JSON: outcome, every reason with its evidence,
//! the tasks, the policy version, the total daily MME and the eligible date.
//!
//! The scenario's `[policy]` overrides apply on top of the built-in defaults, or on top of `--policy
//! FILE` when given. With `--check` the command exits 1 when the decision differs from the scenario's
//! `[expect]` section, listing every difference on stderr. Unreadable or malformed scenarios exit
//! non-zero with the file, line and field named.

use std::path::PathBuf;
use std::process::ExitCode;

use refill_rules::policy::Policy;

use crate::context::Context;
use crate::policy_file;
use crate::scenario;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The scenario file (TOML).
    #[arg(value_name = "SCENARIO")]
    pub scenario: PathBuf,
    /// Base policy file for the scenario (default: the built-in policy, equal to config/policy.toml).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Exit 1 when the decision differs from the scenario's [expect] section.
    #[arg(long)]
    pub check: bool,
}

pub async fn run(args: Args, _context: &Context) -> anyhow::Result<ExitCode> {
    let base = match &args.policy {
        Some(path) => policy_file::load_policy_file(path)?.policy,
        None => Policy::defaults(),
    };
    let scenario = scenario::load_scenario_with(&args.scenario, &base)?;
    let decision = scenario.evaluate();
    println!("{}", serde_json::to_string_pretty(&decision)?);
    if args.check {
        let mismatches = scenario.mismatches(&decision);
        if scenario.expect.is_none() {
            eprintln!("{}: no [expect] section to check", args.scenario.display());
            return Ok(ExitCode::FAILURE);
        }
        if !mismatches.is_empty() {
            for mismatch in &mismatches {
                eprintln!("{}: {mismatch}", args.scenario.display());
            }
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}
