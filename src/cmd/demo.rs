//! `refill demo`: a synthetic clinic in a fresh local SQLite file, loaded through the same CSV import
//! path a real clinic uses, with staff, physician and admin accounts, today's daily pipeline run so the
//! queue is populated, and the web screens served.
//!
//! The population comes from `refill-demo` (pure, seeded); this shell picks the clinic date, writes
//! the files through the importer, creates the accounts (fresh random passwords, printed once), runs
//! the pipeline and serves until ctrl-c.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use refill_demo::{DemoClinic, DemoSettings};
use refill_rules::RiskTier;
use refill_store::accounts::Role;
use refill_store::{Actor, Store};
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
    print_summary(&clinic, &args.db);

    let state = super::serve::app_state(&config, store.clone(), loopback)?;
    print_accounts(&state).await?;
    run_daily_pipeline(&config, &store, today).await?;
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

fn print_summary(clinic: &DemoClinic, db: &Path) {
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
        "  daily MME: <20 {}, 20-90 {}, 90-200 {}, >=200 {}, buprenorphine only {}",
        share(band(0.0, 20.0)),
        share(band(20.0, 90.0)),
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
    println!("  tapers in progress: {}", share(patients.iter().filter(|p| p.taper.is_some()).count()));
    println!(
        "  overdue: drug test {}, PDMP review {}, agreement {}",
        share(patients.iter().filter(|p| p.overdue_uds).count()),
        share(patients.iter().filter(|p| p.overdue_pdmp).count()),
        share(patients.iter().filter(|p| p.overdue_agreement).count())
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
    println!("  supply runs out today: {due_today}");
}
