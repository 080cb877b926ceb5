//! # shared-aws: what every Tollgate component needs of AWS, one way
//!
//! The contract (`shared-auth`) says what both ends agree on and stays free of the AWS SDK and
//! of any async runtime. This crate is how the components reach AWS by that contract:
//!
//! - [`sdk_config`], [`secrets_manager`]: the SDK configuration from the `aws` settings, so all
//!   reach the same AWS (or moto_server) the same way;
//! - [`versions`]: the one reader of the guard secret's versions and stages, and of which it
//!   accepts;
//! - [`emf`]: CloudWatch's embedded metric format, one shape for the api and the functions;
//! - [`waf`] (feature `waf`): the static-mode WAF rule group that checks the secret at the
//!   edge, written by the rotation function and `deploy`, read by `verify`.

pub mod emf;
pub mod versions;
#[cfg(feature = "waf")]
pub mod waf;

use shared_auth::AwsSettings;

/// A Secrets Manager client for `aws` settings.
pub async fn secrets_manager(aws: &AwsSettings) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&sdk_config(aws).await)
}

/// SDK configuration for `aws` settings. `endpoint_url` points every client at a local AWS
/// (moto_server), which gets test credentials unless the environment provides some.
pub async fn sdk_config(aws: &AwsSettings) -> aws_config::SdkConfig {
    loader(aws).load().await
}

/// The loader [`sdk_config`] loads, for a caller that sets more before loading (the Lambda
/// functions give it their own HTTP client).
pub fn loader(aws: &AwsSettings) -> aws_config::ConfigLoader {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = &aws.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &aws.endpoint_url {
        loader = loader.endpoint_url(url);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                "test",
                "test",
                None,
                None,
                "tollgate-local",
            ));
        }
    }
    loader
}
