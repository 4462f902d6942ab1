//! Outbox delivery: turn reminder, digest and urgent-alert jobs into outbox rows, and send due outbox
//! rows over SMTP.
//!
//! One delivery tick ([`deliver_due`]): rescue messages whose sender died (counted as ambiguous sends),
//! cancel reminders whose date has passed, give up on messages older than the maximum age, claim a
//! batch (committed before any SMTP traffic), send each stored message verbatim through the pooled
//! [`Mailer`], and record each outcome fenced by the lease token. Transient and ambiguous failures
//! retry with capped exponential backoff; 5xx replies fail at once; messages failing for longer than
//! the alert threshold are flagged once for staff.
//!
//! [`OutboxMailer`] implements the worker's [`crate::runner::Mailer`] seam, so `refill worker` runs
//! both halves; [`run_delivery_loop`] is a standalone loop for a process that only sends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use refill_notify::{Composer, Mailer, Moment, OutgoingEmail, PatientNotice, PatientNoticeKind, SendOutcome};
use refill_rules::PatientId;
use refill_store::outbox::{self, AttemptResult, ClaimedEmail, EmailContact, Enqueued, NewOutboxEmail, OutboxAudience};
use refill_store::{Store, StoreError, Tx};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::payload::{JobPayload, ReminderKind};
use crate::runner::BoxFuture;

/// How delivery behaves. Defaults follow the issue: 30 s first retry doubling to 15 min, give up
/// after 72 h, alert staff after 1 h of failure.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// How long a claimed message stays ours; must exceed the SMTP timeout of one send.
    pub lease: Duration,
    /// Messages claimed per tick.
    pub batch: i64,
    /// Sends in flight at once (at most the SMTP pool size is sensible).
    pub concurrency: usize,
    pub first_retry: Duration,
    pub max_retry: Duration,
    /// A message still undelivered this long after it was written fails with the reason.
    pub max_age: Duration,
    /// A message failing this long is flagged for staff (once).
    pub alert_after: Duration,
    /// Pause between ticks of [`run_delivery_loop`] when there was nothing to send.
    pub idle_poll: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            lease: Duration::from_secs(120),
            batch: 50,
            concurrency: 4,
            first_retry: Duration::from_secs(30),
            max_retry: Duration::from_secs(15 * 60),
            max_age: Duration::from_secs(72 * 3600),
            alert_after: Duration::from_secs(3600),
            idle_poll: Duration::from_secs(2),
        }
    }
}

/// Delay before try `attempt + 1` after try number `attempt` failed: `first * 2^(attempt-1)`, capped.
pub fn retry_delay(attempt: i64, settings: &DeliverySettings) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    settings.first_retry.saturating_mul(2u32.saturating_pow(exponent)).min(settings.max_retry)
}

/// Map what the relay told us to what the outbox records.
pub fn attempt_result(
    outcome: SendOutcome,
    attempt: i64,
    finished_at: DateTime<Utc>,
    settings: &DeliverySettings,
) -> AttemptResult {
    let retry_at = finished_at + chrono::Duration::from_std(retry_delay(attempt, settings)).unwrap_or_default();
    match outcome {
        SendOutcome::Sent { reply } => AttemptResult::Sent { reply },
        SendOutcome::Transient { reason } => AttemptResult::Retry { reason, ambiguous: false, retry_at },
        SendOutcome::Ambiguous { reason } => AttemptResult::Retry { reason, ambiguous: true, retry_at },
        SendOutcome::Permanent { reason } => AttemptResult::Failed { reason },
    }
}

/// What one tick did (counts, and the messages newly flagged for staff).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub rescued: u64,
    pub cancelled: u64,
    pub gave_up: u64,
    pub claimed: usize,
    pub sent: usize,
    pub retried: usize,
    pub ambiguous: usize,
    pub failed: usize,
    /// Outcomes not recorded because the lease was lost meanwhile.
    pub lost_leases: usize,
    /// Outbox ids newly flagged as failing for longer than the alert threshold.
    pub alerted: Vec<String>,
}

/// One delivery tick at `now` (the caller's clock; tests move it).
///
/// # Errors
/// Store errors only; SMTP problems are outcomes recorded on the messages.
pub async fn deliver_due(
    store: &Store,
    mailer: &Mailer,
    now: DateTime<Utc>,
    settings: &DeliverySettings,
) -> Result<DeliveryReport, StoreError> {
    let started = Instant::now();
    let mut report = DeliveryReport {
        rescued: outbox::rescue_expired_leases(store, now, now).await?,
        cancelled: outbox::cancel_passed(store, now).await?,
        gave_up: outbox::fail_too_old(store, now, settings.max_age).await?,
        ..DeliveryReport::default()
    };
    let claimed = outbox::claim_due(store, now, settings.lease, settings.batch).await?;
    report.claimed = claimed.len();
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut sends: JoinSet<(ClaimedEmail, SendOutcome, Duration)> = JoinSet::new();
    for claim in claimed {
        let mailer = mailer.clone();
        let permits = Arc::clone(&permits);
        sends.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let outcome = mailer.send_raw(&claim.envelope_from, &claim.envelope_to, &claim.raw_message).await;
            (claim, outcome, started.elapsed())
        });
    }
    while let Some(joined) = sends.join_next().await {
        let Ok((claim, outcome, elapsed)) = joined else {
            // A panicked send leaves its row in `sending`; the lease expires and the rescue counts it
            // as ambiguous, which is exactly what is known about it.
            continue;
        };
        let finished_at = now + chrono::Duration::from_std(elapsed).unwrap_or_default();
        let result = attempt_result(outcome, claim.attempt, finished_at, settings);
        match &result {
            AttemptResult::Sent { .. } => report.sent += 1,
            AttemptResult::Retry { ambiguous: true, .. } => report.ambiguous += 1,
            AttemptResult::Retry { .. } => report.retried += 1,
            AttemptResult::Failed { .. } => {
                report.failed += 1;
                tracing::warn!(outbox_id = %claim.id, kind = %claim.kind, "email refused permanently; shown to staff");
            }
        }
        if !outbox::finish_attempt(store, &claim, &result, finished_at).await? {
            report.lost_leases += 1;
            tracing::warn!(outbox_id = %claim.id, "email lease lost before its outcome was recorded");
        }
    }
    for alert in outbox::take_new_alerts(store, now, settings.alert_after).await? {
        tracing::warn!(outbox_id = %alert.id, kind = %alert.kind, attempts = alert.attempts,
            "email still undelivered after the alert threshold; shown to staff");
        report.alerted.push(alert.id);
    }
    Ok(report)
}

/// Send until `shutdown` resolves, sleeping `idle_poll` whenever a tick found nothing to claim.
/// A store error is logged and retried after the idle pause (the database may be restarting).
pub async fn run_delivery_loop(
    store: &Store,
    mailer: &Mailer,
    settings: &DeliverySettings,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let pause = match deliver_due(store, mailer, Utc::now(), settings).await {
            Ok(report) if report.claimed > 0 => Duration::ZERO,
            Ok(_) => settings.idle_poll,
            Err(error) => {
                tracing::error!(%error, "email delivery tick failed");
                settings.idle_poll
            }
        };
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// What happened to one patient notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatientEmail {
    Queued,
    /// The same notice was queued before (same kind, patient and clinic date).
    AlreadyQueued,
    /// Not emailed; the reason is what staff see on the queue screen.
    NotEmailed(EmailContact),
}

/// The notice kind for a job's reminder kind.
pub fn notice_kind(reminder: ReminderKind) -> PatientNoticeKind {
    match reminder {
        ReminderKind::RefillWindowOpening => PatientNoticeKind::WindowOpens,
        ReminderKind::TaperStepComing => PatientNoticeKind::PlanChange,
        ReminderKind::AgreementRenewal => PatientNoticeKind::AgreementRenewal,
        ReminderKind::VisitDue => PatientNoticeKind::VisitDue,
        ReminderKind::MissedPickup => PatientNoticeKind::FollowUp,
    }
}

/// The instant a reminder about `about` stops being useful: the start of the next clinic day.
pub fn expiry_of(about: NaiveDate, clinic_zone: Tz) -> Option<DateTime<Utc>> {
    let next_day = about.succ_opt()?.and_time(NaiveTime::MIN);
    clinic_zone.from_local_datetime(&next_day).earliest().map(|at| at.with_timezone(&Utc))
}

/// Render and queue a patient notice in the caller's transaction, if the patient may be emailed.
/// `clinic_date` is the local date of the run that decided to send it (part of the idempotency key).
#[allow(clippy::too_many_arguments)]
pub async fn queue_patient_notice(
    tx: &mut Tx,
    composer: &Composer,
    contact: &EmailContact,
    patient: PatientId,
    kind: PatientNoticeKind,
    about: Moment,
    clinic_date: NaiveDate,
    clinic_zone: Tz,
    now: DateTime<Utc>,
) -> anyhow::Result<PatientEmail> {
    let EmailContact::Reachable { address, first_name } = contact else {
        return Ok(PatientEmail::NotEmailed(contact.clone()));
    };
    let notice = PatientNotice { kind, patient_ref: patient.0.to_string(), first_name: first_name.clone(), about };
    let email = composer.patient_notice(&notice, address, clinic_date, now)?;
    Ok(match queue_email(tx, &email, Some(patient), clinic_zone, now).await? {
        Enqueued::Inserted => PatientEmail::Queued,
        Enqueued::AlreadyQueued => PatientEmail::AlreadyQueued,
    })
}

/// Write a composed message into the outbox in the caller's transaction. A message about a date
/// expires at the start of the next clinic day.
pub async fn queue_email(
    tx: &mut Tx,
    email: &OutgoingEmail,
    patient: Option<PatientId>,
    clinic_zone: Tz,
    now: DateTime<Utc>,
) -> Result<Enqueued, StoreError> {
    let audience = match email.kind.audience() {
        refill_notify::Audience::Patient => OutboxAudience::Patient,
        refill_notify::Audience::Staff => OutboxAudience::Staff,
        refill_notify::Audience::Physician => OutboxAudience::Physician,
    };
    let row = NewOutboxEmail {
        id: email.id,
        idempotency_key: email.idempotency_key.clone(),
        kind: email.kind.name().to_string(),
        audience,
        patient_id: patient,
        message_id: email.message_id.clone(),
        envelope_from: email.envelope_from.clone(),
        envelope_to: email.envelope_to.clone(),
        raw_message: email.raw.clone(),
        about_date: email.about_date,
        expires_at: email.about_date.and_then(|date| expiry_of(date, clinic_zone)),
    };
    outbox::enqueue(tx, &row, now).await
}

/// Queue the immediate alert to physicians for an urgent escalation, in the caller's transaction (the
/// one that records the escalation). Once per escalation and clinic date. `Ok(None)` when no
/// physician recipients are configured (the escalation still shows on the review screen).
pub async fn queue_urgent_alert(
    tx: &mut Tx,
    composer: &Composer,
    alert: &refill_notify::UrgentAlert,
    clinic_zone: Tz,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<Enqueued>> {
    let recipients = &composer.settings().physician_recipients;
    if recipients.is_empty() {
        tracing::warn!("no [notify] physician_recipients configured; urgent alert not emailed");
        return Ok(None);
    }
    let email = composer.urgent_alert(alert, recipients, now)?;
    Ok(Some(queue_email(tx, &email, None, clinic_zone, now).await?))
}

/// The notifier behind the worker's [`crate::runner::Mailer`] seam: composes reminder, digest and
/// urgent-alert jobs into outbox rows and delivers the outbox.
pub struct OutboxMailer {
    pub composer: Composer,
    pub mailer: Mailer,
    pub settings: DeliverySettings,
    pub clinic_zone: Tz,
    /// Holds whose supply runs out within this many days are listed in the morning digest.
    pub supply_horizon_days: i64,
}

/// How staff find a patient in the app from an email: the internal id, never a name.
pub fn patient_ref(patient: PatientId) -> String {
    format!("patient #{}", patient.0)
}

/// The staff digest view-model from the store's digest data.
pub fn morning_digest_view(clinic_date: NaiveDate, data: outbox::MorningDigestData) -> refill_notify::MorningDigest {
    use refill_notify::{Overdue, OverdueItem, StatusCount, SupplyRunningOut};
    refill_notify::MorningDigest {
        clinic_date,
        queue: data
            .queue
            .into_iter()
            .map(|(status, count)| StatusCount { status, count: u32::try_from(count).unwrap_or(u32::MAX) })
            .collect(),
        supply_running_out: data
            .supply_running_out
            .into_iter()
            .map(|(patient, runs_out_on)| SupplyRunningOut { patient_ref: patient_ref(patient), runs_out_on })
            .collect(),
        overdue: data
            .overdue
            .into_iter()
            .map(|(patient, kind, due_on)| Overdue {
                patient_ref: patient_ref(patient),
                item: match kind {
                    outbox::OverdueKind::Uds => OverdueItem::Uds,
                    outbox::OverdueKind::Pdmp => OverdueItem::Pdmp,
                    outbox::OverdueKind::Agreement => OverdueItem::Agreement,
                },
                due_on,
            })
            .collect(),
        without_email_consent: data.without_email_consent.into_iter().map(patient_ref).collect(),
    }
}

/// One grant as the emails show it: who, the patient's opaque reference, when (clinic wall clock) and
/// for how long; `None` for a time outside the calendar.
fn break_glass_line(access: outbox::BreakGlassAccess, clinic_zone: Tz) -> Option<refill_notify::BreakGlassLine> {
    let granted_at = DateTime::<Utc>::from_timestamp_millis(access.granted_at_ms)?;
    Some(refill_notify::BreakGlassLine {
        user: access.user_display_name,
        patient_ref: patient_ref(access.patient_id),
        granted_at: granted_at.with_timezone(&clinic_zone).naive_local(),
        minutes: (access.expires_at_ms - access.granted_at_ms) / 60_000,
    })
}

/// The physicians' digest view-model from the open exceptions and the break-the-glass grants made
/// since the last digest (times shown on the clinic's wall clock).
pub fn exception_digest_view(
    clinic_date: NaiveDate,
    open: Vec<outbox::OpenException>,
    break_glass: Vec<outbox::BreakGlassAccess>,
    clinic_zone: Tz,
) -> refill_notify::ExceptionDigest {
    refill_notify::ExceptionDigest {
        clinic_date,
        break_glass: break_glass.into_iter().filter_map(|access| break_glass_line(access, clinic_zone)).collect(),
        exceptions: open
            .into_iter()
            .map(|exception| refill_notify::ExceptionLine {
                patient_ref: patient_ref(exception.patient_id),
                summary: format!(
                    "{}{}",
                    if exception.urgency == "urgent" { "URGENT: " } else { "" },
                    exception.reason_codes.iter().map(|c| c.replace('_', " ")).collect::<Vec<_>>().join(", ")
                ),
                opened_on: exception.clinic_date,
            })
            .collect(),
    }
}

/// The opaque reference of the urgent escalation of `patient` raised by the run of `date`.
pub fn urgent_escalation_ref(patient: PatientId, date: NaiveDate) -> String {
    format!("urgent:{}:{date}", patient.0)
}

/// The alert's one-line summary: the reason codes in plain words, never a name, drug, dose or result
/// (physician emails may name reason codes; the details are behind the sign-in link).
pub fn urgent_alert_summary(reason_codes: &[String]) -> String {
    let reasons: Vec<String> = reason_codes.iter().map(|code| code.replace('_', " ")).collect();
    if reasons.is_empty() {
        "Urgent escalation needs physician review".to_string()
    } else {
        format!("Urgent escalation needs physician review: {}", reasons.join(", "))
    }
}

/// The urgent alert view-model for `patient`'s open urgent exception (`None` when it is no longer
/// open or no longer urgent, e.g. a physician resolved it before the alert job ran).
pub fn urgent_alert_view(
    patient: PatientId,
    date: NaiveDate,
    open: &[outbox::OpenException],
    raised_at: chrono::NaiveDateTime,
) -> Option<refill_notify::UrgentAlert> {
    let exception = open.iter().find(|e| e.patient_id == patient && e.urgency == "urgent")?;
    Some(refill_notify::UrgentAlert {
        escalation_ref: urgent_escalation_ref(patient, date),
        patient_ref: patient_ref(patient),
        summary: urgent_alert_summary(&exception.reason_codes),
        raised_at,
    })
}

impl OutboxMailer {
    async fn compose_job(&self, tx: &mut Tx, job: &JobPayload) -> anyhow::Result<()> {
        let now = Utc::now();
        match job {
            JobPayload::PatientReminder { patient, reminder, about, date } => {
                let patient = PatientId(*patient);
                let contact = outbox::email_contact_in(tx, patient).await?;
                let outcome = queue_patient_notice(
                    tx,
                    &self.composer,
                    &contact,
                    patient,
                    notice_kind(*reminder),
                    Moment::Date(*about),
                    *date,
                    self.clinic_zone,
                    now,
                )
                .await?;
                if let PatientEmail::NotEmailed(reason) = outcome {
                    tracing::info!(
                        patient = patient.0,
                        reason = reason.staff_note().unwrap_or(""),
                        "reminder not emailed"
                    );
                }
                Ok(())
            }
            JobPayload::StaffMorningDigest { date, .. } => {
                let recipients = &self.composer.settings().staff_recipients;
                if recipients.is_empty() {
                    tracing::info!("no [notify] staff_recipients configured; morning digest not emailed");
                    return Ok(());
                }
                let data = outbox::morning_digest_in(tx, *date, self.supply_horizon_days).await?;
                let email = self.composer.morning_digest(&morning_digest_view(*date, data), recipients, now)?;
                queue_email(tx, &email, None, self.clinic_zone, now).await?;
                Ok(())
            }
            JobPayload::PhysicianExceptionDigest { date, .. } => {
                // The privacy officer gets the digest too: it is where break-the-glass grants are reported.
                let settings = self.composer.settings();
                let mut recipients = settings.physician_recipients.clone();
                recipients.extend(
                    settings
                        .privacy_officer_recipients
                        .iter()
                        .filter(|r| !recipients.contains(r))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
                if recipients.is_empty() {
                    // The grants stay unreported until someone is configured to receive them.
                    tracing::warn!(
                        "no [notify] physician_recipients or privacy_officer_recipients; digest not emailed"
                    );
                    return Ok(());
                }
                let open = outbox::open_exceptions_in(tx).await?;
                // Every grant not reported yet, marked reported with this email.
                let break_glass = outbox::take_unreported_break_glass_in(tx, now.timestamp_millis()).await?;
                let reported = break_glass.len();
                let view = exception_digest_view(*date, open, break_glass, self.clinic_zone);
                let email = self.composer.exception_digest(&view, &recipients, now)?;
                if queue_email(tx, &email, None, self.clinic_zone, now).await? == Enqueued::AlreadyQueued
                    && reported > 0
                {
                    // This date's digest went out already: fail (rolling the marks back) rather than mark
                    // grants reported that no email lists; the next day's digest reports them.
                    anyhow::bail!("the digest of {date} is already queued; {reported} grant(s) left for the next one");
                }
                Ok(())
            }
            JobPayload::UrgentAlert { patient, date } => {
                let patient = PatientId(*patient);
                let open = outbox::open_exceptions_in(tx).await?;
                let raised_at = now.with_timezone(&self.clinic_zone).naive_local();
                let Some(alert) = urgent_alert_view(patient, *date, &open, raised_at) else {
                    tracing::info!(patient = patient.0, "no open urgent exception any more; urgent alert not emailed");
                    return Ok(());
                };
                queue_urgent_alert(tx, &self.composer, &alert, self.clinic_zone, now).await?;
                Ok(())
            }
            JobPayload::BreakGlassAlert { grant } => {
                let recipients = &self.composer.settings().privacy_officer_recipients;
                if recipients.is_empty() {
                    // The grant is still reported once in the next exception digest.
                    tracing::warn!(grant, "no [notify] privacy_officer_recipients; break-the-glass alert not emailed");
                    return Ok(());
                }
                let Some(access) = outbox::break_glass_access_in(tx, *grant).await? else {
                    anyhow::bail!("break-the-glass grant {grant} does not exist");
                };
                let Some(line) = break_glass_line(access, self.clinic_zone) else {
                    anyhow::bail!("break-the-glass grant {grant} has an unreadable time");
                };
                let email = self.composer.break_glass_alert(&line, &format!("grant-{grant}"), recipients, now)?;
                queue_email(tx, &email, None, self.clinic_zone, now).await?;
                Ok(())
            }
            other => anyhow::bail!("the notifier does not compose {} jobs", other.kind()),
        }
    }
}

impl crate::runner::Mailer for OutboxMailer {
    fn compose<'a>(&'a self, tx: &'a mut Tx, job: &'a JobPayload) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.compose_job(tx, job))
    }

    fn deliver<'a>(&'a self, store: &'a Store, batch: u32) -> BoxFuture<'a, anyhow::Result<u32>> {
        Box::pin(async move {
            let settings = DeliverySettings { batch: i64::from(batch.max(1)), ..self.settings.clone() };
            let report = deliver_due(store, &self.mailer, Utc::now(), &settings).await?;
            Ok(u32::try_from(report.claimed).unwrap_or(u32::MAX))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_thirty_seconds_and_caps_at_fifteen_minutes() {
        let settings = DeliverySettings::default();
        let delays: Vec<u64> = (1..=8).map(|a| retry_delay(a, &settings).as_secs()).collect();
        assert_eq!(delays, vec![30, 60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(retry_delay(10_000, &settings).as_secs(), 900);
    }

    #[test]
    fn outcomes_map_to_retry_or_stop() {
        let settings = DeliverySettings::default();
        let at = Utc::now();
        let ambiguous = attempt_result(SendOutcome::Ambiguous { reason: "eof".into() }, 1, at, &settings);
        assert!(matches!(ambiguous, AttemptResult::Retry { ambiguous: true, .. }));
        let permanent = attempt_result(SendOutcome::Permanent { reason: "550".into() }, 1, at, &settings);
        assert!(matches!(permanent, AttemptResult::Failed { .. }));
        let transient = attempt_result(SendOutcome::Transient { reason: "421".into() }, 2, at, &settings);
        assert_eq!(
            transient,
            AttemptResult::Retry {
                reason: "421".into(),
                ambiguous: false,
                retry_at: at + chrono::Duration::seconds(60)
            }
        );
    }

    #[test]
    fn urgent_alerts_come_from_an_open_urgent_exception_only() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
        let raised_at = date.and_hms_opt(9, 30, 0).unwrap();
        let exception = |patient, urgency: &str| outbox::OpenException {
            patient_id: PatientId(patient),
            urgency: urgency.to_string(),
            reason_codes: vec!["overdose_or_sedation_signal".into(), "uds_overdue".into()],
            clinic_date: date,
        };
        let open = [exception(3, "routine"), exception(4, "urgent")];
        let alert = urgent_alert_view(PatientId(4), date, &open, raised_at).unwrap();
        assert_eq!(alert.escalation_ref, "urgent:4:2026-11-02");
        assert_eq!(alert.patient_ref, "patient #4");
        assert_eq!(alert.summary, "Urgent escalation needs physician review: overdose or sedation signal, uds overdue");
        assert_eq!(alert.raised_at, raised_at);
        assert!(urgent_alert_view(PatientId(3), date, &open, raised_at).is_none(), "routine exception alerted");
        assert!(urgent_alert_view(PatientId(5), date, &open, raised_at).is_none(), "no exception alerted");
    }

    #[test]
    fn reminders_expire_at_the_next_clinic_midnight() {
        let zone: Tz = "America/New_York".parse().unwrap();
        let about = NaiveDate::from_ymd_opt(2026, 12, 12).unwrap();
        let expiry = expiry_of(about, zone).unwrap();
        assert_eq!(expiry.to_rfc3339(), "2026-12-13T05:00:00+00:00");
    }
}
