//! Terraform in an environment's working folder, `target/tollgate/tf/<env>/`: a copy of
//! `infra/*.tf`, a backend file written here (S3 with native locking from
//! `deploy.state_bucket`, or local state for `--env local`) and `terraform.tfvars.json`
//! rendered from the contract.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use opskit::cmd;
use serde_json::Value;
use shared_auth::Settings;

use crate::support::context::{lock_file, work_dir, workspace_root};
use crate::support::render;

/// Where a plugin mirror is kept on machines without registry access (Terraform providers).
const PLUGIN_MIRROR: &str = "/opt/tf-plugins";

/// Terraform's dependency lock file.
const LOCK_FILE: &str = ".terraform.lock.hcl";

pub fn tf_dir(env: &str) -> PathBuf {
    work_dir().join("tf").join(env)
}

/// The working folder of `env` held by one deploy or destroy of this checkout: a second one
/// at once would rewrite the folder (its `*.tf`, backend and variables, the saved plan) under
/// the first. Released on drop. Terraform's state lock guards the state, not this folder.
pub struct FolderLock {
    _file: std::fs::File,
}

impl FolderLock {
    /// Holds `env`'s folder, or fails at once naming the run that holds it.
    pub fn acquire(env: &str) -> Result<Self> {
        Self::acquire_at(&tf_dir(env).with_file_name(format!("{env}.lock")), env)
    }

    fn acquire_at(path: &Path, env: &str) -> Result<Self> {
        let file = lock_file(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another deploy or destroy of `{env}` is running from this checkout (it holds {}): \
                 let it end first; two at once would rewrite its Terraform folder under it",
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

/// A Terraform command in the environment's working folder.
pub fn terraform(dir: &Path) -> Command {
    let mut c = Command::new("terraform");
    c.current_dir(dir)
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_INPUT", "0");
    c
}

/// The working folder of an environment deployed from this checkout.
pub fn deployed_dir(env: &str) -> Result<PathBuf> {
    let dir = tf_dir(env);
    if !dir.join("backend.tf").is_file() {
        bail!(
            "`{env}` has not been deployed from this checkout (no {}): run `cargo xtask deploy --env {env}` first",
            dir.display()
        );
    }
    Ok(dir)
}

/// Copies the stack, writes the backend and variables, and runs `terraform init`.
pub fn prepare(settings: &Settings, lambda_zip: &Path, api_image: &str) -> Result<PathBuf> {
    if cmd::which("terraform").is_none() {
        bail!(
            "terraform is not installed (1.11 or newer): https://developer.hashicorp.com/terraform/install"
        );
    }
    let dir = tf_dir(&settings.env);
    copy_stack(&dir)?;
    std::fs::write(dir.join("backend.tf"), backend(settings))?;
    let vars = render::tfvars(settings, lambda_zip, api_image);
    std::fs::write(
        dir.join("terraform.tfvars.json"),
        serde_json::to_string_pretty(&vars)?,
    )?;
    let mut init = terraform(&dir);
    init.args(["init", "-input=false", "-no-color", "-reconfigure"]);
    if Path::new(PLUGIN_MIRROR).is_dir() {
        init.arg(format!("-plugin-dir={PLUGIN_MIRROR}"));
    }
    cmd::output(&mut init).context("terraform init failed")?;
    Ok(dir)
}

/// Sets one input variable in the folder's `terraform.tfvars.json` (written by [`prepare`]): a
/// value only known once the folder is initialised, such as what the previous state says.
pub fn set_variable(dir: &Path, name: &str, value: Value) -> Result<()> {
    let path = dir.join("terraform.tfvars.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut vars: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    vars.as_object_mut()
        .with_context(|| format!("{} is not an object", path.display()))?
        .insert(name.to_owned(), value);
    std::fs::write(&path, serde_json::to_string_pretty(&vars)?)?;
    Ok(())
}

/// Replaces the folder's `*.tf` with the ones in `infra/`.
fn copy_stack(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)? {
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
    // The stack's own modules (`source = "./modules/…"`), whole: a module removed from infra/
    // must not linger in the folder.
    let modules = dir.join("modules");
    if modules.exists() {
        std::fs::remove_dir_all(&modules)?;
    }
    copy_modules(&workspace_root().join("infra").join("modules"), &modules)?;
    // The provider hashes, when the provider-lock workflow has committed them: init then
    // refuses a provider package whose hash differs.
    let lock = workspace_root().join("infra").join(LOCK_FILE);
    if lock.is_file() {
        std::fs::copy(&lock, dir.join(LOCK_FILE))?;
    }
    Ok(())
}

/// Every module's `*.tf` under `from`, folder by folder; a module's own `tests/` stay behind
/// (they are `terraform test`'s, run by the stack's tests, never by a deploy).
fn copy_modules(from: &Path, to: &Path) -> Result<()> {
    if !from.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        let Some(name) = path.file_name() else {
            continue;
        };
        if path.is_dir() && name != "tests" {
            copy_modules(&path, &to.join(name))?;
        } else if path.extension().is_some_and(|e| e == "tf") {
            std::fs::copy(&path, to.join(name))?;
        }
    }
    Ok(())
}

/// The state's backend: S3 with native locking wherever a state bucket is named (on a local
/// AWS too, its S3 standing in, so the shipped environments keep their state as in AWS), else
/// a local file.
fn backend(settings: &Settings) -> String {
    let Some(bucket) = settings
        .deploy
        .state_bucket
        .as_deref()
        .filter(|b| !b.is_empty())
    else {
        return "terraform {\n  backend \"local\" {\n    path = \"terraform.tfstate\"\n  }\n}\n"
            .to_owned();
    };
    let mut lines = vec![
        format!("bucket       = \"{bucket}\""),
        format!(
            "key          = \"tollgate/{}/terraform.tfstate\"",
            settings.env
        ),
        format!(
            "region       = \"{}\"",
            settings.aws.region.as_deref().unwrap_or("ap-northeast-1")
        ),
        "encrypt      = true".to_owned(),
        "use_lockfile = true".to_owned(),
    ];
    if let Some(endpoint) = &settings.aws.endpoint_url {
        lines.extend([
            format!("endpoints    = {{ s3 = \"{endpoint}\", sts = \"{endpoint}\" }}"),
            "use_path_style              = true".to_owned(),
            "skip_credentials_validation = true".to_owned(),
            "skip_requesting_account_id  = true".to_owned(),
            "skip_metadata_api_check     = true".to_owned(),
            "access_key                  = \"test\"".to_owned(),
            "secret_key                  = \"test\"".to_owned(),
        ]);
    }
    let body: String = lines.iter().map(|l| format!("    {l}\n")).collect();
    format!("terraform {{\n  backend \"s3\" {{\n{body}  }}\n}}\n")
}

/// `terraform output -json` of an environment, as name → value.
pub fn outputs(env: &str) -> Result<HashMap<String, Value>> {
    outputs_in(&deployed_dir(env)?)
}

/// `terraform output -json` in an initialised folder (empty before a first apply).
pub fn outputs_in(dir: &Path) -> Result<HashMap<String, Value>> {
    let text = cmd::output(terraform(dir).args(["output", "-json", "-no-color"]))?;
    let raw: HashMap<String, Value> =
        serde_json::from_str(&text).context("terraform output is not JSON")?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| (k, v["value"].clone()))
        .collect())
}

/// One output as a string, or an error that says how to get it.
pub fn output_str(outputs: &HashMap<String, Value>, key: &str) -> Result<String> {
    outputs
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| {
            format!("terraform output `{key}` is missing: re-run `cargo xtask deploy`")
        })
}

/// One output as a list of strings (empty when it is missing or not a list of strings).
pub fn output_strs(outputs: &HashMap<String, Value>, key: &str) -> Vec<String> {
    outputs
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Prints the outputs as an aligned `name  value` list.
pub fn print_outputs(outputs: &HashMap<String, Value>) {
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

/// `-target=` arguments for a targeted apply of `targets` in the folder `dir`, with every
/// resource a `moved` block is still to move: Terraform refuses a targeted plan that leaves
/// out a pending move ("Moved resource instances excluded by targeting"), which is what an
/// environment deployed before a `moved` block meets on its first targeted apply after it.
pub fn target_args(dir: &Path, targets: &[&str]) -> Result<Vec<String>> {
    let mut config = String::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "tf") {
            config.push_str(&std::fs::read_to_string(&path)?);
            config.push('\n');
        }
    }
    let held = cmd::output(terraform(dir).args(["state", "list"])).unwrap_or_default();
    let held: Vec<&str> = held.lines().map(str::trim).collect();
    Ok(targets
        .iter()
        .map(|t| (*t).to_owned())
        .chain(pending_moves(&config, &held))
        .map(|t| format!("-target={t}"))
        .collect())
}

/// Both ends of each `moved { from = … to = … }` block in `config` whose `from` `held` (the
/// state's addresses) still holds, as the resource or any of its instances: Terraform needs
/// the old address and the new one in a targeted plan.
fn pending_moves(config: &str, held: &[&str]) -> Vec<String> {
    let mut moves = Vec::new();
    let mut block: Option<(String, String)> = None;
    let value = |line: &str, key: &str| {
        let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?;
        Some(rest.trim().to_owned())
    };
    for line in config.lines().map(str::trim) {
        if line.starts_with("moved {") || line == "moved{" {
            block = Some(Default::default());
        } else if let Some((from, to)) = block.as_mut() {
            if line == "}" {
                let instance = format!("{from}[");
                if held.iter().any(|a| *a == from || a.starts_with(&instance)) {
                    moves.extend([from.clone(), to.clone()]);
                }
                block = None;
            } else if let Some(v) = value(line, "from") {
                *from = v;
            } else if let Some(v) = value(line, "to") {
                *to = v;
            }
        }
    }
    moves
}

/// `terraform show -json` of the saved plan `file` in `dir`.
pub fn show_plan(dir: &Path, file: &str) -> Result<Value> {
    let text = cmd::output(terraform(dir).args(["show", "-json", "-no-color", file]))?;
    serde_json::from_str(&text).context("terraform show of the plan is not JSON")
}

/// The managed resources in the state of the folder `dir`, by address (`aws_subnet.private[0]`)
/// → their attributes: what a targeted apply made, before the stack has outputs.
pub fn state_resources(dir: &Path) -> Result<BTreeMap<String, Value>> {
    let text = cmd::output(terraform(dir).args(["show", "-json", "-no-color"]))?;
    let state: Value = serde_json::from_str(&text).context("terraform show is not JSON")?;
    Ok(opskit::state::resources(&state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_targeted_apply_takes_every_move_the_state_still_needs() {
        let config = "moved {\n  from = aws_secretsmanager_secret.guard\n  to   = module.r.aws_secretsmanager_secret.key\n}\n\
                      moved {\n  from = aws_iam_role_policy.rotation_waf\n  to   = module.r.aws_iam_role_policy.static_secret\n}\n\
                      moved {\n  from = aws_wafv2_ip_set.registration\n  to   = module.r.aws_wafv2_ip_set.sources\n}\n\
                      resource \"aws_sqs_queue\" \"retry\" {\n  name = \"from\"\n}\n";
        // Deployed before the module: the secret and a counted policy still at the old address.
        let before = [
            "aws_secretsmanager_secret.guard",
            "aws_iam_role_policy.rotation_waf[0]",
            "aws_sqs_queue.retry",
        ];
        assert_eq!(
            pending_moves(config, &before),
            [
                "aws_secretsmanager_secret.guard",
                "module.r.aws_secretsmanager_secret.key",
                "aws_iam_role_policy.rotation_waf",
                "module.r.aws_iam_role_policy.static_secret",
            ]
        );
        // Moved already (or deployed after): nothing to add.
        let after = [
            "module.r.aws_secretsmanager_secret.key",
            "aws_secretsmanager_secret.guard_other",
            "aws_sqs_queue.retry",
        ];
        assert!(pending_moves(config, &after).is_empty());
    }

    #[test]
    fn one_run_at_a_time_holds_an_environments_folder() {
        let dir = std::env::temp_dir().join(format!("tollgate-tf-lock-{}", std::process::id()));
        let path = dir.join("staging.lock");
        let first = FolderLock::acquire_at(&path, "staging").expect("the first run holds it");
        let second = FolderLock::acquire_at(&path, "staging")
            .err()
            .expect("a second is refused");
        assert!(
            format!("{second:#}").contains("another deploy or destroy of `staging`"),
            "{second:#}"
        );
        drop(first);
        FolderLock::acquire_at(&path, "staging").expect("free again once the first has ended");
        std::fs::remove_dir_all(dir).ok();
    }
}
