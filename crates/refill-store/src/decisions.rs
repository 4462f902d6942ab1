//! Decisions and what follows from them: the decision row (reasons and policy version), the daily queue
//! row of the patient, the exception for physician review, and the staff and physician actions on
//! queue items and exceptions under optimistic versioning.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use refill_rules::{Decision, Outcome, PatientId, Reason, RefillWindow, Task};
use serde_json::{Value, json};
use sqlx::types::Json;

use crate::audit::AuditEvent;
use crate::codec::corrupt;
use crate::model::{Actor, DecisionId, ExceptionId, QueueItemId, RefillRequestId, now};
use crate::store::{with_read_pool, with_tx};
use crate::{Store, StoreError, Tx};

/// A decision to record, with where it came from.
#[derive(Debug, Clone)]
pub struct NewDecision<'a> {
    pub patient_id: PatientId,
    pub clinic_date: NaiveDate,
    pub refill_request_id: Option<RefillRequestId>,
    pub decision: &'a Decision,
    pub decided_by: &'a Actor,
    /// The date the current supply runs out, for ordering the queue (most urgent, then soonest).
    pub run_out_on: Option<NaiveDate>,
    /// Idempotency key, e.g. `daily:2026-12-01:42`: recording the same key again changes nothing and
    /// returns the first record.
    pub dedupe_key: Option<String>,
}

/// What `record_decision` wrote (or found, when `created` is false).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedDecision {
    pub decision_id: DecisionId,
    pub queue_item_id: Option<QueueItemId>,
    pub exception_id: Option<ExceptionId>,
    pub created: bool,
}

/// The queue's urgency rank of an outcome: higher is more urgent.
pub fn outcome_urgency(outcome: Outcome) -> i64 {
    match outcome {
        Outcome::Approve => 0,
        Outcome::ApproveWithTasks => 1,
        Outcome::Hold => 2,
        Outcome::Escalate => 3,
        Outcome::EscalateUrgent => 4,
    }
}

/// A stored decision: the decision as the engine made it, and where and when it was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    pub id: DecisionId,
    pub patient_id: PatientId,
    pub refill_request_id: Option<RefillRequestId>,
    pub clinic_date: NaiveDate,
    /// Outcome, reasons with evidence, tasks and policy version. Evidence of a reason comes back in
    /// name order (PostgreSQL's jsonb does not keep object key order).
    pub decision: Decision,
    pub decided_by: String,
    pub decided_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct DecisionRow {
    id: i64,
    patient_id: i64,
    refill_request_id: Option<i64>,
    clinic_date: NaiveDate,
    outcome: String,
    reasons: Json<Value>,
    tasks: Json<Value>,
    eligible_on: Option<NaiveDate>,
    total_daily_mme: Option<f64>,
    policy_version: String,
    decided_by: String,
    decided_at: DateTime<Utc>,
    refill_window: String,
    covered: Json<Value>,
    physician_decision_id: Option<i64>,
}

impl DecisionRow {
    fn into_record(self) -> Result<DecisionRecord, StoreError> {
        let id = self.id;
        let malformed = |what: &str, e: serde_json::Error| StoreError::Corrupt(format!("decision {id} {what}: {e}"));
        let reasons: Vec<Reason> = serde_json::from_value(self.reasons.0).map_err(|e| malformed("reasons", e))?;
        let tasks: Vec<Task> = serde_json::from_value(self.tasks.0).map_err(|e| malformed("tasks", e))?;
        let covered: Vec<Reason> = serde_json::from_value(self.covered.0).map_err(|e| malformed("covered", e))?;
        let window =
            RefillWindow::parse(&self.refill_window).ok_or_else(|| corrupt("refill window", &self.refill_window))?;
        Ok(DecisionRecord {
            id: DecisionId(self.id),
            patient_id: PatientId(self.patient_id),
            refill_request_id: self.refill_request_id.map(RefillRequestId),
            clinic_date: self.clinic_date,
            decision: Decision {
                outcome: Outcome::parse(&self.outcome).ok_or_else(|| corrupt("outcome", &self.outcome))?,
                reasons,
                tasks,
                eligible_on: self.eligible_on,
                total_daily_mme: self.total_daily_mme,
                policy_version: self.policy_version,
                window,
                covered,
                standing: self.physician_decision_id,
            },
            decided_by: self.decided_by,
            decided_at: self.decided_at,
        })
    }
}

const DECISION_COLUMNS: &str = "id, patient_id, refill_request_id, clinic_date, outcome, reasons, tasks, eligible_on, \
     total_daily_mme, policy_version, decided_by, decided_at, refill_window, covered, physician_decision_id";

const INSERT_DECISION: &str = r#"
insert into decisions (patient_id, refill_request_id, clinic_date, outcome, reasons, tasks, eligible_on,
    total_daily_mme, policy_version, decided_by, dedupe_key, decided_at, refill_window, covered, physician_decision_id)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
returning id"#;

// A later decision for the same patient and date replaces the queue row's decision; a finished item
// reopens, because something new needs looking at. The version bump makes anyone still acting on the
// old decision get a conflict.
const UPSERT_QUEUE: &str = r#"
insert into daily_queue (clinic_date, patient_id, decision_id, outcome, urgency, run_out_on, status, version,
    updated_by, updated_at)
values ($1, $2, $3, $4, $5, $6, 'pending', 1, $7, $8)
on conflict (clinic_date, patient_id) do update set decision_id = excluded.decision_id,
    outcome = excluded.outcome, urgency = excluded.urgency, run_out_on = excluded.run_out_on,
    status = case when daily_queue.status = 'done' then 'pending' else daily_queue.status end,
    version = daily_queue.version + 1, updated_by = excluded.updated_by, updated_at = excluded.updated_at
returning id"#;

// The same update for a patient who is not due yet: only a row that already exists for the day changes,
// and a row staff finished stays finished (a just-recorded fill makes the next refill "not due").
const UPDATE_QUEUE_IF_PRESENT: &str = r#"
update daily_queue set decision_id = $3, outcome = $4, urgency = $5, run_out_on = $6,
    version = version + 1, updated_by = $7, updated_at = $8
where clinic_date = $1 and patient_id = $2
returning id"#;

const INSERT_EXCEPTION: &str = r#"
insert into exceptions (patient_id, decision_id, clinic_date, status, urgency, reason_codes, raised_at, raised_by,
    version, updated_at, follows_decision_id)
values ($1, $2, $3, 'open', $4, $5, $6, $7, 1, $6, $8)
returning id"#;

// One open exception per patient: a new escalation joins it (latest decision, urgency never lowered).
const JOIN_EXCEPTION: &str = r#"
update exceptions set decision_id = $1, clinic_date = $2,
    urgency = case when urgency = 'urgent' then 'urgent' else $3 end,
    reason_codes = $4, version = version + 1, updated_at = $5
where id = $6"#;

const INSERT_DECISIONS: &str = r#"
insert into decisions (patient_id, refill_request_id, clinic_date, outcome, reasons, tasks, eligible_on,
    total_daily_mme, policy_version, decided_by, dedupe_key, decided_at, refill_window, covered, physician_decision_id)
values"#;
const DECISION_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

const UPSERT_QUEUE_ROWS: &str = r#"
insert into daily_queue (clinic_date, patient_id, decision_id, outcome, urgency, run_out_on, status, version,
    updated_by, updated_at)
values"#;
const QUEUE_ROW: &str = "(?, ?, ?, ?, ?, ?, 'pending', 1, ?, ?)";
const UPSERT_QUEUE_CONFLICT: &str = r#"
on conflict (clinic_date, patient_id) do update set decision_id = excluded.decision_id,
    outcome = excluded.outcome, urgency = excluded.urgency, run_out_on = excluded.run_out_on,
    status = case when daily_queue.status = 'done' then 'pending' else daily_queue.status end,
    version = daily_queue.version + 1, updated_by = excluded.updated_by, updated_at = excluded.updated_at"#;

const INSERT_EXCEPTIONS: &str = r#"
insert into exceptions (patient_id, decision_id, clinic_date, status, urgency, reason_codes, raised_at, raised_by,
    version, updated_at, follows_decision_id)
values"#;
const EXCEPTION_ROW: &str = "(?, ?, ?, 'open', ?, ?, ?, ?, 1, ?, ?)";

// JOIN_EXCEPTION for many exceptions in one statement (PostgreSQL).
const JOIN_EXCEPTIONS_UNNEST: &str = r#"
update exceptions as e set decision_id = v.decision_id, clinic_date = v.clinic_date,
    urgency = case when e.urgency = 'urgent' then 'urgent' else v.urgency end,
    reason_codes = v.reason_codes::jsonb, version = e.version + 1, updated_at = $6
from unnest($1::bigint[], $2::bigint[], $3::date[], $4::text[], $5::text[])
    as v(id, decision_id, clinic_date, urgency, reason_codes)
where e.id = v.id"#;

type DecisionJson = (Value, Value, Value);

/// The stable JSON form of a decision's reasons, tasks and covered reasons (a stored contract).
fn decision_json(decision: &Decision) -> Result<DecisionJson, StoreError> {
    let text = |what: &str, e: serde_json::Error| StoreError::Invalid(format!("decision {what} do not serialise: {e}"));
    Ok((
        serde_json::to_value(&decision.reasons).map_err(|e| text("reasons", e))?,
        serde_json::to_value(&decision.tasks).map_err(|e| text("tasks", e))?,
        serde_json::to_value(&decision.covered).map_err(|e| text("covered reasons", e))?,
    ))
}

impl Store {
    /// Record a decision inside `tx`: the decision row, the patient's daily queue row for the clinic
    /// date, an exception when the outcome escalates, the refill request marked decided, and the audit
    /// event. With a `dedupe_key` already recorded, nothing is written and the first record returns.
    ///
    /// # Errors
    /// Database errors (roll the transaction back).
    #[tracing::instrument(skip_all, fields(patient_id = new.patient_id.0))]
    pub async fn record_decision(&self, tx: &mut Tx, new: &NewDecision<'_>) -> Result<RecordedDecision, StoreError> {
        if let Some(key) = &new.dedupe_key
            && let Some(existing) = tx.decision_by_dedupe_key(key).await?
        {
            return Ok(existing);
        }
        let at = now();
        let decision = new.decision;
        let outcome = decision.outcome.as_str();
        // The stable JSON form of refill_rules::decision: a stored contract.
        let reasons = serde_json::to_value(&decision.reasons)
            .map_err(|e| StoreError::Invalid(format!("decision reasons do not serialise: {e}")))?;
        let tasks = serde_json::to_value(&decision.tasks)
            .map_err(|e| StoreError::Invalid(format!("decision tasks do not serialise: {e}")))?;
        let covered = serde_json::to_value(&decision.covered)
            .map_err(|e| StoreError::Invalid(format!("decision covered reasons do not serialise: {e}")))?;
        let decision_id: i64 = with_tx!(tx, conn => {
            sqlx::query_scalar(INSERT_DECISION)
                .bind(new.patient_id.0)
                .bind(new.refill_request_id.map(|r| r.0))
                .bind(new.clinic_date)
                .bind(outcome)
                .bind(Json(reasons.clone()))
                .bind(Json(tasks.clone()))
                .bind(decision.eligible_on)
                .bind(decision.total_daily_mme)
                .bind(decision.policy_version.clone())
                .bind(new.decided_by.id.clone())
                .bind(new.dedupe_key.clone())
                .bind(at)
                .bind(decision.window.as_str())
                .bind(Json(covered.clone()))
                .bind(decision.standing)
                .fetch_one(&mut *conn)
                .await?
        });
        // A patient who is not due yet is decided but not queued; a row that staff already have for the
        // day is still updated, so a re-evaluation never leaves a stale decision on screen.
        let upsert = if decision.needs_staff_today() { UPSERT_QUEUE } else { UPDATE_QUEUE_IF_PRESENT };
        let queue_item_id: Option<i64> = with_tx!(tx, conn => {
            sqlx::query_scalar(upsert)
                .bind(new.clinic_date)
                .bind(new.patient_id.0)
                .bind(decision_id)
                .bind(outcome)
                .bind(outcome_urgency(decision.outcome))
                .bind(new.run_out_on)
                .bind(new.decided_by.id.clone())
                .bind(at)
                .fetch_optional(&mut *conn)
                .await?
        });
        let exception_id = if decision.outcome >= Outcome::Escalate {
            Some(tx.raise_exception(new, DecisionId(decision_id)).await?)
        } else {
            None
        };
        if let Some(request) = new.refill_request_id {
            with_tx!(tx, conn => {
                sqlx::query(
                    "update refill_requests set status = 'decided', version = version + 1, updated_at = $1 \
                     where id = $2",
                )
                .bind(at)
                .bind(request.0)
                .execute(&mut *conn)
                .await?;
            });
        }
        let codes: Vec<&str> = decision.reasons.iter().map(|r| r.code.as_str()).collect();
        let event = AuditEvent::new(new.decided_by, "decision.record", "decision")
            .resource_id(decision_id.to_string())
            .patient(new.patient_id)
            .after(json!({
                "clinic_date": new.clinic_date,
                "outcome": outcome,
                "reasons": codes,
                "policy_version": decision.policy_version,
                "total_daily_mme": decision.total_daily_mme,
                "refill_request_id": new.refill_request_id.map(|r| r.0),
                "exception_id": exception_id.map(|e: ExceptionId| e.0),
            }));
        self.append_audit(tx, &event).await?;
        Ok(RecordedDecision {
            decision_id: DecisionId(decision_id),
            queue_item_id: queue_item_id.map(QueueItemId),
            exception_id,
            created: true,
        })
    }

    /// `record_decision` for many patients at once (the daily run's chunk), with the same rows as
    /// recording them one by one: a few multi-row statements instead of several per patient, and the
    /// audit chain extended once, in input order. Each patient at most once per call. Entries whose
    /// `dedupe_key` is already recorded write nothing and return their first record (`created` false).
    ///
    /// # Errors
    /// `Invalid` when a patient appears twice; database errors (roll the transaction back).
    #[tracing::instrument(skip_all, fields(decisions = news.len()))]
    pub async fn record_decisions(
        &self,
        tx: &mut Tx,
        news: &[NewDecision<'_>],
    ) -> Result<Vec<RecordedDecision>, StoreError> {
        let mut seen = HashSet::with_capacity(news.len());
        if let Some(twice) = news.iter().find(|n| !seen.insert(n.patient_id)) {
            return Err(StoreError::Invalid(format!("patient {} twice in one batch of decisions", twice.patient_id.0)));
        }
        let mut results: Vec<Option<RecordedDecision>> = vec![None; news.len()];
        let keys: Vec<&str> = news.iter().filter_map(|n| n.dedupe_key.as_deref()).collect();
        let recorded_keys = tx.recorded_dedupe_keys(&keys).await?;
        for (slot, new) in results.iter_mut().zip(news) {
            if let Some(key) = new.dedupe_key.as_deref()
                && recorded_keys.contains(key)
            {
                // A repeat of the same run: the first record stands (its rows are looked up one by one,
                // which only a re-run pays).
                *slot = tx.decision_by_dedupe_key(key).await?;
            }
        }
        let fresh: Vec<&NewDecision<'_>> =
            news.iter().zip(&results).filter(|(_, done)| done.is_none()).map(|(new, _)| new).collect();
        if fresh.is_empty() {
            return Ok(results.into_iter().map(|r| r.expect("every entry found")).collect());
        }
        let at = now();
        let decision_ids = tx.insert_decisions(&fresh, at).await?;
        let queue_ids = tx.write_queue_rows(&fresh, &decision_ids, at).await?;
        let exception_ids = tx.raise_exceptions(&fresh, &decision_ids, at).await?;
        let requests: Vec<i64> = fresh.iter().filter_map(|n| n.refill_request_id.map(|r| r.0)).collect();
        for ids in requests.chunks(crate::batch::ROWS_PER_STATEMENT) {
            let sql = format!(
                "update refill_requests set status = 'decided', version = version + 1, updated_at = $1 \
                 where id in ({})",
                crate::batch::in_list(ids.len(), 2)
            );
            with_tx!(tx, conn => {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(at);
                for id in ids {
                    query = query.bind(*id);
                }
                query.execute(&mut *conn).await?;
            });
        }
        let mut events = Vec::with_capacity(fresh.len());
        for new in &fresh {
            let decision = new.decision;
            let decision_id = decision_ids[&new.patient_id.0];
            let codes: Vec<&str> = decision.reasons.iter().map(|r| r.code.as_str()).collect();
            events.push(
                AuditEvent::new(new.decided_by, "decision.record", "decision")
                    .resource_id(decision_id.to_string())
                    .patient(new.patient_id)
                    .after(json!({
                        "clinic_date": new.clinic_date,
                        "outcome": decision.outcome.as_str(),
                        "reasons": codes,
                        "policy_version": decision.policy_version,
                        "total_daily_mme": decision.total_daily_mme,
                        "refill_request_id": new.refill_request_id.map(|r| r.0),
                        "exception_id": exception_ids.get(&new.patient_id.0),
                    })),
            );
        }
        self.append_audit_many(tx, &events).await?;
        for (slot, new) in results.iter_mut().zip(news) {
            if slot.is_none() {
                let patient = new.patient_id.0;
                *slot = Some(RecordedDecision {
                    decision_id: DecisionId(decision_ids[&patient]),
                    queue_item_id: queue_ids.get(&patient).copied().map(QueueItemId),
                    exception_id: exception_ids.get(&patient).copied().map(ExceptionId),
                    created: true,
                });
            }
        }
        Ok(results.into_iter().map(|r| r.expect("every entry recorded")).collect())
    }

    pub async fn decision(&self, decision_id: DecisionId) -> Result<DecisionRecord, StoreError> {
        let sql = format!("select {DECISION_COLUMNS} from decisions where id = $1");
        let row: Option<DecisionRow> = with_read_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(decision_id.0).fetch_optional(pool).await?
        });
        row.ok_or_else(|| StoreError::NotFound(format!("decision {decision_id}")))?.into_record()
    }

    /// A patient's decisions, newest first.
    pub async fn decisions_for_patient(
        &self,
        patient_id: PatientId,
        limit: i64,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        let sql = format!(
            "select {DECISION_COLUMNS} from decisions where patient_id = $1 order by clinic_date desc, id desc limit $2"
        );
        let rows: Vec<DecisionRow> = with_read_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(patient_id.0).bind(limit).fetch_all(pool).await?
        });
        rows.into_iter().map(DecisionRow::into_record).collect()
    }
}

impl Tx {
    async fn decision_by_dedupe_key(&mut self, key: &str) -> Result<Option<RecordedDecision>, StoreError> {
        let found: Option<(i64, i64, NaiveDate)> = with_tx!(self, conn => {
            sqlx::query_as("select id, patient_id, clinic_date from decisions where dedupe_key = $1")
                .bind(key.to_string())
                .fetch_optional(&mut *conn)
                .await?
        });
        let Some((decision_id, patient_id, clinic_date)) = found else { return Ok(None) };
        let queue_item_id: Option<i64> = with_tx!(self, conn => {
            sqlx::query_scalar("select id from daily_queue where clinic_date = $1 and patient_id = $2")
                .bind(clinic_date)
                .bind(patient_id)
                .fetch_optional(&mut *conn)
                .await?
        });
        let exception_id: Option<i64> = with_tx!(self, conn => {
            sqlx::query_scalar("select id from exceptions where decision_id = $1")
                .bind(decision_id)
                .fetch_optional(&mut *conn)
                .await?
        });
        Ok(Some(RecordedDecision {
            decision_id: DecisionId(decision_id),
            queue_item_id: queue_item_id.map(QueueItemId),
            exception_id: exception_id.map(ExceptionId),
            created: false,
        }))
    }

    /// The decision rows alone, multi-row, without queue row, exception or audit event: the write of
    /// the daily run's I/O floor (`crates/refill-jobs/benches/daily_floor.rs`), which measures what
    /// reading every patient's facts and writing one row per patient costs. Not a way to record a
    /// decision. Returns the rows written.
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_decision_rows_only(&mut self, news: &[NewDecision<'_>]) -> Result<usize, StoreError> {
        let refs: Vec<&NewDecision<'_>> = news.iter().collect();
        Ok(self.insert_decisions(&refs, now()).await?.len())
    }

    /// Which of `keys` are already recorded (one statement per 1,000 keys).
    async fn recorded_dedupe_keys(&mut self, keys: &[&str]) -> Result<HashSet<String>, StoreError> {
        let mut found = HashSet::new();
        for keys in keys.chunks(crate::batch::ROWS_PER_STATEMENT) {
            let sql = format!(
                "select dedupe_key from decisions where dedupe_key in ({})",
                crate::batch::in_list(keys.len(), 1)
            );
            let rows: Vec<String> = with_tx!(self, conn => {
                let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql));
                for key in keys {
                    query = query.bind(*key);
                }
                query.fetch_all(&mut *conn).await?
            });
            found.extend(rows);
        }
        Ok(found)
    }

    /// The decision rows of `news` (distinct patients) in multi-row inserts: patient id to decision id.
    async fn insert_decisions(
        &mut self,
        news: &[&NewDecision<'_>],
        at: DateTime<Utc>,
    ) -> Result<HashMap<i64, i64>, StoreError> {
        let mut ids = HashMap::with_capacity(news.len());
        for rows in news.chunks(crate::batch::ROWS_PER_STATEMENT) {
            let mut json = Vec::with_capacity(rows.len());
            for new in rows {
                json.push(decision_json(new.decision)?);
            }
            let sql = format!(
                "{INSERT_DECISIONS} {} returning patient_id, id",
                crate::batch::values_list(DECISION_ROW, rows.len(), 1)
            );
            let inserted: Vec<(i64, i64)> = with_tx!(self, conn => {
                let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
                for (new, (reasons, tasks, covered)) in rows.iter().zip(&json) {
                    let decision = new.decision;
                    query = query
                        .bind(new.patient_id.0)
                        .bind(new.refill_request_id.map(|r| r.0))
                        .bind(new.clinic_date)
                        .bind(decision.outcome.as_str())
                        .bind(Json(reasons))
                        .bind(Json(tasks))
                        .bind(decision.eligible_on)
                        .bind(decision.total_daily_mme)
                        .bind(decision.policy_version.as_str())
                        .bind(new.decided_by.id.as_str())
                        .bind(new.dedupe_key.as_deref())
                        .bind(at)
                        .bind(decision.window.as_str())
                        .bind(Json(covered))
                        .bind(decision.standing);
                }
                query.fetch_all(&mut *conn).await?
            });
            ids.extend(inserted);
        }
        Ok(ids)
    }

    /// The queue rows of `news`: an upsert for each patient who needs staff today (multi-row), and for
    /// the others an update of a row that already exists for the day (found in one query; usually none).
    async fn write_queue_rows(
        &mut self,
        news: &[&NewDecision<'_>],
        decision_ids: &HashMap<i64, i64>,
        at: DateTime<Utc>,
    ) -> Result<HashMap<i64, i64>, StoreError> {
        let mut ids = HashMap::new();
        let (queued, not_due): (Vec<&NewDecision<'_>>, Vec<&NewDecision<'_>>) =
            news.iter().copied().partition(|n| n.decision.needs_staff_today());
        for rows in queued.chunks(crate::batch::ROWS_PER_STATEMENT) {
            let sql = format!(
                "{UPSERT_QUEUE_ROWS} {} {UPSERT_QUEUE_CONFLICT} returning patient_id, id",
                crate::batch::values_list(QUEUE_ROW, rows.len(), 1)
            );
            let written: Vec<(i64, i64)> = with_tx!(self, conn => {
                let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
                for new in rows {
                    let outcome = new.decision.outcome;
                    query = query
                        .bind(new.clinic_date)
                        .bind(new.patient_id.0)
                        .bind(decision_ids[&new.patient_id.0])
                        .bind(outcome.as_str())
                        .bind(outcome_urgency(outcome))
                        .bind(new.run_out_on)
                        .bind(new.decided_by.id.as_str())
                        .bind(at);
                }
                query.fetch_all(&mut *conn).await?
            });
            ids.extend(written);
        }
        for rows in not_due.chunks(crate::batch::ROWS_PER_STATEMENT) {
            let mut dates: Vec<NaiveDate> = rows.iter().map(|n| n.clinic_date).collect();
            dates.sort_unstable();
            dates.dedup();
            let mut present: HashSet<(i64, NaiveDate)> = HashSet::new();
            for date in dates {
                let patients: Vec<i64> =
                    rows.iter().filter(|n| n.clinic_date == date).map(|n| n.patient_id.0).collect();
                let sql = format!(
                    "select patient_id from daily_queue where clinic_date = $1 and patient_id in ({})",
                    crate::batch::in_list(patients.len(), 2)
                );
                let found: Vec<i64> = with_tx!(self, conn => {
                    let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(date);
                    for patient in &patients {
                        query = query.bind(*patient);
                    }
                    query.fetch_all(&mut *conn).await?
                });
                present.extend(found.into_iter().map(|patient| (patient, date)));
            }
            for new in rows.iter().filter(|n| present.contains(&(n.patient_id.0, n.clinic_date))) {
                let outcome = new.decision.outcome;
                let id: Option<i64> = with_tx!(self, conn => {
                    sqlx::query_scalar(UPDATE_QUEUE_IF_PRESENT)
                        .bind(new.clinic_date)
                        .bind(new.patient_id.0)
                        .bind(decision_ids[&new.patient_id.0])
                        .bind(outcome.as_str())
                        .bind(outcome_urgency(outcome))
                        .bind(new.run_out_on)
                        .bind(new.decided_by.id.clone())
                        .bind(at)
                        .fetch_optional(&mut *conn)
                        .await?
                });
                if let Some(id) = id {
                    ids.insert(new.patient_id.0, id);
                }
            }
        }
        Ok(ids)
    }

    /// The exceptions of the escalating decisions in `news`: the open exceptions of those patients are
    /// found in one query; a patient with one joins it (PostgreSQL: one `UNNEST` update; SQLite: the
    /// prepared update re-bound), the others get a new one (multi-row insert). Patient id to exception id.
    async fn raise_exceptions(
        &mut self,
        news: &[&NewDecision<'_>],
        decision_ids: &HashMap<i64, i64>,
        at: DateTime<Utc>,
    ) -> Result<HashMap<i64, i64>, StoreError> {
        let escalating: Vec<&NewDecision<'_>> =
            news.iter().copied().filter(|n| n.decision.outcome >= Outcome::Escalate).collect();
        let mut ids = HashMap::with_capacity(escalating.len());
        for rows in escalating.chunks(crate::batch::ROWS_PER_STATEMENT) {
            let sql = format!(
                "select patient_id, min(id) from exceptions where status = 'open' and patient_id in ({}) \
                 group by patient_id",
                crate::batch::in_list(rows.len(), 1)
            );
            let open: Vec<(i64, i64)> = with_tx!(self, conn => {
                let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
                for new in rows {
                    query = query.bind(new.patient_id.0);
                }
                query.fetch_all(&mut *conn).await?
            });
            let open: HashMap<i64, i64> = open.into_iter().collect();
            let codes = |new: &NewDecision<'_>| {
                serde_json::to_string(&new.decision.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>())
                    .expect("reason codes serialise")
            };
            let urgency = |new: &NewDecision<'_>| {
                if new.decision.outcome == Outcome::EscalateUrgent { "urgent" } else { "routine" }
            };
            let (joining, raising): (Vec<&NewDecision<'_>>, Vec<&NewDecision<'_>>) =
                rows.iter().copied().partition(|n| open.contains_key(&n.patient_id.0));
            if !raising.is_empty() {
                let sql = format!(
                    "{INSERT_EXCEPTIONS} {} returning patient_id, id",
                    crate::batch::values_list(EXCEPTION_ROW, raising.len(), 1)
                );
                let raised: Vec<(i64, i64)> = with_tx!(self, conn => {
                    let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
                    for new in &raising {
                        query = query
                            .bind(new.patient_id.0)
                            .bind(decision_ids[&new.patient_id.0])
                            .bind(new.clinic_date)
                            .bind(urgency(new))
                            .bind(Json(json!(new.decision.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>())))
                            .bind(at)
                            .bind(new.decided_by.id.as_str())
                            .bind(at)
                            .bind(new.decision.standing);
                    }
                    query.fetch_all(&mut *conn).await?
                });
                ids.extend(raised);
            }
            if joining.is_empty() {
                continue;
            }
            match self {
                Tx::Postgres(conn) => {
                    let exception: Vec<i64> = joining.iter().map(|n| open[&n.patient_id.0]).collect();
                    let decision: Vec<i64> = joining.iter().map(|n| decision_ids[&n.patient_id.0]).collect();
                    let date: Vec<NaiveDate> = joining.iter().map(|n| n.clinic_date).collect();
                    let urgencies: Vec<&str> = joining.iter().map(|n| urgency(n)).collect();
                    let reason_codes: Vec<String> = joining.iter().map(|n| codes(n)).collect();
                    sqlx::query(JOIN_EXCEPTIONS_UNNEST)
                        .bind(exception)
                        .bind(decision)
                        .bind(date)
                        .bind(urgencies)
                        .bind(reason_codes)
                        .bind(at)
                        .execute(&mut **conn)
                        .await?;
                }
                Tx::Sqlite(conn) => {
                    for new in &joining {
                        sqlx::query(JOIN_EXCEPTION)
                            .bind(decision_ids[&new.patient_id.0])
                            .bind(new.clinic_date)
                            .bind(urgency(new))
                            .bind(Json(json!(new.decision.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>())))
                            .bind(at)
                            .bind(open[&new.patient_id.0])
                            .execute(&mut **conn)
                            .await?;
                    }
                }
            }
            ids.extend(joining.iter().map(|n| (n.patient_id.0, open[&n.patient_id.0])));
        }
        Ok(ids)
    }

    async fn raise_exception(
        &mut self,
        new: &NewDecision<'_>,
        decision_id: DecisionId,
    ) -> Result<ExceptionId, StoreError> {
        let at = now();
        let urgency = if new.decision.outcome == Outcome::EscalateUrgent { "urgent" } else { "routine" };
        let codes = Json(json!(new.decision.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>()));
        let open: Option<i64> = with_tx!(self, conn => {
            sqlx::query_scalar(
                "select id from exceptions where patient_id = $1 and status = 'open' order by id limit 1",
            )
            .bind(new.patient_id.0)
            .fetch_optional(&mut *conn)
            .await?
        });
        let id = match open {
            Some(id) => {
                with_tx!(self, conn => {
                    sqlx::query(JOIN_EXCEPTION)
                        .bind(decision_id.0)
                        .bind(new.clinic_date)
                        .bind(urgency)
                        .bind(codes.clone())
                        .bind(at)
                        .bind(id)
                        .execute(&mut *conn)
                        .await?;
                });
                id
            }
            None => with_tx!(self, conn => {
                sqlx::query_scalar(INSERT_EXCEPTION)
                    .bind(new.patient_id.0)
                    .bind(decision_id.0)
                    .bind(new.clinic_date)
                    .bind(urgency)
                    .bind(codes.clone())
                    .bind(at)
                    .bind(new.decided_by.id.clone())
                    .bind(new.decision.standing)
                    .fetch_one(&mut *conn)
                    .await?
            }),
        };
        Ok(ExceptionId(id))
    }
}
