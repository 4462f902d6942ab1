//! The store conformance suite: every repository function, run on SQLite and on PostgreSQL.

mod common;

use common::{date, oxycodone};

use refill_rules::decision::{Evidence, Reason, ReasonCode, Task};
use refill_rules::{
    AgreementFacts, ClinicalFlag, ClinicalFlagKind, Confidentiality, Decision, DoseQuantity, DoseUnit, DrugClass, Fill,
    NaloxoneEvent, NaloxoneEventKind, OrderPurpose, OtherMedication, OtherMedicationClass, Outcome, PatientId,
    PatientStatement, PdmpFinding, PdmpReview, PhysicianReview, PrescriberId, RequestKind, ReviewKind, RiskTier, Sex,
    SpecimenValidity, TaperState, UdsAnalyteResult, UdsKind, UdsResult,
};
use refill_store::codec::StoredTaperState;
use refill_store::{
    Actor, AuditEvent, ExceptionResolution, ExceptionStatus, ExceptionUrgency, NewDecision, NewTaperPlan, NewTaperStep,
    PatientDetails, Prescriber, QueueQuery, QueueStatus, Resolution, StaffFact, Store, StoreError, UdsOrder, Upserted,
};

fn details(external_id: &str) -> PatientDetails {
    let mut details = PatientDetails::new(external_id, "Ada", "Lovelace");
    details.birth_date = Some(date("1961-04-02"));
    details.sex = Sex::Female;
    details.risk_tier = RiskTier::High;
    details.prescriber_of_record = Some(PrescriberId("1111111111".into()));
    details.mrn = Some(format!("MRN-{external_id}"));
    details
}

async fn new_patient(store: &Store, external_id: &str) -> PatientId {
    let mut tx = store.begin().await.unwrap();
    let (id, upserted) = tx.upsert_patient(&details(external_id), &Actor::system()).await.unwrap();
    assert_eq!(upserted, Upserted::Inserted);
    tx.commit().await.unwrap();
    id
}

fn decision(outcome: Outcome, code: ReasonCode) -> Decision {
    let reason = Reason {
        code,
        outcome,
        evidence: vec![Evidence::date("last_pdmp_review", date("2026-08-01")), Evidence::integer("days", 122)],
        task: Some(Task::ReviewPdmp),
        restricted: false,
    };
    Decision::from_reasons(vec![reason], None, Some(60.0), "policy-2026.1")
}

#[tokio::test]
async fn patients_upsert_is_idempotent_and_edits_are_versioned() {
    for db in common::backends().await {
        let store = &db.store;
        let actor = Actor::new("user:1", "staff");
        let mut tx = store.begin().await.unwrap();
        let (id, first) = tx.upsert_patient(&details("p-1"), &actor).await.unwrap();
        let (same_id, second) = tx.upsert_patient(&details("p-1"), &actor).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!((first, second, id), (Upserted::Inserted, Upserted::Unchanged, same_id), "{}", db.name);

        let record = store.patient(id).await.unwrap();
        assert_eq!(record.details, details("p-1"), "{}", db.name);
        assert_eq!(record.version, 1);

        let mut changed = details("p-1");
        changed.risk_tier = RiskTier::Low;
        changed.email = Some("ada@example.org".into());
        let edited = store.edit_patient(id, 1, &changed, &actor, Some("ORT re-scored")).await.unwrap();
        assert_eq!((edited.version, edited.details.risk_tier), (2, RiskTier::Low), "{}", db.name);

        let stale = store.edit_patient(id, 1, &details("p-1"), &Actor::new("user:2", "staff"), None).await;
        match stale {
            Err(StoreError::Conflict(message)) => assert!(message.contains("user:1"), "{}: {message}", db.name),
            other => panic!("{}: expected a conflict, got {other:?}", db.name),
        }

        let mut tx = store.begin().await.unwrap();
        let (_, upserted) = tx.upsert_patient(&details("p-1"), &actor).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(upserted, Upserted::Updated, "{}", db.name);

        assert_eq!(store.patient_by_external_id("p-1").await.unwrap().map(|p| p.id), Some(id));
        assert_eq!(store.search_patients("love", 10).await.unwrap().len(), 1, "{}", db.name);
        assert_eq!(store.patient_id_bounds().await.unwrap(), Some((id, id)));
        assert!(matches!(store.patient(PatientId(id.0 + 100)).await, Err(StoreError::NotFound(_))));

        let events = store.audit_events_for_patient(id, 10).await.unwrap();
        assert_eq!(events.len(), 1, "{}: one audited edit (the failed one rolled back)", db.name);
        assert_eq!(events[0].action, "patient.update");
        assert_eq!(events[0].reason.as_deref(), Some("ORT re-scored"));
        assert!(events[0].before_state.as_deref().unwrap().contains("\"high\""));
    }
}

#[tokio::test]
async fn every_fact_round_trips_through_load_patient_facts() {
    for db in common::backends().await {
        let store = &db.store;
        let id = new_patient(store, "facts-1").await;
        let staff = Actor::new("user:7", "staff");
        let mut tx = store.begin().await.unwrap();
        tx.upsert_prescriber(&Prescriber {
            id: PrescriberId("1111111111".into()),
            display_name: "Dr. Roster".into(),
            role: "physician".into(),
            on_roster: true,
            active: true,
        })
        .await
        .unwrap();
        let regimen = vec![oxycodone("MedicationRequest/a", 5.0), {
            let mut patch = oxycodone("MedicationRequest/b", 12.0);
            patch.dose = Some(DoseQuantity { value: 1.0, unit: DoseUnit::Unusable("patch-ish".into()) });
            patch.purpose = OrderPurpose::OpioidUseDisorder;
            patch.confidentiality = Confidentiality::Part2;
            patch
        }];
        tx.replace_regimen(id, &[oxycodone("MedicationRequest/old", 10.0)]).await.unwrap();
        tx.replace_regimen(id, &regimen).await.unwrap();
        let fill = Fill {
            filled_on: date("2026-11-01"),
            days_supply: 30,
            order_id: Some("MedicationRequest/a".into()),
            quantity: Some(120.0),
        };
        tx.insert_fill(id, &fill, Some("MedicationDispense/1")).await.unwrap();
        tx.insert_fill(id, &fill, Some("MedicationDispense/1")).await.unwrap();
        let agreement = AgreementFacts {
            signed_on: date("2026-01-10"),
            prescriber_of_record: PrescriberId("1111111111".into()),
            text_version: "v3".into(),
            elements: vec!["single_prescriber".into(), "uds_consent".into()],
            voided_on: None,
        };
        tx.insert_agreement(id, &agreement, Some("Consent/1")).await.unwrap();
        let uds_order = UdsOrder {
            kind: UdsKind::Scheduled,
            due_on: date("2026-12-14"),
            drawn_on: date("2026-11-20"),
            seed: Some(42),
            algorithm: Some("uniform-v1".into()),
            period_start: Some(date("2026-11-20")),
            period_end: Some(date("2027-02-20")),
            created_by: "system".into(),
        };
        tx.insert_uds_order(id, &uds_order).await.unwrap();
        tx.insert_uds_order(
            id,
            &UdsOrder { due_on: date("2026-06-01"), drawn_on: date("2026-05-01"), ..uds_order.clone() },
        )
        .await
        .unwrap();
        let result = UdsResult {
            collected_on: date("2026-06-02"),
            kind: UdsKind::Scheduled,
            confirmatory: true,
            analytes: vec![UdsAnalyteResult { assay: "lcms".into(), analyte: "oxycodone".into(), detected: true }],
            physician_reviewed_on: None,
            confidentiality: Confidentiality::Normal,
            specimen_validity: SpecimenValidity::Dilute,
        };
        tx.insert_uds_result(id, &result, Some("Observation/u1")).await.unwrap();
        let pdmp = PdmpReview {
            reviewed_on: date("2026-11-02"),
            findings: vec![
                PdmpFinding {
                    prescriber: PrescriberId("999".into()),
                    drug_class: DrugClass::Benzodiazepine,
                    filled_on: date("2026-10-20"),
                    product: None,
                    rxcui: None,
                    quantity: None,
                    days_supply: None,
                },
                PdmpFinding {
                    prescriber: PrescriberId("998".into()),
                    drug_class: DrugClass::OudTreatment,
                    filled_on: date("2026-10-21"),
                    product: Some("buprenorphine 8 MG / naloxone 2 MG Sublingual Film".into()),
                    rxcui: Some("1010604".into()),
                    quantity: Some(14.0),
                    days_supply: Some(14),
                },
            ],
        };
        tx.insert_pdmp_review(id, &pdmp, &staff.id, None).await.unwrap();
        let review = PhysicianReview {
            reviewed_on: date("2026-10-01"),
            physician: PrescriberId("1111111111".into()),
            kind: ReviewKind::OutsidePrescriberAcknowledged(PrescriberId("999".into())),
        };
        tx.insert_physician_review(id, &review, Some("known dentist")).await.unwrap();
        let class_review = PhysicianReview {
            reviewed_on: date("2026-10-02"),
            physician: PrescriberId("1111111111".into()),
            kind: ReviewKind::OutsidePrescriberClassAcknowledged(PrescriberId("997".into()), DrugClass::Benzodiazepine),
        };
        tx.insert_physician_review(id, &class_review, None).await.unwrap();
        let statement = PatientStatement {
            recorded_on: date("2026-11-03"),
            text: "I stopped taking it for a week".into(),
            confidentiality: Confidentiality::Normal,
        };
        tx.insert_patient_statement(id, &statement, &staff.id).await.unwrap();
        let naloxone = NaloxoneEvent { on: date("2026-09-09"), kind: NaloxoneEventKind::Dispensed };
        tx.insert_naloxone_event(id, &naloxone, &staff.id).await.unwrap();
        let flag = ClinicalFlag {
            kind: ClinicalFlagKind::SleepDisorderedBreathing,
            recorded_on: date("2025-01-01"),
            confidentiality: Confidentiality::Normal,
        };
        tx.insert_clinical_flag(id, &flag, Some("Condition/1")).await.unwrap();
        let other = OtherMedication {
            class: OtherMedicationClass::Benzodiazepine,
            text: "lorazepam 1 MG".into(),
            started_on: Some(date("2026-10-20")),
            active: true,
            confidentiality: Confidentiality::Normal,
        };
        tx.insert_other_medication(id, &other, None).await.unwrap();
        let plan = NewTaperPlan {
            started_on: date("2026-11-01"),
            rationale: "benefit no longer outweighs risk".into(),
            steps: vec![
                NewTaperStep {
                    starts_on: date("2026-11-01"),
                    regimen: vec![oxycodone("step-1", 5.0)],
                    total_daily_mme: Some(30.0),
                },
                NewTaperStep {
                    starts_on: date("2026-12-01"),
                    regimen: vec![oxycodone("step-2", 2.5)],
                    total_daily_mme: Some(15.0),
                },
            ],
        };
        let plan_id = tx.insert_taper_plan(id, &plan, &Actor::new("user:9", "physician")).await.unwrap();
        tx.commit().await.unwrap();

        let facts = store.load_patient_facts(id, date("2026-11-25")).await.unwrap();
        assert_eq!(facts.patient_id, id);
        assert_eq!(facts.birth_date, Some(date("1961-04-02")));
        assert_eq!((facts.sex, facts.risk_tier), (Sex::Female, RiskTier::High));
        assert_eq!(facts.regimen, regimen, "{}: the replaced order is inactive", db.name);
        assert_eq!(facts.fills, vec![fill.clone()], "{}: a re-imported fill is one fill", db.name);
        assert_eq!(facts.agreement, Some(agreement.clone()));
        assert_eq!(facts.uds.scheduled_due, Some(date("2026-12-14")), "{}: the June order was collected", db.name);
        assert_eq!(facts.uds.for_cause_due, None);
        assert_eq!(facts.uds.results, vec![result.clone()]);
        assert_eq!(facts.pdmp_reviews, vec![pdmp.clone()]);
        assert_eq!(facts.physician_reviews, vec![review.clone(), class_review.clone()]);
        assert_eq!(facts.patient_statements, vec![statement.clone()]);
        assert_eq!(
            facts.past_orders,
            vec![oxycodone("MedicationRequest/old", 10.0)],
            "{}: a replaced order is kept as history for reading drug tests",
            db.name
        );
        assert_eq!(facts.naloxone_events, vec![naloxone.clone()]);
        assert_eq!(facts.flags, vec![flag.clone()]);
        assert_eq!(facts.other_medications, vec![other.clone()]);
        let taper = facts.taper.clone().expect("taper in force");
        assert_eq!(
            (taper.plan_id, taper.state, taper.step_started_on),
            (plan_id.0, TaperState::Active, date("2026-11-01"))
        );
        assert_eq!(taper.step_regimen, vec![oxycodone("step-1", 5.0)]);
        assert_eq!(facts.last_decision, None);

        let later = store.load_patient_facts(id, date("2026-12-02")).await.unwrap();
        assert_eq!(later.taper.unwrap().step_regimen, vec![oxycodone("step-2", 2.5)], "{}", db.name);
        let before_plan = store.load_patient_facts(id, date("2026-10-01")).await.unwrap();
        assert_eq!(before_plan.taper, None, "{}: no step has started yet", db.name);

        let mut tx = store.begin().await.unwrap();
        tx.set_taper_state(plan_id, 1, StoredTaperState::Cancelled, &Actor::new("user:9", "physician"), "revised")
            .await
            .unwrap();
        let stale =
            tx.set_taper_state(plan_id, 1, StoredTaperState::Paused, &Actor::new("user:9", "physician"), "x").await;
        assert!(matches!(stale, Err(StoreError::Conflict(_))), "{}", db.name);
        tx.commit().await.unwrap();
        assert_eq!(store.load_patient_facts(id, date("2026-11-25")).await.unwrap().taper, None);

        assert_eq!(store.clinic_facts().await.unwrap().roster, vec![PrescriberId("1111111111".into())]);
        assert_eq!(store.prescribers().await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn range_load_matches_single_loads_and_skips_inactive_patients() {
    for db in common::backends().await {
        let store = &db.store;
        let mut ids = Vec::new();
        let mut tx = store.begin().await.unwrap();
        for n in 0..30 {
            let mut patient = details(&format!("range-{n}"));
            patient.active = n != 7;
            let (id, _) = tx.upsert_patient(&patient, &Actor::system()).await.unwrap();
            for k in 0..(n % 4) {
                let fill = Fill {
                    filled_on: date("2026-10-01") + chrono::Days::new(k * 30),
                    days_supply: 30,
                    order_id: None,
                    quantity: None,
                };
                tx.insert_fill(id, &fill, None).await.unwrap();
            }
            tx.replace_regimen(id, &[oxycodone(&format!("rx-{n}"), 5.0 + n as f64)]).await.unwrap();
            ids.push(id);
        }
        tx.commit().await.unwrap();

        let as_of = date("2026-12-01");
        let range = store.load_facts_in_range(ids[5], ids[20], as_of).await.unwrap();
        assert_eq!(range.len(), 15, "{}: 16 ids minus the inactive one", db.name);
        assert!(range.windows(2).all(|w| w[0].patient_id < w[1].patient_id));
        for facts in &range {
            assert_eq!(facts, &store.load_patient_facts(facts.patient_id, as_of).await.unwrap(), "{}", db.name);
        }
        assert!(range.iter().all(|f| f.patient_id != ids[7]));
        // A single load still returns an inactive patient (a chart can be opened).
        assert_eq!(store.load_patient_facts(ids[7], as_of).await.unwrap().patient_id, ids[7]);
    }
}

#[tokio::test]
async fn decisions_fill_the_queue_raise_exceptions_and_are_idempotent() {
    for db in common::backends().await {
        let store = &db.store;
        let id = new_patient(store, "dec-1").await;
        let staff = Actor::new("user:3", "staff");
        let clinic_date = date("2026-12-01");

        let mut tx = store.begin().await.unwrap();
        let request = refill_store::cycle::NewRefillRequest {
            requested_on: clinic_date,
            kind: RequestKind::Routine,
            channel: "staff".into(),
            note: None,
        };
        let request_id = store.record_refill_request_in(&mut tx, id, &request, &staff).await.unwrap();
        let escalate = decision(Outcome::Escalate, ReasonCode::PdmpReviewOverdue);
        let new = NewDecision {
            patient_id: id,
            clinic_date,
            refill_request_id: Some(request_id),
            decision: &escalate,
            decided_by: &Actor::system(),
            run_out_on: Some(date("2026-12-03")),
            dedupe_key: Some(format!("daily:{clinic_date}:{}", id.0)),
        };
        let first = store.record_decision(&mut tx, &new).await.unwrap();
        tx.commit().await.unwrap();
        assert!(first.created && first.exception_id.is_some(), "{}", db.name);

        let mut tx = store.begin().await.unwrap();
        let again = store.record_decision(&mut tx, &new).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(again, refill_store::RecordedDecision { created: false, ..first }, "{}", db.name);
        assert_eq!(store.decisions_for_patient(id, 10).await.unwrap().len(), 1, "{}: no double decision", db.name);

        let stored = store.decision(first.decision_id).await.unwrap();
        let mut expected = escalate.clone();
        expected.reasons[0].evidence.sort_by_key(|e| e.name);
        assert_eq!(stored.decision, expected, "{}: the decision reads back whole", db.name);
        assert_eq!((stored.patient_id, stored.clinic_date, stored.decided_by.as_str()), (id, clinic_date, "system"));
        assert_eq!(stored.refill_request_id, Some(request_id));

        // An urgent escalation the same day joins the open exception and raises its urgency.
        let urgent = decision(Outcome::EscalateUrgent, ReasonCode::OverdoseOrSedationSignal);
        let mut tx = store.begin().await.unwrap();
        let second = store
            .record_decision(
                &mut tx,
                &NewDecision { decision: &urgent, dedupe_key: None, refill_request_id: None, ..new.clone() },
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(second.exception_id, first.exception_id, "{}: one open exception per patient", db.name);
        assert_eq!(second.queue_item_id, first.queue_item_id, "{}: one queue row per patient and date", db.name);

        let open = store.open_exceptions(10, 0).await.unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!((open[0].urgency, open[0].status), (ExceptionUrgency::Urgent, ExceptionStatus::Open));
        assert_eq!(open[0].decision_id, second.decision_id);
        assert_eq!(store.count_open_exceptions().await.unwrap(), 1);

        // Queue: the row shows the latest decision; an approval of another patient ranks below it.
        let other = new_patient(store, "dec-2").await;
        let approve = Decision::from_reasons(vec![], None, Some(20.0), "policy-2026.1");
        let mut tx = store.begin().await.unwrap();
        store
            .record_decision(
                &mut tx,
                &NewDecision {
                    patient_id: other,
                    clinic_date,
                    refill_request_id: None,
                    decision: &approve,
                    decided_by: &Actor::system(),
                    run_out_on: None,
                    dedupe_key: None,
                },
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let page = store.queue_page(&QueueQuery::first_page(clinic_date, 10)).await.unwrap();
        assert_eq!(page.iter().map(|q| q.patient_id).collect::<Vec<_>>(), vec![id, other], "{}", db.name);
        assert_eq!((page[0].outcome, page[0].urgency), (Some(Outcome::EscalateUrgent), 4));
        assert_eq!(page[0].family_name, "Lovelace");
        let escalated_only = QueueQuery { min_urgency: Some(3), ..QueueQuery::first_page(clinic_date, 10) };
        assert_eq!(store.queue_page(&escalated_only).await.unwrap().len(), 1, "{}", db.name);
        let pending_only = QueueQuery { status: Some(QueueStatus::Done), ..QueueQuery::first_page(clinic_date, 10) };
        assert!(store.queue_page(&pending_only).await.unwrap().is_empty());
        let counts = store.queue_counts(clinic_date).await.unwrap();
        assert_eq!((counts.pending, counts.escalated_open), (2, 1), "{}", db.name);

        // The next day's load sees the prior decision.
        let facts = store.load_patient_facts(id, date("2026-12-02")).await.unwrap();
        assert_eq!(facts.last_decision.map(|d| (d.decided_on, d.total_daily_mme)), Some((clinic_date, Some(60.0))));
        let same_day = store.load_patient_facts(id, clinic_date).await.unwrap();
        assert_eq!(same_day.last_decision, None, "{}: the prior decision is strictly before as_of", db.name);
    }
}

#[tokio::test]
async fn queue_actions_and_exception_resolution_are_versioned_and_audited() {
    for db in common::backends().await {
        let store = &db.store;
        let id = new_patient(store, "q-1").await;
        let clinic_date = date("2026-12-01");
        let escalate = decision(Outcome::Escalate, ReasonCode::UdsUnexpectedResult);
        let mut tx = store.begin().await.unwrap();
        let recorded = store
            .record_decision(
                &mut tx,
                &NewDecision {
                    patient_id: id,
                    clinic_date,
                    refill_request_id: None,
                    decision: &escalate,
                    decided_by: &Actor::system(),
                    run_out_on: Some(date("2026-12-05")),
                    dedupe_key: None,
                },
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let item_id = recorded.queue_item_id.unwrap();
        let alice = Actor::new("user:alice", "staff");
        let bob = Actor::new("user:bob", "staff");

        let item = store.queue_item(item_id).await.unwrap();
        let claimed = store.claim_queue_item(item_id, item.version, &alice).await.unwrap();
        assert_eq!((claimed.status, claimed.assigned_to.as_deref()), (QueueStatus::InProgress, Some("user:alice")));
        match store.claim_queue_item(item_id, claimed.version, &bob).await {
            Err(StoreError::Conflict(message)) => assert!(message.contains("user:alice"), "{}: {message}", db.name),
            other => panic!("{}: expected a conflict, got {other:?}", db.name),
        }
        match store.complete_queue_item(item_id, claimed.version, &bob, None).await {
            Err(StoreError::Conflict(message)) => assert!(message.contains("user:alice"), "{}: {message}", db.name),
            other => panic!("{}: expected a conflict, got {other:?}", db.name),
        }
        let released = store.release_queue_item(item_id, claimed.version, &alice).await.unwrap();
        assert_eq!(released.status, QueueStatus::Pending);
        let done = store.complete_queue_item(item_id, released.version, &bob, Some("called pharmacy")).await.unwrap();
        assert_eq!((done.status, done.updated_by.as_str()), (QueueStatus::Done, "user:bob"), "{}", db.name);

        let exception_id = recorded.exception_id.unwrap();
        let exception = store.exception(exception_id).await.unwrap();
        let resolution = ExceptionResolution {
            resolution: Resolution::Continue,
            rationale: "confirmatory test explains the screen".into(),
            safety_attestation: None,
        };
        let not_physician = store.resolve_exception(exception_id, exception.version, &resolution, &alice).await;
        assert!(matches!(not_physician, Err(StoreError::Invalid(_))), "{}", db.name);
        let physician = Actor::new("user:drx", "physician");
        let stop = ExceptionResolution { resolution: Resolution::StopTherapy, ..resolution.clone() };
        let unattested = store.resolve_exception(exception_id, exception.version, &stop, &physician).await;
        assert!(matches!(unattested, Err(StoreError::Invalid(_))), "{}: a stop needs an attestation", db.name);
        let blank = ExceptionResolution { rationale: "  ".into(), ..resolution.clone() };
        assert!(matches!(
            store.resolve_exception(exception_id, exception.version, &blank, &physician).await,
            Err(StoreError::Invalid(_))
        ));

        let resolved = store.resolve_exception(exception_id, exception.version, &resolution, &physician).await.unwrap();
        assert_eq!(resolved.status, ExceptionStatus::Resolved);
        assert_eq!(resolved.resolution, Some(Resolution::Continue));
        assert_eq!(resolved.signed_by.as_deref(), Some("user:drx"));
        assert_eq!(resolved.signed_content_hash.as_ref().map(String::len), Some(64));
        let late = store
            .resolve_exception(exception_id, exception.version, &resolution, &Actor::new("user:dry", "physician"))
            .await;
        match late {
            Err(StoreError::Conflict(message)) => assert!(message.contains("user:drx"), "{}: {message}", db.name),
            other => panic!("{}: expected a conflict, got {other:?}", db.name),
        }
        assert!(store.open_exceptions(10, 0).await.unwrap().is_empty());
        assert_eq!(store.exceptions_for_patient(id).await.unwrap().len(), 1);

        let actions: Vec<String> =
            store.audit_events_for_patient(id, 50).await.unwrap().into_iter().rev().map(|e| e.action).collect();
        assert_eq!(
            actions,
            ["decision.record", "queue.claim", "queue.release", "queue.complete", "exception.resolve"],
            "{}: one event per change, none for refused actions",
            db.name
        );
        assert!(store.verify_audit_chain(None).await.unwrap().is_intact());
    }
}

#[tokio::test]
async fn staff_facts_are_versioned_audited_and_loaded() {
    for db in common::backends().await {
        let store = &db.store;
        let id = new_patient(store, "staff-1").await;
        let alice = Actor::new("user:alice", "staff");
        let review = PdmpReview { reviewed_on: date("2026-12-01"), findings: vec![] };
        let version =
            store.record_fact(id, 1, &StaffFact::PdmpReview { review: review.clone() }, &alice, None).await.unwrap();
        assert_eq!(version, 2);
        let offered = NaloxoneEvent { on: date("2026-12-01"), kind: NaloxoneEventKind::Offered };
        let stale = store.record_fact(id, 1, &StaffFact::NaloxoneEvent { event: offered.clone() }, &alice, None).await;
        assert!(matches!(stale, Err(StoreError::Conflict(_))), "{}", db.name);
        store.record_fact(id, 2, &StaffFact::NaloxoneEvent { event: offered.clone() }, &alice, None).await.unwrap();

        let facts = store.load_patient_facts(id, date("2026-12-01")).await.unwrap();
        assert_eq!(facts.pdmp_reviews, vec![review], "{}", db.name);
        assert_eq!(facts.naloxone_events, vec![offered], "{}: the refused fact was not written", db.name);
        assert_eq!(store.audit_events_for_patient(id, 10).await.unwrap().len(), 2);

        let plan = NewTaperPlan { started_on: date("2026-12-01"), rationale: String::new(), steps: vec![] };
        let physician = Actor::new("user:drx", "physician");
        assert!(matches!(store.create_taper_plan(id, 3, &plan, &physician).await, Err(StoreError::Invalid(_))));

        let view = AuditEvent::new(&alice, "patient.view", "patient").patient(id).resource_id(id.0.to_string());
        let appended = store.record_view(&view).await.unwrap();
        assert_eq!(store.audit_head().await.unwrap().seq, appended.seq);
    }
}

#[tokio::test]
async fn taper_plans_counts_searches_and_migration_status() {
    for db in common::backends().await {
        let store = &db.store;
        let id = new_patient(store, "taper-1").await;
        new_patient(store, "taper-2").await;
        assert_eq!(store.count_patients().await.unwrap(), 2, "{}", db.name);
        assert_eq!(store.search_patients("mrn-taper", 10).await.unwrap().len(), 2, "{}: by MRN prefix", db.name);
        assert_eq!(store.search_patients("ada", 1).await.unwrap().len(), 1, "{}: limit", db.name);
        assert!(store.search_patients("nobody", 10).await.unwrap().is_empty());

        let physician = Actor::new("user:drx", "physician");
        let plan = NewTaperPlan {
            started_on: date("2026-12-01"),
            rationale: "risks outweigh benefits; patient agrees to a slow taper".into(),
            steps: vec![NewTaperStep {
                starts_on: date("2026-12-01"),
                regimen: vec![oxycodone("step-1", 5.0)],
                total_daily_mme: Some(30.0),
            }],
        };
        let stale = store.create_taper_plan(id, 7, &plan, &physician).await;
        assert!(matches!(stale, Err(StoreError::Conflict(_))), "{}", db.name);
        let plan_id = store.create_taper_plan(id, 1, &plan, &physician).await.unwrap();
        let facts = store.load_patient_facts(id, date("2026-12-01")).await.unwrap();
        assert_eq!(facts.taper.map(|t| t.plan_id), Some(plan_id.0), "{}", db.name);
        let events = store.audit_events_for_patient(id, 10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].action.as_str(), events[0].reason.as_deref()),
            ("taper_plan.create", Some(plan.rationale.as_str()))
        );

        let status = store.migration_status().await.unwrap();
        assert!(!status.is_empty() && status.iter().all(|m| m.applied), "{}: {status:?}", db.name);
        assert_eq!(status[0].version, 1);
    }
}

#[tokio::test]
async fn a_patient_not_due_yet_is_decided_but_not_queued() {
    for db in common::backends().await {
        let store = &db.store;
        let id = new_patient(store, "not-due-1").await;
        let clinic_date = date("2026-12-01");
        // The refill window has not opened: only monitoring was decided, and nothing fell due.
        let mut not_due = Decision::from_reasons(Vec::new(), Some(date("2026-12-15")), Some(60.0), "policy-2026.1");
        not_due.window = refill_rules::RefillWindow::NotDue;
        let new = NewDecision {
            patient_id: id,
            clinic_date,
            refill_request_id: None,
            decision: &not_due,
            decided_by: &Actor::system(),
            run_out_on: Some(date("2026-12-20")),
            dedupe_key: None,
        };
        let mut tx = store.begin().await.unwrap();
        let recorded = store.record_decision(&mut tx, &new).await.unwrap();
        tx.commit().await.unwrap();
        assert!(recorded.created, "{}: the decision is recorded", db.name);
        assert_eq!(recorded.queue_item_id, None, "{}: a patient who is not due is not on the staff queue", db.name);

        // Once something needs staff, the row appears; a later not-due decision updates it instead of hiding it.
        let tasks = decision(Outcome::ApproveWithTasks, ReasonCode::PdmpReviewOverdue);
        let mut tx = store.begin().await.unwrap();
        let queued = store.record_decision(&mut tx, &NewDecision { decision: &tasks, ..new.clone() }).await.unwrap();
        tx.commit().await.unwrap();
        assert!(queued.queue_item_id.is_some(), "{}", db.name);
        let mut tx = store.begin().await.unwrap();
        let held = store.record_decision(&mut tx, &new).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(held.queue_item_id, queued.queue_item_id, "{}: the existing row is updated", db.name);
    }
}
