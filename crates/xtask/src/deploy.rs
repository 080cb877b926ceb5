//! `cargo xtask deploy --env E`: from source to a running stack — package, plan, apply, then
//! give the guard secret its first version.

use anyhow::{Result, bail};
use aws_sdk_secretsmanager::Client as SecretsManager;
use secrecy::SecretString;
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
        block_on(async {
            let sm = SecretsManager::new(&testkit::sdk_config(&settings.aws).await);
            ensure_first_version(&sm, "guard secret", &settings.guard.secret_id, || {
                testkit::secrets::new_secret()
            })
            .await?;
            let username = terraform::output_str(&outputs, "db_app_username")?;
            ensure_first_version(
                &sm,
                "database login",
                &terraform::output_str(&outputs, "db_app_secret_arn")?,
                || testkit::secrets::new_db_credentials(&username),
            )
            .await
        })?;
        terraform::print_outputs(&outputs);
        eprintln!("\nnext: cargo xtask verify --env {env}");
        Ok(())
    }
}

/// Gives a secret its first version (from `make`) when it has none. The value is never
/// printed.
async fn ensure_first_version(
    sm: &SecretsManager,
    what: &str,
    id: &str,
    make: impl FnOnce() -> Result<SecretString>,
) -> Result<()> {
    let current = sm
        .get_secret_value()
        .secret_id(id)
        .version_stage("AWSCURRENT")
        .send()
        .await;
    match current {
        Ok(_) => {
            eprintln!("· {what} `{id}` already has a version");
            Ok(())
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            testkit::secrets::put_version(sm, id, &make()?).await?;
            eprintln!("· {what} `{id}`: first version written (value not shown)");
            Ok(())
        }
        Err(e) => bail!("cannot read the {what} `{id}`: {}", explain(&e)),
    }
}
