//! Taper decisions in the physician exception review: the planner's proposed schedule is shown (a table
//! and the MME chart) before the physician signs. The preview runs `refill_rules::taper::plan_taper` on
//! the patient's regimen of record; signing runs the planner again with the same parameters (the
//! schedule shown is never taken back from the browser), then stores the plan (superseding the plan in
//! force), resolves the exception, records the physician's review and re-runs the rules, all in one
//! transaction. A refusal from the planner is shown in plain words; the software never starts a taper
//! on its own.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::NaiveDate;
use refill_rules::PatientId;
use refill_rules::facts::{Confidentiality, PrescriberId};
use refill_rules::taper::{
    AttestationReason, PlanOutcome, RefusalCode, SafetyAttestation, TaperPlan, TaperRefusal, TaperRequest, TaperTarget,
    plan_taper, trim_number,
};
use refill_store::screens;
use refill_store::{NewTaperPlan, NewTaperStep, StoreError};
use serde::Deserialize;

use super::exceptions::{DECISIONS, DecideForm, ExceptionView, PlanChange, exception_view, sign_decision};
use super::queue::actor_names;
use super::{Chrome, actor, may_see_part2, render};
use crate::auth::Principal;
use crate::{AppState, WebError, chart};

/// The exception decisions that go through the planner: each writes a new schedule from the regimen of
/// record (for a slower or revised taper, the regimen in force today).
pub const TAPER_DECISIONS: &[&str] = &["taper_start", "taper_slow", "taper_revise"];

/// One preset offered on the form: (name, description, requires attestation).
#[derive(Debug, Clone)]
pub struct PresetChoice {
    pub name: String,
    pub description: String,
    pub requires_attestation: bool,
    pub is_default: bool,
}

/// The presets of the policy, for the form on the exception detail page.
pub fn preset_choices(state: &AppState) -> Vec<PresetChoice> {
    let policy = &state.policy.taper;
    policy
        .presets
        .iter()
        .map(|(name, preset)| PresetChoice {
            name: name.clone(),
            description: format!(
                "{}% of the original daily dose per {} days, a step every {} days{}",
                trim_number(preset.rate_fraction * 100.0),
                preset.window_days,
                preset.step_days,
                if preset.requires_attestation { " (needs a safety attestation)" } else { "" }
            ),
            requires_attestation: preset.requires_attestation,
            is_default: *name == policy.default_preset,
        })
        .collect()
}

/// What the taper form posts (preview) and what the sign form posts back (the same parameters plus the
/// rationale and the versions seen at preview).
#[derive(Debug, Deserialize, Clone, Default)]
pub struct TaperForm {
    pub decision: String,
    /// The exception's version when the form was shown.
    pub version: i64,
    #[serde(default)]
    pub preset: String,
    /// The target agreed with the patient: `0` to stop, or the daily MME to reach. Required: an empty
    /// field never means stop.
    #[serde(default)]
    pub target_mme: String,
    #[serde(default)]
    pub start_on: String,
    /// `short_prior_duration`, `life_threatening_issue`, `other` or empty (no attestation).
    #[serde(default)]
    pub attestation_reason: String,
    #[serde(default)]
    pub attestation_text: String,
    #[serde(default)]
    pub rationale: String,
    /// The patient's version when the schedule was shown (sign only).
    #[serde(default)]
    pub patient_version: Option<i64>,
    #[serde(default)]
    pub csrf: Option<String>,
}

/// One row of the proposed schedule.
#[derive(Debug, Clone)]
pub struct StepRow {
    pub number: usize,
    pub effective_on: String,
    pub reduced: String,
    pub change: &'static str,
    pub regimen: String,
    pub daily_mme: String,
    pub follow_up_due: String,
    /// What the pharmacy fills from this step: `2 x acetaminophen 325 MG / hydrocodone bitartrate
    /// 10 MG Oral Tablet (hydrocodone 10 mg / acetaminophen 325 mg), four times a day`.
    pub products: Vec<String>,
    /// The change in percent of the dose before the step.
    pub cut: String,
    /// Acetaminophen a day from this step, empty when none.
    pub acetaminophen: String,
    /// Why the step waits longer or is larger than usual.
    pub note: String,
}

#[derive(Debug, Clone)]
pub struct PlanView {
    pub summary: String,
    pub attestation: Option<String>,
    pub original: String,
    pub steps: Vec<StepRow>,
    pub outcome: String,
    pub chart_svg: String,
}

#[derive(Template)]
#[template(path = "web/exception_taper.html")]
struct PreviewPage {
    chrome: Chrome,
    item: ExceptionView,
    decision_label: String,
    form: TaperForm,
    patient_version: i64,
    plan: Option<PlanView>,
    refusal: Option<String>,
}

/// Why a request could not reach the planner, or the planner's refusal, in plain words.
fn plain_refusal(refusal: &TaperRefusal, preset: &str) -> String {
    let lead = match refusal.code {
        RefusalCode::AttestationRequired => {
            format!("The {preset} preset requires a physician safety attestation: choose the reason and write it out.")
        }
        RefusalCode::UnknownPreset => format!("There is no taper preset named {preset:?} in the policy."),
        RefusalCode::EmptyRegimen => "The patient has no active opioid order to taper.".to_string(),
        RefusalCode::ProductNotIdentified => "A product in the regimen could not be identified.".to_string(),
        RefusalCode::MmeUndetermined => "The daily MME of the regimen could not be determined.".to_string(),
        RefusalCode::NotTaperable => "This regimen cannot be tapered by the planner.".to_string(),
        RefusalCode::TargetNotBelowCurrent => "The target is not below the current daily MME.".to_string(),
        RefusalCode::InvalidPolicy => "The taper policy is not valid.".to_string(),
        RefusalCode::NotInFormulary => {
            "The clinic formulary has no product of this make-up; the planner orders only what the pharmacies dispense."
                .to_string()
        }
        RefusalCode::AcetaminophenLimit => "The regimen is above the acetaminophen limits.".to_string(),
        RefusalCode::MethadonePreset => {
            format!(
                "Methadone is tapered only at its own slower pace, chosen by the physician: the {preset} preset does not apply to it."
            )
        }
        RefusalCode::InvalidRequest | RefusalCode::NotSlower | RefusalCode::WrongState => {
            "The planner could not use this request.".to_string()
        }
    };
    format!("{lead} ({})", refusal.message)
}

fn parse_start(form: &TaperForm, today: NaiveDate) -> Result<NaiveDate, String> {
    let text = form.start_on.trim();
    if text.is_empty() {
        return Ok(today);
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("Start date {text:?} is not a date (YYYY-MM-DD)."))?;
    if date < today {
        return Err(format!("Start date {date} is in the past."));
    }
    Ok(date)
}

fn parse_target(form: &TaperForm) -> Result<TaperTarget, String> {
    let text = form.target_mme.trim();
    if text.is_empty() {
        return Err("Choose the target agreed with the patient: 0 to stop, or the daily MME to reach.".to_string());
    }
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => {
            Ok(if value == 0.0 { TaperTarget::Zero } else { TaperTarget::Mme(value) })
        }
        _ => Err(format!("Target MME {text:?} is not a number of MME/day.")),
    }
}

fn parse_attestation(form: &TaperForm, physician: &str, today: NaiveDate) -> Result<Option<SafetyAttestation>, String> {
    let text = form.attestation_text.trim().to_string();
    let reason = match form.attestation_reason.trim() {
        "" => return Ok(None),
        "short_prior_duration" => AttestationReason::ShortPriorDuration,
        "life_threatening_issue" => AttestationReason::LifeThreateningIssue,
        "other" if !text.is_empty() => AttestationReason::Other(text.clone()),
        "other" => return Err("A safety attestation with reason \"other\" needs the reason written out.".into()),
        other => return Err(format!("Unknown attestation reason {other:?}.")),
    };
    Ok(Some(SafetyAttestation {
        physician: PrescriberId(physician.to_string()),
        attested_on: today,
        reason,
        rationale: text,
    }))
}

/// Run the planner for this exception's patient. `Ok(Err(..))` is a refusal to show the physician.
async fn propose(
    state: &AppState,
    principal: &Principal,
    patient_id: i64,
    form: &TaperForm,
) -> Result<Result<TaperPlan, String>, WebError> {
    let today = state.today();
    let facts = state.store.load_patient_facts(PatientId(patient_id), today).await?;
    let part2_open = may_see_part2(state, principal, patient_id).await?;
    if !part2_open && facts.regimen.iter().any(|order| order.confidentiality == Confidentiality::Part2) {
        return Ok(Err("Part of the regimen is a restricted (42 CFR Part 2) record: open it with break-the-glass \
                       on the patient page before planning a taper."
            .into()));
    }
    let physician = actor(principal).id;
    let inputs = parse_start(form, today)
        .and_then(|start_on| Ok((start_on, parse_target(form)?, parse_attestation(form, &physician, today)?)));
    let (start_on, target, attestation) = match inputs {
        Ok(inputs) => inputs,
        Err(problem) => return Ok(Err(problem)),
    };
    let preset = form.preset.trim();
    let request = TaperRequest {
        regimen: facts.regimen.clone(),
        reduce_first: Vec::new(),
        preset: if preset.is_empty() { None } else { Some(preset.to_string()) },
        target,
        start_on,
        attestation,
        factor_set: state.policy.factor_set(),
        added_products: Vec::new(),
    };
    let preset_name = if preset.is_empty() { state.policy.taper.default_preset.as_str() } else { preset };
    Ok(plan_taper(&request, &state.policy.taper).map_err(|refusal| plain_refusal(&refusal, preset_name)))
}

fn mme_text(value: Option<f64>) -> String {
    value.map(trim_number).unwrap_or_else(|| "undetermined".into())
}

fn plan_view(plan: &TaperPlan, past: &[(NaiveDate, f64)], today: NaiveDate) -> PlanView {
    let preset = &plan.preset;
    let steps: Vec<StepRow> = plan
        .steps
        .iter()
        .map(|step| StepRow {
            number: step.number,
            effective_on: step.effective_on.to_string(),
            reduced: step.reduced.clone(),
            change: match step.kind.as_str() {
                "dose_reduction" => "dose reduction",
                "interval_extension" => "one dose a day fewer",
                "tail_reduction" => "smallest available reduction",
                _ => "stop",
            },
            regimen: if step.lines.is_empty() {
                "no opioid".into()
            } else {
                step.lines
                    .iter()
                    .map(|line| format!("{}: {}", line.label(), line.describe()))
                    .collect::<Vec<_>>()
                    .join("; ")
            },
            daily_mme: mme_text(step.daily_mme),
            follow_up_due: step.follow_up_due.to_string(),
            products: step.products().iter().map(|product| product.describe()).collect(),
            cut: format!("-{}%", trim_number((step.fraction_of_current * 1000.0).round() / 10.0)),
            acetaminophen: if step.acetaminophen_mg_per_day > 0.0 {
                format!("{} mg", trim_number(step.acetaminophen_mg_per_day))
            } else {
                String::new()
            },
            note: step.note.clone().unwrap_or_default(),
        })
        .collect();
    let mut planned: Vec<(NaiveDate, f64)> = Vec::with_capacity(plan.steps.len() + 1);
    if let Some(original) = plan.original_daily_mme {
        planned.push((today, original));
    }
    planned.extend(plan.steps.iter().map(|step| (step.effective_on, step.daily_mme.unwrap_or(step.planning_mme))));
    PlanView {
        summary: format!(
            "Preset {}: {}% of the original daily dose per {} days, a step every {} days{}. Target: {}. Starts {}.",
            plan.preset_name,
            trim_number(preset.rate_fraction * 100.0),
            preset.window_days,
            preset.step_days,
            if preset.source.is_empty() { String::new() } else { format!(" ({})", preset.source) },
            plan.target.describe(),
            plan.request.start_on
        ),
        attestation: plan.attestation.as_ref().map(|a| format!("{} on {}", a.reason.describe(), a.attested_on)),
        original: format!(
            "{} ({} MME/day)",
            plan.original_lines
                .iter()
                .map(|line| format!("{}: {}", line.label(), line.describe()))
                .collect::<Vec<_>>()
                .join("; "),
            mme_text(plan.original_daily_mme)
        ),
        steps,
        outcome: match &plan.outcome {
            PlanOutcome::TargetReached { on } => format!("Target reached on {on}."),
            PlanOutcome::NotReached { reason } => format!("Target not reached: {reason}."),
        },
        chart_svg: chart::mme_chart(
            "Daily MME: decided so far (solid) and the proposed taper (dashed)",
            past,
            &planned,
            today,
        ),
    }
}

fn decision_label(decision: &str) -> Result<String, WebError> {
    if !TAPER_DECISIONS.contains(&decision) {
        return Err(WebError::BadRequest(format!("{decision:?} is not a taper decision")));
    }
    Ok(DECISIONS.iter().find(|(key, _)| *key == decision).map(|(_, label)| label.to_string()).unwrap_or_default())
}

async fn preview_page(
    state: &AppState,
    principal: &Principal,
    exception_id: i64,
    form: TaperForm,
    problem: Option<String>,
) -> Result<Response, WebError> {
    let label = decision_label(&form.decision)?;
    let today = state.today();
    let row = screens::exception(&state.store, today, exception_id).await?;
    let part2 = may_see_part2(state, principal, row.patient_id).await?;
    let names = actor_names(state).await?;
    let item = exception_view(&row, today, &names, part2);
    let header = screens::patient_header(&state.store, row.patient_id).await?;
    // A problem at signing (no rationale, a conflict) is shown above the schedule, planned again.
    let (plan, refusal) = match propose(state, principal, row.patient_id, &form).await? {
        Ok(plan) => {
            let decided = screens::decided_mme(&state.store, row.patient_id).await?;
            let past: Vec<(NaiveDate, f64)> =
                decided.iter().filter_map(|p| p.total_daily_mme.map(|m| (p.on_date, m))).collect();
            (Some(plan_view(&plan, &past, today)), problem)
        }
        Err(refusal) => (None, Some(problem.unwrap_or(refusal))),
    };
    let refused = refusal.is_some();
    let mut response = render(&PreviewPage {
        chrome: Chrome::new(state, principal, "/exceptions"),
        item,
        decision_label: label,
        form,
        patient_version: header.version,
        plan,
        refusal,
    })?;
    if refused {
        *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(response)
}

/// `POST /exceptions/{id}/taper/preview`: the proposed schedule, or the planner's refusal.
pub async fn preview(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(exception_id): Path<i64>,
    Form(form): Form<TaperForm>,
) -> Result<Response, WebError> {
    preview_page(&state, &principal, exception_id, form, None).await
}

/// `POST /exceptions/{id}/taper/sign`: plan again, then store the plan and sign the decision together.
pub async fn sign(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(exception_id): Path<i64>,
    Form(form): Form<TaperForm>,
) -> Result<Response, WebError> {
    match store_and_sign(&state, &principal, exception_id, &form).await {
        Ok(()) => Ok(Redirect::to(&format!("/exceptions?signed={exception_id}")).into_response()),
        Err(error @ (WebError::BadRequest(_) | WebError::Conflict(_) | WebError::Store(StoreError::Conflict(_)))) => {
            let mut response =
                preview_page(&state, &principal, exception_id, form.clone(), Some(error.public_message())).await?;
            *response.status_mut() = error.into_response().status();
            Ok(response)
        }
        Err(error) => Err(error),
    }
}

async fn store_and_sign(
    state: &AppState,
    principal: &Principal,
    exception_id: i64,
    form: &TaperForm,
) -> Result<(), WebError> {
    principal.person()?;
    decision_label(&form.decision)?;
    let rationale = form.rationale.trim();
    if rationale.is_empty() {
        return Err(WebError::BadRequest("A written rationale is required.".into()));
    }
    let patient_version =
        form.patient_version.ok_or_else(|| WebError::BadRequest("Preview the schedule before signing.".into()))?;
    let today = state.today();
    let row = screens::exception(&state.store, today, exception_id).await?;
    if row.resolution.is_some() || row.version != form.version {
        return Err(WebError::Conflict("This exception changed since the schedule was shown; review it again.".into()));
    }
    let plan = propose(state, principal, row.patient_id, form).await?.map_err(WebError::BadRequest)?;
    let new_plan = NewTaperPlan {
        started_on: plan.request.start_on,
        rationale: rationale.to_string(),
        steps: plan
            .steps
            .iter()
            .map(|step| NewTaperStep {
                starts_on: step.effective_on,
                regimen: step.regimen.clone(),
                total_daily_mme: step.daily_mme,
            })
            .collect(),
    };
    let decide = DecideForm {
        decision: form.decision.clone(),
        version: form.version,
        rationale: format!("{rationale} [taper plan: {}]", plan_view(&plan, &[], today).summary),
        safety_attestation: None,
        bridge_days: None,
        bridge_quantity: None,
        review_by: None,
        csrf: None,
    };
    // One transaction: the plan (checked against the patient version seen at preview: if anything
    // changed since, the schedule shown may be stale) and the signed resolution commit together.
    sign_decision(state, principal, exception_id, &decide, PlanChange::Store { plan: &new_plan, patient_version })
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// The person around the taper, on the patient page and through the API: check-ins (PEG, withdrawal,
// the patient's wish) that gate each step, goals, readiness, referrals to non-opioid care with their
// status and the opioid-safety class. Staff and physicians record them; a check-in that stops the step
// pauses the plan and asks a physician (refill_app::taper), in one transaction with the screen change.

use axum::Json;
use refill_rules::taper::check_in::{CheckIn, Peg, Wish, Withdrawal};
use refill_store::taper_care::{CareRecord, CareRecordRow, CheckInRecord};

/// What the patient page's taper section shows (`templates/web/patient_taper.html`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TaperCareView {
    /// `active`, `paused`, `completed`, or empty without a plan.
    pub plan_state: String,
    /// Check-ins, newest first: date, PEG score with items, withdrawal, wish, what it did.
    pub check_ins: Vec<CheckInLine>,
    /// Goals, readiness, referrals and classes, newest first, in words.
    pub care: Vec<String>,
    /// The clinic asks for the opioid-safety class (`taper.require_safety_class`) and it is not attended.
    pub class_missing: bool,
    /// A physician prompt at or above `taper.buprenorphine_discussion_mme`.
    pub buprenorphine_prompt: Option<String>,
    /// Today, for the check-in form's default date.
    pub today: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckInLine {
    pub on: String,
    pub peg: String,
    pub withdrawal: &'static str,
    pub wish: &'static str,
}

fn wish_words(wish: Wish) -> &'static str {
    match wish {
        Wish::GoOn => "go on",
        Wish::Pause => "pause",
        Wish::Slow => "slow down",
    }
}

fn care_words(row: &CareRecordRow, part2_open: bool) -> String {
    let words = |text: &str| text.replace('_', " ");
    match &row.record {
        CareRecord::Goal { goal, status } => format!("{}: goal \"{goal}\" ({})", row.on, words(status)),
        CareRecord::Readiness { stage } => format!("{}: readiness, {}", row.on, words(stage)),
        // A referral to addiction counselling can reveal substance-use treatment: masked like Part 2.
        CareRecord::Referral { kind, .. } if kind == "addiction_counselling" && !part2_open => {
            format!("{}: {}", row.on, crate::wording::RESTRICTED)
        }
        CareRecord::Referral { kind, status } => format!("{}: {} ({})", row.on, words(kind), words(status)),
        CareRecord::ClassAttended => format!("{}: opioid-safety class attended", row.on),
    }
}

fn check_in_line(record: &CheckInRecord) -> CheckInLine {
    let c = record.check_in;
    CheckInLine {
        on: c.on.to_string(),
        peg: format!(
            "{} (pain {}, enjoyment {}, activity {})",
            trim_number((c.peg.score() * 10.0).round() / 10.0),
            c.peg.pain,
            c.peg.enjoyment,
            c.peg.activity
        ),
        withdrawal: c.withdrawal.as_str(),
        wish: wish_words(c.wish),
    }
}

/// The taper section of the patient page.
pub async fn care_view(
    state: &AppState,
    patient_id: i64,
    part2_open: bool,
    total_daily_mme: Option<f64>,
) -> Result<TaperCareView, WebError> {
    let today = state.today();
    let patient = PatientId(patient_id);
    let plan_state = state.store.taper_plan_state(patient).await?.map(|(_, state)| state).unwrap_or_default();
    let mut check_ins = state.store.check_ins(patient).await?;
    check_ins.reverse();
    let care = state.store.care_records(patient).await?;
    let policy = &state.policy.taper;
    let class_missing = policy.require_safety_class
        && !plan_state.is_empty()
        && !care.iter().any(|row| row.record == CareRecord::ClassAttended);
    let buprenorphine_prompt = total_daily_mme.filter(|mme| *mme >= policy.buprenorphine_discussion_mme).map(|mme| {
        format!(
            "At {} MME/day: discuss with the patient whether a transition to buprenorphine suits them (a physician's \
             decision with the patient, never an automatic change).",
            trim_number(mme)
        )
    });
    Ok(TaperCareView {
        plan_state,
        check_ins: check_ins.iter().map(check_in_line).collect(),
        care: care.iter().map(|row| care_words(row, part2_open)).collect(),
        class_missing,
        buprenorphine_prompt,
        today: today.to_string(),
    })
}

/// A check-in as the form and the API post it.
#[derive(Debug, Deserialize, Clone)]
pub struct CheckInForm {
    /// Empty: today.
    #[serde(default)]
    pub checked_on: String,
    pub pain: u8,
    pub enjoyment: u8,
    pub activity: u8,
    /// `none`, `mild` or `significant`.
    pub withdrawal: String,
    /// `go_on`, `pause` or `slow`.
    pub wish: String,
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub csrf: Option<String>,
}

impl CheckInForm {
    fn check_in(&self, today: NaiveDate) -> Result<CheckIn, WebError> {
        let on = match self.checked_on.trim() {
            "" => today,
            text => NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| WebError::BadRequest(format!("checked_on: {text:?} is not a date (YYYY-MM-DD)")))?,
        };
        let withdrawal = Withdrawal::parse(&self.withdrawal)
            .ok_or_else(|| WebError::BadRequest("withdrawal: none, mild or significant".into()))?;
        let wish = Wish::parse(&self.wish).ok_or_else(|| WebError::BadRequest("wish: go_on, pause or slow".into()))?;
        let peg = Peg { pain: self.pain, enjoyment: self.enjoyment, activity: self.activity };
        if let Some(problem) = peg.problems().first() {
            return Err(WebError::BadRequest(problem.clone()));
        }
        if self.note.chars().count() > 2000 {
            return Err(WebError::BadRequest("note: at most 2,000 characters".into()));
        }
        Ok(CheckIn { on, peg, withdrawal, wish })
    }
}

/// What recording a check-in did, for the API.
#[derive(Debug, serde::Serialize)]
pub struct CheckInResult {
    pub check_in_id: i64,
    pub stops: Vec<&'static str>,
    pub paused: bool,
    pub exception_id: Option<i64>,
}

async fn record_check_in(
    state: &AppState,
    principal: &Principal,
    patient_id: i64,
    form: &CheckInForm,
) -> Result<CheckInResult, WebError> {
    let user = principal.person()?;
    let today = state.today();
    let check_in = form.check_in(today)?;
    let actor = actor(principal);
    let app = state.app();
    let clinic = state.store.clinic_facts().await?;
    let names = actor_names(state).await?;
    let mut tx = state.store.begin().await?;
    let done = refill_app::taper::record_check_in(
        &app,
        &mut tx,
        &clinic,
        &refill_app::taper::NewCheckIn { patient: PatientId(patient_id), check_in, note: &form.note },
        today,
        &actor,
    )
    .await
    .map_err(|error| super::queue::app_error(error, &names))?;
    super::queue::note_change(state, &mut tx, patient_id, "taper.check_in", &user.display_name).await?;
    tx.commit().await?;
    super::queue::publish_latest(state).await;
    Ok(CheckInResult {
        check_in_id: done.check_in_id,
        stops: done.stops.iter().map(|stop| stop.as_str()).collect(),
        paused: done.paused,
        exception_id: done.exception_id,
    })
}

/// `POST /patients/{id}/taper/check-in` (staff and physicians).
pub async fn check_in_form(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(patient_id): Path<i64>,
    Form(form): Form<CheckInForm>,
) -> Result<Response, WebError> {
    record_check_in(&state, &principal, patient_id, &form).await?;
    Ok(Redirect::to(&format!("/patients/{patient_id}#taper")).into_response())
}

/// `POST /api/patients/{id}/taper/check-ins` (JSON).
pub async fn api_check_in(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(patient_id): Path<i64>,
    Json(form): Json<CheckInForm>,
) -> Result<Response, WebError> {
    Ok(Json(record_check_in(&state, &principal, patient_id, &form).await?).into_response())
}

/// A goal, readiness stage, referral or class attendance as the form and the API post it.
#[derive(Debug, Deserialize, Clone)]
pub struct CareForm {
    /// `goal`, `readiness`, `referral` or `class`.
    pub record: String,
    #[serde(default)]
    pub on: String,
    #[serde(default)]
    pub goal: String,
    /// Goal status (default `active`) or referral status.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub stage: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub csrf: Option<String>,
}

impl CareForm {
    fn record(&self) -> Result<CareRecord, WebError> {
        let status = |default: &str| {
            if self.status.trim().is_empty() { default.to_string() } else { self.status.trim().to_string() }
        };
        Ok(match self.record.as_str() {
            "goal" => CareRecord::Goal { goal: self.goal.trim().to_string(), status: status("active") },
            "readiness" => CareRecord::Readiness { stage: self.stage.trim().to_string() },
            "referral" => CareRecord::Referral { kind: self.kind.trim().to_string(), status: status("suggested") },
            "class" => CareRecord::ClassAttended,
            other => {
                return Err(WebError::BadRequest(format!("record: goal, readiness, referral or class, not {other:?}")));
            }
        })
    }
}

async fn record_care(
    state: &AppState,
    principal: &Principal,
    patient_id: i64,
    form: &CareForm,
) -> Result<i64, WebError> {
    let user = principal.person()?;
    let today = state.today();
    let on = match form.on.trim() {
        "" => today,
        text => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| WebError::BadRequest(format!("on: {text:?} is not a date (YYYY-MM-DD)")))?,
    };
    let record = form.record()?;
    let names = actor_names(state).await?;
    let mut tx = state.store.begin().await?;
    let id = refill_app::taper::record_care(
        &state.app(),
        &mut tx,
        PatientId(patient_id),
        on,
        &record,
        today,
        &actor(principal),
    )
    .await
    .map_err(|error| super::queue::app_error(error, &names))?;
    super::queue::note_change(state, &mut tx, patient_id, "taper.care", &user.display_name).await?;
    tx.commit().await?;
    super::queue::publish_latest(state).await;
    Ok(id)
}

/// `POST /patients/{id}/taper/care` (staff and physicians).
pub async fn care_form(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(patient_id): Path<i64>,
    Form(form): Form<CareForm>,
) -> Result<Response, WebError> {
    record_care(&state, &principal, patient_id, &form).await?;
    Ok(Redirect::to(&format!("/patients/{patient_id}#taper")).into_response())
}

/// `POST /api/patients/{id}/taper/care` (JSON): `{"id": ...}`.
pub async fn api_care_record(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(patient_id): Path<i64>,
    Json(form): Json<CareForm>,
) -> Result<Response, WebError> {
    let id = record_care(&state, &principal, patient_id, &form).await?;
    Ok(Json(serde_json::json!({ "id": id })).into_response())
}

/// `GET /api/patients/{id}/taper`: the taper section as JSON (audited like the patient view).
pub async fn api_care(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(patient_id): Path<i64>,
) -> Result<Response, WebError> {
    let part2 = may_see_part2(&state, &principal, patient_id).await?;
    let mme = state.store.load_patient_facts(PatientId(patient_id), state.today()).await?;
    let total = refill_rules::mme::daily_mme(&mme.regimen, state.policy.factor_set()).total_daily_mme;
    let view = care_view(&state, patient_id, part2, total).await?;
    super::audit_view(
        &state,
        &principal,
        "patient.taper.view",
        "patient",
        Some(patient_id.to_string()),
        Some(patient_id),
        serde_json::json!({ "api": true, "part2_open": part2 }),
    )
    .await?;
    Ok(Json(view).into_response())
}
