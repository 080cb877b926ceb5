//! An ECS task as Fargate starts it: the task definition read back from ECS, the task placed
//! by `RunTask` (its network interface in a subnet, with the address ECS reports), then its
//! container started from the image's own root file system in that interface's namespace of
//! the twin, as the image's user, with the entrypoint and command ECS would use, the
//! environment ECS would give it (the image's, the task definition's, each `secrets` entry's
//! value, and what the platform adds), and the task role's credentials at ECS's credentials
//! endpoint.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use aws_sdk_ecs::Client as Ecs;

use super::credentials::Session;
use super::image::Image;
use super::secrets::ValueFrom;
use super::{Difference, foreign, qemu};
use crate::aws::AwsContext;
use crate::twin::Twin;

/// The one container of a task definition, as ECS reads it back.
#[derive(Debug, Clone)]
pub struct Container {
    pub task_definition_arn: String,
    pub family: String,
    pub revision: i32,
    pub name: String,
    pub image: String,
    pub entry_point: Vec<String>,
    pub command: Vec<String>,
    pub environment: Vec<(String, String)>,
    /// `(name, valueFrom)`.
    pub secrets: Vec<(String, String)>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub task_role_arn: Option<String>,
    pub execution_role_arn: Option<String>,
    /// The `awslogs` group and stream prefix.
    pub log_group: Option<String>,
    pub log_stream_prefix: Option<String>,
    /// `ARM64` or `X86_64` (the task's runtime platform).
    pub cpu_architecture: String,
}

impl Container {
    /// The task definition `family` (its latest revision, or an ARN) as ECS describes it.
    pub async fn describe(ecs: &Ecs, family: &str) -> Result<Self> {
        let described = ecs
            .describe_task_definition()
            .task_definition(family)
            .send()
            .await
            .aws(&format!("cannot describe the task definition {family}"))?;
        let task = described
            .task_definition()
            .with_context(|| format!("no task definition {family}"))?;
        let [container] = task.container_definitions() else {
            bail!(
                "{family} has {} containers; the runner starts tasks of one",
                task.container_definitions().len()
            );
        };
        let log = container.log_configuration();
        let option = |key: &str| {
            log.and_then(|l| l.options())
                .and_then(|o| o.get(key))
                .cloned()
        };
        Ok(Container {
            task_definition_arn: task.task_definition_arn().unwrap_or(family).to_owned(),
            family: task.family().unwrap_or(family).to_owned(),
            revision: task.revision(),
            name: container.name().unwrap_or("container").to_owned(),
            image: container
                .image()
                .context("the container names no image")?
                .to_owned(),
            entry_point: container.entry_point().to_vec(),
            command: container.command().to_vec(),
            environment: container
                .environment()
                .iter()
                .filter_map(|kv| Some((kv.name()?.to_owned(), kv.value()?.to_owned())))
                .collect(),
            secrets: container
                .secrets()
                .iter()
                .map(|s| (s.name().to_owned(), s.value_from().to_owned()))
                .collect(),
            user: container.user().map(str::to_owned),
            port: container
                .port_mappings()
                .first()
                .and_then(|p| p.container_port())
                .and_then(|p| u16::try_from(p).ok()),
            task_role_arn: task.task_role_arn().map(str::to_owned),
            execution_role_arn: task.execution_role_arn().map(str::to_owned),
            log_group: option("awslogs-group"),
            log_stream_prefix: option("awslogs-stream-prefix"),
            cpu_architecture: task
                .runtime_platform()
                .and_then(|p| p.cpu_architecture())
                .map(|a| a.as_str().to_owned())
                .unwrap_or_else(|| "X86_64".to_owned()),
        })
    }

    /// The name a task of this definition goes by in the twin (`migrate-1`, `api-2`).
    pub fn task_name(&self, n: usize) -> String {
        format!("{}-{n}", self.name)
    }
}

/// A task ECS placed: its ARN and network interface.
#[derive(Debug, Clone)]
pub struct Placed {
    pub arn: String,
    pub subnet: String,
    pub address: Ipv4Addr,
    pub groups: Vec<String>,
}

/// `RunTask` of `task_definition` on Fargate in `cluster`, in `subnet` with `groups`, as the
/// service scheduler (or `deploy`, for the migration) does: ECS records the task and gives its
/// interface an address, where the twin then runs it. Spoken as JSON to the local AWS at
/// `endpoint` rather than through the SDK, which refuses moto's answer (a container's `cpu`
/// and `memory` as numbers: `crate::twin::endpoint`).
pub async fn run_task(
    endpoint: &str,
    region: &str,
    cluster: &str,
    task_definition: &str,
    subnet: &str,
    groups: &[String],
    started_by: &str,
) -> Result<Placed> {
    let answer = ecs_call(
        endpoint,
        region,
        "RunTask",
        serde_json::json!({
            "cluster": cluster,
            "taskDefinition": task_definition,
            "launchType": "FARGATE",
            "startedBy": started_by,
            "networkConfiguration": {"awsvpcConfiguration": {
                "subnets": [subnet],
                "securityGroups": groups,
                "assignPublicIp": "DISABLED",
            }},
        }),
    )
    .await?;
    let task = &answer["tasks"][0];
    let address = task["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["details"].as_array().into_iter().flatten())
        .find(|d| d["name"] == "privateIPv4Address")
        .and_then(|d| d["value"].as_str())
        .with_context(|| format!("RunTask gave the task no address: {answer}"))?
        .parse()?;
    Ok(Placed {
        arn: task["taskArn"]
            .as_str()
            .with_context(|| format!("RunTask placed no task: {answer}"))?
            .to_owned(),
        subnet: subnet.to_owned(),
        address,
        groups: groups.to_vec(),
    })
}

/// `StopTask`, as ECS records a task that ended.
pub async fn stop_task(
    endpoint: &str,
    region: &str,
    cluster: &str,
    arn: &str,
    reason: &str,
) -> Result<()> {
    ecs_call(
        endpoint,
        region,
        "StopTask",
        serde_json::json!({"cluster": cluster, "task": arn, "reason": reason}),
    )
    .await?;
    Ok(())
}

/// One ECS call in the JSON 1.1 protocol to the local AWS at `endpoint` (moto routes by the
/// target and checks no signature).
async fn ecs_call(
    endpoint: &str,
    region: &str,
    action: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value> {
    let answer = reqwest::Client::new()
        .post(format!("{}/", endpoint.trim_end_matches('/')))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", format!("AmazonEC2ContainerServiceV20141113.{action}"))
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential=test/20260101/{region}/ecs/aws4_request, SignedHeaders=host, Signature=0"),
        )
        .body(body.to_string())
        .send()
        .await
        .with_context(|| format!("ecs:{action}: the local AWS does not answer"))?;
    let status = answer.status();
    let json: serde_json::Value = answer.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("ecs:{action} answered {status}: {json}");
    }
    Ok(json)
}

/// Everything one container start needs.
#[derive(Debug)]
pub struct Start<'a> {
    pub container: &'a Container,
    pub image: &'a Image,
    /// The twin's interface the task runs in.
    pub host: &'a str,
    pub region: &'a str,
    /// The task role's session, served at ECS's credentials endpoint.
    pub session: Option<&'a Session>,
    /// The local world's differences: variables added, files (absolute paths in the
    /// container) written with their contents.
    pub differences: &'a [Difference],
    pub files: &'a [(String, String)],
}

/// The environment ECS gives the container, in ECS's order of precedence: the image's, then
/// the task definition's `environment`, then each `secrets` entry's value; then what the
/// platform adds (Fargate's region and credentials URI); then the local world's differences.
pub async fn environment(
    start: &Start<'_>,
    sm: &aws_sdk_secretsmanager::Client,
    credentials_path: &str,
) -> Result<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> = start.image.env();
    let mut set = |k: &str, v: String| {
        env.retain(|(name, _)| name != k);
        env.push((k.to_owned(), v));
    };
    for (k, v) in &start.container.environment {
        set(k, v.clone());
    }
    for (name, value_from) in &start.container.secrets {
        let value = ValueFrom::parse(value_from)?.resolve(sm).await?;
        set(name, value);
    }
    for (k, v) in [
        ("AWS_EXECUTION_ENV", "AWS_ECS_FARGATE".to_owned()),
        ("AWS_REGION", start.region.to_owned()),
        ("AWS_DEFAULT_REGION", start.region.to_owned()),
    ] {
        set(k, v);
    }
    if start.session.is_some() {
        set(
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            credentials_path.to_owned(),
        );
    }
    for d in start.differences.iter().filter(|d| d.is_variable()) {
        set(&d.name, d.value.clone());
    }
    Ok(env)
}

/// The command that starts the container: in the interface's namespace, chrooted into a copy
/// of the image's root file system with the differences' files written into it, as the
/// image's (or the task definition's) user, the entrypoint and command ECS would run (the task
/// definition's where it names them, else the image's), under qemu when the image is for
/// another CPU.
pub fn command(
    twin: &Twin,
    start: &Start<'_>,
    env: &[(String, String)],
    dir: &Path,
) -> Result<Command> {
    let rootfs = start.image.instance(&dir.join("rootfs"))?;
    for (path, contents) in start.files {
        let inside = rootfs.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(inside.parent().unwrap_or(&rootfs))?;
        std::fs::write(&inside, contents)
            .with_context(|| format!("cannot write {}", inside.display()))?;
    }
    let entry_point = if start.container.entry_point.is_empty() {
        start.image.entrypoint()
    } else {
        start.container.entry_point.clone()
    };
    let arguments = if start.container.command.is_empty() {
        start.image.cmd()
    } else {
        start.container.command.clone()
    };
    let user = start
        .container
        .user
        .clone()
        .unwrap_or_else(|| start.image.user());
    let chroot = crate::cmd::which("chroot").context("chroot (coreutils) starts the container")?;
    let mut command = twin.command(start.host, chroot)?;
    command.arg(format!("--userspec={user}")).arg(&rootfs);
    if foreign(start.image.architecture()) {
        std::fs::copy(qemu()?, rootfs.join("qemu-aarch64-static"))?;
        command.arg("/qemu-aarch64-static");
    }
    command
        .args(entry_point)
        .args(arguments)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)));
    Ok(command)
}

/// Where a task's files live under the twin's folder.
pub fn task_dir(twin: &Twin, host: &str) -> PathBuf {
    twin.dir().join("tasks").join(host)
}
