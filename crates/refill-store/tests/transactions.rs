//! One action, one transaction, on SQLite and on PostgreSQL: the `_in` variants of the store's
//! writes (claim, fact, exception resolution, taper plan, pause, resume) join the caller's transaction,
//! the transaction's facts loader sees a fact recorded a moment ago in it, and rolling back leaves no
//! fact, decision, plan or audit event behind. Taper plans: a new plan supersedes the one in force, a
//! pause freezes the step in force, a resume moves the remaining steps by the length of the pause.

mod common;

use common::{date, new_decision, oxycodone};

use chrono::{Duration, NaiveDate};
use refill_rules::decision::{Evidence, Reason, ReasonCode};
use refill_rules::{Decision, Outcome, PatientId, PdmpReview, PhysicianReview, PrescriberId, ReviewKind, TaperState};
use refill_store::accounts;
use refill_store::{
    Actor, ExceptionResolution, ExceptionStatus, NewDecision, NewTaperPlan, NewTaperStep, PatientDetails, Pools,
    QueueStatus, RecordedDecision, Resolution, StaffFact, Store, StoreError,
};

/// A count from a `select count(*) ...` statement, through the read pool (committed rows only).
async fn count(store: &Store, sql: &str) -> i64 {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    match &store.pools {
        Pools::Sqlite { read, .. } => sqlx::query_scalar(sql).fetch_one(read).await.expect("count"),
        Pools::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.expect("count"),
    }
}

/// The rows an action could leave behind, for "nothing was written" checks.
async fn footprint(store: &Store) -> [i64; 6] {
    [
        count(store, "select count(*) from pdmp_reviews").await,
        count(store, "select count(*) from physician_reviews").await,
        count(store, "select count(*) from decisions").await,
        count(store, "select count(*) from audit_events").await,
        count(store, "select count(*) from screen_changes").await,
        count(store, "select count(*) from taper_plans").await,
    ]
}

/// A patient escalated on `clinic_date`: a queue row and an open exception.
async fn escalated_patient(store: &Store, external_id: &str, clinic_date: NaiveDate) -> (PatientId, RecordedDecision) {
    let mut details = PatientDetails::new(external_id, "Ada", "Lovelace");
    details.prescriber_of_record = Some(PrescriberId("1111111111".into()));
    let mut tx = store.begin().await.unwrap();
    let (id, _) = tx.upsert_patient(&details, &Actor::system()).await.unwrap();
    tx.replace_regimen(id, &[oxycodone("order-1", 10.0)]).await.unwrap();
    let reason = Reason {
        code: ReasonCode::PdmpReviewOverdue,
        outcome: Outcome::Escalate,
        evidence: vec![Evidence::integer("days", 200)],
        task: None,
        restricted: false,
    };
    let decision = Decision::from_reasons(vec![reason], None, Some(60.0), "policy-test");
    let recorded = store
        .record_decision(
            &mut tx,
            &NewDecision {
                run_out_on: Some(clinic_date + Duration::days(3)),
                ..new_decision(id, clinic_date, &decision, &Actor::system())
            },
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (id, recorded)
}

/// A decision as the web records after a staff action, re-run on the facts `tx` sees.
fn approve(policy_version: &str) -> Decision {
    Decision::from_reasons(Vec::new(), None, Some(60.0), policy_version)
}

#[tokio::test]
async fn a_staff_action_in_one_transaction_sees_its_fact_and_a_rollback_leaves_nothing() {
    for db in common::backends().await {
        let store = &db.store;
        let today = date("2026-12-01");
        let (id, recorded) = escalated_patient(store, "tx-1", today).await;
        let item_id = recorded.queue_item_id.expect("queued");
        let alice = Actor::new("user:alice", "staff");
        let review = PdmpReview { reviewed_on: today, findings: Vec::new() };
        let before = footprint(store).await;
        let item = store.queue_item(item_id).await.unwrap();

        // Everything but the commit, then a failure: the transaction is rolled back.
        let mut tx = store.begin().await.unwrap();
        let claimed = store.claim_queue_item_in(&mut tx, item_id, item.version, &alice).await.unwrap();
        assert_eq!(claimed.status, QueueStatus::InProgress, "{}: the claim is read back inside the tx", db.name);
        let version = tx.patient(id).await.unwrap().version;
        store
            .record_fact_in(&mut tx, id, version, &StaffFact::PdmpReview { review: review.clone() }, &alice, None)
            .await
            .unwrap();
        let inside = tx.load_patient_facts(id, today).await.unwrap();
        assert_eq!(inside.pdmp_reviews, vec![review.clone()], "{}: the tx sees its own fact", db.name);
        let outside = store.load_patient_facts(id, today).await.unwrap();
        assert!(outside.pdmp_reviews.is_empty(), "{}: nobody else sees it before commit", db.name);
        let decision = approve("policy-test");
        store.record_decision(&mut tx, &new_decision(id, today, &decision, &alice)).await.unwrap();
        accounts::record_screen_change(&mut tx, Some(id.0), "queue.pdmp", Some("Alice"), 1).await.unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(footprint(store).await, before, "{}: no fact, decision, audit event or screen change", db.name);
        let after = store.queue_item(item_id).await.unwrap();
        assert_eq!((after.version, after.status), (item.version, QueueStatus::Pending), "{}", db.name);

        // A conflict at the claim stops the action before anything is written.
        let mut tx = store.begin().await.unwrap();
        let stale = store.claim_queue_item_in(&mut tx, item_id, item.version - 1, &alice).await;
        assert!(matches!(stale, Err(StoreError::Conflict(_))), "{}: {stale:?}", db.name);
        drop(tx);
        assert_eq!(footprint(store).await, before, "{}", db.name);

        // The same steps committed: all of it lands together.
        let mut tx = store.begin().await.unwrap();
        store.claim_queue_item_in(&mut tx, item_id, item.version, &alice).await.unwrap();
        let version = tx.patient(id).await.unwrap().version;
        store
            .record_fact_in(&mut tx, id, version, &StaffFact::PdmpReview { review: review.clone() }, &alice, None)
            .await
            .unwrap();
        store.record_decision(&mut tx, &new_decision(id, today, &decision, &alice)).await.unwrap();
        let done = tx.queue_item(item_id).await.unwrap();
        tx.commit().await.unwrap();
        let [pdmp, _, decisions, audit, _, _] = footprint(store).await;
        assert_eq!((pdmp, decisions), (before[0] + 1, before[2] + 1), "{}", db.name);
        assert_eq!(audit, before[3] + 3, "{}: claim, fact and decision audited", db.name);
        assert_eq!(done.outcome, Some(Outcome::Approve), "{}: the row shows the new decision", db.name);
        assert_eq!(store.queue_item(item_id).await.unwrap().version, done.version, "{}", db.name);
        assert_eq!(store.load_patient_facts(id, today).await.unwrap().pdmp_reviews, vec![review], "{}", db.name);
    }
}

fn two_step_plan(first: NaiveDate, second: NaiveDate, rationale: &str) -> NewTaperPlan {
    NewTaperPlan {
        started_on: first,
        rationale: rationale.into(),
        steps: vec![
            NewTaperStep { starts_on: first, regimen: vec![oxycodone("step-1", 7.5)], total_daily_mme: Some(45.0) },
            NewTaperStep { starts_on: second, regimen: vec![oxycodone("step-2", 5.0)], total_daily_mme: Some(30.0) },
        ],
    }
}

#[tokio::test]
async fn a_signed_taper_decision_is_one_transaction_and_a_new_plan_supersedes_the_old() {
    for db in common::backends().await {
        let store = &db.store;
        let today = date("2026-12-01");
        let (id, recorded) = escalated_patient(store, "tx-2", today).await;
        let exception_id = recorded.exception_id.expect("escalated");
        let doctor = Actor::new("user:drx", "physician");
        let first = store
            .create_taper_plan(id, 1, &two_step_plan(today, today + Duration::days(14), "start"), &doctor)
            .await
            .unwrap();
        let patient_version = store.patient(id).await.unwrap().version;
        let exception = store.exception(exception_id).await.unwrap();
        let resolution = ExceptionResolution {
            resolution: Resolution::Taper,
            rationale: "slow the taper: withdrawal at the last step".into(),
            safety_attestation: None,
        };
        let slower = two_step_plan(today + Duration::days(1), today + Duration::days(29), "slower");
        let review = PhysicianReview {
            reviewed_on: today,
            physician: PrescriberId(doctor.id.clone()),
            kind: ReviewKind::BenefitRisk,
        };
        let before = footprint(store).await;

        // Resolve, store the new plan, record the review; then fail: nothing of it stays.
        let mut tx = store.begin().await.unwrap();
        store.resolve_exception_in(&mut tx, exception_id, exception.version, &resolution, &doctor).await.unwrap();
        store.create_taper_plan_in(&mut tx, id, patient_version, &slower, &doctor).await.unwrap();
        let version = tx.patient(id).await.unwrap().version;
        let fact = StaffFact::PhysicianReview { review: review.clone(), note: None };
        store.record_fact_in(&mut tx, id, version, &fact, &doctor, Some("slow")).await.unwrap();
        assert_eq!(
            tx.load_patient_facts(id, today + Duration::days(1)).await.unwrap().taper.unwrap().plan_id,
            first.0 + 1
        );
        drop(tx);
        assert_eq!(footprint(store).await, before, "{}", db.name);
        assert_eq!(store.exception(exception_id).await.unwrap().status, ExceptionStatus::Open, "{}", db.name);
        assert_eq!(store.load_patient_facts(id, today).await.unwrap().taper.unwrap().plan_id, first.0);

        // A stale patient version (the schedule was planned on an older record) refuses the whole sign.
        let mut tx = store.begin().await.unwrap();
        store.resolve_exception_in(&mut tx, exception_id, exception.version, &resolution, &doctor).await.unwrap();
        let stale = store.create_taper_plan_in(&mut tx, id, patient_version - 1, &slower, &doctor).await;
        assert!(matches!(stale, Err(StoreError::Conflict(_))), "{}: {stale:?}", db.name);
        drop(tx);
        assert_eq!(store.exception(exception_id).await.unwrap().status, ExceptionStatus::Open, "{}", db.name);

        // Committed: the new plan is the one in force and the old one is cancelled with an event.
        let mut tx = store.begin().await.unwrap();
        let resolved =
            store.resolve_exception_in(&mut tx, exception_id, exception.version, &resolution, &doctor).await.unwrap();
        assert_eq!(resolved.status, ExceptionStatus::Resolved, "{}: read back inside the tx", db.name);
        let second = store.create_taper_plan_in(&mut tx, id, patient_version, &slower, &doctor).await.unwrap();
        tx.commit().await.unwrap();
        let in_force = count(
            store,
            &format!("select count(*) from taper_plans where patient_id = {} and state in ('active', 'paused')", id.0),
        )
        .await;
        assert_eq!(in_force, 1, "{}: exactly one plan in force", db.name);
        let superseded =
            count(store, &format!("select count(*) from taper_plans where id = {} and state = 'cancelled'", first.0))
                .await;
        assert_eq!(superseded, 1, "{}: the replaced plan is cancelled", db.name);
        let events = count(
            store,
            &format!("select count(*) from taper_plan_events where plan_id = {} and kind = 'superseded'", first.0),
        )
        .await;
        assert_eq!(events, 1, "{}: with a plan event", db.name);
        let taper = store.load_patient_facts(id, today + Duration::days(2)).await.unwrap().taper.unwrap();
        assert_eq!((taper.plan_id, taper.step_regimen), (second.0, vec![oxycodone("step-1", 7.5)]), "{}", db.name);
        // On the dashboard ten days on: the active plan started tomorrow (9 days on taper); the replaced
        // one is counted without a time (the store keeps no end date for it).
        let dashboard = refill_store::screens::dashboard(store, today + Duration::days(10)).await.unwrap();
        let by_state = |state: &str| dashboard.tapers.iter().find(|(s, _, _)| s == state).cloned();
        assert_eq!(by_state("active"), Some(("active".to_string(), 1, Some(9.0))), "{}", db.name);
        assert_eq!(by_state("cancelled"), Some(("cancelled".to_string(), 1, None)), "{}", db.name);
    }
}

#[tokio::test]
async fn a_paused_taper_keeps_its_step_and_a_resume_moves_the_rest_by_the_pause() {
    for db in common::backends().await {
        let store = &db.store;
        let today = date("2026-12-01");
        let (id, _) = escalated_patient(store, "tx-3", today).await;
        let doctor = Actor::new("user:drx", "physician");
        let second_step = today + Duration::days(14);
        let plan = store.create_taper_plan(id, 1, &two_step_plan(today, second_step, "start"), &doctor).await.unwrap();

        // Nothing to resume while the plan is active; a pause needs a reason.
        let mut tx = store.begin().await.unwrap();
        let not_paused = store.resume_taper_plan_in(&mut tx, id, today, &doctor, "go on").await;
        assert!(matches!(not_paused, Err(StoreError::Invalid(_))), "{}: {not_paused:?}", db.name);
        let no_reason = store.pause_taper_plan_in(&mut tx, id, today, &doctor, " ").await;
        assert!(matches!(no_reason, Err(StoreError::Invalid(_))), "{}", db.name);
        drop(tx);

        let paused_on = today + Duration::days(3);
        let mut tx = store.begin().await.unwrap();
        let paused = store.pause_taper_plan_in(&mut tx, id, paused_on, &doctor, "withdrawal symptoms").await.unwrap();
        assert_eq!(paused, plan);
        let twice = store.pause_taper_plan_in(&mut tx, id, paused_on, &doctor, "again").await;
        assert!(matches!(twice, Err(StoreError::Invalid(_))), "{}: already paused", db.name);
        tx.commit().await.unwrap();

        // Long after the second step's date, the step in force is still the first one, and paused: the
        // daily run applies only active plans' steps, and the rules compare against this step.
        let later = store.load_patient_facts(id, second_step + Duration::days(5)).await.unwrap().taper.unwrap();
        assert_eq!((later.state, later.step_started_on), (TaperState::Paused, today), "{}", db.name);
        assert_eq!(later.step_regimen, vec![oxycodone("step-1", 7.5)], "{}", db.name);
        // The dashboard's time on taper stops at the pause: 3 days, however late it is read.
        let dashboard = refill_store::screens::dashboard(store, second_step + Duration::days(5)).await.unwrap();
        assert_eq!(dashboard.tapers, vec![("paused".to_string(), 1, Some(3.0))], "{}", db.name);
        let events = store.audit_events_for_patient(id, 50).await.unwrap();
        let pause = events.iter().find(|e| e.action == "taper_plan.pause").expect("pause audited");
        assert_eq!((pause.actor.as_str(), pause.reason.as_deref()), ("user:drx", Some("withdrawal symptoms")));
        let plan_events = count(
            store,
            &format!(
                "select count(*) from taper_plan_events where plan_id = {} and kind = 'paused' and actor = 'user:drx'",
                plan.0
            ),
        )
        .await;
        assert_eq!(plan_events, 1, "{}", db.name);

        // Resumed ten days after the pause: the second step moves ten days later.
        let resumed_on = paused_on + Duration::days(10);
        let mut tx = store.begin().await.unwrap();
        store.resume_taper_plan_in(&mut tx, id, resumed_on, &doctor, "symptoms settled").await.unwrap();
        tx.commit().await.unwrap();
        let moved = second_step + Duration::days(10);
        let on_resume = store.load_patient_facts(id, resumed_on).await.unwrap().taper.unwrap();
        assert_eq!((on_resume.state, on_resume.step_started_on), (TaperState::Active, today), "{}", db.name);
        let day_before = store.load_patient_facts(id, moved - Duration::days(1)).await.unwrap().taper.unwrap();
        assert_eq!(day_before.step_started_on, today, "{}: the old date no longer applies", db.name);
        let on_moved = store.load_patient_facts(id, moved).await.unwrap().taper.unwrap();
        assert_eq!((on_moved.step_started_on, on_moved.step_regimen), (moved, vec![oxycodone("step-2", 5.0)]));
        let events = store.audit_events_for_patient(id, 50).await.unwrap();
        assert!(
            events.iter().any(|e| e.action == "taper_plan.resume" && e.reason.as_deref() == Some("symptoms settled"))
        );
    }
}

/// Pausing on the day a step starts: if the daily run has not made that step the regimen of record yet,
/// the patient is still on the step before, and that is the step the pause holds; once applied, the
/// pause holds the new step.
#[tokio::test]
async fn a_pause_on_a_step_day_holds_the_dose_the_patient_is_on() {
    for db in common::backends().await {
        let store = &db.store;
        let today = date("2026-12-01");
        let doctor = Actor::new("user:drx", "physician");
        let second_step = today + Duration::days(14);
        for (name, step_applied) in [("tx-4", false), ("tx-5", true)] {
            let (id, _) = escalated_patient(store, name, today).await;
            store.create_taper_plan(id, 1, &two_step_plan(today, second_step, "start"), &doctor).await.unwrap();
            let mut tx = store.begin().await.unwrap();
            if step_applied {
                tx.replace_regimen(id, &[oxycodone("step-2", 5.0)]).await.unwrap();
            }
            store.pause_taper_plan_in(&mut tx, id, second_step, &doctor, "patient asked to stay").await.unwrap();
            tx.commit().await.unwrap();
            let held = store.load_patient_facts(id, second_step + Duration::days(5)).await.unwrap().taper.unwrap();
            let expected = if step_applied { second_step } else { today };
            assert_eq!(held.step_started_on, expected, "{}: step applied {step_applied}", db.name);
        }
    }
}
