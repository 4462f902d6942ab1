//! The daily pipeline on real SQLite and PostgreSQL: through the queue (a `DailyPipeline` job fans out
//! into chunk jobs that a worker runs) and synchronously (`run_daily`), idempotent per (patient,
//! clinic date), with every patient decided once per date and a UDS date drawn for each.

#[path = "../../refill-store/tests/common/mod.rs"]
mod common;
mod support;
use support::{drain_default_queue, patient_with_a_fill};

use std::sync::Arc;

use chrono::NaiveDate;
use refill_jobs::pipeline::{StoreEvaluator, run_daily};
use refill_jobs::{JobContext, JobPayload};
use refill_rules::PatientId;
use refill_rules::policy::Policy;
use refill_rules::uds::UdsSeed;
use refill_store::Store;
use refill_store::jobs::{self, JobState};

async fn add_patients(store: &Store, count: usize) -> Vec<PatientId> {
    let mut ids = Vec::new();
    let mut tx = store.begin().await.unwrap();
    for n in 0..count {
        ids.push(patient_with_a_fill(&mut tx, &format!("ext-{n}"), "Test", &format!("Patient{n}")).await);
    }
    tx.commit().await.unwrap();
    ids
}

fn evaluator(store: &Store) -> Arc<StoreEvaluator> {
    Arc::new(StoreEvaluator::new(store.clone(), Arc::new(Policy::default()), "test-policy", UdsSeed::splitmix64(42)))
}

#[tokio::test]
async fn the_daily_pipeline_decides_every_patient_once_per_date() {
    for db in common::backends().await {
        let store = &db.store;
        let ids = add_patients(store, 7).await;
        let date = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();

        // Through the queue: one pipeline job, chunks of 3 patients, a worker drains them.
        let mut tx = store.begin().await.unwrap();
        let pipeline = JobPayload::DailyPipeline { site: "main".into(), date };
        jobs::enqueue(&mut tx, &pipeline.to_new_job()).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        let mut context = JobContext::new("w1");
        context.chunk_size = 3;
        context.daily = Some(evaluator(store));
        let report = drain_default_queue(store, "w1", context).await;
        // The pipeline job, 3 chunks; patient reminders fail on a worker without email (retrying).
        assert!(report.completed >= 4, "{}: {report:?}", db.name);
        let chunk_jobs = jobs::list_jobs(store, JobState::Completed, 100).await.unwrap();
        assert_eq!(chunk_jobs.iter().filter(|j| j.kind == "daily_chunk").count(), 3, "{}", db.name);
        for id in &ids {
            let decisions = store.decisions_for_patient(*id, 10).await.unwrap();
            assert_eq!(decisions.len(), 1, "{}: patient {}", db.name, id.0);
            assert_eq!(decisions[0].clinic_date, date);
            assert_eq!(decisions[0].decision.policy_version, "test-policy");
            let facts = store.load_patient_facts(*id, date).await.unwrap();
            assert!(facts.uds.scheduled_due.is_some(), "{}: no UDS date drawn for {}", db.name, id.0);
        }

        // Synchronously, for the same date: nothing new; for the next date: one more decision each.
        let daily = evaluator(store);
        let summary = run_daily(store, daily.as_ref(), "main", date, 4).await.unwrap();
        assert_eq!(summary.chunks, 2, "{}", db.name);
        assert_eq!(summary.follow_ups, 0, "{}: a rerun enqueued reminders again", db.name);
        for id in &ids {
            assert_eq!(store.decisions_for_patient(*id, 10).await.unwrap().len(), 1, "{}", db.name);
        }
        run_daily(store, daily.as_ref(), "main", date.succ_opt().unwrap(), 4).await.unwrap();
        for id in &ids {
            assert_eq!(store.decisions_for_patient(*id, 10).await.unwrap().len(), 2, "{}", db.name);
        }
    }
}

/// Two workers, each a runtime on its own thread with its own connection pool (as close to two
/// `refill worker` processes as a test gets), share one day's chunk jobs on PostgreSQL: every chunk
/// runs once, every patient is decided once, both take a share, and the audit chain stays whole.
#[test]
fn two_workers_share_the_daily_chunks_without_double_work() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = runtime.block_on(common::postgres()) else { return };
    let date = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
    let ids = runtime.block_on(async {
        let ids = add_patients(&db.store, 60).await;
        let mut tx = db.store.begin().await.unwrap();
        for (first_patient, last_patient) in refill_jobs::pipeline::chunk_ranges(ids[0].0, ids[59].0, 3) {
            let chunk = JobPayload::DailyChunk { site: "main".into(), date, first_patient, last_patient };
            jobs::enqueue(&mut tx, &chunk.to_new_job()).await.unwrap().unwrap();
        }
        tx.commit().await.unwrap();
        ids
    });
    let workers: Vec<_> = ["w1", "w2"]
        .into_iter()
        .map(|id| {
            let url = db.url.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Runtime::new().unwrap();
                runtime.block_on(async move {
                    let settings =
                        refill_store::StoreSettings::new(url, refill_store::AuditKey::new(common::TEST_AUDIT_KEY));
                    let store = Store::connect(&settings).await.unwrap();
                    let mut context = JobContext::new(id);
                    context.daily = Some(evaluator(&store));
                    let report = drain_default_queue(&store, id, context).await;
                    store.close().await;
                    report.completed
                })
            })
        })
        .collect();
    let completed: Vec<u64> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    runtime.block_on(async {
        let store = &db.store;
        let done = jobs::list_jobs(store, JobState::Completed, 1000).await.unwrap();
        assert_eq!(done.iter().filter(|j| j.kind == "daily_chunk").count(), 20, "{completed:?}");
        assert!(completed.iter().all(|&c| c > 0), "both workers take a share: {completed:?}");
        for id in &ids {
            let decisions = store.decisions_for_patient(*id, 10).await.unwrap();
            assert_eq!(decisions.len(), 1, "patient {} decided {} times", id.0, decisions.len());
        }
        let verification = store.verify_audit_chain(None).await.unwrap();
        assert!(verification.problem.is_none(), "{verification:?}");
    });
}
