//! Typed settings of the notifier: `[notify]` (who the mail is from, what a patient may be told) and
//! `[smtp]` (the relay). The binary deserializes them from configuration; the checks here are pure so
//! that `refill check-config` and the start of every process apply the same rules.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::NotifyError;
use crate::wording::{first_forbidden_fragment, first_forbidden_word};

/// `[notify]`: identity and the only contact details a patient email may carry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    /// Display name on the From header of every message, e.g. "Northside Care". Must be neutral: it is
    /// checked against the forbidden-word list at start.
    pub sender_name: String,
    /// Address on the From header and the SMTP envelope, e.g. "no-reply@northside.example".
    pub sender_address: String,
    /// Domain of every Message-ID (`<uuid@domain>`).
    pub message_id_domain: String,
    /// The phone number patients are asked to call.
    pub callback_number: String,
    /// The sign-in page of the patient portal (requires login; carries no patient data).
    pub sign_in_url: String,
    /// Recipients of the morning digest.
    #[serde(default)]
    pub staff_recipients: Vec<String>,
    /// Recipients of the exception digest and urgent alerts.
    #[serde(default)]
    pub physician_recipients: Vec<String>,
    /// The privacy officer(s): they receive the exception digest, which reports every break-the-glass
    /// grant once.
    #[serde(default)]
    pub privacy_officer_recipients: Vec<String>,
}

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS; refuses a server that does not offer it.
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
    /// No encryption: only for a loopback relay outside production.
    None,
}

impl TlsMode {
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::Starttls => 587,
            TlsMode::Implicit => 465,
            TlsMode::None => 25,
        }
    }
}

/// `[smtp]`: the relay. Credentials come from the environment (`REFILL__SMTP__USERNAME`,
/// `REFILL__SMTP__PASSWORD`) through the configuration layer, never from a file in production.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    /// Default: 587 for starttls, 465 for implicit, 25 for none.
    pub port: Option<u16>,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Per-command timeout; a send that times out after the data was handed over is ambiguous.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Pooled connections kept open to the relay.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// Seconds an idle pooled connection is kept.
    #[serde(default = "default_pool_idle_secs")]
    pub pool_idle_secs: u64,
    /// Extra CA certificate (PEM file) to trust besides the public roots, for a private relay.
    pub ca_file: Option<PathBuf>,
    /// Name sent in EHLO (default: this machine's host name).
    pub hello_name: Option<String>,
}

fn default_timeout_secs() -> u64 {
    30
}
fn default_pool_size() -> u32 {
    4
}
fn default_pool_idle_secs() -> u64 {
    60
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username.as_ref().map(|_| "***"))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("timeout_secs", &self.timeout_secs)
            .field("pool_size", &self.pool_size)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl SmtpSettings {
    /// A relay on loopback without TLS (tests and local development).
    pub fn loopback_plain(port: u16) -> SmtpSettings {
        SmtpSettings {
            host: "127.0.0.1".into(),
            port: Some(port),
            tls: TlsMode::None,
            username: None,
            password: None,
            timeout_secs: default_timeout_secs(),
            pool_size: default_pool_size(),
            pool_idle_secs: default_pool_idle_secs(),
            ca_file: None,
            hello_name: None,
        }
    }

    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.tls.default_port())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Every problem with these settings, each naming its key. `production` forbids `tls = "none"`
    /// entirely; elsewhere it is allowed only for a loopback host.
    pub fn problems(&self, production: bool) -> Vec<NotifyError> {
        let mut problems = Vec::new();
        if self.host.trim().is_empty() {
            problems.push(NotifyError::settings("[smtp] host", "must not be empty"));
        }
        if self.tls == TlsMode::None {
            if production {
                problems.push(NotifyError::settings(
                    "[smtp] tls",
                    "\"none\" is refused in production: use \"starttls\" or \"implicit\"",
                ));
            } else if !is_loopback(&self.host) {
                problems.push(NotifyError::settings(
                    "[smtp] tls",
                    format!("\"none\" is allowed only for a loopback host, not {:?}", self.host),
                ));
            }
        }
        match (&self.username, &self.password) {
            (Some(_), None) => problems.push(NotifyError::settings(
                "[smtp] password",
                "a username is set but no password (set REFILL__SMTP__PASSWORD)",
            )),
            (None, Some(_)) => {
                problems.push(NotifyError::settings("[smtp] username", "a password is set but no username"))
            }
            _ => {}
        }
        if self.username.is_some() && self.tls == TlsMode::None {
            problems.push(NotifyError::settings("[smtp] tls", "credentials must not be sent without TLS"));
        }
        if self.pool_size == 0 {
            problems.push(NotifyError::settings("[smtp] pool_size", "must be at least 1"));
        }
        if self.timeout_secs == 0 {
            problems.push(NotifyError::settings("[smtp] timeout_secs", "must be at least 1"));
        }
        problems
    }
}

/// `localhost`, `127.0.0.0/8` or `::1`.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

impl NotifySettings {
    /// Every problem with these settings, each naming its key. A sender name with a forbidden word
    /// ("Refill Clinic", "Eastside Pain & Recovery") is refused: it would tell anyone who sees the
    /// inbox what kind of care the patient receives.
    pub fn problems(&self, production: bool) -> Vec<NotifyError> {
        let mut problems = Vec::new();
        if self.sender_name.trim().is_empty() {
            problems.push(NotifyError::settings("[notify] sender_name", "must not be empty"));
        } else if let Some(word) = first_forbidden_word(&self.sender_name) {
            problems.push(NotifyError::settings(
                "[notify] sender_name",
                format!(
                    "{:?} contains {word:?}, which must not appear in patient email; choose a neutral name",
                    self.sender_name
                ),
            ));
        }
        if self.sender_address.parse::<lettre::Address>().is_err() {
            problems.push(NotifyError::settings("[notify] sender_address", "is not an email address"));
        } else if let Some(word) = first_forbidden_fragment(&self.sender_address) {
            problems.push(NotifyError::settings("[notify] sender_address", format!("contains {word:?}")));
        }
        let domain = self.message_id_domain.trim();
        if domain.is_empty() || domain.contains(['<', '>', '@', ' ']) || !domain.contains('.') {
            problems.push(NotifyError::settings(
                "[notify] message_id_domain",
                "must be a domain name such as mail.example.org",
            ));
        } else if let Some(word) = first_forbidden_fragment(domain) {
            problems.push(NotifyError::settings("[notify] message_id_domain", format!("contains {word:?}")));
        }
        if !self.callback_number.chars().any(|c| c.is_ascii_digit()) {
            problems.push(NotifyError::settings("[notify] callback_number", "must be a phone number"));
        }
        let url = self.sign_in_url.trim();
        if production && !url.starts_with("https://") {
            problems.push(NotifyError::settings("[notify] sign_in_url", "must be an https:// address in production"));
        } else if !(url.starts_with("https://") || url.starts_with("http://")) {
            problems.push(NotifyError::settings("[notify] sign_in_url", "must be an http(s):// address"));
        }
        if let Some(word) = first_forbidden_fragment(url) {
            problems.push(NotifyError::settings("[notify] sign_in_url", format!("contains {word:?}")));
        }
        for (key, list) in [
            ("[notify] staff_recipients", &self.staff_recipients),
            ("[notify] physician_recipients", &self.physician_recipients),
            ("[notify] privacy_officer_recipients", &self.privacy_officer_recipients),
        ] {
            if list.iter().any(|address| address.parse::<lettre::Address>().is_err()) {
                problems.push(NotifyError::settings(key, "contains an entry that is not an email address"));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notify() -> NotifySettings {
        NotifySettings {
            sender_name: "Northside Care".into(),
            sender_address: "no-reply@northside.example".into(),
            message_id_domain: "northside.example".into(),
            callback_number: "+1 555 0100".into(),
            sign_in_url: "https://portal.northside.example/sign-in".into(),
            staff_recipients: vec!["desk@northside.example".into()],
            physician_recipients: vec![],
            privacy_officer_recipients: vec![],
        }
    }

    #[test]
    fn revealing_sender_names_are_refused() {
        for name in ["Refill Clinic", "Eastside Pain & Recovery", "Opioid Care"] {
            let settings = NotifySettings { sender_name: name.into(), ..notify() };
            let problems = settings.problems(false);
            assert!(problems.iter().any(|p| p.to_string().contains("[notify] sender_name")), "{name}: {problems:?}");
        }
        assert!(notify().problems(true).is_empty());
    }

    #[test]
    fn plain_smtp_only_on_loopback_outside_production() {
        let local = SmtpSettings::loopback_plain(2525);
        assert!(local.problems(false).is_empty());
        assert!(local.problems(true).iter().any(|p| p.to_string().contains("[smtp] tls")));
        let remote = SmtpSettings { host: "mail.example.org".into(), ..SmtpSettings::loopback_plain(25) };
        assert!(remote.problems(false).iter().any(|p| p.to_string().contains("loopback")));
        let starttls = SmtpSettings { tls: TlsMode::Starttls, ..remote };
        assert!(starttls.problems(true).is_empty());
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("localhost") && is_loopback("127.0.0.1") && is_loopback("::1") && is_loopback("[::1]"));
        assert!(!is_loopback("10.0.0.1") && !is_loopback("mail.example.org"));
    }
}
