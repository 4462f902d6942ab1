//! Accounts and wall displays (admins only): list and create users, issue a one-time enrolment code for
//! a wall display, list and revoke wall sessions.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use refill_store::accounts::{self, NewUser, Role};
use serde::Deserialize;

use super::{Chrome, actor, render};
use crate::auth::{self, Principal, random_token, sha256_hex};
use crate::{AppState, WebError};

#[derive(Template)]
#[template(path = "web/admin.html")]
struct AdminPage {
    chrome: Chrome,
    /// (id, username, name, role, disabled, second factor enrolled)
    users: Vec<(i64, String, String, String, bool, bool)>,
    walls: Vec<(String, String, String, bool)>,
    wall_url: Option<String>,
    problem: Option<String>,
}

async fn admin_page(
    state: &AppState,
    principal: &Principal,
    wall_url: Option<String>,
    problem: Option<String>,
) -> Result<Response, WebError> {
    let users = accounts::list_users(&state.store)
        .await?
        .into_iter()
        .map(|u| {
            let enrolled = u.totp_secret.is_some();
            (u.id, u.username, u.display_name, u.role.as_str().to_string(), u.disabled_at_ms.is_some(), enrolled)
        })
        .collect();
    let now_ms = state.clock.now_ms();
    let walls = accounts::list_wall_sessions(&state.store)
        .await?
        .into_iter()
        .map(|w| {
            let at = chrono::DateTime::from_timestamp_millis(w.created_at_ms)
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default();
            (w.handle, w.label.unwrap_or_default(), at, w.ended_at_ms.is_none() && w.expires_at_ms > now_ms)
        })
        .collect();
    render(&AdminPage { chrome: Chrome::new(state, principal, "/admin"), users, walls, wall_url, problem })
}

pub async fn page(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, WebError> {
    admin_page(&state, &principal, None, None).await
}

#[derive(Debug, Deserialize)]
pub struct NewUserForm {
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub password: String,
    #[serde(default)]
    pub csrf: Option<String>,
}

/// Create an account (shared by the admin page, the CLI and the demo), audited as created by `by`.
pub async fn create_account(
    state: &AppState,
    username: &str,
    display_name: &str,
    role: Role,
    password: &str,
    by: &refill_store::Actor,
) -> Result<accounts::User, WebError> {
    let username = username.trim().to_lowercase();
    if username.is_empty() || !username.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        return Err(WebError::BadRequest("username: letters, digits, dot, dash and underscore only".into()));
    }
    if let Some(problem) = auth::password_problem(password, &[&username, display_name, &state.settings.clinic_name]) {
        return Err(WebError::BadRequest(format!("password: {problem}")));
    }
    let hash = auth::hash_password(password.to_string()).await?;
    let user = accounts::create_user(
        &state.store,
        &NewUser { username, display_name: display_name.trim().to_string(), role, password_hash: hash },
        state.clock.now_ms(),
        by,
    )
    .await
    .map_err(|e| match e {
        refill_store::StoreError::Duplicate(_) => WebError::BadRequest("that username is taken".into()),
        other => WebError::Store(other),
    })?;
    Ok(user)
}

pub async fn create_user(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Form(form): Form<NewUserForm>,
) -> Result<Response, WebError> {
    let Some(role) = Role::parse(&form.role) else {
        return admin_page(&state, &principal, None, Some("role: staff, physician or admin".into())).await;
    };
    match create_account(&state, &form.username, &form.display_name, role, &form.password, &actor(&principal)).await {
        Ok(_) => Ok(Redirect::to("/admin").into_response()),
        Err(WebError::BadRequest(problem)) => admin_page(&state, &principal, None, Some(problem)).await,
        Err(other) => Err(other),
    }
}

#[derive(Debug, Deserialize)]
pub struct WallForm {
    pub label: String,
    #[serde(default)]
    pub csrf: Option<String>,
}

/// Issue a one-time wall enrolment code (valid for a day), audited as issued by `by`; returns the code.
pub async fn issue_code(
    state: &AppState,
    label: &str,
    issued_by: Option<i64>,
    by: &refill_store::Actor,
) -> Result<String, WebError> {
    let code = random_token();
    let now_ms = state.clock.now_ms();
    accounts::issue_wall_code(
        &state.store,
        &sha256_hex(&code),
        label.trim(),
        issued_by,
        now_ms,
        now_ms + 24 * 3_600_000,
        by,
    )
    .await?;
    Ok(code)
}

pub async fn issue_wall_code(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Form(form): Form<WallForm>,
) -> Result<Response, WebError> {
    let label = if form.label.trim().is_empty() { "wall display" } else { form.label.as_str() };
    let code = issue_code(&state, label, principal.user().map(|u| u.id), &actor(&principal)).await?;
    admin_page(&state, &principal, Some(format!("/wall/enter?code={code}")), None).await
}

pub async fn revoke_wall_session(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(handle): Path<String>,
) -> Result<Response, WebError> {
    accounts::revoke_wall_session(&state.store, &handle, state.clock.now_ms(), &actor(&principal)).await?;
    Ok(Redirect::to("/admin").into_response())
}
