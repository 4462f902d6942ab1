//! `refill import` and `refill demo` end to end: the demo clinic round-trips through CSV into SQLite and
//! PostgreSQL, a re-import changes nothing, a file with a bad row at line 50,001 leaves the database
//! exactly as it was, and the binary reports file, line and field.

#[path = "../crates/refill-store/tests/common/mod.rs"]
mod common;

use std::process::Command;

use chrono::NaiveDate;
use refill_clinic::cmd::import::{import_file, summary_line};
use refill_demo::{DemoClinic, DemoSettings, generate};
use refill_import::Location;
use refill_store::import::imported_row_counts;
use refill_store::{Actor, Store};

fn demo_clinic(patients: usize) -> DemoClinic {
    generate(&DemoSettings { patients, seed: 11, today: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap() })
}

fn actor() -> Actor {
    Actor::new("import-test", "system")
}

/// Import every file; panics on a rejected file.
async fn import_all(store: &Store, files: &[(String, String)]) -> u64 {
    let mut written = 0;
    for (name, contents) in files {
        let report = import_file(store, name, contents.as_bytes(), &actor(), false)
            .await
            .expect("database works")
            .unwrap_or_else(|error| panic!("{error}"));
        eprintln!("{}", summary_line(name, &report));
        written += report.written();
    }
    written
}

/// Everything that shows whether a database changed: row counts and the audit chain head.
async fn snapshot(store: &Store) -> (Vec<(&'static str, i64)>, i64, String) {
    let counts = imported_row_counts(store).await.expect("count rows");
    let head = store.audit_head().await.expect("read the audit head");
    (counts, head.seq, head.mac)
}

fn count(counts: &[(&'static str, i64)], table: &str) -> i64 {
    counts.iter().find(|(t, _)| *t == table).map(|(_, c)| *c).unwrap()
}

#[tokio::test]
async fn the_demo_clinic_round_trips_and_a_reimport_changes_nothing() {
    let clinic = demo_clinic(150);
    let files = clinic.csv_files();
    let bundle = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/import/clinic-bundle.json")).unwrap();
    for db in common::backends().await {
        let store = &db.store;
        assert!(import_all(store, &files).await > 0, "{}: first import writes", db.name);
        let fhir = import_file(store, "clinic-bundle.json", &bundle, &actor(), false).await.unwrap().unwrap();
        assert_eq!(fhir.written(), 6, "{}: {}", db.name, summary_line("bundle", &fhir));

        let (counts, seq, mac) = snapshot(store).await;
        assert_eq!(count(&counts, "patients"), 151, "{}", db.name);
        assert_eq!(count(&counts, "prescribers"), clinic.physicians.len() as i64, "{}", db.name);
        let orders: usize = clinic.patients.iter().map(|p| p.orders.len()).sum();
        assert_eq!(count(&counts, "medication_orders"), orders as i64 + 1, "{}", db.name);
        let fills: usize = clinic.patients.iter().map(|p| p.fills.len()).sum();
        assert_eq!(count(&counts, "fills"), fills as i64 + 1, "{}", db.name);
        let tapers = clinic.patients.iter().filter(|p| p.taper.is_some()).count();
        assert_eq!(count(&counts, "taper_plans"), tapers as i64, "{}", db.name);
        let requests: usize = clinic.patients.iter().map(|p| p.requests.len()).sum();
        assert!(requests > 0, "the demo clinic has requests called in");
        assert_eq!(count(&counts, "refill_requests"), requests as i64, "{}", db.name);
        let transferred =
            clinic.patients.iter().find(|p| p.previous_prescriber.is_some()).expect("a transferred patient");
        let id = store.patient_by_external_id(&transferred.external_id).await.unwrap().unwrap().id;
        let facts = store.load_patient_facts(id, clinic.today).await.unwrap();
        assert_eq!(facts.previous_prescriber.map(|p| p.0), transferred.previous_prescriber.clone(), "{}", db.name);
        assert_eq!(seq, files.len() as i64 + 1, "{}: one audit event per file that changed something", db.name);

        // The same files again: no row written, no version bumped, no audit event.
        assert_eq!(import_all(store, &files).await, 0, "{}", db.name);
        let again = import_file(store, "clinic-bundle.json", &bundle, &actor(), false).await.unwrap().unwrap();
        assert_eq!(again.written(), 0, "{}", db.name);
        assert_eq!(
            snapshot(store).await,
            (counts.clone(), seq, mac.clone()),
            "{}: a re-import changed something",
            db.name
        );

        // A changed value updates in place: one row written, one audit event, no new row.
        let patients = &files.iter().find(|(n, _)| n == "patients.csv").unwrap().1;
        let edited = patients.replacen(&clinic.patients[0].family_name, "Renamed", 1);
        let report = import_file(store, "patients.csv", edited.as_bytes(), &actor(), false).await.unwrap().unwrap();
        assert_eq!(report.written(), 1, "{}", db.name);
        let (after, after_seq, _) = snapshot(store).await;
        assert_eq!(count(&after, "patients"), 151, "{}", db.name);
        assert_eq!(after_seq, seq + 1, "{}", db.name);
        let stored = store.patient_by_external_id(&clinic.patients[0].external_id).await.unwrap().unwrap();
        assert_eq!(stored.details.family_name, "Renamed", "{}", db.name);
        assert_eq!(stored.version, 2, "{}", db.name);
    }
}

/// A patients file of `rows` valid rows (ids `B000001`...), with `bad` replacing data row `bad_row`.
fn big_patients_file(rows: usize, bad_row: usize, bad: &str) -> String {
    let mut csv = String::with_capacity(rows * 64);
    csv.push_str("patient_id,mrn,family_name,given_name,birth_date,sex,risk_tier\n");
    for row in 1..=rows {
        if row == bad_row {
            csv.push_str(bad);
            csv.push('\n');
        } else {
            csv.push_str(&format!("B{row:06},BMRN-{row:06},Family{row},Given,1960-01-01,female,low\n"));
        }
    }
    csv
}

#[tokio::test]
async fn a_bad_row_at_50000_leaves_the_database_exactly_as_before() {
    let clinic = demo_clinic(40);
    let files = clinic.csv_files();
    let taken_mrn = clinic.patients[3].mrn.clone();
    for db in common::backends().await {
        let store = &db.store;
        import_all(store, &files).await;
        let before = snapshot(store).await;

        // Caught by the parser: nothing reaches the database.
        let malformed = big_patients_file(60_000, 50_000, "B050000,BMRN-050000,Family,Given,1960-02-30,female,low");
        let error = import_file(store, "patients-big.csv", malformed.as_bytes(), &actor(), false)
            .await
            .unwrap()
            .expect_err("the malformed file is rejected");
        assert_eq!(error.problems.len(), 1, "{error}");
        assert_eq!(error.problems[0].location, Location::Line(50_001));
        assert_eq!(error.problems[0].field, "birth_date");
        assert!(error.to_string().contains("patients-big.csv:50001: birth_date:"), "{error}");
        assert_eq!(snapshot(store).await, before, "{}", db.name);

        // Caught by the database after 49,999 rows were written in the file's transaction: an MRN
        // that belongs to a stored patient. The rollback leaves everything as it was.
        let clash = big_patients_file(60_000, 50_000, &format!("B050000,{taken_mrn},Family,Given,1960-01-01,male,low"));
        let error = import_file(store, "patients-big.csv", clash.as_bytes(), &actor(), false)
            .await
            .unwrap()
            .expect_err("the clashing file is rejected");
        assert_eq!(error.problems[0].location, Location::Line(50_001), "{error}");
        assert_eq!(error.problems[0].field, "mrn", "{error}");
        assert_eq!(snapshot(store).await, before, "{}: a rejected file left rows behind", db.name);

        // Orders for a patient nobody knows, at row 50,000 of a large orders file.
        let mut orders =
            String::from("order_id,patient_id,status,authored_on,rxcui,dose_value,dose_unit,doses_per_day\n");
        for row in 1..=60_000 {
            let patient = if row == 50_000 { "NOBODY" } else { clinic.patients[row % 40].external_id.as_str() };
            orders.push_str(&format!("BIG-{row},{patient},active,2026-11-01,1049621,1,unit,4\n"));
        }
        let error = import_file(store, "orders-big.csv", orders.as_bytes(), &actor(), false)
            .await
            .unwrap()
            .expect_err("the file with an unknown patient is rejected");
        assert_eq!(error.problems.len(), 1, "{error}");
        assert_eq!(error.problems[0].location, Location::Line(50_001), "{error}");
        assert_eq!(error.problems[0].field, "patient_id", "{error}");
        assert_eq!(snapshot(store).await, before, "{}", db.name);
    }
}

fn refill() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_refill"));
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

#[test]
fn the_binary_imports_and_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("import.db").display());
    let csv_dir = dir.path().join("csv");
    std::fs::create_dir_all(&csv_dir).unwrap();
    for (name, contents) in demo_clinic(30).csv_files() {
        std::fs::write(csv_dir.join(name), contents).unwrap();
    }
    // Given in the "wrong" order on purpose: the command imports physicians and patients first.
    let mut paths: Vec<_> = std::fs::read_dir(&csv_dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    paths.reverse();
    let output = refill().args(["--database", &url, "import"]).args(&paths).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("patients.csv: 30 written"), "{stdout}");

    let bad = dir.path().join("fills-bad.csv");
    std::fs::write(&bad, "fill_id,patient_id,filled_on,days_supply\nF1,P000001,2026-11-01,30\nF2,P000002,2026-11-31,30\nF3,P000003,2026-11-01,thirty\n")
        .unwrap();
    let output = refill().args(["--database", &url, "import"]).arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("fills-bad.csv:3: filled_on: expected a date YYYY-MM-DD"), "{stderr}");
    assert!(stderr.contains("fills-bad.csv:4: days_supply:"), "{stderr}");
    assert!(stderr.contains("nothing from them was written"), "{stderr}");
}

#[test]
fn the_demo_command_builds_a_clinic() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let output =
        refill().args(["demo", "--patients", "60", "--seed", "5", "--no-serve", "--db"]).arg(&db).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("with 60 patients"), "{stdout}");
    assert!(db.exists());
}

/// A bundle for one patient with an opioid order, a benzodiazepine order in `benzo_status` and an
/// undated sleep-apnea diagnosis.
fn bundle_with_benzo(benzo_status: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p-benzo", "birthDate": "1960-02-03", "gender": "female",
                "name": [{"family": "Okonkwo", "given": ["Ngozi"]}]}},
            {"resource": {"resourceType": "MedicationRequest", "id": "rx-oxy", "status": "active", "intent": "order",
                "subject": {"reference": "Patient/p-benzo"}, "authoredOn": "2026-11-01",
                "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": "1049621", "display": "oxycodone hydrochloride 5 MG Oral Tablet"}]},
                "dosageInstruction": [{"timing": {"repeat": {"frequency": 4, "period": 1, "periodUnit": "d"}},
                    "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}]}],
                "dispenseRequest": {"quantity": {"value": 120}, "expectedSupplyDuration": {"value": 30, "unit": "days"}}}},
            {"resource": {"resourceType": "MedicationRequest", "id": "rx-benzo", "status": benzo_status, "intent": "order",
                "subject": {"reference": "Patient/p-benzo"}, "authoredOn": "2026-10-15",
                "medicationCodeableConcept": {"text": "Alprazolam 0.5 MG Oral Tablet"}}},
            {"resource": {"resourceType": "Condition", "id": "osa", "subject": {"reference": "Patient/p-benzo"},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "78275009",
                    "display": "Obstructive sleep apnea"}]}}}
        ]
    }))
    .unwrap()
}

/// A bundle with a cancer diagnosis and an overdose, both with clinical status `status`.
fn bundle_with_conditions(status: &str) -> Vec<u8> {
    let condition = |id: &str, code: &str, display: &str| {
        serde_json::json!({"resource": {"resourceType": "Condition", "id": id,
            "subject": {"reference": "Patient/p-onc"}, "onsetDateTime": "2025-03-04",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": status}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]}}})
    };
    serde_json::to_vec(&serde_json::json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p-onc", "birthDate": "1958-07-09", "gender": "male",
                "name": [{"family": "Varga", "given": ["Imre"]}]}},
            condition("ca", "363346000", "Malignant neoplastic disease"),
            condition("od", "55680006", "Drug overdose"),
        ]
    }))
    .unwrap()
}

/// A condition the source later marks resolved stops counting: the cancer exclusion an earlier import
/// wrote is retired by the re-import (the same row, not a new one), while the overdose stays history;
/// the resolved bundle imported again changes nothing.
#[tokio::test]
async fn a_resolved_condition_retires_its_flag_and_history_stays() {
    use refill_rules::ClinicalFlagKind;
    for db in common::backends().await {
        let store = &db.store;
        import_file(store, "onc.json", &bundle_with_conditions("active"), &actor(), false).await.unwrap().unwrap();
        let patient = store.patient_by_external_id("p-onc").await.unwrap().expect("imported").id;
        let today = chrono::Utc::now().date_naive();
        let kinds = |facts: refill_rules::PatientFacts| facts.flags.iter().map(|f| f.kind).collect::<Vec<_>>();
        let before = kinds(store.load_patient_facts(patient, today).await.unwrap());
        assert!(before.contains(&ClinicalFlagKind::Cancer), "{}: {before:?}", db.name);
        assert!(before.contains(&ClinicalFlagKind::OverdoseHistory), "{}: {before:?}", db.name);

        let resolved = bundle_with_conditions("resolved");
        let summary = import_file(store, "onc.json", &resolved, &actor(), false).await.unwrap().unwrap();
        assert_eq!(
            summary.written(),
            1,
            "{}: only the cancer flag changes: {}",
            db.name,
            summary_line("onc.json", &summary)
        );
        let after = kinds(store.load_patient_facts(patient, today).await.unwrap());
        assert_eq!(after, vec![ClinicalFlagKind::OverdoseHistory], "{}", db.name);

        let (counts, seq, mac) = snapshot(store).await;
        let again = import_file(store, "onc.json", &resolved, &actor(), false).await.unwrap().unwrap();
        assert_eq!(again.written(), 0, "{}: {}", db.name, summary_line("onc.json", &again));
        assert_eq!(snapshot(store).await, (counts, seq, mac), "{}: a re-import changed something", db.name);
    }
}

/// Diagnoses and benzodiazepines reach the rules from FHIR: a Condition becomes a clinical flag, a
/// benzodiazepine order an other medication; the same bundle again changes nothing, and the order
/// stopped at the source is imported as inactive.
#[tokio::test]
async fn fhir_conditions_and_benzodiazepines_reach_the_rules() {
    use refill_rules::{ClinicalFlagKind, OtherMedicationClass};
    for db in common::backends().await {
        let store = &db.store;
        let active = bundle_with_benzo("active");
        let first = import_file(store, "benzo.json", &active, &actor(), false).await.unwrap().unwrap();
        assert!(first.written() > 0, "{}", db.name);
        let patient = store.patient_by_external_id("p-benzo").await.unwrap().expect("imported").id;
        let today = chrono::Utc::now().date_naive();
        let facts = store.load_patient_facts(patient, today).await.unwrap();
        let kinds: Vec<_> = facts.flags.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec![ClinicalFlagKind::SleepDisorderedBreathing], "{}", db.name);
        let benzos: Vec<_> = facts.other_medications.iter().map(|m| (m.class, m.active)).collect();
        assert_eq!(benzos, vec![(OtherMedicationClass::Benzodiazepine, true)], "{}", db.name);

        let (counts, seq, mac) = snapshot(store).await;
        let again = import_file(store, "benzo.json", &active, &actor(), false).await.unwrap().unwrap();
        assert_eq!(again.written(), 0, "{}: {}", db.name, summary_line("benzo.json", &again));
        assert_eq!(snapshot(store).await, (counts, seq, mac), "{}: a re-import changed something", db.name);

        let stopped = import_file(store, "benzo.json", &bundle_with_benzo("stopped"), &actor(), false).await.unwrap();
        assert_eq!(stopped.unwrap().written(), 1, "{}: only the stopped order changes", db.name);
        let facts = store.load_patient_facts(patient, today).await.unwrap();
        let benzos: Vec<_> = facts.other_medications.iter().map(|m| (m.class, m.active)).collect();
        assert_eq!(benzos, vec![(OtherMedicationClass::Benzodiazepine, false)], "{}", db.name);
    }
}

/// Refill requests and a transferred patient's previous prescriber through the CSV path, on both
/// backends: the previous prescriber reaches the rules' facts and an empty column keeps it; requests are
/// recorded with channel `import` unless given, the latest unanswered one is the patient's open request,
/// a re-import (or one a desk already recorded) is not recorded twice; a file with one bad row is
/// rejected naming file, line and field, and writes nothing.
#[tokio::test]
async fn refill_requests_and_previous_prescribers_import_through_csv() {
    use refill_rules::{PrescriberId, RequestKind};
    use refill_store::cycle::NewRefillRequest;
    let patients = "patient_id,family_name,given_name,birth_date,sex,prescriber_id,previous_prescriber\n\
                    T1,Transfer,Tess,1960-05-05,female,1234567893,1888888881\n\
                    T2,Routine,Ray,1970-01-01,male,1234567893,\n";
    let requests = "patient_id,requested_on,kind,channel,note\n\
                    T1,2026-11-30,routine,,\n\
                    T2,2026-11-28,routine,staff,Called the desk\n\
                    T2,2026-11-30,early,,\"Travelling, from the 3rd\"\n";
    for db in common::backends().await {
        let store = &db.store;
        let written = import_file(store, "patients.csv", patients.as_bytes(), &actor(), false).await.unwrap().unwrap();
        assert_eq!(written.written(), 2, "{}", db.name);
        let transferred = store.patient_by_external_id("T1").await.unwrap().unwrap().id;
        let other = store.patient_by_external_id("T2").await.unwrap().unwrap().id;
        let today = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let facts = store.load_patient_facts(transferred, today).await.unwrap();
        assert_eq!(facts.previous_prescriber, Some(PrescriberId("1888888881".into())), "{}", db.name);

        // A desk recorded T1's routine request before the export reached the clinic.
        let mut tx = store.begin().await.unwrap();
        let desk = NewRefillRequest {
            requested_on: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            kind: RequestKind::Routine,
            channel: "staff".into(),
            note: None,
        };
        store.record_refill_request_in(&mut tx, transferred, &desk, &actor()).await.unwrap();
        tx.commit().await.unwrap();

        let report =
            import_file(store, "refill_requests.csv", requests.as_bytes(), &actor(), false).await.unwrap().unwrap();
        assert_eq!((report.written(), report.unchanged()), (2, 1), "{}: {}", db.name, summary_line("r", &report));
        let stored = store.refill_requests_for_patient(other, 10).await.unwrap();
        let seen: Vec<_> = stored.iter().map(|r| (r.kind.as_str(), r.channel.as_str(), r.note.as_deref())).collect();
        assert_eq!(
            seen,
            vec![("early", "import", Some("Travelling, from the 3rd")), ("routine", "staff", Some("Called the desk"))],
            "{}",
            db.name
        );
        assert_eq!(store.refill_requests_for_patient(transferred, 10).await.unwrap().len(), 1, "{}", db.name);
        let facts = store.load_patient_facts(other, today).await.unwrap();
        let open = facts.open_request.expect("the latest unanswered request is open");
        assert_eq!(
            (open.kind, open.requested_on),
            (RequestKind::Early, NaiveDate::from_ymd_opt(2026, 11, 30).unwrap())
        );

        // The same files again: nothing written, not even an audit event; an empty previous_prescriber
        // keeps the stored one.
        let before = snapshot(store).await;
        for (name, contents) in [("patients.csv", patients), ("refill_requests.csv", requests)] {
            let again = import_file(store, name, contents.as_bytes(), &actor(), false).await.unwrap().unwrap();
            assert_eq!(again.written(), 0, "{}: {}", db.name, summary_line(name, &again));
        }
        let without = "patient_id,family_name,given_name,birth_date,sex,prescriber_id\n\
                       T1,Transfer,Tess,1960-05-05,female,1234567893\n";
        let kept = import_file(store, "patients.csv", without.as_bytes(), &actor(), false).await.unwrap().unwrap();
        assert_eq!(kept.written(), 0, "{}", db.name);
        assert_eq!(snapshot(store).await, before, "{}: a re-import changed something", db.name);

        // One bad row among good ones: a patient nobody imported. The file is rejected by line and
        // field, and the good rows are not written either.
        let bad = "patient_id,requested_on,kind\n\
                   T1,2026-12-01,early\n\
                   NOBODY,2026-12-01,routine\n";
        let error = import_file(store, "refill_requests-late.csv", bad.as_bytes(), &actor(), false)
            .await
            .unwrap()
            .expect_err("an unknown patient rejects the file");
        assert_eq!(error.problems.len(), 1, "{error}");
        assert_eq!(error.problems[0].location, Location::Line(3), "{error}");
        assert_eq!(error.problems[0].field, "patient_id", "{error}");
        assert!(error.to_string().contains("refill_requests-late.csv:3: patient_id:"), "{error}");
        let malformed = "patient_id,requested_on,kind\nT1,2026-12-01,early\nT2,2026-12-01,whenever\n";
        let error = import_file(store, "refill_requests.csv", malformed.as_bytes(), &actor(), false)
            .await
            .unwrap()
            .expect_err("a bad kind rejects the file");
        assert!(error.to_string().contains("refill_requests.csv:3: kind: expected routine"), "{error}");
        assert_eq!(snapshot(store).await, before, "{}: a rejected file wrote something", db.name);
    }
}

/// A bundle for one patient with an opioid order and an order of `status` for a product the drug table
/// does not know (a new opioid, say).
fn bundle_with_unknown_product(status: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p-new", "birthDate": "1962-05-06", "gender": "male",
                "name": [{"family": "Ferrante", "given": ["Luca"]}]}},
            {"resource": {"resourceType": "MedicationRequest", "id": "rx-oxy", "status": "active", "intent": "order",
                "subject": {"reference": "Patient/p-new"}, "authoredOn": "2026-11-01",
                "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": "1049621", "display": "oxycodone hydrochloride 5 MG Oral Tablet"}]},
                "dosageInstruction": [{"timing": {"repeat": {"frequency": 4, "period": 1, "periodUnit": "d"}},
                    "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}]}],
                "dispenseRequest": {"quantity": {"value": 120}, "expectedSupplyDuration": {"value": 30, "unit": "days"}}}},
            {"resource": {"resourceType": "MedicationRequest", "id": "rx-new", "status": status, "intent": "order",
                "subject": {"reference": "Patient/p-new"}, "authoredOn": "2026-11-20",
                "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": "9999991", "display": "Newcodone 5 MG Oral Tablet"}]}}}
        ]
    }))
    .unwrap()
}

/// An active order the engine does not recognise as an opioid is kept and listed for the patient page
/// ("not counted in the MME"), never dropped; a re-import changes nothing, and the order stopped at the
/// source leaves the list.
#[tokio::test]
async fn an_order_not_in_the_drug_table_is_kept_and_listed_not_counted() {
    for db in common::backends().await {
        let store = &db.store;
        import_file(store, "new.json", &bundle_with_unknown_product("active"), &actor(), false).await.unwrap().unwrap();
        let patient = store.patient_by_external_id("p-new").await.unwrap().expect("imported").id;
        let listed = store.unrecognised_orders(patient).await.unwrap();
        assert_eq!(listed.len(), 1, "{}: {listed:?}", db.name);
        assert!(listed[0].0.contains("Newcodone"), "{}: {listed:?}", db.name);
        assert!(listed[0].1.contains("not recognised as an opioid: RxNorm 9999991"), "{}: {listed:?}", db.name);

        let (counts, seq, mac) = snapshot(store).await;
        let again = import_file(store, "new.json", &bundle_with_unknown_product("active"), &actor(), false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.written(), 0, "{}: {}", db.name, summary_line("new.json", &again));
        assert_eq!(snapshot(store).await, (counts, seq, mac), "{}: a re-import changed something", db.name);

        import_file(store, "new.json", &bundle_with_unknown_product("stopped"), &actor(), false)
            .await
            .unwrap()
            .unwrap();
        assert!(store.unrecognised_orders(patient).await.unwrap().is_empty(), "{}: a stopped order leaves", db.name);
    }
}

/// The demo's two weeks of history run as a clinic that tapers well does: the desk records a check-in
/// before every taper step, so no step pauses for a missed check-in (the daily run's gate would pause it
/// and ask a physician), and the check-ins are there to read.
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_desk_checks_in_before_every_taper_step() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let output = refill().args(["demo", "--seed", "7", "--no-serve", "--db"]).arg(&db).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", db.display())).await.unwrap();
    let (check_ins,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM taper_check_ins").fetch_one(&pool).await.unwrap();
    let (missed,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM exception_notes WHERE note LIKE '%had no check-in%'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(check_ins > 0, "the demo desk recorded no taper check-in\n{stdout}");
    assert_eq!(missed, 0, "a demo taper step paused for a missed check-in");
    pool.close().await;
}
