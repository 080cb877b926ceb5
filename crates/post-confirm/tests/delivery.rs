//! The handler against a receiver on loopback and moto's SQS: success, replays, retries,
//! secret rotation; and every way the api can fail (a refusal, a redirect, no answer, an
//! endless body, TLS refused, the secret unreadable) ends the same for the person signing up:
//! Cognito sees success and the registration waits in the retry queue with its reason (or is
//! dead-lettered with it), the secret never in either, nobody registered twice.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Context, LambdaEvent};
use lambda_support::secret::SecretSource;
use post_confirm::queue::{DeadLetter, Message};
use post_confirm::{Deps, handle};
use serde_json::Value;
use shared_auth::{SecretSet, Settings};
use shared_aws::secrets_manager;
use testkit::queues::{Queues, Received};
use testkit::receiver::{Receiver, Script};

const SECRET: &str = "whsec_bGFtYmRhLXRlc3Qta2V5LTAxMjM0NTY3ODlhYmNkZWY=";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

fn settings(api_base_url: &str, extra: &[(&str, &str)]) -> Settings {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("TOLLGATE_ENV".into(), "local".into()),
        ("TOLLGATE__LAMBDA__API_BASE_URL".into(), api_base_url.into()),
    ]);
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    shared_auth::load_for(shared_auth::Component::Lambda, &vars).expect("settings")
}

fn secrets(current: &str) -> SecretSet {
    SecretSet::new(current.into(), None).expect("valid secret")
}

/// An invocation with `budget` left before Lambda's deadline.
fn invocation(payload: Value, budget: Duration) -> LambdaEvent<Value> {
    let mut context = Context::default();
    context.request_id = "test-request".into();
    context.deadline =
        (SystemTime::now().duration_since(UNIX_EPOCH).expect("clock") + budget).as_millis() as u64;
    LambdaEvent::new(payload, context)
}

/// A receiver, a retry queue (and its dead-letter queue) in moto, and the function's
/// dependencies pointed at both; `extra` settings on top.
async fn setup(extra: &[(&str, &str)]) -> (Receiver, Deps) {
    let (receiver, deps, _) = harness(extra).await;
    (receiver, deps)
}

async fn harness(extra: &[(&str, &str)]) -> (Receiver, Deps, Queues) {
    let s = settings("http://127.0.0.1:9", extra);
    let receiver = Receiver::start(s.guard.clone(), secrets(SECRET)).await;
    let queues = queues().await;
    let deps = deps_for(
        &receiver.base_url(),
        &queues,
        extra,
        SecretSource::Fixed(SECRET.into()),
    )
    .await;
    (receiver, deps, queues)
}

async fn queues() -> Queues {
    let sdk = testkit::sdk_config(&testkit::local_aws()).await;
    Queues::create(&sdk, "delivery", 3)
        .await
        .expect("moto makes the queues")
}

async fn deps_for(
    api: &str,
    queues: &Queues,
    extra: &[(&str, &str)],
    source: SecretSource,
) -> Deps {
    let endpoint = testkit::aws_endpoint();
    let env = queues.lambda_env();
    let mut all: Vec<(&str, &str)> = vec![
        ("TOLLGATE__AWS__ENDPOINT_URL", endpoint.as_str()),
        ("TOLLGATE__LAMBDA__RETRY_BACKOFF_S", "1"),
    ];
    all.extend(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    all.extend_from_slice(extra);
    Deps::with_secret_source(settings(api, &all), source)
        .await
        .expect("deps")
}

/// The registrations waiting in the retry queue (received once, so hidden for 30 s), with
/// their reasons.
async fn queued(queues: &Queues) -> (Vec<(String, String)>, Vec<Received>) {
    let batch = queues
        .receive(&queues.retry, 30)
        .await
        .expect("read the queue");
    let waiting = batch
        .iter()
        .map(|m| {
            assert!(
                !m.body.contains(SECRET),
                "the secret left in a queue message: {}",
                m.body
            );
            match serde_json::from_str::<Message>(&m.body).expect("a queue message") {
                Message::Registration {
                    registration,
                    reason,
                    ..
                } => (registration.sub, reason),
                Message::Sweep(_) => panic!("a sweep cursor in the retry queue: {}", m.body),
            }
        })
        .collect();
    (waiting, batch)
}

/// One sign-up that the api does not take: Cognito sees the event back, within its budget,
/// and the registration waits in the retry queue, its reason naming `cause`. Returns the
/// received message, for the queue's turn.
async fn sign_up_is_queued(
    deps: &Deps,
    queues: &Queues,
    runtime_budget: Duration,
    cause: &str,
) -> Vec<Received> {
    let start = Instant::now();
    let event = fixture("sign-up");
    let returned = handle(deps, invocation(event.clone(), runtime_budget))
        .await
        .expect("a confirmed sign-up never fails");
    let took = start.elapsed();
    assert_eq!(returned, event, "Cognito gets the event back unchanged");
    assert!(
        took < Duration::from_secs(3),
        "the trigger took {took:?}: Cognito waits 5 s at most"
    );
    let (waiting, batch) = queued(queues).await;
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(waiting[0].0, "7d8ca528-4931-4254-9273-ea5ee853f271");
    assert!(
        waiting[0].1.contains(cause),
        "the reason {:?} does not say {cause:?}",
        waiting[0].1
    );
    batch
}

/// Lambda's poller, played once: `batch` (from the retry queue) through the handler.
async fn drain(deps: &Deps, queues: &Queues, batch: Vec<Received>) -> (usize, usize) {
    queues
        .hand_over(batch, |event| async move {
            let answer = handle(deps, invocation(event, Duration::from_secs(30)))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(answer)
        })
        .await
        .expect("a poll")
}

#[tokio::test]
async fn a_sign_up_is_delivered_signed_and_the_event_comes_back_unchanged() {
    let (receiver, deps) = setup(&[]).await;
    let event = fixture("unverified-with-extra-fields");
    let returned = handle(&deps, invocation(event.clone(), Duration::from_secs(5)))
        .await
        .expect("delivered");
    assert_eq!(
        returned, event,
        "Cognito needs the event back as it was sent"
    );
    let calls = receiver.calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].verified, "the receiver verified the signature");
    assert_eq!(
        calls[0].body,
        serde_json::json!({"sub": "7d8ca528-4931-4254-9273-ea5ee853f271", "email": "ada@example.com", "email_verified": false, "username": "ada", "via": "trigger"})
    );
    assert_eq!(calls[0].status, 201);
    // The common path builds no client it does not call (a cold start's cost): SQS and Cognito
    // are made on their first use, by a hand-off, a drain or a sweep.
    let queue = deps
        .queue
        .as_ref()
        .expect("the harness names a retry queue");
    assert!(
        !queue.sqs.is_built(),
        "a direct registration built the SQS client"
    );
    let cognito = deps.cognito.as_ref().expect("a Cognito client, lazily");
    assert!(
        !cognito.is_built(),
        "a direct registration built the Cognito client"
    );
}

#[tokio::test]
async fn static_mode_is_delivered_too() {
    let (receiver, deps) = setup(&[("TOLLGATE__GUARD__MODE", "static")]).await;
    handle(
        &deps,
        invocation(fixture("sign-up"), Duration::from_secs(5)),
    )
    .await
    .expect("delivered");
    assert!(receiver.calls()[0].verified);
}

#[tokio::test]
async fn a_cognito_retry_of_the_same_event_succeeds_again() {
    let (receiver, deps) = setup(&[]).await;
    for _ in 0..2 {
        handle(
            &deps,
            invocation(fixture("sign-up"), Duration::from_secs(5)),
        )
        .await
        .expect("delivered");
    }
    let statuses: Vec<u16> = receiver.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [201, 200]);
}

#[tokio::test]
async fn transient_failures_are_retried_until_success() {
    let (receiver, deps) = setup(&[]).await;
    receiver.script(&[
        Script::Status(503),
        Script::Status(429),
        Script::Status(502),
    ]);
    handle(
        &deps,
        invocation(fixture("sign-up"), Duration::from_secs(5)),
    )
    .await
    .expect("delivered");
    let statuses: Vec<u16> = receiver.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [503, 429, 502, 201]);
}

#[tokio::test]
async fn a_refusal_is_queued_then_dead_lettered_at_once_with_its_reason() {
    let (receiver, deps, queues) = harness(&[]).await;
    receiver.script(&[Script::Status(422)]);
    let batch = sign_up_is_queued(&deps, &queues, Duration::from_secs(5), "422").await;
    assert_eq!(
        receiver.calls().len(),
        1,
        "a 422 is not retried by the trigger"
    );
    // The queue's turn: the api refuses it again, and a refusal is final.
    receiver.script(&[Script::Status(422)]);
    let (handed, failed) = drain(&deps, &queues, batch).await;
    assert_eq!((handed, failed), (1, 0), "dead-lettered, so done with");
    assert!(queued(&queues).await.0.is_empty());
    let letters = queues.peek_all(&queues.dead).await.expect("dead letters");
    assert_eq!(letters.len(), 1);
    let letter: DeadLetter = serde_json::from_str(&letters[0]).expect("a dead letter");
    assert!(letter.reason.contains("422"), "{}", letter.reason);
    assert!(!letters[0].contains(SECRET));
    assert_eq!(receiver.calls().len(), 2);
}

#[tokio::test]
async fn a_queued_registration_is_registered_once_the_api_takes_it() {
    let (receiver, deps, queues) = harness(&[]).await;
    // Every attempt the trigger makes (lambda.max_attempts) meets a 503.
    receiver.script(&vec![Script::Status(503); 4]);
    let batch = sign_up_is_queued(&deps, &queues, Duration::from_secs(5), "503").await;
    assert_eq!(receiver.calls().len(), 4);
    // The queue's turn: the api takes it now.
    let (handed, failed) = drain(&deps, &queues, batch).await;
    assert_eq!((handed, failed), (1, 0));
    assert!(
        queued(&queues).await.0.is_empty(),
        "deleted once registered"
    );
    let registered: Vec<u16> = receiver.calls().iter().map(|c| c.status).collect();
    assert_eq!(
        registered,
        [503, 503, 503, 503, 201],
        "registered exactly once"
    );
}

#[tokio::test]
async fn a_password_reset_calls_nothing() {
    let (receiver, deps) = setup(&[]).await;
    let event = fixture("forgot-password");
    assert_eq!(
        handle(&deps, invocation(event.clone(), Duration::from_secs(5)))
            .await
            .expect("ok"),
        event
    );
    assert!(receiver.calls().is_empty());
}

#[tokio::test]
async fn an_api_that_never_answers_is_queued_within_the_trigger_budget() {
    let (receiver, deps, queues) =
        harness(&[("TOLLGATE__LAMBDA__ATTEMPT_TIMEOUT_MS", "5000")]).await;
    receiver.script(&[Script::Hang, Script::Hang, Script::Hang, Script::Hang]);
    sign_up_is_queued(&deps, &queues, Duration::from_secs(5), "timeout").await;
}

#[tokio::test]
async fn a_relative_deadline_like_cargo_lambdas_still_delivers_within_cognitos_budget() {
    let (receiver, deps) = setup(&[]).await;
    let mut context = Context::default();
    context.request_id = "cargo-lambda".into();
    // cargo-lambda's emulator sends the timeout, not an epoch time.
    context.deadline = 600_000;
    let event = fixture("sign-up");
    let returned = handle(&deps, LambdaEvent::new(event.clone(), context))
        .await
        .expect("delivered despite the 1970 deadline");
    assert_eq!(returned, event);
    assert_eq!(receiver.calls().len(), 1);
}

#[tokio::test]
async fn a_hung_api_under_a_long_runtime_deadline_is_queued_within_cognitos_budget() {
    let (receiver, deps, queues) =
        harness(&[("TOLLGATE__LAMBDA__ATTEMPT_TIMEOUT_MS", "10000")]).await;
    receiver.script(&[Script::Hang, Script::Hang, Script::Hang, Script::Hang]);
    // A function configured for 60 s: Cognito still stops waiting after 5 s.
    sign_up_is_queued(&deps, &queues, Duration::from_secs(60), "timeout").await;
}

#[tokio::test]
async fn a_redirect_is_never_followed_and_nothing_reaches_the_other_host() {
    let (elsewhere, _) = setup(&[]).await;
    for status_location in [
        format!("{}/user", elsewhere.base_url()),
        "https://attacker.example/user".to_owned(),
    ] {
        let (receiver, deps, queues) = harness(&[]).await;
        receiver.script(&[Script::Redirect(status_location.clone())]);
        sign_up_is_queued(&deps, &queues, Duration::from_secs(5), "redirecting").await;
        assert_eq!(receiver.calls().len(), 1, "not retried: {status_location}");
    }
    assert!(
        elsewhere.calls().is_empty(),
        "the credential and the user went to the redirect target"
    );
}

#[tokio::test]
async fn an_endless_response_body_is_not_waited_for() {
    let (receiver, deps) = setup(&[]).await;
    receiver.script(&[Script::EndlessBody]);
    let budget = Duration::from_secs(3);
    let start = Instant::now();
    let returned = handle(&deps, invocation(fixture("sign-up"), budget))
        .await
        .expect("the status decides; the body is never read");
    assert_eq!(returned, fixture("sign-up"));
    assert!(
        start.elapsed() < budget,
        "waited {:?} on the body",
        start.elapsed()
    );
    assert_eq!(receiver.calls().len(), 1);
}

/// One sign-up delivered by a Lambda configured as in AWS (HTTPS only, public roots) to
/// `api_base_url`: nothing reaches it, and the registration waits in the queue.
async fn deliver_as_staging(api_base_url: &str, cause: &str) {
    // Loaded as staging renders it (HTTPS), then pointed at `api_base_url` directly: the
    // client's own refusals are what is tested, whatever got past the settings.
    let queues = queues().await;
    let endpoint = testkit::aws_endpoint();
    let mut vars = vec![
        ("TOLLGATE_ENV", "staging"),
        ("TOLLGATE__GUARD__ALLOWED_CIDRS", "203.0.113.7/32"),
        ("TOLLGATE__AWS__ENDPOINT_URL", endpoint.as_str()),
    ];
    let env = queues.lambda_env();
    vars.extend(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut staging = settings("https://api.staging.example.com", &vars);
    staging.lambda.api_base_url = api_base_url.to_owned();
    let deps = Deps::with_secret_source(staging, SecretSource::Fixed(SECRET.into()))
        .await
        .expect("deps");
    sign_up_is_queued(&deps, &queues, Duration::from_secs(5), cause).await;
}

#[tokio::test]
async fn plain_http_is_refused_outside_local() {
    let (receiver, _) = setup(&[]).await;
    // The settings refuse it when loading...
    let vars: HashMap<String, String> = [
        ("TOLLGATE_ENV", "staging"),
        ("TOLLGATE__GUARD__ALLOWED_CIDRS", "203.0.113.7/32"),
        (
            "TOLLGATE__LAMBDA__API_BASE_URL",
            receiver.base_url().as_str(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let refused = shared_auth::load_for(shared_auth::Component::Lambda, &vars)
        .expect_err("http:// refused by the settings");
    assert!(
        refused.to_string().contains("lambda.api_base_url"),
        "{refused}"
    );
    // ...and the client refuses it too, should such a URL ever get past them.
    deliver_as_staging(&receiver.base_url(), "request error").await;
    assert!(
        receiver.calls().is_empty(),
        "nothing was sent in clear text"
    );
}

/// An HTTPS listener on loopback with a certificate from a throwaway CA: it counts TLS
/// handshakes that succeed (any request would have to pass one).
async fn https_receiver(
    ca: &testkit::tls::TestCa,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let cert = ca.server_cert(&["127.0.0.1"]).expect("server cert");
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).expect("cert pem")],
        PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key pem"),
    )
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("addr"));
    let handshakes = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if acceptor.accept(tcp).await.is_ok() {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (url, handshakes)
}

#[tokio::test]
async fn an_api_whose_certificate_no_public_root_signs_is_refused() {
    use std::sync::atomic::Ordering;
    let ca = testkit::tls::TestCa::new("not a public root").expect("ca");
    let (url, handshakes) = https_receiver(&ca).await;

    // The receiver works: a client that trusts the throwaway CA completes a handshake.
    let trusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("ca pem")])
        .build()
        .expect("client");
    let _ = trusting.get(format!("{url}/")).send().await;
    assert_eq!(handshakes.load(Ordering::SeqCst), 1, "control handshake");

    // The Lambda trusts only the compiled-in public roots: no handshake, nothing sent.
    deliver_as_staging(&url, "connect error").await;
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        1,
        "the Lambda completed no handshake with the untrusted server"
    );
}

/// Whether the function's AWS clients complete a TLS handshake with an endpoint whose
/// certificate comes from a throwaway CA, given `private_ca` as `lambda.private_ca_pem`.
async fn aws_handshakes_with_private_ca(private_ca: Option<&str>) -> usize {
    use std::sync::atomic::Ordering;
    let ca = testkit::tls::TestCa::new("an endpoint no public root signs").expect("ca");
    let (endpoint, handshakes) = https_receiver(&ca).await;
    let ca_pem = ca.pem();
    let mut extra = vec![("TOLLGATE__AWS__ENDPOINT_URL", endpoint.as_str())];
    if private_ca.is_some() {
        extra.push(("TOLLGATE__LAMBDA__PRIVATE_CA_PEM", ca_pem.as_str()));
    }
    let sdk = lambda_support::sdk_config(&settings("http://127.0.0.1:9", &extra))
        .await
        .expect("the functions' SDK configuration");
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    // The endpoint closes each connection after its handshake: the call fails either way;
    // what counts is whether a handshake was made.
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        sm.get_secret_value().secret_id("tollgate/test/tls").send(),
    )
    .await;
    handshakes.load(Ordering::SeqCst)
}

#[tokio::test]
async fn the_functions_aws_calls_trust_the_compiled_in_roots_and_the_contracts_ca_only() {
    // The SDK's default client reads the system trust store, which does not hold this CA: a
    // handshake with it proves the SDK calls go through the functions' own TLS configuration
    // (lambda_support::sdk_http), and none without the CA proves verification stays on.
    assert!(
        aws_handshakes_with_private_ca(Some("yes")).await > 0,
        "the SDK's calls trust the contract's private CA"
    );
    assert_eq!(
        aws_handshakes_with_private_ca(None).await,
        0,
        "no handshake with an endpoint no trusted root signs"
    );
}

#[tokio::test]
async fn a_hung_secrets_manager_is_given_up_within_the_budget() {
    // Accepts connections and never answers, as a Secrets Manager endpoint that hangs.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", hung.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = hung.accept().await {
            held.push(stream);
        }
    });
    let aws = shared_auth::AwsSettings {
        region: Some("ap-northeast-1".into()),
        endpoint_url: Some(endpoint),
    };
    let s = settings("http://127.0.0.1:9", &[]);
    let receiver = Receiver::start(s.guard.clone(), secrets(SECRET)).await;
    let queues = queues().await;
    let deps = deps_for(
        &receiver.base_url(),
        &queues,
        &[],
        SecretSource::SecretsManager {
            client: secrets_manager(&aws).await,
            secret_id: "tollgate/test/hung".into(),
            rotation_s: 600,
        },
    )
    .await;
    sign_up_is_queued(&deps, &queues, Duration::from_secs(5), "secret").await;
    assert!(receiver.calls().is_empty());
}

#[tokio::test]
async fn an_unreachable_api_is_queued_within_the_trigger_budget() {
    let queues = queues().await;
    let deps = deps_for(
        "http://127.0.0.1:9",
        &queues,
        &[],
        SecretSource::Fixed(SECRET.into()),
    )
    .await;
    sign_up_is_queued(&deps, &queues, Duration::from_secs(5), "connect").await;
}

#[tokio::test]
async fn a_rotated_secret_is_refetched_after_one_403() {
    let old = "old-lambda-secret-0123456789abcdefghijklmnop";
    let new = "whsec_bmV3LWxhbWJkYS1rZXktMDEyMzQ1Njc4OWFiY2RlZg==";
    let (sm, secret_id, receiver, deps) = read_from_secrets_manager("lambda", old).await;
    handle(
        &deps,
        invocation(fixture("sign-up"), Duration::from_secs(5)),
    )
    .await
    .expect("first delivery caches the old secret");

    // Rotate: Secrets Manager gets a new version, and the receiver accepts only it.
    sm.put_secret_value()
        .secret_id(&secret_id)
        .secret_string(new)
        .send()
        .await
        .expect("rotate");
    receiver.accept(secrets(new));
    handle(
        &deps,
        invocation(fixture("sign-up"), Duration::from_secs(5)),
    )
    .await
    .expect("delivered after refetch");
    let calls = receiver.calls();
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [201, 403, 200]);
}

/// A secret `value` in moto's Secrets Manager (named after `label`), a receiver accepting it,
/// and the function's dependencies reading it from there: the client, the secret's id, both.
async fn read_from_secrets_manager(
    label: &str,
    value: &str,
) -> (aws_sdk_secretsmanager::Client, String, Receiver, Deps) {
    let secret_id = format!("tollgate/test/{label}-{}", unique_suffix());
    let aws = testkit::local_aws();
    let sm = secrets_manager(&aws).await;
    sm.create_secret()
        .name(&secret_id)
        .secret_string(value)
        .send()
        .await
        .expect("create secret in moto");
    let s = settings("http://127.0.0.1:9", &[]);
    let receiver = Receiver::start(s.guard.clone(), secrets(value)).await;
    let deps = deps_for(
        &receiver.base_url(),
        &queues().await,
        &[],
        SecretSource::SecretsManager {
            client: secrets_manager(&aws).await,
            secret_id: secret_id.clone(),
            rotation_s: 600,
        },
    )
    .await;
    (sm, secret_id, receiver, deps)
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}

/// `call` verified by both Standard Webhooks reference libraries (Rust and Python) under `key`.
fn reference_libraries_verify(call: &testkit::receiver::Call, key: &str) -> Result<(), String> {
    let mut headers = http::HeaderMap::new();
    for (name, value) in &call.headers {
        headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            value.parse().expect("value"),
        );
    }
    standardwebhooks::Webhook::new(key)
        .expect("key")
        .verify(&call.raw, &headers)
        .map_err(|e| format!("Rust: {e}"))?;
    testkit::reference::verify(key, &call.headers, &call.raw).map_err(|e| format!("Python: {e}"))
}

fn header<'a>(call: &'a testkit::receiver::Call, name: &str) -> &'a str {
    call.headers
        .iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, v)| v.as_str())
}

#[tokio::test]
async fn the_functions_requests_verify_with_the_reference_libraries_and_a_redelivery_keeps_the_id()
{
    let (receiver, deps, queues) = harness(&[]).await;
    // The trigger's every attempt fails: the registration goes to the queue, and its
    // redelivery succeeds.
    receiver.script(&vec![Script::Status(503); 4]);
    let batch = sign_up_is_queued(&deps, &queues, Duration::from_secs(5), "503").await;
    assert_eq!(drain(&deps, &queues, batch).await, (1, 0));
    let calls = receiver.calls();
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        [503, 503, 503, 503, 201]
    );
    let expected = shared_auth::registration_id(
        "ap-northeast-1_EXAMPLE",
        "7d8ca528-4931-4254-9273-ea5ee853f271",
    );
    for (n, call) in calls.iter().enumerate() {
        assert_eq!(header(call, "webhook-id"), expected, "call {n}");
        reference_libraries_verify(call, SECRET).unwrap_or_else(|e| panic!("call {n}: {e}"));
        assert!(
            reference_libraries_verify(call, "whsec_b3RoZXIta2V5LTAxMjM0NTY3ODlhYmNkZWY=").is_err(),
            "call {n} verified under another key"
        );
    }
}

#[tokio::test]
async fn during_a_rotation_the_function_signs_with_the_current_and_the_pending_key() {
    // An environment whose secret predates the Standard Webhooks format, rotating into it.
    let legacy = "legacy-lambda-secret-0123456789abcdefghijkl";
    let pending = testkit::secrets::new_secret().expect("random");
    let secret_id = format!("tollgate/test/lambda-pending-{}", unique_suffix());
    let aws = testkit::local_aws();
    let sm = secrets_manager(&aws).await;
    sm.create_secret()
        .name(&secret_id)
        .secret_string(legacy)
        .send()
        .await
        .expect("create secret in moto");
    sm.put_secret_value()
        .secret_id(&secret_id)
        .secret_string(secrecy::ExposeSecret::expose_secret(&pending))
        .version_stages("AWSPENDING")
        .send()
        .await
        .expect("stage a pending version in moto");
    let s = settings("http://127.0.0.1:9", &[]);
    // A receiver that has learned only the pending key still accepts.
    let pending_only = secrets(secrecy::ExposeSecret::expose_secret(&pending));
    let receiver = Receiver::start(s.guard.clone(), pending_only).await;
    let source = SecretSource::SecretsManager {
        client: secrets_manager(&aws).await,
        secret_id,
        rotation_s: 600,
    };
    let deps = deps_for(&receiver.base_url(), &queues().await, &[], source).await;
    handle(
        &deps,
        invocation(fixture("sign-up"), Duration::from_secs(5)),
    )
    .await
    .expect("delivered");
    let calls = receiver.calls();
    assert_eq!(
        calls.len(),
        1,
        "no 403 and refetch: the first request passed"
    );
    assert_eq!(calls[0].status, 201);
    assert_eq!(header(&calls[0], "webhook-signature").split(' ').count(), 2);
    reference_libraries_verify(&calls[0], secrecy::ExposeSecret::expose_secret(&pending))
        .expect("the pending key's entry verifies with the reference libraries");
}

/// A host clock 10 minutes ahead of the api's (past its `max_skew_s`): the first attempt is
/// refused as stale, the answer's `Date` corrects the clock, the retry registers the user
/// directly, and the next sign-up is signed right the first time.
#[tokio::test]
async fn a_host_clock_ahead_of_the_apis_is_corrected_from_the_refusals_date() {
    let (receiver, deps) = setup(&[]).await;
    receiver.set_clock(-600);
    for _ in 0..2 {
        let event = fixture("sign-up");
        let returned = handle(&deps, invocation(event.clone(), Duration::from_secs(5)))
            .await
            .expect("delivered");
        assert_eq!(returned, event);
    }
    let calls = receiver.calls();
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        [403, 201, 200],
        "refused once as stale, then registered directly, then signed right at once"
    );
    let queue = deps
        .queue
        .as_ref()
        .expect("the harness names a retry queue");
    assert!(
        !queue.sqs.is_built(),
        "nothing was handed to the retry queue"
    );
}

/// A refusal the clock explains is retried with the keys in hand: a host whose clock is off
/// would be refused by Secrets Manager too (SigV4's five minutes), so a refetch there would
/// cost the registration. Here Secrets Manager has lost the secret by then: a refetch fails.
#[tokio::test]
async fn a_refusal_the_clock_explains_is_retried_without_asking_secrets_manager() {
    let (sm, secret_id, receiver, deps) = read_from_secrets_manager("skew", SECRET).await;
    let invoke = || {
        handle(
            &deps,
            invocation(fixture("sign-up"), Duration::from_secs(5)),
        )
    };
    invoke()
        .await
        .expect("the first delivery reads and caches the secret");
    sm.delete_secret()
        .secret_id(&secret_id)
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("delete the secret in moto");
    receiver.set_clock(-600);
    invoke().await.expect("delivered");
    let statuses: Vec<u16> = receiver.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [201, 403, 200], "retried with the cached keys");
    let queue = deps
        .queue
        .as_ref()
        .expect("the harness names a retry queue");
    assert!(
        !queue.sqs.is_built(),
        "nothing was handed to the retry queue"
    );
}
