//! Who may call what: every route with the roles allowed on it, enforced by one middleware, and the
//! CSRF check for every state-changing request.
//!
//! When the clinic requires a second factor, a physician or admin who has not enrolled one reaches
//! only the enrolment page and sign-out until they do.
//!
//! Deny by default: a route missing from `ROUTES` answers 403 to everyone (the router test fails first,
//! because it walks `ROUTES` against the router). Minimum necessary: staff work the queue and see
//! patient pages; physicians also review exceptions and may break the glass on Part 2 records; admins
//! manage accounts and wall displays and see the clinic-level dashboard, not patient records.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use refill_store::accounts::Role;
use subtle::ConstantTimeEq;

use crate::auth::Principal;
use crate::{AppState, WebError};

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not (sign-in page, static assets, health check).
    Public,
    /// Signed-in people with one of these roles.
    Roles(&'static [Role]),
    /// Those roles, or a wall display's read-only session.
    RolesOrWall(&'static [Role]),
    /// An EHR's CDS Hooks call: no session, no cookie, no CSRF token; the `cds` module checks the EHR's
    /// bearer JWT itself (when the clinic requires it) and answers 401 without one.
    Ehr,
}

/// One route of the router, as the access table and the router test see it.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

const STAFF_AND_PHYSICIANS: &[Role] = &[Role::Staff, Role::Physician];
const PHYSICIANS: &[Role] = &[Role::Physician];
const ADMINS: &[Role] = &[Role::Admin];
const ALL_ROLES: &[Role] = &[Role::Staff, Role::Physician, Role::Admin];
const PHYSICIANS_AND_ADMINS: &[Role] = &[Role::Physician, Role::Admin];

const fn route(method: &'static str, path: &'static str, access: Access) -> RouteSpec {
    RouteSpec { method, path, access }
}

/// Every route of `crate::app`, with who may call it.
pub const ROUTES: &[RouteSpec] = &[
    route("GET", "/", Access::Public),
    route("GET", "/healthz", Access::Public),
    route("GET", "/readyz", Access::Public),
    // Counts only, and the handler answers loopback and the configured proxies alone.
    route("GET", "/metrics", Access::Public),
    route("GET", "/static/app.css", Access::Public),
    route("GET", "/static/app.js", Access::Public),
    route("GET", "/login", Access::Public),
    route("POST", "/login", Access::Public),
    route("POST", "/logout", Access::Roles(ALL_ROLES)),
    route("GET", "/wall/enter", Access::Public),
    route("GET", "/queue", Access::RolesOrWall(STAFF_AND_PHYSICIANS)),
    route("GET", "/queue/{patient_id}/panel", Access::Roles(STAFF_AND_PHYSICIANS)),
    route("POST", "/queue/{patient_id}/action", Access::Roles(STAFF_AND_PHYSICIANS)),
    route("POST", "/queue/close", Access::Roles(STAFF_AND_PHYSICIANS)),
    route("GET", "/exceptions", Access::Roles(PHYSICIANS)),
    route("GET", "/exceptions/{exception_id}", Access::Roles(PHYSICIANS)),
    route("POST", "/exceptions/{exception_id}/decide", Access::Roles(PHYSICIANS)),
    route("POST", "/exceptions/{exception_id}/taper/preview", Access::Roles(PHYSICIANS)),
    route("POST", "/exceptions/{exception_id}/taper/sign", Access::Roles(PHYSICIANS)),
    route("GET", "/patients", Access::Roles(STAFF_AND_PHYSICIANS)),
    route("GET", "/patients/{patient_id}", Access::Roles(STAFF_AND_PHYSICIANS)),
    route("GET", "/patients/not-enrolled", Access::Roles(STAFF_AND_PHYSICIANS)),
    route("POST", "/patients/{patient_id}/enrol", Access::Roles(STAFF_AND_PHYSICIANS)),
    route("POST", "/patients/{patient_id}/dismiss", Access::Roles(STAFF_AND_PHYSICIANS)),
    route("POST", "/patients/{patient_id}/break-glass", Access::Roles(PHYSICIANS)),
    route("POST", "/patients/{patient_id}/taper/check-in", Access::Roles(STAFF_AND_PHYSICIANS)),
    route("POST", "/patients/{patient_id}/taper/care", Access::Roles(STAFF_AND_PHYSICIANS)),
    route("GET", "/dashboard", Access::Roles(PHYSICIANS_AND_ADMINS)),
    route("GET", "/admin", Access::Roles(ADMINS)),
    route("POST", "/admin/users", Access::Roles(ADMINS)),
    route("POST", "/admin/wall-codes", Access::Roles(ADMINS)),
    route("POST", "/admin/wall-sessions/{handle}/revoke", Access::Roles(ADMINS)),
    route("POST", "/admin/users/{user_id}/second-factor/reset", Access::Roles(ADMINS)),
    route("POST", "/admin/users/{user_id}", Access::Roles(ADMINS)),
    route("GET", "/account/second-factor", Access::Roles(ALL_ROLES)),
    route("POST", "/account/second-factor", Access::Roles(ALL_ROLES)),
    route("POST", "/account/second-factor/remove", Access::Roles(ALL_ROLES)),
    route("GET", "/events", Access::RolesOrWall(STAFF_AND_PHYSICIANS)),
    route("GET", "/api/session", Access::Roles(ALL_ROLES)),
    route("GET", "/api/queue", Access::Roles(STAFF_AND_PHYSICIANS)),
    route("GET", "/api/queue/{patient_id}", Access::Roles(STAFF_AND_PHYSICIANS)),
    route("POST", "/api/queue/{patient_id}/action", Access::Roles(STAFF_AND_PHYSICIANS)),
    route("GET", "/api/exceptions", Access::Roles(PHYSICIANS)),
    route("GET", "/api/exceptions/{exception_id}", Access::Roles(PHYSICIANS)),
    route("POST", "/api/exceptions/{exception_id}/decide", Access::Roles(PHYSICIANS)),
    route("GET", "/api/patients/{patient_id}", Access::Roles(STAFF_AND_PHYSICIANS)),
    route("POST", "/api/patients/{patient_id}/break-glass", Access::Roles(PHYSICIANS)),
    route("GET", "/api/patients/{patient_id}/taper", Access::Roles(STAFF_AND_PHYSICIANS)),
    route("POST", "/api/patients/{patient_id}/taper/check-ins", Access::Roles(STAFF_AND_PHYSICIANS)),
    route("POST", "/api/patients/{patient_id}/taper/care", Access::Roles(STAFF_AND_PHYSICIANS)),
    route("GET", "/api/dashboard", Access::Roles(PHYSICIANS_AND_ADMINS)),
    route("GET", "/api/changes", Access::RolesOrWall(STAFF_AND_PHYSICIANS)),
    route("GET", "/cds-services", Access::Ehr),
    route("POST", "/cds-services/{service_id}", Access::Ehr),
    route("POST", "/cds-services/{service_id}/feedback", Access::Ehr),
];

/// The access rule of a matched route (`None`: not in the table, so nobody may use it).
pub fn access_for(method: &Method, matched_path: &str) -> Option<Access> {
    ROUTES.iter().find(|spec| spec.method == method.as_str() && spec.path == matched_path).map(|spec| spec.access)
}

/// Whether `principal` may use a route with rule `access`. The wall display may read only the wall
/// form of the queue and the live-update stream.
pub fn allows(access: Access, principal: &Principal, path: &str, query: Option<&str>) -> bool {
    match (access, principal) {
        (Access::Public | Access::Ehr, _) => true,
        (Access::Roles(roles) | Access::RolesOrWall(roles), Principal::Person { user, .. }) => {
            roles.contains(&user.role)
        }
        (Access::RolesOrWall(_), Principal::Wall { .. }) => {
            path != "/queue" || query.is_some_and(|q| q.split('&').any(|pair| pair == "display=wall"))
        }
        _ => false,
    }
}

/// The routes a physician or admin without a required second factor may still use: enrolment and
/// sign-out (public routes are open to everyone anyway).
const BEFORE_ENROLMENT: &[(&str, &str)] =
    &[("GET", "/account/second-factor"), ("POST", "/account/second-factor"), ("POST", "/logout")];

/// Whether `principal` is a physician or admin who must enrol a second factor before anything else.
pub fn must_enrol_second_factor(state: &AppState, principal: &Principal) -> bool {
    state.settings.require_second_factor
        && principal
            .user()
            .is_some_and(|user| matches!(user.role, Role::Physician | Role::Admin) && user.totp_secret.is_none())
}

/// A 403 for a signed-in person or wall display, with an `access.refused` audit event naming the route
/// (HIPAA §164.312(b): failed access is audited). Anonymous requests are answered 401 without an event:
/// anyone on the network can send them, and the sign-in attempts are audited where they happen.
async fn refuse(state: &AppState, principal: &Principal, method: &Method, route: &str) -> Response {
    let event = refill_store::AuditEvent::new(&crate::pages::actor(principal), "access.refused", "route")
        .resource_id(format!("{method} {route}"));
    let event = match principal.session() {
        Some(session) => event.client(None, Some(session.token_sha256.chars().take(16).collect())),
        None => event,
    };
    if let Err(error) = state.view_audit.record(event).await {
        return error.into_response();
    }
    WebError::Forbidden.into_response()
}

/// Middleware: apply the access table, the second-factor requirement and the CSRF check.
pub async fn enforce(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let principal = request.extensions().get::<Principal>().cloned().unwrap_or(Principal::Anonymous);
    let path = request.uri().path().to_string();
    let Some(matched) = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()) else {
        // No route matched: the fallback answers 404 (and reveals nothing about what exists).
        return next.run(request).await;
    };
    let Some(access) = access_for(request.method(), &matched) else {
        return refuse(&state, &principal, request.method(), &matched).await;
    };
    if !allows(access, &principal, &path, request.uri().query()) {
        return match principal {
            Principal::Anonymous if wants_html(request.headers()) && request.method() == Method::GET => {
                Redirect::to("/login").into_response()
            }
            Principal::Anonymous => WebError::Unauthenticated.into_response(),
            _ => refuse(&state, &principal, request.method(), &matched).await,
        };
    }
    if access == Access::Ehr {
        // Machine to machine: the bearer JWT is the credential (checked by the handler), and an EHR is
        // on another origin by nature, so neither the session's CSRF token nor same-origin applies.
        return next.run(request).await;
    }
    if access != Access::Public
        && must_enrol_second_factor(&state, &principal)
        && !BEFORE_ENROLMENT.iter().any(|(method, path)| request.method() == *method && matched == *path)
    {
        return if wants_html(request.headers()) && request.method() == Method::GET {
            Redirect::to("/account/second-factor").into_response()
        } else {
            WebError::SecondFactorRequired.into_response()
        };
    }
    if is_state_changing(request.method()) {
        if let Err(error) = check_same_origin(request.headers()) {
            return error.into_response();
        }
        // The sign-in form has no session yet; it carries its own double-submit token (pages::login).
        if access != Access::Public {
            let expected = principal.session().map(|s| s.csrf_token.clone()).unwrap_or_default();
            let (parts, body) = request.into_parts();
            let bytes = match axum::body::to_bytes(body, 256 * 1024).await {
                Ok(bytes) => bytes,
                Err(_) => return WebError::BadRequest("request body too large".into()).into_response(),
            };
            let presented = csrf_from_request(&parts.headers, &bytes);
            if expected.is_empty() || !token_matches(&expected, presented.as_deref().unwrap_or("")) {
                return WebError::Csrf.into_response();
            }
            let request = Request::from_parts(parts, axum::body::Body::from(bytes));
            return next.run(request).await;
        }
    }
    next.run(request).await
}

pub fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Constant-time comparison of CSRF tokens.
pub fn token_matches(expected: &str, presented: &str) -> bool {
    !expected.is_empty() && expected.as_bytes().ct_eq(presented.as_bytes()).into()
}

/// Refuse cross-site state changes: `Sec-Fetch-Site: cross-site` or an `Origin` naming another host.
pub fn check_same_origin(headers: &HeaderMap) -> Result<(), WebError> {
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return Err(WebError::Csrf);
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or(origin);
        if origin == "null" || origin_host != host {
            return Err(WebError::Csrf);
        }
    }
    Ok(())
}

/// The CSRF token of a request: the `x-csrf-token` header (API, scripts) or the `csrf` form field.
fn csrf_from_request(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    if let Some(token) = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()) {
        return Some(token.to_string());
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return None;
    }
    serde_urlencoded_field(body, "csrf")
}

/// One field of an url-encoded form body.
fn serde_urlencoded_field(body: &[u8], name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{}", String::from_utf8_lossy(body)).parse().ok()?,
    )
    .ok()?
    .0;
    pairs.into_iter().find(|(key, _)| key == name).map(|(_, value)| value)
}

pub fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains("text/html"))
}
