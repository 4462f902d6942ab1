//! The clinic dashboard for the supervising physician and the clinic lead: patients by MME band,
//! tapers by state with time on taper, overdue monitoring among today's decisions, open exceptions by
//! age, message delivery and failed jobs; each with a chart and the numbers beside it. For a physician
//! each patient number links to the list behind it (`/patients?band=…`, `?taper=…`, `?overdue=…`; one
//! audit event per list, recording the query).

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::response::Response;
use refill_store::accounts::Role;
use refill_store::screens::{self, MmeBand, OVERDUE_CODES, PatientList, TAPER_STATES};
use serde::Deserialize;

use super::{Chrome, audit_view, render};
use crate::auth::Principal;
use crate::{AppState, WebError, chart};

#[derive(Debug, Clone, serde::Serialize)]
pub struct DashboardView {
    /// (label, count, query of the list behind it).
    pub mme_bands: Vec<(String, i64, String)>,
    /// (state, plans, mean time on taper, query of the list behind it).
    pub tapers: Vec<(String, i64, String, String)>,
    /// (label, count now, query of the list behind it, the trend in words).
    pub overdue: Vec<(String, i64, String, String)>,
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
    let mme_bands: Vec<(String, i64, String)> = MmeBand::ALL
        .iter()
        .map(|band| {
            let band = band.as_str();
            let count = data.mme_bands.iter().find(|(b, _)| b == band).map(|(_, c)| *c).unwrap_or(0);
            (format!("{band} MME"), count, format!("band={}", crate::percent_encode(band)))
        })
        .collect();
    let overdue: Vec<(String, i64, String, String)> = data
        .overdue
        .iter()
        .map(|(code, now, week_ago)| {
            let trend = match week_ago {
                None => "no history a week back yet".to_string(),
                Some(then) if now > then => format!("up from {then} a week ago"),
                Some(then) if now < then => format!("down from {then} a week ago"),
                Some(then) => format!("same as a week ago ({then})"),
            };
            (overdue_label(code).to_string(), *now, format!("overdue={code}"), trend)
        })
        .collect();
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
        mme_chart: chart::bar_chart("Patients by daily MME band", &bars(&mme_bands)),
        overdue_chart: chart::bar_chart(
            "Overdue monitoring across the clinic",
            &overdue.iter().map(|(label, count, _, _)| (label.clone(), *count)).collect::<Vec<_>>(),
        ),
        age_chart: chart::bar_chart("Open exceptions by age", &ages),
        mme_bands,
        tapers: data
            .tapers
            .iter()
            .map(|(s, c, d)| {
                let days = d.map(|d| format!("{d:.0} days")).unwrap_or_else(|| "—".into());
                (s.clone(), *c, days, format!("taper={s}"))
            })
            .collect(),
        overdue,
        exception_ages: ages,
        messages: data.messages.clone(),
        dead_jobs: data.dead_jobs.clone(),
    })
}

/// An overdue-monitoring reason as the dashboard names it.
pub fn overdue_label(code: &str) -> &'static str {
    match code {
        "uds_overdue" => "Drug test overdue",
        "pdmp_review_overdue" => "PDMP review overdue",
        "agreement_expired" => "Agreement expired",
        "agreement_missing" => "No signed agreement",
        "physician_review_overdue" => "Physician review overdue",
        "high_mme_review_overdue" => "High-MME review overdue",
        _ => "Other monitoring overdue",
    }
}

/// The (label, count) pairs a bar chart draws.
fn bars(rows: &[(String, i64, String)]) -> Vec<(String, i64)> {
    rows.iter().map(|(label, count, _)| (label.clone(), *count)).collect()
}

#[derive(Template)]
#[template(path = "web/dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    view: DashboardView,
    /// The viewer may open patient records (a physician; admins see the numbers only).
    links: bool,
}

pub async fn page(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, WebError> {
    let view = load(&state).await?;
    audit_view(&state, &principal, "dashboard.view", "dashboard", None, None, serde_json::json!({})).await?;
    let links = principal.role() == Some(Role::Physician);
    render(&DashboardPage { chrome: Chrome::new(&state, &principal, "/dashboard"), view, links })
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    band: Option<String>,
    #[serde(default)]
    taper: Option<String>,
    #[serde(default)]
    overdue: Option<String>,
    /// A patient search (`/patients?q=…`); `/patients` naming no list is the search form.
    #[serde(default)]
    q: Option<String>,
}

impl ListQuery {
    /// The list asked for, and its title; a value outside the dashboard's own is refused by name.
    fn list(&self) -> Result<(PatientList, String), WebError> {
        if let Some(band) = &self.band {
            let band = MmeBand::parse(band).ok_or_else(|| {
                WebError::BadRequest(format!("band: no MME band {band:?} (<50, 50-89, 90-199, 200+, unknown)"))
            })?;
            return Ok((PatientList::MmeBand(band), format!("Patients at {} MME/day", band.as_str())));
        }
        if let Some(state) = &self.taper {
            let state = TAPER_STATES
                .into_iter()
                .find(|s| s == state)
                .ok_or_else(|| WebError::BadRequest(format!("taper: no taper state {state:?}")))?;
            return Ok((PatientList::TaperState(state), format!("Patients with a {state} taper plan")));
        }
        if let Some(code) = &self.overdue {
            let code = OVERDUE_CODES
                .into_iter()
                .find(|c| c == code)
                .ok_or_else(|| WebError::BadRequest(format!("overdue: no overdue reason {code:?}")))?;
            return Ok((PatientList::Overdue(code), format!("Patients with: {}", overdue_label(code))));
        }
        Err(WebError::BadRequest("name a list: band, taper or overdue".into()))
    }
}

/// The most rows a list shows (the dashboard's numbers are counts; the list is for working through).
const LIST_LIMIT: i64 = 500;

#[derive(Template)]
#[template(path = "web/patients.html")]
struct ListPage {
    chrome: Chrome,
    title: String,
    /// (patient id, name, record number, MME, date).
    rows: Vec<(i64, String, String, String, String)>,
    date_heading: &'static str,
    truncated: bool,
}

/// `GET /patients?band=…|taper=…|overdue=…`: the patients behind a dashboard number (one audit event
/// recording the query, not one per row).
pub async fn patient_list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<ListQuery>,
) -> Result<Response, WebError> {
    if query.band.is_none() && query.taper.is_none() && query.overdue.is_none() {
        return super::search::page(&state, &principal, query.q.as_deref()).await;
    }
    let (list, title) = query.list()?;
    let rows = screens::patient_list(&state.store, state.today(), list, LIST_LIMIT).await?;
    audit_view(
        &state,
        &principal,
        "patients.list.view",
        "patients",
        None,
        None,
        serde_json::json!({ "list": format!("{list:?}"), "rows": rows.len() }),
    )
    .await?;
    let date_heading = match list {
        PatientList::MmeBand(_) => "Last decision",
        PatientList::TaperState(_) => "Plan started",
        PatientList::Overdue(_) => "Last decision",
    };
    let truncated = rows.len() as i64 >= LIST_LIMIT;
    let rows = rows
        .into_iter()
        .map(|row| {
            (
                row.patient_id,
                format!("{}, {}", row.family_name, row.given_name),
                row.mrn.unwrap_or_else(|| "—".into()),
                row.total_daily_mme.map(|m| format!("{m:.0}")).unwrap_or_else(|| "—".into()),
                row.on_date.map(|d| d.to_string()).unwrap_or_else(|| "—".into()),
            )
        })
        .collect();
    render(&ListPage { chrome: Chrome::new(&state, &principal, "/dashboard"), title, rows, date_heading, truncated })
}
