//! The audit trail: append-only events in one keyed hash chain, checkpoints kept outside the database,
//! and a verifier that names the first broken or missing event.
//!
//! Each event's MAC is HMAC-SHA256(key, sequence ‖ previous MAC ‖ canonical event bytes). The key comes
//! from configuration and is never stored in the database, so someone who can write to the database but
//! does not hold the key cannot forge or recompute the chain. Deleting the newest events and rewinding
//! the head row would still verify, which is why `refill audit checkpoint` writes (sequence, MAC, time)
//! to a file outside the database: a checkpoint beyond the last row names the missing events.
//!
//! Every append locks the chain-head row inside the caller's transaction (`for update` on PostgreSQL;
//! SQLite write transactions already hold the database's write lock from `BEGIN IMMEDIATE`), so
//! sequence numbers are gapless and concurrent writers queue instead of forking the chain. The event
//! commits or rolls back together with the change it describes.

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{KeyInit, Mac};
use refill_rules::PatientId;
use serde_json::Value;

use crate::model::{Actor, now};
use crate::store::{with_read_pool, with_tx};
use crate::{AuditKey, Store, StoreError, Tx};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// An event to append: who, what, on which record, why, and before/after where a change applies.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditEvent {
    pub actor: String,
    pub actor_role: String,
    /// What happened, dotted: `patient.view`, `patient.update`, `queue.view`, `decision.record`, ...
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub patient_id: Option<PatientId>,
    /// Why: required for overrides, break-glass, corrections and denials (the caller enforces which).
    pub reason: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// Anything else, e.g. the query of a list view.
    pub detail: Option<Value>,
    /// Client address from a trusted source.
    pub client_addr: Option<String>,
    /// A hash of the session id (never the raw token).
    pub session_hash: Option<String>,
}

impl AuditEvent {
    pub fn new(actor: &Actor, action: impl Into<String>, resource_type: impl Into<String>) -> AuditEvent {
        AuditEvent {
            actor: actor.id.clone(),
            actor_role: actor.role.clone(),
            action: action.into(),
            resource_type: resource_type.into(),
            ..AuditEvent::default()
        }
    }

    pub fn resource_id(mut self, id: impl Into<String>) -> Self {
        self.resource_id = Some(id.into());
        self
    }

    pub fn patient(mut self, patient_id: PatientId) -> Self {
        self.patient_id = Some(patient_id);
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn before(mut self, value: Value) -> Self {
        self.before = Some(value);
        self
    }

    pub fn after(mut self, value: Value) -> Self {
        self.after = Some(value);
        self
    }

    pub fn detail(mut self, value: Value) -> Self {
        self.detail = Some(value);
        self
    }

    pub fn client(mut self, client_addr: Option<String>, session_hash: Option<String>) -> Self {
        self.client_addr = client_addr;
        self.session_hash = session_hash;
        self
    }
}

/// An event as stored, with its place in the chain. JSON columns are the exact text the MAC covers.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredAuditEvent {
    pub seq: i64,
    /// RFC 3339 UTC with microseconds.
    pub occurred_at: String,
    pub actor: String,
    pub actor_role: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub patient_id: Option<i64>,
    pub reason: Option<String>,
    pub before_state: Option<String>,
    pub after_state: Option<String>,
    pub detail: Option<String>,
    pub client_addr: Option<String>,
    pub session_hash: Option<String>,
    pub prev_mac: String,
    pub mac: String,
}

impl StoredAuditEvent {
    /// The bytes the MAC covers besides the sequence and the previous MAC: a JSON array of every
    /// column in a fixed order (unambiguous, and independent of how a backend stores the row).
    fn canonical_bytes(&self) -> Vec<u8> {
        let fields = (
            self.seq,
            &self.occurred_at,
            &self.actor,
            &self.actor_role,
            &self.action,
            &self.resource_type,
            &self.resource_id,
            self.patient_id,
            &self.reason,
            &self.before_state,
            &self.after_state,
            &self.detail,
            &self.client_addr,
            &self.session_hash,
        );
        serde_json::to_vec(&fields).expect("a tuple of strings and integers always serialises")
    }

    /// The MAC this row should carry given `prev_mac` and the key.
    pub fn expected_mac(&self, key: &AuditKey) -> String {
        chain_mac(key, self.seq, &self.prev_mac, &self.canonical_bytes())
    }
}

fn chain_mac(key: &AuditKey, seq: i64, prev_mac: &str, canonical: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(&seq.to_be_bytes());
    mac.update(&(prev_mac.len() as u64).to_be_bytes());
    mac.update(prev_mac.as_bytes());
    mac.update(canonical);
    hex::encode(mac.finalize().into_bytes())
}

/// Sequence number and MAC of an appended event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditAppended {
    pub seq: i64,
    pub mac: String,
}

/// The chain head: the last sequence number and its MAC (0 and "" for an empty chain).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditHead {
    pub seq: i64,
    pub mac: String,
}

const SELECT_HEAD_SQLITE: &str = "select seq, mac from audit_chain_head where id = 1";
// The row lock serialises appenders: the second one waits here until the first commits or rolls back.
pub(crate) const SELECT_HEAD_FOR_UPDATE: &str = "select seq, mac from audit_chain_head where id = 1 for update";
const UPDATE_HEAD: &str = "update audit_chain_head set seq = $1, mac = $2 where id = 1";
const INSERT_EVENTS: &str = r#"
insert into audit_events (seq, occurred_at, actor, actor_role, action, resource_type, resource_id, patient_id,
    reason, before_state, after_state, detail, client_addr, session_hash, prev_mac, mac)
values"#;
const EVENT_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
pub(crate) const EVENT_COLUMNS: &str = "seq, occurred_at, actor, actor_role, action, resource_type, resource_id, patient_id, \
     reason, before_state, after_state, detail, client_addr, session_hash, prev_mac, mac";

fn json_text(value: &Option<Value>) -> Option<String> {
    value.as_ref().map(|v| v.to_string())
}

/// Append `event` to the chain inside `tx`, keyed with `key`. Prefer `Store::append_audit`.
///
/// # Errors
/// Database errors; the caller's transaction should then be rolled back.
pub async fn append(tx: &mut Tx, key: &AuditKey, event: &AuditEvent) -> Result<AuditAppended, StoreError> {
    let mut appended = append_many(tx, key, std::slice::from_ref(event)).await?;
    Ok(appended.pop().expect("one event appended"))
}

/// Append `events` in order, extending the chain once: the head is locked and read once, the MACs
/// are chained in memory, the rows go in multi-row inserts, and the head is written once. Same chain
/// as appending them one by one.
///
/// # Errors
/// Database errors (roll the transaction back).
pub async fn append_many(tx: &mut Tx, key: &AuditKey, events: &[AuditEvent]) -> Result<Vec<AuditAppended>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let head: AuditHead = match tx {
        Tx::Sqlite(inner) => sqlx::query_as(SELECT_HEAD_SQLITE).fetch_one(&mut **inner).await?,
        Tx::Postgres(inner) => sqlx::query_as(SELECT_HEAD_FOR_UPDATE).fetch_one(&mut **inner).await?,
    };
    let occurred_at = now().to_rfc3339_opts(SecondsFormat::Micros, true);
    let mut prev_mac = head.mac;
    let mut stored = Vec::with_capacity(events.len());
    for (n, event) in events.iter().enumerate() {
        let mut row = StoredAuditEvent {
            seq: head.seq + 1 + n as i64,
            occurred_at: occurred_at.clone(),
            actor: event.actor.clone(),
            actor_role: event.actor_role.clone(),
            action: event.action.clone(),
            resource_type: event.resource_type.clone(),
            resource_id: event.resource_id.clone(),
            patient_id: event.patient_id.map(|p| p.0),
            reason: event.reason.clone(),
            before_state: json_text(&event.before),
            after_state: json_text(&event.after),
            detail: json_text(&event.detail),
            client_addr: event.client_addr.clone(),
            session_hash: event.session_hash.clone(),
            prev_mac: std::mem::take(&mut prev_mac),
            mac: String::new(),
        };
        row.mac = row.expected_mac(key);
        prev_mac.clone_from(&row.mac);
        stored.push(row);
    }
    for rows in stored.chunks(crate::batch::ROWS_PER_STATEMENT) {
        let sql = format!("{INSERT_EVENTS} {}", crate::batch::values_list(EVENT_ROW, rows.len(), 1));
        with_tx!(tx, conn => {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for row in rows {
                query = query
                    .bind(row.seq)
                    .bind(row.occurred_at.as_str())
                    .bind(row.actor.as_str())
                    .bind(row.actor_role.as_str())
                    .bind(row.action.as_str())
                    .bind(row.resource_type.as_str())
                    .bind(row.resource_id.as_deref())
                    .bind(row.patient_id)
                    .bind(row.reason.as_deref())
                    .bind(row.before_state.as_deref())
                    .bind(row.after_state.as_deref())
                    .bind(row.detail.as_deref())
                    .bind(row.client_addr.as_deref())
                    .bind(row.session_hash.as_deref())
                    .bind(row.prev_mac.as_str())
                    .bind(row.mac.as_str());
            }
            query.execute(&mut *conn).await?;
        });
    }
    let last = stored.last().expect("at least one event");
    with_tx!(tx, conn => {
        sqlx::query(UPDATE_HEAD).bind(last.seq).bind(last.mac.as_str()).execute(&mut *conn).await?;
    });
    Ok(stored.into_iter().map(|row| AuditAppended { seq: row.seq, mac: row.mac }).collect())
}

/// A checkpoint of the chain written outside the database: sequence, MAC and time, plus a MAC of the
/// line itself so a hand-edited checkpoint file is noticed too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheckpoint {
    pub seq: i64,
    pub mac: String,
    pub at: DateTime<Utc>,
}

impl AuditCheckpoint {
    fn line_mac(&self, key: &AuditKey) -> String {
        let text =
            format!("checkpoint|{}|{}|{}", self.seq, self.mac, self.at.to_rfc3339_opts(SecondsFormat::Micros, true));
        chain_mac(key, self.seq, "checkpoint", text.as_bytes())
    }

    /// One line for the checkpoint file: `seq=<n> mac=<hex> at=<rfc3339> sig=<hex>`.
    pub fn to_line(&self, key: &AuditKey) -> String {
        format!(
            "seq={} mac={} at={} sig={}",
            self.seq,
            self.mac,
            self.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            self.line_mac(key)
        )
    }

    /// Parse and authenticate one checkpoint line.
    ///
    /// # Errors
    /// A message naming the field that is missing, malformed, or the signature that does not match.
    pub fn parse_line(line: &str, key: &AuditKey) -> Result<AuditCheckpoint, String> {
        let mut seq = None;
        let mut mac = None;
        let mut at = None;
        let mut sig = None;
        for part in line.split_whitespace() {
            match part.split_once('=') {
                Some(("seq", value)) => seq = Some(value.parse::<i64>().map_err(|e| format!("field seq: {e}"))?),
                Some(("mac", value)) => mac = Some(value.to_string()),
                Some(("at", value)) => {
                    at = Some(
                        DateTime::parse_from_rfc3339(value).map_err(|e| format!("field at: {e}"))?.with_timezone(&Utc),
                    )
                }
                Some(("sig", value)) => sig = Some(value.to_string()),
                _ => return Err(format!("unexpected field {part:?}")),
            }
        }
        let checkpoint = AuditCheckpoint {
            seq: seq.ok_or("field seq is missing")?,
            mac: mac.ok_or("field mac is missing")?,
            at: at.ok_or("field at is missing")?,
        };
        let sig = sig.ok_or("field sig is missing")?;
        let expected = checkpoint.line_mac(key);
        if !subtle_eq(sig.as_bytes(), expected.as_bytes()) {
            return Err("signature does not match (wrong key, or the line was edited)".into());
        }
        Ok(checkpoint)
    }
}

/// Constant-time comparison of two MACs.
fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What is wrong with the chain, at the first place it goes wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditProblem {
    /// The event with this sequence number is missing (a gap, or the first event is not 1).
    Missing { seq: i64 },
    /// The event's content or MAC does not match (altered, forged, moved, or recomputed without the key).
    Altered { seq: i64 },
    /// The event does not point at its predecessor's MAC (reordered or spliced).
    Unlinked { seq: i64 },
    /// Events after `last_seq` up to `expected_seq` are gone (the tail was deleted).
    TailMissing { last_seq: i64, expected_seq: i64 },
    /// The event at the checkpoint's sequence has another MAC than the checkpoint recorded (the chain
    /// was rewritten with the key, or the checkpoint belongs to another database).
    CheckpointMismatch { seq: i64 },
}

impl std::fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditProblem::Missing { seq } => write!(f, "event {seq} is missing"),
            AuditProblem::Altered { seq } => write!(f, "event {seq} was altered (its MAC does not verify)"),
            AuditProblem::Unlinked { seq } => {
                write!(f, "event {seq} does not follow its predecessor (reordered or spliced)")
            }
            AuditProblem::TailMissing { last_seq, expected_seq } => {
                write!(f, "events {} to {expected_seq} are missing (the chain ends at {last_seq})", last_seq + 1)
            }
            AuditProblem::CheckpointMismatch { seq } => {
                write!(f, "event {seq} does not match the checkpoint (the chain was rewritten)")
            }
        }
    }
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerification {
    /// Events read and checked.
    pub events_checked: u64,
    /// The last sequence number found.
    pub last_seq: i64,
    /// The first problem, `None` when the chain is intact.
    pub problem: Option<AuditProblem>,
}

impl AuditVerification {
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// Rows read per round trip while verifying.
const VERIFY_BATCH: i64 = 5_000;

impl Store {
    /// Append `event` to the audit chain inside the caller's transaction, so it commits or rolls back
    /// with the change it records.
    ///
    /// # Errors
    /// Database errors (roll the transaction back).
    pub async fn append_audit(&self, tx: &mut Tx, event: &AuditEvent) -> Result<AuditAppended, StoreError> {
        append(tx, &self.audit_key, event).await
    }

    /// [`append_many`] with this store's key: a chunk's events, the chain extended once, in order.
    ///
    /// # Errors
    /// Database errors (roll the transaction back).
    pub async fn append_audit_many(
        &self,
        tx: &mut Tx,
        events: &[AuditEvent],
    ) -> Result<Vec<AuditAppended>, StoreError> {
        append_many(tx, &self.audit_key, events).await
    }

    /// Record a view (a patient page, side panel, exception detail, export, API read, or a list with its
    /// query in `detail`) as one event in its own transaction.
    #[tracing::instrument(skip_all, fields(action = %event.action))]
    pub async fn record_view(&self, event: &AuditEvent) -> Result<AuditAppended, StoreError> {
        let mut tx = self.begin().await?;
        let appended = self.append_audit(&mut tx, event).await?;
        tx.commit().await?;
        Ok(appended)
    }

    /// The current chain head.
    pub async fn audit_head(&self) -> Result<AuditHead, StoreError> {
        Ok(with_read_pool!(self, pool => {
            sqlx::query_as(SELECT_HEAD_SQLITE).fetch_one(pool).await?
        }))
    }

    /// A checkpoint of the current head, stamped now; the caller writes `to_line` outside the database.
    pub async fn audit_checkpoint(&self) -> Result<AuditCheckpoint, StoreError> {
        let head = self.audit_head().await?;
        Ok(AuditCheckpoint { seq: head.seq, mac: head.mac, at: now() })
    }

    /// Events about one patient, newest first.
    pub async fn audit_events_for_patient(
        &self,
        patient_id: PatientId,
        limit: i64,
    ) -> Result<Vec<StoredAuditEvent>, StoreError> {
        let sql = format!("select {EVENT_COLUMNS} from audit_events where patient_id = $1 order by seq desc limit $2");
        Ok(with_read_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(patient_id.0).bind(limit).fetch_all(pool).await?
        }))
    }

    /// Events with sequence numbers in `first..=last`, oldest first.
    pub async fn audit_events(&self, first: i64, last: i64) -> Result<Vec<StoredAuditEvent>, StoreError> {
        let sql = format!("select {EVENT_COLUMNS} from audit_events where seq >= $1 and seq <= $2 order by seq");
        Ok(with_read_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(first).bind(last).fetch_all(pool).await?
        }))
    }

    /// Walk the whole chain: gapless sequence from 1, each event linked to its predecessor's MAC, each
    /// MAC recomputed with the key; then the head row and the latest `checkpoint` (if any) against the
    /// last event. Reports the first problem found.
    ///
    /// # Errors
    /// Database errors only; tampering is reported in the result.
    #[tracing::instrument(skip_all)]
    pub async fn verify_audit_chain(
        &self,
        checkpoint: Option<&AuditCheckpoint>,
    ) -> Result<AuditVerification, StoreError> {
        let sql = format!("select {EVENT_COLUMNS} from audit_events where seq > $1 order by seq limit $2");
        let mut expected_seq = 1_i64;
        let mut prev_mac = String::new();
        let mut events_checked = 0_u64;
        let mut checkpoint_mac_seen: Option<String> = None;
        // The head is read first: events appended while the walk runs come after it and do not count
        // as a mismatch.
        let head = self.audit_head().await?;
        let mut head_mac_seen: Option<String> = None;
        loop {
            let batch: Vec<StoredAuditEvent> = with_read_pool!(self, pool => {
                sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(expected_seq - 1)
                    .bind(VERIFY_BATCH)
                    .fetch_all(pool)
                    .await?
            });
            let batch_len = batch.len();
            for event in batch {
                let problem = if event.seq != expected_seq {
                    Some(AuditProblem::Missing { seq: expected_seq })
                } else if event.mac != event.expected_mac(&self.audit_key) {
                    Some(AuditProblem::Altered { seq: event.seq })
                } else if event.prev_mac != prev_mac {
                    Some(AuditProblem::Unlinked { seq: event.seq })
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Ok(AuditVerification {
                        events_checked,
                        last_seq: expected_seq - 1,
                        problem: Some(problem),
                    });
                }
                if checkpoint.is_some_and(|c| c.seq == event.seq) {
                    checkpoint_mac_seen = Some(event.mac.clone());
                }
                if event.seq == head.seq {
                    head_mac_seen = Some(event.mac.clone());
                }
                events_checked += 1;
                expected_seq += 1;
                prev_mac = event.mac;
            }
            if (batch_len as i64) < VERIFY_BATCH {
                break;
            }
        }
        let last_seq = expected_seq - 1;
        let verification = |problem| Ok(AuditVerification { events_checked, last_seq, problem });
        if let Some(checkpoint) = checkpoint {
            if checkpoint.seq > last_seq {
                return verification(Some(AuditProblem::TailMissing { last_seq, expected_seq: checkpoint.seq }));
            }
            let matches = if checkpoint.seq == 0 {
                checkpoint.mac.is_empty()
            } else {
                checkpoint_mac_seen.as_deref() == Some(checkpoint.mac.as_str())
            };
            if !matches {
                return verification(Some(AuditProblem::CheckpointMismatch { seq: checkpoint.seq }));
            }
        }
        if head.seq > last_seq {
            return verification(Some(AuditProblem::TailMissing { last_seq, expected_seq: head.seq }));
        }
        if head.seq > 0 && head_mac_seen.as_deref() != Some(head.mac.as_str()) {
            // The head row disagrees with the event it points at: the event was replaced outside the
            // append path.
            return verification(Some(AuditProblem::Altered { seq: head.seq }));
        }
        verification(None)
    }
}
