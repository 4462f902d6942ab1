//! Condition -> clinical flags (cds-hooks.md §4.7): cancer, sickle cell, palliative or end-of-life
//! care, overdose and substance-use-disorder history, sleep-disordered breathing.
//!
//! Exclusions (cancer, sickle cell, palliative, end of life) need an active condition; history flags
//! (overdose, SUD) count whatever the clinical status, because a resolved overdose is still history.
//! A resolved or inactive condition still maps, so that an importer can retire the flags an earlier
//! import wrote for it. Refuted and entered-in-error conditions never count.

use chrono::NaiveDate;
use refill_rules::{ClinicalFlag, ClinicalFlagKind, Confidentiality};
use serde_json::Value;

use crate::codes::condition_flags;
use crate::error::FhirError;
use crate::read::{Reader, codings, is_part2};

#[derive(Debug, Clone, PartialEq)]
pub struct MappedCondition {
    pub id: String,
    /// Every flag kind the condition's code maps to, whatever its clinical status.
    pub kinds: Vec<ClinicalFlagKind>,
    /// clinicalStatus is active, recurrence or relapse, or absent (FHIR leaves it optional).
    pub active: bool,
    /// onset[x], else recordedDate; `None` when the source gives neither.
    pub recorded_on: Option<NaiveDate>,
    pub confidentiality: Confidentiality,
}

impl MappedCondition {
    /// The flags in force, dated `recorded_on`, or `as_of` (the import date) when the source has no
    /// date: every kind of an active condition, only the history kinds of a resolved one.
    pub fn flags(&self, as_of: NaiveDate) -> Vec<ClinicalFlag> {
        self.flags_where(as_of, |kind| self.active || kind.is_history())
    }

    /// The flags a resolved or inactive condition no longer supports (none for an active one), dated
    /// as `flags` dates them.
    pub fn resolved_flags(&self, as_of: NaiveDate) -> Vec<ClinicalFlag> {
        self.flags_where(as_of, |kind| !self.active && !kind.is_history())
    }

    fn flags_where(&self, as_of: NaiveDate, keep: impl Fn(ClinicalFlagKind) -> bool) -> Vec<ClinicalFlag> {
        self.kinds
            .iter()
            .filter(|kind| keep(**kind))
            .map(|kind| ClinicalFlag {
                kind: *kind,
                recorded_on: self.recorded_on.unwrap_or(as_of),
                confidentiality: self.confidentiality,
            })
            .collect()
    }
}

pub(crate) fn map_condition(value: &Value, fallback: &str) -> Result<Option<MappedCondition>, Vec<FhirError>> {
    let kinds = condition_flags(value.get("code"));
    if kinds.is_empty() {
        return Ok(None);
    }
    let mut reader = Reader::new(value, fallback);
    let verification = codings(value.get("verificationStatus")).first().map(|(_, code, _)| code.to_string());
    if matches!(verification.as_deref(), Some("refuted" | "entered-in-error")) {
        return Ok(None);
    }
    let clinical = codings(value.get("clinicalStatus")).first().map(|(_, code, _)| code.to_string());
    let active = matches!(clinical.as_deref(), None | Some("active" | "recurrence" | "relapse"));
    let recorded_on = if value.get("onsetDateTime").is_some() {
        reader.date_at(value, "", "onsetDateTime")
    } else if value.get("onsetPeriod").and_then(|p| p.get("start")).is_some() {
        let period = value.get("onsetPeriod").expect("checked");
        reader.date_at(period, "onsetPeriod", "start")
    } else if value.get("recordedDate").is_some() {
        reader.date_at(value, "", "recordedDate")
    } else {
        None
    };
    let problems = reader.problems;
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Some(MappedCondition {
        id: reader.label,
        kinds,
        active,
        recorded_on,
        confidentiality: if is_part2(value) { Confidentiality::Part2 } else { Confidentiality::Normal },
    }))
}
