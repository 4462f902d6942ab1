//! The products the demo prescribes: real RxNorm codes and names from the drug table
//! (`crates/refill-rules/data/opioid-drugs.csv`; a test checks every row against it).

/// Regimen families a patient can be on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    HydrocodoneIr,
    OxycodoneIr,
    OxycodoneEr,
    MorphineEr,
    FentanylPatch,
    Methadone,
    Tramadol,
    TramadolEr,
    BuprenorphinePatch,
    BuprenorphineBuccal,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Product {
    pub rxcui: &'static str,
    pub name: &'static str,
    pub ingredient: &'static str,
    /// mg per unit, or mcg/hr for patches.
    pub strength: f64,
    pub family: Family,
}

impl Product {
    pub fn is_patch(&self) -> bool {
        matches!(self.family, Family::FentanylPatch | Family::BuprenorphinePatch)
    }
}

const fn product(
    rxcui: &'static str,
    name: &'static str,
    ingredient: &'static str,
    strength: f64,
    family: Family,
) -> Product {
    Product { rxcui, name, ingredient, strength, family }
}

pub const PRODUCTS: &[Product] = &[
    product(
        "857002",
        "acetaminophen 325 MG / hydrocodone bitartrate 5 MG Oral Tablet",
        "hydrocodone",
        5.0,
        Family::HydrocodoneIr,
    ),
    product(
        "857005",
        "acetaminophen 325 MG / hydrocodone bitartrate 7.5 MG Oral Tablet",
        "hydrocodone",
        7.5,
        Family::HydrocodoneIr,
    ),
    product(
        "856999",
        "acetaminophen 325 MG / hydrocodone bitartrate 10 MG Oral Tablet",
        "hydrocodone",
        10.0,
        Family::HydrocodoneIr,
    ),
    product("1049621", "oxycodone hydrochloride 5 MG Oral Tablet", "oxycodone", 5.0, Family::OxycodoneIr),
    product("1049683", "oxycodone hydrochloride 10 MG Oral Tablet", "oxycodone", 10.0, Family::OxycodoneIr),
    product("1049611", "oxycodone hydrochloride 15 MG Oral Tablet", "oxycodone", 15.0, Family::OxycodoneIr),
    product("1049618", "oxycodone hydrochloride 30 MG Oral Tablet", "oxycodone", 30.0, Family::OxycodoneIr),
    product(
        "1049502",
        "12 HR oxycodone hydrochloride 10 MG Extended Release Oral Tablet",
        "oxycodone",
        10.0,
        Family::OxycodoneEr,
    ),
    product(
        "1049563",
        "12 HR oxycodone hydrochloride 20 MG Extended Release Oral Tablet",
        "oxycodone",
        20.0,
        Family::OxycodoneEr,
    ),
    product(
        "1049574",
        "12 HR oxycodone hydrochloride 30 MG Extended Release Oral Tablet",
        "oxycodone",
        30.0,
        Family::OxycodoneEr,
    ),
    product(
        "1049584",
        "12 HR oxycodone hydrochloride 40 MG Extended Release Oral Tablet",
        "oxycodone",
        40.0,
        Family::OxycodoneEr,
    ),
    product(
        "1049593",
        "12 HR oxycodone hydrochloride 60 MG Extended Release Oral Tablet",
        "oxycodone",
        60.0,
        Family::OxycodoneEr,
    ),
    product(
        "1049599",
        "12 HR oxycodone hydrochloride 80 MG Extended Release Oral Tablet",
        "oxycodone",
        80.0,
        Family::OxycodoneEr,
    ),
    product(
        "891878",
        "12 HR morphine sulfate 15 MG Extended Release Oral Tablet",
        "morphine",
        15.0,
        Family::MorphineEr,
    ),
    product(
        "891885",
        "12 HR morphine sulfate 30 MG Extended Release Oral Tablet",
        "morphine",
        30.0,
        Family::MorphineEr,
    ),
    product(
        "891890",
        "12 HR morphine sulfate 60 MG Extended Release Oral Tablet",
        "morphine",
        60.0,
        Family::MorphineEr,
    ),
    product(
        "891883",
        "12 HR morphine sulfate 100 MG Extended Release Oral Tablet",
        "morphine",
        100.0,
        Family::MorphineEr,
    ),
    product("577057", "72 HR fentanyl 0.012 MG/HR Transdermal System", "fentanyl", 12.0, Family::FentanylPatch),
    product("245134", "72 HR fentanyl 0.025 MG/HR Transdermal System", "fentanyl", 25.0, Family::FentanylPatch),
    product("245135", "72 HR fentanyl 0.05 MG/HR Transdermal System", "fentanyl", 50.0, Family::FentanylPatch),
    product("197696", "72 HR fentanyl 0.075 MG/HR Transdermal System", "fentanyl", 75.0, Family::FentanylPatch),
    product("245136", "72 HR fentanyl 0.1 MG/HR Transdermal System", "fentanyl", 100.0, Family::FentanylPatch),
    product("864718", "methadone hydrochloride 5 MG Oral Tablet", "methadone", 5.0, Family::Methadone),
    product("864706", "methadone hydrochloride 10 MG Oral Tablet", "methadone", 10.0, Family::Methadone),
    product("835603", "tramadol hydrochloride 50 MG Oral Tablet", "tramadol", 50.0, Family::Tramadol),
    product(
        "833709",
        "24 HR tramadol hydrochloride 100 MG Extended Release Oral Tablet",
        "tramadol",
        100.0,
        Family::TramadolEr,
    ),
    product(
        "833711",
        "24 HR tramadol hydrochloride 200 MG Extended Release Oral Tablet",
        "tramadol",
        200.0,
        Family::TramadolEr,
    ),
    product(
        "833713",
        "24 HR tramadol hydrochloride 300 MG Extended Release Oral Tablet",
        "tramadol",
        300.0,
        Family::TramadolEr,
    ),
    product(
        "904880",
        "168 HR buprenorphine 0.005 MG/HR Transdermal System",
        "buprenorphine",
        5.0,
        Family::BuprenorphinePatch,
    ),
    product(
        "904870",
        "168 HR buprenorphine 0.01 MG/HR Transdermal System",
        "buprenorphine",
        10.0,
        Family::BuprenorphinePatch,
    ),
    product(
        "904876",
        "168 HR buprenorphine 0.02 MG/HR Transdermal System",
        "buprenorphine",
        20.0,
        Family::BuprenorphinePatch,
    ),
    product("1716057", "buprenorphine 0.15 MG Buccal Film", "buprenorphine", 0.15, Family::BuprenorphineBuccal),
    product("1716065", "buprenorphine 0.3 MG Buccal Film", "buprenorphine", 0.3, Family::BuprenorphineBuccal),
    product("1716069", "buprenorphine 0.45 MG Buccal Film", "buprenorphine", 0.45, Family::BuprenorphineBuccal),
];

/// CDC 2022 conversion factor of a family (per mg/day; per mcg/hr for fentanyl patches); `None` for
/// buprenorphine, which is not counted in MME.
pub fn cdc2022_factor(family: Family) -> Option<f64> {
    match family {
        Family::HydrocodoneIr | Family::MorphineEr => Some(1.0),
        Family::OxycodoneIr | Family::OxycodoneEr => Some(1.5),
        Family::FentanylPatch => Some(2.4),
        Family::Methadone => Some(4.7),
        Family::Tramadol | Family::TramadolEr => Some(0.2),
        Family::BuprenorphinePatch | Family::BuprenorphineBuccal => None,
    }
}

/// One way to take a product: units per administration and administrations per day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dosing {
    pub product: &'static Product,
    pub units_per_dose: f64,
    pub doses_per_day: f64,
}

impl Dosing {
    /// Daily MME by the CDC 2022 factors (patches: mcg/hr x patches worn x 2.4).
    pub fn daily_mme(&self) -> Option<f64> {
        let factor = cdc2022_factor(self.product.family)?;
        Some(if self.product.is_patch() {
            self.product.strength * self.units_per_dose * factor
        } else {
            self.product.strength * self.units_per_dose * self.doses_per_day * factor
        })
    }
}

/// Every sensible dosing of a family, as prescribers write them.
pub fn dosings(family: Family) -> Vec<Dosing> {
    let mut out = Vec::new();
    for product in PRODUCTS.iter().filter(|p| p.family == family) {
        let schedules: &[(f64, f64)] = match family {
            Family::HydrocodoneIr | Family::OxycodoneIr => {
                &[(1.0, 2.0), (1.0, 3.0), (1.0, 4.0), (1.0, 5.0), (1.0, 6.0), (2.0, 3.0), (2.0, 4.0)]
            }
            Family::OxycodoneEr | Family::MorphineEr => &[(1.0, 2.0), (1.0, 3.0), (2.0, 2.0)],
            // One patch every 72 hours (1/3 per day), one or two worn at once.
            Family::FentanylPatch => &[(1.0, 1.0 / 3.0), (2.0, 1.0 / 3.0)],
            Family::Methadone => &[(1.0, 2.0), (1.0, 3.0), (2.0, 3.0)],
            Family::Tramadol => &[(1.0, 2.0), (1.0, 3.0), (1.0, 4.0)],
            Family::TramadolEr => &[(1.0, 1.0)],
            Family::BuprenorphinePatch => &[(1.0, 1.0 / 7.0)],
            Family::BuprenorphineBuccal => &[(1.0, 2.0)],
        };
        for &(units_per_dose, doses_per_day) in schedules {
            out.push(Dosing { product, units_per_dose, doses_per_day });
        }
    }
    out
}
