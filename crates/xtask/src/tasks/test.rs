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
        check_prerequisites(need_pg, need_moto)?;

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
            .envs(exports.iter().map(|(k, v)| (k, v)));
        let status = cmd::status(&mut test)?;
        if !status.success() {
            bail!("tests failed ({status})");
        }
        Ok(())
    }
}

/// Checks every prerequisite before starting anything, so a missing one costs no time.
fn check_prerequisites(need_pg: bool, need_moto: bool) -> Result<()> {
    if need_pg {
        Postgres::find_binaries()?;
    }
    if need_moto && cmd::which("moto_server").is_none() {
        bail!(
            "moto_server not found.\n  Install it: `pip install 'moto[server]'`, or set {AWS_ENDPOINT_VAR} to one you run"
        );
    }
    for (program, what) in [
        (
            "docker-registry",
            "the loopback registry the image and deploy tests push to",
        ),
        ("skopeo", "reads the pushed image back"),
        ("umoci", "unpacks the image to run it"),
        (
            "qemu-aarch64-static",
            "runs the arm64 image's entrypoint here",
        ),
    ] {
        if cmd::which(program).is_none() {
            bail!(
                "{program} not found ({what}).\n  Install it: `apt-get install docker-registry skopeo umoci qemu-user-static`"
            );
        }
    }
    if cmd::which("checkov").is_none() {
        bail!(
            "checkov not found (the policy scan of infra/).\n  Install it in its own venv (it pins an old boto3 that moto must not get):\n  \
             `python3 -m venv /opt/checkov && /opt/checkov/bin/pip install checkov && ln -s /opt/checkov/bin/checkov /usr/local/bin/`"
        );
    }
    if cmd::which("cargo-zigbuild").is_none() {
        bail!(
            "cargo-zigbuild not found (links the static api for its image).\n  Install it: `pip install cargo-zigbuild`"
        );
    }
    if cmd::which("cargo-lambda").is_none() {
        bail!(
            "cargo-lambda not found (the Lambda's packaging and `cargo lambda watch` tests need it).\n  \
             Install it: `pip install cargo-lambda`"
        );
    }
    Ok(())
}
