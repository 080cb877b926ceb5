//! Capacity at the CPU share AWS gives: the api held to its Fargate task's CPU units (read from
//! `infra/service.tf`) and the sign-up function to its memory's CPU share (read from
//! `infra/post_confirm.tf`; Lambda allocates CPU in proportion to memory, one vCPU at 1,769 MB:
//! <https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html>), each by a Linux
//! CPU cgroup quota, against PostgreSQL with the shipped contract's pool size.
//!
//! The api's load steps up in concurrency; the knee is the first step that reaches 95 % of the
//! most any step served: beyond it more concurrency adds waiting, not throughput. The
//! autoscaling target the stack uses is derived from the knee (see [`request_target`]).

use std::process::Command;

use anyhow::{Context, Result, bail};
use opskit::cmd;
use opskit::process::Process;
use secrecy::ExposeSecret;
use serde_json::json;
use testkit::services::{Moto, Postgres};

use super::cgroup::Cgroup;
use super::http::{self, BenchApi};
use super::wrk::{script_get, script_new_users, totals};
use super::{BenchSettings, Binaries, number_after};
use crate::support::context::settings_for;
use crate::tasks::cost::{TARGET_SHARE_OF_KNEE, api_task_vcpu, lambda_memory_mb, request_target};

/// Concurrency steps of the api's runs.
const STEPS: [u32; 6] = [1, 2, 4, 8, 16, 32];

/// One step: concurrency, rate served and the 99th-percentile latency.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub connections: u32,
    pub rps: f64,
    pub p99_ms: f64,
}

/// A capacity figure: what was measured, under which share, its steps and knee.
#[derive(Debug, Clone)]
pub struct Capacity {
    pub what: &'static str,
    /// The CPU share, in vCPUs.
    pub vcpu: f64,
    pub steps: Vec<Step>,
    pub unit: &'static str,
}

impl Capacity {
    /// The first step serving at least 95 % of the best step's rate.
    pub fn knee(&self) -> Option<Step> {
        let best = self.steps.iter().map(|s| s.rps).fold(0.0, f64::max);
        self.steps.iter().copied().find(|s| s.rps >= 0.95 * best)
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "measure": self.what,
            "vcpu": self.vcpu,
            "unit": self.unit,
            "steps": self.steps.iter().map(|s| json!({
                "connections": s.connections, "rate": s.rps, "p99_ms": s.p99_ms,
            })).collect::<Vec<_>>(),
            "knee": self.knee().map(|k| json!({
                "connections": k.connections, "rate": k.rps, "p99_ms": k.p99_ms,
            })),
        })
    }
}

pub fn print(capacity: &[Capacity]) {
    if capacity.is_empty() {
        return;
    }
    println!("\nCapacity held to the CPU share AWS gives (cgroup quota)\n");
    for c in capacity {
        println!("{} at {:.3} vCPU:", c.what, c.vcpu);
        for step in &c.steps {
            println!(
                "  {:>3} at once: {:>9.1} {}  p99 {:>8.1} ms",
                step.connections, step.rps, c.unit, step.p99_ms
            );
        }
        if let Some(k) = c.knee() {
            println!(
                "  knee: {:.1} {} at {} at once (p99 {:.1} ms)",
                k.rps, c.unit, k.connections, k.p99_ms
            );
        }
    }
    let knees: Vec<f64> = capacity
        .iter()
        .filter(|c| c.unit == "req/s")
        .filter_map(|c| c.knee().map(|k| k.rps))
        .collect();
    if let Some(target) = request_target(&knees) {
        println!(
            "\nALBRequestCountPerTarget for {:.0} % of the lower knee: {target} requests per task per minute",
            TARGET_SHARE_OF_KNEE * 100.0
        );
    }
}

pub async fn rows(
    s: &BenchSettings,
    bin: &Binaries,
    pg: &Postgres,
    moto: &Moto,
) -> Result<(Vec<Capacity>, Vec<super::Row>)> {
    let vcpu = api_task_vcpu()?;
    let pool_size = settings_for("production")?.api.db_max_connections;
    eprintln!(
        "· capacity: the api held to {vcpu} vCPU (infra/service.tf), pool of {pool_size} \
         (deploy/production.toml)"
    );
    let (pool, user, secret) = http::identity(moto, "capacity").await?;
    let BenchApi { mut env, base } = http::api_settings(pg, moto, &pool, &secret)?;
    env.push((
        "TOLLGATE__API__DB_MAX_CONNECTIONS".into(),
        pool_size.to_string(),
    ));
    let header = http::static_mode(&mut env)?;
    let cgroup = Cgroup::limited("api", vcpu)?;
    let mut command = cgroup.command(s.api_binary.as_deref().unwrap_or(&bin.api));
    command.envs(env.iter().map(|(k, v)| (k, v)));
    let mut api = Process::spawn("api (capacity)", command, &s.dir.join("api-capacity.log"))?;
    api.wait_ready(&reqwest::Client::new(), &format!("{base}/healthz"))
        .await?;
    let sign_ups = sign_up_steps(s, &base, &api, pg, &header, &secret).await?;
    let me = me_steps(s, &base, &api, &user.id_token)?;
    api.stop();
    drop(cgroup);
    let capacity = vec![
        Capacity {
            what: "sign-ups (accepted POST /user), one api task",
            vcpu,
            steps: sign_ups,
            unit: "req/s",
        },
        Capacity {
            what: "GET /users/me, one api task",
            vcpu,
            steps: me,
            unit: "req/s",
        },
    ];
    let lambda = super::lambda::at_share(s, bin, moto, lambda_memory_mb()?).await?;
    Ok((capacity, lambda))
}

/// The step at which wrk stays a step: half a run, at least 3 s.
fn step_seconds(s: &BenchSettings) -> u64 {
    (s.seconds / 2).max(3)
}

/// Accepted registrations at each concurrency step, counted in the database.
async fn sign_up_steps(
    s: &BenchSettings,
    base: &str,
    api: &Process,
    pg: &Postgres,
    header: &str,
    secret: &secrecy::SecretString,
) -> Result<Vec<Step>> {
    let db = sqlx::PgPool::connect(&pg.url()).await?;
    let mut sign_ups = Vec::new();
    for (i, connections) in STEPS.into_iter().enumerate() {
        let before = user_count(&db).await?;
        let run = wrk_step(
            s,
            base,
            "capacity-sign-ups",
            connections,
            step_seconds(s),
            &script_new_users(header, secret.expose_secret(), 0xc000 + 16 * i),
        )?;
        let created = user_count(&db).await? - before;
        if run.errors > 0.0 || (created as f64) < run.requests * 0.99 {
            bail!(
                "capacity: {created} users created for {} answers ({} not 2xx); see {}",
                run.requests,
                run.errors,
                api.log().display()
            );
        }
        sign_ups.push(Step {
            connections,
            rps: created as f64 / run.elapsed_s.max(1e-3),
            p99_ms: run.p99_ms,
        });
    }
    Ok(sign_ups)
}

/// `GET /users/me` at each concurrency step.
fn me_steps(s: &BenchSettings, base: &str, api: &Process, id_token: &str) -> Result<Vec<Step>> {
    let mut me = Vec::new();
    let token = [("Authorization".to_owned(), format!("Bearer {}", id_token))];
    for connections in STEPS {
        let run = wrk_step(
            s,
            base,
            "capacity-users-me",
            connections,
            step_seconds(s),
            &script_get("/users/me", &token),
        )?;
        if run.errors > 0.0 {
            bail!(
                "capacity: {} of /users/me's answers were not 2xx; see {}",
                run.errors,
                api.log().display()
            );
        }
        me.push(Step {
            connections,
            rps: run.requests / run.elapsed_s.max(1e-3),
            p99_ms: run.p99_ms,
        });
    }
    Ok(me)
}

async fn user_count(db: &sqlx::PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM users")
        .fetch_one(db)
        .await?)
}

struct StepRun {
    requests: f64,
    elapsed_s: f64,
    errors: f64,
    p99_ms: f64,
}

fn wrk_step(
    s: &BenchSettings,
    base: &str,
    name: &str,
    connections: u32,
    seconds: u64,
    script: &str,
) -> Result<StepRun> {
    let path = s.dir.join(format!("{name}.lua"));
    std::fs::write(&path, script)?;
    eprintln!("· wrk: {name} ({seconds} s, {connections} connections)");
    let out = cmd::output(Command::new("wrk").args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--timeout",
        "5s",
        "--latency",
        "-s",
        &path.display().to_string(),
        base,
    ]))
    .with_context(|| format!("wrk {name}"))?;
    let (requests, elapsed_s) = totals(&out);
    Ok(StepRun {
        requests,
        elapsed_s,
        errors: number_after(&out, "Non-2xx or 3xx responses:").unwrap_or(0.0),
        p99_ms: p99_ms(&out)?,
    })
}

/// The 99th percentile from wrk's `--latency` distribution (`99%  12.34ms`), in ms.
fn p99_ms(out: &str) -> Result<f64> {
    let value = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(str::trim)
        .with_context(|| format!("no 99% latency in wrk's output:\n{out}"))?;
    let (number, scale) = if let Some(n) = value.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = value.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1e3)
    } else {
        bail!("an unknown latency unit in `{value}`")
    };
    Ok(number.parse::<f64>()? * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capacity(rates: &[f64]) -> Capacity {
        Capacity {
            what: "x",
            vcpu: 0.25,
            steps: rates
                .iter()
                .zip(STEPS)
                .map(|(&rps, connections)| Step {
                    connections,
                    rps,
                    p99_ms: 1.0,
                })
                .collect(),
            unit: "req/s",
        }
    }

    #[test]
    fn the_knee_is_the_first_step_within_five_percent_of_the_best() {
        let knee = capacity(&[100.0, 190.0, 290.0, 300.0, 296.0, 280.0]).knee();
        assert_eq!(knee.map(|k| k.connections), Some(4));
        assert!(capacity(&[]).knee().is_none());
    }

    #[test]
    fn wrk_latencies_are_read_in_their_units() {
        let out = "  Latency Distribution\n     50%  1.20ms\n     75%  2.00ms\n     90%  3.00ms\n     99%  812.00us\n";
        assert_eq!(p99_ms(out).expect("us"), 0.812);
        assert_eq!(p99_ms("     99%    1.50s\n").expect("s"), 1500.0);
        assert_eq!(p99_ms("     99%   12.34ms\n").expect("ms"), 12.34);
        assert!(p99_ms("nothing").is_err());
    }

    #[test]
    fn the_shares_come_from_the_stack_as_checked_in() {
        let vcpu = api_task_vcpu().expect("the api task's cpu");
        assert!(vcpu > 0.0 && vcpu <= 16.0, "{vcpu}");
        let mb = lambda_memory_mb().expect("the function's memory");
        assert!((128.0..=10_240.0).contains(&mb), "{mb}");
        assert!((super::super::cgroup::lambda_vcpu(1769.0) - 1.0).abs() < 1e-9);
    }
}
