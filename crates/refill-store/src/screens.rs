//! Read models for the web screens: the staff queue page, the exception list and detail, the patient
//! page and the clinic dashboard. Each is one or a few queries shaped for one screen; JSON columns come
//! back as text (`CAST(... AS TEXT)` reads SQLite text and PostgreSQL jsonb alike) for the web crate to
//! interpret.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::FromRow;

use crate::queue::QUEUE_ORDER;
use crate::store::with_read_pool;
use crate::{Store, StoreError};

/// Which rows of today's queue to show: the tallies across the top of the screen are these filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum QueueFilter {
    /// What the refill desk can act on: not done and not waiting on a physician (the queue screen's
    /// default; rows with a physician sit behind their own tally).
    Desk,
    /// Everything not done yet.
    #[default]
    Open,
    /// Approved: ready to prepare for signature.
    Ready,
    /// Approved with tasks to do first.
    NeedsTask,
    OnHold,
    /// Escalated to a physician (urgent or not).
    WithPhysician,
    /// Supply runs out today or tomorrow.
    RunningOut,
    Done,
}

impl QueueFilter {
    pub const ALL: [QueueFilter; 8] = [
        QueueFilter::Desk,
        QueueFilter::Open,
        QueueFilter::Ready,
        QueueFilter::NeedsTask,
        QueueFilter::OnHold,
        QueueFilter::WithPhysician,
        QueueFilter::RunningOut,
        QueueFilter::Done,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueFilter::Desk => "desk",
            QueueFilter::Open => "open",
            QueueFilter::Ready => "ready",
            QueueFilter::NeedsTask => "tasks",
            QueueFilter::OnHold => "hold",
            QueueFilter::WithPhysician => "physician",
            QueueFilter::RunningOut => "running_out",
            QueueFilter::Done => "done",
        }
    }

    pub fn parse(text: &str) -> Option<QueueFilter> {
        QueueFilter::ALL.into_iter().find(|f| f.as_str() == text)
    }

    /// The WHERE fragment (fixed text; `$4` is the "runs out by" date).
    fn condition(self) -> &'static str {
        match self {
            QueueFilter::Desk => {
                "q.status <> 'done' AND (q.outcome IS NULL OR q.outcome NOT IN ('ESCALATE', 'ESCALATE_URGENT'))"
            }
            QueueFilter::Open => "q.status <> 'done'",
            QueueFilter::Ready => "q.status <> 'done' AND q.outcome = 'APPROVE'",
            QueueFilter::NeedsTask => "q.status <> 'done' AND q.outcome = 'APPROVE_WITH_TASKS'",
            QueueFilter::OnHold => "q.status <> 'done' AND q.outcome = 'HOLD'",
            QueueFilter::WithPhysician => "q.status <> 'done' AND q.outcome IN ('ESCALATE', 'ESCALATE_URGENT')",
            QueueFilter::RunningOut => "q.status <> 'done' AND q.run_out_on <= $4",
            QueueFilter::Done => "q.status = 'done'",
        }
    }
}

/// One row of the staff queue.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct QueueRow {
    pub queue_id: i64,
    pub patient_id: i64,
    pub clinic_date: NaiveDate,
    pub outcome: Option<String>,
    pub urgency: i64,
    pub run_out_on: Option<NaiveDate>,
    pub status: String,
    pub assigned_to: Option<String>,
    pub version: i64,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
    pub mrn: Option<String>,
    pub given_name: String,
    pub family_name: String,
    pub part2: bool,
    pub decision_id: Option<i64>,
    /// JSON array of reasons in the stable form of `refill_rules::decision` (as stored by the store).
    pub reasons: Option<String>,
    /// JSON array of task names.
    pub tasks: Option<String>,
    pub total_daily_mme: Option<f64>,
    pub eligible_on: Option<NaiveDate>,
    pub policy_version: Option<String>,
    /// `open`, `not_due` or `prepared` (where the refill is in its cycle).
    pub refill_window: Option<String>,
    /// The physician decision that stood when the row's decision was made.
    pub physician_decision_id: Option<i64>,
}

const QUEUE_COLUMNS: &str = "q.id AS queue_id, q.patient_id, q.clinic_date, q.outcome, q.urgency, q.run_out_on, \
     q.status, q.assigned_to, q.version, q.updated_by, q.updated_at, p.mrn, p.given_name, p.family_name, p.part2, \
     d.id AS decision_id, CAST(d.reasons AS TEXT) AS reasons, CAST(d.tasks AS TEXT) AS tasks, d.total_daily_mme, \
     d.eligible_on, d.policy_version, d.refill_window, d.physician_decision_id";

/// The counts across the top of the queue screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, FromRow, serde::Serialize)]
pub struct QueueTallies {
    pub desk: Option<i64>,
    pub open: Option<i64>,
    pub ready: Option<i64>,
    pub needs_task: Option<i64>,
    pub on_hold: Option<i64>,
    pub with_physician: Option<i64>,
    pub running_out: Option<i64>,
    pub done: Option<i64>,
}

impl QueueTallies {
    pub fn count(&self, filter: QueueFilter) -> i64 {
        match filter {
            QueueFilter::Desk => self.desk,
            QueueFilter::Open => self.open,
            QueueFilter::Ready => self.ready,
            QueueFilter::NeedsTask => self.needs_task,
            QueueFilter::OnHold => self.on_hold,
            QueueFilter::WithPhysician => self.with_physician,
            QueueFilter::RunningOut => self.running_out,
            QueueFilter::Done => self.done,
        }
        .unwrap_or(0)
    }
}

/// One page of today's queue: urgent escalations first, then by the day the supply runs out (unknown
/// first: no fill history needs a look), then by status (escalated, hold, tasks, approve).
pub async fn queue_page(
    store: &Store,
    clinic_date: NaiveDate,
    filter: QueueFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<QueueRow>, StoreError> {
    let runs_out_by = clinic_date.succ_opt().unwrap_or(clinic_date);
    // The page is cut from the queue rows alone (the screen index walks them in order) and only its rows
    // are joined to patients and decisions: rows skipped by OFFSET are never joined, so the last page of
    // 5,000 costs about what the first does.
    let sql = format!(
        "SELECT {QUEUE_COLUMNS} FROM ( \
           SELECT * FROM daily_queue q WHERE q.clinic_date = $1 AND {} \
           ORDER BY {QUEUE_ORDER} LIMIT $2 OFFSET $3 \
         ) q JOIN patients p ON p.id = q.patient_id \
         LEFT JOIN decisions d ON d.id = q.decision_id \
         ORDER BY {QUEUE_ORDER}",
        filter.condition()
    );
    let rows = with_read_pool!(store, pool => {
        let query = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(clinic_date).bind(limit).bind(offset);
        // Only the "runs out soon" filter names the fourth parameter.
        let query = if filter == QueueFilter::RunningOut { query.bind(runs_out_by) } else { query };
        query.fetch_all(pool).await?
    });
    Ok(rows)
}

/// Today's queue row of one patient.
pub async fn queue_row(store: &Store, clinic_date: NaiveDate, patient_id: i64) -> Result<Option<QueueRow>, StoreError> {
    let sql = format!(
        "SELECT {QUEUE_COLUMNS} FROM daily_queue q JOIN patients p ON p.id = q.patient_id \
         LEFT JOIN decisions d ON d.id = q.decision_id WHERE q.clinic_date = $1 AND q.patient_id = $2"
    );
    let row = with_read_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(clinic_date)
        .bind(patient_id)
        .fetch_optional(pool)
        .await?);
    Ok(row)
}

pub async fn queue_tallies(store: &Store, clinic_date: NaiveDate) -> Result<QueueTallies, StoreError> {
    let runs_out_by = clinic_date.succ_opt().unwrap_or(clinic_date);
    let tallies = with_read_pool!(store, pool => sqlx::query_as(
        "SELECT \
           SUM(CASE WHEN status <> 'done' AND (outcome IS NULL OR outcome NOT IN ('ESCALATE', 'ESCALATE_URGENT')) \
             THEN 1 ELSE 0 END) AS desk, \
           SUM(CASE WHEN status <> 'done' THEN 1 ELSE 0 END) AS open, \
           SUM(CASE WHEN status <> 'done' AND outcome = 'APPROVE' THEN 1 ELSE 0 END) AS ready, \
           SUM(CASE WHEN status <> 'done' AND outcome = 'APPROVE_WITH_TASKS' THEN 1 ELSE 0 END) AS needs_task, \
           SUM(CASE WHEN status <> 'done' AND outcome = 'HOLD' THEN 1 ELSE 0 END) AS on_hold, \
           SUM(CASE WHEN status <> 'done' AND outcome IN ('ESCALATE', 'ESCALATE_URGENT') THEN 1 ELSE 0 END) AS with_physician, \
           SUM(CASE WHEN status <> 'done' AND run_out_on <= $2 THEN 1 ELSE 0 END) AS running_out, \
           SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END) AS done \
         FROM daily_queue WHERE clinic_date = $1")
        .bind(clinic_date)
        .bind(runs_out_by)
        .fetch_one(pool)
        .await?);
    Ok(tallies)
}

/// One active medication order as the screens show it.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct RegimenLine {
    pub patient_id: i64,
    pub source_id: String,
    pub rxcui: Option<String>,
    pub text: Option<String>,
    pub dose_value: Option<f64>,
    pub dose_unit: Option<String>,
    pub doses_per_day: Option<f64>,
    pub days_supply: Option<i64>,
    pub purpose: String,
    pub confidentiality: String,
}

/// The active orders of several patients (one query for a whole queue page).
pub async fn regimens(store: &Store, patient_ids: &[i64]) -> Result<Vec<RegimenLine>, StoreError> {
    if patient_ids.is_empty() {
        return Ok(Vec::new());
    }
    // The list is integers formatted by us, so building the IN list is safe.
    let ids: Vec<String> = patient_ids.iter().map(i64::to_string).collect();
    let sql = format!(
        "SELECT patient_id, source_id, rxcui, text, dose_value, dose_unit, doses_per_day, days_supply, purpose, \
         confidentiality FROM medication_orders WHERE active AND patient_id IN ({}) ORDER BY patient_id, id",
        ids.join(",")
    );
    let rows = with_read_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?);
    Ok(rows)
}

/// One open exception in the physician's list.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct ExceptionRow {
    pub exception_id: i64,
    pub patient_id: i64,
    pub decision_id: i64,
    pub clinic_date: NaiveDate,
    pub status: String,
    pub urgency: String,
    pub reason_codes: String,
    pub raised_at: DateTime<Utc>,
    pub raised_by: String,
    pub resolution: Option<String>,
    pub rationale: Option<String>,
    pub signed_by: Option<String>,
    pub signed_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub mrn: Option<String>,
    pub given_name: String,
    pub family_name: String,
    pub part2: bool,
    pub run_out_on: Option<NaiveDate>,
    pub total_daily_mme: Option<f64>,
    pub outcome: String,
    pub reasons: String,
    pub policy_version: String,
    /// The physician decision that stood when the exception was raised: its reasons are new since.
    pub follows_decision_id: Option<i64>,
}

const EXCEPTION_COLUMNS: &str = "e.id AS exception_id, e.patient_id, e.decision_id, e.clinic_date, e.status, \
     e.urgency, CAST(e.reason_codes AS TEXT) AS reason_codes, e.raised_at, e.raised_by, e.resolution, e.rationale, \
     e.signed_by, e.signed_at, e.version, p.mrn, p.given_name, p.family_name, p.part2, q.run_out_on, \
     d.total_daily_mme, d.outcome, CAST(d.reasons AS TEXT) AS reasons, d.policy_version, e.follows_decision_id";

/// Open exceptions: urgent first, then by the day the supply runs out, then oldest first.
pub async fn open_exceptions(
    store: &Store,
    clinic_date: NaiveDate,
    limit: i64,
) -> Result<Vec<ExceptionRow>, StoreError> {
    open_exceptions_page(store, clinic_date, limit, 0).await
}

/// One page of the open exceptions, in the list's order (urgent first, then by supply run-out, then the
/// oldest): the physician's list is paged.
pub async fn open_exceptions_page(
    store: &Store,
    clinic_date: NaiveDate,
    limit: i64,
    offset: i64,
) -> Result<Vec<ExceptionRow>, StoreError> {
    let sql = format!(
        "SELECT {EXCEPTION_COLUMNS} FROM exceptions e JOIN patients p ON p.id = e.patient_id \
         JOIN decisions d ON d.id = e.decision_id \
         LEFT JOIN daily_queue q ON q.patient_id = e.patient_id AND q.clinic_date = $1 \
         WHERE e.status = 'open' \
         ORDER BY CASE WHEN e.urgency = 'urgent' THEN 0 ELSE 1 END, q.run_out_on NULLS LAST, e.raised_at, e.id \
         LIMIT $2 OFFSET $3"
    );
    let rows = with_read_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(clinic_date)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await?);
    Ok(rows)
}

/// How many exceptions are open, and how many of them urgent (the list's heading).
pub async fn open_exception_counts(store: &Store) -> Result<(i64, i64), StoreError> {
    let counts: (i64, i64) = with_read_pool!(store, pool => sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN urgency = 'urgent' THEN 1 ELSE 0 END), 0) \
         FROM exceptions WHERE status = 'open'")
        .fetch_one(pool)
        .await?);
    Ok(counts)
}

pub async fn exception(store: &Store, clinic_date: NaiveDate, exception_id: i64) -> Result<ExceptionRow, StoreError> {
    let sql = format!(
        "SELECT {EXCEPTION_COLUMNS} FROM exceptions e JOIN patients p ON p.id = e.patient_id \
         JOIN decisions d ON d.id = e.decision_id \
         LEFT JOIN daily_queue q ON q.patient_id = e.patient_id AND q.clinic_date = $1 WHERE e.id = $2"
    );
    let row: Option<ExceptionRow> = with_read_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(clinic_date)
        .bind(exception_id)
        .fetch_optional(pool)
        .await?);
    row.ok_or_else(|| StoreError::NotFound(format!("exception {exception_id}")))
}

/// Exceptions of one patient (open and resolved), newest first.
pub async fn patient_exceptions(
    store: &Store,
    clinic_date: NaiveDate,
    patient_id: i64,
) -> Result<Vec<ExceptionRow>, StoreError> {
    let sql = format!(
        "SELECT {EXCEPTION_COLUMNS} FROM exceptions e JOIN patients p ON p.id = e.patient_id \
         JOIN decisions d ON d.id = e.decision_id \
         LEFT JOIN daily_queue q ON q.patient_id = e.patient_id AND q.clinic_date = $1 \
         WHERE e.patient_id = $2 ORDER BY e.raised_at DESC, e.id DESC LIMIT 50"
    );
    let rows = with_read_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(clinic_date)
        .bind(patient_id)
        .fetch_all(pool)
        .await?);
    Ok(rows)
}

/// The header of the patient page.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct PatientHeader {
    pub id: i64,
    pub mrn: Option<String>,
    pub given_name: String,
    pub family_name: String,
    pub birth_date: Option<NaiveDate>,
    pub sex: String,
    pub risk_tier: String,
    pub prescriber_of_record: Option<String>,
    pub part2: bool,
    pub active: bool,
    pub version: i64,
}

pub async fn patient_header(store: &Store, patient_id: i64) -> Result<PatientHeader, StoreError> {
    let row: Option<PatientHeader> = with_read_pool!(store, pool => sqlx::query_as(
        "SELECT id, mrn, given_name, family_name, birth_date, sex, risk_tier, prescriber_of_record, part2, active, \
         version FROM patients WHERE id = $1")
        .bind(patient_id)
        .fetch_optional(pool)
        .await?);
    row.ok_or_else(|| StoreError::NotFound(format!("patient {patient_id}")))
}

/// One entry of the patient timeline: what happened, when, and whether it is a Part 2 record.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct TimelineEntry {
    pub on_date: NaiveDate,
    /// `fill`, `uds`, `pdmp`, `agreement`, `naloxone`, `decision`, `review`.
    pub kind: String,
    /// What the screen prints (built by SQL from stored columns; JSON columns as text).
    pub summary: String,
    pub detail: Option<String>,
    pub restricted: bool,
}

/// The patient's timeline, newest first: fills, UDS results, PDMP reviews, agreements, naloxone,
/// physician reviews and decisions.
pub async fn patient_timeline(store: &Store, patient_id: i64, limit: i64) -> Result<Vec<TimelineEntry>, StoreError> {
    let rows = with_read_pool!(store, pool => sqlx::query_as(
        "SELECT on_date, kind, summary, detail, restricted FROM ( \
           SELECT filled_on AS on_date, 'fill' AS kind, CAST(days_supply AS TEXT) AS summary, \
                  order_source_id AS detail, false AS restricted, id AS ord FROM fills WHERE patient_id = $1 \
           UNION ALL \
           SELECT collected_on, 'uds', kind || CASE WHEN confirmatory THEN ' confirmatory' ELSE '' END, \
                  CAST(analytes AS TEXT), confidentiality = 'part2', id FROM uds_results WHERE patient_id = $1 \
           UNION ALL \
           SELECT reviewed_on, 'pdmp', reviewed_by, CAST(findings AS TEXT), false, id FROM pdmp_reviews WHERE patient_id = $1 \
           UNION ALL \
           SELECT signed_on, 'agreement', text_version, prescriber_id, false, id FROM agreements WHERE patient_id = $1 \
           UNION ALL \
           SELECT occurred_on, 'naloxone', kind, recorded_by, false, id FROM naloxone_events WHERE patient_id = $1 \
           UNION ALL \
           SELECT reviewed_on, 'review', kind, note, false, id FROM physician_reviews WHERE patient_id = $1 \
           UNION ALL \
           SELECT clinic_date, 'decision', outcome, CAST(reasons AS TEXT), false, id FROM decisions WHERE patient_id = $1 \
         ) t ORDER BY on_date DESC, kind, ord DESC LIMIT $2")
        .bind(patient_id)
        .bind(limit)
        .fetch_all(pool)
        .await?);
    Ok(rows)
}

/// One point of the MME chart: the regimen's daily MME on a date (decisions in the past, taper steps
/// planned).
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct MmePoint {
    pub on_date: NaiveDate,
    pub total_daily_mme: Option<f64>,
}

/// Daily MME as decided on each clinic date (the last decision of the day).
pub async fn decided_mme(store: &Store, patient_id: i64) -> Result<Vec<MmePoint>, StoreError> {
    let rows = with_read_pool!(store, pool => sqlx::query_as(
        "SELECT clinic_date AS on_date, total_daily_mme FROM decisions WHERE id IN \
         (SELECT MAX(id) FROM decisions WHERE patient_id = $1 GROUP BY clinic_date) ORDER BY clinic_date")
        .bind(patient_id)
        .fetch_all(pool)
        .await?);
    Ok(rows)
}

/// A taper plan with its steps, for the chart and the patient page.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct TaperStepRow {
    pub plan_id: i64,
    pub state: String,
    pub plan_started_on: NaiveDate,
    pub step_number: i64,
    pub starts_on: NaiveDate,
    pub total_daily_mme: Option<f64>,
}

pub async fn taper_steps(store: &Store, patient_id: i64) -> Result<Vec<TaperStepRow>, StoreError> {
    let rows = with_read_pool!(store, pool => sqlx::query_as(
        "SELECT t.id AS plan_id, t.state, t.started_on AS plan_started_on, s.step_number, s.starts_on, s.total_daily_mme \
         FROM taper_plans t JOIN taper_steps s ON s.plan_id = t.id WHERE t.patient_id = $1 \
         ORDER BY t.id, s.step_number")
        .bind(patient_id)
        .fetch_all(pool)
        .await?);
    Ok(rows)
}

/// One email to or about a patient and how its delivery went.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct MessageRow {
    pub kind: String,
    pub audience: String,
    pub state: String,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub attempts: i64,
    pub final_reason: Option<String>,
}

pub async fn patient_messages(store: &Store, patient_id: i64) -> Result<Vec<MessageRow>, StoreError> {
    let rows = with_read_pool!(store, pool => sqlx::query_as(
        "SELECT kind, audience, state, created_at, sent_at, attempts, final_reason FROM email_outbox \
         WHERE patient_id = $1 ORDER BY created_at DESC LIMIT 50")
        .bind(patient_id)
        .fetch_all(pool)
        .await?);
    Ok(rows)
}

/// Counts on the clinic dashboard.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Dashboard {
    /// Patients by the daily MME of their latest decision: `<50`, `50-89`, `90-199`, `200+`, `unknown`.
    pub mme_bands: Vec<(String, i64)>,
    /// Taper plans by state: `active`, `paused`, `completed`, `cancelled`, with the mean days on taper
    /// (active: start to today; paused: start to the pause; none for completed and cancelled plans).
    pub tapers: Vec<(String, i64, Option<f64>)>,
    /// Over the whole clinic (each active patient's latest decision), how many carry each overdue
    /// reason now and as of a week ago: (code, now, a week ago; `None` when no decision is that old).
    pub overdue: Vec<(String, i64, Option<i64>)>,
    /// Open exceptions by their clinic date.
    pub open_exception_dates: Vec<(NaiveDate, String)>,
    /// Emails by delivery state (`failed` are the delivery failures).
    pub messages: Vec<(String, i64)>,
    /// Jobs that ran out of attempts, by kind.
    pub dead_jobs: Vec<(String, i64)>,
}

pub async fn dashboard(store: &Store, clinic_date: NaiveDate) -> Result<Dashboard, StoreError> {
    let mme_bands: Vec<(String, i64)> = with_read_pool!(store, pool => sqlx::query_as(
        "SELECT band, COUNT(*) FROM (SELECT CASE \
             WHEN d.total_daily_mme IS NULL THEN 'unknown' \
             WHEN d.total_daily_mme < 50 THEN '<50' \
             WHEN d.total_daily_mme < 90 THEN '50-89' \
             WHEN d.total_daily_mme < 200 THEN '90-199' \
             ELSE '200+' END AS band \
           FROM decisions d WHERE d.id IN (SELECT MAX(id) FROM decisions GROUP BY patient_id)) b GROUP BY band")
        .fetch_all(pool)
        .await?);
    // Time on taper: an active plan from its start to today, a paused one from its start to the pause.
    // Completed and superseded (cancelled) plans are counted without a time: the store keeps no end date.
    let plans: Vec<(String, NaiveDate, Option<NaiveDate>)> = with_read_pool!(store, pool => sqlx::query_as(
        "SELECT state, started_on, paused_on FROM taper_plans ORDER BY state")
        .fetch_all(pool)
        .await?);
    let mut tapers: Vec<(String, i64, Option<f64>)> = Vec::new();
    for (state, started_on, paused_on) in plans {
        let until = match state.as_str() {
            "active" => Some(clinic_date),
            "paused" => Some(paused_on.unwrap_or(clinic_date)),
            _ => None,
        };
        let days = until.map(|until| (until - started_on).num_days().max(0) as f64);
        match tapers.iter_mut().find(|(s, _, _)| *s == state) {
            Some((_, count, total)) => {
                *count += 1;
                *total = match (*total, days) {
                    (Some(total), Some(days)) => Some(total + days),
                    (total, _) => total,
                };
            }
            None => tapers.push((state, 1, days)),
        }
    }
    for (_, count, total) in &mut tapers {
        *total = total.map(|sum| sum / *count as f64);
    }
    // Overdue monitoring over the whole clinic: each active patient's latest decision as of today, and
    // as of a week ago (history only when a decision that old exists; never a made-up zero).
    let week_ago = clinic_date - chrono::Duration::days(7);
    let counts = |as_of: NaiveDate| async move {
        let sums: Vec<String> = OVERDUE_CODES
            .iter()
            .enumerate()
            .map(|(i, _)| {
                format!("COALESCE(SUM(CASE WHEN CAST(d.reasons AS TEXT) LIKE ${} THEN 1 ELSE 0 END), 0)", i + 2)
            })
            .collect();
        let sql = format!(
            "SELECT COUNT(*), {} FROM decisions d JOIN patients p ON p.id = d.patient_id AND p.active \
             WHERE d.id IN (SELECT MAX(id) FROM decisions WHERE clinic_date <= $1 GROUP BY patient_id)",
            sums.join(", ")
        );
        let row: (i64, i64, i64, i64, i64, i64, i64) = with_read_pool!(store, pool => {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(as_of);
            for code in OVERDUE_CODES {
                query = query.bind(format!("%\"{code}\"%"));
            }
            query.fetch_one(pool).await?
        });
        Ok::<_, StoreError>((row.0, [row.1, row.2, row.3, row.4, row.5, row.6]))
    };
    let (_, now) = counts(clinic_date).await?;
    let (decided_then, then) = counts(week_ago).await?;
    let overdue = OVERDUE_CODES
        .iter()
        .enumerate()
        .map(|(i, code)| (code.to_string(), now[i], (decided_then > 0).then_some(then[i])))
        .collect();
    let open_exception_dates: Vec<(NaiveDate, String)> = with_read_pool!(store, pool => sqlx::query_as(
        "SELECT clinic_date, urgency FROM exceptions WHERE status = 'open'")
        .fetch_all(pool)
        .await?);
    let messages: Vec<(String, i64)> = with_read_pool!(store, pool => sqlx::query_as(
        "SELECT state, COUNT(*) FROM email_outbox GROUP BY state ORDER BY state")
        .fetch_all(pool)
        .await?);
    let dead_jobs: Vec<(String, i64)> = with_read_pool!(store, pool => sqlx::query_as(
        "SELECT kind, COUNT(*) FROM job WHERE state = 'dead' GROUP BY kind ORDER BY kind")
        .fetch_all(pool)
        .await?);
    Ok(Dashboard { mme_bands, tapers, overdue, open_exception_dates, messages, dead_jobs })
}

/// The list behind one of the dashboard's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatientList {
    /// Patients whose latest decision's daily MME is in a band (the dashboard's bands).
    MmeBand(MmeBand),
    /// Patients with a taper plan in a state: `active`, `paused`, `completed` or `cancelled`.
    TaperState(&'static str),
    /// Active patients whose latest decision carries an overdue-monitoring reason code.
    Overdue(&'static str),
}

/// The dashboard's MME bands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmeBand {
    Under50,
    From50To89,
    From90To199,
    From200,
    Unknown,
}

impl MmeBand {
    pub const ALL: [MmeBand; 5] =
        [MmeBand::Under50, MmeBand::From50To89, MmeBand::From90To199, MmeBand::From200, MmeBand::Unknown];

    /// The band's name as the dashboard counts it (`<50`, `50-89`, `90-199`, `200+`, `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            MmeBand::Under50 => "<50",
            MmeBand::From50To89 => "50-89",
            MmeBand::From90To199 => "90-199",
            MmeBand::From200 => "200+",
            MmeBand::Unknown => "unknown",
        }
    }

    pub fn parse(text: &str) -> Option<MmeBand> {
        MmeBand::ALL.into_iter().find(|band| band.as_str() == text)
    }

    /// The SQL condition on `d.total_daily_mme` (a fixed string per band).
    fn condition(self) -> &'static str {
        match self {
            MmeBand::Under50 => "d.total_daily_mme < 50",
            MmeBand::From50To89 => "d.total_daily_mme >= 50 AND d.total_daily_mme < 90",
            MmeBand::From90To199 => "d.total_daily_mme >= 90 AND d.total_daily_mme < 200",
            MmeBand::From200 => "d.total_daily_mme >= 200",
            MmeBand::Unknown => "d.total_daily_mme IS NULL",
        }
    }
}

/// The overdue-monitoring reason codes the dashboard counts.
pub const OVERDUE_CODES: [&str; 6] = [
    "uds_overdue",
    "pdmp_review_overdue",
    "agreement_expired",
    "agreement_missing",
    "physician_review_overdue",
    "high_mme_review_overdue",
];

/// The taper plan states the dashboard counts.
pub const TAPER_STATES: [&str; 4] = ["active", "paused", "completed", "cancelled"];

/// One patient of a dashboard list: who, the latest daily MME, and the date that put them on it (the
/// plan's start for tapers, today's supply run-out for overdue monitoring).
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct PatientListRow {
    pub patient_id: i64,
    pub given_name: String,
    pub family_name: String,
    pub mrn: Option<String>,
    pub total_daily_mme: Option<f64>,
    pub on_date: Option<NaiveDate>,
}

/// The patients behind a dashboard number, by family name, at most `limit`.
pub async fn patient_list(
    store: &Store,
    clinic_date: NaiveDate,
    list: PatientList,
    limit: i64,
) -> Result<Vec<PatientListRow>, StoreError> {
    const COLUMNS: &str = "p.id AS patient_id, p.given_name, p.family_name, p.mrn, d.total_daily_mme";
    const LATEST: &str = "(SELECT MAX(id) FROM decisions WHERE patient_id = p.id)";
    const ORDER: &str = "ORDER BY p.family_name, p.given_name, p.id";
    // The SQL is fixed text chosen by the enum; values are bound.
    let sql = match list {
        PatientList::MmeBand(band) => format!(
            "SELECT {COLUMNS}, d.clinic_date AS on_date FROM patients p JOIN decisions d ON d.id = {LATEST} \
             WHERE {} {ORDER} LIMIT $1",
            band.condition()
        ),
        PatientList::TaperState(_) => format!(
            "SELECT {COLUMNS}, MAX(t.started_on) AS on_date FROM taper_plans t JOIN patients p ON p.id = t.patient_id \
             LEFT JOIN decisions d ON d.id = {LATEST} WHERE t.state = $1 \
             GROUP BY p.id, p.given_name, p.family_name, p.mrn, d.total_daily_mme {ORDER} LIMIT $2"
        ),
        PatientList::Overdue(_) => format!(
            "SELECT {COLUMNS}, d.clinic_date AS on_date FROM patients p \
             JOIN decisions d ON d.id = (SELECT MAX(id) FROM decisions WHERE patient_id = p.id AND clinic_date <= $1) \
             WHERE p.active AND CAST(d.reasons AS TEXT) LIKE $2 {ORDER} LIMIT $3"
        ),
    };
    let rows = with_read_pool!(store, pool => {
        let query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        let query = match list {
            PatientList::MmeBand(_) => query.bind(limit),
            PatientList::TaperState(state) => query.bind(state).bind(limit),
            PatientList::Overdue(code) => query.bind(clinic_date).bind(format!("%\"{code}\"%")).bind(limit),
        };
        query.fetch_all(pool).await?
    });
    Ok(rows)
}

/// How many of the decisions for `clinic_date` came to each outcome (for `/metrics`).
pub async fn decision_outcome_counts(store: &Store, clinic_date: NaiveDate) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = with_read_pool!(store, pool => sqlx::query_as(
        "SELECT outcome, COUNT(*) FROM decisions WHERE clinic_date = $1 GROUP BY outcome ORDER BY outcome")
        .bind(clinic_date)
        .fetch_all(pool)
        .await?);
    Ok(rows)
}
