//! FHIR R4 Bundles into clinic records: natural keys that repeat on re-parse, problems by resource.

use refill_import::{Location, OrderStatus, parse_fhir_bundle};

const BUNDLE: &str = include_str!("../../../tests/data/import/clinic-bundle.json");

#[test]
fn a_bundle_maps_to_clinic_records_with_stable_keys() {
    let records = parse_fhir_bundle("clinic-bundle.json", BUNDLE.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(records.patients.len(), 1);
    assert_eq!(records.patients[0].external_id, "demo-ana");
    assert_eq!(records.patients[0].mrn.as_deref(), Some("MRN-FHIR-1"));
    assert_eq!(records.orders.len(), 1);
    assert_eq!(records.orders[0].status, OrderStatus::Active);
    assert_eq!(records.orders[0].origin, Location::Resource("MedicationRequest/rx-ana-1".into()));
    assert_eq!((records.fills.len(), records.uds.len(), records.pdmp.len(), records.agreements.len()), (1, 1, 1, 1));
    let again = parse_fhir_bundle("clinic-bundle.json", BUNDLE.as_bytes()).unwrap();
    assert_eq!(records, again, "parsing is deterministic, so the natural keys repeat");
}

#[test]
fn problems_name_the_resource_and_field() {
    let broken = BUNDLE.replace("\"birthDate\": \"1962-05-14\"", "\"birthDate\": \"1962-13-14\"");
    assert_ne!(broken, BUNDLE);
    let error = parse_fhir_bundle("clinic-bundle.json", broken.as_bytes()).unwrap_err();
    assert!(
        error
            .problems
            .iter()
            .any(|p| p.location == Location::Resource("Patient/demo-ana".into()) && p.field.contains("birthDate")),
        "{error}"
    );
    assert!(error.to_string().starts_with("clinic-bundle.json rejected"), "{error}");

    let not_json = parse_fhir_bundle("x.json", b"{\n  \"resourceType\": \"Bundle\",\n  oops\n}").unwrap_err();
    assert_eq!(not_json.problems[0].location, Location::Line(3));
}

/// Issue 17, finding 10: an entry whose resourceType is not a FHIR R4 type (a typo would drop a
/// patient's facts without a word) is a problem naming the entry; a real type the clinic does not
/// use is read past.
#[test]
fn an_entry_of_no_fhir_resource_type_is_a_problem_and_an_unused_real_type_is_not() {
    let bundle = r#"{"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Encounter", "id": "e1"}},
        {"resource": {"resourceType": "Patinet", "id": "p1"}}
    ]}"#;
    let Err(error) = parse_fhir_bundle("typo.json", bundle.as_bytes()) else { panic!("an unknown type was read past") };
    let text = error.to_string();
    assert!(text.contains("entry[1]") && text.contains("resourceType") && text.contains("Patinet"), "{text}");
    let fine = r#"{"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Encounter", "id": "e1"}}
    ]}"#;
    assert!(parse_fhir_bundle("fine.json", fine.as_bytes()).is_ok());
}

/// An EHR export carries everyone the EHR knows: only a patient with an active opioid order is enrolled
/// in the refill clinic on import (the Synthea fixture: 6 of 40, holding its 7 active orders).
#[test]
fn only_ehr_patients_with_an_active_opioid_order_are_enrolled_when_new() {
    let synthea = include_str!("../../../tests/data/fhir/synthea-opioid-orders.json");
    let records = parse_fhir_bundle("synthea-opioid-orders.json", synthea.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let with_active: std::collections::BTreeSet<&str> = records
        .orders
        .iter()
        .filter(|o| o.status == OrderStatus::Active)
        .map(|o| o.patient_external_id.as_str())
        .collect();
    let enrolled: std::collections::BTreeSet<&str> =
        records.patients.iter().filter(|p| p.enrol_when_new).map(|p| p.external_id.as_str()).collect();
    assert_eq!(records.patients.len(), 40);
    assert_eq!(enrolled, with_active);
    assert_eq!(enrolled.len(), 6);
    let single = parse_fhir_bundle("clinic-bundle.json", BUNDLE.as_bytes()).unwrap();
    assert!(single.patients[0].enrol_when_new, "the demo bundle's patient has an active order");
}
