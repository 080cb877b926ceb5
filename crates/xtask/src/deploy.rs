//! `cargo xtask deploy --env E`: from source to a running stack — package, plan, apply, then
//! give the guard secret its first version.

use anyhow::{Result, bail};
use aws_sdk_secretsmanager::Client as SecretsManager;
use shared_auth::Settings;
use testkit::aws::explain;
use testkit::cmd;

use crate::context::{block_on, check_local_aws, confirm, settings_for};
use crate::{flags, package, terraform};

impl flags::Deploy {
    pub fn run(self) -> Result<()> {
        let env = &self.env;
        let settings = settings_for(env)?;
        eprintln!(
            "· contract for `{env}` is valid (mode {}, route {} {})",
            settings.guard.mode, settings.guard.method, settings.guard.path
        );
        check_local_aws(&settings)?;
        let zip = package::lambda_zip(&settings)?;
        let dir = terraform::prepare(&settings, &zip)?;
        eprintln!("· terraform plan (in {})", dir.display());
        cmd::run(terraform::terraform(&dir).args([
            "plan",
            "-input=false",
            "-out=tollgate.tfplan",
        ]))?;
        if self.plan {
            eprintln!("· --plan: stopping before apply");
            return Ok(());
        }
        confirm(&format!("Apply this plan to `{env}`?"), self.yes)?;
        eprintln!("· terraform apply (a full stack takes minutes; progress below)");
        cmd::run(terraform::terraform(&dir).args(["apply", "-input=false", "tollgate.tfplan"]))?;
        let outputs = terraform::outputs(env)?;
        block_on(ensure_secret_version(&settings))?;
        terraform::print_outputs(&outputs);
        eprintln!("\nnext: cargo xtask verify --env {env}");
        Ok(())
    }
}

/// Gives the guard secret a first version when it has none. The value is never printed.
async fn ensure_secret_version(settings: &Settings) -> Result<()> {
    let sm = SecretsManager::new(&testkit::sdk_config(&settings.aws).await);
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
            let value = testkit::secrets::new_secret()?;
            testkit::secrets::put_version(&sm, id, &value).await?;
            eprintln!("· guard secret `{id}`: first version written (value not shown)");
            Ok(())
        }
        Err(e) => bail!("cannot read the guard secret `{id}`: {}", explain(&e)),
    }
}
