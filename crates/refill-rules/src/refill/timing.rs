//! Fill timing: the on-time threshold, early fills that accumulate, and whether a hold can clear
//! before the supply runs out (clinical-rules.md §5.3).
//!
//! A request is on time when `days_elapsed >= on_time_fraction x days_supply` of the last fill (0.85
//! x 30 = 25.5: day 26 yes, day 25 no). Early fills must not accumulate: the days supplied by fills in
//! the lookback window may exceed the days elapsed since the first of them by at most the allowance
//! (fills handed over on the same day, e.g. two products of one regimen, count once at the longest
//! supply). The accumulation hold lifts on the first date the supplied days fit, counted from the same
//! first fill; it is reported only when it holds the request longer than the on-time rule does.
//! An early request is held until the eligible date; if that date falls on or after the day the supply
//! runs out (last fill + days supply), a hold would leave the patient without medication, so it
//! escalates instead (HHS 2019: no abrupt discontinuation).

use chrono::NaiveDate;

use super::RuleContext;
use crate::days::{add_days, days_between, sub_days};
use crate::decision::{Evidence, ReasonCode};
use crate::facts::Fill;

/// The first day a fill of `days_supply` days is on time: ceil(fraction x days supply) days after it.
pub(crate) fn on_time_day(days_supply: u32, on_time_fraction: f64) -> i64 {
    // The epsilon keeps products that are whole in decimal (0.85 x 20 = 17) from rounding up to 18
    // through binary representation error.
    (on_time_fraction * f64::from(days_supply) - 1e-9).ceil().max(0.0) as i64
}

pub(super) fn check(ctx: &mut RuleContext) {
    let today = ctx.today;
    let last_fill = ctx
        .facts
        .fills
        .iter()
        .filter(|fill| fill.filled_on <= today)
        .max_by(|a, b| a.filled_on.cmp(&b.filled_on).then(a.days_supply.cmp(&b.days_supply)));
    let Some(last_fill) = last_fill else {
        // No fill on record: timing and accumulation cannot be checked, so a physician looks first.
        ctx.fire(
            ReasonCode::NoFillHistory,
            vec![Evidence::integer("fills_on_record", ctx.facts.fills.len() as i64)],
            None,
            false,
        );
        return;
    };
    let policy = &ctx.policy.refill;
    let days_elapsed = ctx.age_days(last_fill.filled_on);
    let on_time_date = add_days(last_fill.filled_on, on_time_day(last_fill.days_supply, policy.on_time_fraction));
    let runs_out_on = add_days(last_fill.filled_on, i64::from(last_fill.days_supply));
    let accumulation =
        accumulation(&ctx.facts.fills, today, policy.early_fill_lookback_days, policy.early_fill_allowance_days);

    let mut eligible_on = on_time_date;
    if today < on_time_date {
        ctx.fire(
            ReasonCode::EarlyRequest,
            vec![
                Evidence::date("last_fill_on", last_fill.filled_on),
                Evidence::integer("days_supply", i64::from(last_fill.days_supply)),
                Evidence::integer("days_elapsed", days_elapsed),
                Evidence::number("on_time_fraction", policy.on_time_fraction),
                Evidence::date("eligible_on", on_time_date),
            ],
            None,
            false,
        );
    }
    // Accumulation only adds a reason when it is what holds the request (its clearing date is later
    // than the on-time date and the request date): otherwise the early-request reason says it all.
    if let Some(acc) = accumulation
        && acc.clears_on > today
        && acc.clears_on > on_time_date
    {
        eligible_on = acc.clears_on;
        ctx.fire(
            ReasonCode::EarlyFillAccumulation,
            vec![
                Evidence::integer("lookback_days", policy.early_fill_lookback_days),
                Evidence::date("first_fill_in_window_on", acc.first_fill_on),
                Evidence::integer("fills_in_window", acc.fills),
                Evidence::integer("days_supplied", acc.days_supplied),
                Evidence::integer("days_elapsed", acc.days_elapsed),
                Evidence::integer("allowance_days", policy.early_fill_allowance_days),
                Evidence::date("eligible_on", acc.clears_on),
            ],
            None,
            false,
        );
    }
    if eligible_on <= today {
        return;
    }
    ctx.eligible_on = Some(eligible_on);
    // On the run-out day itself the patient is already without medication: a hold to then escalates.
    if eligible_on >= runs_out_on {
        ctx.fire(
            ReasonCode::EarlyRequestSupplyRunsOut,
            vec![
                Evidence::date("eligible_on", eligible_on),
                Evidence::date("supply_runs_out_on", runs_out_on),
                Evidence::integer("days_without_supply", (eligible_on - runs_out_on).num_days()),
            ],
            None,
            false,
        );
    }
}

/// Early fills accumulating in the lookback window: more days supplied than days elapsed plus the
/// allowance.
pub(crate) struct Accumulation {
    pub first_fill_on: NaiveDate,
    pub fills: i64,
    pub days_supplied: i64,
    pub days_elapsed: i64,
    /// The first date on which the supplied days no longer exceed elapsed days plus the allowance,
    /// counted from the same first fill.
    pub clears_on: NaiveDate,
}

pub(crate) fn accumulation(
    fills: &[Fill],
    today: NaiveDate,
    lookback_days: i64,
    allowance_days: i64,
) -> Option<Accumulation> {
    let window_start = sub_days(today, lookback_days);
    let mut first_fill_on: Option<NaiveDate> = None;
    let mut days_supplied = 0i64;
    let mut count = 0i64;
    let in_window = |fill: &&Fill| fill.filled_on >= window_start && fill.filled_on <= today;
    // Fill lists usually arrive in date order (oldest or newest first) with one fill per day: then no
    // fill can share its day.
    let distinct_days = fills.windows(2).all(|pair| pair[0].filled_on < pair[1].filled_on)
        || fills.windows(2).all(|pair| pair[0].filled_on > pair[1].filled_on);
    for (index, fill) in fills.iter().enumerate().filter(|(_, fill)| in_window(fill)) {
        // Fills handed over on the same day (two products of one regimen) are one supply event: count
        // the longest of them once, so a two-product regimen does not look like a stockpile.
        let superseded = !distinct_days
            && fills.iter().enumerate().any(|(other_index, other)| {
                other_index != index
                    && other.filled_on == fill.filled_on
                    && (other.days_supply > fill.days_supply
                        || (other.days_supply == fill.days_supply && other_index < index))
            });
        if superseded {
            continue;
        }
        days_supplied += i64::from(fill.days_supply);
        count += 1;
        first_fill_on = Some(first_fill_on.map_or(fill.filled_on, |first| first.min(fill.filled_on)));
    }
    let first_fill_on = first_fill_on?;
    let days_elapsed = days_between(today, first_fill_on);
    if days_supplied <= days_elapsed + allowance_days {
        return None;
    }
    Some(Accumulation {
        first_fill_on,
        fills: count,
        days_supplied,
        days_elapsed,
        clears_on: add_days(first_fill_on, days_supplied - allowance_days),
    })
}
