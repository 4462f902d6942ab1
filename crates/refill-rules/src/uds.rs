//! Urine drug screening: random but replayable scheduling by risk tier, and result interpretation
//! through an expected-analyte and assay-coverage table kept as data.
//!
//! Scheduling: one scheduled test per period, the period set by the patient's tier (policy defaults
//! for the physician to confirm: low 365 days, moderate 182, high 120, MME >= 90 or aberrant behaviour
//! 91; clinical-rules.md §4). The gap to the next test is drawn uniformly from a window centred on the
//! period, so the mean gap is the period and a tier tests as often as its policy says; the window never
//! ends more than 365 days after the last test (CDC 2016 Rec 10 "at least annually"), and where that
//! cap would make it narrower than `min_window_days` it ends at the cap and keeps that width (the low
//! tier then tests a little more than once a year, never less). No fixed interval exists anywhere, so
//! the date cannot be predicted.
//!
//! Interpretation: a presumptive (immunoassay) result never changes therapy on its own. Missing,
//! unexpected and illicit findings go to confirmation (GC/LC-MS) and physician review (CDC 2022 Rec 10).

mod schedule;
mod table;

use std::borrow::Cow;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

pub use schedule::{DrawnDate, SPLITMIX64_V1, SplitMix64, UdsSeed, draw_next_date, gap_window};
use table::AssayCoverage;
pub(crate) use table::Lookup;
pub use table::{CONFIRMATORY_ASSAYS, Coverage, ExpectedAnalyte, Relation, UdsTable};

use crate::facts::{RiskTier, UdsFacts, UdsResult};
use crate::text;

/// `[uds]` in config/policy.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UdsPolicy {
    /// Period (days) for the low tier. Default 365 (CDC 2016 Rec 10: at least annually).
    pub low_period_days: i64,
    /// Default 182 (AMDG "up to 2/yr", unverified: physician confirms).
    pub moderate_period_days: i64,
    /// Default 120 (AMDG "up to 3-4/yr", unverified: physician confirms).
    pub high_period_days: i64,
    /// Period when daily MME is at or above `high_mme_threshold` or aberrant behaviour is recorded.
    /// Default 91.
    pub high_mme_or_aberrant_period_days: i64,
    /// Default 90 MME/day.
    pub high_mme_threshold: f64,
    /// The earliest a scheduled test can fall after the last test. Default 30 days.
    pub min_gap_days: i64,
    /// Never more than this many days after the last test. Default 365 (the verified floor).
    pub max_gap_days: i64,
    /// The narrowest window a date is drawn from, so even the low tier (period 365 = the cap) is not
    /// predictable to the day. Default 43 days (about six weeks).
    pub min_window_days: i64,
}

impl UdsPolicy {
    pub fn defaults() -> UdsPolicy {
        UdsPolicy {
            low_period_days: 365,
            moderate_period_days: 182,
            high_period_days: 120,
            high_mme_or_aberrant_period_days: 91,
            high_mme_threshold: 90.0,
            min_gap_days: 30,
            max_gap_days: 365,
            min_window_days: 43,
        }
    }

    pub fn period_days(&self, tier: UdsTier) -> i64 {
        match tier {
            UdsTier::Low => self.low_period_days,
            UdsTier::Moderate => self.moderate_period_days,
            UdsTier::High => self.high_period_days,
            UdsTier::HighMmeOrAberrant => self.high_mme_or_aberrant_period_days,
        }
    }

    /// Checks a policy a physician typed: the reasons it cannot be used, empty when it is fine.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=365).contains(&self.max_gap_days) {
            problems.push(format!("uds.max_gap_days must be 1..=365 (at least annually), not {}", self.max_gap_days));
        }
        for tier in UdsTier::ALL {
            let days = self.period_days(tier);
            if days < self.min_gap_days || days > self.max_gap_days {
                problems.push(format!(
                    "uds.{}_period_days must be between min_gap_days ({}) and max_gap_days ({}), not {days}",
                    tier.as_str(),
                    self.min_gap_days,
                    self.max_gap_days
                ));
            }
        }
        if self.min_gap_days < 1 {
            problems.push(format!("uds.min_gap_days must be at least 1, not {}", self.min_gap_days));
        }
        if self.min_window_days < 1 || self.min_window_days > self.max_gap_days - self.min_gap_days + 1 {
            problems.push(format!(
                "uds.min_window_days must be 1..={} (the days between min_gap_days and max_gap_days), not {}",
                self.max_gap_days - self.min_gap_days + 1,
                self.min_window_days
            ));
        }
        if self.high_mme_threshold.is_nan() || self.high_mme_threshold <= 0.0 {
            problems.push(format!("uds.high_mme_threshold must be positive, not {}", self.high_mme_threshold));
        }
        problems
    }
}

impl Default for UdsPolicy {
    fn default() -> Self {
        UdsPolicy::defaults()
    }
}

/// The testing tier: the risk tier, raised by high MME or aberrant behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UdsTier {
    Low,
    Moderate,
    High,
    HighMmeOrAberrant,
}

impl UdsTier {
    pub const ALL: [UdsTier; 4] = [UdsTier::Low, UdsTier::Moderate, UdsTier::High, UdsTier::HighMmeOrAberrant];

    pub fn as_str(self) -> &'static str {
        match self {
            UdsTier::Low => "low",
            UdsTier::Moderate => "moderate",
            UdsTier::High => "high",
            UdsTier::HighMmeOrAberrant => "high_mme_or_aberrant",
        }
    }

    pub fn parse(text: &str) -> Option<UdsTier> {
        UdsTier::ALL.into_iter().find(|tier| tier.as_str() == text)
    }
}

/// The tier for a patient: an undetermined MME does not lower the tier, it just does not raise it.
pub fn uds_tier(risk: RiskTier, daily_mme: Option<f64>, aberrant_behaviour: bool, policy: &UdsPolicy) -> UdsTier {
    let high_mme = daily_mme.is_some_and(|mme| mme >= policy.high_mme_threshold);
    if aberrant_behaviour || high_mme {
        return UdsTier::HighMmeOrAberrant;
    }
    match risk {
        RiskTier::Low => UdsTier::Low,
        RiskTier::Moderate => UdsTier::Moderate,
        RiskTier::High => UdsTier::High,
    }
}

/// Whether the drawn scheduled date has passed with no test collected on or after it. The refill rule
/// asks only this; it never applies a fixed interval of its own.
pub fn scheduled_test_missed(uds: &UdsFacts, today: NaiveDate) -> bool {
    match uds.scheduled_due {
        Some(due) => due < today && !uds.results.iter().any(|r| r.collected_on >= due),
        None => false,
    }
}

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
    /// A prescribed parent found while the metabolite the body always makes from it was tested and
    /// absent: methadone without EDDP suggests methadone added to the specimen rather than taken
    /// (possible adulteration), so it goes to confirmation and review, never read as consistent.
    ParentWithoutMetabolite,
}

impl AnalyteFinding {
    pub fn as_str(self) -> &'static str {
        match self {
            AnalyteFinding::Expected => "expected",
            AnalyteFinding::Missing => "missing",
            AnalyteFinding::NotTested => "not_tested",
            AnalyteFinding::Unexpected => "unexpected",
            AnalyteFinding::Illicit => "illicit",
            AnalyteFinding::ParentWithoutMetabolite => "parent_without_metabolite",
        }
    }

    /// Missing, unexpected and illicit need confirmation and physician review.
    pub fn needs_review(self) -> bool {
        matches!(
            self,
            AnalyteFinding::Missing
                | AnalyteFinding::Unexpected
                | AnalyteFinding::Illicit
                | AnalyteFinding::ParentWithoutMetabolite
        )
    }
}

/// Whether a finding is about a reported analyte or about a prescribed ingredient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FindingSubject {
    /// A positive analyte (or class result) in the report.
    ReportedAnalyte,
    /// A prescribed ingredient: found, missing or not tested.
    PrescribedIngredient,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AnalyteInterpretation {
    /// The analyte or prescribed ingredient the finding is about.
    pub substance: String,
    pub finding: AnalyteFinding,
    pub subject: FindingSubject,
    /// The assay line(s) the finding rests on (empty for "not tested").
    pub assays: Vec<String>,
    /// Why, in words a physician can check against the table.
    pub explanation: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UdsInterpretation {
    pub findings: Vec<AnalyteInterpretation>,
    /// The result was confirmatory (GC/LC-MS); otherwise every flagged finding needs confirmation first.
    pub confirmatory: bool,
    /// Assays the table does not know: their negatives prove nothing.
    pub unknown_assays: Vec<String>,
}

impl UdsInterpretation {
    /// Missing, unexpected and illicit findings go to confirmation and physician review.
    pub fn needs_review(&self) -> bool {
        self.findings.iter().any(|f| f.finding.needs_review())
    }

    /// Flagged findings on a presumptive result: order GC/LC-MS confirmation before anything else.
    pub fn needs_confirmation(&self) -> bool {
        self.needs_review() && !self.confirmatory
    }

    pub fn flagged(&self) -> impl Iterator<Item = &AnalyteInterpretation> {
        self.findings.iter().filter(|f| f.finding.needs_review())
    }
}

/// Common spellings laboratories use, mapped to the names in the table. Borrows the name when it is
/// already canonical (trimmed, lower case, not an alias), which is what laboratories usually send.
fn canonical_analyte(name: &str) -> Cow<'_, str> {
    let lower = text::lower_case(text::trim(name));
    let alias = match lower.as_ref() {
        "6-am" | "6-mam" | "6am" | "6-monoacetylmorphine" => "6-acetylmorphine",
        "o-dsmt" | "odt" | "o-desmethyl tramadol" => "o-desmethyltramadol",
        "pcp" => "phencyclidine",
        // BZO is the benzodiazepines channel on point-of-care cups (BZE is benzoylecgonine).
        "bze" | "benzoylecgonine (cocaine metabolite)" => "benzoylecgonine",
        "bzo" | "bzd" | "benzodiazepine" | "benzos" => "benzodiazepines",
        "alpha-oh-alprazolam" | "a-hydroxyalprazolam" | "α-hydroxyalprazolam" | "alpha hydroxyalprazolam" => {
            "alpha-hydroxyalprazolam"
        }
        "7-amino-clonazepam" | "7-amino clonazepam" => "7-aminoclonazepam",
        "nordazepam" | "desmethyldiazepam" | "n-desmethyldiazepam" => "nordiazepam",
        "2-ethylidene-1,5-dimethyl-3,3-diphenylpyrrolidine" => "eddp",
        "opiate" => "opiates",
        // Point-of-care cup channel names.
        "amp" | "amphetamine screen" => "amphetamines",
        "mamp" | "met" | "meth" => "methamphetamine",
        "mtd" => "methadone",
        "oxy" => "oxycodone",
        "bup" => "buprenorphine",
        "fyl" | "fen" => "fentanyl",
        "mor" | "mor300" => "morphine",
        "hcd" => "hydrocodone",
        "hmo" => "hydromorphone",
        _ => return lower,
    };
    Cow::Borrowed(alias)
}

/// A prescribed ingredient as the table spells it: trimmed and lower case.
fn prescribed_name(ingredient: &str) -> Cow<'_, str> {
    text::lower_case(text::trim(ingredient))
}

/// Interpret one result against the prescribed opioid ingredients (lower-case generic names), with the
/// embedded table.
pub fn interpret(result: &UdsResult, prescribed_ingredients: &[&str]) -> UdsInterpretation {
    interpret_with(UdsTable::embedded(), result, prescribed_ingredients)
}

/// A result line as the table sees it: which analytes a positive could be, which a negative rules out.
struct Line<'a> {
    assay: Cow<'a, str>,
    analyte: Cow<'a, str>,
    detected: bool,
    seen: Seen<'a>,
}

/// What a line can tell: about its named analyte only, or (a class result) about everything the assay
/// covers.
enum Seen<'a> {
    /// A positive is the named analyte; a negative rules it out when `negative_rules_out`.
    Named { negative_rules_out: bool },
    /// A positive may be any analyte the assay covers; a negative rules out those it sees reliably.
    Class(&'a AssayCoverage<'a>),
}

impl Line<'_> {
    /// A positive on this line may be `analyte`.
    fn could_be(&self, analyte: &str) -> bool {
        match self.seen {
            Seen::Named { .. } => self.analyte == analyte,
            Seen::Class(covered) => covered.covers(analyte),
        }
    }

    /// A negative on this line rules `analyte` out.
    fn rules_out(&self, analyte: &str) -> bool {
        match self.seen {
            Seen::Named { negative_rules_out } => negative_rules_out && self.analyte == analyte,
            Seen::Class(covered) => covered.get(analyte) == Some(Coverage::Reliable),
        }
    }

    /// Everything a positive could be is illicit (and it could be something).
    fn only_illicit(&self, lookup: &Lookup) -> bool {
        match self.seen {
            Seen::Named { .. } => lookup.is_illicit(&self.analyte),
            Seen::Class(covered) => covered.only_illicit(),
        }
    }
}

fn read_line<'a>(lookup: &'a Lookup<'a>, assay: &'a str, analyte: &'a str, detected: bool) -> Line<'a> {
    let assay = canonical_analyte(assay);
    let analyte = canonical_analyte(analyte);
    let seen = if UdsTable::is_confirmatory(&assay) {
        Seen::Named { negative_rules_out: true }
    } else if let Some(covered) = lookup.coverage(&assay) {
        let class_result = analyte == assay;
        match (class_result, covered.get(&analyte)) {
            // A named analyte on an immunoassay channel that covers it.
            (false, Some(level)) => Seen::Named { negative_rules_out: level == Coverage::Reliable },
            // A class result (`opiates` positive, or a channel reported under the assay's own name such
            // as `oxycodone`): any analyte the assay covers.
            _ => Seen::Class(covered),
        }
    } else {
        // Unknown assay: trust the analyte name for a positive; a negative proves nothing.
        Seen::Named { negative_rules_out: false }
    };
    Line { assay, analyte, detected, seen }
}

fn read_lines<'a>(lookup: &'a Lookup<'a>, result: &'a UdsResult) -> Vec<Line<'a>> {
    result.analytes.iter().map(|a| read_line(lookup, &a.assay, &a.analyte, a.detected)).collect()
}

/// What a positive line means: explained by a prescribed ingredient (which one, through which analyte),
/// illicit, or unexpected.
enum Reported<'p, 't> {
    Explained { ingredient: Cow<'p, str>, analyte: &'t str },
    Illicit,
    Unexpected,
}

fn reported<'p, 't>(lookup: &Lookup<'t>, prescribed: &'p [impl AsRef<str>], line: &Line) -> Reported<'p, 't> {
    for ingredient in prescribed.iter().map(|p| prescribed_name(p.as_ref())) {
        if let Some(expected) = lookup.analytes_of(&ingredient).iter().find(|e| line.could_be(&e.analyte)) {
            return Reported::Explained { ingredient, analyte: &expected.analyte };
        }
    }
    if line.only_illicit(lookup) { Reported::Illicit } else { Reported::Unexpected }
}

impl Reported<'_, '_> {
    fn finding(&self) -> AnalyteFinding {
        match self {
            Reported::Explained { .. } => AnalyteFinding::Expected,
            Reported::Illicit => AnalyteFinding::Illicit,
            Reported::Unexpected => AnalyteFinding::Unexpected,
        }
    }

    fn explanation(&self) -> String {
        match self {
            Reported::Explained { ingredient, analyte } => format!("explained by prescribed {ingredient} ({analyte})"),
            Reported::Illicit => "illicit whatever is prescribed".to_string(),
            Reported::Unexpected => "not prescribed and not a metabolite of anything prescribed".to_string(),
        }
    }
}

/// A positive line that shows the ingredient is taken. Only the parent and main metabolites count
/// either way: a minor metabolite alone (hydromorphone for morphine) does not show the prescribed drug
/// is taken, and its absence means nothing.
fn shows_taken(line: &Line, analytes: &[ExpectedAnalyte]) -> bool {
    line.detected && analytes.iter().any(|a| a.relation != Relation::MinorMetabolite && line.could_be(&a.analyte))
}

/// A negative line that would have seen the ingredient.
fn shows_absent(line: &Line, analytes: &[ExpectedAnalyte]) -> bool {
    !line.detected && analytes.iter().any(|a| a.relation != Relation::MinorMetabolite && line.rules_out(&a.analyte))
}

/// Parents whose main metabolite is always present in urine when the drug is taken (rather than added
/// to the specimen): methadone and EDDP (Milone 2012; the methadone row of the expected-analyte table).
const METABOLITE_REQUIRED: [(&str, &str); 1] = [("methadone", "eddp")];

/// The parent is found and its required metabolite was tested (by a line that rules it out) and absent.
fn parent_without_metabolite(lines: &[Line], ingredient: &str) -> bool {
    let Some((_, metabolite)) = METABOLITE_REQUIRED.iter().find(|(parent, _)| *parent == ingredient) else {
        return false;
    };
    let parent_found = lines.iter().any(|line| line.detected && line.could_be(ingredient));
    let metabolite_found = lines.iter().any(|line| line.detected && line.could_be(metabolite));
    let metabolite_ruled_out = lines.iter().any(|line| !line.detected && line.rules_out(metabolite));
    parent_found && !metabolite_found && metabolite_ruled_out
}

/// The finding about one prescribed ingredient: found, missing or not tested (and why not tested).
fn prescribed_finding(lines: &[Line], ingredient: &str, analytes: &[ExpectedAnalyte]) -> AnalyteFinding {
    if lines.iter().any(|line| shows_taken(line, analytes)) {
        if parent_without_metabolite(lines, ingredient) {
            AnalyteFinding::ParentWithoutMetabolite
        } else {
            AnalyteFinding::Expected
        }
    } else if analytes.is_empty() {
        AnalyteFinding::NotTested
    } else if lines.iter().any(|line| shows_absent(line, analytes)) {
        AnalyteFinding::Missing
    } else {
        AnalyteFinding::NotTested
    }
}

/// `interpret` with an explicit table (tests, or a clinic-specific table).
pub fn interpret_with(table: &UdsTable, result: &UdsResult, prescribed_ingredients: &[&str]) -> UdsInterpretation {
    if std::ptr::eq(table, UdsTable::embedded()) {
        interpret_by(Lookup::embedded(), result, prescribed_ingredients)
    } else {
        interpret_by(&Lookup::new(table), result, prescribed_ingredients)
    }
}

fn interpret_by(lookup: &Lookup, result: &UdsResult, prescribed_ingredients: &[&str]) -> UdsInterpretation {
    let lines = read_lines(lookup, result);
    let mut unknown_assays: Vec<String> =
        lines.iter().filter(|line| !lookup.knows_assay(&line.assay)).map(|line| line.assay.to_string()).collect();
    unknown_assays.sort();
    unknown_assays.dedup();

    let mut findings = Vec::new();
    for line in lines.iter().filter(|line| line.detected) {
        let reported = reported(lookup, prescribed_ingredients, line);
        findings.push(AnalyteInterpretation {
            substance: line.analyte.to_string(),
            finding: reported.finding(),
            subject: FindingSubject::ReportedAnalyte,
            assays: vec![line.assay.to_string()],
            explanation: reported.explanation(),
        });
    }

    for ingredient in prescribed_ingredients.iter().copied().map(prescribed_name) {
        let analytes = lookup.analytes_of(&ingredient);
        let finding = prescribed_finding(&lines, &ingredient, analytes);
        let found = || lines.iter().filter(|line| shows_taken(line, analytes));
        let (mut assays, explanation): (Vec<String>, String) = match finding {
            AnalyteFinding::Expected => (
                found().map(|l| l.assay.to_string()).collect(),
                format!("found as {}", found().map(|l| l.analyte.as_ref()).collect::<Vec<_>>().join(", ")),
            ),
            AnalyteFinding::Missing => (
                lines.iter().filter(|line| shows_absent(line, analytes)).map(|l| l.assay.to_string()).collect(),
                "prescribed, detectable by the assay, and absent".to_string(),
            ),
            AnalyteFinding::ParentWithoutMetabolite => (
                found().map(|l| l.assay.to_string()).collect(),
                "found without the metabolite the body makes from it (tested and absent): confirm and review \
                 for a specimen the drug was added to"
                    .to_string(),
            ),
            _ if analytes.is_empty() => {
                (Vec::new(), "no expected analytes in the table for this ingredient".to_string())
            }
            _ => (Vec::new(), "no assay in this result can see it".to_string()),
        };
        assays.dedup();
        findings.push(AnalyteInterpretation {
            substance: ingredient.into_owned(),
            finding,
            subject: FindingSubject::PrescribedIngredient,
            assays,
            explanation,
        });
    }

    UdsInterpretation { findings, confirmatory: result.confirmatory, unknown_assays }
}

/// The findings of `interpret` that need review, as `substance: finding` joined by `; ` (the evidence
/// the refill rule records), or `None` when nothing needs review. The same reading as `interpret`
/// without its assay lists and explanations, which the refill rule does not record.
pub(crate) fn flagged_findings(result: &UdsResult, prescribed_ingredients: &[impl AsRef<str>]) -> Option<String> {
    let lookup = Lookup::embedded();
    let lines = read_lines(lookup, result);
    let mut flagged: Option<String> = None;
    let mut flag = |substance: &str, finding: AnalyteFinding| {
        if finding.needs_review() {
            let text = flagged.get_or_insert_with(String::new);
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str(substance);
            text.push_str(": ");
            text.push_str(finding.as_str());
        }
    };
    for line in lines.iter().filter(|line| line.detected) {
        flag(&line.analyte, reported(lookup, prescribed_ingredients, line).finding());
    }
    for ingredient in prescribed_ingredients.iter().map(|p| prescribed_name(p.as_ref())) {
        flag(&ingredient, prescribed_finding(&lines, &ingredient, lookup.analytes_of(&ingredient)));
    }
    flagged
}

/// The prescribed ingredients (of those given) that the table lists but no line of this result can
/// see: the result cannot show whether they are taken, so silence is not consistency and a definitive
/// (LC-MS/MS) test is needed. Each once, in the order given.
pub(crate) fn not_tested(result: &UdsResult, prescribed_ingredients: &[impl AsRef<str>]) -> Vec<String> {
    let lookup = Lookup::embedded();
    // The usual result names each prescribed opioid on an assay that sees it: nothing to read further.
    let named_and_seen = |ingredient: &str| {
        result
            .analytes
            .iter()
            .any(|line| line.analyte == ingredient && lookup.sees_listed_ingredient(&line.assay, ingredient))
    };
    if prescribed_ingredients.iter().all(|p| named_and_seen(p.as_ref())) {
        return Vec::new();
    }
    let lines = read_lines(lookup, result);
    let mut names: Vec<String> = Vec::new();
    for ingredient in prescribed_ingredients.iter().map(|p| prescribed_name(p.as_ref())) {
        let analytes = lookup.analytes_of(&ingredient);
        if !analytes.is_empty()
            && prescribed_finding(&lines, &ingredient, analytes) == AnalyteFinding::NotTested
            && !names.iter().any(|name| *name == ingredient)
        {
            names.push(ingredient.into_owned());
        }
    }
    names
}

#[cfg(test)]
mod tests;
