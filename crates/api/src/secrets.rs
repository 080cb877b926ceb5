//! The shared secret as the API holds it: fetched at start, refreshed in the background, and
//! read by the guard on every request without waiting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_secretsmanager::Client as SecretsManager;
use secrecy::{ExposeSecret, SecretString};
use shared_auth::aws::{secrets_manager, versions};
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
    /// Secrets Manager: versions `AWSCURRENT`, `AWSPREVIOUS` and, during a rotation,
    /// `AWSPENDING` of one secret.
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

    pub async fn fetch(&self) -> Result<Loaded, SecretFetchError> {
        match self {
            SecretProvider::Fixed(set) => Ok(Loaded {
                set: set.clone(),
                versions: VersionIds::default(),
            }),
            SecretProvider::SecretsManager { client, secret_id } => {
                // Which versions count is decided once, for the WAF and the api alike.
                let accepted = versions::accepted(client, secret_id)
                    .await
                    .map_err(|e| SecretFetchError::from_versions(e, secret_id))?;
                let value = |v: &Option<versions::Version>| v.as_ref().map(|v| v.value.clone());
                let id = |v: &Option<versions::Version>| v.as_ref().map(|v| v.id.clone());
                Ok(Loaded {
                    set: SecretSet::new(accepted.current.value.clone(), value(&accepted.previous))?
                        .with_pending(value(&accepted.pending))?,
                    versions: VersionIds {
                        current: Some(accepted.current.id.clone()),
                        previous: id(&accepted.previous),
                        pending: id(&accepted.pending),
                    },
                })
            }
        }
    }
}

impl SecretFetchError {
    fn from_versions(e: versions::VersionsError, secret_id: &str) -> Self {
        match e {
            versions::VersionsError::NoCurrent => SecretFetchError::NoVersion {
                secret_id: secret_id.to_owned(),
                stage: versions::CURRENT,
            },
            versions::VersionsError::Aws(e) => SecretFetchError::Aws(e),
        }
    }
}

/// The secret versions the api accepts right now, by Secrets Manager version id (never
/// values): `GET /readyz` reports them, so a rotation can confirm every verifier learned the
/// pending version, and `cargo xtask verify` can show them. All `None` for `secret_source = "env"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct VersionIds {
    pub current: Option<String>,
    pub previous: Option<String>,
    pub pending: Option<String>,
}

/// One successful load: the values the guard checks and the ids they came from.
#[derive(Debug)]
pub struct Loaded {
    pub set: SecretSet,
    pub versions: VersionIds,
}

/// The value at `stage` of a secret; `None` when no version holds the stage (or it holds no
/// value). Through the one reader of versions.
pub(crate) async fn fetch_stage(
    client: &SecretsManager,
    secret_id: &str,
    stage: &'static str,
) -> Result<Option<SecretString>, SecretFetchError> {
    versions::at_stage(client, secret_id, stage)
        .await
        .map(|v| v.map(|v| v.value).filter(|v| !v.expose_secret().is_empty()))
        .map_err(|e| SecretFetchError::from_versions(e, secret_id))
}

/// The secrets the guard accepts right now: `None` until the first successful fetch.
#[derive(Debug, Clone)]
pub struct SecretStore {
    rx: watch::Receiver<Option<Arc<Loaded>>>,
}

impl SecretStore {
    pub fn get(&self) -> Option<Arc<Loaded>> {
        self.rx.borrow().clone()
    }

    /// Fetches once, then keeps refreshing every `interval` in a background task. A failed
    /// refresh keeps the last good set (and is logged); while nothing was ever loaded, it
    /// retries every few seconds.
    pub async fn start(provider: SecretProvider, interval: Duration) -> Self {
        let first = match provider.fetch().await {
            Ok(loaded) => {
                tracing::info!(versions = ?loaded.versions, "secret loaded");
                Some(Arc::new(loaded))
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
    tx: watch::Sender<Option<Arc<Loaded>>>,
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
            Ok(loaded) => {
                let changed = tx.borrow().as_ref().is_none_or(|old| {
                    old.versions != loaded.versions || !old.set.same_as(&loaded.set)
                });
                if changed {
                    tracing::info!(versions = ?loaded.versions, "secret loaded (new version)");
                    tx.send_replace(Some(Arc::new(loaded)));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "secret refresh failed; keeping the last good secret")
            }
        }
    }
}
