//! Timing of the worker loop on tokio's paused clock, through the `Queue` seam with an in-memory
//! queue (no sockets, so the paused clock only moves when every task waits on a timer): heartbeat
//! cadence, polling when idle, lost leases flagged to the running job, and graceful shutdown that
//! waits for the grace period and then releases what is still held.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use refill_jobs::worker::LeaseLostFlag;
use refill_jobs::{JobOutcome, JobsError, Queue, WorkerSettings, run_worker};
use refill_store::jobs::{ClaimedJob, Lease};
use tokio::time::Instant;

#[derive(Default)]
struct MemoryQueue {
    ready: Mutex<VecDeque<ClaimedJob>>,
    /// How long each job's handler runs.
    work: Duration,
    claims: AtomicU64,
    heartbeats: Mutex<Vec<(Instant, usize)>>,
    released: Mutex<Vec<i64>>,
    completed: Mutex<Vec<(i64, Instant)>>,
    /// Heartbeats stop returning this job's id (someone else took its lease).
    steal: Option<i64>,
    lost_seen_by_handler: AtomicBool,
}

fn job(id: i64) -> ClaimedJob {
    ClaimedJob {
        id,
        kind: "probe".into(),
        payload: serde_json::json!({"kind": "probe"}),
        attempt: 1,
        max_attempts: 3,
        unique_key: None,
        lease: Lease { job_id: id, token: format!("token-{id}") },
    }
}

impl MemoryQueue {
    fn with_jobs(count: i64, work: Duration) -> MemoryQueue {
        MemoryQueue { ready: Mutex::new((1..=count).map(job).collect()), work, ..MemoryQueue::default() }
    }
}

impl Queue for MemoryQueue {
    async fn claim(
        &self,
        _queue: &str,
        _worker: &str,
        _lease: Duration,
        limit: i64,
    ) -> Result<Vec<ClaimedJob>, JobsError> {
        self.claims.fetch_add(1, Ordering::Relaxed);
        let mut ready = self.ready.lock().unwrap();
        let take = (limit as usize).min(ready.len());
        Ok(ready.drain(..take).collect())
    }

    async fn heartbeat(&self, leases: &[Lease], _lease: Duration) -> Result<Vec<i64>, JobsError> {
        self.heartbeats.lock().unwrap().push((Instant::now(), leases.len()));
        Ok(leases.iter().map(|l| l.job_id).filter(|id| Some(*id) != self.steal).collect())
    }

    async fn release(&self, lease: &Lease) -> Result<bool, JobsError> {
        self.released.lock().unwrap().push(lease.job_id);
        Ok(true)
    }

    async fn rescue(&self) -> Result<u64, JobsError> {
        Ok(0)
    }

    async fn tick(&self) -> Result<u64, JobsError> {
        Ok(0)
    }

    async fn run(&self, job: ClaimedJob, lost: LeaseLostFlag) -> JobOutcome {
        let started = Instant::now();
        while started.elapsed() < self.work {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if lost.load(Ordering::Relaxed) {
                self.lost_seen_by_handler.store(true, Ordering::Relaxed);
                return JobOutcome::LeaseLost;
            }
        }
        self.completed.lock().unwrap().push((job.id, Instant::now()));
        JobOutcome::Completed
    }

    async fn run_batch(&self, jobs: Vec<ClaimedJob>) -> Vec<JobOutcome> {
        let mut outcomes = Vec::new();
        for job in jobs {
            outcomes.push(self.run(job, LeaseLostFlag::default()).await);
        }
        outcomes
    }
}

fn settings() -> WorkerSettings {
    let mut settings = WorkerSettings::new("paused");
    settings.queues = vec!["default".into()];
    settings.concurrency = 2;
    settings.lease = Duration::from_secs(30);
    settings.heartbeat = Duration::from_secs(10);
    settings.poll_interval = Duration::from_secs(1);
    settings.rescue_interval = Duration::from_secs(60);
    settings.tick_interval = Duration::ZERO;
    settings.shutdown_grace = Duration::from_secs(20);
    settings
}

#[tokio::test(start_paused = true)]
async fn heartbeats_come_every_interval_while_jobs_run() {
    let queue = Arc::new(MemoryQueue::with_jobs(2, Duration::from_secs(95)));
    let mut settings = settings();
    settings.drain = true;
    let start = Instant::now();
    let report = run_worker(queue.clone(), settings, std::future::pending()).await.unwrap();
    assert_eq!(report.completed, 2);
    let beats = queue.heartbeats.lock().unwrap().clone();
    // Both jobs run in parallel for 95 s: a heartbeat with 2 leases at 10, 20, ..., 90 s.
    let with_jobs: Vec<_> = beats.iter().filter(|(_, n)| *n == 2).map(|(t, _)| (*t - start).as_secs()).collect();
    assert_eq!(with_jobs, vec![10, 20, 30, 40, 50, 60, 70, 80, 90], "{beats:?}");
}

#[tokio::test(start_paused = true)]
async fn idle_slots_poll_at_the_poll_interval() {
    let queue = Arc::new(MemoryQueue::with_jobs(0, Duration::ZERO));
    let report =
        run_worker(queue.clone(), settings(), tokio::time::sleep(Duration::from_millis(10_500))).await.unwrap();
    assert_eq!(report.completed, 0);
    // Two slots, one claim each at t = 0 and then one per second: 2 × 11.
    assert_eq!(queue.claims.load(Ordering::Relaxed), 22);
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_is_flagged_to_the_running_job() {
    let mut queue = MemoryQueue::with_jobs(1, Duration::from_secs(60));
    queue.steal = Some(1);
    let queue = Arc::new(queue);
    let mut settings = settings();
    settings.drain = true;
    let start = Instant::now();
    let report = run_worker(queue.clone(), settings, std::future::pending()).await.unwrap();
    assert_eq!(report.lease_lost, 1, "{report:?}");
    assert!(queue.lost_seen_by_handler.load(Ordering::Relaxed));
    // Noticed at the first heartbeat (10 s), well before the job would have finished.
    assert!(start.elapsed() < Duration::from_secs(11), "{:?}", start.elapsed());
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_the_grace_period_then_releases_held_jobs() {
    // Job 1 finishes 5 s after shutdown (inside the grace); job 2 would need 100 s (past it).
    let queue = Arc::new(MemoryQueue::with_jobs(0, Duration::ZERO));
    queue.ready.lock().unwrap().extend([job(1), job(2)]);
    struct Mixed(Arc<MemoryQueue>);
    impl Queue for Mixed {
        async fn claim(&self, q: &str, w: &str, l: Duration, n: i64) -> Result<Vec<ClaimedJob>, JobsError> {
            self.0.claim(q, w, l, n).await
        }
        async fn heartbeat(&self, leases: &[Lease], lease: Duration) -> Result<Vec<i64>, JobsError> {
            self.0.heartbeat(leases, lease).await
        }
        async fn release(&self, lease: &Lease) -> Result<bool, JobsError> {
            self.0.release(lease).await
        }
        async fn rescue(&self) -> Result<u64, JobsError> {
            Ok(0)
        }
        async fn tick(&self) -> Result<u64, JobsError> {
            Ok(0)
        }
        async fn run(&self, job: ClaimedJob, _lost: LeaseLostFlag) -> JobOutcome {
            let work = if job.id == 1 { Duration::from_secs(15) } else { Duration::from_secs(100) };
            tokio::time::sleep(work).await;
            self.0.completed.lock().unwrap().push((job.id, Instant::now()));
            JobOutcome::Completed
        }
        async fn run_batch(&self, _jobs: Vec<ClaimedJob>) -> Vec<JobOutcome> {
            Vec::new()
        }
    }
    let start = Instant::now();
    let report = run_worker(Arc::new(Mixed(queue.clone())), settings(), tokio::time::sleep(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(report.completed, 1, "{report:?}");
    assert_eq!(report.released, 1, "{report:?}");
    assert_eq!(*queue.released.lock().unwrap(), vec![2]);
    let completed = queue.completed.lock().unwrap().clone();
    assert_eq!(completed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![1]);
    // Shutdown at 10 s, grace 20 s: the worker stops at 30 s, not earlier and not at job 2's 100 s.
    assert_eq!(start.elapsed().as_secs(), 30);
    // No slot claimed after the shutdown signal.
    assert_eq!(queue.claims.load(Ordering::Relaxed), 2);
}
