//! Plain words for what the rules stored: outcomes as a word and a colour class (never colour alone),
//! reasons with their values and thresholds, tasks as "what is due". Reasons resting on 42 CFR Part 2
//! facts read "restricted information: physician review required" for anyone without access.

use serde_json::Value;

/// The status word and CSS class of an outcome (`None`: not evaluated yet).
pub fn status(outcome: Option<&str>) -> (&'static str, &'static str) {
    match outcome {
        Some("APPROVE") => ("Approve", "st-approve"),
        Some("APPROVE_WITH_TASKS") => ("Tasks", "st-tasks"),
        Some("HOLD") => ("Hold", "st-hold"),
        Some("ESCALATE") => ("Escalated", "st-escalated"),
        Some("ESCALATE_URGENT") => ("Urgent", "st-urgent"),
        _ => ("Not evaluated", "st-none"),
    }
}

pub const RESTRICTED: &str = "restricted information: physician review required";

/// The sentence for a reason code (the evidence follows it).
fn reason_sentence(code: &str) -> &'static str {
    match code {
        "early_request" => "Requested before the refill window opens",
        "early_request_supply_runs_out" => "Early request, but the supply runs out before the window opens",
        "early_fill_accumulation" => "Early fills are adding up",
        "naloxone_offer_due" => "Naloxone offer due",
        "pdmp_review_overdue" => "PDMP review overdue",
        "pdmp_outside_prescriber" => "PDMP shows a prescriber outside the clinic",
        "uds_overdue" => "Urine drug test overdue",
        "uds_unexpected_result" => "Unexpected urine drug test result",
        "agreement_expired" => "Agreement expired",
        "agreement_void" => "Agreement void (prescriber changed)",
        "agreement_missing" => "No signed agreement",
        "physician_review_overdue" => "Physician benefit-risk review overdue",
        "high_mme_reviewed" => "High daily MME (reviewed)",
        "high_mme_review_overdue" => "High daily MME, review overdue",
        "mme_crossed_threshold" => "Daily MME crossed a threshold since the last decision",
        "mme_undetermined" => "Daily MME cannot be determined",
        "benzodiazepine_unacknowledged" => "Benzodiazepine co-prescription not acknowledged",
        "regimen_changed" => "Regimen changed",
        "lost_or_stolen_replacement" => "Lost or stolen supply replacement",
        "oud_medication_from_other_source" => "OUD medication from another source",
        "outside_scope" => "Outside the guideline's scope",
        "overdose_or_sedation_signal" => "Overdose or sedation signal",
        "taper_step_due" => "Taper step due",
        "no_fill_history" => "No fill history",
        _ => "Rule fired",
    }
}

/// "what is due" for a task name.
pub fn task_words(task: &str) -> &'static str {
    match task {
        "offer_naloxone" => "Naloxone offer",
        "review_pdmp" => "PDMP review",
        "collect_uds" => "UDS today",
        "confirmatory_test" => "Confirmatory test",
        "renew_agreement" => "Agreement signature",
        "schedule_review" => "Visit",
        _ => "Task",
    }
}

/// One reason as a screen prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReasonLine {
    pub code: String,
    pub text: String,
    pub restricted: bool,
}

/// A reason in the form the store writes (`outcome` and `task` are not needed here and are skipped).
#[derive(serde::Deserialize)]
struct StoredReason {
    code: String,
    restricted: bool,
    #[serde(default)]
    evidence: Option<Value>,
}

/// The reasons of a stored decision in plain words; restricted ones are masked unless `may_see_part2`.
pub fn reasons(stored: Option<&str>, may_see_part2: bool) -> Vec<ReasonLine> {
    let Some(text) = stored else { return Vec::new() };
    // The store's own form reads straight into fields (a queue page reads a hundred of these); anything
    // else is read leniently, field by field.
    if let Ok(list) = serde_json::from_str::<Vec<StoredReason>>(text) {
        return list
            .into_iter()
            .map(|reason| reason_line(reason.code, reason.restricted, reason.evidence.as_ref(), may_see_part2))
            .collect();
    }
    let Ok(value) = serde_json::from_str::<Value>(text) else { return Vec::new() };
    let Some(list) = value.as_array() else { return Vec::new() };
    list.iter()
        .map(|reason| {
            let code = reason.get("code").and_then(Value::as_str).unwrap_or("").to_string();
            let restricted = reason.get("restricted").and_then(Value::as_bool).unwrap_or(false);
            reason_line(code, restricted, reason.get("evidence"), may_see_part2)
        })
        .collect()
}

fn reason_line(code: String, restricted: bool, evidence: Option<&Value>, may_see_part2: bool) -> ReasonLine {
    let text = if restricted && !may_see_part2 {
        RESTRICTED.to_string()
    } else {
        let evidence = evidence_words(evidence);
        if evidence.is_empty() {
            reason_sentence(&code).to_string()
        } else {
            format!("{}: {}", reason_sentence(&code), evidence)
        }
    };
    ReasonLine { code, text, restricted }
}

/// `name value; name value` from stored evidence (either the store's list form or a name-keyed map).
fn evidence_words(evidence: Option<&Value>) -> String {
    let mut parts = Vec::new();
    match evidence {
        Some(Value::Array(items)) => {
            for item in items {
                let name = item.get("name").and_then(Value::as_str).unwrap_or("");
                parts.push(format!("{} {}", name.replace('_', " "), value_words(item.get("value"))));
            }
        }
        Some(Value::Object(map)) => {
            for (name, value) in map {
                parts.push(format!("{} {}", name.replace('_', " "), value_words(Some(value))));
            }
        }
        _ => {}
    }
    parts.join("; ")
}

fn value_words(value: Option<&Value>) -> String {
    match value {
        Some(Value::Object(map)) => match map.iter().next() {
            Some((kind, _)) if kind == "missing" => "none".to_string(),
            Some((_, inner)) => value_words(Some(inner)),
            None => String::new(),
        },
        // Whole numbers print through the integer formatter: the same text, without the exact float
        // formatting that dominated a queue page's evidence.
        Some(Value::Number(number)) if number.as_i64().is_some_and(|whole| whole.unsigned_abs() < 1 << 53) => {
            number.to_string()
        }
        Some(Value::Number(number)) => match number.as_f64() {
            Some(value) if value.fract() == 0.0 => format!("{value:.0}"),
            Some(value) => format!("{value:.1}"),
            None => number.to_string(),
        },
        Some(Value::String(text)) => text.clone(),
        Some(Value::Bool(flag)) => if *flag { "yes" } else { "no" }.to_string(),
        Some(Value::Null) | None => "none".to_string(),
        Some(other) => other.to_string(),
    }
}

/// What is due, from a stored task list.
pub fn due(stored_tasks: Option<&str>) -> Vec<&'static str> {
    stored_tasks
        .and_then(|text| serde_json::from_str::<Vec<String>>(text).ok())
        .unwrap_or_default()
        .iter()
        .map(|task| task_words(task))
        .collect()
}

/// "3 days" / "today" / "1 day overdue" for days of supply left.
pub fn days_left(days: Option<i64>) -> String {
    match days {
        None => "unknown".into(),
        Some(0) => "runs out today".into(),
        Some(1) => "1 day".into(),
        Some(d) if d < 0 => format!("out {} days ago", -d),
        Some(d) => format!("{d} days"),
    }
}

/// Initials of a name ("Dana Whitfield" -> "DW").
pub fn initials(given: &str, family: &str) -> String {
    given.chars().take(1).chain(family.chars().take(1)).collect::<String>().to_uppercase()
}

/// The last four characters of a record number, for the wall display.
pub fn short_mrn(mrn: Option<&str>) -> String {
    match mrn {
        Some(mrn) if mrn.len() > 4 => format!("…{}", &mrn[mrn.len() - 4..]),
        Some(mrn) => mrn.to_string(),
        None => "—".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_reasons_are_masked_without_access() {
        let stored = r#"[{"code":"uds_unexpected_result","outcome":"ESCALATE","task":null,"restricted":true,
            "evidence":[{"name":"analyte","value":{"text":"buprenorphine"}}]},
            {"code":"pdmp_review_overdue","outcome":"APPROVE_WITH_TASKS","task":"review_pdmp","restricted":false,
            "evidence":[{"name":"last_reviewed","value":{"date":"2026-08-01"}},{"name":"days_since","value":{"integer":114}},
            {"name":"policy_days","value":{"integer":90}}]}]"#;
        let masked = reasons(Some(stored), false);
        assert_eq!(masked[0].text, RESTRICTED);
        assert!(!masked[0].text.contains("buprenorphine"));
        assert_eq!(masked[1].text, "PDMP review overdue: last reviewed 2026-08-01; days since 114; policy days 90");
        let open = reasons(Some(stored), true);
        assert!(open[0].text.contains("buprenorphine"));
    }

    #[test]
    fn reasons_outside_the_stored_form_are_read_leniently() {
        // No `restricted` field and a code that is not a string: the strict form refuses it, the lenient
        // reading still prints what it can (and treats a missing flag as not restricted).
        let odd = r#"[{"code":"uds_overdue","evidence":{"days_since":40}},{"code":7}]"#;
        let lines = reasons(Some(odd), false);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].text, "Urine drug test overdue: days since 40");
        assert_eq!(lines[1].text, "Rule fired");
        assert!(reasons(Some("not json"), false).is_empty());
        assert!(reasons(None, false).is_empty());
    }

    #[test]
    fn numbers_in_evidence_print_the_same_whole_or_not() {
        for (json, words) in [("114", "114"), ("-2", "-2"), ("90.0", "90"), ("37.5", "37.5"), ("0.25", "0.2")] {
            let value: Value = serde_json::from_str(json).expect("number");
            assert_eq!(value_words(Some(&value)), words, "{json}");
        }
    }
}
