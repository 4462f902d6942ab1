//! The `Store` handle: which backend, its pools, and transactions that work the same way on both.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::StoreError;

/// Run `$body` with `$conn` bound to the `&mut` connection of a `Tx`, whichever the backend. The body
/// is compiled once per backend, so the same statement text and binds serve both.
macro_rules! with_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            $crate::Tx::Sqlite(inner) => {
                let $conn: &mut sqlx::SqliteConnection = &mut *inner;
                $body
            }
            $crate::Tx::Postgres(inner) => {
                let $conn: &mut sqlx::PgConnection = &mut *inner;
                $body
            }
        }
    };
}

/// Run `$body` with `$pool` bound to a pool for reading (the SQLite read pool, or the PostgreSQL pool).
macro_rules! with_read_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pools {
            $crate::Pools::Sqlite { read, .. } => {
                let $pool = read;
                $body
            }
            $crate::Pools::Postgres(pool) => {
                let $pool = pool;
                $body
            }
        }
    };
}

pub(crate) use {with_read_pool, with_tx};

/// Connection settings, assembled by the binary from configuration.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `sqlite:path/to/file.db` or `postgres://user@host/db`.
    pub url: String,
    /// Read connections (SQLite) or total connections (PostgreSQL).
    pub max_connections: u32,
    /// How long a SQLite writer waits for the file lock held by another process.
    pub busy_timeout: Duration,
    /// Key of the audit chain's HMAC. Comes from configuration (the environment in production) and is
    /// never stored in the database.
    pub audit_key: AuditKey,
}

/// The HMAC key of the audit chain. `Debug` never prints it.
#[derive(Clone)]
pub struct AuditKey(std::sync::Arc<[u8]>);

impl AuditKey {
    pub fn new(bytes: impl AsRef<[u8]>) -> AuditKey {
        AuditKey(std::sync::Arc::from(bytes.as_ref()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(***)")
    }
}

impl StoreSettings {
    pub fn new(url: impl Into<String>, audit_key: AuditKey) -> Self {
        StoreSettings { url: url.into(), max_connections: 8, busy_timeout: Duration::from_secs(10), audit_key }
    }
}

/// One migration and whether the database has applied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub version: i64,
    pub description: String,
    pub applied: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database. Cheap to clone (pools and key are reference counted).
#[derive(Debug, Clone)]
pub struct Store {
    pub pools: Pools,
    /// Key of the audit chain's HMAC (never stored in the database).
    pub audit_key: AuditKey,
}

/// The connection pools of the backend in use.
#[derive(Debug, Clone)]
pub enum Pools {
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
            Ok(Store { pools: Pools::Sqlite { read, write }, audit_key: settings.audit_key.clone() })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new().max_connections(settings.max_connections.max(2)).connect(url).await?;
            Ok(Store { pools: Pools::Postgres(pool), audit_key: settings.audit_key.clone() })
        } else {
            Err(StoreError::InvalidUrl("expected a sqlite: or postgres:// url".into()))
        }
    }

    /// Apply pending migrations of this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pools {
            Pools::Sqlite { write, .. } => crate::SQLITE_MIGRATOR.run(write).await?,
            Pools::Postgres(pool) => crate::POSTGRES_MIGRATOR.run(pool).await?,
        }
        Ok(())
    }

    /// Every migration this build knows, with whether the database has applied it.
    ///
    /// # Errors
    /// Database errors (a database never migrated reports every migration as pending).
    pub async fn migration_status(&self) -> Result<Vec<MigrationStatus>, StoreError> {
        // The bookkeeping table exists only after the first migration run.
        let applied: Vec<i64> = match &self.pools {
            Pools::Sqlite { read, .. } => {
                let exists: i64 = sqlx::query_scalar(
                    "select count(*) from sqlite_master where type = 'table' and name = '_sqlx_migrations'",
                )
                .fetch_one(read)
                .await?;
                if exists == 0 {
                    Vec::new()
                } else {
                    sqlx::query_scalar("select version from _sqlx_migrations where success = true")
                        .fetch_all(read)
                        .await?
                }
            }
            Pools::Postgres(pool) => {
                let exists: bool =
                    sqlx::query_scalar("select to_regclass('_sqlx_migrations') is not null").fetch_one(pool).await?;
                if exists {
                    sqlx::query_scalar("select version from _sqlx_migrations where success = true")
                        .fetch_all(pool)
                        .await?
                } else {
                    Vec::new()
                }
            }
        };
        let migrator = match self.backend() {
            Backend::Sqlite => &crate::SQLITE_MIGRATOR,
            Backend::Postgres => &crate::POSTGRES_MIGRATOR,
        };
        Ok(migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .map(|m| MigrationStatus {
                version: m.version,
                description: m.description.to_string(),
                applied: applied.contains(&m.version),
            })
            .collect())
    }

    pub fn backend(&self) -> Backend {
        match &self.pools {
            Pools::Sqlite { .. } => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    /// Begin a write transaction: `BEGIN IMMEDIATE` on the single SQLite writer, a plain transaction
    /// on PostgreSQL (row locks and unique keys serialise what must be serialised there).
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        match &self.pools {
            Pools::Sqlite { write, .. } => Ok(Tx::Sqlite(write.begin_with("BEGIN IMMEDIATE").await?)),
            Pools::Postgres(pool) => Ok(Tx::Postgres(pool.begin().await?)),
        }
    }

    /// Close every pool (waits for connections to be returned).
    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite { read, write } => {
                write.close().await;
                read.close().await;
            }
            Pools::Postgres(pool) => pool.close().await,
        }
    }
}
