//! `cargo xtask up`: the whole sign-up flow on this machine, through the real components.
//!
//! moto_server plays AWS (Secrets Manager, Cognito), a throwaway cluster plays RDS, the `api`
//! binary plays the Fargate task, and the `post-confirm` binary runs against a local Lambda
//! Runtime API exactly as it runs in Lambda. Both are dev-profile builds, the ones the tests
//! build too: a first `up` compiles no second, LTO'd copy of the dependencies (the deployed
//! artifacts keep their release profiles). Loopback plays the ALB: the contract
//! trusts 127.0.0.0/8 as a proxy, so a spoofed `X-Forwarded-For` is judged as in the cloud.
//!
//! `--no-lambda` stops after the api: moto, PostgreSQL and the api stay up, and
//! `target/tollgate/post-confirm.env` holds what `cargo lambda watch` needs to run the Lambda
//! against them.

mod attacks;
#[cfg(feature = "cloud")]
mod network;

#[cfg(feature = "cloud")]
pub use network::faults as fault_matrix;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::flags::Scope;
use aws_sdk_secretsmanager::Client as SecretsManager;
use opskit::cmd;
use opskit::process::Process;
use opskit::runtime_api::{Outcome, RuntimeApi};
use secrecy::SecretString;
use serde_json::Value;
use shared_auth::{Component, GuardContract};
use testkit::cognito::{PoolUser, UserPool};
use testkit::queues::Queues;
use testkit::services::{Moto, Postgres, free_port};

use crate::flags;
use crate::support::context::{dev_build, interrupted, work_dir};
use crate::support::report::Report;
use attacks::{Attack, Forger};

/// The login the api serves as (a member of `tollgate_app`), as in AWS.
pub(crate) const DB_LOGIN: &str = "tollgate_api";
/// Cognito gives the PostConfirmation trigger 5 s.
const LAMBDA_BUDGET: Duration = Duration::from_secs(5);

impl flags::Up {
    pub fn run(self) -> Result<()> {
        let scope = if self.network { Scope::Test } else { Scope::Up };
        crate::tasks::setup::ensure(scope)?;
        if self.network {
            // The stack deployed and started as AWS would: the cloud build's SDKs and the
            // deploy path.
            #[cfg(feature = "cloud")]
            return network::run();
            #[cfg(not(feature = "cloud"))]
            return crate::forward_to_cloud(crate::Build::Full);
        }
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(up(self))
    }
}

/// Numbered progress lines: `[n/total] what is happening`.
struct Steps {
    done: u32,
    total: u32,
}

impl Steps {
    fn next(&mut self, text: &str) {
        self.done += 1;
        eprintln!(
            "\n{} {text}",
            cmd::paint("1", &format!("[{}/{}]", self.done, self.total))
        );
    }
}

/// The two deployables' binaries a local stack runs.
pub(crate) struct Deployables {
    pub(crate) api: PathBuf,
    pub(crate) post_confirm: PathBuf,
}

impl Deployables {
    /// Both from one build folder (`target/debug`).
    pub(crate) fn in_dir(dir: &Path) -> Self {
        Deployables {
            api: dir.join("api"),
            post_confirm: dir.join("post-confirm"),
        }
    }
}

/// What steps 2–4 bring up, and every address the flow needs.
pub(crate) struct Stack {
    pub(crate) work: PathBuf,
    pub(crate) bin: Deployables,
    pub(crate) moto: Moto,
    pub(crate) _pg: Option<Postgres>,
    pub(crate) database_url: String,
    pub(crate) contract: GuardContract,
    pub(crate) secret: SecretString,
    pub(crate) pool: UserPool,
    /// The retry queue and its dead-letter queue, in moto.
    pub(crate) queues: Queues,
    /// The contract and AWS variables both deployables get.
    pub(crate) shared_env: Vec<(String, String)>,
    pub(crate) api_env: Vec<(String, String)>,
    /// What the migration adds to the api's environment: the owner's secret (on the cluster
    /// `up` started; none on a DATABASE_URL of the user's, where the api migrates at start).
    pub(crate) migrate_env: Option<Vec<(String, String)>>,
    pub(crate) api_url: String,
    /// The api, once started.
    pub(crate) api: Option<Process>,
    pub(crate) http: reqwest::Client,
}

async fn up(flags: flags::Up) -> Result<()> {
    let mut steps = Steps {
        done: 0,
        total: if flags.no_lambda { 4 } else { 6 },
    };
    let work = work_dir();
    std::fs::create_dir_all(&work)?;
    steps.next("building the binaries (the first build takes a few minutes)");
    let bin = build()?;
    steps.next("starting local services on loopback");
    let (moto, pg, database_url) = start_services(&work)?;
    steps.next("creating the guard secret and a Cognito user pool in moto");
    let mut stack = provision(work, bin, moto, pg, database_url).await?;
    steps.next("migrating the database, then starting the api");
    stack.migrate()?;
    stack.start_api().await?;
    if flags.no_lambda {
        let env_file = stack.write_lambda_env_file()?;
        stack.print_lambda_loop(&env_file);
        return stack.serve_until_interrupted().await;
    }
    steps.next("starting post-confirm (the Lambda binary) on a local Lambda Runtime API");
    let runtime = RuntimeApi::start().context("cannot start the local Runtime API")?;
    let lambda = stack.start_lambda(&runtime)?;
    steps.next("signing up users and attacking the guarded route");
    let (report, ada) = stack.run_flow(&runtime, lambda.log()).await?;
    report.print();
    let failures = report.failures();
    if failures > 0 {
        bail!(
            "{failures} check(s) failed; logs: {} and {}",
            stack.api_log().display(),
            lambda.log().display()
        );
    }
    if flags.once {
        return Ok(());
    }
    stack.print_running(&ada)?;
    stack.serve_until_interrupted().await
}

/// Builds `api` and `post-confirm` in the dev profile, as the tests build them (the workspace's
/// feature set, so `up` and the tests share every dependency build:
/// `opskit::build::dev_build_args`).
pub(crate) fn build() -> Result<Deployables> {
    Ok(Deployables::in_dir(&dev_build(&opskit::build::DEV_BUILD)?))
}

/// moto_server, and PostgreSQL (TLS required) unless DATABASE_URL names one.
pub(crate) fn start_services(work: &Path) -> Result<(Moto, Option<Postgres>, String)> {
    let moto =
        Moto::start(work).context("moto_server (install it with `pip install 'moto[server]'`)")?;
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            eprintln!("· PostgreSQL: using DATABASE_URL from the environment");
            Ok((moto, None, url))
        }
        _ => {
            let pg = Postgres::start().context("PostgreSQL")?;
            let url = pg.url();
            Ok((moto, Some(pg), url))
        }
    }
}

/// The guard secret and a user pool in moto, and the environment both deployables get.
pub(crate) async fn provision(
    work: PathBuf,
    bin: Deployables,
    moto: Moto,
    pg: Option<Postgres>,
    database_url: String,
) -> Result<Stack> {
    let vars = [("TOLLGATE_ENV".to_owned(), "local".to_owned())].into();
    let mut settings = shared_auth::load_for(Component::Deploy, &vars)?;
    // Loopback plays the ALB: its X-Forwarded-For entries are believed, as the VPC's are in AWS.
    settings.guard.trusted_proxies = vec!["127.0.0.0/8".parse()?];
    settings.aws.endpoint_url = Some(moto.endpoint());
    let sdk = shared_aws::sdk_config(&settings.aws).await;
    let secret = testkit::secrets::new_secret()?;
    let sm = SecretsManager::new(&sdk);
    testkit::secrets::put_secret(&sm, &settings.guard.secret_id, &secret)
        .await
        .context("cannot write the guard secret to moto")?;
    eprintln!(
        "· secret `{}` written (value not shown)",
        settings.guard.secret_id
    );
    let pool = UserPool::create(&sdk, &moto.endpoint(), "local")
        .await
        .context("cannot create the Cognito user pool in moto")?;
    eprintln!("· user pool {} with app client {}", pool.id, pool.client_id);
    let queues = Queues::create(&sdk, "local", settings.deploy.retry_max_receives)
        .await
        .context("cannot create the retry queue in moto")?;
    eprintln!(
        "· retry queue {} (dead letters: {})",
        queues.retry, queues.dead
    );

    let port = if std::net::TcpListener::bind(("127.0.0.1", 8080)).is_ok() {
        8080
    } else {
        free_port()?
    };
    let mut shared_env = settings.guard.to_env_vars();
    shared_env.push(("TOLLGATE_ENV".into(), "local".into()));
    shared_env.push(("TOLLGATE__AWS__ENDPOINT_URL".into(), moto.endpoint()));
    let mut api_env = shared_env.clone();
    let (serving, migrate_env) = database_env(&sm, pg.as_ref(), &database_url).await?;
    api_env.extend(serving);
    api_env.extend([
        (
            "TOLLGATE__API__LISTEN".to_owned(),
            format!("127.0.0.1:{port}"),
        ),
        ("TOLLGATE__API__SECRET_SOURCE".to_owned(), "aws".to_owned()),
    ]);
    api_env.extend(pool.api_env());
    Ok(Stack {
        work,
        bin,
        moto,
        _pg: pg,
        database_url,
        contract: settings.guard,
        secret,
        pool,
        queues,
        shared_env,
        api_env,
        migrate_env,
        api_url: format!("http://127.0.0.1:{port}"),
        api: None,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
    })
}

/// The api's database settings, and what its migration adds. On the cluster `up` started, as
/// in AWS: the api serves as `tollgate_api` with credentials from a secret shaped like RDS's,
/// never holding the owner's, and `api --migrate` runs first as the owner from another secret
/// (the migration task's part in AWS); TLS verify-full against the cluster's CA. On a
/// DATABASE_URL of the user's, that URL as it is, migrated at start.
type DatabaseEnv = (Vec<(String, String)>, Option<Vec<(String, String)>>);

async fn database_env(
    sm: &SecretsManager,
    pg: Option<&Postgres>,
    database_url: &str,
) -> Result<DatabaseEnv> {
    let Some(pg) = pg else {
        return Ok((vec![("DATABASE_URL".into(), database_url.to_owned())], None));
    };
    let (app_id, owner_id) = ("tollgate/local/db-app", "tollgate/local/db-owner");
    let app = testkit::secrets::new_db_credentials(DB_LOGIN)?;
    testkit::secrets::put_secret(sm, app_id, &app).await?;
    // The throwaway cluster trusts its superuser over TLS: no password to keep.
    let owner = SecretString::from(r#"{"username":"postgres","password":"unused"}"#.to_owned());
    testkit::secrets::put_secret(sm, owner_id, &owner).await?;
    eprintln!("· database credentials in moto: `{app_id}` ({DB_LOGIN}), `{owner_id}` (owner)");
    let serving = vec![
        ("DATABASE_URL".into(), pg.url_for(DB_LOGIN, "postgres")),
        ("TOLLGATE__API__DB_SECRET_ID".into(), app_id.into()),
        ("TOLLGATE__API__MIGRATE_ON_START".into(), "false".into()),
    ];
    let migrate = vec![("TOLLGATE__API__DB_OWNER_SECRET_ID".into(), owner_id.into())];
    Ok((serving, Some(migrate)))
}

impl Stack {
    /// `api --migrate` as the owner, before the api starts (the migration task's part in AWS).
    pub(crate) fn migrate(&self) -> Result<()> {
        let Some(extra) = &self.migrate_env else {
            return Ok(());
        };
        let mut migrate = Command::new(&self.bin.api);
        migrate
            .arg("--migrate")
            .envs(self.api_env.iter().chain(extra).map(|(k, v)| (k, v)));
        let out = cmd::output(&mut migrate).context("the migration failed")?;
        eprintln!("· {}", out.trim());
        Ok(())
    }

    /// (Re)starts the api binary and waits until it is ready.
    pub(crate) async fn start_api(&mut self) -> Result<()> {
        self.api = None;
        let mut api = Process::start("api", &self.bin.api, &self.api_env, &self.api_log())?;
        api.wait_ready(&self.http, &format!("{}/readyz", self.api_url))
            .await
            .context("the api did not become ready")?;
        self.api = Some(api);
        eprintln!("· api ready on {}", self.api_url);
        Ok(())
    }

    pub(crate) fn api_log(&self) -> PathBuf {
        self.work.join("api.log")
    }

    /// The environment the Lambda gets: the contract, AWS, and the api's address.
    fn lambda_env(&self) -> Vec<(String, String)> {
        let mut env = self.shared_env.clone();
        env.push((
            "TOLLGATE__LAMBDA__API_BASE_URL".into(),
            self.api_url.clone(),
        ));
        env.extend(self.queues.lambda_env());
        env
    }

    pub(crate) fn start_lambda(&self, runtime: &RuntimeApi) -> Result<Process> {
        self.start_lambda_as(runtime, "post-confirm.log")
    }

    /// Another execution environment of the function on the same Runtime API, logging to
    /// `log` in the work folder.
    fn start_lambda_as(&self, runtime: &RuntimeApi, log: &str) -> Result<Process> {
        let mut env = self.lambda_env();
        env.extend(runtime.lambda_env("tollgate-local-post-confirm"));
        let polling = runtime.polls();
        let lambda = Process::start(
            "post-confirm",
            &self.bin.post_confirm,
            &env,
            &self.work.join(log),
        )?;
        if !runtime.wait_for_polls(polling + 1, Duration::from_secs(10)) {
            bail!(
                "post-confirm did not ask for work within 10 s; see {}",
                lambda.log().display()
            );
        }
        Ok(lambda)
    }

    /// Signs up users, lets the Lambda register them, attacks the guarded route, signs one up
    /// with the api down (to see the queue register it), and sees `/users/me` create the row
    /// of a user no registration reached.
    async fn run_flow(
        &mut self,
        runtime: &RuntimeApi,
        lambda_log: &Path,
    ) -> Result<(Report, PoolUser)> {
        let db = sqlx::PgPool::connect(&self.database_url)
            .await
            .context("cannot connect to PostgreSQL")?;
        let mut report = Report::live();
        let ada = self.pool.sign_up("ada", "ada@example.com").await?;
        for (name, expected) in [
            ("Lambda registration accepted", 201),
            ("Cognito retry replayed", 200),
        ] {
            let outcome = invoke(runtime, &ada.event).await;
            let result = match lambda_status(&outcome, lambda_log, &ada.sub, expected) {
                Ok(status) => one_row(&db, &ada.sub)
                    .await
                    .map(|rows| format!("{status}, {rows}")),
                Err(e) => Err(e),
            };
            report.record(name, result);
        }
        report.record("GET /users/me with the ID token", self.users_me(&ada).await);
        let forger = Forger {
            http: &self.http,
            api_url: &self.api_url,
            contract: &self.contract,
            secret: &self.secret,
        };
        for (name, attack) in Attack::ALL {
            report.record(name, forger.attempt(attack, &db).await);
        }
        let queued = self.sign_up_while_down(runtime, &db).await;
        report.record("api down at sign-up", queued);
        let recovered = self.recover_by_users_me(&db).await;
        report.record("lost registration recovered by /users/me", recovered);
        report.record("heartbeat", self.heartbeat(runtime, &db).await);
        Ok((report, ada))
    }

    /// A sign-up while the api is down: Cognito sees success, the registration waits in the
    /// retry queue, and Lambda's poller (played here) registers it once the api is back.
    async fn sign_up_while_down(
        &mut self,
        runtime: &RuntimeApi,
        db: &sqlx::PgPool,
    ) -> Result<String> {
        let bob = self.pool.sign_up("bob", "bob@example.com").await?;
        self.api = None;
        let answered = invoke(runtime, &bob.event).await;
        self.start_api().await.context("the api did not restart")?;
        match answered {
            Outcome::Response(body)
                if serde_json::from_str::<Value>(&body).ok() == Some(bob.event.clone()) => {}
            other => bail!("Cognito would have seen {other:?}"),
        }
        if rows_for(db, &bob.sub).await? != 0 {
            bail!("registered while the api was down?");
        }
        let (handed, failed) = self
            .queues
            .poll_once(30, |event| async move {
                match tokio::task::block_in_place(|| {
                    runtime.invoke(&event.to_string(), LAMBDA_BUDGET * 6)
                }) {
                    Outcome::Response(body) => Ok(serde_json::from_str(&body)?),
                    other => bail!("the queue's batch failed: {other:?}"),
                }
            })
            .await?;
        if (handed, failed) != (1, 0) {
            bail!("the queue held {handed} registration(s), {failed} failed again");
        }
        one_row(db, &bob.sub).await?;
        Ok("Cognito saw success; registered from the queue when the api came back".into())
    }

    /// One heartbeat as its schedule runs it in AWS: the function signs a synthetic user up and
    /// confirms it; Cognito's trigger (played here, on a second environment of the function, as
    /// moto fires none) registers it; the function reads the row back, deletes it and the user.
    async fn heartbeat(&self, runtime: &RuntimeApi, db: &sqlx::PgPool) -> Result<String> {
        let second = self.start_lambda_as(runtime, "post-confirm-heartbeat.log")?;
        let event = serde_json::json!({
            "tollgate": "heartbeat",
            "user_pool_id": self.pool.id,
            "client_id": self.pool.client_id,
        });
        let running = tokio::task::spawn_blocking({
            let runtime = runtime.clone();
            move || runtime.invoke(&event.to_string(), LAMBDA_BUDGET * 6)
        });
        let sub = testkit::cognito::play_heartbeat_trigger(
            &self.pool.cognito,
            &self.pool.region,
            &self.pool.id,
            &self.pool.client_id,
            LAMBDA_BUDGET * 4,
            |trigger| async move {
                match invoke(runtime, &trigger).await {
                    Outcome::Response(_) => Ok(()),
                    other => bail!("Cognito would have seen {other:?}"),
                }
            },
        )
        .await;
        let answered = running.await?;
        drop(second);
        let sub = sub?;
        let Outcome::Response(body) = answered else {
            bail!("the heartbeat's invocation failed: {answered:?}");
        };
        let report: Value = serde_json::from_str(&body)?;
        if report["result"] != "ok" || report["registered_via"] != "trigger" {
            bail!("the heartbeat reported {report}");
        }
        let left = testkit::cognito::heartbeat_users(&self.pool.cognito, &self.pool.id).await?;
        if report["cleaned_up"] != true || !left.is_empty() || rows_for(db, &sub).await? != 0 {
            bail!("the heartbeat left its user or its row behind: {report}");
        }
        Ok(format!(
            "signed up, registered through the trigger in {} ms, cleaned up",
            report["latency_ms"]
        ))
    }

    /// A confirmed user whose registration never happened (no trigger ran): the first
    /// `/users/me` with their ID token creates the row.
    async fn recover_by_users_me(&self, db: &sqlx::PgPool) -> Result<String> {
        let carol = self.pool.sign_up("carol", "carol@example.com").await?;
        if rows_for(db, &carol.sub).await? != 0 {
            bail!("carol is registered already");
        }
        let detail = self.users_me(&carol).await?;
        one_row(db, &carol.sub).await?;
        Ok(format!("no registration reached the api; {detail}"))
    }

    async fn users_me(&self, user: &PoolUser) -> Result<String> {
        let response = self
            .http
            .get(format!("{}/users/me", self.api_url))
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

    /// Writes the Lambda's environment as a dotenv file for `cargo lambda watch --env-file`.
    fn write_lambda_env_file(&self) -> Result<PathBuf> {
        let path = self.work.join("post-confirm.env");
        let text: String = self
            .lambda_env()
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    fn print_lambda_loop(&self, env_file: &Path) {
        println!("\nmoto, PostgreSQL and the api are running (Ctrl-C stops everything):");
        self.print_addresses();
        println!("\nRun the Lambda under cargo-lambda's emulator, in another terminal:");
        println!(
            "  cargo lambda watch --bin post-confirm --env-file {}",
            env_file.display()
        );
        println!(
            "  cargo lambda invoke post-confirm --data-file crates/post-confirm/tests/fixtures/sign-up.json"
        );
    }

    fn print_running(&self, ada: &PoolUser) -> Result<()> {
        let token_file = self.work.join("ada.id-token");
        std::fs::write(&token_file, &ada.id_token)?;
        println!("\nTollgate is running locally (Ctrl-C stops everything):");
        self.print_addresses();
        println!(
            "\nTry:  curl -s -H \"Authorization: Bearer $(cat {})\" {}/users/me",
            token_file.display(),
            self.api_url
        );
        Ok(())
    }

    fn print_addresses(&self) {
        println!(
            "  api           {}   (logs: {})",
            self.api_url,
            self.api_log().display()
        );
        println!("  moto (AWS)    {}", self.moto.endpoint());
        println!("  DATABASE_URL  {}", self.database_url);
        println!(
            "  user pool     {} (app client {})",
            self.pool.id, self.pool.client_id
        );
    }

    async fn serve_until_interrupted(mut self) -> Result<()> {
        while !interrupted() {
            if let Some(status) = self.api.as_mut().and_then(Process::exited) {
                bail!(
                    "the api exited ({status}); see {}",
                    self.api_log().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("\nstopping…");
        Ok(())
    }
}

/// One invocation through the local Runtime API, as Cognito would make it.
async fn invoke(runtime: &RuntimeApi, event: &Value) -> Outcome {
    let payload = event.to_string();
    tokio::task::block_in_place(|| runtime.invoke(&payload, LAMBDA_BUDGET))
}

/// Checks the Lambda's outcome and the status the API gave it (from the Lambda's own log).
fn lambda_status(outcome: &Outcome, log: &Path, sub: &str, expected: u16) -> Result<String> {
    match outcome {
        Outcome::Response(_) => {}
        other => bail!("the Lambda did not succeed: {other:?}"),
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    match crate::support::lambda_log::registered_status(&text, sub) {
        Some(s) if s == expected => Ok(format!("API answered {s}")),
        Some(s) => bail!("API answered {s}, expected {expected}"),
        None => bail!("no registration in {}", log.display()),
    }
}

/// How many rows `users` holds for `sub`.
async fn rows_for(db: &sqlx::PgPool, sub: &str) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM users WHERE cognito_sub = $1::uuid")
            .bind(sub)
            .fetch_one(db)
            .await?,
    )
}

async fn one_row(db: &sqlx::PgPool, sub: &str) -> Result<String> {
    match rows_for(db, sub).await? {
        1 => Ok("1 row in PostgreSQL".into()),
        n => bail!("{n} rows in PostgreSQL for {sub}, expected 1"),
    }
}
