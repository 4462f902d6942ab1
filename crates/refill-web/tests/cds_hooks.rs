//! The CDS Hooks service through the router: discovery, every CDC example request answered with
//! well-formed cards that say what the example's expected card says where it is clinically right,
//! bad requests named by field, 412 without data, feedback stored, and the EHR's JWT checked when
//! the clinic requires it.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{TimeZone, Utc};
use refill_web::{AppState, Clock, WebSettings, app};
use serde_json::{Value, json};
use tower::ServiceExt;

fn examples_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/cds-hooks")
}

fn example(name: &str) -> Value {
    let path = examples_dir().join(format!("request-example-{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("example")).expect("json")
}

/// The examples' dates are relative to 2023-05-01 (their `dataDateRoller`).
async fn state_on_2023_05_01(dir: &std::path::Path, settings: WebSettings) -> AppState {
    let state = support::sqlite_app(dir, "cds.db", b"cds-test-key-0123456789abcdef0123", settings).await;
    state.with_clock(Clock::from_fn(|| Utc.with_ymd_and_hms(2023, 5, 1, 15, 0, 0).unwrap()))
}

async fn send(
    state: &AppState,
    method: &str,
    path: &str,
    body: Option<String>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut builder = Request::builder().method(method).uri(path).header(header::HOST, "cds.test");
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some(body) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Body::from(body)
        }
        None => Body::empty(),
    };
    let response = app(state.clone()).oneshot(builder.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 4 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn service_for(request: &Value) -> &'static str {
    match request["hook"].as_str() {
        Some("order-sign") => "opioid-refill-order-sign",
        Some("order-select") => "opioid-refill-order-select",
        Some("patient-view") => "opioid-refill-patient-view",
        other => panic!("hook {other:?}"),
    }
}

/// Every card is what the CDS Hooks specification asks for.
fn assert_well_formed(name: &str, response: &Value) {
    let cards = response["cards"].as_array().unwrap_or_else(|| panic!("{name}: no cards array"));
    for card in cards {
        let summary = card["summary"].as_str().expect("summary");
        assert!(!summary.is_empty() && summary.chars().count() < 140, "{name}: summary {summary:?}");
        assert!(matches!(card["indicator"].as_str(), Some("info" | "warning" | "critical")), "{name}: {card}");
        assert!(card["source"]["label"].as_str().is_some_and(|l| l.contains("CDC")), "{name}: {card}");
        assert!(card["uuid"].as_str().is_some(), "{name}: uuid");
        for reason in card["overrideReasons"].as_array().expect("override reasons") {
            assert!(reason["display"].as_str().is_some(), "{name}: override reason without display");
        }
        if let Some(suggestions) = card["suggestions"].as_array() {
            assert!(card["selectionBehavior"].as_str().is_some(), "{name}: selectionBehavior");
            for suggestion in suggestions {
                assert!(suggestion["label"].as_str().is_some());
                for action in suggestion["actions"].as_array().expect("actions") {
                    assert_eq!(action["type"], "create");
                    assert!(action["resource"]["resourceType"].as_str().is_some());
                }
            }
        }
        // Never advise stopping therapy.
        let text = format!("{} {}", summary, card["detail"].as_str().unwrap_or("")).to_lowercase();
        for forbidden in ["discontinue", "dismiss the patient from", "stop opioids now", "taper now"] {
            assert!(!text.contains(forbidden), "{name}: card says {forbidden:?}: {text}");
        }
    }
}

fn kinds(response: &Value) -> Vec<String> {
    response["cards"]
        .as_array()
        .map(|cards| cards.iter().map(|c| c["source"]["topic"]["code"].as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn every_example_request_gets_well_formed_cards_that_agree_with_the_expected_ones() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_on_2023_05_01(dir.path(), WebSettings::default()).await;
    // (example, card kinds the expected response implies, kinds that must not appear).
    let expectations: &[(&str, &[&str], &[&str])] = &[
        ("rec-04-05-mme-greater-than-fifty", &["high-mme"], &[]),
        ("rec-04-05-mme-less-than-fifty", &[], &["high-mme"]),
        ("rec-08-mme-greater-than-fifty", &["naloxone"], &[]),
        ("rec-08-mme-less-than-fifty", &[], &["naloxone", "high-mme"]),
        ("rec-08-on-benzodiazepine", &["naloxone"], &[]),
        ("rec-08-on-naloxone", &[], &["naloxone"]),
        ("rec-08-substance-abuse", &["naloxone"], &[]),
        ("rec-09-in-criteria-met", &[], &[]),
        ("rec-09-out-PDMP-review-90-days", &[], &["pdmp-review"]),
        ("rec-10-order-sign-illicit-drugs-POS-Cocaine", &["drug-test-result"], &[]),
        ("rec-10-order-sign-illicit-drugs", &["drug-test-result"], &[]),
        ("rec-10-order-sign-no-screenings", &["drug-test-due"], &["drug-test-result"]),
        ("rec-10-patient-view-POS-Cocaine", &["drug-test-result"], &[]),
        ("rec-10-patient-view-end-of-life-med-exclusion", &[], &["drug-test-due", "drug-test-result"]),
        ("rec-10-patient-view-illicit-drugs", &["drug-test-result"], &[]),
        ("rec-10-patient-view-no-screenings", &["drug-test-due"], &["drug-test-result"]),
        ("rec-11-benzo-trigger-with-opioid", &["concurrent-benzodiazepine"], &[]),
        ("rec-11-benzo-trigger-without-opioid", &[], &["concurrent-benzodiazepine"]),
        ("rec-11-opioid-trigger-with-benzo", &["concurrent-benzodiazepine"], &[]),
        ("rec-11-opioid-trigger-without-benzo", &[], &["concurrent-benzodiazepine"]),
    ];
    let mut report = Vec::new();
    for (name, wanted, unwanted) in expectations {
        let request = example(name);
        let path = format!("/cds-services/{}", service_for(&request));
        let (status, response) = send(&state, "POST", &path, Some(request.to_string()), None).await;
        assert_eq!(status, StatusCode::OK, "{name}: {response}");
        assert_well_formed(name, &response);
        let found = kinds(&response);
        report.push(format!("{name}: {found:?}"));
        for kind in *wanted {
            assert!(found.iter().any(|k| k == kind), "{name}: expected a {kind} card, got {found:?}");
        }
        for kind in *unwanted {
            assert!(!found.iter().any(|k| k == kind), "{name}: unexpected {kind} card in {found:?}");
        }
    }
    println!("{}", report.join("\n"));
    // Every example file is covered by the table.
    let files = std::fs::read_dir(examples_dir())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("request-example-"));
    assert_eq!(files.count(), expectations.len());
}

#[tokio::test]
async fn discovery_lists_the_three_services_with_their_prefetch() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_on_2023_05_01(dir.path(), WebSettings::default()).await;
    let (status, body) = send(&state, "GET", "/cds-services", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let services = body["services"].as_array().unwrap();
    let hooks: Vec<(&str, &str)> =
        services.iter().map(|s| (s["id"].as_str().unwrap(), s["hook"].as_str().unwrap())).collect();
    assert_eq!(
        hooks,
        [
            ("opioid-refill-order-select", "order-select"),
            ("opioid-refill-order-sign", "order-sign"),
            ("opioid-refill-patient-view", "patient-view")
        ]
    );
    for service in services {
        assert!(service["description"].as_str().is_some());
        assert_eq!(service["prefetch"]["patient"], "Patient/{{context.patientId}}");
    }
}

#[tokio::test]
async fn bad_requests_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_on_2023_05_01(dir.path(), WebSettings::default()).await;
    let sign = "/cds-services/opioid-refill-order-sign";
    let (status, body) = send(&state, "POST", sign, Some("{\"hook\": ".into()), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().starts_with("body: not valid JSON"), "{body}");

    let valid = example("rec-10-order-sign-no-screenings");
    let cases: Vec<(&str, Box<dyn Fn(&mut Value)>)> = vec![
        (
            "context.patientId",
            Box::new(|r: &mut Value| r["context"].as_object_mut().unwrap().remove("patientId").map(drop).unwrap()),
        ),
        ("hookInstance", Box::new(|r: &mut Value| r["hookInstance"] = json!(7))),
        ("hook", Box::new(|r: &mut Value| r["hook"] = json!("patient-view"))),
        ("context.draftOrders", Box::new(|r: &mut Value| r["context"]["draftOrders"] = json!([]))),
        ("prefetch", Box::new(|r: &mut Value| r["prefetch"] = json!("all of it"))),
        // A FHIR problem names the resource and the field.
        (
            "resourceType",
            Box::new(|r: &mut Value| {
                r["context"]["draftOrders"]["entry"][0]["resource"]["resourceType"] = json!("MedicationRequestt")
            }),
        ),
    ];
    for (field, breaks) in cases {
        let mut request = valid.clone();
        breaks(&mut request);
        let (status, body) = send(&state, "POST", sign, Some(request.to_string()), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {body}");
        assert!(body["error"].as_str().unwrap().contains(field), "{field}: {body}");
    }
    let (status, _) = send(&state, "POST", "/cds-services/no-such-service", Some(valid.to_string()), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Larger than the API's body limit: refused before it is read.
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(300 * 1024));
    let (status, _) = send(&state, "POST", sign, Some(huge), None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn without_prefetch_a_patient_the_clinic_does_not_know_gets_412_never_an_empty_list() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_on_2023_05_01(dir.path(), WebSettings::default()).await;
    let mut request = example("rec-10-order-sign-no-screenings");
    request.as_object_mut().unwrap().remove("prefetch");
    let (status, body) =
        send(&state, "POST", "/cds-services/opioid-refill-order-sign", Some(request.to_string()), None).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    // Our own keys with some left out are unsatisfied too.
    request["prefetch"] = json!({"patient": null});
    let (status, _) =
        send(&state, "POST", "/cds-services/opioid-refill-order-sign", Some(request.to_string()), None).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
}

/// A FHIR server on loopback that answers only the right bearer token: a fentanyl 75 mcg/h patch is
/// the patient's active order.
async fn fhir_server(token: &'static str) -> String {
    use axum::extract::Request as AxumRequest;
    let fentanyl = json!({"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
        "resourceType": "MedicationRequest", "id": "rx-fent", "status": "active", "intent": "order",
        "subject": {"reference": "Patient/fetched-1"}, "authoredOn": "2023-04-01",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197696",
            "display": "72 HR Fentanyl 0.075 MG/HR Transdermal System"}]},
        "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 3, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "patch", "code": "{patch}"}}]}]}}]});
    let router = axum::Router::new().fallback(move |request: AxumRequest| {
        let fentanyl = fentanyl.clone();
        async move {
            let authorised = request.headers().get("authorization").and_then(|v| v.to_str().ok())
                == Some(&format!("Bearer {token}"));
            if !authorised {
                return (StatusCode::UNAUTHORIZED, "no").into_response();
            }
            let path = request.uri().path().to_string();
            if path.starts_with("/fhir/MedicationRequest") {
                axum::Json(fentanyl).into_response()
            } else if path.starts_with("/fhir/Patient/") {
                StatusCode::NOT_FOUND.into_response()
            } else {
                axum::Json(json!({"resourceType": "Bundle", "type": "searchset", "entry": []})).into_response()
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}/fhir")
}

use axum::response::IntoResponse as _;

#[tokio::test]
async fn missing_prefetch_is_fetched_from_the_fhir_server_with_the_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_on_2023_05_01(dir.path(), WebSettings::default()).await;
    let server = fhir_server("secret-token").await;
    let draft = json!({"resourceType": "Bundle", "entry": [{"resource": {
        "resourceType": "MedicationRequest", "id": "draft-1", "status": "draft", "intent": "order",
        "subject": {"reference": "Patient/fetched-1"},
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197696"}]},
        "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 3, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "patch", "code": "{patch}"}}]}]}}]});
    let mut request = json!({"hook": "order-sign", "hookInstance": "d1f8c3a0-0000-4000-8000-000000000001",
        "fhirServer": server, "fhirAuthorization": {"access_token": "secret-token", "token_type": "Bearer",
            "expires_in": 300, "scope": "patient/*.read", "subject": "cds"},
        "context": {"userId": "Practitioner/1", "patientId": "fetched-1", "draftOrders": draft}});
    let path = "/cds-services/opioid-refill-order-sign";
    let (status, body) = send(&state, "POST", path, Some(request.to_string()), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The draft renews the fetched order: one fentanyl 75 (180 MME/day), counted once.
    let high = body["cards"].as_array().unwrap().iter().find(|c| c["source"]["topic"]["code"] == "high-mme");
    let high = high.unwrap_or_else(|| panic!("no high-mme card: {body}"));
    assert!(high["summary"].as_str().unwrap().contains("180 MME"), "{high}");
    // A token the FHIR server refuses: no data, so 412 rather than "no concerns".
    request["fhirAuthorization"]["access_token"] = json!("wrong");
    let (status, _) = send(&state, "POST", path, Some(request.to_string()), None).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
}

#[tokio::test]
async fn feedback_is_stored_and_bad_items_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_on_2023_05_01(dir.path(), WebSettings::default()).await;
    let path = "/cds-services/opioid-refill-order-sign/feedback";
    let feedback = json!({"feedback": [
        {"card": "card-1", "outcome": "accepted", "acceptedSuggestions": [{"id": "s-1"}],
         "outcomeTimestamp": "2023-05-01T15:00:00Z"},
        {"card": "card-2", "outcome": "overridden", "outcomeTimestamp": "2023-05-01T15:01:00Z",
         "overrideReason": {"reason": {"code": "snooze-1-month", "system":
            "http://fhir.org/guides/cdc/opioid-cds/CodeSystem/opioidcds-overrideReasons", "display": "Snooze 1 month"},
            "userComment": "reviewed last week"}}]});
    let (status, body) = send(&state, "POST", path, Some(feedback.to_string()), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first = state.store.cds_feedback_for_card("card-1").await.unwrap();
    assert_eq!(first[0].feedback.accepted_suggestions, ["s-1"]);
    assert_eq!(first[0].feedback.service_id, "opioid-refill-order-sign");
    let second = state.store.cds_feedback_for_card("card-2").await.unwrap();
    assert_eq!(second[0].feedback.override_reason_code.as_deref(), Some("snooze-1-month"));
    assert_eq!(support::count_events(&state.store, "cds.feedback").await, 1);

    let bad =
        json!({"feedback": [{"card": "card-3", "outcome": "ignored", "outcomeTimestamp": "2023-05-01T15:00:00Z"}]});
    let (status, body) = send(&state, "POST", path, Some(bad.to_string()), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("feedback[0].outcome"), "{body}");
    let bad = json!({"feedback": [{"card": "card-3", "outcome": "accepted"}]});
    let (status, body) = send(&state, "POST", path, Some(bad.to_string()), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("feedback[0].outcomeTimestamp"), "{body}");
    assert!(state.store.cds_feedback_for_card("card-3").await.unwrap().is_empty());
}
