//! What the daily pipeline needs to know for patient reminders that the rules' facts do not carry:
//! the next taper step that is coming, and refills prepared for a patient who has not picked them up.
//! Both are read for a patient-id range in one query each, like the facts, so a chunk of the daily
//! pipeline costs a fixed number of queries.

use std::collections::HashMap;

use chrono::NaiveDate;
use refill_rules::PatientId;

use crate::store::with_read_pool;
use crate::{Store, StoreError};

/// Per patient: the dates a reminder may be about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReminderDates {
    /// The first step of the patient's active taper plan that starts after the clinic date (within the
    /// look-ahead asked for). Paused, completed and cancelled plans have none.
    pub next_taper_step_on: Option<NaiveDate>,
    /// The latest clinic date on which staff prepared a refill (queue item done) that no fill recorded
    /// since has picked up (within the look-back asked for).
    pub unpicked_refill_prepared_on: Option<NaiveDate>,
}

// The first step after $3 and up to $4 of each patient's latest active plan. A paused plan has no
// coming step: the patient is told about a change only when one is really going to happen.
const SELECT_NEXT_TAPER_STEPS: &str = r#"
select p.patient_id, min(s.starts_on)
from taper_plans p
join taper_steps s on s.plan_id = p.id
where p.patient_id >= $1 and p.patient_id <= $2 and p.state = 'active'
  and p.id = (select max(p2.id) from taper_plans p2 where p2.patient_id = p.patient_id and p2.state <> 'cancelled')
  and s.starts_on > $3 and s.starts_on <= $4
group by p.patient_id"#;

// Queue items completed ("refill prepared for signature") on a clinic date in [$3, $4] for an approved
// refill, with no fill recorded on or after that date. The latest such date per patient.
const SELECT_UNPICKED_REFILLS: &str = r#"
select q.patient_id, max(q.clinic_date)
from daily_queue q
where q.patient_id >= $1 and q.patient_id <= $2
  and q.status = 'done' and q.outcome in ('APPROVE', 'APPROVE_WITH_TASKS')
  and q.clinic_date >= $3 and q.clinic_date <= $4
  and not exists (select 1 from fills f where f.patient_id = q.patient_id and f.filled_on >= q.clinic_date)
group by q.patient_id"#;

/// A patient id and a date, as the two queries return them.
type PatientDate = (i64, Option<NaiveDate>);

impl Store {
    /// Reminder dates of the patients with ids in `first..=last`: taper steps starting in
    /// `(as_of, as_of + step_lead_days]`, and refills prepared in `[as_of - prepared_max_days,
    /// as_of - prepared_min_days]` with no fill since. Patients with neither are absent from the map.
    ///
    /// # Errors
    /// Database errors.
    pub async fn reminder_dates_in_range(
        &self,
        first: PatientId,
        last: PatientId,
        as_of: NaiveDate,
        step_lead_days: i64,
        prepared_days: std::ops::RangeInclusive<i64>,
    ) -> Result<HashMap<PatientId, ReminderDates>, StoreError> {
        let step_until = as_of + chrono::Duration::days(step_lead_days);
        let prepared_from = as_of - chrono::Duration::days(*prepared_days.end());
        let prepared_until = as_of - chrono::Duration::days(*prepared_days.start());
        let (steps, unpicked): (Vec<PatientDate>, Vec<PatientDate>) = with_read_pool!(self, pool => {
            let steps = sqlx::query_as(SELECT_NEXT_TAPER_STEPS)
                .bind(first.0)
                .bind(last.0)
                .bind(as_of)
                .bind(step_until)
                .fetch_all(pool)
                .await?;
            let unpicked = sqlx::query_as(SELECT_UNPICKED_REFILLS)
                .bind(first.0)
                .bind(last.0)
                .bind(prepared_from)
                .bind(prepared_until)
                .fetch_all(pool)
                .await?;
            (steps, unpicked)
        });
        let mut dates: HashMap<PatientId, ReminderDates> = HashMap::new();
        for (patient, on) in steps {
            dates.entry(PatientId(patient)).or_default().next_taper_step_on = on;
        }
        for (patient, on) in unpicked {
            dates.entry(PatientId(patient)).or_default().unpicked_refill_prepared_on = on;
        }
        Ok(dates)
    }
}
