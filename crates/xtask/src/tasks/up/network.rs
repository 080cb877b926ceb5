//! `cargo xtask up --network`: the staging contract as checked in, deployed to a local AWS of
//! its own (moto, a registry on loopback, the account's bootstrap and the values a person
//! supplies, as the deploy test makes them), then everything the applied stack renders started
//! in the network built from that state (`testkit::rendered`, `testkit::twin`): the migration
//! on the state its targeted apply left, the service behind the load balancer and its WAF, the
//! functions through the NAT gateway, the flow table, the faults. Prints every row, destroys
//! the stack, and exits with their verdict. Root only (network namespaces); the first run
//! builds the arm64 release artifacts (minutes).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use opskit::cmd;
use testkit::rendered::{self, Report, world::Deployed};
use testkit::services::{LocalRegistry, Moto};

use crate::support::context::{work_dir, workspace_root};

/// The contract deployed: the one the product ships first.
const ENV: &str = "staging";

pub fn run() -> Result<()> {
    let dir = work_dir().join("network");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).ok();
    }
    std::fs::create_dir_all(&dir)?;
    eprintln!("[1/4] a local AWS and a registry of their own, and the account's bootstrap");
    let moto = Moto::start(&dir.join("moto"))?;
    let registry = LocalRegistry::start(&dir.join("registry"), None)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let values = runtime.block_on(rendered::account::user_values(&moto.endpoint(), ENV))?;
    let bootstrap = opskit::bootstrap::try_apply_bootstrap(
        &workspace_root(),
        &dir.join("bootstrap"),
        &moto.endpoint(),
        &opskit::bootstrap::Account::from_values(ENV, &values),
    )?;
    let deploy = |args: &[&str]| -> Result<()> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .current_dir(workspace_root())
            .args(["deploy", "--env", ENV, "--yes"])
            .args(args)
            .env("TOLLGATE__AWS__ENDPOINT_URL", moto.endpoint())
            .env("TOLLGATE__DEPLOY__REGISTRY", registry.host())
            .envs(values.iter().map(|(k, v)| (k, v)));
        cmd::run(&mut command)
    };
    let read = || {
        Deployed::read(
            &workspace_root(),
            ENV,
            &moto.endpoint(),
            &bootstrap.state,
            &dir.join("runner"),
        )
    };
    eprintln!("\n[2/4] {ENV}'s migrations, as checked in (builds the arm64 artifacts first)");
    let outcome = (|| -> Result<Vec<Report>> {
        deploy(&["--migration-only"])?;
        let first = runtime.block_on(rendered::migration_on_partial_state(&read()?))?;
        eprintln!("\n[3/4] the whole stack, then everything it renders, started");
        deploy(&[])?;
        let second = runtime.block_on(rendered::whole_stack(&read()?))?;
        Ok(vec![first, second])
    })();
    eprintln!("\n[4/4] destroying the local stack");
    let destroyed = destroy(&moto.endpoint(), &registry.host(), &values);
    drop(registry);
    drop(moto);
    let reports = outcome?;
    destroyed?;
    print(&reports, &dir)
}

fn destroy(moto: &str, registry: &str, values: &[(String, String)]) -> Result<()> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .current_dir(workspace_root())
        .args(["destroy", "--env", ENV, "--yes"])
        .env("TOLLGATE__AWS__ENDPOINT_URL", moto)
        .env("TOLLGATE__DEPLOY__REGISTRY", registry)
        .envs(values.iter().map(|(k, v)| (k, v)));
    cmd::run(&mut command)
}

fn print(reports: &[Report], dir: &Path) -> Result<()> {
    let mut failed = 0;
    for report in reports {
        println!("\n{}", report.text());
        failed += report.failures().len();
    }
    if failed > 0 {
        bail!("{failed} row(s) failed; logs in {}", dir.display());
    }
    println!("every row holds; logs in {}", dir.display());
    Ok(())
}
