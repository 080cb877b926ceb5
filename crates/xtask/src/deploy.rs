//! `package`, `deploy`, `destroy`, `rotate-secret`: from source to a running stack.
//!
//! Terraform runs in `target/tollgate/tf/<env>/`: a copy of `infra/*.tf` plus a backend file
//! written here (S3 with native locking from `deploy.state_bucket`, or local state for
//! `--env local`) and `terraform.tfvars.json` rendered from the contract.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use aws_sdk_secretsmanager::Client as SecretsManager;
use secrecy::ExposeSecret;
use serde_json::Value;
use sha2::{Digest, Sha256};
use shared_auth::Settings;

use crate::{aws, cmd, render, workspace_root};

/// Highest glibc symbol version Amazon Linux 2023 provides.
pub const MAX_GLIBC: (u32, u32) = (2, 34);
/// Where a plugin mirror is kept on machines without registry access (Terraform providers).
const PLUGIN_MIRROR: &str = "/opt/tf-plugins";

/// Settings for `env`, from deploy/<env>.toml and the process's TOLLGATE__ overrides.
pub fn settings_for(env: &str) -> Result<Settings> {
    let mut vars: HashMap<String, String> = std::env::vars().collect();
    vars.insert("TOLLGATE_ENV".into(), env.to_owned());
    let settings = shared_auth::load_with(&vars).with_context(|| format!("deploy/{env}.toml"))?;
    Ok(settings)
}

fn dist_dir(env: &str) -> PathBuf {
    workspace_root().join("target").join("dist").join(env)
}

pub fn tf_dir(env: &str) -> PathBuf {
    workspace_root()
        .join("target")
        .join("tollgate")
        .join("tf")
        .join(env)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Builds `bootstrap.zip` for Lambda (Amazon Linux 2023, via cargo-lambda's zig linker) and
/// checks its glibc needs; returns the zip's path under target/dist/<env>/.
pub fn package(settings: &Settings) -> Result<PathBuf> {
    let arch = settings.deploy.lambda_architecture.as_str();
    let (flag, triple) = match arch {
        "x86_64" => ("--x86-64", "x86_64-unknown-linux-gnu"),
        _ => ("--arm64", "aarch64-unknown-linux-gnu"),
    };
    let lambda_ok = Command::new(cargo())
        .args(["lambda", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !lambda_ok {
        bail!(
            "cargo-lambda is not installed.\n  Install it: `pip install cargo-lambda` (a prebuilt binary with zig, seconds)"
        );
    }
    let installed = cmd::output(Command::new("rustup").args(["target", "list", "--installed"]))
        .unwrap_or_default();
    if !installed.lines().any(|l| l.trim() == triple) {
        eprintln!("· adding the Rust target {triple}");
        cmd::run(Command::new("rustup").args(["target", "add", triple]))?;
    }
    let root = workspace_root();
    eprintln!("· building post-confirm for {arch} Lambda (a cold build takes a few minutes)");
    let build = |extra: &[&str]| {
        cmd::run(
            Command::new(cargo())
                .current_dir(&root)
                .args([
                    "lambda",
                    "build",
                    "--release",
                    flag,
                    "--package",
                    "post-confirm",
                    "--bin",
                    "post-confirm",
                ])
                .args(extra),
        )
    };
    build(&[])?;
    let binary = root.join("target/lambda/post-confirm/bootstrap");
    let glibc = max_glibc(&binary)?;
    if glibc > MAX_GLIBC {
        bail!(
            "{} needs GLIBC_{}.{}, newer than Amazon Linux 2023's {}.{}: build it with cargo-lambda's zig linker",
            binary.display(),
            glibc.0,
            glibc.1,
            MAX_GLIBC.0,
            MAX_GLIBC.1
        );
    }
    build(&["--output-format", "zip"])?;
    let dist = dist_dir(&settings.env);
    std::fs::create_dir_all(&dist)?;
    let zip = dist.join("bootstrap.zip");
    std::fs::copy(root.join("target/lambda/post-confirm/bootstrap.zip"), &zip)?;
    let size = std::fs::metadata(&binary)?.len();
    let sums = [&zip, &binary]
        .iter()
        .map(|p| {
            Ok(format!(
                "{}  {}\n",
                sha256_hex(p)?,
                p.file_name().and_then(|n| n.to_str()).unwrap_or("?")
            ))
        })
        .collect::<Result<String>>()?;
    std::fs::write(dist.join("SHA256SUMS"), &sums)?;
    eprintln!(
        "· {}: bootstrap {:.1} MB stripped, needs GLIBC ≤ {}.{}; sums in {}",
        zip.display(),
        size as f64 / 1e6,
        glibc.0,
        glibc.1,
        dist.join("SHA256SUMS").display()
    );
    api_image_note(&dist)?;
    Ok(zip)
}

fn docker_engine() -> bool {
    Command::new("docker")
        .args(["info"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Fails, before any build, when no Docker engine answers.
pub fn require_docker(env: &str) -> Result<()> {
    if docker_engine() {
        return Ok(());
    }
    bail!(
        "--push needs a Docker engine and none answers here (`docker info` fails).\n  \
         Build and push on a machine with Docker: see deploy/api.Dockerfile (target/dist/{env}/api-image.txt)"
    )
}

/// Builds the api image and pushes it to the environment's ECR repository (`docker login` to
/// ECR first). Needs a Docker engine.
pub fn push_api_image(env: &str) -> Result<()> {
    require_docker(env)?;
    let outputs = outputs(env)?;
    let repository = outputs
        .get("ecr_repository_url")
        .and_then(Value::as_str)
        .context("no ecr_repository_url output: deploy the stack first")?;
    let tag = cmd::output(Command::new("git").args(["rev-parse", "--short=12", "HEAD"]))?;
    let image = format!("{repository}:{}", tag.trim());
    cmd::run(Command::new("docker").current_dir(workspace_root()).args([
        "buildx",
        "build",
        "--platform",
        "linux/arm64",
        "-f",
        "deploy/api.Dockerfile",
        "-t",
        &image,
        "--push",
        ".",
    ]))?;
    eprintln!("· pushed {image}; set it as the stack's api_image and deploy again");
    Ok(())
}

/// The api image needs a Docker engine; without one, say how to build it and go on.
fn api_image_note(dist: &Path) -> Result<()> {
    let engine = docker_engine();
    let context = dist.join("api-image.txt");
    let text = "build context: the repository root\n\
                dockerfile:    deploy/api.Dockerfile\n\
                build:         docker buildx build --platform linux/arm64 -f deploy/api.Dockerfile -t <ecr url>:<tag> --push .\n";
    std::fs::write(&context, text)?;
    if engine {
        eprintln!(
            "· Docker engine found: `cargo xtask package --env <env> --push` builds and pushes the api image ({})",
            context.display()
        );
    } else {
        eprintln!(
            "· no Docker engine here: the api image was not built ({} says how)",
            context.display()
        );
    }
    Ok(())
}

fn sha256_hex(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// The highest `GLIBC_x.y` symbol version an ELF binary needs (from `objdump -T`).
pub fn max_glibc(binary: &Path) -> Result<(u32, u32)> {
    let out = cmd::output(Command::new("objdump").arg("-T").arg(binary))
        .context("objdump (binutils) is needed to check the Lambda binary's glibc")?;
    Ok(parse_max_glibc(&out))
}

fn parse_max_glibc(objdump: &str) -> (u32, u32) {
    objdump
        .split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let version: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .unwrap_or((0, 0))
}

/// A Terraform command in the environment's working folder.
fn terraform(dir: &Path) -> Command {
    let mut c = Command::new("terraform");
    c.current_dir(dir)
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_INPUT", "0");
    c
}

/// Copies the stack, writes the backend and variables, and runs `terraform init`.
fn prepare(settings: &Settings, lambda_zip: &Path) -> Result<PathBuf> {
    if cmd::which("terraform").is_none() {
        bail!(
            "terraform is not installed (1.5 or newer): https://developer.hashicorp.com/terraform/install"
        );
    }
    let dir = tf_dir(&settings.env);
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "tf") {
            std::fs::remove_file(path)?;
        }
    }
    for entry in std::fs::read_dir(workspace_root().join("infra"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "tf")
            && let Some(name) = path.file_name()
        {
            std::fs::copy(&path, dir.join(name))?;
        }
    }
    let backend = match &settings.deploy.state_bucket {
        Some(bucket) if settings.aws.endpoint_url.is_none() => format!(
            "terraform {{\n  backend \"s3\" {{\n    bucket       = \"{bucket}\"\n    key          = \"tollgate/{env}/terraform.tfstate\"\n    region       = \"{region}\"\n    encrypt      = true\n    use_lockfile = true\n  }}\n}}\n",
            env = settings.env,
            region = settings.aws.region.as_deref().unwrap_or("ap-northeast-1"),
        ),
        _ => "terraform {\n  backend \"local\" {\n    path = \"terraform.tfstate\"\n  }\n}\n"
            .to_owned(),
    };
    std::fs::write(dir.join("backend.tf"), backend)?;
    let vars = render::tfvars(settings, lambda_zip);
    std::fs::write(
        dir.join("terraform.tfvars.json"),
        serde_json::to_string_pretty(&vars)?,
    )?;
    let mut init = terraform(&dir);
    init.args(["init", "-input=false", "-no-color"]);
    if Path::new(PLUGIN_MIRROR).is_dir() {
        init.arg(format!("-plugin-dir={PLUGIN_MIRROR}"));
    }
    cmd::output(&mut init).context("terraform init failed")?;
    Ok(dir)
}

/// Fails early with a clear message when the local AWS is not running.
fn check_local_aws(settings: &Settings) -> Result<()> {
    let Some(url) = &settings.aws.endpoint_url else {
        return Ok(());
    };
    let host = url
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let reachable = host
        .parse::<std::net::SocketAddr>()
        .ok()
        .is_some_and(|addr| {
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).is_ok()
        });
    if !reachable {
        bail!(
            "no local AWS at {url} (aws.endpoint_url).\n  Start one: MOTO_IAM_LOAD_MANAGED_POLICIES=true moto_server -H 127.0.0.1 -p 4566"
        );
    }
    Ok(())
}

fn confirm(question: &str, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question} needs confirmation: pass --yes to run without a terminal");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        bail!("stopped: nothing was changed")
    }
}

pub fn deploy(env: &str, plan_only: bool, yes: bool) -> Result<()> {
    let settings = settings_for(env)?;
    eprintln!(
        "· contract for `{env}` is valid (mode {}, route {} {})",
        settings.guard.mode, settings.guard.method, settings.guard.path
    );
    check_local_aws(&settings)?;
    let zip = package(&settings)?;
    let dir = prepare(&settings, &zip)?;
    eprintln!("· terraform plan (in {})", dir.display());
    cmd::run(terraform(&dir).args(["plan", "-input=false", "-out=tollgate.tfplan"]))?;
    if plan_only {
        eprintln!("· --plan: stopping before apply");
        return Ok(());
    }
    confirm(&format!("Apply this plan to `{env}`?"), yes)?;
    eprintln!("· terraform apply (a full stack takes minutes; progress below)");
    cmd::run(terraform(&dir).args(["apply", "-input=false", "tollgate.tfplan"]))?;
    let outputs = outputs(env)?;
    block_on(ensure_secret_version(&settings))?;
    print_outputs(&outputs);
    eprintln!("\nnext: cargo xtask verify --env {env}");
    Ok(())
}

/// `terraform output -json` of an environment, as name → value.
pub fn outputs(env: &str) -> Result<HashMap<String, Value>> {
    let dir = tf_dir(env);
    if !dir.join("backend.tf").is_file() {
        bail!(
            "`{env}` has not been deployed from this checkout: run `cargo xtask deploy --env {env}` first"
        );
    }
    let text = cmd::output(terraform(&dir).args(["output", "-json", "-no-color"]))?;
    let raw: HashMap<String, Value> =
        serde_json::from_str(&text).context("terraform output is not JSON")?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| (k, v["value"].clone()))
        .collect())
}

fn print_outputs(outputs: &HashMap<String, Value>) {
    let mut keys: Vec<&String> = outputs.keys().collect();
    keys.sort();
    let width = keys.iter().map(|k| k.len()).max().unwrap_or(0);
    println!();
    for k in keys {
        let v = match &outputs[k] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        println!("  {k:<width$}  {v}");
    }
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start the async runtime: {e}"))
        .block_on(f)
}

/// Gives the guard secret a first version when it has none. The value is never printed.
async fn ensure_secret_version(settings: &Settings) -> Result<()> {
    let sm = SecretsManager::new(&aws::sdk_config(&settings.aws).await);
    let id = &settings.guard.secret_id;
    let current = sm
        .get_secret_value()
        .secret_id(id)
        .version_stage("AWSCURRENT")
        .send()
        .await;
    match current {
        Ok(_) => {
            eprintln!(
                "· guard secret `{id}` already has a version (rotate with `cargo xtask rotate-secret`)"
            );
            Ok(())
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            let value = aws::new_secret()?;
            sm.put_secret_value()
                .secret_id(id)
                .secret_string(value.expose_secret())
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(aws::explain(&e)))?;
            eprintln!("· guard secret `{id}`: first version written (value not shown)");
            Ok(())
        }
        Err(e) => bail!("cannot read the guard secret `{id}`: {}", aws::explain(&e)),
    }
}

pub fn rotate_secret(env: &str) -> Result<()> {
    let settings = settings_for(env)?;
    check_local_aws(&settings)?;
    block_on(async {
        let sm = SecretsManager::new(&aws::sdk_config(&settings.aws).await);
        let value = aws::new_secret()?;
        let out = sm
            .put_secret_value()
            .secret_id(&settings.guard.secret_id)
            .secret_string(value.expose_secret())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws::explain(&e)))?;
        eprintln!(
            "· `{}`: new version {} is AWSCURRENT, the old one AWSPREVIOUS (value not shown)",
            settings.guard.secret_id,
            out.version_id().unwrap_or("?")
        );
        eprintln!(
            "  The api accepts both within api.secret_refresh_s ({} s); the Lambda switches after its \
             cache TTL ({} s) or at once on its first 403. No downtime.",
            settings.api.secret_refresh_s, settings.guard.secret_ttl_s
        );
        Ok(())
    })
}

pub fn destroy(env: &str, yes: bool) -> Result<()> {
    let settings = settings_for(env)?;
    check_local_aws(&settings)?;
    let dir = tf_dir(env);
    if !dir.join("backend.tf").is_file() {
        bail!(
            "`{env}` has not been deployed from this checkout (no {})",
            dir.display()
        );
    }
    confirm(&format!("Destroy every resource of `{env}`?"), yes)?;
    eprintln!("· terraform destroy (minutes; progress below)");
    cmd::run(terraform(&dir).args(["destroy", "-input=false", "-auto-approve"]))?;
    eprintln!("· `{env}` destroyed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_glibc_version_is_found() {
        let dump = "0000 DF *UND* 0 (GLIBC_2.17) memcpy\n0000 DF *UND* 0 (GLIBC_2.28) fcntl64\n\
                    0000 DF *UND* 0 (GLIBC_2.3.4) __chk\n0000 DF *UND* 0 (GLIBC_2.9) pipe2\n";
        assert_eq!(parse_max_glibc(dump), (2, 28));
        assert_eq!(parse_max_glibc("no versions"), (0, 0));
        assert!(parse_max_glibc("(GLIBC_2.39) x") > MAX_GLIBC);
    }
}
