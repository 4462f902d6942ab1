//! Enrolment on SQLite and PostgreSQL: an import puts a new patient where its `enrolment_if_new` says
//! and never changes a stored patient's enrolment; the daily run's patient listing skips patients who
//! are not enrolled; the not-enrolled list pages; a change checks the version.

mod common;

use chrono::NaiveDate;
use refill_rules::{PatientId, Sex};
use refill_store::import::{ImportBatch, ImportOrder, ImportOutcome, ImportPatient};
use refill_store::{Actor, Enrolment, Store, StoreError};

fn patient(key: &str, family: &str, enrolment_if_new: Enrolment) -> ImportPatient {
    ImportPatient {
        external_id: key.into(),
        mrn: Some(format!("MRN-{key}")),
        given_name: "Given".into(),
        family_name: family.into(),
        birth_date: NaiveDate::from_ymd_opt(1960, 1, 1),
        sex: Sex::Female,
        risk_tier: None,
        prescriber_of_record: None,
        email: None,
        phone: None,
        email_consent: false,
        contact_preference: "none",
        part2: false,
        previous_prescriber: None,
        enrolment_if_new,
    }
}

async fn import(store: &Store, batch: ImportBatch) {
    let outcome = store.import_batch(&batch, &Actor::system()).await.unwrap();
    assert!(matches!(outcome, ImportOutcome::Committed(_)), "{outcome:?}");
}

async fn id_of(store: &Store, key: &str) -> PatientId {
    store.patient_by_external_id(key).await.unwrap().expect("imported").id
}

#[tokio::test]
async fn imports_set_enrolment_on_new_patients_only_and_the_daily_listing_skips_the_not_enrolled() {
    for db in common::backends().await {
        let store = &db.store;
        let name = db.name;
        let batch = ImportBatch {
            source_name: "bundle.json".into(),
            source_sha256: "a".repeat(64),
            patients: vec![
                patient("ehr-1", "Avery", Enrolment::NotEnrolled),
                patient("ehr-2", "Blake", Enrolment::NotEnrolled),
                patient("ehr-3", "Carver", Enrolment::Enrolled),
            ],
            orders: vec![ImportOrder {
                patient_key: "ehr-3".into(),
                active: true,
                order: common::oxycodone("MedicationRequest/o3", 10.0),
            }],
            ..ImportBatch::default()
        };
        import(store, batch.clone()).await;
        let (one, two, three) = (id_of(store, "ehr-1").await, id_of(store, "ehr-2").await, id_of(store, "ehr-3").await);

        let state = store.patient_enrolment(one).await.unwrap();
        assert_eq!(state.status, Enrolment::NotEnrolled, "{name}");
        assert_eq!(state.reason.as_deref(), Some("imported without an active opioid order"), "{name}");
        assert!(!state.has_active_order, "{name}");
        let enrolled = store.patient_enrolment(three).await.unwrap();
        assert_eq!((enrolled.status, enrolled.has_active_order), (Enrolment::Enrolled, true), "{name}");

        // The daily run's listing: only the enrolled patient.
        let day = common::date("2026-12-01");
        let facts = store.load_facts_in_range(one, three, day).await.unwrap();
        let listed: Vec<_> = facts.iter().map(|f| f.patient_id).collect();
        assert_eq!(listed, vec![three], "{name}: the daily run lists a patient who is not enrolled");

        // The list, paged by name.
        let (page, total) = store.not_enrolled_page(0, 1).await.unwrap();
        assert_eq!(total, 2, "{name}");
        assert_eq!(page.iter().map(|p| p.id).collect::<Vec<_>>(), vec![one], "{name}");
        let (page, _) = store.not_enrolled_page(1, 1).await.unwrap();
        assert_eq!(page.iter().map(|p| p.id).collect::<Vec<_>>(), vec![two], "{name}");

        // A change with a stale version is a conflict; with the current one it is written.
        let staff = Actor { id: "u-staff".into(), role: "staff".into() };
        let mut tx = store.begin().await.unwrap();
        let stale = tx.set_enrolment(two, state.version - 1, Enrolment::Dismissed, Some("why"), &staff).await;
        assert!(matches!(stale, Err(StoreError::Conflict(_))), "{name}: {stale:?}");
        tx.rollback().await.unwrap();
        let before = store.patient_enrolment(two).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        tx.set_enrolment(two, before.version, Enrolment::Dismissed, Some("seen at another clinic"), &staff)
            .await
            .unwrap();
        tx.set_enrolment(one, state.version, Enrolment::Enrolled, None, &staff).await.unwrap();
        tx.commit().await.unwrap();
        let dismissed = store.patient_enrolment(two).await.unwrap();
        assert_eq!(dismissed.status, Enrolment::Dismissed, "{name}");
        assert_eq!(dismissed.changed_by.as_deref(), Some("u-staff"), "{name}");
        assert_eq!(dismissed.reason.as_deref(), Some("seen at another clinic"), "{name}");
        assert!(dismissed.changed_at.is_some(), "{name}");
        assert_eq!(store.not_enrolled_page(0, 10).await.unwrap().1, 0, "{name}");

        // Now enrolled: listed by the daily run; the dismissed one is not.
        let facts = store.load_facts_in_range(one, three, day).await.unwrap();
        let listed: Vec<_> = facts.iter().map(|f| f.patient_id).collect();
        assert_eq!(listed, vec![one, three], "{name}");

        // A re-import (even one now saying "enrolled", with changed details) changes no enrolment.
        let mut again = batch.clone();
        again.source_sha256 = "b".repeat(64);
        for p in &mut again.patients {
            p.enrolment_if_new = Enrolment::NotEnrolled;
            p.given_name = "Changed".into();
        }
        again.patients[1].enrolment_if_new = Enrolment::Enrolled;
        import(store, again).await;
        assert_eq!(store.patient_enrolment(one).await.unwrap().status, Enrolment::Enrolled, "{name}");
        assert_eq!(store.patient_enrolment(two).await.unwrap().status, Enrolment::Dismissed, "{name}");
        assert_eq!(store.patient_enrolment(three).await.unwrap().status, Enrolment::Enrolled, "{name}");
    }
}
