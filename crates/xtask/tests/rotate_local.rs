//! `cargo xtask rotate-secret --env local`, as a user runs it against a local AWS: the rotation
//! function's built binary, invoked under a local Runtime API once per step with the event
//! Secrets Manager sends, rotates the secret the running api accepts. xtask links neither.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use testkit::process::Process;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The holder of `stage` among the secret's versions.
async fn holder(sm: &aws_sdk_secretsmanager::Client, id: &str, stage: &str) -> Option<String> {
    shared_aws::versions::Stages::describe(sm, id)
        .await
        .expect("describe")
        .holder(stage)
        .map(str::to_owned)
}

/// A dry run of the guarded route signed with `secret`: the status and the version it matched.
async fn dry_run(api_url: &str, secret_id: &str, secret: &secrecy::SecretString) -> (u16, String) {
    let vars = std::collections::HashMap::from([
        ("TOLLGATE_ENV".to_owned(), "local".to_owned()),
        (
            "TOLLGATE__GUARD__SECRET_ID".to_owned(),
            secret_id.to_owned(),
        ),
    ]);
    let guard = shared_auth::load_for(shared_auth::Component::Api, &vars)
        .expect("local contract")
        .guard;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let body = b"{}";
    let mut request = reqwest::Client::new()
        .post(format!("{api_url}{}", guard.path))
        .header("content-type", "application/json")
        .header(shared_auth::DRY_RUN_HEADER, "1")
        .body(body.to_vec());
    for (name, value) in guard
        .credentials(
            std::slice::from_ref(secret),
            "dryrun_rotate_local",
            body,
            now,
        )
        .iter()
    {
        request = request.header(name, value);
    }
    let response = request.send().await.expect("dry run");
    let verified = response
        .headers()
        .get(shared_auth::VERIFIED_WITH_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (response.status().as_u16(), verified)
}

#[tokio::test(flavor = "multi_thread")]
async fn rotating_on_a_local_aws_runs_the_functions_binary_through_all_four_steps_and_revoking_ends_the_grace()
 {
    let aws = testkit::local_aws();
    let sm = shared_aws::secrets_manager(&aws).await;
    let secret_id = format!(
        "tollgate/test/rotate-local-{}",
        uuid::Uuid::new_v4().simple()
    );
    testkit::secrets::put_secret(
        &sm,
        &secret_id,
        &testkit::secrets::new_secret().expect("random"),
    )
    .await
    .expect("the secret");
    let before = holder(&sm, &secret_id, "AWSCURRENT")
        .await
        .expect("current");

    let api_binary = testkit::stack::built_binary("api").expect("the api builds");
    let port = testkit::services::free_port().expect("port");
    let api_url = format!("http://127.0.0.1:{port}");
    let shared = [
        ("TOLLGATE_ENV", "local".to_owned()),
        ("TOLLGATE__GUARD__SECRET_ID", secret_id.clone()),
        ("TOLLGATE__AWS__ENDPOINT_URL", testkit::aws_endpoint()),
        ("TOLLGATE__API__SECRET_REFRESH_S", "1".to_owned()),
    ];
    let mut api_env: Vec<(String, String)> = shared
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    api_env.extend([
        (
            "TOLLGATE__API__LISTEN".to_owned(),
            format!("127.0.0.1:{port}"),
        ),
        ("TOLLGATE__API__SECRET_SOURCE".to_owned(), "aws".to_owned()),
        (
            "DATABASE_URL".to_owned(),
            testkit::fresh_database("rotate_local").await,
        ),
    ]);
    let work = std::env::temp_dir().join(format!("tollgate-rotate-local-{port}"));
    std::fs::create_dir_all(&work).expect("work dir");
    let mut api =
        Process::start("api", &api_binary, &api_env, &work.join("api.log")).expect("api starts");
    api.wait_ready(&reqwest::Client::new(), &format!("{api_url}/readyz"))
        .await
        .expect("api ready");

    let started = Instant::now();
    let xtask = |extra: &'static [&'static str]| {
        let shared = shared.clone();
        let api_url = api_url.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = Command::new(env!("CARGO_BIN_EXE_xtask-cloud"));
            command
                .current_dir(root())
                .args(["rotate-secret", "--env", "local"])
                .args(extra)
                .envs(shared.iter().map(|(k, v)| (*k, v.as_str())))
                .env("TOLLGATE__LAMBDA__API_BASE_URL", &api_url);
            let out = command.output().expect("cargo runs");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.success(), text)
        })
    };
    let (ok, text) = xtask(&[]).await.expect("xtask");
    assert!(ok, "rotate-secret failed:\n{text}");
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        assert!(
            text.contains(&format!("✓ {step}")),
            "{step} not reported:\n{text}"
        );
    }
    let after = holder(&sm, &secret_id, "AWSCURRENT")
        .await
        .expect("current");
    assert_ne!(after, before, "a new version is AWSCURRENT");
    assert_eq!(
        holder(&sm, &secret_id, "AWSPREVIOUS").await.as_deref(),
        Some(before.as_str())
    );
    assert_eq!(holder(&sm, &secret_id, "AWSPENDING").await, None);
    eprintln!(
        "rotated on a local AWS in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The old value still passes, as `previous`, during its grace; revoked, it is refused.
    let value = |id: String| {
        let sm = sm.clone();
        let secret_id = secret_id.clone();
        async move {
            let v = sm
                .get_secret_value()
                .secret_id(&secret_id)
                .version_id(&id)
                .send()
                .await
                .expect("value")
                .secret_string
                .expect("string");
            secrecy::SecretString::from(v)
        }
    };
    let (old, new) = (value(before.clone()).await, value(after.clone()).await);
    // finishSecret does not wait for the api: it learns the promotion at its next refresh
    // (every second here), until which the old value is still its current one.
    let mut seen = dry_run(&api_url, &secret_id, &old).await;
    for _ in 0..50 {
        if seen.1 == "previous" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        seen = dry_run(&api_url, &secret_id, &old).await;
    }
    assert_eq!(seen, (204, "previous".into()));
    let (ok, text) = xtask(&["--revoke-previous"]).await.expect("xtask");
    assert!(ok, "rotate-secret --revoke-previous failed:\n{text}");
    assert!(text.contains("no longer accepts"), "{text}");
    assert_eq!(holder(&sm, &secret_id, "AWSPREVIOUS").await, None);
    assert_eq!(dry_run(&api_url, &secret_id, &old).await.0, 403, "revoked");
    assert_eq!(
        dry_run(&api_url, &secret_id, &new).await,
        (204, "current".into())
    );
    let (ok, text) = xtask(&["--revoke-previous"]).await.expect("xtask");
    assert!(
        ok && text.contains("nothing to revoke"),
        "a second revoke changes nothing:\n{text}"
    );
    api.stop();
    std::fs::remove_dir_all(&work).ok();
}
