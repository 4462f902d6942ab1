-- Active orders the engine does not recognise as an opioid, a benzodiazepine or naloxone (a product
-- missing from the drug table, a free-text order): kept and shown on the patient page, so a new opioid
-- never drops out of the daily MME unseen (issue 12). Keyed by the source's order id; a re-import
-- updates them, a stopped order becomes inactive.
create table unrecognised_orders (
    id integer primary key,
    patient_id integer not null references patients (id),
    source_id text not null,
    label text not null,
    reason text not null,
    active boolean not null default true,
    created_at datetime not null,
    unique (patient_id, source_id)
);
