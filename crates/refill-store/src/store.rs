//! The `Store` handle: which backend, its pools, and transactions that work the same way on both.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::StoreError;

/// Connection settings, assembled by the binary from configuration.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `sqlite:path/to/file.db` or `postgres://user@host/db`.
    pub url: String,
    /// Read connections (SQLite) or total connections (PostgreSQL).
    pub max_connections: u32,
    /// How long a SQLite writer waits for the file lock held by another process.
    pub busy_timeout: Duration,
}

impl StoreSettings {
    pub fn new(url: impl Into<String>) -> Self {
        StoreSettings { url: url.into(), max_connections: 8, busy_timeout: Duration::from_secs(10) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database. Cheap to clone (pools are reference counted).
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite {
        /// Readers: any number of connections; WAL lets them run beside the writer.
        read: SqlitePool,
        /// The one writer of this process: every write transaction starts with `BEGIN IMMEDIATE`.
        write: SqlitePool,
    },
    Postgres(PgPool),
}

/// A write transaction on either backend. Repository functions that must join the caller's
/// transaction (enqueue a job, append an audit event) take `&mut Tx`.
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(tx) => tx.rollback().await?,
            Tx::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Postgres(_) => Backend::Postgres,
        }
    }
}

impl Store {
    /// Open the database named by `settings.url` (the scheme picks the backend). Does not migrate.
    ///
    /// # Errors
    /// `InvalidUrl` for an unknown scheme; `Database` when the database cannot be opened.
    pub async fn connect(settings: &StoreSettings) -> Result<Store, StoreError> {
        let url = settings.url.as_str();
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::InvalidUrl(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(settings.busy_timeout);
            let write = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
            let read = SqlitePoolOptions::new()
                .max_connections(settings.max_connections.max(1))
                .connect_with(options.read_only(true))
                .await?;
            Ok(Store::Sqlite { read, write })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new().max_connections(settings.max_connections.max(2)).connect(url).await?;
            Ok(Store::Postgres(pool))
        } else {
            Err(StoreError::InvalidUrl("expected a sqlite: or postgres:// url".into()))
        }
    }

    /// Apply pending migrations of this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite { write, .. } => crate::SQLITE_MIGRATOR.run(write).await?,
            Store::Postgres(pool) => crate::POSTGRES_MIGRATOR.run(pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite { .. } => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }

    /// Begin a write transaction: `BEGIN IMMEDIATE` on the single SQLite writer, a plain transaction
    /// on PostgreSQL (row locks and unique keys serialise what must be serialised there).
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        match self {
            Store::Sqlite { write, .. } => Ok(Tx::Sqlite(write.begin_with("BEGIN IMMEDIATE").await?)),
            Store::Postgres(pool) => Ok(Tx::Postgres(pool.begin().await?)),
        }
    }

    /// Close every pool (waits for connections to be returned).
    pub async fn close(&self) {
        match self {
            Store::Sqlite { read, write } => {
                write.close().await;
                read.close().await;
            }
            Store::Postgres(pool) => pool.close().await,
        }
    }
}
