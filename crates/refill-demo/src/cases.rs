//! The case mix: which patients are the stable majority and which carry the one thing a working
//! refill clinic has to act on, with the share of each and why.
//!
//! A refill clinic that works is mostly quiet: patients on a settled regimen, seen by their physician
//! every three months, on a current agreement, tested and checked on the PDMP on schedule, and filling
//! on time. The work of a day is the handful of exceptions. Each patient gets at most one case from
//! [`CASE_MIX`], so the shares below are shares of the clinic and add up to the exceptions a day
//! brings; everything not listed is the stable remainder (about 84%). Tapers and acknowledged PDMP findings are
//! current too, so about 89% of the clinic has every monitoring item current.
//!
//! Cases are assigned along a low-discrepancy (golden-ratio) sequence over the patient number, started
//! at a point drawn from the seed, instead of an independent draw per patient: the shares come out
//! within a patient or two of the target in any clinic size, and any case with a share of at least
//! 0.53% (2.618 / 500, the widest gap the sequence leaves among 500 points) occurs in every clinic of 500
//! patients or more, whatever the seed, so every screen has something to show. Patient n still does not
//! depend on how many patients come after it.

use crate::rng::DemoRng;

/// What sets a patient apart from the stable majority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CaseKind {
    /// Everything current, filling on time.
    Stable,
    /// A physician-signed taper in progress, otherwise current (reviewed monthly while tapering).
    Taper,
    /// A taper paused by the physician (withdrawal or worse function), holding the step in force.
    TaperPaused,
    /// The PDMP last checked more than 90 days ago.
    PdmpOverdue,
    /// The drawn drug-test date has passed without a test.
    UdsOverdue,
    /// The treatment agreement is past its yearly renewal.
    AgreementExpired,
    /// No signed agreement on file (lost in a records move, or never signed).
    AgreementMissing,
    /// Naloxone not offered in the last year although the patient is at higher risk.
    NaloxoneNotOffered,
    /// The physician benefit-risk review is more than 90 days old (a high-MME patient's too).
    ReviewOverdue,
    /// The latest drug test shows something unexpected and waits for the physician.
    UnexpectedUds,
    /// The PDMP shows a benzodiazepine from a prescriber outside the clinic, acknowledged.
    OutsidePrescriberAcknowledged,
    /// The PDMP shows a controlled substance from an outside prescriber nobody acknowledged yet.
    OutsidePrescriberUnacknowledged,
    /// A benzodiazepine on the medication list without a current physician acknowledgement.
    BenzodiazepineUnacknowledged,
    /// Fills picked up several days early, cycle after cycle, so supply accumulates.
    EarlyFills,
    /// A new patient: intake done, first prescription not yet filled.
    NewPatient,
    /// A patient transferred from another prescriber, on a stable regimen, fills on record.
    TransferredPatient,
}

/// The share of the clinic in each case (the rest is [`CaseKind::Stable`]).
///
/// - Tapers (4% active, 1% paused): since the 2016 guideline most clinics taper a minority, slowly and
///   by shared decision; a pause is the usual answer to withdrawal, so some plans are paused.
/// - One overdue monitoring item (about 5%: PDMP 1.5%, drug test 1.2%, agreement 1.2% expired and
///   0.6% missing, naloxone 0.8%): the clinic's staff catch up on these at the next refill; a few
///   slip through every month, rarely two at once.
/// - Physician review overdue (0.8%, two in five of them at 90 MME or more): reviews are booked with
///   the refill visits, so only a missed appointment leaves one overdue.
/// - Unexpected drug test (1.5%, in thirds: prescribed drug absent, cocaine, an unprescribed
///   benzodiazepine): published series of chronic-pain clinics find a few percent of screens
///   unexpected over a year; on a given day about 1-2% are waiting for the physician.
/// - Outside prescriber on the PDMP (1.2%, half already acknowledged): a dentist's or an emergency
///   department's prescription now and then, mostly a benzodiazepine from a psychiatrist.
/// - Benzodiazepine without a current acknowledgement (0.6%): co-prescribing is acknowledged at the
///   review; half are new since the last review (the naloxone offer they call for not made yet), half
///   long-standing ones whose acknowledgement a review did not renew.
/// - Early fills that accumulate (0.6%): a rare pattern a physician must see.
/// - New (0.6%) and transferred (0.6%) patients: a clinic of this size takes in a few a month.
pub const CASE_MIX: &[(CaseKind, f64)] = &[
    (CaseKind::Taper, 0.040),
    (CaseKind::TaperPaused, 0.010),
    (CaseKind::PdmpOverdue, 0.015),
    (CaseKind::UdsOverdue, 0.012),
    (CaseKind::AgreementExpired, 0.012),
    (CaseKind::AgreementMissing, 0.006),
    (CaseKind::NaloxoneNotOffered, 0.008),
    (CaseKind::ReviewOverdue, 0.008),
    (CaseKind::UnexpectedUds, 0.015),
    (CaseKind::OutsidePrescriberAcknowledged, 0.006),
    (CaseKind::OutsidePrescriberUnacknowledged, 0.006),
    (CaseKind::BenzodiazepineUnacknowledged, 0.006),
    (CaseKind::EarlyFills, 0.006),
    (CaseKind::NewPatient, 0.006),
    (CaseKind::TransferredPatient, 0.006),
];

/// The fractional part of the golden ratio: the step of the sequence that leaves the most even gaps.
const GOLDEN_STEP: f64 = 0.618_033_988_749_894_9;
/// A second irrational step (sqrt(2) - 1) for the fill phase, so the due date does not follow the case.
const SILVER_STEP: f64 = 0.414_213_562_373_095_1;

/// A patient's case, and where in its share the patient falls (0 to 1), for variants within a case.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assignment {
    pub kind: CaseKind,
    pub within: f64,
}

/// The low-discrepancy positions of a clinic: one start per sequence, drawn from the seed.
#[derive(Debug, Clone, Copy)]
pub struct Positions {
    case_start: f64,
    phase_start: f64,
}

impl Positions {
    pub fn new(root: &DemoRng) -> Positions {
        let mut rng = root.fork(u64::MAX - 1);
        Positions { case_start: rng.unit(), phase_start: rng.unit() }
    }

    /// The case of patient `index`.
    pub fn case(&self, index: usize) -> Assignment {
        let mut point = fraction(self.case_start + index as f64 * GOLDEN_STEP);
        for (kind, share) in CASE_MIX {
            if point < *share {
                return Assignment { kind: *kind, within: point / share };
            }
            point -= share;
        }
        Assignment { kind: CaseKind::Stable, within: 0.0 }
    }

    /// Where patient `index` is in the refill cycle (0 to 1): spread evenly, so every day of the cycle
    /// has about the same number of supplies running out.
    pub fn cycle_phase(&self, index: usize) -> f64 {
        fraction(self.phase_start + index as f64 * SILVER_STEP)
    }
}

fn fraction(value: f64) -> f64 {
    value - value.floor()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_leaves_a_stable_majority() {
        let exceptions: f64 = CASE_MIX.iter().map(|(_, share)| share).sum();
        assert!((0.10..=0.20).contains(&exceptions), "{exceptions}");
    }

    #[test]
    fn every_case_occurs_in_any_500_consecutive_patients() {
        for seed in 0..20 {
            let positions = Positions::new(&DemoRng::new(seed));
            for start in [0usize, 137, 4_000] {
                for (kind, _) in CASE_MIX {
                    assert!(
                        (start..start + 500).any(|index| positions.case(index).kind == *kind),
                        "seed {seed}, from {start}: no {kind:?}"
                    );
                }
            }
        }
    }
}
