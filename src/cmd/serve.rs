//! `refill serve`: the web screens and JSON API. Plain HTTP on 127.0.0.1 by default; for a network,
//! either HTTPS directly (`--tls-cert` and `--tls-key`, PEM files) or behind a TLS-terminating reverse
//! proxy (see the README); either way `secure_cookies = true` so the session cookie is `__Host-`
//! prefixed and `Secure`. Plain HTTP on a non-loopback address is refused in production.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use crate::config::Config;
use crate::context::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// TCP port.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to bind (default loopback only).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Certificate chain (PEM) for serving HTTPS directly; needs `--tls-key`.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of `--tls-cert`.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
}

/// `[web]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSection {
    /// Mark session cookies `Secure` (`__Host-` prefix). `false` only for plain-HTTP loopback use.
    pub secure_cookies: Option<bool>,
    #[serde(default = "default_idle")]
    pub idle_timeout_minutes: u64,
    #[serde(default = "default_absolute")]
    pub absolute_timeout_hours: u64,
    #[serde(default = "default_break_glass")]
    pub break_glass_minutes: u64,
    #[serde(default = "default_wall")]
    pub wall_session_days: u64,
    #[serde(default = "default_login_account")]
    pub login_failures_per_account_per_minute: i64,
    #[serde(default = "default_login_ip")]
    pub login_failures_per_ip_per_minute: i64,
    #[serde(default = "default_poll")]
    pub live_poll_ms: u64,
    /// Physicians and admins must enrol a TOTP second factor before using anything else.
    #[serde(default)]
    pub require_second_factor: bool,
    /// The header the reverse proxy sets to the client's address (`x-forwarded-for`), believed only
    /// from the addresses in `trusted_proxies`.
    #[serde(default)]
    pub client_address_header: Option<String>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

/// `[cds]` in the configuration: the CDS Hooks service's trust in EHRs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CdsSection {
    /// Require a valid EHR JWT on every CDS Hooks call (on in production).
    #[serde(default)]
    require_jwt: bool,
    /// The service's public base URL; a token's `aud` must be it plus the path called.
    #[serde(default)]
    audience_base: Option<String>,
    #[serde(default = "default_cds_rate")]
    requests_per_minute: u32,
    #[serde(default = "default_cds_fetch")]
    fetch_timeout_ms: u64,
    /// `[[cds.issuers]]`: `iss` and the file of its JWKS (the EHR publishes it; the clinic keeps a copy).
    #[serde(default)]
    issuers: Vec<CdsIssuer>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CdsIssuer {
    iss: String,
    jwks_file: std::path::PathBuf,
}

fn default_cds_rate() -> u32 {
    600
}
fn default_cds_fetch() -> u64 {
    5000
}

/// The CDS Hooks settings, each issuer's JWKS read from its file (errors name the file and key).
fn cds_settings(config: &Config) -> anyhow::Result<refill_web::cds::CdsSettings> {
    let section: CdsSection = config.section("cds")?;
    let mut issuers = Vec::with_capacity(section.issuers.len());
    for (at, issuer) in section.issuers.iter().enumerate() {
        let path = config.resolve_path(&issuer.jwks_file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("[cds] issuers[{at}].jwks_file: reading {}", path.display()))?;
        let keys = refill_web::cds::jwt::parse_jwks(&text)
            .map_err(|why| anyhow::anyhow!("[cds] issuers[{at}].jwks_file {}: {why}", path.display()))?;
        issuers.push(refill_web::cds::jwt::TrustedIssuer { iss: issuer.iss.clone(), keys });
    }
    if let Some(base) = &section.audience_base
        && !base.starts_with("https://")
        && config.is_production()
    {
        anyhow::bail!("[cds] audience_base must be an https URL in production");
    }
    if section.require_jwt && issuers.is_empty() {
        tracing::warn!("[cds] require_jwt is on and no issuer is configured: every CDS Hooks call is refused");
    }
    Ok(refill_web::cds::CdsSettings {
        require_jwt: section.require_jwt,
        issuers,
        audience_base: section.audience_base,
        requests_per_minute: section.requests_per_minute.max(1),
        fetch_timeout: Duration::from_millis(section.fetch_timeout_ms.max(100)),
    })
}

fn default_idle() -> u64 {
    15
}
fn default_absolute() -> u64 {
    12
}
fn default_break_glass() -> u64 {
    60
}
fn default_wall() -> u64 {
    90
}
fn default_login_account() -> i64 {
    5
}
fn default_login_ip() -> i64 {
    30
}
fn default_poll() -> u64 {
    1000
}

#[derive(Debug, Clone, Deserialize)]
struct ClinicSection {
    name: String,
    time_zone: String,
}

/// Web settings from the configuration. `loopback` decides the default of `secure_cookies`: a browser
/// on plain HTTP drops `Secure` cookies, so loopback without TLS needs them off; anything else keeps
/// them on.
pub fn web_settings(config: &Config, loopback: bool) -> anyhow::Result<refill_web::WebSettings> {
    let web: WebSection = config.section("web")?;
    let clinic: ClinicSection = config.section("clinic")?;
    let time_zone: chrono_tz::Tz =
        clinic.time_zone.parse().map_err(|e| anyhow::anyhow!("[clinic] time_zone {:?}: {e}", clinic.time_zone))?;
    let secure_cookies = web.secure_cookies.unwrap_or(!loopback);
    let trusted_proxies = web
        .trusted_proxies
        .iter()
        .map(|address| {
            address
                .trim()
                .parse::<std::net::IpAddr>()
                .map_err(|e| anyhow::anyhow!("[web] trusted_proxies {address:?}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if web.client_address_header.is_some() && trusted_proxies.is_empty() {
        anyhow::bail!("[web] client_address_header needs trusted_proxies: the addresses of the proxies that set it");
    }
    if config.is_production() && !secure_cookies {
        anyhow::bail!("[web] secure_cookies must be true in production");
    }
    Ok(refill_web::WebSettings {
        clinic_name: clinic.name,
        time_zone,
        secure_cookies,
        idle_timeout: Duration::from_secs(web.idle_timeout_minutes * 60),
        absolute_timeout: Duration::from_secs(web.absolute_timeout_hours * 3600),
        wall_session_lifetime: Duration::from_secs(web.wall_session_days * 24 * 3600),
        break_glass_duration: Duration::from_secs(web.break_glass_minutes * 60),
        login_failures_per_account_per_minute: web.login_failures_per_account_per_minute,
        login_failures_per_ip_per_minute: web.login_failures_per_ip_per_minute,
        live_poll_interval: Duration::from_millis(web.live_poll_ms.max(100)),
        queue_page_size: 100,
        require_second_factor: web.require_second_factor,
        client_address_header: web.client_address_header.map(|name| name.trim().to_ascii_lowercase()),
        trusted_proxies,
        cds: cds_settings(config)?,
    })
}

/// Build the web state for an open store (used by `serve` and `demo`).
pub fn app_state(config: &Config, store: refill_store::Store, loopback: bool) -> anyhow::Result<refill_web::AppState> {
    let settings = web_settings(config, loopback)?;
    let policy = crate::policy_file::load_policy(config)?;
    Ok(refill_web::AppState::new(store, settings, policy.policy, policy.version))
}

/// Serve `state` on `bind:port` until ctrl-c or SIGTERM.
pub async fn serve_until_signal(state: refill_web::AppState, bind: &str, port: u16) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((bind, port))
        .await
        .with_context(|| format!("could not listen on {bind}:{port}"))?;
    let address = listener.local_addr()?;
    println!("Refill Clinic is serving on http://{address}/ (ctrl-c to stop)");
    refill_web::serve(listener, state, shutdown_signal()).await.context("the web server failed")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

pub async fn run(args: Args, context: &Context) -> anyhow::Result<ExitCode> {
    let config = context.config()?;
    let loopback = args.bind.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(args.bind == "localhost");
    // Read the certificate before opening anything, so a bad file is reported first and alone.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(refill_web::tls::server_config(cert, key)?),
        _ => None,
    };
    if tls.is_none() && !loopback && config.is_production() {
        anyhow::bail!(
            "--bind {}: plain HTTP beyond loopback is refused in production; give --tls-cert and --tls-key, or \
             bind 127.0.0.1 behind a TLS-terminating reverse proxy",
            args.bind
        );
    }
    let store = context.open_store(&config).await?;
    // HTTPS: cookies are Secure whatever the address (the browser keeps them over https://).
    let state = app_state(&config, store, loopback && tls.is_none())?;
    match tls {
        Some(tls) => serve_tls_until_signal(state, &args.bind, args.port, tls).await?,
        None => serve_until_signal(state, &args.bind, args.port).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Serve `state` over HTTPS on `bind:port` until ctrl-c or SIGTERM.
pub async fn serve_tls_until_signal(
    state: refill_web::AppState,
    bind: &str,
    port: u16,
    tls: std::sync::Arc<refill_web::tls::ServerConfig>,
) -> anyhow::Result<()> {
    let tcp = tokio::net::TcpListener::bind((bind, port))
        .await
        .with_context(|| format!("could not listen on {bind}:{port}"))?;
    let listener = refill_web::tls::TlsListener::new(tcp, tls)?;
    let address = listener.local_address();
    println!("Refill Clinic is serving on https://{address}/ (ctrl-c to stop)");
    refill_web::serve_tls(listener, state, shutdown_signal()).await.context("the web server failed")?;
    Ok(())
}
