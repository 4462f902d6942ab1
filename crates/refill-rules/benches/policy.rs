//! Benchmark of refill-policy evaluation: decisions per second on one core over a synthetic population.
//!
//! Run: `cargo bench -p refill-rules --bench policy` (it needs
//! refill-rules only, so it builds without the whole workspace). Optional arguments: `-- PATIENTS SECONDS`,
//! default 10000 and 5.
//!
//! Method: a seeded generator (SplitMix64, seed 2026) builds a population of patients with a realistic
//! spread of regimens (oxycodone, hydrocodone, morphine IR/ER, hydromorphone, fentanyl patches,
//! methadone, tramadol, buprenorphine, a few undetermined products; 1 to 3 orders) and monitoring
//! states (fill timing from early to late, PDMP and physician-review ages, agreements current, expiring
//! or void, UDS due dates and results, naloxone, benzodiazepines, flags, tapers). Each patient has one
//! refill request. The benchmark evaluates the whole population once to warm up, then repeatedly on the
//! current thread for the given number of seconds, and reports decisions per second, nanoseconds per
//! decision and the outcome mix. The rate per core is decisions divided by the CPU time of the measuring
//! thread (from /proc/thread-self/schedstat, so other processes on a busy machine do not count against
//! it); the wall-clock rate is printed next to it. Full `evaluate` is timed: MME of the requested regimen from the
//! embedded drug table, every rule, the `Decision` with its reasons and policy version. Building the
//! population is not timed.
//!
//! `REFILL_BENCH_DUMP=FILE` also writes, per patient, the decision's stored JSON form, the MME result and
//! the interpretation of each unreviewed UDS result (`Debug` form), so a change made for speed can be
//! checked to change no output: dump before and after, and compare the files.
//!
//! `REFILL_BENCH_PROFILE=1` evaluates the population twice (the warm-up pass and one more) and stops,
//! for counting instructions per decision with callgrind, which wall-clock noise does not affect:
//! `valgrind --tool=callgrind --toggle-collect='refill_rules::refill::evaluate'
//! --toggle-collect='core::ptr::drop_in_place<refill_rules::decision::Decision>' BENCH 1000`, then
//! divide the instructions collected by 2,000. The embedded tables are loaded before either pass.

use std::hint::black_box;
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, NaiveDate};
use refill_rules::decision::Outcome;
use refill_rules::drug::DrugTable;
use refill_rules::facts::*;
use refill_rules::mme::{FactorSet, daily_mme};
use refill_rules::policy::Policy;
use refill_rules::refill::{evaluate, evaluate_with_mme};
use refill_rules::uds;

/// SplitMix64 (Steele, Lea and Flood 2014): small, seeded, the same population on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn days(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// (weight, rxcui, text, unit, dose choices, doses per day choices)
type Product = (u64, &'static str, &'static str, fn() -> DoseUnit, &'static [f64], &'static [f64]);

const PRODUCTS: [Product; 11] = [
    (
        22,
        "1049621",
        "oxycodone hydrochloride 5 MG Oral Tablet",
        || DoseUnit::DoseFormUnit,
        &[1.0, 2.0],
        &[2.0, 3.0, 4.0],
    ),
    (10, "1049683", "oxycodone hydrochloride 10 MG Oral Tablet", || DoseUnit::DoseFormUnit, &[1.0], &[2.0, 3.0, 4.0]),
    (
        16,
        "856980",
        "acetaminophen 300 MG / hydrocodone bitartrate 10 MG Oral Tablet",
        || DoseUnit::DoseFormUnit,
        &[1.0],
        &[3.0, 4.0],
    ),
    (10, "892582", "morphine sulfate 15 MG Oral Tablet", || DoseUnit::DoseFormUnit, &[1.0, 2.0], &[2.0, 3.0]),
    (
        8,
        "891888",
        "morphine sulfate 30 MG Extended Release Oral Tablet",
        || DoseUnit::DoseFormUnit,
        &[1.0],
        &[2.0, 3.0],
    ),
    (7, "897702", "hydromorphone hydrochloride 4 MG Oral Tablet", || DoseUnit::DoseFormUnit, &[1.0], &[3.0, 4.0]),
    (
        6,
        "245134",
        "72 HR fentanyl 0.025 MG/HR Transdermal System",
        || DoseUnit::DoseFormUnit,
        &[1.0, 2.0],
        &[1.0 / 3.0],
    ),
    (4, "864706", "methadone hydrochloride 10 MG Oral Tablet", || DoseUnit::DoseFormUnit, &[1.0], &[2.0, 3.0]),
    (10, "835603", "tramadol hydrochloride 50 MG Oral Tablet", || DoseUnit::DoseFormUnit, &[1.0, 2.0], &[2.0, 4.0]),
    (4, "388506", "72 HR Buprenorphine 0.07 MG/HR Transdermal System", || DoseUnit::DoseFormUnit, &[1.0], &[1.0 / 3.0]),
    (3, "1049621", "oxycodone hydrochloride 5 MG Oral Tablet", || DoseUnit::Unusable("1".to_string()), &[1.0], &[4.0]),
];

fn prescriber(id: &str) -> PrescriberId {
    PrescriberId(id.to_string())
}

fn order(rng: &mut Rng, index: usize) -> MedicationOrder {
    let total: u64 = PRODUCTS.iter().map(|p| p.0).sum();
    let mut roll = rng.below(total);
    let mut product = &PRODUCTS[0];
    for candidate in &PRODUCTS {
        if roll < candidate.0 {
            product = candidate;
            break;
        }
        roll -= candidate.0;
    }
    let (_, rxcui, text, unit, doses, per_day) = product;
    MedicationOrder {
        id: format!("MedicationRequest/{index}"),
        rxcui: Some(rxcui.to_string()),
        text: Some(text.to_string()),
        dose: Some(DoseQuantity { value: *rng.pick(doses), unit: unit() }),
        doses_per_day: Some(*rng.pick(per_day)),
        days_supply: Some(30),
        dispense_quantity: None,
        prescriber: Some(prescriber("dr-a")),
        purpose: OrderPurpose::Pain,
        confidentiality: Confidentiality::Normal,
    }
}

fn patient(rng: &mut Rng, id: i64, today: NaiveDate) -> (PatientFacts, RefillRequest) {
    let ago = |days: i64| today - Duration::days(days);
    let mut facts = PatientFacts::empty(PatientId(id));
    facts.birth_date = Some(ago(365 * rng.days(19, 85)));
    facts.sex = *rng.pick(&[Sex::Female, Sex::Male]);
    facts.risk_tier = *rng.pick(&[RiskTier::Low, RiskTier::Moderate, RiskTier::Moderate, RiskTier::High]);
    facts.prescriber_of_record = Some(PrescriberId(rng.pick(&["dr-a", "dr-a", "dr-a", "dr-b", "dr-c"]).to_string()));
    let orders = if rng.chance(70) {
        1
    } else if rng.chance(80) {
        2
    } else {
        3
    };
    facts.regimen = (0..orders).map(|i| order(rng, i)).collect();
    // Monthly fills over six months; the last one 24 to 36 days ago (some early, most on time).
    let last = rng.days(24, 36);
    for cycle in 0..6 {
        facts.fills.push(Fill {
            filled_on: ago(last + 30 * cycle),
            days_supply: 30,
            order_id: Some("MedicationRequest/0".to_string()),
            quantity: None,
        });
    }
    facts.pdmp_reviews.push(PdmpReview { reviewed_on: ago(rng.days(0, 100)), findings: Vec::new() });
    if rng.chance(4) {
        facts.pdmp_reviews[0].findings.push(PdmpFinding {
            prescriber: prescriber("npi-outside"),
            drug_class: *rng.pick(&[DrugClass::Opioid, DrugClass::Benzodiazepine, DrugClass::OtherControlled]),
            filled_on: ago(rng.days(5, 80)),
            product: None,
            rxcui: None,
            quantity: None,
            days_supply: None,
        });
    }
    if rng.chance(95) {
        let signer = facts.prescriber_of_record.clone().unwrap_or_else(|| prescriber("dr-a"));
        facts.agreement = Some(AgreementFacts {
            signed_on: ago(rng.days(0, 390)),
            prescriber_of_record: if rng.chance(97) { signer } else { prescriber("dr-z") },
            text_version: "2025-01".to_string(),
            elements: Vec::new(),
            voided_on: None,
        });
    }
    facts.physician_reviews.push(PhysicianReview {
        reviewed_on: ago(rng.days(0, 100)),
        physician: prescriber("dr-a"),
        kind: ReviewKind::BenefitRisk,
    });
    if rng.chance(60) {
        facts.naloxone_events.push(NaloxoneEvent { on: ago(rng.days(0, 400)), kind: NaloxoneEventKind::Offered });
    }
    if rng.chance(12) {
        facts.other_medications.push(OtherMedication {
            class: OtherMedicationClass::Benzodiazepine,
            text: "lorazepam 1 MG Oral Tablet".to_string(),
            started_on: Some(ago(400)),
            active: true,
            confidentiality: Confidentiality::Normal,
        });
        if rng.chance(70) {
            facts.physician_reviews.push(PhysicianReview {
                reviewed_on: ago(rng.days(0, 120)),
                physician: prescriber("dr-a"),
                kind: ReviewKind::BenzodiazepineAcknowledged,
            });
        }
    }
    for (kind, percent) in [
        (ClinicalFlagKind::SleepDisorderedBreathing, 8),
        (ClinicalFlagKind::OverdoseHistory, 2),
        (ClinicalFlagKind::SubstanceUseDisorderHistory, 4),
        (ClinicalFlagKind::OverdoseOrSedationSignal, 1),
        (ClinicalFlagKind::Cancer, 1),
    ] {
        if rng.chance(percent) {
            let confidentiality = if rng.chance(20) { Confidentiality::Part2 } else { Confidentiality::Normal };
            facts.flags.push(ClinicalFlag { kind, recorded_on: ago(rng.days(0, 700)), confidentiality });
        }
    }
    facts.uds.scheduled_due = Some(today + Duration::days(rng.days(-40, 180)));
    // The last UDS shows what is prescribed (the immunoassay that sees each opioid); a few show cocaine.
    let mut analytes: Vec<UdsAnalyteResult> = facts
        .regimen
        .iter()
        .filter_map(|order| DrugTable::embedded().ingredient_of(order))
        .map(|ingredient| {
            let assay = match ingredient {
                "hydrocodone" | "morphine" | "hydromorphone" | "codeine" => "opiates",
                other => other,
            };
            UdsAnalyteResult { assay: assay.to_string(), analyte: ingredient.to_string(), detected: true }
        })
        .collect();
    if rng.chance(3) {
        analytes.push(UdsAnalyteResult {
            assay: "cocaine".to_string(),
            analyte: "benzoylecgonine".to_string(),
            detected: true,
        });
    }
    facts.uds.results.push(UdsResult {
        collected_on: ago(rng.days(30, 300)),
        kind: UdsKind::Scheduled,
        confirmatory: false,
        analytes,
        physician_reviewed_on: if rng.chance(30) { Some(ago(10)) } else { None },
        confidentiality: Confidentiality::Normal,
        specimen_validity: Default::default(),
    });
    if rng.chance(5) {
        facts.taper = Some(TaperInForce {
            plan_id: id,
            state: TaperState::Active,
            started_on: ago(90),
            step_regimen: facts.regimen.clone(),
            step_started_on: ago(20),
            next_step: None,
        });
    }
    // The last decision saw the same regimen, except for a few whose dose went up since.
    let current_mme = daily_mme(&facts.regimen, FactorSet::Cdc2022).total_daily_mme;
    let previous_mme = if rng.chance(3) { Some(*rng.pick(&[20.0, 45.0, 60.0])) } else { current_mme };
    facts.last_decision = Some(PriorDecision { decided_on: ago(last), total_daily_mme: previous_mme });
    let mut regimen = facts.regimen.clone();
    if rng.chance(3) {
        regimen[0].dose = regimen[0].dose.clone().map(|d| DoseQuantity { value: d.value * 2.0, unit: d.unit });
    }
    let kind = if rng.chance(1) { RequestKind::LostOrStolenReplacement } else { RequestKind::Routine };
    (facts, RefillRequest { requested_on: today, regimen, kind })
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let patients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);

    let today = NaiveDate::from_ymd_opt(2026, 6, 15).expect("valid date");
    let rng = &mut Rng(2026);
    let population: Vec<(PatientFacts, RefillRequest)> = (0..patients).map(|i| patient(rng, i as i64, today)).collect();
    let clinic = ClinicFacts { roster: vec![prescriber("dr-a"), prescriber("dr-b"), prescriber("dr-c")] };
    let policy = Policy::defaults();
    let version = "sha256:benchmark";

    // The embedded tables are parsed once per process: not part of any decision.
    black_box(uds::UdsTable::embedded());

    // Warm-up pass, which also gives the outcome mix.
    let mut mix = [0usize; 5];
    let mut reasons = 0usize;
    let mut by_code = std::collections::BTreeMap::new();
    for (facts, request) in &population {
        let decision = evaluate(facts, &clinic, request, &policy, version);
        mix[Outcome::ALL.iter().position(|o| *o == decision.outcome).expect("known outcome")] += 1;
        reasons += decision.reasons.len();
        for reason in &decision.reasons {
            *by_code.entry(reason.code.as_str()).or_insert(0usize) += 1;
        }
    }

    if std::env::var_os("REFILL_BENCH_PROFILE").is_some() {
        for (facts, request) in &population {
            black_box(evaluate(black_box(facts), &clinic, black_box(request), &policy, version));
        }
        return;
    }
    if let Some(path) = std::env::var_os("REFILL_BENCH_DUMP") {
        dump(&population, &clinic, &policy, version, std::path::Path::new(&path));
    }

    let budget = StdDuration::from_secs(seconds);
    let full = measure(budget, population.len(), || {
        for (facts, request) in &population {
            black_box(evaluate(black_box(facts), &clinic, black_box(request), &policy, version));
        }
    });
    // The two library calls evaluate makes, timed alone over the same population, to show where the
    // time goes: MME of the requested regimen, and interpretation of each unreviewed UDS result.
    let mme = measure(budget / 4, population.len(), || {
        for (_, request) in &population {
            black_box(daily_mme(black_box(&request.regimen), FactorSet::Cdc2022));
        }
    });
    let precomputed: Vec<_> =
        population.iter().map(|(_, request)| daily_mme(&request.regimen, FactorSet::Cdc2022)).collect();
    let rules = measure(budget / 4, population.len(), || {
        for ((facts, request), mme) in population.iter().zip(&precomputed) {
            black_box(evaluate_with_mme(black_box(facts), &clinic, black_box(request), &policy, mme, version));
        }
    });
    let unreviewed: Vec<(&UdsResult, Vec<&str>)> = population
        .iter()
        .flat_map(|(facts, request)| {
            let prescribed: Vec<&str> =
                request.regimen.iter().filter_map(|order| DrugTable::embedded().ingredient_of(order)).collect();
            facts.uds.results.iter().filter(|r| r.physician_reviewed_on.is_none()).map(move |r| (r, prescribed.clone()))
        })
        .collect();
    let interpret = measure(budget / 4, unreviewed.len(), || {
        for (result, prescribed) in &unreviewed {
            black_box(uds::interpret(black_box(result), prescribed));
        }
    });

    println!("refill policy evaluation benchmark (one thread)");
    println!("population: {patients} synthetic patients (SplitMix64 seed 2026), one request each");
    println!("{}", full.describe("decisions"));
    println!("throughput per core: {:.0} decisions/second ({:.0} ns/decision)", full.per_second(), full.nanos_each());
    println!("where the time goes (each timed alone over the same population):");
    println!("  mme::daily_mme of the requested regimen: {:.0} ns/decision", mme.nanos_each());
    println!(
        "  uds::interpret: {:.0} ns/call; {:.2} unreviewed results/decision, the unremarkable ones recognised without it",
        interpret.nanos_each(),
        unreviewed.len() as f64 / patients as f64
    );
    println!("  rules with the MME precomputed (evaluate_with_mme): {:.0} ns/decision", rules.nanos_each());
    println!("reasons per decision: {:.2}", reasons as f64 / patients as f64);
    let shares: Vec<String> = Outcome::ALL
        .iter()
        .zip(mix)
        .map(|(outcome, count)| format!("{} {:.1}%", outcome.as_str(), 100.0 * count as f64 / patients as f64))
        .collect();
    println!("outcome mix: {}", shares.join(", "));
    let codes: Vec<String> = by_code.iter().map(|(code, count)| format!("{code} {count}")).collect();
    println!("reasons fired: {}", codes.join(", "));
}

/// Every output the benchmark exercises, one patient per block, for comparing two builds.
fn dump(
    population: &[(PatientFacts, RefillRequest)],
    clinic: &ClinicFacts,
    policy: &Policy,
    version: &str,
    path: &std::path::Path,
) {
    use std::io::Write;
    let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    let mut out = std::io::BufWriter::new(file);
    for (index, (facts, request)) in population.iter().enumerate() {
        let decision = evaluate(facts, clinic, request, policy, version);
        let json = serde_json::to_string(&decision).expect("decision serialises");
        writeln!(out, "patient {index}\n{json}\n{decision:?}").expect("dump write");
        writeln!(out, "{:?}", daily_mme(&request.regimen, policy.factor_set())).expect("dump write");
        let prescribed: Vec<&str> =
            request.regimen.iter().filter_map(|order| DrugTable::embedded().ingredient_of(order)).collect();
        for result in &facts.uds.results {
            writeln!(out, "{:?}", uds::interpret(result, &prescribed)).expect("dump write");
        }
    }
    out.flush().expect("dump write");
}

/// CPU time this thread has run, from the first field of /proc/thread-self/schedstat (nanoseconds on
/// the CPU); `None` where the kernel does not provide it.
fn thread_cpu_time() -> Option<StdDuration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(StdDuration::from_nanos(nanos))
}

/// Repeated runs of one pass over `items` items, for at least `budget` of this thread's CPU time.
struct Measurement {
    items: u64,
    cpu: Option<f64>,
    wall: f64,
}

impl Measurement {
    /// Seconds the figure rests on: thread CPU time when the kernel reports it, else wall clock.
    fn seconds(&self) -> f64 {
        self.cpu.unwrap_or(self.wall)
    }
    fn per_second(&self) -> f64 {
        self.items as f64 / self.seconds()
    }
    fn nanos_each(&self) -> f64 {
        1e9 * self.seconds() / self.items as f64
    }
    fn describe(&self, what: &str) -> String {
        match self.cpu {
            Some(cpu) => {
                format!("{what}: {} in {cpu:.2} s of thread CPU time ({:.2} s wall clock)", self.items, self.wall)
            }
            None => format!("{what}: {} in {:.2} s wall clock (thread CPU time unavailable)", self.items, self.wall),
        }
    }
}

// The budget is CPU time of this thread when the kernel reports it, so a loaded machine only makes the
// run take longer, not the figure smaller.
fn measure(budget: StdDuration, items_per_pass: usize, mut pass: impl FnMut()) -> Measurement {
    pass(); // warm-up
    let started = Instant::now();
    let cpu_started = thread_cpu_time();
    let mut items = 0u64;
    loop {
        pass();
        items += items_per_pass as u64;
        let spent = match (cpu_started, thread_cpu_time()) {
            (Some(start), Some(now)) => now.saturating_sub(start),
            _ => started.elapsed(),
        };
        if spent >= budget {
            break;
        }
    }
    let cpu = match (cpu_started, thread_cpu_time()) {
        (Some(start), Some(now)) => Some(now.saturating_sub(start).as_secs_f64()),
        _ => None,
    };
    Measurement { items, cpu, wall: started.elapsed().as_secs_f64() }
}
