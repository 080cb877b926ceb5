//! `cargo xtask tidy`: the house rules alone, as `cargo xtask test` runs them among the rest.
//! The rules are tests (`crates/xtask/tests/tidy.rs`), each with a self-test that feeds it a
//! violation; this task runs just those, so a reader fixes the tree without the whole suite.

use std::process::Command;

use anyhow::Result;
use opskit::cmd;

use crate::flags;
use crate::support::context::{cargo, workspace_root};

impl flags::Tidy {
    pub fn run(self) -> Result<()> {
        cmd::run(Command::new(cargo()).current_dir(workspace_root()).args([
            "test",
            "--package",
            "xtask",
            "--test",
            "integration",
            "--",
            "tidy::",
        ]))
    }
}
