//! A child process with its output in a log file, killed when dropped; and whether the servers
//! this process starts lead process groups of their own ([`outlive_interrupts`]).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cmd;

/// Set by a process that outlives an interrupt ([`outlive_interrupts`]).
static OUTLIVES_INTERRUPTS: AtomicBool = AtomicBool::new(false);

/// Says that this process outlives an interrupt and then stops its servers through their
/// guards (xtask: it handles Ctrl-C and SIGTERM). Its servers then lead process groups of their
/// own, so that an interrupt aimed at it or at its other children does not kill them before
/// their guards stop them cleanly. A test binary does not call it: an interrupt ends it
/// without running a guard, so its servers stay in its group and end with it, rather than
/// outlive it (a killed deploy test left its moto_server and registry running).
pub fn outlive_interrupts() {
    OUTLIVES_INTERRUPTS.store(true, Ordering::SeqCst);
}

/// A server's command: in a process group of its own when this process outlives interrupts.
pub fn grouped(command: &mut Command) -> &mut Command {
    if OUTLIVES_INTERRUPTS.load(Ordering::SeqCst) {
        command.process_group(0);
    }
    command
}

/// How long a service may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Process {
    child: Option<Child>,
    name: String,
    log: PathBuf,
}

impl Process {
    /// Starts `program` with `env` added to this process's environment, appending its stdout
    /// and stderr to `log`.
    pub fn start(name: &str, program: &Path, env: &[(String, String)], log: &Path) -> Result<Self> {
        let mut command = Command::new(program);
        command.envs(env.iter().map(|(k, v)| (k, v)));
        Self::spawn(name, command, log)
    }

    /// Starts `command` as it is (program, arguments, environment), appending its stdout and
    /// stderr to `log`: for a program run through a wrapper, such as `ip netns exec`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot write {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        cmd::echo(&command);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Self {
            child: Some(child),
            name: name.to_owned(),
            log: log.to_owned(),
        })
    }

    /// The operating system's id of the process, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits until `url` answers 2xx; fails at once if the process exits, or after 30 s.
    pub async fn wait_ready(&mut self, http: &reqwest::Client, url: &str) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < READY_TIMEOUT {
            if let Some(status) = self.exited() {
                bail!(
                    "{} exited ({status}); see {}",
                    self.name,
                    self.log.display()
                );
            }
            if http
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "{} was not ready within {} s; see {}",
            self.name,
            READY_TIMEOUT.as_secs(),
            self.log.display()
        )
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Asks the process to stop (SIGTERM, as ECS and Lambda do), waits up to `grace`, then
    /// kills it: its exit status, if it stopped by itself.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Some(status) = self.exited() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop();
        None
    }

    /// Waits up to `limit` for the process to end by itself: its exit status, or `None`
    /// (then it is killed).
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.exited() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop();
        None
    }

    /// Kills the process and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}
