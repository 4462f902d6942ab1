//! The planner: from a regimen to dispensable, rate-limited steps. `plan_taper` builds a new plan;
//! `schedule` continues one from any regimen and reduction history (used again by pause/resume and
//! revisions).

use std::collections::{BTreeMap, HashMap};

use chrono::{Duration, NaiveDate};

use super::units::{UnitDose, amount_key, dispensable_doses, trim_number};
use super::{
    AttestationReason, PLANNER_LIMIT_FLAG, PhysicianFlag, PlanOutcome, RefusalCode, SafetyAttestation, StepKind,
    TaperChange, TaperEvent, TaperLine, TaperPlan, TaperPolicy, TaperPreset, TaperRefusal, TaperRequest, TaperStep,
    TaperTarget,
};
use crate::drug::{Acting, DrugTable, StrengthUnit};
use crate::facts::{DoseQuantity, DoseUnit, MedicationOrder, OrderPurpose, TaperState};
use crate::formulary::{Formulary, FormularyCoIngredient, MakeUp};
use crate::mme::{FactorSet, daily_mme};

/// Tolerance for comparing MME sums built from decimal strengths.
const EPSILON: f64 = 1e-6;

/// Build a plan from a request. Refuses (as a value) a fast preset without attestation, an unknown
/// preset, a regimen it cannot measure or dispense, and a target that is not below the current dose.
pub fn plan_taper(request: &TaperRequest, policy: &TaperPolicy) -> Result<TaperPlan, TaperRefusal> {
    let problems = policy.problems();
    if !problems.is_empty() {
        return Err(TaperRefusal::new(RefusalCode::InvalidPolicy, problems.join("; ")));
    }
    let (preset_name, preset) = choose_preset(request.preset.as_deref(), policy)?;
    check_attestation(&preset_name, preset, request.attestation.as_ref())?;
    let formulary = policy.formulary.with_added(&request.added_products);
    let problems = formulary.problems();
    if !problems.is_empty() {
        return Err(TaperRefusal::new(RefusalCode::InvalidRequest, problems.join("; ")));
    }
    let lines = lines_from_regimen(&request.regimen, &request.reduce_first, request.factor_set, policy, &formulary)?;
    check_methadone(&lines, &preset_name, policy)?;
    check_acetaminophen(&lines, policy)?;
    let original_mme: f64 = lines.iter().map(TaperLine::planning_mme).sum();
    check_target(request.target, original_mme)?;
    let original_daily_mme = daily_mme(&request.regimen, request.factor_set).total_daily_mme;

    let (steps, outcome) = schedule(Schedule {
        lines: lines.clone(),
        original_mme,
        preset,
        policy,
        target: request.target,
        first_on: request.start_on,
        history: Vec::new(),
        first_number: 1,
        revision: 0,
        tail: false,
        factor_set: request.factor_set,
    });
    let mut plan = TaperPlan {
        request: request.clone(),
        preset_name: preset_name.clone(),
        preset: preset.clone(),
        attestation: request.attestation.clone(),
        target: request.target,
        original_lines: lines,
        original_mme,
        original_daily_mme,
        steps,
        outcome,
        state: TaperState::Active,
        revision: 0,
        events: vec![TaperEvent {
            on: request.start_on,
            revision: 0,
            change: TaperChange::Created { preset: preset_name },
        }],
        superseded: Vec::new(),
        follow_ups: Vec::new(),
        flags: Vec::new(),
    };
    finish(&mut plan, policy, request.start_on);
    if plan.original_lines.iter().any(|line| line.ingredient == "methadone") {
        raise_flag(&mut plan, request.start_on, METHADONE_FLAG.to_string());
    }
    Ok(plan)
}

/// The physician prompt every methadone plan carries: the planner only proposes its steps.
pub const METHADONE_FLAG: &str = "methadone: long and variable half-life; the physician checks each step (QTc, \
     interactions, sedation) and may slow further; this plan is a proposal, never applied without a check-in";

/// Methadone is never planned at the default pace: the physician chooses the policy's methadone preset.
fn check_methadone(lines: &[TaperLine], preset_name: &str, policy: &TaperPolicy) -> Result<(), TaperRefusal> {
    if lines.iter().any(|line| line.ingredient == "methadone") && preset_name != policy.methadone_preset {
        return Err(TaperRefusal::new(
            RefusalCode::MethadonePreset,
            format!(
                "methadone is tapered only at its own slower pace: the physician chooses the {:?} preset for this plan \
                 (no plan is made automatically)",
                policy.methadone_preset
            ),
        ));
    }
    Ok(())
}

/// The regimen itself within the acetaminophen limits: per unit (every line's product) and per day.
fn check_acetaminophen(lines: &[TaperLine], policy: &TaperPolicy) -> Result<(), TaperRefusal> {
    for line in lines {
        if line.acetaminophen_per_unit() > policy.acetaminophen_max_mg_per_unit + EPSILON {
            return Err(TaperRefusal::new(
                RefusalCode::AcetaminophenLimit,
                format!(
                    "order {}: {} holds {} mg acetaminophen per unit, above the {} mg limit; the physician changes the \
                     product before a taper",
                    line.order_id,
                    line.ordered_name,
                    trim_number(line.acetaminophen_per_unit()),
                    trim_number(policy.acetaminophen_max_mg_per_unit)
                ),
            ));
        }
    }
    let daily = acetaminophen_per_day(lines);
    if daily > policy.acetaminophen_max_mg_per_day + EPSILON {
        return Err(TaperRefusal::new(
            RefusalCode::AcetaminophenLimit,
            format!(
                "the regimen holds {} mg acetaminophen a day, above the {} mg limit; the physician changes it before a taper",
                trim_number(daily),
                trim_number(policy.acetaminophen_max_mg_per_day)
            ),
        ));
    }
    Ok(())
}

/// Acetaminophen a day over every line, in mg.
pub(super) fn acetaminophen_per_day(lines: &[TaperLine]) -> f64 {
    lines.iter().map(TaperLine::acetaminophen_per_day).sum()
}

/// The preset named (or the default) with its name.
pub(super) fn choose_preset<'a>(
    name: Option<&str>,
    policy: &'a TaperPolicy,
) -> Result<(String, &'a TaperPreset), TaperRefusal> {
    let name = name.unwrap_or(&policy.default_preset).to_string();
    match policy.preset(&name) {
        Some(preset) => Ok((name, preset)),
        None => Err(TaperRefusal::new(
            RefusalCode::UnknownPreset,
            format!(
                "unknown taper preset {name:?}; the policy has {}",
                policy.presets.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// Faster presets need a physician safety attestation with a reason.
pub(super) fn check_attestation(
    name: &str,
    preset: &TaperPreset,
    attestation: Option<&SafetyAttestation>,
) -> Result<(), TaperRefusal> {
    if !preset.requires_attestation {
        return Ok(());
    }
    let speed = format!(
        "{}% of the original daily dose per {} days",
        trim_number(preset.rate_fraction * 100.0),
        preset.window_days
    );
    match attestation {
        None => Err(TaperRefusal::new(
            RefusalCode::AttestationRequired,
            format!(
                "the {name} preset ({speed}) needs a physician safety attestation with a reason, such as \
                 \"short prior duration (CDC 2022 weekly scheme)\" or \"life-threatening issue\"; none was given, \
                 so no plan was made"
            ),
        )),
        Some(attestation)
            if attestation.reason.describe().trim().is_empty() || attestation.physician.0.trim().is_empty() =>
        {
            Err(TaperRefusal::new(
                RefusalCode::AttestationRequired,
                format!("the {name} preset needs an attestation that names the physician and the reason"),
            ))
        }
        // A rapid taper is for a life-threatening situation (CDC 2022 Rec 5); a short prior duration
        // alone allows the weekly scheme, not a daily one.
        Some(attestation)
            if preset.requires_life_threatening_reason
                && attestation.reason != AttestationReason::LifeThreateningIssue =>
        {
            Err(TaperRefusal::new(
                RefusalCode::AttestationRequired,
                format!(
                    "the {name} preset ({speed}) is for a life-threatening situation such as warning signs of overdose; \
                     the attestation gives \"{}\", which does not fit a rapid taper, so no plan was made",
                    attestation.reason.describe()
                ),
            ))
        }
        Some(_) => Ok(()),
    }
}

pub(super) fn check_target(target: TaperTarget, current_mme: f64) -> Result<(), TaperRefusal> {
    if let TaperTarget::Mme(value) = target {
        if !value.is_finite() || value < 0.0 {
            return Err(TaperRefusal::new(
                RefusalCode::InvalidRequest,
                format!("target MME {value} is not a number >= 0"),
            ));
        }
        if value >= current_mme - EPSILON {
            return Err(TaperRefusal::new(
                RefusalCode::TargetNotBelowCurrent,
                format!(
                    "target {} MME/day is not below the current {} MME/day: a taper never increases or keeps the dose",
                    trim_number(value),
                    trim_number(current_mme)
                ),
            ));
        }
    }
    Ok(())
}

/// Turn the orders into planning lines in the patient's chosen order, merging orders of the same
/// product line taken on the same schedule (a 60 mg and a 15 mg tablet taken together).
pub(super) fn lines_from_regimen(
    regimen: &[MedicationOrder],
    reduce_first: &[String],
    factor_set: FactorSet,
    policy: &TaperPolicy,
    formulary: &Formulary,
) -> Result<Vec<TaperLine>, TaperRefusal> {
    if regimen.is_empty() {
        return Err(TaperRefusal::new(RefusalCode::EmptyRegimen, "the regimen has no opioid orders"));
    }
    let drugs = DrugTable::embedded();
    let mut lines: Vec<TaperLine> = Vec::new();
    for order in regimen {
        let line = line_from_order(order, drugs, factor_set, policy, formulary)?;
        let same_line = lines.iter_mut().find(|existing| {
            existing.make_up == line.make_up && amount_key(existing.doses_per_day) == amount_key(line.doses_per_day)
        });
        match same_line {
            Some(existing) => {
                // The patient's own tablets together (15 mg + 5 mg stays 15 + 5, not one 20 mg).
                for unit in line.dose.units {
                    match existing.dose.units.iter_mut().find(|u| amount_key(u.strength) == amount_key(unit.strength)) {
                        Some(same) => same.count += unit.count,
                        None => existing.dose.units.push(unit),
                    }
                }
                existing.dose.units.sort_by(|a, b| b.strength.total_cmp(&a.strength));
                existing.order_id = format!("{}+{}", existing.order_id, line.order_id);
            }
            None => lines.push(line),
        }
    }
    let mut ordered = Vec::new();
    for id in reduce_first {
        let position = lines.iter().position(|line| line.order_id.split('+').any(|part| part == id));
        match position {
            Some(position) => ordered.push(lines.remove(position)),
            None if ordered.iter().any(|line: &TaperLine| line.order_id.split('+').any(|part| part == id)) => {}
            None => {
                return Err(TaperRefusal::new(
                    RefusalCode::InvalidRequest,
                    format!("reduce_first names order {id:?}, which is not in the regimen"),
                ));
            }
        }
    }
    ordered.extend(lines);
    Ok(ordered)
}

fn line_from_order(
    order: &MedicationOrder,
    drugs: &DrugTable,
    factor_set: FactorSet,
    policy: &TaperPolicy,
    formulary: &Formulary,
) -> Result<TaperLine, TaperRefusal> {
    let refuse = |code, message: String| TaperRefusal::new(code, format!("order {}: {message}", order.id));
    if order.purpose == OrderPurpose::OpioidUseDisorder {
        return Err(refuse(
            RefusalCode::NotTaperable,
            "treats opioid use disorder; this planner writes pain-regimen tapers only".to_string(),
        ));
    }
    let product = drugs.identify(order).map_err(|why| refuse(RefusalCode::ProductNotIdentified, why.describe()))?;
    let ingredient = product.ingredient().to_string();
    if ingredient == "buprenorphine" {
        return Err(refuse(
            RefusalCode::NotTaperable,
            "buprenorphine is not measured in MME, so the planner cannot rate-limit its taper".to_string(),
        ));
    }
    let Some((strength, unit)) = product.strength_of(&ingredient) else {
        return Err(refuse(RefusalCode::ProductNotIdentified, format!("no strength for {ingredient}")));
    };
    let (unit_label, transdermal, clinical_strength) = match unit {
        StrengthUnit::Mg => ("mg", false, strength),
        StrengthUnit::MgPerHr => ("mcg/hr", true, strength * 1000.0),
        StrengthUnit::MgPerMl | StrengthUnit::MgPerActuation => {
            return Err(refuse(
                RefusalCode::NotTaperable,
                format!("{} doses are measured, not counted; the physician writes these steps", product.dose_form),
            ));
        }
    };
    let Some(make_up) = MakeUp::of_product(&product) else {
        return Err(refuse(
            RefusalCode::NotTaperable,
            format!("{}: a co-ingredient is not counted per unit; the physician writes these steps", product.name),
        ));
    };
    let Some(dose) = &order.dose else {
        return Err(refuse(RefusalCode::InvalidRequest, "no dose".to_string()));
    };
    let amount = match (&dose.unit, transdermal) {
        (DoseUnit::DoseFormUnit, _) => dose.value * clinical_strength,
        (DoseUnit::Milligram, false) => dose.value,
        (DoseUnit::Microgram, false) => dose.value / 1000.0,
        _ => return Err(refuse(RefusalCode::InvalidRequest, "the dose unit does not fit the product".to_string())),
    };
    if !(amount.is_finite() && amount > 0.0) {
        return Err(refuse(RefusalCode::InvalidRequest, format!("dose {} is not positive", dose.value)));
    }
    let doses_per_day = match order.doses_per_day {
        Some(value) if value.is_finite() && value > 0.0 => value,
        _ => return Err(refuse(RefusalCode::InvalidRequest, "no usable doses per day".to_string())),
    };
    let mme = daily_mme(std::slice::from_ref(order), factor_set);
    let factor = match (mme.total_daily_mme, mme.items.first()) {
        (Some(_), Some(item)) => item.factor,
        _ => {
            let why = mme.undetermined.first().map(|u| u.reason.clone()).unwrap_or_else(|| "not counted".to_string());
            return Err(refuse(RefusalCode::MmeUndetermined, format!("MME cannot be determined ({why})")));
        }
    };
    let acetaminophen: f64 = make_up
        .co_ingredients
        .iter()
        .filter(|(name, _)| name == "acetaminophen")
        .map(|(_, thousandths)| *thousandths as f64 / 1000.0)
        .sum();
    if acetaminophen > policy.acetaminophen_max_mg_per_unit + EPSILON {
        return Err(refuse(
            RefusalCode::AcetaminophenLimit,
            format!(
                "{} holds {} mg acetaminophen per unit, above the {} mg limit; the physician changes the product \
                 before a taper (no step swaps it)",
                product.name,
                trim_number(acetaminophen),
                trim_number(policy.acetaminophen_max_mg_per_unit)
            ),
        ));
    }
    // Steps use only the formulary's products of exactly this make-up: never a co-ingredient the
    // order does not hold, never another strength of one it does, never another release or route.
    let products = formulary.of_make_up(&make_up);
    if products.is_empty() {
        return Err(refuse(
            RefusalCode::NotInFormulary,
            format!(
                "the clinic formulary has no {} ({}); the physician may add a product for this plan",
                make_up.describe(),
                product.name
            ),
        ));
    }
    let strengths: Vec<f64> = products.iter().map(|product| product.strength).collect();
    let co_ingredients: Vec<FormularyCoIngredient> = make_up
        .co_ingredients
        .iter()
        .map(|(name, thousandths)| FormularyCoIngredient { name: name.clone(), strength: *thousandths as f64 / 1000.0 })
        .collect();
    // Extended-release units are never split, whatever the list says.
    let splittable = !transdermal
        && product.acting != Acting::Long
        && policy.splittable_dose_forms.iter().any(|form| form.eq_ignore_ascii_case(&product.dose_form));
    let max_units = if transdermal {
        policy.max_patches_per_application.min(policy.max_units_per_administration)
    } else {
        policy.max_units_per_administration
    };
    let doses = dispensable_doses(&strengths, splittable, max_units);
    // A dose counted in units is the patient's own tablets as ordered (even of a strength the
    // formulary no longer lists): the first step changes them, not the description of today.
    let unit_dose = match (&dose.unit, doses.get(&amount_key(amount))) {
        (DoseUnit::DoseFormUnit, _) => {
            UnitDose { units: vec![super::units::UnitCount { strength: clinical_strength, count: dose.value }] }
        }
        (_, Some(dose)) => dose.clone(),
        (_, None) => {
            return Err(refuse(
                RefusalCode::NotTaperable,
                format!(
                    "{} {unit_label} per dose cannot be made from the formulary's strengths of {}",
                    trim_number(amount),
                    make_up.describe()
                ),
            ));
        }
    };
    Ok(TaperLine {
        order_id: order.id.clone(),
        ingredient,
        dose_form: product.dose_form.clone(),
        unit_label,
        transdermal,
        dose: unit_dose,
        doses_per_day,
        lower_dose: None,
        lower_doses_per_day: 0.0,
        mme_factor: factor,
        strengths,
        products,
        make_up,
        ordered_name: product.name.clone(),
        ordered_strength: clinical_strength,
        splittable,
        max_units,
        co_ingredients,
        source: order.clone(),
    })
}

/// Everything `schedule` needs to continue a plan from a given regimen and history.
pub(super) struct Schedule<'a> {
    /// The regimen in force, in reduction order.
    pub lines: Vec<TaperLine>,
    pub original_mme: f64,
    pub preset: &'a TaperPreset,
    pub policy: &'a TaperPolicy,
    pub target: TaperTarget,
    /// The earliest date for the next step.
    pub first_on: NaiveDate,
    /// Reductions that already took effect: (date, planning MME).
    pub history: Vec<(NaiveDate, f64)>,
    pub first_number: usize,
    pub revision: u32,
    /// The taper is already at its tail (lengthened time between steps).
    pub tail: bool,
    pub factor_set: FactorSet,
}

struct Candidate {
    kind: StepKind,
    /// The same dose at every administration.
    even: bool,
    /// The reduced line after the step; `None` when the line stops.
    line: Option<TaperLine>,
    reduction: f64,
    pieces: f64,
}

fn reached(target: TaperTarget, lines: &[TaperLine]) -> bool {
    match target {
        TaperTarget::Zero => lines.is_empty(),
        TaperTarget::Mme(value) => lines.iter().map(TaperLine::planning_mme).sum::<f64>() <= value + EPSILON,
    }
}

/// The reductions counted in the window of `window_days` days ending on `on`.
fn used_in_window(reductions: &[(NaiveDate, f64)], on: NaiveDate, window_days: i64) -> f64 {
    reductions.iter().filter(|(date, _)| *date <= on && (on - *date).num_days() < window_days).map(|(_, r)| r).sum()
}

/// The next date after `on` at which a reduction leaves the window.
fn next_release(reductions: &[(NaiveDate, f64)], on: NaiveDate, window_days: i64) -> NaiveDate {
    reductions
        .iter()
        .filter(|(date, _)| *date <= on && (on - *date).num_days() < window_days)
        .map(|(date, _)| *date + Duration::days(window_days))
        .min()
        .unwrap_or(on + Duration::days(1))
}

/// Continue a taper: the steps from `input.first_on` and whether they reach the target.
pub(super) fn schedule(input: Schedule<'_>) -> (Vec<TaperStep>, PlanOutcome) {
    let Schedule {
        mut lines,
        original_mme,
        preset,
        policy,
        target,
        first_on,
        history,
        first_number,
        revision,
        mut tail,
        factor_set,
    } = input;
    let mut reductions = history;
    let mut steps: Vec<TaperStep> = Vec::new();
    let full_rate = preset.rate_fraction * original_mme;
    let fraction = preset.max_step_fraction.unwrap_or(policy.max_step_fraction);
    let tail_gap =
        (preset.step_days * policy.tail_step_multiplier).min(policy.tail_max_step_days).max(preset.step_days);
    let mut previous_on: Option<NaiveDate> = reductions.last().map(|(date, _)| *date);
    let mut on = first_on;
    let mut doses_by_line: HashMap<String, BTreeMap<i64, UnitDose>> = HashMap::new();

    loop {
        if reached(target, &lines) {
            let on = steps.last().map(|step| step.effective_on).or(previous_on).unwrap_or(first_on);
            return (steps, PlanOutcome::TargetReached { on });
        }
        if steps.len() >= policy.max_steps {
            return (
                steps,
                PlanOutcome::NotReached {
                    reason: format!(
                        "the plan would need more than {} steps; the physician revises it",
                        policy.max_steps
                    ),
                },
            );
        }
        let total: f64 = lines.iter().map(TaperLine::planning_mme).sum();
        let line = lines[0].clone();
        let doses = doses_by_line
            .entry(line.order_id.clone())
            .or_insert_with(|| dispensable_doses(&line.strengths, line.splittable, line.max_units));
        // Keep the tablets the patient already has where they make the amount: the strengths change
        // only when the dose cannot be made from them.
        let held: Vec<f64> = {
            let mut held: Vec<f64> = line
                .units()
                .map(|unit| unit.strength)
                .filter(|strength| line.strengths.iter().any(|s| amount_key(*s) == amount_key(*strength)))
                .collect();
            held.sort_by(f64::total_cmp);
            held.dedup_by(|a, b| amount_key(*a) == amount_key(*b));
            held
        };
        let held_doses = dispensable_doses(&held, line.splittable, line.max_units);
        let mut preferred = doses.clone();
        preferred.extend(held_doses.clone());
        // Acetaminophen a day stays within the limit at every step, whatever the mix of units.
        let other_apap = acetaminophen_per_day(&lines[1..]);
        // Candidates over every dispensable amount, and over the amounts the held tablets make alone
        // (20, 20, 20 and 10 mg from 10 mg tablets next to 17.5 mg four times a day).
        let reductions_of_dose: Vec<Candidate> = dose_candidates(&line, &preferred)
            .into_iter()
            .chain(dose_candidates(&line, &held_doses))
            .filter(|c| {
                let apap = c.line.as_ref().map(TaperLine::acetaminophen_per_day).unwrap_or(0.0);
                other_apap + apap <= policy.acetaminophen_max_mg_per_day + EPSILON
            })
            .collect();
        // Same dose at every administration first; uneven doses only when no even one fits. The dose
        // is chosen first; the units that make it are the patient's own where they can (`preferred`).
        let fits = |c: &&Candidate| c.reduction <= fraction * total + EPSILON;
        let mut within: Vec<&Candidate> = reductions_of_dose.iter().filter(|c| c.even).filter(fits).collect();
        if within.is_empty() || within.iter().all(|c| c.reduction > full_rate + EPSILON) {
            within = reductions_of_dose.iter().filter(fits).collect();
        }

        let mut note: Option<String> = None;
        let mut paced_over_days: Option<i64> = None;
        let chosen: Candidate = if !within.is_empty() {
            let smallest = within.iter().map(|c| c.reduction).fold(f64::INFINITY, f64::min);
            if smallest > full_rate + EPSILON {
                // The smallest marketed step is larger than the preset allows in one window (a patch
                // strength, a methadone tablet): take it, but only after as long as the preset's rate
                // needs for that much, counted from the previous reduction, so the pace holds on average.
                let Some(pick) = within
                    .iter()
                    .copied()
                    .filter(|c| (c.reduction - smallest).abs() <= EPSILON)
                    .min_by(|a, b| a.pieces.total_cmp(&b.pieces))
                else {
                    return (steps, not_reached_by_rate(&line, smallest, preset, full_rate, original_mme));
                };
                let wait = (smallest / full_rate * preset.window_days as f64).ceil() as i64;
                if let Some((last, _)) = reductions.last() {
                    on = on.max(*last + Duration::days(wait));
                }
                paced_over_days = Some(wait);
                note = Some(format!(
                    "the smallest step from the formulary cuts {}% of the original dose, more than the preset's {}% per {} \
                     days, so it waits {wait} days after the previous reduction",
                    trim_number((smallest / original_mme * 1000.0).round() / 10.0),
                    trim_number(preset.rate_fraction * 100.0),
                    preset.window_days
                ));
                Candidate {
                    kind: pick.kind,
                    even: pick.even,
                    line: pick.line.clone(),
                    reduction: pick.reduction,
                    pieces: pick.pieces,
                }
            } else {
                // Wait until the window has room for at least the smallest reduction, then take the
                // largest that fits (or the smallest that reaches the target).
                while used_in_window(&reductions, on, preset.window_days) + smallest > full_rate + EPSILON {
                    on = next_release(&reductions, on, preset.window_days);
                }
                let budget = full_rate - used_in_window(&reductions, on, preset.window_days);
                let fitting: Vec<&&Candidate> = within.iter().filter(|c| c.reduction <= budget + EPSILON).collect();
                let reaching: Vec<&&Candidate> = fitting
                    .iter()
                    .copied()
                    .filter(|c| matches!(target, TaperTarget::Mme(value) if total - c.reduction <= value + EPSILON))
                    .collect();
                let pick = if reaching.is_empty() {
                    fitting
                        .iter()
                        .copied()
                        .max_by(|a, b| a.reduction.total_cmp(&b.reduction).then(b.pieces.total_cmp(&a.pieces)))
                } else {
                    reaching
                        .iter()
                        .copied()
                        .min_by(|a, b| a.reduction.total_cmp(&b.reduction).then(a.pieces.total_cmp(&b.pieces)))
                };
                let Some(pick) = pick else {
                    // Unreachable: the loop above waited until the smallest reduction fits the window.
                    return (steps, not_reached_by_rate(&line, smallest, preset, full_rate, original_mme));
                };
                Candidate {
                    kind: pick.kind,
                    even: pick.even,
                    line: pick.line.clone(),
                    reduction: pick.reduction,
                    pieces: pick.pieces,
                }
            }
        } else {
            // The tail: no dose step fits the per-step fraction. Lengthen the time between steps first.
            if !tail {
                tail = true;
                if let Some(previous) = previous_on {
                    on = on.max(previous + Duration::days(tail_gap));
                }
            }
            let candidate = if !line.transdermal && line.doses_per_day > 1.0 + EPSILON {
                // One administration fewer: a lower-dose one first.
                let fewer = (line.doses_per_day.ceil() - 1.0).max(1.0);
                let mut extended = TaperLine { doses_per_day: fewer, ..line.clone() };
                if extended.lower_dose.is_some() {
                    extended.lower_doses_per_day -= 1.0;
                    if extended.lower_doses_per_day < 1.0 - EPSILON {
                        extended.lower_dose = None;
                        extended.lower_doses_per_day = 0.0;
                    }
                }
                note = Some(format!(
                    "no smaller dose from the formulary fits the {}% per-step cap: the dosing interval is extended \
                     (one dose a day fewer), at least {tail_gap} days after the previous step",
                    trim_number(fraction * 100.0)
                ));
                Candidate {
                    even: extended.lower_dose.is_none(),
                    kind: StepKind::IntervalExtension,
                    reduction: line.planning_mme() - extended.planning_mme(),
                    pieces: extended.dose.pieces(),
                    line: Some(extended),
                }
            } else if line.transdermal && !reductions_of_dose.is_empty() {
                // A patch cannot change its interval, and every smaller marketed patch cuts more than
                // the per-step cap: the physician chooses (a conversion to an oral opioid at a dose the
                // formulary can step down, or a larger step with a written reason).
                return (steps, patch_conversion(&line, fraction));
            } else if let Some(gentlest) = reductions_of_dose
                .iter()
                .min_by(|a, b| a.reduction.total_cmp(&b.reduction).then(a.pieces.total_cmp(&b.pieces)))
            {
                note = Some(format!(
                    "taken once a day: the smallest reduction the formulary allows, at least {tail_gap} days after the \
                     previous step"
                ));
                Candidate {
                    even: gentlest.even,
                    kind: StepKind::TailReduction,
                    line: gentlest.line.clone(),
                    reduction: gentlest.reduction,
                    pieces: gentlest.pieces,
                }
            } else {
                note = Some(format!(
                    "the smallest unit once a day (or the smallest patch): the opioid stops, at least {tail_gap} days \
                     after the previous step"
                ));
                Candidate { kind: StepKind::Stop, even: true, line: None, reduction: line.planning_mme(), pieces: 0.0 }
            };
            if candidate.reduction > full_rate + EPSILON {
                // The tail's smallest change is larger than the preset allows in one window: it waits
                // as long as the rate needs for that much after the previous reduction.
                let wait = (candidate.reduction / full_rate * preset.window_days as f64).ceil() as i64;
                if let Some((last, _)) = reductions.last() {
                    on = on.max(*last + Duration::days(wait));
                }
                paced_over_days = Some(wait);
                if let Some(text) = &mut note {
                    text.push_str(&format!(
                        "; it cuts {}% of the original dose, so it waits {wait} days after the previous reduction",
                        trim_number((candidate.reduction / original_mme * 1000.0).round() / 10.0)
                    ));
                }
            }
            while paced_over_days.is_none()
                && used_in_window(&reductions, on, preset.window_days) + candidate.reduction > full_rate + EPSILON
            {
                on = next_release(&reductions, on, preset.window_days);
            }
            candidate
        };

        // The same daily reduction from the tablets the patient holds, when it can be made from them:
        // the strengths change only when the dose cannot (an uneven day before a new strength).
        let uses_held = |candidate: &TaperLine| {
            candidate.units().all(|unit| held.iter().any(|h| amount_key(*h) == amount_key(unit.strength)))
        };
        let chosen = match &chosen.line {
            Some(picked) if chosen.kind == StepKind::DoseReduction && !uses_held(picked) => reductions_of_dose
                .iter()
                .filter(|c| c.kind == StepKind::DoseReduction && (c.reduction - chosen.reduction).abs() <= EPSILON)
                .filter(|c| c.line.as_ref().is_some_and(&uses_held))
                .min_by(|a, b| b.even.cmp(&a.even).then(a.pieces.total_cmp(&b.pieces)))
                .map(|c| Candidate {
                    kind: c.kind,
                    even: c.even,
                    line: c.line.clone(),
                    reduction: c.reduction,
                    pieces: c.pieces,
                })
                .unwrap_or(chosen),
            _ => chosen,
        };
        let before = lines.clone();
        match &chosen.line {
            Some(reduced) => lines[0] = reduced.clone(),
            None => {
                lines.remove(0);
                // The next opioid starts at the preset's normal pace.
                tail = false;
            }
        }
        let number = first_number + steps.len();
        let step = make_step(StepDraft {
            note: note.take(),
            paced_over_days: paced_over_days.take(),
            number,
            on,
            previous_on,
            kind: chosen.kind,
            reduced: &before[0],
            lines: &lines,
            total_before: total,
            reduction: chosen.reduction,
            revision,
            factor_set,
            policy,
        });
        steps.push(step);
        reductions.push((on, chosen.reduction));
        previous_on = Some(on);
        on += Duration::days(if tail { tail_gap } else { preset.step_days });
    }
}

/// Every smaller regimen of the line in which no administration's dose rises: the same dispensable
/// dose `high` at each administration, or `high` at some and the next smaller dispensable dose at the
/// others (only for whole numbers of administrations a day; a patch changes as a whole).
fn dose_candidates(line: &TaperLine, doses: &BTreeMap<i64, UnitDose>) -> Vec<Candidate> {
    let current = line.administrations();
    let current_daily = amount_key(line.daily_amount());
    let top = amount_key(current[0]);
    let count = current.len();
    let amounts: Vec<(&i64, &UnitDose)> = doses.range(1..=top).collect();
    let mut candidates = Vec::new();
    for (index, (_, high)) in amounts.iter().enumerate() {
        let lower = index.checked_sub(1).map(|below| amounts[below].1);
        let lower_counts = if count > 1 && lower.is_some() { 0..count } else { 0..1 };
        for lower_count in lower_counts {
            let mut proposed = vec![high.amount(); count - lower_count];
            if let Some(lower) = lower {
                proposed.extend(std::iter::repeat_n(lower.amount(), lower_count));
            }
            // No administration may rise: compare largest with largest, and so on.
            if proposed.iter().zip(&current).any(|(new, old)| amount_key(*new) > amount_key(*old)) {
                continue;
            }
            let reduced = TaperLine {
                dose: (*high).clone(),
                lower_dose: if lower_count > 0 { lower.cloned() } else { None },
                lower_doses_per_day: lower_count as f64,
                ..line.clone()
            };
            if amount_key(reduced.daily_amount()) >= current_daily {
                continue;
            }
            let pieces = high.pieces() * (count - lower_count) as f64
                + lower.map(|dose| dose.pieces() * lower_count as f64).unwrap_or(0.0);
            candidates.push(Candidate {
                kind: StepKind::DoseReduction,
                even: lower_count == 0,
                reduction: line.planning_mme() - reduced.planning_mme(),
                pieces,
                line: Some(reduced),
            });
        }
    }
    candidates
}

/// A patch whose next marketed strength cuts more than the per-step cap: the physician chooses.
fn patch_conversion(line: &TaperLine, fraction: f64) -> PlanOutcome {
    let current = line.dose.amount();
    let next = line.strengths.iter().copied().filter(|s| *s < current - EPSILON).fold(0.0, f64::max);
    PlanOutcome::NotReached {
        reason: format!(
            "{} {} mcg/hr: the next marketed patch ({} mcg/hr) cuts {}%, more than the {}% per-step cap; the \
             physician chooses a conversion to an oral opioid the formulary can step down, or writes a larger step \
             with its reason",
            line.label(),
            trim_number(current),
            trim_number(next),
            trim_number(((current - next) / current * 1000.0).round() / 10.0),
            trim_number(fraction * 100.0)
        ),
    }
}

fn not_reached_by_rate(
    line: &TaperLine,
    smallest: f64,
    preset: &TaperPreset,
    full_rate: f64,
    original_mme: f64,
) -> PlanOutcome {
    PlanOutcome::NotReached {
        reason: format!(
            "the smallest dispensable change for {} cuts {} MME/day, more than the preset allows in {} days \
             ({}% of the original {} MME/day = {} MME/day); the physician decides the next steps \
             (another preset with an attestation, or splitting where the policy allows it)",
            line.label(),
            trim_number(smallest),
            preset.window_days,
            trim_number(preset.rate_fraction * 100.0),
            trim_number(original_mme),
            trim_number(full_rate)
        ),
    }
}

struct StepDraft<'a> {
    note: Option<String>,
    paced_over_days: Option<i64>,
    number: usize,
    on: NaiveDate,
    previous_on: Option<NaiveDate>,
    kind: StepKind,
    reduced: &'a TaperLine,
    lines: &'a [TaperLine],
    total_before: f64,
    reduction: f64,
    revision: u32,
    factor_set: FactorSet,
    policy: &'a TaperPolicy,
}

fn make_step(draft: StepDraft<'_>) -> TaperStep {
    let policy = draft.policy;
    let regimen = regimen_orders(draft.lines, &format!("r{}s{}", draft.revision, draft.number));
    let daily = daily_mme(&regimen, draft.factor_set).total_daily_mme;
    // The follow-up comes before the step, but never before the previous step (faster presets).
    let lead = match draft.previous_on {
        Some(previous) => policy.follow_up_lead_days.min((draft.on - previous).num_days() / 2),
        None => policy.follow_up_lead_days,
    };
    TaperStep {
        number: draft.number,
        effective_on: draft.on,
        kind: draft.kind,
        reduced: draft.reduced.label(),
        reduced_order_id: draft.reduced.order_id.clone(),
        lines: draft.lines.to_vec(),
        regimen,
        daily_mme: daily,
        planning_mme: draft.lines.iter().map(TaperLine::planning_mme).sum(),
        reduction_mme: draft.reduction,
        fraction_of_current: if draft.total_before > 0.0 { draft.reduction / draft.total_before } else { 0.0 },
        follow_up_due: draft.on - Duration::days(lead),
        acetaminophen_mg_per_day: acetaminophen_per_day(draft.lines),
        note: draft.note,
        paced_over_days: draft.paced_over_days,
        patient_notice_on: notice_on(draft.on, draft.previous_on, policy.patient_notice_lead_days),
        staff_notice_on: notice_on(draft.on, draft.previous_on, policy.staff_notice_lead_days),
        revision: draft.revision,
    }
}

/// A notice `lead_days` before the step, but not before the previous step took effect: with weekly or
/// daily steps one notice per step, each after the step before it.
fn notice_on(on: NaiveDate, previous_on: Option<NaiveDate>, lead_days: i64) -> NaiveDate {
    let wanted = on - Duration::days(lead_days);
    match previous_on {
        Some(previous) => wanted.max(previous),
        None => wanted,
    }
}

/// The regimen of a step as dispensable orders: one per product, dose counted in units. Each names the
/// formulary product of the line's make-up (or the patient's own ordered product for units the step
/// did not change), never a product chosen by name.
pub(super) fn regimen_orders(lines: &[TaperLine], tag: &str) -> Vec<MedicationOrder> {
    let mut orders = Vec::new();
    for line in lines {
        let mut parts = vec![(&line.dose, line.doses_per_day - line.lower_doses_per_day, "")];
        if let Some(lower) = &line.lower_dose {
            parts.push((lower, line.lower_doses_per_day, "-lower"));
        }
        for (dose, doses_per_day, suffix) in parts {
            for unit in &dose.units {
                let key = amount_key(unit.strength);
                let (rxcui, text) = match line.products.iter().find(|product| amount_key(product.strength) == key) {
                    Some(product) => (product.rxcui.clone(), Some(product.name.clone())),
                    None => (line.source.rxcui.clone(), line.source.text.clone().or(Some(line.ordered_name.clone()))),
                };
                orders.push(MedicationOrder {
                    id: format!("{}@{tag}/{}{suffix}", line.order_id, trim_number(unit.strength)),
                    rxcui,
                    text,
                    dose: Some(DoseQuantity { value: unit.count, unit: DoseUnit::DoseFormUnit }),
                    doses_per_day: Some(if line.transdermal { line.doses_per_day } else { doses_per_day }),
                    days_supply: None,
                    dispense_quantity: None,
                    prescriber: line.source.prescriber.clone(),
                    purpose: OrderPurpose::Pain,
                    confidentiality: line.source.confidentiality,
                });
            }
        }
    }
    orders
}

/// Recompute what depends on the steps: follow-ups and the flags the outcome raises.
pub(super) fn finish(plan: &mut TaperPlan, policy: &TaperPolicy, today: NaiveDate) {
    plan.follow_ups = follow_ups(&plan.steps, policy);
    if let PlanOutcome::NotReached { reason } = &plan.outcome {
        let in_force = plan.steps.last().map(|step| step.planning_mme).unwrap_or(plan.original_mme);
        if plan.state == TaperState::Active && in_force >= policy.stall_mme - EPSILON {
            // The planner's limit, not the patient's: no OUD assessment prompt here.
            raise_flag(plan, today, format!("{PLANNER_LIMIT_FLAG} ({} MME/day): {reason}", trim_number(in_force)));
        }
    }
}

/// Add a flag unless the same message is already raised.
pub(super) fn raise_flag(plan: &mut TaperPlan, on: NaiveDate, message: String) {
    if !plan.flags.iter().any(|flag| flag.message == message) {
        plan.flags.push(PhysicianFlag { raised_on: on, message });
    }
}

/// A follow-up before every step, none further apart than `max_follow_up_gap_days`, and one check
/// after the last step.
pub(super) fn follow_ups(steps: &[TaperStep], policy: &TaperPolicy) -> Vec<NaiveDate> {
    let mut anchors: Vec<NaiveDate> = steps.iter().map(|step| step.follow_up_due).collect();
    if let Some(last) = steps.last() {
        anchors.push(last.effective_on + Duration::days(policy.max_follow_up_gap_days));
    }
    anchors.sort();
    anchors.dedup();
    let gap = Duration::days(policy.max_follow_up_gap_days);
    let mut dates: Vec<NaiveDate> = Vec::new();
    for anchor in anchors {
        if let Some(&last) = dates.last() {
            let mut next = last + gap;
            while next < anchor {
                dates.push(next);
                next += gap;
            }
        }
        dates.push(anchor);
    }
    dates
}
