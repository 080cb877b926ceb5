//! The shared secret as a sender holds it: fetched lazily, cached for the contract's TTL,
//! refetched at once when the api says the one in hand is no longer accepted. Read through
//! the one reader of the secret's versions ([`shared_aws::versions::current`]).

use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client as SecretsManager;
use secrecy::SecretString;
use shared_aws::versions::{self, VersionsError};
use tokio::sync::Mutex;

/// Where the secret comes from.
#[derive(Debug)]
pub enum SecretSource {
    /// Secrets Manager, version `AWSCURRENT`.
    SecretsManager {
        client: SecretsManager,
        secret_id: String,
    },
    /// A value given at start (tests and local tools).
    Fixed(SecretString),
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret `{0}` has no current version with a string value")]
    NotAString(String),
    #[error("Secrets Manager: {0}")]
    Aws(String),
}

#[derive(Debug)]
pub struct SecretCache {
    source: SecretSource,
    ttl: Duration,
    cached: Mutex<Option<(SecretString, Instant)>>,
}

impl SecretCache {
    pub fn new(source: SecretSource, ttl: Duration) -> Self {
        Self {
            source,
            ttl,
            cached: Mutex::new(None),
        }
    }

    /// The cached secret while it is younger than the TTL, else a fresh one.
    pub async fn get(&self) -> Result<SecretString, SecretError> {
        let mut cached = self.cached.lock().await;
        if let Some((secret, at)) = cached.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(secret.clone());
        }
        let secret = self.fetch().await?;
        *cached = Some((secret.clone(), Instant::now()));
        Ok(secret)
    }

    /// A fresh secret, whatever the cache holds (after a 403: the secret was rotated).
    pub async fn refresh(&self) -> Result<SecretString, SecretError> {
        let mut cached = self.cached.lock().await;
        let secret = self.fetch().await?;
        *cached = Some((secret.clone(), Instant::now()));
        Ok(secret)
    }

    async fn fetch(&self) -> Result<SecretString, SecretError> {
        match &self.source {
            SecretSource::Fixed(secret) => Ok(secret.clone()),
            SecretSource::SecretsManager { client, secret_id } => {
                match versions::current(client, secret_id).await {
                    Ok(current) => Ok(current.value),
                    Err(VersionsError::NoCurrent) => {
                        Err(SecretError::NotAString(secret_id.clone()))
                    }
                    Err(VersionsError::Aws(e)) => Err(SecretError::Aws(e)),
                }
            }
        }
    }
}
