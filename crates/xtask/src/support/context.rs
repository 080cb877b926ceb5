//! What every task needs: where the workspace is, its settings for an environment, an async
//! runtime on demand, Ctrl-C, and asking before anything destructive.

use std::collections::HashMap;
#[cfg(feature = "cloud")]
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use shared_auth::{Component, Settings};
// What only the cloud tasks use: checking a deploy's inputs and asking before destroying.
#[cfg(feature = "cloud")]
use {anyhow::bail, shared_auth::Unfilled};

// Ctrl-C lives with the children it stops; every task reaches it from here.
pub use crate::support::children::handle_interrupts;
#[cfg(feature = "local")]
pub use crate::support::children::interrupted;

/// The file at `path` (created with its folder if missing), opened for locking: what a lock
/// that one process of this checkout holds at a time is taken on.
pub fn lock_file(path: &std::path::Path) -> Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
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

/// Where xtask keeps logs and working files: target/tollgate/.
pub fn work_dir() -> PathBuf {
    workspace_root().join("target").join("tollgate")
}

/// The cargo that runs xtask (so a toolchain override carries over).
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Builds `binaries` in the dev profile as the tests build them
/// (`opskit::build::dev_build_args`: the workspace's feature set, so every dependency build
/// is theirs) and returns the folder they are in, target/debug/. What `up`, `migrate` and the
/// local Lambda runs start.
pub fn dev_build(binaries: &[&str]) -> Result<PathBuf> {
    let root = workspace_root();
    opskit::cmd::run(
        std::process::Command::new(cargo())
            .current_dir(&root)
            .args(opskit::build::dev_build_args(binaries)),
    )
    .context("the build failed: fix the compile error above")?;
    Ok(root.join("target").join("debug"))
}

/// Settings for `env`, from deploy/<env>.toml and the process's TOLLGATE__ overrides,
/// validated for deploying (every section).
pub fn settings_for(env: &str) -> Result<Settings> {
    let mut vars: HashMap<String, String> = std::env::vars().collect();
    vars.insert("TOLLGATE_ENV".into(), env.to_owned());
    shared_auth::load_for(Component::Deploy, &vars).with_context(|| format!("deploy/{env}.toml"))
}

#[cfg(feature = "cloud")]
/// Fails, naming every value the user must still supply (with the variable that sets it),
/// when `settings` lack any: before anything is built or changed.
pub fn require_supplied(settings: &Settings) -> Result<()> {
    let unfilled = settings.unfilled();
    if unfilled.is_empty() {
        return Ok(());
    }
    let rows: Vec<(String, String)> = unfilled
        .iter()
        .flat_map(|u| {
            let first = (Unfilled::variable(u.key), format!("{}: {}", u.key, u.hint));
            let or = u.or.as_ref().map(|(key, hint)| {
                (
                    format!("or {}", Unfilled::variable(key)),
                    format!("{key}: {hint}"),
                )
            });
            std::iter::once(first).chain(or)
        })
        .collect();
    let width = rows.iter().map(|(v, _)| v.len()).max().unwrap_or(0);
    let list: String = rows
        .iter()
        .map(|(variable, what)| format!("\n  {variable:<width$}  {what}"))
        .collect();
    bail!(
        "deploy/{env}.toml lacks {} value(s) only you can supply; set each in the file or as a variable, then run again:{list}",
        unfilled.len(),
        env = settings.env
    )
}

/// Runs `f` to completion on a new current-thread runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start the async runtime: {e}"))
        .block_on(f)
}

#[cfg(feature = "cloud")]
/// Fails early with a clear message when the settings name a local AWS that is not running.
pub fn check_local_aws(settings: &Settings) -> Result<()> {
    let Some(url) = &settings.aws.endpoint_url else {
        return Ok(());
    };
    let host = url
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let reachable = host
        .parse::<std::net::SocketAddr>()
        .ok()
        .is_some_and(|addr| {
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).is_ok()
        });
    if !reachable {
        bail!(
            "no local AWS at {url} (aws.endpoint_url).\n  Start one: `cargo xtask moto` (moto_server, configured as the tests configure theirs)"
        );
    }
    // A moto started by hand lacks the run-time configuration the stack needs (Lambda
    // invocations as stubs); it is idempotent, so it is applied every time.
    opskit::moto::configure_moto(url)
        .context("the local AWS is not a moto_server that takes its configuration")?;
    Ok(())
}

#[cfg(feature = "cloud")]
/// Asks `question` on the terminal unless `yes`; fails without a terminal.
pub fn confirm(question: &str, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question} needs confirmation: pass --yes to run without a terminal");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        bail!("stopped: nothing was changed")
    }
}
