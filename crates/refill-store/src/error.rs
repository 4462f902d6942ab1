//! `StoreError`: the one error enum of the store, with backend errors mapped to named cases.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found: {0}")]
    NotFound(String),
    /// Someone else changed the row first (optimistic version mismatch or lost lease).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A unique key already exists.
    #[error("duplicate: {0}")]
    Duplicate(String),
    /// The caller asked for something the store refuses (missing rationale, empty plan, ...).
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("invalid database url: {0}")]
    InvalidUrl(String),
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Not a `#[source]`: the message already carries sqlx's, and error chains would print it three
    /// times ("database or disk is full: ... disk is full: ... disk is full").
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::RowNotFound => StoreError::NotFound("row".into()),
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate(db.message().to_string()),
            _ => StoreError::Database(error),
        }
    }
}
