//! The guard secret's rotation function: Secrets Manager invokes it once per step
//! ([`rotate_secret`]). It runs in the post-confirm Lambda's subnets, so it reaches the api
//! exactly as the sender does: through the NAT gateway, the WAF and the ALB.

// The function's future nests the AWS SDK's deeper than rustc's default layout depth of 128.
#![recursion_limit = "256"]

use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_support::telemetry::init();
    let settings = lambda_support::load_settings(shared_auth::Component::Rotation)?;
    let budget = shared_auth::rotation::step_budget(settings.api.secret_refresh_s);
    let rotator = rotate_secret::Rotator::from_settings(&settings, budget).await?;
    let rotator = &rotator;
    lambda_runtime::run(service_fn(move |event| {
        rotate_secret::handle(rotator, event)
    }))
    .await
}
