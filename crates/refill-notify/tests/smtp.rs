//! The mailer against a real SMTP server over TCP (aiosmtpd via scripts/flaky_smtp.py): received
//! headers and bodies, STARTTLS with a certificate the test trusts, refusal of a server without
//! STARTTLS, and how failures are classified.

#[path = "support/sample.rs"]
mod sample;
#[path = "support/smtp_peer.rs"]
mod smtp_peer;

use chrono::{NaiveDate, Utc};
use refill_notify::{Composer, Mailer, Moment, PatientNotice, PatientNoticeKind, SendOutcome, SmtpSettings, TlsMode};
use smtp_peer::{PeerOptions, SmtpPeer, test_certificates};

fn composer() -> Composer {
    Composer::new(sample::northside(&[], &[])).unwrap()
}

fn notice() -> PatientNotice {
    PatientNotice {
        kind: PatientNoticeKind::PlanChange,
        patient_ref: "812".into(),
        first_name: "Ana".into(),
        about: Moment::Date(NaiveDate::from_ymd_opt(2026, 12, 12).unwrap()),
    }
}

fn clinic_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 8).unwrap()
}

fn short_timeouts(mut settings: SmtpSettings) -> SmtpSettings {
    settings.timeout_secs = 5;
    settings
}

#[tokio::test]
async fn the_relay_receives_the_stored_bytes_with_our_headers() {
    let dir = tempfile::tempdir().unwrap();
    let Some(peer) = SmtpPeer::start(dir.path(), PeerOptions::default()) else { return };
    let mailer = Mailer::new(&short_timeouts(SmtpSettings::loopback_plain(peer.port))).unwrap();
    let email = composer().patient_notice(&notice(), "ana@example.net", clinic_date(), Utc::now()).unwrap();

    let outcome = mailer.send_raw(&email.envelope_from, &email.envelope_to, &email.raw).await;
    let SendOutcome::Sent { reply } = outcome else { panic!("expected Sent, got {outcome:?}") };
    assert!(reply.starts_with("250"), "{reply}");
    assert!(reply.contains(&email.message_id), "the relay's reply is kept: {reply}");

    let received = peer.wait_for(1, std::time::Duration::from_secs(5));
    assert_eq!(received.len(), 1);
    let message = &received[0];
    assert_eq!(message.message_id.as_deref(), Some(email.message_id.as_str()));
    assert_eq!(message.mail_from, "no-reply@northside.example");
    assert_eq!(message.rcpt_tos, vec!["ana@example.net".to_string()]);
    assert_eq!(message.header("From").as_deref(), Some("\"Northside Care\" <no-reply@northside.example>"));
    assert_eq!(message.header("To").as_deref(), Some("ana@example.net"));
    assert_eq!(message.header("Subject").as_deref(), Some("A note from your care team"));
    let names: Vec<String> = message.header_names().iter().map(|n| n.to_ascii_lowercase()).collect();
    for name in &names {
        assert!(
            [
                "from",
                "to",
                "subject",
                "message-id",
                "date",
                "mime-version",
                "content-type",
                "content-transfer-encoding"
            ]
            .contains(&name.as_str()),
            "unexpected header {name}"
        );
    }
    assert!(message.data.contains("Your care plan changes on Saturday 12 December 2026."), "{}", message.data);
    assert!(message.data.contains("https://portal.northside.example/sign-in"));
    assert!(message.data.contains("text/html"), "the HTML alternative is there");
    // Sent verbatim: the body the relay got is the body we stored.
    let stored = String::from_utf8(email.raw.clone()).unwrap();
    let stored_body = stored.split_once("\r\n\r\n").unwrap().1;
    assert!(message.data.contains(stored_body.trim_end()), "body differs from the stored bytes");
}

#[tokio::test]
async fn starttls_with_a_trusted_certificate_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = test_certificates(dir.path()) else { return };
    let options = PeerOptions { tls: Some((cert, key)), ..PeerOptions::default() };
    let Some(peer) = SmtpPeer::start(dir.path(), options) else { return };
    let settings = SmtpSettings {
        tls: TlsMode::Starttls,
        ca_file: Some(ca),
        ..short_timeouts(SmtpSettings::loopback_plain(peer.port))
    };
    let mailer = Mailer::new(&settings).unwrap();
    let email = composer().patient_notice(&notice(), "ana@example.net", clinic_date(), Utc::now()).unwrap();
    let outcome = mailer.send_raw(&email.envelope_from, &email.envelope_to, &email.raw).await;
    assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    let received = peer.wait_for(1, std::time::Duration::from_secs(5));
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].message_id.as_deref(), Some(email.message_id.as_str()));
}

#[tokio::test]
async fn starttls_without_a_trusted_certificate_refuses_to_send() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_ca, cert, key)) = test_certificates(dir.path()) else { return };
    let options = PeerOptions { tls: Some((cert, key)), ..PeerOptions::default() };
    let Some(peer) = SmtpPeer::start(dir.path(), options) else { return };
    // The public roots only: the test CA is not trusted, so the handshake must fail.
    let settings = SmtpSettings { tls: TlsMode::Starttls, ..short_timeouts(SmtpSettings::loopback_plain(peer.port)) };
    let mailer = Mailer::new(&settings).unwrap();
    let email = composer().patient_notice(&notice(), "ana@example.net", clinic_date(), Utc::now()).unwrap();
    let outcome = mailer.send_raw(&email.envelope_from, &email.envelope_to, &email.raw).await;
    assert!(matches!(outcome, SendOutcome::Transient { .. }), "{outcome:?}");
    assert!(peer.wait_for(1, std::time::Duration::from_millis(500)).is_empty());
}

#[tokio::test]
async fn starttls_refuses_a_server_that_does_not_offer_it() {
    let dir = tempfile::tempdir().unwrap();
    let Some((ca, _, _)) = test_certificates(dir.path()) else { return };
    let Some(peer) = SmtpPeer::start(dir.path(), PeerOptions::default()) else { return };
    let settings = SmtpSettings {
        tls: TlsMode::Starttls,
        ca_file: Some(ca),
        ..short_timeouts(SmtpSettings::loopback_plain(peer.port))
    };
    let mailer = Mailer::new(&settings).unwrap();
    let email = composer().patient_notice(&notice(), "ana@example.net", clinic_date(), Utc::now()).unwrap();
    let outcome = mailer.send_raw(&email.envelope_from, &email.envelope_to, &email.raw).await;
    // Nothing was handed over in plain text: a retryable failure, and the server has no message.
    assert!(matches!(outcome, SendOutcome::Transient { .. } | SendOutcome::Permanent { .. }), "{outcome:?}");
    assert!(!matches!(outcome, SendOutcome::Sent { .. }));
    assert!(peer.wait_for(1, std::time::Duration::from_millis(500)).is_empty(), "sent without TLS");
}

#[tokio::test]
async fn replies_and_unreachable_relays_are_classified() {
    let dir = tempfile::tempdir().unwrap();
    let email = composer().patient_notice(&notice(), "ana@example.net", clinic_date(), Utc::now()).unwrap();

    let options = PeerOptions { reply: Some("550 5.7.1 mailbox refused".into()), ..PeerOptions::default() };
    let Some(refusing) = SmtpPeer::start(dir.path(), options) else { return };
    let mailer = Mailer::new(&short_timeouts(SmtpSettings::loopback_plain(refusing.port))).unwrap();
    let outcome = mailer.send_raw(&email.envelope_from, &email.envelope_to, &email.raw).await;
    assert!(
        matches!(&outcome, SendOutcome::Permanent { reason } if reason.contains("550") || reason.contains("refused")),
        "{outcome:?}"
    );

    let options = PeerOptions { reply: Some("451 4.3.0 try again later".into()), ..PeerOptions::default() };
    let Some(busy) = SmtpPeer::start(dir.path(), options) else { return };
    let mailer = Mailer::new(&short_timeouts(SmtpSettings::loopback_plain(busy.port))).unwrap();
    let outcome = mailer.send_raw(&email.envelope_from, &email.envelope_to, &email.raw).await;
    assert!(matches!(outcome, SendOutcome::Transient { .. }), "{outcome:?}");

    // Nobody listens: refused before anything was handed over, so not ambiguous.
    let mailer = Mailer::new(&short_timeouts(SmtpSettings::loopback_plain(smtp_peer::free_port()))).unwrap();
    let outcome = mailer.send_raw(&email.envelope_from, &email.envelope_to, &email.raw).await;
    assert!(matches!(outcome, SendOutcome::Transient { .. }), "{outcome:?}");

    // The relay takes the message but the connection drops before its reply: ambiguous.
    let options = PeerOptions { drop: 1.0, ..PeerOptions::default() };
    let Some(dropping) = SmtpPeer::start(dir.path(), options) else { return };
    let mailer = Mailer::new(&short_timeouts(SmtpSettings::loopback_plain(dropping.port))).unwrap();
    let outcome = mailer.send_raw(&email.envelope_from, &email.envelope_to, &email.raw).await;
    assert!(matches!(outcome, SendOutcome::Ambiguous { .. }), "{outcome:?}");
    assert_eq!(dropping.wait_for(1, std::time::Duration::from_secs(2)).len(), 1, "the relay kept it");
}

#[tokio::test]
async fn implicit_tls_with_a_trusted_certificate_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = test_certificates(dir.path()) else { return };
    let options = PeerOptions { tls: Some((cert, key)), implicit_tls: true, ..PeerOptions::default() };
    let Some(peer) = SmtpPeer::start(dir.path(), options) else { return };
    let settings = SmtpSettings {
        tls: TlsMode::Implicit,
        ca_file: Some(ca),
        ..short_timeouts(SmtpSettings::loopback_plain(peer.port))
    };
    let mailer = Mailer::new(&settings).unwrap();
    let email = composer().patient_notice(&notice(), "ana@example.net", clinic_date(), Utc::now()).unwrap();
    let outcome = mailer.send_raw(&email.envelope_from, &email.envelope_to, &email.raw).await;
    assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    let received = peer.wait_for(1, std::time::Duration::from_secs(5));
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].message_id.as_deref(), Some(email.message_id.as_str()));

    // Without the test CA the handshake fails before anything is handed over.
    let untrusting = Mailer::new(&SmtpSettings { ca_file: None, ..settings }).unwrap();
    let outcome = untrusting.send_raw(&email.envelope_from, &email.envelope_to, &email.raw).await;
    assert!(matches!(outcome, SendOutcome::Transient { .. }), "{outcome:?}");
    assert_eq!(peer.wait_for(2, std::time::Duration::from_millis(500)).len(), 1);
}

/// Many messages over a pool of one: every one arrives once, in order, on one connection kept open
/// (a message refused before sending, for a bad stored address, does not disturb it).
#[tokio::test]
async fn one_pooled_connection_carries_many_messages() {
    let dir = tempfile::tempdir().unwrap();
    let Some(peer) = SmtpPeer::start(dir.path(), PeerOptions::default()) else { return };
    let settings = SmtpSettings { pool_size: 1, ..short_timeouts(SmtpSettings::loopback_plain(peer.port)) };
    let mailer = Mailer::new(&settings).unwrap();
    let mut ids = Vec::new();
    for n in 0..30 {
        let email =
            composer().patient_notice(&notice(), &format!("p{n}@example.net"), clinic_date(), Utc::now()).unwrap();
        let to = if n == 10 { vec!["not an address".to_string()] } else { email.envelope_to.clone() };
        let outcome = mailer.send_raw(&email.envelope_from, &to, &email.raw).await;
        if n == 10 {
            assert!(matches!(outcome, SendOutcome::Permanent { .. }), "{outcome:?}");
        } else {
            assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
            ids.push(email.message_id.clone());
        }
    }
    let received = peer.wait_for(29, std::time::Duration::from_secs(5));
    let got: Vec<String> = received.iter().filter_map(|m| m.message_id.clone()).collect();
    assert_eq!(got, ids);
    mailer.shutdown().await;
    let email = composer().patient_notice(&notice(), "late@example.net", clinic_date(), Utc::now()).unwrap();
    let outcome = mailer.send_raw(&email.envelope_from, &email.envelope_to, &email.raw).await;
    assert!(matches!(outcome, SendOutcome::Transient { .. }), "after shutdown: {outcome:?}");
}
