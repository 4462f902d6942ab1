//! Patient -> demographics: id, name, birth date, sex, identifiers (MRN), email, phone, language.

use chrono::NaiveDate;
use refill_rules::Sex;
use serde_json::Value;

use crate::error::FhirError;
use crate::read::{Reader, codings};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier {
    pub system: Option<String>,
    pub value: String,
    /// `identifier.type` code (`MR` for a medical record number).
    pub type_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Demographics {
    /// Given names joined by a space, from the `official` name if there is one, else the first.
    pub given: Option<String>,
    pub family: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub sex: Sex,
    /// The identifier typed `MR`, else the first identifier.
    pub mrn: Option<String>,
    pub identifiers: Vec<Identifier>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// `communication[0].language` code (BCP 47), for the message language.
    pub language: Option<String>,
}

/// Map a Patient resource; returns its id and demographics.
pub fn parse_patient(value: &Value, fallback: &str) -> Result<(String, Demographics), Vec<FhirError>> {
    let mut reader = Reader::new(value, fallback);
    let id = match reader.string_at(value, "", "id").filter(|id| !id.is_empty()) {
        Some(id) => id.to_string(),
        None => {
            reader.problem("id", "missing: a Patient needs an id to be referenced");
            String::new()
        }
    };
    let names = reader.array_at(value, "", "name");
    let name =
        names.iter().find(|name| name.get("use").and_then(Value::as_str) == Some("official")).or_else(|| names.first());
    let given = name
        .and_then(|name| name.get("given"))
        .and_then(Value::as_array)
        .map(|parts| parts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "));
    let family = name.and_then(|name| name.get("family")).and_then(Value::as_str).map(str::to_string);
    let birth_date = reader.date_at(value, "", "birthDate");
    let sex = match reader.string_at(value, "", "gender") {
        None => Sex::Unknown,
        Some("male") => Sex::Male,
        Some("female") => Sex::Female,
        Some("other") => Sex::Other,
        Some("unknown") => Sex::Unknown,
        Some(other) => {
            reader.problem("gender", format!("'{other}' is not male, female, other or unknown"));
            Sex::Unknown
        }
    };
    let mut identifiers = Vec::new();
    for (index, identifier) in reader.array_at(value, "", "identifier").iter().enumerate() {
        let Some(text) = identifier.get("value").and_then(Value::as_str) else {
            reader.problem(&format!("identifier[{index}].value"), "missing");
            continue;
        };
        identifiers.push(Identifier {
            system: identifier.get("system").and_then(Value::as_str).map(str::to_string),
            value: text.to_string(),
            type_code: codings(identifier.get("type")).first().map(|(_, code, _)| code.to_string()),
        });
    }
    let mrn = identifiers
        .iter()
        .find(|identifier| identifier.type_code.as_deref() == Some("MR"))
        .or_else(|| identifiers.first())
        .map(|identifier| identifier.value.clone());
    let telecom = reader.array_at(value, "", "telecom");
    let contact = |system: &str| {
        telecom
            .iter()
            .find(|entry| entry.get("system").and_then(Value::as_str) == Some(system))
            .and_then(|entry| entry.get("value"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let (email, phone) = (contact("email"), contact("phone"));
    let language = reader
        .array_at(value, "", "communication")
        .first()
        .and_then(|communication| codings(communication.get("language")).first().map(|(_, code, _)| code.to_string()));
    let problems = reader.finish();
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok((id, Demographics { given, family, birth_date, sex, mrn, identifiers, email, phone, language }))
}
