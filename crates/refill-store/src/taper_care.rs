//! The person around a taper (issue 13): check-ins before each step, goals, readiness to change,
//! referrals to non-opioid care with their status, and the opioid-safety class. Each write appends its
//! audit event in the caller's transaction; rows are added, never edited, so their history stays.

use chrono::NaiveDate;
use refill_rules::PatientId;
use refill_rules::taper::check_in::{CheckIn, Peg, Wish, Withdrawal};
use serde_json::json;

use crate::audit::AuditEvent;
use crate::model::{Actor, now};
use crate::store::{with_read_pool, with_tx};
use crate::{Store, StoreError, Tx};

/// A check-in as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckInRecord {
    pub id: i64,
    pub plan_id: Option<i64>,
    pub check_in: CheckIn,
    pub note: String,
    pub recorded_by: String,
}

/// Goals, readiness, referrals and class attendance: one kind of care record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CareRecord {
    /// A goal the patient sets (`active`, `met` or `changed`).
    Goal { goal: String, status: String },
    /// Stage of change.
    Readiness { stage: String },
    /// A non-opioid therapy or referral and its status.
    Referral { kind: String, status: String },
    /// The clinic's opioid-safety class attended.
    ClassAttended,
}

/// Goal statuses, readiness stages, referral kinds and statuses the store accepts (the schema checks
/// them too).
pub const GOAL_STATUSES: &[&str] = &["active", "met", "changed"];
pub const READINESS_STAGES: &[&str] = &["precontemplation", "contemplation", "preparation", "action", "maintenance"];
pub const REFERRAL_KINDS: &[&str] =
    &["physical_therapy", "behavioural_health", "pain_rehabilitation", "addiction_counselling", "psychiatry"];
pub const REFERRAL_STATUSES: &[&str] = &["suggested", "referred", "attending", "completed", "declined"];

/// A care record as stored, newest first in lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CareRecordRow {
    pub id: i64,
    pub on: NaiveDate,
    pub record: CareRecord,
    pub recorded_by: String,
}

type CheckInRow = (i64, Option<i64>, NaiveDate, i32, i32, i32, String, String, String, String);

fn check_in_of(row: CheckInRow) -> Result<CheckInRecord, StoreError> {
    let (id, plan_id, on, pain, enjoyment, activity, withdrawal, wish, note, recorded_by) = row;
    let item =
        |value: i32| u8::try_from(value).map_err(|_| StoreError::Invalid(format!("PEG item {value} out of range")));
    let withdrawal = Withdrawal::parse(&withdrawal)
        .ok_or_else(|| StoreError::Invalid(format!("check-in {id}: withdrawal {withdrawal:?}")))?;
    let wish = Wish::parse(&wish).ok_or_else(|| StoreError::Invalid(format!("check-in {id}: wish {wish:?}")))?;
    Ok(CheckInRecord {
        id,
        plan_id,
        check_in: CheckIn {
            on,
            peg: Peg { pain: item(pain)?, enjoyment: item(enjoyment)?, activity: item(activity)? },
            withdrawal,
            wish,
        },
        note,
        recorded_by,
    })
}

const SELECT_PLAN_STATE: &str =
    "select id, state from taper_plans where patient_id = $1 and state <> 'cancelled' order by id desc limit 1";

const SELECT_CHECK_INS: &str = "select id, plan_id, checked_on, pain, enjoyment, activity, withdrawal, wish, note, \
     recorded_by from taper_check_ins where patient_id = $1 order by checked_on, id";

impl Store {
    /// Record a check-in (PEG, withdrawal, the patient's wish) for the patient's plan in force.
    ///
    /// # Errors
    /// `Invalid` for a PEG item above 10 or a note over 2,000 characters; database errors.
    pub async fn insert_check_in_in(
        &self,
        tx: &mut Tx,
        patient_id: PatientId,
        plan_id: Option<i64>,
        check_in: &CheckIn,
        note: &str,
        actor: &Actor,
    ) -> Result<i64, StoreError> {
        let problems = check_in.peg.problems();
        if !problems.is_empty() {
            return Err(StoreError::Invalid(problems.join("; ")));
        }
        let note = note.trim();
        if note.chars().count() > 2000 {
            return Err(StoreError::Invalid("a check-in note is at most 2,000 characters".into()));
        }
        let at = now();
        let id: i64 = with_tx!(tx, conn => {
            sqlx::query_scalar(
                "insert into taper_check_ins (patient_id, plan_id, checked_on, pain, enjoyment, activity, withdrawal, \
                 wish, note, recorded_by, created_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) returning id",
            )
            .bind(patient_id.0)
            .bind(plan_id)
            .bind(check_in.on)
            .bind(i32::from(check_in.peg.pain))
            .bind(i32::from(check_in.peg.enjoyment))
            .bind(i32::from(check_in.peg.activity))
            .bind(check_in.withdrawal.as_str())
            .bind(check_in.wish.as_str())
            .bind(note.to_string())
            .bind(actor.id.clone())
            .bind(at)
            .fetch_one(&mut *conn)
            .await?
        });
        // Scores and the note stay out of the trail's detail (clinical content); the row id is there.
        let event = AuditEvent::new(actor, "taper.check_in", "taper_check_in")
            .resource_id(id.to_string())
            .patient(patient_id)
            .detail(json!({ "plan_id": plan_id, "checked_on": check_in.on }));
        self.append_audit(tx, &event).await?;
        Ok(id)
    }

    /// The patient's plan in force (the latest not cancelled, started or not): id and state.
    pub async fn taper_plan_state(&self, patient_id: PatientId) -> Result<Option<(i64, String)>, StoreError> {
        Ok(with_read_pool!(self, pool => {
            sqlx::query_as(SELECT_PLAN_STATE).bind(patient_id.0).fetch_optional(pool).await?
        }))
    }

    /// Every check-in of the patient, oldest first.
    pub async fn check_ins(&self, patient_id: PatientId) -> Result<Vec<CheckInRecord>, StoreError> {
        let rows: Vec<CheckInRow> = with_read_pool!(self, pool => {
            sqlx::query_as(SELECT_CHECK_INS).bind(patient_id.0).fetch_all(pool).await?
        });
        rows.into_iter().map(check_in_of).collect()
    }

    /// Record a goal, a readiness stage, a referral status or a class attendance, audited.
    ///
    /// # Errors
    /// `Invalid` for a value outside the lists above or an empty goal; database errors.
    pub async fn insert_care_record_in(
        &self,
        tx: &mut Tx,
        patient_id: PatientId,
        on: NaiveDate,
        record: &CareRecord,
        actor: &Actor,
    ) -> Result<i64, StoreError> {
        let check = |value: &str, allowed: &[&str], what: &str| {
            if allowed.contains(&value) {
                Ok(())
            } else {
                Err(StoreError::Invalid(format!("{what} must be one of {}, not {value:?}", allowed.join(", "))))
            }
        };
        let at = now();
        let (table, id): (&str, i64) = match record {
            CareRecord::Goal { goal, status } => {
                check(status, GOAL_STATUSES, "goal status")?;
                let goal = goal.trim();
                if goal.is_empty() || goal.chars().count() > 500 {
                    return Err(StoreError::Invalid("a goal is 1 to 500 characters".into()));
                }
                let id = with_tx!(tx, conn => {
                    sqlx::query_scalar(
                        "insert into taper_goals (patient_id, goal, set_on, status, recorded_by, created_at) \
                         values ($1, $2, $3, $4, $5, $6) returning id",
                    )
                    .bind(patient_id.0).bind(goal.to_string()).bind(on).bind(status.clone()).bind(actor.id.clone()).bind(at)
                    .fetch_one(&mut *conn).await?
                });
                ("taper_goal", id)
            }
            CareRecord::Readiness { stage } => {
                check(stage, READINESS_STAGES, "readiness stage")?;
                let id = with_tx!(tx, conn => {
                    sqlx::query_scalar(
                        "insert into taper_readiness (patient_id, stage, assessed_on, recorded_by, created_at) \
                         values ($1, $2, $3, $4, $5) returning id",
                    )
                    .bind(patient_id.0).bind(stage.clone()).bind(on).bind(actor.id.clone()).bind(at)
                    .fetch_one(&mut *conn).await?
                });
                ("taper_readiness", id)
            }
            CareRecord::Referral { kind, status } => {
                check(kind, REFERRAL_KINDS, "referral kind")?;
                check(status, REFERRAL_STATUSES, "referral status")?;
                let id = with_tx!(tx, conn => {
                    sqlx::query_scalar(
                        "insert into taper_referrals (patient_id, kind, status, on_date, recorded_by, created_at) \
                         values ($1, $2, $3, $4, $5, $6) returning id",
                    )
                    .bind(patient_id.0).bind(kind.clone()).bind(status.clone()).bind(on).bind(actor.id.clone()).bind(at)
                    .fetch_one(&mut *conn).await?
                });
                ("taper_referral", id)
            }
            CareRecord::ClassAttended => {
                let id = with_tx!(tx, conn => {
                    sqlx::query_scalar(
                        "insert into taper_class_attendance (patient_id, attended_on, recorded_by, created_at) \
                         values ($1, $2, $3, $4) returning id",
                    )
                    .bind(patient_id.0).bind(on).bind(actor.id.clone()).bind(at)
                    .fetch_one(&mut *conn).await?
                });
                ("taper_class_attendance", id)
            }
        };
        let event = AuditEvent::new(actor, format!("{table}.record"), table)
            .resource_id(id.to_string())
            .patient(patient_id)
            .detail(json!({ "on": on }));
        self.append_audit(tx, &event).await?;
        Ok(id)
    }

    /// Goals, readiness, referrals and class attendance of the patient, newest first.
    pub async fn care_records(&self, patient_id: PatientId) -> Result<Vec<CareRecordRow>, StoreError> {
        let goals: Vec<(i64, NaiveDate, String, String, String)> = with_read_pool!(self, pool => {
            sqlx::query_as("select id, set_on, goal, status, recorded_by from taper_goals where patient_id = $1")
                .bind(patient_id.0).fetch_all(pool).await?
        });
        let stages: Vec<(i64, NaiveDate, String, String)> = with_read_pool!(self, pool => {
            sqlx::query_as("select id, assessed_on, stage, recorded_by from taper_readiness where patient_id = $1")
                .bind(patient_id.0).fetch_all(pool).await?
        });
        let referrals: Vec<(i64, NaiveDate, String, String, String)> = with_read_pool!(self, pool => {
            sqlx::query_as("select id, on_date, kind, status, recorded_by from taper_referrals where patient_id = $1")
                .bind(patient_id.0).fetch_all(pool).await?
        });
        let classes: Vec<(i64, NaiveDate, String)> = with_read_pool!(self, pool => {
            sqlx::query_as("select id, attended_on, recorded_by from taper_class_attendance where patient_id = $1")
                .bind(patient_id.0).fetch_all(pool).await?
        });
        let mut rows: Vec<CareRecordRow> = Vec::new();
        rows.extend(goals.into_iter().map(|(id, on, goal, status, by)| CareRecordRow {
            id,
            on,
            record: CareRecord::Goal { goal, status },
            recorded_by: by,
        }));
        rows.extend(stages.into_iter().map(|(id, on, stage, by)| CareRecordRow {
            id,
            on,
            record: CareRecord::Readiness { stage },
            recorded_by: by,
        }));
        rows.extend(referrals.into_iter().map(|(id, on, kind, status, by)| CareRecordRow {
            id,
            on,
            record: CareRecord::Referral { kind, status },
            recorded_by: by,
        }));
        rows.extend(classes.into_iter().map(|(id, on, by)| CareRecordRow {
            id,
            on,
            record: CareRecord::ClassAttended,
            recorded_by: by,
        }));
        rows.sort_by(|a, b| b.on.cmp(&a.on).then(b.id.cmp(&a.id)));
        Ok(rows)
    }
}

impl Store {
    /// The start of the plan's latest step before `date` (the step a check-in follows), if any.
    pub async fn previous_taper_step_on_in(
        &self,
        tx: &mut Tx,
        plan_id: i64,
        date: NaiveDate,
    ) -> Result<Option<NaiveDate>, StoreError> {
        Ok(with_tx!(tx, conn => {
            sqlx::query_scalar("select max(starts_on) from taper_steps where plan_id = $1 and starts_on < $2")
                .bind(plan_id)
                .bind(date)
                .fetch_one(&mut *conn)
                .await?
        }))
    }

    /// How many times the patient's taper plans have paused (plan events), as the transaction sees it.
    pub async fn taper_pauses_in(&self, tx: &mut Tx, patient_id: PatientId) -> Result<i64, StoreError> {
        Ok(with_tx!(tx, conn => {
            sqlx::query_scalar(
                "select count(*) from taper_plan_events e join taper_plans p on p.id = e.plan_id \
                 where p.patient_id = $1 and e.kind = 'paused'",
            )
            .bind(patient_id.0)
            .fetch_one(&mut *conn)
            .await?
        }))
    }
}

impl Tx {
    /// The patient's plan in force (the latest not cancelled, started or not): its id and state
    /// (`active`, `paused`, `completed`).
    pub async fn taper_plan_state_in(&mut self, patient_id: PatientId) -> Result<Option<(i64, String)>, StoreError> {
        Ok(with_tx!(self, conn => {
            sqlx::query_as(SELECT_PLAN_STATE).bind(patient_id.0).fetch_optional(&mut *conn).await?
        }))
    }

    /// The patient's check-ins as this transaction sees them, oldest first.
    pub async fn check_ins_in(&mut self, patient_id: PatientId) -> Result<Vec<CheckInRecord>, StoreError> {
        let rows: Vec<CheckInRow> = with_tx!(self, conn => {
            sqlx::query_as(SELECT_CHECK_INS).bind(patient_id.0).fetch_all(&mut *conn).await?
        });
        rows.into_iter().map(check_in_of).collect()
    }
}
