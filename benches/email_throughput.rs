//! Benchmark of email delivery: messages per second to a local SMTP sink over pooled connections.
//!
//! Run: `cargo bench --bench email_throughput` (optional argument: `-- PER_CONNECTION`, messages per
//! pooled connection, default 200; each run sends `PER_CONNECTION x pool size` messages).
//!
//! Method. The sink is a minimal SMTP server in this file (tokio, loopback TCP): it greets, answers
//! EHLO/MAIL/RCPT/RSET/NOOP with 250, DATA with 354, reads the message up to the final dot and replies
//! 250, so the figure measures our side, not a Python server. Messages are real patient notices
//! rendered by the `Composer` (multipart text + HTML, about 1.5 kB). Two figures per pool size
//! (1, 4, 8 and 16 connections; sends in flight equal to the pool size):
//! 1. transport only: `Mailer::send_raw` of pre-rendered messages;
//! 2. the whole outbox path on a SQLite file: rows written in one transaction beforehand (not timed),
//!    then `deliver_due` ticks (rescue, cancel, give-up, claim with lease + attempt rows, send,
//!    fenced outcome per message) until the outbox is empty.
//!
//! Each transport run sends 100 messages first to open the pool. Wall-clock time, one process.
//!
//! Our connections set `TCP_NODELAY` (see `refill_notify::Mailer`): before, lettre's pooled
//! transport left Nagle's algorithm on and every message waited for the relay's delayed ACK (40 ms),
//! about 22 messages per second per connection.

use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use refill_jobs::delivery::{self, DeliverySettings};
use refill_notify::{
    Composer, Mailer, Moment, NotifySettings, OutgoingEmail, PatientNotice, PatientNoticeKind, SmtpSettings,
};
use refill_store::outbox;
use refill_store::{AuditKey, Store, StoreSettings};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A minimal accepting SMTP sink; returns its port.
async fn start_sink() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the sink");
    let port = listener.local_addr().expect("sink address").port();
    tokio::spawn(async move {
        let mut queued: u64 = 0;
        loop {
            let Ok((socket, _)) = listener.accept().await else { return };
            queued += 1_000_000;
            tokio::spawn(serve(socket, queued));
        }
    });
    port
}

async fn serve(socket: tokio::net::TcpStream, mut queue_id: u64) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    if write.write_all(b"220 sink ESMTP\r\n").await.is_err() {
        return;
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = String::from_utf8_lossy(&line).to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") {
            b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        } else if command.starts_with("DATA") {
            if write.write_all(b"354 go ahead\r\n").await.is_err() {
                return;
            }
            loop {
                line.clear();
                match lines.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) if line == b".\r\n" => break,
                    Ok(_) => {}
                }
            }
            queue_id += 1;
            let reply = format!("250 2.0.0 OK queued as {queue_id:X}\r\n");
            if write.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
            continue;
        } else if command.starts_with("QUIT") {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"250 OK\r\n"
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

fn composer() -> Composer {
    Composer::new(NotifySettings {
        sender_name: "Northside Care".into(),
        sender_address: "no-reply@northside.example".into(),
        message_id_domain: "mail.northside.example".into(),
        callback_number: "+1 555 0100".into(),
        sign_in_url: "https://portal.northside.example/sign-in".into(),
        staff_recipients: vec![],
        physician_recipients: vec![],
        privacy_officer_recipients: vec![],
    })
    .expect("neutral settings")
}

fn messages(count: usize) -> Vec<OutgoingEmail> {
    let composer = composer();
    let today = NaiveDate::from_ymd_opt(2026, 12, 8).expect("date");
    (0..count)
        .map(|n| {
            let notice = PatientNotice {
                kind: PatientNoticeKind::VisitDue,
                patient_ref: n.to_string(),
                first_name: "Ana".into(),
                about: Moment::Date(today + chrono::Days::new(7)),
            };
            composer.patient_notice(&notice, &format!("patient{n}@example.net"), today, Utc::now()).expect("renders")
        })
        .collect()
}

fn mailer(port: u16, pool: u32) -> Mailer {
    Mailer::new(&SmtpSettings { pool_size: pool, ..SmtpSettings::loopback_plain(port) }).expect("mailer")
}

async fn transport_only(port: u16, pool: u32, batch: &[OutgoingEmail]) -> f64 {
    let mailer = mailer(port, pool);
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(pool as usize));
    for email in batch.iter().take(100) {
        mailer.send_raw(&email.envelope_from, &email.envelope_to, &email.raw).await;
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for email in batch.iter().cloned() {
        let mailer = mailer.clone();
        let semaphore = std::sync::Arc::clone(&semaphore);
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            mailer.send_raw(&email.envelope_from, &email.envelope_to, &email.raw).await
        });
    }
    let mut sent = 0usize;
    while let Some(outcome) = tasks.join_next().await {
        if matches!(outcome, Ok(refill_notify::SendOutcome::Sent { .. })) {
            sent += 1;
        }
    }
    assert_eq!(sent, batch.len(), "every message accepted by the sink");
    batch.len() as f64 / started.elapsed().as_secs_f64()
}

async fn through_outbox(port: u16, pool: u32, batch: &[OutgoingEmail]) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("bench.db").display());
    let store = Store::connect(&StoreSettings::new(url, AuditKey::new("bench-audit-key-0123456789abcdef0123")))
        .await
        .expect("open the database");
    store.migrate().await.expect("migrate");
    let zone: chrono_tz::Tz = "America/New_York".parse().expect("zone");
    let mut tx = store.begin().await.expect("begin");
    for email in batch {
        delivery::queue_email(&mut tx, email, None, zone, Utc::now()).await.expect("queue");
    }
    tx.commit().await.expect("commit");
    let mailer = mailer(port, pool);
    let settings = DeliverySettings { batch: 200, concurrency: pool as usize, ..DeliverySettings::default() };
    let started = Instant::now();
    let mut sent = 0usize;
    while sent < batch.len() {
        let report = delivery::deliver_due(&store, &mailer, Utc::now(), &settings).await.expect("deliver");
        assert!(report.claimed > 0, "the outbox ran dry before every message was sent");
        sent += report.sent;
    }
    let rate = batch.len() as f64 / started.elapsed().as_secs_f64();
    let counts = outbox::state_counts(&store).await.expect("counts");
    assert!(counts.iter().any(|(state, n)| *state == outbox::OutboxState::Sent && *n as usize == batch.len()));
    store.close().await;
    rate
}

fn main() {
    let per_connection: usize =
        std::env::args().skip(1).find(|a| !a.starts_with('-')).and_then(|a| a.parse().ok()).unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let port = start_sink().await;
        let sample = messages(1);
        println!(
            "email throughput: {per_connection} messages per pooled connection, ~{} bytes each, loopback SMTP sink",
            sample[0].raw.len()
        );
        for pool in [1u32, 4, 8, 16] {
            let batch = messages(per_connection * pool as usize);
            let transport = transport_only(port, pool, &batch).await;
            let outbox = through_outbox(port, pool, &batch).await;
            println!(
                "pool {pool:>2}: {:>5} messages | transport only {transport:>6.0} msg/s | outbox on SQLite (claim, send, record) {outbox:>6.0} msg/s",
                batch.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}
