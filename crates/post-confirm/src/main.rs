use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    post_confirm::init_tracing();
    let settings = shared_auth::load(shared_auth::Component::Lambda).map_err(|e| {
        tracing::error!(error = %e, "invalid settings");
        e
    })?;
    let deps = post_confirm::Deps::from_settings(settings).await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event| post_confirm::handle(deps, event))).await
}
