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
        ]
        .map(|(k, v)| (format!("TOLLGATE__LAMBDA__{k}"), v)),
    );
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
/// `DATABASE_URL` without credentials, and the ids of the serving and owner secrets).
pub fn api_env(settings: &Settings) -> Env {
    let a = &settings.api;
    let mut env = aws_env(settings);
    env.extend(
        [
            ("SECRET_SOURCE", "aws".to_owned()),
            ("SECRET_REFRESH_S", a.secret_refresh_s.to_string()),
            ("MIGRATE_ON_START", a.migrate_on_start.to_string()),
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
    let d = &settings.deploy;
    json!({
        "env": settings.env,
        "region": settings.aws.region.clone().unwrap_or_else(|| "ap-northeast-1".into()),
        "aws_endpoint_url": settings.aws.endpoint_url,
        "vpc_cidr": d.vpc_cidr.to_string(),
        "certificate_arn": d.certificate_arn,
        "domain_name": d.domain.clone().unwrap_or_else(|| LOCAL_DOMAIN.to_owned()),
        "hosted_zone_id": d.hosted_zone_id,
        "alb_idle_timeout_s": d.alb_idle_timeout_s,
        "db_app_secret_name": db_app_secret_name(&settings.env),
        "db_app_username": DB_APP_LOGIN,
        "db_instance_class": d.db_instance_class,
        "deletion_protection": d.deletion_protection,
        "lambda_architecture": d.lambda_architecture,
        "lambda_zip": lambda_zip.display().to_string(),
        "rotation_zip": crate::support::artifacts::rotation_zip(lambda_zip).display().to_string(),
        "secret_rotation_days": d.secret_rotation_days,
        "rotation_env": rotation_env(settings),
        // One step may wait `step_budget`; the function gets that plus room to report.
        "rotation_timeout_s": shared_auth::rotation::step_budget(settings.api.secret_refresh_s).as_secs() + 30,
        "api_image": api_image,
        "api_architecture": d.api_architecture,
        "api_port": settings.api.listen.port(),
        "api_min_count": d.api_min_count,
        "api_max_count": d.api_max_count,
        "db_multi_az": d.db_multi_az,
        "nat_gateways": d.nat_gateways,
        "log_retention_days": d.log_retention_days,
        "waf_managed_rules": d.waf_managed_rules,
        "ses_source_arn": d.ses_source_arn,
        "ses_from_address": d.ses_from_address,
        "credential_headers": settings.guard.credential_headers(),
        "guard_secret_name": settings.guard.secret_id,
        "guard_path": settings.guard.path,
        "guard_mode": settings.guard.mode.to_string(),
        "guard_timestamp_header": settings.guard.timestamp_header.to_ascii_lowercase(),
        "guard_signature_header": settings.guard.signature_header.to_ascii_lowercase(),
        "extra_allowed_cidrs": settings.guard.allowed_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "contract_env": contract_env(settings),
        "lambda_env": lambda_env(settings),
        "api_env": api_env(settings),
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
    (with_env(lambda_env(settings)), with_env(api_env(settings)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(env: &str) -> Settings {
        let vars = HashMap::from([
            ("TOLLGATE_ENV".to_owned(), env.to_owned()),
            (ALLOWED_CIDRS_VAR.to_owned(), "198.51.100.0/28".to_owned()),
        ]);
        shared_auth::load_for(shared_auth::Component::Deploy, &vars)
            .expect("deploy/<env>.toml loads")
    }

    fn reload(env: &Env) -> Settings {
        let vars: HashMap<String, String> = env.clone().into_iter().collect();
        shared_auth::load_for(shared_auth::Component::Deploy, &vars)
            .expect("rendered environment loads")
    }

    #[test]
    fn both_deployables_parse_back_to_one_contract_for_every_environment() {
        for env in ["local", "staging", "production"] {
            let settings = settings(env);
            let (lambda, api) = deployed_envs(&settings, "203.0.113.7");
            let (from_lambda, from_api) = (reload(&lambda), reload(&api));
            assert_eq!(from_lambda.guard, from_api.guard, "{env}");
            let mut expected = settings.guard.clone();
            expected
                .allowed_cidrs
                .insert(0, "203.0.113.7/32".parse().expect("cidr"));
            assert_eq!(
                from_lambda.guard, expected,
                "{env}: the contract plus the NAT EIP"
            );
            assert_eq!(
                from_lambda.lambda, settings.lambda,
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
