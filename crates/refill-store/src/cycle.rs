//! The records of the refill cycle (refill-cycle.md): refill requests as events, physician decisions
//! that stand for a cycle, the notes staff send with a patient to a physician, and drug tests from
//! collection to physician review. Each write appends its audit event in the caller's transaction.

use chrono::{DateTime, NaiveDate, Utc};
use refill_rules::{CoveredReason, PatientId, PhysicianChoice, RequestKind, UdsKind, UdsResult};
use serde_json::json;
use sqlx::types::Json;

use crate::audit::AuditEvent;
use crate::codec::{self, corrupt};
use crate::model::{Actor, DecisionId, ExceptionId, RefillRequestId, now};
use crate::store::{with_read_pool, with_tx};
use crate::{Store, StoreError, Tx};

/// A refill request to record: what happened, when, and how it reached the clinic.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRefillRequest {
    pub requested_on: NaiveDate,
    pub kind: RequestKind,
    /// `staff` (phone, fax, desk), `api`, `import`.
    pub channel: String,
    /// What the patient or pharmacy said, as staff wrote it.
    pub note: Option<String>,
}

/// A recorded refill request.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RefillRequestRecord {
    pub id: i64,
    pub patient_id: i64,
    pub requested_on: NaiveDate,
    pub kind: String,
    pub status: String,
    pub channel: String,
    pub note: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// A physician decision to store when an exception is signed.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPhysicianDecision {
    pub patient_id: PatientId,
    pub exception_id: ExceptionId,
    pub decision_id: DecisionId,
    pub choice: PhysicianChoice,
    pub covered: Vec<CoveredReason>,
    pub bridge_quantity: Option<f64>,
    pub review_by: Option<NaiveDate>,
    pub latest_fill_seen: Option<NaiveDate>,
    pub signed_on: NaiveDate,
}

/// A stored physician decision with what the physician wrote (from the signed exception), for the
/// screens that show it to staff.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PhysicianDecisionRecord {
    pub id: i64,
    pub patient_id: i64,
    pub exception_id: i64,
    pub choice: String,
    pub bridge_days: Option<i64>,
    pub bridge_quantity: Option<f64>,
    pub review_by: Option<NaiveDate>,
    pub signed_by: String,
    pub signed_on: NaiveDate,
    pub signed_at: DateTime<Utc>,
    /// The exception's rationale (screens mask it like the facts it may quote).
    pub rationale: Option<String>,
    pub resolution: Option<String>,
}

/// A note staff wrote when sending a patient to a physician.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ExceptionNote {
    pub id: i64,
    pub exception_id: i64,
    pub author: String,
    pub note: String,
    pub created_at: DateTime<Utc>,
}

/// Where a drug test is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UdsTestStatus {
    Collected,
    Presumptive,
    ConfirmatorySent,
    Confirmed,
    Reviewed,
}

impl UdsTestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UdsTestStatus::Collected => "collected",
            UdsTestStatus::Presumptive => "presumptive",
            UdsTestStatus::ConfirmatorySent => "confirmatory_sent",
            UdsTestStatus::Confirmed => "confirmed",
            UdsTestStatus::Reviewed => "reviewed",
        }
    }

    pub fn parse(text: &str) -> Option<UdsTestStatus> {
        [
            UdsTestStatus::Collected,
            UdsTestStatus::Presumptive,
            UdsTestStatus::ConfirmatorySent,
            UdsTestStatus::Confirmed,
            UdsTestStatus::Reviewed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A drug test as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct UdsTestRecord {
    pub id: i64,
    pub patient_id: i64,
    pub kind: UdsKind,
    pub collected_on: NaiveDate,
    pub status: UdsTestStatus,
    pub confirmatory_sent_on: Option<NaiveDate>,
    pub reviewed_on: Option<NaiveDate>,
    pub reviewed_by: Option<String>,
    pub version: i64,
}

#[derive(sqlx::FromRow)]
struct UdsTestRow {
    id: i64,
    patient_id: i64,
    kind: String,
    collected_on: NaiveDate,
    status: String,
    confirmatory_sent_on: Option<NaiveDate>,
    reviewed_on: Option<NaiveDate>,
    reviewed_by: Option<String>,
    version: i64,
}

impl UdsTestRow {
    fn into_record(self) -> Result<UdsTestRecord, StoreError> {
        Ok(UdsTestRecord {
            id: self.id,
            patient_id: self.patient_id,
            kind: codec::parse_uds_kind(&self.kind)?,
            collected_on: self.collected_on,
            status: UdsTestStatus::parse(&self.status).ok_or_else(|| corrupt("drug test status", &self.status))?,
            confirmatory_sent_on: self.confirmatory_sent_on,
            reviewed_on: self.reviewed_on,
            reviewed_by: self.reviewed_by,
            version: self.version,
        })
    }
}

const UDS_TEST_COLUMNS: &str =
    "id, patient_id, kind, collected_on, status, confirmatory_sent_on, reviewed_on, reviewed_by, version";

const INSERT_REQUEST: &str = r#"
insert into refill_requests (patient_id, requested_on, kind, regimen, status, channel, note, created_by, version,
    created_at, updated_at)
values ($1, $2, $3, null, 'open', $4, $5, $6, 1, $7, $7)
returning id"#;

const INSERT_PHYSICIAN_DECISION: &str = r#"
insert into physician_decisions (patient_id, exception_id, decision_id, choice, covered, bridge_days, bridge_quantity,
    review_by, latest_fill_seen, signed_by, signed_on, signed_at)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
returning id"#;

const SELECT_PHYSICIAN_DECISION: &str = r#"
select pd.id, pd.patient_id, pd.exception_id, pd.choice, pd.bridge_days, pd.bridge_quantity, pd.review_by,
    pd.signed_by, pd.signed_on, pd.signed_at, e.rationale, e.resolution
from physician_decisions pd join exceptions e on e.id = pd.exception_id"#;

impl Store {
    /// Record a refill request (a patient called, a pharmacy faxed, the EHR sent an order), with its
    /// audit event, in the caller's transaction.
    ///
    /// # Errors
    /// `Invalid` for a note over 2,000 characters; database errors.
    pub async fn record_refill_request_in(
        &self,
        tx: &mut Tx,
        patient_id: PatientId,
        request: &NewRefillRequest,
        actor: &Actor,
    ) -> Result<RefillRequestId, StoreError> {
        let note = request.note.as_deref().map(str::trim).filter(|n| !n.is_empty());
        if note.is_some_and(|n| n.chars().count() > 2000) {
            return Err(StoreError::Invalid("request note: at most 2,000 characters".into()));
        }
        let at = now();
        let id: i64 = with_tx!(tx, conn => {
            sqlx::query_scalar(INSERT_REQUEST)
                .bind(patient_id.0)
                .bind(request.requested_on)
                .bind(codec::request_kind_name(request.kind))
                .bind(request.channel.clone())
                .bind(note.map(str::to_string))
                .bind(actor.id.clone())
                .bind(at)
                .fetch_one(&mut *conn)
                .await?
        });
        let event = AuditEvent::new(actor, "refill_request.record", "refill_request")
            .resource_id(id.to_string())
            .patient(patient_id)
            .after(json!({
                "requested_on": request.requested_on,
                "kind": codec::request_kind_name(request.kind),
                "channel": request.channel,
            }));
        self.append_audit(tx, &event).await?;
        Ok(RefillRequestId(id))
    }

    /// A patient's refill requests, newest first.
    pub async fn refill_requests_for_patient(
        &self,
        patient_id: PatientId,
        limit: i64,
    ) -> Result<Vec<RefillRequestRecord>, StoreError> {
        Ok(with_read_pool!(self, pool => {
            sqlx::query_as(
                "select id, patient_id, requested_on, kind, status, channel, note, created_by, created_at \
                 from refill_requests where patient_id = $1 order by requested_on desc, id desc limit $2",
            )
            .bind(patient_id.0)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Store a physician's decision for the cycle, with its audit event, in the signing transaction.
    ///
    /// # Errors
    /// `Invalid` for a review-by date before the signing date or a bridge without days; database errors.
    pub async fn record_physician_decision_in(
        &self,
        tx: &mut Tx,
        decision: &NewPhysicianDecision,
        signer: &Actor,
    ) -> Result<i64, StoreError> {
        if decision.review_by.is_some_and(|d| d < decision.signed_on) {
            return Err(StoreError::Invalid("the review-by date is before today".into()));
        }
        if let PhysicianChoice::Bridge { days } = decision.choice
            && !(1..=90).contains(&days)
        {
            return Err(StoreError::Invalid("a bridge is 1 to 90 days".into()));
        }
        let (choice, bridge_days) = codec::physician_choice_name(decision.choice);
        let at = now();
        let id: i64 = with_tx!(tx, conn => {
            sqlx::query_scalar(INSERT_PHYSICIAN_DECISION)
                .bind(decision.patient_id.0)
                .bind(decision.exception_id.0)
                .bind(decision.decision_id.0)
                .bind(choice)
                .bind(Json(codec::covered_to_json(&decision.covered)))
                .bind(bridge_days)
                .bind(decision.bridge_quantity)
                .bind(decision.review_by)
                .bind(decision.latest_fill_seen)
                .bind(signer.id.clone())
                .bind(decision.signed_on)
                .bind(at)
                .fetch_one(&mut *conn)
                .await?
        });
        let covered: Vec<&str> = decision.covered.iter().map(|c| c.code.as_str()).collect();
        let event = AuditEvent::new(signer, "physician_decision.record", "physician_decision")
            .resource_id(id.to_string())
            .patient(decision.patient_id)
            .after(json!({
                "exception_id": decision.exception_id.0,
                "choice": choice,
                "bridge_days": bridge_days,
                "bridge_quantity": decision.bridge_quantity,
                "review_by": decision.review_by,
                "covered": covered,
            }));
        self.append_audit(tx, &event).await?;
        Ok(id)
    }

    /// A stored physician decision by id.
    pub async fn physician_decision(&self, id: i64) -> Result<Option<PhysicianDecisionRecord>, StoreError> {
        let sql = format!("{SELECT_PHYSICIAN_DECISION} where pd.id = $1");
        Ok(with_read_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?
        }))
    }

    /// Several stored physician decisions by id, in one query (a queue page's standing decisions).
    pub async fn physician_decisions(&self, ids: &[i64]) -> Result<Vec<PhysicianDecisionRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = Json(json!(ids));
        let filter = match self.backend() {
            crate::Backend::Sqlite => "pd.id in (select value from json_each($1))",
            crate::Backend::Postgres => "pd.id in (select jsonb_array_elements_text($1)::bigint)",
        };
        let sql = format!("{SELECT_PHYSICIAN_DECISION} where {filter} order by pd.id");
        Ok(with_read_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(ids).fetch_all(pool).await?
        }))
    }

    /// Keep what staff wrote when sending a patient to a physician, on the exception, with its audit
    /// event (the note's text stays out of the audit trail's detail: it may quote clinical facts).
    ///
    /// # Errors
    /// `Invalid` for an empty note or one over 2,000 characters; database errors.
    pub async fn add_exception_note_in(
        &self,
        tx: &mut Tx,
        exception_id: ExceptionId,
        patient_id: PatientId,
        note: &str,
        author: &Actor,
    ) -> Result<i64, StoreError> {
        let note = note.trim();
        if note.is_empty() || note.chars().count() > 2000 {
            return Err(StoreError::Invalid("a note to the physician is 1 to 2,000 characters".into()));
        }
        let at = now();
        let id: i64 = with_tx!(tx, conn => {
            sqlx::query_scalar(
                "insert into exception_notes (exception_id, patient_id, author, note, created_at) \
                 values ($1, $2, $3, $4, $5) returning id",
            )
            .bind(exception_id.0)
            .bind(patient_id.0)
            .bind(author.id.clone())
            .bind(note.to_string())
            .bind(at)
            .fetch_one(&mut *conn)
            .await?
        });
        let event = AuditEvent::new(author, "exception.note", "exception")
            .resource_id(exception_id.0.to_string())
            .patient(patient_id)
            .detail(json!({ "note_id": id }));
        self.append_audit(tx, &event).await?;
        Ok(id)
    }

    /// The notes on an exception, oldest first.
    pub async fn exception_notes(&self, exception_id: ExceptionId) -> Result<Vec<ExceptionNote>, StoreError> {
        Ok(with_read_pool!(self, pool => {
            sqlx::query_as(
                "select id, exception_id, author, note, created_at from exception_notes \
                 where exception_id = $1 order by id",
            )
            .bind(exception_id.0)
            .fetch_all(pool)
            .await?
        }))
    }

    /// A drug test collected: the test row, the scheduled draw or for-cause order it fulfils marked
    /// collected, and the audit event. The caller enqueues the next draw.
    ///
    /// # Errors
    /// `Invalid` for a collection date in the future of `today`; database errors.
    pub async fn collect_uds_in(
        &self,
        tx: &mut Tx,
        patient_id: PatientId,
        kind: UdsKind,
        collected_on: NaiveDate,
        today: NaiveDate,
        actor: &Actor,
    ) -> Result<i64, StoreError> {
        if collected_on > today {
            return Err(StoreError::Invalid(format!("collection date {collected_on} is after today")));
        }
        let at = now();
        let kind_name = codec::uds_kind_name(kind);
        // The open order of that kind due first: the collection fulfils it.
        let order: Option<i64> = with_tx!(tx, conn => {
            sqlx::query_scalar(
                "select id from uds_schedule where patient_id = $1 and kind = $2 and collected_on is null \
                 order by due_on, id limit 1",
            )
            .bind(patient_id.0)
            .bind(kind_name)
            .fetch_optional(&mut *conn)
            .await?
        });
        if let Some(order) = order {
            with_tx!(tx, conn => {
                sqlx::query("update uds_schedule set collected_on = $1 where id = $2")
                    .bind(collected_on)
                    .bind(order)
                    .execute(&mut *conn)
                    .await?;
            });
        }
        let id: i64 = with_tx!(tx, conn => {
            sqlx::query_scalar(
                "insert into uds_tests (patient_id, schedule_id, kind, collected_on, status, created_by, version, \
                 created_at, updated_at) values ($1, $2, $3, $4, 'collected', $5, 1, $6, $6) returning id",
            )
            .bind(patient_id.0)
            .bind(order)
            .bind(kind_name)
            .bind(collected_on)
            .bind(actor.id.clone())
            .bind(at)
            .fetch_one(&mut *conn)
            .await?
        });
        let event = AuditEvent::new(actor, "uds.collect", "uds_test")
            .resource_id(id.to_string())
            .patient(patient_id)
            .after(json!({ "kind": kind_name, "collected_on": collected_on, "schedule_id": order }));
        self.append_audit(tx, &event).await?;
        Ok(id)
    }

    /// A result for a collected test (presumptive, or the confirmatory one), read as collected on the
    /// test's date; the test moves on in its lifecycle.
    ///
    /// # Errors
    /// `NotFound`; `Invalid` when the step does not follow (a confirmatory result before the test was
    /// sent, a result for a reviewed test, a result from another patient's test); database errors.
    pub async fn record_uds_test_result_in(
        &self,
        tx: &mut Tx,
        test_id: i64,
        patient_id: PatientId,
        result: &UdsResult,
        actor: &Actor,
    ) -> Result<UdsTestRecord, StoreError> {
        let test = tx.uds_test(test_id).await?;
        if test.patient_id != patient_id.0 {
            return Err(StoreError::Invalid(format!("drug test {test_id} belongs to another patient")));
        }
        let next = match (result.confirmatory, test.status) {
            (false, UdsTestStatus::Collected) => UdsTestStatus::Presumptive,
            (true, UdsTestStatus::ConfirmatorySent | UdsTestStatus::Presumptive | UdsTestStatus::Collected) => {
                UdsTestStatus::Confirmed
            }
            (confirmatory, status) => {
                return Err(StoreError::Invalid(format!(
                    "drug test {test_id} is {}; a {} result does not follow",
                    status.as_str(),
                    if confirmatory { "confirmatory" } else { "presumptive" }
                )));
            }
        };
        let mut stored = result.clone();
        stored.collected_on = test.collected_on;
        stored.kind = test.kind;
        let result_id = tx.insert_uds_result(patient_id, &stored, None).await?;
        with_tx!(tx, conn => {
            sqlx::query("update uds_results set test_id = $1 where id = $2")
                .bind(test_id)
                .bind(result_id)
                .execute(&mut *conn)
                .await?;
        });
        let updated = tx.set_uds_test_status(&test, next, None).await?;
        let event = AuditEvent::new(actor, "uds.result", "uds_test")
            .resource_id(test_id.to_string())
            .patient(patient_id)
            .after(json!({ "status": next.as_str(), "confirmatory": result.confirmatory, "result_id": result_id }));
        self.append_audit(tx, &event).await?;
        Ok(updated)
    }

    /// The specimen of a test was sent for confirmatory (GC/LC-MS) testing.
    ///
    /// # Errors
    /// `NotFound`; `Invalid` when the test has no presumptive result yet or is already further on.
    pub async fn send_uds_for_confirmation_in(
        &self,
        tx: &mut Tx,
        test_id: i64,
        patient_id: PatientId,
        sent_on: NaiveDate,
        actor: &Actor,
    ) -> Result<UdsTestRecord, StoreError> {
        let test = tx.uds_test(test_id).await?;
        if test.patient_id != patient_id.0 || test.status != UdsTestStatus::Presumptive {
            return Err(StoreError::Invalid(format!(
                "drug test {test_id} is {}; only a test with a presumptive result is sent for confirmation",
                test.status.as_str()
            )));
        }
        let updated = tx.set_uds_test_status(&test, UdsTestStatus::ConfirmatorySent, Some(sent_on)).await?;
        let event = AuditEvent::new(actor, "uds.confirmatory_sent", "uds_test")
            .resource_id(test_id.to_string())
            .patient(patient_id)
            .after(json!({ "sent_on": sent_on }));
        self.append_audit(tx, &event).await?;
        Ok(updated)
    }

    /// A physician reviewed a test's results: they no longer escalate.
    ///
    /// # Errors
    /// `Invalid` when the reviewer is not a physician or the test has no result; `NotFound`.
    pub async fn review_uds_test_in(
        &self,
        tx: &mut Tx,
        test_id: i64,
        patient_id: PatientId,
        reviewed_on: NaiveDate,
        physician: &Actor,
    ) -> Result<UdsTestRecord, StoreError> {
        if physician.role != crate::exceptions::PHYSICIAN_ROLE {
            return Err(StoreError::Invalid("only a physician reviews drug test results".into()));
        }
        let test = tx.uds_test(test_id).await?;
        if test.patient_id != patient_id.0 || matches!(test.status, UdsTestStatus::Collected | UdsTestStatus::Reviewed)
        {
            return Err(StoreError::Invalid(format!(
                "drug test {test_id} is {}; only a test with a result is reviewed",
                test.status.as_str()
            )));
        }
        with_tx!(tx, conn => {
            sqlx::query("update uds_results set physician_reviewed_on = $1 where test_id = $2")
                .bind(reviewed_on)
                .bind(test_id)
                .execute(&mut *conn)
                .await?;
            sqlx::query("update uds_tests set reviewed_on = $1, reviewed_by = $2 where id = $3")
                .bind(reviewed_on)
                .bind(physician.id.clone())
                .bind(test_id)
                .execute(&mut *conn)
                .await?;
        });
        let updated = tx.set_uds_test_status(&test, UdsTestStatus::Reviewed, None).await?;
        let event = AuditEvent::new(physician, "uds.reviewed", "uds_test")
            .resource_id(test_id.to_string())
            .patient(patient_id)
            .after(json!({ "reviewed_on": reviewed_on }));
        self.append_audit(tx, &event).await?;
        Ok(updated)
    }

    /// Record the prescriber a new or transferred patient came from: the rules never count them as an
    /// outside prescriber, and the patient is continued while the clinic reviews the case.
    ///
    /// # Errors
    /// `NotFound`; database errors.
    pub async fn set_previous_prescriber_in(
        &self,
        tx: &mut Tx,
        patient_id: PatientId,
        previous: Option<&str>,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let changed = with_tx!(tx, conn => {
            sqlx::query("update patients set previous_prescriber = $1, version = version + 1, updated_at = $2 where id = $3")
                .bind(previous.map(str::to_string))
                .bind(now())
                .bind(patient_id.0)
                .execute(&mut *conn)
                .await?
                .rows_affected()
        });
        if changed != 1 {
            return Err(StoreError::NotFound(format!("patient {}", patient_id.0)));
        }
        let event = AuditEvent::new(actor, "patient.previous_prescriber", "patient")
            .resource_id(patient_id.0.to_string())
            .patient(patient_id)
            .after(json!({ "previous_prescriber": previous }));
        self.append_audit(tx, &event).await?;
        Ok(())
    }

    /// A patient's drug tests, newest first.
    pub async fn uds_tests_for_patient(&self, patient_id: PatientId) -> Result<Vec<UdsTestRecord>, StoreError> {
        let sql = format!(
            "select {UDS_TEST_COLUMNS} from uds_tests where patient_id = $1 order by collected_on desc, id desc"
        );
        let rows: Vec<UdsTestRow> = with_read_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(patient_id.0).fetch_all(pool).await?
        });
        rows.into_iter().map(UdsTestRow::into_record).collect()
    }
}

impl Tx {
    /// One drug test, read inside this transaction.
    pub async fn uds_test(&mut self, test_id: i64) -> Result<UdsTestRecord, StoreError> {
        let sql = format!("select {UDS_TEST_COLUMNS} from uds_tests where id = $1");
        let row: Option<UdsTestRow> = with_tx!(self, conn => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(test_id).fetch_optional(&mut *conn).await?
        });
        row.ok_or_else(|| StoreError::NotFound(format!("drug test {test_id}")))?.into_record()
    }

    /// The latest drug-test collection date of a patient (a collected test may have no result yet).
    pub async fn last_uds_collection(&mut self, patient_id: PatientId) -> Result<Option<NaiveDate>, StoreError> {
        Ok(with_tx!(self, conn => {
            sqlx::query_scalar("select max(collected_on) from uds_tests where patient_id = $1")
                .bind(patient_id.0)
                .fetch_one(&mut *conn)
                .await?
        }))
    }

    async fn set_uds_test_status(
        &mut self,
        test: &UdsTestRecord,
        status: UdsTestStatus,
        sent_on: Option<NaiveDate>,
    ) -> Result<UdsTestRecord, StoreError> {
        let at = now();
        let changed = with_tx!(self, conn => {
            sqlx::query(
                "update uds_tests set status = $1, confirmatory_sent_on = coalesce($2, confirmatory_sent_on), \
                 version = version + 1, updated_at = $3 where id = $4 and version = $5",
            )
            .bind(status.as_str())
            .bind(sent_on)
            .bind(at)
            .bind(test.id)
            .bind(test.version)
            .execute(&mut *conn)
            .await?
            .rows_affected()
        });
        if changed != 1 {
            return Err(StoreError::Conflict(format!("drug test {} changed while it was being updated", test.id)));
        }
        self.uds_test(test.id).await
    }
}

impl Store {
    /// A patient's active orders the engine does not recognise as an opioid (label, why), for the
    /// patient page: not counted in the MME, and said so.
    pub async fn unrecognised_orders(&self, patient_id: PatientId) -> Result<Vec<(String, String)>, StoreError> {
        Ok(with_read_pool!(self, pool => {
            sqlx::query_as(
                "select label, reason from unrecognised_orders where patient_id = $1 and active order by id",
            )
            .bind(patient_id.0)
            .fetch_all(pool)
            .await?
        }))
    }
}
