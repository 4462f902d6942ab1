//! CDS Hooks feedback on SQLite and PostgreSQL: items stored as received with one audit event, read
//! back by card; an unknown outcome is refused and nothing is written.

mod common;

use refill_store::Actor;
use refill_store::cds::NewCdsFeedback;

fn item(card: &str, outcome: &str) -> NewCdsFeedback {
    NewCdsFeedback {
        service_id: "opioid-refill-order-sign".into(),
        card_uuid: card.into(),
        outcome: outcome.into(),
        accepted_suggestions: if outcome == "accepted" { vec!["s-1".into()] } else { Vec::new() },
        override_reason_code: (outcome == "overridden").then(|| "snooze-1-month".into()),
        override_reason_system: (outcome == "overridden")
            .then(|| "http://fhir.org/guides/cdc/opioid-cds/CodeSystem/opioidcds-overrideReasons".into()),
        override_reason_display: (outcome == "overridden").then(|| "Snooze 1 month".into()),
        user_comment: None,
        outcome_at: "2026-12-08T10:00:00Z".into(),
        received_from: "https://ehr.example".into(),
    }
}

#[tokio::test]
async fn feedback_is_stored_as_received_with_its_audit_event() {
    for db in common::backends().await {
        let store = &db.store;
        let actor = Actor::new("ehr:https://ehr.example", "ehr");
        let mut tx = store.begin().await.unwrap();
        let ids = store
            .record_cds_feedback(&mut tx, &[item("card-a", "accepted"), item("card-b", "overridden")], &actor)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(ids.len(), 2, "{}", db.name);
        let a = store.cds_feedback_for_card("card-a").await.unwrap();
        assert_eq!(a.len(), 1, "{}", db.name);
        assert_eq!(a[0].feedback, item("card-a", "accepted"), "{}", db.name);
        let b = store.cds_feedback_for_card("card-b").await.unwrap();
        assert_eq!(b[0].feedback.override_reason_code.as_deref(), Some("snooze-1-month"), "{}", db.name);
        let head = store.audit_head().await.unwrap();
        let events = store.audit_events(1, head.seq).await.unwrap();
        assert_eq!(events.iter().filter(|e| e.action == "cds.feedback").count(), 1, "{}", db.name);

        let mut tx = store.begin().await.unwrap();
        let refused = store.record_cds_feedback(&mut tx, &[item("card-c", "ignored")], &actor).await;
        assert!(refused.is_err(), "{}", db.name);
        tx.rollback().await.unwrap();
        assert!(store.cds_feedback_for_card("card-c").await.unwrap().is_empty(), "{}", db.name);
    }
}
