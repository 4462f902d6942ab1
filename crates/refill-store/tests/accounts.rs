//! Accounts and screen read models on every backend: users, sessions (people and wall displays),
//! sign-in failure counts, break-glass grants, screen changes and presence, and the queue page.

mod common;

use chrono::NaiveDate;
use refill_rules::{Decision, Outcome, PatientId, Reason, ReasonCode, Task};
use refill_store::accounts::{self, NewUser, Role, SessionKind};
use refill_store::screens::{self, QueueFilter};
use refill_store::{Actor, NewDecision, PatientDetails, Store};

async fn user(store: &Store, username: &str, role: Role) -> accounts::User {
    accounts::create_user(
        store,
        &NewUser {
            username: username.into(),
            display_name: format!("{username} Tester"),
            role,
            password_hash: "$argon2id$x".into(),
        },
        1_000,
        &Actor::system(),
    )
    .await
    .expect("create user")
}

#[tokio::test]
async fn users_and_sessions_end_on_password_change_and_disable() {
    for db in common::backends().await {
        let store = &db.store;
        let dana = user(store, "dana", Role::Staff).await;
        assert_eq!(dana.initials(), "DT");
        assert!(
            matches!(
                accounts::create_user(
                    store,
                    &NewUser {
                        username: "dana".into(),
                        display_name: "x".into(),
                        role: Role::Admin,
                        password_hash: "h".into()
                    },
                    1,
                    &Actor::system()
                )
                .await,
                Err(refill_store::StoreError::Duplicate(_))
            ),
            "{}",
            db.name
        );
        accounts::create_person_session(store, "hash-1", dana.id, "csrf-1", 2_000, 100_000).await.expect("session");
        accounts::create_person_session(store, "hash-2", dana.id, "csrf-2", 2_000, 100_000).await.expect("session");
        let loaded = accounts::load_session(store, "hash-1").await.expect("load").expect("open");
        assert_eq!(loaded.kind, SessionKind::Person);
        assert_eq!(loaded.user.as_ref().map(|u| u.username.as_str()), Some("dana"));
        assert_eq!(loaded.csrf_token, "csrf-1");
        accounts::touch_session(store, "hash-1", 5_000).await.expect("touch");
        assert_eq!(accounts::load_session(store, "hash-1").await.expect("load").expect("open").last_seen_at_ms, 5_000);
        accounts::set_password_hash(store, dana.id, "$argon2id$new", 6_000, &Actor::system()).await.expect("passwd");
        assert!(
            accounts::load_session(store, "hash-1").await.expect("load").is_none(),
            "{}: password change ends sessions",
            db.name
        );
        assert!(accounts::load_session(store, "hash-2").await.expect("load").is_none());
        accounts::create_person_session(store, "hash-3", dana.id, "csrf-3", 7_000, 100_000).await.expect("session");
        accounts::set_disabled(store, dana.id, true, 8_000, &Actor::system()).await.expect("disable");
        assert!(
            accounts::load_session(store, "hash-3").await.expect("load").is_none(),
            "{}: disabling ends sessions",
            db.name
        );
        assert!(accounts::get_user(store, dana.id).await.expect("user").is_disabled());
        assert!(accounts::end_session(store, "hash-3", 9_000, "signed out").await.is_ok());
        // Each security change is an audit event, and the chain still verifies.
        let head = store.audit_head().await.expect("head");
        let actions: Vec<String> =
            store.audit_events(1, head.seq).await.expect("events").into_iter().map(|e| e.action).collect();
        for action in ["account.created", "account.password_changed", "account.disabled"] {
            assert!(actions.iter().any(|a| a == action), "{}: no {action} in {actions:?}", db.name);
        }
        assert!(store.verify_audit_chain(None).await.expect("verify").is_intact(), "{}", db.name);
    }
}

#[tokio::test]
async fn wall_codes_are_single_use_and_wall_sessions_revocable() {
    for db in common::backends().await {
        let store = &db.store;
        let admin = user(store, "root", Role::Admin).await;
        accounts::issue_wall_code(store, "code-hash", "staff area", Some(admin.id), 1_000, 10_000, &Actor::system())
            .await
            .expect("issue");
        let label = accounts::redeem_wall_code(store, "code-hash", "wall-token-hash", "csrf", 2_000, 1_000_000)
            .await
            .expect("redeem");
        assert_eq!(label, "staff area");
        assert!(
            accounts::redeem_wall_code(store, "code-hash", "other-token", "csrf", 2_500, 1_000_000).await.is_err(),
            "{}: second use",
            db.name
        );
        accounts::issue_wall_code(store, "late-code", "late", None, 1_000, 3_000, &Actor::system())
            .await
            .expect("issue");
        assert!(
            accounts::redeem_wall_code(store, "late-code", "t2", "csrf", 3_000, 1_000_000).await.is_err(),
            "{}: expired",
            db.name
        );
        let session = accounts::load_session(store, "wall-token-hash").await.expect("load").expect("wall session");
        assert_eq!(session.kind, SessionKind::Wall);
        assert!(session.user.is_none());
        let walls = accounts::list_wall_sessions(store).await.expect("list");
        assert_eq!(walls.len(), 1);
        assert!(accounts::revoke_wall_session(store, &walls[0].handle, 4_000, &Actor::system()).await.expect("revoke"));
        assert!(accounts::load_session(store, "wall-token-hash").await.expect("load").is_none());
        assert!(
            !accounts::revoke_wall_session(store, &walls[0].handle, 5_000, &Actor::system())
                .await
                .expect("revoke again")
        );
    }
}

/// The sign-in budget: admitted attempts count as failures until finished as successes; failures on
/// usernames that do not exist never fill the per-address budget; concurrent attempts cannot overrun it.
#[tokio::test]
async fn login_attempts_are_admitted_within_the_budget() {
    for db in common::backends().await {
        let store = &db.store;
        user(store, "dana", Role::Staff).await;
        let budget = accounts::LoginBudget { per_account_and_ip: 3, per_ip: 4 };
        let admit = |username: &'static str, ip: &'static str, at: i64| async move {
            accounts::admit_login_attempt(store, username, ip, at - 60_000, at, budget).await.expect("admit")
        };
        let event = refill_store::AuditEvent::new(&Actor::system(), "auth.sign_in", "user");
        let first = admit("dana", "10.0.0.1", 1_000).await.expect("room");
        accounts::finish_login_attempt(store, first, true, &event).await.expect("finish");
        for at in [2_000, 3_000, 4_000] {
            assert!(admit("dana", "10.0.0.1", at).await.is_some(), "{}", db.name);
        }
        assert_eq!(admit("dana", "10.0.0.1", 5_000).await, None, "{}: three failures spend it", db.name);
        assert!(admit("dana", "10.0.0.2", 5_000).await.is_some(), "{}: another address has its own", db.name);
        assert!(admit("dana", "10.0.0.1", 64_000).await.is_some(), "{}: the window moves on", db.name);
        // Forty failures on made-up names from one address: the known account is still admitted.
        for n in 0..40 {
            let name: &'static str = Box::leak(format!("nobody{n}").into_boxed_str());
            assert!(admit(name, "10.0.0.9", 100_000).await.is_some(), "{}: {name}", db.name);
        }
        assert!(admit("dana", "10.0.0.9", 100_000).await.is_some(), "{}", db.name);
        // Twenty concurrent attempts for one account and address: exactly the budget is admitted.
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    accounts::admit_login_attempt(&store, "eve", "10.0.0.5", 140_000, 200_000, budget).await
                })
            })
            .collect();
        let mut admitted = 0;
        for task in tasks {
            admitted += usize::from(task.await.expect("task").expect("admit").is_some());
        }
        assert_eq!(admitted, 3, "{}: concurrent attempts overran the budget", db.name);
    }
}

#[tokio::test]
async fn break_glass_grants_expire_and_changes_are_numbered() {
    for db in common::backends().await {
        let store = &db.store;
        let doc = user(store, "doc", Role::Physician).await;
        let mut tx = store.begin().await.expect("begin");
        assert!(accounts::grant_break_glass(&mut tx, doc.id, 7, "   ", 1_000, 2_000).await.is_err());
        let grant = accounts::grant_break_glass(&mut tx, doc.id, 7, "overdose in clinic, need history", 1_000, 61_000)
            .await
            .expect("grant");
        let first = accounts::record_screen_change(&mut tx, Some(7), "queue.naloxone", Some("Doc"), 1_000)
            .await
            .expect("change");
        tx.commit().await.expect("commit");
        assert!(accounts::active_break_glass(store, doc.id, 7, 60_999).await.expect("read").is_some(), "{}", db.name);
        assert!(
            accounts::active_break_glass(store, doc.id, 7, 61_000).await.expect("read").is_none(),
            "{}: expired",
            db.name
        );
        assert!(
            accounts::active_break_glass(store, doc.id, 8, 2_000).await.expect("read").is_none(),
            "{}: one patient",
            db.name
        );
        assert_eq!(accounts::break_glass_grants_between(store, 0, 10_000).await.expect("list"), vec![grant]);
        accounts::open_row(store, 7, doc.id, 2_000).await.expect("presence");
        let presence = accounts::row_presence(store, 0).await.expect("presence");
        assert_eq!(presence.len(), 1);
        assert_eq!(presence[0].display_name, "doc Tester");
        accounts::close_rows(store, doc.id, 3_000).await.expect("close");
        assert!(accounts::row_presence(store, 0).await.expect("presence").is_empty());
        let latest = accounts::latest_screen_change(store).await.expect("latest");
        assert!(latest > first, "{}: presence changes are numbered too", db.name);
        let after = accounts::screen_changes_after(store, first, 10).await.expect("after");
        assert_eq!(after.len(), 2, "{}: open and close", db.name);
        assert!(after.iter().all(|c| c.seq > first && c.kind == "presence"));
    }
}

fn decision(outcome: Outcome, code: ReasonCode, task: Option<Task>) -> Decision {
    Decision::from_reasons(
        vec![Reason { code, outcome, evidence: Vec::new(), task, restricted: false }],
        None,
        Some(60.0),
        "test-policy",
    )
}

/// The order of screens.md: urgent escalations first, then the day the supply runs out, then status.
#[tokio::test]
async fn the_queue_page_sorts_urgent_first_then_by_run_out_and_counts_tallies() {
    for db in common::backends().await {
        let store = &db.store;
        let today = NaiveDate::from_ymd_opt(2026, 12, 1).expect("date");
        let actor = Actor::system();
        let cases = [
            ("p-approve", Outcome::Approve, ReasonCode::NaloxoneOfferDue, None, 5),
            ("p-tasks", Outcome::ApproveWithTasks, ReasonCode::PdmpReviewOverdue, Some(Task::ReviewPdmp), 1),
            ("p-urgent", Outcome::EscalateUrgent, ReasonCode::OverdoseOrSedationSignal, None, 9),
            ("p-hold-soon", Outcome::Hold, ReasonCode::EarlyFillAccumulation, None, 0),
            ("p-hold-late", Outcome::Hold, ReasonCode::EarlyFillAccumulation, None, 20),
        ];
        let mut tx = store.begin().await.expect("begin");
        let mut ids = Vec::new();
        for (external, outcome, code, task, days) in cases {
            let patient =
                tx.insert_patient(&PatientDetails::new(external, "Test", external), &actor).await.expect("patient");
            let decided = decision(outcome, code, task);
            store
                .record_decision(
                    &mut tx,
                    &NewDecision {
                        patient_id: patient,
                        clinic_date: today,
                        refill_request_id: None,
                        decision: &decided,
                        decided_by: &actor,
                        run_out_on: today.checked_add_days(chrono::Days::new(days)),
                        dedupe_key: None,
                    },
                )
                .await
                .expect("decision");
            ids.push((external, patient));
        }
        tx.commit().await.expect("commit");
        let rows = screens::queue_page(store, today, QueueFilter::Open, 100, 0).await.expect("page");
        let order: Vec<&str> = rows.iter().map(|r| r.family_name.as_str()).collect();
        assert_eq!(order, ["p-urgent", "p-hold-soon", "p-tasks", "p-approve", "p-hold-late"], "{}", db.name);
        assert!(rows[0].reasons.as_deref().is_some_and(|r| r.contains("overdose_or_sedation_signal")), "{}", db.name);
        let outcomes = screens::decision_outcome_counts(store, today).await.expect("outcomes");
        let expected: Vec<(String, i64)> =
            [("APPROVE", 1), ("APPROVE_WITH_TASKS", 1), ("ESCALATE_URGENT", 1), ("HOLD", 2)]
                .into_iter()
                .map(|(outcome, count)| (outcome.to_string(), count))
                .collect();
        assert_eq!(outcomes, expected, "{}: /metrics counts today's decisions per outcome", db.name);
        let tallies = screens::queue_tallies(store, today).await.expect("tallies");
        assert_eq!(tallies.count(QueueFilter::Open), 5);
        assert_eq!(tallies.count(QueueFilter::Ready), 1);
        assert_eq!(tallies.count(QueueFilter::NeedsTask), 1);
        assert_eq!(tallies.count(QueueFilter::OnHold), 2);
        assert_eq!(tallies.count(QueueFilter::WithPhysician), 1);
        assert_eq!(tallies.count(QueueFilter::RunningOut), 2, "{}: today and tomorrow", db.name);
        let soon = screens::queue_page(store, today, QueueFilter::RunningOut, 100, 0).await.expect("page");
        assert_eq!(soon.iter().map(|r| r.family_name.as_str()).collect::<Vec<_>>(), ["p-hold-soon", "p-tasks"]);
        let second_page = screens::queue_page(store, today, QueueFilter::Open, 2, 2).await.expect("page");
        let second: Vec<&str> = second_page.iter().map(|r| r.family_name.as_str()).collect();
        assert_eq!(second, ["p-tasks", "p-approve"], "{}: a deeper page is the same order, cut", db.name);
        let last_page = screens::queue_page(store, today, QueueFilter::Open, 2, 4).await.expect("page");
        assert_eq!(last_page.iter().map(|r| r.family_name.as_str()).collect::<Vec<_>>(), ["p-hold-late"]);
        assert!(last_page[0].reasons.as_deref().is_some_and(|r| r.contains("early_fill_accumulation")), "{}", db.name);
        let open = screens::open_exceptions(store, today, 10).await.expect("exceptions");
        assert_eq!(open.len(), 1, "{}: the urgent escalation raised one exception", db.name);
        assert_eq!(open[0].urgency, "urgent");
        let (_, urgent) = ids.iter().find(|(e, _)| *e == "p-urgent").expect("urgent");
        let PatientId(urgent_id) = *urgent;
        assert_eq!(screens::patient_header(store, urgent_id).await.expect("header").family_name, "p-urgent");
        assert!(!screens::patient_timeline(store, urgent_id, 10).await.expect("timeline").is_empty());
        let dashboard = screens::dashboard(store, today).await.expect("dashboard");
        assert_eq!(dashboard.mme_bands.iter().map(|(_, c)| c).sum::<i64>(), 5, "{}", db.name);
        // The lists behind the dashboard's numbers.
        let names = |rows: Vec<screens::PatientListRow>| rows.into_iter().map(|r| r.family_name).collect::<Vec<_>>();
        let band = screens::PatientList::MmeBand(screens::MmeBand::From50To89);
        assert_eq!(screens::patient_list(store, today, band, 100).await.expect("band").len(), 5, "{}", db.name);
        let band = screens::PatientList::MmeBand(screens::MmeBand::From90To199);
        assert!(screens::patient_list(store, today, band, 100).await.expect("band").is_empty(), "{}", db.name);
        let overdue = screens::PatientList::Overdue("pdmp_review_overdue");
        let overdue = names(screens::patient_list(store, today, overdue, 100).await.expect("overdue"));
        assert_eq!(overdue, ["p-tasks"], "{}", db.name);
        let tapers = screens::PatientList::TaperState("active");
        assert!(screens::patient_list(store, today, tapers, 100).await.expect("tapers").is_empty(), "{}", db.name);
        let limited = screens::PatientList::MmeBand(screens::MmeBand::From50To89);
        assert_eq!(screens::patient_list(store, today, limited, 2).await.expect("limit").len(), 2, "{}", db.name);
        // The overdue counts are over the whole clinic (each patient's latest decision) and carry the count
        // as of a week ago for the trend, or none when no decision is that old.
        let pdmp = |dashboard: &screens::Dashboard| {
            dashboard.overdue.iter().find(|(code, _, _)| code == "pdmp_review_overdue").cloned().expect("counted")
        };
        assert_eq!(pdmp(&dashboard), ("pdmp_review_overdue".to_string(), 1, None), "{}: no history", db.name);
        let week_ago = today - chrono::Days::new(7);
        let mut tx = store.begin().await.expect("begin");
        let earlier =
            tx.insert_patient(&PatientDetails::new("p-earlier", "Test", "p-earlier"), &actor).await.expect("p");
        let decided = decision(Outcome::ApproveWithTasks, ReasonCode::PdmpReviewOverdue, Some(Task::ReviewPdmp));
        let new = NewDecision {
            patient_id: earlier,
            clinic_date: week_ago,
            refill_request_id: None,
            decision: &decided,
            decided_by: &actor,
            run_out_on: Some(week_ago),
            dedupe_key: None,
        };
        store.record_decision(&mut tx, &new).await.expect("decision");
        tx.commit().await.expect("commit");
        let dashboard = screens::dashboard(store, today).await.expect("dashboard");
        assert_eq!(
            pdmp(&dashboard),
            ("pdmp_review_overdue".to_string(), 2, Some(1)),
            "{}: the earlier patient is still overdue now, as a week ago",
            db.name
        );
    }
}

/// Open exceptions whose patient is not on today's queue (no run-out date today) come after those with
/// one, on both backends alike.
#[tokio::test]
async fn exceptions_without_a_run_out_today_come_last_on_both_backends() {
    for db in common::backends().await {
        let store = &db.store;
        let today = NaiveDate::from_ymd_opt(2026, 12, 1).expect("date");
        let actor = Actor::system();
        let mut tx = store.begin().await.expect("begin");
        for (external, clinic_date, days) in
            [("e-yesterday", today.pred_opt().expect("date"), 1), ("e-today", today, 5)]
        {
            let patient =
                tx.insert_patient(&PatientDetails::new(external, "Test", external), &actor).await.expect("patient");
            let decided = decision(Outcome::Escalate, ReasonCode::PhysicianReviewOverdue, None);
            store
                .record_decision(
                    &mut tx,
                    &NewDecision {
                        patient_id: patient,
                        clinic_date,
                        refill_request_id: None,
                        decision: &decided,
                        decided_by: &actor,
                        run_out_on: clinic_date.checked_add_days(chrono::Days::new(days)),
                        dedupe_key: None,
                    },
                )
                .await
                .expect("decision");
        }
        tx.commit().await.expect("commit");
        let open = screens::open_exceptions(store, today, 10).await.expect("exceptions");
        let order: Vec<(&str, Option<NaiveDate>)> =
            open.iter().map(|e| (e.family_name.as_str(), e.run_out_on)).collect();
        let runs_out = today.checked_add_days(chrono::Days::new(5));
        assert_eq!(order, [("e-today", runs_out), ("e-yesterday", None)], "{}", db.name);
    }
}
