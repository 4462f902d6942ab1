//! Shared test harness of the store: a fresh, migrated database per test on every backend.
//!
//! - SQLite: always; a temporary file (never `sqlite::memory:`) kept alive by the returned value.
//! - PostgreSQL: when `REFILL_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//!   is reachable, a new database `refill_test_<uuid>` per test, dropped when the value is dropped.
//!   Unreachable: a notice and the backend is skipped, unless `CI=true`, where that is a failure.
//!
//! Use: `mod common;` then `for db in common::backends().await { ... db.store ... }`.
#![allow(dead_code)]

use std::time::Duration;

use chrono::NaiveDate;
use refill_rules::{
    Confidentiality, Decision, DoseQuantity, DoseUnit, MedicationOrder, OrderPurpose, PatientId, PrescriberId,
};
use refill_store::{Actor, AuditKey, Backend, NewDecision, Store, StoreSettings};
use sqlx::Connection;

/// The audit key of every test store.
pub const TEST_AUDIT_KEY: &str = "refill-store-tests-audit-key-0123456789abcdef";

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A migrated test database. Dropping it removes the database (PostgreSQL) or the file (SQLite).
pub struct TestDb {
    pub store: Store,
    /// The URL the store was opened with (tests that open a second store on the same database).
    pub url: String,
    /// `sqlite` or `postgres`, for assertion messages.
    pub name: &'static str,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<PostgresDatabase>,
}

struct PostgresDatabase {
    admin_url: String,
    database: String,
}

impl TestDb {
    pub fn backend(&self) -> Backend {
        self.store.backend()
    }

    /// Open another `Store` on the same database (separate pools: a second process, in effect).
    pub async fn open_another(&self) -> Store {
        let mut settings = StoreSettings::new(self.url.clone(), AuditKey::new(TEST_AUDIT_KEY));
        settings.max_connections = 8;
        Store::connect(&settings).await.expect("open a second store on the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(database) = self.postgres.take() {
            // Drop runs outside async: use a short-lived runtime on its own thread. `with (force)` ends
            // the connections the store's pool still holds.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                runtime.block_on(async {
                    let mut admin = sqlx::PgConnection::connect(&database.admin_url).await.ok()?;
                    let sql = format!("drop database if exists \"{}\" with (force)", database.database);
                    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.ok()
                })
            })
            .join();
        }
    }
}

/// Every backend available: SQLite always, PostgreSQL when reachable (see the module doc).
pub async fn backends() -> Vec<TestDb> {
    let mut dbs = vec![sqlite().await];
    if let Some(db) = postgres().await {
        dbs.push(db);
    }
    dbs
}

/// A fresh migrated SQLite database in a temporary file.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let url = format!("sqlite:{}", dir.path().join("refill-test.db").display());
    let store = open(&url).await;
    TestDb { store, url, name: "sqlite", _dir: Some(dir), postgres: None }
}

/// A fresh migrated PostgreSQL database, or `None` (after a notice) when PostgreSQL is unreachable.
///
/// # Panics
/// When PostgreSQL is unreachable and `CI=true`.
pub async fn postgres() -> Option<TestDb> {
    let admin_url = std::env::var("REFILL_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_string());
    let mut admin = match tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&admin_url)).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => return skip_postgres(&admin_url, &error.to_string()),
        Err(_) => return skip_postgres(&admin_url, "timed out"),
    };
    let database = format!("refill_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("create database \"{database}\"")))
        .execute(&mut admin)
        .await
        .expect("create the test database");
    let _ = admin.close().await;
    let url = replace_database(&admin_url, &database);
    let store = open(&url).await;
    Some(TestDb { store, url, name: "postgres", _dir: None, postgres: Some(PostgresDatabase { admin_url, database }) })
}

fn skip_postgres(url: &str, why: &str) -> Option<TestDb> {
    let shown = url.split('@').next_back().unwrap_or(url);
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("PostgreSQL at {shown} is unreachable ({why}) and CI=true: the PostgreSQL suite must run");
    }
    eprintln!("notice: PostgreSQL at {shown} is unreachable ({why}); skipping the PostgreSQL part of this test");
    None
}

/// `postgres://user@host:port/db?params` with the database name replaced.
fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end).unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

async fn open(url: &str) -> Store {
    let mut settings = StoreSettings::new(url.to_string(), AuditKey::new(TEST_AUDIT_KEY));
    settings.max_connections = 8;
    let store = Store::connect(&settings).await.expect("open the test database");
    store.migrate().await.expect("migrate the test database");
    store
}

/// A date from `YYYY-MM-DD` test text.
pub fn date(text: &str) -> NaiveDate {
    text.parse().expect("test date")
}

/// An oxycodone 5 mg tablet order, `mg` per dose four times a day for 30 days, under order id `id`.
pub fn oxycodone(id: &str, mg: f64) -> MedicationOrder {
    MedicationOrder {
        id: id.to_string(),
        rxcui: Some("1049621".into()),
        text: Some("oxycodone hydrochloride 5 MG Oral Tablet".into()),
        dose: Some(DoseQuantity { value: mg, unit: DoseUnit::Milligram }),
        doses_per_day: Some(4.0),
        days_supply: Some(30),
        dispense_quantity: Some(120.0),
        prescriber: Some(PrescriberId("1111111111".into())),
        purpose: OrderPurpose::Pain,
        confidentiality: Confidentiality::Normal,
    }
}

/// `decision` for `patient_id` on `clinic_date` by `by`, outside any refill request, with no run-out
/// date and no dedupe key (set those with struct update syntax where a test needs them).
#[allow(dead_code)]
pub fn new_decision<'a>(
    patient_id: PatientId,
    clinic_date: NaiveDate,
    decision: &'a Decision,
    by: &'a Actor,
) -> NewDecision<'a> {
    NewDecision {
        patient_id,
        clinic_date,
        refill_request_id: None,
        decision,
        decided_by: by,
        run_out_on: None,
        dedupe_key: None,
    }
}
