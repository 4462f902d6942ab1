//! Check-ins before taper steps, and the gate the daily run passes before a step takes effect
//! (refill-cycle.md "Tapers in the cycle"). A check-in records PEG, withdrawal and the patient's wish;
//! when it shows significant withdrawal, worse function, or a wish to pause or slow, the plan pauses
//! (the step in force stays) and a physician is asked with a note saying why. The gate lets a step
//! start only after a check-in that lets it; a missing one pauses the step the same way. A pause is
//! never a stop: only a physician resumes, slows or revises the plan.

use chrono::{Duration, NaiveDate};
use refill_rules::taper::BUPRENORPHINE_FLAG;
use refill_rules::taper::check_in::{self, CheckIn, Gate, StopReason};
use refill_rules::{ClinicFacts, PatientFacts, PatientId};
use refill_store::taper_care::CareRecord;
use refill_store::{Actor, Tx};

use crate::decide::{self, Trigger};
use crate::{App, AppError};

/// What a check-in did.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckInOutcome {
    pub check_in_id: i64,
    /// Why the taper does not go on (empty: it goes on).
    pub stops: Vec<StopReason>,
    /// The plan in force was paused by this check-in.
    pub paused: bool,
    /// The exception a physician will see, when one was raised.
    pub exception_id: Option<i64>,
}

/// A check-in as recorded at the desk or by phone.
#[derive(Debug, Clone)]
pub struct NewCheckIn<'a> {
    pub patient: PatientId,
    pub check_in: CheckIn,
    /// What the patient said, in words (kept on the row, out of the audit detail).
    pub note: &'a str,
}

/// Record a goal, the stage of readiness, a referral or class attendance for the patient (staff or
/// physician), dated `on`. Audited by the store in the caller's transaction.
///
/// # Errors
/// `Refused` for a date after today or a record the store finds invalid; store errors.
pub async fn record_care(
    app: &App,
    tx: &mut Tx,
    patient: PatientId,
    on: NaiveDate,
    record: &CareRecord,
    today: NaiveDate,
    actor: &Actor,
) -> Result<i64, AppError> {
    if on > today {
        return Err(AppError::Refused(format!("on: {on} is after today")));
    }
    Ok(app.store.insert_care_record_in(tx, patient, on, record, actor).await?)
}

/// Record a check-in for the patient (staff or physician).
///
/// # Errors
/// `Refused` for a date after today or a PEG item above 10; store errors.
pub async fn record_check_in(
    app: &App,
    tx: &mut Tx,
    clinic: &ClinicFacts,
    input: &NewCheckIn<'_>,
    today: NaiveDate,
    actor: &Actor,
) -> Result<CheckInOutcome, AppError> {
    let (patient, check_in, note) = (input.patient, &input.check_in, input.note);
    if check_in.on > today {
        return Err(AppError::Refused(format!("check-in date {} is after today", check_in.on)));
    }
    let problems = check_in.peg.problems();
    if !problems.is_empty() {
        return Err(AppError::Refused(problems.join("; ")));
    }
    // The plan signed for the patient, started or not (a check-in before the first step counts too).
    let plan = tx.taper_plan_state_in(patient).await?;
    let plan_id = plan.as_ref().map(|(id, _)| *id);
    let previous =
        tx.check_ins_in(patient).await?.into_iter().map(|record| record.check_in).rfind(|c| c.on <= check_in.on);
    let check_in_id = app.store.insert_check_in_in(tx, patient, plan_id, check_in, note, actor).await?;
    let stops = check_in::assess(check_in, previous.as_ref());
    let active = plan.as_ref().is_some_and(|(_, state)| state == "active");
    if stops.is_empty() || !active {
        return Ok(CheckInOutcome { check_in_id, stops, paused: false, exception_id: None });
    }
    let context = format!("Check-in on {}.", check_in.on);
    let exception_id = hold_for_physician(app, tx, clinic, patient, today, actor, &stops, &context).await?;
    Ok(CheckInOutcome { check_in_id, stops, paused: true, exception_id })
}

/// Whether the taper step starting on `date` may take effect: a check-in since the previous step (at
/// most `max_follow_up_gap_days` old) lets it. Otherwise the plan pauses and a physician is asked, and
/// the step is not applied. Called by the daily run before it applies a step.
///
/// # Errors
/// Store errors.
pub async fn step_may_start(
    app: &App,
    tx: &mut Tx,
    facts: &PatientFacts,
    date: NaiveDate,
    actor: &Actor,
) -> Result<bool, AppError> {
    let Some(taper) = &facts.taper else { return Ok(false) };
    let gap = app.policy.taper.max_follow_up_gap_days;
    let previous_step = app.store.previous_taper_step_on_in(tx, taper.plan_id, date).await?;
    let not_before = previous_step.unwrap_or(date - Duration::days(gap));
    let check_ins: Vec<CheckIn> = tx.check_ins_in(facts.patient_id).await?.into_iter().map(|r| r.check_in).collect();
    match check_in::gate(date, not_before, gap, &check_ins) {
        Gate::Ready(_) => Ok(true),
        Gate::Stop(reasons) => {
            // A stop the check-in itself raised has paused the plan already; only a missed one is new.
            if reasons.contains(&StopReason::MissedCheckIn) {
                let clinic = app.store.clinic_facts().await?;
                let context = format!("The taper step due on {date} had no check-in since {not_before}.");
                hold_for_physician(app, tx, &clinic, facts.patient_id, date, actor, &reasons, &context).await?;
            }
            Ok(false)
        }
    }
}

/// Pause the plan in force and send the patient to a physician with a note saying why.
#[allow(clippy::too_many_arguments)]
async fn hold_for_physician(
    app: &App,
    tx: &mut Tx,
    clinic: &ClinicFacts,
    patient: PatientId,
    today: NaiveDate,
    actor: &Actor,
    reasons: &[StopReason],
    context: &str,
) -> Result<Option<i64>, AppError> {
    let why: Vec<&str> = reasons.iter().map(|reason| reason.describe()).collect();
    let reason_text = format!("taper step paused: {}", why.join("; "));
    app.store.pause_taper_plan_in(tx, patient, today, actor, &reason_text).await?;
    let decided = decide::decide_and_record(app, tx, clinic, patient, today, actor, Trigger::SendToPhysician).await?;
    let Some(exception) = decided.recorded.exception_id else { return Ok(None) };
    let mut note = format!(
        "{context} The taper step is paused ({}); the dose in force continues. A physician decides: resume, slow, \
         or revise the plan with the patient.",
        why.join("; ")
    );
    // The patient's own limit, repeated: the prompt to discuss options (never an automatic change).
    let pauses = app.store.taper_pauses_in(tx, patient).await?;
    if reasons.iter().any(|reason| reason.is_patients()) && pauses >= app.policy.taper.pauses_before_flag as i64 {
        note.push_str(&format!(" The taper has paused {pauses} times: {BUPRENORPHINE_FLAG}."));
    }
    app.store.add_exception_note_in(tx, exception, patient, &note, actor).await?;
    Ok(Some(exception.0))
}
