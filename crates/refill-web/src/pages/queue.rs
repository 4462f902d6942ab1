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
use refill_rules::{
    AgreementFacts, ClinicFacts, DrugClass, NaloxoneEvent, NaloxoneEventKind, Outcome, PatientId, PdmpFinding,
    PdmpReview, PrescriberId, RefillRequest, RequestKind, UdsAnalyteResult, UdsKind, UdsResult,
};
use refill_store::accounts::{self, Role};
use refill_store::screens::{self, QueueFilter, QueueRow, RegimenLine};
use refill_store::{NewDecision, QueueItemId, StaffFact, StoreError, Tx};
use serde::Deserialize;

use super::{Chrome, actor, audit_view, days_until, render};
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
    pub due: Vec<&'static str>,
    pub regimen: String,
    pub mme: String,
    pub working: String,
    pub done: bool,
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

pub fn regimen_text(lines: &[&RegimenLine], may_see_part2: bool) -> String {
    let parts: Vec<String> = lines
        .iter()
        .map(|line| {
            if line.confidentiality == "part2" && !may_see_part2 {
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
    RowView {
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
        // The queue never shows Part 2 facts: restricted reasons are masked for everyone here.
        reasons: wording::reasons(row.reasons.as_deref(), false),
        due: wording::due(row.tasks.as_deref()),
        regimen: regimen_text(&lines, false),
        mme: row
            .total_daily_mme
            .map(|m| whole_number(m).unwrap_or_else(|| format!("{m:.0}")))
            .unwrap_or_else(|| "—".into()),
        working: working.join(", "),
        done: row.status == "done",
    }
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
    Ok(Arc::new(rows.iter().map(|r| row_view(r, today, &regimens, &names, &presence)).collect()))
}

pub async fn page(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<QueueParams>,
) -> Result<Response, WebError> {
    let filter = params.filter.as_deref().and_then(QueueFilter::parse).unwrap_or_default();
    let page = params.page_number()?;
    let wall = params.display.as_deref() == Some("wall") || matches!(principal, Principal::Wall { .. });
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
    let view = row_view(&row, today, &regimens, &names, &presence);
    let hold = matches!(row.outcome.as_deref(), Some("HOLD" | "ESCALATE" | "ESCALATE_URGENT"));
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
    /// `prepare`, `uds`, `pdmp`, `agreement`, `naloxone`, `contacted`, `physician`.
    pub action: String,
    /// The queue row version the screen showed.
    pub version: i64,
    #[serde(default)]
    pub note: Option<String>,
    /// UDS: analytes detected / not detected, comma separated.
    #[serde(default)]
    pub detected: Option<String>,
    #[serde(default)]
    pub not_detected: Option<String>,
    /// PDMP: one finding per line, `prescriber id; opioid|benzodiazepine|other; YYYY-MM-DD`.
    #[serde(default)]
    pub findings: Option<String>,
    /// Agreement: text version signed.
    #[serde(default)]
    pub text_version: Option<String>,
    /// Naloxone: `offered`, `declined` or `dispensed`.
    #[serde(default)]
    pub naloxone: Option<String>,
    #[serde(default)]
    pub csrf: Option<String>,
}

/// What an action did, for the panel's message and the API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActionResult {
    pub message: String,
    pub outcome: Option<String>,
    pub version: i64,
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
        Err(error @ (WebError::Conflict(_) | WebError::BadRequest(_))) => {
            let status = error.status();
            panel_response(&state, &principal, patient_id, None, Some(error.public_message()), status).await
        }
        Err(error) => Err(error),
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
            let drug_class = match *class {
                "opioid" => DrugClass::Opioid,
                "benzodiazepine" => DrugClass::Benzodiazepine,
                "other" => DrugClass::OtherControlled,
                other => return Err(WebError::BadRequest(format!("findings line {}: unknown class {other:?}", i + 1))),
            };
            let filled_on = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| {
                WebError::BadRequest(format!("findings line {}: date {date:?} is not YYYY-MM-DD", i + 1))
            })?;
            Ok(PdmpFinding { prescriber: PrescriberId((*prescriber).to_string()), drug_class, filled_on })
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

/// Do one staff action in one transaction: claim the row under the version the screen showed, record
/// the fact (or the contact / referral), run the rules again on the facts as the transaction sees them
/// and record the decision, record the screen change, commit; then tell the live listeners. A failure
/// at any step leaves nothing written.
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
    let conflict = |error: StoreError| match error {
        StoreError::Conflict(message) => WebError::Conflict(name_actors(&names, &message)),
        StoreError::Invalid(message) => WebError::BadRequest(message),
        other => WebError::Store(other),
    };
    let row = screens::queue_row(&state.store, today, patient_id)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("patient {patient_id} is not in today's queue")))?;
    let item = QueueItemId(row.queue_id);
    let note = form.note.as_deref().map(str::trim).filter(|n| !n.is_empty());
    let fact = match form.action.as_str() {
        "prepare" => {
            let outcome = row.outcome.as_deref().and_then(Outcome::parse);
            let blocking = wording::due(row.tasks.as_deref()).contains(&"PDMP review");
            return match outcome {
                Some(Outcome::Approve) | Some(Outcome::ApproveWithTasks) if !blocking => {
                    let mut tx = state.store.begin().await?;
                    let done = state
                        .store
                        .complete_queue_item_in(
                            &mut tx,
                            item,
                            form.version,
                            &actor,
                            Some(note.unwrap_or("refill prepared for signature")),
                        )
                        .await
                        .map_err(conflict)?;
                    note_change(state, &mut tx, patient_id, "queue.prepared", &user.display_name).await?;
                    tx.commit().await?;
                    publish_latest(state).await;
                    Ok(ActionResult { message: "Refill prepared for signature.".into(), outcome: row.outcome.clone(), version: done.version })
                }
                Some(Outcome::ApproveWithTasks) => Err(WebError::BadRequest("The PDMP review must be recorded before the refill is prepared.".into())),
                _ => Err(WebError::BadRequest("This refill is on hold or with a physician; staff cannot override it. Send it to a physician with a note.".into())),
            };
        }
        "uds" => {
            let mut found = analytes(form.detected.as_deref(), true);
            found.extend(analytes(form.not_detected.as_deref(), false));
            if found.is_empty() {
                return Err(WebError::BadRequest("UDS: enter at least one analyte detected or not detected".into()));
            }
            Some(StaffFact::UdsResult {
                result: UdsResult {
                    collected_on: today,
                    kind: UdsKind::Scheduled,
                    confirmatory: false,
                    analytes: found,
                    physician_reviewed_on: None,
                    confidentiality: Default::default(),
                },
            })
        }
        "pdmp" => Some(StaffFact::PdmpReview {
            review: PdmpReview {
                reviewed_on: today,
                findings: parse_findings(form.findings.as_deref().unwrap_or(""))?,
            },
        }),
        "agreement" => {
            let header = screens::patient_header(&state.store, patient_id).await?;
            let prescriber = header.prescriber_of_record.ok_or_else(|| {
                WebError::BadRequest("the patient has no prescriber of record to sign the agreement with".into())
            })?;
            Some(StaffFact::Agreement {
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
            Some(StaffFact::NaloxoneEvent { event: NaloxoneEvent { on: today, kind } })
        }
        "contacted" | "physician" => None,
        other => return Err(WebError::BadRequest(format!("unknown action {other:?}"))),
    };
    if form.action == "physician" && note.is_none() {
        return Err(WebError::BadRequest("Sending to a physician needs a note saying why.".into()));
    }
    // Read through the pool before the transaction holds the writer (the roster is not changed here).
    let clinic = state.store.clinic_facts().await?;
    let mut tx = state.store.begin().await?;
    // Claim under the version the screen showed: two staff acting at once cannot both win.
    state.store.claim_queue_item_in(&mut tx, item, form.version, &actor).await.map_err(conflict)?;
    if let Some(fact) = &fact {
        // The claim above is the check against the screen; the patient's version is whatever it is now.
        let patient_version = tx.patient(PatientId(patient_id)).await?.version;
        state
            .store
            .record_fact_in(&mut tx, PatientId(patient_id), patient_version, fact, &actor, note)
            .await
            .map_err(conflict)?;
    } else {
        let event = refill_store::AuditEvent::new(
            &actor,
            if form.action == "physician" { "queue.send_to_physician" } else { "patient.contacted" },
            "queue_item",
        )
        .resource_id(row.queue_id.to_string())
        .patient(PatientId(patient_id))
        .reason(note.unwrap_or("patient contacted"));
        state.store.append_audit(&mut tx, &event).await?;
    }
    let adjust = if form.action == "physician" { Adjust::SendToPhysician } else { Adjust::None };
    let outcome = rerun_rules(state, &mut tx, &clinic, &actor, patient_id, row.run_out_on, adjust).await?;
    note_change(state, &mut tx, patient_id, &format!("queue.{}", form.action), &user.display_name).await?;
    // The decision bumped the row's version again: hand back the version a next action must quote.
    let version = tx.queue_item(item).await?.version;
    tx.commit().await?;
    publish_latest(state).await;
    let message = match form.action.as_str() {
        "uds" => "UDS result recorded",
        "pdmp" => "PDMP review recorded",
        "agreement" => "Agreement signature recorded",
        "naloxone" => "Naloxone recorded",
        "contacted" => "Contact recorded",
        _ => "Sent to a physician",
    };
    let (word, _) = wording::status(Some(outcome.as_str()));
    Ok(ActionResult {
        message: format!("{message}; the rules now say: {word}."),
        outcome: Some(outcome.as_str().to_string()),
        version,
    })
}

/// Who adjusts the rules' outcome after a re-run, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjust {
    /// The rules' outcome stands.
    None,
    /// Staff sent it to a physician: at least ESCALATE (escalating is always allowed).
    SendToPhysician,
    /// A physician signed an approval: an escalation is answered (tasks still apply).
    PhysicianApproved,
    /// A physician decided to hold (testing, visit, referral, stop): HOLD.
    PhysicianHold,
}

/// Run the rules on the patient's facts as `tx` sees them (with the fact the caller just recorded in
/// it) and record the decision in `tx` (which updates today's queue row and raises an exception when it
/// escalates). Staff can only raise the outcome; only a physician's signed decision lowers an
/// escalation.
pub async fn rerun_rules(
    state: &AppState,
    tx: &mut Tx,
    clinic: &ClinicFacts,
    actor: &refill_store::Actor,
    patient_id: i64,
    run_out_on: Option<NaiveDate>,
    adjust: Adjust,
) -> Result<Outcome, WebError> {
    let today = state.today();
    let facts = tx.load_patient_facts(PatientId(patient_id), today).await?;
    let request = RefillRequest { requested_on: today, regimen: facts.regimen.clone(), kind: RequestKind::Routine };
    let mut decision = refill_rules::refill::evaluate(&facts, clinic, &request, &state.policy, &state.policy_version);
    match adjust {
        Adjust::None => {}
        Adjust::SendToPhysician => decision.outcome = decision.outcome.max(Outcome::Escalate),
        Adjust::PhysicianApproved if decision.outcome >= Outcome::Hold => {
            decision.outcome = if decision.tasks.is_empty() { Outcome::Approve } else { Outcome::ApproveWithTasks };
        }
        Adjust::PhysicianApproved => {}
        Adjust::PhysicianHold => decision.outcome = Outcome::Hold,
    }
    state
        .store
        .record_decision(
            tx,
            &NewDecision {
                patient_id: PatientId(patient_id),
                clinic_date: today,
                refill_request_id: None,
                decision: &decision,
                decided_by: actor,
                run_out_on,
                dedupe_key: None,
            },
        )
        .await?;
    Ok(decision.outcome)
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
