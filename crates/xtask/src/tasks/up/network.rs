//! `cargo xtask up --network`: the staging contract as checked in, deployed to a local AWS of
//! its own (moto, a registry on loopback, the account's bootstrap and the values a person
//! supplies, as the deploy test makes them), then everything the applied stack renders started
//! in the network built from that state (`testkit::rendered`, `testkit::twin`): the migration
//! on the state its targeted apply left, the service behind the load balancer and its WAF, the
//! functions through the NAT gateway, the flow table, the faults and a short fault matrix.
//! Prints every row, destroys the stack, and exits with their verdict. `soak --faults` runs the
//! fault matrix alone, for longer, on the same local deployment. Root only (network namespaces); the first run
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

/// The staging contract deployed to a local AWS of its own, as a person would deploy it: moto,
/// a registry on loopback, the account's bootstrap and the user's values. Destroy it with
/// [`LocalStack::destroy`] (the stack) and drop it (moto and the registry).
struct LocalStack {
    // Dropped in this order: the bootstrap's own destroy still needs moto.
    bootstrap: opskit::bootstrap::Bootstrap,
    runtime: tokio::runtime::Runtime,
    registry: LocalRegistry,
    moto: Moto,
    dir: std::path::PathBuf,
    values: Vec<(String, String)>,
}

impl LocalStack {
    /// A fresh folder `name` under the work folder, moto, the registry and the bootstrap.
    fn start(name: &str) -> Result<Self> {
        let dir = work_dir().join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).ok();
        }
        std::fs::create_dir_all(&dir)?;
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
        Ok(LocalStack {
            dir,
            moto,
            registry,
            runtime,
            values,
            bootstrap,
        })
    }

    /// `cargo xtask deploy --env staging --yes` with `args`, against this local AWS.
    fn deploy(&self, args: &[&str]) -> Result<()> {
        self.xtask(&["deploy", "--env", ENV, "--yes"], args)
    }

    fn destroy(&self) -> Result<()> {
        self.xtask(&["destroy", "--env", ENV, "--yes"], &[])
    }

    fn xtask(&self, task: &[&str], args: &[&str]) -> Result<()> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .current_dir(workspace_root())
            .args(task)
            .args(args)
            .env("TOLLGATE__AWS__ENDPOINT_URL", self.moto.endpoint())
            .env("TOLLGATE__DEPLOY__REGISTRY", self.registry.host())
            .envs(self.values.iter().map(|(k, v)| (k, v)));
        cmd::run(&mut command)
    }

    /// The applied state as Terraform shows it now.
    fn read(&self) -> Result<Deployed> {
        Deployed::read(
            &workspace_root(),
            ENV,
            &self.moto.endpoint(),
            &self.bootstrap.state,
            &self.dir.join("runner"),
        )
    }
}

pub fn run() -> Result<()> {
    eprintln!("[1/4] a local AWS and a registry of their own, and the account's bootstrap");
    let stack = LocalStack::start("network")?;
    eprintln!("\n[2/4] {ENV}'s migrations, as checked in (builds the arm64 artifacts first)");
    let outcome = (|| -> Result<Vec<Report>> {
        stack.deploy(&["--migration-only"])?;
        let first = stack
            .runtime
            .block_on(rendered::migration_on_partial_state(&stack.read()?))?;
        eprintln!("\n[3/4] the whole stack, then everything it renders, started");
        stack.deploy(&[])?;
        let second = stack
            .runtime
            .block_on(rendered::whole_stack(&stack.read()?))?;
        Ok(vec![first, second])
    })();
    eprintln!("\n[4/4] destroying the local stack");
    let destroyed = stack.destroy();
    let dir = stack.dir.clone();
    drop(stack);
    let reports = outcome?;
    destroyed?;
    print(&reports, &dir)
}

/// `cargo xtask soak --faults`: the fault matrix for `minutes` on the staging contract deployed
/// to a local AWS of its own; the table (or, with `json`, the figures) printed. Fails when a
/// fault lost or duplicated a registration, showed a user an error, or left sign-ups unable
/// to register directly again.
pub fn faults(minutes: u64, only: &[String], json: bool) -> Result<()> {
    let only = only
        .iter()
        .map(|name| rendered::matrix::Fault::named(name))
        .collect::<Result<Vec<_>>>()?;
    let which = (!only.is_empty()).then_some(only.as_slice());
    let count = which.map_or(rendered::matrix::FAULTS.len(), <[_]>::len);
    let plan = rendered::matrix::Plan::lasting(minutes, count);
    eprintln!("[1/4] a local AWS and a registry of their own, and the account's bootstrap");
    let stack = LocalStack::start("faults")?;
    eprintln!("\n[2/4] {ENV} deployed as checked in (builds the arm64 artifacts first)");
    let outcome = (|| {
        stack.deploy(&[])?;
        eprintln!(
            "\n[3/4] the stack started; {} faults, each {:.0} s before, {:.0} s held, {:.0} s after",
            count,
            plan.before.as_secs_f64(),
            plan.fault.as_secs_f64(),
            plan.after.as_secs_f64()
        );
        stack
            .runtime
            .block_on(rendered::fault_matrix(&stack.read()?, plan, which))
    })();
    eprintln!("\n[4/4] destroying the local stack");
    let destroyed = stack.destroy();
    let dir = stack.dir.clone();
    drop(stack);
    let (report, matrix) = outcome?;
    // The figures first: a destroy that fails must not hide what the run measured.
    if json {
        println!("{}", matrix.json());
    } else {
        println!("\n{}", matrix.table());
    }
    destroyed?;
    print(&[report], &dir)
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
