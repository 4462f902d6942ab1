//! The daily pipeline: one `DailyPipeline` job per site and clinic date fans out into `DailyChunk`
//! jobs by patient-id range, so every worker shares the day's evaluation; each chunk is idempotent per
//! (patient, clinic date) because its key is `daily_chunk:{site}:{date}:{first}-{last}` and the
//! evaluator's writes are keyed the same way.

use std::sync::Arc;

use chrono::{Datelike, Duration, NaiveDate};
use refill_rules::agreement::{AgreementState, agreement_state};
use refill_rules::policy::Policy;
use refill_rules::uds::{UdsSeed, draw_next_date, uds_tier};
use refill_rules::{
    Decision, Outcome, PatientFacts, PatientId, ReasonCode, RefillRequest, RequestKind, TaperState, UdsKind,
};
use refill_store::decisions::NewDecision;
use refill_store::facts::UdsOrder;
use refill_store::jobs as store_jobs;
use refill_store::{ReminderDates, Store, Tx};

use crate::payload::{JobPayload, ReminderKind};
use crate::runner::{BoxFuture, DailyEvaluator, JobContext, JobScope};

/// Split `[first, last]` into inclusive ranges of at most `size` ids.
pub fn chunk_ranges(first: i64, last: i64, size: i64) -> Vec<(i64, i64)> {
    let size = size.max(1);
    let mut ranges = Vec::new();
    let mut start = first;
    while start <= last {
        let end = start.saturating_add(size - 1).min(last);
        ranges.push((start, end));
        if end == i64::MAX {
            break;
        }
        start = end + 1;
    }
    ranges
}

/// The `DailyPipeline` job: enqueue the chunk jobs for the site's clinic date in the job's transaction.
pub async fn fan_out(
    context: &JobContext,
    scope: &mut JobScope<'_>,
    site: &str,
    date: NaiveDate,
) -> anyhow::Result<()> {
    let daily = context.daily.as_ref().ok_or_else(|| anyhow::anyhow!("the daily evaluator is not configured"))?;
    let Some((first, last)) = daily.patient_id_bounds(scope.store).await? else {
        tracing::info!(%site, %date, "no active patients; nothing to evaluate");
        return Ok(());
    };
    let tx = scope.tx().await?;
    let mut enqueued = 0;
    for (first_patient, last_patient) in chunk_ranges(first, last, context.chunk_size) {
        let chunk = JobPayload::DailyChunk { site: site.to_string(), date, first_patient, last_patient };
        if store_jobs::enqueue(tx, &chunk.to_new_job()).await?.is_some() {
            enqueued += 1;
        }
    }
    tracing::info!(%site, %date, enqueued, "daily pipeline split into chunks");
    Ok(())
}

/// What a synchronous run of the pipeline did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DailySummary {
    pub chunks: u64,
    pub patients_first: Option<i64>,
    pub patients_last: Option<i64>,
    /// Follow-up jobs enqueued: reminders and urgent alerts (duplicates of earlier runs not counted).
    pub follow_ups: u64,
}

/// Run the whole daily pipeline for `site` and `date` in this process, chunk by chunk, each chunk in
/// its own transaction (the same work the `DailyChunk` jobs do, without the queue). Idempotent: running
/// it twice for the same date records nothing new. `refill jobs run-daily` and the demo use it.
pub async fn run_daily(
    store: &Store,
    daily: &dyn DailyEvaluator,
    site: &str,
    date: NaiveDate,
    chunk_size: i64,
) -> anyhow::Result<DailySummary> {
    let mut summary = DailySummary::default();
    let Some((first, last)) = daily.patient_id_bounds(store).await? else { return Ok(summary) };
    summary.patients_first = Some(first);
    summary.patients_last = Some(last);
    for (first_patient, last_patient) in chunk_ranges(first, last, chunk_size) {
        let mut tx = store.begin().await?;
        let follow_ups = daily.evaluate_range(&mut tx, site, date, first_patient, last_patient).await?;
        for job in follow_ups {
            if store_jobs::enqueue(&mut tx, &job.to_new_job()).await?.is_some() {
                summary.follow_ups += 1;
            }
        }
        tx.commit().await?;
        summary.chunks += 1;
    }
    Ok(summary)
}

/// The real evaluator: facts from the store in bulk, the refill policy from `refill-rules`, decisions,
/// queue rows and exceptions through the store's `record_decision` (deduplicated by
/// `daily:{date}:{patient}`), UDS draws and taper steps, and patient reminders and urgent physician
/// alerts as follow-up jobs.
pub struct StoreEvaluator {
    pub store: Store,
    pub policy: Arc<Policy>,
    pub policy_version: String,
    /// The clinic's UDS seed (secret; the algorithm is stored with each draw so it can be replayed).
    pub uds_seed: UdsSeed,
}

impl StoreEvaluator {
    /// Decide one patient for `date` and write everything that follows in `tx`; returns the follow-up
    /// jobs (reminders, and the urgent alert when the decision escalates as urgent).
    async fn evaluate_patient(
        &self,
        tx: &mut Tx,
        facts: &PatientFacts,
        clinic: &refill_rules::ClinicFacts,
        date: NaiveDate,
        dates: ReminderDates,
    ) -> anyhow::Result<Vec<JobPayload>> {
        let patient = facts.patient_id;
        let request = RefillRequest { requested_on: date, regimen: facts.regimen.clone(), kind: RequestKind::Routine };
        let decision = refill_rules::refill::evaluate(facts, clinic, &request, &self.policy, &self.policy_version);
        let actor = refill_store::Actor::system();
        let new = NewDecision {
            patient_id: patient,
            clinic_date: date,
            refill_request_id: None,
            decision: &decision,
            decided_by: &actor,
            run_out_on: supply_runs_out(facts),
            dedupe_key: Some(format!("daily:{date}:{}", patient.0)),
        };
        self.store.record_decision(tx, &new).await?;
        self.draw_uds_if_needed(tx, facts, date).await?;
        self.apply_taper_step(tx, facts, date).await?;
        let mut follow_ups = reminders(facts, &decision, date, &self.policy, dates);
        follow_ups.extend(urgent_alert(facts.patient_id, &decision, date));
        Ok(follow_ups)
    }

    /// A patient without a drawn scheduled test gets one, drawn from the last test (or from the
    /// minimum gap before today when never tested). The draw is deterministic for (seed, patient,
    /// period), and the store keeps one order per (kind, due date), so repeats change nothing.
    async fn draw_uds_if_needed(&self, tx: &mut Tx, facts: &PatientFacts, date: NaiveDate) -> anyhow::Result<()> {
        if facts.uds.scheduled_due.is_some() {
            return Ok(());
        }
        let policy = &self.policy.uds;
        let last_test = facts
            .uds
            .results
            .iter()
            .map(|r| r.collected_on)
            .max()
            .unwrap_or(date - Duration::days(policy.min_gap_days));
        let mme = facts.last_decision.as_ref().and_then(|d| d.total_daily_mme);
        let tier = uds_tier(facts.risk_tier, mme, false, policy);
        let period_index = facts.uds.results.len() as u64;
        let drawn = draw_next_date(last_test, tier, &self.uds_seed, facts.patient_id, period_index, policy)?;
        let order = UdsOrder {
            kind: UdsKind::Scheduled,
            due_on: drawn.date,
            drawn_on: date,
            seed: Some(self.uds_seed.seed as i64),
            algorithm: Some(drawn.algorithm.clone()),
            period_start: Some(drawn.window_start),
            period_end: Some(drawn.window_end),
            created_by: "system".to_string(),
        };
        tx.insert_uds_order(facts.patient_id, &order).await?;
        Ok(())
    }

    /// The taper step that starts today becomes the regimen of record.
    async fn apply_taper_step(&self, tx: &mut Tx, facts: &PatientFacts, date: NaiveDate) -> anyhow::Result<()> {
        if let Some(taper) = &facts.taper
            && taper.state == TaperState::Active
            && taper.step_started_on == date
            && taper.step_regimen != facts.regimen
        {
            let system = refill_store::Actor::system();
            let plan = refill_store::TaperPlanId(taper.plan_id);
            self.store
                .apply_taper_step_in(tx, facts.patient_id, plan, taper.step_started_on, &taper.step_regimen, &system)
                .await?;
        }
        Ok(())
    }
}

/// The date the supply of the latest fill runs out (orders the queue by urgency).
fn supply_runs_out(facts: &PatientFacts) -> Option<NaiveDate> {
    facts.fills.iter().map(|fill| fill.filled_on + Duration::days(i64::from(fill.days_supply))).max()
}

/// The Friday after `date` (1 to 7 days ahead): overdue items are reminded at most once a week, with
/// "please call us before Friday ..." as the one date in the message.
fn next_friday(date: NaiveDate) -> NaiveDate {
    let ahead = (4 + 7 - i64::from(date.weekday().num_days_from_monday())) % 7;
    date + Duration::days(if ahead == 0 { 7 } else { ahead })
}

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

/// The window of preparation ages the daily pipeline asks the store about.
pub fn missed_pickup_window() -> std::ops::RangeInclusive<i64> {
    MISSED_PICKUP_AFTER_DAYS..=MISSED_PICKUP_LOOK_BACK_DAYS
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

/// The immediate physician alert for a decision that escalates as urgent, keyed by patient and clinic
/// date: re-running the day adds none, a patient still urgent the next day is alerted again.
pub fn urgent_alert(patient: PatientId, decision: &Decision, date: NaiveDate) -> Option<JobPayload> {
    (decision.outcome == Outcome::EscalateUrgent).then_some(JobPayload::UrgentAlert { patient: patient.0, date })
}

impl DailyEvaluator for StoreEvaluator {
    fn evaluate_range<'a>(
        &'a self,
        tx: &'a mut Tx,
        _site: &'a str,
        date: NaiveDate,
        first: i64,
        last: i64,
    ) -> BoxFuture<'a, anyhow::Result<Vec<JobPayload>>> {
        Box::pin(async move {
            let facts = self.store.load_facts_in_range(PatientId(first), PatientId(last), date).await?;
            let clinic = self.store.clinic_facts().await?;
            let reminder_dates = self
                .store
                .reminder_dates_in_range(
                    PatientId(first),
                    PatientId(last),
                    date,
                    TAPER_STEP_LEAD_DAYS,
                    missed_pickup_window(),
                )
                .await?;
            let mut follow_ups = Vec::new();
            for patient in &facts {
                let dates = reminder_dates.get(&patient.patient_id).copied().unwrap_or_default();
                follow_ups.extend(self.evaluate_patient(tx, patient, &clinic, date, dates).await?);
            }
            tracing::debug!(first, last, patients = facts.len(), "chunk evaluated");
            Ok(follow_ups)
        })
    }

    fn patient_id_bounds<'a>(&'a self, store: &'a Store) -> BoxFuture<'a, anyhow::Result<Option<(i64, i64)>>> {
        Box::pin(async move { Ok(store.patient_id_bounds().await?.map(|(first, last)| (first.0, last.0))) })
    }

    fn run_patient_job<'a>(&'a self, tx: &'a mut Tx, job: &'a JobPayload) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            match job {
                JobPayload::UdsDraw { patient, date } => {
                    let facts = self.store.load_patient_facts(PatientId(*patient), *date).await?;
                    self.draw_uds_if_needed(tx, &facts, *date).await?;
                    Ok(true)
                }
                JobPayload::TaperStep { plan, patient, effective_on, .. } => {
                    let facts = self.store.load_patient_facts(PatientId(*patient), *effective_on).await?;
                    // A step of a plan that was replaced or paused does nothing (the plan's revision
                    // cancels its pending steps; this guards the race).
                    if facts.taper.as_ref().is_some_and(|t| t.plan_id == *plan) {
                        self.apply_taper_step(tx, &facts, *effective_on).await?;
                    }
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{chunk_ranges, missed_pickup_call_before, next_friday};
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

    #[test]
    fn ranges_cover_every_id_once() {
        assert_eq!(chunk_ranges(1, 10, 4), vec![(1, 4), (5, 8), (9, 10)]);
        assert_eq!(chunk_ranges(5, 5, 100), vec![(5, 5)]);
        assert!(chunk_ranges(6, 5, 100).is_empty());
    }
}
