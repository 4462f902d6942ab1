//! The queue screen's shared first page and tallies (`queue_cache`): a staff action shows on the very
//! next load of the list, for the acting desk and every other, and each load is still its own audit
//! event even when the rows come from the cache.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use refill_rules::{Decision, PatientId};
use refill_store::accounts::Role;
use refill_store::{Actor, PatientDetails};
use refill_web::{AppState, WebSettings, app};
use serde_json::json;
use tower::ServiceExt;

mod support;
use support::{Person, call, count_events, person, record_today, sqlite_app};

async fn page_html(state: &AppState, who: &Person, path: &str) -> String {
    let request = Request::builder()
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::COOKIE, &who.cookie)
        .body(Body::empty())
        .expect("request");
    let response = app(state.clone()).oneshot(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    String::from_utf8(axum::body::to_bytes(response.into_body(), 4 << 20).await.expect("body").to_vec()).expect("utf-8")
}

#[tokio::test]
async fn a_staff_action_shows_on_the_next_list_load_and_every_load_is_audited() {
    let dir = tempfile::tempdir().expect("dir");
    // A poll interval far longer than the test: only the change sequence can make an entry stale here.
    let settings = WebSettings {
        secure_cookies: false,
        live_poll_interval: std::time::Duration::from_secs(3600),
        ..WebSettings::default()
    };
    let state = sqlite_app(dir.path(), "queue.db", b"queue-screen-test-key-queue-screen", settings).await;
    let store = state.store.clone();
    let today = state.today();
    let actor = Actor::system();
    let mut patients = Vec::new();
    let mut tx = store.begin().await.expect("begin");
    for (mrn, given, family) in [("q-1", "Ines", "Alder"), ("q-2", "Bo", "Birch")] {
        let patient = tx.insert_patient(&PatientDetails::new(mrn, given, family), &actor).await.expect("patient");
        let decision = Decision::from_reasons(Vec::new(), None, Some(30.0), "test");
        record_today(&store, &mut tx, patient, today, &decision).await;
        patients.push(patient);
    }
    tx.commit().await.expect("commit");
    let PatientId(first) = patients[0];

    let dana = person(&state, "dana", "Dana Whitfield", Role::Staff).await;
    let omar = person(&state, "omar", "Omar Reyes", Role::Staff).await;

    let before = count_events(&store, "queue.view").await;
    let (status, queue) = call(&state, &dana, "GET", "/api/queue", None).await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    assert_eq!(queue["tallies"]["with_physician"], json!(0), "{queue}");
    assert_eq!(queue["rows"].as_array().map(Vec::len), Some(2));
    let row = queue["rows"].as_array().and_then(|rows| rows.iter().find(|r| r["patient_id"] == json!(first)));
    let version = row.and_then(|r| r["version"].as_i64()).expect("the first patient's row");
    // Omar's screen loads the same page (from the cache): still one audit event per view.
    let html = page_html(&state, &omar, "/queue").await;
    assert!(html.contains("Alder, Ines"), "the page shows the row");
    assert!(html.contains("<strong>0</strong> With a physician"), "the tallies are on the page");
    assert_eq!(count_events(&store, "queue.view").await, before + 2, "each load is audited, cached or not");

    // Dana sends the row to a physician; both desks see it on their next load.
    let action = json!({ "action": "physician", "version": version, "note": "pain worse, wants a dose change" });
    let (status, body) = call(&state, &dana, "POST", &format!("/api/queue/{first}/action"), Some(action)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, after) = call(&state, &dana, "GET", "/api/queue", None).await;
    assert_eq!(after["tallies"]["with_physician"], json!(1), "{after}");
    let row = after["rows"].as_array().and_then(|rows| rows.iter().find(|r| r["patient_id"] == json!(first)));
    let outcome = row.and_then(|r| r["outcome"].as_str()).expect("outcome");
    assert!(outcome.starts_with("ESCALATE"), "{outcome}");
    let html = page_html(&state, &omar, "/queue").await;
    assert!(html.contains("<strong>1</strong> With a physician"), "the other desk's tallies changed too");
    assert_eq!(count_events(&store, "queue.view").await, before + 4);
}
