use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    post_confirm::init_tracing();
    let settings = post_confirm::load_settings()?;
    let deps = post_confirm::Deps::from_settings(settings).await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event| post_confirm::handle(deps, event))).await
}
