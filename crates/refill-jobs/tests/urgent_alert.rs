//! Urgent escalations alert physicians at once, on real SQLite (and PostgreSQL when reachable): the
//! daily pipeline enqueues one `urgent_alert` job per urgent patient and clinic date (none for a
//! routine decision, none again on a re-run), and a worker with the outbox mailer turns it into one
//! outbox row addressed to the physician recipients, carrying an opaque patient reference only.

#[path = "../../refill-store/tests/common/mod.rs"]
mod common;
mod support;
use support::{drain_default_queue, patient_with_a_fill};
#[path = "../../refill-notify/tests/support/sample.rs"]
mod sample;

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use chrono_tz::Tz;
use refill_jobs::JobContext;
use refill_jobs::delivery::{DeliverySettings, OutboxMailer};
use refill_jobs::pipeline::{StoreEvaluator, run_daily};
use refill_notify::{Composer, Mailer, SmtpSettings};
use refill_rules::policy::Policy;
use refill_rules::uds::UdsSeed;
use refill_rules::{ClinicalFlag, ClinicalFlagKind, Confidentiality, Outcome, PatientId};
use refill_store::Store;
use refill_store::jobs::{self, JobRow, JobState};
use refill_store::outbox::{self, OutboxAudience, OutboxState};

const PHYSICIANS: [&str; 2] = ["dr-a@northside.example", "dr-b@northside.example"];

fn clinic_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 2).unwrap()
}

/// One patient with a fill; `overdose_signal` adds the flag that makes the refill policy escalate urgently.
async fn add_patient(store: &Store, family_name: &str, overdose_signal: bool) -> PatientId {
    add_patient_with(store, family_name, overdose_signal.then_some(Confidentiality::Normal)).await
}

/// `add_patient`, with the overdose flag labelled `Some(confidentiality)`.
async fn add_patient_with(store: &Store, family_name: &str, overdose_signal: Option<Confidentiality>) -> PatientId {
    let mut tx = store.begin().await.unwrap();
    let id = patient_with_a_fill(&mut tx, &format!("ext-{family_name}"), "Zed", family_name).await;
    if let Some(confidentiality) = overdose_signal {
        let flag = ClinicalFlag {
            kind: ClinicalFlagKind::OverdoseOrSedationSignal,
            recorded_on: NaiveDate::from_ymd_opt(2026, 10, 28).unwrap(),
            confidentiality,
        };
        tx.insert_clinical_flag(id, &flag, None).await.unwrap();
    }
    tx.commit().await.unwrap();
    id
}

fn evaluator(store: &Store) -> Arc<StoreEvaluator> {
    Arc::new(StoreEvaluator::new(store.clone(), Arc::new(Policy::default()), "test-policy", UdsSeed::splitmix64(42)))
}

fn outbox_mailer() -> OutboxMailer {
    let composer = Composer::new(sample::northside(&["desk@northside.example"], &PHYSICIANS)).unwrap();
    // Composing never talks SMTP: the relay is only contacted by deliveries, which this test does not run.
    let mailer = Mailer::new(&SmtpSettings::loopback_plain(9)).unwrap();
    let clinic_zone: Tz = "America/New_York".parse().unwrap();
    OutboxMailer { composer, mailer, settings: DeliverySettings::default(), clinic_zone, supply_horizon_days: 7 }
}

async fn urgent_alert_jobs(store: &Store, state: JobState) -> Vec<JobRow> {
    let rows = jobs::list_jobs(store, state, 1000).await.unwrap();
    rows.into_iter().filter(|job| job.kind == "urgent_alert").collect()
}

#[tokio::test]
async fn an_urgent_decision_alerts_the_physicians_once() {
    for db in common::backends().await {
        let store = &db.store;
        let urgent = add_patient(store, "Quillfeather", true).await;
        let routine = add_patient(store, "Brambleton", false).await;
        let date = clinic_date();
        let daily = evaluator(store);

        run_daily(store, daily.as_ref(), "main", date, 100).await.unwrap();
        let decided = |patient| async move { store.decisions_for_patient(patient, 10).await.unwrap().remove(0) };
        assert_eq!(decided(urgent).await.decision.outcome, Outcome::EscalateUrgent, "{}", db.name);
        assert_ne!(decided(routine).await.decision.outcome, Outcome::EscalateUrgent, "{}", db.name);
        let queued = urgent_alert_jobs(store, JobState::Available).await;
        let keys: Vec<_> = queued.iter().map(|job| job.unique_key.clone().unwrap_or_default()).collect();
        assert_eq!(keys, vec![format!("urgent_alert:{}:{date}", urgent.0)], "{}", db.name);

        // The same day again: the alert job is already there, nothing is added.
        run_daily(store, daily.as_ref(), "main", date, 100).await.unwrap();
        assert_eq!(urgent_alert_jobs(store, JobState::Available).await.len(), 1, "{}: re-run added an alert", db.name);

        // A worker with the outbox mailer composes it into one physician email.
        let mut context = JobContext::new("w1");
        context.daily = Some(daily.clone());
        context.mailer = Some(Arc::new(outbox_mailer()));
        drain_default_queue(store, "w1", context).await;
        assert_eq!(urgent_alert_jobs(store, JobState::Completed).await.len(), 1, "{}", db.name);

        let pending = outbox::list_by_state(store, OutboxState::Pending, 100).await.unwrap();
        let alerts: Vec<_> = pending.iter().filter(|row| row.kind == "physician-urgent-alert").collect();
        assert_eq!(alerts.len(), 1, "{}: {pending:?}", db.name);
        assert_eq!(alerts[0].audience, OutboxAudience::Physician, "{}", db.name);
        assert_eq!(alerts[0].patient_id, None, "{}: the alert is not a patient message", db.name);

        let claimed = outbox::claim_due(store, Utc::now() + chrono::Duration::minutes(1), Duration::from_secs(60), 100)
            .await
            .unwrap();
        let alert = claimed.iter().find(|email| email.id == alerts[0].id).expect("the alert is due at once");
        assert_eq!(alert.envelope_to, PHYSICIANS.to_vec(), "{}", db.name);
        let raw = String::from_utf8_lossy(&alert.raw_message);
        for secret in ["Quillfeather", "Zed", "Brambleton"] {
            assert!(!raw.contains(secret), "{}: the alert names the patient ({secret})", db.name);
        }
    }
}

/// A reason that rests on a 42 CFR Part 2 record never leaves the application by email: the alert and
/// the physicians' digest say "restricted information" instead of naming it.
#[tokio::test]
async fn an_alert_resting_on_a_part2_record_does_not_name_the_reason() {
    for db in common::backends().await {
        let store = &db.store;
        let open_signal = add_patient(store, "Quillfeather", true).await;
        let restricted = add_patient_with(store, "Ashgrove", Some(Confidentiality::Part2)).await;
        let date = clinic_date();
        run_daily(store, evaluator(store).as_ref(), "main", date, 100).await.unwrap();

        let mut tx = store.begin().await.unwrap();
        let open = outbox::open_exceptions_in(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        let codes = |patient: PatientId| {
            open.iter().find(|e| e.patient_id == patient).map(|e| e.reason_codes.clone()).unwrap_or_default()
        };
        assert!(codes(open_signal).contains(&"overdose_or_sedation_signal".to_string()), "{}: {open:?}", db.name);
        let hidden = codes(restricted);
        assert!(hidden.contains(&outbox::RESTRICTED_REASON.to_string()), "{}: {hidden:?}", db.name);
        assert!(!hidden.iter().any(|code| code.contains("overdose")), "{}: {hidden:?}", db.name);

        let raised_at = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap().and_hms_opt(6, 0, 0).unwrap();
        let alert = refill_jobs::delivery::urgent_alert_view(restricted, date, &open, raised_at).unwrap();
        assert!(alert.summary.contains("restricted information"), "{}: {}", db.name, alert.summary);
        assert!(!alert.summary.contains("overdose"), "{}: {}", db.name, alert.summary);
        let zone: Tz = "America/New_York".parse().unwrap();
        let digest = refill_jobs::delivery::exception_digest_view(date, open.clone(), Vec::new(), zone);
        let line = digest.exceptions.iter().find(|l| l.patient_ref.ends_with(&format!("#{}", restricted.0))).unwrap();
        assert!(!line.summary.contains("overdose"), "{}: {}", db.name, line.summary);
    }
}

/// The physicians' digest reports who broke the glass on which patient, without the written reason
/// (which may describe the restricted record). Every grant is reported exactly once: a grant of the
/// weekend (no digest runs then) is in the next digest, and no grant is in two (issue 17, finding 6).
#[tokio::test]
async fn the_physician_digest_reports_every_break_the_glass_grant_once() {
    use refill_store::accounts::{self, NewUser, Role};
    for db in common::backends().await {
        let store = &db.store;
        let patient = add_patient(store, "Quillfeather", false).await;
        let now_ms = Utc::now().timestamp_millis();
        let new = NewUser {
            username: "okafor".into(),
            display_name: "Dr. Okafor".into(),
            role: Role::Physician,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        };
        let user = accounts::create_user(store, &new, now_ms, &refill_store::Actor::system()).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let reason = "reviewing the methadone program letter";
        accounts::grant_break_glass(&mut tx, user.id, patient.0, reason, now_ms - 1000, now_ms + 3_599_000)
            .await
            .unwrap();
        // A grant of Saturday, 60 hours ago: no digest has run since.
        let saturday = now_ms - 60 * 3_600_000;
        accounts::grant_break_glass(&mut tx, user.id, patient.0, "weekend call", saturday, saturday + 3_600_000)
            .await
            .unwrap();
        let digest = refill_jobs::JobPayload::PhysicianExceptionDigest { site: "main".into(), date: clinic_date() };
        jobs::enqueue(&mut tx, &digest.to_new_job()).await.unwrap().unwrap();
        tx.commit().await.unwrap();

        let mut context = JobContext::new("w1");
        context.mailer = Some(Arc::new(outbox_mailer()));
        drain_default_queue(store, "w1", context.clone()).await;

        let digests = || async {
            let claimed =
                outbox::claim_due(store, Utc::now() + chrono::Duration::minutes(1), Duration::from_secs(60), 100)
                    .await
                    .unwrap();
            claimed
                .into_iter()
                .filter(|e| e.kind == "physician-exception-digest")
                .map(|e| String::from_utf8_lossy(&e.raw_message).replace("=\r\n", ""))
                .collect::<Vec<_>>()
        };
        let first = digests().await;
        assert_eq!(first.len(), 1, "{}: the digest is queued", db.name);
        let raw = &first[0];
        assert!(raw.contains(&format!("Dr. Okafor opened patient #{}", patient.0)), "{}: {raw}", db.name);
        assert!(raw.contains("for 60 minutes"), "{}: {raw}", db.name);
        assert_eq!(raw.matches("opened patient #").count(), 4, "{}: both grants, text and HTML parts", db.name);
        assert!(!raw.contains("methadone"), "{}: the reason was mailed", db.name);

        // The next day's digest lists neither again.
        let next = clinic_date().succ_opt().unwrap();
        let mut tx = store.begin().await.unwrap();
        let digest = refill_jobs::JobPayload::PhysicianExceptionDigest { site: "main".into(), date: next };
        jobs::enqueue(&mut tx, &digest.to_new_job()).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        drain_default_queue(store, "w1", context).await;
        let second = digests().await;
        assert_eq!(second.len(), 1, "{}: the next digest is queued", db.name);
        assert_eq!(second[0].matches("opened patient #").count(), 0, "{}: a grant reported twice", db.name);
    }
}

/// Issue 17, finding 6: a break-the-glass grant alerts the privacy officer at once, from the job the
/// web enqueues in the grant's transaction (by name and JSON), without the written reason.
#[tokio::test]
async fn a_break_the_glass_grant_alerts_the_privacy_officer_at_once() {
    use refill_store::accounts::{self, NewUser, Role};
    for db in common::backends().await {
        let store = &db.store;
        let patient = add_patient(store, "Quillfeather", false).await;
        let now_ms = Utc::now().timestamp_millis();
        let new = NewUser {
            username: "okafor".into(),
            display_name: "Dr. Okafor".into(),
            role: Role::Physician,
            password_hash: "$argon2id$x".into(),
        };
        let user = accounts::create_user(store, &new, now_ms, &refill_store::Actor::system()).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let reason = "reviewing the methadone program letter";
        let grant =
            accounts::grant_break_glass(&mut tx, user.id, patient.0, reason, now_ms, now_ms + 3_600_000).await.unwrap();
        let job = jobs::NewJob::new(
            "break_glass_alert",
            serde_json::json!({ "kind": "break_glass_alert", "grant": grant.id }),
        )
        .priority(5)
        .unique_key(format!("break_glass_alert:{}", grant.id));
        jobs::enqueue(&mut tx, &job).await.unwrap().unwrap();
        tx.commit().await.unwrap();

        let mut settings = sample::northside(&["desk@northside.example"], &PHYSICIANS);
        settings.privacy_officer_recipients = vec!["privacy@northside.example".into()];
        let mailer = OutboxMailer { composer: Composer::new(settings).unwrap(), ..outbox_mailer() };
        let mut context = JobContext::new("w1");
        context.mailer = Some(Arc::new(mailer));
        drain_default_queue(store, "w1", context).await;

        let claimed = outbox::claim_due(store, Utc::now() + chrono::Duration::minutes(1), Duration::from_secs(60), 100)
            .await
            .unwrap();
        let alert = claimed.iter().find(|e| e.kind == "privacy-break-glass-alert").expect("the alert is queued");
        let raw = String::from_utf8_lossy(&alert.raw_message).replace("=\r\n", "");
        assert!(raw.contains("privacy@northside.example"), "{}: {raw}", db.name);
        assert!(raw.contains(&format!("Dr. Okafor opened the restricted records of patient #{}", patient.0)), "{raw}");
        assert!(!raw.contains("methadone"), "{}: the reason was mailed", db.name);
    }
}
