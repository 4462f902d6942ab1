//! The daily work queue: one row per patient per clinic date, most urgent first, and the staff actions
//! on it (claim, release, complete) under optimistic versioning, each audited in its transaction.

use chrono::{DateTime, NaiveDate, Utc};
use refill_rules::{Outcome, PatientId};
use serde_json::json;

use crate::audit::AuditEvent;
use crate::codec::corrupt;
use crate::model::{Actor, DecisionId, QueueItemId, now};
use crate::store::{with_read_pool, with_tx};
use crate::{Store, StoreError, Tx};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueStatus {
    Pending,
    InProgress,
    Done,
}

impl QueueStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueStatus::Pending => "pending",
            QueueStatus::InProgress => "in_progress",
            QueueStatus::Done => "done",
        }
    }

    pub fn parse(text: &str) -> Option<QueueStatus> {
        [QueueStatus::Pending, QueueStatus::InProgress, QueueStatus::Done].into_iter().find(|s| s.as_str() == text)
    }
}

/// One queue row with what the queue screen shows of the patient.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueItem {
    pub id: QueueItemId,
    pub clinic_date: NaiveDate,
    pub patient_id: PatientId,
    pub decision_id: Option<DecisionId>,
    pub outcome: Option<Outcome>,
    /// 0 (approve) .. 4 (escalate urgent).
    pub urgency: i64,
    pub run_out_on: Option<NaiveDate>,
    pub status: QueueStatus,
    /// Who is working it (actor id), while in progress.
    pub assigned_to: Option<String>,
    pub assigned_at: Option<DateTime<Utc>>,
    /// Pass it back to act on the item.
    pub version: i64,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
    pub given_name: String,
    pub family_name: String,
    pub mrn: Option<String>,
    pub birth_date: Option<NaiveDate>,
}

/// Which page of the queue to read. The order is fixed: urgency descending, then run-out date (unknown
/// first: no fill history needs a look), then patient id.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueQuery {
    pub clinic_date: NaiveDate,
    pub status: Option<QueueStatus>,
    pub min_urgency: Option<i64>,
    pub offset: i64,
    pub limit: i64,
}

impl QueueQuery {
    /// The first `limit` items of a date, every status.
    pub fn first_page(clinic_date: NaiveDate, limit: i64) -> QueueQuery {
        QueueQuery { clinic_date, status: None, min_urgency: None, offset: 0, limit }
    }

    /// The audit form of the query (a list view is one event recording the query).
    pub fn to_audit_json(&self) -> serde_json::Value {
        json!({
            "clinic_date": self.clinic_date,
            "status": self.status.map(QueueStatus::as_str),
            "min_urgency": self.min_urgency,
            "offset": self.offset,
            "limit": self.limit,
        })
    }
}

/// Counts of one clinic date's queue by status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueCounts {
    pub pending: i64,
    pub in_progress: i64,
    pub done: i64,
    /// Items at ESCALATE or above that are not done.
    pub escalated_open: i64,
}

#[derive(sqlx::FromRow)]
struct QueueRow {
    id: i64,
    clinic_date: NaiveDate,
    patient_id: i64,
    decision_id: Option<i64>,
    outcome: Option<String>,
    urgency: i64,
    run_out_on: Option<NaiveDate>,
    status: String,
    assigned_to: Option<String>,
    assigned_at: Option<DateTime<Utc>>,
    version: i64,
    updated_by: String,
    updated_at: DateTime<Utc>,
    given_name: String,
    family_name: String,
    mrn: Option<String>,
    birth_date: Option<NaiveDate>,
}

impl QueueRow {
    fn into_item(self) -> Result<QueueItem, StoreError> {
        Ok(QueueItem {
            id: QueueItemId(self.id),
            clinic_date: self.clinic_date,
            patient_id: PatientId(self.patient_id),
            decision_id: self.decision_id.map(DecisionId),
            outcome: self.outcome.map(|o| Outcome::parse(&o).ok_or_else(|| corrupt("outcome", &o))).transpose()?,
            urgency: self.urgency,
            run_out_on: self.run_out_on,
            status: QueueStatus::parse(&self.status).ok_or_else(|| corrupt("queue status", &self.status))?,
            assigned_to: self.assigned_to,
            assigned_at: self.assigned_at,
            version: self.version,
            updated_by: self.updated_by,
            updated_at: self.updated_at,
            given_name: self.given_name,
            family_name: self.family_name,
            mrn: self.mrn,
            birth_date: self.birth_date,
        })
    }
}

const QUEUE_COLUMNS: &str = "q.id, q.clinic_date, q.patient_id, q.decision_id, q.outcome, q.urgency, q.run_out_on, \
     q.status, q.assigned_to, q.assigned_at, q.version, q.updated_by, q.updated_at, p.given_name, p.family_name, \
     p.mrn, p.birth_date";

/// The queue's order (screens.md): urgent escalations first, then the day the supply runs out (unknown
/// first: no fill history needs a look), then status by urgency. Served by the index
/// daily_queue_screen (migration 0010), which sorts the same way, so the first page reads a few dozen
/// index entries whatever the size of the clinic.
pub(crate) const QUEUE_ORDER: &str = "(q.urgency >= 4) DESC, q.run_out_on NULLS FIRST, q.urgency DESC, q.patient_id";

// `$2`/`$3` are optional filters.
const QUEUE_PAGE_ROWS: &str = r#"
from daily_queue q join patients p on p.id = q.patient_id
where q.clinic_date = $1 and ($2 is null or q.status = $2) and ($3 is null or q.urgency >= $3)"#;

const CLAIM: &str = r#"
update daily_queue set status = 'in_progress', assigned_to = $1, assigned_at = $2, version = version + 1,
    updated_by = $1, updated_at = $2
where id = $3 and version = $4 and (status = 'pending' or (status = 'in_progress' and assigned_to = $1))"#;

const RELEASE: &str = r#"
update daily_queue set status = 'pending', assigned_to = null, assigned_at = null, version = version + 1,
    updated_by = $1, updated_at = $2
where id = $3 and version = $4 and status = 'in_progress' and assigned_to = $1"#;

// Completing needs either a pending item or one the actor is working; someone else's item is theirs.
const COMPLETE: &str = r#"
update daily_queue set status = 'done', version = version + 1, updated_by = $1, updated_at = $2
where id = $3 and version = $4 and (status = 'pending' or (status = 'in_progress' and assigned_to = $1))"#;

impl Store {
    /// One page of a clinic date's queue, most urgent first. No audit event: the screen records the
    /// list view with `record_view` and `QueueQuery::to_audit_json`.
    #[tracing::instrument(skip_all)]
    pub async fn queue_page(&self, query: &QueueQuery) -> Result<Vec<QueueItem>, StoreError> {
        let sql = format!("select {QUEUE_COLUMNS} {QUEUE_PAGE_ROWS} order by {QUEUE_ORDER} limit $4 offset $5");
        // PostgreSQL must know the type of a parameter used only in `is null`; the casts say it.
        let sql = match self.backend() {
            crate::Backend::Sqlite => sql,
            crate::Backend::Postgres => {
                sql.replace("$2 is null", "$2::text is null").replace("$3 is null", "$3::bigint is null")
            }
        };
        let rows: Vec<QueueRow> = with_read_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(query.clinic_date)
                .bind(query.status.map(QueueStatus::as_str))
                .bind(query.min_urgency)
                .bind(query.limit)
                .bind(query.offset)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(QueueRow::into_item).collect()
    }

    pub async fn queue_counts(&self, clinic_date: NaiveDate) -> Result<QueueCounts, StoreError> {
        let rows: Vec<(String, i64, i64)> = with_read_pool!(self, pool => {
            sqlx::query_as(
                "select status, count(*), sum(case when urgency >= 3 then 1 else 0 end) from daily_queue \
                 where clinic_date = $1 group by status",
            )
            .bind(clinic_date)
            .fetch_all(pool)
            .await?
        });
        let mut counts = QueueCounts::default();
        for (status, count, escalated) in rows {
            match QueueStatus::parse(&status).ok_or_else(|| corrupt("queue status", &status))? {
                QueueStatus::Pending => counts.pending = count,
                QueueStatus::InProgress => counts.in_progress = count,
                QueueStatus::Done => counts.done = count,
            }
            if status != "done" {
                counts.escalated_open += escalated;
            }
        }
        Ok(counts)
    }

    pub async fn queue_item(&self, item_id: QueueItemId) -> Result<QueueItem, StoreError> {
        let sql = select_queue_item();
        let row: Option<QueueRow> = with_read_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(item_id.0).fetch_optional(pool).await?
        });
        row.ok_or_else(|| StoreError::NotFound(format!("queue item {item_id}")))?.into_item()
    }

    /// Start working an item. Two staff claiming at once: one wins, the other gets `Conflict` naming
    /// who is working it.
    ///
    /// # Errors
    /// `Conflict`, `NotFound`.
    pub async fn claim_queue_item(
        &self,
        item_id: QueueItemId,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<QueueItem, StoreError> {
        self.queue_action(item_id, expected_version, actor, CLAIM, "queue.claim", None).await
    }

    /// `claim_queue_item` inside the caller's transaction, so the claim commits (or not) with the
    /// action it starts. On `Conflict` nothing was changed; roll the transaction back.
    ///
    /// # Errors
    /// `Conflict`, `NotFound`.
    #[tracing::instrument(skip_all, fields(queue_item_id = item_id.0))]
    pub async fn claim_queue_item_in(
        &self,
        tx: &mut Tx,
        item_id: QueueItemId,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<QueueItem, StoreError> {
        self.queue_action_in(tx, item_id, expected_version, actor, CLAIM, "queue.claim", None).await
    }

    /// Put an item one is working back to pending.
    pub async fn release_queue_item(
        &self,
        item_id: QueueItemId,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<QueueItem, StoreError> {
        self.queue_action(item_id, expected_version, actor, RELEASE, "queue.release", None).await
    }

    /// Mark an item done (pending, or in progress by `actor`).
    pub async fn complete_queue_item(
        &self,
        item_id: QueueItemId,
        expected_version: i64,
        actor: &Actor,
        note: Option<&str>,
    ) -> Result<QueueItem, StoreError> {
        self.queue_action(item_id, expected_version, actor, COMPLETE, "queue.complete", note).await
    }

    /// `complete_queue_item` inside the caller's transaction.
    ///
    /// # Errors
    /// `Conflict`, `NotFound`.
    #[tracing::instrument(skip_all, fields(queue_item_id = item_id.0))]
    pub async fn complete_queue_item_in(
        &self,
        tx: &mut Tx,
        item_id: QueueItemId,
        expected_version: i64,
        actor: &Actor,
        note: Option<&str>,
    ) -> Result<QueueItem, StoreError> {
        self.queue_action_in(tx, item_id, expected_version, actor, COMPLETE, "queue.complete", note).await
    }

    async fn queue_action(
        &self,
        item_id: QueueItemId,
        expected_version: i64,
        actor: &Actor,
        statement: &'static str,
        action: &str,
        note: Option<&str>,
    ) -> Result<QueueItem, StoreError> {
        let mut tx = self.begin().await?;
        let item = self.queue_action_in(&mut tx, item_id, expected_version, actor, statement, action, note).await?;
        tx.commit().await?;
        Ok(item)
    }

    #[allow(clippy::too_many_arguments)]
    async fn queue_action_in(
        &self,
        tx: &mut Tx,
        item_id: QueueItemId,
        expected_version: i64,
        actor: &Actor,
        statement: &'static str,
        action: &str,
        note: Option<&str>,
    ) -> Result<QueueItem, StoreError> {
        let before = tx.queue_item_state(item_id).await?;
        let at = now();
        let updated = with_tx!(tx, conn => {
            sqlx::query(statement)
                .bind(actor.id.clone())
                .bind(at)
                .bind(item_id.0)
                .bind(expected_version)
                .execute(&mut *conn)
                .await?
                .rows_affected()
        });
        if updated == 0 {
            // Read again: on PostgreSQL the winner may have committed after `before` was read.
            let current = tx.queue_item_state(item_id).await?;
            return Err(queue_conflict(item_id, expected_version, &current, actor));
        }
        let after = tx.queue_item_state(item_id).await?;
        let mut event = AuditEvent::new(actor, action, "queue_item")
            .resource_id(item_id.to_string())
            .patient(PatientId(before.patient_id))
            .before(json!({ "status": before.status, "assigned_to": before.assigned_to, "version": before.version }))
            .after(json!({ "status": after.status, "assigned_to": after.assigned_to, "version": after.version }));
        if let Some(note) = note {
            event = event.reason(note);
        }
        self.append_audit(tx, &event).await?;
        tx.queue_item(item_id).await
    }
}

/// One queue item by id, with the patient columns the screen shows.
fn select_queue_item() -> String {
    format!("select {QUEUE_COLUMNS} from daily_queue q join patients p on p.id = q.patient_id where q.id = $1")
}

/// The state of a queue item as read inside a transaction, for conflicts and the audit trail.
#[derive(sqlx::FromRow)]
struct QueueState {
    patient_id: i64,
    status: String,
    assigned_to: Option<String>,
    version: i64,
    updated_by: String,
    updated_at: DateTime<Utc>,
}

fn queue_conflict(item_id: QueueItemId, expected_version: i64, current: &QueueState, actor: &Actor) -> StoreError {
    if current.status == "in_progress"
        && let Some(owner) = current.assigned_to.as_deref().filter(|owner| *owner != actor.id)
    {
        return StoreError::Conflict(format!("queue item {item_id} is being worked by {owner}"));
    }
    if current.version != expected_version {
        return StoreError::Conflict(format!(
            "queue item {item_id} was changed by {} at {} (version {}, you had {expected_version})",
            current.updated_by,
            current.updated_at.format("%Y-%m-%d %H:%M:%S UTC"),
            current.version
        ));
    }
    StoreError::Conflict(format!("queue item {item_id} is {} (last changed by {})", current.status, current.updated_by))
}

impl Tx {
    /// A queue item read inside this transaction (sees the transaction's own writes: the claim, and the
    /// decision that replaced the item's outcome).
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn queue_item(&mut self, item_id: QueueItemId) -> Result<QueueItem, StoreError> {
        let sql = select_queue_item();
        let row: Option<QueueRow> = with_tx!(self, conn => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(item_id.0).fetch_optional(&mut *conn).await?
        });
        row.ok_or_else(|| StoreError::NotFound(format!("queue item {item_id}")))?.into_item()
    }

    async fn queue_item_state(&mut self, item_id: QueueItemId) -> Result<QueueState, StoreError> {
        let row: Option<QueueState> = with_tx!(self, conn => {
            sqlx::query_as(
                "select patient_id, status, assigned_to, version, updated_by, updated_at from daily_queue where id = $1",
            )
            .bind(item_id.0)
            .fetch_optional(&mut *conn)
            .await?
        });
        row.ok_or_else(|| StoreError::NotFound(format!("queue item {item_id}")))
    }
}
