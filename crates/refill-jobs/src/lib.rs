//! The durable job scheduler and worker: cron occurrences in the clinic's time zone, a claim, lease,
//! heartbeat and retry loop over the store's job queue, and the job handlers (daily pipeline,
//! reminders, taper steps, digests, email delivery).
