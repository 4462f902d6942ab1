//! What other prescribers supply, as the PDMP shows it (CDC 2022 Rec 9: use the PDMP for other
//! prescribers' opioids, the total MME and benzodiazepine combinations).
//!
//! An opioid an outside prescriber dispensed whose supply overlaps the request counts in the daily
//! MME, so the naloxone, high-MME and crossing rules read the dose the patient actually has. A
//! benzodiazepine or opioid-use-disorder treatment seen only on the PDMP counts like a recorded other
//! medication (naloxone trigger, concurrent benzodiazepine, OUD treatment elsewhere, drug-test reading).

use chrono::NaiveDate;

use super::RuleContext;
use crate::days::add_days;
use crate::drug::DrugTable;
use crate::facts::{
    Confidentiality, DoseQuantity, DoseUnit, DrugClass, MedicationOrder, OtherMedicationClass, PdmpFinding,
    PrescriberId,
};
use crate::mme::{self, FactorSet};

/// A medication the rules treat like a recorded other medication: recorded on the chart, or seen only
/// on the PDMP (then with the outside prescriber, so an acknowledgement of that prescriber and class
/// covers it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SeenMedication<'a> {
    pub class: OtherMedicationClass,
    pub text: &'a str,
    pub started_on: Option<NaiveDate>,
    pub confidentiality: Confidentiality,
    /// The outside prescriber, for a medication seen on the PDMP.
    pub pdmp_prescriber: Option<&'a PrescriberId>,
}

/// The class of other medication a PDMP finding counts as, if any.
fn other_medication_class(class: DrugClass) -> Option<OtherMedicationClass> {
    match class {
        DrugClass::Benzodiazepine => Some(OtherMedicationClass::Benzodiazepine),
        DrugClass::OudTreatment => Some(OtherMedicationClass::OudTreatment),
        DrugClass::Opioid | DrugClass::OtherControlled => None,
    }
}

/// Words for a PDMP finding without a product: the class and where it was seen.
fn class_words(class: DrugClass) -> &'static str {
    match class {
        DrugClass::Benzodiazepine => "benzodiazepine (PDMP)",
        DrugClass::OudTreatment => "opioid use disorder treatment (PDMP)",
        DrugClass::Opioid => "opioid (PDMP)",
        DrugClass::OtherControlled => "controlled substance (PDMP)",
    }
}

/// PDMP findings on reviews done by `today`, filled within the lookback, from prescribers outside the
/// clinic, each (prescriber, class, fill date, product) once. Worked out once per decision
/// (`RuleContext::outside_findings`); empty, without allocating, for the many patients with none.
pub(crate) fn outside_findings<'a>(ctx: &RuleContext<'a>) -> Vec<&'a PdmpFinding> {
    let lookback = ctx.policy.refill.pdmp_finding_lookback_days;
    let mut found: Vec<&'a PdmpFinding> = Vec::new();
    for review in ctx.facts.pdmp_reviews.iter().filter(|r| r.reviewed_on <= ctx.today) {
        for finding in &review.findings {
            if !(0..=lookback).contains(&ctx.age_days(finding.filled_on))
                || ctx.is_clinic_prescriber(&finding.prescriber)
            {
                continue;
            }
            if !found.contains(&finding) {
                found.push(finding);
            }
        }
    }
    found
}

/// The words a PDMP benzodiazepine or OUD treatment goes by: its product, else its class.
fn pdmp_text(finding: &PdmpFinding) -> &str {
    finding.product.as_deref().unwrap_or(class_words(finding.drug_class))
}

/// Recorded active other medications and those seen only on the PDMP, started by `on`. An iterator,
/// so the rules that ask on every decision (naloxone, benzodiazepines, OUD treatment) allocate nothing.
pub(crate) fn seen_medications<'c, 'a>(
    ctx: &'c RuleContext<'a>,
    on: NaiveDate,
) -> impl Iterator<Item = SeenMedication<'a>> + use<'c, 'a> {
    let facts: &'a crate::facts::PatientFacts = ctx.facts;
    let findings: &'c [&'a PdmpFinding] = &ctx.outside_findings;
    let recorded =
        facts.other_medications.iter().filter(move |m| m.active && m.started_on.is_none_or(|s| s <= on)).map(|m| {
            SeenMedication {
                class: m.class,
                text: &m.text,
                started_on: m.started_on,
                confidentiality: m.confidentiality,
                pdmp_prescriber: None,
            }
        });
    let pdmp = findings.iter().enumerate().filter_map(move |(index, finding)| {
        let class = other_medication_class(finding.drug_class)?;
        if finding.filled_on > on {
            return None;
        }
        // The same prescriber's refills of one product are one medication: keep the first.
        let repeat = findings[..index].iter().any(|earlier| {
            earlier.prescriber == finding.prescriber
                && earlier.drug_class == finding.drug_class
                && earlier.filled_on <= on
                && pdmp_text(earlier) == pdmp_text(finding)
        });
        (!repeat).then(|| SeenMedication {
            class,
            text: pdmp_text(finding),
            started_on: Some(finding.filled_on),
            confidentiality: Confidentiality::Normal,
            pdmp_prescriber: Some(&finding.prescriber),
        })
    });
    recorded.chain(pdmp)
}

/// The outside opioids whose supply overlaps the request, as orders the MME module can count.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct OutsideOpioids {
    pub orders: Vec<MedicationOrder>,
}

impl OutsideOpioids {
    /// Opioid findings from outside prescribers with a days supply that covers `today` (filled on or
    /// before it, running out after it). A finding without a days supply is reported by the outside
    /// prescriber rule but cannot be placed in time, so it is not counted here.
    pub fn overlapping(findings: &[&PdmpFinding], today: NaiveDate) -> OutsideOpioids {
        let mut orders = Vec::new();
        for (index, finding) in findings.iter().enumerate() {
            if finding.drug_class != DrugClass::Opioid {
                continue;
            }
            let Some(days_supply) = finding.days_supply.filter(|days| *days > 0) else { continue };
            if finding.filled_on > today || add_days(finding.filled_on, i64::from(days_supply)) <= today {
                continue;
            }
            orders.push(pdmp_order(finding, days_supply, index));
        }
        OutsideOpioids { orders }
    }

    /// Their total daily MME (`None` when one cannot be determined) and the labels of those that cannot.
    pub fn mme(&self, factor_set: FactorSet) -> (Option<f64>, Vec<String>) {
        if self.orders.is_empty() {
            return (Some(0.0), Vec::new());
        }
        let result = mme::daily_mme(&self.orders, factor_set);
        let undetermined = result.undetermined.iter().map(|u| format!("{} ({})", u.medication, u.reason)).collect();
        (result.total_daily_mme, undetermined)
    }
}

/// A dispensed PDMP fill as an order: quantity over days supply, in dose-form units a day. A patch
/// product counts the patches worn at once, for the 72-hour systems the table lists (three days each).
fn pdmp_order(finding: &PdmpFinding, days_supply: u32, index: usize) -> MedicationOrder {
    let transdermal = DrugTable::embedded()
        .identify_parts(finding.rxcui.as_deref(), finding.product.as_deref())
        .is_ok_and(|product| product.is_transdermal());
    let per_day = finding.quantity.map(|quantity| quantity / f64::from(days_supply));
    let (dose, doses_per_day) = match per_day {
        Some(per_day) if transdermal => (Some(per_day * 3.0), Some(1.0 / 3.0)),
        Some(per_day) => (Some(per_day), Some(1.0)),
        None => (None, None),
    };
    MedicationOrder {
        id: format!("pdmp-{index}"),
        rxcui: finding.rxcui.clone(),
        text: Some(finding.product.clone().unwrap_or_else(|| class_words(finding.drug_class).to_string())),
        dose: dose.map(|value| DoseQuantity { value, unit: DoseUnit::DoseFormUnit }),
        doses_per_day,
        days_supply: Some(days_supply),
        dispense_quantity: finding.quantity,
        prescriber: Some(finding.prescriber.clone()),
        purpose: Default::default(),
        confidentiality: Confidentiality::Normal,
    }
}
