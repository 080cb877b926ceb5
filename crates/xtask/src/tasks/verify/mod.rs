//! `cargo xtask verify --env E`: reads the deployed system back through the AWS APIs and proves
//! the two controls are wired as designed. Exits non-zero on any mismatch. One room per thing
//! checked: the deployables and their public face ([`service`]), the edge and its WAF
//! ([`edge`]), the network ([`network`]), the secret's rotation ([`rotation`]), durable
//! delivery ([`delivery`]).

mod delivery;
mod ec2;
mod edge;
mod network;
mod rotation;
mod service;

use std::collections::HashMap;

use anyhow::{Result, bail};
use opskit::aws::AwsContext;
use serde_json::Value;
use shared_auth::Settings;

use crate::flags;
use crate::support::context::{block_on, require_supplied, settings_for};
use crate::support::report::Report;
use crate::support::terraform::{output_str, outputs};

/// The stack's Terraform outputs, name → value.
type Outputs = HashMap<String, Value>;

impl flags::Verify {
    pub fn run(self) -> Result<()> {
        let env = &self.env;
        let settings = settings_for(env)?;
        require_supplied(&settings)?;
        let outputs = outputs(env)?;
        let report = block_on(checks(&settings, &outputs))?;
        report.print();
        let failed = report.failures();
        if failed > 0 {
            bail!("{failed} check(s) failed: the deployed `{env}` does not match its contract");
        }
        println!("\n`{env}` matches its contract.");
        Ok(())
    }
}

/// Every check, in the order the table shows them.
async fn checks(settings: &Settings, outputs: &Outputs) -> Result<Report> {
    let sdk = shared_aws::sdk_config(&settings.aws).await;
    let nat_eips = network::nat_eips(outputs)?;
    let mut report = Report::default();
    let lambda = aws_sdk_lambda::Client::new(&sdk)
        .get_function_configuration()
        .function_name(output_str(outputs, "lambda_function_name")?)
        .send()
        .await
        .aws("Lambda")?;
    let lambda_contract =
        service::contract_checks(&mut report, &sdk, &lambda, outputs, &nat_eips).await?;
    let contract = lambda_contract.unwrap_or_else(|| settings.guard.clone());
    // The guard secret's versions and rotation, read once for the checks that need them.
    let secret = aws_sdk_secretsmanager::Client::new(&sdk)
        .describe_secret()
        .secret_id(&contract.secret_id)
        .send()
        .await
        .aws("Secrets Manager");
    let edge = edge::Edge {
        sdk: &sdk,
        outputs,
        nat_eips: &nat_eips,
        contract: &contract,
        env: &settings.env,
        secret: secret.as_ref(),
    };
    edge.checks(&mut report).await?;
    report.record(
        "secret rotation: function, schedule, versions accepted",
        rotation::secret_rotation(settings, &sdk, outputs, secret.as_ref()).await,
    );
    report.record(
        "task image is the pushed digest, right platform",
        service::task_image(settings, &sdk, outputs).await,
    );
    report.record(
        "Lambda in the NAT-routed private subnets",
        network::placement(&sdk, &lambda, outputs, &nat_eips).await,
    );
    report.record(
        "Cognito PostConfirmation → post-confirm",
        service::cognito_trigger(&sdk, &lambda, outputs).await,
    );
    report.record(
        &format!("{} points at the ALB", settings.public_base_url()),
        service::api_name(settings, outputs).await,
    );
    report.record(
        "retry queue drained by the sign-up function",
        delivery::queue_drained_by_the_function(&sdk, outputs).await,
    );
    service::live_checks(&mut report, settings, &sdk, outputs).await;
    Ok(report)
}
