//! Code and keyword tables the mapping uses: benzodiazepines, opioid-use-disorder reasons, the
//! conditions behind clinical flags (cds-hooks.md §4.7), urine drug screen analytes (§4.4) and PDMP
//! review codes (§4.5). Codes where the value sets are short and stable; keywords on the display text
//! as the fallback, because EHRs send many local codes.

use refill_rules::ClinicalFlagKind;
use serde_json::Value;

use crate::read::{codings, concept_words};

/// Benzodiazepine generic names (lower case), matched in medication text.
pub const BENZODIAZEPINES: [&str; 16] = [
    "alprazolam",
    "chlordiazepoxide",
    "clobazam",
    "clonazepam",
    "clorazepate",
    "diazepam",
    "estazolam",
    "flurazepam",
    "lorazepam",
    "midazolam",
    "oxazepam",
    "quazepam",
    "temazepam",
    "triazolam",
    "remimazolam",
    "halazepam",
];

/// SNOMED CT "Review of prescription drug monitoring program record done (situation)" and
/// "Review of prescription drug monitoring program record (procedure)".
pub const PDMP_REVIEW_CODES: [&str; 2] = ["461651000124104", "461621000124108"];

const SNOMED: &str = "http://snomed.info/sct";

fn is_icd10(system: &str) -> bool {
    system.contains("icd-10") || system.contains("icd10")
}

/// A reason or category concept meaning opioid use disorder (ICD-10 F11.*, SNOMED opioid dependence
/// or abuse, or words to that effect).
pub fn is_oud_concept(concept: &Value) -> bool {
    let coded = codings(Some(concept)).into_iter().any(|(system, code, _)| {
        (is_icd10(system) && code.to_ascii_uppercase().starts_with("F11"))
            || (system == SNOMED && matches!(code, "5602001" | "75544000" | "145121000119106" | "1255191000000105"))
    });
    let words = concept_words(Some(concept));
    coded
        || words.contains("opioid use disorder")
        || words.contains("opioid dependence")
        || words.contains("opioid abuse")
        || words.contains("opioid addiction")
}

/// The flag kinds a Condition code stands for (possibly several, e.g. OUD is also an SUD history).
pub fn condition_flags(code: Option<&Value>) -> Vec<ClinicalFlagKind> {
    let mut kinds = Vec::new();
    let words = concept_words(code);
    let mut add = |kind: ClinicalFlagKind| {
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    };
    for (system, code, _) in codings(code) {
        let upper = code.to_ascii_uppercase();
        if is_icd10(system) {
            if upper.starts_with('C') || upper.starts_with("D0") {
                add(ClinicalFlagKind::Cancer);
            }
            if upper.starts_with("D57") {
                add(ClinicalFlagKind::SickleCell);
            }
            if upper.starts_with("Z51.5") || upper == "Z515" {
                add(ClinicalFlagKind::Palliative);
            }
            if upper.starts_with("T40") || upper.starts_with("T42") {
                add(ClinicalFlagKind::OverdoseHistory);
            }
            if upper.starts_with("G47.3") {
                add(ClinicalFlagKind::SleepDisorderedBreathing);
            }
            // F10-F19 substance use disorders, except F17 (nicotine).
            if upper.starts_with('F')
                && upper.len() >= 3
                && upper[1..3].parse::<u32>().is_ok_and(|n| (10..=19).contains(&n) && n != 17)
            {
                add(ClinicalFlagKind::SubstanceUseDisorderHistory);
            }
        }
        if system == SNOMED {
            match code {
                // Opioid abuse, opioid dependence, alcohol dependence, alcoholism, alcohol abuse,
                // drug abuse, drug dependence.
                "5602001" | "75544000" | "66590003" | "7200002" | "15167005" | "26416006" | "191816009" => {
                    add(ClinicalFlagKind::SubstanceUseDisorderHistory)
                }
                // Drug overdose, poisoning by opiate/opioid.
                "55680006" | "295165009" | "242253008" => add(ClinicalFlagKind::OverdoseHistory),
                // Sleep apnea, obstructive sleep apnea, central sleep apnea.
                "73430006" | "78275009" | "27405005" => add(ClinicalFlagKind::SleepDisorderedBreathing),
                // Sickle cell anemia / disorder.
                "127040003" | "417357006" => add(ClinicalFlagKind::SickleCell),
                // Palliative care, terminal illness.
                "103735009" => add(ClinicalFlagKind::Palliative),
                "162607003" | "300936002" => add(ClinicalFlagKind::EndOfLife),
                _ => {}
            }
        }
    }
    if ["malignant", "carcinoma", "cancer", "lymphoma", "leukemia", "leukaemia", "sarcoma", "myeloma", "melanoma"]
        .iter()
        .any(|word| words.contains(word))
        && !words.contains("history of")
    {
        add(ClinicalFlagKind::Cancer);
    }
    if words.contains("sickle") {
        add(ClinicalFlagKind::SickleCell);
    }
    if words.contains("palliative") {
        add(ClinicalFlagKind::Palliative);
    }
    if words.contains("terminal")
        || words.contains("end of life")
        || words.contains("end-of-life")
        || words.contains("hospice")
    {
        add(ClinicalFlagKind::EndOfLife);
    }
    if words.contains("overdose")
        || (words.contains("poisoning") && (words.contains("opi") || words.contains("narcotic")))
    {
        add(ClinicalFlagKind::OverdoseHistory);
    }
    if words.contains("sleep apnea")
        || words.contains("sleep apnoea")
        || words.contains("sleep-disordered")
        || words.contains("sleep disordered")
    {
        add(ClinicalFlagKind::SleepDisorderedBreathing);
    }
    let substance = [
        "opioid",
        "alcohol",
        "drug",
        "substance",
        "cocaine",
        "cannabis",
        "amphetamine",
        "heroin",
        "sedative",
        "stimulant",
    ];
    let disorder = ["abuse", "dependence", "use disorder", "addiction", "misuse"];
    if substance.iter().any(|s| words.contains(s)) && disorder.iter().any(|d| words.contains(d)) {
        add(ClinicalFlagKind::SubstanceUseDisorderHistory);
    }
    kinds
}

/// How an Observation code reads as a urine drug test line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdsLine {
    /// Immunoassay name (`opiates`, `oxycodone`, `cocaine` ...) or `lcms` for confirmatory methods.
    pub assay: String,
    /// Analyte, lower case (`benzoylecgonine`, `morphine` ...).
    pub analyte: String,
    pub confirmatory: bool,
}

/// Substances in Observation display text: (keyword, immunoassay it belongs to, analyte name).
const UDS_SUBSTANCES: [(&str, &str, &str); 30] = [
    ("benzoylecgonine", "cocaine", "benzoylecgonine"),
    ("cocaine", "cocaine", "cocaine"),
    ("phencyclidine", "phencyclidine", "phencyclidine"),
    ("6-monoacetylmorphine", "6-acetylmorphine", "6-acetylmorphine"),
    ("6-acetylmorphine", "6-acetylmorphine", "6-acetylmorphine"),
    ("norfentanyl", "fentanyl", "norfentanyl"),
    ("fentanyl", "fentanyl", "fentanyl"),
    ("oxymorphone", "oxycodone", "oxymorphone"),
    ("noroxycodone", "oxycodone", "noroxycodone"),
    ("oxycodone", "oxycodone", "oxycodone"),
    ("hydromorphone", "opiates", "hydromorphone"),
    ("hydrocodone", "opiates", "hydrocodone"),
    ("dihydrocodeine", "opiates", "dihydrocodeine"),
    ("codeine", "opiates", "codeine"),
    ("morphine", "opiates", "morphine"),
    ("opiates", "opiates", "opiates"),
    ("opiate", "opiates", "opiates"),
    ("eddp", "methadone", "eddp"),
    ("methadone", "methadone", "methadone"),
    ("norbuprenorphine", "buprenorphine", "norbuprenorphine"),
    ("buprenorphine", "buprenorphine", "buprenorphine"),
    ("desmethyltramadol", "tramadol", "o-desmethyltramadol"),
    ("tramadol", "tramadol", "tramadol"),
    ("tapentadol", "tapentadol", "tapentadol"),
    ("tetrahydrocannabinol", "cannabinoids", "thc"),
    ("cannabinoid", "cannabinoids", "cannabinoids"),
    ("amphetamine", "amphetamines", "amphetamine"),
    ("benzodiazepine", "benzodiazepines", "benzodiazepines"),
    ("barbiturate", "barbiturates", "barbiturates"),
    ("heroin", "6-acetylmorphine", "6-acetylmorphine"),
];

/// Read an Observation code as a urine drug test line: the display must mention urine (`Urine`,
/// `(U)`) and a substance from the table. Confirmatory when the method says confirm / GC / LC / MS.
pub fn uds_line(code: Option<&Value>) -> Option<UdsLine> {
    let words = concept_words(code);
    let urine = words.contains("urine") || words.contains("(u)") || words.contains(" ur ");
    if !urine {
        return None;
    }
    let (_, assay, analyte) = UDS_SUBSTANCES.iter().find(|(keyword, _, _)| words.contains(keyword))?;
    let confirmatory = words.contains("confirm")
        || words.contains("gc/ms")
        || words.contains("lc/ms")
        || words.contains("ms/ms")
        || words.contains("mass spectrometry");
    Some(UdsLine {
        assay: if confirmatory { "lcms".to_string() } else { assay.to_string() },
        analyte: analyte.to_string(),
        confirmatory,
    })
}

/// A positive/negative reading of an Observation value: `valueString` starting with pos/neg (the CDC
/// profile), a `valueCodeableConcept` or `interpretation` coded POS/NEG/DET/ND (v2/v3) or SNOMED
/// detected / not detected / positive / negative, or `valueBoolean`.
pub fn detected(observation: &Value) -> Option<bool> {
    if let Some(text) = observation.get("valueString").and_then(Value::as_str) {
        return word_detected(text);
    }
    if let Some(flag) = observation.get("valueBoolean").and_then(Value::as_bool) {
        return Some(flag);
    }
    let mut concepts: Vec<&Value> = Vec::new();
    if let Some(value) = observation.get("valueCodeableConcept") {
        concepts.push(value);
    }
    if let Some(items) = observation.get("interpretation").and_then(Value::as_array) {
        concepts.extend(items.iter());
    }
    for concept in concepts {
        for (_, code, display) in codings(Some(concept)) {
            match code.to_ascii_uppercase().as_str() {
                "POS" | "DET" | "10828004" | "260373001" | "52101004" => return Some(true),
                "NEG" | "ND" | "260385009" | "260415000" | "2667000" => return Some(false),
                _ => {}
            }
            if let Some(found) = word_detected(display) {
                return Some(found);
            }
        }
        if let Some(found) = concept.get("text").and_then(Value::as_str).and_then(word_detected) {
            return Some(found);
        }
    }
    None
}

fn word_detected(text: &str) -> Option<bool> {
    let lower = text.trim().to_lowercase();
    if lower.starts_with("pos") || lower == "detected" || lower == "present" {
        Some(true)
    } else if lower.starts_with("neg")
        || lower.starts_with("not detected")
        || lower == "absent"
        || lower == "none detected"
    {
        Some(false)
    } else {
        None
    }
}

/// An agreement document: a category/type/scope coding `opioid-treatment-agreement`, or words naming an
/// opioid (treatment / pain) agreement or contract.
pub fn is_opioid_agreement(concepts: &[&Value]) -> bool {
    concepts.iter().any(|concept| {
        let coded = codings(Some(concept)).into_iter().any(|(_, code, _)| code == "opioid-treatment-agreement");
        let words = concept_words(Some(concept));
        coded
            || ((words.contains("opioid") || words.contains("controlled substance") || words.contains("pain"))
                && (words.contains("agreement") || words.contains("contract")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn condition_codes_and_words() {
        let alcohol = json!({"coding": [{"system": SNOMED, "code": "66590003", "display": "Alcohol dependence"}]});
        assert_eq!(condition_flags(Some(&alcohol)), vec![ClinicalFlagKind::SubstanceUseDisorderHistory]);
        let pancreas =
            json!({"coding": [{"system": SNOMED, "code": "254612002", "display": "Carcinoma of endocrine pancreas"}]});
        assert_eq!(condition_flags(Some(&pancreas)), vec![ClinicalFlagKind::Cancer]);
        let icd = json!({"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "D57.1"}]});
        assert_eq!(condition_flags(Some(&icd)), vec![ClinicalFlagKind::SickleCell]);
        let osa = json!({"text": "Obstructive sleep apnea"});
        assert_eq!(condition_flags(Some(&osa)), vec![ClinicalFlagKind::SleepDisorderedBreathing]);
        let overdose = json!({"coding": [{"system": SNOMED, "code": "55680006", "display": "Drug overdose"}]});
        assert_eq!(condition_flags(Some(&overdose)), vec![ClinicalFlagKind::OverdoseHistory]);
        let tobacco = json!({"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F17.210"}]});
        assert!(condition_flags(Some(&tobacco)).is_empty());
        let sinusitis = json!({"text": "Viral sinusitis (disorder)"});
        assert!(condition_flags(Some(&sinusitis)).is_empty());
    }

    #[test]
    fn uds_lines() {
        let screen = json!({"coding": [{"system": "http://loinc.org", "code": "70146-6", "display": "Benzoylecgonine [Mass/volume] in Urine by Screen method"}]});
        assert_eq!(
            uds_line(Some(&screen)),
            Some(UdsLine { assay: "cocaine".into(), analyte: "benzoylecgonine".into(), confirmatory: false })
        );
        let confirm = json!({"coding": [{"code": "8237-0", "display": "Phencyclidine [Presence] in Urine by SAMHSA confirm method"}]});
        assert!(uds_line(Some(&confirm)).unwrap().confirmatory);
        let oxy = json!({"coding": [{"code": "11246-6", "display": "oxyCODONE (U) [Mass/Vol]"}]});
        assert_eq!(uds_line(Some(&oxy)).unwrap().analyte, "oxycodone");
        let serum = json!({"coding": [{"display": "Morphine [Mass/volume] in Serum or Plasma"}]});
        assert_eq!(uds_line(Some(&serum)), None);
    }

    #[test]
    fn detected_values() {
        assert_eq!(detected(&json!({"valueString": "POS"})), Some(true));
        assert_eq!(detected(&json!({"valueString": "Negative"})), Some(false));
        assert_eq!(detected(&json!({"interpretation": [{"coding": [{"code": "POS"}]}]})), Some(true));
        assert_eq!(detected(&json!({"valueCodeableConcept": {"coding": [{"code": "260415000"}]}})), Some(false));
        assert_eq!(detected(&json!({"valueQuantity": {"value": 12}})), None);
    }
}
