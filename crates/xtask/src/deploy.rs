//! `cargo xtask deploy --env E`: from source to a running stack in one command — build the
//! Lambda's zip and the api image, push the image, plan and apply with the image named by
//! digest (new code rolls the service; unchanged code plans nothing), then give the secrets
//! their first versions.

use anyhow::{Result, bail};
use aws_sdk_secretsmanager::Client as SecretsManager;
use secrecy::SecretString;
use testkit::aws::explain;
use testkit::cmd;

use post_confirm::waf::{GuardRuleGroup, rule_group_name};
use shared_auth::{Settings, SigningMode};

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
            block_on(image::push(&settings, &registry, &api_image))?;
            if settings.guard.mode == SigningMode::Static {
                block_on(guard_rule_group(&settings, &dir, self.yes))?;
            }
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

/// `static` mode: the WAF rule group that checks the secret header must exist, accepting the
/// secret's versions, before the plan reads it by name. On the first deploy the secret is
/// created first (a targeted apply) and given its first version. Values go through the WAF
/// API only, never Terraform.
async fn guard_rule_group(settings: &Settings, dir: &std::path::Path, yes: bool) -> Result<()> {
    let id = &settings.guard.secret_id;
    let sdk = testkit::sdk_config(&settings.aws).await;
    let sm = SecretsManager::new(&sdk);
    if sm.describe_secret().secret_id(id).send().await.is_err() {
        confirm(
            &format!(
                "First deploy of `{}` in static mode: create the guard secret `{id}` now?",
                settings.env
            ),
            yes,
        )?;
        eprintln!("· static mode: creating the guard secret before the WAF rule that checks it");
        cmd::run(terraform::terraform(dir).args([
            "apply",
            "-input=false",
            "-auto-approve",
            "-target=aws_secretsmanager_secret.guard",
        ]))?;
    }
    ensure_first_version(&sm, "guard secret", id, testkit::secrets::new_secret).await?;
    let accepted = post_confirm::rotation::accepted_versions(&sm, id).await?;
    let name = rule_group_name(&settings.env);
    let arn = GuardRuleGroup {
        client: aws_sdk_wafv2::Client::new(&sdk),
    }
    .ensure(&name, &settings.guard, &accepted)
    .await?;
    let ids: Vec<&str> = accepted.iter().map(|a| a.version_id.as_str()).collect();
    eprintln!(
        "· WAF rule group {arn} accepts versions {} (values not shown)",
        ids.join(", ")
    );
    Ok(())
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
