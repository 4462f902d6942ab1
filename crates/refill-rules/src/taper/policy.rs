//! `[taper]` in config/policy.toml: the speed presets with explicit numbers, the hard per-step limit,
//! the tail rules, notice lead days and the flags for the physician.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::formulary::Formulary;

/// One taper speed. Rates are fractions of the ORIGINAL daily dose (in MME) per window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaperPreset {
    /// Most the dose may fall, as a fraction of the original daily dose, in any `window_days`
    /// consecutive days.
    pub rate_fraction: f64,
    pub window_days: i64,
    /// Days between dose reductions.
    pub step_days: i64,
    /// Needs a physician safety attestation with a reason (VA "faster"/"rapid", anything above the
    /// 20%-per-4-weeks ceiling of clinical-rules.md §6.4).
    #[serde(default)]
    pub requires_attestation: bool,
    /// The attestation must give a life-threatening situation as its reason (the rapid preset: CDC
    /// 2022 Rec 5 allows a rapid taper only then; a short prior duration alone does not fit).
    #[serde(default)]
    pub requires_life_threatening_reason: bool,
    /// Overrides the policy's `max_step_fraction` for this preset (for example `rapid`).
    #[serde(default)]
    pub max_step_fraction: Option<f64>,
    /// Where the numbers come from, shown with the plan.
    #[serde(default)]
    pub source: String,
}

/// `[taper]` in config/policy.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaperPolicy {
    /// The preset used when a request names none. Default `cdc_default`.
    pub default_preset: String,
    pub presets: BTreeMap<String, TaperPreset>,
    /// No single dose-reduction step may cut the current total daily dose by more than this fraction.
    /// Default 0.25. The tail's dosing-interval steps and the final stop are the CDC-endorsed exception
    /// ("once the smallest available dose is reached, extend the dosing interval; stop when taken less
    /// than once a day", clinical-rules.md §6.1); they still obey the window rate.
    pub max_step_fraction: f64,
    /// When the next dose cut is blocked by the per-step limit, the time between steps is multiplied by
    /// this before the dosing interval is lengthened. Default 2.
    pub tail_step_multiplier: i64,
    /// The longest the time between steps grows at the tail. Default 56 days.
    pub tail_max_step_days: i64,
    /// A follow-up contact is due this many days before each step, and never more than
    /// `max_follow_up_gap_days` apart (CDC 2022: at least monthly). Defaults 7 and 28.
    pub follow_up_lead_days: i64,
    pub max_follow_up_gap_days: i64,
    /// Lead days for the patient notice and the staff notice of each step. Defaults 7 and 14.
    pub patient_notice_lead_days: i64,
    pub staff_notice_lead_days: i64,
    /// Dose forms whose tablets may be split in halves to make a step dispensable. Default none:
    /// extended-release forms must never be split; a clinic adds scored IR forms after checking them.
    pub splittable_dose_forms: Vec<String>,
    /// The most dose-form units per administration a step may use.
    pub max_units_per_administration: u32,
    /// The most patches worn at once in a step: a step moves to the next marketed patch strength, never
    /// to a stack of small patches. Default 1.
    pub max_patches_per_application: u32,
    /// This many pauses flag "consider buprenorphine transition and OUD assessment". Default 2.
    pub pauses_before_flag: usize,
    /// A plan that has not reduced for this many days while at or above `stall_mme` is stalled and
    /// flagged the same way. Defaults 90 days and 90 MME.
    pub stall_days: i64,
    pub stall_mme: f64,
    /// The longest plan the planner writes out (steps); longer plans stop with a reason.
    pub max_steps: usize,
    /// Acetaminophen limits checked for the regimen and every step: per unit (FDA 2014: 325 mg) and
    /// per day (4,000 mg). Defaults 325 and 4000.
    pub acetaminophen_max_mg_per_unit: f64,
    pub acetaminophen_max_mg_per_day: f64,
    /// The clinic asks patients on a taper to attend its opioid-safety class (shown on the patient page
    /// until attended). Default off.
    pub require_safety_class: bool,
    /// At or above this daily MME the patient page prompts the physician to discuss a buprenorphine
    /// transition with the patient (never an automatic change). Default 200.
    pub buprenorphine_discussion_mme: f64,
    /// The preset a methadone plan must use, chosen by the physician (never the default). Default
    /// `methadone`.
    pub methadone_preset: String,
    /// The clinic formulary the planner plans from: `config/formulary.toml`, loaded by the binary
    /// (not a policy key; the policy version hashes it separately).
    #[serde(skip)]
    pub formulary: Formulary,
}

impl TaperPolicy {
    pub fn defaults() -> TaperPolicy {
        let preset = |rate_fraction, window_days, step_days, requires_attestation, source: &str| TaperPreset {
            rate_fraction,
            window_days,
            step_days,
            requires_attestation,
            requires_life_threatening_reason: false,
            max_step_fraction: None,
            source: source.to_string(),
        };
        let mut presets = BTreeMap::new();
        presets.insert(
            "cdc_default".to_string(),
            preset(0.10, 28, 28, false, "CDC 2022 Rec 5: about 10% per month or slower after >= 1 year"),
        );
        presets.insert(
            "slowest".to_string(),
            preset(0.05, 28, 28, false, "VA taper tool: slowest, 2-10% every 4-8 weeks"),
        );
        presets.insert(
            "slower".to_string(),
            preset(0.20, 28, 28, false, "VA taper tool: slower (most common), 5-20% every 4 weeks"),
        );
        presets.insert("faster".to_string(), preset(0.20, 7, 7, true, "VA taper tool: faster, 10-20% every week"));
        presets.insert(
            "rapid".to_string(),
            TaperPreset {
                max_step_fraction: Some(0.20),
                requires_life_threatening_reason: true,
                ..preset(
                    0.20,
                    1,
                    1,
                    true,
                    "VA taper tool: rapid, 10-20% every day (consider inpatient); CDC 2022 Rec 5: only for a life-threatening issue",
                )
            },
        );
        presets.insert(
            "methadone".to_string(),
            preset(
                0.05,
                28,
                28,
                false,
                "VA taper tool: slowest, 2-10% every 4-8 weeks (methadone: long, variable half-life; physician-chosen)",
            ),
        );
        TaperPolicy {
            default_preset: "cdc_default".to_string(),
            presets,
            max_step_fraction: 0.25,
            tail_step_multiplier: 2,
            tail_max_step_days: 56,
            follow_up_lead_days: 7,
            max_follow_up_gap_days: 28,
            patient_notice_lead_days: 7,
            staff_notice_lead_days: 14,
            splittable_dose_forms: Vec::new(),
            max_units_per_administration: 4,
            max_patches_per_application: 1,
            pauses_before_flag: 2,
            stall_days: 90,
            stall_mme: 90.0,
            max_steps: 400,
            acetaminophen_max_mg_per_unit: 325.0,
            acetaminophen_max_mg_per_day: 4000.0,
            methadone_preset: "methadone".to_string(),
            require_safety_class: false,
            buprenorphine_discussion_mme: 200.0,
            formulary: Formulary::embedded().clone(),
        }
    }

    pub fn preset(&self, name: &str) -> Option<&TaperPreset> {
        self.presets.get(name)
    }

    /// Checks a policy a physician typed: the reasons it cannot be used, empty when it is fine.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.presets.contains_key(&self.default_preset) {
            problems.push(format!("taper.default_preset {:?} is not a preset", self.default_preset));
        }
        if let Some(preset) = self.presets.get(&self.default_preset)
            && preset.requires_attestation
        {
            problems.push("taper.default_preset must not require an attestation".to_string());
        }
        for (name, preset) in &self.presets {
            if !in_unit_interval(preset.rate_fraction) {
                problems.push(format!(
                    "taper.presets.{name}.rate_fraction must be in (0, 1], not {}",
                    preset.rate_fraction
                ));
            }
            if preset.window_days < 1 || preset.step_days < 1 {
                problems.push(format!("taper.presets.{name}: window_days and step_days must be at least 1"));
            }
            // Above the ceiling of 20% per 4 weeks (clinical-rules.md §6.4) a preset needs an attestation.
            let per_28_days = preset.rate_fraction * 28.0 / preset.window_days.max(1) as f64;
            if per_28_days > 0.20 + 1e-9 && !preset.requires_attestation {
                problems.push(format!(
                    "taper.presets.{name} reduces {:.0}% per 28 days, above the 20% ceiling, so it must set requires_attestation = true",
                    per_28_days * 100.0
                ));
            }
            if let Some(fraction) = preset.max_step_fraction
                && !in_unit_interval(fraction)
            {
                problems.push(format!("taper.presets.{name}.max_step_fraction must be in (0, 1], not {fraction}"));
            }
        }
        if !in_unit_interval(self.max_step_fraction) || self.max_step_fraction >= 1.0 {
            problems.push(format!("taper.max_step_fraction must be in (0, 1), not {}", self.max_step_fraction));
        }
        if self.tail_step_multiplier < 1 || self.tail_max_step_days < 1 {
            problems.push("taper.tail_step_multiplier and taper.tail_max_step_days must be at least 1".to_string());
        }
        if !(1..=31).contains(&self.max_follow_up_gap_days) {
            problems.push(format!(
                "taper.max_follow_up_gap_days must be 1..=31 (at least monthly), not {}",
                self.max_follow_up_gap_days
            ));
        }
        if self.follow_up_lead_days < 0 || self.patient_notice_lead_days < 0 || self.staff_notice_lead_days < 0 {
            problems.push("taper lead days must not be negative".to_string());
        }
        if self.max_units_per_administration == 0 || self.max_patches_per_application == 0 {
            problems.push(
                "taper.max_units_per_administration and taper.max_patches_per_application must be at least 1"
                    .to_string(),
            );
        }
        if !self.presets.contains_key(&self.methadone_preset) {
            problems.push(format!("taper.methadone_preset {:?} is not a preset", self.methadone_preset));
        }
        let per_unit = self.acetaminophen_max_mg_per_unit > 0.0 && self.acetaminophen_max_mg_per_unit <= 325.0;
        let per_day = self.acetaminophen_max_mg_per_day > 0.0 && self.acetaminophen_max_mg_per_day <= 4000.0;
        if !(per_unit && per_day) {
            problems.push(
                "taper.acetaminophen_max_mg_per_unit must be in (0, 325] and taper.acetaminophen_max_mg_per_day in (0, 4000]"
                    .to_string(),
            );
        }
        problems.extend(self.formulary.problems().into_iter().map(|problem| format!("formulary: {problem}")));
        if self.max_steps == 0 {
            problems.push("taper.max_steps must be at least 1".to_string());
        }
        problems
    }
}

/// Whether `value` is in (0, 1] (NaN is not).
fn in_unit_interval(value: f64) -> bool {
    value > 0.0 && value <= 1.0
}

impl Default for TaperPolicy {
    fn default() -> Self {
        TaperPolicy::defaults()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_consistent() {
        assert_eq!(TaperPolicy::defaults().problems(), Vec::<String>::new());
    }

    #[test]
    fn a_fast_preset_without_attestation_is_refused() {
        let mut policy = TaperPolicy::defaults();
        policy.presets.get_mut("faster").unwrap().requires_attestation = false;
        assert!(policy.problems().iter().any(|p| p.contains("faster")), "{:?}", policy.problems());
    }
}
