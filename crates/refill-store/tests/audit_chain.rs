//! Tamper evidence of the audit chain over 10,000 events: random single-row alterations, deletions
//! (the tail too, caught by the external checkpoint), swaps, forged rows and recomputed chains are all
//! detected at the right event; an untouched chain always verifies. Also: the database itself refuses
//! updates and deletes of audit rows.
//!
//! The tests play the attacker with direct database access: they switch the append-only triggers off
//! first, as someone with owner rights could.

mod common;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use refill_store::{Actor, AuditCheckpoint, AuditEvent, AuditKey, AuditProblem, Backend, Store, StoredAuditEvent};
use serde_json::json;

const CHAIN_LENGTH: i64 = 10_000;
/// Random cases per kind of tampering and backend (alterations: one per column).
const CASES: usize = 6;

async fn build_chain(store: &Store) -> Vec<StoredAuditEvent> {
    // One transaction keeps the setup quick; appends inside one transaction chain like separate ones.
    let mut tx = store.begin().await.unwrap();
    for n in 0..CHAIN_LENGTH {
        let actor = Actor::new(format!("user:{}", n % 17), if n % 5 == 0 { "physician" } else { "staff" });
        let mut event = AuditEvent::new(&actor, if n % 3 == 0 { "patient.view" } else { "patient.update" }, "patient")
            .resource_id((n % 500).to_string())
            .patient(refill_rules::PatientId(n % 500));
        if n % 3 != 0 {
            event = event.before(json!({ "risk_tier": "high" })).after(json!({ "risk_tier": "moderate", "n": n }));
        }
        if n % 11 == 0 {
            event = event.reason("break-glass: urgent review");
        }
        store.append_audit(&mut tx, &event).await.unwrap();
    }
    tx.commit().await.unwrap();
    let events = store.audit_events(1, CHAIN_LENGTH).await.unwrap();
    assert_eq!(events.len() as i64, CHAIN_LENGTH);
    events
}

/// Run one statement as the attacker (triggers are off by then).
async fn exec(store: &Store, sql: String) {
    match &store.pools {
        refill_store::Pools::Sqlite { write, .. } => {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(write).await.unwrap();
        }
        refill_store::Pools::Postgres(pool) => {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await.unwrap();
        }
    }
}

async fn disable_append_only(store: &Store) {
    match store.backend() {
        Backend::Sqlite => {
            exec(store, "drop trigger audit_events_no_update".into()).await;
            exec(store, "drop trigger audit_events_no_delete".into()).await;
        }
        Backend::Postgres => exec(store, "alter table audit_events disable trigger user".into()).await,
    }
}

fn quote(value: &Option<String>) -> String {
    match value {
        Some(text) => format!("'{}'", text.replace('\'', "''")),
        None => "null".into(),
    }
}

fn insert_sql(event: &StoredAuditEvent) -> String {
    format!(
        "insert into audit_events (seq, occurred_at, actor, actor_role, action, resource_type, resource_id, \
         patient_id, reason, before_state, after_state, detail, client_addr, session_hash, prev_mac, mac) values \
         ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
        event.seq,
        quote(&Some(event.occurred_at.clone())),
        quote(&Some(event.actor.clone())),
        quote(&Some(event.actor_role.clone())),
        quote(&Some(event.action.clone())),
        quote(&Some(event.resource_type.clone())),
        quote(&event.resource_id),
        event.patient_id.map(|p| p.to_string()).unwrap_or_else(|| "null".into()),
        quote(&event.reason),
        quote(&event.before_state),
        quote(&event.after_state),
        quote(&event.detail),
        quote(&event.client_addr),
        quote(&event.session_hash),
        quote(&Some(event.prev_mac.clone())),
        quote(&Some(event.mac.clone())),
    )
}

/// Put the original rows back (and drop anything beyond them) so the next case starts clean.
async fn restore(store: &Store, original: &[StoredAuditEvent], touched: &[i64]) {
    let mut statements = Vec::new();
    for seq in touched {
        statements.push(format!("delete from audit_events where seq = {seq}"));
        if let Some(event) = original.get((*seq - 1) as usize) {
            statements.push(insert_sql(event));
        }
    }
    statements.push(format!("delete from audit_events where seq > {CHAIN_LENGTH}"));
    let last = original.last().unwrap();
    statements.push(format!("update audit_chain_head set seq = {}, mac = '{}' where id = 1", last.seq, last.mac));
    exec_in_one_transaction(store, statements).await;
}

/// Many attacker statements in one transaction (one sync to disk instead of thousands).
async fn exec_in_one_transaction(store: &Store, statements: Vec<String>) {
    let mut tx = store.begin().await.unwrap();
    for sql in statements {
        match &mut tx {
            refill_store::Tx::Sqlite(inner) => {
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut **inner).await.unwrap();
            }
            refill_store::Tx::Postgres(inner) => {
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut **inner).await.unwrap();
            }
        }
    }
    tx.commit().await.unwrap();
}

async fn first_problem(store: &Store, checkpoint: Option<&AuditCheckpoint>) -> Option<AuditProblem> {
    store.verify_audit_chain(checkpoint).await.unwrap().problem
}

fn problem_seq(problem: &AuditProblem) -> i64 {
    match problem {
        AuditProblem::Missing { seq }
        | AuditProblem::Altered { seq }
        | AuditProblem::Unlinked { seq }
        | AuditProblem::CheckpointMismatch { seq } => *seq,
        AuditProblem::TailMissing { last_seq, .. } => last_seq + 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_with_a_10000_event_chain_is_detected_at_the_first_bad_event() {
    for db in common::backends().await {
        let store = &db.store;
        let original = build_chain(store).await;
        let checkpoint = store.audit_checkpoint().await.unwrap();
        assert_eq!(checkpoint.seq, CHAIN_LENGTH);
        assert_eq!(first_problem(store, Some(&checkpoint)).await, None, "{}: untouched chain verifies", db.name);
        disable_append_only(store).await;
        let mut rng = StdRng::seed_from_u64(0x5eed_0000 + CHAIN_LENGTH as u64);
        let name = db.name;

        // Single-row alterations of any column.
        let columns = [
            "occurred_at",
            "actor",
            "actor_role",
            "action",
            "resource_type",
            "resource_id",
            "reason",
            "before_state",
            "after_state",
            "detail",
            "client_addr",
            "session_hash",
            "prev_mac",
            "mac",
            "patient_id",
        ];
        for case in 0..columns.len() {
            let seq = rng.random_range(1..=CHAIN_LENGTH);
            let column = columns[case % columns.len()];
            let value = if column == "patient_id" { "987654".to_string() } else { format!("'forged-{case}'") };
            exec(store, format!("update audit_events set {column} = {value} where seq = {seq}")).await;
            let problem = first_problem(store, Some(&checkpoint)).await;
            assert_eq!(
                problem.as_ref().map(problem_seq),
                Some(seq),
                "{name}: altering {column} of event {seq} gave {problem:?}"
            );
            restore(store, &original, &[seq]).await;
        }

        // Deletions in the middle.
        for _ in 0..CASES {
            let seq = rng.random_range(1..CHAIN_LENGTH);
            exec(store, format!("delete from audit_events where seq = {seq}")).await;
            assert_eq!(first_problem(store, None).await, Some(AuditProblem::Missing { seq }), "{name}: deleted {seq}");
            restore(store, &original, &[seq]).await;
        }

        // Deleting the tail and rewinding the head row to cover it: only the checkpoint can tell.
        for _ in 0..CASES {
            let cut = rng.random_range(1..=20);
            let new_last = &original[(CHAIN_LENGTH - cut - 1) as usize];
            exec(store, format!("delete from audit_events where seq > {}", new_last.seq)).await;
            let touched: Vec<i64> = (new_last.seq + 1..=CHAIN_LENGTH).collect();
            // Tail deleted, head row left alone: the head names the gap even without a checkpoint.
            assert_eq!(
                first_problem(store, None).await,
                Some(AuditProblem::TailMissing { last_seq: new_last.seq, expected_seq: CHAIN_LENGTH }),
                "{name}: tail of {cut} deleted"
            );
            exec(
                store,
                format!("update audit_chain_head set seq = {}, mac = '{}' where id = 1", new_last.seq, new_last.mac),
            )
            .await;
            assert_eq!(
                first_problem(store, Some(&checkpoint)).await,
                Some(AuditProblem::TailMissing { last_seq: new_last.seq, expected_seq: CHAIN_LENGTH }),
                "{name}: tail of {cut} deleted and head rewound"
            );
            restore(store, &original, &touched).await;
        }

        // Swaps of two rows (everything but the sequence number, i.e. the rows change places).
        for _ in 0..CASES {
            let i = rng.random_range(1..CHAIN_LENGTH);
            let j = rng.random_range(i + 1..=CHAIN_LENGTH);
            let (a, b) = (&original[(i - 1) as usize], &original[(j - 1) as usize]);
            exec(store, format!("delete from audit_events where seq in ({i}, {j})")).await;
            exec(store, insert_sql(&StoredAuditEvent { seq: i, ..b.clone() })).await;
            exec(store, insert_sql(&StoredAuditEvent { seq: j, ..a.clone() })).await;
            let problem = first_problem(store, Some(&checkpoint)).await;
            assert_eq!(problem.as_ref().map(problem_seq), Some(i), "{name}: swapped {i} and {j}: {problem:?}");
            restore(store, &original, &[i, j]).await;
        }

        // A forged event appended at the end (with the head moved to it), without the key.
        let last = original.last().unwrap();
        let forged = StoredAuditEvent {
            seq: CHAIN_LENGTH + 1,
            prev_mac: last.mac.clone(),
            mac: "00".repeat(32),
            action: "patient.update".into(),
            ..last.clone()
        };
        exec(store, insert_sql(&forged)).await;
        exec(store, format!("update audit_chain_head set seq = {}, mac = '{}' where id = 1", forged.seq, forged.mac))
            .await;
        assert_eq!(
            first_problem(store, Some(&checkpoint)).await,
            Some(AuditProblem::Altered { seq: CHAIN_LENGTH + 1 })
        );
        restore(store, &original, &[]).await;

        // Rewriting from some event on, recomputing every MAC with a guessed key.
        let wrong_key = AuditKey::new("not-the-key-not-the-key-not-the-key");
        let from = rng.random_range(1..=CHAIN_LENGTH);
        rewrite_from(store, &original, from, &wrong_key).await;
        assert_eq!(first_problem(store, None).await, Some(AuditProblem::Altered { seq: from }), "{name}: wrong key");
        restore(store, &original, &(from..=CHAIN_LENGTH).collect::<Vec<_>>()).await;

        // Rewriting with the real key (a stolen key): the chain verifies, the external checkpoint does not.
        let from = rng.random_range(1..=CHAIN_LENGTH);
        rewrite_from(store, &original, from, &AuditKey::new(common::TEST_AUDIT_KEY)).await;
        assert_eq!(first_problem(store, None).await, None, "{name}: a chain recomputed with the key verifies alone");
        assert_eq!(
            first_problem(store, Some(&checkpoint)).await,
            Some(AuditProblem::CheckpointMismatch { seq: CHAIN_LENGTH }),
            "{name}: the checkpoint catches it"
        );
        restore(store, &original, &(from..=CHAIN_LENGTH).collect::<Vec<_>>()).await;

        assert_eq!(first_problem(store, Some(&checkpoint)).await, None, "{name}: restored chain verifies");
    }
}

/// Alter event `from` and recompute the MACs of it and every later event with `key`, moving the head.
async fn rewrite_from(store: &Store, original: &[StoredAuditEvent], from: i64, key: &AuditKey) {
    let mut prev_mac = if from == 1 { String::new() } else { original[(from - 2) as usize].mac.clone() };
    let mut rewritten = Vec::new();
    for event in &original[(from - 1) as usize..] {
        let mut event = event.clone();
        if event.seq == from {
            event.reason = Some("rewritten".into());
        }
        event.prev_mac = prev_mac.clone();
        event.mac = event.expected_mac(key);
        prev_mac = event.mac.clone();
        rewritten.push(event);
    }
    let last = rewritten.last().unwrap();
    let mut statements = vec![format!("delete from audit_events where seq >= {from}")];
    statements.extend(rewritten.iter().map(insert_sql));
    statements.push(format!("update audit_chain_head set seq = {}, mac = '{}' where id = 1", last.seq, last.mac));
    exec_in_one_transaction(store, statements).await;
}

#[tokio::test]
async fn untouched_chains_of_any_length_verify() {
    for db in common::backends().await {
        let store = &db.store;
        let empty = store.audit_checkpoint().await.unwrap();
        assert_eq!(store.verify_audit_chain(Some(&empty)).await.unwrap().problem, None, "{}", db.name);
        let actor = Actor::new("user:1", "staff");
        for n in 1..=40 {
            let event = AuditEvent::new(&actor, "patient.view", "patient").detail(json!({ "n": n, "q": "it's" }));
            store.record_view(&event).await.unwrap();
            let verification = store.verify_audit_chain(Some(&empty)).await.unwrap();
            assert_eq!((verification.problem, verification.last_seq), (None, n), "{}", db.name);
        }
        // A checkpoint from another database (or a different key) does not match.
        let foreign = AuditCheckpoint { seq: 3, mac: "ab".repeat(32), at: empty.at };
        assert_eq!(
            store.verify_audit_chain(Some(&foreign)).await.unwrap().problem,
            Some(AuditProblem::CheckpointMismatch { seq: 3 })
        );
    }
}

#[tokio::test]
async fn the_database_refuses_to_change_or_delete_audit_rows() {
    for db in common::backends().await {
        let store = &db.store;
        store.record_view(&AuditEvent::new(&Actor::new("user:1", "staff"), "patient.view", "patient")).await.unwrap();
        let attempts =
            ["update audit_events set actor = 'someone-else' where seq = 1", "delete from audit_events where seq = 1"];
        for sql in attempts {
            let result = match &store.pools {
                refill_store::Pools::Sqlite { write, .. } => sqlx::query(sql).execute(write).await.map(|_| ()),
                refill_store::Pools::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
            };
            let error = result.expect_err("the append-only trigger must refuse");
            assert!(error.to_string().contains("append-only"), "{}: {error}", db.name);
        }
        if store.backend() == Backend::Postgres {
            let refill_store::Pools::Postgres(pool) = &store.pools else { unreachable!() };
            let error = sqlx::query("truncate audit_events").execute(pool).await.expect_err("truncate refused");
            assert!(error.to_string().contains("append-only"), "{error}");
        }
        assert!(store.verify_audit_chain(None).await.unwrap().is_intact(), "{}", db.name);
    }
}

#[test]
fn checkpoint_lines_round_trip_and_reject_edits() {
    let key = AuditKey::new(common::TEST_AUDIT_KEY);
    let checkpoint = AuditCheckpoint {
        seq: 1234,
        mac: "ab".repeat(32),
        at: chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:00.123456Z").unwrap().to_utc(),
    };
    let line = checkpoint.to_line(&key);
    assert_eq!(AuditCheckpoint::parse_line(&line, &key), Ok(checkpoint.clone()));
    let edited = line.replace("seq=1234", "seq=1200");
    assert!(AuditCheckpoint::parse_line(&edited, &key).unwrap_err().contains("signature"));
    assert!(AuditCheckpoint::parse_line(&line, &AuditKey::new("another-key-another-key-another-key")).is_err());
    assert!(AuditCheckpoint::parse_line("seq=1 mac=ab", &key).unwrap_err().contains("at"));
}
