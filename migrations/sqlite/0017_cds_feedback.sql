-- CDS Hooks feedback (issue 15): what the EHR user did with a card (accepted, with the suggestions
-- taken, or overridden, with the reason), one row per feedback item as received. The card is named by
-- the uuid the service gave it; the service, by its id. Kept, never updated.
create table cds_feedback (
    id integer primary key,
    service_id text not null,
    card_uuid text not null,
    outcome text not null check (outcome in ('accepted', 'overridden')),
    accepted_suggestions text not null,
    override_reason_code text,
    override_reason_system text,
    override_reason_display text,
    user_comment text,
    outcome_at text not null,
    received_from text not null,
    received_at datetime not null
);
create index cds_feedback_card on cds_feedback (card_uuid);
