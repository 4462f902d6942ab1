//! The refill cycle through the JSON API on a real SQLite file: a recorded request, a drug test from
//! collection to a physician's review (each step its own call), a dispense recorded for a patient who
//! is not on today's queue, and the refusals that keep staff inside the protocol.

use axum::http::StatusCode;
use chrono::Duration;
use refill_rules::{Fill, PatientId, PrescriberId};
use refill_store::accounts::Role;
use refill_store::{Actor, PatientDetails};
use refill_web::WebSettings;
use serde_json::json;

mod support;
use support::{call, person, sqlite_app};

#[tokio::test]
async fn requests_drug_test_steps_and_dispenses_through_the_api() {
    let dir = tempfile::tempdir().expect("dir");
    let settings = WebSettings { secure_cookies: false, ..WebSettings::default() };
    let state = sqlite_app(dir.path(), "cycle.db", b"cycle-api-test-key-cycle-api-test-key", settings).await;
    let store = state.store.clone();
    let today = state.today();
    let system = Actor::system();
    // Filled 24 days ago for 30: the refill window is open today.
    let mut tx = store.begin().await.expect("begin");
    let mut details = PatientDetails::new("c-1", "Noor", "Hale");
    details.birth_date = Some(today - Duration::days(50 * 365));
    details.prescriber_of_record = Some(PrescriberId("dr-a".into()));
    let patient = tx.insert_patient(&details, &system).await.expect("patient");
    let order = refill_rules::MedicationOrder {
        id: "order-1".into(),
        rxcui: Some("1049621".into()),
        text: Some("oxycodone hydrochloride 5 MG Oral Tablet".into()),
        dose: Some(refill_rules::DoseQuantity { value: 1.0, unit: refill_rules::DoseUnit::DoseFormUnit }),
        doses_per_day: Some(4.0),
        days_supply: Some(30),
        dispense_quantity: Some(120.0),
        prescriber: Some(PrescriberId("dr-a".into())),
        purpose: refill_rules::OrderPurpose::Pain,
        confidentiality: refill_rules::Confidentiality::Normal,
    };
    tx.replace_regimen(patient, std::slice::from_ref(&order)).await.expect("regimen");
    let fill = Fill { filled_on: today - Duration::days(24), days_supply: 30, order_id: None, quantity: None };
    tx.insert_fill(patient, &fill, None).await.expect("fill");
    let clinic = store.clinic_facts().await.expect("clinic");
    refill_app::decide::decide_and_record(
        &state.app(),
        &mut tx,
        &clinic,
        patient,
        today,
        &system,
        refill_app::decide::Trigger::Rules,
    )
    .await
    .expect("decide");
    tx.commit().await.expect("commit");
    let PatientId(pid) = patient;
    let desk = person(&state, "desk", "Dana Desk", Role::Staff).await;
    let doc = person(&state, "doc", "Dr Ada Lind", Role::Physician).await;
    let path = format!("/api/queue/{pid}/action");

    // A routine request: recorded, the decision names it.
    let (status, body) = call(
        &state,
        &desk,
        "POST",
        &path,
        Some(json!({ "action": "request", "request_kind": "routine", "note": "called" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let requests = store.refill_requests_for_patient(patient, 10).await.expect("requests");
    assert_eq!(requests.len(), 1);
    assert_eq!((requests[0].kind.as_str(), requests[0].channel.as_str()), ("routine", "staff"));
    let latest = store.decisions_for_patient(patient, 1).await.expect("decisions");
    assert_eq!(latest[0].refill_request_id.map(|r| r.0), Some(requests[0].id));
    // An unknown request kind is named.
    let (status, body) =
        call(&state, &desk, "POST", &path, Some(json!({ "action": "request", "request_kind": "urgent" }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("request_kind"), "{body}");

    // A drug test, step by step: collected, presumptive result (cocaine: escalated), sent for
    // confirmation, confirmatory result, reviewed by a physician (never by staff).
    let version = |body: &serde_json::Value| body["version"].as_i64().unwrap_or_default();
    let (_, queue) = call(&state, &desk, "GET", "/api/queue", None).await;
    let mut row_version = queue["rows"][0]["version"].as_i64().expect("row version");
    let (status, body) = call(
        &state,
        &desk,
        "POST",
        &path,
        Some(json!({ "action": "uds_collect", "version": row_version, "uds_kind": "scheduled" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let test_id = body["uds_test_id"].as_i64().expect("the test's id");
    row_version = version(&body);
    let (status, body) = call(
        &state,
        &desk,
        "POST",
        &path,
        Some(json!({ "action": "uds_result", "version": row_version, "test_id": test_id,
                     "detected": "oxycodone, cocaine" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], json!("ESCALATE"), "{body}");
    row_version = version(&body);
    let (status, body) = call(
        &state,
        &desk,
        "POST",
        &path,
        Some(json!({ "action": "uds_confirm_sent", "version": row_version, "test_id": test_id })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    row_version = version(&body);
    let (status, body) = call(
        &state,
        &desk,
        "POST",
        &path,
        Some(json!({ "action": "uds_result", "version": row_version, "test_id": test_id,
                     "result_kind": "confirmatory", "detected": "oxycodone, cocaine" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    row_version = version(&body);
    let (status, body) = call(
        &state,
        &desk,
        "POST",
        &path,
        Some(json!({ "action": "uds_review", "version": row_version, "test_id": test_id })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "staff cannot review: {body}");
    let (status, body) = call(
        &state,
        &doc,
        "POST",
        &path,
        Some(json!({ "action": "uds_review", "version": row_version, "test_id": test_id })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tests = store.uds_tests_for_patient(patient).await.expect("tests");
    assert_eq!(tests[0].status.as_str(), "reviewed");
    assert_eq!(tests[0].reviewed_by.as_deref(), Some("user:2"), "{tests:?}");
    // A step that does not follow is refused, naming the test's state.
    let (status, body) = call(
        &state,
        &desk,
        "POST",
        &path,
        Some(json!({ "action": "uds_confirm_sent", "version": version(&body), "test_id": test_id })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("reviewed"), "{body}");

    // The pharmacy dispensed: recorded with the days supplied (a bad number is named); the next refill
    // is then not due.
    let (status, body) =
        call(&state, &desk, "POST", &path, Some(json!({ "action": "dispense", "days_supply": "thirty" }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("days_supply"), "{body}");
    let (status, body) =
        call(&state, &desk, "POST", &path, Some(json!({ "action": "dispense", "days_supply": 30, "quantity": 120 })))
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let latest = store.decisions_for_patient(patient, 1).await.expect("decisions");
    assert_eq!(latest[0].decision.window, refill_rules::RefillWindow::NotDue, "{:?}", latest[0].decision);

    // The patient's record shows the request and where the drug test ended.
    let (status, view) = call(&state, &doc, "GET", &format!("/api/patients/{pid}"), None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let text = view.to_string();
    assert!(text.contains("reviewed") && text.contains("Dr Ada Lind"), "{text}");
    assert!(text.contains("routine") && text.contains("called"), "{text}");
}
