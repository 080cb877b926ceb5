//! The Lambda binary against two references started cold under the same local Runtime API in
//! the same run: the naive function doing the same two calls (`examples/naive.rs`: the secret
//! with a default `aws_config` load, one POST with a default `reqwest` client), the goal's
//! reference; and a bare `lambda_runtime` echo, the floor. Process start to first completed
//! invocation (the real one reads its secret from moto and makes one signed POST), then warm
//! invocations.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use opskit::runtime_api::{Outcome, RuntimeApi};
use secrecy::ExposeSecret;
use shared_auth::{Component, SecretSet};
use testkit::receiver::Receiver;
use testkit::services::Moto;

use super::cgroup::{self, Cgroup};
use super::{BenchSettings, Binaries, Row, percentile};
use crate::support::artifacts;
use crate::support::context::settings_for;

const SIGN_UP: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../post-confirm/tests/fixtures/sign-up.json"
));
/// Warm invocations measured per function.
const WARM: usize = 200;
/// The Lambda package size the issue sets as the goal, in MB.
const ZIP_GOAL_MB: f64 = 3.0;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the functions call: a receiver verifying as the api does (the real function's), one
/// for the naive reference (its unsigned POSTs are refused; only their cost counts), and each
/// function's environment.
struct Targets {
    receiver: Receiver,
    _naive_receiver: Receiver,
    real_env: Vec<(String, String)>,
    naive_env: Vec<(String, String)>,
}

/// The local contract, a secret in moto, the receivers as the functions' api.
async fn targets(moto: &Moto) -> Result<Targets> {
    let aws = shared_auth::AwsSettings {
        endpoint_url: Some(moto.endpoint()),
        ..testkit::local_aws_region()
    };
    let sm = aws_sdk_secretsmanager::Client::new(&shared_aws::sdk_config(&aws).await);
    let secret = testkit::secrets::new_secret()?;
    let secret_id = format!("tollgate/bench/{}", uuid::Uuid::new_v4().simple());
    testkit::secrets::put_secret(&sm, &secret_id, &secret).await?;
    let contract = shared_auth::load_for(
        Component::Lambda,
        &[("TOLLGATE_ENV".to_owned(), "local".to_owned())]
            .into_iter()
            .collect(),
    )?
    .guard;
    let secrets = || SecretSet::new(secret.expose_secret().into(), None).context("secret");
    let receiver = Receiver::start(contract.clone(), secrets()?).await;
    let naive_receiver = Receiver::start(contract, secrets()?).await;
    let naive_env = vec![
        ("NAIVE_SECRET_ID".to_owned(), secret_id.clone()),
        (
            "NAIVE_URL".to_owned(),
            format!("{}/user", naive_receiver.base_url()),
        ),
        (
            "AWS_REGION".to_owned(),
            aws.region.clone().context("the local region")?,
        ),
        ("AWS_ENDPOINT_URL".to_owned(), moto.endpoint()),
        // As Lambda gives the execution role's session to every function.
        ("AWS_ACCESS_KEY_ID".to_owned(), "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "testing".to_owned()),
        ("AWS_SESSION_TOKEN".to_owned(), "testing".to_owned()),
    ];
    let real_env = vec![
        ("TOLLGATE_ENV".to_owned(), "local".to_owned()),
        (
            "TOLLGATE__LAMBDA__API_BASE_URL".to_owned(),
            receiver.base_url(),
        ),
        ("TOLLGATE__GUARD__SECRET_ID".to_owned(), secret_id),
        ("TOLLGATE__AWS__ENDPOINT_URL".to_owned(), moto.endpoint()),
    ];
    Ok(Targets {
        receiver,
        _naive_receiver: naive_receiver,
        real_env,
        naive_env,
    })
}

/// The sign-up function's and the naive function's cold starts, each held to the CPU share
/// Lambda gives `memory_mb` ([`cgroup::lambda_vcpu`]), alternating: the median pair's ratio.
pub async fn at_share(
    s: &BenchSettings,
    bin: &Binaries,
    moto: &Moto,
    memory_mb: f64,
) -> Result<Vec<Row>> {
    let Targets {
        receiver,
        _naive_receiver,
        real_env,
        naive_env,
    } = targets(moto).await?;
    let vcpu = cgroup::lambda_vcpu(memory_mb);
    let (post_confirm, naive, n) = (bin.post_confirm.clone(), bin.naive.clone(), s.cold_starts);
    let (real_log, naive_log) = (
        s.dir.join("post-confirm-share.log"),
        s.dir.join("naive-share.log"),
    );
    let pairs = tokio::task::spawn_blocking(move || -> Result<Vec<(f64, f64)>> {
        eprintln!(
            "· Lambda: {n} cold starts of each function held to {vcpu:.3} vCPU ({memory_mb} MB)"
        );
        let cgroup = Cgroup::limited("lambda", vcpu)?;
        (0..n)
            .map(|_| {
                Ok((
                    cold_start(&post_confirm, &real_env, &real_log, Some(&cgroup))?,
                    cold_start(&naive, &naive_env, &naive_log, Some(&cgroup))?,
                ))
            })
            .collect()
    })
    .await
    .context("the Lambda runs at its share")??;
    all_verified(&receiver)?;
    Ok(vec![
        Row::paired(
            "Lambda start at its memory's CPU share ÷ naive",
            "ms",
            "the naive function at the same share",
            None,
            &pairs,
        )
        .lower_is_better(),
    ])
}

/// Fails unless the receiver verified every registration the function sent: a cold start that
/// was fast because its request was wrong counts for nothing.
fn all_verified(receiver: &Receiver) -> Result<()> {
    if receiver.calls().iter().any(|c| !c.verified) {
        bail!("the receiver could not verify a bench registration");
    }
    Ok(())
}

/// Times of each function, in milliseconds: cold starts, then warm invocations.
struct Timings {
    real_cold: Vec<f64>,
    naive_cold: Vec<f64>,
    echo_cold: Vec<f64>,
    real_warm: Vec<f64>,
    echo_warm: Vec<f64>,
}

pub async fn rows(s: &BenchSettings, bin: &Binaries, moto: &Moto) -> Result<Vec<Row>> {
    let Targets {
        receiver,
        _naive_receiver,
        real_env,
        naive_env,
    } = targets(moto).await?;
    let log = |name: &str| s.dir.join(format!("{name}.log"));
    let (real_log, naive_log, echo_log) = (log("post-confirm"), log("naive"), log("echo"));
    // The runs block (the Runtime API answers on threads); the receivers need this runtime
    // free meanwhile.
    let (post_confirm, naive, echo, cold_starts) = (
        bin.post_confirm.clone(),
        bin.naive.clone(),
        bin.echo.clone(),
        s.cold_starts,
    );
    let Timings {
        real_cold,
        naive_cold,
        echo_cold,
        mut real_warm,
        mut echo_warm,
    } = tokio::task::spawn_blocking(move || -> Result<Timings> {
        eprintln!("· Lambda: {cold_starts} cold starts of each function, alternating");
        let (mut real_cold, mut naive_cold, mut echo_cold) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..cold_starts {
            real_cold.push(cold_start(&post_confirm, &real_env, &real_log, None)?);
            naive_cold.push(cold_start(&naive, &naive_env, &naive_log, None)?);
            echo_cold.push(cold_start(&echo, &[], &echo_log, None)?);
        }
        eprintln!("· Lambda: {WARM} warm invocations of each function");
        Ok(Timings {
            real_cold,
            naive_cold,
            echo_cold,
            real_warm: warm(&post_confirm, &real_env, &real_log)?,
            echo_warm: warm(&echo, &[], &echo_log)?,
        })
    })
    .await
    .context("the Lambda runs")??;
    all_verified(&receiver)?;

    let zip = artifacts::lambda_zip(&settings_for("local")?)?;
    let zip_mb = std::fs::metadata(&zip)?.len() as f64 / 1e6;
    Ok(table(
        &real_cold,
        &naive_cold,
        &echo_cold,
        &mut real_warm,
        &mut echo_warm,
        zip_mb,
    ))
}

/// The rows: the cold start beside the naive function's (the goal) and the echo's (the floor),
/// each the median of the alternating cold starts' ratios; the warm timings beside the echo's,
/// and the zip beside its goal.
fn table(
    real_cold: &[f64],
    naive_cold: &[f64],
    echo_cold: &[f64],
    real_warm: &mut [f64],
    echo_warm: &mut [f64],
    zip_mb: f64,
) -> Vec<Row> {
    let pairs = |reference: &[f64]| -> Vec<(f64, f64)> {
        real_cold
            .iter()
            .copied()
            .zip(reference.iter().copied())
            .collect()
    };
    let single = |name, ours, reference, reference_name, goal| Row {
        name,
        ours,
        reference,
        unit: "ms",
        reference_name,
        goal,
        lower_is_better: true,
        ratios: Vec::new(),
    };
    vec![
        Row::paired(
            "Lambda start → first invocation ÷ naive",
            "ms",
            "the same two calls, SDK and client as defaults",
            Some(0.70),
            &pairs(naive_cold),
        )
        .lower_is_better(),
        Row::paired(
            "Lambda start → first invocation ÷ echo",
            "ms",
            "bare lambda_runtime echo (the floor)",
            None,
            &pairs(echo_cold),
        )
        .lower_is_better(),
        single(
            "Lambda warm invocation p50 ÷ echo",
            percentile(real_warm, 50.0),
            percentile(echo_warm, 50.0),
            "bare lambda_runtime echo",
            None,
        ),
        single(
            "Lambda warm invocation p99 ÷ echo",
            percentile(real_warm, 99.0),
            percentile(echo_warm, 99.0),
            "bare lambda_runtime echo",
            None,
        ),
        Row {
            unit: "MB",
            ..single(
                "bootstrap.zip size ÷ 3 MB",
                zip_mb,
                ZIP_GOAL_MB,
                "the goal itself",
                Some(1.0),
            )
        },
    ]
}

fn spawn(
    binary: &Path,
    runtime: &RuntimeApi,
    env: &[(String, String)],
    log: &Path,
    cgroup: Option<&Cgroup>,
) -> Result<Killed> {
    let log = std::fs::File::create(log)?;
    let mut command = match cgroup {
        Some(cgroup) => cgroup.command(binary),
        None => Command::new(binary),
    };
    let child = command
        .env_clear()
        // The cgroup's shell is found on PATH; the function itself reads nothing from it.
        .env("PATH", "/usr/bin:/bin")
        .envs(runtime.lambda_env("bench"))
        .envs(env.iter().cloned())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    Ok(Killed(child))
}

/// Milliseconds from spawning the process (in `cgroup`, if given) to its first invocation's
/// result.
fn cold_start(
    binary: &Path,
    env: &[(String, String)],
    log: &Path,
    cgroup: Option<&Cgroup>,
) -> Result<f64> {
    let runtime = RuntimeApi::start()?;
    let started = Instant::now();
    let _process = spawn(binary, &runtime, env, log, cgroup)?;
    let outcome = runtime.invoke(SIGN_UP, Duration::from_secs(5));
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    match outcome {
        Outcome::Response(_) => Ok(elapsed),
        other => bail!(
            "{}: {other:?} (its log: {})",
            binary.display(),
            log.display()
        ),
    }
}

/// Milliseconds per invocation of one warm process, after a first one.
fn warm(binary: &Path, env: &[(String, String)], log: &Path) -> Result<Vec<f64>> {
    let runtime = RuntimeApi::start()?;
    let _process = spawn(binary, &runtime, env, log, None)?;
    runtime.invoke(SIGN_UP, Duration::from_secs(5));
    let mut samples = Vec::with_capacity(WARM);
    for _ in 0..WARM {
        let started = Instant::now();
        match runtime.invoke(SIGN_UP, Duration::from_secs(5)) {
            Outcome::Response(_) => samples.push(started.elapsed().as_secs_f64() * 1e3),
            other => bail!(
                "{}: {other:?} (its log: {})",
                binary.display(),
                log.display()
            ),
        }
    }
    Ok(samples)
}
