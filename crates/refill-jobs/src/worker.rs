//! The worker loop: `concurrency` slots claim and run jobs, one main task heartbeats the leases this
//! process holds, rescues expired leases, ticks the cron schedules and handles shutdown.
//!
//! The loop talks to the queue only through the [`Queue`] trait, so its timing can be tested with
//! tokio's paused clock against an in-memory queue (no sockets: a paused clock jumps ahead whenever the
//! runtime waits on I/O); [`crate::StoreQueue`] is the real implementation on SQLite or PostgreSQL.
//!
//! Graceful shutdown: when the shutdown future resolves, slots stop claiming and finish the job they
//! hold; after `shutdown_grace` the remaining slots are aborted (their transactions roll back) and
//! their leases released without counting the attempt, so another worker picks the jobs up at once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use refill_store::jobs::{ClaimedJob, Lease};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::JobsError;

/// What became of one claimed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Completed,
    /// Failed; back in the queue after a backoff.
    Retrying,
    /// Failed for the last time (or permanently): `dead`, shown to staff.
    Dead,
    /// Our lease was taken over or the job cancelled: nothing of ours committed.
    LeaseLost,
}

/// Set by the heartbeat when this worker lost a job's lease: the handler may stop early, and its
/// completion is fenced out anyway.
pub type LeaseLostFlag = Arc<AtomicBool>;

/// The seam between the loop and the database.
pub trait Queue: Send + Sync + 'static {
    /// Claim up to `limit` due jobs of `queue` with a lease of `lease`.
    fn claim(
        &self,
        queue: &str,
        worker: &str,
        lease: Duration,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<ClaimedJob>, JobsError>> + Send;
    /// Extend leases; returns the ids still ours.
    fn heartbeat(&self, leases: &[Lease], lease: Duration) -> impl Future<Output = Result<Vec<i64>, JobsError>> + Send;
    /// Give a job back without counting the attempt.
    fn release(&self, lease: &Lease) -> impl Future<Output = Result<bool, JobsError>> + Send;
    /// Return expired leases to the queue; returns how many.
    fn rescue(&self) -> impl Future<Output = Result<u64, JobsError>> + Send;
    /// Fire due cron occurrences; returns how many jobs were inserted.
    fn tick(&self) -> impl Future<Output = Result<u64, JobsError>> + Send;
    /// Run one job and commit its completion with its effects (or record the failure).
    fn run(&self, job: ClaimedJob, lost: LeaseLostFlag) -> impl Future<Output = JobOutcome> + Send;
    /// Run several jobs claimed together, committing their effects and completions together where
    /// the backend allows; returns one outcome per job, in order.
    fn run_batch(&self, jobs: Vec<ClaimedJob>) -> impl Future<Output = Vec<JobOutcome>> + Send;
}

/// Worker settings (the binary fills them from `[jobs]` and flags).
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Shown in `lease_owner`, e.g. `host:pid` or `--id w1`.
    pub worker_id: String,
    /// Queues this worker serves, in order of preference.
    pub queues: Vec<String>,
    /// Jobs run at once (one claiming slot each).
    pub concurrency: usize,
    /// Jobs claimed per statement by each slot; above 1 the slot runs them as one batch.
    pub batch_size: usize,
    pub lease: Duration,
    pub heartbeat: Duration,
    /// How long an idle slot sleeps before claiming again.
    pub poll_interval: Duration,
    pub rescue_interval: Duration,
    /// How often schedules are ticked (zero: this worker never ticks).
    pub tick_interval: Duration,
    pub shutdown_grace: Duration,
    /// Exit once nothing is due (benchmarks, `jobs run-daily`, tests).
    pub drain: bool,
}

impl WorkerSettings {
    pub fn new(worker_id: impl Into<String>) -> WorkerSettings {
        WorkerSettings {
            worker_id: worker_id.into(),
            queues: vec![crate::payload::QUEUE_DEFAULT.to_string(), crate::payload::QUEUE_EMAIL.to_string()],
            concurrency: 4,
            batch_size: 1,
            lease: Duration::from_secs(60),
            heartbeat: Duration::from_secs(15),
            poll_interval: Duration::from_secs(1),
            rescue_interval: Duration::from_secs(10),
            tick_interval: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(20),
            drain: false,
        }
    }

    /// # Errors
    /// `Settings` naming the first field out of range.
    pub fn validate(&self) -> Result<(), JobsError> {
        let bad = |field: &'static str, message: &str| Err(JobsError::Settings { field, message: message.to_string() });
        if self.worker_id.is_empty() {
            return bad("worker_id", "must not be empty");
        }
        if self.queues.is_empty() {
            return bad("queues", "name at least one queue");
        }
        if self.concurrency == 0 {
            return bad("concurrency", "must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if self.heartbeat.is_zero() || self.heartbeat * 2 > self.lease {
            return bad("heartbeat", "must be positive and at most half the lease");
        }
        if self.poll_interval.is_zero() || self.rescue_interval.is_zero() {
            return bad("poll_interval", "poll and rescue intervals must be positive");
        }
        Ok(())
    }
}

/// Counts of one run, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WorkerReport {
    pub completed: u64,
    pub retried: u64,
    pub dead: u64,
    pub lease_lost: u64,
    pub released: u64,
    pub rescued: u64,
    pub fired: u64,
    pub heartbeats: u64,
}

#[derive(Default)]
struct Counters {
    completed: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    lease_lost: AtomicU64,
}

impl Counters {
    fn record(&self, outcome: JobOutcome) {
        let counter = match outcome {
            JobOutcome::Completed => &self.completed,
            JobOutcome::Retrying => &self.retried,
            JobOutcome::Dead => &self.dead,
            JobOutcome::LeaseLost => &self.lease_lost,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Leases this process holds, with the flag the heartbeat sets when one is lost.
type Held = Arc<Mutex<HashMap<i64, (Lease, LeaseLostFlag)>>>;

/// Run the worker until `shutdown` resolves (or, with `drain`, until nothing is due).
///
/// # Errors
/// `Settings` for invalid settings. Database errors inside the loop are logged and retried, never
/// fatal: a worker outlives a database restart.
pub async fn run_worker<Q: Queue>(
    queue: Arc<Q>,
    settings: WorkerSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<WorkerReport, JobsError> {
    settings.validate()?;
    let settings = Arc::new(settings);
    let held: Held = Arc::new(Mutex::new(HashMap::new()));
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut slots = JoinSet::new();
    for slot in 0..settings.concurrency {
        slots.spawn(run_slot(slot, queue.clone(), settings.clone(), held.clone(), counters.clone(), stop_rx.clone()));
    }
    let mut report = WorkerReport::default();
    let mut heartbeat = tokio::time::interval(settings.heartbeat);
    let mut rescue = tokio::time::interval(settings.rescue_interval);
    let tick_every = if settings.tick_interval.is_zero() { Duration::from_secs(3600) } else { settings.tick_interval };
    let mut tick = tokio::time::interval(tick_every);
    for timer in [&mut heartbeat, &mut rescue, &mut tick] {
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            joined = slots.join_next() => {
                // Slots end on their own only in drain mode (nothing due); the loop ends with the last.
                if joined.is_none() || slots.is_empty() {
                    break;
                }
            }
            _ = heartbeat.tick() => {
                beat(queue.as_ref(), &held, settings.lease).await;
                report.heartbeats += 1;
            }
            _ = rescue.tick() => match queue.rescue().await {
                Ok(count) => {
                    if count > 0 {
                        tracing::info!(worker = %settings.worker_id, count, "rescued jobs with expired leases");
                    }
                    report.rescued += count;
                }
                Err(error) => tracing::warn!(worker = %settings.worker_id, %error, "rescue failed"),
            },
            _ = tick.tick(), if !settings.tick_interval.is_zero() => match queue.tick().await {
                Ok(count) => report.fired += count,
                Err(error) => tracing::warn!(worker = %settings.worker_id, %error, "schedule tick failed"),
            },
        }
    }
    // Stop claiming; let slots finish what they hold, heartbeating meanwhile, up to the grace period.
    let _ = stop_tx.send(true);
    let deadline = tokio::time::sleep(settings.shutdown_grace);
    tokio::pin!(deadline);
    while !slots.is_empty() {
        tokio::select! {
            _ = slots.join_next() => {}
            _ = heartbeat.tick() => beat(queue.as_ref(), &held, settings.lease).await,
            () = &mut deadline => {
                slots.abort_all();
                while slots.join_next().await.is_some() {}
            }
        }
    }
    let abandoned: Vec<Lease> = lock(&held).drain().map(|(_, (lease, _))| lease).collect();
    for lease in abandoned {
        match queue.release(&lease).await {
            Ok(true) => report.released += 1,
            Ok(false) => {}
            Err(error) => tracing::warn!(job = lease.job_id, %error, "release failed; the lease will expire"),
        }
    }
    report.completed = counters.completed.load(Ordering::Relaxed);
    report.retried = counters.retried.load(Ordering::Relaxed);
    report.dead = counters.dead.load(Ordering::Relaxed);
    report.lease_lost = counters.lease_lost.load(Ordering::Relaxed);
    Ok(report)
}

fn lock(held: &Held) -> std::sync::MutexGuard<'_, HashMap<i64, (Lease, LeaseLostFlag)>> {
    // A panic while holding this lock cannot leave the map inconsistent (single inserts and removes).
    held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn beat<Q: Queue>(queue: &Q, held: &Held, lease: Duration) {
    let leases: Vec<Lease> = lock(held).values().map(|(lease, _)| lease.clone()).collect();
    if leases.is_empty() {
        return;
    }
    match queue.heartbeat(&leases, lease).await {
        Ok(kept) => {
            let map = lock(held);
            for lease in &leases {
                if !kept.contains(&lease.job_id)
                    && let Some((_, flag)) = map.get(&lease.job_id)
                {
                    tracing::warn!(job = lease.job_id, "lease lost; the job's work will not commit");
                    flag.store(true, Ordering::Relaxed);
                }
            }
        }
        Err(error) => tracing::warn!(%error, "heartbeat failed"),
    }
}

async fn run_slot<Q: Queue>(
    slot: usize,
    queue: Arc<Q>,
    settings: Arc<WorkerSettings>,
    held: Held,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures: u32 = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let mut claimed = Vec::new();
        let mut errored = false;
        for name in &settings.queues {
            match queue.claim(name, &settings.worker_id, settings.lease, settings.batch_size as i64).await {
                Ok(jobs) if !jobs.is_empty() => {
                    claimed = jobs;
                    break;
                }
                Ok(_) => {}
                Err(error) => {
                    errored = true;
                    tracing::warn!(worker = %settings.worker_id, slot, %error, "claim failed");
                }
            }
        }
        if claimed.is_empty() {
            if settings.drain && !errored {
                return;
            }
            // Back off further after consecutive database errors, up to 30 s.
            failures = if errored { failures.saturating_add(1) } else { 0 };
            let pause = settings.poll_interval * 2u32.saturating_pow(failures.min(5));
            tokio::select! {
                () = tokio::time::sleep(pause.min(Duration::from_secs(30))) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        failures = 0;
        let flags: Vec<LeaseLostFlag> = {
            let mut map = lock(&held);
            claimed
                .iter()
                .map(|job| {
                    let flag = LeaseLostFlag::default();
                    map.insert(job.id, (job.lease.clone(), flag.clone()));
                    flag
                })
                .collect()
        };
        let ids: Vec<i64> = claimed.iter().map(|job| job.id).collect();
        let outcomes = if claimed.len() == 1 {
            let job = claimed.pop().expect("one job");
            vec![queue.run(job, flags[0].clone()).await]
        } else {
            queue.run_batch(claimed).await
        };
        {
            let mut map = lock(&held);
            for id in &ids {
                map.remove(id);
            }
        }
        for outcome in outcomes {
            counters.record(outcome);
        }
    }
}
