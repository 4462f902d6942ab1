//! Changes to a plan as pure functions: pause, resume, slow down and revise each return a new plan.
//! Steps that already took effect stay; steps from the change date on move to `superseded`, and the
//! event log records who changed what and when, so the history of every change is kept.

use chrono::{Duration, NaiveDate};

use super::planner::{
    Schedule, check_attestation, check_target, choose_preset, finish, raise_flag, regimen_orders, schedule,
};
use super::units::trim_number;
use super::{
    BUPRENORPHINE_FLAG, PLANNER_LIMIT_FLAG, PhysicianFlag, PlanOutcome, RefusalCode, SafetyAttestation, StepKind,
    TaperChange, TaperEvent, TaperLine, TaperPlan, TaperPolicy, TaperPreset, TaperRefusal, TaperTarget,
};
use crate::facts::{TaperInForce, TaperState};

/// Why a taper pauses (CDC 2022 Rec 5: pauses are part of a taper, agreed with the patient).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PauseReason {
    PatientRequest,
    Withdrawal,
    LifeEvent,
    Other(String),
}

impl PauseReason {
    pub fn describe(&self) -> String {
        match self {
            PauseReason::PatientRequest => "patient request".to_string(),
            PauseReason::Withdrawal => "withdrawal symptoms".to_string(),
            PauseReason::LifeEvent => "life event".to_string(),
            PauseReason::Other(text) => text.clone(),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            PauseReason::PatientRequest => "patient_request",
            PauseReason::Withdrawal => "withdrawal",
            PauseReason::LifeEvent => "life_event",
            PauseReason::Other(_) => "other",
        }
    }
}

/// A physician's revision: any field left `None` (or empty) keeps the plan's value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaperRevision {
    pub preset: Option<String>,
    pub target: Option<TaperTarget>,
    pub attestation: Option<SafetyAttestation>,
    pub reduce_first: Vec<String>,
    pub note: String,
}

/// The regimen in force on `on`: the last step that took effect, else the original regimen.
pub fn dose_in_force(plan: &TaperPlan, on: NaiveDate) -> &[TaperLine] {
    plan.steps
        .iter()
        .rev()
        .find(|step| step.effective_on <= on)
        .map(|step| step.lines.as_slice())
        .unwrap_or(&plan.original_lines)
}

/// The plan's state on `today`: an active plan whose target is reached by then is completed.
pub fn state_on(plan: &TaperPlan, today: NaiveDate) -> TaperState {
    match (&plan.state, &plan.outcome) {
        (TaperState::Active, PlanOutcome::TargetReached { on }) if today >= *on => TaperState::Completed,
        (state, _) => *state,
    }
}

/// What the refill rules need to know about the plan on `today` (`plan_id` is the store's id).
pub fn taper_in_force(plan: &TaperPlan, plan_id: i64, today: NaiveDate) -> TaperInForce {
    let step = plan.steps.iter().rev().find(|step| step.effective_on <= today);
    TaperInForce {
        plan_id,
        state: state_on(plan, today),
        started_on: plan.request.start_on,
        step_regimen: match step {
            Some(step) => step.regimen.clone(),
            None => plan.request.regimen.clone(),
        },
        step_started_on: step.map(|step| step.effective_on).unwrap_or(plan.request.start_on),
        next_step: None,
    }
}

/// Pause from `on`: no step takes effect from that date until the plan is resumed.
pub fn pause(
    plan: &TaperPlan,
    on: NaiveDate,
    reason: PauseReason,
    policy: &TaperPolicy,
) -> Result<TaperPlan, TaperRefusal> {
    require_state(plan, TaperState::Active, "pause")?;
    let mut next = plan.clone();
    next.revision += 1;
    let (kept, dropped): (Vec<_>, Vec<_>) = plan.steps.iter().cloned().partition(|step| step.effective_on < on);
    next.steps = kept;
    next.superseded.extend(dropped);
    next.state = TaperState::Paused;
    next.outcome = PlanOutcome::NotReached { reason: format!("paused on {on} ({})", reason.describe()) };
    next.events.push(TaperEvent { on, revision: next.revision, change: TaperChange::Paused { reason } });
    finish(&mut next, policy, on);
    // Follow-up continues during a pause (CDC 2022: at least monthly).
    next.follow_ups.retain(|date| *date < on);
    next.follow_ups.push(on + Duration::days(policy.max_follow_up_gap_days));
    let pauses = next.pauses();
    if pauses >= policy.pauses_before_flag {
        raise_flag(&mut next, on, format!("{BUPRENORPHINE_FLAG}: the taper has paused {pauses} times"));
    }
    Ok(next)
}

/// Resume a paused plan on `on` at the same preset, from the dose in force. The next step comes a
/// full interval after the resume (never on the day itself), so a check-in falls before it.
pub fn resume(plan: &TaperPlan, on: NaiveDate, policy: &TaperPolicy) -> Result<TaperPlan, TaperRefusal> {
    require_state(plan, TaperState::Paused, "resume")?;
    let lines = dose_in_force(plan, on).to_vec();
    let (name, preset) = (plan.preset_name.clone(), plan.preset.clone());
    let earliest = (on + Duration::days(preset.step_days)).max(next_step_not_before(plan, on, &preset));
    Ok(replan(
        plan,
        on,
        earliest,
        Replan { preset_name: name, preset, target: plan.target, lines, attestation: plan.attestation.clone() },
        TaperChange::Resumed,
        policy,
    ))
}

/// Switch to a slower preset from `on`; the next step is never sooner than the new preset's pace.
pub fn slow_down(
    plan: &TaperPlan,
    on: NaiveDate,
    preset_name: &str,
    policy: &TaperPolicy,
) -> Result<TaperPlan, TaperRefusal> {
    require_state(plan, TaperState::Active, "slow down")?;
    let (name, preset) = choose_preset(Some(preset_name), policy)?;
    if per_28_days(preset) >= per_28_days(&plan.preset) - 1e-9 {
        return Err(TaperRefusal::new(
            RefusalCode::NotSlower,
            format!(
                "{name} ({}% per 28 days) is not slower than {} ({}% per 28 days)",
                trim_number(per_28_days(preset) * 100.0),
                plan.preset_name,
                trim_number(per_28_days(&plan.preset) * 100.0)
            ),
        ));
    }
    check_attestation(&name, preset, plan.attestation.as_ref())?;
    let earliest = next_step_not_before(plan, on, preset);
    let lines = dose_in_force(plan, on).to_vec();
    let change = TaperChange::SlowedDown { from_preset: plan.preset_name.clone(), to_preset: name.clone() };
    Ok(replan(
        plan,
        on,
        earliest,
        Replan {
            preset_name: name,
            preset: preset.clone(),
            target: plan.target,
            lines,
            attestation: plan.attestation.clone(),
        },
        change,
        policy,
    ))
}

/// A physician's revision from `on`: preset, target, attestation or order of reduction.
pub fn revise(
    plan: &TaperPlan,
    on: NaiveDate,
    revision: TaperRevision,
    policy: &TaperPolicy,
) -> Result<TaperPlan, TaperRefusal> {
    require_state(plan, TaperState::Active, "revise")?;
    let (name, preset) = choose_preset(Some(revision.preset.as_deref().unwrap_or(&plan.preset_name)), policy)?;
    let attestation = revision.attestation.clone().or_else(|| plan.attestation.clone());
    check_attestation(&name, preset, attestation.as_ref())?;
    let target = revision.target.unwrap_or(plan.target);
    let mut lines = dose_in_force(plan, on).to_vec();
    let current: f64 = lines.iter().map(TaperLine::planning_mme).sum();
    check_target(target, current)?;
    for id in revision.reduce_first.iter().rev() {
        let Some(position) = lines.iter().position(|line| line.order_id.split('+').any(|part| part == id)) else {
            return Err(TaperRefusal::new(
                RefusalCode::InvalidRequest,
                format!("reduce_first names order {id:?}, which is not in the regimen in force"),
            ));
        };
        let line = lines.remove(position);
        lines.insert(0, line);
    }
    let earliest = next_step_not_before(plan, on, preset);
    let note =
        if revision.note.trim().is_empty() { "revised by the physician".to_string() } else { revision.note.clone() };
    Ok(replan(
        plan,
        on,
        earliest,
        Replan { preset_name: name, preset: preset.clone(), target, lines, attestation },
        TaperChange::Revised { note },
        policy,
    ))
}

/// Flags for the physician on `today`: those raised so far, plus a stall (no reduction for
/// `stall_days` while at or above `stall_mme`).
pub fn review(plan: &TaperPlan, today: NaiveDate, policy: &TaperPolicy) -> Vec<PhysicianFlag> {
    let mut flags = plan.flags.clone();
    if state_on(plan, today) == TaperState::Completed {
        return flags;
    }
    let in_force: f64 = dose_in_force(plan, today).iter().map(TaperLine::planning_mme).sum();
    let last_change = plan
        .steps
        .iter()
        .rev()
        .find(|step| step.effective_on <= today)
        .map(|step| step.effective_on)
        .unwrap_or(plan.request.start_on);
    let idle_days = (today - last_change).num_days();
    if in_force >= policy.stall_mme && idle_days >= policy.stall_days {
        // Who is the limit: a paused plan waits for the patient (their wish or withdrawal at a
        // check-in); an active one that does not reduce waits for the planner (formulary or pace).
        let message = if state_on(plan, today) == TaperState::Paused {
            format!("{BUPRENORPHINE_FLAG}: paused for {idle_days} days at {} MME/day", trim_number(in_force))
        } else {
            format!("{PLANNER_LIMIT_FLAG}: no reduction for {idle_days} days at {} MME/day", trim_number(in_force))
        };
        if !flags.iter().any(|flag| flag.message == message) {
            flags.push(PhysicianFlag { raised_on: today, message });
        }
    }
    flags
}

fn require_state(plan: &TaperPlan, wanted: TaperState, action: &str) -> Result<(), TaperRefusal> {
    if plan.state == wanted {
        Ok(())
    } else {
        Err(TaperRefusal::new(
            RefusalCode::WrongState,
            format!("cannot {action} a plan that is {:?} (it must be {wanted:?})", plan.state).to_lowercase(),
        ))
    }
}

fn per_28_days(preset: &TaperPreset) -> f64 {
    preset.rate_fraction * 28.0 / preset.window_days.max(1) as f64
}

/// The next step keeps at least the preset's pace after the last step that took effect.
fn next_step_not_before(plan: &TaperPlan, on: NaiveDate, preset: &TaperPreset) -> NaiveDate {
    match plan.steps.iter().rev().find(|step| step.effective_on < on) {
        Some(step) => on.max(step.effective_on + Duration::days(preset.step_days)),
        None => on.max(plan.request.start_on),
    }
}

struct Replan {
    preset_name: String,
    preset: TaperPreset,
    target: TaperTarget,
    lines: Vec<TaperLine>,
    attestation: Option<SafetyAttestation>,
}

/// Keep the steps before `on`, supersede the rest, and schedule again from `earliest`.
fn replan(
    plan: &TaperPlan,
    on: NaiveDate,
    earliest: NaiveDate,
    with: Replan,
    change: TaperChange,
    policy: &TaperPolicy,
) -> TaperPlan {
    let mut next = plan.clone();
    next.revision += 1;
    let (kept, dropped): (Vec<_>, Vec<_>) = plan.steps.iter().cloned().partition(|step| step.effective_on < on);
    let history = kept.iter().map(|step| (step.effective_on, step.reduction_mme)).collect();
    let tail = kept.last().is_some_and(|step| step.kind.is_tail() && step.kind != StepKind::Stop);
    let (new_steps, outcome) = schedule(Schedule {
        lines: with.lines,
        original_mme: plan.original_mme,
        preset: &with.preset,
        policy,
        target: with.target,
        first_on: earliest,
        history,
        first_number: kept.len() + 1,
        revision: next.revision,
        tail,
        factor_set: plan.request.factor_set,
    });
    next.steps = kept;
    next.steps.extend(new_steps);
    next.superseded.extend(dropped);
    next.outcome = outcome;
    next.preset_name = with.preset_name;
    next.preset = with.preset;
    next.target = with.target;
    next.attestation = with.attestation;
    next.state = TaperState::Active;
    next.events.push(TaperEvent { on, revision: next.revision, change });
    finish(&mut next, policy, on);
    next
}

/// The regimen of the dose in force as orders (for screens that show the current step).
pub fn regimen_in_force(plan: &TaperPlan, on: NaiveDate) -> Vec<crate::facts::MedicationOrder> {
    regimen_orders(dose_in_force(plan, on), &format!("r{}in-force", plan.revision))
}
