//! The bulk write path of `refill import` and `refill demo`: one file's records upserted by their
//! natural keys in one transaction, with one audit event for the file.
//!
//! Every statement is an upsert that only writes when a stored column differs
//! (`on conflict ... do update ... where ... is distinct from ...`), so importing the same data twice
//! changes no row, bumps no version and appends no audit event. References that do not resolve (an
//! order for a patient that is neither stored nor in the file) are collected for the whole file and the
//! transaction is rolled back: a bad file writes nothing.

use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDate;
use refill_rules::{
    AgreementFacts, ClinicalFlag, Fill, MedicationOrder, NaloxoneEvent, OtherMedication, PdmpReview, PhysicianReview,
    RequestKind, RiskTier, Sex, TaperState, UdsResult,
};
use serde_json::json;

use crate::audit::{AuditEvent, append};
use crate::codec;
use crate::enrolment::Enrolment;
use crate::model::{Actor, now};
use crate::store::{with_read_pool, with_tx};
use crate::{Store, StoreError, Tx};

/// A prescriber on the clinic's roster.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportPrescriber {
    pub id: String,
    pub display_name: String,
    /// `physician`, `nurse_practitioner`, `physician_assistant` or `other`.
    pub role: &'static str,
}

/// A patient keyed by the source's id.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportPatient {
    pub external_id: String,
    pub mrn: Option<String>,
    pub given_name: String,
    pub family_name: String,
    pub birth_date: Option<NaiveDate>,
    pub sex: Sex,
    /// `None`: a new patient gets `moderate`, a stored patient keeps the tier it has.
    pub risk_tier: Option<RiskTier>,
    pub prescriber_of_record: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub email_consent: bool,
    /// `email`, `phone`, `portal` or `none`.
    pub contact_preference: &'static str,
    pub part2: bool,
    /// The prescriber a new or transferred patient came from; `None` keeps what is stored (a previous
    /// prescriber staff recorded is not wiped by a source that does not carry one).
    pub previous_prescriber: Option<String>,
    /// The enrolment a NEW patient gets: `NotEnrolled` for an EHR import without an active opioid
    /// order. A stored patient keeps the enrolment it has, whatever the file says.
    pub enrolment_if_new: Enrolment,
}

/// Why an import put a new patient where it did (the row's `enrolment_reason`).
fn enrolment_reason(enrolment: Enrolment) -> Option<&'static str> {
    match enrolment {
        Enrolment::NotEnrolled => Some("imported without an active opioid order"),
        Enrolment::Enrolled | Enrolment::Dismissed => None,
    }
}

/// A medication order; `order.id` is the source's id.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportOrder {
    pub patient_key: String,
    pub active: bool,
    pub order: MedicationOrder,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImportFill {
    pub patient_key: String,
    pub source_id: String,
    pub fill: Fill,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImportUds {
    pub patient_key: String,
    pub source_id: String,
    pub result: UdsResult,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImportPdmp {
    pub patient_key: String,
    pub source_id: String,
    pub review: PdmpReview,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImportAgreement {
    pub patient_key: String,
    pub source_id: String,
    pub agreement: AgreementFacts,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImportReview {
    pub patient_key: String,
    pub source_id: String,
    pub review: PhysicianReview,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImportNaloxone {
    pub patient_key: String,
    pub source_id: String,
    pub event: NaloxoneEvent,
}

/// A clinical flag from a diagnosis at the source.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportFlag {
    pub patient_key: String,
    pub source_id: String,
    pub flag: ClinicalFlag,
    /// False when the source gave no date (`flag.recorded_on` is then the import date, kept as first
    /// stored on every re-import).
    pub dated: bool,
    /// False when the source marks the condition resolved or inactive: the stored flag stops counting.
    pub active: bool,
}

/// A benzodiazepine or opioid-use-disorder treatment at the source; inactive when stopped there.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportOtherMedication {
    pub patient_key: String,
    pub source_id: String,
    pub medication: OtherMedication,
}

/// An order the engine does not recognise as an opioid, kept to be shown (never counted); inactive when
/// stopped at the source.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportUnrecognisedOrder {
    pub patient_key: String,
    pub source_id: String,
    pub label: String,
    pub reason: String,
    pub active: bool,
}

/// A refill request recorded at the source, keyed by patient, day and kind (refill-cycle.md: requests
/// are events; the same request is not recorded twice, whichever channel recorded it first).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRefillRequest {
    pub patient_key: String,
    pub requested_on: NaiveDate,
    pub kind: RequestKind,
    /// `staff`, `api` or `import`.
    pub channel: &'static str,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImportTaperStep {
    pub step_number: u32,
    pub starts_on: NaiveDate,
    pub regimen: Vec<MedicationOrder>,
    pub total_daily_mme: Option<f64>,
}

/// A physician-authored taper plan from the source, with its steps.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportTaper {
    pub patient_key: String,
    pub source_id: String,
    pub state: TaperState,
    pub started_on: NaiveDate,
    /// The physician who authored the plan.
    pub physician: String,
    pub rationale: String,
    pub steps: Vec<ImportTaperStep>,
}

/// Everything one file holds, in any mix of kinds. Written in dependency order (prescribers, patients,
/// then what refers to patients), so one bundle may carry a patient and its orders.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportBatch {
    /// Names the file in the audit event (a file name, never patient data).
    pub source_name: String,
    /// SHA-256 of the file's bytes, recorded in the audit event.
    pub source_sha256: String,
    pub prescribers: Vec<ImportPrescriber>,
    pub patients: Vec<ImportPatient>,
    pub orders: Vec<ImportOrder>,
    pub fills: Vec<ImportFill>,
    pub uds: Vec<ImportUds>,
    pub pdmp: Vec<ImportPdmp>,
    pub agreements: Vec<ImportAgreement>,
    pub tapers: Vec<ImportTaper>,
    pub reviews: Vec<ImportReview>,
    pub naloxone: Vec<ImportNaloxone>,
    pub flags: Vec<ImportFlag>,
    pub other_medications: Vec<ImportOtherMedication>,
    pub refill_requests: Vec<ImportRefillRequest>,
    pub unrecognised_orders: Vec<ImportUnrecognisedOrder>,
}

/// Which list of an [`ImportBatch`] a record is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImportKind {
    Prescribers,
    Patients,
    Orders,
    Fills,
    Uds,
    Pdmp,
    Agreements,
    Tapers,
    Reviews,
    Naloxone,
    Flags,
    OtherMedications,
    RefillRequests,
    UnrecognisedOrders,
}

impl ImportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportKind::Prescribers => "prescribers",
            ImportKind::Patients => "patients",
            ImportKind::Orders => "orders",
            ImportKind::Fills => "fills",
            ImportKind::Uds => "uds_results",
            ImportKind::Pdmp => "pdmp_reviews",
            ImportKind::Agreements => "agreements",
            ImportKind::Tapers => "taper_plans",
            ImportKind::Reviews => "physician_reviews",
            ImportKind::Naloxone => "naloxone_events",
            ImportKind::Flags => "clinical_flags",
            ImportKind::OtherMedications => "other_medications",
            ImportKind::RefillRequests => "refill_requests",
            ImportKind::UnrecognisedOrders => "unrecognised_orders",
        }
    }
}

/// A record the store could not take: `index` is its position in the batch's list of `kind`, so the
/// caller can name the file line or FHIR resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRejection {
    pub kind: ImportKind,
    pub index: usize,
    pub field: &'static str,
    pub message: String,
}

/// Rows written (inserted or changed) and left unchanged, per kind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportCounts {
    pub written: u64,
    pub unchanged: u64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportReport {
    pub counts: Vec<(ImportKind, ImportCounts)>,
    /// Patients with at least one row written.
    pub patients_changed: usize,
    /// Sequence number of the file's audit event; `None` when nothing changed.
    pub audit_seq: Option<i64>,
}

impl ImportReport {
    pub fn written(&self) -> u64 {
        self.counts.iter().map(|(_, c)| c.written).sum()
    }

    pub fn unchanged(&self) -> u64 {
        self.counts.iter().map(|(_, c)| c.unchanged).sum()
    }
}

/// The result of importing one file: written and committed, or rejected with nothing written.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportOutcome {
    Committed(ImportReport),
    Rejected(Vec<ImportRejection>),
}

const UPSERT_PRESCRIBER: &str = r#"
insert into prescribers (id, display_name, role, on_roster, active, created_at, updated_at)
values ($1, $2, $3, true, true, $4, $4)
on conflict (id) do update set display_name = excluded.display_name, role = excluded.role, updated_at = excluded.updated_at
where prescribers.display_name is distinct from excluded.display_name or prescribers.role is distinct from excluded.role
returning id"#;

// `$7` (the tier) may be null: a new patient then gets `moderate` and a stored one keeps its tier;
// `$16` (the previous prescriber) likewise keeps what is stored when null. `$17`/`$18` (enrolment and
// its reason) are written on insert only: a re-import never changes a stored patient's enrolment.
const UPSERT_PATIENT: &str = r#"
insert into patients (external_id, mrn, given_name, family_name, birth_date, sex, risk_tier, prescriber_of_record,
    email, phone, email_consent, contact_preference, part2, previous_prescriber, active, version, updated_by, created_at,
    updated_at, enrolment, enrolment_by, enrolment_at, enrolment_reason)
values ($1, $2, $3, $4, $5, $6, coalesce($7, 'moderate'), $8, $9, $10, $11, $12, $13, $16, true, 1, $14, $15, $15,
    $17, $14, $15, $18)
on conflict (external_id) do update set mrn = excluded.mrn, given_name = excluded.given_name,
    family_name = excluded.family_name, birth_date = excluded.birth_date, sex = excluded.sex,
    risk_tier = coalesce($7, patients.risk_tier), prescriber_of_record = excluded.prescriber_of_record,
    email = excluded.email, phone = excluded.phone, email_consent = excluded.email_consent,
    contact_preference = excluded.contact_preference, part2 = excluded.part2,
    previous_prescriber = coalesce($16, patients.previous_prescriber),
    version = patients.version + 1, updated_by = excluded.updated_by, updated_at = excluded.updated_at
where patients.mrn is distinct from excluded.mrn or patients.given_name is distinct from excluded.given_name
    or patients.family_name is distinct from excluded.family_name
    or patients.birth_date is distinct from excluded.birth_date or patients.sex is distinct from excluded.sex
    or patients.risk_tier is distinct from coalesce($7, patients.risk_tier)
    or patients.prescriber_of_record is distinct from excluded.prescriber_of_record
    or patients.email is distinct from excluded.email or patients.phone is distinct from excluded.phone
    or patients.email_consent is distinct from excluded.email_consent
    or patients.contact_preference is distinct from excluded.contact_preference
    or patients.part2 is distinct from excluded.part2
    or patients.previous_prescriber is distinct from coalesce($16, patients.previous_prescriber)
returning id"#;

const UPSERT_FILL: &str = r#"
insert into fills (patient_id, source_id, filled_on, days_supply, order_source_id, quantity, created_at)
values ($1, $2, $3, $4, $5, $6, $7)
on conflict (patient_id, source_id) do update set filled_on = excluded.filled_on,
    days_supply = excluded.days_supply, order_source_id = excluded.order_source_id, quantity = excluded.quantity
where fills.filled_on is distinct from excluded.filled_on or fills.days_supply is distinct from excluded.days_supply
    or fills.order_source_id is distinct from excluded.order_source_id
    or fills.quantity is distinct from excluded.quantity
returning patient_id"#;

const UPSERT_UDS: &str = r#"
insert into uds_results (patient_id, source_id, collected_on, kind, confirmatory, analytes, physician_reviewed_on,
    confidentiality, created_at, specimen_validity)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
on conflict (patient_id, source_id) do update set collected_on = excluded.collected_on, kind = excluded.kind,
    confirmatory = excluded.confirmatory, analytes = excluded.analytes,
    physician_reviewed_on = excluded.physician_reviewed_on, confidentiality = excluded.confidentiality,
    specimen_validity = excluded.specimen_validity
where uds_results.specimen_validity is distinct from excluded.specimen_validity or uds_results.collected_on is distinct from excluded.collected_on
    or uds_results.kind is distinct from excluded.kind
    or uds_results.confirmatory is distinct from excluded.confirmatory
    or uds_results.analytes is distinct from excluded.analytes
    or uds_results.physician_reviewed_on is distinct from excluded.physician_reviewed_on
    or uds_results.confidentiality is distinct from excluded.confidentiality
returning patient_id"#;

const UPSERT_PDMP: &str = r#"
insert into pdmp_reviews (patient_id, source_id, reviewed_on, findings, reviewed_by, created_at)
values ($1, $2, $3, $4, $5, $6)
on conflict (patient_id, source_id) do update set reviewed_on = excluded.reviewed_on, findings = excluded.findings
where pdmp_reviews.reviewed_on is distinct from excluded.reviewed_on
    or pdmp_reviews.findings is distinct from excluded.findings
returning patient_id"#;

const UPSERT_AGREEMENT: &str = r#"
insert into agreements (patient_id, source_id, signed_on, prescriber_id, text_version, elements, voided_on,
    created_at)
values ($1, $2, $3, $4, $5, $6, $7, $8)
on conflict (patient_id, source_id) do update set signed_on = excluded.signed_on,
    prescriber_id = excluded.prescriber_id, text_version = excluded.text_version, elements = excluded.elements,
    voided_on = excluded.voided_on
where agreements.signed_on is distinct from excluded.signed_on
    or agreements.prescriber_id is distinct from excluded.prescriber_id
    or agreements.text_version is distinct from excluded.text_version
    or agreements.elements is distinct from excluded.elements
    or agreements.voided_on is distinct from excluded.voided_on
returning patient_id"#;

// A plan that arrives paused has no pause date in the export: it holds the step in force on the day it
// was first imported paused ($8), so later steps do not come into force while it stays paused.
const UPSERT_TAPER: &str = r#"
insert into taper_plans (patient_id, source_id, state, started_on, created_by, rationale, version, created_at,
    updated_at, paused_on)
values ($1, $2, $3, $4, $5, $6, 1, $7, $7, case when $3 = 'paused' then $8 end)
on conflict (patient_id, source_id) do update set state = excluded.state, started_on = excluded.started_on,
    created_by = excluded.created_by, rationale = excluded.rationale, version = taper_plans.version + 1,
    updated_at = excluded.updated_at,
    paused_on = case when excluded.state = 'paused' then coalesce(taper_plans.paused_on, excluded.paused_on) end
where taper_plans.state is distinct from excluded.state
    or taper_plans.started_on is distinct from excluded.started_on
    or taper_plans.created_by is distinct from excluded.created_by
    or taper_plans.rationale is distinct from excluded.rationale
returning id"#;

const SELECT_TAPER_ID: &str = "select id from taper_plans where patient_id = $1 and source_id = $2";

const UPSERT_TAPER_STEP: &str = r#"
insert into taper_steps (plan_id, step_number, starts_on, regimen, total_daily_mme)
values ($1, $2, $3, $4, $5)
on conflict (plan_id, step_number) do update set starts_on = excluded.starts_on, regimen = excluded.regimen,
    total_daily_mme = excluded.total_daily_mme
where taper_steps.starts_on is distinct from excluded.starts_on
    or taper_steps.regimen is distinct from excluded.regimen
    or taper_steps.total_daily_mme is distinct from excluded.total_daily_mme
returning plan_id"#;

const UPSERT_REVIEW: &str = r#"
insert into physician_reviews (patient_id, source_id, reviewed_on, physician_id, kind, subject_prescriber_id, note,
    created_at, subject_drug_class)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
on conflict (patient_id, source_id) do update set reviewed_on = excluded.reviewed_on,
    physician_id = excluded.physician_id, kind = excluded.kind,
    subject_prescriber_id = excluded.subject_prescriber_id, note = excluded.note,
    subject_drug_class = excluded.subject_drug_class
where physician_reviews.subject_drug_class is distinct from excluded.subject_drug_class or physician_reviews.reviewed_on is distinct from excluded.reviewed_on
    or physician_reviews.physician_id is distinct from excluded.physician_id
    or physician_reviews.kind is distinct from excluded.kind
    or physician_reviews.subject_prescriber_id is distinct from excluded.subject_prescriber_id
    or physician_reviews.note is distinct from excluded.note
returning patient_id"#;

const UPSERT_NALOXONE: &str = r#"
insert into naloxone_events (patient_id, source_id, occurred_on, kind, recorded_by, created_at)
values ($1, $2, $3, $4, $5, $6)
on conflict (patient_id, source_id) do update set occurred_on = excluded.occurred_on, kind = excluded.kind
where naloxone_events.occurred_on is distinct from excluded.occurred_on
    or naloxone_events.kind is distinct from excluded.kind
returning patient_id"#;

// $6: whether the source dated the flag; an undated one keeps the date it was first stored under.
const UPSERT_FLAG: &str = r#"
insert into clinical_flags (patient_id, source_id, kind, recorded_on, confidentiality, active, created_at)
values ($1, $2, $3, $4, $5, $8, $7)
on conflict (patient_id, source_id) do update set kind = excluded.kind,
    recorded_on = case when $6 then excluded.recorded_on else clinical_flags.recorded_on end,
    confidentiality = excluded.confidentiality, active = excluded.active
where clinical_flags.kind is distinct from excluded.kind
    or ($6 and clinical_flags.recorded_on is distinct from excluded.recorded_on)
    or clinical_flags.confidentiality is distinct from excluded.confidentiality
    or clinical_flags.active is distinct from excluded.active
returning patient_id"#;

const UPSERT_OTHER_MEDICATION: &str = r#"
insert into other_medications (patient_id, source_id, class, text, started_on, active, confidentiality, created_at)
values ($1, $2, $3, $4, $5, $6, $7, $8)
on conflict (patient_id, source_id) do update set class = excluded.class, text = excluded.text,
    started_on = excluded.started_on, active = excluded.active, confidentiality = excluded.confidentiality
where other_medications.class is distinct from excluded.class
    or other_medications.text is distinct from excluded.text
    or other_medications.started_on is distinct from excluded.started_on
    or other_medications.active is distinct from excluded.active
    or other_medications.confidentiality is distinct from excluded.confidentiality
returning patient_id"#;

const UPSERT_UNRECOGNISED_ORDER: &str = r#"
insert into unrecognised_orders (patient_id, source_id, label, reason, active, created_at)
values ($1, $2, $3, $4, $5, $6)
on conflict (patient_id, source_id) do update set label = excluded.label, reason = excluded.reason,
    active = excluded.active
where unrecognised_orders.label is distinct from excluded.label
    or unrecognised_orders.reason is distinct from excluded.reason
    or unrecognised_orders.active is distinct from excluded.active
returning patient_id"#;

// A request is an event: recorded once per patient, day and kind, whichever channel recorded it first,
// and never rewritten by a re-import (what staff wrote down stays).
const INSERT_REFILL_REQUEST_IF_NEW: &str = r#"
insert into refill_requests (patient_id, requested_on, kind, regimen, status, channel, note, created_by, version,
    created_at, updated_at)
select $1, $2, $3, null, 'open', $4, $5, $6, 1, $7, $7
where not exists (select 1 from refill_requests r where r.patient_id = $1 and r.requested_on = $2 and r.kind = $3)
returning patient_id"#;

// PostgreSQL: the requests' patients, locked in id order (so two imports cannot deadlock on them) until
// the file's transaction ends. Requests have no unique key to conflict on, and under read committed two
// imports of one file would both find a request absent and both insert it; the second now waits and
// then sees the first one's rows. (SQLite's `BEGIN IMMEDIATE` already lets one writer in at a time.)
const LOCK_REQUEST_PATIENTS: &str = "select id from patients where id = any($1) order by id for update";

const SELECT_PATIENT_KEYS: &str = "select external_id, id from patients";

fn taper_state_name(state: TaperState) -> &'static str {
    match state {
        TaperState::Active => "active",
        TaperState::Paused => "paused",
        TaperState::Completed => "completed",
    }
}

/// How often (in records) the progress callback is called.
pub const PROGRESS_EVERY: u64 = 1024;

/// Counts and changed patients while one batch is written.
#[derive(Default)]
struct Tally {
    counts: Vec<(ImportKind, ImportCounts)>,
    patients_changed: BTreeSet<i64>,
    done: u64,
}

impl Tally {
    fn tick(&mut self, progress: &(dyn Fn(u64) + Sync)) {
        self.done += 1;
        if self.done.is_multiple_of(PROGRESS_EVERY) {
            progress(self.done);
        }
    }

    fn record(&mut self, kind: ImportKind, changed_patient: Option<i64>) {
        if self.counts.last().is_none_or(|(k, _)| *k != kind) {
            self.counts.push((kind, ImportCounts::default()));
        }
        let (_, counts) = self.counts.last_mut().expect("pushed above");
        match changed_patient {
            Some(patient) => {
                counts.written += 1;
                self.patients_changed.insert(patient);
            }
            None => counts.unchanged += 1,
        }
    }

    fn record_prescriber(&mut self, written: bool) {
        if self.counts.last().is_none_or(|(k, _)| *k != ImportKind::Prescribers) {
            self.counts.push((ImportKind::Prescribers, ImportCounts::default()));
        }
        let (_, counts) = self.counts.last_mut().expect("pushed above");
        if written {
            counts.written += 1;
        } else {
            counts.unchanged += 1;
        }
    }
}

impl Store {
    /// Import one file's records in one transaction. Commits when every reference resolves and
    /// something changed; otherwise rolls back (a rejected file writes nothing, an identical re-import
    /// changes nothing, not even the audit chain).
    ///
    /// # Errors
    /// Database errors (nothing is written); `Duplicate` when a unique column (e.g. an MRN) clashes with
    /// another stored patient.
    #[tracing::instrument(skip_all, fields(records = batch.patients.len() + batch.orders.len() + batch.fills.len()))]
    pub async fn import_batch(&self, batch: &ImportBatch, actor: &Actor) -> Result<ImportOutcome, StoreError> {
        self.import_batch_with_progress(batch, actor, &|_| {}).await
    }

    /// [`Store::import_batch`], calling `progress` with the number of records done so far every
    /// [`PROGRESS_EVERY`] records (for a progress bar).
    pub async fn import_batch_with_progress(
        &self,
        batch: &ImportBatch,
        actor: &Actor,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<ImportOutcome, StoreError> {
        let mut tx = self.begin().await?;
        match write_batch(&mut tx, batch, actor, progress).await {
            Ok(Ok(tally)) if tally.patients_changed.is_empty() && tally.counts.iter().all(|(_, c)| c.written == 0) => {
                tx.rollback().await?;
                Ok(ImportOutcome::Committed(ImportReport {
                    counts: tally.counts,
                    patients_changed: 0,
                    audit_seq: None,
                }))
            }
            Ok(Ok(tally)) => {
                let event = AuditEvent::new(actor, "import.file", "import")
                    .resource_id(batch.source_name.clone())
                    .detail(json!({
                        "file": batch.source_name,
                        "sha256": batch.source_sha256,
                        "counts": tally.counts.iter().map(|(kind, c)| json!({
                            "kind": kind.as_str(), "written": c.written, "unchanged": c.unchanged,
                        })).collect::<Vec<_>>(),
                        "patients_changed": tally.patients_changed.iter().collect::<Vec<_>>(),
                    }));
                let appended = append(&mut tx, &self.audit_key, &event).await?;
                tx.commit().await?;
                Ok(ImportOutcome::Committed(ImportReport {
                    counts: tally.counts,
                    patients_changed: tally.patients_changed.len(),
                    audit_seq: Some(appended.seq),
                }))
            }
            Ok(Err(rejections)) => {
                tx.rollback().await?;
                Ok(ImportOutcome::Rejected(rejections))
            }
            Err(error) => {
                tx.rollback().await?;
                Err(error)
            }
        }
    }
}

/// Write every record of `batch`; `Ok(Err(..))` when some reference did not resolve (the caller then
/// rolls back).
async fn write_batch(
    tx: &mut Tx,
    batch: &ImportBatch,
    actor: &Actor,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Result<Tally, Vec<ImportRejection>>, StoreError> {
    let at = now();
    let mut tally = Tally::default();
    for prescriber in &batch.prescribers {
        let written: Option<String> = with_tx!(tx, conn => {
            sqlx::query_scalar(UPSERT_PRESCRIBER)
                .bind(prescriber.id.clone())
                .bind(prescriber.display_name.clone())
                .bind(prescriber.role)
                .bind(at)
                .fetch_optional(&mut *conn)
                .await?
        });
        tally.record_prescriber(written.is_some());
        tally.tick(progress);
    }
    for (index, patient) in batch.patients.iter().enumerate() {
        let result: Result<Option<i64>, sqlx::Error> = with_tx!(tx, conn => {
            sqlx::query_scalar(UPSERT_PATIENT)
                .bind(patient.external_id.clone())
                .bind(patient.mrn.clone())
                .bind(patient.given_name.clone())
                .bind(patient.family_name.clone())
                .bind(patient.birth_date)
                .bind(codec::sex_name(patient.sex))
                .bind(patient.risk_tier.map(codec::risk_tier_name))
                .bind(patient.prescriber_of_record.clone())
                .bind(patient.email.clone())
                .bind(patient.phone.clone())
                .bind(patient.email_consent)
                .bind(patient.contact_preference)
                .bind(patient.part2)
                .bind(actor.id.clone())
                .bind(at)
                .bind(patient.previous_prescriber.clone())
                .bind(patient.enrolment_if_new.as_str())
                .bind(enrolment_reason(patient.enrolment_if_new))
                .fetch_optional(&mut *conn)
                .await
        });
        let written = match result {
            Ok(written) => written,
            // The only other unique column is the MRN. PostgreSQL aborts the transaction on the
            // error, so this is the one problem reported; the caller rolls everything back.
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                return Ok(Err(vec![ImportRejection {
                    kind: ImportKind::Patients,
                    index,
                    field: "mrn",
                    message: format!(
                        "MRN {:?} already belongs to another stored patient",
                        patient.mrn.as_deref().unwrap_or("")
                    ),
                }]));
            }
            Err(error) => return Err(error.into()),
        };
        tally.record(ImportKind::Patients, written);
        tally.tick(progress);
    }

    let has_children = !(batch.orders.is_empty()
        && batch.fills.is_empty()
        && batch.uds.is_empty()
        && batch.pdmp.is_empty()
        && batch.agreements.is_empty()
        && batch.tapers.is_empty()
        && batch.reviews.is_empty()
        && batch.naloxone.is_empty()
        && batch.flags.is_empty()
        && batch.other_medications.is_empty()
        && batch.refill_requests.is_empty()
        && batch.unrecognised_orders.is_empty());
    if !has_children {
        return Ok(Ok(tally));
    }
    let patient_ids = patient_keys(tx).await?;
    let mut rejections = Vec::new();
    let mut resolve = |kind: ImportKind, index: usize, key: &str| -> Option<i64> {
        let id = patient_ids.get(key).copied();
        if id.is_none() {
            rejections.push(ImportRejection {
                kind,
                index,
                field: "patient_id",
                message: format!("no patient with id {key:?} is stored or in this file (import patients first)"),
            });
        }
        id
    };
    // Resolve every reference first so a bad file reports all of them without writing a row.
    let orders: Vec<Option<i64>> =
        batch.orders.iter().enumerate().map(|(i, r)| resolve(ImportKind::Orders, i, &r.patient_key)).collect();
    let fills: Vec<Option<i64>> =
        batch.fills.iter().enumerate().map(|(i, r)| resolve(ImportKind::Fills, i, &r.patient_key)).collect();
    let uds: Vec<Option<i64>> =
        batch.uds.iter().enumerate().map(|(i, r)| resolve(ImportKind::Uds, i, &r.patient_key)).collect();
    let pdmp: Vec<Option<i64>> =
        batch.pdmp.iter().enumerate().map(|(i, r)| resolve(ImportKind::Pdmp, i, &r.patient_key)).collect();
    let agreements: Vec<Option<i64>> =
        batch.agreements.iter().enumerate().map(|(i, r)| resolve(ImportKind::Agreements, i, &r.patient_key)).collect();
    let tapers: Vec<Option<i64>> =
        batch.tapers.iter().enumerate().map(|(i, r)| resolve(ImportKind::Tapers, i, &r.patient_key)).collect();
    let reviews: Vec<Option<i64>> =
        batch.reviews.iter().enumerate().map(|(i, r)| resolve(ImportKind::Reviews, i, &r.patient_key)).collect();
    let naloxone: Vec<Option<i64>> =
        batch.naloxone.iter().enumerate().map(|(i, r)| resolve(ImportKind::Naloxone, i, &r.patient_key)).collect();
    let flags: Vec<Option<i64>> =
        batch.flags.iter().enumerate().map(|(i, r)| resolve(ImportKind::Flags, i, &r.patient_key)).collect();
    let other_medications: Vec<Option<i64>> = batch
        .other_medications
        .iter()
        .enumerate()
        .map(|(i, r)| resolve(ImportKind::OtherMedications, i, &r.patient_key))
        .collect();
    let refill_requests: Vec<Option<i64>> = batch
        .refill_requests
        .iter()
        .enumerate()
        .map(|(i, r)| resolve(ImportKind::RefillRequests, i, &r.patient_key))
        .collect();
    let unrecognised_orders: Vec<Option<i64>> = batch
        .unrecognised_orders
        .iter()
        .enumerate()
        .map(|(i, r)| resolve(ImportKind::UnrecognisedOrders, i, &r.patient_key))
        .collect();
    if !rejections.is_empty() {
        return Ok(Err(rejections));
    }

    for (record, patient_id) in batch.orders.iter().zip(orders.into_iter().flatten()) {
        let order = &record.order;
        let (unit, unit_text) = match &order.dose {
            Some(dose) => {
                let (name, text) = codec::dose_unit_columns(&dose.unit);
                (Some(name), text)
            }
            None => (None, None),
        };
        let written: Option<i64> = with_tx!(tx, conn => {
            sqlx::query_scalar::<_, i64>(crate::facts::UPSERT_ORDER_IF_CHANGED)
                .bind(patient_id)
                .bind(order.id.clone())
                .bind(order.rxcui.clone())
                .bind(order.text.clone())
                .bind(order.dose.as_ref().map(|d| d.value))
                .bind(unit)
                .bind(unit_text.clone())
                .bind(order.doses_per_day)
                .bind(order.days_supply.map(i64::from))
                .bind(order.dispense_quantity)
                .bind(order.prescriber.as_ref().map(|p| p.0.clone()))
                .bind(codec::purpose_name(order.purpose))
                .bind(codec::confidentiality_name(order.confidentiality))
                .bind(record.active)
                .bind(at)
                .fetch_optional(&mut *conn)
                .await?
        });
        tally.record(ImportKind::Orders, written.map(|_order_id| patient_id));
        tally.tick(progress);
    }
    for (record, patient_id) in batch.fills.iter().zip(fills.into_iter().flatten()) {
        let fill = &record.fill;
        let written: Option<i64> = with_tx!(tx, conn => {
            sqlx::query_scalar(UPSERT_FILL)
                .bind(patient_id)
                .bind(record.source_id.clone())
                .bind(fill.filled_on)
                .bind(i64::from(fill.days_supply))
                .bind(fill.order_id.clone())
                .bind(fill.quantity)
                .bind(at)
                .fetch_optional(&mut *conn)
                .await?
        });
        tally.record(ImportKind::Fills, written);
        tally.tick(progress);
    }
    for (record, patient_id) in batch.uds.iter().zip(uds.into_iter().flatten()) {
        let result = &record.result;
        let analytes = sqlx::types::Json(codec::analytes_to_json(&result.analytes));
        let written: Option<i64> = with_tx!(tx, conn => {
            sqlx::query_scalar(UPSERT_UDS)
                .bind(patient_id)
                .bind(record.source_id.clone())
                .bind(result.collected_on)
                .bind(codec::uds_kind_name(result.kind))
                .bind(result.confirmatory)
                .bind(analytes.clone())
                .bind(result.physician_reviewed_on)
                .bind(codec::confidentiality_name(result.confidentiality))
                .bind(at)
                .bind(result.specimen_validity.as_str())
                .fetch_optional(&mut *conn)
                .await?
        });
        tally.record(ImportKind::Uds, written);
        tally.tick(progress);
    }
    for (record, patient_id) in batch.pdmp.iter().zip(pdmp.into_iter().flatten()) {
        let findings = sqlx::types::Json(codec::findings_to_json(&record.review.findings));
        let written: Option<i64> = with_tx!(tx, conn => {
            sqlx::query_scalar(UPSERT_PDMP)
                .bind(patient_id)
                .bind(record.source_id.clone())
                .bind(record.review.reviewed_on)
                .bind(findings.clone())
                .bind(actor.id.clone())
                .bind(at)
                .fetch_optional(&mut *conn)
                .await?
        });
        tally.record(ImportKind::Pdmp, written);
        tally.tick(progress);
    }
    for (record, patient_id) in batch.agreements.iter().zip(agreements.into_iter().flatten()) {
        let agreement = &record.agreement;
        let elements = sqlx::types::Json(json!(agreement.elements));
        let written: Option<i64> = with_tx!(tx, conn => {
            sqlx::query_scalar(UPSERT_AGREEMENT)
                .bind(patient_id)
                .bind(record.source_id.clone())
                .bind(agreement.signed_on)
                .bind(agreement.prescriber_of_record.0.clone())
                .bind(agreement.text_version.clone())
                .bind(elements.clone())
                .bind(agreement.voided_on)
                .bind(at)
                .fetch_optional(&mut *conn)
                .await?
        });
        tally.record(ImportKind::Agreements, written);
        tally.tick(progress);
    }
    for (record, patient_id) in batch.tapers.iter().zip(tapers.into_iter().flatten()) {
        let written = write_taper(tx, record, patient_id, at).await?;
        tally.record(ImportKind::Tapers, written.then_some(patient_id));
        tally.tick(progress);
    }
    for (record, patient_id) in batch.reviews.iter().zip(reviews.into_iter().flatten()) {
        let review = &record.review;
        let (kind, subject, class) = crate::facts::review_kind_columns(&review.kind);
        let written: Option<i64> = with_tx!(tx, conn => {
            sqlx::query_scalar(UPSERT_REVIEW)
                .bind(patient_id)
                .bind(record.source_id.clone())
                .bind(review.reviewed_on)
                .bind(review.physician.0.clone())
                .bind(kind)
                .bind(subject.clone())
                .bind(record.note.clone())
                .bind(at)
                .bind(class)
                .fetch_optional(&mut *conn)
                .await?
        });
        tally.record(ImportKind::Reviews, written);
        tally.tick(progress);
    }
    for (record, patient_id) in batch.naloxone.iter().zip(naloxone.into_iter().flatten()) {
        let written: Option<i64> = with_tx!(tx, conn => {
            sqlx::query_scalar(UPSERT_NALOXONE)
                .bind(patient_id)
                .bind(record.source_id.clone())
                .bind(record.event.on)
                .bind(codec::naloxone_kind_name(record.event.kind))
                .bind(actor.id.clone())
                .bind(at)
                .fetch_optional(&mut *conn)
                .await?
        });
        tally.record(ImportKind::Naloxone, written);
        tally.tick(progress);
    }
    for (record, patient_id) in batch.flags.iter().zip(flags.into_iter().flatten()) {
        let flag = &record.flag;
        let written: Option<i64> = with_tx!(tx, conn => {
            sqlx::query_scalar(UPSERT_FLAG)
                .bind(patient_id)
                .bind(record.source_id.clone())
                .bind(codec::flag_kind_name(flag.kind))
                .bind(flag.recorded_on)
                .bind(codec::confidentiality_name(flag.confidentiality))
                .bind(record.dated)
                .bind(at)
                .bind(record.active)
                .fetch_optional(&mut *conn)
                .await?
        });
        tally.record(ImportKind::Flags, written);
        tally.tick(progress);
    }
    for (record, patient_id) in batch.other_medications.iter().zip(other_medications.into_iter().flatten()) {
        let medication = &record.medication;
        let written: Option<i64> = with_tx!(tx, conn => {
            sqlx::query_scalar(UPSERT_OTHER_MEDICATION)
                .bind(patient_id)
                .bind(record.source_id.clone())
                .bind(codec::other_medication_class_name(medication.class))
                .bind(medication.text.clone())
                .bind(medication.started_on)
                .bind(medication.active)
                .bind(codec::confidentiality_name(medication.confidentiality))
                .bind(at)
                .fetch_optional(&mut *conn)
                .await?
        });
        tally.record(ImportKind::OtherMedications, written);
        tally.tick(progress);
    }
    for (record, patient_id) in batch.unrecognised_orders.iter().zip(unrecognised_orders.into_iter().flatten()) {
        let written: Option<i64> = with_tx!(tx, conn => {
            sqlx::query_scalar(UPSERT_UNRECOGNISED_ORDER)
                .bind(patient_id)
                .bind(record.source_id.clone())
                .bind(record.label.clone())
                .bind(record.reason.clone())
                .bind(record.active)
                .bind(at)
                .fetch_optional(&mut *conn)
                .await?
        });
        tally.record(ImportKind::UnrecognisedOrders, written);
        tally.tick(progress);
    }
    let refill_requests: Vec<i64> = refill_requests.into_iter().flatten().collect();
    lock_request_patients(tx, &refill_requests).await?;
    for (record, patient_id) in batch.refill_requests.iter().zip(refill_requests) {
        let written: Option<i64> = with_tx!(tx, conn => {
            sqlx::query_scalar(INSERT_REFILL_REQUEST_IF_NEW)
                .bind(patient_id)
                .bind(record.requested_on)
                .bind(codec::request_kind_name(record.kind))
                .bind(record.channel)
                .bind(record.note.clone())
                .bind(actor.id.clone())
                .bind(at)
                .fetch_optional(&mut *conn)
                .await?
        });
        tally.record(ImportKind::RefillRequests, written);
        tally.tick(progress);
    }
    Ok(Ok(tally))
}

/// Upsert a plan and its steps; true when any row was written.
async fn write_taper(
    tx: &mut Tx,
    record: &ImportTaper,
    patient_id: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<bool, StoreError> {
    let written_plan: Option<i64> = with_tx!(tx, conn => {
        sqlx::query_scalar(UPSERT_TAPER)
            .bind(patient_id)
            .bind(record.source_id.clone())
            .bind(taper_state_name(record.state))
            .bind(record.started_on)
            .bind(record.physician.clone())
            .bind(record.rationale.clone())
            .bind(at)
            .bind(at.date_naive())
            .fetch_optional(&mut *conn)
            .await?
    });
    let plan_id: i64 = match written_plan {
        Some(id) => id,
        None => with_tx!(tx, conn => {
            sqlx::query_scalar(SELECT_TAPER_ID)
                .bind(patient_id)
                .bind(record.source_id.clone())
                .fetch_one(&mut *conn)
                .await?
        }),
    };
    let mut written = written_plan.is_some();
    for step in &record.steps {
        let regimen = sqlx::types::Json(codec::orders_to_json(&step.regimen));
        let step_written: Option<i64> = with_tx!(tx, conn => {
            sqlx::query_scalar(UPSERT_TAPER_STEP)
                .bind(plan_id)
                .bind(i64::from(step.step_number))
                .bind(step.starts_on)
                .bind(regimen.clone())
                .bind(step.total_daily_mme)
                .fetch_optional(&mut *conn)
                .await?
        });
        written |= step_written.is_some();
    }
    Ok(written)
}

/// Serialise concurrent imports of requests for the same patients (see [`LOCK_REQUEST_PATIENTS`]).
async fn lock_request_patients(tx: &mut Tx, patient_ids: &[i64]) -> Result<(), StoreError> {
    if patient_ids.is_empty() {
        return Ok(());
    }
    if let Tx::Postgres(inner) = tx {
        let conn: &mut sqlx::PgConnection = &mut *inner;
        let mut ids = patient_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        sqlx::query(LOCK_REQUEST_PATIENTS).bind(ids).execute(conn).await?;
    }
    Ok(())
}

/// Every stored patient's external id and row id (the natural key map children resolve against).
async fn patient_keys(tx: &mut Tx) -> Result<HashMap<String, i64>, StoreError> {
    let rows: Vec<(String, i64)> = with_tx!(tx, conn => {
        sqlx::query_as(SELECT_PATIENT_KEYS).fetch_all(&mut *conn).await?
    });
    Ok(rows.into_iter().collect())
}

/// Tables an import writes, in the order [`imported_row_counts`] reports them.
pub const IMPORTED_TABLES: [&str; 16] = [
    "prescribers",
    "patients",
    "medication_orders",
    "fills",
    "uds_results",
    "pdmp_reviews",
    "agreements",
    "taper_plans",
    "taper_steps",
    "physician_reviews",
    "naloxone_events",
    "clinical_flags",
    "other_medications",
    "refill_requests",
    "unrecognised_orders",
    "audit_events",
];

/// Row counts of every table an import writes (and of the audit trail): what an operator or a test
/// compares to see that a rejected file wrote nothing and a re-import changed nothing.
///
/// # Errors
/// Database errors.
pub async fn imported_row_counts(store: &Store) -> Result<Vec<(&'static str, i64)>, StoreError> {
    let mut counts = Vec::with_capacity(IMPORTED_TABLES.len());
    for table in IMPORTED_TABLES {
        // The table names are the constants above, never input.
        let sql = format!("select count(*) from {table}");
        let count: i64 = with_read_pool!(store, pool => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await?
        });
        counts.push((table, count));
    }
    Ok(counts)
}
