//! `cargo xtask fuzz [--seconds N]`: every fuzz target of the contract's parsers
//! (`crates/shared-auth/fuzz`: the X-Forwarded-For walk, the signature header, the settings
//! loader), each for a bounded time. Needs the nightly toolchain and `cargo install cargo-fuzz`.
//! A crash leaves its input in `crates/shared-auth/fuzz/artifacts/<target>/`.

use std::process::Command;

use anyhow::{Result, bail};

use crate::flags;
use crate::support::children;
use crate::support::context::workspace_root;

const TARGETS: &[&str] = &["forwarded_for", "signature_header", "settings"];

impl flags::Fuzz {
    pub fn run(self) -> Result<()> {
        let nightly = Command::new("rustup")
            .args(["run", "nightly", "rustc", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !nightly {
            bail!(
                "the nightly toolchain is missing (cargo fuzz needs it): `rustup toolchain install nightly`"
            );
        }
        let fuzz = Command::new("cargo")
            .args(["fuzz", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !fuzz {
            bail!("cargo-fuzz is missing: `cargo install --locked cargo-fuzz`");
        }
        for (n, target) in TARGETS.iter().enumerate() {
            eprintln!(
                "· [{}/{}] {target}, {} s",
                n + 1,
                TARGETS.len(),
                self.seconds
            );
            children::run(
                Command::new("cargo")
                    .current_dir(workspace_root().join("crates/shared-auth"))
                    .args(["+nightly", "fuzz", "run", "--target-dir"])
                    // The workspace's target/, not the fuzz workspace's own: one place for
                    // every build (`cargo clean` reaches it; CI's disk figure counts it).
                    .arg(workspace_root().join("target").join("fuzz"))
                    .args([target, "--"])
                    .arg(format!("-max_total_time={}", self.seconds)),
            )?;
        }
        eprintln!("· no crash in {} targets", TARGETS.len());
        Ok(())
    }
}
