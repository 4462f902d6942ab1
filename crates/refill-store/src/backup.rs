//! Backups of a SQLite database while the clinic runs, and the checks a restore makes before it
//! replaces anything.
//!
//! `VACUUM INTO` writes a consistent copy from one read transaction: writers carry on (WAL) and the
//! copy is the database as of one instant, compacted, without the WAL beside it. A backup is checked
//! by opening it like any database: `PRAGMA integrity_check`, every table compared row for row with
//! its source (`EXCEPT` both ways over an attached copy), and the audit chain walked with the key.
//! PostgreSQL is backed up with its own tools (`pg_dump --format=custom`, `pg_restore`); see
//! docs/operations.md.

use std::path::Path;

use crate::{Pools, Store, StoreError};

/// How one table of two databases differs: rows only in this one, rows only in the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDifference {
    pub table: String,
    pub only_here: i64,
    pub only_there: i64,
    /// The table is missing from the other database.
    pub missing_there: bool,
}

/// A path as a single-quoted SQL string literal (quotes doubled). `VACUUM INTO` and `ATTACH` take
/// the file name as an expression; binding it as a parameter is not supported by every SQLite build.
fn sql_path(path: &Path) -> Result<String, StoreError> {
    let text = path.to_str().ok_or_else(|| StoreError::Invalid(format!("{} is not UTF-8", path.display())))?;
    Ok(format!("'{}'", text.replace('\'', "''")))
}

impl Store {
    fn sqlite_writer(&self, what: &str) -> Result<&sqlx::SqlitePool, StoreError> {
        match &self.pools {
            Pools::Sqlite { write, .. } => Ok(write),
            Pools::Postgres(_) => Err(StoreError::Invalid(format!(
                "{what} is for SQLite databases; back PostgreSQL up with pg_dump (docs/operations.md)"
            ))),
        }
    }

    /// Write a consistent copy of the whole SQLite database to `path`, which must not exist yet.
    ///
    /// # Errors
    /// `Invalid` for PostgreSQL or an existing file; `Database` when the copy cannot be written (a
    /// missing folder, a full disk).
    pub async fn backup_sqlite_to(&self, path: &Path) -> Result<(), StoreError> {
        let write = self.sqlite_writer("refill backup")?;
        if path.exists() {
            return Err(StoreError::Invalid(format!("{} exists already; a backup never overwrites", path.display())));
        }
        // The writer connection: a read snapshot on it sees every committed write of this process.
        let sql = format!("VACUUM INTO {}", sql_path(path)?);
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(write).await?;
        Ok(())
    }

    /// `PRAGMA integrity_check`: empty when the file is sound, else each problem SQLite reports.
    pub async fn integrity_problems(&self) -> Result<Vec<String>, StoreError> {
        let write = self.sqlite_writer("an integrity check")?;
        let lines: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check").fetch_all(write).await?;
        Ok(lines.into_iter().filter(|line| line != "ok").collect())
    }

    /// The tables of the SQLite database, by name (SQLite's own excluded).
    pub async fn sqlite_tables(&self) -> Result<Vec<String>, StoreError> {
        let write = self.sqlite_writer("listing tables")?;
        Ok(sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .fetch_all(write)
        .await?)
    }

    /// Compare every table of this SQLite database with the database file at `other`, row for row.
    /// Returns the tables that differ (none: identical contents).
    pub async fn sqlite_differences(&self, other: &Path) -> Result<Vec<TableDifference>, StoreError> {
        let write = self.sqlite_writer("comparing databases")?;
        let tables = self.sqlite_tables().await?;
        // One connection for ATTACH, the comparisons and DETACH: an attachment belongs to its connection.
        let mut conn = write.acquire().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("ATTACH DATABASE {} AS other", sql_path(other)?)))
            .execute(&mut *conn)
            .await?;
        let mut differences = Vec::new();
        let mut outcome = Ok(());
        for table in &tables {
            let exists: i64 =
                match sqlx::query_scalar("SELECT count(*) FROM other.sqlite_master WHERE type = 'table' AND name = $1")
                    .bind(table)
                    .fetch_one(&mut *conn)
                    .await
                {
                    Ok(count) => count,
                    Err(error) => {
                        outcome = Err(error);
                        break;
                    }
                };
            if exists == 0 {
                differences.push(TableDifference {
                    table: table.clone(),
                    only_here: 0,
                    only_there: 0,
                    missing_there: true,
                });
                continue;
            }
            // Table names come from sqlite_master of this database, quoted as identifiers.
            let quoted = format!("\"{}\"", table.replace('"', "\"\""));
            let count = |a: &str, b: &str| {
                format!("SELECT count(*) FROM (SELECT * FROM {a}.{quoted} EXCEPT SELECT * FROM {b}.{quoted})")
            };
            let here =
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count("main", "other"))).fetch_one(&mut *conn).await;
            let there =
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count("other", "main"))).fetch_one(&mut *conn).await;
            match (here, there) {
                (Ok(0), Ok(0)) => {}
                (Ok(only_here), Ok(only_there)) => differences.push(TableDifference {
                    table: table.clone(),
                    only_here,
                    only_there,
                    missing_there: false,
                }),
                (Err(error), _) | (_, Err(error)) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
        // Detach whatever happened, so the pooled connection goes back clean.
        sqlx::query("DETACH DATABASE other").execute(&mut *conn).await?;
        outcome?;
        Ok(differences)
    }
}
