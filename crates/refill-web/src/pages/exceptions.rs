//! Physician exception review: the list (urgent first, then by supply run-out, with age and who raised
//! it), the detail with the evidence the rules used, and the signed decision with a required rationale.
//! Stopping therapy outright asks for a safety attestation and shows the risks beside the button.

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use refill_app::physician::{self, Bridge, Signature};
use refill_store::screens::{self, ExceptionRow};
use refill_store::{ExceptionId, Resolution};
use serde::Deserialize;

use super::patient::{PatientView, load_patient_view};
use super::queue::{actor_name, actor_names, app_error, note_change, publish_latest};
use super::taper::{PresetChoice, TAPER_DECISIONS, preset_choices};
use super::{Chrome, actor, audit_view, days_until, form_number, render};
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
    access: impl Into<crate::part2::Part2Access>,
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
        reasons: wording::reasons(Some(&row.reasons), access),
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
    page: i64,
    has_next: bool,
    /// Open exceptions in all, and how many urgent.
    open: i64,
    urgent: i64,
    /// "26–50": the rows on this page.
    shown: String,
}

impl ListPage {
    /// An exception's one line of reasons (each with its evidence is in the detail and the title).
    fn why(&self, item: &ExceptionView) -> String {
        wording::one_line(&item.reasons)
    }
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
    /// The page of the list (0 first).
    #[serde(default)]
    page: Option<i64>,
}

/// The summary of the signed exception `exception_id`: its decision as signed, what follows from it,
/// and what today's queue row reads now (the rules ran again at the signature).
async fn signed_summary(state: &AppState, exception_id: i64) -> Result<Option<SignedSummary>, WebError> {
    let today = state.today();
    let row = match screens::exception(&state.store, today, exception_id).await {
        Ok(row) => row,
        Err(refill_store::StoreError::NotFound(_)) => return Ok(None),
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
    load_page(state, 500, 0).await
}

/// Exceptions on one page of the physician's list.
pub const EXCEPTION_PAGE_SIZE: i64 = 25;

/// `limit` open exceptions from `offset`, in the list's order.
async fn load_page(state: &AppState, limit: i64, offset: i64) -> Result<Vec<ExceptionView>, WebError> {
    let today = state.today();
    let rows = screens::open_exceptions_page(&state.store, today, limit, offset).await?;
    let names = actor_names(state).await?;
    Ok(rows.iter().map(|r| exception_view(r, today, &names, false)).collect())
}

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<ListQuery>,
) -> Result<Response, WebError> {
    let page = match query.page {
        None => 0,
        Some(page) if (0..=super::queue::MAX_QUEUE_PAGE).contains(&page) => page,
        Some(page) => return Err(WebError::BadRequest(format!("page: {page} is not a page number"))),
    };
    // One more than the page shows tells whether there is a next page.
    let mut items = load_page(&state, EXCEPTION_PAGE_SIZE + 1, page * EXCEPTION_PAGE_SIZE).await?;
    let has_next = items.len() as i64 > EXCEPTION_PAGE_SIZE;
    items.truncate(EXCEPTION_PAGE_SIZE as usize);
    let (open, urgent) = screens::open_exception_counts(&state.store).await?;
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
        serde_json::json!({ "status": "open", "page": page, "rows": items.len() }),
    )
    .await?;
    let first = page * EXCEPTION_PAGE_SIZE + 1;
    render(&ListPage {
        chrome: Chrome::new(&state, &principal, "/exceptions"),
        shown: if items.is_empty() { String::new() } else { format!("{first}–{}", first + items.len() as i64 - 1) },
        items,
        signed,
        page,
        has_next,
        open,
        urgent,
    })
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
    ("hold_with_plan", "Hold the refill with a plan"),
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

/// Whether `decision` fits the reasons an exception was raised for (`codes`, as the viewer may see
/// them: a masked reason fits every option, since the physician cannot see what it rests on). The form
/// offers the fitting ones first and the rest folded under "Other options": approving, a bridge (no
/// supply may run out while the clinic decides), holding with a plan, a visit and stopping always fit.
pub fn decision_fits(decision: &str, codes: &[&str]) -> bool {
    let any = |wanted: &[&str]| codes.iter().any(|code| *code == wording::RESTRICTED_CODE || wanted.contains(code));
    match decision {
        "adjust_regimen" => any(&[
            "mme_undetermined",
            "regimen_changed",
            "dose_change_requested",
            "high_mme_reviewed",
            "high_mme_review_overdue",
            "mme_crossed_threshold",
            "benzodiazepine_unacknowledged",
            "er_la_not_opioid_tolerant",
            "overdose_or_sedation_signal",
        ]),
        "confirmatory_test" => any(&[
            "uds_unexpected_result",
            "uds_prescribed_not_tested",
            "uds_specimen_invalid",
            "uds_overdue",
            "aberrant_pattern",
        ]),
        "refer_oud" => any(&[
            "uds_unexpected_result",
            "oud_medication_from_other_source",
            "aberrant_pattern",
            "overdose_or_sedation_signal",
            "lost_or_stolen_repeat",
            "early_fill_accumulation",
            "pdmp_outside_prescriber",
        ]),
        _ => true,
    }
}

fn resolution_for(decision: &str) -> Option<Resolution> {
    Some(match decision {
        "approve_refill" => Resolution::Continue,
        "approve_bridge" => Resolution::Bridge,
        "adjust_regimen" => Resolution::ContinueWithChanges,
        "taper_start" | "taper_slow" | "taper_pause" | "taper_resume" | "taper_revise" => Resolution::Taper,
        "hold_with_plan" | "confirmatory_test" | "schedule_visit" => Resolution::Hold,
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
    /// The decisions signed with the plain form (the taper ones go through the planner form) that fit
    /// the reasons, and the others (folded away).
    decisions: Vec<(&'static str, &'static str)>,
    other_decisions: Vec<(&'static str, &'static str)>,
    /// What the physician typed, kept when a signature is refused.
    typed: Typed,
    /// The active orders whose dose can be corrected with "Adjust the regimen": (source id, label,
    /// what is missing or "" when the dose is complete). Part 2 orders only with access.
    orders: Vec<(String, String, &'static str)>,
    taper_decisions: Vec<(&'static str, &'static str)>,
    presets: Vec<PresetChoice>,
    today: String,
    problem: Option<String>,
    /// What staff wrote when sending the patient: (who, when, note).
    notes: Vec<(String, String, String)>,
    /// "New since Dr X's decision of DATE (option)", when a standing decision was reopened.
    new_since: Option<String>,
}

impl DetailPage {
    /// The refused decision was one of the folded "other options" (shown unfolded then).
    fn dose_missing(&self) -> bool {
        self.orders.iter().any(|(_, _, missing)| !missing.is_empty())
    }

    fn typed_is_other(&self) -> bool {
        self.other_decisions.iter().any(|(key, _)| *key == self.typed.decision)
    }
}

/// The decision form's fields as typed (empty on first view): a refusal shows the form again with
/// everything the physician wrote, beside the reason it was refused.
#[derive(Debug, Clone, Default)]
pub struct Typed {
    pub decision: String,
    pub rationale: String,
    pub safety_attestation: String,
    pub bridge_days: String,
    pub bridge_quantity: String,
    pub review_by: String,
    pub order_id: String,
    pub dose_value: String,
    pub dose_unit: String,
    pub doses_per_day: String,
}

impl Typed {
    fn from_form(form: &DecideForm, dose: &DoseFields) -> Typed {
        Typed {
            order_id: dose.order_id.clone().unwrap_or_default(),
            dose_value: dose.dose_value.clone().unwrap_or_default(),
            dose_unit: dose.dose_unit.clone().unwrap_or_default(),
            doses_per_day: dose.doses_per_day.clone().unwrap_or_default(),
            decision: form.decision.clone(),
            rationale: form.rationale.clone(),
            safety_attestation: form.safety_attestation.clone().unwrap_or_default(),
            bridge_days: form.bridge_days.clone().unwrap_or_default(),
            bridge_quantity: form.bridge_quantity.clone().unwrap_or_default(),
            review_by: form.review_by.clone().unwrap_or_default(),
        }
    }
}

pub async fn detail(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(exception_id): Path<i64>,
) -> Result<Response, WebError> {
    detail_page(&state, &principal, exception_id, None, None).await
}

async fn detail_page(
    state: &AppState,
    principal: &Principal,
    exception_id: i64,
    problem: Option<String>,
    typed: Option<(&DecideForm, &DoseFields)>,
) -> Result<Response, WebError> {
    let today = state.today();
    let row = screens::exception(&state.store, today, exception_id).await?;
    let access = crate::part2::Part2Access::for_patient(state, principal, row.patient_id).await?;
    let part2 = access.is_open();
    let names = actor_names(state).await?;
    let item = exception_view(&row, today, &names, access);
    let patient = load_patient_view(state, row.patient_id, part2, &names).await?;
    let taper_state = patient.taper_state;
    let notes = state
        .store
        .exception_notes(ExceptionId(exception_id))
        .await?
        .into_iter()
        .map(|note| (actor_name(&names, &note.author), note.created_at.format("%Y-%m-%d %H:%M").to_string(), note.note))
        .collect();
    let new_since = match row.follows_decision_id {
        Some(id) => state.store.physician_decision(id).await?.map(|decision| {
            format!(
                "New since {}'s decision of {}: {}",
                actor_name(&names, &decision.signed_by),
                decision.signed_on,
                wording::standing_decision(&decision, &actor_name(&names, &decision.signed_by), part2)
            )
        }),
        None => None,
    };
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
    let orders = screens::regimens(&state.store, &[row.patient_id])
        .await?
        .into_iter()
        .filter(|line| !access.hides(line.confidentiality == "part2"))
        .map(|line| {
            let missing = match (line.dose_value, line.dose_unit.as_deref(), line.doses_per_day) {
                (None, _, _) => "no dose",
                (_, None | Some("unusable"), _) => "no usable unit",
                (_, _, None) => "no frequency",
                _ => "",
            };
            let label = line.text.clone().or(line.rxcui.clone().map(|c| format!("RxNorm {c}"))).unwrap_or_default();
            (line.source_id, label, missing)
        })
        .collect();
    let codes: Vec<&str> = item.reasons.iter().map(|reason| reason.code.as_str()).collect();
    let (decisions, other_decisions): (Vec<_>, Vec<_>) = DECISIONS
        .iter()
        .copied()
        .filter(|(key, _)| !TAPER_DECISIONS.contains(key) && decision_applies(key, taper_state))
        .partition(|(key, _)| decision_fits(key, &codes));
    let mut response = render(&DetailPage {
        chrome: Chrome::new(state, principal, "/exceptions"),
        item,
        patient,
        decisions,
        other_decisions,
        typed: typed.map(|(form, dose)| Typed::from_form(form, dose)).unwrap_or_default(),
        orders,
        taper_decisions: DECISIONS
            .iter()
            .copied()
            .filter(|(key, _)| TAPER_DECISIONS.contains(key) && decision_applies(key, taper_state))
            .collect(),
        presets: preset_choices(state),
        today: today.to_string(),
        problem: problem.clone(),
        notes,
        new_since,
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
    /// A bridge: its days (1 to 90) and the quantity to dispense (form text; empty is none).
    #[serde(default, deserialize_with = "super::text_or_number")]
    pub bridge_days: Option<String>,
    #[serde(default, deserialize_with = "super::text_or_number")]
    pub bridge_quantity: Option<String>,
    /// The decision stands until this date (YYYY-MM-DD); a bridge without one stands for its days.
    #[serde(default)]
    pub review_by: Option<String>,
    #[serde(default)]
    pub csrf: Option<String>,
}

/// The dose the physician entered with "Adjust the regimen" for an order whose MME could not be
/// determined (all empty when none).
#[derive(Debug, Deserialize, Clone, Default)]
pub struct DoseFields {
    #[serde(default)]
    pub order_id: Option<String>,
    #[serde(default)]
    pub dose_value: Option<String>,
    /// `mg`, `mcg`, `ml` or `unit` (tablets, capsules, patches).
    #[serde(default)]
    pub dose_unit: Option<String>,
    #[serde(default)]
    pub doses_per_day: Option<String>,
}

impl DoseFields {
    fn filled(&self) -> bool {
        [&self.dose_value, &self.doses_per_day].iter().any(|v| v.as_deref().is_some_and(|t| !t.trim().is_empty()))
    }

    /// The correction these fields ask for, or the problem naming the field.
    fn correction<'a>(
        &'a self,
        patient: refill_rules::PatientId,
        today: chrono::NaiveDate,
        signer: &'a refill_store::Actor,
    ) -> Result<refill_app::regimen::DoseCorrection<'a>, WebError> {
        use refill_rules::{DoseQuantity, DoseUnit};
        let order_id = self
            .order_id
            .as_deref()
            .filter(|o| !o.trim().is_empty())
            .ok_or_else(|| WebError::BadRequest("order_id: which order's dose?".into()))?;
        let value = form_number::<f64>(self.dose_value.as_deref(), "dose_value")?
            .ok_or_else(|| WebError::BadRequest("dose_value: enter the dose per administration".into()))?;
        let unit = match self.dose_unit.as_deref().map(str::trim) {
            Some("mg") => DoseUnit::Milligram,
            Some("mcg") => DoseUnit::Microgram,
            Some("ml") => DoseUnit::Milliliter,
            Some("unit") => DoseUnit::DoseFormUnit,
            other => {
                return Err(WebError::BadRequest(format!(
                    "dose_unit: {:?} is not mg, mcg, ml or unit",
                    other.unwrap_or("")
                )));
            }
        };
        let doses_per_day = form_number::<f64>(self.doses_per_day.as_deref(), "doses_per_day")?
            .ok_or_else(|| WebError::BadRequest("doses_per_day: enter how many times a day at most".into()))?;
        Ok(refill_app::regimen::DoseCorrection {
            patient,
            order_id,
            dose: DoseQuantity { value, unit },
            doses_per_day,
            today,
            signer,
        })
    }
}

pub async fn decide(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(exception_id): Path<i64>,
    axum::extract::RawForm(body): axum::extract::RawForm,
) -> Result<Response, WebError> {
    // The same body read as the decision and as the dose fields that go with "Adjust the regimen".
    let form: DecideForm = serde_urlencoded::from_bytes(&body)
        .map_err(|error| WebError::BadRequest(format!("the decision form: {error}")))?;
    let dose: DoseFields = serde_urlencoded::from_bytes(&body)
        .map_err(|error| WebError::BadRequest(format!("the dose fields: {error}")))?;
    let refused = |error: WebError| {
        let (state, principal, form, dose) = (&state, &principal, &form, &dose);
        async move { detail_page(state, principal, exception_id, Some(error.public_message()), Some((form, dose))).await }
    };
    if let Err(error) = crate::input::check_decision(&form) {
        return refused(error).await;
    }
    let correction = if form.decision == "adjust_regimen" && dose.filled() { Some(&dose) } else { None };
    match sign_with(&state, &principal, exception_id, &form, plan_change(&form), correction).await {
        Ok(_) => Ok(Redirect::to(&format!("/exceptions?signed={exception_id}")).into_response()),
        Err(error @ (WebError::BadRequest(_) | WebError::Conflict(_) | WebError::NotFound(_))) => refused(error).await,
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
    sign_decision(state, principal, exception_id, form, plan_change(form)).await
}

/// The plan change a plain-form decision makes (pausing or resuming the taper in force).
fn plan_change(form: &DecideForm) -> PlanChange<'static> {
    match form.decision.as_str() {
        "taper_pause" => PlanChange::Pause,
        "taper_resume" => PlanChange::Resume,
        _ => PlanChange::None,
    }
}

pub(crate) use refill_app::physician::PlanChange;

/// `sign`, with the plan change the decision makes (`pages::taper` passes the schedule it planned),
/// through the use case (`refill_app::physician::sign`): one transaction resolves the exception, changes
/// the plan, records the review, stores the decision that stands for the cycle and decides again under
/// it; the screen change is recorded beside it and live listeners hear after the commit.
pub(crate) async fn sign_decision(
    state: &AppState,
    principal: &Principal,
    exception_id: i64,
    form: &DecideForm,
    plan: PlanChange<'_>,
) -> Result<String, WebError> {
    sign_with(state, principal, exception_id, form, plan, None).await
}

/// `sign_decision`, first correcting an order's dose when "Adjust the regimen" came with one: the
/// correction, the signature and the decision made under the corrected regimen are one transaction.
async fn sign_with(
    state: &AppState,
    principal: &Principal,
    exception_id: i64,
    form: &DecideForm,
    plan: PlanChange<'_>,
    correction: Option<&DoseFields>,
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
    let label = DECISIONS.iter().find(|(key, _)| *key == form.decision).map(|(_, label)| *label).unwrap_or("");
    let bridge = match resolution {
        Resolution::Bridge => Some(Bridge {
            days: form_number::<u32>(form.bridge_days.as_deref(), "bridge_days")?
                .filter(|d| (1..=90).contains(d))
                .ok_or_else(|| WebError::BadRequest("A bridge needs its number of days (1 to 90).".into()))?,
            quantity: form_number::<f64>(form.bridge_quantity.as_deref(), "bridge_quantity")?
                .filter(|q| q.is_finite() && *q > 0.0),
        }),
        _ => None,
    };
    let review_by = match form.review_by.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(text) => Some(
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| WebError::BadRequest(format!("review_by: {text:?} is not a date (YYYY-MM-DD)")))?,
        ),
    };
    let names = actor_names(state).await?;
    let actor = actor(principal);
    let today = state.today();
    let rationale = form.rationale.trim();
    let signed_rationale = if rationale.is_empty() { String::new() } else { format!("{label}: {rationale}") };
    // Reads through the pool happen before the transaction holds the writer.
    let clinic = state.store.clinic_facts().await?;
    let app = state.app();
    let mut tx = state.store.begin().await?;
    if let Some(fields) = correction {
        let row = screens::exception(&state.store, today, exception_id).await?;
        let correction = fields.correction(refill_rules::PatientId(row.patient_id), today, &actor)?;
        refill_app::regimen::correct_order_dose(&app, &mut tx, &correction).await.map_err(|e| app_error(e, &names))?;
    }
    let signed = physician::sign(
        &app,
        &mut tx,
        &clinic,
        &Signature {
            exception: ExceptionId(exception_id),
            version: form.version,
            resolution,
            rationale: &signed_rationale,
            safety_attestation: form.safety_attestation.as_deref(),
            bridge,
            review_by,
            plan,
            today,
            signer: &actor,
        },
    )
    .await
    .map_err(|e| app_error(e, &names))?;
    note_change(state, &mut tx, signed.patient.0, "exception.resolved", &user.display_name).await?;
    tx.commit().await?;
    publish_latest(state).await;
    Ok(format!("{label} signed by {} (version {})", user.display_name, signed.exception.version))
}
