//! Check-ins gate taper steps (issue 13), on SQLite and PostgreSQL: the daily run applies a step only
//! after a check-in that lets it; a missed check-in, or one with significant withdrawal, pauses the plan
//! (the dose in force stays) and sends the patient to a physician with a note saying why.

use std::sync::Arc;

use chrono::NaiveDate;
use refill_app::App;
use refill_rules::PatientId;
use refill_rules::facts::TaperState;
use refill_rules::policy::Policy;
use refill_rules::taper::check_in::{CheckIn, Peg, StopReason, Wish, Withdrawal};
use refill_store::{Actor, NewTaperPlan, NewTaperStep, PatientDetails, Store};

#[path = "../../refill-store/tests/common/mod.rs"]
mod common;

fn desk() -> Actor {
    Actor::new("user:desk", "staff")
}

async fn patient_on_a_taper(store: &Store, name: &str) -> PatientId {
    let mut tx = store.begin().await.expect("begin");
    let patient =
        tx.insert_patient(&PatientDetails::new(name, "Ada", "Quill"), &Actor::system()).await.expect("patient");
    let mut order = common::oxycodone("MedicationRequest/oxy", 10.0);
    order.dose =
        Some(refill_rules::facts::DoseQuantity { value: 2.0, unit: refill_rules::facts::DoseUnit::DoseFormUnit });
    tx.replace_regimen(patient, &[order.clone()]).await.expect("regimen");
    tx.commit().await.expect("commit");
    let step = |starts_on: &str, tablets: f64| {
        let mut order = order.clone();
        order.dose = Some(refill_rules::facts::DoseQuantity {
            value: tablets,
            unit: refill_rules::facts::DoseUnit::DoseFormUnit,
        });
        NewTaperStep {
            starts_on: common::date(starts_on),
            regimen: vec![order],
            total_daily_mme: Some(tablets * 4.0 * 7.5),
        }
    };
    let plan = NewTaperPlan {
        started_on: common::date("2026-03-02"),
        rationale: "agreed with the patient: a slow taper".into(),
        steps: vec![step("2026-03-02", 2.0), step("2026-03-30", 1.5), step("2026-04-27", 1.0)],
    };
    let version = store.patient(patient).await.expect("patient").version;
    store.create_taper_plan(patient, version, &plan, &Actor::new("user:dr-1", "physician")).await.expect("plan");
    patient
}

fn check_in(on: &str, withdrawal: Withdrawal, wish: Wish) -> CheckIn {
    CheckIn { on: common::date(on), peg: Peg { pain: 5, enjoyment: 4, activity: 4 }, withdrawal, wish }
}

async fn apply(app: &App, patient: PatientId, date: NaiveDate) -> (bool, TaperState) {
    let mut tx = app.store.begin().await.expect("begin");
    let mut facts = tx.load_patient_facts(patient, date).await.expect("facts");
    let applied =
        refill_app::daily::apply_taper_step(app, &mut tx, &mut facts, date, &Actor::system()).await.expect("apply");
    tx.commit().await.expect("commit");
    let facts = app.store.load_patient_facts(patient, date).await.expect("facts");
    (applied, facts.taper.expect("a plan").state)
}

#[tokio::test]
async fn a_step_needs_a_check_in_and_withdrawal_pauses_it_for_a_physician() {
    for db in common::backends().await {
        let store = db.store.clone();
        let app = App::new(store.clone(), Arc::new(Policy::default()), "test-policy");
        let clinic = store.clinic_facts().await.expect("clinic");

        // No check-in before the step: not applied, paused, a physician asked with a note.
        let missed = patient_on_a_taper(&store, "m-1").await;
        let (applied, state) = apply(&app, missed, common::date("2026-03-30")).await;
        assert!(!applied, "{}", db.name);
        assert_eq!(state, TaperState::Paused, "{}", db.name);
        let exceptions = store.exceptions_for_patient(missed).await.expect("exceptions");
        let exception = exceptions.last().expect("an exception for the physician");
        let notes = store.exception_notes(exception.id).await.expect("notes");
        assert!(notes.iter().any(|n| n.note.contains("no check-in before the step")), "{}: {notes:?}", db.name);
        let facts = store.load_patient_facts(missed, common::date("2026-03-30")).await.expect("facts");
        assert_eq!(facts.regimen[0].dose.as_ref().unwrap().value, 2.0, "{}: the dose in force stays", db.name);

        // A good check-in lets the step start.
        let ready = patient_on_a_taper(&store, "g-1").await;
        let mut tx = store.begin().await.expect("begin");
        let outcome = refill_app::taper::record_check_in(
            &app,
            &mut tx,
            &clinic,
            &refill_app::taper::NewCheckIn {
                patient: ready,
                check_in: check_in("2026-03-25", Withdrawal::Mild, Wish::GoOn),
                note: "by phone",
            },
            common::date("2026-03-25"),
            &desk(),
        )
        .await
        .expect("check-in");
        tx.commit().await.expect("commit");
        assert!(outcome.stops.is_empty() && !outcome.paused, "{}", db.name);
        let (applied, state) = apply(&app, ready, common::date("2026-03-30")).await;
        assert!(applied, "{}", db.name);
        assert_eq!(state, TaperState::Active, "{}", db.name);

        // Significant withdrawal at the check-in: paused at once, a physician asked; the step waits.
        let mut tx = store.begin().await.expect("begin");
        let outcome = refill_app::taper::record_check_in(
            &app,
            &mut tx,
            &clinic,
            &refill_app::taper::NewCheckIn {
                patient: ready,
                check_in: check_in("2026-04-20", Withdrawal::Significant, Wish::GoOn),
                note: "",
            },
            common::date("2026-04-20"),
            &desk(),
        )
        .await
        .expect("check-in");
        tx.commit().await.expect("commit");
        assert_eq!(outcome.stops, vec![StopReason::SignificantWithdrawal], "{}", db.name);
        assert!(outcome.paused && outcome.exception_id.is_some(), "{}", db.name);
        let (applied, state) = apply(&app, ready, common::date("2026-04-27")).await;
        assert!(!applied, "{}: the last step never starts after a check-in that stops it", db.name);
        assert_eq!(state, TaperState::Paused, "{}", db.name);

        // A check-in in the future is refused.
        let mut tx = store.begin().await.expect("begin");
        let refused = refill_app::taper::record_check_in(
            &app,
            &mut tx,
            &clinic,
            &refill_app::taper::NewCheckIn {
                patient: ready,
                check_in: check_in("2026-05-01", Withdrawal::None, Wish::GoOn),
                note: "",
            },
            common::date("2026-04-28"),
            &desk(),
        )
        .await;
        assert!(matches!(refused, Err(refill_app::AppError::Refused(_))), "{}", db.name);
    }
}
