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

use crate::part2::Part2Access;
pub use crate::part2::{RESTRICTED, RESTRICTED_HEADLINE};

/// A queue row's one line of reasons: the headlines, joined (the side panel has each with its evidence).
pub fn one_line(reasons: &[ReasonLine]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for reason in reasons {
        if !seen.contains(&reason.headline.as_str()) {
            seen.push(&reason.headline);
        }
    }
    seen.join(" · ")
}

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
        "supply_runs_out_unresolved" => "Supply runs out before this is resolved: decide now (a bridge is offered)",
        "transferred_patient_continued" => "New or transferred patient: continued while the clinic reviews the case",
        "dose_change_requested" => "The patient asks for a different dose",
        "uds_prescribed_not_tested" => "The drug test run cannot see a prescribed opioid: definitive test",
        "uds_specimen_invalid" => "Invalid drug-test specimen: collect again",
        "lost_or_stolen_repeat" => "Lost or stolen supply reported again within the window",
        "aberrant_pattern" => "Pattern of early requests, lost supply or unexpected tests",
        "er_la_not_opioid_tolerant" => "Extended-release or long-acting opioid, patient not opioid tolerant",
        "agreement_incomplete" => "Agreement lacks required elements",
        "patient_statement" => "Patient statement",
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
    /// The sentence with its evidence (the side panel, the exception detail).
    pub text: String,
    /// The sentence alone: what a queue row's one line shows.
    pub headline: String,
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
pub fn reasons(stored: Option<&str>, access: impl Into<Part2Access>) -> Vec<ReasonLine> {
    let access = access.into();
    let Some(text) = stored else { return Vec::new() };
    // The store's own form reads straight into fields (a queue page reads a hundred of these); anything
    // else is read leniently, field by field.
    if let Ok(list) = serde_json::from_str::<Vec<StoredReason>>(text) {
        return list
            .into_iter()
            .map(|reason| reason_line(reason.code, reason.restricted, reason.evidence.as_ref(), access))
            .collect();
    }
    let Ok(value) = serde_json::from_str::<Value>(text) else { return Vec::new() };
    let Some(list) = value.as_array() else { return Vec::new() };
    list.iter()
        .map(|reason| {
            let code = reason.get("code").and_then(Value::as_str).unwrap_or("").to_string();
            let restricted = reason.get("restricted").and_then(Value::as_bool).unwrap_or(false);
            reason_line(code, restricted, reason.get("evidence"), access)
        })
        .collect()
}

/// The code a masked reason carries instead of its own: a reason's code names the restricted fact
/// (`oud_medication_from_other_source`), so every output (pages, JSON, live updates) masks it too.
pub const RESTRICTED_CODE: &str = "restricted";

/// One reason in words. This is the one place restricted reasons are masked, code and text alike.
fn reason_line(code: String, restricted: bool, evidence: Option<&Value>, access: Part2Access) -> ReasonLine {
    if access.hides(restricted) {
        return ReasonLine {
            code: RESTRICTED_CODE.to_string(),
            text: RESTRICTED.to_string(),
            headline: RESTRICTED_HEADLINE.to_string(),
            restricted,
        };
    }
    let evidence = evidence_words(evidence);
    let headline = reason_sentence(&code).to_string();
    let text = if evidence.is_empty() { headline.clone() } else { format!("{headline}: {evidence}") };
    ReasonLine { code, text, headline, restricted }
}

/// The evidence in plain words, `; `-separated: what it is about first (the medication, the
/// condition), then dates with how long ago ("PDMP last reviewed 2026-08-01, 114 days ago"), then the
/// values, and the policy's limit last ("policy 90 days"). The store may keep evidence sorted by name,
/// so a date finds its age by name, not by position. Reads the store's list form or a name-keyed map.
fn evidence_words(evidence: Option<&Value>) -> String {
    let items: Vec<(&str, Option<&Value>)> = match evidence {
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| (item.get("name").and_then(Value::as_str).unwrap_or(""), item.get("value")))
            .collect(),
        Some(Value::Object(map)) => map.iter().map(|(name, value)| (name.as_str(), Some(value))).collect(),
        _ => Vec::new(),
    };
    let age_of = |date_name: &str| -> Option<String> {
        let age_name = age_name_of(date_name)?;
        let (_, value) = items.iter().find(|(name, _)| *name == age_name)?;
        (!is_missing(*value)).then(|| value_words(*value))
    };
    let mut parts: Vec<(u8, String)> = Vec::new();
    for (name, value) in &items {
        let (name, value) = (*name, *value);
        let missing = is_missing(value);
        let words = value_words(value);
        let part = if let Some(label) = date_label(name) {
            let text = match (missing, age_of(name)) {
                (true, _) => format!("{label}: none on record"),
                (false, Some(age)) => format!("{label} {words}, {}", days_ago(&age)),
                (false, None) => format!("{label} {words}"),
            };
            (1, text)
        } else if name.ends_with("age_days") {
            // Said with its date; an age without a known date stands alone.
            let paired = items.iter().any(|(other, _)| age_name_of(other) == Some(name));
            if paired || missing {
                continue;
            }
            (1, days_ago(&words))
        } else {
            match name {
                "medication" | "products" => (0, words),
                "statement" => (0, format!("the patient said \"{words}\"")),
                "condition" => (0, words.replace('_', " ")),
                "policy_max_days" => (3, format!("policy {words} days")),
                "policy_valid_days" => (3, format!("valid for {words} days by policy")),
                "mme_threshold" | "threshold" => (3, format!("threshold {words} MME/day")),
                "minimum_age_years" => (3, format!("minimum age {words}")),
                "days_past_due" => (2, format!("{words} days past due")),
                "days_supply" | "days_supplied" => (2, format!("{words} days supplied")),
                "days_without_supply" => (2, format!("{words} days without supply")),
                "days_elapsed" => (2, format!("{words} days elapsed")),
                "total_daily_mme" if missing => (2, "MME undetermined".to_string()),
                "total_daily_mme" => (2, format!("{words} MME/day")),
                "previous_total_daily_mme" => (2, format!("previously {words} MME/day")),
                "age_years" => (2, format!("age {words}")),
                "triggers" => (2, format!("because of {}", words.replace('_', " "))),
                "confirmatory" => {
                    (2, if words == "yes" { "confirmed by a lab" } else { "not yet confirmed by a lab" }.to_string())
                }
                "uds_kind" => (2, format!("{} test", words.replace('_', "-"))),
                "on_time_fraction" => (2, percent_on_time(value)),
                "lookback_days" | "policy_lookback_days" => (3, format!("over the last {words} days")),
                "allowance_days" => (3, format!("{words} days early allowed")),
                "days_left" if words == "1" => (2, "1 day of supply left".to_string()),
                "days_left" => (2, format!("{words} days of supply left")),
                "drug_class" => (0, words.replace('_', " ")),
                "prescriber" | "pdmp_prescriber" => (0, format!("prescriber {words}")),
                "previous_prescriber" => (2, format!("previously prescribed by {words}")),
                "earlier_reports_in_window" => (2, format!("{words} earlier report(s)")),
                "early_requests" => (2, format!("{words} early request(s)")),
                "fills_in_window" => (2, format!("{words} fill(s) in the window")),
                "fills_on_record" => (2, format!("{words} fill(s) on record")),
                "lost_or_stolen_reports" => (2, format!("{words} lost or stolen report(s)")),
                "policy_window_days" => (3, format!("policy window {words} days")),
                "policy_days" => (3, format!("policy {words} days")),
                "policy_min_events" => (3, format!("policy: {words} or more")),
                "specimen_validity" => (2, format!("specimen {}", words.replace('_', " "))),
                "request_kind" => (0, format!("{} request", words.replace('_', " "))),
                "agreement_state" => (0, format!("agreement {}", words.replace('_', " "))),
                "missing_elements" => (2, format!("missing {}", words.replace('_', " "))),
                "not_tested" => (2, format!("not tested for {words}")),
                "unexpected_results" => (2, format!("unexpected {words}")),
                "undetermined_products" => (0, format!("no dose to compute from: {words}")),
                "tolerant_mme" => (3, format!("tolerance needs {words} MME/day")),
                "outside_daily_mme" => (2, format!("{words} MME/day from outside prescribers")),
                "record_daily_mme" => (2, format!("{words} MME/day on record")),
                "continuous_supply" => {
                    (2, if words == "yes" { "supply continuous" } else { "supply interrupted" }.to_string())
                }
                "note" => (0, format!("note: {words}")),
                // Internal bookkeeping a nurse has no use for.
                "text_version" | "nothing" | "compared_with" => continue,
                _ => (2, format!("{} {}", name.replace('_', " "), words.replace('_', " "))),
            }
        };
        parts.push(part);
    }
    parts.sort_by_key(|(rank, _)| *rank);
    parts.into_iter().map(|(_, text)| text).collect::<Vec<_>>().join("; ")
}

/// "80% of fills on time" from a fraction (0.8).
fn percent_on_time(value: Option<&Value>) -> String {
    let fraction = match value {
        Some(Value::Object(map)) => map.values().next().and_then(Value::as_f64),
        Some(other) => other.as_f64(),
        None => None,
    };
    match fraction {
        Some(f) => format!("{:.0}% of fills on time", f * 100.0),
        None => "fills on time: unknown".to_string(),
    }
}

/// "today", "1 day ago", "114 days ago".
fn days_ago(days: &str) -> String {
    match days {
        "0" => "today".to_string(),
        "1" => "1 day ago".to_string(),
        days => format!("{days} days ago"),
    }
}

/// The evidence name of a date's age in days, as the rules pair them (`dated_evidence`).
fn age_name_of(date_name: &str) -> Option<&'static str> {
    Some(match date_name {
        "pdmp_last_reviewed" => "pdmp_age_days",
        "review_last_on" => "review_age_days",
        "acknowledged_on" => "acknowledgement_age_days",
        "agreement_signed_on" => "agreement_age_days",
        "naloxone_last_on" => "naloxone_age_days",
        "signal_recorded_on" => "signal_age_days",
        "previous_report_on" => "previous_report_age_days",
        _ => return None,
    })
}

/// The label of an evidence item that holds a date, by its name.
fn date_label(name: &str) -> Option<&'static str> {
    Some(match name {
        "pdmp_last_reviewed" => "PDMP last reviewed",
        "pdmp_reviewed_on" => "PDMP reviewed",
        "review_last_on" => "last physician review",
        "acknowledged_on" => "acknowledged",
        "agreement_signed_on" => "agreement signed",
        "naloxone_last_on" => "naloxone last recorded",
        "collected_on" => "collected",
        "filled_on" => "filled",
        "requested_on" => "requested",
        "last_fill_on" => "last fill",
        "first_fill_in_window_on" => "first fill in the window",
        "eligible_on" => "eligible on",
        "supply_runs_out_on" => "supply runs out",
        "uds_due_on" => "UDS due",
        "window_ends_on" => "window ends",
        "started_on" => "started",
        "recorded_on" => "recorded",
        "signal_recorded_on" => "signal recorded",
        "last_decision_on" => "last decision",
        "last_reviewed" => "last reviewed",
        "previous_report_on" => "previous report",
        "first_event_on" => "first event",
        "latest_event_on" => "latest event",
        _ => return None,
    })
}

/// An evidence value the rules stored as missing (`{"missing": ...}`), or no value at all.
fn is_missing(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Object(map)) => map.contains_key("missing"),
        Some(Value::Null) | None => true,
        _ => false,
    }
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

/// What is due, from a stored task list. A task whose only causes are restricted (42 CFR Part 2)
/// reasons reads "Physician follow-up" for anyone without access: "Confirmatory test" or "Naloxone
/// offer" would say what the restricted record holds.
pub fn due(
    stored_tasks: Option<&str>,
    stored_reasons: Option<&str>,
    access: impl Into<Part2Access>,
) -> Vec<&'static str> {
    let access = access.into();
    #[derive(serde::Deserialize)]
    struct TaskCause {
        #[serde(default)]
        task: Option<String>,
        #[serde(default)]
        restricted: bool,
    }
    let causes: Vec<TaskCause> = stored_reasons.and_then(|text| serde_json::from_str(text).ok()).unwrap_or_default();
    let mut words: Vec<&'static str> = Vec::new();
    for task in stored_tasks.and_then(|text| serde_json::from_str::<Vec<String>>(text).ok()).unwrap_or_default() {
        let mut its = causes.iter().filter(|c| c.task.as_deref() == Some(task.as_str())).peekable();
        let only_restricted = its.peek().is_some() && its.all(|c| c.restricted);
        let word = if access.hides(only_restricted) { RESTRICTED_HEADLINE } else { task_words(&task) };
        if !words.contains(&word) {
            words.push(word);
        }
    }
    words
}

/// "3 days" / "today" / "1 day overdue" for days of supply left.
pub fn days_left(days: Option<i64>) -> String {
    match days {
        None => "unknown".into(),
        Some(0) => "today".into(),
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

/// Where the refill stands in its cycle, for the queue row ("not due until ...", "prepared").
pub fn window(stored: Option<&str>, eligible_on: Option<chrono::NaiveDate>) -> String {
    match (stored, eligible_on) {
        (Some("not_due"), Some(eligible)) => format!("not due until {eligible}: monitoring only"),
        (Some("not_due"), None) => "not due: monitoring only".to_string(),
        (Some("prepared"), _) => "prepared: at the pharmacy".to_string(),
        (Some("open"), Some(eligible)) => format!("refill due {eligible}"),
        _ => String::new(),
    }
}

/// A standing physician decision in words for staff: who, when, the option, a bridge's days, quantity
/// and review-by date, and the rationale, masked when the record holds Part 2 information ("Approve"
/// after a bridge reads as the bridge, never a plain approve).
pub fn standing_decision(
    decision: &refill_store::cycle::PhysicianDecisionRecord,
    signer: &str,
    access: impl Into<Part2Access>,
) -> String {
    let option = match decision.choice.as_str() {
        "bridge" => {
            let quantity = decision.bridge_quantity.map(|q| format!(", {q:.0} units")).unwrap_or_default();
            format!("Bridge: {} days{quantity}", decision.bridge_days.unwrap_or_default())
        }
        "approve" => "Approved".to_string(),
        "taper" => "Taper signed".to_string(),
        "hold" => "Held with a plan".to_string(),
        "stop" => "Therapy stopped by the physician".to_string(),
        other => other.to_string(),
    };
    let review = decision.review_by.map(|d| format!(", review by {d}")).unwrap_or_default();
    // A rationale may quote the record: masked whenever the viewer lacks access (the caller says so).
    let rationale = match (&decision.rationale, access.into()) {
        (_, Part2Access::Masked) => format!(" — {RESTRICTED}"),
        (Some(text), Part2Access::Open) => format!(" — “{text}”"),
        (None, Part2Access::Open) => String::new(),
    };
    format!("{option}{review} ({signer}, {}){rationale}", decision.signed_on)
}

#[cfg(test)]
mod tests {
    use refill_rules::ReasonCode;

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
        assert_eq!(masked[0].code, RESTRICTED_CODE, "the code names the restricted fact too");
        assert!(!masked[0].text.contains("buprenorphine"));
        assert_eq!(masked[1].text, "PDMP review overdue: last reviewed 2026-08-01; days since 114; policy 90 days");
        assert_eq!(masked[0].headline, RESTRICTED_HEADLINE, "the row's line says who acts, not what");
        assert_eq!(one_line(&masked), "Physician follow-up · PDMP review overdue");
        // The rules' own evidence names read as a sentence.
        let named = r#"[{"code":"pdmp_review_overdue","restricted":false,"evidence":[
            {"name":"pdmp_last_reviewed","value":{"date":"2026-08-01"}},{"name":"pdmp_age_days","value":{"integer":114}},
            {"name":"policy_max_days","value":{"integer":90}}]},
            {"code":"benzodiazepine_unacknowledged","restricted":false,"evidence":[
            {"name":"medication","value":{"text":"diazepam 5 MG Oral Tablet"}},
            {"name":"acknowledged_on","value":{"missing":null}},{"name":"acknowledgement_age_days","value":{"missing":null}},
            {"name":"policy_max_days","value":{"integer":90}}]}]"#;
        let lines = reasons(Some(named), false);
        assert_eq!(lines[0].text, "PDMP review overdue: PDMP last reviewed 2026-08-01, 114 days ago; policy 90 days");
        assert_eq!(
            lines[1].text,
            "Benzodiazepine co-prescription not acknowledged: diazepam 5 MG Oral Tablet; acknowledged: none on record; \
             policy 90 days"
        );
        // Sorted by name, as the store may keep them: the age still joins its date.
        let sorted = r#"[{"code":"physician_review_overdue","restricted":false,"evidence":{
            "policy_max_days":{"integer":90},"review_age_days":{"integer":108},"review_last_on":{"date":"2026-08-15"}}}]"#;
        assert_eq!(
            reasons(Some(sorted), false)[0].text,
            "Physician benefit-risk review overdue: last physician review 2026-08-15, 108 days ago; policy 90 days"
        );
        let open = reasons(Some(stored), true);
        assert!(open[0].text.contains("buprenorphine"));
    }

    #[test]
    fn a_task_caused_only_by_a_restricted_record_is_worded_neutrally() {
        let reasons = r#"[{"code":"uds_unexpected_result","restricted":true,"task":"confirmatory_test"},
            {"code":"naloxone_offer_due","restricted":true,"task":"offer_naloxone"},
            {"code":"pdmp_review_overdue","restricted":false,"task":"review_pdmp"},
            {"code":"early_fill_accumulation","restricted":false,"task":"offer_naloxone"}]"#;
        let tasks = r#"["confirmatory_test","offer_naloxone","review_pdmp"]"#;
        assert_eq!(
            due(Some(tasks), Some(reasons), false),
            ["Physician follow-up", "Naloxone offer", "PDMP review"],
            "naloxone has an open cause too, so it may be named"
        );
        assert_eq!(due(Some(tasks), Some(reasons), true), ["Confirmatory test", "Naloxone offer", "PDMP review"]);
        assert_eq!(due(Some(tasks), None, false), ["Confirmatory test", "Naloxone offer", "PDMP review"]);
    }

    #[test]
    fn evidence_reads_as_words_not_names_and_values() {
        let stored = r#"[{"code":"aberrant_pattern","restricted":false,"evidence":[
            {"name":"on_time_fraction","value":{"number":0.8}},{"name":"lookback_days","value":{"integer":180}},
            {"name":"uds_kind","value":{"text":"scheduled"}},{"name":"confirmatory","value":{"bool":false}}]}]"#;
        let text = &reasons(Some(stored), false)[0].text;
        assert_eq!(
            text,
            "Pattern of early requests, lost supply or unexpected tests: 80% of fills on time; scheduled test; \
             not yet confirmed by a lab; over the last 180 days"
        );
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
    fn patient_statements_and_the_issue_12_reasons_read_as_words() {
        let stored = r#"[{"code":"patient_statement","restricted":false,"evidence":{
            "recorded_on":{"date":"2026-01-20"},"statement":{"text":"I stopped taking it for a week"}}},
            {"code":"lost_or_stolen_repeat","restricted":false,"evidence":{"previous_report_on":{"date":"2025-09-10"},
            "previous_report_age_days":{"integer":139},"earlier_reports_in_window":{"integer":1},
            "policy_window_days":{"integer":365}}}]"#;
        let lines = reasons(Some(stored), false);
        assert_eq!(
            lines[0].text,
            "Patient statement: the patient said \"I stopped taking it for a week\"; recorded 2026-01-20"
        );
        assert!(
            lines[1].text.starts_with("Lost or stolen supply reported again within the window: "),
            "{}",
            lines[1].text
        );
        assert!(lines[1].text.contains("previous report 2025-09-10, 139 days ago"), "{}", lines[1].text);
        for code in ReasonCode::ALL {
            assert_ne!(reason_sentence(code.as_str()), "Rule fired", "{} has no sentence", code.as_str());
        }
    }

    #[test]
    fn numbers_in_evidence_print_the_same_whole_or_not() {
        for (json, words) in [("114", "114"), ("-2", "-2"), ("90.0", "90"), ("37.5", "37.5"), ("0.25", "0.2")] {
            let value: Value = serde_json::from_str(json).expect("number");
            assert_eq!(value_words(Some(&value)), words, "{json}");
        }
    }
}
