//! Typed view-models, one per kind of message. The notifier takes these, never store rows or rules
//! types, so a message can only carry what its view-model has room for: a patient notice has a first
//! name and one date or time, nothing else.

use chrono::{NaiveDate, NaiveDateTime};

/// Who a message is for; decides which wording rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Patient,
    Staff,
    Physician,
}

/// Every kind of message. The name is the template folder under `templates/email/` and the first part
/// of the outbox idempotency key; it is stored in the outbox row but never written into a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// The next supply can be collected from a date (the refill window opens).
    PatientWindowOpens,
    /// The care plan (a taper step) changes on a date.
    PatientPlanChange,
    /// The treatment agreement must be renewed by a date.
    PatientAgreementRenewal,
    /// A visit is due by a date.
    PatientVisitDue,
    /// Follow-up after a missed collection: please call by a date.
    PatientFollowUp,
    /// Staff morning digest.
    StaffMorningDigest,
    /// Physician exception digest.
    PhysicianExceptionDigest,
    /// Immediate alert to physicians for an urgent escalation.
    PhysicianUrgentAlert,
    /// Immediate alert to the privacy officer for a break-the-glass grant.
    PrivacyBreakGlassAlert,
}

impl MessageKind {
    pub const ALL: [MessageKind; 9] = [
        MessageKind::PatientWindowOpens,
        MessageKind::PatientPlanChange,
        MessageKind::PatientAgreementRenewal,
        MessageKind::PatientVisitDue,
        MessageKind::PatientFollowUp,
        MessageKind::StaffMorningDigest,
        MessageKind::PhysicianExceptionDigest,
        MessageKind::PhysicianUrgentAlert,
        MessageKind::PrivacyBreakGlassAlert,
    ];

    /// The template folder name, also the stable name stored in the outbox.
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::PatientWindowOpens => "patient-window-opens",
            MessageKind::PatientPlanChange => "patient-plan-change",
            MessageKind::PatientAgreementRenewal => "patient-agreement-renewal",
            MessageKind::PatientVisitDue => "patient-visit-due",
            MessageKind::PatientFollowUp => "patient-follow-up",
            MessageKind::StaffMorningDigest => "staff-morning-digest",
            MessageKind::PhysicianExceptionDigest => "physician-exception-digest",
            MessageKind::PhysicianUrgentAlert => "physician-urgent-alert",
            MessageKind::PrivacyBreakGlassAlert => "privacy-break-glass-alert",
        }
    }

    pub fn from_name(name: &str) -> Option<MessageKind> {
        MessageKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    pub fn audience(self) -> Audience {
        match self {
            MessageKind::PatientWindowOpens
            | MessageKind::PatientPlanChange
            | MessageKind::PatientAgreementRenewal
            | MessageKind::PatientVisitDue
            | MessageKind::PatientFollowUp => Audience::Patient,
            MessageKind::StaffMorningDigest | MessageKind::PrivacyBreakGlassAlert => Audience::Staff,
            MessageKind::PhysicianExceptionDigest | MessageKind::PhysicianUrgentAlert => Audience::Physician,
        }
    }
}

/// The one moment a patient message is about, in the clinic's local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    Date(NaiveDate),
    DateTime(NaiveDateTime),
}

impl Moment {
    /// The calendar date (for idempotency keys and for cancelling a reminder whose date has passed).
    pub fn date(self) -> NaiveDate {
        match self {
            Moment::Date(date) => date,
            Moment::DateTime(at) => at.date(),
        }
    }

    /// "Friday 12 December 2026" or "Friday 12 December 2026 at 9:30 AM".
    pub fn display(self) -> String {
        match self {
            Moment::Date(date) => date.format("%A %-d %B %Y").to_string(),
            Moment::DateTime(at) => at.format("%A %-d %B %Y at %-I:%M %p").to_string(),
        }
    }
}

/// Which patient notice, for the patient kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatientNoticeKind {
    WindowOpens,
    PlanChange,
    AgreementRenewal,
    VisitDue,
    FollowUp,
}

impl PatientNoticeKind {
    pub fn message_kind(self) -> MessageKind {
        match self {
            PatientNoticeKind::WindowOpens => MessageKind::PatientWindowOpens,
            PatientNoticeKind::PlanChange => MessageKind::PatientPlanChange,
            PatientNoticeKind::AgreementRenewal => MessageKind::PatientAgreementRenewal,
            PatientNoticeKind::VisitDue => MessageKind::PatientVisitDue,
            PatientNoticeKind::FollowUp => MessageKind::PatientFollowUp,
        }
    }
}

/// A patient notice: everything a patient email may carry besides the configured sender name,
/// callback number and sign-in link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientNotice {
    pub kind: PatientNoticeKind,
    /// Opaque patient id for the idempotency key and the outbox row; never rendered.
    pub patient_ref: String,
    pub first_name: String,
    /// The one date or time the message is about.
    pub about: Moment,
}

/// A line of the morning digest's queue summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCount {
    /// Queue status as staff know it ("ready", "held", "needs physician").
    pub status: String,
    pub count: u32,
}

/// A patient on hold whose supply runs out soon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplyRunningOut {
    /// What staff use to find the patient in the app (an MRN or chart number), not a name.
    pub patient_ref: String,
    pub runs_out_on: NaiveDate,
}

/// What is overdue for a patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverdueItem {
    Uds,
    Pdmp,
    Agreement,
}

impl OverdueItem {
    pub fn label(self) -> &'static str {
        match self {
            OverdueItem::Uds => "UDS",
            OverdueItem::Pdmp => "PDMP check",
            OverdueItem::Agreement => "Agreement",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overdue {
    pub patient_ref: String,
    pub item: OverdueItem,
    /// When it fell due, if known (the rules may only say that it is overdue).
    pub due_on: Option<NaiveDate>,
}

/// The staff morning digest. Carries references, not names: the details are behind sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MorningDigest {
    pub clinic_date: NaiveDate,
    pub queue: Vec<StatusCount>,
    pub supply_running_out: Vec<SupplyRunningOut>,
    pub overdue: Vec<Overdue>,
    /// Patients who get no email (no consent), so staff contact them another way.
    pub without_email_consent: Vec<String>,
}

/// One open exception for the physician digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionLine {
    pub patient_ref: String,
    /// Short reason code text chosen by the caller (e.g. "MME above threshold").
    pub summary: String,
    pub opened_on: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionDigest {
    pub clinic_date: NaiveDate,
    pub exceptions: Vec<ExceptionLine>,
    /// Restricted (42 CFR Part 2) records opened with break-the-glass since the last digest.
    pub break_glass: Vec<BreakGlassLine>,
}

/// One break-the-glass access in the physicians' digest: who, which patient (opaque reference), when,
/// for how long. The written reason is read in the application, not mailed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassLine {
    pub user: String,
    pub patient_ref: String,
    /// Clinic-local time of the grant.
    pub granted_at: chrono::NaiveDateTime,
    pub minutes: i64,
}

/// An urgent escalation for physicians, sent at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrgentAlert {
    /// Opaque id of the escalation; part of the idempotency key.
    pub escalation_ref: String,
    pub patient_ref: String,
    pub summary: String,
    /// Clinic-local time it was raised.
    pub raised_at: NaiveDateTime,
}
