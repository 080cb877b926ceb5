//! AWS clients for xtask, and the shared secret's values.

use base64::Engine as _;
use secrecy::SecretString;

/// SDK configuration for `aws` settings: the Lambda's own, so both read settings alike.
pub use post_confirm::secret::sdk_config;

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
