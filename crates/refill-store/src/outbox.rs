//! The email outbox: one row per business event (unique idempotency key), the raw message with its
//! Message-ID fixed when the row is written, a lease while a sender holds it, an attempt log written
//! before any byte goes to the relay, and the delivery status staff can see. Also the patients' email
//! reachability (consent, address, preference) that decides whether a patient gets email at all.
//!
//! Times are epoch milliseconds (UTC) passed in by the caller (`now`), so one statement text serves
//! SQLite and PostgreSQL and tests can move the clock. Every write is one short transaction; no
//! transaction is held while talking SMTP.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use refill_rules::PatientId;
use uuid::Uuid;

use crate::{Pools, Store, StoreError, Tx};

/// Run `$body` with `$conn` bound to the connection of a `Tx`; the body is compiled once per backend.
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            Tx::Sqlite(inner) => {
                let $conn: &mut sqlx::SqliteConnection = &mut *inner;
                $body
            }
            Tx::Postgres(inner) => {
                let $conn: &mut sqlx::PgConnection = &mut *inner;
                $body
            }
        }
    };
}

/// Run `$body` with `$pool` bound to a reading pool.
macro_rules! on_read_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pools {
            Pools::Sqlite { read, .. } => {
                let $pool = read;
                $body
            }
            Pools::Postgres(pool) => {
                let $pool = pool;
                $body
            }
        }
    };
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxState {
    /// Waiting for its first try or its next retry.
    Pending,
    /// A sender holds the lease and may be talking to the relay right now.
    Sending,
    /// The relay accepted it (`smtp_reply` holds the reply).
    Sent,
    /// Refused for good or given up on (`final_reason` says why); shown to staff.
    Failed,
    /// Not sent on purpose (e.g. the date it was about has passed; `final_reason` says why).
    Cancelled,
}

impl OutboxState {
    pub const ALL: [OutboxState; 5] =
        [OutboxState::Pending, OutboxState::Sending, OutboxState::Sent, OutboxState::Failed, OutboxState::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Sending => "sending",
            OutboxState::Sent => "sent",
            OutboxState::Failed => "failed",
            OutboxState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Result<OutboxState, StoreError> {
        OutboxState::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| StoreError::Corrupt(format!("email_outbox.state {text:?}")))
    }
}

/// Who the message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxAudience {
    Patient,
    Staff,
    Physician,
}

impl OutboxAudience {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxAudience::Patient => "patient",
            OutboxAudience::Staff => "staff",
            OutboxAudience::Physician => "physician",
        }
    }

    fn parse(text: &str) -> Result<OutboxAudience, StoreError> {
        match text {
            "patient" => Ok(OutboxAudience::Patient),
            "staff" => Ok(OutboxAudience::Staff),
            "physician" => Ok(OutboxAudience::Physician),
            other => Err(StoreError::Corrupt(format!("email_outbox.audience {other:?}"))),
        }
    }
}

/// A message to write into the outbox (built by the notifier, handed over by a job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxEmail {
    pub id: Uuid,
    pub idempotency_key: String,
    pub kind: String,
    pub audience: OutboxAudience,
    pub patient_id: Option<PatientId>,
    pub message_id: String,
    pub envelope_from: String,
    pub envelope_to: Vec<String>,
    pub raw_message: Vec<u8>,
    pub about_date: Option<NaiveDate>,
    /// After this instant the message is cancelled rather than sent late.
    pub expires_at: Option<DateTime<Utc>>,
}

/// What [`enqueue`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    Inserted,
    /// A row with this idempotency key exists already; nothing was written.
    AlreadyQueued,
}

/// A message a sender now holds, with everything needed to send it verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedEmail {
    pub id: String,
    pub kind: String,
    pub message_id: String,
    pub envelope_from: String,
    pub envelope_to: Vec<String>,
    pub raw_message: Vec<u8>,
    /// This try's number (1 for the first).
    pub attempt: i64,
    pub ambiguous_sends: i64,
    pub created_at: DateTime<Utc>,
    pub first_failure_at: Option<DateTime<Utc>>,
    /// Fencing token: the outcome is recorded only while the lease is still ours.
    pub lease_token: String,
}

/// How one try ended, as the sender records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// Accepted; the relay's reply.
    Sent { reply: String },
    /// Not delivered this time; try again at `retry_at`. `ambiguous` when the relay may have it.
    Retry { reason: String, ambiguous: bool, retry_at: DateTime<Utc> },
    /// Refused for good (5xx) or undeliverable as stored.
    Failed { reason: String },
}

/// The delivery status of one message, as staff and the dashboard see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxStatus {
    pub id: String,
    pub idempotency_key: String,
    pub kind: String,
    pub audience: OutboxAudience,
    pub patient_id: Option<PatientId>,
    pub message_id: String,
    pub state: OutboxState,
    pub about_date: Option<NaiveDate>,
    pub attempts: i64,
    pub ambiguous_sends: i64,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub first_failure_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub smtp_reply: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub final_reason: Option<String>,
    pub staff_alerted_at: Option<DateTime<Utc>>,
}

/// One try of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAttempt {
    pub attempt: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `sent`, `transient`, `permanent`, `ambiguous`, `unknown` (the sender died), or `None` while running.
    pub outcome: Option<String>,
    pub detail: Option<String>,
}

/// Whether a patient can be emailed, and why not. Staff see the reason on the queue screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailContact {
    /// Consent recorded, an address on file, and email not declined as a channel.
    Reachable { address: String, first_name: String },
    /// No email consent on record: never email, contact another way.
    NoConsent,
    /// Consent but no address on file.
    NoAddress,
    /// The patient asked to be contacted by phone only.
    PrefersPhone,
    /// The patient is no longer active.
    Inactive,
}

impl EmailContact {
    pub fn is_reachable(&self) -> bool {
        matches!(self, EmailContact::Reachable { .. })
    }

    /// A short reason for staff when email is not possible.
    pub fn staff_note(&self) -> Option<&'static str> {
        match self {
            EmailContact::Reachable { .. } => None,
            EmailContact::NoConsent => Some("no email consent"),
            EmailContact::NoAddress => Some("no email address"),
            EmailContact::PrefersPhone => Some("prefers phone"),
            EmailContact::Inactive => Some("inactive"),
        }
    }
}

const STATUS_COLUMNS: &str = "id, idempotency_key, kind, audience, patient_id, message_id, state, about_date, \
     attempts, ambiguous_sends, created_at, next_attempt_at, first_failure_at, last_error, smtp_reply, sent_at, \
     final_reason, staff_alerted_at";

#[derive(sqlx::FromRow)]
struct StatusRow {
    id: String,
    idempotency_key: String,
    kind: String,
    audience: String,
    patient_id: Option<i64>,
    message_id: String,
    state: String,
    about_date: Option<NaiveDate>,
    attempts: i64,
    ambiguous_sends: i64,
    created_at: i64,
    next_attempt_at: i64,
    first_failure_at: Option<i64>,
    last_error: Option<String>,
    smtp_reply: Option<String>,
    sent_at: Option<i64>,
    final_reason: Option<String>,
    staff_alerted_at: Option<i64>,
}

impl TryFrom<StatusRow> for OutboxStatus {
    type Error = StoreError;

    fn try_from(row: StatusRow) -> Result<OutboxStatus, StoreError> {
        Ok(OutboxStatus {
            id: row.id,
            idempotency_key: row.idempotency_key,
            kind: row.kind,
            audience: OutboxAudience::parse(&row.audience)?,
            patient_id: row.patient_id.map(PatientId),
            message_id: row.message_id,
            state: OutboxState::parse(&row.state)?,
            about_date: row.about_date,
            attempts: row.attempts,
            ambiguous_sends: row.ambiguous_sends,
            created_at: instant(row.created_at)?,
            next_attempt_at: instant(row.next_attempt_at)?,
            first_failure_at: row.first_failure_at.map(instant).transpose()?,
            last_error: row.last_error,
            smtp_reply: row.smtp_reply,
            sent_at: row.sent_at.map(instant).transpose()?,
            final_reason: row.final_reason,
            staff_alerted_at: row.staff_alerted_at.map(instant).transpose()?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: String,
    kind: String,
    message_id: String,
    envelope_from: String,
    envelope_to: String,
    raw_message: Vec<u8>,
    attempts: i64,
    ambiguous_sends: i64,
    created_at: i64,
    first_failure_at: Option<i64>,
}

/// Epoch milliseconds of an instant (the stored form).
pub fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn instant(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Write a message into the outbox inside the caller's transaction (the job that produced it commits
/// it together with its own effects). A second write with the same idempotency key does nothing.
pub async fn enqueue(tx: &mut Tx, email: &NewOutboxEmail, now: DateTime<Utc>) -> Result<Enqueued, StoreError> {
    const SQL: &str = "INSERT INTO email_outbox (id, idempotency_key, kind, audience, patient_id, message_id, \
         envelope_from, envelope_to, raw_message, state, about_date, expires_at, created_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $12, $12) \
         ON CONFLICT (idempotency_key) DO NOTHING";
    let result = on_tx!(tx, conn => sqlx::query(SQL)
        .bind(email.id.to_string())
        .bind(&email.idempotency_key)
        .bind(&email.kind)
        .bind(email.audience.as_str())
        .bind(email.patient_id.map(|p| p.0))
        .bind(&email.message_id)
        .bind(&email.envelope_from)
        .bind(email.envelope_to.join("\n"))
        .bind(&email.raw_message)
        .bind(email.about_date)
        .bind(email.expires_at.map(millis))
        .bind(millis(now))
        .execute(conn)
        .await?
        .rows_affected());
    Ok(if result == 1 { Enqueued::Inserted } else { Enqueued::AlreadyQueued })
}

/// Claim up to `limit` due messages for one sender: each gets the lease (`now + lease`), its attempt
/// counter goes up, and an attempt row is written, all committed before the caller talks SMTP.
pub async fn claim_due(
    store: &Store,
    now: DateTime<Utc>,
    lease: Duration,
    limit: i64,
) -> Result<Vec<ClaimedEmail>, StoreError> {
    const SQLITE: &str = "UPDATE email_outbox SET state = 'sending', attempts = attempts + 1, lease_token = $1, \
         lease_expires_at = $2 \
         WHERE id IN (SELECT id FROM email_outbox WHERE state = 'pending' AND next_attempt_at <= $3 \
                      ORDER BY next_attempt_at, created_at LIMIT $4) \
         RETURNING id, kind, message_id, envelope_from, envelope_to, raw_message, attempts, ambiguous_sends, \
                   created_at, first_failure_at";
    const POSTGRES: &str = "UPDATE email_outbox SET state = 'sending', attempts = attempts + 1, lease_token = $1, \
         lease_expires_at = $2 \
         WHERE id IN (SELECT id FROM email_outbox WHERE state = 'pending' AND next_attempt_at <= $3 \
                      ORDER BY next_attempt_at, created_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
         RETURNING id, kind, message_id, envelope_from, envelope_to, raw_message, attempts, ambiguous_sends, \
                   created_at, first_failure_at";
    const ATTEMPT: &str =
        "INSERT INTO email_attempt (outbox_id, attempt, lease_token, started_at) VALUES ($1, $2, $3, $4)";
    let token = Uuid::new_v4().to_string();
    let expires = millis(now) + duration_ms(lease);
    let mut tx = store.begin().await?;
    let rows: Vec<ClaimRow> = on_tx!(&mut tx, conn => {
        let sql = if matches!(store.pools, Pools::Sqlite { .. }) { SQLITE } else { POSTGRES };
        let rows: Vec<ClaimRow> = sqlx::query_as(sql)
            .bind(&token)
            .bind(expires)
            .bind(millis(now))
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?;
        for row in &rows {
            sqlx::query(ATTEMPT).bind(&row.id).bind(row.attempts).bind(&token).bind(millis(now)).execute(&mut *conn).await?;
        }
        rows
    });
    tx.commit().await?;
    let mut claimed = rows
        .into_iter()
        .map(|row| {
            Ok(ClaimedEmail {
                id: row.id,
                kind: row.kind,
                message_id: row.message_id,
                envelope_from: row.envelope_from,
                envelope_to: row.envelope_to.lines().map(str::to_string).collect(),
                raw_message: row.raw_message,
                attempt: row.attempts,
                ambiguous_sends: row.ambiguous_sends,
                created_at: instant(row.created_at)?,
                first_failure_at: row.first_failure_at.map(instant).transpose()?,
                lease_token: token.clone(),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    claimed.sort_by_key(|c| c.created_at);
    Ok(claimed)
}

/// Record how a try ended, fenced by the lease token: returns `false` (and changes nothing) when the
/// lease was lost meanwhile (rescued as ambiguous by another sender).
pub async fn finish_attempt(
    store: &Store,
    claim: &ClaimedEmail,
    result: &AttemptResult,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    const SENT: &str = "UPDATE email_outbox SET state = 'sent', smtp_reply = $3, sent_at = $4, finished_at = $4, \
         lease_token = NULL, lease_expires_at = NULL \
         WHERE id = $1 AND lease_token = $2 AND state = 'sending'";
    const RETRY: &str = "UPDATE email_outbox SET state = 'pending', last_error = $3, next_attempt_at = $5, \
         first_failure_at = COALESCE(first_failure_at, $4), ambiguous_sends = ambiguous_sends + $6, \
         lease_token = NULL, lease_expires_at = NULL \
         WHERE id = $1 AND lease_token = $2 AND state = 'sending'";
    const FAILED: &str = "UPDATE email_outbox SET state = 'failed', last_error = $3, final_reason = $3, \
         first_failure_at = COALESCE(first_failure_at, $4), finished_at = $4, lease_token = NULL, \
         lease_expires_at = NULL \
         WHERE id = $1 AND lease_token = $2 AND state = 'sending'";
    const ATTEMPT: &str = "UPDATE email_attempt SET finished_at = $4, outcome = $5, detail = $3 \
         WHERE outbox_id = $1 AND lease_token = $2 AND outcome IS NULL";
    let at = millis(now);
    let (outcome, detail) = match result {
        AttemptResult::Sent { reply } => ("sent", reply.as_str()),
        AttemptResult::Retry { reason, ambiguous: true, .. } => ("ambiguous", reason.as_str()),
        AttemptResult::Retry { reason, ambiguous: false, .. } => ("transient", reason.as_str()),
        AttemptResult::Failed { reason } => ("permanent", reason.as_str()),
    };
    let mut tx = store.begin().await?;
    let changed = on_tx!(&mut tx, conn => {
        let changed = match result {
            AttemptResult::Sent { reply } => {
                sqlx::query(SENT).bind(&claim.id).bind(&claim.lease_token).bind(reply).bind(at).execute(&mut *conn).await?
            }
            AttemptResult::Retry { reason, ambiguous, retry_at } => {
                sqlx::query(RETRY)
                    .bind(&claim.id)
                    .bind(&claim.lease_token)
                    .bind(reason)
                    .bind(at)
                    .bind(millis(*retry_at))
                    .bind(i64::from(*ambiguous))
                    .execute(&mut *conn)
                    .await?
            }
            AttemptResult::Failed { reason } => {
                sqlx::query(FAILED).bind(&claim.id).bind(&claim.lease_token).bind(reason).bind(at).execute(&mut *conn).await?
            }
        }
        .rows_affected();
        if changed == 1 {
            sqlx::query(ATTEMPT)
                .bind(&claim.id)
                .bind(&claim.lease_token)
                .bind(detail)
                .bind(at)
                .bind(outcome)
                .execute(&mut *conn)
                .await?;
        }
        changed
    });
    tx.commit().await?;
    Ok(changed == 1)
}

/// Give back messages whose sender's lease ran out (it crashed or hung): the try's outcome is unknown,
/// so it counts as an ambiguous send and the message is retried at `retry_at` with the same bytes.
/// Returns how many were rescued.
pub async fn rescue_expired_leases(
    store: &Store,
    now: DateTime<Utc>,
    retry_at: DateTime<Utc>,
) -> Result<u64, StoreError> {
    const ATTEMPTS: &str = "UPDATE email_attempt SET outcome = 'unknown', finished_at = $1, \
         detail = 'the sender stopped during the try; the relay may have the message' \
         WHERE outcome IS NULL AND outbox_id IN \
           (SELECT id FROM email_outbox WHERE state = 'sending' AND lease_expires_at < $1)";
    const RESCUE: &str = "UPDATE email_outbox SET state = 'pending', ambiguous_sends = ambiguous_sends + 1, \
         last_error = 'sender stopped during a try (outcome unknown)', first_failure_at = COALESCE(first_failure_at, $1), \
         next_attempt_at = $2, lease_token = NULL, lease_expires_at = NULL \
         WHERE state = 'sending' AND lease_expires_at < $1";
    let mut tx = store.begin().await?;
    let rescued = on_tx!(&mut tx, conn => {
        sqlx::query(ATTEMPTS).bind(millis(now)).execute(&mut *conn).await?;
        sqlx::query(RESCUE).bind(millis(now)).bind(millis(retry_at)).execute(&mut *conn).await?.rows_affected()
    });
    tx.commit().await?;
    Ok(rescued)
}

/// Cancel pending messages whose date has passed (`expires_at <= now`): a late reminder is worse than
/// none. Returns how many were cancelled.
pub async fn cancel_passed(store: &Store, now: DateTime<Utc>) -> Result<u64, StoreError> {
    const SQL: &str = "UPDATE email_outbox SET state = 'cancelled', finished_at = $1, \
         final_reason = 'the date it is about has passed; not sent late' \
         WHERE state = 'pending' AND expires_at IS NOT NULL AND expires_at <= $1";
    let mut tx = store.begin().await?;
    let cancelled = on_tx!(&mut tx, conn => sqlx::query(SQL).bind(millis(now)).execute(conn).await?.rows_affected());
    tx.commit().await?;
    Ok(cancelled)
}

/// Stop retrying pending messages older than `max_age`: they become `failed` with the reason and
/// show up for staff. Returns how many gave up.
pub async fn fail_too_old(store: &Store, now: DateTime<Utc>, max_age: Duration) -> Result<u64, StoreError> {
    const SQL: &str = "UPDATE email_outbox SET state = 'failed', finished_at = $1, \
         final_reason = $3 || COALESCE(last_error, 'no reply') \
         WHERE state = 'pending' AND created_at <= $2";
    let hours = max_age.as_secs() / 3600;
    let reason = format!("still undelivered after {hours} h; last error: ");
    let mut tx = store.begin().await?;
    let failed = on_tx!(&mut tx, conn => sqlx::query(SQL)
        .bind(millis(now))
        .bind(millis(now) - duration_ms(max_age))
        .bind(reason)
        .execute(conn)
        .await?
        .rows_affected());
    tx.commit().await?;
    Ok(failed)
}

/// Mark, once each, the messages that have kept failing for at least `after`, and return them so the
/// caller can alert staff (they also stay listed by [`delivery_problems`]).
pub async fn take_new_alerts(
    store: &Store,
    now: DateTime<Utc>,
    after: Duration,
) -> Result<Vec<OutboxStatus>, StoreError> {
    let sql = format!(
        "UPDATE email_outbox SET staff_alerted_at = $1 \
         WHERE staff_alerted_at IS NULL AND state IN ('pending', 'sending') \
           AND first_failure_at IS NOT NULL AND first_failure_at <= $2 \
         RETURNING {STATUS_COLUMNS}"
    );
    let mut tx = store.begin().await?;
    let rows: Vec<StatusRow> = on_tx!(&mut tx, conn => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(millis(now))
        .bind(millis(now) - duration_ms(after))
        .fetch_all(conn)
        .await?);
    tx.commit().await?;
    rows.into_iter().map(OutboxStatus::try_from).collect()
}

/// Delivery status of one message by outbox id.
pub async fn status(store: &Store, id: &str) -> Result<Option<OutboxStatus>, StoreError> {
    let sql = format!("SELECT {STATUS_COLUMNS} FROM email_outbox WHERE id = $1");
    let row: Option<StatusRow> =
        on_read_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?);
    row.map(OutboxStatus::try_from).transpose()
}

/// Delivery status of one message by idempotency key.
pub async fn status_by_key(store: &Store, idempotency_key: &str) -> Result<Option<OutboxStatus>, StoreError> {
    let sql = format!("SELECT {STATUS_COLUMNS} FROM email_outbox WHERE idempotency_key = $1");
    let row: Option<StatusRow> = on_read_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(idempotency_key)
        .fetch_optional(pool)
        .await?);
    row.map(OutboxStatus::try_from).transpose()
}

/// Messages in one state, newest first.
pub async fn list_by_state(store: &Store, state: OutboxState, limit: i64) -> Result<Vec<OutboxStatus>, StoreError> {
    let sql =
        format!("SELECT {STATUS_COLUMNS} FROM email_outbox WHERE state = $1 ORDER BY created_at DESC, id LIMIT $2");
    let rows: Vec<StatusRow> = on_read_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(state.as_str())
        .bind(limit)
        .fetch_all(pool)
        .await?);
    rows.into_iter().map(OutboxStatus::try_from).collect()
}

/// A patient's messages, newest first (patient page).
pub async fn list_for_patient(
    store: &Store,
    patient_id: PatientId,
    limit: i64,
) -> Result<Vec<OutboxStatus>, StoreError> {
    let sql = format!(
        "SELECT {STATUS_COLUMNS} FROM email_outbox WHERE patient_id = $1 ORDER BY created_at DESC, id LIMIT $2"
    );
    let rows: Vec<StatusRow> = on_read_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(patient_id.0)
        .bind(limit)
        .fetch_all(pool)
        .await?);
    rows.into_iter().map(OutboxStatus::try_from).collect()
}

/// What staff must look at (the dashboard's failure list): failed messages, and pending ones that
/// have kept failing long enough to raise an alert. Newest first.
pub async fn delivery_problems(store: &Store, limit: i64) -> Result<Vec<OutboxStatus>, StoreError> {
    let sql = format!(
        "SELECT {STATUS_COLUMNS} FROM email_outbox \
         WHERE state = 'failed' OR (state IN ('pending', 'sending') AND staff_alerted_at IS NOT NULL) \
         ORDER BY created_at DESC, id LIMIT $1"
    );
    let rows: Vec<StatusRow> =
        on_read_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(pool).await?);
    rows.into_iter().map(OutboxStatus::try_from).collect()
}

/// How many messages are in each state (states with none are listed with 0).
pub async fn state_counts(store: &Store) -> Result<Vec<(OutboxState, i64)>, StoreError> {
    let rows: Vec<(String, i64)> = on_read_pool!(store, pool => sqlx::query_as(
        "SELECT state, COUNT(*) FROM email_outbox GROUP BY state"
    )
    .fetch_all(pool)
    .await?);
    let mut counts: HashMap<OutboxState, i64> = HashMap::new();
    for (state, count) in rows {
        counts.insert(OutboxState::parse(&state)?, count);
    }
    Ok(OutboxState::ALL.into_iter().map(|s| (s, counts.get(&s).copied().unwrap_or(0))).collect())
}

/// A stored `email_attempt` row: attempt, started_at, finished_at, outcome, detail.
type AttemptRow = (i64, i64, Option<i64>, Option<String>, Option<String>);

/// Every try of one message, in order.
pub async fn attempts(store: &Store, outbox_id: &str) -> Result<Vec<EmailAttempt>, StoreError> {
    let rows: Vec<AttemptRow> = on_read_pool!(store, pool => sqlx::query_as(
        "SELECT attempt, started_at, finished_at, outcome, detail FROM email_attempt WHERE outbox_id = $1 ORDER BY attempt"
    )
    .bind(outbox_id)
    .fetch_all(pool)
    .await?);
    rows.into_iter()
        .map(|(attempt, started_at, finished_at, outcome, detail)| {
            Ok(EmailAttempt {
                attempt,
                started_at: instant(started_at)?,
                finished_at: finished_at.map(instant).transpose()?,
                outcome,
                detail,
            })
        })
        .collect()
}

/// Message-IDs with their ambiguous-send count, for audits such as the crash test ("every duplicate
/// is explained by a recorded ambiguous send").
pub async fn message_ids(store: &Store) -> Result<Vec<(String, OutboxState, i64)>, StoreError> {
    let rows: Vec<(String, String, i64)> = on_read_pool!(store, pool => sqlx::query_as(
        "SELECT message_id, state, ambiguous_sends FROM email_outbox ORDER BY created_at, id"
    )
    .fetch_all(pool)
    .await?);
    rows.into_iter().map(|(id, state, ambiguous)| Ok((id, OutboxState::parse(&state)?, ambiguous))).collect()
}

#[derive(sqlx::FromRow)]
struct ContactRow {
    id: i64,
    given_name: String,
    email: Option<String>,
    email_consent: bool,
    contact_preference: String,
    active: bool,
}

fn contact_of(row: &ContactRow) -> EmailContact {
    if !row.active {
        EmailContact::Inactive
    } else if !row.email_consent {
        EmailContact::NoConsent
    } else if row.contact_preference == "phone" {
        EmailContact::PrefersPhone
    } else {
        match row.email.as_deref().map(str::trim) {
            Some(address) if !address.is_empty() => {
                EmailContact::Reachable { address: address.to_string(), first_name: row.given_name.clone() }
            }
            _ => EmailContact::NoAddress,
        }
    }
}

/// Whether and where one patient may be emailed. `NotFound` for an unknown patient.
pub async fn email_contact(store: &Store, patient_id: PatientId) -> Result<EmailContact, StoreError> {
    let row: Option<ContactRow> = on_read_pool!(store, pool => sqlx::query_as(
        "SELECT id, given_name, email, email_consent, contact_preference, active FROM patients WHERE id = $1"
    )
    .bind(patient_id.0)
    .fetch_optional(pool)
    .await?);
    row.as_ref().map(contact_of).ok_or_else(|| StoreError::NotFound(format!("patient {}", patient_id.0)))
}

/// Email reachability for many patients at once (the queue screen shows "no email consent" beside
/// each patient who gets no email). Unknown ids are left out.
pub async fn email_contacts(
    store: &Store,
    patient_ids: &[PatientId],
) -> Result<HashMap<PatientId, EmailContact>, StoreError> {
    let mut contacts = HashMap::with_capacity(patient_ids.len());
    for chunk in patient_ids.chunks(500) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT id, given_name, email, email_consent, contact_preference, active FROM patients WHERE id IN ({})",
            placeholders.join(", ")
        );
        let rows: Vec<ContactRow> = on_read_pool!(store, pool => {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.0);
            }
            query.fetch_all(pool).await?
        });
        for row in &rows {
            contacts.insert(PatientId(row.id), contact_of(row));
        }
    }
    Ok(contacts)
}

/// Whether and where one patient may be emailed, read inside the caller's transaction (a reminder
/// job decides and writes its outbox row atomically).
pub async fn email_contact_in(tx: &mut Tx, patient_id: PatientId) -> Result<EmailContact, StoreError> {
    let row: Option<ContactRow> = on_tx!(tx, conn => sqlx::query_as(
        "SELECT id, given_name, email, email_consent, contact_preference, active FROM patients WHERE id = $1"
    )
    .bind(patient_id.0)
    .fetch_optional(conn)
    .await?);
    row.as_ref().map(contact_of).ok_or_else(|| StoreError::NotFound(format!("patient {}", patient_id.0)))
}

/// What is overdue for a patient, as the morning digest lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverdueKind {
    Uds,
    Pdmp,
    Agreement,
}

/// The data of the staff morning digest for one clinic date. References are patient ids, never names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MorningDigestData {
    /// Today's queue: (decision outcome or "undecided", number of patients).
    pub queue: Vec<(String, i64)>,
    /// Patients on hold today whose supply runs out within the horizon, soonest first.
    pub supply_running_out: Vec<(PatientId, NaiveDate)>,
    /// Overdue monitoring: UDS from the draw schedule (with its due date); PDMP and agreements from
    /// the reasons of today's decisions (the rules decided they are overdue).
    pub overdue: Vec<(PatientId, OverdueKind, Option<NaiveDate>)>,
    /// Patients in today's queue who get no email (staff contact them another way).
    pub without_email_consent: Vec<PatientId>,
}

/// Gather the morning digest for `clinic_date` in the caller's transaction; holds running out of
/// supply within `horizon_days` are listed.
pub async fn morning_digest_in(
    tx: &mut Tx,
    clinic_date: NaiveDate,
    horizon_days: i64,
) -> Result<MorningDigestData, StoreError> {
    const QUEUE: &str = "SELECT COALESCE(outcome, 'undecided') AS status, COUNT(*) AS n FROM daily_queue \
         WHERE clinic_date = $1 GROUP BY COALESCE(outcome, 'undecided') ORDER BY 1";
    const HOLDS: &str = "SELECT patient_id, run_out_on FROM daily_queue WHERE clinic_date = $1 AND outcome = 'HOLD' \
         AND run_out_on IS NOT NULL AND run_out_on <= $2 ORDER BY run_out_on, patient_id";
    const UDS: &str = "SELECT s.patient_id, MIN(s.due_on) FROM uds_schedule s JOIN patients p ON p.id = s.patient_id \
         WHERE p.active AND s.collected_on IS NULL AND s.due_on < $1 GROUP BY s.patient_id ORDER BY 2, 1";
    const REASONS: &str = "SELECT DISTINCT patient_id FROM decisions WHERE clinic_date = $1 \
         AND (CAST(reasons AS TEXT) LIKE $2 OR CAST(reasons AS TEXT) LIKE $3 OR CAST(reasons AS TEXT) LIKE $4) \
         ORDER BY patient_id";
    const NO_CONSENT: &str = "SELECT q.patient_id FROM daily_queue q JOIN patients p ON p.id = q.patient_id \
         WHERE q.clinic_date = $1 AND NOT p.email_consent ORDER BY q.patient_id";
    let horizon = clinic_date + chrono::Days::new(u64::try_from(horizon_days.max(0)).unwrap_or(0));
    let code = |code: refill_rules::ReasonCode| format!("%\"{}\"%", code.as_str());
    use refill_rules::ReasonCode;
    let data = on_tx!(tx, conn => {
        let queue: Vec<(String, i64)> = sqlx::query_as(QUEUE).bind(clinic_date).fetch_all(&mut *conn).await?;
        let holds: Vec<(i64, NaiveDate)> =
            sqlx::query_as(HOLDS).bind(clinic_date).bind(horizon).fetch_all(&mut *conn).await?;
        let uds: Vec<(i64, NaiveDate)> = sqlx::query_as(UDS).bind(clinic_date).fetch_all(&mut *conn).await?;
        let pdmp: Vec<(i64,)> = sqlx::query_as(REASONS)
            .bind(clinic_date)
            .bind(code(ReasonCode::PdmpReviewOverdue))
            .bind(code(ReasonCode::PdmpReviewOverdue))
            .bind(code(ReasonCode::PdmpReviewOverdue))
            .fetch_all(&mut *conn)
            .await?;
        let agreement: Vec<(i64,)> = sqlx::query_as(REASONS)
            .bind(clinic_date)
            .bind(code(ReasonCode::AgreementExpired))
            .bind(code(ReasonCode::AgreementMissing))
            .bind(code(ReasonCode::AgreementVoid))
            .fetch_all(&mut *conn)
            .await?;
        let no_consent: Vec<(i64,)> = sqlx::query_as(NO_CONSENT).bind(clinic_date).fetch_all(&mut *conn).await?;
        let mut overdue: Vec<(PatientId, OverdueKind, Option<NaiveDate>)> =
            uds.into_iter().map(|(p, due)| (PatientId(p), OverdueKind::Uds, Some(due))).collect();
        overdue.extend(pdmp.into_iter().map(|(p,)| (PatientId(p), OverdueKind::Pdmp, None)));
        overdue.extend(agreement.into_iter().map(|(p,)| (PatientId(p), OverdueKind::Agreement, None)));
        MorningDigestData {
            queue,
            supply_running_out: holds.into_iter().map(|(p, d)| (PatientId(p), d)).collect(),
            overdue,
            without_email_consent: no_consent.into_iter().map(|(p,)| PatientId(p)).collect(),
        }
    });
    Ok(data)
}

/// One open exception for the physicians' digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenException {
    pub patient_id: PatientId,
    /// `routine` or `urgent`.
    pub urgency: String,
    /// Stable reason code names that raised it, with every reason that rests on a 42 CFR Part 2 record
    /// replaced by [`RESTRICTED_REASON`]: email leaves the break-glass boundary, so it never names them.
    pub reason_codes: Vec<String>,
    pub clinic_date: NaiveDate,
}

/// One break-the-glass grant for the physicians' digest: who opened which patient's restricted records,
/// and when. The reason stays in the application (it may describe the restricted record itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassAccess {
    pub user_display_name: String,
    pub patient_id: PatientId,
    pub granted_at_ms: i64,
    pub expires_at_ms: i64,
}

/// Break-the-glass grants not yet reported, oldest first, marked reported at `now_ms` in the caller's
/// transaction: the digest that lists them commits the mark with its email, so each grant is
/// reported exactly once whatever the schedule (weekends, a missed run) and however late.
pub async fn take_unreported_break_glass_in(tx: &mut Tx, now_ms: i64) -> Result<Vec<BreakGlassAccess>, StoreError> {
    const SQL: &str = "SELECT g.id, u.display_name, g.patient_id, g.granted_at_ms, g.expires_at_ms \
         FROM break_glass_grants g JOIN users u ON u.id = g.user_id \
         WHERE g.reported_at_ms IS NULL ORDER BY g.granted_at_ms, g.id";
    let rows: Vec<(i64, String, i64, i64, i64)> = on_tx!(tx, conn => sqlx::query_as(SQL).fetch_all(conn).await?);
    for (id, ..) in &rows {
        on_tx!(tx, conn => sqlx::query("UPDATE break_glass_grants SET reported_at_ms = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(id)
            .execute(conn)
            .await?
            .rows_affected());
    }
    Ok(rows
        .into_iter()
        .map(|(_, user_display_name, patient, granted_at_ms, expires_at_ms)| BreakGlassAccess {
            user_display_name,
            patient_id: PatientId(patient),
            granted_at_ms,
            expires_at_ms,
        })
        .collect())
}

/// One break-the-glass grant, for the privacy officer's alert (`None` when there is no such grant).
pub async fn break_glass_access_in(tx: &mut Tx, grant_id: i64) -> Result<Option<BreakGlassAccess>, StoreError> {
    const SQL: &str = "SELECT u.display_name, g.patient_id, g.granted_at_ms, g.expires_at_ms \
         FROM break_glass_grants g JOIN users u ON u.id = g.user_id WHERE g.id = $1";
    let row: Option<(String, i64, i64, i64)> =
        on_tx!(tx, conn => sqlx::query_as(SQL).bind(grant_id).fetch_optional(conn).await?);
    Ok(row.map(|(user_display_name, patient, granted_at_ms, expires_at_ms)| BreakGlassAccess {
        user_display_name,
        patient_id: PatientId(patient),
        granted_at_ms,
        expires_at_ms,
    }))
}

/// The code that stands for restricted reasons in anything that leaves the application (email).
pub const RESTRICTED_REASON: &str = "restricted_information";

/// Every open exception, urgent first, oldest first, read in the caller's transaction.
pub async fn open_exceptions_in(tx: &mut Tx) -> Result<Vec<OpenException>, StoreError> {
    const SQL: &str = "SELECT e.patient_id, e.urgency, CAST(e.reason_codes AS TEXT), e.clinic_date, \
         CAST(d.reasons AS TEXT) FROM exceptions e JOIN decisions d ON d.id = e.decision_id \
         WHERE e.status = 'open' ORDER BY CASE e.urgency WHEN 'urgent' THEN 0 ELSE 1 END, e.clinic_date, e.id";
    let rows: Vec<(i64, String, String, NaiveDate, String)> =
        on_tx!(tx, conn => sqlx::query_as(SQL).fetch_all(conn).await?);
    rows.into_iter()
        .map(|(patient, urgency, codes, clinic_date, reasons)| {
            let reason_codes: Vec<String> = serde_json::from_str(&codes)
                .map_err(|e| StoreError::Corrupt(format!("exceptions.reason_codes of patient {patient}: {e}")))?;
            let restricted = restricted_codes(&reasons)
                .map_err(|e| StoreError::Corrupt(format!("decisions.reasons of patient {patient}: {e}")))?;
            Ok(OpenException {
                patient_id: PatientId(patient),
                urgency,
                reason_codes: mask_restricted(reason_codes, &restricted),
                clinic_date,
            })
        })
        .collect()
}

/// The codes of the decision's reasons marked restricted (the stable reason JSON of `refill-rules`).
fn restricted_codes(reasons: &str) -> Result<Vec<String>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct StoredReason {
        code: String,
        #[serde(default)]
        restricted: bool,
    }
    let reasons: Vec<StoredReason> = serde_json::from_str(reasons)?;
    Ok(reasons.into_iter().filter(|r| r.restricted).map(|r| r.code).collect())
}

/// `codes` with each restricted code replaced by [`RESTRICTED_REASON`] (named once, at the end).
fn mask_restricted(codes: Vec<String>, restricted: &[String]) -> Vec<String> {
    let before = codes.len();
    let mut open: Vec<String> = codes.into_iter().filter(|code| !restricted.contains(code)).collect();
    if open.len() < before {
        open.push(RESTRICTED_REASON.to_string());
    }
    open
}
