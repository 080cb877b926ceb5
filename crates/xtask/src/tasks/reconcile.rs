//! `cargo xtask reconcile --env E`: nothing confirmed is lost. A full sweep of the user pool,
//! by the very code the scheduled sweep runs: the sign-up function is sent a sweep event with
//! no window, lists the pool's confirmed, enabled users and registers each (idempotent: a
//! registered user answers 200). The counts it returns are printed.
//!
//! The function, not xtask, sends the registrations: it alone leaves through the NAT address
//! the edge allows and holds the contract's signing code. In AWS the deployed function is
//! invoked; with a local AWS its binary runs here under a local Runtime API.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use opskit::aws::AwsContext;
use serde_json::{Value, json};
use shared_auth::Settings;

use crate::flags;
use crate::support::context::{block_on, check_local_aws, settings_for};
use crate::support::local_lambda::LocalLambda;
use crate::support::terraform;

/// What one sweep invocation may take (the function's own budget ends it sooner).
const BUDGET: Duration = Duration::from_secs(15 * 60);

impl flags::Reconcile {
    pub fn run(self) -> Result<()> {
        let settings = settings_for(&self.env)?;
        check_local_aws(&settings)?;
        let pool_id = match &self.user_pool_id {
            Some(id) => id.clone(),
            None => terraform::output_str(&terraform::outputs(&self.env)?, "user_pool_id")?,
        };
        // No window: every confirmed user, however old.
        let event = json!({"tollgate": "sweep", "user_pool_id": pool_id, "window_s": null});
        eprintln!("· sweeping every confirmed user of {pool_id}");
        let counts = if settings.aws.endpoint_url.is_some() {
            let api_url = self
                .api_url
                .clone()
                .unwrap_or_else(|| settings.lambda.api_base_url.clone());
            sweep_here(&settings, &api_url, &event)?
        } else {
            block_on(sweep_in_aws(&settings, &self.env, &event))?
        };
        report(&counts)
    }
}

/// The sweep through the function's binary here.
fn sweep_here(settings: &Settings, api_url: &str, event: &Value) -> Result<Value> {
    let mut env = settings.guard.to_env_vars();
    env.push(("TOLLGATE_ENV".into(), settings.env.clone()));
    if let Some(endpoint) = &settings.aws.endpoint_url {
        env.push(("TOLLGATE__AWS__ENDPOINT_URL".into(), endpoint.clone()));
    }
    env.push(("TOLLGATE__LAMBDA__API_BASE_URL".into(), api_url.to_owned()));
    for (key, queue) in [
        (
            "TOLLGATE__LAMBDA__RETRY_QUEUE",
            &settings.lambda.retry_queue,
        ),
        (
            "TOLLGATE__LAMBDA__DEAD_LETTER_QUEUE",
            &settings.lambda.dead_letter_queue,
        ),
    ] {
        if let Some(url) = queue {
            env.push((key.into(), url.clone()));
        }
    }
    let function = LocalLambda::start("post-confirm", &env)?;
    let answer = function.invoke(&event.to_string(), BUDGET)?;
    serde_json::from_str(&answer).context("the sweep's answer is not JSON")
}

/// The sweep through the deployed function.
async fn sweep_in_aws(settings: &Settings, env: &str, event: &Value) -> Result<Value> {
    let function = terraform::output_str(&terraform::outputs(env)?, "lambda_function_name")?;
    let sdk = shared_aws::sdk_config(&settings.aws).await;
    let out = aws_sdk_lambda::Client::new(&sdk)
        .invoke()
        .function_name(&function)
        .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
        .send()
        .await
        .aws(&format!("cannot invoke {function}"))?;
    let body = out
        .payload()
        .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
        .unwrap_or_default();
    if let Some(error) = out.function_error() {
        bail!("{function} failed the sweep ({error}): {body}");
    }
    serde_json::from_str(&body).context("the sweep's answer is not JSON")
}

/// Prints the counts; an error when some user could be neither registered nor queued.
fn report(counts: &Value) -> Result<()> {
    let n = |key: &str| counts[key].as_u64().unwrap_or(0);
    println!(
        "\nreconciled: {} user(s) listed, {} confirmed and enabled; {} were missing and are registered now, \
         {} were already registered, {} disabled (skipped), {} queued for retry, {} failed",
        n("listed"),
        n("candidates"),
        n("registered"),
        n("already"),
        n("disabled"),
        n("queued"),
        n("failed"),
    );
    if n("heartbeat") > 0 {
        println!(
            "{} heartbeat user(s) passed by: synthetic, never registered (a heartbeat that ended before its clean-up; the next heartbeat does not remove them, `aws cognito-idp admin-delete-user` does)",
            n("heartbeat")
        );
    }
    if counts["continued"].as_bool() == Some(true) {
        println!(
            "the pool has more pages: the sweep continues from the retry queue (see the function's log)"
        );
    }
    if let Some(error) = counts["error"].as_str() {
        bail!("the sweep stopped early: {error}");
    }
    if n("failed") > 0 {
        bail!(
            "{} user(s) could be neither registered nor queued (rerun: reconcile is idempotent)",
            n("failed")
        );
    }
    Ok(())
}
