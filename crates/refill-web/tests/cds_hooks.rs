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
