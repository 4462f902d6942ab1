//! Issue 17, finding 7: direct edits of the rows that matter are caught by comparing them with the
//! state sealed into the audit chain, on both backends. The audit chain alone calls all of them intact.

mod common;

use refill_rules::{Decision, Evidence, Outcome, PatientId, Reason, ReasonCode, UdsAnalyteResult, UdsKind, UdsResult};
use refill_store::accounts::{self, NewUser, Role};
use refill_store::{Actor, MismatchKind, PatientDetails, Store};

/// Run one statement as someone with database access but not the audit key.
async fn exec(store: &Store, sql: &str) {
    match &store.pools {
        refill_store::Pools::Sqlite { write, .. } => {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(write).await.expect("edit");
        }
        refill_store::Pools::Postgres(pool) => {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(pool).await.expect("edit");
        }
    }
}

#[tokio::test]
async fn direct_edits_of_protected_rows_are_each_reported() {
    for db in common::backends().await {
        let store = &db.store;
        let actor = Actor::system();
        let new_user = |username: &str, role| NewUser {
            username: username.into(),
            display_name: "Test".into(),
            role,
            password_hash: "$argon2id$x".into(),
        };
        let staff = accounts::create_user(store, &new_user("dana", Role::Staff), 1_000, &actor).await.expect("user");
        let doc = accounts::create_user(store, &new_user("doc", Role::Physician), 1_000, &actor).await.expect("doc");
        let mut tx = store.begin().await.expect("begin");
        let mut details = PatientDetails::new("seal-1", "Rosa", "Quill");
        details.part2 = true;
        let patient = tx.insert_patient(&details, &actor).await.expect("patient");
        let other = tx.insert_patient(&PatientDetails::new("seal-2", "Ada", "Birch"), &actor).await.expect("other");
        let PatientId(pid) = patient;
        let order = tx.upsert_medication_order(patient, &common::oxycodone("o-1", 5.0), true).await.expect("order");
        let uds = UdsResult {
            collected_on: common::date("2026-11-01"),
            kind: UdsKind::Scheduled,
            confirmatory: false,
            analytes: vec![UdsAnalyteResult { assay: "opiates".into(), analyte: "opiates".into(), detected: true }],
            physician_reviewed_on: None,
            confidentiality: refill_rules::Confidentiality::Normal,
            specimen_validity: Default::default(),
        };
        let uds = tx.insert_uds_result(patient, &uds, Some("u-1")).await.expect("uds");
        let grant =
            accounts::grant_break_glass(&mut tx, doc.id, pid, "overdose in clinic, need history", 1_000, 61_000)
                .await
                .expect("grant");
        let decision = Decision::from_reasons(
            vec![Reason {
                code: ReasonCode::PhysicianReviewOverdue,
                outcome: Outcome::Escalate,
                evidence: vec![Evidence::text("last_review", "2025-01-01")],
                task: None,
                restricted: false,
            }],
            None,
            Some(40.0),
            "test",
        );
        let recorded = store
            .record_decision(&mut tx, &common::new_decision(patient, common::date("2026-12-01"), &decision, &actor))
            .await
            .expect("decision");
        tx.commit().await.expect("commit");
        let exception = recorded.exception_id.expect("an escalation raises an exception").0;
        let decision_id = recorded.decision_id.0;

        assert_eq!(store.verify_state().await.expect("verify").sealed_at_seq, None, "{}: nothing sealed", db.name);
        store.seal_state(&actor).await.expect("seal");
        let clean = store.verify_state().await.expect("verify");
        assert!(clean.is_intact() && clean.rows_checked >= 9, "{}: {clean:?}", db.name);

        // An audited change after the seal is accounted for.
        let record = store.patient(other).await.expect("other");
        let mut changed = record.details.clone();
        changed.email = Some("ada@example.org".into());
        store.edit_patient(other, record.version, &changed, &actor, Some("new address")).await.expect("edit");
        assert!(store.verify_state().await.expect("verify").is_intact(), "{}", db.name);

        // Eight direct edits, each a different protected fact.
        let yes = if db.name == "postgres" { "false" } else { "0" };
        exec(store, &format!("UPDATE patients SET part2 = {yes} WHERE id = {pid}")).await;
        exec(store, &format!("UPDATE users SET role = 'admin' WHERE id = {}", staff.id)).await;
        exec(store, &format!("UPDATE break_glass_grants SET expires_at_ms = 999999999999 WHERE id = {}", grant.id))
            .await;
        exec(
            store,
            &format!(
                "INSERT INTO break_glass_grants (user_id, patient_id, reason, granted_at_ms, expires_at_ms) \
                 VALUES ({}, {pid}, 'forged grant for a look', 1, 999999999999)",
                staff.id
            ),
        )
        .await;
        exec(store, &format!("UPDATE decisions SET outcome = 'APPROVE' WHERE id = {decision_id}")).await;
        exec(store, &format!("DELETE FROM exceptions WHERE id = {exception}")).await;
        exec(store, &format!("UPDATE uds_results SET analytes = '[]' WHERE id = {uds}")).await;
        exec(store, &format!("UPDATE medication_orders SET confidentiality = 'part2' WHERE id = {order}")).await;

        assert!(store.verify_audit_chain(None).await.expect("chain").is_intact(), "{}: the chain alone", db.name);
        let found = store.verify_state().await.expect("verify");
        let mut reported: Vec<(String, MismatchKind)> =
            found.mismatches.iter().map(|m| (m.table.clone(), m.kind)).collect();
        reported.sort_by(|a, b| a.0.cmp(&b.0));
        let expected = [
            ("break_glass_grants", MismatchKind::Changed),
            ("break_glass_grants", MismatchKind::Added),
            ("decisions", MismatchKind::Changed),
            ("exceptions", MismatchKind::Deleted),
            ("medication_orders", MismatchKind::Changed),
            ("patients", MismatchKind::Changed),
            ("uds_results", MismatchKind::Changed),
            ("users", MismatchKind::Changed),
        ];
        assert_eq!(found.mismatches.len(), expected.len(), "{}: {:?}", db.name, found.mismatches);
        for (table, kind) in expected {
            assert!(reported.contains(&(table.to_string(), kind)), "{}: {table} {kind:?} not in {reported:?}", db.name);
        }
        assert!(!found.seal_table_altered, "{}", db.name);

        // Editing the seal table to cover a change is itself caught.
        exec(store, &format!("UPDATE row_seals SET digest = 'x' WHERE table_name = 'patients' AND row_id = {pid}"))
            .await;
        assert!(store.verify_state().await.expect("verify").seal_table_altered, "{}", db.name);
    }
}
