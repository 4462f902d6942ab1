-- The digest of each protected row (patients' Part 2 flags, users' roles, break-glass grants, decisions,
-- exceptions, drug-test results, orders) as of the last `refill audit checkpoint`. The digest of this
-- whole table is written into the audit chain at the same time, so the table cannot be edited to
-- match a tampered row; `refill audit verify` compares today's rows with it (see state_seal.rs).
create table row_seals (
    table_name text not null,
    row_id bigint not null,
    patient_id bigint,
    digest text not null,
    primary key (table_name, row_id)
);

-- When a break-the-glass grant went out in a report: every grant is reported exactly once, in the
-- first digest composed after it (a weekend's grants in Monday's), not by a fixed 24-hour window.
alter table break_glass_grants add column reported_at_ms bigint;
