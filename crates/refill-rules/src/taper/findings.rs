//! One test per finding of the clinical review of the planner (issue 13): the products a step orders
//! keep the ordered make-up and come from the formulary, acetaminophen stays within its limits, and
//! the cases that used to stall or blame the patient now say who decides.

use chrono::NaiveDate;

use super::*;
use crate::facts::{Confidentiality, DoseQuantity, DoseUnit, OrderPurpose};

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn order(id: &str, text: &str, units: f64, doses_per_day: f64) -> MedicationOrder {
    MedicationOrder {
        id: id.to_string(),
        rxcui: None,
        text: Some(text.to_string()),
        dose: Some(DoseQuantity { value: units, unit: DoseUnit::DoseFormUnit }),
        doses_per_day: Some(doses_per_day),
        days_supply: Some(28),
        dispense_quantity: None,
        prescriber: Some(PrescriberId("npi-1".to_string())),
        purpose: OrderPurpose::Pain,
        confidentiality: Confidentiality::Normal,
    }
}

fn request(regimen: Vec<MedicationOrder>, preset: &str) -> TaperRequest {
    TaperRequest {
        regimen,
        reduce_first: Vec::new(),
        preset: Some(preset.to_string()),
        target: TaperTarget::Zero,
        start_on: date(2026, 1, 5),
        attestation: None,
        factor_set: FactorSet::Cdc2022,
        added_products: Vec::new(),
    }
}

/// Every product name any step orders.
fn ordered_names(plan: &TaperPlan) -> Vec<String> {
    plan.steps.iter().flat_map(|step| step.products()).map(|product| product.name).collect()
}

const HYDROCODONE_APAP_10: &str = "acetaminophen 325 MG / hydrocodone bitartrate 10 MG Oral Tablet";

#[test]
fn hydrocodone_acetaminophen_steps_keep_325_mg_and_stay_under_4_g() {
    let policy = TaperPolicy::defaults();
    let plan = plan_taper(&request(vec![order("rx-h", HYDROCODONE_APAP_10, 2.0, 4.0)], "cdc_default"), &policy)
        .expect("a plan");
    assert!(!plan.steps.is_empty());
    for name in ordered_names(&plan) {
        assert!(name.starts_with("acetaminophen 325 MG / hydrocodone bitartrate"), "{name}");
    }
    let first = &plan.steps[0];
    assert!(first.acetaminophen_mg_per_day <= 2600.0, "{}", first.acetaminophen_mg_per_day);
    for step in &plan.steps {
        assert!(step.acetaminophen_mg_per_day <= 4000.0);
        for product in step.products() {
            assert!(product.strength.ends_with("acetaminophen 325 mg"), "{}", product.strength);
        }
    }
}

#[test]
fn hydrocodone_er_capsules_never_become_a_cough_medicine() {
    let policy = TaperPolicy::defaults();
    let plan = plan_taper(
        &request(
            vec![order("rx-h", "12 HR hydrocodone bitartrate 30 MG Extended Release Oral Capsule", 1.0, 2.0)],
            "slower",
        ),
        &policy,
    )
    .expect("a plan");
    assert!(!plan.steps.is_empty());
    for name in ordered_names(&plan) {
        assert!(!name.contains("chlorpheniramine"), "{name}");
        assert!(name.contains("hydrocodone bitartrate") && name.ends_with("Extended Release Oral Capsule"), "{name}");
    }
}

#[test]
fn oxycodone_er_never_becomes_an_acetaminophen_combination_nor_160_mg() {
    let policy = TaperPolicy::defaults();
    let plan = plan_taper(
        &request(
            vec![order("rx-o", "12 HR oxycodone hydrochloride 80 MG Extended Release Oral Tablet", 2.0, 2.0)],
            "slower",
        ),
        &policy,
    )
    .expect("a plan");
    for name in ordered_names(&plan) {
        assert!(!name.contains("acetaminophen"), "{name}");
        assert!(!name.contains(" 160 MG"), "{name}");
        assert!(name.ends_with("Extended Release Oral Tablet"), "{name}");
    }
}

#[test]
fn a_co_ingredient_read_from_a_name_starting_with_a_digit_is_not_dropped() {
    // "12 HR chlorpheniramine ... / hydrocodone ..." used to lose its co-ingredient.
    let product = crate::drug::DrugTable::embedded().by_rxcui("857512").expect("in the table");
    assert_eq!(product.co_ingredients.len(), 1);
    assert_eq!(product.co_ingredients[0].name, "chlorpheniramine polistirex");
    // Ordered, it is a cough medicine the formulary does not hold: refused, never swapped.
    let refused = plan_taper(
        &request(
            vec![order(
                "rx-c",
                "12 HR chlorpheniramine polistirex 8 MG / hydrocodone polistirex 10 MG Extended Release Oral Capsule",
                1.0,
                2.0,
            )],
            "slower",
        ),
        &TaperPolicy::defaults(),
    )
    .unwrap_err();
    assert_eq!(refused.code, RefusalCode::NotInFormulary, "{refused}");
}

#[test]
fn steps_use_only_marketed_strengths() {
    let policy = TaperPolicy::defaults();
    let cases = [
        ("12 HR morphine sulfate 15 MG Extended Release Oral Tablet", 1.0, 2.0, " 5 MG"),
        ("hydromorphone hydrochloride 4 MG Oral Tablet", 1.0, 4.0, " 1 MG"),
        ("hydromorphone hydrochloride 4 MG Oral Tablet", 1.0, 4.0, " 3 MG"),
    ];
    for (text, units, per_day, absent) in cases {
        let plan = plan_taper(&request(vec![order("rx", text, units, per_day)], "slower"), &policy).expect(text);
        for name in ordered_names(&plan) {
            assert!(!name.contains(absent), "{text}: {name}");
            assert!(policy.formulary.products.iter().any(|p| p.name == name), "{name}");
        }
    }
}

#[test]
fn acetaminophen_above_325_mg_per_unit_is_refused_not_swapped() {
    let refused = plan_taper(
        &request(
            vec![order("rx", "acetaminophen 750 MG / hydrocodone bitartrate 10 MG Oral Tablet", 1.0, 4.0)],
            "slower",
        ),
        &TaperPolicy::defaults(),
    )
    .unwrap_err();
    assert_eq!(refused.code, RefusalCode::AcetaminophenLimit, "{refused}");
    assert!(refused.message.contains("750 mg acetaminophen per unit"), "{refused}");
}

#[test]
fn a_physician_may_add_a_product_for_one_plan() {
    let policy = TaperPolicy::defaults();
    let ten_300 = "acetaminophen 300 MG / hydrocodone bitartrate 10 MG Oral Tablet";
    let mut req = request(vec![order("rx", ten_300, 1.0, 4.0)], "slower");
    let refused = plan_taper(&req, &policy).unwrap_err();
    assert_eq!(refused.code, RefusalCode::NotInFormulary);
    assert!(refused.message.contains("may add a product"), "{refused}");
    let added = |strength: f64, name: &str| crate::formulary::FormularyProduct {
        name: name.to_string(),
        rxcui: None,
        ingredient: "hydrocodone".to_string(),
        strength,
        unit: crate::formulary::FormularyUnit::Mg,
        dose_form: "Oral Tablet".to_string(),
        co_ingredients: vec![crate::formulary::FormularyCoIngredient {
            name: "acetaminophen".to_string(),
            strength: 300.0,
        }],
        source: "added by dr-1 for this plan: the patient's pharmacy stocks it".to_string(),
    };
    req.added_products = vec![
        added(10.0, ten_300),
        added(7.5, "acetaminophen 300 MG / hydrocodone bitartrate 7.5 MG Oral Tablet"),
        added(5.0, "acetaminophen 300 MG / hydrocodone bitartrate 5 MG Oral Tablet"),
    ];
    let plan = plan_taper(&req, &policy).expect("planned with the added products");
    assert!(ordered_names(&plan).iter().all(|name| name.starts_with("acetaminophen 300 MG / hydrocodone")));
}

#[test]
fn fentanyl_50_steps_through_marketed_patches_then_asks_the_physician() {
    let policy = TaperPolicy::defaults();
    let plan = plan_taper(
        &request(vec![order("rx-f", "72 HR fentanyl 0.05 MG/HR Transdermal System", 1.0, 1.0 / 3.0)], "cdc_default"),
        &policy,
    )
    .expect("a plan");
    assert!(!plan.steps.is_empty(), "no stall at 50 mcg/hr");
    for step in &plan.steps {
        for line in &step.lines {
            assert!(line.units().map(|unit| unit.count).sum::<f64>() <= 2.0, "{}", line.describe());
        }
    }
    let PlanOutcome::NotReached { reason } = &plan.outcome else { panic!("{:?}", plan.outcome) };
    assert!(reason.contains("conversion"), "{reason}");
    assert!(plan.flags.iter().all(|flag| !flag.message.contains("opioid use disorder")), "{:?}", plan.flags);
}

#[test]
fn methadone_needs_its_own_preset_and_carries_a_physician_prompt() {
    let policy = TaperPolicy::defaults();
    let methadone = order("rx-m", "methadone hydrochloride 10 MG Oral Tablet", 1.0, 3.0);
    let refused = plan_taper(&request(vec![methadone.clone()], "cdc_default"), &policy).unwrap_err();
    assert_eq!(refused.code, RefusalCode::MethadonePreset);
    let plan = plan_taper(&request(vec![methadone], "methadone"), &policy).expect("the physician chose the preset");
    assert!(!plan.steps.is_empty(), "10 mg three times a day yields steps");
    assert!(plan.flags.iter().any(|flag| flag.message.starts_with("methadone")), "{:?}", plan.flags);
    assert!(plan.flags.iter().all(|flag| !flag.message.contains("opioid use disorder")), "{:?}", plan.flags);
    // Slower than the default: the first cut waits at least as long as the preset's rate needs.
    if let [first, second, ..] = plan.steps.as_slice() {
        assert!((second.effective_on - first.effective_on).num_days() >= 28);
    }
}

#[test]
fn the_rapid_preset_needs_a_life_threatening_reason() {
    let policy = TaperPolicy::defaults();
    let mut req = request(vec![order("rx", "oxycodone hydrochloride 10 MG Oral Tablet", 1.0, 4.0)], "rapid");
    let attestation = |reason| SafetyAttestation {
        physician: PrescriberId("npi-9".to_string()),
        attested_on: date(2026, 1, 2),
        reason,
        rationale: "discussed".to_string(),
    };
    req.attestation = Some(attestation(AttestationReason::ShortPriorDuration));
    let refused = plan_taper(&req, &policy).unwrap_err();
    assert_eq!(refused.code, RefusalCode::AttestationRequired);
    assert!(refused.message.contains("life-threatening"), "{refused}");
    req.attestation = Some(attestation(AttestationReason::LifeThreateningIssue));
    assert!(plan_taper(&req, &policy).is_ok());
    // The weekly scheme still accepts a short prior duration.
    req.preset = Some("faster".to_string());
    req.attestation = Some(attestation(AttestationReason::ShortPriorDuration));
    assert!(plan_taper(&req, &policy).is_ok());
}

#[test]
fn a_step_keeps_the_tablets_the_patient_has_where_it_can() {
    let policy = TaperPolicy::defaults();
    // 15 mg + 5 mg four times a day: every dose down to 10 mg can be made from 15 and 5 mg tablets.
    let plan = plan_taper(
        &request(
            vec![
                order("rx-15", "oxycodone hydrochloride 15 MG Oral Tablet", 1.0, 4.0),
                order("rx-5", "oxycodone hydrochloride 5 MG Oral Tablet", 1.0, 4.0),
            ],
            "cdc_default",
        ),
        &policy,
    )
    .expect("a plan");
    let mut held: Vec<i64> = vec![15_000, 5_000];
    for step in &plan.steps {
        let Some(line) = step.lines.first() else { break };
        let used: Vec<i64> = line.units().map(|unit| units::amount_key(unit.strength)).collect();
        let makeable_from_held = line.administrations().iter().all(|amount| {
            units::dispensable_doses(&held.iter().map(|k| *k as f64 / 1000.0).collect::<Vec<_>>(), false, 4)
                .contains_key(&units::amount_key(*amount))
        });
        if makeable_from_held {
            assert!(
                used.iter().all(|key| held.contains(key)),
                "step {} changed tablets: {}",
                step.number,
                line.describe()
            );
        }
        held = used;
        held.sort();
        held.dedup();
    }
}

#[test]
fn the_preview_shows_exact_products_with_check_in_dates() {
    let policy = TaperPolicy::defaults();
    let plan = plan_taper(&request(vec![order("rx-h", HYDROCODONE_APAP_10, 2.0, 4.0)], "cdc_default"), &policy)
        .expect("a plan");
    let step = &plan.steps[0];
    let products = step.products();
    assert!(!products.is_empty());
    for product in &products {
        assert!(product.name.contains("hydrocodone bitartrate") && product.name.contains("acetaminophen 325 MG"));
        assert!(product.units_per_dose > 0.0 && product.doses_per_day > 0.0);
    }
    assert!(step.follow_up_due <= step.effective_on);
    assert!(step.daily_mme.is_some());
}
