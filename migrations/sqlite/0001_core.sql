-- Core clinical schema (SQLite). Mirrors migrations/postgres/0001_core.sql table for table and column
-- for column (a test checks the parity). Types: dates are ISO text declared DATE, instants are RFC 3339
-- text declared DATETIME (UTC), JSON is text, booleans are 0/1 declared BOOLEAN.
-- Enum-like text columns use the stable snake_case names of the Rust enums in refill-store/src/codec.rs.

-- The clinic's prescribers (physicians and other clinicians), by an opaque stable id such as an NPI.
create table prescribers (
    id text primary key,
    display_name text not null,
    role text not null default 'physician' check (role in ('physician', 'nurse_practitioner', 'physician_assistant', 'other')),
    on_roster boolean not null default true,
    active boolean not null default true,
    created_at datetime not null,
    updated_at datetime not null
);

-- Patients. Integer ids so the daily pipeline can split the population into id ranges.
create table patients (
    id integer primary key,
    -- The source system's id (FHIR Patient id or the CSV key): re-imports match on it.
    external_id text not null unique,
    mrn text unique,
    given_name text not null,
    family_name text not null,
    birth_date date,
    sex text not null default 'unknown' check (sex in ('female', 'male', 'other', 'unknown')),
    risk_tier text not null default 'moderate' check (risk_tier in ('low', 'moderate', 'high')),
    prescriber_of_record text,
    email text,
    phone text,
    email_consent boolean not null default false,
    contact_preference text not null default 'none' check (contact_preference in ('email', 'phone', 'portal', 'none')),
    -- The record holds 42 CFR Part 2 information: screens restrict it, disclosures need consent.
    part2 boolean not null default false,
    active boolean not null default true,
    -- Optimistic concurrency: every change bumps it; a writer holding an older version gets a conflict.
    version integer not null default 1,
    updated_by text not null default 'system',
    created_at datetime not null,
    updated_at datetime not null
);
create index patients_family_name on patients (family_name, given_name);

-- Medication orders: the active rows are the regimen of record.
create table medication_orders (
    id integer primary key,
    patient_id integer not null references patients (id),
    -- The source's id (e.g. MedicationRequest/abc); unique per patient so re-imports update in place.
    source_id text not null,
    rxcui text,
    text text,
    dose_value real,
    -- mg, mcg, ml, unit, or unusable (then dose_unit_text keeps what the source said).
    dose_unit text check (dose_unit in ('mg', 'mcg', 'ml', 'unit', 'unusable')),
    dose_unit_text text,
    doses_per_day real,
    days_supply integer,
    dispense_quantity real,
    prescriber_id text,
    purpose text not null default 'pain' check (purpose in ('pain', 'opioid_use_disorder')),
    confidentiality text not null default 'normal' check (confidentiality in ('normal', 'part2')),
    active boolean not null default true,
    created_at datetime not null,
    updated_at datetime not null,
    unique (patient_id, source_id)
);

create table fills (
    id integer primary key,
    patient_id integer not null references patients (id),
    filled_on date not null,
    days_supply integer not null,
    order_source_id text,
    quantity real,
    -- The source's id (e.g. MedicationDispense/xyz); null for fills entered by hand.
    source_id text,
    created_at datetime not null,
    unique (patient_id, source_id)
);
create index fills_patient on fills (patient_id, filled_on);

create table agreements (
    id integer primary key,
    patient_id integer not null references patients (id),
    signed_on date not null,
    prescriber_id text not null,
    text_version text not null,
    -- JSON array of element names the agreement covers.
    elements text not null default '[]',
    voided_on date,
    source_id text,
    created_at datetime not null,
    unique (patient_id, source_id)
);
create index agreements_patient on agreements (patient_id, signed_on);

-- Urine drug screening orders: the randomly drawn date of each scheduled test (with the seed and the
-- algorithm, so a draw can be replayed) and for-cause orders.
create table uds_schedule (
    id integer primary key,
    patient_id integer not null references patients (id),
    kind text not null check (kind in ('scheduled', 'for_cause')),
    -- The date the test is due (the drawn date for scheduled tests).
    due_on date not null,
    -- The clinic date on which the draw (or the order) was made.
    drawn_on date not null,
    seed integer,
    algorithm text,
    period_start date,
    period_end date,
    collected_on date,
    created_by text not null,
    created_at datetime not null,
    unique (patient_id, kind, due_on)
);
create index uds_schedule_patient on uds_schedule (patient_id, due_on);

create table uds_results (
    id integer primary key,
    patient_id integer not null references patients (id),
    collected_on date not null,
    kind text not null check (kind in ('scheduled', 'for_cause')),
    confirmatory boolean not null default false,
    -- JSON array of {"assay", "analyte", "detected"}.
    analytes text not null,
    physician_reviewed_on date,
    confidentiality text not null default 'normal' check (confidentiality in ('normal', 'part2')),
    source_id text,
    created_at datetime not null,
    unique (patient_id, source_id)
);
create index uds_results_patient on uds_results (patient_id, collected_on);

create table pdmp_reviews (
    id integer primary key,
    patient_id integer not null references patients (id),
    reviewed_on date not null,
    -- JSON array of {"prescriber", "drug_class", "filled_on"}.
    findings text not null default '[]',
    reviewed_by text not null,
    source_id text,
    created_at datetime not null,
    unique (patient_id, source_id)
);
create index pdmp_reviews_patient on pdmp_reviews (patient_id, reviewed_on);

create table physician_reviews (
    id integer primary key,
    patient_id integer not null references patients (id),
    reviewed_on date not null,
    physician_id text not null,
    kind text not null check (kind in ('benefit_risk', 'benzodiazepine_acknowledged', 'outside_prescriber_acknowledged')),
    -- For outside_prescriber_acknowledged: the outside prescriber acknowledged.
    subject_prescriber_id text,
    note text,
    created_at datetime not null
);
create index physician_reviews_patient on physician_reviews (patient_id, reviewed_on);

create table naloxone_events (
    id integer primary key,
    patient_id integer not null references patients (id),
    occurred_on date not null,
    kind text not null check (kind in ('offered', 'declined', 'dispensed')),
    recorded_by text not null,
    created_at datetime not null
);
create index naloxone_events_patient on naloxone_events (patient_id, occurred_on);

create table clinical_flags (
    id integer primary key,
    patient_id integer not null references patients (id),
    kind text not null,
    recorded_on date not null,
    confidentiality text not null default 'normal' check (confidentiality in ('normal', 'part2')),
    source_id text,
    created_at datetime not null,
    unique (patient_id, source_id)
);
create index clinical_flags_patient on clinical_flags (patient_id);

create table other_medications (
    id integer primary key,
    patient_id integer not null references patients (id),
    class text not null check (class in ('benzodiazepine', 'oud_treatment')),
    text text not null,
    started_on date,
    active boolean not null default true,
    confidentiality text not null default 'normal' check (confidentiality in ('normal', 'part2')),
    source_id text,
    created_at datetime not null,
    unique (patient_id, source_id)
);
create index other_medications_patient on other_medications (patient_id);

-- Taper plans: a physician-signed schedule of regimen steps. Changes are new plan_events rows.
create table taper_plans (
    id integer primary key,
    patient_id integer not null references patients (id),
    state text not null check (state in ('active', 'paused', 'completed', 'cancelled')),
    started_on date not null,
    created_by text not null,
    rationale text not null,
    version integer not null default 1,
    created_at datetime not null,
    updated_at datetime not null
);
create index taper_plans_patient on taper_plans (patient_id);

create table taper_steps (
    id integer primary key,
    plan_id integer not null references taper_plans (id),
    step_number integer not null,
    starts_on date not null,
    -- JSON array of medication orders (the regimen of the step).
    regimen text not null,
    total_daily_mme real,
    unique (plan_id, step_number)
);

create table taper_plan_events (
    id integer primary key,
    plan_id integer not null references taper_plans (id),
    occurred_at datetime not null,
    actor text not null,
    kind text not null,
    detail text not null default '{}'
);
create index taper_plan_events_plan on taper_plan_events (plan_id, id);

create table refill_requests (
    id integer primary key,
    patient_id integer not null references patients (id),
    requested_on date not null,
    kind text not null default 'routine' check (kind in ('routine', 'lost_or_stolen_replacement')),
    -- JSON array of medication orders asked for; null means the regimen of record.
    regimen text,
    status text not null default 'open' check (status in ('open', 'decided', 'withdrawn')),
    channel text not null default 'staff',
    created_by text not null,
    version integer not null default 1,
    created_at datetime not null,
    updated_at datetime not null
);
create index refill_requests_patient on refill_requests (patient_id, requested_on);

-- Decisions of the rules engine, with every reason and the policy version: never edited.
create table decisions (
    id integer primary key,
    patient_id integer not null references patients (id),
    refill_request_id integer references refill_requests (id),
    clinic_date date not null,
    outcome text not null check (outcome in ('APPROVE', 'APPROVE_WITH_TASKS', 'HOLD', 'ESCALATE', 'ESCALATE_URGENT')),
    -- JSON: the stable reason form of refill_rules::decision.
    reasons text not null,
    -- JSON array of task names.
    tasks text not null,
    eligible_on date,
    total_daily_mme real,
    policy_version text not null,
    decided_by text not null,
    -- Makes a re-run idempotent (e.g. "daily:2026-12-01:42"): the second insert is skipped.
    dedupe_key text unique,
    decided_at datetime not null
);
create index decisions_patient on decisions (patient_id, clinic_date);

-- Items for physician review. Never deleted: resolved with an outcome, a rationale and a signer.
create table exceptions (
    id integer primary key,
    patient_id integer not null references patients (id),
    decision_id integer not null references decisions (id),
    clinic_date date not null,
    status text not null default 'open' check (status in ('open', 'resolved')),
    urgency text not null check (urgency in ('routine', 'urgent')),
    -- JSON array of reason codes that raised it.
    reason_codes text not null,
    raised_at datetime not null,
    raised_by text not null,
    resolution text,
    rationale text,
    -- Required when the resolution stops therapy abruptly: the physician's safety attestation.
    safety_attestation text,
    signed_by text,
    signed_at datetime,
    -- SHA-256 of what the physician signed (decision id, resolution, rationale, attestation).
    signed_content_hash text,
    version integer not null default 1,
    updated_at datetime not null
);
create index exceptions_open on exceptions (status, urgency, raised_at);
create index exceptions_patient on exceptions (patient_id, status);

-- The daily work queue: one row per patient per clinic date.
create table daily_queue (
    id integer primary key,
    clinic_date date not null,
    patient_id integer not null references patients (id),
    decision_id integer references decisions (id),
    outcome text,
    -- 0 (approve) .. 4 (escalate urgent): the queue lists the most urgent first.
    urgency integer not null default 0,
    -- The date the current supply runs out (null when unknown).
    run_out_on date,
    status text not null default 'pending' check (status in ('pending', 'in_progress', 'done')),
    assigned_to text,
    assigned_at datetime,
    version integer not null default 1,
    updated_by text not null,
    updated_at datetime not null,
    unique (clinic_date, patient_id)
);
create index daily_queue_screen on daily_queue (clinic_date, urgency desc, run_out_on, patient_id);

-- The audit trail: append-only, one keyed hash chain. Columns holding JSON are text so the MAC covers
-- exactly the bytes stored.
create table audit_events (
    seq integer primary key,
    occurred_at text not null,
    actor text not null,
    actor_role text not null,
    action text not null,
    resource_type text not null,
    resource_id text,
    patient_id integer,
    reason text,
    before_state text,
    after_state text,
    detail text,
    client_addr text,
    session_hash text,
    prev_mac text not null,
    mac text not null
);
create index audit_events_patient on audit_events (patient_id, seq);

-- The chain head: the last sequence number and MAC. Locked by every append (BEGIN IMMEDIATE here).
create table audit_chain_head (
    id integer primary key check (id = 1),
    seq integer not null,
    mac text not null
);
insert into audit_chain_head (id, seq, mac) values (1, 0, '');

-- Append-only: the application never updates or deletes audit rows; the database refuses too.
create trigger audit_events_no_update before update on audit_events
begin
    select raise(abort, 'audit_events is append-only');
end;
create trigger audit_events_no_delete before delete on audit_events
begin
    select raise(abort, 'audit_events is append-only');
end;
