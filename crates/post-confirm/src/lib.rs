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
pub mod secret;

use std::time::{Duration, Instant};

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use shared_auth::Settings;

use crate::client::Registrar;
use crate::event::Action;
use crate::secret::{SecretCache, SecretSource, secrets_manager};

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
        let client = secrets_manager(&settings.aws).await;
        let source = SecretSource::SecretsManager {
            client,
            secret_id: settings.guard.secret_id.clone(),
        };
        Self::with_secret_source(settings, source)
    }

    pub fn with_secret_source(settings: Settings, source: SecretSource) -> anyhow::Result<Self> {
        let registrar = Registrar {
            // Plain HTTP only on a developer's machine; the ALB listens on HTTPS.
            http: Registrar::http_client(&settings.lambda, settings.env != "local")?,
            contract: settings.guard.clone(),
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
    let deadline = deadline::work_deadline(
        context.deadline,
        arrived,
        Duration::from_millis(deps.settings.lambda.deadline_margin_ms),
    );
    match deps.registrar.deliver(&registration, deadline).await {
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

/// Installs the JSON log subscriber (CloudWatch); the runtime's span carries the request id.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_ansi(false)
        .without_time()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
