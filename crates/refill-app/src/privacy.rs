//! Break the glass: a physician's time-limited access to a patient's 42 CFR Part 2 facts, with a reason
//! in words, the grant, its audit event and the privacy officer's immediate alert in one transaction.

use refill_rules::PatientId;
use refill_store::job_payload::JobPayload;
use refill_store::{Actor, AuditEvent, Tx, accounts, jobs};

use crate::{App, AppError};

/// Why a break-the-glass reason is not a reason: under ten characters, or without words (ten identical
/// characters, digits, punctuation). The reason is read after the fact by the privacy officer.
pub fn reason_problem(reason: &str) -> Option<&'static str> {
    let reason = reason.trim();
    if reason.chars().count() < 10 {
        return Some("Breaking the glass needs a reason of at least 10 characters.");
    }
    let distinct_letters = reason
        .chars()
        .filter(|c| c.is_alphabetic())
        .flat_map(char::to_lowercase)
        .collect::<std::collections::BTreeSet<_>>();
    let words =
        reason.split_whitespace().filter(|word| word.chars().filter(|c| c.is_alphabetic()).count() >= 2).count();
    if distinct_letters.len() < 5 || words < 2 {
        return Some("Breaking the glass needs a reason in words: why this patient's restricted record, now.");
    }
    None
}

/// A break-the-glass access for the physician `user_id` until `expires_at_ms`, in `tx`: the grant, the
/// audit event with the reason, and the privacy officer's alert (a `BreakGlassAlert` job; its email
/// never carries the reason). Returns the grant's id.
///
/// # Errors
/// `Refused` for a reason that is not a reason; store errors.
#[allow(clippy::too_many_arguments)]
pub async fn break_the_glass(
    app: &App,
    tx: &mut Tx,
    physician: &Actor,
    user_id: i64,
    patient: PatientId,
    reason: &str,
    now_ms: i64,
    expires_at_ms: i64,
) -> Result<i64, AppError> {
    let reason = reason.trim();
    if let Some(problem) = reason_problem(reason) {
        return Err(AppError::Refused(problem.into()));
    }
    let grant = accounts::grant_break_glass(tx, user_id, patient.0, reason, now_ms, expires_at_ms).await?;
    let event = AuditEvent::new(physician, "part2.break_glass", "patient")
        .resource_id(patient.0.to_string())
        .patient(patient)
        .reason(reason)
        .detail(serde_json::json!({ "grant_id": grant.id, "expires_at_ms": expires_at_ms, "purpose_of_use": "BTG" }));
    app.store.append_audit(tx, &event).await?;
    jobs::enqueue(tx, &JobPayload::BreakGlassAlert { grant: grant.id }.to_new_job()).await?;
    Ok(grant.id)
}
