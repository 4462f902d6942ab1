//! `refill check-config`: validate the whole configuration of the current environment (`REFILL_ENV`)
//! and refuse unsafe production settings. Prints one line per check and exits non-zero when any fails.
//!
//! Also home of the email settings the binary reads (`[smtp]`, `[notify]`, `[notify.delivery]`), so
//! the worker and this command apply the same rules: [`email_settings`] and [`outbox_mailer`].

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use refill_jobs::delivery::{DeliverySettings, OutboxMailer};
use refill_notify::{Composer, Mailer, NotifySettings, SmtpSettings};

use crate::config::Config;
use crate::context::Context;

#[derive(Debug, clap::Args)]
pub struct Args {}

/// `[notify.delivery]`: retry and alert policy of the outbox (defaults from the issue).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySection {
    #[serde(default = "default_first_retry")]
    pub first_retry_seconds: u64,
    #[serde(default = "default_max_retry")]
    pub max_retry_seconds: u64,
    #[serde(default = "default_max_age")]
    pub max_age_hours: u64,
    #[serde(default = "default_alert_after")]
    pub alert_after_minutes: u64,
    #[serde(default = "default_lease")]
    pub lease_seconds: u64,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Holds whose supply runs out within this many days are listed in the staff digest.
    #[serde(default = "default_horizon")]
    pub supply_horizon_days: i64,
}

fn default_first_retry() -> u64 {
    30
}
fn default_max_retry() -> u64 {
    900
}
fn default_max_age() -> u64 {
    72
}
fn default_alert_after() -> u64 {
    60
}
fn default_lease() -> u64 {
    120
}
fn default_concurrency() -> usize {
    4
}
fn default_horizon() -> i64 {
    7
}

/// Everything email needs, read from configuration.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    pub notify: NotifySettings,
    pub smtp: SmtpSettings,
    pub delivery: DeliverySection,
}

impl DeliverySection {
    pub fn settings(&self) -> DeliverySettings {
        DeliverySettings {
            lease: Duration::from_secs(self.lease_seconds),
            concurrency: self.concurrency.max(1),
            first_retry: Duration::from_secs(self.first_retry_seconds),
            max_retry: Duration::from_secs(self.max_retry_seconds),
            max_age: Duration::from_secs(self.max_age_hours * 3600),
            alert_after: Duration::from_secs(self.alert_after_minutes * 60),
            ..DeliverySettings::default()
        }
    }

    fn problems(&self, smtp: &SmtpSettings) -> Vec<String> {
        let mut problems = Vec::new();
        if self.first_retry_seconds == 0 || self.first_retry_seconds > self.max_retry_seconds {
            problems
                .push("[notify.delivery] first_retry_seconds must be at least 1 and at most max_retry_seconds".into());
        }
        if self.max_age_hours == 0 {
            problems.push("[notify.delivery] max_age_hours must be at least 1".into());
        }
        // A send that outlives its lease would be rescued and resent while still running.
        if self.lease_seconds <= smtp.timeout_secs.saturating_mul(3) {
            problems.push(format!(
                "[notify.delivery] lease_seconds ({}) must exceed three SMTP timeouts ([smtp] timeout_secs = {})",
                self.lease_seconds, smtp.timeout_secs
            ));
        }
        problems
    }
}

/// Read `[smtp]`, `[notify]` and `[notify.delivery]`. Credentials arrive through the environment
/// (`REFILL__SMTP__USERNAME`, `REFILL__SMTP__PASSWORD`) like every other override.
pub fn email_settings(config: &Config) -> anyhow::Result<EmailSettings> {
    let smtp: SmtpSettings = config.section("smtp")?;
    let mut notify: toml::Table = config.section("notify")?;
    let delivery = notify.remove("delivery").unwrap_or(toml::Value::Table(toml::Table::new()));
    let delivery = DeliverySection::deserialize(delivery).map_err(|e| anyhow::anyhow!("[notify.delivery]: {e}"))?;
    let notify =
        NotifySettings::deserialize(toml::Value::Table(notify)).map_err(|e| anyhow::anyhow!("[notify]: {e}"))?;
    Ok(EmailSettings { notify, smtp, delivery })
}

/// The notifier the worker plugs into its `Mailer` seam. Refuses settings `check-config` refuses.
pub fn outbox_mailer(config: &Config) -> anyhow::Result<OutboxMailer> {
    let settings = email_settings(config)?;
    let problems = email_problems(&settings, config.is_production());
    if let Some(first) = problems.first() {
        anyhow::bail!("email settings: {first} (run `refill check-config` for every problem)");
    }
    let clinic: ClinicSection = config.section("clinic")?;
    let clinic_zone: chrono_tz::Tz = clinic
        .time_zone
        .parse()
        .map_err(|_| anyhow::anyhow!("[clinic] time_zone {:?} is not an IANA zone", clinic.time_zone))?;
    Ok(OutboxMailer {
        composer: Composer::new(settings.notify.clone())?,
        mailer: Mailer::new(&settings.smtp)?,
        settings: settings.delivery.settings(),
        clinic_zone,
        supply_horizon_days: settings.delivery.supply_horizon_days,
    })
}

#[derive(Debug, Deserialize)]
struct ClinicSection {
    time_zone: String,
}

/// Every problem of the email settings, each naming its key.
pub fn email_problems(settings: &EmailSettings, production: bool) -> Vec<String> {
    let mut problems: Vec<String> = settings.smtp.problems(production).iter().map(ToString::to_string).collect();
    problems.extend(settings.notify.problems(production).iter().map(ToString::to_string));
    problems.extend(settings.delivery.problems(&settings.smtp));
    if let Some(path) = &settings.smtp.ca_file
        && !path.exists()
    {
        problems.push(format!("[smtp] ca_file: {} does not exist", path.display()));
    }
    if problems.is_empty()
        && let Err(error) = Mailer::check_tls(&settings.smtp)
    {
        problems.push(error.to_string());
    }
    problems
}

/// One named check and what it found.
struct Check {
    name: &'static str,
    problems: Vec<String>,
}

fn check(name: &'static str, result: anyhow::Result<Vec<String>>) -> Check {
    match result {
        Ok(problems) => Check { name, problems },
        Err(error) => Check { name, problems: vec![format!("{error:#}")] },
    }
}

/// Run every check on a loaded configuration (also used by tests).
fn checks(config: &Config, context: &Context) -> Vec<Check> {
    let production = config.is_production();
    vec![
        check(
            "[clinic]",
            config.section::<ClinicSection>("clinic").map(|clinic| match clinic.time_zone.parse::<chrono_tz::Tz>() {
                Ok(_) => vec![],
                Err(_) => vec![format!("[clinic] time_zone {:?} is not an IANA time zone", clinic.time_zone)],
            }),
        ),
        check("[database] and [audit]", context.store_settings(config).map(|_| vec![])),
        check("[policy]", crate::policy_file::load_policy(config).map(|_| vec![])),
        check(
            "[jobs] schedules",
            crate::cmd::worker::JobsSection::load(config)
                .and_then(|jobs| jobs.schedule_defs(config))
                .map(|defs| defs.iter().filter_map(|def| def.plan().err().map(|error| error.to_string())).collect()),
        ),
        check("[smtp] and [notify]", email_settings(config).map(|settings| email_problems(&settings, production))),
        // As `refill serve` on a network address would read it (loopback only relaxes cookie defaults).
        check("[web]", crate::cmd::serve::web_settings(config, false).map(|_| vec![])),
    ]
}

pub async fn run(_args: Args, context: &Context) -> anyhow::Result<ExitCode> {
    let config = context.config().context("could not load the configuration")?;
    println!("environment: {}", config.environment);
    for source in &config.sources {
        println!("read: {}", source.display());
    }
    let mut failed = 0;
    for check in checks(&config, context) {
        if check.problems.is_empty() {
            println!("ok    {}", check.name);
        } else {
            failed += check.problems.len();
            for problem in check.problems {
                println!("FAIL  {}: {problem}", check.name);
            }
        }
    }
    if failed == 0 {
        println!("configuration is valid");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{failed} problem(s) found");
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMAIL: &str = r#"
[clinic]
time_zone = "America/New_York"

[smtp]
host = "127.0.0.1"
port = 2525
tls = "none"

[notify]
sender_name = "Northside Care"
sender_address = "no-reply@northside.example"
message_id_domain = "mail.northside.example"
callback_number = "+1 555 0100"
sign_in_url = "https://portal.northside.example/sign-in"

[notify.delivery]
max_age_hours = 48
"#;

    fn problems(environment: &str, text: &str) -> Vec<String> {
        let config = Config::from_toml(environment, text).unwrap();
        email_problems(&email_settings(&config).unwrap(), config.is_production())
    }

    #[test]
    fn loopback_plain_smtp_passes_locally_and_fails_in_production() {
        assert!(problems("local", EMAIL).is_empty(), "{:?}", problems("local", EMAIL));
        let production = problems("production", EMAIL);
        assert!(production.iter().any(|p| p.contains("[smtp] tls") && p.contains("production")), "{production:?}");
    }

    #[test]
    fn remote_plain_smtp_and_revealing_sender_names_are_refused() {
        let remote = EMAIL.replace("host = \"127.0.0.1\"", "host = \"mail.example.org\"");
        assert!(problems("local", &remote).iter().any(|p| p.contains("loopback")));
        let revealing = EMAIL.replace("Northside Care\"", "Eastside Pain & Recovery\"");
        assert!(problems("local", &revealing).iter().any(|p| p.contains("[notify] sender_name")));
    }

    #[tokio::test]
    async fn delivery_settings_are_read_with_defaults() {
        let config = Config::from_toml("local", EMAIL).unwrap();
        let settings = email_settings(&config).unwrap().delivery.settings();
        assert_eq!(settings.max_age, Duration::from_secs(48 * 3600));
        assert_eq!(settings.first_retry, Duration::from_secs(30));
        assert_eq!(settings.max_retry, Duration::from_secs(900));
        assert_eq!(settings.alert_after, Duration::from_secs(3600));
        let mailer = outbox_mailer(&config).unwrap();
        assert_eq!(mailer.supply_horizon_days, 7);
    }

    #[test]
    fn the_shipped_configuration_is_valid_locally_and_incomplete_for_production() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let base = std::fs::read_to_string(dir.join("base.toml")).unwrap();
        let local = std::fs::read_to_string(dir.join("local.toml")).unwrap_or_default();
        let production = std::fs::read_to_string(dir.join("production.toml")).unwrap_or_default();
        let local_config = Config::from_toml("local", &format!("{base}\n{local}")).unwrap();
        let found = email_problems(&email_settings(&local_config).unwrap(), false);
        assert!(found.is_empty(), "{found:?}");
        // Production must name its own relay and portal: the shipped defaults are refused.
        let merged = merge_tables(&base, &production);
        let production_config = Config::from_toml("production", &merged).unwrap();
        let found = email_problems(&email_settings(&production_config).unwrap(), true);
        assert!(found.iter().any(|p| p.contains("[notify] sign_in_url")), "{found:?}");
    }

    /// Layer `top` over `base` the way the loader does (tables merge, values replace).
    fn merge_tables(base: &str, top: &str) -> String {
        fn merge(into: &mut toml::Table, layer: toml::Table) {
            for (key, value) in layer {
                match (into.get_mut(&key), value) {
                    (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
                    (_, value) => {
                        into.insert(key, value);
                    }
                }
            }
        }
        let mut tree: toml::Table = toml::from_str(base).unwrap();
        merge(&mut tree, toml::from_str(top).unwrap());
        toml::to_string(&tree).unwrap()
    }
}
