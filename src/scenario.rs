//! Scenario files: one patient's facts, history, clinic roster and refill request in TOML, with optional
//! policy overrides and the expected decision. `refill explain` evaluates one; tests/scenarios.rs runs
//! them all. The format is documented in tests/scenarios/README.md.
//!
//! Parsing is strict (unknown keys are errors, with line and column) so a misspelt fact cannot
//! silently drop out of a test.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use chrono::NaiveDate;
use refill_rules::decision::{self as f_decision, Decision, Outcome, ReasonCode, Task};
use refill_rules::facts as f;
use refill_rules::policy::Policy;
use serde::Deserialize;

use crate::policy_file::{self, LoadedPolicy};

/// A loaded scenario, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub path: Option<PathBuf>,
    pub description: Option<String>,
    pub facts: f::PatientFacts,
    pub clinic: f::ClinicFacts,
    pub request: f::RefillRequest,
    /// `[cycle] today`: decide the patient's refill cycle on this date (`refill_rules::cycle::decide`)
    /// instead of the request alone; `[request]` is then a recorded request.
    pub cycle_today: Option<NaiveDate>,
    pub policy: LoadedPolicy,
    pub expect: Option<Expectation>,
}

/// `[expect]`: what the decision must be. Lists are compared as multisets (order does not matter).
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    pub outcome: Outcome,
    pub reasons: Vec<ReasonCode>,
    pub tasks: Option<Vec<Task>>,
    pub eligible_on: Option<NaiveDate>,
    pub total_daily_mme: Option<ExpectedTotal>,
    pub restricted: Option<Vec<ReasonCode>>,
    /// `open`, `not_due` or `prepared` (cycle scenarios).
    pub window: Option<f_decision::RefillWindow>,
    /// Exactly these codes covered by the standing physician decision.
    pub covered: Option<Vec<ReasonCode>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExpectedTotal {
    Value(f64),
    /// `no_total_daily_mme = true`: the total is null (undetermined or excluded products only).
    Null,
}

impl Scenario {
    pub fn evaluate(&self) -> Decision {
        match self.cycle_today {
            Some(today) => {
                refill_rules::cycle::decide(&self.facts, &self.clinic, today, &self.policy.policy, &self.policy.version)
            }
            None => refill_rules::refill::evaluate(
                &self.facts,
                &self.clinic,
                &self.request,
                &self.policy.policy,
                &self.policy.version,
            ),
        }
    }

    /// Every way `decision` differs from `[expect]` (empty when it matches or nothing is expected).
    pub fn mismatches(&self, decision: &Decision) -> Vec<String> {
        let Some(expect) = &self.expect else { return Vec::new() };
        let mut problems = Vec::new();
        if decision.outcome != expect.outcome {
            problems.push(format!("outcome {} (expected {})", decision.outcome.as_str(), expect.outcome.as_str()));
        }
        let mut actual: Vec<&str> = decision.reasons.iter().map(|r| r.code.as_str()).collect();
        let mut wanted: Vec<&str> = expect.reasons.iter().map(|c| c.as_str()).collect();
        actual.sort_unstable();
        wanted.sort_unstable();
        if actual != wanted {
            problems.push(format!("reasons [{}] (expected [{}])", actual.join(", "), wanted.join(", ")));
        }
        if let Some(tasks) = &expect.tasks {
            let mut actual: Vec<&str> = decision.tasks.iter().map(|t| t.as_str()).collect();
            let mut wanted: Vec<&str> = tasks.iter().map(|t| t.as_str()).collect();
            actual.sort_unstable();
            wanted.sort_unstable();
            if actual != wanted {
                problems.push(format!("tasks [{}] (expected [{}])", actual.join(", "), wanted.join(", ")));
            }
        }
        if let Some(eligible_on) = expect.eligible_on
            && decision.eligible_on != Some(eligible_on)
        {
            problems.push(format!("eligible_on {:?} (expected {eligible_on})", decision.eligible_on));
        }
        match (expect.total_daily_mme, decision.total_daily_mme) {
            (None, _) | (Some(ExpectedTotal::Null), None) => {}
            (Some(ExpectedTotal::Value(wanted)), Some(actual)) if (wanted - actual).abs() <= 0.01 => {}
            (Some(wanted), actual) => problems.push(format!("total_daily_mme {actual:?} (expected {wanted:?})")),
        }
        if let Some(restricted) = &expect.restricted {
            let mut actual: Vec<&str> =
                decision.reasons.iter().filter(|r| r.restricted).map(|r| r.code.as_str()).collect();
            let mut wanted: Vec<&str> = restricted.iter().map(|c| c.as_str()).collect();
            actual.sort_unstable();
            wanted.sort_unstable();
            if actual != wanted {
                problems.push(format!("restricted [{}] (expected [{}])", actual.join(", "), wanted.join(", ")));
            }
        }
        if let Some(window) = expect.window
            && decision.window != window
        {
            problems.push(format!("window {} (expected {})", decision.window.as_str(), window.as_str()));
        }
        if let Some(covered) = &expect.covered {
            let mut actual: Vec<&str> = decision.covered.iter().map(|r| r.code.as_str()).collect();
            let mut wanted: Vec<&str> = covered.iter().map(|c| c.as_str()).collect();
            actual.sort_unstable();
            wanted.sort_unstable();
            if actual != wanted {
                problems.push(format!("covered [{}] (expected [{}])", actual.join(", "), wanted.join(", ")));
            }
        }
        problems
    }
}

/// Load a scenario file on the built-in default policy.
pub fn load_scenario(path: &Path) -> anyhow::Result<Scenario> {
    load_scenario_with(path, &Policy::defaults())
}

/// Load a scenario file; its `[policy]` overrides apply on top of `base`.
pub fn load_scenario_with(path: &Path, base: &Policy) -> anyhow::Result<Scenario> {
    let text = std::fs::read_to_string(path).with_context(|| format!("could not read scenario {}", path.display()))?;
    let file: ScenarioFile =
        toml::from_str(&text).map_err(|e| crate::file_error::toml(&path.display().to_string(), &text, &e))?;
    let mut scenario = file.into_scenario(base).with_context(|| format!("scenario {}", path.display()))?;
    scenario.path = Some(path.to_path_buf());
    Ok(scenario)
}

/// Parse scenario text.
pub fn parse_scenario(text: &str, base: &Policy) -> anyhow::Result<Scenario> {
    let file: ScenarioFile = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
    file.into_scenario(base)
}

// ------------------------------------------------------------------------------------------------
// The file format (serde mirrors of the domain facts, which stay serde-free).

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    description: Option<String>,
    #[serde(default)]
    patient: PatientSection,
    #[serde(default)]
    regimen: Vec<OrderSection>,
    #[serde(default)]
    fills: Vec<FillSection>,
    #[serde(default)]
    uds: UdsSection,
    #[serde(default)]
    pdmp_reviews: Vec<PdmpReviewSection>,
    agreement: Option<AgreementSection>,
    #[serde(default)]
    physician_reviews: Vec<ReviewSection>,
    #[serde(default)]
    naloxone: Vec<NaloxoneSection>,
    #[serde(default)]
    flags: Vec<FlagSection>,
    #[serde(default)]
    other_medications: Vec<OtherMedicationSection>,
    taper: Option<TaperSection>,
    last_decision: Option<LastDecisionSection>,
    /// Opioid orders no longer active (placed in time by fills with their `order_id`).
    #[serde(default)]
    past_orders: Vec<OrderSection>,
    /// Dates the patient reported a supply lost or stolen.
    #[serde(default)]
    lost_or_stolen_reports: Vec<Date>,
    /// Dates of refill requests made before the refill window opened.
    #[serde(default)]
    early_requests: Vec<Date>,
    #[serde(default)]
    patient_statements: Vec<StatementSection>,
    #[serde(default)]
    clinic: ClinicSection,
    /// Required, except in a `[cycle]` scenario where it is the recorded request (if any).
    request: Option<RequestSection>,
    cycle: Option<CycleSection>,
    standing: Option<StandingSection>,
    policy: Option<toml::Table>,
    expect: Option<ExpectSection>,
}

/// `[cycle]`: decide the refill cycle on `today` (the daily run, a staff action and a signature do).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CycleSection {
    today: Date,
    /// The clinic date staff prepared a refill no dispense has answered yet.
    prepared_on: Option<Date>,
}

/// `[standing]`: a physician decision signed on `signed_on`, covering the reasons with these codes as
/// they fired that day.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StandingSection {
    choice: ChoiceName,
    signed_on: Date,
    #[serde(default = "default_signer")]
    signed_by: String,
    bridge_days: Option<u32>,
    review_by: Option<Date>,
    /// Default: the latest fill on or before `signed_on`.
    latest_fill_seen: Option<Date>,
    #[serde(default)]
    covered: Vec<String>,
}

fn default_signer() -> String {
    "dr-supervising".to_string()
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ChoiceName {
    Approve,
    Bridge,
    Taper,
    Hold,
    Stop,
}

/// A date written either as a TOML date (`2026-01-27`) or a string (`"2026-01-27"`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Date(NaiveDate);

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Toml(toml::value::Datetime),
        }
        let text = match Raw::deserialize(deserializer)? {
            Raw::Text(text) => text,
            Raw::Toml(datetime) => datetime.to_string(),
        };
        NaiveDate::parse_from_str(&text, "%Y-%m-%d")
            .map(Date)
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a date (YYYY-MM-DD)")))
    }
}

fn date(value: Option<Date>) -> Option<NaiveDate> {
    value.map(|d| d.0)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatientSection {
    #[serde(default = "default_patient_id")]
    id: i64,
    birth_date: Option<Date>,
    #[serde(default)]
    sex: SexName,
    #[serde(default)]
    risk_tier: RiskTierName,
    prescriber_of_record: Option<String>,
    /// The prescriber a new or transferred patient came from.
    previous_prescriber: Option<String>,
}

impl Default for PatientSection {
    fn default() -> Self {
        PatientSection {
            id: default_patient_id(),
            birth_date: None,
            sex: SexName::Unknown,
            risk_tier: RiskTierName::Moderate,
            prescriber_of_record: None,
            previous_prescriber: None,
        }
    }
}

fn default_patient_id() -> i64 {
    1
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SexName {
    Female,
    Male,
    Other,
    #[default]
    Unknown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RiskTierName {
    Low,
    #[default]
    Moderate,
    High,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderSection {
    id: Option<String>,
    rxcui: Option<String>,
    text: Option<String>,
    dose: Option<f64>,
    /// tablet, capsule, patch, film, spray, unit (dose-form units); mg; mcg; ml. Anything else (or no
    /// unit with a dose) is unusable and makes the MME undetermined.
    unit: Option<String>,
    doses_per_day: Option<f64>,
    days_supply: Option<u32>,
    dispense_quantity: Option<f64>,
    prescriber: Option<String>,
    #[serde(default)]
    purpose: PurposeName,
    #[serde(default)]
    part2: bool,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PurposeName {
    #[default]
    Pain,
    Oud,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FillSection {
    filled_on: Date,
    days_supply: u32,
    order_id: Option<String>,
    quantity: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UdsSection {
    scheduled_due: Option<Date>,
    for_cause_due: Option<Date>,
    #[serde(default)]
    results: Vec<UdsResultSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UdsResultSection {
    collected_on: Date,
    #[serde(default)]
    kind: UdsKindName,
    #[serde(default)]
    confirmatory: bool,
    #[serde(default)]
    analytes: Vec<AnalyteSection>,
    physician_reviewed_on: Option<Date>,
    #[serde(default)]
    part2: bool,
    /// not_reported (default) | valid | dilute | invalid.
    #[serde(default)]
    specimen_validity: ValidityName,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ValidityName {
    #[default]
    NotReported,
    Valid,
    Dilute,
    Invalid,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementSection {
    recorded_on: Date,
    text: String,
    #[serde(default)]
    part2: bool,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum UdsKindName {
    #[default]
    Scheduled,
    ForCause,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnalyteSection {
    assay: String,
    analyte: String,
    detected: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PdmpReviewSection {
    reviewed_on: Date,
    #[serde(default)]
    findings: Vec<PdmpFindingSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PdmpFindingSection {
    prescriber: String,
    class: DrugClassName,
    filled_on: Date,
    /// The product dispensed (RxNorm-style text), its code, units and days supplied.
    product: Option<String>,
    rxcui: Option<String>,
    quantity: Option<f64>,
    days_supply: Option<u32>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum DrugClassName {
    Opioid,
    Benzodiazepine,
    OtherControlled,
    OudTreatment,
}

impl DrugClassName {
    fn class(self) -> f::DrugClass {
        match self {
            DrugClassName::Opioid => f::DrugClass::Opioid,
            DrugClassName::Benzodiazepine => f::DrugClass::Benzodiazepine,
            DrugClassName::OtherControlled => f::DrugClass::OtherControlled,
            DrugClassName::OudTreatment => f::DrugClass::OudTreatment,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgreementSection {
    signed_on: Date,
    prescriber_of_record: String,
    #[serde(default = "default_text_version")]
    text_version: String,
    #[serde(default)]
    elements: Vec<String>,
    voided_on: Option<Date>,
}

fn default_text_version() -> String {
    "v1".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewSection {
    reviewed_on: Date,
    physician: Option<String>,
    kind: ReviewKindName,
    /// The outside prescriber acknowledged (for `outside_prescriber_acknowledged`).
    prescriber: Option<String>,
    /// With `prescriber`: only this class of the prescriber's prescribing is acknowledged.
    class: Option<DrugClassName>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ReviewKindName {
    BenefitRisk,
    BenzodiazepineAcknowledged,
    OutsidePrescriberAcknowledged,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NaloxoneSection {
    on: Date,
    kind: NaloxoneKindName,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum NaloxoneKindName {
    Offered,
    Declined,
    Dispensed,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlagSection {
    kind: FlagKindName,
    recorded_on: Date,
    #[serde(default)]
    part2: bool,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FlagKindName {
    OverdoseHistory,
    SubstanceUseDisorderHistory,
    SleepDisorderedBreathing,
    Cancer,
    SickleCell,
    Palliative,
    EndOfLife,
    OverdoseOrSedationSignal,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtherMedicationSection {
    class: OtherClassName,
    text: String,
    started_on: Option<Date>,
    #[serde(default = "default_true")]
    active: bool,
    #[serde(default)]
    part2: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum OtherClassName {
    Benzodiazepine,
    OudTreatment,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaperSection {
    #[serde(default = "default_plan_id")]
    plan_id: i64,
    state: TaperStateName,
    started_on: Date,
    step_started_on: Date,
    #[serde(default)]
    step_regimen: Vec<OrderSection>,
    /// The next signed step, not started yet.
    next_step: Option<NextStepSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NextStepSection {
    starts_on: Date,
    #[serde(default)]
    regimen: Vec<OrderSection>,
}

fn default_plan_id() -> i64 {
    1
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum TaperStateName {
    Active,
    Paused,
    Completed,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LastDecisionSection {
    decided_on: Date,
    total_daily_mme: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClinicSection {
    #[serde(default)]
    roster: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestSection {
    date: Date,
    #[serde(default)]
    kind: RequestKindName,
    /// Defaults to the regimen of record.
    regimen: Option<Vec<OrderSection>>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RequestKindName {
    #[default]
    Routine,
    Early,
    LostOrStolenReplacement,
    DoseChange,
}

impl RequestKindName {
    fn kind(self) -> f::RequestKind {
        match self {
            RequestKindName::Routine => f::RequestKind::Routine,
            RequestKindName::Early => f::RequestKind::Early,
            RequestKindName::LostOrStolenReplacement => f::RequestKind::LostOrStolenReplacement,
            RequestKindName::DoseChange => f::RequestKind::DoseChange,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSection {
    outcome: String,
    #[serde(default)]
    reasons: Vec<String>,
    tasks: Option<Vec<String>>,
    eligible_on: Option<Date>,
    total_daily_mme: Option<f64>,
    #[serde(default)]
    no_total_daily_mme: bool,
    restricted: Option<Vec<String>>,
    window: Option<String>,
    covered: Option<Vec<String>>,
}

fn prescriber(id: &str) -> f::PrescriberId {
    f::PrescriberId(id.to_string())
}

fn confidentiality(part2: bool) -> f::Confidentiality {
    if part2 { f::Confidentiality::Part2 } else { f::Confidentiality::Normal }
}

fn dose_unit(unit: Option<&str>) -> f::DoseUnit {
    let Some(unit) = unit else { return f::DoseUnit::Unusable(String::new()) };
    match unit.trim().to_ascii_lowercase().as_str() {
        "mg" => f::DoseUnit::Milligram,
        "mcg" | "ug" => f::DoseUnit::Microgram,
        "ml" => f::DoseUnit::Milliliter,
        "tablet" | "tablets" | "capsule" | "capsules" | "patch" | "patches" | "film" | "films" | "spray" | "sprays"
        | "unit" | "units" | "suppository" | "lozenge" => f::DoseUnit::DoseFormUnit,
        _ => f::DoseUnit::Unusable(unit.to_string()),
    }
}

fn order(section: &OrderSection, index: usize, prefix: &str) -> f::MedicationOrder {
    f::MedicationOrder {
        id: section.id.clone().unwrap_or_else(|| format!("{prefix}-{}", index + 1)),
        rxcui: section.rxcui.clone(),
        text: section.text.clone(),
        dose: section.dose.map(|value| f::DoseQuantity { value, unit: dose_unit(section.unit.as_deref()) }),
        doses_per_day: section.doses_per_day,
        days_supply: section.days_supply,
        dispense_quantity: section.dispense_quantity,
        prescriber: section.prescriber.as_deref().map(prescriber),
        purpose: match section.purpose {
            PurposeName::Pain => f::OrderPurpose::Pain,
            PurposeName::Oud => f::OrderPurpose::OpioidUseDisorder,
        },
        confidentiality: confidentiality(section.part2),
    }
}

fn orders(sections: &[OrderSection], prefix: &str) -> Vec<f::MedicationOrder> {
    sections.iter().enumerate().map(|(i, s)| order(s, i, prefix)).collect()
}

fn parse_code(text: &str, field: &str) -> anyhow::Result<ReasonCode> {
    ReasonCode::parse(text).with_context(|| {
        let known: Vec<&str> = ReasonCode::ALL.iter().map(|c| c.as_str()).collect();
        format!("expect.{field}: unknown reason code {text:?} (known: {})", known.join(", "))
    })
}

/// The standing decision of a `[standing]` section: what the physician saw is the cycle as decided on
/// `signed_on` (without any standing decision), and the listed codes are the reasons covered.
fn standing_decision(
    section: &StandingSection,
    facts: &f::PatientFacts,
    clinic: &f::ClinicFacts,
    policy: &LoadedPolicy,
) -> anyhow::Result<f::StandingDecision> {
    let signed_on = section.signed_on.0;
    let seen = refill_rules::cycle::decide(facts, clinic, signed_on, &policy.policy, &policy.version);
    let mut covered = Vec::new();
    for code in &section.covered {
        let code = parse_code(code, "covered").context("[standing]")?;
        let reason =
            seen.reasons.iter().find(|r| r.code == code).with_context(|| {
                format!("[standing] covered: {} did not fire on signed_on {signed_on}", code.as_str())
            })?;
        covered.push(f::CoveredReason {
            code,
            subject: refill_rules::cycle::reason_subject(reason),
            outcome: reason.outcome,
        });
    }
    let choice = match section.choice {
        ChoiceName::Approve => f::PhysicianChoice::Approve,
        ChoiceName::Bridge => f::PhysicianChoice::Bridge {
            days: section.bridge_days.context("[standing] bridge_days: a bridge needs its days")?,
        },
        ChoiceName::Taper => f::PhysicianChoice::Taper,
        ChoiceName::Hold => f::PhysicianChoice::Hold,
        ChoiceName::Stop => f::PhysicianChoice::Stop,
    };
    Ok(f::StandingDecision {
        id: 1,
        signed_on,
        signed_by: section.signed_by.clone(),
        choice,
        covered,
        review_by: date(section.review_by),
        latest_fill_seen: date(section.latest_fill_seen)
            .or_else(|| facts.fills.iter().map(|fill| fill.filled_on).filter(|d| *d <= signed_on).max()),
    })
}

impl ScenarioFile {
    fn into_scenario(self, base: &Policy) -> anyhow::Result<Scenario> {
        let regimen = orders(&self.regimen, "order");
        let record_prescriber = self.patient.prescriber_of_record.clone();
        let facts = f::PatientFacts {
            patient_id: f::PatientId(self.patient.id),
            birth_date: date(self.patient.birth_date),
            sex: match self.patient.sex {
                SexName::Female => f::Sex::Female,
                SexName::Male => f::Sex::Male,
                SexName::Other => f::Sex::Other,
                SexName::Unknown => f::Sex::Unknown,
            },
            risk_tier: match self.patient.risk_tier {
                RiskTierName::Low => f::RiskTier::Low,
                RiskTierName::Moderate => f::RiskTier::Moderate,
                RiskTierName::High => f::RiskTier::High,
            },
            prescriber_of_record: record_prescriber.as_deref().map(prescriber),
            regimen: regimen.clone(),
            fills: self
                .fills
                .iter()
                .map(|fill| f::Fill {
                    filled_on: fill.filled_on.0,
                    days_supply: fill.days_supply,
                    order_id: fill.order_id.clone(),
                    quantity: fill.quantity,
                })
                .collect(),
            uds: f::UdsFacts {
                scheduled_due: date(self.uds.scheduled_due),
                for_cause_due: date(self.uds.for_cause_due),
                results: self
                    .uds
                    .results
                    .iter()
                    .map(|result| f::UdsResult {
                        collected_on: result.collected_on.0,
                        kind: match result.kind {
                            UdsKindName::Scheduled => f::UdsKind::Scheduled,
                            UdsKindName::ForCause => f::UdsKind::ForCause,
                        },
                        confirmatory: result.confirmatory,
                        analytes: result
                            .analytes
                            .iter()
                            .map(|a| f::UdsAnalyteResult {
                                assay: a.assay.clone(),
                                analyte: a.analyte.clone(),
                                detected: a.detected,
                            })
                            .collect(),
                        physician_reviewed_on: date(result.physician_reviewed_on),
                        confidentiality: confidentiality(result.part2),
                        specimen_validity: match result.specimen_validity {
                            ValidityName::NotReported => f::SpecimenValidity::NotReported,
                            ValidityName::Valid => f::SpecimenValidity::Valid,
                            ValidityName::Dilute => f::SpecimenValidity::Dilute,
                            ValidityName::Invalid => f::SpecimenValidity::Invalid,
                        },
                    })
                    .collect(),
            },
            pdmp_reviews: self
                .pdmp_reviews
                .iter()
                .map(|review| f::PdmpReview {
                    reviewed_on: review.reviewed_on.0,
                    findings: review
                        .findings
                        .iter()
                        .map(|finding| f::PdmpFinding {
                            prescriber: prescriber(&finding.prescriber),
                            drug_class: finding.class.class(),
                            filled_on: finding.filled_on.0,
                            product: finding.product.clone(),
                            rxcui: finding.rxcui.clone(),
                            quantity: finding.quantity,
                            days_supply: finding.days_supply,
                        })
                        .collect(),
                })
                .collect(),
            agreement: self.agreement.as_ref().map(|a| f::AgreementFacts {
                signed_on: a.signed_on.0,
                prescriber_of_record: prescriber(&a.prescriber_of_record),
                text_version: a.text_version.clone(),
                elements: a.elements.clone(),
                voided_on: date(a.voided_on),
            }),
            physician_reviews: self
                .physician_reviews
                .iter()
                .enumerate()
                .map(|(index, review)| {
                    let kind = match review.kind {
                        ReviewKindName::BenefitRisk => f::ReviewKind::BenefitRisk,
                        ReviewKindName::BenzodiazepineAcknowledged => f::ReviewKind::BenzodiazepineAcknowledged,
                        ReviewKindName::OutsidePrescriberAcknowledged => {
                            let Some(outside) = &review.prescriber else {
                                bail!("physician_reviews[{index}]: outside_prescriber_acknowledged needs `prescriber`");
                            };
                            match review.class {
                                Some(class) => f::ReviewKind::OutsidePrescriberClassAcknowledged(
                                    prescriber(outside),
                                    class.class(),
                                ),
                                None => f::ReviewKind::OutsidePrescriberAcknowledged(prescriber(outside)),
                            }
                        }
                    };
                    let physician = review.physician.clone().or_else(|| record_prescriber.clone());
                    Ok(f::PhysicianReview {
                        reviewed_on: review.reviewed_on.0,
                        physician: prescriber(physician.as_deref().unwrap_or("physician")),
                        kind,
                    })
                })
                .collect::<anyhow::Result<_>>()?,
            naloxone_events: self
                .naloxone
                .iter()
                .map(|event| f::NaloxoneEvent {
                    on: event.on.0,
                    kind: match event.kind {
                        NaloxoneKindName::Offered => f::NaloxoneEventKind::Offered,
                        NaloxoneKindName::Declined => f::NaloxoneEventKind::Declined,
                        NaloxoneKindName::Dispensed => f::NaloxoneEventKind::Dispensed,
                    },
                })
                .collect(),
            flags: self
                .flags
                .iter()
                .map(|flag| f::ClinicalFlag {
                    kind: match flag.kind {
                        FlagKindName::OverdoseHistory => f::ClinicalFlagKind::OverdoseHistory,
                        FlagKindName::SubstanceUseDisorderHistory => f::ClinicalFlagKind::SubstanceUseDisorderHistory,
                        FlagKindName::SleepDisorderedBreathing => f::ClinicalFlagKind::SleepDisorderedBreathing,
                        FlagKindName::Cancer => f::ClinicalFlagKind::Cancer,
                        FlagKindName::SickleCell => f::ClinicalFlagKind::SickleCell,
                        FlagKindName::Palliative => f::ClinicalFlagKind::Palliative,
                        FlagKindName::EndOfLife => f::ClinicalFlagKind::EndOfLife,
                        FlagKindName::OverdoseOrSedationSignal => f::ClinicalFlagKind::OverdoseOrSedationSignal,
                    },
                    recorded_on: flag.recorded_on.0,
                    confidentiality: confidentiality(flag.part2),
                })
                .collect(),
            other_medications: self
                .other_medications
                .iter()
                .map(|m| f::OtherMedication {
                    class: match m.class {
                        OtherClassName::Benzodiazepine => f::OtherMedicationClass::Benzodiazepine,
                        OtherClassName::OudTreatment => f::OtherMedicationClass::OudTreatment,
                    },
                    text: m.text.clone(),
                    started_on: date(m.started_on),
                    active: m.active,
                    confidentiality: confidentiality(m.part2),
                })
                .collect(),
            taper: self.taper.as_ref().map(|t| f::TaperInForce {
                plan_id: t.plan_id,
                state: match t.state {
                    TaperStateName::Active => f::TaperState::Active,
                    TaperStateName::Paused => f::TaperState::Paused,
                    TaperStateName::Completed => f::TaperState::Completed,
                },
                started_on: t.started_on.0,
                step_regimen: orders(&t.step_regimen, "step"),
                step_started_on: t.step_started_on.0,
                next_step: t.next_step.as_ref().map(|next| f::TaperStepAhead {
                    starts_on: next.starts_on.0,
                    regimen: orders(&next.regimen, "next-step"),
                }),
            }),
            last_decision: self
                .last_decision
                .as_ref()
                .map(|d| f::PriorDecision { decided_on: d.decided_on.0, total_daily_mme: d.total_daily_mme }),
            open_request: None,
            standing: None,
            previous_prescriber: self.patient.previous_prescriber.as_deref().map(prescriber),
            refill_prepared_on: None,
            past_orders: orders(&self.past_orders, "past"),
            lost_or_stolen_reports: self.lost_or_stolen_reports.iter().map(|d| d.0).collect(),
            early_requests: self.early_requests.iter().map(|d| d.0).collect(),
            patient_statements: self
                .patient_statements
                .iter()
                .map(|s| f::PatientStatement {
                    recorded_on: s.recorded_on.0,
                    text: s.text.clone(),
                    confidentiality: confidentiality(s.part2),
                })
                .collect(),
        };
        let cycle_today = self.cycle.as_ref().map(|c| c.today.0);
        let request = match (&self.request, cycle_today) {
            (Some(section), _) => f::RefillRequest {
                requested_on: section.date.0,
                regimen: match &section.regimen {
                    Some(sections) => orders(sections, "request"),
                    None => regimen,
                },
                kind: section.kind.kind(),
            },
            (None, Some(today)) => f::RefillRequest { requested_on: today, regimen, kind: f::RequestKind::Routine },
            (None, None) => bail!("missing [request] (or a [cycle] section with today)"),
        };
        let mut facts = facts;
        if let Some(cycle) = &self.cycle {
            // In a cycle scenario the request, if any, is one that was recorded.
            facts.open_request = self.request.as_ref().map(|section| f::RecordedRequest {
                id: 1,
                requested_on: section.date.0,
                kind: section.kind.kind(),
            });
            facts.refill_prepared_on = date(cycle.prepared_on);
        }
        let policy = match &self.policy {
            Some(overrides) => policy_file::with_overrides(base, overrides).context("[policy] overrides")?,
            None => policy_file::from_policy(base.clone())?,
        };
        let clinic = f::ClinicFacts { roster: self.clinic.roster.iter().map(|id| prescriber(id)).collect() };
        if let Some(standing) = &self.standing {
            if cycle_today.is_none() {
                bail!("[standing] needs a [cycle] section: a physician decision stands for a cycle");
            }
            facts.standing = Some(standing_decision(standing, &facts, &clinic, &policy)?);
        }
        let expect = match self.expect {
            None => None,
            Some(expect) => Some(Expectation {
                outcome: Outcome::parse(&expect.outcome).with_context(|| {
                    format!(
                        "expect.outcome: unknown outcome {:?} (APPROVE, APPROVE_WITH_TASKS, HOLD, ESCALATE, ESCALATE_URGENT)",
                        expect.outcome
                    )
                })?,
                reasons: expect.reasons.iter().map(|c| parse_code(c, "reasons")).collect::<anyhow::Result<_>>()?,
                tasks: match &expect.tasks {
                    None => None,
                    Some(tasks) => Some(
                        tasks
                            .iter()
                            .map(|t| Task::parse(t).with_context(|| format!("expect.tasks: unknown task {t:?}")))
                            .collect::<anyhow::Result<_>>()?,
                    ),
                },
                eligible_on: date(expect.eligible_on),
                total_daily_mme: match (expect.total_daily_mme, expect.no_total_daily_mme) {
                    (Some(_), true) => bail!("expect: give total_daily_mme or no_total_daily_mme, not both"),
                    (Some(value), false) => Some(ExpectedTotal::Value(value)),
                    (None, true) => Some(ExpectedTotal::Null),
                    (None, false) => None,
                },
                restricted: match &expect.restricted {
                    None => None,
                    Some(codes) => {
                        Some(codes.iter().map(|c| parse_code(c, "restricted")).collect::<anyhow::Result<_>>()?)
                    }
                },
                window: match &expect.window {
                    None => None,
                    Some(text) => Some(f_decision::RefillWindow::parse(text).with_context(|| {
                        format!("expect.window: unknown window {text:?} (open, not_due, prepared)")
                    })?),
                },
                covered: match &expect.covered {
                    None => None,
                    Some(codes) => {
                        Some(codes.iter().map(|c| parse_code(c, "covered")).collect::<anyhow::Result<_>>()?)
                    }
                },
            }),
        };
        Ok(Scenario { path: None, description: self.description, facts, clinic, request, cycle_today, policy, expect })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[patient]
birth_date = 1970-01-01
prescriber_of_record = "dr-a"

[[regimen]]
rxcui = "1049621"
dose = 1
unit = "tablet"
doses_per_day = 4

[[fills]]
filled_on = "2026-01-01"
days_supply = 30

[request]
date = 2026-01-20

[expect]
outcome = "HOLD"
reasons = ["early_request"]
"#;

    #[test]
    fn dates_may_be_toml_dates_or_strings_and_the_request_defaults_to_the_regimen() {
        let scenario = parse_scenario(MINIMAL, &Policy::defaults()).unwrap();
        assert_eq!(scenario.request.requested_on, NaiveDate::from_ymd_opt(2026, 1, 20).unwrap());
        assert_eq!(scenario.request.regimen, scenario.facts.regimen);
        assert_eq!(scenario.facts.regimen[0].dose.as_ref().unwrap().unit, f::DoseUnit::DoseFormUnit);
    }

    #[test]
    fn unknown_keys_and_codes_are_errors_naming_the_place() {
        let typo = MINIMAL.replace("doses_per_day", "dose_per_day");
        let error = format!("{:#}", parse_scenario(&typo, &Policy::defaults()).unwrap_err());
        assert!(error.contains("dose_per_day") && error.contains("line"), "{error}");
        let code = MINIMAL.replace("[\"early_request\"]", "[\"too_early\"]");
        let error = format!("{:#}", parse_scenario(&code, &Policy::defaults()).unwrap_err());
        assert!(error.contains("expect.reasons") && error.contains("too_early"), "{error}");
    }

    #[test]
    fn mismatches_list_every_difference() {
        let scenario = parse_scenario(&MINIMAL.replace("\"HOLD\"", "\"APPROVE\""), &Policy::defaults()).unwrap();
        let decision = Decision::from_reasons(Vec::new(), None, Some(30.0), "v");
        let problems = scenario.mismatches(&decision);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("reasons []"));
    }
}
