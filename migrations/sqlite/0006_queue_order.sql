-- The queue lists items with an unknown run-out date first within an urgency (no fill history needs a
-- look). SQLite already sorts NULL first in ascending order; this migration exists so both backends
-- keep the same version numbers (PostgreSQL rebuilds its index with NULLS FIRST in 0006).
drop index daily_queue_screen;
create index daily_queue_screen on daily_queue (clinic_date, urgency desc, run_out_on, patient_id);
