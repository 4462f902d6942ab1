//! Patients and the prescriber roster: create, upsert by external id (imports), read, and staff edits
//! under optimistic versioning.

use chrono::{DateTime, NaiveDate, Utc};
use refill_rules::{ClinicFacts, PatientId, PrescriberId, RiskTier, Sex};
use serde_json::json;

use crate::audit::AuditEvent;
use crate::codec::{self, corrupt};
use crate::model::{Actor, now};
use crate::store::{with_read_pool, with_tx};
use crate::{Store, StoreError, Tx};

pub use refill_rules::ContactPreference;

/// Everything about a patient that an import or a staff edit sets.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientDetails {
    /// The source system's id (FHIR Patient id or CSV key); re-imports match on it.
    pub external_id: String,
    pub mrn: Option<String>,
    pub given_name: String,
    pub family_name: String,
    pub birth_date: Option<NaiveDate>,
    pub sex: Sex,
    pub risk_tier: RiskTier,
    pub prescriber_of_record: Option<PrescriberId>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// The patient agreed to receive email.
    pub email_consent: bool,
    pub contact_preference: ContactPreference,
    /// The record holds 42 CFR Part 2 information.
    pub part2: bool,
    pub active: bool,
}

impl PatientDetails {
    /// A minimal active patient (tests, demo builders): moderate risk, unknown sex, no contact details.
    pub fn new(external_id: impl Into<String>, given_name: impl Into<String>, family_name: impl Into<String>) -> Self {
        PatientDetails {
            external_id: external_id.into(),
            mrn: None,
            given_name: given_name.into(),
            family_name: family_name.into(),
            birth_date: None,
            sex: Sex::Unknown,
            risk_tier: RiskTier::Moderate,
            prescriber_of_record: None,
            email: None,
            phone: None,
            email_consent: false,
            contact_preference: ContactPreference::None,
            part2: false,
            active: true,
        }
    }

    /// The audit form of the details (before/after of an edit).
    fn to_audit_json(&self) -> serde_json::Value {
        json!({
            "external_id": self.external_id,
            "mrn": self.mrn,
            "given_name": self.given_name,
            "family_name": self.family_name,
            "birth_date": self.birth_date,
            "sex": codec::sex_name(self.sex),
            "risk_tier": codec::risk_tier_name(self.risk_tier),
            "prescriber_of_record": self.prescriber_of_record.as_ref().map(|p| p.0.clone()),
            "email": self.email,
            "phone": self.phone,
            "email_consent": self.email_consent,
            "contact_preference": self.contact_preference.as_str(),
            "part2": self.part2,
            "active": self.active,
        })
    }
}

/// A stored patient.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientRecord {
    pub id: PatientId,
    pub details: PatientDetails,
    /// Optimistic concurrency version: pass it back to edit; bumped by every change.
    pub version: i64,
    /// Who made the latest change (actor id).
    pub updated_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Upserted {
    Inserted,
    Updated,
    Unchanged,
}

/// A prescriber on (or off) the clinic roster.
#[derive(Debug, Clone, PartialEq)]
pub struct Prescriber {
    pub id: PrescriberId,
    pub display_name: String,
    /// `physician`, `nurse_practitioner`, `physician_assistant` or `other`.
    pub role: String,
    pub on_roster: bool,
    pub active: bool,
}

#[derive(sqlx::FromRow)]
struct PatientRow {
    id: i64,
    external_id: String,
    mrn: Option<String>,
    given_name: String,
    family_name: String,
    birth_date: Option<NaiveDate>,
    sex: String,
    risk_tier: String,
    prescriber_of_record: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    email_consent: bool,
    contact_preference: String,
    part2: bool,
    active: bool,
    version: i64,
    updated_by: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl PatientRow {
    fn into_record(self) -> Result<PatientRecord, StoreError> {
        Ok(PatientRecord {
            id: PatientId(self.id),
            details: PatientDetails {
                external_id: self.external_id,
                mrn: self.mrn,
                given_name: self.given_name,
                family_name: self.family_name,
                birth_date: self.birth_date,
                sex: codec::parse_sex(&self.sex)?,
                risk_tier: codec::parse_risk_tier(&self.risk_tier)?,
                prescriber_of_record: self.prescriber_of_record.map(PrescriberId),
                email: self.email,
                phone: self.phone,
                email_consent: self.email_consent,
                contact_preference: ContactPreference::parse(&self.contact_preference)
                    .ok_or_else(|| corrupt("contact preference", &self.contact_preference))?,
                part2: self.part2,
                active: self.active,
            },
            version: self.version,
            updated_by: self.updated_by,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

const PATIENT_COLUMNS: &str = "id, external_id, mrn, given_name, family_name, birth_date, sex, risk_tier, \
     prescriber_of_record, email, phone, email_consent, contact_preference, part2, active, version, updated_by, \
     created_at, updated_at";

const INSERT_PATIENT: &str = r#"
insert into patients (external_id, mrn, given_name, family_name, birth_date, sex, risk_tier, prescriber_of_record,
    email, phone, email_consent, contact_preference, part2, active, version, updated_by, created_at, updated_at)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 1, $15, $16, $16)
returning id"#;

// The version check in the where clause is the optimistic lock: zero rows updated means someone else
// changed the patient first.
const UPDATE_PATIENT: &str = r#"
update patients set external_id = $1, mrn = $2, given_name = $3, family_name = $4, birth_date = $5, sex = $6,
    risk_tier = $7, prescriber_of_record = $8, email = $9, phone = $10, email_consent = $11,
    contact_preference = $12, part2 = $13, active = $14, version = version + 1, updated_by = $15, updated_at = $16
where id = $17 and version = $18"#;

const BUMP_PATIENT_VERSION: &str = r#"
update patients set version = version + 1, updated_by = $1, updated_at = $2 where id = $3 and version = $4"#;

const UPSERT_PRESCRIBER: &str = r#"
insert into prescribers (id, display_name, role, on_roster, active, created_at, updated_at)
values ($1, $2, $3, $4, $5, $6, $6)
on conflict (id) do update set display_name = excluded.display_name, role = excluded.role,
    on_roster = excluded.on_roster, active = excluded.active, updated_at = excluded.updated_at"#;

#[derive(sqlx::FromRow)]
struct PrescriberRow {
    id: String,
    display_name: String,
    role: String,
    on_roster: bool,
    active: bool,
}

macro_rules! bind_details {
    ($query:expr, $details:expr) => {{
        let d = $details;
        $query
            .bind(d.external_id.clone())
            .bind(d.mrn.clone())
            .bind(d.given_name.clone())
            .bind(d.family_name.clone())
            .bind(d.birth_date)
            .bind(codec::sex_name(d.sex))
            .bind(codec::risk_tier_name(d.risk_tier))
            .bind(d.prescriber_of_record.as_ref().map(|p| p.0.clone()))
            .bind(d.email.clone())
            .bind(d.phone.clone())
            .bind(d.email_consent)
            .bind(d.contact_preference.as_str())
            .bind(d.part2)
            .bind(d.active)
    }};
}

impl Tx {
    /// Insert a new patient. No audit event: the caller records one with its own context.
    ///
    /// # Errors
    /// `Duplicate` when the external id or MRN exists already.
    #[tracing::instrument(skip_all)]
    pub async fn insert_patient(&mut self, details: &PatientDetails, actor: &Actor) -> Result<PatientId, StoreError> {
        let at = now();
        let id: i64 = with_tx!(self, conn => {
            bind_details!(sqlx::query_scalar(INSERT_PATIENT), details)
                .bind(actor.id.clone())
                .bind(at)
                .fetch_one(&mut *conn)
                .await?
        });
        Ok(PatientId(id))
    }

    /// Insert or update a patient by external id. An identical re-import changes nothing (the version
    /// stays), so importing the same file twice is a no-op.
    #[tracing::instrument(skip_all)]
    pub async fn upsert_patient(
        &mut self,
        details: &PatientDetails,
        actor: &Actor,
    ) -> Result<(PatientId, Upserted), StoreError> {
        match self.patient_by_external_id(&details.external_id).await? {
            None => Ok((self.insert_patient(details, actor).await?, Upserted::Inserted)),
            Some(existing) if existing.details == *details => Ok((existing.id, Upserted::Unchanged)),
            Some(existing) => {
                self.update_patient_details(existing.id, existing.version, details, actor).await?;
                Ok((existing.id, Upserted::Updated))
            }
        }
    }

    /// Read a patient inside this transaction (sees the transaction's own writes).
    pub async fn patient(&mut self, patient_id: PatientId) -> Result<PatientRecord, StoreError> {
        let sql = format!("select {PATIENT_COLUMNS} from patients where id = $1");
        let row: Option<PatientRow> = with_tx!(self, conn => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(patient_id.0).fetch_optional(&mut *conn).await?
        });
        row.ok_or_else(|| StoreError::NotFound(format!("patient {}", patient_id.0)))?.into_record()
    }

    pub async fn patient_by_external_id(&mut self, external_id: &str) -> Result<Option<PatientRecord>, StoreError> {
        let sql = format!("select {PATIENT_COLUMNS} from patients where external_id = $1");
        let row: Option<PatientRow> = with_tx!(self, conn => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(external_id.to_string()).fetch_optional(&mut *conn).await?
        });
        row.map(PatientRow::into_record).transpose()
    }

    /// Replace a patient's details if `expected_version` is current; bumps the version. No audit event
    /// (see `Store::edit_patient` for the audited staff edit).
    ///
    /// # Errors
    /// `Conflict` naming who changed the patient since `expected_version`; `NotFound`.
    pub async fn update_patient_details(
        &mut self,
        patient_id: PatientId,
        expected_version: i64,
        details: &PatientDetails,
        actor: &Actor,
    ) -> Result<i64, StoreError> {
        let at = now();
        let updated = with_tx!(self, conn => {
            bind_details!(sqlx::query(UPDATE_PATIENT), details)
                .bind(actor.id.clone())
                .bind(at)
                .bind(patient_id.0)
                .bind(expected_version)
                .execute(&mut *conn)
                .await?
                .rows_affected()
        });
        if updated == 0 {
            return Err(self.patient_conflict(patient_id, expected_version).await);
        }
        Ok(expected_version + 1)
    }

    /// Claim the patient for a change: bump its version if `expected_version` is current. Two staff
    /// acting on the same patient at once cannot both pass this point.
    ///
    /// # Errors
    /// `Conflict` naming who changed the patient since `expected_version`; `NotFound`.
    pub async fn bump_patient_version(
        &mut self,
        patient_id: PatientId,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<i64, StoreError> {
        let at = now();
        let updated = with_tx!(self, conn => {
            sqlx::query(BUMP_PATIENT_VERSION)
                .bind(actor.id.clone())
                .bind(at)
                .bind(patient_id.0)
                .bind(expected_version)
                .execute(&mut *conn)
                .await?
                .rows_affected()
        });
        if updated == 0 {
            return Err(self.patient_conflict(patient_id, expected_version).await);
        }
        Ok(expected_version + 1)
    }

    async fn patient_conflict(&mut self, patient_id: PatientId, expected_version: i64) -> StoreError {
        match self.patient(patient_id).await {
            Ok(current) => StoreError::Conflict(format!(
                "patient {} was changed by {} at {} (version {}, you had {})",
                patient_id.0,
                current.updated_by,
                current.updated_at.format("%Y-%m-%d %H:%M:%S UTC"),
                current.version,
                expected_version
            )),
            Err(error) => error,
        }
    }

    /// Insert or update a prescriber of the roster.
    pub async fn upsert_prescriber(&mut self, prescriber: &Prescriber) -> Result<(), StoreError> {
        let at = now();
        with_tx!(self, conn => {
            sqlx::query(UPSERT_PRESCRIBER)
                .bind(prescriber.id.0.clone())
                .bind(prescriber.display_name.clone())
                .bind(prescriber.role.clone())
                .bind(prescriber.on_roster)
                .bind(prescriber.active)
                .bind(at)
                .execute(&mut *conn)
                .await?;
        });
        Ok(())
    }
}

impl Store {
    /// Read one patient (no audit event; a page that shows it calls `record_view`).
    ///
    /// # Errors
    /// `NotFound` when there is no such patient.
    pub async fn patient(&self, patient_id: PatientId) -> Result<PatientRecord, StoreError> {
        let sql = format!("select {PATIENT_COLUMNS} from patients where id = $1");
        let row: Option<PatientRow> = with_read_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(patient_id.0).fetch_optional(pool).await?
        });
        row.ok_or_else(|| StoreError::NotFound(format!("patient {}", patient_id.0)))?.into_record()
    }

    pub async fn patient_by_external_id(&self, external_id: &str) -> Result<Option<PatientRecord>, StoreError> {
        let sql = format!("select {PATIENT_COLUMNS} from patients where external_id = $1");
        let row: Option<PatientRow> = with_read_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(external_id.to_string()).fetch_optional(pool).await?
        });
        row.map(PatientRow::into_record).transpose()
    }

    /// Patients whose name or MRN starts with `term` (case-insensitive), by family name, at most `limit`.
    pub async fn search_patients(&self, term: &str, limit: i64) -> Result<Vec<PatientRecord>, StoreError> {
        let pattern = format!("{}%", term.to_lowercase().replace(['%', '_'], ""));
        let sql = format!(
            "select {PATIENT_COLUMNS} from patients where lower(family_name) like $1 or lower(given_name) like $1 \
             or lower(mrn) like $1 order by family_name, given_name, id limit $2"
        );
        let rows: Vec<PatientRow> = with_read_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(pattern).bind(limit).fetch_all(pool).await?
        });
        rows.into_iter().map(PatientRow::into_record).collect()
    }

    /// The lowest and highest patient id, for splitting the population into ranges; `None` when empty.
    pub async fn patient_id_bounds(&self) -> Result<Option<(PatientId, PatientId)>, StoreError> {
        let bounds: (Option<i64>, Option<i64>) = with_read_pool!(self, pool => {
            sqlx::query_as("select min(id), max(id) from patients").fetch_one(pool).await?
        });
        Ok(match bounds {
            (Some(first), Some(last)) => Some((PatientId(first), PatientId(last))),
            _ => None,
        })
    }

    pub async fn count_patients(&self) -> Result<i64, StoreError> {
        Ok(with_read_pool!(self, pool => {
            sqlx::query_scalar("select count(*) from patients").fetch_one(pool).await?
        }))
    }

    /// Edit a patient's details as a staff action: optimistic version check, before/after audit event,
    /// one transaction.
    ///
    /// # Errors
    /// `Conflict` naming who changed the patient first; `NotFound`.
    #[tracing::instrument(skip_all, fields(patient_id = patient_id.0))]
    pub async fn edit_patient(
        &self,
        patient_id: PatientId,
        expected_version: i64,
        details: &PatientDetails,
        actor: &Actor,
        reason: Option<&str>,
    ) -> Result<PatientRecord, StoreError> {
        let mut tx = self.begin().await?;
        let before = tx.patient(patient_id).await?;
        tx.update_patient_details(patient_id, expected_version, details, actor).await?;
        let mut event = AuditEvent::new(actor, "patient.update", "patient")
            .resource_id(patient_id.0.to_string())
            .patient(patient_id)
            .before(before.details.to_audit_json())
            .after(details.to_audit_json());
        if let Some(reason) = reason {
            event = event.reason(reason);
        }
        self.append_audit(&mut tx, &event).await?;
        let after = tx.patient(patient_id).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// The prescribers of the roster (every active one marked on the roster).
    pub async fn clinic_facts(&self) -> Result<ClinicFacts, StoreError> {
        let ids: Vec<String> = with_read_pool!(self, pool => {
            sqlx::query_scalar("select id from prescribers where on_roster = true and active = true order by id")
                .fetch_all(pool)
                .await?
        });
        Ok(ClinicFacts { roster: ids.into_iter().map(PrescriberId).collect() })
    }

    pub async fn prescribers(&self) -> Result<Vec<Prescriber>, StoreError> {
        let rows: Vec<PrescriberRow> = with_read_pool!(self, pool => {
            sqlx::query_as("select id, display_name, role, on_roster, active from prescribers order by id")
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| Prescriber {
                id: PrescriberId(r.id),
                display_name: r.display_name,
                role: r.role,
                on_roster: r.on_roster,
                active: r.active,
            })
            .collect())
    }
}
