//! The email outbox on SQLite and PostgreSQL: one row per idempotency key, claims with leases and
//! attempt rows, fenced outcomes, rescue of a dead sender's messages as ambiguous, cancellation of
//! reminders whose date has passed, giving up after the maximum age, staff alerts once, and the
//! patients' email reachability.

mod common;

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use refill_rules::PatientId;
use refill_store::outbox::{self, AttemptResult, EmailContact, Enqueued, NewOutboxEmail, OutboxAudience, OutboxState};
use refill_store::{Actor, ContactPreference, PatientDetails, Store};
use uuid::Uuid;

fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 8, 12, 0, 0).unwrap() + chrono::Duration::minutes(minutes)
}

fn email(key: &str, patient: Option<PatientId>) -> NewOutboxEmail {
    let id = Uuid::new_v4();
    NewOutboxEmail {
        id,
        idempotency_key: key.to_string(),
        kind: "patient-visit-due".into(),
        audience: OutboxAudience::Patient,
        patient_id: patient,
        message_id: format!("<{id}@mail.test.example>"),
        envelope_from: "no-reply@test.example".into(),
        envelope_to: vec!["a@example.net".into(), "b@example.net".into()],
        raw_message: format!("Message-ID: <{id}@mail.test.example>\r\n\r\nhello\r\n").into_bytes(),
        about_date: Some(NaiveDate::from_ymd_opt(2026, 12, 12).unwrap()),
        expires_at: Some(at(4 * 24 * 60)),
    }
}

async fn put(store: &Store, email: &NewOutboxEmail, now: DateTime<Utc>) -> Enqueued {
    let mut tx = store.begin().await.unwrap();
    let result = outbox::enqueue(&mut tx, email, now).await.unwrap();
    tx.commit().await.unwrap();
    result
}

async fn patient(store: &Store, external_id: &str, setup: impl FnOnce(&mut PatientDetails)) -> PatientId {
    let mut details = PatientDetails::new(external_id, "Ana", "Kowalczyk");
    setup(&mut details);
    let mut tx = store.begin().await.unwrap();
    let (id, _) = tx.upsert_patient(&details, &Actor::system()).await.unwrap();
    tx.commit().await.unwrap();
    id
}

#[tokio::test]
async fn one_row_per_idempotency_key_and_the_bytes_are_kept() {
    for db in common::backends().await {
        let store = &db.store;
        let first = email("patient-visit-due:1:2026-12-08", None);
        assert_eq!(put(store, &first, at(0)).await, Enqueued::Inserted, "{}", db.name);
        let again = email("patient-visit-due:1:2026-12-08", None);
        assert_eq!(put(store, &again, at(1)).await, Enqueued::AlreadyQueued, "{}", db.name);

        let claimed = outbox::claim_due(store, at(2), Duration::from_secs(60), 10).await.unwrap();
        assert_eq!(claimed.len(), 1, "{}", db.name);
        assert_eq!(claimed[0].message_id, first.message_id, "the first writer's Message-ID wins");
        assert_eq!(claimed[0].raw_message, first.raw_message);
        assert_eq!(claimed[0].envelope_to, first.envelope_to);
        assert_eq!(claimed[0].attempt, 1);
        let status = outbox::status(store, &first.id.to_string()).await.unwrap().unwrap();
        assert_eq!(status.state, OutboxState::Sending, "{}", db.name);
    }
}

#[tokio::test]
async fn sent_retry_and_failure_are_recorded_with_their_reasons() {
    for db in common::backends().await {
        let store = &db.store;
        let sent = email("k:sent", None);
        let retried = email("k:retry", None);
        let refused = email("k:refused", None);
        for e in [&sent, &retried, &refused] {
            put(store, e, at(0)).await;
        }
        let claimed = outbox::claim_due(store, at(0), Duration::from_secs(60), 10).await.unwrap();
        assert_eq!(claimed.len(), 3, "{}", db.name);
        // A second claim finds nothing: every row is leased.
        assert!(outbox::claim_due(store, at(0), Duration::from_secs(60), 10).await.unwrap().is_empty());
        for claim in &claimed {
            let result = if claim.id == sent.id.to_string() {
                AttemptResult::Sent { reply: "250 2.0.0 OK queued as 7F3A".into() }
            } else if claim.id == retried.id.to_string() {
                AttemptResult::Retry { reason: "421 busy".into(), ambiguous: false, retry_at: at(5) }
            } else {
                AttemptResult::Failed { reason: "550 5.1.1 no such mailbox".into() }
            };
            assert!(outbox::finish_attempt(store, claim, &result, at(1)).await.unwrap(), "{}", db.name);
        }
        let status = outbox::status(store, &sent.id.to_string()).await.unwrap().unwrap();
        assert_eq!(status.state, OutboxState::Sent);
        assert_eq!(status.smtp_reply.as_deref(), Some("250 2.0.0 OK queued as 7F3A"));
        assert_eq!(status.sent_at, Some(at(1)));

        let status = outbox::status_by_key(store, "k:retry").await.unwrap().unwrap();
        assert_eq!(status.state, OutboxState::Pending);
        assert_eq!(status.last_error.as_deref(), Some("421 busy"));
        assert_eq!(status.first_failure_at, Some(at(1)));
        assert_eq!(status.next_attempt_at, at(5));
        assert_eq!(status.ambiguous_sends, 0);
        // Not due before its retry time, due after.
        assert!(outbox::claim_due(store, at(4), Duration::from_secs(60), 10).await.unwrap().is_empty());
        let again = outbox::claim_due(store, at(5), Duration::from_secs(60), 10).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempt, 2);
        assert_eq!(again[0].first_failure_at, Some(at(1)));

        let status = outbox::status(store, &refused.id.to_string()).await.unwrap().unwrap();
        assert_eq!(status.state, OutboxState::Failed);
        assert_eq!(status.final_reason.as_deref(), Some("550 5.1.1 no such mailbox"));
        let problems = outbox::delivery_problems(store, 10).await.unwrap();
        assert_eq!(problems.iter().map(|p| p.idempotency_key.as_str()).collect::<Vec<_>>(), vec!["k:refused"]);

        let attempts = outbox::attempts(store, &retried.id.to_string()).await.unwrap();
        assert_eq!(attempts.len(), 2, "{}", db.name);
        assert_eq!(attempts[0].outcome.as_deref(), Some("transient"));
        assert_eq!(attempts[1].outcome, None, "the second try is still running");

        let counts = outbox::state_counts(store).await.unwrap();
        assert!(counts.contains(&(OutboxState::Sent, 1)) && counts.contains(&(OutboxState::Sending, 1)), "{counts:?}");
    }
}

#[tokio::test]
async fn a_dead_senders_messages_are_rescued_as_ambiguous_and_its_late_outcome_is_refused() {
    for db in common::backends().await {
        let store = &db.store;
        let message = email("k:crash", None);
        put(store, &message, at(0)).await;
        let claimed = outbox::claim_due(store, at(0), Duration::from_secs(30), 10).await.unwrap();
        assert_eq!(claimed.len(), 1);

        // The lease has not run out: nothing to rescue.
        assert_eq!(outbox::rescue_expired_leases(store, at(0), at(0)).await.unwrap(), 0, "{}", db.name);
        assert_eq!(outbox::rescue_expired_leases(store, at(1), at(1)).await.unwrap(), 1, "{}", db.name);
        let status = outbox::status(store, &message.id.to_string()).await.unwrap().unwrap();
        assert_eq!((status.state, status.ambiguous_sends), (OutboxState::Pending, 1));
        let attempts = outbox::attempts(store, &message.id.to_string()).await.unwrap();
        assert_eq!(attempts[0].outcome.as_deref(), Some("unknown"));

        // The stale sender wakes up and tries to record "sent": fenced out.
        let late = AttemptResult::Sent { reply: "250 late".into() };
        assert!(!outbox::finish_attempt(store, &claimed[0], &late, at(2)).await.unwrap(), "{}", db.name);

        // The next sender sends the same bytes under the same Message-ID.
        let next = outbox::claim_due(store, at(2), Duration::from_secs(30), 10).await.unwrap();
        assert_eq!(next[0].message_id, message.message_id);
        assert_eq!(next[0].raw_message, message.raw_message);
        assert_eq!(next[0].ambiguous_sends, 1);
        let ambiguous =
            AttemptResult::Retry { reason: "connection lost after data".into(), ambiguous: true, retry_at: at(3) };
        assert!(outbox::finish_attempt(store, &next[0], &ambiguous, at(2)).await.unwrap());
        let ids = outbox::message_ids(store).await.unwrap();
        assert_eq!(ids, vec![(message.message_id.clone(), OutboxState::Pending, 2)], "{}", db.name);
    }
}

#[tokio::test]
async fn passed_reminders_are_cancelled_old_failures_give_up_and_staff_are_alerted_once() {
    for db in common::backends().await {
        let store = &db.store;
        let mut passed = email("k:passed", None);
        passed.expires_at = Some(at(10));
        let mut digest = email("k:digest", None);
        digest.expires_at = None;
        digest.audience = OutboxAudience::Staff;
        put(store, &passed, at(0)).await;
        put(store, &digest, at(0)).await;

        // Both fail for a while.
        for claim in outbox::claim_due(store, at(0), Duration::from_secs(60), 10).await.unwrap() {
            let retry =
                AttemptResult::Retry { reason: "connection refused".into(), ambiguous: false, retry_at: at(90) };
            outbox::finish_attempt(store, &claim, &retry, at(0)).await.unwrap();
        }
        assert_eq!(outbox::cancel_passed(store, at(9)).await.unwrap(), 0);
        assert_eq!(outbox::cancel_passed(store, at(10)).await.unwrap(), 1, "{}", db.name);
        let status = outbox::status(store, &passed.id.to_string()).await.unwrap().unwrap();
        assert_eq!(status.state, OutboxState::Cancelled);
        assert!(status.final_reason.unwrap().contains("has passed"));

        // After an hour of failure: one alert, not repeated.
        assert!(outbox::take_new_alerts(store, at(59), Duration::from_secs(3600)).await.unwrap().is_empty());
        let alerts = outbox::take_new_alerts(store, at(60), Duration::from_secs(3600)).await.unwrap();
        assert_eq!(alerts.iter().map(|a| a.idempotency_key.as_str()).collect::<Vec<_>>(), vec!["k:digest"]);
        assert!(outbox::take_new_alerts(store, at(61), Duration::from_secs(3600)).await.unwrap().is_empty());
        let problems = outbox::delivery_problems(store, 10).await.unwrap();
        assert_eq!(problems.len(), 1, "an alerted pending message is listed for staff ({})", db.name);

        // Past the maximum age it fails with the reason.
        let max_age = Duration::from_secs(72 * 3600);
        assert_eq!(outbox::fail_too_old(store, at(72 * 60 - 1), max_age).await.unwrap(), 0);
        assert_eq!(outbox::fail_too_old(store, at(72 * 60), max_age).await.unwrap(), 1, "{}", db.name);
        let status = outbox::status(store, &digest.id.to_string()).await.unwrap().unwrap();
        assert_eq!(status.state, OutboxState::Failed);
        let reason = status.final_reason.unwrap();
        assert!(reason.contains("72 h") && reason.contains("connection refused"), "{reason}");
    }
}

#[tokio::test]
async fn email_reachability_follows_consent_address_and_preference() {
    for db in common::backends().await {
        let store = &db.store;
        let reachable = patient(store, "p-ok", |d| {
            d.email = Some("ana@example.net".into());
            d.email_consent = true;
            d.contact_preference = ContactPreference::Email;
        })
        .await;
        let no_consent = patient(store, "p-no-consent", |d| d.email = Some("x@example.net".into())).await;
        let no_address = patient(store, "p-no-address", |d| d.email_consent = true).await;
        let phone = patient(store, "p-phone", |d| {
            d.email = Some("y@example.net".into());
            d.email_consent = true;
            d.contact_preference = ContactPreference::Phone;
        })
        .await;

        assert_eq!(
            outbox::email_contact(store, reachable).await.unwrap(),
            EmailContact::Reachable { address: "ana@example.net".into(), first_name: "Ana".into() },
            "{}",
            db.name
        );
        let many = outbox::email_contacts(store, &[reachable, no_consent, no_address, phone, PatientId(999_999)])
            .await
            .unwrap();
        assert_eq!(many.len(), 4);
        assert_eq!(many[&no_consent], EmailContact::NoConsent);
        assert_eq!(many[&no_consent].staff_note(), Some("no email consent"));
        assert_eq!(many[&no_address], EmailContact::NoAddress);
        assert_eq!(many[&phone], EmailContact::PrefersPhone);
        assert!(outbox::email_contact(store, PatientId(999_999)).await.is_err());

        // Rows may name the patient (for the patient page), and list by patient.
        put(store, &email("patient-visit-due:p:2026-12-08", Some(reachable)), at(0)).await;
        assert_eq!(outbox::list_for_patient(store, reachable, 10).await.unwrap().len(), 1, "{}", db.name);
        assert_eq!(outbox::list_by_state(store, OutboxState::Pending, 10).await.unwrap().len(), 1);
    }
}
