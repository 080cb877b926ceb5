//! The heartbeat with the real binaries: the sign-up function under a local Runtime API, the
//! api on PostgreSQL, the user pool in moto. moto never runs a trigger, so the test plays
//! Cognito: when the heartbeat's user turns up confirmed, it invokes the function with the
//! PostConfirmation event Cognito would send, as `AdminConfirmSignUp` would have.

use std::time::Duration;

use serde_json::{Value, json};
use shared_aws::emf::metrics_of;
use testkit::cognito::UserPool;
use testkit::runtime_api::Outcome;
use testkit::stack::{Api, SignUpFunctions, work_dir};

async fn pool(label: &str) -> UserPool {
    let sdk = testkit::sdk_config(&testkit::local_aws()).await;
    UserPool::create(&sdk, &testkit::aws_endpoint(), label)
        .await
        .expect("moto makes the pool")
}

/// Two processes of the function: one runs the heartbeat, the other the trigger it fires.
fn functions(label: &str, env: &[(String, String)], api_url: &str) -> SignUpFunctions {
    let mut env = env.to_vec();
    env.push(("TOLLGATE__LAMBDA__API_BASE_URL".into(), api_url.into()));
    let work = work_dir(label).expect("work dir");
    SignUpFunctions::start(2, &env, &work).expect("functions")
}

/// The pool's heartbeat users, any state.
async fn heartbeat_users(pool: &UserPool) -> Vec<String> {
    testkit::cognito::heartbeat_users(&pool.cognito, &pool.id)
        .await
        .expect("list users")
        .iter()
        .map(|u| u.username().unwrap_or_default().to_owned())
        .collect()
}

/// One heartbeat, the test playing Cognito's trigger; the function's answer.
async fn beat(functions: &std::sync::Arc<SignUpFunctions>, pool: &UserPool) -> Value {
    let event =
        json!({"tollgate": "heartbeat", "user_pool_id": pool.id, "client_id": pool.client_id});
    let running = {
        let functions = functions.clone();
        tokio::task::spawn_blocking(move || {
            functions
                .runtime
                .invoke(&event.to_string(), Duration::from_secs(40))
        })
    };
    testkit::cognito::play_heartbeat_trigger(
        &pool.cognito,
        &pool.region,
        &pool.id,
        &pool.client_id,
        Duration::from_secs(30),
        |trigger| async {
            let functions = functions.clone();
            let answered = tokio::task::spawn_blocking(move || {
                functions
                    .runtime
                    .invoke(&trigger.to_string(), Duration::from_secs(5))
            })
            .await?;
            anyhow::ensure!(
                matches!(answered, Outcome::Response(_)),
                "Cognito would have seen {answered:?}"
            );
            Ok(())
        },
    )
    .await
    .expect("Cognito's part");
    match running.await.expect("heartbeat") {
        Outcome::Response(body) => serde_json::from_str(&body).expect("json"),
        other => panic!("the heartbeat's invocation failed: {other:?}"),
    }
}

/// The `Heartbeat` metric lines' results, from the functions' output.
fn results(functions: &SignUpFunctions) -> Vec<String> {
    functions
        .output()
        .lines()
        .flat_map(metrics_of)
        .filter(|m| m.name == post_confirm::heartbeat::METRIC)
        .filter_map(|m| m.dimensions.get("Result").cloned())
        .collect()
}

/// No registration metric for the heartbeat's user: it is not a person's sign-up.
fn registrations_counted(functions: &SignUpFunctions) -> usize {
    functions
        .output()
        .lines()
        .flat_map(metrics_of)
        .filter(|m| m.name == post_confirm::METRIC)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_the_healthy_path_the_trigger_registers_it_and_nothing_is_left_behind() {
    let api = Api::start("heartbeat_ok", &[]).await.expect("api");
    let pool = pool("heartbeat_ok").await;
    let functions = std::sync::Arc::new(functions("heartbeat_ok", &api.shared_env, &api.url));
    let report = beat(&functions, &pool).await;
    assert_eq!(report["result"], "ok", "{report}");
    assert_eq!(report["registered_via"], "trigger", "{report}");
    assert_eq!(report["cleaned_up"], true, "{report}");
    assert!(report["latency_ms"].as_u64().is_some(), "{report}");
    assert_eq!(results(&functions), ["ok"]);
    assert_eq!(registrations_counted(&functions), 0);
    assert!(heartbeat_users(&pool).await.is_empty(), "no user left");
    assert_eq!(api.users().await.expect("count"), 0, "no row left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_api_unreachable_it_fails_and_still_cleans_up() {
    let mut api = Api::start("heartbeat_down", &[]).await.expect("api");
    let pool = pool("heartbeat_down").await;
    let functions = std::sync::Arc::new(functions("heartbeat_down", &api.shared_env, &api.url));
    api.stop();
    let report = beat(&functions, &pool).await;
    assert_eq!(report["result"], "failed", "{report}");
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|e| e.contains("read-back")),
        "{report}"
    );
    assert_eq!(
        report["cleaned_up"], false,
        "the row could not be checked: {report}"
    );
    assert_eq!(
        results(&functions),
        ["failed"],
        "the alarm's metric says so"
    );
    assert!(heartbeat_users(&pool).await.is_empty(), "no user left");
    assert_eq!(api.users().await.expect("count"), 0, "no row was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_functions_secret_wrong_it_fails() {
    let api = Api::start("heartbeat_secret", &[]).await.expect("api");
    let pool = pool("heartbeat_secret").await;
    let sm = shared_aws::secrets_manager(&testkit::local_aws()).await;
    let wrong_id = format!("tollgate/test/wrong-{}", uuid::Uuid::new_v4().simple());
    let wrong = testkit::secrets::new_secret().expect("random");
    testkit::secrets::put_secret(&sm, &wrong_id, &wrong)
        .await
        .expect("secret");
    let env: Vec<(String, String)> = api
        .shared_env
        .iter()
        .map(|(k, v)| {
            let v = if k == "TOLLGATE__GUARD__SECRET_ID" {
                wrong_id.clone()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    let functions = std::sync::Arc::new(functions("heartbeat_secret", &env, &api.url));
    let report = beat(&functions, &pool).await;
    assert_eq!(report["result"], "failed", "{report}");
    assert!(
        report["error"].as_str().is_some_and(|e| e.contains("403")),
        "{report}"
    );
    assert_eq!(results(&functions), ["failed"]);
    assert!(heartbeat_users(&pool).await.is_empty(), "no user left");
    assert_eq!(api.users().await.expect("count"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweep_passes_a_heartbeat_user_by_and_counts_no_drift_for_it() {
    let api = Api::start("heartbeat_sweep", &[]).await.expect("api");
    let pool = pool("heartbeat_sweep").await;
    // A heartbeat that died before its clean-up, beside a person the trigger missed.
    let left = shared_auth::heartbeat::email("left-behind");
    pool.confirmed_user(&left, &left)
        .await
        .expect("heartbeat user");
    let person = pool
        .confirmed_user("ada@example.com", "ada@example.com")
        .await
        .expect("person");
    let functions = functions("heartbeat_sweep", &api.shared_env, &api.url);
    let sweep = json!({"tollgate": "sweep", "user_pool_id": pool.id});
    let Outcome::Response(body) = functions
        .runtime
        .invoke(&sweep.to_string(), Duration::from_secs(30))
    else {
        panic!("the sweep failed")
    };
    let counts: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(counts["heartbeat"], 1, "{counts}");
    assert_eq!(counts["candidates"], 1, "{counts}");
    assert_eq!(
        counts["registered"], 1,
        "the drift is the person alone: {counts}"
    );
    assert_eq!(api.users().await.expect("count"), 1);
    assert_eq!(api.rows_for(&person).await.expect("rows"), 1);
}
