//! `cargo xtask rotate-secret --env E`: rotates the guard secret by Secrets Manager's own
//! protocol and follows it to the end. In AWS it calls `RotateSecret`, which runs the stack's
//! rotation function (the `rotate-secret` crate); where Secrets Manager cannot invoke a
//! function (moto, `aws.endpoint_url` set) it invokes the same function's binary here, under a
//! local Runtime API, once per step, in order, as Secrets Manager would.
//!
//! `--revoke-previous` ends the previous version's grace at once: it removes `AWSPREVIOUS`
//! from that version, brings the WAF rule group in line (static mode) and waits until the api
//! reports it no longer holds it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_secretsmanager::Client as SecretsManager;
use opskit::aws::AwsContext;
use shared_auth::rotation::{Step, function_timeout};
use shared_auth::{Settings, SigningMode};
use shared_aws::versions::{self, Acceptance, PREVIOUS};
use shared_aws::waf::{GuardRuleGroup, rule_group_name};

use crate::flags;
use crate::support::context::{check_local_aws, settings_for};
use crate::support::local_lambda::LocalLambda;

impl flags::RotateSecret {
    pub fn run(self) -> Result<()> {
        let settings = settings_for(&self.env)?;
        check_local_aws(&settings)?;
        multi_thread(async {
            if self.revoke_previous {
                revoke_previous(&settings).await
            } else if settings.aws.endpoint_url.is_some() {
                rotate_here(&settings).await
            } else {
                rotate_in_aws(&settings).await
            }
        })
    }
}

/// Runs `f` on a multi-threaded runtime: the local path blocks on each invocation.
fn multi_thread<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start the async runtime: {e}"))
        .block_on(f)
}

/// The four steps, each an invocation of the rotation function's binary here, against the
/// api at `lambda.api_base_url`.
async fn rotate_here(settings: &Settings) -> Result<()> {
    let secret_id = &settings.guard.secret_id;
    let mut env = settings.guard.to_env_vars();
    env.extend([
        ("TOLLGATE_ENV".to_owned(), settings.env.clone()),
        (
            "TOLLGATE__LAMBDA__API_BASE_URL".to_owned(),
            settings.lambda.api_base_url.clone(),
        ),
        (
            "TOLLGATE__API__SECRET_REFRESH_S".to_owned(),
            settings.api.secret_refresh_s.to_string(),
        ),
    ]);
    if let Some(endpoint) = &settings.aws.endpoint_url {
        env.push(("TOLLGATE__AWS__ENDPOINT_URL".to_owned(), endpoint.clone()));
    }
    if settings.guard.mode == SigningMode::Static {
        env.extend(static_rule_group(settings).await?);
    }
    let function = LocalLambda::start("rotate-secret", &env)?;
    let token = uuid::Uuid::new_v4().to_string();
    eprintln!(
        "· rotating `{secret_id}` to version {token} here (this Secrets Manager cannot invoke a \
         rotation function); the api at {} must be running",
        settings.lambda.api_base_url
    );
    let budget = function_timeout(settings.api.secret_refresh_s);
    for step in Step::ALL {
        let started = Instant::now();
        let event = serde_json::json!({
            "Step": step.name(),
            "SecretId": secret_id,
            "ClientRequestToken": token,
        });
        tokio::task::block_in_place(|| function.invoke(&event.to_string(), budget))
            .with_context(|| {
                format!(
                    "{step} failed; rotation to version {token} stopped: run the command again to start a new one"
                )
            })?;
        eprintln!("  ✓ {step} ({:.1} s)", started.elapsed().as_secs_f64());
    }
    eprintln!("· version {token} is AWSCURRENT; the one before stays accepted as AWSPREVIOUS");
    Ok(())
}

/// static mode: the rule group the deployed function gets from Terraform, found by name.
async fn static_rule_group(settings: &Settings) -> Result<Vec<(String, String)>> {
    let group = GuardRuleGroup {
        client: aws_sdk_wafv2::Client::new(&shared_aws::sdk_config(&settings.aws).await),
    };
    Ok(match group.find(&rule_group_name(&settings.env)).await? {
        Some(arn) => {
            eprintln!("· static mode: the WAF rule group {arn} follows the rotation");
            vec![(shared_aws::waf::RULE_GROUP_ARN_VAR.to_owned(), arn)]
        }
        None => {
            eprintln!("· static mode: no WAF rule group deployed; only the api is rotated");
            Vec::new()
        }
    })
}

/// `--revoke-previous`: the version before the current one is refused from now on, not at the
/// end of its grace. Senders holding it get one 403, read the secret again and retry.
async fn revoke_previous(settings: &Settings) -> Result<()> {
    let secret_id = &settings.guard.secret_id;
    let sdk = shared_aws::sdk_config(&settings.aws).await;
    let sm = SecretsManager::new(&sdk);
    let stages = versions::Stages::describe(&sm, secret_id)
        .await
        .with_context(|| format!("cannot read `{secret_id}`"))?;
    let Some(previous) = stages.holder(PREVIOUS).map(str::to_owned) else {
        eprintln!("· `{secret_id}` has no AWSPREVIOUS version: nothing to revoke");
        return Ok(());
    };
    sm.update_secret_version_stage()
        .secret_id(secret_id)
        .version_stage(PREVIOUS)
        .remove_from_version_id(&previous)
        .send()
        .await
        .aws("cannot remove AWSPREVIOUS")?;
    eprintln!("· version {previous} is no longer AWSPREVIOUS in Secrets Manager");
    if settings.guard.mode == SigningMode::Static {
        let group = GuardRuleGroup {
            client: aws_sdk_wafv2::Client::new(&sdk),
        };
        if let Some(arn) = group.find(&rule_group_name(&settings.env)).await? {
            let accepted = versions::accepted(
                &sm,
                secret_id,
                Acceptance::for_settings(settings),
                versions::now_s(),
            )
            .await?;
            group.update(&arn, &settings.guard, &accepted).await?;
            eprintln!("· the WAF rule group {arn} no longer accepts it");
        }
    }
    wait_dropped(settings, &previous).await
}

/// Until the api, asked through `lambda.api_base_url`, answers three times in a row without
/// `id` (the load balancer spreads the answers over its tasks); bounded by three refresh
/// intervals.
async fn wait_dropped(settings: &Settings, id: &str) -> Result<()> {
    let url = format!(
        "{}/readyz",
        settings.lambda.api_base_url.trim_end_matches('/')
    );
    let http = reqwest::Client::builder()
        .user_agent(concat!("tollgate-xtask/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(5))
        .build()?;
    let limit = Duration::from_secs(settings.api.secret_refresh_s * 3 + 10);
    let begun = Instant::now();
    let mut clean = 0;
    let mut last = String::from("no answer yet");
    while begun.elapsed() < limit {
        match http.get(&url).send().await {
            Ok(r) => {
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                let held = &body["secret_versions"];
                clean = if held["previous"] == id { 0 } else { clean + 1 };
                last = held.to_string();
            }
            Err(e) => last = e.to_string(),
        }
        if clean >= 3 {
            eprintln!(
                "· done: the api no longer accepts version {id} ({:.0} s)",
                begun.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!(
        "the api at {url} still reports version {id} after {} s (last: {last}); every task drops \
         it within api.secret_refresh_s of its next refresh: check the tasks' logs",
        limit.as_secs()
    )
}

/// `RotateSecret`, then the version's stages until it is `AWSCURRENT`.
async fn rotate_in_aws(settings: &Settings) -> Result<()> {
    let secret_id = &settings.guard.secret_id;
    let sm = SecretsManager::new(&shared_aws::sdk_config(&settings.aws).await);
    let described = sm
        .describe_secret()
        .secret_id(secret_id)
        .send()
        .await
        .aws(&format!("cannot read `{secret_id}`"))?;
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
        .aws("RotateSecret failed (a rotation already in progress answers this too)")?;
    let token = started.version_id().unwrap_or_default().to_owned();
    eprintln!("· rotation of `{secret_id}` to version {token} started; function {function}");
    eprintln!(
        "  its steps log to /aws/lambda/{}",
        function.rsplit(':').next().unwrap_or("")
    );
    // createSecret + setSecret + testSecret + finishSecret, each bounded by the step budget.
    let limit =
        shared_auth::rotation::longest(settings.api.secret_refresh_s) + Duration::from_secs(60);
    follow(&sm, secret_id, &token, limit).await
}

/// Prints the version's stages as they change, until it is `AWSCURRENT` or `limit` passed.
async fn follow(sm: &SecretsManager, secret_id: &str, token: &str, limit: Duration) -> Result<()> {
    let begun = Instant::now();
    let mut last = String::new();
    loop {
        let (stages, has_value) = where_it_stands(sm, secret_id, token).await?;
        let now = format!(
            "{} ({})",
            if stages.is_empty() {
                "not staged".to_owned()
            } else {
                stages.join(", ")
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
        if stages.iter().any(|s| s == "AWSCURRENT") {
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

/// The stages version `token` holds, and whether it has a value yet.
async fn where_it_stands(
    sm: &SecretsManager,
    secret_id: &str,
    token: &str,
) -> Result<(Vec<String>, bool)> {
    let stages = versions::Stages::describe(sm, secret_id)
        .await?
        .of_version(token)
        .map(<[String]>::to_vec)
        .unwrap_or_default();
    let has_value = versions::read(sm, secret_id, Some(token), None)
        .await
        .is_ok_and(|v| v.is_some());
    Ok((stages, has_value))
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
        let sm = SecretsManager::new(&shared_aws::sdk_config(&settings.aws).await);
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
        versions::Stages::describe(sm, id)
            .await
            .expect("describe")
            .holder(versions::CURRENT)
            .expect("an AWSCURRENT version")
            .to_owned()
    }

    #[test]
    fn a_secret_without_a_rotation_function_is_refused_with_the_fix() {
        multi_thread(async {
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
        multi_thread(async {
            let (settings, sm) = secret(true).await;
            let before = current(&sm, &settings.guard.secret_id).await;
            rotate_in_aws(&settings).await.expect("followed to the end");
            let after = current(&sm, &settings.guard.secret_id).await;
            assert_ne!(after, before, "a new version is AWSCURRENT");
        });
    }
}
