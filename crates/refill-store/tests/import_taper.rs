//! Taper plans imported from a source, on SQLite and PostgreSQL: a plan that arrives paused holds the
//! step in force on the day it was imported (the export carries no pause date), so later steps do not
//! come into force while it stays paused; re-importing it changes nothing; imported active again, it
//! follows its steps.

mod common;

use chrono::{Duration, Utc};
use common::oxycodone;
use refill_rules::{RiskTier, Sex, TaperState};
use refill_store::Actor;
use refill_store::import::{ImportBatch, ImportPatient, ImportTaper, ImportTaperStep};

fn batch(state: TaperState, first_step: chrono::NaiveDate, second_step: chrono::NaiveDate) -> ImportBatch {
    ImportBatch {
        source_name: "tapers.csv".into(),
        source_sha256: "0".repeat(64),
        patients: vec![ImportPatient {
            external_id: "ext-taper".into(),
            mrn: None,
            given_name: "Ada".into(),
            family_name: "Lovelace".into(),
            birth_date: None,
            sex: Sex::Female,
            risk_tier: Some(RiskTier::Moderate),
            prescriber_of_record: None,
            email: None,
            phone: None,
            email_consent: false,
            contact_preference: "phone",
            part2: false,
            previous_prescriber: None,
            enrolment_if_new: refill_store::Enrolment::Enrolled,
        }],
        tapers: vec![ImportTaper {
            patient_key: "ext-taper".into(),
            source_id: "taper-1".into(),
            state,
            started_on: first_step,
            physician: "1111111111".into(),
            rationale: "agreed slow taper".into(),
            steps: vec![
                ImportTaperStep {
                    step_number: 1,
                    starts_on: first_step,
                    regimen: vec![oxycodone("s1", 7.5)],
                    total_daily_mme: Some(45.0),
                },
                ImportTaperStep {
                    step_number: 2,
                    starts_on: second_step,
                    regimen: vec![oxycodone("s2", 5.0)],
                    total_daily_mme: Some(30.0),
                },
            ],
        }],
        ..ImportBatch::default()
    }
}

#[tokio::test]
async fn an_imported_paused_taper_holds_its_step() {
    for db in common::backends().await {
        let store = &db.store;
        let today = Utc::now().date_naive();
        let (first, second) = (today - Duration::days(10), today + Duration::days(7));
        store.import_batch(&batch(TaperState::Paused, first, second), &Actor::system()).await.unwrap();
        let patient = store.patient_id_bounds().await.unwrap().expect("imported").0;

        let later = store.load_patient_facts(patient, second + Duration::days(3)).await.unwrap().taper.unwrap();
        assert_eq!((later.state, later.step_started_on), (TaperState::Paused, first), "{}", db.name);

        store.import_batch(&batch(TaperState::Paused, first, second), &Actor::system()).await.unwrap();
        let still = store.load_patient_facts(patient, second + Duration::days(3)).await.unwrap().taper.unwrap();
        assert_eq!(still.step_started_on, first, "{}: a re-import keeps the pause", db.name);

        store.import_batch(&batch(TaperState::Active, first, second), &Actor::system()).await.unwrap();
        let active = store.load_patient_facts(patient, second + Duration::days(3)).await.unwrap().taper.unwrap();
        assert_eq!((active.state, active.step_started_on), (TaperState::Active, second), "{}", db.name);
    }
}
