//! Cron schedules from configuration: synced into `job_schedule` rows at start, ticked by every worker.
//!
//! No leader: each tick locks the due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the single writer on
//! SQLite), inserts the occurrence's job under the unique key `cron:{schedule}:{local time}` and moves
//! the cursor in the same transaction. Three workers ticking at once fire each occurrence once.
//! The tick reads the schedule from the row (not from this process's config), so nodes that started
//! with different files still agree on what fires.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use refill_store::Store;
use refill_store::jobs as store_jobs;
use refill_store::schedule::{self as store_schedule, Cursor, ScheduleRow, ScheduleSpec, SyncOutcome};

use crate::JobsError;
use crate::payload::JobPayload;
use crate::plan::{Misfire, Occurrence, Plan, Semantics, occurrence_key};

/// The job a schedule fires. Stored in `job_schedule.job_kind`/`job_args`: a stored contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum ScheduledJob {
    DailyPipeline { site: String },
    StaffMorningDigest { site: String },
    PhysicianExceptionDigest { site: String },
    DeliverOutbox { batch: u32 },
    PruneJobs,
}

impl ScheduledJob {
    pub fn kind(&self) -> &'static str {
        match self {
            ScheduledJob::DailyPipeline { .. } => "daily_pipeline",
            ScheduledJob::StaffMorningDigest { .. } => "staff_morning_digest",
            ScheduledJob::PhysicianExceptionDigest { .. } => "physician_exception_digest",
            ScheduledJob::DeliverOutbox { .. } => "deliver_outbox",
            ScheduledJob::PruneJobs => "prune_jobs",
        }
    }

    /// The job for the occurrence at local wall-clock time `local` (its date is the clinic date).
    pub fn payload_for(&self, local: NaiveDateTime) -> JobPayload {
        let date = local.date();
        match self {
            ScheduledJob::DailyPipeline { site } => JobPayload::DailyPipeline { site: site.clone(), date },
            ScheduledJob::StaffMorningDigest { site } => JobPayload::StaffMorningDigest { site: site.clone(), date },
            ScheduledJob::PhysicianExceptionDigest { site } => {
                JobPayload::PhysicianExceptionDigest { site: site.clone(), date }
            }
            ScheduledJob::DeliverOutbox { batch } => JobPayload::DeliverOutbox { batch: *batch },
            ScheduledJob::PruneJobs => JobPayload::PruneJobs,
        }
    }

    fn args(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(map) = value.as_object_mut() {
            map.remove("job");
        }
        value
    }

    fn from_row(kind: &str, args: &serde_json::Value) -> Result<ScheduledJob, String> {
        let mut value = args.clone();
        match value.as_object_mut() {
            Some(map) => {
                map.insert("job".into(), serde_json::Value::String(kind.to_string()));
            }
            None => value = serde_json::json!({ "job": kind }),
        }
        serde_json::from_value(value).map_err(|e| e.to_string())
    }
}

/// One schedule as configured (`[[jobs.schedules]]`), with its zone already resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleDef {
    pub name: String,
    pub cron: String,
    pub time_zone: String,
    pub semantics: Semantics,
    pub misfire: Misfire,
    pub job: ScheduledJob,
}

impl ScheduleDef {
    /// Parse and check the spec.
    ///
    /// # Errors
    /// `Schedule` naming the schedule.
    pub fn plan(&self) -> Result<Plan, JobsError> {
        Plan::new(&self.name, &self.cron, &self.time_zone, self.semantics)
    }

    fn spec(&self) -> ScheduleSpec {
        let job_args = self.job.args();
        let fingerprint = format!(
            "{}|{}|{}|{}|{}|{}",
            self.cron,
            self.time_zone,
            self.semantics.as_str(),
            self.misfire.as_str(),
            self.job.kind(),
            job_args
        );
        ScheduleSpec {
            name: self.name.clone(),
            cron: self.cron.clone(),
            time_zone: self.time_zone.clone(),
            semantics: self.semantics.as_str().to_string(),
            misfire: self.misfire.as_str().to_string(),
            job_kind: self.job.kind().to_string(),
            job_args,
            fingerprint,
        }
    }
}

/// What a sync did, per schedule name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub reset: Vec<String>,
    pub unchanged: Vec<String>,
    pub disabled: u64,
}

/// Ticks schedules; `grace` is how late an occurrence may be under `misfire = "skip"`.
#[derive(Debug, Clone)]
pub struct Scheduler {
    pub grace: chrono::Duration,
    /// Rows locked per tick transaction.
    pub batch: i64,
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler { grace: chrono::Duration::minutes(5), batch: 50 }
    }
}

/// Upsert the configured schedules and disable stored ones no longer configured, in one transaction.
/// A schedule's cursor is recomputed (first occurrence after the database's `now`) only when its spec
/// changed, it is new, or it was disabled.
///
/// # Errors
/// `Schedule` for a spec that does not parse (nothing is written then); `Store` for the database.
pub async fn sync_schedules(store: &Store, defs: &[ScheduleDef]) -> Result<SyncReport, JobsError> {
    let plans = defs.iter().map(|def| def.plan().map(|plan| (def, plan))).collect::<Result<Vec<_>, _>>()?;
    let mut names: Vec<String> = defs.iter().map(|d| d.name.clone()).collect();
    names.sort();
    if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(JobsError::Schedule { schedule: pair[0].clone(), message: "configured twice".into() });
    }
    let mut tx = store.begin().await?;
    let now = store_jobs::db_now(&mut tx).await?;
    let mut report = SyncReport::default();
    for (def, plan) in plans {
        let first = plan.first_after(now).ok_or_else(|| JobsError::Schedule {
            schedule: def.name.clone(),
            message: "no future occurrence".into(),
        })?;
        let cursor = Cursor { local: first.local, fire_at: first.fire_at };
        match store_schedule::sync_schedule(&mut tx, &def.spec(), cursor).await? {
            SyncOutcome::CursorReset => report.reset.push(def.name.clone()),
            SyncOutcome::Unchanged => report.unchanged.push(def.name.clone()),
        }
    }
    report.disabled = store_schedule::disable_schedules_except(&mut tx, &names).await?;
    tx.commit().await?;
    Ok(report)
}

impl Scheduler {
    /// Fire every due occurrence: returns how many jobs were inserted (an occurrence another worker
    /// already inserted counts zero).
    ///
    /// # Errors
    /// `Store` for the database; a stored schedule that no longer parses is logged and skipped.
    pub async fn tick(&self, store: &Store) -> Result<u64, JobsError> {
        let mut tx = store.begin().await?;
        let now = store_jobs::db_now(&mut tx).await?;
        let rows = store_schedule::lock_due_schedules(&mut tx, now, self.batch).await?;
        let mut inserted = 0;
        for row in rows {
            match self.fire(&mut tx, &row, now).await {
                Ok(count) => inserted += count,
                Err(JobsError::Schedule { schedule, message }) => {
                    tracing::error!(%schedule, %message, "stored schedule is unusable; fix the configuration");
                }
                Err(error) => return Err(error),
            }
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn fire(&self, tx: &mut refill_store::Tx, row: &ScheduleRow, now: DateTime<Utc>) -> Result<u64, JobsError> {
        let name = &row.spec.name;
        let bad = |message: String| JobsError::Schedule { schedule: name.clone(), message };
        let semantics = Semantics::parse(&row.spec.semantics).ok_or_else(|| bad("semantics".into()))?;
        let misfire = Misfire::parse(&row.spec.misfire).ok_or_else(|| bad("misfire".into()))?;
        let plan = Plan::new(name, &row.spec.cron, &row.spec.time_zone, semantics)?;
        let job = ScheduledJob::from_row(&row.spec.job_kind, &row.spec.job_args).map_err(bad)?;
        let cursor = Occurrence { local: row.next_local, fire_at: row.next_fire_at };
        let due = plan.due(cursor, now, misfire, self.grace).ok_or_else(|| bad("no next occurrence".into()))?;
        let mut inserted = 0;
        if let Some(occurrence) = due.fire {
            let mut new_job = job.payload_for(occurrence.local).to_new_job();
            new_job.unique_key = Some(occurrence_key(name, &occurrence));
            new_job.run_at = Some(occurrence.fire_at);
            if store_jobs::enqueue(tx, &new_job).await?.is_some() {
                inserted += 1;
            }
            tracing::info!(schedule = %name, local = %occurrence.local, dropped = due.dropped, "schedule fired");
        } else if due.dropped > 0 {
            tracing::warn!(schedule = %name, dropped = due.dropped, "missed occurrences skipped");
        }
        let next = Cursor { local: due.next.local, fire_at: due.next.fire_at };
        store_schedule::advance_schedule(tx, name, next, due.fire.map(|o| o.local)).await?;
        Ok(inserted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_jobs_round_trip_through_kind_and_args() {
        for job in [
            ScheduledJob::DailyPipeline { site: "main".into() },
            ScheduledJob::DeliverOutbox { batch: 50 },
            ScheduledJob::PruneJobs,
        ] {
            let back = ScheduledJob::from_row(job.kind(), &job.args()).unwrap();
            assert_eq!(back, job);
            assert_eq!(job.payload_for(NaiveDateTime::default()).kind(), job.kind());
        }
    }
}
