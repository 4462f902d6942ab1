//! A person's own sign-in security: physicians and admins enrol a TOTP second factor (an authenticator
//! app) and can remove it with a current code; an admin can reset it for someone who lost their phone.
//! Every change is audited; the secret is shown once, at enrolment, and never logged.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, State};
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
    /// A new secret to enrol (when not enrolled), in groups of four for typing.
    secret: String,
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
    secret: Option<String>,
    message: Option<String>,
    problem: Option<String>,
) -> Result<Response, WebError> {
    let user = principal.person()?;
    let enrolled = user.totp_secret.is_some();
    let secret = if enrolled { String::new() } else { secret.unwrap_or_else(totp::new_secret) };
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
        secret,
        secret_grouped,
        provisioning_uri,
        qr_svg,
        message,
        problem,
    })
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
    second_factor_page(&state, &principal, None, None, None).await
}

#[derive(Debug, Deserialize)]
pub struct EnrolForm {
    /// The secret the page showed (echoed back so the code can be checked against it).
    #[serde(default)]
    pub secret: String,
    pub code: String,
    #[serde(default)]
    pub csrf: Option<String>,
}

/// `POST /account/second-factor`: enrol the shown secret once the person proves their app has it.
pub async fn enrol(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Form(form): Form<EnrolForm>,
) -> Result<Response, WebError> {
    let user = principal.person()?;
    if user.totp_secret.is_some() {
        return second_factor_page(&state, &principal, None, None, Some("A second factor is already enrolled.".into()))
            .await;
    }
    let now_s = state.clock.now_ms().div_euclid(1000);
    let secret = form.secret.trim().to_string();
    let Some(step) = totp::matching_step(&secret, &form.code, now_s) else {
        let problem = "That code does not match. Check the app shows this clinic's entry and try the current code.";
        return second_factor_page(&state, &principal, Some(secret), None, Some(problem.into())).await;
    };
    let store = &state.store;
    let sealed = totp::seal(&store.audit_key, &secret);
    refill_store::accounts::set_totp_secret(store, user.id, Some(&sealed), &actor(&principal), "enrolled by the user")
        .await?;
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
        return second_factor_page(&state, &principal, None, None, Some(problem.into())).await;
    }
    // A secret that does not open (sealed under another key) cannot prove anything: an admin resets it.
    let secret = totp::open(&state.store.audit_key, stored).unwrap_or_default();
    let now_s = state.clock.now_ms().div_euclid(1000);
    let accepted = match totp::matching_step(&secret, &form.code, now_s) {
        Some(step) => refill_store::accounts::use_totp_step(&state.store, user.id, step).await?,
        None => false,
    };
    if !accepted {
        return second_factor_page(&state, &principal, None, None, Some("That code does not match.".into())).await;
    }
    refill_store::accounts::set_totp_secret(&state.store, user.id, None, &actor(&principal), "removed by the user")
        .await?;
    tracing::info!(user_id = user.id, "second factor removed");
    second_factor_page(&state, &principal, None, Some("The second factor is removed.".into()), None).await
}

#[derive(Debug, Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    pub csrf: Option<String>,
}

/// `POST /admin/users/{user_id}/second-factor/reset`: an admin clears someone's second factor (a lost
/// or replaced phone); they enrol again at their next sign-in.
pub async fn admin_reset(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(user_id): Path<i64>,
    Form(_form): Form<ResetForm>,
) -> Result<Response, WebError> {
    refill_store::accounts::set_totp_secret(&state.store, user_id, None, &actor(&principal), "reset by an admin")
        .await
        .map_err(|error| match error {
            refill_store::StoreError::NotFound(what) => WebError::NotFound(what),
            other => WebError::Store(other),
        })?;
    tracing::info!(user_id, "second factor reset by an admin");
    Ok(Redirect::to("/admin").into_response())
}
