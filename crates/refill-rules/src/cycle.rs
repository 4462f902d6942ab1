//! The refill cycle of one patient on one clinic date (refill-cycle.md): which refill is decided and as
//! of when, the physician decision that stands for the cycle, and the alert that keeps a supply from
//! running out while the clinic waits.
//!
//! `decide` is what the daily run, a staff action and a physician's signature all call, so the three
//! cannot disagree. It wraps `refill::evaluate` (the protocol's rules) with the cycle:
//!
//! 1. **Position.** With a recorded request, that request is decided: a routine one as of
//!    `max(today, eligible date)`, an early, lost-or-stolen or dose-change one as of today (only a
//!    recorded request can be early). Without one, the upcoming refill is decided as of
//!    `max(today, eligible date)` once the eligible date is within the policy's lead time; before that
//!    the patient is *not due* and only monitoring reasons are kept (a hold then becomes a task: there
//!    is nothing to hold yet). A refill whose supply starts on or after the next signed taper step is
//!    decided against that step.
//! 2. **Standing decision.** A physician decision in force covers the reasons the physician saw (same
//!    code, same subject, no worse outcome): they stay listed as covered but do not count. A hold or a
//!    stop keeps the refill held; an approval, bridge or taper releases it unless a new reason fires.
//!    A refill staff prepared and no dispense has answered yet is *prepared*: it leaves the queue
//!    unless something new needs a physician.
//! 3. **No silent lapse.** A refill still held or waiting for a physician on the working day before the
//!    supply runs out becomes urgent, with a bridge offered.

use chrono::{Datelike, NaiveDate, Weekday};

use crate::days::{add_days, sub_days};
use crate::decision::{Decision, Evidence, EvidenceValue, Outcome, Reason, ReasonCode, RefillWindow, Task};
use crate::facts::{ClinicFacts, PatientFacts, RefillRequest, RequestKind, StandingDecision, TaperState};
use crate::policy::Policy;
use crate::refill::{self, timing};

/// Where the current supply stands: the latest fill, the day the next refill is on time, and the day
/// the supply runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupplyTiming {
    pub last_fill_on: NaiveDate,
    pub eligible_on: NaiveDate,
    pub runs_out_on: NaiveDate,
}

/// The supply timing from the fills on record up to `today` (`None` with no fill). The eligible date is
/// the on-time day of the last fill, or later when dispensing then would let early fills accumulate
/// (the fill history's own hold): the next refill is planned for the day it can be dispensed.
pub fn supply_timing(facts: &PatientFacts, today: NaiveDate, policy: &Policy) -> Option<SupplyTiming> {
    let last_fill = facts
        .fills
        .iter()
        .filter(|fill| fill.filled_on <= today)
        .max_by(|a, b| a.filled_on.cmp(&b.filled_on).then(a.days_supply.cmp(&b.days_supply)))?;
    let on_time =
        add_days(last_fill.filled_on, timing::on_time_day(last_fill.days_supply, policy.refill.on_time_fraction));
    let refill = &policy.refill;
    let accumulation =
        timing::accumulation(&facts.fills, on_time, refill.early_fill_lookback_days, refill.early_fill_allowance_days);
    let eligible_on = accumulation.map_or(on_time, |acc| acc.clears_on.max(on_time));
    Some(SupplyTiming {
        last_fill_on: last_fill.filled_on,
        eligible_on,
        runs_out_on: add_days(last_fill.filled_on, i64::from(last_fill.days_supply)),
    })
}

/// The day the latest supply runs out (orders the queue by urgency), over every fill on record.
pub fn supply_runs_out_on(facts: &PatientFacts) -> Option<NaiveDate> {
    facts.fills.iter().map(|fill| add_days(fill.filled_on, i64::from(fill.days_supply))).max()
}

/// The last working day (Monday to Friday) before `date`: the latest a physician must hear of a supply
/// that runs out on `date`. The clinic's holidays are not modelled; a holiday eve is covered by the
/// physicians' daily list, which shows the run-out date.
pub fn working_day_before(date: NaiveDate) -> NaiveDate {
    let mut day = sub_days(date, 1);
    while matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
        day = sub_days(day, 1);
    }
    day
}

/// Whether a standing physician decision is still in force on `today`: until its review-by date when
/// the physician set one, else until a supply is dispensed after the latest fill the physician saw.
pub fn standing_applies(standing: &StandingDecision, facts: &PatientFacts, today: NaiveDate) -> bool {
    if today < standing.signed_on {
        return false;
    }
    match standing.review_by {
        Some(review_by) => today <= review_by,
        None => !facts.fills.iter().any(|fill| Some(fill.filled_on) > standing.latest_fill_seen),
    }
}

/// What a reason is about, beyond its code: its text evidence (an analyte, a prescriber, a kind), so
/// the same code about something new is a new reason. Dates and counts are left out: they move every day.
pub fn reason_subject(reason: &Reason) -> String {
    let mut parts: Vec<String> = reason
        .evidence
        .iter()
        .filter_map(|e| match &e.value {
            EvidenceValue::Text(text) => Some(format!("{}={text}", e.name)),
            _ => None,
        })
        .collect();
    parts.sort();
    parts.join(";")
}

/// Decide the patient's refill cycle on `today` (see the module documentation).
pub fn decide(
    facts: &PatientFacts,
    clinic: &ClinicFacts,
    today: NaiveDate,
    policy: &Policy,
    policy_version: &str,
) -> Decision {
    let timing = supply_timing(facts, today, policy);
    let request = facts.open_request.as_ref();
    let not_due =
        request.is_none() && timing.is_some_and(|t| t.eligible_on > add_days(today, policy.refill.lead_days.max(0)));
    let as_of = match (request, timing) {
        (Some(request), _) if request.kind.wants_supply_now() => today.max(request.requested_on),
        (_, Some(timing)) if !not_due => today.max(timing.eligible_on),
        _ => today,
    };
    let regimen = match &facts.taper {
        Some(taper) if taper.state == TaperState::Active => match &taper.next_step {
            Some(next) if next.starts_on <= as_of => next.regimen.clone(),
            _ => facts.regimen.clone(),
        },
        _ => facts.regimen.clone(),
    };
    let kind = match request.map(|r| r.kind) {
        Some(RequestKind::LostOrStolenReplacement) => RequestKind::LostOrStolenReplacement,
        _ => RequestKind::Routine,
    };
    let refill_request = RefillRequest { requested_on: as_of, regimen, kind };
    let mut decision = refill::evaluate(facts, clinic, &refill_request, policy, policy_version);
    let mut reasons = std::mem::take(&mut decision.reasons);
    if request.is_some_and(|r| r.kind == RequestKind::DoseChange) {
        reasons.push(reason(
            policy,
            ReasonCode::DoseChangeRequested,
            vec![Evidence::date("requested_on", request.map_or(today, |r| r.requested_on))],
            None,
        ));
    }
    continue_transferred_patient(facts, policy, &mut reasons);
    if not_due {
        // Nothing to decide about the refill yet: monitoring that falls due shows; a hold it would ask
        // for is a task until the window opens.
        reasons.retain(|r| !r.code.concerns_the_refill());
        for reason in &mut reasons {
            if reason.outcome == Outcome::Hold {
                reason.outcome = Outcome::ApproveWithTasks;
            }
        }
    }
    let standing = facts.standing.as_ref().filter(|s| standing_applies(s, facts, today));
    let prepared = !not_due && facts.refill_prepared_on.is_some_and(|on| on <= today);
    let mut decision = rebuild(&decision, reasons, Vec::new(), standing);
    decision.window = if not_due {
        RefillWindow::NotDue
    } else if prepared {
        RefillWindow::Prepared
    } else {
        RefillWindow::Open
    };
    if decision.eligible_on.is_none() {
        decision.eligible_on = timing.map(|t| t.eligible_on);
    }
    if let Some(standing) = standing {
        decision = apply_standing(decision, standing);
    }
    if !not_due {
        guard_against_lapse(&mut decision, policy, today, timing.map(|t| t.runs_out_on));
    }
    decision
}

fn reason(policy: &Policy, code: ReasonCode, evidence: Vec<Evidence>, task: Option<Task>) -> Reason {
    Reason { code, outcome: policy.refill.outcomes.for_code(code), evidence, task, restricted: false }
}

/// A patient with a previous prescriber recorded and no fill at this clinic yet is continued while the
/// clinic reviews the case: the "no fill history" escalation becomes a physician review task.
fn continue_transferred_patient(facts: &PatientFacts, policy: &Policy, reasons: &mut [Reason]) {
    let Some(previous) = &facts.previous_prescriber else { return };
    if facts.regimen.is_empty() {
        return;
    }
    for reason in reasons.iter_mut().filter(|r| r.code == ReasonCode::NoFillHistory) {
        *reason = self::reason(
            policy,
            ReasonCode::TransferredPatientContinued,
            vec![Evidence::text("previous_prescriber", previous.0.clone())],
            Some(Task::ScheduleReview),
        );
    }
}

/// A decision rebuilt from its reasons (outcome, tasks), keeping what the rules computed besides.
fn rebuild(
    base: &Decision,
    reasons: Vec<Reason>,
    covered: Vec<Reason>,
    standing: Option<&StandingDecision>,
) -> Decision {
    let mut decision = Decision::from_reasons(reasons, base.eligible_on, base.total_daily_mme, &base.policy_version);
    for task in covered.iter().filter_map(|r| r.task) {
        if !decision.tasks.contains(&task) {
            decision.tasks.push(task);
        }
    }
    if decision.outcome == Outcome::Approve && !decision.tasks.is_empty() {
        decision.outcome = Outcome::ApproveWithTasks;
    }
    decision.window = base.window;
    decision.covered = covered;
    decision.standing = standing.map(|s| s.id);
    decision
}

/// Apply a standing physician decision: covered reasons move aside, the physician's choice sets the
/// floor (a hold or stop keeps the refill held), and anything new decides above it.
pub fn apply_standing(decision: Decision, standing: &StandingDecision) -> Decision {
    let (covered, live): (Vec<Reason>, Vec<Reason>) = decision.reasons.iter().cloned().partition(|reason| {
        standing.covered.iter().any(|seen| {
            seen.code == reason.code && seen.outcome >= reason.outcome && seen.subject == reason_subject(reason)
        })
    });
    let mut covered = covered;
    covered.extend(decision.covered.iter().cloned());
    let mut out = rebuild(&decision, live, covered, Some(standing));
    if !standing.choice.releases_refill() {
        out.outcome = out.outcome.max(Outcome::Hold);
    }
    out
}

/// Raise a refill that is held or waiting for a physician to urgent when the supply runs out before a
/// physician could act later (the working day before the run-out, or after it). A hold that lifts by
/// itself in time (an early request whose eligible date comes before the run-out) is left alone.
fn guard_against_lapse(decision: &mut Decision, policy: &Policy, today: NaiveDate, runs_out_on: Option<NaiveDate>) {
    let Some(runs_out_on) = runs_out_on else { return };
    if decision.outcome < Outcome::Hold || decision.outcome == Outcome::EscalateUrgent {
        return;
    }
    let mut holding = decision.reasons.iter().filter(|r| r.outcome >= Outcome::Hold).peekable();
    let lifts_by_itself = holding.peek().is_some()
        && holding.all(|r| r.code.is_timing())
        && decision.eligible_on.is_some_and(|eligible| eligible < runs_out_on);
    if lifts_by_itself || today < working_day_before(runs_out_on) {
        return;
    }
    let lapse = reason(
        policy,
        ReasonCode::SupplyRunsOutUnresolved,
        vec![
            Evidence::date("supply_runs_out_on", runs_out_on),
            Evidence::integer("days_left", (runs_out_on - today).num_days()),
            Evidence::text("offer", "bridge"),
        ],
        None,
    );
    let mut reasons = std::mem::take(&mut decision.reasons);
    reasons.push(lapse);
    let covered = std::mem::take(&mut decision.covered);
    let standing = decision.standing;
    let window = decision.window;
    let mut rebuilt =
        Decision::from_reasons(reasons, decision.eligible_on, decision.total_daily_mme, &decision.policy_version);
    for task in std::mem::take(&mut decision.tasks) {
        if !rebuilt.tasks.contains(&task) {
            rebuilt.tasks.push(task);
        }
    }
    rebuilt.covered = covered;
    rebuilt.standing = standing;
    rebuilt.window = window;
    *decision = rebuilt;
}

#[cfg(test)]
mod tests;
