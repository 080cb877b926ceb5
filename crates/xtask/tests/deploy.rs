//! The shipped staging contract, deployed on moto_server exactly as checked in, with only what
//! moto and the user must supply overridden: the AWS endpoint, the registry (a real one on
//! loopback; moto serves none), and the user's values (a state bucket in moto's S3, the api's
//! name and its Route 53 zone). Deploy, no drift, verify, a redeploy of the same code plans
//! nothing, new code rolls a new digest (static mode and a NAT gateway per AZ on the way, beyond
//! what ships), a tampered deployable caught by verify, production planned as shipped, destroy
//! (deletion protection lifted first, as a user's destroy does). Takes several minutes
//! (release builds of the Lambda and the static api, and ~70 resources). It has a moto_server
//! of its own, so `cargo xtask test` can run it beside the other tests without either seeing
//! the other's resources (IAM is account-wide in moto as in AWS).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use testkit::cmd::transcript;
use testkit::services::{LocalRegistry, Moto};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// This test's own moto_server, for the whole test.
static MOTO: OnceLock<String> = OnceLock::new();

fn moto() -> String {
    MOTO.get().expect("moto is started first").clone()
}

/// Production's account: another moto, as AWS would be another account.
const PRODUCTION_ACCOUNT: &str = "210987654321";

/// The registry the stack's image is pushed to (moto serves none), for the whole test.
static REGISTRY: OnceLock<String> = OnceLock::new();

/// What the user supplies for staging, made in moto (`testkit::rendered::account`).
static STAGING: OnceLock<Vec<(String, String)>> = OnceLock::new();

fn xtask(args: &[&str]) -> Output {
    xtask_with(args, &[])
}

/// `cargo xtask` on the staging contract with the user's values, plus `vars` (another guard
/// mode, say).
fn xtask_with(args: &[&str], vars: &[(&str, &str)]) -> Output {
    xtask_as(STAGING.get().expect("user values first"), args, vars)
}

/// `cargo xtask` with moto, the loopback registry, the user's `values` and `vars`.
fn xtask_as(values: &[(String, String)], args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask-cloud"));
    command.current_dir(root()).args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("TOLLGATE__") {
            command.env_remove(key);
        }
    }
    command
        .env("TOLLGATE__AWS__ENDPOINT_URL", moto())
        .env(
            "TOLLGATE__DEPLOY__REGISTRY",
            REGISTRY.get().expect("the registry is started first"),
        )
        .envs(values.iter().map(|(k, v)| (k, v)))
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
    std::fs::read_to_string(root().join("target/dist/staging/api-image.digest"))
        .expect("deploy writes target/dist/staging/api-image.digest")
        .trim()
        .to_owned()
}

async fn task_image(ecs: &aws_sdk_ecs::Client) -> String {
    let task = ecs
        .describe_task_definition()
        .task_definition("tollgate-staging-api")
        .send()
        .await
        .expect("read the task definition");
    task.task_definition()
        .and_then(|t| t.container_definitions().first())
        .and_then(|c| c.image())
        .expect("the task names an image")
        .to_owned()
}

/// Says how far the test has come, in seconds since it began: it takes many minutes, and its
/// log (`cargo xtask test` runs it with `--nocapture`) is the only view of where they go.
fn progress(what: &str) {
    static STARTED: OnceLock<std::time::Instant> = OnceLock::new();
    let started = STARTED.get_or_init(std::time::Instant::now);
    eprintln!(
        "· deploy test [{:>4.0} s] {what}",
        started.elapsed().as_secs_f64()
    );
}

/// Destroys the stack even when an assertion fails half-way.
struct Teardown;

impl Drop for Teardown {
    fn drop(&mut self) {
        let out = xtask(&["destroy", "--env", "staging", "--yes"]);
        if !out.status.success() {
            eprintln!("destroy failed:\n{}", transcript(&out));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_staging_stack_deploys_verifies_catches_a_mismatch_and_destroys() {
    progress("starting moto_server, the registry and the account's bootstrap");
    let storage =
        std::env::temp_dir().join(format!("tollgate-deploy-registry-{}", std::process::id()));
    // Declared first, so it is stopped last: the teardown's destroy still needs it.
    let moto_server = Moto::start(&storage.join("moto")).expect("moto starts");
    MOTO.set(moto_server.endpoint()).expect("set once");
    let registry = LocalRegistry::start(&storage, None).expect("registry starts");
    REGISTRY.set(registry.host()).expect("set once");
    let config = testkit::sdk_config(&shared_auth::AwsSettings {
        endpoint_url: Some(moto()),
        ..testkit::local_aws_region()
    })
    .await;
    STAGING
        .set(
            testkit::rendered::account::user_values(&moto(), "staging")
                .await
                .expect("the user's values"),
        )
        .expect("set once");
    // What an administrator applies once in staging's account before any deploy: the deploy
    // role, the boundary and the roles the stack's services assume (the stack reads them).
    let bootstrap = testkit::iam::apply_bootstrap(
        root(),
        &storage.join("bootstrap"),
        &moto(),
        &testkit::iam::Account::from_values("staging", STAGING.get().expect("set above")),
    );
    progress(
        "bootstrap applied; deploying staging's migrations (builds the arm64 artifacts first)",
    );
    let out = xtask(&["deploy", "--env", "staging", "--yes", "--migration-only"]);
    let teardown = Teardown;
    assert!(
        out.status.success(),
        "deploy --migration-only failed:\n{}",
        transcript(&out)
    );
    assert!(
        transcript(&out).contains("· migrations: task definition"),
        "deploy applies the migration task before the service rolls:\n{}",
        transcript(&out)
    );
    // What the targeted apply alone made must run the migration: AWS runs it there, before
    // the rest of the stack exists.
    let work = storage.join("runner");
    let partial = rendered_state(&work, &bootstrap.state);
    let report = testkit::rendered::migration_on_partial_state(&partial)
        .await
        .expect("the runner builds its world");
    println!("{}", report.text());
    assert!(report.failures().is_empty(), "{}", report.text());
    progress("the migration ran on the targeted apply's state; deploying the whole stack");
    let out = xtask(&["deploy", "--env", "staging", "--yes"]);
    assert!(out.status.success(), "deploy failed:\n{}", transcript(&out));
    progress("staging deployed");
    assert_only_the_migration_task_holds_the_owner_secret(&ecs_client(&config)).await;
    assert_the_stack_roles_hold_no_more_than_their_jobs(&bootstrap.state);
    crate::isolation::assert_cloudsplaining_finds_no_escalation(
        &moto(),
        &storage.join("cloudsplaining"),
    );
    let ecs = aws_sdk_ecs::Client::new(&config);
    let first = built_digest();
    let repository = format!("{}/tollgate-staging-api", registry.host());
    assert_eq!(task_image(&ecs).await, format!("{repository}@{first}"));

    let drift = Command::new("terraform")
        .current_dir(root().join("target/tollgate/tf/staging"))
        .args(["plan", "-input=false", "-detailed-exitcode", "-no-color"])
        .env("TF_IN_AUTOMATION", "1")
        .output()
        .expect("terraform runs");
    assert_eq!(
        drift.status.code(),
        Some(0),
        "a plan right after apply must be empty:\n{}",
        transcript(&drift)
    );

    progress("the plan after apply is empty; moving the state back to before the module");
    assert_an_environment_from_before_the_module_moves_into_it();

    progress("moved into the module with nothing to change; verifying");
    // hmac mode (staging's): the edge checks the signature headers' shape, and the rotation
    // schedule (every 30 days in staging) is attached to the function.
    let out = xtask(&["verify", "--env", "staging"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "verify failed:\n{}", transcript(&out));
    for line in [
        "✓  WAF checks the credential's shape (hmac mode)",
        "✓  secret rotation: function, schedule, versions accepted",
        "every 30 days by tollgate-staging-rotate-secret",
        "points at the ALB",
        "✓  retry queue drained by the sign-up function",
    ] {
        assert!(stdout.contains(line), "missing `{line}`:\n{stdout}");
    }
    assert!(!stdout.contains('✗'), "{stdout}");
    assert_api_name_is_aliased_to_the_alb().await;

    // What AWS would start from the stack, started: every task definition and function
    // configuration, from the artifacts deploy built, in the network the state describes.
    progress("verified; starting what the stack renders");
    let report = testkit::rendered::whole_stack(&rendered_state(&work, &bootstrap.state))
        .await
        .expect("the runner builds its world");
    println!("{}", report.text());
    assert!(report.failures().is_empty(), "{}", report.text());

    // The same code again: the same digest, and nothing to change.
    progress("verified; planning the same code again");
    let out = xtask(&["deploy", "--env", "staging", "--plan"]);
    assert!(
        out.status.success(),
        "deploy --plan failed:\n{}",
        transcript(&out)
    );
    assert_eq!(
        built_digest(),
        first,
        "an unchanged api built another image"
    );
    assert!(
        transcript(&out).contains("No changes."),
        "a redeploy of unchanged code must plan nothing:\n{}",
        transcript(&out)
    );

    // New code (another binary) rolls a new task definition naming the new digest; the
    // contract switches to static mode on the way, so the WAF's rule group (kept by xtask,
    // referenced by Terraform) is deployed and read back too, and the network to a NAT
    // gateway per AZ (the first keeps its address).
    progress("nothing to change; redeploying new code in static mode");
    let changed = changed_binary(&storage);
    let out = xtask_with(
        &[
            "deploy",
            "--env",
            "staging",
            "--yes",
            "--api-binary",
            &changed.display().to_string(),
        ],
        STATIC,
    );
    assert!(
        out.status.success(),
        "redeploy failed:\n{}",
        transcript(&out)
    );
    let second = built_digest();
    assert_ne!(second, first, "a changed binary kept the digest");
    assert_eq!(task_image(&ecs).await, format!("{repository}@{second}"));

    progress("redeployed; verifying");
    let out = xtask_with(&["verify", "--env", "staging"], STATIC);
    assert!(
        out.status.success(),
        "verify failed on a fresh deploy:\n{}",
        transcript(&out)
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
    assert_static_mode_waf_holds_the_secret(&config).await;
    // A NAT gateway per AZ: each private subnet leaves from its own Elastic IP, with packets.
    let rows = testkit::rendered::flows::each_subnet_leaves_from_its_nat(&rendered_state(
        &work,
        &bootstrap.state,
    ))
    .expect("the twin builds");
    let shown: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {}", if r.ok { "✓" } else { "✗" }, r.detail))
        .collect();
    println!("{}", shown.join("\n"));
    assert!(
        rows.len() == 2 && rows.iter().all(|r| r.ok),
        "{}",
        shown.join("\n")
    );

    progress("verified; tampering with the Lambda's contract");
    // Tamper with one side: the Lambda signs with another header than the task expects.
    let lambda = aws_sdk_lambda::Client::new(&config);
    let name = "tollgate-staging-post-confirm";
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

    let out = xtask_with(&["verify", "--env", "staging"], STATIC);
    assert!(
        !out.status.success(),
        "verify passed a mismatched deployment:\n{}",
        transcript(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("✗  Lambda and task contracts are equal")
            && stdout.contains("guard.signature_header"),
        "verify must name the mismatch:\n{stdout}"
    );

    // Production, as shipped, plans in an account of its own (one environment per account:
    // infra/bootstrap refuses a second), with its own bootstrap and user values.
    progress("the mismatch is named; planning production in its own account");
    let production_moto =
        Moto::start_in_account(&storage.join("moto-production"), PRODUCTION_ACCOUNT)
            .expect("production's moto starts");
    let production =
        testkit::rendered::account::user_values(&production_moto.endpoint(), "production")
            .await
            .expect("the user's values");
    let production_bootstrap = testkit::iam::apply_bootstrap(
        root(),
        &storage.join("bootstrap-production"),
        &production_moto.endpoint(),
        &testkit::iam::Account::from_values("production", &production),
    );
    let out = xtask_as(
        &production,
        &["deploy", "--env", "production", "--plan"],
        &[("TOLLGATE__AWS__ENDPOINT_URL", &production_moto.endpoint())],
    );
    assert!(
        out.status.success(),
        "production's plan failed:\n{}",
        transcript(&out)
    );
    // Terraform colours `Plan:`; the counts follow it plain.
    assert!(
        transcript(&out).contains(" to add, 0 to change, 0 to destroy."),
        "production's plan creates a whole stack:\n{}",
        transcript(&out)
    );

    progress("production plans a whole stack; no request of staging's reaches it");
    let staging_state = terraform_show(&root().join("target/tollgate/tf/staging"), None);
    let production_plan = terraform_show(
        &root().join("target/tollgate/tf/production"),
        Some("tollgate.tfplan"),
    );
    let isolation = crate::isolation::Isolation {
        staging: crate::isolation::Side {
            env: "staging",
            bootstrap: &bootstrap.state,
            stack: &staging_state,
            values: STAGING.get().expect("set"),
        },
        production: crate::isolation::Side {
            env: "production",
            bootstrap: &production_bootstrap.state,
            stack: &production_plan,
            values: &production,
        },
    };
    isolation.assert_no_request_crosses();
    drop(production_bootstrap);
    drop(production_moto);
    progress("destroying staging");
    drop(teardown);
    progress("destroyed");
    drop(bootstrap);
    let gone = lambda
        .get_function_configuration()
        .function_name(name)
        .send()
        .await;
    assert!(gone.is_err(), "destroy left the Lambda behind");
    let group = shared_aws::waf::GuardRuleGroup {
        client: aws_sdk_wafv2::Client::new(&config),
    };
    assert_eq!(
        group
            .find(&shared_aws::waf::rule_group_name("staging"))
            .await
            .expect("list rule groups"),
        None,
        "destroy left the WAF rule group behind"
    );
    drop(registry);
    std::fs::remove_dir_all(&storage).ok();
}

/// static mode: the web ACL's rule group, as WAF would evaluate it (`testkit::twin::waf`, the
/// ACL and the group read back from moto), lets through the NAT gateway's address only with an
/// accepted version of the secret in the header, and refuses a wrong one, a missing one, and
/// the right one from elsewhere.
/// An environment deployed before `infra/modules/guarded-route` holds its resources at the
/// old addresses. Every `moved` block of the stack, enumerated from the configuration: its
/// resource is put back at its `from` address, then the first thing a deploy applies (the
/// migration task, a targeted apply) must carry it to the module, and the plan after must be
/// empty (nothing replaced: the guard secret, above all, is never deleted and made anew).
fn assert_an_environment_from_before_the_module_moves_into_it() {
    let dir = root().join("target/tollgate/tf/staging");
    let terraform = |args: &[&str]| {
        Command::new("terraform")
            .current_dir(&dir)
            .args(args)
            .env("TF_IN_AUTOMATION", "1")
            .output()
            .expect("terraform runs")
    };
    let held = String::from_utf8_lossy(&terraform(&["state", "list"]).stdout).into_owned();
    let config = std::fs::read_to_string(root().join("infra/registration.tf")).expect("read");
    let mut moved = 0;
    for block in config.split("moved {").skip(1) {
        let field = |key: &str| {
            block
                .lines()
                .find_map(|l| l.trim().strip_prefix(key)?.trim().strip_prefix('='))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("a moved block without `{key}`: {block}"))
        };
        let (from, to) = (field("from"), field("to"));
        if !held
            .lines()
            .any(|a| a == to || a.starts_with(&format!("{to}[")))
        {
            continue; // static mode's resources, absent in hmac
        }
        let out = terraform(&["state", "mv", &to, &from]);
        assert!(
            out.status.success(),
            "state mv {to} {from}:\n{}",
            transcript(&out)
        );
        moved += 1;
    }
    assert!(
        moved >= 4,
        "only {moved} moved block(s) had a resource to move back"
    );
    let out = xtask(&["deploy", "--env", "staging", "--yes", "--migration-only"]);
    assert!(
        out.status.success(),
        "a targeted apply on an environment from before the module failed:\n{}",
        transcript(&out)
    );
    let plan = terraform(&["plan", "-input=false", "-detailed-exitcode", "-no-color"]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "after the move, the plan must be empty:\n{}",
        transcript(&plan)
    );
}

async fn assert_static_mode_waf_holds_the_secret(config: &aws_config::SdkConfig) {
    use testkit::twin::waf::{Request, Verdict};
    let acl = testkit::twin::waf::read(&moto(), "ap-northeast-1", "tollgate-staging")
        .await
        .expect("the web ACL reads back");
    let nat = Command::new("terraform")
        .current_dir(root().join("target/tollgate/tf/staging"))
        .args(["output", "-raw", "nat_eip"])
        .output()
        .expect("terraform runs");
    let nat = String::from_utf8_lossy(&nat.stdout).trim().to_owned();
    let secret = aws_sdk_secretsmanager::Client::new(config)
        .get_secret_value()
        .secret_id("tollgate/staging/registration")
        .version_stage("AWSCURRENT")
        .send()
        .await
        .expect("the secret")
        .secret_string
        .expect("text");
    let request = |client: &str, header: Option<&str>| Request {
        method: "POST".into(),
        uri: "/user".into(),
        headers: header
            .map(|v| vec![("x-custom-auth".to_owned(), v.to_owned())])
            .unwrap_or_default(),
        client: client.parse().expect("an address"),
    };
    let table = [
        (
            request(&nat, Some(&secret)),
            true,
            "the NAT's address with the secret",
        ),
        (
            request(&nat, Some("not-the-secret")),
            false,
            "the NAT's address with another value",
        ),
        (
            request(&nat, None),
            false,
            "the NAT's address without the header",
        ),
        (
            request("198.51.100.66", Some(&secret)),
            false,
            "elsewhere with the secret",
        ),
    ];
    for (req, passes, what) in table {
        let verdict = acl.evaluate(&req);
        assert_eq!(
            verdict == Verdict::Allow,
            passes,
            "static mode, {what}: WAF decides {verdict:?}"
        );
    }
}

/// `terraform show -json` in `dir`, of the saved plan `plan` or of the state.
fn terraform_show(dir: &Path, plan: Option<&str>) -> serde_json::Value {
    let shown = Command::new("terraform")
        .current_dir(dir)
        .args(["show", "-json", "-no-color"])
        .args(plan)
        .output()
        .expect("terraform runs");
    assert!(
        shown.status.success(),
        "terraform show:\n{}",
        transcript(&shown)
    );
    serde_json::from_slice(&shown.stdout).expect("terraform show -json")
}

/// The staging state as applied now, for the runner.
fn rendered_state(
    work: &Path,
    bootstrap: &serde_json::Value,
) -> testkit::rendered::world::Deployed {
    testkit::rendered::world::Deployed::read(root(), "staging", &moto(), bootstrap, work)
        .expect("the state reads back")
}

/// The api's name is an alias record in the user's zone, pointing at the ALB.
async fn assert_api_name_is_aliased_to_the_alb() {
    let values = STAGING.get().expect("user values");
    let value = |key: &str| {
        values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .expect("set")
    };
    let records = reqwest::Client::new()
        .get(format!(
            "{}/2013-04-01/hostedzone/{}/rrset",
            moto(),
            value("TOLLGATE__DEPLOY__HOSTED_ZONE_ID")
        ))
        .header(
            "authorization",
            testkit::rendered::account::scope("route53"),
        )
        .send()
        .await
        .expect("moto answers")
        .text()
        .await
        .expect("records");
    let domain = format!("{}.", value("TOLLGATE__DEPLOY__DOMAIN"));
    let record = records
        .split("<ResourceRecordSet>")
        .find(|r| r.contains(&format!("<Name>{domain}</Name>")) && r.contains("<Type>A</Type>"))
        .unwrap_or_else(|| panic!("no A record for {domain} in {records}"));
    let alb = Command::new("terraform")
        .current_dir(root().join("target/tollgate/tf/staging"))
        .args(["output", "-raw", "alb_dns_name"])
        .output()
        .expect("terraform runs");
    let alb = String::from_utf8_lossy(&alb.stdout).to_ascii_lowercase();
    assert!(
        record.contains("<AliasTarget>")
            && testkit::rendered::account::xml_value(record, "DNSName")
                .expect("an alias name")
                .trim_end_matches('.')
                .eq_ignore_ascii_case(alb.trim()),
        "{domain} is not an alias of the ALB {alb}: {record}"
    );
}

/// The static api the first deploy built, with one byte appended: still a valid executable,
/// another image. Stands in for a code change without a second release build.
fn changed_binary(dir: &Path) -> PathBuf {
    // The deployables' own target directory (xtask's `artifacts::cross_target_dir`).
    let built = root().join("target/cross/aarch64-unknown-linux-musl/release/api");
    let mut bytes = std::fs::read(&built).expect("deploy built the static api");
    bytes.push(0);
    let changed = dir.join("api-changed");
    std::fs::write(&changed, bytes).expect("write the changed binary");
    changed
}

/// The staging stack's roles as applied, judged by IAM's rules (`testkit::iam`) under the
/// boundary bootstrap made: each carries the boundary; every permission its policies grant
/// survives the boundary (else it would fail only in AWS); and the table of what each must not
/// reach, above all the database owner's secret outside the migration task.
fn assert_the_stack_roles_hold_no_more_than_their_jobs(bootstrap: &serde_json::Value) {
    use testkit::iam::{Decision, Identity, Request, document, resources};
    let shown = Command::new("terraform")
        .current_dir(root().join("target/tollgate/tf/staging"))
        .args(["show", "-json", "-no-color"])
        .output()
        .expect("terraform runs");
    let stack = resources(&serde_json::from_slice(&shown.stdout).expect("terraform show -json"));
    let boot = resources(bootstrap);
    let boundary_arn = boot["aws_iam_policy.boundary"]["arn"]
        .as_str()
        .expect("arn")
        .to_owned();
    let boundary = document(
        boot["aws_iam_policy.boundary"]["policy"]
            .as_str()
            .expect("policy"),
    );
    // The roles are the bootstrap's (trust and boundary); their inline policies the stack's.
    let identity = |role: &str| {
        let name = format!("tollgate-staging-{role}");
        let made = &boot[&format!("aws_iam_role.stack[\"{role}\"]")];
        assert_eq!(made["name"], name.as_str());
        assert_eq!(
            made["permissions_boundary"],
            boundary_arn.as_str(),
            "{name} carries the boundary"
        );
        let policies = stack
            .iter()
            .filter(|(a, r)| {
                opskit::state::is(a, "aws_iam_role_policy") && r["role"] == name.as_str()
            })
            .map(|(_, r)| document(r["policy"].as_str().expect("policy")))
            .collect();
        Identity {
            arn: made["arn"].as_str().map(str::to_owned),
            name,
            policies,
            boundary: Some(boundary.clone()),
        }
    };
    assert!(
        !stack.keys().any(|a| a.starts_with("aws_iam_role.")),
        "the stack makes no role: every role is the bootstrap's"
    );
    let every_role: Vec<&str> = boot
        .iter()
        .filter(|(a, _)| a.starts_with("aws_iam_role.stack["))
        .filter_map(|(_, r)| r["name"].as_str())
        .collect();
    let mut wrong = Vec::new();
    for name in &every_role {
        let who = identity(name.trim_start_matches("tollgate-staging-"));
        for policy in &who.policies {
            for statement in policy["Statement"].as_array().into_iter().flatten() {
                if statement["Effect"] != "Allow" {
                    continue;
                }
                for action in testkit::iam::strings(Some(&statement["Action"]))
                    .into_iter()
                    .filter(|a| !a.contains('*'))
                {
                    for resource in testkit::iam::strings(Some(&statement["Resource"])) {
                        let request = satisfying(
                            statement,
                            Request::new(action, resource)
                                .with("aws:ResourceTag/tollgate:env", "staging"),
                        );
                        if who.decide(&request) != Decision::Allow {
                            wrong.push(format!("{name}: {action} on {resource} is granted but the boundary refuses it"));
                        }
                    }
                }
            }
        }
    }
    let arn = |address: &str, key: &str| {
        stack[address][key]
            .as_str()
            .unwrap_or_else(|| panic!("{address}.{key}"))
            .to_owned()
    };
    let master = stack["aws_db_instance.this"]["master_user_secret"][0]["secret_arn"]
        .as_str()
        .expect("the master secret")
        .to_owned();
    let (guard, login) = (
        arn("module.registration.aws_secretsmanager_secret.key", "arn"),
        arn("aws_secretsmanager_secret.db_app", "arn"),
    );
    let read = |secret: &str| {
        Request::new("secretsmanager:GetSecretValue", secret)
            .with("aws:ResourceTag/tollgate:env", "staging")
    };
    use Decision::{Allow, ExplicitDeny, ImplicitDeny};
    let table = [
        ("api-task", read(&guard), Allow),
        ("api-task", read(&login), Allow),
        ("api-task", read(&master), ImplicitDeny),
        ("api-task", Request::new("iam:PassRole", "*"), ExplicitDeny),
        ("migrate", read(&master), Allow),
        ("migrate", read(&login), Allow),
        ("migrate", read(&guard), ImplicitDeny),
        ("post-confirm", read(&guard), Allow),
        ("post-confirm", read(&master), ImplicitDeny),
        ("post-confirm", read(&login), ImplicitDeny),
        (
            "rotate-secret",
            Request::new("secretsmanager:PutSecretValue", &guard),
            Allow,
        ),
        ("rotate-secret", read(&master), ImplicitDeny),
        (
            "rotate-secret",
            Request::new(
                "iam:AttachRolePolicy",
                &format!(
                    "arn:aws:iam::123456789012:role/{}",
                    "tollgate-staging-rotate-secret"
                ),
            ),
            ExplicitDeny,
        ),
    ];
    let mut report = String::new();
    for (role, request, expected) in table {
        let got = identity(role).decide(&request);
        let mark = if got == expected { "✓" } else { "✗" };
        report.push_str(&format!(
            "{mark} {role:<14} {:<13} {} on {}\n",
            format!("{got:?}"),
            request.action,
            request.resource
        ));
        if got != expected {
            wrong.push(format!(
                "{role}: {} on {}: expected {expected:?}, got {got:?}",
                request.action, request.resource
            ));
        }
    }
    println!("the staging stack's roles:\n{report}");
    assert!(wrong.is_empty(), "{}\n\n{report}", wrong.join("\n"));
}

fn ecs_client(config: &aws_config::SdkConfig) -> aws_sdk_ecs::Client {
    aws_sdk_ecs::Client::new(config)
}

/// The migration task runs the api's image as `api --migrate` with the owner's secret; the
/// serving task has no such variable and never migrates at start.
async fn assert_only_the_migration_task_holds_the_owner_secret(ecs: &aws_sdk_ecs::Client) {
    let env_of = |family: &'static str| async move {
        let found = ecs
            .describe_task_definition()
            .task_definition(family)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{family}: {e:?}"));
        let container = found
            .task_definition()
            .expect("a task definition")
            .container_definitions()[0]
            .clone();
        let env: std::collections::HashMap<String, String> = container
            .environment()
            .iter()
            .filter_map(|kv| Some((kv.name()?.to_owned(), kv.value()?.to_owned())))
            .collect();
        (container.command().to_vec(), env)
    };
    let (command, migrate) = env_of("tollgate-staging-migrate").await;
    assert_eq!(command, ["--migrate"]);
    assert!(
        migrate.contains_key("TOLLGATE__API__DB_OWNER_SECRET_ID"),
        "{migrate:?}"
    );
    let (_, serving) = env_of("tollgate-staging-api").await;
    assert!(
        !serving.contains_key("TOLLGATE__API__DB_OWNER_SECRET_ID"),
        "{serving:?}"
    );
    assert_eq!(
        serving
            .get("TOLLGATE__API__MIGRATE_ON_START")
            .map(String::as_str),
        Some("false")
    );
}

/// `request` with the context keys `statement`'s own positive conditions ask for (their first
/// value): what AWS sees when the role uses the permission as written.
fn satisfying(
    statement: &serde_json::Value,
    mut request: testkit::iam::Request,
) -> testkit::iam::Request {
    for (operator, keys) in statement["Condition"].as_object().into_iter().flatten() {
        if operator.contains("Not") || operator == "Null" {
            continue;
        }
        for (key, values) in keys.as_object().into_iter().flatten() {
            if let Some(first) = testkit::iam::strings(Some(values)).first() {
                request = request.with(key, first);
            }
        }
    }
    request
}
