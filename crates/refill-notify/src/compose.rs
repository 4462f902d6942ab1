//! Composition: a view-model becomes one finished RFC 5322 message with a Message-ID fixed here, once.
//! The outbox stores these bytes and every retry sends them verbatim, so every copy that might reach a
//! mailbox is identical and carries the same Message-ID.

use chrono::{DateTime, NaiveDate, Utc};
use lettre::message::{Mailbox, MultiPart};
use lettre::{Address, Message};
use uuid::Uuid;

use crate::NotifyError;
use crate::render::{
    PatientContactDetails, RenderedEmail, render_break_glass_alert, render_exception_digest, render_morning_digest,
    render_patient, render_urgent_alert,
};
use crate::settings::NotifySettings;
use crate::views::{BreakGlassLine, ExceptionDigest, MessageKind, MorningDigest, PatientNotice, UrgentAlert};

/// A finished message, ready to be written to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// Outbox row id; also the local part of the Message-ID.
    pub id: Uuid,
    pub kind: MessageKind,
    /// `{kind}:{subject}:{date}`: one row per business event, whoever writes it first wins.
    pub idempotency_key: String,
    /// `<id@message_id_domain>`.
    pub message_id: String,
    /// Opaque patient id for patient messages (kept in the outbox row, never in a header).
    pub patient_ref: Option<String>,
    /// For reminders: the date the message is about; once it has passed the message is cancelled
    /// instead of being sent late.
    pub about_date: Option<NaiveDate>,
    pub envelope_from: String,
    pub envelope_to: Vec<String>,
    /// The whole message as sent (headers and MIME body).
    pub raw: Vec<u8>,
}

/// `{kind}:{subject}:{date}`, e.g. `patient-plan-change:p-1042:2026-12-12`.
pub fn idempotency_key(kind: MessageKind, subject: &str, date: NaiveDate) -> String {
    format!("{}:{subject}:{date}", kind.name())
}

/// Builds messages from view-models with the configured identity.
#[derive(Debug, Clone)]
pub struct Composer {
    settings: NotifySettings,
    from: Mailbox,
}

impl Composer {
    /// Checks the settings first: a sender name with a forbidden word, a bad address or domain is
    /// refused here, so no process starts with them.
    ///
    /// # Errors
    /// The first problem of [`NotifySettings::problems`].
    pub fn new(settings: NotifySettings) -> Result<Composer, NotifyError> {
        if let Some(problem) = settings.problems(false).into_iter().next() {
            return Err(problem);
        }
        let address: Address =
            settings.sender_address.parse().map_err(|_| NotifyError::Address { field: "[notify] sender_address" })?;
        let from = Mailbox::new(Some(settings.sender_name.clone()), address);
        Ok(Composer { settings, from })
    }

    pub fn settings(&self) -> &NotifySettings {
        &self.settings
    }

    /// A patient notice to one address. The idempotency key is `{kind}:{patient}:{clinic_date}`, the
    /// clinic-local date of the run that decided to send it.
    pub fn patient_notice(
        &self,
        notice: &PatientNotice,
        to: &str,
        clinic_date: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<OutgoingEmail, NotifyError> {
        let details = PatientContactDetails {
            sender_name: &self.settings.sender_name,
            callback_number: &self.settings.callback_number,
            sign_in_url: &self.settings.sign_in_url,
        };
        let rendered = render_patient(notice, details)?;
        let kind = notice.kind.message_kind();
        let key = idempotency_key(kind, &notice.patient_ref, clinic_date);
        let mut email = self.build(kind, key, &rendered, &[to.to_string()], now, "patient address")?;
        email.patient_ref = Some(notice.patient_ref.clone());
        email.about_date = Some(notice.about.date());
        Ok(email)
    }

    pub fn morning_digest(
        &self,
        digest: &MorningDigest,
        recipients: &[String],
        now: DateTime<Utc>,
    ) -> Result<OutgoingEmail, NotifyError> {
        let rendered = render_morning_digest(digest, &self.settings.sign_in_url)?;
        let kind = MessageKind::StaffMorningDigest;
        let key = idempotency_key(kind, "staff", digest.clinic_date);
        self.build(kind, key, &rendered, recipients, now, "[notify] staff_recipients")
    }

    pub fn exception_digest(
        &self,
        digest: &ExceptionDigest,
        recipients: &[String],
        now: DateTime<Utc>,
    ) -> Result<OutgoingEmail, NotifyError> {
        let rendered = render_exception_digest(digest, &self.settings.sign_in_url)?;
        let kind = MessageKind::PhysicianExceptionDigest;
        let key = idempotency_key(kind, "physicians", digest.clinic_date);
        self.build(kind, key, &rendered, recipients, now, "[notify] physician_recipients")
    }

    pub fn urgent_alert(
        &self,
        alert: &UrgentAlert,
        recipients: &[String],
        now: DateTime<Utc>,
    ) -> Result<OutgoingEmail, NotifyError> {
        let rendered = render_urgent_alert(alert, &self.settings.sign_in_url)?;
        let kind = MessageKind::PhysicianUrgentAlert;
        let key = idempotency_key(kind, &alert.escalation_ref, alert.raised_at.date());
        self.build(kind, key, &rendered, recipients, now, "[notify] physician_recipients")
    }

    /// The privacy officer's alert for one break-the-glass grant (`grant_ref` is its opaque id and
    /// part of the idempotency key: one alert per grant).
    pub fn break_glass_alert(
        &self,
        grant: &BreakGlassLine,
        grant_ref: &str,
        recipients: &[String],
        now: DateTime<Utc>,
    ) -> Result<OutgoingEmail, NotifyError> {
        let rendered = render_break_glass_alert(grant, &self.settings.sign_in_url)?;
        let kind = MessageKind::PrivacyBreakGlassAlert;
        let key = idempotency_key(kind, grant_ref, grant.granted_at.date());
        self.build(kind, key, &rendered, recipients, now, "[notify] privacy_officer_recipients")
    }

    fn build(
        &self,
        kind: MessageKind,
        idempotency_key: String,
        rendered: &RenderedEmail,
        recipients: &[String],
        now: DateTime<Utc>,
        recipient_field: &'static str,
    ) -> Result<OutgoingEmail, NotifyError> {
        if recipients.is_empty() {
            return Err(NotifyError::Address { field: recipient_field });
        }
        let id = Uuid::new_v4();
        let message_id = format!("<{id}@{}>", self.settings.message_id_domain.trim());
        // Only From, To, Subject, Date, Message-ID and the MIME headers: nothing names the kind.
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(rendered.subject.clone())
            .message_id(Some(message_id.clone()))
            .date(now.into());
        for recipient in recipients {
            let address: Address =
                recipient.trim().parse().map_err(|_| NotifyError::Address { field: recipient_field })?;
            builder = builder.to(Mailbox::new(None, address));
        }
        let message = builder
            .multipart(MultiPart::alternative_plain_html(rendered.text.clone(), rendered.html.clone()))
            .map_err(|e| NotifyError::Build(e.to_string()))?;
        let envelope = message.envelope();
        let envelope_from = envelope.from().map(ToString::to_string).unwrap_or_default();
        let envelope_to = envelope.to().iter().map(ToString::to_string).collect();
        Ok(OutgoingEmail {
            id,
            kind,
            idempotency_key,
            message_id,
            patient_ref: None,
            about_date: None,
            envelope_from,
            envelope_to,
            raw: message.formatted(),
        })
    }
}
