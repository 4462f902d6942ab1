//! Email: askama templates rendered into lettre messages, and SMTP delivery. No database: the outbox
//! rows live in the store and the jobs crate drives delivery.
