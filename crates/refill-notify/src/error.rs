//! `NotifyError`: the one error enum of the notifier (bad settings, rendering, message building).
//! Delivery outcomes are not errors: they are [`crate::SendOutcome`] values.

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A setting is unusable; names the section and key, e.g. `[notify] sender_name`.
    #[error("{setting}: {problem}")]
    Settings { setting: String, problem: String },
    /// A template failed to render (a bug in a template, not bad input).
    #[error("template {template} failed to render: {source}")]
    Render {
        template: &'static str,
        #[source]
        source: askama::Error,
    },
    /// A rendered patient message contains wording it must never carry.
    #[error("template {template} produced forbidden wording {word:?}")]
    ForbiddenWording { template: &'static str, word: String },
    /// An address could not be parsed (names the field, never the address of a patient).
    #[error("invalid email address in {field}")]
    Address { field: &'static str },
    /// lettre refused to build the message.
    #[error("could not build the message: {0}")]
    Build(String),
}

impl NotifyError {
    pub(crate) fn settings(setting: &str, problem: impl Into<String>) -> NotifyError {
        NotifyError::Settings { setting: setting.to_string(), problem: problem.into() }
    }
}
