//! The api under `wrk`, in rounds: each round measures every figure beside its reference
//! (the guarded route's refusals beside `GET /healthz` and beside the bare reference's
//! refusal; accepted registrations and `GET /users/me` beside the bare reference,
//! `crates/api/examples/bare.rs`: the same statements and token check through the same pool,
//! without what Tollgate adds), and a goal row is the median of the rounds' ratios with their
//! spread. Odd rounds start with the references, so a drift of the machine over the run does
//! not favour one side. Then `pgbench` runs the api's own statement with the pool's connection
//! count, for where the database's share goes.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use opskit::cmd;
use opskit::process::Process;
use secrecy::{ExposeSecret, SecretString};
use shared_auth::Component;
use testkit::cognito::{PoolUser, UserPool};
use testkit::services::{Moto, Postgres, free_port};

use super::cpu::{self, Split};
use super::wrk::{
    self, Bodies, script_get, script_new_users, script_post, script_post_to, with_client,
};
use super::{BenchSettings, Binaries, Row, median_index, number_after, pg_bin};
use crate::support::context::workspace_root;

/// An address outside the allowlist, as the ALB would report it.
const OUTSIDER: &str = "203.0.113.9";

/// The api as the bench runs it: its environment and address.
pub(super) struct BenchApi {
    pub env: Vec<(String, String)>,
    pub base: String,
}

/// What every round sends: the credential headers and body of a registration (the replay
/// run's, already registered), a forged one, and the ID token `GET /users/me` presents.
struct Requests {
    replay: (Vec<(String, String)>, String),
    forged: (Vec<(String, String)>, String),
    id_token: String,
}

/// One round's figures: the api's runs, then the references'.
struct Round {
    healthz: WrkRun,
    outsider: WrkRun,
    forged: WrkRun,
    replay: WrkRun,
    me: (WrkRun, cpu::PerRequest),
    accepted: (f64, cpu::PerRequest),
    bare_accepted: (f64, cpu::PerRequest),
    bare_me: (WrkRun, cpu::PerRequest),
    bare_refused: WrkRun,
}

pub async fn rows(
    s: &BenchSettings,
    bin: &Binaries,
    pg: &Postgres,
    moto: &Moto,
) -> Result<(Vec<Row>, Vec<Split>)> {
    let (pool, user, secret) = identity(moto, "bench").await?;
    let api_binary = s.api_binary.as_deref().unwrap_or(&bin.api);
    let http = reqwest::Client::new();
    let api = api_settings(pg, moto, &pool, &secret)?;
    let requests = requests(&api, &secret, &user.id_token)?;
    let mut rounds = Vec::new();
    for round in 0..s.pairs {
        eprintln!("· round {}/{}", round + 1, s.pairs);
        let round = one_round(
            &Setup {
                s,
                api_binary,
                bin,
                api: &api,
                requests: &requests,
                http: &http,
                pg,
            },
            round,
        )
        .await?;
        eprintln!(
            "· round {}: accepted {:.0}/s (bare {:.0}/s), /users/me {:.0}/s (bare {:.0}/s), \
             refused by a bad secret {:.0}/s (bare {:.0}/s), allowlist {:.0}/s (/healthz {:.0}/s)",
            rounds.len() + 1,
            round.accepted.0,
            round.bare_accepted.0,
            round.me.0.rps,
            round.bare_me.0.rps,
            round.forged.rps,
            round.bare_refused.rps,
            round.outsider.rps,
            round.healthz.rps,
        );
        rounds.push(round);
    }
    let accepted_pairs: Vec<(f64, f64)> = rounds
        .iter()
        .map(|r| (r.accepted.0, r.bare_accepted.0))
        .collect();
    let median_round = &rounds[median_index(&accepted_pairs)];
    let (statements, pgbench_cpu) = run_pgbench(s, pg, None)?;
    // The same statements at the api's rate: PostgreSQL's cost per statement at that load
    // (group commit and wake-ups amortise less at a lower rate), apart from how it is driven.
    let (_, paced_cpu) = run_pgbench(s, pg, Some(median_round.accepted.0))?;
    let splits = splits(median_round, pgbench_cpu, paced_cpu);
    for round in &rounds {
        round.warn_about_errors(s);
    }
    Ok((table(&rounds, statements), splits))
}

/// Where the CPU of the median round's runs and of the database references went.
fn splits(median: &Round, pgbench: cpu::PerRequest, paced: cpu::PerRequest) -> Vec<Split> {
    let split = |run, generator, per_request| Split {
        run,
        generator,
        per_request,
    };
    vec![
        split("accepted POST /user", "wrk", median.accepted.1),
        split("bare POST /user (reference)", "wrk", median.bare_accepted.1),
        split("pgbench, the api's statement", "pgbench", pgbench),
        split("pgbench at the accepted rate", "pgbench", paced),
        split("GET /users/me", "wrk", median.me.1),
        split("bare GET /users/me (reference)", "wrk", median.bare_me.1),
    ]
}

/// What every round runs against.
struct Setup<'a> {
    s: &'a BenchSettings,
    api_binary: &'a Path,
    bin: &'a Binaries,
    api: &'a BenchApi,
    requests: &'a Requests,
    http: &'a reqwest::Client,
    pg: &'a Postgres,
}

/// One round: the api's runs and the references', the references first in odd rounds.
async fn one_round(setup: &Setup<'_>, round: usize) -> Result<Round> {
    let Setup {
        s,
        api_binary,
        bin,
        api,
        requests,
        http,
        pg,
    } = *setup;
    let ours_first = round.is_multiple_of(2);
    let mut ours = None;
    let mut references = None;
    for side in [ours_first, !ours_first] {
        if side {
            ours = Some(api_runs(s, api_binary, api, requests, http, pg, round).await?);
        } else {
            references = Some(bare_runs(s, bin, api, requests, http, pg, round).await?);
        }
    }
    let (healthz, outsider, forged, replay, me, accepted) = ours.context("our runs")?;
    let (bare_accepted, bare_me, bare_refused) = references.context("the references")?;
    Ok(Round {
        healthz,
        outsider,
        forged,
        replay,
        me,
        accepted,
        bare_accepted,
        bare_me,
        bare_refused,
    })
}

/// A user pool named `name` in moto with one confirmed user, and a new guard secret: what an
/// api under the bench needs besides its database.
pub(super) async fn identity(
    moto: &Moto,
    name: &str,
) -> Result<(UserPool, PoolUser, SecretString)> {
    let aws = shared_auth::AwsSettings {
        endpoint_url: Some(moto.endpoint()),
        ..testkit::local_aws_region()
    };
    let sdk = shared_aws::sdk_config(&aws).await;
    let pool = UserPool::create(&sdk, &moto.endpoint(), name).await?;
    let user = pool
        .sign_up(&format!("{name}-user"), &format!("{name}@example.com"))
        .await?;
    Ok((pool, user, testkit::secrets::new_secret()?))
}

/// `env` switched to the guard's `static` mode (wrk cannot compute an HMAC per request);
/// returns the header the secret goes in.
pub(super) fn static_mode(env: &mut Vec<(String, String)>) -> Result<String> {
    env.push(("TOLLGATE__GUARD__MODE".into(), "static".into()));
    Ok(
        shared_auth::load_for(Component::Api, &env.iter().cloned().collect())?
            .guard
            .static_header,
    )
}

/// The api's environment: `local` mode behind wrk playing the ALB, on a free port.
pub(super) fn api_settings(
    pg: &Postgres,
    moto: &Moto,
    pool: &UserPool,
    secret: &SecretString,
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
    Ok(BenchApi { env, base })
}

/// The requests every round sends, signed under the api's contract.
fn requests(api: &BenchApi, secret: &SecretString, id_token: &str) -> Result<Requests> {
    let vars = api.env.iter().cloned().collect();
    let contract = shared_auth::load_for(Component::Api, &vars)
        .context("the bench's api settings")?
        .guard;
    let wrong = testkit::secrets::new_secret()?;
    Ok(Requests {
        replay: Bodies::new(&contract, secret).signed(0),
        forged: Bodies::new(&contract, &wrong).signed(1),
        id_token: id_token.to_owned(),
    })
}

type ApiRuns = (
    WrkRun,
    WrkRun,
    WrkRun,
    WrkRun,
    (WrkRun, cpu::PerRequest),
    (f64, cpu::PerRequest),
);

/// The api's side of a round: `/healthz`, the two refusals, the replay and `/users/me` from
/// one process, then accepted registrations from one in `static` mode.
async fn api_runs(
    s: &BenchSettings,
    api_binary: &Path,
    api: &BenchApi,
    requests: &Requests,
    http: &reqwest::Client,
    pg: &Postgres,
    round: usize,
) -> Result<ApiRuns> {
    let mut process = Process::start("api", api_binary, &api.env, &s.dir.join("api.log"))?;
    process
        .wait_ready(http, &format!("{}/healthz", api.base))
        .await?;
    let (replay_headers, replay_body) = &requests.replay;
    let mut first = http
        .post(format!("{}/user", api.base))
        .body(replay_body.clone());
    for (k, v) in with_client(replay_headers, "127.0.0.1") {
        first = first.header(k, v);
    }
    let status = first.send().await?.status();
    if !status.is_success() {
        bail!(
            "the bench's first registration got {status}; see {}",
            process.log().display()
        );
    }
    let wrk = |name: &str, script: String| run_wrk(s, s.seconds, &api.base, name, &script);
    let (forged_headers, forged_body) = &requests.forged;
    let healthz = wrk("healthz", script_get("/healthz", &[]))?;
    let outsider = wrk(
        "refused-allowlist",
        script_post(&with_client(replay_headers, OUTSIDER), replay_body),
    )?;
    let forged = wrk(
        "refused-secret",
        script_post(&with_client(forged_headers, "127.0.0.1"), forged_body),
    )?;
    let replay = wrk(
        "replay",
        script_post(&with_client(replay_headers, "127.0.0.1"), replay_body),
    )?;
    let me = me_run(s, &api.base, "users-me", &requests.id_token, &process, pg)?;
    process.stop();
    let accepted = accepted_run(s, api_binary, &api.env, &api.base, http, pg, round).await?;
    Ok((healthz, outsider, forged, replay, me, accepted))
}

/// The references' side of a round, from the bare handler: accepted registrations,
/// `GET /users/me`, and the forged request refused after one HMAC over its body.
async fn bare_runs(
    s: &BenchSettings,
    bin: &Binaries,
    api: &BenchApi,
    requests: &Requests,
    http: &reqwest::Client,
    pg: &Postgres,
    round: usize,
) -> Result<((f64, cpu::PerRequest), (WrkRun, cpu::PerRequest), WrkRun)> {
    let mut bare = Process::start("bare", &bin.bare, &api.env, &s.dir.join("bare.log"))?;
    bare.wait_ready(http, &format!("{}/healthz", api.base))
        .await?;
    // The reference checks no credential: the header is one nothing reads.
    let accepted = created_per_second(
        s,
        &api.base,
        "bare-accepted",
        &bare,
        pg,
        ("x-unused", ""),
        0x9000 + 16 * round,
    )
    .await?;
    let me = me_run(s, &api.base, "bare-users-me", &requests.id_token, &bare, pg)?;
    let (forged_headers, forged_body) = &requests.forged;
    let refused = run_wrk(
        s,
        s.seconds,
        &api.base,
        "bare-refused",
        &script_post_to(
            "/refuse",
            &with_client(forged_headers, "127.0.0.1"),
            forged_body,
        ),
    )?;
    bare.stop();
    if refused.errors < refused.requests * 0.99 {
        bail!(
            "the bare refusal answered {} of {} requests with a non-2xx; it must refuse them all",
            refused.errors,
            refused.requests
        );
    }
    Ok((accepted, me, refused))
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

impl Round {
    /// A warning for each run whose answers were not all as expected.
    fn warn_about_errors(&self, s: &BenchSettings) {
        for (name, run, expected) in [
            ("healthz", &self.healthz, "2xx"),
            ("replay", &self.replay, "2xx"),
            ("users-me", &self.me.0, "2xx"),
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
}

/// The table's rows: each goal row the median of the rounds' ratios, with their spread.
fn table(rounds: &[Round], statements: f64) -> Vec<Row> {
    let row = |name, pairs: Vec<(f64, f64)>, reference_name, goal| {
        Row::paired(name, "req/s", reference_name, goal, &pairs)
    };
    let pairs = |f: &dyn Fn(&Round) -> (f64, f64)| rounds.iter().map(f).collect::<Vec<_>>();
    vec![
        row(
            "POST /user refused by the allowlist ÷ GET /healthz",
            pairs(&|r| (r.outsider.rps, r.healthz.rps)),
            "GET /healthz",
            Some(0.95),
        ),
        row(
            "POST /user refused by a bad secret ÷ bare refusal",
            pairs(&|r| (r.forged.rps, r.bare_refused.rps)),
            "reads the same body, one HMAC, 403",
            Some(0.95),
        ),
        row(
            "accepted POST /user ÷ bare handler",
            pairs(&|r| (r.accepted.0, r.bare_accepted.0)),
            "the same statement and pool, nothing else",
            Some(0.95),
        ),
        row(
            "GET /users/me (RS256 ID token) ÷ bare handler",
            pairs(&|r| (r.me.0.rps, r.bare_me.0.rps)),
            "jsonwebtoken, the same JWKS and select",
            Some(0.95),
        ),
        row(
            "POST /user refused by a bad secret ÷ GET /healthz",
            pairs(&|r| (r.forged.rps, r.healthz.rps)),
            "GET /healthz",
            None,
        ),
        row(
            "accepted POST /user (new sub each) ÷ pgbench",
            pairs(&|r| (r.accepted.0, statements)),
            "pgbench, the api's statement, pool size",
            None,
        ),
        row(
            "replayed POST /user (same sub) ÷ accepted",
            pairs(&|r| (r.replay.rps, r.accepted.0)),
            "accepted POST /user",
            None,
        ),
        row(
            "GET /users/me (RS256 ID token) ÷ GET /healthz",
            pairs(&|r| (r.me.0.rps, r.healthz.rps)),
            "GET /healthz",
            None,
        ),
    ]
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
    let header = static_mode(&mut env)?;
    let secret = env
        .iter()
        .find(|(k, _)| k == "TOLLGATE_SECRET_CURRENT")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
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
/// random UUID made from a pgbench variable, the other parameters the bench user's values (a
/// registration by the trigger).
fn pgbench_script(statement: &str) -> String {
    let sql = statement
        .replace(
            "$1",
            "('00000000-0000-4000-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid",
        )
        .replace("$2", "'bench@example.com'")
        .replace("$3", "true")
        .replace("$4", "'bench'")
        .replace("$5", "1::bigint")
        .replace("$6", "'trigger'");
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
        assert!(statement.contains("$6") && !statement.contains("$7"));
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
