//! The real binaries, as the other crates' tests run them: the api on a fresh database with
//! its secret in moto, and the sign-up function (one or several processes) under a local
//! Runtime API. A crate links no deployable; its tests build and run the binaries instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use secrecy::{ExposeSecret, SecretString};

use opskit::build::dev_build_args;
use opskit::process::Process;
use opskit::runtime_api::RuntimeApi;

/// The debug build of `package`'s binary of the same name ([`dev_build_args`]), built if this
/// run has not built it, next to the running test's own target folder.
pub fn built_binary(package: &str) -> Result<PathBuf> {
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.args(dev_build_args(&[package])).arg("--quiet");
    let status = build.status().context("cargo runs")?;
    if !status.success() {
        bail!("cargo build --bin {package} failed");
    }
    // A test runs as target/debug/deps/<test>-<hash>.
    let exe = std::env::current_exe()?;
    let debug = exe
        .parent()
        .and_then(Path::parent)
        .context("the test's target folder")?;
    Ok(debug.join(package))
}

/// A folder of its own under the system temp folder.
pub fn work_dir(label: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "tollgate-{label}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The api binary on a fresh database, reading its secret from moto (refreshed every second).
#[derive(Debug)]
pub struct Api {
    process: Option<Process>,
    env: Vec<(String, String)>,
    pub url: String,
    pub secret_id: String,
    pub secret: SecretString,
    pub db: sqlx::PgPool,
    pub log: PathBuf,
    /// The contract and AWS variables a sender of this api needs too.
    pub shared_env: Vec<(String, String)>,
}

impl Api {
    /// Starts the api for `label`, `extra` variables on top of the local contract.
    pub async fn start(label: &str, extra: &[(&str, &str)]) -> Result<Self> {
        let work = work_dir(label)?;
        let sm = shared_aws::secrets_manager(&crate::local_aws()).await;
        let secret_id = format!("tollgate/test/{label}-{}", uuid::Uuid::new_v4().simple());
        let secret = crate::secrets::new_secret()?;
        crate::secrets::put_secret(&sm, &secret_id, &secret).await?;
        let mut shared_env: Vec<(String, String)> = [
            ("TOLLGATE_ENV", "local".to_owned()),
            ("TOLLGATE__GUARD__SECRET_ID", secret_id.clone()),
            ("TOLLGATE__AWS__ENDPOINT_URL", crate::aws_endpoint()),
            ("TOLLGATE__API__SECRET_REFRESH_S", "1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        shared_env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let db_url = crate::fresh_database(label).await;
        let port = crate::services::free_port()?;
        let mut env = shared_env.clone();
        env.extend([
            (
                "TOLLGATE__API__LISTEN".to_owned(),
                format!("127.0.0.1:{port}"),
            ),
            ("TOLLGATE__API__SECRET_SOURCE".to_owned(), "aws".to_owned()),
            ("DATABASE_URL".to_owned(), db_url.clone()),
        ]);
        let mut api = Self {
            process: None,
            env,
            url: format!("http://127.0.0.1:{port}"),
            secret_id,
            secret,
            db: sqlx::PgPool::connect(&db_url).await?,
            log: work.join("api.log"),
            shared_env,
        };
        api.restart().await?;
        Ok(api)
    }

    /// Starts the api (again) and waits until it is ready.
    pub async fn restart(&mut self) -> Result<()> {
        self.process = None;
        let mut process = Process::start("api", &built_binary("api")?, &self.env, &self.log)?;
        process
            .wait_ready(&reqwest::Client::new(), &format!("{}/readyz", self.url))
            .await?;
        self.process = Some(process);
        Ok(())
    }

    /// Stops the api as ECS stops a task: SIGTERM, then up to `grace` to finish by itself
    /// (then it is killed). Its exit status, if it ended by itself.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        self.process.take()?.terminate(grace)
    }

    /// Stops the api: its address refuses connections until [`Api::restart`].
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// How many users the database holds.
    pub async fn users(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&self.db)
            .await?)
    }

    /// The users rows of `sub`.
    pub async fn rows_for(&self, sub: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM users WHERE cognito_sub = $1::uuid")
                .bind(sub)
                .fetch_one(&self.db)
                .await?,
        )
    }

    /// The secret's value, for a client of the api's own.
    pub fn secret_value(&self) -> &str {
        self.secret.expose_secret()
    }
}

/// `count` processes of the sign-up function, polling one local Runtime API: invocations run
/// side by side, as Lambda runs concurrent ones in separate execution environments.
#[derive(Debug)]
pub struct SignUpFunctions {
    pub runtime: RuntimeApi,
    _processes: Vec<Process>,
    pub logs: Vec<PathBuf>,
}

impl SignUpFunctions {
    pub fn start(count: usize, env: &[(String, String)], work: &Path) -> Result<Self> {
        let runtime = RuntimeApi::start()?;
        let binary = built_binary("post-confirm")?;
        let mut processes = Vec::new();
        let mut logs = Vec::new();
        for n in 0..count {
            let mut env = env.to_vec();
            env.extend(runtime.lambda_env("tollgate-test-post-confirm"));
            let log = work.join(format!("post-confirm-{n}.log"));
            processes.push(Process::start("post-confirm", &binary, &env, &log)?);
            logs.push(log);
        }
        let polls = u32::try_from(count).unwrap_or(u32::MAX);
        if !runtime.wait_for_polls(polls, Duration::from_secs(15)) {
            bail!(
                "the functions did not all ask for work; see {}",
                work.display()
            );
        }
        Ok(Self {
            runtime,
            _processes: processes,
            logs,
        })
    }

    /// Every process's stdout and stderr so far (metric lines and logs).
    pub fn output(&self) -> String {
        self.logs
            .iter()
            .map(|l| std::fs::read_to_string(l).unwrap_or_default())
            .collect()
    }
}
