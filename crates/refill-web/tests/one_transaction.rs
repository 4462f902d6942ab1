//! Every write that matters is one transaction, seen through the router (`tower::ServiceExt::oneshot`)
//! on a real SQLite file: a staff action whose last step fails leaves no fact, decision, audit event or
//! screen change; the same action succeeding decides on the fact it just recorded; a physician decision
//! that fails after the signature leaves the exception open; "Pause the taper" pauses the stored plan
//! (later steps stop) and "Resume the paused taper" resumes it with its remaining steps moved by the
//! length of the pause.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use refill_rules::facts::{Confidentiality, DoseQuantity, DoseUnit, MedicationOrder, OrderPurpose};
use refill_rules::{PatientId, ReasonCode, RefillRequest, RequestKind, TaperState};
use refill_store::accounts::Role;
use refill_store::{Actor, NewTaperPlan, NewTaperStep, PatientDetails, Pools, Tx, screens};
use refill_web::{AppState, Clock, WebSettings, app};
use tower::ServiceExt;

mod support;
use support::{escalation, person_at, record_today, sqlite_app, urlencode};

const DAY_MS: i64 = 86_400_000;

struct Setup {
    _dir: tempfile::TempDir,
    state: AppState,
    now_ms: Arc<AtomicI64>,
    patient: PatientId,
}

/// (cookie, csrf) of a signed-in person.
type Session = (String, String);

fn morphine(id: &str, tablets_per_day: f64) -> MedicationOrder {
    MedicationOrder {
        id: id.into(),
        rxcui: None,
        text: Some("morphine sulfate 30 MG Extended Release Oral Tablet".into()),
        dose: Some(DoseQuantity { value: 1.0, unit: DoseUnit::DoseFormUnit }),
        doses_per_day: Some(tablets_per_day),
        days_supply: None,
        dispense_quantity: None,
        prescriber: None,
        purpose: OrderPurpose::Pain,
        confidentiality: Confidentiality::Normal,
    }
}

/// A patient on morphine ER 30 mg three times a day, escalated today (queue row and open exception).
/// The clock is fixed at noon in New York on a June day (no daylight-saving change nearby).
async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("dir");
    let start: DateTime<Utc> = "2026-06-10T16:00:00Z".parse().expect("instant");
    let now_ms = Arc::new(AtomicI64::new(start.timestamp_millis()));
    let clock_ms = now_ms.clone();
    let clock =
        Clock::from_fn(move || DateTime::from_timestamp_millis(clock_ms.load(Ordering::SeqCst)).unwrap_or_default());
    let settings = WebSettings { secure_cookies: false, ..WebSettings::default() };
    let state =
        sqlite_app(dir.path(), "one-tx.db", b"one-tx-test-key-one-tx-test-key-0123", settings).await.with_clock(clock);
    let store = state.store.clone();
    let mut tx = store.begin().await.expect("begin");
    let patient = tx.insert_patient(&PatientDetails::new("tx-1", "Ines", "Marlow"), &Actor::system()).await.expect("p");
    tx.replace_regimen(patient, &[morphine("order-1", 3.0)]).await.expect("regimen");
    tx.commit().await.expect("commit");
    let setup = Setup { _dir: dir, state, now_ms, patient };
    setup.escalate_today().await;
    setup
}

impl Setup {
    fn today(&self) -> NaiveDate {
        self.state.today()
    }

    /// Record an escalation for today, as the daily run would: a queue row and an open exception.
    async fn escalate_today(&self) {
        let decision = escalation(ReasonCode::HighMmeReviewOverdue, ("mme", "90 MME/day"), false, 90.0);
        let mut tx = self.state.store.begin().await.expect("begin");
        record_today(&self.state.store, &mut tx, self.patient, self.today(), &decision).await;
        tx.commit().await.expect("commit");
    }

    async fn session(&self, role: Role, name: &str) -> Session {
        let now = self.now_ms.load(Ordering::SeqCst);
        let person = person_at(&self.state, &name.to_lowercase(), name, role, now, 30 * DAY_MS).await;
        (person.cookie, person.csrf)
    }

    async fn post(&self, session: &Session, path: &str, form: &[(&str, String)]) -> (StatusCode, String) {
        let mut pairs = form.to_vec();
        pairs.push(("csrf", session.1.clone()));
        let body = pairs.iter().map(|(key, value)| format!("{key}={}", urlencode(value))).collect::<Vec<_>>().join("&");
        let request = Request::builder()
            .method("POST")
            .uri(path)
            .header(header::HOST, "localhost")
            .header(header::COOKIE, &session.0)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request");
        let response = app(self.state.clone()).oneshot(request).await.expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 4 << 20).await.expect("body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The taper decisions the exception page offers (the values of its options and radio buttons).
    async fn offered(&self, session: &Session, exception_id: i64) -> Vec<&'static str> {
        let request = Request::builder()
            .uri(format!("/exceptions/{exception_id}"))
            .header(header::HOST, "localhost")
            .header(header::COOKIE, &session.0)
            .body(Body::empty())
            .expect("request");
        let response = app(self.state.clone()).oneshot(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        let page = String::from_utf8(axum::body::to_bytes(response.into_body(), 4 << 20).await.expect("body").to_vec())
            .expect("utf-8");
        let decisions = ["taper_start", "taper_slow", "taper_pause", "taper_resume", "taper_revise"];
        decisions.into_iter().filter(|key| page.contains(&format!("value=\"{key}\""))).collect()
    }

    async fn count(&self, sql: &str) -> i64 {
        let Pools::Sqlite { read, .. } = &self.state.store.pools else { panic!("these tests run on SQLite") };
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(read).await.expect("count")
    }

    /// What a staff action writes: facts, decisions, audit events, screen changes.
    async fn footprint(&self) -> [i64; 4] {
        [
            self.count("select count(*) from pdmp_reviews").await,
            self.count("select count(*) from decisions").await,
            self.count("select count(*) from audit_events").await,
            self.count("select count(*) from screen_changes").await,
        ]
    }

    async fn write_sql(&self, sql: &str) {
        let mut tx = self.state.store.begin().await.expect("begin");
        let Tx::Sqlite(inner) = &mut tx else { panic!("these tests run on SQLite") };
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut **inner).await.expect("sql");
        tx.commit().await.expect("commit");
    }

    async fn open_exception(&self) -> screens::ExceptionRow {
        let open = screens::open_exceptions(&self.state.store, self.today(), 10).await.expect("exceptions");
        open.into_iter().find(|row| row.patient_id == self.patient.0).expect("an open exception")
    }

    async fn taper_in_force(&self, on: NaiveDate) -> refill_rules::TaperInForce {
        self.state.store.load_patient_facts(self.patient, on).await.expect("facts").taper.expect("a taper in force")
    }
}

#[tokio::test]
async fn a_staff_action_is_all_or_nothing_and_decides_on_the_fact_it_records() {
    let setup = setup().await;
    let staff = setup.session(Role::Staff, "Dana Whitfield").await;
    let pid = setup.patient.0;
    let store = &setup.state.store;
    // Without a PDMP review on file, the rules ask for one.
    let facts = store.load_patient_facts(setup.patient, setup.today()).await.expect("facts");
    let clinic = store.clinic_facts().await.expect("clinic");
    let request =
        RefillRequest { requested_on: setup.today(), regimen: facts.regimen.clone(), kind: RequestKind::Routine };
    let before_review = refill_rules::refill::evaluate(&facts, &clinic, &request, &setup.state.policy, "test");
    assert!(before_review.reasons.iter().any(|r| r.code == ReasonCode::PdmpReviewOverdue), "{before_review:?}");

    let row = screens::queue_row(store, setup.today(), pid).await.expect("row").expect("queued");
    let action =
        vec![("action", "pdmp".to_string()), ("version", row.version.to_string()), ("findings", String::new())];
    let before = setup.footprint().await;

    // The last step (the screen change) fails: nothing of the action stays.
    setup
        .write_sql(
            "create trigger refuse_screen_change before insert on screen_changes \
             begin select raise(abort, 'injected failure'); end",
        )
        .await;
    let (status, _) = setup.post(&staff, &format!("/queue/{pid}/action"), &action).await;
    assert!(status.is_server_error(), "{status}");
    assert_eq!(setup.footprint().await, before, "no fact, decision, audit event or screen change");
    let unchanged = screens::queue_row(store, setup.today(), pid).await.expect("row").expect("queued");
    assert_eq!((unchanged.version, unchanged.status.as_str()), (row.version, "pending"), "the claim rolled back too");

    // The same action with every step working: all of it, and the decision saw the new review.
    setup.write_sql("drop trigger refuse_screen_change").await;
    let (status, panel) = setup.post(&staff, &format!("/queue/{pid}/action"), &action).await;
    assert_eq!(status, StatusCode::OK, "{panel}");
    assert!(panel.contains("PDMP review recorded"), "{panel}");
    let [reviews, decisions, audit, changes] = setup.footprint().await;
    assert_eq!((reviews, decisions, changes), (before[0] + 1, before[1] + 1, before[3] + 1));
    assert!(audit >= before[2] + 3, "claim, fact and decision audited");
    let latest = store.decisions_for_patient(setup.patient, 1).await.expect("decisions");
    let codes: Vec<ReasonCode> = latest[0].decision.reasons.iter().map(|r| r.code).collect();
    assert!(!codes.contains(&ReasonCode::PdmpReviewOverdue), "decided on the review just recorded: {codes:?}");

    // Acting again on the version the screen showed before is a conflict and writes nothing.
    let after = setup.footprint().await;
    let (status, panel) = setup.post(&staff, &format!("/queue/{pid}/action"), &action).await;
    assert_eq!(status, StatusCode::CONFLICT, "{panel}");
    assert_eq!(setup.footprint().await, after);
}

#[tokio::test]
async fn pausing_and_resuming_a_taper_from_the_exception_review_changes_the_stored_plan() {
    let setup = setup().await;
    let doctor = setup.session(Role::Physician, "Dr Okafor").await;
    let store = &setup.state.store;
    let day0 = setup.today();
    let second_step = day0 + Duration::days(7);
    let version = store.patient(setup.patient).await.expect("patient").version;
    let plan = NewTaperPlan {
        started_on: day0 - Duration::days(7),
        rationale: "high dose, little benefit".into(),
        steps: vec![
            NewTaperStep {
                starts_on: day0 - Duration::days(7),
                regimen: vec![morphine("order-1", 3.0)],
                total_daily_mme: Some(90.0),
            },
            NewTaperStep {
                starts_on: second_step,
                regimen: vec![morphine("step-2", 2.0)],
                total_daily_mme: Some(60.0),
            },
        ],
    };
    let plan_id = store.create_taper_plan(setup.patient, version, &plan, &Actor::new("user:1", "physician")).await;
    let plan_id = plan_id.expect("plan").0;
    let resolves = "select count(*) from audit_events where action = 'exception.resolve'";

    // Resuming an active taper fails after the signature would have been written: nothing stays.
    let exception = setup.open_exception().await;
    let decide = |decision: &str, version: i64, rationale: &str| {
        vec![("decision", decision.to_string()), ("version", version.to_string()), ("rationale", rationale.to_string())]
    };
    let path = format!("/exceptions/{}/decide", exception.exception_id);
    let (status, page) =
        setup.post(&doctor, &path, &decide("taper_resume", exception.version, "continue the taper")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("only a paused taper can be resumed"), "{page}");
    assert_eq!(screens::exception(store, day0, exception.exception_id).await.expect("row").resolution, None);
    assert_eq!(setup.count(resolves).await, 0, "no signature was kept");
    assert_eq!(setup.count("select count(*) from physician_reviews").await, 0, "no review was kept");

    // Only what applies to an active taper is offered.
    let offered = setup.offered(&doctor, exception.exception_id).await;
    assert_eq!(offered, vec!["taper_slow", "taper_pause", "taper_revise"]);

    // Pausing: the plan is paused with who and why, and the second step does not come into force.
    let (status, page) =
        setup.post(&doctor, &path, &decide("taper_pause", exception.version, "withdrawal symptoms")).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let steps = screens::taper_steps(store, setup.patient.0).await.expect("steps");
    assert!(steps.iter().all(|s| s.plan_id == plan_id && s.state == "paused"), "{steps:?}");
    let paused = setup.taper_in_force(second_step + Duration::days(3)).await;
    assert_eq!((paused.state, paused.step_regimen.clone()), (TaperState::Paused, vec![morphine("order-1", 3.0)]));
    let why = "select count(*) from taper_plan_events where kind = 'paused' and actor like 'user:%' \
               and detail like '%withdrawal symptoms%'";
    assert_eq!(setup.count(why).await, 1);
    assert_eq!(setup.count(resolves).await, 1);

    // Four days later, at a new escalation, the physician resumes: the second step moves four days.
    setup.now_ms.fetch_add(4 * DAY_MS, Ordering::SeqCst);
    setup.escalate_today().await;
    // A session of four days ago has timed out: the physician signs in again.
    let doctor = setup.session(Role::Physician, "Dr Lind").await;
    let exception = setup.open_exception().await;
    let offered = setup.offered(&doctor, exception.exception_id).await;
    assert_eq!(offered, vec!["taper_resume", "taper_revise"], "a paused taper");
    let path = format!("/exceptions/{}/decide", exception.exception_id);
    let (status, page) =
        setup.post(&doctor, &path, &decide("taper_resume", exception.version, "symptoms settled")).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let steps = screens::taper_steps(store, setup.patient.0).await.expect("steps");
    assert!(steps.iter().all(|s| s.state == "active"), "{steps:?}");
    assert_eq!(steps[1].starts_on, second_step + Duration::days(4));
    let before_moved = setup.taper_in_force(second_step + Duration::days(3)).await;
    assert_eq!((before_moved.state, before_moved.step_regimen), (TaperState::Active, vec![morphine("order-1", 3.0)]));
    let moved = setup.taper_in_force(second_step + Duration::days(4)).await;
    assert_eq!(moved.step_regimen, vec![morphine("step-2", 2.0)]);
}
