-- Email outbox (refill-notify renders, refill-jobs delivers). One row per business event, keyed by
-- idempotency_key; the Message-ID and the raw RFC 5322 bytes are fixed when the row is written and
-- every retry sends them verbatim. Times are epoch milliseconds (UTC) passed in by the caller, so the
-- same statements serve both backends and tests can move the clock.
CREATE TABLE email_outbox (
    id               TEXT    PRIMARY KEY,
    -- '{kind}:{subject}:{local date}', e.g. 'patient-plan-change:42:2026-12-12'.
    idempotency_key  TEXT    NOT NULL UNIQUE,
    -- Template folder name; stored here only, never written into a header.
    kind             TEXT    NOT NULL,
    audience         TEXT    NOT NULL CHECK (audience IN ('patient', 'staff', 'physician')),
    patient_id       INTEGER REFERENCES patients (id),
    message_id       TEXT    NOT NULL UNIQUE,
    envelope_from    TEXT    NOT NULL,
    -- Recipients, one per line.
    envelope_to      TEXT    NOT NULL,
    raw_message      BLOB    NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'cancelled')),
    -- The date a reminder is about; after expires_at it is cancelled instead of being sent late.
    about_date       TEXT,
    expires_at       INTEGER,
    created_at       INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- Tries whose outcome is unknown (connection lost after the data, or the sender died mid-try).
    ambiguous_sends  INTEGER NOT NULL DEFAULT 0,
    first_failure_at INTEGER,
    last_error       TEXT,
    -- The relay's reply to the accepted message (usually carries its queue id).
    smtp_reply       TEXT,
    sent_at          INTEGER,
    -- Why the message failed for good or was cancelled.
    final_reason     TEXT,
    finished_at      INTEGER,
    lease_token      TEXT,
    lease_expires_at INTEGER,
    -- Set once when the message has kept failing for longer than the alert threshold.
    staff_alerted_at INTEGER
);
CREATE INDEX email_outbox_due ON email_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX email_outbox_lease ON email_outbox (lease_expires_at) WHERE state = 'sending';
CREATE INDEX email_outbox_patient ON email_outbox (patient_id, created_at);
CREATE INDEX email_outbox_problems ON email_outbox (finished_at) WHERE state = 'failed';

-- Every try, written in the claiming transaction before any byte goes to the relay; outcome stays NULL
-- until the try ends, and becomes 'unknown' when the sender died during it.
CREATE TABLE email_attempt (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id   TEXT    NOT NULL REFERENCES email_outbox (id),
    attempt     INTEGER NOT NULL,
    lease_token TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    outcome     TEXT CHECK (outcome IN ('sent', 'transient', 'permanent', 'ambiguous', 'unknown')),
    detail      TEXT,
    UNIQUE (outbox_id, attempt)
);
