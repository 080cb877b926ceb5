//! The Rust toolchain's pieces the builds need: cross-compilation targets, added through
//! rustup when missing.

use std::process::Command;

use anyhow::Result;
use opskit::cmd;

/// Adds the Rust target `triple` through rustup unless it is installed.
pub fn ensure_rust_target(triple: &str) -> Result<()> {
    let installed = cmd::output(Command::new("rustup").args(["target", "list", "--installed"]))
        .unwrap_or_default();
    if !installed.lines().any(|l| l.trim() == triple) {
        eprintln!("· adding the Rust target {triple}");
        cmd::run(Command::new("rustup").args(["target", "add", triple]))?;
    }
    Ok(())
}
