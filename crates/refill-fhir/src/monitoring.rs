//! Observation and Procedure -> monitoring facts: urine drug screen lines (cds-hooks.md §4.4), PDMP
//! reviews (§4.5, Observation or Procedure) and physician benefit-risk assessments (§4.5).

use chrono::NaiveDate;
use refill_rules::{Confidentiality, PdmpReview, PhysicianReview, PrescriberId, ReviewKind};
use serde_json::Value;

use crate::codes::{self, PDMP_REVIEW_CODES, UdsLine};
use crate::error::FhirError;
use crate::read::{Reader, codings, is_part2, reference_text};

/// SNOMED CT codes of the value set `opioid-treatment-assessment-procedure` (opioid-cds-r4).
const BENEFIT_RISK_CODES: [&str; 7] =
    ["454281000124100", "866024000", "460831000124102", "454111000124101", "408941008", "426928008", "459741000124104"];

/// One urine drug screen line from one Observation; the bundle reader groups lines of one collection
/// date into a `UdsResult`.
#[derive(Debug, Clone, PartialEq)]
pub struct UdsLineResult {
    pub observation: String,
    pub line: UdsLine,
    pub detected: bool,
    pub collected_on: NaiveDate,
    pub confidentiality: Confidentiality,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Monitoring {
    Uds(UdsLineResult),
    Pdmp(PdmpReview),
    Review(PhysicianReview),
    /// Not a monitoring fact, or not final (preliminary, cancelled, entered in error).
    Ignored,
}

fn has_code(value: &Value, wanted: &[&str]) -> bool {
    codings(value.get("code")).iter().any(|(_, code, _)| wanted.contains(code))
}

pub(crate) fn map_observation(value: &Value, fallback: &str) -> Result<Monitoring, Vec<FhirError>> {
    let mut reader = Reader::new(value, fallback);
    let pdmp = has_code(value, &PDMP_REVIEW_CODES);
    let uds = codes::uds_line(value.get("code"));
    if !pdmp && uds.is_none() {
        return Ok(Monitoring::Ignored);
    }
    let status = reader.string_at(value, "", "status").unwrap_or("");
    if !matches!(status, "final" | "amended" | "corrected") {
        if status.is_empty() {
            reader.problem("status", "missing");
            return Err(reader.finish());
        }
        return Ok(Monitoring::Ignored);
    }
    let date =
        effective_date(&mut reader, value, &["effectiveDateTime", "effectiveInstant", "issued"], "effectivePeriod");
    let Some(date) = date else {
        reader.problem("effective[x]", "missing: a result needs the date it was collected or reviewed");
        return Err(reader.finish());
    };
    let result = if pdmp {
        Monitoring::Pdmp(PdmpReview { reviewed_on: date, findings: Vec::new() })
    } else {
        let Some(detected) = codes::detected(value) else {
            reader.problem(
                "value[x]",
                "no positive/negative result (valueString 'pos...'/'neg...', valueCodeableConcept or interpretation)",
            );
            return Err(reader.finish());
        };
        Monitoring::Uds(UdsLineResult {
            observation: reader.label.clone(),
            line: uds.expect("checked above"),
            detected,
            collected_on: date,
            confidentiality: if is_part2(value) { Confidentiality::Part2 } else { Confidentiality::Normal },
        })
    };
    let problems = reader.finish();
    if problems.is_empty() { Ok(result) } else { Err(problems) }
}

pub(crate) fn map_procedure(value: &Value, fallback: &str) -> Result<Monitoring, Vec<FhirError>> {
    let mut reader = Reader::new(value, fallback);
    let pdmp = has_code(value, &PDMP_REVIEW_CODES);
    let review = has_code(value, &BENEFIT_RISK_CODES);
    if !pdmp && !review {
        return Ok(Monitoring::Ignored);
    }
    match reader.string_at(value, "", "status") {
        Some("completed") => {}
        Some(_) => return Ok(Monitoring::Ignored),
        None => {
            reader.problem("status", "missing");
            return Err(reader.finish());
        }
    }
    let Some(date) = effective_date(&mut reader, value, &["performedDateTime"], "performedPeriod") else {
        reader.problem("performed[x]", "missing: a completed review needs its date");
        return Err(reader.finish());
    };
    let result = if pdmp {
        Monitoring::Pdmp(PdmpReview { reviewed_on: date, findings: Vec::new() })
    } else {
        let performer = reader.array_at(value, "", "performer").first().and_then(|p| reference_text(p.get("actor")));
        match performer {
            Some(physician) => Monitoring::Review(PhysicianReview {
                reviewed_on: date,
                physician: PrescriberId(physician),
                kind: ReviewKind::BenefitRisk,
            }),
            None => {
                reader.problem("performer[0].actor", "missing: a benefit-risk review names the physician");
                return Err(reader.finish());
            }
        }
    };
    let problems = reader.finish();
    if problems.is_empty() { Ok(result) } else { Err(problems) }
}

/// The first date among `keys`, else `period.start` (a period's start is when the act began; review
/// periods in practice start and end the same day).
fn effective_date(reader: &mut Reader, value: &Value, keys: &[&str], period: &str) -> Option<NaiveDate> {
    for key in keys {
        if value.get(*key).is_some() {
            return reader.date_at(value, "", key);
        }
    }
    let period_value = reader.object_at(value, "", period)?;
    reader.date_at(period_value, period, "start").or_else(|| reader.date_at(period_value, period, "end"))
}
