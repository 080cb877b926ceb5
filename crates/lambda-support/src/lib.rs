//! # lambda-support: what Tollgate's two Lambda functions share
//!
//! The sign-up function (`post-confirm`) and the secret's rotation function (`rotate-secret`)
//! both reach the api's guarded route the same way, and neither reaches into the other:
//!
//! - [`http`]: the HTTP client, with Mozilla's roots compiled in, no redirects, HTTPS only
//!   outside local runs;
//! - [`sdk_http`]: the AWS SDK's HTTP client on the same compiled-in roots, and [`sdk_config`]
//!   that uses it;
//! - [`route`]: the guarded route and the one builder of a signed request to it (real or a
//!   dry run), which the tests' clients use too;
//! - [`secret`]: the current secret, cached for the contract's TTL and refetched on demand;
//! - [`telemetry`]: the JSON log both write to CloudWatch;
//! - [`load_settings`]: their settings, with the error logged where Lambda shows it.
//!
//! A library, never a deployable: the tidy test keeps every crate off the deployables.

pub mod http;
pub mod route;
pub mod sdk_http;
pub mod secret;
pub mod telemetry;

use shared_auth::{Component, Settings};

/// The AWS SDK configuration a function builds its clients from: [`shared_aws::loader`]'s,
/// with the HTTP client of [`sdk_http`] (no system trust store read at a cold start).
pub async fn sdk_config(settings: &Settings) -> Result<aws_config::SdkConfig, http::ClientError> {
    Ok(shared_aws::loader(&settings.aws)
        .http_client(sdk_http::sdk_http_client(&settings.lambda)?)
        .load()
        .await)
}

/// Loads a Lambda function's settings as `component` reads them (`deploy/<TOLLGATE_ENV>.toml`
/// and `TOLLGATE__…`), logging why they are invalid: Lambda shows the log, not the init
/// error's text. The error is boxed, as `lambda_runtime::Error` is.
pub fn load_settings(
    component: Component,
) -> Result<Settings, Box<dyn std::error::Error + Send + Sync>> {
    shared_auth::load(component).map_err(|e| {
        tracing::error!(error = %e, "invalid settings");
        e.into()
    })
}
