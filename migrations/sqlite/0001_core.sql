-- Core schema (placeholder replaced by the store work before it lands).
CREATE TABLE IF NOT EXISTS schema_note (id INTEGER PRIMARY KEY);
