//! What AWS does on a task's or a function's behalf, with its execution role, decided by IAM's
//! rules (`crate::iam`) against the role's policies as applied (inline, and each attached
//! managed policy as moto holds it) under its permissions boundary: ECS pulls the image from
//! ECR, writes the `awslogs` stream and reads each `secrets` entry; Lambda writes its log,
//! manages the function's network interfaces in its VPC, and polls its queue; the scheduler
//! invokes the sweep. An implicit deny here would fail only in AWS, at the first start.

use std::collections::BTreeMap;

use crate::iam::{Decision, Identity, Request, document};
use crate::platform::credentials::{query, xml_text};
use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::world::{Deployed, Row};

/// The IAM resources a role's identity is made of, wherever they are declared (the guarded
/// route's module writes the rotation role's policies).
const IAM_KINDS: [&str; 4] = [
    "aws_iam_role",
    "aws_iam_policy",
    "aws_iam_role_policy",
    "aws_iam_role_policy_attachment",
];

/// Every role of the stack by ARN, as IAM would evaluate it: the roles, their boundary and
/// their managed policies from the bootstrap's state, their inline policies from the stack's.
struct Roles {
    iam: Vec<(String, Value)>,
    managed: BTreeMap<String, Value>,
}

impl Roles {
    async fn read(deployed: &Deployed) -> Result<Self> {
        let iam: Vec<(String, Value)> = deployed
            .resources
            .iter()
            .map(|(a, r)| (a.clone(), r.clone()))
            .chain(crate::iam::resources(&deployed.bootstrap))
            .filter(|(a, _)| IAM_KINDS.iter().any(|k| opskit::state::is(a, k)))
            .collect();
        let mut managed = BTreeMap::new();
        for (address, r) in &iam {
            if !opskit::state::is(address, "aws_iam_role_policy_attachment") {
                continue;
            }
            let arn = r["policy_arn"]
                .as_str()
                .context("an attachment without policy")?;
            if !managed.contains_key(arn) {
                managed.insert(arn.to_owned(), managed_policy(&deployed.moto, arn).await?);
            }
        }
        Ok(Roles { iam, managed })
    }

    /// The identity of the role `arn`: its policies and its boundary (from the bootstrap).
    fn identity(&self, arn: &str) -> Result<Identity> {
        let (_, role) = self
            .iam
            .iter()
            .find(|(a, r)| opskit::state::is(a, "aws_iam_role") && r["arn"] == arn)
            .with_context(|| format!("no role {arn} in the state"))?;
        let name = role["name"]
            .as_str()
            .context("a role without name")?
            .to_owned();
        let mut policies = Vec::new();
        for (address, r) in &self.iam {
            if r["role"] != name.as_str() {
                continue;
            }
            if opskit::state::is(address, "aws_iam_role_policy") {
                policies.push(document(r["policy"].as_str().context("an inline policy")?));
            } else if opskit::state::is(address, "aws_iam_role_policy_attachment") {
                let arn = r["policy_arn"].as_str().unwrap_or_default();
                policies.push(self.managed[arn].clone());
            }
        }
        let boundary = match role["permissions_boundary"]
            .as_str()
            .filter(|b| !b.is_empty())
        {
            None => None,
            Some(boundary) => Some(
                self.iam
                    .iter()
                    .map(|(_, p)| p)
                    .find(|p| p["arn"] == boundary)
                    .and_then(|p| p["policy"].as_str())
                    .map(document)
                    .with_context(|| {
                        format!("the boundary {boundary} is not in the bootstrap's state")
                    })?,
            ),
        };
        Ok(Identity {
            name,
            policies,
            boundary,
            arn: Some(arn.to_owned()),
        })
    }
}

/// A managed policy's default version, as IAM (moto) holds it.
async fn managed_policy(moto: &str, arn: &str) -> Result<Value> {
    let policy = query(
        moto,
        "iam",
        &[
            ("Action", "GetPolicy"),
            ("Version", "2010-05-08"),
            ("PolicyArn", arn),
        ],
    )
    .await?;
    let version = xml_text(&policy, "DefaultVersionId")
        .with_context(|| format!("{arn} has no default version"))?;
    let answer = query(
        moto,
        "iam",
        &[
            ("Action", "GetPolicyVersion"),
            ("Version", "2010-05-08"),
            ("PolicyArn", arn),
            ("VersionId", &version),
        ],
    )
    .await?;
    let text = xml_text(&answer, "Document")
        .with_context(|| format!("{arn} {version} has no document"))?;
    let decoded = percent_decode(&text.replace("&quot;", "\"").replace("&amp;", "&"));
    serde_json::from_str(&decoded)
        .with_context(|| format!("{arn}'s document is not JSON: {decoded}"))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One identity's requests, each of which IAM must allow.
fn decide(who: &str, identity: &Identity, requests: &[Request]) -> Row {
    let denied: Vec<String> = requests
        .iter()
        .filter(|r| identity.decide(r) != Decision::Allow)
        .map(|r| format!("{} on {} ({:?})", r.action, r.resource, identity.decide(r)))
        .collect();
    if denied.is_empty() {
        Row::check(
            who,
            true,
            format!(
                "{}: {} requests allowed ({})",
                identity.name,
                requests.len(),
                requests
                    .iter()
                    .map(|r| r.action.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    } else {
        Row::check(
            who,
            false,
            format!("{} is denied: {}", identity.name, denied.join("; ")),
        )
    }
}

fn tagged(action: &str, resource: &str, env: &str) -> Request {
    Request::new(action, resource).with("aws:ResourceTag/tollgate:env", env)
}

/// The execution roles' rows: each ECS task definition, each function, the sweep's schedule.
pub async fn execution_roles(deployed: &Deployed) -> Vec<Row> {
    match rows(deployed).await {
        Ok(rows) => rows,
        Err(e) => vec![Row::check("execution roles", false, format!("{e:#}"))],
    }
}

/// Where the requests go: the account and region of the stack's ARNs.
struct Scope<'a> {
    deployed: &'a Deployed,
    account: String,
}

impl Scope<'_> {
    fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:aws:{service}:{}:{}:{resource}",
            self.deployed.region, self.account
        )
    }

    /// The values of `key` of every resource of `kind` in the state.
    fn of(&self, kind: &str, key: &str) -> Vec<String> {
        self.deployed
            .resources
            .iter()
            .filter(|(a, _)| a.starts_with(&format!("{kind}.")))
            .filter_map(|(_, r)| r[key].as_str().map(str::to_owned))
            .collect()
    }
}

async fn rows(deployed: &Deployed) -> Result<Vec<Row>> {
    let roles = Roles::read(deployed).await?;
    // The account, from the stack's roles (the bootstrap's).
    let account = roles
        .iam
        .iter()
        .find(|(a, _)| a.starts_with("aws_iam_role."))
        .and_then(|(_, r)| r["arn"].as_str())
        .and_then(|arn| arn.split(':').nth(4))
        .context("no role in the state to read the account from")?
        .to_owned();
    let scope = Scope { deployed, account };
    let mut out = Vec::new();
    // Every task definition and function the state holds (a targeted apply holds fewer).
    for family in scope.of("aws_ecs_task_definition", "family") {
        out.push(task(&scope, &roles, &family).await?);
    }
    for name in scope.of("aws_lambda_function", "function_name") {
        out.push(function(&scope, &roles, &name).await?);
    }
    for (address, schedule) in &deployed.resources {
        if !address.starts_with("aws_scheduler_schedule.") {
            continue;
        }
        let target = &schedule["target"][0];
        let (Some(role), Some(arn)) = (target["role_arn"].as_str(), target["arn"].as_str()) else {
            continue;
        };
        out.push(decide(
            &format!(
                "Scheduler for {}",
                schedule["name"].as_str().unwrap_or(address)
            ),
            &roles.identity(role)?,
            &[tagged("lambda:InvokeFunction", arn, &deployed.env)],
        ));
    }
    Ok(out)
}

/// What ECS does with a task definition's execution role: pull the image, write the log, read
/// each `secrets` entry.
async fn task(scope: &Scope<'_>, roles: &Roles, family: &str) -> Result<Row> {
    let env = &scope.deployed.env;
    let container = super::container(scope.deployed, family).await?;
    let Some(role) = &container.execution_role_arn else {
        bail!("{} has no execution role", container.family);
    };
    // The ECR repository the image is in (in AWS; here a registry on loopback holds it under
    // the same name).
    let name = container
        .image
        .split_once('/')
        .map(|(_, path)| path.split(['@', ':']).next().unwrap_or(path))
        .context("the image reference names no repository")?;
    let repository = scope.arn("ecr", &format!("repository/{name}"));
    let group = container
        .log_group
        .clone()
        .context("the container has no log group")?;
    let group_arn = scope.arn("logs", &format!("log-group:{group}"));
    let mut requests = vec![
        Request::new("ecr:GetAuthorizationToken", "*"),
        tagged("ecr:BatchCheckLayerAvailability", &repository, env),
        tagged("ecr:GetDownloadUrlForLayer", &repository, env),
        tagged("ecr:BatchGetImage", &repository, env),
        tagged("logs:CreateLogStream", &group_arn, env),
        tagged(
            "logs:PutLogEvents",
            &format!(
                "{group_arn}:log-stream:{}/{}/0",
                container.log_stream_prefix.clone().unwrap_or_default(),
                container.name
            ),
            env,
        ),
    ];
    for (_, value_from) in &container.secrets {
        let secret = crate::platform::secrets::ValueFrom::parse(value_from)?.secret;
        requests.push(tagged("secretsmanager:GetSecretValue", &secret, env));
    }
    Ok(decide(
        &format!("ECS for {}", container.family),
        &roles.identity(role)?,
        &requests,
    ))
}

/// What Lambda does with a function's execution role: write its log, manage its network
/// interfaces in the VPC, poll each queue mapped to it.
async fn function(scope: &Scope<'_>, roles: &Roles, name: &str) -> Result<Row> {
    let env = &scope.deployed.env;
    let lambda = aws_sdk_lambda::Client::new(&scope.deployed.sdk().await);
    let function = crate::platform::lambda::Function::describe(&lambda, name).await?;
    let group_arn = scope.arn("logs", &format!("log-group:/aws/lambda/{}", function.name));
    let mut requests = vec![
        tagged("logs:CreateLogStream", &group_arn, env),
        tagged(
            "logs:PutLogEvents",
            &format!("{group_arn}:log-stream:twin"),
            env,
        ),
    ];
    if !function.subnets.is_empty() {
        for action in [
            "ec2:CreateNetworkInterface",
            "ec2:DescribeNetworkInterfaces",
            "ec2:DeleteNetworkInterface",
            "ec2:AssignPrivateIpAddresses",
            "ec2:UnassignPrivateIpAddresses",
        ] {
            requests.push(Request::new(action, "*"));
        }
    }
    for (address, mapping) in &scope.deployed.resources {
        let names_function = mapping["function_name"]
            .as_str()
            .is_some_and(|f| f.ends_with(&format!(":{}", function.name)) || f == function.name);
        if address.starts_with("aws_lambda_event_source_mapping.") && names_function {
            let queue = mapping["event_source_arn"].as_str().unwrap_or_default();
            for action in [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
            ] {
                requests.push(tagged(action, queue, env));
            }
        }
    }
    Ok(decide(
        &format!("Lambda for {}", function.name),
        &roles.identity(&function.role)?,
        &requests,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_documents_are_percent_decoded() {
        assert_eq!(
            percent_decode("%7B%22Version%22%3A%222012-10-17%22%7D"),
            r#"{"Version":"2012-10-17"}"#
        );
    }
}
