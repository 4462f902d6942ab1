//! What the refill desk records and does, each as one use case over the caller's transaction: claim the
//! queue row under the version the screen showed (two desks cannot both win), record the fact or the
//! event, decide the cycle again on the facts as the transaction sees them, and write what follows.
//! Staff can raise an outcome (send to a physician) but never lower one: a hold or an escalation is
//! only answered by a physician's signed decision.

use chrono::NaiveDate;
use refill_rules::{ClinicFacts, Decision, Fill, Outcome, PatientId, RefillWindow, Task, UdsKind, UdsResult};
use refill_store::cycle::NewRefillRequest;
use refill_store::job_payload::JobPayload;
use refill_store::{Actor, AuditEvent, QueueItemId, StaffFact, Tx, jobs};

use crate::decide::{self, Trigger};
use crate::{App, AppError};

/// Who acts, on which patient, from which screen row.
#[derive(Debug, Clone)]
pub struct StaffContext<'a> {
    pub patient: PatientId,
    /// The queue row and the version the screen showed, when the action comes from the queue.
    pub queue_item: Option<(QueueItemId, i64)>,
    pub today: NaiveDate,
    pub actor: &'a Actor,
    /// What staff wrote with the action (required to send a patient to a physician).
    pub note: Option<&'a str>,
}

/// One thing the refill desk does.
#[derive(Debug, Clone)]
pub enum StaffAction {
    /// Record a fact: a PDMP review, an agreement, a naloxone event, a drug-test result taken at the desk.
    Fact(StaffFact),
    /// The pharmacy dispensed: the cycle closes.
    Dispense(Fill),
    /// A refill request (a call, a fax, an EHR order), of its kind.
    Request(NewRefillRequest),
    /// The patient was contacted (audited; the rules run again).
    Contacted,
    /// Send to a physician with a note saying why: at least ESCALATE, the note kept on the exception.
    SendToPhysician,
    /// A drug test was collected (scheduled or for cause); the next scheduled date is drawn by a job.
    CollectUds { kind: UdsKind, collected_on: NaiveDate },
    /// A drug test collected at the desk with its presumptive (point-of-care) result at once.
    CollectUdsWithResult { kind: UdsKind, collected_on: NaiveDate, result: UdsResult },
    /// A presumptive or confirmatory result for a collected test.
    UdsResult { test_id: i64, result: UdsResult },
    /// A collected test's specimen went for confirmatory testing.
    SendUdsForConfirmation { test_id: i64 },
}

/// What the action did.
#[derive(Debug, Clone)]
pub struct StaffOutcome {
    /// The decision now in force for today (none when the action closed the queue row: prepare).
    pub decision: Option<Decision>,
    pub outcome: Option<Outcome>,
    /// The queue row's version a next action must quote, when the patient is on today's queue.
    pub queue_version: Option<i64>,
    /// The drug test the action created, for the screens' next step.
    pub uds_test_id: Option<i64>,
    /// The exception a physician will see, when the action sent the patient to one.
    pub exception_id: Option<i64>,
}

/// Do one staff action in `tx` (see the module documentation).
///
/// # Errors
/// `Refused` when the protocol does not allow it (a hold prepared, a refill not due, a note missing);
/// `Conflict` when another desk acted on the row first; store errors.
pub async fn act(
    app: &App,
    tx: &mut Tx,
    clinic: &ClinicFacts,
    context: &StaffContext<'_>,
    action: &StaffAction,
) -> Result<StaffOutcome, AppError> {
    let note = context.note.map(str::trim).filter(|n| !n.is_empty());
    if matches!(action, StaffAction::SendToPhysician) && note.is_none() {
        return Err(AppError::Refused("Sending to a physician needs a note saying why.".into()));
    }
    // The claim is the check against the screen: two desks working the row at once cannot both win.
    // A request or a dispense is news from outside (a patient, a pharmacy), recorded whatever the row.
    let works_the_row = !matches!(action, StaffAction::Request(_) | StaffAction::Dispense(_));
    if works_the_row && let Some((item, version)) = context.queue_item {
        app.store.claim_queue_item_in(tx, item, version, context.actor).await?;
    }
    let store = &app.store;
    let patient = context.patient;
    let mut uds_test_id = None;
    match action {
        StaffAction::Fact(fact) => {
            let version = tx.patient(patient).await?.version;
            store.record_fact_in(tx, patient, version, fact, context.actor, note).await?;
        }
        StaffAction::Dispense(fill) => {
            if fill.filled_on > context.today {
                return Err(AppError::Refused(format!("dispense date {} is after today", fill.filled_on)));
            }
            let version = tx.patient(patient).await?.version;
            let fact = StaffFact::Fill { fill: fill.clone() };
            store.record_fact_in(tx, patient, version, &fact, context.actor, note).await?;
        }
        StaffAction::Request(request) => {
            if request.requested_on > context.today {
                return Err(AppError::Refused(format!("request date {} is after today", request.requested_on)));
            }
            store.record_refill_request_in(tx, patient, request, context.actor).await?;
        }
        StaffAction::Contacted | StaffAction::SendToPhysician => {
            let (action, default_reason) = match action {
                StaffAction::SendToPhysician => ("queue.send_to_physician", "sent to a physician"),
                _ => ("patient.contacted", "patient contacted"),
            };
            // On the queue the event is about the row (as every queue action is); elsewhere, the patient.
            let mut event = match context.queue_item {
                Some((item, _)) => AuditEvent::new(context.actor, action, "queue_item").resource_id(item.0.to_string()),
                None => AuditEvent::new(context.actor, action, "patient").resource_id(patient.0.to_string()),
            }
            .patient(patient);
            // The note itself goes on the exception (it may quote clinical facts); the trail says why.
            event = event.reason(if action == "patient.contacted" {
                note.unwrap_or(default_reason)
            } else {
                default_reason
            });
            store.append_audit(tx, &event).await?;
        }
        StaffAction::CollectUds { kind, collected_on } => {
            uds_test_id = Some(collect(app, tx, context, *kind, *collected_on).await?);
        }
        StaffAction::CollectUdsWithResult { kind, collected_on, result } => {
            let id = collect(app, tx, context, *kind, *collected_on).await?;
            store.record_uds_test_result_in(tx, id, patient, result, context.actor).await?;
            uds_test_id = Some(id);
        }
        StaffAction::UdsResult { test_id, result } => {
            store.record_uds_test_result_in(tx, *test_id, patient, result, context.actor).await?;
            uds_test_id = Some(*test_id);
        }
        StaffAction::SendUdsForConfirmation { test_id } => {
            store.send_uds_for_confirmation_in(tx, *test_id, patient, context.today, context.actor).await?;
            uds_test_id = Some(*test_id);
        }
    }
    let trigger =
        if matches!(action, StaffAction::SendToPhysician) { Trigger::SendToPhysician } else { Trigger::Rules };
    let decided = decide::decide_and_record(app, tx, clinic, patient, context.today, context.actor, trigger).await?;
    let exception_id = decided.recorded.exception_id;
    if matches!(action, StaffAction::SendToPhysician)
        && let (Some(exception), Some(note)) = (exception_id, note)
    {
        store.add_exception_note_in(tx, exception, patient, note, context.actor).await?;
    }
    let queue_version = match decided.recorded.queue_item_id {
        Some(item) => Some(tx.queue_item(item).await?.version),
        None => None,
    };
    Ok(StaffOutcome {
        outcome: Some(decided.decision.outcome),
        decision: Some(decided.decision),
        queue_version,
        uds_test_id,
        exception_id: exception_id.map(|e| e.0),
    })
}

/// A drug test collected: the test row, the order it fulfils, and the next scheduled date drawn by a job
/// in this commit's wake. Returns the test's id.
async fn collect(
    app: &App,
    tx: &mut Tx,
    context: &StaffContext<'_>,
    kind: UdsKind,
    collected_on: NaiveDate,
) -> Result<i64, AppError> {
    let id = app.store.collect_uds_in(tx, context.patient, kind, collected_on, context.today, context.actor).await?;
    let draw = JobPayload::UdsDraw { patient: context.patient.0, date: context.today };
    jobs::enqueue(tx, &draw.to_new_job()).await?;
    Ok(id)
}

/// Prepare the refill for signature (send it to the pharmacy): the queue row's decision must release it
/// (APPROVE, or APPROVE_WITH_TASKS with no task that must come first, for a refill that is due),
/// whether by the protocol or by a physician's standing decision.
///
/// # Errors
/// `Refused` when the decision does not release the refill; `Conflict` when the row changed.
pub async fn prepare(app: &App, tx: &mut Tx, context: &StaffContext<'_>) -> Result<StaffOutcome, AppError> {
    let note = context.note.map(str::trim).filter(|n| !n.is_empty());
    let (item, version) =
        context.queue_item.ok_or_else(|| AppError::Refused("A refill is prepared from today's queue.".into()))?;
    let row = tx.queue_item(item).await?;
    let decision_id = row.decision_id.ok_or_else(|| AppError::Refused("This row has no decision yet.".into()))?;
    let decision = app.store.decision(decision_id).await?.decision;
    match decision.window {
        RefillWindow::NotDue => {
            let on = decision.eligible_on.map(|d| format!(" (eligible on {d})")).unwrap_or_default();
            return Err(AppError::Refused(format!(
                "The refill is not due yet{on}; record the task that brought the patient here instead."
            )));
        }
        RefillWindow::Prepared => return Err(AppError::Refused("This refill was already prepared.".into())),
        RefillWindow::Open => {}
    }
    match decision.outcome {
        Outcome::Approve | Outcome::ApproveWithTasks => {}
        _ => {
            return Err(AppError::Refused(
                "This refill is on hold or with a physician; staff cannot override it. Send it to a physician with a note."
                    .into(),
            ));
        }
    }
    if let Some(task) = decision.tasks.iter().find(|t| t.blocks_release()) {
        let what = match task {
            Task::ReviewPdmp => "The PDMP review",
            _ => "A required task",
        };
        return Err(AppError::Refused(format!("{what} must be recorded before the refill is prepared.")));
    }
    let done = app
        .store
        .complete_queue_item_in(tx, item, version, context.actor, Some(note.unwrap_or("refill prepared for signature")))
        .await?;
    Ok(StaffOutcome {
        outcome: Some(decision.outcome),
        decision: Some(decision),
        queue_version: Some(done.version),
        uds_test_id: None,
        exception_id: None,
    })
}
