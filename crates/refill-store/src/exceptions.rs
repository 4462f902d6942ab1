//! Exceptions for physician review: listing them, and resolving one as a signed physician decision
//! with a written rationale (and a safety attestation for an abrupt stop). Exceptions are never
//! deleted; the resolution is recorded on the row and in the audit trail.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use refill_rules::PatientId;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::types::Json;

use crate::audit::AuditEvent;
use crate::codec::corrupt;
use crate::model::{Actor, DecisionId, ExceptionId, now};
use crate::store::{with_read_pool, with_tx};
use crate::{Store, StoreError, Tx};

/// The role an actor must have to resolve an exception.
pub const PHYSICIAN_ROLE: &str = "physician";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExceptionStatus {
    Open,
    Resolved,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExceptionUrgency {
    Routine,
    Urgent,
}

/// What the physician decided. The engine never stops therapy; only `StopTherapy`, chosen by a
/// physician with a rationale and a safety attestation, does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// Continue the regimen as prescribed: the refill may be released.
    Continue,
    /// Continue with changes the physician writes in the rationale (dose, interval, monitoring).
    ContinueWithChanges,
    /// A bridge supply (days, quantity) while the case is reviewed, standing until a review-by date.
    Bridge,
    /// Keep the refill on hold pending the named follow-up.
    Hold,
    /// Start or adjust a taper plan (a gradual reduction, recorded as a plan).
    Taper,
    /// Refer (pain specialist, addiction medicine, emergency care).
    Refer,
    /// Stop opioid therapy: needs a safety attestation.
    StopTherapy,
}

impl Resolution {
    pub const ALL: [Resolution; 7] = [
        Resolution::Continue,
        Resolution::ContinueWithChanges,
        Resolution::Bridge,
        Resolution::Hold,
        Resolution::Taper,
        Resolution::Refer,
        Resolution::StopTherapy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Continue => "continue",
            Resolution::ContinueWithChanges => "continue_with_changes",
            Resolution::Bridge => "bridge",
            Resolution::Hold => "hold",
            Resolution::Taper => "taper",
            Resolution::Refer => "refer",
            Resolution::StopTherapy => "stop_therapy",
        }
    }

    pub fn parse(text: &str) -> Option<Resolution> {
        Resolution::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Whether the resolution needs an explicit safety attestation.
    pub fn needs_safety_attestation(self) -> bool {
        self == Resolution::StopTherapy
    }
}

/// A physician's resolution of an exception.
#[derive(Debug, Clone, PartialEq)]
pub struct ExceptionResolution {
    pub resolution: Resolution,
    /// Required, non-empty: why.
    pub rationale: String,
    /// Required for `StopTherapy`: the physician attests the stop is safe (e.g. overdose risk
    /// outweighs withdrawal risk, withdrawal management arranged).
    pub safety_attestation: Option<String>,
}

/// A stored exception.
#[derive(Debug, Clone, PartialEq)]
pub struct ExceptionRecord {
    pub id: ExceptionId,
    pub patient_id: PatientId,
    pub decision_id: DecisionId,
    pub clinic_date: NaiveDate,
    pub status: ExceptionStatus,
    pub urgency: ExceptionUrgency,
    pub reason_codes: Vec<String>,
    pub raised_at: DateTime<Utc>,
    pub raised_by: String,
    pub resolution: Option<Resolution>,
    pub rationale: Option<String>,
    pub safety_attestation: Option<String>,
    pub signed_by: Option<String>,
    pub signed_at: Option<DateTime<Utc>>,
    /// SHA-256 (hex) of exactly what was signed.
    pub signed_content_hash: Option<String>,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
    /// The physician decision that stood when this exception was raised: what it lists is new since.
    pub follows_decision_id: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct ExceptionRow {
    id: i64,
    patient_id: i64,
    decision_id: i64,
    clinic_date: NaiveDate,
    status: String,
    urgency: String,
    reason_codes: Json<Value>,
    raised_at: DateTime<Utc>,
    raised_by: String,
    resolution: Option<String>,
    rationale: Option<String>,
    safety_attestation: Option<String>,
    signed_by: Option<String>,
    signed_at: Option<DateTime<Utc>>,
    signed_content_hash: Option<String>,
    version: i64,
    updated_at: DateTime<Utc>,
    follows_decision_id: Option<i64>,
}

impl ExceptionRow {
    fn into_record(self) -> Result<ExceptionRecord, StoreError> {
        let status = match self.status.as_str() {
            "open" => ExceptionStatus::Open,
            "resolved" => ExceptionStatus::Resolved,
            other => return Err(corrupt("exception status", other)),
        };
        let urgency = match self.urgency.as_str() {
            "routine" => ExceptionUrgency::Routine,
            "urgent" => ExceptionUrgency::Urgent,
            other => return Err(corrupt("exception urgency", other)),
        };
        let reason_codes: Vec<String> = serde_json::from_value(self.reason_codes.0)
            .map_err(|e| StoreError::Corrupt(format!("exception {} reason codes json: {e}", self.id)))?;
        let resolution =
            self.resolution.map(|r| Resolution::parse(&r).ok_or_else(|| corrupt("resolution", &r))).transpose()?;
        Ok(ExceptionRecord {
            id: ExceptionId(self.id),
            patient_id: PatientId(self.patient_id),
            decision_id: DecisionId(self.decision_id),
            clinic_date: self.clinic_date,
            status,
            urgency,
            reason_codes,
            raised_at: self.raised_at,
            raised_by: self.raised_by,
            resolution,
            rationale: self.rationale,
            safety_attestation: self.safety_attestation,
            signed_by: self.signed_by,
            signed_at: self.signed_at,
            signed_content_hash: self.signed_content_hash,
            version: self.version,
            updated_at: self.updated_at,
            follows_decision_id: self.follows_decision_id,
        })
    }
}

const EXCEPTION_COLUMNS: &str = "id, patient_id, decision_id, clinic_date, status, urgency, reason_codes, raised_at, \
     raised_by, resolution, rationale, safety_attestation, signed_by, signed_at, signed_content_hash, version, \
     updated_at, follows_decision_id";

const RESOLVE: &str = r#"
update exceptions set status = 'resolved', resolution = $1, rationale = $2, safety_attestation = $3, signed_by = $4,
    signed_at = $5, signed_content_hash = $6, version = version + 1, updated_at = $5
where id = $7 and version = $8 and status = 'open'"#;

/// The bytes a physician signs: the exception, the decision it answers, and the resolution.
fn signed_content(
    exception: &ExceptionRecord,
    resolution: &ExceptionResolution,
    signer: &Actor,
    signed_at: DateTime<Utc>,
) -> String {
    json!({
        "exception_id": exception.id.0,
        "decision_id": exception.decision_id.0,
        "patient_id": exception.patient_id.0,
        "resolution": resolution.resolution.as_str(),
        "rationale": resolution.rationale,
        "safety_attestation": resolution.safety_attestation,
        "signed_by": signer.id,
        "signed_at": signed_at.to_rfc3339_opts(SecondsFormat::Micros, true),
    })
    .to_string()
}

impl Store {
    /// Open exceptions, urgent first, then oldest first.
    pub async fn open_exceptions(&self, limit: i64, offset: i64) -> Result<Vec<ExceptionRecord>, StoreError> {
        let sql = format!(
            "select {EXCEPTION_COLUMNS} from exceptions where status = 'open' \
             order by case when urgency = 'urgent' then 0 else 1 end, raised_at, id limit $1 offset $2"
        );
        let rows: Vec<ExceptionRow> = with_read_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(limit).bind(offset).fetch_all(pool).await?
        });
        rows.into_iter().map(ExceptionRow::into_record).collect()
    }

    pub async fn count_open_exceptions(&self) -> Result<i64, StoreError> {
        Ok(with_read_pool!(self, pool => {
            sqlx::query_scalar("select count(*) from exceptions where status = 'open'").fetch_one(pool).await?
        }))
    }

    pub async fn exception(&self, exception_id: ExceptionId) -> Result<ExceptionRecord, StoreError> {
        let sql = format!("select {EXCEPTION_COLUMNS} from exceptions where id = $1");
        let row: Option<ExceptionRow> = with_read_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(exception_id.0).fetch_optional(pool).await?
        });
        row.ok_or_else(|| StoreError::NotFound(format!("exception {exception_id}")))?.into_record()
    }

    /// A patient's exceptions, newest first.
    pub async fn exceptions_for_patient(&self, patient_id: PatientId) -> Result<Vec<ExceptionRecord>, StoreError> {
        let sql = format!("select {EXCEPTION_COLUMNS} from exceptions where patient_id = $1 order by id desc");
        let rows: Vec<ExceptionRow> = with_read_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(patient_id.0).fetch_all(pool).await?
        });
        rows.into_iter().map(ExceptionRow::into_record).collect()
    }

    /// Resolve an open exception as a physician's signed decision, with its audit event, in one
    /// transaction. The loser of two physicians resolving at once gets `Conflict` naming the winner.
    ///
    /// # Errors
    /// `Invalid` when the signer is not a physician, the rationale is empty, or a stop lacks a safety
    /// attestation; `Conflict`; `NotFound`.
    pub async fn resolve_exception(
        &self,
        exception_id: ExceptionId,
        expected_version: i64,
        resolution: &ExceptionResolution,
        signer: &Actor,
    ) -> Result<ExceptionRecord, StoreError> {
        let mut tx = self.begin().await?;
        let resolved = self.resolve_exception_in(&mut tx, exception_id, expected_version, resolution, signer).await?;
        tx.commit().await?;
        Ok(resolved)
    }

    /// `resolve_exception` inside the caller's transaction, so the signed resolution commits together
    /// with what the decision changes (a taper plan, the physician's review, the re-run decision).
    ///
    /// # Errors
    /// As `resolve_exception`; on any error roll the transaction back.
    #[tracing::instrument(skip_all, fields(exception_id = exception_id.0))]
    pub async fn resolve_exception_in(
        &self,
        tx: &mut Tx,
        exception_id: ExceptionId,
        expected_version: i64,
        resolution: &ExceptionResolution,
        signer: &Actor,
    ) -> Result<ExceptionRecord, StoreError> {
        if signer.role != PHYSICIAN_ROLE {
            return Err(StoreError::Invalid("only a physician can resolve an exception".into()));
        }
        if resolution.rationale.trim().is_empty() {
            return Err(StoreError::Invalid("a written rationale is required".into()));
        }
        if resolution.resolution.needs_safety_attestation()
            && resolution.safety_attestation.as_deref().is_none_or(|a| a.trim().is_empty())
        {
            return Err(StoreError::Invalid("stopping therapy requires a safety attestation".into()));
        }
        let sql = format!("select {EXCEPTION_COLUMNS} from exceptions where id = $1");
        let read = |sql: String| sqlx::AssertSqlSafe(sql);
        let before: ExceptionRecord = {
            let row: Option<ExceptionRow> = with_tx!(tx, conn => {
                sqlx::query_as(read(sql.clone())).bind(exception_id.0).fetch_optional(&mut *conn).await?
            });
            row.ok_or_else(|| StoreError::NotFound(format!("exception {exception_id}")))?.into_record()?
        };
        let signed_at = now();
        let content = signed_content(&before, resolution, signer, signed_at);
        let hash = hex::encode(Sha256::digest(content.as_bytes()));
        let updated = with_tx!(tx, conn => {
            sqlx::query(RESOLVE)
                .bind(resolution.resolution.as_str())
                .bind(resolution.rationale.clone())
                .bind(resolution.safety_attestation.clone())
                .bind(signer.id.clone())
                .bind(signed_at)
                .bind(hash.clone())
                .bind(exception_id.0)
                .bind(expected_version)
                .execute(&mut *conn)
                .await?
                .rows_affected()
        });
        if updated == 0 {
            // Read again: on PostgreSQL the winner may have committed after `before` was read.
            let row: Option<ExceptionRow> = with_tx!(tx, conn => {
                sqlx::query_as(read(sql.clone())).bind(exception_id.0).fetch_optional(&mut *conn).await?
            });
            let current =
                row.ok_or_else(|| StoreError::NotFound(format!("exception {exception_id}")))?.into_record()?;
            return Err(match (&current.signed_by, current.resolution) {
                (Some(signer), Some(resolution)) => StoreError::Conflict(format!(
                    "exception {exception_id} was already resolved by {signer} ({})",
                    resolution.as_str()
                )),
                _ => StoreError::Conflict(format!(
                    "exception {exception_id} changed since version {expected_version} (now {})",
                    current.version
                )),
            });
        }
        let event = AuditEvent::new(signer, "exception.resolve", "exception")
            .resource_id(exception_id.to_string())
            .patient(before.patient_id)
            .reason(resolution.rationale.clone())
            .before(json!({ "status": "open", "version": before.version }))
            .after(json!({
                "status": "resolved",
                "resolution": resolution.resolution.as_str(),
                "safety_attestation": resolution.safety_attestation,
                "signed_content_hash": hash,
                "signed_at": signed_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            }));
        self.append_audit(tx, &event).await?;
        let row: Option<ExceptionRow> = with_tx!(tx, conn => {
            sqlx::query_as(read(sql.clone())).bind(exception_id.0).fetch_optional(&mut *conn).await?
        });
        row.ok_or_else(|| StoreError::NotFound(format!("exception {exception_id}")))?.into_record()
    }
}
