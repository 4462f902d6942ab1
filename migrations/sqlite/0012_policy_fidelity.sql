-- Refill policy fidelity (issue 12): facts the guidelines read that the store could not hold.
-- Specimen validity as the laboratory reported it: an invalid specimen asks for a recollection
-- (not_reported for every result recorded before this migration).
alter table uds_results add column specimen_validity text not null default 'not_reported'
    check (specimen_validity in ('not_reported', 'valid', 'dilute', 'invalid'));
-- An outside prescriber acknowledged for one drug class only (one decision covers the PDMP finding
-- and the concurrent benzodiazepine it prescribes); null acknowledges the prescriber for every class.
alter table physician_reviews add column subject_drug_class text
    check (subject_drug_class in ('opioid', 'benzodiazepine', 'other_controlled', 'oud_treatment'));
-- What the patient said that bears on a decision, shown with the reasons.
create table patient_statements (
    id integer primary key,
    patient_id integer not null references patients (id),
    recorded_on date not null,
    text text not null,
    confidentiality text not null default 'normal' check (confidentiality in ('normal', 'part2')),
    recorded_by text not null,
    created_at datetime not null
);
create index patient_statements_patient on patient_statements (patient_id, recorded_on);
