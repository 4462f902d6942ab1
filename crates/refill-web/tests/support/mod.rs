//! Shared pieces of the web tests: an app over a migrated SQLite file, decisions recorded as the daily
//! run would, a signed-in person with a session made directly in the store, a JSON call through the
//! router, form encoding, and counting audit events by action.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{NaiveDate, Utc};
use refill_rules::{Decision, Evidence, Outcome, PatientId, Reason, ReasonCode};
use refill_store::accounts::{self, Role};
use refill_store::{Actor, AuditKey, NewDecision, Store, StoreSettings, Tx};
use refill_web::auth::{random_token, sha256_hex};
use refill_web::{AppState, WebSettings, app};
use serde_json::Value;
use tower::ServiceExt;

/// The app over a migrated store in the SQLite file `name` under `dir`, with `settings` and the default
/// policy.
pub async fn sqlite_app(dir: &std::path::Path, name: &str, key: &[u8], settings: WebSettings) -> AppState {
    let url = format!("sqlite:{}", dir.join(name).display());
    let store = Store::connect(&StoreSettings::new(url, AuditKey::new(key))).await.expect("store");
    store.migrate().await.expect("migrate");
    AppState::new(store, settings, Default::default(), "test".into())
}

/// A decision that escalates on one reason with one piece of evidence, at `mme` MME/day.
pub fn escalation(code: ReasonCode, evidence: (&'static str, &'static str), restricted: bool, mme: f64) -> Decision {
    Decision::from_reasons(
        vec![Reason {
            code,
            outcome: Outcome::Escalate,
            evidence: vec![Evidence::text(evidence.0, evidence.1)],
            task: None,
            restricted,
        }],
        None,
        Some(mme),
        "test",
    )
}

/// Record `decision` for `patient` on `today` inside `tx`, as the daily run would: a queue row whose
/// supply runs out tomorrow, and an open exception when the decision escalates.
pub async fn record_today(store: &Store, tx: &mut Tx, patient: PatientId, today: NaiveDate, decision: &Decision) {
    store
        .record_decision(
            tx,
            &NewDecision {
                patient_id: patient,
                clinic_date: today,
                refill_request_id: None,
                decision,
                decided_by: &Actor::system(),
                run_out_on: today.succ_opt(),
                dedupe_key: None,
            },
        )
        .await
        .expect("decision");
}

/// A signed-in person: the session cookie and its CSRF token.
pub struct Person {
    pub cookie: String,
    pub csrf: String,
}

/// A user of `role` with an open session of an hour from now (never signs in with a password).
pub async fn person(state: &AppState, username: &str, name: &str, role: Role) -> Person {
    person_at(state, username, name, role, Utc::now().timestamp_millis(), 3_600_000).await
}

/// `person`, signed in at `now` (milliseconds, for tests on a set clock) for `lifetime_ms`.
pub async fn person_at(state: &AppState, username: &str, name: &str, role: Role, now: i64, lifetime_ms: i64) -> Person {
    let user = accounts::create_user(
        &state.store,
        &accounts::NewUser {
            username: username.into(),
            display_name: name.into(),
            role,
            password_hash: "$argon2id$unused".into(),
        },
        now,
        &Actor::system(),
    )
    .await
    .expect("user");
    let (token, csrf) = (random_token(), random_token());
    accounts::create_person_session(&state.store, &sha256_hex(&token), user.id, &csrf, now, now + lifetime_ms)
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
