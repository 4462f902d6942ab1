//! Monitoring rules: PDMP review and outside prescribers (CDC 2022 Rec 9), urine drug testing due and
//! unexpected results (Rec 10), the patient agreement (Rec 2; WA L&I yearly renewal), the physician
//! benefit-risk review (Rec 7) and concurrent benzodiazepines (Rec 11).

use std::borrow::Cow;

use super::{RuleContext, dated_evidence};
use crate::agreement::{self, AgreementState};
use crate::days::days_between;
use crate::decision::{Evidence, ReasonCode, Task};
use crate::drug::DrugTable;
use crate::facts::{DrugClass, OtherMedicationClass, ReviewKind, UdsKind, UdsResult};
use crate::text;
use crate::uds::{self, Lookup};

/// PDMP last reviewed more than `pdmp_review_max_age_days` ago (or never): approve with the review
/// as a task that must be done before the prescription is released.
pub(super) fn check_pdmp_review(ctx: &mut RuleContext) {
    let today = ctx.today;
    let last = ctx.facts.pdmp_reviews.iter().map(|r| r.reviewed_on).filter(|on| *on <= today).max();
    let max_age = ctx.policy.refill.pdmp_review_max_age_days;
    if last.is_some_and(|on| ctx.age_days(on) <= max_age) {
        return;
    }
    let mut evidence = Vec::with_capacity(3);
    dated_evidence(&mut evidence, "pdmp_last_reviewed", "pdmp_age_days", last, today);
    evidence.push(Evidence::integer("policy_max_days", max_age));
    ctx.fire(ReasonCode::PdmpReviewOverdue, evidence, Some(Task::ReviewPdmp), false);
}

/// The PDMP shows an opioid from a prescriber outside the clinic, or another controlled substance from
/// an outside prescriber no physician acknowledged within the review interval. One reason per
/// prescriber and drug class, from findings filled within the lookback.
pub(super) fn check_pdmp_outside_prescribers(ctx: &mut RuleContext) {
    let today = ctx.today;
    let lookback = ctx.policy.refill.pdmp_finding_lookback_days;
    let ack_max_age = ctx.policy.refill.acknowledgement_max_age_days;
    let reviews = &ctx.facts.pdmp_reviews;
    for (review_index, review) in reviews.iter().enumerate() {
        if review.reviewed_on > today {
            continue;
        }
        for (finding_index, finding) in review.findings.iter().enumerate() {
            let age = ctx.age_days(finding.filled_on);
            if !(0..=lookback).contains(&age) || ctx.is_clinic_prescriber(&finding.prescriber) {
                continue;
            }
            // Report each (prescriber, class) once: at its latest fill, from the first review showing it.
            let reported_elsewhere = reviews.iter().enumerate().any(|(ri, r)| {
                r.reviewed_on <= today
                    && r.findings.iter().enumerate().any(|(fi, f)| {
                        f.prescriber == finding.prescriber
                            && f.drug_class == finding.drug_class
                            && (0..=lookback).contains(&ctx.age_days(f.filled_on))
                            && (f.filled_on > finding.filled_on
                                || (f.filled_on == finding.filled_on && (ri, fi) < (review_index, finding_index)))
                    })
            });
            if reported_elsewhere {
                continue;
            }
            let acknowledgement = ctx.latest_review(
                |kind| matches!(kind, ReviewKind::OutsidePrescriberAcknowledged(p) if p == &finding.prescriber),
            );
            let acknowledged = acknowledgement.is_some_and(|ack| ctx.age_days(ack.reviewed_on) <= ack_max_age);
            // Opioids from outside the clinic always go to a physician; other controlled substances only
            // until a physician acknowledges the prescriber.
            if finding.drug_class != DrugClass::Opioid && acknowledged {
                continue;
            }
            let class = match finding.drug_class {
                DrugClass::Opioid => "opioid",
                DrugClass::Benzodiazepine => "benzodiazepine",
                DrugClass::OtherControlled => "other_controlled",
            };
            let mut evidence = Vec::with_capacity(7);
            evidence.extend([
                Evidence::text("prescriber", finding.prescriber.0.clone()),
                Evidence::text("drug_class", class),
                Evidence::date("filled_on", finding.filled_on),
                Evidence::date("pdmp_reviewed_on", review.reviewed_on),
            ]);
            dated_evidence(
                &mut evidence,
                "acknowledged_on",
                "acknowledgement_age_days",
                acknowledgement.map(|a| a.reviewed_on),
                today,
            );
            evidence.push(Evidence::integer("policy_max_days", ack_max_age));
            ctx.fire(ReasonCode::PdmpOutsidePrescriber, evidence, None, false);
        }
    }
}

/// A scheduled (randomly drawn) or for-cause UDS whose date has passed without a test. The drawn date
/// decides, never a fixed interval (see `uds::scheduled_test_missed`).
pub(super) fn check_uds_due(ctx: &mut RuleContext) {
    let today = ctx.today;
    let uds_facts = &ctx.facts.uds;
    let tested_since = |due| uds_facts.results.iter().any(|r| r.collected_on >= due && r.collected_on <= today);
    let mut due_items = [None, None];
    if let Some(due) = uds_facts.scheduled_due
        && uds::scheduled_test_missed(uds_facts, today)
    {
        due_items[0] = Some(("scheduled", due));
    }
    if let Some(due) = uds_facts.for_cause_due
        && due < today
        && !tested_since(due)
    {
        due_items[1] = Some(("for_cause", due));
    }
    for (kind, due) in due_items.into_iter().flatten() {
        let evidence = vec![
            Evidence::text("uds_kind", kind),
            Evidence::date("uds_due_on", due),
            Evidence::integer("days_past_due", ctx.age_days(due)),
        ];
        ctx.fire(ReasonCode::UdsOverdue, evidence, Some(Task::CollectUds), false);
    }
}

/// Every result collected within the lookback and not yet reviewed by a physician whose interpretation
/// finds a missing, unexpected or illicit analyte escalates; a presumptive one also asks for a
/// confirmatory test (CDC 2022 Rec 10: confirm, discuss, never dismiss). The lookback (default 365 days,
/// the longest gap between tests) bounds the work for patients with years of results; a flagged result
/// escalates every refill inside it, so it is reviewed long before it ages out.
pub(super) fn check_uds_results(ctx: &mut RuleContext) {
    let today = ctx.today;
    let lookback = ctx.policy.refill.uds_result_lookback_days;
    let pending = || {
        ctx.facts.uds.results.iter().filter(move |r| {
            r.physician_reviewed_on.is_none()
                && r.collected_on <= today
                && days_between(today, r.collected_on) <= lookback
        })
    };
    if pending().next().is_none() {
        return;
    }
    let prescribed = prescribed_ingredients(ctx);
    let prescribed = prescribed.as_slice();
    let mut fired = Vec::new();
    for result in pending() {
        if shows_exactly_what_is_prescribed(result, prescribed) {
            continue;
        }
        let Some(findings) = uds::flagged_findings(result, prescribed) else {
            continue;
        };
        let evidence = vec![
            Evidence::date("collected_on", result.collected_on),
            Evidence::text(
                "uds_kind",
                match result.kind {
                    UdsKind::Scheduled => "scheduled",
                    UdsKind::ForCause => "for_cause",
                },
            ),
            Evidence::flag("confirmatory", result.confirmatory),
            Evidence::text("findings", findings),
        ];
        let task = (!result.confirmatory).then_some(Task::ConfirmatoryTest);
        fired.push((evidence, task, result.confidentiality.is_restricted()));
    }
    for (evidence, task, restricted) in fired {
        ctx.fire(ReasonCode::UdsUnexpectedResult, evidence, task, restricted);
    }
}

/// The common unremarkable result, recognised without the full interpretation: every line is a
/// positive, on an assay the UDS table says can see it (or a confirmatory one), for an analyte that is
/// itself a prescribed ingredient listed in the table, and every prescribed ingredient shows up. Nothing can then be
/// missing, unexpected or illicit, so `uds::interpret` would flag nothing (the refill tests check this
/// agreement); anything else goes through the full interpretation.
pub(crate) fn shows_exactly_what_is_prescribed(result: &UdsResult, prescribed: &[impl AsRef<str>]) -> bool {
    let lookup = Lookup::embedded();
    !prescribed.is_empty()
        && result.analytes.iter().all(|line| {
            line.detected
                && prescribed.iter().any(|p| p.as_ref() == line.analyte)
                && lookup.sees_listed_ingredient(&line.assay, &line.analyte)
        })
        && prescribed.iter().all(|p| result.analytes.iter().any(|line| line.analyte == p.as_ref()))
}

/// What the patient is known to take, as lower-case ingredient names for UDS interpretation: the opioid
/// regimen of record and the requested one (through the drug table), OUD treatment from elsewhere and
/// other active medications (their first word, e.g. `alprazolam`).
fn prescribed_ingredients<'a>(ctx: &RuleContext<'a>) -> Names<'a> {
    let table = DrugTable::embedded();
    let mut names = Names::default();
    let mut add = |name: Cow<'a, str>| {
        if !name.is_empty() && !names.as_slice().contains(&name) {
            names.push(name);
        }
    };
    // The regimen of record is usually the requested one: look it up once.
    let record = if ctx.same_regimen_as_record { &[][..] } else { ctx.facts.regimen.as_slice() };
    for order in ctx.request.regimen.iter().chain(record) {
        // Coded products: the table's ingredient is already canonical; otherwise identify by text.
        let coded = order.rxcui.as_deref().and_then(|code| table.by_rxcui(code)).map(|product| product.ingredient());
        if let Some(ingredient) = coded.or_else(|| table.ingredient_of(order)) {
            add(Cow::Borrowed(ingredient));
        }
    }
    for medication in ctx.facts.other_medications.iter().filter(|m| m.active) {
        // Usually already lower case: then the words are borrowed from the fact, not copied.
        let lower = text::lower_case(&medication.text);
        for known in ["methadone", "buprenorphine"] {
            if lower.contains(known) {
                add(Cow::Borrowed(known));
            }
        }
        if medication.class == OtherMedicationClass::Benzodiazepine {
            fn first_word(text: &str) -> Option<&str> {
                text.split(|c: char| !c.is_alphanumeric() && c != '-').find(|w| !w.is_empty())
            }
            let first = match &lower {
                Cow::Borrowed(text) => first_word(text).map(Cow::Borrowed),
                Cow::Owned(text) => first_word(text).map(|word| Cow::Owned(word.to_string())),
            };
            // Brand names map to the ingredient the UDS table lists, so a prescribed benzodiazepine
            // found on a screen reads as expected rather than unexpected.
            if let Some(first) = first {
                match benzodiazepine_brand_ingredient(&first) {
                    Some(ingredient) => add(Cow::Borrowed(ingredient)),
                    None => add(first),
                }
            }
        }
    }
    names
}

/// The names `prescribed_ingredients` collects: a handful (a regimen and a few other medications), kept
/// in place rather than in a heap allocation for every decision; more than fit move to a vector.
#[derive(Default)]
struct Names<'a> {
    inline: [Cow<'a, str>; 6],
    len: usize,
    spilled: Vec<Cow<'a, str>>,
}

impl<'a> Names<'a> {
    fn as_slice(&self) -> &[Cow<'a, str>] {
        if self.spilled.is_empty() { &self.inline[..self.len] } else { &self.spilled }
    }

    fn push(&mut self, name: Cow<'a, str>) {
        if self.spilled.is_empty() && self.len < self.inline.len() {
            self.inline[self.len] = name;
            self.len += 1;
        } else {
            if self.spilled.is_empty() {
                self.spilled.extend(self.inline.iter_mut().map(std::mem::take));
            }
            self.spilled.push(name);
        }
    }
}

/// The ingredient of a common benzodiazepine brand name (lower case), `None` for anything else.
fn benzodiazepine_brand_ingredient(word: &str) -> Option<&'static str> {
    Some(match word {
        "xanax" | "niravam" => "alprazolam",
        "klonopin" | "rivotril" => "clonazepam",
        "ativan" | "loreev" => "lorazepam",
        "valium" | "diastat" | "valtoco" => "diazepam",
        "restoril" => "temazepam",
        _ => return None,
    })
}

/// Missing, expired or void agreement: approve with a renewal task (a clinic may configure HOLD).
pub(super) fn check_agreement(ctx: &mut RuleContext) {
    let today = ctx.today;
    let policy = &ctx.policy.agreement;
    let agreement = ctx.facts.agreement.as_ref();
    let state = agreement::agreement_state(agreement, ctx.facts.prescriber_of_record.as_ref(), today, policy);
    let code = match &state {
        AgreementState::Missing => ReasonCode::AgreementMissing,
        AgreementState::Expired { .. } => ReasonCode::AgreementExpired,
        AgreementState::Void { .. } => ReasonCode::AgreementVoid,
        _ => return,
    };
    let mut evidence = Vec::with_capacity(5);
    evidence.push(Evidence::text("agreement_state", state.as_str()));
    dated_evidence(&mut evidence, "agreement_signed_on", "agreement_age_days", agreement.map(|a| a.signed_on), today);
    evidence.push(Evidence::integer("policy_valid_days", policy.valid_days));
    if let AgreementState::Void { reason } = &state {
        evidence.push(Evidence::text("void_reason", reason.clone()));
    }
    ctx.fire(code, evidence, Some(Task::RenewAgreement), false);
}

/// Physician benefit-risk review more than `physician_review_max_age_days` ago (or never).
pub(super) fn check_physician_review(ctx: &mut RuleContext) {
    let today = ctx.today;
    let max_age = ctx.policy.refill.physician_review_max_age_days;
    let last = ctx.latest_review(|kind| *kind == ReviewKind::BenefitRisk).map(|r| r.reviewed_on);
    if last.is_some_and(|on| ctx.age_days(on) <= max_age) {
        return;
    }
    let mut evidence = Vec::with_capacity(3);
    dated_evidence(&mut evidence, "review_last_on", "review_age_days", last, today);
    evidence.push(Evidence::integer("policy_max_days", max_age));
    ctx.fire(ReasonCode::PhysicianReviewOverdue, evidence, Some(Task::ScheduleReview), false);
}

/// An active benzodiazepine without a physician acknowledgement within the review interval.
pub(super) fn check_benzodiazepines(ctx: &mut RuleContext) {
    let today = ctx.today;
    let max_age = ctx.policy.refill.acknowledgement_max_age_days;
    let mut benzodiazepines = ctx
        .facts
        .other_medications
        .iter()
        .filter(|m| {
            m.active && m.class == OtherMedicationClass::Benzodiazepine && m.started_on.is_none_or(|on| on <= today)
        })
        .peekable();
    if benzodiazepines.peek().is_none() {
        return;
    }
    let acknowledged = ctx.latest_review(|kind| *kind == ReviewKind::BenzodiazepineAcknowledged).map(|r| r.reviewed_on);
    if acknowledged.is_some_and(|on| ctx.age_days(on) <= max_age) {
        return;
    }
    let restricted = benzodiazepines.clone().any(|m| m.confidentiality.is_restricted());
    let medications: Vec<&str> = benzodiazepines.map(|m| m.text.as_str()).collect();
    let mut evidence = Vec::with_capacity(4);
    evidence.push(Evidence::text("medication", medications.join("; ")));
    dated_evidence(&mut evidence, "acknowledged_on", "acknowledgement_age_days", acknowledged, today);
    evidence.push(Evidence::integer("policy_max_days", max_age));
    ctx.fire(ReasonCode::BenzodiazepineUnacknowledged, evidence, None, restricted);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_their_order_when_they_outgrow_the_inline_slots() {
        let words = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        let mut names = Names::default();
        for (count, word) in words.iter().enumerate() {
            names.push(Cow::Borrowed(word));
            let expected: Vec<&str> = words[..=count].to_vec();
            assert_eq!(names.as_slice().iter().map(|n| n.as_ref()).collect::<Vec<_>>(), expected);
        }
    }
}
