//! `refill demo`: a synthetic clinic in a fresh local SQLite file, loaded through the same CSV import
//! path a real clinic uses, with staff, physician and admin accounts, today's daily pipeline run so the
//! queue is populated, and the web screens served.
//!
//! The population comes from `refill-demo` (pure, seeded); this shell picks the clinic date, writes
//! the files through the importer, records the drug-test dates the clinic had drawn (the CSV format
//! has no column for them), creates the accounts (fresh random passwords, printed once), runs the
//! pipeline, prints the day's outcome mix as the store holds it, and serves until ctrl-c.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use refill_demo::{CaseKind, DemoClinic, DemoSettings};
use refill_rules::{Outcome, PatientId, RiskTier, UdsKind};
use refill_store::accounts::Role;
use refill_store::{Actor, AuditEvent, Store, UdsOrder};
use serde::Deserialize;

use crate::context::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of synthetic patients.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub patients: u32,
    /// Seed of the generator: the same seed and date give the same clinic.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Port of the web screens.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on (loopback by default: the demo has well-known passwords).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// SQLite file of the demo clinic.
    #[arg(long, default_value = "refill-demo.db")]
    pub db: PathBuf,
    /// Keep an existing demo database instead of starting fresh (the import then changes nothing).
    #[arg(long)]
    pub keep: bool,
    /// Also write the generated CSV files to this folder (e.g. as input for `refill import`).
    #[arg(long, value_name = "DIR")]
    pub export_csv: Option<PathBuf>,
    /// Build the clinic, print the summary and credentials, and exit without serving.
    #[arg(long)]
    pub no_serve: bool,
}

/// The demo's sign-in accounts: username, display name, role.
const DEMO_ACCOUNTS: [(&str, &str, Role); 4] = [
    ("staff", "Demo Staff Nurse", Role::Staff),
    ("staff2", "Demo Medical Assistant", Role::Staff),
    ("physician", "Demo Physician", Role::Physician),
    ("admin", "Demo Administrator", Role::Admin),
];

/// `[clinic]` in config/base.toml (only what the demo needs).
#[derive(Debug, Deserialize)]
struct ClinicSection {
    time_zone: String,
}

pub async fn run(args: Args, context: &Context) -> anyhow::Result<ExitCode> {
    // Everything the demo will need from the configuration is checked before anything is written.
    let config = context.config()?;
    let loopback = args.bind.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(args.bind == "localhost");
    super::serve::web_settings(&config, loopback)?;
    crate::policy_file::load_policy(&config)?;
    if let Some(parent) = args.db.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        anyhow::bail!("the folder of the demo database, {}, does not exist", parent.display());
    }
    let today = clinic_today(&config);
    let clinic = refill_demo::generate(&DemoSettings { patients: args.patients as usize, seed: args.seed, today });
    let files = clinic.csv_files();
    if let Some(dir) = &args.export_csv {
        std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
        for (name, contents) in &files {
            std::fs::write(dir.join(name), contents).with_context(|| format!("could not write {name}"))?;
        }
        println!("wrote {} CSV files to {}", files.len(), dir.display());
    }
    if !args.keep {
        remove_database(&args.db)?;
    }
    let store = open_demo_store(context, &args.db).await?;
    let actor = Actor::new("demo", "system");
    for (name, contents) in &files {
        let report = super::import::import_file(&store, name, contents.as_bytes(), &actor, true)
            .await?
            .map_err(|error| anyhow::anyhow!("the generated demo file was rejected (a bug): {error}"))?;
        tracing::debug!(file = %name, written = report.written(), "demo file imported");
    }
    // A kept database has its drawn dates from its first run (the dates of a clinic generated on
    // another day would add a second order per patient); the daily run draws any that are missing.
    let scheduled = if args.keep { 0 } else { schedule_drug_tests(&store, &clinic, &actor).await? };
    print_summary(&clinic, &args.db, scheduled);

    let state = super::serve::app_state(&config, store.clone(), loopback)?;
    print_accounts(&state).await?;
    if !args.keep {
        run_history(&config, &store, today).await?;
    }
    run_daily_pipeline(&config, &store, today).await?;
    print_outcome_mix(&store, today).await?;
    if args.no_serve {
        store.close().await;
        return Ok(ExitCode::SUCCESS);
    }
    if !loopback {
        eprintln!(
            "warning: serving the demo on {} exposes it beyond this machine; its passwords are printed above",
            args.bind
        );
    }
    super::serve::serve_until_signal(state, &args.bind, args.port).await?;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Create the demo accounts with fresh random passwords and print them once (they are not stored in
/// clear anywhere). With `--keep`, existing accounts keep their passwords.
async fn print_accounts(state: &refill_web::AppState) -> anyhow::Result<()> {
    println!("Sign-in accounts:");
    for (username, display_name, role) in DEMO_ACCOUNTS {
        let password = random_password();
        match refill_web::pages::admin::create_account(
            state,
            username,
            display_name,
            role,
            &password,
            &refill_store::Actor::system(),
        )
        .await
        {
            Ok(_) => println!("  {:<10} {:<10} password {password}", username, role.as_str()),
            Err(error) => println!("  {username:<10} {:<10} kept ({})", role.as_str(), error.public_message()),
        }
    }
    Ok(())
}

/// 16 characters from an alphabet without look-alikes (no 0/O, 1/l/I).
fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..16).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// The two weeks before today as a working clinic lived them: each day's daily run, then the refill desk
/// prepares every refill the protocol or a physician released. Without it a fresh database opens on a
/// week of backlog (every patient whose window opened in the last week, unprepared); with it today's
/// queue is today's work. Prints the staff queue and the physician's list of each day.
async fn run_history(config: &crate::config::Config, store: &Store, today: chrono::NaiveDate) -> anyhow::Result<()> {
    let loaded = crate::policy_file::load_policy(config)?;
    let lead_days = loaded.policy.refill.lead_days;
    let app = refill_app::App::new(store.clone(), std::sync::Arc::new(loaded.policy), loaded.version);
    let section = super::worker::JobsSection::load(config)?;
    let job_context = super::jobs::wire_handlers(section.job_context("demo")?, config, store).await?;
    let daily = job_context.daily.clone().context("the daily evaluator is not available")?;
    let patients = store.count_patients().await?.max(1);
    let desk = Actor::new("demo-desk", "staff");
    println!("The week before today (the desk prepares what the protocol releases each day):");
    // The first week works off what a fresh database carries (windows already open, nothing prepared);
    // the last week is the clinic in its routine, and that is what is printed.
    for back in (1..=2 * lead_days).rev() {
        let day = today - chrono::Duration::days(back);
        record_taper_check_ins(&app, store, day, &desk).await?;
        refill_jobs::pipeline::run_daily(store, daily.as_ref(), "main", day, job_context.chunk_size).await?;
        let page = store.queue_page(&refill_store::QueueQuery::first_page(day, i64::MAX / 2)).await?;
        let mut prepared = 0;
        for item in
            page.iter().filter(|item| matches!(item.outcome, Some(Outcome::Approve | Outcome::ApproveWithTasks)))
        {
            let context = refill_app::staff::StaffContext {
                patient: item.patient_id,
                queue_item: Some((item.id, item.version)),
                today: day,
                actor: &desk,
                note: None,
            };
            let mut tx = store.begin().await?;
            match refill_app::staff::prepare(&app, &mut tx, &context).await {
                Ok(_) => {
                    tx.commit().await?;
                    prepared += 1;
                }
                // Not due (a monitoring task), a task that must come first: left for staff.
                Err(refill_app::AppError::Refused(_) | refill_app::AppError::Conflict(_)) => tx.rollback().await?,
                Err(error) => return Err(error.into()),
            }
        }
        let tallies = refill_store::screens::queue_tallies(store, day).await?;
        let on_queue = tallies.open.unwrap_or(0) + tallies.done.unwrap_or(0);
        let exceptions = store.count_open_exceptions().await?;
        if back > lead_days {
            continue;
        }
        println!(
            "  {day}: staff queue {on_queue} ({:.1}%), {prepared} prepared; physician's list {exceptions} ({:.1}%)",
            100.0 * on_queue as f64 / patients as f64,
            100.0 * exceptions as f64 / patients as f64,
        );
    }
    Ok(())
}

/// The desk's taper check-ins, as a clinic that tapers well does them: a few days before a tapering
/// patient's next step staff call and record pain, enjoyment and activity (PEG), withdrawal and the
/// patient's wish. Most go on; now and then a patient reports mild withdrawal (which does not stop a
/// step). Without them every demo taper would pause at its next step for a missed check-in.
async fn record_taper_check_ins(
    app: &refill_app::App,
    store: &Store,
    day: chrono::NaiveDate,
    desk: &Actor,
) -> anyhow::Result<usize> {
    use refill_rules::taper::check_in::{CheckIn, Peg, Wish, Withdrawal};
    let clinic = store.clinic_facts().await?;
    // As of the day before, so a step that starts today is still the next one (its check-in is due today).
    let everyone =
        store.load_facts_in_range(PatientId(0), PatientId(i64::MAX), day - chrono::Duration::days(1)).await?;
    let mut recorded = 0;
    for facts in &everyone {
        let Some(taper) = facts.taper.as_ref().filter(|taper| taper.state == refill_rules::TaperState::Active) else {
            continue;
        };
        let Some(next) = &taper.next_step else { continue };
        let days_ahead = (next.starts_on - day).num_days();
        if !(0..=3).contains(&days_ahead) {
            continue;
        }
        let since_step = taper.step_started_on;
        if store.check_ins(facts.patient_id).await?.iter().any(|record| record.check_in.on > since_step) {
            continue;
        }
        // The same patient answers the same way each time (no "worse function" from noise).
        let id = facts.patient_id.0;
        let score = 3 + u8::try_from(id % 4).unwrap_or(0);
        let check_in = CheckIn {
            on: day,
            peg: Peg { pain: score + 1, enjoyment: score, activity: score },
            withdrawal: if id % 5 == 0 { Withdrawal::Mild } else { Withdrawal::None },
            wish: Wish::GoOn,
        };
        let input = refill_app::taper::NewCheckIn { patient: facts.patient_id, check_in, note: "" };
        let mut tx = store.begin().await?;
        refill_app::taper::record_check_in(app, &mut tx, &clinic, &input, day, desk).await?;
        tx.commit().await?;
        recorded += 1;
    }
    Ok(recorded)
}

/// Today's daily pipeline, so the queue and the exceptions are there when the screens open.
async fn run_daily_pipeline(
    config: &crate::config::Config,
    store: &Store,
    today: chrono::NaiveDate,
) -> anyhow::Result<()> {
    let section = super::worker::JobsSection::load(config)?;
    let job_context = super::jobs::wire_handlers(section.job_context("demo")?, config, store).await?;
    let daily = job_context.daily.clone().context("the daily evaluator is not available")?;
    let started = std::time::Instant::now();
    let summary =
        refill_jobs::pipeline::run_daily(store, daily.as_ref(), "main", today, job_context.chunk_size).await?;
    println!(
        "Daily pipeline for {today}: {} chunks evaluated in {:.1} s; the queue is ready",
        summary.chunks,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The next scheduled drug test of every patient, as the clinic drew it after the last test, so the
/// daily run sees an overdue test on day one and does not draw every patient afresh from the last test
/// (a fresh draw from a test months ago lands in the past for about a quarter of them). The CSV format
/// has no column for a drawn date; the orders go through the store in one transaction, with one audit
/// event that counts them.
async fn schedule_drug_tests(store: &Store, clinic: &DemoClinic, actor: &Actor) -> anyhow::Result<usize> {
    let mut tx = store.begin().await?;
    let mut scheduled = 0usize;
    for patient in &clinic.patients {
        let Some(due_on) = patient.next_uds_due else { continue };
        let record = tx
            .patient_by_external_id(&patient.external_id)
            .await?
            .with_context(|| format!("demo patient {} was not imported (a bug)", patient.external_id))?;
        let last_test = patient.uds.iter().map(|(_, result)| result.collected_on).max();
        let order = UdsOrder {
            kind: UdsKind::Scheduled,
            due_on,
            drawn_on: last_test.unwrap_or(clinic.today).min(clinic.today),
            seed: None,
            algorithm: None,
            period_start: None,
            period_end: None,
            created_by: actor.id.clone(),
        };
        tx.insert_uds_order(record.id, &order).await?;
        scheduled += 1;
    }
    let event = AuditEvent::new(actor, "demo.uds_schedule", "uds_schedule")
        .detail(serde_json::json!({ "scheduled_orders": scheduled }));
    store.append_audit(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(scheduled)
}

/// The day's outcome mix after the daily run, read back from the store: how many patients were
/// decided today and with which outcome, how many are on today's staff queue and how many on the
/// physician's list (open exceptions), as counts and shares of the clinic.
async fn print_outcome_mix(store: &Store, today: chrono::NaiveDate) -> anyhow::Result<()> {
    let patients = store.count_patients().await?;
    let share = |count: i64| format!("{count} ({:.1}%)", 100.0 * count as f64 / patients.max(1) as f64);
    let mut by_outcome: BTreeMap<Outcome, i64> = BTreeMap::new();
    if let Some((first, last)) = store.patient_id_bounds().await? {
        for id in first.0..=last.0 {
            let latest = store.decisions_for_patient(PatientId(id), 1).await?;
            if let Some(record) = latest.into_iter().find(|record| record.clinic_date == today) {
                *by_outcome.entry(record.decision.outcome).or_default() += 1;
            }
        }
    }
    let decided: i64 = by_outcome.values().sum();
    let queue = refill_store::screens::queue_tallies(store, today).await?;
    let physician_list = store.count_open_exceptions().await?;
    println!("The day's outcome mix ({today}, {patients} patients):");
    println!("  decided today: {}", share(decided));
    println!("  on today's staff queue: {}", share(queue.open.unwrap_or(0)));
    println!("  on the physician's list (open exceptions): {}", share(physician_list));
    let outcomes: Vec<String> = Outcome::ALL
        .into_iter()
        .map(|outcome| format!("{} {}", outcome.as_str(), share(by_outcome.get(&outcome).copied().unwrap_or(0))))
        .collect();
    println!("  by outcome: {}", outcomes.join(", "));
    Ok(())
}

/// Today in the clinic's time zone when the configuration names one, else in UTC.
fn clinic_today(config: &crate::config::Config) -> chrono::NaiveDate {
    let now = chrono::Utc::now();
    let zone = config
        .section::<ClinicSection>("clinic")
        .ok()
        .and_then(|clinic| clinic.time_zone.parse::<chrono_tz::Tz>().ok());
    match zone {
        Some(zone) => now.with_timezone(&zone).date_naive(),
        None => now.date_naive(),
    }
}

/// A fresh run starts from an empty file: remove the database and its WAL companions.
fn remove_database(db: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(&name) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).with_context(|| format!("could not remove {}", db.display())),
        }
    }
    Ok(())
}

/// The demo database: the configured settings (audit key, timeouts) when there is a configuration,
/// else built-in development defaults, so the demo runs on a fresh machine from any folder.
async fn open_demo_store(context: &Context, db: &Path) -> anyhow::Result<Store> {
    let url = format!("sqlite:{}", db.display());
    let demo_context = Context { config_dir: context.config_dir.clone(), database_url: Some(url.clone()) };
    let settings = match demo_context.config().and_then(|config| demo_context.store_settings(&config)) {
        Ok(settings) => settings,
        Err(_) => refill_store::StoreSettings::new(
            url,
            refill_store::AuditKey::new(crate::context::DEVELOPMENT_AUDIT_KEY.as_bytes()),
        ),
    };
    let store = Store::connect(&settings).await.with_context(|| format!("could not open {}", db.display()))?;
    store.migrate().await.context("could not migrate the demo database")?;
    Ok(store)
}

fn print_summary(clinic: &DemoClinic, db: &Path, scheduled_tests: usize) {
    let patients = &clinic.patients;
    let total = patients.len().max(1) as f64;
    let share = |count: usize| format!("{count} ({:.1}%)", 100.0 * count as f64 / total);
    let mme: Vec<f64> = patients.iter().filter_map(|p| p.daily_mme).collect();
    let band = |low: f64, high: f64| mme.iter().filter(|m| **m >= low && **m < high).count();
    let tier = |t: RiskTier| patients.iter().filter(|p| p.risk_tier == t).count();
    let due_today = patients
        .iter()
        .filter(|p| {
            p.fills
                .last()
                .is_some_and(|(_, f)| f.filled_on + chrono::Duration::days(i64::from(f.days_supply)) == clinic.today)
        })
        .count();
    println!(
        "Demo clinic {} with {} patients and {} physicians (clinic date {})",
        db.display(),
        patients.len(),
        clinic.physicians.len(),
        clinic.today
    );
    println!(
        // The dashboard's bands (CDC 2022: 50 and 90 MME/day; 200 for the buprenorphine prompt).
        "  daily MME: <50 {}, 50-89 {}, 90-199 {}, 200+ {}, buprenorphine only {}",
        share(band(0.0, 50.0)),
        share(band(50.0, 90.0)),
        share(band(90.0, 200.0)),
        share(band(200.0, f64::MAX)),
        share(patients.len() - mme.len())
    );
    println!(
        "  risk tiers: low {}, moderate {}, high {}",
        share(tier(RiskTier::Low)),
        share(tier(RiskTier::Moderate)),
        share(tier(RiskTier::High))
    );
    let stable = patients.iter().filter(|p| p.case == CaseKind::Stable).count();
    println!("  stable (everything current, filling on time, no taper): {}", share(stable));
    println!(
        "  tapers in progress: {} ({} paused)",
        share(patients.iter().filter(|p| p.taper.is_some()).count()),
        patients.iter().filter(|p| p.taper.as_ref().is_some_and(|t| t.paused)).count()
    );
    println!(
        "  new patients: {}, transferred: {}, early fills: {}",
        share(patients.iter().filter(|p| p.case == CaseKind::NewPatient).count()),
        share(patients.iter().filter(|p| p.case == CaseKind::TransferredPatient).count()),
        share(patients.iter().filter(|p| p.case == CaseKind::EarlyFills).count())
    );
    let requests: Vec<_> = patients.iter().flat_map(|p| &p.requests).collect();
    println!(
        "  refill requests called in: {} ({} early); transferred patients with their previous prescriber: {}",
        requests.len(),
        requests.iter().filter(|r| r.kind == refill_rules::RequestKind::Early).count(),
        patients.iter().filter(|p| p.previous_prescriber.is_some()).count()
    );
    println!(
        "  overdue: drug test {}, PDMP review {}, agreement {}, physician review {}",
        share(patients.iter().filter(|p| p.overdue_uds).count()),
        share(patients.iter().filter(|p| p.overdue_pdmp).count()),
        share(patients.iter().filter(|p| p.overdue_agreement).count()),
        share(patients.iter().filter(|p| p.overdue_review).count())
    );
    println!(
        "  outside prescriber on the PDMP: {} ({} acknowledged)",
        share(
            patients
                .iter()
                .filter(|p| p.pdmp.iter().any(|(_, review)| !review.findings.is_empty())
                    && p.case != CaseKind::TransferredPatient)
                .count()
        ),
        patients.iter().filter(|p| p.case == CaseKind::OutsidePrescriberAcknowledged).count()
    );
    println!(
        "  unexpected drug-test results awaiting review: {}",
        share(patients.iter().filter(|p| p.unexpected_uds).count())
    );
    println!(
        "  with a diagnosis the rules use (sleep apnea, overdose or SUD history, cancer): {}; on a benzodiazepine: {}",
        share(patients.iter().filter(|p| p.conditions.iter().any(|(_, _, active)| *active)).count()),
        share(patients.iter().filter(|p| p.other_medications.iter().any(|(_, m)| m.active)).count())
    );
    println!("  supply runs out today: {due_today}; scheduled drug tests recorded: {scheduled_tests}");
}
