//! The patient page: header, regimen with MME, open exceptions, the timeline, the MME chart with taper
//! steps past and planned, and messages with their delivery. 42 CFR Part 2 facts are hidden unless the
//! physician breaks the glass with a reason (time-boxed, audited).

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use refill_store::accounts;
use refill_store::screens;
use serde::Deserialize;

use super::queue::regimen_text;
use super::{Chrome, actor, audit_view, may_see_part2, render};
use crate::auth::Principal;
use crate::{AppState, WebError, chart, wording};

#[derive(Debug, Clone, serde::Serialize)]
pub struct TimelineLine {
    pub date: String,
    pub kind: &'static str,
    pub text: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PatientView {
    pub id: i64,
    pub name: String,
    pub birth_date: String,
    pub mrn: String,
    pub risk_tier: String,
    pub part2: bool,
    pub part2_open: bool,
    pub regimen: String,
    pub mme: String,
    pub timeline: Vec<TimelineLine>,
    pub chart_svg: String,
    pub taper_steps: Vec<(String, String, String)>,
    pub messages: Vec<(String, String, String, String)>,
}

fn timeline_line(entry: &screens::TimelineEntry, part2_open: bool) -> TimelineLine {
    let (kind, text) = match entry.kind.as_str() {
        "fill" => ("Fill", format!("{} days of supply", entry.summary)),
        "uds" => ("UDS", format!("{} — {}", entry.summary, analytes_words(entry.detail.as_deref()))),
        "pdmp" => ("PDMP", format!("reviewed; findings {}", findings_words(entry.detail.as_deref()))),
        "agreement" => ("Agreement", format!("signed (text {})", entry.summary)),
        "naloxone" => ("Naloxone", entry.summary.clone()),
        "review" => ("Physician review", entry.summary.replace('_', " ")),
        _ => {
            let (word, _) = wording::status(Some(&entry.summary));
            let reasons: Vec<String> =
                wording::reasons(entry.detail.as_deref(), part2_open).into_iter().map(|r| r.text).collect();
            ("Decision", if reasons.is_empty() { word.to_string() } else { format!("{word}: {}", reasons.join("; ")) })
        }
    };
    let text = if entry.restricted && !part2_open { wording::RESTRICTED.to_string() } else { text };
    TimelineLine { date: entry.on_date.to_string(), kind, text }
}

fn analytes_words(detail: Option<&str>) -> String {
    let Some(list) = detail.and_then(|d| serde_json::from_str::<Vec<serde_json::Value>>(d).ok()) else {
        return String::new();
    };
    list.iter()
        .map(|a| {
            let name = a.get("analyte").and_then(|v| v.as_str()).unwrap_or("?");
            let detected = a.get("detected").and_then(|v| v.as_bool()).unwrap_or(false);
            format!("{name} {}", if detected { "detected" } else { "not detected" })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn findings_words(detail: Option<&str>) -> String {
    match detail.and_then(|d| serde_json::from_str::<Vec<serde_json::Value>>(d).ok()) {
        Some(list) if list.is_empty() => "none".into(),
        Some(list) => format!("{} prescription(s) from other prescribers", list.len()),
        None => "none".into(),
    }
}

pub async fn load_patient_view(state: &AppState, patient_id: i64, part2_open: bool) -> Result<PatientView, WebError> {
    let today = state.today();
    let header = screens::patient_header(&state.store, patient_id).await?;
    let regimen = screens::regimens(&state.store, &[patient_id]).await?;
    let timeline = screens::patient_timeline(&state.store, patient_id, 200).await?;
    let decided = screens::decided_mme(&state.store, patient_id).await?;
    let steps = screens::taper_steps(&state.store, patient_id).await?;
    let messages = screens::patient_messages(&state.store, patient_id).await?;
    let past: Vec<(chrono::NaiveDate, f64)> =
        decided.iter().filter_map(|p| p.total_daily_mme.map(|m| (p.on_date, m))).collect();
    let planned: Vec<(chrono::NaiveDate, f64)> = steps
        .iter()
        .filter(|s| s.starts_on > today && s.state != "cancelled")
        .filter_map(|s| s.total_daily_mme.map(|m| (s.starts_on, m)))
        .collect();
    let name = format!("{}, {}", header.family_name, header.given_name);
    let latest_mme = decided.iter().rev().find_map(|p| p.total_daily_mme);
    Ok(PatientView {
        id: header.id,
        name: name.clone(),
        birth_date: header.birth_date.map(|d| d.to_string()).unwrap_or_else(|| "unknown".into()),
        mrn: header.mrn.clone().unwrap_or_else(|| "—".into()),
        risk_tier: header.risk_tier.clone(),
        part2: header.part2,
        part2_open,
        regimen: regimen_text(&regimen.iter().collect::<Vec<_>>(), part2_open),
        mme: latest_mme.map(|m| format!("{m:.0}")).unwrap_or_else(|| "—".into()),
        timeline: timeline.iter().map(|e| timeline_line(e, part2_open)).collect(),
        chart_svg: chart::mme_chart(
            "Daily MME over time: decided (solid) and planned taper steps (dashed)",
            &past,
            &planned,
            today,
        ),
        taper_steps: steps
            .iter()
            .map(|s| {
                (
                    s.starts_on.to_string(),
                    format!("plan {} step {} ({})", s.plan_id, s.step_number, s.state),
                    s.total_daily_mme.map(|m| format!("{m:.0}")).unwrap_or_else(|| "—".into()),
                )
            })
            .collect(),
        messages: messages
            .iter()
            .map(|m| {
                let at = chrono::DateTime::from_timestamp_millis(m.created_at)
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default();
                (at, m.kind.clone(), m.state.clone(), m.final_reason.clone().unwrap_or_default())
            })
            .collect(),
    })
}

#[derive(Template)]
#[template(path = "web/patient.html")]
struct PatientPage {
    chrome: Chrome,
    patient: PatientView,
    exceptions: Vec<super::exceptions::ExceptionView>,
    can_break_glass: bool,
}

pub async fn page(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(patient_id): Path<i64>,
) -> Result<Response, WebError> {
    let part2_open = may_see_part2(&state, &principal, patient_id).await?;
    let patient = load_patient_view(&state, patient_id, part2_open).await?;
    let names = super::queue::actor_names(&state).await?;
    let today = state.today();
    let exceptions = screens::patient_exceptions(&state.store, today, patient_id)
        .await?
        .iter()
        .map(|e| super::exceptions::exception_view(e, today, &names, part2_open))
        .collect();
    audit_view(
        &state,
        &principal,
        "patient.view",
        "patient",
        Some(patient_id.to_string()),
        Some(patient_id),
        serde_json::json!({ "part2_open": part2_open }),
    )
    .await?;
    let can_break_glass = patient.part2 && !part2_open && principal.role() == Some(accounts::Role::Physician);
    render(&PatientPage { chrome: Chrome::new(&state, &principal, ""), patient, exceptions, can_break_glass })
}

#[derive(Debug, Deserialize)]
pub struct BreakGlassForm {
    pub reason: String,
    #[serde(default)]
    pub csrf: Option<String>,
}

/// Grant this physician access to the patient's Part 2 facts for the configured time, with the reason
/// and an audit event in the same transaction.
pub async fn grant(state: &AppState, principal: &Principal, patient_id: i64, reason: &str) -> Result<i64, WebError> {
    let user = principal.person()?;
    let reason = reason.trim();
    if reason.len() < 10 {
        return Err(WebError::BadRequest("Breaking the glass needs a reason of at least 10 characters.".into()));
    }
    screens::patient_header(&state.store, patient_id).await?;
    let now_ms = state.clock.now_ms();
    let expires_ms = now_ms + i64::try_from(state.settings.break_glass_duration.as_millis()).unwrap_or(3_600_000);
    let mut tx = state.store.begin().await?;
    let grant = accounts::grant_break_glass(&mut tx, user.id, patient_id, reason, now_ms, expires_ms).await?;
    let event = refill_store::AuditEvent::new(&actor(principal), "part2.break_glass", "patient")
        .resource_id(patient_id.to_string())
        .patient(refill_rules::PatientId(patient_id))
        .reason(reason)
        .detail(serde_json::json!({ "grant_id": grant.id, "expires_at_ms": expires_ms, "purpose_of_use": "BTG" }));
    state.store.append_audit(&mut tx, &event).await?;
    tx.commit().await?;
    tracing::warn!(grant_id = grant.id, "break-glass access granted");
    Ok(expires_ms)
}

pub async fn break_glass(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(patient_id): Path<i64>,
    Form(form): Form<BreakGlassForm>,
) -> Result<Response, WebError> {
    grant(&state, &principal, patient_id, &form.reason).await?;
    Ok(Redirect::to(&format!("/patients/{patient_id}")).into_response())
}
