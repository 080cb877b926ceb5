//! `cargo xtask migrate --env E`: applies `migrations/` to an environment's database.
//!
//! Migrations run through the api binary, so the service and this command apply the very same
//! compiled-in set.

use std::process::Command;

use anyhow::Result;
use testkit::cmd;

use crate::flags;
use crate::support::context::{cargo, workspace_root};

impl flags::Migrate {
    pub fn run(self) -> Result<()> {
        cmd::run(
            Command::new(cargo())
                .current_dir(workspace_root())
                .args(["run", "--quiet", "--package", "api", "--", "--migrate"])
                .env("TOLLGATE_ENV", &self.env),
        )
    }
}
