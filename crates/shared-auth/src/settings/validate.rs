//! What the schema alone cannot check: ranges, URLs, header names, and what an environment
//! outside `local` must have.

use super::load::ConfigError;
use super::{Component, DEFAULT_ENV, GuardContract, Settings, capacity};

impl Settings {
    /// Checks what the schema alone cannot, in the contract, `aws`, and the sections
    /// `component` reads.
    pub fn validate_for(&self, component: Component) -> Result<(), ConfigError> {
        self.guard.validate()?;
        self.check_previous_grace()?;
        if component != Component::Deploy {
            // A running component must know whom to allow. Deploying does not: the NAT
            // gateway's Elastic IP is added from the Terraform outputs when rendering.
            self.guard.require_allowlist(&self.env)?;
        }
        if let Some(url) = &self.aws.endpoint_url {
            check_http_url("aws.endpoint_url", url, false)?;
        }
        match component {
            Component::Api => self.validate_api(),
            Component::Lambda => {
                self.validate_lambda()?;
                self.require_https_api()?;
                self.require_retry_queue()
            }
            Component::Rotation => {
                self.validate_lambda()?;
                self.require_https_api()
            }
            Component::Deploy => {
                self.validate_api()?;
                self.validate_lambda()?;
                self.validate_deploy()
            }
        }
    }

    /// `AWSPREVIOUS` must outlive every sender's copy: the rotation's longest run (the value
    /// is promoted at its end), then a sender's cache, then a signature's allowed skew.
    fn check_previous_grace(&self) -> Result<(), ConfigError> {
        let guard = &self.guard;
        let rotation = crate::rotation::longest(self.api.secret_refresh_s).as_secs();
        let needed = rotation + guard.secret_ttl_s + guard.max_skew_s;
        if guard.previous_grace_s < needed {
            return Err(ConfigError::invalid(
                "guard.previous_grace_s",
                format!(
                    "{} s is shorter than a rotation's longest run ({rotation} s, from \
                     api.secret_refresh_s) + guard.secret_ttl_s ({}) + guard.max_skew_s ({}) = \
                     {needed} s: a sender's cached secret would be refused after a rotation",
                    guard.previous_grace_s, guard.secret_ttl_s, guard.max_skew_s
                ),
            ));
        }
        Ok(())
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
            ("api.keep_alive_idle_s", api.keep_alive_idle_s),
            ("api.body_limit_bytes", api.body_limit_bytes as u64),
            ("api.db_max_lifetime_s", api.db_max_lifetime_s),
            ("api.max_connections", u64::from(api.max_connections)),
        ])?;
        self.check_connection_memory()?;
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

    /// Hostile connections, each holding the largest unfinished head, must fit in half the
    /// task's memory.
    fn check_connection_memory(&self) -> Result<(), ConfigError> {
        let api = &self.api;
        if !(8 * 1024..=64 * 1024).contains(&api.max_header_bytes) {
            return Err(ConfigError::invalid(
                "api.max_header_bytes",
                format!(
                    "{} is outside 8192..=65536 (hyper's smallest buffer; the ALB's largest head)",
                    api.max_header_bytes
                ),
            ));
        }
        let worst = capacity::connection_memory_bytes(api.max_connections, api.max_header_bytes);
        let allowed =
            capacity::API_TASK_MEMORY_MIB * 1024 * 1024 * capacity::CONNECTION_MEMORY_PERCENT / 100;
        if worst > allowed {
            return Err(ConfigError::invalid(
                "api.max_connections",
                format!(
                    "{} connections × ({} header bytes + {} overhead) = {} MiB, more than {} % of \
                     the task's {} MiB: lower api.max_connections or api.max_header_bytes",
                    api.max_connections,
                    api.max_header_bytes,
                    capacity::CONNECTION_OVERHEAD_BYTES,
                    worst / (1024 * 1024),
                    capacity::CONNECTION_MEMORY_PERCENT,
                    capacity::API_TASK_MEMORY_MIB
                ),
            ));
        }
        Ok(())
    }

    fn validate_lambda(&self) -> Result<(), ConfigError> {
        let lambda = &self.lambda;
        positive(&[
            ("lambda.connect_timeout_ms", lambda.connect_timeout_ms),
            ("lambda.attempt_timeout_ms", lambda.attempt_timeout_ms),
            ("lambda.max_attempts", u64::from(lambda.max_attempts)),
            ("lambda.retry_backoff_s", lambda.retry_backoff_s),
            ("lambda.sweep_window_s", lambda.sweep_window_s),
            ("lambda.sweep_budget_ms", lambda.sweep_budget_ms),
        ])?;
        if !(100..=4_000).contains(&lambda.trigger_budget_ms) {
            return Err(ConfigError::invalid(
                "lambda.trigger_budget_ms",
                format!(
                    "{} ms: the trigger must hand off to the queue well inside Cognito's 5 s (100 to 4000)",
                    lambda.trigger_budget_ms
                ),
            ));
        }
        for (key, url) in [
            ("lambda.retry_queue", &lambda.retry_queue),
            ("lambda.dead_letter_queue", &lambda.dead_letter_queue),
        ] {
            if let Some(url) = url {
                check_http_url(key, url, false)?;
            }
        }
        if let Some(pem) = &lambda.private_ca_pem
            && !(pem.contains("-----BEGIN CERTIFICATE-----")
                && pem.contains("-----END CERTIFICATE-----"))
        {
            return Err(ConfigError::invalid(
                "lambda.private_ca_pem",
                "is not a PEM certificate (-----BEGIN CERTIFICATE----- … -----END CERTIFICATE-----)",
            ));
        }
        check_http_url("lambda.api_base_url", &lambda.api_base_url, true)
    }

    /// The running Lambda outside `local` hands what it cannot register to a queue: without
    /// one a confirmed sign-up could be lost (deploy renders it from the stack).
    fn require_retry_queue(&self) -> Result<(), ConfigError> {
        if self.env != DEFAULT_ENV && self.lambda.retry_queue.is_none() {
            return Err(ConfigError::invalid(
                "lambda.retry_queue",
                format!(
                    "is not set; outside `{DEFAULT_ENV}` the trigger hands what it cannot register to it (deploy renders its URL)"
                ),
            ));
        }
        Ok(())
    }

    /// The running Lambda outside `local` calls the api over HTTPS only (deploy renders the
    /// URL from `deploy.domain`; the file leaves it out).
    fn require_https_api(&self) -> Result<(), ConfigError> {
        let lambda = &self.lambda;
        if self.env != DEFAULT_ENV && !lambda.api_base_url.starts_with("https://") {
            return Err(ConfigError::invalid(
                "lambda.api_base_url",
                format!(
                    "`{}` is not HTTPS: outside `{DEFAULT_ENV}` the Lambda calls the ALB's HTTPS \
                     listener (deploy renders https://<deploy.domain>)",
                    lambda.api_base_url
                ),
            ));
        }
        Ok(())
    }

    fn validate_deploy(&self) -> Result<(), ConfigError> {
        self.check_deploy_choices()?;
        self.check_deploy_numbers()?;
        self.check_heartbeat()?;
        self.check_supplied_formats()?;
        self.check_keep_alive()?;
        self.check_connection_budget()?;
        if self.env != DEFAULT_ENV
            && !self
                .guard
                .trusted_proxies
                .iter()
                .any(|net| net.contains(&self.deploy.vpc_cidr))
        {
            return Err(ConfigError::invalid(
                "guard.trusted_proxies",
                format!(
                    "must contain deploy.vpc_cidr ({}): the ALB's X-Forwarded-For entries come from there",
                    self.deploy.vpc_cidr
                ),
            ));
        }
        Ok(())
    }

    /// The settings that name one of a few choices.
    fn check_deploy_choices(&self) -> Result<(), ConfigError> {
        let d = &self.deploy;
        let choices: [(&str, &str, &[&str]); 4] = [
            (
                "deploy.lambda_architecture",
                &d.lambda_architecture,
                &["arm64", "x86_64"],
            ),
            (
                "deploy.api_architecture",
                &d.api_architecture,
                &["arm64", "x86_64"],
            ),
            (
                "deploy.waf_managed_rules",
                &d.waf_managed_rules,
                &["count", "enforce"],
            ),
            (
                "deploy.nat_gateways",
                &d.nat_gateways,
                &["single", "per-az"],
            ),
        ];
        for (key, value, allowed) in choices {
            if !allowed.contains(&value) {
                return Err(ConfigError::invalid(
                    key,
                    format!("`{value}` is not one of {}", allowed.join(", ")),
                ));
            }
        }
        if let Some(registry) = &d.registry
            && (registry.is_empty()
                || registry.contains('/')
                || registry.contains(char::is_whitespace))
        {
            return Err(ConfigError::invalid(
                "deploy.registry",
                format!("`{registry}` is not a registry host[:port] (no scheme, no path)"),
            ));
        }
        if d.ses_source_arn.is_some() != d.ses_from_address.is_some() {
            return Err(ConfigError::invalid(
                "deploy.ses_from_address",
                "ses_source_arn and ses_from_address go together (the identity and its From address)",
            ));
        }
        Ok(())
    }

    /// The heartbeat's schedule and its latency alarm.
    fn check_heartbeat(&self) -> Result<(), ConfigError> {
        let d = &self.deploy;
        if !(1..=60).contains(&d.heartbeat_every_minutes) {
            return Err(ConfigError::invalid(
                "deploy.heartbeat_every_minutes",
                format!(
                    "{}: 1 to 60 (its alarm reads one period per heartbeat, and a missing one breaches)",
                    d.heartbeat_every_minutes
                ),
            ));
        }
        if d.heartbeat_latency_alarm_ms < 1_000 {
            return Err(ConfigError::invalid(
                "deploy.heartbeat_latency_alarm_ms",
                format!(
                    "{} ms: at least 1000 (a sign-up, a confirmation and a read-back take hundreds of milliseconds on a healthy path)",
                    d.heartbeat_latency_alarm_ms
                ),
            ));
        }
        Ok(())
    }

    fn check_deploy_numbers(&self) -> Result<(), ConfigError> {
        let d = &self.deploy;
        if d.secret_rotation_days > 1000 {
            return Err(ConfigError::invalid(
                "deploy.secret_rotation_days",
                format!(
                    "{} days: Secrets Manager schedules 1 to 1000 (0 turns the schedule off)",
                    d.secret_rotation_days
                ),
            ));
        }
        if d.api_min_count == 0 || d.api_max_count < d.api_min_count {
            return Err(ConfigError::invalid(
                "deploy.api_max_count",
                format!(
                    "{} tasks at most and {} at least: need 1 ≤ api_min_count ≤ api_max_count",
                    d.api_max_count, d.api_min_count
                ),
            ));
        }
        if !(10..=900).contains(&d.lambda_timeout_s)
            || d.lambda_timeout_s * 1_000 <= self.lambda.sweep_budget_ms + 5_000
        {
            return Err(ConfigError::invalid(
                "deploy.lambda_timeout_s",
                format!(
                    "{} s: Lambda allows 10 to 900 here, and it must exceed lambda.sweep_budget_ms ({} ms) by 5 s",
                    d.lambda_timeout_s, self.lambda.sweep_budget_ms
                ),
            ));
        }
        if d.retry_max_receives == 0 || d.retry_max_receives > 1_000 {
            return Err(ConfigError::invalid(
                "deploy.retry_max_receives",
                format!(
                    "{}: SQS's redrive policy takes 1 to 1000",
                    d.retry_max_receives
                ),
            ));
        }
        let interval_s = u64::from(d.sweep_every_minutes) * 60;
        if d.sweep_every_minutes == 0 || self.lambda.sweep_window_s < interval_s + 300 {
            return Err(ConfigError::invalid(
                "lambda.sweep_window_s",
                format!(
                    "{} s must exceed the sweep's interval (deploy.sweep_every_minutes = {}) by 5 minutes, so consecutive sweeps overlap",
                    self.lambda.sweep_window_s, d.sweep_every_minutes
                ),
            ));
        }
        if !(100..=200).contains(&d.deployment_maximum_percent) {
            return Err(ConfigError::invalid(
                "deploy.deployment_maximum_percent",
                format!(
                    "{} %: ECS's rolling deployments take 100 to 200 here (the tasks it may start beside the running ones)",
                    d.deployment_maximum_percent
                ),
            ));
        }
        if !(2..=1000).contains(&d.drain_maximum_concurrency) {
            return Err(ConfigError::invalid(
                "deploy.drain_maximum_concurrency",
                format!(
                    "{}: an SQS event source mapping's maximum concurrency is 2 to 1000",
                    d.drain_maximum_concurrency
                ),
            ));
        }
        if !(1..=4000).contains(&d.alb_idle_timeout_s) {
            return Err(ConfigError::invalid(
                "deploy.alb_idle_timeout_s",
                format!("{} s: the ALB accepts 1 to 4000", d.alb_idle_timeout_s),
            ));
        }
        Ok(())
    }

    /// The user's values, when given, must have their shapes (missing ones are
    /// [`Settings::unfilled`]'s to report).
    fn check_supplied_formats(&self) -> Result<(), ConfigError> {
        let d = &self.deploy;
        if let Some(domain) = d.domain.as_deref().filter(|s| !s.is_empty())
            && !is_hostname(domain)
        {
            return Err(ConfigError::invalid(
                "deploy.domain",
                format!(
                    "`{domain}` is not a DNS name such as api.example.com (no scheme, no path)"
                ),
            ));
        }
        if let Some(zone) = d.hosted_zone_id.as_deref().filter(|s| !s.is_empty())
            && !(zone.len() <= 32
                && zone
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
        {
            return Err(ConfigError::invalid(
                "deploy.hosted_zone_id",
                format!(
                    "`{zone}` is not a Route 53 hosted zone id (upper-case letters and digits, such as Z0123456789ABCDEFGHIJ; no /hostedzone/ prefix)"
                ),
            ));
        }
        if let Some(arn) = d.certificate_arn.as_deref().filter(|s| !s.is_empty())
            && !(arn.starts_with("arn:aws")
                && arn.contains(":acm:")
                && arn.contains(":certificate/"))
        {
            return Err(ConfigError::invalid(
                "deploy.certificate_arn",
                format!(
                    "`{arn}` is not an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>)"
                ),
            ));
        }
        Ok(())
    }

    /// The ALB reuses idle connections to its targets, so a target must not close one first
    /// (Elastic Load Balancing: "we also recommend that you configure the idle timeout of your
    /// application to be larger than the idle timeout configured for the load balancer").
    fn check_keep_alive(&self) -> Result<(), ConfigError> {
        let (api, alb) = (self.api.keep_alive_idle_s, self.deploy.alb_idle_timeout_s);
        if api < alb + KEEP_ALIVE_MARGIN_S {
            return Err(ConfigError::invalid(
                "api.keep_alive_idle_s",
                format!(
                    "{api} s is not longer than the ALB's idle timeout (deploy.alb_idle_timeout_s = {alb} s) \
                     by {KEEP_ALIVE_MARGIN_S} s: the ALB would send requests into connections the api is closing (502)"
                ),
            ));
        }
        Ok(())
    }

    /// Every api task's pool at the most tasks, plus the named headroom, must fit the
    /// instance class's `max_connections` ([`super::capacity`]).
    fn check_connection_budget(&self) -> Result<(), ConfigError> {
        let class = self.deploy.db_instance_class.as_str();
        let Some(available) = capacity::for_api_tasks(class) else {
            let known: Vec<&str> = capacity::CLASSES.iter().map(|(c, _)| *c).collect();
            return Err(ConfigError::invalid(
                "deploy.db_instance_class",
                format!(
                    "`{class}` is not in the connection budget's table (shared-auth settings/capacity.rs): use one of {}",
                    known.join(", ")
                ),
            ));
        };
        let d = &self.deploy;
        let (tasks, pool) = (
            capacity::tasks_during_deployment(d.api_max_count, d.deployment_maximum_percent),
            self.api.db_max_connections,
        );
        let needed = u64::from(tasks) * u64::from(pool);
        if needed > u64::from(available) {
            let headroom: Vec<String> = capacity::HEADROOM
                .iter()
                .map(|(what, n)| format!("{n} for {what}"))
                .collect();
            return Err(ConfigError::invalid(
                "deploy.db_instance_class",
                format!(
                    "the connection budget does not fit: during a deployment ECS runs up to \
                     deploy.api_max_count × deploy.deployment_maximum_percent = {} × {} % = {tasks} \
                     tasks, × api.db_max_connections {pool} = {needed} connections, but {class} \
                     leaves {available} for the api (max_connections {} less {} superuser slots, \
                     {}); lower one of them, or choose a larger class",
                    d.api_max_count,
                    d.deployment_maximum_percent,
                    capacity::max_connections(class).unwrap_or_default(),
                    capacity::SUPERUSER_RESERVED,
                    headroom.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

/// How much longer than the ALB's idle timeout the api keeps an idle connection.
pub const KEEP_ALIVE_MARGIN_S: u64 = 5;

/// A DNS name: dot-separated labels of letters, digits and `-`, at least two labels.
fn is_hostname(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').count() >= 2
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
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
    /// A running component outside `local` must have someone to allow: an empty allowlist
    /// would refuse every registration, and means the deploy-time address never arrived.
    pub fn require_allowlist(&self, env: &str) -> Result<(), ConfigError> {
        if self.allowed_cidrs.is_empty() && env != DEFAULT_ENV {
            return Err(ConfigError::invalid(
                "guard.allowed_cidrs",
                format!(
                    "is empty; outside `{DEFAULT_ENV}` it must hold the NAT gateway's Elastic IP, which `cargo xtask deploy` renders into each component's environment"
                ),
            ));
        }
        Ok(())
    }

    /// Checks the contract's own values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_route()?;
        self.check_headers()?;
        self.check_secret_and_time()?;
        self.check_networks()
    }

    /// The guarded route: an upper-case method, a path WAF compares the way the api routes.
    fn check_route(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// Four distinct, lower-case header names of the guard's own.
    fn check_headers(&self) -> Result<(), ConfigError> {
        let headers = [
            ("guard.static_header", &self.static_header),
            ("guard.id_header", &self.id_header),
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
        let mut names: Vec<&str> = headers.iter().map(|(_, n)| n.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        if names.len() != headers.len() {
            return Err(ConfigError::invalid(
                "guard.static_header",
                "the static, id, timestamp and signature headers must be four different names",
            ));
        }
        Ok(())
    }

    fn check_secret_and_time(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// Neither network list may cover every address, which would turn its check off.
    fn check_networks(&self) -> Result<(), ConfigError> {
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
