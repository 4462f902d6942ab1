//! Job payloads: a closed set of job kinds with stable names. This is a stored contract: a job enqueued
//! before an upgrade runs after it, so variants and fields are only ever added (new fields optional),
//! never renamed or removed. The contract lives here, next to the queue, so the use cases
//! (`refill-app`) enqueue the jobs an action implies in the action's own transaction; the workers
//! (`refill-jobs`) decode and run them.
//!
//! The stored row carries the kind name in its `kind` column and the whole enum (tag included) as JSON
//! in `payload`. Payloads hold opaque ids and dates only: never names, drugs, doses or results.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::jobs::{DEFAULT_QUEUE, NewJob};

/// Every job the workers know how to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobPayload {
    /// Start the daily evaluation of one clinic site for one clinic date: split the active patients
    /// into `DailyChunk` jobs by patient-id range and enqueue the digests behind them.
    DailyPipeline { site: String, date: NaiveDate },
    /// Evaluate the active patients with ids in `first_patient..=last_patient` for `date`: write the
    /// day's queue, decisions and exceptions, draw UDS dates, apply taper steps that take effect, and
    /// enqueue patient reminders. Idempotent per (patient, clinic date).
    DailyChunk { site: String, date: NaiveDate, first_patient: i64, last_patient: i64 },
    /// Draw the next scheduled UDS date for one patient (after a test, or when none is drawn).
    UdsDraw { patient: i64, date: NaiveDate },
    /// Apply step `step` of taper plan `plan` taking effect on `effective_on`. The daily chunk applies
    /// the day's steps itself; this job is for applying one step outside the daily run (a backfill, or
    /// a step dated today signed after the run), and does nothing for a plan no longer in force.
    TaperStep { plan: i64, step: u32, patient: i64, effective_on: NaiveDate },
    /// Turn one patient reminder into an outbox email (the notifier renders and sends it).
    PatientReminder { patient: i64, reminder: ReminderKind, about: NaiveDate, date: NaiveDate },
    /// The morning digest for staff of one site: today's queue by status and what is overdue.
    StaffMorningDigest { site: String, date: NaiveDate },
    /// The physicians' digest of open exceptions for one site.
    PhysicianExceptionDigest { site: String, date: NaiveDate },
    /// The immediate email to physicians when the daily evaluation of `date` escalates `patient` as
    /// urgent (the notifier words it from the open exception's reason codes).
    UrgentAlert { patient: i64, date: NaiveDate },
    /// The immediate email to the privacy officer for break-the-glass grant `grant`, enqueued in the
    /// grant's transaction.
    BreakGlassAlert { grant: i64 },
    /// Send due outbox emails (the notifier's delivery loop, at most `batch` messages).
    DeliverOutbox { batch: u32 },
    /// Delete finished jobs past their retention.
    PruneJobs,
    /// A job with no business effect other than one `job_effect` row committed with its completion:
    /// benchmarks and crash tests count those rows to prove "exactly once in effect".
    Probe {
        /// Milliseconds to spend "working" before committing (widens crash windows in tests).
        #[serde(default)]
        work_ms: u64,
        /// Write the `job_effect` row (off: the job is claim + complete only, as in the pgbench baseline).
        #[serde(default)]
        effect: bool,
    },
}

/// The patient reminders (wording and sending are the notifier's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReminderKind {
    RefillWindowOpening,
    TaperStepComing,
    AgreementRenewal,
    VisitDue,
    /// A refill was prepared and has not been picked up: "we would like to hear from you before ...".
    MissedPickup,
}

impl ReminderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReminderKind::RefillWindowOpening => "refill_window_opening",
            ReminderKind::TaperStepComing => "taper_step_coming",
            ReminderKind::AgreementRenewal => "agreement_renewal",
            ReminderKind::VisitDue => "visit_due",
            ReminderKind::MissedPickup => "missed_pickup",
        }
    }
}

/// Queue names: long daily work and quick interactive work do not wait for each other.
pub const QUEUE_DEFAULT: &str = DEFAULT_QUEUE;
pub const QUEUE_EMAIL: &str = "email";

impl JobPayload {
    /// The stable kind name stored in `job.kind` (equal to the serde tag).
    pub fn kind(&self) -> &'static str {
        match self {
            JobPayload::DailyPipeline { .. } => "daily_pipeline",
            JobPayload::DailyChunk { .. } => "daily_chunk",
            JobPayload::UdsDraw { .. } => "uds_draw",
            JobPayload::TaperStep { .. } => "taper_step",
            JobPayload::PatientReminder { .. } => "patient_reminder",
            JobPayload::StaffMorningDigest { .. } => "staff_morning_digest",
            JobPayload::PhysicianExceptionDigest { .. } => "physician_exception_digest",
            JobPayload::UrgentAlert { .. } => "urgent_alert",
            JobPayload::BreakGlassAlert { .. } => "break_glass_alert",
            JobPayload::DeliverOutbox { .. } => "deliver_outbox",
            JobPayload::PruneJobs => "prune_jobs",
            JobPayload::Probe { .. } => "probe",
        }
    }

    /// The business idempotency key (`{kind}:{subject}:{local date}`), when the job is once-only.
    pub fn idempotency_key(&self) -> Option<String> {
        match self {
            JobPayload::DailyPipeline { site, date } => Some(format!("daily_pipeline:{site}:{date}")),
            JobPayload::DailyChunk { site, date, first_patient, last_patient } => {
                Some(format!("daily_chunk:{site}:{date}:{first_patient}-{last_patient}"))
            }
            JobPayload::UdsDraw { patient, date } => Some(format!("uds_draw:{patient}:{date}")),
            JobPayload::TaperStep { plan, step, .. } => Some(format!("taper_step:{plan}:step:{step}")),
            // Keyed by the date the reminder is about: the same reminder is sent once however many
            // daily runs find its condition true.
            JobPayload::PatientReminder { patient, reminder, about, .. } => {
                Some(format!("{}:{patient}:{about}", reminder.as_str()))
            }
            JobPayload::StaffMorningDigest { site, date } => Some(format!("staff_morning_digest:{site}:{date}")),
            JobPayload::PhysicianExceptionDigest { site, date } => {
                Some(format!("physician_exception_digest:{site}:{date}"))
            }
            JobPayload::UrgentAlert { patient, date } => Some(format!("urgent_alert:{patient}:{date}")),
            JobPayload::BreakGlassAlert { grant } => Some(format!("break_glass_alert:{grant}")),
            JobPayload::DeliverOutbox { .. } | JobPayload::PruneJobs | JobPayload::Probe { .. } => None,
        }
    }

    /// The queue this kind runs on.
    pub fn queue(&self) -> &'static str {
        match self {
            JobPayload::DeliverOutbox { .. } => QUEUE_EMAIL,
            _ => QUEUE_DEFAULT,
        }
    }

    /// Lower runs first: the pipeline's fan-out before its chunks, digests after them. An urgent alert
    /// goes ahead of the day's remaining chunks and of every other mail job: it is the one message a
    /// physician must see at once.
    pub fn priority(&self) -> i16 {
        match self {
            JobPayload::DailyPipeline { .. } => 0,
            JobPayload::UrgentAlert { .. } | JobPayload::BreakGlassAlert { .. } => 5,
            JobPayload::DailyChunk { .. } | JobPayload::TaperStep { .. } | JobPayload::UdsDraw { .. } => 10,
            JobPayload::PatientReminder { .. } | JobPayload::DeliverOutbox { .. } | JobPayload::Probe { .. } => 20,
            JobPayload::StaffMorningDigest { .. } | JobPayload::PhysicianExceptionDigest { .. } => 30,
            JobPayload::PruneJobs => 50,
        }
    }

    /// The row to insert, keyed by the business idempotency key.
    pub fn to_new_job(&self) -> NewJob {
        let payload = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let mut job = NewJob::new(self.kind(), payload).queue(self.queue()).priority(self.priority());
        job.unique_key = self.idempotency_key();
        job
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_are_stable() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
        let about = NaiveDate::from_ymd_opt(2026, 11, 6).unwrap();
        let reminder = JobPayload::PatientReminder { patient: 42, reminder: ReminderKind::VisitDue, about, date };
        let json = serde_json::to_string(&reminder).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"patient_reminder","patient":42,"reminder":"visit_due","about":"2026-11-06","date":"2026-11-02"}"#
        );
        assert_eq!(reminder.idempotency_key().as_deref(), Some("visit_due:42:2026-11-06"));
        let chunk = JobPayload::DailyChunk { site: "main".into(), date, first_patient: 1, last_patient: 500 };
        assert_eq!(
            serde_json::to_string(&chunk).unwrap(),
            r#"{"kind":"daily_chunk","site":"main","date":"2026-11-02","first_patient":1,"last_patient":500}"#
        );
        assert_eq!(serde_json::to_string(&JobPayload::PruneJobs).unwrap(), r#"{"kind":"prune_jobs"}"#);
        let alert = JobPayload::UrgentAlert { patient: 42, date };
        assert_eq!(
            serde_json::to_string(&alert).unwrap(),
            r#"{"kind":"urgent_alert","patient":42,"date":"2026-11-02"}"#
        );
        assert_eq!(alert.idempotency_key().as_deref(), Some("urgent_alert:42:2026-11-02"));
        // The form the web writes when a physician breaks the glass.
        let written_by_the_web: JobPayload = serde_json::from_str(r#"{"kind":"break_glass_alert","grant":7}"#).unwrap();
        assert_eq!(written_by_the_web, JobPayload::BreakGlassAlert { grant: 7 });
        assert_eq!(written_by_the_web.idempotency_key().as_deref(), Some("break_glass_alert:7"));
    }

    #[test]
    fn urgent_alerts_run_before_every_other_mail_job() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
        let alert = JobPayload::UrgentAlert { patient: 1, date }.priority();
        let reminder =
            JobPayload::PatientReminder { patient: 1, reminder: ReminderKind::VisitDue, about: date, date }.priority();
        let digest = JobPayload::PhysicianExceptionDigest { site: "s".into(), date }.priority();
        let chunk = JobPayload::DailyChunk { site: "s".into(), date, first_patient: 1, last_patient: 2 }.priority();
        assert!(alert < reminder && alert < digest && alert < chunk, "{alert} {reminder} {digest} {chunk}");
    }

    #[test]
    fn kind_matches_serde_tag_for_every_variant() {
        let date = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let all = [
            JobPayload::DailyPipeline { site: "s".into(), date },
            JobPayload::DailyChunk { site: "s".into(), date, first_patient: 1, last_patient: 2 },
            JobPayload::UdsDraw { patient: 1, date },
            JobPayload::TaperStep { plan: 1, step: 2, patient: 3, effective_on: date },
            JobPayload::PatientReminder { patient: 1, reminder: ReminderKind::AgreementRenewal, about: date, date },
            JobPayload::StaffMorningDigest { site: "s".into(), date },
            JobPayload::PhysicianExceptionDigest { site: "s".into(), date },
            JobPayload::UrgentAlert { patient: 7, date },
            JobPayload::BreakGlassAlert { grant: 7 },
            JobPayload::DeliverOutbox { batch: 10 },
            JobPayload::PruneJobs,
            JobPayload::Probe { work_ms: 0, effect: true },
        ];
        for payload in all {
            let value = serde_json::to_value(&payload).unwrap();
            assert_eq!(value["kind"], payload.kind(), "{payload:?}");
            let back: JobPayload = serde_json::from_value(value).unwrap();
            assert_eq!(back, payload);
        }
    }
}
