//! Whole days between two dates, and a date moved by whole days: the date computations every rule
//! makes, several times a decision. Each gives what chrono's `TimeDelta` arithmetic gives, without
//! going through seconds.

use chrono::{Datelike, Days, NaiveDate};

/// `(later - earlier).num_days()`, by day-of-year subtraction when both dates fall in one year (most
/// ages the rules count); chrono's full calendar arithmetic otherwise.
pub(crate) fn days_between(later: NaiveDate, earlier: NaiveDate) -> i64 {
    if later.year() == earlier.year() {
        i64::from(later.ordinal()) - i64::from(earlier.ordinal())
    } else {
        (later - earlier).num_days()
    }
}

/// `date + Duration::days(days)`, through chrono's day arithmetic (no seconds). Panics on leaving
/// chrono's date range, as the `TimeDelta` addition does.
pub(crate) fn add_days(date: NaiveDate, days: i64) -> NaiveDate {
    let moved = if days >= 0 {
        date.checked_add_days(Days::new(days.unsigned_abs()))
    } else {
        date.checked_sub_days(Days::new(days.unsigned_abs()))
    };
    moved.expect("`NaiveDate + TimeDelta` overflowed")
}

/// `date - Duration::days(days)`; see `add_days`.
pub(crate) fn sub_days(date: NaiveDate, days: i64) -> NaiveDate {
    let moved = if days >= 0 {
        date.checked_sub_days(Days::new(days.unsigned_abs()))
    } else {
        date.checked_add_days(Days::new(days.unsigned_abs()))
    };
    moved.expect("`NaiveDate - TimeDelta` overflowed")
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    #[test]
    fn agrees_with_chrono_across_years_and_leap_days() {
        let start = NaiveDate::from_ymd_opt(1999, 12, 1).unwrap();
        let dates: Vec<NaiveDate> = (0..1200).map(|n| start + Duration::days(n * 3)).collect();
        for &a in &dates {
            for &b in dates.iter().step_by(7) {
                assert_eq!(days_between(a, b), (a - b).num_days(), "{a} - {b}");
            }
        }
    }

    #[test]
    fn moving_by_days_agrees_with_chrono() {
        let start = NaiveDate::from_ymd_opt(2023, 1, 1).unwrap();
        for offset in (0..1500).step_by(11) {
            let date = start + Duration::days(offset);
            for days in [-800, -366, -365, -31, -1, 0, 1, 25, 30, 59, 60, 365, 366, 1000] {
                assert_eq!(add_days(date, days), date + Duration::days(days), "{date} + {days}");
                assert_eq!(sub_days(date, days), date - Duration::days(days), "{date} - {days}");
            }
        }
    }
}
