//! AWS SDK configuration from the `aws` settings: the one builder every deployable, xtask and
//! the tests use, so they all reach the same AWS (or moto_server) the same way.
//!
//! Behind the `aws` feature: the contract's default build stays free of the AWS SDK and of any
//! async runtime; the api, the Lambda and xtask turn it on.

use crate::AwsSettings;

/// SDK configuration for `aws` settings. `endpoint_url` points every client at a local AWS
/// (moto_server), which gets test credentials unless the environment provides some.
pub async fn sdk_config(aws: &AwsSettings) -> aws_config::SdkConfig {
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
    loader.load().await
}
