//! The product's claim with real packets, as a list of checks: the real sign-up function, in
//! each AZ's private subnet, registers a user through the NAT and the appending proxy; nothing
//! else on the internet can, whatever it writes; and nothing reaches the api but through the
//! proxy. `crates/post-confirm/tests/deployed_network.rs` fails on any ✗;
//! `cargo xtask up --network` prints them.
//!
//! The contract is rendered from the topology, as `deploy` renders it from Terraform's
//! outputs; no address is written into a header except as a forgery. The checks speak from
//! the internet (their thread enters that namespace): the attacker, and the operator who puts
//! the secret in AWS (moto, on the internet too).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use secrecy::SecretString;

use super::{Nats, Place, World};
use crate::netns;
use crate::process::Process;
use crate::runtime_api::{Outcome, RuntimeApi};
use crate::services::Postgres;

/// A third public address, allowed by no one.
pub const STRANGER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 12);

/// One line of the claim: what was tried, with which addresses, and whether it held.
#[derive(Debug, Clone)]
pub struct Check {
    pub ok: bool,
    pub line: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}  {}", if self.ok { "✓" } else { "✗" }, self.line)
    }
}

fn check(ok: bool, line: String) -> Check {
    Check { ok, line }
}

/// Fields drop in order: the api, then PostgreSQL, then the namespaces they run in.
struct Deployed {
    _api: Process,
    pg: Postgres,
    secret: SecretString,
    contract: shared_auth::GuardContract,
    endpoint: String,
    dir: PathBuf,
    http: reqwest::Client,
    world: World,
}

/// Builds the network (a NAT address per AZ) under `dir`, runs the `api` and `function`
/// binaries in it and returns every check. An error is a set-up failure; a claim that does
/// not hold is a check with `ok == false`. Runs on a thread of its own (which enters the
/// internet's namespace), so the caller's thread stays where it is.
pub fn run(api: &Path, function: &Path, dir: &Path) -> Result<Vec<Check>> {
    let (api, function, dir) = (api.to_owned(), function.to_owned(), dir.to_owned());
    std::thread::spawn(move || run_here(&api, &function, &dir))
        .join()
        .map_err(|_| anyhow::anyhow!("the claim's thread panicked"))?
}

fn run_here(api: &Path, function: &Path, dir: &Path) -> Result<Vec<Check>> {
    let mut world = World::build_with(dir, Nats::PerAz)?;
    let endpoint = world.start_aws()?;
    let pg = Postgres::start_in_namespace(&world.ns(Place::App), &netns::APP.to_string())
        .context("PostgreSQL in the app subnet")?;
    world.enter(Place::Internet)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut deployed = deploy(world, pg, endpoint, api, dir).await?;
        let functions = start_functions(&deployed, function).await?;
        let mut checks = Vec::new();
        for (runtime, nat) in &functions.runtimes {
            checks.push(registers_through_the_nat(&deployed, runtime, *nat)?);
        }
        checks.push(from_the_internet(&deployed, &deployed.http, &[], netns::ATTACKER).await?);
        checks.extend(forwarded_for_forgeries(&deployed).await?);
        checks.push(a_third_address(&mut deployed).await?);
        checks.extend(around_the_proxy(&deployed)?);
        drop(functions);
        Ok(checks)
    })
}

/// The guard secret in moto, PostgreSQL, the api in the app subnet behind the proxy.
async fn deploy(
    mut world: World,
    pg: Postgres,
    endpoint: String,
    api: &Path,
    dir: &Path,
) -> Result<Deployed> {
    let sm = shared_auth::aws::secrets_manager(&aws(&endpoint)).await;
    let secret = crate::secrets::new_secret()?;
    crate::secrets::put_secret(&sm, "tollgate/network/registration", &secret).await?;
    let env = contract_env(&world, &endpoint);
    let vars = env.iter().cloned().collect();
    let contract = shared_auth::load_for(shared_auth::Component::Deploy, &vars)?.guard;
    let api_log = dir.join("api.log");
    let mut command = world.command(Place::App, api);
    command.envs(env).envs([
        ("TOLLGATE__API__LISTEN", "0.0.0.0:8080".to_owned()),
        ("TOLLGATE__API__SECRET_SOURCE", "aws".to_owned()),
        ("DATABASE_URL", pg.url()),
        ("RUST_LOG", "info,api::guard=debug".to_owned()),
    ]);
    let process = Process::spawn("api", command, &api_log)?;
    world.start_proxy(8080)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let ready = format!("http://{}/readyz", netns::ALB_PUBLIC);
    for attempt in 0.. {
        if http
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        if attempt == 60 {
            bail!(
                "the api is not ready behind the proxy; see {}",
                api_log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(Deployed {
        _api: process,
        pg,
        secret,
        contract,
        endpoint,
        dir: dir.to_owned(),
        http,
        world,
    })
}

fn aws(endpoint: &str) -> shared_auth::AwsSettings {
    shared_auth::AwsSettings {
        region: Some("ap-northeast-1".into()),
        endpoint_url: Some(endpoint.to_owned()),
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
async fn start_functions(deployed: &Deployed, binary: &Path) -> Result<Functions> {
    let sdk = crate::sdk_config(&aws(&deployed.endpoint)).await;
    let queues = crate::queues::Queues::create(&sdk, "network", 3).await?;
    let mut runtimes = Vec::new();
    let mut processes = Vec::new();
    for (place, nat) in [
        (Place::Lambda, netns::NAT_PUBLIC),
        (Place::LambdaB, netns::NAT_PUBLIC_B),
    ] {
        let runtime = deployed.world.inside(place, RuntimeApi::start)??;
        let mut command = deployed.world.command(place, binary);
        command
            .envs(contract_env(&deployed.world, &deployed.endpoint))
            .envs(queues.lambda_env())
            .envs(runtime.lambda_env("tollgate-network-post-confirm"))
            .env(
                "TOLLGATE__LAMBDA__API_BASE_URL",
                format!("http://{}", netns::ALB_PUBLIC),
            );
        let log = deployed.dir.join(format!("post-confirm-{nat}.log"));
        processes.push(Process::spawn("post-confirm", command, &log)?);
        if !runtime.wait_for_polls(1, Duration::from_secs(15)) {
            bail!("the function did not ask for work; see {}", log.display());
        }
        runtimes.push((runtime, nat));
    }
    Ok(Functions {
        runtimes,
        _processes: processes,
    })
}

/// The users rows of `sub`, read from inside the app subnet (the only place PostgreSQL is
/// reachable from).
fn rows_for(deployed: &Deployed, sub: &str) -> Result<i64> {
    let (url, sub) = (deployed.pg.url(), sub.to_owned());
    deployed.world.inside(Place::App, move || -> Result<i64> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            use sqlx::Connection;
            let mut db = sqlx::PgConnection::connect(&url).await?;
            Ok(
                sqlx::query_scalar("SELECT count(*) FROM users WHERE cognito_sub = $1::uuid")
                    .bind(sub)
                    .fetch_one(&mut db)
                    .await?,
            )
        })
    })?
}

/// A confirmed sign-up through the real function: stored, and the api saw the NAT's public
/// address as the caller.
fn registers_through_the_nat(
    deployed: &Deployed,
    runtime: &RuntimeApi,
    nat: Ipv4Addr,
) -> Result<Check> {
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
    let rows = rows_for(deployed, &sub)?;
    let log = std::fs::read_to_string(deployed.dir.join("api.log")).unwrap_or_default();
    let seen = format!("client={nat}");
    let caller = log
        .lines()
        .any(|l| l.contains("registration caller verified") && l.contains(&seen));
    Ok(check(
        matches!(outcome, Outcome::Response(_)) && rows == 1 && caller,
        format!(
            "function in its subnet → NAT {nat} → proxy {} → api: {rows} row, the api's caller {}",
            netns::ALB_PUBLIC,
            if caller {
                nat.to_string()
            } else {
                "NOT the NAT".to_owned()
            }
        ),
    ))
}

/// A registration signed with the valid secret, sent by `client` with `headers` added: its
/// status and sub.
async fn signed_post(
    deployed: &Deployed,
    client: &reqwest::Client,
    headers: &[(&str, &str)],
) -> Result<(u16, String)> {
    let sub = uuid::Uuid::new_v4().to_string();
    let body = format!(
        r#"{{"sub":"{sub}","email":"{sub}@example.com","email_verified":true,"username":"{sub}"}}"#
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let path = &deployed.contract.path;
    let mut request = client
        .post(format!("http://{}{path}", netns::ALB_PUBLIC))
        .header("content-type", "application/json")
        .body(body.clone());
    let credentials = deployed
        .contract
        .credentials(&deployed.secret, path, body.as_bytes(), now);
    for (name, value) in credentials.iter() {
        request = request.header(name, value);
    }
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        map.append(
            reqwest::header::HeaderName::from_bytes(name.as_bytes())?,
            reqwest::header::HeaderValue::from_str(value)?,
        );
    }
    let status = request.headers(map).send().await?.status().as_u16();
    Ok((status, sub))
}

/// The valid secret, signed fresh, from an internet address with `headers`: refused, nothing
/// stored.
async fn from_the_internet(
    deployed: &Deployed,
    client: &reqwest::Client,
    headers: &[(&str, &str)],
    from: Ipv4Addr,
) -> Result<Check> {
    let (status, sub) = signed_post(deployed, client, headers).await?;
    let rows = rows_for(deployed, &sub)?;
    let what = if headers.is_empty() {
        "valid signature".to_owned()
    } else {
        format!("valid signature + {headers:?}")
    };
    Ok(check(
        status == 403 && rows == 0,
        format!("internet {from}, {what} → proxy → api: {status}, {rows} row"),
    ))
}

/// Every `X-Forwarded-For` forgery through the real proxy.
async fn forwarded_for_forgeries(deployed: &Deployed) -> Result<Vec<Check>> {
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
        vec![("X_Forwarded_For", nat.clone())],
    ];
    let mut checks = Vec::new();
    for forgery in &forgeries {
        let headers: Vec<(&str, &str)> = forgery.iter().map(|(k, v)| (*k, v.as_str())).collect();
        checks.push(from_the_internet(deployed, &deployed.http, &headers, netns::ATTACKER).await?);
    }
    Ok(checks)
}

/// A public address that is neither NAT's (an Elastic IP nobody allowed).
async fn a_third_address(deployed: &mut Deployed) -> Result<Check> {
    let add = format!("{STRANGER}/24");
    crate::cmd::run(
        deployed
            .world
            .command(Place::Internet, "ip")
            .args(["addr", "add", &add, "dev", "br0"]),
    )?;
    let client = reqwest::Client::builder()
        .local_address(IpAddr::V4(STRANGER))
        .timeout(Duration::from_secs(5))
        .build()?;
    from_the_internet(deployed, &client, &[], STRANGER).await
}

/// Whether a TCP connection from `place` to `to` opens (2 s at most).
fn connects(world: &World, from: Place, to: SocketAddr) -> Result<bool> {
    let script = "import socket, sys\n\
        socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)\n";
    Ok(world
        .command(from, "python3")
        .args(["-c", script, &to.ip().to_string(), &to.port().to_string()])
        .output()
        .context("python3 runs")?
        .status
        .success())
}

/// The api's addresses from the internet (even routed at the NAT) and from the function's
/// subnet, and a listener in a private subnet from the internet: no connection.
fn around_the_proxy(deployed: &Deployed) -> Result<Vec<Check>> {
    let world = &deployed.world;
    let app: SocketAddr = (netns::APP, 8080).into();
    let egress: SocketAddr = (netns::APP_EGRESS, 8080).into();
    let mut checks = vec![check(
        !connects(world, Place::Internet, app)?,
        format!("internet → api at {app}, around the proxy: no route"),
    )];
    let via = netns::NAT_PUBLIC.to_string();
    crate::cmd::run(world.command(Place::Internet, "ip").args([
        "route",
        "add",
        "10.20.0.0/16",
        "via",
        &via,
    ]))?;
    checks.push(check(
        !connects(world, Place::Internet, egress)?,
        format!("internet, routed at the NAT → api at {egress}: no connection"),
    ));
    // A listener in the function's subnet: its subnet reaches it, the internet (routed at the
    // NAT) does not — a NAT gateway forwards no connection opened from outside.
    let listener: SocketAddr = (netns::LAMBDA, 9000).into();
    let mut serve = world.command(Place::Lambda, "python3");
    serve.args([
        "-m",
        "http.server",
        "--bind",
        &netns::LAMBDA.to_string(),
        "9000",
    ]);
    let log = deployed.dir.join("listener.log");
    let _listener = Process::spawn("a listener in the private subnet", serve, &log)?;
    world.wait_listening(Place::Lambda, listener)?;
    let inside = connects(world, Place::Lambda, listener)?;
    checks.push(check(
        inside && !connects(world, Place::Internet, listener)?,
        format!("internet, routed at the NAT → {listener} (open to its own subnet: {inside}): no connection"),
    ));
    checks.push(check(
        !connects(world, Place::Lambda, egress)?,
        format!("function's subnet → api at {egress}: dropped (its security group admits the proxy only)"),
    ));
    Ok(checks)
}
