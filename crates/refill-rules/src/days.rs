//! Whole days between two dates, and a date moved by whole days: the date computations every rule
//! makes, several times a decision. Each gives what chrono's `TimeDelta` arithmetic gives, without
//! going through seconds.

use chrono::{Datelike, Days, NaiveDate};

/// `(later - earlier).num_days()`, by day-of-year arithmetic when the dates fall in one year or in
/// adjacent years (every age the rules count, in practice); chrono's full calendar arithmetic otherwise.
pub(crate) fn days_between(later: NaiveDate, earlier: NaiveDate) -> i64 {
    let (later_year, earlier_year) = (later.year(), earlier.year());
    let (later_day, earlier_day) = (i64::from(later.ordinal()), i64::from(earlier.ordinal()));
    if later_year == earlier_year {
        later_day - earlier_day
    } else if later_year == earlier_year + 1 {
        year_length(earlier) - earlier_day + later_day
    } else if earlier_year == later_year + 1 {
        -(year_length(later) - later_day + earlier_day)
    } else {
        (later - earlier).num_days()
    }
}

/// `date + Duration::days(days)`, by day-of-year arithmetic when the result falls in the same or an
/// adjacent year; chrono's day arithmetic otherwise. Panics on leaving chrono's date range, as the
/// `TimeDelta` addition does.
pub(crate) fn add_days(date: NaiveDate, days: i64) -> NaiveDate {
    if let Some(moved) = move_within_adjacent_years(date, days) {
        return moved;
    }
    let moved = if days >= 0 {
        date.checked_add_days(Days::new(days.unsigned_abs()))
    } else {
        date.checked_sub_days(Days::new(days.unsigned_abs()))
    };
    moved.expect("`NaiveDate + TimeDelta` overflowed")
}

/// `date - Duration::days(days)`; see `add_days`.
pub(crate) fn sub_days(date: NaiveDate, days: i64) -> NaiveDate {
    if let Some(moved) = days.checked_neg().and_then(|back| move_within_adjacent_years(date, back)) {
        return moved;
    }
    let moved = if days >= 0 {
        date.checked_sub_days(Days::new(days.unsigned_abs()))
    } else {
        date.checked_add_days(Days::new(days.unsigned_abs()))
    };
    moved.expect("`NaiveDate - TimeDelta` overflowed")
}

/// The date `days` days after `date` when it lies in the same, the previous or the next year (`None`
/// otherwise, or outside chrono's range): the day of the year, carried over one year end at most.
fn move_within_adjacent_years(date: NaiveDate, days: i64) -> Option<NaiveDate> {
    let year = date.year();
    let day = i64::from(date.ordinal()).checked_add(days)?;
    let this_year = year_length(date);
    let (year, day) = if day < 1 {
        let previous = NaiveDate::from_yo_opt(year.checked_sub(1)?, 1)?;
        (year - 1, day + year_length(previous))
    } else if day > this_year {
        (year.checked_add(1)?, day - this_year)
    } else {
        (year, day)
    };
    NaiveDate::from_yo_opt(year, u32::try_from(day).ok()?)
}

/// 365, or 366 in a leap year.
fn year_length(date: NaiveDate) -> i64 {
    if date.leap_year() { 366 } else { 365 }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    #[test]
    fn agrees_with_chrono_across_years_and_leap_days() {
        let start = NaiveDate::from_ymd_opt(1999, 12, 1).unwrap();
        let dates: Vec<NaiveDate> = (0..1500).map(|n| start + Duration::days(n * 3)).collect();
        for &a in &dates {
            for &b in dates.iter().step_by(5) {
                assert_eq!(days_between(a, b), (a - b).num_days(), "{a} - {b}");
            }
        }
    }

    #[test]
    fn the_edges_of_chrono_s_range_behave_as_chrono() {
        for date in [NaiveDate::MIN, NaiveDate::MAX] {
            for days in [-400, -1, 0, 1, 400] {
                let chrono = date.checked_add_signed(Duration::days(days));
                let ours = std::panic::catch_unwind(|| add_days(date, days)).ok();
                assert_eq!(ours, chrono, "{date} + {days}");
            }
            assert_eq!(days_between(date, date), 0);
        }
        assert_eq!(days_between(NaiveDate::MAX, NaiveDate::MIN), (NaiveDate::MAX - NaiveDate::MIN).num_days());
    }

    #[test]
    fn moving_by_days_agrees_with_chrono() {
        let start = NaiveDate::from_ymd_opt(2022, 12, 1).unwrap();
        for offset in (0..1600).step_by(3) {
            let date = start + Duration::days(offset);
            for days in [
                -800, -731, -730, -367, -366, -365, -364, -31, -1, 0, 1, 25, 30, 59, 60, 364, 365, 366, 367, 730, 731,
                1000,
            ] {
                assert_eq!(add_days(date, days), date + Duration::days(days), "{date} + {days}");
                assert_eq!(sub_days(date, days), date - Duration::days(days), "{date} - {days}");
            }
        }
    }
}
