//! Property tests of broken input (issue 17): CSV files, FHIR Bundles and CDS Hooks requests mangled
//! at random never panic, and every problem names where it is (a line and a column of the header for
//! CSV; a resource path for FHIR). A file with a control character in a cell is always refused.

use proptest::prelude::*;
use refill_import::{Location, parse_csv, parse_fhir_bundle};
use serde_json::Value;

const PATIENTS: &str = "patient_id,mrn,family_name,given_name,birth_date,sex,email,risk_tier,prescriber_id\n\
                        P1,M1,Lindqvist,Marta,1961-04-17,female,marta@example.org,high,1234567893\n\
                        P2,,\"O'Neil, Jr\",Sam,1970-01-02,male,,,\n\
                        P3,M3,Okafor,Ada,1955-09-30,female,,low,\n";

const HEADER: [&str; 9] =
    ["patient_id", "mrn", "family_name", "given_name", "birth_date", "sex", "email", "risk_tier", "prescriber_id"];

fn bundle() -> Value {
    serde_json::from_str(include_str!("../../../tests/data/fhir/synthea-opioid-orders.json")).expect("fixture")
}

fn cds_request() -> Value {
    serde_json::from_str(include_str!(
        "../../../tests/data/cds-hooks/request-example-rec-08-mme-greater-than-fifty.json"
    ))
    .expect("fixture")
}

/// Every node of a JSON tree, depth first, as mutable references are awkward: count, then replace the
/// `target`-th node.
fn replace_nth(value: &mut Value, target: &mut usize, replacement: &Value) -> bool {
    if *target == 0 {
        *value = replacement.clone();
        return true;
    }
    *target -= 1;
    match value {
        Value::Array(items) => items.iter_mut().any(|item| replace_nth(item, target, replacement)),
        Value::Object(map) => map.values_mut().any(|item| replace_nth(item, target, replacement)),
        _ => false,
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        ".{0,40}".prop_map(Value::String),
        Just(Value::Array(Vec::new())),
        Just(serde_json::json!({ "resourceType": "Patinet" })),
        Just(serde_json::json!({ "reference": "Patient/" })),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}".prop_map(Value::String),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A CSV file with bytes replaced, inserted or cut anywhere: no panic; problems name a line of the
    /// file and a column of the header (or none, for the row as a whole).
    #[test]
    fn mangled_csv_never_panics_and_problems_are_located(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut bytes = PATIENTS.as_bytes().to_vec();
        for (at, byte, how) in edits {
            let i = at.index(bytes.len().max(1));
            match how {
                0 if !bytes.is_empty() => {
                    let last = bytes.len() - 1;
                    bytes[i.min(last)] = byte;
                }
                1 => bytes.insert(i.min(bytes.len()), byte),
                _ => bytes.truncate(i.max(1)),
            }
        }
        let lines = bytes.iter().filter(|b| **b == b'\n').count() as u64 + 2;
        if let Err(error) = parse_csv("patients.csv", &bytes) {
            prop_assert!(!error.problems.is_empty());
            for problem in &error.problems {
                match &problem.location {
                    Location::Line(line) => prop_assert!(*line >= 1 && *line <= lines, "{problem:?}"),
                    Location::File => {}
                    other => prop_assert!(false, "unexpected location {other:?}"),
                }
                prop_assert!(problem.field.is_empty() || HEADER.contains(&problem.field.as_str())
                    || problem.location == Location::Line(1), "{problem:?}");
            }
        }
    }

    /// A control character in any data cell refuses the file, naming that line.
    #[test]
    fn a_control_character_in_a_cell_is_always_refused(row in 0usize..3, column in 0usize..9, c in 0u8..32) {
        let mut lines: Vec<Vec<String>> = PATIENTS.lines().skip(1).map(split).collect();
        // Keep the cell quoted so the character is inside it whatever it is (a comma, a line break).
        lines[row][column] = format!("\"a{}b\"", char::from(c).to_string().replace('"', "\"\""));
        let text = format!("{}\n{}\n", HEADER.join(","), lines.iter().map(|l| l.join(",")).collect::<Vec<_>>().join("\n"));
        let result = parse_csv("patients.csv", text.as_bytes());
        prop_assert!(result.is_err(), "accepted {:?}", c);
        let error = result.unwrap_err();
        prop_assert!(error.problems.iter().any(|p| p.location == Location::Line(row as u64 + 2)), "{error}");
    }

    /// A FHIR Bundle with any node replaced by another value: no panic; problems name a resource path.
    #[test]
    fn mangled_fhir_bundles_never_panic(target in 0usize..4000, replacement in json_value()) {
        let mut value = bundle();
        let mut n = target;
        replace_nth(&mut value, &mut n, &replacement);
        let text = serde_json::to_vec(&value).expect("serialise");
        if let Err(error) = parse_fhir_bundle("mangled.json", &text) {
            prop_assert!(!error.problems.is_empty());
            let shown = error.to_string();
            prop_assert!(shown.contains("mangled.json"), "{shown}");
        }
    }

    /// A CDS Hooks request with any node replaced: no panic, and each problem says where.
    #[test]
    fn mangled_cds_hooks_requests_never_panic(target in 0usize..2000, replacement in json_value()) {
        let mut value = cds_request();
        let mut n = target;
        replace_nth(&mut value, &mut n, &replacement);
        if let Err(problems) = refill_fhir::parse_cds_hooks_request(&value) {
            prop_assert!(!problems.is_empty());
            for problem in problems {
                prop_assert!(!problem.to_string().trim().is_empty());
            }
        }
    }

    /// Arbitrary bytes as either kind of file: no panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = parse_csv("orders.csv", &bytes);
        let _ = parse_fhir_bundle("bytes.json", &bytes);
    }
}

/// Split a CSV line of the fixture into its cells (the fixture quotes only one cell, without a comma
/// inside that matters here other than `"O'Neil, Jr"`).
fn split(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => cells.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    cells.push(current);
    cells
}
