-- Imports: rows that came from a source carry its id, so a re-import updates in place instead of
-- doubling. (fills, agreements, UDS and PDMP rows already have source_id in 0001.)
alter table taper_plans add column source_id text;
create unique index taper_plans_source on taper_plans (patient_id, source_id);
alter table physician_reviews add column source_id text;
create unique index physician_reviews_source on physician_reviews (patient_id, source_id);
alter table naloxone_events add column source_id text;
create unique index naloxone_events_source on naloxone_events (patient_id, source_id);
