-- The person around a taper (issue 13): check-ins before each step (PEG items 0-10, withdrawal, the
-- patient's wish), the goals the patient sets, readiness to change, non-opioid therapies and referrals
-- with their status, and attendance at the clinic's opioid-safety class. Rows are added, never edited
-- in place: a new status or stage is a new row, so the history stays.
create table taper_check_ins (
    id integer primary key,
    patient_id integer not null references patients (id),
    plan_id integer references taper_plans (id),
    checked_on date not null,
    pain integer not null check (pain between 0 and 10),
    enjoyment integer not null check (enjoyment between 0 and 10),
    activity integer not null check (activity between 0 and 10),
    withdrawal text not null check (withdrawal in ('none', 'mild', 'significant')),
    wish text not null check (wish in ('go_on', 'pause', 'slow')),
    note text not null default '',
    recorded_by text not null,
    created_at datetime not null
);
create index taper_check_ins_patient on taper_check_ins (patient_id, checked_on);

create table taper_goals (
    id integer primary key,
    patient_id integer not null references patients (id),
    goal text not null,
    set_on date not null,
    status text not null check (status in ('active', 'met', 'changed')),
    recorded_by text not null,
    created_at datetime not null
);
create index taper_goals_patient on taper_goals (patient_id, id);

create table taper_readiness (
    id integer primary key,
    patient_id integer not null references patients (id),
    stage text not null check (stage in ('precontemplation', 'contemplation', 'preparation', 'action', 'maintenance')),
    assessed_on date not null,
    recorded_by text not null,
    created_at datetime not null
);
create index taper_readiness_patient on taper_readiness (patient_id, id);

create table taper_referrals (
    id integer primary key,
    patient_id integer not null references patients (id),
    kind text not null check (kind in ('physical_therapy', 'behavioural_health', 'pain_rehabilitation', 'addiction_counselling', 'psychiatry')),
    status text not null check (status in ('suggested', 'referred', 'attending', 'completed', 'declined')),
    on_date date not null,
    recorded_by text not null,
    created_at datetime not null
);
create index taper_referrals_patient on taper_referrals (patient_id, id);

create table taper_class_attendance (
    id integer primary key,
    patient_id integer not null references patients (id),
    attended_on date not null,
    recorded_by text not null,
    created_at datetime not null
);
create index taper_class_attendance_patient on taper_class_attendance (patient_id, attended_on);
