-- A condition the source later marks resolved or inactive (a cancer in remission, palliative care that
-- ended) stops counting: a re-import sets `active` false on the flag it wrote, instead of leaving a
-- stale exclusion that sends the patient to a physician every day. History flags (overdose, substance
-- use disorder) stay active whatever the clinical status: a resolved overdose is still history.
alter table clinical_flags add column active boolean not null default true;
