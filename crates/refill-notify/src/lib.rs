//! Email: askama templates rendered into lettre messages, and SMTP delivery. No database: the outbox
//! rows live in the store and the jobs crate drives delivery.
//!
//! The flow: a job builds a typed view-model ([`views`]), [`Composer`] renders it from
//! `templates/email/<kind>/` and fixes its Message-ID, the store keeps the raw bytes in the outbox, and
//! [`Mailer`] sends those bytes verbatim, as often as needed, reporting a [`SendOutcome`].
//!
//! Patient messages carry only the configured neutral sender name, the first name, one date or time,
//! the callback number and a sign-in link ([`wording`] holds the words they must never contain).

mod compose;
mod error;
mod render;
pub mod settings;
mod transport;
pub mod views;
pub mod wording;

pub use compose::{Composer, OutgoingEmail, idempotency_key};
pub use error::NotifyError;
pub use render::{
    PatientContactDetails, RenderedEmail, render_break_glass_alert, render_exception_digest, render_morning_digest,
    render_patient, render_urgent_alert,
};
pub use settings::{NotifySettings, SmtpSettings, TlsMode};
pub use transport::{Mailer, SendOutcome};
pub use views::{
    Audience, BreakGlassLine, ExceptionDigest, ExceptionLine, MessageKind, Moment, MorningDigest, Overdue, OverdueItem,
    PatientNotice, PatientNoticeKind, StatusCount, SupplyRunningOut, UrgentAlert,
};
