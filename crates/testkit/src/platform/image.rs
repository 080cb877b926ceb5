//! A pushed image as a container runtime gets it: pulled back from the registry by the
//! reference the task definition names (skopeo), unpacked into a root file system (umoci), and
//! its configuration (entrypoint, command, environment, user) read from the image itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cmd;

/// An unpacked image.
#[derive(Debug, Clone)]
pub struct Image {
    pub reference: String,
    /// The unpacked root file system; copy it per container ([`Image::instance`]).
    rootfs: PathBuf,
    /// The image's configuration (OCI image config: `architecture`, `config.Entrypoint`, …).
    pub config: Value,
}

fn tool(name: &str) -> Result<PathBuf> {
    cmd::which(name).with_context(|| {
        format!("`{name}` reads the pushed image back: apt-get install skopeo umoci (or `cargo xtask setup`)")
    })
}

impl Image {
    /// Pulls `reference` (`host:port/repository@sha256:…`, a registry on loopback speaking
    /// plain HTTP) and unpacks it under `dir`.
    pub fn pull(reference: &str, dir: &Path) -> Result<Self> {
        let (skopeo, umoci) = (tool("skopeo")?, tool("umoci")?);
        if !reference.contains("@sha256:") {
            bail!("`{reference}` does not name the image by digest, as the stack must");
        }
        let local = reference
            .split('/')
            .next()
            .is_some_and(|host| host.starts_with("127.0.0.1:") || host.starts_with("localhost:"));
        if !local {
            bail!(
                "`{reference}` is not in a registry on loopback: the runner pulls only from the local one"
            );
        }
        std::fs::create_dir_all(dir)?;
        let config = cmd::output(Command::new(&skopeo).args([
            "inspect",
            "--config",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ]))
        .with_context(|| format!("cannot read the configuration of {reference}"))?;
        let config: Value =
            serde_json::from_str(&config).context("the image's configuration is not JSON")?;
        let layout = dir.join("layout");
        let bundle = dir.join("bundle");
        if bundle.exists() {
            std::fs::remove_dir_all(&bundle)?;
        }
        cmd::run(Command::new(&skopeo).args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("oci:{}:image", layout.display()),
        ]))?;
        cmd::run(Command::new(&umoci).args([
            "unpack",
            "--image",
            &format!("{}:image", layout.display()),
            &bundle.display().to_string(),
        ]))?;
        Ok(Image {
            reference: reference.to_owned(),
            rootfs: bundle.join("rootfs"),
            config,
        })
    }

    /// The image's CPU architecture (`arm64`, `amd64`).
    pub fn architecture(&self) -> &str {
        self.config["architecture"].as_str().unwrap_or("amd64")
    }

    fn strings(&self, key: &str) -> Vec<String> {
        self.config["config"][key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    }

    pub fn entrypoint(&self) -> Vec<String> {
        self.strings("Entrypoint")
    }

    pub fn cmd(&self) -> Vec<String> {
        self.strings("Cmd")
    }

    /// The image's environment, as `NAME=value` pairs split.
    pub fn env(&self) -> Vec<(String, String)> {
        self.strings("Env")
            .into_iter()
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect()
    }

    /// `uid:gid` the image runs as (`0:0` when it names none).
    pub fn user(&self) -> String {
        match self.config["config"]["User"]
            .as_str()
            .filter(|u| !u.is_empty())
        {
            Some(user) if user.contains(':') => user.to_owned(),
            Some(user) => format!("{user}:{user}"),
            None => "0:0".to_owned(),
        }
    }

    /// A copy of the root file system for one container, at `dir`: what the container writes
    /// (and what the runtime mounts into it) stays its own.
    pub fn instance(&self, dir: &Path) -> Result<PathBuf> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir.parent().unwrap_or(dir))?;
        cmd::run(Command::new("cp").arg("-a").arg(&self.rootfs).arg(dir))?;
        Ok(dir.to_owned())
    }
}
