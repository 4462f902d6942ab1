//! Accounts and wall displays (admins only): list and create users; disable or re-enable an account,
//! reset its password or change its role (each ends the person's sessions and is audited); issue a
//! one-time enrolment code for a wall display, list and revoke wall sessions.

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
    /// What the last account change did, in words.
    done: Option<String>,
}

async fn admin_page(
    state: &AppState,
    principal: &Principal,
    wall_url: Option<String>,
    problem: Option<String>,
) -> Result<Response, WebError> {
    admin_page_with(state, principal, wall_url, problem, None).await
}

async fn admin_page_with(
    state: &AppState,
    principal: &Principal,
    wall_url: Option<String>,
    problem: Option<String>,
    done: Option<String>,
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
    render(&AdminPage { chrome: Chrome::new(state, principal, "/admin"), users, walls, wall_url, problem, done })
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

#[derive(Debug, Deserialize)]
pub struct AccountForm {
    /// `disable`, `enable`, `password` or `role`.
    pub change: String,
    /// The new password (`password`).
    #[serde(default)]
    pub password: Option<String>,
    /// The new role (`role`).
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub csrf: Option<String>,
}

/// `POST /admin/users/{user_id}`: disable or re-enable an account, reset its password, or change its
/// role. An admin cannot disable or demote their own account (the clinic would be left without one
/// who can undo it). Every change ends the person's sessions and is audited by the store.
pub async fn change_account(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(user_id): Path<i64>,
    Form(form): Form<AccountForm>,
) -> Result<Response, WebError> {
    let by = actor(&principal);
    let now_ms = state.clock.now_ms();
    let user = accounts::get_user(&state.store, user_id).await?;
    let own = principal.user().is_some_and(|me| me.id == user_id);
    let outcome: Result<String, WebError> = async {
        match form.change.as_str() {
            "disable" if own => Err(WebError::BadRequest("You cannot disable your own account.".into())),
            "disable" => {
                accounts::set_disabled(&state.store, user_id, true, now_ms, &by).await?;
                Ok(format!("{} is disabled and signed out everywhere.", user.display_name))
            }
            "enable" => {
                accounts::set_disabled(&state.store, user_id, false, now_ms, &by).await?;
                Ok(format!("{} can sign in again.", user.display_name))
            }
            "password" => {
                let password = form.password.as_deref().unwrap_or("");
                let context = [user.username.as_str(), user.display_name.as_str(), state.settings.clinic_name.as_str()];
                if let Some(problem) = auth::password_problem(password, &context) {
                    return Err(WebError::BadRequest(format!("password: {problem}")));
                }
                let hash = auth::hash_password(password.to_string()).await?;
                accounts::set_password_hash(&state.store, user_id, &hash, now_ms, &by).await?;
                Ok(format!(
                    "{}'s password is reset and their sessions ended: give them the new one in person.",
                    user.display_name
                ))
            }
            "role" => {
                let role = form
                    .role
                    .as_deref()
                    .and_then(Role::parse)
                    .ok_or_else(|| WebError::BadRequest("role: staff, physician or admin".into()))?;
                if own && role != Role::Admin {
                    return Err(WebError::BadRequest("You cannot change your own role.".into()));
                }
                accounts::set_role(&state.store, user_id, role, now_ms, &by).await?;
                Ok(format!(
                    "{} is now {} (signed out: the new role applies at the next sign-in).",
                    user.display_name,
                    role.as_str()
                ))
            }
            other => Err(WebError::BadRequest(format!("change: {other:?} is not disable, enable, password or role"))),
        }
    }
    .await;
    match outcome {
        Ok(done) => admin_page_with(&state, &principal, None, None, Some(done)).await,
        Err(WebError::BadRequest(problem)) => admin_page(&state, &principal, None, Some(problem)).await,
        Err(other) => Err(other),
    }
}
