//! "Not enrolled (from EHR imports)": patients an EHR import brought in without an active opioid order
//! (issue 14). They are not the refill clinic's until staff or a physician enrol them, so the daily run
//! does not put them on the queue; this list (paged, by name) lets the desk enrol them, which decides
//! them at once, or dismiss them with a reason. A patient with an active opioid order is never
//! dismissed (`refill_app::enrolment` refuses, in words, and the list says why the button is absent).

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use refill_app::AppError;
use refill_rules::PatientId;
use serde::Deserialize;

use super::queue::{MAX_QUEUE_PAGE, actor_names, app_error, note_change, publish_latest};
use super::{Chrome, actor, audit_view};
use crate::auth::Principal;
use crate::{AppState, WebError};

/// Patients per page of the list.
pub const NOT_ENROLLED_PAGE_SIZE: i64 = 25;

/// A record number as shown: an EHR's UUID is cut to its first 8 characters (enough to tell rows
/// apart at a glance), with the whole value in the title; anything else is shown as it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordNumber {
    pub shown: String,
    /// The whole value when `shown` is cut, for a `title` attribute; empty otherwise.
    pub full: String,
}

impl RecordNumber {
    pub fn of(value: Option<&str>) -> RecordNumber {
        let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
            return RecordNumber { shown: "—".into(), full: String::new() };
        };
        if looks_like_uuid(value) {
            RecordNumber { shown: format!("{}…", &value[..8]), full: value.to_string() }
        } else {
            RecordNumber { shown: value.to_string(), full: String::new() }
        }
    }
}

/// 8-4-4-4-12 hexadecimal digits.
fn looks_like_uuid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// One row of the list.
#[derive(Debug, Clone)]
pub struct Row {
    pub patient_id: i64,
    pub name: String,
    pub record: RecordNumber,
    pub birth_date: String,
    pub since: String,
    pub has_active_order: bool,
    pub version: i64,
}

#[derive(Template)]
#[template(path = "web/not_enrolled.html")]
struct NotEnrolledPage {
    chrome: Chrome,
    rows: Vec<Row>,
    total: i64,
    page: i64,
    has_next: bool,
    /// "26–50": the rows on this page.
    showing: String,
    /// What was just done, or why it was refused (with the dismissal form's reason kept).
    message: Option<String>,
    problem: Option<String>,
    kept_reason: String,
    kept_patient: i64,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    page: Option<i64>,
    /// `enrolled` or `dismissed`: the change just made, said above the list.
    done: Option<String>,
}

/// `GET /patients/not-enrolled`.
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<ListQuery>,
) -> Result<Response, WebError> {
    let page = match query.page {
        None => 0,
        Some(page) if (0..=MAX_QUEUE_PAGE).contains(&page) => page,
        Some(page) => return Err(WebError::BadRequest(format!("page: {page} is not a page number"))),
    };
    let message = match query.done.as_deref() {
        Some("enrolled") => Some("Enrolled: the patient was decided and is on the refill clinic's lists.".to_string()),
        Some("dismissed") => Some("Dismissed from the list, with the reason recorded.".to_string()),
        _ => None,
    };
    render_list(&state, &principal, page, message, None, String::new(), 0, StatusCode::OK).await
}

#[allow(clippy::too_many_arguments)]
async fn render_list(
    state: &AppState,
    principal: &Principal,
    page: i64,
    message: Option<String>,
    problem: Option<String>,
    kept_reason: String,
    kept_patient: i64,
    status: StatusCode,
) -> Result<Response, WebError> {
    let (patients, total) =
        state.store.not_enrolled_page(page * NOT_ENROLLED_PAGE_SIZE, NOT_ENROLLED_PAGE_SIZE + 1).await?;
    let has_next = patients.len() as i64 > NOT_ENROLLED_PAGE_SIZE;
    let rows: Vec<Row> = patients
        .into_iter()
        .take(NOT_ENROLLED_PAGE_SIZE as usize)
        .map(|p| Row {
            patient_id: p.id.0,
            name: format!("{}, {}", p.family_name, p.given_name),
            record: RecordNumber::of(p.mrn.as_deref().or(Some(p.external_id.as_str()))),
            birth_date: p.birth_date.map(|d| d.to_string()).unwrap_or_else(|| "unknown".into()),
            since: p
                .since
                .map(|t| t.with_timezone(&state.settings.time_zone).date_naive().to_string())
                .unwrap_or_default(),
            has_active_order: p.has_active_order,
            version: p.version,
        })
        .collect();
    audit_view(
        state,
        principal,
        "patients.not_enrolled.view",
        "patients",
        None,
        None,
        serde_json::json!({ "page": page, "rows": rows.len() }),
    )
    .await?;
    let first = page * NOT_ENROLLED_PAGE_SIZE + 1;
    let showing = if rows.is_empty() { String::new() } else { format!("{first}–{}", first + rows.len() as i64 - 1) };
    let body = NotEnrolledPage {
        chrome: Chrome::new(state, principal, "/patients/not-enrolled"),
        rows,
        total,
        page,
        has_next,
        showing,
        message,
        problem,
        kept_reason,
        kept_patient,
    };
    Ok((status, axum::response::Html(body.render()?)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct EnrolForm {
    pub version: i64,
    /// `list` (back to the list) or `patient` (back to the patient page).
    #[serde(default)]
    pub back: Option<String>,
    #[serde(default)]
    pub csrf: Option<String>,
}

/// `POST /patients/{id}/enrol`: enrol and decide at once, in one transaction.
pub async fn enrol(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(patient_id): Path<i64>,
    Form(form): Form<EnrolForm>,
) -> Result<Response, WebError> {
    let user = principal.person()?;
    let names = actor_names(&state).await?;
    let mut tx = state.store.begin().await?;
    refill_app::enrolment::enrol(
        &state.app(),
        &mut tx,
        PatientId(patient_id),
        form.version,
        &actor(&principal),
        state.today(),
    )
    .await
    .map_err(|e| app_error(e, &names))?;
    note_change(&state, &mut tx, patient_id, "patient.enrolled", &user.display_name).await?;
    tx.commit().await?;
    publish_latest(&state).await;
    let to = match form.back.as_deref() {
        Some("patient") => format!("/patients/{patient_id}"),
        _ => "/patients/not-enrolled?done=enrolled".to_string(),
    };
    Ok(Redirect::to(&to).into_response())
}

#[derive(Debug, Deserialize)]
pub struct DismissForm {
    pub version: i64,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub page: Option<i64>,
    #[serde(default)]
    pub csrf: Option<String>,
}

/// `POST /patients/{id}/dismiss`: off the list with a reason. A refusal shows the list again with the
/// reason kept and the refusal in words above it.
pub async fn dismiss(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(patient_id): Path<i64>,
    Form(form): Form<DismissForm>,
) -> Result<Response, WebError> {
    let user = principal.person()?;
    crate::input::check_text("reason", &form.reason, refill_app::enrolment::MAX_REASON_CHARS, false)?;
    let names = actor_names(&state).await?;
    let page = form.page.filter(|p| (0..=MAX_QUEUE_PAGE).contains(p)).unwrap_or(0);
    let mut tx = state.store.begin().await?;
    let result = refill_app::enrolment::dismiss(
        &state.app(),
        &mut tx,
        PatientId(patient_id),
        form.version,
        &actor(&principal),
        &form.reason,
    )
    .await;
    match result {
        Ok(_) => {}
        Err(AppError::Refused(message)) => {
            tx.rollback().await?;
            return render_list(
                &state,
                &principal,
                page,
                None,
                Some(format!("Not dismissed: {message}")),
                form.reason.clone(),
                patient_id,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
        Err(other) => return Err(app_error(other, &names)),
    }
    note_change(&state, &mut tx, patient_id, "patient.enrolment_dismissed", &user.display_name).await?;
    tx.commit().await?;
    publish_latest(&state).await;
    Ok(Redirect::to("/patients/not-enrolled?done=dismissed").into_response())
}

#[cfg(test)]
mod tests {
    use super::RecordNumber;

    #[test]
    fn a_uuid_record_number_is_cut_with_the_whole_value_kept() {
        let uuid = RecordNumber::of(Some("0e1b2c3d-4e5f-6789-abcd-ef0123456789"));
        assert_eq!(uuid.shown, "0e1b2c3d…");
        assert_eq!(uuid.full, "0e1b2c3d-4e5f-6789-abcd-ef0123456789");
        let plain = RecordNumber::of(Some("MRN-1001"));
        assert_eq!((plain.shown.as_str(), plain.full.as_str()), ("MRN-1001", ""));
        assert_eq!(RecordNumber::of(None).shown, "—");
        assert_eq!(RecordNumber::of(Some("0e1b2c3d-4e5f-6789-abcd-ef012345678z")).full, "");
    }
}
