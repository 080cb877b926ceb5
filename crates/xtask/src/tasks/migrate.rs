//! `cargo xtask migrate --env E`: applies `migrations/` to an environment's database.
//!
//! Migrations run through the api binary, so the service and this command apply the very same
//! compiled-in set.

use std::process::Command;

use anyhow::Result;
use opskit::cmd;

use crate::flags;
use crate::support::context::{dev_build, workspace_root};

impl flags::Migrate {
    pub fn run(self) -> Result<()> {
        // The dev build `up` and the tests make (`cargo run -p api` would resolve the api's
        // features alone and compile a second copy of part of the tree).
        let debug = dev_build(&["api"])?;
        cmd::run(
            Command::new(debug.join("api"))
                .current_dir(workspace_root())
                .arg("--migrate")
                .env("TOLLGATE_ENV", &self.env),
        )
    }
}
