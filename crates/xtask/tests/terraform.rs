//! The Terraform stack is formatted, valid, passes checkov, and renders what AWS accepts
//! (`terraform test` against a mock provider).

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

/// checkov over the stack and its bootstrap: no failed check. A check that does not apply is
/// skipped inline, next to its resource, with a one-line reason (`#checkov:skip=ID:reason`).
#[test]
fn infra_passes_checkov_with_every_skip_explained() {
    let out = Command::new("checkov")
        .args(["--directory", "."])
        .args(["--framework", "terraform", "--compact", "--output", "json"])
        .current_dir(infra())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "checkov is needed: `python3 -m venv /opt/checkov && /opt/checkov/bin/pip install checkov` \
                 and put /opt/checkov/bin/checkov on PATH (a venv: checkov pins old boto3, which moto must not get): {e}"
            )
        });
    let text = String::from_utf8_lossy(&out.stdout);
    let reports: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "checkov printed no JSON ({e}):\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let reports = match reports {
        serde_json::Value::Array(list) => list,
        one => vec![one],
    };
    let mut failed = Vec::new();
    let mut skipped = 0;
    for report in &reports {
        for check in report["results"]["failed_checks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            failed.push(format!(
                "{} {} ({}:{})",
                check["check_id"].as_str().unwrap_or("?"),
                check["resource"].as_str().unwrap_or("?"),
                check["file_path"].as_str().unwrap_or("?"),
                check["file_line_range"][0]
            ));
        }
        for check in report["results"]["skipped_checks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            skipped += 1;
            let reason = check["check_result"]["suppress_comment"]
                .as_str()
                .unwrap_or("");
            assert!(
                reason.trim().len() > 10 && reason != "No comment provided",
                "{} on {} is skipped without a reason",
                check["check_id"],
                check["resource"]
            );
        }
    }
    assert!(
        failed.is_empty(),
        "checkov failed {} check(s): fix them, or skip one inline with a reason:\n{}",
        failed.len(),
        failed.join("\n")
    );
    assert!(skipped > 0, "checkov reported nothing: did it scan infra/?");
}

#[test]
fn infra_is_valid() {
    validate(&infra(), "stack", |_| {});
}

/// moto's SetQueueAttributes clears a queue's `Policy` when a call leaves it out, as the
/// redrive policy's does (infra/README.md): the retry queue's policy must be set after its
/// redrive policy, or a parallel apply can erase it and then wait on it until it fails.
#[test]
fn the_retry_queue_policy_is_applied_after_its_redrive_policy() {
    validate(&infra(), "graph", |dir| {
        let out = terraform(dir, &["graph"]);
        assert!(out.status.success(), "terraform graph failed");
        let graph = String::from_utf8_lossy(&out.stdout);
        let edge = r#""aws_sqs_queue_policy.retry" -> "aws_sqs_queue_redrive_policy.retry""#;
        assert!(
            graph.contains(edge),
            "the retry queue's policy does not wait for its redrive policy; no {edge} in:\n{}",
            graph
                .lines()
                .filter(|l| l.contains("aws_sqs_queue_policy.retry"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    });
}

/// `infra/tests/*.tftest.hcl`: what the stack renders from its variables (the sweep's rate
/// expression, the migration task's contract, when the rotation schedule attaches, the drain's
/// concurrency, the deployment surge, the names AWS refuses), planned against Terraform's
/// mock AWS provider. Each run fails on the stack before the change it guards.
#[test]
fn the_stack_renders_what_aws_accepts() {
    validate(&infra(), "render", |dir| {
        copy_tree(&infra().join("tests"), &dir.join("tests"));
        let out = terraform(dir, &["test", "-no-color"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "terraform test failed:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let passed = text.lines().filter(|l| l.ends_with("... pass")).count();
        assert!(passed >= 11, "fewer runs than written passed:\n{text}");
    });
}

/// `infra/modules/guarded-route/tests/*.tftest.hcl`: what the guarded route's module renders
/// on its own, as a caller elsewhere would use it (both modes, the sources WAF can hold, when
/// the schedule attaches, a static mode without its rule group refused).
#[test]
fn the_guarded_route_module_renders_what_aws_accepts() {
    let module = infra().join("modules/guarded-route");
    validate(&module, "guarded-route", |dir| {
        copy_tree(&module.join("tests"), &dir.join("tests"));
        let out = terraform(dir, &["test", "-no-color"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "terraform test failed:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let passed = text.lines().filter(|l| l.ends_with("... pass")).count();
        assert!(passed >= 5, "fewer runs than written passed:\n{text}");
    });
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

#[test]
fn the_github_deploy_bootstrap_is_valid() {
    validate(&infra().join("bootstrap"), "bootstrap", |_| {});
}

/// `terraform validate` of `module` in a scratch copy that keeps its place in the repository
/// (bootstrap reads the deploy workflow's session length from `../../.github/`), so nothing
/// Terraform writes lands in the checkout; then `more` in the initialised copy.
fn validate(module: &Path, name: &str, more: impl FnOnce(&Path)) {
    let root = infra().join("..").canonicalize().expect("the repository");
    let module = module.canonicalize().expect("the module");
    let module = module.as_path();
    let scratch =
        std::env::temp_dir().join(format!("tollgate-validate-{name}-{}", std::process::id()));
    let relative = module
        .strip_prefix(&root)
        .expect("the module is in the repository")
        .to_owned();
    let dir = scratch.join(&relative);
    std::fs::create_dir_all(&dir).expect("temp dir");
    for entry in std::fs::read_dir(module).expect("module folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "tf") {
            std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy");
        }
    }
    // The module's own modules (`./modules/…`), as `cargo xtask deploy` copies them.
    if module.join("modules").is_dir() {
        copy_tree(&module.join("modules"), &dir.join("modules"));
    }
    let workflows = scratch.join(".github/workflows");
    std::fs::create_dir_all(&workflows).expect("workflows dir");
    std::fs::copy(
        root.join(".github/workflows/deploy.yml"),
        workflows.join("deploy.yml"),
    )
    .expect("copy the deploy workflow");
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
    assert!(
        out.status.success(),
        "terraform validate:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    more(&dir);
    std::fs::remove_dir_all(&scratch).ok();
}
