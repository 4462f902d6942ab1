//! Races between staff on real concurrent connections: one winner, a conflict naming it for everyone
//! else, nothing lost or doubled; and concurrent audit appends that leave one unbroken chain.

mod common;

use chrono::NaiveDate;
use refill_rules::{Decision, NaloxoneEvent, NaloxoneEventKind, Outcome, PatientId, Reason, ReasonCode};
use refill_store::{
    Actor, AuditEvent, ExceptionId, ExceptionResolution, NewDecision, PatientDetails, QueueItemId, Resolution,
    StaffFact, Store, StoreError,
};
use serde_json::json;

/// Contenders per race.
const CONTENDERS: usize = 8;

fn clinic_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 1).expect("valid date")
}

/// One store per contender: on SQLite each has its own writer (as separate processes would), on
/// PostgreSQL each has its own pool.
async fn contender_stores(db: &common::TestDb) -> Vec<Store> {
    let mut stores = Vec::with_capacity(CONTENDERS);
    for _ in 0..CONTENDERS {
        stores.push(db.open_another().await);
    }
    stores
}

async fn escalated_patient(store: &Store, external_id: &str) -> (PatientId, QueueItemId, ExceptionId) {
    let mut tx = store.begin().await.unwrap();
    let (patient_id, _) =
        tx.upsert_patient(&PatientDetails::new(external_id, "Test", "Patient"), &Actor::system()).await.unwrap();
    let reason = Reason {
        code: ReasonCode::OverdoseOrSedationSignal,
        outcome: Outcome::EscalateUrgent,
        evidence: vec![],
        task: None,
        restricted: false,
    };
    let decision = Decision::from_reasons(vec![reason], None, None, "test-policy");
    let recorded = store
        .record_decision(
            &mut tx,
            &NewDecision {
                patient_id,
                clinic_date: clinic_date(),
                refill_request_id: None,
                decision: &decision,
                decided_by: &Actor::system(),
                run_out_on: None,
                dedupe_key: None,
            },
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (patient_id, recorded.queue_item_id.unwrap(), recorded.exception_id.unwrap())
}

/// Count the winners and check every loser's conflict names the winner.
fn one_winner<T: std::fmt::Debug>(results: Vec<(String, Result<T, StoreError>)>, backend: &str) -> String {
    let winners: Vec<&String> = results.iter().filter(|(_, r)| r.is_ok()).map(|(who, _)| who).collect();
    assert_eq!(winners.len(), 1, "{backend}: exactly one winner, got {results:?}");
    let winner = winners[0].clone();
    for (who, result) in &results {
        match result {
            Ok(_) => {}
            Err(StoreError::Conflict(message)) => {
                assert!(message.contains(&winner), "{backend}: {who}'s conflict should name {winner}: {message}")
            }
            Err(other) => panic!("{backend}: {who} failed with {other:?} instead of a conflict"),
        }
    }
    winner
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_of_one_queue_item_have_one_winner() {
    for db in common::backends().await {
        let stores = contender_stores(&db).await;
        for round in 0..10 {
            let (patient_id, item_id, _) = escalated_patient(&db.store, &format!("claim-{round}")).await;
            let version = db.store.queue_item(item_id).await.unwrap().version;
            let mut tasks = Vec::new();
            for (n, store) in stores.iter().enumerate() {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let actor = Actor::new(format!("user:staff{n}"), "staff");
                    (actor.id.clone(), store.claim_queue_item(item_id, version, &actor).await)
                }));
            }
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await.unwrap());
            }
            let winner = one_winner(results, db.name);
            let item = db.store.queue_item(item_id).await.unwrap();
            assert_eq!(item.assigned_to.as_deref(), Some(winner.as_str()), "{}", db.name);
            assert_eq!(item.version, version + 1, "{}: exactly one change", db.name);
            let claims = db
                .store
                .audit_events_for_patient(patient_id, 100)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.action == "queue.claim")
                .count();
            assert_eq!(claims, 1, "{}: exactly one audited claim", db.name);
        }
        assert!(db.store.verify_audit_chain(None).await.unwrap().is_intact(), "{}", db.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_staff_facts_on_one_patient_have_one_winner() {
    for db in common::backends().await {
        let stores = contender_stores(&db).await;
        for round in 0..10 {
            let (patient_id, _, _) = escalated_patient(&db.store, &format!("fact-{round}")).await;
            let version = db.store.patient(patient_id).await.unwrap().version;
            let mut tasks = Vec::new();
            for (n, store) in stores.iter().enumerate() {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let actor = Actor::new(format!("user:staff{n}"), "staff");
                    let fact = StaffFact::NaloxoneEvent {
                        event: NaloxoneEvent { on: clinic_date(), kind: NaloxoneEventKind::Offered },
                    };
                    (actor.id.clone(), store.record_fact(patient_id, version, &fact, &actor, None).await)
                }));
            }
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await.unwrap());
            }
            one_winner(results, db.name);
            let facts = db.store.load_patient_facts(patient_id, clinic_date()).await.unwrap();
            assert_eq!(facts.naloxone_events.len(), 1, "{}: nothing doubled", db.name);
            assert_eq!(db.store.patient(patient_id).await.unwrap().version, version + 1, "{}", db.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_resolutions_of_one_exception_have_one_winner() {
    for db in common::backends().await {
        let stores = contender_stores(&db).await;
        for round in 0..5 {
            let (patient_id, _, exception_id) = escalated_patient(&db.store, &format!("resolve-{round}")).await;
            let version = db.store.exception(exception_id).await.unwrap().version;
            let mut tasks = Vec::new();
            for (n, store) in stores.iter().enumerate() {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let physician = Actor::new(format!("user:dr{n}"), "physician");
                    let resolution = ExceptionResolution {
                        resolution: Resolution::Hold,
                        rationale: format!("seen by dr{n}"),
                        safety_attestation: None,
                    };
                    (
                        physician.id.clone(),
                        store.resolve_exception(exception_id, version, &resolution, &physician).await,
                    )
                }));
            }
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await.unwrap());
            }
            let winner = one_winner(results, db.name);
            let exception = db.store.exception(exception_id).await.unwrap();
            assert_eq!(exception.signed_by.as_deref(), Some(winner.as_str()), "{}", db.name);
            let resolutions = db
                .store
                .audit_events_for_patient(patient_id, 100)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.action == "exception.resolve")
                .count();
            assert_eq!(resolutions, 1, "{}", db.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_audit_appends_leave_one_unbroken_chain() {
    const PER_WRITER: usize = 150;
    for db in common::backends().await {
        let stores = contender_stores(&db).await;
        let mut tasks = Vec::new();
        for (n, store) in stores.into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let actor = Actor::new(format!("user:writer{n}"), "staff");
                let mut seqs = Vec::with_capacity(PER_WRITER);
                for k in 0..PER_WRITER {
                    let event = AuditEvent::new(&actor, "queue.view", "queue").detail(json!({ "writer": n, "k": k }));
                    // Half the appends join a transaction with another statement, as real changes do.
                    let mut tx = store.begin().await.unwrap();
                    let appended = store.append_audit(&mut tx, &event).await.unwrap();
                    if k % 2 == 0 {
                        tx.commit().await.unwrap();
                        seqs.push(appended.seq);
                    } else {
                        // A rolled-back change leaves no event and no gap.
                        tx.rollback().await.unwrap();
                    }
                }
                seqs
            }));
        }
        let mut committed = Vec::new();
        for task in tasks {
            committed.extend(task.await.unwrap());
        }
        committed.sort_unstable();
        let expected: Vec<i64> = (1..=committed.len() as i64).collect();
        assert_eq!(committed, expected, "{}: gapless, no sequence number handed out twice", db.name);
        let verification = db.store.verify_audit_chain(None).await.unwrap();
        assert_eq!(verification.problem, None, "{}", db.name);
        assert_eq!(verification.last_seq, committed.len() as i64, "{}", db.name);
        assert_eq!(db.store.audit_head().await.unwrap().seq, committed.len() as i64);
    }
}
