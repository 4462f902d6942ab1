//! The demo clinic looks like a working refill clinic: MME spread computed by the real engine, tiers,
//! a stable and on-time majority judged by the real refill rules, a realistic minority of exceptions
//! (each kind in every 500-patient clinic), fills spread evenly over the cycle, real RxNorm codes, and
//! output the importer accepts.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{Duration, NaiveDate};
use refill_demo::products::{Family, PRODUCTS};
use refill_demo::{CASE_MIX, CaseKind, DemoClinic, DemoPatient, DemoSettings, generate};
use refill_rules::mme::{FactorSet, daily_mme};
use refill_rules::policy::Policy;
use refill_rules::{
    ClinicFacts, ClinicalFlagKind, Decision, Outcome, PatientFacts, PatientId, PrescriberId, ReasonCode, RefillRequest,
    RequestKind, RiskTier, TaperInForce, TaperState, UdsFacts,
};

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
}

fn clinic(patients: usize, seed: u64) -> DemoClinic {
    generate(&DemoSettings { patients, seed, today: today() })
}

#[test]
fn the_same_seed_gives_the_same_clinic() {
    assert_eq!(clinic(50, 7), clinic(50, 7));
    assert_ne!(clinic(50, 7), clinic(50, 8));
    // Patient n does not depend on how many patients come after it.
    assert_eq!(clinic(10, 7).patients[..], clinic(50, 7).patients[..10]);
}

#[test]
fn the_population_has_a_refill_clinic_shape() {
    let clinic = clinic(2_000, 2026);
    let n = clinic.patients.len() as f64;
    let share = |count: usize| count as f64 / n;

    // MME by the rules engine itself, not by the generator's own arithmetic.
    let mut counted = 0usize;
    let (mut mid, mut high, mut very_high) = (0usize, 0usize, 0usize);
    for patient in &clinic.patients {
        let result = daily_mme(&patient.orders, FactorSet::Cdc2022);
        assert!(result.undetermined.is_empty(), "{}: undetermined {:?}", patient.external_id, result.undetermined);
        let Some(mme) = result.total_daily_mme else {
            assert!(!result.excluded.is_empty(), "{}: no MME and nothing excluded", patient.external_id);
            continue;
        };
        let expected = patient.daily_mme.expect("counted regimens have an intended MME");
        assert!(
            (mme - expected).abs() < 0.01 * expected.max(1.0),
            "{}: engine {mme}, demo {expected}",
            patient.external_id
        );
        counted += 1;
        if (20.0..90.0).contains(&mme) {
            mid += 1;
        }
        if mme >= 90.0 {
            high += 1;
        }
        if mme > 200.0 {
            very_high += 1;
        }
    }
    let buprenorphine = clinic.patients.len() - counted;
    assert!(share(mid) > 0.6, "20-90 MME: {:.3}", share(mid));
    assert!((0.10..=0.15).contains(&share(high)), ">= 90 MME: {:.3}", share(high));
    assert!(very_high > 0 && share(very_high) < 0.05, "> 200 MME: {very_high}");
    assert!(buprenorphine > 0 && share(buprenorphine) < 0.06, "buprenorphine only: {buprenorphine}");

    for tier in [RiskTier::Low, RiskTier::Moderate, RiskTier::High] {
        let count = clinic.patients.iter().filter(|p| p.risk_tier == tier).count();
        assert!(share(count) > 0.15, "{tier:?}: {:.3}", share(count));
    }

    // A few benzodiazepines (most acknowledged by the physician) and diagnoses the rules use.
    let benzodiazepine = |p: &&refill_demo::DemoPatient| p.other_medications.iter().any(|(_, m)| m.active);
    let on_benzo: Vec<_> = clinic.patients.iter().filter(benzodiazepine).collect();
    assert!((0.02..=0.08).contains(&share(on_benzo.len())), "benzodiazepine: {:.3}", share(on_benzo.len()));
    let acknowledged = on_benzo
        .iter()
        .filter(|p| p.reviews.iter().any(|(_, r)| r.kind == refill_rules::ReviewKind::BenzodiazepineAcknowledged))
        .count();
    assert!(acknowledged * 2 > on_benzo.len(), "acknowledged: {acknowledged} of {}", on_benzo.len());
    for kind in [
        refill_rules::ClinicalFlagKind::SleepDisorderedBreathing,
        refill_rules::ClinicalFlagKind::OverdoseHistory,
        refill_rules::ClinicalFlagKind::SubstanceUseDisorderHistory,
        refill_rules::ClinicalFlagKind::Cancer,
    ] {
        let count = clinic.patients.iter().filter(|p| p.conditions.iter().any(|(_, f, _)| f.kind == kind)).count();
        assert!(count > 0 && share(count) < 0.1, "{kind:?}: {count}");
    }

    // Every family of the clinic's formulary is prescribed to someone.
    let families: HashSet<Family> = clinic
        .patients
        .iter()
        .flat_map(|p| p.orders.iter())
        .filter_map(|o| PRODUCTS.iter().find(|p| Some(p.rxcui) == o.rxcui.as_deref()))
        .map(|p| p.family)
        .collect();
    for family in [
        Family::HydrocodoneIr,
        Family::OxycodoneIr,
        Family::OxycodoneEr,
        Family::MorphineEr,
        Family::FentanylPatch,
        Family::Methadone,
        Family::Tramadol,
    ] {
        assert!(families.contains(&family), "nobody is on {family:?}");
    }
    assert!(families.contains(&Family::BuprenorphinePatch) || families.contains(&Family::BuprenorphineBuccal));
}

/// The facts the store would load for a demo patient once imported (with the drawn drug-test date the
/// demo records), for the real refill rules.
fn facts_of(index: usize, patient: &DemoPatient, today: NaiveDate) -> PatientFacts {
    let mut facts = PatientFacts::empty(PatientId(index as i64 + 1));
    facts.birth_date = Some(patient.birth_date);
    facts.sex = patient.sex;
    facts.risk_tier = patient.risk_tier;
    facts.prescriber_of_record = Some(PrescriberId(patient.prescriber_id.clone()));
    facts.previous_prescriber = patient.previous_prescriber.clone().map(PrescriberId);
    facts.regimen = patient.orders.clone();
    facts.fills = patient.fills.iter().map(|(_, fill)| fill.clone()).collect();
    facts.uds = UdsFacts {
        scheduled_due: patient.next_uds_due,
        for_cause_due: None,
        results: patient.uds.iter().map(|(_, result)| result.clone()).collect(),
    };
    facts.pdmp_reviews = patient.pdmp.iter().map(|(_, review)| review.clone()).collect();
    facts.agreement = patient.agreement.as_ref().map(|(_, agreement)| agreement.clone());
    facts.physician_reviews = patient.reviews.iter().map(|(_, review)| review.clone()).collect();
    facts.naloxone_events = patient.naloxone.iter().map(|(_, event)| event.clone()).collect();
    // A resolved cancer is retired on import; overdose and substance-use history stay.
    facts.flags = patient
        .conditions
        .iter()
        .filter(|(_, flag, active)| {
            *active
                || matches!(
                    flag.kind,
                    ClinicalFlagKind::OverdoseHistory | ClinicalFlagKind::SubstanceUseDisorderHistory
                )
        })
        .map(|(_, flag, _)| flag.clone())
        .collect();
    facts.other_medications = patient.other_medications.iter().map(|(_, medication)| medication.clone()).collect();
    facts.taper =
        patient.taper.as_ref().map(|taper| {
            let step = taper.steps.iter().rev().find(|step| step.starts_on <= today).expect("a step in force");
            TaperInForce {
                plan_id: index as i64 + 1,
                state: if taper.paused { TaperState::Paused } else { TaperState::Active },
                started_on: taper.started_on,
                step_regimen: step.regimen.clone(),
                step_started_on: step.starts_on,
                next_step: taper.steps.iter().find(|next| next.starts_on > today).map(|next| {
                    refill_rules::TaperStepAhead { starts_on: next.starts_on, regimen: next.regimen.clone() }
                }),
            }
        });
    facts
}

/// Every patient's decision for today by the default policy, as the daily run makes it.
fn decisions(clinic: &DemoClinic) -> Vec<(&DemoPatient, Decision)> {
    let policy = Policy::defaults();
    let roster = ClinicFacts { roster: clinic.physicians.iter().map(|p| PrescriberId(p.id.clone())).collect() };
    clinic
        .patients
        .iter()
        .enumerate()
        .map(|(index, patient)| {
            let facts = facts_of(index, patient, clinic.today);
            let request = RefillRequest {
                requested_on: clinic.today,
                regimen: facts.regimen.clone(),
                kind: RequestKind::Routine,
            };
            (patient, refill_rules::refill::evaluate(&facts, &roster, &request, &policy, "test"))
        })
        .collect()
}

fn fires(decision: &Decision, code: ReasonCode) -> bool {
    decision.reasons.iter().any(|reason| reason.code == code)
}

/// Reasons that say nothing is wrong: the calendar (the run asks on a day the refill is not due yet)
/// and a high dose whose review is current.
fn only_calendar(decision: &Decision) -> bool {
    decision.reasons.iter().all(|reason| matches!(reason.code, ReasonCode::EarlyRequest | ReasonCode::HighMmeReviewed))
}

#[test]
fn most_patients_have_everything_current_and_few_need_a_physician() {
    let clinic = clinic(2_000, 2026);
    let decided = decisions(&clinic);
    let n = decided.len() as f64;
    let share = |test: &dyn Fn(&Decision) -> bool| decided.iter().filter(|(_, d)| test(d)).count() as f64 / n;

    // Everything current by the rules themselves: no monitoring, safety or dose reason fires.
    let current = share(&only_calendar);
    assert!((0.85..=0.92).contains(&current), "everything current: {current:.3}");
    // The physician's list (ESCALATE or worse) is a few percent of the clinic, not a fifth.
    let physician = share(&|d| d.outcome >= Outcome::Escalate);
    assert!((0.03..=0.07).contains(&physician), "physician's list: {physician:.3}");
    assert!(share(&|d| d.outcome == Outcome::EscalateUrgent) == 0.0, "an urgent escalation in a quiet clinic");

    // One overdue monitoring item: a few percent, each item under 2%, two at once rare.
    let overdue_codes = [
        ReasonCode::PdmpReviewOverdue,
        ReasonCode::UdsOverdue,
        ReasonCode::AgreementExpired,
        ReasonCode::AgreementMissing,
        ReasonCode::PhysicianReviewOverdue,
        ReasonCode::NaloxoneOfferDue,
    ];
    let overdue_items = |d: &Decision| overdue_codes.iter().filter(|code| fires(d, **code)).count();
    let one_overdue = share(&|d| overdue_items(d) >= 1);
    assert!((0.03..=0.08).contains(&one_overdue), "an overdue monitoring item: {one_overdue:.3}");
    assert!(share(&|d| overdue_items(d) >= 2) < 0.005, "two overdue items at once");
    for code in overdue_codes {
        let fired = share(&|d| fires(d, code));
        assert!(fired > 0.0 && fired < 0.02, "{code:?}: {fired:.4}");
    }
    let unexpected = share(&|d| fires(d, ReasonCode::UdsUnexpectedResult));
    assert!((0.01..=0.02).contains(&unexpected), "unexpected drug test: {unexpected:.4}");
    let benzodiazepine = share(&|d| fires(d, ReasonCode::BenzodiazepineUnacknowledged));
    assert!(benzodiazepine > 0.0 && benzodiazepine < 0.01, "unacknowledged benzodiazepine: {benzodiazepine:.4}");
    let high_mme_unreviewed = share(&|d| fires(d, ReasonCode::HighMmeReviewOverdue));
    assert!(high_mme_unreviewed > 0.0 && high_mme_unreviewed < 0.01, "high MME unreviewed: {high_mme_unreviewed:.4}");
    let accumulating = share(&|d| fires(d, ReasonCode::EarlyFillAccumulation));
    assert!(accumulating > 0.0 && accumulating < 0.01, "early fills: {accumulating:.4}");

    // About 1% with an outside prescriber on the PDMP (transferred patients' previous prescriber aside).
    let outside = clinic
        .patients
        .iter()
        .filter(|p| p.case != CaseKind::TransferredPatient)
        .filter(|p| p.pdmp.iter().any(|(_, review)| !review.findings.is_empty()))
        .count() as f64
        / n;
    assert!((0.005..=0.015).contains(&outside), "outside prescriber on the PDMP: {outside:.4}");
    // A transferred patient's previous prescriber is recorded as such, never an outside prescriber.
    for (patient, decision) in decided.iter().filter(|(p, _)| p.case == CaseKind::TransferredPatient) {
        assert!(patient.previous_prescriber.is_some(), "{}: no previous prescriber", patient.external_id);
        assert!(!fires(decision, ReasonCode::PdmpOutsidePrescriber), "{}: {decision:?}", patient.external_id);
    }

    // A few tapers in progress, some of them paused; a handful of new and transferred patients.
    let tapers = clinic.patients.iter().filter(|p| p.taper.is_some()).count() as f64 / n;
    let paused = clinic.patients.iter().filter(|p| p.taper.as_ref().is_some_and(|t| t.paused)).count() as f64 / n;
    assert!(
        (0.03..=0.07).contains(&tapers) && paused > 0.0 && paused < tapers / 2.0,
        "tapers {tapers}, paused {paused}"
    );
    let new = share(&|d| fires(d, ReasonCode::NoFillHistory));
    let transferred = clinic.patients.iter().filter(|p| p.case == CaseKind::TransferredPatient).count() as f64 / n;
    assert!(
        (0.002..=0.01).contains(&new) && (0.002..=0.01).contains(&transferred),
        "new {new}, transferred {transferred}"
    );
}

#[test]
fn every_kind_of_case_occurs_in_a_500_patient_clinic() {
    for seed in [1, 7, 2026, 99_991] {
        let clinic = clinic(500, seed);
        let decided = decisions(&clinic);
        let cases: BTreeSet<CaseKind> = clinic.patients.iter().map(|p| p.case).collect();
        for (kind, _) in CASE_MIX {
            assert!(cases.contains(kind), "seed {seed}: no {kind:?}");
        }
        for code in [
            ReasonCode::HighMmeReviewed,
            ReasonCode::PdmpReviewOverdue,
            ReasonCode::UdsOverdue,
            ReasonCode::AgreementExpired,
            ReasonCode::AgreementMissing,
            ReasonCode::PhysicianReviewOverdue,
            ReasonCode::UdsUnexpectedResult,
            ReasonCode::PdmpOutsidePrescriber,
            ReasonCode::BenzodiazepineUnacknowledged,
            ReasonCode::EarlyFillAccumulation,
            ReasonCode::EarlyRequestSupplyRunsOut,
            ReasonCode::NoFillHistory,
        ] {
            assert!(decided.iter().any(|(_, d)| fires(d, code)), "seed {seed}: nobody with {code:?}");
        }
        assert!(clinic.patients.iter().any(|p| p.taper.as_ref().is_some_and(|t| t.paused)), "seed {seed}: no pause");
        assert!(clinic.patients.iter().any(|p| p.orders.len() > 1), "seed {seed}: no combined regimen");
        assert!(
            clinic.patients.iter().any(|p| p.other_medications.iter().any(|(_, m)| !m.active)),
            "seed {seed}: no stopped benzodiazepine"
        );
    }
}

#[test]
fn patients_fill_on_time_and_each_day_has_its_share() {
    let clinic = clinic(2_000, 2026);
    let n = clinic.patients.len() as f64;
    let mut runs_out: BTreeMap<NaiveDate, usize> = BTreeMap::new();
    for patient in &clinic.patients {
        let Some((_, last)) = patient.fills.last() else {
            assert_eq!(patient.case, CaseKind::NewPatient, "{} has no fill", patient.external_id);
            continue;
        };
        *runs_out.entry(last.filled_on + Duration::days(i64::from(last.days_supply))).or_default() += 1;
        // Every 28 to 30 days, on the day or up to two days late; only the early-fill case is early.
        let mut dates: Vec<NaiveDate> = patient.fills.iter().map(|(_, fill)| fill.filled_on).collect();
        dates.dedup();
        for pair in dates.windows(2) {
            let gap = (pair[1] - pair[0]).num_days();
            let supply = i64::from(last.days_supply);
            if patient.case == CaseKind::EarlyFills {
                assert!(gap < supply, "{}: early filler {gap} days", patient.external_id);
            } else {
                assert!((supply..=supply + 2).contains(&gap), "{}: {gap} days between fills", patient.external_id);
            }
        }
        assert!(matches!(last.days_supply, 28 | 30), "{}: {} days", patient.external_id, last.days_supply);
    }
    // Each of the next 28 days, about 1/28 of the clinic runs out.
    let expected = n / 28.0;
    for day in 0..28 {
        let date = today() + Duration::days(day);
        let count = runs_out.get(&date).copied().unwrap_or(0) as f64;
        assert!(
            (0.9 * expected..=1.1 * expected).contains(&count),
            "{date}: {count} run out, about {expected:.0} expected"
        );
    }
    assert!(runs_out.keys().all(|date| *date >= today() && *date < today() + Duration::days(28)));
}

#[test]
fn drug_tests_follow_the_tier_and_the_drawn_date() {
    let clinic = clinic(2_000, 2026);
    for patient in &clinic.patients {
        let last = patient.uds.iter().map(|(_, r)| r.collected_on).max().expect("every patient has a test");
        let period = match patient.risk_tier {
            RiskTier::Low => 365,
            RiskTier::Moderate => 182,
            RiskTier::High => 120,
        };
        let period = if patient.daily_mme.is_some_and(|m| m >= 90.0) { period.min(91) } else { period };
        match patient.next_uds_due {
            Some(due) => {
                let gap = (due - last).num_days();
                assert!((30..=period).contains(&gap), "{}: drawn {gap} days after the test", patient.external_id);
                assert_eq!(due < clinic.today, patient.overdue_uds, "{}: due {due}", patient.external_id);
            }
            None => assert!(patient.unexpected_uds, "{}: no drawn date", patient.external_id),
        }
    }
}

#[test]
fn products_are_real_rxnorm_rows() {
    let table = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../refill-rules/data/opioid-drugs.csv"))
        .expect("the drug table is in refill-rules/data");
    for product in PRODUCTS {
        let row = table
            .lines()
            .find(|line| line.starts_with(&format!("{},", product.rxcui)))
            .unwrap_or_else(|| panic!("RxCUI {} is not in the drug table", product.rxcui));
        assert!(row.contains(&format!("{},{},", product.name, product.ingredient)), "{row} vs {product:?}");
    }
}

#[test]
fn the_csv_export_imports_without_problems() {
    let clinic = clinic(300, 3);
    let files = clinic.csv_files();
    assert_eq!(files.len(), 13);
    let mut totals = BTreeMap::new();
    for (name, contents) in &files {
        let records = refill_import::parse_csv(name, contents.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        totals.insert(name.clone(), records);
    }
    assert_eq!(totals["patients.csv"].patients.len(), 300);
    assert_eq!(totals["physicians.csv"].physicians.len(), clinic.physicians.len());
    let orders: usize = clinic.patients.iter().map(|p| p.orders.len()).sum();
    assert_eq!(totals["orders.csv"].orders.len(), orders);
    let tapers = clinic.patients.iter().filter(|p| p.taper.is_some()).count();
    assert_eq!(totals["tapers.csv"].tapers.len(), tapers);
    let paused = clinic.patients.iter().filter(|p| p.taper.as_ref().is_some_and(|t| t.paused)).count();
    assert!(paused > 0);
    assert_eq!(
        totals["tapers.csv"].tapers.iter().filter(|t| t.state == refill_rules::TaperState::Paused).count(),
        paused
    );
    let conditions: usize = clinic.patients.iter().map(|p| p.conditions.len()).sum();
    assert_eq!(totals["conditions.csv"].flags.len(), conditions);
    let medications: usize = clinic.patients.iter().map(|p| p.other_medications.len()).sum();
    assert_eq!(totals["other_medications.csv"].other_medications.len(), medications);
    // Transferred patients carry their previous prescriber; some stable patients called in, a few early.
    let previous: Vec<_> = totals["patients.csv"]
        .patients
        .iter()
        .filter_map(|p| p.previous_prescriber.as_ref().map(|prescriber| (p.external_id.clone(), prescriber.0.clone())))
        .collect();
    let transferred: Vec<_> = clinic
        .patients
        .iter()
        .filter(|p| p.case == CaseKind::TransferredPatient)
        .map(|p| (p.external_id.clone(), p.previous_prescriber.clone().expect("a transferred patient's prescriber")))
        .collect();
    assert!(!transferred.is_empty());
    assert_eq!(previous, transferred);
    let requests = &totals["refill_requests.csv"].refill_requests;
    let recorded: usize = clinic.patients.iter().map(|p| p.requests.len()).sum();
    assert_eq!(requests.len(), recorded);
    assert!(requests.iter().all(|r| r.requested_on <= clinic.today && r.channel.as_str() == "staff"));
    assert!(requests.iter().any(|r| r.kind == RequestKind::Routine), "no routine request");
    // Names are synthetic and emails use the reserved example domain.
    assert!(
        totals["patients.csv"].patients.iter().filter_map(|p| p.email.as_deref()).all(|e| e.ends_with("@example.org"))
    );
}
