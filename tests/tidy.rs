//! Repository-wide checks in the style of rust-analyzer's tidy test: the crate dependency graph follows
//! ARCHITECTURE.md, every module says what it is for, and no unfinished code is handed over.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Internal edges allowed by ARCHITECTURE.md ("may use"); adding one is a design change.
fn allowed_edges() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let mut edges = BTreeMap::new();
    edges.insert("refill-rules", BTreeSet::new());
    edges.insert("refill-notify", BTreeSet::new());
    edges.insert("refill-fhir", BTreeSet::from(["refill-rules"]));
    edges.insert("refill-store", BTreeSet::from(["refill-rules"]));
    edges.insert("refill-import", BTreeSet::from(["refill-fhir", "refill-rules"]));
    edges.insert("refill-demo", BTreeSet::from(["refill-fhir", "refill-rules"]));
    edges.insert("refill-app", BTreeSet::from(["refill-store", "refill-rules"]));
    edges.insert("refill-jobs", BTreeSet::from(["refill-app", "refill-store", "refill-notify", "refill-rules"]));
    edges.insert("refill-web", BTreeSet::from(["refill-app", "refill-store", "refill-fhir", "refill-rules"]));
    edges
}

#[test]
fn crate_dependencies_follow_the_architecture() {
    let allowed = allowed_edges();
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let manifest_path = dir.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest_path).unwrap();
        let manifest: toml::Table = toml::from_str(&text).unwrap();
        let name = manifest["package"]["name"].as_str().unwrap().to_string();
        let Some(allowed_for_crate) = allowed.get(name.as_str()) else {
            problems.push(format!("{name}: crate missing from the allowed-edges table"));
            continue;
        };
        // Only [dependencies] count: dev-dependencies may reach further for tests.
        let deps = manifest.get("dependencies").and_then(|d| d.as_table()).cloned().unwrap_or_default();
        for dep in deps.keys().filter(|d| d.starts_with("refill-")) {
            if !allowed_for_crate.contains(dep.as_str()) {
                problems.push(format!("{name} depends on {dep}, which ARCHITECTURE.md does not allow"));
            }
        }
    }
    assert!(problems.is_empty(), "dependency graph violations:\n{}", problems.join("\n"));
}

#[test]
fn the_rules_crate_stays_pure() {
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(root().join("crates/refill-rules/Cargo.toml")).unwrap()).unwrap();
    let deps = manifest["dependencies"].as_table().unwrap();
    for banned in ["tokio", "sqlx", "lettre", "axum", "askama", "tracing", "rand", "reqwest"] {
        assert!(
            !deps.contains_key(banned),
            "refill-rules must not depend on {banned} (no I/O, no clock, no randomness)"
        );
    }
    let mut problems = Vec::new();
    for file in rust_files(&root().join("crates/refill-rules/src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for banned in
            ["Utc::now", "Local::now", "SystemTime::now", "Instant::now", "std::fs::", "std::net::", "println!"]
        {
            if text.contains(banned) {
                problems.push(format!("{}: uses {banned}", file.display()));
            }
        }
    }
    assert!(problems.is_empty(), "refill-rules must stay pure:\n{}", problems.join("\n"));
}

#[test]
fn the_use_cases_read_no_clock() {
    // `today` is a parameter of every use case: the same facts and date give the same decision, and the
    // story tests run sixty days in seconds.
    let mut problems = Vec::new();
    for file in rust_files(&root().join("crates/refill-app/src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for banned in ["Utc::now", "Local::now", "SystemTime::now", "Instant::now"] {
            if text.contains(banned) {
                problems.push(format!("{}: uses {banned}", file.display()));
            }
        }
    }
    assert!(problems.is_empty(), "refill-app must not read the clock:\n{}", problems.join("\n"));
}

#[test]
fn every_module_opens_with_a_doc_comment() {
    let mut missing = Vec::new();
    let mut dirs = vec![root().join("src")];
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        dirs.push(entry.unwrap().path().join("src"));
    }
    for dir in dirs {
        for file in rust_files(&dir) {
            let text = std::fs::read_to_string(&file).unwrap();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if !first.starts_with("//!") && !file.ends_with("main.rs") {
                missing.push(file.display().to_string());
            }
        }
    }
    assert!(missing.is_empty(), "modules without a `//!` doc line:\n{}", missing.join("\n"));
}

#[test]
fn no_unfinished_code_is_handed_over() {
    let mut problems = Vec::new();
    let mut dirs = vec![root().join("src")];
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        dirs.push(entry.unwrap().path().join("src"));
    }
    let markers = [concat!("todo", "!("), concat!("unimplemented", "!("), concat!("FIX", "ME"), concat!("X", "XX")];
    for dir in dirs {
        for file in rust_files(&dir) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (number, line) in text.lines().enumerate() {
                if markers.iter().any(|m| line.contains(m)) || line.contains("is not built yet") {
                    problems.push(format!("{}:{}: {}", file.display(), number + 1, line.trim()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "unfinished code:\n{}", problems.join("\n"));
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return files };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}
