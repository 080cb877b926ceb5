//! `cargo xtask registry`: the loopback registry `--env local` pushes the api image to
//! (`deploy.registry`), in the foreground until Ctrl-C. Images stay in
//! target/tollgate/registry/ between runs.

use anyhow::{Context, Result};
use testkit::services::LocalRegistry;

use crate::flags;
use crate::support::context::{interrupted, settings_for, work_dir};

impl flags::ServeRegistry {
    pub fn run(self) -> Result<()> {
        let settings = settings_for("local")?;
        let host = settings
            .deploy
            .registry
            .context("deploy/local.toml names no deploy.registry")?;
        let port = host
            .strip_prefix("127.0.0.1:")
            .and_then(|p| p.parse::<u16>().ok())
            .with_context(|| format!("deploy.registry `{host}` is not 127.0.0.1:<port>"))?;
        let registry = LocalRegistry::start(&work_dir().join("registry"), Some(port))?;
        eprintln!(
            "· `cargo xtask deploy --env local` pushes to {}; Ctrl-C stops it",
            registry.host()
        );
        while !interrupted() {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        drop(registry);
        Ok(())
    }
}
