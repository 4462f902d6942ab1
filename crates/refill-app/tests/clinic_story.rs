//! Sixty days of a small clinic through the real daily run and the real use cases, on SQLite and on
//! PostgreSQL (refill-cycle.md end to end).
//!
//! Every clinic day: the daily run decides every patient; then the day's scripted events happen
//! (requests, drug tests and their confirmations, physician decisions, staff notes and contacts); then
//! the refill desk prepares every refill the protocol or a physician released, and the pharmacy
//! dispenses prepared refills once they are due. The outcome each patient ends the day with is written
//! as one letter a day and compared with the expected line for the whole 60 days:
//!
//! `.` not due · `t` not due, a monitoring task · `A` window open, approved · `T` approved with tasks
//! `p` prepared, waiting for the dispense · `H` held · `E` with a physician · `U` urgent for a physician
//!
//! The script covers: a stable patient; a recorded early request held until its eligible date; a
//! physician's approval, a bridge and a hold each standing through later staff facts; a drug test from
//! collection to physician review; a taper step's refill approved on time; a held patient and an
//! unanswered exception turning urgent the working day before the supply runs out; a patient sent to a
//! physician with a note the physician sees.

#[path = "../../refill-store/tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use refill_app::physician::{self, Bridge, PlanChange, Signature};
use refill_app::staff::{self, StaffAction, StaffContext};
use refill_app::{App, AppError};
use refill_rules::policy::Policy;
use refill_rules::uds::UdsSeed;
use refill_rules::{
    AgreementFacts, ClinicFacts, Decision, DrugClass, Fill, NaloxoneEvent, NaloxoneEventKind, Outcome, PatientId,
    PdmpFinding, PdmpReview, PhysicianReview, PrescriberId, RefillWindow, RequestKind, ReviewKind, UdsAnalyteResult,
    UdsKind, UdsResult,
};
use refill_store::cycle::NewRefillRequest;
use refill_store::facts::UdsOrder;
use refill_store::jobs::{self, JobState};
use refill_store::{
    Actor, ExceptionId, NewTaperPlan, NewTaperStep, PatientDetails, QueueItemId, Resolution, StaffFact, Store,
};

const DAYS: i64 = 60;

fn start() -> NaiveDate {
    // A Monday.
    common::date("2026-01-05")
}

fn day(n: i64) -> NaiveDate {
    start() + Duration::days(n)
}

fn desk() -> Actor {
    Actor::new("user:desk", "staff")
}

fn doctor() -> Actor {
    Actor::new("user:dr-b", "physician")
}

/// The clinic's patients, by role in the story.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Stable,
    Early,
    Approved,
    Bridged,
    Held,
    Taper,
    Unanswered,
    Noted,
}

const EVERYONE: [Who; 8] =
    [Who::Stable, Who::Early, Who::Approved, Who::Bridged, Who::Held, Who::Taper, Who::Unanswered, Who::Noted];

/// The line each patient must produce, one letter per day from 2026-01-05 (day 0) to 2026-03-05.
///
/// Read them with the script in `events`: e.g. the held patient is with a physician on days 1-2, held
/// from day 3 through later staff facts, released by a bridge on day 23 (the urgent alert went out that
/// morning) and prepared ahead of the refill after it; the early requester is held from the request on
/// day 7 to the eligible date, day 18, when the refill is prepared and dispensed the same day.
fn expected(who: Who) -> &'static str {
    match who {
        Who::Stable =>
        /*       */
        {
            "App....................Apppppp.......................Apppppp"
        }
        Who::Early =>
        /*        */
        {
            ".......HHHHHHHHHHH....................Apppppp..............."
        }
        Who::Approved =>
        /*     */
        {
            "..EEtttttTpppppp....................Apppppp................."
        }
        Who::Bridged =>
        /*      */
        {
            ".EEEEEEEEEE.......Apppppp.EE....................AppppppEEEEE"
        }
        Who::Held =>
        /*         */
        {
            ".EEHHHHHHHHHHHHHHHHHHHHTTpppp...................Apppppp....."
        }
        Who::Taper =>
        /*        */
        {
            "..........Apppppp....................Apppppp................"
        }
        Who::Unanswered =>
        /*   */
        {
            "EEEEEEEEEEEEEEEEEEEEEEEEE...................Apppppp........."
        }
        Who::Noted =>
        /*        */
        {
            ".......AEppppp....................Apppppp..................."
        }
    }
}

struct Clinic {
    app: App,
    patients: BTreeMap<Who, PatientId>,
    clinic: ClinicFacts,
    seed: UdsSeed,
    /// The days supply the pharmacy dispenses for each patient's next prepared refill.
    next_supply: BTreeMap<Who, u32>,
    /// Drug tests by patient, for their later steps.
    tests: BTreeMap<Who, Vec<i64>>,
    /// Urgent physician alerts seen, as (patient, day).
    alerts: Vec<(Who, i64)>,
}

fn oxycodone_tablets(per_day: f64) -> refill_rules::MedicationOrder {
    let mut order = common::oxycodone("MedicationRequest/oxy", 5.0);
    order.dose = Some(refill_rules::DoseQuantity { value: 1.0, unit: refill_rules::DoseUnit::DoseFormUnit });
    order.doses_per_day = Some(per_day);
    order.prescriber = Some(PrescriberId("dr-a".into()));
    order
}

fn result(collected_on: NaiveDate, confirmatory: bool, found: &[&str]) -> UdsResult {
    let mut analytes =
        vec![UdsAnalyteResult { assay: "oxycodone".into(), analyte: "oxycodone".into(), detected: true }];
    analytes.extend(found.iter().map(|a| UdsAnalyteResult {
        assay: (*a).into(),
        analyte: (*a).into(),
        detected: true,
    }));
    UdsResult {
        collected_on,
        kind: UdsKind::Scheduled,
        confirmatory,
        analytes,
        physician_reviewed_on: None,
        confidentiality: Default::default(),
        specimen_validity: Default::default(),
    }
}

impl Clinic {
    async fn open(store: Store) -> Clinic {
        let app = App::new(store.clone(), Arc::new(Policy::default()), "story-policy");
        let mut patients = BTreeMap::new();
        let mut tx = store.begin().await.expect("begin");
        let system = Actor::system();
        for (index, who) in EVERYONE.into_iter().enumerate() {
            let mut details = PatientDetails::new(format!("story-{index}"), format!("Patient{index}"), "Story");
            details.birth_date = Some(common::date("1966-05-01"));
            details.prescriber_of_record = Some(PrescriberId("dr-a".into()));
            let patient = tx.insert_patient(&details, &system).await.expect("patient");
            tx.replace_regimen(patient, &[oxycodone_tablets(4.0)]).await.expect("regimen");
            // The last fill before the story: each patient's cycle starts at a different point.
            let last_fill = match who {
                Who::Stable => "2025-12-13",
                Who::Early => "2025-12-28",
                Who::Approved => "2025-12-26",
                Who::Bridged => "2025-12-24",
                Who::Held => "2025-12-30",
                Who::Taper => "2025-12-27",
                Who::Unanswered => "2026-01-02",
                Who::Noted => "2025-12-24",
            };
            let fill =
                Fill { filled_on: common::date(last_fill), days_supply: 30, order_id: None, quantity: Some(120.0) };
            tx.insert_fill(patient, &fill, None).await.expect("fill");
            let monitored = common::date("2025-12-22");
            tx.insert_pdmp_review(patient, &PdmpReview { reviewed_on: monitored, findings: vec![] }, "user:desk", None)
                .await
                .expect("pdmp");
            let agreement = AgreementFacts {
                signed_on: common::date("2025-09-01"),
                prescriber_of_record: PrescriberId("dr-a".into()),
                text_version: "2025-01".into(),
                elements: vec![],
                voided_on: None,
            };
            tx.insert_agreement(patient, &agreement, None).await.expect("agreement");
            // The unanswered patient's physician review is overdue from the start: an exception nobody
            // answers until it turns urgent.
            let reviewed_on = if who == Who::Unanswered { "2025-09-20" } else { "2025-12-22" };
            let review = PhysicianReview {
                reviewed_on: common::date(reviewed_on),
                physician: PrescriberId("dr-a".into()),
                kind: ReviewKind::BenefitRisk,
            };
            tx.insert_physician_review(patient, &review, None).await.expect("review");
            // The next scheduled drug test is months away, so the story's tests are the scripted ones.
            schedule_far_test(&mut tx, patient, day(0)).await;
            if who == Who::Taper {
                let event = NaloxoneEvent { on: common::date("2025-12-01"), kind: NaloxoneEventKind::Dispensed };
                tx.insert_naloxone_event(patient, &event, "user:desk").await.expect("naloxone");
            }
            patients.insert(who, patient);
        }
        tx.commit().await.expect("commit");
        // The taper: 4 tablets a day since December, 3 a day from 2026-01-22 (the refill that starts then
        // is decided against that step), 2 a day from 2026-03-20.
        let taper = patients[&Who::Taper];
        let plan = NewTaperPlan {
            started_on: common::date("2025-12-01"),
            rationale: "Patient asked to reduce; slow taper agreed".into(),
            steps: vec![
                NewTaperStep {
                    starts_on: common::date("2025-12-01"),
                    regimen: vec![oxycodone_tablets(4.0)],
                    total_daily_mme: Some(30.0),
                },
                NewTaperStep {
                    starts_on: common::date("2026-01-22"),
                    regimen: vec![oxycodone_tablets(3.0)],
                    total_daily_mme: Some(22.5),
                },
                NewTaperStep {
                    starts_on: common::date("2026-03-20"),
                    regimen: vec![oxycodone_tablets(2.0)],
                    total_daily_mme: Some(15.0),
                },
            ],
        };
        let version = store.patient(taper).await.expect("patient").version;
        let plan_id = store.create_taper_plan(taper, version, &plan, &doctor()).await.expect("taper plan");
        // The check-in before the 2026-01-22 step (pain and function steady, no withdrawal, go on): the
        // daily run applies a step only after one.
        let check_in = refill_rules::taper::check_in::CheckIn {
            on: common::date("2026-01-15"),
            peg: refill_rules::taper::check_in::Peg { pain: 5, enjoyment: 4, activity: 4 },
            withdrawal: refill_rules::taper::check_in::Withdrawal::None,
            wish: refill_rules::taper::check_in::Wish::GoOn,
        };
        let mut tx = store.begin().await.expect("begin");
        store.insert_check_in_in(&mut tx, taper, Some(plan_id.0), &check_in, "", &doctor()).await.expect("check-in");
        tx.commit().await.expect("commit");
        let clinic = store.clinic_facts().await.expect("clinic");
        Clinic {
            app,
            patients,
            clinic,
            seed: UdsSeed::splitmix64(11),
            next_supply: BTreeMap::new(),
            tests: BTreeMap::new(),
            alerts: Vec::new(),
        }
    }

    fn store(&self) -> &Store {
        &self.app.store
    }

    async fn daily_run(&mut self, n: i64) {
        let (first, last) = self.store().patient_id_bounds().await.expect("bounds").expect("patients");
        let mut tx = self.store().begin().await.expect("begin");
        refill_app::daily::run_chunk(&self.app, &mut tx, &self.seed, day(n), first, last).await.expect("daily run");
        tx.commit().await.expect("commit");
    }

    /// One staff action through the use case, from today's queue row when the patient has one.
    async fn staff(&mut self, who: Who, n: i64, action: StaffAction, note: Option<&str>) -> Result<Decision, AppError> {
        let patient = self.patients[&who];
        let row = self.queue_row(patient, n).await;
        let actor = desk();
        let context = StaffContext { patient, queue_item: row, today: day(n), actor: &actor, note };
        let mut tx = self.store().begin().await.expect("begin");
        let done = staff::act(&self.app, &mut tx, &self.clinic, &context, &action).await?;
        tx.commit().await.expect("commit");
        if let Some(test) = done.uds_test_id
            && !self.tests.get(&who).is_some_and(|tests| tests.contains(&test))
        {
            self.tests.entry(who).or_default().push(test);
        }
        Ok(done.decision.expect("a decision"))
    }

    async fn queue_row(&self, patient: PatientId, n: i64) -> Option<(QueueItemId, i64)> {
        let page = self.store().queue_page(&refill_store::QueueQuery::first_page(day(n), 1000)).await.expect("queue");
        page.iter().find(|item| item.patient_id == patient).map(|item| (item.id, item.version))
    }

    async fn open_exception(&self, who: Who) -> (ExceptionId, i64) {
        let exceptions = self.store().exceptions_for_patient(self.patients[&who]).await.expect("exceptions");
        let open = exceptions
            .iter()
            .find(|e| e.status == refill_store::ExceptionStatus::Open)
            .unwrap_or_else(|| panic!("{who:?} has an open exception"));
        (open.id, open.version)
    }

    /// A physician signs the patient's open exception.
    async fn sign(
        &mut self,
        who: Who,
        n: i64,
        resolution: Resolution,
        bridge: Option<Bridge>,
        review_by: Option<i64>,
    ) -> Decision {
        let (exception, version) = self.open_exception(who).await;
        let signer = doctor();
        let mut tx = self.store().begin().await.expect("begin");
        let signed = physician::sign(
            &self.app,
            &mut tx,
            &self.clinic,
            &Signature {
                exception,
                version,
                resolution,
                rationale: "Reviewed with the patient; plan documented in the chart",
                safety_attestation: None,
                bridge,
                review_by: review_by.map(day),
                plan: PlanChange::None,
                today: day(n),
                signer: &signer,
            },
        )
        .await
        .expect("signed");
        tx.commit().await.expect("commit");
        signed.decision
    }

    /// A physician reviews the patient's first drug test (the last step of its lifecycle).
    async fn review_first_test(&self, who: Who, n: i64) {
        let test = self.tests[&who][0];
        let signer = doctor();
        let mut tx = self.store().begin().await.expect("begin");
        physician::review_drug_test(&self.app, &mut tx, &self.clinic, self.patients[&who], test, day(n), &signer)
            .await
            .expect("reviewed");
        tx.commit().await.expect("commit");
    }

    /// The refill desk prepares every refill that is released; the pharmacy dispenses prepared refills
    /// once they are due (a bridge at once).
    async fn desk_and_pharmacy(&mut self, n: i64) {
        for who in EVERYONE {
            let patient = self.patients[&who];
            if let Some(row) = self.queue_row(patient, n).await {
                let actor = desk();
                let context = StaffContext { patient, queue_item: Some(row), today: day(n), actor: &actor, note: None };
                let mut tx = self.store().begin().await.expect("begin");
                match staff::prepare(&self.app, &mut tx, &context).await {
                    Ok(_) => {
                        tx.commit().await.expect("commit");
                        if std::env::var("STORY_TRACE").is_ok() {
                            println!("day {n} {who:?} prepared");
                        }
                    }
                    Err(AppError::Refused(why)) => {
                        if std::env::var("STORY_TRACE").is_ok() {
                            println!("day {n} {who:?} not prepared: {why}");
                        }
                        tx.rollback().await.expect("rollback")
                    }
                    Err(other) => panic!("{who:?} day {n}: {other}"),
                }
            }
            let mut tx = self.store().begin().await.expect("begin");
            let facts = tx.load_patient_facts(patient, day(n)).await.expect("facts");
            tx.rollback().await.expect("rollback");
            let Some(prepared_on) = facts.refill_prepared_on else { continue };
            let last = self.latest(who, n).await;
            let bridge = self.next_supply.get(&who).copied();
            let due = bridge.is_some() || last.eligible_on.is_none_or(|eligible| eligible <= day(n));
            if prepared_on <= day(n) && due {
                let days_supply = self.next_supply.remove(&who).unwrap_or(30);
                let fill = Fill { filled_on: day(n), days_supply, order_id: None, quantity: None };
                self.staff(who, n, StaffAction::Dispense(fill), None).await.expect("dispense");
            }
        }
    }

    /// The patient's latest decision on day `n`.
    async fn latest(&self, who: Who, n: i64) -> Decision {
        let record = self.store().decisions_for_patient(self.patients[&who], 1).await.expect("decisions");
        let record = record.into_iter().next().expect("a decision");
        assert_eq!(record.clinic_date, day(n), "{who:?}: decided on day {n}");
        record.decision
    }

    async fn collect_alerts(&mut self, n: i64) {
        let available = jobs::list_jobs(self.store(), JobState::Available, 10_000).await.expect("jobs");
        for job in available.iter().filter(|job| job.kind == "urgent_alert") {
            for who in EVERYONE {
                let key = format!("urgent_alert:{}:{}", self.patients[&who].0, day(n));
                if job.unique_key.as_deref() == Some(key.as_str()) && !self.alerts.contains(&(who, n)) {
                    self.alerts.push((who, n));
                }
            }
        }
    }
}

async fn schedule_far_test(tx: &mut refill_store::Tx, patient: PatientId, today: NaiveDate) {
    let order = UdsOrder {
        kind: UdsKind::Scheduled,
        due_on: today + Duration::days(150),
        drawn_on: today,
        seed: None,
        algorithm: None,
        period_start: None,
        period_end: None,
        created_by: "story".into(),
    };
    tx.insert_uds_order(patient, &order).await.expect("uds order");
}

fn letter(decision: &Decision) -> char {
    match (decision.outcome, decision.window) {
        (Outcome::EscalateUrgent, _) => 'U',
        (Outcome::Escalate, _) => 'E',
        (Outcome::Hold, _) => 'H',
        (_, RefillWindow::Prepared) => 'p',
        (Outcome::Approve, RefillWindow::NotDue) => '.',
        (_, RefillWindow::NotDue) => 't',
        (Outcome::Approve, RefillWindow::Open) => 'A',
        (Outcome::ApproveWithTasks, RefillWindow::Open) => 'T',
    }
}

/// The day's scripted events, before the desk and the pharmacy.
async fn events(clinic: &mut Clinic, n: i64) {
    use Who::*;
    // Early: the patient asks on day 7 for the refill due 2026-01-23 (day 18): held, never prepared
    // before its eligible date.
    if n == 7 {
        let request = NewRefillRequest {
            requested_on: day(7),
            kind: RequestKind::Early,
            channel: "staff".into(),
            note: Some("Travelling next week".into()),
        };
        let held = clinic.staff(Early, 7, StaffAction::Request(request), None).await.expect("request");
        assert_eq!(held.outcome, Outcome::Hold, "an early request is held until its eligible date");
    }
    // Approved: a drug test collected on day 2 shows cocaine; sent for confirmation on day 3; a
    // physician approves on day 4; a contact and the confirmatory result later do not reopen it; the
    // physician reviews the test on day 10.
    match n {
        2 => {
            clinic
                .staff(Approved, 2, StaffAction::CollectUds { kind: UdsKind::Scheduled, collected_on: day(2) }, None)
                .await
                .expect("collect");
            let test = clinic.tests[&Approved][0];
            let escalated = clinic
                .staff(
                    Approved,
                    2,
                    StaffAction::UdsResult { test_id: test, result: result(day(2), false, &["cocaine"]) },
                    None,
                )
                .await
                .expect("result");
            assert_eq!(escalated.outcome, Outcome::Escalate);
            reschedule(clinic, Approved).await;
        }
        3 => {
            let test = clinic.tests[&Approved][0];
            clinic.staff(Approved, 3, StaffAction::SendUdsForConfirmation { test_id: test }, None).await.expect("sent");
        }
        4 => {
            let approved = clinic.sign(Approved, 4, Resolution::Continue, None, None).await;
            assert!(approved.outcome <= Outcome::ApproveWithTasks, "{approved:?}");
        }
        5 => {
            let contacted =
                clinic.staff(Approved, 5, StaffAction::Contacted, Some("Discussed the result")).await.expect("contact");
            assert!(contacted.outcome <= Outcome::ApproveWithTasks, "the physician's approval stands: {contacted:?}");
        }
        8 => {
            let test = clinic.tests[&Approved][0];
            let confirmed = clinic
                .staff(
                    Approved,
                    8,
                    StaffAction::UdsResult { test_id: test, result: result(day(2), true, &["cocaine"]) },
                    None,
                )
                .await
                .expect("confirmatory");
            assert!(
                confirmed.outcome <= Outcome::ApproveWithTasks,
                "the same finding confirmed is not new: {confirmed:?}"
            );
        }
        10 => clinic.review_first_test(Approved, 10).await,
        _ => {}
    }
    // Bridged: the PDMP shows an outside opioid prescriber on day 1; a physician signs a 14-day bridge on
    // day 11, to be reviewed by day 25; staff contact the patient on day 15 (the bridge stands); after the
    // review-by date the patient is back with a physician, urgent because the bridge runs out; the
    // physician acknowledges the prescriber and approves on day 28.
    match n {
        1 => {
            let review = PdmpReview {
                reviewed_on: day(1),
                findings: vec![PdmpFinding {
                    prescriber: PrescriberId("npi-elsewhere".into()),
                    drug_class: DrugClass::Opioid,
                    filled_on: day(-3),
                    product: None,
                    rxcui: None,
                    quantity: None,
                    days_supply: None,
                }],
            };
            let escalated = clinic
                .staff(Bridged, 1, StaffAction::Fact(StaffFact::PdmpReview { review }), None)
                .await
                .expect("pdmp");
            assert_eq!(escalated.outcome, Outcome::Escalate);
        }
        11 => {
            clinic.next_supply.insert(Bridged, 14);
            clinic
                .sign(Bridged, 11, Resolution::Bridge, Some(Bridge { days: 14, quantity: Some(56.0) }), Some(25))
                .await;
        }
        15 => {
            let contacted =
                clinic.staff(Bridged, 15, StaffAction::Contacted, Some("Bridge explained")).await.expect("contact");
            assert!(contacted.outcome <= Outcome::ApproveWithTasks, "the bridge stands: {contacted:?}");
        }
        28 => {
            let ack = PhysicianReview {
                reviewed_on: day(28),
                physician: PrescriberId("user:dr-b".into()),
                kind: ReviewKind::OutsidePrescriberAcknowledged(PrescriberId("npi-elsewhere".into())),
            };
            clinic
                .staff(Bridged, 28, StaffAction::Fact(StaffFact::PhysicianReview { review: ack, note: None }), None)
                .await
                .expect("ack");
            clinic.sign(Bridged, 28, Resolution::Continue, None, None).await;
        }
        _ => {}
    }
    // Held: fentanyl on a test collected on day 1; a physician holds with a plan on day 3; a contact and a
    // consistent second test do not release the hold; the supply runs out on Thursday 2026-01-29 (day 24),
    // so on Wednesday (day 23) the hold is urgent and the physician signs a 7-day bridge; the physician
    // reviews the fentanyl result on day 29.
    match n {
        1 => {
            clinic
                .staff(Held, 1, StaffAction::CollectUds { kind: UdsKind::Scheduled, collected_on: day(1) }, None)
                .await
                .expect("collect");
            let test = clinic.tests[&Held][0];
            clinic
                .staff(
                    Held,
                    1,
                    StaffAction::UdsResult { test_id: test, result: result(day(1), false, &["fentanyl"]) },
                    None,
                )
                .await
                .expect("result");
            reschedule(clinic, Held).await;
        }
        3 => {
            let held = clinic.sign(Held, 3, Resolution::Hold, None, None).await;
            assert_eq!(held.outcome, Outcome::Hold);
        }
        6 => {
            let contacted =
                clinic.staff(Held, 6, StaffAction::Contacted, Some("Left a message")).await.expect("contact");
            assert_eq!(contacted.outcome, Outcome::Hold, "the physician's hold stands");
        }
        10 => {
            clinic
                .staff(Held, 10, StaffAction::CollectUds { kind: UdsKind::ForCause, collected_on: day(10) }, None)
                .await
                .expect("collect");
            let test = clinic.tests[&Held][1];
            let consistent = clinic
                .staff(Held, 10, StaffAction::UdsResult { test_id: test, result: result(day(10), false, &[]) }, None)
                .await
                .expect("result");
            assert_eq!(consistent.outcome, Outcome::Hold, "a drug test recorded later does not revert the hold");
            reschedule(clinic, Held).await;
        }
        23 => {
            assert_eq!(clinic.latest(Held, 23).await.outcome, Outcome::EscalateUrgent, "urgent the working day before");
            clinic.next_supply.insert(Held, 7);
            clinic.sign(Held, 23, Resolution::Bridge, Some(Bridge { days: 7, quantity: Some(28.0) }), Some(29)).await;
        }
        29 => clinic.review_first_test(Held, 29).await,
        _ => {}
    }
    // Unanswered: escalated from day 0 (review overdue); urgent the working day before its supply runs out
    // on Sunday 2026-02-01 (Friday, day 25); the physician approves the same day.
    if n == 25 {
        assert_eq!(clinic.latest(Unanswered, 25).await.outcome, Outcome::EscalateUrgent);
        clinic.sign(Unanswered, 25, Resolution::Continue, None, None).await;
    }
    // Noted: staff send the patient to a physician with a note on day 8; the physician sees the note and
    // approves on day 9.
    if n == 8 {
        let sent = clinic
            .staff(Noted, 8, StaffAction::SendToPhysician, Some("Reports new dizziness since the last refill"))
            .await
            .expect("sent");
        assert_eq!(sent.outcome, Outcome::Escalate);
    }
    if n == 9 {
        let (exception, _) = clinic.open_exception(Noted).await;
        let notes = clinic.store().exception_notes(exception).await.expect("notes");
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].note, "Reports new dizziness since the last refill");
        assert_eq!(notes[0].author, "user:desk");
        clinic.sign(Noted, 9, Resolution::Continue, None, None).await;
    }
}

/// After a collection, the next scheduled test is drawn by a job; the story keeps it far away.
async fn reschedule(clinic: &Clinic, who: Who) {
    let mut tx = clinic.store().begin().await.expect("begin");
    schedule_far_test(&mut tx, clinic.patients[&who], day(30)).await;
    tx.commit().await.expect("commit");
}

#[tokio::test]
async fn sixty_days_of_a_clinic_decide_as_the_refill_cycle_says() {
    for db in common::backends().await {
        let mut clinic = Clinic::open(db.store.clone()).await;
        let mut lines: BTreeMap<Who, String> = BTreeMap::new();
        for n in 0..DAYS {
            clinic.daily_run(n).await;
            events(&mut clinic, n).await;
            clinic.desk_and_pharmacy(n).await;
            clinic.collect_alerts(n).await;
            for who in EVERYONE {
                let decision = clinic.latest(who, n).await;
                let letter = letter(&decision);
                if std::env::var("STORY_TRACE").is_ok() && matches!(letter, 'E' | 'U' | 'H' | 't' | 'T') {
                    let codes: Vec<&str> = decision.reasons.iter().map(|r| r.code.as_str()).collect();
                    let covered: Vec<&str> = decision.covered.iter().map(|r| r.code.as_str()).collect();
                    println!("day {n} {who:?} {letter} {codes:?} covered {covered:?} standing {:?}", decision.standing);
                }
                lines.entry(who).or_default().push(letter);
            }
        }
        let mut problems = Vec::new();
        for who in EVERYONE {
            let line = &lines[&who];
            println!("{:<11} {line}", format!("{who:?}"));
            if line != expected(who) {
                problems.push(format!("{who:?}\n  got      {line}\n  expected {}", expected(who)));
            }
        }
        assert!(problems.is_empty(), "{}: the clinic's days differ:\n{}", db.name, problems.join("\n"));
        // Urgent alerts went out the working day before each unresolved supply ran out, not later and
        // not for anyone else (the bridged patient's review-by passed right after a dispense).
        assert_eq!(clinic.alerts, vec![(Who::Held, 23), (Who::Unanswered, 25)], "{}", db.name);
        // The taper step became the regimen of record on its date, and its refill was dispensed on time.
        let taper = clinic.patients[&Who::Taper];
        let facts = clinic.store().load_patient_facts(taper, day(DAYS - 1)).await.expect("facts");
        assert_eq!(facts.regimen[0].doses_per_day, Some(3.0), "{}", db.name);
        assert!(facts.fills.iter().any(|fill| fill.filled_on == common::date("2026-01-22")), "{}", db.name);
        // No decision ever carried an early-request reason without a recorded request.
        for who in EVERYONE {
            let decisions = clinic.store().decisions_for_patient(clinic.patients[&who], 1000).await.expect("decisions");
            let early = decisions
                .iter()
                .filter(|d| d.decision.reasons.iter().any(|r| r.code == refill_rules::ReasonCode::EarlyRequest))
                .count();
            let requested = decisions.iter().filter(|d| d.refill_request_id.is_some()).count();
            assert!(
                early <= requested,
                "{}: {who:?} has {early} early decisions and {requested} with a request",
                db.name
            );
            if who != Who::Early {
                assert_eq!(early, 0, "{}: {who:?} never asked early", db.name);
            }
        }
    }
}
