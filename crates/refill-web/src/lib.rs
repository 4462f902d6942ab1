//! The web screens and JSON API (axum + askama): the staff queue, physician exception review, patient
//! pages, dashboard and sign-in. It writes rows and enqueues jobs; it never sends email.
//!
//! `app(state)` builds the router; `serve(listener, state, shutdown)` runs it. Every route is listed
//! once in `access::ROUTES` with the roles that may use it, and one middleware enforces that table, so
//! a route cannot be added without deciding who may call it (the router test walks the table with every
//! role). Sessions, CSRF tokens, sign-in attempts and break-glass grants live in the store
//! (`refill_store::accounts`).

pub mod access;
mod api;
pub mod auth;
pub mod cds;
mod chart;
mod error;
pub mod input;
pub mod live;
pub mod metrics;
pub mod pages;
pub mod part2;
mod queue_cache;
mod security;
pub mod tls;
pub mod totp;
mod view_audit;
mod wording;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDate, Utc};
use refill_store::Store;

pub use error::WebError;

/// How the screens behave; assembled by the binary from `[web]` configuration.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// The clinic's display name (page titles).
    pub clinic_name: String,
    /// Clinical dates are calendar dates in this zone.
    pub time_zone: chrono_tz::Tz,
    /// Mark cookies `Secure` and use the `__Host-` prefix. Off only for plain-HTTP loopback development.
    pub secure_cookies: bool,
    /// Sign a person out after this long without activity (HIPAA automatic logoff).
    pub idle_timeout: Duration,
    /// End a person's session this long after sign-in, active or not.
    pub absolute_timeout: Duration,
    /// How long a wall display's session lasts once enrolled (exempt from the idle sign-out).
    pub wall_session_lifetime: Duration,
    /// How long a break-the-glass grant to one patient's Part 2 records lasts.
    pub break_glass_duration: Duration,
    /// Failed sign-ins allowed per minute for one username from one address, and from one address.
    pub login_failures_per_account_per_minute: i64,
    pub login_failures_per_ip_per_minute: i64,
    /// How often each server polls the store's change counter for changes made by other processes.
    pub live_poll_interval: Duration,
    /// Rows on one queue page.
    pub queue_page_size: i64,
    /// Physicians and admins must enrol a second factor: until they do, every route but the enrolment
    /// page and sign-out sends them there, and they cannot remove the one they have.
    pub require_second_factor: bool,
    /// The header a reverse proxy sets to the client's address (`x-forwarded-for`, `x-real-ip`),
    /// believed only on requests whose peer is one of `trusted_proxies`. Without it every request
    /// behind a proxy shares the proxy's address for the sign-in budget and the audit trail.
    pub client_address_header: Option<String>,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The CDS Hooks service: JWT verification of EHR calls, rate, FHIR fetch timeout.
    pub cds: cds::CdsSettings,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            clinic_name: "Refill Clinic".into(),
            time_zone: chrono_tz::America::New_York,
            secure_cookies: true,
            idle_timeout: Duration::from_secs(15 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            wall_session_lifetime: Duration::from_secs(90 * 24 * 3600),
            break_glass_duration: Duration::from_secs(60 * 60),
            login_failures_per_account_per_minute: 5,
            login_failures_per_ip_per_minute: 30,
            live_poll_interval: Duration::from_millis(1000),
            queue_page_size: 100,
            require_second_factor: false,
            client_address_header: None,
            trusted_proxies: Vec::new(),
            cds: cds::CdsSettings::default(),
        }
    }
}

/// Percent-encode `text` for a URL component (RFC 3986 unreserved characters kept).
pub(crate) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Where "now" comes from: the system clock in production, a settable one in tests (idle sign-out,
/// break-glass expiry).
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    pub fn system() -> Clock {
        Clock(Arc::new(Utc::now))
    }

    pub fn from_fn(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }

    pub fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub settings: Arc<WebSettings>,
    pub policy: Arc<refill_rules::policy::Policy>,
    /// The policy version recorded with every decision.
    pub policy_version: String,
    pub clock: Clock,
    pub live: live::LiveFeed,
    /// Group-committed audit of views.
    pub view_audit: view_audit::ViewAudit,
    /// Today's tallies and each filter's first page, shared by every screen until something changes.
    pub queue_cache: Arc<queue_cache::QueueCache>,
    /// Request latencies for `/metrics`.
    pub http_metrics: Arc<metrics::HttpMetrics>,
    /// CDS Hooks: token ids seen and the per-client rate.
    pub cds: Arc<cds::CdsRuntime>,
}

impl AppState {
    /// Build the state. Call inside a tokio runtime: it starts the view-audit writer task.
    pub fn new(
        store: Store,
        settings: WebSettings,
        policy: refill_rules::policy::Policy,
        policy_version: String,
    ) -> AppState {
        AppState {
            view_audit: view_audit::ViewAudit::start(store.clone()),
            store,
            settings: Arc::new(settings),
            policy: Arc::new(policy),
            policy_version,
            clock: Clock::system(),
            live: live::LiveFeed::new(),
            queue_cache: Arc::default(),
            http_metrics: Arc::default(),
            cds: Arc::default(),
        }
    }

    pub fn with_clock(mut self, clock: Clock) -> AppState {
        self.clock = clock;
        self
    }

    /// The use cases over this state's store and policy (cheap: shared pools and policy).
    pub fn app(&self) -> refill_app::App {
        refill_app::App::new(self.store.clone(), self.policy.clone(), self.policy_version.clone())
    }

    /// Today's clinic-local date.
    pub fn today(&self) -> NaiveDate {
        self.clock.now().with_timezone(&self.settings.time_zone).date_naive()
    }
}

/// The whole router: pages, JSON API, live updates and static assets, behind the access table, CSRF
/// checks, sessions and security headers.
pub fn app(state: AppState) -> Router {
    use pages::{account, admin, dashboard, enrolment, exceptions, login, patient, queue, taper};
    let routes = Router::new()
        .route("/", get(pages::home))
        .route("/healthz", get(pages::healthz))
        .route("/readyz", get(metrics::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/static/app.css", get(pages::stylesheet))
        .route("/static/app.js", get(pages::script))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/wall/enter", get(login::enter_wall))
        .route("/queue", get(queue::page))
        .route("/queue/{patient_id}/panel", get(queue::panel))
        .route("/queue/{patient_id}/action", post(queue::action))
        .route("/queue/close", post(queue::close_panel))
        .route("/exceptions", get(exceptions::list))
        .route("/exceptions/{exception_id}", get(exceptions::detail))
        .route("/exceptions/{exception_id}/decide", post(exceptions::decide))
        .route("/exceptions/{exception_id}/taper/preview", post(taper::preview))
        .route("/exceptions/{exception_id}/taper/sign", post(taper::sign))
        .route("/patients", get(dashboard::patient_list))
        .route("/patients/{patient_id}", get(patient::page))
        .route("/patients/not-enrolled", get(enrolment::list))
        .route("/patients/{patient_id}/enrol", post(enrolment::enrol))
        .route("/patients/{patient_id}/dismiss", post(enrolment::dismiss))
        .route("/patients/{patient_id}/break-glass", post(patient::break_glass))
        .route("/patients/{patient_id}/taper/check-in", post(taper::check_in_form))
        .route("/patients/{patient_id}/taper/care", post(taper::care_form))
        .route("/dashboard", get(dashboard::page))
        .route("/admin", get(admin::page))
        .route("/admin/users", post(admin::create_user))
        .route("/admin/wall-codes", post(admin::issue_wall_code))
        .route("/admin/wall-sessions/{handle}/revoke", post(admin::revoke_wall_session))
        .route("/admin/users/{user_id}/second-factor/reset", post(account::admin_reset))
        .route("/admin/users/{user_id}", post(admin::change_account))
        .route("/account/second-factor", get(account::page).post(account::enrol))
        .route("/account/second-factor/remove", post(account::remove))
        .route("/events", get(live::events))
        .route("/api/session", get(api::session))
        .route("/api/queue", get(api::queue))
        .route("/api/queue/{patient_id}", get(api::queue_item))
        .route("/api/queue/{patient_id}/action", post(api::queue_action))
        .route("/api/exceptions", get(api::exceptions))
        .route("/api/exceptions/{exception_id}", get(api::exception))
        .route("/api/exceptions/{exception_id}/decide", post(api::decide))
        .route("/api/patients/{patient_id}", get(api::patient))
        .route("/api/patients/{patient_id}/break-glass", post(api::break_glass))
        .route("/api/patients/{patient_id}/taper", get(taper::api_care))
        .route("/api/patients/{patient_id}/taper/check-ins", post(taper::api_check_in))
        .route("/api/patients/{patient_id}/taper/care", post(taper::api_care_record))
        .route("/api/dashboard", get(api::dashboard))
        .route("/api/changes", get(api::changes))
        .route("/cds-services", get(cds::discovery))
        .route("/cds-services/{service_id}", post(cds::call))
        .route("/cds-services/{service_id}/feedback", post(cds::feedback));
    routes
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), access::enforce))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::load_principal))
        .layer(axum::middleware::from_fn(security::headers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::measure))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(256 * 1024))
        .with_state(state)
}

/// Serve until `shutdown` resolves. Starts the poller that turns changes made by other processes into
/// live updates.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let poller = tokio::spawn(live::poll_changes(state.clone()));
    let router = app(state);
    let result = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await;
    poller.abort();
    result
}

/// `serve` over HTTPS: connections come from a [`tls::TlsListener`] once their handshake is done.
pub async fn serve_tls(
    listener: tls::TlsListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    let poller = tokio::spawn(live::poll_changes(state.clone()));
    let router = app(state);
    // `tap_io` (a no-op here) is what gives any listener the peer-address connect info.
    let listener = listener.tap_io(|_: &mut tokio_rustls::server::TlsStream<tokio::net::TcpStream>| {});
    let result = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await;
    poller.abort();
    result
}
