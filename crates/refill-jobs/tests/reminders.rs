//! Patient reminders that the daily pipeline enqueues from the store's reminder dates, on real SQLite
//! and PostgreSQL: "your care plan changes on ..." a week before a taper step of an active plan (none
//! for a paused plan), and one follow-up for a refill prepared and not picked up (none once a fill is
//! recorded). Each is enqueued once however many days its condition holds.

#[path = "../../refill-store/tests/common/mod.rs"]
mod common;

use common::oxycodone;

use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use refill_jobs::pipeline::{StoreEvaluator, run_daily};
use refill_rules::decision::Decision;
use refill_rules::policy::Policy;
use refill_rules::uds::UdsSeed;
use refill_rules::{Fill, PatientId};
use refill_store::codec::StoredTaperState;
use refill_store::jobs::{self, JobState};
use refill_store::{Actor, NewDecision, NewTaperPlan, NewTaperStep, PatientDetails, Store};

fn day(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

async fn add_patient(store: &Store, name: &str, filled_on: NaiveDate) -> PatientId {
    let mut tx = store.begin().await.unwrap();
    let id =
        tx.insert_patient(&PatientDetails::new(format!("ext-{name}"), "Test", name), &Actor::system()).await.unwrap();
    let fill = Fill { filled_on, days_supply: 28, order_id: None, quantity: Some(112.0) };
    tx.insert_fill(id, &fill, None).await.unwrap();
    tx.commit().await.unwrap();
    id
}

/// A plan whose second step starts on `second_step_on`; paused when `paused`.
async fn add_taper(store: &Store, patient: PatientId, second_step_on: NaiveDate, paused: bool) {
    let plan = NewTaperPlan {
        started_on: day("2026-11-01"),
        rationale: "patient and physician agreed a slow taper".into(),
        steps: vec![
            NewTaperStep {
                starts_on: day("2026-11-01"),
                regimen: vec![oxycodone("s1", 5.0)],
                total_daily_mme: Some(30.0),
            },
            NewTaperStep {
                starts_on: second_step_on,
                regimen: vec![oxycodone("s2", 2.5)],
                total_daily_mme: Some(15.0),
            },
        ],
    };
    let physician = Actor::new("user:9", "physician");
    let mut tx = store.begin().await.unwrap();
    let plan_id = tx.insert_taper_plan(patient, &plan, &physician).await.unwrap();
    if paused {
        tx.set_taper_state(plan_id, 1, StoredTaperState::Paused, &physician, "patient asked to pause").await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// Today's queue row for `patient`, done by staff: the refill was prepared on `on`.
async fn prepare_refill(store: &Store, patient: PatientId, on: NaiveDate) {
    let approve = Decision::from_reasons(Vec::new(), None, Some(30.0), "test-policy");
    let mut tx = store.begin().await.unwrap();
    let recorded = store
        .record_decision(
            &mut tx,
            &NewDecision {
                patient_id: patient,
                clinic_date: on,
                refill_request_id: None,
                decision: &approve,
                decided_by: &Actor::system(),
                run_out_on: Some(on + Duration::days(2)),
                dedupe_key: None,
            },
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let item = store.queue_item(recorded.queue_item_id.expect("an approval is queued")).await.unwrap();
    let staff = Actor::new("user:desk", "staff");
    store.complete_queue_item(item.id, item.version, &staff, Some("refill prepared for signature")).await.unwrap();
}

fn evaluator(store: &Store) -> Arc<StoreEvaluator> {
    Arc::new(StoreEvaluator::new(store.clone(), Arc::new(Policy::default()), "test-policy", UdsSeed::splitmix64(7)))
}

async fn reminder_keys(store: &Store) -> Vec<String> {
    let mut keys: Vec<String> = jobs::list_jobs(store, JobState::Available, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|job| job.kind == "patient_reminder")
        .filter_map(|job| job.unique_key)
        .filter(|key| key.starts_with("taper_step_coming:") || key.starts_with("missed_pickup:"))
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn coming_taper_steps_and_missed_pickups_are_reminded_once() {
    for db in common::backends().await {
        let store = &db.store;
        let today = day("2026-12-07"); // a Monday
        let tapering = add_patient(store, "Tapering", day("2026-11-20")).await;
        add_taper(store, tapering, day("2026-12-11"), false).await;
        let paused = add_patient(store, "Paused", day("2026-11-20")).await;
        add_taper(store, paused, day("2026-12-11"), true).await;
        let far = add_patient(store, "Far", day("2026-11-20")).await;
        add_taper(store, far, day("2026-12-28"), false).await;

        // Prepared Tuesday 1 December, nothing picked up: overdue from Sunday 6th, "before Friday 11th".
        let missed = add_patient(store, "Missed", day("2026-11-03")).await;
        prepare_refill(store, missed, day("2026-12-01")).await;
        let picked_up = add_patient(store, "PickedUp", day("2026-11-03")).await;
        prepare_refill(store, picked_up, day("2026-12-01")).await;
        let mut tx = store.begin().await.unwrap();
        let fill = Fill { filled_on: day("2026-12-02"), days_supply: 28, order_id: None, quantity: Some(112.0) };
        tx.insert_fill(picked_up, &fill, None).await.unwrap();
        tx.commit().await.unwrap();

        let daily = evaluator(store);
        run_daily(store, daily.as_ref(), "main", today, 100).await.unwrap();
        let expected = vec![
            format!("missed_pickup:{}:2026-12-11", missed.0),
            format!("taper_step_coming:{}:2026-12-11", tapering.0),
        ];
        assert_eq!(reminder_keys(store).await, expected, "{}", db.name);

        // The next days: the same reminders, nothing added (keyed by the date they are about).
        for next in [today + Duration::days(1), today + Duration::days(3)] {
            run_daily(store, daily.as_ref(), "main", next, 100).await.unwrap();
            assert_eq!(reminder_keys(store).await, expected, "{}: on {next}", db.name);
        }
    }
}
