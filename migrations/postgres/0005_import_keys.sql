-- Imports: taper plans carry the source's id so a re-imported plan updates in place instead of doubling.
alter table taper_plans add column source_id text;
create unique index taper_plans_source on taper_plans (patient_id, source_id);
