-- The refill cycle (refill-cycle.md): requests are events of four kinds, decisions record whether the
-- refill window was open and which physician decision stood, physician decisions stand for a cycle,
-- staff notes reach the physician on the exception, drug tests have a lifecycle, and a transferred
-- patient's previous prescriber is recorded as such.

-- SQLite cannot change a check constraint in place: rebuild refill_requests (decisions reference it;
-- the foreign keys are checked at commit, when the rebuilt table holds the same ids).
pragma defer_foreign_keys = on;
create table refill_requests_rebuilt (
    id integer primary key,
    patient_id integer not null references patients (id),
    requested_on date not null,
    kind text not null default 'routine'
        check (kind in ('routine', 'early', 'lost_or_stolen_replacement', 'dose_change')),
    -- JSON array of medication orders asked for; null means the regimen of record.
    regimen text,
    status text not null default 'open' check (status in ('open', 'decided', 'withdrawn')),
    -- Where it came from: staff (phone, fax, desk), api, import.
    channel text not null default 'staff',
    -- What the patient or pharmacy said, as staff wrote it down.
    note text,
    created_by text not null,
    version integer not null default 1,
    created_at datetime not null,
    updated_at datetime not null
);
insert into refill_requests_rebuilt (id, patient_id, requested_on, kind, regimen, status, channel, created_by, version,
    created_at, updated_at)
select id, patient_id, requested_on, kind, regimen, status, channel, created_by, version, created_at, updated_at
from refill_requests;
drop table refill_requests;
alter table refill_requests_rebuilt rename to refill_requests;
create index refill_requests_patient on refill_requests (patient_id, requested_on);

-- A physician's signed decision, standing for the cycle it was made in: the reasons it covers (code,
-- subject, outcome seen), the choice, a bridge's days and quantity, and the review-by date.
create table physician_decisions (
    id integer primary key,
    patient_id integer not null references patients (id),
    exception_id integer not null references exceptions (id),
    -- The decision of the rules the physician saw.
    decision_id integer not null references decisions (id),
    choice text not null check (choice in ('approve', 'bridge', 'taper', 'hold', 'stop')),
    -- JSON array of {"code", "subject", "outcome"}.
    covered text not null,
    bridge_days integer,
    bridge_quantity real,
    review_by date,
    latest_fill_seen date,
    signed_by text not null,
    signed_on date not null,
    signed_at datetime not null
);
create index physician_decisions_patient on physician_decisions (patient_id, id);

alter table decisions add column refill_window text not null default 'open' check (refill_window in ('open', 'not_due', 'prepared'));
-- JSON array of the reasons a standing physician decision covered (same form as reasons).
alter table decisions add column covered text not null default '[]';
alter table decisions add column physician_decision_id integer references physician_decisions (id);

-- An exception raised while a physician decision stood names it: the screen says what is new since.
alter table exceptions add column follows_decision_id integer references physician_decisions (id);

-- What staff wrote when sending a patient to a physician, shown on the exception.
create table exception_notes (
    id integer primary key,
    exception_id integer not null references exceptions (id),
    patient_id integer not null references patients (id),
    author text not null,
    note text not null,
    created_at datetime not null
);
create index exception_notes_exception on exception_notes (exception_id, id);

-- A drug test from collection to physician review; results (presumptive, confirmatory) point at it.
create table uds_tests (
    id integer primary key,
    patient_id integer not null references patients (id),
    -- The scheduled draw or for-cause order it fulfils, when there is one.
    schedule_id integer references uds_schedule (id),
    kind text not null check (kind in ('scheduled', 'for_cause')),
    collected_on date not null,
    status text not null default 'collected'
        check (status in ('collected', 'presumptive', 'confirmatory_sent', 'confirmed', 'reviewed')),
    confirmatory_sent_on date,
    reviewed_on date,
    reviewed_by text,
    created_by text not null,
    version integer not null default 1,
    created_at datetime not null,
    updated_at datetime not null
);
create index uds_tests_patient on uds_tests (patient_id, collected_on);
alter table uds_results add column test_id integer references uds_tests (id);

alter table patients add column previous_prescriber text;

-- A patient's queue history (a refill prepared and not dispensed yet is read per patient every day).
create index daily_queue_patient on daily_queue (patient_id, clinic_date);
