//! Patient search (`/patients?q=…`, and `/patients` alone for the empty form): staff and physicians find
//! a patient by name, record number or birth date from the box on every page, whether or not the
//! patient is on today's queue. One audit event per search, recording what kind of search it was and
//! how many it found (not the words typed: they may be a name).

use askama::Template;
use axum::response::Response;
use refill_store::search::{PatientQuery, find_patients};

use super::{Chrome, audit_view, render};
use crate::auth::Principal;
use crate::{AppState, WebError, wording};

/// The most patients one search lists (a search narrows; it is not a roster).
pub const SEARCH_LIMIT: i64 = 50;

/// One patient found, as the results table prints it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub patient_id: i64,
    pub name: String,
    pub mrn: String,
    pub birth_date: String,
    /// Today's status on the queue, or "not on today's queue".
    pub today: String,
    pub status_class: &'static str,
    pub run_out_on: String,
    pub inactive: bool,
}

#[derive(Template)]
#[template(path = "web/search.html")]
struct SearchPage {
    chrome: Chrome,
    query: String,
    hits: Vec<Hit>,
    searched: bool,
    truncated: bool,
}

/// `GET /patients?q=…`: the search form and what it found.
pub async fn page(state: &AppState, principal: &Principal, text: Option<&str>) -> Result<Response, WebError> {
    let text = text.unwrap_or("").trim();
    if text.chars().count() > 100 {
        return Err(WebError::BadRequest("q: a search is at most 100 characters".into()));
    }
    let query = PatientQuery::parse(text);
    let found = match &query {
        Some(query) => find_patients(&state.store, state.today(), query, SEARCH_LIMIT + 1).await?,
        None => Vec::new(),
    };
    let truncated = found.len() as i64 > SEARCH_LIMIT;
    let hits: Vec<Hit> = found
        .into_iter()
        .take(SEARCH_LIMIT as usize)
        .map(|hit| {
            let (word, class) = wording::status(hit.outcome.as_deref());
            Hit {
                patient_id: hit.patient_id,
                name: format!("{}, {}", hit.family_name, hit.given_name),
                mrn: hit.mrn.unwrap_or_else(|| "—".into()),
                birth_date: hit.birth_date.map(|d| d.to_string()).unwrap_or_else(|| "unknown".into()),
                today: if hit.outcome.is_some() { word.to_string() } else { "not on today's queue".into() },
                status_class: if hit.outcome.is_some() { class } else { "" },
                run_out_on: hit.run_out_on.map(|d| d.to_string()).unwrap_or_default(),
                inactive: !hit.active,
            }
        })
        .collect();
    if let Some(query) = &query {
        let kind = match query {
            PatientQuery::BirthDate(_) => "birth_date",
            PatientQuery::Words(_) => "words",
        };
        audit_view(
            state,
            principal,
            "patients.search",
            "patients",
            None,
            None,
            serde_json::json!({ "kind": kind, "rows": hits.len() }),
        )
        .await?;
    }
    render(&SearchPage {
        chrome: Chrome::new(state, principal, "/patients"),
        query: text.to_string(),
        searched: query.is_some(),
        truncated,
        hits,
    })
}
