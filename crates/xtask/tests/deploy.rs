//! The whole stack on moto_server: deploy, no drift, verify, a tampered deployable caught by
//! verify, destroy. Takes a few minutes (a Lambda release build and ~60 resources).

use std::path::Path;
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["run", "--quiet", "--package", "xtask", "--"])
        .args(args)
        .env("TOLLGATE__AWS__ENDPOINT_URL", testkit::aws_endpoint())
        .output()
        .expect("cargo runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Destroys the stack even when an assertion fails half-way.
struct Teardown;

impl Drop for Teardown {
    fn drop(&mut self) {
        let out = xtask(&["destroy", "--env", "local", "--yes"]);
        if !out.status.success() {
            eprintln!("destroy failed:\n{}", text(&out));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stack_deploys_verifies_catches_a_mismatch_and_destroys() {
    let out = xtask(&["deploy", "--env", "local", "--yes"]);
    let teardown = Teardown;
    assert!(out.status.success(), "deploy failed:\n{}", text(&out));

    let drift = Command::new("terraform")
        .current_dir(root().join("target/tollgate/tf/local"))
        .args(["plan", "-input=false", "-detailed-exitcode", "-no-color"])
        .env("TF_IN_AUTOMATION", "1")
        .output()
        .expect("terraform runs");
    assert_eq!(
        drift.status.code(),
        Some(0),
        "a plan right after apply must be empty:\n{}",
        text(&drift)
    );

    let out = xtask(&["verify", "--env", "local"]);
    assert!(
        out.status.success(),
        "verify failed on a fresh deploy:\n{}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "✓  WAF IP set holds the NAT EIP",
        "✓  WAF blocks the guarded path from other sources",
        "✓  no WAF rate rule counts the guarded path",
    ] {
        assert!(stdout.contains(line), "missing `{line}`:\n{stdout}");
    }
    assert!(!stdout.contains('✗'), "{stdout}");

    // Tamper with one side: the Lambda signs with another header than the task expects.
    let config = testkit::sdk_config(&testkit::local_aws()).await;
    let lambda = aws_sdk_lambda::Client::new(&config);
    let name = "tollgate-local-post-confirm";
    let current = lambda
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
        .expect("read Lambda");
    let mut vars = current
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .expect("Lambda env");
    vars.insert(
        "TOLLGATE__GUARD__SIGNATURE_HEADER".into(),
        "x-other-signature".into(),
    );
    lambda
        .update_function_configuration()
        .function_name(name)
        .environment(
            aws_sdk_lambda::types::Environment::builder()
                .set_variables(Some(vars))
                .build(),
        )
        .send()
        .await
        .expect("update Lambda env");

    let out = xtask(&["verify", "--env", "local"]);
    assert!(
        !out.status.success(),
        "verify passed a mismatched deployment:\n{}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("✗  Lambda and task contracts are equal")
            && stdout.contains("guard.signature_header"),
        "verify must name the mismatch:\n{stdout}"
    );

    drop(teardown);
    let gone = lambda
        .get_function_configuration()
        .function_name(name)
        .send()
        .await;
    assert!(gone.is_err(), "destroy left the Lambda behind");
}
