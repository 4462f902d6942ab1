//! Decisions as data: the outcome, every reason with its evidence, the tasks, and the policy version.

use std::borrow::Cow;

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
    UdsPrescribedNotTested,
    UdsSpecimenInvalid,
    LostOrStolenRepeat,
    AberrantPattern,
    ErLaNotOpioidTolerant,
    AgreementIncomplete,
    PatientStatement,
    /// A hold or exception is unresolved and the supply runs out before a physician could act later:
    /// urgent, with a bridge offered (refill-cycle.md, "Never a silent lapse").
    SupplyRunsOutUnresolved,
    /// A new or transferred patient on a regimen from a previous prescriber: continued while the
    /// clinic reviews the case.
    TransferredPatientContinued,
    /// A recorded request asks for a different dose or product.
    DoseChangeRequested,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 34] = [
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
        ReasonCode::UdsPrescribedNotTested,
        ReasonCode::UdsSpecimenInvalid,
        ReasonCode::LostOrStolenRepeat,
        ReasonCode::AberrantPattern,
        ReasonCode::ErLaNotOpioidTolerant,
        ReasonCode::AgreementIncomplete,
        ReasonCode::PatientStatement,
        ReasonCode::SupplyRunsOutUnresolved,
        ReasonCode::TransferredPatientContinued,
        ReasonCode::DoseChangeRequested,
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
            ReasonCode::UdsPrescribedNotTested => "uds_prescribed_not_tested",
            ReasonCode::UdsSpecimenInvalid => "uds_specimen_invalid",
            ReasonCode::LostOrStolenRepeat => "lost_or_stolen_repeat",
            ReasonCode::AberrantPattern => "aberrant_pattern",
            ReasonCode::ErLaNotOpioidTolerant => "er_la_not_opioid_tolerant",
            ReasonCode::AgreementIncomplete => "agreement_incomplete",
            ReasonCode::PatientStatement => "patient_statement",
            ReasonCode::SupplyRunsOutUnresolved => "supply_runs_out_unresolved",
            ReasonCode::TransferredPatientContinued => "transferred_patient_continued",
            ReasonCode::DoseChangeRequested => "dose_change_requested",
        }
    }

    pub fn parse(text: &str) -> Option<ReasonCode> {
        ReasonCode::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// Whether the reason is about the refill being decided (its timing, its regimen, the request) rather
    /// than monitoring that falls due on its own dates. Refill reasons wait for the refill window;
    /// monitoring reasons show whenever they are due.
    pub fn concerns_the_refill(self) -> bool {
        use ReasonCode as C;
        matches!(
            self,
            C::EarlyRequest
                | C::EarlyRequestSupplyRunsOut
                | C::EarlyFillAccumulation
                | C::NoFillHistory
                | C::RegimenChanged
                | C::LostOrStolenReplacement
                | C::LostOrStolenRepeat
                | C::ErLaNotOpioidTolerant
                | C::MmeCrossedThreshold
                | C::MmeUndetermined
                | C::TaperStepDue
                | C::SupplyRunsOutUnresolved
                | C::TransferredPatientContinued
                | C::DoseChangeRequested
        )
    }

    /// Whether the reason is about the fill timing alone: a hold for it lifts by itself on the
    /// eligible date.
    pub fn is_timing(self) -> bool {
        matches!(self, ReasonCode::EarlyRequest | ReasonCode::EarlyFillAccumulation)
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
    /// Borrowed when the text is one of the rules' fixed words (a state, a kind, a condition), so
    /// recording it allocates nothing; owned when built from facts or read back from storage.
    Text(Cow<'static, str>),
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
    pub fn text(name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
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
    /// Whether the refill window is open (the refill was decided) or not yet (monitoring only).
    pub window: RefillWindow,
    /// Reasons that still fire but that a standing physician decision covers: shown, not counted.
    pub covered: Vec<Reason>,
    /// The standing physician decision applied, by id.
    pub standing: Option<i64>,
}

/// Where the patient is in the refill cycle on the decision's date (refill-cycle.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RefillWindow {
    /// The upcoming refill was decided (the window is open, or a request was recorded).
    #[default]
    Open,
    /// The supply lasts beyond the lead time: only monitoring was decided.
    NotDue,
    /// Staff prepared the refill and the dispense has not been recorded yet: only a task or something
    /// for a physician brings the patient back to the queue.
    Prepared,
}

impl RefillWindow {
    pub fn as_str(self) -> &'static str {
        match self {
            RefillWindow::Open => "open",
            RefillWindow::NotDue => "not_due",
            RefillWindow::Prepared => "prepared",
        }
    }

    pub fn parse(text: &str) -> Option<RefillWindow> {
        [RefillWindow::Open, RefillWindow::NotDue, RefillWindow::Prepared].into_iter().find(|w| w.as_str() == text)
    }
}

impl Decision {
    /// Whether the patient belongs on today's staff queue: the refill window is open (or a request was
    /// recorded), or a task fell due, or something needs a physician. A patient who is simply not due
    /// yet, or whose prepared refill waits for the pharmacy, is decided and recorded but not put in
    /// front of staff.
    pub fn needs_staff_today(&self) -> bool {
        match self.window {
            // The refill is decided: staff see it, a held early request included (the patient who asked
            // hears when it can be filled); "early" only ever comes from a recorded request.
            RefillWindow::Open => true,
            // Not due: only monitoring that fell due (a task) or something for a physician.
            RefillWindow::NotDue => self.outcome >= Outcome::Escalate || !self.tasks.is_empty(),
            // Prepared: only a task that falls due (a drug test drawn for today) or a physician matter.
            RefillWindow::Prepared => self.outcome >= Outcome::Escalate || !self.tasks.is_empty(),
        }
    }

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
        Decision {
            outcome,
            reasons,
            tasks,
            eligible_on,
            total_daily_mme,
            policy_version: policy_version.into(),
            window: RefillWindow::Open,
            covered: Vec::new(),
            standing: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// The stable JSON form of a decision. The store persists decisions in this form and the web API
// returns it, so it is a stored contract: names come from the `as_str` tables above, never from Rust
// identifiers, and reading is lenient (unknown fields are ignored, optional fields may be absent) so a
// decision written by a newer version still reads.
//
// {"outcome": "HOLD",
//  "reasons": [{"code": "early_request", "outcome": "HOLD",
//               "evidence": {"last_fill_on": "2026-11-05", "days_elapsed": 25, ...},
//               "task": null, "restricted": false}],
//  "tasks": ["review_pdmp"], "policy_version": "sha256:...", "total_daily_mme": 45.0,
//  "eligible_on": "2026-12-01"}
//
// Evidence values map to JSON as: date -> "YYYY-MM-DD" string, number -> JSON float, integer -> JSON
// integer, text -> string, flag -> bool, missing -> null. Reading maps a string that is an ISO date
// back to a date.

mod wire {
    use std::collections::BTreeSet;
    use std::fmt;
    use std::sync::{Mutex, OnceLock};

    use chrono::NaiveDate;
    use serde::de::{self, Deserializer, MapAccess, Visitor};
    use serde::ser::{SerializeMap, SerializeStruct, Serializer};
    use serde::{Deserialize, Serialize};

    use super::{Decision, Evidence, EvidenceValue, Outcome, Reason, ReasonCode, RefillWindow, Task};

    macro_rules! string_enum_serde {
        ($type:ty, $what:literal) => {
            impl Serialize for $type {
                fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                    serializer.serialize_str(self.as_str())
                }
            }

            impl<'de> Deserialize<'de> for $type {
                fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                    <$type>::parse(&text).ok_or_else(|| {
                        let known: Vec<&str> = <$type>::ALL.iter().map(|v| v.as_str()).collect();
                        de::Error::custom(format!("unknown {} {:?}, expected one of {}", $what, text, known.join(", ")))
                    })
                }
            }
        };
    }

    string_enum_serde!(Outcome, "outcome");
    string_enum_serde!(ReasonCode, "reason code");
    string_enum_serde!(Task, "task");

    impl Serialize for EvidenceValue {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            match self {
                EvidenceValue::Date(date) => serializer.collect_str(&date.format("%Y-%m-%d")),
                EvidenceValue::Number(value) if value.is_finite() => serializer.serialize_f64(*value),
                EvidenceValue::Number(_) | EvidenceValue::Missing => serializer.serialize_none(),
                EvidenceValue::Integer(value) => serializer.serialize_i64(*value),
                EvidenceValue::Text(text) => serializer.serialize_str(text),
                EvidenceValue::Flag(flag) => serializer.serialize_bool(*flag),
            }
        }
    }

    impl<'de> Deserialize<'de> for EvidenceValue {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct ValueVisitor;
            impl<'de> Visitor<'de> for ValueVisitor {
                type Value = EvidenceValue;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an evidence value: date string, number, string, bool or null")
                }
                fn visit_bool<E: de::Error>(self, v: bool) -> Result<EvidenceValue, E> {
                    Ok(EvidenceValue::Flag(v))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<EvidenceValue, E> {
                    Ok(EvidenceValue::Integer(v))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<EvidenceValue, E> {
                    Ok(i64::try_from(v).map(EvidenceValue::Integer).unwrap_or(EvidenceValue::Number(v as f64)))
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<EvidenceValue, E> {
                    Ok(EvidenceValue::Number(v))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<EvidenceValue, E> {
                    Ok(parse_iso_date(v)
                        .map(EvidenceValue::Date)
                        .unwrap_or_else(|| EvidenceValue::Text(v.to_string().into())))
                }
                fn visit_unit<E: de::Error>(self) -> Result<EvidenceValue, E> {
                    Ok(EvidenceValue::Missing)
                }
                fn visit_none<E: de::Error>(self) -> Result<EvidenceValue, E> {
                    Ok(EvidenceValue::Missing)
                }
                fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<EvidenceValue, D::Error> {
                    EvidenceValue::deserialize(d)
                }
            }
            deserializer.deserialize_any(ValueVisitor)
        }
    }

    /// Only the exact `YYYY-MM-DD` shape reads back as a date, so free text is not mistaken for one.
    fn parse_iso_date(text: &str) -> Option<NaiveDate> {
        let bytes = text.as_bytes();
        let shaped = bytes.len() == 10
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && bytes.iter().enumerate().all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
        if shaped { NaiveDate::parse_from_str(text, "%Y-%m-%d").ok() } else { None }
    }

    /// Evidence names are `&'static str` in memory. Names read back from storage are interned: each
    /// distinct name is allocated once per process (the set of names is small and fixed by the code
    /// that wrote them), so reading many stored decisions does not grow memory.
    fn intern(name: &str) -> &'static str {
        static NAMES: OnceLock<Mutex<BTreeSet<&'static str>>> = OnceLock::new();
        let names = NAMES.get_or_init(|| Mutex::new(BTreeSet::new()));
        let mut names = names.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(existing) = names.get(name) {
            return existing;
        }
        let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
        names.insert(leaked);
        leaked
    }

    /// Serializes `[Evidence]` as one JSON object keyed by evidence name, in the order recorded.
    struct EvidenceMap<'a>(&'a [Evidence]);

    impl Serialize for EvidenceMap<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut map = serializer.serialize_map(Some(self.0.len()))?;
            for evidence in self.0 {
                map.serialize_entry(evidence.name, &evidence.value)?;
            }
            map.end()
        }
    }

    struct EvidenceList(Vec<Evidence>);

    impl<'de> Deserialize<'de> for EvidenceList {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct MapVisitor;
            impl<'de> Visitor<'de> for MapVisitor {
                type Value = EvidenceList;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object of evidence values keyed by name")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<EvidenceList, A::Error> {
                    let mut list = Vec::new();
                    while let Some((name, value)) = access.next_entry::<std::borrow::Cow<'de, str>, EvidenceValue>()? {
                        list.push(Evidence { name: intern(&name), value });
                    }
                    Ok(EvidenceList(list))
                }
            }
            deserializer.deserialize_map(MapVisitor)
        }
    }

    impl Serialize for Reason {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut s = serializer.serialize_struct("Reason", 5)?;
            s.serialize_field("code", &self.code)?;
            s.serialize_field("outcome", &self.outcome)?;
            s.serialize_field("evidence", &EvidenceMap(&self.evidence))?;
            s.serialize_field("task", &self.task)?;
            s.serialize_field("restricted", &self.restricted)?;
            s.end()
        }
    }

    #[derive(Deserialize)]
    struct ReasonWire {
        code: ReasonCode,
        outcome: Outcome,
        #[serde(default)]
        evidence: Option<EvidenceList>,
        #[serde(default)]
        task: Option<Task>,
        #[serde(default)]
        restricted: bool,
    }

    impl<'de> Deserialize<'de> for Reason {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let wire = ReasonWire::deserialize(deserializer)?;
            Ok(Reason {
                code: wire.code,
                outcome: wire.outcome,
                evidence: wire.evidence.map(|e| e.0).unwrap_or_default(),
                task: wire.task,
                restricted: wire.restricted,
            })
        }
    }

    impl Serialize for Decision {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut s = serializer.serialize_struct("Decision", 9)?;
            s.serialize_field("outcome", &self.outcome)?;
            s.serialize_field("reasons", &self.reasons)?;
            s.serialize_field("tasks", &self.tasks)?;
            s.serialize_field("policy_version", &self.policy_version)?;
            s.serialize_field("total_daily_mme", &self.total_daily_mme.filter(|v| v.is_finite()))?;
            s.serialize_field("eligible_on", &self.eligible_on)?;
            s.serialize_field("window", self.window.as_str())?;
            s.serialize_field("covered", &self.covered)?;
            s.serialize_field("standing_decision", &self.standing)?;
            s.end()
        }
    }

    #[derive(Deserialize)]
    struct DecisionWire {
        outcome: Outcome,
        #[serde(default)]
        reasons: Vec<Reason>,
        #[serde(default)]
        tasks: Vec<Task>,
        policy_version: String,
        #[serde(default)]
        total_daily_mme: Option<f64>,
        #[serde(default)]
        eligible_on: Option<NaiveDate>,
        #[serde(default)]
        window: Option<String>,
        #[serde(default)]
        covered: Vec<Reason>,
        #[serde(default)]
        standing_decision: Option<i64>,
    }

    impl<'de> Deserialize<'de> for Decision {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let wire = DecisionWire::deserialize(deserializer)?;
            let window = match wire.window.as_deref() {
                None => RefillWindow::Open,
                Some(text) => RefillWindow::parse(text)
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown refill window {text:?}")))?,
            };
            Ok(Decision {
                outcome: wire.outcome,
                reasons: wire.reasons,
                tasks: wire.tasks,
                eligible_on: wire.eligible_on,
                total_daily_mme: wire.total_daily_mme,
                policy_version: wire.policy_version,
                window,
                covered: wire.covered,
                standing: wire.standing_decision,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Decision {
        let date = NaiveDate::from_ymd_opt(2026, 8, 1).unwrap();
        Decision::from_reasons(
            vec![
                Reason {
                    code: ReasonCode::PdmpReviewOverdue,
                    outcome: Outcome::ApproveWithTasks,
                    evidence: vec![
                        Evidence::date("pdmp_last_reviewed", date),
                        Evidence::integer("pdmp_age_days", 114),
                        Evidence::integer("policy_max_days", 90),
                    ],
                    task: Some(Task::ReviewPdmp),
                    restricted: false,
                },
                Reason {
                    code: ReasonCode::EarlyRequest,
                    outcome: Outcome::Hold,
                    evidence: vec![
                        Evidence::number("on_time_fraction", 0.85),
                        Evidence::text("note", "free text"),
                        Evidence::flag("flag", true),
                        Evidence::missing("nothing"),
                    ],
                    task: None,
                    restricted: true,
                },
            ],
            Some(date),
            Some(49.95),
            "sha256:abc",
        )
    }

    #[test]
    fn json_form_is_the_documented_contract() {
        let json = serde_json::to_value(sample()).unwrap();
        let expected = serde_json::json!({
            "outcome": "ESCALATE",
            "reasons": [
                {"code": "pdmp_review_overdue", "outcome": "APPROVE_WITH_TASKS",
                 "evidence": {"pdmp_last_reviewed": "2026-08-01", "pdmp_age_days": 114, "policy_max_days": 90},
                 "task": "review_pdmp", "restricted": false},
                {"code": "early_request", "outcome": "HOLD",
                 "evidence": {"on_time_fraction": 0.85, "note": "free text", "flag": true, "nothing": null},
                 "task": null, "restricted": true}
            ],
            "tasks": ["review_pdmp"],
            "policy_version": "sha256:abc",
            "total_daily_mme": 49.95,
            "eligible_on": "2026-08-01",
            "window": "open",
            "covered": [],
            "standing_decision": null
        });
        assert_eq!(json, expected);
    }

    #[test]
    fn json_round_trips() {
        let decision = sample();
        let text = serde_json::to_string(&decision).unwrap();
        let back: Decision = serde_json::from_str(&text).unwrap();
        assert_eq!(back, decision);
        // Evidence order is kept as recorded.
        assert!(text.find("pdmp_last_reviewed").unwrap() < text.find("pdmp_age_days").unwrap());
    }

    #[test]
    fn reading_is_lenient_but_rejects_unknown_codes() {
        let minimal: Decision =
            serde_json::from_str(r#"{"outcome": "APPROVE", "policy_version": "v1", "extra": 1}"#).unwrap();
        assert_eq!(minimal.outcome, Outcome::Approve);
        assert!(minimal.reasons.is_empty() && minimal.eligible_on.is_none() && minimal.total_daily_mme.is_none());
        let error = serde_json::from_str::<Decision>(r#"{"outcome": "DISCONTINUE", "policy_version": "v1"}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown outcome"), "{error}");
    }

    #[test]
    fn wire_names_are_unique_and_parse_back() {
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::parse(outcome.as_str()), Some(outcome));
        }
        for code in ReasonCode::ALL {
            assert_eq!(ReasonCode::parse(code.as_str()), Some(code));
        }
        for task in Task::ALL {
            assert_eq!(Task::parse(task.as_str()), Some(task));
        }
    }
}
