//! Nothing confirmed is lost, with the real binaries: the sign-up function under a local
//! Runtime API (several processes, as Lambda runs concurrent invocations), the api on
//! PostgreSQL, the queues in moto, and Lambda's SQS poller played by the test (moto never
//! invokes a function from a queue).

use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::queues::Queues;
use testkit::receiver::{Receiver, Script};
use testkit::runtime_api::Outcome;
use testkit::stack::{Api, SignUpFunctions, work_dir};

/// A PostConfirmation event for a new user `n`, as Cognito sends it.
fn sign_up(n: usize) -> (String, Value) {
    let sub = uuid::Uuid::new_v4().to_string();
    let fixture = std::fs::read_to_string(format!(
        "{}/tests/fixtures/sign-up.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture");
    let mut event: Value = serde_json::from_str(&fixture).expect("json");
    event["userName"] = Value::from(format!("user-{n}"));
    event["request"]["userAttributes"]["sub"] = Value::from(sub.clone());
    event["request"]["userAttributes"]["email"] = Value::from(format!("user-{n}@example.com"));
    (sub, event)
}

async fn queues(label: &str, max_receives: u32) -> Queues {
    let sdk = testkit::sdk_config(&testkit::local_aws()).await;
    Queues::create(&sdk, label, max_receives)
        .await
        .expect("moto makes the queues")
}

/// The function's environment: the api's contract, its address, the queues.
fn function_env(
    shared: &[(String, String)],
    api_url: &str,
    queues: &Queues,
) -> Vec<(String, String)> {
    let mut env = shared.to_vec();
    env.push(("TOLLGATE__LAMBDA__API_BASE_URL".into(), api_url.into()));
    env.push(("TOLLGATE__LAMBDA__RETRY_BACKOFF_S".into(), "1".into()));
    env.extend(queues.lambda_env());
    env
}

/// Lambda's poller until the retry queue is empty or `limit` passes; the rounds it took.
async fn drain(queues: &Queues, functions: &SignUpFunctions, limit: Duration) -> usize {
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < limit {
        let (handed, _) = queues
            .poll_once(30, |event| async move {
                let payload = event.to_string();
                match functions.runtime.invoke(&payload, Duration::from_secs(60)) {
                    Outcome::Response(body) => Ok(serde_json::from_str(&body)?),
                    other => anyhow::bail!("the batch failed: {other:?}"),
                }
            })
            .await
            .expect("a poll");
        rounds += 1;
        if handed == 0 {
            return rounds;
        }
    }
    rounds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_api_down_fifty_sign_ups_succeed_and_are_registered_from_the_queue_once_it_returns()
 {
    const SIGN_UPS: usize = 50;
    let mut api = Api::start("durable", &[]).await.expect("api");
    let queues = queues("durable", 5).await;
    let work = work_dir("durable").expect("work dir");
    let env = function_env(&api.shared_env, &api.url, &queues);
    let functions =
        std::sync::Arc::new(SignUpFunctions::start(10, &env, &work).expect("functions"));
    api.stop();

    let events: Vec<(String, Value)> = (0..SIGN_UPS).map(sign_up).collect();
    let mut invocations = Vec::new();
    for (_, event) in &events {
        let (functions, payload) = (functions.clone(), event.to_string());
        invocations.push(tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let outcome = functions.runtime.invoke(&payload, Duration::from_secs(5));
            (outcome, started.elapsed())
        }));
    }
    let mut slowest = Duration::ZERO;
    for (invocation, (_, event)) in invocations.into_iter().zip(&events) {
        let (outcome, took) = invocation.await.expect("invocation");
        let Outcome::Response(body) = outcome else {
            panic!("Cognito saw {outcome:?}; see {}", work.display())
        };
        assert_eq!(serde_json::from_str::<Value>(&body).expect("json"), *event);
        assert!(took < Duration::from_secs(3), "an invocation took {took:?}");
        slowest = slowest.max(took);
    }
    let waiting = queues.count(&queues.retry).await.expect("the queue");
    assert_eq!(waiting, SIGN_UPS, "every sign-up is queued");
    assert_eq!(api.users().await.expect("count"), 0);
    api.restart().await.expect("the api comes back");
    let back = Instant::now();
    let mut rounds = 0;
    while api.users().await.expect("count") < SIGN_UPS as i64
        && back.elapsed() < Duration::from_secs(120)
    {
        rounds += drain(&queues, &functions, Duration::from_secs(120)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took = back.elapsed();
    println!(
        "api down: {SIGN_UPS} sign-ups, slowest invocation {} ms; api back to last row {:.1} s over {rounds} poll rounds",
        slowest.as_millis(),
        took.as_secs_f64()
    );
    assert_eq!(api.users().await.expect("count"), SIGN_UPS as i64);
    for (sub, _) in &events {
        assert_eq!(
            api.rows_for(sub).await.expect("rows"),
            1,
            "{sub} exactly once"
        );
    }
    assert_eq!(queues.count(&queues.retry).await.expect("the queue"), 0);
    assert_eq!(queues.count(&queues.dead).await.expect("dead letters"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_copies_of_one_event_at_once_make_one_row() {
    let api = Api::start("copies", &[]).await.expect("api");
    let queues = queues("copies", 5).await;
    let work = work_dir("copies").expect("work dir");
    let env = function_env(&api.shared_env, &api.url, &queues);
    let functions = std::sync::Arc::new(SignUpFunctions::start(3, &env, &work).expect("functions"));
    let (sub, event) = sign_up(0);
    let copies: Vec<_> = (0..3)
        .map(|_| {
            let (functions, payload) = (functions.clone(), event.to_string());
            tokio::task::spawn_blocking(move || {
                functions.runtime.invoke(&payload, Duration::from_secs(5))
            })
        })
        .collect();
    for copy in copies {
        assert!(matches!(copy.await.expect("copy"), Outcome::Response(_)));
    }
    assert_eq!(api.rows_for(&sub).await.expect("rows"), 1);
    assert_eq!(queues.count(&queues.retry).await.expect("queue"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_message_is_dead_lettered_after_its_receives_and_the_rest_of_its_batch_deleted() {
    const MAX_RECEIVES: u32 = 3;
    let contract = shared_auth::load_for(shared_auth::Component::Lambda, &Default::default())
        .expect("local settings")
        .guard;
    let sm = shared_aws::secrets_manager(&testkit::local_aws()).await;
    let secret_id = format!("tollgate/test/poison-{}", uuid::Uuid::new_v4().simple());
    let secret = testkit::secrets::new_secret().expect("random");
    testkit::secrets::put_secret(&sm, &secret_id, &secret)
        .await
        .expect("secret");
    use secrecy::ExposeSecret as _;
    let receiver = Receiver::start(
        contract,
        shared_auth::SecretSet::new(secret.expose_secret().into(), None).expect("secret"),
    )
    .await;
    let queues = queues("poison", MAX_RECEIVES).await;
    let work = work_dir("poison").expect("work dir");
    let shared: Vec<(String, String)> = [
        ("TOLLGATE_ENV", "local".to_owned()),
        ("TOLLGATE__GUARD__SECRET_ID", secret_id),
        ("TOLLGATE__AWS__ENDPOINT_URL", testkit::aws_endpoint()),
        (
            "TOLLGATE__DEPLOY__RETRY_MAX_RECEIVES",
            MAX_RECEIVES.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let env = function_env(&shared, &receiver.base_url(), &queues);
    let functions = SignUpFunctions::start(1, &env, &work).expect("function");

    // Three sign-ups the api cannot take now: queued.
    receiver.script(&vec![Script::Status(503); 12]);
    let events: Vec<(String, Value)> = (0..3).map(sign_up).collect();
    for (_, event) in &events {
        let outcome = functions
            .runtime
            .invoke(&event.to_string(), Duration::from_secs(5));
        assert!(matches!(outcome, Outcome::Response(_)), "{outcome:?}");
    }
    // The api takes two of them back; one (the poison) keeps failing.
    let poison = &events[1].0;
    receiver.refuse(poison, 503);
    let runtime = &functions.runtime;
    let (handed, failed) = queues
        .poll_once(30, |event| async move {
            match runtime.invoke(&event.to_string(), Duration::from_secs(60)) {
                Outcome::Response(body) => Ok(serde_json::from_str(&body)?),
                other => anyhow::bail!("{other:?}"),
            }
        })
        .await
        .expect("first batch");
    assert_eq!(
        (handed, failed),
        (3, 1),
        "one failure reported, the others deleted"
    );
    // Its backoff (1 s, then 2 s) passes between receives; the last one dead-letters it.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if queues.count(&queues.dead).await.expect("dead") > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        drain(&queues, &functions, Duration::from_secs(5)).await;
    }
    let letters = queues.peek_all(&queues.dead).await.expect("dead letters");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0].contains(poison.as_str()) && letters[0].contains("503"),
        "{}",
        letters[0]
    );
    let poison_calls = receiver
        .calls()
        .iter()
        .filter(|c| c.body["sub"] == poison.as_str() && c.status == 503)
        .count();
    assert!(
        poison_calls >= MAX_RECEIVES as usize,
        "tried on each of its receives: {poison_calls}"
    );
    let registered = receiver.calls().iter().filter(|c| c.status == 201).count();
    assert_eq!(registered, 2, "the other two, once each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_even_the_queue_fails_the_sign_up_succeeds_counts_as_lost_and_the_sweep_registers_it()
{
    let api = Api::start("lost", &[]).await.expect("api");
    let sdk = testkit::sdk_config(&testkit::local_aws()).await;
    let pool = testkit::cognito::UserPool::create(&sdk, &testkit::aws_endpoint(), "lost")
        .await
        .expect("a user pool");
    let user = pool
        .sign_up("grace", "grace@example.com")
        .await
        .expect("a sign-up");
    let work = work_dir("lost").expect("work dir");
    let mut env = api.shared_env.clone();
    env.extend([
        // The api is not there, and the queue does not exist.
        (
            "TOLLGATE__LAMBDA__API_BASE_URL".to_owned(),
            "http://127.0.0.1:9".to_owned(),
        ),
        (
            "TOLLGATE__LAMBDA__RETRY_QUEUE".to_owned(),
            format!(
                "{}/123456789012/tollgate-no-such-queue",
                testkit::aws_endpoint()
            ),
        ),
    ]);
    let broken = SignUpFunctions::start(1, &env, &work).expect("function");
    let outcome = broken
        .runtime
        .invoke(&user.event.to_string(), Duration::from_secs(5));
    let Outcome::Response(body) = outcome else {
        panic!("Cognito saw {outcome:?}")
    };
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json"),
        user.event
    );
    let lost: Vec<Value> = broken
        .output()
        .lines()
        .filter(|l| l.contains("\"_aws\""))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(lost.len(), 1, "one metric line");
    assert_eq!(lost[0]["Outcome"], "lost");
    assert_eq!(api.rows_for(&user.sub).await.expect("rows"), 0);

    // The next sweep, through a function that reaches the api, finds the user.
    let mut env = api.shared_env.clone();
    env.push(("TOLLGATE__LAMBDA__API_BASE_URL".to_owned(), api.url.clone()));
    let working = SignUpFunctions::start(1, &env, &work).expect("function");
    let sweep = serde_json::json!({"tollgate": "sweep", "user_pool_id": pool.id});
    let Outcome::Response(counts) = working
        .runtime
        .invoke(&sweep.to_string(), Duration::from_secs(60))
    else {
        panic!("the sweep failed; see {}", work.display())
    };
    let counts: Value = serde_json::from_str(&counts).expect("counts");
    assert_eq!(counts["registered"], 1, "{counts}");
    assert_eq!(api.rows_for(&user.sub).await.expect("rows"), 1);
}
