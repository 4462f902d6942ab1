//! FHIR R4 and CDS Hooks JSON mapped to the rules' domain types, and back.
//!
//! Sits just above `refill-rules`: it parses JSON values (serde, no I/O) into `MedicationOrder`s,
//! fills, UDS results, agreements and PDMP reviews, naming the resource and field of every problem.
