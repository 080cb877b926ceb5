//! `cargo xtask test`: the workspace tests with the services they need.

use std::process::Command;

use anyhow::{Result, bail};

use crate::services::{Moto, Postgres};
use crate::{cmd, workspace_root};

/// Variable naming the local AWS endpoint (moto_server) the tests use.
pub const AWS_ENDPOINT_VAR: &str = "TOLLGATE_TEST_AWS_ENDPOINT";

pub fn run(cargo_args: &[String]) -> Result<()> {
    let root = workspace_root();
    let mut exports: Vec<(&str, String)> = Vec::new();

    // Check every prerequisite before starting anything, so a missing one costs no time.
    let need_pg = std::env::var_os("DATABASE_URL").is_none();
    let need_moto = std::env::var_os(AWS_ENDPOINT_VAR).is_none();
    if need_pg {
        Postgres::find_binaries()?;
    }
    if need_moto && cmd::which("moto_server").is_none() {
        bail!(
            "moto_server not found.\n  Install it: `pip install 'moto[server]'`, or set {AWS_ENDPOINT_VAR} to one you run"
        );
    }

    let _moto = if need_moto {
        let moto = Moto::start(&root.join("target").join("tollgate"))?;
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

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut test = Command::new(cargo);
    test.current_dir(&root)
        .args(["test", "--workspace"])
        .args(cargo_args)
        .envs(exports.iter().map(|(k, v)| (k, v)));
    let status = cmd::status(&mut test)?;
    if !status.success() {
        bail!("tests failed ({status})");
    }
    Ok(())
}
