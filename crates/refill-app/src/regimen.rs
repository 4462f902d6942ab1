//! A physician corrects the dose of an active order the rules could not compute MME from ("Daily MME
//! cannot be determined": no dose, an unusable unit, no frequency). The corrected order is written in
//! the caller's transaction with an audit event recording what it said before and after; the caller
//! signs the exception ("Adjust the regimen") in the same transaction, so the correction and the
//! decision made under it commit together or not at all.

use chrono::NaiveDate;
use refill_rules::{DoseQuantity, DoseUnit, MedicationOrder, PatientId};
use refill_store::{Actor, AuditEvent, Tx};
use serde_json::json;

use crate::{App, AppError};

/// The most a single administration may be entered as (a typo guard, in any unit).
const MAX_DOSE: f64 = 10_000.0;
/// The most administrations a day an order may say.
const MAX_DOSES_PER_DAY: f64 = 24.0;

/// A dose as the physician entered it for one order.
#[derive(Debug, Clone)]
pub struct DoseCorrection<'a> {
    pub patient: PatientId,
    /// The order's source id (`MedicationRequest/abc`), as the screen listed it.
    pub order_id: &'a str,
    pub dose: DoseQuantity,
    pub doses_per_day: f64,
    pub today: NaiveDate,
    pub signer: &'a Actor,
}

/// Check a correction's numbers before anything is written.
///
/// # Errors
/// `Refused` naming the field: a dose or frequency that is not a positive number within bounds, or a
/// unit the engine cannot use.
pub fn check(correction: &DoseCorrection<'_>) -> Result<(), AppError> {
    let dose = correction.dose.value;
    if !(dose.is_finite() && dose > 0.0 && dose <= MAX_DOSE) {
        return Err(AppError::Refused(format!("dose: {dose} is not a dose between 0 and {MAX_DOSE}")));
    }
    if let DoseUnit::Unusable(text) = &correction.dose.unit {
        return Err(AppError::Refused(format!("dose unit: {text:?} is not mg, mcg, mL or a dose-form unit")));
    }
    let per_day = correction.doses_per_day;
    if !(per_day.is_finite() && per_day > 0.0 && per_day <= MAX_DOSES_PER_DAY) {
        return Err(AppError::Refused(format!(
            "doses per day: {per_day} is not a number of doses between 0 and {MAX_DOSES_PER_DAY}"
        )));
    }
    Ok(())
}

/// Correct one active order's dose and frequency (see the module documentation). Returns the order as
/// written.
///
/// # Errors
/// `Refused` for numbers out of bounds (see [`check`]); `NotFound` when the patient has no active order
/// with that id; store errors.
pub async fn correct_order_dose(
    app: &App,
    tx: &mut Tx,
    correction: &DoseCorrection<'_>,
) -> Result<MedicationOrder, AppError> {
    check(correction)?;
    let facts = tx.load_patient_facts(correction.patient, correction.today).await?;
    let order = facts
        .regimen
        .iter()
        .find(|order| order.id == correction.order_id)
        .ok_or_else(|| AppError::NotFound(format!("no active order {:?} for this patient", correction.order_id)))?;
    let corrected = MedicationOrder {
        dose: Some(correction.dose.clone()),
        doses_per_day: Some(correction.doses_per_day),
        ..order.clone()
    };
    tx.upsert_medication_order(correction.patient, &corrected, true).await?;
    let event = AuditEvent::new(correction.signer, "order.dose_corrected", "medication_order")
        .resource_id(correction.order_id)
        .patient(correction.patient)
        .detail(json!({
            "before": { "dose": order.dose.as_ref().map(|d| d.value), "unit": order.dose.as_ref().map(|d| unit_name(&d.unit)),
                        "doses_per_day": order.doses_per_day },
            "after": { "dose": correction.dose.value, "unit": unit_name(&correction.dose.unit),
                       "doses_per_day": correction.doses_per_day },
        }));
    app.store.append_audit(tx, &event).await?;
    Ok(corrected)
}

/// The unit's word in the audit trail.
fn unit_name(unit: &DoseUnit) -> String {
    match unit {
        DoseUnit::Milligram => "mg".into(),
        DoseUnit::Microgram => "mcg".into(),
        DoseUnit::Milliliter => "mL".into(),
        DoseUnit::DoseFormUnit => "unit".into(),
        DoseUnit::Unusable(text) => format!("unusable: {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_correction_out_of_bounds_is_refused_naming_the_field() {
        let actor = Actor::system();
        let mut correction = DoseCorrection {
            patient: PatientId(1),
            order_id: "MedicationRequest/1",
            dose: DoseQuantity { value: 10.0, unit: DoseUnit::Milligram },
            doses_per_day: 3.0,
            today: NaiveDate::from_ymd_opt(2026, 12, 1).expect("date"),
            signer: &actor,
        };
        assert!(check(&correction).is_ok());
        correction.doses_per_day = 0.0;
        assert!(matches!(check(&correction), Err(AppError::Refused(m)) if m.starts_with("doses per day")));
        correction.doses_per_day = 2.0;
        correction.dose.value = f64::NAN;
        assert!(matches!(check(&correction), Err(AppError::Refused(m)) if m.starts_with("dose:")));
        correction.dose = DoseQuantity { value: 1.0, unit: DoseUnit::Unusable("puff".into()) };
        assert!(matches!(check(&correction), Err(AppError::Refused(m)) if m.starts_with("dose unit")));
    }
}
