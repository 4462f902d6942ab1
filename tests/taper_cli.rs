//! End-to-end tests of `refill taper plan` and `refill uds` through the real binary, with the example
//! requests in tests/data/taper and tests/data/uds and the project's config/policy.toml.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn refill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_refill"))
        .args(args)
        .current_dir(root())
        .env("REFILL_CONFIG_DIR", root().join("config"))
        .env("REFILL_ENV", "test")
        .output()
        .expect("the refill binary runs")
}

fn json_of(output: &Output) -> Value {
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[test]
fn the_va_example_prints_270_225_180_135() {
    let output = refill(&["taper", "plan", "tests/data/taper/va-slower.toml", "--json"]);
    let plan = json_of(&output);
    assert_eq!(plan["original_daily_mme"], 270.0);
    let mme: Vec<f64> =
        plan["steps"].as_array().unwrap().iter().take(3).map(|s| s["daily_mme"].as_f64().unwrap()).collect();
    assert_eq!(mme, vec![225.0, 180.0, 135.0]);
    assert_eq!(plan["steps"][0]["effective_on"], "2026-01-05");
    assert_eq!(plan["outcome"]["target_reached"], true);
    assert_eq!(plan["steps"].as_array().unwrap().last().unwrap()["kind"], "stop");

    let table = refill(&["taper", "plan", "tests/data/taper/va-slower.toml"]);
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.contains("preset slower"), "{text}");
    assert!(text.contains("Outcome: target reached"), "{text}");
}

#[test]
fn a_faster_preset_without_attestation_is_refused_with_the_reason() {
    let output = refill(&["taper", "plan", "tests/data/taper/faster-without-attestation.toml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs a physician safety attestation"), "{stderr}");
    assert!(output.stdout.is_empty());

    let attested = json_of(&refill(&["taper", "plan", "tests/data/taper/faster-with-attestation.json", "--json"]));
    assert_eq!(attested["attestation"]["reason"], "short_prior_duration");
    assert_eq!(attested["outcome"]["target_reached"], true);
}

#[test]
fn two_opioids_with_pause_and_resume_keep_their_history() {
    let plan = json_of(&refill(&["taper", "plan", "tests/data/taper/two-opioids-pause-resume.toml", "--json"]));
    let changes: Vec<&str> =
        plan["history"].as_array().unwrap().iter().map(|e| e["change"].as_str().unwrap()).collect();
    assert_eq!(changes, ["created", "paused", "resumed"]);
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps[0]["reduced_order_id"], "rx-oxy");
    assert_eq!(steps[2]["effective_on"], "2026-05-18", "a full interval after the resume on 2026-04-20");
    let first_morphine = steps.iter().position(|s| s["reduced_order_id"] == "rx-morphine-er").unwrap();
    assert!(steps[..first_morphine].iter().all(|s| s["reduced_order_id"] == "rx-oxy"));
    assert_eq!(steps[first_morphine - 1]["kind"], "stop");
    assert!(plan["superseded_steps"].as_u64().unwrap() > 0);
}

#[test]
fn a_malformed_request_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "start_on = \"2026-01-05\"\nregimen = []\ncolour = \"blue\"\n").unwrap();
    let output = refill(&["taper", "plan", path.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml") && stderr.contains("colour"), "{stderr}");
}

#[test]
fn uds_draw_replays_from_the_seed() {
    let args = [
        "uds",
        "draw",
        "--tier",
        "high",
        "--last",
        "2026-01-10",
        "--seed",
        "42",
        "--patient",
        "7",
        "--count",
        "5",
        "--json",
    ];
    let first = json_of(&refill(&args));
    let again = json_of(&refill(&args));
    assert_eq!(first, again);
    let dates = first.as_array().unwrap();
    assert_eq!(dates.len(), 5);
    assert!(dates.iter().all(|d| d["algorithm"] == "splitmix64-v1" && d["period_days"] == 120));
    let other = json_of(&refill(&[
        "uds",
        "draw",
        "--tier",
        "high",
        "--last",
        "2026-01-10",
        "--seed",
        "43",
        "--patient",
        "7",
        "--json",
    ]));
    assert_ne!(other[0]["date"], first[0]["date"].clone(), "a different seed draws a different date (for this pair)");
}

#[test]
fn uds_interpret_flags_what_needs_confirmation() {
    let report = json_of(&refill(&["uds", "interpret", "tests/data/uds/oxycodone-opiates-negative.toml", "--json"]));
    assert_eq!(report["needs_confirmation"], true);
    let findings = report["findings"].as_array().unwrap();
    let fentanyl = findings.iter().find(|f| f["substance"] == "fentanyl").unwrap();
    assert_eq!(fentanyl["finding"], "unexpected");
    let oxycodone =
        findings.iter().find(|f| f["substance"] == "oxycodone" && f["about"] == "prescribed_ingredient").unwrap();
    assert_eq!(oxycodone["finding"], "expected");
    let confirmed = json_of(&refill(&["uds", "interpret", "tests/data/uds/morphine-lcms.json", "--json"]));
    assert_eq!(confirmed["needs_review"], false);
}

/// What an example's expected schedule records: per step the date, the check-in date, the exact
/// products with units per dose and doses per day, daily MME and acetaminophen a day; and the outcome.
fn schedule_of(plan: &Value) -> Value {
    let steps: Vec<Value> = plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|step| {
            serde_json::json!({
                "effective_on": step["effective_on"],
                "check_in_due": step["check_in_due"],
                "kind": step["kind"],
                "daily_mme": step["daily_mme"],
                "acetaminophen_mg_per_day": step["acetaminophen_mg_per_day"],
                "products": step["products"].as_array().expect("products").iter().map(|p| serde_json::json!({
                    "name": p["name"], "units_per_dose": p["units_per_dose"], "doses_per_day": p["doses_per_day"],
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({ "steps": steps, "outcome": plan["outcome"], "flags": plan["flags"] })
}

/// The examples of tests/data/taper with their expected schedules (`NAME.expected.json`; regenerate
/// with `REFILL_BLESS=1` after checking the change by hand).
#[test]
fn the_taper_examples_give_their_expected_schedules() {
    let examples = [
        "hydrocodone-acetaminophen",
        "hydrocodone-er-capsule",
        "oxycodone-er",
        "fentanyl-patch",
        "methadone",
        "two-opioids-pause-resume",
        "slow-down",
        "revise",
        "va-slower",
    ];
    for name in examples {
        let output = refill(&["taper", "plan", &format!("tests/data/taper/{name}.toml"), "--json"]);
        let actual = schedule_of(&json_of(&output));
        let path = root().join(format!("tests/data/taper/{name}.expected.json"));
        if std::env::var_os("REFILL_BLESS").is_some() {
            std::fs::write(&path, serde_json::to_string_pretty(&actual).expect("json") + "\n").expect("write");
            continue;
        }
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
                .expect("expected JSON");
        assert_eq!(actual, expected, "{name}: the schedule differs from {}", path.display());
    }
}

#[test]
fn examples_the_planner_refuses_exit_2_with_the_reason() {
    for (name, words) in [
        ("methadone-default-preset", "methadone is tapered only at its own slower pace"),
        ("acetaminophen-750", "750 mg acetaminophen per unit"),
    ] {
        let output = refill(&["taper", "plan", &format!("tests/data/taper/{name}.toml")]);
        assert_eq!(output.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(words), "{name}: {stderr}");
    }
}

#[test]
fn a_request_without_a_target_is_refused_a_blank_never_means_stop() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("no-target.toml");
    std::fs::write(
        &path,
        "start_on = \"2026-01-05\"\n[[regimen]]\nid = \"rx\"\ntext = \"oxycodone hydrochloride 5 MG Oral Tablet\"\n\
         dose = 1\ndose_unit = \"unit\"\ndoses_per_day = 4\n",
    )
    .expect("write");
    let output = refill(&["taper", "plan", path.to_str().expect("path")]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("target is required"), "{stderr}");
}
