//! `cargo xtask soak --minutes N`: the load held for N minutes on loopback, with everything at
//! once. Sign-ups through the real Lambda binary (under the local Runtime API) at Cognito's
//! default ceiling (25/s: SignUp + ConfirmSignUp share 50 requests/s), `GET /users/me` with
//! real ID tokens at a few hundred per second, and a forged flood on `POST /user` from one wrk
//! thread; a guard-secret rotation a third of the way in and a database password rotation
//! (RDS's order: the password, then the secret) at two thirds. The retry queue is drained by
//! the same function, as Lambda's poller does. Then every sign-up's outcome is counted in
//! PostgreSQL, and the api's memory, descriptors and log lines sampled every 10 s are judged.
//!
//! It fails when a sign-up is lost, duplicated or answered with an error (what a user would
//! see); every other figure is printed beside its goal (`--json` for tracking), never asserted.

mod drivers;
mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use opskit::cmd;
use opskit::runtime_api::RuntimeApi;
use secrecy::ExposeSecret;
use testkit::cognito::PoolUser;

use crate::flags;
use crate::support::context::work_dir;
use crate::tasks::up::{self, DB_LOGIN, Stack};
use drivers::{Flood, Samples, SignUps, UsersMe};

/// How often the api's memory, descriptors and log are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// How long the api is down in the outage phase.
const OUTAGE: Duration = Duration::from_secs(30);
/// How long the retry queue may take to empty after the load stops.
const DRAIN_FOR: Duration = Duration::from_secs(120);

impl flags::Soak {
    pub fn run(self) -> Result<()> {
        if self.faults {
            crate::tasks::setup::ensure(crate::flags::Scope::Test)?;
            #[cfg(feature = "cloud")]
            return crate::tasks::up::fault_matrix(self.minutes, &self.only, self.json);
            #[cfg(not(feature = "cloud"))]
            return crate::forward_to_cloud(crate::Build::Full);
        }
        crate::tasks::setup::ensure(crate::flags::Scope::Up)?;
        if cmd::which("wrk").is_none() {
            bail!("wrk drives the forged flood: apt-get install wrk (or `cargo xtask setup`)");
        }
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(soak(self))
    }
}

async fn soak(flags: flags::Soak) -> Result<()> {
    // A fresh folder: the processes append to their logs, and the verdict counts this run's
    // lines alone (a second soak used to read the first one's too).
    let work = work_dir().join("soak");
    match std::fs::remove_dir_all(&work) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot empty {}", work.display()));
        }
        _ => {}
    }
    std::fs::create_dir_all(&work)?;
    let bin = match flags.build {
        flags::Builds::Dev => {
            eprintln!("[1/5] building the binaries (dev profile, as `up`)");
            up::build()?
        }
        flags::Builds::Release => {
            eprintln!("[1/5] building the binaries (the shipped profiles, for this host)");
            crate::tasks::bench::release_deployables()?
        }
    };
    eprintln!("\n[2/5] starting moto, PostgreSQL (TLS), the api and post-confirm");
    let (moto, pg, url) = up::start_services(&work)?;
    let mut stack = up::provision(work.clone(), bin, moto, pg, url).await?;
    stack.migrate()?;
    stack.start_api().await?;
    let runtime = Arc::new(RuntimeApi::start().context("the local Runtime API")?);
    let lambda = stack.start_lambda(&runtime)?;
    let users = app_users(&stack, 10).await?;
    let template = users[0].event.clone();
    let tokens = users.into_iter().map(|u| u.id_token).collect();
    eprintln!(
        "\n[3/5] {} min: sign-ups at {}/s, /users/me at {}/s, a forged flood; rotations at 1/3 and 2/3",
        flags.minutes, flags.sign_ups_per_s, flags.me_per_s
    );
    let load = load(&stack, &runtime, &template, tokens, &flags).await?;
    eprintln!("\n[4/5] draining the retry queue, then counting every sign-up in PostgreSQL");
    let drained = drivers::drain(&runtime, &stack.queues, DRAIN_FOR).await?;
    let db = sqlx::PgPool::connect(&stack.database_url).await?;
    let outcome = drivers::count_rows(&db, &load.sign_ups).await?;
    let first = load.sign_ups.subs.len();
    let outage = api_down(&mut stack, &runtime, &db, template, &flags, first).await?;
    let report = report::Report {
        minutes: flags.minutes,
        seconds: load.seconds,
        sign_ups: load.sign_ups,
        drained,
        outcome,
        me: load.me,
        flood: load.flood,
        samples: load.samples,
        rotations: load.rotations,
        outage,
    };
    if flags.json {
        println!("{}", report.json());
    } else {
        report.print();
    }
    drop(lambda);
    report.verdict(&stack.api_log(), &work.join("post-confirm.log"))
}

/// What the load phase saw.
struct Load {
    seconds: f64,
    sign_ups: SignUps,
    me: UsersMe,
    samples: Samples,
    flood: drivers::FloodFigures,
    rotations: Vec<String>,
}

/// Everything at once for `--minutes`: sign-ups, `/users/me`, the flood, the sampler, and the
/// two rotations on the way.
async fn load(
    stack: &Stack,
    runtime: &Arc<RuntimeApi>,
    template: &serde_json::Value,
    tokens: Vec<String>,
    flags: &flags::Soak,
) -> Result<Load> {
    let length = Duration::from_secs(flags.minutes * 60);
    let api_pid = stack
        .api
        .as_ref()
        .and_then(|api| api.id())
        .context("the api's pid")?;
    let started = Instant::now();
    let flood = Flood::start(stack, &stack.work, length)?;
    let sign_ups = tokio::spawn(drivers::sign_ups(
        runtime.clone(),
        stack.queues.clone(),
        template.clone(),
        (flags.sign_ups_per_s, 0),
        length,
    ));
    let me = tokio::spawn(drivers::users_me(
        stack.http.clone(),
        format!("{}/users/me", stack.api_url),
        tokens,
        flags.me_per_s,
        length,
    ));
    let samples = tokio::spawn(drivers::sample(
        api_pid,
        stack.api_log(),
        SAMPLE_EVERY,
        length,
    ));
    let rotations = rotate_during(stack, length).await;
    Ok(Load {
        sign_ups: sign_ups.await.context("the sign-up driver")??,
        me: me.await.context("the /users/me driver")??,
        samples: samples.await.context("the sampler")??,
        flood: flood.finish()?,
        seconds: started.elapsed().as_secs_f64(),
        rotations: rotations?,
    })
}

/// The api down for `OUTAGE` while sign-ups go on: each is handed to the retry queue, and the
/// same function registers it once the api is back. How long after its return the last row
/// landed.
async fn api_down(
    stack: &mut Stack,
    runtime: &Arc<RuntimeApi>,
    db: &sqlx::PgPool,
    template: serde_json::Value,
    flags: &flags::Soak,
    first: usize,
) -> Result<report::Outage> {
    eprintln!(
        "\n[5/5] the api down for {} s while sign-ups go on; then back",
        OUTAGE.as_secs()
    );
    stack.api = None;
    let made = drivers::sign_ups(
        runtime.clone(),
        stack.queues.clone(),
        template,
        (flags.sign_ups_per_s, first),
        OUTAGE,
    )
    .await?;
    stack.start_api().await?;
    let back_ms = drivers::unix_ms();
    let drained = drivers::drain(runtime, &stack.queues, DRAIN_FOR).await?;
    let rows = drivers::count_rows(db, &made).await?;
    Ok(report::Outage {
        last_row_after_s: (rows.last_ms - back_ms) / 1e3,
        made,
        drained,
        rows,
    })
}

/// Users in the pool with real ID tokens for `/users/me`; the first one's event is the
/// template of every sign-up.
async fn app_users(stack: &Stack, count: usize) -> Result<Vec<PoolUser>> {
    let mut users = Vec::with_capacity(count);
    for n in 0..count {
        let user = stack
            .pool
            .sign_up(
                &format!("soak-app-{n}"),
                &format!("soak-app-{n}@example.com"),
            )
            .await?;
        users.push(user);
    }
    Ok(users)
}

/// The two rotations, a third and two thirds of the way in; what each did, for the report.
async fn rotate_during(stack: &Stack, length: Duration) -> Result<Vec<String>> {
    let start = tokio::time::Instant::now();
    tokio::time::sleep_until(start + length / 3).await;
    let sdk = shared_aws::sdk_config(&shared_auth::AwsSettings {
        endpoint_url: Some(stack.moto.endpoint()),
        ..testkit::local_aws_region()
    })
    .await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let fresh = testkit::secrets::new_secret()?;
    testkit::secrets::put_version(&sm, &stack.contract.secret_id, &fresh).await?;
    let mut done = vec![format!(
        "guard secret rotated at {:.0} s (a new AWSCURRENT)",
        start.elapsed().as_secs_f64()
    )];
    eprintln!("· {}", done[0]);
    tokio::time::sleep_until(start + length * 2 / 3).await;
    done.push(rotate_db_password(stack, &sm, start).await?);
    eprintln!("· {}", done[1]);
    Ok(done)
}

/// RDS's single-user rotation, in its order: the new password is set in PostgreSQL first, and
/// only then is it the secret's AWSCURRENT; between the two, new connections with the old one
/// fail, and the api must ride through.
async fn rotate_db_password(
    stack: &Stack,
    sm: &aws_sdk_secretsmanager::Client,
    start: tokio::time::Instant,
) -> Result<String> {
    let credentials = testkit::secrets::new_db_credentials(DB_LOGIN)?;
    let parsed: serde_json::Value = serde_json::from_str(credentials.expose_secret())?;
    let password = parsed["password"].as_str().context("a password")?;
    let owner = sqlx::PgPool::connect(&stack.database_url).await?;
    // A quoted literal: ALTER ROLE takes no bind parameters. The password is hex from
    // testkit, never user input.
    sqlx::query(&format!(
        "ALTER ROLE {DB_LOGIN} PASSWORD '{}'",
        password.replace('\'', "''")
    ))
    .execute(&owner)
    .await?;
    let set_at = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    testkit::secrets::put_version(sm, "tollgate/local/db-app", &credentials).await?;
    Ok(format!(
        "database password rotated at {set_at:.0} s (the secret followed 1 s later)"
    ))
}
