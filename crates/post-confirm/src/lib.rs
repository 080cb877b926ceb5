//! # post-confirm: the Cognito PostConfirmation Lambda
//!
//! After a user confirms sign-up, Cognito invokes this function; it registers the user with the
//! API's guarded `POST /user`, signing the request with the shared secret by the rules in
//! `shared-auth`, and returns the event unchanged (Cognito requires it).
//!
//! If the API cannot be reached before the deadline the invocation fails with a safe message;
//! the user stays confirmed in Cognito, and the API's `GET /users/me` provisioning recovers the
//! row at the user's first authenticated call.

pub mod client;
pub mod deadline;
pub mod event;
pub mod probe;

use std::time::{Duration, Instant};

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use shared_auth::Settings;

use lambda_support::route::GuardedRoute;
use lambda_support::secret::{SecretCache, SecretSource};

use crate::client::Registrar;
use crate::event::Action;

/// The message Cognito (and so the signing-up user's app) sees when registration fails.
pub use shared_auth::REGISTRATION_FAILED as SAFE_FAILURE;

/// What one execution environment builds once and every invocation reuses.
#[derive(Debug)]
pub struct Deps {
    pub registrar: Registrar,
    pub settings: Settings,
}

impl Deps {
    /// Builds the dependencies from settings, with the secret from Secrets Manager.
    pub async fn from_settings(settings: Settings) -> anyhow::Result<Self> {
        let client = shared_auth::aws::secrets_manager(&settings.aws).await;
        let source = SecretSource::SecretsManager {
            client,
            secret_id: settings.guard.secret_id.clone(),
        };
        Self::with_secret_source(settings, source)
    }

    pub fn with_secret_source(settings: Settings, source: SecretSource) -> anyhow::Result<Self> {
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
        Ok(Self {
            registrar,
            settings,
        })
    }
}

/// Handles one PostConfirmation invocation; returns the event exactly as received.
pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let arrived = Instant::now();
    let (raw, context) = event.into_parts();
    let deadline = || {
        deadline::work_deadline(
            context.deadline,
            arrived,
            Duration::from_millis(deps.settings.lambda.deadline_margin_ms),
        )
    };
    if probe::is_probe(&raw) {
        let (status, verified_with) = deps.registrar.dry_run(deadline()).await.map_err(|e| {
            tracing::error!(cause = %e, "probe failed");
            lambda_runtime::Error::from(e.to_string())
        })?;
        tracing::info!(status, verified_with, "probe answered");
        return Ok(probe::answer(status, &verified_with));
    }
    let registration = match event::action(&raw) {
        Ok(Action::Register(r)) => r,
        Ok(Action::Skip(why)) => {
            tracing::debug!(reason = %why, "not a sign-up; nothing to register");
            return Ok(raw);
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the event");
            return Err(e.to_string().into());
        }
    };
    let result = deps.registrar.deliver(&registration, deadline()).await;
    emit_outcome(&result);
    match result {
        Ok(delivered) => {
            tracing::info!(sub = %registration.sub, status = delivered.status, attempts = delivered.attempts, "user registered");
            Ok(raw)
        }
        Err(e) => {
            tracing::error!(
                sub = %registration.sub,
                attempts = e.attempts(),
                cause = %e,
                "registration failed; the user stays confirmed and GET /users/me will create the row"
            );
            Err(SAFE_FAILURE.into())
        }
    }
}

/// The metric every invocation that registers someone counts once (namespace
/// [`shared_auth::emf::NAMESPACE`], dimension `Outcome`), with its attempts.
pub const METRIC: &str = "Registration";

/// How a registration ended, as the `Outcome` dimension: `registered` (201), `replay` (200,
/// the user was there), `rejected` (the api refused or redirected; not retried), `gave_up`
/// (no answer in time, or no secret).
pub fn outcome(result: &Result<client::Delivered, client::DeliveryError>) -> &'static str {
    use client::DeliveryError as E;
    match result {
        Ok(d) if d.status == 201 => "registered",
        Ok(_) => "replay",
        Err(E::Rejected { .. } | E::Redirected { .. }) => "rejected",
        Err(E::Exhausted { .. } | E::SecretTimedOut | E::Secret(_)) => "gave_up",
    }
}

/// One EMF line on stdout per registration: CloudWatch counts outcomes from the Lambda's log.
fn emit_outcome(result: &Result<client::Delivered, client::DeliveryError>) {
    let attempts = match result {
        Ok(d) => d.attempts,
        Err(e) => e.attempts(),
    };
    let line = shared_auth::emf::line(
        "post-confirm",
        ("Outcome", outcome(result)),
        &[
            (METRIC, 1, "Count"),
            ("Attempts", u64::from(attempts), "Count"),
        ],
    );
    println!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::{Delivered, DeliveryError};

    #[test]
    fn each_ending_has_its_outcome() {
        let ok = |status| {
            Ok(Delivered {
                status,
                attempts: 1,
            })
        };
        assert_eq!(outcome(&ok(201)), "registered");
        assert_eq!(outcome(&ok(200)), "replay");
        assert_eq!(
            outcome(&Err(DeliveryError::Rejected {
                status: 403,
                attempts: 2
            })),
            "rejected"
        );
        assert_eq!(
            outcome(&Err(DeliveryError::Exhausted {
                attempts: 4,
                last: "timeout".into()
            })),
            "gave_up"
        );
        assert_eq!(outcome(&Err(DeliveryError::SecretTimedOut)), "gave_up");
    }
}
