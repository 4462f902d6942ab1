//! CSV import for clinics without FHIR: bytes in, domain facts or line-and-field errors out.
//!
//! Pure: the caller reads files and writes to the store; a file with any problem is rejected whole.
