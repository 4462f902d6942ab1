//! The clinic's use cases: one home for the workflow of the refill cycle (refill-cycle.md).
//!
//! Each use case is a function over a store transaction and typed input: it reads the facts it needs
//! inside the transaction, calls the pure rules (`refill_rules::cycle::decide`), writes the decision,
//! its queue row and exception, the jobs the action implies and the audit events, and returns what the
//! adapter shows. The adapters (web pages and JSON API, the job handlers, the `refill` binary) parse
//! input, check roles, begin and commit the transaction, render, and own nothing of the workflow, so
//! the queue, the daily run and the physician's signature cannot disagree.
//!
//! - [`decide`]: decide-and-record, the one place a decision is made and stored.
//! - [`staff`]: what the refill desk records and does (facts, requests, drug-test steps, prepare, send
//!   to a physician with a note).
//! - [`physician`]: signing an exception: the decision that stands for the cycle, taper changes.
//! - [`daily`]: the daily run of one chunk of patients, its reminders and alerts.
//! - [`cds`]: CDS Hooks advice for an EHR, from the same decision the queue shows (nothing recorded).
//! - [`regimen`]: a physician corrects an order's dose the rules could not compute MME from.
//! - [`enrolment`]: enrolling (or dismissing from the list) a patient imported without an opioid order.
//! - [`privacy`]: breaking the glass to a Part 2 record, with the privacy officer's alert.

pub mod cds;
pub mod daily;
pub mod decide;
pub mod enrolment;
mod error;
pub mod physician;
pub mod privacy;
pub mod regimen;
pub mod staff;
pub mod taper;

use std::sync::Arc;

use refill_rules::policy::Policy;
use refill_store::Store;

pub use error::AppError;

/// What every use case needs: the store, the clinic's policy and its version.
#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub policy: Arc<Policy>,
    /// Recorded with every decision.
    pub policy_version: String,
}

impl App {
    pub fn new(store: Store, policy: Arc<Policy>, policy_version: impl Into<String>) -> App {
        App { store, policy, policy_version: policy_version.into() }
    }
}
