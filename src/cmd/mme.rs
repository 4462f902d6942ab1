//! `refill mme [--factors cdc2022|cdc2016] FILE`: the daily MME of the active opioid orders in a FHIR
//! R4 Bundle, a single MedicationRequest or a CDS Hooks request (`-` reads stdin), one JSON object per
//! patient on stdout.
//!
//! Output contract (other tools depend on it): a JSON array of
//! `{"patient": "Patient/<id>", "factor_version": "cdc2022", "total_daily_mme": <number|null>,
//!   "items": [{"medication", "ingredient", "daily_dose", "unit", "factor", "mme"}],
//!   "excluded": [{"medication", "reason"}], "undetermined": [{"medication", "reason"}],
//!   "not_recognised": [{"medication", "reason"}]}`.
//! Numbers are not rounded (thresholds compare unrounded values). A patient with no active opioid order
//! has total 0 and empty lists. `not_recognised` lists every other active order (neither an opioid
//! the drug table knows nor a benzodiazepine or naloxone), "not recognised as an opioid", so a new opioid
//! missing from the table is seen rather than silently left out of the total. Exit 0 whenever the input was readable, whatever the totals; malformed
//! input exits non-zero with every problem named by resource and field.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use refill_fhir::FhirPatientRecord;
use refill_rules::mme::{FactorSet, MmeResult, daily_mme};
use serde::Serialize;
use serde_json::Value;

use crate::context::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Conversion-factor set: cdc2022 (CDC 2022 clinical factors) or cdc2016 (tiered methadone).
    #[arg(long, default_value = "cdc2022", value_parser = parse_factor_set)]
    pub factors: FactorSet,
    /// A FHIR R4 Bundle, a MedicationRequest or a CDS Hooks request in JSON; `-` for stdin.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

fn parse_factor_set(text: &str) -> Result<FactorSet, String> {
    FactorSet::parse(text).ok_or_else(|| format!("'{text}' is not a factor set (cdc2022 or cdc2016)"))
}

pub async fn run(args: Args, _context: &Context) -> anyhow::Result<ExitCode> {
    let (name, text) = read_input(&args.file)?;
    let value: Value = serde_json::from_str(&text).with_context(|| format!("{name}: not valid JSON"))?;
    let records = records_of(&value).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(|problem| format!("{name}: {problem}")).collect();
        anyhow::anyhow!("{} problem(s) in the input:\n{}", lines.len(), lines.join("\n"))
    })?;
    let report: Vec<PatientReport> = records.iter().map(|record| patient_report(record, args.factors)).collect();
    let mut text = serde_json::to_string_pretty(&report)?;
    text.push('\n');
    // A closed pipe (`refill mme FILE | head`) is the reader's choice, not an error of ours.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => return Err(error).context("writing stdout"),
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn read_input(file: &PathBuf) -> anyhow::Result<(String, String)> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
        return Ok(("<stdin>".to_string(), text));
    }
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {name}"))?;
    Ok((name, text))
}

/// A CDS Hooks request (it has `hook`), else a Bundle or a single resource.
fn records_of(value: &Value) -> Result<Vec<FhirPatientRecord>, Vec<refill_fhir::FhirError>> {
    if value.get("hook").is_some() && value.get("resourceType").is_none() {
        return refill_fhir::parse_cds_hooks_request(value);
    }
    match value.get("resourceType").and_then(Value::as_str) {
        Some("Bundle" | "MedicationRequest") => refill_fhir::parse_bundle(value),
        Some(other) => Err(vec![refill_fhir::FhirError::WrongResourceType {
            resource: "input".to_string(),
            expected: "Bundle or MedicationRequest".to_string(),
            found: other.to_string(),
        }]),
        None => Err(vec![refill_fhir::FhirError::invalid("input", "resourceType", "missing: not a FHIR resource")]),
    }
}

/// One patient in the output; field order is the documented order.
#[derive(Debug, Serialize)]
struct PatientReport {
    patient: String,
    factor_version: &'static str,
    total_daily_mme: Option<f64>,
    items: Vec<ItemReport>,
    excluded: Vec<NotCounted>,
    undetermined: Vec<NotCounted>,
    not_recognised: Vec<NotCounted>,
}

#[derive(Debug, Serialize)]
struct ItemReport {
    medication: String,
    ingredient: String,
    daily_dose: f64,
    unit: &'static str,
    factor: f64,
    mme: f64,
}

#[derive(Debug, Serialize)]
struct NotCounted {
    medication: String,
    reason: String,
}

fn patient_report(record: &FhirPatientRecord, factors: FactorSet) -> PatientReport {
    let result: MmeResult = daily_mme(&record.active_opioid_orders(), factors);
    PatientReport {
        patient: record.reference(),
        factor_version: result.factor_set.as_str(),
        total_daily_mme: result.total_daily_mme,
        items: result
            .items
            .into_iter()
            .map(|item| ItemReport {
                medication: item.medication,
                ingredient: item.ingredient,
                daily_dose: item.daily_dose,
                unit: item.unit,
                factor: item.factor,
                mme: item.mme,
            })
            .collect(),
        excluded: result
            .excluded
            .into_iter()
            .map(|excluded| NotCounted { medication: excluded.medication, reason: excluded.reason })
            .collect(),
        undetermined: result
            .undetermined
            .into_iter()
            .map(|undetermined| NotCounted { medication: undetermined.medication, reason: undetermined.reason })
            .collect(),
        not_recognised: record
            .unrecognised_orders()
            .into_iter()
            .map(|(_, medication, reason)| NotCounted { medication, reason })
            .collect(),
    }
}
