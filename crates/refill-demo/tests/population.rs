//! The demo clinic looks like a refill clinic: MME spread computed by the real engine, tapers, tiers,
//! a queue every day, real RxNorm codes, and output the importer accepts.

use std::collections::{BTreeMap, HashSet};

use chrono::{Duration, NaiveDate};
use refill_demo::products::{Family, PRODUCTS};
use refill_demo::{DemoClinic, DemoSettings, generate};
use refill_rules::RiskTier;
use refill_rules::mme::{FactorSet, daily_mme};

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

    let tapers = clinic.patients.iter().filter(|p| p.taper.is_some()).count();
    assert!((0.05..=0.10).contains(&share(tapers)), "tapers: {:.3}", share(tapers));
    for tier in [RiskTier::Low, RiskTier::Moderate, RiskTier::High] {
        let count = clinic.patients.iter().filter(|p| p.risk_tier == tier).count();
        assert!(share(count) > 0.15, "{tier:?}: {:.3}", share(count));
    }
    for (name, count) in [
        ("overdue UDS", clinic.patients.iter().filter(|p| p.overdue_uds).count()),
        ("overdue PDMP", clinic.patients.iter().filter(|p| p.overdue_pdmp).count()),
        ("overdue agreement", clinic.patients.iter().filter(|p| p.overdue_agreement).count()),
        ("unexpected UDS", clinic.patients.iter().filter(|p| p.unexpected_uds).count()),
        ("overdue review", clinic.patients.iter().filter(|p| p.overdue_review).count()),
    ] {
        assert!((0.02..=0.2).contains(&share(count)), "{name}: {:.3}", share(count));
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

#[test]
fn every_day_of_the_coming_month_has_a_queue() {
    let clinic = clinic(500, 1);
    let mut runs_out: BTreeMap<NaiveDate, usize> = BTreeMap::new();
    for patient in &clinic.patients {
        let (_, last) = patient.fills.last().expect("every patient has fills");
        *runs_out.entry(last.filled_on + Duration::days(i64::from(last.days_supply))).or_default() += 1;
    }
    for day in 0..28 {
        let date = today() + Duration::days(day);
        assert!(runs_out.get(&date).copied().unwrap_or(0) > 0, "no supply runs out on {date}");
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
    assert_eq!(files.len(), 12);
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
    let conditions: usize = clinic.patients.iter().map(|p| p.conditions.len()).sum();
    assert_eq!(totals["conditions.csv"].flags.len(), conditions);
    let medications: usize = clinic.patients.iter().map(|p| p.other_medications.len()).sum();
    assert_eq!(totals["other_medications.csv"].other_medications.len(), medications);
    // Names are synthetic and emails use the reserved example domain.
    assert!(
        totals["patients.csv"].patients.iter().filter_map(|p| p.email.as_deref()).all(|e| e.ends_with("@example.org"))
    );
}
