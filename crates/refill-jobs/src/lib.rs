//! The durable job scheduler and worker: cron occurrences in the clinic's time zone, a claim, lease,
//! heartbeat and retry loop over the store's job queue, and the job handlers (daily pipeline,
//! reminders, taper steps, digests, email delivery).
//!
//! - [`plan`]: pure DST-correct cron occurrences (no I/O).
//! - [`payload`]: the closed set of job kinds (a stored contract).
//! - [`scheduler`]: config schedules synced to the database and ticked without a leader.
//! - [`worker`]: the loop, behind the [`worker::Queue`] seam; [`runner::StoreQueue`] is the real queue.
//! - [`handlers`], [`pipeline`]: what the jobs do.

pub mod delivery;
mod error;
pub mod handlers;
pub mod payload;
pub mod pipeline;
pub mod plan;
pub mod runner;
pub mod scheduler;
pub mod worker;

pub use error::JobsError;
pub use payload::{JobPayload, ReminderKind};
pub use runner::{Backoff, BoxFuture, DailyEvaluator, JobContext, JobScope, Mailer, Permanent, StoreQueue};
pub use scheduler::{ScheduleDef, ScheduledJob, Scheduler, sync_schedules};
pub use worker::{JobOutcome, Queue, WorkerReport, WorkerSettings, run_worker};
