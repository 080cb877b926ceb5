//! Rendering one `Settings` value into what Terraform gives each deployable.
//!
//! Terraform merges (infra/locals.tf, post_confirm.tf, service.tf):
//! `contract_env + {ALLOWED_CIDRS = NAT EIP/32 + extra}` + the side's own variables. Both
//! deployables get the same contract part, computed once; [`deployed_envs`] reproduces that
//! merge so a test can prove both ends parse back to one contract.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use shared_auth::Settings;

/// The contract variable Terraform fills in from the NAT EIP.
pub const ALLOWED_CIDRS_VAR: &str = "TOLLGATE__GUARD__ALLOWED_CIDRS";

/// The api's PostgreSQL login (a member of `tollgate_app`), as Terraform and xtask name it.
pub const DB_APP_LOGIN: &str = "tollgate_api";

/// The secret holding the api's serving credentials: xtask writes its first version before
/// the stack has outputs, so the name is made here and given to Terraform.
pub fn db_app_secret_name(env: &str) -> String {
    format!("tollgate-{env}/db-app")
}

pub type Env = BTreeMap<String, String>;

/// The contract's `TOLLGATE__GUARD__*` variables, without the allowlist (Terraform adds it).
pub fn contract_env(settings: &Settings) -> Env {
    settings
        .guard
        .to_env_vars()
        .into_iter()
        .filter(|(k, _)| k != ALLOWED_CIDRS_VAR)
        .collect()
}

fn aws_env(settings: &Settings) -> Env {
    let mut env = Env::new();
    if let Some(region) = &settings.aws.region {
        env.insert("TOLLGATE__AWS__REGION".into(), region.clone());
    }
    if let Some(url) = &settings.aws.endpoint_url {
        env.insert("TOLLGATE__AWS__ENDPOINT_URL".into(), url.clone());
    }
    env
}

/// The Lambda's own variables.
pub fn lambda_env(settings: &Settings) -> Env {
    let l = &settings.lambda;
    let mut env = aws_env(settings);
    env.extend(
        [
            ("API_BASE_URL", settings.public_base_url()),
            ("CONNECT_TIMEOUT_MS", l.connect_timeout_ms.to_string()),
            ("ATTEMPT_TIMEOUT_MS", l.attempt_timeout_ms.to_string()),
            ("DEADLINE_MARGIN_MS", l.deadline_margin_ms.to_string()),
            ("MAX_ATTEMPTS", l.max_attempts.to_string()),
            ("TRIGGER_BUDGET_MS", l.trigger_budget_ms.to_string()),
            ("RETRY_BACKOFF_S", l.retry_backoff_s.to_string()),
            ("SWEEP_WINDOW_S", l.sweep_window_s.to_string()),
            ("SWEEP_BUDGET_MS", l.sweep_budget_ms.to_string()),
        ]
        .map(|(k, v)| (format!("TOLLGATE__LAMBDA__{k}"), v)),
    );
    if let Some(pem) = &l.private_ca_pem {
        env.insert("TOLLGATE__LAMBDA__PRIVATE_CA_PEM".into(), pem.clone());
    }
    env
}

/// The rotation function's variables: the Lambda's (it reaches the api the same way) and the
/// api's refresh interval, which `setSecret` waits out.
pub fn rotation_env(settings: &Settings) -> Env {
    let mut env = lambda_env(settings);
    env.insert(
        "TOLLGATE__API__SECRET_REFRESH_S".to_owned(),
        settings.api.secret_refresh_s.to_string(),
    );
    env
}

/// The api task's own variables (Terraform adds the listen address, JWT issuer and client,
/// `DATABASE_URL` without credentials, the serving secret's id, and `migrate_on_start = false`:
/// the migration task of `infra/migrate.tf` migrates).
pub fn api_env(settings: &Settings) -> Env {
    let a = &settings.api;
    let mut env = aws_env(settings);
    env.extend(
        [
            ("SECRET_SOURCE", "aws".to_owned()),
            ("SECRET_REFRESH_S", a.secret_refresh_s.to_string()),
            ("DB_SSLMODE", String::from(a.db_sslmode)),
            ("DB_MAX_LIFETIME_S", a.db_max_lifetime_s.to_string()),
            ("DB_MAX_CONNECTIONS", a.db_max_connections.to_string()),
            ("DB_ACQUIRE_TIMEOUT_MS", a.db_acquire_timeout_ms.to_string()),
            (
                "DB_STATEMENT_TIMEOUT_MS",
                a.db_statement_timeout_ms.to_string(),
            ),
            ("REQUEST_TIMEOUT_MS", a.request_timeout_ms.to_string()),
            (
                "HEADER_READ_TIMEOUT_MS",
                a.header_read_timeout_ms.to_string(),
            ),
            ("KEEP_ALIVE_IDLE_S", a.keep_alive_idle_s.to_string()),
            ("BODY_LIMIT_BYTES", a.body_limit_bytes.to_string()),
        ]
        .map(|(k, v)| (format!("TOLLGATE__API__{k}"), v)),
    );
    env
}

/// The name a stack on a local AWS is given when the contract names no domain.
pub const LOCAL_DOMAIN: &str = "api.tollgate.local";

/// Terraform's input variables for an environment, deploying `lambda_zip` and the api image
/// `api_image` (a reference by digest).
pub fn tfvars(settings: &Settings, lambda_zip: &Path, api_image: &str) -> Value {
    let mut vars = serde_json::Map::new();
    for part in [
        stack_vars(settings),
        function_vars(settings, lambda_zip),
        service_vars(settings, api_image),
        edge_vars(settings),
    ] {
        if let Value::Object(part) = part {
            vars.extend(part);
        }
    }
    Value::Object(vars)
}

/// The environment, its network, names and database.
fn stack_vars(settings: &Settings) -> Value {
    let d = &settings.deploy;
    json!({
        "env": settings.env,
        "region": settings.aws.region.clone().unwrap_or_else(|| "ap-northeast-1".into()),
        "aws_endpoint_url": settings.aws.endpoint_url,
        "vpc_cidr": d.vpc_cidr.to_string(),
        "nat_gateways": d.nat_gateways,
        "certificate_arn": d.certificate_arn,
        "domain_name": d.domain.clone().unwrap_or_else(|| LOCAL_DOMAIN.to_owned()),
        "hosted_zone_id": d.hosted_zone_id,
        "db_app_secret_name": db_app_secret_name(&settings.env),
        "db_app_username": DB_APP_LOGIN,
        "db_instance_class": d.db_instance_class,
        "db_multi_az": d.db_multi_az,
        "deletion_protection": d.deletion_protection,
        "log_retention_days": d.log_retention_days,
        "alarm_topic_arn": d.alarm_topic_arn,
        "ses_source_arn": d.ses_source_arn,
        "ses_from_address": d.ses_from_address,
    })
}

/// The two functions, their queue and their schedules.
fn function_vars(settings: &Settings, lambda_zip: &Path) -> Value {
    let d = &settings.deploy;
    json!({
        "lambda_architecture": d.lambda_architecture,
        "lambda_timeout_s": d.lambda_timeout_s,
        "lambda_zip": lambda_zip.display().to_string(),
        "lambda_env": lambda_env(settings),
        "retry_max_receives": d.retry_max_receives,
        "drain_maximum_concurrency": d.drain_maximum_concurrency,
        "sweep_every_minutes": d.sweep_every_minutes,
        "sweep_window_s": settings.lambda.sweep_window_s,
        "heartbeat_every_minutes": d.heartbeat_every_minutes,
        "heartbeat_latency_alarm_ms": d.heartbeat_latency_alarm_ms,
        "rotation_zip": crate::support::artifacts::rotation_zip(lambda_zip).display().to_string(),
        "rotation_env": rotation_env(settings),
        // The longest step may wait `step_budget`; the function gets that plus room to report.
        "rotation_timeout_s": shared_auth::rotation::function_timeout(settings.api.secret_refresh_s).as_secs(),
        "secret_rotation_days": d.secret_rotation_days,
    })
}

/// The api's service.
fn service_vars(settings: &Settings, api_image: &str) -> Value {
    let d = &settings.deploy;
    json!({
        "api_image": api_image,
        "api_architecture": d.api_architecture,
        "api_port": settings.api.listen.port(),
        "api_task_memory_mib": shared_auth::settings::capacity::API_TASK_MEMORY_MIB,
        "api_min_count": d.api_min_count,
        "api_max_count": d.api_max_count,
        "deployment_maximum_percent": d.deployment_maximum_percent,
        "api_env": api_env(settings),
        "contract_env": contract_env(settings),
    })
}

/// The ALB, the WAF and what they check.
fn edge_vars(settings: &Settings) -> Value {
    let (d, guard) = (&settings.deploy, &settings.guard);
    json!({
        "alb_idle_timeout_s": d.alb_idle_timeout_s,
        "waf_managed_rules": d.waf_managed_rules,
        "refusal_alarm_threshold": d.refusal_alarm_threshold,
        "credential_headers": guard.credential_headers(),
        "guard_secret_name": guard.secret_id,
        "guard_path": guard.path,
        "guard_mode": guard.mode.to_string(),
        "guard_timestamp_header": guard.timestamp_header.to_ascii_lowercase(),
        "guard_signature_header": guard.signature_header.to_ascii_lowercase(),
        "extra_allowed_cidrs": guard.allowed_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// The environments the Lambda and the task end up with, for a NAT gateway at `nat_eip`
/// (the merge Terraform does; `verify` checks the real one).
#[cfg(test)]
pub fn deployed_envs(settings: &Settings, nat_eip: &str) -> (Env, Env) {
    let mut allowed = vec![format!("{nat_eip}/32")];
    allowed.extend(settings.guard.allowed_cidrs.iter().map(ToString::to_string));
    let mut contract = contract_env(settings);
    contract.insert(ALLOWED_CIDRS_VAR.into(), allowed.join(","));
    let with_env = |side: Env| {
        let mut env = contract.clone();
        env.extend(side);
        env.insert("TOLLGATE_ENV".into(), settings.env.clone());
        env
    };
    // infra/post_confirm.tf adds the queues it creates.
    let mut lambda = lambda_env(settings);
    let queue =
        |name: &str| format!("https://sqs.ap-northeast-1.amazonaws.com/123456789012/{name}");
    lambda.insert(
        "TOLLGATE__LAMBDA__RETRY_QUEUE".into(),
        queue("registrations"),
    );
    lambda.insert(
        "TOLLGATE__LAMBDA__DEAD_LETTER_QUEUE".into(),
        queue("registrations-dead"),
    );
    (with_env(lambda), with_env(api_env(settings)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(env: &str) -> Settings {
        let mut vars = HashMap::from([
            ("TOLLGATE_ENV".to_owned(), env.to_owned()),
            (ALLOWED_CIDRS_VAR.to_owned(), "198.51.100.0/28".to_owned()),
        ]);
        if env != "local" {
            vars.insert(
                "TOLLGATE__DEPLOY__DOMAIN".into(),
                format!("api.{env}.example.com"),
            );
        }
        shared_auth::load_for(shared_auth::Component::Deploy, &vars)
            .expect("deploy/<env>.toml loads")
    }

    /// The rendered environment loaded as the running `component` loads it.
    fn reload(env: &Env, component: shared_auth::Component) -> Settings {
        let vars: HashMap<String, String> = env.clone().into_iter().collect();
        shared_auth::load_for(component, &vars).expect("rendered environment loads")
    }

    #[test]
    fn both_deployables_parse_back_to_one_contract_for_every_environment() {
        for env in ["local", "staging", "production"] {
            let settings = settings(env);
            let (lambda, api) = deployed_envs(&settings, "203.0.113.7");
            let from_lambda = reload(&lambda, shared_auth::Component::Lambda);
            // The rotation function's own environment (the contract, the Lambda's variables
            // without the sign-up function's queues) starts it.
            let mut rotation = lambda.clone();
            rotation.retain(|k, _| !k.ends_with("_QUEUE"));
            rotation.extend(rotation_env(&settings));
            let from_rotation = reload(&rotation, shared_auth::Component::Rotation);
            assert_eq!(
                from_rotation.guard, from_lambda.guard,
                "{env}: the rotation's contract"
            );
            let from_api = reload(&api, shared_auth::Component::Api);
            assert_eq!(from_lambda.guard, from_api.guard, "{env}");
            let mut expected = settings.guard.clone();
            expected
                .allowed_cidrs
                .insert(0, "203.0.113.7/32".parse().expect("cidr"));
            assert_eq!(
                from_lambda.guard, expected,
                "{env}: the contract plus the NAT EIP"
            );
            let mut expected_lambda = settings.lambda.clone();
            expected_lambda.api_base_url = settings.public_base_url();
            expected_lambda.retry_queue = from_lambda.lambda.retry_queue.clone();
            expected_lambda.dead_letter_queue = from_lambda.lambda.dead_letter_queue.clone();
            assert!(from_lambda.lambda.retry_queue.is_some(), "{env}: the queue");
            assert_eq!(
                from_lambda.lambda, expected_lambda,
                "{env}: the Lambda's own section"
            );
            assert_eq!(
                from_api.api.secret_source,
                shared_auth::SecretSource::Aws,
                "{env}"
            );
            assert_eq!(from_lambda.env, env);
        }
    }

    #[test]
    fn tfvars_name_every_input_and_keep_the_allowlist_out_of_contract_env() {
        let vars = tfvars(
            &settings("staging"),
            Path::new("/tmp/bootstrap.zip"),
            "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/tollgate-staging-api@sha256:00",
        );
        assert_eq!(vars["extra_allowed_cidrs"], json!(["198.51.100.0/28"]));
        assert!(vars["contract_env"].get(ALLOWED_CIDRS_VAR).is_none());
        assert_eq!(vars["guard_secret_name"], "tollgate/staging/registration");
        assert_eq!(vars["api_port"], 8080);
        let declared = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../infra/variables.tf"
        ))
        .expect("infra/variables.tf");
        for key in vars.as_object().expect("object").keys() {
            assert!(
                declared.contains(&format!("variable \"{key}\"")),
                "infra/variables.tf lacks `{key}`"
            );
        }
    }
}
