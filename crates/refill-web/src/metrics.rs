//! `/metrics` in the Prometheus text format (version 0.0.4) and `/readyz`.
//!
//! Request latency is measured here, per route of the access table (bounded labels), method and status
//! class, into fixed histogram buckets; everything else is read from the store when scraped: jobs per
//! queue and state with the age of the oldest due job (how far behind the workers are) and the dead
//! ones (failures that gave up), the last hour's finished jobs per kind with their due-to-done
//! latency, the outbox per state, and today's decisions per outcome. Counts only:
//! nothing about a patient. Served to loopback and the configured proxies only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::Extension;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use refill_store::{jobs, outbox, screens};

use crate::AppState;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Observations at or under each bound (cumulative when written out).
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Request latencies since the process started.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    by_label: Mutex<BTreeMap<(String, String, &'static str), Histogram>>,
}

impl HttpMetrics {
    fn observe(&self, route: String, method: String, status: StatusCode, seconds: f64) {
        let class = match status.as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        let Ok(mut map) = self.by_label.lock() else { return };
        let histogram = map.entry((route, method, class)).or_default();
        if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            histogram.counts[bucket] += 1;
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP refill_http_request_duration_seconds Time to answer a request.");
        let _ = writeln!(out, "# TYPE refill_http_request_duration_seconds histogram");
        let Ok(map) = self.by_label.lock() else { return };
        for ((route, method, class), histogram) in map.iter() {
            let labels = format!("route=\"{}\",method=\"{method}\",status=\"{class}\"", escape(route));
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(histogram.counts) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "refill_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "refill_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(out, "refill_http_request_duration_seconds_sum{{{labels}}} {}", histogram.sum);
            let _ = writeln!(out, "refill_http_request_duration_seconds_count{{{labels}}} {}", histogram.count);
        }
    }
}

/// A label value with `\`, `"` and line breaks escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Middleware: time every request (labelled by its route pattern, never the concrete path, which
/// carries patient ids).
pub async fn measure(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    state.http_metrics.observe(route, method, response.status(), started.elapsed().as_secs_f64());
    response
}

/// Whether the peer may read `/metrics`: loopback, a configured proxy, or an in-process caller.
fn may_scrape(state: &AppState, connect: Option<&ConnectInfo<SocketAddr>>) -> bool {
    match connect {
        None => true,
        Some(ConnectInfo(peer)) => peer.ip().is_loopback() || state.settings.trusted_proxies.contains(&peer.ip()),
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>, connect: Option<Extension<ConnectInfo<SocketAddr>>>) -> Response {
    if !may_scrape(&state, connect.as_ref().map(|c| &c.0)) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let mut out = String::new();
    state.http_metrics.write(&mut out);
    let up = match store_metrics(&state, &mut out).await {
        Ok(()) => 1,
        Err(error) => {
            tracing::warn!(%error, "metrics: the database could not be read");
            0
        }
    };
    let _ = writeln!(out, "# HELP refill_database_up Whether the database answered this scrape.");
    let _ = writeln!(out, "# TYPE refill_database_up gauge");
    let _ = writeln!(out, "refill_database_up {up}");
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response()
}

async fn store_metrics(state: &AppState, out: &mut String) -> Result<(), refill_store::StoreError> {
    let store = &state.store;
    let now = state.clock.now();
    let queues = jobs::queue_counts(store).await?;
    let _ = writeln!(out, "# HELP refill_jobs Jobs per queue and state (dead: failed and gave up).");
    let _ = writeln!(out, "# TYPE refill_jobs gauge");
    for count in &queues {
        let _ = writeln!(
            out,
            "refill_jobs{{queue=\"{}\",state=\"{}\"}} {}",
            escape(&count.queue),
            count.state.as_str(),
            count.count
        );
    }
    let _ = writeln!(out, "# HELP refill_jobs_due Available jobs whose time has come, per queue (the queue depth).");
    let _ = writeln!(out, "# TYPE refill_jobs_due gauge");
    let _ = writeln!(out, "# HELP refill_jobs_oldest_due_seconds How long the oldest due job has waited, per queue.");
    let _ = writeln!(out, "# TYPE refill_jobs_oldest_due_seconds gauge");
    for count in queues.iter().filter(|c| c.state == jobs::JobState::Available) {
        let queue = escape(&count.queue);
        let _ = writeln!(out, "refill_jobs_due{{queue=\"{queue}\"}} {}", count.due);
        let waited = count.oldest_due.map(|at| (now - at).num_milliseconds().max(0) as f64 / 1000.0).unwrap_or(0.0);
        let _ = writeln!(out, "refill_jobs_oldest_due_seconds{{queue=\"{queue}\"}} {waited}");
    }
    let finished = jobs::finished_since(store, now - chrono::Duration::hours(1)).await?;
    let _ = writeln!(
        out,
        "# HELP refill_jobs_finished_last_hour Jobs finished in the last hour per kind and state (dead: failed)."
    );
    let _ = writeln!(out, "# TYPE refill_jobs_finished_last_hour gauge");
    for jobs in &finished {
        let _ = writeln!(
            out,
            "refill_jobs_finished_last_hour{{kind=\"{}\",state=\"{}\"}} {}",
            escape(&jobs.kind),
            jobs.state.as_str(),
            jobs.count
        );
    }
    let _ = writeln!(out, "# HELP refill_job_latency_seconds Due to done, jobs completed in the last hour, per kind.");
    let _ = writeln!(out, "# TYPE refill_job_latency_seconds gauge");
    for jobs in finished.iter().filter(|j| j.state == jobs::JobState::Completed) {
        let kind = escape(&jobs.kind);
        let _ = writeln!(out, "refill_job_latency_seconds{{kind=\"{kind}\",stat=\"mean\"}} {}", jobs.mean_seconds);
        let _ = writeln!(out, "refill_job_latency_seconds{{kind=\"{kind}\",stat=\"max\"}} {}", jobs.max_seconds);
    }
    let _ = writeln!(out, "# HELP refill_outbox_emails Emails in the outbox per state.");
    let _ = writeln!(out, "# TYPE refill_outbox_emails gauge");
    for (state, count) in outbox::state_counts(store).await? {
        let _ = writeln!(out, "refill_outbox_emails{{state=\"{}\"}} {count}", state.as_str());
    }
    let _ = writeln!(out, "# HELP refill_decisions_today Decisions for today's clinic date per outcome.");
    let _ = writeln!(out, "# TYPE refill_decisions_today gauge");
    for (outcome, count) in screens::decision_outcome_counts(store, state.today()).await? {
        let _ = writeln!(out, "refill_decisions_today{{outcome=\"{}\"}} {count}", escape(&outcome));
    }
    Ok(())
}

/// `GET /readyz`: 200 when the database answers and every migration this build knows is applied
/// (`/healthz` only says the process is up).
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.migration_status().await {
        Ok(migrations) if migrations.iter().all(|m| m.applied) => (StatusCode::OK, "ready").into_response(),
        Ok(migrations) => {
            let pending = migrations.iter().filter(|m| !m.applied).count();
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {pending} migration(s) pending")).into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "not ready: database unavailable").into_response(),
    }
}
