//! Many staff at once (issue 17): concurrent clients record queue actions through the JSON API on a
//! SQLite file, some on the same "hot" patients. Every acknowledged action is in the store exactly once
//! (one claim event carrying the version it was claimed under, one contact record), no version is
//! claimed twice, and the only
//! refusals are conflicts. Prints throughput and latency percentiles; the counts are the assertions,
//! never the times. `REFILL_LOAD_CLIENTS` and `REFILL_LOAD_ACTIONS` (per client) scale it up: the
//! figures in BENCHMARKS.md are from 50 clients x 200 actions.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use refill_rules::{Decision, PatientId};
use refill_store::accounts::Role;
use refill_store::{Actor, PatientDetails};
use refill_web::WebSettings;
use serde_json::json;

#[path = "../../refill-store/tests/common/mod.rs"]
mod common;
mod support;
use support::{call, person, record_today};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// On SQLite and, when reachable, PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_queue_actions_are_each_stored_once() {
    for db in common::backends().await {
        let settings = WebSettings { secure_cookies: false, ..WebSettings::default() };
        let state = refill_web::AppState::new(db.store.clone(), settings, Default::default(), "test".into());
        run_load(state, db.name).await;
    }
}

async fn run_load(state: refill_web::AppState, backend: &str) {
    let clients = env_or("REFILL_LOAD_CLIENTS", 20);
    let actions = env_or("REFILL_LOAD_ACTIONS", 10);
    let hot = 5.min(clients);
    let store = state.store.clone();
    // One patient per client, the first `hot` of them shared by a second client each.
    let mut patients = Vec::new();
    let mut tx = store.begin().await.expect("begin");
    for n in 0..clients {
        let patient = tx
            .insert_patient(&PatientDetails::new(format!("load-{n}"), "Test", format!("Load{n}")), &Actor::system())
            .await
            .expect("patient");
        record_today(
            &store,
            &mut tx,
            patient,
            state.today(),
            &Decision::from_reasons(Vec::new(), None, Some(30.0), "t"),
        )
        .await;
        let PatientId(id) = patient;
        patients.push(id);
    }
    tx.commit().await.expect("commit");
    let mut people = Vec::new();
    for n in 0..clients + hot {
        people.push(person(&state, &format!("staff{n}"), &format!("Staff {n}"), Role::Staff).await);
    }

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (n, who) in people.into_iter().enumerate() {
        let state = state.clone();
        let patient = patients[if n < clients { n } else { n - clients }];
        tasks.spawn(async move {
            let mut acked = Vec::new();
            let mut latencies = Vec::new();
            let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
            let (_, item) = call(&state, &who, "GET", &format!("/api/queue/{patient}"), None).await;
            let mut version = item["version"].as_i64().expect("version");
            for _ in 0..actions {
                let body = json!({ "action": "contacted", "version": version, "note": "left a message" });
                let sent = Instant::now();
                let (status, answer) =
                    call(&state, &who, "POST", &format!("/api/queue/{patient}/action"), Some(body)).await;
                latencies.push(sent.elapsed());
                *statuses.entry(status.as_u16()).or_default() += 1;
                if status == StatusCode::OK {
                    // Acknowledged as claimed under `version`; the row moves on to the answer's.
                    acked.push((patient, version));
                    version = answer["version"].as_i64().expect("new version");
                } else {
                    // A conflict: read the row again, as the screen does, and carry on.
                    let (_, item) = call(&state, &who, "GET", &format!("/api/queue/{patient}"), None).await;
                    version = item["version"].as_i64().expect("version");
                }
            }
            (acked, latencies, statuses)
        });
    }
    let mut acked = Vec::new();
    let mut latencies = Vec::new();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (a, l, s) = done.expect("client");
        acked.extend(a);
        latencies.extend(l);
        for (status, count) in s {
            *statuses.entry(status).or_default() += count;
        }
    }
    let elapsed = started.elapsed();

    // Every acknowledged (patient, version) is one audit event; none is there twice; nothing else is.
    let head = store.audit_head().await.expect("head");
    let events = store.audit_events(1, head.seq).await.expect("events");
    // Each action is a claim of the queue row (its event carries the version claimed under) and a
    // contact record.
    let mut stored: BTreeMap<(i64, i64), usize> = BTreeMap::new();
    let mut contacts = 0;
    for event in events.iter().filter(|e| e.resource_type == "queue_item") {
        if event.action == "patient.contacted" && event.reason.as_deref() == Some("left a message") {
            contacts += 1;
            continue;
        }
        if event.action != "queue.claim" {
            continue;
        }
        let before: serde_json::Value =
            serde_json::from_str(event.before_state.as_deref().unwrap_or("null")).expect("json");
        let version = before["version"].as_i64().expect("the version claimed under");
        *stored.entry((event.patient_id.expect("patient"), version)).or_default() += 1;
    }
    assert_eq!(contacts, acked.len(), "one contact record per acknowledged action");
    let acked_set: BTreeSet<(i64, i64)> = acked.iter().copied().collect();
    assert_eq!(acked_set.len(), acked.len(), "a version was acknowledged twice");
    let lost: Vec<_> = acked_set.iter().filter(|key| !stored.contains_key(key)).collect();
    let doubled: Vec<_> = stored.iter().filter(|(_, count)| **count > 1).collect();
    let unacked: Vec<_> = stored.keys().filter(|key| !acked_set.contains(key)).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert!(doubled.is_empty(), "stored twice: {doubled:?}");
    assert!(unacked.is_empty(), "stored but not acknowledged: {unacked:?}");
    assert!(statuses.keys().all(|s| *s == 200 || *s == 409), "only successes and conflicts: {statuses:?}");
    assert!(store.verify_audit_chain(None).await.expect("verify").is_intact());

    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "load ({backend}): {} clients x {actions} actions = {} requests in {:.1} s ({:.0}/s); statuses {statuses:?}; \
         acked {}, lost 0, doubled 0; latency ms p50 {:.1} p90 {:.1} p99 {:.1} max {:.1}",
        clients + hot,
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        acked.len(),
        ms(at(0.50)),
        ms(at(0.90)),
        ms(at(0.99)),
        ms(at(1.0)),
    );
}
