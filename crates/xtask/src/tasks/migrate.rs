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
        // The dev build `up` and the tests make (`cargo run -p api` would resolve the api's
        // features alone and compile a second copy of part of the tree).
        let root = workspace_root();
        cmd::run(
            Command::new(cargo())
                .current_dir(&root)
                .args(testkit::stack::dev_build_args(&["api"]))
                .arg("--quiet"),
        )?;
        cmd::run(
            Command::new(root.join("target/debug/api"))
                .current_dir(&root)
                .arg("--migrate")
                .env("TOLLGATE_ENV", &self.env),
        )
    }
}
