//! SMTP delivery over connections we open ourselves and hand to lettre's public
//! `AsyncSmtpConnection::connect_with_transport`, kept in a small pool of our own. A send returns a
//! [`SendOutcome`] value that says what we know about the message afterwards; the caller records it.
//!
//! Why not lettre's pooled transport: lettre 0.11.23 never sets `TCP_NODELAY`, and it writes a
//! message's body and its final `\r\n.\r\n` as two writes before reading the reply, so Nagle's
//! algorithm holds the terminator until the relay's delayed ACK (40 ms on Linux): 22 messages/s per
//! connection. Our socket has Nagle off. STARTTLS goes through the connection's own `starttls`
//! (lettre's rustls upgrade of our stream); implicit TLS (SMTPS) wraps our socket in tokio-rustls
//! before the greeting, with the public web roots plus `[smtp] ca_file`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lettre::Address;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::rustls;

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

/// The SMTP client with its pool. Cheap to clone (the pool is shared). At most `[smtp] pool_size`
/// sends run at once, each on its own connection; a connection that served a send without failure
/// goes back to the pool, any other is dropped.
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Pool>,
}

struct Pool {
    relay: Relay,
    idle: Mutex<Vec<Parked>>,
    permits: Semaphore,
    idle_timeout: Duration,
}

/// How to reach and greet the relay.
struct Relay {
    host: String,
    port: u16,
    timeout: Duration,
    hello: ClientId,
    credentials: Option<Credentials>,
    tls: Protection,
}

enum Protection {
    None,
    Starttls(TlsParameters),
    Implicit { config: Arc<rustls::ClientConfig>, server_name: rustls::pki_types::ServerName<'static> },
}

struct Parked {
    connection: AsyncSmtpConnection,
    since: Instant,
}

/// A pooled connection idle longer than this is checked with NOOP before it carries a message, so a
/// relay that closed it in the meantime costs a reconnect, not an ambiguous send.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mailer")
    }
}

/// Why a send failed: while opening the connection (nothing was handed over) or on an open one.
enum Failure {
    Opening(String, Option<lettre::transport::smtp::Error>),
    Sending(lettre::transport::smtp::Error),
    SendTimedOut,
}

impl Mailer {
    /// Build the mailer. Does not connect: connections open on first use.
    ///
    /// # Errors
    /// `Settings` naming the key when the CA file cannot be read or TLS parameters are invalid.
    pub fn new(settings: &SmtpSettings) -> Result<Mailer, NotifyError> {
        let tls = match settings.tls {
            TlsMode::None => Protection::None,
            TlsMode::Starttls => Protection::Starttls(tls_parameters(settings)?),
            TlsMode::Implicit => implicit_tls(settings)?,
        };
        let hello = match &settings.hello_name {
            Some(name) => ClientId::Domain(name.clone()),
            None => ClientId::default(),
        };
        let credentials = match (&settings.username, &settings.password) {
            (Some(username), Some(password)) => Some(Credentials::new(username.clone(), password.clone())),
            _ => None,
        };
        let size = settings.pool_size.max(1) as usize;
        Ok(Mailer {
            inner: Arc::new(Pool {
                relay: Relay {
                    host: settings.host.clone(),
                    port: settings.port(),
                    timeout: settings.timeout(),
                    hello,
                    credentials,
                    tls,
                },
                idle: Mutex::new(Vec::with_capacity(size)),
                permits: Semaphore::new(size),
                idle_timeout: Duration::from_secs(settings.pool_idle_secs),
            }),
        })
    }

    /// Check that the TLS settings can be built (CA file readable and valid) without connecting.
    ///
    /// # Errors
    /// `Settings` naming `[smtp] ca_file` or `[smtp] tls`.
    pub fn check_tls(settings: &SmtpSettings) -> Result<(), NotifyError> {
        match settings.tls {
            TlsMode::None => Ok(()),
            TlsMode::Starttls => tls_parameters(settings).map(|_| ()),
            TlsMode::Implicit => implicit_tls(settings).map(|_| ()),
        }
    }

    /// Send stored bytes verbatim to the stored envelope.
    pub async fn send_raw(&self, envelope_from: &str, envelope_to: &[String], raw: &[u8]) -> SendOutcome {
        let envelope = match envelope(envelope_from, envelope_to) {
            Ok(envelope) => envelope,
            Err(reason) => return SendOutcome::Permanent { reason },
        };
        let Ok(_permit) = self.inner.permits.acquire().await else {
            return SendOutcome::Transient { reason: "the mailer is shut down".into() };
        };
        let mut connection = match self.inner.checkout().await {
            Ok(connection) => connection,
            Err(failure) => return classify(failure),
        };
        let pool = &self.inner;
        match tokio::time::timeout(pool.relay.timeout, connection.send(&envelope, raw)).await {
            Ok(Ok(response)) => {
                pool.park(connection);
                SendOutcome::Sent {
                    reply: format!("{} {}", response.code(), response.first_line().unwrap_or("").trim()),
                }
            }
            Ok(Err(error)) => {
                // A refused message (4xx/5xx reply) leaves the connection usable after RSET; any
                // other failure leaves it in an unknown state.
                if !connection.has_broken() && (error.is_transient() || error.is_permanent()) {
                    if let Ok(Ok(_)) = tokio::time::timeout(
                        pool.relay.timeout,
                        connection.command(lettre::transport::smtp::commands::Rset),
                    )
                    .await
                    {
                        pool.park(connection);
                    }
                } else {
                    connection.abort().await;
                }
                classify(Failure::Sending(error))
            }
            Err(_) => classify(Failure::SendTimedOut),
        }
    }

    /// Close pooled connections (on shutdown); later sends fail as transient.
    pub async fn shutdown(&self) {
        self.inner.permits.close();
        let parked: Vec<Parked> = std::mem::take(&mut *self.inner.idle.lock().unwrap_or_else(|p| p.into_inner()));
        for mut parked in parked {
            let _ = tokio::time::timeout(Duration::from_secs(1), parked.connection.quit()).await;
        }
    }
}

impl Pool {
    /// A live connection: the most recently parked one that is still fresh, else a new one.
    async fn checkout(&self) -> Result<AsyncSmtpConnection, Failure> {
        loop {
            let parked = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some(Parked { mut connection, since }) = parked else { break };
            let idle = since.elapsed();
            if idle > self.idle_timeout {
                connection.abort().await;
                continue;
            }
            if idle <= CHECK_AFTER_IDLE
                || matches!(tokio::time::timeout(self.relay.timeout, connection.test_connected()).await, Ok(true))
            {
                return Ok(connection);
            }
            connection.abort().await;
        }
        match tokio::time::timeout(self.relay.timeout, self.relay.open()).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Opening("timed out opening the connection to the relay".into(), None)),
        }
    }

    fn park(&self, connection: AsyncSmtpConnection) {
        if connection.has_broken() {
            return;
        }
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(Parked { connection, since: Instant::now() });
    }
}

impl Relay {
    /// TCP with Nagle off, then TLS as configured, greeting and EHLO, then authentication.
    async fn open(&self) -> Result<AsyncSmtpConnection, Failure> {
        let opening = |what: &str, error: &dyn std::fmt::Display| {
            Failure::Opening(format!("Connection error: {what}: {error}"), None)
        };
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await.map_err(|e| opening("connect", &e))?;
        tcp.set_nodelay(true).map_err(|e| opening("TCP_NODELAY", &e))?;
        let stream: Box<dyn AsyncTokioStream> = match &self.tls {
            Protection::Implicit { config, server_name } => {
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
                let tls =
                    connector.connect(server_name.clone(), tcp).await.map_err(|e| opening("TLS handshake", &e))?;
                Box::new(ImplicitTls(tls))
            }
            Protection::None | Protection::Starttls(_) => Box::new(tcp),
        };
        let lettre_failure = |error: lettre::transport::smtp::Error| Failure::Opening(error.to_string(), Some(error));
        let mut connection =
            AsyncSmtpConnection::connect_with_transport(stream, &self.hello).await.map_err(lettre_failure)?;
        if let Protection::Starttls(parameters) = &self.tls {
            connection.starttls(parameters.clone(), &self.hello).await.map_err(lettre_failure)?;
        }
        if let Some(credentials) = &self.credentials {
            connection.auth(&[Mechanism::Plain, Mechanism::Login], credentials).await.map_err(lettre_failure)?;
        }
        Ok(connection)
    }
}

/// A TLS-from-the-first-byte stream handed to lettre as its "plain" transport.
struct ImplicitTls(tokio_rustls::client::TlsStream<TcpStream>);

impl std::fmt::Debug for ImplicitTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImplicitTls")
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl tokio::io::AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The rustls client of implicit TLS: the public web roots (as lettre's own rustls build uses) and
/// the configured CA, with the ring provider the workspace already builds.
fn implicit_tls(settings: &SmtpSettings) -> Result<Protection, NotifyError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &settings.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| NotifyError::settings("[smtp] ca_file", format!("could not read {}: {e}", path.display())))?;
        let mut added = 0;
        for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            let certificate = certificate.map_err(|e| {
                NotifyError::settings("[smtp] ca_file", format!("{} is not a PEM certificate: {e}", path.display()))
            })?;
            roots.add(certificate).map_err(|e| NotifyError::settings("[smtp] ca_file", e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(NotifyError::settings("[smtp] ca_file", format!("{} holds no certificate", path.display())));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| NotifyError::settings("[smtp] tls", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = rustls::pki_types::ServerName::try_from(settings.host.clone())
        .map_err(|e| NotifyError::settings("[smtp] host", e.to_string()))?;
    Ok(Protection::Implicit { config: Arc::new(config), server_name })
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

/// Map a failure to what we know about the message. While opening, nothing was handed over: a
/// refusing reply (5xx: authentication, STARTTLS) is permanent, anything else transient. On an open
/// connection a reply code decides when there is one; a network failure or timeout may have hit the
/// window after the final dot, so it is ambiguous, unless lettre refused before writing (client).
fn classify(failure: Failure) -> SendOutcome {
    match failure {
        Failure::Opening(reason, error) => match error {
            Some(error) if error.is_permanent() => SendOutcome::Permanent { reason },
            _ => SendOutcome::Transient { reason },
        },
        Failure::SendTimedOut => SendOutcome::Ambiguous { reason: "timed out waiting for the relay".into() },
        Failure::Sending(error) => {
            let reason = error.to_string();
            if error.is_permanent() {
                SendOutcome::Permanent { reason }
            } else if error.is_transient() || error.is_client() {
                SendOutcome::Transient { reason }
            } else {
                SendOutcome::Ambiguous { reason }
            }
        }
    }
}
