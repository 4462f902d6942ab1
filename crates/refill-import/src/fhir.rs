//! FHIR R4 Bundles into the same [`ClinicRecords`] as CSV, through `refill-fhir`'s mapping.
//!
//! FHIR dispenses, observations and consents are mapped by `refill-fhir` without their resource ids,
//! so their natural keys here are built from what identifies them clinically: a fill by its order and
//! date, a drug test by its collection date and method, a PDMP review by its date, an agreement by its
//! signature date and prescriber, a physician review by its date and kind, a naloxone event by its date
//! and kind. Conditions become clinical flags keyed by condition and flag kind; benzodiazepines and
//! opioid-use-disorder treatment are keyed by their MedicationRequest or MedicationStatement, stopped
//! ones imported as inactive. Importing the same bundle again yields the same keys and changes
//! nothing; a corrected quantity on the same fill updates it in place.

use refill_fhir::{FhirError, FhirPatientRecord, MedicationClass};
use refill_rules::{ReviewKind, UdsKind};

use crate::error::{ImportError, Location, Problem};
use crate::records::{
    AgreementRecord, ClinicRecords, ContactPreference, FillRecord, FlagRecord, NaloxoneRecord, OrderRecord,
    OrderStatus, OtherMedicationRecord, PatientRecord, PdmpRecord, ReviewRecord, UdsRecord, UnrecognisedOrderRecord,
};

/// Parse a FHIR R4 Bundle (JSON bytes) into clinic records; every problem names the resource and field.
pub fn parse_fhir_bundle(file_name: &str, bytes: &[u8]) -> Result<ClinicRecords, ImportError> {
    let problem = |location: Location, field: &str, message: String| Problem {
        file: file_name.to_string(),
        location,
        field: field.to_string(),
        message,
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|error| ImportError {
        file: file_name.to_string(),
        problems: vec![problem(Location::Line(error.line() as u64), "", format!("not valid JSON: {error}"))],
    })?;
    let patients = refill_fhir::parse_bundle(&value).map_err(|errors| ImportError {
        file: file_name.to_string(),
        problems: errors.iter().map(|e| fhir_problem(file_name, e)).collect(),
    })?;
    let mut records = ClinicRecords::default();
    let mut problems = Vec::new();
    for patient in &patients {
        add_patient(patient, &mut records, &mut |location, field, message| {
            problems.push(problem(location, field, message))
        });
    }
    if problems.is_empty() { Ok(records) } else { Err(ImportError { file: file_name.to_string(), problems }) }
}

fn fhir_problem(file_name: &str, error: &FhirError) -> Problem {
    let message = match error {
        FhirError::Invalid { message, .. } => message.clone(),
        FhirError::WrongResourceType { expected, found, .. } => format!("expected {expected}, found {found}"),
    };
    Problem {
        file: file_name.to_string(),
        location: Location::Resource(error.resource().to_string()),
        field: error.field().to_string(),
        message,
    }
}

fn add_patient(
    patient: &FhirPatientRecord,
    records: &mut ClinicRecords,
    problem: &mut impl FnMut(Location, &str, String),
) {
    let key = patient.fhir_id.clone();
    let resource = Location::Resource(patient.reference());
    if let Some(demographics) = &patient.demographics {
        let given = demographics.given.clone();
        let family = demographics.family.clone();
        if given.is_none() {
            problem(resource.clone(), "name.given", "a patient needs a given name".into());
        }
        if family.is_none() {
            problem(resource.clone(), "name.family", "a patient needs a family name".into());
        }
        if demographics.birth_date.is_none() {
            problem(resource.clone(), "birthDate", "a patient needs a birth date (adults-only scope)".into());
        }
        if let (Some(given_name), Some(family_name), Some(birth_date)) = (given, family, demographics.birth_date) {
            records.patients.push(PatientRecord {
                origin: resource.clone(),
                external_id: key.clone(),
                mrn: demographics.mrn.clone(),
                family_name,
                given_name,
                birth_date,
                sex: demographics.sex,
                email: demographics.email.clone(),
                phone: demographics.phone.clone(),
                email_consent: false,
                contact_preference: ContactPreference::None,
                part2: false,
                prescriber_of_record: None,
                risk_tier: None,
                previous_prescriber: None,
                // An EHR export carries everyone the EHR knows; only a patient with an active opioid
                // order is the refill clinic's without someone enrolling them.
                enrol_when_new: patient
                    .medication_requests
                    .iter()
                    .any(|r| r.class == MedicationClass::Opioid && r.active),
            });
        }
    }
    for request in patient.medication_requests.iter().filter(|r| r.class == MedicationClass::Opioid) {
        let status = match request.status.as_str() {
            _ if request.active => OrderStatus::Active,
            "on-hold" => OrderStatus::OnHold,
            "completed" => OrderStatus::Completed,
            _ => OrderStatus::Stopped,
        };
        records.orders.push(OrderRecord {
            origin: Location::Resource(request.id.clone()),
            patient_external_id: key.clone(),
            status,
            authored_on: request.authored_on,
            order: request.order.clone(),
        });
    }
    for fill in &patient.fills {
        let order = fill.order_id.as_deref().unwrap_or("-");
        records.fills.push(FillRecord {
            origin: resource.clone(),
            external_id: format!("fhir-fill:{order}:{}", fill.filled_on),
            patient_external_id: key.clone(),
            fill: fill.clone(),
        });
    }
    for result in &patient.uds_results {
        let method = if result.confirmatory { "confirmatory" } else { "screen" };
        let kind = if result.kind == UdsKind::ForCause { "for-cause" } else { "scheduled" };
        records.uds.push(UdsRecord {
            origin: resource.clone(),
            external_id: format!("fhir-uds:{}:{method}:{kind}", result.collected_on),
            patient_external_id: key.clone(),
            result: result.clone(),
        });
    }
    for review in &patient.pdmp_reviews {
        records.pdmp.push(PdmpRecord {
            origin: resource.clone(),
            external_id: format!("fhir-pdmp:{}", review.reviewed_on),
            patient_external_id: key.clone(),
            review: review.clone(),
        });
    }
    for review in &patient.physician_reviews {
        let kind = match &review.kind {
            ReviewKind::BenefitRisk => "benefit-risk".to_string(),
            ReviewKind::BenzodiazepineAcknowledged => "benzodiazepine".to_string(),
            ReviewKind::OutsidePrescriberAcknowledged(prescriber) => format!("outside-{}", prescriber.0),
            ReviewKind::OutsidePrescriberClassAcknowledged(prescriber, class) => {
                format!("outside-{}-{}", prescriber.0, class.as_str())
            }
        };
        records.reviews.push(ReviewRecord {
            origin: resource.clone(),
            external_id: format!("fhir-review:{}:{kind}", review.reviewed_on),
            patient_external_id: key.clone(),
            review: review.clone(),
            note: None,
        });
    }
    for event in &patient.naloxone_events {
        records.naloxone.push(NaloxoneRecord {
            origin: resource.clone(),
            external_id: format!("fhir-naloxone:{}:{:?}", event.on, event.kind).to_lowercase(),
            patient_external_id: key.clone(),
            event: event.clone(),
        });
    }
    for agreement in &patient.agreements {
        records.agreements.push(AgreementRecord {
            origin: resource.clone(),
            external_id: format!("fhir-agreement:{}:{}", agreement.signed_on, agreement.prescriber_of_record.0),
            patient_external_id: key.clone(),
            agreement: agreement.clone(),
        });
    }
    // A condition without a date is dated the day it is first imported (a re-import keeps that date,
    // so the same bundle changes nothing).
    let today = chrono::Utc::now().date_naive();
    // A resolved condition retires the flags it no longer supports (same key, `active` false).
    for condition in &patient.conditions {
        let in_force = condition.flags(today).into_iter().map(|flag| (flag, true));
        let resolved = condition.resolved_flags(today).into_iter().map(|flag| (flag, false));
        for (flag, active) in in_force.chain(resolved) {
            records.flags.push(FlagRecord {
                origin: Location::Resource(condition.id.clone()),
                external_id: format!("fhir-flag:{}:{:?}", condition.id, flag.kind).to_lowercase(),
                patient_external_id: key.clone(),
                flag,
                dated: condition.recorded_on.is_some(),
                active,
            });
        }
    }
    for (source, label, reason, active) in patient.unrecognised_orders_with_status() {
        records.unrecognised_orders.push(UnrecognisedOrderRecord {
            origin: Location::Resource(source.clone()),
            external_id: source,
            patient_external_id: key.clone(),
            label,
            reason,
            active,
        });
    }
    for (source, medication) in patient.other_medication_sources.iter().zip(&patient.other_medications) {
        records.other_medications.push(OtherMedicationRecord {
            origin: Location::Resource(source.clone()),
            external_id: format!("fhir-medication:{source}"),
            patient_external_id: key.clone(),
            medication: medication.clone(),
        });
    }
}
