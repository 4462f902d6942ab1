//! Check-ins before taper steps (refill-cycle.md "Tapers in the cycle"; clinical-rules.md §6.4, §7.2):
//! pain and function as PEG, withdrawal, and the patient's wish to go on, pause or slow. `assess`
//! says whether one check-in lets the taper go on; `gate` says whether a step may take effect on its
//! date. A missed check-in, significant withdrawal, worse function or a wish to pause or slow stops
//! the step for a physician: the software never applies a step without a check-in that lets it.

use chrono::{Duration, NaiveDate};

/// PEG (Krebs 2009): each item 0-10 over the past week.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peg {
    /// Average pain.
    pub pain: u8,
    /// Interference with enjoyment of life.
    pub enjoyment: u8,
    /// Interference with general activity.
    pub activity: u8,
}

impl Peg {
    /// The PEG score: the mean of the three items.
    pub fn score(self) -> f64 {
        (f64::from(self.pain) + f64::from(self.enjoyment) + f64::from(self.activity)) / 3.0
    }

    /// Function: the mean of the two interference items (higher is worse).
    pub fn interference(self) -> f64 {
        (f64::from(self.enjoyment) + f64::from(self.activity)) / 2.0
    }

    /// Each item must be 0 to 10.
    pub fn problems(self) -> Vec<String> {
        [("pain", self.pain), ("enjoyment", self.enjoyment), ("activity", self.activity)]
            .into_iter()
            .filter(|(_, value)| *value > 10)
            .map(|(name, value)| format!("PEG {name} must be 0 to 10, not {value}"))
            .collect()
    }
}

/// Withdrawal symptoms the patient reports since the last step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Withdrawal {
    None,
    Mild,
    Significant,
}

impl Withdrawal {
    pub fn as_str(self) -> &'static str {
        match self {
            Withdrawal::None => "none",
            Withdrawal::Mild => "mild",
            Withdrawal::Significant => "significant",
        }
    }

    pub fn parse(text: &str) -> Option<Withdrawal> {
        match text.trim() {
            "none" => Some(Withdrawal::None),
            "mild" => Some(Withdrawal::Mild),
            "significant" => Some(Withdrawal::Significant),
            _ => None,
        }
    }
}

/// What the patient wishes for the next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wish {
    GoOn,
    Pause,
    Slow,
}

impl Wish {
    pub fn as_str(self) -> &'static str {
        match self {
            Wish::GoOn => "go_on",
            Wish::Pause => "pause",
            Wish::Slow => "slow",
        }
    }

    pub fn parse(text: &str) -> Option<Wish> {
        match text.trim() {
            "go_on" => Some(Wish::GoOn),
            "pause" => Some(Wish::Pause),
            "slow" => Some(Wish::Slow),
            _ => None,
        }
    }
}

/// One recorded check-in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckIn {
    pub on: NaiveDate,
    pub peg: Peg,
    pub withdrawal: Withdrawal,
    pub wish: Wish,
}

/// Why a check-in does not let the taper go on, as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopReason {
    SignificantWithdrawal,
    WorseFunction,
    PatientAsksToPause,
    PatientAsksToSlow,
    MissedCheckIn,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::SignificantWithdrawal => "significant_withdrawal",
            StopReason::WorseFunction => "worse_function",
            StopReason::PatientAsksToPause => "patient_asks_to_pause",
            StopReason::PatientAsksToSlow => "patient_asks_to_slow",
            StopReason::MissedCheckIn => "missed_check_in",
        }
    }

    /// Words for the physician.
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::SignificantWithdrawal => "significant withdrawal symptoms",
            StopReason::WorseFunction => "worse function (PEG interference rose by 30% or more)",
            StopReason::PatientAsksToPause => "the patient asks to pause",
            StopReason::PatientAsksToSlow => "the patient asks to slow down",
            StopReason::MissedCheckIn => "no check-in before the step",
        }
    }

    /// Whether the stop comes from the patient's own experience or wish (the patient cannot go on for
    /// now), as opposed to a check-in that did not happen.
    pub fn is_patients(self) -> bool {
        !matches!(self, StopReason::MissedCheckIn)
    }
}

/// Worse function: the PEG interference mean rose by this fraction or more (and by at least one point)
/// since the previous check-in (CDC 2022 uses 30% as clinically meaningful change in pain and function).
pub const WORSE_FUNCTION_FRACTION: f64 = 0.30;

/// Whether `check_in` lets the taper go on, given the previous check-in (for the trend). Empty: go on.
pub fn assess(check_in: &CheckIn, previous: Option<&CheckIn>) -> Vec<StopReason> {
    let mut reasons = Vec::new();
    if check_in.withdrawal == Withdrawal::Significant {
        reasons.push(StopReason::SignificantWithdrawal);
    }
    if let Some(previous) = previous {
        let before = previous.peg.interference();
        let now = check_in.peg.interference();
        if now - before >= 1.0 && now >= before * (1.0 + WORSE_FUNCTION_FRACTION) {
            reasons.push(StopReason::WorseFunction);
        }
    }
    match check_in.wish {
        Wish::GoOn => {}
        Wish::Pause => reasons.push(StopReason::PatientAsksToPause),
        Wish::Slow => reasons.push(StopReason::PatientAsksToSlow),
    }
    reasons
}

/// Whether a step may take effect.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// A check-in in the window lets it.
    Ready(CheckIn),
    /// The step waits for a physician, for these reasons.
    Stop(Vec<StopReason>),
}

/// The step starting on `step_on` may take effect when the latest check-in recorded on or before that
/// date, no more than `max_age_days` old and not before `not_before` (the previous step, or the plan's
/// signing), lets the taper go on. `check_ins` in any order.
pub fn gate(step_on: NaiveDate, not_before: NaiveDate, max_age_days: i64, check_ins: &[CheckIn]) -> Gate {
    let mut sorted: Vec<&CheckIn> = check_ins.iter().filter(|c| c.on <= step_on).collect();
    sorted.sort_by_key(|c| c.on);
    let oldest = (step_on - Duration::days(max_age_days)).max(not_before);
    let Some((latest, earlier)) = sorted.split_last() else { return Gate::Stop(vec![StopReason::MissedCheckIn]) };
    if latest.on < oldest {
        return Gate::Stop(vec![StopReason::MissedCheckIn]);
    }
    let reasons = assess(latest, earlier.last().copied());
    if reasons.is_empty() { Gate::Ready(**latest) } else { Gate::Stop(reasons) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
    }

    fn check_in(on: NaiveDate, enjoyment: u8, withdrawal: Withdrawal, wish: Wish) -> CheckIn {
        CheckIn { on, peg: Peg { pain: 5, enjoyment, activity: enjoyment }, withdrawal, wish }
    }

    #[test]
    fn no_check_in_means_no_step() {
        assert_eq!(gate(day(20), day(1), 28, &[]), Gate::Stop(vec![StopReason::MissedCheckIn]));
        // One before the previous step does not count for this one.
        let old = check_in(day(1), 4, Withdrawal::None, Wish::GoOn);
        assert_eq!(gate(day(20), day(2), 28, &[old]), Gate::Stop(vec![StopReason::MissedCheckIn]));
        // One after the step date does not count either.
        let late = check_in(day(21), 4, Withdrawal::None, Wish::GoOn);
        assert_eq!(gate(day(20), day(2), 28, &[late]), Gate::Stop(vec![StopReason::MissedCheckIn]));
    }

    #[test]
    fn a_good_check_in_lets_the_step_go() {
        let good = check_in(day(15), 4, Withdrawal::Mild, Wish::GoOn);
        assert_eq!(gate(day(20), day(2), 28, &[good]), Gate::Ready(good));
    }

    #[test]
    fn withdrawal_worse_function_or_a_wish_stops_the_step() {
        let first = check_in(day(3), 4, Withdrawal::None, Wish::GoOn);
        let withdrawal = check_in(day(15), 4, Withdrawal::Significant, Wish::GoOn);
        assert_eq!(
            gate(day(20), day(2), 28, &[first, withdrawal]),
            Gate::Stop(vec![StopReason::SignificantWithdrawal])
        );
        let worse = check_in(day(15), 6, Withdrawal::None, Wish::GoOn);
        assert_eq!(gate(day(20), day(2), 28, &[first, worse]), Gate::Stop(vec![StopReason::WorseFunction]));
        let slow = check_in(day(15), 4, Withdrawal::None, Wish::Slow);
        assert_eq!(assess(&slow, Some(&first)), vec![StopReason::PatientAsksToSlow]);
        let pause = check_in(day(15), 4, Withdrawal::None, Wish::Pause);
        assert_eq!(assess(&pause, None), vec![StopReason::PatientAsksToPause]);
        // A small change in function is not "worse".
        let same = check_in(day(15), 5, Withdrawal::None, Wish::GoOn);
        assert!(assess(&same, Some(&first)).is_empty());
    }

    #[test]
    fn peg_items_are_bounded() {
        assert!(Peg { pain: 11, enjoyment: 0, activity: 0 }.problems()[0].contains("pain"));
        assert!((Peg { pain: 6, enjoyment: 3, activity: 3 }.score() - 4.0).abs() < 1e-9);
    }
}
