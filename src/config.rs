//! Configuration: `config/base.toml`, then `config/<env>.toml` (env from `REFILL_ENV`, default
//! `local`), then environment overrides `REFILL__SECTION__KEY=value`. The files of the project's
//! `config/` folder are built into the binary, so `refill` runs from any folder: each built-in file is
//! the bottom layer of its name and a file of that name in the configuration folder goes over it. This is the only place that reads
//! configuration files or the environment for settings; each command takes the typed section it needs
//! with [`Config::section`], and library crates receive typed settings.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::de::DeserializeOwned;

/// The merged configuration tree, with where it came from for error messages.
#[derive(Debug, Clone)]
pub struct Config {
    /// `local`, `test` or `production`.
    pub environment: String,
    /// The folder holding base.toml (relative paths in the config are relative to its parent).
    pub dir: PathBuf,
    /// Files read, in order, for error messages.
    pub sources: Vec<PathBuf>,
    tree: toml::Table,
}

/// The configuration files built into the binary (the project's `config/` folder at build time).
const BUILT_IN: &[(&str, &str)] = &[
    ("base.toml", include_str!("../config/base.toml")),
    ("local.toml", include_str!("../config/local.toml")),
    ("test.toml", include_str!("../config/test.toml")),
    ("production.toml", include_str!("../config/production.toml")),
];

/// The policy built into the binary (`config/policy.toml` at build time).
pub const BUILT_IN_POLICY: &str = include_str!("../config/policy.toml");

impl Config {
    /// Load from `dir` (default: `REFILL_CONFIG_DIR`, else `./config`). A folder named by `--config`
    /// or `REFILL_CONFIG_DIR` must exist; without one, `./config` is used when it exists and the
    /// built-in files alone otherwise.
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Config> {
        let named = match dir {
            Some(dir) => Some((dir.to_path_buf(), "--config")),
            None => std::env::var_os("REFILL_CONFIG_DIR").map(|dir| (PathBuf::from(dir), "REFILL_CONFIG_DIR")),
        };
        if let Some((dir, how)) = &named
            && !dir.is_dir()
        {
            bail!("configuration folder {} ({how}) does not exist or is not a folder", dir.display());
        }
        let dir = named.map(|(dir, _)| dir).unwrap_or_else(|| PathBuf::from("config"));
        let environment = std::env::var("REFILL_ENV").unwrap_or_else(|_| "local".to_string());
        if !matches!(environment.as_str(), "local" | "test" | "production") {
            bail!("REFILL_ENV must be local, test or production, not {environment:?}");
        }
        let mut tree = toml::Table::new();
        let mut sources = Vec::new();
        for name in ["base.toml".to_string(), format!("{environment}.toml")] {
            if let Some((_, text)) = BUILT_IN.iter().find(|(built_in, _)| *built_in == name) {
                let layer: toml::Table =
                    toml::from_str(text).with_context(|| format!("the built-in {name} is not valid TOML"))?;
                merge(&mut tree, layer);
                sources.push(PathBuf::from(format!("(built-in) {name}")));
            }
            let path = dir.join(&name);
            if !path.exists() {
                continue;
            }
            let text = std::fs::read_to_string(&path).with_context(|| format!("could not read {}", path.display()))?;
            let layer: toml::Table =
                toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
            merge(&mut tree, layer);
            sources.push(path);
        }
        apply_env_overrides(&mut tree, std::env::vars())?;
        Ok(Config { environment, dir, sources, tree })
    }

    /// A config built from a TOML string (tests).
    pub fn from_toml(environment: &str, text: &str) -> anyhow::Result<Config> {
        let tree: toml::Table = toml::from_str(text).context("configuration is not valid TOML")?;
        Ok(Config { environment: environment.to_string(), dir: PathBuf::from("config"), sources: Vec::new(), tree })
    }

    pub fn is_production(&self) -> bool {
        self.environment == "production"
    }

    /// Deserialize the section `[name]` into `T`, naming the section and key on error.
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> anyhow::Result<T> {
        let value = self.tree.get(name).cloned().unwrap_or(toml::Value::Table(toml::Table::new()));
        T::deserialize(value)
            .map_err(|e| anyhow::anyhow!("configuration section [{name}] ({}): {e}", self.describe_sources()))
    }

    /// Resolve a path from the configuration against the project folder (the parent of `config/`).
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir.parent().map(|p| p.join(path)).unwrap_or_else(|| path.to_path_buf())
        }
    }

    fn describe_sources(&self) -> String {
        if self.sources.is_empty() {
            "built-in".to_string()
        } else {
            self.sources.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" + ")
        }
    }
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

/// `REFILL__DATABASE__URL=...` sets `[database] url`. Values parse as TOML scalars when they can
/// (`true`, `42`), else as strings.
fn apply_env_overrides(tree: &mut toml::Table, vars: impl Iterator<Item = (String, String)>) -> anyhow::Result<()> {
    for (name, raw) in vars {
        let Some(path) = name.strip_prefix("REFILL__") else { continue };
        let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
        if keys.iter().any(|k| k.is_empty()) {
            bail!("environment variable {name} has an empty key");
        }
        let value = raw
            .parse::<i64>()
            .map(toml::Value::Integer)
            .or_else(|_| raw.parse::<bool>().map(toml::Value::Boolean))
            .unwrap_or_else(|_| toml::Value::String(raw.clone()));
        let mut table = &mut *tree;
        for key in &keys[..keys.len() - 1] {
            let entry = table.entry(key.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => bail!("environment variable {name}: {key} is not a table"),
            };
        }
        table.insert(keys[keys.len() - 1].clone(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_nest_and_type_values() {
        let mut tree: toml::Table = toml::from_str("[database]\nurl = \"sqlite:a.db\"\n").unwrap();
        let vars = vec![
            ("REFILL__DATABASE__URL".to_string(), "postgres://x".to_string()),
            ("REFILL__WEB__PORT".to_string(), "8080".to_string()),
            ("OTHER".to_string(), "ignored".to_string()),
        ];
        apply_env_overrides(&mut tree, vars.into_iter()).unwrap();
        assert_eq!(tree["database"]["url"].as_str(), Some("postgres://x"));
        assert_eq!(tree["web"]["port"].as_integer(), Some(8080));
    }

    #[test]
    fn section_errors_name_the_section() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        struct Db {
            #[allow(dead_code)]
            url: String,
        }
        let config = Config::from_toml("test", "[database]\nurl = 3\n").unwrap();
        let error = config.section::<Db>("database").unwrap_err().to_string();
        assert!(error.contains("[database]"), "{error}");
    }
}
