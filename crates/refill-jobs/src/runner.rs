//! The real queue: runs claimed jobs against the store, committing each job's effects and its fenced
//! completion in one transaction, and recording failures with exponential backoff and jitter.
//!
//! A handler gets a [`JobScope`] whose transaction is opened lazily on first use: a job with no
//! database effects completes with one statement (the same two statements per job as the pgbench
//! baseline), a job with effects commits them together with `complete`, and if the lease was lost
//! meanwhile the completion updates no row and everything rolls back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use refill_store::jobs::{self, ClaimedJob, FailOutcome, Lease};
use refill_store::{Store, StoreError, Tx};

use crate::JobsError;
use crate::payload::JobPayload;
use crate::scheduler::Scheduler;
use crate::worker::{JobOutcome, LeaseLostFlag, Queue};

/// A boxed future, for the object-safe hook traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Marks a handler error as permanent: the job goes `dead` at once instead of retrying.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Permanent(pub String);

/// Retry delays: `base · 2^(attempt−1)`, capped, with ±`jitter` so failed jobs do not retry in step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// Fraction, e.g. 0.1 for ±10 %.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_secs(10), cap: Duration::from_secs(3600), jitter: 0.1 }
    }
}

impl Backoff {
    /// The delay before attempt `attempt + 1`, given a uniform random `unit` in [0, 1).
    pub fn delay(&self, attempt: i32, unit: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).clamp(0, 30) as u32;
        let raw = self.base.saturating_mul(2u32.saturating_pow(exponent)).min(self.cap);
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        raw.mul_f64(factor.max(0.0))
    }
}

/// Turns reminder and digest jobs into outbox rows and delivers the outbox. The notifier implements
/// it (crates/refill-jobs/src/delivery.rs) and the binary passes it in [`JobContext::mailer`].
pub trait Mailer: Send + Sync + 'static {
    /// Write the outbox rows for a `PatientReminder`, `StaffMorningDigest` or
    /// `PhysicianExceptionDigest` job inside the job's transaction (committed with its completion).
    fn compose<'a>(&'a self, tx: &'a mut Tx, job: &'a JobPayload) -> BoxFuture<'a, anyhow::Result<()>>;
    /// Send up to `batch` due outbox messages; returns how many were attempted.
    fn deliver<'a>(&'a self, store: &'a Store, batch: u32) -> BoxFuture<'a, anyhow::Result<u32>>;
}

/// Runs the daily evaluation of a range of patients (the pipeline in [`crate::pipeline`]).
pub trait DailyEvaluator: Send + Sync + 'static {
    /// Evaluate every active patient with an id in `first..=last` for the clinic date `date` of `site`,
    /// writing decisions, queue entries, exceptions, UDS draws and taper steps in `tx`, and returning
    /// the follow-up jobs (reminders) to enqueue in the same transaction.
    fn evaluate_range<'a>(
        &'a self,
        tx: &'a mut Tx,
        site: &'a str,
        date: chrono::NaiveDate,
        first: i64,
        last: i64,
    ) -> BoxFuture<'a, anyhow::Result<Vec<JobPayload>>>;
    /// The id range of the active patients (`None` when there are none).
    fn patient_id_bounds<'a>(&'a self, store: &'a Store) -> BoxFuture<'a, anyhow::Result<Option<(i64, i64)>>>;
    /// Work for a `UdsDraw` or `TaperStep` job (`Ok(false)` when the job kind is not this evaluator's).
    fn run_patient_job<'a>(&'a self, tx: &'a mut Tx, job: &'a JobPayload) -> BoxFuture<'a, anyhow::Result<bool>>;
}

/// What job handlers need besides the store.
#[derive(Clone)]
pub struct JobContext {
    pub worker_id: String,
    pub backoff: Backoff,
    /// Patients per `DailyChunk` job.
    pub chunk_size: i64,
    /// How long completed jobs stay: without a unique key, with one (the key guards re-enqueues).
    pub keep_plain: Duration,
    pub keep_keyed: Duration,
    pub mailer: Option<Arc<dyn Mailer>>,
    pub daily: Option<Arc<dyn DailyEvaluator>>,
}

impl JobContext {
    pub fn new(worker_id: impl Into<String>) -> JobContext {
        JobContext {
            worker_id: worker_id.into(),
            backoff: Backoff::default(),
            chunk_size: 500,
            keep_plain: Duration::from_secs(7 * 86_400),
            keep_keyed: Duration::from_secs(60 * 86_400),
            mailer: None,
            daily: None,
        }
    }
}

/// The job's view of the database: the store, and a transaction opened on first use.
pub struct JobScope<'a> {
    pub store: &'a Store,
    pub lease: &'a Lease,
    pub lost: &'a LeaseLostFlag,
    tx: ScopeTx<'a>,
}

enum ScopeTx<'a> {
    Lazy(Option<Tx>),
    /// Batched mode: the batch's transaction; a savepoint is taken on first use so a failing job's
    /// effects roll back alone (jobs without effects cost no extra statement).
    Shared {
        tx: &'a mut Tx,
        savepoint: bool,
    },
}

impl<'a> JobScope<'a> {
    /// The job's transaction: its effects commit if and only if the job completes under its lease.
    pub async fn tx(&mut self) -> Result<&mut Tx, StoreError> {
        match &mut self.tx {
            ScopeTx::Shared { tx, savepoint } => {
                if !*savepoint {
                    jobs::savepoint(tx, "job").await?;
                    *savepoint = true;
                }
                Ok(&mut **tx)
            }
            ScopeTx::Lazy(slot) => {
                if slot.is_none() {
                    *slot = Some(self.store.begin().await?);
                }
                Ok(slot.as_mut().expect("just opened"))
            }
        }
    }

    /// Whether the heartbeat found this job's lease lost (the handler may stop early).
    pub fn lease_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

/// The queue on the real store, with the handlers and the scheduler.
pub struct StoreQueue {
    pub store: Store,
    pub context: JobContext,
    pub scheduler: Option<Scheduler>,
    pub rescue_limit: i64,
}

impl StoreQueue {
    pub fn new(store: Store, context: JobContext, scheduler: Option<Scheduler>) -> StoreQueue {
        StoreQueue { store, context, scheduler, rescue_limit: 500 }
    }

    fn retry_delay(&self, attempt: i32) -> Duration {
        self.context.backoff.delay(attempt, rand::random::<f64>())
    }

    async fn record_failure(&self, job: &ClaimedJob, error: &anyhow::Error) -> JobOutcome {
        let give_up = error.downcast_ref::<Permanent>().is_some();
        let message = format!("{error:#}");
        tracing::warn!(job = job.id, kind = %job.kind, attempt = job.attempt, %message, "job failed");
        match jobs::fail(&self.store, &job.lease, &message, self.retry_delay(job.attempt), give_up).await {
            Ok(FailOutcome::Retrying) => JobOutcome::Retrying,
            Ok(FailOutcome::Dead) => JobOutcome::Dead,
            Ok(FailOutcome::LeaseLost) => JobOutcome::LeaseLost,
            Err(error) => {
                // The lease will expire and the rescue will count the attempt.
                tracing::warn!(job = job.id, %error, "could not record the failure");
                JobOutcome::Retrying
            }
        }
    }
}

impl Queue for StoreQueue {
    async fn claim(
        &self,
        queue: &str,
        worker: &str,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<ClaimedJob>, JobsError> {
        Ok(jobs::claim(&self.store, queue, worker, lease, limit).await?)
    }

    async fn heartbeat(&self, leases: &[Lease], lease: Duration) -> Result<Vec<i64>, JobsError> {
        Ok(jobs::heartbeat(&self.store, leases, lease).await?)
    }

    async fn release(&self, lease: &Lease) -> Result<bool, JobsError> {
        Ok(jobs::release(&self.store, lease).await?)
    }

    async fn rescue(&self) -> Result<u64, JobsError> {
        Ok(jobs::rescue_expired(&self.store, self.rescue_limit).await?.len() as u64)
    }

    async fn tick(&self) -> Result<u64, JobsError> {
        match &self.scheduler {
            Some(scheduler) => scheduler.tick(&self.store).await,
            None => Ok(0),
        }
    }

    async fn run(&self, job: ClaimedJob, lost: LeaseLostFlag) -> JobOutcome {
        let payload = match crate::payload::decode(&job) {
            Ok(payload) => payload,
            Err(error) => return self.record_failure(&job, &anyhow::Error::new(Permanent(error.to_string()))).await,
        };
        let mut scope = JobScope { store: &self.store, lease: &job.lease, lost: &lost, tx: ScopeTx::Lazy(None) };
        let result = crate::handlers::handle(&self.context, &payload, &mut scope).await;
        let ScopeTx::Lazy(tx) = scope.tx else { unreachable!("run opens a lazy scope") };
        match result {
            Ok(()) => {
                let committed = match tx {
                    Some(mut tx) => match jobs::complete(&mut tx, &job.lease).await {
                        Ok(()) => tx.commit().await,
                        Err(error) => {
                            let _ = tx.rollback().await;
                            Err(error)
                        }
                    },
                    None => jobs::complete_alone(&self.store, &job.lease).await,
                };
                match committed {
                    Ok(()) => JobOutcome::Completed,
                    Err(StoreError::Conflict(_)) => {
                        tracing::warn!(job = job.id, "lease lost before completion; effects rolled back");
                        JobOutcome::LeaseLost
                    }
                    Err(error) => self.record_failure(&job, &anyhow::Error::new(error)).await,
                }
            }
            Err(error) => {
                if let Some(tx) = tx {
                    let _ = tx.rollback().await;
                }
                self.record_failure(&job, &error).await
            }
        }
    }

    async fn run_batch(&self, jobs_in: Vec<ClaimedJob>) -> Vec<JobOutcome> {
        match self.try_batch(&jobs_in).await {
            Ok(outcomes) => outcomes,
            Err(error) => {
                // A lost lease or a database error anywhere rolls the whole batch back; run each job on
                // its own so one bad job cannot hold the others hostage (effects are fenced per job).
                tracing::debug!(%error, "batch rolled back; running its jobs one by one");
                let mut outcomes = Vec::with_capacity(jobs_in.len());
                for job in jobs_in {
                    outcomes.push(self.run(job, LeaseLostFlag::default()).await);
                }
                outcomes
            }
        }
    }
}

impl StoreQueue {
    /// One transaction for the batch: each job's effects inside a savepoint (a failing job's effects
    /// roll back alone and its failure is recorded in the same transaction), then one fenced
    /// completion for the jobs that succeeded.
    async fn try_batch(&self, claimed: &[ClaimedJob]) -> Result<Vec<JobOutcome>, StoreError> {
        let mut tx = self.store.begin().await?;
        let mut outcomes = Vec::with_capacity(claimed.len());
        let mut done = Vec::with_capacity(claimed.len());
        let never_lost = LeaseLostFlag::default();
        for job in claimed {
            let payload = match crate::payload::decode(job) {
                Ok(payload) => payload,
                Err(error) => {
                    let outcome = jobs::fail_in(&mut tx, &job.lease, &error.to_string(), Duration::ZERO, true).await?;
                    outcomes.push(fail_outcome(outcome));
                    continue;
                }
            };
            let (result, savepoint) = {
                let mut scope = JobScope {
                    store: &self.store,
                    lease: &job.lease,
                    lost: &never_lost,
                    tx: ScopeTx::Shared { tx: &mut tx, savepoint: false },
                };
                let result = crate::handlers::handle(&self.context, &payload, &mut scope).await;
                let savepoint = matches!(scope.tx, ScopeTx::Shared { savepoint: true, .. });
                (result, savepoint)
            };
            match result {
                Ok(()) => {
                    if savepoint {
                        jobs::release_savepoint(&mut tx, "job").await?;
                    }
                    done.push(job.lease.clone());
                    outcomes.push(JobOutcome::Completed);
                }
                Err(error) => {
                    if savepoint {
                        jobs::rollback_to_savepoint(&mut tx, "job").await?;
                    }
                    let give_up = error.downcast_ref::<Permanent>().is_some();
                    let message = format!("{error:#}");
                    let delay = self.retry_delay(job.attempt);
                    let outcome = jobs::fail_in(&mut tx, &job.lease, &message, delay, give_up).await?;
                    outcomes.push(fail_outcome(outcome));
                }
            }
        }
        jobs::complete_many(&mut tx, &done).await?;
        tx.commit().await?;
        Ok(outcomes)
    }
}

fn fail_outcome(outcome: FailOutcome) -> JobOutcome {
    match outcome {
        FailOutcome::Retrying => JobOutcome::Retrying,
        FailOutcome::Dead => JobOutcome::Dead,
        FailOutcome::LeaseLost => JobOutcome::LeaseLost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let backoff = Backoff { base: Duration::from_secs(10), cap: Duration::from_secs(60), jitter: 0.1 };
        assert_eq!(backoff.delay(1, 0.5), Duration::from_secs(10));
        assert_eq!(backoff.delay(2, 0.5), Duration::from_secs(20));
        assert_eq!(backoff.delay(3, 0.5), Duration::from_secs(40));
        assert_eq!(backoff.delay(9, 0.5), Duration::from_secs(60));
        assert_eq!(backoff.delay(1, 0.0), Duration::from_secs(9));
        assert!(backoff.delay(1, 0.999) > Duration::from_millis(10_990));
    }
}
