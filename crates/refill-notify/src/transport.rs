//! SMTP delivery with lettre's pooled async transport. A send returns a [`SendOutcome`] value that
//! says what we know about the message afterwards; the caller records it.

use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::{AsyncSmtpTransport, PoolConfig};
use lettre::{Address, AsyncTransport, Tokio1Executor};

use crate::NotifyError;
use crate::settings::{SmtpSettings, TlsMode};

/// What is known about one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The relay accepted the message; `reply` is its first reply line (usually with a queue id).
    Sent { reply: String },
    /// The relay said "not now" (4xx) or could not be reached: nothing was delivered, try again later.
    Transient { reason: String },
    /// The relay refused for good (5xx): do not retry, show it to staff.
    Permanent { reason: String },
    /// The connection failed after the message may have been handed over (RFC 1047's window): the
    /// relay may or may not have it. Resend with the same Message-ID and record the ambiguity.
    Ambiguous { reason: String },
}

/// The pooled SMTP client. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mailer")
    }
}

impl Mailer {
    /// Build the transport. Does not connect: the pool opens connections on first use. Must be called
    /// (and the mailer dropped) inside a tokio runtime: lettre's pool runs a background task.
    ///
    /// # Errors
    /// `Settings` naming the key when the CA file cannot be read or TLS parameters are invalid.
    pub fn new(settings: &SmtpSettings) -> Result<Mailer, NotifyError> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.as_str())
            .port(settings.port())
            .timeout(Some(settings.timeout()))
            .pool_config(
                PoolConfig::new()
                    .max_size(settings.pool_size.max(1))
                    .idle_timeout(Duration::from_secs(settings.pool_idle_secs)),
            );
        if let Some(name) = &settings.hello_name {
            builder = builder.hello_name(lettre::transport::smtp::extension::ClientId::Domain(name.clone()));
        }
        if let (Some(username), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(username.clone(), password.clone()));
        }
        let tls = match settings.tls {
            TlsMode::None => Tls::None,
            TlsMode::Starttls => Tls::Required(tls_parameters(settings)?),
            TlsMode::Implicit => Tls::Wrapper(tls_parameters(settings)?),
        };
        Ok(Mailer { transport: builder.tls(tls).build() })
    }

    /// Check that the TLS settings can be built (CA file readable and valid) without creating the
    /// pool, which needs a running tokio runtime.
    ///
    /// # Errors
    /// `Settings` naming `[smtp] ca_file` or `[smtp] tls`.
    pub fn check_tls(settings: &SmtpSettings) -> Result<(), NotifyError> {
        match settings.tls {
            TlsMode::None => Ok(()),
            TlsMode::Starttls | TlsMode::Implicit => tls_parameters(settings).map(|_| ()),
        }
    }

    /// Send stored bytes verbatim to the stored envelope.
    pub async fn send_raw(&self, envelope_from: &str, envelope_to: &[String], raw: &[u8]) -> SendOutcome {
        let envelope = match envelope(envelope_from, envelope_to) {
            Ok(envelope) => envelope,
            Err(reason) => return SendOutcome::Permanent { reason },
        };
        match self.transport.send_raw(&envelope, raw).await {
            Ok(response) => SendOutcome::Sent {
                reply: format!("{} {}", response.code(), response.first_line().unwrap_or("").trim()),
            },
            Err(error) => classify(&error),
        }
    }

    /// Close pooled connections (on shutdown).
    pub async fn shutdown(&self) {
        self.transport.shutdown().await;
    }
}

fn tls_parameters(settings: &SmtpSettings) -> Result<TlsParameters, NotifyError> {
    let mut builder = TlsParameters::builder(settings.host.clone());
    if let Some(path) = &settings.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| NotifyError::settings("[smtp] ca_file", format!("could not read {}: {e}", path.display())))?;
        let certificate = Certificate::from_pem(&pem).map_err(|e| {
            NotifyError::settings("[smtp] ca_file", format!("{} is not a PEM certificate: {e}", path.display()))
        })?;
        builder = builder.add_root_certificate(certificate);
    }
    builder.build_rustls().map_err(|e| NotifyError::settings("[smtp] tls", e.to_string()))
}

fn envelope(from: &str, to: &[String]) -> Result<Envelope, String> {
    let from: Address = from.parse().map_err(|_| "stored envelope sender is not an address".to_string())?;
    let to = to
        .iter()
        .map(|a| a.parse::<Address>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "stored envelope recipient is not an address".to_string())?;
    Envelope::new(Some(from), to).map_err(|e| e.to_string())
}

/// Map lettre's error to what we know about the message. A reply code decides when there is one.
/// Without one: if the failure happened while connecting (refused, unreachable, greeting, TLS
/// handshake, STARTTLS missing), nothing was handed over, so it is plainly transient; any other
/// network failure or timeout may have hit the window after the final dot, so it is ambiguous.
fn classify(error: &lettre::transport::smtp::Error) -> SendOutcome {
    let reason = error.to_string();
    if error.is_permanent() {
        return SendOutcome::Permanent { reason };
    }
    if error.is_transient() {
        return SendOutcome::Transient { reason };
    }
    if error.is_tls() || error.is_client() || is_connect_phase(error) || never_connected(error) {
        return SendOutcome::Transient { reason };
    }
    SendOutcome::Ambiguous { reason }
}

/// lettre 0.11 raises its `Connection` kind only while opening a connection (TCP connect, greeting,
/// TLS handshake), before any envelope command; it exposes no predicate for it, only the Display
/// prefix. Client errors (STARTTLS not offered, authentication mismatch) also come before MAIL FROM.
fn is_connect_phase(error: &lettre::transport::smtp::Error) -> bool {
    error.to_string().starts_with("Connection error")
}

fn never_connected(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    let mut source = error.source();
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::AddrNotAvailable
                    | ErrorKind::NotFound
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
            );
        }
        source = inner.source();
    }
    false
}
