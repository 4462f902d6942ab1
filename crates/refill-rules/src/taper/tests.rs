//! Scenario tests for taper plans: the VA worked example, several opioids, pause and resume, refusals,
//! the tail; and property tests of the hard limits over random regimens and presets.

use chrono::{Duration, NaiveDate};

use super::*;
use crate::facts::{Confidentiality, DoseQuantity, DoseUnit, OrderPurpose};

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn order(id: &str, text: &str, value: f64, unit: DoseUnit, doses_per_day: f64) -> MedicationOrder {
    MedicationOrder {
        id: id.to_string(),
        rxcui: None,
        text: Some(text.to_string()),
        dose: Some(DoseQuantity { value, unit }),
        doses_per_day: Some(doses_per_day),
        days_supply: Some(28),
        dispense_quantity: None,
        prescriber: Some(PrescriberId("npi-1".to_string())),
        purpose: OrderPurpose::Pain,
        confidentiality: Confidentiality::Normal,
    }
}

fn morphine_er_90_q8h() -> MedicationOrder {
    order("rx-morphine", "morphine sulfate 30 MG Extended Release Oral Tablet", 90.0, DoseUnit::Milligram, 3.0)
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

fn daily(step: &TaperStep) -> f64 {
    step.planning_mme
}

fn attestation(reason: AttestationReason) -> SafetyAttestation {
    SafetyAttestation {
        physician: PrescriberId("npi-9".to_string()),
        attested_on: date(2026, 1, 2),
        reason,
        rationale: "discussed with the patient".to_string(),
    }
}

fn oxycodone_ir(id: &str, tablets: f64, per_day: f64) -> MedicationOrder {
    order(id, "oxycodone hydrochloride 5 MG Oral Tablet", tablets, DoseUnit::DoseFormUnit, per_day)
}

#[test]
fn the_va_worked_example_with_the_slower_preset() {
    let policy = TaperPolicy::defaults();
    let plan = plan_taper(&request(vec![morphine_er_90_q8h()], "slower"), &policy).unwrap();
    assert!((plan.original_mme - 270.0).abs() < 1e-9);
    let first: Vec<f64> = plan.steps.iter().take(3).map(daily).collect();
    assert_eq!(first, vec![225.0, 180.0, 135.0]);
    assert_eq!(plan.steps[0].lines[0].dose.describe("mg"), "1 x 60 mg + 1 x 15 mg");
    assert_eq!(plan.steps[1].lines[0].dose.describe("mg"), "1 x 60 mg");
    assert_eq!(plan.steps[2].lines[0].dose.describe("mg"), "1 x 30 mg + 1 x 15 mg");
    assert_eq!(plan.steps[0].effective_on, date(2026, 1, 5));
    assert_eq!(plan.steps[1].effective_on, date(2026, 2, 2));
    assert_eq!(plan.steps[0].daily_mme, Some(225.0));
    assert_eq!(plan.steps[0].reduced, "morphine Extended Release Oral Tablet");
    // After 135 the 25% per-step cap, not the 20%-per-28-days rate (54 MME), limits the cut.
    let fourth = &plan.steps[3];
    assert_eq!(fourth.kind, StepKind::DoseReduction);
    assert!(fourth.reduction_mme <= 0.25 * 135.0 + 1e-9);
    assert_eq!(fourth.planning_mme, 105.0, "35 mg three times a day: 30 less, where the rate alone allows 54");
    assert!(matches!(plan.outcome, PlanOutcome::TargetReached { .. }), "{:?}", plan.outcome);
    // Each step has its follow-up before it, and notices at the configured lead days.
    let second = &plan.steps[1];
    assert_eq!(second.follow_up_due, date(2026, 1, 26));
    assert_eq!(second.patient_notice_on, date(2026, 1, 26));
    assert_eq!(second.staff_notice_on, date(2026, 1, 19));
    for pair in plan.follow_ups.windows(2) {
        assert!((pair[1] - pair[0]).num_days() <= policy.max_follow_up_gap_days, "{pair:?}");
    }
}

#[test]
fn the_last_steps_lengthen_the_time_then_the_interval_then_stop_below_once_daily() {
    let policy = TaperPolicy::defaults();
    let plan = plan_taper(&request(vec![morphine_er_90_q8h()], "slower"), &policy).unwrap();
    let first_tail = plan.steps.iter().position(|step| step.kind.is_tail()).expect("a tail");
    assert_eq!(plan.steps[first_tail].kind, StepKind::IntervalExtension);
    // The time between steps doubles (28 -> 56 days) before the dosing interval is lengthened.
    let gap = (plan.steps[first_tail].effective_on - plan.steps[first_tail - 1].effective_on).num_days();
    assert_eq!(gap, 56);
    let per_day: Vec<f64> =
        plan.steps[first_tail..].iter().filter_map(|step| step.lines.first().map(|line| line.doses_per_day)).collect();
    assert!(per_day.windows(2).all(|pair| pair[1] <= pair[0]));
    assert!(per_day.contains(&2.0) && per_day.contains(&1.0));
    let last = plan.steps.last().unwrap();
    assert_eq!(last.kind, StepKind::Stop);
    assert!(last.lines.is_empty());
    assert_eq!(last.daily_mme, Some(0.0));
    let before_last = &plan.steps[plan.steps.len() - 2];
    assert_eq!(before_last.lines[0].doses_per_day, 1.0, "stops only from once daily");
    assert!(plan.steps.iter().all(|step| step.lines.iter().all(|line| line.doses_per_day >= 1.0)));
}

#[test]
fn several_opioids_are_reduced_one_at_a_time_in_the_patients_order() {
    let policy = TaperPolicy::defaults();
    let morphine =
        order("rx-morphine", "morphine sulfate 30 MG Extended Release Oral Tablet", 1.0, DoseUnit::DoseFormUnit, 2.0);
    let oxycodone = oxycodone_ir("rx-oxy", 2.0, 4.0);
    let mut req = request(vec![morphine, oxycodone], "cdc_default");
    req.reduce_first = vec!["rx-oxy".to_string()];
    let plan = plan_taper(&req, &policy).unwrap();
    assert!((plan.original_mme - 120.0).abs() < 1e-9, "60 morphine + 40 mg oxycodone x 1.5");
    let oxy_steps = plan.steps.iter().take_while(|step| step.reduced_order_id == "rx-oxy").count();
    assert!(oxy_steps > 0);
    assert_eq!(plan.steps[oxy_steps - 1].kind, StepKind::Stop, "oxycodone is stopped before morphine moves");
    for step in &plan.steps[..oxy_steps] {
        assert!(step.reduced.starts_with("oxycodone"));
        let morphine_line = step.lines.iter().find(|line| line.ingredient == "morphine").unwrap();
        assert_eq!(morphine_line.daily_amount(), 60.0, "morphine untouched while oxycodone is reduced");
    }
    assert!(plan.steps[oxy_steps..].iter().all(|step| step.reduced.starts_with("morphine")));
    assert!(matches!(plan.outcome, PlanOutcome::TargetReached { .. }), "{:?}", plan.outcome);
}

#[test]
fn pause_and_resume_keep_the_history() {
    let policy = TaperPolicy::defaults();
    let plan = plan_taper(&request(vec![morphine_er_90_q8h()], "cdc_default"), &policy).unwrap();
    let pause_on = plan.steps[2].effective_on - Duration::days(3);
    let paused = pause(&plan, pause_on, PauseReason::Withdrawal, &policy).unwrap();
    assert_eq!(paused.state, TaperState::Paused);
    assert_eq!(paused.steps.len(), 2);
    assert_eq!(paused.superseded.len(), plan.steps.len() - 2);
    assert!(matches!(paused.outcome, PlanOutcome::NotReached { .. }));
    assert_eq!(paused.events.last().unwrap().change, TaperChange::Paused { reason: PauseReason::Withdrawal });
    assert!(paused.flags.is_empty(), "one pause raises no flag");
    assert!(resume(&plan, pause_on, &policy).is_err(), "only a paused plan resumes");

    let resume_on = pause_on + Duration::days(60);
    let resumed = resume(&paused, resume_on, &policy).unwrap();
    assert_eq!(resumed.state, TaperState::Active);
    assert_eq!(resumed.steps[..2], paused.steps[..2]);
    // A full interval after the resume (room for a check-in), never on the day itself.
    assert_eq!(resumed.steps[2].effective_on, resume_on + Duration::days(plan.preset.step_days));
    assert!(resumed.steps[2].follow_up_due > resume_on);
    assert_eq!(resumed.steps[2].number, 3);
    assert_eq!(resumed.steps[2].revision, 2);
    assert!(resumed.steps[2].planning_mme < resumed.steps[1].planning_mme);
    assert_eq!(resumed.events.iter().map(|e| e.change.as_str()).collect::<Vec<_>>(), ["created", "paused", "resumed"]);
    // The dose in force during the pause was the last step taken.
    assert_eq!(dose_in_force(&paused, resume_on)[0].daily_amount(), plan.steps[1].lines[0].daily_amount());

    let paused_again = pause(&resumed, resume_on + Duration::days(40), PauseReason::LifeEvent, &policy).unwrap();
    assert_eq!(paused_again.pauses(), 2);
    assert!(paused_again.flags.iter().any(|flag| flag.message.starts_with(BUPRENORPHINE_FLAG)));
    assert_eq!(paused_again.state, TaperState::Paused, "a flag never acts on the plan");
}

#[test]
fn a_stall_at_a_high_dose_is_flagged_for_the_physician() {
    let policy = TaperPolicy::defaults();
    let plan = plan_taper(&request(vec![morphine_er_90_q8h()], "cdc_default"), &policy).unwrap();
    let paused = pause(&plan, date(2026, 1, 20), PauseReason::PatientRequest, &policy).unwrap();
    assert!(review(&paused, date(2026, 3, 1), &policy).is_empty());
    let flags = review(&paused, date(2026, 4, 10), &policy);
    assert_eq!(flags.len(), 1, "{flags:?}");
    assert!(flags[0].message.contains("paused for 95 days"), "{flags:?}");
    assert!(flags[0].message.starts_with(BUPRENORPHINE_FLAG), "a pause is the patient's limit: {flags:?}");
}

#[test]
fn faster_presets_are_refused_without_an_attestation() {
    let policy = TaperPolicy::defaults();
    for preset in ["faster", "rapid"] {
        let refusal = plan_taper(&request(vec![morphine_er_90_q8h()], preset), &policy).unwrap_err();
        assert_eq!(refusal.code, RefusalCode::AttestationRequired);
        assert!(refusal.message.contains("short prior duration (CDC 2022 weekly scheme)"), "{}", refusal.message);
    }
    let mut req = request(vec![morphine_er_90_q8h()], "faster");
    req.attestation = Some(attestation(AttestationReason::ShortPriorDuration));
    let plan = plan_taper(&req, &policy).unwrap();
    assert_eq!((plan.steps[1].effective_on - plan.steps[0].effective_on).num_days(), 7);
    // Weekly steps: the 14-day staff notice is moved up to the previous step, never before it.
    assert_eq!(plan.steps[1].staff_notice_on, plan.steps[0].effective_on);
    assert_eq!(plan.steps[1].follow_up_due, plan.steps[1].effective_on - Duration::days(3));
    assert_eq!(plan.attestation.as_ref().unwrap().reason.describe(), "short prior duration (CDC 2022 weekly scheme)");
}

#[test]
fn other_refusals_are_values_with_reasons() {
    let policy = TaperPolicy::defaults();
    let unknown = plan_taper(&request(vec![morphine_er_90_q8h()], "turbo"), &policy).unwrap_err();
    assert_eq!(unknown.code, RefusalCode::UnknownPreset);
    let empty = plan_taper(&request(vec![], "slower"), &policy).unwrap_err();
    assert_eq!(empty.code, RefusalCode::EmptyRegimen);
    let mut higher = request(vec![morphine_er_90_q8h()], "slower");
    higher.target = TaperTarget::Mme(300.0);
    assert_eq!(plan_taper(&higher, &policy).unwrap_err().code, RefusalCode::TargetNotBelowCurrent);
    let mut oud = morphine_er_90_q8h();
    oud.purpose = OrderPurpose::OpioidUseDisorder;
    assert_eq!(plan_taper(&request(vec![oud], "slower"), &policy).unwrap_err().code, RefusalCode::NotTaperable);
    let brand_only = order("rx-x", "Kadian", 1.0, DoseUnit::DoseFormUnit, 2.0);
    assert_eq!(
        plan_taper(&request(vec![brand_only], "slower"), &policy).unwrap_err().code,
        RefusalCode::ProductNotIdentified
    );
}

#[test]
fn a_lower_target_stops_once_reached() {
    let policy = TaperPolicy::defaults();
    let mut req = request(vec![morphine_er_90_q8h()], "slower");
    req.target = TaperTarget::Mme(90.0);
    let plan = plan_taper(&req, &policy).unwrap();
    let last = plan.steps.last().unwrap();
    assert!(last.planning_mme <= 90.0);
    assert!(plan.steps[plan.steps.len() - 2].planning_mme > 90.0);
    assert_eq!(plan.outcome, PlanOutcome::TargetReached { on: last.effective_on });
    assert_eq!(state_on(&plan, last.effective_on), TaperState::Completed);
    assert_eq!(state_on(&plan, last.effective_on - Duration::days(1)), TaperState::Active);
}

#[test]
fn a_change_too_large_for_the_rate_waits_as_long_as_the_rate_needs_and_says_so() {
    let policy = TaperPolicy::defaults();
    // 5 mg four times a day = 30 MME: cdc_default allows 3 MME per 28 days; the smallest change (one
    // dose a day fewer, 7.5 MME) is larger, so each such step waits 70 days after the previous one.
    let plan = plan_taper(&request(vec![oxycodone_ir("rx-oxy", 1.0, 4.0)], "cdc_default"), &policy).unwrap();
    assert!(matches!(plan.outcome, PlanOutcome::TargetReached { .. }), "{:?}", plan.outcome);
    for pair in plan.steps.windows(2) {
        let days = pair[1].paced_over_days.expect("every step here is paced");
        assert_eq!(days, 70);
        assert!((pair[1].effective_on - pair[0].effective_on).num_days() >= days);
        assert!(pair[1].note.as_deref().unwrap_or("").contains("waits 70 days"), "{:?}", pair[1].note);
    }
    assert!(plan.flags.is_empty(), "30 MME is not a high dose");
}

#[test]
fn slowing_down_switches_preset_and_keeps_taken_steps() {
    let policy = TaperPolicy::defaults();
    let plan = plan_taper(&request(vec![morphine_er_90_q8h()], "slower"), &policy).unwrap();
    let on = plan.steps[1].effective_on + Duration::days(1);
    let slower = slow_down(&plan, on, "cdc_default", &policy).unwrap();
    assert_eq!(slower.preset_name, "cdc_default");
    assert_eq!(slower.steps[..2], plan.steps[..2]);
    assert!(slower.steps[2].effective_on >= plan.steps[1].effective_on + Duration::days(28));
    assert!(slower.steps[2..].iter().all(|step| step.reduction_mme <= 27.0 + 1e-9));
    assert_eq!(slower.events.last().unwrap().change.as_str(), "slowed_down");
    assert_eq!(slow_down(&slower, on, "slower", &policy).unwrap_err().code, RefusalCode::NotSlower);
}

#[test]
fn a_revision_can_change_target_and_order() {
    let policy = TaperPolicy::defaults();
    let morphine =
        order("rx-morphine", "morphine sulfate 30 MG Extended Release Oral Tablet", 1.0, DoseUnit::DoseFormUnit, 2.0);
    let plan = plan_taper(&request(vec![morphine, oxycodone_ir("rx-oxy", 2.0, 4.0)], "slower"), &policy).unwrap();
    assert!(plan.steps[0].reduced.starts_with("morphine"));
    let revised = revise(
        &plan,
        date(2026, 1, 5),
        TaperRevision {
            reduce_first: vec!["rx-oxy".to_string()],
            target: Some(TaperTarget::Mme(60.0)),
            note: "patient prefers to keep the long-acting".to_string(),
            ..TaperRevision::default()
        },
        &policy,
    )
    .unwrap();
    assert!(revised.steps[0].reduced.starts_with("oxycodone"));
    assert!(revised.steps.last().unwrap().planning_mme <= 60.0);
    assert_eq!(revised.superseded.len(), plan.steps.len());
    assert_eq!(revised.revision, 1);
}

#[test]
fn a_fentanyl_patch_tapers_through_patch_strengths() {
    let policy = TaperPolicy::defaults();
    let patch =
        order("rx-patch", "72 HR fentanyl 0.1 MG/HR Transdermal System", 1.0, DoseUnit::DoseFormUnit, 1.0 / 3.0);
    let plan = plan_taper(&request(vec![patch], "slower"), &policy).unwrap();
    assert!((plan.original_mme - 240.0).abs() < 1e-9);
    let marketed = [12.0, 25.0, 37.5, 50.0, 62.5, 75.0, 87.5, 100.0];
    let mut worn: Vec<f64> = Vec::new();
    for step in &plan.steps {
        for line in &step.lines {
            assert!(line.units().all(|unit| marketed.contains(&unit.strength)), "{}", line.describe());
            let patches: f64 = line.units().map(|unit| unit.count).sum();
            assert!(patches <= 2.0, "never a stack of patches: {}", line.describe());
            worn.push(line.daily_amount());
        }
    }
    assert!(worn.windows(2).all(|pair| pair[1] < pair[0]), "{worn:?}");
    // From 37.5 mcg/hr every marketed patch cuts more than the cap: the physician is asked to choose a
    // conversion; the planner neither stalls silently nor blames the patient.
    match &plan.outcome {
        PlanOutcome::NotReached { reason } => assert!(reason.contains("conversion"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(plan.flags.iter().all(|flag| !flag.message.contains("opioid use disorder")), "{:?}", plan.flags);
}

#[test]
fn taper_in_force_reports_the_step_of_the_day() {
    let policy = TaperPolicy::defaults();
    let plan = plan_taper(&request(vec![morphine_er_90_q8h()], "slower"), &policy).unwrap();
    let before = taper_in_force(&plan, 7, date(2026, 1, 4));
    assert_eq!(before.step_regimen, plan.request.regimen);
    let during = taper_in_force(&plan, 7, date(2026, 2, 10));
    assert_eq!(during.step_started_on, date(2026, 2, 2));
    assert_eq!(during.state, TaperState::Active);
    assert_eq!(crate::mme::daily_mme(&during.step_regimen, FactorSet::Cdc2022).total_daily_mme, Some(180.0));
}

mod properties {
    //! Property tests of the hard limits over random regimens, presets and targets.

    use proptest::prelude::*;

    use super::*;

    const PRODUCTS: [(&str, f64); 10] = [
        ("morphine sulfate 15 MG Extended Release Oral Tablet", 15.0),
        ("oxycodone hydrochloride 5 MG Oral Tablet", 5.0),
        ("hydromorphone hydrochloride 2 MG Oral Tablet", 2.0),
        ("72 HR fentanyl 0.025 MG/HR Transdermal System", 25.0),
        ("acetaminophen 325 MG / hydrocodone bitartrate 10 MG Oral Tablet", 10.0),
        ("acetaminophen 325 MG / oxycodone hydrochloride 5 MG Oral Tablet", 5.0),
        ("12 HR oxycodone hydrochloride 40 MG Extended Release Oral Tablet", 40.0),
        ("12 HR hydrocodone bitartrate 30 MG Extended Release Oral Capsule", 30.0),
        ("acetaminophen 300 MG / codeine phosphate 30 MG Oral Tablet", 30.0),
        ("tapentadol 50 MG Oral Tablet", 50.0),
    ];
    const PRESETS: [&str; 5] = ["cdc_default", "slowest", "slower", "faster", "rapid"];

    fn regimen() -> impl Strategy<Value = Vec<MedicationOrder>> {
        proptest::collection::vec((0..PRODUCTS.len(), 1u32..=3, 1u32..=4), 1..=3).prop_map(|items| {
            items
                .into_iter()
                .enumerate()
                .map(|(index, (product, units, per_day))| {
                    let (text, _) = PRODUCTS[product];
                    let per_day = if text.contains("Transdermal") { 1.0 / 3.0 } else { per_day as f64 };
                    order(&format!("rx-{index}"), text, units as f64, DoseUnit::DoseFormUnit, per_day)
                })
                .collect()
        })
    }

    /// The rate: the reductions in any window ending on the last step stay within the cap, or the last
    /// step is a paced one (the smallest marketed change, larger than one window allows) that comes at
    /// least as long after the previous reduction as the rate needs for it.
    fn check_pace(steps: &[TaperStep], window: i64, cap: f64) -> Result<(), TestCaseError> {
        let step = steps.last().expect("a step");
        match step.paced_over_days {
            None => {
                let in_window: f64 = steps
                    .iter()
                    .filter(|s| (step.effective_on - s.effective_on).num_days() < window)
                    .map(|s| s.reduction_mme)
                    .sum();
                prop_assert!(in_window <= cap + 1e-6, "window ending {} holds {in_window} > {cap}", step.effective_on);
            }
            Some(days) => {
                prop_assert!(step.reduction_mme <= cap * days as f64 / window as f64 + 1e-6);
                if let Some(previous) = steps.iter().rev().nth(1) {
                    prop_assert!((step.effective_on - previous.effective_on).num_days() >= days);
                }
            }
        }
        Ok(())
    }

    /// The hard limits every plan must keep, checked step by step.
    fn check_limits(plan: &TaperPlan, policy: &TaperPolicy) -> Result<(), TestCaseError> {
        let fraction = plan.preset.max_step_fraction.unwrap_or(policy.max_step_fraction);
        let mut previous_total = plan.original_mme;
        let mut previous_on: Option<NaiveDate> = None;
        for (index, step) in plan.steps.iter().enumerate() {
            prop_assert!(step.planning_mme <= previous_total + 1e-6, "step {} increases", step.number);
            prop_assert_eq!(step.number, index + 1);
            if let Some(previous) = previous_on {
                prop_assert!(step.effective_on > previous, "steps out of order");
            }
            if step.kind == StepKind::DoseReduction {
                prop_assert!(step.reduction_mme <= fraction * previous_total + 1e-6);
            }
            // Every preset that was in force must hold for the windows ending on this step: the
            // strictest check is with the preset of the revision that scheduled it.
            let window = plan.preset.window_days.max(1);
            let cap = plan.preset.rate_fraction * plan.original_mme;
            if step.revision == plan.revision {
                check_pace(&plan.steps[..=index], window, cap)?;
            }
            previous_total = step.planning_mme;
            previous_on = Some(step.effective_on);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn pauses_resumes_and_slow_downs_keep_the_limits(
            regimen in regimen(),
            pause_after in 0usize..6,
            paused_days in 1i64..120,
            slow in any::<bool>(),
        ) {
            let policy = TaperPolicy::defaults();
            let plan = match plan_taper(&request(regimen, "slower"), &policy) {
                Ok(plan) => plan,
                Err(refusal) if refusal.code == RefusalCode::AcetaminophenLimit => return Ok(()),
                Err(refusal) => return Err(TestCaseError::fail(refusal.to_string())),
            };
            check_limits(&plan, &policy)?;
            let Some(step) = plan.steps.get(pause_after) else { return Ok(()) };
            let pause_on = step.effective_on + Duration::days(1);
            let paused = pause(&plan, pause_on, PauseReason::Withdrawal, &policy).map_err(|r| TestCaseError::fail(r.to_string()))?;
            prop_assert_eq!(paused.state, TaperState::Paused);
            prop_assert!(paused.steps.iter().all(|s| s.effective_on < pause_on));
            prop_assert_eq!(paused.steps.len() + paused.superseded.len(), plan.steps.len());
            let resumed = resume(&paused, pause_on + Duration::days(paused_days), &policy)
                .map_err(|r| TestCaseError::fail(r.to_string()))?;
            check_limits(&resumed, &policy)?;
            prop_assert_eq!(&resumed.steps[..paused.steps.len()], &paused.steps[..]);
            if slow && let Some(later) = resumed.steps.get(paused.steps.len()) {
                let slowed = slow_down(&resumed, later.effective_on + Duration::days(1), "cdc_default", &policy)
                    .map_err(|r| TestCaseError::fail(r.to_string()))?;
                check_limits(&slowed, &policy)?;
                prop_assert_eq!(slowed.events.len(), 4);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn plans_respect_the_hard_limits(
            regimen in regimen(),
            preset in 0..PRESETS.len(),
            target_fraction in prop_oneof![Just(0.0), 0.2f64..0.9],
            splitting in any::<bool>(),
        ) {
            let mut policy = TaperPolicy::defaults();
            if splitting {
                policy.splittable_dose_forms = vec!["Oral Tablet".to_string()];
            }
            let mut req = request(regimen, PRESETS[preset]);
            req.attestation = Some(attestation(AttestationReason::LifeThreateningIssue));
            let planned = match plan_taper(&TaperRequest { target: TaperTarget::Zero, ..req.clone() }, &policy) {
                Ok(plan) => plan,
                // Three generated combination orders can hold more than 4 g acetaminophen a day: the
                // planner refuses that regimen, it never plans from it.
                Err(refusal) if refusal.code == RefusalCode::AcetaminophenLimit => {
                    prop_assert!(refusal.message.contains("above the"), "{}", refusal.message);
                    return Ok(());
                }
                Err(refusal) => return Err(TestCaseError::fail(format!("refused: {refusal}"))),
            };
            let original = planned.original_mme;
            if target_fraction > 0.0 {
                req.target = TaperTarget::Mme(original * target_fraction);
            }
            let plan = plan_taper(&req, &policy).map_err(|r| TestCaseError::fail(r.to_string()))?;
            let preset = &plan.preset;
            let fraction = preset.max_step_fraction.unwrap_or(policy.max_step_fraction);
            let cap = preset.rate_fraction * original;
            let mut previous_total = original;
            let mut previous_lines = plan.original_lines.clone();
            for (index, step) in plan.steps.iter().enumerate() {
                // Monotone: the total never rises, no line grows, no line appears.
                prop_assert!(step.planning_mme <= previous_total + 1e-6);
                for line in &step.lines {
                    let before = previous_lines.iter().find(|l| l.order_id == line.order_id);
                    prop_assert!(before.is_some(), "a line appeared");
                    prop_assert!(line.daily_amount() <= before.unwrap().daily_amount() + 1e-9);
                    prop_assert!(line.doses_per_day >= 1.0 || line.transdermal);
                    // Only dispensable strengths, halves only where allowed.
                    for unit in line.units() {
                        prop_assert!(line.strengths.iter().any(|s| (s - unit.strength).abs() < 1e-9));
                        let whole = unit.count.fract() == 0.0;
                        prop_assert!(whole || (line.splittable && (unit.count * 2.0).fract() == 0.0));
                    }
                }
                prop_assert!(step.reduction_mme > 0.0);
                // The per-step fraction holds for every dose step.
                if step.kind == StepKind::DoseReduction {
                    prop_assert!(step.reduction_mme <= fraction * previous_total + 1e-6,
                        "step {} cuts {} of {}", step.number, step.reduction_mme, previous_total);
                }
                // The rate holds in every window of window_days consecutive days (or on average for a
                // paced step).
                check_pace(&plan.steps[..=index], preset.window_days, cap)?;
                // Product identity: every unit is a formulary product of the line's own make-up, so no
                // step introduces a co-ingredient or changes its strength, release or route.
                for line in &step.lines {
                    let original = plan.original_lines.iter().find(|l| l.order_id == line.order_id).unwrap();
                    prop_assert_eq!(&line.make_up, &original.make_up);
                    prop_assert_eq!(&line.co_ingredients, &original.co_ingredients);
                    for unit in line.units() {
                        let product = policy.formulary.products.iter().find(|p| {
                            p.make_up() == line.make_up && (p.strength - unit.strength).abs() < 1e-9
                        });
                        prop_assert!(product.is_some(), "{} {} is not in the formulary", line.label(), unit.strength);
                    }
                }
                for product in step.products() {
                    let listed = policy.formulary.products.iter().find(|p| p.name == product.name);
                    prop_assert!(listed.is_some(), "{} is not a formulary product", product.name);
                    prop_assert!(listed.unwrap().acetaminophen_mg() <= 325.0);
                }
                // Acetaminophen within 4 g a day at every step.
                prop_assert!(step.acetaminophen_mg_per_day <= policy.acetaminophen_max_mg_per_day + 1e-6);

                prop_assert!(step.daily_mme.is_some());
                prop_assert!(step.follow_up_due <= step.effective_on);
                previous_total = step.planning_mme;
                previous_lines = step.lines.clone();
            }
            match &plan.outcome {
                PlanOutcome::TargetReached { .. } => prop_assert!(previous_total <= plan.target.mme() + 1e-6),
                PlanOutcome::NotReached { reason } => prop_assert!(!reason.is_empty()),
            }
        }
    }
}
