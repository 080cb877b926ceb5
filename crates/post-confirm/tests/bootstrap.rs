//! The built binary, run as Lambda runs a custom runtime: a process pointed at a Runtime API
//! (here the local one in `support/runtime_api.rs`), settings from the environment as xtask
//! renders them, the secret from (moto's) Secrets Manager.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use shared_auth::SecretSet;
use testkit::receiver::Receiver;
use testkit::runtime_api::{Outcome, RuntimeApi};

const SECRET: &str = "bootstrap-test-secret-0123456789abcdefghijk";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_processes_invocations_end_to_end() {
    let aws = testkit::local_aws();
    let endpoint = testkit::aws_endpoint();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let secret_id = format!("tollgate/test/bootstrap-{nanos}");
    shared_aws::secrets_manager(&aws)
        .await
        .create_secret()
        .name(&secret_id)
        .secret_string(SECRET)
        .send()
        .await
        .expect("moto creates the secret");

    let contract = shared_auth::load_for(shared_auth::Component::Lambda, &Default::default())
        .expect("local settings")
        .guard;
    let receiver = Receiver::start(
        contract,
        SecretSet::new(SECRET.into(), None).expect("secret"),
    )
    .await;
    let runtime = RuntimeApi::start().expect("runtime API");

    let stdout_path = std::env::temp_dir().join(format!("tollgate-bootstrap-{nanos}.out"));
    let stdout = std::fs::File::create(&stdout_path).expect("stdout file");
    let stderr_path = std::env::temp_dir().join(format!("tollgate-bootstrap-{nanos}.err"));
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_post-confirm"))
        .env_clear()
        .envs(runtime.lambda_env("post-confirm"))
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TOLLGATE_ENV", "local")
        .env("TOLLGATE__LAMBDA__API_BASE_URL", receiver.base_url())
        .env("TOLLGATE__GUARD__SECRET_ID", &secret_id)
        .env("TOLLGATE__AWS__ENDPOINT_URL", &endpoint)
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .spawn()
        .expect("the binary starts");
    let child = Killed(child);

    let sign_up = fixture("sign-up");
    let outcome = tokio::task::spawn_blocking({
        let sign_up = sign_up.clone();
        move || {
            let first = runtime.invoke(&sign_up, Duration::from_secs(5));
            let elapsed = started.elapsed();
            let reset = runtime.invoke(&fixture("forgot-password"), Duration::from_secs(5));
            let broken = runtime.invoke(&fixture("missing-sub"), Duration::from_secs(5));
            let probe = runtime.invoke(post_confirm::probe::EVENT, Duration::from_secs(5));
            (first, elapsed, reset, broken, probe)
        }
    })
    .await
    .expect("invocations");
    let (first, elapsed, reset, broken, probe) = outcome;
    eprintln!(
        "post-confirm: process start to first completed invocation: {} ms",
        elapsed.as_millis()
    );

    let Outcome::Response(body) = first else {
        panic!("sign-up: {first:?}")
    };
    let returned: Value = serde_json::from_str(&body).expect("JSON response");
    assert_eq!(
        returned,
        serde_json::from_str::<Value>(&sign_up).expect("fixture"),
        "event returned unchanged"
    );
    assert!(
        receiver
            .calls()
            .first()
            .is_some_and(|c| c.verified && c.status == 201),
        "{:?}",
        receiver.calls()
    );
    assert!(matches!(reset, Outcome::Response(_)), "{reset:?}");
    let Outcome::Error(report) = broken else {
        panic!("missing sub: {broken:?}")
    };
    assert!(report.contains("sub"), "{report}");
    // `cargo xtask verify`'s probe: a dry run signed with the current secret, its answer
    // returned; nothing registered.
    let Outcome::Response(answer) = probe else {
        panic!("probe: {probe:?}")
    };
    let answer: Value = serde_json::from_str(&answer).expect("JSON answer");
    assert_eq!(
        answer,
        serde_json::json!({"status": 204, "verified_with": "current"})
    );
    let calls = receiver.calls();
    assert_eq!(
        calls.len(),
        2,
        "the sign-up and the probe called the API: {calls:?}"
    );
    assert_eq!((calls[1].verified, calls[1].status), (true, 204));

    // One EMF outcome line per registration, none for events that register nobody.
    drop(child);
    let printed = std::fs::read_to_string(&stdout_path).expect("stdout");
    std::fs::remove_file(&stdout_path).ok();
    let outcomes: Vec<Value> = printed
        .lines()
        .filter(|l| l.contains("\"_aws\""))
        .map(|l| serde_json::from_str(l).expect("EMF line is JSON"))
        .collect();
    assert_eq!(outcomes.len(), 1, "{printed}");
    assert_eq!(outcomes[0]["Outcome"], "registered");
    assert_eq!(outcomes[0][post_confirm::METRIC], 1);
    assert_eq!(outcomes[0]["Attempts"], 1);
    assert!(!printed.contains(SECRET));

    // The log: JSON lines, each invocation's inside the runtime's span with its request id.
    let logged = std::fs::read_to_string(&stderr_path).expect("stderr");
    std::fs::remove_file(&stderr_path).ok();
    eprintln!("{logged}");
    let registered: Value = logged
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "user registered")
        .unwrap_or_else(|| panic!("no `user registered` line in {logged}"));
    assert_eq!(registered["level"], "INFO");
    assert!(
        registered["span"]["requestId"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{registered}"
    );
    assert!(!logged.contains(SECRET));
}

#[test]
fn invalid_settings_stop_the_binary_with_the_key_named() {
    let runtime = RuntimeApi::start().expect("runtime API");
    let output = Command::new(env!("CARGO_BIN_EXE_post-confirm"))
        .env_clear()
        .envs(runtime.lambda_env("post-confirm"))
        .env("TOLLGATE__GUARD__MODE", "plaintext")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("guard.mode"), "{text}");
}
