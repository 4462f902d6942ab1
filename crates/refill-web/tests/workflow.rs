//! The queue and exception workflow through the JSON API on a real SQLite file: two staff acting on the
//! same row (the loser is told who won), restricted (42 CFR Part 2) reasons masked until a physician
//! breaks the glass, a signed physician decision that feeds back into the queue row, and one audit
//! event per view.

use axum::http::StatusCode;
use refill_rules::{PatientId, ReasonCode};
use refill_store::accounts::Role;
use refill_store::{Actor, PatientDetails};
use refill_web::WebSettings;
use serde_json::json;

mod support;
use support::{call, count_events, escalation, person, record_today, sqlite_app};

#[tokio::test]
async fn two_staff_one_row_restricted_reasons_and_a_signed_decision() {
    let dir = tempfile::tempdir().expect("dir");
    let settings = WebSettings { secure_cookies: false, ..WebSettings::default() };
    let state = sqlite_app(dir.path(), "workflow.db", b"workflow-test-key-workflow-test-key", settings).await;
    let store = state.store.clone();
    let today = state.today();
    // A patient escalated today on a reason that rests on a Part 2 record.
    let actor = Actor::system();
    let mut tx = store.begin().await.expect("begin");
    let mut details = PatientDetails::new("w-1", "Rosa", "Quill");
    details.part2 = true;
    let patient = tx.insert_patient(&details, &actor).await.expect("patient");
    let decision = escalation(
        ReasonCode::OudMedicationFromOtherSource,
        ("medication", "methadone from an opioid treatment program"),
        true,
        45.0,
    );
    record_today(&store, &mut tx, patient, today, &decision).await;
    tx.commit().await.expect("commit");
    let PatientId(pid) = patient;

    let dana = person(&state, "dana", "Dana Whitfield", Role::Staff).await;
    let omar = person(&state, "omar", "Omar Reyes", Role::Staff).await;
    let doc = person(&state, "doc", "Dr Ada Lind", Role::Physician).await;

    // The queue list is one audit event per view, and the restricted reason is masked for staff.
    let before = count_events(&store, "queue.view").await;
    let (status, queue) = call(&state, &dana, "GET", "/api/queue", None).await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    assert_eq!(count_events(&store, "queue.view").await, before + 1);
    let row = &queue["rows"][0];
    assert_eq!(row["patient_id"], json!(pid));
    let reasons = row["reasons"].to_string();
    assert!(reasons.contains("restricted information: physician review required"), "{reasons}");
    assert!(!reasons.contains("methadone"), "{reasons}");
    let version = row["version"].as_i64().expect("version");

    // The physician sees the reason masked until breaking the glass, with a reason.
    let (_, exceptions) = call(&state, &doc, "GET", "/api/exceptions", None).await;
    let exception = exceptions.as_array().and_then(|list| list.first()).cloned().expect("an open exception");
    let exception_id = exception["id"].as_i64().expect("id");
    let (_, detail) = call(&state, &doc, "GET", &format!("/api/exceptions/{exception_id}"), None).await;
    assert!(!detail["exception"]["reasons"].to_string().contains("methadone"));
    let (too_short, _) =
        call(&state, &doc, "POST", &format!("/api/patients/{pid}/break-glass"), Some(json!({ "reason": "need" })))
            .await;
    assert_eq!(too_short, StatusCode::UNPROCESSABLE_ENTITY);
    let (granted, _) = call(
        &state,
        &doc,
        "POST",
        &format!("/api/patients/{pid}/break-glass"),
        Some(json!({ "reason": "deciding today's refill safely" })),
    )
    .await;
    assert_eq!(granted, StatusCode::OK);
    assert_eq!(count_events(&store, "part2.break_glass").await, 1);
    let (_, detail) = call(&state, &doc, "GET", &format!("/api/exceptions/{exception_id}"), None).await;
    assert!(detail["exception"]["reasons"].to_string().contains("methadone"), "{}", detail["exception"]["reasons"]);
    // Staff cannot break the glass at all.
    let (staff_glass, _) = call(
        &state,
        &dana,
        "POST",
        &format!("/api/patients/{pid}/break-glass"),
        Some(json!({ "reason": "curious about this one" })),
    )
    .await;
    assert_eq!(staff_glass, StatusCode::FORBIDDEN);

    // Both staff act on the version they saw: one wins, the other is told who.
    let action = json!({ "action": "contacted", "version": version, "note": "left a voicemail" });
    let (first, body) = call(&state, &dana, "POST", &format!("/api/queue/{pid}/action"), Some(action.clone())).await;
    assert_eq!(first, StatusCode::OK, "{body}");
    let (second, body) = call(&state, &omar, "POST", &format!("/api/queue/{pid}/action"), Some(action)).await;
    assert_eq!(second, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains("Dana Whitfield"), "the loser sees who: {body}");

    // Staff cannot prepare a refill that is with a physician.
    let (_, item) = call(&state, &dana, "GET", &format!("/api/queue/{pid}"), None).await;
    let prepare = json!({ "action": "prepare", "version": item["version"] });
    let (refused, body) = call(&state, &dana, "POST", &format!("/api/queue/{pid}/action"), Some(prepare)).await;
    assert_eq!(refused, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // A decision needs a rationale; stopping needs the safety attestation; a signed one closes it.
    let (_, detail) = call(&state, &doc, "GET", &format!("/api/exceptions/{exception_id}"), None).await;
    let version = detail["exception"]["version"].as_i64().expect("version");
    let path = format!("/api/exceptions/{exception_id}/decide");
    let (no_rationale, _) = call(
        &state,
        &doc,
        "POST",
        &path,
        Some(json!({ "decision": "approve_refill", "version": version, "rationale": " " })),
    )
    .await;
    assert_eq!(no_rationale, StatusCode::UNPROCESSABLE_ENTITY);
    let (no_attestation, _) = call(
        &state,
        &doc,
        "POST",
        &path,
        Some(json!({ "decision": "stop_therapy", "version": version, "rationale": "risk" })),
    )
    .await;
    assert_eq!(no_attestation, StatusCode::UNPROCESSABLE_ENTITY);
    let (signed, body) = call(&state, &doc, "POST", &path, Some(json!({ "decision": "schedule_visit", "version": version, "rationale": "See in clinic this week before changing anything." }))).await;
    assert_eq!(signed, StatusCode::OK, "{body}");
    let (_, exceptions) = call(&state, &doc, "GET", "/api/exceptions", None).await;
    assert_eq!(exceptions.as_array().map(Vec::len), Some(0), "the signed exception is closed");
    let (_, item) = call(&state, &dana, "GET", &format!("/api/queue/{pid}"), None).await;
    assert_eq!(item["outcome"], json!("HOLD"), "the physician's hold is on the row: {item}");
    // The signed decision is on the patient's timeline: its rationale for the physician who opened the
    // Part 2 records; for staff the decision only, the rationale masked (the patient has Part 2 records).
    let decision_lines = |patient: &serde_json::Value| -> Vec<String> {
        patient["timeline"]
            .as_array()
            .map(|lines| {
                lines
                    .iter()
                    .filter(|line| line["kind"] == "Physician decision")
                    .map(|line| line["text"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (_, seen_by_doc) = call(&state, &doc, "GET", &format!("/api/patients/{pid}"), None).await;
    let doc_lines = decision_lines(&seen_by_doc);
    assert!(
        doc_lines.len() == 1
            && doc_lines[0].contains("See in clinic this week")
            && doc_lines[0].contains("Dr Ada Lind"),
        "{doc_lines:?}"
    );
    let (_, seen_by_staff) = call(&state, &dana, "GET", &format!("/api/patients/{pid}"), None).await;
    let staff_lines = decision_lines(&seen_by_staff);
    assert!(
        staff_lines.len() == 1
            && staff_lines[0].starts_with("Schedule a visit: restricted information")
            && !staff_lines[0].contains("See in clinic"),
        "{staff_lines:?}"
    );
    let (again, _) = call(
        &state,
        &doc,
        "POST",
        &path,
        Some(json!({ "decision": "approve_refill", "version": version, "rationale": "second try" })),
    )
    .await;
    assert_eq!(again, StatusCode::CONFLICT);
}
