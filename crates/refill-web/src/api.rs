//! The JSON API under `/api`: everything the screens do, with the same access table (the middleware in
//! `access` applies to both) and the same audit of every view. State-changing calls send the session's
//! CSRF token in `x-csrf-token` (from `GET /api/session`).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use refill_store::accounts;
use refill_store::screens::{self, QueueFilter};
use serde::Deserialize;

use crate::auth::Principal;
use crate::pages::exceptions::{self, DecideForm};
use crate::pages::patient::load_patient_view;
use crate::pages::queue::{self, ActionForm, QueueParams};
use crate::pages::{audit_view, dashboard};
use crate::part2::Part2Access;
use crate::{AppState, WebError};

pub async fn session(Extension(principal): Extension<Principal>) -> Result<Json<serde_json::Value>, WebError> {
    let user = principal.person()?;
    let session = principal.session().ok_or(WebError::Unauthenticated)?;
    Ok(Json(serde_json::json!({
        "user": { "id": user.id, "username": user.username, "display_name": user.display_name, "role": user.role.as_str() },
        "csrf_token": session.csrf_token,
        "expires_at_ms": session.expires_at_ms,
    })))
}

pub async fn queue(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<QueueParams>,
) -> Result<Response, WebError> {
    let filter = params.filter.as_deref().and_then(QueueFilter::parse).unwrap_or_default();
    let page = params.page_number()?;
    let (rows, tallies) = queue::load_rows(&state, filter, page, state.settings.queue_page_size).await?;
    audit_view(
        &state,
        &principal,
        "queue.view",
        "daily_queue",
        None,
        None,
        serde_json::json!({ "api": true, "filter": filter.as_str(), "page": page, "rows": rows.len() }),
    )
    .await?;
    Ok(Json(serde_json::json!({ "clinic_date": state.today(), "filter": filter.as_str(), "page": page, "tallies": tallies, "rows": rows.as_slice() })).into_response())
}

pub async fn queue_item(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(patient_id): Path<i64>,
) -> Result<Response, WebError> {
    let today = state.today();
    let row = screens::queue_row(&state.store, today, patient_id)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("patient {patient_id} in today's queue")))?;
    let regimens = screens::regimens(&state.store, &[patient_id]).await?;
    let names = queue::actor_names(&state).await?;
    let view = queue::row_view(&row, today, &regimens, &names, &[]);
    audit_view(
        &state,
        &principal,
        "queue.item.view",
        "patient",
        Some(patient_id.to_string()),
        Some(patient_id),
        serde_json::json!({ "api": true }),
    )
    .await?;
    Ok(Json(view).into_response())
}

pub async fn queue_action(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(patient_id): Path<i64>,
    Json(form): Json<ActionForm>,
) -> Result<Response, WebError> {
    crate::input::check_action(&form)?;
    let result = queue::perform(&state, &principal, patient_id, &form).await?;
    Ok(Json(result).into_response())
}

pub async fn exceptions(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, WebError> {
    let items = exceptions::load_list(&state).await?;
    audit_view(
        &state,
        &principal,
        "exceptions.view",
        "exceptions",
        None,
        None,
        serde_json::json!({ "api": true, "rows": items.len() }),
    )
    .await?;
    Ok(Json(items).into_response())
}

pub async fn exception(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(exception_id): Path<i64>,
) -> Result<Response, WebError> {
    let today = state.today();
    let row = screens::exception(&state.store, today, exception_id).await?;
    let access = Part2Access::for_patient(&state, &principal, row.patient_id).await?;
    let names = queue::actor_names(&state).await?;
    let view = exceptions::exception_view(&row, today, &names, access);
    let patient = load_patient_view(&state, row.patient_id, access, &names).await?;
    audit_view(
        &state,
        &principal,
        "exception.view",
        "exception",
        Some(exception_id.to_string()),
        Some(row.patient_id),
        serde_json::json!({ "api": true }),
    )
    .await?;
    Ok(Json(serde_json::json!({ "exception": view, "patient": patient, "decisions": exceptions::DECISIONS }))
        .into_response())
}

pub async fn decide(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(exception_id): Path<i64>,
    Json(form): Json<DecideForm>,
) -> Result<Response, WebError> {
    crate::input::check_decision(&form)?;
    let message = exceptions::sign(&state, &principal, exception_id, &form).await?;
    Ok(Json(serde_json::json!({ "message": message })).into_response())
}

pub async fn patient(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(patient_id): Path<i64>,
) -> Result<Response, WebError> {
    let access = Part2Access::for_patient(&state, &principal, patient_id).await?;
    let part2 = access.is_open();
    let names = queue::actor_names(&state).await?;
    let view = load_patient_view(&state, patient_id, access, &names).await?;
    audit_view(
        &state,
        &principal,
        "patient.view",
        "patient",
        Some(patient_id.to_string()),
        Some(patient_id),
        serde_json::json!({ "api": true, "part2_open": part2 }),
    )
    .await?;
    Ok(Json(view).into_response())
}

#[derive(Debug, Deserialize)]
pub struct BreakGlassRequest {
    pub reason: String,
}

pub async fn break_glass(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(patient_id): Path<i64>,
    Json(request): Json<BreakGlassRequest>,
) -> Result<Response, WebError> {
    let expires_at_ms = crate::pages::patient::grant(&state, &principal, patient_id, &request.reason).await?;
    Ok(Json(serde_json::json!({ "patient_id": patient_id, "expires_at_ms": expires_at_ms })).into_response())
}

pub async fn dashboard(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, WebError> {
    let view = dashboard::load(&state).await?;
    audit_view(&state, &principal, "dashboard.view", "dashboard", None, None, serde_json::json!({ "api": true }))
        .await?;
    Ok(Json(view).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ChangesQuery {
    #[serde(default)]
    pub after: i64,
}

/// `GET /api/changes?after=N`: changes after N (a polling alternative to `/events`; not activity). A wall
/// display reads what changed, never who changed it: the actor is a staff member's display name.
pub async fn changes(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<ChangesQuery>,
) -> Result<Response, WebError> {
    let mut changes = accounts::screen_changes_after(&state.store, query.after, 500).await?;
    if principal.user().is_none() {
        changes.iter_mut().for_each(|change| change.actor = None);
    }
    let latest = accounts::latest_screen_change(&state.store).await?;
    Ok(Json(serde_json::json!({ "latest": latest, "changes": changes })).into_response())
}
