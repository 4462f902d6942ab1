//! The I/O floor of the daily run on an existing database: for every chunk of patient ids, read every
//! active patient's facts (`load_facts_in_range`, the pipeline's own fact queries) and, in one
//! transaction per chunk, write one decision row per patient in a multi-row insert. No rules, no
//! queue rows, exceptions, drug-test draws or audit events: what the pipeline could not go below.
//!
//! Run by `benches/daily_pipeline.sh` right after `refill jobs run-daily` on the same database, so
//! pipeline and floor are measured in the same minute on the same backend:
//! `cargo bench -p refill-jobs --bench daily_floor -- DATABASE_URL DATE [CHUNK]` (chunk default 500,
//! the pipeline's). The floor's rows carry dedupe keys `floor:<date>:<patient>` and the bench database
//! is thrown away afterwards: run it last.

use std::time::Instant;

use chrono::NaiveDate;
use refill_jobs::pipeline::chunk_ranges;
use refill_rules::{Decision, Outcome, PatientId, RefillWindow};
use refill_store::{Actor, AuditKey, NewDecision, Store, StoreSettings};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let [url, date, rest @ ..] = args.as_slice() else {
        eprintln!("usage: daily_floor DATABASE_URL DATE [CHUNK]");
        return Ok(());
    };
    let date: NaiveDate = date.parse()?;
    let chunk: i64 = rest.first().map(|c| c.parse()).transpose()?.unwrap_or(500);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let store =
            Store::connect(&StoreSettings::new(url.clone(), AuditKey::new("floor-bench-key-not-used-0123456789")))
                .await?;
        let Some((first, last)) = store.patient_id_bounds().await? else {
            println!("no patients");
            return Ok(());
        };
        let actor = Actor::system();
        let decision = Decision {
            outcome: Outcome::Approve,
            reasons: Vec::new(),
            tasks: Vec::new(),
            eligible_on: None,
            total_daily_mme: None,
            policy_version: "floor".into(),
            window: RefillWindow::default(),
            covered: Vec::new(),
            standing: None,
        };
        let started = Instant::now();
        let (mut read_secs, mut patients, mut written) = (0.0, 0usize, 0usize);
        for (low, high) in chunk_ranges(first.0, last.0, chunk) {
            let reading = Instant::now();
            let facts = store.load_facts_in_range(PatientId(low), PatientId(high), date).await?;
            read_secs += reading.elapsed().as_secs_f64();
            patients += facts.len();
            let news: Vec<NewDecision<'_>> = facts
                .iter()
                .map(|f| NewDecision {
                    patient_id: f.patient_id,
                    clinic_date: date,
                    refill_request_id: None,
                    decision: &decision,
                    decided_by: &actor,
                    run_out_on: None,
                    dedupe_key: Some(format!("floor:{date}:{}", f.patient_id.0)),
                })
                .collect();
            let mut tx = store.begin().await?;
            written += tx.insert_decision_rows_only(&news).await?;
            tx.commit().await?;
        }
        let total = started.elapsed().as_secs_f64();
        println!(
            "floor: {patients} patients, {written} decision rows, {total:.2} s wall ({read_secs:.2} s reading facts, \
             {:.2} s writing), chunks of {chunk}",
            total - read_secs
        );
        store.close().await;
        anyhow::Ok(())
    })
}
