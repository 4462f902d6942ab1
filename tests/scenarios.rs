//! Runs every scenario file in tests/scenarios/ (format: tests/scenarios/README.md) through the refill
//! policy and fails listing every mismatch, so one run shows all broken scenarios at once.

use std::path::PathBuf;

use refill_clinic::scenario;

fn scenario_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_scenario_gives_its_expected_decision() {
    let files = scenario_files();
    assert!(files.len() >= 40, "expected at least 40 scenarios, found {}", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let scenario = match scenario::load_scenario(path) {
            Ok(scenario) => scenario,
            Err(error) => {
                failures.push(format!("{name}: could not load: {error:#}"));
                continue;
            }
        };
        if scenario.expect.is_none() {
            failures.push(format!("{name}: no [expect] section"));
            continue;
        }
        let decision = scenario.evaluate();
        for mismatch in scenario.mismatches(&decision) {
            failures.push(format!("{name}: {mismatch}"));
        }
        // Every scenario names its guideline basis in a leading comment.
        let text = std::fs::read_to_string(path).unwrap();
        if !text.trim_start().starts_with('#') {
            failures.push(format!("{name}: no guideline-basis comment at the top"));
        }
    }
    assert!(failures.is_empty(), "{} scenario mismatch(es):\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_reason_code_of_the_refill_table_is_covered_by_a_scenario() {
    use refill_rules::decision::ReasonCode;
    let mut seen = std::collections::BTreeSet::new();
    for path in scenario_files() {
        if let Ok(scenario) = scenario::load_scenario(&path)
            && let Some(expect) = &scenario.expect
        {
            seen.extend(expect.reasons.iter().copied());
        }
    }
    // Codes other modules emit (taper jobs) are not refill rules.
    let missing: Vec<&str> = ReasonCode::ALL
        .into_iter()
        .filter(|code| *code != ReasonCode::TaperStepDue && !seen.contains(code))
        .map(|code| code.as_str())
        .collect();
    assert!(missing.is_empty(), "reason codes without a scenario: {missing:?}");
}
