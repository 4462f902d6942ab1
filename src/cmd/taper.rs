//! `refill taper plan FILE [--json] [--policy FILE]`: build a taper plan from a plan request (TOML or
//! JSON: regimen, preset, start date, target, attestation, optional changes such as pause and resume)
//! and print the schedule as a table, or as JSON with `--json`.
//!
//! The request format is documented in tests/data/taper/README.md. A refusal (for example a faster
//! preset without a physician safety attestation) prints the reason on stderr and exits 2; a plan that
//! cannot reach its target is still printed (exit 0), with the reason it stops.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use chrono::NaiveDate;
use refill_rules::facts::{Confidentiality, DoseQuantity, DoseUnit, MedicationOrder, OrderPurpose, PrescriberId};
use refill_rules::mme::FactorSet;
use refill_rules::taper::{
    AttestationReason, PauseReason, PlanOutcome, SafetyAttestation, TaperPlan, TaperPolicy, TaperRefusal, TaperRequest,
    TaperRevision, TaperTarget, pause, plan_taper, resume, review, revise, slow_down, trim_number,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::context::Context;
use crate::policy_file;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Build a taper plan from a request file and print the schedule.
    Plan(PlanArgs),
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The plan request, TOML or JSON (by extension; otherwise TOML is tried first).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print the plan as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// A policy file to use instead of the configured one (`[policy] file`).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

/// Exit code of a refusal: the request was understood and declined.
const REFUSED: u8 = 2;

pub async fn run(command: Command, context: &Context) -> anyhow::Result<ExitCode> {
    match command {
        Command::Plan(args) => plan(args, context),
    }
}

fn plan(args: PlanArgs, context: &Context) -> anyhow::Result<ExitCode> {
    let loaded = match &args.policy {
        Some(path) => policy_file::load_policy_file(path)?,
        None => policy_file::load_policy(&context.config()?)?,
    };
    let policy = &loaded.policy.taper;
    let request_file = read_request(&args.file)?;
    let name = args.file.display().to_string();
    let request = request_file.to_request(&name, loaded.policy.factor_set())?;
    let result = plan_taper(&request, policy).and_then(|plan| apply_changes(plan, &request_file.changes, policy));
    let plan = match result {
        Ok(plan) => plan,
        Err(refusal) => {
            if args.json {
                let value = json!({ "refused": { "code": refusal.code.as_str(), "reason": refusal.message } });
                println!("{}", serde_json::to_string_pretty(&value)?);
            }
            eprintln!("refill taper plan: refused: {}", refusal.message);
            return Ok(ExitCode::from(REFUSED));
        }
    };
    let review_on = request_file.review_on.unwrap_or(request.start_on);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan_json(&plan, policy, review_on, &loaded.version))?);
    } else {
        print!("{}", plan_table(&plan, policy, review_on, &loaded.version));
    }
    Ok(ExitCode::SUCCESS)
}

fn read_request(path: &Path) -> anyhow::Result<RequestFile> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("could not read {name}"))?;
    let is_json = path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
    if is_json {
        return serde_json::from_str(&text).map_err(|e| crate::file_error::json(&name, &text, &e));
    }
    match toml::from_str::<RequestFile>(&text) {
        Ok(request) => Ok(request),
        Err(toml_error) => match serde_json::from_str::<RequestFile>(&text) {
            Ok(request) => Ok(request),
            Err(_) => Err(crate::file_error::toml(&name, &text, &toml_error)),
        },
    }
}

/// The request file (see tests/data/taper/README.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestFile {
    start_on: NaiveDate,
    #[serde(default)]
    preset: Option<String>,
    /// `"zero"` (stop) or a number of MME/day: required, the choice made with the patient.
    #[serde(default)]
    target: Option<TargetField>,
    /// Products the physician adds to the clinic formulary for this plan only (same layout as
    /// config/formulary.toml rows).
    #[serde(default)]
    added_product: Vec<refill_rules::formulary::FormularyProduct>,
    #[serde(default)]
    factor_set: Option<String>,
    #[serde(default)]
    reduce_first: Vec<String>,
    #[serde(default)]
    attestation: Option<AttestationField>,
    regimen: Vec<OrderField>,
    /// Changes applied in order after the plan is built (pause, resume, slow_down, revise).
    #[serde(default)]
    changes: Vec<ChangeField>,
    /// The date flags are reviewed on (default: the start date).
    #[serde(default)]
    review_on: Option<NaiveDate>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TargetField {
    Word(String),
    Mme(f64),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttestationField {
    physician: String,
    attested_on: NaiveDate,
    /// `short_prior_duration`, `life_threatening_issue` or `other` (then `reason_text`).
    reason: String,
    #[serde(default)]
    reason_text: Option<String>,
    #[serde(default)]
    rationale: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderField {
    id: String,
    #[serde(default)]
    rxcui: Option<String>,
    #[serde(default)]
    text: Option<String>,
    dose: f64,
    /// `unit` (tablets, capsules, patches: counted), `mg` or `mcg`.
    dose_unit: String,
    doses_per_day: f64,
    #[serde(default)]
    prescriber: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeField {
    on: NaiveDate,
    /// `pause`, `resume`, `slow_down` or `revise`.
    action: String,
    /// For pause: `patient_request`, `withdrawal`, `life_event` or free text.
    #[serde(default)]
    reason: Option<String>,
    /// For slow_down and revise.
    #[serde(default)]
    preset: Option<String>,
    #[serde(default)]
    target: Option<TargetField>,
    #[serde(default)]
    reduce_first: Vec<String>,
    #[serde(default)]
    note: Option<String>,
}

fn target_of(field: Option<&TargetField>, name: &str) -> anyhow::Result<TaperTarget> {
    match field {
        None => bail!(
            "{name}: target is required: \"zero\" (stop) or a number of MME/day, the choice made with the patient \
             (a missing target never means stop)"
        ),
        Some(TargetField::Word(word)) if word == "zero" => Ok(TaperTarget::Zero),
        Some(TargetField::Word(word)) => bail!("{name}: target must be \"zero\" or a number of MME/day, not {word:?}"),
        Some(TargetField::Mme(value)) => Ok(TaperTarget::Mme(*value)),
    }
}

impl RequestFile {
    fn to_request(&self, name: &str, default_factors: FactorSet) -> anyhow::Result<TaperRequest> {
        let factor_set = match &self.factor_set {
            None => default_factors,
            Some(text) => FactorSet::parse(text)
                .ok_or_else(|| anyhow::anyhow!("{name}: factor_set must be cdc2022 or cdc2016, not {text:?}"))?,
        };
        let mut regimen = Vec::new();
        for (index, order) in self.regimen.iter().enumerate() {
            let unit = match order.dose_unit.as_str() {
                "unit" | "units" | "tablet" | "tablets" | "capsule" | "capsules" | "patch" | "patches" => {
                    DoseUnit::DoseFormUnit
                }
                "mg" => DoseUnit::Milligram,
                "mcg" | "ug" => DoseUnit::Microgram,
                other => bail!("{name}: regimen[{index}].dose_unit must be unit, mg or mcg, not {other:?}"),
            };
            if order.rxcui.is_none() && order.text.is_none() {
                bail!("{name}: regimen[{index}] needs rxcui or text to name the product");
            }
            regimen.push(MedicationOrder {
                id: order.id.clone(),
                rxcui: order.rxcui.clone(),
                text: order.text.clone(),
                dose: Some(DoseQuantity { value: order.dose, unit }),
                doses_per_day: Some(order.doses_per_day),
                days_supply: None,
                dispense_quantity: None,
                prescriber: order.prescriber.clone().map(PrescriberId),
                purpose: OrderPurpose::Pain,
                confidentiality: Confidentiality::Normal,
            });
        }
        let attestation = match &self.attestation {
            None => None,
            Some(field) => Some(SafetyAttestation {
                physician: PrescriberId(field.physician.clone()),
                attested_on: field.attested_on,
                reason: match field.reason.as_str() {
                    "short_prior_duration" => AttestationReason::ShortPriorDuration,
                    "life_threatening_issue" => AttestationReason::LifeThreateningIssue,
                    "other" => AttestationReason::Other(field.reason_text.clone().unwrap_or_default()),
                    other => bail!(
                        "{name}: attestation.reason must be short_prior_duration, life_threatening_issue or other, not {other:?}"
                    ),
                },
                rationale: field.rationale.clone(),
            }),
        };
        Ok(TaperRequest {
            regimen,
            reduce_first: self.reduce_first.clone(),
            preset: self.preset.clone(),
            target: target_of(self.target.as_ref(), name)?,
            start_on: self.start_on,
            attestation,
            factor_set,
            added_products: self.added_product.clone(),
        })
    }
}

fn apply_changes(
    mut plan: TaperPlan,
    changes: &[ChangeField],
    policy: &TaperPolicy,
) -> Result<TaperPlan, TaperRefusal> {
    use refill_rules::taper::RefusalCode;
    for change in changes {
        plan = match change.action.as_str() {
            "pause" => {
                let reason = match change.reason.as_deref() {
                    Some("patient_request") | None => PauseReason::PatientRequest,
                    Some("withdrawal") => PauseReason::Withdrawal,
                    Some("life_event") => PauseReason::LifeEvent,
                    Some(other) => PauseReason::Other(other.to_string()),
                };
                pause(&plan, change.on, reason, policy)?
            }
            "resume" => resume(&plan, change.on, policy)?,
            "slow_down" => {
                let preset = change.preset.as_deref().ok_or_else(|| {
                    TaperRefusal::new(RefusalCode::InvalidRequest, "a slow_down change needs a preset")
                })?;
                slow_down(&plan, change.on, preset, policy)?
            }
            "revise" => {
                let target = match &change.target {
                    None => None,
                    Some(field) => Some(
                        target_of(Some(field), "changes")
                            .map_err(|e| TaperRefusal::new(RefusalCode::InvalidRequest, e.to_string()))?,
                    ),
                };
                let revision = TaperRevision {
                    preset: change.preset.clone(),
                    target,
                    attestation: None,
                    reduce_first: change.reduce_first.clone(),
                    note: change.note.clone().unwrap_or_default(),
                };
                revise(&plan, change.on, revision, policy)?
            }
            other => {
                return Err(TaperRefusal::new(
                    RefusalCode::InvalidRequest,
                    format!("change action must be pause, resume, slow_down or revise, not {other:?}"),
                ));
            }
        };
    }
    Ok(plan)
}

fn mme_text(value: Option<f64>) -> String {
    value.map(trim_number).unwrap_or_else(|| "undetermined".to_string())
}

fn outcome_text(outcome: &PlanOutcome) -> String {
    match outcome {
        PlanOutcome::TargetReached { on } => format!("target reached on {on}"),
        PlanOutcome::NotReached { reason } => format!("target not reached: {reason}"),
    }
}

/// The plan as a fixed-width table followed by outcome, flags and history.
pub fn plan_table(plan: &TaperPlan, policy: &TaperPolicy, review_on: NaiveDate, policy_version: &str) -> String {
    let mut out = String::new();
    let preset = &plan.preset;
    out.push_str(&format!(
        "Taper plan (policy {policy_version}): preset {} = {}% of the original daily dose per {} days, steps every {} days{}\n",
        plan.preset_name,
        trim_number(preset.rate_fraction * 100.0),
        preset.window_days,
        preset.step_days,
        if preset.source.is_empty() { String::new() } else { format!(" [{}]", preset.source) }
    ));
    out.push_str(&format!(
        "Target: {}. Start: {}. State: {:?}.\n",
        plan.target.describe(),
        plan.request.start_on,
        plan.state
    ));
    if let Some(attestation) = &plan.attestation {
        out.push_str(&format!(
            "Safety attestation: {} on {}: {}{}\n",
            attestation.physician.0,
            attestation.attested_on,
            attestation.reason.describe(),
            if attestation.rationale.is_empty() { String::new() } else { format!(" ({})", attestation.rationale) }
        ));
    }
    out.push_str(&format!("Original regimen: {} MME/day\n", mme_text(plan.original_daily_mme)));
    for line in &plan.original_lines {
        out.push_str(&format!("  {}: {}\n", line.label(), line.describe()));
    }
    out.push('\n');
    out.push_str(&format!(
        "{:>3}  {:<10}  {:<18}  {:<38}  {:>8}  {:>6}  {:<10}  {:<10}  {:<10}  {}\n",
        "#", "effective", "change", "reduced", "MME/day", "cut %", "follow-up", "patient", "staff", "regimen"
    ));
    for step in &plan.steps {
        let regimen = if step.lines.is_empty() {
            "(no opioid)".to_string()
        } else {
            step.lines
                .iter()
                .map(|line| format!("{}: {}", line.label(), line.describe()))
                .collect::<Vec<_>>()
                .join("; ")
        };
        out.push_str(&format!(
            "{:>3}  {:<10}  {:<18}  {:<38}  {:>8}  {:>6}  {:<10}  {:<10}  {:<10}  {}\n",
            step.number,
            step.effective_on.to_string(),
            step.kind.as_str(),
            step.reduced,
            mme_text(step.daily_mme),
            trim_number((step.fraction_of_current * 1000.0).round() / 10.0),
            step.follow_up_due.to_string(),
            step.patient_notice_on.to_string(),
            step.staff_notice_on.to_string(),
            regimen
        ));
    }
    out.push('\n');
    out.push_str("What the pharmacy fills at each step (check-in on or before the date shown):\n");
    for step in &plan.steps {
        out.push_str(&format!(
            "  step {} on {} (check-in by {}), {} MME/day, -{}%{}:\n",
            step.number,
            step.effective_on,
            step.follow_up_due,
            mme_text(step.daily_mme),
            trim_number((step.fraction_of_current * 1000.0).round() / 10.0),
            if step.acetaminophen_mg_per_day > 0.0 {
                format!(", acetaminophen {} mg/day", trim_number(step.acetaminophen_mg_per_day))
            } else {
                String::new()
            }
        ));
        for product in step.products() {
            out.push_str(&format!("    {}\n", product.describe()));
        }
        if let Some(note) = &step.note {
            out.push_str(&format!("    note: {note}\n"));
        }
    }
    out.push('\n');
    out.push_str(&format!("Outcome: {}\n", outcome_text(&plan.outcome)));
    let follow_ups: Vec<String> = plan.follow_ups.iter().map(|date| date.to_string()).collect();
    out.push_str(&format!(
        "Follow-up contacts: {}\n",
        if follow_ups.is_empty() { "none".to_string() } else { follow_ups.join(", ") }
    ));
    let flags = review(plan, review_on, policy);
    for flag in &flags {
        out.push_str(&format!("FLAG for the physician ({}): {}\n", flag.raised_on, flag.message));
    }
    out.push_str("History:\n");
    for event in &plan.events {
        out.push_str(&format!("  {} revision {}: {}\n", event.on, event.revision, describe_change(&event.change)));
    }
    if !plan.superseded.is_empty() {
        out.push_str(&format!("  ({} planned step(s) superseded by later changes)\n", plan.superseded.len()));
    }
    out
}

fn describe_change(change: &refill_rules::taper::TaperChange) -> String {
    use refill_rules::taper::TaperChange;
    match change {
        TaperChange::Created { preset } => format!("created with preset {preset}"),
        TaperChange::Paused { reason } => format!("paused ({})", reason.describe()),
        TaperChange::Resumed => "resumed".to_string(),
        TaperChange::SlowedDown { from_preset, to_preset } => format!("slowed down from {from_preset} to {to_preset}"),
        TaperChange::Revised { note } => format!("revised: {note}"),
    }
}

/// The plan as JSON (stable field names; numbers unrounded).
pub fn plan_json(plan: &TaperPlan, policy: &TaperPolicy, review_on: NaiveDate, policy_version: &str) -> Value {
    let line_json = |line: &refill_rules::taper::TaperLine| {
        json!({
            "order_id": line.order_id,
            "ingredient": line.ingredient,
            "dose_form": line.dose_form,
            "unit": line.unit_label,
            "dose_per_administration": line.dose.amount(),
            "units": line.dose.units.iter().map(|u| json!({"strength": u.strength, "count": u.count})).collect::<Vec<_>>(),
            "doses_per_day": line.doses_per_day,
            "lower_dose": line.lower_dose.as_ref().map(|dose| json!({
                "dose_per_administration": dose.amount(),
                "units": dose.units.iter().map(|u| json!({"strength": u.strength, "count": u.count})).collect::<Vec<_>>(),
                "doses_per_day": line.lower_doses_per_day,
            })),
            "daily_amount": line.daily_amount(),
            "description": line.describe(),
        })
    };
    let steps: Vec<Value> = plan
        .steps
        .iter()
        .map(|step| {
            json!({
                "number": step.number,
                "effective_on": step.effective_on,
                "kind": step.kind.as_str(),
                "reduced": step.reduced,
                "reduced_order_id": step.reduced_order_id,
                "daily_mme": step.daily_mme,
                "planning_mme": step.planning_mme,
                "reduction_mme": step.reduction_mme,
                "fraction_of_current": step.fraction_of_current,
                "follow_up_due": step.follow_up_due,
                "check_in_due": step.follow_up_due,
                "acetaminophen_mg_per_day": step.acetaminophen_mg_per_day,
                "note": step.note,
                "paced_over_days": step.paced_over_days,
                "products": step.products().iter().map(|p| json!({
                    "name": p.name,
                    "strength": p.strength,
                    "units_per_dose": p.units_per_dose,
                    "doses_per_day": p.doses_per_day,
                })).collect::<Vec<_>>(),
                "patient_notice_on": step.patient_notice_on,
                "staff_notice_on": step.staff_notice_on,
                "revision": step.revision,
                "regimen": step.lines.iter().map(line_json).collect::<Vec<_>>(),
                "orders": step.regimen.iter().map(|order| json!({
                    "id": order.id,
                    "rxcui": order.rxcui,
                    "text": order.text,
                    "units_per_dose": order.dose.as_ref().map(|d| d.value),
                    "doses_per_day": order.doses_per_day,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let outcome = match &plan.outcome {
        PlanOutcome::TargetReached { on } => json!({"target_reached": true, "on": on}),
        PlanOutcome::NotReached { reason } => json!({"target_reached": false, "reason": reason}),
    };
    json!({
        "policy_version": policy_version,
        "preset": plan.preset_name,
        "rate_fraction": plan.preset.rate_fraction,
        "window_days": plan.preset.window_days,
        "step_days": plan.preset.step_days,
        "target": match plan.target { TaperTarget::Zero => json!("zero"), TaperTarget::Mme(v) => json!(v) },
        "start_on": plan.request.start_on,
        "state": format!("{:?}", plan.state).to_lowercase(),
        "attestation": plan.attestation.as_ref().map(|a| json!({
            "physician": a.physician.0, "attested_on": a.attested_on, "reason": a.reason.as_str(),
            "reason_text": a.reason.describe(), "rationale": a.rationale,
        })),
        "original_daily_mme": plan.original_daily_mme,
        "original_planning_mme": plan.original_mme,
        "original_regimen": plan.original_lines.iter().map(line_json).collect::<Vec<_>>(),
        "steps": steps,
        "outcome": outcome,
        "follow_ups": plan.follow_ups,
        "flags": review(plan, review_on, policy).iter().map(|f| json!({"raised_on": f.raised_on, "message": f.message})).collect::<Vec<_>>(),
        "revision": plan.revision,
        "history": plan.events.iter().map(|e| json!({"on": e.on, "revision": e.revision, "change": e.change.as_str(), "description": describe_change(&e.change)})).collect::<Vec<_>>(),
        "superseded_steps": plan.superseded.len(),
    })
}
