//! Loading: the embedded or on-disk contract file, then `TOLLGATE__…` overrides, then the
//! database variables; errors that name their key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

use super::{Component, DEFAULT_ENV, ENV_PREFIX, ENV_SEPARATOR, Settings};

/// Contract files compiled into every binary, so a deployable needs no file on disk.
const EMBEDDED: &[(&str, &str)] = &[
    ("local", include_str!("../../../../deploy/local.toml")),
    ("staging", include_str!("../../../../deploy/staging.toml")),
    (
        "production",
        include_str!("../../../../deploy/production.toml"),
    ),
];

/// Keys whose environment override is a comma-separated list.
const LIST_KEYS: &[&str] = &["guard.allowed_cidrs", "guard.trusted_proxies"];

/// Why settings could not be loaded. Each variant names the file or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "TOLLGATE_ENV=`{0}` is not an environment name: 2 to 19 characters, a lower-case letter \
         first, then lower-case letters and digits with single '-' between them (every AWS name \
         is `tollgate-<env>…`: RDS identifiers and load balancer names end in a letter or digit \
         and hold no \"--\")"
    )]
    BadEnvName(String),
    #[error("no contract for environment `{env}`: {hint}")]
    NoFile { env: String, hint: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse the settings for `{env}`: {source}")]
    Parse {
        env: String,
        source: config::ConfigError,
    },
    #[error("invalid setting `{key}`: {problem}")]
    Invalid { key: String, problem: String },
}

impl ConfigError {
    pub(super) fn invalid(key: &str, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_owned(),
            problem: problem.into(),
        }
    }
}

/// Loads the settings `component` reads from the process environment (`TOLLGATE_ENV`,
/// `TOLLGATE_CONFIG_DIR`, `TOLLGATE__…`, `DATABASE_URL`, `DATABASE_PASSWORD`).
pub fn load(component: Component) -> Result<Settings, ConfigError> {
    load_for(component, &std::env::vars().collect())
}

/// Loads the settings `component` reads from the given variables instead of the process
/// environment, so tests and `xtask` can check a rendered environment without touching their
/// own.
pub fn load_for(
    component: Component,
    vars: &HashMap<String, String>,
) -> Result<Settings, ConfigError> {
    let env = vars
        .get("TOLLGATE_ENV")
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_ENV);
    if !is_environment_name(env) {
        return Err(ConfigError::BadEnvName(env.to_owned()));
    }
    let text = contract_text(env, vars.get("TOLLGATE_CONFIG_DIR").map(Path::new))?;

    let overrides: config::Map<String, String> = vars
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}{ENV_SEPARATOR}")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut environment = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator(ENV_SEPARATOR)
        .separator(ENV_SEPARATOR)
        .list_separator(",")
        .try_parsing(true)
        .source(Some(overrides));
    for key in LIST_KEYS {
        environment = environment.with_list_parse_key(key);
    }
    let parse_err = |source| ConfigError::Parse {
        env: env.to_owned(),
        source,
    };
    let merged = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .add_source(environment)
        .build()
        .map_err(parse_err)?;

    let mut settings: Settings = serde_path_to_error::deserialize(merged)
        .map_err(|e| {
            let key = e.path().to_string();
            // `config` appends " for key `…` [in the environment]"; the key is ours to name.
            let inner = e.into_inner().to_string();
            let problem = match inner.find(" for key `") {
                Some(i) => inner[..i].to_owned(),
                None => inner,
            };
            ConfigError::invalid(if key == "." { "(top level)" } else { &key }, problem)
        })
        .map_err(|e| e.naming_its_variable(vars))?;
    settings.env = env.to_owned();
    if let Some(url) = vars.get("DATABASE_URL").filter(|s| !s.is_empty()) {
        settings.api.database_url = Some(SecretString::from(url.clone()));
    }
    if let Some(password) = vars.get("DATABASE_PASSWORD").filter(|s| !s.is_empty()) {
        settings.api.database_password = Some(SecretString::from(password.clone()));
    }
    settings
        .validate_for(component)
        .map_err(|e| e.naming_its_variable(vars))?;
    Ok(settings)
}

/// An environment's name as every AWS name built from it allows (`tollgate-<env>-api` is the
/// longest, a target group name of at most 32 characters; RDS identifiers and load balancer
/// names end in a letter or digit and never hold two hyphens in a row). The Terraform stack's
/// `env` variable checks the same rule.
pub fn is_environment_name(env: &str) -> bool {
    let bytes = env.as_bytes();
    (2..=19).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && !env.ends_with('-')
        && !env.contains("--")
}

impl ConfigError {
    /// The error, saying which `TOLLGATE__…` variable set the value at fault when one did: a
    /// value from the environment is the user's to fix there, not in the contract file.
    fn naming_its_variable(self, vars: &HashMap<String, String>) -> Self {
        let ConfigError::Invalid { key, problem } = self else {
            return self;
        };
        // `guard.allowed_cidrs[1]` is set by the list's variable.
        let setting = key.split('[').next().unwrap_or(&key);
        let variable = super::supplied::Unfilled::variable(setting);
        let set_by = vars
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&variable))
            .map(|(name, _)| name.clone());
        match set_by {
            Some(name) => ConfigError::Invalid {
                problem: format!("{problem} (set by {name})"),
                key,
            },
            None => ConfigError::Invalid { key, problem },
        }
    }
}

fn contract_text(env: &str, dir: Option<&Path>) -> Result<String, ConfigError> {
    match dir {
        Some(dir) => {
            let path = dir.join(format!("{env}.toml"));
            std::fs::read_to_string(&path).map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => ConfigError::NoFile {
                    env: env.to_owned(),
                    hint: format!("{} does not exist (TOLLGATE_CONFIG_DIR)", path.display()),
                },
                _ => ConfigError::Read { path, source },
            })
        }
        None => EMBEDDED
            .iter()
            .find(|(name, _)| *name == env)
            .map(|(_, text)| (*text).to_owned())
            .ok_or_else(|| ConfigError::NoFile {
                env: env.to_owned(),
                hint: format!(
                    "the built-in ones are {}; for another, set TOLLGATE_CONFIG_DIR to a folder holding {env}.toml",
                    EMBEDDED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ),
            }),
    }
}
