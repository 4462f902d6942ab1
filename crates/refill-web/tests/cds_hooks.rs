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

/// What breaks a valid request.
type Breaks = Box<dyn Fn(&mut Value)>;

#[tokio::test]
async fn bad_requests_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_on_2023_05_01(dir.path(), WebSettings::default()).await;
    let sign = "/cds-services/opioid-refill-order-sign";
    let (status, body) = send(&state, "POST", sign, Some("{\"hook\": ".into()), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().starts_with("body: not valid JSON"), "{body}");

    let valid = example("rec-10-order-sign-no-screenings");
    let cases: Vec<(&str, Breaks)> = vec![
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

/// An EHR's signing key (ES384) and its JWKS.
struct Ehr {
    key: ring::signature::EcdsaKeyPair,
    jwks: String,
}

impl Ehr {
    fn new() -> Ehr {
        use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let point = key.public_key().as_ref();
        let b64 = |bytes: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-384", "kid": "ehr-key-1", "use": "sig",
            "x": b64(&point[1..49]), "y": b64(&point[49..97])}]})
        .to_string();
        Ehr { key, jwks }
    }

    fn token(&self, header: Value, claims: Value) -> String {
        let b64 = |bytes: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
        let message = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let signature = self.key.sign(&ring::rand::SystemRandom::new(), message.as_bytes()).unwrap();
        format!("{message}.{}", b64(signature.as_ref()))
    }
}

#[tokio::test]
async fn with_jwt_required_only_a_trusted_ehrs_fresh_token_for_this_service_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let ehr = Ehr::new();
    let issuer = refill_web::cds::jwt::TrustedIssuer {
        iss: "https://ehr.example".into(),
        keys: refill_web::cds::jwt::parse_jwks(&ehr.jwks).unwrap(),
    };
    let settings = WebSettings {
        cds: refill_web::cds::CdsSettings {
            require_jwt: true,
            issuers: vec![issuer],
            audience_base: Some("https://cds.test".into()),
            ..Default::default()
        },
        ..WebSettings::default()
    };
    let state = state_on_2023_05_01(dir.path(), settings).await;
    let now = Utc.with_ymd_and_hms(2023, 5, 1, 15, 0, 0).unwrap().timestamp();
    let path = "/cds-services/opioid-refill-order-sign";
    let header = json!({"alg": "ES384", "typ": "JWT", "kid": "ehr-key-1"});
    let claims = |jti: &str| {
        json!({"iss": "https://ehr.example", "aud": format!("https://cds.test{path}"), "exp": now + 300,
               "iat": now, "jti": jti})
    };
    let body = example("rec-10-order-sign-no-screenings").to_string();
    let post = |token: Option<String>| {
        let state = state.clone();
        let body = body.clone();
        async move { send(&state, "POST", path, Some(body), token.as_deref()).await.0 }
    };
    assert_eq!(post(None).await, StatusCode::UNAUTHORIZED);
    let good = ehr.token(header.clone(), claims("jti-1"));
    assert_eq!(post(Some(good.clone())).await, StatusCode::OK);
    // The same token again: a replay.
    assert_eq!(post(Some(good)).await, StatusCode::UNAUTHORIZED);
    // Another service's audience, an expired token, an unknown issuer, a missing jti, a bad signature.
    let mut wrong_aud = claims("jti-2");
    wrong_aud["aud"] = json!("https://cds.test/cds-services/opioid-refill-patient-view");
    assert_eq!(post(Some(ehr.token(header.clone(), wrong_aud))).await, StatusCode::UNAUTHORIZED);
    let mut expired = claims("jti-3");
    expired["exp"] = json!(now - 3600);
    assert_eq!(post(Some(ehr.token(header.clone(), expired))).await, StatusCode::UNAUTHORIZED);
    let mut stranger = claims("jti-4");
    stranger["iss"] = json!("https://other.example");
    assert_eq!(post(Some(ehr.token(header.clone(), stranger))).await, StatusCode::UNAUTHORIZED);
    let mut no_jti = claims("x");
    no_jti.as_object_mut().unwrap().remove("jti");
    assert_eq!(post(Some(ehr.token(header.clone(), no_jti))).await, StatusCode::UNAUTHORIZED);
    let other_key = Ehr::new();
    assert_eq!(post(Some(other_key.token(header.clone(), claims("jti-5")))).await, StatusCode::UNAUTHORIZED);
    // `alg: none` with no signature.
    let b64 = |text: String| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, text);
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT", "kid": "ehr-key-1"}).to_string()),
        b64(claims("jti-6").to_string())
    );
    assert_eq!(post(Some(unsigned)).await, StatusCode::UNAUTHORIZED);
    // Discovery is behind the token too.
    assert_eq!(send(&state, "GET", "/cds-services", None, None).await.0, StatusCode::UNAUTHORIZED);
    let discovery = json!({"iss": "https://ehr.example", "aud": "https://cds.test/cds-services", "exp": now + 60,
                           "iat": now, "jti": "jti-7"});
    let token = ehr.token(header, discovery);
    assert_eq!(send(&state, "GET", "/cds-services", None, Some(&token)).await.0, StatusCode::OK);
}

/// A draft order for the enrolled patient: oxycodone 5 mg, one tablet four times a day, 30 days.
fn oxycodone_draft(patient: &str) -> Value {
    json!({"resourceType": "MedicationRequest", "id": "draft-oxy", "status": "draft", "intent": "order",
        "subject": {"reference": format!("Patient/{patient}")}, "authoredOn": "2023-05-01",
        "requester": {"reference": "Practitioner/dr-a"},
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
            "code": "1049621", "display": "oxycodone hydrochloride 5 MG Oral Tablet"}]},
        "dosageInstruction": [{"timing": {"repeat": {"frequency": 4, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet", "code": "TAB"}}]}],
        "dispenseRequest": {"quantity": {"value": 120}, "expectedSupplyDuration": {"value": 30, "unit": "days", "code": "d"}}})
}

#[tokio::test]
async fn the_card_and_the_queue_show_the_same_decision_for_an_enrolled_patient() {
    use chrono::Duration;
    use refill_rules::{PrescriberId, UdsAnalyteResult, UdsKind, UdsResult};
    use refill_store::{Actor, PatientDetails};
    let dir = tempfile::tempdir().unwrap();
    let state = state_on_2023_05_01(dir.path(), WebSettings::default()).await;
    let store = state.store.clone();
    let today = state.today();
    let system = Actor::system();
    let mut tx = store.begin().await.unwrap();
    let mut details = PatientDetails::new("enrolled-1", "Noor", "Hale");
    details.birth_date = Some(today - Duration::days(50 * 365));
    details.prescriber_of_record = Some(PrescriberId("dr-a".into()));
    let patient = tx.insert_patient(&details, &system).await.unwrap();
    // The regimen of record is the same order the EHR is renewing, through the same FHIR mapping.
    let order = refill_fhir::parse_medication_request(&oxycodone_draft("enrolled-1")).unwrap().order;
    tx.replace_regimen(patient, std::slice::from_ref(&order)).await.unwrap();
    let fill =
        refill_rules::Fill { filled_on: today - Duration::days(24), days_supply: 30, order_id: None, quantity: None };
    tx.insert_fill(patient, &fill, None).await.unwrap();
    tx.commit().await.unwrap();

    let request = json!({"hook": "order-sign", "hookInstance": "a0000000-0000-4000-8000-000000000001",
        "context": {"userId": "Practitioner/dr-a", "patientId": "enrolled-1",
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": oxycodone_draft("enrolled-1")}]}}});
    let mut outcomes = Vec::new();
    for step in ["as recorded", "after a cocaine-positive drug test"] {
        if step != "as recorded" {
            let mut tx = store.begin().await.unwrap();
            let result = UdsResult {
                collected_on: today - Duration::days(3),
                kind: UdsKind::Scheduled,
                confirmatory: true,
                analytes: vec![
                    UdsAnalyteResult { assay: "lcms".into(), analyte: "oxycodone".into(), detected: true },
                    UdsAnalyteResult { assay: "lcms".into(), analyte: "benzoylecgonine".into(), detected: true },
                ],
                physician_reviewed_on: None,
                confidentiality: Default::default(),
                specimen_validity: Default::default(),
            };
            tx.insert_uds_result(patient, &result, None).await.unwrap();
            tx.commit().await.unwrap();
        }
        // The queue: the daily run's decide-and-record.
        let mut tx = store.begin().await.unwrap();
        let clinic = store.clinic_facts().await.unwrap();
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
        .unwrap();
        tx.commit().await.unwrap();
        let queue = store.decisions_for_patient(patient, 1).await.unwrap().remove(0).decision;
        // The EHR's card, for the same facts.
        let (status, body) =
            send(&state, "POST", "/cds-services/opioid-refill-order-sign", Some(request.to_string()), None).await;
        assert_eq!(status, StatusCode::OK, "{step}: {body}");
        assert_well_formed(step, &body);
        let card = body["cards"].as_array().unwrap().iter().find(|c| c["source"]["topic"]["code"] == "refill-decision");
        let card = card.unwrap_or_else(|| panic!("{step}: no refill-decision card in {body}"));
        let ours = &card["extension"]["refill-clinic"];
        assert_eq!(ours["outcome"], queue.outcome.as_str(), "{step}: {card}");
        let codes: Vec<&str> = queue.reasons.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(ours["reasons"], json!(codes), "{step}: {card}");
        outcomes.push(codes.iter().map(|c| c.to_string()).collect::<Vec<_>>());
    }
    // The second step decided on a new reason, and the card followed.
    assert!(!outcomes[0].contains(&"uds_unexpected_result".to_string()), "{outcomes:?}");
    assert!(outcomes[1].contains(&"uds_unexpected_result".to_string()), "{outcomes:?}");
    // Each card is a view of the patient's record: audited.
    assert_eq!(support::count_events(&store, "cds.advise").await, 2);
}

/// A plain HTTP/1.1 POST to a running server (no client library in the tree).
async fn http_post(address: std::net::SocketAddr, path: &str, body: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.push_str(&tail[..size]);
            rest = &tail[size + 2..];
        }
        out
    } else {
        rest.to_string()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn hooks_posted_over_http_to_the_running_server_get_their_cards() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_on_2023_05_01(dir.path(), WebSettings::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(refill_web::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let cases = [
        ("rec-10-order-sign-no-screenings", "drug-test-due"),
        ("rec-11-benzo-trigger-with-opioid", "concurrent-benzodiazepine"),
        ("rec-10-patient-view-POS-Cocaine", "drug-test-result"),
        ("rec-08-on-benzodiazepine", "naloxone"),
    ];
    for (name, kind) in cases {
        let request = example(name);
        let path = format!("/cds-services/{}", service_for(&request));
        let (status, body) = http_post(address, &path, &request.to_string()).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_well_formed(name, &body);
        assert!(kinds(&body).iter().any(|k| k == kind), "{name}: {body}");
        let card = body["cards"].as_array().unwrap().iter().find(|c| c["source"]["topic"]["code"] == kind).unwrap();
        if kind == "naloxone" {
            assert_eq!(card["suggestions"][0]["actions"][0]["resource"]["resourceType"], "MedicationRequest");
        }
        if kind == "drug-test-due" {
            let resource = &card["suggestions"][0]["actions"][0]["resource"];
            assert_eq!(resource["code"]["coding"][0]["code"], "310627008");
        }
    }
    let (status, _) = http_post(address, "/cds-services/opioid-refill-order-sign", "not json").await;
    assert_eq!(status, 400);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
