-- TOTP second factor: the last time step a user's code was accepted, so each code works once (RFC 6238
-- §5.2). Null until the first use after enrolment; cleared with the secret.
ALTER TABLE users ADD COLUMN totp_last_step INTEGER;
