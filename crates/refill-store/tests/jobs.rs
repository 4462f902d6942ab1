//! The job queue and schedule SQL on both backends: transactional enqueue, unique keys, claim order,
//! leases with fencing tokens, heartbeats, rescue, backoff to `dead`, cancellation, release, batched
//! completion, and schedule sync/lock/advance.

mod common;

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use refill_store::jobs::{self, FailOutcome, JobState, NewJob};
use refill_store::schedule::{self, Cursor, ScheduleSpec, SyncOutcome};
use refill_store::{Store, StoreError};
use serde_json::json;

async fn enqueue(store: &Store, job: NewJob) -> Option<i64> {
    let mut tx = store.begin().await.unwrap();
    let id = jobs::enqueue(&mut tx, &job).await.unwrap();
    tx.commit().await.unwrap();
    id
}

fn probe(n: i64) -> NewJob {
    NewJob::new("probe", json!({ "kind": "probe", "n": n }))
}

#[tokio::test]
async fn enqueue_is_transactional_and_unique_keys_deduplicate() {
    for db in common::backends().await {
        let store = &db.store;
        let first = enqueue(store, probe(1).unique_key("visit_due:7:2026-11-02")).await;
        assert!(first.is_some(), "{}", db.name);
        let second = enqueue(store, probe(2).unique_key("visit_due:7:2026-11-02")).await;
        assert_eq!(second, None, "{}: a second enqueue under the same key must be a no-op", db.name);

        let mut tx = store.begin().await.unwrap();
        let rolled_back = jobs::enqueue(&mut tx, &probe(3).unique_key("rolled-back")).await.unwrap();
        assert!(rolled_back.is_some());
        tx.rollback().await.unwrap();
        assert!(jobs::get_job_by_key(store, "rolled-back").await.unwrap().is_none(), "{}", db.name);

        let job = jobs::get_job(store, first.unwrap()).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Available);
        assert_eq!(job.unique_key.as_deref(), Some("visit_due:7:2026-11-02"));
    }
}

#[tokio::test]
async fn claims_follow_priority_then_run_at_and_skip_future_jobs() {
    for db in common::backends().await {
        let store = &db.store;
        let now = Utc::now();
        let late = enqueue(store, probe(1).priority(5).run_at(now - chrono::Duration::seconds(30))).await.unwrap();
        let urgent = enqueue(store, probe(2).priority(0).run_at(now - chrono::Duration::seconds(1))).await.unwrap();
        let early = enqueue(store, probe(3).priority(5).run_at(now - chrono::Duration::seconds(60))).await.unwrap();
        let future = enqueue(store, probe(4).run_at(now + chrono::Duration::hours(1))).await.unwrap();
        let other_queue = enqueue(store, probe(5).queue("email")).await.unwrap();

        let one = jobs::claim(store, "default", "w1", Duration::from_secs(30), 1).await.unwrap();
        assert_eq!(one.iter().map(|j| j.id).collect::<Vec<_>>(), vec![urgent], "{}", db.name);
        assert_eq!(one[0].attempt, 1);
        let rest = jobs::claim(store, "default", "w1", Duration::from_secs(30), 10).await.unwrap();
        let mut ids: Vec<i64> = rest.iter().map(|j| j.id).collect();
        ids.sort();
        let mut expected = vec![early, late];
        expected.sort();
        assert_eq!(ids, expected, "{}", db.name);
        assert!(!ids.contains(&future) && !ids.contains(&other_queue));
        let email = jobs::claim(store, "email", "w1", Duration::from_secs(30), 10).await.unwrap();
        assert_eq!(email.len(), 1);
        assert_ne!(one[0].lease.token, rest[0].lease.token, "every claim gets its own token");
    }
}

#[tokio::test]
async fn a_worker_that_lost_its_lease_cannot_commit() {
    for db in common::backends().await {
        let store = &db.store;
        let id = enqueue(store, probe(1)).await.unwrap();
        let a = jobs::claim(store, "default", "a", Duration::from_millis(300), 1).await.unwrap().remove(0);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(jobs::rescue_expired(store, 100).await.unwrap(), vec![id], "{}", db.name);
        let b = jobs::claim(store, "default", "b", Duration::from_secs(30), 1).await.unwrap().remove(0);
        assert_eq!(b.id, id);
        assert_eq!(b.attempt, 2, "{}: attempts count at claim", db.name);

        // A's effects and completion share one transaction; the fenced completion fails, so they roll back.
        let mut tx = store.begin().await.unwrap();
        jobs::record_probe_effect(&mut tx, &a.lease, "a").await.unwrap();
        let error = jobs::complete(&mut tx, &a.lease).await.unwrap_err();
        assert!(matches!(error, StoreError::Conflict(_)), "{}: {error}", db.name);
        tx.rollback().await.unwrap();
        assert!(
            jobs::heartbeat(store, std::slice::from_ref(&a.lease), Duration::from_secs(30)).await.unwrap().is_empty()
        );
        assert_eq!(jobs::fail(store, &a.lease, "late", Duration::ZERO, false).await.unwrap(), FailOutcome::LeaseLost);

        let mut tx = store.begin().await.unwrap();
        jobs::record_probe_effect(&mut tx, &b.lease, "b").await.unwrap();
        jobs::complete(&mut tx, &b.lease).await.unwrap();
        tx.commit().await.unwrap();
        let audit = jobs::audit_probe_effects(store, "probe").await.unwrap();
        assert_eq!((audit.completed, audit.effects, audit.jobs_without_exactly_one_effect), (1, 1, 0), "{}", db.name);
    }
}

#[tokio::test]
async fn heartbeats_keep_a_lease_alive() {
    for db in common::backends().await {
        let store = &db.store;
        enqueue(store, probe(1)).await.unwrap();
        let job = jobs::claim(store, "default", "a", Duration::from_millis(600), 1).await.unwrap().remove(0);
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let kept =
                jobs::heartbeat(store, std::slice::from_ref(&job.lease), Duration::from_millis(600)).await.unwrap();
            assert_eq!(kept, vec![job.id], "{}", db.name);
        }
        assert!(jobs::rescue_expired(store, 100).await.unwrap().is_empty(), "{}: a live lease was rescued", db.name);
        jobs::complete_alone(store, &job.lease).await.unwrap();
    }
}

#[tokio::test]
async fn failures_back_off_and_end_dead_for_staff() {
    for db in common::backends().await {
        let store = &db.store;
        let id = enqueue(store, probe(1).max_attempts(2)).await.unwrap();
        let job = jobs::claim(store, "default", "a", Duration::from_secs(30), 1).await.unwrap().remove(0);
        let outcome = jobs::fail(store, &job.lease, "smtp down", Duration::from_secs(3600), false).await.unwrap();
        assert_eq!(outcome, FailOutcome::Retrying);
        let row = jobs::get_job(store, id).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Available);
        assert!(row.run_at > Utc::now() + chrono::Duration::minutes(59), "{}: backoff not applied", db.name);
        assert!(jobs::claim(store, "default", "a", Duration::from_secs(30), 1).await.unwrap().is_empty());

        // A job with a single attempt goes dead on its first failure.
        let id2 = enqueue(store, probe(2).max_attempts(1)).await.unwrap();
        let job2 = jobs::claim(store, "default", "a", Duration::from_secs(30), 1).await.unwrap().remove(0);
        assert_eq!(job2.id, id2);
        assert_eq!(jobs::fail(store, &job2.lease, "boom", Duration::ZERO, false).await.unwrap(), FailOutcome::Dead);
        let dead = jobs::list_jobs(store, JobState::Dead, 10).await.unwrap();
        assert_eq!(dead.len(), 1, "{}", db.name);
        assert_eq!(dead[0].last_error.as_deref(), Some("boom"));

        // Staff retry gives it one more attempt.
        let mut tx = store.begin().await.unwrap();
        assert!(jobs::retry_dead(&mut tx, id2).await.unwrap());
        tx.commit().await.unwrap();
        let again = jobs::claim(store, "default", "a", Duration::from_secs(30), 1).await.unwrap().remove(0);
        assert_eq!((again.id, again.attempt), (id2, 2));
        assert_eq!(
            jobs::fail(store, &again.lease, "permanent", Duration::ZERO, true).await.unwrap(),
            FailOutcome::Dead
        );
    }
}

#[tokio::test]
async fn cancelling_a_running_job_fences_out_its_worker() {
    for db in common::backends().await {
        let store = &db.store;
        let id = enqueue(store, probe(1).unique_key("taper_step:9:step:2")).await.unwrap();
        let job = jobs::claim(store, "default", "a", Duration::from_secs(30), 1).await.unwrap().remove(0);
        let mut tx = store.begin().await.unwrap();
        assert!(jobs::cancel_by_key(&mut tx, "taper_step:9:step:2", "plan revised").await.unwrap());
        tx.commit().await.unwrap();
        let error = jobs::complete_alone(store, &job.lease).await.unwrap_err();
        assert!(matches!(error, StoreError::Conflict(_)), "{}", db.name);
        assert_eq!(jobs::get_job(store, id).await.unwrap().unwrap().state, JobState::Cancelled);
    }
}

#[tokio::test]
async fn release_returns_the_job_without_counting_the_attempt() {
    for db in common::backends().await {
        let store = &db.store;
        let id = enqueue(store, probe(1)).await.unwrap();
        let job = jobs::claim(store, "default", "a", Duration::from_secs(30), 1).await.unwrap().remove(0);
        assert!(jobs::release(store, &job.lease).await.unwrap());
        assert!(!jobs::release(store, &job.lease).await.unwrap(), "{}: a second release is fenced", db.name);
        let row = jobs::get_job(store, id).await.unwrap().unwrap();
        assert_eq!((row.state, row.attempt), (JobState::Available, 0), "{}", db.name);
    }
}

#[tokio::test]
async fn batched_claims_complete_together_or_not_at_all() {
    for db in common::backends().await {
        let store = &db.store;
        let mut tx = store.begin().await.unwrap();
        assert_eq!(jobs::enqueue_copies(&mut tx, &probe(0), 20).await.unwrap(), 20);
        tx.commit().await.unwrap();
        let batch = jobs::claim(store, "default", "a", Duration::from_secs(30), 8).await.unwrap();
        assert_eq!(batch.len(), 8, "{}", db.name);
        let leases: Vec<_> = batch.iter().map(|j| j.lease.clone()).collect();

        // One lease stolen (cancelled): the whole batch's completion fails and rolls back.
        let mut tx = store.begin().await.unwrap();
        jobs::cancel(&mut tx, batch[3].id, "test").await.unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        assert!(jobs::complete_many(&mut tx, &leases).await.is_err(), "{}", db.name);
        tx.rollback().await.unwrap();
        let counts = jobs::queue_counts(store).await.unwrap();
        let completed = counts.iter().find(|c| c.state == JobState::Completed).map(|c| c.count).unwrap_or(0);
        assert_eq!(completed, 0, "{}", db.name);

        let mut kept = leases.clone();
        kept.remove(3);
        let mut tx = store.begin().await.unwrap();
        jobs::complete_many(&mut tx, &kept).await.unwrap();
        tx.commit().await.unwrap();
        let counts = jobs::queue_counts(store).await.unwrap();
        let count = |state| counts.iter().filter(|c| c.state == state).map(|c| c.count).sum::<i64>();
        assert_eq!((count(JobState::Completed), count(JobState::Available)), (7, 12), "{}", db.name);
    }
}

fn spec(name: &str, cron: &str) -> ScheduleSpec {
    ScheduleSpec {
        name: name.into(),
        cron: cron.into(),
        time_zone: "America/New_York".into(),
        semantics: "wall_clock".into(),
        misfire: "fire_once".into(),
        job_kind: "daily_pipeline".into(),
        job_args: json!({ "site": "main" }),
        fingerprint: format!("{cron}|America/New_York"),
    }
}

#[tokio::test]
async fn schedule_cursors_survive_restarts_and_reset_on_change() {
    for db in common::backends().await {
        let store = &db.store;
        let day = |d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap().and_hms_opt(2, 30, 0).unwrap();
        let past = Cursor { local: day(1), fire_at: Utc::now() - chrono::Duration::minutes(1) };
        let later = Cursor { local: day(9), fire_at: Utc::now() + chrono::Duration::days(8) };

        let mut tx = store.begin().await.unwrap();
        assert_eq!(
            schedule::sync_schedule(&mut tx, &spec("daily", "0 30 2 * * *"), past).await.unwrap(),
            SyncOutcome::CursorReset
        );
        assert_eq!(
            schedule::sync_schedule(&mut tx, &spec("old", "0 0 1 * * *"), later).await.unwrap(),
            SyncOutcome::CursorReset
        );
        tx.commit().await.unwrap();

        // A restart with the same spec keeps the stored cursor.
        let mut tx = store.begin().await.unwrap();
        assert_eq!(
            schedule::sync_schedule(&mut tx, &spec("daily", "0 30 2 * * *"), later).await.unwrap(),
            SyncOutcome::Unchanged
        );
        assert_eq!(schedule::disable_schedules_except(&mut tx, &["daily".to_string()]).await.unwrap(), 1);
        tx.commit().await.unwrap();
        let rows = schedule::list_schedules(store).await.unwrap();
        let daily = rows.iter().find(|r| r.spec.name == "daily").unwrap();
        assert_eq!(daily.next_local, day(1), "{}", db.name);
        assert!(!rows.iter().find(|r| r.spec.name == "old").unwrap().enabled);

        // Two transactions lock due rows: on PostgreSQL the second skips the locked row; on SQLite the
        // writer lock serialises them. Either way only one sees it due after the first advances it.
        let mut first = store.begin().await.unwrap();
        let now = jobs::db_now(&mut first).await.unwrap();
        let due = schedule::lock_due_schedules(&mut first, now, 10).await.unwrap();
        assert_eq!(due.len(), 1, "{}", db.name);
        if db.name == "postgres" {
            let mut second = store.begin().await.unwrap();
            let now2 = jobs::db_now(&mut second).await.unwrap();
            assert!(schedule::lock_due_schedules(&mut second, now2, 10).await.unwrap().is_empty());
            second.rollback().await.unwrap();
        }
        schedule::advance_schedule(&mut first, "daily", later, Some(day(1))).await.unwrap();
        first.commit().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let now = jobs::db_now(&mut tx).await.unwrap();
        assert!(schedule::lock_due_schedules(&mut tx, now, 10).await.unwrap().is_empty(), "{}", db.name);
        tx.rollback().await.unwrap();

        // A changed spec resets the cursor.
        let mut tx = store.begin().await.unwrap();
        assert_eq!(
            schedule::sync_schedule(&mut tx, &spec("daily", "0 0 3 * * *"), past).await.unwrap(),
            SyncOutcome::CursorReset
        );
        tx.commit().await.unwrap();
        let rows = schedule::list_schedules(store).await.unwrap();
        let daily = rows.iter().find(|r| r.spec.name == "daily").unwrap();
        assert_eq!((daily.next_local, daily.last_fired_local), (day(1), Some(day(1))), "{}", db.name);
    }
}

/// `/metrics` reads the last hour's finished jobs per kind and state, with their due-to-done time.
#[tokio::test]
async fn finished_jobs_are_counted_per_kind_with_their_latency() {
    for db in common::backends().await {
        let store = &db.store;
        let before = Utc::now() - chrono::Duration::seconds(5);
        let mut tx = store.begin().await.unwrap();
        for _ in 0..3 {
            jobs::enqueue(&mut tx, &NewJob::new("probe", json!({ "kind": "probe" }))).await.unwrap();
        }
        tx.commit().await.unwrap();
        let claimed = jobs::claim(store, "default", "w1", Duration::from_secs(30), 3).await.unwrap();
        assert_eq!(claimed.len(), 3, "{}", db.name);
        jobs::complete_alone(store, &claimed[0].lease).await.unwrap();
        jobs::complete_alone(store, &claimed[1].lease).await.unwrap();
        jobs::fail(store, &claimed[2].lease, "permanent", Duration::from_secs(1), true).await.unwrap();
        let finished = jobs::finished_since(store, before).await.unwrap();
        let completed = finished.iter().find(|f| f.state == JobState::Completed).expect("completed");
        let dead = finished.iter().find(|f| f.state == JobState::Dead).expect("dead");
        assert_eq!((completed.kind.as_str(), completed.count, dead.count), ("probe", 2, 1), "{}", db.name);
        assert!(completed.mean_seconds >= 0.0 && completed.max_seconds < 60.0, "{}: {completed:?}", db.name);
        assert!(jobs::finished_since(store, Utc::now() + chrono::Duration::minutes(1)).await.unwrap().is_empty());
    }
}
