//! The daily run of one chunk of patients (refill-cycle.md): for each active patient, the next
//! scheduled drug test is drawn *before* deciding (so an overdue test shows on day one), a taper step
//! that starts today becomes the regimen of record, the cycle is decided and recorded (idempotent per
//! patient and clinic date), and the patient reminders that follow are returned for the caller to
//! enqueue in the same transaction.

use std::ops::RangeInclusive;

use chrono::{Datelike, Duration, NaiveDate};
use refill_rules::agreement::{AgreementState, agreement_state};
use refill_rules::policy::Policy;
use refill_rules::uds::{UdsSeed, draw_next_date, uds_tier};
use refill_rules::{Decision, PatientFacts, PatientId, ReasonCode, TaperState, UdsKind};
use refill_store::facts::UdsOrder;
use refill_store::job_payload::{JobPayload, ReminderKind};
use refill_store::{Actor, NewDecision, RefillRequestId, ReminderDates, TaperPlanId, Tx};

use crate::decide::{self, Trigger};
use crate::{App, AppError};

/// A "refill window opening" reminder goes out this many days before the window opens (not earlier,
/// so a patient gets it close to the date it is about).
pub const REFILL_WINDOW_LEAD_DAYS: i64 = 3;

/// A "your care plan changes on ..." reminder goes out this many days before a taper step starts: a
/// week lets the patient call with questions before the change.
pub const TAPER_STEP_LEAD_DAYS: i64 = 7;

/// A refill prepared this many days ago or more and not picked up is followed up (pharmacies commonly
/// return unclaimed prescriptions to stock after 7 to 14 days)...
pub const MISSED_PICKUP_AFTER_DAYS: i64 = 5;
/// ...and one prepared longer ago than this is left to staff (the queue shows the run-out).
pub const MISSED_PICKUP_LOOK_BACK_DAYS: i64 = 14;

/// The window of preparation ages the daily run asks the store about.
pub fn missed_pickup_window() -> RangeInclusive<i64> {
    MISSED_PICKUP_AFTER_DAYS..=MISSED_PICKUP_LOOK_BACK_DAYS
}

/// What one chunk of the daily run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChunkReport {
    pub patients: u64,
    /// Decisions newly recorded (a re-run of the same date records none).
    pub decided: u64,
    pub drug_tests_drawn: u64,
    pub taper_steps_applied: u64,
    /// Patient reminders for the caller to enqueue (keyed, so a repeat enqueues nothing).
    pub reminders: Vec<JobPayload>,
}

/// Run the daily cycle for the active patients `first..=last` on `date`, in `tx`, set-based: the
/// chunk's facts in a few range queries, its drug-test draws in one insert, the rules over the whole
/// chunk, then its decisions, queue rows, exceptions and audit events in multi-row statements
/// ([`refill_store::Store::record_decisions`]). Writes the same rows as [`run_chunk_one_by_one`]
/// (`tests/daily_batch.rs` compares them on a generated clinic); idempotent per patient and date.
///
/// # Errors
/// Store errors (roll the chunk back; it is retried as a whole).
pub async fn run_chunk(
    app: &App,
    tx: &mut Tx,
    uds_seed: &UdsSeed,
    date: NaiveDate,
    first: PatientId,
    last: PatientId,
) -> Result<ChunkReport, AppError> {
    let store = &app.store;
    let mut facts = store.load_facts_in_range(first, last, date).await?;
    let clinic = store.clinic_facts().await?;
    let reminder_dates =
        store.reminder_dates_in_range(first, last, date, TAPER_STEP_LEAD_DAYS, missed_pickup_window()).await?;
    let system = Actor::system();
    let mut report = ChunkReport { patients: facts.len() as u64, ..ChunkReport::default() };
    report.drug_tests_drawn = draw_uds_for_chunk(app, tx, uds_seed, &mut facts, date).await?;
    for patient in &mut facts {
        if apply_taper_step(app, tx, patient, date, &system).await? {
            report.taper_steps_applied += 1;
        }
    }
    let evaluated: Vec<(Decision, Option<NaiveDate>)> =
        facts.iter().map(|patient| decide::triggered(app, &clinic, patient, date, Trigger::Rules)).collect();
    let news: Vec<NewDecision<'_>> = facts
        .iter()
        .zip(&evaluated)
        .map(|(patient, (decision, run_out_on))| NewDecision {
            patient_id: patient.patient_id,
            clinic_date: date,
            refill_request_id: patient.open_request.as_ref().map(|r| RefillRequestId(r.id)),
            decision,
            decided_by: &system,
            run_out_on: *run_out_on,
            dedupe_key: Some(daily_key(date, patient.patient_id)),
        })
        .collect();
    let recorded = store.record_decisions(tx, &news).await?;
    for ((patient, (decision, _)), recorded) in facts.iter().zip(&evaluated).zip(&recorded) {
        decide::alert_if_urgent(tx, patient.patient_id, date, decision, recorded).await?;
        if recorded.created {
            report.decided += 1;
        }
        let dates = reminder_dates.get(&patient.patient_id).copied().unwrap_or_default();
        report.reminders.extend(reminders(patient, decision, date, &app.policy, dates));
    }
    tracing::debug!(first = first.0, last = last.0, patients = report.patients, "chunk evaluated");
    Ok(report)
}

/// The idempotency key of a patient's daily decision.
fn daily_key(date: NaiveDate, patient: PatientId) -> String {
    format!("daily:{date}:{}", patient.0)
}

/// The daily cycle of a chunk one patient at a time (draw, taper step, decide-and-record per patient):
/// the reference the set-based [`run_chunk`] must match, kept for that comparison.
///
/// # Errors
/// Store errors.
pub async fn run_chunk_one_by_one(
    app: &App,
    tx: &mut Tx,
    uds_seed: &UdsSeed,
    date: NaiveDate,
    first: PatientId,
    last: PatientId,
) -> Result<ChunkReport, AppError> {
    let store = &app.store;
    let mut facts = store.load_facts_in_range(first, last, date).await?;
    let clinic = store.clinic_facts().await?;
    let reminder_dates =
        store.reminder_dates_in_range(first, last, date, TAPER_STEP_LEAD_DAYS, missed_pickup_window()).await?;
    let system = Actor::system();
    let mut report = ChunkReport::default();
    for patient in &mut facts {
        report.patients += 1;
        if draw_uds_if_needed(app, tx, uds_seed, patient, date).await? {
            report.drug_tests_drawn += 1;
        }
        if apply_taper_step(app, tx, patient, date, &system).await? {
            report.taper_steps_applied += 1;
        }
        let key = daily_key(date, patient.patient_id);
        let decided = decide::record(app, tx, &clinic, patient, date, &system, Trigger::Rules, Some(key)).await?;
        if decided.recorded.created {
            report.decided += 1;
        }
        let dates = reminder_dates.get(&patient.patient_id).copied().unwrap_or_default();
        report.reminders.extend(reminders(patient, &decided.decision, date, &app.policy, dates));
    }
    Ok(report)
}

/// [`draw_uds_if_needed`] for a chunk: the last collections in one query, the orders in one insert.
/// Returns how many dates were drawn.
///
/// # Errors
/// Store errors; a malformed policy.
pub async fn draw_uds_for_chunk(
    app: &App,
    tx: &mut Tx,
    seed: &UdsSeed,
    facts: &mut [PatientFacts],
    date: NaiveDate,
) -> Result<u64, AppError> {
    let undrawn: Vec<PatientId> =
        facts.iter().filter(|f| f.uds.scheduled_due.is_none()).map(|f| f.patient_id).collect();
    if undrawn.is_empty() {
        return Ok(0);
    }
    let collections = tx.last_uds_collections(&undrawn).await?;
    let mut orders = Vec::with_capacity(undrawn.len());
    for patient in facts.iter_mut().filter(|f| f.uds.scheduled_due.is_none()) {
        let order = plan_uds_draw(app, seed, patient, date, collections.get(&patient.patient_id).copied())?;
        patient.uds.scheduled_due = Some(order.due_on);
        orders.push((patient.patient_id, order));
    }
    tx.insert_uds_orders(&orders).await?;
    Ok(orders.len() as u64)
}

/// The scheduled drug-test order of a patient without one: drawn from the last result or collection
/// (or from the minimum gap before today when never tested), deterministic for (seed, patient,
/// period).
fn plan_uds_draw(
    app: &App,
    seed: &UdsSeed,
    facts: &PatientFacts,
    date: NaiveDate,
    last_collection: Option<NaiveDate>,
) -> Result<UdsOrder, AppError> {
    let policy = &app.policy.uds;
    let last_result = facts.uds.results.iter().map(|r| r.collected_on).max();
    let last_test = last_result.max(last_collection).unwrap_or(date - Duration::days(policy.min_gap_days));
    let mme = facts.last_decision.as_ref().and_then(|d| d.total_daily_mme);
    let tier = uds_tier(facts.risk_tier, mme, false, policy);
    let period_index = facts.uds.results.len() as u64;
    let drawn = draw_next_date(last_test, tier, seed, facts.patient_id, period_index, policy)
        .map_err(|e| AppError::Refused(format!("drug test draw: {e}")))?;
    Ok(UdsOrder {
        kind: UdsKind::Scheduled,
        due_on: drawn.date,
        drawn_on: date,
        seed: Some(seed.seed as i64),
        algorithm: Some(drawn.algorithm.clone()),
        period_start: Some(drawn.window_start),
        period_end: Some(drawn.window_end),
        created_by: "system".to_string(),
    })
}

/// A patient without a drawn scheduled test gets one, drawn from the last collection (or from the
/// minimum gap before today when never tested). The draw is deterministic for (seed, patient,
/// period), and the store keeps one order per (kind, due date), so repeats change nothing. The drawn
/// date is put into `facts`, so the decision that follows sees it. Returns whether a date was drawn.
///
/// # Errors
/// Store errors; a malformed policy.
pub async fn draw_uds_if_needed(
    app: &App,
    tx: &mut Tx,
    seed: &UdsSeed,
    facts: &mut PatientFacts,
    date: NaiveDate,
) -> Result<bool, AppError> {
    if facts.uds.scheduled_due.is_some() {
        return Ok(false);
    }
    let last_collection = tx.last_uds_collection(facts.patient_id).await?;
    let order = plan_uds_draw(app, seed, facts, date, last_collection)?;
    tx.insert_uds_order(facts.patient_id, &order).await?;
    facts.uds.scheduled_due = Some(order.due_on);
    Ok(true)
}

/// The taper step that starts on `date` becomes the regimen of record (in `facts` too). Returns whether
/// a step was applied.
///
/// # Errors
/// Store errors.
pub async fn apply_taper_step(
    app: &App,
    tx: &mut Tx,
    facts: &mut PatientFacts,
    date: NaiveDate,
    actor: &Actor,
) -> Result<bool, AppError> {
    let Some(taper) = &facts.taper else { return Ok(false) };
    if taper.state != TaperState::Active || taper.step_started_on != date || taper.step_regimen == facts.regimen {
        return Ok(false);
    }
    // Never a step without a check-in that lets it (crate::taper): else the plan pauses for a physician.
    if !crate::taper::step_may_start(app, tx, facts, date, actor).await? {
        *facts = tx.load_patient_facts(facts.patient_id, date).await?;
        return Ok(false);
    }
    let plan = TaperPlanId(taper.plan_id);
    let regimen = taper.step_regimen.clone();
    app.store.apply_taper_step_in(tx, facts.patient_id, plan, date, &regimen, actor).await?;
    facts.regimen = regimen;
    Ok(true)
}

/// The Friday after `date` (1 to 7 days ahead): overdue items are reminded at most once a week, with
/// "please call us before Friday ..." as the one date in the message.
pub fn next_friday(date: NaiveDate) -> NaiveDate {
    let ahead = (4 + 7 - i64::from(date.weekday().num_days_from_monday())) % 7;
    date + Duration::days(if ahead == 0 { 7 } else { ahead })
}

/// Patient reminders that follow from today's facts and decision and from the reminder dates the store
/// found (coming taper step, refill prepared and not picked up). Each is keyed by the date it is about,
/// so the same reminder is enqueued once however many days the condition holds.
pub fn reminders(
    facts: &PatientFacts,
    decision: &Decision,
    date: NaiveDate,
    policy: &Policy,
    dates: ReminderDates,
) -> Vec<JobPayload> {
    let patient = facts.patient_id.0;
    let reminder = |reminder, about| JobPayload::PatientReminder { patient, reminder, about, date };
    let mut out = Vec::new();
    if let Some(eligible_on) = decision.eligible_on
        && eligible_on > date
        && eligible_on - date <= Duration::days(REFILL_WINDOW_LEAD_DAYS)
    {
        out.push(reminder(ReminderKind::RefillWindowOpening, eligible_on));
    }
    match agreement_state(facts.agreement.as_ref(), facts.prescriber_of_record.as_ref(), date, &policy.agreement) {
        AgreementState::RenewalDueSoon { expires_on } | AgreementState::Due { expires_on } => {
            out.push(reminder(ReminderKind::AgreementRenewal, expires_on));
        }
        _ => {}
    }
    if decision.reasons.iter().any(|r| r.code == ReasonCode::PhysicianReviewOverdue) {
        out.push(reminder(ReminderKind::VisitDue, next_friday(date)));
    }
    if let Some(step_on) = dates.next_taper_step_on
        && step_on > date
        && step_on - date <= Duration::days(TAPER_STEP_LEAD_DAYS)
    {
        out.push(reminder(ReminderKind::TaperStepComing, step_on));
    }
    if let Some(prepared_on) = dates.unpicked_refill_prepared_on
        && let Some(call_before) = missed_pickup_call_before(prepared_on, date)
    {
        out.push(reminder(ReminderKind::MissedPickup, call_before));
    }
    out
}

/// The one date of a missed-pickup follow-up for a refill prepared on `prepared_on`: the Friday after
/// it became overdue. Derived from the preparation date, not from today, so every daily run of the
/// window yields the same key and the patient hears once; `None` outside the window.
pub fn missed_pickup_call_before(prepared_on: NaiveDate, date: NaiveDate) -> Option<NaiveDate> {
    let overdue_on = prepared_on + Duration::days(MISSED_PICKUP_AFTER_DAYS);
    let call_before = next_friday(overdue_on);
    (date >= overdue_on && date < call_before).then_some(call_before)
}

#[cfg(test)]
mod tests {
    use super::{missed_pickup_call_before, next_friday};
    use chrono::NaiveDate;

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn a_missed_pickup_is_followed_up_once_with_a_date_ahead() {
        // Prepared Monday 30 November: overdue from Saturday 5 December, "call us before Friday 11th".
        let prepared = day("2026-11-30");
        assert_eq!(missed_pickup_call_before(prepared, day("2026-12-04")), None, "not overdue yet");
        let keys: Vec<_> = ["2026-12-05", "2026-12-07", "2026-12-10"]
            .iter()
            .map(|today| missed_pickup_call_before(prepared, day(today)))
            .collect();
        assert_eq!(keys, vec![Some(day("2026-12-11")); 3], "one key for the whole window");
        assert_eq!(missed_pickup_call_before(prepared, day("2026-12-11")), None, "the date has come");
    }

    #[test]
    fn visit_reminders_point_at_the_next_friday() {
        let monday = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        assert_eq!(next_friday(monday), NaiveDate::from_ymd_opt(2026, 12, 4).unwrap());
        let friday = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
        assert_eq!(next_friday(friday), NaiveDate::from_ymd_opt(2026, 12, 11).unwrap());
    }
}
