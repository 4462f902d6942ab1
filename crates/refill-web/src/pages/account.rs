//! A person's own sign-in security: everyone may enrol a TOTP second factor (an authenticator app) and
//! remove it with a current code; an admin can reset it for someone who lost their phone, which ends
//! that person's sessions. Enrolling asks for the password again (a session left open, or stolen,
//! cannot enrol a factor of its own), and the secret is the server's: derived from the session under
//! the clinic's key, never taken from the form. Every change is audited; the secret is shown at
//! enrolment only and never logged.

use askama::Template;
use axum::Extension;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{Chrome, actor, render};
use crate::auth::Principal;
use crate::{AppState, WebError, totp};

#[derive(Template)]
#[template(path = "web/second_factor.html")]
struct SecondFactorPage {
    chrome: Chrome,
    enrolled: bool,
    /// The clinic requires a second factor of this person (and they cannot remove theirs).
    required: bool,
    /// The secret offered (when not enrolled), in groups of four for typing.
    secret_grouped: String,
    provisioning_uri: String,
    /// The provisioning URI as an inline SVG QR code, for scanning with the phone's app.
    qr_svg: String,
    message: Option<String>,
    problem: Option<String>,
}

async fn second_factor_page(
    state: &AppState,
    principal: &Principal,
    message: Option<String>,
    problem: Option<String>,
) -> Result<Response, WebError> {
    let user = principal.person()?;
    let enrolled = user.totp_secret.is_some();
    let secret = if enrolled { String::new() } else { offered_secret(state, principal)? };
    let secret_grouped =
        secret.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ");
    let provisioning_uri = if enrolled {
        String::new()
    } else {
        totp::provisioning_uri(&secret, &state.settings.clinic_name, &user.username)
    };
    let qr_svg = if enrolled { String::new() } else { qr_svg(&provisioning_uri) };
    render(&SecondFactorPage {
        chrome: Chrome::new(state, principal, "/account/second-factor"),
        enrolled,
        required: state.settings.require_second_factor,
        secret_grouped,
        provisioning_uri,
        qr_svg,
        message,
        problem,
    })
}

/// The secret this session is offered to enrol (see `totp::enrolment_secret`).
fn offered_secret(state: &AppState, principal: &Principal) -> Result<String, WebError> {
    let session = principal.session().ok_or(WebError::Unauthenticated)?;
    Ok(totp::enrolment_secret(&state.store.audit_key, &session.token_sha256))
}

/// `text` as an inline SVG QR code (medium error correction, with its quiet zone); empty when it does
/// not fit a QR code, and the page then offers the typed setup key alone.
fn qr_svg(text: &str) -> String {
    let Ok(code) = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M) else {
        return String::new();
    };
    let svg = code.render::<qrcode::render::svg::Color>().min_dimensions(220, 220).build();
    // Inline in HTML: drop the XML declaration, and name the image for screen readers.
    svg.find("<svg")
        .map(|start| svg[start..].replacen("<svg", r#"<svg role="img" aria-label="Setup QR code" id="totp-qr""#, 1))
        .unwrap_or_default()
}

/// `GET /account/second-factor`.
pub async fn page(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, WebError> {
    second_factor_page(&state, &principal, None, None).await
}

#[derive(Debug, Deserialize)]
pub struct EnrolForm {
    /// The person's password, asked again before a factor is enrolled.
    #[serde(default)]
    pub password: String,
    pub code: String,
    #[serde(default)]
    pub csrf: Option<String>,
}

/// `POST /account/second-factor`: enrol the offered secret once the person has given their password
/// again and proved their app has the secret. A wrong password costs a sign-in attempt.
pub async fn enrol(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<EnrolForm>,
) -> Result<Response, WebError> {
    let user = principal.person()?;
    if user.totp_secret.is_some() {
        return second_factor_page(&state, &principal, None, Some("A second factor is already enrolled.".into())).await;
    }
    let now_ms = state.clock.now_ms();
    let ip = super::login::client_address(&state.settings, connect.as_ref().map(|c| &c.0), &headers);
    let Some(attempt) = super::login::admit(&state, &user.username, &ip, now_ms).await? else {
        return Err(WebError::TooManyRequests);
    };
    let verified = crate::auth::verify_password(form.password, Some(user.password_hash.clone())).await?;
    let mut event = refill_store::AuditEvent::new(&actor(&principal), "auth.reauthenticate", "user")
        .resource_id(user.id.to_string())
        .client(Some(ip), None);
    if !verified {
        event = event.reason("wrong password");
    }
    refill_store::accounts::finish_login_attempt(&state.store, attempt, verified, &event).await?;
    if !verified {
        let problem = "That password is wrong. Enter the password you sign in with.";
        return second_factor_page(&state, &principal, None, Some(problem.into())).await;
    }
    let secret = offered_secret(&state, &principal)?;
    let Some(step) = totp::matching_step(&secret, &form.code, now_ms.div_euclid(1000)) else {
        let problem = "That code does not match. Check the app shows this clinic's entry and try the current code.";
        return second_factor_page(&state, &principal, None, Some(problem.into())).await;
    };
    let store = &state.store;
    let sealed = totp::seal(&store.audit_key, &secret);
    let by = actor(&principal);
    refill_store::accounts::set_totp_secret(store, user.id, Some(&sealed), &by, "enrolled by the user", now_ms).await?;
    // The code just used cannot be used again to sign in.
    refill_store::accounts::use_totp_step(store, user.id, step).await?;
    tracing::info!(user_id = user.id, "second factor enrolled");
    Ok(Redirect::to("/account/second-factor").into_response())
}

#[derive(Debug, Deserialize)]
pub struct RemoveForm {
    pub code: String,
    #[serde(default)]
    pub csrf: Option<String>,
}

/// `POST /account/second-factor/remove`: remove one's own second factor with a current code.
pub async fn remove(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Form(form): Form<RemoveForm>,
) -> Result<Response, WebError> {
    let user = principal.person()?;
    let Some(stored) = user.totp_secret.as_deref() else {
        return Ok(Redirect::to("/account/second-factor").into_response());
    };
    if state.settings.require_second_factor {
        let problem = "This clinic requires a second factor. To move it to a new phone, ask an admin to reset it.";
        return second_factor_page(&state, &principal, None, Some(problem.into())).await;
    }
    // A secret that does not open (sealed under another key) cannot prove anything: an admin resets it.
    let secret = totp::open(&state.store.audit_key, stored).unwrap_or_default();
    let now_s = state.clock.now_ms().div_euclid(1000);
    let accepted = match totp::matching_step(&secret, &form.code, now_s) {
        Some(step) => refill_store::accounts::use_totp_step(&state.store, user.id, step).await?,
        None => false,
    };
    if !accepted {
        return second_factor_page(&state, &principal, None, Some("That code does not match.".into())).await;
    }
    let now_ms = state.clock.now_ms();
    refill_store::accounts::set_totp_secret(
        &state.store,
        user.id,
        None,
        &actor(&principal),
        "removed by the user",
        now_ms,
    )
    .await?;
    tracing::info!(user_id = user.id, "second factor removed");
    second_factor_page(&state, &principal, Some("The second factor is removed.".into()), None).await
}

#[derive(Debug, Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    pub csrf: Option<String>,
}

/// `POST /admin/users/{user_id}/second-factor/reset`: an admin clears someone's second factor (a lost
/// or replaced phone) and ends their sessions; they enrol again after their next sign-in.
pub async fn admin_reset(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(user_id): Path<i64>,
    Form(_form): Form<ResetForm>,
) -> Result<Response, WebError> {
    let now_ms = state.clock.now_ms();
    refill_store::accounts::set_totp_secret(
        &state.store,
        user_id,
        None,
        &actor(&principal),
        "reset by an admin",
        now_ms,
    )
    .await
    .map_err(|error| match error {
        refill_store::StoreError::NotFound(what) => WebError::NotFound(what),
        other => WebError::Store(other),
    })?;
    tracing::info!(user_id, "second factor reset by an admin");
    Ok(Redirect::to("/admin").into_response())
}
