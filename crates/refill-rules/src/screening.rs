//! Screening instruments as pure functions: the Opioid Risk Tool (ORT) and the PEG scale.
//!
//! Tables from clinical-rules.md §7 (ORT: Webster & Webster, Pain Med 2005, as reproduced in Can Fam
//! Physician; PEG: Krebs et al., J Gen Intern Med 2009). CDC 2022 cautions that no tool reliably finds
//! low-risk patients: the ORT tier never exempts anyone from monitoring.

use crate::error::RulesError;
use crate::facts::{RiskTier, Sex};

/// The ten ORT items; each answered yes or no.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrtItem {
    FamilyAlcohol,
    FamilyIllegalDrugs,
    FamilyPrescriptionDrugs,
    PersonalAlcohol,
    PersonalIllegalDrugs,
    PersonalPrescriptionDrugs,
    Age16To45,
    PreadolescentSexualAbuse,
    PsychologicalAddOcdBipolarSchizophrenia,
    PsychologicalDepression,
}

impl OrtItem {
    pub const ALL: [OrtItem; 10] = [
        OrtItem::FamilyAlcohol,
        OrtItem::FamilyIllegalDrugs,
        OrtItem::FamilyPrescriptionDrugs,
        OrtItem::PersonalAlcohol,
        OrtItem::PersonalIllegalDrugs,
        OrtItem::PersonalPrescriptionDrugs,
        OrtItem::Age16To45,
        OrtItem::PreadolescentSexualAbuse,
        OrtItem::PsychologicalAddOcdBipolarSchizophrenia,
        OrtItem::PsychologicalDepression,
    ];

    /// Points (female, male) from the ORT table.
    pub fn points(self) -> (u32, u32) {
        match self {
            OrtItem::FamilyAlcohol => (1, 3),
            OrtItem::FamilyIllegalDrugs => (2, 3),
            OrtItem::FamilyPrescriptionDrugs => (4, 4),
            OrtItem::PersonalAlcohol => (3, 3),
            OrtItem::PersonalIllegalDrugs => (4, 4),
            OrtItem::PersonalPrescriptionDrugs => (5, 5),
            OrtItem::Age16To45 => (1, 1),
            OrtItem::PreadolescentSexualAbuse => (3, 0),
            OrtItem::PsychologicalAddOcdBipolarSchizophrenia => (2, 2),
            OrtItem::PsychologicalDepression => (1, 1),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrtItem::FamilyAlcohol => "family_alcohol",
            OrtItem::FamilyIllegalDrugs => "family_illegal_drugs",
            OrtItem::FamilyPrescriptionDrugs => "family_prescription_drugs",
            OrtItem::PersonalAlcohol => "personal_alcohol",
            OrtItem::PersonalIllegalDrugs => "personal_illegal_drugs",
            OrtItem::PersonalPrescriptionDrugs => "personal_prescription_drugs",
            OrtItem::Age16To45 => "age_16_to_45",
            OrtItem::PreadolescentSexualAbuse => "preadolescent_sexual_abuse",
            OrtItem::PsychologicalAddOcdBipolarSchizophrenia => "psychological_add_ocd_bipolar_schizophrenia",
            OrtItem::PsychologicalDepression => "psychological_depression",
        }
    }

    pub fn parse(text: &str) -> Option<OrtItem> {
        OrtItem::ALL.into_iter().find(|item| item.as_str() == text)
    }
}

/// Which column of the ORT table was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrtColumn {
    Female,
    Male,
    /// Sex other or unknown: each item scored at the higher of the two columns (recorded as such).
    HigherOfBoth,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrtScore {
    pub score: u32,
    pub tier: RiskTier,
    pub column: OrtColumn,
    /// Points per item answered yes, for display and audit.
    pub items: Vec<(OrtItem, u32)>,
}

/// Score the ORT from the items answered yes. Tiers: 0-3 low, 4-7 moderate, 8 or more high.
pub fn score_ort(sex: Sex, yes: &[OrtItem]) -> OrtScore {
    let column = match sex {
        Sex::Female => OrtColumn::Female,
        Sex::Male => OrtColumn::Male,
        Sex::Other | Sex::Unknown => OrtColumn::HigherOfBoth,
    };
    let mut items: Vec<(OrtItem, u32)> = Vec::new();
    for item in OrtItem::ALL.into_iter().filter(|item| yes.contains(item)) {
        let (female, male) = item.points();
        let points = match column {
            OrtColumn::Female => female,
            OrtColumn::Male => male,
            OrtColumn::HigherOfBoth => female.max(male),
        };
        items.push((item, points));
    }
    let score = items.iter().map(|(_, points)| points).sum();
    let tier = match score {
        0..=3 => RiskTier::Low,
        4..=7 => RiskTier::Moderate,
        _ => RiskTier::High,
    };
    OrtScore { score, tier, column, items }
}

/// A PEG score: the mean of pain, enjoyment interference and general-activity interference (0-10).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PegScore {
    pub pain: u8,
    pub enjoyment: u8,
    pub general_activity: u8,
    pub score: f64,
}

/// Score the PEG; each item must be 0..=10.
pub fn score_peg(pain: u8, enjoyment: u8, general_activity: u8) -> Result<PegScore, RulesError> {
    for (field, value) in [("peg.pain", pain), ("peg.enjoyment", enjoyment), ("peg.general_activity", general_activity)]
    {
        if value > 10 {
            return Err(RulesError::invalid(field, format!("must be 0 to 10, not {value}")));
        }
    }
    let score = (pain as f64 + enjoyment as f64 + general_activity as f64) / 3.0;
    Ok(PegScore { pain, enjoyment, general_activity, score })
}

/// Relative improvement from `before` to `after` (positive = better); CDC 2022 calls 30% clinically
/// meaningful. `None` when the baseline is 0 (nothing to improve).
pub fn peg_improvement(before: &PegScore, after: &PegScore) -> Option<f64> {
    (before.score > 0.0).then(|| (before.score - after.score) / before.score)
}

/// Whether the change reaches the clinically meaningful 30% improvement (CDC 2022 Rec 7).
pub fn peg_meaningful_improvement(before: &PegScore, after: &PegScore) -> bool {
    peg_improvement(before, after).is_some_and(|change| change >= 0.30 - 1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ort_columns_and_tiers() {
        let items = [OrtItem::FamilyAlcohol, OrtItem::PreadolescentSexualAbuse, OrtItem::Age16To45];
        let female = score_ort(Sex::Female, &items);
        assert_eq!((female.score, female.tier), (5, RiskTier::Moderate));
        let male = score_ort(Sex::Male, &items);
        assert_eq!((male.score, male.tier), (4, RiskTier::Moderate));
        let unknown = score_ort(Sex::Unknown, &items);
        assert_eq!((unknown.score, unknown.column), (7, OrtColumn::HigherOfBoth));
        assert_eq!(score_ort(Sex::Other, &items).score, 7);
    }

    #[test]
    fn ort_tier_boundaries() {
        assert_eq!(score_ort(Sex::Male, &[]).tier, RiskTier::Low);
        assert_eq!(score_ort(Sex::Male, &[OrtItem::FamilyAlcohol]).tier, RiskTier::Low); // 3
        assert_eq!(score_ort(Sex::Male, &[OrtItem::FamilyAlcohol, OrtItem::Age16To45]).tier, RiskTier::Moderate); // 4
        let seven = [OrtItem::PersonalPrescriptionDrugs, OrtItem::PsychologicalAddOcdBipolarSchizophrenia];
        assert_eq!(score_ort(Sex::Male, &seven).tier, RiskTier::Moderate);
        let eight = [OrtItem::PersonalPrescriptionDrugs, OrtItem::FamilyAlcohol];
        assert_eq!(score_ort(Sex::Male, &eight).tier, RiskTier::High);
        let all = score_ort(Sex::Unknown, &OrtItem::ALL);
        assert_eq!(all.score, 3 + 3 + 4 + 3 + 4 + 5 + 1 + 3 + 2 + 1);
    }

    #[test]
    fn peg_mean_and_improvement() {
        let before = score_peg(8, 7, 6).unwrap();
        assert!((before.score - 7.0).abs() < 1e-12);
        let after = score_peg(5, 5, 4).unwrap();
        assert!(peg_meaningful_improvement(&before, &after));
        assert!(!peg_meaningful_improvement(&before, &score_peg(6, 5, 5).unwrap()));
        assert!(score_peg(11, 0, 0).is_err());
        assert_eq!(peg_improvement(&score_peg(0, 0, 0).unwrap(), &after), None);
    }
}
