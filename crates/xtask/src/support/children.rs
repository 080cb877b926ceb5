//! Children that stop with xtask: each in a process group of its own, which an interrupt of
//! xtask stops whole.
//!
//! A Ctrl-C in a terminal reaches xtask's process group; a SIGTERM sent to xtask alone (as
//! `timeout`, a CI runner's cancel or `kill <pid>` send it) reaches xtask only. Either way the
//! handler ([`handle_interrupts`]) stops every group still running
//! here, so cargo, the test binaries under it and what they started (Terraform, the
//! compilers) end with it, and xtask lives on to stop the services it started. Without this a
//! SIGTERM left `cargo test` and its tests running after xtask had gone.

use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, PoisonError};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;

use std::sync::atomic::{AtomicBool, Ordering};

/// Set when Ctrl-C (or SIGTERM) arrives; long-running tasks poll it and wind down.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// On Ctrl-C or SIGTERM: the children started as groups of their own are stopped whole
/// (a SIGTERM sent to xtask alone reaches no child), and this
/// process lives on to stop the services it started.
pub fn handle_interrupts() {
    if let Err(e) = ctrlc::set_handler(|| {
        INTERRUPTED.store(true, Ordering::SeqCst);
        eprintln!("\ninterrupted: stopping what xtask started…");
        stop_all();
    }) {
        eprintln!("warning: cannot handle Ctrl-C ({e}); an interrupt may leave services running");
        return;
    }
    // This process lives on after an interrupt: its servers keep out of its children's way.
    opskit::process::outlive_interrupts();
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The groups (their leaders' process ids) of the children started here that have not been
/// waited for.
static GROUPS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn groups() -> std::sync::MutexGuard<'static, Vec<u32>> {
    GROUPS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A child leading a process group of its own, listed while it runs.
pub struct Group(Child);

impl Group {
    /// Starts `cmd` as the leader of a new process group. Refused once xtask was interrupted:
    /// the list is locked while the child starts, so an interrupt either sees it or stops it
    /// from starting.
    pub fn spawn(cmd: &mut Command) -> Result<Self> {
        let mut listed = groups();
        if interrupted() {
            bail!("interrupted");
        }
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start `{program}`"))?;
        listed.push(child.id());
        Ok(Group(child))
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }

    pub fn wait(&mut self) -> Result<ExitStatus> {
        self.0.wait().context("waiting for a child")
    }

    #[cfg(feature = "local")]
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.0.try_wait().context("looking at a child")
    }

    /// Kills the whole group (the child and whatever it started), then reaps the child.
    #[cfg(feature = "local")]
    pub fn kill(&mut self) {
        stop(&[self.id()], Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let id = self.id();
        groups().retain(|listed| *listed != id);
    }
}

/// Runs `cmd` as a [`Group`] (echoed first, as `opskit::cmd::status` does) and waits for it.
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    opskit::cmd::echo(cmd);
    Group::spawn(cmd)?.wait()
}

/// [`status`], failing when `cmd` does, as `opskit::cmd::run` does.
pub fn run(cmd: &mut Command) -> Result<()> {
    let ended = status(cmd)?;
    opskit::cmd::succeeded(cmd, ended)
}

/// Sends SIGTERM to every group still listed: what an interrupt of xtask does.
pub fn stop_all() {
    stop(&groups(), Signal::SIGTERM);
}

fn stop(leaders: &[u32], signal: Signal) {
    for leader in leaders {
        // A group that has just ended is no error: nothing is left to stop.
        let _ = i32::try_from(*leader).map(|id| killpg(Pid::from_raw(id), signal));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    /// Whether process `pid` is still running (neither gone nor a zombie waiting to be reaped).
    fn running(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                // The state follows the command's closing parenthesis.
                let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
                !matches!(state, Some(Some('Z' | 'X')))
            })
            .unwrap_or(false)
    }

    /// A shell that starts a sleep of its own and waits for it: the sleep is the grandchild an
    /// interrupt must reach too. Returns the group and the sleep's pid.
    fn shell_with_grandchild() -> (Group, u32) {
        let mut group = Group::spawn(
            Command::new("sh")
                .args(["-c", "sleep 60 & echo $!; wait"])
                .stdout(Stdio::piped()),
        )
        .unwrap();
        let mut line = String::new();
        BufReader::new(group.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        (group, line.trim().parse().unwrap())
    }

    fn ends_soon(pid: u32) -> bool {
        let started = Instant::now();
        while running(pid) && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        !running(pid)
    }

    #[test]
    fn a_group_is_listed_while_it_runs_and_stopping_it_ends_the_grandchildren_too() {
        let (mut group, sleep) = shell_with_grandchild();
        let shell = group.id();
        assert!(groups().contains(&shell), "listed while running");
        assert!(running(sleep));
        // The list's own stop, on this group alone: other tests' groups run in this process.
        stop(&[shell], Signal::SIGTERM);
        assert!(!group.wait().unwrap().success(), "the shell was stopped");
        assert!(
            ends_soon(sleep),
            "the grandchild {sleep} outlived its group"
        );
        drop(group);
        assert!(!groups().contains(&shell), "unlisted once dropped");
    }

    #[test]
    fn killing_a_group_ends_the_grandchildren_too() {
        let (mut group, sleep) = shell_with_grandchild();
        group.kill();
        assert!(
            ends_soon(sleep),
            "the grandchild {sleep} outlived its group"
        );
    }
}
