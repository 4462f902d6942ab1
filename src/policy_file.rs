//! Loading the clinic policy file (config/policy.toml) into `refill_rules::policy::Policy`, and the
//! policy version recorded with every decision.
//!
//! The version is the file's explicit `version` string when it has one; otherwise `sha256:` and the
//! first 16 hex digits of a SHA-256 over the canonical effective policy (parsed, defaults applied,
//! serialized as JSON with a fixed field order), the factor set, and the embedded drug and factor
//! tables. Two files that differ only in comments, key order or spelled-out defaults get the same
//! version; a changed threshold, factor set or drug table gets a new one.
//!
//! The clinic formulary (`[policy] formulary`, default `config/formulary.toml`, the taper planner's
//! list of dispensable products) is loaded next to it into `policy.taper.formulary` and hashed into
//! the same version, so a plan records which formulary it was made from.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use refill_rules::drug::{EMBEDDED_DRUG_CSV, EMBEDDED_FACTOR_CSV};
use refill_rules::policy::Policy;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::Config;

/// A policy ready for the rules, with the version to record.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedPolicy {
    pub policy: Policy,
    pub version: String,
    /// The file it came from (`None` for the built-in defaults).
    pub source: Option<PathBuf>,
}

/// `[policy]` in config/base.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// The policy file, relative to the project folder (default `config/policy.toml`).
    #[serde(default = "default_policy_file")]
    pub file: PathBuf,
    /// The clinic formulary, relative to the project folder (default `config/formulary.toml`).
    #[serde(default = "default_formulary_file")]
    pub formulary: PathBuf,
}

fn default_policy_file() -> PathBuf {
    PathBuf::from("config/policy.toml")
}

fn default_formulary_file() -> PathBuf {
    PathBuf::from("config/formulary.toml")
}

/// The policy the configuration names in `[policy] file`.
/// The default `config/policy.toml`, when it is not there (running from another folder), is the policy
/// built into the binary; any other file named must exist.
pub fn load_policy(config: &Config) -> anyhow::Result<LoadedPolicy> {
    let section: PolicySection = config.section("policy")?;
    let path = config.resolve_path(&section.file);
    let loaded = if !path.exists() && section.file == default_policy_file() {
        parse_policy(crate::config::BUILT_IN_POLICY).context("the built-in policy")?
    } else {
        load_policy_file(&path)?
    };
    let formulary = config.resolve_path(&section.formulary);
    if !formulary.exists() && section.formulary == default_formulary_file() {
        // Running from another folder: the formulary built into the binary (already in the policy).
        return Ok(loaded);
    }
    with_formulary_file(loaded, &formulary)
}

/// Replace the policy's formulary with the file's, validate it and version the result. Errors name
/// the file, the line and the key (syntax) or the product and field (values).
pub fn with_formulary_file(loaded: LoadedPolicy, path: &Path) -> anyhow::Result<LoadedPolicy> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("could not read formulary file {}", path.display()))?;
    let formulary = refill_rules::formulary::parse_formulary(&text)
        .map_err(|e| anyhow::anyhow!("formulary file {}: {}", path.display(), e.trim_end()))?;
    let problems = formulary.problems();
    if !problems.is_empty() {
        bail!("formulary file {}: {}", path.display(), problems.join("; "));
    }
    let mut policy = loaded.policy;
    policy.taper.formulary = formulary;
    let version = policy_version(&policy);
    Ok(LoadedPolicy { policy, version, source: loaded.source })
}

/// Read, parse and validate a policy file. Errors name the file and the key (with line and column for
/// syntax errors and unknown keys).
pub fn load_policy_file(path: &Path) -> anyhow::Result<LoadedPolicy> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("could not read policy file {}", path.display()))?;
    let mut loaded = parse_policy(&text).with_context(|| format!("policy file {}", path.display()))?;
    loaded.source = Some(path.to_path_buf());
    Ok(loaded)
}

/// Parse and validate policy text (the file's contents).
pub fn parse_policy(text: &str) -> anyhow::Result<LoadedPolicy> {
    let policy: Policy = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
    from_policy(policy)
}

/// Validate a policy and give it its version.
pub fn from_policy(policy: Policy) -> anyhow::Result<LoadedPolicy> {
    let problems = policy.problems();
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    let version = policy_version(&policy);
    Ok(LoadedPolicy { policy, version, source: None })
}

/// The built-in defaults (`Policy::defaults()`, the same values as config/policy.toml).
pub fn default_policy() -> LoadedPolicy {
    let policy = Policy::defaults();
    let version = policy_version(&policy);
    LoadedPolicy { policy, version, source: None }
}

/// The explicit version, else the content hash.
pub fn policy_version(policy: &Policy) -> String {
    match &policy.version {
        Some(version) => version.clone(),
        None => content_version(policy),
    }
}

/// `sha256:<16 hex>` over the canonical effective policy, the factor set and the embedded tables.
pub fn content_version(policy: &Policy) -> String {
    let mut unversioned = policy.clone();
    unversioned.version = None;
    // Struct fields serialize in declaration order and maps are BTreeMaps: the JSON is canonical.
    let canonical = serde_json::to_vec(&unversioned).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(b"refill-policy-v1\n");
    hasher.update(&canonical);
    hasher.update(b"\nfactor_set=");
    hasher.update(policy.factor_set().as_str().as_bytes());
    hasher.update(b"\ndrugs\n");
    hasher.update(EMBEDDED_DRUG_CSV.as_bytes());
    hasher.update(b"\nfactors\n");
    hasher.update(EMBEDDED_FACTOR_CSV.as_bytes());
    hasher.update(b"\nformulary\n");
    hasher.update(serde_json::to_vec(&policy.taper.formulary).unwrap_or_default());
    let digest = hasher.finalize();
    format!("sha256:{}", &hex::encode(digest)[..16])
}

/// Apply a TOML table of overrides (same shape as the policy file) on top of `base`; used by scenario
/// files. Unknown keys are rejected like in the file.
pub fn with_overrides(base: &Policy, overrides: &toml::Table) -> anyhow::Result<LoadedPolicy> {
    let mut tree = toml::Table::try_from(base).context("could not represent the base policy")?;
    merge(&mut tree, overrides.clone());
    let mut policy: Policy = Policy::deserialize(toml::Value::Table(tree)).map_err(|e| anyhow::anyhow!("{e}"))?;
    // The formulary is not a policy key: it stays the base's.
    policy.taper.formulary = base.taper.formulary.clone();
    from_policy(policy)
}

fn merge(base: &mut toml::Table, layer: toml::Table) {
    for (key, value) in layer {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(layer_table)) => merge(base_table, layer_table),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped_policy_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/policy.toml")
    }

    #[test]
    fn the_shipped_policy_file_equals_the_built_in_defaults() {
        let loaded = load_policy_file(&shipped_policy_path()).unwrap();
        assert_eq!(loaded.policy, Policy::defaults());
        assert_eq!(loaded.version, default_policy().version);
        assert!(loaded.version.starts_with("sha256:") && loaded.version.len() == 7 + 16, "{}", loaded.version);
    }

    #[test]
    fn the_version_ignores_layout_but_not_values() {
        let empty = parse_policy("").unwrap();
        assert_eq!(empty.version, default_policy().version, "spelled-out defaults hash like missing ones");
        let changed = parse_policy("[refill]\non_time_fraction = 0.9\n").unwrap();
        assert_ne!(changed.version, empty.version);
        let factors = parse_policy("[general]\nfactor_set = \"cdc2016\"\n").unwrap();
        assert_ne!(factors.version, empty.version);
        let pinned = parse_policy("version = \"clinic-2026-12\"\n").unwrap();
        assert_eq!(pinned.version, "clinic-2026-12");
    }

    #[test]
    fn bad_values_are_rejected_with_the_key_named() {
        let error = parse_policy("[refill]\non_time_fraction = 1.2\n").unwrap_err().to_string();
        assert!(error.contains("refill.on_time_fraction must be between 0.5 and 1.0"), "{error}");
        let floor =
            parse_policy("[refill.outcomes]\noverdose_or_sedation_signal = \"ESCALATE\"\n").unwrap_err().to_string();
        assert!(floor.contains("refill.outcomes.overdose_or_sedation_signal"), "{floor}");
        let relaxed = parse_policy("[refill.outcomes]\nregimen_changed = \"APPROVE\"\n").unwrap_err().to_string();
        assert!(relaxed.contains("refill.outcomes.regimen_changed must be at least ESCALATE"), "{relaxed}");
        let typo = parse_policy("[refill]\non_time_fractoin = 0.9\n").unwrap_err().to_string();
        assert!(typo.contains("on_time_fractoin") && typo.contains("line 2"), "{typo}");
        let outcome = parse_policy("[refill.outcomes]\nuds_overdue = \"DISMISS\"\n").unwrap_err().to_string();
        assert!(outcome.contains("unknown outcome") && outcome.contains("DISMISS"), "{outcome}");
        let factors = parse_policy("[general]\nfactor_set = \"cdc2030\"\n").unwrap_err().to_string();
        assert!(factors.contains("factor_set") || factors.contains("cdc2030"), "{factors}");
    }

    #[test]
    fn overrides_apply_on_top_of_a_base() {
        let overrides: toml::Table = toml::from_str("[refill.outcomes]\nagreement_expired = \"HOLD\"\n").unwrap();
        let loaded = with_overrides(&Policy::defaults(), &overrides).unwrap();
        assert_eq!(loaded.policy.refill.outcomes.agreement_expired, refill_rules::Outcome::Hold);
        assert_eq!(loaded.policy.refill.on_time_fraction, 0.85);
        let typo: toml::Table = toml::from_str("[refill]\nnot_a_key = 1\n").unwrap();
        assert!(with_overrides(&Policy::defaults(), &typo).is_err());
    }

    #[test]
    fn load_policy_reads_the_configured_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("config")).unwrap();
        std::fs::write(dir.path().join("config/base.toml"), "[policy]\nfile = \"clinic-policy.toml\"\n").unwrap();
        std::fs::write(dir.path().join("clinic-policy.toml"), "version = \"v7\"\n").unwrap();
        let config = Config::load(Some(&dir.path().join("config"))).unwrap();
        let loaded = load_policy(&config).unwrap();
        assert_eq!(loaded.version, "v7");
        assert_eq!(loaded.source, Some(dir.path().join("clinic-policy.toml")));
        std::fs::write(dir.path().join("clinic-policy.toml"), "[refill]\npdmp_review_max_age_days = 365\n").unwrap();
        let error = format!("{:#}", load_policy(&config).unwrap_err());
        assert!(error.contains("clinic-policy.toml") && error.contains("refill.pdmp_review_max_age_days"), "{error}");
    }

    #[test]
    fn a_clinic_formulary_file_replaces_the_default_and_changes_the_version() {
        let dir = std::env::temp_dir().join(format!("refill-formulary-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("formulary.toml");
        std::fs::write(
            &path,
            "[[product]]\nname = \"oxycodone hydrochloride 5 MG Oral Tablet\"\ningredient = \"oxycodone\"\nstrength = 5\n\
             unit = \"mg\"\ndose_form = \"Oral Tablet\"\nsource = \"our pharmacy list, 2026-12\"\n",
        )
        .unwrap();
        let base = default_policy();
        let loaded = with_formulary_file(base.clone(), &path).unwrap();
        assert_eq!(loaded.policy.taper.formulary.products.len(), 1);
        assert_ne!(loaded.version, base.version, "the formulary is part of the version");
        std::fs::write(&path, "[[product]]\nname = \"x\"\nstrength = \"five\"\n").unwrap();
        let error = format!("{:#}", with_formulary_file(base, &path).unwrap_err());
        assert!(error.contains("formulary.toml") && error.contains("strength"), "{error}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
