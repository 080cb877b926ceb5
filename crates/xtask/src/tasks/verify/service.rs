//! The deployables and their public face: both environments parse to one contract that allows
//! the NAT address, the task runs the pushed image, Cognito triggers the Lambda, the name
//! points at the ALB, and (where the ALB answers) the api is ready, refuses a forgery and
//! verifies the Lambda's own dry run.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use aws_sdk_ecs::types::TaskDefinition;
use aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput as LambdaConfig;
use opskit::aws::AwsContext;
use serde_json::Value;
use shared_auth::{Component, GuardContract, Settings};

use super::Outputs;
use crate::support::report::Report;
use crate::support::terraform::output_str;
use crate::support::{dns, image};

/// The HTTP client verify speaks with: it says who it is (the managed rule set blocks
/// requests without a User-Agent once enforced), and waits at most 10 s.
pub(super) fn http() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .user_agent(concat!("tollgate-verify/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// The api's name resolves to the ALB. Compared by address, which covers an alias record and
/// a CNAME alike.
pub(super) async fn api_name(settings: &Settings, outputs: &Outputs) -> Result<String> {
    let Some(domain) = settings.deploy.domain.clone() else {
        return Ok("skipped: no deploy.domain (local)".to_owned());
    };
    let alb = output_str(outputs, "alb_dns_name")?;
    let fix = match &settings.deploy.hosted_zone_id {
        Some(zone) => format!("the stack's alias record in {zone} is missing: re-run deploy"),
        None => format!(
            "create an alias A record (or a CNAME) for {domain} pointing at {alb} in the domain's DNS, then run deploy again (it attaches the rotation schedule once the name leads here)"
        ),
    };
    match dns::pointing(&domain, &alb).await {
        dns::Pointing::AtAlb(n) => Ok(format!("{domain} → {alb} ({n} address(es))")),
        dns::Pointing::AlbUnresolved => Ok(format!(
            "skipped: the ALB's name {alb} does not resolve here (a local AWS serves no DNS)"
        )),
        dns::Pointing::Elsewhere(found) => {
            bail!("{domain} resolves to {found:?}, not the ALB {alb}: {fix}")
        }
        dns::Pointing::Unresolved(e) => bail!("{domain} does not resolve ({e}): {fix}"),
    }
}

/// `GET /readyz` through the public name: the serving login connects and the secret is loaded.
pub(super) async fn readiness(settings: &Settings) -> Result<String> {
    let url = format!("{}/readyz", settings.public_base_url());
    let response = http()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url} does not answer"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("{url} is not JSON"))?;
    match (body["database"].as_bool(), body["secret"].as_bool()) {
        (Some(true), Some(true)) => Ok(format!("{url} → {status}")),
        _ => bail!(
            "{url} → {status} {body}: a task whose login cannot connect (see the api's log group) or whose secret is not loaded"
        ),
    }
}

/// Invokes the post-confirm function with a probe: it signs a dry-run registration with the
/// current secret and sends it as every sign-up goes, through the NAT gateway, the WAF and the
/// ALB; the api must verify it (`204`, verified with `current`) and write nothing.
pub(super) async fn lambda_dry_run(sdk: &SdkConfig, outputs: &Outputs) -> Result<String> {
    let function = output_str(outputs, "lambda_function_name")?;
    let out = aws_sdk_lambda::Client::new(sdk)
        .invoke()
        .function_name(&function)
        .payload(aws_sdk_lambda::primitives::Blob::new(
            shared_auth::PROBE_EVENT.to_owned(),
        ))
        .send()
        .await
        .aws("Lambda")?;
    let body: Value = out
        .payload()
        .and_then(|p| serde_json::from_slice(p.as_ref()).ok())
        .unwrap_or(Value::Null);
    if let Some(error) = out.function_error() {
        bail!("{function} failed the probe ({error}): {body}");
    }
    match (body["status"].as_u64(), body["verified_with"].as_str()) {
        (Some(204), Some("current")) => Ok(format!("{function}: 204, verified with current")),
        _ => bail!("{function}'s dry run came back {body}"),
    }
}

/// The environments of both deployables parse to one contract, which allows the NAT EIP.
/// Returns the Lambda's contract when it parses.
pub(super) async fn contract_checks(
    report: &mut Report,
    sdk: &SdkConfig,
    lambda: &LambdaConfig,
    outputs: &Outputs,
    nat_eips: &[String],
) -> Result<Option<GuardContract>> {
    let lambda_env: HashMap<String, String> = lambda
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default();
    let task_env = task_environment(sdk, outputs).await?;
    let lambda_contract = shared_auth::load_for(Component::Lambda, &lambda_env).map(|s| s.guard);
    let task_contract = shared_auth::load_for(Component::Api, &task_env).map(|s| s.guard);
    for (name, parsed) in [
        ("Lambda environment parses", &lambda_contract),
        ("task environment parses", &task_contract),
    ] {
        report.record(
            name,
            parsed
                .as_ref()
                .map(|_| "shared loader accepts it".into())
                .map_err(|e| anyhow::anyhow!("{e}")),
        );
    }
    report.record(
        "Lambda and task contracts are equal",
        match (&lambda_contract, &task_contract) {
            (Ok(a), Ok(b)) => compare(a, b),
            _ => Err(anyhow::anyhow!(
                "cannot compare: an environment does not parse"
            )),
        },
    );
    report.record(
        "contract allows every NAT EIP",
        match &lambda_contract {
            Ok(c) => {
                let missing: Vec<&String> = nat_eips
                    .iter()
                    .filter(|ip| {
                        !ip.parse()
                            .is_ok_and(|ip| shared_auth::is_allowed(ip, &c.allowed_cidrs))
                    })
                    .collect();
                if missing.is_empty() {
                    Ok(format!("{} in allowed_cidrs", nat_eips.join(", ")))
                } else {
                    Err(anyhow::anyhow!("{missing:?} not in {:?}", c.allowed_cidrs))
                }
            }
            Err(_) => Err(anyhow::anyhow!("the Lambda's contract does not parse")),
        },
    );
    Ok(lambda_contract.ok())
}

/// The task definition names its image by digest; the registry serves that digest for the tag
/// xtask pushed it under; the image's platform is the task's `cpu_architecture`.
pub(super) async fn task_image(
    settings: &Settings,
    sdk: &SdkConfig,
    outputs: &Outputs,
) -> Result<String> {
    let definition = task_definition(sdk, outputs).await?;
    let named = definition
        .container_definitions()
        .first()
        .and_then(|c| c.image())
        .context("the task definition has no container image")?;
    let reference = image::Reference::parse(named)?;
    let registry = image::registry_for(settings).await?;
    if registry.host != reference.registry {
        bail!(
            "the task pulls from {}, not this environment's registry {}",
            reference.registry,
            registry.host
        );
    }
    let tag = image::oci::tag_for(&reference.digest);
    let served = registry
        .manifest_digest(&reference.repository, &tag)
        .await?
        .with_context(|| format!("the registry has no {}:{tag}", reference.repository))?;
    if served != reference.digest {
        bail!(
            "{}:{tag} is {served} in the registry, but the task runs {}",
            reference.repository,
            reference.digest
        );
    }
    let (_, config) = registry
        .manifest_and_config(&reference.repository, &reference.digest)
        .await?;
    let platform = config["architecture"].as_str().unwrap_or("?");
    let task_cpu = definition
        .runtime_platform()
        .and_then(|p| p.cpu_architecture())
        .map(|a| a.as_str().to_owned())
        .unwrap_or_else(|| "X86_64".into());
    let expected = if task_cpu.eq_ignore_ascii_case("ARM64") {
        "arm64"
    } else {
        "amd64"
    };
    if platform != expected {
        bail!("the image is linux/{platform}, the task runs on {task_cpu}");
    }
    Ok(format!(
        "{tag} = {}…, linux/{platform} on {task_cpu}",
        &reference.digest[..19]
    ))
}

/// The deployed task definition (the `task_definition_arn` output).
async fn task_definition(sdk: &SdkConfig, outputs: &Outputs) -> Result<TaskDefinition> {
    aws_sdk_ecs::Client::new(sdk)
        .describe_task_definition()
        .task_definition(output_str(outputs, "task_definition_arn")?)
        .send()
        .await
        .aws("ECS")?
        .task_definition
        .context("ECS returned no task definition")
}

/// The task definition's container environment.
async fn task_environment(sdk: &SdkConfig, outputs: &Outputs) -> Result<HashMap<String, String>> {
    let task = task_definition(sdk, outputs).await?;
    Ok(task
        .container_definitions()
        .first()
        .map(|c| {
            c.environment()
                .iter()
                .filter_map(|kv| Some((kv.name()?.to_owned(), kv.value()?.to_owned())))
                .collect()
        })
        .unwrap_or_default())
}

/// The user pool's PostConfirmation trigger points at this Lambda.
pub(super) async fn cognito_trigger(
    sdk: &SdkConfig,
    lambda: &LambdaConfig,
    outputs: &Outputs,
) -> Result<String> {
    let pool = aws_sdk_cognitoidentityprovider::Client::new(sdk)
        .describe_user_pool()
        .user_pool_id(output_str(outputs, "user_pool_id")?)
        .send()
        .await
        .aws("Cognito")?;
    let trigger = pool
        .user_pool()
        .and_then(|p| p.lambda_config())
        .and_then(|l| l.post_confirmation())
        .unwrap_or_default();
    let arn = lambda.function_arn().unwrap_or_default();
    if !arn.is_empty() && trigger == arn {
        Ok(arn.to_owned())
    } else {
        bail!("trigger is `{trigger}`, expected `{arn}`")
    }
}

/// Names the fields on which two contracts differ.
fn compare(a: &GuardContract, b: &GuardContract) -> Result<String> {
    let (va, vb) = (serde_json::to_value(a)?, serde_json::to_value(b)?);
    let (Value::Object(ma), Value::Object(mb)) = (&va, &vb) else {
        bail!("contracts are not objects")
    };
    let differ: Vec<String> = ma
        .iter()
        .filter(|(k, v)| mb.get(*k) != Some(*v))
        .map(|(k, v)| {
            format!(
                "guard.{k}: Lambda {v} ≠ task {}",
                mb.get(k).unwrap_or(&Value::Null)
            )
        })
        .collect();
    if differ.is_empty() {
        Ok(format!(
            "mode {}, {} {}, {} allowed source(s)",
            a.mode,
            a.method,
            a.path,
            a.allowed_cidrs.len()
        ))
    } else {
        bail!("{}", differ.join("; "))
    }
}

/// A forged registration through the public edge must be refused (WAF or the api).
pub(super) async fn probe(settings: &Settings) -> Result<String> {
    let url = format!("{}{}", settings.public_base_url(), settings.guard.path);
    let response = http()?
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"sub":"00000000-0000-4000-8000-000000000000","username":"probe"}"#)
        .send()
        .await;
    match response {
        Ok(r) if r.status().as_u16() == 403 => Ok(format!("{url} → 403")),
        Ok(r) => bail!("{url} answered {} to a forged registration", r.status()),
        Err(e) => Ok(format!("skipped: {url} does not answer ({e})")),
    }
}

/// Where the ALB really answers: the api is ready (its login connects), a forged registration
/// is refused, and the Lambda's own dry run passes the whole path. A local AWS's ALB serves
/// no traffic and its Lambda cannot be invoked: those are reported as skipped.
pub(super) async fn live_checks(
    report: &mut Report,
    settings: &Settings,
    sdk: &SdkConfig,
    outputs: &Outputs,
) {
    let live = settings.aws.endpoint_url.is_none();
    let skipped = |why: &str| Ok(format!("skipped: a local AWS {why}"));
    report.record(
        "api ready: database login and secret",
        if live {
            readiness(settings).await
        } else {
            skipped("serves no traffic through its ALB")
        },
    );
    report.record(
        "forged POST through the ALB → 403",
        if live {
            probe(settings).await
        } else {
            skipped("serves no traffic through its ALB")
        },
    );
    report.record(
        "Lambda's dry run through NAT, WAF and ALB → 204",
        if live {
            lambda_dry_run(sdk, outputs).await
        } else {
            skipped("cannot invoke a function")
        },
    );
}
