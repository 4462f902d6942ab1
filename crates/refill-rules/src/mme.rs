//! Daily morphine milligram equivalents (MME) of a regimen, per CDC 2022 or CDC 2016 factors.
//!
//! Contract (owned by the MME work; other modules call it): values are never rounded here, an
//! undetermined product makes the total `None` (never 0), and excluded products (buprenorphine, OUD
//! treatment) are listed as excluded, not counted as 0.
//!
//! Formulas (clinical-rules.md §1.1): patches = mcg/hr x patches worn x 2.4 (the change interval does
//! not enter); a dose in mg/ug = dose x doses per day (product strength ignored); a dose in mL = mL x
//! mg/mL x doses per day; countable units = units x strength x doses per day. Methadone under CDC 2016
//! is tiered by the TOTAL daily methadone mg of the regimen, with half-open bounds.

use std::sync::OnceLock;

use crate::drug::{DrugTable, EMBEDDED_FACTOR_CSV, Product, StrengthUnit, Unidentified, split_csv_line};
use crate::error::RulesError;
use crate::facts::{DoseUnit, MedicationOrder, OrderPurpose};

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

impl MmeResult {
    /// True when some order is excluded because it treats opioid use disorder.
    pub fn has_oud_treatment(&self) -> bool {
        self.excluded.iter().any(|excluded| excluded.oud_treatment)
    }
}

/// One factor cell of `opioid-factors.csv`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Factor {
    /// No clinical factor defined: the product's MME is undetermined.
    Undefined,
    /// MME per mg/day (per mcg/hr for transdermal fentanyl).
    Flat(f64),
    /// CDC 2016 methadone: by total daily methadone mg, see `methadone_2016_factor`.
    MethadoneTiers2016,
}

/// Which dose forms a factor row applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum DoseFormPattern {
    Any,
    Exactly(String),
    AnyExcept(String),
}

impl DoseFormPattern {
    fn matches(&self, dose_form: &str) -> bool {
        match self {
            DoseFormPattern::Any => true,
            DoseFormPattern::Exactly(form) => form.eq_ignore_ascii_case(dose_form),
            DoseFormPattern::AnyExcept(form) => !form.eq_ignore_ascii_case(dose_form),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FactorRow {
    pub ingredient: String,
    pub dose_forms: DoseFormPattern,
    pub cdc2022: Factor,
    pub cdc2016: Factor,
}

/// The conversion-factor table (`data/opioid-factors.csv`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConversionFactors {
    rows: Vec<FactorRow>,
}

static EMBEDDED_FACTORS: OnceLock<ConversionFactors> = OnceLock::new();

impl ConversionFactors {
    /// The factor table shipped in the binary, parsed on first use.
    pub fn embedded() -> &'static ConversionFactors {
        EMBEDDED_FACTORS.get_or_init(|| {
            ConversionFactors::parse(EMBEDDED_FACTOR_CSV)
                .expect("embedded opioid-factors.csv parses (checked by tests)")
        })
    }

    pub fn parse(csv: &str) -> Result<ConversionFactors, RulesError> {
        const TABLE: &str = "opioid-factors.csv";
        let mut lines = csv.lines().enumerate();
        let header = lines.next().map(|(_, line)| split_csv_line(line)).unwrap_or_default();
        let expected = ["ingredient", "dose_form_pattern", "factor_cdc2022", "factor_cdc2016"];
        if header.len() < expected.len() || header.iter().zip(expected).any(|(have, want)| have != want) {
            return Err(RulesError::Table {
                table: TABLE,
                line: 1,
                message: format!("header must start with {expected:?}"),
            });
        }
        let mut rows = Vec::new();
        for (index, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let fields = split_csv_line(line);
            let bad = |message: String| RulesError::Table { table: TABLE, line: index + 1, message };
            if fields.len() < expected.len() {
                return Err(bad(format!("expected at least {} fields", expected.len())));
            }
            let dose_forms = match fields[1].as_str() {
                "any" => DoseFormPattern::Any,
                pattern => match pattern.strip_prefix("any except ") {
                    Some(form) => DoseFormPattern::AnyExcept(form.to_string()),
                    None => DoseFormPattern::Exactly(pattern.to_string()),
                },
            };
            let cell = |text: &str| -> Result<Factor, RulesError> {
                match text.trim() {
                    "" => Ok(Factor::Undefined),
                    "tiered" => Ok(Factor::MethadoneTiers2016),
                    number => match number.parse::<f64>() {
                        Ok(value) if value.is_finite() && value > 0.0 => Ok(Factor::Flat(value)),
                        _ => Err(bad(format!("factor '{number}' is not a positive number, empty or 'tiered'"))),
                    },
                }
            };
            rows.push(FactorRow {
                ingredient: fields[0].to_ascii_lowercase(),
                dose_forms,
                cdc2022: cell(&fields[2])?,
                cdc2016: cell(&fields[3])?,
            });
        }
        Ok(ConversionFactors { rows })
    }

    pub fn rows(&self) -> &[FactorRow] {
        &self.rows
    }

    /// The factor for an ingredient in a dose form; `None` when the ingredient has no row at all.
    pub fn factor(&self, ingredient: &str, dose_form: &str, factor_set: FactorSet) -> Option<Factor> {
        let row = self.rows.iter().find(|row| row.ingredient == ingredient && row.dose_forms.matches(dose_form))?;
        Some(match factor_set {
            FactorSet::Cdc2022 => row.cdc2022,
            FactorSet::Cdc2016 => row.cdc2016,
        })
    }
}

/// CDC 2016 methadone factor by total daily methadone mg: half-open tiers >0-<=20: 4, >20-<=40: 8,
/// >40-<=60: 10, >60: 12 (the CDC data-file footnote; the CQL's integer ranges leave gaps).
pub fn methadone_2016_factor(total_daily_mg: f64) -> f64 {
    if total_daily_mg <= 20.0 {
        4.0
    } else if total_daily_mg <= 40.0 {
        8.0
    } else if total_daily_mg <= 60.0 {
        10.0
    } else {
        12.0
    }
}

/// Compute the daily MME of `orders` with `factor_set`, using the embedded drug and factor tables.
pub fn daily_mme(orders: &[MedicationOrder], factor_set: FactorSet) -> MmeResult {
    daily_mme_with(orders, factor_set, DrugTable::embedded(), ConversionFactors::embedded())
}

/// Per order, before the factor: either a daily dose of one ingredient or why it is not counted. It
/// borrows from the product and order, so assessing allocates nothing; the words of a reason are
/// written only by callers that report them (`Why::describe`).
enum Assessed<'p> {
    Dose { ingredient: &'p str, daily_dose: f64, unit: &'static str, factor: Factor },
    Excluded { why: Why<'p>, oud_treatment: bool },
    Undetermined(Why<'p>),
}

/// Why an order is excluded from the total or its MME is undetermined.
enum Why<'p> {
    OudTreatment,
    Buprenorphine,
    Unidentified(Unidentified),
    NoFactor { ingredient: &'p str, dose_form: &'p str },
    NoStrength { ingredient: &'p str },
    NoDose,
    DoseNotPositive(f64),
    DosesPerDayNotPositive(f64),
    NoTiming,
    PatchNotCounted(&'p DoseUnit),
    MillilitresNotPerMl(StrengthUnit),
    UnitsNotPerUnit(StrengthUnit),
    NoUnit,
    UnusableUnit(&'p str),
}

impl Why<'_> {
    fn describe(&self, factor_set: FactorSet) -> String {
        match self {
            Why::OudTreatment => "treatment of opioid use disorder is not counted in MME".to_string(),
            Why::Buprenorphine => "buprenorphine is not counted in MME (partial agonist; CDC 2022 Table 1)".to_string(),
            Why::Unidentified(unidentified) => unidentified.describe(),
            Why::NoFactor { ingredient, dose_form } => {
                format!("no {} clinical conversion factor for {ingredient} ({dose_form})", factor_set.as_str())
            }
            Why::NoStrength { ingredient } => format!("no strength for {ingredient} in the product"),
            Why::NoDose => "the order has no dose".to_string(),
            Why::DoseNotPositive(value) => format!("dose {value} is not a positive number"),
            Why::DosesPerDayNotPositive(value) => format!("{value} doses per day is not a positive number"),
            Why::NoTiming => "the order has no timing (doses per day)".to_string(),
            Why::PatchNotCounted(unit) => {
                format!("a patch dose must count patches, not {}", describe_unit(unit))
            }
            Why::MillilitresNotPerMl(unit) => {
                format!("dose in mL for a product whose strength is {} (not per mL)", unit.as_str())
            }
            Why::UnitsNotPerUnit(unit) => {
                format!("dose counted in units for a product whose strength is {}", unit.as_str())
            }
            Why::NoUnit => "the dose has no unit, so it cannot be converted to an amount of drug".to_string(),
            Why::UnusableUnit(unit) => format!("dose unit '{unit}' cannot be converted to an amount of drug"),
        }
    }
}

/// `daily_mme` with explicit tables (tests and tools that load other tables).
pub fn daily_mme_with(
    orders: &[MedicationOrder],
    factor_set: FactorSet,
    drugs: &DrugTable,
    factors: &ConversionFactors,
) -> MmeResult {
    let mut result = MmeResult {
        factor_set,
        total_daily_mme: Some(0.0),
        items: Vec::new(),
        excluded: Vec::new(),
        undetermined: Vec::new(),
    };
    let mut counted: Vec<(&MedicationOrder, String, f64, &'static str, Factor)> = Vec::with_capacity(orders.len());
    for order in orders {
        assess(order, factor_set, drugs, factors, &mut |assessed| match assessed {
            Assessed::Dose { ingredient, daily_dose, unit, factor } => {
                counted.push((order, ingredient.to_string(), daily_dose, unit, factor));
            }
            Assessed::Excluded { why, oud_treatment } => result.excluded.push(MmeExcluded {
                order_id: order.id.clone(),
                medication: order.label(),
                reason: why.describe(factor_set),
                oud_treatment,
            }),
            Assessed::Undetermined(why) => result.undetermined.push(MmeUndetermined {
                order_id: order.id.clone(),
                medication: order.label(),
                reason: why.describe(factor_set),
            }),
        });
    }
    // The 2016 methadone tier depends on the total methadone of the whole regimen.
    let total_methadone_mg: f64 = counted
        .iter()
        .filter(|(_, _, _, _, factor)| *factor == Factor::MethadoneTiers2016)
        .map(|(_, _, daily_dose, _, _)| daily_dose)
        .sum();
    for (order, ingredient, daily_dose, unit, factor) in counted {
        let factor = factor_value(factor, total_methadone_mg);
        result.items.push(MmeItem {
            order_id: order.id.clone(),
            medication: order.label(),
            ingredient,
            daily_dose,
            unit,
            factor,
            mme: daily_dose * factor,
        });
    }
    result.total_daily_mme = if !result.undetermined.is_empty() {
        None
    } else if result.items.is_empty() && !result.excluded.is_empty() {
        // Excluded products only: the MME rules do not apply, and 0 would read as "no opioid".
        None
    } else {
        // A fold from +0.0: `Iterator::sum` of no floats is -0.0, which prints as "-0.0".
        Some(result.items.iter().fold(0.0, |total, item| total + item.mme))
    };
    result
}

/// The factor of a counted dose, once the regimen's total methadone is known.
fn factor_value(factor: Factor, total_methadone_mg: f64) -> f64 {
    match factor {
        Factor::Flat(value) => value,
        Factor::MethadoneTiers2016 => methadone_2016_factor(total_methadone_mg),
        Factor::Undefined => unreachable!("undefined factors are reported as undetermined in assess"),
    }
}

/// The total daily MME of a regimen and whether any product was undetermined, as `daily_mme` computes
/// them but without building items or reasons: the refill rules need only the number on most requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MmeTotal {
    /// Equal to `daily_mme(..).total_daily_mme`, bit for bit (the same sums in the same order).
    pub total_daily_mme: Option<f64>,
    /// Equal to `!daily_mme(..).undetermined.is_empty()`.
    pub undetermined: bool,
}

/// `daily_mme(orders, factor_set)` reduced to `MmeTotal`, allocating nothing.
pub(crate) fn daily_mme_total(orders: &[MedicationOrder], factor_set: FactorSet) -> MmeTotal {
    let (drugs, factors) = (DrugTable::embedded(), ConversionFactors::embedded());
    let mut total = 0.0;
    let mut counted = false;
    let mut excluded = false;
    let mut undetermined = false;
    let mut total_methadone_mg = 0.0;
    let mut tiered = false;
    for order in orders {
        assess(order, factor_set, drugs, factors, &mut |assessed| match assessed {
            Assessed::Dose { daily_dose, factor, .. } => {
                counted = true;
                if factor == Factor::MethadoneTiers2016 {
                    tiered = true;
                    total_methadone_mg += daily_dose;
                } else {
                    total += daily_dose * factor_value(factor, 0.0);
                }
            }
            Assessed::Excluded { .. } => excluded = true,
            Assessed::Undetermined(_) => undetermined = true,
        });
    }
    if tiered && !undetermined {
        // The tier is known only now: add the items again in order, as `daily_mme_with` does, so the
        // rounding of the sum is the same.
        total = 0.0;
        for order in orders {
            assess(order, factor_set, drugs, factors, &mut |assessed| {
                if let Assessed::Dose { daily_dose, factor, .. } = assessed {
                    total += daily_dose * factor_value(factor, total_methadone_mg);
                }
            });
        }
    }
    let total_daily_mme = if undetermined || (!counted && excluded) { None } else { Some(total) };
    MmeTotal { total_daily_mme, undetermined }
}

/// `daily_mme(orders, factor_set).undetermined`, without building the items and exclusions: what the
/// refill rule reports when the MME cannot be determined.
pub(crate) fn undetermined_products(orders: &[MedicationOrder], factor_set: FactorSet) -> Vec<MmeUndetermined> {
    let (drugs, factors) = (DrugTable::embedded(), ConversionFactors::embedded());
    let mut undetermined = Vec::new();
    for order in orders {
        assess(order, factor_set, drugs, factors, &mut |assessed| {
            if let Assessed::Undetermined(why) = assessed {
                undetermined.push(MmeUndetermined {
                    order_id: order.id.clone(),
                    medication: order.label(),
                    reason: why.describe(factor_set),
                });
            }
        });
    }
    undetermined
}

/// Assess one order, handing one `Assessed` per distinct opioid ingredient to `emit` (no allocation
/// for the usual single-ingredient product: this runs once per order in every refill decision).
fn assess(
    order: &MedicationOrder,
    factor_set: FactorSet,
    drugs: &DrugTable,
    factors: &ConversionFactors,
    emit: &mut impl FnMut(Assessed<'_>),
) {
    if order.purpose == OrderPurpose::OpioidUseDisorder {
        emit(Assessed::Excluded { why: Why::OudTreatment, oud_treatment: true });
        return;
    }
    // A coded product in the table (the usual order) is borrowed straight from it: `identify` would
    // find it the same way first, but wraps it in a `Cow` and a `Result` that are copied around.
    let identified;
    let product: &Product = match order.rxcui.as_deref().and_then(|code| drugs.by_rxcui(code)) {
        Some(product) => product,
        None => match drugs.identify(order) {
            Ok(product) => {
                identified = product;
                &identified
            }
            Err(unidentified) => return emit(Assessed::Undetermined(Why::Unidentified(unidentified))),
        },
    };
    for (index, row) in product.ingredients.iter().enumerate() {
        // Rows of the same ingredient (two salts) are summed by `strength_of`: assess it once.
        if product.ingredients[..index].iter().any(|earlier| earlier.ingredient == row.ingredient) {
            continue;
        }
        emit(assess_ingredient(order, product, &row.ingredient, factor_set, factors));
    }
}

fn assess_ingredient<'p>(
    order: &'p MedicationOrder,
    product: &'p Product,
    ingredient: &'p str,
    factor_set: FactorSet,
    factors: &ConversionFactors,
) -> Assessed<'p> {
    if ingredient == "buprenorphine" {
        return Assessed::Excluded { why: Why::Buprenorphine, oud_treatment: false };
    }
    let factor = match factors.factor(ingredient, &product.dose_form, factor_set) {
        None | Some(Factor::Undefined) => {
            return Assessed::Undetermined(Why::NoFactor { ingredient, dose_form: &product.dose_form });
        }
        Some(factor) => factor,
    };
    let Some((strength, strength_unit)) = product.strength_of(ingredient) else {
        return Assessed::Undetermined(Why::NoStrength { ingredient });
    };
    let Some(dose) = &order.dose else {
        return Assessed::Undetermined(Why::NoDose);
    };
    if !(dose.value.is_finite() && dose.value > 0.0) {
        return Assessed::Undetermined(Why::DoseNotPositive(dose.value));
    }
    let doses_per_day = match order.doses_per_day {
        Some(value) if value.is_finite() && value > 0.0 => value,
        Some(value) => return Assessed::Undetermined(Why::DosesPerDayNotPositive(value)),
        None => return Assessed::Undetermined(Why::NoTiming),
    };
    if strength_unit == StrengthUnit::MgPerHr {
        // Transdermal: mcg/hr x patches worn at once; the schedule does not enter (CDC 2.4 factor).
        return match dose.unit {
            DoseUnit::DoseFormUnit => {
                Assessed::Dose { ingredient, daily_dose: strength * 1000.0 * dose.value, unit: "mcg/hr", factor }
            }
            _ => Assessed::Undetermined(Why::PatchNotCounted(&dose.unit)),
        };
    }
    let daily_mg = match &dose.unit {
        DoseUnit::Milligram => dose.value * doses_per_day,
        DoseUnit::Microgram => dose.value / 1000.0 * doses_per_day,
        DoseUnit::Milliliter => match strength_unit {
            StrengthUnit::MgPerMl => dose.value * strength * doses_per_day,
            _ => return Assessed::Undetermined(Why::MillilitresNotPerMl(strength_unit)),
        },
        DoseUnit::DoseFormUnit => match strength_unit {
            StrengthUnit::Mg | StrengthUnit::MgPerActuation => dose.value * strength * doses_per_day,
            _ => return Assessed::Undetermined(Why::UnitsNotPerUnit(strength_unit)),
        },
        DoseUnit::Unusable(unit) if unit.trim().is_empty() => return Assessed::Undetermined(Why::NoUnit),
        DoseUnit::Unusable(unit) => return Assessed::Undetermined(Why::UnusableUnit(unit)),
    };
    Assessed::Dose { ingredient, daily_dose: daily_mg, unit: "mg", factor }
}

fn describe_unit(unit: &DoseUnit) -> String {
    match unit {
        DoseUnit::Milligram => "mg".to_string(),
        DoseUnit::Microgram => "ug".to_string(),
        DoseUnit::Milliliter => "mL".to_string(),
        DoseUnit::DoseFormUnit => "units".to_string(),
        DoseUnit::Unusable(unit) => format!("'{unit}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{Confidentiality, DoseQuantity};

    fn order(id: &str, rxcui: &str, dose: f64, unit: DoseUnit, per_day: f64) -> MedicationOrder {
        MedicationOrder {
            id: id.to_string(),
            rxcui: Some(rxcui.to_string()),
            text: None,
            dose: Some(DoseQuantity { value: dose, unit }),
            doses_per_day: Some(per_day),
            days_supply: Some(30),
            dispense_quantity: None,
            prescriber: None,
            purpose: OrderPurpose::Pain,
            confidentiality: Confidentiality::Normal,
        }
    }

    fn text_order(id: &str, text: &str, dose: f64, unit: DoseUnit, per_day: f64) -> MedicationOrder {
        MedicationOrder { rxcui: None, text: Some(text.to_string()), ..order(id, "", dose, unit, per_day) }
    }

    fn total(orders: &[MedicationOrder], set: FactorSet) -> Option<f64> {
        daily_mme(orders, set).total_daily_mme
    }

    fn close(actual: Option<f64>, expected: f64) {
        let value = actual.unwrap_or_else(|| panic!("expected {expected}, got undetermined"));
        assert!((value - expected).abs() < 0.01, "expected {expected}, got {value}");
    }

    const HYDROCODONE_5_APAP_325: &str = "857002";
    const OXYCODONE_ER_10: &str = "1049502";
    const FENTANYL_25: &str = "245134";
    const FENTANYL_75: &str = "197696";

    #[test]
    fn embedded_factor_table_parses() {
        let factors = ConversionFactors::embedded();
        assert_eq!(factors.rows().len(), 21);
        assert_eq!(factors.factor("fentanyl", "Transdermal System", FactorSet::Cdc2022), Some(Factor::Flat(2.4)));
        assert_eq!(factors.factor("fentanyl", "Buccal Film", FactorSet::Cdc2022), Some(Factor::Undefined));
        assert_eq!(factors.factor("methadone", "Oral Tablet", FactorSet::Cdc2016), Some(Factor::MethadoneTiers2016));
        assert_eq!(factors.factor("hydromorphone", "Oral Tablet", FactorSet::Cdc2022), Some(Factor::Flat(5.0)));
        assert_eq!(factors.factor("hydromorphone", "Oral Tablet", FactorSet::Cdc2016), Some(Factor::Flat(4.0)));
    }

    #[test]
    fn cdc_worked_examples() {
        assert_eq!(DrugTable::embedded().by_rxcui(HYDROCODONE_5_APAP_325).map(|p| p.ingredient()), Some("hydrocodone"));
        for set in [FactorSet::Cdc2022, FactorSet::Cdc2016] {
            close(total(&[order("a", HYDROCODONE_5_APAP_325, 1.0, DoseUnit::DoseFormUnit, 4.0)], set), 20.0);
            close(total(&[order("b", OXYCODONE_ER_10, 1.0, DoseUnit::DoseFormUnit, 2.0)], set), 30.0);
            // The change interval (every 72 h = 1/3 per day) does not enter the patch formula.
            close(total(&[order("c", FENTANYL_25, 1.0, DoseUnit::DoseFormUnit, 1.0 / 3.0)], set), 60.0);
            close(total(&[order("d", FENTANYL_75, 1.0, DoseUnit::DoseFormUnit, 1.0)], set), 180.0);
        }
        // Two patches worn at once.
        close(total(&[order("e", FENTANYL_25, 2.0, DoseUnit::DoseFormUnit, 1.0 / 3.0)], FactorSet::Cdc2022), 120.0);
    }

    #[test]
    fn combined_regimen_sums() {
        let orders = [
            order("a", HYDROCODONE_5_APAP_325, 1.0, DoseUnit::DoseFormUnit, 4.0),
            order("b", OXYCODONE_ER_10, 1.0, DoseUnit::DoseFormUnit, 2.0),
        ];
        let result = daily_mme(&orders, FactorSet::Cdc2022);
        close(result.total_daily_mme, 50.0);
        assert_eq!(result.items.len(), 2);
        assert_eq!(result.items[1].ingredient, "oxycodone");
        assert_eq!(result.items[1].factor, 1.5);
        assert_eq!(result.items[1].daily_dose, 20.0);
    }

    #[test]
    fn methadone_tiers_under_2016_are_half_open_by_total_mg() {
        let methadone =
            |mg: f64| text_order("m", "methadone hydrochloride 10 MG Oral Tablet", mg, DoseUnit::Milligram, 1.0);
        for (mg, expected) in [(20.0, 80.0), (20.5, 164.0), (21.0, 168.0), (40.0, 320.0), (60.0, 600.0), (61.0, 732.0)]
        {
            close(total(&[methadone(mg)], FactorSet::Cdc2016), expected);
        }
        // Tiers follow the regimen total, not each order: 15 + 10 mg = 25 mg -> factor 8.
        let split = [methadone(15.0), methadone(10.0)];
        let result = daily_mme(&split, FactorSet::Cdc2016);
        close(result.total_daily_mme, 200.0);
        assert!(result.items.iter().all(|item| item.factor == 8.0));
        // CDC 2022: flat 4.7.
        close(total(&[methadone(20.0)], FactorSet::Cdc2022), 94.0);
        close(total(&[methadone(61.0)], FactorSet::Cdc2022), 286.7);
    }

    #[test]
    fn hydromorphone_factor_differs_between_sets() {
        let hm = text_order("h", "hydromorphone hydrochloride 2 MG Oral Tablet", 1.0, DoseUnit::DoseFormUnit, 4.0);
        close(total(std::slice::from_ref(&hm), FactorSet::Cdc2022), 40.0);
        close(total(&[hm], FactorSet::Cdc2016), 32.0);
    }

    #[test]
    fn dose_units() {
        // Dose in mg ignores strength (CQF test: 60 mg ER product, 10 mg q12h -> 30 MME... of morphine 20).
        close(
            total(
                &[text_order(
                    "a",
                    "Oxycodone Hydrochloride 60 MG Extended Release Oral Tablet",
                    10.0,
                    DoseUnit::Milligram,
                    2.0,
                )],
                FactorSet::Cdc2022,
            ),
            30.0,
        );
        close(
            total(
                &[text_order("b", "Oxycodone Hydrochloride 5 MG Oral Tablet", 5000.0, DoseUnit::Microgram, 2.0)],
                FactorSet::Cdc2022,
            ),
            15.0,
        );
        // Oral solution: 5 mL of 1 mg/mL oxycodone 4 times a day = 20 mg = 30 MME.
        close(
            total(
                &[text_order("c", "oxycodone hydrochloride 1 MG/ML Oral Solution", 5.0, DoseUnit::Milliliter, 4.0)],
                FactorSet::Cdc2022,
            ),
            30.0,
        );
        let unusable =
            daily_mme(&[order("d", OXYCODONE_ER_10, 1.0, DoseUnit::Unusable("1".into()), 2.0)], FactorSet::Cdc2022);
        assert_eq!(unusable.total_daily_mme, None);
        assert_eq!(unusable.undetermined.len(), 1);
    }

    #[test]
    fn undetermined_products_make_the_total_none() {
        let cases = [
            order("buccal", "668363", 1.0, DoseUnit::DoseFormUnit, 1.0),
            text_order("kadian", "Morphine Sulfate 10 MG [Kadian]", 1.0, DoseUnit::DoseFormUnit, 1.0),
            MedicationOrder {
                doses_per_day: None,
                ..order("no-timing", OXYCODONE_ER_10, 1.0, DoseUnit::DoseFormUnit, 1.0)
            },
            MedicationOrder { dose: None, ..order("no-dose", OXYCODONE_ER_10, 1.0, DoseUnit::DoseFormUnit, 1.0) },
            text_order("meperidine", "Meperidine Hydrochloride 50 MG Oral Tablet", 1.0, DoseUnit::DoseFormUnit, 4.0),
        ];
        for case in cases {
            let with_other = [order("ok", OXYCODONE_ER_10, 1.0, DoseUnit::DoseFormUnit, 2.0), case.clone()];
            let result = daily_mme(&with_other, FactorSet::Cdc2022);
            assert_eq!(result.total_daily_mme, None, "{}", case.id);
            assert_eq!(result.undetermined.len(), 1, "{}", case.id);
            assert_eq!(result.items.len(), 1);
        }
        // Tramadol has a 2022 factor but no 2016 clinical one.
        let tramadol = text_order("t", "tramadol hydrochloride 50 MG Oral Tablet", 1.0, DoseUnit::DoseFormUnit, 4.0);
        close(total(std::slice::from_ref(&tramadol), FactorSet::Cdc2022), 40.0);
        assert_eq!(total(&[tramadol], FactorSet::Cdc2016), None);
    }

    #[test]
    fn exclusions() {
        let bup_patch =
            text_order("b", "168 HR buprenorphine 0.01 MG/HR Transdermal System", 1.0, DoseUnit::DoseFormUnit, 1.0);
        let bup = order("b2", "1010603", 1.0, DoseUnit::DoseFormUnit, 1.0);
        let only_bup = daily_mme(std::slice::from_ref(&bup), FactorSet::Cdc2022);
        assert_eq!(only_bup.total_daily_mme, None);
        assert_eq!(only_bup.excluded.len(), 1);
        assert!(!only_bup.excluded[0].oud_treatment);
        let patch_result = daily_mme(&[bup_patch], FactorSet::Cdc2022);
        assert_eq!(patch_result.total_daily_mme, None);
        assert_eq!(patch_result.excluded.len(), 1);
        assert!(patch_result.items.is_empty() && patch_result.undetermined.is_empty());

        let oud = MedicationOrder {
            purpose: OrderPurpose::OpioidUseDisorder,
            ..text_order("otp", "methadone hydrochloride 10 MG/ML Oral Solution", 8.0, DoseUnit::Milliliter, 1.0)
        };
        let with_pain = [oud, order("ok", OXYCODONE_ER_10, 1.0, DoseUnit::DoseFormUnit, 2.0)];
        let result = daily_mme(&with_pain, FactorSet::Cdc2022);
        close(result.total_daily_mme, 30.0);
        assert!(result.has_oud_treatment());
    }

    #[test]
    fn no_orders_is_zero() {
        assert_eq!(total(&[], FactorSet::Cdc2022), Some(0.0));
        assert!(total(&[], FactorSet::Cdc2022).unwrap().is_sign_positive(), "no orders is +0, not -0");
        let result = daily_mme(&[], FactorSet::Cdc2016);
        assert_eq!(result.factor_set, FactorSet::Cdc2016);
    }

    #[test]
    fn two_salt_product_counts_both_rows() {
        // aspirin / oxycodone HCl 4.5 mg / oxycodone terephthalate 0.38 mg, 4 a day.
        let result = daily_mme(&[order("p", "637540", 1.0, DoseUnit::DoseFormUnit, 4.0)], FactorSet::Cdc2022);
        close(result.total_daily_mme, 4.88 * 4.0 * 1.5);
        assert_eq!(result.items.len(), 1);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Products covering each formula: countable units, patch, solution, mg dose, buprenorphine,
        /// methadone (tiered under 2016), one without a factor.
        const CODES: [&str; 7] = ["1049502", "857002", "197696", "991147", "1010603", "864706", "861467"];

        fn any_order() -> impl Strategy<Value = MedicationOrder> {
            (0..CODES.len(), 0.1f64..8.0, 0.1f64..6.0, 0..4usize).prop_map(|(code, dose, per_day, unit)| {
                let unit = [DoseUnit::DoseFormUnit, DoseUnit::Milligram, DoseUnit::Milliliter, DoseUnit::Microgram]
                    [unit]
                    .clone();
                order(&format!("o{code}"), CODES[code], dose, unit, per_day)
            })
        }

        /// Orders over every branch of `assess`.
        fn varied_order() -> impl Strategy<Value = MedicationOrder> {
            const TEXTS: [&str; 4] = [
                "methadone hydrochloride 10 MG Oral Tablet",
                "Oxycodone Hydrochloride 5 MG Oral Tablet",
                "Morphine Sulfate 10 MG [Kadian]",
                "72 HR Fentanyl 0.0375 MG/HR Transdermal System",
            ];
            (any_order(), proptest::option::of(0..TEXTS.len()), 0..8usize, proptest::option::of(-1.0f64..6.0), 0..6u8)
                .prop_map(|(mut order, text, variant, per_day, oud)| {
                    if let Some(text) = text {
                        order.rxcui = None;
                        order.text = Some(TEXTS[text].to_string());
                    }
                    match variant {
                        0 => order.dose = None,
                        1 => order.dose = Some(DoseQuantity { value: 1.0, unit: DoseUnit::Unusable(" ".into()) }),
                        2 => order.dose = Some(DoseQuantity { value: 2.0, unit: DoseUnit::Unusable("puff".into()) }),
                        3 => order.doses_per_day = per_day,
                        _ => {}
                    }
                    if oud == 0 {
                        order.purpose = OrderPurpose::OpioidUseDisorder;
                    }
                    order
                })
        }

        proptest! {
            #[test]
            fn every_order_is_accounted_for_and_the_total_is_honest(
                orders in proptest::collection::vec(any_order(), 0..5),
                cdc2016 in any::<bool>(),
            ) {
                let set = if cdc2016 { FactorSet::Cdc2016 } else { FactorSet::Cdc2022 };
                let result = daily_mme(&orders, set);
                prop_assert_eq!(result.items.len() + result.excluded.len() + result.undetermined.len(), orders.len());
                match result.total_daily_mme {
                    Some(total) => {
                        prop_assert!(result.undetermined.is_empty());
                        prop_assert!(total >= 0.0 && total.is_finite());
                        let sum: f64 = result.items.iter().map(|item| item.mme).sum();
                        prop_assert!((total - sum).abs() < 1e-9);
                        prop_assert!(orders.is_empty() || !result.items.is_empty());
                    }
                    None => prop_assert!(
                        !result.undetermined.is_empty() || (result.items.is_empty() && !result.excluded.is_empty())
                    ),
                }
                for item in &result.items {
                    prop_assert!((item.mme - item.daily_dose * item.factor).abs() < 1e-9);
                }
                // The same input gives the same result.
                prop_assert_eq!(daily_mme(&orders, set), result);
            }

            /// The refill rules' allocation-free total is `daily_mme`'s, bit for bit, with the same
            /// undetermined flag: coded and text-only products, patches, solutions, methadone tiers,
            /// buprenorphine, OUD orders, unusable units, missing doses and timings, both factor sets.
            #[test]
            fn the_rules_total_is_the_full_total(
                orders in proptest::collection::vec(varied_order(), 0..5),
                cdc2016 in any::<bool>(),
            ) {
                let set = if cdc2016 { FactorSet::Cdc2016 } else { FactorSet::Cdc2022 };
                let full = daily_mme(&orders, set);
                let total = daily_mme_total(&orders, set);
                prop_assert_eq!(total.total_daily_mme.map(f64::to_bits), full.total_daily_mme.map(f64::to_bits));
                prop_assert_eq!(total.undetermined, !full.undetermined.is_empty());
                prop_assert_eq!(undetermined_products(&orders, set), full.undetermined);
            }

            #[test]
            fn more_of_a_flat_factor_drug_never_lowers_the_total(dose in 0.1f64..50.0, extra in 0.0f64..50.0) {
                let oxycodone = |mg: f64| order("o", OXYCODONE_ER_10, mg, DoseUnit::Milligram, 1.0);
                let low = daily_mme(&[oxycodone(dose)], FactorSet::Cdc2022).total_daily_mme.unwrap();
                let high = daily_mme(&[oxycodone(dose + extra)], FactorSet::Cdc2022).total_daily_mme.unwrap();
                prop_assert!(high >= low);
            }
        }
    }

    #[test]
    fn thresholds_compare_unrounded() {
        // 33.3 mg oxycodone/day = 49.95 MME stays below 50.
        let result = daily_mme(
            &[text_order("o", "Oxycodone Hydrochloride 5 MG Oral Tablet", 33.3, DoseUnit::Milligram, 1.0)],
            FactorSet::Cdc2022,
        );
        let value = result.total_daily_mme.unwrap();
        assert!(value < 50.0 && value > 49.9);
    }
}
