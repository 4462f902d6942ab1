//! Whether the rows that matter still hold what the audit trail accounts for.
//!
//! The audit chain proves that its own events were not altered, but a direct edit of a table (a
//! patient's Part 2 flag, a user's role, a break-glass grant or its expiry, a decision's outcome, an
//! exception, a drug-test result, an order's confidentiality) leaves the chain intact. So a checkpoint
//! also seals the state: it writes the SHA-256 of each protected row's content into `row_seals` and the
//! digest of that whole table into the chain as a `state.sealed` event, in one transaction. Verifying
//! then recomputes both: the seal table must still match its event (it cannot be edited to cover a
//! change without the audit key), and every row that differs from its seal, appeared or disappeared
//! since must be explained by an audited change after the seal — a write event about the same patient
//! (views do not count), an import that lists the patient, or an account event about the same user.
//! Every unexplained difference is reported, not only the first.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};
use sqlx::FromRow;

use crate::audit::AuditEvent;
use crate::store::{with_read_pool, with_tx};
use crate::{Actor, Store, StoreError, StoredAuditEvent};

/// One protected table: the SQL for its rows' patient and content (the same text on both backends
/// for the same stored values, as each backend seals and verifies its own rows).
struct Protected {
    table: &'static str,
    /// The patient a row belongs to (`NULL` for users).
    patient: &'static str,
    /// The columns whose change must be accounted for, as one text.
    content: &'static str,
}

/// `COALESCE(CAST(x AS TEXT), '-')` for each column, joined with `|`.
macro_rules! content {
    ($($column:literal),+) => {
        concat!("'' ", $("|| '|' || COALESCE(CAST(", $column, " AS TEXT), '-') "),+)
    };
}

const PROTECTED: &[Protected] = &[
    Protected { table: "patients", patient: "id", content: content!("part2", "active", "birth_date", "external_id") },
    Protected {
        table: "users",
        patient: "NULL",
        content: content!("username", "role", "disabled_at_ms", "totp_secret"),
    },
    Protected {
        table: "break_glass_grants",
        patient: "patient_id",
        content: content!("user_id", "patient_id", "reason", "granted_at_ms", "expires_at_ms"),
    },
    Protected {
        table: "decisions",
        patient: "patient_id",
        content: content!("patient_id", "clinic_date", "outcome", "reasons", "tasks", "policy_version"),
    },
    Protected {
        table: "exceptions",
        patient: "patient_id",
        content: content!("patient_id", "decision_id", "status", "urgency", "reason_codes", "resolution", "signed_by"),
    },
    Protected {
        table: "uds_results",
        patient: "patient_id",
        content: content!("patient_id", "collected_on", "kind", "confirmatory", "analytes", "confidentiality"),
    },
    Protected {
        table: "medication_orders",
        patient: "patient_id",
        content: content!(
            "patient_id",
            "rxcui",
            "dose_value",
            "dose_unit",
            "doses_per_day",
            "purpose",
            "confidentiality",
            "active"
        ),
    },
];

#[derive(Debug, Clone, FromRow)]
struct ProtectedRow {
    id: i64,
    patient_id: Option<i64>,
    content: String,
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
struct SealRow {
    table_name: String,
    row_id: i64,
    patient_id: Option<i64>,
    digest: String,
}

/// A row that differs from the sealed state without an audited change to account for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateMismatch {
    pub table: String,
    pub row_id: i64,
    pub kind: MismatchKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MismatchKind {
    /// The row's content is not what was sealed.
    Changed,
    /// The row was not there at the seal.
    Added,
    /// The row was sealed and is gone.
    Deleted,
}

impl std::fmt::Display for StateMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            MismatchKind::Changed => "changed",
            MismatchKind::Added => "added",
            MismatchKind::Deleted => "deleted",
        };
        write!(f, "{} row {} was {what} without an audited change", self.table, self.row_id)
    }
}

/// What verifying the state found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateVerification {
    /// The `state.sealed` event compared against (`None`: never sealed, nothing to compare).
    pub sealed_at_seq: Option<i64>,
    pub rows_checked: u64,
    /// The seal table itself was edited: its digest differs from the one in the chain.
    pub seal_table_altered: bool,
    pub mismatches: Vec<StateMismatch>,
}

impl StateVerification {
    pub fn is_intact(&self) -> bool {
        !self.seal_table_altered && self.mismatches.is_empty()
    }
}

/// SHA-256 of one row's content, hex.
fn row_digest(content: &str) -> String {
    hex::encode(Sha256::digest(content.as_bytes()))
}

/// SHA-256 over every seal in (table, row) order: what the `state.sealed` event records.
fn seal_set_digest<'a>(seals: impl Iterator<Item = (&'a str, i64, &'a str)>) -> String {
    let mut hasher = Sha256::new();
    for (table, row_id, digest) in seals {
        hasher.update(format!("{table}:{row_id}:{digest}\n").as_bytes());
    }
    hex::encode(hasher.finalize())
}

impl Store {
    /// The protected rows as they are now: (table, id) -> (patient, digest).
    async fn current_protected_rows(&self) -> Result<BTreeMap<(String, i64), (Option<i64>, String)>, StoreError> {
        let mut rows = BTreeMap::new();
        for protected in PROTECTED {
            let sql = format!(
                "SELECT id, {} AS patient_id, {} AS content FROM {}",
                protected.patient, protected.content, protected.table
            );
            let found: Vec<ProtectedRow> =
                with_read_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?);
            for row in found {
                rows.insert((protected.table.to_string(), row.id), (row.patient_id, row_digest(&row.content)));
            }
        }
        Ok(rows)
    }

    /// Seal the current state of the protected rows (see the module documentation), by `actor`, in one
    /// transaction. Returns the sequence number of the `state.sealed` event.
    pub async fn seal_state(&self, actor: &Actor) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        // Hold every other writer's audit append off while the rows are read, so a change is either in
        // the sealed rows or audited after the seal, never in between. SQLite: the transaction holds
        // the one writer lock. PostgreSQL: lock the chain head, as every append does; a transaction
        // that changed a row but has not appended yet commits after the seal with a later event.
        if let crate::Tx::Postgres(conn) = &mut tx {
            sqlx::query(crate::audit::SELECT_HEAD_FOR_UPDATE).execute(&mut **conn).await?;
        }
        let rows = self.current_protected_rows().await?;
        with_tx!(&mut tx, conn => sqlx::query("DELETE FROM row_seals").execute(&mut *conn).await?.rows_affected());
        for ((table, row_id), (patient_id, digest)) in &rows {
            with_tx!(&mut tx, conn => sqlx::query(
                "INSERT INTO row_seals (table_name, row_id, patient_id, digest) VALUES ($1, $2, $3, $4)")
                .bind(table)
                .bind(row_id)
                .bind(patient_id)
                .bind(digest)
                .execute(&mut *conn)
                .await?
                .rows_affected());
        }
        let digest = seal_set_digest(rows.iter().map(|((t, id), (_, d))| (t.as_str(), *id, d.as_str())));
        let event = AuditEvent::new(actor, "state.sealed", "row_seals")
            .detail(serde_json::json!({ "rows": rows.len(), "digest": digest }));
        let appended = self.append_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(appended.seq)
    }

    /// Compare the protected rows with the last seal and report every unexplained difference.
    ///
    /// # Errors
    /// Database errors only; differences are reported in the result.
    pub async fn verify_state(&self) -> Result<StateVerification, StoreError> {
        let sealed: Option<StoredAuditEvent> = {
            let sql = format!(
                "select {} from audit_events where action = 'state.sealed' order by seq desc limit 1",
                crate::audit::EVENT_COLUMNS
            );
            with_read_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_optional(pool).await?)
        };
        let current = self.current_protected_rows().await?;
        let Some(sealed) = sealed else {
            return Ok(StateVerification {
                sealed_at_seq: None,
                rows_checked: current.len() as u64,
                seal_table_altered: false,
                mismatches: Vec::new(),
            });
        };
        let recorded_digest = sealed
            .detail
            .as_deref()
            .and_then(|detail| serde_json::from_str::<serde_json::Value>(detail).ok())
            .and_then(|detail| detail.get("digest").and_then(|d| d.as_str()).map(str::to_string));
        let seals: Vec<SealRow> = with_read_pool!(self, pool => sqlx::query_as(
            "SELECT table_name, row_id, patient_id, digest FROM row_seals ORDER BY table_name, row_id")
            .fetch_all(pool)
            .await?);
        let mut ordered: Vec<&SealRow> = seals.iter().collect();
        ordered.sort_by(|a, b| (&a.table_name, a.row_id).cmp(&(&b.table_name, b.row_id)));
        let digest = seal_set_digest(ordered.iter().map(|s| (s.table_name.as_str(), s.row_id, s.digest.as_str())));
        let seal_table_altered = recorded_digest.as_deref() != Some(digest.as_str());

        let explained = self.audited_changes_after(sealed.seq).await?;
        let is_explained = |table: &str, row_id: i64, patient: Option<i64>| match table {
            "users" => explained.users.contains(&row_id),
            _ => patient.is_some_and(|p| explained.patients.contains(&p)),
        };
        let mut mismatches = Vec::new();
        let sealed_rows: BTreeMap<(String, i64), &SealRow> =
            seals.iter().map(|s| ((s.table_name.clone(), s.row_id), s)).collect();
        for ((table, row_id), (patient, digest)) in &current {
            let kind = match sealed_rows.get(&(table.clone(), *row_id)) {
                Some(seal) if seal.digest == *digest => continue,
                Some(_) => MismatchKind::Changed,
                None => MismatchKind::Added,
            };
            if !is_explained(table, *row_id, *patient) {
                mismatches.push(StateMismatch { table: table.clone(), row_id: *row_id, kind });
            }
        }
        for (table, row_id) in sealed_rows.keys() {
            // No protected table has a legitimate delete: a sealed row that is gone is always reported.
            if !current.contains_key(&(table.clone(), *row_id)) {
                mismatches.push(StateMismatch { table: table.clone(), row_id: *row_id, kind: MismatchKind::Deleted });
            }
        }
        Ok(StateVerification {
            sealed_at_seq: Some(sealed.seq),
            rows_checked: current.len() as u64,
            seal_table_altered,
            mismatches,
        })
    }

    /// The patients and users an audited change after `seq` touched (views and refusals change nothing).
    async fn audited_changes_after(&self, seq: i64) -> Result<Explained, StoreError> {
        let sql = format!("select {} from audit_events where seq > $1 order by seq", crate::audit::EVENT_COLUMNS);
        let events: Vec<StoredAuditEvent> =
            with_read_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(seq).fetch_all(pool).await?);
        let mut explained = Explained::default();
        for event in events {
            if event.action.ends_with(".view") || event.action == "access.refused" {
                continue;
            }
            if let Some(patient) = event.patient_id {
                explained.patients.insert(patient);
            }
            if event.resource_type == "user"
                && let Some(user) = event.resource_id.as_deref().and_then(|id| id.parse().ok())
            {
                explained.users.insert(user);
            }
            if event.action == "import.file" {
                let listed = event
                    .detail
                    .as_deref()
                    .and_then(|detail| serde_json::from_str::<serde_json::Value>(detail).ok())
                    .and_then(|detail| detail.get("patients_changed").cloned());
                if let Some(serde_json::Value::Array(patients)) = listed {
                    explained.patients.extend(patients.iter().filter_map(serde_json::Value::as_i64));
                }
            }
        }
        Ok(explained)
    }
}

#[derive(Debug, Default)]
struct Explained {
    patients: BTreeSet<i64>,
    users: BTreeSet<i64>,
}
