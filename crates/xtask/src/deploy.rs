//! `cargo xtask deploy --env E`: from source to a running stack in one command — build the
//! Lambda's zip and the api image, push the image, plan and apply with the image named by
//! digest (new code rolls the service; unchanged code plans nothing), then give the secrets
//! their first versions.

use anyhow::{Result, bail};
use aws_sdk_secretsmanager::Client as SecretsManager;
use secrecy::SecretString;
use testkit::aws::explain;
use testkit::cmd;

use crate::context::{block_on, check_local_aws, confirm, settings_for};
use crate::{flags, image, package, terraform};

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
        let api_image = package::api_image(&settings, self.api_binary.as_deref())?;
        let registry = block_on(image::registry_for(&settings))?;
        let reference =
            image::Reference::new(&registry, &image::repository(env), &api_image).to_string();
        let dir = terraform::prepare(&settings, &zip, &reference)?;
        if !self.plan {
            if !block_on(image::repository_exists(&settings))? {
                confirm(
                    &format!("First deploy of `{env}`: create its ECR repository now?"),
                    self.yes,
                )?;
                eprintln!("· creating the image repository before the first push");
                cmd::run(terraform::terraform(&dir).args([
                    "apply",
                    "-input=false",
                    "-auto-approve",
                    "-target=aws_ecr_repository.api",
                ]))?;
            }
            block_on(image::push(&settings, &api_image))?;
        }
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
