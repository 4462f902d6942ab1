//! `refill import FILE...`: FHIR R4 Bundles (`*.json`) and the documented CSV format
//! (docs/import-csv.md) into the database, one transaction per file.
//!
//! Files are applied in dependency order (physicians, patients, FHIR bundles, then the rest), so one
//! command can load a whole clinic. A file with any problem is rejected whole and every problem is
//! listed by file, line or resource, and field; the other files still import, and the command exits
//! non-zero. Re-importing the same files changes nothing.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use refill_import::{ClinicRecords, CsvKind, ImportError, Location, Problem};
use refill_store::import::{
    ImportAgreement, ImportBatch, ImportFill, ImportFlag, ImportKind, ImportNaloxone, ImportOrder,
    ImportOtherMedication, ImportOutcome, ImportPatient, ImportPdmp, ImportPrescriber, ImportRefillRequest,
    ImportRejection, ImportReport, ImportReview, ImportTaper, ImportTaperStep, ImportUds, ImportUnrecognisedOrder,
};
use refill_store::{Actor, Enrolment, Store};
use sha2::{Digest, Sha256};

use crate::context::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// FHIR R4 Bundles (*.json) or CSV files named by record type (physicians.csv, patients.csv,
    /// orders.csv, fills.csv, uds.csv, pdmp.csv, agreements.csv, tapers.csv, reviews.csv, naloxone.csv,
    /// conditions.csv, other_medications.csv, refill_requests.csv; see docs/import-csv.md).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Check the files and list their problems without writing anything.
    #[arg(long)]
    pub check: bool,
}

pub async fn run(args: Args, context: &Context) -> anyhow::Result<ExitCode> {
    let config = context.config()?;
    let store = if args.check { None } else { Some(context.open_store(&config).await?) };
    let mut files = args.files.clone();
    files.sort_by_key(|path| import_rank(path));
    let mut rejected = 0usize;
    for path in &files {
        let name = display_name(path);
        let bytes = std::fs::read(path).with_context(|| format!("could not read {}", path.display()))?;
        let outcome = match &store {
            Some(store) => import_file(store, &name, &bytes, &Actor::new("import", "system"), true).await?,
            None => parse_file(&name, &bytes).map(|records| {
                println!("{name}: {} records, no problems", records.len());
                ImportReport::default()
            }),
        };
        match outcome {
            Ok(report) if store.is_some() => println!("{}", summary_line(&name, &report)),
            Ok(_) => {}
            Err(error) => {
                rejected += 1;
                eprintln!("{error}");
            }
        }
    }
    if let Some(store) = store {
        store.close().await;
    }
    if rejected > 0 {
        eprintln!("{rejected} of {} file(s) rejected; nothing from them was written", files.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Physicians, then patients, then bundles (which may carry both patients and their facts), then the
/// files that refer to patients.
fn import_rank(path: &Path) -> u8 {
    let name = display_name(path);
    match CsvKind::from_file_name(&name) {
        Some(CsvKind::Physicians) => 0,
        Some(CsvKind::Patients) => 1,
        Some(_) => 3,
        None => 2,
    }
}

/// The file as the user named it: problems say which of two `patients.csv` in different folders.
fn display_name(path: &Path) -> String {
    path.display().to_string()
}

fn is_json(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".json")
}

/// Parse one file by its name: `*.json` as a FHIR Bundle, anything else as the CSV format.
pub fn parse_file(name: &str, bytes: &[u8]) -> Result<ClinicRecords, ImportError> {
    if is_json(name) { refill_import::parse_fhir_bundle(name, bytes) } else { refill_import::parse_csv(name, bytes) }
}

/// One line per imported file, for people.
pub fn summary_line(name: &str, report: &ImportReport) -> String {
    let kinds: Vec<String> = report
        .counts
        .iter()
        .map(|(kind, counts)| format!("{} {}/{}", kind.as_str(), counts.written, counts.written + counts.unchanged))
        .collect();
    let audit = report.audit_seq.map_or_else(|| "no change".to_string(), |seq| format!("audit event {seq}"));
    format!("{name}: {} written, {} unchanged [{}] ({audit})", report.written(), report.unchanged(), kinds.join(", "))
}

/// Parse and import one file in one transaction. `Ok(Err(..))` is a rejected file (nothing written);
/// `Err` is a database failure. Shows a progress bar on stderr for large files when `progress` is set
/// and stderr is a terminal.
pub async fn import_file(
    store: &Store,
    name: &str,
    bytes: &[u8],
    actor: &Actor,
    progress: bool,
) -> anyhow::Result<Result<ImportReport, ImportError>> {
    let records = match parse_file(name, bytes) {
        Ok(records) => records,
        Err(error) => return Ok(Err(error)),
    };
    let total = records.len() as u64;
    let (batch, origins) = batch_from_records(name, bytes, records);
    let bar = progress_bar(progress, name, total);
    let tick = |done: u64| {
        if let Some(bar) = &bar {
            bar.set_position(done);
        }
    };
    let outcome = store
        .import_batch_with_progress(&batch, actor, &tick)
        .await
        .with_context(|| format!("could not import {name}"))?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    Ok(match outcome {
        ImportOutcome::Committed(report) => Ok(report),
        ImportOutcome::Rejected(rejections) => Err(rejection_error(name, &origins, &rejections)),
    })
}

/// Large imports only (a bar that flashes for a small file is noise), and only on a terminal.
fn progress_bar(wanted: bool, name: &str, total: u64) -> Option<ProgressBar> {
    if !wanted || total < 5_000 || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} records ({eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(name.to_string());
    Some(bar)
}

/// Where each record of a batch came from (CSV line or FHIR resource), by kind and position, kept
/// aside when the records move into the batch so a rejection can still name its line.
#[derive(Debug, Default)]
pub struct RecordOrigins(Vec<(ImportKind, Vec<Location>)>);

impl RecordOrigins {
    fn add<T>(&mut self, kind: ImportKind, records: &[T], origin: impl Fn(&T) -> &Location) {
        self.0.push((kind, records.iter().map(|r| origin(r).clone()).collect()));
    }

    fn get(&self, kind: ImportKind, index: usize) -> Option<&Location> {
        self.0.iter().find(|(k, _)| *k == kind).and_then(|(_, origins)| origins.get(index))
    }
}

/// Name where each rejected record came from (CSV line or FHIR resource).
fn rejection_error(name: &str, origins: &RecordOrigins, rejections: &[ImportRejection]) -> ImportError {
    let problems = rejections
        .iter()
        .map(|rejection| Problem {
            file: name.to_string(),
            location: origins.get(rejection.kind, rejection.index).cloned().unwrap_or(Location::File),
            field: rejection.field.to_string(),
            message: rejection.message.clone(),
        })
        .collect();
    ImportError { file: name.to_string(), problems }
}

/// The store's input for one file's records (moved, not copied: a large file's records are the bulk
/// of an import's memory), and where each came from.
pub fn batch_from_records(name: &str, bytes: &[u8], records: ClinicRecords) -> (ImportBatch, RecordOrigins) {
    let mut origins = RecordOrigins::default();
    origins.add(ImportKind::Prescribers, &records.physicians, |r| &r.origin);
    origins.add(ImportKind::Patients, &records.patients, |r| &r.origin);
    origins.add(ImportKind::Orders, &records.orders, |r| &r.origin);
    origins.add(ImportKind::Fills, &records.fills, |r| &r.origin);
    origins.add(ImportKind::Uds, &records.uds, |r| &r.origin);
    origins.add(ImportKind::Pdmp, &records.pdmp, |r| &r.origin);
    origins.add(ImportKind::Agreements, &records.agreements, |r| &r.origin);
    origins.add(ImportKind::Tapers, &records.tapers, |r| &r.origin);
    origins.add(ImportKind::Reviews, &records.reviews, |r| &r.origin);
    origins.add(ImportKind::Naloxone, &records.naloxone, |r| &r.origin);
    origins.add(ImportKind::Flags, &records.flags, |r| &r.origin);
    origins.add(ImportKind::OtherMedications, &records.other_medications, |r| &r.origin);
    origins.add(ImportKind::RefillRequests, &records.refill_requests, |r| &r.origin);
    origins.add(ImportKind::UnrecognisedOrders, &records.unrecognised_orders, |r| &r.origin);
    let batch = ImportBatch {
        source_name: name.to_string(),
        source_sha256: hex::encode(Sha256::digest(bytes)),
        prescribers: records
            .physicians
            .into_iter()
            .map(|r| ImportPrescriber { id: r.prescriber_id.0, display_name: r.display_name, role: r.role.as_str() })
            .collect(),
        patients: records
            .patients
            .into_iter()
            .map(|r| ImportPatient {
                external_id: r.external_id,
                mrn: r.mrn,
                given_name: r.given_name,
                family_name: r.family_name,
                birth_date: Some(r.birth_date),
                sex: r.sex,
                risk_tier: r.risk_tier,
                prescriber_of_record: r.prescriber_of_record.map(|p| p.0),
                email: r.email,
                phone: r.phone,
                email_consent: r.email_consent,
                contact_preference: r.contact_preference.as_str(),
                part2: r.part2,
                previous_prescriber: r.previous_prescriber.map(|p| p.0),
                enrolment_if_new: if r.enrol_when_new { Enrolment::Enrolled } else { Enrolment::NotEnrolled },
            })
            .collect(),
        orders: records
            .orders
            .into_iter()
            .map(|r| ImportOrder {
                patient_key: r.patient_external_id,
                active: r.status == refill_import::OrderStatus::Active,
                order: r.order,
            })
            .collect(),
        fills: records
            .fills
            .into_iter()
            .map(|r| ImportFill { patient_key: r.patient_external_id, source_id: r.external_id, fill: r.fill })
            .collect(),
        uds: records
            .uds
            .into_iter()
            .map(|r| ImportUds { patient_key: r.patient_external_id, source_id: r.external_id, result: r.result })
            .collect(),
        pdmp: records
            .pdmp
            .into_iter()
            .map(|r| ImportPdmp { patient_key: r.patient_external_id, source_id: r.external_id, review: r.review })
            .collect(),
        agreements: records
            .agreements
            .into_iter()
            .map(|r| ImportAgreement {
                patient_key: r.patient_external_id,
                source_id: r.external_id,
                agreement: r.agreement,
            })
            .collect(),
        tapers: records
            .tapers
            .into_iter()
            .map(|r| ImportTaper {
                patient_key: r.patient_external_id,
                source_id: r.external_id,
                state: r.state,
                started_on: r.started_on,
                physician: r.physician.0,
                rationale: r.rationale,
                steps: r
                    .steps
                    .into_iter()
                    .map(|s| ImportTaperStep {
                        step_number: s.step_number,
                        starts_on: s.starts_on,
                        regimen: s.regimen,
                        total_daily_mme: s.daily_mme,
                    })
                    .collect(),
            })
            .collect(),
        reviews: records
            .reviews
            .into_iter()
            .map(|r| ImportReview {
                patient_key: r.patient_external_id,
                source_id: r.external_id,
                review: r.review,
                note: r.note,
            })
            .collect(),
        naloxone: records
            .naloxone
            .into_iter()
            .map(|r| ImportNaloxone { patient_key: r.patient_external_id, source_id: r.external_id, event: r.event })
            .collect(),
        flags: records
            .flags
            .into_iter()
            .map(|r| ImportFlag {
                patient_key: r.patient_external_id,
                source_id: r.external_id,
                flag: r.flag,
                dated: r.dated,
                active: r.active,
            })
            .collect(),
        other_medications: records
            .other_medications
            .into_iter()
            .map(|r| ImportOtherMedication {
                patient_key: r.patient_external_id,
                source_id: r.external_id,
                medication: r.medication,
            })
            .collect(),
        refill_requests: records
            .refill_requests
            .into_iter()
            .map(|r| ImportRefillRequest {
                patient_key: r.patient_external_id,
                requested_on: r.requested_on,
                kind: r.kind,
                channel: r.channel.as_str(),
                note: r.note,
            })
            .collect(),
        unrecognised_orders: records
            .unrecognised_orders
            .into_iter()
            .map(|r| ImportUnrecognisedOrder {
                patient_key: r.patient_external_id,
                source_id: r.external_id,
                label: r.label,
                reason: r.reason,
                active: r.active,
            })
            .collect(),
    };
    (batch, origins)
}
