//! A bare `lambda_runtime` function that returns its event: the reference `cargo xtask bench`
//! compares post-confirm's start and warm invocations with (same runtime crate, same build
//! profile, no work).

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, lambda_runtime::Error>(event.payload)
    }))
    .await
}
