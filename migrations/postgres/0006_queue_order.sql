-- The queue lists items with an unknown run-out date first within an urgency (no fill history needs a
-- look), as SQLite does by default: the index must sort the same way for the first page to be read
-- straight from it.
drop index daily_queue_screen;
create index daily_queue_screen on daily_queue (clinic_date, urgency desc, run_out_on nulls first, patient_id);
