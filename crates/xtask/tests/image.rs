//! The api image as a container runtime sees it: `cargo xtask package --push` builds it with no
//! container engine and pushes it to a real registry on loopback; skopeo reads it back, umoci
//! unpacks it, and its entrypoint runs from the unpacked root file system alone, as the image's
//! user, with no network. The image is arm64 (the task's platform), so it runs under
//! `qemu-aarch64-static` copied into a scratch copy of the root file system (no binfmt_misc here).
//!
//! Needs Debian's `docker-registry`, `skopeo`, `umoci` and `qemu-user-static`, and
//! cargo-zigbuild (`.ci/run` installs them). The first run builds the static api (~5 min).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use sha2::{Digest, Sha256};
use testkit::cmd::transcript;
use testkit::services::LocalRegistry;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn require(program: &str, install: &str) -> PathBuf {
    testkit::cmd::which(program)
        .unwrap_or_else(|| panic!("`{program}` is needed by this test: {install}"))
}

fn run(program: &Path, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}",
        program.display(),
        transcript(&out)
    );
    out
}

fn package(registry: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask-cloud"))
        .current_dir(root())
        .args(["package", "--env", "local", "--push"])
        .env("TOLLGATE__DEPLOY__REGISTRY", registry)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "package --push failed:\n{}",
        transcript(&out)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("package --push prints the reference")
        .trim()
        .to_owned()
}

#[test]
fn the_pushed_image_is_minimal_reproducible_and_starts_from_its_own_root_file_system() {
    let apt = "apt-get install docker-registry skopeo umoci qemu-user-static";
    let skopeo = require("skopeo", apt);
    let umoci = require("umoci", apt);
    let qemu = require("qemu-aarch64-static", apt);
    let uid = run(Path::new("id"), &["-u"]).stdout;
    assert_eq!(
        String::from_utf8_lossy(&uid).trim(),
        "0",
        "this test runs the image with chroot, which needs root (CI runs as root)"
    );
    let scratch = tempdir("tollgate-image");
    let registry = LocalRegistry::start(&scratch.join("registry"), None).expect("registry starts");

    let reference = package(&registry.host());
    let (name, digest) = reference
        .split_once('@')
        .unwrap_or_else(|| panic!("`{reference}` is not a reference by digest"));
    assert_eq!(name, format!("{}/tollgate-local-api", registry.host()));

    // The registry serves exactly that manifest for the pushed tag.
    let tag = &digest["sha256:".len()..][..12];
    let tagged = format!("docker://{name}:{tag}");
    let raw = run(
        &skopeo,
        &["inspect", "--raw", "--tls-verify=false", &tagged],
    )
    .stdout;
    assert_eq!(format!("sha256:{:x}", Sha256::digest(&raw)), digest);
    let manifest: Value = serde_json::from_slice(&raw).expect("manifest JSON");
    assert_eq!(
        manifest["layers"].as_array().map(Vec::len),
        Some(1),
        "{manifest}"
    );

    let config: Value = serde_json::from_slice(
        &run(
            &skopeo,
            &["inspect", "--config", "--tls-verify=false", &tagged],
        )
        .stdout,
    )
    .expect("config JSON");
    assert_eq!(config["architecture"], "arm64", "{config}");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/api"])
    );

    // The same source gives the same image: a second package pushes nothing new.
    assert_eq!(
        package(&registry.host()),
        reference,
        "the build is not reproducible"
    );

    // Through the registry into a runtime bundle, as a container runtime would.
    let layout = scratch.join("layout");
    run(
        &skopeo,
        &[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("oci:{}:api", layout.display()),
        ],
    );
    let bundle = scratch.join("bundle");
    run(
        &umoci,
        &[
            "unpack",
            "--image",
            &format!("{}:api", layout.display()),
            &bundle.display().to_string(),
        ],
    );
    let rootfs = bundle.join("rootfs");
    for absent in ["bin", "sbin", "bin/sh", "usr/bin", "lib"] {
        assert!(!rootfs.join(absent).exists(), "the image has /{absent}");
    }
    let runtime: Value = serde_json::from_str(
        &std::fs::read_to_string(bundle.join("config.json")).expect("runtime config"),
    )
    .expect("runtime config JSON");
    let process = &runtime["process"];
    assert_eq!(process["user"]["uid"], 65532, "{process}");
    let args: Vec<String> = serde_json::from_value(process["args"].clone()).expect("args");
    let env: Vec<String> = serde_json::from_value(process["env"].clone()).expect("env");

    // The entrypoint, from the root file system alone: no host files, no network, the image's
    // user and environment (plus the contract's name).
    std::fs::copy(&qemu, rootfs.join("qemu-aarch64-static")).expect("copy qemu");
    let unshare = require("unshare", "apt-get install util-linux");
    let chroot = require("chroot", "apt-get install coreutils");
    let mut command = Command::new(unshare);
    command
        .args(["--net", "--pid", "--fork", "--mount"])
        .arg(chroot)
        .arg(format!(
            "--userspec={}:{}",
            process["user"]["uid"], process["user"]["gid"]
        ))
        .arg(&rootfs)
        .arg("/qemu-aarch64-static")
        .args(&args)
        .arg("--check-config")
        .env_clear()
        .envs(env.iter().filter_map(|kv| kv.split_once('=')))
        .env("TOLLGATE_ENV", "local");
    let out = command
        .output()
        .expect("unshare and chroot run (root is needed for chroot)");
    assert!(
        out.status.success(),
        "the image's entrypoint failed from its own root file system:\n{}",
        transcript(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("settings for `local` are valid"),
        "{}",
        transcript(&out)
    );
    drop(registry);
    std::fs::remove_dir_all(&scratch).ok();
}

fn tempdir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("clear old temp dir");
    }
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
