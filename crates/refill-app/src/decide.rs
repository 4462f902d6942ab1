//! Decide-and-record: the rules run on the facts as the transaction sees them, and the decision, its
//! queue row, its exception, the urgent alert it implies and the audit event are written in the same
//! transaction. The daily run, every staff action and every physician signature come through here.

use chrono::NaiveDate;
use refill_rules::cycle::{self, supply_runs_out_on};
use refill_rules::{ClinicFacts, Decision, Outcome, PatientFacts, PatientId};
use refill_store::job_payload::JobPayload;
use refill_store::{Actor, NewDecision, RecordedDecision, RefillRequestId, Tx, jobs};

use crate::{App, AppError};

/// Why the decision is being made, which may raise it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The rules' decision stands as it is (the daily run, a recorded fact, a signature).
    Rules,
    /// Staff sent the patient to a physician: at least ESCALATE (escalating is always allowed; only a
    /// physician's signed decision lowers one).
    SendToPhysician,
}

/// What decide-and-record wrote.
#[derive(Debug, Clone)]
pub struct Decided {
    pub decision: Decision,
    pub recorded: RecordedDecision,
    pub run_out_on: Option<NaiveDate>,
}

/// Decide the patient's cycle on `today` from the facts as `tx` sees them, and record it.
///
/// # Errors
/// Store errors (roll the transaction back).
pub async fn decide_and_record(
    app: &App,
    tx: &mut Tx,
    clinic: &ClinicFacts,
    patient: PatientId,
    today: NaiveDate,
    actor: &Actor,
    trigger: Trigger,
) -> Result<Decided, AppError> {
    let facts = tx.load_patient_facts(patient, today).await?;
    record(app, tx, clinic, &facts, today, actor, trigger, None).await
}

/// The rules' decision for these facts under the clinic's policy, recorded nowhere: what `record`
/// stores and what a CDS Hooks card shows (`crate::cds`), so the two cannot disagree.
pub fn evaluate(app: &App, facts: &PatientFacts, clinic: &ClinicFacts, today: NaiveDate) -> Decision {
    cycle::decide(facts, clinic, today, &app.policy, &app.policy_version)
}

/// `decide_and_record` on facts already loaded (the daily run loads a chunk at once), with an optional
/// idempotency key: a key already recorded writes nothing and returns the first record.
///
/// # Errors
/// Store errors.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    app: &App,
    tx: &mut Tx,
    clinic: &ClinicFacts,
    facts: &PatientFacts,
    today: NaiveDate,
    actor: &Actor,
    trigger: Trigger,
    dedupe_key: Option<String>,
) -> Result<Decided, AppError> {
    let (decision, run_out_on) = triggered(app, clinic, facts, today, trigger);
    let new = NewDecision {
        patient_id: facts.patient_id,
        clinic_date: today,
        refill_request_id: facts.open_request.as_ref().map(|r| RefillRequestId(r.id)),
        decision: &decision,
        decided_by: actor,
        run_out_on,
        dedupe_key,
    };
    let recorded = app.store.record_decision(tx, &new).await?;
    alert_if_urgent(tx, facts.patient_id, today, &decision, &recorded).await?;
    Ok(Decided { decision, recorded, run_out_on })
}

/// The rules' decision on `facts` (raised by the trigger) and the date the supply runs out: the pure
/// part of decide-and-record, which the daily run applies to a whole chunk before writing it.
pub fn triggered(
    app: &App,
    clinic: &ClinicFacts,
    facts: &PatientFacts,
    today: NaiveDate,
    trigger: Trigger,
) -> (Decision, Option<NaiveDate>) {
    let mut decision = evaluate(app, facts, clinic, today);
    if trigger == Trigger::SendToPhysician {
        decision.outcome = decision.outcome.max(Outcome::Escalate);
    }
    (decision, supply_runs_out_on(facts))
}

/// A newly recorded urgent escalation sends its alert at once, whoever raised it (keyed per patient
/// and day: once a day).
///
/// # Errors
/// Store errors.
pub async fn alert_if_urgent(
    tx: &mut Tx,
    patient: PatientId,
    today: NaiveDate,
    decision: &Decision,
    recorded: &RecordedDecision,
) -> Result<(), AppError> {
    if recorded.created && decision.outcome == Outcome::EscalateUrgent {
        let alert = JobPayload::UrgentAlert { patient: patient.0, date: today };
        jobs::enqueue(tx, &alert.to_new_job()).await?;
    }
    Ok(())
}
