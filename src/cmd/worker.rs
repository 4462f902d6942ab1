//! `refill worker`: run jobs until SIGTERM or ctrl-c. Settings come from `[jobs]` in the configuration
//! (worker id, lease, heartbeat, concurrency, batch size), each overridable by a flag; schedules from
//! `[[jobs.schedules]]` are synced into the database at start and ticked by every worker.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use refill_jobs::plan::{Misfire, Semantics};
use refill_jobs::{JobContext, ScheduleDef, ScheduledJob, Scheduler, StoreQueue, WorkerSettings};

use crate::config::Config;
use crate::context::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Worker id shown in job leases (default `[jobs] worker_id`, else host:pid).
    #[arg(long)]
    pub id: Option<String>,
    /// Lease length in seconds (a crashed worker's jobs are picked up after it).
    #[arg(long, value_name = "SECONDS")]
    pub lease: Option<f64>,
    /// Heartbeat interval in seconds (at most half the lease).
    #[arg(long, value_name = "SECONDS")]
    pub heartbeat: Option<f64>,
    /// Jobs run at once.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Jobs claimed per statement and committed in one transaction (batched mode when above 1).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Queues to serve (repeatable; default `[jobs] queues`).
    #[arg(long = "queue")]
    pub queues: Vec<String>,
    /// Poll interval in milliseconds when idle.
    #[arg(long, value_name = "MS")]
    pub poll_ms: Option<u64>,
    /// Exit once no job is due (benchmarks, tests, one-off catch-up runs).
    #[arg(long)]
    pub drain: bool,
    /// Do not sync or tick cron schedules in this process.
    #[arg(long)]
    pub no_schedules: bool,
}

/// `[jobs]` in config/base.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsSection {
    pub worker_id: Option<String>,
    #[serde(default = "default_queues")]
    pub queues: Vec<String>,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default = "one")]
    pub batch_size: usize,
    #[serde(default = "default_lease")]
    pub lease_seconds: f64,
    #[serde(default = "default_heartbeat")]
    pub heartbeat_seconds: f64,
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    #[serde(default = "default_rescue")]
    pub rescue_interval_seconds: f64,
    #[serde(default = "default_tick")]
    pub tick_interval_seconds: f64,
    #[serde(default = "default_grace")]
    pub shutdown_grace_seconds: f64,
    /// Retry backoff: first delay and cap, in seconds.
    #[serde(default = "default_backoff_base")]
    pub backoff_base_seconds: f64,
    #[serde(default = "default_backoff_cap")]
    pub backoff_cap_seconds: f64,
    /// Patients per daily-pipeline chunk job.
    #[serde(default = "default_chunk")]
    pub chunk_size: i64,
    /// How late an occurrence may fire under `misfire = "skip"`.
    #[serde(default = "default_misfire_grace")]
    pub misfire_grace_seconds: i64,
    /// Days completed jobs are kept: without and with a unique key.
    #[serde(default = "default_keep_plain")]
    pub keep_completed_days: u64,
    #[serde(default = "default_keep_keyed")]
    pub keep_keyed_days: u64,
    /// Seed of the random UDS draws. Set it from the environment in production
    /// (`REFILL__JOBS__UDS_SEED`) so test dates cannot be predicted from this file.
    #[serde(default = "default_uds_seed")]
    pub uds_seed: u64,
    #[serde(default)]
    pub schedules: Vec<ScheduleConfig>,
}

/// One `[[jobs.schedules]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Stable name: never rename (a renamed schedule is a new one and fires anew).
    pub name: String,
    /// cron crate syntax with seconds: "0 30 2 * * *" is 02:30:00 daily.
    pub cron: String,
    /// daily_pipeline | staff_morning_digest | physician_exception_digest | deliver_outbox | prune_jobs
    pub job: String,
    /// Clinic site for per-site jobs (default "main").
    pub site: Option<String>,
    /// IANA zone (default: `[clinic] time_zone`).
    pub time_zone: Option<String>,
    /// wall_clock (default) or elapsed.
    pub semantics: Option<String>,
    /// fire_once (default) or skip.
    pub misfire: Option<String>,
    /// Messages per delivery run (deliver_outbox).
    pub batch: Option<u32>,
}

/// `[clinic]`, as far as jobs need it.
#[derive(Debug, Clone, Deserialize)]
pub struct ClinicZone {
    pub time_zone: String,
}

fn default_queues() -> Vec<String> {
    vec!["default".into(), "email".into()]
}
fn default_concurrency() -> usize {
    4
}
fn one() -> usize {
    1
}
fn default_lease() -> f64 {
    60.0
}
fn default_heartbeat() -> f64 {
    15.0
}
fn default_poll_ms() -> u64 {
    1000
}
fn default_rescue() -> f64 {
    10.0
}
fn default_tick() -> f64 {
    5.0
}
fn default_grace() -> f64 {
    20.0
}
fn default_backoff_base() -> f64 {
    10.0
}
fn default_backoff_cap() -> f64 {
    3600.0
}
fn default_chunk() -> i64 {
    500
}
fn default_misfire_grace() -> i64 {
    300
}
fn default_keep_plain() -> u64 {
    7
}
fn default_keep_keyed() -> u64 {
    60
}
fn default_uds_seed() -> u64 {
    0x5eed_0fc1_1a1c
}

fn seconds(field: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| anyhow::anyhow!("[jobs] {field} = {value} is not a valid duration"))
}

impl JobsSection {
    pub fn load(config: &Config) -> anyhow::Result<JobsSection> {
        config.section("jobs")
    }

    /// The configured schedules with zones resolved, checked (names the schedule on error).
    pub fn schedule_defs(&self, config: &Config) -> anyhow::Result<Vec<ScheduleDef>> {
        let clinic: ClinicZone = config.section("clinic")?;
        self.schedules
            .iter()
            .map(|entry| {
                let name = &entry.name;
                let site = entry.site.clone().unwrap_or_else(|| "main".to_string());
                let job = match entry.job.as_str() {
                    "daily_pipeline" => ScheduledJob::DailyPipeline { site },
                    "staff_morning_digest" => ScheduledJob::StaffMorningDigest { site },
                    "physician_exception_digest" => ScheduledJob::PhysicianExceptionDigest { site },
                    "deliver_outbox" => ScheduledJob::DeliverOutbox { batch: entry.batch.unwrap_or(50) },
                    "prune_jobs" => ScheduledJob::PruneJobs,
                    other => anyhow::bail!("[[jobs.schedules]] {name}: unknown job {other:?}"),
                };
                let semantics = match entry.semantics.as_deref() {
                    None => Semantics::WallClock,
                    Some(text) => Semantics::parse(text).with_context(|| {
                        format!("[[jobs.schedules]] {name}: semantics must be wall_clock or elapsed, not {text:?}")
                    })?,
                };
                let misfire = match entry.misfire.as_deref() {
                    None => Misfire::FireOnce,
                    Some(text) => Misfire::parse(text).with_context(|| {
                        format!("[[jobs.schedules]] {name}: misfire must be fire_once or skip, not {text:?}")
                    })?,
                };
                let def = ScheduleDef {
                    name: name.clone(),
                    cron: entry.cron.clone(),
                    time_zone: entry.time_zone.clone().unwrap_or_else(|| clinic.time_zone.clone()),
                    semantics,
                    misfire,
                    job,
                };
                def.plan().with_context(|| format!("[[jobs.schedules]] in {:?}", config.sources))?;
                Ok(def)
            })
            .collect()
    }

    pub fn job_context(&self, worker_id: &str) -> anyhow::Result<JobContext> {
        let mut context = JobContext::new(worker_id);
        context.backoff.base = seconds("backoff_base_seconds", self.backoff_base_seconds)?;
        context.backoff.cap = seconds("backoff_cap_seconds", self.backoff_cap_seconds)?;
        context.chunk_size = self.chunk_size.max(1);
        context.keep_plain = Duration::from_secs(self.keep_completed_days * 86_400);
        context.keep_keyed = Duration::from_secs(self.keep_keyed_days * 86_400);
        Ok(context)
    }

    pub fn scheduler(&self) -> Scheduler {
        Scheduler { grace: chrono::Duration::seconds(self.misfire_grace_seconds), ..Scheduler::default() }
    }
}

/// The daily pipeline's evaluator: the store, the policy from the policy file and its version.
pub async fn daily_evaluator(
    config: &Config,
    store: &refill_store::Store,
) -> anyhow::Result<Arc<dyn refill_jobs::DailyEvaluator>> {
    let loaded = crate::policy_file::load_policy(config)?;
    let section = JobsSection::load(config)?;
    Ok(Arc::new(refill_jobs::pipeline::StoreEvaluator::new(
        store.clone(),
        Arc::new(loaded.policy),
        loaded.version,
        refill_rules::uds::UdsSeed::splitmix64(section.uds_seed),
    )))
}

/// `host:pid`, the default worker id.
fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let host = if host.is_empty() { "worker".to_string() } else { host };
    format!("{host}:{}", std::process::id())
}

pub async fn run(args: Args, context: &Context) -> anyhow::Result<ExitCode> {
    let config = context.config()?;
    let section = JobsSection::load(&config)?;
    let worker_id = args.id.clone().or(section.worker_id.clone()).unwrap_or_else(default_worker_id);
    let mut settings = WorkerSettings::new(worker_id.clone());
    settings.queues = if args.queues.is_empty() { section.queues.clone() } else { args.queues.clone() };
    settings.concurrency = args.concurrency.unwrap_or(section.concurrency);
    settings.batch_size = args.batch.unwrap_or(section.batch_size);
    settings.lease = seconds("lease_seconds", args.lease.unwrap_or(section.lease_seconds))?;
    settings.heartbeat = seconds("heartbeat_seconds", args.heartbeat.unwrap_or(section.heartbeat_seconds))?;
    settings.poll_interval = Duration::from_millis(args.poll_ms.unwrap_or(section.poll_interval_ms));
    settings.rescue_interval = seconds("rescue_interval_seconds", section.rescue_interval_seconds)?;
    settings.tick_interval = if args.no_schedules {
        Duration::ZERO
    } else {
        seconds("tick_interval_seconds", section.tick_interval_seconds)?
    };
    settings.shutdown_grace = seconds("shutdown_grace_seconds", section.shutdown_grace_seconds)?;
    settings.drain = args.drain;
    settings.validate()?;

    let store = context.open_store(&config).await?;
    let scheduler = if args.no_schedules {
        None
    } else {
        let defs = section.schedule_defs(&config)?;
        let report = refill_jobs::sync_schedules(&store, &defs).await?;
        tracing::info!(reset = ?report.reset, unchanged = report.unchanged.len(), disabled = report.disabled, "schedules synced");
        Some(section.scheduler())
    };
    let job_context = crate::cmd::jobs::wire_handlers(section.job_context(&worker_id)?, &config, &store).await?;
    let queue = Arc::new(StoreQueue::new(store.clone(), job_context, scheduler));
    tracing::info!(worker = %worker_id, concurrency = settings.concurrency, batch = settings.batch_size, "worker started");
    let report = refill_jobs::run_worker(queue, settings, shutdown_signal()).await?;
    tracing::info!(worker = %worker_id, ?report, "worker stopped");
    if args.drain {
        println!(
            "worker {worker_id}: completed {} retried {} dead {} lease_lost {} released {} rescued {} fired {}",
            report.completed,
            report.retried,
            report.dead,
            report.lease_lost,
            report.released,
            report.rescued,
            report.fired
        );
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or ctrl-c.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; ctrl-c only");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown requested: finishing or releasing held jobs");
}
