//! `refill uds`: the UDS scheduler and result interpreter, usable directly.
//!
//! - `refill uds draw --tier high --last 2026-01-10 --seed 42 --patient 7 [--period 0] [--count 1]`
//!   draws the next scheduled test date(s) (SplitMix64 keyed by seed, patient and period index; the
//!   same arguments always print the same dates). `--risk`, `--mme` and `--aberrant` choose the tier
//!   instead of `--tier`.
//! - `refill uds interpret FILE [--json]` interprets a result file (TOML or JSON; format in
//!   tests/data/uds/README.md) against the prescribed ingredients with the analyte and assay table.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use chrono::NaiveDate;
use refill_rules::facts::{Confidentiality, PatientId, RiskTier, UdsAnalyteResult, UdsKind, UdsResult};
use refill_rules::uds::{UdsPolicy, UdsSeed, UdsTier, draw_next_date, interpret, uds_tier};
use serde::Deserialize;
use serde_json::json;

use crate::context::Context;
use crate::policy_file;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Draw the next scheduled UDS date(s) from a seed (replayable).
    Draw(DrawArgs),
    /// Interpret a UDS result file against what is prescribed.
    Interpret(InterpretArgs),
}

#[derive(Debug, clap::Args)]
pub struct DrawArgs {
    /// Testing tier: low, moderate, high or high_mme_or_aberrant (else derived from --risk/--mme/--aberrant).
    #[arg(long)]
    pub tier: Option<String>,
    /// ORT risk tier (low, moderate, high), used when --tier is not given.
    #[arg(long)]
    pub risk: Option<String>,
    /// Current daily MME, used when --tier is not given.
    #[arg(long)]
    pub mme: Option<f64>,
    /// Aberrant behaviour recorded, used when --tier is not given.
    #[arg(long)]
    pub aberrant: bool,
    /// Date of the last test (scheduled or for-cause), YYYY-MM-DD.
    #[arg(long, value_parser = crate::cli::parse_date)]
    pub last: NaiveDate,
    /// The stored seed (unsigned 64-bit).
    #[arg(long)]
    pub seed: u64,
    /// The stored algorithm name; only splitmix64-v1 exists.
    #[arg(long, default_value = refill_rules::uds::SPLITMIX64_V1)]
    pub algorithm: String,
    /// Patient id.
    #[arg(long)]
    pub patient: i64,
    /// Period index of the first draw (the count of earlier draws for this patient).
    #[arg(long, default_value_t = 0)]
    pub period: u64,
    /// Draw this many successive dates, each assuming the test was done on the date drawn before.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    #[arg(long)]
    pub json: bool,
    /// A policy file to use instead of the configured one.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct InterpretArgs {
    /// The result file (TOML or JSON).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(command: Command, context: &Context) -> anyhow::Result<ExitCode> {
    match command {
        Command::Draw(args) => draw(args, context),
        Command::Interpret(args) => interpret_file(args),
    }
}

fn uds_policy(path: Option<&PathBuf>, context: &Context) -> anyhow::Result<UdsPolicy> {
    let loaded = match path {
        Some(path) => policy_file::load_policy_file(path)?,
        None => policy_file::load_policy(&context.config()?)?,
    };
    Ok(loaded.policy.uds)
}

fn draw(args: DrawArgs, context: &Context) -> anyhow::Result<ExitCode> {
    let policy = uds_policy(args.policy.as_ref(), context)?;
    let tier = match &args.tier {
        Some(text) => UdsTier::parse(text).ok_or_else(|| {
            anyhow::anyhow!("--tier must be low, moderate, high or high_mme_or_aberrant, not {text:?}")
        })?,
        None => {
            let risk = match args.risk.as_deref() {
                Some("low") => RiskTier::Low,
                Some("moderate") => RiskTier::Moderate,
                Some("high") => RiskTier::High,
                Some(other) => bail!("--risk must be low, moderate or high, not {other:?}"),
                None => bail!("give --tier, or --risk (with --mme and --aberrant as they apply)"),
            };
            uds_tier(risk, args.mme, args.aberrant, &policy)
        }
    };
    let seed = UdsSeed { algorithm: args.algorithm.clone(), seed: args.seed };
    let mut last = args.last;
    let mut draws = Vec::new();
    for offset in 0..u64::from(args.count.max(1)) {
        let drawn = draw_next_date(last, tier, &seed, PatientId(args.patient), args.period + offset, &policy)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        last = drawn.date;
        draws.push(drawn);
    }
    if args.json {
        let value: Vec<_> = draws
            .iter()
            .map(|d| {
                json!({
                    "date": d.date, "window_start": d.window_start, "window_end": d.window_end,
                    "tier": d.tier.as_str(), "period_days": d.period_days, "algorithm": d.algorithm,
                    "seed": args.seed, "patient": args.patient, "period_index": d.period_index,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "tier {} (period {} days, earliest {} days after the last test), {} seed {} patient {}",
            tier.as_str(),
            policy.period_days(tier),
            policy.min_gap_days,
            seed.algorithm,
            args.seed,
            args.patient
        );
        for d in &draws {
            println!("period {:>3}: {}  (window {} .. {})", d.period_index, d.date, d.window_start, d.window_end);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A result file (see tests/data/uds/README.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultFile {
    /// Prescribed opioid ingredients, lower case generic names.
    prescribed: Vec<String>,
    collected_on: NaiveDate,
    #[serde(default)]
    for_cause: bool,
    #[serde(default)]
    confirmatory: bool,
    analytes: Vec<AnalyteField>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnalyteField {
    assay: String,
    analyte: String,
    detected: bool,
}

fn interpret_file(args: InterpretArgs) -> anyhow::Result<ExitCode> {
    let name = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("could not read {name}"))?;
    let is_json = args.file.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
    let file: ResultFile = if is_json {
        serde_json::from_str(&text).map_err(|e| crate::file_error::json(&name, &text, &e))?
    } else {
        toml::from_str(&text).map_err(|e| crate::file_error::toml(&name, &text, &e))?
    };
    let result = UdsResult {
        collected_on: file.collected_on,
        kind: if file.for_cause { UdsKind::ForCause } else { UdsKind::Scheduled },
        confirmatory: file.confirmatory,
        analytes: file
            .analytes
            .iter()
            .map(|a| UdsAnalyteResult { assay: a.assay.clone(), analyte: a.analyte.clone(), detected: a.detected })
            .collect(),
        physician_reviewed_on: None,
        confidentiality: Confidentiality::Normal,
        specimen_validity: Default::default(),
    };
    let prescribed: Vec<&str> = file.prescribed.iter().map(String::as_str).collect();
    let interpretation = interpret(&result, &prescribed);
    let next_step = if interpretation.needs_confirmation() {
        "order confirmation (GC/LC-MS) and physician review; a presumptive result alone never changes therapy"
    } else if interpretation.needs_review() {
        "physician review of the confirmed result (discuss with the patient; never an automatic stop)"
    } else {
        "no action: consistent with what is prescribed"
    };
    if args.json {
        let value = json!({
            "collected_on": result.collected_on,
            "confirmatory": interpretation.confirmatory,
            "needs_review": interpretation.needs_review(),
            "needs_confirmation": interpretation.needs_confirmation(),
            "unknown_assays": interpretation.unknown_assays,
            "next_step": next_step,
            "findings": interpretation.findings.iter().map(|f| json!({
                "substance": f.substance,
                "about": match f.subject {
                    refill_rules::uds::FindingSubject::ReportedAnalyte => "reported_analyte",
                    refill_rules::uds::FindingSubject::PrescribedIngredient => "prescribed_ingredient",
                },
                "finding": f.finding.as_str(),
                "assays": f.assays,
                "explanation": f.explanation,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "UDS collected {} ({}): {}",
            result.collected_on,
            if result.confirmatory { "confirmatory" } else { "presumptive" },
            next_step
        );
        for f in &interpretation.findings {
            let about = match f.subject {
                refill_rules::uds::FindingSubject::ReportedAnalyte => "seen",
                refill_rules::uds::FindingSubject::PrescribedIngredient => "prescribed",
            };
            println!("  {:<10} {:<22} {:<11} {}", about, f.substance, f.finding.as_str(), f.explanation);
        }
        if !interpretation.unknown_assays.is_empty() {
            println!(
                "  assays not in the table (their negatives prove nothing): {}",
                interpretation.unknown_assays.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
