//! FHIR R4 and CDS Hooks JSON mapped to the rules' domain types.
//!
//! Sits just above `refill-rules`: it reads `serde_json::Value`s (no I/O) and returns `MedicationOrder`s,
//! fills, UDS results, agreements, PDMP reviews, flags and demographics, grouped per patient. Every
//! problem names the resource (`MedicationRequest/abc`, or its bundle position) and the field path, and
//! all problems are collected before failing, so a clinic can fix a file in one pass.
//!
//! Entry points: `parse_bundle` (a Bundle or a single resource), `parse_cds_hooks_request`,
//! `parse_medication_request`; the other way, `export::export_bundle` (what `refill export` writes).
//! The mapping choices are documented in each module.

mod agreement;
mod bundle;
pub mod codes;
mod condition;
mod dispense;
mod error;
pub mod export;
pub mod medication;
mod monitoring;
mod patient;
mod read;
mod resource_types;

pub use bundle::{FhirPatientRecord, parse_bundle, parse_cds_hooks_request};
pub use condition::MappedCondition;
pub use dispense::MappedDispense;
pub use error::FhirError;
pub use medication::{MappedMedicationRequest, MedicationClass, MedicationCode, parse_medication_request};
pub use monitoring::{Monitoring, UdsLineResult};
pub use patient::{Demographics, Identifier, parse_patient};
