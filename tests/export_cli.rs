//! `refill export` round trip on SQLite and PostgreSQL: a FHIR bundle imported into one database,
//! exported, imported into a fresh database and exported again gives the same Bundle and the same
//! facts; Part 2 records are left out unless asked for, and labelled when included.

#[path = "../crates/refill-store/tests/common/mod.rs"]
mod common;

use chrono::NaiveDate;
use refill_clinic::cmd::export::{Selection, export};
use refill_clinic::cmd::import::import_file;
use refill_rules::{PatientFacts, PatientId};
use refill_store::{Actor, Store};
use serde_json::{Value, json};

fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
}

/// The import fixture plus a Part 2 drug test (from a Part 2 program, so labelled).
fn source_bundle() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/import/clinic-bundle.json")).unwrap();
    let mut bundle: Value = serde_json::from_str(&text).unwrap();
    bundle["entry"].as_array_mut().unwrap().push(json!({"resource": {
        "resourceType": "Observation", "id": "uds-ana-part2", "status": "final",
        "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "42CFRPart2"}]},
        "code": {"text": "Buprenorphine [Presence] in Urine by Screen method"},
        "subject": {"reference": "Patient/demo-ana"}, "effectiveDateTime": "2026-11-02",
        "valueString": "positive"}}));
    bundle
}

async fn import(store: &Store, name: &str, bundle: &Value) {
    let bytes = serde_json::to_vec(bundle).unwrap();
    import_file(store, name, &bytes, &Actor::new("export-test", "system"), false)
        .await
        .expect("database works")
        .unwrap_or_else(|error| panic!("{error}"));
}

async fn facts_of(store: &Store, external_id: &str) -> PatientFacts {
    let patient = store.patient_by_external_id(external_id).await.unwrap().expect("patient");
    let mut facts = store.load_patient_facts(patient.id, as_of()).await.unwrap();
    facts.patient_id = PatientId(0);
    facts
}

fn labelled(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["meta"]["security"][0]["code"] == "42CFRPart2")
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn an_exported_bundle_imports_back_unchanged() {
    let actor = Actor::new("export-test", "system");
    let firsts = common::backends().await;
    let seconds = common::backends().await;
    for (first, second) in firsts.iter().zip(&seconds) {
        let name = &first.name;
        import(&first.store, "clinic-bundle.json", &source_bundle()).await;
        let original = facts_of(&first.store, "demo-ana").await;
        assert!(!original.regimen.is_empty() && !original.fills.is_empty() && original.agreement.is_some(), "{name}");

        // Without --include-part2: the Part 2 test is left out, nothing is labelled.
        let plain = export(&first.store, &Selection::All, as_of(), false, &actor).await.unwrap();
        assert!(labelled(&plain).is_empty(), "{name}: {plain}");
        let kinds: Vec<&str> = plain["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["resourceType"].as_str().unwrap())
            .collect();
        for kind in ["Patient", "MedicationRequest", "MedicationDispense", "Observation", "Procedure", "Consent"] {
            assert!(kinds.contains(&kind), "{name}: no {kind} in {kinds:?}");
        }

        // With it: labelled, and the whole record round-trips.
        let exported = export(&first.store, &Selection::One("demo-ana".into()), as_of(), true, &actor).await.unwrap();
        assert_eq!(labelled(&exported).len(), 1, "{name}: {exported}");
        import(&second.store, "exported.json", &exported).await;
        assert_eq!(facts_of(&second.store, "demo-ana").await, original, "{name}: facts after the round trip");
        let again = export(&second.store, &Selection::One("demo-ana".into()), as_of(), true, &actor).await.unwrap();
        assert_eq!(again, exported, "{name}: the second export differs from the first");
        // A re-import of the export into the first database changes nothing there either.
        import(&first.store, "exported.json", &exported).await;
        assert_eq!(facts_of(&first.store, "demo-ana").await, original, "{name}: re-import changed the facts");

        // Every export is audited, one event per patient.
        let head = first.store.audit_head().await.unwrap();
        let events = first.store.audit_events(1, head.seq).await.unwrap();
        assert_eq!(events.iter().filter(|e| e.action == "patient.export").count(), 2, "{name}");
        assert!(export(&first.store, &Selection::One("nobody".into()), as_of(), false, &actor).await.is_err());
    }
}
