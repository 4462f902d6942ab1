//! Taper plans: dispensable, monotone, rate-limited dose reduction schedules, with pauses and history.
//!
//! A plan is data: `plan_taper` turns a request (regimen, speed preset, target, start date, optional
//! physician safety attestation) into a `TaperPlan` with its steps; `pause`, `resume`, `slow_down` and
//! `revise` return a new plan whose event log and superseded steps keep the history of every change.
//! The plan is a proposal for the physician to sign: the software never starts, speeds up or ends a
//! taper on its own, and the buprenorphine/OUD flag is a prompt for the physician, never an action.
//!
//! Hard limits (clinical-rules.md §6): no step ever increases a dose; in any `window_days` consecutive
//! days the reductions add up to at most the preset's rate times the ORIGINAL daily dose (MME); no dose
//! step cuts the current total daily dose by more than `max_step_fraction`. When no dose step fits that
//! fraction (the end of a taper), the planner lengthens the time between steps, then the dosing
//! interval, and stops an opioid only when it would be taken less than once a day; those tail steps
//! still obey the window rate (CDC 2022 Rec 5: "once the smallest available dose is reached, the
//! interval between doses can be extended, and opioids may be stopped when taken less than once a day").

mod changes;
pub mod check_in;
mod planner;
mod policy;
mod units;

#[cfg(test)]
mod findings;
#[cfg(test)]
mod tests;

use chrono::NaiveDate;

pub use changes::{
    PauseReason, TaperRevision, dose_in_force, pause, regimen_in_force, resume, review, revise, slow_down, state_on,
    taper_in_force,
};
pub use planner::plan_taper;
pub use policy::{TaperPolicy, TaperPreset};
pub use units::{UnitCount, UnitDose, dispensable_doses, trim_number};

use crate::facts::{MedicationOrder, PrescriberId, TaperState};
use crate::formulary::{FormularyCoIngredient, FormularyProduct, MakeUp};
use crate::mme::FactorSet;

/// Where the taper should end: an explicit choice made with the patient (a lower dose, or stopping),
/// recorded with the plan. There is no "blank means stop".
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TaperTarget {
    /// Stop every opioid in the regimen.
    Zero,
    /// Reduce until the total daily MME is at or below this value.
    Mme(f64),
}

impl TaperTarget {
    pub fn mme(self) -> f64 {
        match self {
            TaperTarget::Zero => 0.0,
            TaperTarget::Mme(value) => value,
        }
    }

    pub fn describe(self) -> String {
        match self {
            TaperTarget::Zero => "zero (stop)".to_string(),
            TaperTarget::Mme(value) => format!("at most {} MME/day", trim_number(value)),
        }
    }
}

/// Why a physician attests that a faster taper is safe and needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttestationReason {
    /// Opioids used for weeks to months only: the CDC 2022 weekly scheme applies.
    ShortPriorDuration,
    /// A life-threatening issue such as warning signs of impending overdose.
    LifeThreateningIssue,
    /// Another reason, written out by the physician.
    Other(String),
}

impl AttestationReason {
    pub fn describe(&self) -> String {
        match self {
            AttestationReason::ShortPriorDuration => "short prior duration (CDC 2022 weekly scheme)".to_string(),
            AttestationReason::LifeThreateningIssue => "life-threatening issue".to_string(),
            AttestationReason::Other(text) => text.clone(),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            AttestationReason::ShortPriorDuration => "short_prior_duration",
            AttestationReason::LifeThreateningIssue => "life_threatening_issue",
            AttestationReason::Other(_) => "other",
        }
    }
}

/// A physician's safety attestation, required by the presets faster than 20% per 4 weeks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyAttestation {
    pub physician: PrescriberId,
    pub attested_on: NaiveDate,
    pub reason: AttestationReason,
    /// The physician's written rationale.
    pub rationale: String,
}

/// What the physician asks the planner for.
#[derive(Debug, Clone, PartialEq)]
pub struct TaperRequest {
    /// The current regimen (one or more opioid orders).
    pub regimen: Vec<MedicationOrder>,
    /// Order ids in the order the patient chose to reduce them; empty means the order listed.
    pub reduce_first: Vec<String>,
    /// Preset name; `None` means the policy's default preset.
    pub preset: Option<String>,
    pub target: TaperTarget,
    /// The first reduction takes effect on this date.
    pub start_on: NaiveDate,
    pub attestation: Option<SafetyAttestation>,
    pub factor_set: FactorSet,
    /// Products a physician adds to the clinic formulary for this plan only (with their source: who
    /// and why). Steps may use them like formulary rows of the same make-up.
    pub added_products: Vec<FormularyProduct>,
}

/// Why the planner will not write a plan (or a change to one). Refusals are values, never panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalCode {
    AttestationRequired,
    UnknownPreset,
    EmptyRegimen,
    ProductNotIdentified,
    MmeUndetermined,
    NotTaperable,
    TargetNotBelowCurrent,
    InvalidPolicy,
    InvalidRequest,
    NotSlower,
    WrongState,
    /// The clinic formulary has no product of the ordered make-up.
    NotInFormulary,
    /// Acetaminophen above the per-unit or per-day limit in the regimen itself.
    AcetaminophenLimit,
    /// Methadone: its own slower preset, chosen by the physician; never an automatic plan.
    MethadonePreset,
}

impl RefusalCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::AttestationRequired => "attestation_required",
            RefusalCode::UnknownPreset => "unknown_preset",
            RefusalCode::EmptyRegimen => "empty_regimen",
            RefusalCode::ProductNotIdentified => "product_not_identified",
            RefusalCode::MmeUndetermined => "mme_undetermined",
            RefusalCode::NotTaperable => "not_taperable",
            RefusalCode::TargetNotBelowCurrent => "target_not_below_current",
            RefusalCode::InvalidPolicy => "invalid_policy",
            RefusalCode::InvalidRequest => "invalid_request",
            RefusalCode::NotSlower => "not_slower",
            RefusalCode::WrongState => "wrong_state",
            RefusalCode::NotInFormulary => "not_in_formulary",
            RefusalCode::AcetaminophenLimit => "acetaminophen_limit",
            RefusalCode::MethadonePreset => "methadone_preset",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaperRefusal {
    pub code: RefusalCode,
    pub message: String,
}

impl TaperRefusal {
    pub fn new(code: RefusalCode, message: impl Into<String>) -> TaperRefusal {
        TaperRefusal { code, message: message.into() }
    }
}

impl std::fmt::Display for TaperRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code.as_str())
    }
}

impl std::error::Error for TaperRefusal {}

/// One opioid product line of a regimen, as the planner reduces it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaperLine {
    /// The source order id(s) this line continues (joined with `+` when orders were merged).
    pub order_id: String,
    pub ingredient: String,
    pub dose_form: String,
    /// `mg`, or `mcg/hr` for transdermal systems.
    pub unit_label: &'static str,
    pub transdermal: bool,
    /// Dose per administration (for patches: worn at once); the higher dose when doses differ.
    pub dose: UnitDose,
    /// Administrations per day (for patches the change schedule, which MME ignores).
    pub doses_per_day: f64,
    /// When doses differ during the day: the lower dose, taken `lower_doses_per_day` of the
    /// `doses_per_day` times (for example 10 mg three times and 7.5 mg once a day). This is how a
    /// four-times-daily regimen moves in steps small enough for the slow presets.
    pub lower_dose: Option<UnitDose>,
    pub lower_doses_per_day: f64,
    /// MME per unit of daily dose (per mg/day, or per mcg/hr), fixed at the ORIGINAL regimen so that
    /// reductions are measured on one linear scale.
    pub mme_factor: f64,
    /// Strengths of the formulary products of this line's make-up, ascending: the only strengths a
    /// step may order.
    pub strengths: Vec<f64>,
    /// Those products (one per strength), ascending; the step's orders name them.
    pub products: Vec<FormularyProduct>,
    /// What every step keeps: ingredient, dose form (route, release), co-ingredients and their
    /// strengths per unit.
    pub make_up: MakeUp,
    /// The product on the source order, as the drug table names it.
    pub ordered_name: String,
    /// The strength of the ordered product (in `unit_label`); used for units that are still the
    /// patient's own (a line not yet reduced) even when the formulary does not list that strength.
    pub ordered_strength: f64,
    /// Whether the policy allows halving this dose form's units.
    pub splittable: bool,
    /// The most units per administration (patches: `max_patches_per_application`).
    pub max_units: u32,
    /// Non-opioid ingredients per unit (`acetaminophen 325 mg`) from the drug table's structured
    /// column: every step uses products of exactly this make-up.
    pub co_ingredients: Vec<FormularyCoIngredient>,
    /// The source order, for prescriber, confidentiality and display.
    pub source: MedicationOrder,
}

impl TaperLine {
    /// Daily amount in `unit_label` (patches: mcg/hr worn, the schedule does not enter).
    pub fn daily_amount(&self) -> f64 {
        if self.transdermal {
            return self.dose.amount();
        }
        let lower = self.lower_dose.as_ref().map(|dose| dose.amount() * self.lower_doses_per_day).unwrap_or(0.0);
        self.dose.amount() * (self.doses_per_day - self.lower_doses_per_day) + lower
    }

    /// The doses of one day, largest first (one entry per administration; a patch counts once).
    pub fn administrations(&self) -> Vec<f64> {
        if self.transdermal || self.doses_per_day.fract() != 0.0 {
            return vec![self.dose.amount()];
        }
        let lower_count = if self.lower_dose.is_some() { self.lower_doses_per_day as usize } else { 0 };
        let mut amounts = vec![self.dose.amount(); self.doses_per_day as usize - lower_count];
        if let Some(lower) = &self.lower_dose {
            amounts.extend(std::iter::repeat_n(lower.amount(), lower_count));
        }
        amounts
    }

    /// Every unit the line uses (both doses).
    pub fn units(&self) -> impl Iterator<Item = &UnitCount> {
        self.dose.units.iter().chain(self.lower_dose.iter().flat_map(|dose| dose.units.iter()))
    }

    /// Acetaminophen per unit in mg (0 when none).
    pub fn acetaminophen_per_unit(&self) -> f64 {
        self.co_ingredients.iter().filter(|co| co.name == "acetaminophen").map(|co| co.strength).sum()
    }

    /// Units taken a day (halves count as halves): what the pharmacy dispenses per day.
    pub fn units_per_day(&self) -> f64 {
        if self.transdermal {
            return self.dose.units.iter().map(|unit| unit.count).sum();
        }
        let count = |dose: &UnitDose| dose.units.iter().map(|unit| unit.count).sum::<f64>();
        let lower = self.lower_dose.as_ref().map(|dose| count(dose) * self.lower_doses_per_day).unwrap_or(0.0);
        count(&self.dose) * (self.doses_per_day - self.lower_doses_per_day) + lower
    }

    /// Acetaminophen taken a day on this line, in mg.
    pub fn acetaminophen_per_day(&self) -> f64 {
        self.acetaminophen_per_unit() * self.units_per_day()
    }

    /// The product of one unit strength: the formulary product of the make-up, else the ordered
    /// product when the patient still holds it.
    pub fn product_name(&self, strength: f64) -> String {
        let key = units::amount_key(strength);
        match self.products.iter().find(|product| units::amount_key(product.strength) == key) {
            Some(product) => product.name.clone(),
            None => self.ordered_name.clone(),
        }
    }

    /// The linear MME the planner measures reductions with.
    pub fn planning_mme(&self) -> f64 {
        self.daily_amount() * self.mme_factor
    }

    /// `oxycodone Oral Tablet`: what screens say is being reduced.
    pub fn label(&self) -> String {
        format!("{} {}", self.ingredient, self.dose_form)
    }

    /// `1 x 60 mg + 1 x 15 mg three times a day`.
    pub fn describe(&self) -> String {
        if self.transdermal {
            format!("{} ({} mcg/hr)", self.dose.describe(self.unit_label), trim_number(self.dose.amount()))
        } else if let Some(lower) = &self.lower_dose {
            format!(
                "{} {} and {} {} ({} {}/day)",
                self.dose.describe(self.unit_label),
                describe_frequency(self.doses_per_day - self.lower_doses_per_day),
                lower.describe(self.unit_label),
                describe_frequency(self.lower_doses_per_day),
                trim_number(self.daily_amount()),
                self.unit_label
            )
        } else {
            format!(
                "{} {} ({} {}/day)",
                self.dose.describe(self.unit_label),
                describe_frequency(self.doses_per_day),
                trim_number(self.daily_amount()),
                self.unit_label
            )
        }
    }
}

/// "three times a day", "once a day".
pub fn describe_frequency(doses_per_day: f64) -> String {
    match (doses_per_day * 1000.0).round() as i64 {
        1000 => "once a day".to_string(),
        2000 => "twice a day".to_string(),
        3000 => "three times a day".to_string(),
        4000 => "four times a day".to_string(),
        // A patch changed every few days (a 72-hour patch is 0.333 a day).
        _ if doses_per_day > 0.0 && doses_per_day < 1.0 => {
            format!("changed every {} days", trim_number((1.0 / doses_per_day).round()))
        }
        _ => format!("{} times a day", trim_number(doses_per_day)),
    }
}

/// What a step changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// A smaller dose per administration, within the per-step fraction.
    DoseReduction,
    /// Tail: one administration a day fewer, after the time between steps was lengthened.
    IntervalExtension,
    /// Tail: the smallest dose reduction available when none fits the per-step fraction and the
    /// interval cannot be extended (once daily, or a patch).
    TailReduction,
    /// The opioid is stopped: the next change would be less than once a day.
    Stop,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::DoseReduction => "dose_reduction",
            StepKind::IntervalExtension => "interval_extension",
            StepKind::TailReduction => "tail_reduction",
            StepKind::Stop => "stop",
        }
    }

    /// Tail steps are the CDC-endorsed exception to the per-step fraction (they still obey the rate).
    pub fn is_tail(self) -> bool {
        !matches!(self, StepKind::DoseReduction)
    }
}

/// One scheduled change.
#[derive(Debug, Clone, PartialEq)]
pub struct TaperStep {
    /// 1-based position in the plan as it stands.
    pub number: usize,
    pub effective_on: NaiveDate,
    pub kind: StepKind,
    /// The line reduced at this step (`TaperLine::label`) and its order id.
    pub reduced: String,
    pub reduced_order_id: String,
    /// The regimen from this step on (a stopped line is absent).
    pub lines: Vec<TaperLine>,
    /// The same regimen as dispensable orders (one per strength), for MME and the pharmacy.
    pub regimen: Vec<MedicationOrder>,
    /// `mme::daily_mme` of `regimen` (what the refill rules will compute).
    pub daily_mme: Option<f64>,
    /// Linear planning MME after the step, and the reduction it makes.
    pub planning_mme: f64,
    pub reduction_mme: f64,
    /// Reduction as a fraction of the total daily dose before the step.
    pub fraction_of_current: f64,
    /// A check-in (PEG, withdrawal, the patient's wish) is due on or before this date; the step is
    /// not applied without one.
    pub follow_up_due: NaiveDate,
    /// Acetaminophen a day from this step on, in mg (0 when no product holds any).
    pub acetaminophen_mg_per_day: f64,
    /// Why this step waits longer than the preset's interval, or cuts more than usual, in words for
    /// the preview (interval extension at the smallest unit; a marketed step larger than the rate).
    pub note: Option<String>,
    /// Set when the step cuts more than the preset allows in one window (the smallest step the
    /// formulary can make): it comes this many days after the previous reduction, so the average
    /// pace over those days stays within the preset's rate.
    pub paced_over_days: Option<i64>,
    pub patient_notice_on: NaiveDate,
    pub staff_notice_on: NaiveDate,
    /// The plan revision that scheduled this step.
    pub revision: u32,
}

/// Whether the plan as it stands reaches its target. `NotReached` is the planner's limit (the
/// formulary or the rate cannot make the next step): it says so and asks the physician; it is never
/// read as "the patient cannot go on" (that is a pause, recorded from a check-in).
#[derive(Debug, Clone, PartialEq)]
pub enum PlanOutcome {
    TargetReached { on: NaiveDate },
    NotReached { reason: String },
}

/// One product line of a step as the pharmacy fills it and the physician signs it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepProduct {
    pub name: String,
    /// `hydrocodone 10 mg / acetaminophen 325 mg`.
    pub strength: String,
    pub units_per_dose: f64,
    pub doses_per_day: f64,
    /// When the doses of the day differ: `larger dose` or `smaller dose` (the units of one
    /// administration share the label); empty when every dose is the same.
    pub dose: &'static str,
}

impl StepProduct {
    /// `2 x acetaminophen 325 MG / hydrocodone bitartrate 10 MG Oral Tablet (hydrocodone 10 mg /
    /// acetaminophen 325 mg), four times a day`: what the preview and the signed plan show.
    pub fn describe(&self) -> String {
        format!(
            "{} x {} ({}), {}{}",
            trim_number(self.units_per_dose),
            self.name,
            self.strength,
            describe_frequency(self.doses_per_day),
            if self.dose.is_empty() { String::new() } else { format!(" ({})", self.dose) }
        )
    }
}

impl TaperStep {
    /// Every product of the step's regimen, exactly as ordered.
    pub fn products(&self) -> Vec<StepProduct> {
        let mut products = Vec::new();
        for line in &self.lines {
            let uneven = line.lower_dose.is_some();
            let mut parts = vec![(
                &line.dose,
                line.doses_per_day - line.lower_doses_per_day,
                if uneven { "larger dose" } else { "" },
            )];
            if let Some(lower) = &line.lower_dose {
                parts.push((lower, line.lower_doses_per_day, "smaller dose"));
            }
            for (dose, per_day, label) in parts {
                for unit in &dose.units {
                    let mut strength =
                        format!("{} {} {}", line.ingredient, trim_number(unit.strength), line.unit_label);
                    for co in &line.co_ingredients {
                        strength.push_str(&format!(" / {} {} mg", co.name, trim_number(co.strength)));
                    }
                    products.push(StepProduct {
                        name: line.product_name(unit.strength),
                        strength,
                        units_per_dose: unit.count,
                        doses_per_day: if line.transdermal { line.doses_per_day } else { per_day },
                        dose: label,
                    });
                }
            }
        }
        products
    }
}

/// A change to a plan, kept in its event log.
#[derive(Debug, Clone, PartialEq)]
pub enum TaperChange {
    Created { preset: String },
    Paused { reason: PauseReason },
    Resumed,
    SlowedDown { from_preset: String, to_preset: String },
    Revised { note: String },
}

impl TaperChange {
    pub fn as_str(&self) -> &'static str {
        match self {
            TaperChange::Created { .. } => "created",
            TaperChange::Paused { .. } => "paused",
            TaperChange::Resumed => "resumed",
            TaperChange::SlowedDown { .. } => "slowed_down",
            TaperChange::Revised { .. } => "revised",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaperEvent {
    pub on: NaiveDate,
    /// The revision the change produced.
    pub revision: u32,
    pub change: TaperChange,
}

/// A prompt for the physician. Never acted on automatically.
#[derive(Debug, Clone, PartialEq)]
pub struct PhysicianFlag {
    pub raised_on: NaiveDate,
    pub message: String,
}

/// The message of the buprenorphine/OUD prompt, raised only when the PATIENT cannot go on (pauses at
/// check-ins), never because the planner cannot make a step (CDC 2022 Rec 5: when the patient cannot
/// taper and risks outweigh benefits, consider buprenorphine; assess for OUD). Worded without stigma.
pub const BUPRENORPHINE_FLAG: &str = "the taper is hard for the patient: discuss options with them, including a transition to buprenorphine, and assess for opioid use disorder";

/// The prompt when the planner, not the patient, is the limit.
pub const PLANNER_LIMIT_FLAG: &str = "the planner cannot make the next step from the clinic formulary at this pace";

/// A taper plan with its history.
#[derive(Debug, Clone, PartialEq)]
pub struct TaperPlan {
    pub request: TaperRequest,
    pub preset_name: String,
    /// The preset's numbers as used (copied so later policy edits do not rewrite history).
    pub preset: TaperPreset,
    pub attestation: Option<SafetyAttestation>,
    pub target: TaperTarget,
    /// The regimen at the start, as planning lines, in reduction order.
    pub original_lines: Vec<TaperLine>,
    /// Linear planning MME of the original regimen: every rate is a fraction of this.
    pub original_mme: f64,
    /// `mme::daily_mme` of the original regimen.
    pub original_daily_mme: Option<f64>,
    pub steps: Vec<TaperStep>,
    pub outcome: PlanOutcome,
    pub state: TaperState,
    pub revision: u32,
    pub events: Vec<TaperEvent>,
    /// Steps that were planned and later replaced (pause, slow-down, revision), with their revision.
    pub superseded: Vec<TaperStep>,
    /// Follow-up contacts, at least every `max_follow_up_gap_days` from the first step to one period after
    /// the last.
    pub follow_ups: Vec<NaiveDate>,
    pub flags: Vec<PhysicianFlag>,
}

impl TaperPlan {
    pub fn pauses(&self) -> usize {
        self.events.iter().filter(|event| matches!(event.change, TaperChange::Paused { .. })).count()
    }
}
