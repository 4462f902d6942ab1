//! Monitoring rules: PDMP review and outside prescribers (CDC 2022 Rec 9), urine drug testing due,
//! specimen validity, unexpected results read against what was prescribed in the 31 days before
//! collection, and prescribed opioids the screen cannot see (Rec 10; CQF-CDS), the patient agreement
//! and its required elements (Rec 2; WA L&I yearly renewal), the physician benefit-risk review (Rec 7)
//! and concurrent benzodiazepines, recorded or seen on the PDMP (Rec 11).

use std::borrow::Cow;

use chrono::NaiveDate;

use super::{RuleContext, dated_evidence};
use crate::agreement::{self, AgreementState};
use crate::days::{add_days, days_between, sub_days};
use crate::decision::{Evidence, ReasonCode, Task};
use crate::drug::DrugTable;
use crate::facts::{
    DrugClass, MedicationOrder, OrderPurpose, OtherMedicationClass, PrescriberId, ReviewKind, SpecimenValidity,
    UdsKind, UdsResult,
};
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
            let acknowledgement = ctx.latest_review(|kind| acknowledges(kind, &finding.prescriber, finding.drug_class));
            let acknowledged = acknowledgement.is_some_and(|ack| ctx.age_days(ack.reviewed_on) <= ack_max_age);
            // Opioids from outside the clinic always go to a physician; other controlled substances only
            // until a physician acknowledges the prescriber.
            if finding.drug_class != DrugClass::Opioid && acknowledged {
                continue;
            }
            let mut evidence = Vec::with_capacity(9);
            evidence.extend([
                Evidence::text("prescriber", finding.prescriber.0.clone()),
                Evidence::text("drug_class", finding.drug_class.as_str()),
                Evidence::date("filled_on", finding.filled_on),
                Evidence::date("pdmp_reviewed_on", review.reviewed_on),
            ]);
            if let Some(product) = &finding.product {
                evidence.push(Evidence::text("product", product.clone()));
            }
            if let Some(days_supply) = finding.days_supply {
                evidence.push(Evidence::integer("days_supply", i64::from(days_supply)));
            }
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

/// Whether a physician review acknowledges an outside prescriber's prescribing of a class: an
/// acknowledgement of the prescriber (any class), or of the prescriber and this class together.
pub(super) fn acknowledges(kind: &ReviewKind, prescriber: &PrescriberId, class: DrugClass) -> bool {
    match kind {
        ReviewKind::OutsidePrescriberAcknowledged(p) => p == prescriber,
        ReviewKind::OutsidePrescriberClassAcknowledged(p, c) => p == prescriber && *c == class,
        _ => false,
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

/// Every result collected within the lookback and not yet reviewed by a physician is read against what
/// was prescribed in the 31 days before it was collected (CQF-CDS Rec 10; clinical-rules.md §3.4), not
/// against today's regimen. A missing, unexpected or illicit analyte, or methadone without EDDP,
/// escalates; a presumptive one also asks for a confirmatory test (CDC 2022 Rec 10: confirm, discuss,
/// never dismiss). An invalid specimen is not read at all: it asks for a recollection. When the latest
/// result cannot see a prescribed opioid (an `opiates` screen and oxycodone), it cannot show adherence,
/// so a definitive test is asked for. The lookback (default 365 days, the longest gap between tests)
/// bounds the work for patients with years of results; a flagged result escalates every refill inside
/// it, so it is reviewed long before it ages out.
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
    let latest = ctx.facts.uds.results.iter().filter(|r| r.collected_on <= today).map(|r| r.collected_on).max();
    let mut fired = Vec::new();
    for result in pending() {
        let restricted = result.confidentiality.is_restricted();
        if result.specimen_validity == SpecimenValidity::Invalid {
            // A later specimen replaces it; until then, collect again.
            if latest == Some(result.collected_on) {
                let evidence = vec![
                    Evidence::date("collected_on", result.collected_on),
                    Evidence::text("specimen_validity", result.specimen_validity.as_str()),
                ];
                fired.push((ReasonCode::UdsSpecimenInvalid, evidence, Some(Task::CollectUds), restricted));
            }
            continue;
        }
        let found = prescribed_ingredients(ctx, result.collected_on);
        let prescribed = found.names.as_slice();
        if latest == Some(result.collected_on) {
            let mut unseen = uds::not_tested(result, &found.pain_opioids);
            // A screen and a definitive test collected the same day are one collection: an opioid the
            // other one sees is tested.
            let same_day = || ctx.facts.uds.results.iter().filter(|r| r.collected_on == result.collected_on);
            if !unseen.is_empty() && same_day().count() > 1 {
                unseen.retain(|ingredient| same_day().all(|other| !uds::not_tested(other, &[ingredient]).is_empty()));
            }
            if !unseen.is_empty() {
                let evidence = vec![
                    Evidence::date("collected_on", result.collected_on),
                    Evidence::text("not_tested", unseen.join(", ")),
                    Evidence::text("assays", assays_of(result)),
                ];
                fired.push((ReasonCode::UdsPrescribedNotTested, evidence, Some(Task::ConfirmatoryTest), restricted));
            }
        }
        if shows_exactly_what_is_prescribed(result, prescribed) {
            continue;
        }
        let Some(findings) = uds::flagged_findings(result, prescribed) else {
            continue;
        };
        let mut evidence = vec![
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
            Evidence::text(
                "read_against",
                if prescribed.is_empty() {
                    "nothing prescribed".to_string()
                } else {
                    prescribed.iter().map(|p| p.as_ref()).collect::<Vec<_>>().join(", ")
                },
            ),
        ];
        if result.specimen_validity == SpecimenValidity::Dilute {
            evidence.push(Evidence::text("specimen_validity", result.specimen_validity.as_str()));
        }
        let task = (!result.confirmatory).then_some(Task::ConfirmatoryTest);
        fired.push((ReasonCode::UdsUnexpectedResult, evidence, task, restricted));
    }
    for (code, evidence, task, restricted) in fired {
        ctx.fire(code, evidence, task, restricted);
    }
}

/// Dates of results collected within `lookback` days whose reading (against what was prescribed in the
/// 31 days before each) flags something, reviewed or not: the drug-test part of an aberrant pattern.
pub(super) fn unexpected_result_dates(ctx: &RuleContext, lookback: i64) -> Vec<NaiveDate> {
    let mut dates: Vec<NaiveDate> = Vec::new();
    for result in &ctx.facts.uds.results {
        if !(0..=lookback).contains(&ctx.age_days(result.collected_on))
            || result.specimen_validity == SpecimenValidity::Invalid
            || dates.contains(&result.collected_on)
        {
            continue;
        }
        let found = prescribed_ingredients(ctx, result.collected_on);
        let prescribed = found.names.as_slice();
        if !shows_exactly_what_is_prescribed(result, prescribed) && uds::flagged_findings(result, prescribed).is_some()
        {
            dates.push(result.collected_on);
        }
    }
    dates.sort();
    dates
}

/// The assays a result ran, each once, in report order.
fn assays_of(result: &UdsResult) -> String {
    let mut assays: Vec<&str> = Vec::new();
    for line in &result.analytes {
        if !assays.contains(&line.assay.as_str()) {
            assays.push(&line.assay);
        }
    }
    assays.join(", ")
}

/// How many days before collection a prescription still explains (or expects) a drug in urine
/// (CQF-CDS `OpioidCDSREC10Common.cql`: a prescription in the 31 days before the lab).
const PRESCRIBED_LOOKBACK_DAYS: i64 = 31;

/// Whether an opioid order was prescribed in the 31 days before `collected_on`. Its fills (linked by
/// order id) place it in time: one whose supply overlaps the window counts. An order of the regimen of
/// record counts as before (prescribed throughout) when nothing places it: no linked fill, or a fill
/// history that does not reach back to the collection (an import with a short history must not make a
/// current drug read as unprescribed). An order only requested now, or a past order, needs a fill in
/// the window.
fn order_prescribed_within(
    ctx: &RuleContext,
    order: &MedicationOrder,
    of_record: bool,
    collected_on: NaiveDate,
) -> bool {
    let mut linked =
        ctx.facts.fills.iter().filter(|fill| fill.order_id.as_deref() == Some(order.id.as_str())).peekable();
    if linked.peek().is_none() {
        return of_record;
    }
    // In whole days before collection: filled by then, and supplying into the window.
    let in_window = linked.any(|fill| {
        let age = days_between(collected_on, fill.filled_on);
        age >= 0 && age - i64::from(fill.days_supply) <= PRESCRIBED_LOOKBACK_DAYS
    });
    in_window || (of_record && ctx.facts.fills.iter().all(|fill| fill.filled_on > collected_on))
}

/// Calls `each` with the opioid ingredient of every order prescribed in the 31 days before
/// `collected_on`: the regimen of record, orders requested now, past orders (all placed in time by their
/// fills), and outside opioids the PDMP shows filled in that window, with whether it is given for pain
/// (not for opioid use disorder). Ingredients may repeat; nothing is allocated.
fn for_each_prescribed_opioid(ctx: &RuleContext, collected_on: NaiveDate, mut each: impl FnMut(&'static str, bool)) {
    let table = DrugTable::embedded();
    let facts = ctx.facts;
    let mut visit = |order: &MedicationOrder, of_record: bool| {
        if order_prescribed_within(ctx, order, of_record, collected_on)
            && let Some(ingredient) = opioid_ingredient(table, order)
        {
            each(ingredient, order.purpose == OrderPurpose::Pain);
        }
    };
    for order in &facts.regimen {
        visit(order, true);
    }
    if !ctx.same_regimen_as_record {
        for order in ctx.request.regimen.iter().filter(|order| !facts.regimen.iter().any(|o| o.id == order.id)) {
            visit(order, false);
        }
    }
    for order in &facts.past_orders {
        visit(order, false);
    }
    let window_start = sub_days(collected_on, PRESCRIBED_LOOKBACK_DAYS);
    for finding in ctx.outside_findings.iter().filter(|f| f.drug_class == DrugClass::Opioid) {
        let in_window = finding.filled_on <= collected_on
            && add_days(finding.filled_on, i64::from(finding.days_supply.unwrap_or(0))) >= window_start;
        if !in_window {
            continue;
        }
        if let Ok(product) = table.identify_parts(finding.rxcui.as_deref(), finding.product.as_deref())
            && let Some(ingredient) = table.canonical_ingredient(product.ingredient())
        {
            each(ingredient, true);
        }
    }
}

/// The opioid ingredient of an order: its code in the drug table, else its text.
fn opioid_ingredient(table: &'static DrugTable, order: &MedicationOrder) -> Option<&'static str> {
    let coded = order.rxcui.as_deref().and_then(|code| table.by_rxcui(code)).map(|product| product.ingredient());
    coded.or_else(|| table.ingredient_of(order))
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

/// What the patient was known to take in the 31 days before `collected_on`, as lower-case ingredient
/// names for UDS interpretation: the opioid orders of that window (through the drug table), OUD
/// treatment from elsewhere and other medications started by then, recorded or seen on the PDMP (their
/// first word, e.g. `alprazolam`).
fn prescribed_ingredients<'a>(ctx: &RuleContext<'a>, collected_on: NaiveDate) -> Prescribed<'a> {
    let mut names = Names::default();
    let mut pain_opioids: Vec<&'static str> = Vec::new();
    let mut add = |name: Cow<'a, str>| {
        if !name.is_empty() && !names.as_slice().contains(&name) {
            names.push(name);
        }
    };
    for_each_prescribed_opioid(ctx, collected_on, |ingredient, for_pain| {
        if for_pain && !pain_opioids.contains(&ingredient) {
            pain_opioids.push(ingredient);
        }
        add(Cow::Borrowed(ingredient));
    });
    for medication in super::outside::seen_medications(ctx, collected_on) {
        // Usually already lower case: then the words are borrowed from the fact, not copied.
        let lower = text::lower_case(medication.text);
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
    Prescribed { names, pain_opioids }
}

/// What `prescribed_ingredients` found: every ingredient, and the opioids given for pain among them
/// (whose adherence a screen must be able to show).
struct Prescribed<'a> {
    names: Names<'a>,
    pain_opioids: Vec<&'static str>,
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

/// An active benzodiazepine, recorded or seen only on the PDMP, without a physician acknowledgement
/// within the review interval. A PDMP benzodiazepine is also acknowledged by an acknowledgement of its
/// outside prescriber and the benzodiazepine class together (one decision covers both reasons).
pub(super) fn check_benzodiazepines(ctx: &mut RuleContext) {
    let today = ctx.today;
    let max_age = ctx.policy.refill.acknowledgement_max_age_days;
    let mut benzodiazepines = super::outside::seen_medications(ctx, today)
        .filter(|m| m.class == OtherMedicationClass::Benzodiazepine)
        .peekable();
    if benzodiazepines.peek().is_none() {
        return;
    }
    let acknowledged = ctx.latest_review(|kind| *kind == ReviewKind::BenzodiazepineAcknowledged).map(|r| r.reviewed_on);
    if acknowledged.is_some_and(|on| ctx.age_days(on) <= max_age) {
        return;
    }
    let current = |prescriber: &PrescriberId| {
        ctx.latest_review(|kind| {
            matches!(kind, ReviewKind::OutsidePrescriberClassAcknowledged(p, DrugClass::Benzodiazepine) if p == prescriber)
        })
        .is_some_and(|ack| ctx.age_days(ack.reviewed_on) <= max_age)
    };
    let unacknowledged: Vec<_> = benzodiazepines.filter(|m| !m.pdmp_prescriber.is_some_and(current)).collect();
    if unacknowledged.is_empty() {
        return;
    }
    let restricted = unacknowledged.iter().any(|m| m.confidentiality.is_restricted());
    let medications: Vec<&str> = unacknowledged.iter().map(|m| m.text).collect();
    let mut evidence = Vec::with_capacity(5);
    evidence.push(Evidence::text("medication", medications.join("; ")));
    let outside: Vec<&str> = unacknowledged.iter().filter_map(|m| m.pdmp_prescriber).map(|p| p.0.as_str()).collect();
    if !outside.is_empty() {
        evidence.push(Evidence::text("pdmp_prescriber", outside.join("; ")));
    }
    dated_evidence(&mut evidence, "acknowledged_on", "acknowledgement_age_days", acknowledged, today);
    evidence.push(Evidence::integer("policy_max_days", max_age));
    ctx.fire(ReasonCode::BenzodiazepineUnacknowledged, evidence, None, restricted);
}

/// A current agreement that lacks an element the policy requires for it to be current (CDC 2022 Rec
/// 2: treatment goals and how therapy will end, discussed before prescribing): renew it. Elements are
/// compared ignoring case and `-`/`_`/space differences; an agreement recorded without any elements
/// is not judged (its source did not carry them).
pub(super) fn check_agreement_elements(ctx: &mut RuleContext) {
    let policy = &ctx.policy.agreement;
    let Some(agreement) = ctx.facts.agreement.as_ref() else { return };
    if agreement.elements.is_empty() || policy.current_requires.is_empty() {
        return;
    }
    let state = agreement::agreement_state(Some(agreement), ctx.facts.prescriber_of_record.as_ref(), ctx.today, policy);
    if !state.is_valid() {
        // Missing, expired and void agreements already ask for a renewal.
        return;
    }
    let normal = |element: &str| -> String {
        element.trim().chars().map(|c| if c == '-' || c == ' ' { '_' } else { c.to_ascii_lowercase() }).collect()
    };
    let recorded: Vec<String> = agreement.elements.iter().map(|e| normal(e)).collect();
    let missing: Vec<&str> =
        policy.current_requires.iter().filter(|r| !recorded.contains(&normal(r))).map(String::as_str).collect();
    if missing.is_empty() {
        return;
    }
    let evidence = vec![
        Evidence::date("agreement_signed_on", agreement.signed_on),
        Evidence::text("missing_elements", missing.join(", ")),
        Evidence::text("text_version", agreement.text_version.clone()),
    ];
    ctx.fire(ReasonCode::AgreementIncomplete, evidence, Some(Task::RenewAgreement), false);
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
