//! `/metrics` (Prometheus text) and `/readyz` through the router on a real SQLite file: request latency
//! per route pattern (never a concrete path), jobs, outbox and today's decisions, counts only, and only
//! for loopback scrapers.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use refill_rules::{Decision, PatientId};
use refill_store::accounts::Role;
use refill_store::{Actor, PatientDetails};
use refill_web::{AppState, WebSettings, app};
use tower::ServiceExt;

mod support;
use support::{call, person, record_today, sqlite_app};

async fn scrape(state: &AppState, peer: &str) -> (StatusCode, String) {
    let mut request = Request::builder().uri("/metrics").header(header::HOST, "localhost").body(Body::empty()).unwrap();
    let peer: SocketAddr = format!("{peer}:50000").parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).to_string())
}

#[tokio::test]
async fn metrics_count_requests_jobs_outbox_and_decisions_without_patient_data() {
    let dir = tempfile::tempdir().expect("dir");
    let settings = WebSettings { secure_cookies: false, ..WebSettings::default() };
    let state = sqlite_app(dir.path(), "metrics.db", b"metrics-test-key-metrics-test-key-0", settings).await;
    let store = state.store.clone();
    let mut tx = store.begin().await.unwrap();
    let patient = tx.insert_patient(&PatientDetails::new("m-1", "Ines", "Alder"), &Actor::system()).await.unwrap();
    record_today(&store, &mut tx, patient, state.today(), &Decision::from_reasons(Vec::new(), None, Some(20.0), "t"))
        .await;
    tx.commit().await.unwrap();
    let PatientId(pid) = patient;
    let dana = person(&state, "dana", "Dana Whitfield", Role::Staff).await;
    let (status, _) = call(&state, &dana, "GET", "/api/queue", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&state, &dana, "GET", &format!("/api/patients/{pid}"), None).await;
    assert_eq!(status, StatusCode::OK);

    // One job done through the queue, for the job lines.
    let mut tx = store.begin().await.unwrap();
    refill_store::jobs::enqueue(
        &mut tx,
        &refill_store::jobs::NewJob::new("probe", serde_json::json!({ "kind": "probe" })),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let claimed =
        refill_store::jobs::claim(&store, "default", "w1", std::time::Duration::from_secs(30), 1).await.unwrap();
    refill_store::jobs::complete_alone(&store, &claimed[0].lease).await.unwrap();

    let (status, text) = scrape(&state, "127.0.0.1").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    for expected in [
        "# TYPE refill_http_request_duration_seconds histogram",
        "refill_http_request_duration_seconds_count{route=\"/api/queue\",method=\"GET\",status=\"2xx\"} 1",
        "refill_http_request_duration_seconds_bucket{route=\"/api/patients/{patient_id}\",method=\"GET\",status=\"2xx\",le=\"+Inf\"} 1",
        "refill_outbox_emails{state=\"pending\"} 0",
        "refill_decisions_today{outcome=\"APPROVE\"} 1",
        "refill_database_up 1",
        "refill_jobs_finished_last_hour{kind=\"probe\",state=\"completed\"} 1",
        "refill_job_latency_seconds{kind=\"probe\",stat=\"max\"}",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains("Alder") && !text.contains(&format!("/api/patients/{pid}\"")), "no patient data: {text}");
    // Every sample line is `name{labels} value` with a number.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap_or("");
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }

    let (status, _) = scrape(&state, "203.0.113.5").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only loopback and the configured proxies scrape");

    let ready = app(state.clone())
        .oneshot(Request::builder().uri("/readyz").header(header::HOST, "localhost").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}
