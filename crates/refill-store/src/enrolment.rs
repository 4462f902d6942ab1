//! Enrolment in the refill clinic (issue 14): a patient imported from an EHR export with no active
//! opioid order comes in `not_enrolled` and the daily run does not decide them until staff or a
//! physician enrol them; one the clinic does not take is `dismissed` (kept, never deleted). Who, when
//! and why of the latest change sit on the patient row; the audit chain (written by the use case in
//! the same transaction) keeps every change.

use chrono::{DateTime, NaiveDate, Utc};
use refill_rules::PatientId;

use crate::model::{Actor, now};
use crate::store::{with_read_pool, with_tx};
use crate::{Store, StoreError, Tx};

/// Where a patient stands with the refill clinic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Enrolment {
    /// Decided by the daily run (every patient the clinic itself recorded).
    Enrolled,
    /// Imported without an active opioid order: waiting for staff or a physician to enrol or dismiss.
    NotEnrolled,
    /// Taken off the not-enrolled list with a reason; the record stays.
    Dismissed,
}

impl Enrolment {
    pub fn as_str(self) -> &'static str {
        match self {
            Enrolment::Enrolled => "enrolled",
            Enrolment::NotEnrolled => "not_enrolled",
            Enrolment::Dismissed => "dismissed",
        }
    }

    /// # Errors
    /// `Corrupt` for a value the migration's check would refuse.
    pub fn parse(text: &str) -> Result<Enrolment, StoreError> {
        match text {
            "enrolled" => Ok(Enrolment::Enrolled),
            "not_enrolled" => Ok(Enrolment::NotEnrolled),
            "dismissed" => Ok(Enrolment::Dismissed),
            other => Err(StoreError::Corrupt(format!("patients.enrolment: unknown value {other:?}"))),
        }
    }
}

/// A patient's enrolment and its latest change.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrolmentState {
    pub status: Enrolment,
    /// Actor id of the latest change (`None` for rows from before enrolment existed).
    pub changed_by: Option<String>,
    pub changed_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    /// The patient has at least one active opioid order (a dismissal is refused then).
    pub has_active_order: bool,
    /// The patient's version (bumped by a change of enrolment).
    pub version: i64,
}

/// One row of the "Not enrolled" list.
#[derive(Debug, Clone, PartialEq)]
pub struct NotEnrolledPatient {
    pub id: PatientId,
    pub external_id: String,
    pub mrn: Option<String>,
    pub given_name: String,
    pub family_name: String,
    pub birth_date: Option<NaiveDate>,
    /// When the import brought them in.
    pub since: Option<DateTime<Utc>>,
    pub has_active_order: bool,
    pub version: i64,
}

#[derive(sqlx::FromRow)]
struct StateRow {
    enrolment: String,
    enrolment_by: Option<String>,
    enrolment_at: Option<DateTime<Utc>>,
    enrolment_reason: Option<String>,
    has_active_order: bool,
    version: i64,
}

#[derive(sqlx::FromRow)]
struct ListRow {
    id: i64,
    external_id: String,
    mrn: Option<String>,
    given_name: String,
    family_name: String,
    birth_date: Option<NaiveDate>,
    enrolment_at: Option<DateTime<Utc>>,
    has_active_order: bool,
    version: i64,
}

const HAS_ACTIVE_ORDER: &str =
    "exists (select 1 from medication_orders o where o.patient_id = p.id and o.active = true)";

fn state_sql() -> String {
    format!(
        "select p.enrolment, p.enrolment_by, p.enrolment_at, p.enrolment_reason, \
         {HAS_ACTIVE_ORDER} as has_active_order, p.version from patients p where p.id = $1"
    )
}

fn list_sql() -> String {
    format!(
        "select p.id, p.external_id, p.mrn, p.given_name, p.family_name, p.birth_date, p.enrolment_at, \
         {HAS_ACTIVE_ORDER} as has_active_order, p.version from patients p \
         where p.enrolment = 'not_enrolled' order by p.family_name, p.given_name, p.id limit $1 offset $2"
    )
}

const COUNT_NOT_ENROLLED: &str = "select count(*) from patients where enrolment = 'not_enrolled'";

// Bumps the version like every patient change, so a screen holding an older version gets a conflict.
const SET_ENROLMENT: &str = r#"
update patients set enrolment = $1, enrolment_by = $2, enrolment_at = $3, enrolment_reason = $4,
    version = version + 1, updated_by = $2, updated_at = $3
where id = $5 and version = $6"#;

impl StateRow {
    fn into_state(self) -> Result<EnrolmentState, StoreError> {
        Ok(EnrolmentState {
            status: Enrolment::parse(&self.enrolment)?,
            changed_by: self.enrolment_by,
            changed_at: self.enrolment_at,
            reason: self.enrolment_reason,
            has_active_order: self.has_active_order,
            version: self.version,
        })
    }
}

impl Store {
    /// A patient's enrolment (the patient page).
    ///
    /// # Errors
    /// `NotFound`; database errors.
    pub async fn patient_enrolment(&self, patient_id: PatientId) -> Result<EnrolmentState, StoreError> {
        let sql = state_sql();
        let row: Option<StateRow> = with_read_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(patient_id.0).fetch_optional(pool).await?
        });
        row.ok_or_else(|| StoreError::NotFound(format!("patient {}", patient_id.0)))?.into_state()
    }

    /// One page of the patients waiting to be enrolled, by name, and how many there are in all.
    ///
    /// # Errors
    /// Database errors.
    pub async fn not_enrolled_page(
        &self,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<NotEnrolledPatient>, i64), StoreError> {
        let sql = list_sql();
        let (rows, total): (Vec<ListRow>, i64) = with_read_pool!(self, pool => {
            let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(limit).bind(offset).fetch_all(pool).await?;
            let total = sqlx::query_scalar(COUNT_NOT_ENROLLED).fetch_one(pool).await?;
            (rows, total)
        });
        let patients = rows
            .into_iter()
            .map(|r| NotEnrolledPatient {
                id: PatientId(r.id),
                external_id: r.external_id,
                mrn: r.mrn,
                given_name: r.given_name,
                family_name: r.family_name,
                birth_date: r.birth_date,
                since: r.enrolment_at,
                has_active_order: r.has_active_order,
                version: r.version,
            })
            .collect();
        Ok((patients, total))
    }
}

impl Tx {
    /// A patient's enrolment as this transaction sees it.
    ///
    /// # Errors
    /// `NotFound`; database errors.
    pub async fn patient_enrolment(&mut self, patient_id: PatientId) -> Result<EnrolmentState, StoreError> {
        let sql = state_sql();
        let row: Option<StateRow> = with_tx!(self, conn => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(patient_id.0).fetch_optional(&mut *conn).await?
        });
        row.ok_or_else(|| StoreError::NotFound(format!("patient {}", patient_id.0)))?.into_state()
    }

    /// Set a patient's enrolment if `expected_version` is current; bumps the version. No audit event:
    /// the use case records one with its context in this transaction. Returns the new version.
    ///
    /// # Errors
    /// `Conflict` when the patient changed since `expected_version`; `NotFound`.
    pub async fn set_enrolment(
        &mut self,
        patient_id: PatientId,
        expected_version: i64,
        status: Enrolment,
        reason: Option<&str>,
        actor: &Actor,
    ) -> Result<i64, StoreError> {
        let at = now();
        let updated = with_tx!(self, conn => {
            sqlx::query(SET_ENROLMENT)
                .bind(status.as_str())
                .bind(actor.id.clone())
                .bind(at)
                .bind(reason.map(str::to_string))
                .bind(patient_id.0)
                .bind(expected_version)
                .execute(&mut *conn)
                .await?
                .rows_affected()
        });
        if updated == 0 {
            let current = self.patient_enrolment(patient_id).await?;
            return Err(StoreError::Conflict(format!(
                "patient {} was changed since it was shown (version {}, you had {expected_version}); reload the page",
                patient_id.0, current.version
            )));
        }
        Ok(expected_version + 1)
    }
}
