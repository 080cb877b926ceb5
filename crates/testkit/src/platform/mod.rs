//! What AWS would start from the stack, started here: each ECS task from its task definition
//! and each Lambda function from its configuration, both as AWS reads them back (moto), from
//! the artifacts `deploy` built and pushed, with exactly the rendered environment, secrets and
//! role, in the network twin ([`crate::twin`]) where the stack puts them.
//!
//! - [`ecs`]: a task definition's container, from its image's own root file system (pulled
//!   back from the registry, unpacked as a container runtime does), its entrypoint and
//!   command, its environment and `secrets` (each `valueFrom` resolved in Secrets Manager),
//!   the task role's credentials served where ECS serves them;
//! - [`lambda`]: a function's zip opened as Lambda opens it, its `bootstrap` under a Runtime
//!   API inside its network interface's namespace, with the environment Lambda gives a
//!   custom runtime and the execution role's credentials;
//! - [`credentials`]: a role's session from moto's STS, and ECS's credentials endpoint;
//! - [`image`]: a pushed image pulled back and unpacked.
//!
//! Where the local world cannot be AWS (moto plays its endpoints, no public CA signs this
//! world's certificates, moto serves no DNS), the difference is a [`Difference`]: each is
//! listed in one place by the caller and printed, and nothing else differs. An arm64 artifact
//! runs here under `qemu-aarch64-static` (functions with Debian's arm64 C library, as
//! `provided.al2023` gives them glibc).

pub mod credentials;
#[cfg(feature = "platform")]
pub mod ecs;
pub mod image;
#[cfg(feature = "platform")]
pub mod lambda;
pub mod secrets;

use std::path::PathBuf;

pub use opskit::locate::{ARM64_LIBC, arm64_sysroot};

/// One way the local world differs from AWS for a process: a variable it gets (or a file it
/// sees, or a setting of the local AWS) that AWS would not give it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The variable (or `/etc/hosts`, a file).
    pub name: String,
    pub value: String,
    pub why: String,
}

impl Difference {
    pub fn var(name: &str, value: impl Into<String>, why: &str) -> Self {
        Difference {
            name: name.to_owned(),
            value: value.into(),
            why: why.to_owned(),
        }
    }

    /// Whether this difference is a variable the process gets (rather than a file it sees or
    /// a setting of the local AWS).
    pub fn is_variable(&self) -> bool {
        !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}  ({})", self.name, self.value, self.why)
    }
}

/// The architecture an artifact names (`arm64`, `x86_64`, `amd64`), as this machine's Rust
/// name for it (`aarch64`, `x86_64`).
pub fn machine(architecture: &str) -> &'static str {
    match architecture.to_ascii_lowercase().as_str() {
        "arm64" | "aarch64" => "aarch64",
        _ => "x86_64",
    }
}

/// Whether an artifact for `architecture` needs an emulator here.
pub fn foreign(architecture: &str) -> bool {
    machine(architecture) != std::env::consts::ARCH
}

/// `qemu-aarch64-static`, or an error saying how to install it.
pub fn qemu() -> anyhow::Result<PathBuf> {
    crate::cmd::which("qemu-aarch64-static").ok_or_else(|| {
        anyhow::anyhow!(
            "qemu-aarch64-static runs the arm64 artifacts here: apt-get install qemu-user-static \
             (or `cargo xtask setup`)"
        )
    })
}
