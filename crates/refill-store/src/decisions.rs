//! Decisions and what follows from them: the decision row (reasons and policy version), the daily queue
//! row of the patient, the exception for physician review, and the staff and physician actions on
//! queue items and exceptions under optimistic versioning.

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
