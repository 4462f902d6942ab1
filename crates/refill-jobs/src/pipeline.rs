//! The daily pipeline: one `DailyPipeline` job per site and clinic date fans out into `DailyChunk`
//! jobs by patient-id range, so every worker shares the day's evaluation; each chunk is idempotent per
//! (patient, clinic date) because its key is `daily_chunk:{site}:{date}:{first}-{last}` and the
//! evaluator's writes are keyed the same way.

use chrono::NaiveDate;
use refill_store::jobs as store_jobs;

use crate::payload::JobPayload;
use crate::runner::{JobContext, JobScope};

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
pub async fn fan_out(context: &JobContext, scope: &mut JobScope<'_>, site: &str, date: NaiveDate) -> anyhow::Result<()> {
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
