//! `WebError`: what a handler can fail with, and the response each case becomes. Messages shown to
//! people are generic; details go to the log with opaque ids only.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use refill_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("not signed in")]
    Unauthenticated,
    #[error("not allowed for this role")]
    Forbidden,
    /// The clinic requires physicians and admins to enrol a second factor, and this one has not.
    #[error("enrol a second factor first: /account/second-factor")]
    SecondFactorRequired,
    #[error("the form's security token is missing or stale; reload the page and try again")]
    Csrf,
    #[error("not found: {0}")]
    NotFound(String),
    /// Bad input, with the field named.
    #[error("{0}")]
    BadRequest(String),
    /// Someone else acted first; the message names who and what.
    #[error("{0}")]
    Conflict(String),
    #[error("too many attempts; wait a minute and try again")]
    TooManyRequests,
    #[error("storage error")]
    Store(#[from] StoreError),
    #[error("page rendering failed")]
    Render(#[from] askama::Error),
    #[error("internal error: {0}")]
    Internal(String),
    /// The TLS certificate or key given to `refill serve` is unusable (names the file).
    #[error("TLS: {0}")]
    Tls(String),
}

impl WebError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::Unauthenticated => StatusCode::UNAUTHORIZED,
            WebError::Forbidden | WebError::Csrf | WebError::SecondFactorRequired => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            WebError::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
            WebError::Store(StoreError::Conflict(_)) => StatusCode::CONFLICT,
            WebError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Render(_) | WebError::Internal(_) | WebError::Tls(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The sentence shown to the person (never internals).
    pub fn public_message(&self) -> String {
        match self {
            WebError::Store(StoreError::NotFound(_)) => "Not found.".into(),
            WebError::Store(StoreError::Conflict(what)) => what.clone(),
            WebError::Store(_) => "The database is unavailable; try again in a moment.".into(),
            WebError::Render(_) | WebError::Internal(_) | WebError::Tls(_) => {
                "Something went wrong; it has been logged.".into()
            }
            other => other.to_string(),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body = serde_json::json!({ "error": self.public_message(), "status": status.as_u16() });
        (status, axum::Json(body)).into_response()
    }
}
