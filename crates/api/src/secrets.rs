//! The shared secret as the API holds it: fetched at start, refreshed in the background, and
//! read by the guard on every request without waiting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_secretsmanager::Client as SecretsManager;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use secrecy::SecretString;
use shared_auth::{SecretSet, Settings};
use tokio::sync::watch;

/// Environment variable holding the current secret when `api.secret_source = "env"`.
pub const CURRENT_VAR: &str = "TOLLGATE_SECRET_CURRENT";
/// Environment variable holding the previous secret (optional), same source.
pub const PREVIOUS_VAR: &str = "TOLLGATE_SECRET_PREVIOUS";

/// Retry interval while no secret could be loaded at all.
const UNLOADED_RETRY: Duration = Duration::from_secs(5);

/// Where the secret comes from.
#[derive(Debug)]
pub enum SecretProvider {
    /// Values given at start (from `TOLLGATE_SECRET_*`, or by a test).
    Fixed(SecretSet),
    /// Secrets Manager: versions `AWSCURRENT` and `AWSPREVIOUS` of one secret.
    SecretsManager {
        client: SecretsManager,
        secret_id: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SecretFetchError {
    #[error("{CURRENT_VAR} is not set (api.secret_source = \"env\")")]
    EnvMissing,
    #[error("secret `{secret_id}` has no {stage} version")]
    NoVersion {
        secret_id: String,
        stage: &'static str,
    },
    #[error("secret `{secret_id}` ({stage}) is binary or empty; Tollgate secrets are strings")]
    NotAString {
        secret_id: String,
        stage: &'static str,
    },
    #[error("secret `{secret_id}` is not JSON with `username` and `password` strings")]
    NotCredentials { secret_id: String },
    #[error("Secrets Manager: {0}")]
    Aws(String),
    #[error(transparent)]
    Unusable(#[from] shared_auth::SecretError),
}

impl SecretProvider {
    /// The provider that `settings` select, reading `TOLLGATE_SECRET_*` from `vars` for `env`.
    pub async fn from_settings(
        settings: &Settings,
        vars: &HashMap<String, String>,
    ) -> Result<Self, SecretFetchError> {
        match settings.api.secret_source {
            shared_auth::SecretSource::Env => {
                let current = vars.get(CURRENT_VAR).ok_or(SecretFetchError::EnvMissing)?;
                let previous = vars.get(PREVIOUS_VAR).cloned().map(SecretString::from);
                Ok(SecretProvider::Fixed(SecretSet::new(
                    current.clone().into(),
                    previous,
                )?))
            }
            shared_auth::SecretSource::Aws => Ok(SecretProvider::SecretsManager {
                client: secrets_manager(&settings.aws).await,
                secret_id: settings.guard.secret_id.clone(),
            }),
        }
    }

    pub async fn fetch(&self) -> Result<SecretSet, SecretFetchError> {
        match self {
            SecretProvider::Fixed(set) => Ok(set.clone()),
            SecretProvider::SecretsManager { client, secret_id } => {
                let current = fetch_stage(client, secret_id, "AWSCURRENT")
                    .await?
                    .ok_or_else(|| SecretFetchError::NoVersion {
                        secret_id: secret_id.clone(),
                        stage: "AWSCURRENT",
                    })?;
                let previous = fetch_stage(client, secret_id, "AWSPREVIOUS").await?;
                Ok(SecretSet::new(current, previous)?)
            }
        }
    }
}

/// A Secrets Manager client for `aws` settings (moto_server when `endpoint_url` is set).
pub async fn secrets_manager(aws: &shared_auth::AwsSettings) -> SecretsManager {
    SecretsManager::new(&shared_auth::aws::sdk_config(aws).await)
}

/// One version stage of a secret; `None` when the stage does not exist (no rotation yet).
pub(crate) async fn fetch_stage(
    client: &SecretsManager,
    secret_id: &str,
    stage: &'static str,
) -> Result<Option<SecretString>, SecretFetchError> {
    let result = client
        .get_secret_value()
        .secret_id(secret_id)
        .version_stage(stage)
        .send()
        .await;
    match result {
        Ok(out) => match out.secret_string {
            Some(s) if !s.is_empty() => Ok(Some(SecretString::from(s))),
            _ => Err(SecretFetchError::NotAString {
                secret_id: secret_id.to_owned(),
                stage,
            }),
        },
        Err(e) => match e.as_service_error() {
            Some(GetSecretValueError::ResourceNotFoundException(_)) if stage != "AWSCURRENT" => {
                Ok(None)
            }
            Some(GetSecretValueError::ResourceNotFoundException(_)) => {
                Err(SecretFetchError::NoVersion {
                    secret_id: secret_id.to_owned(),
                    stage,
                })
            }
            // The SDK's error text names the operation and cause, never the secret value.
            _ => Err(SecretFetchError::Aws(
                aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
            )),
        },
    }
}

/// The secrets the guard accepts right now: `None` until the first successful fetch.
#[derive(Debug, Clone)]
pub struct SecretStore {
    rx: watch::Receiver<Option<Arc<SecretSet>>>,
}

impl SecretStore {
    pub fn get(&self) -> Option<Arc<SecretSet>> {
        self.rx.borrow().clone()
    }

    /// Fetches once, then keeps refreshing every `interval` in a background task. A failed
    /// refresh keeps the last good set (and is logged); while nothing was ever loaded, it
    /// retries every few seconds.
    pub async fn start(provider: SecretProvider, interval: Duration) -> Self {
        let first = match provider.fetch().await {
            Ok(set) => {
                tracing::info!(previous = set.previous().is_some(), "secret loaded");
                Some(Arc::new(set))
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot load the secret; registrations answer 503 until it loads");
                None
            }
        };
        let (tx, rx) = watch::channel(first);
        if !matches!(provider, SecretProvider::Fixed(_)) {
            tokio::spawn(refresh(provider, interval, tx));
        }
        SecretStore { rx }
    }
}

async fn refresh(
    provider: SecretProvider,
    interval: Duration,
    tx: watch::Sender<Option<Arc<SecretSet>>>,
) {
    loop {
        let loaded = tx.borrow().is_some();
        tokio::time::sleep(if loaded {
            interval
        } else {
            UNLOADED_RETRY.min(interval)
        })
        .await;
        if tx.is_closed() {
            return;
        }
        match provider.fetch().await {
            Ok(set) => {
                let changed = tx.borrow().as_ref().is_none_or(|old| !old.same_as(&set));
                if changed {
                    tracing::info!(
                        previous = set.previous().is_some(),
                        "secret loaded (new version)"
                    );
                    tx.send_replace(Some(Arc::new(set)));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "secret refresh failed; keeping the last good secret")
            }
        }
    }
}
