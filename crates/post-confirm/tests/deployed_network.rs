//! The product's claim with real packets (`testkit::netns`): the real sign-up function, in a
//! private subnet, registers a user through a real NAT and a real appending proxy; nothing
//! else on the internet can, whatever it writes, and nothing reaches the api but through the
//! proxy. The contract is rendered from the topology, as `deploy` renders it from Terraform's
//! outputs: no address in this file is written into a header by hand except as a forgery.
//!
//! The test itself speaks from the internet (its thread enters that namespace): it is the
//! attacker, and the operator who puts the secret in AWS (moto, on the internet too).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use secrecy::SecretString;
use testkit::netns::{self, Nats, Place, World};
use testkit::process::Process;
use testkit::runtime_api::{Outcome, RuntimeApi};
use testkit::services::Postgres;

/// A third public address, allowed by no one.
const STRANGER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 12);

/// Fields drop in order: the api, then PostgreSQL, then the namespaces they run in.
struct Deployed {
    _api: Process,
    pg: Postgres,
    secret: SecretString,
    contract: shared_auth::GuardContract,
    api_log: std::path::PathBuf,
    http: reqwest::Client,
    world: World,
}

#[test]
fn the_claim_holds_in_the_network_as_deployed() {
    let dir = testkit::stack::work_dir("network").expect("a work folder");
    let api = testkit::stack::built_binary("api").expect("the api builds");
    let function = testkit::stack::built_binary("post-confirm").expect("post-confirm builds");
    let mut world = World::build_with(&dir, Nats::PerAz).expect("the deployed network");
    let endpoint = world.start_aws().expect("moto on the internet");
    let pg = Postgres::start_in_namespace(&world.ns(Place::App), &netns::APP.to_string())
        .expect("PostgreSQL in the app subnet");
    world
        .enter(Place::Internet)
        .expect("the test on the internet");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let mut deployed = deploy(world, pg, &endpoint, &api, &dir).await;
        let mut report = Vec::new();
        let functions = start_functions(&deployed, &endpoint, &function, &dir).await;
        for (runtime, nat) in &functions.runtimes {
            report.push(registers_through_the_nat(&deployed, runtime, *nat));
        }
        report.extend(replays_from_the_internet_are_refused(&deployed).await);
        report.extend(forwarded_for_forgeries_are_refused(&deployed).await);
        report.push(a_third_address_is_refused(&mut deployed).await);
        report.extend(nothing_reaches_the_api_but_through_the_proxy(&deployed));
        println!("{}", report.join("\n"));
        drop(functions);
    });
}

/// moto's guard secret and queues, PostgreSQL, the api in the app subnet behind the proxy.
async fn deploy(
    mut world: World,
    pg: Postgres,
    endpoint: &str,
    api: &std::path::Path,
    dir: &std::path::Path,
) -> Deployed {
    let aws = shared_auth::AwsSettings {
        region: Some("ap-northeast-1".into()),
        endpoint_url: Some(endpoint.to_owned()),
    };
    let sm = shared_auth::aws::secrets_manager(&aws).await;
    let secret = testkit::secrets::new_secret().expect("a secret");
    testkit::secrets::put_secret(&sm, "tollgate/network/registration", &secret)
        .await
        .expect("the secret in moto");
    let env = contract_env(&world, endpoint);
    let vars = env.iter().cloned().collect();
    let contract = shared_auth::load_for(shared_auth::Component::Deploy, &vars)
        .expect("the contract")
        .guard;
    let api_log = dir.join("api.log");
    let mut command = world.command(Place::App, api);
    command.envs(env).envs([
        ("TOLLGATE__API__LISTEN", "0.0.0.0:8080".to_owned()),
        ("TOLLGATE__API__SECRET_SOURCE", "aws".to_owned()),
        ("DATABASE_URL", pg.url()),
        ("RUST_LOG", "info,api::guard=debug".to_owned()),
    ]);
    let process = Process::spawn("api", command, &api_log).expect("the api starts");
    world.start_proxy(8080).expect("the load balancer");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client");
    let ready = format!("http://{}/readyz", netns::ALB_PUBLIC);
    let mut up = false;
    for _ in 0..60 {
        if http
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        up,
        "the api is not ready behind the proxy; see {}",
        api_log.display()
    );
    Deployed {
        _api: process,
        pg,
        secret,
        contract,
        api_log,
        http,
        world,
    }
}

/// The contract both sides read, the allowlist and trusted proxies from the topology.
fn contract_env(world: &World, endpoint: &str) -> Vec<(String, String)> {
    [
        ("TOLLGATE_ENV", "local".to_owned()),
        (
            "TOLLGATE__GUARD__SECRET_ID",
            "tollgate/network/registration".to_owned(),
        ),
        ("TOLLGATE__GUARD__ALLOWED_CIDRS", world.allowed_cidrs()),
        ("TOLLGATE__GUARD__TRUSTED_PROXIES", world.trusted_proxies()),
        ("TOLLGATE__AWS__ENDPOINT_URL", endpoint.to_owned()),
        ("TOLLGATE__AWS__REGION", "ap-northeast-1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

struct Functions {
    runtimes: Vec<(RuntimeApi, Ipv4Addr)>,
    _processes: Vec<Process>,
}

/// The real function in each AZ's private subnet, under a Runtime API inside that subnet.
async fn start_functions(
    deployed: &Deployed,
    endpoint: &str,
    binary: &std::path::Path,
    dir: &std::path::Path,
) -> Functions {
    let aws = shared_auth::AwsSettings {
        region: Some("ap-northeast-1".into()),
        endpoint_url: Some(endpoint.to_owned()),
    };
    let sdk = testkit::sdk_config(&aws).await;
    let queues = testkit::queues::Queues::create(&sdk, "network", 3)
        .await
        .expect("queues in moto");
    let mut runtimes = Vec::new();
    let mut processes = Vec::new();
    for (place, nat) in [
        (Place::Lambda, netns::NAT_PUBLIC),
        (Place::LambdaB, netns::NAT_PUBLIC_B),
    ] {
        let runtime = deployed
            .world
            .inside(place, RuntimeApi::start)
            .expect("into the subnet")
            .expect("a Runtime API");
        let mut command = deployed.world.command(place, binary);
        command
            .envs(contract_env(&deployed.world, endpoint))
            .envs(queues.lambda_env())
            .envs(runtime.lambda_env("tollgate-network-post-confirm"))
            .env(
                "TOLLGATE__LAMBDA__API_BASE_URL",
                format!("http://{}", netns::ALB_PUBLIC),
            );
        let log = dir.join(format!("post-confirm-{nat}.log"));
        processes.push(Process::spawn("post-confirm", command, &log).expect("the function"));
        assert!(
            runtime.wait_for_polls(1, Duration::from_secs(15)),
            "the function did not ask for work; see {}",
            log.display()
        );
        runtimes.push((runtime, nat));
    }
    Functions {
        runtimes,
        _processes: processes,
    }
}

/// The users rows of `sub`, read from inside the app subnet (the only place PostgreSQL is
/// reachable from).
fn rows_for(deployed: &Deployed, sub: &str) -> i64 {
    let (url, sub) = (deployed.pg.url(), sub.to_owned());
    deployed
        .world
        .inside(Place::App, move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                use sqlx::Connection;
                let mut db = sqlx::PgConnection::connect(&url).await.expect("PostgreSQL");
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM users WHERE cognito_sub = $1::uuid",
                )
                .bind(sub)
                .fetch_one(&mut db)
                .await
                .expect("a count")
            })
        })
        .expect("into the app subnet")
}

/// A confirmed sign-up through the real function: 201 at the api, one row, and the api saw
/// the NAT's public address as the client.
fn registers_through_the_nat(deployed: &Deployed, runtime: &RuntimeApi, nat: Ipv4Addr) -> String {
    let sub = uuid::Uuid::new_v4().to_string();
    let event = serde_json::json!({
        "version": "1", "region": "ap-northeast-1", "userPoolId": "ap-northeast-1_network",
        "userName": sub, "triggerSource": "PostConfirmation_ConfirmSignUp",
        "callerContext": {"awsSdkVersion": "aws-sdk-unknown-unknown", "clientId": "network"},
        "request": {"userAttributes": {"sub": sub, "email": format!("{sub}@example.com"),
            "email_verified": "true", "cognito:user_status": "CONFIRMED"}},
        "response": {}
    });
    let outcome = runtime.invoke(&event.to_string(), Duration::from_secs(5));
    assert!(
        matches!(&outcome, Outcome::Response(_)),
        "the trigger failed: {outcome:?}"
    );
    assert_eq!(rows_for(deployed, &sub), 1, "the user is stored");
    let log = std::fs::read_to_string(&deployed.api_log).unwrap_or_default();
    let seen = format!("client={nat}");
    assert!(
        log.lines()
            .any(|l| l.contains("registration caller verified") && l.contains(&seen)),
        "the api did not see the NAT's address {nat} as the caller:\n{log}"
    );
    format!("✓ function in its subnet → NAT {nat} → proxy → api: stored, caller {nat}")
}

/// A registration signed with the valid secret, from the internet, with `headers` added.
async fn signed_post(
    deployed: &Deployed,
    client: &reqwest::Client,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let sub = uuid::Uuid::new_v4().to_string();
    let body = format!(
        r#"{{"sub":"{sub}","email":"{sub}@example.com","email_verified":true,"username":"{sub}"}}"#
    );
    let now = lambda_support_now();
    let mut request = client
        .post(format!(
            "http://{}{}",
            netns::ALB_PUBLIC,
            deployed.contract.path
        ))
        .header("content-type", "application/json")
        .body(body.clone());
    for (name, value) in deployed
        .contract
        .credentials(
            &deployed.secret,
            &deployed.contract.path,
            body.as_bytes(),
            now,
        )
        .iter()
    {
        request = request.header(name, value);
    }
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        map.append(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).expect("a name"),
            reqwest::header::HeaderValue::from_str(value).expect("a value"),
        );
    }
    let status = request
        .headers(map)
        .send()
        .await
        .expect("the ALB answers")
        .status()
        .as_u16();
    (status, sub)
}

fn lambda_support_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The valid secret, signed fresh, sent from the internet's own address: 403, nothing stored.
async fn replays_from_the_internet_are_refused(deployed: &Deployed) -> Vec<String> {
    let (status, sub) = signed_post(deployed, &deployed.http, &[]).await;
    assert_eq!(status, 403, "a validly signed request from the internet");
    assert_eq!(rows_for(deployed, &sub), 0);
    vec![format!(
        "✓ valid signature from the internet ({}) → proxy → api: 403, nothing stored",
        netns::ATTACKER
    )]
}

/// Every `X-Forwarded-For` forgery through the real proxy: 403, nothing stored.
async fn forwarded_for_forgeries_are_refused(deployed: &Deployed) -> Vec<String> {
    let nat = netns::NAT_PUBLIC.to_string();
    let alb = netns::ALB_VPC.to_string();
    let forgeries: Vec<Vec<(&str, String)>> = vec![
        vec![("X-Forwarded-For", nat.clone())],
        vec![("X-Forwarded-For", format!("{nat}, {alb}"))],
        vec![("X-Forwarded-For", alb.clone())],
        vec![
            ("x-forwarded-for", nat.clone()),
            ("X-Forwarded-For", nat.clone()),
        ],
        vec![("X-Forwarded-For", format!("  {nat}  ,{nat} "))],
        vec![("X-Forwarded-For", format!("::ffff:{nat}"))],
        vec![("X-Forwarded-For", format!("[::ffff:{nat}]:443"))],
        vec![("X-Forwarded-For", format!("{nat}:443"))],
        vec![
            ("Forwarded", format!("for={nat}")),
            ("X-Real-IP", nat.clone()),
        ],
    ];
    let mut lines = Vec::new();
    for forgery in forgeries {
        let headers: Vec<(&str, &str)> = forgery.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, sub) = signed_post(deployed, &deployed.http, &headers).await;
        assert_eq!(status, 403, "{headers:?} was let through");
        assert_eq!(rows_for(deployed, &sub), 0, "{headers:?} stored a row");
        lines.push(format!(
            "✓ forged {headers:?} from the internet: 403, nothing stored"
        ));
    }
    lines
}

/// A public address that is neither NAT's (an Elastic IP nobody allowed): 403.
async fn a_third_address_is_refused(deployed: &mut Deployed) -> String {
    let add = format!("{STRANGER}/24");
    testkit::cmd::run(
        deployed
            .world
            .command(Place::Internet, "ip")
            .args(["addr", "add", &add, "dev", "br0"]),
    )
    .expect("a third address");
    let client = reqwest::Client::builder()
        .local_address(IpAddr::V4(STRANGER))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client");
    let (status, sub) = signed_post(deployed, &client, &[]).await;
    assert_eq!(status, 403, "a third address with the valid secret");
    assert_eq!(rows_for(deployed, &sub), 0);
    format!("✓ a third public address ({STRANGER}), valid signature: 403, nothing stored")
}

/// The api's own addresses from the internet (even routed at the NAT) and from the function's
/// subnet: no connection.
fn nothing_reaches_the_api_but_through_the_proxy(deployed: &Deployed) -> Vec<String> {
    let connects = |from: Place, to: SocketAddr| {
        let script = "import socket, sys\n\
            s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)\n";
        deployed
            .world
            .command(from, "python3")
            .args(["-c", script, &to.ip().to_string(), &to.port().to_string()])
            .output()
            .expect("python3 runs")
            .status
            .success()
    };
    let app: SocketAddr = (netns::APP, 8080).into();
    let egress: SocketAddr = (netns::APP_EGRESS, 8080).into();
    let mut lines = Vec::new();
    assert!(
        !connects(Place::Internet, app),
        "the internet reached the api directly"
    );
    lines.push(format!("✓ internet → {app}: no route"));
    let route = format!("{}", netns::NAT_PUBLIC);
    testkit::cmd::run(deployed.world.command(Place::Internet, "ip").args([
        "route",
        "add",
        "10.20.0.0/16",
        "via",
        &route,
    ]))
    .expect("a route at the NAT");
    assert!(
        !connects(Place::Internet, egress),
        "the internet reached the api's own address through the NAT"
    );
    lines.push(format!(
        "✓ internet, routed at the NAT → {egress}: no connection"
    ));
    // Something listening in the function's subnet: its own subnet reaches it, the internet
    // (routed at the NAT) does not — a NAT gateway forwards no connection opened from outside.
    let listener: SocketAddr = (netns::LAMBDA, 9000).into();
    let mut serve = deployed.world.command(Place::Lambda, "python3");
    serve.args([
        "-m",
        "http.server",
        "--bind",
        &netns::LAMBDA.to_string(),
        "9000",
    ]);
    let log = deployed.api_log.with_file_name("listener.log");
    let _listener =
        Process::spawn("a listener in the private subnet", serve, &log).expect("python3 serves");
    deployed
        .world
        .wait_listening(Place::Lambda, listener)
        .expect("the listener listens");
    assert!(
        connects(Place::Lambda, listener),
        "the positive control failed"
    );
    assert!(
        !connects(Place::Internet, listener),
        "the NAT let a connection from the internet into the private subnet"
    );
    lines.push(format!(
        "✓ internet, routed at the NAT → {listener} (listening, reachable from its subnet): no connection"
    ));
    assert!(
        !connects(Place::Lambda, egress),
        "the function's subnet reached the api directly"
    );
    lines.push(format!(
        "✓ function's subnet → {egress}: dropped (the api's security group admits the proxy only)"
    ));
    lines
}
