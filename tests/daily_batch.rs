//! The set-based daily run writes what the one-patient-at-a-time run writes: the demo clinic is
//! imported into two databases of the same backend, one runs `daily::run_chunk`, the other
//! `daily::run_chunk_one_by_one`, for two clinic dates and a repeat of the first; decisions, queue
//! rows, exceptions, drug-test draws, refill requests, the audit trail (actions per patient) and the
//! reminders returned must be identical, and both audit chains must verify. SQLite and PostgreSQL.

#[path = "../crates/refill-store/tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use chrono::NaiveDate;
use refill_app::App;
use refill_app::daily::{self, ChunkReport};
use refill_clinic::cmd::import::import_file;
use refill_demo::{DemoSettings, generate};
use refill_rules::PatientId;
use refill_rules::policy::Policy;
use refill_rules::uds::UdsSeed;
use refill_store::{Actor, Backend, Store};
use sqlx::Connection;

const CHUNK: i64 = 64;

async fn imported(db: &common::TestDb, files: &[(String, String)]) {
    for (name, contents) in files {
        import_file(&db.store, name, contents.as_bytes(), &Actor::new("import-test", "system"), false)
            .await
            .expect("database works")
            .unwrap_or_else(|error| panic!("{error}"));
    }
}

/// The whole day in chunks of `CHUNK` patient ids, one transaction each, by either path.
async fn run_day(store: &Store, date: NaiveDate, batched: bool) -> Vec<ChunkReport> {
    let app = App::new(store.clone(), Arc::new(Policy::default()), "batch-policy");
    let seed = UdsSeed::splitmix64(11);
    let (low, high) = store.patient_id_bounds().await.expect("id range").expect("patients");
    let (low, high) = (low.0, high.0);
    let mut reports = Vec::new();
    let mut first = low;
    while first <= high {
        let last = (first + CHUNK - 1).min(high);
        let mut tx = store.begin().await.expect("begin");
        let report = if batched {
            daily::run_chunk(&app, &mut tx, &seed, date, PatientId(first), PatientId(last)).await
        } else {
            daily::run_chunk_one_by_one(&app, &mut tx, &seed, date, PatientId(first), PatientId(last)).await
        }
        .expect("chunk");
        tx.commit().await.expect("commit");
        reports.push(report);
        first = last + 1;
    }
    reports
}

/// Every row the daily run writes, as text without ids and timestamps, in a stable order.
const TABLES: &[(&str, &str)] = &[
    (
        "decisions",
        "select cast(patient_id as text), cast(clinic_date as text), outcome, cast(reasons as text), \
         cast(tasks as text), coalesce(cast(eligible_on as text), '-'), coalesce(cast(total_daily_mme as text), '-'), \
         policy_version, decided_by, coalesce(dedupe_key, '-'), refill_window, cast(covered as text), \
         coalesce(cast(refill_request_id as text), '-'), coalesce(cast(physician_decision_id as text), '-') \
         from decisions order by patient_id, clinic_date, id",
    ),
    (
        "daily_queue",
        "select cast(q.clinic_date as text), cast(q.patient_id as text), q.outcome, cast(q.urgency as text), \
         coalesce(cast(q.run_out_on as text), '-'), q.status, cast(q.version as text), q.updated_by, \
         cast(d.clinic_date as text) from daily_queue q join decisions d on d.id = q.decision_id \
         order by q.clinic_date, q.patient_id",
    ),
    (
        "exceptions",
        "select cast(e.patient_id as text), cast(e.clinic_date as text), e.status, e.urgency, \
         cast(e.reason_codes as text), cast(e.version as text), coalesce(cast(e.follows_decision_id as text), '-'), \
         cast(d.clinic_date as text), d.outcome from exceptions e join decisions d on d.id = e.decision_id \
         order by e.patient_id, e.id",
    ),
    (
        "uds_schedule",
        "select cast(patient_id as text), kind, cast(due_on as text), cast(drawn_on as text), \
         coalesce(cast(seed as text), '-'), coalesce(algorithm, '-'), coalesce(cast(period_start as text), '-'), \
         coalesce(cast(period_end as text), '-'), created_by from uds_schedule order by patient_id, kind, due_on",
    ),
    (
        "refill_requests",
        "select cast(patient_id as text), status, cast(version as text) from refill_requests order by id",
    ),
    (
        "audit_events",
        "select coalesce(cast(patient_id as text), '-'), action, resource_type, actor from audit_events \
         order by patient_id, action, resource_type, actor",
    ),
    ("job", "select kind, cast(payload as text), coalesce(unique_key, '-') from job order by kind, unique_key"),
];

async fn rows(db: &common::TestDb, sql: &str) -> Vec<Vec<String>> {
    use sqlx::Row;
    macro_rules! fetch {
        ($connection:ty) => {{
            let mut conn = <$connection>::connect(&db.url).await.expect("open");
            let found = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch_all(&mut conn).await.expect(sql);
            found.iter().map(|row| (0..row.len()).map(|i| row.get::<String, usize>(i)).collect()).collect()
        }};
    }
    match db.backend() {
        Backend::Sqlite => fetch!(sqlx::SqliteConnection),
        Backend::Postgres => fetch!(sqlx::PgConnection),
    }
}

#[tokio::test]
async fn the_set_based_daily_run_writes_what_the_per_patient_run_writes() {
    let today = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    let files = generate(&DemoSettings { patients: 400, seed: 11, today }).csv_files();
    let mut pairs = vec![(common::sqlite().await, common::sqlite().await)];
    if let (Some(a), Some(b)) = (common::postgres().await, common::postgres().await) {
        pairs.push((a, b));
    }
    for (batched, single) in pairs {
        let name = format!("{:?}", batched.backend());
        imported(&batched, &files).await;
        imported(&single, &files).await;
        let days = [today, today.succ_opt().unwrap(), today];
        for (n, date) in days.iter().enumerate() {
            let started = std::time::Instant::now();
            let a = run_day(&batched.store, *date, true).await;
            let set_based = started.elapsed();
            let started = std::time::Instant::now();
            let b = run_day(&single.store, *date, false).await;
            eprintln!("{name}: run {n}: set-based {set_based:.2?}, one by one {:.2?}", started.elapsed());
            assert_eq!(a, b, "{name}: chunk reports of run {n} ({date})");
            let decided: u64 = a.iter().map(|r| r.decided).sum();
            if n == 2 {
                assert_eq!(decided, 0, "{name}: a repeat of the same date decides nobody again");
            } else {
                assert!(decided > 300, "{name}: run {n} decided {decided}");
            }
        }
        for (table, sql) in TABLES {
            let (a, b) = (rows(&batched, sql).await, rows(&single, sql).await);
            assert!(!a.is_empty() || ["refill_requests", "job"].contains(table), "{name}: {table} is empty");
            assert_eq!(a.len(), b.len(), "{name}: {table} row counts");
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x, y, "{name}: {table}");
            }
        }
        for db in [&batched, &single] {
            let verification = db.store.verify_audit_chain(None).await.expect("verify");
            assert!(verification.problem.is_none(), "{name}: {verification:?}");
        }
        let queued = rows(&batched, "select outcome from daily_queue").await.len();
        let escalations = rows(&batched, "select status from exceptions").await.len();
        let joined = rows(&batched, "select status from exceptions where version > 1").await.len();
        assert!(joined > 0, "{name}: the second day joins open exceptions");
        eprintln!("{name}: {queued} queue rows, {escalations} exceptions ({joined} joined) compared");
    }
}
