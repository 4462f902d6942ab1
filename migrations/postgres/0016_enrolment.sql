-- Enrolment (issue 14): a patient imported from an EHR export with no active opioid order is not a
-- refill-clinic patient until staff or a physician enrol them; the daily run decides only enrolled
-- patients. 'dismissed' keeps the record (nothing is deleted) but takes it off the not-enrolled list.
-- Who, when and why of the latest change to the status; the audit chain keeps every change.
-- Existing rows were enrolled by the clinic's own data, so they stay enrolled.
alter table patients add column enrolment text not null default 'enrolled'
    check (enrolment in ('enrolled', 'not_enrolled', 'dismissed'));
alter table patients add column enrolment_by text;
alter table patients add column enrolment_at timestamptz;
alter table patients add column enrolment_reason text;
create index patients_enrolment on patients (enrolment, family_name, given_name);
