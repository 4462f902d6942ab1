//! Store benchmark (not a test): a 100,000-patient clinic on SQLite (and PostgreSQL when reachable).
//!
//! Measures the queue screen's first page, the pipeline's bulk fact load by id range, decision
//! recording, and audit chain append and verify throughput. Prints method and figures.
//!
//! Run: `cargo bench -p refill-store --bench store` (env `BENCH_PATIENTS` to change the size,
//! `REFILL_TEST_POSTGRES_URL` for PostgreSQL).

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use refill_rules::{Decision, Outcome, PatientId, Reason, ReasonCode};
use refill_store::{Actor, AuditEvent, AuditKey, NewDecision, Pools, QueueQuery, Store, StoreSettings};
use sqlx::Connection;

const KEY: &str = "refill-store-bench-audit-key-0123456789abcdef";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        let patients: i64 = std::env::var("BENCH_PATIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
        println!("# refill-store bench: {patients} patients, 1 queue row each on the bench date");
        println!("# machine: {} logical cpus", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        let dir = tempfile::tempdir().expect("temp dir");
        let sqlite_url = format!("sqlite:{}", dir.path().join("bench.db").display());
        run("sqlite", &sqlite_url, patients).await;
        let admin_url = std::env::var("REFILL_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        match sqlx::PgConnection::connect(&admin_url).await {
            Ok(mut admin) => {
                let name = format!("refill_bench_{}", uuid::Uuid::new_v4().simple());
                sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}"))).execute(&mut admin).await.unwrap();
                let url = format!("{}/{name}", admin_url.rsplit_once('/').map(|(base, _)| base).unwrap_or(&admin_url));
                run("postgres", &url, patients).await;
                sqlx::query(sqlx::AssertSqlSafe(format!("drop database {name} with (force)")))
                    .execute(&mut admin)
                    .await
                    .unwrap();
            }
            Err(error) => println!("postgres: skipped ({error})"),
        }
    });
}

fn bench_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
}

async fn run(backend: &str, url: &str, patients: i64) {
    let mut settings = StoreSettings::new(url.to_string(), AuditKey::new(KEY));
    settings.max_connections = 4;
    let store = Store::connect(&settings).await.expect("connect");
    store.migrate().await.expect("migrate");

    let started = Instant::now();
    populate(&store, patients).await;
    println!("{backend}: populate {patients} patients with facts and queue rows (bulk SQL): {:.1?}", started.elapsed());

    // Queue screen: first page of 50, most urgent first.
    let first_page = QueueQuery::first_page(bench_date(), 50);
    let mut samples = time_many(200, || async {
        let page = store.queue_page(&first_page).await.unwrap();
        assert_eq!(page.len(), 50);
    })
    .await;
    report(backend, "queue first page (50 rows of 100k), 200 runs", &mut samples);
    let deep = QueueQuery { offset: 5_000, ..first_page.clone() };
    let mut samples = time_many(50, || async {
        store.queue_page(&deep).await.unwrap();
    })
    .await;
    report(backend, "queue page at offset 5,000, 50 runs", &mut samples);
    let escalated = QueueQuery { min_urgency: Some(3), ..first_page.clone() };
    let mut samples = time_many(100, || async {
        store.queue_page(&escalated).await.unwrap();
    })
    .await;
    report(backend, "queue first page, escalated only, 100 runs", &mut samples);
    let mut samples = time_many(50, || async {
        store.queue_counts(bench_date()).await.unwrap();
    })
    .await;
    report(backend, "queue counts of the date, 50 runs", &mut samples);

    // The pipeline's bulk load, chunks of 1,000 ids.
    let started = Instant::now();
    let mut loaded = 0usize;
    let mut first = 1;
    while first <= patients {
        let last = (first + 999).min(patients);
        loaded += store.load_facts_in_range(PatientId(first), PatientId(last), bench_date()).await.unwrap().len();
        first = last + 1;
    }
    let elapsed = started.elapsed();
    println!(
        "{backend}: load_facts_in_range over all {loaded} patients in chunks of 1,000: {elapsed:.1?} ({:.0} patients/s)",
        loaded as f64 / elapsed.as_secs_f64()
    );
    let mut samples = time_many(100, || async {
        store.load_patient_facts(PatientId(patients / 2), bench_date()).await.unwrap();
    })
    .await;
    report(backend, "load_patient_facts (one patient), 100 runs", &mut samples);

    // Recording decisions as the pipeline does: 100 per transaction, each with its queue row and audit event.
    let decision = Decision::from_reasons(
        vec![Reason {
            code: ReasonCode::PdmpReviewOverdue,
            outcome: Outcome::ApproveWithTasks,
            evidence: vec![],
            task: None,
            restricted: false,
        }],
        None,
        Some(45.0),
        "bench",
    );
    let next_day = bench_date().succ_opt().unwrap();
    let system = Actor::system();
    let started = Instant::now();
    let n_decisions = 5_000.min(patients);
    for chunk_start in (1..=n_decisions).step_by(100) {
        let mut tx = store.begin().await.unwrap();
        for patient in chunk_start..(chunk_start + 100).min(n_decisions + 1) {
            let new = NewDecision {
                patient_id: PatientId(patient),
                clinic_date: next_day,
                refill_request_id: None,
                decision: &decision,
                decided_by: &system,
                run_out_on: None,
                dedupe_key: Some(format!("daily:{next_day}:{patient}")),
            };
            store.record_decision(&mut tx, &new).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "{backend}: record_decision x{n_decisions} (100 per transaction, with queue row and audit event): {elapsed:.1?} ({:.0}/s)",
        n_decisions as f64 / elapsed.as_secs_f64()
    );

    // Audit: 50,000 appends in transactions of 1,000, then a full verify.
    let actor = Actor::new("user:bench", "staff");
    let started = Instant::now();
    for _ in 0..50 {
        let mut tx = store.begin().await.unwrap();
        for n in 0..1_000 {
            let event = AuditEvent::new(&actor, "patient.view", "patient").patient(PatientId(n));
            store.append_audit(&mut tx, &event).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "{backend}: audit append x50,000 (1,000 per transaction): {elapsed:.1?} ({:.0}/s)",
        50_000.0 / elapsed.as_secs_f64()
    );
    let single = time_many(200, || async {
        let mut tx = store.begin().await.unwrap();
        store.append_audit(&mut tx, &AuditEvent::new(&actor, "patient.view", "patient")).await.unwrap();
        tx.commit().await.unwrap();
    })
    .await;
    let mut single = single;
    report(backend, "audit append in its own transaction (durable commit), 200 runs", &mut single);
    let checkpoint = store.audit_checkpoint().await.unwrap();
    let started = Instant::now();
    let verification = store.verify_audit_chain(Some(&checkpoint)).await.unwrap();
    let elapsed = started.elapsed();
    assert!(verification.is_intact());
    println!(
        "{backend}: audit verify of {} events: {elapsed:.1?} ({:.0} events/s)",
        verification.events_checked,
        verification.events_checked as f64 / elapsed.as_secs_f64()
    );
    store.close().await;
}

async fn time_many<F, Fut>(runs: usize, mut f: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // One warm-up run (statement caches, page cache).
    f().await;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        f().await;
        samples.push(started.elapsed());
    }
    samples
}

fn report(backend: &str, what: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!("{backend}: {what}: p50 {:.2?}, p90 {:.2?}, p99 {:.2?}, max {:.2?}", at(0.5), at(0.9), at(0.99), at(1.0));
}

/// Bulk-load a clinic with SQL (the store's per-row API is what the import measures; here the point is
/// reading at scale). Each patient: one active order, six monthly fills, an agreement, two UDS results,
/// a PDMP review, one prior decision, and a queue row on the bench date with spread urgency and run-out.
async fn populate(store: &Store, patients: i64) {
    let (series, day, earlier_day, ts, json) = match store.pools {
        Pools::Sqlite { .. } => (
            format!("with recursive n(i) as (select 1 union all select i + 1 from n where i < {patients})"),
            "date('2026-06-01', '+' || ((i * 7) % 180) || ' days')".to_string(),
            "date('2026-06-01', '+' || ((i * 7) % 180) || ' days', '-' || (k * 30) || ' days')".to_string(),
            "'2026-11-30T12:00:00.000000Z'",
            "",
        ),
        Pools::Postgres(_) => (
            String::new(),
            "(date '2026-06-01' + ((i * 7) % 180)::int)".to_string(),
            "(date '2026-06-01' + ((i * 7) % 180)::int - k * 30)".to_string(),
            "timestamptz '2026-11-30 12:00:00+00'",
            "::jsonb",
        ),
    };
    let from = match store.pools {
        Pools::Sqlite { .. } => "from n".to_string(),
        Pools::Postgres(_) => format!("from generate_series(1, {patients}) as n(i)"),
    };
    let statements = vec![
        format!(
            "{series} insert into patients (id, external_id, mrn, given_name, family_name, birth_date, sex, risk_tier, \
             prescriber_of_record, email_consent, contact_preference, part2, active, version, updated_by, created_at, \
             updated_at) select i, 'ext-' || i, 'MRN' || i, 'Given' || i, 'Family' || (i % 997), {day}, \
             case when i % 2 = 0 then 'female' else 'male' end, \
             case i % 3 when 0 then 'low' when 1 then 'moderate' else 'high' end, 'npi-1', false, 'email', false, true, \
             1, 'system', {ts}, {ts} {from}"
        ),
        format!(
            "{series} insert into medication_orders (patient_id, source_id, rxcui, text, dose_value, dose_unit, \
             doses_per_day, days_supply, prescriber_id, purpose, confidentiality, active, created_at, updated_at) \
             select i, 'rx-' || i, '1049621', 'oxycodone hydrochloride 5 MG Oral Tablet', 5 + (i % 4) * 5, 'mg', 4, 30, \
             'npi-1', 'pain', 'normal', true, {ts}, {ts} {from}"
        ),
        format!(
            "{series} insert into fills (patient_id, filled_on, days_supply, order_source_id, quantity, created_at) \
             select i, {day}, 30, 'rx-' || i, 120, {ts} {from}"
        ),
        format!(
            "{series} insert into fills (patient_id, filled_on, days_supply, order_source_id, quantity, created_at) \
             select i, {earlier_day}, 30, 'rx-' || i, 120, {ts} {from}, (select 1 as k union all select 2 union all \
             select 3 union all select 4 union all select 5) ks"
        ),
        format!(
            "{series} insert into agreements (patient_id, signed_on, prescriber_id, text_version, elements, created_at) \
             select i, {day}, 'npi-1', 'v3', '[\"single_prescriber\"]'{json}, {ts} {from}"
        ),
        format!(
            "{series} insert into uds_results (patient_id, collected_on, kind, confirmatory, analytes, confidentiality, \
             created_at) select i, {earlier_day}, 'scheduled', false, \
             '[{{\"assay\":\"oxycodone\",\"analyte\":\"oxycodone\",\"detected\":true}}]'{json}, 'normal', {ts} \
             {from}, (select 1 as k union all select 2) ks"
        ),
        format!(
            "{series} insert into pdmp_reviews (patient_id, reviewed_on, findings, reviewed_by, created_at) \
             select i, {day}, '[]'{json}, 'system', {ts} {from}"
        ),
        format!(
            "{series} insert into decisions (patient_id, clinic_date, outcome, reasons, tasks, total_daily_mme, \
             policy_version, decided_by, decided_at) select i, {day}, 'APPROVE', '[]'{json}, '[]'{json}, 30, 'bench', \
             'system', {ts} {from}"
        ),
        format!(
            "{series} insert into daily_queue (clinic_date, patient_id, decision_id, outcome, urgency, run_out_on, \
             status, version, updated_by, updated_at) select '2026-12-01', i, i, \
             case i % 20 when 0 then 'ESCALATE_URGENT' when 1 then 'ESCALATE' when 2 then 'HOLD' when 3 then 'HOLD' \
             else 'APPROVE_WITH_TASKS' end, \
             case i % 20 when 0 then 4 when 1 then 3 when 2 then 2 when 3 then 2 else 1 end, \
             case when i % 50 = 0 then null else {day} end, 'pending', 1, 'system', {ts} {from}"
        ),
    ];
    for sql in statements {
        let sql = match store.pools {
            Pools::Sqlite { .. } => sql,
            // PostgreSQL needs the date literal typed.
            Pools::Postgres(_) => sql.replace("select '2026-12-01'", "select date '2026-12-01'"),
        };
        match &store.pools {
            Pools::Sqlite { write, .. } => {
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(write).await.expect("populate");
            }
            Pools::Postgres(pool) => {
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await.expect("populate");
            }
        }
    }
    if let Pools::Postgres(pool) = &store.pools {
        // Identity columns were given explicit ids; move the sequences past them, then refresh statistics.
        sqlx::query("select setval(pg_get_serial_sequence('patients', 'id'), (select max(id) from patients))")
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("analyze").execute(pool).await.unwrap();
    } else if let Pools::Sqlite { write, .. } = &store.pools {
        sqlx::query("analyze").execute(write).await.unwrap();
    }
}
