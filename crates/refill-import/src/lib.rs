//! CSV import for clinics without FHIR: bytes in, domain facts or line-and-field errors out.
//!
//! Pure: the caller reads files and writes to the store; a file with any problem is rejected whole,
//! with every problem listed (file, line or resource, field). The records carry the source's own ids,
//! the natural keys the store upserts by, so importing the same file twice changes nothing.
//!
//! FHIR bundles are parsed by `refill-fhir`; its output is mapped into the same [`ClinicRecords`] so the
//! store has one write path for both formats.

mod csv_format;
mod error;
mod fhir;
pub mod records;

pub use csv_format::{Column, CsvKind, parse_csv};
pub use error::{ImportError, Location, Problem};
pub use fhir::parse_fhir_bundle;
pub use records::*;
