//! Decisions as data: the outcome, every reason with its evidence, the tasks, and the policy version.

use chrono::NaiveDate;

/// Refill outcomes in order of severity. The engine never emits "discontinue" or "dismiss": there is
/// no such variant, by design. Only a physician, outside this enum, can stop or cut therapy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Approve,
    ApproveWithTasks,
    Hold,
    Escalate,
    EscalateUrgent,
}

impl Outcome {
    pub const ALL: [Outcome; 5] =
        [Outcome::Approve, Outcome::ApproveWithTasks, Outcome::Hold, Outcome::Escalate, Outcome::EscalateUrgent];

    /// The stable wire name (JSON, database, CLI).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Approve => "APPROVE",
            Outcome::ApproveWithTasks => "APPROVE_WITH_TASKS",
            Outcome::Hold => "HOLD",
            Outcome::Escalate => "ESCALATE",
            Outcome::EscalateUrgent => "ESCALATE_URGENT",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == text)
    }
}

/// Why a rule fired. Codes are stable identifiers: screens translate them, the store keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReasonCode {
    EarlyRequest,
    EarlyRequestSupplyRunsOut,
    EarlyFillAccumulation,
    NaloxoneOfferDue,
    PdmpReviewOverdue,
    PdmpOutsidePrescriber,
    UdsOverdue,
    UdsUnexpectedResult,
    AgreementExpired,
    AgreementVoid,
    AgreementMissing,
    PhysicianReviewOverdue,
    HighMmeReviewed,
    HighMmeReviewOverdue,
    MmeCrossedThreshold,
    MmeUndetermined,
    BenzodiazepineUnacknowledged,
    RegimenChanged,
    LostOrStolenReplacement,
    OudMedicationFromOtherSource,
    OutsideScope,
    OverdoseOrSedationSignal,
    TaperStepDue,
    NoFillHistory,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 24] = [
        ReasonCode::EarlyRequest,
        ReasonCode::EarlyRequestSupplyRunsOut,
        ReasonCode::EarlyFillAccumulation,
        ReasonCode::NaloxoneOfferDue,
        ReasonCode::PdmpReviewOverdue,
        ReasonCode::PdmpOutsidePrescriber,
        ReasonCode::UdsOverdue,
        ReasonCode::UdsUnexpectedResult,
        ReasonCode::AgreementExpired,
        ReasonCode::AgreementVoid,
        ReasonCode::AgreementMissing,
        ReasonCode::PhysicianReviewOverdue,
        ReasonCode::HighMmeReviewed,
        ReasonCode::HighMmeReviewOverdue,
        ReasonCode::MmeCrossedThreshold,
        ReasonCode::MmeUndetermined,
        ReasonCode::BenzodiazepineUnacknowledged,
        ReasonCode::RegimenChanged,
        ReasonCode::LostOrStolenReplacement,
        ReasonCode::OudMedicationFromOtherSource,
        ReasonCode::OutsideScope,
        ReasonCode::OverdoseOrSedationSignal,
        ReasonCode::TaperStepDue,
        ReasonCode::NoFillHistory,
    ];

    /// The stable wire name, snake_case.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::EarlyRequest => "early_request",
            ReasonCode::EarlyRequestSupplyRunsOut => "early_request_supply_runs_out",
            ReasonCode::EarlyFillAccumulation => "early_fill_accumulation",
            ReasonCode::NaloxoneOfferDue => "naloxone_offer_due",
            ReasonCode::PdmpReviewOverdue => "pdmp_review_overdue",
            ReasonCode::PdmpOutsidePrescriber => "pdmp_outside_prescriber",
            ReasonCode::UdsOverdue => "uds_overdue",
            ReasonCode::UdsUnexpectedResult => "uds_unexpected_result",
            ReasonCode::AgreementExpired => "agreement_expired",
            ReasonCode::AgreementVoid => "agreement_void",
            ReasonCode::AgreementMissing => "agreement_missing",
            ReasonCode::PhysicianReviewOverdue => "physician_review_overdue",
            ReasonCode::HighMmeReviewed => "high_mme_reviewed",
            ReasonCode::HighMmeReviewOverdue => "high_mme_review_overdue",
            ReasonCode::MmeCrossedThreshold => "mme_crossed_threshold",
            ReasonCode::MmeUndetermined => "mme_undetermined",
            ReasonCode::BenzodiazepineUnacknowledged => "benzodiazepine_unacknowledged",
            ReasonCode::RegimenChanged => "regimen_changed",
            ReasonCode::LostOrStolenReplacement => "lost_or_stolen_replacement",
            ReasonCode::OudMedicationFromOtherSource => "oud_medication_from_other_source",
            ReasonCode::OutsideScope => "outside_scope",
            ReasonCode::OverdoseOrSedationSignal => "overdose_or_sedation_signal",
            ReasonCode::TaperStepDue => "taper_step_due",
            ReasonCode::NoFillHistory => "no_fill_history",
        }
    }

    pub fn parse(text: &str) -> Option<ReasonCode> {
        ReasonCode::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// A task staff must complete; some must be done before the prescription is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Task {
    OfferNaloxone,
    ReviewPdmp,
    CollectUds,
    ConfirmatoryTest,
    RenewAgreement,
    ScheduleReview,
}

impl Task {
    pub const ALL: [Task; 6] = [
        Task::OfferNaloxone,
        Task::ReviewPdmp,
        Task::CollectUds,
        Task::ConfirmatoryTest,
        Task::RenewAgreement,
        Task::ScheduleReview,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Task::OfferNaloxone => "offer_naloxone",
            Task::ReviewPdmp => "review_pdmp",
            Task::CollectUds => "collect_uds",
            Task::ConfirmatoryTest => "confirmatory_test",
            Task::RenewAgreement => "renew_agreement",
            Task::ScheduleReview => "schedule_review",
        }
    }

    pub fn parse(text: &str) -> Option<Task> {
        Task::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// Tasks that must be done before the prescription is released (policy: PDMP before release).
    pub fn blocks_release(self) -> bool {
        matches!(self, Task::ReviewPdmp)
    }
}

/// One value a rule looked at, named so a screen can print "PDMP last reviewed 2026-08-01, 114 days
/// ago; policy 90".
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub name: &'static str,
    pub value: EvidenceValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EvidenceValue {
    Date(NaiveDate),
    Number(f64),
    Integer(i64),
    Text(String),
    Flag(bool),
    Missing,
}

impl Evidence {
    pub fn date(name: &'static str, value: NaiveDate) -> Self {
        Evidence { name, value: EvidenceValue::Date(value) }
    }
    pub fn number(name: &'static str, value: f64) -> Self {
        Evidence { name, value: EvidenceValue::Number(value) }
    }
    pub fn integer(name: &'static str, value: i64) -> Self {
        Evidence { name, value: EvidenceValue::Integer(value) }
    }
    pub fn text(name: &'static str, value: impl Into<String>) -> Self {
        Evidence { name, value: EvidenceValue::Text(value.into()) }
    }
    pub fn flag(name: &'static str, value: bool) -> Self {
        Evidence { name, value: EvidenceValue::Flag(value) }
    }
    pub fn missing(name: &'static str) -> Self {
        Evidence { name, value: EvidenceValue::Missing }
    }
}

/// Why one rule fired: its code, the outcome it asks for, its evidence and the task it adds.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub code: ReasonCode,
    pub outcome: Outcome,
    pub evidence: Vec<Evidence>,
    pub task: Option<Task>,
    /// The reason rests on a fact labelled as a 42 CFR Part 2 record: screens show "restricted
    /// information: physician review required" to users without access.
    pub restricted: bool,
}

/// A refill decision: the most severe outcome over all rules that fired, with every reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub outcome: Outcome,
    pub reasons: Vec<Reason>,
    pub tasks: Vec<Task>,
    /// Date the hold lifts (on-time threshold), when the outcome is a timing hold.
    pub eligible_on: Option<NaiveDate>,
    /// Daily MME of the regimen considered; `None` when undetermined or when only excluded products.
    pub total_daily_mme: Option<f64>,
    pub policy_version: String,
}

impl Decision {
    /// Build a decision from the reasons that fired: the outcome is the most severe one (APPROVE when
    /// none fired), restricted reasons raise it to at least ESCALATE, tasks are de-duplicated in order.
    pub fn from_reasons(
        reasons: Vec<Reason>,
        eligible_on: Option<NaiveDate>,
        total_daily_mme: Option<f64>,
        policy_version: impl Into<String>,
    ) -> Decision {
        let mut outcome = reasons.iter().map(|r| r.outcome).max().unwrap_or(Outcome::Approve);
        if reasons.iter().any(|r| r.restricted) {
            outcome = outcome.max(Outcome::Escalate);
        }
        let mut tasks: Vec<Task> = Vec::new();
        for task in reasons.iter().filter_map(|r| r.task) {
            if !tasks.contains(&task) {
                tasks.push(task);
            }
        }
        Decision { outcome, reasons, tasks, eligible_on, total_daily_mme, policy_version: policy_version.into() }
    }
}
