//! AWS clients for xtask, and the shared secret's values.

use aws_config::SdkConfig;
use base64::Engine as _;
use secrecy::SecretString;

/// SDK configuration for `aws` settings; an `endpoint_url` (moto_server) gets test credentials
/// unless the environment provides some.
pub async fn sdk_config(aws: &shared_auth::AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = &aws.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &aws.endpoint_url {
        loader = loader.endpoint_url(url);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
                "test",
                "test",
                None,
                None,
                "tollgate-local",
            ));
        }
    }
    loader.load().await
}

/// A new shared secret: 32 bytes from the operating system's CSPRNG, base64url (43 characters).
pub fn new_secret() -> anyhow::Result<SecretString> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("the system's random source failed: {e}"))?;
    Ok(SecretString::from(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
    ))
}

/// Why an AWS call failed, with the SDK's whole cause chain.
pub fn explain<E: std::error::Error>(e: &E) -> String {
    aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()
}
