//! `cargo xtask rotate-secret --env E`: rotates the guard secret by Secrets Manager's own
//! protocol and follows it to the end. In AWS it calls `RotateSecret`, which runs the stack's
//! rotation function (`post_confirm::rotation`); where Secrets Manager cannot invoke a
//! function (moto, `aws.endpoint_url` set) it runs the same four steps here, in order.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_secretsmanager::Client as SecretsManager;
use post_confirm::rotation::{Rotator, step_budget};
use post_confirm::waf::{GuardRuleGroup, rule_group_name};
use shared_auth::{Settings, SigningMode};

use crate::context::{block_on, check_local_aws, settings_for};
use crate::flags;

impl flags::RotateSecret {
    pub fn run(self) -> Result<()> {
        let settings = settings_for(&self.env)?;
        check_local_aws(&settings)?;
        block_on(async {
            if settings.aws.endpoint_url.is_some() {
                rotate_here(&settings).await
            } else {
                rotate_in_aws(&settings).await
            }
        })
    }
}

/// The four steps run from here, against the api at `lambda.api_base_url`.
async fn rotate_here(settings: &Settings) -> Result<()> {
    let secret_id = &settings.guard.secret_id;
    let mut rotator = Rotator::from_settings(settings, step_budget(settings.api.secret_refresh_s))
        .await
        .context("cannot build the rotation client")?;
    if settings.guard.mode == SigningMode::Static && rotator.waf.is_none() {
        // The deployed function gets the rule group's ARN from Terraform; here, find it by name.
        let group = GuardRuleGroup {
            client: aws_sdk_wafv2::Client::new(&testkit::sdk_config(&settings.aws).await),
        };
        match group.find(&rule_group_name(&settings.env)).await? {
            Some(arn) => {
                eprintln!("· static mode: the WAF rule group {arn} follows the rotation");
                rotator.waf = Some((group, arn));
            }
            None => eprintln!("· static mode: no WAF rule group deployed; only the api is rotated"),
        }
    }
    let token = uuid::Uuid::new_v4().to_string();
    eprintln!(
        "· rotating `{secret_id}` to version {token} here (this Secrets Manager cannot invoke a \
         rotation function); the api at {} must be running",
        rotator.api_base_url
    );
    rotator
        .rotate(secret_id, &token, |step, took| {
            eprintln!("  ✓ {step} ({:.1} s)", took.as_secs_f64())
        })
        .await
        .with_context(|| {
            format!("rotation to version {token} stopped; run the command again to start a new one")
        })?;
    eprintln!("· version {token} is AWSCURRENT; the one before stays accepted as AWSPREVIOUS");
    Ok(())
}

/// `RotateSecret`, then the version's stages until it is `AWSCURRENT`.
async fn rotate_in_aws(settings: &Settings) -> Result<()> {
    let secret_id = &settings.guard.secret_id;
    let sm = SecretsManager::new(&testkit::sdk_config(&settings.aws).await);
    let described = sm
        .describe_secret()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(testkit::aws::explain(&e)))
        .with_context(|| format!("cannot read `{secret_id}`"))?;
    let Some(function) = described.rotation_lambda_arn().filter(|a| !a.is_empty()) else {
        bail!(
            "`{secret_id}` has no rotation function: `cargo xtask deploy --env {}` attaches it",
            settings.env
        );
    };
    let started = sm
        .rotate_secret()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(testkit::aws::explain(&e)))
        .context("RotateSecret failed (a rotation already in progress answers this too)")?;
    let token = started.version_id().unwrap_or_default().to_owned();
    eprintln!("· rotation of `{secret_id}` to version {token} started; function {function}");
    eprintln!(
        "  its steps log to /aws/lambda/{}",
        function.rsplit(':').next().unwrap_or("")
    );

    // createSecret + setSecret + testSecret + finishSecret, each bounded by the step budget.
    let limit = step_budget(settings.api.secret_refresh_s) * 4 + Duration::from_secs(60);
    let begun = Instant::now();
    let mut last = String::new();
    loop {
        let stages = sm
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(testkit::aws::explain(&e)))?
            .version_ids_to_stages
            .unwrap_or_default();
        let mine = stages.get(&token).cloned().unwrap_or_default();
        let has_value = sm
            .get_secret_value()
            .secret_id(secret_id)
            .version_id(&token)
            .send()
            .await
            .is_ok();
        let now = format!(
            "{} ({})",
            if mine.is_empty() {
                "not staged".to_owned()
            } else {
                mine.join(", ")
            },
            if has_value {
                "value written: createSecret done"
            } else {
                "no value yet"
            }
        );
        if now != last {
            eprintln!(
                "  {:>4} s  version {token}: {now}",
                begun.elapsed().as_secs()
            );
            last = now;
        }
        if mine.iter().any(|s| s == "AWSCURRENT") {
            eprintln!(
                "· done: version {token} is AWSCURRENT (setSecret, testSecret and finishSecret passed)"
            );
            return Ok(());
        }
        if begun.elapsed() > limit {
            bail!(
                "version {token} is not AWSCURRENT after {} s; a step keeps failing: see the function's log",
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_secretsmanager::types::RotationRulesType;

    /// Local settings naming a new secret in the test moto_server, with a rotation function
    /// recorded on it when `with_function`. moto records the function's ARN although it cannot
    /// invoke it (that first call fails); later `RotateSecret` calls promote a new version at
    /// once, so what is followed here is the command's own calls and their reading, not a
    /// function's steps.
    async fn secret(with_function: bool) -> (Settings, SecretsManager) {
        let mut settings = settings_for("local").expect("local settings");
        settings.aws = testkit::local_aws();
        settings.guard.secret_id =
            format!("tollgate/test/rotate-{}", uuid::Uuid::new_v4().simple());
        let sm = SecretsManager::new(&testkit::sdk_config(&settings.aws).await);
        let value = testkit::secrets::new_secret().expect("secret");
        testkit::secrets::put_secret(&sm, &settings.guard.secret_id, &value)
            .await
            .expect("put the secret");
        if with_function {
            let _ = sm
                .rotate_secret()
                .secret_id(&settings.guard.secret_id)
                .rotation_lambda_arn(
                    "arn:aws:lambda:ap-northeast-1:123456789012:function:tollgate-test-rotate",
                )
                .rotation_rules(
                    RotationRulesType::builder()
                        .automatically_after_days(30)
                        .build(),
                )
                .rotate_immediately(false)
                .send()
                .await;
        }
        (settings, sm)
    }

    async fn current(sm: &SecretsManager, id: &str) -> String {
        sm.describe_secret()
            .secret_id(id)
            .send()
            .await
            .expect("describe")
            .version_ids_to_stages
            .unwrap_or_default()
            .into_iter()
            .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
            .map(|(id, _)| id)
            .expect("an AWSCURRENT version")
    }

    #[test]
    fn a_secret_without_a_rotation_function_is_refused_with_the_fix() {
        block_on(async {
            let (settings, sm) = secret(false).await;
            let before = current(&sm, &settings.guard.secret_id).await;
            let err = rotate_in_aws(&settings)
                .await
                .expect_err("no function, no rotation");
            assert!(
                format!("{err:#}").contains("cargo xtask deploy --env local"),
                "{err:#}"
            );
            assert_eq!(current(&sm, &settings.guard.secret_id).await, before);
        });
    }

    #[test]
    fn the_rotation_it_starts_is_followed_until_its_version_is_current() {
        block_on(async {
            let (settings, sm) = secret(true).await;
            let before = current(&sm, &settings.guard.secret_id).await;
            rotate_in_aws(&settings).await.expect("followed to the end");
            let after = current(&sm, &settings.guard.secret_id).await;
            assert_ne!(after, before, "a new version is AWSCURRENT");
        });
    }
}
