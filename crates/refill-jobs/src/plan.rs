//! Cron occurrences on the clinic's wall clock, right across daylight-saving changes. Pure: no I/O,
//! no clock; `now` is a parameter.
//!
//! The `cron` crate evaluated in a time zone fires a daily 01:30 twice on the autumn fold and skips a
//! daily 02:30 in the spring gap. So wall-clock schedules run the matcher on the *naive local* time
//! (as if it were UTC, where nothing is ever skipped or repeated) and only then map each local time to
//! an instant: a time in the fold maps to the earlier instant (fires once), a time in the gap maps to
//! the first valid minute after the gap (02:30 New York fires at 03:00; 01:30 London at 02:00). The
//! occurrence key is the local wall-clock time, strictly increasing, so no occurrence repeats.
//! Interval-style schedules ("every 30 seconds") use `elapsed` semantics: the matcher runs on UTC.

use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use crate::JobsError;

/// How a cron spec is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Semantics {
    /// Fixed local times ("daily 06:00"): matched on the local wall clock, DST-corrected.
    WallClock,
    /// Intervals ("every 15 minutes"): matched on UTC, real elapsed time.
    Elapsed,
}

impl Semantics {
    pub fn as_str(self) -> &'static str {
        match self {
            Semantics::WallClock => "wall_clock",
            Semantics::Elapsed => "elapsed",
        }
    }

    pub fn parse(text: &str) -> Option<Semantics> {
        [Semantics::WallClock, Semantics::Elapsed].into_iter().find(|s| s.as_str() == text)
    }
}

/// What to do with occurrences missed while no worker ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misfire {
    /// Fire the latest missed occurrence once (coalesce the rest).
    FireOnce,
    /// Drop occurrences later than the grace period; fire only one that is on time.
    Skip,
}

impl Misfire {
    pub fn as_str(self) -> &'static str {
        match self {
            Misfire::FireOnce => "fire_once",
            Misfire::Skip => "skip",
        }
    }

    pub fn parse(text: &str) -> Option<Misfire> {
        [Misfire::FireOnce, Misfire::Skip].into_iter().find(|m| m.as_str() == text)
    }
}

/// One occurrence: its key on the local wall clock and the instant it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Occurrence {
    pub local: NaiveDateTime,
    pub fire_at: DateTime<Utc>,
}

/// The result of a tick for one schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The occurrence to fire now, if any.
    pub fire: Option<Occurrence>,
    /// Due occurrences not fired (coalesced or skipped).
    pub dropped: u64,
    /// The new cursor: the first occurrence after `now`.
    pub next: Occurrence,
}

/// A parsed schedule in its zone.
#[derive(Debug, Clone)]
pub struct Plan {
    schedule: cron::Schedule,
    zone: Tz,
    semantics: Semantics,
}

/// Upper bound of occurrences walked in one tick; past it the cursor jumps to `now` (a per-second
/// schedule after a week of downtime must not spin).
const MAX_WALK: u64 = 100_000;

impl Plan {
    /// Parse `cron` (the `cron` crate's syntax, seconds first) in IANA zone `zone`.
    ///
    /// # Errors
    /// `Schedule` naming `name` when the spec or the zone does not parse, or the spec never fires.
    pub fn new(name: &str, cron: &str, zone: &str, semantics: Semantics) -> Result<Plan, JobsError> {
        let schedule = cron::Schedule::from_str(cron).map_err(|e| JobsError::Schedule {
            schedule: name.to_string(),
            message: format!("cron {cron:?}: {e} (the syntax has a seconds field first: \"0 30 6 * * *\")"),
        })?;
        let zone = Tz::from_str(zone).map_err(|e| JobsError::Schedule {
            schedule: name.to_string(),
            message: format!("time zone {zone:?}: {e} (use an IANA name such as America/New_York)"),
        })?;
        let plan = Plan { schedule, zone, semantics };
        let probe = NaiveDateTime::default();
        if plan.next_after_local(probe).is_none() {
            return Err(JobsError::Schedule {
                schedule: name.to_string(),
                message: format!("cron {cron:?} never fires"),
            });
        }
        Ok(plan)
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The local wall-clock time of an instant under this plan's semantics.
    pub fn local_of(&self, at: DateTime<Utc>) -> NaiveDateTime {
        match self.semantics {
            Semantics::WallClock => at.with_timezone(&self.zone).naive_local(),
            Semantics::Elapsed => at.naive_utc(),
        }
    }

    /// The first occurrence strictly after the local time `after_local`.
    pub fn next_after_local(&self, after_local: NaiveDateTime) -> Option<Occurrence> {
        let local = self.schedule.after(&Utc.from_utc_datetime(&after_local)).next()?.naive_utc();
        let fire_at = match self.semantics {
            Semantics::Elapsed => Utc.from_utc_datetime(&local),
            Semantics::WallClock => instant_of_local(self.zone, local)?,
        };
        Some(Occurrence { local, fire_at })
    }

    /// The first occurrence that fires strictly after `now` (the initial cursor of a new schedule).
    pub fn first_after(&self, now: DateTime<Utc>) -> Option<Occurrence> {
        // Start one hour of wall clock early: in a fold the local time of `now` may be the second pass,
        // and in a gap an occurrence keyed before `now`'s local time may fire after it.
        let mut occurrence = self.next_after_local(self.local_of(now) - Duration::hours(3))?;
        let mut walked = 0;
        while occurrence.fire_at <= now {
            occurrence = self.next_after_local(occurrence.local)?;
            walked += 1;
            if walked > MAX_WALK {
                return None;
            }
        }
        Some(occurrence)
    }

    /// Which occurrence to fire at `now`, given the stored cursor. `grace` is how late an occurrence
    /// may be and still count as on time under `Misfire::Skip`.
    pub fn due(&self, cursor: Occurrence, now: DateTime<Utc>, misfire: Misfire, grace: Duration) -> Option<Due> {
        if cursor.fire_at > now {
            return Some(Due { fire: None, dropped: 0, next: cursor });
        }
        let mut latest = cursor;
        let mut count: u64 = 1;
        let mut next = self.next_after_local(cursor.local)?;
        while next.fire_at <= now {
            latest = next;
            count += 1;
            if count > MAX_WALK {
                next = self.first_after(now)?;
                break;
            }
            next = self.next_after_local(next.local)?;
        }
        let fire = match misfire {
            Misfire::FireOnce => Some(latest),
            Misfire::Skip if now - latest.fire_at <= grace => Some(latest),
            Misfire::Skip => None,
        };
        let dropped = count - u64::from(fire.is_some());
        Some(Due { fire, dropped, next })
    }
}

/// The instant a local wall-clock time fires at in `zone`: the earlier instant in a fold, the first
/// valid whole minute after a gap.
pub fn instant_of_local(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(at) => Some(at.with_timezone(&Utc)),
        LocalResult::Ambiguous(earlier, _later) => Some(earlier.with_timezone(&Utc)),
        LocalResult::None => {
            let mut candidate = local.with_second(0)?.with_nanosecond(0)?;
            // Gaps are at most a few hours (Lord Howe: 30 minutes; most: 1 hour).
            for _ in 0..(24 * 60) {
                candidate += Duration::minutes(1);
                if let Some(at) = zone.from_local_datetime(&candidate).earliest() {
                    return Some(at.with_timezone(&Utc));
                }
            }
            None
        }
    }
}

/// The unique key of an occurrence: `cron:{schedule}:{local wall clock}`.
pub fn occurrence_key(schedule: &str, occurrence: &Occurrence) -> String {
    format!("cron:{schedule}:{}", occurrence.local.format(refill_store::schedule::LOCAL_FORMAT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn local(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(h, min, 0).unwrap()
    }

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.from_utc_datetime(&local(y, m, d, h, min))
    }

    #[test]
    fn rejects_bad_specs_naming_the_schedule() {
        let error = Plan::new("morning", "30 6 * * *", "America/New_York", Semantics::WallClock).unwrap_err();
        assert!(error.to_string().contains("morning"), "{error}");
        let error = Plan::new("morning", "0 30 6 * * *", "Mars/Olympus", Semantics::WallClock).unwrap_err();
        assert!(error.to_string().contains("time zone"), "{error}");
    }

    #[test]
    fn elapsed_schedules_follow_utc() {
        let plan = Plan::new("tick", "0 */15 * * * *", "America/New_York", Semantics::Elapsed).unwrap();
        let first = plan.first_after(utc(2026, 11, 1, 5, 50)).unwrap();
        assert_eq!(first.fire_at, utc(2026, 11, 1, 6, 0));
        let next = plan.next_after_local(first.local).unwrap();
        assert_eq!(next.fire_at - first.fire_at, Duration::minutes(15));
    }

    #[test]
    fn skip_drops_late_occurrences_and_fire_once_coalesces() {
        let plan = Plan::new("daily", "0 0 6 * * *", "UTC", Semantics::WallClock).unwrap();
        let cursor = plan.first_after(utc(2026, 1, 1, 0, 0)).unwrap();
        let now = utc(2026, 1, 4, 7, 0);
        let once = plan.due(cursor, now, Misfire::FireOnce, Duration::minutes(5)).unwrap();
        assert_eq!(once.fire.map(|o| o.local), Some(local(2026, 1, 4, 6, 0)));
        assert_eq!(once.dropped, 3);
        assert_eq!(once.next.local, local(2026, 1, 5, 6, 0));
        let skip = plan.due(cursor, now, Misfire::Skip, Duration::minutes(5)).unwrap();
        assert_eq!(skip.fire, None);
        assert_eq!(skip.dropped, 4);
        let on_time = plan.due(cursor, utc(2026, 1, 1, 6, 1), Misfire::Skip, Duration::minutes(5)).unwrap();
        assert_eq!(on_time.fire.map(|o| o.local), Some(local(2026, 1, 1, 6, 0)));
    }
}
