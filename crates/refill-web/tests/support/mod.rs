//! Shared pieces of the web tests: a signed-in person with a session made directly in the store, a
//! JSON call through the router, form encoding, and counting audit events by action.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::Utc;
use refill_store::Store;
use refill_store::accounts::{self, Role};
use refill_web::auth::{random_token, sha256_hex};
use refill_web::{AppState, app};
use serde_json::Value;
use tower::ServiceExt;

/// A signed-in person: the session cookie and its CSRF token.
pub struct Person {
    pub cookie: String,
    pub csrf: String,
}

/// A user of `role` with an open session (never signs in with a password).
pub async fn person(state: &AppState, username: &str, name: &str, role: Role) -> Person {
    let now = Utc::now().timestamp_millis();
    let user = accounts::create_user(
        &state.store,
        &accounts::NewUser {
            username: username.into(),
            display_name: name.into(),
            role,
            password_hash: "$argon2id$unused".into(),
        },
        now,
    )
    .await
    .expect("user");
    let (token, csrf) = (random_token(), random_token());
    accounts::create_person_session(&state.store, &sha256_hex(&token), user.id, &csrf, now, now + 3_600_000)
        .await
        .expect("session");
    Person { cookie: format!("refill_session={token}"), csrf }
}

/// A JSON API call as `who`: the status and the JSON body (`Null` when the body is not JSON).
pub async fn call(
    state: &AppState,
    who: &Person,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::COOKIE, &who.cookie)
        .header("x-csrf-token", &who.csrf);
    let body = match body {
        Some(body) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    let response = app(state.clone()).oneshot(builder.body(body).expect("request")).await.expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 4 << 20).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Percent-encode a form value.
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// How many audit events record `action`.
pub async fn count_events(store: &Store, action: &str) -> usize {
    let head = store.audit_head().await.expect("head");
    store.audit_events(1, head.seq).await.expect("events").iter().filter(|e| e.action == action).count()
}
