//! Taper decisions in the exception review through the router (`tower::ServiceExt::oneshot`) on a real
//! SQLite file: the physician previews the planner's schedule (table and chart), signs it with a
//! rationale, the plan is stored and shows on the patient page and the exception closes; a faster preset
//! without a safety attestation is refused in plain words and nothing is stored; the plain decision form
//! no longer signs a taper without its schedule.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use refill_rules::facts::{Confidentiality, DoseQuantity, DoseUnit, MedicationOrder, OrderPurpose};
use refill_rules::{PatientId, ReasonCode};
use refill_store::accounts::Role;
use refill_store::{Actor, PatientDetails, screens};
use refill_web::{AppState, WebSettings, app};
use tower::ServiceExt;

mod support;
use support::{person, sqlite_app, urlencode};

struct Setup {
    _dir: tempfile::TempDir,
    state: AppState,
    patient_id: i64,
    exception_id: i64,
    exception_version: i64,
    cookie: String,
    csrf: String,
}

/// A patient on morphine ER 30 mg three times a day (90 MME/day), escalated today, and a physician.
async fn setup() -> Setup {
    setup_with(MedicationOrder {
        id: "order-1".into(),
        rxcui: None,
        text: Some("morphine sulfate 30 MG Extended Release Oral Tablet".into()),
        dose: Some(DoseQuantity { value: 1.0, unit: DoseUnit::DoseFormUnit }),
        doses_per_day: Some(3.0),
        days_supply: None,
        dispense_quantity: None,
        prescriber: None,
        purpose: OrderPurpose::Pain,
        confidentiality: Confidentiality::Normal,
    })
    .await
}

/// The same with another regimen (escalated the same way when at or above 90 MME/day).
async fn setup_with(order: MedicationOrder) -> Setup {
    let dir = tempfile::tempdir().expect("dir");
    let settings = WebSettings { secure_cookies: false, ..WebSettings::default() };
    let state = sqlite_app(dir.path(), "taper.db", b"taper-test-key-taper-test-key-0123", settings).await;
    let store = state.store.clone();
    let today = state.today();
    let actor = Actor::system();
    let mut tx = store.begin().await.expect("begin");
    let patient = tx.insert_patient(&PatientDetails::new("t-1", "Ines", "Marlow"), &actor).await.expect("patient");
    tx.replace_regimen(patient, &[order]).await.expect("regimen");
    // Filled 24 days ago for 30: the refill window is open, and the rules escalate the 90 MME/day
    // regimen without a physician review (the decision the physician will sign is the rules' own).
    let fill = refill_rules::Fill {
        filled_on: today - chrono::Duration::days(24),
        days_supply: 30,
        order_id: None,
        quantity: None,
    };
    tx.insert_fill(patient, &fill, None).await.expect("fill");
    let clinic = store.clinic_facts().await.expect("clinic");
    let decided = refill_app::decide::decide_and_record(
        &state.app(),
        &mut tx,
        &clinic,
        patient,
        today,
        &actor,
        refill_app::decide::Trigger::Rules,
    )
    .await
    .expect("decide");
    assert!(decided.decision.reasons.iter().any(|r| r.code == ReasonCode::HighMmeReviewOverdue));
    tx.commit().await.expect("commit");
    let PatientId(patient_id) = patient;
    let open = screens::open_exceptions(&store, today, 10).await.expect("exceptions");
    let row = open.iter().find(|row| row.patient_id == patient_id).expect("an open exception for the patient");
    let doc = person(&state, "doc", "Dr Okafor", Role::Physician).await;
    Setup {
        _dir: dir,
        state,
        patient_id,
        exception_id: row.exception_id,
        exception_version: row.version,
        cookie: doc.cookie,
        csrf: doc.csrf,
    }
}

impl Setup {
    async fn send(&self, method: &str, path: &str, form: &[(&str, String)]) -> (StatusCode, String) {
        let mut pairs: Vec<(&str, String)> = form.to_vec();
        pairs.push(("csrf", self.csrf.clone()));
        let body = pairs.iter().map(|(key, value)| format!("{key}={}", urlencode(value))).collect::<Vec<_>>().join("&");
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "localhost")
            .header(header::COOKIE, &self.cookie);
        if method == "POST" {
            builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let request = builder.body(if method == "POST" { Body::from(body) } else { Body::empty() }).expect("request");
        let response = app(self.state.clone()).oneshot(request).await.expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 4 << 20).await.expect("body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// The value of `<input ... name="NAME" value="...">` in a page.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no {name} field")) + marker.len();
    page[start..].split('"').next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_physician_previews_a_taper_schedule_signs_it_and_it_shows_on_the_patient_page() {
    let setup = setup().await;
    let id = setup.exception_id;
    let (status, detail) = setup.send("GET", &format!("/exceptions/{id}"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(detail.contains("id=\"taper-form\"") && detail.contains("cdc_default"), "taper form on the detail page");
    // No taper in force: starting one is offered, pausing or resuming is not.
    assert!(detail.contains("value=\"taper_start\"") && !detail.contains("value=\"taper_pause\""), "what applies");
    assert!(!detail.contains("value=\"taper_resume\""), "options that apply");
    // The MME the rules used, order by order: 30 mg three times a day of morphine at factor 1.
    assert!(detail.contains("id=\"mme-breakdown\""), "the MME computation is on the detail page");
    assert!(detail.contains("morphine 90 mg/day × factor 1") && detail.contains("90 MME/day"), "{detail}");
    let start = (setup.state.today() + chrono::Days::new(7)).to_string();
    let parameters = vec![
        ("decision", "taper_start".to_string()),
        ("version", setup.exception_version.to_string()),
        ("preset", "cdc_default".to_string()),
        ("target_mme", "0".to_string()),
        ("start_on", start.clone()),
    ];
    let (status, preview) = setup.send("POST", &format!("/exceptions/{id}/taper/preview"), &parameters).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert!(preview.contains("id=\"taper-schedule\""), "a schedule table");
    assert!(preview.contains("<svg class=\"chart\""), "a chart");
    assert!(preview.contains(&start), "the first step takes effect on the chosen date");
    assert!(preview.contains("id=\"sign-taper\""), "a sign button");
    // Nothing is stored by a preview.
    assert!(screens::taper_steps(&setup.state.store, setup.patient_id).await.expect("steps").is_empty());

    // Signing without a rationale is refused and stores nothing.
    let mut sign = parameters.clone();
    sign.push(("patient_version", hidden(&preview, "patient_version")));
    let (status, page) = setup.send("POST", &format!("/exceptions/{id}/taper/sign"), &sign).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("A written rationale is required."), "{page}");
    assert!(screens::taper_steps(&setup.state.store, setup.patient_id).await.expect("steps").is_empty());

    sign.push(("rationale", "High dose with little benefit; patient agrees to a slow taper.".to_string()));
    let (status, _) = setup.send("POST", &format!("/exceptions/{id}/taper/sign"), &sign).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let steps = screens::taper_steps(&setup.state.store, setup.patient_id).await.expect("steps");
    assert!(!steps.is_empty(), "the plan is stored");
    assert_eq!(steps[0].starts_on.to_string(), start);
    assert!(steps.windows(2).all(|w| w[1].total_daily_mme <= w[0].total_daily_mme), "never increases");
    let row = screens::exception(&setup.state.store, setup.state.today(), id).await.expect("exception");
    assert_eq!(row.resolution.as_deref(), Some("taper"));
    // Signing lands on the list with what the signature did and what happens next.
    let (status, list) = setup.send("GET", &format!("/exceptions?signed={id}"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains("id=\"signed-summary\"") && list.contains("Start a taper."), "{list}");
    assert!(list.contains("Each step becomes the regimen of record on its date"), "{list}");
    let (status, patient) = setup.send("GET", &format!("/patients/{}", setup.patient_id), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(patient.contains(&format!("plan {} step 1", steps[0].plan_id)), "the plan shows on the patient page");
    // Today's queue item heads the page: the decision the signature re-ran, with the supply date.
    let today_line = patient.split("id=\"patient-today\"").nth(1).expect("today's line").split("</p>").next().unwrap();
    assert!(today_line.contains("supply runs out"), "{today_line}");
    assert!(patient.contains("Physician decision") && patient.contains("High dose with little benefit"), "timeline");
}

#[tokio::test]
async fn a_faster_preset_without_attestation_is_refused_in_plain_words_and_nothing_is_signed() {
    let setup = setup().await;
    let id = setup.exception_id;
    let parameters = vec![
        ("decision", "taper_start".to_string()),
        ("version", setup.exception_version.to_string()),
        ("preset", "faster".to_string()),
        ("target_mme", "0".to_string()),
        ("start_on", setup.state.today().to_string()),
    ];
    let (status, page) = setup.send("POST", &format!("/exceptions/{id}/taper/preview"), &parameters).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("requires a physician safety attestation"), "{page}");
    assert!(!page.contains("id=\"sign-taper\""), "no sign button for a refused plan");
    // Signing anyway (a crafted post) is refused the same way and stores nothing.
    let mut sign = parameters.clone();
    sign.push(("patient_version", "1".to_string()));
    sign.push(("rationale", "trying".to_string()));
    let (status, _) = setup.send("POST", &format!("/exceptions/{id}/taper/sign"), &sign).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(screens::taper_steps(&setup.state.store, setup.patient_id).await.expect("steps").is_empty());
    // With the attestation the same preset plans.
    let mut attested = parameters.clone();
    attested.push(("attestation_reason", "short_prior_duration".to_string()));
    let (status, page) = setup.send("POST", &format!("/exceptions/{id}/taper/preview"), &attested).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Safety attestation: short prior duration"));
    // The plain decision form does not sign a taper without its schedule.
    let plain = vec![
        ("decision", "taper_start".to_string()),
        ("version", setup.exception_version.to_string()),
        ("rationale", "taper".to_string()),
    ];
    let (status, page) = setup.send("POST", &format!("/exceptions/{id}/decide"), &plain).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("use the taper planner form"), "{page}");
    let row = screens::exception(&setup.state.store, setup.state.today(), id).await.expect("exception");
    assert!(row.resolution.is_none());
}

/// A taper signed to start today is in force at once: its first step becomes the regimen of record in
/// the signing transaction (the day's run may be past), audited, and the re-run rules see no
/// difference between the regimen and the step.
#[tokio::test]
async fn a_taper_signed_to_start_today_becomes_the_regimen_at_once() {
    let setup = setup().await;
    let id = setup.exception_id;
    let today = setup.state.today();
    let mut parameters = vec![
        ("decision", "taper_start".to_string()),
        ("version", setup.exception_version.to_string()),
        ("preset", "cdc_default".to_string()),
        ("target_mme", "0".to_string()),
        ("start_on", today.to_string()),
    ];
    let (status, preview) = setup.send("POST", &format!("/exceptions/{id}/taper/preview"), &parameters).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    let patient = refill_rules::PatientId(setup.patient_id);
    let before = setup.state.store.load_patient_facts(patient, today).await.expect("facts").regimen;
    parameters.push(("patient_version", hidden(&preview, "patient_version")));
    parameters.push(("rationale", "Agreed with the patient: a slow taper from today.".to_string()));
    let (status, page) = setup.send("POST", &format!("/exceptions/{id}/taper/sign"), &parameters).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");

    let facts = setup.state.store.load_patient_facts(patient, today).await.expect("facts");
    let taper = facts.taper.clone().expect("a taper in force");
    assert_eq!(taper.step_started_on, today);
    assert_ne!(before, taper.step_regimen, "the first step lowers the dose");
    assert_eq!(facts.regimen, taper.step_regimen, "the first step is the regimen of record");
    let events = setup.state.store.audit_events_for_patient(patient, 100).await.expect("audit");
    assert!(events.iter().any(|e| e.action == "regimen.taper_step"), "the regimen change is audited");
    let decision = setup.state.store.decisions_for_patient(patient, 1).await.expect("decisions").remove(0);
    let codes: Vec<_> = decision.decision.reasons.iter().map(|r| r.code).collect();
    assert!(!codes.contains(&refill_rules::ReasonCode::RegimenChanged), "{codes:?}");
}

/// The patient page lists the diagnoses and other medications the rules use, saying what an exclusion
/// means for the protocol.
#[tokio::test]
async fn the_patient_page_lists_conditions_and_benzodiazepines() {
    use refill_rules::{ClinicalFlag, ClinicalFlagKind, OtherMedication, OtherMedicationClass};
    let setup = setup().await;
    let store = &setup.state.store;
    let patient = PatientId(setup.patient_id);
    let mut tx = store.begin().await.expect("begin");
    let on = chrono::NaiveDate::from_ymd_opt(2024, 3, 1).expect("date");
    let cancer =
        ClinicalFlag { kind: ClinicalFlagKind::Cancer, recorded_on: on, confidentiality: Confidentiality::Normal };
    tx.insert_clinical_flag(patient, &cancer, Some("dx-1")).await.expect("flag");
    let benzo = OtherMedication {
        class: OtherMedicationClass::Benzodiazepine,
        text: "lorazepam 1 MG Oral Tablet".into(),
        started_on: Some(on),
        active: true,
        confidentiality: Confidentiality::Normal,
    };
    tx.insert_other_medication(patient, &benzo, Some("bzd-1")).await.expect("medication");
    tx.commit().await.expect("commit");
    let (status, page) = setup.send("GET", &format!("/patients/{}", setup.patient_id), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let list = page.split("id=\"patient-conditions\"").nth(1).expect("the list").split("</ul>").next().unwrap();
    assert!(list.contains("cancer (outside the refill protocol: a physician decides), recorded 2024-03-01"), "{list}");
    assert!(list.contains("lorazepam 1 MG Oral Tablet (benzodiazepine, since 2024-03-01)"), "{list}");
}

/// A combination product: the preview names every step's exact products (hydrocodone/acetaminophen
/// 325 mg only), the acetaminophen a day and the check-in date; signing stores those products.
#[tokio::test]
async fn the_preview_of_a_combination_product_shows_the_exact_products_and_acetaminophen() {
    let setup = setup_with(MedicationOrder {
        id: "order-hc".into(),
        rxcui: None,
        text: Some("acetaminophen 325 MG / hydrocodone bitartrate 10 MG Oral Tablet".into()),
        dose: Some(DoseQuantity { value: 3.0, unit: DoseUnit::DoseFormUnit }),
        doses_per_day: Some(4.0),
        days_supply: None,
        dispense_quantity: None,
        prescriber: None,
        purpose: OrderPurpose::Pain,
        confidentiality: Confidentiality::Normal,
    })
    .await;
    let id = setup.exception_id;
    let mut parameters = vec![
        ("decision", "taper_start".to_string()),
        ("version", setup.exception_version.to_string()),
        ("preset", "slower".to_string()),
        ("start_on", (setup.state.today() + chrono::Days::new(7)).to_string()),
    ];
    // No target: refused; a blank never means stop.
    let (status, page) = setup.send("POST", &format!("/exceptions/{id}/taper/preview"), &parameters).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("Choose the target agreed with the patient"), "{page}");
    parameters.push(("target_mme", "0".to_string()));
    let (status, preview) = setup.send("POST", &format!("/exceptions/{id}/taper/preview"), &parameters).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    let schedule = preview.split("id=\"taper-schedule\"").nth(1).expect("schedule").split("</table>").next().unwrap();
    assert!(schedule.contains("x acetaminophen 325 MG / hydrocodone bitartrate 10 MG Oral Tablet"), "{schedule}");
    assert!(schedule.contains("class=\"check-in\""), "{schedule}");
    assert!(schedule.contains("Acetaminophen/day") || preview.contains("Acetaminophen/day"));
    assert!(!schedule.contains("750") && !schedule.contains("300 MG"), "{schedule}");
    assert!(schedule.contains(" mg</td>"), "acetaminophen a day per step: {schedule}");
}

/// Staff record a check-in with significant withdrawal on the patient page: the plan pauses and the
/// physician is asked with a note; the API shows the check-in.
#[tokio::test]
async fn a_check_in_with_withdrawal_pauses_the_plan_and_asks_a_physician() {
    let setup = setup().await;
    let id = setup.exception_id;
    let today = setup.state.today();
    let mut parameters = vec![
        ("decision", "taper_start".to_string()),
        ("version", setup.exception_version.to_string()),
        ("preset", "cdc_default".to_string()),
        ("target_mme", "0".to_string()),
        ("start_on", (today + chrono::Days::new(14)).to_string()),
    ];
    let (status, preview) = setup.send("POST", &format!("/exceptions/{id}/taper/preview"), &parameters).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    parameters.push(("patient_version", hidden(&preview, "patient_version")));
    parameters.push(("rationale", "Agreed with the patient: a slow taper.".to_string()));
    let (status, page) = setup.send("POST", &format!("/exceptions/{id}/taper/sign"), &parameters).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let patient = setup.patient_id;
    let (status, page) = setup.send("GET", &format!("/patients/{patient}"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"check-in-form\"") && page.contains("Taper plan: <strong>active</strong>"), "{page}");
    let check_in = vec![
        ("checked_on", today.to_string()),
        ("pain", "6".to_string()),
        ("enjoyment", "5".to_string()),
        ("activity", "5".to_string()),
        ("withdrawal", "significant".to_string()),
        ("wish", "go_on".to_string()),
        ("note", "sweats and cramps since the last change".to_string()),
    ];
    let (status, page) = setup.send("POST", &format!("/patients/{patient}/taper/check-in"), &check_in).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let (_, page) = setup.send("GET", &format!("/patients/{patient}"), &[]).await;
    assert!(page.contains("Taper plan: <strong>paused</strong>"), "{page}");
    assert!(page.contains("id=\"taper-check-ins\"") && page.contains("significant"), "{page}");
    let open = screens::open_exceptions(&setup.state.store, today, 10).await.expect("exceptions");
    let row = open.iter().find(|row| row.patient_id == patient).expect("the physician is asked");
    let notes = setup.state.store.exception_notes(refill_store::ExceptionId(row.exception_id)).await.expect("notes");
    assert!(notes.iter().any(|n| n.note.contains("significant withdrawal")), "{notes:?}");
    // Bad input names the field.
    let mut bad = check_in.clone();
    bad[1] = ("pain", "11".to_string());
    let (status, page) = setup.send("POST", &format!("/patients/{patient}/taper/check-in"), &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("PEG pain must be 0 to 10"), "{page}");
    // A goal and a referral through the form; the API lists them.
    let goal = vec![("record", "goal".to_string()), ("goal", "walk to the park with my grandson".to_string())];
    let (status, _) = setup.send("POST", &format!("/patients/{patient}/taper/care"), &goal).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let referral = vec![
        ("record", "referral".to_string()),
        ("kind", "physical_therapy".to_string()),
        ("status", "referred".to_string()),
    ];
    let (status, _) = setup.send("POST", &format!("/patients/{patient}/taper/care"), &referral).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, body) = setup.send("GET", &format!("/api/patients/{patient}/taper"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(json["plan_state"], "paused");
    assert_eq!(json["check_ins"][0]["withdrawal"], "significant");
    let care = json["care"].to_string();
    assert!(care.contains("walk to the park") && care.contains("physical therapy (referred)"), "{care}");
}
