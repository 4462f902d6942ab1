//! Sign-in and sign-out, and wall-display enrolment.
//!
//! The sign-in form carries a double-submit token (a random value in a short-lived cookie and in the
//! form) because there is no session yet to hold one. Each attempt is admitted against the budget in
//! the store before anything is checked (per username and address, and per address on existing
//! accounts only, so made-up names lock nobody out); past the budget the answer is 429 whatever the
//! password, and the real user from another address is unaffected. The address is the peer's, or the
//! configured header's when the peer is a configured proxy. Every failure reads the same until both
//! the password and the code are checked. Each outcome is in the audit trail. A successful sign-in
//! ends any earlier session on this browser and starts a new one with a new token (no session
//! fixation).

use std::net::SocketAddr;

use askama::Template;
use axum::Extension;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use refill_store::accounts::{self, Role};
use refill_store::{Actor, AuditEvent};
use serde::Deserialize;

use crate::access::token_matches;
use crate::auth::{self, Principal, random_token, sha256_hex};
use crate::{AppState, WebError};

const LOGIN_CSRF_COOKIE: &str = "refill_login_csrf";

#[derive(Template)]
#[template(path = "web/login.html")]
struct LoginPage {
    clinic_name: String,
    csrf: String,
    message: Option<String>,
    username: String,
}

fn login_cookie(secure: bool, token: &str) -> String {
    let secure_attr = if secure { "; Secure" } else { "" };
    format!("{LOGIN_CSRF_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600{secure_attr}")
}

fn login_page(state: &AppState, status: StatusCode, message: Option<String>, username: String) -> Response {
    let csrf = random_token();
    let page = LoginPage { clinic_name: state.settings.clinic_name.clone(), csrf: csrf.clone(), message, username };
    match page.render() {
        Ok(html) => {
            let mut response = (status, axum::response::Html(html)).into_response();
            if let Ok(value) = HeaderValue::from_str(&login_cookie(state.settings.secure_cookies, &csrf)) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        }
        Err(error) => WebError::from(error).into_response(),
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    reason: Option<String>,
}

pub async fn form(State(state): State<AppState>, Query(query): Query<LoginQuery>) -> Response {
    let message = match query.reason.as_deref() {
        Some("idle") => Some("You were signed out after a period without activity.".to_string()),
        Some("signed_out") => Some("You are signed out.".to_string()),
        _ => None,
    };
    login_page(&state, StatusCode::OK, message, String::new())
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    /// The authenticator code, for users who enrolled a second factor.
    #[serde(default)]
    code: String,
    csrf: String,
}

/// The client address for rate limiting and the audit trail: the peer address, or, when the peer is
/// one of the configured trusted proxies, the address in the configured header (the last entry of a
/// list, which is the one that proxy added). A forwarded header from anyone else is ignored.
pub fn client_address(
    settings: &crate::WebSettings,
    connect: Option<&ConnectInfo<SocketAddr>>,
    headers: &HeaderMap,
) -> String {
    let Some(peer) = connect.map(|c| c.0.ip()) else { return "unknown".into() };
    let forwarded = settings
        .client_address_header
        .as_deref()
        .filter(|_| settings.trusted_proxies.contains(&peer))
        .and_then(|name| headers.get(name))
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse::<std::net::IpAddr>().ok());
    forwarded.unwrap_or(peer).to_string()
}

/// The one answer to every failed sign-in, whichever of username, password or code was wrong.
pub const SIGN_IN_FAILED: &str = "Wrong username, password or code.";

pub async fn submit(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    match sign_in(&state, &principal, connect.as_ref().map(|c| &c.0), &headers, form).await {
        Ok(response) => response,
        Err((status, message, username)) => login_page(&state, status, Some(message), username),
    }
}

type SignInFailure = (StatusCode, String, String);

async fn sign_in(
    state: &AppState,
    principal: &Principal,
    connect: Option<&ConnectInfo<SocketAddr>>,
    headers: &HeaderMap,
    form: LoginForm,
) -> Result<Response, SignInFailure> {
    let username = form.username.trim().to_lowercase();
    let cookie_token = auth::cookie(headers, LOGIN_CSRF_COOKIE).unwrap_or("");
    if !token_matches(cookie_token, &form.csrf) {
        return Err((StatusCode::FORBIDDEN, "The sign-in form expired; please try again.".into(), username));
    }
    let store_failed = |_| (StatusCode::SERVICE_UNAVAILABLE, "The database is unavailable.".to_string(), String::new());
    let ip = client_address(&state.settings, connect, headers);
    let now_ms = state.clock.now_ms();
    let Some(attempt) = admit(state, &username, &ip, now_ms).await.map_err(store_failed)? else {
        tracing::warn!("sign-in rate limit reached");
        return Err((
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts. Wait a minute and try again.".into(),
            username,
        ));
    };
    let user = accounts::find_user_by_username(&state.store, &username).await.map_err(store_failed)?;
    let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
    let verified = auth::verify_password(form.password, stored_hash)
        .await
        .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, "Sign-in failed.".to_string(), username.clone()))?;
    let failure = match &user {
        None => Some("unknown username"),
        Some(_) if !verified => Some("wrong password"),
        Some(user) if user.is_disabled() => Some("account disabled"),
        Some(user) => match second_factor_accepted(state, user, &form.code, now_ms).await.map_err(store_failed)? {
            true => None,
            false => Some("wrong or missing second-factor code"),
        },
    };
    let (actor, user_id) = match &user {
        Some(user) => (Actor::new(auth::actor_id(user.id), user.role.as_str()), Some(user.id)),
        None => (Actor::new("anonymous", "anonymous"), None),
    };
    let action = if failure.is_some() { "auth.sign_in_failed" } else { "auth.sign_in" };
    let mut event = AuditEvent::new(&actor, action, "user").client(Some(ip.clone()), None);
    if let Some(id) = user_id {
        event = event.resource_id(id.to_string());
    }
    if let Some(why) = failure {
        // The typed username of an unknown account is not kept: people type passwords there by mistake.
        event = event.reason(why);
    }
    accounts::finish_login_attempt(&state.store, attempt, failure.is_none(), &event).await.map_err(store_failed)?;
    let Some(user) = user.filter(|_| failure.is_none()) else {
        return Err((StatusCode::UNAUTHORIZED, SIGN_IN_FAILED.into(), username));
    };
    // A new session, a new token: whatever this browser held before ends here.
    if let Some(session) = principal.session() {
        accounts::end_session(&state.store, &session.token_sha256, now_ms, "replaced at sign-in")
            .await
            .map_err(store_failed)?;
    }
    let token = random_token();
    let absolute_ms = i64::try_from(state.settings.absolute_timeout.as_millis()).unwrap_or(i64::MAX / 2);
    accounts::create_person_session(
        &state.store,
        &sha256_hex(&token),
        user.id,
        &random_token(),
        now_ms,
        now_ms + absolute_ms,
    )
    .await
    .map_err(store_failed)?;
    // Each role lands where its day starts: accounts, exceptions, the queue.
    let target = match user.role {
        Role::Admin => "/admin",
        Role::Physician => "/exceptions",
        _ => "/queue",
    };
    let mut response = Redirect::to(target).into_response();
    if let Ok(value) = HeaderValue::from_str(&auth::session_cookie(state.settings.secure_cookies, Some(&token))) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// Admit one attempt for `username` from `ip` against the configured budget (the last minute), or
/// `None` when it is spent.
pub async fn admit(
    state: &AppState,
    username: &str,
    ip: &str,
    now_ms: i64,
) -> Result<Option<i64>, refill_store::StoreError> {
    let budget = accounts::LoginBudget {
        per_account_and_ip: state.settings.login_failures_per_account_per_minute,
        per_ip: state.settings.login_failures_per_ip_per_minute,
    };
    accounts::admit_login_attempt(&state.store, username, ip, now_ms - 60_000, now_ms, budget).await
}

/// Whether `code` satisfies the user's second factor: true without one enrolled, else a current code
/// not used before (each step signs in once). A wrong code costs an attempt like a wrong password, so
/// the six digits cannot be guessed faster than a password.
async fn second_factor_accepted(
    state: &AppState,
    user: &accounts::User,
    code: &str,
    now_ms: i64,
) -> Result<bool, refill_store::StoreError> {
    let Some(stored) = &user.totp_secret else { return Ok(true) };
    let secret = crate::totp::open(&state.store.audit_key, stored);
    if secret.is_none() {
        tracing::warn!(user_id = user.id, "second-factor secret does not open under the configured key; reset it");
    }
    let now_s = now_ms.div_euclid(1000);
    match secret.and_then(|secret| crate::totp::matching_step(&secret, code, now_s)) {
        Some(step) => accounts::use_totp_step(&state.store, user.id, step).await,
        None => Ok(false),
    }
}

pub async fn logout(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, WebError> {
    if let Some(session) = principal.session() {
        accounts::end_session(&state.store, &session.token_sha256, state.clock.now_ms(), "signed out").await?;
    }
    let mut response = Redirect::to("/login?reason=signed_out").into_response();
    if let Ok(value) = HeaderValue::from_str(&auth::session_cookie(state.settings.secure_cookies, None)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[derive(Deserialize)]
pub struct WallQuery {
    code: String,
}

/// `GET /wall/enter?code=...`: a monitor redeems the one-time code an admin issued and gets a wall
/// session (read-only, exempt from the idle sign-out, revocable by an admin).
pub async fn enter_wall(State(state): State<AppState>, Query(query): Query<WallQuery>) -> Result<Response, WebError> {
    let now_ms = state.clock.now_ms();
    let token = random_token();
    let lifetime_ms = i64::try_from(state.settings.wall_session_lifetime.as_millis()).unwrap_or(i64::MAX / 2);
    accounts::redeem_wall_code(
        &state.store,
        &sha256_hex(&query.code),
        &sha256_hex(&token),
        &random_token(),
        now_ms,
        now_ms + lifetime_ms,
    )
    .await
    .map_err(|_| WebError::NotFound("wall display code (unknown, used or expired)".into()))?;
    let mut response = Redirect::to("/queue?display=wall").into_response();
    if let Ok(value) = HeaderValue::from_str(&auth::session_cookie(state.settings.secure_cookies, Some(&token))) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}
