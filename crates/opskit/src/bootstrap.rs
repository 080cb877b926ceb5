//! `infra/bootstrap` applied to a local AWS (moto): what an account's administrator applies once
//! on AWS, for the one environment of that account. `deploy --env local` applies it itself;
//! the tests and `up --network` apply it before they deploy staging or production.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The repository a local bootstrap trusts (its deploy workflow's OIDC subject).
pub const GITHUB_REPOSITORY: &str = "tollgate/tollgate";

/// `infra/bootstrap` as applied to a local AWS; destroyed when dropped, so a later run can
/// apply it again, unless [`Bootstrap::keep`] keeps it.
#[derive(Debug)]
pub struct Bootstrap {
    module: PathBuf,
    /// `terraform show -json` of its state.
    pub state: Value,
    kept: bool,
}

impl Bootstrap {
    /// Leaves the bootstrap applied (as an administrator's stays), returning its state.
    pub fn keep(mut self) -> Value {
        self.kept = true;
        std::mem::take(&mut self.state)
    }
}

impl Drop for Bootstrap {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let destroy = ["destroy", "-input=false", "-no-color", "-auto-approve"];
        let _ = Command::new("terraform")
            .current_dir(&self.module)
            .args(destroy)
            .output();
    }
}

/// What an administrator supplies to `infra/bootstrap` for the one environment of an account.
#[derive(Debug, Clone)]
pub struct Account {
    pub environment: String,
    /// The state bucket's name (`deploy.state_bucket`).
    pub state_bucket: String,
    pub hosted_zone_id: Option<String>,
    pub domain: Option<String>,
}

impl Account {
    /// The bucket a local bootstrap names when the user named none (a local state).
    pub fn unnamed_state_bucket(environment: &str) -> String {
        format!("tollgate-state-{environment}")
    }

    /// The account of `environment` as the user's `TOLLGATE__DEPLOY__…` values describe it
    /// (`rendered::account::user_values`); a throwaway bucket name where none is given (a
    /// local state).
    pub fn from_values(environment: &str, values: &[(String, String)]) -> Self {
        let value = |key: &str| {
            values
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        Account {
            environment: environment.to_owned(),
            state_bucket: value("TOLLGATE__DEPLOY__STATE_BUCKET")
                .unwrap_or_else(|| Self::unnamed_state_bucket(environment)),
            hosted_zone_id: value("TOLLGATE__DEPLOY__HOSTED_ZONE_ID"),
            domain: value("TOLLGATE__DEPLOY__DOMAIN"),
        }
    }
}

/// `infra/bootstrap` applied to the local AWS at `endpoint` (moto), in a copy under `work`, for
/// the one environment of that account. Terraform's override file points the provider at
/// moto; nothing else differs from what an administrator applies. Panics on failure (for
/// tests); [`try_apply_bootstrap`] says why instead.
pub fn apply_bootstrap(root: &Path, work: &Path, endpoint: &str, account: &Account) -> Bootstrap {
    try_apply_bootstrap(root, work, endpoint, account)
        .unwrap_or_else(|e| panic!("the bootstrap: {e:#}"))
}

/// [`apply_bootstrap`], failing with why.
pub fn try_apply_bootstrap(
    root: &Path,
    work: &Path,
    endpoint: &str,
    account: &Account,
) -> anyhow::Result<Bootstrap> {
    use anyhow::Context;
    let module = work.join("infra/bootstrap");
    let workflows = work.join(".github/workflows");
    for dir in [&module, &workflows] {
        std::fs::create_dir_all(dir).context("a work folder")?;
    }
    std::fs::copy(root.join("infra/bootstrap/main.tf"), module.join("main.tf"))?;
    std::fs::copy(
        root.join(".github/workflows/deploy.yml"),
        workflows.join("deploy.yml"),
    )?;
    std::fs::write(
        module.join("moto_override.tf"),
        format!(
            r#"provider "aws" {{
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  s3_use_path_style           = true
  endpoints {{
    iam = "{endpoint}"
    sts = "{endpoint}"
    s3  = "{endpoint}"
  }}
}}
"#
        ),
    )?;
    let vars = serde_json::json!({
        "github_repository": GITHUB_REPOSITORY,
        "environment": account.environment,
        "state_bucket": account.state_bucket,
        "hosted_zone_id": account.hosted_zone_id,
        "domain": account.domain,
    });
    std::fs::write(module.join("terraform.tfvars.json"), vars.to_string())?;
    let mut init = vec!["init", "-input=false", "-no-color"];
    let mirror = "-plugin-dir=/opt/tf-plugins";
    if Path::new("/opt/tf-plugins").is_dir() {
        init.push(mirror);
    }
    terraform(&module, &init)?;
    terraform(
        &module,
        &["apply", "-input=false", "-no-color", "-auto-approve"],
    )?;
    let shown = terraform(&module, &["show", "-json"])?;
    let state = serde_json::from_slice(&shown).context("terraform show -json")?;
    Ok(Bootstrap {
        module,
        state,
        kept: false,
    })
}

fn terraform(dir: &Path, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let out = Command::new("terraform")
        .current_dir(dir)
        .args(args)
        .env("TF_IN_AUTOMATION", "1")
        .output()
        .map_err(|e| {
            anyhow::anyhow!("terraform is needed (1.11+; https://developer.hashicorp.com/terraform/install): {e}")
        })?;
    if !out.status.success() {
        anyhow::bail!(
            "terraform {args:?} failed in {}:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}
