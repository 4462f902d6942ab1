//! What each job kind does. Handler bodies may use `anyhow`; a [`Permanent`] error sends the job
//! straight to `dead`, any other error retries it with backoff.
//!
//! Database effects go through `scope.tx()`, the job's own transaction, which commits together with
//! the fenced completion.

use std::time::Duration;

use anyhow::Context as _;
use refill_store::jobs as store_jobs;

use crate::payload::JobPayload;
use crate::pipeline;
use crate::runner::{JobContext, JobScope, Permanent};

/// Run one job's handler.
pub async fn handle(context: &JobContext, payload: &JobPayload, scope: &mut JobScope<'_>) -> anyhow::Result<()> {
    match payload {
        JobPayload::Probe { work_ms, effect } => {
            if *work_ms > 0 {
                tokio::time::sleep(Duration::from_millis(*work_ms)).await;
            }
            if *effect {
                let lease = scope.lease.clone();
                store_jobs::record_probe_effect(scope.tx().await?, &lease, &context.worker_id).await?;
            }
            Ok(())
        }
        JobPayload::DailyPipeline { site, date } => pipeline::fan_out(context, scope, site, *date).await,
        JobPayload::DailyChunk { site, date, first_patient, last_patient } => {
            let daily = context.daily.as_ref().ok_or_else(|| not_configured("the daily evaluator"))?;
            let follow_ups =
                daily.evaluate_range(scope.tx().await?, site, *date, *first_patient, *last_patient).await?;
            let jobs: Vec<_> = follow_ups.iter().map(JobPayload::to_new_job).collect();
            store_jobs::enqueue_many(scope.tx().await?, &jobs).await?;
            Ok(())
        }
        JobPayload::UdsDraw { .. } | JobPayload::TaperStep { .. } => {
            let daily = context.daily.as_ref().ok_or_else(|| not_configured("the daily evaluator"))?;
            if daily.run_patient_job(scope.tx().await?, payload).await? {
                Ok(())
            } else {
                Err(Permanent(format!("no handler for {} jobs", payload.kind())).into())
            }
        }
        JobPayload::PatientReminder { .. }
        | JobPayload::StaffMorningDigest { .. }
        | JobPayload::PhysicianExceptionDigest { .. }
        | JobPayload::UrgentAlert { .. }
        | JobPayload::BreakGlassAlert { .. } => {
            let mailer = context.mailer.as_ref().ok_or_else(|| not_configured("email"))?;
            mailer.compose(scope.tx().await?, payload).await
        }
        JobPayload::DeliverOutbox { batch } => {
            let mailer = context.mailer.as_ref().ok_or_else(|| not_configured("email"))?;
            mailer.deliver(scope.store, *batch).await.map(|_| ())
        }
        JobPayload::PruneJobs => {
            store_jobs::prune_finished(scope.store, context.keep_plain, context.keep_keyed, 10_000)
                .await
                .context("pruning finished jobs")?;
            Ok(())
        }
    }
}

/// A missing part of this worker's setup: retried (a correctly configured worker may pick it up),
/// ending `dead` and visible to staff if none ever does.
fn not_configured(what: &str) -> anyhow::Error {
    anyhow::anyhow!("{what} is not configured on this worker")
}
