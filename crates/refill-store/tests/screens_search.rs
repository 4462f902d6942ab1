//! Patient search and the desk's queue filter on every backend: a patient is found by name (either
//! order, any case, by prefix), by record number (any part) or by birth date; a `%` in the search is a
//! character, not a wildcard; and the desk's default view leaves out rows waiting on a physician.

mod common;

use chrono::NaiveDate;
use refill_rules::{Decision, Outcome, Reason, ReasonCode};
use refill_store::screens::{self, QueueFilter};
use refill_store::search::{PatientQuery, find_patients};
use refill_store::{Actor, NewDecision, PatientDetails};

fn decision(outcome: Outcome, code: ReasonCode) -> Decision {
    Decision::from_reasons(
        vec![Reason { code, outcome, evidence: Vec::new(), task: None, restricted: false }],
        None,
        Some(30.0),
        "test-policy",
    )
}

#[tokio::test]
async fn patients_are_found_by_name_record_number_or_birth_date() {
    for db in common::backends().await {
        let store = &db.store;
        let today = NaiveDate::from_ymd_opt(2026, 12, 1).expect("date");
        let actor = Actor::system();
        let mut tx = store.begin().await.expect("begin");
        let people = [
            ("e1", "Dana", "Whitfield", "MRN-1001", (1961, 4, 7)),
            ("e2", "Daniel", "Whitaker", "MRN-1002", (1975, 1, 30)),
            ("e3", "Maria", "Delgado", "100%-X", (1961, 4, 7)),
        ];
        let mut ids = Vec::new();
        for (external, given, family, mrn, (y, m, d)) in people {
            let mut details = PatientDetails::new(external, given, family);
            details.mrn = Some(mrn.into());
            details.birth_date = NaiveDate::from_ymd_opt(y, m, d);
            ids.push(tx.insert_patient(&details, &actor).await.expect("patient"));
        }
        // Dana is on today's queue with the desk; Daniel waits on a physician.
        for (patient, outcome, code) in [
            (ids[0], Outcome::ApproveWithTasks, ReasonCode::PdmpReviewOverdue),
            (ids[1], Outcome::Escalate, ReasonCode::AberrantPattern),
        ] {
            let decided = decision(outcome, code);
            store
                .record_decision(
                    &mut tx,
                    &NewDecision {
                        patient_id: patient,
                        clinic_date: today,
                        refill_request_id: None,
                        decision: &decided,
                        decided_by: &actor,
                        run_out_on: today.checked_add_days(chrono::Days::new(3)),
                        dedupe_key: None,
                    },
                )
                .await
                .expect("decision");
        }
        tx.commit().await.expect("commit");
        let find = |text: &str| {
            let query = PatientQuery::parse(text).expect("query");
            async move {
                find_patients(store, today, &query, 20)
                    .await
                    .expect("search")
                    .into_iter()
                    .map(|hit| hit.family_name)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(find("whit").await, ["Whitaker", "Whitfield"], "{}: prefix, any case", db.name);
        assert_eq!(find("Whitfield, Dana").await, ["Whitfield"], "{}: family, given", db.name);
        assert_eq!(find("dana whit").await, ["Whitfield"], "{}: given family", db.name);
        assert_eq!(find("1002").await, ["Whitaker"], "{}: any part of the record number", db.name);
        assert_eq!(find("1961-04-07").await, ["Delgado", "Whitfield"], "{}: birth date", db.name);
        assert_eq!(find("04/07/1961").await, ["Delgado", "Whitfield"], "{}: US date", db.name);
        assert_eq!(find("100%").await, ["Delgado"], "{}: % is a character", db.name);
        assert!(find("nobody").await.is_empty(), "{}", db.name);
        let query = PatientQuery::parse("Whitfield").expect("query");
        let hit = &find_patients(store, today, &query, 20).await.expect("search")[0];
        assert_eq!(hit.outcome.as_deref(), Some("APPROVE_WITH_TASKS"), "{}: today's queue row", db.name);
        assert_eq!(hit.mrn.as_deref(), Some("MRN-1001"));

        let tallies = screens::queue_tallies(store, today).await.expect("tallies");
        assert_eq!(tallies.count(QueueFilter::Open), 2, "{}", db.name);
        assert_eq!(tallies.count(QueueFilter::Desk), 1, "{}: the escalation is the physician's", db.name);
        let desk = screens::queue_page(store, today, QueueFilter::Desk, 100, 0).await.expect("page");
        assert_eq!(desk.iter().map(|r| r.family_name.as_str()).collect::<Vec<_>>(), ["Whitfield"], "{}", db.name);
    }
}

/// An admin changes a role: the account carries the new role, its sessions end, and the change is
/// audited with the role before and after.
#[tokio::test]
async fn a_role_change_ends_the_sessions_and_is_audited() {
    use refill_store::accounts::{self, NewUser, Role};
    for db in common::backends().await {
        let store = &db.store;
        let actor = Actor::system();
        let user = accounts::create_user(
            store,
            &NewUser {
                username: "sam".into(),
                display_name: "Sam Staff".into(),
                role: Role::Staff,
                password_hash: "$argon2id$x".into(),
            },
            1_000,
            &actor,
        )
        .await
        .expect("user");
        accounts::create_person_session(store, "hash-sam", user.id, "csrf", 2_000, 100_000).await.expect("session");
        accounts::set_role(store, user.id, Role::Physician, 3_000, &actor).await.expect("role");
        assert_eq!(accounts::get_user(store, user.id).await.expect("user").role, Role::Physician, "{}", db.name);
        let session = accounts::load_session(store, "hash-sam").await.expect("load");
        assert!(session.is_none(), "{}: the session ended", db.name);
        let head = store.audit_head().await.expect("head");
        let events = store.audit_events(1, head.seq).await.expect("events");
        let changed = events.iter().find(|e| e.action == "account.role_changed").expect("audited");
        assert_eq!(changed.resource_id.as_deref(), Some(user.id.to_string().as_str()));
        assert!(matches!(
            accounts::set_role(store, 999_999, Role::Admin, 4_000, &actor).await,
            Err(refill_store::StoreError::NotFound(_))
        ));
    }
}

/// What other desks recorded on a patient, newest first, without presence marks.
#[tokio::test]
async fn a_patients_recent_changes_are_listed_without_presence() {
    use refill_store::accounts;
    for db in common::backends().await {
        let store = &db.store;
        let mut tx = store.begin().await.expect("begin");
        accounts::record_screen_change(&mut tx, Some(7), "queue.pdmp", Some("Omar Reyes"), 1_000)
            .await
            .expect("change");
        accounts::record_screen_change(&mut tx, Some(7), "queue.naloxone", Some("Omar Reyes"), 2_000)
            .await
            .expect("change");
        accounts::record_screen_change(&mut tx, Some(8), "queue.pdmp", Some("Dana"), 2_500).await.expect("change");
        accounts::record_screen_change(&mut tx, Some(7), "presence", None, 3_000).await.expect("presence");
        tx.commit().await.expect("commit");
        let changes = accounts::patient_screen_changes(store, 7, 1_500, 10).await.expect("changes");
        let kinds: Vec<&str> = changes.iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(kinds, ["queue.naloxone"], "{}: since the time asked, one patient, no presence", db.name);
        assert_eq!(changes[0].actor.as_deref(), Some("Omar Reyes"));
    }
}
