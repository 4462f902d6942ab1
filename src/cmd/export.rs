//! `refill export PATIENT|--all FILE [--include-part2] [--as-of DATE]`: patients' regimens, fills,
//! drug tests, reviews, agreements, naloxone, decisions and taper plans as one FHIR R4 Bundle
//! (`refill_fhir::export`), which `refill import` reads back to the same facts. Part 2 records are
//! left out unless `--include-part2`, and labelled `42CFRPart2` when included. Every patient exported
//! is a view of the record: one `patient.export` audit event each, written before the file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::NaiveDate;
use refill_fhir::export::{ExportPatient, export_bundle};
use refill_rules::{Decision, PatientFacts, PatientId};
use refill_store::{Actor, AuditEvent, PatientRecord, Store};
use serde_json::Value;

use crate::context::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `PATIENT FILE`, or `FILE` with `--all`: the patient's external id (the FHIR Patient id or CSV
    /// key it was imported with) and the Bundle file to write (`-` for stdout).
    #[arg(value_name = "PATIENT|FILE", num_args = 1..=2, required = true)]
    pub targets: Vec<String>,
    /// Export every active patient.
    #[arg(long)]
    pub all: bool,
    /// Include 42 CFR Part 2 records (labelled); left out by default.
    #[arg(long)]
    pub include_part2: bool,
    /// The clinic date the facts are read as of (default: today).
    #[arg(long, value_parser = crate::cli::parse_date)]
    pub as_of: Option<NaiveDate>,
}

pub async fn run(args: Args, context: &Context) -> anyhow::Result<ExitCode> {
    let config = context.config()?;
    let store = context.open_store(&config).await?;
    let as_of = args.as_of.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let (selection, output) = match (args.all, args.targets.as_slice()) {
        (true, [file]) => (Selection::All, PathBuf::from(file)),
        (false, [patient, file]) => (Selection::One(patient.clone()), PathBuf::from(file)),
        (true, _) => anyhow::bail!("with --all give only the FILE to write"),
        (false, _) => anyhow::bail!("give the PATIENT (external id) and the FILE to write, or --all FILE"),
    };
    let bundle = export(&store, &selection, as_of, args.include_part2, &Actor::new("export", "system")).await?;
    let mut text = serde_json::to_string_pretty(&bundle)?;
    text.push('\n');
    if output.as_os_str() == "-" {
        print!("{text}");
    } else {
        std::fs::write(&output, text).with_context(|| format!("writing {}", output.display()))?;
        let count = bundle["entry"].as_array().map_or(0, Vec::len);
        println!("{}: {count} resources", output.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// One patient as read for the export: details, facts, decisions with their dates.
type Loaded = (PatientRecord, PatientFacts, Vec<(NaiveDate, Decision)>);

/// Who to export.
#[derive(Debug, Clone)]
pub enum Selection {
    One(String),
    All,
}

/// The Bundle of the selected patients as of `as_of`, each export audited.
///
/// # Errors
/// An unknown patient; store errors.
pub async fn export(
    store: &Store,
    selection: &Selection,
    as_of: NaiveDate,
    include_part2: bool,
    actor: &Actor,
) -> anyhow::Result<Value> {
    let patients: Vec<PatientRecord> = match selection {
        Selection::One(id) => {
            vec![
                store
                    .patient_by_external_id(id)
                    .await?
                    .with_context(|| format!("no patient with external id {id:?}"))?,
            ]
        }
        Selection::All => {
            let mut all = Vec::new();
            if let Some((first, last)) = store.patient_id_bounds().await? {
                for facts in store.load_facts_in_range(first, last, as_of).await? {
                    all.push(store.patient(facts.patient_id).await?);
                }
            }
            all
        }
    };
    let mut loaded: Vec<Loaded> = Vec::new();
    let mut tx = store.begin().await?;
    for patient in patients {
        let facts = store.load_patient_facts(patient.id, as_of).await?;
        let decisions = store
            .decisions_for_patient(patient.id, 1000)
            .await?
            .into_iter()
            .map(|d| (d.clinic_date, d.decision))
            .collect();
        let PatientId(id) = patient.id;
        let event = AuditEvent::new(actor, "patient.export", "patient")
            .patient(patient.id)
            .resource_id(id.to_string())
            .detail(serde_json::json!({"format": "fhir-r4-bundle", "include_part2": include_part2}));
        store.append_audit(&mut tx, &event).await?;
        loaded.push((patient, facts, decisions));
    }
    tx.commit().await?;
    let exports: Vec<ExportPatient<'_>> = loaded
        .iter()
        .map(|(patient, facts, decisions)| ExportPatient {
            id: &patient.details.external_id,
            given: &patient.details.given_name,
            family: &patient.details.family_name,
            birth_date: patient.details.birth_date,
            sex: patient.details.sex,
            mrn: patient.details.mrn.as_deref(),
            facts,
            decisions,
        })
        .collect();
    Ok(export_bundle(&exports, include_part2))
}
