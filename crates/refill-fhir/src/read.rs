//! Small readers over `serde_json::Value` that record a named problem instead of stopping: every
//! mapping function collects all problems of a resource, not only the first.

use chrono::NaiveDate;
use serde_json::Value;

use crate::error::FhirError;

/// One resource being read: its label for messages and the problems found so far.
pub(crate) struct Reader {
    pub label: String,
    pub problems: Vec<FhirError>,
}

impl Reader {
    /// `fallback` labels a resource without an id (e.g. `Bundle.entry[3]`).
    pub fn new(value: &Value, fallback: &str) -> Reader {
        let resource_type = value.get("resourceType").and_then(Value::as_str).unwrap_or("Resource");
        let label = match value.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => format!("{resource_type}/{id}"),
            _ => format!("{fallback} ({resource_type} without id)"),
        };
        Reader { label, problems: Vec::new() }
    }

    pub fn problem(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(FhirError::invalid(self.label.clone(), field, message));
    }

    /// A string at `path` of `value`; a present non-string is a problem.
    pub fn string_at<'v>(&mut self, value: &'v Value, base: &str, key: &str) -> Option<&'v str> {
        match value.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.as_str()),
            Some(other) => {
                self.problem(&join(base, key), format!("expected a string, found {}", kind(other)));
                None
            }
        }
    }

    /// A number at `key`; a present non-number is a problem.
    pub fn number_at(&mut self, value: &Value, base: &str, key: &str) -> Option<f64> {
        match value.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Number(number)) => number.as_f64(),
            Some(other) => {
                self.problem(&join(base, key), format!("expected a number, found {}", kind(other)));
                None
            }
        }
    }

    /// An array at `key` (absent = empty); a present non-array is a problem.
    pub fn array_at<'v>(&mut self, value: &'v Value, base: &str, key: &str) -> &'v [Value] {
        match value.get(key) {
            None | Some(Value::Null) => &[],
            Some(Value::Array(items)) => items.as_slice(),
            Some(other) => {
                self.problem(&join(base, key), format!("expected an array, found {}", kind(other)));
                &[]
            }
        }
    }

    /// An object at `key`; a present non-object is a problem.
    pub fn object_at<'v>(&mut self, value: &'v Value, base: &str, key: &str) -> Option<&'v Value> {
        match value.get(key) {
            None | Some(Value::Null) => None,
            Some(object @ Value::Object(_)) => Some(object),
            Some(other) => {
                self.problem(&join(base, key), format!("expected an object, found {}", kind(other)));
                None
            }
        }
    }

    /// A FHIR date or dateTime at `key`, reduced to its calendar date as written (the shell converts
    /// instants to clinic-local dates where that matters).
    pub fn date_at(&mut self, value: &Value, base: &str, key: &str) -> Option<NaiveDate> {
        let text = self.string_at(value, base, key)?;
        match parse_fhir_date(text) {
            Some(date) => Some(date),
            None => {
                self.problem(&join(base, key), format!("'{text}' is not a FHIR date (YYYY-MM-DD...)"));
                None
            }
        }
    }

    pub fn finish(self) -> Vec<FhirError> {
        self.problems
    }
}

/// `YYYY-MM-DD` or a dateTime starting with it. Partial dates (`2020`, `2020-05`) are not precise
/// enough for day counting and are refused.
pub(crate) fn parse_fhir_date(text: &str) -> Option<NaiveDate> {
    let head = text.get(..10)?;
    if text.len() > 10 && !text[10..].starts_with('T') {
        return None;
    }
    NaiveDate::parse_from_str(head, "%Y-%m-%d").ok()
}

pub(crate) fn join(base: &str, key: &str) -> String {
    if base.is_empty() { key.to_string() } else { format!("{base}.{key}") }
}

pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The codings of a CodeableConcept as (system, code, display), skipping malformed entries.
pub(crate) fn codings(concept: Option<&Value>) -> Vec<(&str, &str, &str)> {
    let Some(concept) = concept else { return Vec::new() };
    concept
        .get("coding")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|coding| {
                    (
                        coding.get("system").and_then(Value::as_str).unwrap_or(""),
                        coding.get("code").and_then(Value::as_str).unwrap_or(""),
                        coding.get("display").and_then(Value::as_str).unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `CodeableConcept.text`, else the first coding display.
pub(crate) fn concept_text(concept: Option<&Value>) -> Option<String> {
    let concept = concept?;
    if let Some(text) = concept.get("text").and_then(Value::as_str).filter(|text| !text.trim().is_empty()) {
        return Some(text.to_string());
    }
    codings(Some(concept)).into_iter().map(|(_, _, display)| display).find(|d| !d.is_empty()).map(str::to_string)
}

/// All text of a concept (text and displays), lower case, for keyword matching.
pub(crate) fn concept_words(concept: Option<&Value>) -> String {
    let Some(concept) = concept else { return String::new() };
    let mut words = concept.get("text").and_then(Value::as_str).unwrap_or("").to_lowercase();
    for (_, _, display) in codings(Some(concept)) {
        words.push(' ');
        words.push_str(&display.to_lowercase());
    }
    words
}

/// A reference string (`reference`), else an identifier value, else a display.
pub(crate) fn reference_text(reference: Option<&Value>) -> Option<String> {
    let reference = reference?;
    if let Some(text) = reference.get("reference").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        return Some(text.to_string());
    }
    if let Some(value) =
        reference.get("identifier").and_then(|id| id.get("value")).and_then(Value::as_str).filter(|t| !t.is_empty())
    {
        return Some(value.to_string());
    }
    reference.get("display").and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_string)
}

/// 42 CFR Part 2: `meta.security` carries the HL7 v3 ActCode `42CFRPart2`. Only that explicit label
/// counts; a generic restricted confidentiality code does not say the record is a Part 2 record.
pub(crate) fn is_part2(resource: &Value) -> bool {
    resource.get("meta").and_then(|meta| meta.get("security")).and_then(Value::as_array).is_some_and(|labels| {
        labels.iter().any(|label| label.get("code").and_then(Value::as_str).is_some_and(|c| c == "42CFRPart2"))
    })
}
