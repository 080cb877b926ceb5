//! # post-confirm: the sign-up function
//!
//! One Lambda function, four ways in, told apart by the event's shape:
//!
//! - **Cognito's PostConfirmation trigger** ([`trigger`]): registers the confirmed user with
//!   the api's guarded `POST /user` (signed by the rules in `shared-auth`), or hands the
//!   registration to the retry queue; it always returns the event unchanged, as Cognito
//!   requires, so a confirmed user never sees an error for an account that works.
//! - **The retry queue** ([`queue`], drained by [`drain`] from an SQS event source mapping): the same function, in the
//!   same subnets, so through the same NAT address, retries what the trigger queued.
//! - **The sweep** ([`sweep`], EventBridge Scheduler, and `cargo xtask reconcile`): registers
//!   the pool's confirmed users the database may lack.
//!
//! - **The heartbeat** ([`heartbeat`], EventBridge Scheduler): a synthetic sign-up in the real
//!   pool, confirmed so that Cognito runs the trigger, read back through the guarded route and
//!   deleted; its metric says whether sign-ups work end to end.
//!
//! And `cargo xtask verify`'s [`probe`]: a dry run through the whole path.

pub mod client;
pub mod deadline;
pub mod drain;
pub mod event;
pub mod heartbeat;
pub mod lazy;
pub mod outcome;
pub mod probe;
pub mod queue;
pub mod sweep;
pub mod trigger;

use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use lambda_runtime::LambdaEvent;
use lambda_support::route::GuardedRoute;
use lambda_support::secret::{SecretCache, SecretSource};
use serde_json::Value;
use shared_auth::Settings;

use crate::client::Registrar;
use crate::event::Action;
use crate::lazy::LazyClient;
use crate::queue::RetryQueue;

pub use crate::outcome::METRIC;

/// What one execution environment builds once and every invocation reuses.
#[derive(Debug)]
pub struct Deps {
    pub registrar: Registrar,
    pub settings: Settings,
    /// The retry queue, when `lambda.retry_queue` names one.
    pub queue: Option<RetryQueue>,
    /// For the sweep's listing of the user pool; built on the first sweep.
    pub cognito: Option<LazyClient<aws_sdk_cognitoidentityprovider::Client>>,
}

impl Deps {
    /// Builds the dependencies from settings, with the secret from Secrets Manager.
    /// The AWS configuration is loaded once, for every client.
    pub async fn from_settings(settings: Settings) -> anyhow::Result<Self> {
        let sdk = lambda_support::sdk_config(&settings).await?;
        let source = SecretSource::SecretsManager {
            client: aws_sdk_secretsmanager::Client::new(&sdk),
            secret_id: settings.guard.secret_id.clone(),
            rotation_s: shared_auth::rotation::longest(settings.api.secret_refresh_s).as_secs(),
        };
        Self::build(settings, source, sdk)
    }

    /// The dependencies with the secret from `source` (tests give a fixed set).
    pub async fn with_secret_source(
        settings: Settings,
        source: SecretSource,
    ) -> anyhow::Result<Self> {
        let sdk = lambda_support::sdk_config(&settings).await?;
        Self::build(settings, source, sdk)
    }

    /// Builds what every invocation reuses. The SQS and Cognito clients are made on their
    /// first use ([`LazyClient`]): a direct registration needs neither.
    fn build(settings: Settings, source: SecretSource, sdk: SdkConfig) -> anyhow::Result<Self> {
        // Plain HTTP only on a developer's machine; the ALB listens on HTTPS.
        let http = lambda_support::http::client(
            &settings.lambda,
            settings.env != "local",
            concat!("tollgate-post-confirm/", env!("CARGO_PKG_VERSION")),
        )?;
        let registrar = Registrar {
            route: GuardedRoute::new(http, settings.guard.clone(), &settings.lambda.api_base_url),
            settings: settings.lambda.clone(),
            secrets: SecretCache::new(source, Duration::from_secs(settings.guard.secret_ttl_s)),
        };
        let queue = settings.lambda.retry_queue.clone().map(|url| RetryQueue {
            sqs: LazyClient::new(sdk.clone(), aws_sdk_sqs::Client::new),
            url,
            dead_letters: settings.lambda.dead_letter_queue.clone(),
        });
        Ok(Self {
            registrar,
            queue,
            cognito: Some(LazyClient::new(
                sdk,
                aws_sdk_cognitoidentityprovider::Client::new,
            )),
            settings,
        })
    }
}

/// Handles one invocation, whichever way it came in.
pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let arrived = Instant::now();
    let (raw, context) = event.into_parts();
    let deadline = |cognito: bool| {
        let margin = Duration::from_millis(deps.settings.lambda.deadline_margin_ms);
        if cognito {
            deadline::work_deadline(context.deadline, arrived, margin)
        } else {
            deadline::runtime_deadline(context.deadline, arrived, margin)
        }
    };
    if probe::is_probe(&raw) {
        return answer_probe(deps, deadline(false)).await;
    }
    if let Some(cursor) = sweep::requested(&raw, deps.settings.lambda.sweep_window_s) {
        let counts = sweep::run(deps, cursor?, deadline(false)).await;
        tracing::info!(?counts, "sweep done");
        return Ok(serde_json::to_value(counts)?);
    }
    if let Some(request) = heartbeat::requested(&raw) {
        let report = heartbeat::run(deps, &request?, deadline(false)).await;
        return Ok(serde_json::to_value(report)?);
    }
    if is_sqs_batch(&raw) {
        let batch = serde_json::from_value(raw)?;
        let failed = drain::drain(deps, batch, deadline(false)).await;
        return Ok(serde_json::to_value(failed)?);
    }
    match event::action(&raw) {
        Ok(Action::Register(registration)) => {
            trigger::on_sign_up(deps, &registration, deadline(true)).await;
            Ok(raw)
        }
        Ok(Action::Skip(why)) => {
            tracing::debug!(reason = %why, "not a sign-up; nothing to register");
            Ok(raw)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the event");
            Err(e.to_string().into())
        }
    }
}

/// Whether `raw` is a batch from an SQS event source mapping.
fn is_sqs_batch(raw: &Value) -> bool {
    raw.get("Records")
        .and_then(Value::as_array)
        .and_then(|records| records.first())
        .and_then(|r| r.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs")
}

async fn answer_probe(deps: &Deps, deadline: Instant) -> Result<Value, lambda_runtime::Error> {
    let (status, verified_with) = deps.registrar.dry_run(deadline).await.map_err(|e| {
        tracing::error!(cause = %e, "probe failed");
        lambda_runtime::Error::from(e.to_string())
    })?;
    tracing::info!(status, verified_with, "probe answered");
    Ok(probe::answer(status, &verified_with))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_sqs_batch_is_told_by_its_event_source() {
        assert!(is_sqs_batch(
            &json!({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]})
        ));
        for other in [
            json!({"Records": [{"eventSource": "aws:s3"}]}),
            json!({"Records": []}),
            json!({"triggerSource": "PostConfirmation_ConfirmSignUp"}),
        ] {
            assert!(!is_sqs_batch(&other), "{other}");
        }
    }
}
