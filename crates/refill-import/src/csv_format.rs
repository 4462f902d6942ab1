//! The documented CSV format (docs/import-csv.md): one file per record type, the type named by the
//! start of the file name (`patients.csv`, `orders-2026-05.csv`), a header line naming the columns.
//!
//! Every row is checked and every problem is kept, so one pass over a bad file lists all of them.

use std::collections::HashMap;

use chrono::NaiveDate;
use refill_rules::{
    AgreementFacts, ClinicalFlag, ClinicalFlagKind, Confidentiality, DoseQuantity, DoseUnit, DrugClass, Fill,
    MedicationOrder, NaloxoneEvent, NaloxoneEventKind, OrderPurpose, OtherMedication, OtherMedicationClass,
    PdmpFinding, PdmpReview, PhysicianReview, PrescriberId, RequestKind, ReviewKind, RiskTier, Sex, SpecimenValidity,
    TaperState, UdsAnalyteResult, UdsKind, UdsResult,
};

use crate::error::{ImportError, Location, Problems};
use crate::records::{
    AgreementRecord, ClinicRecords, ContactPreference, FillRecord, FlagRecord, NaloxoneRecord, OrderRecord,
    OrderStatus, OtherMedicationRecord, PatientRecord, PdmpRecord, PhysicianRecord, PrescriberRole,
    RefillRequestRecord, RequestChannel, ReviewRecord, TaperRecord, TaperStepRecord, UdsRecord,
};

/// The record type of a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CsvKind {
    Physicians,
    Patients,
    Orders,
    Fills,
    Uds,
    Pdmp,
    Agreements,
    Tapers,
    Reviews,
    Naloxone,
    Conditions,
    OtherMedications,
    RefillRequests,
}

/// One documented column.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub required: bool,
    /// The value type as documented: `text`, `date`, `number`, `integer`, `boolean` or `a|b|c`.
    pub value_type: &'static str,
    pub example: &'static str,
    pub meaning: &'static str,
}

const fn col(
    name: &'static str,
    required: bool,
    value_type: &'static str,
    example: &'static str,
    meaning: &'static str,
) -> Column {
    Column { name, required, value_type, example, meaning }
}

const PHYSICIANS: &[Column] = &[
    col("prescriber_id", true, "text", "1234567893", "NPI or EHR practitioner id; unique key"),
    col("display_name", true, "text", "Dr. Adaeze Okafor", "name as the screens show it"),
    col(
        "role",
        false,
        "physician|nurse_practitioner|physician_assistant|other",
        "physician",
        "kind of prescriber (default physician)",
    ),
];

const PATIENTS: &[Column] = &[
    col("patient_id", true, "text", "P000123", "the source's patient id; unique key"),
    col("mrn", false, "text", "MRN-55012", "medical record number"),
    col("family_name", true, "text", "Lindqvist", "family name"),
    col("given_name", true, "text", "Marta", "given name"),
    col("birth_date", true, "date", "1961-04-17", "date of birth, YYYY-MM-DD"),
    col("sex", true, "female|male|other|unknown", "female", "administrative sex"),
    col("email", false, "text", "marta@example.org", "patient email for reminders"),
    col("phone", false, "text", "+1-555-0142", "patient phone"),
    col("email_consent", false, "boolean", "true", "the patient agreed to email reminders (default false)"),
    col("contact_preference", false, "email|phone|portal|none", "email", "preferred channel (default none)"),
    col("prescriber_id", false, "text", "1234567893", "prescriber of record (a prescriber_id of physicians.csv)"),
    col(
        "risk_tier",
        false,
        "low|moderate|high",
        "moderate",
        "ORT risk tier (empty: new patients get moderate, stored patients keep theirs)",
    ),
    col("part2", false, "boolean", "false", "true when the record holds 42 CFR Part 2 information"),
    col(
        "previous_prescriber",
        false,
        "text",
        "1888888881",
        "prescriber a new or transferred patient came from (empty: stored patients keep theirs)",
    ),
];

const ORDERS: &[Column] = &[
    col("order_id", true, "text", "RX-88121", "the source's order id; unique key"),
    col("patient_id", true, "text", "P000123", "the patient (patient_id of patients.csv or already stored)"),
    col("status", true, "active|on-hold|stopped|completed", "active", "only active orders form the regimen"),
    col("authored_on", true, "date", "2026-03-02", "date the order was written"),
    col("rxcui", false, "text", "1049621", "RxNorm concept id of the product (rxcui or medication_text required)"),
    col("medication_text", false, "text", "oxycodone hydrochloride 5 MG Oral Tablet", "product name"),
    col("dose_value", false, "number", "1", "amount per administration (with dose_unit)"),
    col("dose_unit", false, "mg|mcg|mL|unit", "unit", "unit of dose_value; unit = tablets, capsules, patches"),
    col("doses_per_day", false, "number", "4", "maximum administrations per day"),
    col("days_supply", false, "integer", "30", "days of supply of one fill"),
    col("dispense_quantity", false, "number", "120", "units dispensed per fill"),
    col("prescriber_id", false, "text", "1234567893", "who wrote the order"),
    col("purpose", false, "pain|oud", "pain", "oud = given for opioid use disorder (not counted in MME)"),
    col("part2", false, "boolean", "false", "true for a 42 CFR Part 2 record"),
];

const FILLS: &[Column] = &[
    col("fill_id", true, "text", "F-3391", "the source's dispense id; unique key"),
    col("patient_id", true, "text", "P000123", "the patient"),
    col("order_id", false, "text", "RX-88121", "the order filled"),
    col("filled_on", true, "date", "2026-04-01", "date the supply was handed over"),
    col("days_supply", true, "integer", "30", "days the supply lasts"),
    col("quantity", false, "number", "120", "units dispensed"),
];

const UDS: &[Column] = &[
    col("specimen_id", true, "text", "UDS-2026-0412", "specimen or accession id; rows sharing it form one test"),
    col("patient_id", true, "text", "P000123", "the patient"),
    col("collected_on", true, "date", "2026-04-12", "collection date"),
    col("kind", true, "scheduled|for_cause", "scheduled", "why the test was done"),
    col("confirmatory", true, "boolean", "false", "true for GC/LC-MS, false for immunoassay"),
    col("assay", true, "text", "oxycodone", "immunoassay name, or lcms / gcms"),
    col("analyte", true, "text", "oxycodone", "analyte reported, lower case"),
    col("result", true, "positive|negative", "positive", "detected or not"),
    col("reviewed_on", false, "date", "2026-04-14", "date a physician reviewed the result"),
    col("part2", false, "boolean", "false", "true for a 42 CFR Part 2 record"),
    col(
        "specimen_validity",
        false,
        "valid|dilute|invalid",
        "valid",
        "the laboratory's validity checks (creatinine, specific gravity, temperature, adulterants); invalid asks \
         for a recollection",
    ),
];

const PDMP: &[Column] = &[
    col("review_id", true, "text", "PDMP-7781", "the review's id; rows sharing it form one review"),
    col("patient_id", true, "text", "P000123", "the patient"),
    col("reviewed_on", true, "date", "2026-04-02", "date the PDMP was checked"),
    col("finding_prescriber_id", false, "text", "1999999999", "prescriber of a prescription found (one per row)"),
    col(
        "finding_drug_class",
        false,
        "opioid|benzodiazepine|other_controlled|oud_treatment",
        "benzodiazepine",
        "its class",
    ),
    col("finding_filled_on", false, "date", "2026-03-28", "its fill date"),
    col("finding_product", false, "text", "alprazolam 0.5 MG Oral Tablet", "the product dispensed"),
    col("finding_rxcui", false, "text", "308047", "its RxNorm code"),
    col("finding_quantity", false, "number", "60", "units dispensed"),
    col("finding_days_supply", false, "integer", "30", "days supplied (an overlapping opioid counts in MME)"),
];

const AGREEMENTS: &[Column] = &[
    col("agreement_id", true, "text", "AGR-101", "the agreement's id; unique key"),
    col("patient_id", true, "text", "P000123", "the patient"),
    col("signed_on", true, "date", "2025-11-03", "signature date"),
    col("prescriber_id", true, "text", "1234567893", "prescriber the agreement was signed with"),
    col("text_version", true, "text", "2025-01", "version of the agreement text"),
    col("elements", false, "text", "single-prescriber;uds-consent", "elements covered, separated by ;"),
    col("voided_on", false, "date", "", "date the agreement was voided"),
];

const TAPERS: &[Column] = &[
    col("taper_id", true, "text", "TP-12", "the plan's id; rows sharing it are its steps"),
    col("patient_id", true, "text", "P000123", "the patient"),
    col("state", true, "active|paused|completed", "active", "state of the plan"),
    col("started_on", true, "date", "2026-02-01", "start of the plan"),
    col("physician_id", true, "text", "1234567893", "physician who authored the plan"),
    col("rationale", true, "text", "Shared decision: function improved", "the physician's written rationale"),
    col(
        "step_number",
        true,
        "integer",
        "1",
        "step order, from 1; a step with several products has one row per product",
    ),
    col("step_starts_on", true, "date", "2026-02-01", "first day of the step"),
    col("rxcui", false, "text", "1049502", "RxNorm code of the step's product (rxcui or medication_text required)"),
    col(
        "medication_text",
        false,
        "text",
        "12 HR oxycodone hydrochloride 10 MG Extended Release Oral Tablet",
        "product name",
    ),
    col("dose_value", true, "number", "2", "amount per administration"),
    col("dose_unit", true, "mg|mcg|mL|unit", "unit", "unit of dose_value"),
    col("doses_per_day", true, "number", "2", "administrations per day"),
    col("step_daily_mme", false, "number", "60", "total daily MME of the step as computed by the source"),
];

const REVIEWS: &[Column] = &[
    col("review_id", true, "text", "REV-77", "the review's id; unique key"),
    col("patient_id", true, "text", "P000123", "the patient"),
    col("reviewed_on", true, "date", "2026-09-30", "date of the review"),
    col("physician_id", true, "text", "1234567893", "the reviewing physician"),
    col(
        "kind",
        true,
        "benefit_risk|benzodiazepine_acknowledged|outside_prescriber_acknowledged",
        "benefit_risk",
        "what was reviewed",
    ),
    col(
        "subject_drug_class",
        false,
        "opioid|benzodiazepine|other_controlled|oud_treatment",
        "benzodiazepine",
        "for outside_prescriber_acknowledged: only this class of the prescriber (a benzodiazepine one also \
         acknowledges the concurrent benzodiazepine)",
    ),
    col(
        "subject_prescriber_id",
        false,
        "text",
        "1999999999",
        "for outside_prescriber_acknowledged (required there): the outside prescriber",
    ),
    col("note", false, "text", "Function stable; continue", "the physician's note"),
];

const NALOXONE: &[Column] = &[
    col("event_id", true, "text", "NLX-5", "the event's id; unique key"),
    col("patient_id", true, "text", "P000123", "the patient"),
    col("occurred_on", true, "date", "2026-06-12", "date of the event"),
    col("kind", true, "offered|declined|dispensed", "dispensed", "what happened"),
];

const CONDITION_KINDS: &str = "cancer|sickle_cell|palliative|end_of_life|overdose_history|\
                               substance_use_disorder_history|sleep_disordered_breathing|overdose_or_sedation_signal";

const CONDITIONS: &[Column] = &[
    col("condition_id", true, "text", "DX-4410", "the source's diagnosis id; unique key"),
    col("patient_id", true, "text", "P000123", "the patient"),
    col("kind", true, CONDITION_KINDS, "sleep_disordered_breathing", "what the diagnosis means for the rules"),
    col("recorded_on", true, "date", "2024-08-19", "onset or date recorded"),
    col("status", false, "active|resolved", "active", "resolved retires it (history kinds stay); default active"),
    col("part2", false, "boolean", "false", "true for a 42 CFR Part 2 record"),
];

const OTHER_MEDICATIONS: &[Column] = &[
    col("medication_id", true, "text", "RX-90211", "the source's order or statement id; unique key"),
    col("patient_id", true, "text", "P000123", "the patient"),
    col("class", true, "benzodiazepine|oud_treatment", "benzodiazepine", "what the rules look for"),
    col("medication_text", true, "text", "alprazolam 0.5 MG Oral Tablet", "product name"),
    col("started_on", false, "date", "2026-01-10", "when the patient started it"),
    col("status", true, "active|stopped", "active", "stopped: the rules no longer count it"),
    col("part2", false, "boolean", "false", "true for a 42 CFR Part 2 record"),
];

/// The longest request note the store takes (`Store::record_refill_request_in` checks the same).
const MAX_REQUEST_NOTE_CHARS: usize = 2000;

const REFILL_REQUESTS: &[Column] = &[
    col("patient_id", true, "text", "P000123", "the patient"),
    col("requested_on", true, "date", "2026-12-04", "day the patient, pharmacy or EHR asked"),
    col(
        "kind",
        true,
        "routine|early|lost_or_stolen_replacement|dose_change",
        "routine",
        "what was asked for; with requested_on and patient_id, the request's unique key",
    ),
    col("channel", false, "staff|api|import", "staff", "how it reached the clinic (default import)"),
    col(
        "note",
        false,
        "text",
        "Travelling from the 12th",
        "what the patient or pharmacy said (at most 2,000 characters)",
    ),
];

impl CsvKind {
    pub const ALL: [CsvKind; 13] = [
        CsvKind::Physicians,
        CsvKind::Patients,
        CsvKind::Orders,
        CsvKind::Fills,
        CsvKind::Uds,
        CsvKind::Pdmp,
        CsvKind::Agreements,
        CsvKind::Tapers,
        CsvKind::Reviews,
        CsvKind::Naloxone,
        CsvKind::Conditions,
        CsvKind::OtherMedications,
        CsvKind::RefillRequests,
    ];

    /// The file-name prefix that selects this kind, also the canonical file name without `.csv`.
    pub fn file_prefix(self) -> &'static str {
        match self {
            CsvKind::Physicians => "physicians",
            CsvKind::Patients => "patients",
            CsvKind::Orders => "orders",
            CsvKind::Fills => "fills",
            CsvKind::Uds => "uds",
            CsvKind::Pdmp => "pdmp",
            CsvKind::Agreements => "agreements",
            CsvKind::Tapers => "tapers",
            CsvKind::Reviews => "reviews",
            CsvKind::Naloxone => "naloxone",
            CsvKind::Conditions => "conditions",
            CsvKind::OtherMedications => "other_medications",
            CsvKind::RefillRequests => "refill_requests",
        }
    }

    pub fn columns(self) -> &'static [Column] {
        match self {
            CsvKind::Physicians => PHYSICIANS,
            CsvKind::Patients => PATIENTS,
            CsvKind::Orders => ORDERS,
            CsvKind::Fills => FILLS,
            CsvKind::Uds => UDS,
            CsvKind::Pdmp => PDMP,
            CsvKind::Agreements => AGREEMENTS,
            CsvKind::Tapers => TAPERS,
            CsvKind::Reviews => REVIEWS,
            CsvKind::Naloxone => NALOXONE,
            CsvKind::Conditions => CONDITIONS,
            CsvKind::OtherMedications => OTHER_MEDICATIONS,
            CsvKind::RefillRequests => REFILL_REQUESTS,
        }
    }

    /// The kind named by a file name (`patients.csv`, `uds-april.csv`; case-insensitive), if any.
    pub fn from_file_name(file_name: &str) -> Option<CsvKind> {
        let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name).to_ascii_lowercase();
        let stem = base.strip_suffix(".csv")?;
        CsvKind::ALL.into_iter().find(|kind| {
            let prefix = kind.file_prefix();
            stem == prefix || stem.strip_prefix(prefix).is_some_and(|rest| rest.starts_with(['-', '_', '.']))
        })
    }

    /// The order files are applied in so that references resolve (patients before their orders).
    pub fn import_order(self) -> u8 {
        match self {
            CsvKind::Physicians => 0,
            CsvKind::Patients => 1,
            CsvKind::Orders => 2,
            _ => 3,
        }
    }
}

/// Parse one CSV file of the documented format. `file_name` picks the record type and names the file
/// in problems. Every problem of the file is returned together.
pub fn parse_csv(file_name: &str, bytes: &[u8]) -> Result<ClinicRecords, ImportError> {
    let mut problems = Problems::new(file_name);
    let Some(kind) = CsvKind::from_file_name(file_name) else {
        let names: Vec<String> = CsvKind::ALL.iter().map(|k| format!("{}*.csv", k.file_prefix())).collect();
        problems.push(
            Location::File,
            "",
            format!("unknown record type: the file name must be one of {}", names.join(", ")),
        );
        return problems.into_result(ClinicRecords::default());
    };
    let records = parse_kind(kind, bytes, &mut problems);
    problems.into_result(records)
}

fn parse_kind(kind: CsvKind, bytes: &[u8], problems: &mut Problems) -> ClinicRecords {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
    let mut rows = reader.records();
    let header = match rows.next() {
        Some(Ok(header)) => header,
        Some(Err(error)) => {
            problems.at_line(1, "", format!("unreadable header: {error}"));
            return ClinicRecords::default();
        }
        None => {
            problems.push(Location::File, "", "the file is empty: expected a header line");
            return ClinicRecords::default();
        }
    };
    let Some(index) = check_header(kind, &header, problems) else {
        return ClinicRecords::default();
    };
    let mut builder = Builder::new(kind);
    for row in rows {
        let record = match row {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, |p| p.line());
                problems.at_line(line, "", format!("unreadable CSV: {error}"));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(|field| field.trim().is_empty()) {
            continue;
        }
        if record.len() != header.len() {
            problems.at_line(line, "", format!("{} fields, but the header has {}", record.len(), header.len()));
            continue;
        }
        if !cells_within_bounds(&record, &header, line, problems) {
            continue;
        }
        let mut row = Row { record: &record, index: &index, line, problems };
        builder.add(&mut row);
    }
    builder.finish(problems)
}

/// The longest value any column may hold (the longest legitimate ones are medication texts and
/// agreement element lists, well under this).
pub const MAX_CELL_CHARS: usize = 1_000;

/// Whether every cell of a row is at most `MAX_CELL_CHARS` long and free of control characters (NUL,
/// line breaks inside quotes, escape sequences); each bad cell is a problem naming its column.
fn cells_within_bounds(
    record: &csv::StringRecord,
    header: &csv::StringRecord,
    line: u64,
    problems: &mut Problems,
) -> bool {
    let mut ok = true;
    for (position, cell) in record.iter().enumerate() {
        let column = header.get(position).map(str::trim).unwrap_or("");
        let chars = cell.chars().count();
        if chars > MAX_CELL_CHARS {
            problems.at_line(line, column, format!("{chars} characters, at most {MAX_CELL_CHARS} allowed"));
            ok = false;
        } else if cell.chars().any(char::is_control) {
            problems.at_line(line, column, "contains a control character (NUL, line break or similar)");
            ok = false;
        }
    }
    ok
}

/// Column positions by name, after checking that the header names known columns, each once, and
/// every required one.
fn check_header(
    kind: CsvKind,
    header: &csv::StringRecord,
    problems: &mut Problems,
) -> Option<HashMap<&'static str, usize>> {
    let columns = kind.columns();
    let mut index = HashMap::new();
    let mut ok = true;
    for (position, name) in header.iter().enumerate() {
        let name = name.trim();
        match columns.iter().find(|c| c.name == name) {
            Some(column) => {
                if index.insert(column.name, position).is_some() {
                    problems.at_line(1, name, "column appears twice in the header");
                    ok = false;
                }
            }
            None => {
                problems.at_line(1, name, format!("unknown column for {}.csv", kind.file_prefix()));
                ok = false;
            }
        }
    }
    for column in columns.iter().filter(|c| c.required) {
        if !index.contains_key(column.name) {
            problems.at_line(1, column.name, "required column is missing from the header");
            ok = false;
        }
    }
    ok.then_some(index)
}

/// One data row with typed getters; each getter records its own problem and returns `None`.
struct Row<'a> {
    record: &'a csv::StringRecord,
    index: &'a HashMap<&'static str, usize>,
    line: u64,
    problems: &'a mut Problems,
}

impl Row<'_> {
    fn raw(&self, name: &str) -> Option<&str> {
        let position = *self.index.get(name)?;
        self.record.get(position).map(str::trim).filter(|v| !v.is_empty())
    }

    fn problem(&mut self, field: &str, message: impl Into<String>) {
        self.problems.at_line(self.line, field, message);
    }

    fn origin(&self) -> Location {
        Location::Line(self.line)
    }

    fn text(&self, name: &str) -> Option<String> {
        self.raw(name).map(str::to_string)
    }

    fn required(&mut self, name: &str) -> Option<String> {
        let value = self.text(name);
        if value.is_none() {
            self.problem(name, "required value is empty");
        }
        value
    }

    fn parsed<T>(&mut self, name: &str, expected: &str, parse: impl Fn(&str) -> Option<T>) -> Option<T> {
        let raw = self.raw(name)?.to_string();
        let value = parse(&raw);
        if value.is_none() {
            self.problem(name, format!("expected {expected}, found {raw:?}"));
        }
        value
    }

    /// A required typed value: `None` (with a problem) when empty or malformed.
    fn required_parsed<T>(&mut self, name: &str, expected: &str, parse: impl Fn(&str) -> Option<T>) -> Option<T> {
        if self.raw(name).is_none() {
            self.problem(name, "required value is empty");
            return None;
        }
        self.parsed(name, expected, parse)
    }

    fn required_date(&mut self, name: &str) -> Option<NaiveDate> {
        self.required_parsed(name, "a date YYYY-MM-DD", parse_date)
    }

    /// An optional value that must be well-formed when present: `Ok(None)` for empty, `Err(())` for
    /// malformed (the problem is recorded), so callers can tell "absent" from "bad".
    fn optional<T>(&mut self, name: &str, expected: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Option<T>, ()> {
        if self.raw(name).is_none() {
            return Ok(None);
        }
        self.parsed(name, expected, parse).map(Some).ok_or(())
    }

    fn email(&mut self, name: &str) -> Result<Option<String>, ()> {
        self.optional(name, "an email address", |v| {
            let (local, domain) = v.split_once('@')?;
            (!local.is_empty() && domain.contains('.') && !v.contains(char::is_whitespace)).then(|| v.to_string())
        })
    }

    fn part2(&mut self) -> Option<Confidentiality> {
        let flag = self.optional("part2", "true or false", parse_bool).ok()?;
        Some(if flag == Some(true) { Confidentiality::Part2 } else { Confidentiality::Normal })
    }
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    // Two-digit years and typos such as 0196 parse as real dates; no clinic record is that old. At the
    // other end, 9999-12-31 is a placeholder ("unknown"), not a date a record can carry.
    let plausible = NaiveDate::from_ymd_opt(1900, 1, 1)?..=NaiveDate::from_ymd_opt(2100, 12, 31)?;
    plausible.contains(&date).then_some(date)
}

fn parse_condition_kind(text: &str) -> Option<ClinicalFlagKind> {
    Some(match text {
        "cancer" => ClinicalFlagKind::Cancer,
        "sickle_cell" => ClinicalFlagKind::SickleCell,
        "palliative" => ClinicalFlagKind::Palliative,
        "end_of_life" => ClinicalFlagKind::EndOfLife,
        "overdose_history" => ClinicalFlagKind::OverdoseHistory,
        "substance_use_disorder_history" => ClinicalFlagKind::SubstanceUseDisorderHistory,
        "sleep_disordered_breathing" => ClinicalFlagKind::SleepDisorderedBreathing,
        "overdose_or_sedation_signal" => ClinicalFlagKind::OverdoseOrSedationSignal,
        _ => return None,
    })
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn parse_positive_number(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0)
}

fn parse_days(text: &str) -> Option<u32> {
    text.parse::<u32>().ok().filter(|v| (1..=366).contains(v))
}

fn parse_sex(text: &str) -> Option<Sex> {
    match text {
        "female" => Some(Sex::Female),
        "male" => Some(Sex::Male),
        "other" => Some(Sex::Other),
        "unknown" => Some(Sex::Unknown),
        _ => None,
    }
}

fn parse_tier(text: &str) -> Option<RiskTier> {
    match text {
        "low" => Some(RiskTier::Low),
        "moderate" => Some(RiskTier::Moderate),
        "high" => Some(RiskTier::High),
        _ => None,
    }
}

fn parse_dose_unit(text: &str) -> Option<DoseUnit> {
    match text {
        "mg" => Some(DoseUnit::Milligram),
        "mcg" => Some(DoseUnit::Microgram),
        "mL" | "ml" => Some(DoseUnit::Milliliter),
        "unit" => Some(DoseUnit::DoseFormUnit),
        _ => None,
    }
}

fn parse_purpose(text: &str) -> Option<OrderPurpose> {
    match text {
        "pain" => Some(OrderPurpose::Pain),
        "oud" => Some(OrderPurpose::OpioidUseDisorder),
        _ => None,
    }
}

fn parse_uds_kind(text: &str) -> Option<UdsKind> {
    match text {
        "scheduled" => Some(UdsKind::Scheduled),
        "for_cause" => Some(UdsKind::ForCause),
        _ => None,
    }
}

fn parse_detected(text: &str) -> Option<bool> {
    match text {
        "positive" => Some(true),
        "negative" => Some(false),
        _ => None,
    }
}

fn parse_drug_class(text: &str) -> Option<DrugClass> {
    match text {
        "opioid" => Some(DrugClass::Opioid),
        "benzodiazepine" => Some(DrugClass::Benzodiazepine),
        "other_controlled" => Some(DrugClass::OtherControlled),
        "oud_treatment" => Some(DrugClass::OudTreatment),
        _ => None,
    }
}

fn parse_taper_state(text: &str) -> Option<TaperState> {
    match text {
        "active" => Some(TaperState::Active),
        "paused" => Some(TaperState::Paused),
        "completed" => Some(TaperState::Completed),
        _ => None,
    }
}

fn parse_step_number(text: &str) -> Option<u32> {
    text.parse::<u32>().ok().filter(|v| *v >= 1)
}

/// Rows that share a key (one UDS specimen, one PDMP review, one taper plan) and must agree on the
/// columns that describe the whole group.
struct Group<H, I> {
    first_line: u64,
    head: H,
    items: Vec<I>,
}

/// Columns every row of one specimen shares: patient, collected, kind, confirmatory, reviewed, part 2,
/// specimen validity.
type UdsHead = (String, NaiveDate, UdsKind, bool, Option<NaiveDate>, Confidentiality, SpecimenValidity);
/// Columns every row of one PDMP review shares: patient, reviewed on.
type PdmpHead = (String, NaiveDate);
/// Columns every row of one taper plan shares: patient, state, started, physician, rationale.
type TaperHead = (String, TaperState, NaiveDate, PrescriberId, String);
/// Groups in order of first appearance, by key.
type Groups<H, I> = Vec<(String, Group<H, I>)>;

/// Accumulates the records of one file, checking keys are unique (or groups consistent).
struct Builder {
    kind: CsvKind,
    records: ClinicRecords,
    /// Key -> first line, for duplicate detection in one-row-per-record kinds.
    seen: HashMap<String, u64>,
    /// MRN -> first line: two patients with one MRN would clash on the store's unique MRN.
    seen_mrn: HashMap<String, u64>,
    uds_groups: Groups<UdsHead, UdsAnalyteResult>,
    pdmp_groups: Groups<PdmpHead, PdmpFinding>,
    taper_groups: Groups<TaperHead, TaperStepRecord>,
    group_index: HashMap<String, usize>,
}

impl Builder {
    fn new(kind: CsvKind) -> Builder {
        Builder {
            kind,
            records: ClinicRecords::default(),
            seen: HashMap::new(),
            seen_mrn: HashMap::new(),
            uds_groups: Vec::new(),
            pdmp_groups: Vec::new(),
            taper_groups: Vec::new(),
            group_index: HashMap::new(),
        }
    }

    fn unique_key(&mut self, row: &mut Row<'_>, field: &str, key: &str) -> bool {
        if let Some(first) = self.seen.get(key) {
            row.problem(field, format!("duplicate id {key:?} (first on line {first})"));
            return false;
        }
        self.seen.insert(key.to_string(), row.line);
        true
    }

    fn add(&mut self, row: &mut Row<'_>) {
        match self.kind {
            CsvKind::Physicians => self.add_physician(row),
            CsvKind::Patients => self.add_patient(row),
            CsvKind::Orders => self.add_order(row),
            CsvKind::Fills => self.add_fill(row),
            CsvKind::Uds => self.add_uds(row),
            CsvKind::Pdmp => self.add_pdmp(row),
            CsvKind::Agreements => self.add_agreement(row),
            CsvKind::Tapers => self.add_taper(row),
            CsvKind::Reviews => self.add_review(row),
            CsvKind::Naloxone => self.add_naloxone(row),
            CsvKind::Conditions => self.add_condition(row),
            CsvKind::OtherMedications => self.add_other_medication(row),
            CsvKind::RefillRequests => self.add_refill_request(row),
        }
    }

    fn add_physician(&mut self, row: &mut Row<'_>) {
        let id = row.required("prescriber_id");
        let display_name = row.required("display_name");
        let role =
            row.optional("role", "physician, nurse_practitioner, physician_assistant or other", PrescriberRole::parse);
        let (Some(id), Some(display_name), Ok(role)) = (id, display_name, role) else {
            return;
        };
        if self.unique_key(row, "prescriber_id", &id) {
            self.records.physicians.push(PhysicianRecord {
                origin: row.origin(),
                prescriber_id: PrescriberId(id),
                display_name,
                role: role.unwrap_or(PrescriberRole::Physician),
            });
        }
    }

    fn add_patient(&mut self, row: &mut Row<'_>) {
        let id = row.required("patient_id");
        let mrn = row.text("mrn");
        let family_name = row.required("family_name");
        let given_name = row.required("given_name");
        let birth_date = row.required_date("birth_date");
        let sex = row.required_parsed("sex", "female, male, other or unknown", parse_sex);
        let email = row.email("email");
        let phone = row.text("phone");
        let email_consent = row.optional("email_consent", "true or false", parse_bool);
        let contact_preference =
            row.optional("contact_preference", "email, phone, portal or none", ContactPreference::parse);
        let prescriber = row.text("prescriber_id").map(PrescriberId);
        let risk_tier = row.optional("risk_tier", "low, moderate or high", parse_tier);
        let part2 = row.optional("part2", "true or false", parse_bool);
        let previous_prescriber = row.text("previous_prescriber").map(PrescriberId);
        let (
            Some(id),
            Some(family_name),
            Some(given_name),
            Some(birth_date),
            Some(sex),
            Ok(email),
            Ok(email_consent),
            Ok(contact_preference),
            Ok(risk_tier),
            Ok(part2),
        ) = (id, family_name, given_name, birth_date, sex, email, email_consent, contact_preference, risk_tier, part2)
        else {
            return;
        };
        if let Some(mrn) = &mrn {
            if let Some(first) = self.seen_mrn.get(mrn) {
                row.problem("mrn", format!("duplicate MRN {mrn:?} (first on line {first})"));
                return;
            }
            self.seen_mrn.insert(mrn.clone(), row.line);
        }
        if self.unique_key(row, "patient_id", &id) {
            self.records.patients.push(PatientRecord {
                origin: row.origin(),
                external_id: id,
                mrn,
                family_name,
                given_name,
                birth_date,
                sex,
                email,
                phone,
                email_consent: email_consent.unwrap_or(false),
                contact_preference: contact_preference.unwrap_or_default(),
                part2: part2.unwrap_or(false),
                prescriber_of_record: prescriber,
                risk_tier,
                previous_prescriber,
                // The clinic writes its own CSV: every patient in it is the clinic's.
                enrol_when_new: true,
            });
        }
    }

    fn add_order(&mut self, row: &mut Row<'_>) {
        let id = row.required("order_id");
        let patient = row.required("patient_id");
        let status = row.required_parsed("status", "active, on-hold, stopped or completed", OrderStatus::parse);
        let authored_on = row.required_date("authored_on");
        let rxcui = row.optional("rxcui", "an RxNorm code (digits)", |v| {
            v.chars().all(|c| c.is_ascii_digit()).then(|| v.to_string())
        });
        let text = row.text("medication_text");
        if matches!(rxcui, Ok(None)) && text.is_none() {
            row.problem("rxcui", "rxcui or medication_text is required");
        }
        let dose_value = row.optional("dose_value", "a positive number", parse_positive_number);
        let dose_unit = row.optional("dose_unit", "mg, mcg, mL or unit", parse_dose_unit);
        let dose = match (dose_value, dose_unit) {
            (Ok(Some(value)), Ok(Some(unit))) => Ok(Some(DoseQuantity { value, unit })),
            (Ok(None), Ok(None)) => Ok(None),
            (Ok(Some(_)), Ok(None)) => {
                row.problem("dose_unit", "required when dose_value is given");
                Err(())
            }
            (Ok(None), Ok(Some(_))) => {
                row.problem("dose_value", "required when dose_unit is given");
                Err(())
            }
            _ => Err(()),
        };
        let doses_per_day = row.optional("doses_per_day", "a positive number", parse_positive_number);
        let days_supply = row.optional("days_supply", "a whole number of days from 1 to 366", parse_days);
        let quantity = row.optional("dispense_quantity", "a positive number", parse_positive_number);
        let prescriber = row.text("prescriber_id").map(PrescriberId);
        let purpose = row.optional("purpose", "pain or oud", parse_purpose);
        let confidentiality = row.part2();
        let (
            Some(id),
            Some(patient),
            Some(status),
            Some(authored_on),
            Ok(rxcui),
            Ok(dose),
            Ok(doses_per_day),
            Ok(days_supply),
            Ok(quantity),
            Ok(purpose),
            Some(confidentiality),
        ) = (
            id,
            patient,
            status,
            authored_on,
            rxcui,
            dose,
            doses_per_day,
            days_supply,
            quantity,
            purpose,
            confidentiality,
        )
        else {
            return;
        };
        if rxcui.is_none() && text.is_none() {
            return;
        }
        if self.unique_key(row, "order_id", &id) {
            self.records.orders.push(OrderRecord {
                origin: row.origin(),
                patient_external_id: patient,
                status,
                authored_on: Some(authored_on),
                order: MedicationOrder {
                    id,
                    rxcui,
                    text,
                    dose,
                    doses_per_day,
                    days_supply,
                    dispense_quantity: quantity,
                    prescriber,
                    purpose: purpose.unwrap_or_default(),
                    confidentiality,
                },
            });
        }
    }

    fn add_fill(&mut self, row: &mut Row<'_>) {
        let id = row.required("fill_id");
        let patient = row.required("patient_id");
        let order_id = row.text("order_id");
        let filled_on = row.required_date("filled_on");
        let days_supply = row.required_parsed("days_supply", "a whole number of days from 1 to 366", parse_days);
        let quantity = row.optional("quantity", "a positive number", parse_positive_number);
        let (Some(id), Some(patient), Some(filled_on), Some(days_supply), Ok(quantity)) =
            (id, patient, filled_on, days_supply, quantity)
        else {
            return;
        };
        if self.unique_key(row, "fill_id", &id) {
            self.records.fills.push(FillRecord {
                origin: row.origin(),
                external_id: id,
                patient_external_id: patient,
                fill: Fill { filled_on, days_supply, order_id, quantity },
            });
        }
    }

    fn add_agreement(&mut self, row: &mut Row<'_>) {
        let id = row.required("agreement_id");
        let patient = row.required("patient_id");
        let signed_on = row.required_date("signed_on");
        let prescriber = row.required("prescriber_id");
        let text_version = row.required("text_version");
        let elements: Vec<String> = row
            .text("elements")
            .map(|v| v.split(';').map(str::trim).filter(|e| !e.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        let voided_on = row.optional("voided_on", "a date YYYY-MM-DD", parse_date);
        let (Some(id), Some(patient), Some(signed_on), Some(prescriber), Some(text_version), Ok(voided_on)) =
            (id, patient, signed_on, prescriber, text_version, voided_on)
        else {
            return;
        };
        if voided_on.is_some_and(|voided| voided < signed_on) {
            row.problem("voided_on", "is before signed_on");
            return;
        }
        if self.unique_key(row, "agreement_id", &id) {
            self.records.agreements.push(AgreementRecord {
                origin: row.origin(),
                external_id: id,
                patient_external_id: patient,
                agreement: AgreementFacts {
                    signed_on,
                    prescriber_of_record: PrescriberId(prescriber),
                    text_version,
                    elements,
                    voided_on,
                },
            });
        }
    }

    fn add_review(&mut self, row: &mut Row<'_>) {
        let id = row.required("review_id");
        let patient = row.required("patient_id");
        let reviewed_on = row.required_date("reviewed_on");
        let physician = row.required("physician_id");
        let kind = row.required_parsed(
            "kind",
            "benefit_risk, benzodiazepine_acknowledged or outside_prescriber_acknowledged",
            |v| match v {
                "benefit_risk" | "benzodiazepine_acknowledged" | "outside_prescriber_acknowledged" => {
                    Some(v.to_string())
                }
                _ => None,
            },
        );
        let subject = row.text("subject_prescriber_id");
        let class = row.optional(
            "subject_drug_class",
            "opioid, benzodiazepine, other_controlled or oud_treatment",
            parse_drug_class,
        );
        let note = row.text("note");
        let Ok(class) = class else { return };
        let kind = match (kind.as_deref(), subject) {
            (Some("benefit_risk"), _) => Some(ReviewKind::BenefitRisk),
            (Some("benzodiazepine_acknowledged"), _) => Some(ReviewKind::BenzodiazepineAcknowledged),
            (Some(_), Some(subject)) => Some(match class {
                Some(class) => ReviewKind::OutsidePrescriberClassAcknowledged(PrescriberId(subject), class),
                None => ReviewKind::OutsidePrescriberAcknowledged(PrescriberId(subject)),
            }),
            (Some(_), None) => {
                row.problem("subject_prescriber_id", "required for outside_prescriber_acknowledged");
                None
            }
            (None, _) => None,
        };
        let (Some(id), Some(patient), Some(reviewed_on), Some(physician), Some(kind)) =
            (id, patient, reviewed_on, physician, kind)
        else {
            return;
        };
        if self.unique_key(row, "review_id", &id) {
            self.records.reviews.push(ReviewRecord {
                origin: row.origin(),
                external_id: id,
                patient_external_id: patient,
                review: PhysicianReview { reviewed_on, physician: PrescriberId(physician), kind },
                note,
            });
        }
    }

    fn add_naloxone(&mut self, row: &mut Row<'_>) {
        let id = row.required("event_id");
        let patient = row.required("patient_id");
        let on = row.required_date("occurred_on");
        let kind = row.required_parsed("kind", "offered, declined or dispensed", |v| match v {
            "offered" => Some(NaloxoneEventKind::Offered),
            "declined" => Some(NaloxoneEventKind::Declined),
            "dispensed" => Some(NaloxoneEventKind::Dispensed),
            _ => None,
        });
        let (Some(id), Some(patient), Some(on), Some(kind)) = (id, patient, on, kind) else {
            return;
        };
        if self.unique_key(row, "event_id", &id) {
            self.records.naloxone.push(NaloxoneRecord {
                origin: row.origin(),
                external_id: id,
                patient_external_id: patient,
                event: NaloxoneEvent { on, kind },
            });
        }
    }

    fn add_condition(&mut self, row: &mut Row<'_>) {
        let id = row.required("condition_id");
        let patient = row.required("patient_id");
        let kind = row.required_parsed("kind", &CONDITION_KINDS.replace('|', ", "), parse_condition_kind);
        let recorded_on = row.required_date("recorded_on");
        let resolved = row.optional("status", "active or resolved", |v| match v {
            "active" => Some(false),
            "resolved" => Some(true),
            _ => None,
        });
        let confidentiality = row.part2();
        let (Some(id), Some(patient), Some(kind), Some(recorded_on), Ok(resolved), Some(confidentiality)) =
            (id, patient, kind, recorded_on, resolved, confidentiality)
        else {
            return;
        };
        if self.unique_key(row, "condition_id", &id) {
            self.records.flags.push(FlagRecord {
                origin: row.origin(),
                external_id: id,
                patient_external_id: patient,
                flag: ClinicalFlag { kind, recorded_on, confidentiality },
                dated: true,
                active: resolved != Some(true) || kind.is_history(),
            });
        }
    }

    fn add_other_medication(&mut self, row: &mut Row<'_>) {
        let id = row.required("medication_id");
        let patient = row.required("patient_id");
        let class = row.required_parsed("class", "benzodiazepine or oud_treatment", |v| match v {
            "benzodiazepine" => Some(OtherMedicationClass::Benzodiazepine),
            "oud_treatment" => Some(OtherMedicationClass::OudTreatment),
            _ => None,
        });
        let text = row.required("medication_text");
        let started_on = row.optional("started_on", "a date YYYY-MM-DD", parse_date);
        let active = row.required_parsed("status", "active or stopped", |v| match v {
            "active" => Some(true),
            "stopped" => Some(false),
            _ => None,
        });
        let confidentiality = row.part2();
        let (Some(id), Some(patient), Some(class), Some(text), Ok(started_on), Some(active), Some(confidentiality)) =
            (id, patient, class, text, started_on, active, confidentiality)
        else {
            return;
        };
        if self.unique_key(row, "medication_id", &id) {
            self.records.other_medications.push(OtherMedicationRecord {
                origin: row.origin(),
                external_id: id,
                patient_external_id: patient,
                medication: OtherMedication { class, text, started_on, active, confidentiality },
            });
        }
    }

    fn add_refill_request(&mut self, row: &mut Row<'_>) {
        let patient = row.required("patient_id");
        let requested_on = row.required_date("requested_on");
        let kind = row.required_parsed(
            "kind",
            "routine, early, lost_or_stolen_replacement or dose_change",
            RequestKind::parse,
        );
        let channel = row.optional("channel", "staff, api or import", RequestChannel::parse);
        let note = row.text("note");
        if note.as_ref().is_some_and(|n| n.chars().count() > MAX_REQUEST_NOTE_CHARS) {
            row.problem("note", format!("at most {MAX_REQUEST_NOTE_CHARS} characters"));
            return;
        }
        let (Some(patient), Some(requested_on), Some(kind), Ok(channel)) = (patient, requested_on, kind, channel)
        else {
            return;
        };
        // One request per patient, day and kind: the key a re-import finds the stored request by.
        let key = format!("{patient}\u{1f}{requested_on}\u{1f}{}", kind.as_str());
        if let Some(first) = self.seen.get(&key) {
            row.problem(
                "kind",
                format!(
                    "a {} request of patient {patient:?} on {requested_on} is already on line {first}",
                    kind.as_str()
                ),
            );
            return;
        }
        self.seen.insert(key, row.line);
        self.records.refill_requests.push(RefillRequestRecord {
            origin: row.origin(),
            patient_external_id: patient,
            requested_on,
            kind,
            channel: channel.unwrap_or(RequestChannel::Import),
            note,
        });
    }

    /// Find or open the group of `key`; a group whose shared columns differ from its first row is a
    /// problem on the later row.
    fn group_slot(&mut self, key: &str) -> Option<usize> {
        self.group_index.get(key).copied()
    }

    fn add_uds(&mut self, row: &mut Row<'_>) {
        let id = row.required("specimen_id");
        let patient = row.required("patient_id");
        let collected_on = row.required_date("collected_on");
        let kind = row.required_parsed("kind", "scheduled or for_cause", parse_uds_kind);
        let confirmatory = row.required_parsed("confirmatory", "true or false", parse_bool);
        let assay = row.required("assay").map(|v| v.to_lowercase());
        let analyte = row.required("analyte").map(|v| v.to_lowercase());
        let detected = row.required_parsed("result", "positive or negative", parse_detected);
        let reviewed_on = row.optional("reviewed_on", "a date YYYY-MM-DD", parse_date);
        let confidentiality = row.part2();
        let validity = row.optional("specimen_validity", "valid, dilute or invalid", |v| {
            SpecimenValidity::parse(v).filter(|validity| *validity != SpecimenValidity::NotReported)
        });
        let Ok(validity) = validity else { return };
        let validity = validity.unwrap_or_default();
        let (
            Some(id),
            Some(patient),
            Some(collected_on),
            Some(kind),
            Some(confirmatory),
            Some(assay),
            Some(analyte),
            Some(detected),
            Ok(reviewed_on),
            Some(confidentiality),
        ) = (id, patient, collected_on, kind, confirmatory, assay, analyte, detected, reviewed_on, confidentiality)
        else {
            return;
        };
        let head = (patient, collected_on, kind, confirmatory, reviewed_on, confidentiality, validity);
        let item = UdsAnalyteResult { assay, analyte, detected };
        match self.group_slot(&id) {
            Some(slot) => {
                let group = &mut self.uds_groups[slot].1;
                if group.head != head {
                    row.problem(
                        "specimen_id",
                        format!(
                            "rows of specimen {id:?} disagree on patient_id, collected_on, kind, confirmatory, \
                             reviewed_on, part2 or specimen_validity (first row on line {})",
                            group.first_line
                        ),
                    );
                } else {
                    group.items.push(item);
                }
            }
            None => {
                self.group_index.insert(id.clone(), self.uds_groups.len());
                self.uds_groups.push((id, Group { first_line: row.line, head, items: vec![item] }));
            }
        }
    }

    fn add_pdmp(&mut self, row: &mut Row<'_>) {
        let id = row.required("review_id");
        let patient = row.required("patient_id");
        let reviewed_on = row.required_date("reviewed_on");
        let finding_prescriber = row.text("finding_prescriber_id");
        let finding_class = row.optional(
            "finding_drug_class",
            "opioid, benzodiazepine, other_controlled or oud_treatment",
            parse_drug_class,
        );
        let finding_filled_on = row.optional("finding_filled_on", "a date YYYY-MM-DD", parse_date);
        let product = row.text("finding_product");
        let rxcui = row.text("finding_rxcui");
        let quantity = row.optional("finding_quantity", "a positive number", |v| {
            v.parse::<f64>().ok().filter(|q| q.is_finite() && *q > 0.0)
        });
        let days_supply = row.optional("finding_days_supply", "a whole number of days from 1", |v| {
            v.parse::<u32>().ok().filter(|d| *d > 0)
        });
        let (Ok(quantity), Ok(days_supply)) = (quantity, days_supply) else { return };
        let finding = match (finding_prescriber, finding_class, finding_filled_on) {
            (None, Ok(None), Ok(None)) => Ok(None),
            (Some(prescriber), Ok(Some(drug_class)), Ok(Some(filled_on))) => Ok(Some(PdmpFinding {
                prescriber: PrescriberId(prescriber),
                drug_class,
                filled_on,
                product,
                rxcui,
                quantity,
                days_supply,
            })),
            (_, Err(()), _) | (_, _, Err(())) => Err(()),
            _ => {
                row.problem(
                    "finding_prescriber_id",
                    "a finding needs finding_prescriber_id, finding_drug_class and finding_filled_on together",
                );
                Err(())
            }
        };
        let (Some(id), Some(patient), Some(reviewed_on), Ok(finding)) = (id, patient, reviewed_on, finding) else {
            return;
        };
        let head = (patient, reviewed_on);
        match self.group_slot(&id) {
            Some(slot) => {
                let group = &mut self.pdmp_groups[slot].1;
                if group.head != head {
                    row.problem(
                        "review_id",
                        format!(
                            "rows of review {id:?} disagree on patient_id or reviewed_on (first row on line {})",
                            group.first_line
                        ),
                    );
                } else {
                    group.items.extend(finding);
                }
            }
            None => {
                self.group_index.insert(id.clone(), self.pdmp_groups.len());
                let items = finding.into_iter().collect();
                self.pdmp_groups.push((id, Group { first_line: row.line, head, items }));
            }
        }
    }

    fn add_taper(&mut self, row: &mut Row<'_>) {
        let id = row.required("taper_id");
        let patient = row.required("patient_id");
        let state = row.required_parsed("state", "active, paused or completed", parse_taper_state);
        let started_on = row.required_date("started_on");
        let physician = row.required("physician_id");
        let rationale = row.required("rationale");
        let step_number = row.required_parsed("step_number", "a whole number from 1", parse_step_number);
        let step_starts_on = row.required_date("step_starts_on");
        let rxcui = row.optional("rxcui", "an RxNorm code (digits)", |v| {
            v.chars().all(|c| c.is_ascii_digit()).then(|| v.to_string())
        });
        let text = row.text("medication_text");
        if matches!(rxcui, Ok(None)) && text.is_none() {
            row.problem("rxcui", "rxcui or medication_text is required");
        }
        let dose_value = row.required_parsed("dose_value", "a positive number", parse_positive_number);
        let dose_unit = row.required_parsed("dose_unit", "mg, mcg, mL or unit", parse_dose_unit);
        let doses_per_day = row.required_parsed("doses_per_day", "a positive number", parse_positive_number);
        let step_mme = row.optional("step_daily_mme", "a number of MME >= 0", |v| {
            v.parse::<f64>().ok().filter(|m| m.is_finite() && *m >= 0.0)
        });
        let (
            Some(id),
            Some(patient),
            Some(state),
            Some(started_on),
            Some(physician),
            Some(rationale),
            Some(step_number),
            Some(starts_on),
            Ok(rxcui),
            Some(dose_value),
            Some(dose_unit),
            Some(doses_per_day),
            Ok(daily_mme),
        ) = (
            id,
            patient,
            state,
            started_on,
            physician,
            rationale,
            step_number,
            step_starts_on,
            rxcui,
            dose_value,
            dose_unit,
            doses_per_day,
            step_mme,
        )
        else {
            return;
        };
        if rxcui.is_none() && text.is_none() {
            return;
        }
        if starts_on < started_on {
            row.problem("step_starts_on", "is before the plan's started_on");
            return;
        }
        let head = (patient, state, started_on, PrescriberId(physician.clone()), rationale);
        let slot = match self.group_slot(&id) {
            Some(slot) => {
                let group = &self.taper_groups[slot].1;
                if group.head != head {
                    row.problem(
                        "taper_id",
                        format!(
                            "rows of taper {id:?} disagree on patient_id, state, started_on, physician_id or \
                             rationale (first row on line {})",
                            group.first_line
                        ),
                    );
                    return;
                }
                slot
            }
            None => {
                self.group_index.insert(id.clone(), self.taper_groups.len());
                self.taper_groups.push((id.clone(), Group { first_line: row.line, head, items: Vec::new() }));
                self.taper_groups.len() - 1
            }
        };
        let steps = &mut self.taper_groups[slot].1.items;
        let product_number =
            steps.iter().filter(|s| s.step_number == step_number).map(|s| s.regimen.len()).sum::<usize>() + 1;
        let order = MedicationOrder {
            id: format!("{id}/step-{step_number}/{product_number}"),
            rxcui,
            text,
            dose: Some(DoseQuantity { value: dose_value, unit: dose_unit }),
            doses_per_day: Some(doses_per_day),
            days_supply: None,
            dispense_quantity: None,
            prescriber: Some(PrescriberId(physician)),
            purpose: OrderPurpose::Pain,
            confidentiality: Confidentiality::Normal,
        };
        match steps.iter_mut().find(|s| s.step_number == step_number) {
            Some(step) if step.starts_on != starts_on || step.daily_mme != daily_mme => {
                row.problem(
                    "step_starts_on",
                    format!("rows of step {step_number} of taper {id:?} disagree on step_starts_on or step_daily_mme"),
                );
            }
            Some(step) => step.regimen.push(order),
            None => steps.push(TaperStepRecord { step_number, starts_on, regimen: vec![order], daily_mme }),
        }
    }

    fn finish(mut self, problems: &mut Problems) -> ClinicRecords {
        for (id, group) in self.uds_groups {
            let (patient, collected_on, kind, confirmatory, reviewed_on, confidentiality, specimen_validity) =
                group.head;
            self.records.uds.push(UdsRecord {
                origin: Location::Line(group.first_line),
                external_id: id,
                patient_external_id: patient,
                result: UdsResult {
                    collected_on,
                    kind,
                    confirmatory,
                    analytes: group.items,
                    physician_reviewed_on: reviewed_on,
                    confidentiality,
                    specimen_validity,
                },
            });
        }
        for (id, group) in self.pdmp_groups {
            let (patient, reviewed_on) = group.head;
            self.records.pdmp.push(PdmpRecord {
                origin: Location::Line(group.first_line),
                external_id: id,
                patient_external_id: patient,
                review: PdmpReview { reviewed_on, findings: group.items },
            });
        }
        for (id, group) in self.taper_groups {
            let (patient, state, started_on, physician, rationale) = group.head;
            let mut steps = group.items;
            steps.sort_by_key(|s| s.step_number);
            let numbered_from_one = steps.iter().enumerate().all(|(i, s)| s.step_number as usize == i + 1);
            let dates_ascend = steps.windows(2).all(|w| w[0].starts_on < w[1].starts_on);
            if !numbered_from_one || !dates_ascend {
                problems.at_line(
                    group.first_line,
                    "step_number",
                    format!("steps of taper {id:?} must be numbered 1, 2, 3... with later steps starting later"),
                );
                continue;
            }
            self.records.tapers.push(TaperRecord {
                origin: Location::Line(group.first_line),
                external_id: id,
                patient_external_id: patient,
                state,
                started_on,
                physician,
                rationale,
                steps,
            });
        }
        self.records
    }
}
