//! The whole stack on moto_server with the api image in a real registry on loopback: deploy,
//! no drift, a redeploy of the same code plans nothing, new code rolls a new digest, verify, a
//! tampered deployable caught by verify, destroy. Takes a few minutes (release builds of the
//! Lambda and the static api, and ~60 resources).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use testkit::services::Registry;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The registry `--env local` pushes to, for the whole test.
static REGISTRY: OnceLock<String> = OnceLock::new();

fn xtask(args: &[&str]) -> Output {
    xtask_with(args, &[])
}

/// `cargo xtask` with extra `TOLLGATE__…` overrides (another guard mode, say).
fn xtask_with(args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["run", "--quiet", "--package", "xtask", "--"])
        .args(args)
        .env("TOLLGATE__AWS__ENDPOINT_URL", testkit::aws_endpoint())
        .env(
            "TOLLGATE__DEPLOY__REGISTRY",
            REGISTRY.get().expect("the registry is started first"),
        )
        .envs(vars.iter().copied())
        .output()
        .expect("cargo runs")
}

/// The second half of the test: the other guard mode, and a NAT gateway per AZ (two Elastic
/// IPs, both of which the contract and the WAF must allow).
const STATIC: &[(&str, &str)] = &[
    ("TOLLGATE__GUARD__MODE", "static"),
    ("TOLLGATE__DEPLOY__NAT_GATEWAYS", "per-az"),
];

/// The digest `deploy` built and pushed last.
fn built_digest() -> String {
    std::fs::read_to_string(root().join("target/dist/local/api-image.digest"))
        .expect("deploy writes target/dist/local/api-image.digest")
        .trim()
        .to_owned()
}

async fn task_image(ecs: &aws_sdk_ecs::Client) -> String {
    let task = ecs
        .describe_task_definition()
        .task_definition("tollgate-local-api")
        .send()
        .await
        .expect("read the task definition");
    task.task_definition()
        .and_then(|t| t.container_definitions().first())
        .and_then(|c| c.image())
        .expect("the task names an image")
        .to_owned()
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
    let storage =
        std::env::temp_dir().join(format!("tollgate-deploy-registry-{}", std::process::id()));
    let registry = Registry::start(&storage, None).expect("registry starts");
    REGISTRY.set(registry.host()).expect("set once");
    let out = xtask(&["deploy", "--env", "local", "--yes"]);
    let teardown = Teardown;
    assert!(out.status.success(), "deploy failed:\n{}", text(&out));

    let config = testkit::sdk_config(&testkit::local_aws()).await;
    let ecs = aws_sdk_ecs::Client::new(&config);
    let first = built_digest();
    let repository = format!("{}/tollgate-local-api", registry.host());
    assert_eq!(task_image(&ecs).await, format!("{repository}@{first}"));

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

    // hmac mode (local's default): the edge checks the signature headers' shape.
    let out = xtask(&["verify", "--env", "local"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "verify failed:\n{}", text(&out));
    for line in [
        "✓  WAF checks the credential's shape (hmac mode)",
        "✓  secret rotation: function, schedule, versions accepted",
    ] {
        assert!(stdout.contains(line), "missing `{line}`:\n{stdout}");
    }

    // The same code again: the same digest, and nothing to change.
    let out = xtask(&["deploy", "--env", "local", "--plan"]);
    assert!(
        out.status.success(),
        "deploy --plan failed:\n{}",
        text(&out)
    );
    assert_eq!(
        built_digest(),
        first,
        "an unchanged api built another image"
    );
    assert!(
        text(&out).contains("No changes."),
        "a redeploy of unchanged code must plan nothing:\n{}",
        text(&out)
    );

    // New code (another binary) rolls a new task definition naming the new digest; the
    // contract switches to static mode on the way, so the WAF's rule group (kept by xtask,
    // referenced by Terraform) is deployed and read back too, and the network to a NAT
    // gateway per AZ (the first keeps its address).
    let changed = changed_binary(&storage);
    let out = xtask_with(
        &[
            "deploy",
            "--env",
            "local",
            "--yes",
            "--api-binary",
            &changed.display().to_string(),
        ],
        STATIC,
    );
    assert!(out.status.success(), "redeploy failed:\n{}", text(&out));
    let second = built_digest();
    assert_ne!(second, first, "a changed binary kept the digest");
    assert_eq!(task_image(&ecs).await, format!("{repository}@{second}"));

    let out = xtask_with(&["verify", "--env", "local"], STATIC);
    assert!(
        out.status.success(),
        "verify failed on a fresh deploy:\n{}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let placement = stdout
        .lines()
        .find(|l| l.contains("Lambda in the NAT-routed private subnets"))
        .unwrap_or_default();
    assert_eq!(
        placement.matches(" → ").count(),
        3,
        "per-az: two subnets, each through its own gateway and address:\n{stdout}"
    );
    for line in [
        "✓  WAF IP set holds every NAT EIP",
        "✓  contract allows every NAT EIP",
        "✓  WAF blocks the guarded path from other sources",
        "✓  no WAF rate rule counts the guarded path",
        "✓  task image is the pushed digest, right platform",
        "✓  WAF keeps no sampled requests",
        "✓  WAF managed rules spare the guarded path",
        "✓  WAF logs redact every credential header",
        "✓  WAF checks the credential's shape (static mode)",
        "✓  secret rotation: function, schedule, versions accepted",
    ] {
        assert!(stdout.contains(line), "missing `{line}`:\n{stdout}");
    }
    assert!(!stdout.contains('✗'), "{stdout}");

    // Tamper with one side: the Lambda signs with another header than the task expects.
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

    let out = xtask_with(&["verify", "--env", "local"], STATIC);
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
    let group = post_confirm::waf::GuardRuleGroup {
        client: aws_sdk_wafv2::Client::new(&config),
    };
    assert_eq!(
        group
            .find(&post_confirm::waf::rule_group_name("local"))
            .await
            .expect("list rule groups"),
        None,
        "destroy left the WAF rule group behind"
    );
    drop(registry);
    std::fs::remove_dir_all(&storage).ok();
}

/// The static api the first deploy built, with one byte appended: still a valid executable,
/// another image. Stands in for a code change without a second release build.
fn changed_binary(dir: &Path) -> PathBuf {
    let built = root().join("target/aarch64-unknown-linux-musl/release/api");
    let mut bytes = std::fs::read(&built).expect("deploy built the static api");
    bytes.push(0);
    let changed = dir.join("api-changed");
    std::fs::write(&changed, bytes).expect("write the changed binary");
    changed
}
