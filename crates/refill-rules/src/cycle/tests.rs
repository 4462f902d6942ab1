//! Tests of the refill cycle: position in the cycle, requests, standing decisions and run-out alerts.

use chrono::NaiveDate;

use super::*;
use crate::facts::*;

fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

fn prescriber(id: &str) -> PrescriberId {
    PrescriberId(id.to_string())
}

fn oxycodone(tablets: f64) -> MedicationOrder {
    MedicationOrder {
        id: "MedicationRequest/oxy".to_string(),
        rxcui: Some("1049621".to_string()),
        text: Some("oxycodone hydrochloride 5 MG Oral Tablet".to_string()),
        dose: Some(DoseQuantity { value: tablets, unit: DoseUnit::DoseFormUnit }),
        doses_per_day: Some(4.0),
        days_supply: Some(30),
        dispense_quantity: Some(tablets * 120.0),
        prescriber: Some(prescriber("dr-a")),
        purpose: OrderPurpose::Pain,
        confidentiality: Confidentiality::Normal,
    }
}

/// Filled 2026-01-01 for 30 days (eligible 2026-01-27, runs out 2026-01-31), everything current.
fn stable() -> PatientFacts {
    let mut facts = PatientFacts::empty(PatientId(7));
    facts.birth_date = Some(date("1970-03-01"));
    facts.prescriber_of_record = Some(prescriber("dr-a"));
    facts.regimen = vec![oxycodone(1.0)];
    facts.fills = vec![Fill { filled_on: date("2026-01-01"), days_supply: 30, order_id: None, quantity: Some(120.0) }];
    facts.pdmp_reviews = vec![PdmpReview { reviewed_on: date("2026-01-02"), findings: vec![] }];
    facts.agreement = Some(AgreementFacts {
        signed_on: date("2025-06-01"),
        prescriber_of_record: prescriber("dr-a"),
        text_version: "2025-01".to_string(),
        elements: vec![],
        voided_on: None,
    });
    facts.physician_reviews = vec![PhysicianReview {
        reviewed_on: date("2026-01-02"),
        physician: prescriber("dr-a"),
        kind: ReviewKind::BenefitRisk,
    }];
    facts.uds.scheduled_due = Some(date("2026-05-01"));
    facts
}

fn decide_on(facts: &PatientFacts, today: &str) -> Decision {
    decide(facts, &ClinicFacts::default(), date(today), &Policy::default(), "test")
}

fn codes(reasons: &[Reason]) -> Vec<ReasonCode> {
    reasons.iter().map(|r| r.code).collect()
}

#[test]
fn before_the_lead_time_only_monitoring_is_decided() {
    let mut facts = stable();
    facts.pdmp_reviews.clear();
    // 2026-01-10: eligible 2026-01-27 is 17 days away, beyond the 7-day lead.
    let decision = decide_on(&facts, "2026-01-10");
    assert_eq!(decision.window, RefillWindow::NotDue);
    assert_eq!(codes(&decision.reasons), vec![ReasonCode::PdmpReviewOverdue]);
    assert_eq!(decision.outcome, Outcome::ApproveWithTasks);
    assert!(decision.needs_staff_today(), "a task that fell due shows");
    let quiet = decide_on(&stable(), "2026-01-10");
    assert_eq!(quiet.window, RefillWindow::NotDue);
    assert!(!quiet.needs_staff_today(), "nothing due, not on the queue");
    assert_eq!(quiet.eligible_on, Some(date("2026-01-27")));
}

#[test]
fn inside_the_lead_time_the_refill_is_decided_as_of_its_eligible_date_and_is_never_early() {
    for today in ["2026-01-20", "2026-01-24", "2026-01-27", "2026-01-29"] {
        let decision = decide_on(&stable(), today);
        assert_eq!(decision.window, RefillWindow::Open, "{today}");
        assert_eq!(decision.outcome, Outcome::Approve, "{today}: {:?}", decision.reasons);
        assert!(decision.needs_staff_today());
    }
}

#[test]
fn only_a_recorded_early_request_is_early() {
    let mut facts = stable();
    facts.open_request = Some(RecordedRequest { id: 1, requested_on: date("2026-01-15"), kind: RequestKind::Early });
    let decision = decide_on(&facts, "2026-01-15");
    assert_eq!(decision.window, RefillWindow::Open, "a request opens the cycle whatever the lead time");
    assert_eq!(codes(&decision.reasons), vec![ReasonCode::EarlyRequest]);
    assert_eq!(decision.outcome, Outcome::Hold);
    // A routine request made before the window is decided as of the eligible date.
    facts.open_request = Some(RecordedRequest { id: 2, requested_on: date("2026-01-15"), kind: RequestKind::Routine });
    assert_eq!(decide_on(&facts, "2026-01-15").outcome, Outcome::Approve);
}

#[test]
fn lost_and_dose_change_requests_go_to_a_physician() {
    let mut facts = stable();
    facts.open_request =
        Some(RecordedRequest { id: 1, requested_on: date("2026-01-12"), kind: RequestKind::LostOrStolenReplacement });
    let lost = decide_on(&facts, "2026-01-12");
    assert!(codes(&lost.reasons).contains(&ReasonCode::LostOrStolenReplacement));
    assert!(lost.outcome >= Outcome::Escalate);
    facts.open_request =
        Some(RecordedRequest { id: 2, requested_on: date("2026-01-25"), kind: RequestKind::DoseChange });
    let dose = decide_on(&facts, "2026-01-25");
    assert!(codes(&dose.reasons).contains(&ReasonCode::DoseChangeRequested));
    assert!(dose.outcome >= Outcome::Escalate);
}

fn taper_facts() -> PatientFacts {
    let mut facts = stable();
    facts.taper = Some(TaperInForce {
        plan_id: 3,
        state: TaperState::Active,
        started_on: date("2025-12-01"),
        step_regimen: vec![oxycodone(1.0)],
        step_started_on: date("2025-12-01"),
        next_step: Some(TaperStepAhead { starts_on: date("2026-01-27"), regimen: vec![oxycodone(0.5)] }),
    });
    facts.naloxone_events = vec![NaloxoneEvent { on: date("2025-12-01"), kind: NaloxoneEventKind::Dispensed }];
    facts
}

#[test]
fn the_refill_that_starts_on_a_taper_step_is_decided_against_that_step() {
    let decision = decide_on(&taper_facts(), "2026-01-22");
    assert!(!codes(&decision.reasons).contains(&ReasonCode::RegimenChanged), "{:?}", decision.reasons);
    assert_eq!(decision.outcome, Outcome::Approve, "{:?}", decision.reasons);
    // The MME decided is the next step's (oxycodone 2.5 mg x 4 = 15 MME), not today's 30.
    assert_eq!(decision.total_daily_mme, Some(15.0));
}

fn standing(choice: PhysicianChoice, covered: &[(ReasonCode, &str)], review_by: Option<&str>) -> StandingDecision {
    StandingDecision {
        id: 11,
        signed_on: date("2026-01-25"),
        signed_by: "dr-b".into(),
        choice,
        covered: covered
            .iter()
            .map(|(code, subject)| CoveredReason {
                code: *code,
                subject: (*subject).to_string(),
                outcome: Outcome::Escalate,
            })
            .collect(),
        review_by: review_by.map(date),
        latest_fill_seen: Some(date("2026-01-01")),
    }
}

#[test]
fn an_approval_covers_what_the_physician_saw_until_the_next_dispense() {
    let mut facts = stable();
    facts.physician_reviews.clear();
    let before = decide_on(&facts, "2026-01-25");
    assert_eq!(before.outcome, Outcome::Escalate);
    let reason = before.reasons.iter().find(|r| r.code == ReasonCode::PhysicianReviewOverdue).unwrap();
    facts.standing = Some(standing(
        PhysicianChoice::Approve,
        &[(ReasonCode::PhysicianReviewOverdue, &reason_subject(reason))],
        None,
    ));
    let after = decide_on(&facts, "2026-01-26");
    // Released; the covered reason's task (schedule the review) still stands for staff.
    assert_eq!(after.outcome, Outcome::ApproveWithTasks, "{:?}", after.reasons);
    assert!(after.reasons.is_empty());
    assert_eq!(after.tasks, vec![Task::ScheduleReview]);
    assert_eq!(codes(&after.covered), vec![ReasonCode::PhysicianReviewOverdue]);
    assert_eq!(after.standing, Some(11));
    // A fact recorded since (a PDMP finding from an outside prescriber) is new: it reopens.
    facts.pdmp_reviews.push(PdmpReview {
        reviewed_on: date("2026-01-26"),
        findings: vec![PdmpFinding {
            prescriber: prescriber("dr-elsewhere"),
            drug_class: DrugClass::Opioid,
            filled_on: date("2026-01-20"),
            product: None,
            rxcui: None,
            quantity: None,
            days_supply: None,
        }],
    });
    let reopened = decide_on(&facts, "2026-01-26");
    assert_eq!(reopened.outcome, Outcome::Escalate);
    assert_eq!(codes(&reopened.reasons), vec![ReasonCode::PdmpOutsidePrescriber]);
    // The next dispense ends the decision: the next cycle starts fresh.
    facts.pdmp_reviews.pop();
    facts.fills.push(Fill { filled_on: date("2026-01-27"), days_supply: 30, order_id: None, quantity: None });
    let next_cycle = decide_on(&facts, "2026-02-20");
    assert_eq!(next_cycle.standing, None);
    assert_eq!(next_cycle.outcome, Outcome::Escalate);
}

#[test]
fn a_physician_hold_stands_through_staff_facts_and_turns_urgent_before_the_run_out() {
    let mut facts = stable();
    facts.uds.results.push(UdsResult {
        collected_on: date("2026-01-05"),
        kind: UdsKind::Scheduled,
        confirmatory: false,
        analytes: vec![
            UdsAnalyteResult { assay: "oxycodone".into(), analyte: "oxycodone".into(), detected: true },
            UdsAnalyteResult { assay: "cocaine".into(), analyte: "cocaine".into(), detected: true },
        ],
        physician_reviewed_on: None,
        confidentiality: Confidentiality::Normal,
        specimen_validity: Default::default(),
    });
    let first = decide_on(&facts, "2026-01-22");
    let unexpected = first.reasons.iter().find(|r| r.code == ReasonCode::UdsUnexpectedResult).unwrap();
    facts.standing =
        Some(standing(PhysicianChoice::Hold, &[(ReasonCode::UdsUnexpectedResult, &reason_subject(unexpected))], None));
    facts.standing.as_mut().unwrap().signed_on = date("2026-01-22");
    let held = decide_on(&facts, "2026-01-23");
    assert_eq!(held.outcome, Outcome::Hold, "{:?}", held.reasons);
    assert!(held.reasons.is_empty());
    // Runs out Saturday 2026-01-31: the working day before is Friday 2026-01-30.
    assert_eq!(working_day_before(date("2026-01-31")), date("2026-01-30"));
    let thursday = decide_on(&facts, "2026-01-29");
    assert_eq!(thursday.outcome, Outcome::Hold);
    let friday = decide_on(&facts, "2026-01-30");
    assert_eq!(friday.outcome, Outcome::EscalateUrgent);
    assert_eq!(codes(&friday.reasons), vec![ReasonCode::SupplyRunsOutUnresolved]);
    assert!(friday.reasons[0].evidence.iter().any(|e| e.name == "offer"));
}

#[test]
fn an_open_exception_turns_urgent_the_working_day_before_the_run_out() {
    let mut facts = stable();
    facts.physician_reviews.clear();
    assert_eq!(decide_on(&facts, "2026-01-29").outcome, Outcome::Escalate);
    assert_eq!(decide_on(&facts, "2026-01-30").outcome, Outcome::EscalateUrgent);
    // A timing hold that lifts before the run-out is left alone.
    let mut early = stable();
    early.open_request = Some(RecordedRequest { id: 1, requested_on: date("2026-01-25"), kind: RequestKind::Early });
    let decision = decide_on(&early, "2026-01-25");
    assert_eq!(decision.outcome, Outcome::Hold);
    assert!(!codes(&decision.reasons).contains(&ReasonCode::SupplyRunsOutUnresolved));
}

#[test]
fn a_bridge_stands_until_its_review_by_date() {
    let mut facts = stable();
    facts.physician_reviews.clear();
    let reason = decide_on(&facts, "2026-01-25").reasons[0].clone();
    facts.standing = Some(standing(
        PhysicianChoice::Bridge { days: 14 },
        &[(reason.code, &reason_subject(&reason))],
        Some("2026-02-10"),
    ));
    facts.fills.push(Fill { filled_on: date("2026-01-27"), days_supply: 14, order_id: None, quantity: None });
    assert_eq!(decide_on(&facts, "2026-02-05").outcome, Outcome::ApproveWithTasks, "the bridge fill does not end it");
    let after = decide_on(&facts, "2026-02-11");
    assert_eq!(after.standing, None);
    assert!(after.outcome >= Outcome::Escalate);
}

#[test]
fn a_transferred_patient_is_continued_while_the_clinic_reviews_the_case() {
    let mut facts = stable();
    facts.fills.clear();
    facts.previous_prescriber = Some(prescriber("dr-previous"));
    facts.pdmp_reviews = vec![PdmpReview {
        reviewed_on: date("2026-01-20"),
        findings: vec![PdmpFinding {
            prescriber: prescriber("dr-previous"),
            drug_class: DrugClass::Opioid,
            filled_on: date("2025-12-28"),
            product: None,
            rxcui: None,
            quantity: None,
            days_supply: None,
        }],
    }];
    let decision = decide_on(&facts, "2026-01-21");
    assert_eq!(codes(&decision.reasons), vec![ReasonCode::TransferredPatientContinued]);
    assert_eq!(decision.outcome, Outcome::ApproveWithTasks);
    assert_eq!(decision.tasks, vec![Task::ScheduleReview]);
}
