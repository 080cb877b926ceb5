//! `cargo xtask test`: the workspace tests with the services they need.
//!
//! One `cargo test --workspace`, shaped for this machine's two cores: the staging deploy test
//! (`crates/xtask/tests/deploy.rs`, about half the suite's time, most of it waiting on
//! Terraform and moto) runs in a second `cargo test` beside the rest rather than after it. It
//! has a moto_server of its own, so neither run sees the other's resources. With arguments
//! after `--` (a package, a filter), the one plain `cargo test` runs instead.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use opskit::cmd;
use testkit::AWS_ENDPOINT_VAR;
use testkit::services::{Moto, Postgres};

use crate::flags;
use crate::support::artifacts;
use crate::support::children::{self, Group};
use crate::support::context::{cargo, interrupted, settings_for, work_dir, workspace_root};

/// Where `cargo xtask test` writes the other tests' outcome (`passed`, or `failed` and the
/// exit status) the moment they end, while the deploy test may still be running: `.ci/run`
/// waits for it to start the bench and the soak in the deploy test's last minutes, which
/// mostly wait on moto and Terraform with both cores free.
pub const OTHERS_DONE: &str = "logs/other-tests.status";

/// The test run beside the others: package, test target, the test's full name (its file's
/// module, then the function: every crate has one test binary, `tests/main.rs`).
const BESIDE: (&str, &str, &str) = (
    "xtask",
    "integration",
    "deploy::the_shipped_staging_stack_deploys_verifies_catches_a_mismatch_and_destroys",
);

impl flags::Test {
    pub fn run(self) -> Result<()> {
        // Every prerequisite before anything starts (`cargo xtask setup`): a missing one costs
        // no time.
        crate::tasks::setup::ensure(crate::flags::Scope::Test)?;
        let services = Services::start(self.locked)?;
        if !self.cargo_args.is_empty() {
            refuse_a_package(&self.cargo_args)?;
            let mut args = vec!["--workspace", "--no-fail-fast"];
            args.extend(self.cargo_args.iter().map(String::as_str));
            let status = children::status(&mut services.cargo_test(&args))?;
            return outcome(&[("cargo test", status)]);
        }
        // The deploy test's arm64 release builds take minutes and need nothing from the tests'
        // build: they start now, beside it (target/cross/ has a cargo lock of its own), so that
        // the deploy test finds them done or nearly. Dropped on any early exit, which stops them.
        let _ahead = CrossBuilds::start(DEPLOYED)?;
        // One build of every test binary first, so the two runs below never compile the same
        // thing twice or wait on each other's build lock.
        let built = children::status(&mut services.cargo_test(&["--workspace", "--no-run"]))?;
        if !built.success() {
            if interrupted() {
                bail!("interrupted");
            }
            bail!("the tests do not build ({built})");
        }
        services.run_split()
    }
}

/// The environment the deploy test deploys (it plans production too: the same architectures,
/// so the same builds).
const DEPLOYED: &str = "staging";

/// The deployables' cross builds for an environment ([`artifacts::cross_builds`]) on a thread
/// of their own, holding the deployables' build lock, their output in logs/cross-builds.log.
/// A deploy in the meantime waits for the lock, then finds nothing left to compile. Dropped
/// before they end (the tests did not build; the deploy test failed before its build), the
/// build in hand is stopped.
struct CrossBuilds {
    thread: Option<std::thread::JoinHandle<()>>,
    /// Set on drop: no further build starts, and the one in hand is stopped with its group
    /// (cargo and its compilers) by the thread, which the drop then waits for.
    stop: Arc<AtomicBool>,
}

impl CrossBuilds {
    fn start(env: &str) -> Result<Self> {
        let builds = artifacts::cross_builds(&settings_for(env)?)?;
        let log = work_dir().join("logs").join("cross-builds.log");
        eprintln!(
            "· the deployables' builds for {env} run beside the tests' build; their output: {}",
            log.display()
        );
        Self::spawn(builds, &log, artifacts::BuildLock::path())
    }

    /// Runs `builds` in turn on a thread, holding the lock at `lock`, their output in `log`.
    fn spawn(builds: Vec<Command>, log: &Path, lock: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(log.parent().expect("a log has a folder"))?;
        let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let log = log.to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            match run_in_turn(builds, &out, &lock, &stopped) {
                Ok(()) => eprintln!(
                    "· the deployables' builds ended after {:.0} s",
                    started.elapsed().as_secs_f64()
                ),
                // Not this run's verdict: the deploy test builds them again and reports.
                Err(e) => eprintln!(
                    "· the deployables' builds stopped after {:.0} s: {e:#} (output: {})",
                    started.elapsed().as_secs_f64(),
                    log.display()
                ),
            }
        });
        Ok(Self {
            thread: Some(thread),
            stop,
        })
    }
}

impl Drop for CrossBuilds {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `builds` one after another with their output in `out`; fails on the first that fails,
/// or once `stop` is set (the build in hand is then killed with its group).
fn run_in_turn(builds: Vec<Command>, out: &File, lock: &Path, stop: &AtomicBool) -> Result<()> {
    let _lock = artifacts::BuildLock::acquire_at(lock)?;
    for mut build in builds {
        if stop.load(Ordering::SeqCst) {
            bail!("stopped");
        }
        build.stdout(out.try_clone()?).stderr(out.try_clone()?);
        cmd::echo(&build);
        let program = build.get_program().to_string_lossy().into_owned();
        let mut child = Group::spawn(&mut build)?;
        // Bounded by the child: it ends, or the flag (set on drop) stops it.
        loop {
            if stop.load(Ordering::SeqCst) {
                child.kill();
                bail!("stopped");
            }
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("`{program}` failed ({status})");
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    Ok(())
}

/// PostgreSQL and moto_server for the tests (started here unless the environment names them),
/// and the variables that tell the tests where they are.
struct Services {
    _moto: Option<Moto>,
    _pg: Option<Postgres>,
    exports: Vec<(&'static str, String)>,
    /// `--locked` to every `cargo test`.
    locked: bool,
}

impl Services {
    fn start(locked: bool) -> Result<Self> {
        let mut exports = Vec::new();
        let moto = if std::env::var_os(AWS_ENDPOINT_VAR).is_none() {
            let moto = Moto::start(&work_dir())?;
            exports.push((AWS_ENDPOINT_VAR, moto.endpoint()));
            Some(moto)
        } else {
            eprintln!("· moto_server: using {AWS_ENDPOINT_VAR} from the environment");
            None
        };
        let pg = if std::env::var_os("DATABASE_URL").is_none() {
            let pg = Postgres::start()?;
            exports.push(("DATABASE_URL", pg.url()));
            Some(pg)
        } else {
            eprintln!("· PostgreSQL: using DATABASE_URL from the environment");
            None
        };
        Ok(Services {
            _moto: moto,
            _pg: pg,
            exports,
            locked,
        })
    }

    /// `cargo test <args>` with the services' variables and the project's tools on PATH.
    fn cargo_test(&self, args: &[&str]) -> Command {
        let mut test = Command::new(cargo());
        test.current_dir(workspace_root()).arg("test");
        if self.locked {
            test.arg("--locked");
        }
        test.args(args)
            // The tools `cargo xtask setup` put in the project's environments.
            .env("PATH", cmd::path_with_tools())
            .envs(self.exports.iter().map(|(k, v)| (k, v)));
        test
    }

    /// The deploy test in a second `cargo test` beside the rest; both must pass.
    fn run_split(&self) -> Result<()> {
        let (package, target, name) = BESIDE;
        let log = work_dir().join("logs").join("deploy-test.log");
        let others_done = work_dir().join(OTHERS_DONE);
        match std::fs::remove_file(&others_done) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", others_done.display()));
            }
            _ => {}
        }
        // `--workspace`, as the build: with `--package` cargo would unify fewer features and
        // compile a second copy of the tree before the test could start.
        let mut beside = start_beside(
            // `--nocapture`: the test says how far it has come as it goes, into the log.
            self.cargo_test(&[
                "--workspace",
                "--test",
                target,
                "--",
                "--exact",
                name,
                "--nocapture",
            ]),
            &log,
        )?;
        let started = std::time::Instant::now();
        // Every test binary runs even after one fails: a run reports every failure.
        let rest = children::status(&mut self.cargo_test(&[
            "--workspace",
            "--no-fail-fast",
            "--",
            "--skip",
            name,
            "--exact",
        ]));
        let said = match &rest {
            Ok(status) if status.success() => "passed".to_owned(),
            Ok(status) => format!("failed ({status})"),
            Err(e) => format!("failed ({e})"),
        };
        // Not fatal: the deploy test still runs, and its outcome is this run's.
        if let Err(e) = std::fs::write(&others_done, format!("{said}\n")) {
            eprintln!("cannot write {}: {e}", others_done.display());
        }
        eprintln!(
            "· the other tests {said} in {:.0} s; waiting for {package}'s {name} (log: {})",
            started.elapsed().as_secs_f64(),
            log.display()
        );
        let beside_status = beside.wait().context("waiting for the test run beside")?;
        print_log(&log);
        eprintln!(
            "· {package}'s {name} ended after {:.0} s",
            started.elapsed().as_secs_f64()
        );
        outcome(&[
            ("cargo test --workspace", rest?),
            (&format!("cargo test --test {target} {name}"), beside_status),
        ])
    }
}

/// Starts `test` with its output in `log` (printed when it ends, so two runs' lines never mix).
fn start_beside(mut test: Command, log: &Path) -> Result<Group> {
    std::fs::create_dir_all(log.parent().expect("logs/ has a parent"))?;
    let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    test.stdout(out.try_clone()?).stderr(out);
    cmd::echo(&test);
    eprintln!(
        "· running beside the other tests; its output: {}",
        log.display()
    );
    Group::spawn(&mut test)
}

fn print_log(log: &Path) {
    match std::fs::read_to_string(log) {
        Ok(text) => eprintln!("{text}"),
        Err(e) => eprintln!("cannot read {}: {e}", log.display()),
    }
}

/// Fails naming every run that failed.
fn outcome(runs: &[(&str, ExitStatus)]) -> Result<()> {
    let failed: Vec<String> = runs
        .iter()
        .filter(|(_, status)| !status.success())
        .map(|(what, status)| format!("{what} ({status})"))
        .collect();
    if !failed.is_empty() {
        bail!("tests failed: {}", failed.join("; "));
    }
    Ok(())
}

/// Refuses `-p`/`--package` among the arguments for `cargo test`: with `--workspace`, which
/// keeps one feature set for every test (rather than compile a second tree), cargo would run
/// every package's tests anyway, quietly; the deploy test among them.
fn refuse_a_package(args: &[String]) -> Result<()> {
    let package = args.iter().take_while(|a| *a != "--").any(|a| {
        matches!(a.as_str(), "-p" | "--package")
            || a.starts_with("--package=")
            || (a.starts_with("-p") && a.len() > 2)
    });
    if package {
        bail!(
            "`cargo xtask test -- -p …` would run every package's tests (the workspace is one build, one \
             feature set). Choose by target and test name instead, e.g. \
             `cargo xtask test -- --test integration delivery::`, or `-- --lib lazy`"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_filter_is_refused_and_names_and_targets_are_not() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        for package in [
            &["-p", "api"][..],
            &["--package", "api"],
            &["--package=api"],
            &["-papi"],
        ] {
            assert!(refuse_a_package(&args(package)).is_err(), "{package:?}");
        }
        for fine in [
            &["--test", "integration", "delivery::"][..],
            &["--lib", "lazy"],
            &["--", "-p"],
        ] {
            assert!(refuse_a_package(&args(fine)).is_ok(), "{fine:?}");
        }
    }

    /// `.ci/run` starts the bench and the soak when this file appears; a rename on one side
    /// alone would leave CI waiting for the whole deploy test (the loop ends with the run).
    #[test]
    fn ci_waits_for_the_file_this_task_writes() {
        let ci = std::fs::read_to_string(workspace_root().join(".ci/run")).expect("read .ci/run");
        let path = work_dir()
            .join(OTHERS_DONE)
            .strip_prefix(workspace_root())
            .expect("under the workspace")
            .display()
            .to_string();
        assert!(
            ci.contains(&format!("others_done={path}\n")),
            ".ci/run must wait for {path}, the file `cargo xtask test` writes when the other tests end"
        );
    }

    /// The builds started beside the tests' build are the ones the deploy test asks for: it
    /// deploys [`DEPLOYED`] and plans production, which must build for the same architectures.
    /// Otherwise they would be minutes of compiling that nothing uses, and the deploy test
    /// would compile its own after them.
    #[test]
    fn the_builds_ahead_are_the_deploy_tests() {
        let test = std::fs::read_to_string(workspace_root().join("crates/xtask/tests/deploy.rs"))
            .expect("read the deploy test");
        assert!(
            test.contains(&format!(
                r#"xtask(&["deploy", "--env", "{DEPLOYED}", "--yes"])"#
            )),
            "the deploy test no longer deploys {DEPLOYED}: change DEPLOYED with it"
        );
        let architectures = |env: &str| {
            let settings = settings_for(env).unwrap_or_else(|e| panic!("{env}: {e:#}"));
            (
                settings.deploy.lambda_architecture,
                settings.deploy.api_architecture,
            )
        };
        assert_eq!(
            architectures("production"),
            architectures(DEPLOYED),
            "production's plan in the deploy test would build other binaries than those built ahead"
        );
    }

    /// `--locked` reaches every `cargo test` of the run (CI's lock check), ahead of the
    /// arguments, whose `--` would otherwise hand it to the test binaries.
    #[test]
    fn locked_reaches_each_cargo_test() {
        let services = |locked| Services {
            _moto: None,
            _pg: None,
            exports: Vec::new(),
            locked,
        };
        let args = |locked| -> Vec<String> {
            services(locked)
                .cargo_test(&["--workspace", "--", "--exact", "name"])
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            args(true),
            ["test", "--locked", "--workspace", "--", "--exact", "name"]
        );
        assert!(!args(false).contains(&"--locked".to_owned()));
    }

    /// An early exit (the tests do not build) stops the builds started ahead: the one in hand
    /// is killed and the next never starts, so nothing keeps compiling after xtask is gone.
    #[test]
    fn dropping_the_builds_ahead_stops_them() {
        let dir = std::env::temp_dir().join(format!("tollgate-ahead-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (pid_file, next) = (dir.join("first.pid"), dir.join("second-ran"));
        let mut first = Command::new("sh");
        first
            .arg("-c")
            .arg(format!("echo $$ > {}; exec sleep 60", pid_file.display()));
        let mut second = Command::new("touch");
        second.arg(&next);
        let ahead = CrossBuilds::spawn(
            vec![first, second],
            &dir.join("builds.log"),
            dir.join("build.lock"),
        )
        .expect("the builds start");
        // Bounded: until the first build has written its process id.
        let pid = (0..200)
            .find_map(|_| {
                std::thread::sleep(Duration::from_millis(50));
                std::fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|t| t.trim().parse::<u32>().ok())
            })
            .expect("the first build started");
        drop(ahead);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "the build in hand still runs after the drop"
        );
        assert!(!next.exists(), "the next build started after the drop");
        std::fs::remove_dir_all(dir).ok();
    }

    /// The run beside names a test that exists. If it did not, its `--exact` run would pass
    /// having run nothing, and the deploy test would run with the rest, after everything else.
    #[test]
    fn the_test_run_beside_names_a_test_that_exists() {
        let (package, target, name) = BESIDE;
        let (module, function) = name
            .split_once("::")
            .expect("BESIDE's name is module::function");
        let crate_dir = workspace_root().join("crates").join(package);
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        };
        let manifest = read(&crate_dir.join("Cargo.toml"));
        assert!(
            manifest.contains(&format!("[[test]]\nname = \"{target}\"\n")),
            "crates/{package}/Cargo.toml has no test target {target}"
        );
        let main = read(&crate_dir.join("tests/main.rs"));
        assert!(
            main.lines().any(|l| l == format!("mod {module};")),
            "crates/{package}/tests/main.rs does not declare mod {module}"
        );
        let file = read(&crate_dir.join("tests").join(format!("{module}.rs")));
        assert!(
            file.contains(&format!("fn {function}()")),
            "crates/{package}/tests/{module}.rs has no test {function}"
        );
    }
}
