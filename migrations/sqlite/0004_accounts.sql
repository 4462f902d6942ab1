-- Accounts for the web screens: users and roles, server-side sessions (people and wall displays),
-- sign-in attempts for rate limiting, break-glass grants for 42 CFR Part 2 records, and the screen
-- change counter that lets every `refill serve` process push live updates.
-- Times are Unix epoch milliseconds (UTC) so both backends store and compare them the same way.

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('staff', 'physician', 'admin')),
    -- PHC string `$argon2id$v=19$m=19456,t=2,p=1$...`.
    password_hash TEXT NOT NULL,
    totp_secret TEXT,
    created_at_ms INTEGER NOT NULL,
    password_changed_at_ms INTEGER NOT NULL,
    disabled_at_ms INTEGER
);

-- Server-side sessions. The cookie holds a random token; only its SHA-256 is stored, so a copy of the
-- database does not hand out live sessions.
CREATE TABLE web_sessions (
    token_sha256 TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('person', 'wall')),
    user_id INTEGER REFERENCES users (id),
    -- For wall displays: the name an admin gave the screen ("staff area monitor").
    label TEXT,
    issued_by INTEGER REFERENCES users (id),
    csrf_token TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    last_seen_at_ms INTEGER NOT NULL,
    -- Absolute end of the session (people: 12 hours; wall displays: as issued).
    expires_at_ms INTEGER NOT NULL,
    ended_at_ms INTEGER,
    ended_reason TEXT,
    CHECK ((kind = 'person' AND user_id IS NOT NULL) OR (kind = 'wall' AND user_id IS NULL))
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);

-- Wall-display enrolment codes: an admin issues one, the monitor opens /wall/enter?code=... once.
CREATE TABLE wall_codes (
    code_sha256 TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    issued_by INTEGER REFERENCES users (id),
    issued_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    used_at_ms INTEGER
);

CREATE TABLE login_attempts (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    attempted_at_ms INTEGER NOT NULL,
    succeeded INTEGER NOT NULL CHECK (succeeded IN (0, 1))
);
CREATE INDEX login_attempts_user_ip ON login_attempts (username, client_ip, attempted_at_ms);
CREATE INDEX login_attempts_ip ON login_attempts (client_ip, attempted_at_ms);

-- Break-the-glass access to one patient's 42 CFR Part 2 records, time-boxed and with a reason.
CREATE TABLE break_glass_grants (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    patient_id INTEGER NOT NULL,
    reason TEXT NOT NULL CHECK (length(reason) > 0),
    granted_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX break_glass_user_patient ON break_glass_grants (user_id, patient_id, expires_at_ms);
CREATE INDEX break_glass_granted ON break_glass_grants (granted_at_ms);

-- One row per change that a screen should show (a staff action, a decision, a pipeline run). Servers
-- poll max(seq) every second or two and push the rows past what they have seen to their browsers.
CREATE TABLE screen_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_id INTEGER,
    kind TEXT NOT NULL,
    actor TEXT,
    changed_at_ms INTEGER NOT NULL
);

-- Who has a queue row open right now ("Dana is working this row").
CREATE TABLE row_presence (
    patient_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users (id),
    opened_at_ms INTEGER NOT NULL,
    PRIMARY KEY (patient_id, user_id)
);
