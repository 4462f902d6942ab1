//! Stored forms of domain values: the stable text names of enums and the JSON shapes of nested facts
//! (medication orders, UDS analytes, PDMP findings). Decisions use the stable JSON form that
//! `refill_rules::decision` defines.
//!
//! These names and shapes are a stored contract like the migrations: rows written by one release are
//! read by the next, so a name never changes once shipped. The rules crate stays serde-free; the
//! conversions live here.

use chrono::NaiveDate;
use refill_rules::{
    ClinicalFlagKind, Confidentiality, CoveredReason, DoseQuantity, DoseUnit, DrugClass, MedicationOrder,
    NaloxoneEventKind, OrderPurpose, OtherMedicationClass, Outcome, PdmpFinding, PhysicianChoice, PrescriberId,
    ReasonCode, RequestKind, RiskTier, Sex, SpecimenValidity, TaperState, UdsAnalyteResult, UdsKind,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::StoreError;

/// Build the `Corrupt` error for a stored value this release cannot read.
pub(crate) fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("unknown {what} {value:?}"))
}

macro_rules! text_enum {
    ($what:literal, $ty:ty, $to:ident, $from:ident, { $($variant:path => $name:literal),+ $(,)? }) => {
        pub fn $to(value: $ty) -> &'static str {
            match value { $($variant => $name),+ }
        }
        pub fn $from(text: &str) -> Result<$ty, StoreError> {
            match text { $($name => Ok($variant),)+ other => Err(corrupt($what, other)) }
        }
    };
}

text_enum!("sex", Sex, sex_name, parse_sex, {
    Sex::Female => "female", Sex::Male => "male", Sex::Other => "other", Sex::Unknown => "unknown",
});
text_enum!("risk tier", RiskTier, risk_tier_name, parse_risk_tier, {
    RiskTier::Low => "low", RiskTier::Moderate => "moderate", RiskTier::High => "high",
});
text_enum!("confidentiality", Confidentiality, confidentiality_name, parse_confidentiality, {
    Confidentiality::Normal => "normal", Confidentiality::Part2 => "part2",
});
text_enum!("order purpose", OrderPurpose, purpose_name, parse_purpose, {
    OrderPurpose::Pain => "pain", OrderPurpose::OpioidUseDisorder => "opioid_use_disorder",
});
text_enum!("uds kind", UdsKind, uds_kind_name, parse_uds_kind, {
    UdsKind::Scheduled => "scheduled", UdsKind::ForCause => "for_cause",
});
text_enum!("drug class", DrugClass, drug_class_name, parse_drug_class, {
    DrugClass::Opioid => "opioid", DrugClass::Benzodiazepine => "benzodiazepine",
    DrugClass::OtherControlled => "other_controlled", DrugClass::OudTreatment => "oud_treatment",
});

/// A stored `specimen_validity` column value.
pub fn parse_specimen_validity(text: &str) -> Result<SpecimenValidity, StoreError> {
    SpecimenValidity::parse(text).ok_or_else(|| corrupt("specimen validity", text))
}
text_enum!("naloxone event kind", NaloxoneEventKind, naloxone_kind_name, parse_naloxone_kind, {
    NaloxoneEventKind::Offered => "offered", NaloxoneEventKind::Declined => "declined",
    NaloxoneEventKind::Dispensed => "dispensed",
});
text_enum!("clinical flag", ClinicalFlagKind, flag_kind_name, parse_flag_kind, {
    ClinicalFlagKind::OverdoseHistory => "overdose_history",
    ClinicalFlagKind::SubstanceUseDisorderHistory => "substance_use_disorder_history",
    ClinicalFlagKind::SleepDisorderedBreathing => "sleep_disordered_breathing",
    ClinicalFlagKind::Cancer => "cancer",
    ClinicalFlagKind::SickleCell => "sickle_cell",
    ClinicalFlagKind::Palliative => "palliative",
    ClinicalFlagKind::EndOfLife => "end_of_life",
    ClinicalFlagKind::OverdoseOrSedationSignal => "overdose_or_sedation_signal",
});
text_enum!("other medication class", OtherMedicationClass, other_medication_class_name, parse_other_medication_class, {
    OtherMedicationClass::Benzodiazepine => "benzodiazepine", OtherMedicationClass::OudTreatment => "oud_treatment",
});
text_enum!("request kind", RequestKind, request_kind_name, parse_request_kind, {
    RequestKind::Routine => "routine", RequestKind::LostOrStolenReplacement => "lost_or_stolen_replacement",
    RequestKind::Early => "early", RequestKind::DoseChange => "dose_change",
});

/// Taper plan states as stored. `Cancelled` exists only in the store: a cancelled plan is no longer in
/// force, so it never reaches the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoredTaperState {
    Active,
    Paused,
    Completed,
    Cancelled,
}

text_enum!("taper state", StoredTaperState, taper_state_name, parse_taper_state, {
    StoredTaperState::Active => "active", StoredTaperState::Paused => "paused",
    StoredTaperState::Completed => "completed", StoredTaperState::Cancelled => "cancelled",
});

impl StoredTaperState {
    /// The rules' view of the state; `None` for a cancelled plan (not in force).
    pub fn in_force(self) -> Option<TaperState> {
        match self {
            StoredTaperState::Active => Some(TaperState::Active),
            StoredTaperState::Paused => Some(TaperState::Paused),
            StoredTaperState::Completed => Some(TaperState::Completed),
            StoredTaperState::Cancelled => None,
        }
    }
}

/// The dose unit as two columns: the unit name and, for an unusable unit, what the source said.
pub fn dose_unit_columns(unit: &DoseUnit) -> (&'static str, Option<String>) {
    match unit {
        DoseUnit::Milligram => ("mg", None),
        DoseUnit::Microgram => ("mcg", None),
        DoseUnit::Milliliter => ("ml", None),
        DoseUnit::DoseFormUnit => ("unit", None),
        DoseUnit::Unusable(text) => ("unusable", Some(text.clone())),
    }
}

pub fn parse_dose_unit(name: &str, text: Option<String>) -> Result<DoseUnit, StoreError> {
    match name {
        "mg" => Ok(DoseUnit::Milligram),
        "mcg" => Ok(DoseUnit::Microgram),
        "ml" => Ok(DoseUnit::Milliliter),
        "unit" => Ok(DoseUnit::DoseFormUnit),
        "unusable" => Ok(DoseUnit::Unusable(text.unwrap_or_default())),
        other => Err(corrupt("dose unit", other)),
    }
}

/// A medication order inside a JSON column (taper steps, refill requests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredOrder {
    pub id: String,
    pub rxcui: Option<String>,
    pub text: Option<String>,
    pub dose_value: Option<f64>,
    pub dose_unit: Option<String>,
    pub dose_unit_text: Option<String>,
    pub doses_per_day: Option<f64>,
    pub days_supply: Option<u32>,
    pub dispense_quantity: Option<f64>,
    pub prescriber: Option<String>,
    pub purpose: String,
    pub confidentiality: String,
}

impl StoredOrder {
    pub fn from_order(order: &MedicationOrder) -> StoredOrder {
        let (dose_unit, dose_unit_text) = match &order.dose {
            Some(dose) => {
                let (name, text) = dose_unit_columns(&dose.unit);
                (Some(name.to_string()), text)
            }
            None => (None, None),
        };
        StoredOrder {
            id: order.id.clone(),
            rxcui: order.rxcui.clone(),
            text: order.text.clone(),
            dose_value: order.dose.as_ref().map(|d| d.value),
            dose_unit,
            dose_unit_text,
            doses_per_day: order.doses_per_day,
            days_supply: order.days_supply,
            dispense_quantity: order.dispense_quantity,
            prescriber: order.prescriber.as_ref().map(|p| p.0.clone()),
            purpose: purpose_name(order.purpose).to_string(),
            confidentiality: confidentiality_name(order.confidentiality).to_string(),
        }
    }

    pub fn into_order(self) -> Result<MedicationOrder, StoreError> {
        let dose = match (self.dose_value, self.dose_unit) {
            (Some(value), Some(unit)) => {
                Some(DoseQuantity { value, unit: parse_dose_unit(&unit, self.dose_unit_text)? })
            }
            _ => None,
        };
        Ok(MedicationOrder {
            id: self.id,
            rxcui: self.rxcui,
            text: self.text,
            dose,
            doses_per_day: self.doses_per_day,
            days_supply: self.days_supply,
            dispense_quantity: self.dispense_quantity,
            prescriber: self.prescriber.map(PrescriberId),
            purpose: parse_purpose(&self.purpose)?,
            confidentiality: parse_confidentiality(&self.confidentiality)?,
        })
    }
}

pub fn orders_to_json(orders: &[MedicationOrder]) -> Value {
    serde_json::to_value(orders.iter().map(StoredOrder::from_order).collect::<Vec<_>>())
        .expect("stored orders always serialise")
}

pub fn orders_from_json(value: Value) -> Result<Vec<MedicationOrder>, StoreError> {
    let stored: Vec<StoredOrder> =
        serde_json::from_value(value).map_err(|e| StoreError::Corrupt(format!("medication orders json: {e}")))?;
    stored.into_iter().map(StoredOrder::into_order).collect()
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredAnalyte {
    assay: String,
    analyte: String,
    detected: bool,
}

pub fn analytes_to_json(analytes: &[UdsAnalyteResult]) -> Value {
    let stored: Vec<StoredAnalyte> = analytes
        .iter()
        .map(|a| StoredAnalyte { assay: a.assay.clone(), analyte: a.analyte.clone(), detected: a.detected })
        .collect();
    serde_json::to_value(stored).expect("analytes always serialise")
}

pub fn analytes_from_json(value: Value) -> Result<Vec<UdsAnalyteResult>, StoreError> {
    let stored: Vec<StoredAnalyte> =
        serde_json::from_value(value).map_err(|e| StoreError::Corrupt(format!("uds analytes json: {e}")))?;
    Ok(stored
        .into_iter()
        .map(|a| UdsAnalyteResult { assay: a.assay, analyte: a.analyte, detected: a.detected })
        .collect())
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredFinding {
    prescriber: String,
    drug_class: String,
    filled_on: NaiveDate,
    // Product, quantity and days supply: absent from findings stored before issue 12.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rxcui: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quantity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    days_supply: Option<u32>,
}

pub fn findings_to_json(findings: &[PdmpFinding]) -> Value {
    let stored: Vec<StoredFinding> = findings
        .iter()
        .map(|f| StoredFinding {
            prescriber: f.prescriber.0.clone(),
            drug_class: drug_class_name(f.drug_class).to_string(),
            filled_on: f.filled_on,
            product: f.product.clone(),
            rxcui: f.rxcui.clone(),
            quantity: f.quantity,
            days_supply: f.days_supply,
        })
        .collect();
    serde_json::to_value(stored).expect("pdmp findings always serialise")
}

pub fn findings_from_json(value: Value) -> Result<Vec<PdmpFinding>, StoreError> {
    let stored: Vec<StoredFinding> =
        serde_json::from_value(value).map_err(|e| StoreError::Corrupt(format!("pdmp findings json: {e}")))?;
    stored
        .into_iter()
        .map(|f| {
            Ok(PdmpFinding {
                prescriber: PrescriberId(f.prescriber),
                drug_class: parse_drug_class(&f.drug_class)?,
                filled_on: f.filled_on,
                product: f.product,
                rxcui: f.rxcui,
                quantity: f.quantity,
                days_supply: f.days_supply,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_round_trip_through_json() {
        let order = MedicationOrder {
            id: "MedicationRequest/1".into(),
            rxcui: Some("1049621".into()),
            text: Some("oxycodone 5 MG Oral Tablet".into()),
            dose: Some(DoseQuantity { value: 2.0, unit: DoseUnit::Unusable("puff".into()) }),
            doses_per_day: Some(4.0),
            days_supply: Some(30),
            dispense_quantity: Some(240.0),
            prescriber: Some(PrescriberId("1234567890".into())),
            purpose: OrderPurpose::OpioidUseDisorder,
            confidentiality: Confidentiality::Part2,
        };
        let back = orders_from_json(orders_to_json(std::slice::from_ref(&order))).unwrap();
        assert_eq!(back, vec![order]);
    }

    #[test]
    fn unknown_names_are_corrupt_not_defaults() {
        assert!(matches!(parse_risk_tier("extreme"), Err(StoreError::Corrupt(_))));
        assert_eq!(parse_flag_kind("sickle_cell").unwrap(), ClinicalFlagKind::SickleCell);
    }
}

/// A physician choice as stored (`choice`, and `bridge_days` for a bridge).
pub fn physician_choice_name(choice: PhysicianChoice) -> (&'static str, Option<i64>) {
    match choice {
        PhysicianChoice::Approve => ("approve", None),
        PhysicianChoice::Bridge { days } => ("bridge", Some(i64::from(days))),
        PhysicianChoice::Taper => ("taper", None),
        PhysicianChoice::Hold => ("hold", None),
        PhysicianChoice::Stop => ("stop", None),
    }
}

pub fn parse_physician_choice(text: &str, bridge_days: Option<i64>) -> Result<PhysicianChoice, StoreError> {
    Ok(match text {
        "approve" => PhysicianChoice::Approve,
        "bridge" => {
            let days = bridge_days.and_then(|d| u32::try_from(d).ok()).ok_or_else(|| corrupt("bridge days", "none"))?;
            PhysicianChoice::Bridge { days }
        }
        "taper" => PhysicianChoice::Taper,
        "hold" => PhysicianChoice::Hold,
        "stop" => PhysicianChoice::Stop,
        other => return Err(corrupt("physician choice", other)),
    })
}

#[derive(Serialize, Deserialize)]
struct CoveredWire {
    code: String,
    subject: String,
    outcome: String,
}

/// The reasons a physician decision covers, as stored: `[{"code", "subject", "outcome"}]`.
pub fn covered_to_json(covered: &[CoveredReason]) -> Value {
    let wire: Vec<CoveredWire> = covered
        .iter()
        .map(|c| CoveredWire {
            code: c.code.as_str().to_string(),
            subject: c.subject.clone(),
            outcome: c.outcome.as_str().to_string(),
        })
        .collect();
    serde_json::to_value(wire).unwrap_or(Value::Null)
}

pub fn covered_from_json(value: Value) -> Result<Vec<CoveredReason>, StoreError> {
    let wire: Vec<CoveredWire> =
        serde_json::from_value(value).map_err(|e| StoreError::Corrupt(format!("covered reasons json: {e}")))?;
    wire.into_iter()
        .map(|c| {
            Ok(CoveredReason {
                code: ReasonCode::parse(&c.code).ok_or_else(|| corrupt("reason code", &c.code))?,
                subject: c.subject,
                outcome: Outcome::parse(&c.outcome).ok_or_else(|| corrupt("outcome", &c.outcome))?,
            })
        })
        .collect()
}
