//! The guard secret's rotation: the function is deployed and, where scheduled, attached; no
//! rotation is stuck half-way; where the ALB answers, the api accepts what Secrets Manager
//! holds.

use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput as SecretDescription;
use opskit::aws::AwsContext;
use serde_json::Value;
use shared_auth::Settings;

use super::{Outputs, service::http};
use crate::support::terraform::output_str;

/// The guard secret's description, or the error reading it, for one check's report.
pub(super) fn described<'a>(
    secret: Result<&'a SecretDescription, &anyhow::Error>,
) -> Result<&'a SecretDescription> {
    secret.map_err(|e| anyhow::anyhow!("{e:#}"))
}

/// The guard secret's rotation: the function is deployed and, where scheduled, attached; no
/// rotation is stuck half-way; and (where the ALB answers) the api accepts what Secrets Manager
/// holds. Reports every verifier's accepted version ids, never a value.
pub(super) async fn secret_rotation(
    settings: &Settings,
    sdk: &SdkConfig,
    outputs: &Outputs,
    secret: Result<&SecretDescription, &anyhow::Error>,
) -> Result<String> {
    let function = output_str(outputs, "rotation_function_name")?;
    let function_arn = aws_sdk_lambda::Client::new(sdk)
        .get_function_configuration()
        .function_name(&function)
        .send()
        .await
        .aws("Lambda")?
        .function_arn
        .unwrap_or_default();
    let described = described(secret)?;
    let stages = shared_aws::versions::Stages::of(described);
    let holder = |stage: &str| stages.holder(stage).map(str::to_owned);
    let current = holder("AWSCURRENT").context("the guard secret has no AWSCURRENT version")?;
    let previous = holder("AWSPREVIOUS");
    if let Some(pending) = holder("AWSPENDING").filter(|p| *p != current) {
        bail!(
            "version {pending} is still AWSPENDING: a rotation is running or stopped half-way \
             (see /aws/lambda/{function}); run `cargo xtask rotate-secret --env {}` once it ends",
            settings.env
        );
    }
    let schedule = if settings.deploy.secret_rotation_days == 0 {
        "no schedule (deploy.secret_rotation_days = 0)".to_owned()
    } else {
        let attached = described.rotation_lambda_arn().unwrap_or_default();
        if described.rotation_enabled != Some(true) || attached != function_arn {
            bail!(
                "rotation is not attached to {function} (enabled: {:?}, function: `{attached}`)",
                described.rotation_enabled
            );
        }
        format!(
            "every {} days by {function}",
            settings.deploy.secret_rotation_days
        )
    };
    let secrets_manager = format!(
        "Secrets Manager current {current}, previous {}",
        previous.as_deref().unwrap_or("none")
    );
    if settings.aws.endpoint_url.is_some() {
        return Ok(format!(
            "{schedule}; {secrets_manager}; api not asked (moto's ALB serves no traffic)"
        ));
    }
    let url = format!("{}/readyz", settings.public_base_url());
    let body: Value = http()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url} does not answer"))?
        .json()
        .await
        .with_context(|| format!("{url} is not JSON"))?;
    let api = &body["secret_versions"];
    let api_current = api["current"].as_str().unwrap_or("none");
    // Within one refresh interval of a rotation the api may still hold the one before.
    if api_current != current && Some(api_current) != previous.as_deref() {
        bail!("the api accepts {api} but Secrets Manager's current version is {current}");
    }
    Ok(format!("{schedule}; {secrets_manager}; api accepts {api}"))
}
