//! Cron schedule rows: the durable cursor of each configured schedule, synced from configuration at
//! start, locked and advanced by whichever worker ticks first.
//!
//! Configuration is the source of truth. `sync_schedule` upserts a row and resets its cursor only when
//! the schedule's fingerprint changed (or it was disabled), so restarts never re-fire or lose an
//! occurrence. `lock_due_schedules` takes due rows with `FOR UPDATE SKIP LOCKED` on PostgreSQL (inside
//! `BEGIN IMMEDIATE` on SQLite): two workers never process the same row at once, and the occurrence's
//! job is inserted under a unique key in the same transaction as the cursor moves, so no leader is
//! needed. The occurrence arithmetic (time zones, DST) is the caller's pure planner.

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::Row;

use crate::jobs::{sqlite_millis, sqlite_time};
use crate::{Pools, Store, StoreError, Tx};

/// The stored format of local wall-clock times (`next_local`), which are also occurrence keys.
pub const LOCAL_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

/// A schedule as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSpec {
    pub name: String,
    pub cron: String,
    pub time_zone: String,
    /// `wall_clock` or `elapsed`.
    pub semantics: String,
    /// `fire_once` or `skip`.
    pub misfire: String,
    pub job_kind: String,
    pub job_args: serde_json::Value,
    /// Hash of every field above: a change resets the cursor.
    pub fingerprint: String,
}

/// A stored schedule with its cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRow {
    pub spec: ScheduleSpec,
    pub enabled: bool,
    pub next_local: NaiveDateTime,
    pub next_fire_at: DateTime<Utc>,
    pub last_fired_local: Option<NaiveDateTime>,
}

/// Where a schedule's cursor stands: the next occurrence on the local wall clock and as an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub local: NaiveDateTime,
    pub fire_at: DateTime<Utc>,
}

/// What `sync_schedule` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// New, changed or re-enabled: the cursor was set to the one given.
    CursorReset,
    /// Same spec as stored: the cursor was kept.
    Unchanged,
}

fn format_local(at: NaiveDateTime) -> String {
    at.format(LOCAL_FORMAT).to_string()
}

fn parse_local(text: &str, name: &str) -> Result<NaiveDateTime, StoreError> {
    NaiveDateTime::parse_from_str(text, LOCAL_FORMAT)
        .map_err(|e| StoreError::Corrupt(format!("job_schedule {name}: local time {text:?}: {e}")))
}

/// Upsert one configured schedule. `initial` is the cursor to store when the row is new, its spec
/// changed, or it was disabled; otherwise the stored cursor stays.
pub async fn sync_schedule(tx: &mut Tx, spec: &ScheduleSpec, initial: Cursor) -> Result<SyncOutcome, StoreError> {
    let changed: Option<String> =
        match tx {
            Tx::Sqlite(tx) => sqlx::query_scalar(
                "INSERT INTO job_schedule (name, cron, time_zone, semantics, misfire, job_kind, job_args, fingerprint, \
                   enabled, next_local, next_fire_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $11) \
                 ON CONFLICT (name) DO UPDATE SET cron = excluded.cron, time_zone = excluded.time_zone, \
                   semantics = excluded.semantics, misfire = excluded.misfire, job_kind = excluded.job_kind, \
                   job_args = excluded.job_args, fingerprint = excluded.fingerprint, enabled = 1, \
                   next_local = excluded.next_local, next_fire_at = excluded.next_fire_at, \
                   updated_at = excluded.updated_at \
                 WHERE job_schedule.fingerprint <> excluded.fingerprint OR job_schedule.enabled = 0 \
                 RETURNING name",
            )
            .bind(&spec.name)
            .bind(&spec.cron)
            .bind(&spec.time_zone)
            .bind(&spec.semantics)
            .bind(&spec.misfire)
            .bind(&spec.job_kind)
            .bind(spec.job_args.to_string())
            .bind(&spec.fingerprint)
            .bind(format_local(initial.local))
            .bind(sqlite_millis(initial.fire_at))
            .bind(sqlite_millis(Utc::now()))
            .fetch_optional(&mut **tx)
            .await?,
            Tx::Postgres(tx) => sqlx::query_scalar(
                "INSERT INTO job_schedule (name, cron, time_zone, semantics, misfire, job_kind, job_args, fingerprint, \
                   enabled, next_local, next_fire_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true, $9, $10) \
                 ON CONFLICT (name) DO UPDATE SET cron = excluded.cron, time_zone = excluded.time_zone, \
                   semantics = excluded.semantics, misfire = excluded.misfire, job_kind = excluded.job_kind, \
                   job_args = excluded.job_args, fingerprint = excluded.fingerprint, enabled = true, \
                   next_local = excluded.next_local, next_fire_at = excluded.next_fire_at, updated_at = now() \
                 WHERE job_schedule.fingerprint <> excluded.fingerprint OR NOT job_schedule.enabled \
                 RETURNING name",
            )
            .bind(&spec.name)
            .bind(&spec.cron)
            .bind(&spec.time_zone)
            .bind(&spec.semantics)
            .bind(&spec.misfire)
            .bind(&spec.job_kind)
            .bind(&spec.job_args)
            .bind(&spec.fingerprint)
            .bind(format_local(initial.local))
            .bind(initial.fire_at)
            .fetch_optional(&mut **tx)
            .await?,
        };
    Ok(if changed.is_some() { SyncOutcome::CursorReset } else { SyncOutcome::Unchanged })
}

/// Disable every schedule not named in `keep` (removed from configuration). Returns how many.
pub async fn disable_schedules_except(tx: &mut Tx, keep: &[String]) -> Result<u64, StoreError> {
    let keep_json = serde_json::to_string(keep).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let updated = match tx {
        Tx::Sqlite(tx) => sqlx::query(
            "UPDATE job_schedule SET enabled = 0 WHERE enabled = 1 AND name NOT IN (SELECT value FROM json_each($1))",
        )
        .bind(keep_json)
        .execute(&mut **tx)
        .await?
        .rows_affected(),
        Tx::Postgres(tx) => sqlx::query(
            "UPDATE job_schedule SET enabled = false, updated_at = now() \
             WHERE enabled AND NOT (name = ANY($1::text[]))",
        )
        .bind(keep.to_vec())
        .execute(&mut **tx)
        .await?
        .rows_affected(),
    };
    Ok(updated)
}

const SCHEDULE_COLUMNS: &str = "name, cron, time_zone, semantics, misfire, job_kind, job_args, fingerprint, enabled, \
     next_local, next_fire_at, last_fired_local";

fn sqlite_schedule_row(row: &sqlx::sqlite::SqliteRow) -> Result<ScheduleRow, StoreError> {
    let name: String = row.try_get("name")?;
    let args: String = row.try_get("job_args")?;
    let next_local: String = row.try_get("next_local")?;
    let last: Option<String> = row.try_get("last_fired_local")?;
    let job_args =
        serde_json::from_str(&args).map_err(|e| StoreError::Corrupt(format!("job_schedule {name} job_args: {e}")))?;
    Ok(ScheduleRow {
        next_local: parse_local(&next_local, &name)?,
        next_fire_at: sqlite_time(row.try_get("next_fire_at")?)?,
        last_fired_local: last.map(|t| parse_local(&t, &name)).transpose()?,
        enabled: row.try_get("enabled")?,
        spec: ScheduleSpec {
            cron: row.try_get("cron")?,
            time_zone: row.try_get("time_zone")?,
            semantics: row.try_get("semantics")?,
            misfire: row.try_get("misfire")?,
            job_kind: row.try_get("job_kind")?,
            job_args,
            fingerprint: row.try_get("fingerprint")?,
            name,
        },
    })
}

fn postgres_schedule_row(row: &sqlx::postgres::PgRow) -> Result<ScheduleRow, StoreError> {
    let name: String = row.try_get("name")?;
    let next_local: String = row.try_get("next_local")?;
    let last: Option<String> = row.try_get("last_fired_local")?;
    Ok(ScheduleRow {
        next_local: parse_local(&next_local, &name)?,
        next_fire_at: row.try_get("next_fire_at")?,
        last_fired_local: last.map(|t| parse_local(&t, &name)).transpose()?,
        enabled: row.try_get("enabled")?,
        spec: ScheduleSpec {
            cron: row.try_get("cron")?,
            time_zone: row.try_get("time_zone")?,
            semantics: row.try_get("semantics")?,
            misfire: row.try_get("misfire")?,
            job_kind: row.try_get("job_kind")?,
            job_args: row.try_get("job_args")?,
            fingerprint: row.try_get("fingerprint")?,
            name,
        },
    })
}

/// Lock up to `limit` enabled schedules due at `now` (the database clock, from `jobs::db_now`) for
/// this transaction. Rows another worker holds are skipped, not waited for.
pub async fn lock_due_schedules(tx: &mut Tx, now: DateTime<Utc>, limit: i64) -> Result<Vec<ScheduleRow>, StoreError> {
    match tx {
        Tx::Sqlite(tx) => {
            let sql = format!(
                "SELECT {SCHEDULE_COLUMNS} FROM job_schedule WHERE enabled = 1 AND next_fire_at <= $1 \
                 ORDER BY next_fire_at LIMIT $2"
            );
            let rows =
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(sqlite_millis(now)).bind(limit).fetch_all(&mut **tx).await?;
            rows.iter().map(sqlite_schedule_row).collect()
        }
        Tx::Postgres(tx) => {
            let sql = format!(
                "SELECT {SCHEDULE_COLUMNS} FROM job_schedule WHERE enabled AND next_fire_at <= $1 \
                 ORDER BY next_fire_at LIMIT $2 FOR UPDATE SKIP LOCKED"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(limit).fetch_all(&mut **tx).await?;
            rows.iter().map(postgres_schedule_row).collect()
        }
    }
}

/// Move a locked schedule's cursor to `next`, recording the occurrence just fired (if any).
pub async fn advance_schedule(
    tx: &mut Tx,
    name: &str,
    next: Cursor,
    fired_local: Option<NaiveDateTime>,
) -> Result<(), StoreError> {
    let fired = fired_local.map(format_local);
    match tx {
        Tx::Sqlite(tx) => {
            sqlx::query(
                "UPDATE job_schedule SET next_local = $2, next_fire_at = $3, \
                   last_fired_local = COALESCE($4, last_fired_local), updated_at = $5 WHERE name = $1",
            )
            .bind(name)
            .bind(format_local(next.local))
            .bind(sqlite_millis(next.fire_at))
            .bind(fired)
            .bind(sqlite_millis(Utc::now()))
            .execute(&mut **tx)
            .await?;
        }
        Tx::Postgres(tx) => {
            sqlx::query(
                "UPDATE job_schedule SET next_local = $2, next_fire_at = $3, \
                   last_fired_local = COALESCE($4, last_fired_local), updated_at = now() WHERE name = $1",
            )
            .bind(name)
            .bind(format_local(next.local))
            .bind(next.fire_at)
            .bind(fired)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// Every stored schedule (enabled first, then by next fire time), for `refill jobs status`.
pub async fn list_schedules(store: &Store) -> Result<Vec<ScheduleRow>, StoreError> {
    match &store.pools {
        Pools::Sqlite { read, .. } => {
            let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM job_schedule ORDER BY enabled DESC, next_fire_at, name");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(read).await?;
            rows.iter().map(sqlite_schedule_row).collect()
        }
        Pools::Postgres(pool) => {
            let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM job_schedule ORDER BY enabled DESC, next_fire_at, name");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?;
            rows.iter().map(postgres_schedule_row).collect()
        }
    }
}
