//! The keys a sender signs with: fetched lazily, cached for the contract's TTL, refetched at
//! once when the api says the ones in hand are no longer accepted. Read through the one reader
//! of the secret's versions ([`shared_aws::versions::signing_keys`]): the current key, and
//! the pending one during a rotation.

use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client as SecretsManager;
use secrecy::SecretString;
use shared_aws::versions::{self, VersionsError};
use tokio::sync::Mutex;

/// Where the secret comes from.
#[derive(Debug)]
pub enum SecretSource {
    /// Secrets Manager: `AWSCURRENT`, and `AWSPENDING` while a rotation of at most
    /// `rotation_s` seconds is in progress.
    SecretsManager {
        client: SecretsManager,
        secret_id: String,
        rotation_s: u64,
    },
    /// One key given at start (tests and local tools).
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
    cached: Mutex<Option<(Keys, Instant)>>,
}

/// The keys to sign with, current first; never empty.
pub type Keys = Vec<SecretString>;

impl SecretCache {
    pub fn new(source: SecretSource, ttl: Duration) -> Self {
        Self {
            source,
            ttl,
            cached: Mutex::new(None),
        }
    }

    /// The cached keys while they are younger than the TTL, else fresh ones.
    pub async fn get(&self) -> Result<Keys, SecretError> {
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

    /// Fresh keys, whatever the cache holds (after a 403: the secret was rotated).
    pub async fn refresh(&self) -> Result<Keys, SecretError> {
        let mut cached = self.cached.lock().await;
        let secret = self.fetch().await?;
        *cached = Some((secret.clone(), Instant::now()));
        Ok(secret)
    }

    async fn fetch(&self) -> Result<Keys, SecretError> {
        match &self.source {
            SecretSource::Fixed(secret) => Ok(vec![secret.clone()]),
            SecretSource::SecretsManager {
                client,
                secret_id,
                rotation_s,
            } => {
                match versions::signing_keys(client, secret_id, *rotation_s, versions::now_s())
                    .await
                {
                    Ok(keys) => Ok(keys),
                    Err(VersionsError::NoCurrent) => {
                        Err(SecretError::NotAString(secret_id.clone()))
                    }
                    Err(VersionsError::Aws(e)) => Err(SecretError::Aws(e)),
                }
            }
        }
    }
}
