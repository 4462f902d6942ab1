-- Durable job queue and cron schedules (refill-jobs). Every lease and due-time comparison uses the
-- database clock (now()), never a worker's clock.

CREATE TABLE job (
    id               BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The payload's stable kind name ("daily_chunk", "patient_reminder", ...): a stored contract.
    kind             TEXT        NOT NULL,
    queue            TEXT        NOT NULL DEFAULT 'default',
    payload          JSONB       NOT NULL DEFAULT '{}',
    state            TEXT        NOT NULL DEFAULT 'available'
                     CHECK (state IN ('available', 'running', 'completed', 'dead', 'cancelled')),
    -- Lower runs first.
    priority         SMALLINT    NOT NULL DEFAULT 0,
    run_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Counted at claim time, so a job that keeps killing its worker still runs out of attempts.
    attempt          INT         NOT NULL DEFAULT 0,
    max_attempts     INT         NOT NULL DEFAULT 10,
    lease_owner      TEXT,
    -- Fencing token: new on every claim; heartbeat, complete, fail and release all check it.
    lease_token      UUID,
    lease_expires_at TIMESTAMPTZ,
    -- Business idempotency key, e.g. 'patient_reminder:42:2026-11-02'.
    unique_key       TEXT,
    last_error       TEXT,
    cancel_reason    TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempted_at     TIMESTAMPTZ,
    finalized_at     TIMESTAMPTZ
);
CREATE UNIQUE INDEX job_unique_key ON job (unique_key) WHERE unique_key IS NOT NULL;
CREATE INDEX job_fetch ON job (queue, priority, run_at, id) WHERE state = 'available';
CREATE INDEX job_lease ON job (lease_expires_at) WHERE state = 'running';
CREATE INDEX job_final ON job (finalized_at) WHERE finalized_at IS NOT NULL;
-- Queue tables churn: vacuum after a fixed number of dead rows, not a fraction of the table.
ALTER TABLE job SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);

-- One row per configured cron schedule: config is the source of truth, the row holds the cursor.
CREATE TABLE job_schedule (
    name             TEXT        PRIMARY KEY,
    cron             TEXT        NOT NULL,
    time_zone        TEXT        NOT NULL,
    -- wall_clock: the cron spec is read on the local wall clock; elapsed: on UTC (interval jobs).
    semantics        TEXT        NOT NULL CHECK (semantics IN ('wall_clock', 'elapsed')),
    -- After downtime: fire_once coalesces missed occurrences into one; skip drops them.
    misfire          TEXT        NOT NULL CHECK (misfire IN ('fire_once', 'skip')),
    job_kind         TEXT        NOT NULL,
    job_args         JSONB       NOT NULL DEFAULT '{}',
    -- Hash of everything above: the cursor is recomputed only when it changes.
    fingerprint      TEXT        NOT NULL,
    enabled          BOOLEAN     NOT NULL DEFAULT true,
    -- Next occurrence on the local wall clock ('YYYY-MM-DDTHH:MM:SS', the occurrence key) and as an instant.
    next_local       TEXT        NOT NULL,
    next_fire_at     TIMESTAMPTZ NOT NULL,
    last_fired_local TEXT,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX job_schedule_due ON job_schedule (next_fire_at) WHERE enabled;

-- Evidence written by probe jobs (benchmarks, crash tests) in the same transaction as their fenced
-- completion: one row per committed effect, so "exactly once in effect" can be counted.
CREATE TABLE job_effect (
    job_id      BIGINT      NOT NULL,
    lease_token UUID        NOT NULL,
    worker      TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX job_effect_job ON job_effect (job_id);
