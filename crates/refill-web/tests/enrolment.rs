//! Enrolling imported EHR patients through the router (issue 14): the "Not enrolled" list (staff and
//! physicians only, record-number UUIDs cut short with the whole value in a title), a dismissal refused
//! in words with the reason kept (no reason; an active opioid order), a dismissal with a reason, and an
//! enrolment from the patient page that decides the patient at once.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::NaiveDate;
use refill_rules::{Confidentiality, DoseQuantity, DoseUnit, MedicationOrder, OrderPurpose, Sex};
use refill_store::accounts::Role;
use refill_store::import::{ImportBatch, ImportOrder, ImportOutcome, ImportPatient};
use refill_store::{Actor, Enrolment};
use refill_web::{AppState, WebSettings, app};
use tower::ServiceExt;

mod support;
use support::{Person, count_events, person, sqlite_app, urlencode};

const UUID: &str = "7a1c2e3f-0b4d-4c5e-8f60-123456789abc";

async fn get(state: &AppState, who: &Person, path: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::COOKIE, &who.cookie)
        .body(Body::empty())
        .expect("request");
    let response = app(state.clone()).oneshot(request).await.expect("response");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 4 << 20).await.expect("body");
    (status, String::from_utf8(body.to_vec()).expect("utf-8"))
}

async fn post_form(
    state: &AppState,
    who: &Person,
    path: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, String, Option<String>) {
    let mut body: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={}", urlencode(v))).collect();
    body.push(format!("csrf={}", who.csrf));
    let request = Request::builder()
        .method("POST")
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::COOKIE, &who.cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.join("&")))
        .expect("request");
    let response = app(state.clone()).oneshot(request).await.expect("response");
    let status = response.status();
    let location = response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = axum::body::to_bytes(response.into_body(), 4 << 20).await.expect("body");
    (status, String::from_utf8(body.to_vec()).expect("utf-8"), location)
}

fn patient(key: &str, family: &str, mrn: Option<&str>) -> ImportPatient {
    ImportPatient {
        external_id: key.into(),
        mrn: mrn.map(str::to_string),
        given_name: "Sam".into(),
        family_name: family.into(),
        birth_date: NaiveDate::from_ymd_opt(1958, 6, 2),
        sex: Sex::Female,
        risk_tier: None,
        prescriber_of_record: None,
        email: None,
        phone: None,
        email_consent: false,
        contact_preference: "none",
        part2: false,
        previous_prescriber: None,
        enrolment_if_new: Enrolment::NotEnrolled,
    }
}

fn order() -> MedicationOrder {
    MedicationOrder {
        id: "MedicationRequest/oxy-9".into(),
        rxcui: Some("1049621".into()),
        text: Some("oxycodone hydrochloride 5 MG Oral Tablet".into()),
        dose: Some(DoseQuantity { value: 5.0, unit: DoseUnit::Milligram }),
        doses_per_day: Some(3.0),
        days_supply: Some(30),
        dispense_quantity: Some(90.0),
        prescriber: None,
        purpose: OrderPurpose::Pain,
        confidentiality: Confidentiality::Normal,
    }
}

fn version_in(page: &str, patient_id: i64) -> String {
    let row = page.split(&format!("data-patient=\"{patient_id}\"")).nth(1).expect("the patient's row");
    let after = row.split("name=\"version\" value=\"").nth(1).expect("a version field");
    after.split('"').next().expect("value").to_string()
}

#[tokio::test]
async fn staff_work_the_not_enrolled_list_and_enrol_from_the_patient_page() {
    let dir = tempfile::tempdir().expect("dir");
    let settings = WebSettings { secure_cookies: false, ..WebSettings::default() };
    let state = sqlite_app(dir.path(), "enrolment.db", b"enrolment-test-key-enrolment-key!", settings).await;
    let store = state.store.clone();
    let batch = ImportBatch {
        source_name: "bundle.json".into(),
        source_sha256: "d".repeat(64),
        patients: vec![
            patient("ehr-a", "Abbott", Some(UUID)),
            patient("ehr-b", "Barnes", Some("MRN-2")),
            patient("ehr-c", "Cole", None),
        ],
        orders: vec![ImportOrder { patient_key: "ehr-c".into(), active: true, order: order() }],
        ..ImportBatch::default()
    };
    let outcome = store.import_batch(&batch, &Actor::system()).await.expect("import");
    assert!(matches!(outcome, ImportOutcome::Committed(_)), "{outcome:?}");
    let id = |key: &'static str| {
        let store = store.clone();
        async move { store.patient_by_external_id(key).await.expect("read").expect("imported").id.0 }
    };
    let (a, b, c) = (id("ehr-a").await, id("ehr-b").await, id("ehr-c").await);
    let staff = person(&state, "desk", "Erin Desk", Role::Staff).await;
    let admin = person(&state, "root", "Ada Admin", Role::Admin).await;

    let (status, _) = get(&state, &admin, "/patients/not-enrolled").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "admins manage accounts, not patients");

    let (status, list) = get(&state, &staff, "/patients/not-enrolled").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert!(list.contains("Not enrolled (from EHR imports)"), "{list}");
    assert!(list.contains("3 waiting"), "{list}");
    assert!(list.contains(&format!("<span title=\"{UUID}\">7a1c2e3f…</span>")), "the UUID is cut short: {list}");
    assert!(list.contains("href=\"/patients/not-enrolled\""), "reachable from the navigation");
    assert!(!list.contains(&format!("action=\"/patients/{c}/dismiss\"")), "no dismissal for an active opioid order");
    assert!(list.contains("Has an active opioid order"), "{list}");

    // Refusals in words, the reason kept, nothing written.
    let version_c = version_in(&list, c);
    let (status, page, _) =
        post_form(&state, &staff, &format!("/patients/{c}/dismiss"), &[("version", &version_c), ("reason", "moved")])
            .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("Not dismissed: This patient has an active opioid order"), "{page}");
    let version_b = version_in(&list, b);
    let (status, page, _) =
        post_form(&state, &staff, &format!("/patients/{b}/dismiss"), &[("version", &version_b), ("reason", "   ")])
            .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("Not dismissed: reason:"), "{page}");
    assert_eq!(count_events(&store, "patient.enrolment_dismissed").await, 0);

    // Dismissed with a reason.
    let reason = "Urgent care visit only; not a clinic patient";
    let (status, _, location) =
        post_form(&state, &staff, &format!("/patients/{b}/dismiss"), &[("version", &version_b), ("reason", reason)])
            .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/patients/not-enrolled?done=dismissed"));
    let (_, list) = get(&state, &staff, "/patients/not-enrolled?done=dismissed").await;
    assert!(list.contains("2 waiting") && !list.contains("Barnes"), "{list}");
    assert_eq!(count_events(&store, "patient.enrolment_dismissed").await, 1);
    let (_, page_b) = get(&state, &staff, &format!("/patients/{b}")).await;
    assert!(page_b.contains("dismissed from the not-enrolled list (Urgent care visit only"), "{page_b}");

    // The patient page says so and offers enrolment; enrolling decides the patient at once.
    let (status, page_a) = get(&state, &staff, &format!("/patients/{a}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page_a.contains("Not enrolled in the refill clinic"), "{page_a}");
    assert!(page_a.contains(&format!("<span title=\"{UUID}\">7a1c2e3f…</span>")), "{page_a}");
    assert!(page_a.contains("Not on today's queue."), "{page_a}");
    let version_a = version_in(&list, a);
    let (status, _, location) =
        post_form(&state, &staff, &format!("/patients/{a}/enrol"), &[("version", &version_a), ("back", "patient")])
            .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, Some(format!("/patients/{a}")));
    let (_, page_a) = get(&state, &staff, &format!("/patients/{a}")).await;
    assert!(!page_a.contains("Not enrolled in the refill clinic"), "{page_a}");
    assert!(!page_a.contains("Not on today's queue."), "decided at once: {page_a}");
    assert_eq!(count_events(&store, "patient.enrolled").await, 1);
    // A second enrolment with the old version is a conflict, not a second decision.
    let (status, _, _) = post_form(&state, &staff, &format!("/patients/{a}/enrol"), &[("version", &version_a)]).await;
    assert!(status == StatusCode::CONFLICT || status == StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    assert_eq!(count_events(&store, "patient.enrolled").await, 1);
    let (_, list) = get(&state, &staff, "/patients/not-enrolled").await;
    assert!(list.contains("1 waiting") && list.contains("Cole") && !list.contains("Abbott"), "{list}");
}
