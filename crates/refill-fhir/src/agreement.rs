//! Consent or DocumentReference -> `AgreementFacts` (cds-hooks.md §4.6): the signed opioid treatment
//! agreement, its date, the prescriber of record, and whether it was voided.

use refill_rules::{AgreementFacts, PrescriberId};
use serde_json::Value;

use crate::codes::is_opioid_agreement;
use crate::error::FhirError;
use crate::read::{Reader, reference_text};

/// `None` when the resource is not an opioid agreement or is superseded / entered in error.
pub(crate) fn map_consent(value: &Value, fallback: &str) -> Result<Option<AgreementFacts>, Vec<FhirError>> {
    let mut concepts: Vec<&Value> =
        value.get("category").and_then(Value::as_array).map(|c| c.iter().collect()).unwrap_or_default();
    if let Some(scope) = value.get("scope") {
        concepts.push(scope);
    }
    if !is_opioid_agreement(&concepts) {
        return Ok(None);
    }
    let mut reader = Reader::new(value, fallback);
    let status = reader.string_at(value, "", "status").unwrap_or("").to_string();
    if !matches!(status.as_str(), "active" | "inactive" | "rejected") {
        if status.is_empty() {
            reader.problem("status", "missing");
            return Err(reader.finish());
        }
        return Ok(None);
    }
    let provision_start = value.get("provision").and_then(|p| p.get("period")).and_then(|p| p.get("start"));
    let signed_on = if value.get("dateTime").is_some() {
        reader.date_at(value, "", "dateTime")
    } else if provision_start.is_some() {
        let period = value.get("provision").and_then(|p| p.get("period")).expect("checked");
        reader.date_at(period, "provision.period", "start")
    } else {
        reader.problem("dateTime", "missing (and no provision.period.start): the agreement needs its signature date");
        None
    };
    let practitioner = |reference: &Option<String>| reference.as_deref().is_some_and(|r| r.contains("Practitioner"));
    let mut prescriber = reader
        .array_at(value, "", "performer")
        .iter()
        .map(|performer| reference_text(Some(performer)))
        .find(practitioner)
        .flatten();
    if prescriber.is_none() {
        let actors = value.get("provision").and_then(|p| p.get("actor")).and_then(Value::as_array);
        prescriber = actors
            .into_iter()
            .flatten()
            .map(|actor| reference_text(actor.get("reference")))
            .find(practitioner)
            .flatten();
    }
    if prescriber.is_none() {
        reader.problem("performer", "no Practitioner performer or provision.actor: the prescriber of record is needed");
    }
    let voided_on = if status == "active" {
        None
    } else {
        let end = value.get("provision").and_then(|p| p.get("period")).filter(|p| p.get("end").is_some());
        match end {
            Some(period) => reader.date_at(period, "provision.period", "end"),
            None => signed_on,
        }
    };
    let text_version = value
        .get("sourceAttachment")
        .and_then(|a| a.get("title"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| reference_text(value.get("sourceReference")))
        .unwrap_or_else(|| reader.label.clone());
    let problems = reader.finish();
    match (problems.is_empty(), signed_on, prescriber) {
        (true, Some(signed_on), Some(prescriber)) => Ok(Some(AgreementFacts {
            signed_on,
            prescriber_of_record: PrescriberId(prescriber),
            text_version,
            elements: Vec::new(),
            voided_on,
        })),
        _ => Err(problems),
    }
}

pub(crate) fn map_document_reference(value: &Value, fallback: &str) -> Result<Option<AgreementFacts>, Vec<FhirError>> {
    let mut concepts: Vec<&Value> =
        value.get("category").and_then(Value::as_array).map(|c| c.iter().collect()).unwrap_or_default();
    if let Some(kind) = value.get("type") {
        concepts.push(kind);
    }
    if !is_opioid_agreement(&concepts) {
        return Ok(None);
    }
    let mut reader = Reader::new(value, fallback);
    match reader.string_at(value, "", "status") {
        Some("current") => {}
        Some(_) => return Ok(None),
        None => {
            reader.problem("status", "missing");
            return Err(reader.finish());
        }
    }
    let attachment = reader.array_at(value, "", "content").first().and_then(|content| content.get("attachment"));
    let signed_on = if let Some(attachment) = attachment.filter(|a| a.get("creation").is_some()) {
        reader.date_at(attachment, "content[0].attachment", "creation")
    } else if value.get("date").is_some() {
        reader.date_at(value, "", "date")
    } else {
        reader.problem("date", "missing (and no content[0].attachment.creation): the agreement needs its date");
        None
    };
    let prescriber = reader
        .array_at(value, "", "author")
        .iter()
        .map(|author| reference_text(Some(author)))
        .find(|reference| reference.as_deref().is_some_and(|r| r.contains("Practitioner")))
        .flatten();
    if prescriber.is_none() {
        reader.problem("author", "no Practitioner author: the prescriber of record is needed");
    }
    let text_version = attachment
        .and_then(|a| a.get("title").or_else(|| a.get("url")))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| reader.label.clone());
    let problems = reader.finish();
    match (problems.is_empty(), signed_on, prescriber) {
        (true, Some(signed_on), Some(prescriber)) => Ok(Some(AgreementFacts {
            signed_on,
            prescriber_of_record: PrescriberId(prescriber),
            text_version,
            elements: Vec::new(),
            voided_on: None,
        })),
        _ => Err(problems),
    }
}
