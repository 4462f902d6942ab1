//! The mapping against real-world fixtures: the CDS Hooks requests of the CDC opioid guideline IG and
//! the opioid orders extracted from Synthea bundles (tests/data at the repository root, with
//! provenance READMEs). Every MedicationRequest must map, and every opioid order must come out of the
//! MME calculation as counted, excluded or undetermined.

use std::path::PathBuf;

use refill_fhir::{
    FhirPatientRecord, MedicationClass, parse_bundle, parse_cds_hooks_request, parse_medication_request,
};
use refill_rules::mme::{FactorSet, daily_mme};
use refill_rules::{ClinicalFlagKind, OtherMedicationClass};
use serde_json::{Value, json};

fn data_dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(sub)
}

fn load(path: &PathBuf) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn cds_request(name: &str) -> Vec<FhirPatientRecord> {
    let path = data_dir("cds-hooks").join(format!("request-example-{name}.json"));
    parse_cds_hooks_request(&load(&path)).unwrap_or_else(|problems| panic!("{name}: {problems:?}"))
}

fn only(records: Vec<FhirPatientRecord>) -> FhirPatientRecord {
    assert_eq!(records.len(), 1, "one patient expected: {:?}", records.iter().map(|r| &r.fhir_id).collect::<Vec<_>>());
    records.into_iter().next().unwrap()
}

fn total(record: &FhirPatientRecord) -> Option<f64> {
    daily_mme(&record.active_opioid_orders(), FactorSet::Cdc2022).total_daily_mme
}

fn close(actual: Option<f64>, expected: f64) {
    let value = actual.unwrap_or_else(|| panic!("expected {expected}, got undetermined"));
    assert!((value - expected).abs() < 0.01, "expected {expected}, got {value}");
}

fn medication_requests(value: &Value, out: &mut Vec<Value>) {
    match value {
        Value::Object(map) => {
            if map.get("resourceType").and_then(Value::as_str) == Some("MedicationRequest") {
                out.push(value.clone());
            }
            map.values().for_each(|v| medication_requests(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| medication_requests(v, out)),
        _ => {}
    }
}

#[test]
fn every_cds_hooks_medication_request_maps_and_is_classified() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir("cds-hooks"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 20);
    let mut opioid_orders = 0;
    for path in &files {
        let value = load(path);
        let mut requests = Vec::new();
        medication_requests(&value, &mut requests);
        assert!(!requests.is_empty(), "{}", path.display());
        for request in &requests {
            let mapped = parse_medication_request(request).unwrap_or_else(|p| panic!("{}: {p:?}", path.display()));
            assert!(mapped.active, "{}: {} should be active", path.display(), mapped.id);
            if mapped.class == MedicationClass::Opioid {
                opioid_orders += 1;
                let result = daily_mme(std::slice::from_ref(&mapped.order), FactorSet::Cdc2022);
                let accounted = result.items.len() + result.excluded.len() + result.undetermined.len();
                assert_eq!(accounted, 1, "{}: {}", path.display(), mapped.id);
            }
        }
        let records = parse_cds_hooks_request(&value).unwrap_or_else(|p| panic!("{}: {p:?}", path.display()));
        assert_eq!(records.len(), 1, "{}", path.display());
    }
    assert!(opioid_orders >= 20, "{opioid_orders}");
}

#[test]
fn cds_hooks_mme_scenarios() {
    // Fentanyl 75 mcg/hr, 1 patch: 75 x 2.4 = 180 (the CQF response says 179.9999982).
    close(total(&only(cds_request("rec-04-05-mme-greater-than-fifty"))), 180.0);
    // Kadian 892495: not in the drug table and the text has no dose form -> undetermined, never 0.
    let kadian = only(cds_request("rec-04-05-mme-less-than-fifty"));
    let result = daily_mme(&kadian.active_opioid_orders(), FactorSet::Cdc2022);
    assert_eq!(result.total_daily_mme, None);
    assert_eq!(result.undetermined.len(), 1);
    // The "Pepto-bismol Pill" draft order is not an opioid; the active fentanyl patch the prefetch
    // carries under the same id is another product, so it is kept and counted.
    let pepto = only(cds_request("rec-08-mme-greater-than-fifty"));
    assert_eq!(pepto.medication_requests.iter().filter(|r| r.class == MedicationClass::Other).count(), 1);
    close(total(&pepto), 180.0);
    // 0.2 patch every 12 days: the change interval does not enter, 75 x 0.2 x 2.4 = 36.
    close(total(&only(cds_request("rec-08-mme-less-than-fifty"))), 36.0);
    // Fentanyl 75 (180) + oxycodone ER 10 mg three times a day (45).
    close(total(&only(cds_request("rec-10-order-sign-no-screenings"))), 225.0);
    close(total(&only(cds_request("rec-10-order-sign-illicit-drugs-POS-Cocaine"))), 225.0);
}

#[test]
fn a_draft_order_also_among_the_active_orders_counts_once() {
    let order = |status: &str| {
        json!({"resourceType": "MedicationRequest", "id": "rx1", "status": status, "intent": "order",
            "subject": {"reference": "Patient/p1"},
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1049621"}]},
            "dosageInstruction": [{"timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "TAB"}}]}]})
    };
    let request = json!({"hook": "order-sign", "hookInstance": "x", "context": {"userId": "Practitioner/1",
        "patientId": "p1", "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": order("draft")}]}},
        "prefetch": {"anything": {"resourceType": "Bundle", "entry": [{"resource": order("active")}]},
            "more": order("active")}});
    let record = only(refill_fhir::parse_cds_hooks_request(&request).unwrap());
    assert_eq!(record.medication_requests.len(), 1);
    assert!(record.medication_requests[0].draft_order);
    assert_eq!(record.medication_requests[0].status, "draft");
    assert_eq!(record.active_opioid_orders().len(), 1);
}

#[test]
fn cds_hooks_other_facts() {
    let benzo = only(cds_request("rec-08-on-benzodiazepine"));
    assert!(benzo.other_medications.iter().any(|m| m.class == OtherMedicationClass::Benzodiazepine));
    let naloxone = only(cds_request("rec-08-on-naloxone"));
    assert_eq!(naloxone.medication_requests.iter().filter(|r| r.class == MedicationClass::Naloxone).count(), 1);
    let abuse = only(cds_request("rec-08-substance-abuse"));
    let as_of = chrono::NaiveDate::from_ymd_opt(2023, 5, 1).unwrap();
    assert!(abuse.clinical_flags(as_of).iter().any(|f| f.kind == ClinicalFlagKind::SubstanceUseDisorderHistory));
    let end_of_life = only(cds_request("rec-10-patient-view-end-of-life-med-exclusion"));
    assert!(end_of_life.clinical_flags(as_of).iter().any(|f| f.kind == ClinicalFlagKind::Cancer));

    // Suboxone sublingual film: buprenorphine for opioid use disorder, excluded, total undetermined.
    let suboxone = only(cds_request("rec-09-in-criteria-met"));
    let result = daily_mme(&suboxone.active_opioid_orders(), FactorSet::Cdc2022);
    assert_eq!(result.total_daily_mme, None);
    assert!(result.has_oud_treatment());
    assert!(suboxone.other_medications.iter().any(|m| m.class == OtherMedicationClass::OudTreatment));
    assert!(suboxone.regimen().is_empty());
    assert_eq!(suboxone.pdmp_reviews.len(), 1);
    assert_eq!(suboxone.pdmp_reviews[0].reviewed_on, chrono::NaiveDate::from_ymd_opt(2018, 12, 30).unwrap());

    // Two presumptive cocaine screens positive and two negative, on four dates.
    let cocaine = only(cds_request("rec-10-patient-view-POS-Cocaine"));
    assert_eq!(cocaine.uds_results.len(), 4);
    let positives = cocaine.uds_results.iter().filter(|r| r.analytes.iter().any(|a| a.detected)).count();
    assert_eq!(positives, 2);
    assert!(cocaine.uds_results.iter().all(|r| !r.confirmatory && r.analytes[0].analyte == "benzoylecgonine"));
    // THC positive via `interpretation` (no value[x]).
    let thc = only(cds_request("rec-10-patient-view-illicit-drugs"));
    assert_eq!(thc.uds_results.len(), 1);
    assert!(thc.uds_results[0].analytes[0].detected);
    // Confirmatory PCP lines are kept apart from presumptive screens.
    let illicit = only(cds_request("rec-10-order-sign-illicit-drugs"));
    assert!(illicit.uds_results.iter().any(|r| r.confirmatory));
    // A subject that does not name a Patient falls back to the request's context patient.
    let selected = only(cds_request("rec-11-opioid-trigger-with-benzo"));
    assert_eq!(selected.fhir_id, "example-rec-11-opioid-trigger-with-benzo");
    close(total(&selected), 15.0);
}

#[test]
fn every_synthea_opioid_order_is_counted_excluded_or_undetermined() {
    let value = load(&data_dir("fhir").join("synthea-opioid-orders.json"));
    let records = parse_bundle(&value).unwrap_or_else(|problems| panic!("{problems:#?}"));
    assert_eq!(records.len(), 40);
    assert!(records.iter().all(|record| record.demographics.is_some()));
    let mut orders = 0;
    let mut active = 0;
    let (mut counted, mut excluded, mut undetermined) = (0, 0, 0);
    for record in &records {
        for request in &record.medication_requests {
            assert_eq!(request.class, MedicationClass::Opioid, "{}", request.id);
            orders += 1;
            active += usize::from(request.active);
            let result = daily_mme(std::slice::from_ref(&request.order), FactorSet::Cdc2022);
            counted += result.items.len();
            excluded += result.excluded.len();
            undetermined += result.undetermined.len();
            assert_eq!(result.items.len() + result.excluded.len() + result.undetermined.len(), 1, "{}", request.id);
        }
        // Per patient, the active regimen gives a number or an explicit undetermined, never a crash.
        let result = daily_mme(&record.active_opioid_orders(), FactorSet::Cdc2016);
        if record.active_opioid_orders().is_empty() {
            assert_eq!(result.total_daily_mme, Some(0.0));
        }
    }
    assert_eq!(orders, 134);
    assert_eq!(active, 7);
    assert_eq!(counted + excluded + undetermined, 134);
    // Synthea doses are unitless or missing: nothing can be counted.
    assert_eq!(counted, 0);
    assert_eq!(undetermined, 134);
}

#[test]
fn malformed_bundle_names_every_problem() {
    let bundle = serde_json::json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1", "birthDate": "1970-13-01"}},
            {"resource": {"resourceType": "MedicationRequest", "id": "m1", "status": "active",
                "subject": {"reference": "Patient/p1"},
                "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1049502"}]},
                "dosageInstruction": [{"timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "day(s)"}}}]}},
            {"resource": {"resourceType": "MedicationRequest", "id": "m2", "status": "active",
                "medicationCodeableConcept": {"text": "oxycodone"}}},
            {"resource": {"resourceType": "MedicationDispense", "id": "d1", "status": "completed",
                "subject": {"reference": "Patient/p1"},
                "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1049502"}]},
                "whenHandedOver": "2024-02-01"}},
            {"resource": {"resourceType": "Observation", "id": "u1", "status": "final",
                "subject": {"reference": "Patient/p1"},
                "code": {"coding": [{"display": "Oxycodone [Presence] in Urine by Screen method"}]},
                "effectiveDateTime": "2024-02-01"}}
        ]
    });
    let problems = parse_bundle(&bundle).unwrap_err();
    let named: Vec<(String, String)> =
        problems.iter().map(|p| (p.resource().to_string(), p.field().to_string())).collect();
    for expected in [
        ("Patient/p1", "birthDate"),
        ("MedicationRequest/m1", "dosageInstruction[0].timing.repeat.periodUnit"),
        ("MedicationRequest/m2", "subject.reference"),
        ("MedicationDispense/d1", "daysSupply"),
        ("Observation/u1", "value[x]"),
    ] {
        assert!(
            named.iter().any(|(resource, field)| resource == expected.0 && field == expected.1),
            "{expected:?} not in {named:#?}"
        );
    }
    for problem in &problems {
        let text = problem.to_string();
        assert!(text.contains(problem.resource()) && text.contains(problem.field()), "{text}");
    }
}

#[test]
fn an_entry_of_unknown_or_missing_resource_type_is_an_error_naming_the_entry() {
    let bundle = serde_json::json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01"}},
            {"resource": {"resourceType": "MedicatonRequest", "id": "m1", "status": "active",
                "subject": {"reference": "Patient/p1"},
                "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1049621"}]}}},
            {"resource": {"id": "m2", "status": "active", "subject": {"reference": "Patient/p1"}}},
            {"resource": {"resourceType": "Encounter", "id": "e1", "status": "finished"}},
            {"resource": {"resourceType": "Patient", "id": "p2", "birthDate": "1970-13-01"}}
        ]
    });
    let problems = parse_bundle(&bundle).unwrap_err();
    let named: Vec<(String, String)> =
        problems.iter().map(|p| (p.resource().to_string(), p.field().to_string())).collect();
    assert!(named.contains(&("Bundle.entry[1]".to_string(), "resourceType".to_string())), "{named:#?}");
    assert!(named.contains(&("Bundle.entry[2]".to_string(), "resourceType".to_string())), "{named:#?}");
    assert!(problems.iter().any(|p| p.to_string().contains("\"MedicatonRequest\"")), "{problems:#?}");
    // A known resource the engine does not read is passed over; the other entries are still checked.
    assert!(!named.iter().any(|(resource, _)| resource.contains("entry[3]") || resource.contains("Encounter")));
    assert!(named.contains(&("Patient/p2".to_string(), "birthDate".to_string())), "{named:#?}");
    assert_eq!(problems.len(), 3, "{problems:#?}");

    let single = serde_json::json!({"resourceType": "MedicationRequestt", "id": "x"});
    let problems = parse_bundle(&single).unwrap_err();
    assert_eq!(problems[0].field(), "resourceType");
}

#[test]
fn a_full_bundle_maps_every_fact() {
    let bundle = serde_json::json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "id": "p",
                "identifier": [{"type": {"coding": [{"code": "MR"}]}, "system": "urn:clinic", "value": "MRN-7"}],
                "name": [{"use": "official", "family": "Doe", "given": ["Jane", "Q"]}],
                "gender": "female", "birthDate": "1960-04-02",
                "telecom": [{"system": "phone", "value": "555"}, {"system": "email", "value": "jane@example.org"}]}},
            {"fullUrl": "urn:uuid:med", "resource": {"resourceType": "Medication", "id": "med",
                "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1049502"}]}}},
            {"resource": {"resourceType": "MedicationRequest", "id": "rx", "status": "active", "subject": {"reference": "urn:uuid:p"},
                "medicationReference": {"reference": "urn:uuid:med"}, "authoredOn": "2024-01-01",
                "dosageInstruction": [{"timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                    "doseAndRate": [{"doseQuantity": {"value": 1, "code": "{tbl}"}}]}],
                "dispenseRequest": {"expectedSupplyDuration": {"value": 30, "code": "d"}}}},
            {"resource": {"resourceType": "MedicationDispense", "id": "fill", "status": "completed", "subject": {"reference": "Patient/p"},
                "medicationReference": {"reference": "Medication/med"}, "daysSupply": {"value": 30},
                "whenPrepared": "2024-01-01", "whenHandedOver": "2024-01-02T10:00:00-05:00",
                "authorizingPrescription": [{"reference": "MedicationRequest/rx"}]}},
            {"resource": {"resourceType": "Consent", "id": "agr", "status": "active", "patient": {"reference": "Patient/p"},
                "scope": {"coding": [{"code": "treatment"}]}, "category": [{"coding": [{"code": "opioid-treatment-agreement"}]}],
                "dateTime": "2023-06-01", "performer": [{"reference": "Patient/p"}, {"reference": "Practitioner/dr"}]}},
            {"resource": {"resourceType": "Observation", "id": "pdmp", "status": "final", "subject": {"reference": "Patient/p"},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "461651000124104"}]}, "effectiveDateTime": "2024-01-01"}},
            {"resource": {"resourceType": "MedicationStatement", "id": "otp", "status": "active", "subject": {"reference": "Patient/p"},
                "medicationCodeableConcept": {"text": "methadone hydrochloride 10 MG/ML Oral Solution"},
                "reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "5602001", "display": "Opioid abuse"}]}],
                "effectivePeriod": {"start": "2022-03-01"}}},
            {"resource": {"resourceType": "MedicationStatement", "id": "old", "status": "completed", "subject": {"reference": "Patient/p"},
                "medicationCodeableConcept": {"text": "Alprazolam 0.5 MG Oral Tablet"}}},
            {"resource": {"resourceType": "Condition", "id": "osa", "subject": {"reference": "Patient/p"},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "78275009", "display": "Obstructive sleep apnea"}]},
                "onsetDateTime": "2015-01-01"}}
        ]
    });
    let record = only(parse_bundle(&bundle).unwrap_or_else(|p| panic!("{p:#?}")));
    let demographics = record.demographics.as_ref().unwrap();
    assert_eq!(demographics.given.as_deref(), Some("Jane Q"));
    assert_eq!(demographics.mrn.as_deref(), Some("MRN-7"));
    assert_eq!(demographics.email.as_deref(), Some("jane@example.org"));
    assert_eq!(record.regimen().len(), 1);
    close(total(&record), 30.0);
    assert_eq!(record.fills.len(), 1);
    assert_eq!(record.fills[0].filled_on, chrono::NaiveDate::from_ymd_opt(2024, 1, 2).unwrap());
    assert_eq!(record.fills[0].order_id.as_deref(), Some("MedicationRequest/rx"));
    assert_eq!(record.agreements.len(), 1);
    assert_eq!(record.agreements[0].prescriber_of_record.0, "Practitioner/dr");
    assert_eq!(record.pdmp_reviews.len(), 1);
    assert_eq!(record.conditions[0].kinds, vec![ClinicalFlagKind::SleepDisorderedBreathing]);
    // Methadone from a treatment program, reported by the patient: OUD treatment from another source.
    // The completed statement is kept as inactive (a re-import clears what it once recorded).
    assert_eq!(record.other_medication_sources, vec!["MedicationStatement/otp", "MedicationStatement/old"]);
    let active: Vec<_> = record.other_medications.iter().filter(|m| m.active).collect();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].class, OtherMedicationClass::OudTreatment);
    assert_eq!(active[0].started_on, chrono::NaiveDate::from_ymd_opt(2022, 3, 1));
    assert!(!record.other_medications[1].active);
    // It is not an order of the clinic: the regimen and the MME are unchanged.
    assert_eq!(record.regimen().len(), 1);
}
