//! The analyte and assay-coverage table, kept as data in `data/uds-*.csv` with a source for every row
//! and embedded at build time: which analytes each opioid leaves in urine, which analytes each assay can
//! see, and which analytes are illicit whatever is prescribed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::OnceLock;

use crate::error::RulesError;
use crate::text::FastHash;

const EXPECTED_CSV: &str = include_str!("../../data/uds-expected-analytes.csv");
const COVERAGE_CSV: &str = include_str!("../../data/uds-assay-coverage.csv");
const ILLICIT_CSV: &str = include_str!("../../data/uds-illicit.csv");

/// How an analyte relates to the ingredient taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    Parent,
    Metabolite,
    /// Present in small amounts only: explains a positive, but its absence proves nothing.
    MinorMetabolite,
}

/// How well an assay sees an analyte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coverage {
    /// A negative result is meaningful.
    Reliable,
    /// A positive counts; a negative proves nothing (kit and concentration dependent).
    Variable,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedAnalyte {
    pub analyte: String,
    pub relation: Relation,
    pub source: String,
}

/// The parsed table.
#[derive(Debug, Clone, PartialEq)]
pub struct UdsTable {
    /// Ingredient -> analytes expected when it is taken.
    pub expected: BTreeMap<String, Vec<ExpectedAnalyte>>,
    /// Assay -> analyte -> coverage.
    pub coverage: BTreeMap<String, BTreeMap<String, Coverage>>,
    pub illicit: BTreeSet<String>,
}

/// Confirmatory methods see every analyte they report by name.
pub const CONFIRMATORY_ASSAYS: [&str; 4] = ["lcms", "gcms", "lc-ms/ms", "gc-ms"];

impl UdsTable {
    /// The table shipped in `data/`, parsed once. Its rows are checked by the crate's tests, so a parse
    /// failure here is a build defect.
    pub fn embedded() -> &'static UdsTable {
        static TABLE: OnceLock<UdsTable> = OnceLock::new();
        TABLE.get_or_init(|| UdsTable::parse(EXPECTED_CSV, COVERAGE_CSV, ILLICIT_CSV).expect("embedded UDS table"))
    }

    /// Parse the three CSV texts (lines starting with `#` are comments; the first other line is the header).
    pub fn parse(expected_csv: &str, coverage_csv: &str, illicit_csv: &str) -> Result<UdsTable, RulesError> {
        let mut expected: BTreeMap<String, Vec<ExpectedAnalyte>> = BTreeMap::new();
        for (line, fields) in rows("uds-expected-analytes.csv", expected_csv, 4)? {
            let relation = match fields[2].as_str() {
                "parent" => Relation::Parent,
                "metabolite" => Relation::Metabolite,
                "minor_metabolite" => Relation::MinorMetabolite,
                other => {
                    return Err(RulesError::Table {
                        table: "uds-expected-analytes.csv",
                        line,
                        message: format!("relation must be parent, metabolite or minor_metabolite, not {other:?}"),
                    });
                }
            };
            expected.entry(fields[0].clone()).or_default().push(ExpectedAnalyte {
                analyte: fields[1].clone(),
                relation,
                source: fields[3].clone(),
            });
        }
        let mut coverage: BTreeMap<String, BTreeMap<String, Coverage>> = BTreeMap::new();
        for (line, fields) in rows("uds-assay-coverage.csv", coverage_csv, 4)? {
            let level = match fields[2].as_str() {
                "reliable" => Coverage::Reliable,
                "variable" => Coverage::Variable,
                other => {
                    return Err(RulesError::Table {
                        table: "uds-assay-coverage.csv",
                        line,
                        message: format!("coverage must be reliable or variable, not {other:?}"),
                    });
                }
            };
            coverage.entry(fields[0].clone()).or_default().insert(fields[1].clone(), level);
        }
        let illicit =
            rows("uds-illicit.csv", illicit_csv, 2)?.into_iter().map(|(_, fields)| fields[0].clone()).collect();
        Ok(UdsTable { expected, coverage, illicit })
    }

    /// Every analyte the ingredient may leave (parent and metabolites, minor ones included).
    pub fn analytes_of(&self, ingredient: &str) -> Vec<&ExpectedAnalyte> {
        self.analytes_of_slice(ingredient).iter().collect()
    }

    /// `analytes_of` without collecting: the table's own rows, empty for an ingredient it does not list.
    pub fn analytes_of_slice(&self, ingredient: &str) -> &[ExpectedAnalyte] {
        self.expected.get(ingredient).map(Vec::as_slice).unwrap_or_default()
    }

    pub fn is_confirmatory(assay: &str) -> bool {
        CONFIRMATORY_ASSAYS.contains(&assay)
    }

    /// How `assay` sees `analyte`, or `None` when it cannot see it.
    pub fn coverage_of(&self, assay: &str, analyte: &str) -> Option<Coverage> {
        if UdsTable::is_confirmatory(assay) {
            return Some(Coverage::Reliable);
        }
        self.coverage.get(assay).and_then(|analytes| analytes.get(analyte)).copied()
    }

    pub fn knows_assay(&self, assay: &str) -> bool {
        UdsTable::is_confirmatory(assay) || self.coverage.contains_key(assay)
    }
}

/// The table's lookups by hash. Its maps are B-trees keyed by strings, where one lookup costs about ten
/// string comparisons, and reading a result makes several per line. Built once for the embedded table
/// (`Lookup::embedded`), per interpretation for any other; it answers exactly what the maps answer.
pub(crate) struct Lookup<'t> {
    expected: HashMap<&'t str, &'t [ExpectedAnalyte], FastHash>,
    coverage: HashMap<&'t str, AssayCoverage<'t>, FastHash>,
    illicit: HashSet<&'t str, FastHash>,
    /// (assay, analyte) for every immunoassay row whose analyte is an ingredient the table lists.
    sees_listed: HashSet<(&'t str, &'t str), FastHash>,
}

/// What one immunoassay sees (`UdsTable::coverage` of the assay).
pub(crate) struct AssayCoverage<'t> {
    analytes: HashMap<&'t str, Coverage, FastHash>,
    /// It covers some analyte, and every analyte it covers is illicit.
    only_illicit: bool,
}

impl<'t> Lookup<'t> {
    pub fn new(table: &'t UdsTable) -> Lookup<'t> {
        let expected = table.expected.iter().map(|(ingredient, rows)| (ingredient.as_str(), rows.as_slice())).collect();
        let coverage = table
            .coverage
            .iter()
            .map(|(assay, analytes)| {
                let only_illicit = !analytes.is_empty() && analytes.keys().all(|a| table.illicit.contains(a));
                let analytes = analytes.iter().map(|(analyte, level)| (analyte.as_str(), *level)).collect();
                (assay.as_str(), AssayCoverage { analytes, only_illicit })
            })
            .collect();
        let illicit = table.illicit.iter().map(String::as_str).collect();
        let sees_listed = table
            .coverage
            .iter()
            .flat_map(|(assay, analytes)| analytes.keys().map(move |analyte| (assay.as_str(), analyte.as_str())))
            .filter(|(_, analyte)| table.expected.contains_key(*analyte))
            .collect();
        Lookup { expected, coverage, illicit, sees_listed }
    }

    /// The lookups of `UdsTable::embedded`, built once.
    pub fn embedded() -> &'static Lookup<'static> {
        static LOOKUP: OnceLock<Lookup<'static>> = OnceLock::new();
        LOOKUP.get_or_init(|| Lookup::new(UdsTable::embedded()))
    }

    /// `UdsTable::analytes_of_slice`.
    pub fn analytes_of(&self, ingredient: &str) -> &'t [ExpectedAnalyte] {
        self.expected.get(ingredient).copied().unwrap_or_default()
    }

    /// `analyte` is an ingredient the table lists, and `assay` sees it: a confirmatory method, or an
    /// immunoassay that covers it. One lookup for what the refill rule's shortcut asks of every line.
    pub fn sees_listed_ingredient(&self, assay: &str, analyte: &str) -> bool {
        if UdsTable::is_confirmatory(assay) {
            self.expected.contains_key(analyte)
        } else {
            self.sees_listed.contains(&(assay, analyte))
        }
    }

    /// `UdsTable::coverage` of an immunoassay.
    pub fn coverage(&self, assay: &str) -> Option<&AssayCoverage<'t>> {
        self.coverage.get(assay)
    }

    pub fn is_illicit(&self, analyte: &str) -> bool {
        self.illicit.contains(analyte)
    }

    /// `UdsTable::knows_assay`.
    pub fn knows_assay(&self, assay: &str) -> bool {
        UdsTable::is_confirmatory(assay) || self.coverage.contains_key(assay)
    }
}

impl AssayCoverage<'_> {
    pub fn get(&self, analyte: &str) -> Option<Coverage> {
        self.analytes.get(analyte).copied()
    }

    pub fn covers(&self, analyte: &str) -> bool {
        self.analytes.contains_key(analyte)
    }

    pub fn only_illicit(&self) -> bool {
        self.only_illicit
    }
}

/// The data rows of one CSV text with their 1-based line numbers, each with exactly `columns` fields.
fn rows(table: &'static str, text: &str, columns: usize) -> Result<Vec<(usize, Vec<String>)>, RulesError> {
    let mut out = Vec::new();
    let mut header_seen = false;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fields: Vec<String> = trimmed.splitn(columns, ',').map(|f| f.trim().to_lowercase()).collect();
        if fields.len() != columns || fields.iter().take(columns - 1).any(String::is_empty) {
            return Err(RulesError::Table {
                table,
                line,
                message: format!("expected {columns} comma-separated fields"),
            });
        }
        if !header_seen {
            header_seen = true;
            continue;
        }
        out.push((line, fields));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_table_parses_and_every_row_has_a_source() {
        let table = UdsTable::parse(EXPECTED_CSV, COVERAGE_CSV, ILLICIT_CSV).unwrap();
        for ingredient in [
            "codeine",
            "hydrocodone",
            "oxycodone",
            "morphine",
            "hydromorphone",
            "oxymorphone",
            "methadone",
            "fentanyl",
            "buprenorphine",
            "tramadol",
            "tapentadol",
        ] {
            let analytes = table.analytes_of(ingredient);
            assert!(analytes.iter().any(|a| a.relation == Relation::Parent), "{ingredient} has no parent row");
            assert!(analytes.iter().all(|a| !a.source.is_empty()), "{ingredient} has a row without a source");
        }
        assert!(table.illicit.contains("6-acetylmorphine"));
        assert!(table.illicit.contains("cocaine"));
    }

    #[test]
    fn the_opiates_immunoassay_does_not_see_synthetic_opioids() {
        let table = UdsTable::embedded();
        for unseen in ["oxycodone", "fentanyl", "methadone", "tramadol", "tapentadol", "buprenorphine"] {
            assert_eq!(table.coverage_of("opiates", unseen), None, "{unseen}");
        }
        assert_eq!(table.coverage_of("opiates", "morphine"), Some(Coverage::Reliable));
        assert_eq!(table.coverage_of("lcms", "anything"), Some(Coverage::Reliable));
    }

    #[test]
    fn the_lookup_answers_what_the_maps_answer() {
        let table = UdsTable::embedded();
        let lookup = Lookup::new(table);
        let mut assays: Vec<&str> = table.coverage.keys().map(String::as_str).collect();
        assays.extend(CONFIRMATORY_ASSAYS);
        assays.extend(["thc", "OPIATES", ""]);
        let mut names: Vec<&str> = table.expected.keys().map(String::as_str).collect();
        names.extend(table.coverage.values().flat_map(|analytes| analytes.keys().map(String::as_str)));
        names.extend(table.illicit.iter().map(String::as_str));
        names.extend(["gabapentin", "Oxycodone", ""]);
        for assay in &assays {
            assert_eq!(lookup.knows_assay(assay), table.knows_assay(assay), "{assay}");
            for name in &names {
                let listed_and_seen = table.expected.contains_key(*name)
                    && (UdsTable::is_confirmatory(assay)
                        || table.coverage.get(*assay).is_some_and(|sees| sees.contains_key(*name)));
                assert_eq!(lookup.sees_listed_ingredient(assay, name), listed_and_seen, "{assay} {name}");
                let covered = table.coverage.get(*assay).and_then(|sees| sees.get(*name)).copied();
                assert_eq!(lookup.coverage(assay).and_then(|sees| sees.get(name)), covered, "{assay} {name}");
            }
        }
        for name in &names {
            assert_eq!(lookup.is_illicit(name), table.illicit.contains(*name), "{name}");
            assert_eq!(lookup.analytes_of(name), table.analytes_of_slice(name), "{name}");
        }
    }

    #[test]
    fn malformed_rows_name_the_table_and_line() {
        let error =
            UdsTable::parse("ingredient,analyte,relation,source\ncodeine,morphine,child,x\n", "a,b,c,d\n", "a,b\n")
                .unwrap_err();
        assert_eq!(
            error,
            RulesError::Table {
                table: "uds-expected-analytes.csv",
                line: 2,
                message: "relation must be parent, metabolite or minor_metabolite, not \"child\"".to_string()
            }
        );
    }
}
