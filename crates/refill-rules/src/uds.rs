//! Urine drug screening: random but replayable scheduling by risk tier, and result interpretation
//! through an expected-analyte and assay-coverage table kept as data.

use crate::facts::UdsResult;

/// What one analyte in a result means given what is prescribed and what the assay can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnalyteFinding {
    /// Present and explained by a prescribed ingredient or its metabolite.
    Expected,
    /// Prescribed, detectable by the assay, and absent.
    Missing,
    /// The assay cannot see it: no conclusion.
    NotTested,
    /// Present, not prescribed and not a metabolite of anything prescribed.
    Unexpected,
    /// Present and illicit (6-acetylmorphine, cocaine, ...).
    Illicit,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AnalyteInterpretation {
    /// The analyte or prescribed ingredient the finding is about.
    pub substance: String,
    pub finding: AnalyteFinding,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UdsInterpretation {
    pub findings: Vec<AnalyteInterpretation>,
}

impl UdsInterpretation {
    /// Missing, unexpected and illicit findings go to confirmation and physician review.
    pub fn needs_review(&self) -> bool {
        self.findings.iter().any(|f| {
            matches!(f.finding, AnalyteFinding::Missing | AnalyteFinding::Unexpected | AnalyteFinding::Illicit)
        })
    }
}

/// Interpret one result against the prescribed opioid ingredients (lower-case generic names).
pub fn interpret(result: &UdsResult, prescribed_ingredients: &[&str]) -> UdsInterpretation {
    let _ = (result, prescribed_ingredients);
    unimplemented!("uds::interpret")
}
