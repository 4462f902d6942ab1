-- Durable job queue and cron schedules (refill-jobs). Times are epoch milliseconds (UTC) read from the
-- host clock inside the claiming transaction; SQLite is single-host, so there is only one clock.

CREATE TABLE job (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The payload's stable kind name ("daily_chunk", "patient_reminder", ...): a stored contract.
    kind             TEXT    NOT NULL,
    queue            TEXT    NOT NULL DEFAULT 'default',
    payload          TEXT    NOT NULL DEFAULT '{}',
    state            TEXT    NOT NULL DEFAULT 'available'
                     CHECK (state IN ('available', 'running', 'completed', 'dead', 'cancelled')),
    -- Lower runs first.
    priority         INTEGER NOT NULL DEFAULT 0,
    run_at           INTEGER NOT NULL,
    -- Counted at claim time, so a job that keeps killing its worker still runs out of attempts.
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 10,
    lease_owner      TEXT,
    -- Fencing token: new on every claim; heartbeat, complete, fail and release all check it.
    lease_token      TEXT,
    lease_expires_at INTEGER,
    -- Business idempotency key, e.g. 'patient_reminder:42:2026-11-02'.
    unique_key       TEXT,
    last_error       TEXT,
    cancel_reason    TEXT,
    created_at       INTEGER NOT NULL,
    attempted_at     INTEGER,
    finalized_at     INTEGER
);
CREATE UNIQUE INDEX job_unique_key ON job (unique_key) WHERE unique_key IS NOT NULL;
CREATE INDEX job_fetch ON job (queue, priority, run_at, id) WHERE state = 'available';
CREATE INDEX job_lease ON job (lease_expires_at) WHERE state = 'running';
CREATE INDEX job_final ON job (finalized_at) WHERE finalized_at IS NOT NULL;

-- One row per configured cron schedule: config is the source of truth, the row holds the cursor.
CREATE TABLE job_schedule (
    name           TEXT    PRIMARY KEY,
    cron           TEXT    NOT NULL,
    time_zone      TEXT    NOT NULL,
    -- wall_clock: the cron spec is read on the local wall clock; elapsed: on UTC (interval jobs).
    semantics      TEXT    NOT NULL CHECK (semantics IN ('wall_clock', 'elapsed')),
    -- After downtime: fire_once coalesces missed occurrences into one; skip drops them.
    misfire        TEXT    NOT NULL CHECK (misfire IN ('fire_once', 'skip')),
    job_kind       TEXT    NOT NULL,
    job_args       TEXT    NOT NULL DEFAULT '{}',
    -- Hash of everything above: the cursor is recomputed only when it changes.
    fingerprint    TEXT    NOT NULL,
    enabled        INTEGER NOT NULL DEFAULT 1,
    -- Next occurrence on the local wall clock ('YYYY-MM-DDTHH:MM:SS', the occurrence key) and as an instant.
    next_local     TEXT    NOT NULL,
    next_fire_at   INTEGER NOT NULL,
    last_fired_local TEXT,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX job_schedule_due ON job_schedule (next_fire_at) WHERE enabled = 1;

-- Evidence written by probe jobs (benchmarks, crash tests) in the same transaction as their fenced
-- completion: one row per committed effect, so "exactly once in effect" can be counted.
CREATE TABLE job_effect (
    job_id      INTEGER NOT NULL,
    lease_token TEXT    NOT NULL,
    worker      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX job_effect_job ON job_effect (job_id);
