//! What every component needs of AWS, one way: the SDK configuration from the `aws` settings
//! (so all reach the same AWS, or moto_server, the same way) and, in [`versions`], the one
//! reader of the guard secret's accepted versions.
//!
//! Behind the `aws` feature: the contract's default build stays free of the AWS SDK and of any
//! async runtime; the api, both Lambdas and xtask turn it on.

pub mod versions;

use crate::AwsSettings;

/// A Secrets Manager client for `aws` settings.
pub async fn secrets_manager(aws: &AwsSettings) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&sdk_config(aws).await)
}

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
