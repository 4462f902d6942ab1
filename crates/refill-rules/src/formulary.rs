//! The clinic formulary: the opioid products and strengths the clinic's pharmacies dispense, each with
//! its make-up in columns (opioid ingredient and strength, dose form, non-opioid co-ingredients and
//! their strengths) and the source that says it is marketed.
//!
//! The taper planner plans only from it (`taper::plan_taper`): a step keeps the ordered product's
//! make-up (`MakeUp`) and uses only formulary products of that make-up, so it never introduces a
//! co-ingredient and never orders a strength no pharmacy stocks. The default list is
//! `config/formulary.toml`, embedded here; the binary loads the clinic's edited copy in its place.
//! Parsing a text the caller hands in is pure: no I/O here.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::drug::{CoIngredient, Product, StrengthUnit};
use crate::taper::trim_number;

/// The default formulary as shipped (`config/formulary.toml`).
pub const EMBEDDED_FORMULARY_TOML: &str = include_str!("../../../config/formulary.toml");

/// The strength unit of a formulary product as prescribers write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FormularyUnit {
    #[serde(rename = "mg")]
    Mg,
    /// Transdermal systems: micrograms per hour delivered.
    #[serde(rename = "mcg/hr")]
    McgPerHr,
}

impl FormularyUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            FormularyUnit::Mg => "mg",
            FormularyUnit::McgPerHr => "mcg/hr",
        }
    }
}

/// A non-opioid ingredient of a formulary product, strength in mg per unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormularyCoIngredient {
    pub name: String,
    pub strength: f64,
}

/// One dispensable product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormularyProduct {
    /// RxNorm-style clinical drug name, shown on screens and written on the step's order.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rxcui: Option<String>,
    /// The opioid ingredient, lower case without salt (`hydrocodone`).
    pub ingredient: String,
    /// Opioid strength per unit in `unit`.
    pub strength: f64,
    pub unit: FormularyUnit,
    /// RxNorm dose form; carries route and release (`Extended Release Oral Tablet`).
    pub dose_form: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub co_ingredients: Vec<FormularyCoIngredient>,
    /// Where the strength is known to be marketed (or who added it for one plan, and why).
    pub source: String,
}

impl FormularyProduct {
    /// The make-up every step of a line must keep.
    pub fn make_up(&self) -> MakeUp {
        let mut co: Vec<(String, i64)> =
            self.co_ingredients.iter().map(|co| (co.name.to_ascii_lowercase(), thousandths(co.strength))).collect();
        co.sort();
        MakeUp {
            ingredient: self.ingredient.to_ascii_lowercase(),
            dose_form: self.dose_form.to_ascii_lowercase(),
            unit: self.unit,
            co_ingredients: co,
        }
    }

    /// Acetaminophen per unit in mg (0 when there is none).
    pub fn acetaminophen_mg(&self) -> f64 {
        self.co_ingredients
            .iter()
            .filter(|co| co.name.eq_ignore_ascii_case("acetaminophen"))
            .map(|co| co.strength)
            .sum()
    }

    /// `hydrocodone 10 mg / acetaminophen 325 mg`: the make-up in words, for screens.
    pub fn strengths_text(&self) -> String {
        let mut text = format!("{} {} {}", self.ingredient, trim_number(self.strength), self.unit.as_str());
        for co in &self.co_ingredients {
            text.push_str(&format!(" / {} {} mg", co.name, trim_number(co.strength)));
        }
        text
    }

    /// Problems with one row, each naming the field.
    fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        for (field, value) in [("name", &self.name), ("ingredient", &self.ingredient), ("dose_form", &self.dose_form)] {
            if value.trim().is_empty() {
                problems.push(format!("{at}: {field} must not be empty"));
            }
        }
        if self.source.trim().is_empty() {
            problems.push(format!("{at}: source must say where the product is marketed"));
        }
        if !(self.strength.is_finite() && self.strength > 0.0) {
            problems.push(format!("{at}: strength must be a positive number, not {}", self.strength));
        }
        let transdermal = self.dose_form.eq_ignore_ascii_case("Transdermal System");
        if transdermal != (self.unit == FormularyUnit::McgPerHr) {
            problems.push(format!("{at}: unit \"mcg/hr\" is for transdermal systems only, and they need it"));
        }
        for co in &self.co_ingredients {
            if co.name.trim().is_empty() || !(co.strength.is_finite() && co.strength > 0.0) {
                problems.push(format!("{at}: co_ingredients need a name and a positive strength in mg"));
            }
        }
        problems
    }
}

/// What a taper step must keep of the ordered product: opioid ingredient, dose form (route and
/// release), unit, and every co-ingredient at the same strength per unit (in thousandths of a mg).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MakeUp {
    pub ingredient: String,
    pub dose_form: String,
    pub unit: FormularyUnit,
    pub co_ingredients: Vec<(String, i64)>,
}

impl MakeUp {
    /// The make-up of a product of the drug table (co-ingredients from its structured column).
    /// `None` when a co-ingredient is not counted in mg per unit (a liquid), which no step can keep.
    pub fn of_product(product: &Product) -> Option<MakeUp> {
        let ingredient = product.ingredient().to_string();
        let (_, unit) = product.strength_of(&ingredient)?;
        let unit = match unit {
            StrengthUnit::Mg => FormularyUnit::Mg,
            StrengthUnit::MgPerHr => FormularyUnit::McgPerHr,
            _ => return None,
        };
        let mut co = Vec::new();
        for CoIngredient { name, strength, unit } in &product.co_ingredients {
            if *unit != StrengthUnit::Mg {
                return None;
            }
            co.push((base_name(name), thousandths(*strength)));
        }
        co.sort();
        Some(MakeUp { ingredient, dose_form: product.dose_form.to_ascii_lowercase(), unit, co_ingredients: co })
    }

    /// `hydrocodone Oral Tablet with acetaminophen 325 mg`.
    pub fn describe(&self) -> String {
        let mut text = format!("{} {}", self.ingredient, self.dose_form);
        if !self.co_ingredients.is_empty() {
            let co: Vec<String> = self
                .co_ingredients
                .iter()
                .map(|(name, mg)| format!("{name} {} mg", trim_number(*mg as f64 / 1000.0)))
                .collect();
            text.push_str(&format!(" with {}", co.join(" and ")));
        }
        text
    }

    /// The same ingredient, dose form and unit without any co-ingredient: the opioid-only product a
    /// step may use instead of a combination (it removes a co-ingredient, never adds one).
    pub fn opioid_only(&self) -> MakeUp {
        MakeUp { co_ingredients: Vec::new(), ..self.clone() }
    }
}

/// The formulary: `[[product]]` rows.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Formulary {
    #[serde(default, rename = "product")]
    pub products: Vec<FormularyProduct>,
}

static EMBEDDED: OnceLock<Formulary> = OnceLock::new();

impl Formulary {
    /// The default formulary shipped in `config/formulary.toml` (checked by the tests).
    pub fn embedded() -> &'static Formulary {
        EMBEDDED.get_or_init(|| Formulary::from_rows(&embedded_rows()))
    }

    /// Build from rows (the caller parsed the file; `problems` says what is wrong with it).
    pub fn from_rows(products: &[FormularyProduct]) -> Formulary {
        Formulary { products: products.to_vec() }
    }

    /// Reasons the list cannot be used, each naming the row (1-based) and field; empty when fine.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (index, product) in self.products.iter().enumerate() {
            problems.extend(product.problems(&format!("product {} ({})", index + 1, product.name)));
        }
        for (index, product) in self.products.iter().enumerate() {
            let key = (product.make_up(), thousandths(product.strength));
            if self.products[..index].iter().any(|other| (other.make_up(), thousandths(other.strength)) == key) {
                problems.push(format!(
                    "product {} ({}): the same make-up and strength is listed twice",
                    index + 1,
                    product.name
                ));
            }
        }
        problems
    }

    /// The products of one make-up, by ascending strength.
    pub fn of_make_up(&self, make_up: &MakeUp) -> Vec<FormularyProduct> {
        let mut products: Vec<FormularyProduct> =
            self.products.iter().filter(|product| &product.make_up() == make_up).cloned().collect();
        products.sort_by(|a, b| a.strength.total_cmp(&b.strength));
        products
    }

    /// A copy with `extra` products added (a physician's addition for one plan), duplicates skipped.
    pub fn with_added(&self, extra: &[FormularyProduct]) -> Formulary {
        let mut products = self.products.clone();
        for product in extra {
            let key = (product.make_up(), thousandths(product.strength));
            if !products.iter().any(|other| (other.make_up(), thousandths(other.strength)) == key) {
                products.push(product.clone());
            }
        }
        Formulary { products }
    }
}

/// Parse a formulary file (`[[product]]` rows). Pure: the caller read the text. Errors name the line
/// and the key, as `toml` reports them.
pub fn parse_formulary(text: &str) -> Result<Formulary, String> {
    toml::from_str::<Formulary>(text).map_err(|error| error.to_string())
}

fn embedded_rows() -> Vec<FormularyProduct> {
    parse_formulary(EMBEDDED_FORMULARY_TOML).expect("config/formulary.toml parses (checked by tests)").products
}

/// Amounts compared in thousandths (7.5 and 7.50 are one strength).
fn thousandths(value: f64) -> i64 {
    (value * 1000.0).round() as i64
}

/// `acetaminophen` from `acetaminophen`; a salt stays (`chlorpheniramine polistirex`): the formulary
/// names co-ingredients as the table does.
fn base_name(name: &str) -> String {
    name.trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drug::DrugTable;

    #[test]
    fn the_shipped_formulary_parses_and_is_consistent() {
        let formulary = Formulary::embedded();
        assert!(formulary.products.len() > 80, "{}", formulary.products.len());
        assert_eq!(formulary.problems(), Vec::<String>::new());
    }

    #[test]
    fn every_row_agrees_with_the_drug_table_by_its_columns() {
        // The name is written on orders and identified by the MME code: it must say what the
        // columns say, or the pharmacy would read one product and the planner count another.
        let drugs = DrugTable::embedded();
        for product in &Formulary::embedded().products {
            let found = drugs
                .identify_parts(product.rxcui.as_deref(), Some(&product.name))
                .unwrap_or_else(|why| panic!("{}: {}", product.name, why.describe()));
            assert_eq!(MakeUp::of_product(&found).as_ref(), Some(&product.make_up()), "{}", product.name);
            let (strength, unit) = found.strength_of(&product.ingredient).expect("strength");
            let clinical = if unit == StrengthUnit::MgPerHr { strength * 1000.0 } else { strength };
            assert_eq!(thousandths(clinical), thousandths(product.strength), "{}", product.name);
            assert!(product.acetaminophen_mg() <= 325.0, "{}", product.name);
            // The name alone (no code) identifies the same make-up too.
            let by_name = drugs.identify_parts(None, Some(&product.name)).expect("name identifies");
            assert_eq!(MakeUp::of_product(&by_name), Some(product.make_up()), "{}", product.name);
        }
    }

    #[test]
    fn strengths_that_are_not_marketed_are_absent() {
        let formulary = Formulary::embedded();
        let has = |ingredient: &str, form: &str, strength: f64| {
            formulary.products.iter().any(|p| {
                p.ingredient == ingredient
                    && p.dose_form == form
                    && p.strength == strength
                    && p.co_ingredients.is_empty()
            })
        };
        assert!(!has("morphine", "Extended Release Oral Tablet", 5.0));
        assert!(!has("hydromorphone", "Oral Tablet", 1.0));
        assert!(!has("hydromorphone", "Oral Tablet", 3.0));
        assert!(!has("oxycodone", "Extended Release Oral Tablet", 160.0));
        assert!(has("fentanyl", "Transdermal System", 37.5));
        assert!(has("morphine", "Extended Release Oral Tablet", 15.0));
    }

    #[test]
    fn bad_rows_are_named() {
        let text = "[[product]]\nname = \"x\"\ningredient = \"oxycodone\"\nstrength = \"five\"\n";
        let error = parse_formulary(text).unwrap_err();
        assert!(error.contains("line 4") && error.contains("strength"), "{error}");
        let text = "[[product]]\nname = \"x\"\ningredient = \"oxycodone\"\nstrength = 5\nunit = \"mg\"\ndose_form = \"Oral Tablet\"\nsource = \"\"\n";
        let problems = parse_formulary(text).unwrap().problems();
        assert!(problems.iter().any(|p| p.contains("product 1") && p.contains("source")), "{problems:?}");
    }

    #[test]
    fn the_cough_capsule_is_not_the_make_up_of_hydrocodone_er() {
        let drugs = DrugTable::embedded();
        let cough = drugs.by_rxcui("857512").expect("chlorpheniramine/hydrocodone ER capsule");
        let make_up = MakeUp::of_product(cough).expect("make-up");
        assert_eq!(make_up.co_ingredients, vec![("chlorpheniramine polistirex".to_string(), 8000)]);
        let plain = Formulary::embedded()
            .products
            .iter()
            .find(|p| p.ingredient == "hydrocodone" && p.dose_form == "Extended Release Oral Capsule")
            .expect("hydrocodone ER capsule");
        assert_ne!(plain.make_up(), make_up);
    }
}
