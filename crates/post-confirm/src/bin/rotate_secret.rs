//! The guard secret's rotation function: Secrets Manager invokes it once per step
//! ([`post_confirm::rotation`]). It runs in the post-confirm Lambda's subnets, so it reaches
//! the api exactly as the sender does: through the NAT gateway, the WAF and the ALB.

use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    post_confirm::init_tracing();
    let settings = post_confirm::load_settings()?;
    let budget = post_confirm::rotation::step_budget(settings.api.secret_refresh_s);
    let rotator = post_confirm::rotation::Rotator::from_settings(&settings, budget).await?;
    let rotator = &rotator;
    lambda_runtime::run(service_fn(move |event| {
        post_confirm::rotation::handle(rotator, event)
    }))
    .await
}
