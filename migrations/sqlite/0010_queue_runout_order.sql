-- The queue's order follows screens.md: urgent escalations first, then the day the supply runs out
-- (unknown first: SQLite sorts NULL first in ascending order), then status by urgency. The index
-- sorts the same way so the first page is read straight from it (`queue::QUEUE_ORDER`).
drop index daily_queue_screen;
create index daily_queue_screen on daily_queue
    (clinic_date, (urgency >= 4) desc, run_out_on, urgency desc, patient_id);
