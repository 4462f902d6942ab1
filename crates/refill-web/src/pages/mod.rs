//! The HTML pages: what every page shares (the header with the signed-in person and the CSRF token),
//! static assets, error pages, and one module per screen.

pub mod account;
pub mod admin;
pub mod dashboard;
pub mod enrolment;
pub mod exceptions;
pub mod login;
pub mod patient;
pub mod queue;
pub mod search;
pub mod taper;

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use refill_store::accounts::Role;
use refill_store::{Actor, AuditEvent};

use crate::auth::Principal;
use crate::{AppState, WebError};

/// The header every signed-in page shows.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub clinic_name: String,
    pub user_name: String,
    pub role: String,
    pub csrf: String,
    pub nav: Vec<(&'static str, &'static str, bool)>,
    /// The patient search box in the header (staff and physicians).
    pub search: bool,
}

impl Chrome {
    pub fn new(state: &AppState, principal: &Principal, current: &str) -> Chrome {
        let role = principal.role();
        let mut nav = Vec::new();
        let mut add = |href: &'static str, label: &'static str, roles: &[Role]| {
            if role.is_some_and(|r| roles.contains(&r)) {
                nav.push((href, label, href == current));
            }
        };
        add("/exceptions", "Exceptions", &[Role::Physician]);
        add("/queue", "Queue", &[Role::Staff, Role::Physician]);
        add("/patients", "Find a patient", &[Role::Staff, Role::Physician]);
        add("/patients/not-enrolled", "Not enrolled", &[Role::Staff, Role::Physician]);
        add("/dashboard", "Dashboard", &[Role::Physician, Role::Admin]);
        add("/admin", "Accounts", &[Role::Admin]);
        add("/account/second-factor", "Sign-in security", &[Role::Staff, Role::Physician, Role::Admin]);
        Chrome {
            clinic_name: state.settings.clinic_name.clone(),
            user_name: principal.user().map(|u| u.display_name.clone()).unwrap_or_default(),
            role: role.map(|r| r.as_str().to_string()).unwrap_or_default(),
            csrf: principal.session().map(|s| s.csrf_token.clone()).unwrap_or_default(),
            nav,
            search: matches!(role, Some(Role::Staff | Role::Physician)),
        }
    }
}

#[derive(Template)]
#[template(path = "web/error.html")]
pub struct ErrorPage {
    pub status: u16,
    pub title: String,
    pub message: String,
    pub sign_in: bool,
}

pub fn render(template: &impl Template) -> Result<Response, WebError> {
    Ok(Html(template.render()?).into_response())
}

/// The store's actor for a principal.
pub fn actor(principal: &Principal) -> Actor {
    let (id, role) = principal.actor();
    Actor::new(id, role)
}

/// Record a view of patient data (one event per page, panel, detail or list, with the query).
pub async fn audit_view(
    state: &AppState,
    principal: &Principal,
    action: &str,
    resource_type: &str,
    resource_id: Option<String>,
    patient_id: Option<i64>,
    detail: serde_json::Value,
) -> Result<(), WebError> {
    let mut event = AuditEvent::new(&actor(principal), action, resource_type).detail(detail);
    if let Some(id) = resource_id {
        event = event.resource_id(id);
    }
    if let Some(patient_id) = patient_id {
        event = event.patient(refill_rules::PatientId(patient_id));
    }
    if let Some(session) = principal.session() {
        event = event.client(None, Some(session.token_sha256[..16].to_string()));
    }
    state.view_audit.record(event).await
}

/// Whether this person may see 42 CFR Part 2 facts of this patient right now: see `part2`, where it is
/// decided (kept for the screens that hold the grant as a flag).
pub async fn may_see_part2(state: &AppState, principal: &Principal, patient_id: i64) -> Result<bool, WebError> {
    Ok(crate::part2::Part2Access::for_patient(state, principal, patient_id).await?.is_open())
}

pub async fn home(Extension(principal): Extension<Principal>) -> Redirect {
    match principal.role() {
        Some(Role::Admin) => Redirect::to("/admin"),
        // A physician's home is their exceptions; the desk's is the queue.
        Some(Role::Physician) => Redirect::to("/exceptions"),
        Some(_) => Redirect::to("/queue"),
        None => Redirect::to("/login"),
    }
}

pub async fn healthz(State(state): State<AppState>) -> Response {
    match refill_store::accounts::latest_screen_change(&state.store).await {
        Ok(_) => (StatusCode::OK, "ok").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response(),
    }
}

pub async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../../static/app.css")).into_response()
}

pub async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../../static/app.js")).into_response()
}

pub async fn not_found() -> WebError {
    WebError::NotFound("page".into())
}

/// Days from `today` to `date`.
pub fn days_until(today: chrono::NaiveDate, date: Option<chrono::NaiveDate>) -> Option<i64> {
    date.map(|d| (d - today).num_days())
}

/// A number from an optional form field: empty is `None`, anything else must parse (the error names the
/// field). Browsers send every field of a form, filled or not, so `Option<u32>` alone would refuse an
/// empty one.
pub(crate) fn form_number<T: std::str::FromStr>(text: Option<&str>, field: &str) -> Result<Option<T>, WebError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(text) => {
            text.parse().map(Some).map_err(|_| WebError::BadRequest(format!("{field}: {text:?} is not a number")))
        }
    }
}

/// A form field the HTML form sends as text and the JSON API may send as a number: kept as text
/// (`form_number` parses it, naming the field).
pub(crate) fn text_or_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Number(serde_json::Number),
    }
    Ok(match <Option<Raw> as serde::Deserialize>::deserialize(deserializer)? {
        None => None,
        Some(Raw::Text(text)) => Some(text),
        Some(Raw::Number(number)) => Some(number.to_string()),
    })
}
