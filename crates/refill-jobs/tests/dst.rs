//! DST correctness of wall-clock schedules in America/New_York and Europe/London: a time in the spring
//! gap fires once at the first valid minute after it, a time in the autumn fold fires once at the
//! earlier instant, and every local date gets exactly one occurrence.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use refill_jobs::plan::{Misfire, Occurrence, Plan, Semantics};

fn local(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(h, min, 0).unwrap()
}

fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.from_utc_datetime(&local(y, m, d, h, min))
}

/// Every occurrence from `start` (UTC) for `days` days, as the scheduler would walk them.
fn walk(plan: &Plan, start: DateTime<Utc>, days: i64) -> Vec<Occurrence> {
    let mut out = Vec::new();
    let mut occurrence = plan.first_after(start).unwrap();
    while occurrence.fire_at < start + Duration::days(days) {
        out.push(occurrence);
        occurrence = plan.next_after_local(occurrence.local).unwrap();
    }
    out
}

fn on(occurrences: &[Occurrence], date: NaiveDate) -> Vec<Occurrence> {
    occurrences.iter().copied().filter(|o| o.local.date() == date).collect()
}

#[test]
fn new_york_spring_gap_fires_once_at_three() {
    // 2026-03-08: clocks jump from 02:00 EST to 03:00 EDT.
    let plan = Plan::new("daily", "0 30 2 * * *", "America/New_York", Semantics::WallClock).unwrap();
    let all = walk(&plan, utc(2026, 3, 6, 0, 0), 4);
    let day = on(&all, NaiveDate::from_ymd_opt(2026, 3, 8).unwrap());
    assert_eq!(day.len(), 1, "{all:?}");
    // 03:00 EDT = 07:00 UTC.
    assert_eq!(day[0].fire_at, utc(2026, 3, 8, 7, 0));
    assert_eq!(day[0].local, local(2026, 3, 8, 2, 30));
    // The days around it fire at 02:30 local as usual: 07:30 UTC (EST) before, 06:30 UTC (EDT) after.
    assert_eq!(on(&all, NaiveDate::from_ymd_opt(2026, 3, 7).unwrap())[0].fire_at, utc(2026, 3, 7, 7, 30));
    assert_eq!(on(&all, NaiveDate::from_ymd_opt(2026, 3, 9).unwrap())[0].fire_at, utc(2026, 3, 9, 6, 30));
}

#[test]
fn new_york_autumn_fold_fires_once_at_the_earlier_instant() {
    // 2026-11-01: 01:00-02:00 happens twice (EDT, then EST).
    let plan = Plan::new("daily", "0 30 1 * * *", "America/New_York", Semantics::WallClock).unwrap();
    let all = walk(&plan, utc(2026, 10, 30, 0, 0), 4);
    let day = on(&all, NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
    assert_eq!(day.len(), 1, "{all:?}");
    // 01:30 EDT = 05:30 UTC (the later 01:30 EST would be 06:30 UTC).
    assert_eq!(day[0].fire_at, utc(2026, 11, 1, 5, 30));
}

#[test]
fn the_cron_crate_alone_gets_both_wrong() {
    // Documents why the planner exists: evaluated in the zone, cron 0.17 doubles the fold and skips the gap.
    use std::str::FromStr;
    let zone = chrono_tz::America::New_York;
    let fold = cron::Schedule::from_str("0 30 1 * * *").unwrap();
    let start = zone.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let fires: Vec<_> = fold.after(&start).take_while(|t| t.date_naive().day0() == 0).collect();
    assert_eq!(fires.len(), 2, "{fires:?}");
    let gap = cron::Schedule::from_str("0 30 2 * * *").unwrap();
    let start = zone.with_ymd_and_hms(2026, 3, 8, 0, 0, 0).unwrap();
    let next = gap.after(&start).next().unwrap();
    assert_eq!(next.date_naive(), NaiveDate::from_ymd_opt(2026, 3, 9).unwrap());
}

use chrono::Datelike;

#[test]
fn london_spring_gap_fires_once_at_two() {
    // 2026-03-29: clocks jump from 01:00 GMT to 02:00 BST.
    let plan = Plan::new("daily", "0 30 1 * * *", "Europe/London", Semantics::WallClock).unwrap();
    let all = walk(&plan, utc(2026, 3, 27, 0, 0), 4);
    let day = on(&all, NaiveDate::from_ymd_opt(2026, 3, 29).unwrap());
    assert_eq!(day.len(), 1, "{all:?}");
    // 02:00 BST = 01:00 UTC.
    assert_eq!(day[0].fire_at, utc(2026, 3, 29, 1, 0));
}

#[test]
fn london_autumn_fold_fires_once_at_the_earlier_instant() {
    // 2026-10-25: 01:00-02:00 happens twice (BST, then GMT).
    let plan = Plan::new("daily", "0 30 1 * * *", "Europe/London", Semantics::WallClock).unwrap();
    let all = walk(&plan, utc(2026, 10, 23, 0, 0), 4);
    let day = on(&all, NaiveDate::from_ymd_opt(2026, 10, 25).unwrap());
    assert_eq!(day.len(), 1, "{all:?}");
    // 01:30 BST = 00:30 UTC.
    assert_eq!(day[0].fire_at, utc(2026, 10, 25, 0, 30));
}

#[test]
fn one_occurrence_per_local_date_over_two_years_in_both_zones() {
    for zone in ["America/New_York", "Europe/London"] {
        for spec in ["0 30 1 * * *", "0 30 2 * * *", "0 0 0 * * *", "0 59 23 * * *"] {
            let plan = Plan::new("daily", spec, zone, Semantics::WallClock).unwrap();
            let all = walk(&plan, utc(2026, 1, 1, 12, 0), 730);
            let mut dates: Vec<NaiveDate> = all.iter().map(|o| o.local.date()).collect();
            let count = dates.len();
            dates.dedup();
            assert_eq!(dates.len(), count, "{zone} {spec}: a date fired twice");
            assert!(count >= 729, "{zone} {spec}: only {count} occurrences");
            assert!(all.windows(2).all(|w| w[0].fire_at < w[1].fire_at), "{zone} {spec}: not increasing");
        }
    }
}

#[test]
fn the_tick_across_the_fold_fires_once() {
    // A cursor set just before the fall-back, ticked every minute of wall time through the repeated hour.
    let plan = Plan::new("daily", "0 30 1 * * *", "America/New_York", Semantics::WallClock).unwrap();
    let mut cursor = plan.first_after(utc(2026, 11, 1, 4, 0)).unwrap();
    let mut fired = Vec::new();
    let mut now = utc(2026, 11, 1, 4, 0);
    while now < utc(2026, 11, 1, 9, 0) {
        let due = plan.due(cursor, now, Misfire::FireOnce, Duration::minutes(5)).unwrap();
        fired.extend(due.fire);
        cursor = due.next;
        now += Duration::minutes(1);
    }
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].fire_at, utc(2026, 11, 1, 5, 30));
}

#[test]
fn the_tick_across_the_gap_fires_once() {
    let plan = Plan::new("daily", "0 30 2 * * *", "America/New_York", Semantics::WallClock).unwrap();
    let mut cursor = plan.first_after(utc(2026, 3, 8, 5, 0)).unwrap();
    let mut fired = Vec::new();
    let mut now = utc(2026, 3, 8, 5, 0);
    while now < utc(2026, 3, 8, 10, 0) {
        let due = plan.due(cursor, now, Misfire::Skip, Duration::minutes(5)).unwrap();
        fired.extend(due.fire);
        cursor = due.next;
        now += Duration::minutes(1);
    }
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].fire_at, utc(2026, 3, 8, 7, 0));
}
