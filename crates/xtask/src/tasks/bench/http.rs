//! The api under `wrk`: each guarded-route case against `GET /healthz` (the cheapest route,
//! same server, same run); accepted registrations and `GET /users/me` against the bare
//! reference (`crates/api/examples/bare.rs`: the same statements and token check through the
//! same pool, without what Tollgate adds), registrations as the median of three alternating
//! pairs; and both against `pgbench` running the api's own statement with the pool's
//! connection count, for where the database's share goes.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use opskit::cmd;
use opskit::process::Process;
use secrecy::{ExposeSecret, SecretString};
use shared_auth::Component;
use testkit::cognito::UserPool;
use testkit::services::{Moto, Postgres, free_port};

use super::cpu::{self, Split};
use super::wrk::{self, Bodies, script_get, script_new_users, script_post, with_client};
use super::{BenchSettings, Binaries, Row, number_after, pg_bin};
use crate::support::context::workspace_root;

/// An address outside the allowlist, as the ALB would report it.
const OUTSIDER: &str = "203.0.113.9";

/// The api as the bench runs it: its environment, address and process.
struct BenchApi {
    env: Vec<(String, String)>,
    base: String,
    process: Process,
}

/// The wrk runs against one api, each a route or a kind of request.
struct Runs {
    healthz: WrkRun,
    outsider: WrkRun,
    forged: WrkRun,
    replay: WrkRun,
    me: WrkRun,
}

pub async fn rows(
    s: &BenchSettings,
    bin: &Binaries,
    pg: &Postgres,
    moto: &Moto,
) -> Result<(Vec<Row>, Vec<Split>)> {
    let aws = shared_auth::AwsSettings {
        endpoint_url: Some(moto.endpoint()),
        ..testkit::local_aws_region()
    };
    let sdk = shared_aws::sdk_config(&aws).await;
    let pool = UserPool::create(&sdk, &moto.endpoint(), "bench").await?;
    let user = pool.sign_up("bench-user", "bench@example.com").await?;
    let secret = testkit::secrets::new_secret()?;
    let api_binary = s.api_binary.as_deref().unwrap_or(&bin.api);
    let http = reqwest::Client::new();
    let mut api = start_api(s, api_binary, pg, moto, &pool, &secret, &http).await?;
    let (runs, me_cpu) = wrk_runs(s, &api, &secret, &user.id_token, &http, pg).await?;
    api.process.stop();
    let pairs = registration_pairs(s, api_binary, bin, &api, &user.id_token, &http, pg).await?;
    let (statements, pgbench_cpu) = run_pgbench(s, pg, None)?;
    // The same statements at the api's rate: PostgreSQL's cost per statement at that load
    // (group commit and wake-ups amortise less at a lower rate), apart from how it is driven.
    let (_, paced_cpu) = run_pgbench(s, pg, Some(pairs.ours))?;
    let split = |run, generator, per_request| Split {
        run,
        generator,
        per_request,
    };
    let splits = vec![
        split("accepted POST /user", "wrk", pairs.ours_cpu),
        split("bare POST /user (reference)", "wrk", pairs.bare_cpu),
        split("pgbench, the api's statement", "pgbench", pgbench_cpu),
        split("pgbench at the accepted rate", "pgbench", paced_cpu),
        split("GET /users/me", "wrk", me_cpu),
        split("bare GET /users/me (reference)", "wrk", pairs.bare_me_cpu),
    ];
    runs.warn_about_errors(s);
    Ok((runs.rows(&pairs, statements), splits))
}

/// Accepted registrations against the bare reference, in alternating pairs (the median pair's
/// ratio counts), and the bare `GET /users/me` once.
struct Pairs {
    ours: f64,
    bare: f64,
    ours_cpu: cpu::PerRequest,
    bare_cpu: cpu::PerRequest,
    bare_me: f64,
    bare_me_cpu: cpu::PerRequest,
}

/// How many alternating (ours, bare) registration runs the ratio is the median of.
const PAIRS: usize = 3;

async fn registration_pairs(
    s: &BenchSettings,
    api_binary: &Path,
    bin: &Binaries,
    api: &BenchApi,
    id_token: &str,
    http: &reqwest::Client,
    pg: &Postgres,
) -> Result<Pairs> {
    let mut runs = Vec::new();
    let mut bare_me = None;
    for round in 0..PAIRS {
        let (ours, ours_cpu) =
            accepted_run(s, api_binary, &api.env, &api.base, http, pg, round).await?;
        let mut bare = Process::start("bare", &bin.bare, &api.env, &s.dir.join("bare.log"))?;
        bare.wait_ready(http, &format!("{}/healthz", api.base))
            .await?;
        // The reference checks no credential: the header is one nothing reads.
        let (bare_rps, bare_cpu) = created_per_second(
            s,
            &api.base,
            "bare-accepted",
            &bare,
            pg,
            ("x-unused", ""),
            0x9000 + 16 * round,
        )
        .await?;
        if round == 0 {
            bare_me = Some(me_run(s, &api.base, "bare-users-me", id_token, &bare, pg)?);
        }
        bare.stop();
        eprintln!(
            "· registration pair {}/{PAIRS}: ours {ours:.0}/s, bare {bare_rps:.0}/s",
            round + 1,
        );
        runs.push((ours, bare_rps, ours_cpu, bare_cpu));
    }
    let mut ratios: Vec<f64> = runs.iter().map(|(o, b, _, _)| o / b.max(1e-9)).collect();
    let median_ratio = super::median(&mut ratios.clone());
    let median_pair = runs
        .iter()
        .find(|(o, b, _, _)| o / b.max(1e-9) == median_ratio)
        .copied()
        .context("a median pair")?;
    let (bare_me, bare_me_cpu) = bare_me.context("the bare /users/me run")?;
    ratios.sort_by(f64::total_cmp);
    eprintln!("· accepted ÷ bare, the {PAIRS} pairs: {ratios:.3?}");
    Ok(Pairs {
        ours: median_pair.0,
        bare: median_pair.1,
        ours_cpu: median_pair.2,
        bare_cpu: median_pair.3,
        bare_me: bare_me.rps,
        bare_me_cpu,
    })
}

/// `GET /users/me` under wrk against `process`, with its CPU split.
fn me_run(
    s: &BenchSettings,
    base: &str,
    name: &str,
    id_token: &str,
    process: &Process,
    pg: &Postgres,
) -> Result<(WrkRun, cpu::PerRequest)> {
    let before = cpu::sample(process.id(), pg.server_pid()?)?;
    let run = run_wrk(
        s,
        s.seconds,
        base,
        name,
        &script_get(
            "/users/me",
            &[("Authorization".into(), format!("Bearer {id_token}"))],
        ),
    )?;
    let after = cpu::sample(process.id(), pg.server_pid()?)?;
    if run.errors > 0.0 {
        bail!(
            "{name}: {} answers were not 2xx; see {}",
            run.errors,
            process.log().display()
        );
    }
    let split = cpu::per_request(before, after, run.requests)?;
    Ok((run, split))
}

/// New users per second through `process` (`POST /user`, a new `sub` each, presenting
/// `credential` as header and value), counted in the database, with the run's CPU split.
/// `group` keeps each run's `sub`s apart.
async fn created_per_second(
    s: &BenchSettings,
    base: &str,
    name: &str,
    process: &Process,
    pg: &Postgres,
    credential: (&str, &str),
    group: usize,
) -> Result<(f64, cpu::PerRequest)> {
    let db = sqlx::PgPool::connect(&pg.url()).await?;
    let users = || sqlx::query_scalar::<_, i64>("SELECT count(*) FROM users").fetch_one(&db);
    let before = users().await?;
    let postmaster = pg.server_pid()?;
    let cpu_before = cpu::sample(process.id(), postmaster)?;
    let (header, value) = credential;
    let run = run_wrk(
        s,
        s.seconds,
        base,
        name,
        &script_new_users(header, value, group),
    )?;
    let cpu_after = cpu::sample(process.id(), postmaster)?;
    let created = users().await? - before;
    eprintln!(
        "· {name}: {created} users created, {} requests answered",
        run.requests
    );
    if run.errors > 0.0 || (created as f64) < run.requests * 0.99 {
        bail!(
            "{name}: {created} users created for {} answers ({} not 2xx); see {}",
            run.requests,
            run.errors,
            process.log().display()
        );
    }
    Ok((
        created as f64 / run.elapsed_s.max(1e-3),
        cpu::per_request(cpu_before, cpu_after, created as f64)?,
    ))
}

/// Starts the api in `local` mode behind wrk playing the ALB, and waits until it answers.
async fn start_api(
    s: &BenchSettings,
    api_binary: &Path,
    pg: &Postgres,
    moto: &Moto,
    pool: &UserPool,
    secret: &SecretString,
    http: &reqwest::Client,
) -> Result<BenchApi> {
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut env = vec![
        ("TOLLGATE_ENV".to_owned(), "local".to_owned()),
        ("TOLLGATE_LOG_FORMAT".to_owned(), "json".to_owned()),
        ("DATABASE_URL".to_owned(), pg.url()),
        (
            "TOLLGATE_SECRET_CURRENT".to_owned(),
            secret.expose_secret().to_owned(),
        ),
        (
            "TOLLGATE__API__LISTEN".to_owned(),
            format!("127.0.0.1:{port}"),
        ),
        // wrk plays the ALB: it names the client in X-Forwarded-For.
        (
            "TOLLGATE__GUARD__TRUSTED_PROXIES".to_owned(),
            "127.0.0.1/32".to_owned(),
        ),
        ("TOLLGATE__AWS__ENDPOINT_URL".to_owned(), moto.endpoint()),
    ];
    env.extend(pool.api_env());
    let mut process = Process::start("api", api_binary, &env, &s.dir.join("api.log"))?;
    process.wait_ready(http, &format!("{base}/healthz")).await?;
    Ok(BenchApi { env, base, process })
}

/// Registers one user (the replay run's), then runs wrk on each route and kind of request;
/// `GET /users/me` with its CPU split.
async fn wrk_runs(
    s: &BenchSettings,
    api: &BenchApi,
    secret: &SecretString,
    id_token: &str,
    http: &reqwest::Client,
    pg: &Postgres,
) -> Result<(Runs, cpu::PerRequest)> {
    let vars = api.env.iter().cloned().collect();
    let contract = shared_auth::load_for(Component::Api, &vars)
        .context("the bench's api settings")?
        .guard;
    let bodies = Bodies::new(&contract, secret);
    let (replay_headers, replay_body) = bodies.signed(0);
    let mut first = http
        .post(format!("{}/user", api.base))
        .body(replay_body.clone());
    for (k, v) in with_client(&replay_headers, "127.0.0.1") {
        first = first.header(k, v);
    }
    let status = first.send().await?.status();
    if status.as_u16() != 201 {
        bail!(
            "the bench's first registration got {status}; see {}",
            api.process.log().display()
        );
    }
    let wrk = |name: &str, script: String| run_wrk(s, s.seconds, &api.base, name, &script);
    let me = me_run(s, &api.base, "users-me", id_token, &api.process, pg)?;
    let wrong = testkit::secrets::new_secret()?;
    let (forged_headers, forged_body) = Bodies::new(&contract, &wrong).signed(1);
    Ok((
        Runs {
            healthz: wrk("healthz", script_get("/healthz", &[]))?,
            outsider: wrk(
                "refused-allowlist",
                script_post(&with_client(&replay_headers, OUTSIDER), &replay_body),
            )?,
            forged: wrk(
                "refused-secret",
                script_post(&with_client(&forged_headers, "127.0.0.1"), &forged_body),
            )?,
            replay: wrk(
                "replay",
                script_post(&with_client(&replay_headers, "127.0.0.1"), &replay_body),
            )?,
            me: me.0,
        },
        me.1,
    ))
}

impl Runs {
    /// A warning for each run whose answers were not all as expected.
    fn warn_about_errors(&self, s: &BenchSettings) {
        for (name, run, expected) in [
            ("healthz", &self.healthz, "2xx"),
            ("replay", &self.replay, "2xx"),
            ("users-me", &self.me, "2xx"),
        ] {
            if run.errors > 0.0 {
                eprintln!(
                    "· warning: {name}: {} responses were not {expected}; see {}",
                    run.errors,
                    s.dir.join("api.log").display()
                );
            }
        }
    }

    /// The table's rows: each figure beside its reference from the same run.
    fn rows(&self, pairs: &Pairs, statements: f64) -> Vec<Row> {
        let row = |name, ours, reference, reference_name, goal| Row {
            name,
            ours,
            reference,
            unit: "req/s",
            reference_name,
            goal,
            lower_is_better: false,
        };
        let healthz = self.healthz.rps;
        vec![
            row(
                "POST /user refused by the allowlist ÷ GET /healthz",
                self.outsider.rps,
                healthz,
                "GET /healthz",
                Some(0.95),
            ),
            row(
                "POST /user refused by a bad secret ÷ GET /healthz",
                self.forged.rps,
                healthz,
                "GET /healthz",
                Some(0.90),
            ),
            row(
                "accepted POST /user ÷ bare handler (median of 3 pairs)",
                pairs.ours,
                pairs.bare,
                "the same statement and pool, nothing else",
                Some(0.95),
            ),
            row(
                "GET /users/me (RS256 ID token) ÷ bare handler",
                self.me.rps,
                pairs.bare_me,
                "jsonwebtoken, the same JWKS and select",
                Some(0.90),
            ),
            row(
                "accepted POST /user (new sub each) ÷ pgbench",
                pairs.ours,
                statements,
                "pgbench, the api's statement, pool size",
                None,
            ),
            row(
                "replayed POST /user (same sub) ÷ accepted",
                self.replay.rps,
                pairs.ours,
                "accepted POST /user",
                None,
            ),
            row(
                "GET /users/me (RS256 ID token) ÷ GET /healthz",
                self.me.rps,
                healthz,
                "GET /healthz",
                None,
            ),
        ]
    }
}

/// Accepted registrations, a new user each, counted as users created per second. wrk cannot
/// compute an HMAC per request, so this run uses an api in `static` mode (the credential is a
/// fixed header; the body, with a fresh `sub`, is made in Lua): the same guard, handler and
/// INSERT, with a constant-time compare in place of the HMAC (a few hundred nanoseconds).
async fn accepted_run(
    s: &BenchSettings,
    api_binary: &Path,
    env: &[(String, String)],
    base: &str,
    http: &reqwest::Client,
    pg: &Postgres,
    round: usize,
) -> Result<(f64, cpu::PerRequest)> {
    let mut env = env.to_vec();
    env.push(("TOLLGATE__GUARD__MODE".into(), "static".into()));
    let secret = env
        .iter()
        .find(|(k, _)| k == "TOLLGATE_SECRET_CURRENT")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let header = shared_auth::load_for(Component::Api, &env.iter().cloned().collect())?
        .guard
        .static_header;
    let mut api = Process::start(
        "api (static)",
        api_binary,
        &env,
        &s.dir.join("api-static.log"),
    )?;
    api.wait_ready(http, &format!("{base}/healthz")).await?;
    let run = created_per_second(
        s,
        base,
        "accepted",
        &api,
        pg,
        (&header, &secret),
        0x8000 + 16 * round,
    )
    .await;
    api.stop();
    run
}

#[derive(Debug)]
struct WrkRun {
    rps: f64,
    requests: f64,
    /// The run's length as wrk reports it (`N requests in 4.10s`).
    elapsed_s: f64,
    errors: f64,
}

fn run_wrk(
    s: &BenchSettings,
    seconds: u64,
    base: &str,
    name: &str,
    script: &str,
) -> Result<WrkRun> {
    let path = s.dir.join(format!("{name}.lua"));
    std::fs::write(&path, script)?;
    eprintln!("· wrk: {name} ({seconds} s, {} connections)", s.connections);
    let out = cmd::output(Command::new("wrk").args([
        "-t2",
        &format!("-c{}", s.connections),
        &format!("-d{seconds}s"),
        "--timeout",
        "5s",
        "-s",
        &path.display().to_string(),
        base,
    ]))
    .with_context(|| format!("wrk {name}"))?;
    let (requests, elapsed_s) = wrk::totals(&out);
    std::fs::write(s.dir.join(format!("{name}.wrk.txt")), &out)?;
    Ok(WrkRun {
        rps: number_after(&out, "Requests/sec:")?,
        requests,
        elapsed_s,
        errors: number_after(&out, "Non-2xx or 3xx responses:").unwrap_or(0.0),
    })
}

/// The api's registration statement (`db::register_user`), from `pgbench` with the pool's
/// connection count and prepared statements, as sqlx runs it: the most the database gives this
/// statement here. Statements per second, and the CPU split per statement.
fn run_pgbench(
    s: &BenchSettings,
    pg: &Postgres,
    rate: Option<f64>,
) -> Result<(f64, cpu::PerRequest)> {
    let pgbench = pg_bin("pgbench").context("pgbench not found")?;
    let script = s.dir.join("register.sql");
    std::fs::write(&script, pgbench_script(&api_statement()?))?;
    let connections = shared_auth::load_for(
        Component::Api,
        &[("TOLLGATE_ENV".to_owned(), "local".to_owned())]
            .into_iter()
            .collect(),
    )?
    .api
    .db_max_connections;
    eprintln!(
        "· pgbench: the api's registration statement, {connections} connections, {} s{}",
        s.seconds,
        rate.map_or(String::new(), |r| format!(", paced at {r:.0}/s"))
    );
    let pace: Vec<String> = rate
        .map(|r| vec!["-R".to_owned(), format!("{}", r.round().max(1.0))])
        .unwrap_or_default();
    let postmaster = pg.server_pid()?;
    let before = cpu::sample(None, postmaster)?;
    let out = cmd::output(
        Command::new(pgbench)
            .args([
                "-n",
                "-M",
                "prepared",
                "-c",
                &connections.to_string(),
                "-j",
                "2",
                "-T",
                &s.seconds.to_string(),
                "-f",
                &script.display().to_string(),
            ])
            .args(&pace)
            .arg(pg.url()),
    )?;
    let after = cpu::sample(None, postmaster)?;
    std::fs::write(s.dir.join("pgbench.txt"), &out)?;
    let statements = number_after(&out, "number of transactions actually processed:")?;
    Ok((
        number_after(&out, "tps =")?,
        cpu::per_request(before, after, statements)?,
    ))
}

/// The registration statement as the api runs it, from sqlx's offline cache (`.sqlx/`, which
/// `cargo xtask sqlx-prepare --check` keeps equal to the code).
fn api_statement() -> Result<String> {
    let dir = workspace_root().join(".sqlx");
    let mut found = Vec::new();
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
    {
        let text = std::fs::read_to_string(entry?.path())?;
        let query: serde_json::Value = serde_json::from_str(&text)?;
        if let Some(sql) = query["query"]
            .as_str()
            .filter(|q| q.contains("WITH ins AS"))
        {
            found.push(sql.to_owned());
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "expected one registration statement (`WITH ins AS …`) in {}, found {}",
            dir.display(),
            found.len()
        ),
    }
}

/// A pgbench script running `statement` for a new user each time: `$1` (the `sub`) becomes a
/// random UUID made from a pgbench variable, the other parameters the bench user's values.
fn pgbench_script(statement: &str) -> String {
    let sql = statement
        .replace(
            "$1",
            "('00000000-0000-4000-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid",
        )
        .replace("$2", "'bench@example.com'")
        .replace("$3", "true")
        .replace("$4", "'bench'")
        .replace("$5", "1::bigint");
    // On one line: a pgbench script's SQL command ends at its `;`, whatever the version.
    let one_line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    format!("\\set n random(1, 281474976710655)\n{one_line};\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pgbench_script_runs_the_api_statement_with_every_parameter_bound() {
        let statement = api_statement().expect("the registration statement in .sqlx");
        assert!(statement.contains("$5") && !statement.contains("$6"));
        let script = pgbench_script(&statement);
        let mut lines = script.lines();
        assert_eq!(lines.next(), Some("\\set n random(1, 281474976710655)"));
        let sql = lines.next().expect("the statement");
        assert!(lines.next().is_none(), "one statement, one line");
        assert!(!sql.contains('$'), "{sql}");
        assert_eq!(
            sql.matches(":n::bigint").count(),
            statement.matches("$1").count()
        );
        assert!(sql.ends_with(';'));
    }
}
