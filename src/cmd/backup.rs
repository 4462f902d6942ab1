//! `refill backup FILE` and `refill restore FILE`: an online, consistent copy of the SQLite database
//! (`VACUUM INTO`, while the clinic runs), checked before it is reported written; and a restore that
//! checks the backup (integrity, audit chain, sealed rows) before it replaces anything, writes the
//! new database beside the old one, swaps it in by renaming, and compares every table with the backup
//! afterwards. PostgreSQL uses `pg_dump` and `pg_restore` (docs/operations.md): these commands say so.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use refill_store::{Store, StoreSettings};

use crate::context::Context;

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The backup file to write (must not exist).
    pub file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup file to restore from.
    pub file: PathBuf,
    /// Replace an existing database (stop `refill serve` and `refill worker` first).
    #[arg(long)]
    pub force: bool,
}

const POSTGRES_BACKUP: &str = "PostgreSQL is backed up with its own tools: \
    pg_dump --format=custom --file=refill.dump \"$DATABASE_URL\" (see docs/operations.md)";
const POSTGRES_RESTORE: &str = "PostgreSQL is restored with its own tools: \
    pg_restore --clean --if-exists --no-owner --dbname=\"$DATABASE_URL\" refill.dump, then refill audit verify \
    (see docs/operations.md)";

/// The file of a `sqlite:` URL (`None` for PostgreSQL).
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    Some(PathBuf::from(rest.split('?').next().unwrap_or(rest)))
}

/// What checking a database file found.
#[derive(Debug)]
pub struct Checked {
    pub audit_events: u64,
    pub tables: usize,
}

/// Open `file` (which must exist) with `settings`' audit key and check it: SQLite's integrity check, the
/// whole audit chain, and the protected rows against their last seal.
pub async fn check_database_file(file: &Path, settings: &StoreSettings) -> anyhow::Result<Checked> {
    if !file.is_file() {
        bail!("{} does not exist or is not a file", file.display());
    }
    let store = Store::connect(&StoreSettings { url: format!("sqlite:{}", file.display()), ..settings.clone() })
        .await
        .with_context(|| format!("could not open {} as a database", file.display()))?;
    let result = check_open_store(&store, file).await;
    store.close().await;
    result
}

async fn check_open_store(store: &Store, file: &Path) -> anyhow::Result<Checked> {
    let problems =
        store.integrity_problems().await.with_context(|| format!("{} is not a SQLite database", file.display()))?;
    if !problems.is_empty() {
        bail!("{} fails the integrity check: {}", file.display(), problems.join("; "));
    }
    let chain = store
        .verify_audit_chain(None)
        .await
        .with_context(|| format!("reading the audit chain of {}", file.display()))?;
    if let Some(problem) = chain.problem {
        bail!("the audit chain of {} is broken: {problem}", file.display());
    }
    let state = store.verify_state().await.with_context(|| format!("reading the rows of {}", file.display()))?;
    if !state.is_intact() {
        let first =
            state.mismatches.first().map(ToString::to_string).unwrap_or_else(|| "the seal table was edited".into());
        bail!("the protected rows of {} do not match their seal: {first}", file.display());
    }
    Ok(Checked { audit_events: chain.events_checked, tables: store.sqlite_tables().await?.len() })
}

pub async fn backup(args: BackupArgs, context: &Context) -> anyhow::Result<ExitCode> {
    let config = context.config()?;
    let settings = context.store_settings(&config)?;
    if sqlite_file(&settings.url).is_none() {
        eprintln!("error: {POSTGRES_BACKUP}");
        return Ok(ExitCode::from(2));
    }
    if let Some(parent) = args.file.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        bail!("the folder of the backup, {}, does not exist", parent.display());
    }
    let store = context.open_store(&config).await?;
    let started = std::time::Instant::now();
    let written =
        store.backup_sqlite_to(&args.file).await.with_context(|| format!("could not write {}", args.file.display()));
    store.close().await;
    written?;
    let checked = check_database_file(&args.file, &settings).await?;
    let bytes = std::fs::metadata(&args.file).map(|m| m.len()).unwrap_or(0);
    println!(
        "backup written to {} ({bytes} bytes, {} tables, audit chain intact with {} events) in {:.2} s",
        args.file.display(),
        checked.tables,
        checked.audit_events,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn restore(args: RestoreArgs, context: &Context) -> anyhow::Result<ExitCode> {
    let config = context.config()?;
    let settings = context.store_settings(&config)?;
    let Some(target) = sqlite_file(&settings.url) else {
        eprintln!("error: {POSTGRES_RESTORE}");
        return Ok(ExitCode::from(2));
    };
    let started = std::time::Instant::now();
    let checked = check_database_file(&args.file, &settings).await.context("the backup was not restored")?;
    if target.exists() && !args.force {
        bail!(
            "{} exists; stop the server and workers and pass --force to replace it with {}",
            target.display(),
            args.file.display()
        );
    }
    // Build the new database beside the target, check it, then swap it in with a rename: a failure
    // before the rename leaves the old database as it was.
    let staging = target.with_extension("restoring");
    remove_with_companions(&staging)?;
    let backup = Store::connect(&StoreSettings { url: format!("sqlite:{}", args.file.display()), ..settings.clone() })
        .await
        .with_context(|| format!("could not open {}", args.file.display()))?;
    let copied =
        backup.backup_sqlite_to(&staging).await.with_context(|| format!("could not write {}", staging.display()));
    backup.close().await;
    copied?;
    remove_with_companions(&target)?;
    std::fs::rename(&staging, &target)
        .with_context(|| format!("could not move {} to {}", staging.display(), target.display()))?;
    let restored = Store::connect(&settings).await.with_context(|| format!("could not open {}", target.display()))?;
    let differences = restored.sqlite_differences(&args.file).await;
    let verified = check_open_store(&restored, &target).await;
    restored.close().await;
    let differences = differences.context("could not compare the restored database with the backup")?;
    if let Some(first) = differences.first() {
        bail!(
            "the restored {} differs from the backup in {} table(s), first {} ({} rows only here, {} only there)",
            target.display(),
            differences.len(),
            first.table,
            first.only_here,
            first.only_there
        );
    }
    verified?;
    println!(
        "restored {} from {}: {} tables identical to the backup, audit chain intact with {} events, in {:.2} s",
        target.display(),
        args.file.display(),
        checked.tables,
        checked.audit_events,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Remove a SQLite file and its WAL companions, if there.
fn remove_with_companions(file: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", file.display()));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).with_context(|| format!("could not remove {}", path.display())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::sqlite_file;

    #[test]
    fn the_file_of_a_sqlite_url() {
        assert_eq!(sqlite_file("sqlite:refill.db"), Some("refill.db".into()));
        assert_eq!(sqlite_file("sqlite:///var/lib/refill.db?mode=rwc"), Some("/var/lib/refill.db".into()));
        assert_eq!(sqlite_file("postgres://u@h/db"), None);
    }
}
