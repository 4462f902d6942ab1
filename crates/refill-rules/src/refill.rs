//! The refill policy: evaluates every rule against a patient's facts and a request, giving one
//! `Decision` with all reasons, tasks and the policy version.
//!
//! Every rule runs on every request (no short-circuit), so the decision lists all reasons, not just
//! the first. The outcome is the most severe outcome any rule asks for (APPROVE when none fires); a
//! reason that rests on a 42 CFR Part 2 fact is marked `restricted` and lifts the outcome to at least
//! ESCALATE. The engine never emits discontinue or dismiss: `Outcome` has no such variant, and the
//! worst a rule can ask for is ESCALATE_URGENT, i.e. a physician now.
//!
//! Day counting: clinic-local calendar days; "day N" means `requested_on - last fill = N`. An item
//! (PDMP review, physician review, acknowledgement, naloxone offer) is current while its age in days is
//! at most the policy limit. MME values are compared unrounded (49.95 is below 50).
//!
//! The rules are grouped by what they look at: `timing` (fill dates), `monitoring` (PDMP, UDS,
//! agreement, reviews, benzodiazepines), `dose` (MME, naloxone, regimen changes) and `safety` (scope,
//! overdose signals, lost supply, OUD treatment elsewhere).

mod dose;
mod history;
mod monitoring;
mod outside;
mod safety;
pub(crate) mod timing;

#[cfg(test)]
mod tests;

use chrono::NaiveDate;

use crate::days::days_between;
use crate::decision::{Decision, Evidence, Outcome, Reason, ReasonCode, Task};
use crate::facts::{ClinicFacts, PatientFacts, PdmpFinding, PhysicianReview, PrescriberId, RefillRequest, ReviewKind};
use crate::mme::{self, MmeResult};
use crate::policy::Policy;

/// Decide a refill request. Pure: the same facts, policy and version always give the same decision.
pub fn evaluate(
    facts: &PatientFacts,
    clinic: &ClinicFacts,
    request: &RefillRequest,
    policy: &Policy,
    policy_version: &str,
) -> Decision {
    // The rules need only the total on almost every request: the items and reasons of a full
    // `MmeResult` are built later, and only when a rule reports them (an undetermined MME).
    let total = mme::daily_mme_total(&request.regimen, policy.factor_set());
    let mme = RequestedMme::of_regimen(total.total_daily_mme, total.undetermined, None);
    evaluate_rules(facts, clinic, request, policy, mme, policy_version)
}

/// `evaluate` with the requested regimen's MME already computed, for callers that show the MME anyway
/// (the CDS Hooks card, the queue screen). `requested_mme` must be `mme::daily_mme(&request.regimen,
/// policy.factor_set())`; the rules use it as given.
pub fn evaluate_with_mme(
    facts: &PatientFacts,
    clinic: &ClinicFacts,
    request: &RefillRequest,
    policy: &Policy,
    requested_mme: &MmeResult,
    policy_version: &str,
) -> Decision {
    let mme = RequestedMme::of_regimen(
        requested_mme.total_daily_mme,
        !requested_mme.undetermined.is_empty(),
        Some(requested_mme),
    );
    evaluate_rules(facts, clinic, request, policy, mme, policy_version)
}

fn evaluate_rules(
    facts: &PatientFacts,
    clinic: &ClinicFacts,
    request: &RefillRequest,
    policy: &Policy,
    mme: RequestedMme,
    policy_version: &str,
) -> Decision {
    let mut ctx = RuleContext {
        facts,
        clinic,
        request,
        policy,
        today: request.requested_on,
        mme,
        same_regimen_as_record: dose::same_regimen(&request.regimen, &facts.regimen),
        reasons: Vec::new(),
        eligible_on: None,
        outside_findings: Vec::new(),
    };
    ctx.outside_findings = outside::outside_findings(&ctx);
    ctx.add_outside_opioids();
    timing::check(&mut ctx);
    dose::check_naloxone(&mut ctx);
    monitoring::check_pdmp_review(&mut ctx);
    monitoring::check_pdmp_outside_prescribers(&mut ctx);
    monitoring::check_uds_due(&mut ctx);
    monitoring::check_uds_results(&mut ctx);
    monitoring::check_agreement(&mut ctx);
    monitoring::check_physician_review(&mut ctx);
    dose::check_high_mme(&mut ctx);
    dose::check_mme_changes(&mut ctx);
    monitoring::check_benzodiazepines(&mut ctx);
    dose::check_regimen_change(&mut ctx);
    safety::check_lost_or_stolen(&mut ctx);
    safety::check_oud_treatment_elsewhere(&mut ctx);
    safety::check_scope(&mut ctx);
    safety::check_overdose_signal(&mut ctx);
    monitoring::check_agreement_elements(&mut ctx);
    history::check_lost_or_stolen_repeat(&mut ctx);
    history::check_aberrant_pattern(&mut ctx);
    history::check_er_la_tolerance(&mut ctx);
    history::show_patient_statements(&mut ctx);
    let eligible_on = ctx.eligible_on;
    let total_daily_mme = ctx.mme.total_daily_mme;
    Decision::from_reasons(ctx.reasons, eligible_on, total_daily_mme, policy_version)
}

/// The MME of the requested regimen as the rules see it, with any outside opioid the PDMP shows
/// overlapping the request (`outside`).
pub(crate) struct RequestedMme<'a> {
    /// The daily MME the patient has: the requested regimen's `MmeResult::total_daily_mme` plus the
    /// overlapping outside opioids.
    pub total_daily_mme: Option<f64>,
    /// The requested regimen's alone (what a regimen change is measured on).
    pub regimen_total_daily_mme: Option<f64>,
    /// Some product's MME is undetermined (the regimen's or an outside one).
    pub undetermined: bool,
    /// The full result, when the caller computed one (`evaluate_with_mme`).
    pub full: Option<&'a MmeResult>,
    /// The overlapping outside opioids' MME (`None` when one is undetermined; `Some(0.0)` for none).
    pub outside_daily_mme: Option<f64>,
    /// Outside products whose MME cannot be determined, as "label (why)".
    pub outside_undetermined: Vec<String>,
}

impl<'a> RequestedMme<'a> {
    fn of_regimen(total: Option<f64>, undetermined: bool, full: Option<&'a MmeResult>) -> RequestedMme<'a> {
        RequestedMme {
            total_daily_mme: total,
            regimen_total_daily_mme: total,
            undetermined,
            full,
            outside_daily_mme: Some(0.0),
            outside_undetermined: Vec::new(),
        }
    }

    /// The outside opioids counted in the total, when there are any.
    pub fn outside_counted(&self) -> Option<f64> {
        self.outside_daily_mme.filter(|mme| *mme > 0.0)
    }
}

/// What every rule reads, and where it writes its reasons.
pub(crate) struct RuleContext<'a> {
    pub facts: &'a PatientFacts,
    pub clinic: &'a ClinicFacts,
    pub request: &'a RefillRequest,
    pub policy: &'a Policy,
    /// The request date: every age is counted to it.
    pub today: NaiveDate,
    /// MME of the requested regimen.
    pub mme: RequestedMme<'a>,
    /// The requested regimen is the regimen of record (`dose::same_regimen`), worked out once for the
    /// rules that ask.
    pub same_regimen_as_record: bool,
    pub reasons: Vec<Reason>,
    /// Set by the timing rules when the request is held until a date.
    pub eligible_on: Option<NaiveDate>,
    /// PDMP findings from outside prescribers within the lookback (`outside::outside_findings`).
    pub outside_findings: Vec<&'a PdmpFinding>,
}

impl<'a> RuleContext<'a> {
    /// Count the outside opioids the PDMP shows overlapping the request in the daily MME.
    fn add_outside_opioids(&mut self) {
        let outside = outside::OutsideOpioids::overlapping(&self.outside_findings, self.today);
        if outside.orders.is_empty() {
            return;
        }
        let (outside_total, undetermined) = outside.mme(self.policy.factor_set());
        let mme = &mut self.mme;
        mme.total_daily_mme = match (mme.regimen_total_daily_mme, outside_total) {
            (Some(regimen), Some(outside)) => Some(regimen + outside),
            // Only excluded products (buprenorphine, OUD treatment) in the regimen: the outside opioid
            // is the whole countable dose.
            (None, Some(outside)) if !mme.undetermined => Some(outside),
            _ => None,
        };
        mme.undetermined |= !undetermined.is_empty();
        mme.outside_daily_mme = outside_total;
        mme.outside_undetermined = undetermined;
    }

    /// Record a fired rule with the outcome the policy configures for it.
    pub fn fire(&mut self, code: ReasonCode, evidence: Vec<Evidence>, task: Option<Task>, restricted: bool) {
        let outcome = self.outcome_for(code);
        self.reasons.push(Reason { code, outcome, evidence, task, restricted });
    }

    pub fn outcome_for(&self, code: ReasonCode) -> Outcome {
        self.policy.refill.outcomes.for_code(code)
    }

    /// Age in days of a date, counted to the request date (negative for a date after it).
    pub fn age_days(&self, date: NaiveDate) -> i64 {
        days_between(self.today, date)
    }

    /// The latest physician review of a kind on or before the request date.
    pub fn latest_review(&self, matches: impl Fn(&ReviewKind) -> bool) -> Option<&'a PhysicianReview> {
        self.facts
            .physician_reviews
            .iter()
            .filter(|review| review.reviewed_on <= self.today && matches(&review.kind))
            .max_by_key(|review| review.reviewed_on)
    }

    /// Whether a prescriber belongs to the patient's care: on the roster, the current prescriber of
    /// record, or the previous prescriber a new or transferred patient came from (recorded as such).
    /// Roster physicians are never outside prescribers; a former prescriber named only in an old
    /// agreement is.
    pub fn is_clinic_prescriber(&self, prescriber: &PrescriberId) -> bool {
        self.clinic.roster.contains(prescriber)
            || self.facts.prescriber_of_record.as_ref() == Some(prescriber)
            || self.facts.previous_prescriber.as_ref() == Some(prescriber)
    }
}

/// Evidence for "the latest X was on DATE, AGE days before the request" (or missing).
pub(crate) fn dated_evidence(
    evidence: &mut Vec<Evidence>,
    date_name: &'static str,
    age_name: &'static str,
    date: Option<NaiveDate>,
    today: NaiveDate,
) {
    match date {
        Some(date) => {
            evidence.push(Evidence::date(date_name, date));
            evidence.push(Evidence::integer(age_name, days_between(today, date)));
        }
        None => {
            evidence.push(Evidence::missing(date_name));
            evidence.push(Evidence::missing(age_name));
        }
    }
}
