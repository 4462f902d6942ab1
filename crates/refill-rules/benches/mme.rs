//! Benchmark of `mme::daily_mme`: regimens per second on one core.
//!
//! Run: `cargo bench -p refill-rules --bench mme` (optional argument: `-- ITERATIONS`, default 1000000).
//!
//! Method: three fixed regimens evaluated in turn (oxycodone ER + hydrocodone/APAP by RxNorm code; a
//! fentanyl patch by code; methadone by RxNorm text only, the slower identification path), 1.33 orders
//! per regimen on average, under both factor sets. The embedded drug table is parsed once before
//! timing (its parse time is printed separately). The rate per core divides by the CPU time of the
//! measuring thread (/proc/thread-self/schedstat), so a busy shared machine does not count against it;
//! the wall-clock rate is printed next to it.

use std::hint::black_box;
use std::time::Instant;

use refill_rules::drug::DrugTable;
use refill_rules::facts::*;
use refill_rules::mme::{FactorSet, daily_mme};

fn order(id: &str, rxcui: Option<&str>, text: &str, dose: f64, unit: DoseUnit, per_day: f64) -> MedicationOrder {
    MedicationOrder {
        id: id.to_string(),
        rxcui: rxcui.map(str::to_string),
        text: Some(text.to_string()),
        dose: Some(DoseQuantity { value: dose, unit }),
        doses_per_day: Some(per_day),
        days_supply: Some(30),
        dispense_quantity: None,
        prescriber: None,
        purpose: OrderPurpose::Pain,
        confidentiality: Confidentiality::Normal,
    }
}

/// Nanoseconds this thread has spent on a CPU, when the kernel tells us.
fn cpu_nanos() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

fn main() {
    let iterations: usize = std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(1_000_000);
    let parse_start = Instant::now();
    let table = DrugTable::embedded();
    println!("drug table: {} products parsed in {:?}", table.products().len(), parse_start.elapsed());
    let regimens = [
        vec![
            order(
                "a",
                Some("1049502"),
                "12 HR Oxycodone Hydrochloride 10 MG Extended Release Oral Tablet",
                1.0,
                DoseUnit::DoseFormUnit,
                2.0,
            ),
            order(
                "b",
                Some("857002"),
                "Acetaminophen 325 MG / Hydrocodone Bitartrate 5 MG Oral Tablet",
                1.0,
                DoseUnit::DoseFormUnit,
                4.0,
            ),
        ],
        vec![order(
            "c",
            Some("197696"),
            "72 HR Fentanyl 0.075 MG/HR Transdermal System",
            1.0,
            DoseUnit::DoseFormUnit,
            1.0 / 3.0,
        )],
        vec![order("d", None, "methadone hydrochloride 10 MG Oral Tablet", 25.0, DoseUnit::Milligram, 1.0)],
    ];
    for factor_set in [FactorSet::Cdc2022, FactorSet::Cdc2016] {
        let cpu_start = cpu_nanos();
        let wall_start = Instant::now();
        let mut checksum = 0.0;
        for index in 0..iterations {
            let result = daily_mme(black_box(&regimens[index % regimens.len()]), factor_set);
            checksum += result.total_daily_mme.unwrap_or(0.0);
        }
        let wall = wall_start.elapsed().as_secs_f64();
        let cpu = match (cpu_start, cpu_nanos()) {
            (Some(start), Some(end)) => (end - start) as f64 / 1e9,
            _ => wall,
        };
        println!(
            "{}: {iterations} regimens; per core {:.0} ns/regimen = {:.2} M regimens/s (CPU {cpu:.3} s); wall {:.2} M/s (checksum {checksum})",
            factor_set.as_str(),
            cpu * 1e9 / iterations as f64,
            iterations as f64 / cpu / 1e6,
            iterations as f64 / wall / 1e6,
        );
    }
}
