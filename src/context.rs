//! What every subcommand may need, opened lazily: the configuration and the database.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use crate::config::Config;

/// Global options shared by every subcommand.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// `--config DIR`; default `REFILL_CONFIG_DIR` or `./config`.
    pub config_dir: Option<PathBuf>,
    /// `--database URL`, overriding `[database] url`.
    pub database_url: Option<String>,
}

/// `[database]` in config/base.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    /// `sqlite:refill.db` or `postgres://...`.
    pub url: String,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    #[serde(default = "default_busy_timeout_ms")]
    pub busy_timeout_ms: u64,
}

/// `[audit]`: the chain key comes from the environment (`REFILL__AUDIT__KEY`), never from a file in
/// production; `checkpoint_path` is where `refill audit checkpoint` writes, outside the database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    pub key: Option<String>,
    pub checkpoint_path: Option<PathBuf>,
}

/// Used only outside production when no key is configured.
pub const DEVELOPMENT_AUDIT_KEY: &str = "refill-clinic-development-audit-key-not-for-production";

fn default_max_connections() -> u32 {
    8
}
fn default_busy_timeout_ms() -> u64 {
    10_000
}

impl Context {
    pub fn config(&self) -> anyhow::Result<Config> {
        Config::load(self.config_dir.as_deref())
    }

    /// Store settings from `[database]`, with `--database` taking precedence.
    pub fn store_settings(&self, config: &Config) -> anyhow::Result<refill_store::StoreSettings> {
        let section: DatabaseSection = config.section("database")?;
        let url = self.database_url.clone().unwrap_or(section.url);
        let audit: AuditSection = config.section("audit")?;
        let key = match audit.key {
            Some(key) if key.len() >= 32 => key,
            Some(_) => anyhow::bail!("[audit] key must be at least 32 characters"),
            None if config.is_production() => {
                anyhow::bail!("[audit] key is required in production (set REFILL__AUDIT__KEY)")
            }
            // Outside production a fixed development key keeps local databases verifiable; production
            // refuses to start without a real one.
            None => DEVELOPMENT_AUDIT_KEY.to_string(),
        };
        Ok(refill_store::StoreSettings {
            url,
            max_connections: section.max_connections,
            busy_timeout: Duration::from_millis(section.busy_timeout_ms),
            audit_key: refill_store::AuditKey::new(key.as_bytes()),
        })
    }

    /// Open the database and apply pending migrations.
    pub async fn open_store(&self, config: &Config) -> anyhow::Result<refill_store::Store> {
        let settings = self.store_settings(config)?;
        let store = connect(&settings).await?;
        store.migrate().await.context("could not migrate the database")?;
        Ok(store)
    }
}

/// Connect to the database of `settings`. A SQLite file in a folder that does not exist is named
/// once, plainly (SQLite itself says only "unable to open database file", three times over).
pub async fn connect(settings: &refill_store::StoreSettings) -> anyhow::Result<refill_store::Store> {
    if let Some(file) = settings.url.strip_prefix("sqlite:") {
        let file = file.strip_prefix("//").unwrap_or(file);
        let file = std::path::Path::new(file.split('?').next().unwrap_or(file));
        if let Some(folder) = file.parent().filter(|p| !p.as_os_str().is_empty())
            && !folder.is_dir()
        {
            anyhow::bail!("the database folder {} does not exist ([database] url or --database)", folder.display());
        }
    }
    refill_store::Store::connect(settings)
        .await
        .with_context(|| format!("could not open the database {}", redact_url(&settings.url)))
}

/// A database URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme_end + 3], &credentials[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords_only() {
        assert_eq!(super::redact_url("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact_url("sqlite:refill.db"), "sqlite:refill.db");
    }
}
