//! Taper plans: dispensable, monotone, rate-limited dose reduction schedules, with pauses and history.

mod policy;

pub use policy::{TaperPolicy, TaperPreset};
