//! `cargo xtask up`: the whole sign-up flow on this machine, through the real components.
//!
//! moto_server plays AWS (Secrets Manager, Cognito), a throwaway cluster plays RDS, the release
//! `api` binary plays the Fargate task, and the release `post-confirm` binary runs against a
//! local Lambda Runtime API exactly as it runs in Lambda. Loopback plays the ALB: the contract
//! trusts 127.0.0.0/8 as a proxy, so a spoofed `X-Forwarded-For` is judged as in the cloud.

#[path = "../../post-confirm/tests/support/runtime_api.rs"]
mod runtime_api;

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use aws_sdk_cognitoidentityprovider::Client as Cognito;
use aws_sdk_cognitoidentityprovider::types::{AttributeType, AuthFlowType, ExplicitAuthFlowsType};
use aws_sdk_secretsmanager::Client as SecretsManager;
use runtime_api::{Outcome, RuntimeApi};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use shared_auth::GuardContract;

use crate::services::{Moto, Postgres, free_port};
use crate::{INTERRUPTED, aws, cmd, workspace_root};

/// Cognito gives the PostConfirmation trigger 5 s.
const LAMBDA_BUDGET: Duration = Duration::from_secs(5);

pub fn run(once: bool) -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(up(once))
}

/// One line of the result table.
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

#[derive(Default)]
struct Report(Vec<Check>);

impl Report {
    fn record(&mut self, name: &'static str, result: Result<String>) {
        let (ok, detail) = match result {
            Ok(detail) => (true, detail),
            Err(e) => (false, format!("{e:#}")),
        };
        let mark = if ok {
            cmd::paint("32", "✓")
        } else {
            cmd::paint("31", "✗")
        };
        eprintln!("  {mark} {name}: {detail}");
        self.0.push(Check { name, ok, detail });
    }

    fn print_table(&self) {
        let width = self
            .0
            .iter()
            .map(|c| c.name.chars().count())
            .max()
            .unwrap_or(0);
        println!();
        for c in &self.0 {
            let mark = if c.ok {
                cmd::paint("32", "✓")
            } else {
                cmd::paint("31", "✗")
            };
            println!("{mark}  {:<width$}  {}", c.name, c.detail);
        }
    }

    fn failures(&self) -> usize {
        self.0.iter().filter(|c| !c.ok).count()
    }
}

fn step(n: u32, text: &str) {
    eprintln!("\n{} {text}", cmd::paint("1", &format!("[{n}/6]")));
}

async fn up(once: bool) -> Result<()> {
    let root = workspace_root();
    let work = root.join("target").join("tollgate");
    std::fs::create_dir_all(&work)?;

    step(
        1,
        "building the api and post-confirm release binaries (the first build takes a few minutes)",
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    cmd::run(Command::new(cargo).current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "api",
        "--package",
        "post-confirm",
    ]))
    .context("step 1 (build) failed: fix the compile error above")?;
    let bin = root.join("target").join("release");

    step(2, "starting local services on loopback");
    let moto = Moto::start(&work)
        .context("step 2: moto_server (install it with `pip install 'moto[server]'`)")?;
    let (_pg, database_url) = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            eprintln!("· PostgreSQL: using DATABASE_URL from the environment");
            (None, url)
        }
        _ => {
            let pg = Postgres::start().context("step 2: PostgreSQL")?;
            let url = pg.url();
            (Some(pg), url)
        }
    };

    step(
        3,
        "creating the guard secret and a Cognito user pool in moto",
    );
    let mut settings = shared_auth::load_with(&HashMap::from([(
        "TOLLGATE_ENV".to_owned(),
        "local".to_owned(),
    )]))?;
    // Loopback plays the ALB: its X-Forwarded-For entries are believed, as the VPC's are in AWS.
    settings.guard.trusted_proxies = vec!["127.0.0.0/8".parse()?];
    let contract = settings.guard.clone();
    let aws_settings = shared_auth::AwsSettings {
        region: settings.aws.region.clone(),
        endpoint_url: Some(moto.endpoint()),
    };
    let region = aws_settings
        .region
        .clone()
        .unwrap_or_else(|| "ap-northeast-1".into());
    let sdk = aws::sdk_config(&aws_settings).await;
    let secret = aws::new_secret()?;
    put_secret(&SecretsManager::new(&sdk), &contract.secret_id, &secret)
        .await
        .context("step 3: cannot write the guard secret to moto")?;
    eprintln!(
        "· secret `{}` written (value not shown)",
        contract.secret_id
    );
    let cognito = Cognito::new(&sdk);
    let pool = UserPool::create(&cognito, &region, &moto.endpoint())
        .await
        .context("step 3: cannot create the Cognito user pool in moto")?;
    eprintln!("· user pool {} with app client {}", pool.id, pool.client_id);

    step(4, "starting the api");
    let port = if std::net::TcpListener::bind(("127.0.0.1", 8080)).is_ok() {
        8080
    } else {
        free_port()?
    };
    let api_url = format!("http://127.0.0.1:{port}");
    let mut shared_env: Vec<(String, String)> = contract.to_env_vars();
    shared_env.push(("TOLLGATE_ENV".into(), "local".into()));
    shared_env.push(("TOLLGATE__AWS__ENDPOINT_URL".into(), moto.endpoint()));
    let mut api_env = shared_env.clone();
    api_env.extend([
        ("DATABASE_URL".to_owned(), database_url.clone()),
        (
            "TOLLGATE__API__LISTEN".to_owned(),
            format!("127.0.0.1:{port}"),
        ),
        ("TOLLGATE__API__SECRET_SOURCE".to_owned(), "aws".to_owned()),
        ("TOLLGATE__API__JWT_ISSUER".to_owned(), pool.issuer.clone()),
        (
            "TOLLGATE__API__JWT_CLIENT_ID".to_owned(),
            pool.client_id.clone(),
        ),
        ("TOLLGATE__API__JWKS_URL".to_owned(), pool.jwks_url.clone()),
    ]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut api = Process::start("api", &bin.join("api"), &api_env, &work.join("api.log"))?;
    api.wait_ready(&http, &format!("{api_url}/readyz"))
        .await
        .with_context(|| {
            format!(
                "step 4: the api did not become ready; see {}",
                work.join("api.log").display()
            )
        })?;
    eprintln!("· api ready on {api_url}");

    step(
        5,
        "starting post-confirm (the Lambda binary) on a local Lambda Runtime API",
    );
    let runtime = RuntimeApi::start().context("cannot start the local Runtime API")?;
    let mut lambda_env = shared_env.clone();
    lambda_env.extend(runtime.lambda_env("tollgate-local-post-confirm"));
    lambda_env.push(("TOLLGATE__LAMBDA__API_BASE_URL".into(), api_url.clone()));
    let lambda_log = work.join("post-confirm.log");
    let _lambda = Process::start(
        "post-confirm",
        &bin.join("post-confirm"),
        &lambda_env,
        &lambda_log,
    )?;
    if !runtime.wait_for_polls(1, Duration::from_secs(10)) {
        bail!(
            "step 5: post-confirm did not ask for work within 10 s; see {}",
            lambda_log.display()
        );
    }
    let db = sqlx::PgPool::connect(&database_url)
        .await
        .context("cannot connect to PostgreSQL")?;

    step(6, "signing up users and attacking the guarded route");
    let mut report = Report::default();
    let ada = pool
        .sign_up(&cognito, "ada", "ada@example.com")
        .await
        .context("sign-up of the demo user")?;
    let invoke = |event: &Value| {
        let payload = event.to_string();
        let runtime = &runtime;
        async move { tokio::task::block_in_place(|| runtime.invoke(&payload, LAMBDA_BUDGET)) }
    };

    let first = invoke(&ada.event).await;
    let rows = rows_for(&db, &ada.sub, 1).await;
    report.record(
        "Lambda registration accepted",
        both(lambda_status(&first, &lambda_log, &ada.sub, 201), rows),
    );
    let replay = invoke(&ada.event).await;
    let rows = rows_for(&db, &ada.sub, 1).await;
    report.record(
        "Cognito retry replayed",
        both(lambda_status(&replay, &lambda_log, &ada.sub, 200), rows),
    );
    report.record(
        "GET /users/me with the ID token",
        users_me(&http, &api_url, &ada).await,
    );

    let forged = Forger {
        http: &http,
        api_url: &api_url,
        contract: &contract,
        secret: &secret,
    };
    for (name, attack) in [
        ("forged: no signature", Attack::NoSignature),
        ("forged: wrong secret", Attack::WrongSecret),
        ("forged: stale timestamp", Attack::StaleTimestamp),
        ("forged: body altered after signing", Attack::BodyAltered),
        (
            "forged: spoofed X-Forwarded-For",
            Attack::SpoofedForwardedFor,
        ),
        ("forged: path variant /user/", Attack::PathVariant),
    ] {
        report.record(name, forged.attempt(attack, &db).await);
    }

    let bob = pool
        .sign_up(&cognito, "bob", "bob@example.com")
        .await
        .context("sign-up of the second user")?;
    api.stop();
    let lost = invoke(&bob.event).await;
    api = Process::start("api", &bin.join("api"), &api_env, &work.join("api.log"))?;
    api.wait_ready(&http, &format!("{api_url}/readyz"))
        .await
        .context("the api did not restart")?;
    let recovered = match lost {
        Outcome::Error(report) if report.contains(post_confirm::SAFE_FAILURE) => {
            users_me(&http, &api_url, &bob)
                .await
                .map(|d| format!("Lambda failed while the api was down; {d}"))
        }
        other => Err(anyhow::anyhow!(
            "expected the Lambda to fail while the api was down, got {other:?}"
        )),
    };
    report.record(
        "lost registration recovered by /users/me",
        match recovered {
            Ok(detail) => rows_for(&db, &bob.sub, 1).await.map(|_| detail),
            Err(e) => Err(e),
        },
    );

    report.print_table();
    let failures = report.failures();
    if failures > 0 {
        bail!(
            "{failures} check(s) failed; logs: {} and {}",
            work.join("api.log").display(),
            lambda_log.display()
        );
    }
    if once {
        return Ok(());
    }
    let token_file = work.join("ada.id-token");
    std::fs::write(&token_file, &ada.id_token)?;
    println!("\nTollgate is running locally (Ctrl-C stops everything):");
    println!(
        "  api           {api_url}   (logs: {})",
        work.join("api.log").display()
    );
    println!("  moto (AWS)    {}", moto.endpoint());
    println!("  DATABASE_URL  {database_url}");
    println!(
        "  user pool     {} (app client {})",
        pool.id, pool.client_id
    );
    println!(
        "\nTry:  curl -s -H \"Authorization: Bearer $(cat {})\" {api_url}/users/me",
        token_file.display()
    );
    while !INTERRUPTED.load(Ordering::SeqCst) {
        if let Some(status) = api.exited() {
            bail!(
                "the api exited ({status}); see {}",
                work.join("api.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("\nstopping…");
    Ok(())
}

/// Both checks' details, or the first failure.
fn both(a: Result<String>, b: Result<String>) -> Result<String> {
    Ok(format!("{}, {}", a?, b?))
}

async fn put_secret(sm: &SecretsManager, id: &str, secret: &SecretString) -> Result<()> {
    let created = sm
        .create_secret()
        .name(id)
        .secret_string(secret.expose_secret())
        .send()
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_exists_exception()) =>
        {
            sm.put_secret_value()
                .secret_id(id)
                .secret_string(secret.expose_secret())
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(aws::explain(&e)))?;
            Ok(())
        }
        Err(e) => bail!(aws::explain(&e)),
    }
}

/// A child process with its output in a log file; killed when dropped.
struct Process {
    child: Option<Child>,
    name: &'static str,
}

impl Process {
    fn start(
        name: &'static str,
        program: &Path,
        env: &[(String, String)],
        log: &Path,
    ) -> Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot write {}", log.display()))?;
        let mut command = Command::new(program);
        command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        cmd::echo(&command);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        Ok(Self {
            child: Some(child),
            name,
        })
    }

    async fn wait_ready(&mut self, http: &reqwest::Client, url: &str) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Some(status) = self.exited() {
                bail!("{} exited ({status})", self.name);
            }
            if http
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("{} was not ready within 30 s", self.name)
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

struct UserPool {
    id: String,
    client_id: String,
    issuer: String,
    jwks_url: String,
    region: String,
}

/// A confirmed demo user: its PostConfirmation event and an ID token.
struct DemoUser {
    sub: String,
    event: Value,
    id_token: String,
}

const DEMO_PASSWORD: &str = "Local-demo-password-1";

impl UserPool {
    async fn create(cognito: &Cognito, region: &str, endpoint: &str) -> Result<Self> {
        let suffix = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let pool = cognito
            .create_user_pool()
            .pool_name(format!("tollgate-local-{suffix}"))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws::explain(&e)))?;
        let id = pool
            .user_pool()
            .and_then(|p| p.id())
            .context("no pool id")?
            .to_owned();
        let client = cognito
            .create_user_pool_client()
            .user_pool_id(&id)
            .client_name("tollgate-local-app")
            .explicit_auth_flows(ExplicitAuthFlowsType::AllowAdminUserPasswordAuth)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws::explain(&e)))?;
        let client_id = client
            .user_pool_client()
            .and_then(|c| c.client_id())
            .context("no client id")?
            .to_owned();
        Ok(Self {
            issuer: format!("https://cognito-idp.{region}.amazonaws.com/{id}"),
            jwks_url: format!("{endpoint}/{id}/.well-known/jwks.json"),
            region: region.to_owned(),
            id,
            client_id,
        })
    }

    /// Signs up and confirms a user, then builds the PostConfirmation event Cognito would send
    /// from the user's stored attributes (moto never invokes triggers itself).
    async fn sign_up(&self, cognito: &Cognito, username: &str, email: &str) -> Result<DemoUser> {
        let email_attr = AttributeType::builder()
            .name("email")
            .value(email)
            .build()?;
        cognito
            .sign_up()
            .client_id(&self.client_id)
            .username(username)
            .password(DEMO_PASSWORD)
            .user_attributes(email_attr)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws::explain(&e)))?;
        cognito
            .admin_confirm_sign_up()
            .user_pool_id(&self.id)
            .username(username)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws::explain(&e)))?;
        let user = cognito
            .admin_get_user()
            .user_pool_id(&self.id)
            .username(username)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws::explain(&e)))?;
        let mut attributes: serde_json::Map<String, Value> = user
            .user_attributes()
            .iter()
            .filter_map(|a| {
                a.value()
                    .map(|v| (a.name().to_owned(), Value::String(v.to_owned())))
            })
            .collect();
        attributes.insert("cognito:user_status".into(), json!("CONFIRMED"));
        let sub = attributes
            .get("sub")
            .and_then(Value::as_str)
            .context("the user has no sub")?
            .to_owned();
        let auth = cognito
            .admin_initiate_auth()
            .user_pool_id(&self.id)
            .client_id(&self.client_id)
            .auth_flow(AuthFlowType::AdminUserPasswordAuth)
            .auth_parameters("USERNAME", username)
            .auth_parameters("PASSWORD", DEMO_PASSWORD)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws::explain(&e)))?;
        let id_token = auth
            .authentication_result()
            .and_then(|r| r.id_token())
            .context("no ID token")?
            .to_owned();
        let event = json!({
            "version": "1",
            "region": self.region,
            "userPoolId": self.id,
            "userName": username,
            "callerContext": {"awsSdkVersion": "aws-sdk-unknown-unknown", "clientId": self.client_id},
            "triggerSource": "PostConfirmation_ConfirmSignUp",
            "request": {"userAttributes": attributes},
            "response": {}
        });
        Ok(DemoUser {
            sub,
            event,
            id_token,
        })
    }
}

/// Checks the Lambda's outcome and the status the API gave it (from the Lambda's own log).
fn lambda_status(outcome: &Outcome, log: &Path, sub: &str, expected: u16) -> Result<String> {
    match outcome {
        Outcome::Response(_) => {}
        other => bail!("the Lambda did not succeed: {other:?}"),
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let status = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "user registered" && v["sub"] == sub)
        .filter_map(|v| v["status"].as_u64())
        .next_back();
    match status {
        Some(s) if s == u64::from(expected) => Ok(format!("API answered {s}")),
        Some(s) => bail!("API answered {s}, expected {expected}"),
        None => bail!("no registration in {}", log.display()),
    }
}

async fn rows_for(db: &sqlx::PgPool, sub: &str, expected: i64) -> Result<String> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE cognito_sub = $1::uuid")
        .bind(sub)
        .fetch_one(db)
        .await?;
    if n == expected {
        Ok(format!("{n} row in PostgreSQL"))
    } else {
        bail!("{n} rows in PostgreSQL for {sub}, expected {expected}")
    }
}

async fn users_me(http: &reqwest::Client, api_url: &str, user: &DemoUser) -> Result<String> {
    let response = http
        .get(format!("{api_url}/users/me"))
        .bearer_auth(&user.id_token)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.as_u16() == 200 && body["sub"] == user.sub.as_str() {
        Ok(format!(
            "200, user {}",
            body["username"].as_str().unwrap_or("?")
        ))
    } else {
        bail!("{status}: {body}")
    }
}

#[derive(Clone, Copy)]
enum Attack {
    NoSignature,
    WrongSecret,
    StaleTimestamp,
    BodyAltered,
    SpoofedForwardedFor,
    PathVariant,
}

struct Forger<'a> {
    http: &'a reqwest::Client,
    api_url: &'a str,
    contract: &'a GuardContract,
    secret: &'a SecretString,
}

impl Forger<'_> {
    /// Sends one forged registration for a new user and expects it refused with nothing stored.
    async fn attempt(&self, attack: Attack, db: &sqlx::PgPool) -> Result<String> {
        let sub = uuid::Uuid::new_v4().to_string();
        let body = json!({"sub": sub, "email": "mallory@example.com", "email_verified": true, "username": "mallory"}).to_string();
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let path = match attack {
            Attack::PathVariant => format!("{}/", self.contract.path),
            _ => self.contract.path.clone(),
        };
        let (secret, ts) = match attack {
            Attack::WrongSecret => (aws::new_secret()?, now),
            Attack::StaleTimestamp => (self.secret.clone(), now - 2 * self.contract.max_skew_s),
            _ => (self.secret.clone(), now),
        };
        let mut request = self
            .http
            .post(format!("{}{path}", self.api_url))
            .header("content-type", "application/json");
        if !matches!(attack, Attack::NoSignature) {
            for (name, value) in self
                .contract
                .credentials(&secret, &path, body.as_bytes(), ts)
                .iter()
            {
                request = request.header(name, value);
            }
        }
        let sent = match attack {
            Attack::BodyAltered => body.replace("mallory@example.com", "mallory@evil.example"),
            _ => body,
        };
        if let Attack::SpoofedForwardedFor = attack {
            // Claims to come from loopback (allowed); the "ALB" appended the real, outside address.
            request = request.header("x-forwarded-for", "127.0.0.1, 198.51.100.7");
        }
        let status = request.body(sent).send().await?.status().as_u16();
        let expected = if matches!(attack, Attack::PathVariant) {
            404
        } else {
            403
        };
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM users WHERE cognito_sub = $1::uuid")
                .bind(&sub)
                .fetch_one(db)
                .await?;
        if status != expected || stored != 0 {
            bail!("answered {status} and stored {stored} row(s); expected {expected} and none");
        }
        Ok(if expected == 404 {
            "404, never reaches the handler".into()
        } else {
            "403, nothing stored".into()
        })
    }
}
