//! The function's binary: the Lambda runtime's loop around [`post_confirm::handle`].

// The function's future nests the AWS SDK's (a secret read inside a delivery inside the
// runtime's loop) deeper than rustc's default layout depth of 128.
#![recursion_limit = "256"]

use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_support::telemetry::init();
    let settings = lambda_support::load_settings(shared_auth::Component::Lambda)?;
    let deps = post_confirm::Deps::from_settings(settings).await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event| post_confirm::handle(deps, event))).await
}
