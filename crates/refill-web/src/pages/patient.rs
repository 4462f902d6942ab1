//! The patient page: header, today's queue item with what is due, regimen with its MME computed order
//! by order, open exceptions, the timeline, the MME chart with taper
//! steps past and planned, and messages with their delivery. 42 CFR Part 2 facts are hidden unless the
//! physician breaks the glass with a reason (time-boxed, audited).

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use refill_store::accounts;
use refill_store::screens;
use serde::Deserialize;

use super::queue::{regimen_text, short_number};
use super::{Chrome, actor, audit_view, days_until, render};
use crate::auth::Principal;
use crate::part2::Part2Access;
use crate::{AppState, WebError, chart, wording};

#[derive(Debug, Clone, serde::Serialize)]
pub struct TimelineLine {
    pub date: String,
    pub kind: &'static str,
    pub text: String,
}

/// One order of the current regimen in the MME computation: what it is, how its daily MME follows from
/// the daily dose and the conversion factor, or why it is not counted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MmeLine {
    pub medication: String,
    pub computation: String,
    pub mme: String,
}

/// The MME of the regimen of record, computed line by line as the rules compute it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MmeBreakdown {
    pub lines: Vec<MmeLine>,
    /// The total, or why there is none.
    pub total: String,
    /// The conversion factors used (the policy's factor set).
    pub factors: &'static str,
}

/// `daily_mme` over `regimen` with the policy's factors, Part 2 orders masked for those without access
/// (their line says so; the total still counts them, as the rules do).
pub fn mme_breakdown(
    regimen: &[refill_rules::MedicationOrder],
    factor_set: refill_rules::mme::FactorSet,
    access: Part2Access,
) -> MmeBreakdown {
    let result = refill_rules::mme::daily_mme(regimen, factor_set);
    let hidden =
        |order_id: &str| access.hides(regimen.iter().any(|o| o.id == order_id && o.confidentiality.is_restricted()));
    let restricted =
        || MmeLine { medication: wording::RESTRICTED.to_string(), computation: String::new(), mme: String::new() };
    let mut lines = Vec::new();
    for item in &result.items {
        lines.push(if hidden(&item.order_id) {
            restricted()
        } else {
            MmeLine {
                medication: item.medication.clone(),
                computation: format!(
                    "{} {} {}/day × factor {}",
                    item.ingredient,
                    short_number(item.daily_dose),
                    item.unit,
                    short_number(item.factor)
                ),
                mme: short_number(item.mme),
            }
        });
    }
    for excluded in &result.excluded {
        lines.push(if hidden(&excluded.order_id) {
            restricted()
        } else {
            MmeLine {
                medication: excluded.medication.clone(),
                computation: format!("not counted: {}", excluded.reason),
                mme: "—".into(),
            }
        });
    }
    for undetermined in &result.undetermined {
        lines.push(if hidden(&undetermined.order_id) {
            restricted()
        } else {
            MmeLine {
                medication: undetermined.medication.clone(),
                computation: format!("cannot be computed: {}", undetermined.reason),
                mme: "?".into(),
            }
        });
    }
    let total = match result.total_daily_mme {
        Some(total) => format!("{} MME/day", short_number(total)),
        None if !result.undetermined.is_empty() => "undetermined: a physician checks the order above".into(),
        None => "none counted".into(),
    };
    let factors = match factor_set {
        refill_rules::mme::FactorSet::Cdc2022 => "CDC 2022 conversion factors",
        refill_rules::mme::FactorSet::Cdc2016 => "CDC 2016 conversion factors",
    };
    MmeBreakdown { lines, total, factors }
}

/// The patient's item on today's queue: the decision's status, what is due, when the supply runs out
/// and where the item stands (waiting, being worked, done).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TodayLine {
    pub status_word: &'static str,
    pub status_class: &'static str,
    pub due: Vec<&'static str>,
    pub run_out: String,
    pub progress: &'static str,
}

fn today_line(row: &screens::QueueRow, today: chrono::NaiveDate, access: Part2Access) -> TodayLine {
    let (status_word, status_class) = wording::status(row.outcome.as_deref());
    let run_out = match row.run_out_on {
        Some(on) => format!("supply runs out {on} ({})", wording::days_left(days_until(today, Some(on)))),
        None => "no fill on record".to_string(),
    };
    let progress = match row.status.as_str() {
        "pending" => "waiting on the queue",
        "in_progress" => "being worked now",
        "done" => "done today",
        _ => "on the queue",
    };
    TodayLine {
        status_word,
        status_class,
        due: wording::due(row.tasks.as_deref(), row.reasons.as_deref(), access),
        run_out,
        progress,
    }
}

/// A patient who is not (or no longer) on the refill clinic's lists: what the page says and whether it
/// offers to enrol them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EnrolmentLine {
    pub text: String,
    pub version: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PatientView {
    pub id: i64,
    pub name: String,
    pub birth_date: String,
    pub mrn: String,
    /// The record number as shown (an EHR UUID cut short, whole in the title).
    pub record: super::enrolment::RecordNumber,
    /// Where the patient stands with the refill clinic (`None`: enrolled).
    pub enrolment: Option<EnrolmentLine>,
    pub risk_tier: String,
    pub part2: bool,
    pub part2_open: bool,
    pub regimen: String,
    pub mme: String,
    pub mme_breakdown: MmeBreakdown,
    /// Today's queue item, when the patient is on today's queue.
    pub today: Option<TodayLine>,
    /// Diagnoses the rules use ("cancer, recorded 2020-04-01": an exclusion from the protocol) and
    /// benzodiazepines or OUD treatment on the medication list; Part 2 ones masked without access.
    pub conditions: Vec<String>,
    pub other_medications: Vec<String>,
    /// Active orders not recognised as an opioid: not counted in the MME, and said so (a new opioid
    /// missing from the drug table never drops out of the total unseen).
    pub unrecognised_orders: Vec<String>,
    /// Drug tests from collection to physician review: (collected, kind, where it is).
    pub drug_tests: Vec<(String, &'static str, String)>,
    /// Recorded refill requests, newest first: (date, kind, channel, what was said).
    pub requests: Vec<(String, String, String, String)>,
    /// The patient's exceptions, open and resolved, newest first.
    pub exceptions: Vec<super::exceptions::ExceptionView>,
    /// The taper plan in force: `None`, or active / paused / completed.
    #[serde(skip)]
    pub taper_state: Option<refill_rules::TaperState>,
    pub timeline: Vec<TimelineLine>,
    pub chart_svg: String,
    pub taper_steps: Vec<(String, String, String)>,
    pub messages: Vec<(String, String, String, String)>,
}

fn timeline_line(entry: &screens::TimelineEntry, access: Part2Access) -> TimelineLine {
    let (kind, text) = match entry.kind.as_str() {
        "fill" => ("Fill", format!("{} days of supply", entry.summary)),
        "uds" => ("UDS", format!("{} — {}", entry.summary, analytes_words(entry.detail.as_deref()))),
        "pdmp" => ("PDMP", format!("reviewed; findings {}", findings_words(entry.detail.as_deref()))),
        "agreement" => ("Agreement", format!("signed (text {})", entry.summary)),
        "naloxone" => ("Naloxone", entry.summary.clone()),
        "review" => ("Physician review", entry.summary.replace('_', " ")),
        _ => {
            let (word, _) = wording::status(Some(&entry.summary));
            let reasons: Vec<String> =
                wording::reasons(entry.detail.as_deref(), access).into_iter().map(|r| r.text).collect();
            ("Decision", if reasons.is_empty() { word.to_string() } else { format!("{word}: {}", reasons.join("; ")) })
        }
    };
    let text = access.show(entry.restricted, || text);
    TimelineLine { date: entry.on_date.to_string(), kind, text }
}

fn analytes_words(detail: Option<&str>) -> String {
    let Some(list) = detail.and_then(|d| serde_json::from_str::<Vec<serde_json::Value>>(d).ok()) else {
        return String::new();
    };
    list.iter()
        .map(|a| {
            let name = a.get("analyte").and_then(|v| v.as_str()).unwrap_or("?");
            let detected = a.get("detected").and_then(|v| v.as_bool()).unwrap_or(false);
            format!("{name} {}", if detected { "detected" } else { "not detected" })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn findings_words(detail: Option<&str>) -> String {
    match detail.and_then(|d| serde_json::from_str::<Vec<serde_json::Value>>(d).ok()) {
        Some(list) if list.is_empty() => "none".into(),
        Some(list) => format!("{} prescription(s) from other prescribers", list.len()),
        None => "none".into(),
    }
}

/// Everything the patient page shows. `names` maps actor ids to display names (the caller's
/// `queue::actor_names`, which a page loads once).
pub async fn load_patient_view(
    state: &AppState,
    patient_id: i64,
    access: impl Into<Part2Access>,
    names: &std::collections::HashMap<String, String>,
) -> Result<PatientView, WebError> {
    let access = access.into();
    let part2_open = access.is_open();
    let today = state.today();
    let header = screens::patient_header(&state.store, patient_id).await?;
    let regimen = screens::regimens(&state.store, &[patient_id]).await?;
    let timeline = screens::patient_timeline(&state.store, patient_id, 200).await?;
    let decided = screens::decided_mme(&state.store, patient_id).await?;
    let steps = screens::taper_steps(&state.store, patient_id).await?;
    let messages = screens::patient_messages(&state.store, patient_id).await?;
    let facts = state.store.load_patient_facts(refill_rules::PatientId(patient_id), today).await?;
    let queue_row = screens::queue_row(&state.store, today, patient_id).await?;
    let exception_rows = screens::patient_exceptions(&state.store, today, patient_id).await?;
    let unrecognised = state.store.unrecognised_orders(refill_rules::PatientId(patient_id)).await?;
    let drug_tests = state.store.uds_tests_for_patient(refill_rules::PatientId(patient_id)).await?;
    let requests = state.store.refill_requests_for_patient(refill_rules::PatientId(patient_id), 20).await?;
    let enrolment = state.store.patient_enrolment(refill_rules::PatientId(patient_id)).await?;
    // Signed physician decisions join the timeline on the clinic date of the signature. The decision
    // itself is always shown; its free-text rationale is masked for users without access when the
    // patient has Part 2 records or the exception rested on them (a rationale may quote them).
    let mut timeline: Vec<TimelineLine> = timeline.iter().map(|e| timeline_line(e, access)).collect();
    for row in &exception_rows {
        let (Some(signed_at), Some(signed)) = (row.signed_at, row.rationale.as_deref()) else { continue };
        let restricted =
            header.part2 || wording::reasons(Some(&row.reasons), false).iter().any(|reason| reason.restricted);
        let signed_by = row.signed_by.as_deref().map(|s| super::queue::actor_name(names, s)).unwrap_or_default();
        // The stored rationale reads "<decision>: <the physician's words>".
        let text = match signed.split_once(": ") {
            // The decision's own label stays; the physician's words are masked.
            Some((decision, words)) => {
                format!("{decision}: {} (signed by {signed_by})", access.show(restricted, || words.to_string()))
            }
            None => format!("{} (signed by {signed_by})", access.show(restricted, || signed.to_string())),
        };
        let date = signed_at.with_timezone(&state.settings.time_zone).date_naive().to_string();
        timeline.push(TimelineLine { date, kind: "Physician decision", text });
    }
    // Newest first; on one day the signature comes before the entries of the run it answered.
    timeline.sort_by(|a, b| {
        b.date.cmp(&a.date).then_with(|| (b.kind == "Physician decision").cmp(&(a.kind == "Physician decision")))
    });
    let past: Vec<(chrono::NaiveDate, f64)> =
        decided.iter().filter_map(|p| p.total_daily_mme.map(|m| (p.on_date, m))).collect();
    let planned: Vec<(chrono::NaiveDate, f64)> = steps
        .iter()
        .filter(|s| s.starts_on > today && s.state != "cancelled")
        .filter_map(|s| s.total_daily_mme.map(|m| (s.starts_on, m)))
        .collect();
    let name = format!("{}, {}", header.family_name, header.given_name);
    let latest_mme = decided.iter().rev().find_map(|p| p.total_daily_mme);
    Ok(PatientView {
        id: header.id,
        name: name.clone(),
        birth_date: header.birth_date.map(|d| d.to_string()).unwrap_or_else(|| "unknown".into()),
        mrn: header.mrn.clone().unwrap_or_else(|| "—".into()),
        record: super::enrolment::RecordNumber::of(header.mrn.as_deref()),
        enrolment: enrolment_line(&enrolment),
        risk_tier: header.risk_tier.clone(),
        part2: header.part2,
        part2_open,
        regimen: regimen_text(&regimen.iter().collect::<Vec<_>>(), access),
        mme: latest_mme.map(|m| format!("{m:.0}")).unwrap_or_else(|| "—".into()),
        mme_breakdown: mme_breakdown(&facts.regimen, state.policy.factor_set(), access),
        taper_state: facts.taper.as_ref().map(|taper| taper.state),
        today: queue_row.as_ref().map(|row| today_line(row, today, access)),
        conditions: facts
            .flags
            .iter()
            .map(|flag| {
                access.show(flag.confidentiality.is_restricted(), || {
                    format!("{}, recorded {}", condition_words(flag.kind), flag.recorded_on)
                })
            })
            .collect(),
        other_medications: facts
            .other_medications
            .iter()
            .filter(|medication| medication.active)
            .map(|medication| {
                access.show(medication.confidentiality.is_restricted(), || {
                    let class = match medication.class {
                        refill_rules::OtherMedicationClass::Benzodiazepine => "benzodiazepine",
                        refill_rules::OtherMedicationClass::OudTreatment => "OUD treatment",
                    };
                    match medication.started_on {
                        Some(on) => format!("{} ({class}, since {on})", medication.text),
                        None => format!("{} ({class})", medication.text),
                    }
                })
            })
            .collect(),
        // A product name may reveal a Part 2 treatment: masked like the rest of such a record.
        unrecognised_orders: unrecognised
            .into_iter()
            .map(|(label, reason)| access.show(header.part2, || format!("{label}: {reason}")))
            .collect(),
        drug_tests: drug_tests
            .iter()
            .map(|test| {
                let kind = match test.kind {
                    refill_rules::UdsKind::Scheduled => "scheduled",
                    refill_rules::UdsKind::ForCause => "for cause",
                };
                let mut status = test.status.as_str().replace('_', " ");
                if let Some(on) = test.confirmatory_sent_on {
                    status.push_str(&format!(" (sent for confirmation {on})"));
                }
                if let (Some(on), Some(by)) = (test.reviewed_on, test.reviewed_by.as_deref()) {
                    status.push_str(&format!(" (reviewed {on} by {})", super::queue::actor_name(names, by)));
                }
                (test.collected_on.to_string(), kind, status)
            })
            .collect(),
        requests: requests
            .into_iter()
            .map(|request| {
                // What the patient said may quote a restricted record.
                let note = match request.note {
                    Some(note) => access.show(header.part2, || note),
                    None => String::new(),
                };
                (request.requested_on.to_string(), request.kind.replace('_', " "), request.channel, note)
            })
            .collect(),
        exceptions: exception_rows
            .iter()
            .map(|row| super::exceptions::exception_view(row, today, names, access))
            .collect(),
        timeline,
        chart_svg: chart::mme_chart(
            "Daily MME over time: decided (solid) and planned taper steps (dashed)",
            &past,
            &planned,
            today,
        ),
        taper_steps: steps
            .iter()
            .map(|s| {
                (
                    s.starts_on.to_string(),
                    format!("plan {} step {} ({})", s.plan_id, s.step_number, s.state),
                    s.total_daily_mme.map(|m| format!("{m:.0}")).unwrap_or_else(|| "—".into()),
                )
            })
            .collect(),
        messages: messages
            .iter()
            .map(|m| {
                let at = chrono::DateTime::from_timestamp_millis(m.created_at)
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default();
                (at, m.kind.clone(), m.state.clone(), m.final_reason.clone().unwrap_or_default())
            })
            .collect(),
    })
}

/// What the page says of a patient who is not enrolled (`None` when enrolled).
fn enrolment_line(state: &refill_store::EnrolmentState) -> Option<EnrolmentLine> {
    let text = match state.status {
        refill_store::Enrolment::Enrolled => return None,
        refill_store::Enrolment::NotEnrolled => {
            "Not enrolled in the refill clinic: imported from the EHR without an active opioid order, so the daily \
             run does not decide this patient."
                .to_string()
        }
        refill_store::Enrolment::Dismissed => format!(
            "Not enrolled in the refill clinic: dismissed from the not-enrolled list{}.",
            state.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
        ),
    };
    Some(EnrolmentLine { text, version: state.version })
}

/// A clinical flag in words, saying what it means for the protocol where that matters.
fn condition_words(kind: refill_rules::ClinicalFlagKind) -> &'static str {
    use refill_rules::ClinicalFlagKind::*;
    match kind {
        Cancer => "cancer (outside the refill protocol: a physician decides)",
        SickleCell => "sickle cell disease (outside the refill protocol: a physician decides)",
        Palliative => "palliative care (outside the refill protocol: a physician decides)",
        EndOfLife => "end-of-life care (outside the refill protocol: a physician decides)",
        OverdoseHistory => "overdose history",
        SubstanceUseDisorderHistory => "substance use disorder history",
        SleepDisorderedBreathing => "sleep-disordered breathing",
        OverdoseOrSedationSignal => "overdose or sedation event",
    }
}

#[derive(Template)]
#[template(path = "web/patient.html")]
struct PatientPage {
    chrome: Chrome,
    patient: PatientView,
    can_break_glass: bool,
    taper_care: super::taper::TaperCareView,
}

pub async fn page(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(patient_id): Path<i64>,
) -> Result<Response, WebError> {
    let access = Part2Access::for_patient(&state, &principal, patient_id).await?;
    let part2_open = access.is_open();
    let names = super::queue::actor_names(&state).await?;
    let patient = load_patient_view(&state, patient_id, access, &names).await?;
    audit_view(
        &state,
        &principal,
        "patient.view",
        "patient",
        Some(patient_id.to_string()),
        Some(patient_id),
        serde_json::json!({ "part2_open": part2_open }),
    )
    .await?;
    let can_break_glass = patient.part2 && !part2_open && principal.role() == Some(accounts::Role::Physician);
    let taper_care = super::taper::care_view(&state, patient_id, part2_open, patient.mme.parse().ok()).await?;
    render(&PatientPage { chrome: Chrome::new(&state, &principal, ""), patient, can_break_glass, taper_care })
}

#[derive(Debug, Deserialize)]
pub struct BreakGlassForm {
    pub reason: String,
    #[serde(default)]
    pub csrf: Option<String>,
}

/// Why a break-the-glass reason is not a reason (the use case's check, for the screens).
pub fn break_glass_reason_problem(reason: &str) -> Option<&'static str> {
    refill_app::privacy::reason_problem(reason)
}

/// Grant this physician access to the patient's Part 2 facts for the configured time, with the reason
/// and an audit event in the same transaction.
pub async fn grant(state: &AppState, principal: &Principal, patient_id: i64, reason: &str) -> Result<i64, WebError> {
    let user = principal.person()?;
    let reason = reason.trim();
    crate::input::check_text("reason", reason, crate::input::MAX_NOTE_CHARS, true)?;
    screens::patient_header(&state.store, patient_id).await?;
    let now_ms = state.clock.now_ms();
    let expires_ms = now_ms + i64::try_from(state.settings.break_glass_duration.as_millis()).unwrap_or(3_600_000);
    // Read through the pool before the transaction holds the writer.
    let names = super::queue::actor_names(state).await?;
    let mut tx = state.store.begin().await?;
    let grant = refill_app::privacy::break_the_glass(
        &state.app(),
        &mut tx,
        &actor(principal),
        user.id,
        refill_rules::PatientId(patient_id),
        reason,
        now_ms,
        expires_ms,
    )
    .await
    .map_err(|e| super::queue::app_error(e, &names))?;
    tx.commit().await?;
    tracing::warn!(grant_id = grant, "break-glass access granted");
    Ok(expires_ms)
}

pub async fn break_glass(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(patient_id): Path<i64>,
    Form(form): Form<BreakGlassForm>,
) -> Result<Response, WebError> {
    grant(&state, &principal, patient_id, &form.reason).await?;
    Ok(Redirect::to(&format!("/patients/{patient_id}")).into_response())
}

#[cfg(test)]
mod tests {
    use refill_rules::mme::FactorSet;
    use refill_rules::{Confidentiality, DoseQuantity, DoseUnit, MedicationOrder, OrderPurpose};

    use super::mme_breakdown;

    fn order(id: &str, text: &str, mg: f64, per_day: f64, confidentiality: Confidentiality) -> MedicationOrder {
        MedicationOrder {
            id: id.into(),
            rxcui: None,
            text: Some(text.into()),
            dose: Some(DoseQuantity { value: mg, unit: DoseUnit::Milligram }),
            doses_per_day: Some(per_day),
            days_supply: Some(30),
            dispense_quantity: None,
            prescriber: None,
            purpose: OrderPurpose::Pain,
            confidentiality,
        }
    }

    #[test]
    fn each_order_shows_its_dose_and_factor_and_part2_lines_are_masked_but_counted() {
        let regimen = [
            order("a", "oxycodone hydrochloride 5 MG Oral Tablet", 10.0, 3.0, Confidentiality::Normal),
            order("b", "methadone hydrochloride 10 MG Oral Tablet", 10.0, 1.0, Confidentiality::Part2),
        ];
        let closed = mme_breakdown(&regimen, FactorSet::Cdc2022, crate::part2::Part2Access::Masked);
        assert_eq!(closed.lines[0].computation, "oxycodone 30 mg/day × factor 1.5");
        assert_eq!(closed.lines[0].mme, "45");
        assert_eq!(closed.lines[1].medication, crate::wording::RESTRICTED);
        assert!(closed.lines[1].computation.is_empty() && closed.lines[1].mme.is_empty());
        let open = mme_breakdown(&regimen, FactorSet::Cdc2022, crate::part2::Part2Access::Open);
        assert!(open.lines[1].computation.starts_with("methadone 10 mg/day × factor"), "{:?}", open.lines[1]);
        assert_eq!(closed.total, open.total, "the total counts the restricted order either way");
        assert_ne!(closed.total, "45 MME/day");
    }
}
