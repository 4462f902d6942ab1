//! Bounds on what people type, checked in the handlers where it enters, before anything is parsed or
//! stored: a length per field, a count per list, and no control characters (line breaks only where a
//! field is multi-line). A form within the request size limit can otherwise still turn into rows
//! many times its size (a hundred thousand commas are fifty thousand analytes). Each refusal names the
//! field.

use crate::WebError;
use crate::pages::exceptions::DecideForm;
use crate::pages::queue::ActionForm;

/// A free-text note or rationale.
pub const MAX_NOTE_CHARS: usize = 4_000;
/// A short value: an analyte name, a text version, a choice.
pub const MAX_SHORT_CHARS: usize = 100;
/// Analytes in one drug-test entry (a wide panel has about 15).
pub const MAX_ANALYTES: usize = 40;
/// PDMP findings in one entry.
pub const MAX_FINDINGS: usize = 50;

/// `value` has at most `max_chars` characters and no control characters (but line breaks and tabs
/// when `multiline`).
pub fn check_text(field: &str, value: &str, max_chars: usize, multiline: bool) -> Result<(), WebError> {
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(WebError::BadRequest(format!("{field}: {chars} characters, at most {max_chars} allowed")));
    }
    let allowed = |c: char| multiline && matches!(c, '\n' | '\r' | '\t');
    if value.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(WebError::BadRequest(format!("{field}: contains a control character")));
    }
    Ok(())
}

/// A list of at most `max_items` entries split by `separator`, each a short value.
fn check_list(field: &str, value: &str, separator: char, max_items: usize) -> Result<(), WebError> {
    let items: Vec<&str> = value.split(separator).map(str::trim).filter(|item| !item.is_empty()).collect();
    if items.len() > max_items {
        return Err(WebError::BadRequest(format!("{field}: {} entries, at most {max_items} allowed", items.len())));
    }
    items.iter().try_for_each(|item| check_text(field, item, MAX_SHORT_CHARS, false))
}

/// A queue action (screen or API) within bounds.
pub fn check_action(form: &ActionForm) -> Result<(), WebError> {
    check_text("action", &form.action, MAX_SHORT_CHARS, false)?;
    if let Some(note) = &form.note {
        check_text("note", note, MAX_NOTE_CHARS, true)?;
    }
    for (field, value) in [("detected", &form.detected), ("not_detected", &form.not_detected)] {
        if let Some(value) = value {
            check_list(field, value, ',', MAX_ANALYTES)?;
        }
    }
    if let Some(findings) = &form.findings {
        check_text("findings", findings, MAX_FINDINGS * MAX_SHORT_CHARS, true)?;
        check_list("findings", findings, '\n', MAX_FINDINGS)?;
    }
    for (field, value) in [
        ("text_version", &form.text_version),
        ("naloxone", &form.naloxone),
        ("uds_kind", &form.uds_kind),
        ("collected_on", &form.collected_on),
        ("result_kind", &form.result_kind),
        ("specimen_validity", &form.specimen_validity),
        ("request_kind", &form.request_kind),
        ("filled_on", &form.filled_on),
        ("days_supply", &form.days_supply),
        ("quantity", &form.quantity),
        ("prescriber_1", &form.prescriber_1),
        ("class_1", &form.class_1),
        ("finding_on_1", &form.finding_on_1),
        ("prescriber_2", &form.prescriber_2),
        ("class_2", &form.class_2),
        ("finding_on_2", &form.finding_on_2),
        ("prescriber_3", &form.prescriber_3),
        ("class_3", &form.class_3),
        ("finding_on_3", &form.finding_on_3),
    ] {
        if let Some(value) = value {
            check_text(field, value, MAX_SHORT_CHARS, false)?;
        }
    }
    Ok(())
}

/// A physician's signed decision (screen or API) within bounds.
pub fn check_decision(form: &DecideForm) -> Result<(), WebError> {
    check_text("decision", &form.decision, MAX_SHORT_CHARS, false)?;
    check_text("rationale", &form.rationale, MAX_NOTE_CHARS, true)?;
    if let Some(attestation) = &form.safety_attestation {
        check_text("safety_attestation", attestation, MAX_NOTE_CHARS, true)?;
    }
    for (field, value) in
        [("bridge_days", &form.bridge_days), ("bridge_quantity", &form.bridge_quantity), ("review_by", &form.review_by)]
    {
        if let Some(value) = value {
            check_text(field, value, MAX_SHORT_CHARS, false)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_text;

    #[test]
    fn long_text_and_control_characters_are_refused_with_the_field_named() {
        assert!(check_text("note", "called the pharmacy\nno answer", 100, true).is_ok());
        let long = check_text("note", &"x".repeat(101), 100, true).expect_err("too long");
        assert!(long.to_string().starts_with("note: 101 characters"), "{long}");
        assert!(check_text("name", "a\u{0}b", 100, false).is_err(), "NUL");
        assert!(check_text("name", "a\nb", 100, false).is_err(), "a line break in a one-line field");
    }
}
