//! The pure core of Refill Clinic: facts about a patient and a date go in, decisions with reasons come out.
//!
//! This crate sits at the bottom of the dependency graph: every other crate may use it, it uses none of
//! ours. It performs no I/O, is not async, reads no clock, draws no randomness of its own and logs
//! nothing. `today` and random seeds are parameters, so the same facts, policy and date always give the
//! same decision, which is what makes "one protocol for every patient" checkable.
//!
//! Clinical outcomes are values (`Decision`), never errors; `RulesError` is for malformed input only.

pub mod agreement;
pub mod cycle;
mod days;
pub mod decision;
pub mod drug;
pub mod error;
pub mod facts;
pub mod formulary;
pub mod mme;
pub mod policy;
pub mod refill;
pub mod screening;
pub mod taper;
mod text;
pub mod uds;

pub use decision::{Decision, Evidence, EvidenceValue, Outcome, Reason, ReasonCode, RefillWindow, Task};
pub use error::RulesError;
pub use facts::*;
