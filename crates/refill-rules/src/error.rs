//! The one error type of the rules crate: malformed input, never a clinical outcome.

/// Input the rules cannot work with. Clinical findings are never errors: they are `Reason`s.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RulesError {
    /// A value is out of range or inconsistent; `field` names it the way the input file does.
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// An embedded data table did not parse (a build defect, caught by tests).
    #[error("embedded table {table} line {line}: {message}")]
    Table { table: &'static str, line: usize, message: String },
}

impl RulesError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        RulesError::Invalid { field: field.into(), message: message.into() }
    }
}
