//! `cargo xtask reconcile` and `cargo xtask redrive` as a user runs them against a local AWS:
//! the sweep registers exactly the confirmed, enabled users the database lacks (the same code
//! the schedule runs, through the sign-up function's binary), and a second run registers none;
//! the dead-letter queue moves back to the retry queue, unwrapped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use secrecy::SecretString;
use testkit::cmd::transcript;
use testkit::queues::Queues;
use testkit::stack::Api;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn xtask(args: &[&str], env: &[(String, String)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask-cloud"));
    command.current_dir(root()).args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("TOLLGATE__") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command.output().expect("cargo runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweep_registers_exactly_the_missing_users_and_a_second_run_none() {
    const CONFIRMED: usize = 300;
    const MISSING: usize = 40;
    const DISABLED: usize = 3;
    let api = Api::start("reconcile", &[]).await.expect("api");
    let sdk = testkit::sdk_config(&testkit::local_aws()).await;
    let pool = testkit::cognito::UserPool::create(&sdk, &testkit::aws_endpoint(), "reconcile")
        .await
        .expect("a user pool");
    let mut subs = Vec::new();
    for n in 0..CONFIRMED + DISABLED {
        let name = format!("sweep-{n}");
        subs.push(
            pool.confirmed_user(&name, &format!("{name}@example.com"))
                .await
                .expect("a confirmed user"),
        );
        if n >= CONFIRMED {
            pool.disable(&name).await.expect("disabled");
        }
    }
    // All but MISSING of the enabled ones are registered already.
    let contract = shared_auth::load_for(
        shared_auth::Component::Lambda,
        &api.shared_env.iter().cloned().collect(),
    )
    .expect("settings")
    .guard;
    let route =
        lambda_support::route::GuardedRoute::new(reqwest::Client::new(), contract, &api.url);
    let secret = SecretString::from(api.secret_value().to_owned());
    for (n, sub) in subs.iter().enumerate().take(CONFIRMED - MISSING) {
        let body = format!(
            r#"{{"sub":"{sub}","email":"sweep-{n}@example.com","email_verified":false,"username":"sweep-{n}"}}"#
        );
        let status = route
            .signed(
                std::slice::from_ref(&secret),
                &shared_auth::registration_id("reconcile", sub),
                body.as_bytes(),
            )
            .send()
            .await
            .expect("sent")
            .status();
        assert_eq!(status.as_u16(), 201);
    }

    let mut env = api.shared_env.clone();
    env.push((
        "TOLLGATE__AWS__ENDPOINT_URL".into(),
        testkit::aws_endpoint(),
    ));
    let args = [
        "reconcile",
        "--env",
        "local",
        "--user-pool-id",
        pool.id.as_str(),
        "--api-url",
        api.url.as_str(),
    ];
    let first = xtask(&args, &env);
    assert!(
        first.status.success(),
        "reconcile failed:\n{}",
        transcript(&first)
    );
    let said = transcript(&first);
    println!(
        "{}",
        said.lines()
            .filter(|l| l.contains("reconciled"))
            .collect::<String>()
    );
    assert!(
        said.contains(&format!("{MISSING} were missing and are registered now"))
            && said.contains(&format!("{} were already registered", CONFIRMED - MISSING))
            && said.contains(&format!("{DISABLED} disabled")),
        "{said}"
    );
    assert_eq!(api.users().await.expect("count"), CONFIRMED as i64);
    for sub in &subs[CONFIRMED..] {
        assert_eq!(
            api.rows_for(sub).await.expect("rows"),
            0,
            "a disabled user is not registered"
        );
    }
    let second = xtask(&args, &env);
    assert!(second.status.success(), "{}", transcript(&second));
    assert!(
        transcript(&second).contains(&format!(
            "0 were missing and are registered now, {CONFIRMED} were already registered"
        )),
        "{}",
        transcript(&second)
    );
    assert_eq!(api.users().await.expect("count"), CONFIRMED as i64);
}

#[tokio::test(flavor = "multi_thread")]
async fn redrive_moves_the_dead_letters_back_unwrapped() {
    let sdk = testkit::sdk_config(&testkit::local_aws()).await;
    let queues = Queues::create(&sdk, "redrive", 3).await.expect("queues");
    let queued = r#"{"kind":"registration","registration":{"sub":"7d8ca528-4931-4254-9273-ea5ee853f271","email_verified":false,"username":"ada"},"reason":"503","queued_at":1}"#;
    let letter =
        serde_json::json!({"reason": "the api answered 422", "message": queued}).to_string();
    for body in [letter.as_str(), queued] {
        queues
            .sqs
            .send_message()
            .queue_url(&queues.dead)
            .message_body(body)
            .send()
            .await
            .expect("a dead letter");
    }
    let env = vec![(
        "TOLLGATE__AWS__ENDPOINT_URL".to_owned(),
        testkit::aws_endpoint(),
    )];
    let out = xtask(
        &[
            "redrive",
            "--env",
            "local",
            "--from",
            &queues.dead,
            "--to",
            &queues.retry,
        ],
        &env,
    );
    assert!(out.status.success(), "{}", transcript(&out));
    assert!(
        transcript(&out).contains("moved 2 message(s) by receive, send and delete"),
        "{}",
        transcript(&out)
    );
    assert_eq!(queues.count(&queues.dead).await.expect("count"), 0);
    let back = queues
        .peek_all(&queues.retry)
        .await
        .expect("the retry queue");
    assert_eq!(
        back,
        [queued, queued],
        "both back as the function queued them"
    );
}
