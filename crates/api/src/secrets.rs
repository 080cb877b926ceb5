//! The shared secret as the API holds it: fetched at start, refreshed in the background, and
//! read by the guard on every request without waiting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_secretsmanager::Client as SecretsManager;
use secrecy::{ExposeSecret, SecretString};
use shared_auth::{SecretSet, Settings};
use shared_aws::{secrets_manager, versions};
use tokio::sync::watch;

use crate::clock::Clock;

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
    /// Secrets Manager: versions `AWSCURRENT`, `AWSPREVIOUS` during its grace and, during a
    /// rotation, `AWSPENDING` of one secret ([`versions`] decides).
    SecretsManager {
        client: SecretsManager,
        secret_id: String,
        acceptance: versions::Acceptance,
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
                acceptance: versions::Acceptance::for_settings(settings),
            }),
        }
    }

    /// What to accept at `now_s` (unix seconds).
    pub async fn fetch(&self, now_s: u64) -> Result<Loaded, SecretFetchError> {
        match self {
            SecretProvider::Fixed(set) => Ok(Loaded {
                set: set.clone(),
                versions: VersionIds::default(),
                left_out: Vec::new(),
            }),
            SecretProvider::SecretsManager {
                client,
                secret_id,
                acceptance,
            } => {
                // Which versions count is decided once, for the WAF and the api alike.
                let now_s = i64::try_from(now_s).unwrap_or(i64::MAX);
                let accepted = versions::accepted(client, secret_id, *acceptance, now_s)
                    .await
                    .map_err(|e| SecretFetchError::from_versions(e, secret_id))?;
                Ok(Loaded::from_versions(accepted)?)
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
    /// Stages holding a value that is not accepted, and why (never the value).
    pub left_out: Vec<versions::LeftOut>,
}

/// The metric counting secret versions left out because their value cannot be a secret
/// (namespace [`shared_aws::emf::NAMESPACE`], dimension `Stage`).
pub const UNUSABLE_METRIC: &str = "SecretVersionUnusable";

impl Loaded {
    /// The guard's set from the accepted versions. A current value that cannot be a secret
    /// fails the load; a previous or pending one is left out, warned about and counted, so a
    /// bad staged value can never stop the current one from working.
    fn from_versions(accepted: versions::Versions) -> Result<Self, SecretFetchError> {
        let mut left_out = accepted.left_out;
        let mut usable = |stage: &'static str, v: Option<versions::Version>| {
            let v = v?;
            if SecretSet::usable(&v.value) {
                return Some(v);
            }
            tracing::warn!(stage, version = %v.id, "secret version left out: its value is not a key (too short, or a malformed whsec_ key)");
            println!(
                "{}",
                shared_aws::emf::line("api", ("Stage", stage), &[(UNUSABLE_METRIC, 1, "Count")])
            );
            left_out.push(versions::LeftOut {
                stage,
                id: v.id,
                why: "its value is not a key (too short, or a malformed whsec_ key)",
            });
            None
        };
        let previous = usable(versions::PREVIOUS, accepted.previous);
        let pending = usable(versions::PENDING, accepted.pending);
        let value = |v: &Option<versions::Version>| v.as_ref().map(|v| v.value.clone());
        let id = |v: &Option<versions::Version>| v.as_ref().map(|v| v.id.clone());
        Ok(Loaded {
            set: SecretSet::new(accepted.current.value.clone(), value(&previous))?
                .with_pending(value(&pending))?,
            versions: VersionIds {
                current: Some(accepted.current.id.clone()),
                previous: id(&previous),
                pending: id(&pending),
            },
            left_out,
        })
    }
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

    /// [`SecretStore::start_at`] by the system clock.
    pub async fn start(provider: SecretProvider, interval: Duration) -> Self {
        Self::start_at(provider, interval, Clock::system()).await
    }

    /// Fetches once, then keeps refreshing every `interval` in a background task, judging the
    /// versions' windows by `clock`. A failed refresh keeps the last good set (and is logged);
    /// while nothing was ever loaded, it retries every few seconds.
    pub async fn start_at(provider: SecretProvider, interval: Duration, clock: Clock) -> Self {
        let first = match provider.fetch(clock.now()).await {
            Ok(loaded) => {
                tracing::info!(versions = ?loaded.versions, left_out = ?loaded.left_out, "secret loaded");
                Some(Arc::new(loaded))
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot load the secret; registrations answer 503 until it loads");
                None
            }
        };
        let (tx, rx) = watch::channel(first);
        if !matches!(provider, SecretProvider::Fixed(_)) {
            tokio::spawn(refresh(provider, interval, clock, tx));
        }
        SecretStore { rx }
    }
}

async fn refresh(
    provider: SecretProvider,
    interval: Duration,
    clock: Clock,
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
        match provider.fetch(clock.now()).await {
            Ok(loaded) => {
                let changed = tx.borrow().as_ref().is_none_or(|old| {
                    old.versions != loaded.versions || !old.set.same_as(&loaded.set)
                });
                if changed {
                    tracing::info!(versions = ?loaded.versions, left_out = ?loaded.left_out, "secret loaded (versions changed)");
                    tx.send_replace(Some(Arc::new(loaded)));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "secret refresh failed; keeping the last good secret")
            }
        }
    }
}
