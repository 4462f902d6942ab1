//! All SQL of Refill Clinic: SQLite and PostgreSQL pools, migrations, repositories, the job queue, the
//! email outbox and the audit chain.
//!
//! Sits above `refill-rules` (rows convert into its domain types) and below jobs, web and the binary.
//! Statements are runtime `sqlx::query`/`query_as` strings, so the crate builds without a database; the
//! conformance suite in `tests/` runs every repository function on SQLite and on PostgreSQL.
//!
//! Invariants:
//! - SQLite: one write connection per process and `BEGIN IMMEDIATE` for every write transaction, so
//!   writers queue in the process instead of failing with `SQLITE_BUSY` on lock upgrades.
//! - Every write that matters happens inside one transaction together with its audit event.

pub mod accounts;
pub mod audit;
pub mod backup;
mod batch;
pub mod cds;
pub mod codec;
pub mod cycle;
pub mod decisions;
pub mod enrolment;
mod error;
pub mod exceptions;
pub mod facts;
pub mod import;
pub mod job_payload;
pub mod jobs;
mod model;
pub mod outbox;
pub mod patients;
pub mod queue;
pub mod reminders;
pub mod schedule;
pub mod screens;
pub mod search;
pub mod state_seal;
mod store;
pub mod taper_care;

pub use audit::{AuditCheckpoint, AuditEvent, AuditProblem, AuditVerification, StoredAuditEvent};
pub use decisions::{DecisionRecord, NewDecision, RecordedDecision};
pub use enrolment::{Enrolment, EnrolmentState, NotEnrolledPatient};
pub use error::StoreError;
pub use exceptions::{ExceptionRecord, ExceptionResolution, ExceptionStatus, ExceptionUrgency, Resolution};
pub use facts::{NewTaperPlan, NewTaperStep, StaffFact, UdsOrder};
pub use model::{Actor, DecisionId, ExceptionId, QueueItemId, RefillRequestId, TaperPlanId};
pub use patients::{ContactPreference, PatientDetails, PatientRecord, Prescriber, Upserted};
pub use queue::{QueueCounts, QueueItem, QueueQuery, QueueStatus};
pub use reminders::ReminderDates;
pub use state_seal::{MismatchKind, StateMismatch, StateVerification};
pub use store::{AuditKey, Backend, MigrationStatus, Pools, Store, StoreSettings, Tx};

/// Embedded migrations, one set per backend, with the same versions and names.
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
pub static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");
