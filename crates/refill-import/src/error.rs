//! Import problems: every one names the file, the line (CSV) or resource (FHIR), and the field.

use std::fmt;

/// Where in a file a problem was found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Location {
    /// The file as a whole (unknown record type, unreadable bytes).
    File,
    /// A CSV line, 1-based, counting the header as line 1.
    Line(u64),
    /// A FHIR resource, as `Type/id`.
    Resource(String),
}

/// One problem in one place of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub location: Location,
    /// The CSV column or FHIR element path; empty when the problem is not about one field.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::File => write!(f, "{}", self.file)?,
            Location::Line(line) => write!(f, "{}:{line}", self.file)?,
            Location::Resource(resource) => write!(f, "{} {resource}", self.file)?,
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A rejected file: every problem found in it (the whole file is rejected, nothing is written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ImportError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        write!(f, "{} rejected: {count} problem{}", self.file, if count == 1 { "" } else { "s" })?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// Collects the problems of one file while it is parsed.
#[derive(Debug)]
pub(crate) struct Problems {
    file: String,
    list: Vec<Problem>,
}

impl Problems {
    pub(crate) fn new(file: &str) -> Problems {
        Problems { file: file.to_string(), list: Vec::new() }
    }

    pub(crate) fn at_line(&mut self, line: u64, field: &str, message: impl Into<String>) {
        self.push(Location::Line(line), field, message);
    }

    pub(crate) fn push(&mut self, location: Location, field: &str, message: impl Into<String>) {
        self.list.push(Problem {
            file: self.file.clone(),
            location,
            field: field.to_string(),
            message: message.into(),
        });
    }

    pub(crate) fn into_result<T>(self, value: T) -> Result<T, ImportError> {
        if self.list.is_empty() { Ok(value) } else { Err(ImportError { file: self.file, problems: self.list }) }
    }
}
