//! The settings' types, their defaults, and how the contract renders back to variables.

use std::fmt;
use std::net::SocketAddr;

use ipnet::IpNet;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};

use super::{ENV_PREFIX, ENV_SEPARATOR};

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
    /// Header carrying the message id in `hmac` mode (Standard Webhooks: `webhook-id`).
    #[serde(default = "defaults::id_header")]
    pub id_header: String,
    /// Header carrying the signing time (unix seconds) in `hmac` mode (`webhook-timestamp`).
    #[serde(default = "defaults::timestamp_header")]
    pub timestamp_header: String,
    /// Header carrying the `v1,` signatures in `hmac` mode (`webhook-signature`).
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
    /// How long after a rotation the version before it (`AWSPREVIOUS`) stays accepted, counted
    /// from the current version's creation: at least a rotation's longest run, a sender's
    /// `secret_ttl_s` and `max_skew_s`, so no sender's cached value is refused; no longer,
    /// so a leaked value dies with it.
    #[serde(default = "defaults::previous_grace_s")]
    pub previous_grace_s: u64,
}

impl GuardContract {
    /// A contract for one route in `hmac` mode with every other field at its default: `POST
    /// path`, the Standard Webhooks headers, 300 s of skew, callers from `allowed_cidrs`, no
    /// trusted proxy (the TCP peer is the client) and no Secrets Manager id. For a service that
    /// guards a route of its own with `tollgate-guard`; Tollgate's own components load theirs
    /// from `deploy/<env>.toml` ([`crate::load`]).
    pub fn for_route(path: &str, allowed_cidrs: Vec<IpNet>) -> Self {
        Self {
            method: defaults::method(),
            path: path.to_owned(),
            mode: SigningMode::Hmac,
            static_header: defaults::static_header(),
            id_header: defaults::id_header(),
            timestamp_header: defaults::timestamp_header(),
            signature_header: defaults::signature_header(),
            secret_id: String::new(),
            secret_ttl_s: defaults::secret_ttl_s(),
            allowed_cidrs,
            trusted_proxies: Vec::new(),
            max_skew_s: defaults::max_skew_s(),
            previous_grace_s: defaults::previous_grace_s(),
        }
    }
}

/// How the sender proves it knows the shared secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum SigningMode {
    /// Standard Webhooks: HMAC-SHA256 over id, timestamp and body (see the crate docs).
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
    /// Apply `migrations/` at start, as the database owner (`db_owner_secret_id`, else the
    /// serving credentials), under PostgreSQL's advisory lock: safe with many tasks starting.
    pub migrate_on_start: bool,
    /// TLS to the database: `verify-full` (default: the server's certificate must chain to
    /// `db_ca_file` and name the host), `require` (encrypted, unverified) or `disable`. An
    /// `sslmode` in the URL wins.
    pub db_sslmode: DbSslMode,
    /// PEM file of the CAs the database's certificate must chain to; default: the Amazon RDS
    /// global bundle built into the api.
    pub db_ca_file: Option<std::path::PathBuf>,
    /// Secrets Manager id of the serving credentials, JSON `{"username","password"}` as RDS
    /// stores them; re-read every `secret_refresh_s` and at once on an authentication failure.
    pub db_secret_id: Option<String>,
    /// Secrets Manager id of the owner's credentials (the RDS-managed master secret), used only
    /// to migrate at start.
    pub db_owner_secret_id: Option<String>,
    /// Longest life of a pooled connection, so every connection soon uses rotated credentials.
    pub db_max_lifetime_s: u64,
    pub db_max_connections: u32,
    pub db_acquire_timeout_ms: u64,
    pub db_statement_timeout_ms: u64,
    /// Whole-request time limit.
    pub request_timeout_ms: u64,
    /// How long a client may take to send a request's headers, counted from the request's
    /// first byte: a slow or stalled header is cut here.
    pub header_read_timeout_ms: u64,
    /// How long a kept-alive connection may sit idle between requests. Longer than the ALB's
    /// idle timeout (`deploy.alb_idle_timeout_s`), so the ALB, which reuses idle connections,
    /// always closes first and never sends a request into a connection the api is closing.
    pub keep_alive_idle_s: u64,
    /// Largest accepted request body on the guarded route.
    pub body_limit_bytes: usize,
    /// Connections served at once; more wait in the listen backlog. With
    /// `max_header_bytes`, bounds what hostile connections can make the task hold
    /// ([`super::capacity::connection_memory_bytes`]).
    pub max_connections: u32,
    /// Largest request head (request line and headers) a connection may send: hyper's read
    /// buffer limit. 8 KiB to 64 KiB (the ALB forwards at most 64 KiB of headers).
    pub max_header_bytes: usize,
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
            db_sslmode: DbSslMode::VerifyFull,
            db_ca_file: None,
            db_secret_id: None,
            db_owner_secret_id: None,
            db_max_lifetime_s: 900,
            db_max_connections: 10,
            db_acquire_timeout_ms: 2_000,
            db_statement_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            keep_alive_idle_s: 75,
            body_limit_bytes: 16 * 1024,
            max_connections: 2_048,
            max_header_bytes: 32 * 1024,
            jwt_issuer: None,
            jwt_client_id: None,
            jwks_url: None,
        }
    }
}

/// How the api protects its database connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum DbSslMode {
    Disable,
    Require,
    #[default]
    VerifyFull,
}

impl TryFrom<String> for DbSslMode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "disable" => Ok(DbSslMode::Disable),
            "require" => Ok(DbSslMode::Require),
            "verify-full" => Ok(DbSslMode::VerifyFull),
            other => Err(format!(
                "`{other}` is not a TLS mode (use verify-full, require or disable)"
            )),
        }
    }
}

impl From<DbSslMode> for String {
    fn from(mode: DbSslMode) -> String {
        match mode {
            DbSslMode::Disable => "disable",
            DbSslMode::Require => "require",
            DbSslMode::VerifyFull => "verify-full",
        }
        .to_owned()
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
    /// How long the PostConfirmation trigger tries to register before it hands the
    /// registration to the retry queue instead: well inside Cognito's 5 s, so the person
    /// signing up never waits for, or sees, the api's trouble.
    pub trigger_budget_ms: u64,
    /// The SQS queue (URL) registrations the trigger could not finish wait in; the same
    /// function drains it. Rendered by Terraform; required outside `local`.
    pub retry_queue: Option<String>,
    /// The dead-letter queue (URL): registrations the api refuses for good go there at once,
    /// with the reason; the retry queue's redrive policy sends the ones that keep failing.
    pub dead_letter_queue: Option<String>,
    /// A queued registration's first retry waits this long; each later one twice the last, up
    /// to 15 minutes.
    pub retry_backoff_s: u64,
    /// The scheduled sweep registers confirmed users created this far back: longer than the
    /// schedule's interval, so consecutive sweeps overlap.
    pub sweep_window_s: u64,
    /// How long one sweep invocation works before it queues its cursor for the next.
    pub sweep_budget_ms: u64,
    /// A private CA's certificate (PEM) the functions trust for the api's HTTPS besides
    /// Mozilla's roots compiled into them: for an ALB whose certificate a private CA signed
    /// (AWS Private CA). Absent, the public roots alone.
    pub private_ca_pem: Option<String>,
}

impl Default for LambdaSettings {
    fn default() -> Self {
        Self {
            api_base_url: "http://127.0.0.1:8080".to_owned(),
            connect_timeout_ms: 1_000,
            attempt_timeout_ms: 1_500,
            deadline_margin_ms: 300,
            max_attempts: 4,
            trigger_budget_ms: 2_500,
            retry_queue: None,
            dead_letter_queue: None,
            retry_backoff_s: 30,
            sweep_window_s: 2 * 3_600,
            sweep_budget_ms: 40_000,
            private_ca_pem: None,
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
    /// S3 bucket holding the Terraform state (native S3 locking); absent for `local` (local
    /// state). Supplied by the user outside `local` ([`Settings::unfilled`]).
    pub state_bucket: Option<String>,
    /// The api's public name (`api.example.com`): the HTTPS listener's certificate is for it,
    /// and the Lambda calls `https://<domain>`. Supplied by the user outside `local`.
    pub domain: Option<String>,
    /// Route 53 hosted zone of `domain`: Terraform then requests the certificate (validated
    /// by DNS in this zone) and points the name at the ALB. Without it, `certificate_arn` is
    /// needed and the name is pointed at the ALB by hand.
    pub hosted_zone_id: Option<String>,
    /// ACM certificate of the HTTPS listener, when it is not requested in `hosted_zone_id`.
    pub certificate_arn: Option<String>,
    /// The ALB's idle timeout: it closes a connection idle this long, on both sides. The api's
    /// `keep_alive_idle_s` must be longer.
    pub alb_idle_timeout_s: u64,
    /// `arm64` or `x86_64`: the Lambda's architecture and the bootstrap build target.
    pub lambda_architecture: String,
    /// `arm64` or `x86_64`: the api task's CPU and the image's platform.
    pub api_architecture: String,
    /// `host[:port]` of the registry the api image is pushed to; absent: the environment's
    /// ECR repository (credentials from `GetAuthorizationToken`). `local` uses a registry on
    /// loopback.
    pub registry: Option<String>,
    pub db_instance_class: String,
    /// VPC range; `guard.trusted_proxies` must contain it (the ALB's nodes live there).
    pub vpc_cidr: IpNet,
    /// Fewest api tasks (autoscaling's floor; also the count a first deploy starts).
    pub api_min_count: u32,
    /// Most api tasks autoscaling starts (CPU and ALB requests per target).
    pub api_max_count: u32,
    /// Tasks ECS may run during a deployment, in percent of the running count (its
    /// `maximumPercent`, 100 to 200; ECS's default 200). The new tasks start before the old
    /// ones stop, each with its own pool: the connection budget counts them.
    pub deployment_maximum_percent: u32,
    /// Most concurrent invocations the retry queue's drain starts (2 to 1000): the trigger
    /// shares the function's concurrency, so the drain must leave it room.
    pub drain_maximum_concurrency: u32,
    /// RDS Multi-AZ (a standby in the other AZ); on in production.
    pub db_multi_az: bool,
    /// `single`: one NAT gateway and Elastic IP (the default; its AZ is a single point of
    /// failure for the private subnets' way out). `per-az`: one per AZ, every Elastic IP in
    /// the allowlist.
    pub nat_gateways: String,
    /// Days logs are kept: CloudWatch (api, Lambda, WAF, flow logs, RDS) and ALB access logs.
    pub log_retention_days: u32,
    /// AWS managed WAF rule groups on app traffic: `count` (observe) or `enforce` (block).
    pub waf_managed_rules: String,
    /// Days between the guard secret's scheduled rotations by its rotation function; 0: no
    /// schedule (local: moto cannot invoke a function; `cargo xtask rotate-secret` still works).
    pub secret_rotation_days: u32,
    /// SES identity ARN for the user pool's email; absent: Cognito's built-in sender.
    pub ses_source_arn: Option<String>,
    /// From address for SES email (with `ses_source_arn`).
    pub ses_from_address: Option<String>,
    /// Deletion protection on the database, ALB and user pool (off only for throwaway stacks).
    pub deletion_protection: bool,
    /// The sign-up function's timeout: Cognito still waits only 5 s (the trigger works to
    /// `lambda.trigger_budget_ms`), but draining the queue and sweeping take longer.
    pub lambda_timeout_s: u64,
    /// Receives of a queued registration before the retry queue moves it to the dead-letter
    /// queue.
    pub retry_max_receives: u32,
    /// Minutes between the scheduled sweeps (EventBridge Scheduler).
    pub sweep_every_minutes: u32,
    /// Minutes between heartbeats (EventBridge Scheduler): a synthetic sign-up through the whole
    /// path, alarmed when it fails or goes missing.
    pub heartbeat_every_minutes: u32,
    /// A heartbeat slower than this (sign-up to row read, milliseconds) raises the latency alarm.
    pub heartbeat_latency_alarm_ms: u32,
    /// An SNS topic the alarms notify; absent: the alarms are only in CloudWatch.
    pub alarm_topic_arn: Option<String>,
    /// Refusals of the guarded route in 5 minutes that raise the refusal alarm.
    pub refusal_alarm_threshold: u32,
}

impl Default for DeploySettings {
    fn default() -> Self {
        Self {
            state_bucket: None,
            domain: None,
            hosted_zone_id: None,
            certificate_arn: None,
            alb_idle_timeout_s: 60,
            lambda_architecture: "arm64".to_owned(),
            api_architecture: "arm64".to_owned(),
            registry: None,
            db_instance_class: "db.t4g.micro".to_owned(),
            vpc_cidr: IpNet::V4(
                ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(10, 20, 0, 0), 16).unwrap_or_default(),
            ),
            api_min_count: 2,
            api_max_count: 6,
            deployment_maximum_percent: 200,
            drain_maximum_concurrency: 5,
            db_multi_az: false,
            nat_gateways: "single".to_owned(),
            log_retention_days: 30,
            waf_managed_rules: "count".to_owned(),
            secret_rotation_days: 30,
            ses_source_arn: None,
            ses_from_address: None,
            deletion_protection: true,
            lambda_timeout_s: 60,
            retry_max_receives: 5,
            sweep_every_minutes: 60,
            heartbeat_every_minutes: 5,
            heartbeat_latency_alarm_ms: 5_000,
            alarm_topic_arn: None,
            refusal_alarm_threshold: 100,
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
    pub fn id_header() -> String {
        crate::signing::ID_HEADER.to_owned()
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
    pub fn previous_grace_s() -> u64 {
        3_600
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

impl GuardContract {
    /// The environment variables that reproduce this contract through [`load_for`](super::load_for)
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
            (key("id_header"), self.id_header.clone()),
            (key("timestamp_header"), self.timestamp_header.clone()),
            (key("signature_header"), self.signature_header.clone()),
            (key("secret_id"), self.secret_id.clone()),
            (key("secret_ttl_s"), self.secret_ttl_s.to_string()),
            (key("allowed_cidrs"), join(&self.allowed_cidrs)),
            (key("trusted_proxies"), join(&self.trusted_proxies)),
            (key("max_skew_s"), self.max_skew_s.to_string()),
            (key("previous_grace_s"), self.previous_grace_s.to_string()),
        ]
    }
}
