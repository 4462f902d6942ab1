//! Safety routing: requests the protocol must never approve on its own. Lost or stolen supply
//! (clinical-rules.md §5.2; VADOD17 unsafe behaviours), medication for opioid use disorder from another
//! source, care outside the guideline's scope (CDC 2022: adults, not cancer, sickle cell, palliative or
//! end-of-life care) and overdose or sedation signals (CDC 2022 Rec 5: the one situation that is
//! urgent). Their outcomes are safety floors the policy file cannot lower.

use super::RuleContext;
use crate::days::add_days;
use crate::decision::{Evidence, ReasonCode};
use crate::facts::{ClinicalFlagKind, OrderPurpose, OtherMedicationClass, RequestKind, ReviewKind};

pub(super) fn check_lost_or_stolen(ctx: &mut RuleContext) {
    if ctx.request.kind == RequestKind::LostOrStolenReplacement {
        let evidence = vec![Evidence::text("request_kind", "lost_or_stolen_replacement")];
        ctx.fire(ReasonCode::LostOrStolenReplacement, evidence, None, false);
    }
}

/// Methadone or buprenorphine for OUD from another source (an opioid treatment program), whether
/// recorded as another medication, seen only on the PDMP, or an OUD order in the requested regimen.
pub(super) fn check_oud_treatment_elsewhere(ctx: &mut RuleContext) {
    let today = ctx.today;
    let mut fired = Vec::new();
    let oud = || super::outside::seen_medications(ctx, today).filter(|m| m.class == OtherMedicationClass::OudTreatment);
    let recorded = oud().any(|m| m.pdmp_prescriber.is_none());
    for medication in oud() {
        // The PDMP usually shows what the chart already records: one reason for the treatment.
        if recorded && medication.pdmp_prescriber.is_some() {
            continue;
        }
        let mut evidence = Vec::with_capacity(4);
        match medication.pdmp_prescriber {
            None => evidence.push(Evidence::text("source", "other_medication")),
            Some(prescriber) => {
                evidence.push(Evidence::text("source", "pdmp"));
                evidence.push(Evidence::text("prescriber", prescriber.0.clone()));
            }
        }
        evidence.push(Evidence::text("medication", medication.text.to_string()));
        if let Some(started) = medication.started_on {
            evidence.push(Evidence::date("started_on", started));
        }
        fired.push((evidence, medication.confidentiality.is_restricted()));
    }
    for order in ctx.request.regimen.iter().filter(|o| o.purpose == OrderPurpose::OpioidUseDisorder) {
        let evidence = vec![Evidence::text("source", "requested_regimen"), Evidence::text("medication", order.label())];
        fired.push((evidence, order.confidentiality.is_restricted()));
    }
    for (evidence, restricted) in fired {
        ctx.fire(ReasonCode::OudMedicationFromOtherSource, evidence, None, restricted);
    }
}

/// Under the minimum age, or a cancer, sickle-cell, palliative or end-of-life flag: one reason per
/// condition.
pub(super) fn check_scope(ctx: &mut RuleContext) {
    let today = ctx.today;
    let minimum_age = ctx.policy.refill.minimum_age_years;
    if let Some(birth_date) = ctx.facts.birth_date {
        let age = today.years_since(birth_date).unwrap_or(0);
        if age < minimum_age {
            let evidence = vec![
                Evidence::text("condition", "under_minimum_age"),
                Evidence::integer("age_years", i64::from(age)),
                Evidence::integer("minimum_age_years", i64::from(minimum_age)),
            ];
            ctx.fire(ReasonCode::OutsideScope, evidence, None, false);
        }
    }
    let mut fired = Vec::new();
    for flag in ctx.facts.flags.iter().filter(|f| f.recorded_on <= today) {
        let condition = match flag.kind {
            ClinicalFlagKind::Cancer => "cancer",
            ClinicalFlagKind::SickleCell => "sickle_cell",
            ClinicalFlagKind::Palliative => "palliative_care",
            ClinicalFlagKind::EndOfLife => "end_of_life_care",
            _ => continue,
        };
        let evidence = vec![Evidence::text("condition", condition), Evidence::date("recorded_on", flag.recorded_on)];
        fired.push((evidence, flag.confidentiality.is_restricted()));
    }
    for (evidence, restricted) in fired {
        ctx.fire(ReasonCode::OutsideScope, evidence, None, restricted);
    }
}

/// An overdose or sedation signal recorded within the window, with no physician benefit-risk review
/// dated after it, escalates urgently. After the window (or once a physician has reviewed the patient
/// since), it still counts as overdose history for naloxone.
pub(super) fn check_overdose_signal(ctx: &mut RuleContext) {
    let window = ctx.policy.refill.overdose_signal_window_days;
    let mut signals =
        ctx.facts.flags.iter().filter(|f| f.kind == ClinicalFlagKind::OverdoseOrSedationSignal).peekable();
    if signals.peek().is_none() {
        return;
    }
    let last_review = ctx.latest_review(|kind| *kind == ReviewKind::BenefitRisk).map(|r| r.reviewed_on);
    let mut fired = Vec::new();
    for flag in signals {
        let age = ctx.age_days(flag.recorded_on);
        let reviewed_since = last_review.is_some_and(|on| on > flag.recorded_on);
        if !(0..=window).contains(&age) || reviewed_since {
            continue;
        }
        let evidence = vec![
            Evidence::date("signal_recorded_on", flag.recorded_on),
            Evidence::integer("signal_age_days", age),
            Evidence::date("window_ends_on", add_days(flag.recorded_on, window)),
        ];
        fired.push((evidence, flag.confidentiality.is_restricted()));
    }
    for (evidence, restricted) in fired {
        ctx.fire(ReasonCode::OverdoseOrSedationSignal, evidence, None, restricted);
    }
}
