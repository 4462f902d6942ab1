//! What an import yields: clinic records keyed by the source's own ids (the natural keys that make a
//! re-import change nothing), holding the rules' domain values.

use chrono::NaiveDate;
use refill_rules::{
    AgreementFacts, ClinicalFlag, Fill, MedicationOrder, NaloxoneEvent, OtherMedication, PdmpReview, PhysicianReview,
    PrescriberId, RequestKind, RiskTier, Sex, TaperState, UdsResult,
};

use crate::error::Location;

/// A physician or other prescriber on the clinic's roster.
#[derive(Debug, Clone, PartialEq)]
pub struct PhysicianRecord {
    /// Where the record came from (CSV line or FHIR resource), for problems found when storing it.
    pub origin: Location,
    /// Stable prescriber id (an NPI or the EHR's practitioner id); also the natural key.
    pub prescriber_id: PrescriberId,
    /// Name as screens show it, e.g. `Dr. Adaeze Okafor`.
    pub display_name: String,
    pub role: PrescriberRole,
}

/// The kind of prescriber (the store's `prescribers.role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrescriberRole {
    Physician,
    NursePractitioner,
    PhysicianAssistant,
    Other,
}

impl PrescriberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PrescriberRole::Physician => "physician",
            PrescriberRole::NursePractitioner => "nurse_practitioner",
            PrescriberRole::PhysicianAssistant => "physician_assistant",
            PrescriberRole::Other => "other",
        }
    }

    pub fn parse(text: &str) -> Option<PrescriberRole> {
        [
            PrescriberRole::Physician,
            PrescriberRole::NursePractitioner,
            PrescriberRole::PhysicianAssistant,
            PrescriberRole::Other,
        ]
        .into_iter()
        .find(|role| role.as_str() == text)
    }
}

pub use refill_rules::ContactPreference;

/// A patient's identity and the facts that belong to the patient row.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientRecord {
    pub origin: Location,
    /// The source's patient id (FHIR `Patient.id` or the CSV `patient_id`); the natural key.
    pub external_id: String,
    pub mrn: Option<String>,
    pub family_name: String,
    pub given_name: String,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// The patient agreed to receive email reminders.
    pub email_consent: bool,
    pub contact_preference: ContactPreference,
    /// The record holds 42 CFR Part 2 information.
    pub part2: bool,
    pub prescriber_of_record: Option<PrescriberId>,
    /// ORT-derived tier; `None` when the source does not carry one (the store keeps its value).
    pub risk_tier: Option<RiskTier>,
    /// The prescriber a new or transferred patient came from (the rules never count them as an outside
    /// prescriber); `None` when the source does not say (the store keeps what it has).
    pub previous_prescriber: Option<PrescriberId>,
    /// A NEW patient is enrolled in the refill clinic as it comes in: true for the clinic's own CSV,
    /// and for an EHR (FHIR) patient with an active opioid order; an EHR patient without one waits on
    /// the "Not enrolled" list. A stored patient's enrolment is never changed by an import.
    pub enrol_when_new: bool,
}

/// Lifecycle of an order; only active orders make up the regimen of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Active,
    OnHold,
    Stopped,
    Completed,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Active => "active",
            OrderStatus::OnHold => "on-hold",
            OrderStatus::Stopped => "stopped",
            OrderStatus::Completed => "completed",
        }
    }

    pub fn parse(text: &str) -> Option<OrderStatus> {
        match text {
            "active" => Some(OrderStatus::Active),
            "on-hold" => Some(OrderStatus::OnHold),
            "stopped" => Some(OrderStatus::Stopped),
            "completed" => Some(OrderStatus::Completed),
            _ => None,
        }
    }
}

/// A medication order; `order.id` is the source's order id (the natural key).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRecord {
    pub origin: Location,
    pub patient_external_id: String,
    pub status: OrderStatus,
    /// When the order was written, if the source says.
    pub authored_on: Option<NaiveDate>,
    pub order: MedicationOrder,
}

/// A dispense (fill) of an order.
#[derive(Debug, Clone, PartialEq)]
pub struct FillRecord {
    pub origin: Location,
    pub external_id: String,
    pub patient_external_id: String,
    pub fill: Fill,
}

/// One urine drug test with all its analytes.
#[derive(Debug, Clone, PartialEq)]
pub struct UdsRecord {
    pub origin: Location,
    /// The specimen or accession id; the natural key.
    pub external_id: String,
    pub patient_external_id: String,
    pub result: UdsResult,
}

/// One PDMP review with what it found.
#[derive(Debug, Clone, PartialEq)]
pub struct PdmpRecord {
    pub origin: Location,
    pub external_id: String,
    pub patient_external_id: String,
    pub review: PdmpReview,
}

/// A signed treatment agreement.
#[derive(Debug, Clone, PartialEq)]
pub struct AgreementRecord {
    pub origin: Location,
    pub external_id: String,
    pub patient_external_id: String,
    pub agreement: AgreementFacts,
}

/// A documented physician review (benefit-risk review, or an acknowledgement).
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewRecord {
    pub origin: Location,
    pub external_id: String,
    pub patient_external_id: String,
    pub review: PhysicianReview,
    pub note: Option<String>,
}

/// Naloxone offered, declined or dispensed.
#[derive(Debug, Clone, PartialEq)]
pub struct NaloxoneRecord {
    pub origin: Location,
    pub external_id: String,
    pub patient_external_id: String,
    pub event: NaloxoneEvent,
}

/// A clinical flag from a diagnosis at the source (FHIR Condition): exclusions, overdose or
/// substance-use history, sleep-disordered breathing.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagRecord {
    pub origin: Location,
    pub external_id: String,
    pub patient_external_id: String,
    pub flag: ClinicalFlag,
    /// The source dated the diagnosis; when not, `flag.recorded_on` is the import date and a later
    /// re-import must not move it.
    pub dated: bool,
    /// False when the source marks the condition resolved or inactive: the flag stops counting.
    pub active: bool,
}

/// A benzodiazepine or an opioid-use-disorder treatment known at the source (order or statement);
/// `medication.active` false when the source marks it stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct OtherMedicationRecord {
    pub origin: Location,
    pub external_id: String,
    pub patient_external_id: String,
    pub medication: OtherMedication,
}

/// An order the engine does not recognise as an opioid (a product missing from the drug table): kept
/// so the patient page can say it is not counted in the MME; `active` false when stopped at the source.
#[derive(Debug, Clone, PartialEq)]
pub struct UnrecognisedOrderRecord {
    pub origin: Location,
    pub external_id: String,
    pub patient_external_id: String,
    pub label: String,
    pub reason: String,
    pub active: bool,
}

/// One step of a physician-authored taper plan: from `starts_on`, the patient takes `regimen`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaperStepRecord {
    pub step_number: u32,
    pub starts_on: NaiveDate,
    pub regimen: Vec<MedicationOrder>,
    /// Total daily MME of the step as the source computed it, if given.
    pub daily_mme: Option<f64>,
}

/// A taper plan already in progress at the source, with its steps.
#[derive(Debug, Clone, PartialEq)]
pub struct TaperRecord {
    pub origin: Location,
    pub external_id: String,
    pub patient_external_id: String,
    pub state: TaperState,
    pub started_on: NaiveDate,
    pub physician: PrescriberId,
    /// The physician's written rationale (required: only a physician decides a taper).
    pub rationale: String,
    pub steps: Vec<TaperStepRecord>,
}

/// How a refill request reached the clinic (the store's `refill_requests.channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestChannel {
    /// Phone, fax or the desk, written down by staff.
    Staff,
    /// The clinic's JSON API (an EHR or a pharmacy system).
    Api,
    /// Brought in by an import, the source not saying how it came.
    Import,
}

impl RequestChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestChannel::Staff => "staff",
            RequestChannel::Api => "api",
            RequestChannel::Import => "import",
        }
    }

    pub fn parse(text: &str) -> Option<RequestChannel> {
        [RequestChannel::Staff, RequestChannel::Api, RequestChannel::Import].into_iter().find(|c| c.as_str() == text)
    }
}

/// A refill request recorded at the source (refill-cycle.md, "Requests are events"). Its natural key is
/// what identifies it clinically: the patient, the day and the kind (a patient asking twice on one day
/// for the same thing made one request).
#[derive(Debug, Clone, PartialEq)]
pub struct RefillRequestRecord {
    pub origin: Location,
    pub patient_external_id: String,
    pub requested_on: NaiveDate,
    pub kind: RequestKind,
    pub channel: RequestChannel,
    /// What the patient or pharmacy said, as written at the source.
    pub note: Option<String>,
}

/// The records of one file (CSV: one kind; FHIR: a bundle may carry several kinds).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClinicRecords {
    pub physicians: Vec<PhysicianRecord>,
    pub patients: Vec<PatientRecord>,
    pub orders: Vec<OrderRecord>,
    pub fills: Vec<FillRecord>,
    pub uds: Vec<UdsRecord>,
    pub pdmp: Vec<PdmpRecord>,
    pub agreements: Vec<AgreementRecord>,
    pub tapers: Vec<TaperRecord>,
    pub reviews: Vec<ReviewRecord>,
    pub naloxone: Vec<NaloxoneRecord>,
    pub flags: Vec<FlagRecord>,
    pub other_medications: Vec<OtherMedicationRecord>,
    pub refill_requests: Vec<RefillRequestRecord>,
    pub unrecognised_orders: Vec<UnrecognisedOrderRecord>,
}

impl ClinicRecords {
    /// Number of records of every kind together.
    pub fn len(&self) -> usize {
        self.physicians.len()
            + self.patients.len()
            + self.orders.len()
            + self.fills.len()
            + self.uds.len()
            + self.pdmp.len()
            + self.agreements.len()
            + self.tapers.len()
            + self.reviews.len()
            + self.naloxone.len()
            + self.flags.len()
            + self.other_medications.len()
            + self.refill_requests.len()
            + self.unrecognised_orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
