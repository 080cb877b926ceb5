//! A Lambda function as Lambda runs a custom runtime: the configuration read back from
//! Lambda, the zip it holds (its SHA-256 must be the configuration's `CodeSha256`) opened into
//! the task root, and `bootstrap` started in the namespace of the function's network interface
//! (one of its VPC subnets, with its security groups) with the function's environment, the
//! variables Lambda sets for a custom runtime, the execution role's session, and a Runtime API
//! on the sandbox's loopback.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_sdk_lambda::Client as Lambda;
use sha2::{Digest, Sha256};

use super::credentials::Session;
use super::{Difference, arm64_sysroot, foreign, qemu};
use crate::aws::AwsContext;
use crate::runtime_api::{Outcome, RuntimeApi};
use crate::twin::Twin;

/// A function's configuration, as Lambda reads it back.
#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    pub role: String,
    pub environment: Vec<(String, String)>,
    pub subnets: Vec<String>,
    pub groups: Vec<String>,
    /// `arm64` or `x86_64`.
    pub architecture: String,
    pub handler: String,
    pub runtime: String,
    pub memory_mb: i32,
    pub timeout: Duration,
    /// Base64 of the SHA-256 of the deployed zip.
    pub code_sha256: String,
}

impl Function {
    pub async fn describe(lambda: &Lambda, name: &str) -> Result<Self> {
        let c = lambda
            .get_function_configuration()
            .function_name(name)
            .send()
            .await
            .aws(&format!("cannot read the function {name}"))?;
        let mut environment: Vec<(String, String)> = c
            .environment()
            .and_then(|e| e.variables())
            .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        environment.sort();
        let vpc = c.vpc_config();
        Ok(Function {
            name: c.function_name().unwrap_or(name).to_owned(),
            role: c.role().context("the function has no role")?.to_owned(),
            environment,
            subnets: vpc.map(|v| v.subnet_ids().to_vec()).unwrap_or_default(),
            groups: vpc
                .map(|v| v.security_group_ids().to_vec())
                .unwrap_or_default(),
            architecture: c
                .architectures()
                .first()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_else(|| "x86_64".to_owned()),
            handler: c.handler().unwrap_or("bootstrap").to_owned(),
            runtime: c
                .runtime()
                .map(|r| r.as_str().to_owned())
                .unwrap_or_default(),
            memory_mb: c.memory_size().unwrap_or(128),
            timeout: Duration::from_secs(u64::try_from(c.timeout().unwrap_or(3)).unwrap_or(3)),
            code_sha256: c.code_sha256().unwrap_or_default().to_owned(),
        })
    }
}

/// A function running in the twin under its own Runtime API.
#[derive(Debug)]
pub struct Sandbox {
    pub function: Function,
    pub host: String,
    runtime: RuntimeApi,
    service: String,
    /// The file the host's clock offset is read from, when it can be stepped.
    clock: Option<PathBuf>,
}

/// Everything a function's start needs.
#[derive(Debug)]
pub struct Start<'a> {
    pub function: &'a Function,
    /// The zip `deploy` built: it must be the one Lambda holds.
    pub zip: &'a Path,
    /// The twin's interface the function runs in.
    pub host: &'a str,
    pub region: &'a str,
    pub session: &'a Session,
    pub differences: &'a [Difference],
    /// Which execution environment of the function this is: Lambda runs concurrent invocations
    /// in environments of their own (0 is the first; each has its own task root and process).
    pub instance: u32,
    /// Whether the host's wall clock can be stepped while the function runs
    /// ([`Sandbox::step_clock`]), as NTP or a paused host steps one.
    pub steppable_clock: bool,
}

/// The variables Lambda sets for a custom runtime (AWS Lambda Developer Guide, *Defined
/// runtime environment variables*), for `function` at `task_root`.
pub fn platform_env(
    function: &Function,
    region: &str,
    runtime_api: &str,
    task_root: &Path,
) -> Vec<(String, String)> {
    let name = &function.name;
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            function.memory_mb.to_string(),
        ),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "twin".to_owned()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("AWS_REGION", region.to_owned()),
        ("AWS_DEFAULT_REGION", region.to_owned()),
        (
            "AWS_EXECUTION_ENV",
            format!("AWS_Lambda_{}", function.runtime),
        ),
        ("_HANDLER", function.handler.clone()),
        ("LAMBDA_TASK_ROOT", task_root.display().to_string()),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime".to_owned()),
        ("TZ", ":UTC".to_owned()),
        ("LANG", "en_US.UTF-8".to_owned()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The zip's SHA-256 as Lambda reports it (`CodeSha256`: base64).
pub fn code_sha256(zip: &Path) -> Result<String> {
    use base64::Engine;
    let bytes = std::fs::read(zip).with_context(|| format!("cannot read {}", zip.display()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes)))
}

impl Sandbox {
    /// Opens the zip into a task root under the twin's folder and starts `bootstrap` in
    /// `start.host`'s namespace; returns once the runtime polls for its first event.
    pub fn start(twin: &mut Twin, start: &Start<'_>) -> Result<Self> {
        let f = start.function;
        let task_root = open(twin, start)?;
        let runtime = twin.inside(Some(start.host), RuntimeApi::start)??;
        let clock = if start.steppable_clock {
            let file = task_root.with_extension("clock");
            std::fs::write(&file, "+0\n")
                .with_context(|| format!("cannot write {}", file.display()))?;
            Some(file)
        } else {
            None
        };
        let mut command = if foreign(&f.architecture) {
            let sysroot = arm64_sysroot().context(
                "the arm64 function needs Debian's arm64 C library: apt-get install libc6-arm64-cross (or `cargo xtask setup`)",
            )?;
            let mut c = twin.command(start.host, qemu()?)?;
            c.arg("-L").arg(sysroot);
            if let Some(file) = &clock {
                c.args(steppable_clock(file)?);
            }
            c.arg(task_root.join("bootstrap"));
            c
        } else if clock.is_some() {
            bail!(
                "a steppable host clock is played for the arm64 artifacts only (libfaketime under qemu)"
            );
        } else {
            twin.command(start.host, task_root.join("bootstrap"))?
        };
        command
            .current_dir(&task_root)
            .env_clear()
            .envs(f.environment.iter().map(|(k, v)| (k, v)))
            .envs(platform_env(
                f,
                start.region,
                &runtime.address(),
                &task_root,
            ))
            .envs(start.session.lambda_env())
            .envs(
                start
                    .differences
                    .iter()
                    .filter(|d| d.is_variable())
                    .map(|d| (&d.name, &d.value)),
            );
        let service = match start.instance {
            0 => format!("fn-{}", start.host),
            n => format!("fn-{}-{n}", start.host),
        };
        let log = twin.spawn(&service, command)?;
        if !runtime.wait_for_polls(1, Duration::from_secs(60)) {
            bail!(
                "{} never asked for an event ({}); see {}",
                f.name,
                runtime
                    .init_error()
                    .unwrap_or_else(|| "no init error".into()),
                log.display()
            );
        }
        Ok(Sandbox {
            function: f.clone(),
            host: start.host.to_owned(),
            runtime,
            service,
            clock,
        })
    }

    /// Steps the host's wall clock to `ahead` of the real time (zero: right again), as NTP
    /// steps one; its monotonic clock runs on undisturbed, as a step leaves it. Returns once
    /// the function tells time by it (libfaketime re-reads the file every second); the Runtime
    /// API's deadlines follow then, so the two agree as on one host.
    pub async fn step_clock(&self, ahead: Duration) -> Result<()> {
        let file = self.clock.as_ref().with_context(|| {
            format!(
                "{} was started with a clock that cannot be stepped",
                self.service
            )
        })?;
        std::fs::write(file, format!("+{}s\n", ahead.as_secs()))
            .with_context(|| format!("cannot write {}", file.display()))?;
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        self.runtime.set_clock_ahead(ahead);
        Ok(())
    }

    /// Invokes the function with `payload`, within its timeout, on a blocking thread.
    pub async fn invoke(&self, payload: String) -> Outcome {
        let runtime = self.runtime.clone();
        let budget = self.function.timeout;
        tokio::task::spawn_blocking(move || runtime.invoke(&payload, budget))
            .await
            .unwrap_or(Outcome::TimedOut)
    }

    /// The twin's service name of this function (its log is `<service>.log`).
    pub fn service(&self) -> &str {
        &self.service
    }
}

/// qemu's arguments that run the guest on a wall clock offset by what `file` says, re-read
/// every second: libfaketime preloaded into it (`-E` sets the guest's environment alone),
/// monotonic clocks left alone.
fn steppable_clock(file: &Path) -> Result<Vec<String>> {
    let lib = opskit::locate::arm64_faketime().with_context(|| {
        format!(
            "{} steps a function's clock: `cargo xtask setup` brings it",
            opskit::locate::ARM64_FAKETIME
        )
    })?;
    Ok([
        format!("LD_PRELOAD={}", lib.display()),
        format!("FAKETIME_TIMESTAMP_FILE={}", file.display()),
        "FAKETIME_CACHE_DURATION=1".to_owned(),
        "FAKETIME_DONT_FAKE_MONOTONIC=1".to_owned(),
    ]
    .into_iter()
    .flat_map(|variable| ["-E".to_owned(), variable])
    .collect())
}

/// The zip Lambda holds, opened into the function's task root: its SHA-256 must be the
/// configuration's `CodeSha256`, its runtime a custom one, and it must hold `bootstrap`.
fn open(twin: &Twin, start: &Start<'_>) -> Result<PathBuf> {
    let f = start.function;
    let sha = code_sha256(start.zip)?;
    if sha != f.code_sha256 {
        bail!(
            "{} is not what {} holds (CodeSha256 {} ≠ {sha}): the runner starts the deployed artifact only",
            start.zip.display(),
            f.name,
            f.code_sha256
        );
    }
    if !f.runtime.starts_with("provided") {
        bail!(
            "{} runs on {}: the runner starts custom runtimes (provided.*) only",
            f.name,
            f.runtime
        );
    }
    let task_root = task_root(twin, &f.name, start.instance);
    if task_root.exists() {
        std::fs::remove_dir_all(&task_root)?;
    }
    std::fs::create_dir_all(&task_root)?;
    let unzip = crate::cmd::which("unzip")
        .context("unzip opens the function's zip: apt-get install unzip")?;
    crate::cmd::run(
        Command::new(unzip)
            .arg("-q")
            .arg(start.zip)
            .arg("-d")
            .arg(&task_root),
    )?;
    if !task_root.join("bootstrap").is_file() {
        bail!("{}'s zip holds no bootstrap", f.name);
    }
    Ok(task_root)
}

fn task_root(twin: &Twin, function: &str, instance: u32) -> PathBuf {
    let task = match instance {
        0 => "task".to_owned(),
        n => format!("task-{n}"),
    };
    twin.dir().join("functions").join(function).join(task)
}
