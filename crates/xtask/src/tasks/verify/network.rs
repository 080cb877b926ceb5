//! The network: the Lambda sits in the private subnets, and each routes its way out through a
//! NAT gateway whose Elastic IP is an allowed source.

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput as LambdaConfig;

use super::Outputs;
use super::ec2::Ec2;
use crate::support::terraform::{output_str, output_strs};

/// The Lambda sits in the private subnets, and each routes through a NAT gateway whose address
/// is one of the allowed Elastic IPs (one gateway, or one per AZ).
pub(super) async fn placement(
    sdk: &SdkConfig,
    lambda: &LambdaConfig,
    outputs: &Outputs,
    nat_eips: &[String],
) -> Result<String> {
    let subnets: BTreeSet<String> = lambda
        .vpc_config()
        .map(|v| v.subnet_ids().iter().cloned().collect())
        .unwrap_or_default();
    let private: BTreeSet<String> = output_strs(outputs, "private_subnet_ids")
        .into_iter()
        .collect();
    if subnets.is_empty() || subnets != private {
        bail!("Lambda subnets {subnets:?} are not the private subnets {private:?}");
    }
    let groups: Vec<String> = lambda
        .vpc_config()
        .map(|v| v.security_group_ids().to_vec())
        .unwrap_or_default();
    let expected_group = output_str(outputs, "lambda_security_group_id")?;
    if groups != [expected_group.clone()] {
        bail!("Lambda security groups {groups:?}, expected [{expected_group}]");
    }
    let ec2 = Ec2::new(sdk)?;
    let mut routes = Vec::new();
    for subnet in &subnets {
        routes.push(way_out(&ec2, subnet, nat_eips).await?);
    }
    routes.sort();
    routes.dedup();
    Ok(format!(
        "{} subnet(s) → {}",
        subnets.len(),
        routes.join(", ")
    ))
}

/// Every NAT gateway's Elastic IP, from the outputs (`nat_eips`; `nat_eip` for a stack
/// deployed before gateways were counted).
pub(super) fn nat_eips(outputs: &Outputs) -> Result<Vec<String>> {
    let listed = output_strs(outputs, "nat_eips");
    if listed.is_empty() {
        return Ok(vec![output_str(outputs, "nat_eip")?]);
    }
    Ok(listed)
}

/// Where `subnet` leaves the VPC: `nat-… → <address>`, when its default route goes through a
/// NAT gateway holding one of the allowed addresses.
async fn way_out(ec2: &Ec2, subnet: &str, nat_eips: &[String]) -> Result<String> {
    let nat_id = ec2.default_route_nat(subnet).await?.with_context(|| {
        format!("subnet {subnet} does not route 0.0.0.0/0 through a NAT gateway")
    })?;
    let public_ips = ec2.nat_public_ips(&nat_id).await?;
    match public_ips.iter().find(|ip| nat_eips.contains(ip)) {
        Some(ip) => Ok(format!("{nat_id} → {ip}")),
        None => bail!(
            "subnet {subnet} leaves through {nat_id} with addresses {public_ips:?}, none of the allowed {nat_eips:?}"
        ),
    }
}
