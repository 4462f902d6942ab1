//! CDS Hooks order-sign latency: the real server (`refill_web::serve` on a loopback socket, SQLite
//! store) answers `opioid-refill-order-sign` calls with prefetch from 50 concurrent clients, each on its
//! own keep-alive HTTP/1.1 connection sending its next call when the previous answer arrives. Two
//! requests: the CDC example `rec-10-order-sign-no-screenings` (a patient the clinic does not know,
//! everything in the prefetch) and an order for an enrolled patient (facts from the store).
//!
//! Run: `cargo bench --bench cds_order_sign` (optionally `REFILL_BENCH_CLIENTS=50`,
//! `REFILL_BENCH_CALLS=200` per client). Not a test: it prints its method, the load average and the
//! figures.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// One keep-alive connection: send a POST, read one response (Content-Length framed).
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(address: SocketAddr) -> Connection {
        let stream = TcpStream::connect(address).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Connection { stream, buffer: Vec::with_capacity(64 * 1024) }
    }

    async fn post(&mut self, request: &[u8]) -> (u16, usize) {
        self.stream.write_all(request).await.expect("write");
        loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buffer[..end]).to_ascii_lowercase();
                let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .expect("content-length");
                if self.buffer.len() >= end + 4 + length {
                    self.buffer.drain(..end + 4 + length);
                    return (status, length);
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let read = self.stream.read(&mut chunk).await.expect("read");
            assert!(read > 0, "server closed the connection");
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }
}

fn http_request(address: SocketAddr, path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at].as_secs_f64() * 1000.0
}

async fn run(address: SocketAddr, name: &str, body: &str, clients: usize, calls: usize) {
    let request = http_request(address, "/cds-services/opioid-refill-order-sign", body);
    // Warm up: every connection once, and a few hundred calls.
    let mut warm = Connection::open(address).await;
    for _ in 0..200 {
        let (status, _) = warm.post(&request).await;
        assert_eq!(status, 200);
    }
    let before = load_average();
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut connection = Connection::open(address).await;
                let mut latencies = Vec::with_capacity(calls);
                let mut bytes = 0;
                for _ in 0..calls {
                    let sent = Instant::now();
                    let (status, length) = connection.post(&request).await;
                    latencies.push(sent.elapsed());
                    assert_eq!(status, 200);
                    bytes = length;
                }
                (latencies, bytes)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(clients * calls);
    let mut response_bytes = 0;
    for task in tasks {
        let (latencies, bytes) = task.await.expect("client");
        all.extend(latencies);
        response_bytes = bytes;
    }
    let elapsed = started.elapsed();
    all.sort();
    println!(
        "{name}: {} calls from {clients} clients in {:.2} s ({:.0}/s), response {response_bytes} bytes; \
         p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; load average before {before}, after {}",
        all.len(),
        elapsed.as_secs_f64(),
        all.len() as f64 / elapsed.as_secs_f64(),
        percentile(&all, 0.50),
        percentile(&all, 0.90),
        percentile(&all, 0.99),
        all.last().unwrap().as_secs_f64() * 1000.0,
        load_average(),
    );
}

fn main() {
    let clients: usize = std::env::var("REFILL_BENCH_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let calls: usize = std::env::var("REFILL_BENCH_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let work = tempfile::tempdir().expect("temporary folder");
        let url = format!("sqlite:{}", work.path().join("cds.db").display());
        let store = refill_store::Store::connect(&refill_store::StoreSettings::new(
            url,
            refill_store::AuditKey::new(b"cds-bench-key-0123456789abcdef0123"),
        ))
        .await
        .expect("store");
        store.migrate().await.expect("migrate");
        // One enrolled patient, on the same oxycodone order the EHR renews.
        let draft = json!({"resourceType": "MedicationRequest", "id": "draft-oxy", "status": "draft", "intent": "order",
            "subject": {"reference": "Patient/enrolled-1"}, "authoredOn": "2023-05-01",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                "code": "1049621", "display": "oxycodone hydrochloride 5 MG Oral Tablet"}]},
            "dosageInstruction": [{"timing": {"repeat": {"frequency": 4, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet", "code": "TAB"}}]}],
            "dispenseRequest": {"quantity": {"value": 120}, "expectedSupplyDuration": {"value": 30, "unit": "days", "code": "d"}}});
        let today = chrono::NaiveDate::from_ymd_opt(2023, 5, 1).unwrap();
        let mut tx = store.begin().await.unwrap();
        let mut details = refill_store::PatientDetails::new("enrolled-1", "Noor", "Hale");
        details.birth_date = Some(chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap());
        let patient = tx.insert_patient(&details, &refill_store::Actor::system()).await.unwrap();
        let order = refill_fhir::parse_medication_request(&draft).unwrap().order;
        tx.replace_regimen(patient, std::slice::from_ref(&order)).await.unwrap();
        let fill = refill_rules::Fill { filled_on: today - chrono::Duration::days(24), days_supply: 30, order_id: None, quantity: None };
        tx.insert_fill(patient, &fill, None).await.unwrap();
        tx.commit().await.unwrap();

        // Every bench client is 127.0.0.1: the per-address rate limit (600 a minute by default) is
        // lifted so the run measures the service, not the 429s.
        let mut settings = refill_web::WebSettings::default();
        settings.cds.requests_per_minute = u32::MAX;
        let state = refill_web::AppState::new(store, settings, Default::default(), "bench".into())
            .with_clock(refill_web::Clock::from_fn(|| Utc.with_ymd_and_hms(2023, 5, 1, 15, 0, 0).unwrap()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().unwrap();
        tokio::spawn(refill_web::serve(listener, state, std::future::pending()));

        let example_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/cds-hooks/request-example-rec-10-order-sign-no-screenings.json");
        let example: Value = serde_json::from_str(&std::fs::read_to_string(example_path).unwrap()).unwrap();
        let enrolled = json!({"hook": "order-sign", "hookInstance": "b0000000-0000-4000-8000-000000000001",
            "context": {"userId": "Practitioner/dr-a", "patientId": "enrolled-1",
                "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": draft}]}}});
        println!(
            "CDS Hooks order-sign, {} build, {clients} concurrent keep-alive clients x {calls} calls, SQLite, \
             JWT verification off, {} cores; an enrolled patient's call also writes its view audit event",
            if cfg!(debug_assertions) { "debug" } else { "release" },
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
        );
        run(address, "CDC example (not enrolled, full prefetch)", &example.to_string(), clients, calls).await;
        run(address, "enrolled patient (facts from the store)", &enrolled.to_string(), clients, calls).await;
    });
}
