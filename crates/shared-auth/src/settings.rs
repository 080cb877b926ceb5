//! The settings every deployable loads: the shared [`GuardContract`] plus the sections that
//! only one side reads ([`ApiSettings`], [`LambdaSettings`], [`AwsSettings`]).
//!
//! Loading order (later wins):
//! 1. `deploy/<env>.toml`, where `<env>` is `TOLLGATE_ENV` (default `local`). The binaries carry
//!    a copy of every file in `deploy/`; `TOLLGATE_CONFIG_DIR` makes them read `<dir>/<env>.toml`
//!    from disk instead.
//! 2. Environment variables `TOLLGATE__SECTION__KEY` (double underscores; lists are
//!    comma-separated, e.g. `TOLLGATE__GUARD__ALLOWED_CIDRS=203.0.113.7/32,2001:db8::/64`).
//! 3. `DATABASE_URL`, when set, replaces `api.database_url`.
//!
//! Unknown keys are errors, and every validation error names the key it is about.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};

/// The environment used when `TOLLGATE_ENV` is unset.
pub const DEFAULT_ENV: &str = "local";
/// Prefix of the environment overrides (`TOLLGATE__GUARD__PATH=/user`).
pub const ENV_PREFIX: &str = "TOLLGATE";
/// Separator between prefix, section and key in environment overrides.
pub const ENV_SEPARATOR: &str = "__";

/// Contract files compiled into every binary, so a deployable needs no file on disk.
const EMBEDDED: &[(&str, &str)] = &[
    ("local", include_str!("../../../deploy/local.toml")),
    ("staging", include_str!("../../../deploy/staging.toml")),
    (
        "production",
        include_str!("../../../deploy/production.toml"),
    ),
];

/// Keys whose environment override is a comma-separated list.
const LIST_KEYS: &[&str] = &["guard.allowed_cidrs", "guard.trusted_proxies"];

/// Everything a deployable reads from `deploy/<env>.toml` and `TOLLGATE__…` overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The environment these settings were loaded for (`TOLLGATE_ENV`); not a file key.
    #[serde(skip)]
    pub env: String,
    /// The shared contract: both ends must agree on every field of it.
    pub guard: GuardContract,
    #[serde(default)]
    pub api: ApiSettings,
    #[serde(default)]
    pub lambda: LambdaSettings,
    #[serde(default)]
    pub aws: AwsSettings,
    #[serde(default)]
    pub deploy: DeploySettings,
}

/// The shared contract between the post-confirm Lambda (sender) and the API (receiver).
///
/// Both ends load it through [`load`]; `xtask` renders it into both deployables' environments
/// from one value, so they cannot disagree.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GuardContract {
    /// HTTP method of the guarded route (upper case).
    #[serde(default = "defaults::method")]
    pub method: String,
    /// Path of the guarded route, as the Lambda sends it and WAF matches it (lower case).
    #[serde(default = "defaults::path")]
    pub path: String,
    /// How the Lambda proves it knows the secret.
    #[serde(default)]
    pub mode: SigningMode,
    /// Header carrying the secret itself in `static` mode.
    #[serde(default = "defaults::static_header")]
    pub static_header: String,
    /// Header carrying the signing time (unix seconds) in `hmac` mode.
    #[serde(default = "defaults::timestamp_header")]
    pub timestamp_header: String,
    /// Header carrying the `v1=` signatures in `hmac` mode.
    #[serde(default = "defaults::signature_header")]
    pub signature_header: String,
    /// Secrets Manager id (name or ARN) of the shared secret.
    pub secret_id: String,
    /// How long a fetched secret may be used before it is fetched again.
    #[serde(default = "defaults::secret_ttl_s")]
    pub secret_ttl_s: u64,
    /// Source addresses allowed to call the guarded route (the NAT gateway's Elastic IP).
    #[serde(deserialize_with = "cidr_list")]
    pub allowed_cidrs: Vec<IpNet>,
    /// Proxies whose `X-Forwarded-For` entries are believed (the ALB's subnets).
    #[serde(default, deserialize_with = "cidr_list")]
    pub trusted_proxies: Vec<IpNet>,
    /// Largest accepted difference between the signing time and the receiver's clock.
    #[serde(default = "defaults::max_skew_s")]
    pub max_skew_s: u64,
}

/// How the sender proves it knows the shared secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum SigningMode {
    /// HMAC-SHA256 over timestamp, method, path and body (see the crate docs).
    #[default]
    Hmac,
    /// The secret itself in a header, compared in constant time.
    Static,
}

impl TryFrom<String> for SigningMode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "hmac" => Ok(SigningMode::Hmac),
            "static" => Ok(SigningMode::Static),
            other => Err(format!("unknown mode `{other}`; use `hmac` or `static`")),
        }
    }
}

impl fmt::Display for SigningMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SigningMode::Hmac => "hmac",
            SigningMode::Static => "static",
        })
    }
}

/// Where the API reads the shared secret from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum SecretSource {
    /// `TOLLGATE_SECRET_CURRENT` and optional `TOLLGATE_SECRET_PREVIOUS` (local runs).
    #[default]
    Env,
    /// Secrets Manager, versions `AWSCURRENT` and `AWSPREVIOUS`.
    Aws,
}

impl TryFrom<String> for SecretSource {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "env" => Ok(SecretSource::Env),
            "aws" => Ok(SecretSource::Aws),
            other => Err(format!(
                "unknown secret source `{other}`; use `env` or `aws`"
            )),
        }
    }
}

/// Settings read by the API service only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    pub listen: SocketAddr,
    /// PostgreSQL URL; the `DATABASE_URL` variable wins when set.
    pub database_url: Option<SecretString>,
    /// Password for `database_url`, from the `DATABASE_PASSWORD` variable only (ECS injects the
    /// RDS-managed secret there); never a file key.
    #[serde(skip)]
    pub database_password: Option<SecretString>,
    pub secret_source: SecretSource,
    /// How often the API re-reads the secret (picks up rotations).
    pub secret_refresh_s: u64,
    /// Apply `migrations/` at start.
    pub migrate_on_start: bool,
    pub db_max_connections: u32,
    pub db_acquire_timeout_ms: u64,
    pub db_statement_timeout_ms: u64,
    /// Whole-request time limit.
    pub request_timeout_ms: u64,
    /// Largest accepted request body on the guarded route.
    pub body_limit_bytes: usize,
    /// Cognito issuer, `https://cognito-idp.<region>.amazonaws.com/<pool id>`.
    pub jwt_issuer: Option<String>,
    /// Cognito app client id: the ID token's `aud`.
    pub jwt_client_id: Option<String>,
    /// JWKS address; defaults to `{jwt_issuer}/.well-known/jwks.json`.
    pub jwks_url: Option<String>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: None,
            database_password: None,
            secret_source: SecretSource::Env,
            secret_refresh_s: 60,
            migrate_on_start: false,
            db_max_connections: 10,
            db_acquire_timeout_ms: 2_000,
            db_statement_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
            body_limit_bytes: 16 * 1024,
            jwt_issuer: None,
            jwt_client_id: None,
            jwks_url: None,
        }
    }
}

impl ApiSettings {
    /// The JWKS address: `jwks_url`, or the issuer's well-known path.
    pub fn jwks_url(&self) -> Option<String> {
        self.jwks_url.clone().or_else(|| {
            self.jwt_issuer
                .as_ref()
                .map(|iss| format!("{}/.well-known/jwks.json", iss.trim_end_matches('/')))
        })
    }
}

/// Settings read by the post-confirm Lambda only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LambdaSettings {
    /// Base address of the API (scheme, host, optional port; no path).
    pub api_base_url: String,
    pub connect_timeout_ms: u64,
    /// Time limit of one HTTP attempt.
    pub attempt_timeout_ms: u64,
    /// Time kept free before the invocation deadline (Cognito allows 5 s in all).
    pub deadline_margin_ms: u64,
    /// Most HTTP attempts per invocation (the deadline may stop earlier).
    pub max_attempts: u32,
}

impl Default for LambdaSettings {
    fn default() -> Self {
        Self {
            api_base_url: "http://127.0.0.1:8080".to_owned(),
            connect_timeout_ms: 1_000,
            attempt_timeout_ms: 1_500,
            deadline_margin_ms: 300,
            max_attempts: 4,
        }
    }
}

/// Where the AWS clients point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsSettings {
    /// Region; the SDK's default chain when absent.
    pub region: Option<String>,
    /// A local AWS (moto_server) for `--env local`; absent in the cloud.
    pub endpoint_url: Option<String>,
}

/// How `cargo xtask deploy` builds the stack for this environment (read by xtask only).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeploySettings {
    /// S3 bucket holding the Terraform state (native S3 locking); absent for `local` (local state).
    pub state_bucket: Option<String>,
    /// ACM certificate of the HTTPS listener; required outside `local`.
    pub certificate_arn: Option<String>,
    /// `arm64` or `x86_64`: the Lambda's architecture and the bootstrap build target.
    pub lambda_architecture: String,
    pub db_instance_class: String,
    /// VPC range; `guard.trusted_proxies` must contain it (the ALB's nodes live there).
    pub vpc_cidr: IpNet,
    pub api_desired_count: u32,
    /// Deletion protection on the database, ALB and user pool (off only for throwaway stacks).
    pub deletion_protection: bool,
}

impl Default for DeploySettings {
    fn default() -> Self {
        Self {
            state_bucket: None,
            certificate_arn: None,
            lambda_architecture: "arm64".to_owned(),
            db_instance_class: "db.t4g.micro".to_owned(),
            vpc_cidr: IpNet::V4(
                ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(10, 20, 0, 0), 16).unwrap_or_default(),
            ),
            api_desired_count: 2,
            deletion_protection: true,
        }
    }
}

mod defaults {
    pub fn method() -> String {
        "POST".to_owned()
    }
    pub fn path() -> String {
        "/user".to_owned()
    }
    pub fn static_header() -> String {
        "x-custom-auth".to_owned()
    }
    pub fn timestamp_header() -> String {
        crate::signing::TIMESTAMP_HEADER.to_owned()
    }
    pub fn signature_header() -> String {
        crate::signing::SIGNATURE_HEADER.to_owned()
    }
    pub fn secret_ttl_s() -> u64 {
        300
    }
    pub fn max_skew_s() -> u64 {
        crate::signing::DEFAULT_MAX_SKEW_S
    }
}

/// Reads a CIDR list, accepting a TOML array or (from an environment override) one string;
/// empty entries are skipped so an empty override means an empty list.
fn cidr_list<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<IpNet>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<String>),
        One(String),
    }
    let raw = match OneOrMany::deserialize(de)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(s) => s.split(',').map(str::to_owned).collect(),
    };
    raw.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>().map_err(|_| {
                serde::de::Error::custom(format!(
                    "`{s}` is not a CIDR block (write e.g. 203.0.113.7/32 or 2001:db8::/64)"
                ))
            })
        })
        .collect()
}

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
    fn invalid(key: &str, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_owned(),
            problem: problem.into(),
        }
    }
}

/// Loads the settings from the process environment (`TOLLGATE_ENV`, `TOLLGATE_CONFIG_DIR`,
/// `TOLLGATE__…`, `DATABASE_URL`).
pub fn load() -> Result<Settings, ConfigError> {
    load_with(&std::env::vars().collect())
}

/// Loads the settings from the given variables instead of the process environment, so tests and
/// `xtask` can check a rendered environment without touching their own.
pub fn load_with(vars: &HashMap<String, String>) -> Result<Settings, ConfigError> {
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
    settings.validate()?;
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

impl Settings {
    /// Checks what the schema alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.guard.validate(&self.env)?;
        let api = &self.api;
        for (key, value) in [
            ("api.secret_refresh_s", api.secret_refresh_s),
            ("api.db_max_connections", u64::from(api.db_max_connections)),
            ("api.db_acquire_timeout_ms", api.db_acquire_timeout_ms),
            ("api.db_statement_timeout_ms", api.db_statement_timeout_ms),
            ("api.request_timeout_ms", api.request_timeout_ms),
            ("api.body_limit_bytes", api.body_limit_bytes as u64),
            ("lambda.connect_timeout_ms", self.lambda.connect_timeout_ms),
            ("lambda.attempt_timeout_ms", self.lambda.attempt_timeout_ms),
            ("lambda.max_attempts", u64::from(self.lambda.max_attempts)),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be greater than zero"));
            }
        }
        for (key, value) in [
            ("api.jwt_issuer", &api.jwt_issuer),
            ("api.jwks_url", &api.jwks_url),
            ("aws.endpoint_url", &self.aws.endpoint_url),
        ] {
            if let Some(url) = value {
                check_http_url(key, url, false)?;
            }
        }
        check_http_url("lambda.api_base_url", &self.lambda.api_base_url, true)?;
        self.validate_deploy()
    }

    fn validate_deploy(&self) -> Result<(), ConfigError> {
        let deploy = &self.deploy;
        if !matches!(deploy.lambda_architecture.as_str(), "arm64" | "x86_64") {
            return Err(ConfigError::invalid(
                "deploy.lambda_architecture",
                format!(
                    "`{}` is neither arm64 nor x86_64",
                    deploy.lambda_architecture
                ),
            ));
        }
        if self.env == DEFAULT_ENV {
            return Ok(());
        }
        if deploy.state_bucket.as_deref().is_none_or(str::is_empty) {
            return Err(ConfigError::invalid(
                "deploy.state_bucket",
                "is required outside `local`: the S3 bucket that holds the Terraform state",
            ));
        }
        if !deploy
            .certificate_arn
            .as_deref()
            .is_some_and(|arn| arn.starts_with("arn:aws") && arn.contains(":acm:"))
        {
            return Err(ConfigError::invalid(
                "deploy.certificate_arn",
                "is required outside `local`: the ACM certificate ARN of the HTTPS listener",
            ));
        }
        if !self
            .guard
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&deploy.vpc_cidr))
        {
            return Err(ConfigError::invalid(
                "guard.trusted_proxies",
                format!(
                    "must contain deploy.vpc_cidr ({}): the ALB's X-Forwarded-For entries come from there",
                    deploy.vpc_cidr
                ),
            ));
        }
        Ok(())
    }
}

fn check_http_url(key: &str, url: &str, origin_only: bool) -> Result<(), ConfigError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            ConfigError::invalid(key, format!("`{url}` must start with http:// or https://"))
        })?;
    if rest.is_empty() || rest.starts_with('/') || url.chars().any(char::is_whitespace) {
        return Err(ConfigError::invalid(key, format!("`{url}` has no host")));
    }
    if origin_only && rest.trim_end_matches('/').contains('/') {
        return Err(ConfigError::invalid(
            key,
            format!("`{url}` must be scheme and host only; the route's path comes from guard.path"),
        ));
    }
    Ok(())
}

/// Header names the guard must never reuse: proxies rewrite or interpret them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-amzn-trace-id",
];

/// An RFC 9110 `token` (header names, methods).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

impl GuardContract {
    /// Checks the contract for `env` (an empty allowlist is tolerated only in `local`).
    pub fn validate(&self, env: &str) -> Result<(), ConfigError> {
        if !is_token(&self.method) || self.method != self.method.to_ascii_uppercase() {
            return Err(ConfigError::invalid(
                "guard.method",
                format!(
                    "`{}` is not an upper-case HTTP method such as POST",
                    self.method
                ),
            ));
        }
        let path_ok = self.path.starts_with('/')
            && !self.path.contains("//")
            && self
                .path
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'%'))
            && self.path == self.path.to_ascii_lowercase();
        if !path_ok {
            return Err(ConfigError::invalid(
                "guard.path",
                format!(
                    "`{}` must be a lower-case absolute path without query, fragment, escapes or `//` (WAF compares the normalised, lower-cased path)",
                    self.path
                ),
            ));
        }
        let headers = [
            ("guard.static_header", &self.static_header),
            ("guard.timestamp_header", &self.timestamp_header),
            ("guard.signature_header", &self.signature_header),
        ];
        for (key, name) in headers {
            if !is_token(name) {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "`{name}` is not a header name (RFC 9110 token: letters, digits and !#$%&'*+-.^_`|~)"
                    ),
                ));
            }
            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "`{name}` must be lower case (HTTP/2 sends header names in lower case)"
                    ),
                ));
            }
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "`{name}` is set or rewritten by proxies; choose a header of the guard's own"
                    ),
                ));
            }
        }
        if self.static_header == self.timestamp_header
            || self.static_header == self.signature_header
            || self.timestamp_header == self.signature_header
        {
            return Err(ConfigError::invalid(
                "guard.static_header",
                "the static, timestamp and signature headers must be three different names",
            ));
        }
        if self.secret_id.trim().is_empty() {
            return Err(ConfigError::invalid("guard.secret_id", "must not be empty"));
        }
        if self.secret_ttl_s == 0 {
            return Err(ConfigError::invalid(
                "guard.secret_ttl_s",
                "must be greater than zero",
            ));
        }
        if self.max_skew_s == 0 || self.max_skew_s > 3_600 {
            return Err(ConfigError::invalid(
                "guard.max_skew_s",
                format!("{} is outside 1..=3600 seconds", self.max_skew_s),
            ));
        }
        if self.allowed_cidrs.is_empty() && env != DEFAULT_ENV {
            return Err(ConfigError::invalid(
                "guard.allowed_cidrs",
                format!(
                    "is empty; outside `{DEFAULT_ENV}` it must hold the NAT gateway's Elastic IP (xtask adds it at deploy time)"
                ),
            ));
        }
        for (key, nets) in [
            ("guard.allowed_cidrs", &self.allowed_cidrs),
            ("guard.trusted_proxies", &self.trusted_proxies),
        ] {
            if let Some(net) = nets.iter().find(|n| n.prefix_len() == 0) {
                return Err(ConfigError::invalid(
                    key,
                    format!("`{net}` covers every address, which turns the check off"),
                ));
            }
        }
        Ok(())
    }

    /// The environment variables that reproduce this contract through [`load_with`]
    /// (`TOLLGATE__GUARD__…`), as `xtask` renders them for both deployables.
    pub fn to_env_vars(&self) -> Vec<(String, String)> {
        let join = |nets: &[IpNet]| {
            nets.iter()
                .map(IpNet::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let key = |k: &str| {
            format!(
                "{ENV_PREFIX}{ENV_SEPARATOR}GUARD{ENV_SEPARATOR}{}",
                k.to_ascii_uppercase()
            )
        };
        vec![
            (key("method"), self.method.clone()),
            (key("path"), self.path.clone()),
            (key("mode"), self.mode.to_string()),
            (key("static_header"), self.static_header.clone()),
            (key("timestamp_header"), self.timestamp_header.clone()),
            (key("signature_header"), self.signature_header.clone()),
            (key("secret_id"), self.secret_id.clone()),
            (key("secret_ttl_s"), self.secret_ttl_s.to_string()),
            (key("allowed_cidrs"), join(&self.allowed_cidrs)),
            (key("trusted_proxies"), join(&self.trusted_proxies)),
            (key("max_skew_s"), self.max_skew_s.to_string()),
        ]
    }
}
