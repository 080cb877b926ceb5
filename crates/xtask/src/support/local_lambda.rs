//! A deployable Lambda function run here, as Lambda runs it: the debug build of its binary
//! under `opskit`'s local Runtime API, its log in `target/tollgate/`. What a local AWS cannot
//! invoke (`reconcile` through the sign-up function, `rotate-secret` through the rotation
//! function) is invoked this way, with the real binary: xtask links neither.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use opskit::process::Process;
use opskit::runtime_api::{Outcome, RuntimeApi};

use crate::support::context::{dev_build, work_dir};

/// One function's binary, running under a local Runtime API until dropped.
pub struct LocalLambda {
    runtime: RuntimeApi,
    _process: Process,
    log: PathBuf,
}

impl LocalLambda {
    /// Builds `package` (its binary has the package's name) and starts it with `env`.
    pub fn start(package: &str, env: &[(String, String)]) -> Result<Self> {
        eprintln!("· building {package} to run it here under a local Lambda Runtime API");
        let debug = dev_build(&[package])?;
        let runtime = RuntimeApi::start().context("cannot start the local Runtime API")?;
        let mut env = env.to_vec();
        env.extend(runtime.lambda_env(&format!("tollgate-local-{package}")));
        std::fs::create_dir_all(work_dir())?;
        let log = work_dir().join(format!("{package}.local.log"));
        let _ = std::fs::remove_file(&log);
        let process = Process::start(package, &debug.join(package), &env, &log)?;
        if !runtime.wait_for_polls(1, Duration::from_secs(10)) {
            bail!("{package} did not ask for work; see {}", log.display());
        }
        Ok(Self {
            runtime,
            _process: process,
            log,
        })
    }

    /// One invocation with `payload`, waiting at most `budget`: the function's result, or an
    /// error naming its report and log.
    pub fn invoke(&self, payload: &str, budget: Duration) -> Result<String> {
        match self.runtime.invoke(payload, budget) {
            Outcome::Response(body) => Ok(body),
            other => bail!("{other:?} (log: {})", self.log.display()),
        }
    }
}
