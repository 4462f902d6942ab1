//! `refill policy check [FILE] [--format toml|json]`: validate a policy file (default: the one named
//! by `[policy] file` in the configuration) and print the effective policy (every value, defaults
//! applied) and its version. Bad values exit non-zero with the file, line and key named; safety floors
//! the file tries to relax are rejected the same way.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::context::Context;
use crate::policy_file::{self, LoadedPolicy};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate a policy file and print the effective policy and its version.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The policy file (default: `[policy] file` from the configuration).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Output format of the effective policy.
    #[arg(long, value_enum, default_value = "toml")]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Toml,
    Json,
}

pub async fn run(command: Command, context: &Context) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check(args) => check(args, context),
    }
}

fn check(args: CheckArgs, context: &Context) -> anyhow::Result<ExitCode> {
    let loaded = match &args.file {
        Some(path) => policy_file::load_policy_file(path)?,
        None => policy_file::load_policy(&context.config()?)?,
    };
    print!("{}", render(&loaded, args.format)?);
    Ok(ExitCode::SUCCESS)
}

/// The effective policy with its version and source, in the chosen format.
pub fn render(loaded: &LoadedPolicy, format: Format) -> anyhow::Result<String> {
    let source = loaded.source.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "built-in".to_string());
    Ok(match format {
        Format::Toml => format!(
            "# policy file: {source}\n# policy version: {}\n# factor set: {}\n\n{}",
            loaded.version,
            loaded.policy.factor_set().as_str(),
            toml::to_string(&loaded.policy)?
        ),
        Format::Json => {
            let value = serde_json::json!({
                "source": source,
                "version": loaded.version,
                "policy": loaded.policy,
            });
            format!("{}\n", serde_json::to_string_pretty(&value)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_policy_reads_back_to_the_same_version() {
        let loaded = policy_file::default_policy();
        let text = render(&loaded, Format::Toml).unwrap();
        assert!(text.contains(&format!("# policy version: {}", loaded.version)));
        let again = policy_file::parse_policy(&text).unwrap();
        assert_eq!(again.version, loaded.version);
        let json = render(&loaded, Format::Json).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["version"], loaded.version.as_str());
        assert_eq!(value["policy"]["refill"]["on_time_fraction"], 0.85);
    }
}
