//! `cargo xtask bench`: performance as ratios measured in one run on this machine, each
//! against a reference doing the same kind of work, so the figures travel between machines.
//!
//! It builds release binaries, starts its own PostgreSQL (TLS), moto_server and the api on
//! loopback, drives HTTP load with `wrk` (bounded in time, loopback only), runs `pgbench` with
//! the api's own registration statement as the database reference (and reads from `/proc`
//! the CPU each process spent per request in both), and starts the Lambda binary and a bare
//! `lambda_runtime` echo function cold under the local Runtime API. Figures only: nothing here
//! asserts a time.

mod capacity;
mod cgroup;
mod cpu;
mod http;
mod lambda;
pub(crate) mod wrk;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use opskit::cmd;
use serde_json::json;
use testkit::services::{Moto, Postgres};

use crate::flags;
use crate::support::artifacts;
use crate::support::children;
use crate::support::context::{block_on, cargo, work_dir, workspace_root};
use crate::tasks::up::Deployables;

/// One row of the table: our figure, the reference's, their ratio and the goal.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: &'static str,
    pub ours: f64,
    pub reference: f64,
    pub unit: &'static str,
    pub reference_name: &'static str,
    /// The ratio ours ÷ reference must be at least this (or, when `lower_is_better`, at most);
    /// `None`: reported for tracking, no goal.
    pub goal: Option<f64>,
    pub lower_is_better: bool,
    /// Each pair's ratio, sorted, when the row is the median of several (ours and the
    /// reference measured alternately); empty for a single measurement.
    pub ratios: Vec<f64>,
}

impl Row {
    /// A row from alternating (ours, reference) measurements: the pair whose ratio is the
    /// median, with every pair's ratio for the spread.
    pub fn paired(
        name: &'static str,
        unit: &'static str,
        reference_name: &'static str,
        goal: Option<f64>,
        pairs: &[(f64, f64)],
    ) -> Self {
        let (ours, reference) = pairs.get(median_index(pairs)).copied().unwrap_or_default();
        let mut ratios: Vec<f64> = pairs.iter().map(|(o, r)| o / r.max(1e-9)).collect();
        ratios.sort_by(f64::total_cmp);
        Row {
            name,
            ours,
            reference,
            unit,
            reference_name,
            goal,
            lower_is_better: false,
            ratios,
        }
    }

    /// A row whose smaller ratio is the better one.
    pub fn lower_is_better(self) -> Self {
        Row {
            lower_is_better: true,
            ..self
        }
    }

    fn ratio(&self) -> f64 {
        if self.reference == 0.0 {
            0.0
        } else {
            self.ours / self.reference
        }
    }

    /// How far the pairs' ratios spread: lowest and highest for a few pairs, the middle half
    /// (25th to 75th percentile) for many, where one outlier would say little.
    fn spread(&self) -> Option<(f64, f64, &'static str)> {
        let mut r = self.ratios.clone();
        match r.len() {
            0 | 1 => None,
            2..=5 => Some((r[0], r[r.len() - 1], "min–max")),
            _ => Some((
                percentile(&mut r, 25.0),
                percentile(&mut r, 75.0),
                "p25–p75",
            )),
        }
    }

    fn met(&self) -> Option<bool> {
        let goal = self.goal?;
        Some(if self.lower_is_better {
            self.ratio() <= goal
        } else {
            self.ratio() >= goal
        })
    }
}

impl flags::Bench {
    pub fn run(self) -> Result<()> {
        for (tool, install) in [
            ("wrk", "apt-get install wrk"),
            (
                "pgbench",
                "apt-get install postgresql-contrib (or postgresql-client)",
            ),
        ] {
            if cmd::which(tool).is_none() && !(tool == "pgbench" && pg_bin("pgbench").is_some()) {
                bail!("{tool} is needed by the benchmark: {install}");
            }
        }
        let dir = work_dir().join("bench");
        std::fs::create_dir_all(&dir)?;
        let binaries = match self.build {
            flags::Builds::Release => build_release()?,
            flags::Builds::Dev => build_dev()?,
        };
        let moto = Moto::start(&dir)?;
        let pg = Postgres::start()?;
        let settings = BenchSettings {
            seconds: self.seconds,
            connections: self.connections,
            cold_starts: self.cold_starts,
            pairs: self.pairs as usize,
            dir: dir.clone(),
            api_binary: self.api_binary,
        };
        let parts = if self.only.is_empty() {
            vec![
                flags::BenchPart::Http,
                flags::BenchPart::Lambda,
                flags::BenchPart::Capacity,
            ]
        } else {
            self.only.clone()
        };
        let (mut rows, mut splits, mut capacity) = (Vec::new(), Vec::new(), Vec::new());
        for part in parts {
            match part {
                flags::BenchPart::Http => {
                    let (r, s) = block_on(http::rows(&settings, &binaries, &pg, &moto))?;
                    rows.extend(r);
                    splits.extend(s);
                }
                flags::BenchPart::Lambda => {
                    rows.extend(block_on(lambda::rows(&settings, &binaries, &moto))?);
                }
                flags::BenchPart::Capacity => {
                    let (c, r) = block_on(capacity::rows(&settings, &binaries, &pg, &moto))?;
                    capacity.extend(c);
                    rows.extend(r);
                }
            }
        }
        drop(pg);
        drop(moto);
        let machine = match self.build {
            flags::Builds::Release => machine(),
            flags::Builds::Dev => format!(
                "{} — dev builds: these figures prove the bench runs, they are not the product's",
                machine()
            ),
        };
        if self.json {
            println!("{}", to_json(&rows, &splits, &capacity, &machine));
        } else {
            print_table(&rows, &machine);
            print_splits(&splits);
            capacity::print(&capacity);
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct BenchSettings {
    pub seconds: u64,
    pub connections: u32,
    pub cold_starts: usize,
    /// Rounds of (ours, reference) each goal row is the median of.
    pub pairs: usize,
    pub dir: PathBuf,
    /// Another api build to measure (e.g. an older commit's), instead of this checkout's.
    pub api_binary: Option<PathBuf>,
}

#[derive(Debug)]
pub struct Binaries {
    pub api: PathBuf,
    /// The api's references: the same statements and token check without Tollgate.
    pub bare: PathBuf,
    pub post_confirm: PathBuf,
    /// The Lambda's references: the same two calls written naively, and a bare echo.
    pub naive: PathBuf,
    pub echo: PathBuf,
}

fn build_release() -> Result<Binaries> {
    eprintln!(
        "· building release binaries (api; post-confirm as Lambda builds it), then their references"
    );
    release_deployables()?;
    build_profile("release", &["--package", "api", "--example", "bare"])?;
    build_profile(
        artifacts::LAMBDA_PROFILE,
        &[
            "--package",
            "post-confirm",
            "--example",
            "naive",
            "--example",
            "echo",
        ],
    )?;
    let target = workspace_root().join("target");
    Ok(binaries(
        &target.join("release"),
        &target.join(artifacts::LAMBDA_PROFILE),
    ))
}

/// The api and post-confirm in the profiles that ship, for this host: `release` and
/// `lambda-release` (the soak's `--build release` runs them too).
pub(crate) fn release_deployables() -> Result<Deployables> {
    // Each deployable alone, as it ships: an example in the same build would unify its
    // dev-dependencies' features into the deployable's tree.
    build_profile("release", &["--package", "api", "--bin", "api"])?;
    build_profile(
        artifacts::LAMBDA_PROFILE,
        &["--package", "post-confirm", "--bin", "post-confirm"],
    )?;
    let target = workspace_root().join("target");
    Ok(Deployables {
        api: target.join("release").join("api"),
        post_confirm: target.join(artifacts::LAMBDA_PROFILE).join("post-confirm"),
    })
}

fn build_profile(profile: &str, what: &[&str]) -> Result<()> {
    children::run(
        Command::new(cargo())
            .current_dir(workspace_root())
            .args(["build", "--profile", profile, "--locked"])
            .args(what),
    )
}

/// Where the api's builds are (`api_dir`) and the functions' (`lambda_dir`).
fn binaries(api_dir: &Path, lambda_dir: &Path) -> Binaries {
    Binaries {
        api: api_dir.join("api"),
        bare: api_dir.join("examples").join("bare"),
        post_confirm: lambda_dir.join("post-confirm"),
        naive: lambda_dir.join("examples").join("naive"),
        echo: lambda_dir.join("examples").join("echo"),
    }
}

/// The tests' builds: the binaries `cargo test --workspace` builds (the dev profile, every
/// package's features unified as the tests unify them), so after `cargo xtask test` nothing is
/// left to compile. A `cargo build -p api` would unify fewer features and rebuild the tree.
fn build_dev() -> Result<Binaries> {
    eprintln!("· the tests' builds (api, post-confirm and the echo reference, dev profile)");
    children::run(Command::new(cargo()).current_dir(workspace_root()).args([
        "test",
        "--workspace",
        "--locked",
        "--no-run",
    ]))?;
    let debug = workspace_root().join("target").join("debug");
    let binaries = binaries(&debug, &debug);
    for binary in [
        &binaries.api,
        &binaries.bare,
        &binaries.post_confirm,
        &binaries.naive,
        &binaries.echo,
    ] {
        if !binary.is_file() {
            bail!(
                "{} was not built by `cargo test --workspace --no-run`",
                binary.display()
            );
        }
    }
    Ok(binaries)
}

/// A PostgreSQL client binary from PATH or the server's install folder.
pub fn pg_bin(name: &str) -> Option<PathBuf> {
    cmd::which(name).or_else(|| {
        opskit::locate::postgres_binaries()
            .ok()
            .map(|dir| dir.join(name))
            .filter(|p| p.is_file())
    })
}

/// Cores and CPU model, so a table names the machine it came from.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    format!("{cores} cores, {model}")
}

fn print_table(rows: &[Row], machine: &str) {
    println!("\nmachine: {machine}\n");
    println!(
        "{:<52} {:>12} {:>12} {:>7} {:>20} {:>7}  reference is",
        "measure", "ours", "reference", "ratio", "spread", "goal"
    );
    for row in rows {
        let goal = row.goal.map_or_else(
            || "—".to_owned(),
            |g| format!("{}{g:.2}", if row.lower_is_better { "≤" } else { "≥" }),
        );
        let spread = row.spread().map_or_else(
            || "—".to_owned(),
            |(low, high, what)| format!("{low:.2}–{high:.2} {what} of {}", row.ratios.len()),
        );
        println!(
            "{:<52} {:>12} {:>12} {:>7.2} {:>20} {:>7}  {} {}",
            row.name,
            format!("{:.1} {}", row.ours, row.unit),
            format!("{:.1} {}", row.reference, row.unit),
            row.ratio(),
            spread,
            goal,
            row.reference_name,
            match row.met() {
                Some(true) => "✓",
                Some(false) => "✗ (goal not met)",
                None => "",
            }
        );
    }
}

/// Where the CPU of the accepted run and of its database reference went, per request.
fn print_splits(splits: &[cpu::Split]) {
    println!("\nCPU per request (µs, all cores; what bounds a ratio on shared cores)\n");
    println!(
        "{:<30} {:>8} {:>9} {:>15} {:>8} {:>8}",
        "run", "api", "postgres", "load generator", "total", "other"
    );
    for split in splits {
        let p = split.per_request;
        println!(
            "{:<30} {:>8} {:>9.0} {:>15} {:>8.0} {:>8.0}",
            split.run,
            p.api.map_or_else(|| "—".to_owned(), |a| format!("{a:.0}")),
            p.postgres,
            format!("{:.0} ({})", p.generator, split.generator),
            p.total(),
            p.other(),
        );
    }
}

fn to_json(
    rows: &[Row],
    splits: &[cpu::Split],
    capacity: &[capacity::Capacity],
    machine: &str,
) -> serde_json::Value {
    json!({
        "machine": machine,
        "capacity": capacity.iter().map(capacity::Capacity::to_json).collect::<Vec<_>>(),
        "cpu_per_request_us": splits.iter().map(|s| json!({
            "run": s.run,
            "api": s.per_request.api,
            "postgres": s.per_request.postgres,
            "load_generator": s.per_request.generator,
            "load_generator_is": s.generator,
            "total": s.per_request.total(),
            "other": s.per_request.other(),
        })).collect::<Vec<_>>(),
        "rows": rows.iter().map(|r| json!({
            "measure": r.name,
            "ours": r.ours,
            "reference": r.reference,
            "reference_is": r.reference_name,
            "unit": r.unit,
            "ratio": r.ratio(),
            "pair_ratios": r.ratios,
            "goal": r.goal,
            "lower_is_better": r.lower_is_better,
            "met": r.met(),
        })).collect::<Vec<_>>(),
    })
}

/// The index of the pair whose ratio is the median (nearest rank: an actual pair).
pub(super) fn median_index(pairs: &[(f64, f64)]) -> usize {
    let ratio = |(ours, reference): (f64, f64)| ours / reference.max(1e-9);
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by(|&a, &b| ratio(pairs[a]).total_cmp(&ratio(pairs[b])));
    order[(pairs.len().max(1) - 1) / 2]
}

/// The `p`-th percentile of `samples` (nearest rank; sorted here).
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Reads a number after `label` in a tool's output (`Requests/sec:   1234.56`).
pub fn number_after(text: &str, label: &str) -> Result<f64> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no `{label}` in:\n{text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut samples = vec![5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentile(&mut samples, 50.0), 3.0);
        assert_eq!(percentile(&mut samples, 99.0), 5.0);
        assert_eq!(percentile(&mut samples, 1.0), 1.0);
        assert_eq!(percentile(&mut [], 50.0), 0.0);
    }

    #[test]
    fn tool_figures_are_read_from_their_output() {
        let wrk = "Running 10s test\n  2 threads\nRequests/sec:  12345.67\nTransfer/sec: 1.2MB\n";
        assert_eq!(number_after(wrk, "Requests/sec:").expect("wrk"), 12345.67);
        let pgbench = "number of transactions actually processed: 100\ntps = 2345.678901 (without initial connection time)\n";
        assert_eq!(
            number_after(pgbench, "tps =").expect("pgbench"),
            2345.678901
        );
        assert!(number_after("nothing", "tps =").is_err());
    }

    #[test]
    fn goals_read_in_their_direction() {
        let row = |ours, lower_is_better| Row {
            name: "x",
            ours,
            reference: 10.0,
            unit: "",
            reference_name: "",
            goal: Some(1.5),
            lower_is_better,
            ratios: Vec::new(),
        };
        assert_eq!(
            (row(14.0, true).met(), row(16.0, true).met()),
            (Some(true), Some(false))
        );
        assert_eq!(
            (row(16.0, false).met(), row(14.0, false).met()),
            (Some(true), Some(false))
        );
    }
}
