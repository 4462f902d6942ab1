//! The opioid drug table (RxNorm products with ingredient, strength, unit, dose form, long-acting),
//! embedded at build time, and identification of a product from its code or RxNorm-style text.
//!
//! The table is `data/opioid-drugs.csv` (provenance in `data/README.md`): one row per (RxCUI, opioid
//! ingredient strength). It is parsed once per process (`DrugTable::embedded`). Identification tries
//! the RxNorm code first; only when the code is absent or unknown is the text parsed, and then only a
//! complete RxNorm-style name counts (ingredient, strength, unit and dose form all present), because a
//! brand or a bare ingredient name does not say how much drug one unit holds.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use crate::error::RulesError;
use crate::facts::MedicationOrder;
use crate::text::{self, FastHash};

/// The drug table as shipped (hashed into the policy version).
pub const EMBEDDED_DRUG_CSV: &str = include_str!("../data/opioid-drugs.csv");
/// The MME conversion-factor table as shipped (hashed into the policy version; parsed by `mme`).
pub const EMBEDDED_FACTOR_CSV: &str = include_str!("../data/opioid-factors.csv");

/// The unit of a product's strength, as RxNorm writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrengthUnit {
    /// Milligrams per countable unit (tablet, capsule, film, suppository, vial ...).
    Mg,
    /// Milligrams per millilitre (solutions, suspensions, injections).
    MgPerMl,
    /// Milligrams per hour delivered by a transdermal system (0.025 MG/HR = 25 mcg/hr).
    MgPerHr,
    /// Milligrams per actuation (sprays).
    MgPerActuation,
}

impl StrengthUnit {
    pub fn parse(text: &str) -> Option<StrengthUnit> {
        match text.to_ascii_uppercase().as_str() {
            "MG" => Some(StrengthUnit::Mg),
            "MG/ML" => Some(StrengthUnit::MgPerMl),
            "MG/HR" => Some(StrengthUnit::MgPerHr),
            "MG/ACTUAT" => Some(StrengthUnit::MgPerActuation),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StrengthUnit::Mg => "MG",
            StrengthUnit::MgPerMl => "MG/ML",
            StrengthUnit::MgPerHr => "MG/HR",
            StrengthUnit::MgPerActuation => "MG/ACTUAT",
        }
    }
}

/// Whether a product is long-acting (extended-release, patch, methadone ...), per the table's
/// derivation; `Unknown` for parenteral forms the CDC classification does not cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Acting {
    Long,
    Short,
    Unknown,
}

/// The strength of one opioid ingredient in a product.
#[derive(Debug, Clone, PartialEq)]
pub struct IngredientStrength {
    /// Lower-case generic name without salt (`oxycodone`).
    pub ingredient: String,
    pub strength: f64,
    pub unit: StrengthUnit,
}

impl IngredientStrength {
    /// The strength in the unit prescribers use: mcg/hr for patches, else the RxNorm value.
    pub fn clinical_strength(&self) -> f64 {
        match self.unit {
            StrengthUnit::MgPerHr => self.strength * 1000.0,
            _ => self.strength,
        }
    }
}

/// A non-opioid ingredient of a combination product (`acetaminophen 325 MG`), from the table's
/// `co_ingredients` column (derived once from the RxNorm name by `scripts/derive-co-ingredients.py`).
#[derive(Debug, Clone, PartialEq)]
pub struct CoIngredient {
    /// Lower-case name as RxNorm writes it, salt included (`chlorpheniramine polistirex`).
    pub name: String,
    pub strength: f64,
    pub unit: StrengthUnit,
}

impl CoIngredient {
    /// Whether this is acetaminophen (whose per-unit and per-day limits the taper planner checks).
    pub fn is_acetaminophen(&self) -> bool {
        self.name == "acetaminophen"
    }

    /// `acetaminophen 325 mg`.
    pub fn describe(&self) -> String {
        let unit = self.unit.as_str().to_ascii_lowercase();
        format!("{} {} {unit}", self.name, crate::taper::trim_number(self.strength))
    }
}

/// Parse the `co_ingredients` cell: `acetaminophen=325 MG|caffeine=40 MG`, sorted by name.
pub fn parse_co_ingredients(cell: &str) -> Result<Vec<CoIngredient>, String> {
    let mut found = Vec::new();
    for entry in cell.split('|').map(str::trim).filter(|entry| !entry.is_empty()) {
        let Some((name, amount)) = entry.split_once('=') else {
            return Err(format!("co-ingredient '{entry}' is not name=strength unit"));
        };
        let mut parts = amount.split_whitespace();
        let (Some(value), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("co-ingredient '{entry}' is not name=strength unit"));
        };
        let strength: f64 = value.parse().map_err(|_| format!("co-ingredient strength '{value}' is not a number"))?;
        let unit = StrengthUnit::parse(unit).ok_or_else(|| format!("co-ingredient unit '{unit}' is unknown"))?;
        if !(strength.is_finite() && strength > 0.0) || name.trim().is_empty() {
            return Err(format!("co-ingredient '{entry}' needs a name and a positive strength"));
        }
        found.push(CoIngredient { name: name.trim().to_ascii_lowercase(), strength, unit });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name).then(a.strength.total_cmp(&b.strength)));
    Ok(found)
}

/// Where a product's description came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProductSource {
    /// Found in the embedded table by RxCUI (or by its exact name).
    Table,
    /// Parsed from a complete RxNorm-style text; not in the table.
    ParsedText,
}

/// One drug product with its opioid ingredients and, separately, its non-opioid co-ingredients
/// (acetaminophen ...). A product may hold several rows of the same ingredient (two oxycodone salts).
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub rxcui: Option<String>,
    pub name: String,
    /// RxNorm dose-form name (`Oral Tablet`, `Transdermal System`, ...).
    pub dose_form: String,
    pub ingredients: Vec<IngredientStrength>,
    /// Non-opioid ingredients with their strength per unit, sorted by name; empty for single-ingredient
    /// products.
    pub co_ingredients: Vec<CoIngredient>,
    pub acting: Acting,
    pub source: ProductSource,
}

impl Product {
    /// The first opioid ingredient (products in the table never hold two different opioids).
    pub fn ingredient(&self) -> &str {
        self.ingredients.first().map(|row| row.ingredient.as_str()).unwrap_or("")
    }

    pub fn is_transdermal(&self) -> bool {
        self.dose_form.eq_ignore_ascii_case("Transdermal System")
    }

    /// Strength per unit summed over rows of `ingredient` (two salts of one opioid add up).
    pub fn strength_of(&self, ingredient: &str) -> Option<(f64, StrengthUnit)> {
        let mut rows = self.ingredients.iter().filter(|row| row.ingredient == ingredient);
        let first = rows.next()?;
        let total = first.strength + rows.map(|row| row.strength).sum::<f64>();
        Some((total, first.unit))
    }

    /// Distinct opioid ingredients, in table order.
    pub fn distinct_ingredients(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for row in &self.ingredients {
            if !seen.contains(&row.ingredient.as_str()) {
                seen.push(&row.ingredient);
            }
        }
        seen
    }
}

/// Why an order could not be matched to a product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unidentified {
    /// The order carries an RxNorm code that is not in the table, and no complete RxNorm text.
    UnknownCode(String),
    /// The text is not a complete RxNorm-style name (missing strength, unit or dose form, or a brand).
    IncompleteText(String),
    /// Neither a code nor a text.
    NoProduct,
}

impl Unidentified {
    /// A sentence for reports.
    pub fn describe(&self) -> String {
        match self {
            Unidentified::UnknownCode(code) => {
                format!("RxNorm {code} is not in the opioid drug table and the text is not a complete RxNorm name")
            }
            Unidentified::IncompleteText(text) => format!(
                "'{text}' does not name ingredient, strength, unit and dose form; the product cannot be identified"
            ),
            Unidentified::NoProduct => "the order names no product (no code and no text)".to_string(),
        }
    }
}

/// The embedded opioid drug table with indexes by RxCUI, name and ingredient.
#[derive(Debug, Clone)]
pub struct DrugTable {
    products: Vec<Product>,
    by_rxcui: HashMap<String, usize, FastHash>,
    /// The codes written as plain decimal numbers (every RxCUI in the shipped table), by value: the
    /// lookup every coded order makes then hashes four bytes and compares no strings.
    by_rxcui_number: HashMap<u32, usize, FastHash>,
    by_name: HashMap<String, usize, FastHash>,
    ingredients: BTreeSet<String>,
    /// Lower-case brand names (`kadian`, `oxycontin`) from the bracketed part of branded names.
    brands: BTreeSet<String>,
    dose_forms: Vec<String>,
}

static EMBEDDED: OnceLock<DrugTable> = OnceLock::new();

impl DrugTable {
    /// The table shipped in the binary, parsed on first use.
    pub fn embedded() -> &'static DrugTable {
        EMBEDDED.get_or_init(|| {
            DrugTable::parse(EMBEDDED_DRUG_CSV).expect("embedded opioid-drugs.csv parses (checked by tests)")
        })
    }

    /// Parse a table in the `opioid-drugs.csv` layout.
    pub fn parse(csv: &str) -> Result<DrugTable, RulesError> {
        const TABLE: &str = "opioid-drugs.csv";
        let mut lines = csv.lines().enumerate();
        let header = lines.next().map(|(_, line)| split_csv_line(line)).unwrap_or_default();
        let co_column = header.iter().position(|name| name == "co_ingredients");
        let expected = ["rxcui", "name", "ingredient", "strength", "strength_unit", "dose_form", "long_acting"];
        if header.len() < expected.len() || header.iter().zip(expected).any(|(have, want)| have != want) {
            return Err(RulesError::Table {
                table: TABLE,
                line: 1,
                message: format!("header must start with {expected:?}"),
            });
        }
        let mut table = DrugTable {
            products: Vec::new(),
            by_rxcui: HashMap::default(),
            by_rxcui_number: HashMap::default(),
            by_name: HashMap::default(),
            ingredients: BTreeSet::new(),
            brands: BTreeSet::new(),
            dose_forms: Vec::new(),
        };
        for (index, line) in lines {
            let line_number = index + 1;
            if line.trim().is_empty() {
                continue;
            }
            let fields = split_csv_line(line);
            let bad = |message: String| RulesError::Table { table: TABLE, line: line_number, message };
            if fields.len() < expected.len() {
                return Err(bad(format!("expected at least {} fields, found {}", expected.len(), fields.len())));
            }
            let strength: f64 =
                fields[3].parse().map_err(|_| bad(format!("strength '{}' is not a number", fields[3])))?;
            if !(strength.is_finite() && strength > 0.0) {
                return Err(bad(format!("strength '{}' must be positive", fields[3])));
            }
            let unit = StrengthUnit::parse(&fields[4]).ok_or_else(|| bad(format!("unknown unit '{}'", fields[4])))?;
            let acting = match fields[6].as_str() {
                "true" => Acting::Long,
                "false" => Acting::Short,
                "unknown" => Acting::Unknown,
                other => return Err(bad(format!("long_acting '{other}' is not true/false/unknown"))),
            };
            let ingredient = fields[2].to_ascii_lowercase();
            if ingredient.is_empty() || fields[0].is_empty() || fields[5].is_empty() {
                return Err(bad("rxcui, ingredient and dose_form must not be empty".to_string()));
            }
            let row = IngredientStrength { ingredient: ingredient.clone(), strength, unit };
            table.ingredients.insert(ingredient);
            if let Some(&existing) = table.by_rxcui.get(&fields[0]) {
                table.products[existing].ingredients.push(row);
                continue;
            }
            let name = fields[1].clone();
            for brand in bracketed_brands(&name) {
                table.brands.insert(brand);
            }
            if !table.dose_forms.iter().any(|form| form == &fields[5]) {
                table.dose_forms.push(fields[5].clone());
            }
            let co_ingredients = match co_column.and_then(|column| fields.get(column)) {
                Some(cell) => parse_co_ingredients(cell).map_err(bad)?,
                None => Vec::new(),
            };
            let position = table.products.len();
            table.by_rxcui.insert(fields[0].clone(), position);
            if let Some(number) = rxcui_number(&fields[0]) {
                table.by_rxcui_number.insert(number, position);
            }
            table.by_name.entry(normalise_text(&name)).or_insert(position);
            table.products.push(Product {
                rxcui: Some(fields[0].clone()),
                name,
                dose_form: fields[5].clone(),
                ingredients: vec![row],
                co_ingredients,
                acting,
                source: ProductSource::Table,
            });
        }
        // Longest dose-form names first, so "Extended Release Oral Tablet" wins over "Oral Tablet".
        table.dose_forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        Ok(table)
    }

    pub fn products(&self) -> &[Product] {
        &self.products
    }

    /// The product with this RxCUI.
    pub fn by_rxcui(&self, rxcui: &str) -> Option<&Product> {
        let code = text::trim(rxcui);
        let index = match rxcui_number(code) {
            Some(number) => self.by_rxcui_number.get(&number),
            None => self.by_rxcui.get(code),
        };
        index.map(|&index| &self.products[index])
    }

    /// Every opioid ingredient name in the table (lower case).
    pub fn ingredients(&self) -> impl Iterator<Item = &str> {
        self.ingredients.iter().map(String::as_str)
    }

    /// The canonical (table-owned) spelling of an ingredient name, if it is an opioid in the table.
    pub fn canonical_ingredient(&self, name: &str) -> Option<&str> {
        // The usual caller passes a table-owned name already: find it without allocating.
        if let Some(found) = self.ingredients.get(name) {
            return Some(found.as_str());
        }
        let lower = name.trim().to_ascii_lowercase();
        self.ingredients.get(lower.as_str()).map(String::as_str)
    }

    /// Products with `ingredient` as an opioid ingredient.
    pub fn products_of<'a>(&'a self, ingredient: &str) -> impl Iterator<Item = &'a Product> + use<'a> {
        let ingredient = ingredient.trim().to_ascii_lowercase();
        self.products.iter().filter(move |product| product.ingredients.iter().any(|row| row.ingredient == ingredient))
    }

    /// Distinct dose forms in which `ingredient` exists, sorted.
    pub fn dose_forms_of(&self, ingredient: &str) -> Vec<&str> {
        let forms: BTreeSet<&str> = self.products_of(ingredient).map(|product| product.dose_form.as_str()).collect();
        forms.into_iter().collect()
    }

    /// Identify the product of an order: the RxNorm code first, else a complete RxNorm-style text.
    pub fn identify<'a>(&'a self, order: &MedicationOrder) -> Result<Cow<'a, Product>, Unidentified> {
        self.identify_parts(order.rxcui.as_deref(), order.text.as_deref())
    }

    /// `identify` on a bare code and/or text.
    pub fn identify_parts<'a>(
        &'a self,
        rxcui: Option<&str>,
        text: Option<&str>,
    ) -> Result<Cow<'a, Product>, Unidentified> {
        if let Some(code) = rxcui.map(text::trim).filter(|code| !code.is_empty())
            && let Some(product) = self.by_rxcui(code)
        {
            return Ok(Cow::Borrowed(product));
        }
        if let Some(text) = text.map(str::trim).filter(|text| !text.is_empty()) {
            if let Some(&index) = self.by_name.get(&normalise_text(text)) {
                return Ok(Cow::Borrowed(&self.products[index]));
            }
            if let Some(product) = self.parse_rxnorm_text(text) {
                return Ok(Cow::Owned(product));
            }
            return Err(match rxcui.map(str::trim).filter(|code| !code.is_empty()) {
                Some(code) => Unidentified::UnknownCode(code.to_string()),
                None => Unidentified::IncompleteText(text.to_string()),
            });
        }
        match rxcui.map(str::trim).filter(|code| !code.is_empty()) {
            Some(code) => Err(Unidentified::UnknownCode(code.to_string())),
            None => Err(Unidentified::NoProduct),
        }
    }

    /// The lower-case opioid ingredient of an order (`oxycodone`), if the order can be identified.
    pub fn ingredient_of(&self, order: &MedicationOrder) -> Option<&str> {
        let product = self.identify(order).ok()?;
        self.canonical_ingredient(product.ingredient())
    }

    /// Whether a text or code points at an opioid at all: a code in the table, or a text naming an
    /// opioid ingredient or a brand from the table. Used to tell an unidentifiable opioid order
    /// (undetermined MME) from an unrelated medication (ignored).
    pub fn mentions_opioid(&self, rxcui: Option<&str>, text: Option<&str>) -> bool {
        if rxcui.is_some_and(|code| self.by_rxcui(code).is_some()) {
            return true;
        }
        let Some(text) = text else { return false };
        let lower = text.to_ascii_lowercase();
        let words: Vec<&str> = lower.split(|c: char| !c.is_ascii_alphanumeric() && c != '-').collect();
        words.iter().any(|word| self.ingredients.contains(*word) || self.brands.contains(*word))
            || self.brands.iter().any(|brand| brand.contains(' ') && lower.contains(brand.as_str()))
    }

    /// Parse "Oxycodone Hydrochloride 5 MG Oral Tablet", "12 HR oxycodone hydrochloride 10 MG Extended
    /// Release Oral Tablet", "Acetaminophen 325 MG / Hydrocodone Bitartrate 5 MG Oral Tablet" or
    /// "72 HR fentanyl 0.05 MG/HR Transdermal System [Duragesic]". Returns `None` unless a dose form,
    /// and for at least one opioid ingredient a strength and unit, are all present.
    fn parse_rxnorm_text(&self, text: &str) -> Option<Product> {
        let mut body = text.trim();
        // A trailing "[Brand]" is allowed but carries no information we need.
        if let Some(open) = body.rfind('[')
            && body.ends_with(']')
        {
            body = body[..open].trim_end();
        }
        let lower = body.to_ascii_lowercase();
        let dose_form = self
            .dose_forms
            .iter()
            .find(|form| lower.ends_with(&form.to_ascii_lowercase()) && lower.len() > form.len())?
            .clone();
        let components = body[..body.len() - dose_form.len()].trim();
        // Drop a leading duration or volume qualifier: "12 HR ", "72 HR ", "1 ML ".
        let components = strip_qualifier(components);
        let mut ingredients = Vec::new();
        let mut co_ingredients = Vec::new();
        for component in components.split(" / ") {
            let tokens: Vec<&str> = component.split_whitespace().collect();
            if tokens.len() < 3 {
                return None;
            }
            let unit_token = tokens[tokens.len() - 1];
            let value_token = tokens[tokens.len() - 2];
            let name = tokens[..tokens.len() - 2].join(" ").to_ascii_lowercase();
            let (strength, unit) = parse_strength(value_token, unit_token)?;
            let first_word = name.split_whitespace().next()?;
            if let Some(ingredient) = self.ingredients.get(first_word) {
                ingredients.push(IngredientStrength { ingredient: ingredient.clone(), strength, unit });
            } else {
                // Every component of a complete RxNorm name carries its strength: a co-ingredient is
                // read whole (name, strength, unit), never guessed from a prefix of the name.
                co_ingredients.push(CoIngredient { name, strength, unit });
            }
        }
        if ingredients.is_empty() {
            return None;
        }
        let acting = derive_acting(ingredients[0].ingredient.as_str(), &dose_form, ingredients[0].unit);
        Some(Product {
            rxcui: None,
            name: text.trim().to_string(),
            dose_form,
            ingredients,
            co_ingredients: {
                co_ingredients.sort_by(|a, b| a.name.cmp(&b.name).then(a.strength.total_cmp(&b.strength)));
                co_ingredients
            },
            acting,
            source: ProductSource::ParsedText,
        })
    }
}

/// The value of a code written as a plain decimal number without leading zeros, the way RxNorm writes
/// RxCUIs; `None` for any other spelling. Such a spelling is unique to its value, so looking the value
/// up finds exactly the key the text would.
fn rxcui_number(code: &str) -> Option<u32> {
    let bytes = code.as_bytes();
    if bytes.is_empty() || bytes.len() > 9 || bytes[0] == b'0' {
        return None;
    }
    let mut value = 0u32;
    for &byte in bytes {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(byte - b'0');
    }
    Some(value)
}

/// The strength of one component: a positive number and an RxNorm unit (MCG is converted to MG).
fn parse_strength(value: &str, unit: &str) -> Option<(f64, StrengthUnit)> {
    let number: f64 = value.parse().ok()?;
    if !(number.is_finite() && number > 0.0) {
        return None;
    }
    let upper = unit.to_ascii_uppercase();
    if let Some(unit) = StrengthUnit::parse(&upper) {
        return Some((number, unit));
    }
    let micro = match upper.as_str() {
        "MCG" => StrengthUnit::Mg,
        "MCG/ML" => StrengthUnit::MgPerMl,
        "MCG/HR" => StrengthUnit::MgPerHr,
        "MCG/ACTUAT" => StrengthUnit::MgPerActuation,
        _ => return None,
    };
    Some((number / 1000.0, micro))
}

/// "12 HR oxycodone ..." -> "oxycodone ..."; "1 ML morphine ..." -> "morphine ...";
/// "Abuse-Deterrent 12 HR oxycodone ..." -> "oxycodone ...".
fn strip_qualifier(components: &str) -> &str {
    let components = match components.get(..16) {
        Some(head) if head.eq_ignore_ascii_case("abuse-deterrent ") => components[16..].trim_start(),
        _ => components,
    };
    let mut tokens = components.splitn(3, ' ');
    if let (Some(number), Some(unit), Some(rest)) = (tokens.next(), tokens.next(), tokens.next())
        && number.parse::<f64>().is_ok()
        && matches!(unit.to_ascii_uppercase().as_str(), "HR" | "ML" | "ACTUAT")
    {
        return rest;
    }
    components
}

/// The long-acting derivation of `data/README.md` for products outside the table.
fn derive_acting(ingredient: &str, dose_form: &str, unit: StrengthUnit) -> Acting {
    let form = dose_form.to_ascii_lowercase();
    let parenteral = ["injection", "injectable", "prefilled syringe", "cartridge", "auto-injector", "topical solution"];
    if parenteral.iter().any(|word| form.contains(word)) {
        return Acting::Unknown;
    }
    if form.starts_with("extended release") || form == "drug implant" {
        return Acting::Long;
    }
    if form == "transdermal system" && unit == StrengthUnit::MgPerHr {
        return Acting::Long;
    }
    if matches!(ingredient, "methadone" | "levorphanol" | "levomethadyl" | "buprenorphine") {
        return Acting::Long;
    }
    Acting::Short
}

/// Lower case with single spaces, in one allocation (runs for every text-only order).
fn normalise_text(text: &str) -> String {
    let mut normalised = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !normalised.is_empty() {
            normalised.push(' ');
        }
        normalised.extend(word.chars().map(|c| c.to_ascii_lowercase()));
    }
    normalised
}

/// Brand names written in brackets in a branded drug name, lower case, without strength suffixes.
fn bracketed_brands(name: &str) -> Vec<String> {
    let mut brands = Vec::new();
    let mut rest = name;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']') else { break };
        let inside = &rest[open + 1..open + close];
        // "[Subsys 1200 MCG]" -> "subsys".
        let words: Vec<&str> =
            inside.split_whitespace().take_while(|word| !word.starts_with(|c: char| c.is_ascii_digit())).collect();
        if !words.is_empty() {
            brands.push(words.join(" ").to_ascii_lowercase());
        }
        rest = &rest[open + close + 1..];
    }
    brands
}

/// Split one CSV record (RFC 4180 quoting, no embedded newlines: the shipped tables have none).
pub(crate) fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (_, c) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> &'static DrugTable {
        DrugTable::embedded()
    }

    #[test]
    fn embedded_table_parses_with_the_documented_counts() {
        let table = table();
        assert_eq!(table.products().len(), 1196);
        let rows: usize = table.products().iter().map(|product| product.ingredients.len()).sum();
        assert_eq!(rows, 1198);
        assert_eq!(table.ingredients().count(), 29);
    }

    #[test]
    fn two_salt_product_keeps_both_rows_and_sums_strength() {
        let product = table().by_rxcui("637540").expect("in table");
        assert_eq!(product.ingredients.len(), 2);
        let (strength, unit) = product.strength_of("oxycodone").unwrap();
        assert!((strength - 4.88).abs() < 1e-9);
        assert_eq!(unit, StrengthUnit::Mg);
    }

    #[test]
    fn identifies_by_code_first() {
        let product = table().identify_parts(Some("197696"), Some("anything")).unwrap();
        assert_eq!(product.ingredient(), "fentanyl");
        assert!(product.is_transdermal());
        assert_eq!(product.ingredients[0].clinical_strength(), 75.0);
        assert_eq!(product.source, ProductSource::Table);
    }

    #[test]
    fn identifies_complete_rxnorm_text() {
        let product = table().identify_parts(None, Some("Oxycodone Hydrochloride 5 MG Oral Tablet")).unwrap();
        assert_eq!(product.ingredient(), "oxycodone");
        assert_eq!(product.dose_form, "Oral Tablet");
        assert_eq!(product.ingredients[0].strength, 5.0);

        let parsed = table()
            .identify_parts(None, Some("Acetaminophen 300 MG / Hydrocodone Bitartrate 7.5 MG Oral Tablet [Made Up]"))
            .unwrap();
        assert_eq!(parsed.ingredient(), "hydrocodone");
        assert_eq!(parsed.ingredients.len(), 1);
        assert_eq!(parsed.ingredients[0].strength, 7.5);

        let patch = table().identify_parts(None, Some("72 HR Fentanyl 0.0375 MG/HR Transdermal System")).unwrap();
        assert_eq!(patch.acting, Acting::Long);
        assert_eq!(patch.ingredients[0].unit, StrengthUnit::MgPerHr);

        let er = table()
            .identify_parts(None, Some("12 HR Oxycodone Hydrochloride 17 MG Extended Release Oral Tablet"))
            .unwrap();
        assert_eq!(er.dose_form, "Extended Release Oral Tablet");
        assert_eq!(er.acting, Acting::Long);
        assert_eq!(er.source, ProductSource::ParsedText);

        let deterrent = table()
            .identify_parts(
                None,
                Some("Abuse-Deterrent 12 HR Oxycodone Hydrochloride 17 MG Extended Release Oral Tablet"),
            )
            .unwrap();
        assert_eq!(deterrent.ingredient(), "oxycodone");
        assert_eq!(deterrent.ingredients[0].strength, 17.0);
    }

    #[test]
    fn brand_or_partial_text_is_not_enough() {
        for text in
            ["Kadian", "Morphine Sulfate 10 MG [Kadian]", "oxycodone", "Oxycodone 5 MG", "Oxycodone Oral Tablet"]
        {
            assert!(table().identify_parts(None, Some(text)).is_err(), "{text} must not be identified");
        }
        assert_eq!(
            table().identify_parts(Some("892495"), Some("Morphine Sulfate 10 MG [Kadian]")),
            Err(Unidentified::UnknownCode("892495".into()))
        );
        assert_eq!(table().identify_parts(None, None), Err(Unidentified::NoProduct));
    }

    #[test]
    fn non_opioid_text_is_not_an_opioid_product() {
        assert!(table().identify_parts(None, Some("Acetaminophen 325 MG Oral Tablet")).is_err());
        assert!(!table().mentions_opioid(Some("1185223"), Some("Pepto-bismol Pill")));
        assert!(!table().mentions_opioid(Some("104693"), Some("Temazepam 20 MG Oral Capsule")));
        assert!(table().mentions_opioid(Some("892495"), Some("Morphine Sulfate 10 MG [Kadian]")));
        assert!(table().mentions_opioid(None, Some("Kadian")));
    }

    #[test]
    fn dose_forms_of_an_ingredient() {
        assert!(table().dose_forms_of("methadone").contains(&"Oral Tablet"));
        assert!(table().dose_forms_of("fentanyl").contains(&"Transdermal System"));
    }

    #[test]
    fn ingredient_of_an_order() {
        let order = MedicationOrder {
            id: "MedicationRequest/1".into(),
            rxcui: Some("1049502".into()),
            text: None,
            dose: None,
            doses_per_day: None,
            days_supply: None,
            dispense_quantity: None,
            prescriber: None,
            purpose: Default::default(),
            confidentiality: Default::default(),
        };
        assert_eq!(table().ingredient_of(&order), Some("oxycodone"));
    }

    #[test]
    fn codes_are_found_only_as_written() {
        assert_eq!(table().by_rxcui(" 1049621 ").map(|p| p.ingredient()), Some("oxycodone"));
        for other_spelling in ["01049621", "1049621.0", "+1049621", "1049621x", "", "0"] {
            assert!(table().by_rxcui(other_spelling).is_none(), "{other_spelling:?}");
        }
        assert_eq!(rxcui_number("999999999"), Some(999_999_999));
        assert_eq!(rxcui_number("1234567890"), None);
        // A table may hold a code that is not a plain number: it is found by its text.
        let csv = "rxcui,name,ingredient,strength,strength_unit,dose_form,long_acting\n\
                   X-7,oxycodone hydrochloride 5 MG Oral Tablet,oxycodone,5,MG,Oral Tablet,false\n";
        assert_eq!(DrugTable::parse(csv).unwrap().by_rxcui("X-7").map(|p| p.ingredient()), Some("oxycodone"));
    }

    #[test]
    fn csv_splitter_handles_quotes() {
        assert_eq!(split_csv_line(r#"a,"b, ""c""",d"#), vec!["a", "b, \"c\"", "d"]);
    }
}
