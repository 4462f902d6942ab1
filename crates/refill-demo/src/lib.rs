//! The synthetic demo clinic: a realistic population generated from a seed (pure, no I/O).
//!
//! A working refill clinic's shape: hydrocodone and oxycodone (immediate and extended release),
//! morphine ER, fentanyl patches, methadone, tramadol and a few patients on buprenorphine for pain; most
//! patients between 20 and 90 MME with a tail at 90 or more and a few above 200; ORT tiers spread low /
//! moderate / high; a few diagnoses that matter to the rules (sleep apnea, overdose or substance-use
//! history, now and then a cancer) and a few benzodiazepines, acknowledged by the physician.
//!
//! Most patients are stable and on time, as in a clinic that works: PDMP checked and benefit-risk
//! review within 90 days, agreement renewed within the year, drug tests on the dates the clinic drew
//! for their tier, naloxone offered to everyone at higher risk. Each patient fills every 28 or 30 days,
//! on the day or a day or two late, at an evenly spread point of the cycle, so each day about 1/28 of
//! the clinic comes due. The exceptions a day brings (tapers, one overdue item, an unexpected drug
//! test, an outside prescriber, new and transferred patients...) are the [`cases`] module's case mix,
//! each with its share and the reason for it. A transferred patient comes with the previous
//! prescriber recorded, and some stable patients have called in their refill (a few early), so the
//! queue shows requests as the events they are.
//!
//! The clinic is written out in the documented CSV import format ([`DemoClinic::csv_files`]), so the
//! demo exercises the same import path a real clinic uses. The drug-test dates the clinic drew are not
//! part of that format; they are given as [`DemoPatient::next_uds_due`] for the demo to schedule.
//! Names are drawn from lists of name parts; emails use the reserved `example.org` domain. The same
//! seed and date always give the same clinic.

pub mod cases;
mod names;
pub mod products;
mod rng;

use chrono::{Datelike, Duration, NaiveDate};
use refill_rules::{
    AgreementFacts, ClinicalFlag, ClinicalFlagKind, Confidentiality, DoseQuantity, DoseUnit, DrugClass, Fill,
    MedicationOrder, NaloxoneEvent, NaloxoneEventKind, OrderPurpose, OtherMedication, OtherMedicationClass,
    PdmpFinding, PdmpReview, PhysicianReview, PrescriberId, RequestKind, ReviewKind, RiskTier, Sex, UdsAnalyteResult,
    UdsKind, UdsResult,
};

use crate::cases::{Assignment, Positions};
pub use crate::cases::{CASE_MIX, CaseKind};
use crate::products::{Dosing, Family, dosings};
pub use crate::rng::DemoRng;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoSettings {
    pub patients: usize,
    pub seed: u64,
    /// The clinic date the population is built around (fills, due dates, overdue items).
    pub today: NaiveDate,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DemoPhysician {
    pub id: String,
    pub display_name: String,
}

/// A physician-authored taper in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoTaper {
    pub id: String,
    pub started_on: NaiveDate,
    pub physician: String,
    pub rationale: String,
    /// Paused by the physician: the step in force holds until the physician resumes the plan.
    pub paused: bool,
    pub steps: Vec<DemoTaperStep>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DemoTaperStep {
    pub number: u32,
    pub starts_on: NaiveDate,
    pub regimen: Vec<MedicationOrder>,
    pub daily_mme: f64,
}

/// A refill request the clinic recorded before the demo's day (a patient called the desk).
#[derive(Debug, Clone, PartialEq)]
pub struct DemoRequest {
    pub requested_on: NaiveDate,
    pub kind: RequestKind,
    /// What the patient said, as staff wrote it down.
    pub note: Option<String>,
}

/// One synthetic patient with identity, regimen and monitoring history.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoPatient {
    pub external_id: String,
    pub mrn: String,
    pub given_name: String,
    pub family_name: String,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub email_consent: bool,
    pub contact_preference: &'static str,
    pub prescriber_id: String,
    /// A transferred patient's previous prescriber (the outside prescriber of the PDMP fills before the
    /// transfer), recorded so the rules do not count them as an outside prescriber.
    pub previous_prescriber: Option<String>,
    pub risk_tier: RiskTier,
    /// What sets the patient apart from the stable majority ([`CaseKind::Stable`] for most).
    pub case: CaseKind,
    /// The active regimen (for a patient on a taper: the step in force).
    pub orders: Vec<MedicationOrder>,
    /// Daily MME of `orders` by the CDC 2022 factors; `None` for buprenorphine-only regimens.
    pub daily_mme: Option<f64>,
    pub fills: Vec<(String, Fill)>,
    pub uds: Vec<(String, UdsResult)>,
    /// The date the clinic drew for the next scheduled drug test (in the past for an overdue test);
    /// `None` while an unexpected result waits for the physician, who orders what follows.
    pub next_uds_due: Option<NaiveDate>,
    pub pdmp: Vec<(String, PdmpReview)>,
    pub agreement: Option<(String, AgreementFacts)>,
    pub taper: Option<DemoTaper>,
    /// Benefit-risk reviews and acknowledgements.
    pub reviews: Vec<(String, PhysicianReview)>,
    pub naloxone: Vec<(String, NaloxoneEvent)>,
    /// Diagnoses the rules use, by condition id; `false` when resolved at the source.
    pub conditions: Vec<(String, ClinicalFlag, bool)>,
    /// Benzodiazepines on the medication list, by medication id.
    pub other_medications: Vec<(String, OtherMedication)>,
    /// Refill requests recorded in the last days (refills come due; a few patients ask early).
    pub requests: Vec<DemoRequest>,
    /// Built with an unexpected drug-test result not yet reviewed.
    pub unexpected_uds: bool,
    /// Built with an overdue drug test, PDMP review, agreement (expired or missing) or review.
    pub overdue_uds: bool,
    pub overdue_pdmp: bool,
    pub overdue_agreement: bool,
    pub overdue_review: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DemoClinic {
    pub today: NaiveDate,
    pub physicians: Vec<DemoPhysician>,
    pub patients: Vec<DemoPatient>,
}

/// Generate the clinic.
pub fn generate(settings: &DemoSettings) -> DemoClinic {
    let root = DemoRng::new(settings.seed);
    let positions = Positions::new(&root);
    let physician_count = (settings.patients / 60).clamp(4, 12);
    let mut roster_rng = root.fork(u64::MAX);
    let physicians: Vec<DemoPhysician> = (0..physician_count)
        .map(|i| {
            let given = names::PHYSICIAN_GIVEN[i % names::PHYSICIAN_GIVEN.len()];
            let family = roster_rng.pick(names::FAMILY);
            DemoPhysician {
                id: format!("19{:08}", roster_rng.range(0, 99_999_999)),
                display_name: format!("Dr. {given} {family}"),
            }
        })
        .collect();
    let patients = (0..settings.patients)
        .map(|index| {
            let mut rng = root.fork(index as u64);
            generate_patient(&mut rng, index, settings.today, &physicians, &positions)
        })
        .collect();
    DemoClinic { today: settings.today, physicians, patients }
}

/// Diagnoses that matter to the rules, more often at a higher ORT tier: sleep apnea, overdose and
/// substance-use history (some resolved at the source, which keeps them history), rarely a cancer
/// (out of the refill protocol's scope: a physician sees the patient) or one in remission.
fn draw_conditions(
    rng: &mut DemoRng,
    number: usize,
    today: NaiveDate,
    tier: RiskTier,
) -> Vec<(String, ClinicalFlag, bool)> {
    let high = tier == RiskTier::High;
    let table = [
        (ClinicalFlagKind::SleepDisorderedBreathing, 0.06),
        (ClinicalFlagKind::OverdoseHistory, if high { 0.08 } else { 0.01 }),
        (ClinicalFlagKind::SubstanceUseDisorderHistory, if high { 0.10 } else { 0.02 }),
        (ClinicalFlagKind::Cancer, 0.01),
    ];
    let mut conditions = Vec::new();
    for (index, (kind, probability)) in table.into_iter().enumerate() {
        if !rng.chance(probability) {
            continue;
        }
        let recorded_on = today - Duration::days(rng.range(200, 3_000));
        let active = kind != ClinicalFlagKind::Cancer || rng.chance(0.5);
        let flag = ClinicalFlag { kind, recorded_on, confidentiality: Confidentiality::Normal };
        conditions.push((format!("DX-{number}-{}", index + 1), flag, active));
    }
    conditions
}

/// Draw the intended daily MME: most between 20 and 90, 10-15% at 90 or more, a few above 200.
fn draw_target_mme(rng: &mut DemoRng) -> f64 {
    match rng.weighted(&[0.06, 0.81, 0.105, 0.025]) {
        0 => rng.uniform(10.0, 20.0),
        1 => rng.uniform(20.0, 88.0),
        2 => rng.uniform(95.0, 190.0),
        _ => rng.uniform(210.0, 300.0),
    }
}

fn draw_family(rng: &mut DemoRng, target: f64) -> Family {
    use Family::*;
    let table: &[(Family, f64)] = if target < 30.0 {
        &[(HydrocodoneIr, 0.35), (Tramadol, 0.25), (OxycodoneIr, 0.2), (TramadolEr, 0.12), (FentanylPatch, 0.08)]
    } else if target < 60.0 {
        &[
            (HydrocodoneIr, 0.27),
            (OxycodoneIr, 0.25),
            (OxycodoneEr, 0.14),
            (MorphineEr, 0.12),
            (FentanylPatch, 0.08),
            (Methadone, 0.06),
            (TramadolEr, 0.08),
        ]
    } else if target < 90.0 {
        &[
            (HydrocodoneIr, 0.2),
            (OxycodoneIr, 0.25),
            (OxycodoneEr, 0.2),
            (MorphineEr, 0.15),
            (FentanylPatch, 0.12),
            (Methadone, 0.08),
        ]
    } else {
        &[(OxycodoneEr, 0.3), (MorphineEr, 0.25), (FentanylPatch, 0.2), (Methadone, 0.1), (OxycodoneIr, 0.15)]
    };
    let weights: Vec<f64> = table.iter().map(|(_, w)| *w).collect();
    table[rng.weighted(&weights)].0
}

/// A dosing of `family` near `target` MME: one of those within 15%, else the nearest; a target under 90
/// stays under 90 and one at 90 or more stays there, so the drawn spread survives the rounding to
/// real tablet strengths.
fn dosing_near(rng: &mut DemoRng, family: Family, target: f64) -> Dosing {
    let same_side = |d: &Dosing| d.daily_mme().is_some_and(|m| (m >= 90.0) == (target >= 90.0));
    let all: Vec<Dosing> = match dosings(family).into_iter().filter(same_side).collect::<Vec<_>>() {
        filtered if !filtered.is_empty() => filtered,
        _ => dosings(family),
    };
    let close: Vec<Dosing> =
        all.iter().copied().filter(|d| d.daily_mme().is_some_and(|m| (m - target).abs() <= 0.15 * target)).collect();
    if !close.is_empty() {
        return *rng.pick(&close);
    }
    let distance = |d: &Dosing| d.daily_mme().map_or(f64::MAX, |m| (m - target).abs());
    all.into_iter().min_by(|a, b| distance(a).total_cmp(&distance(b))).expect("every family has dosings")
}

fn order_from(dosing: &Dosing, id: String, days_supply: u32, prescriber: &str) -> MedicationOrder {
    let product = dosing.product;
    let units_per_day = dosing.units_per_dose * dosing.doses_per_day;
    MedicationOrder {
        id,
        rxcui: Some(product.rxcui.to_string()),
        text: Some(product.name.to_string()),
        dose: Some(DoseQuantity { value: dosing.units_per_dose, unit: DoseUnit::DoseFormUnit }),
        doses_per_day: Some(dosing.doses_per_day),
        days_supply: Some(days_supply),
        dispense_quantity: Some((units_per_day * f64::from(days_supply)).ceil()),
        prescriber: Some(PrescriberId(prescriber.to_string())),
        purpose: OrderPurpose::Pain,
        confidentiality: Confidentiality::Normal,
    }
}

fn regimen_mme(dosings: &[Dosing]) -> Option<f64> {
    dosings.iter().map(Dosing::daily_mme).sum()
}

/// The immunoassay that shows a prescribed ingredient, as labs name them.
fn assay_for(ingredient: &str) -> &'static str {
    match ingredient {
        "hydrocodone" | "morphine" => "opiates",
        "oxycodone" => "oxycodone",
        "fentanyl" => "fentanyl",
        "methadone" => "methadone",
        "tramadol" => "tramadol",
        _ => "buprenorphine",
    }
}

/// Drug-test periods by tier and dose, as the default policy draws them (`config/policy.toml`
/// `[uds]`): low 365 days, moderate 182, high 120, and 91 at 90 MME or more; a draw is never sooner
/// than 30 days after the last test.
fn uds_period_days(tier: RiskTier, daily_mme: Option<f64>) -> i64 {
    let by_tier = match tier {
        RiskTier::Low => 365,
        RiskTier::Moderate => 182,
        RiskTier::High => 120,
    };
    if daily_mme.is_some_and(|m| m >= 90.0) { by_tier.min(91) } else { by_tier }
}

const UDS_MIN_GAP_DAYS: i64 = 30;

/// The elements of the default policy's agreement (`[agreement] required_elements`).
const AGREEMENT_ELEMENTS: [&str; 9] = [
    "benefits_and_risks",
    "treatment_goals",
    "single_prescriber",
    "single_pharmacy",
    "take_as_prescribed",
    "secure_storage",
    "random_drug_testing",
    "pdmp_checks",
    "how_therapy_ends",
];

const BENZODIAZEPINES: [&str; 4] = [
    "alprazolam 0.5 MG Oral Tablet",
    "clonazepam 0.5 MG Oral Tablet",
    "lorazepam 1 MG Oral Tablet",
    "diazepam 5 MG Oral Tablet",
];

fn days_ago(today: NaiveDate, days: i64) -> NaiveDate {
    today - Duration::days(days)
}

fn generate_patient(
    rng: &mut DemoRng,
    index: usize,
    today: NaiveDate,
    physicians: &[DemoPhysician],
    positions: &Positions,
) -> DemoPatient {
    let number = index + 1;
    let Assignment { kind: case, within } = positions.case(index);
    let external_id = format!("P{number:06}");
    let sex = if rng.chance(0.56) { Sex::Female } else { Sex::Male };
    let given_name = rng.pick(if sex == Sex::Female { names::GIVEN_FEMALE } else { names::GIVEN_MALE }).to_string();
    let family_name = rng.pick(names::FAMILY).to_string();
    let age_days = rng.range(28 * 365, 86 * 365);
    let birth_date = today - Duration::days(age_days);
    let prescriber = rng.pick(physicians).id.clone();
    let risk_tier = [RiskTier::Low, RiskTier::Moderate, RiskTier::High][rng.weighted(&[0.45, 0.35, 0.20])];
    let has_email = rng.chance(0.8);
    let email =
        has_email.then(|| format!("{}.{}{number}@example.org", given_name.to_lowercase(), family_name.to_lowercase()));
    let phone = Some(format!("+1-555-01{:02}", rng.range(0, 99)));
    let email_consent = has_email && rng.chance(0.85);
    let contact_preference = if email_consent { "email" } else { "phone" };
    let tapering = matches!(case, CaseKind::Taper | CaseKind::TaperPaused);
    // New and transferred patients came in within the last few weeks: intake items are all recent.
    let intake = matches!(case, CaseKind::NewPatient | CaseKind::TransferredPatient);

    // Regimen: a buprenorphine-for-pain few, otherwise a target MME and a family that reaches it. A
    // taper starts from at least 30 MME (below that a physician stops in one or two steps); the first
    // 40% of the overdue reviews are high-MME patients, so "high MME without a current review" shows.
    let high_mme_unreviewed = case == CaseKind::ReviewOverdue && within < 0.4;
    let on_buprenorphine = !tapering && !high_mme_unreviewed && rng.chance(0.03);
    let mut dosings_now: Vec<Dosing> = if on_buprenorphine {
        let family = if rng.chance(0.5) { Family::BuprenorphinePatch } else { Family::BuprenorphineBuccal };
        vec![*rng.pick(&dosings(family))]
    } else {
        let mut target = draw_target_mme(rng);
        while (tapering && target < 30.0) || (high_mme_unreviewed && target < 90.0) {
            target = draw_target_mme(rng);
        }
        let family = draw_family(rng, target);
        let long_acting =
            matches!(family, Family::OxycodoneEr | Family::MorphineEr | Family::FentanylPatch | Family::Methadone);
        if target >= 90.0 && long_acting && rng.chance(0.35) {
            // Long-acting base with immediate-release breakthrough doses.
            let base = dosing_near(rng, family, target * 0.75);
            let rest = (target - base.daily_mme().unwrap_or(0.0)).max(10.0);
            vec![base, dosing_near(rng, Family::OxycodoneIr, rest)]
        } else {
            vec![dosing_near(rng, family, target)]
        }
    };
    let days_supply: u32 = if rng.chance(0.7) { 28 } else { 30 };

    // Taper: steps of about 10% of the starting dose every four weeks; the active orders are the step
    // in force.
    let mut taper = None;
    let start_mme = regimen_mme(&dosings_now);
    if tapering && start_mme.is_some() {
        let start = start_mme.unwrap_or_default();
        let started_on = days_ago(today, rng.range(10, 110));
        let family = dosings_now[0].product.family;
        let physician = prescriber.clone();
        let mut steps = Vec::new();
        for step in 0..6u32 {
            let starts_on = started_on + Duration::days(i64::from(step) * 28);
            let target = start * (1.0 - 0.1 * f64::from(step));
            let step_dosings = if step == 0 { dosings_now.clone() } else { vec![dosing_near(rng, family, target)] };
            let regimen: Vec<MedicationOrder> = step_dosings
                .iter()
                .enumerate()
                .map(|(k, d)| {
                    order_from(d, format!("TP-{number}/step-{}/{}", step + 1, k + 1), days_supply, &physician)
                })
                .collect();
            let daily_mme = regimen_mme(&step_dosings).unwrap_or_default();
            steps.push((step_dosings, DemoTaperStep { number: step + 1, starts_on, regimen, daily_mme }));
        }
        if let Some((in_force, _)) = steps.iter().rev().find(|(_, step)| step.starts_on <= today) {
            dosings_now = in_force.clone();
        }
        let paused = case == CaseKind::TaperPaused;
        taper = Some(DemoTaper {
            id: format!("TP-{number}"),
            started_on,
            physician,
            rationale: if paused {
                "Shared decision with the patient: function goals met at a lower dose; slow taper of about \
                 10% a month. Paused at the patient's request after withdrawal symptoms; review next visit."
            } else {
                "Shared decision with the patient: function goals met at a lower dose; \
                 slow taper of about 10% a month, pausing if withdrawal or pain worsens."
            }
            .to_string(),
            paused,
            steps: steps.into_iter().map(|(_, step)| step).collect(),
        });
    }
    let orders: Vec<MedicationOrder> = dosings_now
        .iter()
        .enumerate()
        .map(|(k, d)| order_from(d, format!("RX-{number}-{}", k + 1), days_supply, &prescriber))
        .collect();
    let daily_mme = regimen_mme(&dosings_now);

    // Fills: the patient's place in the cycle comes from an even sequence, so each of the next 28
    // days about 1/28 of the clinic runs out (30-day supplies too: the day depends on the sequence
    // alone, not on a draw that would break its evenness). Patients fill on the day or a day or two
    // late, never early (early fills would accumulate), except the early-fill case. A new patient has
    // no fill yet; a transferred one brings two from before.
    let runs_out_in = (positions.cycle_phase(index) * 28.0).floor() as i64;
    let last_fill = today + Duration::days(runs_out_in) - Duration::days(i64::from(days_supply));
    let cycles = match case {
        CaseKind::NewPatient => 0,
        CaseKind::TransferredPatient => 2,
        _ => 6,
    };
    let mut fills = Vec::new();
    let mut filled_on = last_fill;
    for cycle in 0..cycles {
        for order in &orders {
            fills.push((
                format!("F-{number}-{}-{}", cycle + 1, order.id.rsplit('-').next().unwrap_or("1")),
                Fill { filled_on, days_supply, order_id: Some(order.id.clone()), quantity: order.dispense_quantity },
            ));
        }
        let gap = if case == CaseKind::EarlyFills {
            i64::from(days_supply) - rng.range(4, 7)
        } else {
            i64::from(days_supply) + rng.range(0, 2)
        };
        filled_on -= Duration::days(gap);
    }
    fills.reverse();

    // Everything dated from the last benefit-risk review: seen every three months, monthly while
    // tapering, at intake for new and transferred patients.
    let last_review = match case {
        CaseKind::ReviewOverdue => days_ago(today, rng.range(95, 200)),
        _ if intake => days_ago(today, rng.range(1, 20)),
        _ if tapering => days_ago(today, rng.range(0, 28)),
        _ => days_ago(today, rng.range(0, 85)),
    };
    let physician = PrescriberId(prescriber.clone());
    let mut reviews = vec![(
        format!("REV-{number}-2"),
        PhysicianReview { reviewed_on: last_review, physician: physician.clone(), kind: ReviewKind::BenefitRisk },
    )];
    if !intake {
        reviews.insert(
            0,
            (
                format!("REV-{number}-1"),
                PhysicianReview {
                    reviewed_on: last_review - Duration::days(rng.range(80, 90)),
                    physician: physician.clone(),
                    kind: ReviewKind::BenefitRisk,
                },
            ),
        );
    }

    // Drug tests: the clinic drew the next date between 30 days and the tier's period after the last
    // test; a current patient is somewhere before that date, an overdue one past it.
    let period = uds_period_days(risk_tier, daily_mme);
    let drawn_gap = rng.range(UDS_MIN_GAP_DAYS, period);
    let unexpected_uds = case == CaseKind::UnexpectedUds;
    let last_uds = match case {
        CaseKind::UdsOverdue => days_ago(today, drawn_gap + rng.range(5, 60)),
        // An unexpected result is recent: the physician reviews within days.
        CaseKind::UnexpectedUds => days_ago(today, rng.range(2, 14)),
        _ if intake => days_ago(today, rng.range(1, 20)),
        _ => days_ago(today, rng.range(1, drawn_gap - 1)),
    };
    let next_uds_due = if unexpected_uds { None } else { Some(last_uds + Duration::days(drawn_gap)) };
    // In thirds: the prescribed drug absent, cocaine, an unprescribed benzodiazepine.
    let unexpected_kind = unexpected_uds.then_some(((within * 3.0) as u8).min(2));

    // Benzodiazepines: a few patients, acknowledged at each review; one case where the
    // acknowledgement is missing or old; a few stopped ones that no longer count.
    let mut other_medications = Vec::new();
    let benzo_roll = rng.unit();
    // Not with an unexpected drug test: the case's unprescribed benzodiazepine would then be prescribed.
    let on_benzo = case == CaseKind::BenzodiazepineUnacknowledged || (!intake && !unexpected_uds && benzo_roll < 0.04);
    let stopped_benzo = !on_benzo && benzo_roll < 0.055;
    // Half the unacknowledged ones are long-standing and the acknowledgement lapsed at a review that
    // did not renew it; the other half are new since the last review (nobody has acknowledged them
    // yet, nor made the naloxone offer they call for).
    let new_benzo = case == CaseKind::BenzodiazepineUnacknowledged && within >= 0.5;
    if on_benzo || stopped_benzo {
        let started_on = if new_benzo {
            let since_review = (today - last_review).num_days();
            days_ago(today, rng.range(1, since_review.max(2) - 1))
        } else {
            days_ago(today, rng.range(60, 900))
        };
        let text = *rng.pick(&BENZODIAZEPINES);
        other_medications.push((
            format!("BZD-{number}"),
            OtherMedication {
                class: OtherMedicationClass::Benzodiazepine,
                text: text.to_string(),
                started_on: Some(started_on),
                active: on_benzo,
                confidentiality: Confidentiality::Normal,
            },
        ));
        let acknowledged_on = if new_benzo {
            None
        } else if case == CaseKind::BenzodiazepineUnacknowledged {
            Some((started_on + Duration::days(rng.range(1, 30))).min(days_ago(today, 120)))
        } else {
            on_benzo.then_some(last_review)
        };
        if let Some(on) = acknowledged_on {
            reviews.push((
                format!("REV-{number}-5"),
                PhysicianReview {
                    reviewed_on: on,
                    physician: physician.clone(),
                    kind: ReviewKind::BenzodiazepineAcknowledged,
                },
            ));
        }
    }

    let prescribed: Vec<&str> = dosings_now.iter().map(|d| d.product.ingredient).collect();
    let expected_panel = |unexpected: Option<u8>| -> Vec<UdsAnalyteResult> {
        let mut analytes: Vec<UdsAnalyteResult> = prescribed
            .iter()
            .map(|ingredient| UdsAnalyteResult {
                assay: assay_for(ingredient).to_string(),
                analyte: (*ingredient).to_string(),
                detected: unexpected != Some(0),
            })
            .collect();
        analytes.push(UdsAnalyteResult {
            assay: "cocaine".into(),
            analyte: "benzoylecgonine".into(),
            detected: unexpected == Some(1),
        });
        analytes.push(UdsAnalyteResult {
            assay: "benzodiazepines".into(),
            analyte: "benzodiazepines".into(),
            detected: unexpected == Some(2) || on_benzo,
        });
        analytes.push(UdsAnalyteResult {
            assay: "amphetamines".into(),
            analyte: "amphetamine".into(),
            detected: false,
        });
        analytes
    };
    let mut uds = Vec::new();
    if !intake {
        let earlier = last_uds - Duration::days(rng.range(UDS_MIN_GAP_DAYS, period));
        uds.push((
            format!("UDS-{number}-1"),
            UdsResult {
                collected_on: earlier,
                kind: UdsKind::Scheduled,
                confirmatory: false,
                analytes: expected_panel(None),
                physician_reviewed_on: Some(earlier + Duration::days(rng.range(1, 4))),
                confidentiality: Confidentiality::Normal,
                specimen_validity: Default::default(),
            },
        ));
    }
    let reviewed_on = last_uds + Duration::days(rng.range(1, 4));
    // An absent prescribed drug is reported from a confirmatory (LC-MS) test: an immunoassay that
    // cannot see the drug well proves nothing, and the rules rightly draw no conclusion from it.
    let confirmatory = unexpected_kind == Some(0);
    let mut analytes = expected_panel(unexpected_kind);
    if confirmatory {
        for line in &mut analytes {
            line.assay = "lcms".into();
        }
    }
    uds.push((
        format!("UDS-{number}-2"),
        UdsResult {
            collected_on: last_uds,
            kind: UdsKind::Scheduled,
            confirmatory,
            analytes,
            physician_reviewed_on: (!unexpected_uds && reviewed_on <= today).then_some(reviewed_on),
            confidentiality: Confidentiality::Normal,
            specimen_validity: Default::default(),
        },
    ));

    // PDMP: checked at least every three months (most clinics at every visit); the outside-prescriber
    // cases carry a finding, a transferred patient the previous prescriber's opioid fills.
    let last_pdmp = match case {
        CaseKind::PdmpOverdue => days_ago(today, rng.range(95, 200)),
        _ if intake => days_ago(today, rng.range(1, 20)),
        _ => days_ago(today, rng.range(0, 85)),
    };
    let outside_prescriber = PrescriberId(format!("18{:08}", rng.range(0, 99_999_999)));
    let previous_prescriber = (case == CaseKind::TransferredPatient).then(|| outside_prescriber.0.clone());
    let findings: Vec<PdmpFinding> = match case {
        CaseKind::OutsidePrescriberAcknowledged => vec![PdmpFinding {
            prescriber: outside_prescriber.clone(),
            drug_class: DrugClass::Benzodiazepine,
            filled_on: last_pdmp - Duration::days(rng.range(3, 25)),
            product: None,
            rxcui: None,
            quantity: None,
            days_supply: None,
        }],
        CaseKind::OutsidePrescriberUnacknowledged => vec![PdmpFinding {
            prescriber: outside_prescriber.clone(),
            drug_class: if within < 0.5 { DrugClass::Benzodiazepine } else { DrugClass::OtherControlled },
            filled_on: last_pdmp - Duration::days(rng.range(3, 25)),
            product: None,
            rxcui: None,
            quantity: None,
            days_supply: None,
        }],
        CaseKind::TransferredPatient => fills
            .iter()
            .map(|(_, fill)| PdmpFinding {
                prescriber: outside_prescriber.clone(),
                drug_class: DrugClass::Opioid,
                filled_on: fill.filled_on,
                product: None,
                rxcui: None,
                quantity: Some(fill.quantity.unwrap_or_default()).filter(|q| *q > 0.0),
                days_supply: Some(fill.days_supply),
            })
            .filter(|finding| finding.filled_on <= last_pdmp)
            .collect(),
        _ => Vec::new(),
    };
    let mut pdmp = Vec::new();
    if !intake {
        pdmp.push((
            format!("PDMP-{number}-1"),
            PdmpReview { reviewed_on: last_pdmp - Duration::days(rng.range(80, 90)), findings: Vec::new() },
        ));
    }
    pdmp.push((format!("PDMP-{number}-2"), PdmpReview { reviewed_on: last_pdmp, findings }));
    if case == CaseKind::OutsidePrescriberAcknowledged {
        let on = (last_pdmp + Duration::days(2)).min(today);
        reviews.push((
            format!("REV-{number}-3"),
            PhysicianReview {
                reviewed_on: on,
                physician: physician.clone(),
                kind: ReviewKind::BenzodiazepineAcknowledged,
            },
        ));
        reviews.push((
            format!("REV-{number}-4"),
            PhysicianReview {
                reviewed_on: on,
                physician: physician.clone(),
                kind: ReviewKind::OutsidePrescriberAcknowledged(outside_prescriber),
            },
        ));
    }

    // Agreement: renewed yearly (signed within the year), at intake for new and transferred patients.
    let agreement_signed_on = match case {
        CaseKind::AgreementMissing => None,
        CaseKind::AgreementExpired => Some(days_ago(today, rng.range(370, 520))),
        _ if intake => Some(days_ago(today, rng.range(1, 20))),
        _ => Some(days_ago(today, rng.range(14, 340))),
    };
    let agreement = agreement_signed_on.map(|signed_on| {
        (
            format!("AGR-{number}"),
            AgreementFacts {
                signed_on,
                prescriber_of_record: PrescriberId(prescriber.clone()),
                text_version: format!("{}-01", signed_on.year()),
                elements: AGREEMENT_ELEMENTS.iter().map(|e| (*e).to_string()).collect(),
                voided_on: None,
            },
        )
    });

    let conditions = draw_conditions(rng, number, today, risk_tier);
    // Naloxone: offered or dispensed within the year to every patient at higher risk (the rule's
    // triggers: 50 MME or more, a benzodiazepine, overdose or substance-use history, sleep apnea, a
    // taper), except the one case; about a third of the others have some too.
    let indicated = daily_mme.is_some_and(|m| m >= 50.0)
        || on_benzo
        || tapering
        || conditions.iter().any(|(_, flag, _)| {
            matches!(
                flag.kind,
                ClinicalFlagKind::OverdoseHistory
                    | ClinicalFlagKind::SubstanceUseDisorderHistory
                    | ClinicalFlagKind::SleepDisorderedBreathing
            )
        });
    let naloxone_on = match case {
        CaseKind::NaloxoneNotOffered => rng.chance(0.5).then(|| days_ago(today, rng.range(370, 700))),
        _ if new_benzo => None,
        _ if intake => Some(days_ago(today, rng.range(1, 20))),
        _ if indicated || rng.chance(0.3) => Some(days_ago(today, rng.range(5, 330))),
        _ => None,
    };
    let naloxone = naloxone_on
        .map(|on| {
            let kind = if rng.chance(0.8) { NaloxoneEventKind::Dispensed } else { NaloxoneEventKind::Offered };
            vec![(format!("NLX-{number}"), NaloxoneEvent { on, kind })]
        })
        .unwrap_or_default();
    // Drawn last, so the draws above (and the clinic they make) do not depend on it.
    let requests = draw_requests(rng, case, today, runs_out_in);

    DemoPatient {
        external_id,
        mrn: format!("MRN-{:07}", 1_000_000 + number),
        given_name,
        family_name,
        birth_date,
        sex,
        email,
        phone,
        email_consent,
        contact_preference,
        prescriber_id: prescriber,
        previous_prescriber,
        risk_tier,
        case,
        orders,
        daily_mme,
        fills,
        uds,
        next_uds_due,
        pdmp,
        agreement,
        taper,
        reviews,
        naloxone,
        conditions,
        other_medications,
        requests,
        unexpected_uds,
        overdue_uds: case == CaseKind::UdsOverdue,
        overdue_pdmp: case == CaseKind::PdmpOverdue,
        overdue_agreement: matches!(case, CaseKind::AgreementExpired | CaseKind::AgreementMissing),
        overdue_review: case == CaseKind::ReviewOverdue,
    }
}

/// Share of the stable patients whose supply runs out within three days who have already called for
/// their refill (the rest are decided on the daily run's lead time without a call).
const ROUTINE_CALL_SHARE: f64 = 0.25;
/// Share of the stable patients two to three weeks from running out (their refill window not open yet,
/// so nothing is prepared) who called to ask for their refill early (travel, mostly): rare, and each
/// one a decision for the clinic.
const EARLY_CALL_SHARE: f64 = 0.03;

/// The requests of a stable patient: a routine call in the last two days when the supply runs out
/// within three days, now and then an early request two to three weeks ahead. Other cases carry their own
/// story and call nothing in, so each stays what its case says.
fn draw_requests(rng: &mut DemoRng, case: CaseKind, today: NaiveDate, runs_out_in: i64) -> Vec<DemoRequest> {
    if case != CaseKind::Stable {
        return Vec::new();
    }
    let call = rng.unit();
    let days_back = rng.range(0, 1);
    let note_pick = rng.range(0, 2);
    match runs_out_in {
        0..=3 if call < ROUTINE_CALL_SHARE => vec![DemoRequest {
            requested_on: days_ago(today, days_back),
            kind: RequestKind::Routine,
            note: (note_pick == 0).then(|| "Called the desk; will pick up at the usual pharmacy".to_string()),
        }],
        13..=20 if call < EARLY_CALL_SHARE => vec![DemoRequest {
            requested_on: today,
            kind: RequestKind::Early,
            note: Some(
                ["Travelling to family next week", "Away for work from Monday", "Pharmacy closes for the holiday"]
                    [note_pick as usize]
                    .to_string(),
            ),
        }],
        _ => Vec::new(),
    }
}

/// Quote a CSV field when it needs it.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_string() }
}

fn opt<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map(ToString::to_string).unwrap_or_default()
}

fn tier_name(tier: RiskTier) -> &'static str {
    match tier {
        RiskTier::Low => "low",
        RiskTier::Moderate => "moderate",
        RiskTier::High => "high",
    }
}

fn sex_name(sex: Sex) -> &'static str {
    match sex {
        Sex::Female => "female",
        Sex::Male => "male",
        Sex::Other => "other",
        Sex::Unknown => "unknown",
    }
}

/// The product columns shared by orders.csv and tapers.csv.
fn product_columns(order: &MedicationOrder) -> [String; 5] {
    let dose = order.dose.as_ref();
    let unit = match dose.map(|d| &d.unit) {
        Some(DoseUnit::Milligram) => "mg",
        Some(DoseUnit::Microgram) => "mcg",
        Some(DoseUnit::Milliliter) => "mL",
        Some(_) => "unit",
        None => "",
    };
    [
        opt(&order.rxcui),
        field(order.text.as_deref().unwrap_or("")),
        opt(&dose.map(|d| d.value)),
        unit.to_string(),
        opt(&order.doses_per_day),
    ]
}

impl DemoClinic {
    /// The clinic in the documented CSV import format: (file name, contents), in import order.
    pub fn csv_files(&self) -> Vec<(String, String)> {
        let mut physicians = String::from("prescriber_id,display_name,role\n");
        for physician in &self.physicians {
            physicians.push_str(&format!("{},{},physician\n", physician.id, field(&physician.display_name)));
        }
        let mut patients = String::from(
            "patient_id,mrn,family_name,given_name,birth_date,sex,email,phone,email_consent,contact_preference,\
             prescriber_id,risk_tier,part2,previous_prescriber\n",
        );
        let mut orders = String::from(
            "order_id,patient_id,status,authored_on,rxcui,medication_text,dose_value,dose_unit,doses_per_day,\
             days_supply,dispense_quantity,prescriber_id,purpose,part2\n",
        );
        let mut fills = String::from("fill_id,patient_id,order_id,filled_on,days_supply,quantity\n");
        let mut uds = String::from(
            "specimen_id,patient_id,collected_on,kind,confirmatory,assay,analyte,result,reviewed_on,part2\n",
        );
        let mut pdmp = String::from(
            "review_id,patient_id,reviewed_on,finding_prescriber_id,finding_drug_class,finding_filled_on\n",
        );
        let mut agreements =
            String::from("agreement_id,patient_id,signed_on,prescriber_id,text_version,elements,voided_on\n");
        let mut reviews =
            String::from("review_id,patient_id,reviewed_on,physician_id,kind,subject_prescriber_id,note\n");
        let mut naloxone = String::from("event_id,patient_id,occurred_on,kind\n");
        let mut conditions = String::from("condition_id,patient_id,kind,recorded_on,status,part2\n");
        let mut other_medications =
            String::from("medication_id,patient_id,class,medication_text,started_on,status,part2\n");
        let mut refill_requests = String::from("patient_id,requested_on,kind,channel,note\n");
        let mut tapers = String::from(
            "taper_id,patient_id,state,started_on,physician_id,rationale,step_number,step_starts_on,rxcui,\
             medication_text,dose_value,dose_unit,doses_per_day,step_daily_mme\n",
        );
        for p in &self.patients {
            let id = &p.external_id;
            patients.push_str(&format!(
                "{id},{},{},{},{},{},{},{},{},{},{},{},false,{}\n",
                p.mrn,
                field(&p.family_name),
                field(&p.given_name),
                p.birth_date,
                sex_name(p.sex),
                opt(&p.email),
                opt(&p.phone),
                p.email_consent,
                p.contact_preference,
                p.prescriber_id,
                tier_name(p.risk_tier),
                opt(&p.previous_prescriber),
            ));
            for order in &p.orders {
                let authored_on = p.fills.iter().map(|(_, f)| f.filled_on).min().unwrap_or(self.today);
                let [rxcui, text, dose, unit, per_day] = product_columns(order);
                orders.push_str(&format!(
                    "{},{id},active,{authored_on},{rxcui},{text},{dose},{unit},{per_day},{},{},{},pain,false\n",
                    order.id,
                    opt(&order.days_supply),
                    opt(&order.dispense_quantity),
                    opt(&order.prescriber.as_ref().map(|p| p.0.clone())),
                ));
            }
            for (fill_id, fill) in &p.fills {
                fills.push_str(&format!(
                    "{fill_id},{id},{},{},{},{}\n",
                    opt(&fill.order_id),
                    fill.filled_on,
                    fill.days_supply,
                    opt(&fill.quantity)
                ));
            }
            for (specimen, result) in &p.uds {
                let kind = if result.kind == UdsKind::Scheduled { "scheduled" } else { "for_cause" };
                for analyte in &result.analytes {
                    uds.push_str(&format!(
                        "{specimen},{id},{},{kind},{},{},{},{},{},false\n",
                        result.collected_on,
                        result.confirmatory,
                        analyte.assay,
                        analyte.analyte,
                        if analyte.detected { "positive" } else { "negative" },
                        opt(&result.physician_reviewed_on),
                    ));
                }
            }
            for (review_id, review) in &p.pdmp {
                if review.findings.is_empty() {
                    pdmp.push_str(&format!("{review_id},{id},{},,,\n", review.reviewed_on));
                }
                for finding in &review.findings {
                    let class = finding.drug_class.as_str();
                    pdmp.push_str(&format!(
                        "{review_id},{id},{},{},{class},{}\n",
                        review.reviewed_on, finding.prescriber.0, finding.filled_on
                    ));
                }
            }
            if let Some((agreement_id, agreement)) = &p.agreement {
                agreements.push_str(&format!(
                    "{agreement_id},{id},{},{},{},{},{}\n",
                    agreement.signed_on,
                    agreement.prescriber_of_record.0,
                    agreement.text_version,
                    field(&agreement.elements.join(";")),
                    opt(&agreement.voided_on),
                ));
            }
            for (review_id, review) in &p.reviews {
                let (kind, subject) = match &review.kind {
                    ReviewKind::BenefitRisk => ("benefit_risk", String::new()),
                    ReviewKind::BenzodiazepineAcknowledged => ("benzodiazepine_acknowledged", String::new()),
                    // The demo draws no class-only acknowledgements; one would lose its class here.
                    ReviewKind::OutsidePrescriberAcknowledged(outside)
                    | ReviewKind::OutsidePrescriberClassAcknowledged(outside, _) => {
                        ("outside_prescriber_acknowledged", outside.0.clone())
                    }
                };
                reviews.push_str(&format!(
                    "{review_id},{id},{},{},{kind},{subject},\n",
                    review.reviewed_on, review.physician.0
                ));
            }
            for (event_id, event) in &p.naloxone {
                let kind = match event.kind {
                    NaloxoneEventKind::Offered => "offered",
                    NaloxoneEventKind::Declined => "declined",
                    NaloxoneEventKind::Dispensed => "dispensed",
                };
                naloxone.push_str(&format!("{event_id},{id},{},{kind}\n", event.on));
            }
            for (condition_id, flag, active) in &p.conditions {
                let status = if *active { "active" } else { "resolved" };
                let kind = condition_kind_name(flag.kind);
                conditions.push_str(&format!("{condition_id},{id},{kind},{},{status},false\n", flag.recorded_on));
            }
            for (medication_id, medication) in &p.other_medications {
                let class = match medication.class {
                    OtherMedicationClass::Benzodiazepine => "benzodiazepine",
                    OtherMedicationClass::OudTreatment => "oud_treatment",
                };
                let status = if medication.active { "active" } else { "stopped" };
                other_medications.push_str(&format!(
                    "{medication_id},{id},{class},{},{},{status},false\n",
                    field(&medication.text),
                    opt(&medication.started_on),
                ));
            }
            for request in &p.requests {
                refill_requests.push_str(&format!(
                    "{id},{},{},staff,{}\n",
                    request.requested_on,
                    request.kind.as_str(),
                    field(request.note.as_deref().unwrap_or("")),
                ));
            }
            if let Some(taper) = &p.taper {
                for step in &taper.steps {
                    for order in &step.regimen {
                        let [rxcui, text, dose, unit, per_day] = product_columns(order);
                        tapers.push_str(&format!(
                            "{},{id},{},{},{},{},{},{},{rxcui},{text},{dose},{unit},{per_day},{}\n",
                            taper.id,
                            if taper.paused { "paused" } else { "active" },
                            taper.started_on,
                            taper.physician,
                            field(&taper.rationale),
                            step.number,
                            step.starts_on,
                            step.daily_mme,
                        ));
                    }
                }
            }
        }
        vec![
            ("physicians.csv".to_string(), physicians),
            ("patients.csv".to_string(), patients),
            ("orders.csv".to_string(), orders),
            ("fills.csv".to_string(), fills),
            ("uds.csv".to_string(), uds),
            ("pdmp.csv".to_string(), pdmp),
            ("agreements.csv".to_string(), agreements),
            ("tapers.csv".to_string(), tapers),
            ("reviews.csv".to_string(), reviews),
            ("naloxone.csv".to_string(), naloxone),
            ("conditions.csv".to_string(), conditions),
            ("other_medications.csv".to_string(), other_medications),
            ("refill_requests.csv".to_string(), refill_requests),
        ]
    }
}

/// The `kind` word of conditions.csv (docs/import-csv.md).
fn condition_kind_name(kind: ClinicalFlagKind) -> &'static str {
    match kind {
        ClinicalFlagKind::Cancer => "cancer",
        ClinicalFlagKind::SickleCell => "sickle_cell",
        ClinicalFlagKind::Palliative => "palliative",
        ClinicalFlagKind::EndOfLife => "end_of_life",
        ClinicalFlagKind::OverdoseHistory => "overdose_history",
        ClinicalFlagKind::SubstanceUseDisorderHistory => "substance_use_disorder_history",
        ClinicalFlagKind::SleepDisorderedBreathing => "sleep_disordered_breathing",
        ClinicalFlagKind::OverdoseOrSedationSignal => "overdose_or_sedation_signal",
    }
}
