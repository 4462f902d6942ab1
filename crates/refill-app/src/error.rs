//! The one error type of the use cases: refusals are the protocol speaking (staff cannot override a
//! hold), conflicts are two people acting at once, the rest comes from the store.

use refill_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The action is not allowed by the protocol or does not fit the record (a hold prepared by staff,
    /// a note missing): the message says why, in words for the person acting.
    #[error("{0}")]
    Refused(String),
    /// Someone else changed the record since it was shown; the message names what changed.
    #[error("{0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> AppError {
        match error {
            StoreError::Conflict(message) => AppError::Conflict(message),
            StoreError::Invalid(message) => AppError::Refused(message),
            StoreError::NotFound(message) => AppError::NotFound(message),
            other => AppError::Store(other),
        }
    }
}
