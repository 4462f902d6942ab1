//! MedicationDispense -> `Fill` (opioids) or a naloxone event: completed dispenses only; the fill date
//! is `whenHandedOver`, else `whenPrepared`.

use refill_rules::{Fill, NaloxoneEvent, NaloxoneEventKind};
use serde_json::Value;

use crate::error::FhirError;
use crate::medication::{MedicationClass, MedicationLookup, classify, days_from, medication_code};
use crate::read::{Reader, reference_text};

/// What a dispense means to the rules.
#[derive(Debug, Clone, PartialEq)]
pub enum MappedDispense {
    Fill(Fill),
    Naloxone(NaloxoneEvent),
    /// Not completed, or not a medication the rules read.
    Ignored,
}

pub(crate) fn map_dispense(
    value: &Value,
    fallback: &str,
    lookup: &MedicationLookup<'_>,
) -> Result<MappedDispense, Vec<FhirError>> {
    let mut reader = Reader::new(value, fallback);
    let status = reader.string_at(value, "", "status").map(str::to_string);
    let Some(status) = status else {
        reader.problem("status", "missing");
        return Err(reader.finish());
    };
    let code = medication_code(&mut reader, value, lookup);
    if status != "completed" {
        let problems = reader.finish();
        return if problems.is_empty() { Ok(MappedDispense::Ignored) } else { Err(problems) };
    }
    let class = classify(&code);
    let filled_on = match reader.date_at(value, "", "whenHandedOver") {
        Some(date) => Some(date),
        None => reader.date_at(value, "", "whenPrepared"),
    };
    if filled_on.is_none() && value.get("whenHandedOver").is_none() && value.get("whenPrepared").is_none() {
        reader.problem("whenHandedOver", "missing (and no whenPrepared): a completed dispense needs its date");
    }
    let result = match class {
        MedicationClass::Opioid => {
            let days_supply = match reader.object_at(value, "", "daysSupply") {
                Some(quantity) => match reader.number_at(quantity, "daysSupply", "value") {
                    Some(days) => days_from(&mut reader, days, "daysSupply.value"),
                    None => {
                        reader.problem("daysSupply.value", "missing");
                        None
                    }
                },
                None => {
                    reader.problem("daysSupply", "missing: an opioid fill needs its days of supply");
                    None
                }
            };
            let order_id =
                reader.array_at(value, "", "authorizingPrescription").first().and_then(|r| reference_text(Some(r)));
            let quantity = reader.object_at(value, "", "quantity").and_then(|q| q.get("value")).and_then(Value::as_f64);
            match (filled_on, days_supply) {
                (Some(filled_on), Some(days_supply)) => {
                    MappedDispense::Fill(Fill { filled_on, days_supply, order_id, quantity })
                }
                _ => MappedDispense::Ignored,
            }
        }
        MedicationClass::Naloxone => match filled_on {
            Some(on) => MappedDispense::Naloxone(NaloxoneEvent { on, kind: NaloxoneEventKind::Dispensed }),
            None => MappedDispense::Ignored,
        },
        MedicationClass::Benzodiazepine | MedicationClass::Other => MappedDispense::Ignored,
    };
    let problems = reader.finish();
    if problems.is_empty() { Ok(result) } else { Err(problems) }
}
