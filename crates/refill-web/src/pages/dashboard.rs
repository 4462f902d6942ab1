//! The clinic dashboard for the supervising physician and the clinic lead: patients by MME band,
//! tapers by state with time on taper, overdue monitoring among today's decisions, open exceptions by
//! age, message delivery and failed jobs; each with a chart and the numbers beside it.

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use refill_store::screens;

use super::{Chrome, audit_view, render};
use crate::auth::Principal;
use crate::{AppState, WebError, chart};

#[derive(Debug, Clone, serde::Serialize)]
pub struct DashboardView {
    pub mme_bands: Vec<(String, i64)>,
    pub tapers: Vec<(String, i64, String)>,
    pub overdue: Vec<(String, i64)>,
    pub exception_ages: Vec<(String, i64)>,
    pub messages: Vec<(String, i64)>,
    pub dead_jobs: Vec<(String, i64)>,
    pub mme_chart: String,
    pub overdue_chart: String,
    pub age_chart: String,
}

pub async fn load(state: &AppState) -> Result<DashboardView, WebError> {
    let today = state.today();
    let data = screens::dashboard(&state.store, today).await?;
    let order = ["<50", "50-89", "90-199", "200+", "unknown"];
    let mme_bands: Vec<(String, i64)> = order
        .iter()
        .map(|band| {
            (format!("{band} MME"), data.mme_bands.iter().find(|(b, _)| b == band).map(|(_, c)| *c).unwrap_or(0))
        })
        .collect();
    let overdue: Vec<(String, i64)> =
        data.overdue.iter().map(|(code, count)| (code.replace('_', " "), *count)).collect();
    let mut ages = vec![
        ("0–1 days".to_string(), 0),
        ("2–3 days".to_string(), 0),
        ("4–7 days".to_string(), 0),
        ("over 7 days".to_string(), 0),
    ];
    for (date, _) in &data.open_exception_dates {
        let age = (today - *date).num_days();
        let slot = match age {
            ..=1 => 0,
            2..=3 => 1,
            4..=7 => 2,
            _ => 3,
        };
        ages[slot].1 += 1;
    }
    Ok(DashboardView {
        mme_chart: chart::bar_chart("Patients by daily MME band", &mme_bands),
        overdue_chart: chart::bar_chart("Overdue monitoring among today's queue", &overdue),
        age_chart: chart::bar_chart("Open exceptions by age", &ages),
        mme_bands,
        tapers: data
            .tapers
            .iter()
            .map(|(s, c, d)| (s.clone(), *c, d.map(|d| format!("{d:.0} days")).unwrap_or_else(|| "—".into())))
            .collect(),
        overdue,
        exception_ages: ages,
        messages: data.messages.clone(),
        dead_jobs: data.dead_jobs.clone(),
    })
}

#[derive(Template)]
#[template(path = "web/dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    view: DashboardView,
}

pub async fn page(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, WebError> {
    let view = load(&state).await?;
    audit_view(&state, &principal, "dashboard.view", "dashboard", None, None, serde_json::json!({})).await?;
    render(&DashboardPage { chrome: Chrome::new(&state, &principal, "/dashboard"), view })
}
