//! Decoding claimed jobs. The payload contract itself lives in `refill-store::job_payload`, next to the
//! queue, so the use cases can enqueue what an action implies in its own transaction.

use refill_store::jobs::ClaimedJob;

pub use refill_store::job_payload::{JobPayload, QUEUE_DEFAULT, QUEUE_EMAIL, ReminderKind};

use crate::JobsError;

/// Decode a claimed job.
///
/// # Errors
/// `Payload` when the stored JSON is not a known job or its kind column disagrees.
pub fn decode(job: &ClaimedJob) -> Result<JobPayload, JobsError> {
    let payload: JobPayload = serde_json::from_value(job.payload.clone()).map_err(|e| JobsError::Payload {
        job_id: job.id,
        kind: job.kind.clone(),
        message: e.to_string(),
    })?;
    if payload.kind() != job.kind {
        return Err(JobsError::Payload {
            job_id: job.id,
            kind: job.kind.clone(),
            message: format!("payload is a {} job", payload.kind()),
        });
    }
    Ok(payload)
}
