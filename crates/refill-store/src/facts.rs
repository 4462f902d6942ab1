//! Clinical facts: writing each kind (orders, fills, agreements, UDS orders and results, PDMP reviews,
//! physician reviews, naloxone events, flags, other medications, taper plans, refill requests) and
//! loading them back as `refill_rules::PatientFacts`, one patient or a whole id range at once.
//!
//! The range loader issues a fixed number of queries per range whatever its size (one per fact table),
//! so the daily pipeline evaluates 100,000 patients in a few hundred round trips, not millions.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use refill_rules::{
    AgreementFacts, ClinicalFlag, Fill, MedicationOrder, NaloxoneEvent, OtherMedication, PatientFacts, PatientId,
    PatientStatement, PdmpReview, PhysicianReview, PrescriberId, PriorDecision, RecordedRequest, ReviewKind,
    StandingDecision, TaperInForce, TaperStepAhead, UdsKind, UdsResult,
};
use serde_json::{Value, json};
use sqlx::types::Json;

use crate::audit::AuditEvent;
use crate::codec::{self, StoredTaperState, corrupt};
use crate::model::{Actor, TaperPlanId, now};
use crate::store::{with_read_pool, with_tx};
use crate::{Store, StoreError, Tx};

/// A urine drug test order: a scheduled test on its randomly drawn date, or a for-cause test.
#[derive(Debug, Clone, PartialEq)]
pub struct UdsOrder {
    pub kind: UdsKind,
    /// The date the test is due (the drawn date of a scheduled test).
    pub due_on: NaiveDate,
    /// The clinic date the draw or the order was made.
    pub drawn_on: NaiveDate,
    /// The seed and algorithm of the draw, so it can be replayed.
    pub seed: Option<i64>,
    pub algorithm: Option<String>,
    /// The scheduling period the draw covers.
    pub period_start: Option<NaiveDate>,
    pub period_end: Option<NaiveDate>,
    pub created_by: String,
}

/// A new taper plan with its steps, signed by the physician who creates it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTaperPlan {
    pub started_on: NaiveDate,
    pub rationale: String,
    pub steps: Vec<NewTaperStep>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewTaperStep {
    pub starts_on: NaiveDate,
    pub regimen: Vec<MedicationOrder>,
    pub total_daily_mme: Option<f64>,
}

/// A fact entered by staff or a physician, recorded with `Store::record_fact`.
#[derive(Debug, Clone, PartialEq)]
pub enum StaffFact {
    Fill {
        fill: Fill,
    },
    PdmpReview {
        review: PdmpReview,
    },
    PhysicianReview {
        review: PhysicianReview,
        note: Option<String>,
    },
    NaloxoneEvent {
        event: NaloxoneEvent,
    },
    UdsOrder {
        order: UdsOrder,
    },
    UdsResult {
        result: UdsResult,
    },
    Agreement {
        agreement: AgreementFacts,
    },
    ClinicalFlag {
        flag: ClinicalFlag,
    },
    OtherMedication {
        medication: OtherMedication,
    },
    /// Something the patient said that bears on a decision ("I stopped taking it").
    PatientStatement {
        statement: PatientStatement,
    },
}

impl StaffFact {
    fn action(&self) -> &'static str {
        match self {
            StaffFact::Fill { .. } => "fill.record",
            StaffFact::PdmpReview { .. } => "pdmp_review.record",
            StaffFact::PhysicianReview { .. } => "physician_review.record",
            StaffFact::NaloxoneEvent { .. } => "naloxone_event.record",
            StaffFact::UdsOrder { .. } => "uds_order.record",
            StaffFact::UdsResult { .. } => "uds_result.record",
            StaffFact::Agreement { .. } => "agreement.record",
            StaffFact::ClinicalFlag { .. } => "clinical_flag.record",
            StaffFact::OtherMedication { .. } => "other_medication.record",
            StaffFact::PatientStatement { .. } => "patient_statement.record",
        }
    }

    /// The audit "after" of the new fact.
    fn to_audit_json(&self) -> Value {
        match self {
            StaffFact::Fill { fill } => json!({
                "filled_on": fill.filled_on, "days_supply": fill.days_supply,
                "order_id": fill.order_id, "quantity": fill.quantity,
            }),
            StaffFact::PdmpReview { review } => {
                json!({ "reviewed_on": review.reviewed_on, "findings": codec::findings_to_json(&review.findings) })
            }
            StaffFact::PhysicianReview { review, note } => {
                let (kind, subject, class) = review_kind_columns(&review.kind);
                json!({ "reviewed_on": review.reviewed_on, "physician": review.physician.0, "kind": kind,
                        "subject_prescriber": subject, "subject_drug_class": class, "note": note })
            }
            StaffFact::NaloxoneEvent { event } => {
                json!({ "on": event.on, "kind": codec::naloxone_kind_name(event.kind) })
            }
            StaffFact::UdsOrder { order } => json!({
                "kind": codec::uds_kind_name(order.kind), "due_on": order.due_on, "drawn_on": order.drawn_on,
                "seed": order.seed, "algorithm": order.algorithm,
            }),
            StaffFact::UdsResult { result } => json!({
                "collected_on": result.collected_on, "kind": codec::uds_kind_name(result.kind),
                "confirmatory": result.confirmatory, "analytes": codec::analytes_to_json(&result.analytes),
                "physician_reviewed_on": result.physician_reviewed_on,
                "confidentiality": codec::confidentiality_name(result.confidentiality),
            }),
            StaffFact::Agreement { agreement } => json!({
                "signed_on": agreement.signed_on, "prescriber": agreement.prescriber_of_record.0,
                "text_version": agreement.text_version, "elements": agreement.elements,
                "voided_on": agreement.voided_on,
            }),
            StaffFact::ClinicalFlag { flag } => json!({
                "kind": codec::flag_kind_name(flag.kind), "recorded_on": flag.recorded_on,
                "confidentiality": codec::confidentiality_name(flag.confidentiality),
            }),
            StaffFact::OtherMedication { medication } => json!({
                "class": codec::other_medication_class_name(medication.class), "text": medication.text,
                "started_on": medication.started_on, "active": medication.active,
                "confidentiality": codec::confidentiality_name(medication.confidentiality),
            }),
            // The words may name drugs or results: the audit keeps that a statement was recorded and
            // when, and the statement stays in its own table.
            StaffFact::PatientStatement { statement } => json!({
                "recorded_on": statement.recorded_on,
                "confidentiality": codec::confidentiality_name(statement.confidentiality),
            }),
        }
    }
}

/// The columns a review kind is stored in: kind, subject prescriber, subject drug class (an outside
/// prescriber acknowledged for one class only).
pub(crate) fn review_kind_columns(kind: &ReviewKind) -> (&'static str, Option<String>, Option<&'static str>) {
    match kind {
        ReviewKind::BenefitRisk => ("benefit_risk", None, None),
        ReviewKind::BenzodiazepineAcknowledged => ("benzodiazepine_acknowledged", None, None),
        ReviewKind::OutsidePrescriberAcknowledged(prescriber) => {
            ("outside_prescriber_acknowledged", Some(prescriber.0.clone()), None)
        }
        ReviewKind::OutsidePrescriberClassAcknowledged(prescriber, class) => {
            ("outside_prescriber_acknowledged", Some(prescriber.0.clone()), Some(codec::drug_class_name(*class)))
        }
    }
}

fn parse_review_kind(kind: &str, subject: Option<String>, class: Option<String>) -> Result<ReviewKind, StoreError> {
    match (kind, subject, class) {
        ("benefit_risk", _, _) => Ok(ReviewKind::BenefitRisk),
        ("benzodiazepine_acknowledged", _, _) => Ok(ReviewKind::BenzodiazepineAcknowledged),
        ("outside_prescriber_acknowledged", Some(subject), None) => {
            Ok(ReviewKind::OutsidePrescriberAcknowledged(PrescriberId(subject)))
        }
        ("outside_prescriber_acknowledged", Some(subject), Some(class)) => {
            Ok(ReviewKind::OutsidePrescriberClassAcknowledged(PrescriberId(subject), codec::parse_drug_class(&class)?))
        }
        (other, _, _) => Err(corrupt("physician review kind", other)),
    }
}

// One medication order keyed by (patient, source id), written only when something changed (re-importing
// the same export touches nothing); returns the row id when written. Shared by the importer and `Tx`.
pub(crate) const UPSERT_ORDER_IF_CHANGED: &str = r#"
insert into medication_orders (patient_id, source_id, rxcui, text, dose_value, dose_unit, dose_unit_text,
    doses_per_day, days_supply, dispense_quantity, prescriber_id, purpose, confidentiality, active, created_at,
    updated_at)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)
on conflict (patient_id, source_id) do update set rxcui = excluded.rxcui, text = excluded.text,
    dose_value = excluded.dose_value, dose_unit = excluded.dose_unit, dose_unit_text = excluded.dose_unit_text,
    doses_per_day = excluded.doses_per_day, days_supply = excluded.days_supply,
    dispense_quantity = excluded.dispense_quantity, prescriber_id = excluded.prescriber_id,
    purpose = excluded.purpose, confidentiality = excluded.confidentiality, active = excluded.active,
    updated_at = excluded.updated_at
where medication_orders.rxcui is distinct from excluded.rxcui
    or medication_orders.text is distinct from excluded.text
    or medication_orders.dose_value is distinct from excluded.dose_value
    or medication_orders.dose_unit is distinct from excluded.dose_unit
    or medication_orders.dose_unit_text is distinct from excluded.dose_unit_text
    or medication_orders.doses_per_day is distinct from excluded.doses_per_day
    or medication_orders.days_supply is distinct from excluded.days_supply
    or medication_orders.dispense_quantity is distinct from excluded.dispense_quantity
    or medication_orders.prescriber_id is distinct from excluded.prescriber_id
    or medication_orders.purpose is distinct from excluded.purpose
    or medication_orders.confidentiality is distinct from excluded.confidentiality
    or medication_orders.active is distinct from excluded.active
returning id"#;

const SELECT_ORDER_ID: &str = "select id from medication_orders where patient_id = $1 and source_id = $2";

const INSERT_FILL: &str = r#"
insert into fills (patient_id, filled_on, days_supply, order_source_id, quantity, source_id, created_at)
values ($1, $2, $3, $4, $5, $6, $7)
on conflict (patient_id, source_id) do update set filled_on = excluded.filled_on,
    days_supply = excluded.days_supply, order_source_id = excluded.order_source_id, quantity = excluded.quantity
returning id"#;

const INSERT_AGREEMENT: &str = r#"
insert into agreements (patient_id, signed_on, prescriber_id, text_version, elements, voided_on, source_id,
    created_at)
values ($1, $2, $3, $4, $5, $6, $7, $8)
on conflict (patient_id, source_id) do update set signed_on = excluded.signed_on,
    prescriber_id = excluded.prescriber_id, text_version = excluded.text_version, elements = excluded.elements,
    voided_on = excluded.voided_on
returning id"#;

// A repeated draw for the same due date is the same order: keep the first (the seed that produced it).
const INSERT_UDS_ORDER: &str = r#"
insert into uds_schedule (patient_id, kind, due_on, drawn_on, seed, algorithm, period_start, period_end,
    created_by, created_at)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
on conflict (patient_id, kind, due_on) do update set kind = excluded.kind
returning id"#;

const INSERT_UDS_ORDERS: &str = r#"
insert into uds_schedule (patient_id, kind, due_on, drawn_on, seed, algorithm, period_start, period_end,
    created_by, created_at)
values"#;
const UDS_ORDER_CONFLICT: &str = "on conflict (patient_id, kind, due_on) do update set kind = excluded.kind";

const INSERT_UDS_RESULT: &str = r#"
insert into uds_results (patient_id, collected_on, kind, confirmatory, analytes, physician_reviewed_on,
    confidentiality, source_id, created_at, specimen_validity)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
on conflict (patient_id, source_id) do update set collected_on = excluded.collected_on, kind = excluded.kind,
    confirmatory = excluded.confirmatory, analytes = excluded.analytes,
    physician_reviewed_on = excluded.physician_reviewed_on, confidentiality = excluded.confidentiality,
    specimen_validity = excluded.specimen_validity
returning id"#;

// A collected sample fulfils the open orders of its kind that were made on or before the collection.
const CLOSE_UDS_ORDERS: &str = r#"
update uds_schedule set collected_on = $1
where patient_id = $2 and kind = $3 and collected_on is null and drawn_on <= $1"#;

const INSERT_PDMP_REVIEW: &str = r#"
insert into pdmp_reviews (patient_id, reviewed_on, findings, reviewed_by, source_id, created_at)
values ($1, $2, $3, $4, $5, $6)
on conflict (patient_id, source_id) do update set reviewed_on = excluded.reviewed_on,
    findings = excluded.findings, reviewed_by = excluded.reviewed_by
returning id"#;

const INSERT_PHYSICIAN_REVIEW: &str = r#"
insert into physician_reviews (patient_id, reviewed_on, physician_id, kind, subject_prescriber_id, note, created_at,
    subject_drug_class)
values ($1, $2, $3, $4, $5, $6, $7, $8)
returning id"#;

const INSERT_NALOXONE_EVENT: &str = r#"
insert into naloxone_events (patient_id, occurred_on, kind, recorded_by, created_at)
values ($1, $2, $3, $4, $5)
returning id"#;

const INSERT_FLAG: &str = r#"
insert into clinical_flags (patient_id, kind, recorded_on, confidentiality, source_id, created_at)
values ($1, $2, $3, $4, $5, $6)
on conflict (patient_id, source_id) do update set kind = excluded.kind, recorded_on = excluded.recorded_on,
    confidentiality = excluded.confidentiality
returning id"#;

const INSERT_PATIENT_STATEMENT: &str = r#"
insert into patient_statements (patient_id, recorded_on, text, confidentiality, recorded_by, created_at)
values ($1, $2, $3, $4, $5, $6)
returning id"#;

const INSERT_OTHER_MEDICATION: &str = r#"
insert into other_medications (patient_id, class, text, started_on, active, confidentiality, source_id, created_at)
values ($1, $2, $3, $4, $5, $6, $7, $8)
on conflict (patient_id, source_id) do update set class = excluded.class, text = excluded.text,
    started_on = excluded.started_on, active = excluded.active, confidentiality = excluded.confidentiality
returning id"#;

const INSERT_TAPER_PLAN: &str = r#"
insert into taper_plans (patient_id, state, started_on, created_by, rationale, version, created_at, updated_at)
values ($1, 'active', $2, $3, $4, 1, $5, $5)
returning id"#;

const INSERT_TAPER_STEP: &str = r#"
insert into taper_steps (plan_id, step_number, starts_on, regimen, total_daily_mme) values ($1, $2, $3, $4, $5)"#;

const INSERT_TAPER_EVENT: &str = r#"
insert into taper_plan_events (plan_id, occurred_at, actor, kind, detail) values ($1, $2, $3, $4, $5)"#;

const UPDATE_TAPER_STATE: &str = r#"
update taper_plans set state = $1, version = version + 1, updated_at = $2 where id = $3 and version = $4"#;

// The plans a new plan replaces: every plan of the patient still in force or paused.
const SELECT_PLANS_TO_SUPERSEDE: &str =
    "select id from taper_plans where patient_id = $1 and state in ('active', 'paused') order by id";

const SUPERSEDE_PLAN: &str = r#"
update taper_plans set state = 'cancelled', version = version + 1, updated_at = $1 where id = $2"#;

// The plan in force is the latest plan that is not cancelled (as in SELECT_TAPER_STEPS).
const SELECT_PLAN_IN_FORCE: &str = r#"
select id, state, version, paused_on from taper_plans
where patient_id = $1 and state <> 'cancelled' order by id desc limit 1"#;

const PAUSE_PLAN: &str = r#"
update taper_plans set state = 'paused', paused_on = $1, version = version + 1, updated_at = $2
where id = $3 and version = $4 and state = 'active'"#;

const RESUME_PLAN: &str = r#"
update taper_plans set state = 'active', paused_on = null, version = version + 1, updated_at = $1
where id = $2 and version = $3 and state = 'paused'"#;

const SELECT_STEPS_AFTER: &str =
    "select id, starts_on from taper_steps where plan_id = $1 and starts_on > $2 order by step_number";

const MOVE_STEP: &str = "update taper_steps set starts_on = $1 where id = $2";

impl Tx {
    /// Insert or update one medication order, keyed by (patient, `order.id`); an unchanged order is not
    /// rewritten (its `updated_at` keeps the date it last changed). Returns the row id.
    pub async fn upsert_medication_order(
        &mut self,
        patient_id: PatientId,
        order: &MedicationOrder,
        active: bool,
    ) -> Result<i64, StoreError> {
        let (dose_value, dose_unit, dose_unit_text) = match &order.dose {
            Some(dose) => {
                let (unit, text) = codec::dose_unit_columns(&dose.unit);
                (Some(dose.value), Some(unit), text)
            }
            None => (None, None, None),
        };
        let at = now();
        let written: Option<i64> = with_tx!(self, conn => {
            sqlx::query_scalar(UPSERT_ORDER_IF_CHANGED)
                .bind(patient_id.0)
                .bind(order.id.clone())
                .bind(order.rxcui.clone())
                .bind(order.text.clone())
                .bind(dose_value)
                .bind(dose_unit)
                .bind(dose_unit_text.clone())
                .bind(order.doses_per_day)
                .bind(order.days_supply.map(i64::from))
                .bind(order.dispense_quantity)
                .bind(order.prescriber.as_ref().map(|p| p.0.clone()))
                .bind(codec::purpose_name(order.purpose))
                .bind(codec::confidentiality_name(order.confidentiality))
                .bind(active)
                .bind(at)
                .fetch_optional(&mut *conn)
                .await?
        });
        match written {
            Some(id) => Ok(id),
            // Unchanged: the row is there as it was.
            None => Ok(with_tx!(self, conn => {
                sqlx::query_scalar(SELECT_ORDER_ID)
                    .bind(patient_id.0)
                    .bind(order.id.clone())
                    .fetch_one(&mut *conn)
                    .await?
            })),
        }
    }

    /// Make `orders` the regimen of record: upsert each as active and deactivate every other order of
    /// the patient (kept for history, never deleted).
    pub async fn replace_regimen(
        &mut self,
        patient_id: PatientId,
        orders: &[MedicationOrder],
    ) -> Result<(), StoreError> {
        let mut keep = Vec::with_capacity(orders.len());
        for order in orders {
            keep.push(self.upsert_medication_order(patient_id, order, true).await?);
        }
        let active: Vec<i64> = with_tx!(self, conn => {
            sqlx::query_scalar("select id from medication_orders where patient_id = $1 and active = true")
                .bind(patient_id.0)
                .fetch_all(&mut *conn)
                .await?
        });
        let at = now();
        for id in active.into_iter().filter(|id| !keep.contains(id)) {
            with_tx!(self, conn => {
                sqlx::query("update medication_orders set active = false, updated_at = $1 where id = $2")
                    .bind(at)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            });
        }
        Ok(())
    }

    /// Record a fill. With a `source_id` a re-import updates the same row instead of adding one.
    pub async fn insert_fill(
        &mut self,
        patient_id: PatientId,
        fill: &Fill,
        source_id: Option<&str>,
    ) -> Result<i64, StoreError> {
        let at = now();
        Ok(with_tx!(self, conn => {
            sqlx::query_scalar(INSERT_FILL)
                .bind(patient_id.0)
                .bind(fill.filled_on)
                .bind(i64::from(fill.days_supply))
                .bind(fill.order_id.clone())
                .bind(fill.quantity)
                .bind(source_id.map(str::to_string))
                .bind(at)
                .fetch_one(&mut *conn)
                .await?
        }))
    }

    pub async fn insert_agreement(
        &mut self,
        patient_id: PatientId,
        agreement: &AgreementFacts,
        source_id: Option<&str>,
    ) -> Result<i64, StoreError> {
        let at = now();
        Ok(with_tx!(self, conn => {
            sqlx::query_scalar(INSERT_AGREEMENT)
                .bind(patient_id.0)
                .bind(agreement.signed_on)
                .bind(agreement.prescriber_of_record.0.clone())
                .bind(agreement.text_version.clone())
                .bind(Json(json!(agreement.elements)))
                .bind(agreement.voided_on)
                .bind(source_id.map(str::to_string))
                .bind(at)
                .fetch_one(&mut *conn)
                .await?
        }))
    }

    /// Record a UDS order; the same (kind, due date) twice is one order.
    pub async fn insert_uds_order(&mut self, patient_id: PatientId, order: &UdsOrder) -> Result<i64, StoreError> {
        let at = now();
        Ok(with_tx!(self, conn => {
            sqlx::query_scalar(INSERT_UDS_ORDER)
                .bind(patient_id.0)
                .bind(codec::uds_kind_name(order.kind))
                .bind(order.due_on)
                .bind(order.drawn_on)
                .bind(order.seed)
                .bind(order.algorithm.clone())
                .bind(order.period_start)
                .bind(order.period_end)
                .bind(order.created_by.clone())
                .bind(at)
                .fetch_one(&mut *conn)
                .await?
        }))
    }

    /// Record a UDS result; it fulfils the open orders of its kind made on or before its collection.
    pub async fn insert_uds_result(
        &mut self,
        patient_id: PatientId,
        result: &UdsResult,
        source_id: Option<&str>,
    ) -> Result<i64, StoreError> {
        let at = now();
        let kind = codec::uds_kind_name(result.kind);
        Ok(with_tx!(self, conn => {
            let id: i64 = sqlx::query_scalar(INSERT_UDS_RESULT)
                .bind(patient_id.0)
                .bind(result.collected_on)
                .bind(kind)
                .bind(result.confirmatory)
                .bind(Json(codec::analytes_to_json(&result.analytes)))
                .bind(result.physician_reviewed_on)
                .bind(codec::confidentiality_name(result.confidentiality))
                .bind(source_id.map(str::to_string))
                .bind(at)
                .bind(result.specimen_validity.as_str())
                .fetch_one(&mut *conn)
                .await?;
            sqlx::query(CLOSE_UDS_ORDERS)
                .bind(result.collected_on)
                .bind(patient_id.0)
                .bind(kind)
                .execute(&mut *conn)
                .await?;
            id
        }))
    }

    pub async fn insert_pdmp_review(
        &mut self,
        patient_id: PatientId,
        review: &PdmpReview,
        reviewed_by: &str,
        source_id: Option<&str>,
    ) -> Result<i64, StoreError> {
        let at = now();
        Ok(with_tx!(self, conn => {
            sqlx::query_scalar(INSERT_PDMP_REVIEW)
                .bind(patient_id.0)
                .bind(review.reviewed_on)
                .bind(Json(codec::findings_to_json(&review.findings)))
                .bind(reviewed_by.to_string())
                .bind(source_id.map(str::to_string))
                .bind(at)
                .fetch_one(&mut *conn)
                .await?
        }))
    }

    pub async fn insert_physician_review(
        &mut self,
        patient_id: PatientId,
        review: &PhysicianReview,
        note: Option<&str>,
    ) -> Result<i64, StoreError> {
        let (kind, subject, class) = review_kind_columns(&review.kind);
        let at = now();
        Ok(with_tx!(self, conn => {
            sqlx::query_scalar(INSERT_PHYSICIAN_REVIEW)
                .bind(patient_id.0)
                .bind(review.reviewed_on)
                .bind(review.physician.0.clone())
                .bind(kind)
                .bind(subject.clone())
                .bind(note.map(str::to_string))
                .bind(at)
                .bind(class)
                .fetch_one(&mut *conn)
                .await?
        }))
    }

    pub async fn insert_naloxone_event(
        &mut self,
        patient_id: PatientId,
        event: &NaloxoneEvent,
        recorded_by: &str,
    ) -> Result<i64, StoreError> {
        let at = now();
        Ok(with_tx!(self, conn => {
            sqlx::query_scalar(INSERT_NALOXONE_EVENT)
                .bind(patient_id.0)
                .bind(event.on)
                .bind(codec::naloxone_kind_name(event.kind))
                .bind(recorded_by.to_string())
                .bind(at)
                .fetch_one(&mut *conn)
                .await?
        }))
    }

    pub async fn insert_clinical_flag(
        &mut self,
        patient_id: PatientId,
        flag: &ClinicalFlag,
        source_id: Option<&str>,
    ) -> Result<i64, StoreError> {
        let at = now();
        Ok(with_tx!(self, conn => {
            sqlx::query_scalar(INSERT_FLAG)
                .bind(patient_id.0)
                .bind(codec::flag_kind_name(flag.kind))
                .bind(flag.recorded_on)
                .bind(codec::confidentiality_name(flag.confidentiality))
                .bind(source_id.map(str::to_string))
                .bind(at)
                .fetch_one(&mut *conn)
                .await?
        }))
    }

    pub async fn insert_other_medication(
        &mut self,
        patient_id: PatientId,
        medication: &OtherMedication,
        source_id: Option<&str>,
    ) -> Result<i64, StoreError> {
        let at = now();
        Ok(with_tx!(self, conn => {
            sqlx::query_scalar(INSERT_OTHER_MEDICATION)
                .bind(patient_id.0)
                .bind(codec::other_medication_class_name(medication.class))
                .bind(medication.text.clone())
                .bind(medication.started_on)
                .bind(medication.active)
                .bind(codec::confidentiality_name(medication.confidentiality))
                .bind(source_id.map(str::to_string))
                .bind(at)
                .fetch_one(&mut *conn)
                .await?
        }))
    }

    /// Record a patient statement (shown with the reasons of the decisions within the policy's lookback).
    pub async fn insert_patient_statement(
        &mut self,
        patient_id: PatientId,
        statement: &PatientStatement,
        recorded_by: &str,
    ) -> Result<i64, StoreError> {
        let at = now();
        Ok(with_tx!(self, conn => {
            sqlx::query_scalar(INSERT_PATIENT_STATEMENT)
                .bind(patient_id.0)
                .bind(statement.recorded_on)
                .bind(statement.text.clone())
                .bind(codec::confidentiality_name(statement.confidentiality))
                .bind(recorded_by.to_string())
                .bind(at)
                .fetch_one(&mut *conn)
                .await?
        }))
    }

    /// Create an active taper plan with its steps and a `created` plan event. No audit event (see
    /// `Store::create_taper_plan`).
    pub async fn insert_taper_plan(
        &mut self,
        patient_id: PatientId,
        plan: &NewTaperPlan,
        actor: &Actor,
    ) -> Result<TaperPlanId, StoreError> {
        let at = now();
        let plan_id: i64 = with_tx!(self, conn => {
            sqlx::query_scalar(INSERT_TAPER_PLAN)
                .bind(patient_id.0)
                .bind(plan.started_on)
                .bind(actor.id.clone())
                .bind(plan.rationale.clone())
                .bind(at)
                .fetch_one(&mut *conn)
                .await?
        });
        for (index, step) in plan.steps.iter().enumerate() {
            with_tx!(self, conn => {
                sqlx::query(INSERT_TAPER_STEP)
                    .bind(plan_id)
                    .bind(index as i64 + 1)
                    .bind(step.starts_on)
                    .bind(Json(codec::orders_to_json(&step.regimen)))
                    .bind(step.total_daily_mme)
                    .execute(&mut *conn)
                    .await?;
            });
        }
        self.insert_taper_event(TaperPlanId(plan_id), actor, "created", json!({ "steps": plan.steps.len() })).await?;
        Ok(TaperPlanId(plan_id))
    }

    async fn insert_taper_event(
        &mut self,
        plan_id: TaperPlanId,
        actor: &Actor,
        kind: &str,
        detail: Value,
    ) -> Result<(), StoreError> {
        let at = now();
        with_tx!(self, conn => {
            sqlx::query(INSERT_TAPER_EVENT)
                .bind(plan_id.0)
                .bind(at)
                .bind(actor.id.clone())
                .bind(kind.to_string())
                .bind(Json(detail.clone()))
                .execute(&mut *conn)
                .await?;
        });
        Ok(())
    }

    /// Move a taper plan to `state` if `expected_version` is current, with a plan event.
    ///
    /// # Errors
    /// `Conflict` when the plan changed since `expected_version`.
    pub async fn set_taper_state(
        &mut self,
        plan_id: TaperPlanId,
        expected_version: i64,
        state: StoredTaperState,
        actor: &Actor,
        note: &str,
    ) -> Result<i64, StoreError> {
        let at = now();
        let updated = with_tx!(self, conn => {
            sqlx::query(UPDATE_TAPER_STATE)
                .bind(codec::taper_state_name(state))
                .bind(at)
                .bind(plan_id.0)
                .bind(expected_version)
                .execute(&mut *conn)
                .await?
                .rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::Conflict(format!(
                "taper plan {plan_id} changed since version {expected_version} (or does not exist)"
            )));
        }
        let detail = json!({ "state": codec::taper_state_name(state), "note": note });
        self.insert_taper_event(plan_id, actor, "state_changed", detail).await?;
        Ok(expected_version + 1)
    }

    /// The patient's plan in force (the latest that is not cancelled), read inside this transaction.
    async fn taper_plan_in_force(&mut self, patient_id: PatientId) -> Result<Option<TaperPlanState>, StoreError> {
        Ok(with_tx!(self, conn => {
            sqlx::query_as(SELECT_PLAN_IN_FORCE).bind(patient_id.0).fetch_optional(&mut *conn).await?
        }))
    }

    /// Insert one staff-entered fact (no version check, no audit; see `Store::record_fact`).
    pub async fn insert_staff_fact(
        &mut self,
        patient_id: PatientId,
        fact: &StaffFact,
        actor: &Actor,
    ) -> Result<i64, StoreError> {
        match fact {
            StaffFact::Fill { fill } => self.insert_fill(patient_id, fill, None).await,
            StaffFact::PdmpReview { review } => self.insert_pdmp_review(patient_id, review, &actor.id, None).await,
            StaffFact::PhysicianReview { review, note } => {
                self.insert_physician_review(patient_id, review, note.as_deref()).await
            }
            StaffFact::NaloxoneEvent { event } => self.insert_naloxone_event(patient_id, event, &actor.id).await,
            StaffFact::UdsOrder { order } => self.insert_uds_order(patient_id, order).await,
            StaffFact::UdsResult { result } => self.insert_uds_result(patient_id, result, None).await,
            StaffFact::Agreement { agreement } => self.insert_agreement(patient_id, agreement, None).await,
            StaffFact::ClinicalFlag { flag } => self.insert_clinical_flag(patient_id, flag, None).await,
            StaffFact::OtherMedication { medication } => {
                self.insert_other_medication(patient_id, medication, None).await
            }
            StaffFact::PatientStatement { statement } => {
                self.insert_patient_statement(patient_id, statement, &actor.id).await
            }
        }
    }
}

/// Whether the fact queries may keep prepared statements across calls. On PostgreSQL they must not: a
/// kept statement is switched to a generic plan after five runs, and a plan that cannot see the bound
/// patient range reads a one-patient load like a 1,000-patient chunk (25 ms instead of 3 ms at 100,000
/// patients; BENCHMARKS.md, Store). Unnamed statements are planned with their values every time. On
/// SQLite a kept statement only saves the parse, so it is kept.
fn prepared_plans_fit(backend: crate::Backend) -> bool {
    backend == crate::Backend::Sqlite
}

/// One fact query over a patient-id range: `$sql` with the range bound (and `as_of`, for the queries
/// that take it), fetched through `$executor`.
macro_rules! fetch_in_range {
    ($executor:expr, $sql:expr, $persistent:expr, $first:expr, $last:expr $(, $extra:expr)?) => {
        sqlx::query_as($sql)
            .persistent($persistent)
            .bind($first)
            .bind($last)
            $(.bind($extra))?
            .fetch_all($executor)
            .await?
    };
}

/// Read the fact rows of the patients `$first..=$last` through `$executor` (a pool, or `&mut *conn` of
/// a transaction): one query per fact table. A macro because each backend and each executor kind is a
/// different type, while the statements and binds are the same.
macro_rules! fetch_fact_rows {
    ($executor:expr, $first:expr, $last:expr, $as_of:expr, $active_only:expr, $persistent:expr) => {{
        let persistent: bool = $persistent;
        let (a, b, as_of): (i64, i64, NaiveDate) = ($first.0, $last.0, $as_of);
        let patient_sql = if $active_only { SELECT_PATIENTS_ACTIVE } else { SELECT_PATIENTS };
        FactRows {
            patients: fetch_in_range!($executor, patient_sql, persistent, a, b),
            orders: fetch_in_range!($executor, SELECT_ORDERS, persistent, a, b),
            fills: fetch_in_range!($executor, SELECT_FILLS, persistent, a, b),
            agreements: fetch_in_range!($executor, SELECT_AGREEMENTS, persistent, a, b),
            uds_orders: fetch_in_range!($executor, SELECT_UDS_ORDERS, persistent, a, b),
            uds_results: fetch_in_range!($executor, SELECT_UDS_RESULTS, persistent, a, b),
            pdmp_reviews: fetch_in_range!($executor, SELECT_PDMP, persistent, a, b),
            physician_reviews: fetch_in_range!($executor, SELECT_REVIEWS, persistent, a, b),
            naloxone_events: fetch_in_range!($executor, SELECT_NALOXONE, persistent, a, b),
            flags: fetch_in_range!($executor, SELECT_FLAGS, persistent, a, b),
            other_medications: fetch_in_range!($executor, SELECT_OTHER_MEDICATIONS, persistent, a, b),
            statements: fetch_in_range!($executor, SELECT_STATEMENTS, persistent, a, b),
            taper_steps: fetch_in_range!($executor, SELECT_TAPER_STEPS, persistent, a, b, as_of),
            next_taper_steps: fetch_in_range!($executor, SELECT_NEXT_TAPER_STEPS, persistent, a, b, as_of),
            prior_decisions: fetch_in_range!($executor, SELECT_PRIOR_DECISIONS, persistent, a, b, as_of),
            open_requests: fetch_in_range!($executor, SELECT_OPEN_REQUESTS, persistent, a, b, as_of),
            standing: fetch_in_range!($executor, SELECT_STANDING_DECISIONS, persistent, a, b, as_of),
            prepared: fetch_in_range!($executor, SELECT_PREPARED_REFILLS, persistent, a, b, as_of),
            request_history: fetch_in_range!($executor, SELECT_REQUEST_HISTORY, persistent, a, b, as_of),
        }
    }};
}

impl Store {
    /// Record a fact entered by staff or a physician: claims the patient at `expected_version` (the
    /// loser of a race gets `Conflict` naming the winner), inserts the fact, appends the audit event,
    /// all in one transaction. Returns the patient's new version.
    ///
    /// # Errors
    /// `Conflict`, `NotFound`, database errors.
    pub async fn record_fact(
        &self,
        patient_id: PatientId,
        expected_version: i64,
        fact: &StaffFact,
        actor: &Actor,
        reason: Option<&str>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        let version = self.record_fact_in(&mut tx, patient_id, expected_version, fact, actor, reason).await?;
        tx.commit().await?;
        Ok(version)
    }

    /// `record_fact` inside the caller's transaction, so the fact commits (or not) with what follows
    /// from it (the decision the rules make on it, the queue row, the screen change).
    ///
    /// # Errors
    /// `Conflict`, `NotFound`, database errors (roll the transaction back).
    #[tracing::instrument(skip_all, fields(patient_id = patient_id.0))]
    pub async fn record_fact_in(
        &self,
        tx: &mut Tx,
        patient_id: PatientId,
        expected_version: i64,
        fact: &StaffFact,
        actor: &Actor,
        reason: Option<&str>,
    ) -> Result<i64, StoreError> {
        let version = tx.bump_patient_version(patient_id, expected_version, actor).await?;
        let row_id = tx.insert_staff_fact(patient_id, fact, actor).await?;
        let mut event = AuditEvent::new(actor, fact.action(), "patient_fact")
            .resource_id(row_id.to_string())
            .patient(patient_id)
            .after(fact.to_audit_json());
        if let Some(reason) = reason {
            event = event.reason(reason);
        }
        self.append_audit(tx, &event).await?;
        Ok(version)
    }

    /// Create a taper plan (physician action) with its audit event; bumps the patient's version and
    /// supersedes the plan it replaces (see `create_taper_plan_in`).
    ///
    /// # Errors
    /// `Invalid` for an empty rationale or no steps; `Conflict` when the patient changed since
    /// `expected_version`.
    pub async fn create_taper_plan(
        &self,
        patient_id: PatientId,
        expected_version: i64,
        plan: &NewTaperPlan,
        actor: &Actor,
    ) -> Result<TaperPlanId, StoreError> {
        let mut tx = self.begin().await?;
        let plan_id = self.create_taper_plan_in(&mut tx, patient_id, expected_version, plan, actor).await?;
        tx.commit().await?;
        Ok(plan_id)
    }

    /// `create_taper_plan` inside the caller's transaction. A new plan (a slower or revised taper, or a
    /// fresh start) replaces the patient's active or paused plan: that one is cancelled with a
    /// `superseded` plan event naming the new plan, so exactly one plan is ever in force.
    ///
    /// # Errors
    /// `Invalid` for an empty rationale or no steps; `Conflict` when the patient changed since
    /// `expected_version`.
    #[tracing::instrument(skip_all, fields(patient_id = patient_id.0))]
    pub async fn create_taper_plan_in(
        &self,
        tx: &mut Tx,
        patient_id: PatientId,
        expected_version: i64,
        plan: &NewTaperPlan,
        actor: &Actor,
    ) -> Result<TaperPlanId, StoreError> {
        if plan.rationale.trim().is_empty() || plan.steps.is_empty() {
            return Err(StoreError::Invalid("a taper plan needs a rationale and at least one step".into()));
        }
        tx.bump_patient_version(patient_id, expected_version, actor).await?;
        let replaced: Vec<i64> = with_tx!(tx, conn => {
            sqlx::query_scalar(SELECT_PLANS_TO_SUPERSEDE).bind(patient_id.0).fetch_all(&mut *conn).await?
        });
        let plan_id = tx.insert_taper_plan(patient_id, plan, actor).await?;
        let at = now();
        for old in &replaced {
            with_tx!(tx, conn => {
                sqlx::query(SUPERSEDE_PLAN).bind(at).bind(*old).execute(&mut *conn).await?;
            });
            tx.insert_taper_event(TaperPlanId(*old), actor, "superseded", json!({ "by_plan": plan_id.0 })).await?;
        }
        let steps: Vec<Value> = plan
            .steps
            .iter()
            .map(|s| {
                json!({ "starts_on": s.starts_on, "regimen": codec::orders_to_json(&s.regimen),
                             "total_daily_mme": s.total_daily_mme })
            })
            .collect();
        let event = AuditEvent::new(actor, "taper_plan.create", "taper_plan")
            .resource_id(plan_id.to_string())
            .patient(patient_id)
            .reason(plan.rationale.clone())
            .after(json!({ "started_on": plan.started_on, "steps": steps, "supersedes": replaced }));
        self.append_audit(tx, &event).await?;
        Ok(plan_id)
    }

    /// Make a taper step the regimen of record, with its audit event (before: the order ids of record,
    /// after: the step's), in the caller's transaction. Used by the daily run on a step's day and by a
    /// physician's signature of a plan whose step is already in force.
    pub async fn apply_taper_step_in(
        &self,
        tx: &mut Tx,
        patient_id: PatientId,
        plan_id: TaperPlanId,
        step_starts_on: NaiveDate,
        step_regimen: &[MedicationOrder],
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let before: Vec<String> = with_tx!(tx, conn => {
            sqlx::query_scalar(
                "select source_id from medication_orders where patient_id = $1 and active = true order by id",
            )
            .bind(patient_id.0)
            .fetch_all(&mut *conn)
            .await?
        });
        tx.replace_regimen(patient_id, step_regimen).await?;
        let after: Vec<&str> = step_regimen.iter().map(|order| order.id.as_str()).collect();
        let event = AuditEvent::new(actor, "regimen.taper_step", "taper_plan")
            .resource_id(plan_id.to_string())
            .patient(patient_id)
            .before(json!({ "orders": before }))
            .after(json!({ "orders": after, "step_starts_on": step_starts_on }));
        self.append_audit(tx, &event).await?;
        Ok(())
    }

    /// Pause the patient's active taper plan from `paused_on` (physician action, in the caller's
    /// transaction): the step in force that day stays the reference, no later step takes effect until
    /// the plan is resumed. A step starting that day that the daily run has not applied yet is not in
    /// force: the pause then dates from the day before. Records a `paused` plan event and an audit event with who and why.
    ///
    /// # Errors
    /// `Invalid` when `reason` is empty or the patient has no active plan (none, or it is already
    /// paused or completed); `Conflict` when the plan changed meanwhile.
    #[tracing::instrument(skip_all, fields(patient_id = patient_id.0))]
    pub async fn pause_taper_plan_in(
        &self,
        tx: &mut Tx,
        patient_id: PatientId,
        paused_on: NaiveDate,
        actor: &Actor,
        reason: &str,
    ) -> Result<TaperPlanId, StoreError> {
        if reason.trim().is_empty() {
            return Err(StoreError::Invalid("pausing a taper needs a reason".into()));
        }
        let plan = tx.taper_plan_in_force(patient_id).await?;
        let plan = match plan {
            Some(plan) if plan.state == "active" => plan,
            Some(plan) => {
                return Err(StoreError::Invalid(format!(
                    "taper plan {} is {}; only an active taper can be paused",
                    plan.id, plan.state
                )));
            }
            None => return Err(StoreError::Invalid("the patient has no taper plan to pause".into())),
        };
        // A step that starts on the pause date but is not the regimen of record yet (the daily run has
        // not reached this patient) is not the dose the patient is on: the pause holds the step before.
        let facts = tx.load_patient_facts(patient_id, paused_on).await?;
        let paused_on = match &facts.taper {
            Some(taper)
                if taper.plan_id == plan.id
                    && taper.step_started_on == paused_on
                    && taper.step_regimen != facts.regimen =>
            {
                paused_on.pred_opt().unwrap_or(paused_on)
            }
            _ => paused_on,
        };
        let at = now();
        let updated = with_tx!(tx, conn => {
            sqlx::query(PAUSE_PLAN)
                .bind(paused_on)
                .bind(at)
                .bind(plan.id)
                .bind(plan.version)
                .execute(&mut *conn)
                .await?
                .rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::Conflict(format!("taper plan {} changed while it was being paused", plan.id)));
        }
        let plan_id = TaperPlanId(plan.id);
        tx.insert_taper_event(plan_id, actor, "paused", json!({ "paused_on": paused_on, "reason": reason })).await?;
        let event = AuditEvent::new(actor, "taper_plan.pause", "taper_plan")
            .resource_id(plan_id.to_string())
            .patient(patient_id)
            .reason(reason)
            .before(json!({ "state": "active", "version": plan.version }))
            .after(json!({ "state": "paused", "paused_on": paused_on, "version": plan.version + 1 }));
        self.append_audit(tx, &event).await?;
        Ok(plan_id)
    }

    /// Resume the patient's paused taper plan on `resumed_on` (physician action, in the caller's
    /// transaction). The steps that had not started when it paused move later by the length of the
    /// pause, so the taper continues at the pace the physician signed instead of catching up with
    /// several steps at once. Records a `resumed` plan event and an audit event.
    ///
    /// # Errors
    /// `Invalid` when `reason` is empty or the plan in force is not paused; `Conflict` when the plan
    /// changed meanwhile.
    #[tracing::instrument(skip_all, fields(patient_id = patient_id.0))]
    pub async fn resume_taper_plan_in(
        &self,
        tx: &mut Tx,
        patient_id: PatientId,
        resumed_on: NaiveDate,
        actor: &Actor,
        reason: &str,
    ) -> Result<TaperPlanId, StoreError> {
        if reason.trim().is_empty() {
            return Err(StoreError::Invalid("resuming a taper needs a reason".into()));
        }
        let plan = tx.taper_plan_in_force(patient_id).await?;
        let (plan, paused_on) = match plan {
            Some(plan @ TaperPlanState { paused_on: Some(paused_on), .. }) if plan.state == "paused" => {
                (plan, paused_on)
            }
            Some(plan) => {
                return Err(StoreError::Invalid(format!(
                    "taper plan {} is {}; only a paused taper can be resumed",
                    plan.id, plan.state
                )));
            }
            None => return Err(StoreError::Invalid("the patient has no taper plan to resume".into())),
        };
        let shift = (resumed_on - paused_on).num_days().max(0);
        let later: Vec<(i64, NaiveDate)> = with_tx!(tx, conn => {
            sqlx::query_as(SELECT_STEPS_AFTER).bind(plan.id).bind(paused_on).fetch_all(&mut *conn).await?
        });
        for (step_id, starts_on) in &later {
            let moved = *starts_on + chrono::Duration::days(shift);
            with_tx!(tx, conn => {
                sqlx::query(MOVE_STEP).bind(moved).bind(*step_id).execute(&mut *conn).await?;
            });
        }
        let at = now();
        let updated = with_tx!(tx, conn => {
            sqlx::query(RESUME_PLAN).bind(at).bind(plan.id).bind(plan.version).execute(&mut *conn).await?.rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::Conflict(format!("taper plan {} changed while it was being resumed", plan.id)));
        }
        let plan_id = TaperPlanId(plan.id);
        let detail = json!({ "paused_on": paused_on, "resumed_on": resumed_on, "days_moved": shift,
                             "steps_moved": later.len(), "reason": reason });
        tx.insert_taper_event(plan_id, actor, "resumed", detail.clone()).await?;
        let event = AuditEvent::new(actor, "taper_plan.resume", "taper_plan")
            .resource_id(plan_id.to_string())
            .patient(patient_id)
            .reason(reason)
            .before(json!({ "state": "paused", "paused_on": paused_on, "version": plan.version }))
            .after(json!({ "state": "active", "version": plan.version + 1, "days_moved": shift,
                           "steps_moved": later.len() }));
        self.append_audit(tx, &event).await?;
        Ok(plan_id)
    }

    /// Everything the rules read about one patient, as of the clinic date `as_of` (which picks the taper
    /// step in force; the prior decision is the latest one before `as_of`).
    ///
    /// # Errors
    /// `NotFound` when there is no such patient.
    #[tracing::instrument(skip_all, fields(patient_id = patient_id.0))]
    pub async fn load_patient_facts(
        &self,
        patient_id: PatientId,
        as_of: NaiveDate,
    ) -> Result<PatientFacts, StoreError> {
        let mut facts = self.load_facts(patient_id, patient_id, as_of, false).await?;
        facts.pop().ok_or_else(|| StoreError::NotFound(format!("patient {}", patient_id.0)))
    }

    /// The facts of every active patient with an id in `first..=last`, ordered by id, in a fixed number
    /// of queries (one per fact table).
    #[tracing::instrument(skip_all, fields(first = first.0, last = last.0))]
    pub async fn load_facts_in_range(
        &self,
        first: PatientId,
        last: PatientId,
        as_of: NaiveDate,
    ) -> Result<Vec<PatientFacts>, StoreError> {
        self.load_facts(first, last, as_of, true).await
    }

    async fn load_facts(
        &self,
        first: PatientId,
        last: PatientId,
        as_of: NaiveDate,
        active_only: bool,
    ) -> Result<Vec<PatientFacts>, StoreError> {
        let persistent = prepared_plans_fit(self.backend());
        let rows = with_read_pool!(self, pool => fetch_fact_rows!(pool, first, last, as_of, active_only, persistent));
        rows.assemble()
    }
}

impl Tx {
    /// The last drug-test collection of each of `patients` that has one (the chunk's form of
    /// `last_uds_collection`): one statement per 1,000 patients.
    ///
    /// # Errors
    /// Database errors.
    pub async fn last_uds_collections(
        &mut self,
        patients: &[PatientId],
    ) -> Result<std::collections::HashMap<PatientId, NaiveDate>, StoreError> {
        let mut found = std::collections::HashMap::with_capacity(patients.len());
        for ids in patients.chunks(crate::batch::ROWS_PER_STATEMENT) {
            let sql = format!(
                "select patient_id, max(collected_on) from uds_tests where patient_id in ({}) \
                 and collected_on is not null group by patient_id",
                crate::batch::in_list(ids.len(), 1)
            );
            let rows: Vec<(i64, NaiveDate)> = with_tx!(self, conn => {
                let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
                for id in ids {
                    query = query.bind(id.0);
                }
                query.fetch_all(&mut *conn).await?
            });
            found.extend(rows.into_iter().map(|(patient, on)| (PatientId(patient), on)));
        }
        Ok(found)
    }

    /// `insert_uds_order` for many patients in multi-row inserts (the same conflict rule: one order
    /// per patient, kind and due date).
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_uds_orders(&mut self, orders: &[(PatientId, UdsOrder)]) -> Result<(), StoreError> {
        let at = now();
        for rows in orders.chunks(crate::batch::ROWS_PER_STATEMENT) {
            let sql = format!(
                "{INSERT_UDS_ORDERS} {} {UDS_ORDER_CONFLICT}",
                crate::batch::values_list("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows.len(), 1)
            );
            with_tx!(self, conn => {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (patient, order) in rows {
                    query = query
                        .bind(patient.0)
                        .bind(codec::uds_kind_name(order.kind))
                        .bind(order.due_on)
                        .bind(order.drawn_on)
                        .bind(order.seed)
                        .bind(order.algorithm.as_deref())
                        .bind(order.period_start)
                        .bind(order.period_end)
                        .bind(order.created_by.as_str())
                        .bind(at);
                }
                query.execute(&mut *conn).await?;
            });
        }
        Ok(())
    }

    /// `Store::load_patient_facts` inside this transaction: the same queries, and they see the
    /// transaction's own writes (a fact recorded a moment ago in it). On SQLite the read pool cannot
    /// see uncommitted writes, so a decision made before commit must load its facts here.
    ///
    /// # Errors
    /// `NotFound` when there is no such patient.
    pub async fn load_patient_facts(
        &mut self,
        patient_id: PatientId,
        as_of: NaiveDate,
    ) -> Result<PatientFacts, StoreError> {
        let persistent = prepared_plans_fit(self.backend());
        let rows =
            with_tx!(self, conn => fetch_fact_rows!(&mut *conn, patient_id, patient_id, as_of, false, persistent));
        rows.assemble()?.pop().ok_or_else(|| StoreError::NotFound(format!("patient {}", patient_id.0)))
    }
}

const SELECT_PATIENTS: &str = r#"
select id, birth_date, sex, risk_tier, prescriber_of_record, previous_prescriber from patients
where id >= $1 and id <= $2 order by id"#;
// The daily run's patients: active and enrolled (a patient imported without an active opioid order is
// not the clinic's until enrolled, and a dismissed one never is; see `enrolment`).
const SELECT_PATIENTS_ACTIVE: &str = r#"
select id, birth_date, sex, risk_tier, prescriber_of_record, previous_prescriber from patients
where id >= $1 and id <= $2 and active = true and enrolment = 'enrolled' order by id"#;
// The next signed step of each patient's active plan after $3 (the refill whose supply starts on its
// date is decided against it).
const SELECT_NEXT_TAPER_STEPS: &str = r#"
select p.patient_id, s.starts_on, s.regimen
from taper_plans p
join taper_steps s on s.plan_id = p.id
where p.patient_id >= $1 and p.patient_id <= $2 and p.state = 'active'
  and p.id = (select max(p2.id) from taper_plans p2 where p2.patient_id = p.patient_id and p2.state <> 'cancelled')
  and s.step_number = (select min(s2.step_number) from taper_steps s2 where s2.plan_id = p.id and s2.starts_on > $3)
order by p.patient_id"#;
// Requests recorded on or before $3 that no dispense up to $3 has answered yet (a fill on or after the
// day of the request answers it), oldest first: the latest one is the open request.
const SELECT_OPEN_REQUESTS: &str = r#"
select r.patient_id, r.id, r.requested_on, r.kind
from refill_requests r
where r.patient_id >= $1 and r.patient_id <= $2 and r.requested_on <= $3 and r.status <> 'withdrawn'
  and not exists (select 1 from fills f where f.patient_id = r.patient_id and f.filled_on >= r.requested_on
                  and f.filled_on <= $3)
order by r.patient_id, r.requested_on, r.id"#;
// The latest clinic date on or before $3 on which staff prepared a refill (queue item done) that no
// fill between that date and $3 has answered (a fill after $3 is not known yet as of $3).
const SELECT_PREPARED_REFILLS: &str = r#"
select q.patient_id, max(q.clinic_date) as prepared_on
from daily_queue q
where q.patient_id >= $1 and q.patient_id <= $2 and q.status = 'done' and q.clinic_date <= $3
  and not exists (select 1 from fills f where f.patient_id = q.patient_id and f.filled_on >= q.clinic_date
                  and f.filled_on <= $3)
group by q.patient_id
order by q.patient_id"#;
// Early requests and lost-or-stolen reports on or before $3: the history the aberrant-pattern and
// repeat-loss rules read.
const SELECT_REQUEST_HISTORY: &str = r#"
select patient_id, requested_on, kind from refill_requests
where patient_id >= $1 and patient_id <= $2 and requested_on <= $3 and status <> 'withdrawn'
  and kind in ('early', 'lost_or_stolen_replacement')
order by patient_id, requested_on, id"#;
// Each patient's latest physician decision signed on or before $3 (whether it still stands is the
// rules' call: `cycle::standing_applies`).
const SELECT_STANDING_DECISIONS: &str = r#"
select pd.patient_id, pd.id, pd.choice, pd.covered, pd.bridge_days, pd.review_by, pd.latest_fill_seen,
    pd.signed_by, pd.signed_on
from physician_decisions pd
where pd.patient_id >= $1 and pd.patient_id <= $2
  and pd.id = (select max(p2.id) from physician_decisions p2 where p2.patient_id = pd.patient_id and p2.signed_on <= $3)
order by pd.patient_id"#;
const SELECT_ORDERS: &str = r#"
select patient_id, source_id, rxcui, text, dose_value, dose_unit, dose_unit_text, doses_per_day, days_supply,
    dispense_quantity, prescriber_id, purpose, confidentiality, active
from medication_orders where patient_id >= $1 and patient_id <= $2 order by patient_id, id"#;
const SELECT_FILLS: &str = r#"
select patient_id, filled_on, days_supply, order_source_id, quantity
from fills where patient_id >= $1 and patient_id <= $2 order by patient_id, filled_on, id"#;
// The agreement that counts is the latest signed one.
const SELECT_AGREEMENTS: &str = r#"
select patient_id, signed_on, prescriber_id, text_version, elements, voided_on
from agreements where patient_id >= $1 and patient_id <= $2 order by patient_id, signed_on, id"#;
const SELECT_UDS_ORDERS: &str = r#"
select patient_id, kind, due_on from uds_schedule
where patient_id >= $1 and patient_id <= $2 and collected_on is null order by patient_id, due_on"#;
const SELECT_UDS_RESULTS: &str = r#"
select patient_id, collected_on, kind, confirmatory, analytes, physician_reviewed_on, confidentiality,
    specimen_validity
from uds_results where patient_id >= $1 and patient_id <= $2 order by patient_id, collected_on, id"#;
const SELECT_PDMP: &str = r#"
select patient_id, reviewed_on, findings from pdmp_reviews
where patient_id >= $1 and patient_id <= $2 order by patient_id, reviewed_on, id"#;
const SELECT_REVIEWS: &str = r#"
select patient_id, reviewed_on, physician_id, kind, subject_prescriber_id, subject_drug_class from physician_reviews
where patient_id >= $1 and patient_id <= $2 order by patient_id, reviewed_on, id"#;
const SELECT_NALOXONE: &str = r#"
select patient_id, occurred_on, kind from naloxone_events
where patient_id >= $1 and patient_id <= $2 order by patient_id, occurred_on, id"#;
const SELECT_FLAGS: &str = r#"
select patient_id, kind, recorded_on, confidentiality from clinical_flags
where patient_id >= $1 and patient_id <= $2 and active order by patient_id, recorded_on, id"#;
const SELECT_OTHER_MEDICATIONS: &str = r#"
select patient_id, class, text, started_on, active, confidentiality from other_medications
where patient_id >= $1 and patient_id <= $2 order by patient_id, id"#;
const SELECT_STATEMENTS: &str = r#"
select patient_id, recorded_on, text, confidentiality from patient_statements
where patient_id >= $1 and patient_id <= $2 order by patient_id, recorded_on, id"#;
// The step in force on $3 of each patient's latest plan that is not cancelled: the latest step that has
// started. Plans whose first step starts later are not in force yet. A paused plan stays at the step in
// force on the day it paused, so a later step never becomes the reference while the taper is paused.
const SELECT_TAPER_STEPS: &str = r#"
select p.patient_id, p.id as plan_id, p.state, p.started_on, s.starts_on, s.regimen
from taper_plans p
join taper_steps s on s.plan_id = p.id
where p.patient_id >= $1 and p.patient_id <= $2 and p.state <> 'cancelled'
  and p.id = (select max(p2.id) from taper_plans p2 where p2.patient_id = p.patient_id and p2.state <> 'cancelled')
  and s.step_number = (select max(s2.step_number) from taper_steps s2 where s2.plan_id = p.id and s2.starts_on <= $3
                       and (p.paused_on is null or s2.starts_on <= p.paused_on))
order by p.patient_id"#;
// The latest decision strictly before $3, so re-evaluating a date gives the same prior every time.
const SELECT_PRIOR_DECISIONS: &str = r#"
select latest.patient_id, d.clinic_date, d.total_daily_mme
from (
    -- One index probe per patient: the correlated subquery sits in the select list, so PostgreSQL runs it
    -- once per patient of the range instead of filtering every decision row through it.
    select p.id as patient_id,
        (select d2.id from decisions d2 where d2.patient_id = p.id and d2.clinic_date < $3
         order by d2.clinic_date desc, d2.id desc limit 1) as decision_id
    from patients p
    where p.id >= $1 and p.id <= $2
) latest
join decisions d on d.id = latest.decision_id"#;

/// A plan's state as a pause or resume reads it before changing it.
#[derive(sqlx::FromRow)]
struct TaperPlanState {
    id: i64,
    state: String,
    version: i64,
    paused_on: Option<NaiveDate>,
}

#[derive(sqlx::FromRow)]
struct FactPatientRow {
    id: i64,
    birth_date: Option<NaiveDate>,
    sex: String,
    risk_tier: String,
    prescriber_of_record: Option<String>,
    previous_prescriber: Option<String>,
}

#[derive(sqlx::FromRow)]
struct NextTaperStepRow {
    patient_id: i64,
    starts_on: NaiveDate,
    regimen: Json<Value>,
}

#[derive(sqlx::FromRow)]
struct RequestHistoryRow {
    patient_id: i64,
    requested_on: NaiveDate,
    kind: String,
}

#[derive(sqlx::FromRow)]
struct PreparedRow {
    patient_id: i64,
    prepared_on: Option<NaiveDate>,
}

#[derive(sqlx::FromRow)]
struct OpenRequestRow {
    patient_id: i64,
    id: i64,
    requested_on: NaiveDate,
    kind: String,
}

#[derive(sqlx::FromRow)]
struct StandingRow {
    patient_id: i64,
    id: i64,
    choice: String,
    covered: Json<Value>,
    bridge_days: Option<i64>,
    review_by: Option<NaiveDate>,
    latest_fill_seen: Option<NaiveDate>,
    signed_by: String,
    signed_on: NaiveDate,
}

#[derive(sqlx::FromRow)]
struct OrderRow {
    patient_id: i64,
    source_id: String,
    rxcui: Option<String>,
    text: Option<String>,
    dose_value: Option<f64>,
    dose_unit: Option<String>,
    dose_unit_text: Option<String>,
    doses_per_day: Option<f64>,
    days_supply: Option<i64>,
    dispense_quantity: Option<f64>,
    prescriber_id: Option<String>,
    purpose: String,
    confidentiality: String,
    active: bool,
}

#[derive(sqlx::FromRow)]
struct FillRow {
    patient_id: i64,
    filled_on: NaiveDate,
    days_supply: i64,
    order_source_id: Option<String>,
    quantity: Option<f64>,
}

#[derive(sqlx::FromRow)]
struct AgreementRow {
    patient_id: i64,
    signed_on: NaiveDate,
    prescriber_id: String,
    text_version: String,
    elements: Json<Value>,
    voided_on: Option<NaiveDate>,
}

#[derive(sqlx::FromRow)]
struct UdsOrderRow {
    patient_id: i64,
    kind: String,
    due_on: NaiveDate,
}

#[derive(sqlx::FromRow)]
struct UdsResultRow {
    patient_id: i64,
    collected_on: NaiveDate,
    kind: String,
    confirmatory: bool,
    analytes: Json<Value>,
    physician_reviewed_on: Option<NaiveDate>,
    confidentiality: String,
    specimen_validity: String,
}

#[derive(sqlx::FromRow)]
struct PdmpRow {
    patient_id: i64,
    reviewed_on: NaiveDate,
    findings: Json<Value>,
}

#[derive(sqlx::FromRow)]
struct ReviewRow {
    patient_id: i64,
    reviewed_on: NaiveDate,
    physician_id: String,
    kind: String,
    subject_prescriber_id: Option<String>,
    subject_drug_class: Option<String>,
}

#[derive(sqlx::FromRow)]
struct NaloxoneRow {
    patient_id: i64,
    occurred_on: NaiveDate,
    kind: String,
}

#[derive(sqlx::FromRow)]
struct FlagRow {
    patient_id: i64,
    kind: String,
    recorded_on: NaiveDate,
    confidentiality: String,
}

#[derive(sqlx::FromRow)]
struct OtherMedicationRow {
    patient_id: i64,
    class: String,
    text: String,
    started_on: Option<NaiveDate>,
    active: bool,
    confidentiality: String,
}

#[derive(sqlx::FromRow)]
struct StatementRow {
    patient_id: i64,
    recorded_on: NaiveDate,
    text: String,
    confidentiality: String,
}

#[derive(sqlx::FromRow)]
struct TaperStepRow {
    patient_id: i64,
    plan_id: i64,
    state: String,
    started_on: NaiveDate,
    starts_on: NaiveDate,
    regimen: Json<Value>,
}

#[derive(sqlx::FromRow)]
struct PriorDecisionRow {
    patient_id: i64,
    clinic_date: NaiveDate,
    total_daily_mme: Option<f64>,
}

/// The rows of one range, one vector per table, each sorted by patient id.
struct FactRows {
    patients: Vec<FactPatientRow>,
    orders: Vec<OrderRow>,
    fills: Vec<FillRow>,
    agreements: Vec<AgreementRow>,
    uds_orders: Vec<UdsOrderRow>,
    uds_results: Vec<UdsResultRow>,
    pdmp_reviews: Vec<PdmpRow>,
    physician_reviews: Vec<ReviewRow>,
    naloxone_events: Vec<NaloxoneRow>,
    flags: Vec<FlagRow>,
    other_medications: Vec<OtherMedicationRow>,
    statements: Vec<StatementRow>,
    taper_steps: Vec<TaperStepRow>,
    next_taper_steps: Vec<NextTaperStepRow>,
    prior_decisions: Vec<PriorDecisionRow>,
    open_requests: Vec<OpenRequestRow>,
    standing: Vec<StandingRow>,
    prepared: Vec<PreparedRow>,
    request_history: Vec<RequestHistoryRow>,
}

impl FactRows {
    fn assemble(self) -> Result<Vec<PatientFacts>, StoreError> {
        let mut by_id: BTreeMap<i64, PatientFacts> = BTreeMap::new();
        for row in self.patients {
            let mut facts = PatientFacts::empty(PatientId(row.id));
            facts.birth_date = row.birth_date;
            facts.sex = codec::parse_sex(&row.sex)?;
            facts.risk_tier = codec::parse_risk_tier(&row.risk_tier)?;
            facts.prescriber_of_record = row.prescriber_of_record.map(PrescriberId);
            facts.previous_prescriber = row.previous_prescriber.map(PrescriberId);
            by_id.insert(row.id, facts);
        }
        // Rows of patients outside the result (inactive ones) are skipped.
        for row in self.orders {
            if let Some(facts) = by_id.get_mut(&row.patient_id) {
                let dose = match (row.dose_value, row.dose_unit) {
                    (Some(value), Some(unit)) => Some(refill_rules::DoseQuantity {
                        value,
                        unit: codec::parse_dose_unit(&unit, row.dose_unit_text)?,
                    }),
                    _ => None,
                };
                // Inactive orders are kept as history: a drug test is read against what was prescribed
                // in the 31 days before it was collected.
                let orders = if row.active { &mut facts.regimen } else { &mut facts.past_orders };
                orders.push(MedicationOrder {
                    id: row.source_id,
                    rxcui: row.rxcui,
                    text: row.text,
                    dose,
                    doses_per_day: row.doses_per_day,
                    days_supply: row.days_supply.map(to_u32).transpose()?,
                    dispense_quantity: row.dispense_quantity,
                    prescriber: row.prescriber_id.map(PrescriberId),
                    purpose: codec::parse_purpose(&row.purpose)?,
                    confidentiality: codec::parse_confidentiality(&row.confidentiality)?,
                });
            }
        }
        for row in self.fills {
            if let Some(facts) = by_id.get_mut(&row.patient_id) {
                facts.fills.push(Fill {
                    filled_on: row.filled_on,
                    days_supply: to_u32(row.days_supply)?,
                    order_id: row.order_source_id,
                    quantity: row.quantity,
                });
            }
        }
        for row in self.agreements {
            if let Some(facts) = by_id.get_mut(&row.patient_id) {
                let elements: Vec<String> = serde_json::from_value(row.elements.0)
                    .map_err(|e| StoreError::Corrupt(format!("agreement elements json: {e}")))?;
                // Sorted by signing date: the last one wins.
                facts.agreement = Some(AgreementFacts {
                    signed_on: row.signed_on,
                    prescriber_of_record: PrescriberId(row.prescriber_id),
                    text_version: row.text_version,
                    elements,
                    voided_on: row.voided_on,
                });
            }
        }
        for row in self.uds_orders {
            if let Some(facts) = by_id.get_mut(&row.patient_id) {
                // Sorted by due date: keep the earliest open order of each kind.
                let slot = match codec::parse_uds_kind(&row.kind)? {
                    UdsKind::Scheduled => &mut facts.uds.scheduled_due,
                    UdsKind::ForCause => &mut facts.uds.for_cause_due,
                };
                slot.get_or_insert(row.due_on);
            }
        }
        for row in self.uds_results {
            if let Some(facts) = by_id.get_mut(&row.patient_id) {
                facts.uds.results.push(UdsResult {
                    collected_on: row.collected_on,
                    kind: codec::parse_uds_kind(&row.kind)?,
                    confirmatory: row.confirmatory,
                    analytes: codec::analytes_from_json(row.analytes.0)?,
                    physician_reviewed_on: row.physician_reviewed_on,
                    confidentiality: codec::parse_confidentiality(&row.confidentiality)?,
                    specimen_validity: codec::parse_specimen_validity(&row.specimen_validity)?,
                });
            }
        }
        for row in self.pdmp_reviews {
            if let Some(facts) = by_id.get_mut(&row.patient_id) {
                facts.pdmp_reviews.push(PdmpReview {
                    reviewed_on: row.reviewed_on,
                    findings: codec::findings_from_json(row.findings.0)?,
                });
            }
        }
        for row in self.physician_reviews {
            if let Some(facts) = by_id.get_mut(&row.patient_id) {
                facts.physician_reviews.push(PhysicianReview {
                    reviewed_on: row.reviewed_on,
                    physician: PrescriberId(row.physician_id),
                    kind: parse_review_kind(&row.kind, row.subject_prescriber_id, row.subject_drug_class)?,
                });
            }
        }
        for row in self.naloxone_events {
            if let Some(facts) = by_id.get_mut(&row.patient_id) {
                facts
                    .naloxone_events
                    .push(NaloxoneEvent { on: row.occurred_on, kind: codec::parse_naloxone_kind(&row.kind)? });
            }
        }
        for row in self.flags {
            if let Some(facts) = by_id.get_mut(&row.patient_id) {
                facts.flags.push(ClinicalFlag {
                    kind: codec::parse_flag_kind(&row.kind)?,
                    recorded_on: row.recorded_on,
                    confidentiality: codec::parse_confidentiality(&row.confidentiality)?,
                });
            }
        }
        for row in self.other_medications {
            if let Some(facts) = by_id.get_mut(&row.patient_id) {
                facts.other_medications.push(OtherMedication {
                    class: codec::parse_other_medication_class(&row.class)?,
                    text: row.text,
                    started_on: row.started_on,
                    active: row.active,
                    confidentiality: codec::parse_confidentiality(&row.confidentiality)?,
                });
            }
        }
        for row in self.statements {
            if let Some(facts) = by_id.get_mut(&row.patient_id) {
                facts.patient_statements.push(PatientStatement {
                    recorded_on: row.recorded_on,
                    text: row.text,
                    confidentiality: codec::parse_confidentiality(&row.confidentiality)?,
                });
            }
        }
        for row in self.taper_steps {
            if let Some(facts) = by_id.get_mut(&row.patient_id)
                && let Some(state) = codec::parse_taper_state(&row.state)?.in_force()
            {
                facts.taper = Some(TaperInForce {
                    plan_id: row.plan_id,
                    state,
                    started_on: row.started_on,
                    step_regimen: codec::orders_from_json(row.regimen.0)?,
                    step_started_on: row.starts_on,
                    next_step: None,
                });
            }
        }
        for row in self.next_taper_steps {
            if let Some(taper) = by_id.get_mut(&row.patient_id).and_then(|facts| facts.taper.as_mut()) {
                taper.next_step =
                    Some(TaperStepAhead { starts_on: row.starts_on, regimen: codec::orders_from_json(row.regimen.0)? });
            }
        }
        for row in self.prior_decisions {
            if let Some(facts) = by_id.get_mut(&row.patient_id) {
                facts.last_decision =
                    Some(PriorDecision { decided_on: row.clinic_date, total_daily_mme: row.total_daily_mme });
            }
        }
        for row in self.open_requests {
            if let Some(facts) = by_id.get_mut(&row.patient_id) {
                // Oldest first: the latest request is the one decided.
                facts.open_request = Some(RecordedRequest {
                    id: row.id,
                    requested_on: row.requested_on,
                    kind: codec::parse_request_kind(&row.kind)?,
                });
            }
        }
        for row in self.request_history {
            if let Some(facts) = by_id.get_mut(&row.patient_id) {
                match codec::parse_request_kind(&row.kind)? {
                    refill_rules::RequestKind::Early => facts.early_requests.push(row.requested_on),
                    refill_rules::RequestKind::LostOrStolenReplacement => {
                        facts.lost_or_stolen_reports.push(row.requested_on)
                    }
                    _ => {}
                }
            }
        }
        for row in self.prepared {
            if let Some(facts) = by_id.get_mut(&row.patient_id) {
                facts.refill_prepared_on = row.prepared_on;
            }
        }
        for row in self.standing {
            if let Some(facts) = by_id.get_mut(&row.patient_id) {
                facts.standing = Some(StandingDecision {
                    id: row.id,
                    signed_on: row.signed_on,
                    signed_by: row.signed_by,
                    choice: codec::parse_physician_choice(&row.choice, row.bridge_days)?,
                    covered: codec::covered_from_json(row.covered.0)?,
                    review_by: row.review_by,
                    latest_fill_seen: row.latest_fill_seen,
                });
            }
        }
        Ok(by_id.into_values().collect())
    }
}

fn to_u32(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("days supply {value} out of range")))
}
