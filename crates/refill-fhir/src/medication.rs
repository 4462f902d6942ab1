//! MedicationRequest -> `MedicationOrder`: product, dose, doses per day, supply, prescriber, purpose;
//! and the classification of a product (opioid, benzodiazepine, naloxone, other) shared with dispenses.
//!
//! Choices (clinical-rules.md §1.1, cds-hooks.md §4.2):
//! - Only `status = active` counts as a current order. `draft` counts only for CDS Hooks draft orders
//!   (the order being signed), never in a bundle.
//! - Doses per day: `frequencyMax` over `frequency` (PRN at its maximum), divided by `period` (not
//!   `periodMax`: the shortest interval), units s/min/h/d/wk/mo(30 d)/a(365 d) and their long words;
//!   else the count of `timeOfDay`; else a `timing.code` abbreviation (BID, Q6H ...); else none, which
//!   leaves the MME undetermined (no silent default of once a day).
//! - Several `doseAndRate` entries: the one typed `ordered` (Epic sends calculated / admin-amount /
//!   ordered), else the first. Dose = `doseQuantity`, else `doseRange.high`.
//! - Dose unit from `doseQuantity.code` (UCUM), else from `.unit` when there is no code; a missing or
//!   unitless (`1`) unit is `Unusable`.
//! - Only the first `dosageInstruction` is read (the CDC MME profile fixes it at 1..1); more are named
//!   in `extra_dosage_instructions` so a screen can show it.

use std::collections::HashMap;

use chrono::NaiveDate;
use refill_rules::drug::DrugTable;
use refill_rules::{
    Confidentiality, DoseQuantity, DoseUnit, MedicationOrder, OrderPurpose, OtherMedication, OtherMedicationClass,
    PrescriberId,
};
use serde_json::Value;

use crate::codes;
use crate::error::FhirError;
use crate::read::{Reader, codings, concept_text, is_part2, reference_text};

pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";

/// What kind of medication a request or dispense is about, as far as the rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MedicationClass {
    /// An opioid (in the drug table, or named by ingredient/brand): counted, excluded or undetermined.
    Opioid,
    Benzodiazepine,
    Naloxone,
    /// Anything else: ignored by the refill rules.
    Other,
}

/// Resolves `medicationReference` to a Medication resource (contained ones are looked up first).
#[derive(Debug, Default, Clone)]
pub struct MedicationLookup<'a> {
    by_reference: HashMap<String, &'a Value>,
}

impl<'a> MedicationLookup<'a> {
    pub fn new() -> Self {
        MedicationLookup { by_reference: HashMap::new() }
    }

    /// Register a bundled Medication under `Medication/<id>` and its `fullUrl`.
    pub fn add(&mut self, full_url: Option<&str>, medication: &'a Value) {
        if let Some(id) = medication.get("id").and_then(Value::as_str) {
            self.by_reference.insert(format!("Medication/{id}"), medication);
        }
        if let Some(url) = full_url {
            self.by_reference.insert(url.to_string(), medication);
        }
    }

    fn get(&self, reference: &str) -> Option<&'a Value> {
        self.by_reference.get(reference).copied().or_else(|| {
            // An absolute URL ending in Medication/<id>.
            reference.rfind("Medication/").and_then(|at| self.by_reference.get(&reference[at..]).copied())
        })
    }
}

/// The product of a request or dispense: RxNorm code and text.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MedicationCode {
    pub rxcui: Option<String>,
    pub text: Option<String>,
}

/// A mapped MedicationRequest, whatever its status and class.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedMedicationRequest {
    /// `MedicationRequest/<id>`.
    pub id: String,
    /// The raw `subject.reference` (resolved to a patient by the bundle reader).
    pub subject: Option<String>,
    pub status: String,
    /// Counts as a current order (`active`; CDS Hooks draft orders too).
    pub active: bool,
    pub authored_on: Option<NaiveDate>,
    pub class: MedicationClass,
    pub order: MedicationOrder,
    /// More than one `dosageInstruction`: only the first was read.
    pub extra_dosage_instructions: usize,
    /// It came from a CDS Hooks request's `context.draftOrders`: the order being selected or signed.
    pub draft_order: bool,
}

/// Map one MedicationRequest, with no bundle around it (contained Medications are still resolved).
pub fn parse_medication_request(value: &Value) -> Result<MappedMedicationRequest, Vec<FhirError>> {
    map_medication_request(value, "MedicationRequest", &MedicationLookup::new(), false)
}

pub(crate) fn map_medication_request(
    value: &Value,
    fallback: &str,
    lookup: &MedicationLookup<'_>,
    draft_counts: bool,
) -> Result<MappedMedicationRequest, Vec<FhirError>> {
    let mut reader = Reader::new(value, fallback);
    match value.get("resourceType").and_then(Value::as_str) {
        Some("MedicationRequest") => {}
        other => {
            return Err(vec![FhirError::WrongResourceType {
                resource: reader.label.clone(),
                expected: "MedicationRequest".into(),
                found: other.unwrap_or("(none)").into(),
            }]);
        }
    }
    let status = match reader.string_at(value, "", "status") {
        Some(status) => status.to_string(),
        None => {
            reader.problem("status", "missing (required: active, stopped, completed ...)");
            String::new()
        }
    };
    const STATUSES: [&str; 8] =
        ["active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"];
    if !status.is_empty() && !STATUSES.contains(&status.as_str()) {
        reader.problem("status", format!("'{status}' is not a MedicationRequest status"));
    }
    let active = status == "active" || (draft_counts && status == "draft");
    let subject = reference_text(reader.object_at(value, "", "subject"));
    let authored_on = reader.date_at(value, "", "authoredOn");
    let code = medication_code(&mut reader, value, lookup);
    let class = classify(&code);

    let instructions = reader.array_at(value, "", "dosageInstruction");
    let (dose, doses_per_day) = match instructions.first() {
        Some(instruction) => (read_dose(&mut reader, instruction), read_doses_per_day(&mut reader, instruction)),
        None => (None, None),
    };
    let (days_supply, dispense_quantity) = read_dispense_request(&mut reader, value);
    let prescriber = reference_text(reader.object_at(value, "", "requester")).map(PrescriberId);
    let purpose = purpose_of(value, &code);
    let confidentiality = if is_part2(value) { Confidentiality::Part2 } else { Confidentiality::Normal };
    let problems = reader.problems;
    if !problems.is_empty() {
        return Err(problems);
    }
    let id = reader.label;
    Ok(MappedMedicationRequest {
        order: MedicationOrder {
            id: id.clone(),
            rxcui: code.rxcui,
            text: code.text,
            dose,
            doses_per_day,
            days_supply,
            dispense_quantity,
            prescriber,
            purpose,
            confidentiality,
        },
        id,
        subject,
        status,
        active,
        draft_order: draft_counts,
        authored_on,
        class,
        extra_dosage_instructions: instructions.len().saturating_sub(1),
    })
}

/// A MedicationStatement (what the patient reports taking, often from another source such as an
/// opioid treatment program) -> an other medication the rules read: an active benzodiazepine, or active
/// methadone or buprenorphine for opioid use disorder (by reason, or sublingual buprenorphine).
/// Opioid analgesics reported here are not orders of the clinic and are left to the PDMP review.
/// A MedicationStatement for a benzodiazepine or an opioid-use-disorder treatment, with its resource
/// label; `active` follows `status`, so a statement marked completed or stopped at the source clears
/// what an earlier import recorded.
pub(crate) fn map_medication_statement(
    value: &Value,
    fallback: &str,
    lookup: &MedicationLookup<'_>,
) -> Result<Option<(String, OtherMedication)>, Vec<FhirError>> {
    let mut reader = Reader::new(value, fallback);
    let status = reader.string_at(value, "", "status").map(str::to_string);
    let code = medication_code(&mut reader, value, lookup);
    let started_on = if value.get("effectiveDateTime").is_some() {
        reader.date_at(value, "", "effectiveDateTime")
    } else if let Some(period) = reader.object_at(value, "", "effectivePeriod") {
        reader.date_at(period, "effectivePeriod", "start")
    } else {
        None
    };
    if status.is_none() {
        reader.problem("status", "missing");
    }
    let label = reader.label.clone();
    let problems = reader.finish();
    if !problems.is_empty() {
        return Err(problems);
    }
    if matches!(status.as_deref(), Some("entered-in-error")) {
        return Ok(None);
    }
    let class = match classify(&code) {
        MedicationClass::Benzodiazepine => OtherMedicationClass::Benzodiazepine,
        MedicationClass::Opioid if purpose_of(value, &code) == OrderPurpose::OpioidUseDisorder => {
            OtherMedicationClass::OudTreatment
        }
        _ => return Ok(None),
    };
    let text = code.text.clone().or_else(|| code.rxcui.as_ref().map(|c| format!("RxNorm {c}"))).unwrap_or_default();
    Ok(Some((
        label,
        OtherMedication {
            class,
            text,
            started_on,
            active: status.as_deref() == Some("active"),
            confidentiality: if is_part2(value) { Confidentiality::Part2 } else { Confidentiality::Normal },
        },
    )))
}

/// `medicationCodeableConcept`, else `medicationReference` -> contained or bundled Medication.code.
pub(crate) fn medication_code(reader: &mut Reader, value: &Value, lookup: &MedicationLookup<'_>) -> MedicationCode {
    if let Some(concept) = reader.object_at(value, "", "medicationCodeableConcept") {
        return code_of(concept);
    }
    let Some(reference) = reader.object_at(value, "", "medicationReference") else {
        reader.problem("medication[x]", "missing: neither medicationCodeableConcept nor medicationReference");
        return MedicationCode::default();
    };
    let Some(target) = reference.get("reference").and_then(Value::as_str) else {
        // A reference with only a display still names the product in words.
        return MedicationCode {
            rxcui: None,
            text: reference.get("display").and_then(Value::as_str).map(str::to_string),
        };
    };
    let medication = if let Some(local) = target.strip_prefix('#') {
        value
            .get("contained")
            .and_then(Value::as_array)
            .and_then(|items| items.iter().find(|item| item.get("id").and_then(Value::as_str) == Some(local)))
    } else {
        lookup.get(target)
    };
    match medication {
        Some(medication) => code_of(medication.get("code").unwrap_or(&Value::Null)),
        None => {
            reader.problem(
                "medicationReference.reference",
                format!("'{target}' is neither a contained Medication nor a Medication in the bundle"),
            );
            MedicationCode::default()
        }
    }
}

fn code_of(concept: &Value) -> MedicationCode {
    let all = codings(Some(concept));
    let rxnorm = all.iter().find(|(system, code, _)| *system == RXNORM && !code.is_empty());
    MedicationCode {
        rxcui: rxnorm.map(|(_, code, _)| code.to_string()),
        text: concept_text(Some(concept)).or_else(|| rxnorm.map(|(_, _, display)| display.to_string())),
    }
}

/// Opioid if the drug table knows the code; else by words in the text.
pub fn classify(code: &MedicationCode) -> MedicationClass {
    let table = DrugTable::embedded();
    if code.rxcui.as_deref().is_some_and(|rxcui| table.by_rxcui(rxcui).is_some()) {
        return MedicationClass::Opioid;
    }
    let text = code.text.as_deref().unwrap_or("").to_lowercase();
    if codes::BENZODIAZEPINES.iter().any(|name| text.contains(name)) {
        return MedicationClass::Benzodiazepine;
    }
    if text.contains("naloxone") && !table.mentions_opioid(None, Some(&text)) {
        return MedicationClass::Naloxone;
    }
    if table.mentions_opioid(None, Some(&text)) {
        return MedicationClass::Opioid;
    }
    MedicationClass::Other
}

/// Opioid use disorder when a reason says so, or when the product is sublingual buprenorphine (labelled
/// for opioid use disorder only; pain products are the patch and the buccal film).
fn purpose_of(value: &Value, code: &MedicationCode) -> OrderPurpose {
    let reasons = value.get("reasonCode").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    if reasons.iter().any(codes::is_oud_concept) {
        return OrderPurpose::OpioidUseDisorder;
    }
    let categories = value.get("category").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    if categories.iter().any(codes::is_oud_concept) {
        return OrderPurpose::OpioidUseDisorder;
    }
    if let Ok(product) = DrugTable::embedded().identify_parts(code.rxcui.as_deref(), code.text.as_deref())
        && product.ingredient() == "buprenorphine"
        && product.dose_form.to_ascii_lowercase().starts_with("sublingual")
    {
        return OrderPurpose::OpioidUseDisorder;
    }
    OrderPurpose::Pain
}

/// Dose per administration from the chosen `doseAndRate` entry.
fn read_dose(reader: &mut Reader, instruction: &Value) -> Option<DoseQuantity> {
    let base = "dosageInstruction[0]";
    let entries = reader.array_at(instruction, base, "doseAndRate");
    let chosen = entries
        .iter()
        .position(|entry| codings(entry.get("type")).iter().any(|(_, code, _)| code.eq_ignore_ascii_case("ordered")))
        .unwrap_or(0);
    let entry = entries.get(chosen)?;
    let base = format!("{base}.doseAndRate[{chosen}]");
    let (quantity, path) = if let Some(quantity) = reader.object_at(entry, &base, "doseQuantity") {
        (quantity, format!("{base}.doseQuantity"))
    } else if let Some(range) = reader.object_at(entry, &base, "doseRange") {
        let range_base = format!("{base}.doseRange");
        match reader.object_at(range, &range_base, "high") {
            Some(high) => (high, format!("{range_base}.high")),
            None => {
                reader.problem(&range_base, "a dose range needs a high value (PRN doses count at their maximum)");
                return None;
            }
        }
    } else {
        return None;
    };
    let Some(value) = reader.number_at(quantity, &path, "value") else {
        reader.problem(&format!("{path}.value"), "missing");
        return None;
    };
    if !(value.is_finite() && value > 0.0) {
        reader.problem(&format!("{path}.value"), format!("{value} is not a positive dose"));
        return None;
    }
    let code = reader.string_at(quantity, &path, "code");
    let unit_text = reader.string_at(quantity, &path, "unit");
    let (unit, factor) = dose_unit(code.or(unit_text).unwrap_or(""));
    Some(DoseQuantity { value: value * factor, unit })
}

/// A dose unit and the factor its value is multiplied by (grams are converted to mg).
pub fn dose_unit(code: &str) -> (DoseUnit, f64) {
    let trimmed = code.trim();
    let lower = trimmed.to_lowercase();
    match lower.as_str() {
        "mg" | "milligram" | "milligrams" => return (DoseUnit::Milligram, 1.0),
        "ug" | "mcg" | "µg" | "microgram" | "micrograms" => return (DoseUnit::Microgram, 1.0),
        "g" | "gram" | "grams" => return (DoseUnit::Milligram, 1000.0),
        "ml" | "milliliter" | "millilitre" | "milliliters" | "millilitres" => return (DoseUnit::Milliliter, 1.0),
        _ => {}
    }
    let word = lower.trim_start_matches('{').trim_end_matches('}').trim_end_matches('s');
    const COUNTABLE: [&str; 24] = [
        "tbl",
        "tab",
        "tablet",
        "cap",
        "capsule",
        "patch",
        "patche",
        "film",
        "lozenge",
        "loz",
        "supp",
        "suppository",
        "spray",
        "actuat",
        "actuation",
        "puff",
        "each",
        "ea",
        "pill",
        "troche",
        "strip",
        "unit",
        "dose",
        "applicator",
    ];
    if (trimmed.starts_with('{') && trimmed.ends_with('}') && trimmed.len() > 2) || COUNTABLE.contains(&word) {
        return (DoseUnit::DoseFormUnit, 1.0);
    }
    (DoseUnit::Unusable(trimmed.to_string()), 1.0)
}

/// Administrations per day from `timing` (see the module documentation for the rules).
fn read_doses_per_day(reader: &mut Reader, instruction: &Value) -> Option<f64> {
    let base = "dosageInstruction[0].timing";
    let timing = reader.object_at(instruction, "dosageInstruction[0]", "timing")?;
    if let Some(repeat) = reader.object_at(timing, base, "repeat") {
        let repeat_base = format!("{base}.repeat");
        let frequency = reader.number_at(repeat, &repeat_base, "frequency");
        let frequency_max = reader.number_at(repeat, &repeat_base, "frequencyMax");
        let period = reader.number_at(repeat, &repeat_base, "period");
        let unit = reader.string_at(repeat, &repeat_base, "periodUnit");
        if let Some(count) = frequency_max.or(frequency)
            && !(count.is_finite() && count > 0.0)
        {
            reader.problem(&format!("{repeat_base}.frequency"), format!("{count} is not a positive count"));
            return None;
        }
        if let Some(period) = period {
            if !(period.is_finite() && period > 0.0) {
                reader.problem(&format!("{repeat_base}.period"), format!("{period} is not a positive period"));
                return None;
            }
            let Some(unit) = unit else {
                reader.problem(&format!("{repeat_base}.periodUnit"), "missing while period is given");
                return None;
            };
            let Some(days) = period_unit_days(unit) else {
                reader.problem(
                    &format!("{repeat_base}.periodUnit"),
                    format!("'{unit}' is not a period unit (s, min, h, d, wk, mo, a)"),
                );
                return None;
            };
            return Some(frequency_max.or(frequency).unwrap_or(1.0) / (period * days));
        }
        if frequency_max.or(frequency).is_some() {
            // A count without a period cannot be turned into a rate; fall through to timeOfDay / code.
        }
        let times = reader.array_at(repeat, &repeat_base, "timeOfDay");
        if !times.is_empty() {
            return Some(times.len() as f64);
        }
    }
    for (_, code, _) in codings(timing.get("code")) {
        if let Some(per_day) = timing_code_per_day(code) {
            return Some(per_day);
        }
    }
    None
}

fn period_unit_days(unit: &str) -> Option<f64> {
    Some(match unit {
        "s" | "second" | "seconds" => 1.0 / 86_400.0,
        "min" | "minute" | "minutes" => 1.0 / 1440.0,
        "h" | "hour" | "hours" => 1.0 / 24.0,
        "d" | "day" | "days" => 1.0,
        "wk" | "week" | "weeks" => 7.0,
        "mo" | "month" | "months" => 30.0,
        "a" | "year" | "years" => 365.0,
        _ => return None,
    })
}

/// HL7 v3 GTSAbbreviation timing codes.
fn timing_code_per_day(code: &str) -> Option<f64> {
    Some(match code.to_ascii_uppercase().as_str() {
        "QD" | "AM" | "PM" | "QAM" | "QPM" | "QHS" | "HS" | "DAILY" => 1.0,
        "BID" | "Q12H" => 2.0,
        "TID" | "Q8H" => 3.0,
        "QID" | "Q6H" => 4.0,
        "Q4H" => 6.0,
        "Q3H" => 8.0,
        "Q2H" => 12.0,
        "Q1H" | "QH" => 24.0,
        "QOD" => 0.5,
        "WK" | "QWK" => 1.0 / 7.0,
        _ => return None,
    })
}

/// `dispenseRequest.expectedSupplyDuration` in days and `dispenseRequest.quantity.value`.
fn read_dispense_request(reader: &mut Reader, value: &Value) -> (Option<u32>, Option<f64>) {
    let Some(request) = reader.object_at(value, "", "dispenseRequest") else { return (None, None) };
    let base = "dispenseRequest";
    let quantity = reader.object_at(request, base, "quantity").and_then(|q| q.get("value")).and_then(Value::as_f64);
    let Some(duration) = reader.object_at(request, base, "expectedSupplyDuration") else { return (None, quantity) };
    let path = "dispenseRequest.expectedSupplyDuration";
    let days = duration_days(reader, duration, path);
    (days, quantity)
}

/// A Duration in whole days (`d`, `wk`, `mo`); a problem when it is not a positive whole number of days.
pub(crate) fn duration_days(reader: &mut Reader, duration: &Value, path: &str) -> Option<u32> {
    let value = reader.number_at(duration, path, "value")?;
    let unit = duration
        .get("code")
        .and_then(Value::as_str)
        .or_else(|| duration.get("unit").and_then(Value::as_str))
        .unwrap_or("d");
    let Some(per) = period_unit_days(unit).filter(|days| *days >= 1.0) else {
        reader.problem(&format!("{path}.code"), format!("'{unit}' is not a day-based duration unit"));
        return None;
    };
    days_from(reader, value * per, &format!("{path}.value"))
}

pub(crate) fn days_from(reader: &mut Reader, days: f64, path: &str) -> Option<u32> {
    if !(days.is_finite() && days > 0.0 && days <= 3650.0) || (days - days.round()).abs() > 1e-6 {
        reader.problem(path, format!("{days} is not a whole positive number of days"));
        return None;
    }
    Some(days.round() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(dosage: Value) -> Value {
        json!({
            "resourceType": "MedicationRequest", "id": "r1", "status": "active", "intent": "order",
            "subject": {"reference": "Patient/p1"},
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "1049502"}]},
            "dosageInstruction": [dosage],
            "dispenseRequest": {"expectedSupplyDuration": {"value": 30, "code": "d"}, "quantity": {"value": 60}},
            "requester": {"reference": "Practitioner/dr1"}
        })
    }

    #[test]
    fn maps_a_plain_order() {
        let mapped = parse_medication_request(&request(json!({
            "timing": {"repeat": {"frequency": 1, "period": 12, "periodUnit": "h"}},
            "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet", "system": "http://unitsofmeasure.org", "code": "{tbl}"}}]
        })))
        .unwrap();
        assert_eq!(mapped.id, "MedicationRequest/r1");
        assert_eq!(mapped.order.id, "MedicationRequest/r1");
        assert!(mapped.active);
        assert_eq!(mapped.class, MedicationClass::Opioid);
        assert_eq!(mapped.order.doses_per_day, Some(2.0));
        assert_eq!(mapped.order.dose, Some(DoseQuantity { value: 1.0, unit: DoseUnit::DoseFormUnit }));
        assert_eq!(mapped.order.days_supply, Some(30));
        assert_eq!(mapped.order.dispense_quantity, Some(60.0));
        assert_eq!(mapped.order.prescriber, Some(PrescriberId("Practitioner/dr1".into())));
        assert_eq!(mapped.subject.as_deref(), Some("Patient/p1"));
    }

    #[test]
    fn prn_uses_frequency_max_shortest_period_and_range_high() {
        let mapped = parse_medication_request(&request(json!({
            "timing": {"repeat": {"frequency": 1, "frequencyMax": 2, "period": 4, "periodMax": 6, "periodUnit": "h"}},
            "asNeededBoolean": true,
            "doseAndRate": [{"doseRange": {"low": {"value": 1, "code": "{tbl}"}, "high": {"value": 2, "code": "{tbl}"}}}]
        })))
        .unwrap();
        assert_eq!(mapped.order.doses_per_day, Some(12.0));
        assert_eq!(mapped.order.dose.unwrap().value, 2.0);
    }

    #[test]
    fn ordered_dose_rate_wins_and_units_map() {
        let mapped = parse_medication_request(&request(json!({
            "timing": {"repeat": {"timeOfDay": ["08:00:00", "20:00:00"]}},
            "doseAndRate": [
                {"type": {"coding": [{"code": "calculated"}]}, "doseQuantity": {"value": 20, "code": "mg"}},
                {"type": {"coding": [{"code": "ordered"}]}, "doseQuantity": {"value": 1, "code": "TAB"}}
            ]
        })))
        .unwrap();
        assert_eq!(mapped.order.doses_per_day, Some(2.0));
        assert_eq!(mapped.order.dose.unwrap().unit, DoseUnit::DoseFormUnit);
        assert_eq!(dose_unit("mg").0, DoseUnit::Milligram);
        assert_eq!(dose_unit("ug").0, DoseUnit::Microgram);
        assert_eq!(dose_unit("mL").0, DoseUnit::Milliliter);
        assert_eq!(dose_unit("{patch}").0, DoseUnit::DoseFormUnit);
        assert_eq!(dose_unit("1").0, DoseUnit::Unusable("1".into()));
        assert_eq!(dose_unit("").0, DoseUnit::Unusable(String::new()));
    }

    #[test]
    fn timing_units_and_codes() {
        for (repeat, expected) in [
            (json!({"frequency": 1, "period": 1, "periodUnit": "wk"}), 1.0 / 7.0),
            (json!({"frequency": 3, "period": 1, "periodUnit": "d"}), 3.0),
            (json!({"frequency": 1, "period": 30, "periodUnit": "min"}), 48.0),
            (json!({"frequency": 1, "period": 1, "periodUnit": "mo"}), 1.0 / 30.0),
            (json!({"frequency": 1, "period": 72, "periodUnit": "hours"}), 1.0 / 3.0),
        ] {
            let mapped = parse_medication_request(&request(json!({"timing": {"repeat": repeat}}))).unwrap();
            let got = mapped.order.doses_per_day.unwrap();
            assert!((got - expected).abs() < 1e-9, "{repeat}: {got}");
        }
        let coded =
            parse_medication_request(&request(json!({"timing": {"code": {"coding": [{"code": "Q6H"}]}}}))).unwrap();
        assert_eq!(coded.order.doses_per_day, Some(4.0));
        let none = parse_medication_request(&request(json!({"text": "as directed"}))).unwrap();
        assert_eq!(none.order.doses_per_day, None);
    }

    #[test]
    fn malformed_fields_are_all_named() {
        let mut value = request(json!({
            "timing": {"repeat": {"frequency": "twice", "period": 1, "periodUnit": "fortnight"}},
            "doseAndRate": [{"doseQuantity": {"value": -1, "code": "mg"}}]
        }));
        value["authoredOn"] = json!("yesterday");
        let problems = parse_medication_request(&value).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(FhirError::field).collect();
        assert!(fields.contains(&"dosageInstruction[0].timing.repeat.frequency"), "{fields:?}");
        assert!(fields.contains(&"dosageInstruction[0].timing.repeat.periodUnit"), "{fields:?}");
        assert!(fields.contains(&"dosageInstruction[0].doseAndRate[0].doseQuantity.value"), "{fields:?}");
        assert!(fields.contains(&"authoredOn"), "{fields:?}");
        assert!(problems.iter().all(|p| p.resource() == "MedicationRequest/r1"));
    }

    #[test]
    fn medication_reference_to_contained_medication() {
        let value = json!({
            "resourceType": "MedicationRequest", "id": "r2", "status": "stopped", "subject": {"reference": "Patient/p"},
            "contained": [{"resourceType": "Medication", "id": "m", "code": {"coding": [{"system": RXNORM, "code": "197696", "display": "72 HR fentanyl 0.075 MG/HR Transdermal System"}]}}],
            "medicationReference": {"reference": "#m"}
        });
        let mapped = parse_medication_request(&value).unwrap();
        assert!(!mapped.active);
        assert_eq!(mapped.order.rxcui.as_deref(), Some("197696"));
        let missing = json!({"resourceType": "MedicationRequest", "id": "r3", "status": "active", "medicationReference": {"reference": "Medication/x"}});
        let problems = parse_medication_request(&missing).unwrap_err();
        assert_eq!(problems[0].field(), "medicationReference.reference");
    }

    #[test]
    fn classification_and_oud_purpose() {
        let class = |code: Option<&str>, text: &str| {
            classify(&MedicationCode { rxcui: code.map(str::to_string), text: Some(text.to_string()) })
        };
        assert_eq!(class(Some("104693"), "Temazepam 20 MG Oral Capsule"), MedicationClass::Benzodiazepine);
        assert_eq!(
            class(Some("1191212"), "Naloxone Hydrochloride 0.02 MG/ML Injectable Solution"),
            MedicationClass::Naloxone
        );
        assert_eq!(class(Some("1185223"), "Pepto-bismol Pill"), MedicationClass::Other);
        assert_eq!(class(Some("892495"), "Morphine Sulfate 10 MG [Kadian]"), MedicationClass::Opioid);
        assert_eq!(class(Some("1010603"), "Suboxone 2 MG / 0.5 MG Sublingual Film"), MedicationClass::Opioid);
        let mut suboxone = request(json!({"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}));
        suboxone["medicationCodeableConcept"] = json!({"coding": [{"system": RXNORM, "code": "1010603"}]});
        assert_eq!(parse_medication_request(&suboxone).unwrap().order.purpose, OrderPurpose::OpioidUseDisorder);
        let mut methadone_otp = request(json!({}));
        methadone_otp["reasonCode"] =
            json!([{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F11.20"}]}]);
        assert_eq!(parse_medication_request(&methadone_otp).unwrap().order.purpose, OrderPurpose::OpioidUseDisorder);
    }
}
