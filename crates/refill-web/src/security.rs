//! Security headers on every response (pages, API, static files, errors), `no-store` on everything but
//! static assets, and error responses turned into a small HTML page for browsers.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

/// Scripts and styles come only from this server (no inline script), so the CSP needs no nonce.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub async fn headers(request: Request, next: Next) -> Response {
    let is_static = request.uri().path().starts_with("/static/");
    let is_api = request.uri().path().starts_with("/api/");
    let wants_html = crate::access::wants_html(request.headers());
    let mut response = next.run(request).await;
    if !is_api && wants_html && (response.status().is_client_error() || response.status().is_server_error()) {
        response = html_error(response).await;
    }
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, "content-security-policy", CONTENT_SECURITY_POLICY);
    set(headers, "x-content-type-options", "nosniff");
    // `same-origin`, not `no-referrer`: with `no-referrer` browsers send `Origin: null` on form posts, which
    // the same-origin check must refuse.
    set(headers, "referrer-policy", "same-origin");
    set(headers, "x-frame-options", "DENY");
    set(headers, "permissions-policy", "camera=(), microphone=(), geolocation=(), payment=()");
    set(headers, "cross-origin-opener-policy", "same-origin");
    // Browsers ignore HSTS over plain HTTP, so sending it always is harmless on loopback and right
    // behind a TLS proxy.
    set(headers, "strict-transport-security", "max-age=31536000; includeSubDomains");
    if is_static {
        set(headers, "cache-control", "public, max-age=3600");
    } else {
        set(headers, "cache-control", "no-store");
    }
    response
}

/// Replace a JSON error body with a readable page (same status).
async fn html_error(response: Response) -> Response {
    let status = response.status();
    if response.headers().get(header::LOCATION).is_some() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !is_json && parts.headers.get(header::CONTENT_TYPE).is_some() {
        return Response::from_parts(parts, body);
    }
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("Error").to_string());
    let page = crate::pages::ErrorPage {
        status: status.as_u16(),
        title: status.canonical_reason().unwrap_or("Error").to_string(),
        message,
        sign_in: status == StatusCode::UNAUTHORIZED,
    };
    match askama::Template::render(&page) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, "error").into_response(),
    }
}
