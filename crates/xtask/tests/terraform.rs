//! The Terraform stack is formatted and valid.

use std::path::{Path, PathBuf};
use std::process::Command;

fn infra() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra")
}

fn terraform(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("terraform")
        .current_dir(dir)
        .args(args)
        .env("TF_IN_AUTOMATION", "1")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "terraform is needed (1.11+; https://developer.hashicorp.com/terraform/install): {e}"
            )
        })
}

#[test]
fn infra_is_formatted() {
    let out = terraform(&infra(), &["fmt", "-check", "-recursive", "-diff"]);
    assert!(
        out.status.success(),
        "run `terraform fmt infra`:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn infra_is_valid() {
    validate(&infra(), "stack");
}

#[test]
fn the_github_deploy_bootstrap_is_valid() {
    validate(&infra().join("bootstrap"), "bootstrap");
}

fn validate(module: &Path, name: &str) {
    let dir = std::env::temp_dir().join(format!("tollgate-validate-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for entry in std::fs::read_dir(module).expect("module folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "tf") {
            std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy");
        }
    }
    let mut init = vec!["init", "-backend=false", "-input=false", "-no-color"];
    let mirror = "-plugin-dir=/opt/tf-plugins";
    if Path::new("/opt/tf-plugins").is_dir() {
        init.push(mirror);
    }
    let out = terraform(&dir, &init);
    assert!(
        out.status.success(),
        "terraform init:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = terraform(&dir, &["validate", "-no-color"]);
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        out.status.success(),
        "terraform validate:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
