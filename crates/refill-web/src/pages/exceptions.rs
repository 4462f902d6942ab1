//! Physician exception review: the list (urgent first, then by supply run-out, with age and who raised
//! it), the detail with the evidence the rules used, and the signed decision with a required rationale.
//! Stopping therapy outright asks for a safety attestation and shows the risks beside the button.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use refill_rules::{PatientId, PhysicianReview, PrescriberId, ReviewKind};
use refill_store::screens::{self, ExceptionRow};
use refill_store::{ExceptionId, ExceptionResolution, NewTaperPlan, Resolution, StaffFact, StoreError};
use serde::Deserialize;

use super::patient::{PatientView, load_patient_view};
use super::queue::{Adjust, actor_name, actor_names, name_actors, note_change, publish_latest, rerun_rules};
use super::taper::{PresetChoice, TAPER_DECISIONS, preset_choices};
use super::{Chrome, actor, audit_view, days_until, may_see_part2, render};
use crate::auth::Principal;
use crate::{AppState, WebError, wording};

#[derive(Debug, Clone, serde::Serialize)]
pub struct ExceptionView {
    pub id: i64,
    pub patient_id: i64,
    pub version: i64,
    pub name: String,
    pub mrn: String,
    pub urgent: bool,
    pub age_days: i64,
    pub raised_by: String,
    pub run_out_on: String,
    pub days_left: String,
    pub mme: String,
    pub status_word: &'static str,
    pub status_class: &'static str,
    pub reasons: Vec<wording::ReasonLine>,
    pub policy_version: String,
    pub resolved: Option<String>,
}

pub fn exception_view(
    row: &ExceptionRow,
    today: chrono::NaiveDate,
    names: &std::collections::HashMap<String, String>,
    may_see_part2: bool,
) -> ExceptionView {
    let (status_word, status_class) = wording::status(Some(&row.outcome));
    ExceptionView {
        id: row.exception_id,
        patient_id: row.patient_id,
        version: row.version,
        name: format!("{}, {}", row.family_name, row.given_name),
        mrn: row.mrn.clone().unwrap_or_else(|| "—".into()),
        urgent: row.urgency == "urgent",
        age_days: (today - row.clinic_date).num_days().max(0),
        raised_by: actor_name(names, &row.raised_by),
        run_out_on: row.run_out_on.map(|d| d.to_string()).unwrap_or_else(|| "unknown".into()),
        days_left: wording::days_left(days_until(today, row.run_out_on)),
        mme: row.total_daily_mme.map(|m| format!("{m:.0}")).unwrap_or_else(|| "—".into()),
        status_word,
        status_class,
        reasons: wording::reasons(Some(&row.reasons), may_see_part2),
        policy_version: row.policy_version.clone(),
        resolved: row.resolution.as_ref().map(|r| {
            format!(
                "{} by {} at {}",
                r,
                row.signed_by.as_deref().map(|s| actor_name(names, s)).unwrap_or_default(),
                row.signed_at.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
            )
        }),
    }
}

#[derive(Template)]
#[template(path = "web/exceptions.html")]
struct ListPage {
    chrome: Chrome,
    items: Vec<ExceptionView>,
    signed: Option<SignedSummary>,
}

/// What a signature just did, shown above the list after signing: the decision, then what happens next,
/// one sentence each.
#[derive(Debug, Clone)]
pub struct SignedSummary {
    pub headline: String,
    pub next: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// The exception just signed (`/exceptions?signed=ID`, where signing redirects).
    #[serde(default)]
    signed: Option<i64>,
}

/// The summary of the signed exception `exception_id`: its decision as signed, what follows from it,
/// and what today's queue row reads now (the rules ran again at the signature).
async fn signed_summary(state: &AppState, exception_id: i64) -> Result<Option<SignedSummary>, WebError> {
    let today = state.today();
    let row = match screens::exception(&state.store, today, exception_id).await {
        Ok(row) => row,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let Some(resolution) = row.resolution.as_deref() else { return Ok(None) };
    // The stored rationale starts with the decision's label ("Pause the taper: ...").
    let label = row.rationale.as_deref().and_then(|r| r.split_once(':')).map(|(label, _)| label).unwrap_or(resolution);
    let headline = format!("Signed for {}, {}: {label}.", row.family_name, row.given_name);
    let mut next = Vec::new();
    match resolution {
        "continue" | "continue_with_changes" => next.push(
            "Your benefit-risk review is recorded as today's; the rules count it at the next refill.".to_string(),
        ),
        "taper" if label == "Pause the taper" => next.push(
            "The taper holds at the current step; no later step applies until a physician resumes it.".to_string(),
        ),
        "taper" => {
            next.push("Each step becomes the regimen of record on its date, in the daily run.".to_string());
            next.push(
                "Patients who agreed to email get a neutral notice a week before each step; staff see each new \
                 dose on the queue."
                    .to_string(),
            );
        }
        "hold" | "refer" => {
            next.push("The refill stays on hold: staff see the hold on the queue and cannot override it.".to_string())
        }
        "stop_therapy" => next.push(
            "The refill stays on hold; the stop, its rationale and the safety attestation are signed and audited."
                .to_string(),
        ),
        _ => {}
    }
    match screens::queue_row(&state.store, today, row.patient_id).await? {
        Some(queue) => {
            let (word, _) = wording::status(queue.outcome.as_deref());
            next.push(format!("Today's queue now reads: {word}."));
        }
        None => next.push("The patient is not on today's queue; the next daily run decides again.".to_string()),
    }
    Ok(Some(SignedSummary { headline, next }))
}

pub async fn load_list(state: &AppState) -> Result<Vec<ExceptionView>, WebError> {
    let today = state.today();
    let rows = screens::open_exceptions(&state.store, today, 500).await?;
    let names = actor_names(state).await?;
    Ok(rows.iter().map(|r| exception_view(r, today, &names, false)).collect())
}

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<ListQuery>,
) -> Result<Response, WebError> {
    let items = load_list(&state).await?;
    let signed = match query.signed {
        Some(id) => signed_summary(&state, id).await?,
        None => None,
    };
    audit_view(
        &state,
        &principal,
        "exceptions.view",
        "exceptions",
        None,
        None,
        serde_json::json!({ "status": "open", "rows": items.len() }),
    )
    .await?;
    render(&ListPage { chrome: Chrome::new(&state, &principal, "/exceptions"), items, signed })
}

/// The decisions a physician can sign, with the store's resolution each records.
pub const DECISIONS: &[(&str, &str)] = &[
    ("approve_refill", "Approve this refill"),
    ("approve_bridge", "Approve a bridge supply"),
    ("adjust_regimen", "Adjust the regimen"),
    ("taper_start", "Start a taper"),
    ("taper_slow", "Slow the taper"),
    ("taper_pause", "Pause the taper"),
    ("taper_resume", "Resume the paused taper"),
    ("taper_revise", "Revise the taper"),
    ("confirmatory_test", "Order confirmatory testing"),
    ("refer_oud", "Refer for OUD assessment or buprenorphine"),
    ("schedule_visit", "Schedule a visit"),
    ("stop_therapy", "Stop opioid therapy"),
];

/// Whether `decision` applies to a patient whose taper plan in force is `taper`: a taper starts when
/// none is in force, an active one can be slowed, paused or revised, a paused one resumed or revised.
/// (The store refuses the others anyway; the form offers only what applies.)
pub fn decision_applies(decision: &str, taper: Option<refill_rules::TaperState>) -> bool {
    use refill_rules::TaperState::{Active, Completed, Paused};
    match decision {
        "taper_start" => matches!(taper, None | Some(Completed)),
        "taper_slow" | "taper_pause" => taper == Some(Active),
        "taper_resume" => taper == Some(Paused),
        "taper_revise" => matches!(taper, Some(Active | Paused)),
        _ => true,
    }
}

fn resolution_for(decision: &str) -> Option<Resolution> {
    Some(match decision {
        "approve_refill" => Resolution::Continue,
        "approve_bridge" | "adjust_regimen" => Resolution::ContinueWithChanges,
        "taper_start" | "taper_slow" | "taper_pause" | "taper_resume" | "taper_revise" => Resolution::Taper,
        "confirmatory_test" | "schedule_visit" => Resolution::Hold,
        "refer_oud" => Resolution::Refer,
        "stop_therapy" => Resolution::StopTherapy,
        _ => return None,
    })
}

#[derive(Template)]
#[template(path = "web/exception_detail.html")]
struct DetailPage {
    chrome: Chrome,
    item: ExceptionView,
    patient: PatientView,
    /// The decisions signed with the plain form (the taper ones go through the planner form).
    decisions: Vec<(&'static str, &'static str)>,
    taper_decisions: Vec<(&'static str, &'static str)>,
    presets: Vec<PresetChoice>,
    today: String,
    problem: Option<String>,
}

pub async fn detail(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(exception_id): Path<i64>,
) -> Result<Response, WebError> {
    detail_page(&state, &principal, exception_id, None).await
}

async fn detail_page(
    state: &AppState,
    principal: &Principal,
    exception_id: i64,
    problem: Option<String>,
) -> Result<Response, WebError> {
    let today = state.today();
    let row = screens::exception(&state.store, today, exception_id).await?;
    let part2 = may_see_part2(state, principal, row.patient_id).await?;
    let names = actor_names(state).await?;
    let item = exception_view(&row, today, &names, part2);
    let patient = load_patient_view(state, row.patient_id, part2, &names).await?;
    let taper_state = patient.taper_state;
    audit_view(
        state,
        principal,
        "exception.view",
        "exception",
        Some(exception_id.to_string()),
        Some(row.patient_id),
        serde_json::json!({}),
    )
    .await?;
    let mut response = render(&DetailPage {
        chrome: Chrome::new(state, principal, "/exceptions"),
        item,
        patient,
        decisions: DECISIONS
            .iter()
            .copied()
            .filter(|(key, _)| !TAPER_DECISIONS.contains(key) && decision_applies(key, taper_state))
            .collect(),
        taper_decisions: DECISIONS
            .iter()
            .copied()
            .filter(|(key, _)| TAPER_DECISIONS.contains(key) && decision_applies(key, taper_state))
            .collect(),
        presets: preset_choices(state),
        today: today.to_string(),
        problem: problem.clone(),
    })?;
    if problem.is_some() {
        *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(response)
}

#[derive(Debug, Deserialize, Clone)]
pub struct DecideForm {
    pub decision: String,
    pub version: i64,
    #[serde(default)]
    pub rationale: String,
    #[serde(default)]
    pub safety_attestation: Option<String>,
    #[serde(default)]
    pub csrf: Option<String>,
}

pub async fn decide(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(exception_id): Path<i64>,
    Form(form): Form<DecideForm>,
) -> Result<Response, WebError> {
    if let Err(error) = crate::input::check_decision(&form) {
        return detail_page(&state, &principal, exception_id, Some(error.public_message())).await;
    }
    match sign(&state, &principal, exception_id, &form).await {
        Ok(_) => Ok(Redirect::to(&format!("/exceptions?signed={exception_id}")).into_response()),
        Err(error @ (WebError::BadRequest(_) | WebError::Conflict(_))) => {
            detail_page(&state, &principal, exception_id, Some(error.public_message())).await
        }
        Err(error) => Err(error),
    }
}

/// Sign a decision, in one transaction: the exception is resolved (signed, hashed, audited), a pause or
/// resume changes the taper plan in force, the physician's review is recorded as a fact so the next
/// refill sees it, the rules run again for today's queue row, and the screen change is recorded.
/// Starting, slowing or revising a taper is refused here: those are signed with the proposed schedule
/// in view (`pages::taper`).
pub async fn sign(
    state: &AppState,
    principal: &Principal,
    exception_id: i64,
    form: &DecideForm,
) -> Result<String, WebError> {
    let plan = match form.decision.as_str() {
        "taper_pause" => PlanChange::Pause,
        "taper_resume" => PlanChange::Resume,
        _ => PlanChange::None,
    };
    sign_decision(state, principal, exception_id, form, plan).await
}

/// What a signed decision does to the patient's taper plan, inside the signing transaction.
pub(crate) enum PlanChange<'a> {
    None,
    /// Store the plan the physician saw (start, slow, revise), checked against the patient's version
    /// at preview; it supersedes the plan in force.
    Store {
        plan: &'a NewTaperPlan,
        patient_version: i64,
    },
    /// Pause the active plan from today.
    Pause,
    /// Resume the paused plan from today.
    Resume,
}

/// `sign`, with the plan change the decision makes (`pages::taper` passes the schedule it planned).
pub(crate) async fn sign_decision(
    state: &AppState,
    principal: &Principal,
    exception_id: i64,
    form: &DecideForm,
    plan: PlanChange<'_>,
) -> Result<String, WebError> {
    let user = principal.person()?;
    if TAPER_DECISIONS.contains(&form.decision.as_str()) && !matches!(plan, PlanChange::Store { .. }) {
        return Err(WebError::BadRequest(
            "Starting, slowing or revising a taper is signed with its proposed schedule: use the taper planner form."
                .into(),
        ));
    }
    let resolution = resolution_for(&form.decision)
        .ok_or_else(|| WebError::BadRequest(format!("unknown decision {:?}", form.decision)))?;
    let rationale = form.rationale.trim();
    if rationale.is_empty() {
        return Err(WebError::BadRequest("A written rationale is required.".into()));
    }
    let attestation = form.safety_attestation.as_deref().map(str::trim).filter(|a| !a.is_empty()).map(str::to_string);
    if resolution == Resolution::StopTherapy && attestation.is_none() {
        return Err(WebError::BadRequest("Stopping therapy outright requires the safety attestation.".into()));
    }
    let label = DECISIONS.iter().find(|(key, _)| *key == form.decision).map(|(_, label)| *label).unwrap_or("");
    let names = actor_names(state).await?;
    let conflict = |error: StoreError| match error {
        StoreError::Conflict(message) => WebError::Conflict(name_actors(&names, &message)),
        StoreError::Invalid(message) => WebError::BadRequest(message),
        other => WebError::Store(other),
    };
    let actor = actor(principal);
    let today = state.today();
    // Reads through the pool happen before the transaction holds the writer.
    let row = screens::exception(&state.store, today, exception_id).await?;
    let patient = PatientId(row.patient_id);
    let on_queue = screens::queue_row(&state.store, today, row.patient_id).await?.is_some();
    let clinic = state.store.clinic_facts().await?;
    let mut tx = state.store.begin().await?;
    let resolved = state
        .store
        .resolve_exception_in(
            &mut tx,
            ExceptionId(exception_id),
            form.version,
            &ExceptionResolution {
                resolution,
                rationale: format!("{label}: {rationale}"),
                safety_attestation: attestation,
            },
            &actor,
        )
        .await
        .map_err(conflict)?;
    match plan {
        PlanChange::None => {}
        PlanChange::Store { plan, patient_version } => {
            let plan_id = state
                .store
                .create_taper_plan_in(&mut tx, patient, patient_version, plan, &actor)
                .await
                .map_err(conflict)?;
            // A plan whose first step starts today (or earlier) is in force now: the daily run of today
            // may be past, so the signature makes that step the regimen of record at once.
            let facts = tx.load_patient_facts(patient, today).await?;
            if let Some(taper) = facts.taper.as_ref().filter(|t| t.plan_id == plan_id.0)
                && taper.step_regimen != facts.regimen
            {
                state
                    .store
                    .apply_taper_step_in(&mut tx, patient, plan_id, taper.step_started_on, &taper.step_regimen, &actor)
                    .await?;
            }
        }
        PlanChange::Pause => {
            state.store.pause_taper_plan_in(&mut tx, patient, today, &actor, rationale).await.map_err(conflict)?;
        }
        PlanChange::Resume => {
            state.store.resume_taper_plan_in(&mut tx, patient, today, &actor, rationale).await.map_err(conflict)?;
        }
    }
    // Feed the decision back into the rules: a physician benefit-risk review dated today.
    if matches!(resolution, Resolution::Continue | Resolution::ContinueWithChanges | Resolution::Taper) {
        let review = PhysicianReview {
            reviewed_on: today,
            physician: PrescriberId(actor.id.clone()),
            kind: ReviewKind::BenefitRisk,
        };
        // The signature above is the check against the screen; the patient's version is whatever it is
        // now in this transaction (a plan stored above has just moved it).
        let patient_version = tx.patient(patient).await?.version;
        state
            .store
            .record_fact_in(
                &mut tx,
                patient,
                patient_version,
                &StaffFact::PhysicianReview { review, note: Some(rationale.to_string()) },
                &actor,
                Some(rationale),
            )
            .await
            .map_err(conflict)?;
    }
    if on_queue {
        let adjust = match resolution {
            Resolution::Continue | Resolution::ContinueWithChanges | Resolution::Taper => Adjust::PhysicianApproved,
            _ => Adjust::PhysicianHold,
        };
        rerun_rules(state, &mut tx, &clinic, &actor, row.patient_id, row.run_out_on, adjust).await?;
    }
    note_change(state, &mut tx, row.patient_id, "exception.resolved", &user.display_name).await?;
    tx.commit().await?;
    publish_latest(state).await;
    Ok(format!("{label} signed by {} (version {})", user.display_name, resolved.version))
}
