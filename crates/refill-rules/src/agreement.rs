//! Patient agreements: validity, renewal states and voiding on a change of prescriber of record.

use chrono::NaiveDate;

use crate::facts::{AgreementFacts, PrescriberId};

/// The state of a patient's agreement on a given date, used by the refill policy and reminder jobs.
#[derive(Debug, Clone, PartialEq)]
pub enum AgreementState {
    /// No agreement on file.
    Missing,
    /// Valid and not yet in the renewal window.
    Current { expires_on: NaiveDate },
    /// Valid, but within the renewal-reminder window.
    RenewalDueSoon { expires_on: NaiveDate },
    /// Past its validity (`age_days` > the policy's valid days).
    Expired { expired_on: NaiveDate, age_days: i64 },
    /// Void: voided explicitly or signed with a prescriber other than the one of record.
    Void { reason: String },
}

/// The agreement's state on `today`.
pub fn agreement_state(
    agreement: Option<&AgreementFacts>,
    prescriber_of_record: Option<&PrescriberId>,
    today: NaiveDate,
    valid_days: i64,
    renewal_notice_days: i64,
) -> AgreementState {
    let _ = (agreement, prescriber_of_record, today, valid_days, renewal_notice_days);
    unimplemented!("agreement::agreement_state")
}
