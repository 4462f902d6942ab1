//! Unit tests of the refill rules, one boundary at a time, from a patient for whom nothing fires.

use chrono::NaiveDate;

use super::*;
use crate::decision::EvidenceValue;
use crate::facts::*;

fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

fn prescriber(id: &str) -> PrescriberId {
    PrescriberId(id.to_string())
}

/// Oxycodone 5 mg tablet, `tablets` per dose, `per_day` doses: 7.5 x tablets x per_day MME.
fn oxycodone(tablets: f64, per_day: f64) -> MedicationOrder {
    MedicationOrder {
        id: "MedicationRequest/oxy".to_string(),
        rxcui: Some("1049621".to_string()),
        text: Some("oxycodone hydrochloride 5 MG Oral Tablet".to_string()),
        dose: Some(DoseQuantity { value: tablets, unit: DoseUnit::DoseFormUnit }),
        doses_per_day: Some(per_day),
        days_supply: Some(30),
        dispense_quantity: Some(tablets * per_day * 30.0),
        prescriber: Some(prescriber("dr-a")),
        purpose: OrderPurpose::Pain,
        confidentiality: Confidentiality::Normal,
    }
}

/// Morphine given as `mg` per dose, twice a day: MME = 2 x mg (factor 1).
fn morphine_mg(mg_per_dose: f64) -> MedicationOrder {
    MedicationOrder {
        id: "MedicationRequest/mor".to_string(),
        rxcui: Some("892582".to_string()),
        text: Some("morphine sulfate 15 MG Oral Tablet".to_string()),
        dose: Some(DoseQuantity { value: mg_per_dose, unit: DoseUnit::Milligram }),
        doses_per_day: Some(2.0),
        days_supply: Some(30),
        dispense_quantity: None,
        prescriber: Some(prescriber("dr-a")),
        purpose: OrderPurpose::Pain,
        confidentiality: Confidentiality::Normal,
    }
}

struct Case {
    facts: PatientFacts,
    clinic: ClinicFacts,
    request: RefillRequest,
    policy: Policy,
}

/// Day 26 of a 30-day fill, everything current: APPROVE with no reasons.
fn quiet_case() -> Case {
    let mut facts = PatientFacts::empty(PatientId(7));
    facts.birth_date = Some(date("1970-03-01"));
    facts.prescriber_of_record = Some(prescriber("dr-a"));
    facts.regimen = vec![oxycodone(1.0, 4.0)];
    facts.fills = vec![Fill { filled_on: date("2026-01-01"), days_supply: 30, order_id: None, quantity: Some(120.0) }];
    facts.pdmp_reviews = vec![PdmpReview { reviewed_on: date("2026-01-20"), findings: vec![] }];
    facts.agreement = Some(AgreementFacts {
        signed_on: date("2025-06-01"),
        prescriber_of_record: prescriber("dr-a"),
        text_version: "2025-01".to_string(),
        elements: vec![],
        voided_on: None,
    });
    facts.physician_reviews = vec![PhysicianReview {
        reviewed_on: date("2026-01-10"),
        physician: prescriber("dr-a"),
        kind: ReviewKind::BenefitRisk,
    }];
    facts.uds.scheduled_due = Some(date("2026-05-01"));
    let request =
        RefillRequest { requested_on: date("2026-01-27"), regimen: facts.regimen.clone(), kind: RequestKind::Routine };
    Case {
        facts,
        clinic: ClinicFacts { roster: vec![prescriber("dr-a"), prescriber("dr-b")] },
        request,
        policy: Policy::defaults(),
    }
}

impl Case {
    fn decide(&self) -> Decision {
        evaluate(&self.facts, &self.clinic, &self.request, &self.policy, "test-policy")
    }

    fn on(mut self, day: &str) -> Case {
        self.request.requested_on = date(day);
        self
    }

    fn with_regimen(mut self, regimen: Vec<MedicationOrder>) -> Case {
        self.facts.regimen = regimen.clone();
        self.request.regimen = regimen;
        self
    }
}

fn codes(decision: &Decision) -> Vec<&'static str> {
    decision.reasons.iter().map(|r| r.code.as_str()).collect()
}

fn evidence<'a>(decision: &'a Decision, code: ReasonCode, name: &str) -> &'a EvidenceValue {
    let reason = decision.reasons.iter().find(|r| r.code == code).expect("reason fired");
    &reason.evidence.iter().find(|e| e.name == name).expect("evidence present").value
}

#[test]
fn a_quiet_patient_is_approved_with_no_reasons() {
    let decision = quiet_case().decide();
    assert_eq!(codes(&decision), Vec::<&str>::new());
    assert_eq!(decision.outcome, Outcome::Approve);
    assert_eq!(decision.policy_version, "test-policy");
    assert!((decision.total_daily_mme.unwrap() - 30.0).abs() < 1e-9);
}

#[test]
fn day_26_of_30_is_on_time_and_day_25_is_held_until_day_26() {
    assert_eq!(quiet_case().on("2026-01-27").decide().outcome, Outcome::Approve);
    let held = quiet_case().on("2026-01-26").decide();
    assert_eq!(codes(&held), ["early_request"]);
    assert_eq!(held.outcome, Outcome::Hold);
    assert_eq!(held.eligible_on, Some(date("2026-01-27")));
    assert_eq!(timing::on_time_day(20, 0.85), 17);
    assert_eq!(timing::on_time_day(30, 0.85), 26);
    assert_eq!(timing::on_time_day(28, 0.85), 24);
}

#[test]
fn early_fills_do_not_accumulate() {
    // Fills on day 0 and day 26 of each cycle: by the third request 60 days were supplied in 52 days.
    let mut case = quiet_case().on("2026-02-22");
    case.facts.fills.push(Fill { filled_on: date("2026-01-27"), days_supply: 30, order_id: None, quantity: None });
    let decision = case.decide();
    assert_eq!(codes(&decision), ["early_fill_accumulation"]);
    assert_eq!(decision.outcome, Outcome::Hold);
    // 2026-01-01 + (60 - 7) days.
    assert_eq!(decision.eligible_on, Some(date("2026-02-23")));
    // Same-day fills of two products count once.
    let mut two_products = quiet_case();
    two_products.facts.fills.push(Fill {
        filled_on: date("2026-01-01"),
        days_supply: 30,
        order_id: None,
        quantity: None,
    });
    assert_eq!(codes(&two_products.decide()), Vec::<&str>::new());
}

#[test]
fn a_hold_that_cannot_clear_before_the_supply_runs_out_escalates() {
    // A 10-day fill on Jan 20 after a stockpile: accumulation clears after the 10-day supply runs out.
    let mut case = quiet_case().on("2026-01-29");
    case.facts.fills = vec![
        Fill { filled_on: date("2026-01-01"), days_supply: 30, order_id: None, quantity: None },
        Fill { filled_on: date("2026-01-20"), days_supply: 10, order_id: None, quantity: None },
    ];
    let decision = case.decide();
    assert_eq!(codes(&decision), ["early_fill_accumulation", "early_request_supply_runs_out"]);
    assert_eq!(decision.outcome, Outcome::Escalate);
    assert_eq!(decision.eligible_on, Some(date("2026-02-03")));
}

#[test]
fn no_fill_history_goes_to_a_physician() {
    let mut case = quiet_case();
    case.facts.fills.clear();
    assert_eq!(codes(&case.decide()), ["no_fill_history"]);
}

#[test]
fn pdmp_is_current_at_90_days_and_overdue_at_91() {
    let mut case = quiet_case();
    case.facts.pdmp_reviews[0].reviewed_on = date("2025-10-29"); // 90 days before 2026-01-27
    assert_eq!(codes(&case.decide()), Vec::<&str>::new());
    case.facts.pdmp_reviews[0].reviewed_on = date("2025-10-28");
    let decision = case.decide();
    assert_eq!(codes(&decision), ["pdmp_review_overdue"]);
    assert_eq!(decision.outcome, Outcome::ApproveWithTasks);
    assert_eq!(decision.tasks, [Task::ReviewPdmp]);
    assert_eq!(evidence(&decision, ReasonCode::PdmpReviewOverdue, "pdmp_age_days"), &EvidenceValue::Integer(91));
    assert_eq!(evidence(&decision, ReasonCode::PdmpReviewOverdue, "policy_max_days"), &EvidenceValue::Integer(90));
}

#[test]
fn outside_prescribers_escalate_but_roster_physicians_do_not() {
    let mut case = quiet_case();
    case.facts.pdmp_reviews[0].findings = vec![PdmpFinding {
        prescriber: prescriber("dr-b"),
        drug_class: DrugClass::Opioid,
        filled_on: date("2026-01-05"),
        product: None,
        rxcui: None,
        quantity: None,
        days_supply: None,
    }];
    assert_eq!(codes(&case.decide()), Vec::<&str>::new());
    case.facts.pdmp_reviews[0].findings.push(PdmpFinding {
        prescriber: prescriber("dentist"),
        drug_class: DrugClass::Opioid,
        filled_on: date("2026-01-05"),
        product: None,
        rxcui: None,
        quantity: None,
        days_supply: None,
    });
    assert_eq!(codes(&case.decide()), ["pdmp_outside_prescriber"]);
    // A non-opioid controlled substance escalates until a physician acknowledges the prescriber.
    case.facts.pdmp_reviews[0].findings[1].drug_class = DrugClass::OtherControlled;
    assert_eq!(case.decide().outcome, Outcome::Escalate);
    case.facts.physician_reviews.push(PhysicianReview {
        reviewed_on: date("2026-01-21"),
        physician: prescriber("dr-a"),
        kind: ReviewKind::OutsidePrescriberAcknowledged(prescriber("dentist")),
    });
    assert_eq!(case.decide().outcome, Outcome::Approve);
}

#[test]
fn high_mme_boundaries_compare_unrounded_values() {
    let high = |mg: f64| quiet_case().with_regimen(vec![morphine_mg(mg)]).decide();
    // 49.9 and 49.95 MME: no naloxone trigger; 50: naloxone offer due.
    assert_eq!(codes(&high(24.95)), Vec::<&str>::new());
    assert_eq!(codes(&high(24.975)), Vec::<&str>::new());
    assert_eq!(codes(&high(25.0)), ["naloxone_offer_due"]);
    // 89.9 vs 90 (naloxone still due in both).
    assert_eq!(codes(&high(44.95)), ["naloxone_offer_due"]);
    let ninety = high(45.0);
    assert_eq!(codes(&ninety), ["naloxone_offer_due", "high_mme_reviewed"]);
    assert_eq!(ninety.outcome, Outcome::ApproveWithTasks);
}

#[test]
fn restricted_reasons_raise_the_outcome_to_escalate() {
    let mut case = quiet_case();
    case.facts.flags.push(ClinicalFlag {
        kind: ClinicalFlagKind::SubstanceUseDisorderHistory,
        recorded_on: date("2025-01-01"),
        confidentiality: Confidentiality::Part2,
    });
    let decision = case.decide();
    assert_eq!(codes(&decision), ["naloxone_offer_due"]);
    assert!(decision.reasons[0].restricted);
    assert_eq!(decision.outcome, Outcome::Escalate);
}

#[test]
fn overdose_signal_is_urgent_until_a_physician_reviews_after_it() {
    let mut case = quiet_case();
    case.facts.flags.push(ClinicalFlag {
        kind: ClinicalFlagKind::OverdoseOrSedationSignal,
        recorded_on: date("2026-01-15"),
        confidentiality: Confidentiality::Normal,
    });
    case.facts.naloxone_events.push(NaloxoneEvent { on: date("2026-01-16"), kind: NaloxoneEventKind::Dispensed });
    let decision = case.decide();
    assert_eq!(codes(&decision), ["overdose_or_sedation_signal"]);
    assert_eq!(decision.outcome, Outcome::EscalateUrgent);
    case.facts.physician_reviews.push(PhysicianReview {
        reviewed_on: date("2026-01-20"),
        physician: prescriber("dr-a"),
        kind: ReviewKind::BenefitRisk,
    });
    assert_eq!(case.decide().outcome, Outcome::Approve);
}

#[test]
fn regimen_changes_and_taper_steps() {
    let mut case = quiet_case();
    case.request.regimen = vec![oxycodone(2.0, 4.0)];
    let decision = case.decide();
    // 60 MME requested: the naloxone trigger fires on the requested regimen too.
    assert_eq!(codes(&decision), ["naloxone_offer_due", "regimen_changed"]);
    assert_eq!(evidence(&decision, ReasonCode::RegimenChanged, "change"), &EvidenceValue::Text("increase".into()));
    // The same regimen under a new prescription id is not a change.
    let mut renewed = quiet_case();
    renewed.request.regimen[0].id = "MedicationRequest/new".to_string();
    renewed.request.regimen[0].days_supply = Some(28);
    assert_eq!(codes(&renewed.decide()), Vec::<&str>::new());
    // During a taper the step in force is the reference: asking for the pre-taper dose is a change.
    let mut taper = quiet_case();
    taper.facts.taper = Some(TaperInForce {
        plan_id: 1,
        state: TaperState::Active,
        started_on: date("2026-01-01"),
        step_regimen: vec![oxycodone(1.0, 3.0)],
        step_started_on: date("2026-01-01"),
        next_step: None,
    });
    taper.facts.naloxone_events.push(NaloxoneEvent { on: date("2026-01-01"), kind: NaloxoneEventKind::Offered });
    assert_eq!(codes(&taper.decide()), ["regimen_changed"]);
    taper.request.regimen = vec![oxycodone(1.0, 3.0)];
    assert_eq!(codes(&taper.decide()), Vec::<&str>::new());
}

#[test]
fn safety_floors_route_to_a_physician() {
    let mut case = quiet_case();
    case.request.kind = RequestKind::LostOrStolenReplacement;
    case.facts.birth_date = Some(date("2008-01-28")); // 17 on 2026-01-27
    case.facts.other_medications.push(OtherMedication {
        class: OtherMedicationClass::OudTreatment,
        text: "methadone (opioid treatment program)".to_string(),
        started_on: None,
        active: true,
        confidentiality: Confidentiality::Part2,
    });
    case.facts.naloxone_events.push(NaloxoneEvent { on: date("2026-01-01"), kind: NaloxoneEventKind::Declined });
    let decision = case.decide();
    assert_eq!(codes(&decision), ["lost_or_stolen_replacement", "oud_medication_from_other_source", "outside_scope"]);
    assert_eq!(decision.outcome, Outcome::Escalate);
    assert!(decision.reasons[1].restricted);
}

#[test]
fn no_outcome_or_reason_stops_therapy() {
    for outcome in Outcome::ALL {
        let text = outcome.as_str().to_lowercase();
        assert!(!text.contains("discontinu") && !text.contains("dismiss") && !text.contains("stop"));
    }
    for code in ReasonCode::ALL {
        let text = code.as_str();
        assert!(!text.contains("discontinu") && !text.contains("dismiss"), "{text}");
    }
}

#[test]
fn the_unremarkable_uds_shortcut_agrees_with_the_full_interpretation() {
    let ingredients = [
        "oxycodone",
        "morphine",
        "hydrocodone",
        "hydromorphone",
        "fentanyl",
        "methadone",
        "tramadol",
        "tapentadol",
        "buprenorphine",
        "codeine",
        "oxymorphone",
        "alprazolam",
        "clonazepam",
        "lorazepam",
        "diazepam",
    ];
    let assays = [
        "opiates",
        "oxycodone",
        "fentanyl",
        "methadone",
        "lcms",
        "gcms",
        "buprenorphine",
        "tramadol",
        "benzodiazepines",
    ];
    let mut shortcuts = 0;
    for (i, first) in ingredients.iter().enumerate() {
        for second in ingredients.iter().skip(i) {
            let prescribed: Vec<&str> = if first == second { vec![*first] } else { vec![*first, *second] };
            for assay in assays {
                for detected in [true, false] {
                    let result = UdsResult {
                        collected_on: date("2026-01-10"),
                        kind: UdsKind::Scheduled,
                        confirmatory: assay.ends_with("ms"),
                        analytes: prescribed
                            .iter()
                            .map(|p| UdsAnalyteResult { assay: assay.to_string(), analyte: p.to_string(), detected })
                            .collect(),
                        physician_reviewed_on: None,
                        confidentiality: Confidentiality::Normal,
                        specimen_validity: Default::default(),
                    };
                    if monitoring::shows_exactly_what_is_prescribed(&result, &prescribed) {
                        shortcuts += 1;
                        let full = crate::uds::interpret(&result, &prescribed);
                        assert!(!full.needs_review(), "{prescribed:?} on {assay}: {full:?}");
                    }
                }
            }
        }
    }
    assert!(shortcuts > 100, "the shortcut was exercised {shortcuts} times");
}

/// A benzodiazepine on the medication list, as the chart records it.
fn benzodiazepine(text: &str, active: bool) -> OtherMedication {
    OtherMedication {
        class: OtherMedicationClass::Benzodiazepine,
        text: text.to_string(),
        started_on: Some(date("2025-11-01")),
        active,
        confidentiality: Confidentiality::Normal,
    }
}

/// A presumptive result of 2026-01-15: oxycodone positive plus the given (assay, analyte) positives.
fn uds_with(case: &mut Case, confirmatory: bool, extra: &[(&str, &str)]) {
    let mut analytes = vec![UdsAnalyteResult {
        assay: if confirmatory { "lcms" } else { "oxycodone" }.to_string(),
        analyte: "oxycodone".to_string(),
        detected: true,
    }];
    analytes.extend(extra.iter().map(|(assay, analyte)| UdsAnalyteResult {
        assay: assay.to_string(),
        analyte: analyte.to_string(),
        detected: true,
    }));
    case.facts.uds.results.push(UdsResult {
        collected_on: date("2026-01-15"),
        kind: UdsKind::Scheduled,
        confirmatory,
        analytes,
        physician_reviewed_on: None,
        confidentiality: Confidentiality::Normal,
        specimen_validity: Default::default(),
    });
}

#[test]
fn a_prescribed_benzodiazepine_on_a_screen_or_lcms_is_expected() {
    let results: [(bool, &[(&str, &str)]); 6] = [
        (false, &[("benzodiazepines", "benzodiazepines")]),
        (false, &[("bzo", "bzo")]),
        (true, &[("lcms", "alpha-hydroxyalprazolam")]),
        (true, &[("lcms", "alprazolam"), ("lcms", "alpha-OH-alprazolam")]),
        (false, &[("benzodiazepines", "alprazolam")]),
        (true, &[("lcms", "alprazolam")]),
    ];
    for text in ["alprazolam 0.5 MG Oral Tablet", "Xanax 0.5 mg tablet", "ALPRAZOLAM, 0.25 mg"] {
        for (confirmatory, extra) in results {
            let mut case = quiet_case();
            case.facts.other_medications.push(benzodiazepine(text, true));
            uds_with(&mut case, confirmatory, extra);
            let decision = case.decide();
            assert!(
                !codes(&decision).contains(&"uds_unexpected_result"),
                "{text} with {extra:?}: {:?}",
                codes(&decision)
            );
        }
    }
}

#[test]
fn each_prescribed_benzodiazepine_explains_its_own_metabolites_only() {
    // (medication text, LC-MS analyte, whether the result escalates)
    let cases = [
        ("clonazepam 1 MG Oral Tablet", "7-aminoclonazepam", false),
        ("Klonopin 0.5 mg", "7-amino-clonazepam", false),
        ("lorazepam 1 MG Oral Tablet", "lorazepam", false),
        ("diazepam 5 MG Oral Tablet", "nordiazepam", false),
        ("diazepam 5 MG Oral Tablet", "oxazepam", false),
        ("diazepam 5 MG Oral Tablet", "temazepam", false),
        ("temazepam 15 MG Oral Capsule", "oxazepam", false),
        ("clonazepam 1 MG Oral Tablet", "alpha-hydroxyalprazolam", true),
        ("oxazepam 10 MG Oral Capsule", "nordiazepam", true),
        ("lorazepam 1 MG Oral Tablet", "7-aminoclonazepam", true),
    ];
    for (text, analyte, escalates) in cases {
        let mut case = quiet_case();
        case.facts.other_medications.push(benzodiazepine(text, true));
        uds_with(&mut case, true, &[("lcms", analyte)]);
        let decision = case.decide();
        assert_eq!(codes(&decision).contains(&"uds_unexpected_result"), escalates, "{text} with {analyte}");
    }
}

#[test]
fn an_unprescribed_or_inactive_benzodiazepine_stays_unexpected() {
    for medications in [vec![], vec![benzodiazepine("alprazolam 0.5 MG Oral Tablet", false)]] {
        for (confirmatory, extra) in [(false, ("benzodiazepines", "benzodiazepines")), (true, ("lcms", "alprazolam"))] {
            let mut case = quiet_case();
            case.facts.other_medications = medications.clone();
            uds_with(&mut case, confirmatory, &[extra]);
            let decision = case.decide();
            assert!(codes(&decision).contains(&"uds_unexpected_result"), "{medications:?} {extra:?}");
            let findings = evidence(&decision, ReasonCode::UdsUnexpectedResult, "findings");
            assert_eq!(*findings, EvidenceValue::Text(format!("{}: unexpected", extra.1).into()));
            assert_eq!(decision.outcome, Outcome::Escalate);
        }
    }
}

/// A 12-hour oxycodone ER 10 mg tablet twice a day (30 MME), long-acting in the drug table.
fn oxycodone_er() -> MedicationOrder {
    MedicationOrder {
        id: "MedicationRequest/oxy-er".to_string(),
        rxcui: Some("1049502".to_string()),
        text: Some("12 HR oxycodone hydrochloride 10 MG Extended Release Oral Tablet".to_string()),
        dose: Some(DoseQuantity { value: 1.0, unit: DoseUnit::DoseFormUnit }),
        doses_per_day: Some(2.0),
        days_supply: Some(30),
        dispense_quantity: Some(60.0),
        prescriber: Some(prescriber("dr-a")),
        purpose: OrderPurpose::Pain,
        confidentiality: Confidentiality::Normal,
    }
}

#[test]
fn a_lost_or_stolen_report_is_a_repeat_up_to_the_window_and_not_after() {
    let mut case = quiet_case();
    case.request.kind = RequestKind::LostOrStolenReplacement;
    for (earlier, repeat) in [("2025-01-27", true), ("2025-01-26", false), ("2026-01-27", false)] {
        // 365 days before the request is inside the window, 366 outside; a report dated the request day
        // is this request's own report.
        case.facts.lost_or_stolen_reports = vec![date(earlier), date("2026-01-27")];
        let decision = case.decide();
        assert_eq!(codes(&decision).contains(&"lost_or_stolen_repeat"), repeat, "{earlier}");
        assert!(codes(&decision).contains(&"lost_or_stolen_replacement"));
    }
    // A routine request never fires the repeat, whatever the history.
    case.request.kind = RequestKind::Routine;
    case.facts.lost_or_stolen_reports = vec![date("2025-12-01"), date("2026-01-02")];
    assert!(!codes(&case.decide()).contains(&"lost_or_stolen_repeat"));
}

#[test]
fn an_aberrant_pattern_needs_the_minimum_events_in_the_lookback_and_clears_on_a_later_review() {
    let mut case = quiet_case();
    case.facts.physician_reviews[0].reviewed_on = date("2025-11-01");
    case.facts.early_requests = vec![date("2025-12-01"), date("2026-01-05")];
    assert!(!codes(&case.decide()).contains(&"aberrant_pattern"), "two events are not a pattern");
    // The third event 181 days back is outside the 180-day lookback; 180 days back is inside.
    case.facts.lost_or_stolen_reports = vec![date("2025-07-30")];
    assert!(!codes(&case.decide()).contains(&"aberrant_pattern"));
    case.facts.lost_or_stolen_reports = vec![date("2025-07-31")];
    let decision = case.decide();
    assert!(codes(&decision).contains(&"aberrant_pattern"));
    assert_eq!(decision.outcome, Outcome::Escalate);
    assert_eq!(
        evidence(&decision, ReasonCode::AberrantPattern, "latest_event_on"),
        &EvidenceValue::Date(date("2026-01-05"))
    );
    // A physician benefit-risk review on the day of the latest event has weighed it.
    case.facts.physician_reviews[0].reviewed_on = date("2026-01-05");
    assert!(!codes(&case.decide()).contains(&"aberrant_pattern"));
}

#[test]
fn opioid_tolerance_needs_a_week_of_supply_at_sixty_mme_unless_the_same_er_la_continues() {
    // Record: oxycodone IR 30 MME filled 2026-01-01 for 30 days; the request switches to oxycodone ER.
    let mut case = quiet_case();
    case.request.regimen = vec![oxycodone_er()];
    assert!(codes(&case.decide()).contains(&"er_la_not_opioid_tolerant"), "30 MME is not tolerant");
    // 60 MME of record with supply on each of the last 7 days: tolerant.
    case.facts.regimen = vec![oxycodone(2.0, 4.0)];
    assert!(!codes(&case.decide()).contains(&"er_la_not_opioid_tolerant"), "60 MME for a week is tolerant");
    // The fill of 2026-01-01 for 30 days covers 2026-01-01..2026-01-30. On 2026-01-31 the last 7 days
    // (2026-01-24..2026-01-30) are all covered; a refill a day or two late keeps tolerance (two days of
    // grace: on 2026-02-02 the week holds 2026-01-31 and 2026-02-01 without supply); a third day without
    // supply loses it.
    let case = case.on("2026-01-31");
    assert!(!codes(&case.decide()).contains(&"er_la_not_opioid_tolerant"), "supplied through 2026-01-30");
    let case = case.on("2026-02-02");
    assert!(!codes(&case.decide()).contains(&"er_la_not_opioid_tolerant"), "two days late is not a restart");
    let case = case.on("2026-02-03");
    assert!(codes(&case.decide()).contains(&"er_la_not_opioid_tolerant"), "a gap in supply loses tolerance");
    // The same ER product continued from the record with no gap: not a new start, whatever the MME.
    let case = quiet_case().with_regimen(vec![oxycodone_er()]);
    assert!(!codes(&case.decide()).contains(&"er_la_not_opioid_tolerant"));
}

#[test]
fn an_outside_opioid_counts_in_the_mme_only_while_its_supply_overlaps_the_request() {
    let mut case = quiet_case();
    let finding = |filled_on: &str, days_supply: u32| PdmpFinding {
        prescriber: prescriber("npi-outside"),
        drug_class: DrugClass::Opioid,
        filled_on: date(filled_on),
        product: Some("morphine sulfate 15 MG Oral Tablet".to_string()),
        rxcui: Some("892582".to_string()),
        quantity: Some(60.0),
        days_supply: Some(days_supply),
    };
    // 2 tablets a day of 15 mg morphine: 30 MME on top of 30.
    case.facts.pdmp_reviews[0].findings = vec![finding("2026-01-12", 30)];
    let decision = case.decide();
    assert!((decision.total_daily_mme.unwrap() - 60.0).abs() < 1e-9, "{:?}", decision.total_daily_mme);
    assert!(codes(&decision).contains(&"naloxone_offer_due"));
    // Filled 2026-01-12 for 15 days: runs out on 2026-01-27, the request day, so it no longer counts.
    case.facts.pdmp_reviews[0].findings = vec![finding("2026-01-12", 15)];
    let decision = case.decide();
    assert!((decision.total_daily_mme.unwrap() - 30.0).abs() < 1e-9, "{:?}", decision.total_daily_mme);
    assert!(codes(&decision).contains(&"pdmp_outside_prescriber"));
}
