//! The guard secret's rotation (`post_confirm::rotation`) against moto's Secrets Manager and
//! the real api binary: each step is idempotent, and rotating twice while the real Lambda
//! binary registers a stream of users refuses and loses no one, in both modes.
//!
//! moto's `RotateSecret` cannot invoke a function (and without one it promotes an empty
//! version), so the tests run the four steps as Secrets Manager would: in order, with one token.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client as SecretsManager;
use rotate_secret::{RotationError, Rotator};
use secrecy::ExposeSecret;
use shared_auth::rotation::Step;
use testkit::process::Process;
use testkit::runtime_api::{Outcome, RuntimeApi};

/// One api binary on a fresh database, reading its secret from moto every second.
struct Stack {
    _api: Process,
    api_log: PathBuf,
    api_url: String,
    secret_id: String,
    sm: SecretsManager,
    db: sqlx::PgPool,
    db_url: String,
    /// `TOLLGATE_…` variables both ends share.
    shared_env: Vec<(String, String)>,
    work: PathBuf,
}

fn work_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tollgate-rotation-{label}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

/// Another deployable's binary (the api, the sign-up Lambda) next to this crate's, built if
/// this run has not built it: the tests run the real binaries, and a crate links none.
fn binary(package: &str) -> PathBuf {
    testkit::stack::built_binary(package).expect("the binary builds")
}

/// The api binary on `db_url`, reading the secret from moto; ready when this returns.
async fn start_api(
    shared_env: &[(String, String)],
    db_url: &str,
    log: &Path,
    extra: &[(&str, &str)],
) -> (Process, String) {
    let port = testkit::services::free_port().expect("port");
    let mut env = shared_env.to_vec();
    env.extend([
        (
            "TOLLGATE__API__LISTEN".to_owned(),
            format!("127.0.0.1:{port}"),
        ),
        ("TOLLGATE__API__SECRET_SOURCE".to_owned(), "aws".to_owned()),
        ("DATABASE_URL".to_owned(), db_url.to_owned()),
    ]);
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let mut api = Process::start("api", &binary("api"), &env, log).expect("api starts");
    let url = format!("http://127.0.0.1:{port}");
    api.wait_ready(&reqwest::Client::new(), &format!("{url}/readyz"))
        .await
        .expect("api ready");
    (api, url)
}

async fn fresh_database() -> String {
    testkit::fresh_database("rotation").await
}

impl Stack {
    async fn start(mode: &str, label: &str) -> Stack {
        let first = shared_auth::generate_secret().expect("random");
        Self::start_with(mode, label, first).await
    }

    /// The stack with `first` as the secret's first version.
    async fn start_with(mode: &str, label: &str, first: secrecy::SecretString) -> Stack {
        let work = work_dir(label);
        let endpoint = testkit::aws_endpoint();
        let sm = shared_aws::secrets_manager(&testkit::local_aws()).await;
        let secret_id = format!("tollgate/test/rotation-{}", uuid::Uuid::new_v4().simple());
        sm.create_secret()
            .name(&secret_id)
            .secret_string(first.expose_secret())
            .send()
            .await
            .expect("moto creates the secret");
        let shared_env: Vec<(String, String)> = [
            ("TOLLGATE_ENV", "local".to_owned()),
            ("TOLLGATE__GUARD__MODE", mode.to_owned()),
            ("TOLLGATE__GUARD__SECRET_ID", secret_id.clone()),
            ("TOLLGATE__AWS__ENDPOINT_URL", endpoint),
            ("TOLLGATE__API__SECRET_REFRESH_S", "1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let db_url = fresh_database().await;
        let api_log = work.join("api.log");
        let (api, api_url) = start_api(&shared_env, &db_url, &api_log, &[]).await;
        let db = sqlx::PgPool::connect(&db_url).await.expect("test pool");
        Stack {
            _api: api,
            api_log,
            api_url,
            secret_id,
            sm,
            db,
            db_url,
            shared_env,
            work,
        }
    }

    /// A second api task on the same secret and database, with `extra` settings.
    async fn another_api(&self, label: &str, extra: &[(&str, &str)]) -> (Process, String) {
        let log = self.work.join(format!("api-{label}.log"));
        start_api(&self.shared_env, &self.db_url, &log, extra).await
    }

    /// Settings as the rotation function gets them: the shared contract plus the api's URL.
    fn settings(&self) -> shared_auth::Settings {
        let mut vars: HashMap<String, String> = self.shared_env.iter().cloned().collect();
        vars.insert(
            "TOLLGATE__LAMBDA__API_BASE_URL".into(),
            self.api_url.clone(),
        );
        shared_auth::load_for(shared_auth::Component::Lambda, &vars).expect("settings")
    }

    async fn rotator(&self) -> Rotator {
        let mut rotator = Rotator::from_settings(&self.settings(), Duration::from_secs(20))
            .await
            .expect("rotator");
        rotator.poll = Duration::from_millis(200);
        rotator
    }

    async fn stages(&self) -> HashMap<String, Vec<String>> {
        let mut stages = shared_aws::versions::Stages::describe(&self.sm, &self.secret_id)
            .await
            .expect("describe")
            .by_version()
            .clone();
        for s in stages.values_mut() {
            s.sort();
        }
        stages
    }

    async fn value(&self, version: &str) -> String {
        self.sm
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_id(version)
            .send()
            .await
            .expect("get version")
            .secret_string
            .expect("string")
    }

    /// `value` staged `AWSPENDING` under `token`, as a tool or a person would by hand.
    async fn stage_pending(&self, token: &str, value: &str) {
        self.sm
            .put_secret_value()
            .secret_id(&self.secret_id)
            .client_request_token(token)
            .secret_string(value)
            .version_stages("AWSPENDING")
            .send()
            .await
            .expect("moto stages the pending value");
    }

    async fn rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&self.db)
            .await
            .expect("count")
    }

    fn refusals_logged(&self) -> usize {
        std::fs::read_to_string(&self.api_log)
            .unwrap_or_default()
            .matches("registration refused")
            .count()
    }
}

fn holder(stages: &HashMap<String, Vec<String>>, stage: &str) -> Option<String> {
    stages
        .iter()
        .find(|(_, s)| s.iter().any(|s| s == stage))
        .map(|(id, _)| id.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn each_step_run_twice_is_idempotent_and_the_rotation_promotes_the_new_version() {
    let stack = Stack::start("hmac", "steps").await;
    let rotator = stack.rotator().await;
    let before = stack.stages().await;
    let old = holder(&before, "AWSCURRENT").expect("current");
    let token = uuid::Uuid::new_v4().to_string();

    // Steps out of order or for another secret fail without changing anything.
    for step in [Step::Set, Step::Test, Step::Finish] {
        let e = rotator.run(step, &stack.secret_id, &token).await;
        assert!(
            matches!(e, Err(RotationError::NotPending { .. })),
            "{step}: {e:?}"
        );
    }
    let e = rotator
        .run(Step::Create, "tollgate/test/someone-else", &token)
        .await;
    assert!(e.is_err(), "another secret: {e:?}");
    assert_eq!(stack.stages().await, before);

    rotator
        .run(Step::Create, &stack.secret_id, &token)
        .await
        .expect("create");
    let created = stack.value(&token).await;
    assert_eq!(created.len(), shared_auth::secret::GENERATED_SECRET_LEN);
    rotator
        .run(Step::Create, &stack.secret_id, &token)
        .await
        .expect("create again");
    assert!(
        stack.value(&token).await == created,
        "a retried createSecret keeps the value"
    );
    let staged = stack.stages().await;
    assert_eq!(staged[&token], ["AWSPENDING"]);
    assert_eq!(holder(&staged, "AWSCURRENT").as_deref(), Some(old.as_str()));

    for step in [Step::Set, Step::Test] {
        rotator
            .run(step, &stack.secret_id, &token)
            .await
            .expect("first run");
        rotator
            .run(step, &stack.secret_id, &token)
            .await
            .expect("second run");
        assert_eq!(stack.stages().await, staged, "{step} changes no stage");
    }
    // The api learned the pending version: the dry run the test step sent passed as `pending`.
    let pending = secrecy::SecretString::from(created.clone());
    rotator
        .dry_run(&pending, "pending")
        .await
        .expect("pending accepted");
    assert!(
        rotator.dry_run(&pending, "current").await.is_err(),
        "a dry run reports the version it matched"
    );
    assert_eq!(stack.rows().await, 0, "dry runs write nothing");

    rotator
        .run(Step::Finish, &stack.secret_id, &token)
        .await
        .expect("finish");
    let finished = stack.stages().await;
    rotator
        .run(Step::Finish, &stack.secret_id, &token)
        .await
        .expect("finish again");
    assert_eq!(stack.stages().await, finished);
    assert_eq!(
        finished[&token],
        ["AWSCURRENT"],
        "promoted, AWSPENDING removed"
    );
    assert_eq!(finished[&old], ["AWSPREVIOUS"]);
    assert_eq!(holder(&finished, "AWSPENDING"), None);

    // Every step retried after the end is a no-op.
    for step in Step::ALL {
        rotator
            .run(step, &stack.secret_id, &token)
            .await
            .expect("retry after the end");
    }
    assert_eq!(stack.stages().await, finished);

    // The next rotation starts from there.
    let next = uuid::Uuid::new_v4().to_string();
    rotator
        .rotate(&stack.secret_id, &next, |_, _| {})
        .await
        .expect("second rotation");
    let after = stack.stages().await;
    assert_eq!(after[&next], ["AWSCURRENT"]);
    assert_eq!(after[&token], ["AWSPREVIOUS"]);
    assert!(!after.contains_key(&old) || after[&old].is_empty());
    assert_eq!(stack.refusals_logged(), 0);
}

/// Secrets Manager tests a newly attached rotation (`rotate_immediately = false`) by running
/// testSecret alone on a pending version that copies the current value. The api matches such
/// a dry run as `current` (it checks current first); the step must still pass.
/// setSecret asks every task, not whichever the load balancer picks: a task that has not
/// learned the pending version (its refresh failed, or is slow) holds the rotation back, and
/// nothing is promoted that a task would refuse.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_that_has_not_learned_the_pending_version_holds_the_rotation_back() {
    let stack = Stack::start("hmac", "every-task").await;
    // This task read the secret at start and will not read it again during the test.
    let (_lagging, lagging_url) = stack
        .another_api("lagging", &[("TOLLGATE__API__SECRET_REFRESH_S", "3600")])
        .await;
    let mut rotator = stack.rotator().await;
    rotator.budget = Duration::from_secs(4);
    rotator.verifiers =
        rotate_secret::Verifiers::Fixed(vec![stack.api_url.clone(), lagging_url.clone()]);
    let token = uuid::Uuid::new_v4().to_string();
    rotator
        .run(Step::Create, &stack.secret_id, &token)
        .await
        .expect("create");
    let before = stack.stages().await;
    let e = rotator.run(Step::Set, &stack.secret_id, &token).await;
    match &e {
        Err(RotationError::NotLearned { seen, .. }) => {
            assert!(
                seen.contains(&lagging_url),
                "names the lagging task: {seen}"
            );
            assert!(
                !seen.contains(&format!("{} ", stack.api_url)),
                "not the one that learned: {seen}"
            );
        }
        other => panic!("setSecret passed with a task that refuses the value: {other:?}"),
    }
    assert_eq!(stack.stages().await, before, "nothing promoted");
    // Asking one task alone (what polling through the ALB amounts to) would have passed.
    rotator.verifiers = rotate_secret::Verifiers::Fixed(vec![stack.api_url.clone()]);
    rotator
        .run(Step::Set, &stack.secret_id, &token)
        .await
        .expect("one task alone would have let it through");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_configuration_test_passes_when_the_pending_version_copies_the_current_one() {
    let stack = Stack::start("hmac", "configuration").await;
    let rotator = stack.rotator().await;
    let current = holder(&stack.stages().await, "AWSCURRENT").expect("current");
    let token = uuid::Uuid::new_v4().to_string();
    let copy = stack.value(&current).await;
    stack.stage_pending(&token, &copy).await;
    rotator
        .run(Step::Test, &stack.secret_id, &token)
        .await
        .expect("the configuration test passes on a copy of the current value");
    assert_eq!(stack.rows().await, 0, "dry runs write nothing");
}

/// The stream the Lambda registers while the secret rotates twice.
const SIGN_UPS: usize = 500;
const STREAM: Duration = Duration::from_secs(30);

async fn rotation_under_load(mode: &str, first: secrecy::SecretString) -> Stack {
    let stack = Stack::start_with(mode, mode, first).await;
    let runtime = Arc::new(RuntimeApi::start().expect("runtime API"));
    let mut env = stack.shared_env.clone();
    env.extend([
        (
            "TOLLGATE__LAMBDA__API_BASE_URL".to_owned(),
            stack.api_url.clone(),
        ),
        // Short, so the Lambda really switches to each new version during the stream.
        ("TOLLGATE__GUARD__SECRET_TTL_S".to_owned(), "2".to_owned()),
    ]);
    env.extend(runtime.lambda_env("tollgate-test-post-confirm"));
    let lambda_log = stack.work.join("post-confirm.log");
    let _lambda = Process::start("post-confirm", &binary("post-confirm"), &env, &lambda_log)
        .expect("lambda starts");
    assert!(
        runtime.wait_for_polls(1, Duration::from_secs(10)),
        "post-confirm did not poll; see {}",
        lambda_log.display()
    );

    let sent = Arc::new(AtomicUsize::new(0));
    let stream = {
        let (runtime, sent) = (runtime.clone(), sent.clone());
        tokio::task::spawn_blocking(move || {
            let pace = STREAM / SIGN_UPS as u32;
            let start = Instant::now();
            let mut failures = Vec::new();
            for n in 0..SIGN_UPS {
                let due = start + pace * n as u32;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                let sub = uuid::Uuid::new_v4();
                let event = serde_json::json!({
                    "version": "1", "region": "ap-northeast-1",
                    "userPoolId": "ap-northeast-1_test", "userName": format!("user{n}"),
                    "callerContext": {"awsSdkVersion": "aws-sdk-unknown-unknown", "clientId": "test"},
                    "triggerSource": "PostConfirmation_ConfirmSignUp",
                    "request": {"userAttributes": {
                        "sub": sub.to_string(), "email": format!("user{n}@example.com"),
                        "email_verified": "true", "cognito:user_status": "CONFIRMED"}},
                    "response": {}
                });
                match runtime.invoke(&event.to_string(), Duration::from_secs(5)) {
                    Outcome::Response(_) => {}
                    other => failures.push(format!("user{n}: {other:?}")),
                }
                sent.fetch_add(1, Ordering::SeqCst);
            }
            failures
        })
    };

    let rotator = stack.rotator().await;
    let mut rotated_at = Vec::new();
    for round in 0..2 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let token = uuid::Uuid::new_v4().to_string();
        rotator
            .rotate(&stack.secret_id, &token, |_, _| {})
            .await
            .unwrap_or_else(|e| panic!("rotation {round}: {e}"));
        rotated_at.push(sent.load(Ordering::SeqCst));
        assert_eq!(stack.stages().await[&token], ["AWSCURRENT"]);
    }
    let failures = stream.await.expect("stream");
    let rows = stack.rows().await;
    let refused = stack.refusals_logged();
    eprintln!(
        "{mode}: {SIGN_UPS} sign-ups over {} s, rotations finished after {rotated_at:?}; \
         {} failed, {rows} rows, {refused} refusals logged by the api",
        STREAM.as_secs(),
        failures.len()
    );
    assert!(
        rotated_at.iter().all(|&n| n < SIGN_UPS),
        "both rotations must finish while sign-ups are still flowing: {rotated_at:?}"
    );
    assert!(
        failures.is_empty(),
        "{} failed, first: {:?}; see {}",
        failures.len(),
        failures.iter().take(3).collect::<Vec<_>>(),
        lambda_log.display()
    );
    assert_eq!(rows, SIGN_UPS as i64, "every registration stored once");
    assert_eq!(
        refused,
        0,
        "no request refused; see {}",
        stack.api_log.display()
    );
    stack
}

#[tokio::test(flavor = "multi_thread")]
async fn rotating_twice_under_load_refuses_and_loses_no_sign_up_hmac() {
    rotation_under_load("hmac", shared_auth::generate_secret().expect("random")).await;
}

/// A pending value staged by hand that is not a Standard Webhooks key is never tested nor
/// promoted: the rotation stops at once and says what to do.
#[tokio::test(flavor = "multi_thread")]
async fn a_pending_value_that_is_no_standard_webhooks_key_is_refused() {
    let stack = Stack::start("hmac", "not-standard").await;
    let rotator = stack.rotator().await;
    let token = uuid::Uuid::new_v4().to_string();
    stack
        .stage_pending(&token, "hand-made-pending-value-0123456789abcdefgh")
        .await;
    for step in [Step::Create, Step::Test] {
        let e = rotator
            .run(step, &stack.secret_id, &token)
            .await
            .expect_err("a value of the old format is refused");
        assert!(matches!(e, RotationError::NotStandard(_)), "{step:?}: {e}");
        assert!(e.to_string().contains("whsec_"), "{e}");
    }
    assert_eq!(
        stack.stages().await[&token],
        ["AWSPENDING"],
        "nothing promoted"
    );
}

/// An environment whose secret predates the Standard Webhooks format (no `whsec_`): the first
/// rotation moves it to a `whsec_` key with sign-ups flowing (none refused, none lost: the
/// old key stays accepted as the previous version), and after the second the old key is
/// refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_of_the_format_before_standard_webhooks_rotates_into_it_under_load() {
    let legacy = "pre-standard-webhooks-secret-0123456789abcdefgh";
    let stack = rotation_under_load("hmac", legacy.into()).await;
    let stages = stack.stages().await;
    for stage in ["AWSCURRENT", "AWSPREVIOUS"] {
        let id = holder(&stages, stage).expect(stage);
        let value = secrecy::SecretString::from(stack.value(&id).await);
        assert_eq!(
            shared_auth::secret::key_format(&value, "rotated"),
            Ok(shared_auth::KeyFormat::StandardWebhooks),
            "{stage} after two rotations"
        );
    }
    // The api drops the old key at its next refresh (every second here).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let route = stack.rotator().await.route;
    let sub = uuid::Uuid::new_v4().to_string();
    let body = format!(r#"{{"sub":"{sub}","email_verified":false,"username":"late"}}"#);
    let status = route
        .signed(
            &[secrecy::SecretString::from(legacy)],
            &shared_auth::registration_id("ap-northeast-1_test", &sub),
            body.as_bytes(),
        )
        .send()
        .await
        .expect("sent")
        .status();
    assert_eq!(
        status, 403,
        "the old key is refused once it is no longer current or previous"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotating_twice_under_load_refuses_and_loses_no_sign_up_static() {
    rotation_under_load("static", shared_auth::generate_secret().expect("random")).await;
}

/// What a rule group accepts, read back from moto: the ids its description names and the
/// header values its rule matches.
async fn waf_accepts(waf: &aws_sdk_wafv2::Client, arn: &str) -> (Vec<String>, Vec<Vec<u8>>) {
    let group = waf
        .get_rule_group()
        .arn(arn)
        .send()
        .await
        .expect("GetRuleGroup")
        .rule_group
        .expect("group");
    let ids = shared_aws::waf::accepted_ids(group.description().unwrap_or_default());
    let [rule] = group.rules() else {
        panic!("one rule: {:?}", group.rules().len())
    };
    let values = shared_aws::waf::accepted_values(rule).expect("the shape waf::rule writes");
    (ids, values)
}

#[tokio::test(flavor = "multi_thread")]
async fn in_static_mode_the_waf_accepts_what_the_api_accepts_at_every_step() {
    let stack = Stack::start("static", "waf").await;
    let mut rotator = stack.rotator().await;
    let sdk = testkit::sdk_config(&testkit::local_aws()).await;
    let waf = aws_sdk_wafv2::Client::new(&sdk);
    let group = shared_aws::waf::GuardRuleGroup {
        client: waf.clone(),
    };
    let name = format!(
        "tollgate-t{}-guard-secret",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let accepted = rotator
        .accepted_versions(&stack.secret_id)
        .await
        .expect("versions");
    let arn = group
        .ensure(&name, &rotator.route.contract, &accepted)
        .await
        .expect("rule group created");
    assert_eq!(
        group
            .ensure(&name, &rotator.route.contract, &accepted)
            .await
            .expect("again"),
        arn,
        "ensure finds the group it made"
    );
    rotator.waf = Some((group.clone(), arn.clone()));

    // What the WAF must accept, by id, with the values Secrets Manager holds for them.
    let expect = |ids: Vec<String>| {
        let stack = &stack;
        async move {
            let mut values = Vec::new();
            for id in &ids {
                values.push(stack.value(id).await.into_bytes());
            }
            (ids, values)
        }
    };
    let old = holder(&stack.stages().await, "AWSCURRENT").expect("current");
    assert_eq!(
        waf_accepts(&waf, &arn).await,
        expect(vec![old.clone()]).await
    );

    let token = uuid::Uuid::new_v4().to_string();
    rotator
        .run(Step::Create, &stack.secret_id, &token)
        .await
        .expect("create");
    assert_eq!(
        waf_accepts(&waf, &arn).await.0,
        std::slice::from_ref(&old),
        "nothing new yet"
    );
    for _ in 0..2 {
        rotator
            .run(Step::Set, &stack.secret_id, &token)
            .await
            .expect("set");
        assert_eq!(
            waf_accepts(&waf, &arn).await,
            expect(vec![old.clone(), token.clone()]).await,
            "set: current and pending at the edge"
        );
    }
    rotator
        .run(Step::Test, &stack.secret_id, &token)
        .await
        .expect("test");
    for _ in 0..2 {
        rotator
            .run(Step::Finish, &stack.secret_id, &token)
            .await
            .expect("finish");
        assert_eq!(
            waf_accepts(&waf, &arn).await,
            expect(vec![token.clone(), old.clone()]).await,
            "finish: current and previous"
        );
    }
    let next = uuid::Uuid::new_v4().to_string();
    rotator
        .rotate(&stack.secret_id, &next, |_, _| {})
        .await
        .expect("second rotation");
    assert_eq!(
        waf_accepts(&waf, &arn).await,
        expect(vec![next.clone(), token.clone()]).await,
        "the version two rotations back is gone from the edge"
    );
    assert!(group.delete(&name).await.expect("delete"));
    assert_eq!(group.find(&name).await.expect("list"), None);
}
