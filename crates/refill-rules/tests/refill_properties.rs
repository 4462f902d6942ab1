//! Property tests of the refill policy over random patients: the same input always gives the same
//! decision; bringing a monitoring item up to date with an unremarkable result never makes the outcome
//! stricter; and no decision ever stops therapy (no outcome, code or text says discontinue or dismiss).

use chrono::{Duration, NaiveDate};
use proptest::prelude::*;
use refill_rules::decision::{Decision, Outcome};
use refill_rules::drug::DrugTable;
use refill_rules::facts::*;
use refill_rules::policy::Policy;
use refill_rules::refill::evaluate;

/// SplitMix64: a tiny deterministic generator, so one proptest seed describes a whole patient.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn days_ago(&mut self, today: NaiveDate, max: u64) -> NaiveDate {
        today - Duration::days(self.below(max + 1) as i64)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 15).unwrap()
}

fn prescriber(id: &str) -> PrescriberId {
    PrescriberId(id.to_string())
}

/// (rxcui, text, unit, dose choices, doses per day choices)
type Product = (&'static str, &'static str, DoseUnit, &'static [f64], &'static [f64]);

fn order(rng: &mut Rng, index: usize) -> MedicationOrder {
    let products: [Product; 6] = [
        ("1049621", "oxycodone hydrochloride 5 MG Oral Tablet", DoseUnit::DoseFormUnit, &[1.0, 2.0], &[2.0, 3.0, 4.0]),
        ("892582", "morphine sulfate 15 MG Oral Tablet", DoseUnit::Milligram, &[15.0, 24.95, 25.0, 45.0], &[2.0]),
        ("245134", "72 HR fentanyl 0.025 MG/HR Transdermal System", DoseUnit::DoseFormUnit, &[1.0, 2.0], &[1.0 / 3.0]),
        ("897702", "hydromorphone hydrochloride 4 MG Oral Tablet", DoseUnit::DoseFormUnit, &[1.0], &[2.0, 4.0]),
        ("388506", "72 HR Buprenorphine 0.07 MG/HR Transdermal System", DoseUnit::DoseFormUnit, &[1.0], &[1.0 / 3.0]),
        ("1049621", "oxycodone hydrochloride 5 MG Oral Tablet", DoseUnit::Unusable("1".to_string()), &[1.0], &[4.0]),
    ];
    let weights = [40, 25, 10, 10, 8, 7];
    let mut roll = rng.below(100);
    let mut choice = 0;
    for (i, w) in weights.iter().enumerate() {
        if roll < *w {
            choice = i;
            break;
        }
        roll -= w;
    }
    let (rxcui, text, unit, doses, per_day) = &products[choice];
    MedicationOrder {
        id: format!("MedicationRequest/{index}"),
        rxcui: Some(rxcui.to_string()),
        text: Some(text.to_string()),
        dose: Some(DoseQuantity { value: *rng.pick(doses), unit: unit.clone() }),
        doses_per_day: Some(*rng.pick(per_day)),
        days_supply: Some(30),
        dispense_quantity: None,
        prescriber: Some(prescriber("dr-a")),
        purpose: if rng.chance(3) { OrderPurpose::OpioidUseDisorder } else { OrderPurpose::Pain },
        confidentiality: if rng.chance(3) { Confidentiality::Part2 } else { Confidentiality::Normal },
    }
}

fn confidentiality(rng: &mut Rng) -> Confidentiality {
    if rng.chance(10) { Confidentiality::Part2 } else { Confidentiality::Normal }
}

/// A random patient, clinic and request on `today()`.
fn case(seed: u64) -> (PatientFacts, ClinicFacts, RefillRequest) {
    let rng = &mut Rng(seed);
    let today = today();
    let mut facts = PatientFacts::empty(PatientId(seed as i64 & 0xffff));
    facts.birth_date = Some(today - Duration::days(365 * (15 + rng.below(70) as i64)));
    facts.prescriber_of_record = Some(prescriber(if rng.chance(90) { "dr-a" } else { "dr-b" }));
    facts.regimen = (0..1 + rng.below(2) as usize).map(|i| order(rng, i)).collect();
    for _ in 0..rng.below(5) {
        facts.fills.push(Fill {
            filled_on: rng.days_ago(today, 200),
            days_supply: *rng.pick(&[7, 14, 28, 30]),
            order_id: None,
            quantity: None,
        });
    }
    for _ in 0..rng.below(3) {
        let mut findings = Vec::new();
        if rng.chance(20) {
            findings.push(PdmpFinding {
                prescriber: PrescriberId(rng.pick(&["dr-a", "dr-b", "npi-outside", "npi-psych"]).to_string()),
                drug_class: *rng.pick(&[DrugClass::Opioid, DrugClass::Benzodiazepine, DrugClass::OtherControlled]),
                filled_on: rng.days_ago(today, 120),
                product: None,
                rxcui: None,
                quantity: None,
                days_supply: None,
            });
        }
        facts.pdmp_reviews.push(PdmpReview { reviewed_on: rng.days_ago(today, 150), findings });
    }
    if rng.chance(85) {
        facts.agreement = Some(AgreementFacts {
            signed_on: rng.days_ago(today, 500),
            prescriber_of_record: prescriber(if rng.chance(90) { "dr-a" } else { "dr-c" }),
            text_version: "v1".to_string(),
            elements: Vec::new(),
            voided_on: if rng.chance(5) { Some(rng.days_ago(today, 30)) } else { None },
        });
    }
    for _ in 0..rng.below(3) {
        let kind = match rng.below(4) {
            0 | 1 => ReviewKind::BenefitRisk,
            2 => ReviewKind::BenzodiazepineAcknowledged,
            _ => ReviewKind::OutsidePrescriberAcknowledged(prescriber("npi-psych")),
        };
        facts.physician_reviews.push(PhysicianReview {
            reviewed_on: rng.days_ago(today, 150),
            physician: prescriber("dr-a"),
            kind,
        });
    }
    if rng.chance(40) {
        facts.naloxone_events.push(NaloxoneEvent {
            on: rng.days_ago(today, 500),
            kind: *rng.pick(&[NaloxoneEventKind::Offered, NaloxoneEventKind::Declined, NaloxoneEventKind::Dispensed]),
        });
    }
    let flag_kinds = [
        ClinicalFlagKind::OverdoseHistory,
        ClinicalFlagKind::SubstanceUseDisorderHistory,
        ClinicalFlagKind::SleepDisorderedBreathing,
        ClinicalFlagKind::Cancer,
        ClinicalFlagKind::SickleCell,
        ClinicalFlagKind::Palliative,
        ClinicalFlagKind::EndOfLife,
        ClinicalFlagKind::OverdoseOrSedationSignal,
    ];
    for kind in flag_kinds {
        if rng.chance(5) {
            let confidentiality = confidentiality(rng);
            facts.flags.push(ClinicalFlag { kind, recorded_on: rng.days_ago(today, 400), confidentiality });
        }
    }
    if rng.chance(15) {
        let confidentiality = confidentiality(rng);
        facts.other_medications.push(OtherMedication {
            class: OtherMedicationClass::Benzodiazepine,
            text: "alprazolam 0.5 MG Oral Tablet".to_string(),
            started_on: Some(rng.days_ago(today, 300)),
            active: rng.chance(90),
            confidentiality,
        });
    }
    if rng.chance(5) {
        facts.other_medications.push(OtherMedication {
            class: OtherMedicationClass::OudTreatment,
            text: "methadone (opioid treatment program)".to_string(),
            started_on: None,
            active: true,
            confidentiality: Confidentiality::Part2,
        });
    }
    facts.uds.scheduled_due = Some(today + Duration::days(rng.below(200) as i64 - 60));
    if rng.chance(10) {
        facts.uds.for_cause_due = Some(rng.days_ago(today, 40));
    }
    for _ in 0..rng.below(3) {
        let mut analytes = vec![UdsAnalyteResult {
            assay: "oxycodone".to_string(),
            analyte: "oxycodone".to_string(),
            detected: rng.chance(80),
        }];
        if rng.chance(15) {
            analytes.push(UdsAnalyteResult {
                assay: "cocaine".to_string(),
                analyte: "benzoylecgonine".to_string(),
                detected: true,
            });
        }
        facts.uds.results.push(UdsResult {
            collected_on: rng.days_ago(today, 300),
            kind: if rng.chance(80) { UdsKind::Scheduled } else { UdsKind::ForCause },
            confirmatory: rng.chance(20),
            analytes,
            physician_reviewed_on: if rng.chance(50) { Some(rng.days_ago(today, 30)) } else { None },
            confidentiality: confidentiality(rng),
            specimen_validity: Default::default(),
        });
    }
    if rng.chance(10) {
        let state = *rng.pick(&[TaperState::Active, TaperState::Paused, TaperState::Completed]);
        let started = rng.days_ago(today, 300);
        facts.taper = Some(TaperInForce {
            plan_id: 1,
            state,
            started_on: started,
            step_regimen: facts.regimen.clone(),
            step_started_on: started,
            next_step: None,
        });
    }
    if rng.chance(70) {
        facts.last_decision = Some(PriorDecision {
            decided_on: rng.days_ago(today, 60),
            total_daily_mme: Some(*rng.pick(&[20.0, 30.0, 45.0, 49.9, 60.0, 89.9, 120.0])),
        });
    }
    let mut regimen = facts.regimen.clone();
    if rng.chance(10) {
        regimen.push(order(rng, 9));
    }
    let request = RefillRequest {
        requested_on: today,
        regimen,
        kind: if rng.chance(5) { RequestKind::LostOrStolenReplacement } else { RequestKind::Routine },
    };
    let clinic = ClinicFacts { roster: vec![prescriber("dr-a"), prescriber("dr-b")] };
    (facts, clinic, request)
}

fn decide(facts: &PatientFacts, clinic: &ClinicFacts, request: &RefillRequest) -> Decision {
    evaluate(facts, clinic, request, &Policy::defaults(), "property-test")
}

/// The ways to bring one monitoring item up to date today with an unremarkable result.
fn bring_up_to_date(facts: &PatientFacts, request: &RefillRequest, item: usize) -> PatientFacts {
    let today = today();
    let mut facts = facts.clone();
    let physician = prescriber("dr-a");
    match item {
        0 => facts.pdmp_reviews.push(PdmpReview { reviewed_on: today, findings: Vec::new() }),
        1 => facts.physician_reviews.push(PhysicianReview {
            reviewed_on: today,
            physician,
            kind: ReviewKind::BenefitRisk,
        }),
        2 => facts.naloxone_events.push(NaloxoneEvent { on: today, kind: NaloxoneEventKind::Offered }),
        3 => {
            facts.agreement = Some(AgreementFacts {
                signed_on: today,
                prescriber_of_record: facts.prescriber_of_record.clone().unwrap_or_else(|| prescriber("dr-a")),
                text_version: "v2".to_string(),
                elements: Vec::new(),
                voided_on: None,
            })
        }
        4 => {
            // A confirmatory test showing exactly the prescribed opioids.
            let table = DrugTable::embedded();
            let mut analytes: Vec<UdsAnalyteResult> = Vec::new();
            for order in facts.regimen.iter().chain(&request.regimen) {
                if let Some(ingredient) = table.ingredient_of(order)
                    && !analytes.iter().any(|a| a.analyte == ingredient)
                {
                    analytes.push(UdsAnalyteResult {
                        assay: "lcms".to_string(),
                        analyte: ingredient.to_string(),
                        detected: true,
                    });
                }
            }
            facts.uds.results.push(UdsResult {
                collected_on: today,
                kind: UdsKind::Scheduled,
                confirmatory: true,
                analytes,
                physician_reviewed_on: None,
                confidentiality: Confidentiality::Normal,
                specimen_validity: Default::default(),
            });
        }
        _ => facts.physician_reviews.push(PhysicianReview {
            reviewed_on: today,
            physician,
            kind: ReviewKind::BenzodiazepineAcknowledged,
        }),
    }
    facts
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_same_input_gives_the_same_decision(seed in any::<u64>()) {
        let (facts, clinic, request) = case(seed);
        let first = decide(&facts, &clinic, &request);
        let again = decide(&facts.clone(), &clinic.clone(), &request.clone());
        prop_assert_eq!(&first, &again);
        prop_assert_eq!(serde_json::to_string(&first).unwrap(), serde_json::to_string(&again).unwrap());
    }

    #[test]
    fn bringing_monitoring_up_to_date_never_raises_the_outcome(seed in any::<u64>(), item in 0usize..6) {
        let (facts, clinic, request) = case(seed);
        let before = decide(&facts, &clinic, &request);
        let updated = bring_up_to_date(&facts, &request, item);
        let after = decide(&updated, &clinic, &request);
        prop_assert!(after.outcome <= before.outcome,
            "item {} raised {:?} -> {:?}\nbefore: {:?}\nafter: {:?}", item, before.outcome, after.outcome,
            before.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(),
            after.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>());
        // All items at once, too.
        let mut all = facts.clone();
        for each in 0..6 {
            all = bring_up_to_date(&all, &request, each);
        }
        prop_assert!(decide(&all, &clinic, &request).outcome <= before.outcome);
    }

    #[test]
    fn no_decision_stops_therapy(seed in any::<u64>()) {
        let (facts, clinic, request) = case(seed);
        let decision = decide(&facts, &clinic, &request);
        let json = serde_json::to_string(&decision).unwrap().to_lowercase();
        for forbidden in ["discontinu", "dismiss", "stop therapy", "terminate", "cut off"] {
            prop_assert!(!json.contains(forbidden), "decision mentions {}: {}", forbidden, json);
        }
        // The outcome is the most severe reason, lifted to ESCALATE by restricted reasons.
        let mut expected = decision.reasons.iter().map(|r| r.outcome).max().unwrap_or(Outcome::Approve);
        if decision.reasons.iter().any(|r| r.restricted) {
            expected = expected.max(Outcome::Escalate);
        }
        prop_assert_eq!(decision.outcome, expected);
        prop_assert!(Outcome::ALL.contains(&decision.outcome));
    }
}
