//! The deployable artifacts, built into target/dist/<env>/: each Lambda function's zip for
//! Amazon Linux 2023 (cargo-lambda's zig linker, glibc checked) and the api image as an OCI
//! layout (no container engine: see [`crate::support::image`]), with SHA-256 sums. `package`
//! and `deploy` build them; `bench` measures them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use opskit::cmd;
use sha2::{Digest, Sha256};
use shared_auth::Settings;

use crate::support::context::{cargo, lock_file, workspace_root};
#[cfg(feature = "cloud")]
use crate::support::image;
use crate::support::toolchain;

/// The Cargo profile the Lambda functions are built with (size-optimised; see Cargo.toml).
pub const LAMBDA_PROFILE: &str = "lambda-release";

/// Highest glibc symbol version Amazon Linux 2023 provides.
pub const MAX_GLIBC: (u32, u32) = (2, 34);

#[cfg(feature = "cloud")]
/// Builds the api image and writes it as an OCI layout to target/dist/<env>/api-image/
/// (tagged `api`), with the manifest digest in `api-image.digest`: from `prebuilt` when given
/// (a static binary built elsewhere, e.g. a CI artifact), else from a fresh static release
/// build of the api.
pub fn api_image(settings: &Settings, prebuilt: Option<&Path>) -> Result<image::Image> {
    let _lock = BuildLock::acquire()?;
    let (triple, architecture) = api_target(&settings.deploy.api_architecture);
    let binary = match prebuilt {
        Some(path) => path.to_owned(),
        None => static_api(triple)?,
    };
    let image = image::build(settings, &binary, architecture)?;
    let dist = dist_dir(&settings.env);
    std::fs::create_dir_all(&dist)?;
    let layout = dist.join("api-image");
    image.write_layout(&layout, "api")?;
    std::fs::write(
        dist.join("api-image.digest"),
        format!("{}\n", image.digest()),
    )?;
    eprintln!(
        "· {}: OCI layout (skopeo inspect oci:{}:api)",
        layout.display(),
        layout.display()
    );
    Ok(image)
}

fn dist_dir(env: &str) -> PathBuf {
    workspace_root().join("target").join("dist").join(env)
}

/// The target directory of the deployables' cross builds (the functions for Lambda, the api
/// for the image): target/cross/, not target/. cargo locks a target directory for a whole
/// build, and these take minutes (LTO, one codegen unit); in target/ they held every other
/// cargo command in the checkout waiting meanwhile: a developer's `cargo test` or `cargo xtask
/// up`, the suite's other tests (each `built_binary` is a cargo build) while the deploy test
/// built, CI's clippy in the deploy test's last minutes. They share no unit with the dev
/// builds (other targets, other profiles); only the native release builds of `bench` and
/// `soak --build release` shared their build scripts and proc macros.
pub fn cross_target_dir() -> PathBuf {
    workspace_root().join("target").join("cross")
}

/// The Lambda functions, each its own crate (and binary of the same name), and the zip each
/// is deployed as.
pub const FUNCTIONS: [(&str, &str); 2] = [
    ("post-confirm", "bootstrap.zip"),
    ("rotate-secret", "rotate-secret.zip"),
];

#[cfg(feature = "cloud")]
/// Where the rotation function's zip lies, next to the registration function's `bootstrap.zip`.
pub fn rotation_zip(lambda_zip: &Path) -> PathBuf {
    lambda_zip.with_file_name(FUNCTIONS[1].1)
}

/// Builds both Lambda functions (the registration trigger `bootstrap.zip` and the secret's
/// rotation function `rotate-secret.zip`) and checks their glibc needs; returns the
/// registration zip's path under target/dist/<env>/ ([`rotation_zip`] gives the other).
pub fn lambda_zip(settings: &Settings) -> Result<PathBuf> {
    let (flag, triple) = lambda_target(&settings.deploy.lambda_architecture);
    require_cargo_lambda()?;
    toolchain::ensure_rust_target(triple)?;
    let _lock = BuildLock::acquire()?;
    eprintln!(
        "· building post-confirm and rotate-secret for {} Lambda (a cold build takes a few minutes)",
        settings.deploy.lambda_architecture
    );
    cmd::run(&mut cargo_lambda_build(flag, &[]))?;
    let dist = dist_dir(&settings.env);
    std::fs::create_dir_all(&dist)?;
    for (function, _) in FUNCTIONS {
        let binary = lambda_dir().join(function).join("bootstrap");
        let glibc = max_glibc(&binary)?;
        if glibc > MAX_GLIBC {
            bail!(
                "{} needs GLIBC_{}.{}, newer than Amazon Linux 2023's {}.{}: build it with cargo-lambda's zig linker",
                binary.display(),
                glibc.0,
                glibc.1,
                MAX_GLIBC.0,
                MAX_GLIBC.1
            );
        }
        eprintln!(
            "· {function}: bootstrap {:.1} MB stripped, needs GLIBC ≤ {}.{}",
            std::fs::metadata(&binary)?.len() as f64 / 1e6,
            glibc.0,
            glibc.1,
        );
    }
    cmd::run(&mut cargo_lambda_build(flag, &["--output-format", "zip"]))?;
    let mut summed = Vec::new();
    for (function, zip) in FUNCTIONS {
        let to = dist.join(zip);
        std::fs::copy(lambda_dir().join(function).join("bootstrap.zip"), &to)?;
        summed.push(to);
    }
    let paths: Vec<&Path> = summed.iter().map(PathBuf::as_path).collect();
    write_sums(&dist, &paths)?;
    eprintln!(
        "· {} and {}; sums in {}",
        dist.join(FUNCTIONS[0].1).display(),
        FUNCTIONS[1].1,
        dist.join("SHA256SUMS").display()
    );
    Ok(dist.join(FUNCTIONS[0].1))
}

/// One build of the deployables at a time in a checkout, held from the build until its output
/// is copied into target/dist/ (released on drop). cargo locks its own compile, but not what
/// cargo-lambda and cargo-zigbuild do around it: the zips they write under target/cross/lambda/,
/// and the zig wrapper scripts and cache under ~/.cache, which race when two builds start at
/// once on a cold machine. Two `package`/`deploy` runs at once (two terminals, or the suite's
/// image and deploy tests) therefore take turns.
pub struct BuildLock {
    _file: std::fs::File,
}

impl BuildLock {
    pub fn acquire() -> Result<Self> {
        Self::acquire_at(&Self::path())
    }

    /// The lock's file in this checkout.
    pub fn path() -> PathBuf {
        workspace_root().join("target/tollgate/build.lock")
    }

    pub fn acquire_at(path: &Path) -> Result<Self> {
        let file = lock_file(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                eprintln!(
                    "· waiting for another build of the deployables in this checkout to end ({})",
                    path.display()
                );
                file.lock()
                    .with_context(|| format!("cannot lock {}", path.display()))?;
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        Ok(Self { _file: file })
    }
}

fn require_cargo_lambda() -> Result<()> {
    let installed = Command::new(cargo())
        .args(["lambda", "--version"])
        .env("PATH", cmd::path_with_tools())
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        bail!(
            "cargo-lambda is not installed.\n  Install it: `cargo xtask setup` (into the project's environment), or `pip install cargo-lambda`"
        );
    }
    Ok(())
}

/// Where cargo-lambda writes each function's `bootstrap` (and zip): `<function>/` in here.
fn lambda_dir() -> PathBuf {
    cross_target_dir().join("lambda")
}

fn cargo_lambda_build(arch_flag: &str, extra: &[&str]) -> Command {
    let mut build = zig_build();
    build
        // The variable, not `--target-dir`, which cargo-lambda also hands to `cargo
        // metadata` (which refuses it).
        .env("CARGO_TARGET_DIR", cross_target_dir())
        .args(["lambda", "build", "--profile", LAMBDA_PROFILE, arch_flag])
        .arg("--lambda-dir")
        .arg(lambda_dir())
        .args(
            FUNCTIONS
                .iter()
                .flat_map(|(package, _)| ["--package", package]),
        )
        .args(extra);
    build
}

/// cargo-lambda's architecture flag and the Rust target for `deploy.lambda_architecture`.
fn lambda_target(architecture: &str) -> (&'static str, &'static str) {
    match architecture {
        "x86_64" => ("--x86-64", "x86_64-unknown-linux-gnu"),
        _ => ("--arm64", "aarch64-unknown-linux-gnu"),
    }
}

#[cfg(feature = "cloud")]
/// `cargo zigbuild --release` of the api for a `*-linux-musl` target: one static binary that
/// needs nothing from the image. Returns its path.
pub fn static_api(triple: &str) -> Result<PathBuf> {
    require_zigbuild()?;
    toolchain::ensure_rust_target(triple)?;
    eprintln!("· building the api for {triple} (static; a cold build takes ~5 minutes)");
    cmd::run(&mut static_api_build(triple))?;
    Ok(cross_target_dir().join(triple).join("release").join("api"))
}

fn static_api_build(triple: &str) -> Command {
    let mut build = zig_build();
    build
        .args([
            "zigbuild",
            "--release",
            "--locked",
            "--package",
            "api",
            "--bin",
            "api",
            "--target",
            triple,
        ])
        .env("CARGO_TARGET_DIR", cross_target_dir());
    build
}

/// A cargo command for cargo-lambda or cargo-zigbuild, which link with zig: the project's tools
/// on PATH, and zig found. Both look for `zig` on PATH, else run `python3 -m ziglang` with the
/// first `python3` on PATH: the user's, which lacks the `ziglang` wheel that `cargo xtask setup`
/// put in the project's build environment (so they stopped with "Zig is not installed"). So that
/// environment's Python is named to them ([`ZIG_PYTHON_VAR`]), unless the user has a zig of their
/// own on PATH or has named one.
fn zig_build() -> Command {
    let mut build = Command::new(cargo());
    build
        .current_dir(workspace_root())
        .env("PATH", cmd::path_with_tools());
    let named = ["CARGO_ZIGBUILD_ZIG_PATH", ZIG_PYTHON_VAR]
        .iter()
        .any(|var| std::env::var_os(var).is_some());
    if !named && let Some(Zig::Project(python)) = zig() {
        build.env(ZIG_PYTHON_VAR, python);
    }
    build
}

/// Where the builds' zig comes from.
pub enum Zig {
    /// A `zig` on PATH, which cargo-lambda and cargo-zigbuild run themselves.
    OnPath(PathBuf),
    /// The build environment's Python, which runs `-m ziglang` ([`project_zig`]).
    Project(PathBuf),
}

/// The zig the deployable builds use: one on PATH first, as cargo-lambda and cargo-zigbuild
/// look, else the project's. What [`zig_build`] names to them, and what `setup` reports.
pub fn zig() -> Option<Zig> {
    cmd::which("zig")
        .map(Zig::OnPath)
        .or_else(|| project_zig().map(Zig::Project))
}

/// The variable through which cargo-zigbuild (and cargo-lambda, built on it) takes the Python
/// to run `-m ziglang` with.
const ZIG_PYTHON_VAR: &str = "CARGO_ZIGBUILD_PYTHON_PATH";

/// The Python of the project's build environment when the zig it holds runs
/// (`python3 -m ziglang version`; the wheel is pinned in crates/xtask/tools/build.txt): what
/// the builds name to cargo-lambda and cargo-zigbuild when no zig is on PATH.
fn project_zig() -> Option<PathBuf> {
    let python = cmd::environment_dir("build").join("bin").join("python3");
    Command::new(&python)
        .args(["-m", "ziglang", "version"])
        .output()
        .is_ok_and(|out| out.status.success())
        .then_some(python)
}

fn require_zigbuild() -> Result<()> {
    if cmd::which("cargo-zigbuild").is_none() {
        bail!(
            "cargo-zigbuild is not installed (it links the static api binary for the image).\n  \
             Install it: `cargo xtask setup` (into the project's environment), or `pip install cargo-zigbuild` (brings zig)"
        );
    }
    Ok(())
}

/// The Rust target the api is built for, per `deploy.api_architecture`, and the image's OCI
/// architecture name.
pub fn api_target(architecture: &str) -> (&'static str, &'static str) {
    match architecture {
        "x86_64" => ("x86_64-unknown-linux-musl", "amd64"),
        _ => ("aarch64-unknown-linux-musl", "arm64"),
    }
}

/// The compiling half of [`lambda_zip`] and the api image's build for `settings`, as the
/// commands they run (their tools and Rust targets checked first): the same cargo-lambda and
/// cargo-zigbuild builds, so that once these have run, those find nothing left to compile.
/// `cargo xtask test` runs them beside the tests' own build ([`BuildLock`] held), so that the
/// deploy test, which needs the tests' build first, does not start on them minutes later.
#[cfg(feature = "local")]
pub fn cross_builds(settings: &Settings) -> Result<Vec<Command>> {
    let (flag, lambda_triple) = lambda_target(&settings.deploy.lambda_architecture);
    let (api_triple, _) = api_target(&settings.deploy.api_architecture);
    require_cargo_lambda()?;
    require_zigbuild()?;
    toolchain::ensure_rust_target(lambda_triple)?;
    toolchain::ensure_rust_target(api_triple)?;
    Ok(vec![
        cargo_lambda_build(flag, &[]),
        static_api_build(api_triple),
    ])
}

/// Writes `SHA256SUMS` for `files` into `dir`.
fn write_sums(dir: &Path, files: &[&Path]) -> Result<()> {
    let sums = files
        .iter()
        .map(|p| {
            Ok(format!(
                "{}  {}\n",
                sha256_hex(p)?,
                p.file_name().and_then(|n| n.to_str()).unwrap_or("?")
            ))
        })
        .collect::<Result<String>>()?;
    std::fs::write(dir.join("SHA256SUMS"), sums)?;
    Ok(())
}

fn sha256_hex(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// The highest `GLIBC_x.y` symbol version an ELF binary needs (from `objdump -T`).
fn max_glibc(binary: &Path) -> Result<(u32, u32)> {
    let out = cmd::output(Command::new("objdump").arg("-T").arg(binary))
        .context("objdump (binutils) is needed to check the Lambda binary's glibc")?;
    Ok(parse_max_glibc(&out))
}

fn parse_max_glibc(objdump: &str) -> (u32, u32) {
    objdump
        .split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let version: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .unwrap_or((0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_glibc_version_is_found() {
        let dump = "0000 DF *UND* 0 (GLIBC_2.17) memcpy\n0000 DF *UND* 0 (GLIBC_2.28) fcntl64\n\
                    0000 DF *UND* 0 (GLIBC_2.3.4) __chk\n0000 DF *UND* 0 (GLIBC_2.9) pipe2\n";
        assert_eq!(parse_max_glibc(dump), (2, 28));
        assert_eq!(parse_max_glibc("no versions"), (0, 0));
        assert!(parse_max_glibc("(GLIBC_2.39) x") > MAX_GLIBC);
    }

    #[test]
    fn a_second_build_waits_for_the_first_to_release_the_lock() {
        let dir = std::env::temp_dir().join(format!("tollgate-build-lock-{}", std::process::id()));
        let path = dir.join("build.lock");
        let first = BuildLock::acquire_at(&path).expect("the first build takes the lock");
        let (done, took) = std::sync::mpsc::channel();
        let second = {
            let path = path.clone();
            std::thread::spawn(move || {
                let lock = BuildLock::acquire_at(&path).expect("the second build takes it");
                done.send(()).expect("the test is listening");
                drop(lock);
            })
        };
        assert!(
            took.recv_timeout(std::time::Duration::from_millis(300))
                .is_err(),
            "the second build went ahead while the first held the lock"
        );
        drop(first);
        took.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the second build goes ahead once the first releases the lock");
        second.join().expect("the second build's thread ends");
        std::fs::remove_dir_all(dir).ok();
    }
}
