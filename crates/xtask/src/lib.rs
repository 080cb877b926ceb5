//! `cargo xtask`: Tollgate's automation, as plain Rust instead of shell scripts.
//!
//! Two rooms: [`tasks`], one module per task (`setup`, `test`, `up`, `package`, `deploy`, `verify`,
//! `rotate_secret`, `destroy`, `migrate`, `reconcile`, `sqlx_prepare`, `tidy`, `timing`, `fuzz`,
//! `registry`, `moto`, `bench`, `soak`), each a `run` that reads as a list of named steps; and
//! [`support`], what several tasks use. [`flags`] is the command line. Every external command
//! is echoed before it runs (`$ pg_ctl …`), so a reader sees exactly what happens. Services
//! started here (PostgreSQL, moto_server, a registry) come from `testkit` and are owned by guards
//! that stop them on every exit path, Ctrl-C included.
//!
//! Two builds of one crate. `cargo xtask` (the alias in `.cargo/config.toml`) builds with `local`
//! alone: no EC2, ECS, ECR, Lambda or WAF SDK, so a first `cargo xtask up` compiles only what it
//! runs. The tasks that speak to an AWS account are compiled under `cloud`; the light build
//! hands them to the `xtask-cloud` binary with the same arguments ([`forward_to_cloud`]), built
//! with `cloud` alone, so the build that deploys never links `testkit` (what the two share is
//! `opskit`). Both features are defaults, so `cargo test --workspace` and clippy cover them all.

#[cfg(not(any(feature = "local", feature = "cloud")))]
compile_error!("xtask is built with `local` (`cargo xtask`), `cloud` (`xtask-cloud`) or both");

mod flags;
mod support;
mod tasks;

use std::process::ExitCode;

use clap::Parser;
use opskit::cmd;

/// Both binaries' entry point: parse, dispatch, print the error chain on failure.
pub fn main() -> ExitCode {
    let flags = flags::Xtask::parse();
    support::context::handle_interrupts();
    let result = match flags.task {
        #[cfg(feature = "local")]
        flags::Task::Test(task) => task.run(),
        #[cfg(feature = "local")]
        flags::Task::Up(task) => task.run(),
        flags::Task::Setup(task) => task.run(),
        flags::Task::Migrate(task) => task.run(),
        #[cfg(feature = "local")]
        flags::Task::SqlxPrepare(task) => task.run(),
        flags::Task::Timing(task) => task.run(),
        flags::Task::Tidy(task) => task.run(),
        flags::Task::Cost(task) => task.run(),
        flags::Task::Fuzz(task) => task.run(),
        #[cfg(feature = "local")]
        flags::Task::Registry(task) => task.run(),
        #[cfg(feature = "local")]
        flags::Task::Moto(task) => task.run(),
        #[cfg(feature = "local")]
        flags::Task::Bench(task) => task.run(),
        #[cfg(feature = "local")]
        flags::Task::Soak(task) => task.run(),
        #[cfg(feature = "cloud")]
        flags::Task::Package(task) => task.run(),
        #[cfg(feature = "cloud")]
        flags::Task::Deploy(task) => task.run(),
        #[cfg(feature = "cloud")]
        flags::Task::Verify(task) => task.run(),
        #[cfg(feature = "cloud")]
        flags::Task::RotateSecret(task) => task.run(),
        #[cfg(feature = "cloud")]
        flags::Task::Destroy(task) => task.run(),
        #[cfg(feature = "cloud")]
        flags::Task::Reconcile(task) => task.run(),
        #[cfg(feature = "cloud")]
        flags::Task::Redrive(task) => task.run(),
        #[cfg(not(feature = "cloud"))]
        _ => forward_to_cloud(Build::Cloud),
        #[cfg(all(feature = "cloud", not(feature = "local")))]
        _ => Err(anyhow::anyhow!(
            "xtask-cloud runs the tasks that speak to an AWS account; run this one as `cargo xtask`"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e:#}", cmd::paint("31", "error"));
            ExitCode::FAILURE
        }
    }
}

/// Which build of `xtask-cloud` a forwarded task runs.
#[cfg(not(feature = "cloud"))]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Build {
    /// `cloud` alone: what deploys, verifies and rotates. No `testkit` in it.
    Cloud,
    /// `cloud` and `local`: `up --network`, which deploys and then starts the rendered world.
    Full,
}

/// The light build's answer to a cloud task: run `xtask-cloud` (of `build`) with this process's
/// arguments (cargo builds it first, with its progress shown, the first time), and stand or
/// fall with it. Ctrl-C reaches both processes; this one only waits, the child stops what it
/// started.
#[cfg(not(feature = "cloud"))]
pub(crate) fn forward_to_cloud(build: Build) -> anyhow::Result<()> {
    let features = match build {
        Build::Cloud => "cloud",
        Build::Full => "cloud,local",
    };
    let mut cloud = std::process::Command::new(support::context::cargo());
    cloud
        .current_dir(support::context::workspace_root())
        .args([
            "run",
            "--package",
            "xtask",
            "--no-default-features",
            "--features",
        ])
        .args([features, "--bin", "xtask-cloud", "--"])
        .args(std::env::args_os().skip(1));
    let status = cmd::status(&mut cloud)?;
    if !status.success() {
        // xtask-cloud printed its own error; a second line would only repeat it.
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}
