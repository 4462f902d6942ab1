//! The effective clinic policy: every threshold the rules use, grouped by module, with defaults that
//! match config/policy.toml and clinical-rules.md. The shell parses the policy file into `Policy`.
//!
//! The policy file is a contract with the supervising physician: unknown keys are rejected (a typo must
//! not silently fall back to a default), missing keys take the defaults below, and `problems` rejects
//! values out of range with the key named. Some rows are safety floors the file cannot relax: an
//! overdose or sedation signal always escalates urgently, and undetermined MME, care outside the
//! guideline's scope, opioid-use-disorder medication from another source, lost or stolen supply (and
//! its repeat), an aberrant pattern, an extended-release opioid for a patient who is not opioid
//! tolerant and a changed regimen always go at least to a physician (ESCALATE).

use serde::{Deserialize, Serialize};

use crate::agreement::AgreementPolicy;
use crate::decision::{Outcome, ReasonCode};
use crate::error::RulesError;
use crate::mme::FactorSet;
use crate::taper::TaperPolicy;
use crate::uds::UdsPolicy;

/// The whole policy file: `version` (optional), `[general]`, `[refill]` with `[refill.outcomes]`, and
/// the `[uds]`, `[taper]`, `[agreement]` sections of their modules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// An explicit version string; without one the shell derives `sha256:...` from the effective policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    pub general: GeneralPolicy,
    #[serde(default)]
    pub refill: RefillPolicy,
    #[serde(default)]
    pub uds: UdsPolicy,
    #[serde(default)]
    pub taper: TaperPolicy,
    #[serde(default)]
    pub agreement: AgreementPolicy,
}

/// `[general]`: settings every module shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneralPolicy {
    /// MME conversion factors: `cdc2022` (default, CDC 2022 Table 1) or `cdc2016` (CDC 2016 Table 4).
    #[serde(with = "factor_set_name")]
    pub factor_set: FactorSet,
}

impl Default for GeneralPolicy {
    fn default() -> Self {
        GeneralPolicy { factor_set: FactorSet::Cdc2022 }
    }
}

/// `[refill]`: thresholds of the refill rules. Day counts are clinic-local calendar days; an item is
/// current while its age in days is at most the limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefillPolicy {
    /// A refill is on time when days elapsed >= this fraction of the last fill's days supply (0.85:
    /// day 26 of 30 yes, day 25 no) [Medicaid 85% norm, clinical-rules.md §5.3].
    pub on_time_fraction: f64,
    /// Window for the early-fill accumulation check (days) [§5.3].
    pub early_fill_lookback_days: i64,
    /// Days supplied in the window may exceed the days elapsed by at most this many days [§5.3].
    pub early_fill_allowance_days: i64,
    /// PDMP review current while its age is <= this (days) [CDC22 Rec 9: at least every 3 months].
    pub pdmp_review_max_age_days: i64,
    /// PDMP findings filled within this many days before the request are checked for outside
    /// prescribers [CDC22 Rec 9].
    pub pdmp_finding_lookback_days: i64,
    /// Unreviewed UDS results collected within this many days are interpreted for unexpected or
    /// missing analytes [CDC22 Rec 10; clinical-rules.md §4: at least one test per 365 days].
    pub uds_result_lookback_days: i64,
    /// Physician benefit-risk review current while its age is <= this (days) [CDC22 Rec 7: every 3
    /// months or more often].
    pub physician_review_max_age_days: i64,
    /// A physician acknowledgement (concurrent benzodiazepine, outside controlled-substance prescriber)
    /// counts while its age is <= this (days): the review interval [CDC22 Rec 7, 11].
    pub acknowledgement_max_age_days: i64,
    /// Total daily MME at or above which naloxone is offered [CDC22 Rec 8, MMWR p.14].
    pub naloxone_mme_threshold: f64,
    /// A naloxone offer, decline or dispense counts for this many days [CQF-CDS Rec 8, clinic: 12 months].
    pub naloxone_offer_valid_days: i64,
    /// A completed taper is "recent" (naloxone trigger: lost tolerance) for this many days after its
    /// last step [CDC22 Rec 8: "risk of returning to a dose after lost tolerance"].
    pub naloxone_recent_taper_days: i64,
    /// Total daily MME at or above which the physician review must be current [CDC16 Rec 5; VADOD17].
    pub high_mme_threshold: f64,
    /// Crossing one of these totals upwards since the last decision escalates [CDC22 Rec 4].
    pub mme_crossing_thresholds: Vec<f64>,
    /// Patients younger than this are outside the guideline's scope [CDC22: adults >= 18].
    pub minimum_age_years: u32,
    /// An overdose or sedation signal escalates urgently for this many days after it was recorded,
    /// unless a physician benefit-risk review is dated after it [CDC22 Rec 5; HHS19].
    pub overdose_signal_window_days: i64,
    /// The refill window opens this many days before the eligible date: the daily run decides the
    /// upcoming refill from then on, so staff can prepare it and a physician can look in time
    /// [clinic practice; anticoagulation-clinic model, refill-cycle.md]. 0 to 14.
    pub lead_days: i64,
    /// A lost or stolen report within this many days of an earlier one is a repeat: its own reason
    /// [clinical-rules.md §5.2: no public guideline fixes N per 12 months; clinic parameter].
    pub lost_or_stolen_window_days: i64,
    /// Early requests, lost or stolen reports and unexpected drug-test results within this many days
    /// are read together as a pattern [VADOD17 Taper Decision Tool: unsafe behaviours; §5].
    pub aberrant_lookback_days: i64,
    /// That many such events (of any kind) within the lookback form an aberrant-pattern reason.
    pub aberrant_min_events: i64,
    /// Opioid tolerant: at least this daily MME for at least `opioid_tolerant_days` days before an
    /// extended-release or long-acting opioid [CDC22 Rec 3; FDA labelling: 60 mg oral morphine a day
    /// for a week or longer].
    pub opioid_tolerant_mme: f64,
    pub opioid_tolerant_days: i64,
    /// Patient statements recorded within this many days are shown with the reasons.
    pub patient_statement_lookback_days: i64,
    /// The outcome each rule asks for (`[refill.outcomes]`).
    pub outcomes: RuleOutcomes,
}

impl Default for RefillPolicy {
    fn default() -> Self {
        RefillPolicy {
            on_time_fraction: 0.85,
            early_fill_lookback_days: 180,
            early_fill_allowance_days: 7,
            pdmp_review_max_age_days: 90,
            pdmp_finding_lookback_days: 90,
            uds_result_lookback_days: 365,
            physician_review_max_age_days: 90,
            acknowledgement_max_age_days: 90,
            naloxone_mme_threshold: 50.0,
            naloxone_offer_valid_days: 365,
            naloxone_recent_taper_days: 180,
            high_mme_threshold: 90.0,
            mme_crossing_thresholds: vec![50.0, 90.0],
            minimum_age_years: 18,
            overdose_signal_window_days: 90,
            lead_days: 7,
            lost_or_stolen_window_days: 365,
            aberrant_lookback_days: 180,
            aberrant_min_events: 3,
            opioid_tolerant_mme: 60.0,
            opioid_tolerant_days: 7,
            patient_statement_lookback_days: 90,
            outcomes: RuleOutcomes::default(),
        }
    }
}

/// `[refill.outcomes]`: one row per rule, the outcome it asks for when it fires. Keys are the reason
/// codes; values APPROVE, APPROVE_WITH_TASKS, HOLD, ESCALATE or ESCALATE_URGENT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleOutcomes {
    pub early_request: Outcome,
    pub early_fill_accumulation: Outcome,
    pub early_request_supply_runs_out: Outcome,
    pub no_fill_history: Outcome,
    pub naloxone_offer_due: Outcome,
    pub pdmp_review_overdue: Outcome,
    pub pdmp_outside_prescriber: Outcome,
    pub uds_overdue: Outcome,
    pub uds_unexpected_result: Outcome,
    pub agreement_expired: Outcome,
    pub agreement_void: Outcome,
    pub agreement_missing: Outcome,
    pub physician_review_overdue: Outcome,
    pub high_mme_reviewed: Outcome,
    pub high_mme_review_overdue: Outcome,
    pub mme_crossed_threshold: Outcome,
    pub mme_undetermined: Outcome,
    pub benzodiazepine_unacknowledged: Outcome,
    pub regimen_changed: Outcome,
    pub lost_or_stolen_replacement: Outcome,
    pub oud_medication_from_other_source: Outcome,
    pub outside_scope: Outcome,
    pub overdose_or_sedation_signal: Outcome,
    pub uds_prescribed_not_tested: Outcome,
    pub uds_specimen_invalid: Outcome,
    pub lost_or_stolen_repeat: Outcome,
    pub aberrant_pattern: Outcome,
    pub er_la_not_opioid_tolerant: Outcome,
    pub agreement_incomplete: Outcome,
    pub patient_statement: Outcome,
}

impl Default for RuleOutcomes {
    fn default() -> Self {
        use Outcome::*;
        RuleOutcomes {
            early_request: Hold,
            early_fill_accumulation: Hold,
            early_request_supply_runs_out: Escalate,
            no_fill_history: Escalate,
            naloxone_offer_due: ApproveWithTasks,
            pdmp_review_overdue: ApproveWithTasks,
            pdmp_outside_prescriber: Escalate,
            uds_overdue: ApproveWithTasks,
            uds_unexpected_result: Escalate,
            agreement_expired: ApproveWithTasks,
            agreement_void: ApproveWithTasks,
            agreement_missing: ApproveWithTasks,
            physician_review_overdue: Escalate,
            high_mme_reviewed: Approve,
            high_mme_review_overdue: Escalate,
            mme_crossed_threshold: Escalate,
            mme_undetermined: Escalate,
            benzodiazepine_unacknowledged: Escalate,
            regimen_changed: Escalate,
            lost_or_stolen_replacement: Escalate,
            oud_medication_from_other_source: Escalate,
            outside_scope: Escalate,
            overdose_or_sedation_signal: EscalateUrgent,
            uds_prescribed_not_tested: ApproveWithTasks,
            uds_specimen_invalid: ApproveWithTasks,
            lost_or_stolen_repeat: Escalate,
            aberrant_pattern: Escalate,
            er_la_not_opioid_tolerant: Escalate,
            agreement_incomplete: ApproveWithTasks,
            patient_statement: Approve,
        }
    }
}

impl RuleOutcomes {
    /// The outcome configured for a rule. Codes that no row configures (rules owned by other modules)
    /// escalate, so a new code can never approve silently.
    pub fn for_code(&self, code: ReasonCode) -> Outcome {
        use ReasonCode as C;
        match code {
            C::EarlyRequest => self.early_request,
            C::EarlyRequestSupplyRunsOut => self.early_request_supply_runs_out,
            C::EarlyFillAccumulation => self.early_fill_accumulation,
            C::NaloxoneOfferDue => self.naloxone_offer_due,
            C::PdmpReviewOverdue => self.pdmp_review_overdue,
            C::PdmpOutsidePrescriber => self.pdmp_outside_prescriber,
            C::UdsOverdue => self.uds_overdue,
            C::UdsUnexpectedResult => self.uds_unexpected_result,
            C::AgreementExpired => self.agreement_expired,
            C::AgreementVoid => self.agreement_void,
            C::AgreementMissing => self.agreement_missing,
            C::PhysicianReviewOverdue => self.physician_review_overdue,
            C::HighMmeReviewed => self.high_mme_reviewed,
            C::HighMmeReviewOverdue => self.high_mme_review_overdue,
            C::MmeCrossedThreshold => self.mme_crossed_threshold,
            C::MmeUndetermined => self.mme_undetermined,
            C::BenzodiazepineUnacknowledged => self.benzodiazepine_unacknowledged,
            C::RegimenChanged => self.regimen_changed,
            C::LostOrStolenReplacement => self.lost_or_stolen_replacement,
            C::OudMedicationFromOtherSource => self.oud_medication_from_other_source,
            C::OutsideScope => self.outside_scope,
            C::OverdoseOrSedationSignal => self.overdose_or_sedation_signal,
            C::NoFillHistory => self.no_fill_history,
            // Safety rules, not configurable: a supply about to run out with nothing decided needs a
            // physician now; a transferred patient is continued while the clinic reviews the case.
            C::SupplyRunsOutUnresolved => Outcome::EscalateUrgent,
            C::TransferredPatientContinued => Outcome::ApproveWithTasks,
            C::UdsPrescribedNotTested => self.uds_prescribed_not_tested,
            C::UdsSpecimenInvalid => self.uds_specimen_invalid,
            C::LostOrStolenRepeat => self.lost_or_stolen_repeat,
            C::AberrantPattern => self.aberrant_pattern,
            C::ErLaNotOpioidTolerant => self.er_la_not_opioid_tolerant,
            C::AgreementIncomplete => self.agreement_incomplete,
            C::PatientStatement => self.patient_statement,
            _ => Outcome::Escalate,
        }
    }

    /// The safety floors: (row, the least severe outcome the file may configure). The policy file
    /// cannot relax these (clinical-rules.md: only a physician decides; HHS19: urgent when
    /// life-threatening).
    pub fn floors(&self) -> [(&'static str, Outcome, Outcome); 9] {
        [
            ("overdose_or_sedation_signal", self.overdose_or_sedation_signal, Outcome::EscalateUrgent),
            ("mme_undetermined", self.mme_undetermined, Outcome::Escalate),
            ("outside_scope", self.outside_scope, Outcome::Escalate),
            ("oud_medication_from_other_source", self.oud_medication_from_other_source, Outcome::Escalate),
            ("lost_or_stolen_replacement", self.lost_or_stolen_replacement, Outcome::Escalate),
            ("regimen_changed", self.regimen_changed, Outcome::Escalate),
            ("lost_or_stolen_repeat", self.lost_or_stolen_repeat, Outcome::Escalate),
            ("aberrant_pattern", self.aberrant_pattern, Outcome::Escalate),
            ("er_la_not_opioid_tolerant", self.er_la_not_opioid_tolerant, Outcome::Escalate),
        ]
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::defaults()
    }
}

impl Policy {
    /// The built-in policy: the same values as config/policy.toml.
    pub fn defaults() -> Policy {
        Policy {
            version: None,
            general: GeneralPolicy::default(),
            refill: RefillPolicy::default(),
            uds: UdsPolicy::default(),
            taper: TaperPolicy::default(),
            agreement: AgreementPolicy::defaults(),
        }
    }

    pub fn factor_set(&self) -> FactorSet {
        self.general.factor_set
    }

    /// Every reason this policy cannot be used, each naming its key ("refill.on_time_fraction must be
    /// between 0.5 and 1.0, not 1.2"); empty when the policy is fine.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.refill.problems();
        problems.extend(self.uds.problems());
        problems.extend(self.taper.problems());
        problems.extend(self.agreement.problems());
        if let Some(version) = &self.version
            && (version.trim().is_empty() || version.len() > 100 || version.chars().any(char::is_control))
        {
            problems.push("version must be a non-empty single-line string of at most 100 characters".to_string());
        }
        problems
    }

    /// `problems` as an error naming the first offending key (the CLI prints all of them).
    pub fn validate(&self) -> Result<(), RulesError> {
        match self.problems().into_iter().next() {
            None => Ok(()),
            Some(problem) => {
                let key = problem.split_whitespace().next().unwrap_or("policy").to_string();
                let message = problem[key.len()..].trim().to_string();
                Err(RulesError::Invalid { field: key, message })
            }
        }
    }
}

impl RefillPolicy {
    /// Out-of-range values and relaxed safety floors, each message starting with its key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut days = |key: &str, value: i64, low: i64, high: i64, why: &str| {
            if !(low..=high).contains(&value) {
                problems.push(format!("refill.{key} must be between {low} and {high}{why}, not {value}"));
            }
        };
        days("early_fill_lookback_days", self.early_fill_lookback_days, 30, 365, "");
        days("early_fill_allowance_days", self.early_fill_allowance_days, 0, 30, "");
        days(
            "pdmp_review_max_age_days",
            self.pdmp_review_max_age_days,
            1,
            92,
            " (CDC 2022 Rec 9: at least every 3 months)",
        );
        days("pdmp_finding_lookback_days", self.pdmp_finding_lookback_days, 1, 365, "");
        days("uds_result_lookback_days", self.uds_result_lookback_days, 90, 730, "");
        days(
            "physician_review_max_age_days",
            self.physician_review_max_age_days,
            1,
            92,
            " (CDC 2022 Rec 7: every 3 months or more often)",
        );
        days("acknowledgement_max_age_days", self.acknowledgement_max_age_days, 1, 92, " (the review interval)");
        days("naloxone_offer_valid_days", self.naloxone_offer_valid_days, 1, 365, "");
        days("naloxone_recent_taper_days", self.naloxone_recent_taper_days, 0, 730, "");
        days("overdose_signal_window_days", self.overdose_signal_window_days, 30, 3650, "");
        days("lead_days", self.lead_days, 0, 14, "");
        days("lost_or_stolen_window_days", self.lost_or_stolen_window_days, 30, 730, "");
        days("aberrant_lookback_days", self.aberrant_lookback_days, 30, 730, "");
        days("aberrant_min_events", self.aberrant_min_events, 2, 20, "");
        days("opioid_tolerant_days", self.opioid_tolerant_days, 7, 90, " (FDA: a week or longer)");
        days("patient_statement_lookback_days", self.patient_statement_lookback_days, 1, 730, "");
        if !(self.opioid_tolerant_mme >= 60.0 && self.opioid_tolerant_mme <= 200.0) {
            problems.push(format!(
                "refill.opioid_tolerant_mme must be between 60 (FDA: 60 mg oral morphine a day) and 200, not {}",
                self.opioid_tolerant_mme
            ));
        }
        if !(0.5..=1.0).contains(&self.on_time_fraction) {
            problems
                .push(format!("refill.on_time_fraction must be between 0.5 and 1.0, not {}", self.on_time_fraction));
        }
        if !(self.naloxone_mme_threshold > 0.0 && self.naloxone_mme_threshold <= 50.0) {
            problems.push(format!(
                "refill.naloxone_mme_threshold must be above 0 and at most 50 (CDC 2022 Rec 8), not {}",
                self.naloxone_mme_threshold
            ));
        }
        if !(self.high_mme_threshold > 0.0 && self.high_mme_threshold <= 90.0) {
            problems.push(format!(
                "refill.high_mme_threshold must be above 0 and at most 90 (CDC 2016 Rec 5), not {}",
                self.high_mme_threshold
            ));
        }
        if self.mme_crossing_thresholds.is_empty()
            || self.mme_crossing_thresholds.iter().any(|t| !(*t > 0.0 && *t <= 1000.0))
            || self.mme_crossing_thresholds.windows(2).any(|w| w[0] >= w[1])
        {
            problems.push(format!(
                "refill.mme_crossing_thresholds must be a non-empty increasing list of totals between 0 and 1000, not {:?}",
                self.mme_crossing_thresholds
            ));
        }
        if !(18..=25).contains(&self.minimum_age_years) {
            problems.push(format!(
                "refill.minimum_age_years must be between 18 and 25 (CDC 2022 applies to adults), not {}",
                self.minimum_age_years
            ));
        }
        for (row, configured, floor) in self.outcomes.floors() {
            if configured < floor {
                problems.push(format!(
                    "refill.outcomes.{row} must be at least {} (safety floor), not {}",
                    floor.as_str(),
                    configured.as_str()
                ));
            }
        }
        problems
    }
}

/// `factor_set = "cdc2022"` in the file; `FactorSet` itself stays serde-free.
mod factor_set_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::mme::FactorSet;

    pub fn serialize<S: Serializer>(value: &FactorSet, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<FactorSet, D::Error> {
        let text = String::deserialize(deserializer)?;
        FactorSet::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown factor set {text:?}, expected cdc2022 or cdc2016"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Policy::defaults().problems(), Vec::<String>::new());
        assert!(Policy::defaults().validate().is_ok());
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        let mut policy = Policy::defaults();
        policy.refill.on_time_fraction = 1.2;
        let error = policy.validate().unwrap_err().to_string();
        assert!(error.contains("refill.on_time_fraction") && error.contains("between 0.5 and 1.0"), "{error}");
    }

    #[test]
    fn safety_floors_cannot_be_relaxed() {
        let mut policy = Policy::defaults();
        policy.refill.outcomes.overdose_or_sedation_signal = Outcome::Escalate;
        policy.refill.outcomes.regimen_changed = Outcome::ApproveWithTasks;
        let problems = policy.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("refill.outcomes.overdose_or_sedation_signal must be at least ESCALATE_URGENT")
        );
        assert!(problems[1].starts_with("refill.outcomes.regimen_changed must be at least ESCALATE"));
        // Raising a floor row, or configuring a HOLD for an expired agreement, is allowed.
        let mut stricter = Policy::defaults();
        stricter.refill.outcomes.regimen_changed = Outcome::EscalateUrgent;
        stricter.refill.outcomes.agreement_expired = Outcome::Hold;
        assert!(stricter.problems().is_empty());
    }

    #[test]
    fn every_configured_code_has_a_row() {
        let outcomes = RuleOutcomes::default();
        assert_eq!(outcomes.for_code(ReasonCode::HighMmeReviewed), Outcome::Approve);
        assert_eq!(outcomes.for_code(ReasonCode::OverdoseOrSedationSignal), Outcome::EscalateUrgent);
        assert_eq!(outcomes.for_code(ReasonCode::AgreementExpired), Outcome::ApproveWithTasks);
    }
}
