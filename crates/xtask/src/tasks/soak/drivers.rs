//! What runs during the soak: the sign-ups through the function (which also drains the retry
//! queue, as Lambda's poller would hand it batches), `/users/me`, the forged flood, the sampler;
//! and what counts the outcome afterwards.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use opskit::runtime_api::{Outcome, RuntimeApi};
use serde_json::Value;
use testkit::queues::Queues;
use tokio::time::MissedTickBehavior;

use crate::tasks::bench::wrk::{self, Bodies, script_post, with_client};
use crate::tasks::up::Stack;

/// What one sign-up's invocation may take (Cognito waits 5 s for a trigger).
const BUDGET: Duration = Duration::from_secs(5);
/// How often the function is handed a batch from the retry queue during the run.
const POLL_EVERY: Duration = Duration::from_secs(5);
/// `/users/me` requests in flight at most; a tick finding none free is counted as skipped.
const ME_IN_FLIGHT: usize = 64;

/// The sign-ups made: each `sub`, each invocation's time, and what Cognito would have seen.
#[derive(Debug, Default)]
pub struct SignUps {
    pub subs: Vec<String>,
    /// When each invocation began, unix milliseconds: the start of its end-to-end latency.
    pub started_ms: Vec<f64>,
    pub latencies_ms: Vec<f64>,
    /// Invocations that did not return the event: Cognito would show the user an error.
    pub errors: usize,
    /// Registrations the function handed to the retry queue were later given back to it:
    /// batches handed over during the run, and messages in them.
    pub batches: usize,
    pub requeued: usize,
}

/// Sign-ups at `per_s` for `length`, each a new user from `template` (numbered from
/// `first`); every `POLL_EVERY` the same function is handed what waits in the retry queue. One
/// function instance serves both, in turn, as one warm Lambda execution environment would.
pub async fn sign_ups(
    runtime: Arc<RuntimeApi>,
    queues: Queues,
    template: Value,
    (per_s, first): (u32, usize),
    length: Duration,
) -> Result<SignUps> {
    let mut made = SignUps::default();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(per_s.max(1))));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (started, mut polled) = (Instant::now(), Instant::now());
    while started.elapsed() < length {
        tick.tick().await;
        let (sub, event) = new_user(&template, first + made.subs.len());
        let payload = event.to_string();
        made.started_ms.push(unix_ms());
        let began = Instant::now();
        let outcome = tokio::task::block_in_place(|| runtime.invoke(&payload, BUDGET));
        made.latencies_ms.push(began.elapsed().as_secs_f64() * 1e3);
        match outcome {
            Outcome::Response(body) if serde_json::from_str::<Value>(&body).ok() == Some(event) => {
            }
            _ => made.errors += 1,
        }
        made.subs.push(sub);
        if polled.elapsed() >= POLL_EVERY {
            polled = Instant::now();
            let (handed, _) = hand_batch(&runtime, &queues).await?;
            if handed > 0 {
                made.batches += 1;
                made.requeued += handed;
            }
        }
    }
    Ok(made)
}

/// Now, in unix milliseconds.
pub fn unix_ms() -> f64 {
    shared_auth::unix::millis() as f64
}

/// User number `n`, made from the template event: its own `sub`, name and address.
fn new_user(template: &Value, n: usize) -> (String, Value) {
    let sub = format!("5a0c0000-0000-4000-8000-{n:012}");
    let mut event = template.clone();
    event["userName"] = Value::String(format!("soak-{n}"));
    let attributes = &mut event["request"]["userAttributes"];
    attributes["sub"] = Value::String(sub.clone());
    attributes["email"] = Value::String(format!("soak-{n}@example.com"));
    (sub, event)
}

/// One batch from the retry queue handed to the function: (handed, failed).
async fn hand_batch(runtime: &RuntimeApi, queues: &Queues) -> Result<(usize, usize)> {
    queues
        .poll_once(30, |event| async move {
            match tokio::task::block_in_place(|| runtime.invoke(&event.to_string(), BUDGET * 6)) {
                Outcome::Response(body) => Ok(serde_json::from_str(&body)?),
                other => bail!("the queue's batch failed: {other:?}"),
            }
        })
        .await
}

/// After the load: batches until the retry queue is empty, for at most `limit`. Returns the
/// registrations handed over.
pub async fn drain(runtime: &RuntimeApi, queues: &Queues, limit: Duration) -> Result<usize> {
    let started = Instant::now();
    let mut handed = 0;
    while started.elapsed() < limit {
        let (n, _) = hand_batch(runtime, queues).await?;
        handed += n;
        if n == 0 && queues.count(&queues.retry).await? == 0 {
            return Ok(handed);
        }
        if n == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    bail!(
        "the retry queue still held registrations after {} s",
        limit.as_secs()
    )
}

/// The rows PostgreSQL holds for the sign-ups, and each registration's end-to-end latency:
/// from the trigger's invocation to the row (`created_at`, the inserting statement's
/// transaction time; one statement, committed as it ends).
#[derive(Debug)]
pub struct Rows {
    pub found: i64,
    pub distinct: i64,
    pub end_to_end_ms: Vec<f64>,
    /// The newest row, unix milliseconds.
    pub last_ms: f64,
}

pub async fn count_rows(db: &sqlx::PgPool, made: &SignUps) -> Result<Rows> {
    let rows: Vec<(String, f64)> = sqlx::query_as(
        "SELECT cognito_sub::text, (extract(epoch FROM created_at) * 1000)::float8 FROM users
          WHERE cognito_sub = ANY($1::text[]::uuid[])",
    )
    .bind(&made.subs)
    .fetch_all(db)
    .await?;
    let started: std::collections::HashMap<&str, f64> = made
        .subs
        .iter()
        .map(String::as_str)
        .zip(made.started_ms.iter().copied())
        .collect();
    let distinct: std::collections::HashSet<&str> = rows.iter().map(|(s, _)| s.as_str()).collect();
    Ok(Rows {
        found: rows.len() as i64,
        distinct: distinct.len() as i64,
        end_to_end_ms: rows
            .iter()
            .filter_map(|(sub, at)| started.get(sub.as_str()).map(|s| at - s))
            .collect(),
        last_ms: rows.iter().map(|(_, at)| *at).fold(0.0, f64::max),
    })
}

/// `/users/me` as the app's users call it: statuses and times.
#[derive(Debug, Default)]
pub struct UsersMe {
    pub latencies_ms: Vec<f64>,
    pub server_errors: usize,
    /// Answers other than 200 and 5xx (a 401 would mean a real token was refused).
    pub other: usize,
    pub transport_errors: usize,
    pub skipped: usize,
}

/// `GET /users/me` at `per_s` for `length`, round-robin over `tokens`.
pub async fn users_me(
    http: reqwest::Client,
    url: String,
    tokens: Vec<String>,
    per_s: u32,
    length: Duration,
) -> Result<UsersMe> {
    let seen = Arc::new(std::sync::Mutex::new(UsersMe::default()));
    let permits = Arc::new(tokio::sync::Semaphore::new(ME_IN_FLIGHT));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(per_s.max(1))));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut n = 0usize;
    while started.elapsed() < length {
        tick.tick().await;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            seen.lock().expect("soak counters").skipped += 1;
            continue;
        };
        let request = http.get(&url).bearer_auth(&tokens[n % tokens.len()]);
        n += 1;
        let seen = seen.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            let answer = request.send().await;
            let ms = began.elapsed().as_secs_f64() * 1e3;
            let mut seen = seen.lock().expect("soak counters");
            match answer.map(|r| r.status().as_u16()) {
                Ok(200) => seen.latencies_ms.push(ms),
                Ok(500..) => seen.server_errors += 1,
                Ok(_) => seen.other += 1,
                Err(_) => seen.transport_errors += 1,
            }
            drop(permit);
        });
    }
    // Every request answered before the figures are read.
    let _all = permits
        .acquire_many(ME_IN_FLIGHT as u32)
        .await
        .context("the /users/me permits")?;
    let seen = std::mem::take(&mut *seen.lock().expect("soak counters"));
    Ok(seen)
}

/// The api's resident memory (kB), open descriptors and log lines, every `every`.
#[derive(Debug, Default)]
pub struct Samples {
    pub at_s: Vec<f64>,
    pub rss_kb: Vec<u64>,
    pub fds: Vec<u64>,
    pub log_lines: Vec<u64>,
}

pub async fn sample(pid: u32, log: PathBuf, every: Duration, length: Duration) -> Result<Samples> {
    let mut samples = Samples::default();
    let started = Instant::now();
    let mut tick = tokio::time::interval(every);
    while started.elapsed() <= length {
        tick.tick().await;
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let status = std::fs::read_to_string(proc.join("status"))
            .with_context(|| format!("the api (pid {pid}) is gone"))?;
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("VmRSS")?;
        samples.at_s.push(started.elapsed().as_secs_f64());
        samples.rss_kb.push(rss);
        samples
            .fds
            .push(std::fs::read_dir(proc.join("fd"))?.count() as u64);
        samples.log_lines.push(line_count(&log));
    }
    Ok(samples)
}

fn line_count(path: &Path) -> u64 {
    std::fs::read(path)
        .map(|bytes| bytes.iter().filter(|b| **b == b'\n').count() as u64)
        .unwrap_or(0)
}

/// The forged flood: one wrk thread sending registrations signed with a wrong secret from an
/// allowed address (the guard's costliest refusal), counting 5xx answers in Lua.
pub struct Flood {
    child: Child,
    output: PathBuf,
}

/// What the flood saw.
#[derive(Debug, Default)]
pub struct FloodFigures {
    pub requests: f64,
    pub per_s: f64,
    pub server_errors: f64,
    pub p99_ms: f64,
}

impl Flood {
    pub fn start(stack: &Stack, work: &Path, length: Duration) -> Result<Self> {
        let wrong = testkit::secrets::new_secret()?;
        let (headers, body) = Bodies::new(&stack.contract, &wrong).signed(0x5a0cf);
        let headers = with_client(&headers, "127.0.0.1");
        let script = work.join("flood.lua");
        std::fs::write(&script, flood_script(&headers, &body))?;
        let output = work.join("flood.txt");
        let child = Command::new("wrk")
            .args(["-t1", "-c8", "--latency", "--timeout", "5s"])
            .arg(format!("-d{}s", length.as_secs()))
            .arg("-s")
            .arg(&script)
            .arg(&stack.api_url)
            .stdout(std::fs::File::create(&output)?)
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start wrk")?;
        Ok(Flood { child, output })
    }

    pub fn finish(mut self) -> Result<FloodFigures> {
        let status = self.child.wait()?;
        let text = std::fs::read_to_string(&self.output)?;
        if !status.success() {
            bail!("wrk failed ({status}):\n{text}");
        }
        let number = |label: &str| crate::tasks::bench::number_after(&text, label);
        let (requests, _) = wrk::totals(&text);
        Ok(FloodFigures {
            requests,
            per_s: number("Requests/sec:")?,
            server_errors: number("fivexx")?,
            p99_ms: number("p99_us")? / 1e3,
        })
    }
}

fn flood_script(headers: &[(String, String)], body: &str) -> String {
    let mut lua = script_post(headers, body);
    lua.push_str(
        r#"local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) fivexx = 0 end
function response(status, headers, body) if status >= 500 then fivexx = fivexx + 1 end end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("fivexx") end
  io.write(string.format("fivexx %d\n", n))
  io.write(string.format("p99_us %d\n", latency:percentile(99)))
end
"#,
    );
    lua
}
