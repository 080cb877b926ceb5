//! `cargo xtask`: Tollgate's automation, as plain Rust instead of shell scripts.
//!
//! Every external command is echoed before it runs (`$ pg_ctl …`), so a reader sees exactly
//! what happens. Services started here (PostgreSQL, moto_server) are owned by guards that stop
//! them on every exit path, Ctrl-C included.

mod aws;
mod cmd;
mod deploy;
mod render;
mod services;
mod test;
mod up;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};

/// Set when Ctrl-C (or SIGTERM) arrives; long-running tasks poll it and wind down.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Tollgate's build, test and deploy tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Run the workspace tests with the services they need (PostgreSQL, moto_server).
    ///
    /// Starts a throwaway PostgreSQL cluster unless DATABASE_URL is set, and moto_server unless
    /// TOLLGATE_TEST_AWS_ENDPOINT is set; exports both; runs `cargo test --workspace`; stops
    /// what it started. Arguments after `--` go to `cargo test`.
    Test {
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Run the whole sign-up flow locally: moto, PostgreSQL, the api, the Lambda binary; then
    /// show a real sign-up go through and forged registrations fail.
    Up {
        /// Run the flow once and exit with its status instead of staying up.
        #[arg(long)]
        once: bool,
    },
    /// Build the Lambda's bootstrap.zip for Amazon Linux 2023 into target/dist/<env>/ (with
    /// SHA-256 sums), and the api image where a Docker engine exists.
    #[command(alias = "build")]
    Package {
        #[arg(long, default_value = "local")]
        env: String,
        /// Also build and push the api image to the environment's ECR repository.
        #[arg(long)]
        push: bool,
    },
    /// Build, then create or update an environment's whole stack with Terraform.
    Deploy {
        #[arg(long)]
        env: String,
        /// Show the plan and stop.
        #[arg(long)]
        plan: bool,
        /// Apply without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Read the deployed stack back through the AWS APIs and prove it matches the contract.
    Verify {
        #[arg(long)]
        env: String,
    },
    /// Write a new version of the guard secret (the old one stays accepted as previous).
    RotateSecret {
        #[arg(long)]
        env: String,
    },
    /// Delete every resource of an environment.
    Destroy {
        #[arg(long)]
        env: String,
        /// Destroy without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Apply migrations/ to an environment's database (DATABASE_URL, else the env's setting).
    Migrate {
        /// Environment whose settings to use (deploy/<env>.toml).
        #[arg(long, default_value = "local")]
        env: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Ctrl-C reaches the whole foreground process group: the child in the foreground (cargo
    // test) stops by itself, and this process must live on to stop the services it started.
    if let Err(e) = ctrlc::set_handler(|| {
        INTERRUPTED.store(true, Ordering::SeqCst);
        eprintln!("\ninterrupted: stopping what xtask started…");
    }) {
        eprintln!("warning: cannot handle Ctrl-C ({e}); an interrupt may leave services running");
    }
    let result = match cli.task {
        Task::Test { cargo_args } => test::run(&cargo_args),
        Task::Migrate { env } => migrate(&env),
        Task::Up { once } => up::run(once),
        Task::Package { env, push } => deploy::settings_for(&env)
            .and_then(|s| {
                if push {
                    deploy::require_docker(&env).map(|()| s)
                } else {
                    Ok(s)
                }
            })
            .and_then(|s| deploy::package(&s))
            .and_then(|_| {
                if push {
                    deploy::push_api_image(&env)
                } else {
                    Ok(())
                }
            }),
        Task::Deploy { env, plan, yes } => deploy::deploy(&env, plan, yes),
        Task::Verify { env } => verify::verify(&env),
        Task::RotateSecret { env } => deploy::rotate_secret(&env),
        Task::Destroy { env, yes } => deploy::destroy(&env, yes),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e:#}", cmd::paint("31", "error"));
            ExitCode::FAILURE
        }
    }
}

/// Migrations run through the api binary, so the service and this command apply the very same
/// compiled-in set.
fn migrate(env: &str) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    cmd::run(
        std::process::Command::new(cargo)
            .current_dir(workspace_root())
            .args(["run", "--quiet", "--package", "api", "--", "--migrate"])
            .env("TOLLGATE_ENV", env),
    )
}

/// The workspace root (the folder holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map(PathBuf::from)
        .unwrap_or(manifest)
}
