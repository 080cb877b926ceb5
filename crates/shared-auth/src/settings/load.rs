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
        "TOLLGATE_ENV=`{0}` is not an environment name (use lower-case letters, digits and '-')"
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
    if env.is_empty()
        || !env
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
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

    let mut settings: Settings = serde_path_to_error::deserialize(merged).map_err(|e| {
        let key = e.path().to_string();
        // `config` appends " for key `…` [in the environment]"; the key is ours to name.
        let inner = e.into_inner().to_string();
        let problem = match inner.find(" for key `") {
            Some(i) if inner[i..].contains("in the environment") => {
                format!(
                    "{} (set by a {ENV_PREFIX}{ENV_SEPARATOR}… variable)",
                    &inner[..i]
                )
            }
            Some(i) => inner[..i].to_owned(),
            None => inner,
        };
        ConfigError::invalid(if key == "." { "(top level)" } else { &key }, problem)
    })?;
    settings.env = env.to_owned();
    if let Some(url) = vars.get("DATABASE_URL").filter(|s| !s.is_empty()) {
        settings.api.database_url = Some(SecretString::from(url.clone()));
    }
    if let Some(password) = vars.get("DATABASE_PASSWORD").filter(|s| !s.is_empty()) {
        settings.api.database_password = Some(SecretString::from(password.clone()));
    }
    settings.validate_for(component)?;
    Ok(settings)
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
