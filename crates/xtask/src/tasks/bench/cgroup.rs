//! A Linux CPU cgroup holding a process to a share of a CPU, as Fargate's CPU units and Lambda's
//! memory-proportional CPU hold the deployables in AWS.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The CFS period the quotas are a share of, in microseconds.
const PERIOD_US: u64 = 100_000;
/// Lambda's memory for one full vCPU:
/// <https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html>.
const LAMBDA_MB_PER_VCPU: f64 = 1769.0;

/// A Lambda function's CPU share for `memory_mb`.
pub fn lambda_vcpu(memory_mb: f64) -> f64 {
    memory_mb / LAMBDA_MB_PER_VCPU
}

/// A CPU cgroup with a quota; removed when dropped (once its processes have exited).
#[derive(Debug)]
pub struct Cgroup {
    dir: PathBuf,
    procs: PathBuf,
}

impl Cgroup {
    /// A cgroup limited to `vcpu` CPUs: cgroup v2's `cpu.max` where the unified hierarchy has
    /// the cpu controller, else v1's `cpu.cfs_quota_us`.
    pub fn limited(name: &str, vcpu: f64) -> Result<Self> {
        let quota = ((vcpu * PERIOD_US as f64).round() as u64).max(1_000);
        let leaf = format!("tollgate-{name}-{}", std::process::id());
        let v2 = Path::new("/sys/fs/cgroup");
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        let (dir, limit) = if v2.join("cgroup.controllers").is_file() {
            let enabled = std::fs::read_to_string(v2.join("cgroup.subtree_control"))?;
            if !enabled.split_whitespace().any(|c| c == "cpu") {
                bail!(
                    "the cpu controller is not enabled for child cgroups: \
                     echo +cpu > /sys/fs/cgroup/cgroup.subtree_control"
                );
            }
            (v2.join(&leaf), ("cpu.max", format!("{quota} {PERIOD_US}")))
        } else if v1.join("cpu.cfs_quota_us").is_file() {
            (v1.join(&leaf), ("cpu.cfs_quota_us", quota.to_string()))
        } else {
            bail!(
                "no CPU cgroup controller at /sys/fs/cgroup (v2) or /sys/fs/cgroup/cpu (v1): \
                 the capacity run needs one it may write (run as root, or leave out \
                 `--only capacity`)"
            );
        };
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the cgroup {}", dir.display()))?;
        if !dir.join("cpu.max").is_file() {
            std::fs::write(dir.join("cpu.cfs_period_us"), PERIOD_US.to_string())?;
        }
        std::fs::write(dir.join(limit.0), &limit.1)
            .with_context(|| format!("cannot set {} in {}", limit.0, dir.display()))?;
        Ok(Self {
            procs: dir.join("cgroup.procs"),
            dir,
        })
    }

    /// `program` started inside the cgroup: a shell moves itself in, then becomes the
    /// program, so nothing of it runs outside the quota.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(r#"echo $$ > "$1" && shift && exec "$@""#)
            .arg("sh")
            .arg(&self.procs)
            .arg(program);
        command
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}
