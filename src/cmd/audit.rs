//! `refill audit checkpoint` and `refill audit verify`: anchor the audit chain outside the database,
//! and walk it to find the first altered, missing or reordered event. A checkpoint also seals the
//! protected rows into the chain, and `verify` reports every row changed, added or deleted since
//! without an audited change (`refill_store::state_seal`): a direct edit of a table leaves the chain
//! itself intact.
//!
//! The checkpoint file (`[audit] checkpoint_path`) gets one signed line per checkpoint; keep it (or a
//! copy) somewhere the database's administrators cannot rewrite. `verify` compares the chain with the
//! file's last line, which is what reveals a deleted tail or a chain recomputed with a stolen key.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use refill_store::{AuditCheckpoint, AuditKey};

use crate::context::{AuditSection, Context};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Seal the protected rows into the chain, then append the chain head (sequence, MAC, time) to the
    /// checkpoint file outside the database.
    Checkpoint(PathArgs),
    /// Verify the whole chain against the key and the latest checkpoint, and the protected rows against
    /// the last seal; exit 1 when either was tampered with.
    Verify(PathArgs),
}

#[derive(Debug, clap::Args)]
pub struct PathArgs {
    /// Checkpoint file (default: `[audit] checkpoint_path`).
    #[arg(long)]
    pub checkpoint_file: Option<PathBuf>,
}

pub async fn run(command: Command, context: &Context) -> anyhow::Result<ExitCode> {
    let config = context.config()?;
    let audit: AuditSection = config.section("audit")?;
    let path_args = match &command {
        Command::Checkpoint(args) | Command::Verify(args) => args,
    };
    let path = match (&path_args.checkpoint_file, &audit.checkpoint_path) {
        (Some(path), _) => path.clone(),
        (None, Some(path)) => config.resolve_path(path),
        (None, None) => anyhow::bail!("no checkpoint file: set [audit] checkpoint_path or pass --checkpoint-file"),
    };
    let store = context.open_store(&config).await?;
    let key = store.audit_key.clone();
    let code = match command {
        Command::Checkpoint(_) => {
            let login = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
            let sealed = store
                .seal_state(&refill_store::Actor::new(format!("cli:{login}"), "operator"))
                .await
                .context("could not seal the protected rows")?;
            println!("state sealed at event {sealed}");
            let checkpoint = store.audit_checkpoint().await.context("could not read the audit chain head")?;
            append_line(&path, &checkpoint.to_line(&key))?;
            println!("checkpoint: event {} written to {}", checkpoint.seq, path.display());
            ExitCode::SUCCESS
        }
        Command::Verify(_) => {
            let checkpoint = latest_checkpoint(&path, &key)?;
            if checkpoint.is_none() {
                eprintln!(
                    "warning: no checkpoint in {}: a deleted tail cannot be detected (run `refill audit checkpoint`)",
                    path.display()
                );
            }
            let verification =
                store.verify_audit_chain(checkpoint.as_ref()).await.context("could not read the audit chain")?;
            let state = store.verify_state().await.context("could not read the protected rows")?;
            let state_code = report_state(&state);
            let chain_code = match &verification.problem {
                None => {
                    let against = checkpoint
                        .map(|c| format!(", matches the checkpoint of {} at event {}", c.at.to_rfc3339(), c.seq))
                        .unwrap_or_default();
                    println!("audit chain intact: {} events{against}", verification.events_checked);
                    ExitCode::SUCCESS
                }
                Some(problem) => {
                    println!(
                        "audit chain BROKEN: {problem} ({} events verified before it)",
                        verification.events_checked
                    );
                    ExitCode::from(1)
                }
            };
            if state_code == ExitCode::SUCCESS { chain_code } else { state_code }
        }
    };
    store.close().await;
    Ok(code)
}

/// Print what verifying the protected rows found; exit 1 on any mismatch.
fn report_state(state: &refill_store::StateVerification) -> ExitCode {
    let Some(seq) = state.sealed_at_seq else {
        eprintln!("warning: the protected rows were never sealed: run `refill audit checkpoint`");
        return ExitCode::SUCCESS;
    };
    if state.seal_table_altered {
        println!("protected rows BROKEN: the seal table does not match the seal at event {seq}");
    }
    for mismatch in &state.mismatches {
        println!("protected rows BROKEN: {mismatch}");
    }
    if state.is_intact() {
        println!(
            "protected rows intact: {} rows match the seal at event {seq} or its audited changes",
            state.rows_checked
        );
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Append one line and flush it to disk: a checkpoint that is lost in a crash protects nothing.
fn append_line(path: &Path, line: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("could not create {}", parent.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("could not open the checkpoint file {}", path.display()))?;
    writeln!(file, "{line}").with_context(|| format!("could not write {}", path.display()))?;
    file.sync_all().with_context(|| format!("could not sync {}", path.display()))?;
    Ok(())
}

/// The last checkpoint line of the file, authenticated with the key; `None` when there is no file yet.
fn latest_checkpoint(path: &Path, key: &AuditKey) -> anyhow::Result<Option<AuditCheckpoint>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("could not read {}", path.display())),
    };
    let Some((index, line)) = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).last() else {
        return Ok(None);
    };
    AuditCheckpoint::parse_line(line, key)
        .map(Some)
        .map_err(|problem| anyhow::anyhow!("{}:{}: {problem}", path.display(), index + 1))
}
