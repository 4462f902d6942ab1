//! Outbox delivery against a real SMTP server over TCP (aiosmtpd, scripts/flaky_smtp.py) and a real
//! database (SQLite file always, PostgreSQL when reachable): server down then up, ambiguous drops,
//! 5xx refusals, staff alerts, reminders whose date passed, patients without consent.

#[path = "../../refill-store/tests/common/mod.rs"]
mod common;
#[path = "../../refill-notify/tests/support/sample.rs"]
mod sample;
#[path = "../../refill-notify/tests/support/smtp_peer.rs"]
mod smtp_peer;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use refill_jobs::delivery::{self, DeliverySettings, PatientEmail};
use refill_notify::{Composer, Mailer, Moment, MorningDigest, NotifySettings, PatientNoticeKind, SmtpSettings};
use refill_rules::PatientId;
use refill_store::outbox::{self, EmailContact, OutboxState};
use refill_store::{Actor, ContactPreference, PatientDetails, Store};
use smtp_peer::{PeerOptions, SmtpPeer};

fn zone() -> Tz {
    "America/New_York".parse().unwrap()
}

fn composer() -> Composer {
    Composer::new(sample::northside(&["desk@northside.example"], &[])).unwrap()
}

fn mailer(port: u16) -> Mailer {
    Mailer::new(&SmtpSettings { timeout_secs: 5, ..SmtpSettings::loopback_plain(port) }).unwrap()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 8, 14, 0, 0).unwrap()
}

fn clinic_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 8).unwrap()
}

async fn reachable_patient(store: &Store, n: usize) -> PatientId {
    let mut details = PatientDetails::new(format!("p-{n}"), "Ana", format!("Family{n}"));
    details.email = Some(format!("patient{n}@example.net"));
    details.email_consent = true;
    details.contact_preference = ContactPreference::Email;
    let mut tx = store.begin().await.unwrap();
    let (id, _) = tx.upsert_patient(&details, &Actor::system()).await.unwrap();
    tx.commit().await.unwrap();
    id
}

/// Queue one visit-due notice per patient; returns the outbox Message-IDs.
async fn queue_notices(store: &Store, count: usize, about: NaiveDate) -> Vec<String> {
    let composer = composer();
    for n in 0..count {
        let patient = reachable_patient(store, n).await;
        let contact = outbox::email_contact(store, patient).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let outcome = delivery::queue_patient_notice(
            &mut tx,
            &composer,
            &contact,
            patient,
            PatientNoticeKind::VisitDue,
            Moment::Date(about),
            clinic_date(),
            zone(),
            t0(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(outcome, PatientEmail::Queued);
    }
    outbox::message_ids(store).await.unwrap().into_iter().map(|(id, _, _)| id).collect()
}

fn counts_by_message_id(received: &[smtp_peer::Received]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for message in received {
        *counts.entry(message.message_id.clone().unwrap_or_default()).or_insert(0) += 1;
    }
    counts
}

fn about_next_week() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 15).unwrap()
}

#[tokio::test]
async fn relay_down_for_a_while_then_up_every_message_arrives_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = smtp_peer::free_port();
    for db in common::backends().await {
        let store = &db.store;
        let ids = queue_notices(store, 20, about_next_week()).await;
        let mailer = mailer(port);
        let settings = DeliverySettings::default();

        // Nobody listens: every try fails before anything is handed over, and retries are planned.
        let report = delivery::deliver_due(store, &mailer, t0(), &settings).await.unwrap();
        assert_eq!((report.claimed, report.retried, report.ambiguous, report.sent), (20, 20, 0, 0), "{}", db.name);
        let report =
            delivery::deliver_due(store, &mailer, t0() + chrono::Duration::seconds(31), &settings).await.unwrap();
        assert_eq!(report.retried, 20, "second round still down ({})", db.name);

        // Backoff: the third try is due 60 s after the second.
        let early =
            delivery::deliver_due(store, &mailer, t0() + chrono::Duration::seconds(60), &settings).await.unwrap();
        assert_eq!(early.claimed, 0, "{}", db.name);

        let Some(peer) = SmtpPeer::start_on(dir.path(), port, PeerOptions::default()) else { return };
        let report =
            delivery::deliver_due(store, &mailer, t0() + chrono::Duration::seconds(95), &settings).await.unwrap();
        assert_eq!(report.sent, 20, "{} {report:?}", db.name);

        let received = peer.wait_for(20, Duration::from_secs(5));
        let counts = counts_by_message_id(&received);
        assert_eq!(received.len(), 20, "{}: no duplicates", db.name);
        for id in &ids {
            assert_eq!(counts.get(id), Some(&1), "{}: {id} arrived exactly once", db.name);
        }
        for (_, state, ambiguous) in outbox::message_ids(store).await.unwrap() {
            assert_eq!((state, ambiguous), (OutboxState::Sent, 0));
        }
        let sample = outbox::list_by_state(store, OutboxState::Sent, 1).await.unwrap().remove(0);
        assert!(sample.smtp_reply.unwrap().starts_with("250"), "the server's reply is kept");
        assert_eq!(sample.attempts, 3);
        drop(peer);
        std::fs::remove_file(dir.path().join(format!("received-{port}.jsonl"))).ok();
    }
}

#[tokio::test]
async fn dropped_replies_resend_the_same_message_id_and_every_duplicate_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::sqlite().await;
    let store = &db.store;
    let ids = queue_notices(store, 30, about_next_week()).await;
    let options = PeerOptions { drop: 0.3, seed: Some(7), ..PeerOptions::default() };
    let Some(peer) = SmtpPeer::start(dir.path(), options) else { return };
    let mailer = mailer(peer.port);
    let settings = DeliverySettings::default();
    let mut now = t0();
    for _ in 0..40 {
        delivery::deliver_due(store, &mailer, now, &settings).await.unwrap();
        now += chrono::Duration::minutes(16);
    }
    let received = peer.received();
    let counts = counts_by_message_id(&received);
    let stored = outbox::message_ids(store).await.unwrap();
    let mut duplicates = 0;
    for (message_id, state, ambiguous) in &stored {
        assert_eq!(*state, OutboxState::Sent);
        let copies = counts.get(message_id).copied().unwrap_or(0);
        assert!(copies >= 1, "{message_id} lost");
        assert!(copies as i64 - 1 <= *ambiguous, "{message_id}: {copies} copies but {ambiguous} ambiguous sends");
        duplicates += copies - 1;
    }
    assert_eq!(counts.len(), ids.len(), "nothing arrived that the outbox does not know");
    assert!(duplicates > 0, "with DROP=0.3 some replies were lost and resent");
}

#[tokio::test]
async fn refusals_stop_and_long_failures_alert_staff() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::sqlite().await;
    let store = &db.store;
    queue_notices(store, 2, about_next_week()).await;
    let options = PeerOptions { reply: Some("550 5.1.1 mailbox unavailable".into()), ..PeerOptions::default() };
    let Some(refusing) = SmtpPeer::start(dir.path(), options) else { return };
    let settings = DeliverySettings::default();
    let report = delivery::deliver_due(store, &mailer(refusing.port), t0(), &settings).await.unwrap();
    assert_eq!(report.failed, 2);
    let later = delivery::deliver_due(store, &mailer(refusing.port), t0() + chrono::Duration::hours(1), &settings)
        .await
        .unwrap();
    assert_eq!(later.claimed, 0, "a 5xx is not retried");
    let problems = outbox::delivery_problems(store, 10).await.unwrap();
    assert_eq!(problems.len(), 2);
    assert!(problems.iter().all(|p| p.final_reason.as_deref().is_some_and(|r| r.contains("550"))), "{problems:?}");

    // A relay that stays down: staff are alerted after an hour, once.
    let db = common::sqlite().await;
    let store = &db.store;
    queue_notices(store, 1, about_next_week()).await;
    let down = mailer(smtp_peer::free_port());
    let mut alerted = Vec::new();
    let mut now = t0();
    while now <= t0() + chrono::Duration::minutes(75) {
        alerted.extend(delivery::deliver_due(store, &down, now, &settings).await.unwrap().alerted);
        now += chrono::Duration::minutes(15);
    }
    assert_eq!(alerted.len(), 1, "one alert after an hour of failure");
    assert_eq!(outbox::delivery_problems(store, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_reminder_whose_date_passed_is_cancelled_not_sent_late() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::sqlite().await;
    let store = &db.store;
    // About tomorrow (clinic time); the relay is down until the day after.
    queue_notices(store, 1, NaiveDate::from_ymd_opt(2026, 12, 9).unwrap()).await;
    let down = mailer(smtp_peer::free_port());
    let settings = DeliverySettings::default();
    delivery::deliver_due(store, &down, t0(), &settings).await.unwrap();
    let Some(peer) = SmtpPeer::start(dir.path(), PeerOptions::default()) else { return };
    // 2026-12-10 05:00 UTC is midnight in New York: the 9th is over.
    let after = Utc.with_ymd_and_hms(2026, 12, 10, 5, 0, 0).unwrap();
    let report = delivery::deliver_due(store, &mailer(peer.port), after, &settings).await.unwrap();
    assert_eq!((report.cancelled, report.claimed), (1, 0));
    let status = outbox::list_by_state(store, OutboxState::Cancelled, 10).await.unwrap();
    assert_eq!(status.len(), 1);
    assert!(status[0].final_reason.as_deref().unwrap().contains("not sent late"));
    assert!(peer.wait_for(1, Duration::from_millis(300)).is_empty());
}

#[tokio::test]
async fn patients_without_consent_get_no_email_and_staff_see_it() {
    let db = common::sqlite().await;
    let store = &db.store;
    let mut details = PatientDetails::new("p-x", "Ben", "Nowak");
    details.email = Some("ben@example.net".into());
    let mut tx = store.begin().await.unwrap();
    let (patient, _) = tx.upsert_patient(&details, &Actor::system()).await.unwrap();
    tx.commit().await.unwrap();
    let contact = outbox::email_contact(store, patient).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    let outcome = delivery::queue_patient_notice(
        &mut tx,
        &composer(),
        &contact,
        patient,
        PatientNoticeKind::PlanChange,
        Moment::Date(about_next_week()),
        clinic_date(),
        zone(),
        t0(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(outcome, PatientEmail::NotEmailed(EmailContact::NoConsent));
    assert!(outbox::message_ids(store).await.unwrap().is_empty());
    let contacts = outbox::email_contacts(store, &[patient]).await.unwrap();
    assert_eq!(contacts[&patient].staff_note(), Some("no email consent"));
}

#[tokio::test]
async fn the_morning_digest_reaches_staff() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::sqlite().await;
    let store = &db.store;
    let Some(peer) = SmtpPeer::start(dir.path(), PeerOptions::default()) else { return };
    let mut tx = store.begin().await.unwrap();
    let data = outbox::morning_digest_in(&mut tx, clinic_date(), 7).await.unwrap();
    let view: MorningDigest = delivery::morning_digest_view(clinic_date(), data);
    let email = composer().morning_digest(&view, &["desk@northside.example".to_string()], t0()).unwrap();
    delivery::queue_email(&mut tx, &email, None, zone(), t0()).await.unwrap();
    tx.commit().await.unwrap();
    let report = delivery::deliver_due(store, &mailer(peer.port), t0(), &DeliverySettings::default()).await.unwrap();
    assert_eq!(report.sent, 1);
    let received = peer.wait_for(1, Duration::from_secs(5));
    assert_eq!(received[0].rcpt_tos, vec!["desk@northside.example".to_string()]);
    assert!(received[0].data.contains("Morning digest for 2026-12-08"), "{}", received[0].data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_senders_on_one_outbox_send_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(peer) = SmtpPeer::start(dir.path(), PeerOptions::default()) else { return };
    for db in common::backends().await {
        let before = peer.received().len();
        let ids = queue_notices(&db.store, 60, about_next_week()).await;
        let settings = DeliverySettings { batch: 5, ..DeliverySettings::default() };
        let mut senders = Vec::new();
        for _ in 0..3 {
            // Separate pools: three processes in effect.
            let store = db.open_another().await;
            let mailer = mailer(peer.port);
            let settings = settings.clone();
            senders.push(tokio::spawn(async move {
                let mut sent = 0;
                loop {
                    let report = delivery::deliver_due(&store, &mailer, t0(), &settings).await.unwrap();
                    if report.claimed == 0 {
                        return sent;
                    }
                    sent += report.sent;
                }
            }));
        }
        let mut total = 0;
        for sender in senders {
            total += sender.await.unwrap();
        }
        assert_eq!(total, 60, "{}", db.name);
        let received = peer.wait_for(before + 60, Duration::from_secs(5));
        let counts = counts_by_message_id(&received[before..]);
        assert_eq!(counts.len(), 60, "{}", db.name);
        for id in &ids {
            assert_eq!(counts.get(id), Some(&1), "{}: {id}", db.name);
        }
    }
}

#[tokio::test]
async fn an_urgent_escalation_alerts_physicians_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::sqlite().await;
    let Some(peer) = SmtpPeer::start(dir.path(), PeerOptions::default()) else { return };
    let composer = Composer::new(NotifySettings {
        physician_recipients: vec!["dr.lee@northside.example".into()],
        ..composer().settings().clone()
    })
    .unwrap();
    let alert = refill_notify::UrgentAlert {
        escalation_ref: "exception-17".into(),
        patient_ref: "patient #17".into(),
        summary: "overdose or sedation signal".into(),
        raised_at: clinic_date().and_hms_opt(9, 40, 0).unwrap(),
    };
    for _ in 0..2 {
        let mut tx = db.store.begin().await.unwrap();
        delivery::queue_urgent_alert(&mut tx, &composer, &alert, zone(), t0()).await.unwrap();
        tx.commit().await.unwrap();
    }
    let report =
        delivery::deliver_due(&db.store, &mailer(peer.port), t0(), &DeliverySettings::default()).await.unwrap();
    assert_eq!(report.sent, 1, "queued twice, sent once");
    let received = peer.wait_for(1, Duration::from_secs(5));
    assert_eq!(received[0].rcpt_tos, vec!["dr.lee@northside.example".to_string()]);
    assert_eq!(received[0].header("Subject").as_deref(), Some("Urgent: a patient needs your review"));
    assert!(received[0].data.contains("patient #17"));
}

#[tokio::test]
async fn a_relay_restart_under_pooled_connections_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::sqlite().await;
    let Some(mut peer) = SmtpPeer::start(dir.path(), PeerOptions::default()) else { return };
    let mailer = mailer(peer.port);
    let settings = DeliverySettings::default();
    queue_notices(&db.store, 5, about_next_week()).await;
    let first = delivery::deliver_due(&db.store, &mailer, t0(), &settings).await.unwrap();
    assert_eq!(first.sent, 5);

    // The relay restarts: the pooled connections are now dead sockets.
    peer.restart(dir.path());
    let composer = composer();
    for n in 5..15 {
        let patient = reachable_patient(&db.store, n).await;
        let contact = outbox::email_contact(&db.store, patient).await.unwrap();
        let mut tx = db.store.begin().await.unwrap();
        delivery::queue_patient_notice(
            &mut tx,
            &composer,
            &contact,
            patient,
            PatientNoticeKind::VisitDue,
            Moment::Date(about_next_week()),
            clinic_date(),
            zone(),
            t0(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    let mut now = t0();
    for _ in 0..10 {
        delivery::deliver_due(&db.store, &mailer, now, &settings).await.unwrap();
        now += chrono::Duration::minutes(16);
    }
    let counts = counts_by_message_id(&peer.received());
    let stored = outbox::message_ids(&db.store).await.unwrap();
    assert_eq!(stored.len(), 15);
    for (message_id, state, ambiguous) in stored {
        assert_eq!(state, OutboxState::Sent, "{message_id}");
        let copies = counts.get(&message_id).copied().unwrap_or(0);
        assert!(copies >= 1 && copies as i64 - 1 <= ambiguous, "{message_id}: {copies} copies, {ambiguous} ambiguous");
    }
}
