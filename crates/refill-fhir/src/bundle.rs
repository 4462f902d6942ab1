//! Bundles and CDS Hooks requests -> one `FhirPatientRecord` per patient, resources grouped by their
//! subject / patient reference. Every problem of every resource is collected before failing.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;
use refill_rules::{AgreementFacts, Confidentiality, Fill, PatientFacts, PatientId, PdmpReview, PhysicianReview};
use refill_rules::{
    MedicationOrder, NaloxoneEvent, NaloxoneEventKind, OrderPurpose, OtherMedication, OtherMedicationClass,
    UdsAnalyteResult, UdsKind, UdsResult,
};
use serde_json::Value;

use crate::condition::{MappedCondition, map_condition};
use crate::dispense::{MappedDispense, map_dispense};
use crate::error::FhirError;
use crate::medication::{
    MappedMedicationRequest, MedicationClass, MedicationLookup, map_medication_request, map_medication_statement,
};
use crate::monitoring::{Monitoring, UdsLineResult, map_observation, map_procedure};
use crate::patient::{Demographics, parse_patient};
use crate::read::reference_text;
use crate::{agreement, read, resource_types};

/// Everything a bundle says about one patient, mapped to domain types.
#[derive(Debug, Clone, PartialEq)]
pub struct FhirPatientRecord {
    /// The Patient resource id (`abc`); the reference is `Patient/abc`.
    pub fhir_id: String,
    /// `None` when the bundle only references the patient without the Patient resource.
    pub demographics: Option<Demographics>,
    /// Every MedicationRequest of the patient, any status or class, in bundle order.
    pub medication_requests: Vec<MappedMedicationRequest>,
    pub fills: Vec<Fill>,
    pub uds_results: Vec<UdsResult>,
    pub pdmp_reviews: Vec<PdmpReview>,
    pub physician_reviews: Vec<PhysicianReview>,
    pub agreements: Vec<AgreementFacts>,
    /// Benzodiazepine and opioid-use-disorder treatment orders and statements, current ones `active`
    /// (the rules read only those) and stopped ones inactive, so a re-import can clear them.
    pub other_medications: Vec<OtherMedication>,
    /// The resource each of `other_medications` came from (`MedicationRequest/x`, same order).
    pub other_medication_sources: Vec<String>,
    pub naloxone_events: Vec<NaloxoneEvent>,
    pub conditions: Vec<MappedCondition>,
}

impl FhirPatientRecord {
    /// A record with nothing in it yet (a patient the EHR sent no resources about).
    pub fn new(fhir_id: String) -> Self {
        FhirPatientRecord {
            fhir_id,
            demographics: None,
            medication_requests: Vec::new(),
            fills: Vec::new(),
            uds_results: Vec::new(),
            pdmp_reviews: Vec::new(),
            physician_reviews: Vec::new(),
            agreements: Vec::new(),
            other_medications: Vec::new(),
            other_medication_sources: Vec::new(),
            naloxone_events: Vec::new(),
            conditions: Vec::new(),
        }
    }

    /// `Patient/<id>`.
    pub fn reference(&self) -> String {
        format!("Patient/{}", self.fhir_id)
    }

    /// Active opioid orders of any purpose: what `mme::daily_mme` is given (it reports opioid use
    /// disorder treatment and buprenorphine as excluded).
    pub fn active_opioid_orders(&self) -> Vec<MedicationOrder> {
        self.medication_requests
            .iter()
            .filter(|request| request.active && request.class == MedicationClass::Opioid)
            .map(|request| request.order.clone())
            .collect()
    }

    /// Active orders the engine does not recognise as an opioid, benzodiazepine or naloxone, with why:
    /// listed next to the MME so a new opioid missing from the drug table never drops out of the total
    /// unseen. (`MedicationRequest/x`, label, reason.)
    pub fn unrecognised_orders(&self) -> Vec<(String, String, String)> {
        self.unrecognised_orders_with_status()
            .into_iter()
            .filter(|(_, _, _, active)| *active)
            .map(|(id, label, why, _)| (id, label, why))
            .collect()
    }

    /// Every order the engine does not recognise, active or stopped (an import keeps the list current).
    /// (`MedicationRequest/x`, label, reason, active.)
    pub fn unrecognised_orders_with_status(&self) -> Vec<(String, String, String, bool)> {
        self.medication_requests
            .iter()
            .filter(|request| request.class == MedicationClass::Other)
            .map(|request| {
                let order = &request.order;
                let why = match (&order.rxcui, &order.text) {
                    (Some(code), _) => format!("not recognised as an opioid: RxNorm {code} is not in the drug table"),
                    (None, Some(_)) => {
                        "not recognised as an opioid: no RxNorm code, and the text names no opioid ingredient or \
                         brand in the drug table"
                            .to_string()
                    }
                    (None, None) => "not recognised as an opioid: the order names no medication".to_string(),
                };
                (request.id.clone(), order.label(), why, request.active)
            })
            .collect()
    }

    /// The pain regimen of record: active opioid orders not given for opioid use disorder.
    pub fn regimen(&self) -> Vec<MedicationOrder> {
        self.active_opioid_orders().into_iter().filter(|order| order.purpose == OrderPurpose::Pain).collect()
    }

    /// The order(s) being selected or signed (a CDS Hooks request's `draftOrders`), any class.
    pub fn draft_orders(&self) -> impl Iterator<Item = &MappedMedicationRequest> {
        self.medication_requests.iter().filter(|request| request.draft_order)
    }

    /// What the rules read about a patient the clinic has not enrolled, from what the EHR sent, draft
    /// orders left out (`draft_orders` gives them): the regimen, fills, drug tests, PDMP and physician reviews, the latest
    /// agreement, naloxone, clinical flags and other medications. `annual_test_days` stands in for the
    /// clinic's drawn drug-test date, which an EHR patient does not have: a patient on opioids with no
    /// test in that many days (or none at all) has a test due, as the CDC's annual check says.
    pub fn patient_facts(&self, patient_id: PatientId, today: NaiveDate, annual_test_days: i64) -> PatientFacts {
        let mut facts = PatientFacts::empty(patient_id);
        if let Some(demographics) = &self.demographics {
            facts.birth_date = demographics.birth_date;
            facts.sex = demographics.sex;
        }
        // The draft orders are left out: the caller merges them as it merges an enrolled patient's
        // (a renewal replaces the active order instead of doubling it).
        facts.regimen = self
            .medication_requests
            .iter()
            .filter(|r| r.active && !r.draft_order && r.class == MedicationClass::Opioid)
            .filter(|r| r.order.purpose == OrderPurpose::Pain)
            .map(|r| r.order.clone())
            .collect();
        facts.past_orders = self
            .medication_requests
            .iter()
            .filter(|request| !request.active && request.class == MedicationClass::Opioid)
            .map(|request| request.order.clone())
            .collect();
        facts.fills = self.fills.clone();
        facts.uds.results = self.uds_results.clone();
        if self.medication_requests.iter().any(|r| r.active && r.class == MedicationClass::Opioid) {
            let latest = self.uds_results.iter().map(|r| r.collected_on).filter(|on| *on <= today).max();
            facts.uds.scheduled_due = Some(match latest {
                Some(on) => on + chrono::Duration::days(annual_test_days),
                None => today - chrono::Duration::days(1),
            });
        }
        facts.pdmp_reviews = self.pdmp_reviews.clone();
        facts.physician_reviews = self.physician_reviews.clone();
        facts.agreement = self.agreements.iter().max_by_key(|agreement| agreement.signed_on).cloned();
        facts.naloxone_events = self.naloxone_events.clone();
        facts.flags = self.clinical_flags(today);
        let drafts: Vec<(&str, String)> = self.draft_orders().map(|r| (r.id.as_str(), r.order.label())).collect();
        facts.other_medications = self
            .other_medication_sources
            .iter()
            .zip(&self.other_medications)
            .filter(|(source, medication)| !drafts.iter().any(|(id, label)| id == source && *label == medication.text))
            .map(|(_, medication)| medication.clone())
            .collect();
        facts
    }

    /// Clinical flags, undated conditions dated `as_of`.
    pub fn clinical_flags(&self, as_of: chrono::NaiveDate) -> Vec<refill_rules::ClinicalFlag> {
        self.conditions.iter().flat_map(|condition| condition.flags(as_of)).collect()
    }
}

/// Map a FHIR R4 Bundle (or a single resource) into per-patient records.
pub fn parse_bundle(value: &Value) -> Result<Vec<FhirPatientRecord>, Vec<FhirError>> {
    let mut collected = Vec::new();
    let mut problems = Vec::new();
    collect(value, "Bundle", false, &mut collected, &mut problems);
    with_problems(group(&collected, None), problems)
}

/// The grouped records, or every problem: those found while collecting the entries first, then those
/// of the resources themselves (one pass shows the clinic everything to fix).
fn with_problems(
    grouped: Result<Vec<FhirPatientRecord>, Vec<FhirError>>,
    mut problems: Vec<FhirError>,
) -> Result<Vec<FhirPatientRecord>, Vec<FhirError>> {
    match grouped {
        Ok(records) if problems.is_empty() => Ok(records),
        Ok(_) => Err(problems),
        Err(mut more) => {
            problems.append(&mut more);
            Err(problems)
        }
    }
}

/// Map a CDS Hooks request: `context.draftOrders` (its orders count as current whether their status
/// is `active` or `draft`: they are being signed or selected; `context.selections` only names entries
/// of that bundle) and every non-null `prefetch` value (a Bundle or a single resource). Resources
/// without a usable patient reference belong to `context.patientId`.
pub fn parse_cds_hooks_request(value: &Value) -> Result<Vec<FhirPatientRecord>, Vec<FhirError>> {
    let mut collected = Vec::new();
    let mut problems = Vec::new();
    let context = value.get("context");
    let patient = context
        .and_then(|c| c.get("patientId"))
        .and_then(Value::as_str)
        .map(|id| if id.starts_with("Patient/") { id.to_string() } else { format!("Patient/{id}") });
    if patient.is_none() {
        problems.push(FhirError::invalid("CDS Hooks request", "context.patientId", "missing"));
    }
    if let Some(drafts) = context.and_then(|c| c.get("draftOrders")) {
        collect(drafts, "context.draftOrders", true, &mut collected, &mut problems);
    }
    let drafts: HashSet<(String, String, String)> =
        collected.iter().filter_map(|item| resource_key(item.resource)).collect();
    if let Some(prefetch) = value.get("prefetch").and_then(Value::as_object) {
        // Keys are the EHR's own names (the CDC examples use item1..itemN): what a value is comes from
        // its resourceType, never from its key.
        for (key, item) in prefetch {
            if !item.is_null() {
                collect(item, &format!("prefetch.{key}"), false, &mut collected, &mut problems);
            }
        }
    }
    // The order being signed is often also among the patient's active orders (the EHR's prefetch of
    // MedicationRequest?status=active): it counts once, as the draft says it (a revised order keeps
    // its id and product, and the draft is the version being signed). The same id on another product
    // is not that order (the CDC examples reuse ids that way): both are kept, nothing goes unseen.
    collected.retain(|item| item.draft_counts || resource_key(item.resource).is_none_or(|key| !drafts.contains(&key)));
    with_problems(group(&collected, patient.as_deref()), problems)
}

/// `(resourceType, id, medication)` of a resource that has an id; the medication (its coding or
/// reference, as JSON text) tells a revised order from another product under the same id.
fn resource_key(resource: &Value) -> Option<(String, String, String)> {
    let resource_type = resource.get("resourceType").and_then(Value::as_str)?;
    let id = resource.get("id").and_then(Value::as_str)?;
    let medication = ["medicationCodeableConcept", "medicationReference"]
        .iter()
        .find_map(|field| resource.get(*field))
        .map(Value::to_string)
        .unwrap_or_default();
    Some((resource_type.to_string(), id.to_string(), medication))
}

/// One resource with where it came from.
struct Collected<'a> {
    resource: &'a Value,
    full_url: Option<&'a str>,
    location: String,
    draft_counts: bool,
}

fn collect<'a>(
    value: &'a Value,
    location: &str,
    draft_counts: bool,
    out: &mut Vec<Collected<'a>>,
    problems: &mut Vec<FhirError>,
) {
    match value.get("resourceType").and_then(Value::as_str) {
        Some("Bundle") => {
            let entries = match value.get("entry") {
                None | Some(Value::Null) => return,
                Some(Value::Array(entries)) => entries,
                Some(other) => {
                    problems.push(FhirError::invalid(
                        location,
                        "entry",
                        format!("expected an array, found {}", read::kind(other)),
                    ));
                    return;
                }
            };
            for (index, entry) in entries.iter().enumerate() {
                let entry_location = format!("{location}.entry[{index}]");
                match entry.get("resource") {
                    Some(resource @ Value::Object(_)) => {
                        let resource_type = resource.get("resourceType");
                        if resource_type.and_then(Value::as_str) == Some("Bundle") {
                            collect(resource, &entry_location, draft_counts, out, problems);
                        } else if let Some(problem) = resource_type_problem(resource_type, &entry_location) {
                            problems.push(problem);
                        } else {
                            out.push(Collected {
                                resource,
                                full_url: entry.get("fullUrl").and_then(Value::as_str),
                                location: entry_location,
                                draft_counts,
                            });
                        }
                    }
                    // Entries without a resource (e.g. a transaction's DELETE) carry no facts.
                    None | Some(Value::Null) => {}
                    Some(other) => problems.push(FhirError::invalid(
                        entry_location,
                        "resource",
                        format!("expected an object, found {}", read::kind(other)),
                    )),
                }
            }
        }
        Some(_) => match resource_type_problem(value.get("resourceType"), location) {
            Some(problem) => problems.push(problem),
            None => {
                out.push(Collected { resource: value, full_url: None, location: location.to_string(), draft_counts })
            }
        },
        None => problems.push(FhirError::invalid(location, "resourceType", "missing: not a FHIR resource")),
    }
}

/// A resource whose `resourceType` is missing, not a string, or not a FHIR R4 resource type: an error
/// naming the entry (with the resource's id when it has one), never a silent skip.
fn resource_type_problem(resource_type: Option<&Value>, location: &str) -> Option<FhirError> {
    match resource_type {
        Some(Value::String(name)) if resource_types::is_r4_resource_type(name) => None,
        Some(Value::String(name)) => Some(FhirError::invalid(
            location,
            "resourceType",
            format!("unknown resource type {name:?}: not a FHIR R4 resource (misspelt?)"),
        )),
        None | Some(Value::Null) => {
            Some(FhirError::invalid(location, "resourceType", "missing: every bundle entry's resource needs one"))
        }
        Some(other) => Some(FhirError::invalid(
            location,
            "resourceType",
            format!("expected a string, found {}", read::kind(other)),
        )),
    }
}

/// Which field holds the patient reference, by resource type.
fn patient_field(resource_type: &str) -> Option<&'static str> {
    match resource_type {
        "MedicationRequest"
        | "MedicationDispense"
        | "Observation"
        | "Procedure"
        | "Condition"
        | "DocumentReference"
        | "MedicationStatement" => Some("subject"),
        "Consent" => Some("patient"),
        _ => None,
    }
}

fn group(collected: &[Collected<'_>], default_patient: Option<&str>) -> Result<Vec<FhirPatientRecord>, Vec<FhirError>> {
    let mut problems = Vec::new();
    let mut records: Vec<FhirPatientRecord> = Vec::new();
    let mut index_of: HashMap<String, usize> = HashMap::new();
    let mut full_urls: HashMap<&str, String> = HashMap::new();
    let mut lookup = MedicationLookup::new();

    // Patients and Medications first, so references resolve whatever the entry order.
    for item in collected {
        match item.resource.get("resourceType").and_then(Value::as_str) {
            Some("Patient") => match parse_patient(item.resource, &item.location) {
                Ok((id, demographics)) => {
                    let reference = format!("Patient/{id}");
                    if let Some(url) = item.full_url {
                        full_urls.insert(url, reference.clone());
                    }
                    let at = *index_of.entry(reference).or_insert_with(|| {
                        records.push(FhirPatientRecord::new(id));
                        records.len() - 1
                    });
                    records[at].demographics = Some(demographics);
                }
                Err(mut found) => problems.append(&mut found),
            },
            Some("Medication") => lookup.add(item.full_url, item.resource),
            _ => {}
        }
    }

    let mut uds_lines: BTreeMap<usize, Vec<UdsLineResult>> = BTreeMap::new();
    for item in collected {
        let resource_type = item.resource.get("resourceType").and_then(Value::as_str).unwrap_or("");
        let Some(field) = patient_field(resource_type) else { continue };
        let label = read::Reader::new(item.resource, &item.location).label;
        let reference = reference_text(item.resource.get(field));
        let mut scratch = FhirPatientRecord::new(String::new());
        let at = match resolve_patient(reference.as_deref(), &full_urls, default_patient) {
            Some(patient) => Some(*index_of.entry(patient.clone()).or_insert_with(|| {
                records.push(FhirPatientRecord::new(patient.trim_start_matches("Patient/").to_string()));
                records.len() - 1
            })),
            None => {
                let message = match &reference {
                    Some(reference) => format!("'{reference}' does not name a Patient"),
                    None => "missing: the resource must name its patient".to_string(),
                };
                problems.push(FhirError::invalid(label, format!("{field}.reference"), message));
                // Map it anyway (into a record that is thrown away) so its other problems are listed too.
                None
            }
        };
        let record = match at {
            Some(at) => &mut records[at],
            None => &mut scratch,
        };
        let outcome: Result<(), Vec<FhirError>> = match resource_type {
            "MedicationRequest" => map_medication_request(item.resource, &item.location, &lookup, item.draft_counts)
                .map(|request| {
                    add_other_medication(record, &request);
                    record.medication_requests.push(request);
                }),
            "MedicationDispense" => {
                map_dispense(item.resource, &item.location, &lookup).map(|dispense| match dispense {
                    MappedDispense::Fill(fill) => record.fills.push(fill),
                    MappedDispense::Naloxone(event) => record.naloxone_events.push(event),
                    MappedDispense::Ignored => {}
                })
            }
            "Observation" | "Procedure" => {
                let mapped = if resource_type == "Observation" {
                    map_observation(item.resource, &item.location)
                } else {
                    map_procedure(item.resource, &item.location)
                };
                mapped.map(|monitoring| match monitoring {
                    Monitoring::Uds(line) => uds_lines.entry(at.unwrap_or(usize::MAX)).or_default().push(line),
                    Monitoring::Pdmp(review) => record.pdmp_reviews.push(review),
                    Monitoring::Review(review) => record.physician_reviews.push(review),
                    Monitoring::Ignored => {}
                })
            }
            "MedicationStatement" => map_medication_statement(item.resource, &item.location, &lookup).map(|found| {
                if let Some((source, medication)) = found {
                    record.other_medication_sources.push(source);
                    record.other_medications.push(medication);
                }
            }),
            "Condition" => map_condition(item.resource, &item.location).map(|condition| {
                if let Some(condition) = condition {
                    record.conditions.push(condition);
                }
            }),
            "Consent" => {
                agreement::map_consent(item.resource, &item.location).map(|found| record.agreements.extend(found))
            }
            "DocumentReference" => agreement::map_document_reference(item.resource, &item.location)
                .map(|found| record.agreements.extend(found)),
            _ => Ok(()),
        };
        if let Err(mut found) = outcome {
            problems.append(&mut found);
        }
    }
    for (at, lines) in uds_lines {
        if let Some(record) = records.get_mut(at) {
            record.uds_results = group_uds(lines);
        }
    }
    if problems.is_empty() { Ok(records) } else { Err(problems) }
}

/// `Patient/x`, a bundle `fullUrl` of a Patient, or an absolute URL ending in `Patient/x`; else the
/// CDS Hooks context patient if there is one.
fn resolve_patient(
    reference: Option<&str>,
    full_urls: &HashMap<&str, String>,
    default_patient: Option<&str>,
) -> Option<String> {
    if let Some(reference) = reference {
        if let Some(patient) = full_urls.get(reference) {
            return Some(patient.clone());
        }
        if let Some(at) = reference.find("Patient/") {
            let tail = &reference[at + "Patient/".len()..];
            let id = tail.split('/').next().unwrap_or("");
            if !id.is_empty() && (at == 0 || reference[..at].ends_with('/')) {
                return Some(format!("Patient/{id}"));
            }
        }
    }
    default_patient.map(str::to_string)
}

fn add_other_medication(record: &mut FhirPatientRecord, request: &MappedMedicationRequest) {
    let class = match request.class {
        MedicationClass::Benzodiazepine => OtherMedicationClass::Benzodiazepine,
        MedicationClass::Opioid if request.order.purpose == OrderPurpose::OpioidUseDisorder => {
            OtherMedicationClass::OudTreatment
        }
        MedicationClass::Naloxone => {
            // A naloxone prescription on file is an offer that was taken up.
            if let Some(on) = request.authored_on {
                record.naloxone_events.push(NaloxoneEvent { on, kind: NaloxoneEventKind::Offered });
            }
            return;
        }
        _ => return,
    };
    if request.status == "entered-in-error" {
        return;
    }
    record.other_medication_sources.push(request.id.clone());
    record.other_medications.push(OtherMedication {
        class,
        text: request.order.label(),
        started_on: request.authored_on,
        active: request.active,
        confidentiality: request.order.confidentiality,
    });
}

/// Lines collected the same day by the same kind of method form one result.
fn group_uds(lines: Vec<UdsLineResult>) -> Vec<UdsResult> {
    let mut grouped: BTreeMap<(chrono::NaiveDate, bool), UdsResult> = BTreeMap::new();
    for line in lines {
        let result = grouped.entry((line.collected_on, line.line.confirmatory)).or_insert_with(|| UdsResult {
            collected_on: line.collected_on,
            kind: UdsKind::Scheduled,
            confirmatory: line.line.confirmatory,
            analytes: Vec::new(),
            physician_reviewed_on: None,
            confidentiality: Confidentiality::Normal,
            specimen_validity: Default::default(),
        });
        if line.confidentiality == Confidentiality::Part2 {
            result.confidentiality = Confidentiality::Part2;
        }
        result.analytes.push(UdsAnalyteResult {
            assay: line.line.assay,
            analyte: line.line.analyte,
            detected: line.detected,
        });
    }
    grouped.into_values().collect()
}
