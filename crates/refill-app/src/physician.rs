//! A physician signs an exception: the exception is resolved (signed, hashed, audited), a taper plan is
//! stored, paused or resumed when the decision says so, the physician's benefit-risk review is recorded
//! as a fact, the decision that stands for the cycle is stored with the reasons it covers, and the cycle
//! is decided again under it, all in the caller's transaction.
//!
//! The standing decision is what lets staff prepare what the physician approved: facts recorded later
//! re-run the rules, but the covered reasons stay resolved (refill-cycle.md, "A physician's decision
//! stands").

use chrono::{Duration, NaiveDate};
use refill_rules::cycle::reason_subject;
use refill_rules::{
    ClinicFacts, CoveredReason, Decision, PatientId, PhysicianChoice, PhysicianReview, PrescriberId, ReviewKind,
};
use refill_store::cycle::NewPhysicianDecision;
use refill_store::{
    Actor, ExceptionId, ExceptionRecord, ExceptionResolution, NewTaperPlan, Resolution, StaffFact, TaperPlanId, Tx,
};

use crate::decide::{self, Trigger};
use crate::{App, AppError};

/// What a signed decision does to the patient's taper plan.
#[derive(Debug, Clone, Copy)]
pub enum PlanChange<'a> {
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

/// A bridge: a supply to last while the case is reviewed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bridge {
    pub days: u32,
    pub quantity: Option<f64>,
}

/// A physician's signature on an exception.
#[derive(Debug, Clone)]
pub struct Signature<'a> {
    pub exception: ExceptionId,
    /// The exception's version the physician saw.
    pub version: i64,
    pub resolution: Resolution,
    /// Why, in the physician's words (required).
    pub rationale: &'a str,
    /// Required to stop therapy.
    pub safety_attestation: Option<&'a str>,
    /// Required for a bridge.
    pub bridge: Option<Bridge>,
    /// The decision stands until this date; a bridge without one stands until its last day.
    pub review_by: Option<NaiveDate>,
    pub plan: PlanChange<'a>,
    pub today: NaiveDate,
    pub signer: &'a Actor,
}

/// What the signature did.
#[derive(Debug, Clone)]
pub struct Signed {
    pub exception: ExceptionRecord,
    pub patient: PatientId,
    pub physician_decision_id: i64,
    /// The cycle decided under the new standing decision.
    pub decision: Decision,
}

/// The physician choice a resolution makes.
pub fn choice_for(resolution: Resolution, bridge: Option<Bridge>) -> Result<PhysicianChoice, AppError> {
    Ok(match resolution {
        Resolution::Continue | Resolution::ContinueWithChanges => PhysicianChoice::Approve,
        Resolution::Bridge => {
            let bridge = bridge.ok_or_else(|| AppError::Refused("A bridge needs its number of days.".into()))?;
            PhysicianChoice::Bridge { days: bridge.days }
        }
        Resolution::Taper => PhysicianChoice::Taper,
        Resolution::Hold | Resolution::Refer => PhysicianChoice::Hold,
        Resolution::StopTherapy => PhysicianChoice::Stop,
    })
}

/// Sign an exception (see the module documentation).
///
/// # Errors
/// `Refused` for a missing rationale, a stop without attestation, a bridge without days or a review-by
/// date in the past; `Conflict` when another physician signed first or the patient changed since the
/// preview; store errors.
pub async fn sign(app: &App, tx: &mut Tx, clinic: &ClinicFacts, signature: &Signature<'_>) -> Result<Signed, AppError> {
    let rationale = signature.rationale.trim();
    if rationale.is_empty() {
        return Err(AppError::Refused("A written rationale is required.".into()));
    }
    let attestation = signature.safety_attestation.map(str::trim).filter(|a| !a.is_empty());
    if signature.resolution == Resolution::StopTherapy && attestation.is_none() {
        return Err(AppError::Refused("Stopping therapy outright requires the safety attestation.".into()));
    }
    let choice = choice_for(signature.resolution, signature.bridge)?;
    let review_by = match (signature.review_by, choice) {
        (Some(date), _) => Some(date),
        (None, PhysicianChoice::Bridge { days }) => Some(signature.today + Duration::days(i64::from(days))),
        (None, _) => None,
    };
    let store = &app.store;
    let resolved = store
        .resolve_exception_in(
            tx,
            signature.exception,
            signature.version,
            &ExceptionResolution {
                resolution: signature.resolution,
                rationale: rationale.to_string(),
                safety_attestation: attestation.map(str::to_string),
            },
            signature.signer,
        )
        .await?;
    let patient = resolved.patient_id;
    apply_plan_change(app, tx, patient, signature, rationale).await?;
    // A decision to continue is the physician's benefit-risk review, dated today, for the rules.
    if matches!(
        signature.resolution,
        Resolution::Continue | Resolution::ContinueWithChanges | Resolution::Bridge | Resolution::Taper
    ) {
        let review = PhysicianReview {
            reviewed_on: signature.today,
            physician: PrescriberId(signature.signer.id.clone()),
            kind: ReviewKind::BenefitRisk,
        };
        // The signature above is the check against the screen; the patient's version is whatever it is
        // now in this transaction (a plan stored above has just moved it).
        let version = tx.patient(patient).await?.version;
        let fact = StaffFact::PhysicianReview { review, note: Some(rationale.to_string()) };
        store.record_fact_in(tx, patient, version, &fact, signature.signer, Some(rationale)).await?;
    }
    // What the physician saw: every reason of the decision the exception shows, and what that
    // decision already carried as covered.
    let seen = store.decision(resolved.decision_id).await?.decision;
    let covered: Vec<CoveredReason> = seen
        .reasons
        .iter()
        .chain(seen.covered.iter())
        .map(|reason| CoveredReason { code: reason.code, subject: reason_subject(reason), outcome: reason.outcome })
        .collect();
    let facts = tx.load_patient_facts(patient, signature.today).await?;
    let latest_fill_seen = facts.fills.iter().map(|fill| fill.filled_on).max();
    let physician_decision_id = store
        .record_physician_decision_in(
            tx,
            &NewPhysicianDecision {
                patient_id: patient,
                exception_id: signature.exception,
                decision_id: resolved.decision_id,
                choice,
                covered,
                bridge_quantity: signature.bridge.and_then(|b| b.quantity),
                review_by,
                latest_fill_seen,
                signed_on: signature.today,
            },
            signature.signer,
        )
        .await?;
    let decided =
        decide::decide_and_record(app, tx, clinic, patient, signature.today, signature.signer, Trigger::Rules).await?;
    Ok(Signed { exception: resolved, patient, physician_decision_id, decision: decided.decision })
}

async fn apply_plan_change(
    app: &App,
    tx: &mut Tx,
    patient: PatientId,
    signature: &Signature<'_>,
    rationale: &str,
) -> Result<(), AppError> {
    let store = &app.store;
    let (today, signer) = (signature.today, signature.signer);
    match signature.plan {
        PlanChange::None => {}
        PlanChange::Store { plan, patient_version } => {
            let plan_id = store.create_taper_plan_in(tx, patient, patient_version, plan, signer).await?;
            // A plan whose first step starts today (or earlier) is in force now: today's daily run may be
            // past, so the signature makes that step the regimen of record at once.
            let facts = tx.load_patient_facts(patient, today).await?;
            if let Some(taper) = facts.taper.as_ref().filter(|t| t.plan_id == plan_id.0)
                && taper.step_regimen != facts.regimen
            {
                store
                    .apply_taper_step_in(
                        tx,
                        patient,
                        TaperPlanId(plan_id.0),
                        taper.step_started_on,
                        &taper.step_regimen,
                        signer,
                    )
                    .await?;
            }
        }
        PlanChange::Pause => {
            store.pause_taper_plan_in(tx, patient, today, signer, rationale).await?;
        }
        PlanChange::Resume => {
            store.resume_taper_plan_in(tx, patient, today, signer, rationale).await?;
        }
    }
    Ok(())
}

/// A physician reviewed a drug test's results (the last step of its lifecycle): they no longer
/// escalate, and the cycle is decided again.
///
/// # Errors
/// `Refused` when the test has no result yet or the reviewer is not a physician; store errors.
pub async fn review_drug_test(
    app: &App,
    tx: &mut Tx,
    clinic: &ClinicFacts,
    patient: PatientId,
    test_id: i64,
    today: NaiveDate,
    physician: &Actor,
) -> Result<Decision, AppError> {
    app.store.review_uds_test_in(tx, test_id, patient, today, physician).await?;
    Ok(decide::decide_and_record(app, tx, clinic, patient, today, physician, Trigger::Rules).await?.decision)
}
