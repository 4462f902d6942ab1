//! The CDS Hooks service: `GET /cds-services` (discovery), `POST /cds-services/{id}` for
//! `opioid-refill-order-select`, `opioid-refill-order-sign` and `opioid-refill-patient-view`, and
//! `POST /cds-services/{id}/feedback`.
//!
//! The request's FHIR goes through `refill-fhir` (the import's mapping: prefetch recognised by
//! resourceType whatever the keys, the draft order counted once), the advice comes from
//! `refill_app::cds` (the queue's decision for an enrolled patient), and this module writes it as
//! cards. Each call is checked in order: the service exists (404), the EHR's JWT when the clinic
//! requires it (401, reason logged), the per-client rate (429), the JSON and its required fields (400
//! naming the field), the data (412 with the reason logged when a patient the clinic does not know has
//! no prefetch and no FHIR server to ask: an empty card list would read as "no concerns").

pub mod jwt;

mod fetch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use refill_app::cds::{self as advice, Advice, Card, Hook, HookCall, Suggestion};
use refill_fhir::{FhirPatientRecord, MedicationClass};
use refill_rules::PatientId;
use refill_store::Actor;
use refill_store::cds::NewCdsFeedback;
use serde_json::{Value, json};

use crate::AppState;

/// The CDC 2022 guideline every card cites.
pub const GUIDELINE_LABEL: &str = "2022 CDC Clinical Practice Guideline for Prescribing Opioids for Pain";
pub const GUIDELINE_URL: &str = "https://www.cdc.gov/mmwr/volumes/71/rr/rr7103a1.htm";
/// The CDC opioid CDS override reasons code system.
pub const OVERRIDE_SYSTEM: &str = "http://fhir.org/guides/cdc/opioid-cds/CodeSystem/opioidcds-overrideReasons";

/// How the service trusts its callers; assembled by the binary from `[cds]`.
#[derive(Debug, Clone)]
pub struct CdsSettings {
    /// Require a valid EHR JWT on every call (on in production).
    pub require_jwt: bool,
    pub issuers: Vec<jwt::TrustedIssuer>,
    /// The service's public base URL (`https://refill.example`): a token's `aud` must be this plus the
    /// path called. Without it, `https://` plus the request's Host header.
    pub audience_base: Option<String>,
    /// Calls allowed per client address per minute.
    pub requests_per_minute: u32,
    /// How long a fetch from the EHR's FHIR server may take.
    pub fetch_timeout: std::time::Duration,
}

impl Default for CdsSettings {
    fn default() -> Self {
        CdsSettings {
            require_jwt: false,
            issuers: Vec::new(),
            audience_base: None,
            requests_per_minute: 600,
            fetch_timeout: std::time::Duration::from_secs(5),
        }
    }
}

/// Per-process state: seen token ids and the rate windows.
#[derive(Debug, Default)]
pub struct CdsRuntime {
    replay: jwt::ReplayGuard,
    rate: Mutex<HashMap<String, (i64, u32)>>,
}

impl CdsRuntime {
    /// Count a call from `client` in the current minute; `false` when over the limit.
    fn admit(&self, client: &str, minute: i64, limit: u32) -> bool {
        let mut windows = self.rate.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() > 10_000 {
            windows.retain(|_, (at, _)| *at == minute);
        }
        let window = windows.entry(client.to_string()).or_insert((minute, 0));
        if window.0 != minute {
            *window = (minute, 0);
        }
        window.1 += 1;
        window.1 <= limit
    }
}

/// One service of discovery.
struct Service {
    id: &'static str,
    hook: Hook,
    title: &'static str,
    description: &'static str,
}

const SERVICES: [Service; 3] = [
    Service {
        id: "opioid-refill-order-select",
        hook: Hook::OrderSelect,
        title: "Opioid and benzodiazepine check on order selection",
        description: "Concurrent opioid and benzodiazepine prescribing and the daily MME of the selected opioid \
                      order; for patients of the refill clinic, the clinic's refill decision.",
    },
    Service {
        id: "opioid-refill-order-sign",
        hook: Hook::OrderSign,
        title: "Opioid refill protocol check on order signing",
        description: "Total daily MME and thresholds, naloxone, concurrent benzodiazepine, PDMP review and urine \
                      drug test due or unexpected; for patients of the refill clinic, the decision the clinic's \
                      queue shows for the same facts.",
    },
    Service {
        id: "opioid-refill-patient-view",
        hook: Hook::PatientView,
        title: "Opioid therapy monitoring on chart open",
        description: "Monitoring due (urine drug test, PDMP review, naloxone), unexpected drug test results, a \
                      taper in progress and open physician reviews at the refill clinic.",
    },
];

/// Prefetch templates every service declares (keys are ours; any EHR keys are read the same way).
const PREFETCH: [(&str, &str); 7] = [
    ("patient", "Patient/{{context.patientId}}"),
    ("medications", "MedicationRequest?patient={{context.patientId}}&status=active"),
    ("dispenses", "MedicationDispense?patient={{context.patientId}}"),
    ("observations", "Observation?patient={{context.patientId}}&category=laboratory"),
    ("procedures", "Procedure?patient={{context.patientId}}"),
    ("conditions", "Condition?patient={{context.patientId}}"),
    ("consents", "Consent?patient={{context.patientId}}&status=active"),
];

/// A refusal as CDS Hooks clients read it: a status and a JSON body naming the problem.
struct Refusal {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "error": self.message, "status": self.status.as_u16() }))).into_response()
    }
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal { status, message: message.into() }
}

fn bad_request(field: &str, message: impl std::fmt::Display) -> Refusal {
    refuse(StatusCode::BAD_REQUEST, format!("{field}: {message}"))
}

/// Who called: the verified issuer, `unverified` when the clinic does not require tokens.
struct Caller {
    issuer: String,
}

impl Caller {
    fn actor(&self) -> Actor {
        Actor::new(format!("ehr:{}", self.issuer), "ehr")
    }
}

/// The checks every call passes first: the JWT (when required) and the rate.
fn admit(
    state: &AppState,
    headers: &HeaderMap,
    connect: Option<&ConnectInfo<SocketAddr>>,
    path: &str,
) -> Result<Caller, Refusal> {
    let settings = &state.settings.cds;
    let now = state.clock.now().timestamp();
    let client = crate::pages::login::client_address(&state.settings, connect, headers);
    let caller = if settings.require_jwt {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(token) = token else {
            tracing::warn!(path, "cds: refused, no bearer token");
            return Err(refuse(StatusCode::UNAUTHORIZED, "a valid bearer JWT from a trusted EHR is required"));
        };
        let audience = audience(settings, headers, path);
        let verified = jwt::verify(token, &settings.issuers, &audience, now).map_err(|why| {
            tracing::warn!(path, why, "cds: refused token");
            refuse(StatusCode::UNAUTHORIZED, "a valid bearer JWT from a trusted EHR is required")
        })?;
        if !state.cds.replay.first_use(&verified, now) {
            tracing::warn!(path, "cds: refused token, jti already used");
            return Err(refuse(StatusCode::UNAUTHORIZED, "a valid bearer JWT from a trusted EHR is required"));
        }
        Caller { issuer: verified.iss }
    } else {
        Caller { issuer: "unverified".into() }
    };
    if !state.cds.admit(&client, now.div_euclid(60), settings.requests_per_minute) {
        return Err(refuse(StatusCode::TOO_MANY_REQUESTS, "too many calls; wait a minute and try again"));
    }
    Ok(caller)
}

/// The `aud` a token must carry for a call to `path`.
fn audience(settings: &CdsSettings, headers: &HeaderMap, path: &str) -> String {
    match &settings.audience_base {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => {
            let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
            format!("https://{host}{path}")
        }
    }
}

/// `GET /cds-services`.
pub async fn discovery(
    State(state): State<AppState>,
    headers: HeaderMap,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Response {
    if let Err(refused) = admit(&state, &headers, connect.as_ref().map(|c| &c.0), "/cds-services") {
        return refused.into_response();
    }
    axum::Json(discovery_document()).into_response()
}

/// The discovery document.
pub fn discovery_document() -> Value {
    let prefetch: serde_json::Map<String, Value> =
        PREFETCH.iter().map(|(key, query)| ((*key).to_string(), Value::from(*query))).collect();
    let services: Vec<Value> = SERVICES
        .iter()
        .map(|service| {
            json!({
                "hook": service.hook.as_str(),
                "id": service.id,
                "title": service.title,
                "description": service.description,
                "prefetch": prefetch,
                "usageRequirements": "Patients the refill clinic has enrolled are matched by the EHR patient id \
                                      (the import's external id).",
            })
        })
        .collect();
    json!({ "services": services })
}

/// `POST /cds-services/{id}`.
pub async fn call(
    State(state): State<AppState>,
    Path(service_id): Path<String>,
    headers: HeaderMap,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    let Some(service) = SERVICES.iter().find(|s| s.id == service_id) else {
        return refuse(StatusCode::NOT_FOUND, format!("no CDS service {service_id:?}")).into_response();
    };
    let path = format!("/cds-services/{}", service.id);
    let caller = match admit(&state, &headers, connect.as_ref().map(|c| &c.0), &path) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    let mut request: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(error) => return bad_request("body", format!("not valid JSON ({error})")).into_response(),
    };
    if let Err(refused) = check_request(&request, service.hook) {
        return refused.into_response();
    }
    let patient_id = patient_id(&request);
    let enrolled = match state.store.patient_by_external_id(&patient_id).await {
        Ok(found) => found.is_some(),
        Err(error) => return crate::WebError::from(error).into_response(),
    };
    if !enrolled && prefetch_missing(&request) {
        match fetch::fill_prefetch(&request, state.settings.cds.fetch_timeout).await {
            Ok(Some(prefetch)) => request["prefetch"] = prefetch,
            Ok(None) => {
                tracing::warn!(service = service.id, "cds: 412, prefetch missing and no fhirServer to fetch from");
                return refuse(
                    StatusCode::PRECONDITION_FAILED,
                    "prefetch is missing and the request gives no fhirServer with fhirAuthorization to fetch from",
                )
                .into_response();
            }
            Err(why) => {
                tracing::warn!(service = service.id, why, "cds: 412, fetching from fhirServer failed");
                return refuse(StatusCode::PRECONDITION_FAILED, format!("fetching from fhirServer failed: {why}"))
                    .into_response();
            }
        }
    }
    let records = match refill_fhir::parse_cds_hooks_request(&request) {
        Ok(records) => records,
        Err(problems) => {
            let lines: Vec<String> = problems.iter().take(20).map(ToString::to_string).collect();
            return refuse(StatusCode::BAD_REQUEST, lines.join("; ")).into_response();
        }
    };
    let record =
        records.into_iter().find(|r| r.fhir_id == patient_id).unwrap_or_else(|| FhirPatientRecord::new(patient_id));
    let today = state.today();
    let hook_call = hook_call(service.hook, &record, today, state.policy.refill.uds_result_lookback_days);
    match advise(&state, &hook_call, today, &caller).await {
        Ok(advice) => axum::Json(cards_json(service.id, &advice)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Decide (reads only), then record the view of an enrolled patient's record with the other views.
async fn advise(
    state: &AppState,
    call: &HookCall,
    today: chrono::NaiveDate,
    caller: &Caller,
) -> Result<Advice, crate::WebError> {
    let app = state.app();
    let clinic = state.store.clinic_facts().await?;
    let advice = advice::advise(&app, &clinic, call, today, &caller.actor())
        .await
        .map_err(|error| crate::pages::queue::app_error(error, &HashMap::new()))?;
    if let Some(event) = &advice.view_event {
        state.view_audit.record(event.clone()).await?;
    }
    Ok(advice)
}

/// The typed call: draft orders split by class, and what the EHR sent as facts.
pub fn hook_call(hook: Hook, record: &FhirPatientRecord, today: chrono::NaiveDate, annual_test_days: i64) -> HookCall {
    let drafts: Vec<_> = record.draft_orders().collect();
    let draft_orders = drafts
        .iter()
        .filter(|request| request.class == MedicationClass::Opioid)
        .map(|request| request.order.clone())
        .filter(|order| order.purpose == refill_rules::OrderPurpose::Pain)
        .collect();
    let draft_other = record
        .other_medication_sources
        .iter()
        .zip(&record.other_medications)
        .filter(|(source, medication)| {
            drafts.iter().any(|draft| draft.id == **source && draft.order.label() == medication.text)
        })
        .map(|(_, medication)| medication.clone())
        .collect();
    // The drafts join the regimen the way they join an enrolled patient's (`refill_app::cds`): a
    // renewal of an active order replaces it rather than doubling the dose.
    let ehr_facts = record.patient_facts(PatientId(0), today, annual_test_days);
    HookCall { hook, ehr_patient_id: record.fhir_id.clone(), draft_orders, draft_other, ehr_facts }
}

fn patient_id(request: &Value) -> String {
    let id = request["context"]["patientId"].as_str().unwrap_or("");
    id.strip_prefix("Patient/").unwrap_or(id).to_string()
}

/// Required fields of the request, each refusal naming the field.
fn check_request(request: &Value, hook: Hook) -> Result<(), Refusal> {
    if !request.is_object() {
        return Err(bad_request("body", "expected a JSON object"));
    }
    let string = |value: &Value, field: &str| match value {
        Value::String(text) if !text.is_empty() => Ok(()),
        Value::Null => Err(bad_request(field, "missing")),
        _ => Err(bad_request(field, "expected a non-empty string")),
    };
    string(&request["hook"], "hook")?;
    if request["hook"].as_str() != Some(hook.as_str()) {
        return Err(bad_request("hook", format!("this service answers {}", hook.as_str())));
    }
    string(&request["hookInstance"], "hookInstance")?;
    if !request["context"].is_object() {
        return Err(bad_request("context", "missing or not an object"));
    }
    string(&request["context"]["patientId"], "context.patientId")?;
    string(&request["context"]["userId"], "context.userId")?;
    if matches!(hook, Hook::OrderSelect | Hook::OrderSign) {
        let drafts = &request["context"]["draftOrders"];
        if drafts["resourceType"].as_str() != Some("Bundle") {
            return Err(bad_request("context.draftOrders", "missing or not a FHIR Bundle"));
        }
    }
    if hook == Hook::OrderSelect && !request["context"]["selections"].is_array() {
        return Err(bad_request("context.selections", "missing or not an array"));
    }
    match &request["prefetch"] {
        Value::Null | Value::Object(_) => {}
        _ => return Err(bad_request("prefetch", "expected an object")),
    }
    if !request["fhirAuthorization"].is_null() && !request["fhirServer"].is_string() {
        return Err(bad_request("fhirServer", "required with fhirAuthorization"));
    }
    Ok(())
}

/// No prefetch at all, or our own keys used with some left out (unsatisfied keys are omitted; "no
/// data" is a key with `null`). Prefetch under the EHR's own keys is read as given.
fn prefetch_missing(request: &Value) -> bool {
    let Some(prefetch) = request["prefetch"].as_object().filter(|p| !p.is_empty()) else { return true };
    let ours = PREFETCH.iter().filter(|(key, _)| prefetch.contains_key(*key)).count();
    ours > 0 && ours < PREFETCH.len()
}

/// The CDS Hooks response for the advice.
pub fn cards_json(service_id: &str, advice: &Advice) -> Value {
    let cards: Vec<Value> = advice.cards.iter().map(|card| card_json(service_id, card)).collect();
    json!({ "cards": cards })
}

fn card_json(service_id: &str, card: &Card) -> Value {
    let reasons = serde_json::to_string(&card.reasons).unwrap_or_default();
    let lines = crate::wording::reasons(Some(&reasons), false);
    let mut detail = card.detail.clone();
    if !lines.is_empty() {
        detail.push_str("\n\n");
        for line in &lines {
            detail.push_str("- ");
            detail.push_str(&line.text);
            detail.push('\n');
        }
    }
    let mut summary = card.summary.clone();
    if summary.chars().count() > advice::SUMMARY_MAX_CHARS {
        summary = summary.chars().take(advice::SUMMARY_MAX_CHARS - 1).collect::<String>() + "…";
    }
    let suggestions: Vec<Value> = card.suggestions.iter().map(|s| suggestion_json(*s)).collect();
    let mut value = json!({
        "uuid": uuid::Uuid::new_v4().to_string(),
        "summary": summary,
        "detail": detail,
        "indicator": card.indicator.as_str(),
        "source": {
            "label": format!("{GUIDELINE_LABEL} ({})", card.kind.guideline()),
            "url": GUIDELINE_URL,
            "topic": {
                "system": "https://refill-clinic.example/cds/card-kind",
                "code": card.kind.as_str(),
                "display": card.kind.guideline(),
            },
        },
        "overrideReasons": override_reasons(),
        // CDS Hooks extensions: which service and, for the tests and the EHR's logs, the decision the
        // card rests on, reason codes masked exactly as the words are.
        "extension": {
            "refill-clinic": {
                "service": service_id,
                "outcome": card.outcome.map(|o| o.as_str()),
                "reasons": lines.iter().map(|line| line.code.as_str()).collect::<Vec<_>>(),
            },
        },
    });
    if !suggestions.is_empty() {
        value["suggestions"] = Value::Array(suggestions);
        value["selectionBehavior"] = Value::from("any");
    }
    value
}

fn override_reasons() -> Value {
    let reasons = [
        ("snooze-1-month", "Snooze 1 month"),
        ("snooze-3-months", "Snooze 3 months"),
        ("comment", "Comment"),
        ("update-order", "Update order"),
        ("decline-suggestion", "Decline suggestion"),
        ("decline-suggestion-with-comment", "Decline suggestion with comment"),
    ];
    Value::Array(
        reasons
            .iter()
            .map(|(code, display)| json!({"system": OVERRIDE_SYSTEM, "code": code, "display": display}))
            .collect(),
    )
}

/// A suggestion with its create action (a draft proposal the prescriber completes and signs).
fn suggestion_json(suggestion: Suggestion) -> Value {
    match suggestion {
        Suggestion::OrderNaloxone => json!({
            "label": "Order naloxone nasal spray",
            "uuid": uuid::Uuid::new_v4().to_string(),
            "isRecommended": true,
            "actions": [{
                "type": "create",
                "description": "Create a naloxone prescription proposal",
                "resource": {
                    "resourceType": "MedicationRequest",
                    "status": "draft",
                    "intent": "proposal",
                    "medicationCodeableConcept": {
                        "coding": [{
                            "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                            "code": "1725065",
                            "display": "naloxone hydrochloride 4 MG/ACTUAT Nasal Spray",
                        }],
                        "text": "naloxone hydrochloride 4 MG/ACTUAT Nasal Spray",
                    },
                },
            }],
        }),
        Suggestion::OrderDrugTest => json!({
            "label": "Order urine drug screening",
            "uuid": uuid::Uuid::new_v4().to_string(),
            "isRecommended": true,
            "actions": [{
                "type": "create",
                "description": "Create a urine drug screening order proposal",
                "resource": {
                    "resourceType": "ServiceRequest",
                    "status": "draft",
                    "intent": "proposal",
                    "code": {
                        "coding": [{
                            "system": "http://snomed.info/sct",
                            "code": "310627008",
                            "display": "Urine drug screening (procedure)",
                        }],
                    },
                },
            }],
        }),
    }
}

/// `POST /cds-services/{id}/feedback`: every item stored as received, in one transaction.
pub async fn feedback(
    State(state): State<AppState>,
    Path(service_id): Path<String>,
    headers: HeaderMap,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    let Some(service) = SERVICES.iter().find(|s| s.id == service_id) else {
        return refuse(StatusCode::NOT_FOUND, format!("no CDS service {service_id:?}")).into_response();
    };
    let caller = match admit(
        &state,
        &headers,
        connect.as_ref().map(|c| &c.0),
        &format!("/cds-services/{}/feedback", service.id),
    ) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(error) => return bad_request("body", format!("not valid JSON ({error})")).into_response(),
    };
    let items = match parse_feedback(&value, service.id, &caller.issuer) {
        Ok(items) => items,
        Err(refused) => return refused.into_response(),
    };
    let stored = async {
        let mut tx = state.store.begin().await?;
        state.store.record_cds_feedback(&mut tx, &items, &caller.actor()).await?;
        tx.commit().await
    };
    match stored.await {
        Ok(()) => axum::Json(json!({})).into_response(),
        Err(error) => crate::WebError::from(error).into_response(),
    }
}

fn parse_feedback(value: &Value, service_id: &str, issuer: &str) -> Result<Vec<NewCdsFeedback>, Refusal> {
    let Some(list) = value["feedback"].as_array() else {
        return Err(bad_request("feedback", "missing or not an array"));
    };
    let text = |value: &Value, field: String| -> Result<Option<String>, Refusal> {
        match value {
            Value::Null => Ok(None),
            Value::String(text) if text.chars().count() <= 2000 => Ok(Some(text.clone())),
            Value::String(_) => Err(bad_request(&field, "longer than 2000 characters")),
            _ => Err(bad_request(&field, "expected a string")),
        }
    };
    let mut items = Vec::with_capacity(list.len());
    for (at, item) in list.iter().enumerate() {
        let field = |name: &str| format!("feedback[{at}].{name}");
        let card = text(&item["card"], field("card"))?.ok_or_else(|| bad_request(&field("card"), "missing"))?;
        let outcome =
            text(&item["outcome"], field("outcome"))?.ok_or_else(|| bad_request(&field("outcome"), "missing"))?;
        if outcome != "accepted" && outcome != "overridden" {
            return Err(bad_request(&field("outcome"), "expected accepted or overridden"));
        }
        let outcome_at = text(&item["outcomeTimestamp"], field("outcomeTimestamp"))?
            .ok_or_else(|| bad_request(&field("outcomeTimestamp"), "missing"))?;
        if chrono::DateTime::parse_from_rfc3339(&outcome_at).is_err() {
            return Err(bad_request(&field("outcomeTimestamp"), "expected an ISO 8601 date and time"));
        }
        let accepted_suggestions = match &item["acceptedSuggestions"] {
            Value::Null => Vec::new(),
            Value::Array(list) => list
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    s["id"]
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad_request(&field(&format!("acceptedSuggestions[{i}].id")), "missing"))
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(bad_request(&field("acceptedSuggestions"), "expected an array")),
        };
        let reason = &item["overrideReason"]["reason"];
        items.push(NewCdsFeedback {
            service_id: service_id.to_string(),
            card_uuid: card,
            outcome,
            accepted_suggestions,
            override_reason_code: text(&reason["code"], field("overrideReason.reason.code"))?,
            override_reason_system: text(&reason["system"], field("overrideReason.reason.system"))?,
            override_reason_display: text(&reason["display"], field("overrideReason.reason.display"))?,
            user_comment: text(&item["overrideReason"]["userComment"], field("overrideReason.userComment"))?,
            outcome_at,
            received_from: issuer.to_string(),
        });
    }
    Ok(items)
}
