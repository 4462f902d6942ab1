//! The refill policy: evaluates every rule against a patient's facts and a request, giving one
//! `Decision` with all reasons, tasks and the policy version.
