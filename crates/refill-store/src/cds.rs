//! CDS Hooks feedback: what an EHR user did with a card, stored as received (one row per item) with
//! its audit event in the same transaction. Rows are never updated.

use chrono::{DateTime, Utc};

use crate::model::now;
use crate::store::{with_read_pool, with_tx};
use crate::{Actor, AuditEvent, Store, StoreError, Tx};

/// One feedback item of `POST /cds-services/{id}/feedback`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCdsFeedback {
    pub service_id: String,
    pub card_uuid: String,
    /// `accepted` or `overridden`.
    pub outcome: String,
    /// The ids of the suggestions taken (accepted cards).
    pub accepted_suggestions: Vec<String>,
    pub override_reason_code: Option<String>,
    pub override_reason_system: Option<String>,
    pub override_reason_display: Option<String>,
    pub user_comment: Option<String>,
    /// `outcomeTimestamp` as the EHR sent it (ISO 8601).
    pub outcome_at: String,
    /// Who sent it: the token's issuer, or `unverified` when the clinic runs without JWT verification.
    pub received_from: String,
}

/// A stored feedback item.
#[derive(Debug, Clone, PartialEq)]
pub struct CdsFeedbackRecord {
    pub id: i64,
    pub feedback: NewCdsFeedback,
    pub received_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct FeedbackRow {
    id: i64,
    service_id: String,
    card_uuid: String,
    outcome: String,
    accepted_suggestions: String,
    override_reason_code: Option<String>,
    override_reason_system: Option<String>,
    override_reason_display: Option<String>,
    user_comment: Option<String>,
    outcome_at: String,
    received_from: String,
    received_at: DateTime<Utc>,
}

const INSERT_FEEDBACK: &str = "insert into cds_feedback (service_id, card_uuid, outcome, accepted_suggestions, \
     override_reason_code, override_reason_system, override_reason_display, user_comment, outcome_at, received_from, \
     received_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) returning id";

const SELECT_FEEDBACK: &str = "select id, service_id, card_uuid, outcome, accepted_suggestions, override_reason_code, \
     override_reason_system, override_reason_display, user_comment, outcome_at, received_from, received_at \
     from cds_feedback where card_uuid = $1 order by id";

impl Store {
    /// Store the feedback items of one call with one audit event, in `tx`.
    ///
    /// # Errors
    /// `Invalid` for an outcome other than accepted or overridden; database errors.
    pub async fn record_cds_feedback(
        &self,
        tx: &mut Tx,
        items: &[NewCdsFeedback],
        actor: &Actor,
    ) -> Result<Vec<i64>, StoreError> {
        let at = now();
        let mut ids = Vec::with_capacity(items.len());
        for item in items {
            if item.outcome != "accepted" && item.outcome != "overridden" {
                return Err(StoreError::Invalid(format!(
                    "feedback outcome {:?}: expected accepted or overridden",
                    item.outcome
                )));
            }
            let suggestions = serde_json::to_string(&item.accepted_suggestions).unwrap_or_else(|_| "[]".into());
            let id: i64 = with_tx!(tx, conn => {
                sqlx::query_scalar(INSERT_FEEDBACK)
                    .bind(item.service_id.clone())
                    .bind(item.card_uuid.clone())
                    .bind(item.outcome.clone())
                    .bind(suggestions)
                    .bind(item.override_reason_code.clone())
                    .bind(item.override_reason_system.clone())
                    .bind(item.override_reason_display.clone())
                    .bind(item.user_comment.clone())
                    .bind(item.outcome_at.clone())
                    .bind(item.received_from.clone())
                    .bind(at)
                    .fetch_one(&mut *conn)
                    .await?
            });
            ids.push(id);
        }
        let event = AuditEvent::new(actor, "cds.feedback", "cds_feedback")
            .resource_id(ids.iter().map(i64::to_string).collect::<Vec<_>>().join(","))
            .detail(serde_json::json!({
                "service": items.first().map(|i| i.service_id.as_str()),
                "items": items.len(),
            }));
        self.append_audit(tx, &event).await?;
        Ok(ids)
    }

    /// The feedback stored about one card, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn cds_feedback_for_card(&self, card_uuid: &str) -> Result<Vec<CdsFeedbackRecord>, StoreError> {
        let rows: Vec<FeedbackRow> = with_read_pool!(self, pool => {
            sqlx::query_as(SELECT_FEEDBACK).bind(card_uuid.to_string()).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|row| CdsFeedbackRecord {
                id: row.id,
                feedback: NewCdsFeedback {
                    service_id: row.service_id,
                    card_uuid: row.card_uuid,
                    outcome: row.outcome,
                    accepted_suggestions: serde_json::from_str(&row.accepted_suggestions).unwrap_or_default(),
                    override_reason_code: row.override_reason_code,
                    override_reason_system: row.override_reason_system,
                    override_reason_display: row.override_reason_display,
                    user_comment: row.user_comment,
                    outcome_at: row.outcome_at,
                    received_from: row.received_from,
                },
                received_at: row.received_at,
            })
            .collect())
    }
}
