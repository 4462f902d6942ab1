//! The durable job queue: enqueue inside the caller's transaction, claim with a lease and a fencing
//! token, heartbeat, complete, fail with backoff, release, rescue expired leases, cancel, and the
//! counts staff see.
//!
//! PostgreSQL claims with `FOR UPDATE SKIP LOCKED` in a materialised CTE feeding `UPDATE … RETURNING`;
//! SQLite runs one `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING` under `BEGIN IMMEDIATE`, where the
//! single writer serialises claimers. Every lease comparison uses the database clock (`now()` on
//! PostgreSQL, the host clock read by SQLite itself), never the worker's. Heartbeat, complete, fail and
//! release all say `WHERE id = … AND lease_token = …`: a worker whose lease was taken over gets zero
//! rows back and must roll back whatever it did in the same transaction.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::Row;

use crate::{Pools, Store, StoreError, Tx};

/// SQLite's clock as epoch milliseconds (UTC), evaluated inside the statement.
const SQLITE_NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

/// States a job row can be in. `Dead` is the end of the line after `max_attempts` (staff see it);
/// `Cancelled` was stopped on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    Available,
    Running,
    Completed,
    Dead,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] =
        [JobState::Available, JobState::Running, JobState::Completed, JobState::Dead, JobState::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A job to insert. `kind` is the payload's stable name; `payload` its JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: String,
    pub queue: String,
    pub payload: serde_json::Value,
    /// Lower runs first.
    pub priority: i16,
    /// `None`: due now (database clock).
    pub run_at: Option<DateTime<Utc>>,
    pub max_attempts: i32,
    /// Business idempotency key; a second enqueue with the same key is a no-op.
    pub unique_key: Option<String>,
}

impl NewJob {
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> NewJob {
        NewJob {
            kind: kind.into(),
            queue: DEFAULT_QUEUE.to_string(),
            payload,
            priority: 0,
            run_at: None,
            max_attempts: 10,
            unique_key: None,
        }
    }

    pub fn unique_key(mut self, key: impl Into<String>) -> NewJob {
        self.unique_key = Some(key.into());
        self
    }

    pub fn run_at(mut self, at: DateTime<Utc>) -> NewJob {
        self.run_at = Some(at);
        self
    }

    pub fn priority(mut self, priority: i16) -> NewJob {
        self.priority = priority;
        self
    }

    pub fn queue(mut self, queue: impl Into<String>) -> NewJob {
        self.queue = queue.into();
        self
    }

    pub fn max_attempts(mut self, max_attempts: i32) -> NewJob {
        self.max_attempts = max_attempts;
        self
    }
}

/// The queue jobs go to unless they say otherwise.
pub const DEFAULT_QUEUE: &str = "default";

/// A job this worker holds a lease on.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    pub id: i64,
    pub kind: String,
    pub payload: serde_json::Value,
    /// This attempt's number, counted at claim (1 on the first run).
    pub attempt: i32,
    pub max_attempts: i32,
    pub unique_key: Option<String>,
    pub lease: Lease,
}

/// The fencing pair every later statement on a claimed job must present.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    pub job_id: i64,
    pub token: String,
}

/// What `fail` did with the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Back to `available`, due after the backoff.
    Retrying,
    /// Out of attempts (or given up): `dead`, shown to staff.
    Dead,
    /// The lease was no longer ours: someone else owns the job now; nothing changed.
    LeaseLost,
}

/// One job as staff and `refill jobs status` see it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub queue: String,
    pub state: JobState,
    pub priority: i16,
    pub attempt: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub unique_key: Option<String>,
    pub lease_owner: Option<String>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finalized_at: Option<DateTime<Utc>>,
}

/// Jobs per queue and state, with how many available ones are already due.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueCount {
    pub queue: String,
    pub state: JobState,
    pub count: i64,
    /// Available and due now (0 for other states).
    pub due: i64,
    /// The oldest due run_at among available jobs: how far behind the workers are.
    pub oldest_due: Option<DateTime<Utc>>,
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms).single().ok_or_else(|| StoreError::Corrupt(format!("job time {ms} out of range")))
}

fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

fn parse_state(text: &str) -> Result<JobState, StoreError> {
    JobState::parse(text).ok_or_else(|| StoreError::Corrupt(format!("job.state {text:?}")))
}

fn parse_payload(text: &str, id: i64) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("job {id} payload: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Enqueue

/// Insert a job in the caller's transaction: the job exists if and only if the caller's change
/// commits. Returns the new id, or `None` when a job with the same unique key already exists.
pub async fn enqueue(tx: &mut Tx, job: &NewJob) -> Result<Option<i64>, StoreError> {
    match tx {
        Tx::Sqlite(tx) => {
            let sql = format!(
                "INSERT INTO job (kind, queue, payload, priority, run_at, max_attempts, unique_key, created_at) \
                 VALUES (?1, ?2, ?3, ?4, COALESCE(?5, {SQLITE_NOW_MS}), ?6, ?7, {SQLITE_NOW_MS}) \
                 ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING RETURNING id"
            );
            let id: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(&job.kind)
                .bind(&job.queue)
                .bind(job.payload.to_string())
                .bind(job.priority)
                .bind(job.run_at.map(millis))
                .bind(job.max_attempts)
                .bind(&job.unique_key)
                .fetch_optional(&mut **tx)
                .await?;
            Ok(id)
        }
        Tx::Postgres(tx) => {
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO job (kind, queue, payload, priority, run_at, max_attempts, unique_key) \
                 VALUES ($1, $2, $3, $4, COALESCE($5, now()), $6, $7) \
                 ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING RETURNING id",
            )
            .bind(&job.kind)
            .bind(&job.queue)
            .bind(&job.payload)
            .bind(job.priority)
            .bind(job.run_at)
            .bind(job.max_attempts)
            .bind(&job.unique_key)
            .fetch_optional(&mut **tx)
            .await?;
            Ok(id)
        }
    }
}

/// [`enqueue`] for many jobs in multi-row inserts (the daily chunk's reminders): a job whose unique
/// key exists already, or appears earlier in `jobs`, is skipped. Returns how many were inserted.
///
/// # Errors
/// Database errors.
pub async fn enqueue_many(tx: &mut Tx, jobs: &[NewJob]) -> Result<u64, StoreError> {
    let mut inserted = 0;
    for rows in jobs.chunks(crate::batch::ROWS_PER_STATEMENT) {
        let done = match tx {
            Tx::Sqlite(tx) => {
                let row = format!("(?, ?, ?, ?, COALESCE(?, {SQLITE_NOW_MS}), ?, ?, {SQLITE_NOW_MS})");
                let sql = format!(
                    "INSERT INTO job (kind, queue, payload, priority, run_at, max_attempts, unique_key, created_at) \
                     VALUES {} ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING",
                    crate::batch::values_list(&row, rows.len(), 1)
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for job in rows {
                    query = query
                        .bind(&job.kind)
                        .bind(&job.queue)
                        .bind(job.payload.to_string())
                        .bind(job.priority)
                        .bind(job.run_at.map(millis))
                        .bind(job.max_attempts)
                        .bind(&job.unique_key);
                }
                query.execute(&mut **tx).await?.rows_affected()
            }
            Tx::Postgres(tx) => {
                let sql = format!(
                    "INSERT INTO job (kind, queue, payload, priority, run_at, max_attempts, unique_key) \
                     VALUES {} ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING",
                    crate::batch::values_list("(?, ?, ?, ?, COALESCE(?, now()), ?, ?)", rows.len(), 1)
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for job in rows {
                    query = query
                        .bind(&job.kind)
                        .bind(&job.queue)
                        .bind(&job.payload)
                        .bind(job.priority)
                        .bind(job.run_at)
                        .bind(job.max_attempts)
                        .bind(&job.unique_key);
                }
                query.execute(&mut **tx).await?.rows_affected()
            }
        };
        inserted += done;
    }
    Ok(inserted)
}

/// Insert `count` identical jobs in one statement (benchmarks and load tests preload the queue this
/// way); the payload gets `"n": <sequence number>` added. Returns how many rows were inserted.
pub async fn enqueue_copies(tx: &mut Tx, job: &NewJob, count: i64) -> Result<u64, StoreError> {
    let payload = job.payload.to_string();
    match tx {
        Tx::Sqlite(tx) => {
            let sql = format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
                 INSERT INTO job (kind, queue, payload, priority, run_at, max_attempts, created_at) \
                 SELECT ?2, ?3, json_set(?4, '$.n', i), ?5, COALESCE(?6, {SQLITE_NOW_MS}), ?7, {SQLITE_NOW_MS} FROM n"
            );
            let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(count)
                .bind(&job.kind)
                .bind(&job.queue)
                .bind(payload)
                .bind(job.priority)
                .bind(job.run_at.map(millis))
                .bind(job.max_attempts)
                .execute(&mut **tx)
                .await?;
            Ok(done.rows_affected())
        }
        Tx::Postgres(tx) => {
            let done = sqlx::query(
                "INSERT INTO job (kind, queue, payload, priority, run_at, max_attempts) \
                 SELECT $2, $3, $4::jsonb || jsonb_build_object('n', i), $5, COALESCE($6, now()), $7 \
                 FROM generate_series(1, $1::bigint) AS i",
            )
            .bind(count)
            .bind(&job.kind)
            .bind(&job.queue)
            .bind(payload)
            .bind(job.priority)
            .bind(job.run_at)
            .bind(job.max_attempts)
            .execute(&mut **tx)
            .await?;
            Ok(done.rows_affected())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Claim, heartbeat, complete, fail, release, rescue

/// The PostgreSQL claim statement, public so the benchmark can hand pgbench the identical SQL.
/// `$1` queue, `$2` limit, `$3` worker id, `$4` lease seconds.
pub const POSTGRES_CLAIM_SQL: &str = "WITH next AS MATERIALIZED ( \
       SELECT id FROM job WHERE state = 'available' AND queue = $1 AND run_at <= now() \
       ORDER BY priority, run_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) \
     UPDATE job j SET state = 'running', attempt = j.attempt + 1, lease_owner = $3, \
       lease_token = gen_random_uuid(), lease_expires_at = now() + make_interval(secs => $4), \
       attempted_at = now() \
     FROM next WHERE j.id = next.id \
     RETURNING j.id, j.kind, j.payload, j.attempt, j.max_attempts, j.unique_key, j.lease_token::text AS lease_token";

/// The PostgreSQL fenced completion, public for the benchmark. `$1` job id, `$2` lease token.
pub const POSTGRES_COMPLETE_SQL: &str = "UPDATE job SET state = 'completed', finalized_at = now(), \
       lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL \
     WHERE id = $1 AND lease_token = $2::uuid AND state = 'running'";

/// Claim up to `limit` due jobs of `queue` for `worker`, each with a lease of `lease` and a fresh
/// fencing token. Ordered by priority, run_at, id.
pub async fn claim(
    store: &Store,
    queue: &str,
    worker: &str,
    lease: Duration,
    limit: i64,
) -> Result<Vec<ClaimedJob>, StoreError> {
    let mut jobs = match &store.pools {
        Pools::Sqlite { write, .. } => {
            let sql = format!(
                "UPDATE job SET state = 'running', attempt = attempt + 1, lease_owner = ?1, \
                   lease_token = lower(hex(randomblob(16))), lease_expires_at = {SQLITE_NOW_MS} + ?2, \
                   attempted_at = {SQLITE_NOW_MS} \
                 WHERE id IN (SELECT id FROM job WHERE state = 'available' AND queue = ?3 \
                   AND run_at <= {SQLITE_NOW_MS} ORDER BY priority, run_at, id LIMIT ?4) \
                 RETURNING id, kind, payload, attempt, max_attempts, unique_key, lease_token"
            );
            let mut tx = write.begin_with("BEGIN IMMEDIATE").await?;
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(worker)
                .bind(lease.as_millis() as i64)
                .bind(queue)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            let mut jobs = Vec::with_capacity(rows.len());
            for row in rows {
                let id: i64 = row.try_get("id")?;
                let payload: String = row.try_get("payload")?;
                jobs.push(ClaimedJob {
                    id,
                    kind: row.try_get("kind")?,
                    payload: parse_payload(&payload, id)?,
                    attempt: row.try_get("attempt")?,
                    max_attempts: row.try_get("max_attempts")?,
                    unique_key: row.try_get("unique_key")?,
                    lease: Lease { job_id: id, token: row.try_get("lease_token")? },
                });
            }
            jobs
        }
        Pools::Postgres(pool) => {
            let rows = sqlx::query(POSTGRES_CLAIM_SQL)
                .bind(queue)
                .bind(limit)
                .bind(worker)
                .bind(secs(lease))
                .fetch_all(pool)
                .await?;
            let mut jobs = Vec::with_capacity(rows.len());
            for row in rows {
                let id: i64 = row.try_get("id")?;
                jobs.push(ClaimedJob {
                    id,
                    kind: row.try_get("kind")?,
                    payload: row.try_get("payload")?,
                    attempt: row.try_get("attempt")?,
                    max_attempts: row.try_get("max_attempts")?,
                    unique_key: row.try_get("unique_key")?,
                    lease: Lease { job_id: id, token: row.try_get("lease_token")? },
                });
            }
            jobs
        }
    };
    jobs.sort_by_key(|job| job.id);
    Ok(jobs)
}

/// Extend the leases this worker still holds. Returns the job ids whose lease is still ours; any
/// other lease was lost (rescued and re-claimed, or cancelled) and its work must not commit.
pub async fn heartbeat(store: &Store, leases: &[Lease], lease: Duration) -> Result<Vec<i64>, StoreError> {
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    match &store.pools {
        Pools::Sqlite { write, .. } => {
            let sql = format!(
                "UPDATE job SET lease_expires_at = {SQLITE_NOW_MS} + ?3 \
                 WHERE id = ?1 AND lease_token = ?2 AND state = 'running' RETURNING id"
            );
            let mut tx = write.begin_with("BEGIN IMMEDIATE").await?;
            let mut kept = Vec::with_capacity(leases.len());
            for held in leases {
                let id: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(held.job_id)
                    .bind(&held.token)
                    .bind(lease.as_millis() as i64)
                    .fetch_optional(&mut *tx)
                    .await?;
                kept.extend(id);
            }
            tx.commit().await?;
            Ok(kept)
        }
        Pools::Postgres(pool) => {
            let (ids, tokens): (Vec<i64>, Vec<String>) = leases.iter().map(|l| (l.job_id, l.token.clone())).unzip();
            let kept: Vec<i64> = sqlx::query_scalar(
                "UPDATE job SET lease_expires_at = now() + make_interval(secs => $3) \
                 FROM unnest($1::bigint[], $2::text[]) AS held(id, token) \
                 WHERE job.id = held.id AND job.lease_token = held.token::uuid AND job.state = 'running' \
                 RETURNING job.id",
            )
            .bind(ids)
            .bind(tokens)
            .bind(secs(lease))
            .fetch_all(pool)
            .await?;
            Ok(kept)
        }
    }
}

/// Mark a held job completed, in the caller's transaction (the one holding the job's effects).
///
/// # Errors
/// `Conflict` when the lease is no longer ours: the caller must roll back.
pub async fn complete(tx: &mut Tx, lease: &Lease) -> Result<(), StoreError> {
    let updated = match tx {
        Tx::Sqlite(tx) => {
            let sql = format!(
                "UPDATE job SET state = 'completed', finalized_at = {SQLITE_NOW_MS}, \
                   lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL \
                 WHERE id = ?1 AND lease_token = ?2 AND state = 'running'"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(lease.job_id)
                .bind(&lease.token)
                .execute(&mut **tx)
                .await?
                .rows_affected()
        }
        Tx::Postgres(tx) => sqlx::query(POSTGRES_COMPLETE_SQL)
            .bind(lease.job_id)
            .bind(&lease.token)
            .execute(&mut **tx)
            .await?
            .rows_affected(),
    };
    if updated == 1 { Ok(()) } else { Err(lease_lost(lease)) }
}

/// Complete a held job that had no effects to commit: one statement, no explicit transaction.
///
/// # Errors
/// `Conflict` when the lease is no longer ours.
pub async fn complete_alone(store: &Store, lease: &Lease) -> Result<(), StoreError> {
    match &store.pools {
        Pools::Sqlite { .. } => {
            let mut tx = store.begin().await?;
            complete(&mut tx, lease).await?;
            tx.commit().await
        }
        Pools::Postgres(pool) => {
            let updated =
                sqlx::query(POSTGRES_COMPLETE_SQL).bind(lease.job_id).bind(&lease.token).execute(pool).await?;
            if updated.rows_affected() == 1 { Ok(()) } else { Err(lease_lost(lease)) }
        }
    }
}

/// Complete many held jobs in the caller's transaction (batched mode).
///
/// # Errors
/// `Conflict` naming the first job whose lease was lost; the caller must roll back the whole batch.
pub async fn complete_many(tx: &mut Tx, leases: &[Lease]) -> Result<(), StoreError> {
    match tx {
        Tx::Sqlite(_) => {
            for lease in leases {
                complete(tx, lease).await?;
            }
            Ok(())
        }
        Tx::Postgres(tx) => {
            let (ids, tokens): (Vec<i64>, Vec<String>) = leases.iter().map(|l| (l.job_id, l.token.clone())).unzip();
            let done: Vec<i64> = sqlx::query_scalar(
                "UPDATE job SET state = 'completed', finalized_at = now(), \
                   lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL \
                 FROM unnest($1::bigint[], $2::text[]) AS held(id, token) \
                 WHERE job.id = held.id AND job.lease_token = held.token::uuid AND job.state = 'running' \
                 RETURNING job.id",
            )
            .bind(ids)
            .bind(tokens)
            .fetch_all(&mut **tx)
            .await?;
            if done.len() == leases.len() {
                return Ok(());
            }
            let lost = leases.iter().find(|l| !done.contains(&l.job_id)).unwrap_or(&leases[0]);
            Err(lease_lost(lost))
        }
    }
}

fn lease_lost(lease: &Lease) -> StoreError {
    StoreError::Conflict(format!("job {} lease lost", lease.job_id))
}

/// Record a failed attempt. The job goes back to `available` after `retry_in` unless it is out of
/// attempts or `give_up` is set (a permanent error), in which case it becomes `dead`.
pub async fn fail(
    store: &Store,
    lease: &Lease,
    error: &str,
    retry_in: Duration,
    give_up: bool,
) -> Result<FailOutcome, StoreError> {
    let mut tx = store.begin().await?;
    let outcome = fail_in(&mut tx, lease, error, retry_in, give_up).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// `fail` inside the caller's transaction (batched mode).
pub async fn fail_in(
    tx: &mut Tx,
    lease: &Lease,
    error: &str,
    retry_in: Duration,
    give_up: bool,
) -> Result<FailOutcome, StoreError> {
    // Errors are stored for staff; keep them short and free of patient data (callers pass opaque text).
    let error: String = error.chars().take(2000).collect();
    let state: Option<String> = match tx {
        Tx::Sqlite(tx) => {
            let sql = format!(
                "UPDATE job SET \
                   state = CASE WHEN ?5 OR attempt >= max_attempts THEN 'dead' ELSE 'available' END, \
                   finalized_at = CASE WHEN ?5 OR attempt >= max_attempts THEN {SQLITE_NOW_MS} END, \
                   run_at = {SQLITE_NOW_MS} + ?3, last_error = ?4, \
                   lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL \
                 WHERE id = ?1 AND lease_token = ?2 AND state = 'running' RETURNING state"
            );
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(lease.job_id)
                .bind(&lease.token)
                .bind(retry_in.as_millis() as i64)
                .bind(&error)
                .bind(give_up)
                .fetch_optional(&mut **tx)
                .await?
        }
        Tx::Postgres(tx) => {
            sqlx::query_scalar(
                "UPDATE job SET \
                   state = CASE WHEN $5 OR attempt >= max_attempts THEN 'dead' ELSE 'available' END, \
                   finalized_at = CASE WHEN $5 OR attempt >= max_attempts THEN now() END, \
                   run_at = now() + make_interval(secs => $3), last_error = $4, \
                   lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL \
                 WHERE id = $1 AND lease_token = $2::uuid AND state = 'running' RETURNING state",
            )
            .bind(lease.job_id)
            .bind(&lease.token)
            .bind(secs(retry_in))
            .bind(&error)
            .bind(give_up)
            .fetch_optional(&mut **tx)
            .await?
        }
    };
    Ok(match state.as_deref() {
        None => FailOutcome::LeaseLost,
        Some("dead") => FailOutcome::Dead,
        Some(_) => FailOutcome::Retrying,
    })
}

/// Give a held job back without counting the attempt (graceful shutdown before it ran or finished).
/// Returns false when the lease was already lost.
pub async fn release(store: &Store, lease: &Lease) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let updated = match &mut tx {
        Tx::Sqlite(tx) => {
            let sql = format!(
                "UPDATE job SET state = 'available', attempt = max(attempt - 1, 0), run_at = {SQLITE_NOW_MS}, \
                   lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL \
                 WHERE id = ?1 AND lease_token = ?2 AND state = 'running'"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(lease.job_id)
                .bind(&lease.token)
                .execute(&mut **tx)
                .await?
                .rows_affected()
        }
        Tx::Postgres(tx) => sqlx::query(
            "UPDATE job SET state = 'available', attempt = greatest(attempt - 1, 0), run_at = now(), \
               lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND lease_token = $2::uuid AND state = 'running'",
        )
        .bind(lease.job_id)
        .bind(&lease.token)
        .execute(&mut **tx)
        .await?
        .rows_affected(),
    };
    tx.commit().await?;
    Ok(updated == 1)
}

/// Return jobs whose lease expired (their worker crashed or was cut off) to `available`, or to `dead`
/// when they are out of attempts. Safe to run from every worker at once. Returns the rescued ids.
pub async fn rescue_expired(store: &Store, limit: i64) -> Result<Vec<i64>, StoreError> {
    match &store.pools {
        Pools::Sqlite { write, .. } => {
            let sql = format!(
                "UPDATE job SET \
                   state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'available' END, \
                   finalized_at = CASE WHEN attempt >= max_attempts THEN {SQLITE_NOW_MS} END, \
                   run_at = {SQLITE_NOW_MS}, last_error = 'lease expired', \
                   lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL \
                 WHERE id IN (SELECT id FROM job WHERE state = 'running' AND lease_expires_at < {SQLITE_NOW_MS} \
                   ORDER BY lease_expires_at LIMIT ?1) RETURNING id"
            );
            let mut tx = write.begin_with("BEGIN IMMEDIATE").await?;
            let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(&mut *tx).await?;
            tx.commit().await?;
            Ok(ids)
        }
        Pools::Postgres(pool) => {
            let ids: Vec<i64> = sqlx::query_scalar(
                "WITH expired AS MATERIALIZED ( \
                   SELECT id FROM job WHERE state = 'running' AND lease_expires_at < now() \
                   ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
                 UPDATE job j SET \
                   state = CASE WHEN j.attempt >= j.max_attempts THEN 'dead' ELSE 'available' END, \
                   finalized_at = CASE WHEN j.attempt >= j.max_attempts THEN now() END, \
                   run_at = now(), last_error = 'lease expired', \
                   lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL \
                 FROM expired WHERE j.id = expired.id RETURNING j.id",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?;
            Ok(ids)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cancellation and staff actions

/// Cancel a job that has not finished, in the caller's transaction. A running job loses its lease:
/// its worker's completion is fenced out and its effects roll back. Returns whether a job changed.
pub async fn cancel(tx: &mut Tx, job_id: i64, reason: &str) -> Result<bool, StoreError> {
    cancel_where(tx, "id", CancelTarget::Id(job_id), reason).await
}

/// Cancel the unfinished job with this unique key (e.g. a taper step whose plan was revised).
pub async fn cancel_by_key(tx: &mut Tx, unique_key: &str, reason: &str) -> Result<bool, StoreError> {
    cancel_where(tx, "unique_key", CancelTarget::Key(unique_key), reason).await
}

enum CancelTarget<'a> {
    Id(i64),
    Key(&'a str),
}

async fn cancel_where(tx: &mut Tx, column: &str, target: CancelTarget<'_>, reason: &str) -> Result<bool, StoreError> {
    let updated = match tx {
        Tx::Sqlite(tx) => {
            let sql = format!(
                "UPDATE job SET state = 'cancelled', finalized_at = {SQLITE_NOW_MS}, cancel_reason = ?2, \
                   lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL \
                 WHERE {column} = ?1 AND state IN ('available', 'running')"
            );
            let query = sqlx::query(sqlx::AssertSqlSafe(sql));
            let query = match target {
                CancelTarget::Id(id) => query.bind(id),
                CancelTarget::Key(key) => query.bind(key.to_string()),
            };
            query.bind(reason).execute(&mut **tx).await?.rows_affected()
        }
        Tx::Postgres(tx) => {
            let sql = format!(
                "UPDATE job SET state = 'cancelled', finalized_at = now(), cancel_reason = $2, \
                   lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL \
                 WHERE {column} = $1 AND state IN ('available', 'running')"
            );
            let query = sqlx::query(sqlx::AssertSqlSafe(sql));
            let query = match target {
                CancelTarget::Id(id) => query.bind(id),
                CancelTarget::Key(key) => query.bind(key.to_string()),
            };
            query.bind(reason).execute(&mut **tx).await?.rows_affected()
        }
    };
    Ok(updated > 0)
}

/// Staff action: give a dead job one more attempt now. Returns whether the job was dead.
pub async fn retry_dead(tx: &mut Tx, job_id: i64) -> Result<bool, StoreError> {
    let updated = match tx {
        Tx::Sqlite(tx) => {
            let sql = format!(
                "UPDATE job SET state = 'available', max_attempts = attempt + 1, run_at = {SQLITE_NOW_MS}, \
                   finalized_at = NULL WHERE id = ?1 AND state = 'dead'"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(job_id).execute(&mut **tx).await?.rows_affected()
        }
        Tx::Postgres(tx) => sqlx::query(
            "UPDATE job SET state = 'available', max_attempts = attempt + 1, run_at = now(), \
               finalized_at = NULL WHERE id = $1 AND state = 'dead'",
        )
        .bind(job_id)
        .execute(&mut **tx)
        .await?
        .rows_affected(),
    };
    Ok(updated == 1)
}

/// Delete finished jobs: completed or cancelled ones without a unique key after `keep_plain`, keyed
/// ones (whose key guards against a second enqueue) after `keep_keyed`. Dead jobs stay for staff.
/// Deletes at most `limit` rows per call so the transaction stays short.
pub async fn prune_finished(
    store: &Store,
    keep_plain: Duration,
    keep_keyed: Duration,
    limit: i64,
) -> Result<u64, StoreError> {
    let mut tx = store.begin().await?;
    let deleted = match &mut tx {
        Tx::Sqlite(tx) => {
            let sql = format!(
                "DELETE FROM job WHERE id IN (SELECT id FROM job WHERE state IN ('completed', 'cancelled') \
                   AND finalized_at < {SQLITE_NOW_MS} - CASE WHEN unique_key IS NULL THEN ?1 ELSE ?2 END LIMIT ?3)"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(keep_plain.as_millis() as i64)
                .bind(keep_keyed.as_millis() as i64)
                .bind(limit)
                .execute(&mut **tx)
                .await?
                .rows_affected()
        }
        Tx::Postgres(tx) => sqlx::query(
            "DELETE FROM job WHERE id IN (SELECT id FROM job WHERE state IN ('completed', 'cancelled') \
               AND finalized_at < now() - make_interval(secs => CASE WHEN unique_key IS NULL THEN $1 ELSE $2 END) \
               LIMIT $3)",
        )
        .bind(secs(keep_plain))
        .bind(secs(keep_keyed))
        .bind(limit)
        .execute(&mut **tx)
        .await?
        .rows_affected(),
    };
    tx.commit().await?;
    Ok(deleted)
}

// ---------------------------------------------------------------------------------------------
// Probe effects (benchmarks and crash tests)

/// Record that a probe job's effect committed under this lease, in the job's transaction.
pub async fn record_probe_effect(tx: &mut Tx, lease: &Lease, worker: &str) -> Result<(), StoreError> {
    match tx {
        Tx::Sqlite(tx) => {
            let sql = format!(
                "INSERT INTO job_effect (job_id, lease_token, worker, created_at) VALUES (?1, ?2, ?3, {SQLITE_NOW_MS})"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(lease.job_id)
                .bind(&lease.token)
                .bind(worker)
                .execute(&mut **tx)
                .await?;
        }
        Tx::Postgres(tx) => {
            sqlx::query("INSERT INTO job_effect (job_id, lease_token, worker) VALUES ($1, $2::uuid, $3)")
                .bind(lease.job_id)
                .bind(&lease.token)
                .bind(worker)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

/// Exactly-once check over probe jobs of `kind`: (jobs, jobs completed, effect rows, jobs whose effect
/// count is not exactly one, jobs still available or running).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectAudit {
    pub jobs: i64,
    pub completed: i64,
    pub effects: i64,
    pub jobs_without_exactly_one_effect: i64,
    pub unfinished: i64,
    /// Jobs that needed more than one claim (their first worker died or lost the lease).
    pub reclaimed: i64,
}

pub async fn audit_probe_effects(store: &Store, kind: &str) -> Result<EffectAudit, StoreError> {
    let sql = "SELECT \
         (SELECT count(*) FROM job WHERE kind = $1) AS jobs, \
         (SELECT count(*) FROM job WHERE kind = $1 AND state = 'completed') AS completed, \
         (SELECT count(*) FROM job_effect e JOIN job j ON j.id = e.job_id WHERE j.kind = $1) AS effects, \
         (SELECT count(*) FROM job j WHERE j.kind = $1 AND \
            (SELECT count(*) FROM job_effect e WHERE e.job_id = j.id) <> 1) AS wrong, \
         (SELECT count(*) FROM job WHERE kind = $1 AND state IN ('available', 'running')) AS unfinished, \
         (SELECT count(*) FROM job WHERE kind = $1 AND attempt > 1) AS reclaimed";
    let row = match &store.pools {
        Pools::Sqlite { read, .. } => sqlx::query(sql).bind(kind).fetch_one(read).await?,
        Pools::Postgres(pool) => {
            // Same statement; counts are bigint on PostgreSQL and integer on SQLite, both read as i64.
            let row = sqlx::query(sql).bind(kind).fetch_one(pool).await?;
            return Ok(EffectAudit {
                jobs: row.try_get("jobs")?,
                completed: row.try_get("completed")?,
                effects: row.try_get("effects")?,
                jobs_without_exactly_one_effect: row.try_get("wrong")?,
                unfinished: row.try_get("unfinished")?,
                reclaimed: row.try_get("reclaimed")?,
            });
        }
    };
    Ok(EffectAudit {
        jobs: row.try_get("jobs")?,
        completed: row.try_get("completed")?,
        effects: row.try_get("effects")?,
        jobs_without_exactly_one_effect: row.try_get("wrong")?,
        unfinished: row.try_get("unfinished")?,
        reclaimed: row.try_get("reclaimed")?,
    })
}

// ---------------------------------------------------------------------------------------------
// Reads for staff and `refill jobs status`

/// Jobs per queue and state.
pub async fn queue_counts(store: &Store) -> Result<Vec<QueueCount>, StoreError> {
    let mut counts = Vec::new();
    match &store.pools {
        Pools::Sqlite { read, .. } => {
            let sql = format!(
                "SELECT queue, state, count(*) AS n, \
                   sum(CASE WHEN state = 'available' AND run_at <= {SQLITE_NOW_MS} THEN 1 ELSE 0 END) AS due, \
                   min(CASE WHEN state = 'available' AND run_at <= {SQLITE_NOW_MS} THEN run_at END) AS oldest \
                 FROM job GROUP BY queue, state ORDER BY queue, state"
            );
            for row in sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(read).await? {
                let state: String = row.try_get("state")?;
                let oldest: Option<i64> = row.try_get("oldest")?;
                counts.push(QueueCount {
                    queue: row.try_get("queue")?,
                    state: parse_state(&state)?,
                    count: row.try_get("n")?,
                    due: row.try_get("due")?,
                    oldest_due: oldest.map(from_millis).transpose()?,
                });
            }
        }
        Pools::Postgres(pool) => {
            let rows = sqlx::query(
                "SELECT queue, state, count(*) AS n, \
                   count(*) FILTER (WHERE state = 'available' AND run_at <= now()) AS due, \
                   min(run_at) FILTER (WHERE state = 'available' AND run_at <= now()) AS oldest \
                 FROM job GROUP BY queue, state ORDER BY queue, state",
            )
            .fetch_all(pool)
            .await?;
            for row in rows {
                let state: String = row.try_get("state")?;
                counts.push(QueueCount {
                    queue: row.try_get("queue")?,
                    state: parse_state(&state)?,
                    count: row.try_get("n")?,
                    due: row.try_get("due")?,
                    oldest_due: row.try_get("oldest")?,
                });
            }
        }
    }
    Ok(counts)
}

/// Jobs of one kind that finished (completed or dead) since a moment, with the time from due to done.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedJobs {
    pub kind: String,
    pub state: JobState,
    pub count: i64,
    /// Seconds from `run_at` (due) to `finalized_at`: waiting plus running, the latency a job sees.
    pub mean_seconds: f64,
    pub max_seconds: f64,
}

/// Jobs finished since `since`, per kind and final state (for `/metrics`).
pub async fn finished_since(store: &Store, since: DateTime<Utc>) -> Result<Vec<FinishedJobs>, StoreError> {
    type Row = (String, String, i64, Option<f64>, Option<f64>);
    let rows: Vec<Row> = match &store.pools {
        Pools::Sqlite { read, .. } => {
            sqlx::query_as(
                "SELECT kind, state, count(*), avg(finalized_at - run_at) / 1000.0, max(finalized_at - run_at) / 1000.0 \
                 FROM job WHERE finalized_at >= $1 AND state IN ('completed', 'dead') GROUP BY kind, state ORDER BY kind, state",
            )
            .bind(millis(since))
            .fetch_all(read)
            .await?
        }
        Pools::Postgres(pool) => {
            sqlx::query_as(
                "SELECT kind, state, count(*), \
                   CAST(avg(EXTRACT(EPOCH FROM finalized_at - run_at)) AS float8), \
                   CAST(max(EXTRACT(EPOCH FROM finalized_at - run_at)) AS float8) \
                 FROM job WHERE finalized_at >= $1 AND state IN ('completed', 'dead') GROUP BY kind, state ORDER BY kind, state",
            )
            .bind(since)
            .fetch_all(pool)
            .await?
        }
    };
    rows.into_iter()
        .map(|(kind, state, count, mean, max)| {
            Ok(FinishedJobs {
                kind,
                state: parse_state(&state)?,
                count,
                mean_seconds: mean.unwrap_or(0.0).max(0.0),
                max_seconds: max.unwrap_or(0.0).max(0.0),
            })
        })
        .collect()
}

const JOB_COLUMNS: &str = "id, kind, queue, state, priority, attempt, max_attempts, run_at, unique_key, lease_owner, \
     last_error, created_at, finalized_at";

fn sqlite_job_row(row: &sqlx::sqlite::SqliteRow) -> Result<JobRow, StoreError> {
    let state: String = row.try_get("state")?;
    let finalized: Option<i64> = row.try_get("finalized_at")?;
    Ok(JobRow {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        queue: row.try_get("queue")?,
        state: parse_state(&state)?,
        priority: row.try_get("priority")?,
        attempt: row.try_get("attempt")?,
        max_attempts: row.try_get("max_attempts")?,
        run_at: from_millis(row.try_get("run_at")?)?,
        unique_key: row.try_get("unique_key")?,
        lease_owner: row.try_get("lease_owner")?,
        last_error: row.try_get("last_error")?,
        created_at: from_millis(row.try_get("created_at")?)?,
        finalized_at: finalized.map(from_millis).transpose()?,
    })
}

fn postgres_job_row(row: &sqlx::postgres::PgRow) -> Result<JobRow, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(JobRow {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        queue: row.try_get("queue")?,
        state: parse_state(&state)?,
        priority: row.try_get("priority")?,
        attempt: row.try_get("attempt")?,
        max_attempts: row.try_get("max_attempts")?,
        run_at: row.try_get("run_at")?,
        unique_key: row.try_get("unique_key")?,
        lease_owner: row.try_get("lease_owner")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        finalized_at: row.try_get("finalized_at")?,
    })
}

/// The most recent jobs in `state` (newest first), e.g. dead jobs for the staff page.
pub async fn list_jobs(store: &Store, state: JobState, limit: i64) -> Result<Vec<JobRow>, StoreError> {
    match &store.pools {
        Pools::Sqlite { read, .. } => {
            let sql = format!("SELECT {JOB_COLUMNS} FROM job WHERE state = ?1 ORDER BY id DESC LIMIT ?2");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(state.as_str()).bind(limit).fetch_all(read).await?;
            rows.iter().map(sqlite_job_row).collect()
        }
        Pools::Postgres(pool) => {
            let sql = format!("SELECT {JOB_COLUMNS} FROM job WHERE state = $1 ORDER BY id DESC LIMIT $2");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(state.as_str()).bind(limit).fetch_all(pool).await?;
            rows.iter().map(postgres_job_row).collect()
        }
    }
}

/// One job by id, or by unique key.
pub async fn get_job(store: &Store, job_id: i64) -> Result<Option<JobRow>, StoreError> {
    job_where(store, "id", job_id).await
}

/// The job holding this unique key, if any.
pub async fn get_job_by_key(store: &Store, unique_key: &str) -> Result<Option<JobRow>, StoreError> {
    job_where(store, "unique_key", unique_key.to_string()).await
}

/// The one job whose `column` (a fixed name chosen by the callers above) equals `value`.
async fn job_where<T>(store: &Store, column: &'static str, value: T) -> Result<Option<JobRow>, StoreError>
where
    T: for<'q> sqlx::Encode<'q, sqlx::Sqlite>
        + sqlx::Type<sqlx::Sqlite>
        + for<'q> sqlx::Encode<'q, sqlx::Postgres>
        + sqlx::Type<sqlx::Postgres>
        + Send
        + 'static,
{
    match &store.pools {
        Pools::Sqlite { read, .. } => {
            let sql = format!("SELECT {JOB_COLUMNS} FROM job WHERE {column} = ?1");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(value).fetch_optional(read).await?;
            row.as_ref().map(sqlite_job_row).transpose()
        }
        Pools::Postgres(pool) => {
            let sql = format!("SELECT {JOB_COLUMNS} FROM job WHERE {column} = $1");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(value).fetch_optional(pool).await?;
            row.as_ref().map(postgres_job_row).transpose()
        }
    }
}

/// The database's clock, for schedule ticks and anything compared with stored times.
pub async fn db_now(tx: &mut Tx) -> Result<DateTime<Utc>, StoreError> {
    match tx {
        Tx::Sqlite(tx) => {
            let sql = format!("SELECT {SQLITE_NOW_MS}");
            let ms: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut **tx).await?;
            from_millis(ms)
        }
        Tx::Postgres(tx) => Ok(sqlx::query_scalar("SELECT now()").fetch_one(&mut **tx).await?),
    }
}

pub(crate) fn sqlite_millis(at: DateTime<Utc>) -> i64 {
    millis(at)
}

pub(crate) fn sqlite_time(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    from_millis(ms)
}

// ---------------------------------------------------------------------------------------------
// Savepoints (batched mode: one transaction, each job's effects in its own savepoint)

fn savepoint_name(name: &str) -> Result<&str, StoreError> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(name)
    } else {
        Err(StoreError::Corrupt(format!("savepoint name {name:?}")))
    }
}

async fn execute_in(tx: &mut Tx, sql: String) -> Result<(), StoreError> {
    match tx {
        Tx::Sqlite(tx) => {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut **tx).await?;
        }
        Tx::Postgres(tx) => {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut **tx).await?;
        }
    }
    Ok(())
}

pub async fn savepoint(tx: &mut Tx, name: &str) -> Result<(), StoreError> {
    let name = savepoint_name(name)?;
    execute_in(tx, format!("SAVEPOINT {name}")).await
}

pub async fn release_savepoint(tx: &mut Tx, name: &str) -> Result<(), StoreError> {
    let name = savepoint_name(name)?;
    execute_in(tx, format!("RELEASE SAVEPOINT {name}")).await
}

pub async fn rollback_to_savepoint(tx: &mut Tx, name: &str) -> Result<(), StoreError> {
    let name = savepoint_name(name)?;
    // ROLLBACK TO keeps the savepoint open on both backends; release it so names do not pile up.
    execute_in(tx, format!("ROLLBACK TO SAVEPOINT {name}")).await?;
    execute_in(tx, format!("RELEASE SAVEPOINT {name}")).await
}
