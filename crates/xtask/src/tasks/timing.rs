//! `cargo xtask timing [--samples N]`: Welch's t-test of credential verification times for
//! near-miss forgeries (first versus last byte), both modes. The measurement is the optimized
//! bench `shared-auth/benches/timing.rs`: timing a debug build would say little about the
//! code that runs in production.

use std::process::Command;

use anyhow::Result;
use opskit::cmd;

use crate::flags;
use crate::support::context::{cargo, workspace_root};

impl flags::Timing {
    pub fn run(self) -> Result<()> {
        cmd::run(
            Command::new(cargo())
                .current_dir(workspace_root())
                .args([
                    "bench",
                    "--package",
                    "shared-auth",
                    "--bench",
                    "timing",
                    "--",
                    "--samples",
                ])
                .arg(self.samples.to_string()),
        )
    }
}
