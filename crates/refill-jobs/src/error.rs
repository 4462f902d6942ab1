//! `JobsError`: the one error enum of the scheduler and worker.

use refill_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// A schedule in configuration is unusable; `schedule` names it as configured.
    #[error("schedule {schedule}: {message}")]
    Schedule { schedule: String, message: String },
    /// A stored payload does not decode into any known job (a broken stored contract).
    #[error("job {job_id} ({kind}): payload does not decode: {message}")]
    Payload { job_id: i64, kind: String, message: String },
    /// Worker settings out of range; `field` names the setting.
    #[error("worker setting {field}: {message}")]
    Settings { field: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}
