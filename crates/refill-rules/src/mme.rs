//! Daily morphine milligram equivalents (MME) of a regimen, per CDC 2022 or CDC 2016 factors.
//!
//! Contract (owned by the MME work; other modules call it): values are never rounded here, an
//! undetermined product makes the total `None` (never 0), and excluded products (buprenorphine, OUD
//! treatment) are listed as excluded, not counted as 0.

use crate::facts::MedicationOrder;

/// Which conversion-factor table is used; recorded with every result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FactorSet {
    #[default]
    Cdc2022,
    Cdc2016,
}

impl FactorSet {
    pub fn as_str(self) -> &'static str {
        match self {
            FactorSet::Cdc2022 => "cdc2022",
            FactorSet::Cdc2016 => "cdc2016",
        }
    }

    pub fn parse(text: &str) -> Option<FactorSet> {
        match text {
            "cdc2022" => Some(FactorSet::Cdc2022),
            "cdc2016" => Some(FactorSet::Cdc2016),
            _ => None,
        }
    }
}

/// One counted product: how its daily dose and MME were computed.
#[derive(Debug, Clone, PartialEq)]
pub struct MmeItem {
    pub order_id: String,
    pub medication: String,
    pub ingredient: String,
    /// Daily dose of the ingredient in `unit` (`mg`, or `mcg/hr` for transdermal fentanyl).
    pub daily_dose: f64,
    pub unit: &'static str,
    pub factor: f64,
    pub mme: f64,
}

/// A product that is deliberately not counted (buprenorphine, OUD treatment).
#[derive(Debug, Clone, PartialEq)]
pub struct MmeExcluded {
    pub order_id: String,
    pub medication: String,
    pub reason: String,
    /// Excluded because it is given for opioid use disorder: raises its own refill reason.
    pub oud_treatment: bool,
}

/// A product whose MME cannot be determined: the total is then undetermined.
#[derive(Debug, Clone, PartialEq)]
pub struct MmeUndetermined {
    pub order_id: String,
    pub medication: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MmeResult {
    pub factor_set: FactorSet,
    /// `Some(0.0)` for no opioid orders; `None` when any product is undetermined or when the regimen
    /// holds excluded products only.
    pub total_daily_mme: Option<f64>,
    pub items: Vec<MmeItem>,
    pub excluded: Vec<MmeExcluded>,
    pub undetermined: Vec<MmeUndetermined>,
}

/// Compute the daily MME of `orders` with `factor_set`.
pub fn daily_mme(orders: &[MedicationOrder], factor_set: FactorSet) -> MmeResult {
    let _ = orders;
    unimplemented!("mme::daily_mme for {}", factor_set.as_str())
}
