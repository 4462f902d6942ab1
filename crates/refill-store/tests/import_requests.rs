//! Refill requests imported by several processes at once, on SQLite and PostgreSQL: each request is
//! recorded once (the table has no unique key for them, so the import serialises per patient), and a
//! request for a patient nobody imported rejects the whole file by its position.

mod common;

use chrono::NaiveDate;
use refill_rules::{RequestKind, Sex};
use refill_store::Actor;
use refill_store::import::{
    ImportBatch, ImportKind, ImportOutcome, ImportPatient, ImportRefillRequest, imported_row_counts,
};

/// Patients per race: enough statements that concurrent imports overlap in time.
const PATIENTS: usize = 300;
const CONTENDERS: usize = 4;

fn patient(n: usize) -> ImportPatient {
    ImportPatient {
        external_id: format!("R{n:04}"),
        mrn: None,
        given_name: "Given".into(),
        family_name: format!("Family{n}"),
        birth_date: NaiveDate::from_ymd_opt(1960, 1, 1),
        sex: Sex::Female,
        risk_tier: None,
        prescriber_of_record: None,
        email: None,
        phone: None,
        email_consent: false,
        contact_preference: "phone",
        part2: false,
        previous_prescriber: None,
        enrolment_if_new: refill_store::Enrolment::Enrolled,
    }
}

fn request(n: usize) -> ImportRefillRequest {
    ImportRefillRequest {
        patient_key: format!("R{n:04}"),
        requested_on: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        kind: RequestKind::Routine,
        channel: "import",
        note: None,
    }
}

fn count(counts: &[(&'static str, i64)], table: &str) -> i64 {
    counts.iter().find(|(t, _)| *t == table).map(|(_, c)| *c).unwrap()
}

#[tokio::test]
async fn concurrent_imports_record_each_request_once() {
    for db in common::backends().await {
        let patients = ImportBatch {
            source_name: "patients.csv".into(),
            source_sha256: "0".repeat(64),
            patients: (0..PATIENTS).map(patient).collect(),
            ..ImportBatch::default()
        };
        let outcome = db.store.import_batch(&patients, &Actor::system()).await.unwrap();
        assert!(matches!(outcome, ImportOutcome::Committed(_)), "{}: {outcome:?}", db.name);
        let requests = ImportBatch {
            source_name: "refill_requests.csv".into(),
            source_sha256: "1".repeat(64),
            refill_requests: (0..PATIENTS).map(request).collect(),
            ..ImportBatch::default()
        };
        let mut contenders = Vec::new();
        for _ in 0..CONTENDERS {
            let store = db.open_another().await;
            let batch = requests.clone();
            contenders.push(tokio::spawn(async move { store.import_batch(&batch, &Actor::system()).await }));
        }
        let mut written = 0;
        for contender in contenders {
            match contender.await.unwrap().unwrap() {
                ImportOutcome::Committed(report) => written += report.written(),
                ImportOutcome::Rejected(rejections) => panic!("{}: {rejections:?}", db.name),
            }
        }
        let counts = imported_row_counts(&db.store).await.unwrap();
        assert_eq!(count(&counts, "refill_requests"), PATIENTS as i64, "{}: a request recorded twice", db.name);
        assert_eq!(written, PATIENTS as u64, "{}", db.name);

        // One unknown patient among known ones: rejected by its position, nothing written.
        let mut bad = requests.clone();
        bad.refill_requests[0].requested_on = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        bad.refill_requests.push(ImportRefillRequest { patient_key: "NOBODY".into(), ..request(0) });
        match db.store.import_batch(&bad, &Actor::system()).await.unwrap() {
            ImportOutcome::Rejected(rejections) => {
                let seen: Vec<_> = rejections.iter().map(|r| (r.kind, r.index, r.field)).collect();
                assert_eq!(seen, vec![(ImportKind::RefillRequests, PATIENTS, "patient_id")], "{}", db.name);
            }
            other => panic!("{}: expected a rejection, got {other:?}", db.name),
        }
        assert_eq!(imported_row_counts(&db.store).await.unwrap(), counts, "{}: a rejected file wrote", db.name);
    }
}
