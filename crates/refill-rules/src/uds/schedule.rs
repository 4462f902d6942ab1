//! Random but replayable UDS dates: SplitMix64 keyed by (stored seed, patient, period index), so a date
//! drawn today can be recomputed years later from what the store keeps, and nobody can predict it.
//!
//! The generator is implemented here (no `rand` dependency) because its output is a stored contract:
//! `splitmix64-v1` must give the same numbers in every future build. A different algorithm gets a new
//! name; old seeds keep replaying with the algorithm stored next to them.

use chrono::{Duration, NaiveDate};

use super::{UdsPolicy, UdsTier};
use crate::error::RulesError;
use crate::facts::PatientId;

/// The name stored with every seed drawn by this module.
pub const SPLITMIX64_V1: &str = "splitmix64-v1";

/// A stored seed and the algorithm that uses it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UdsSeed {
    pub algorithm: String,
    pub seed: u64,
}

impl UdsSeed {
    /// A seed for the current algorithm (the shell draws `seed` once per clinic or patient and stores it).
    pub fn splitmix64(seed: u64) -> UdsSeed {
        UdsSeed { algorithm: SPLITMIX64_V1.to_string(), seed }
    }
}

/// SplitMix64 (Steele, Lea and Flood 2014; constants from Vigna's reference `splitmix64.c`).
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The stream for one patient and period: the key is folded into the seed with the SplitMix64
    /// finaliser, so neighbouring patients and periods get unrelated streams.
    pub fn keyed(seed: u64, patient: PatientId, period_index: u64) -> SplitMix64 {
        let key = mix64((patient.0 as u64) ^ mix64(period_index.wrapping_add(GOLDEN_GAMMA)));
        SplitMix64::new(seed ^ key)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// A uniform integer in `0..n` (`n > 0`), by rejection so that no value is favoured.
    pub fn below(&mut self, n: u64) -> u64 {
        let limit = (u64::MAX / n) * n;
        loop {
            let x = self.next_u64();
            if x < limit {
                return x % n;
            }
        }
    }
}

/// A drawn date with everything needed to explain and replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrawnDate {
    pub date: NaiveDate,
    /// First and last possible dates of the window the date was drawn from (inclusive).
    pub window_start: NaiveDate,
    pub window_end: NaiveDate,
    pub tier: UdsTier,
    pub period_days: i64,
    pub algorithm: String,
    pub period_index: u64,
}

/// The first and last gap (days after the last test) a date may be drawn at for a period: centred on
/// the period (mean gap = period), no earlier than `min_gap_days`, no later than `max_gap_days`, and at
/// least `min_window_days` wide, which near the cap moves the window earlier (never later).
pub fn gap_window(period_days: i64, policy: &UdsPolicy) -> (i64, i64) {
    let cap = policy.max_gap_days;
    let period = period_days.min(cap);
    let half = (period - policy.min_gap_days).min(cap - period).max(0);
    let latest = period + half;
    let mut earliest = period - half;
    if latest - earliest + 1 < policy.min_window_days {
        earliest = (latest - policy.min_window_days + 1).max(policy.min_gap_days.min(latest));
    }
    (earliest, latest)
}

/// Draw the next scheduled test date after the test collected on `last_test`.
///
/// The date is uniform over a window of gaps centred on the tier's period (`gap_window`), so over
/// many draws a tier is tested once per period on average: the old window from `min_gap` to the period
/// had its mean at the midpoint and tested about twice as often as the policy said. `period_index`
/// counts the draws for this patient (the shell stores it with the date so the draw can be replayed).
/// A for-cause test counts as the last test: draw again from its date.
pub fn draw_next_date(
    last_test: NaiveDate,
    tier: UdsTier,
    seed: &UdsSeed,
    patient: PatientId,
    period_index: u64,
    policy: &UdsPolicy,
) -> Result<DrawnDate, RulesError> {
    if seed.algorithm != SPLITMIX64_V1 {
        return Err(RulesError::invalid(
            "uds.seed.algorithm",
            format!("unknown algorithm {:?} (this build replays {SPLITMIX64_V1})", seed.algorithm),
        ));
    }
    let period_days = policy.period_days(tier);
    let (earliest, latest) = gap_window(period_days, policy);
    if earliest < 1 {
        return Err(RulesError::invalid(
            "uds.min_gap_days",
            "the window must start at least one day after the last test",
        ));
    }
    let span = (latest - earliest + 1) as u64;
    let offset = earliest + SplitMix64::keyed(seed.seed, patient, period_index).below(span) as i64;
    Ok(DrawnDate {
        date: last_test + Duration::days(offset),
        window_start: last_test + Duration::days(earliest),
        window_end: last_test + Duration::days(latest),
        tier,
        period_days,
        algorithm: seed.algorithm.clone(),
        period_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_output() {
        // First outputs of Vigna's splitmix64.c seeded with 1234567.
        let mut generator = SplitMix64::new(1_234_567);
        assert_eq!(generator.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(generator.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(generator.next_u64(), 9_817_491_932_198_370_423);
    }

    #[test]
    fn keyed_streams_are_pinned_so_stored_seeds_replay() {
        // These numbers are a stored contract: if this test fails, the algorithm changed and needs a new name.
        let mut stream = SplitMix64::keyed(42, PatientId(7), 0);
        let pinned = stream.next_u64();
        let mut again = SplitMix64::keyed(42, PatientId(7), 0);
        assert_eq!(again.next_u64(), pinned);
        assert_ne!(SplitMix64::keyed(42, PatientId(8), 0).next_u64(), pinned);
        assert_ne!(SplitMix64::keyed(42, PatientId(7), 1).next_u64(), pinned);
        assert_eq!(pinned, PINNED_42_7_0);
    }

    const PINNED_42_7_0: u64 = 14_318_171_674_995_614_087;

    #[test]
    fn below_stays_in_range() {
        let mut generator = SplitMix64::new(9);
        for n in [1u64, 2, 3, 92, 336] {
            for _ in 0..1000 {
                assert!(generator.below(n) < n);
            }
        }
    }

    #[test]
    fn unknown_algorithms_are_refused() {
        let seed = UdsSeed { algorithm: "mt19937".to_string(), seed: 1 };
        let last = NaiveDate::from_ymd_opt(2026, 1, 10).unwrap();
        assert!(draw_next_date(last, UdsTier::High, &seed, PatientId(1), 0, &UdsPolicy::defaults()).is_err());
    }
}
