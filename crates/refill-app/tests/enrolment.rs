//! Enrolling and dismissing imported patients through the use case, on SQLite and PostgreSQL: who may,
//! the refusals in words (an active opioid order is never dismissed), the decision made at once on
//! enrolment, the audit events, and nothing written by a refusal.

#[path = "../../refill-store/tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use chrono::NaiveDate;
use refill_app::{App, AppError, enrolment};
use refill_rules::policy::Policy;
use refill_rules::{PatientId, Sex};
use refill_store::import::{ImportBatch, ImportOrder, ImportOutcome, ImportPatient};
use refill_store::{Actor, Enrolment, Store};

fn patient(key: &str) -> ImportPatient {
    ImportPatient {
        external_id: key.into(),
        mrn: None,
        given_name: "Given".into(),
        family_name: key.into(),
        birth_date: NaiveDate::from_ymd_opt(1970, 3, 1),
        sex: Sex::Male,
        risk_tier: None,
        prescriber_of_record: None,
        email: None,
        phone: None,
        email_consent: false,
        contact_preference: "none",
        part2: false,
        previous_prescriber: None,
        enrolment_if_new: Enrolment::NotEnrolled,
    }
}

async fn id_of(store: &Store, key: &str) -> PatientId {
    store.patient_by_external_id(key).await.unwrap().expect("imported").id
}

#[tokio::test]
async fn staff_enrol_and_dismiss_with_refusals_in_words_each_audited() {
    for db in common::backends().await {
        let name = db.name;
        let store = &db.store;
        let app = App::new(store.clone(), Arc::new(Policy::default()), "test-policy");
        // Three EHR patients not enrolled; one of them has since got an active opioid order.
        let batch = ImportBatch {
            source_name: "bundle.json".into(),
            source_sha256: "c".repeat(64),
            patients: vec![patient("enrol-me"), patient("dismiss-me"), patient("on-opioid")],
            orders: vec![ImportOrder {
                patient_key: "on-opioid".into(),
                active: true,
                order: common::oxycodone("MedicationRequest/x", 5.0),
            }],
            ..ImportBatch::default()
        };
        let outcome = store.import_batch(&batch, &Actor::system()).await.unwrap();
        assert!(matches!(outcome, ImportOutcome::Committed(_)), "{name}: {outcome:?}");
        let (enrol_me, dismiss_me, on_opioid) =
            (id_of(store, "enrol-me").await, id_of(store, "dismiss-me").await, id_of(store, "on-opioid").await);
        let staff = Actor::new("user:1", "staff");
        let admin = Actor::new("user:2", "admin");
        let today = common::date("2026-12-01");

        // Refusals write nothing.
        let version = store.patient_enrolment(dismiss_me).await.unwrap().version;
        let mut tx = store.begin().await.unwrap();
        let by_admin = enrolment::dismiss(&app, &mut tx, dismiss_me, version, &admin, "not ours").await;
        assert!(matches!(&by_admin, Err(AppError::Refused(m)) if m.contains("refill desk or a physician")), "{name}");
        let no_reason = enrolment::dismiss(&app, &mut tx, dismiss_me, version, &staff, "  ").await;
        assert!(matches!(&no_reason, Err(AppError::Refused(m)) if m.starts_with("reason")), "{name}");
        let opioid_version = store.patient_enrolment(on_opioid).await.unwrap().version;
        let on_order = enrolment::dismiss(&app, &mut tx, on_opioid, opioid_version, &staff, "not ours").await;
        assert!(
            matches!(&on_order, Err(AppError::Refused(m)) if m.contains("active opioid order")),
            "{name}: {on_order:?}"
        );
        tx.rollback().await.unwrap();
        assert_eq!(store.patient_enrolment(on_opioid).await.unwrap().status, Enrolment::NotEnrolled, "{name}");

        // Dismissed with a reason, audited.
        let mut tx = store.begin().await.unwrap();
        enrolment::dismiss(&app, &mut tx, dismiss_me, version, &staff, "Seen for a one-off visit only").await.unwrap();
        tx.commit().await.unwrap();
        let state = store.patient_enrolment(dismiss_me).await.unwrap();
        assert_eq!(state.status, Enrolment::Dismissed, "{name}");
        let events = store.audit_events_for_patient(dismiss_me, 10).await.unwrap();
        let event = events.iter().find(|e| e.action == "patient.enrolment_dismissed").expect("audited");
        assert_eq!(event.reason.as_deref(), Some("Seen for a one-off visit only"), "{name}");

        // Enrolled: decided at once, audited; enrolling twice is refused.
        let version = store.patient_enrolment(enrol_me).await.unwrap().version;
        let mut tx = store.begin().await.unwrap();
        let changed = enrolment::enrol(&app, &mut tx, enrol_me, version, &staff, today).await.unwrap();
        tx.commit().await.unwrap();
        let decided = changed.decided.expect("decided at once");
        assert!(decided.recorded.created, "{name}");
        assert_eq!(store.patient_enrolment(enrol_me).await.unwrap().status, Enrolment::Enrolled, "{name}");
        let events = store.audit_events_for_patient(enrol_me, 10).await.unwrap();
        assert!(events.iter().any(|e| e.action == "patient.enrolled"), "{name}");
        let facts = store.load_facts_in_range(enrol_me, enrol_me, today).await.unwrap();
        assert_eq!(facts.len(), 1, "{name}: the daily run lists the enrolled patient");
        let mut tx = store.begin().await.unwrap();
        let again = enrolment::enrol(&app, &mut tx, enrol_me, changed.version, &staff, today).await;
        assert!(matches!(&again, Err(AppError::Refused(m)) if m.contains("already enrolled")), "{name}");
        // An enrolled patient is never dismissed from here.
        let enrolled = enrolment::dismiss(&app, &mut tx, enrol_me, changed.version, &staff, "gone").await;
        assert!(matches!(&enrolled, Err(AppError::Refused(m)) if m.contains("enrolled")), "{name}");
        // A stale version is a conflict.
        let stale = enrolment::enrol(&app, &mut tx, on_opioid, opioid_version - 1, &staff, today).await;
        assert!(matches!(stale, Err(AppError::Conflict(_))), "{name}");
        tx.rollback().await.unwrap();
    }
}
