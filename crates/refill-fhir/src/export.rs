//! Domain facts -> FHIR R4: the writer behind `refill export`, the inverse of this crate's reading so
//! an exported Bundle imports back to the same facts (`tests/export_cli.rs` round-trips it).
//!
//! Written per patient: Patient; the regimen and past opioid orders, benzodiazepine and treatment
//! orders as MedicationRequest; fills and naloxone dispenses as MedicationDispense; drug tests as one
//! Observation per analyte (`<analyte> [Presence] in Urine by Confirmatory method` or `... by Screen`,
//! the words the reader recognises); PDMP and benefit-risk reviews as Procedure (SNOMED); the agreement
//! as Consent. Decisions (GuidanceResponse) and the taper plan in force (CarePlan) are written for the
//! record: the importer reads neither (a decision is the clinic's own, made again from the facts; a
//! taper plan is signed by a physician in the clinic), so they are carried, not re-imported.
//!
//! Part 2: a resource resting on a 42 CFR Part 2 record carries the `42CFRPart2` security label and
//! is written only when asked for (`include_part2`); otherwise it is left out.

use chrono::NaiveDate;
use refill_rules::{
    Confidentiality, Decision, DoseUnit, MedicationOrder, NaloxoneEventKind, OrderPurpose, OtherMedicationClass,
    PatientFacts, ReviewKind, Sex, TaperState,
};
use serde_json::{Value, json};

const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
const SNOMED: &str = "http://snomed.info/sct";
const PDMP_REVIEW_PROCEDURE: &str = "461621000124108";
const BENEFIT_RISK_PROCEDURE: &str = "454281000124100";

/// One patient to export.
#[derive(Debug, Clone)]
pub struct ExportPatient<'a> {
    /// The Patient id written (the clinic's external id: what a re-import matches on).
    pub id: &'a str,
    pub given: &'a str,
    pub family: &'a str,
    pub birth_date: Option<NaiveDate>,
    pub sex: Sex,
    pub mrn: Option<&'a str>,
    pub facts: &'a PatientFacts,
    /// Recorded decisions with their clinic dates, newest first.
    pub decisions: &'a [(NaiveDate, Decision)],
}

/// A FHIR R4 `collection` Bundle of every patient; Part 2 resources only with `include_part2`.
pub fn export_bundle(patients: &[ExportPatient<'_>], include_part2: bool) -> Value {
    let mut entries = Vec::new();
    for patient in patients {
        let mut writer = Writer { patient: patient.id, include_part2, resources: Vec::new() };
        writer.patient(patient);
        writer.facts(patient.facts);
        for (on, decision) in patient.decisions {
            writer.decision(*on, decision);
        }
        entries.extend(writer.resources.into_iter().map(|resource| {
            let url = format!(
                "urn:refill:{}/{}",
                resource["resourceType"].as_str().unwrap_or(""),
                resource["id"].as_str().unwrap_or("")
            );
            json!({ "fullUrl": url, "resource": resource })
        }));
    }
    json!({ "resourceType": "Bundle", "type": "collection", "entry": entries })
}

struct Writer<'a> {
    patient: &'a str,
    include_part2: bool,
    resources: Vec<Value>,
}

/// A FHIR id from any text: `[A-Za-z0-9\-\.]{1,64}`.
fn fhir_id(text: &str) -> String {
    let id: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' }).collect();
    id.chars().take(64).collect()
}

/// `Practitioner/x` stays; a bare identifier becomes `Practitioner/x`.
fn practitioner(reference: &str) -> String {
    if reference.contains('/') { reference.to_string() } else { format!("Practitioner/{}", fhir_id(reference)) }
}

/// A period in days for `doses_per_day` administrations a day, written so the reader computes the
/// same number again (one a day or more: `frequency` per day; fewer: one per `1/x` days, whole when
/// it is whole).
fn timing(doses_per_day: f64) -> Value {
    if doses_per_day >= 1.0 && doses_per_day.fract() == 0.0 {
        return json!({"repeat": {"frequency": doses_per_day as u64, "period": 1, "periodUnit": "d"}});
    }
    let period = 1.0 / doses_per_day;
    let period = if (period - period.round()).abs() < 1e-9 { period.round() } else { period };
    json!({"repeat": {"frequency": 1, "period": period, "periodUnit": "d"}})
}

fn dose_code(unit: &DoseUnit) -> String {
    match unit {
        DoseUnit::Milligram => "mg".into(),
        DoseUnit::Microgram => "ug".into(),
        DoseUnit::Milliliter => "mL".into(),
        DoseUnit::DoseFormUnit => "{unit}".into(),
        DoseUnit::Unusable(text) => text.clone(),
    }
}

fn medication_concept(order: &MedicationOrder) -> Value {
    let mut concept = json!({});
    if let Some(code) = &order.rxcui {
        let mut coding = json!({"system": RXNORM, "code": code});
        if let Some(text) = &order.text {
            coding["display"] = json!(text);
        }
        concept["coding"] = json!([coding]);
    }
    if let Some(text) = &order.text {
        concept["text"] = json!(text);
    }
    concept
}

impl Writer<'_> {
    fn subject(&self) -> Value {
        json!({"reference": format!("Patient/{}", self.patient)})
    }

    /// Add `resource` unless it is Part 2 and Part 2 was not asked for; label it when it is.
    fn push(&mut self, mut resource: Value, confidentiality: Confidentiality) {
        if confidentiality == Confidentiality::Part2 {
            if !self.include_part2 {
                return;
            }
            resource["meta"] = json!({"security": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "42CFRPart2",
                "display": "42 CFR Part2",
            }]});
        }
        self.resources.push(resource);
    }

    fn patient(&mut self, patient: &ExportPatient<'_>) {
        let mut resource = json!({
            "resourceType": "Patient",
            "id": patient.id,
            "name": [{"use": "official", "family": patient.family, "given": [patient.given]}],
            "gender": match patient.sex {
                Sex::Female => "female",
                Sex::Male => "male",
                Sex::Other => "other",
                Sex::Unknown => "unknown",
            },
        });
        if let Some(birth_date) = patient.birth_date {
            resource["birthDate"] = json!(birth_date.to_string());
        }
        if let Some(mrn) = patient.mrn {
            resource["identifier"] = json!([{
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                "value": mrn,
            }]);
        }
        self.resources.push(resource);
    }

    fn order(&mut self, order: &MedicationOrder, active: bool) {
        let mut resource = json!({
            "resourceType": "MedicationRequest",
            "id": fhir_id(order.id.trim_start_matches("MedicationRequest/")),
            "status": if active { "active" } else { "stopped" },
            "intent": "order",
            "subject": self.subject(),
            "medicationCodeableConcept": medication_concept(order),
        });
        if let Some(prescriber) = &order.prescriber {
            resource["requester"] = json!({"reference": practitioner(&prescriber.0)});
        }
        if order.purpose == OrderPurpose::OpioidUseDisorder {
            resource["reasonCode"] = json!([{"coding": [{"system": SNOMED, "code": "5602001",
                "display": "Opioid abuse"}], "text": "opioid use disorder"}]);
        }
        let mut instruction = json!({});
        if let Some(per_day) = order.doses_per_day.filter(|d| *d > 0.0) {
            instruction["timing"] = timing(per_day);
        }
        if let Some(dose) = &order.dose {
            let code = dose_code(&dose.unit);
            instruction["doseAndRate"] = json!([{"doseQuantity": {"value": dose.value, "unit": code, "code": code}}]);
        }
        if instruction.as_object().is_some_and(|o| !o.is_empty()) {
            resource["dosageInstruction"] = json!([instruction]);
        }
        let mut dispense = json!({});
        if let Some(days) = order.days_supply {
            dispense["expectedSupplyDuration"] = json!({"value": days, "unit": "days",
                "system": "http://unitsofmeasure.org", "code": "d"});
        }
        if let Some(quantity) = order.dispense_quantity {
            dispense["quantity"] = json!({"value": quantity});
        }
        if dispense.as_object().is_some_and(|o| !o.is_empty()) {
            resource["dispenseRequest"] = dispense;
        }
        self.push(resource, order.confidentiality);
    }

    fn facts(&mut self, facts: &PatientFacts) {
        for order in &facts.regimen {
            self.order(order, true);
        }
        for order in &facts.past_orders {
            self.order(order, false);
        }
        let all_orders: Vec<&MedicationOrder> = facts.regimen.iter().chain(&facts.past_orders).collect();
        for (at, fill) in facts.fills.iter().enumerate() {
            let order = fill
                .order_id
                .as_deref()
                .and_then(|id| all_orders.iter().find(|o| o.id == id))
                .or_else(|| all_orders.first());
            let Some(order) = order else { continue };
            let mut resource = json!({
                "resourceType": "MedicationDispense",
                "id": format!("{}-fill-{}", fhir_id(self.patient), at + 1),
                "status": "completed",
                "subject": self.subject(),
                "medicationCodeableConcept": medication_concept(order),
                "whenHandedOver": fill.filled_on.to_string(),
                "daysSupply": {"value": fill.days_supply, "unit": "days", "system": "http://unitsofmeasure.org",
                    "code": "d"},
            });
            if let Some(order_id) = &fill.order_id {
                resource["authorizingPrescription"] = json!([{"reference": order_id}]);
            }
            if let Some(quantity) = fill.quantity {
                resource["quantity"] = json!({"value": quantity});
            }
            self.push(resource, order.confidentiality);
        }
        for (at, result) in facts.uds.results.iter().enumerate() {
            let method = if result.confirmatory { "Confirmatory method" } else { "Screen method" };
            for (line, analyte) in result.analytes.iter().enumerate() {
                let resource = json!({
                    "resourceType": "Observation",
                    "id": format!("{}-uds-{}-{}", fhir_id(self.patient), at + 1, line + 1),
                    "status": "final",
                    "category": [{"coding": [{"system":
                        "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                    "code": {"text": format!("{} [Presence] in Urine by {method}", analyte.analyte)},
                    "subject": self.subject(),
                    "effectiveDateTime": result.collected_on.to_string(),
                    "valueString": if analyte.detected { "positive" } else { "negative" },
                });
                self.push(resource, result.confidentiality);
            }
        }
        for (at, review) in facts.pdmp_reviews.iter().enumerate() {
            let resource = json!({
                "resourceType": "Procedure",
                "id": format!("{}-pdmp-{}", fhir_id(self.patient), at + 1),
                "status": "completed",
                "code": {"coding": [{"system": SNOMED, "code": PDMP_REVIEW_PROCEDURE,
                    "display": "Review of prescription drug monitoring program record (procedure)"}]},
                "subject": self.subject(),
                "performedDateTime": review.reviewed_on.to_string(),
            });
            self.push(resource, Confidentiality::Normal);
        }
        for (at, review) in facts.physician_reviews.iter().enumerate() {
            // Acknowledgements of benzodiazepines and outside prescribers are the clinic's own
            // records with no FHIR reading: carried in the decisions' reasons, not re-imported.
            if review.kind != ReviewKind::BenefitRisk {
                continue;
            }
            let resource = json!({
                "resourceType": "Procedure",
                "id": format!("{}-review-{}", fhir_id(self.patient), at + 1),
                "status": "completed",
                "code": {"coding": [{"system": SNOMED, "code": BENEFIT_RISK_PROCEDURE,
                    "display": "Assessment of risk for opioid abuse"}]},
                "subject": self.subject(),
                "performedDateTime": review.reviewed_on.to_string(),
                "performer": [{"actor": {"reference": practitioner(&review.physician.0)}}],
            });
            self.push(resource, Confidentiality::Normal);
        }
        if let Some(agreement) = &facts.agreement {
            let mut resource = json!({
                "resourceType": "Consent",
                "id": format!("{}-agreement", fhir_id(self.patient)),
                "status": if agreement.voided_on.is_some() { "inactive" } else { "active" },
                "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "treatment"}]},
                "category": [{"coding": [{"system": "https://refill-clinic.example/CodeSystem/agreement",
                    "code": "opioid-treatment-agreement", "display": "Opioid treatment agreement"}]}],
                "patient": self.subject(),
                "dateTime": agreement.signed_on.to_string(),
                "performer": [{"reference": practitioner(&agreement.prescriber_of_record.0)}],
                "sourceAttachment": {"title": agreement.text_version},
            });
            if let Some(voided) = agreement.voided_on {
                resource["provision"] = json!({"period": {"start": agreement.signed_on.to_string(),
                    "end": voided.to_string()}});
            }
            self.push(resource, Confidentiality::Normal);
        }
        for (at, event) in facts.naloxone_events.iter().enumerate() {
            let naloxone = json!({"coding": [{"system": RXNORM, "code": "1725065",
                "display": "naloxone hydrochloride 4 MG/ACTUAT Nasal Spray"}],
                "text": "naloxone hydrochloride 4 MG/ACTUAT Nasal Spray"});
            let resource = match event.kind {
                NaloxoneEventKind::Dispensed => json!({
                    "resourceType": "MedicationDispense",
                    "id": format!("{}-naloxone-{}", fhir_id(self.patient), at + 1),
                    "status": "completed",
                    "subject": self.subject(),
                    "medicationCodeableConcept": naloxone,
                    "whenHandedOver": event.on.to_string(),
                }),
                NaloxoneEventKind::Offered => json!({
                    "resourceType": "MedicationRequest",
                    "id": format!("{}-naloxone-{}", fhir_id(self.patient), at + 1),
                    "status": "completed",
                    "intent": "order",
                    "subject": self.subject(),
                    "authoredOn": event.on.to_string(),
                    "medicationCodeableConcept": naloxone,
                }),
                // A declined offer has no FHIR reading in this mapping: left out.
                NaloxoneEventKind::Declined => continue,
            };
            self.push(resource, Confidentiality::Normal);
        }
        for (at, medication) in facts.other_medications.iter().enumerate() {
            let mut resource = json!({
                "resourceType": "MedicationRequest",
                "id": format!("{}-other-{}", fhir_id(self.patient), at + 1),
                "status": if medication.active { "active" } else { "stopped" },
                "intent": "order",
                "subject": self.subject(),
                "medicationCodeableConcept": {"text": medication.text},
            });
            if let Some(started) = medication.started_on {
                resource["authoredOn"] = json!(started.to_string());
            }
            if medication.class == OtherMedicationClass::OudTreatment {
                resource["reasonCode"] = json!([{"text": "opioid use disorder"}]);
            }
            self.push(resource, medication.confidentiality);
        }
        if let Some(taper) = &facts.taper {
            let status = match taper.state {
                TaperState::Active => "active",
                TaperState::Paused => "on-hold",
                TaperState::Completed => "completed",
            };
            let restricted = taper.step_regimen.iter().any(|o| o.confidentiality == Confidentiality::Part2);
            let activity: Vec<Value> = taper
                .step_regimen
                .iter()
                .map(|order| {
                    json!({"detail": {"status": "in-progress", "kind": "MedicationRequest",
                        "productCodeableConcept": medication_concept(order),
                        "scheduledPeriod": {"start": taper.step_started_on.to_string()}}})
                })
                .collect();
            let resource = json!({
                "resourceType": "CarePlan",
                "id": format!("{}-taper-{}", fhir_id(self.patient), taper.plan_id),
                "status": status,
                "intent": "plan",
                "title": "Opioid taper plan signed by a physician (step in force)",
                "subject": self.subject(),
                "period": {"start": taper.started_on.to_string()},
                "activity": activity,
            });
            self.push(resource, if restricted { Confidentiality::Part2 } else { Confidentiality::Normal });
        }
    }

    fn decision(&mut self, on: NaiveDate, decision: &Decision) {
        let restricted = decision.reasons.iter().any(|r| r.restricted);
        let reasons: Vec<Value> = decision
            .reasons
            .iter()
            .map(|r| {
                json!({"coding": [{"system": "https://refill-clinic.example/CodeSystem/reason",
                "code": r.code.as_str()}]})
            })
            .collect();
        let resource = json!({
            "resourceType": "GuidanceResponse",
            "id": format!("{}-decision-{on}", fhir_id(self.patient)),
            "moduleUri": format!("https://refill-clinic.example/policy/{}", decision.policy_version),
            "status": "success",
            "subject": self.subject(),
            "occurrenceDateTime": on.to_string(),
            "reasonCode": reasons,
            "note": [{"text": format!("Refill decision {} (policy {})", decision.outcome.as_str(),
                decision.policy_version)}],
        });
        self.push(resource, if restricted { Confidentiality::Part2 } else { Confidentiality::Normal });
    }
}
