//! The worker against real SQLite files and the real PostgreSQL, in real time with short leases:
//! every job completes exactly once in effect (single and batched claims), failures retry and end
//! dead, graceful shutdown releases held jobs, heartbeats outlive the lease, three workers with their
//! own pools share 10,000 jobs, and three schedulers ticking at once fire an occurrence once.

#[path = "../../refill-store/tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use refill_jobs::plan::{Misfire, Semantics};
use refill_jobs::{JobContext, JobPayload, ScheduleDef, ScheduledJob, Scheduler, StoreQueue, WorkerSettings};
use refill_store::Store;
use refill_store::jobs::{self, JobState, NewJob};

fn settings(id: &str) -> WorkerSettings {
    let mut settings = WorkerSettings::new(id);
    settings.queues = vec!["default".into()];
    settings.concurrency = 3;
    settings.lease = Duration::from_secs(5);
    settings.heartbeat = Duration::from_millis(500);
    settings.poll_interval = Duration::from_millis(50);
    settings.rescue_interval = Duration::from_millis(500);
    settings.tick_interval = Duration::ZERO;
    settings.shutdown_grace = Duration::from_secs(5);
    settings.drain = true;
    settings
}

fn queue(store: &Store, id: &str) -> Arc<StoreQueue> {
    let mut context = JobContext::new(id);
    context.backoff.base = Duration::from_millis(10);
    context.backoff.cap = Duration::from_millis(50);
    Arc::new(StoreQueue::new(store.clone(), context, None))
}

async fn enqueue_probes(store: &Store, count: i64, work_ms: u64) {
    let payload = JobPayload::Probe { work_ms, effect: true };
    let job = NewJob::new(payload.kind(), serde_json::to_value(&payload).unwrap());
    let mut tx = store.begin().await.unwrap();
    jobs::enqueue_copies(&mut tx, &job, count).await.unwrap();
    tx.commit().await.unwrap();
}

async fn assert_exactly_once(store: &Store, expected: i64, name: &str) {
    let audit = jobs::audit_probe_effects(store, "probe").await.unwrap();
    assert_eq!(audit.jobs, expected, "{name}: {audit:?}");
    assert_eq!(audit.completed, expected, "{name}: {audit:?}");
    assert_eq!(audit.effects, expected, "{name}: {audit:?}");
    assert_eq!(audit.jobs_without_exactly_one_effect, 0, "{name}: {audit:?}");
}

#[tokio::test]
async fn single_and_batched_workers_complete_every_job_once() {
    for db in common::backends().await {
        enqueue_probes(&db.store, 300, 0).await;
        let report =
            refill_jobs::run_worker(queue(&db.store, "w1"), settings("w1"), std::future::pending()).await.unwrap();
        assert_eq!(report.completed, 300, "{}", db.name);
        assert_exactly_once(&db.store, 300, db.name).await;

        enqueue_probes(&db.store, 500, 0).await;
        let mut batched = settings("w2");
        batched.batch_size = 16;
        let report = refill_jobs::run_worker(queue(&db.store, "w2"), batched, std::future::pending()).await.unwrap();
        assert_eq!(report.completed, 500, "{}", db.name);
        assert_exactly_once(&db.store, 800, db.name).await;
    }
}

#[tokio::test]
async fn failing_jobs_retry_then_end_dead_and_undecodable_ones_die_at_once() {
    for db in common::backends().await {
        let store = &db.store;
        // A daily chunk on a worker without the daily evaluator fails every time.
        let chunk = JobPayload::DailyChunk {
            site: "main".into(),
            date: chrono::NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(),
            first_patient: 1,
            last_patient: 10,
        };
        let mut tx = store.begin().await.unwrap();
        let failing = jobs::enqueue(&mut tx, &chunk.to_new_job().max_attempts(3)).await.unwrap().unwrap();
        let garbage = jobs::enqueue(&mut tx, &NewJob::new("probe", serde_json::json!({"kind": "no_such_job"})))
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();

        let mut settings = settings("w1");
        settings.drain = false;
        let worker = tokio::spawn(refill_jobs::run_worker(
            queue(store, "w1"),
            settings,
            tokio::time::sleep(Duration::from_secs(3)),
        ));
        let report = worker.await.unwrap().unwrap();
        assert_eq!(report.dead, 2, "{}: {report:?}", db.name);
        assert_eq!(report.retried, 2, "{}: {report:?}", db.name);
        let failing = jobs::get_job(store, failing).await.unwrap().unwrap();
        assert_eq!((failing.state, failing.attempt), (JobState::Dead, 3), "{}", db.name);
        assert!(failing.last_error.unwrap().contains("not configured"));
        let garbage = jobs::get_job(store, garbage).await.unwrap().unwrap();
        assert_eq!((garbage.state, garbage.attempt), (JobState::Dead, 1), "{}", db.name);
    }
}

#[tokio::test]
async fn graceful_shutdown_releases_jobs_that_outlive_the_grace_period() {
    for db in common::backends().await {
        enqueue_probes(&db.store, 2, 10_000).await;
        let mut settings = settings("w1");
        settings.drain = false;
        settings.shutdown_grace = Duration::from_millis(300);
        let report =
            refill_jobs::run_worker(queue(&db.store, "w1"), settings, tokio::time::sleep(Duration::from_millis(700)))
                .await
                .unwrap();
        assert_eq!(report.released, 2, "{}: {report:?}", db.name);
        let available = jobs::list_jobs(&db.store, JobState::Available, 10).await.unwrap();
        assert_eq!(available.len(), 2, "{}", db.name);
        assert!(available.iter().all(|job| job.attempt == 0), "{}: release must not count the attempt", db.name);
        let audit = jobs::audit_probe_effects(&db.store, "probe").await.unwrap();
        assert_eq!(audit.effects, 0, "{}: an aborted job committed an effect", db.name);
    }
}

#[tokio::test]
async fn heartbeats_keep_long_jobs_alive_past_their_lease() {
    for db in common::backends().await {
        enqueue_probes(&db.store, 3, 2_500).await;
        let mut long = settings("w1");
        long.lease = Duration::from_secs(1);
        long.heartbeat = Duration::from_millis(200);
        let q = queue(&db.store, "w1");
        // A second worker rescues expired leases all the time: it must find none.
        let mut rescuer = settings("w2");
        rescuer.drain = false;
        rescuer.rescue_interval = Duration::from_millis(100);
        rescuer.queues = vec!["nothing".into()];
        let other = tokio::spawn(refill_jobs::run_worker(
            queue(&db.store, "w2"),
            rescuer,
            tokio::time::sleep(Duration::from_secs(4)),
        ));
        let report = refill_jobs::run_worker(q, long, std::future::pending()).await.unwrap();
        let rescuer_report = other.await.unwrap().unwrap();
        assert_eq!(report.completed, 3, "{}: {report:?}", db.name);
        assert_eq!(rescuer_report.rescued, 0, "{}: a heartbeating job was rescued", db.name);
        assert_exactly_once(&db.store, 3, db.name).await;
    }
}

#[test]
fn three_workers_with_their_own_pools_share_ten_thousand_jobs_once() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = runtime.block_on(common::postgres()) else { return };
    runtime.block_on(enqueue_probes(&db.store, 10_000, 0));
    // Each worker is a separate runtime on its own thread with its own connection pool: as close to
    // separate processes as a test gets (scripts/crash-test-jobs.sh runs real processes).
    let workers: Vec<_> = (1..=3)
        .map(|n| {
            let url = db.url.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Runtime::new().unwrap();
                runtime.block_on(async move {
                    let settings_store =
                        refill_store::StoreSettings::new(url, refill_store::AuditKey::new(common::TEST_AUDIT_KEY));
                    let store = Store::connect(&settings_store).await.unwrap();
                    let id = format!("w{n}");
                    let mut worker = settings(&id);
                    worker.concurrency = 4;
                    worker.batch_size = if n == 3 { 8 } else { 1 };
                    let report =
                        refill_jobs::run_worker(queue(&store, &id), worker, std::future::pending()).await.unwrap();
                    store.close().await;
                    report.completed
                })
            })
        })
        .collect();
    let completed: Vec<u64> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert_eq!(completed.iter().sum::<u64>(), 10_000, "{completed:?}");
    assert!(completed.iter().all(|&c| c > 0), "every worker should have taken a share: {completed:?}");
    runtime.block_on(assert_exactly_once(&db.store, 10_000, "postgres"));
}

#[tokio::test]
async fn three_schedulers_ticking_at_once_fire_each_occurrence_once() {
    for db in common::backends().await {
        let def = ScheduleDef {
            name: "every-second".into(),
            cron: "* * * * * *".into(),
            time_zone: "America/New_York".into(),
            semantics: Semantics::Elapsed,
            misfire: Misfire::FireOnce,
            job: ScheduledJob::PruneJobs,
        };
        let report = refill_jobs::sync_schedules(&db.store, std::slice::from_ref(&def)).await.unwrap();
        assert_eq!(report.reset, vec!["every-second".to_string()]);
        // A restart with the same config keeps the cursor.
        let again = refill_jobs::sync_schedules(&db.store, &[def]).await.unwrap();
        assert_eq!(again.unchanged, vec!["every-second".to_string()]);

        let stores = [db.open_another().await, db.open_another().await, db.open_another().await];
        let started = Utc::now();
        let mut fired = 0;
        while Utc::now() - started < chrono::Duration::milliseconds(3500) {
            let ticks = stores.iter().map(|store| async move { Scheduler::default().tick(store).await.unwrap() });
            fired += futures::future::join_all(ticks).await.into_iter().sum::<u64>();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let counts = jobs::queue_counts(&db.store).await.unwrap();
        let total: i64 = counts.iter().map(|c| c.count).sum();
        assert_eq!(total as u64, fired, "{}", db.name);
        assert!((3..=5).contains(&fired), "{}: {fired} occurrences in 3.5 s of a per-second schedule", db.name);
        for store in stores {
            store.close().await;
        }
    }
}
