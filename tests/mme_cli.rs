//! End-to-end tests of `refill mme`: the real binary on fixture files and stdin, checking the JSON
//! contract other tools depend on and the exit status for malformed input.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(path)
}

fn refill(args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_refill"));
    command.arg("mme").args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("refill starts");
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().expect("refill finishes")
}

fn report(args: &[&str], stdin: Option<&str>) -> Vec<Value> {
    let output = refill(args, stdin);
    assert!(output.status.success(), "refill mme {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    let value: Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    value.as_array().expect("a JSON array").clone()
}

fn close(value: &Value, expected: f64) {
    let number = value.as_f64().unwrap_or_else(|| panic!("expected {expected}, got {value}"));
    assert!((number - expected).abs() < 0.01, "expected {expected}, got {number}");
}

/// Exactly the keys of the contract, no more, no fewer.
fn assert_shape(patient: &Value) {
    let keys: Vec<&str> = patient.as_object().unwrap().keys().map(String::as_str).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["excluded", "factor_version", "items", "not_recognised", "patient", "total_daily_mme", "undetermined"]
    );
    assert!(patient["patient"].as_str().unwrap().starts_with("Patient/"));
    for item in patient["items"].as_array().unwrap() {
        let mut keys: Vec<&str> = item.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["daily_dose", "factor", "ingredient", "medication", "mme", "unit"]);
    }
    for list in ["excluded", "undetermined", "not_recognised"] {
        for entry in patient[list].as_array().unwrap() {
            let mut keys: Vec<&str> = entry.as_object().unwrap().keys().map(String::as_str).collect();
            keys.sort();
            assert_eq!(keys, ["medication", "reason"]);
        }
    }
}

/// The draft order of a CDS Hooks request as a standalone Bundle (what an EHR export would hold).
fn draft_bundle(name: &str) -> String {
    let text = std::fs::read_to_string(fixture(&format!("cds-hooks/request-example-{name}.json"))).unwrap();
    let request: Value = serde_json::from_str(&text).unwrap();
    serde_json::to_string(&request["context"]["draftOrders"]).unwrap()
}

#[test]
fn fentanyl_patch_bundle_on_stdin() {
    let patients = report(&["-"], Some(&draft_bundle("rec-04-05-mme-greater-than-fifty")));
    assert_eq!(patients.len(), 1);
    let patient = &patients[0];
    assert_shape(patient);
    assert_eq!(patient["patient"], "Patient/example-rec-05-mme-greater-than-fifty");
    assert_eq!(patient["factor_version"], "cdc2022");
    close(&patient["total_daily_mme"], 180.0);
    let item = &patient["items"][0];
    assert_eq!(item["ingredient"], "fentanyl");
    assert_eq!(item["unit"], "mcg/hr");
    close(&item["daily_dose"], 75.0);
    close(&item["factor"], 2.4);
    close(&item["mme"], 180.0);
}

#[test]
fn cds_hooks_request_file_and_factor_sets() {
    let path = fixture("cds-hooks/request-example-rec-10-order-sign-no-screenings.json");
    let path = path.to_str().unwrap();
    for factors in ["cdc2022", "cdc2016"] {
        let patients = report(&["--factors", factors, path], None);
        assert_eq!(patients.len(), 1);
        assert_shape(&patients[0]);
        assert_eq!(patients[0]["factor_version"], factors);
        // fentanyl 75 mcg/hr (180) + oxycodone ER 10 mg three times a day (45).
        close(&patients[0]["total_daily_mme"], 225.0);
        assert_eq!(patients[0]["items"].as_array().unwrap().len(), 2);
    }
}

#[test]
fn undetermined_and_excluded_totals_are_null() {
    let kadian = report(&["-"], Some(&draft_bundle("rec-04-05-mme-less-than-fifty")));
    assert_shape(&kadian[0]);
    assert!(kadian[0]["total_daily_mme"].is_null());
    assert_eq!(kadian[0]["undetermined"].as_array().unwrap().len(), 1);
    assert!(kadian[0]["undetermined"][0]["medication"].as_str().unwrap().contains("Kadian"));

    let suboxone = report(&["-"], Some(&draft_bundle("rec-09-in-criteria-met")));
    assert_shape(&suboxone[0]);
    assert!(suboxone[0]["total_daily_mme"].is_null());
    assert_eq!(suboxone[0]["excluded"].as_array().unwrap().len(), 1);
    assert!(suboxone[0]["items"].as_array().unwrap().is_empty());
}

#[test]
fn single_medication_request_and_stopped_orders() {
    let text = draft_bundle("rec-11-opioid-trigger-without-benzo");
    let bundle: Value = serde_json::from_str(&text).unwrap();
    let mut request = bundle["entry"][0]["resource"].clone();
    request["subject"] = serde_json::json!({"reference": "Patient/solo"});
    let patients = report(&["-"], Some(&request.to_string()));
    assert_eq!(patients[0]["patient"], "Patient/solo");
    close(&patients[0]["total_daily_mme"], 15.0);

    // A stopped order does not count: total 0 and empty lists.
    request["status"] = Value::String("stopped".into());
    let patients = report(&["-"], Some(&request.to_string()));
    assert_shape(&patients[0]);
    assert_eq!(patients[0]["total_daily_mme"].as_f64(), Some(0.0));
    for list in ["items", "excluded", "undetermined"] {
        assert!(patients[0][list].as_array().unwrap().is_empty());
    }
}

#[test]
fn synthea_bundle_lists_every_patient() {
    let path = fixture("fhir/synthea-opioid-orders.json");
    let patients = report(&[path.to_str().unwrap()], None);
    assert_eq!(patients.len(), 40);
    // Zero totals print as 0.0, never -0.0; fields come in the documented order.
    let raw = String::from_utf8(refill(&[path.to_str().unwrap()], None).stdout).unwrap();
    assert!(!raw.contains("-0.0"), "negative zero in output");
    let order: Vec<usize> = [
        "\"patient\"",
        "\"factor_version\"",
        "\"total_daily_mme\"",
        "\"items\"",
        "\"excluded\"",
        "\"undetermined\"",
        "\"not_recognised\"",
    ]
    .iter()
    .map(|key| raw.find(key).unwrap())
    .collect();
    assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "{order:?}");
    let mut undetermined = 0;
    for patient in &patients {
        assert_shape(patient);
        let count = patient["undetermined"].as_array().unwrap().len();
        undetermined += count;
        if count == 0 {
            assert_eq!(patient["total_daily_mme"].as_f64(), Some(0.0), "{patient}");
        } else {
            assert!(patient["total_daily_mme"].is_null());
        }
    }
    // The seven active Synthea opioid orders have no usable dose unit or no dosage at all.
    assert_eq!(undetermined, 7);
}

/// Issue 12: an active order whose code is not in the drug table (here a made-up new opioid) is listed as
/// "not recognised as an opioid" next to the total, not silently left out.
#[test]
fn an_order_not_in_the_drug_table_is_reported_not_recognised() {
    let bundle = serde_json::json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [
            {"resource": {"resourceType": "MedicationRequest", "id": "oxy", "status": "active",
                "subject": {"reference": "Patient/p1"},
                "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": "1049621", "display": "oxycodone hydrochloride 5 MG Oral Tablet"}]},
                "dosageInstruction": [{"timing": {"repeat": {"frequency": 4, "period": 1, "periodUnit": "d"}},
                    "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}]}]}},
            {"resource": {"resourceType": "MedicationRequest", "id": "new", "status": "active",
                "subject": {"reference": "Patient/p1"},
                "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": "9999991", "display": "Novadol 20 MG Oral Tablet"}]}}},
            {"resource": {"resourceType": "MedicationRequest", "id": "stopped", "status": "stopped",
                "subject": {"reference": "Patient/p1"},
                "medicationCodeableConcept": {"text": "Novadol 40 MG Oral Tablet"}}}
        ]
    });
    let patients = report(&["-"], Some(&bundle.to_string()));
    assert_shape(&patients[0]);
    close(&patients[0]["total_daily_mme"], 30.0);
    let not_recognised = patients[0]["not_recognised"].as_array().unwrap();
    assert_eq!(not_recognised.len(), 1, "{not_recognised:?}");
    assert_eq!(not_recognised[0]["medication"], "Novadol 20 MG Oral Tablet");
    let reason = not_recognised[0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("not recognised as an opioid") && reason.contains("9999991"), "{reason}");
}

#[test]
fn malformed_input_names_resource_and_field() {
    let bad = r#"{"resourceType": "MedicationRequest", "id": "bad-1", "status": "active",
        "subject": {"reference": "Patient/p"},
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1049502"}]},
        "dosageInstruction": [{"timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "fortnight"}}}]}"#;
    let output = refill(&["-"], Some(bad));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("MedicationRequest/bad-1"), "{stderr}");
    assert!(stderr.contains("dosageInstruction[0].timing.repeat.periodUnit"), "{stderr}");

    let output = refill(&["-"], Some("{\"resourceType\": \"Bundle\", \"entry\": [ }"));
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not valid JSON"));

    let output = refill(&["--factors", "cdc2030", "-"], Some("{}"));
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cdc2030"));

    let output = refill(&["-"], Some(r#"{"resourceType": "Patient", "id": "x"}"#));
    assert!(!output.status.success());
}
