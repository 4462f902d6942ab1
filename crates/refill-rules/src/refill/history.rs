//! History the policy reads over time rather than on the day: a repeated lost or stolen report
//! (clinical-rules.md §5.2), a pattern of early requests, lost reports and unexpected drug tests
//! (VADOD17 Taper Decision Tool: unsafe behaviours; §5), an extended-release or long-acting opioid for a
//! patient who is not opioid tolerant (CDC 2022 Rec 3; FDA labelling), and what the patient said.
//!
//! Each goes to a physician or is shown with the reasons; none stops therapy (CDC 2022 Rec 9/10: do
//! not dismiss; the engine has no such outcome).

use chrono::NaiveDate;

use super::{RuleContext, dose, monitoring};
use crate::decision::{Evidence, ReasonCode};
use crate::drug::{Acting, DrugTable};
use crate::facts::{MedicationOrder, OrderPurpose, RequestKind, ReviewKind};
use crate::mme;

/// A lost or stolen replacement request with an earlier report inside the policy's window: its own
/// reason, besides the replacement reason every such request has.
pub(super) fn check_lost_or_stolen_repeat(ctx: &mut RuleContext) {
    if ctx.request.kind != RequestKind::LostOrStolenReplacement {
        return;
    }
    let window = ctx.policy.refill.lost_or_stolen_window_days;
    let today = ctx.today;
    let earlier: Vec<NaiveDate> = ctx
        .facts
        .lost_or_stolen_reports
        .iter()
        .copied()
        .filter(|on| *on < today && ctx.age_days(*on) <= window)
        .collect();
    let Some(latest) = earlier.iter().max().copied() else { return };
    let evidence = vec![
        Evidence::date("previous_report_on", latest),
        Evidence::integer("previous_report_age_days", ctx.age_days(latest)),
        Evidence::integer("earlier_reports_in_window", earlier.len() as i64),
        Evidence::integer("policy_window_days", window),
    ];
    ctx.fire(ReasonCode::LostOrStolenRepeat, evidence, None, false);
}

/// Early requests, lost or stolen reports and unexpected drug-test results within the lookback, when
/// there are at least `aberrant_min_events` of them and no physician benefit-risk review is dated on or
/// after the latest: a physician weighs the pattern (never an automatic stop).
pub(super) fn check_aberrant_pattern(ctx: &mut RuleContext) {
    let policy = &ctx.policy.refill;
    let lookback = policy.aberrant_lookback_days;
    let min_events = policy.aberrant_min_events;
    let in_lookback = |on: &NaiveDate| (0..=lookback).contains(&ctx.age_days(*on));
    let mut early: Vec<NaiveDate> = ctx.facts.early_requests.iter().copied().filter(in_lookback).collect();
    early.sort();
    early.dedup();
    let mut lost: Vec<NaiveDate> = ctx.facts.lost_or_stolen_reports.iter().copied().filter(in_lookback).collect();
    lost.sort();
    lost.dedup();
    // The drug-test reading is the costly part: skip it when even every test in the lookback being
    // unexpected could not make enough events.
    let tests_in_lookback = ctx.facts.uds.results.iter().filter(|r| in_lookback(&r.collected_on)).count();
    if ((early.len() + lost.len() + tests_in_lookback) as i64) < min_events {
        return;
    }
    let unexpected = monitoring::unexpected_result_dates(ctx, lookback);
    let events = (early.len() + lost.len() + unexpected.len()) as i64;
    if events < min_events {
        return;
    }
    let Some(latest) = early.iter().chain(&lost).chain(&unexpected).max().copied() else { return };
    let first = early.iter().chain(&lost).chain(&unexpected).min().copied().unwrap_or(latest);
    let reviewed = ctx.latest_review(|kind| *kind == ReviewKind::BenefitRisk).map(|r| r.reviewed_on);
    if reviewed.is_some_and(|on| on >= latest) {
        return;
    }
    let mut evidence = vec![
        Evidence::integer("early_requests", early.len() as i64),
        Evidence::integer("lost_or_stolen_reports", lost.len() as i64),
        Evidence::integer("unexpected_results", unexpected.len() as i64),
        Evidence::date("first_event_on", first),
        Evidence::date("latest_event_on", latest),
        Evidence::integer("policy_lookback_days", lookback),
        Evidence::integer("policy_min_events", min_events),
    ];
    match reviewed {
        Some(on) => evidence.push(Evidence::date("review_last_on", on)),
        None => evidence.push(Evidence::missing("review_last_on")),
    }
    ctx.fire(ReasonCode::AberrantPattern, evidence, None, false);
}

/// Days without supply that do not cost tolerance: a refill picked up a day or two late (the pharmacy
/// was closed, the patient came on Monday) is not a restart. Tolerance is defined over a week of daily
/// opioid (FDA labelling), so two missing days inside that week leave the patient tolerant.
const TOLERANCE_GRACE_DAYS: i64 = 2;

/// Whether opioid supply covered the `days` days before `today` (a fill covers its fill day and the
/// `days_supply - 1` days after it), allowing `TOLERANCE_GRACE_DAYS` uncovered days. Walking back from
/// yesterday, each day must fall in a fill, and the oldest fill covering it moves the walk past its start.
fn continuous_supply(ctx: &RuleContext, days: i64) -> bool {
    let mut uncovered = 1;
    let mut missing = 0;
    while uncovered <= days {
        let oldest_covering = ctx
            .facts
            .fills
            .iter()
            .map(|fill| (ctx.age_days(fill.filled_on), i64::from(fill.days_supply)))
            .filter(|(age, supply)| *age >= uncovered && age - supply < uncovered)
            .map(|(age, _)| age)
            .max();
        match oldest_covering {
            Some(age) => uncovered = age + 1,
            None if missing < TOLERANCE_GRACE_DAYS => {
                missing += 1;
                uncovered += 1;
            }
            None => return false,
        }
    }
    true
}

/// An extended-release or long-acting opioid in the requested regimen for a patient who is not opioid
/// tolerant. Tolerant: opioid supply on every one of the last `opioid_tolerant_days` days at a regimen of
/// record of at least `opioid_tolerant_mme` (FDA: 60 mg oral morphine a day for a week or longer), or
/// the same ER/LA product continued from the regimen of record with no gap in supply. Starting an
/// ER/LA opioid, or restarting one after a gap (lost tolerance), goes to a physician.
pub(super) fn check_er_la_tolerance(ctx: &mut RuleContext) {
    let table = DrugTable::embedded();
    let is_long_acting = |order: &&MedicationOrder| {
        order.purpose == OrderPurpose::Pain && table.identify(order).is_ok_and(|product| product.acting == Acting::Long)
    };
    if !ctx.request.regimen.iter().any(|order| is_long_acting(&order)) {
        return;
    }
    let policy = &ctx.policy.refill;
    let days = policy.opioid_tolerant_days;
    let threshold = policy.opioid_tolerant_mme;
    let supplied = continuous_supply(ctx, days);
    // The refill of a stable patient: the regimen of record, supplied without a gap.
    if supplied && ctx.same_regimen_as_record {
        return;
    }
    let long_acting: Vec<&MedicationOrder> = ctx.request.regimen.iter().filter(is_long_acting).collect();
    let continued =
        |order: &&MedicationOrder| supplied && ctx.facts.regimen.iter().any(|r| dose::same_product(r, order));
    if long_acting.iter().all(continued) {
        return;
    }
    let record_mme = mme::daily_mme_total(&ctx.facts.regimen, ctx.policy.factor_set()).total_daily_mme;
    if supplied && record_mme.is_some_and(|total| total >= threshold) {
        return;
    }
    let new_or_restarted: Vec<String> =
        long_acting.iter().filter(|order| !continued(order)).map(|order| order.label()).collect();
    let restricted = ctx.request.regimen.iter().any(|o| o.confidentiality.is_restricted());
    let evidence = vec![
        Evidence::text("products", new_or_restarted.join("; ")),
        match record_mme {
            Some(total) => Evidence::number("record_daily_mme", total),
            None => Evidence::missing("record_daily_mme"),
        },
        Evidence::number("tolerant_mme", threshold),
        Evidence::flag("continuous_supply", supplied),
        Evidence::integer("policy_days", days),
    ];
    ctx.fire(ReasonCode::ErLaNotOpioidTolerant, evidence, None, restricted);
}

/// Patient statements recorded within the lookback, one reason each, so they are read with the rest.
pub(super) fn show_patient_statements(ctx: &mut RuleContext) {
    let lookback = ctx.policy.refill.patient_statement_lookback_days;
    let mut shown = Vec::new();
    for statement in &ctx.facts.patient_statements {
        if !(0..=lookback).contains(&ctx.age_days(statement.recorded_on)) {
            continue;
        }
        let evidence = vec![
            Evidence::date("recorded_on", statement.recorded_on),
            Evidence::text("statement", statement.text.clone()),
        ];
        shown.push((evidence, statement.confidentiality.is_restricted()));
    }
    for (evidence, restricted) in shown {
        ctx.fire(ReasonCode::PatientStatement, evidence, None, restricted);
    }
}
