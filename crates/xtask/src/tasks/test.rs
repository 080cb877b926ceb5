//! `cargo xtask test`: the workspace tests with the services they need.

use std::process::Command;

use anyhow::{Result, bail};
use testkit::AWS_ENDPOINT_VAR;
use testkit::cmd;
use testkit::services::{Moto, Postgres};

use crate::flags;
use crate::support::context::{cargo, work_dir, workspace_root};

impl flags::Test {
    pub fn run(self) -> Result<()> {
        let need_pg = std::env::var_os("DATABASE_URL").is_none();
        let need_moto = std::env::var_os(AWS_ENDPOINT_VAR).is_none();
        // Every prerequisite before anything starts (`cargo xtask setup`): a missing one costs
        // no time.
        crate::tasks::setup::ensure(crate::tasks::setup::Scope::Test)?;

        let mut exports: Vec<(&str, String)> = Vec::new();
        let _moto = if need_moto {
            let moto = Moto::start(&work_dir())?;
            exports.push((AWS_ENDPOINT_VAR, moto.endpoint()));
            Some(moto)
        } else {
            eprintln!("· moto_server: using {AWS_ENDPOINT_VAR} from the environment");
            None
        };
        let _pg = if need_pg {
            let pg = Postgres::start()?;
            exports.push(("DATABASE_URL", pg.url()));
            Some(pg)
        } else {
            eprintln!("· PostgreSQL: using DATABASE_URL from the environment");
            None
        };

        let mut test = Command::new(cargo());
        test.current_dir(workspace_root())
            // Every test binary runs even after one fails: a run reports every failure.
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(&self.cargo_args)
            // The tools `cargo xtask setup` put in the project's environments, for every test.
            .env("PATH", cmd::path_with_tools())
            .envs(exports.iter().map(|(k, v)| (k, v)));
        let status = cmd::status(&mut test)?;
        if !status.success() {
            bail!("tests failed ({status})");
        }
        Ok(())
    }
}
