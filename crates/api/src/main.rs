//! The api's binary: loads its settings, then serves the [`api::Application`] until asked to
//! stop, or with `--migrate` applies the schema and exits, or with `--check-config` prints the
//! settings (secrets redacted).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use api::secrets::{SecretProvider, SecretStore};
use api::{Application, Clock, shutdown_signal, telemetry};
use clap::Parser;

/// Tollgate's API service. Settings: deploy/<TOLLGATE_ENV>.toml, TOLLGATE__… overrides,
/// DATABASE_URL; the secret from TOLLGATE_SECRET_CURRENT (env source) or Secrets Manager.
#[derive(Debug, Parser)]
#[command(name = "api", version)]
struct Cli {
    /// Print the effective settings (secrets redacted) and exit.
    #[arg(long)]
    check_config: bool,
    /// Apply the database migrations to the configured database and exit.
    #[arg(long, conflicts_with = "check_config")]
    migrate: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match shared_auth::load(shared_auth::Component::Api) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        println!("settings for `{}` are valid:\n{settings:#?}", settings.env);
        return ExitCode::SUCCESS;
    }
    // Held to the end of `main`: every queued line is written before the process exits.
    let _log = telemetry::init(&settings.env);
    let result = if cli.migrate {
        migrate(&settings).await
    } else {
        serve(settings).await
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "api stopped");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(settings: &shared_auth::Settings) -> anyhow::Result<()> {
    let database = api::database::Database::start(settings).await?;
    database
        .migrate()
        .await
        .context("cannot apply the database migrations")?;
    println!(
        "migrations applied: the database has all {} of this build",
        api::database::MIGRATOR.iter().count()
    );
    Ok(())
}

async fn serve(settings: shared_auth::Settings) -> anyhow::Result<()> {
    let vars = std::env::vars().collect();
    let provider = SecretProvider::from_settings(&settings, &vars)
        .await
        .context("cannot set up the registration secret")?;
    let secrets =
        SecretStore::start(provider, Duration::from_secs(settings.api.secret_refresh_s)).await;
    let env = settings.env.clone();
    let app = Application::build(settings, secrets, Clock::system()).await?;
    tracing::info!(address = %app.local_addr()?, env, "api listening");
    app.run_until(shutdown_signal()).await?;
    tracing::info!("api stopped");
    Ok(())
}
