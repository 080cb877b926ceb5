//! `cargo xtask deploy --env E`: from source to a running stack in one command.
//!
//! 1. Refuse at once, naming every value only the user can supply, if any is missing.
//! 2. Build the Lambda zips and the api image.
//! 3. Before the stack: the image repository and both secrets' shells exist (a targeted apply
//!    on the first deploy), each secret has its first version, the image is pushed, and in
//!    `static` mode the WAF rule group accepts the secret. So no task or rotation schedule
//!    ever starts before what it reads exists.
//! 4. Migrations: the one-off migration task (the new image, `api --migrate` as the database
//!    owner) is applied with what it needs, run, and waited for; a failure stops here.
//! 5. Plan and apply, the image named by digest (new code rolls the service; unchanged code
//!    plans nothing). The apply waits for the service to be steady, and only then attaches the
//!    rotation schedule, whose configuration test calls the api.

mod migration;

use anyhow::{Context, Result, bail};
use aws_sdk_secretsmanager::Client as SecretsManager;
use opskit::aws::{AwsContext, explain};
use opskit::cmd;
use secrecy::{ExposeSecret, SecretString};

use shared_auth::{Settings, SigningMode};
use shared_aws::versions;
use shared_aws::waf::{GuardRuleGroup, rule_group_name};

use crate::flags;
use crate::support::context::{block_on, check_local_aws, confirm, require_supplied, settings_for};
use crate::support::render::{DB_APP_LOGIN, db_app_secret_name};
use crate::support::{artifacts, dns, image, terraform};

impl flags::Deploy {
    pub fn run(self) -> Result<()> {
        // What builds and applies the stack (`cargo xtask setup --for deploy`), before anything
        // starts.
        crate::tasks::setup::ensure(crate::flags::Scope::Deploy)?;
        let env = &self.env;
        let settings = settings_for(env)?;
        require_supplied(&settings)?;
        let _folder = terraform::FolderLock::acquire(env)?;
        eprintln!(
            "· contract for `{env}` is valid (mode {}, route {} {}, api at {})",
            settings.guard.mode,
            settings.guard.method,
            settings.guard.path,
            settings.public_base_url()
        );
        check_local_aws(&settings)?;
        // `local` has no administrator: deploy applies its bootstrap. Staging and production
        // against a local AWS (the tests, `up --network`) find theirs applied, as on AWS.
        if let (shared_auth::settings::DEFAULT_ENV, Some(endpoint)) =
            (env.as_str(), &settings.aws.endpoint_url)
        {
            local_bootstrap(&settings, endpoint)?;
        }
        let zip = artifacts::lambda_zip(&settings)?;
        let api_image = artifacts::api_image(&settings, self.api_binary.as_deref())?;
        let registry = block_on(image::registry_for(&settings))?;
        let reference =
            image::Reference::new(&registry, &image::repository(env), &api_image).to_string();
        let dir = terraform::prepare(&settings, &zip, &reference)?;
        if !self.plan {
            block_on(before_the_stack(&settings, &dir, self.yes))?;
            block_on(image::push(&settings, &registry, &api_image))?;
            block_on(migration::run(&settings, &dir))?;
            if self.migration_only {
                eprintln!("· --migration-only: stopping after the migrations");
                return Ok(());
            }
        }
        block_on(rotation_schedule(&settings, &dir))?;
        eprintln!("· terraform plan (in {})", dir.display());
        cmd::run(terraform::terraform(&dir).args([
            "plan",
            "-input=false",
            "-out=tollgate.tfplan",
        ]))?;
        check_flows(&dir)?;
        if self.plan {
            eprintln!("· --plan: stopping before apply");
            return Ok(());
        }
        confirm(&format!("Apply this plan to `{env}`?"), self.yes)?;
        eprintln!(
            "· terraform apply (a full stack takes minutes; it ends once the api service is steady)"
        );
        cmd::run(terraform::terraform(&dir).args(["apply", "-input=false", "tollgate.tfplan"]))?;
        if settings.aws.endpoint_url.is_some() {
            block_on(clear_configuration_test_copy(&settings))?;
        }
        terraform::print_outputs(&terraform::outputs(env)?);
        eprintln!("\nnext: cargo xtask verify --env {env}");
        Ok(())
    }
}

/// For `--env local`, what the account's administrator does once on AWS: `infra/bootstrap` for
/// this environment (its deploy role, the stack's roles and their boundary, which the stack
/// reads and never makes). Applied every time (Terraform changes nothing when it stands); its
/// state is kept next to the environment's folder.
fn local_bootstrap(settings: &Settings, endpoint: &str) -> Result<()> {
    let d = &settings.deploy;
    let account = opskit::bootstrap::Account {
        environment: settings.env.clone(),
        state_bucket: d
            .state_bucket
            .clone()
            .unwrap_or_else(|| opskit::bootstrap::Account::unnamed_state_bucket(&settings.env)),
        hosted_zone_id: d.hosted_zone_id.clone(),
        domain: d.domain.clone(),
    };
    let work = crate::support::context::work_dir()
        .join("bootstrap")
        .join(&settings.env);
    eprintln!(
        "· local AWS: the account's bootstrap for `{}` (infra/bootstrap, in {})",
        settings.env,
        work.display()
    );
    opskit::bootstrap::try_apply_bootstrap(
        &crate::support::context::workspace_root(),
        &work,
        endpoint,
        &account,
    )
    .context("infra/bootstrap on the local AWS")?
    .keep();
    Ok(())
}

/// The network the plan would leave, decided before anything is applied (`stack_model::flows`):
/// every flow the product needs opens (routes, the NAT gateway's way out, security groups both
/// ways) and none it forbids does. A plan that fails the table is not applied.
fn check_flows(dir: &std::path::Path) -> Result<()> {
    use stack_model::flows;
    let plan = terraform::show_plan(dir, "tollgate.tfplan")?;
    let resources = stack_model::resolve_plan(&plan);
    let network = stack_model::Network::from_resources(&resources)?;
    let layout = flows::layout(&network, &resources).map_err(anyhow::Error::msg)?;
    let violations = flows::violations(&layout);
    if !violations.is_empty() {
        bail!(
            "the plan's network does not hold the product's flows; nothing was applied:\n  {}",
            violations.join("\n  ")
        );
    }
    let needed = flows::FLOWS.iter().filter(|f| f.required).count();
    eprintln!(
        "· network: the plan opens the {needed} flows the product needs and none of the {} it forbids (routes, NAT and internet gateways, security groups)",
        flows::FLOWS.len() - needed
    );
    Ok(())
}

/// Whether the guard secret's rotation schedule may attach now. Attaching it runs the
/// function's testSecret, which calls `https://<domain>`: with a hosted zone the stack's own
/// alias record points the name (the schedule depends on it); without one the user points it
/// after the first deploy (README, Deploying, step 4), so the schedule attaches on the deploy
/// after the name leads to this stack's ALB.
async fn rotation_schedule(settings: &Settings, dir: &std::path::Path) -> Result<()> {
    let d = &settings.deploy;
    let ready = match (&d.hosted_zone_id, &d.domain) {
        (Some(_), _) | (None, None) => true,
        (None, Some(domain)) => {
            let previous = terraform::outputs_in(dir).unwrap_or_default();
            let alb = terraform::output_str(&previous, "alb_dns_name").ok();
            let pointing = match &alb {
                Some(alb) => Some(dns::pointing(domain, alb).await),
                None => None,
            };
            let ready = matches!(pointing, Some(dns::Pointing::AtAlb(_)));
            if !ready && d.secret_rotation_days > 0 {
                eprintln!(
                    "· rotation schedule: not attached yet: {domain} does not lead to the ALB{} \
                     (its configuration test calls https://{domain}). Point the name at the ALB \
                     (README, Deploying, step 4), then run deploy again.",
                    alb.map(|a| format!(" {a}")).unwrap_or_default()
                );
            }
            ready
        }
    };
    terraform::set_variable(dir, "name_points_at_alb", serde_json::Value::Bool(ready))
}

/// The resources every later one reads, with their first contents: the image repository, the
/// guard secret and the api's login secret (a targeted apply creates the shells when missing),
/// each secret's first version, and in `static` mode the WAF rule group.
async fn before_the_stack(settings: &Settings, dir: &std::path::Path, yes: bool) -> Result<()> {
    let env = &settings.env;
    let sdk = shared_aws::sdk_config(&settings.aws).await;
    let sm = SecretsManager::new(&sdk);
    let login_secret = db_app_secret_name(env);
    let mut missing = Vec::new();
    if !image::repository_exists(settings).await? {
        missing.push(("aws_ecr_repository.api", "the image repository"));
    }
    if !secret_exists(&sm, &settings.guard.secret_id).await? {
        missing.push((
            "module.registration.aws_secretsmanager_secret.key",
            "the guard secret",
        ));
    }
    if !secret_exists(&sm, &login_secret).await? {
        missing.push(("aws_secretsmanager_secret.db_app", "the api's login secret"));
    }
    if !missing.is_empty() {
        let what: Vec<&str> = missing.iter().map(|(_, what)| *what).collect();
        confirm(
            &format!("First deploy of `{env}`: create {} now?", what.join(", ")),
            yes,
        )?;
        eprintln!(
            "· creating {} before the stack that reads them",
            what.join(", ")
        );
        let mut apply = terraform::terraform(dir);
        apply.args(["apply", "-input=false", "-auto-approve"]);
        let targets: Vec<&str> = missing.iter().map(|(target, _)| *target).collect();
        apply.args(terraform::target_args(dir, &targets)?);
        cmd::run(&mut apply)?;
    }
    ensure_first_version(&sm, "guard secret", &settings.guard.secret_id, || {
        shared_auth::generate_secret()
            .map_err(|e| anyhow::anyhow!("the system's random source failed: {e}"))
    })
    .await?;
    guard_key_format(&sm, &settings.guard.secret_id).await?;
    ensure_first_version(&sm, "api's login", &login_secret, || {
        let password = generated_password()?;
        let json =
            serde_json::json!({"username": DB_APP_LOGIN, "password": password.expose_secret()});
        Ok(SecretString::from(json.to_string()))
    })
    .await?;
    if settings.guard.mode == SigningMode::Static {
        guard_rule_group(settings, &sm, &sdk).await?;
    }
    Ok(())
}

fn generated_password() -> Result<SecretString> {
    shared_auth::generate_password()
        .map_err(|e| anyhow::anyhow!("the system's random source failed: {e}"))
}

/// The guard secret's current value must be a key: a Standard Webhooks key, or one of the
/// format before it, which stays accepted until a rotation replaces it (said, not refused, so
/// an environment deployed before the format moves into it without a failed sign-up). A
/// value that is neither (a malformed `whsec_` key, a short value) stops the deploy.
async fn guard_key_format(sm: &SecretsManager, id: &str) -> Result<()> {
    let current = versions::current(sm, id)
        .await
        .with_context(|| format!("cannot read the guard secret `{id}`"))?;
    match shared_auth::secret::key_format(&current.value, "current")
        .with_context(|| format!("the guard secret `{id}` cannot be used"))?
    {
        shared_auth::KeyFormat::StandardWebhooks => Ok(()),
        shared_auth::KeyFormat::Legacy => {
            eprintln!(
                "· guard secret `{id}` is in the format before Standard Webhooks: still accepted; \
                 `cargo xtask rotate-secret --env <env>` moves it to a `whsec_` key now"
            );
            Ok(())
        }
    }
}

async fn secret_exists(sm: &SecretsManager, id: &str) -> Result<bool> {
    match sm.describe_secret().secret_id(id).send().await {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(false)
        }
        Err(e) => bail!("cannot read the secret `{id}`: {}", explain(&e)),
    }
}

/// `static` mode: the WAF rule group that checks the secret header must accept the secret's
/// versions before the plan reads it by name. Values go through the WAF API only, never
/// Terraform.
async fn guard_rule_group(
    settings: &Settings,
    sm: &SecretsManager,
    sdk: &aws_config::SdkConfig,
) -> Result<()> {
    let accepted = versions::accepted(
        sm,
        &settings.guard.secret_id,
        versions::Acceptance::for_settings(settings),
        versions::now_s(),
    )
    .await?;
    let name = rule_group_name(&settings.env);
    let arn = GuardRuleGroup {
        client: aws_sdk_wafv2::Client::new(sdk),
    }
    .ensure(&name, &settings.guard, &accepted)
    .await?;
    let ids: Vec<&str> = accepted.all().map(|(_, v)| v.id.as_str()).collect();
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
    let current = versions::at_stage(sm, id, versions::CURRENT)
        .await
        .with_context(|| format!("cannot read the {what} `{id}`"))?;
    match current {
        Some(_) => {
            eprintln!("· {what} `{id}` already has a version");
            Ok(())
        }
        None => {
            sm.put_secret_value()
                .secret_id(id)
                .secret_string(make()?.expose_secret())
                .send()
                .await
                .aws(&format!("cannot write the first version of `{id}`"))?;
            eprintln!("· {what} `{id}`: first version written (value not shown)");
            Ok(())
        }
    }
}

/// A local AWS only. When a rotation schedule is attached without rotating at once,
/// Secrets Manager tests the configuration: it stages an `AWSPENDING` version (empty, or a
/// copy of the current value), runs the function's testSecret, "and then removes it"
/// (RotateSecret, `RotateImmediately`). moto leaves it staged, which would read as a rotation
/// stuck half-way (and block the next one): remove it as AWS does. Only an empty version or a
/// copy of the current value is touched; no function runs on a local AWS that could be
/// writing one.
async fn clear_configuration_test_copy(settings: &Settings) -> Result<()> {
    let sm = SecretsManager::new(&shared_aws::sdk_config(&settings.aws).await);
    let id = &settings.guard.secret_id;
    let stages = versions::Stages::describe(&sm, id).await?;
    let holder = |stage: &str| stages.holder(stage).map(str::to_owned);
    let (Some(pending), Some(current)) = (holder(versions::PENDING), holder(versions::CURRENT))
    else {
        return Ok(());
    };
    let value = |version: String, stage: &'static str| {
        let sm = sm.clone();
        async move {
            let read = versions::at_version(&sm, id, &version, stage).await;
            read.ok()
                .flatten()
                .map(|v| v.value.expose_secret().to_owned())
        }
    };
    let copy = value(pending.clone(), versions::PENDING).await;
    if pending != current && (copy.is_none() || copy == value(current, versions::CURRENT).await) {
        sm.update_secret_version_stage()
            .secret_id(id)
            .version_stage("AWSPENDING")
            .remove_from_version_id(&pending)
            .send()
            .await
            .aws("remove the configuration test's AWSPENDING")?;
        eprintln!(
            "· local AWS: removed the AWSPENDING version its rotation-configuration test left on {pending} (AWS removes it itself)"
        );
    }
    Ok(())
}
