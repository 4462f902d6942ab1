//! The screens a desk and a physician work from (issue 14), through the router: staff find a patient by
//! name, record number or birth date (`/patients` alone is the search form, not a 422); the queue opens
//! on the desk's rows, one line each; a physician lands on the exceptions, paged; a refused decision
//! shows the refusal above the form with everything typed kept; "Adjust the regimen" corrects an
//! undetermined dose in the signing transaction, audited.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::NaiveDate;
use refill_rules::{
    Confidentiality, Decision, MedicationOrder, OrderPurpose, Outcome, PatientId, Reason, ReasonCode, Task,
};
use refill_store::accounts::Role;
use refill_store::{Actor, PatientDetails};
use refill_web::{AppState, WebSettings, app};
use tower::ServiceExt;

mod support;
use support::{Person, count_events, escalation, person, record_today, sqlite_app, urlencode};

async fn get(state: &AppState, who: &Person, path: &str) -> (StatusCode, String, Option<String>) {
    let request = Request::builder()
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::COOKIE, &who.cookie)
        .body(Body::empty())
        .expect("request");
    let response = app(state.clone()).oneshot(request).await.expect("response");
    let status = response.status();
    let location = response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = axum::body::to_bytes(response.into_body(), 4 << 20).await.expect("body");
    (status, String::from_utf8(body.to_vec()).expect("utf-8"), location)
}

async fn post_form(state: &AppState, who: &Person, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
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
    let body = axum::body::to_bytes(response.into_body(), 4 << 20).await.expect("body");
    (status, String::from_utf8(body.to_vec()).expect("utf-8"))
}

async fn test_app(name: &str) -> (tempfile::TempDir, AppState) {
    let dir = tempfile::tempdir().expect("dir");
    let settings = WebSettings { secure_cookies: false, ..WebSettings::default() };
    let state = sqlite_app(dir.path(), name, b"screens-test-key-screens-test-key", settings).await;
    (dir, state)
}

/// An order with no dose: the rules cannot compute its MME.
fn undetermined_order() -> MedicationOrder {
    MedicationOrder {
        id: "MedicationRequest/oxy-1".into(),
        rxcui: Some("1049621".into()),
        text: Some("oxycodone hydrochloride 5 MG Oral Tablet".into()),
        dose: None,
        doses_per_day: None,
        days_supply: Some(30),
        dispense_quantity: Some(90.0),
        prescriber: None,
        purpose: OrderPurpose::Pain,
        confidentiality: Confidentiality::Normal,
    }
}

#[tokio::test]
async fn staff_find_patients_and_the_queue_opens_on_the_desk_rows() {
    let (_dir, state) = test_app("search.db").await;
    let store = state.store.clone();
    let today = state.today();
    let actor = Actor::system();
    let mut tx = store.begin().await.expect("begin");
    let mut dana = PatientDetails::new("e-1", "Dana", "Whitfield");
    dana.mrn = Some("MRN-1001".into());
    dana.birth_date = NaiveDate::from_ymd_opt(1961, 4, 7);
    let dana = tx.insert_patient(&dana, &actor).await.expect("patient");
    let omar = tx.insert_patient(&PatientDetails::new("e-2", "Omar", "Reyes"), &actor).await.expect("patient");
    let tasks = Decision::from_reasons(
        vec![Reason {
            code: ReasonCode::PdmpReviewOverdue,
            outcome: Outcome::ApproveWithTasks,
            evidence: Vec::new(),
            task: Some(Task::ReviewPdmp),
            restricted: false,
        }],
        None,
        Some(30.0),
        "test",
    );
    record_today(&store, &mut tx, dana, today, &tasks).await;
    let escalated = escalation(ReasonCode::AberrantPattern, ("early_requests", "3"), false, 40.0);
    record_today(&store, &mut tx, omar, today, &escalated).await;
    tx.commit().await.expect("commit");
    let erin = person(&state, "erin", "Erin Staff", Role::Staff).await;

    let (status, html, _) = get(&state, &erin, "/patients").await;
    assert_eq!(status, StatusCode::OK, "/patients alone is the search form: {html}");
    assert!(html.contains("id=\"search-q\""), "{html}");
    let before = count_events(&store, "patients.search").await;
    for query in ["whit", "Whitfield%2C+Dana", "1001", "1961-04-07"] {
        let (status, html, _) = get(&state, &erin, &format!("/patients?q={query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}");
        assert!(html.contains("Whitfield, Dana") && html.contains("MRN-1001"), "{query}: {html}");
        assert!(!html.contains("Reyes, Omar"), "{query}: only the match");
    }
    assert_eq!(count_events(&store, "patients.search").await, before + 4, "one audit event per search");
    let (_, html, _) = get(&state, &erin, "/patients?q=nobody").await;
    assert!(html.contains("Nobody matches"), "{html}");
    // The search box is in every page's header.
    let (_, queue, _) = get(&state, &erin, "/queue").await;
    assert!(queue.contains("id=\"top-search\""), "{queue}");

    // The desk's default view leaves the escalation to its tally; a row is one line of headlines.
    assert!(queue.contains("Whitfield, Dana"), "{queue}");
    assert!(!queue.contains("Reyes, Omar"), "the physician's row is behind its tally: {queue}");
    assert!(queue.contains("<strong>1</strong> With a physician"), "{queue}");
    assert!(queue.contains(">PDMP review overdue</td>"), "the row's line is the headline: {queue}");
    let (_, all, _) = get(&state, &erin, "/queue?filter=open").await;
    assert!(all.contains("Reyes, Omar"), "{all}");

    // The PDMP review's findings are fields (prescriber, class, date), checked by field.
    let (_, panel, _) = get(&state, &erin, &format!("/queue/{}/panel", dana.0)).await;
    assert!(panel.contains("name=\"prescriber_1\"") && !panel.contains("text_version"), "{panel}");
    let version = panel.split("name=\"version\" value=\"").nth(1).and_then(|s| s.split('"').next()).expect("version");
    let path = format!("/queue/{}/action", dana.0);
    let base =
        [("action", "pdmp"), ("version", version), ("prescriber_1", "Dr Outside"), ("class_1", "benzodiazepine")];
    let (status, refused) =
        post_form(&state, &erin, &path, &[&base[..], &[("finding_on_1", "last week")]].concat()).await;
    assert!(status.is_client_error(), "{status}: {refused}");
    assert!(refused.contains("finding_on_1"), "the problem names the field: {refused}");
    let (status, done) =
        post_form(&state, &erin, &path, &[&base[..], &[("finding_on_1", "2026-11-20")]].concat()).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let facts = store.load_patient_facts(dana, today).await.expect("facts");
    let review = facts.pdmp_reviews.last().expect("a review");
    assert_eq!(review.findings.len(), 1);
    assert_eq!(review.findings[0].prescriber.0, "Dr Outside");
    assert_eq!(review.findings[0].drug_class, refill_rules::DrugClass::Benzodiazepine);

    // A second desk acting on the row it loaded before: told who and what, by name, not an internal id.
    let omar_desk = person(&state, "omar", "Omar Desk", Role::Staff).await;
    let (status, conflict) = post_form(
        &state,
        &omar_desk,
        &path,
        &[("action", "contacted"), ("version", version), ("note", "left a message")],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert!(conflict.contains("PDMP review recorded by Erin Staff at"), "what the other desk did: {conflict}");
    assert!(!conflict.contains("queue item"), "no internal ids: {conflict}");
}

#[tokio::test]
async fn a_physician_lands_on_paged_exceptions_and_a_refusal_keeps_what_was_typed() {
    let (_dir, state) = test_app("exceptions.db").await;
    let store = state.store.clone();
    let today = state.today();
    let actor = Actor::system();
    let mut tx = store.begin().await.expect("begin");
    let mut first = None;
    for n in 0..30 {
        let patient = tx
            .insert_patient(&PatientDetails::new(format!("x-{n}"), "Pat", format!("Number{n:02}")), &actor)
            .await
            .expect("patient");
        first.get_or_insert(patient);
        let decision = escalation(ReasonCode::AberrantPattern, ("early_requests", "3"), false, 40.0);
        record_today(&store, &mut tx, patient, today, &decision).await;
    }
    tx.commit().await.expect("commit");
    let paul = person(&state, "paul", "Paul Physician", Role::Physician).await;

    let (status, _, location) = get(&state, &paul, "/").await;
    assert!(status.is_redirection(), "{status}");
    assert_eq!(location.as_deref(), Some("/exceptions"), "a physician's home is the exceptions");
    let (_, page0, _) = get(&state, &paul, "/exceptions").await;
    assert_eq!(page0.matches("<tr class=\"row").count(), 25, "one page");
    assert!(page0.contains("30 open") && page0.contains("id=\"exceptions-next\""), "{page0}");
    let (_, page1, _) = get(&state, &paul, "/exceptions?page=1").await;
    assert_eq!(page1.matches("<tr class=\"row").count(), 5, "the rest");
    assert!(!page1.contains("id=\"exceptions-next\""));

    let href = page0.split("data-href=\"").nth(1).and_then(|s| s.split('"').next()).expect("an exception").to_string();
    let (status, detail, _) = get(&state, &paul, &href).await;
    assert_eq!(status, StatusCode::OK);
    // The options that fit an aberrant pattern come first; the rest are folded away.
    let fitting = detail.split("id=\"other-options\"").next().expect("form");
    assert!(fitting.contains("value=\"refer_oud\"") && fitting.contains("value=\"hold_with_plan\""), "{fitting}");
    assert!(!fitting.contains("value=\"adjust_regimen\""), "a dose change does not fit these reasons");
    let decision_form = detail.find("id=\"decide-form\"").expect("decision form");
    let taper_form = detail.find("id=\"taper-form\"").expect("taper form");
    assert!(decision_form < taper_form, "the decision comes before the taper planner");

    let version = detail.split("name=\"version\" value=\"").nth(1).and_then(|s| s.split('"').next()).expect("version");
    let rationale = "Pattern of early requests over six months; discussed risks at length";
    let (status, refused) = post_form(
        &state,
        &paul,
        &format!("{href}/decide"),
        &[("decision", "stop_therapy"), ("version", version), ("rationale", rationale), ("safety_attestation", "")],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let problem = refused.find("id=\"decide-problem\"").expect("the refusal is shown");
    let form = refused.find("id=\"decide-form\"").expect("the form again");
    assert!(problem < form && form - problem < 600, "the refusal sits right above the form");
    assert!(refused.contains("safety attestation"), "it says why");
    assert!(refused.contains(&format!(">{rationale}</textarea>")), "the rationale is kept");
    assert!(refused.contains("value=\"stop_therapy\" required checked"), "the option is kept");
}

#[tokio::test]
async fn adjusting_the_regimen_corrects_an_undetermined_dose_in_the_signing_transaction() {
    let (_dir, state) = test_app("dose.db").await;
    let store = state.store.clone();
    let today = state.today();
    let actor = Actor::system();
    let mut tx = store.begin().await.expect("begin");
    let patient = tx.insert_patient(&PatientDetails::new("d-1", "Lee", "Okafor"), &actor).await.expect("patient");
    tx.upsert_medication_order(patient, &undetermined_order(), true).await.expect("order");
    let decision = Decision::from_reasons(
        vec![Reason {
            code: ReasonCode::MmeUndetermined,
            outcome: Outcome::Escalate,
            evidence: Vec::new(),
            task: None,
            restricted: false,
        }],
        None,
        None,
        "test",
    );
    record_today(&store, &mut tx, patient, today, &decision).await;
    tx.commit().await.expect("commit");
    let paul = person(&state, "paul", "Paul Physician", Role::Physician).await;
    let (_, list, _) = get(&state, &paul, "/exceptions").await;
    let href = list.split("data-href=\"").nth(1).and_then(|s| s.split('"').next()).expect("exception").to_string();
    let (_, detail, _) = get(&state, &paul, &href).await;
    assert!(detail.contains("id=\"dose-fields\"") && detail.contains("(no dose)"), "{detail}");
    let fitting = detail.split("id=\"other-options\"").next().expect("form");
    assert!(fitting.contains("value=\"adjust_regimen\""), "a dose change fits an undetermined MME");
    let version = detail.split("name=\"version\" value=\"").nth(1).and_then(|s| s.split('"').next()).expect("version");
    let sign = |dose: &'static str| {
        let (state, paul, href, version) = (&state, &paul, &href, version.to_string());
        async move {
            post_form(
                state,
                paul,
                &format!("{href}/decide"),
                &[
                    ("decision", "adjust_regimen"),
                    ("version", &version),
                    ("rationale", "Confirmed with the pharmacy: one tablet three times a day"),
                    ("order_id", "MedicationRequest/oxy-1"),
                    ("dose_value", dose),
                    ("dose_unit", "unit"),
                    ("doses_per_day", "3"),
                ],
            )
            .await
        }
    };
    // A dose that is not a number is refused by field, and nothing is written.
    let (status, refused) = sign("lots").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.contains("dose_value") && refused.contains("value=\"lots\""), "{refused}");
    assert_eq!(count_events(&store, "order.dose_corrected").await, 0);

    let (status, body) = sign("1").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let orders = refill_store::screens::regimens(&store, &[patient.0]).await.expect("orders");
    assert_eq!(orders[0].dose_value, Some(1.0));
    assert_eq!(orders[0].dose_unit.as_deref(), Some("unit"));
    assert_eq!(orders[0].doses_per_day, Some(3.0));
    assert_eq!(count_events(&store, "order.dose_corrected").await, 1, "the correction is audited");
    let facts = store.load_patient_facts(PatientId(patient.0), today).await.expect("facts");
    assert!(facts.regimen[0].dose.is_some(), "the rules see the corrected dose");
}

#[tokio::test]
async fn an_admin_disables_an_account_resets_a_password_and_changes_a_role() {
    let (_dir, state) = test_app("admin.db").await;
    let ada = person(&state, "ada", "Ada Admin", Role::Admin).await;
    let erin = person(&state, "erin", "Erin Staff", Role::Staff).await;
    let users = refill_store::accounts::list_users(&state.store).await.expect("users");
    let erin_id = users.iter().find(|u| u.username == "erin").expect("erin").id.to_string();
    let ada_id = users.iter().find(|u| u.username == "ada").expect("ada").id.to_string();
    let path = format!("/admin/users/{erin_id}");
    let (status, _, _) = get(&state, &erin, "/queue").await;
    assert_eq!(status, StatusCode::OK, "Erin is signed in");

    let (status, page) = post_form(&state, &ada, &path, &[("change", "password"), ("password", "short")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"admin-problem\"") && page.contains("password:"), "a weak password is refused");
    let (status, page) =
        post_form(&state, &ada, &path, &[("change", "password"), ("password", "a long and unusual passphrase 4471")])
            .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("password is reset"), "{page}");
    assert_eq!(count_events(&state.store, "account.password_changed").await, 1);
    let (status, _, _) = get(&state, &erin, "/queue").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the reset signed Erin out");

    let (_, page) = post_form(&state, &ada, &path, &[("change", "disable")]).await;
    assert!(page.contains("is disabled"), "{page}");
    assert!(
        refill_store::accounts::get_user(&state.store, erin_id.parse().expect("id"))
            .await
            .expect("user")
            .disabled_at_ms
            .is_some()
    );
    let (_, page) = post_form(&state, &ada, &path, &[("change", "role"), ("role", "physician")]).await;
    assert!(page.contains("is now physician"), "{page}");
    assert_eq!(count_events(&state.store, "account.role_changed").await, 1);
    let (_, page) = post_form(&state, &ada, &format!("/admin/users/{ada_id}"), &[("change", "disable")]).await;
    assert!(page.contains("cannot disable your own account"), "{page}");
    // Staff cannot reach any of it.
    let omar = person(&state, "omar", "Omar Staff", Role::Staff).await;
    let (status, _) = post_form(&state, &omar, &path, &[("change", "enable")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
