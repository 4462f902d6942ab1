//! The one error type of the FHIR crate: a problem in the input, named by resource and field.

/// A problem in FHIR input. Every problem names the resource (`MedicationRequest/abc`, or
/// `Bundle.entry[3]` when the resource has no id) and the field path inside it, so a clinic can fix the
/// source record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FhirError {
    /// A field is missing, of the wrong JSON type, or holds a value the mapping cannot use.
    #[error("{resource}: {field}: {message}")]
    Invalid { resource: String, field: String, message: String },
    /// The document is not the kind of resource the caller asked for.
    #[error("{resource}: resourceType: expected {expected}, found {found}")]
    WrongResourceType { resource: String, expected: String, found: String },
}

impl FhirError {
    pub fn invalid(resource: impl Into<String>, field: impl Into<String>, message: impl Into<String>) -> Self {
        FhirError::Invalid { resource: resource.into(), field: field.into(), message: message.into() }
    }

    /// The resource the problem is in.
    pub fn resource(&self) -> &str {
        match self {
            FhirError::Invalid { resource, .. } | FhirError::WrongResourceType { resource, .. } => resource,
        }
    }

    /// The field path inside the resource.
    pub fn field(&self) -> &str {
        match self {
            FhirError::Invalid { field, .. } => field,
            FhirError::WrongResourceType { .. } => "resourceType",
        }
    }
}
