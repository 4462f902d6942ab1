//! Crash test of outbox delivery: a sender process is killed with SIGKILL at random points, again and
//! again, while it sends through a relay that sometimes drops the connection after the final dot.
//! Afterwards: no message is lost, and every duplicate the relay received is explained by a recorded
//! ambiguous send and carries the same Message-ID.
//!
//! Short variant in `cargo test` (6 kills, 150 messages). The full run (50 kills, 1000 messages):
//! `scripts/outbox_crash_test.sh`, or set CRASH_ROUNDS, CRASH_MESSAGES, CRASH_DROP, CRASH_SEED and
//! CRASH_BACKEND=postgres. The sender is this test binary re-run as `crash_sender_child`.

#[path = "../../refill-store/tests/common/mod.rs"]
mod common;
#[path = "../../refill-notify/tests/support/sample.rs"]
mod sample;
#[path = "../../refill-notify/tests/support/smtp_peer.rs"]
mod smtp_peer;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::{Rng, SeedableRng};
use refill_jobs::delivery::{self, DeliverySettings};
use refill_notify::{Composer, Mailer, Moment, PatientNoticeKind, SmtpSettings};
use refill_store::outbox::{self, OutboxState};
use refill_store::{Actor, AuditKey, ContactPreference, PatientDetails, Store, StoreSettings};
use smtp_peer::{PeerOptions, SmtpPeer};

/// Short leases and retries so a killed sender's messages come back within seconds.
fn settings() -> DeliverySettings {
    DeliverySettings {
        lease: Duration::from_secs(2),
        batch: 20,
        first_retry: Duration::from_millis(200),
        max_retry: Duration::from_secs(1),
        idle_poll: Duration::from_millis(100),
        ..DeliverySettings::default()
    }
}

fn mailer(port: u16) -> Mailer {
    Mailer::new(&SmtpSettings { timeout_secs: 1, ..SmtpSettings::loopback_plain(port) }).unwrap()
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn queue(store: &Store, count: usize) {
    let composer = Composer::new(sample::northside(&[], &[])).unwrap();
    let zone: chrono_tz::Tz = "America/New_York".parse().unwrap();
    let today = Utc::now().with_timezone(&zone).date_naive();
    let about = today + chrono::Days::new(7);
    let mut tx = store.begin().await.unwrap();
    for n in 0..count {
        let mut details = PatientDetails::new(format!("crash-{n}"), "Ana", "Family");
        details.email = Some(format!("patient{n}@example.net"));
        details.email_consent = true;
        details.contact_preference = ContactPreference::Email;
        let (patient, _) = tx.upsert_patient(&details, &Actor::system()).await.unwrap();
        let contact = outbox::email_contact_in(&mut tx, patient).await.unwrap();
        delivery::queue_patient_notice(
            &mut tx,
            &composer,
            &contact,
            patient,
            PatientNoticeKind::VisitDue,
            Moment::Date(about),
            today,
            zone,
            Utc::now(),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

/// The sender process: runs the delivery loop until it is killed. Does nothing unless started by
/// the crash test (it sets CRASH_CHILD_URL).
#[test]
#[ignore = "run by the crash test as a child process"]
fn crash_sender_child() {
    let (Ok(url), Ok(port)) = (std::env::var("CRASH_CHILD_URL"), std::env::var("CRASH_CHILD_PORT")) else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let store = Store::connect(&StoreSettings::new(url, AuditKey::new(common::TEST_AUDIT_KEY))).await.unwrap();
        let mailer = mailer(port.parse().unwrap());
        delivery::run_delivery_loop(&store, &mailer, &settings(), std::future::pending()).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_sender_at_random_points_loses_nothing() {
    let rounds: usize = env_or("CRASH_ROUNDS", 6);
    let messages: usize = env_or("CRASH_MESSAGES", 150);
    let drop: f64 = env_or("CRASH_DROP", 0.05);
    let seed: u64 = env_or("CRASH_SEED", rand::rng().random());
    let db = if std::env::var("CRASH_BACKEND").as_deref() == Ok("postgres") {
        common::postgres().await.expect("CRASH_BACKEND=postgres needs PostgreSQL")
    } else {
        common::sqlite().await
    };
    println!("crash test: backend={} rounds={rounds} messages={messages} drop={drop} seed={seed}", db.name);
    let dir = tempfile::tempdir().unwrap();
    let options = PeerOptions { drop, seed: Some(seed), ..PeerOptions::default() };
    let Some(peer) = SmtpPeer::start(dir.path(), options) else { return };
    queue(&db.store, messages).await;

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let exe = std::env::current_exe().unwrap();
    for round in 1..=rounds {
        let mut child = Command::new(&exe)
            .args(["crash_sender_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env("CRASH_CHILD_URL", &db.url)
            .env("CRASH_CHILD_PORT", peer.port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the sender");
        let life = Duration::from_millis(rng.random_range(30..600));
        std::thread::sleep(life);
        child.kill().expect("SIGKILL the sender"); // by its own pid
        let _ = child.wait();
        let sent_so_far = peer.received().len();
        println!(
            "round {round}: killed pid {} after {} ms; relay has {sent_so_far} copies",
            child.id(),
            life.as_millis()
        );
    }

    // A last sender that is not killed finishes the work (rescuing what the dead ones held).
    let mailer = mailer(peer.port);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        delivery::deliver_due(&db.store, &mailer, Utc::now(), &settings()).await.unwrap();
        let counts: HashMap<OutboxState, i64> = outbox::state_counts(&db.store).await.unwrap().into_iter().collect();
        if counts[&OutboxState::Pending] == 0 && counts[&OutboxState::Sending] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "delivery did not finish: {counts:?} (seed {seed})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let stored = outbox::message_ids(&db.store).await.unwrap();
    let mut copies: HashMap<String, usize> = HashMap::new();
    for message in peer.received() {
        *copies.entry(message.message_id.unwrap_or_default()).or_insert(0) += 1;
    }
    assert_eq!(stored.len(), messages, "one outbox row per message");
    let (mut duplicates, mut ambiguous_total) = (0usize, 0i64);
    for (message_id, state, ambiguous) in &stored {
        assert_eq!(*state, OutboxState::Sent, "{message_id} (seed {seed})");
        let received = copies.get(message_id).copied().unwrap_or(0);
        assert!(received >= 1, "{message_id} was lost (seed {seed})");
        assert!(
            received as i64 - 1 <= *ambiguous,
            "{message_id}: {received} copies but only {ambiguous} recorded ambiguous sends (seed {seed})"
        );
        duplicates += received - 1;
        ambiguous_total += ambiguous;
    }
    assert_eq!(copies.len(), messages, "the relay got nothing the outbox does not know (seed {seed})");
    println!(
        "crash test passed: {messages} messages, {rounds} kills, {duplicates} duplicate copies, \
         {ambiguous_total} recorded ambiguous sends, none lost"
    );
}
