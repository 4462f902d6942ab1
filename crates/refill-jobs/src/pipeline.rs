//! The daily pipeline: one `DailyPipeline` job per site and clinic date fans out into `DailyChunk`
//! jobs by patient-id range, so every worker shares the day's evaluation; each chunk is idempotent per
//! (patient, clinic date) because its key is `daily_chunk:{site}:{date}:{first}-{last}` and the
//! evaluator's writes are keyed the same way.

use std::sync::Arc;

use chrono::NaiveDate;
use refill_app::App;
use refill_rules::PatientId;
use refill_rules::policy::Policy;
use refill_rules::uds::UdsSeed;
use refill_store::jobs as store_jobs;
use refill_store::{Store, Tx};

use crate::payload::JobPayload;
use crate::runner::{BoxFuture, DailyEvaluator, JobContext, JobScope};

pub use refill_app::daily::{
    MISSED_PICKUP_AFTER_DAYS, MISSED_PICKUP_LOOK_BACK_DAYS, REFILL_WINDOW_LEAD_DAYS, TAPER_STEP_LEAD_DAYS,
    missed_pickup_call_before, missed_pickup_window, next_friday, reminders,
};

/// Split `[first, last]` into inclusive ranges of at most `size` ids.
pub fn chunk_ranges(first: i64, last: i64, size: i64) -> Vec<(i64, i64)> {
    let size = size.max(1);
    let mut ranges = Vec::new();
    let mut start = first;
    while start <= last {
        let end = start.saturating_add(size - 1).min(last);
        ranges.push((start, end));
        if end == i64::MAX {
            break;
        }
        start = end + 1;
    }
    ranges
}

/// The `DailyPipeline` job: enqueue the chunk jobs for the site's clinic date in the job's transaction.
pub async fn fan_out(
    context: &JobContext,
    scope: &mut JobScope<'_>,
    site: &str,
    date: NaiveDate,
) -> anyhow::Result<()> {
    let daily = context.daily.as_ref().ok_or_else(|| anyhow::anyhow!("the daily evaluator is not configured"))?;
    let Some((first, last)) = daily.patient_id_bounds(scope.store).await? else {
        tracing::info!(%site, %date, "no active patients; nothing to evaluate");
        return Ok(());
    };
    let tx = scope.tx().await?;
    let mut enqueued = 0;
    for (first_patient, last_patient) in chunk_ranges(first, last, context.chunk_size) {
        let chunk = JobPayload::DailyChunk { site: site.to_string(), date, first_patient, last_patient };
        if store_jobs::enqueue(tx, &chunk.to_new_job()).await?.is_some() {
            enqueued += 1;
        }
    }
    tracing::info!(%site, %date, enqueued, "daily pipeline split into chunks");
    Ok(())
}

/// What a synchronous run of the pipeline did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DailySummary {
    pub chunks: u64,
    pub patients_first: Option<i64>,
    pub patients_last: Option<i64>,
    /// Patient reminders enqueued (duplicates of earlier runs not counted); urgent alerts are enqueued
    /// by decide-and-record itself.
    pub follow_ups: u64,
}

/// Run the whole daily pipeline for `site` and `date` in this process, chunk by chunk, each chunk in
/// its own transaction (the same work the `DailyChunk` jobs do, without the queue). Idempotent: running
/// it twice for the same date records nothing new. `refill jobs run-daily` and the demo use it.
pub async fn run_daily(
    store: &Store,
    daily: &dyn DailyEvaluator,
    site: &str,
    date: NaiveDate,
    chunk_size: i64,
) -> anyhow::Result<DailySummary> {
    let mut summary = DailySummary::default();
    let Some((first, last)) = daily.patient_id_bounds(store).await? else { return Ok(summary) };
    summary.patients_first = Some(first);
    summary.patients_last = Some(last);
    for (first_patient, last_patient) in chunk_ranges(first, last, chunk_size) {
        let mut tx = store.begin().await?;
        let follow_ups = daily.evaluate_range(&mut tx, site, date, first_patient, last_patient).await?;
        let jobs: Vec<_> = follow_ups.iter().map(JobPayload::to_new_job).collect();
        summary.follow_ups += store_jobs::enqueue_many(&mut tx, &jobs).await?;
        tx.commit().await?;
        summary.chunks += 1;
    }
    Ok(summary)
}

/// The real evaluator: the daily run of `refill-app` (draw drug tests, apply taper steps, decide and
/// record each patient's cycle, idempotent per patient and date), with the clinic's drug-test seed.
pub struct StoreEvaluator {
    pub app: App,
    /// The clinic's UDS seed (secret; the algorithm is stored with each draw so it can be replayed).
    pub uds_seed: UdsSeed,
}

impl StoreEvaluator {
    pub fn new(store: Store, policy: Arc<Policy>, policy_version: impl Into<String>, uds_seed: UdsSeed) -> Self {
        StoreEvaluator { app: App::new(store, policy, policy_version), uds_seed }
    }
}

impl DailyEvaluator for StoreEvaluator {
    fn evaluate_range<'a>(
        &'a self,
        tx: &'a mut Tx,
        _site: &'a str,
        date: NaiveDate,
        first: i64,
        last: i64,
    ) -> BoxFuture<'a, anyhow::Result<Vec<JobPayload>>> {
        Box::pin(async move {
            let report =
                refill_app::daily::run_chunk(&self.app, tx, &self.uds_seed, date, PatientId(first), PatientId(last))
                    .await?;
            Ok(report.reminders)
        })
    }

    fn patient_id_bounds<'a>(&'a self, store: &'a Store) -> BoxFuture<'a, anyhow::Result<Option<(i64, i64)>>> {
        Box::pin(async move { Ok(store.patient_id_bounds().await?.map(|(first, last)| (first.0, last.0))) })
    }

    fn run_patient_job<'a>(&'a self, tx: &'a mut Tx, job: &'a JobPayload) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            match job {
                JobPayload::UdsDraw { patient, date } => {
                    let mut facts = tx.load_patient_facts(PatientId(*patient), *date).await?;
                    refill_app::daily::draw_uds_if_needed(&self.app, tx, &self.uds_seed, &mut facts, *date).await?;
                    Ok(true)
                }
                JobPayload::TaperStep { plan, patient, effective_on, .. } => {
                    let mut facts = tx.load_patient_facts(PatientId(*patient), *effective_on).await?;
                    // A step of a plan that was replaced or paused does nothing (the plan's revision
                    // cancels its pending steps; this guards the race).
                    if facts.taper.as_ref().is_some_and(|t| t.plan_id == *plan) {
                        let system = refill_store::Actor::system();
                        refill_app::daily::apply_taper_step(&self.app, tx, &mut facts, *effective_on, &system).await?;
                    }
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::chunk_ranges;

    #[test]
    fn ranges_cover_every_id_once() {
        assert_eq!(chunk_ranges(1, 10, 4), vec![(1, 4), (5, 8), (9, 10)]);
        assert_eq!(chunk_ranges(5, 5, 100), vec![(5, 5)]);
        assert!(chunk_ranges(6, 5, 100).is_empty());
    }
}
