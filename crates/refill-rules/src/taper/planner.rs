//! The planner: from a regimen to dispensable, rate-limited steps. `plan_taper` builds a new plan;
//! `schedule` continues one from any regimen and reduction history (used again by pause/resume and
//! revisions).

use std::collections::{BTreeMap, HashMap};

use chrono::{Duration, NaiveDate};

use super::units::{UnitDose, amount_key, dispensable_doses, trim_number};
use super::{
    BUPRENORPHINE_FLAG, PhysicianFlag, PlanOutcome, RefusalCode, SafetyAttestation, StepKind, TaperChange, TaperEvent,
    TaperLine, TaperPlan, TaperPolicy, TaperPreset, TaperRefusal, TaperRequest, TaperStep, TaperTarget,
};
use crate::drug::{Acting, DrugTable, StrengthUnit};
use crate::facts::{DoseQuantity, DoseUnit, MedicationOrder, OrderPurpose, TaperState};
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
    let lines = lines_from_regimen(&request.regimen, &request.reduce_first, request.factor_set, policy)?;
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
    Ok(plan)
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
) -> Result<Vec<TaperLine>, TaperRefusal> {
    if regimen.is_empty() {
        return Err(TaperRefusal::new(RefusalCode::EmptyRegimen, "the regimen has no opioid orders"));
    }
    let drugs = DrugTable::embedded();
    let mut lines: Vec<TaperLine> = Vec::new();
    for order in regimen {
        let line = line_from_order(order, drugs, factor_set, policy)?;
        let same_line = lines.iter_mut().find(|existing| {
            existing.ingredient == line.ingredient
                && existing.dose_form == line.dose_form
                && amount_key(existing.doses_per_day) == amount_key(line.doses_per_day)
        });
        match same_line {
            Some(existing) => {
                let amount = existing.dose.amount() + line.dose.amount();
                let doses =
                    dispensable_doses(&existing.strengths, existing.splittable, policy.max_units_per_administration);
                existing.dose = match doses.get(&amount_key(amount)) {
                    Some(dose) => dose.clone(),
                    None => {
                        let mut units = existing.dose.units.clone();
                        units.extend(line.dose.units);
                        UnitDose { units }
                    }
                };
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
    let co_ingredients = co_ingredients(&product.name, &ingredient);
    let strengths = strengths_in_unit(drugs, &ingredient, &product.dose_form, unit, &co_ingredients);
    if strengths.is_empty() {
        return Err(refuse(
            RefusalCode::NotTaperable,
            format!("no single-ingredient {ingredient} {} strengths in the drug table", product.dose_form),
        ));
    }
    // Extended-release units are never split, whatever the list says.
    let splittable = !transdermal
        && product.acting != Acting::Long
        && policy.splittable_dose_forms.iter().any(|form| form.eq_ignore_ascii_case(&product.dose_form));
    let doses = dispensable_doses(&strengths, splittable, policy.max_units_per_administration);
    let unit_dose = match (doses.get(&amount_key(amount)), &dose.unit) {
        (Some(dose), _) => dose.clone(),
        (None, DoseUnit::DoseFormUnit) => {
            UnitDose { units: vec![super::units::UnitCount { strength: clinical_strength, count: dose.value }] }
        }
        (None, _) => {
            return Err(refuse(
                RefusalCode::NotTaperable,
                format!("{} {unit_label} per dose cannot be made from the strengths that exist", trim_number(amount)),
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
        splittable,
        co_ingredients,
        source: order.clone(),
    })
}

/// The strengths that exist for single-ingredient products of this ingredient and dose form, in the
/// same strength unit (the drug table files the Ionsys iontophoretic system, per actuation, under
/// `Transdermal System` next to the mcg/hr patches; mixing them would make a 0.04 "patch").
fn strengths_in_unit(
    drugs: &DrugTable,
    ingredient: &str,
    dose_form: &str,
    unit: StrengthUnit,
    co: &[String],
) -> Vec<f64> {
    let mut strengths: Vec<f64> = drugs
        .products_of(ingredient)
        .filter(|product| product.dose_form.eq_ignore_ascii_case(dose_form))
        .filter(|product| product.distinct_ingredients() == [ingredient])
        .filter(|product| co_ingredients(&product.name, ingredient) == co)
        .filter_map(|product| product.strength_of(ingredient))
        .filter(|(_, unit_of)| *unit_of == unit)
        .map(|(strength, _)| if unit == StrengthUnit::MgPerHr { strength * 1000.0 } else { strength })
        .collect();
    strengths.sort_by(f64::total_cmp);
    strengths.dedup_by(|a, b| amount_key(*a) == amount_key(*b));
    strengths
}

/// The non-opioid ingredients named in an RxNorm-style product name, lower case and sorted. The drug
/// table lists opioid rows only, so `aspirin 325 MG / oxycodone hydrochloride 4.84 MG Oral Tablet`
/// would otherwise pass for a plain oxycodone tablet.
pub(super) fn co_ingredients(name: &str, ingredient: &str) -> Vec<String> {
    let lower = name.to_lowercase();
    let without_brand = match lower.rfind('[') {
        Some(open) if lower.ends_with(']') => &lower[..open],
        _ => lower.as_str(),
    };
    let mut others: Vec<String> = without_brand
        .split(" / ")
        .filter(|part| !part.contains(ingredient))
        .map(|part| {
            part.split_whitespace()
                .take_while(|word| !word.starts_with(|c: char| c.is_ascii_digit()))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|name| !name.is_empty())
        .collect();
    others.sort();
    others.dedup();
    others
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
        let doses = doses_by_line.entry(line.order_id.clone()).or_insert_with(|| {
            dispensable_doses(&line.strengths, line.splittable, policy.max_units_per_administration)
        });
        let reductions_of_dose = dose_candidates(&line, doses);
        // Same dose at every administration first; uneven doses only when no even one fits.
        let fits = |c: &&Candidate| c.reduction <= fraction * total + EPSILON;
        let mut within: Vec<&Candidate> = reductions_of_dose.iter().filter(|c| c.even).filter(fits).collect();
        if within.is_empty() || within.iter().all(|c| c.reduction > full_rate + EPSILON) {
            within = reductions_of_dose.iter().filter(fits).collect();
        }

        let chosen: Candidate = if !within.is_empty() {
            let smallest = within.iter().map(|c| c.reduction).fold(f64::INFINITY, f64::min);
            if smallest > full_rate + EPSILON {
                return (steps, not_reached_by_rate(&line, smallest, preset, full_rate, original_mme));
            }
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
                Candidate {
                    even: extended.lower_dose.is_none(),
                    kind: StepKind::IntervalExtension,
                    reduction: line.planning_mme() - extended.planning_mme(),
                    pieces: extended.dose.pieces(),
                    line: Some(extended),
                }
            } else if let Some(gentlest) = reductions_of_dose
                .iter()
                .min_by(|a, b| a.reduction.total_cmp(&b.reduction).then(a.pieces.total_cmp(&b.pieces)))
            {
                Candidate {
                    even: gentlest.even,
                    kind: StepKind::TailReduction,
                    line: gentlest.line.clone(),
                    reduction: gentlest.reduction,
                    pieces: gentlest.pieces,
                }
            } else {
                Candidate { kind: StepKind::Stop, even: true, line: None, reduction: line.planning_mme(), pieces: 0.0 }
            };
            if candidate.reduction > full_rate + EPSILON {
                return (steps, not_reached_by_rate(&line, candidate.reduction, preset, full_rate, original_mme));
            }
            while used_in_window(&reductions, on, preset.window_days) + candidate.reduction > full_rate + EPSILON {
                on = next_release(&reductions, on, preset.window_days);
            }
            candidate
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

/// The regimen of a step as dispensable orders: one per strength, dose counted in units.
pub(super) fn regimen_orders(lines: &[TaperLine], tag: &str) -> Vec<MedicationOrder> {
    let drugs = DrugTable::embedded();
    let mut orders = Vec::new();
    for line in lines {
        let mut parts = vec![(&line.dose, line.doses_per_day - line.lower_doses_per_day, "")];
        if let Some(lower) = &line.lower_dose {
            parts.push((lower, line.lower_doses_per_day, "-lower"));
        }
        for (dose, doses_per_day, suffix) in parts {
            for unit in &dose.units {
                let product = drugs
                    .products_of(&line.ingredient)
                    .filter(|product| product.dose_form.eq_ignore_ascii_case(&line.dose_form))
                    .filter(|product| product.distinct_ingredients() == [line.ingredient.as_str()])
                    .filter(|product| co_ingredients(&product.name, &line.ingredient) == line.co_ingredients)
                    .filter(|product| {
                        product.ingredients.first().is_some_and(|_| {
                            product.strength_of(&line.ingredient).is_some_and(|(strength, unit_of)| {
                                let clinical =
                                    if unit_of == StrengthUnit::MgPerHr { strength * 1000.0 } else { strength };
                                amount_key(clinical) == amount_key(unit.strength)
                            })
                        })
                    })
                    // Generic names first, then the shortest (plainest) name, for a stable choice.
                    .min_by_key(|product| (product.name.contains('['), product.name.len(), product.name.clone()));
                let (rxcui, text) = match product {
                    Some(product) => (product.rxcui.clone(), Some(product.name.clone())),
                    None => (
                        None,
                        Some(format!(
                            "{} {} {} {}",
                            line.ingredient,
                            trim_number(unit.strength),
                            line.unit_label,
                            line.dose_form
                        )),
                    ),
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
            raise_flag(
                plan,
                today,
                format!("{BUPRENORPHINE_FLAG}: the plan stalls at {} MME/day ({reason})", trim_number(in_force)),
            );
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
