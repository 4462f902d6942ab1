//! Patient agreements: validity, renewal states and voiding on a change of prescriber of record.
//!
//! An agreement (treatment agreement or signature informed consent) is valid for `valid_days` days
//! after signing (default 365: Washington L&I renews "yearly or when there is a new prescriber",
//! clinical-rules.md §5.1). It is void as soon as the prescriber of record differs from the one who
//! signed it, or when it was voided explicitly. The refill policy escalates an expired or void
//! agreement; the reminder jobs use `RenewalDueSoon` and `Due` to ask for a renewal in time.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::days::{add_days, days_between};
use crate::facts::{AgreementFacts, PrescriberId};

/// `[agreement]` in config/policy.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgreementPolicy {
    /// Days an agreement stays valid after the day it was signed (day `valid_days` is the last valid
    /// day). Default 365 [WA-LNI].
    pub valid_days: i64,
    /// Days before the last valid day at which the renewal reminder starts (`RenewalDueSoon`).
    pub renewal_notice_days: i64,
    /// Elements every agreement must have checked (`missing_elements` lists the absent ones). Empty
    /// means the clinic does not require a fixed list.
    pub required_elements: Vec<String>,
    /// Elements without which a recorded agreement is not current (`AgreementState::Incomplete`):
    /// the discussion CDC 2022 Rec 2 requires before opioids are prescribed (treatment goals for pain
    /// and function; how therapy will be discontinued). Checked when the agreement records its
    /// elements; an agreement imported without them (an empty list) is read as before.
    pub current_requires: Vec<String>,
}

impl AgreementPolicy {
    pub fn defaults() -> AgreementPolicy {
        AgreementPolicy {
            valid_days: 365,
            renewal_notice_days: 30,
            required_elements: vec![
                "benefits_and_risks".to_string(),
                "treatment_goals".to_string(),
                "single_prescriber".to_string(),
                "single_pharmacy".to_string(),
                "take_as_prescribed".to_string(),
                "secure_storage".to_string(),
                "random_drug_testing".to_string(),
                "pdmp_checks".to_string(),
                "how_therapy_ends".to_string(),
            ],
            current_requires: vec!["treatment_goals".to_string(), "how_therapy_ends".to_string()],
        }
    }

    /// Checks a policy a physician typed: the reasons it cannot be used, empty when it is fine.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=365).contains(&self.valid_days) {
            problems
                .push(format!("agreement.valid_days must be 1..=365 (the yearly renewal), not {}", self.valid_days));
        }
        if self.renewal_notice_days < 0 || self.renewal_notice_days >= self.valid_days {
            problems.push(format!(
                "agreement.renewal_notice_days must be 0..valid_days ({}), not {}",
                self.valid_days, self.renewal_notice_days
            ));
        }
        problems
    }
}

impl Default for AgreementPolicy {
    fn default() -> Self {
        AgreementPolicy::defaults()
    }
}

/// The state of a patient's agreement on a given date, used by the refill policy and reminder jobs.
#[derive(Debug, Clone, PartialEq)]
pub enum AgreementState {
    /// No agreement on file.
    Missing,
    /// Valid and not yet in the renewal window.
    Current { expires_on: NaiveDate },
    /// Valid, but within the renewal-reminder window.
    RenewalDueSoon { expires_on: NaiveDate },
    /// Today is the last valid day: renewal is due now (still valid today).
    Due { expires_on: NaiveDate },
    /// Past its validity (`age_days` > the policy's valid days): renewal is overdue.
    Expired { expired_on: NaiveDate, age_days: i64 },
    /// Void: voided explicitly, signed with a prescriber other than the one of record, or dated in the
    /// future (a data error that must not pass for a valid agreement).
    Void { reason: String },
}

impl AgreementState {
    /// Whether a refill may rely on this agreement today.
    pub fn is_valid(&self) -> bool {
        matches!(
            self,
            AgreementState::Current { .. } | AgreementState::RenewalDueSoon { .. } | AgreementState::Due { .. }
        )
    }

    /// Whether the patient should be asked to renew (or sign) now.
    pub fn renewal_wanted(&self) -> bool {
        !matches!(self, AgreementState::Current { .. })
    }

    /// Stable wire name (JSON, database, screens).
    pub fn as_str(&self) -> &'static str {
        match self {
            AgreementState::Missing => "missing",
            AgreementState::Current { .. } => "current",
            AgreementState::RenewalDueSoon { .. } => "renewal_due_soon",
            AgreementState::Due { .. } => "due",
            AgreementState::Expired { .. } => "overdue",
            AgreementState::Void { .. } => "void",
        }
    }
}

/// The last day an agreement signed on `signed_on` is valid.
pub fn expires_on(signed_on: NaiveDate, policy: &AgreementPolicy) -> NaiveDate {
    add_days(signed_on, policy.valid_days)
}

/// The agreement's state on `today`.
///
/// Ages are whole days since signing: with `valid_days = 365` an agreement is valid (`Due`) on day
/// 365 and `Expired` on day 366.
pub fn agreement_state(
    agreement: Option<&AgreementFacts>,
    prescriber_of_record: Option<&PrescriberId>,
    today: NaiveDate,
    policy: &AgreementPolicy,
) -> AgreementState {
    let Some(agreement) = agreement else {
        return AgreementState::Missing;
    };
    if let Some(voided_on) = agreement.voided_on
        && voided_on <= today
    {
        return AgreementState::Void { reason: format!("voided on {voided_on}") };
    }
    if let Some(current) = prescriber_of_record
        && current != &agreement.prescriber_of_record
    {
        return AgreementState::Void {
            reason: "signed with a prescriber other than the current prescriber of record".to_string(),
        };
    }
    if agreement.signed_on > today {
        return AgreementState::Void { reason: format!("signed date {} is after {today}", agreement.signed_on) };
    }
    let age_days = days_between(today, agreement.signed_on);
    let expires = expires_on(agreement.signed_on, policy);
    if age_days > policy.valid_days {
        AgreementState::Expired { expired_on: add_days(expires, 1), age_days }
    } else if age_days == policy.valid_days {
        AgreementState::Due { expires_on: expires }
    } else if age_days >= policy.valid_days - policy.renewal_notice_days {
        AgreementState::RenewalDueSoon { expires_on: expires }
    } else {
        AgreementState::Current { expires_on: expires }
    }
}

/// The required elements (from the policy) that the agreement does not have checked.
pub fn missing_elements(agreement: &AgreementFacts, policy: &AgreementPolicy) -> Vec<String> {
    policy.required_elements.iter().filter(|required| !agreement.elements.contains(required)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn signed(on: NaiveDate, prescriber: &str) -> AgreementFacts {
        AgreementFacts {
            signed_on: on,
            prescriber_of_record: PrescriberId(prescriber.to_string()),
            text_version: "2026-01".to_string(),
            elements: vec!["single_prescriber".to_string()],
            voided_on: None,
        }
    }

    #[test]
    fn valid_on_day_365_and_overdue_on_day_366() {
        let policy = AgreementPolicy::defaults();
        let signed_on = date(2025, 3, 1);
        let agreement = signed(signed_on, "npi-1");
        let prescriber = PrescriberId("npi-1".to_string());
        let day = |n: i64| signed_on + Duration::days(n);
        let state = |n| agreement_state(Some(&agreement), Some(&prescriber), day(n), &policy);

        assert_eq!(state(0), AgreementState::Current { expires_on: day(365) });
        assert_eq!(state(334), AgreementState::Current { expires_on: day(365) });
        assert_eq!(state(335), AgreementState::RenewalDueSoon { expires_on: day(365) });
        assert_eq!(state(364), AgreementState::RenewalDueSoon { expires_on: day(365) });
        assert_eq!(state(365), AgreementState::Due { expires_on: day(365) });
        assert!(state(365).is_valid());
        assert_eq!(state(366), AgreementState::Expired { expired_on: day(366), age_days: 366 });
        assert!(!state(366).is_valid());
        assert_eq!(state(366).as_str(), "overdue");
    }

    #[test]
    fn a_new_prescriber_of_record_voids_the_agreement() {
        let policy = AgreementPolicy::defaults();
        let agreement = signed(date(2026, 1, 5), "npi-1");
        let today = date(2026, 2, 1);
        let same = agreement_state(Some(&agreement), Some(&PrescriberId("npi-1".into())), today, &policy);
        assert!(same.is_valid());
        let changed = agreement_state(Some(&agreement), Some(&PrescriberId("npi-2".into())), today, &policy);
        assert!(matches!(changed, AgreementState::Void { .. }), "{changed:?}");
        assert!(!changed.is_valid());
    }

    #[test]
    fn explicit_void_missing_and_future_dates() {
        let policy = AgreementPolicy::defaults();
        let mut agreement = signed(date(2026, 1, 5), "npi-1");
        agreement.voided_on = Some(date(2026, 1, 20));
        assert!(matches!(
            agreement_state(Some(&agreement), None, date(2026, 1, 20), &policy),
            AgreementState::Void { .. }
        ));
        assert!(agreement_state(Some(&agreement), None, date(2026, 1, 19), &policy).is_valid());
        assert_eq!(agreement_state(None, None, date(2026, 1, 19), &policy), AgreementState::Missing);
        let future = signed(date(2026, 3, 1), "npi-1");
        assert!(matches!(agreement_state(Some(&future), None, date(2026, 2, 1), &policy), AgreementState::Void { .. }));
    }

    #[test]
    fn missing_elements_are_listed() {
        let policy = AgreementPolicy::defaults();
        let agreement = signed(date(2026, 1, 5), "npi-1");
        let missing = missing_elements(&agreement, &policy);
        assert!(!missing.contains(&"single_prescriber".to_string()));
        assert!(missing.contains(&"secure_storage".to_string()));
    }

    #[test]
    fn policy_checks_catch_unusable_numbers() {
        assert!(AgreementPolicy::defaults().problems().is_empty());
        let policy = AgreementPolicy { valid_days: 400, ..AgreementPolicy::defaults() };
        assert_eq!(policy.problems().len(), 1);
    }
}
