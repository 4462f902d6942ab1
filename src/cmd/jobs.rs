//! `refill jobs`: inspect and drive the job queue: `status` (queues, failures, dead jobs, next
//! occurrences), `run-daily --date D` (the daily pipeline by hand, synchronously), staff actions
//! (`retry`, `cancel`), and probe jobs for load and crash tests (`enqueue-probes`, `audit-probes`).

use std::process::ExitCode;

use anyhow::Context as _;
use chrono::NaiveDate;

use refill_jobs::JobContext;
use refill_store::Store;
use refill_store::jobs::{self as store_jobs, JobState, NewJob};

use crate::cmd::worker::JobsSection;
use crate::config::Config;
use crate::context::Context;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Jobs per queue and state, recent dead jobs, and each schedule's next occurrence.
    Status {
        /// How many dead jobs to list.
        #[arg(long, default_value_t = 20)]
        dead: i64,
    },
    /// Run the daily pipeline for one clinic date now, in this process (backfills and tests).
    RunDaily {
        /// Clinic date, YYYY-MM-DD (default: today in the clinic's time zone).
        #[arg(long, value_parser = crate::cli::parse_date)]
        date: Option<NaiveDate>,
        /// Clinic site.
        #[arg(long, default_value = "main")]
        site: String,
    },
    /// Enqueue the daily pipeline for one clinic date, for the workers to run (once per site and date:
    /// a second enqueue is a no-op).
    EnqueueDaily {
        /// Clinic date, YYYY-MM-DD.
        #[arg(long, value_parser = crate::cli::parse_date)]
        date: NaiveDate,
        /// Clinic site.
        #[arg(long, default_value = "main")]
        site: String,
    },
    /// Give a dead job one more attempt.
    Retry { id: i64 },
    /// Cancel a job that has not finished (a running one loses its lease and rolls back).
    Cancel {
        id: i64,
        #[arg(long, default_value = "cancelled by staff")]
        reason: String,
    },
    /// Enqueue probe jobs (load and crash tests): each commits one effect row with its completion.
    EnqueueProbes {
        #[arg(long)]
        count: i64,
        /// Milliseconds each probe "works" before committing.
        #[arg(long, default_value_t = 0)]
        work_ms: u64,
        /// Write no effect row (claim + complete only, as in the pgbench baseline).
        #[arg(long)]
        no_effect: bool,
    },
    /// Check probe jobs: every one completed, each with exactly one committed effect. Exit 1 otherwise.
    AuditProbes,
}

pub async fn run(command: Command, context: &Context) -> anyhow::Result<ExitCode> {
    let config = context.config()?;
    let store = context.open_store(&config).await?;
    let code = match command {
        Command::Status { dead } => status(&store, dead).await?,
        Command::RunDaily { date, site } => run_daily(&config, &store, &site, date).await?,
        Command::EnqueueDaily { date, site } => {
            let payload = refill_jobs::JobPayload::DailyPipeline { site, date };
            let mut tx = store.begin().await?;
            let inserted = store_jobs::enqueue(&mut tx, &payload.to_new_job()).await?;
            tx.commit().await?;
            report_change(
                inserted.is_some(),
                &format!("daily pipeline for {date} enqueued"),
                &format!("the daily pipeline for {date} was enqueued before"),
            )
        }
        Command::Retry { id } => {
            let mut tx = store.begin().await?;
            let changed = store_jobs::retry_dead(&mut tx, id).await?;
            tx.commit().await?;
            report_change(changed, &format!("job {id} queued for one more attempt"), &format!("job {id} is not dead"))
        }
        Command::Cancel { id, reason } => {
            let mut tx = store.begin().await?;
            let changed = store_jobs::cancel(&mut tx, id, &reason).await?;
            tx.commit().await?;
            report_change(changed, &format!("job {id} cancelled"), &format!("job {id} is already finished or unknown"))
        }
        Command::EnqueueProbes { count, work_ms, no_effect } => {
            let payload = refill_jobs::JobPayload::Probe { work_ms, effect: !no_effect };
            let job = NewJob::new(payload.kind(), serde_json::to_value(&payload)?);
            let mut tx = store.begin().await?;
            let inserted = store_jobs::enqueue_copies(&mut tx, &job, count).await?;
            tx.commit().await?;
            println!("enqueued {inserted} probe jobs");
            ExitCode::SUCCESS
        }
        Command::AuditProbes => {
            let audit = store_jobs::audit_probe_effects(&store, "probe").await?;
            println!(
                "probes: {} jobs, {} completed, {} effects, {} without exactly one effect, {} unfinished, {} reclaimed",
                audit.jobs,
                audit.completed,
                audit.effects,
                audit.jobs_without_exactly_one_effect,
                audit.unfinished,
                audit.reclaimed
            );
            let exactly_once = audit.completed == audit.jobs
                && audit.effects == audit.jobs
                && audit.jobs_without_exactly_one_effect == 0;
            if exactly_once { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
    };
    store.close().await;
    Ok(code)
}

fn report_change(changed: bool, yes: &str, no: &str) -> ExitCode {
    if changed {
        println!("{yes}");
        ExitCode::SUCCESS
    } else {
        eprintln!("{no}");
        ExitCode::FAILURE
    }
}

async fn status(store: &Store, dead_limit: i64) -> anyhow::Result<ExitCode> {
    println!("QUEUE      STATE      JOBS     DUE  OLDEST DUE (UTC)");
    for count in store_jobs::queue_counts(store).await? {
        let oldest = count.oldest_due.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default();
        println!("{:<10} {:<10} {:>5} {:>7}  {oldest}", count.queue, count.state.as_str(), count.count, count.due);
    }
    let dead = store_jobs::list_jobs(store, JobState::Dead, dead_limit).await?;
    println!();
    println!("DEAD JOBS ({} shown)", dead.len());
    for job in dead {
        let error = job.last_error.unwrap_or_default();
        let error: String = error.chars().take(100).collect();
        println!("  #{} {} attempts {}/{}: {error}", job.id, job.kind, job.attempt, job.max_attempts);
    }
    println!();
    println!("SCHEDULES");
    for row in refill_store::schedule::list_schedules(store).await? {
        let state = if row.enabled { "" } else { " (disabled: not in configuration)" };
        println!(
            "  {:<34} {:<18} {:<18} next {} local = {} UTC{state}",
            row.spec.name,
            row.spec.cron,
            row.spec.time_zone,
            row.next_local.format("%Y-%m-%d %H:%M:%S"),
            row.next_fire_at.format("%Y-%m-%d %H:%M:%S"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_daily(config: &Config, store: &Store, site: &str, date: Option<NaiveDate>) -> anyhow::Result<ExitCode> {
    let section = JobsSection::load(config)?;
    let zone: crate::cmd::worker::ClinicZone = config.section("clinic")?;
    let tz: chrono_tz::Tz =
        zone.time_zone.parse().map_err(|e| anyhow::anyhow!("[clinic] time_zone {:?}: {e}", zone.time_zone))?;
    let date = date.unwrap_or_else(|| chrono::Utc::now().with_timezone(&tz).date_naive());
    let context = wire_handlers(section.job_context("run-daily")?, config, store).await?;
    let daily = context.daily.clone().context("the daily evaluator is not available")?;
    let started = std::time::Instant::now();
    let summary = refill_jobs::pipeline::run_daily(store, daily.as_ref(), site, date, context.chunk_size).await?;
    println!(
        "daily pipeline {site} {date}: {} chunks, {} follow-up jobs enqueued, in {:.1} s",
        summary.chunks,
        summary.follow_ups,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Give the job handlers what they need from the rest of the application: the daily evaluator (the
/// policy from the policy file). Email (`context.mailer`, the notifier's
/// `refill_jobs::delivery::OutboxMailer`) is wired here too once the binary builds it from `[notify]`;
/// without it reminder and digest jobs retry and end `dead`, visible in `refill jobs status`.
pub async fn wire_handlers(mut context: JobContext, config: &Config, store: &Store) -> anyhow::Result<JobContext> {
    context.daily = Some(crate::cmd::worker::daily_evaluator(config, store).await?);
    // Email goes out through the outbox only: the mailer sends rows the handlers wrote.
    context.mailer = Some(std::sync::Arc::new(crate::cmd::check_config::outbox_mailer(config)?));
    Ok(context)
}
