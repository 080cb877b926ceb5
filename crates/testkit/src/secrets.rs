//! The guard secret's values, and writing them to Secrets Manager.

use anyhow::Result;
use aws_sdk_secretsmanager::Client as SecretsManager;
use secrecy::{ExposeSecret, SecretString};

use crate::aws::AwsContext;

/// A new shared secret as the contract makes them ([`shared_auth::secret::generate`]).
pub fn new_secret() -> Result<SecretString> {
    shared_auth::generate_secret()
        .map_err(|e| anyhow::anyhow!("the system's random source failed: {e}"))
}

/// New database credentials for `username`, JSON `{"username","password"}` as RDS stores them.
pub fn new_db_credentials(username: &str) -> Result<SecretString> {
    let password = new_secret()?;
    let json = serde_json::json!({"username": username, "password": password.expose_secret()});
    Ok(SecretString::from(json.to_string()))
}

/// Writes `value` as the new `AWSCURRENT` version of `id` (the old one becomes `AWSPREVIOUS`),
/// creating the secret when it does not exist yet. Returns the new version id.
pub async fn put_secret(sm: &SecretsManager, id: &str, value: &SecretString) -> Result<String> {
    let created = sm
        .create_secret()
        .name(id)
        .secret_string(value.expose_secret())
        .send()
        .await;
    match created {
        Ok(out) => Ok(out.version_id().unwrap_or_default().to_owned()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_exists_exception()) =>
        {
            put_version(sm, id, value).await
        }
        Err(e) => Err(e).aws(&format!("cannot create secret `{id}`")),
    }
}

/// Writes `value` as a new `AWSCURRENT` version of the existing secret `id`; returns its id.
pub async fn put_version(sm: &SecretsManager, id: &str, value: &SecretString) -> Result<String> {
    let out = sm
        .put_secret_value()
        .secret_id(id)
        .secret_string(value.expose_secret())
        .send()
        .await
        .aws(&format!("cannot write a version of secret `{id}`"))?;
    Ok(out.version_id().unwrap_or_default().to_owned())
}
