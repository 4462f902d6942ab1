//! Enrolling a patient imported from an EHR export (issue 14). A patient with no active opioid order
//! comes in "not enrolled": the daily run does not decide them, so the queue is not filled with "no
//! active order" escalations for people the clinic does not treat. Staff or a physician enrol them
//! (decided at once, and by every daily run after) or dismiss them from the list with a reason.
//!
//! Safety: a patient with an active opioid order is never dismissed (that would drop someone whose
//! supply the clinic must watch; only a physician's signed decision changes their care), and an
//! enrolled patient is never moved back off the daily run here. Each change is audited with its
//! reason in the caller's transaction.

use chrono::NaiveDate;
use refill_rules::PatientId;
use refill_store::{Actor, AuditEvent, Enrolment, Tx};
use serde_json::json;

use crate::decide::{self, Decided, Trigger};
use crate::{App, AppError};

/// The longest dismissal reason kept (a sentence or two, not a note).
pub const MAX_REASON_CHARS: usize = 500;

/// What an enrolment change did.
#[derive(Debug, Clone)]
pub struct EnrolmentChanged {
    /// The patient's new version.
    pub version: i64,
    /// The decision recorded at once when a patient was enrolled.
    pub decided: Option<Decided>,
}

/// Only the refill desk and physicians enrol or dismiss (an admin manages accounts, not patients).
fn check_role(actor: &Actor, what: &str) -> Result<(), AppError> {
    match actor.role.as_str() {
        "staff" | "physician" => Ok(()),
        _ => Err(AppError::Refused(format!("Only the refill desk or a physician can {what} a patient."))),
    }
}

/// Enrol a patient who is not enrolled (or was dismissed): from now on the daily run decides them,
/// and they are decided at once (`today`), so they appear on the queue without waiting for the run.
///
/// # Errors
/// `Refused` for a role other than staff or physician, or a patient already enrolled; `Conflict` when
/// the patient changed since `expected_version`; `NotFound`; store errors.
pub async fn enrol(
    app: &App,
    tx: &mut Tx,
    patient: PatientId,
    expected_version: i64,
    actor: &Actor,
    today: NaiveDate,
) -> Result<EnrolmentChanged, AppError> {
    check_role(actor, "enrol")?;
    let before = tx.patient_enrolment(patient).await?;
    if before.status == Enrolment::Enrolled {
        return Err(AppError::Refused("This patient is already enrolled in the refill clinic.".into()));
    }
    let version = tx.set_enrolment(patient, expected_version, Enrolment::Enrolled, None, actor).await?;
    let event = AuditEvent::new(actor, "patient.enrolled", "patient")
        .resource_id(patient.0.to_string())
        .patient(patient)
        .before(json!({ "enrolment": before.status.as_str() }))
        .after(json!({ "enrolment": Enrolment::Enrolled.as_str() }));
    app.store.append_audit(tx, &event).await?;
    let clinic = app.store.clinic_facts().await?;
    let decided = decide::decide_and_record(app, tx, &clinic, patient, today, actor, Trigger::Rules).await?;
    Ok(EnrolmentChanged { version, decided: Some(decided) })
}

/// Dismiss a not-enrolled patient from the list, with a reason. The record stays; the patient can be
/// enrolled later.
///
/// # Errors
/// `Refused`, in words: a role other than staff or physician, no reason or one too long, a patient
/// who has an active opioid order, or one who is not on the not-enrolled list. `Conflict`, `NotFound`,
/// store errors.
pub async fn dismiss(
    app: &App,
    tx: &mut Tx,
    patient: PatientId,
    expected_version: i64,
    actor: &Actor,
    reason: &str,
) -> Result<EnrolmentChanged, AppError> {
    check_role(actor, "dismiss")?;
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(AppError::Refused("reason: say why this patient is not the refill clinic's.".into()));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(AppError::Refused(format!("reason: keep it under {MAX_REASON_CHARS} characters.")));
    }
    let before = tx.patient_enrolment(patient).await?;
    if before.has_active_order {
        return Err(AppError::Refused(
            "This patient has an active opioid order, so they cannot be dismissed: enrol them, and a physician \
             decides on their care."
                .into(),
        ));
    }
    match before.status {
        Enrolment::NotEnrolled => {}
        Enrolment::Enrolled => {
            return Err(AppError::Refused(
                "This patient is enrolled in the refill clinic; only a physician's signed decision changes their \
                 care."
                    .into(),
            ));
        }
        Enrolment::Dismissed => {
            return Err(AppError::Refused("This patient was already dismissed from the list.".into()));
        }
    }
    let version = tx.set_enrolment(patient, expected_version, Enrolment::Dismissed, Some(reason), actor).await?;
    let event = AuditEvent::new(actor, "patient.enrolment_dismissed", "patient")
        .resource_id(patient.0.to_string())
        .patient(patient)
        .reason(reason)
        .before(json!({ "enrolment": before.status.as_str() }))
        .after(json!({ "enrolment": Enrolment::Dismissed.as_str() }));
    app.store.append_audit(tx, &event).await?;
    Ok(EnrolmentChanged { version, decided: None })
}
