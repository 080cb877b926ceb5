//! What the schema alone cannot check: ranges, URLs, header names, and what an environment
//! outside `local` must have.

use super::load::ConfigError;
use super::{Component, DEFAULT_ENV, GuardContract, Settings};

impl Settings {
    /// Checks what the schema alone cannot, in the contract, `aws`, and the sections
    /// `component` reads.
    pub fn validate_for(&self, component: Component) -> Result<(), ConfigError> {
        self.guard.validate(&self.env)?;
        if let Some(url) = &self.aws.endpoint_url {
            check_http_url("aws.endpoint_url", url, false)?;
        }
        match component {
            Component::Api => self.validate_api(),
            Component::Lambda => self.validate_lambda(),
            Component::Deploy => {
                self.validate_api()?;
                self.validate_lambda()?;
                self.validate_deploy()
            }
        }
    }

    fn validate_api(&self) -> Result<(), ConfigError> {
        let api = &self.api;
        positive(&[
            ("api.secret_refresh_s", api.secret_refresh_s),
            ("api.db_max_connections", u64::from(api.db_max_connections)),
            ("api.db_acquire_timeout_ms", api.db_acquire_timeout_ms),
            ("api.db_statement_timeout_ms", api.db_statement_timeout_ms),
            ("api.request_timeout_ms", api.request_timeout_ms),
            ("api.header_read_timeout_ms", api.header_read_timeout_ms),
            ("api.body_limit_bytes", api.body_limit_bytes as u64),
            ("api.db_max_lifetime_s", api.db_max_lifetime_s),
        ])?;
        if let Some(file) = &api.db_ca_file
            && !file.is_file()
        {
            return Err(ConfigError::invalid(
                "api.db_ca_file",
                format!("{} is not a readable file", file.display()),
            ));
        }
        for (key, value) in [
            ("api.jwt_issuer", &api.jwt_issuer),
            ("api.jwks_url", &api.jwks_url),
        ] {
            if let Some(url) = value {
                check_http_url(key, url, false)?;
            }
        }
        Ok(())
    }

    fn validate_lambda(&self) -> Result<(), ConfigError> {
        let lambda = &self.lambda;
        positive(&[
            ("lambda.connect_timeout_ms", lambda.connect_timeout_ms),
            ("lambda.attempt_timeout_ms", lambda.attempt_timeout_ms),
            ("lambda.max_attempts", u64::from(lambda.max_attempts)),
        ])?;
        check_http_url("lambda.api_base_url", &lambda.api_base_url, true)
    }

    fn validate_deploy(&self) -> Result<(), ConfigError> {
        let deploy = &self.deploy;
        for (key, value) in [
            ("deploy.lambda_architecture", &deploy.lambda_architecture),
            ("deploy.api_architecture", &deploy.api_architecture),
        ] {
            if !matches!(value.as_str(), "arm64" | "x86_64") {
                return Err(ConfigError::invalid(
                    key,
                    format!("`{value}` is neither arm64 nor x86_64"),
                ));
            }
        }
        if !matches!(deploy.waf_managed_rules.as_str(), "count" | "enforce") {
            return Err(ConfigError::invalid(
                "deploy.waf_managed_rules",
                format!(
                    "`{}` is neither count nor enforce",
                    deploy.waf_managed_rules
                ),
            ));
        }
        if !matches!(deploy.nat_gateways.as_str(), "single" | "per-az") {
            return Err(ConfigError::invalid(
                "deploy.nat_gateways",
                format!("`{}` is neither single nor per-az", deploy.nat_gateways),
            ));
        }
        if deploy.secret_rotation_days > 1000 {
            return Err(ConfigError::invalid(
                "deploy.secret_rotation_days",
                format!(
                    "{} days: Secrets Manager schedules 1 to 1000 (0 turns the schedule off)",
                    deploy.secret_rotation_days
                ),
            ));
        }
        if deploy.api_min_count == 0 || deploy.api_max_count < deploy.api_min_count {
            return Err(ConfigError::invalid(
                "deploy.api_max_count",
                format!(
                    "{} tasks at most and {} at least: need 1 ≤ api_min_count ≤ api_max_count",
                    deploy.api_max_count, deploy.api_min_count
                ),
            ));
        }
        if deploy.ses_source_arn.is_some() != deploy.ses_from_address.is_some() {
            return Err(ConfigError::invalid(
                "deploy.ses_from_address",
                "ses_source_arn and ses_from_address go together (the identity and its From address)",
            ));
        }
        if let Some(registry) = &deploy.registry
            && (registry.is_empty()
                || registry.contains('/')
                || registry.contains(char::is_whitespace))
        {
            return Err(ConfigError::invalid(
                "deploy.registry",
                format!("`{registry}` is not a registry host[:port] (no scheme, no path)"),
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

/// Every value must be greater than zero.
fn positive(values: &[(&str, u64)]) -> Result<(), ConfigError> {
    match values.iter().find(|(_, v)| *v == 0) {
        Some((key, _)) => Err(ConfigError::invalid(key, "must be greater than zero")),
        None => Ok(()),
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
            // By total address space, not by prefix: 0.0.0.0/1 + 128.0.0.0/1 is 0.0.0.0/0.
            if let Some(net) = ipnet::IpNet::aggregate(nets)
                .into_iter()
                .find(|n| n.prefix_len() == 0)
            {
                let listed: Vec<String> = nets.iter().map(ToString::to_string).collect();
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "`{}` together cover every address ({net}), which turns the check off",
                        listed.join(",")
                    ),
                ));
            }
        }
        Ok(())
    }
}
