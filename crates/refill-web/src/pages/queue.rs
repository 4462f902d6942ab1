//! The staff queue (`/queue`): today's rows with the tallies as filters, the side panel with the facts
//! and the actions that apply, and the actions themselves. Every action claims the row under its
//! optimistic version (the loser of two staff acting at once is told who won), records the fact, runs
//! the rules again and records the new decision, so the row updates in place on every screen.

use std::sync::Arc;

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::NaiveDate;
use refill_app::AppError;
use refill_app::physician;
use refill_app::staff::{self, StaffAction, StaffContext};
use refill_rules::{
    AgreementFacts, DrugClass, Fill, NaloxoneEvent, NaloxoneEventKind, PatientId, PdmpFinding, PdmpReview,
    PrescriberId, RequestKind, SpecimenValidity, UdsAnalyteResult, UdsKind, UdsResult,
};
use refill_store::accounts::{self, Role};
use refill_store::cycle::NewRefillRequest;
use refill_store::screens::{self, QueueFilter, QueueRow, RegimenLine};
use refill_store::{QueueItemId, StaffFact, Tx};
use serde::Deserialize;

use super::{Chrome, actor, audit_view, days_until, form_number, render};
use crate::auth::Principal;
use crate::queue_cache::Freshness;
use crate::{AppState, WebError, wording};

/// A queue row as the screen prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RowView {
    pub patient_id: i64,
    pub queue_id: i64,
    pub version: i64,
    pub name: String,
    pub initials: String,
    pub mrn: String,
    pub short_mrn: String,
    pub run_out_on: String,
    pub days_left: String,
    pub runs_out_soon: bool,
    pub status_word: &'static str,
    pub status_class: &'static str,
    pub outcome: Option<String>,
    pub reasons: Vec<wording::ReasonLine>,
    /// The row's one line: the standing physician decision or the refill's window when there is one,
    /// then the reasons' headlines (each with its evidence is in the side panel).
    pub why: String,
    pub due: Vec<&'static str>,
    pub regimen: String,
    pub mme: String,
    pub working: String,
    pub done: bool,
    /// Where the refill is in its cycle ("not due until ...", "prepared ...").
    pub window: String,
    /// The physician decision that stands for this cycle, in words (empty when none).
    pub standing: String,
}

/// Names for actor ids (`user:17` -> "Dana Whitfield"), loaded once per page.
pub async fn actor_names(state: &AppState) -> Result<std::collections::HashMap<String, String>, WebError> {
    let users = accounts::list_users(&state.store).await?;
    Ok(users.into_iter().map(|u| (crate::auth::actor_id(u.id), u.display_name)).collect())
}

pub fn actor_name(names: &std::collections::HashMap<String, String>, actor: &str) -> String {
    names.get(actor).cloned().unwrap_or_else(|| if actor == "system" { "the daily run".into() } else { actor.into() })
}

/// Replace actor ids in a store message with names.
pub fn name_actors(names: &std::collections::HashMap<String, String>, message: &str) -> String {
    let mut text = message.to_string();
    for (id, name) in names {
        text = text.replace(id.as_str(), name);
    }
    text
}

/// A number with at most two decimals and no trailing zeros ("0.33", "2", "1.5").
pub(crate) fn short_number(value: f64) -> String {
    if let Some(text) = whole_number(value) {
        return text;
    }
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A whole number as text through the integer formatter (the text `{:.0}` would print, far cheaper:
/// doses and MME are mostly whole and a queue page prints hundreds); `None` otherwise.
fn whole_number(value: f64) -> Option<String> {
    let whole = value.fract() == 0.0 && value.abs() < 1e15 && !(value == 0.0 && value.is_sign_negative());
    whole.then(|| (value as i64).to_string())
}

pub fn regimen_text(lines: &[&RegimenLine], access: impl Into<crate::part2::Part2Access>) -> String {
    let access = access.into();
    let parts: Vec<String> = lines
        .iter()
        .map(|line| {
            if access.hides(line.confidentiality == "part2") {
                wording::RESTRICTED.to_string()
            } else {
                let name =
                    line.text.clone().or_else(|| line.rxcui.clone().map(|c| format!("RxNorm {c}"))).unwrap_or_default();
                match (line.dose_value, line.dose_unit.as_deref(), line.doses_per_day) {
                    (Some(dose), Some(unit), Some(per_day)) => {
                        format!("{name} — {} {unit} × {}/day", short_number(dose), short_number(per_day))
                    }
                    _ => name,
                }
            }
        })
        .collect();
    if parts.is_empty() { "no active order".into() } else { parts.join("; ") }
}

pub fn row_view(
    row: &QueueRow,
    today: NaiveDate,
    regimen: &[RegimenLine],
    names: &std::collections::HashMap<String, String>,
    presence: &[accounts::RowPresence],
) -> RowView {
    let (status_word, status_class) = wording::status(row.outcome.as_deref());
    let days = days_until(today, row.run_out_on);
    let lines: Vec<&RegimenLine> = regimen.iter().filter(|l| l.patient_id == row.patient_id).collect();
    let mut working: Vec<String> =
        presence.iter().filter(|p| p.patient_id == row.patient_id).map(|p| p.display_name.clone()).collect();
    if row.status == "in_progress"
        && let Some(owner) = row.assigned_to.as_deref()
    {
        let name = actor_name(names, owner);
        if !working.contains(&name) {
            working.push(name);
        }
    }
    // The queue never shows Part 2 facts: restricted reasons are masked for everyone here.
    let reasons = wording::reasons(row.reasons.as_deref(), crate::part2::Part2Access::Masked);
    let window = wording::window(row.refill_window.as_deref(), row.eligible_on);
    RowView {
        why: why_line(&window, "", &reasons),
        patient_id: row.patient_id,
        queue_id: row.queue_id,
        version: row.version,
        name: format!("{}, {}", row.family_name, row.given_name),
        initials: wording::initials(&row.given_name, &row.family_name),
        mrn: row.mrn.clone().unwrap_or_else(|| "—".into()),
        short_mrn: wording::short_mrn(row.mrn.as_deref()),
        run_out_on: row.run_out_on.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_else(|| "unknown".into()),
        days_left: wording::days_left(days),
        runs_out_soon: days.is_some_and(|d| d <= 1),
        status_word,
        status_class,
        outcome: row.outcome.clone(),
        reasons,
        due: wording::due(row.tasks.as_deref(), row.reasons.as_deref(), crate::part2::Part2Access::Masked),
        regimen: regimen_text(&lines, crate::part2::Part2Access::Masked),
        mme: row
            .total_daily_mme
            .map(|m| whole_number(m).unwrap_or_else(|| format!("{m:.0}")))
            .unwrap_or_else(|| "—".into()),
        working: working.join(", "),
        done: row.status == "done",
        window,
        standing: String::new(),
    }
}

/// A row's one line of "why": the physician's standing decision first (what the desk does next), the
/// reasons' headlines, then where the refill is in its cycle.
fn why_line(window: &str, standing: &str, reasons: &[wording::ReasonLine]) -> String {
    let reasons = wording::one_line(reasons);
    let parts: Vec<&str> = [standing, reasons.as_str(), window].into_iter().filter(|p| !p.is_empty()).collect();
    if parts.is_empty() { "Nothing outstanding".to_string() } else { parts.join(" · ") }
}

/// Put the standing physician decision of each row that has one into its view, in words (the queue
/// masks the rationale of a Part 2 record like the facts it may quote).
pub(crate) async fn fill_standing(state: &AppState, rows: &[QueueRow], views: &mut [RowView]) -> Result<(), WebError> {
    if rows.iter().all(|row| row.physician_decision_id.is_none()) {
        return Ok(());
    }
    let names = actor_names(state).await?;
    let ids: Vec<i64> = rows.iter().filter_map(|row| row.physician_decision_id).collect();
    let decisions = state.store.physician_decisions(&ids).await?;
    for (row, view) in rows.iter().zip(views.iter_mut()) {
        if let Some(decision) = decisions.iter().find(|d| Some(d.id) == row.physician_decision_id) {
            view.standing = wording::standing_decision(decision, &actor_name(&names, &decision.signed_by), !row.part2);
            view.why = why_line(&view.window, &format!("Physician: {}", view.standing), &view.reasons);
        }
    }
    Ok(())
}

#[derive(Deserialize, Default)]
pub struct QueueParams {
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub page: Option<i64>,
    #[serde(default)]
    pub display: Option<String>,
    /// `rows`: only the table body and tallies (live refresh).
    #[serde(default)]
    pub partial: Option<String>,
}

/// The deepest queue page anyone may ask for: far beyond any clinic's queue, and small enough that the
/// row offset (`page * page size`) cannot overflow.
pub const MAX_QUEUE_PAGE: i64 = 100_000;

impl QueueParams {
    /// The page asked for (0 when none), or the problem with it in words naming the parameter.
    pub fn page_number(&self) -> Result<i64, WebError> {
        match self.page {
            None => Ok(0),
            Some(page) if (0..=MAX_QUEUE_PAGE).contains(&page) => Ok(page),
            Some(page) => {
                Err(WebError::BadRequest(format!("page: {page} is not a page number from 0 to {MAX_QUEUE_PAGE}")))
            }
        }
    }
}

#[derive(Template)]
#[template(path = "web/queue.html")]
struct QueuePage<'a> {
    chrome: Chrome,
    today: String,
    tallies: Vec<(&'static str, &'static str, i64, bool)>,
    rows: &'a [RowView],
    filter: &'static str,
    page: i64,
    page_size: i64,
    has_next: bool,
}

#[derive(Template)]
#[template(path = "web/queue_rows.html")]
struct QueueRows<'a> {
    tallies: Vec<(&'static str, &'static str, i64, bool)>,
    rows: &'a [RowView],
}

#[derive(Template)]
#[template(path = "web/wall.html")]
struct WallPage<'a> {
    clinic_name: String,
    today: String,
    rows: &'a [RowView],
}

pub fn tally_label(filter: QueueFilter) -> &'static str {
    match filter {
        QueueFilter::Desk => "For the desk",
        QueueFilter::Open => "All open",
        QueueFilter::Ready => "Ready to prepare",
        QueueFilter::NeedsTask => "Needs a task",
        QueueFilter::OnHold => "On hold",
        QueueFilter::WithPhysician => "With a physician",
        QueueFilter::RunningOut => "Runs out today or tomorrow",
        QueueFilter::Done => "Done today",
    }
}

/// Load one page of the queue as the screen shows it, with today's tallies. The tallies and the first
/// page of each filter come from `queue_cache` while nothing has changed (see there); deeper pages load
/// fresh.
pub async fn load_rows(
    state: &AppState,
    filter: QueueFilter,
    page: i64,
    limit: i64,
) -> Result<(Arc<Vec<RowView>>, screens::QueueTallies), WebError> {
    let today = state.today();
    // Read the change counter before the queries: a change committed after this makes the entry stale.
    let freshness = Freshness { clinic_date: today, change_seq: state.live.highest_sent() };
    let max_age = state.settings.live_poll_interval;
    let tallies = state
        .queue_cache
        .tallies(freshness, max_age, || async { Ok(screens::queue_tallies(&state.store, today).await?) })
        .await?;
    let rows = if page == 0 {
        state
            .queue_cache
            .first_page(filter, limit, freshness, max_age, || load_row_views(state, filter, 0, limit))
            .await?
    } else {
        load_row_views(state, filter, page, limit).await?
    };
    Ok((rows, tallies))
}

/// One page of rows from the store: the page query, then the regimens of its patients in one query and
/// who has rows open; names of staff only when a row is claimed.
async fn load_row_views(
    state: &AppState,
    filter: QueueFilter,
    page: i64,
    limit: i64,
) -> Result<Arc<Vec<RowView>>, WebError> {
    let today = state.today();
    let rows = screens::queue_page(&state.store, today, filter, limit, page * state.settings.queue_page_size).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.patient_id).collect();
    let regimens = screens::regimens(&state.store, &ids).await?;
    let claimed = rows.iter().any(|r| r.status == "in_progress" && r.assigned_to.is_some());
    let names = if claimed { actor_names(state).await? } else { std::collections::HashMap::new() };
    let presence = accounts::row_presence(&state.store, state.clock.now_ms() - 10 * 60_000).await?;
    let mut views: Vec<RowView> = rows.iter().map(|r| row_view(r, today, &regimens, &names, &presence)).collect();
    fill_standing(state, &rows, &mut views).await?;
    Ok(Arc::new(views))
}

pub async fn page(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<QueueParams>,
) -> Result<Response, WebError> {
    let wall = params.display.as_deref() == Some("wall") || matches!(principal, Principal::Wall { .. });
    // The desk's default view is what staff can act on; rows waiting on a physician have their tally.
    // The wall shows every open row.
    let default = if wall { QueueFilter::Open } else { QueueFilter::Desk };
    let filter = params.filter.as_deref().and_then(QueueFilter::parse).unwrap_or(default);
    let page = params.page_number()?;
    let size = state.settings.queue_page_size;
    // One row more than the page shows tells whether there is a next page.
    let (loaded, tallies) = load_rows(&state, filter, page, size + 1).await?;
    let has_next = loaded.len() as i64 > size;
    let rows = &loaded[..loaded.len().min(usize::try_from(size).unwrap_or(usize::MAX))];
    audit_view(
        &state,
        &principal,
        "queue.view",
        "daily_queue",
        None,
        None,
        serde_json::json!({ "clinic_date": state.today(), "filter": filter.as_str(), "page": page, "wall": wall, "rows": rows.len() }),
    )
    .await?;
    let today = state.today().format("%A %-d %B %Y").to_string();
    if wall {
        return render(&WallPage { clinic_name: state.settings.clinic_name.clone(), today, rows });
    }
    let tallies: Vec<(&'static str, &'static str, i64, bool)> =
        QueueFilter::ALL.into_iter().map(|f| (f.as_str(), tally_label(f), tallies.count(f), f == filter)).collect();
    if params.partial.as_deref() == Some("rows") {
        return render(&QueueRows { tallies, rows });
    }
    render(&QueuePage {
        chrome: Chrome::new(&state, &principal, "/queue"),
        today,
        tallies,
        rows,
        filter: filter.as_str(),
        page,
        page_size: size,
        has_next,
    })
}

#[derive(Template)]
#[template(path = "web/queue_panel.html")]
struct Panel {
    row: RowView,
    csrf: String,
    message: Option<String>,
    problem: Option<String>,
    hold: bool,
    /// The rules have decided on this row today (nothing can be prepared before they have).
    evaluated: bool,
    /// The task names due on this row: their forms open first.
    due_tasks: Vec<String>,
    physician: bool,
    today: String,
    /// The refill is not due yet (monitoring only) or already prepared: nothing to prepare.
    not_due: bool,
    prepared: bool,
    /// Drug tests collected and not finished (id, words), for their next step.
    open_tests: Vec<(i64, String)>,
}

impl Panel {
    /// Why "prepare" (the `p` key) does not apply to this row, in words (empty when it does).
    fn prepare_not_why(&self) -> &'static str {
        if !self.evaluated {
            "the rules have not decided on this patient today yet"
        } else if self.prepared {
            "it is already prepared and waiting for the pharmacy"
        } else if self.not_due {
            "the refill is not due yet"
        } else if self.hold {
            "it is on hold or with a physician, and staff cannot override that"
        } else {
            ""
        }
    }
}

impl Panel {
    /// Whether `task` is due on this row (its form is shown open).
    fn is_due(&self, task: &str) -> bool {
        self.due_tasks.iter().any(|due| due == task)
    }
}

async fn panel_response(
    state: &AppState,
    principal: &Principal,
    patient_id: i64,
    message: Option<String>,
    problem: Option<String>,
    status: StatusCode,
) -> Result<Response, WebError> {
    let today = state.today();
    let row = screens::queue_row(&state.store, today, patient_id)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("patient {patient_id} is not in today's queue")))?;
    let regimens = screens::regimens(&state.store, &[patient_id]).await?;
    let names = actor_names(state).await?;
    let presence = accounts::row_presence(&state.store, state.clock.now_ms() - 10 * 60_000).await?;
    let mut views = [row_view(&row, today, &regimens, &names, &presence)];
    fill_standing(state, std::slice::from_ref(&row), &mut views).await?;
    let [view] = views;
    let hold = matches!(row.outcome.as_deref(), Some("HOLD" | "ESCALATE" | "ESCALATE_URGENT"));
    let not_due = row.refill_window.as_deref() == Some("not_due");
    let prepared = row.refill_window.as_deref() == Some("prepared");
    let open_tests = state
        .store
        .uds_tests_for_patient(PatientId(patient_id))
        .await?
        .into_iter()
        .filter(|t| {
            !matches!(
                t.status,
                refill_store::cycle::UdsTestStatus::Reviewed | refill_store::cycle::UdsTestStatus::Confirmed
            )
        })
        .map(|t| (t.id, format!("collected {} ({})", t.collected_on, t.status.as_str().replace('_', " "))))
        .collect();
    let due_tasks = row.tasks.as_deref().and_then(|t| serde_json::from_str::<Vec<String>>(t).ok()).unwrap_or_default();
    let panel = Panel {
        row: view,
        csrf: principal.session().map(|s| s.csrf_token.clone()).unwrap_or_default(),
        message,
        problem,
        hold,
        evaluated: row.outcome.is_some(),
        due_tasks,
        physician: principal.role() == Some(Role::Physician),
        today: today.to_string(),
        not_due,
        prepared,
        open_tests,
    };
    Ok((status, Html(panel.render()?)).into_response())
}

/// `GET /queue/{patient_id}/panel`: the side panel (a view of the patient's record, audited).
pub async fn panel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(patient_id): Path<i64>,
) -> Result<Response, WebError> {
    let user = principal.person()?;
    accounts::open_row(&state.store, patient_id, user.id, state.clock.now_ms()).await?;
    publish_latest(&state).await;
    audit_view(
        &state,
        &principal,
        "queue.panel.view",
        "patient",
        Some(patient_id.to_string()),
        Some(patient_id),
        serde_json::json!({}),
    )
    .await?;
    panel_response(&state, &principal, patient_id, None, None, StatusCode::OK).await
}

/// `POST /queue/close`: the person closed the side panel.
pub async fn close_panel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, WebError> {
    let user = principal.person()?;
    accounts::close_rows(&state.store, user.id, state.clock.now_ms()).await?;
    publish_latest(&state).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Send the newest changes of this process to its live listeners now (the poller would within a
/// second; this makes the acting screen's neighbours update at once).
pub async fn publish_latest(state: &AppState) {
    if let Ok(changes) = accounts::screen_changes_after(&state.store, state.live.highest_sent(), 100).await {
        for change in changes {
            state.live.publish(change);
        }
    }
}

/// A staff action from the side panel (form fields; the JSON API takes the same shape).
#[derive(Debug, Deserialize, Clone)]
pub struct ActionForm {
    /// `prepare`, `uds` (collected now with its presumptive result), `uds_collect`, `uds_result`,
    /// `uds_confirm_sent`, `pdmp`, `agreement`, `naloxone`, `request`, `dispense`, `contacted`,
    /// `physician`.
    pub action: String,
    /// The queue row version the screen showed (ignored for a patient not on today's queue).
    #[serde(default)]
    pub version: i64,
    #[serde(default)]
    pub note: Option<String>,
    /// UDS: analytes detected / not detected, comma separated.
    #[serde(default)]
    pub detected: Option<String>,
    #[serde(default)]
    pub not_detected: Option<String>,
    /// UDS: `scheduled` (default) or `for_cause`.
    #[serde(default)]
    pub uds_kind: Option<String>,
    /// UDS: the collection date, YYYY-MM-DD (default today).
    #[serde(default)]
    pub collected_on: Option<String>,
    /// UDS: the specimen's validity checks (`valid`, `dilute`, `invalid`; empty: not reported).
    #[serde(default)]
    pub specimen_validity: Option<String>,
    /// UDS result / confirmation steps: the drug test they belong to.
    #[serde(default)]
    pub test_id: Option<i64>,
    /// UDS result: `presumptive` (default) or `confirmatory`.
    #[serde(default)]
    pub result_kind: Option<String>,
    /// PDMP (JSON API and older clients): one finding per line, `prescriber id;
    /// opioid|benzodiazepine|other; YYYY-MM-DD`.
    #[serde(default)]
    pub findings: Option<String>,
    /// PDMP (the screen's fields): up to three findings, each a prescriber, a drug class (`opioid`,
    /// `benzodiazepine`, `other`) and the date filled; a row with no prescriber is empty.
    #[serde(default)]
    pub prescriber_1: Option<String>,
    #[serde(default)]
    pub class_1: Option<String>,
    #[serde(default)]
    pub finding_on_1: Option<String>,
    #[serde(default)]
    pub prescriber_2: Option<String>,
    #[serde(default)]
    pub class_2: Option<String>,
    #[serde(default)]
    pub finding_on_2: Option<String>,
    #[serde(default)]
    pub prescriber_3: Option<String>,
    #[serde(default)]
    pub class_3: Option<String>,
    #[serde(default)]
    pub finding_on_3: Option<String>,
    /// Agreement: text version signed.
    #[serde(default)]
    pub text_version: Option<String>,
    /// Naloxone: `offered`, `declined` or `dispensed`.
    #[serde(default)]
    pub naloxone: Option<String>,
    /// Request: `routine`, `early`, `lost_or_stolen_replacement` or `dose_change`.
    #[serde(default)]
    pub request_kind: Option<String>,
    /// Dispense: the date the pharmacy dispensed (default today), the days supplied and the quantity.
    #[serde(default)]
    pub filled_on: Option<String>,
    #[serde(default, deserialize_with = "super::text_or_number")]
    pub days_supply: Option<String>,
    #[serde(default, deserialize_with = "super::text_or_number")]
    pub quantity: Option<String>,
    #[serde(default)]
    pub csrf: Option<String>,
}

/// What an action did, for the panel's message and the API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActionResult {
    pub message: String,
    pub outcome: Option<String>,
    pub version: i64,
    /// The drug test the action created or moved on (for its next step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uds_test_id: Option<i64>,
}

pub async fn action(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(patient_id): Path<i64>,
    Form(form): Form<ActionForm>,
) -> Result<Response, WebError> {
    if let Err(error) = crate::input::check_action(&form) {
        let status = error.status();
        return panel_response(&state, &principal, patient_id, None, Some(error.public_message()), status).await;
    }
    match perform(&state, &principal, patient_id, &form).await {
        Ok(result) => panel_response(&state, &principal, patient_id, Some(result.message), None, StatusCode::OK).await,
        Err(WebError::Conflict(raw)) => {
            let words = conflict_words(&state, patient_id, &raw).await;
            panel_response(&state, &principal, patient_id, None, Some(words), StatusCode::CONFLICT).await
        }
        Err(error @ WebError::BadRequest(_)) => {
            let status = error.status();
            panel_response(&state, &principal, patient_id, None, Some(error.public_message()), status).await
        }
        Err(error) => Err(error),
    }
}

impl ActionForm {
    /// The PDMP findings the screen's fields hold (rows without a prescriber are left out), each
    /// checked with the field named.
    fn finding_fields(&self) -> Result<Vec<PdmpFinding>, WebError> {
        let rows = [
            (1, &self.prescriber_1, &self.class_1, &self.finding_on_1),
            (2, &self.prescriber_2, &self.class_2, &self.finding_on_2),
            (3, &self.prescriber_3, &self.class_3, &self.finding_on_3),
        ];
        let mut findings = Vec::new();
        for (n, prescriber, class, on) in rows {
            let Some(prescriber) = prescriber.as_deref().map(str::trim).filter(|p| !p.is_empty()) else { continue };
            let drug_class = drug_class(class.as_deref().unwrap_or("").trim())
                .ok_or_else(|| WebError::BadRequest(format!("class_{n}: choose opioid, benzodiazepine or other")))?;
            let filled_on = match on.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
                Some(text) => NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
                    WebError::BadRequest(format!("finding_on_{n}: {text:?} is not a date (YYYY-MM-DD)"))
                })?,
                None => return Err(WebError::BadRequest(format!("finding_on_{n}: the date it was filled"))),
            };
            findings.push(PdmpFinding {
                prescriber: PrescriberId(prescriber.to_string()),
                drug_class,
                filled_on,
                product: None,
                rxcui: None,
                quantity: None,
                days_supply: None,
            });
        }
        Ok(findings)
    }
}

/// A drug class as the forms name it.
fn drug_class(text: &str) -> Option<DrugClass> {
    match text {
        "opioid" => Some(DrugClass::Opioid),
        "benzodiazepine" => Some(DrugClass::Benzodiazepine),
        "other" => Some(DrugClass::OtherControlled),
        _ => None,
    }
}

fn parse_findings(text: &str) -> Result<Vec<PdmpFinding>, WebError> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .enumerate()
        .map(|(i, line)| {
            let parts: Vec<&str> = line.split(';').map(str::trim).collect();
            let [prescriber, class, date] = parts.as_slice() else {
                return Err(WebError::BadRequest(format!(
                    "findings line {}: expected `prescriber; class; YYYY-MM-DD`",
                    i + 1
                )));
            };
            let drug_class = drug_class(class)
                .ok_or_else(|| WebError::BadRequest(format!("findings line {}: unknown class {class:?}", i + 1)))?;
            let filled_on = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| {
                WebError::BadRequest(format!("findings line {}: date {date:?} is not YYYY-MM-DD", i + 1))
            })?;
            Ok(PdmpFinding {
                prescriber: PrescriberId((*prescriber).to_string()),
                drug_class,
                filled_on,
                product: None,
                rxcui: None,
                quantity: None,
                days_supply: None,
            })
        })
        .collect()
}

fn analytes(text: Option<&str>, detected: bool) -> Vec<UdsAnalyteResult> {
    text.unwrap_or("")
        .split(',')
        .map(|a| a.trim().to_lowercase())
        .filter(|a| !a.is_empty())
        .map(|analyte| UdsAnalyteResult { assay: analyte.clone(), analyte, detected })
        .collect()
}

/// A form date (`field` names it in the error), or `default` when the field is empty.
fn form_date(text: Option<&str>, field: &str, default: NaiveDate) -> Result<NaiveDate, WebError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(default),
        Some(text) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| WebError::BadRequest(format!("{field}: {text:?} is not a date (YYYY-MM-DD)"))),
    }
}

/// A drug-test result from the form's analytes.
fn uds_result(form: &ActionForm, collected_on: NaiveDate, kind: UdsKind) -> Result<UdsResult, WebError> {
    let mut found = analytes(form.detected.as_deref(), true);
    found.extend(analytes(form.not_detected.as_deref(), false));
    if found.is_empty() {
        return Err(WebError::BadRequest("UDS: enter at least one analyte detected or not detected".into()));
    }
    let confirmatory = match form.result_kind.as_deref() {
        None | Some("") | Some("presumptive") => false,
        Some("confirmatory") => true,
        Some(other) => {
            return Err(WebError::BadRequest(format!("result_kind: {other:?} is not presumptive or confirmatory")));
        }
    };
    let specimen_validity = match form.specimen_validity.as_deref().map(str::trim) {
        None | Some("") => SpecimenValidity::NotReported,
        Some(text) => SpecimenValidity::parse(text).ok_or_else(|| {
            WebError::BadRequest(format!("specimen_validity: {text:?} is not not_reported, valid, dilute or invalid"))
        })?,
    };
    Ok(UdsResult {
        collected_on,
        kind,
        confirmatory,
        analytes: found,
        physician_reviewed_on: None,
        confidentiality: Default::default(),
        specimen_validity,
    })
}

/// The staff action a form asks for (`None` for `prepare`, which has its own use case).
async fn staff_action(
    state: &AppState,
    patient_id: i64,
    form: &ActionForm,
    today: NaiveDate,
) -> Result<Option<StaffAction>, WebError> {
    let uds_kind = match form.uds_kind.as_deref() {
        None | Some("") | Some("scheduled") => UdsKind::Scheduled,
        Some("for_cause") => UdsKind::ForCause,
        Some(other) => return Err(WebError::BadRequest(format!("uds_kind: {other:?} is not scheduled or for_cause"))),
    };
    let test_id = || form.test_id.ok_or_else(|| WebError::BadRequest("test_id: which drug test?".into()));
    Ok(Some(match form.action.as_str() {
        "prepare" | "uds_review" => return Ok(None),
        "uds" => {
            // Collected now at the desk, with its presumptive (point-of-care) result.
            let collected_on = form_date(form.collected_on.as_deref(), "collected_on", today)?;
            StaffAction::CollectUdsWithResult {
                kind: uds_kind,
                collected_on,
                result: uds_result(form, collected_on, uds_kind)?,
            }
        }
        "uds_collect" => StaffAction::CollectUds {
            kind: uds_kind,
            collected_on: form_date(form.collected_on.as_deref(), "collected_on", today)?,
        },
        "uds_result" => {
            let result = uds_result(form, today, uds_kind)?;
            StaffAction::UdsResult { test_id: test_id()?, result }
        }
        "uds_confirm_sent" => StaffAction::SendUdsForConfirmation { test_id: test_id()? },
        "pdmp" => StaffAction::Fact(StaffFact::PdmpReview {
            review: PdmpReview {
                reviewed_on: today,
                findings: {
                    let mut findings = parse_findings(form.findings.as_deref().unwrap_or(""))?;
                    findings.extend(form.finding_fields()?);
                    findings
                },
            },
        }),
        "agreement" => {
            let header = screens::patient_header(&state.store, patient_id).await?;
            let prescriber = header.prescriber_of_record.ok_or_else(|| {
                WebError::BadRequest("the patient has no prescriber of record to sign the agreement with".into())
            })?;
            StaffAction::Fact(StaffFact::Agreement {
                agreement: AgreementFacts {
                    signed_on: today,
                    prescriber_of_record: PrescriberId(prescriber),
                    text_version: form
                        .text_version
                        .clone()
                        .filter(|v| !v.trim().is_empty())
                        .unwrap_or_else(|| "current".into()),
                    elements: Vec::new(),
                    voided_on: None,
                },
            })
        }
        "naloxone" => {
            let kind = match form.naloxone.as_deref() {
                Some("offered") => NaloxoneEventKind::Offered,
                Some("declined") => NaloxoneEventKind::Declined,
                Some("dispensed") => NaloxoneEventKind::Dispensed,
                _ => return Err(WebError::BadRequest("naloxone: choose offered, declined or dispensed".into())),
            };
            StaffAction::Fact(StaffFact::NaloxoneEvent { event: NaloxoneEvent { on: today, kind } })
        }
        "request" => {
            let kind = match form.request_kind.as_deref() {
                None | Some("") => RequestKind::Routine,
                Some(text) => RequestKind::parse(text).ok_or_else(|| {
                    WebError::BadRequest(format!(
                        "request_kind: {text:?} is not routine, early, lost_or_stolen_replacement or dose_change"
                    ))
                })?,
            };
            StaffAction::Request(NewRefillRequest {
                requested_on: today,
                kind,
                channel: "staff".into(),
                note: form.note.clone(),
            })
        }
        "dispense" => {
            let days_supply = form_number::<u32>(form.days_supply.as_deref(), "days_supply")?
                .filter(|d| (1..=90).contains(d))
                .ok_or_else(|| WebError::BadRequest("days_supply: 1 to 90 days".into()))?;
            StaffAction::Dispense(Fill {
                filled_on: form_date(form.filled_on.as_deref(), "filled_on", today)?,
                days_supply,
                order_id: None,
                quantity: form_number::<f64>(form.quantity.as_deref(), "quantity")?
                    .filter(|q| q.is_finite() && *q > 0.0),
            })
        }
        "contacted" => StaffAction::Contacted,
        "physician" => StaffAction::SendToPhysician,
        other => return Err(WebError::BadRequest(format!("unknown action {other:?}"))),
    }))
}

/// A use case's refusal or conflict in the words the panel shows (actor ids named).
pub(crate) fn app_error(error: AppError, names: &std::collections::HashMap<String, String>) -> WebError {
    match error {
        AppError::Refused(message) => WebError::BadRequest(message),
        AppError::Conflict(message) => WebError::Conflict(name_actors(names, &message)),
        AppError::NotFound(message) => WebError::NotFound(message),
        AppError::Store(error) => WebError::Store(error),
    }
}

/// Do one staff action in one transaction through the use case (`refill_app::staff`): claim the row
/// under the version the screen showed, record the fact or event, decide the cycle again on the facts
/// as the transaction sees them, record the screen change, commit; then tell the live listeners. A
/// failure at any step leaves nothing written. Requests and dispenses may come for a patient who is
/// not on today's queue (from the patient page or the API).
pub async fn perform(
    state: &AppState,
    principal: &Principal,
    patient_id: i64,
    form: &ActionForm,
) -> Result<ActionResult, WebError> {
    let user = principal.person()?;
    let actor = actor(principal);
    let today = state.today();
    let names = actor_names(state).await?;
    let row = screens::queue_row(&state.store, today, patient_id).await?;
    let off_queue_allowed = matches!(form.action.as_str(), "request" | "dispense");
    if row.is_none() && !off_queue_allowed {
        return Err(WebError::NotFound(format!("patient {patient_id} is not in today's queue")));
    }
    let context = StaffContext {
        patient: PatientId(patient_id),
        queue_item: row.as_ref().map(|row| (QueueItemId(row.queue_id), form.version)),
        today,
        actor: &actor,
        note: form.note.as_deref(),
    };
    let action = staff_action(state, patient_id, form, today).await?;
    let app = state.app();
    // Read through the pool before the transaction holds the writer (the roster is not changed here).
    let clinic = state.store.clinic_facts().await?;
    let mut tx = state.store.begin().await?;
    let done = match (&action, form.action.as_str()) {
        (None, "prepare") => staff::prepare(&app, &mut tx, &context).await,
        (None, "uds_review") => {
            // The last step of a drug test's lifecycle is a physician's.
            if principal.role() != Some(Role::Physician) {
                return Err(WebError::BadRequest("Only a physician marks drug test results reviewed.".into()));
            }
            let test_id = form.test_id.ok_or_else(|| WebError::BadRequest("test_id: which drug test?".into()))?;
            physician::review_drug_test(&app, &mut tx, &clinic, PatientId(patient_id), test_id, today, &actor)
                .await
                .map(|decision| staff::StaffOutcome {
                    outcome: Some(decision.outcome),
                    decision: Some(decision),
                    queue_version: None,
                    uds_test_id: Some(test_id),
                    exception_id: None,
                })
        }
        (Some(action), _) => staff::act(&app, &mut tx, &clinic, &context, action).await,
        (None, other) => return Err(WebError::BadRequest(format!("unknown action {other:?}"))),
    }
    .map_err(|e| app_error(e, &names))?;
    note_change(state, &mut tx, patient_id, &format!("queue.{}", form.action), &user.display_name).await?;
    let version = match &row {
        Some(row) => tx.queue_item(QueueItemId(row.queue_id)).await?.version,
        None => done.queue_version.unwrap_or_default(),
    };
    tx.commit().await?;
    publish_latest(state).await;
    if form.action == "prepare" {
        return Ok(prepared_message(state, &done, version).await);
    }
    let message = action_done(&form.action);
    let outcome = done.outcome.map(|o| o.as_str().to_string());
    let (word, _) = wording::status(outcome.as_deref());
    Ok(ActionResult {
        message: format!("{message}; the rules now say: {word}."),
        outcome,
        version,
        uds_test_id: done.uds_test_id,
    })
}

/// What an action did, in words (also how another desk hears of it).
fn action_done(action: &str) -> &'static str {
    match action {
        "prepare" => "Refill prepared for signature",
        "uds" => "Drug test recorded",
        "uds_collect" => "Drug test collection recorded",
        "uds_result" => "Drug test result recorded",
        "uds_confirm_sent" => "Sent for confirmatory testing",
        "uds_review" => "Drug test results reviewed",
        "pdmp" => "PDMP review recorded",
        "agreement" => "Agreement signature recorded",
        "naloxone" => "Naloxone recorded",
        "request" => "Refill request recorded",
        "dispense" => "Dispense recorded",
        "contacted" => "Contact recorded",
        "physician" => "Sent to a physician with a note",
        _ => "Changed",
    }
}

/// A conflict on a row in words a desk can act on: who has it (by name, never an internal id) and
/// what was recorded on the patient in the last twelve hours, by whom and when.
async fn conflict_words(state: &AppState, patient_id: i64, raw: &str) -> String {
    let names = actor_names(state).await.unwrap_or_default();
    let owner = match screens::queue_row(&state.store, state.today(), patient_id).await {
        Ok(Some(row)) if row.status == "in_progress" => row.assigned_to.as_deref().map(|a| actor_name(&names, a)),
        _ => None,
    };
    let since = state.clock.now_ms() - 12 * 3_600_000;
    let changes = accounts::patient_screen_changes(&state.store, patient_id, since, 5).await.unwrap_or_default();
    let zone = state.settings.time_zone;
    let recorded: Vec<String> = changes
        .iter()
        .filter_map(|change| {
            let action = change.kind.strip_prefix("queue.")?;
            let at = chrono::DateTime::from_timestamp_millis(change.changed_at_ms)?.with_timezone(&zone);
            let who = change.actor.clone().unwrap_or_else(|| "another desk".into());
            Some(format!("{} by {who} at {}", action_done(action), at.format("%H:%M")))
        })
        .collect();
    let headline = match owner {
        Some(owner) => format!("{owner} is working on this patient right now."),
        None => {
            format!("Someone else changed this row first ({}).", name_actors(&names, raw).replace("queue item", "row"))
        }
    };
    let recorded =
        if recorded.is_empty() { String::new() } else { format!(" Already recorded: {}.", recorded.join("; ")) };
    format!("{headline}{recorded} Nothing of yours was saved: look at the row as it is now before acting.")
}

/// "Refill prepared", or "Bridge prepared: 14 days, review by ..." when a physician's bridge released it.
async fn prepared_message(state: &AppState, done: &refill_app::staff::StaffOutcome, version: i64) -> ActionResult {
    let standing = match done.decision.as_ref().and_then(|d| d.standing) {
        Some(id) => state.store.physician_decision(id).await.ok().flatten(),
        None => None,
    };
    let message = match standing {
        Some(pd) if pd.choice == "bridge" => format!(
            "Bridge prepared for signature: {} days{}.",
            pd.bridge_days.unwrap_or_default(),
            pd.review_by.map(|d| format!(", review by {d}")).unwrap_or_default()
        ),
        _ => "Refill prepared for signature.".to_string(),
    };
    ActionResult { message, outcome: done.outcome.map(|o| o.as_str().to_string()), version, uds_test_id: None }
}

/// Record a screen change in `tx`, beside the write it describes. After the commit, the caller calls
/// `publish_latest` so this process's listeners see it at once (never before: a listener that reloads
/// must find the change committed).
pub async fn note_change(
    state: &AppState,
    tx: &mut Tx,
    patient_id: i64,
    kind: &str,
    actor_name: &str,
) -> Result<(), WebError> {
    accounts::record_screen_change(tx, Some(patient_id), kind, Some(actor_name), state.clock.now_ms()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_print_as_the_float_formatter_would() {
        for value in [0.0, 1.0, 2.0, 10.0, 45.0, 90.0, 120.0, 1_000_000.0, -3.0, 1e14] {
            assert_eq!(whole_number(value).as_deref(), Some(format!("{value:.0}").as_str()), "{value}");
        }
        for value in [0.5, 37.5, 0.33, -0.0, f64::NAN, f64::INFINITY, 1e300] {
            assert_eq!(whole_number(value), None, "{value}");
        }
        assert_eq!(short_number(10.0), "10");
        assert_eq!(short_number(0.33), "0.33");
        assert_eq!(short_number(1.5), "1.5");
        assert_eq!(short_number(2.499), "2.5");
    }
}
