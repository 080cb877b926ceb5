//! CPU time per request, by process, read from `/proc`: where a run's cores went. On a shared
//! 2-core machine a throughput ratio is bounded by how much CPU each request costs in total
//! (load generator, api and database together), so the bench reports that split next to the
//! ratios it explains.

use std::path::Path;

use anyhow::{Context, Result};

/// CPU time, in clock ticks, of the processes a run is split into.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// `None` when the run has no api (the `pgbench` reference).
    api: Option<u64>,
    postgres: u64,
    /// This process's waited-for children: the load generator once its run has ended.
    generator: u64,
    /// Every core's busy time (`/proc/stat`): what the three above leave out is "other".
    machine: u64,
}

/// CPU microseconds per request of each part of one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerRequest {
    pub api: Option<f64>,
    pub postgres: f64,
    pub generator: f64,
    /// The whole machine's busy time: the parts above plus everything else that ran.
    pub machine: f64,
}

impl PerRequest {
    /// The api, PostgreSQL and the load generator together.
    pub fn total(&self) -> f64 {
        self.api.unwrap_or(0.0) + self.postgres + self.generator
    }

    /// Busy time no part accounts for: the bench itself, moto, the kernel's own work.
    pub fn other(&self) -> f64 {
        (self.machine - self.total()).max(0.0)
    }
}

/// One run's figures for the table: what ran, what generated the load, and its split.
#[derive(Debug, Clone)]
pub struct Split {
    pub run: &'static str,
    pub generator: &'static str,
    pub per_request: PerRequest,
}

/// Samples the api (when given), the whole PostgreSQL server and this process's children.
pub fn sample(api: Option<u32>, postmaster: u32) -> Result<Sample> {
    let proc = Path::new("/proc");
    let api = match api {
        Some(pid) => Some(own_ticks(&stat(proc, pid)?)),
        None => None,
    };
    Ok(Sample {
        api,
        postgres: server_ticks(proc, postmaster)?,
        generator: children_ticks(&std::fs::read_to_string("/proc/self/stat")?),
        machine: busy_ticks(&std::fs::read_to_string("/proc/stat")?),
    })
}

/// The difference between two samples, per request, in microseconds.
pub fn per_request(before: Sample, after: Sample, requests: f64) -> Result<PerRequest> {
    let us_per_tick = 1e6 / clock_ticks_per_second()?;
    let per = |b: u64, a: u64| a.saturating_sub(b) as f64 * us_per_tick / requests.max(1.0);
    Ok(PerRequest {
        api: before.api.zip(after.api).map(|(b, a)| per(b, a)),
        postgres: per(before.postgres, after.postgres),
        generator: per(before.generator, after.generator),
        machine: per(before.machine, after.machine),
    })
}

fn stat(proc: &Path, pid: u32) -> Result<String> {
    let path = proc.join(pid.to_string()).join("stat");
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// The fields of a `/proc/<pid>/stat` line after the command name (which may hold spaces
/// and parentheses): the first is the state, field 3 of proc(5).
fn fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

fn field(stat: &str, number: usize) -> u64 {
    fields(stat)
        .get(number - 3)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0)
}

/// utime + stime (fields 14 and 15).
fn own_ticks(stat: &str) -> u64 {
    field(stat, 14) + field(stat, 15)
}

/// cutime + cstime (fields 16 and 17): children that have ended and been waited for.
fn children_ticks(stat: &str) -> u64 {
    field(stat, 16) + field(stat, 17)
}

/// The postmaster, every live backend (its children) and every ended one (reaped by the
/// postmaster, so in its children's time). A backend that ends between two samples moves
/// from the live sum to the reaped one: the total is still its whole time.
fn server_ticks(proc: &Path, postmaster: u32) -> Result<u64> {
    let main = stat(proc, postmaster)?;
    let mut ticks = own_ticks(&main) + children_ticks(&main);
    for entry in std::fs::read_dir(proc)?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may end between listing and reading: it is then in the reaped sum.
        let Ok(line) = stat(proc, pid) else { continue };
        if field(&line, 4) == u64::from(postmaster) {
            ticks += own_ticks(&line);
        }
    }
    Ok(ticks)
}

/// All cores' time in user, nice, system, irq, softirq and steal: the first line of
/// `/proc/stat` less idle and iowait.
fn busy_ticks(stat: &str) -> u64 {
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let times: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| times.get(i).copied().unwrap_or(0))
        .sum()
}

fn clock_ticks_per_second() -> Result<f64> {
    let out = opskit::cmd::output(std::process::Command::new("getconf").arg("CLK_TCK"))?;
    out.trim()
        .parse()
        .with_context(|| format!("getconf CLK_TCK printed {out:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // proc(5): pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    // cmajflt utime stime cutime cstime ...
    const LINE: &str = "4242 (postgres: bench (x) idle) S 4200 4200 4200 0 -1 4194560 \
                        100 0 0 0 700 50 30 4 20 0 1 0 12345 0 0";

    #[test]
    fn fields_are_counted_after_the_command_name_whatever_it_holds() {
        assert_eq!(field(LINE, 3), 0, "the state is not a number");
        assert_eq!(field(LINE, 4), 4200, "ppid");
        assert_eq!(own_ticks(LINE), 750, "utime + stime");
        assert_eq!(children_ticks(LINE), 34, "cutime + cstime");
        assert_eq!(own_ticks("garbage"), 0);
    }

    #[test]
    fn a_split_is_per_request_and_adds_up() {
        let before = Sample {
            api: Some(100),
            postgres: 1_000,
            generator: 10,
            machine: 5_000,
        };
        let after = Sample {
            api: Some(200),
            postgres: 1_300,
            generator: 60,
            machine: 5_500,
        };
        let ticks = clock_ticks_per_second().expect("getconf");
        let split = per_request(before, after, 1_000.0).expect("split");
        let us = |t: f64| t * 1e6 / ticks / 1_000.0;
        assert_eq!(split.api, Some(us(100.0)));
        assert_eq!(split.postgres, us(300.0));
        assert_eq!(split.generator, us(50.0));
        assert_eq!(split.total(), us(450.0));
        assert_eq!(split.machine, us(500.0));
        assert!((split.other() - us(50.0)).abs() < 1e-9);
        let no_api = |s: Sample| Sample { api: None, ..s };
        let without = per_request(no_api(before), no_api(after), 1_000.0).expect("split");
        assert_eq!(without.api, None);
    }

    #[test]
    fn busy_time_leaves_out_idle_and_iowait() {
        let stat = "cpu  10 1 5 1000 7 2 3 4 0 0\ncpu0 5 0 2 500 3 1 1 2 0 0\n";
        assert_eq!(busy_ticks(stat), 10 + 1 + 5 + 2 + 3 + 4);
        assert_eq!(busy_ticks("intr 1 2 3"), 0);
    }

    #[test]
    fn this_process_is_read_back() {
        let me = stat(Path::new("/proc"), std::process::id()).expect("own stat");
        assert_eq!(
            field(&me, 4),
            u64::from(std::os::unix::process::parent_id())
        );
    }
}
