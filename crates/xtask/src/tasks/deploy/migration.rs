//! Migrations before the service rolls: the one-off task of `infra/migrate.tf` (the api's new
//! image running `api --migrate` as the database owner) is applied with what it needs, run on
//! the cluster, and waited for; a non-zero exit stops the deploy before any task of the new
//! code serves. Only that task's role reads the owner's secret: the serving tasks never do.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_ecs::types::{AssignPublicIp, AwsVpcConfiguration, LaunchType, NetworkConfiguration};
use opskit::aws::AwsContext;
use opskit::cmd;
use serde_json::Value;
use shared_auth::Settings;

use crate::support::terraform;

/// The migration task alone: what it needs at run time but does not refer to (the execution
/// role's policy, the NAT gateway's route to the internet gateway, the security group rules,
/// the cluster) is its `depends_on` in `infra/migrate.tf`, so a targeted apply brings it. One
/// place says what the task needs, next to the task; the deploy test runs the migration on
/// what this apply alone made (`cargo xtask deploy --until migration`).
pub const TARGETS: &[&str] = &["aws_ecs_task_definition.migrate"];

/// How long a migration may take, from RunTask to the task's stop (a Fargate task takes about
/// a minute to start).
const DEADLINE: Duration = Duration::from_secs(15 * 60);

/// Applies the migration task (and what it needs), runs it and waits for its exit code.
pub async fn run(settings: &Settings, dir: &Path) -> Result<()> {
    eprintln!("· migrations: the migration task, the database and their network first");
    let mut apply = terraform::terraform(dir);
    apply.args(["apply", "-input=false", "-auto-approve"]);
    apply.args(terraform::target_args(dir, TARGETS)?);
    cmd::run(&mut apply)?;
    let state = terraform::state_resources(dir)?;
    if settings.aws.endpoint_url.is_some() {
        // moto records a task but runs no container, and answers RunTask with numbers where
        // the ECS API has strings (a container's cpu and memory), which the SDK refuses.
        eprintln!(
            "· migrations: task definition {} ready; a local AWS runs no task (`up` and the tests run `api --migrate` here)",
            attribute(&state, "aws_ecs_task_definition.migrate", "arn")?
        );
        return Ok(());
    }
    let ecs = aws_sdk_ecs::Client::new(&shared_aws::sdk_config(&settings.aws).await);
    let cluster = attribute(&state, "aws_ecs_cluster.this", "name")?;
    let task = start(&ecs, &state, &cluster).await?;
    eprintln!("· migrations: task {task} started; waiting for it to stop");
    let (code, reason) = wait(&ecs, &cluster, &task).await?;
    let logs = format!(
        "its log: group /ecs/tollgate-{}-api, stream migrate/migrate/{}",
        settings.env,
        task.rsplit('/').next().unwrap_or(&task)
    );
    match code {
        Some(0) => {
            eprintln!("· migrations: applied (exit 0)");
            Ok(())
        }
        Some(code) => {
            bail!("the migration task exited with {code}: nothing was rolled out. See {logs}")
        }
        None => bail!(
            "the migration task stopped without an exit code ({reason}): nothing was rolled out. See {logs}"
        ),
    }
}

fn attribute(state: &BTreeMap<String, Value>, address: &str, key: &str) -> Result<String> {
    state
        .get(address)
        .and_then(|r| r[key].as_str())
        .map(str::to_owned)
        .with_context(|| format!("{address}.{key} is not in the state after its apply"))
}

/// RunTask: one migration task in the private subnets, in the api's security group.
async fn start(
    ecs: &aws_sdk_ecs::Client,
    state: &BTreeMap<String, Value>,
    cluster: &str,
) -> Result<String> {
    let subnets: Vec<String> = state
        .iter()
        .filter(|(address, _)| address.starts_with("aws_subnet.private["))
        .filter_map(|(_, r)| r["id"].as_str().map(str::to_owned))
        .collect();
    let network = AwsVpcConfiguration::builder()
        .set_subnets(Some(subnets))
        .security_groups(attribute(state, "aws_security_group.api", "id")?)
        .assign_public_ip(AssignPublicIp::Disabled)
        .build()?;
    let out = ecs
        .run_task()
        .cluster(cluster)
        .task_definition(attribute(state, "aws_ecs_task_definition.migrate", "arn")?)
        .launch_type(LaunchType::Fargate)
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(network)
                .build(),
        )
        .started_by("tollgate-deploy")
        .send()
        .await
        .aws("ecs:RunTask (the migration task)")?;
    if let Some(failure) = out.failures().first() {
        bail!(
            "ECS could not start the migration task: {} {}",
            failure.reason().unwrap_or("?"),
            failure.detail().unwrap_or("")
        );
    }
    out.tasks()
        .first()
        .and_then(|t| t.task_arn())
        .map(str::to_owned)
        .context("RunTask returned no task")
}

/// Polls the task until it stops: its container's exit code and the stop reason.
async fn wait(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    task: &str,
) -> Result<(Option<i32>, String)> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < DEADLINE {
        let out = ecs
            .describe_tasks()
            .cluster(cluster)
            .tasks(task)
            .send()
            .await
            .aws("ecs:DescribeTasks (the migration task)")?;
        let Some(found) = out.tasks().first() else {
            bail!("the migration task {task} is gone from the cluster");
        };
        let status = found.last_status().unwrap_or("?").to_owned();
        if status != last {
            eprintln!(
                "  migration task: {status} ({} s)",
                started.elapsed().as_secs()
            );
            last = status;
        }
        if last == "STOPPED" {
            let code = found
                .containers()
                .iter()
                .find(|c| c.name() == Some("migrate"))
                .and_then(|c| c.exit_code());
            let reason = found
                .stopped_reason()
                .unwrap_or("no reason given")
                .to_owned();
            return Ok((code, reason));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    bail!(
        "the migration task {task} did not stop within {} min: stop it (aws ecs stop-task) and look at its log",
        DEADLINE.as_secs() / 60
    )
}
