//! Dose rules: naloxone offers (CDC 2022 Rec 8), high MME with or without a current physician review
//! (CDC 2016 Rec 5, CDC 2022 Rec 4), MME that crossed a threshold since the last decision or cannot be
//! determined, and requests that differ from the regimen of record or the taper step in force (dose
//! changes are a physician's decision: CDC 2022 Rec 7).
//!
//! MME values are compared unrounded with the thresholds (49.95 is below 50).

use std::borrow::Cow;

use super::{RuleContext, dated_evidence};
use crate::decision::{Evidence, ReasonCode, Task};
use crate::facts::{ClinicalFlagKind, DoseQuantity, MedicationOrder, OtherMedicationClass, ReviewKind, TaperState};
use crate::mme;
use crate::text;

/// Whether any order of the requested regimen is a Part 2 record: MME-based reasons then rest on it.
fn regimen_restricted(ctx: &RuleContext) -> bool {
    ctx.request.regimen.iter().any(|o| o.confidentiality.is_restricted())
}

/// A naloxone trigger (MME >= 50, benzodiazepine, overdose or SUD history, sleep-disordered breathing,
/// a taper now or recently) and no naloxone offered, declined or dispensed within the valid days.
pub(super) fn check_naloxone(ctx: &mut RuleContext) {
    let today = ctx.today;
    let policy = &ctx.policy.refill;
    let last_event = ctx.facts.naloxone_events.iter().map(|e| e.on).filter(|on| *on <= today).max();
    if last_event.is_some_and(|on| ctx.age_days(on) <= policy.naloxone_offer_valid_days) {
        return;
    }
    // At most eight distinct triggers exist: a fixed list keeps the common path free of allocation.
    let mut triggers = Triggers::default();
    let mut restricted = false;
    if ctx.mme.total_daily_mme.is_some_and(|total| total >= policy.naloxone_mme_threshold) {
        triggers.add("high_mme");
        restricted |= regimen_restricted(ctx);
    }
    for medication in super::outside::seen_medications(ctx, today) {
        let trigger = match medication.class {
            OtherMedicationClass::Benzodiazepine => "benzodiazepine",
            OtherMedicationClass::OudTreatment => "opioid_use_disorder_treatment",
        };
        triggers.add(trigger);
        restricted |= medication.confidentiality.is_restricted();
    }
    for flag in ctx.facts.flags.iter().filter(|f| f.recorded_on <= today) {
        let trigger = match flag.kind {
            ClinicalFlagKind::OverdoseHistory => "overdose_history",
            ClinicalFlagKind::OverdoseOrSedationSignal => "overdose_or_sedation_signal",
            ClinicalFlagKind::SubstanceUseDisorderHistory => "substance_use_disorder_history",
            ClinicalFlagKind::SleepDisorderedBreathing => "sleep_disordered_breathing",
            _ => continue,
        };
        triggers.add(trigger);
        restricted |= flag.confidentiality.is_restricted();
    }
    if let Some(taper) = &ctx.facts.taper {
        let recent = match taper.state {
            TaperState::Active | TaperState::Paused => true,
            TaperState::Completed => ctx.age_days(taper.step_started_on) <= policy.naloxone_recent_taper_days,
        };
        if recent && taper.started_on <= today {
            triggers.add("recent_taper");
        }
    }
    if triggers.is_empty() {
        return;
    }
    let mut evidence = Vec::with_capacity(6);
    evidence.push(Evidence::text("triggers", triggers.text()));
    evidence.push(match ctx.mme.total_daily_mme {
        Some(total) => Evidence::number("total_daily_mme", total),
        None => Evidence::missing("total_daily_mme"),
    });
    if let Some(outside) = ctx.mme.outside_counted() {
        evidence.push(Evidence::number("outside_daily_mme", outside));
    }
    evidence.push(Evidence::number("mme_threshold", policy.naloxone_mme_threshold));
    dated_evidence(&mut evidence, "naloxone_last_on", "naloxone_age_days", last_event, today);
    evidence.push(Evidence::integer("policy_valid_days", policy.naloxone_offer_valid_days));
    ctx.fire(ReasonCode::NaloxoneOfferDue, evidence, Some(Task::OfferNaloxone), restricted);
}

/// The distinct naloxone triggers found, in the order found.
#[derive(Default)]
struct Triggers {
    names: [&'static str; 8],
    len: usize,
}

impl Triggers {
    fn add(&mut self, name: &'static str) {
        if !self.as_slice().contains(&name) && self.len < self.names.len() {
            self.names[self.len] = name;
            self.len += 1;
        }
    }
    fn is_empty(&self) -> bool {
        self.len == 0
    }
    fn as_slice(&self) -> &[&'static str] {
        &self.names[..self.len]
    }
    /// The triggers joined by ", "; a single trigger is recorded as its fixed name, without allocating.
    fn text(&self) -> Cow<'static, str> {
        match self.as_slice() {
            [only] => Cow::Borrowed(only),
            several => Cow::Owned(several.join(", ")),
        }
    }
}

/// MME >= the high threshold: with a current physician review the refill is approved and the flag is
/// shown (APPROVE reason); with the review overdue it escalates. Never an automatic taper (CDC 2022
/// Rec 5; clinical-rules.md §6.4).
pub(super) fn check_high_mme(ctx: &mut RuleContext) {
    let policy = &ctx.policy.refill;
    let Some(total) = ctx.mme.total_daily_mme.filter(|total| *total >= policy.high_mme_threshold) else {
        return;
    };
    let today = ctx.today;
    let last_review = ctx.latest_review(|kind| *kind == ReviewKind::BenefitRisk).map(|r| r.reviewed_on);
    let current = last_review.is_some_and(|on| ctx.age_days(on) <= policy.physician_review_max_age_days);
    let mut evidence = Vec::with_capacity(5);
    evidence.push(Evidence::number("total_daily_mme", total));
    evidence.push(Evidence::number("threshold", policy.high_mme_threshold));
    if let Some(outside) = ctx.mme.outside_counted() {
        evidence.push(Evidence::number("outside_daily_mme", outside));
    }
    dated_evidence(&mut evidence, "review_last_on", "review_age_days", last_review, today);
    evidence.push(Evidence::integer("policy_max_days", policy.physician_review_max_age_days));
    let code = if current { ReasonCode::HighMmeReviewed } else { ReasonCode::HighMmeReviewOverdue };
    let restricted = regimen_restricted(ctx);
    ctx.fire(code, evidence, None, restricted);
}

/// Undetermined MME escalates (never counted as 0); a total that crossed a threshold upwards since the
/// last decision escalates.
pub(super) fn check_mme_changes(ctx: &mut RuleContext) {
    let restricted = regimen_restricted(ctx);
    if ctx.mme.undetermined {
        // The words are built only here, for the few requests whose MME cannot be determined.
        let computed;
        let undetermined = match ctx.mme.full {
            Some(full) => &full.undetermined,
            None => {
                computed = mme::undetermined_products(&ctx.request.regimen, ctx.policy.factor_set());
                &computed
            }
        };
        let mut products: Vec<&str> = undetermined.iter().map(|u| u.medication.as_str()).collect();
        let mut why: Vec<&str> = undetermined.iter().map(|u| u.reason.as_str()).collect();
        // Outside opioids from the PDMP whose dose cannot be worked out are never counted as 0 either.
        for outside in &ctx.mme.outside_undetermined {
            products.push(outside.as_str());
            why.push("outside prescriber (PDMP): no usable product and quantity");
        }
        let evidence = vec![
            Evidence::integer("undetermined_products", products.len() as i64),
            Evidence::text("products", products.join("; ")),
            Evidence::text("why", why.join("; ")),
        ];
        ctx.fire(ReasonCode::MmeUndetermined, evidence, None, restricted);
        return;
    }
    let (Some(previous), Some(current)) =
        (ctx.facts.last_decision.as_ref().and_then(|d| d.total_daily_mme), ctx.mme.total_daily_mme)
    else {
        return;
    };
    let Some(threshold) =
        ctx.policy.refill.mme_crossing_thresholds.iter().copied().rfind(|t| previous < *t && current >= *t)
    else {
        return;
    };
    let mut evidence = Vec::with_capacity(4);
    evidence.extend([
        Evidence::number("previous_total_daily_mme", previous),
        Evidence::number("total_daily_mme", current),
        Evidence::number("threshold", threshold),
    ]);
    if let Some(last) = &ctx.facts.last_decision {
        evidence.push(Evidence::date("last_decision_on", last.decided_on));
    }
    ctx.fire(ReasonCode::MmeCrossedThreshold, evidence, None, restricted);
}

/// The requested regimen differs from the regimen of record, or from the taper step in force while a
/// taper is active or paused. Any difference goes to a physician; the evidence says whether the total
/// MME goes up or down.
pub(super) fn check_regimen_change(ctx: &mut RuleContext) {
    let (baseline, compared_with, unchanged) = match &ctx.facts.taper {
        // The refill whose supply starts on the next signed step's date is decided against that step.
        Some(taper)
            if taper.state == TaperState::Active
                && let Some(next) = taper.next_step.as_ref().filter(|next| next.starts_on <= ctx.today) =>
        {
            (next.regimen.as_slice(), "taper_step", same_regimen(&ctx.request.regimen, &next.regimen))
        }
        Some(taper) if matches!(taper.state, TaperState::Active | TaperState::Paused) => {
            (taper.step_regimen.as_slice(), "taper_step", same_regimen(&ctx.request.regimen, &taper.step_regimen))
        }
        _ => (ctx.facts.regimen.as_slice(), "regimen_of_record", ctx.same_regimen_as_record),
    };
    if unchanged {
        return;
    }
    let current = mme::daily_mme_total(baseline, ctx.policy.factor_set());
    let change = match (ctx.mme.regimen_total_daily_mme, current.total_daily_mme) {
        (Some(requested), Some(current)) if requested > current + 1e-9 => "increase",
        (Some(requested), Some(current)) if requested < current - 1e-9 => "decrease",
        (Some(_), Some(_)) => "same_total",
        _ => "undetermined",
    };
    let total = |value: Option<f64>, name| match value {
        Some(value) => Evidence::number(name, value),
        None => Evidence::missing(name),
    };
    let evidence = vec![
        Evidence::text("compared_with", compared_with),
        Evidence::text("change", change),
        total(ctx.mme.regimen_total_daily_mme, "requested_total_daily_mme"),
        total(current.total_daily_mme, "current_total_daily_mme"),
        Evidence::integer("requested_orders", ctx.request.regimen.len() as i64),
        Evidence::integer("current_orders", baseline.len() as i64),
    ];
    let restricted = regimen_restricted(ctx) || baseline.iter().any(|o| o.confidentiality.is_restricted());
    ctx.fire(ReasonCode::RegimenChanged, evidence, None, restricted);
}

/// Same products at the same dose and frequency, in any order. Ids, days supply, quantities and
/// prescribers may differ (a new prescription for the same regimen).
pub(crate) fn same_regimen(requested: &[MedicationOrder], current: &[MedicationOrder]) -> bool {
    if requested.len() != current.len() {
        return false;
    }
    if requested.len() > 64 {
        // Beyond any real regimen: compare in order rather than allocate a matching table.
        return requested.iter().zip(current).all(|(a, b)| same_order(a, b));
    }
    let mut used: u64 = 0;
    'requested: for order in requested {
        for (index, candidate) in current.iter().enumerate() {
            if used & (1 << index) == 0 && same_order(order, candidate) {
                used |= 1 << index;
                continue 'requested;
            }
        }
        return false;
    }
    true
}

fn same_order(a: &MedicationOrder, b: &MedicationOrder) -> bool {
    same_product(a, b)
        && same_dose(a.dose.as_ref(), b.dose.as_ref())
        && match (a.doses_per_day, b.doses_per_day) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-9,
            (None, None) => true,
            _ => false,
        }
        && a.purpose == b.purpose
}

pub(super) fn same_product(a: &MedicationOrder, b: &MedicationOrder) -> bool {
    fn code_of(order: &MedicationOrder) -> Option<&str> {
        order.rxcui.as_deref().map(text::trim).filter(|c| !c.is_empty())
    }
    fn text_of(order: &MedicationOrder) -> Option<&str> {
        order.text.as_deref().map(text::trim).filter(|t| !t.is_empty())
    }
    match (code_of(a), code_of(b)) {
        (Some(x), Some(y)) => x == y,
        _ => matches!((text_of(a), text_of(b)), (Some(x), Some(y)) if x.eq_ignore_ascii_case(y)),
    }
}

fn same_dose(a: Option<&DoseQuantity>, b: Option<&DoseQuantity>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x.unit == y.unit && (x.value - y.value).abs() <= 1e-9,
        (None, None) => true,
        _ => false,
    }
}
