//! Shared pieces of the job tests: one worker that drains the default queue and exits, and a patient
//! with one 30-day fill (the fixture most pipeline tests start from).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use refill_jobs::{JobContext, StoreQueue, WorkerReport, WorkerSettings};
use refill_rules::{Fill, PatientId};
use refill_store::{Actor, PatientDetails, Store, Tx};

/// Run one worker `worker_id` with `context` over the default queue until nothing is due (fast polling,
/// no schedule ticks), and return what it did.
pub async fn drain_default_queue(store: &Store, worker_id: &str, context: JobContext) -> WorkerReport {
    let queue = Arc::new(StoreQueue::new(store.clone(), context, None));
    let mut settings = WorkerSettings::new(worker_id);
    settings.queues = vec!["default".into()];
    settings.poll_interval = Duration::from_millis(50);
    settings.tick_interval = Duration::ZERO;
    settings.drain = true;
    refill_jobs::run_worker(queue, settings, std::future::pending()).await.expect("worker")
}

/// A patient `external_id` with one fill of 60 units for 30 days on 2026-10-20.
pub async fn patient_with_a_fill(tx: &mut Tx, external_id: &str, given: &str, family: &str) -> PatientId {
    let id =
        tx.insert_patient(&PatientDetails::new(external_id, given, family), &Actor::system()).await.expect("patient");
    let fill = Fill {
        filled_on: NaiveDate::from_ymd_opt(2026, 10, 20).expect("date"),
        days_supply: 30,
        order_id: None,
        quantity: Some(60.0),
    };
    tx.insert_fill(id, &fill, None).await.expect("fill");
    id
}
