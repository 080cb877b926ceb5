//! The function post-confirm would be written naively: the reference `cargo xtask bench`
//! compares its cold start with. The same two calls per invocation (the guard secret from
//! Secrets Manager, one POST of the event) with the SDK loaded the default way
//! (`aws_config::load_defaults`) and a default `reqwest` client, and nothing else: no
//! signature, no retry queue, no tuning of either client.
//!
//! Reads `NAIVE_SECRET_ID` and `NAIVE_URL`; the AWS settings come from the standard variables
//! (`AWS_REGION`, `AWS_ENDPOINT_URL`, the credentials), as on Lambda.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    let http = reqwest::Client::new();
    let secret_id = std::env::var("NAIVE_SECRET_ID")?;
    let url = std::env::var("NAIVE_URL")?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (secrets, http, secret_id, url) = (&secrets, &http, &secret_id, &url);
        async move {
            let secret = secrets
                .get_secret_value()
                .secret_id(secret_id)
                .send()
                .await?;
            let answer = http
                .post(url)
                .header("x-naive-secret", secret.secret_string().unwrap_or_default())
                .json(&event.payload)
                .send()
                .await?;
            answer.bytes().await?;
            Ok::<Value, lambda_runtime::Error>(event.payload)
        }
    }))
    .await
}
